//! Bracketed parameters (`a[b]=1`, `a[]=1&a[]=2`) as a JSON tree of
//! strings, for form bodies, action parameters and Yii-style filters
//! (§6.2, §7). Types come later, from a schema or the model.
//!
//! The parser is ours rather than `serde_qs`: we need the raw tree of
//! strings, in request order, with hard bounds on depth and size for
//! hostile input.

use serde_json::{Map, Value};

use crate::error::ApiError;

/// Deepest bracket nesting accepted (`a[b][c]…`).
const MAX_DEPTH: usize = 16;

/// Splits `a[b][]` into `["a", "b", ""]`; a key with unbalanced brackets is
/// taken literally, as PHP does.
fn segments(key: &str) -> Vec<&str> {
    let Some(open) = key.find('[') else {
        return vec![key];
    };
    if open == 0 {
        return vec![key];
    }
    let mut out = vec![&key[..open]];
    let mut rest = &key[open..];
    while let Some(stripped) = rest.strip_prefix('[') {
        match stripped.find(']') {
            Some(close) => {
                out.push(&stripped[..close]);
                rest = &stripped[close + 1..];
            }
            None => return vec![key],
        }
    }
    if !rest.is_empty() {
        return vec![key];
    }
    out
}

/// Builds the nested tree of `a[b]=1` pairs: `{"a": {"b": "1"}}`. Objects
/// keyed `0..n` become arrays.
pub fn nest<I>(pairs: I) -> Result<Value, ApiError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut root = Value::Object(Map::new());
    for (key, value) in pairs {
        let segs = segments(&key);
        if segs.len() > MAX_DEPTH {
            return Err(ApiError::bad_query(format!(
                "Parameter '{}' nests deeper than {MAX_DEPTH} levels.",
                segs[0]
            )));
        }
        if key.is_empty() {
            // `=v`: an empty name is a name, not an array push, so the
            // tree stays an object (JSON bodies may have "" keys too).
            if let Value::Object(map) = &mut root {
                map.insert(String::new(), Value::String(value));
            }
            continue;
        }
        insert(&mut root, &segs, Value::String(value));
    }
    Ok(arrays(root))
}

fn insert(node: &mut Value, segs: &[&str], value: Value) {
    let Some((first, rest)) = segs.split_first() else {
        *node = value;
        return;
    };
    if first.is_empty() {
        if !node.is_array() {
            *node = Value::Array(Vec::new());
        }
        if let Value::Array(items) = node {
            items.push(Value::Null);
            if let Some(last) = items.last_mut() {
                insert(last, rest, value);
            }
        }
        return;
    }
    if let Value::Array(items) = node {
        // `a[]=x&a[k]=y`: keep what was there under numeric keys.
        let map = std::mem::take(items)
            .into_iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect();
        *node = Value::Object(map);
    }
    if !node.is_object() {
        *node = Value::Object(Map::new());
    }
    if let Value::Object(map) = node {
        let child = map.entry(first.to_string()).or_insert(Value::Null);
        insert(child, rest, value);
    }
}

/// Merges `over` into `base`: objects merge key by key, recursively; any
/// other value in `over` replaces what `base` had.
pub fn deep_merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => deep_merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

fn arrays(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let sequential =
                !map.is_empty() && map.keys().enumerate().all(|(i, k)| k == &i.to_string());
            if sequential {
                Value::Array(map.into_iter().map(|(_, v)| arrays(v)).collect())
            } else {
                Value::Object(map.into_iter().map(|(k, v)| (k, arrays(v))).collect())
            }
        }
        Value::Array(items) => Value::Array(items.into_iter().map(arrays).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pairs(s: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(s.as_bytes()).into_owned().collect()
    }

    #[test]
    fn brackets_nest() {
        assert_eq!(nest(pairs("a[b]=1")).unwrap(), json!({"a": {"b": "1"}}));
        assert_eq!(
            nest(pairs("pagination[page]=2&pagination[size]=5&x=y")).unwrap(),
            json!({"pagination": {"page": "2", "size": "5"}, "x": "y"})
        );
        assert_eq!(
            nest(pairs("f[in][]=A&f[in][]=B")).unwrap(),
            json!({"f": {"in": ["A", "B"]}})
        );
        assert_eq!(
            nest(pairs("a[0]=x&a[1]=y")).unwrap(),
            json!({"a": ["x", "y"]})
        );
    }

    #[test]
    fn malformed_brackets_are_literal_keys() {
        assert_eq!(nest(pairs("a[b=1")).unwrap(), json!({"a[b": "1"}));
        assert_eq!(nest(pairs("[x]=1")).unwrap(), json!({"[x]": "1"}));
        assert_eq!(nest(pairs("a[b]c=1")).unwrap(), json!({"a[b]c": "1"}));
    }

    #[test]
    fn query_and_body_merge_deeply_body_winning() {
        let mut q = nest(pairs("pagination[page]=2&pagination[size]=9&a=1")).unwrap();
        deep_merge(&mut q, nest(pairs("pagination[size]=5&b=2")).unwrap());
        assert_eq!(
            q,
            json!({"pagination": {"page": "2", "size": "5"}, "a": "1", "b": "2"})
        );
    }

    #[test]
    fn depth_is_bounded() {
        let key = format!("a{}", "[b]".repeat(40));
        assert!(nest(vec![(key, "1".into())]).is_err());
    }

    #[test]
    fn conflicting_shapes_do_not_panic() {
        let v = nest(pairs("a=1&a[b]=2&a[]=3&a[c][]=4")).unwrap();
        assert!(v["a"].is_object() || v["a"].is_array());
    }

    #[test]
    fn an_empty_name_is_a_key_and_the_tree_stays_an_object() {
        let v = nest(pairs("=1&a=2&=3")).unwrap();
        assert_eq!(v, serde_json::json!({"": "3", "a": "2"}));
    }
}
