//! The generated documentation (§11): the OpenAPI document
//! ([`openapi`]), made once at start-up from the routes the server
//! serves, and the HTML reference at `/docs` ([`page`]) rendered from it.

pub mod openapi;
pub mod page;

use serde_json::Value;

/// `{"$ref": "#/components/…"}` → the definition in `doc`; anything
/// else as it is.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => doc.pointer(r.trim_start_matches('#')).unwrap_or(v),
        None => v,
    }
}
