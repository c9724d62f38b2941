"""A Python client generated from restkit's OpenAPI document by
openapi-python-client, unmodified, driving a running server: create,
fetch, replace, merge-patch and delete, a filtered list (the JSON filter
as the generated client sends it), a multi-key sort (sent as repeated
keys), and a field selection.

Usage: python3 python_client.py BASE_URL WORKDIR (demo TOKEN | inventory)
Exit 0: all good. The generated package is imported from WORKDIR (a
throwaway directory), not installed.
"""
import importlib
import json
import subprocess
import sys
import urllib.request

base, workdir, mode = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]
token = sys.argv[4] if len(sys.argv) > 4 else None


def check(cond, what):
    if not cond:
        print("FAILED:", what)
        sys.exit(1)
    print("ok:", what)


doc = urllib.request.urlopen(base + "/openapi.json").read()
with open(f"{workdir}/openapi.json", "wb") as f:
    f.write(doc)
with open(f"{workdir}/config.yml", "w") as f:
    f.write("post_hooks: []\n")
gen = subprocess.run(
    [sys.executable, "-m", "openapi_python_client", "generate",
     "--path", f"{workdir}/openapi.json", "--meta", "none",
     "--config", f"{workdir}/config.yml", "--output-path", f"{workdir}/apiclient"],
    capture_output=True, text=True,
)
print(gen.stdout, gen.stderr)
check(gen.returncode == 0, "openapi-python-client generates a client")
# Every operation and parameter made it into the client: a warning means
# the generator dropped or merged something.
check("Warning" not in gen.stdout + gen.stderr, "the generator warns about nothing")
sys.path.insert(0, workdir)


def mod(name):
    return importlib.import_module("apiclient." + name)


client_mod = mod("client")
if token:
    client = client_mod.AuthenticatedClient(base_url=base, token=token)
else:
    client = client_mod.Client(base_url=base)


def call(op_module, **kwargs):
    res = mod(op_module).sync_detailed(client=client, **kwargs)
    return res.status_code.value, res.parsed


def body_of(res):
    return json.loads(res.content)


def demo():
    create = mod("models.v1_books_create").V1BooksCreate
    replace = mod("models.v1_books_replace").V1BooksReplace
    patch = mod("models.v1_books_patch").V1BooksPatch
    sort_item = mod("models.get_v1_books_sort_item").GetV1BooksSortItem
    fields_item = mod("models.get_v1_books_fields_item").GetV1BooksFieldsItem

    status, book = call("api.v1.post_v1_books",
                        body=create(title="Generated", author="Client", year=1999))
    check(status == 201 and book.title == "Generated", "create through the generated client")
    bid = book.id
    status, got = call("api.v1.get_v1_books_id", id=bid)
    check(status == 200 and got.year == 1999, "fetch it back")
    status, put = call("api.v1.put_v1_books_id", id=bid,
                       body=replace(title="Regenerated", author="Client"))
    check(status == 200 and put.title == "Regenerated" and put.year is None,
          "replace: omitted optional fields become null")
    status, patched = call("api.v1.patch_v1_books_id", id=bid, body=patch(year=2001))
    check(status == 200 and patched.year == 2001 and patched.title == "Regenerated",
          "merge patch changes only what it names")

    condition = [{"field": "author", "operator": "=", "value": "Author 7"}]
    res = mod("api.v1.get_v1_books").sync_detailed(
        client=client,
        filter_=json.dumps(condition),
        sort=[sort_item("-year"), sort_item("id")],
        fields=[fields_item("id"), fields_item("year"), fields_item("author")],
        limit=50,
    )
    check(res.status_code.value == 200, "a filtered, sorted, partial list is accepted")
    rows = body_of(res)
    check(len(rows) > 1 and all(r["author"] == "Author 7" for r in rows),
          "the JSON filter arrives and applies")
    check(all(set(r) == {"id", "year", "author"} for r in rows), "fields= selects the fields")
    keys = [(-(r["year"] or 0), r["id"]) for r in rows]
    check(keys == sorted(keys), "sort=-year&sort=id sorts by both keys")

    status, _ = call("api.v1.delete_v1_books_id", id=bid)
    check(status == 204, "delete")
    status, _ = call("api.v1.get_v1_books_id", id=bid)
    check(status == 404, "gone afterwards")


def inventory():
    wcreate = mod("models.api_warehouses_create").ApiWarehousesCreate
    create = mod("models.api_items_create").ApiItemsCreate
    replace = mod("models.api_items_replace").ApiItemsReplace
    patch = mod("models.api_items_patch").ApiItemsPatch
    sort_item = mod("models.get_api_items_sort_item").GetApiItemsSortItem
    fields_item = mod("models.get_api_items_fields_item").GetApiItemsFieldsItem
    kind = mod("models.api_items_create_kind").ApiItemsCreateKind

    status, w = call("api.api.post_api_warehouses", body=wcreate(name="North"))
    check(status == 201, "create a warehouse")
    ids = []
    for i, (sku, qty, price) in enumerate([("B-2", 5, "2.50"), ("A-1", 5, "10.00"),
                                           ("C-3", 9, "0.10")]):
        status, item = call("api.api.post_api_items",
                            body=create(sku=sku, quantity=qty, price=price,
                                        warehouse_id=w.id, kind=kind("tool")))
        check(status == 201 and item.price == price, f"create item {sku} (decimal {price} exact)")
        ids.append(item.id)
    status, bad = call("api.api.post_api_items",
                       body=create(sku="X", quantity=1, price="1.00", warehouse_id=999999,
                                   kind=kind("tool")))
    check(status == 422, "a key naming no warehouse is refused")
    status, got = call("api.api.get_api_items_id", id=ids[0])
    check(status == 200 and got.sku == "B-2", "fetch one")
    status, put = call("api.api.put_api_items_id", id=ids[0],
                       body=replace(sku="B-2", quantity=6, price="2.75", warehouse_id=w.id,
                                    kind=kind("part")))
    check(status == 200 and put.quantity == 6 and put.kind == "part", "replace")
    status, patched = call("api.api.patch_api_items_id", id=ids[0], body=patch(quantity=5))
    check(status == 200 and patched.quantity == 5 and patched.price == "2.75", "merge patch")

    res = mod("api.api.get_api_items").sync_detailed(
        client=client,
        filter_=json.dumps([{"field": "quantity", "operator": "=", "value": 5}]),
        sort=[sort_item("-quantity"), sort_item("sku")],
        fields=[fields_item("sku"), fields_item("quantity")],
    )
    rows = body_of(res)
    check(res.status_code.value == 200 and [r["sku"] for r in rows] == ["A-1", "B-2"],
          "filter, two sort keys and fields on the user's own declaration")
    check(all(set(r) == {"sku", "quantity"} for r in rows), "only the fields asked for")
    status, _ = call("api.api.delete_api_items_id", id=ids[2])
    check(status == 204, "delete")


{"demo": demo, "inventory": inventory}[mode]()
