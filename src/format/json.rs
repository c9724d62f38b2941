//! JSON: the encoder, and key naming of values returned by Rust handlers.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::Content;

use crate::model::camel_case;

/// Serializes content as JSON. (Maps and values of JSON cannot fail to
/// serialize.)
pub fn encode(content: &Content) -> Bytes {
    let bytes = match content {
        Content::Empty => Vec::new(),
        Content::Record(r) => serde_json::to_vec(r).unwrap_or_default(),
        Content::Records(rs) => serde_json::to_vec(rs).unwrap_or_default(),
        Content::Value(v) => serde_json::to_vec(v).unwrap_or_default(),
    };
    Bytes::from(bytes)
}

/// Converts `snake_case` object keys to `camelCase`, recursively (§5.1:
/// "keys of values returned by Rust handlers are converted the same way").
pub fn camel_keys(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let needs = map.keys().any(|k| k.contains('_'));
            let mut out = Map::with_capacity(map.len());
            for (k, v) in map {
                let k = if needs && k.contains('_') {
                    camel_case(&k)
                } else {
                    k
                };
                out.insert(k, camel_keys(v));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(camel_keys).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_keys_are_converted() {
        assert_eq!(
            camel_keys(json!({"book_id": 1, "list": [{"borrowed_by": 2}]})),
            json!({"bookId": 1, "list": [{"borrowedBy": 2}]})
        );
    }
}
