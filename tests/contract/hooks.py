"""Schemathesis hooks for restkit's contract run (tests/api/contract.rs).

A `cursor` is an opaque, signed value that only a previous page's `next`
link can supply: a generated one is rightly refused (400). So a request
whose query was generated as valid is sent without it (a query generated
as invalid keeps it: refusing it is then the expected answer). The
stateful phase still pages through real `next` links.

`filter` is documented as a string (generated clients keep a string
parameter; they drop one declared with `content`) whose `contentSchema`
is the filter's JSON Schema. The fuzzer generates strings without reading
`contentSchema`, so a generated-as-valid string is almost never a valid
filter and would be rightly refused: `filter` is left out of a query
generated as valid (an invalid one keeps it). The filter language itself
is property-tested against an in-memory model in tests/api/fuzz.rs.
"""

import schemathesis
from schemathesis.generation import GenerationMode


def _generated_as_valid(case):
    meta = case.meta
    info = None
    if meta is not None:
        for location, component in meta.components.items():
            if str(getattr(location, "value", location)) == "query":
                info = component
    return info is None or info.mode == GenerationMode.POSITIVE


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    query = case.query
    if not query or not ("cursor" in query or "filter" in query):
        return
    if not _generated_as_valid(case):
        return
    query.pop("cursor", None)
    query.pop("filter", None)
