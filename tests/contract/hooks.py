"""Schemathesis hooks for restkit's contract run (tests/api/contract.rs).

A `cursor` is an opaque, signed value that only a previous page's `next`
link can supply: a generated one is rightly refused (400). So a request
whose query was generated as valid is sent without it (a query generated
as invalid keeps it: refusing it is then the expected answer). The
stateful phase still pages through real `next` links.
"""

import schemathesis
from schemathesis.generation import GenerationMode


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    query = case.query
    if not query or "cursor" not in query:
        return
    meta = case.meta
    info = None
    if meta is not None:
        for location, component in meta.components.items():
            if str(getattr(location, "value", location)) == "query":
                info = component
    if info is None or info.mode == GenerationMode.POSITIVE:
        query.pop("cursor", None)
