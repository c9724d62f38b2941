// A TypeScript client for the inventory API of tests/api/generated_clients.rs:
// types generated from the served OpenAPI document by openapi-typescript
// (./schema.d.ts, written beside this file by the test), requests made by
// openapi-fetch. Type-checked with `tsc --strict`, then run against the
// server: a body or parameter the document does not allow fails to compile.
//
// Usage: node client.js BASE_URL   (exit 0: all good)
import createClient from "openapi-fetch";
import type { components, paths } from "./schema.js";

// Node's two globals used here (no @types/node needed for them).
declare const process: { argv: string[]; exit(code: number): never };

type Item = components["schemas"]["ApiItems"];
type Warehouse = components["schemas"]["ApiWarehouses"];

const client = createClient<paths>({ baseUrl: process.argv[2] });

function check(cond: boolean, what: string): void {
  if (!cond) {
    console.log("FAILED:", what);
    process.exit(1);
  }
  console.log("ok:", what);
}

const w = await client.POST("/api/warehouses", { body: { name: "South" } });
check(w.response.status === 201, "create a warehouse");
const warehouse = w.data as Warehouse;

const ids: number[] = [];
for (const [sku, quantity, price] of [
  ["T-2", 4, "1.25"],
  ["T-1", 4, "99.99"],
  ["T-3", 8, "0.01"],
] as const) {
  const r = await client.POST("/api/items", {
    body: { sku, quantity, price, warehouseId: warehouse.id!, kind: "part" },
  });
  const item = r.data as Item;
  check(r.response.status === 201 && item.price === price, `create ${sku} (decimal ${price})`);
  ids.push(item.id!);
}

const one = await client.GET("/api/items/{id}", { params: { path: { id: ids[0] } } });
check(one.response.status === 200 && (one.data as Item).sku === "T-2", "fetch one");

const put = await client.PUT("/api/items/{id}", {
  params: { path: { id: ids[0] } },
  body: { sku: "T-2", quantity: 4, price: "1.50", warehouseId: warehouse.id!, kind: "tool" },
});
check(put.response.status === 200 && (put.data as Item).kind === "tool", "replace");

const patched = await client.PATCH("/api/items/{id}", {
  params: { path: { id: ids[0] } },
  body: { quantity: 4 },
});
check(patched.response.status === 200 && (patched.data as Item).price === "1.50", "merge patch");

// Arrays go as repeated keys (openapi-fetch's default): sort=-quantity&sort=sku.
const list = await client.GET("/api/items", {
  params: {
    query: {
      filter: JSON.stringify([{ field: "quantity", operator: "=", value: 4 }]),
      sort: ["-quantity", "sku"],
      fields: ["sku", "quantity"],
    },
  },
});
const rows = list.data as Item[];
check(
  list.response.status === 200 && rows.map((r) => r.sku).join(",") === "T-1,T-2",
  "filter, two sort keys and fields",
);
check(
  rows.every((r) => Object.keys(r).sort().join(",") === "quantity,sku"),
  "only the fields asked for",
);

const gone = await client.DELETE("/api/items/{id}", { params: { path: { id: ids[2] } } });
check(gone.response.status === 204, "delete");
