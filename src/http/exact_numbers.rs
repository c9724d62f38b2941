//! Integers judged on the digits a JSON body wrote, not on the float they
//! parsed to.
//!
//! serde_json reads `1999.00000000000001` as the float 1999.0 (the nearest
//! one), so an integer field would take it as 1999, silently dropping what
//! the README calls a fraction (a 422). `arbitrary_precision` would keep
//! the text, but changes every `Number` in the program (equality,
//! arithmetic, every crate that reads one). Instead, [`scan`] walks the
//! body's text once and notes each number whose digits hold a fraction
//! while its float is whole — the only numbers the float misreports for an
//! integer — with where it is; [`refuse_in_integers`] refuses those the
//! input schema declares integers. Fractions the float keeps (`1999.5`)
//! are the schema's business as before.

use serde_json::Value;

use crate::error::{ApiError, FieldError};
use crate::model::value::has_fraction;

/// One step into a JSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// A number whose written fraction its float lost, or a whole number
/// written as a float of 2^53 or more (which a float cannot hold
/// exactly), and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostFraction {
    pub path: Vec<Step>,
    pub text: String,
    /// Whole, but written as a float too large to be exact.
    pub too_large: bool,
}

/// A container being walked: an object (its current key; whether a key is
/// due next) or an array (the current index).
enum Frame {
    Object { key: String, expect_key: bool },
    Array { index: usize },
}

/// The numbers in `json` (valid JSON text: serde_json has parsed it) whose
/// fraction the float lost. Linear in the text; most bodies have no `.`,
/// `e` or `E` outside strings and end with an empty list.
pub fn scan(json: &[u8]) -> Vec<LostFraction> {
    let mut found = Vec::new();
    if !json.iter().any(|b| matches!(b, b'.' | b'e' | b'E')) {
        return found;
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            b'"' => {
                let start = i;
                i += 1;
                while i < json.len() && json[i] != b'"' {
                    i += if json[i] == b'\\' { 2 } else { 1 };
                }
                let end = (i + 1).min(json.len());
                if let Some(Frame::Object { key, expect_key }) = stack.last_mut() {
                    if *expect_key {
                        *key = serde_json::from_slice(&json[start..end]).unwrap_or_default();
                        *expect_key = false;
                    }
                }
            }
            b'{' => stack.push(Frame::Object {
                key: String::new(),
                expect_key: true,
            }),
            b'[' => stack.push(Frame::Array { index: 0 }),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::Object { expect_key, .. }) => *expect_key = true,
                Some(Frame::Array { index }) => *index += 1,
                None => {}
            },
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i + 1 < json.len()
                    && matches!(json[i + 1], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    i += 1;
                }
                let text = std::str::from_utf8(&json[start..=i]).unwrap_or("");
                let float = text.parse::<f64>().ok();
                let whole_float = float.is_some_and(|f| f.is_finite() && f.fract() == 0.0);
                let fraction = whole_float && has_fraction(text);
                // `1e16`, `9007199254740993.0`: a float, whatever digits
                // were sent, once past 2^53 (an integer written as digits
                // alone is read exactly and is not noted).
                let too_large = whole_float
                    && !fraction
                    && text.contains(['.', 'e', 'E'])
                    && float.is_some_and(|f| f.abs() >= 9_007_199_254_740_992.0);
                if fraction || too_large {
                    found.push(LostFraction {
                        too_large,
                        path: stack
                            .iter()
                            .map(|f| match f {
                                Frame::Object { key, .. } => Step::Key(key.clone()),
                                Frame::Array { index } => Step::Index(*index),
                            })
                            .collect(),
                        text: text.to_string(),
                    });
                }
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// A 422 naming each of `found` that `schema` (a body's input schema; an
/// array body takes it per item, as a bulk write does) declares an
/// integer: the float would have passed it as a whole number.
pub fn refuse_in_integers(found: &[LostFraction], schema: &Value) -> Result<(), ApiError> {
    let errors: Vec<FieldError> = found
        .iter()
        .filter(|n| declares_integer(schema, &n.path))
        .map(|n| {
            let field = field_path(&n.path);
            FieldError {
                message: if n.too_large {
                    format!(
                        "{field} must be an integer: {} is a float too large to be exact; send its digits.",
                        shortened(&n.text)
                    )
                } else {
                    format!(
                        "{field} must be an integer: {} has a fraction.",
                        shortened(&n.text)
                    )
                },
                field,
                code: "type".into(),
            }
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation(errors))
    }
}

/// Whether `schema` at `path` takes integers and not other numbers.
fn declares_integer(schema: &Value, path: &[Step]) -> bool {
    let mut s = schema;
    for (depth, step) in path.iter().enumerate() {
        let next = match step {
            Step::Key(k) => s
                .get("properties")
                .and_then(|p| p.get(k))
                .or_else(|| s.get("additionalProperties").filter(|a| a.is_object())),
            // A bulk body is an array of records checked one by one
            // against the record schema.
            Step::Index(_) => s.get("items").or((depth == 0).then_some(s)),
        };
        match next {
            Some(n) => s = n,
            None => return false,
        }
    }
    let types: Vec<&str> = match s.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    types.contains(&"integer") && !types.contains(&"number")
}

/// `year`, `[2].year`, `pagination.size`: the form field errors use.
fn field_path(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Index(i) => out.push_str(&format!("[{i}]")),
            Step::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
        }
    }
    out
}

/// A number as written, cut to its first and last digits when long: an
/// error echoes what was sent, never a megabyte of it.
fn shortened(text: &str) -> String {
    const EDGE: usize = 20;
    if text.len() <= 2 * EDGE + 3 || !text.is_ascii() {
        return text.chars().take(2 * EDGE + 3).collect();
    }
    format!(
        "{}…{} ({} characters)",
        &text[..EDGE],
        &text[text.len() - EDGE..],
        text.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_long_number_is_echoed_shortened() {
        let long = format!("0.{}1", "0".repeat(900_000));
        let short = shortened(&long);
        assert!(short.len() < 100, "{short}");
        assert!(short.contains("900003 characters"), "{short}");
        assert_eq!(shortened("1999.5"), "1999.5");
    }

    fn paths(json: &str) -> Vec<(String, String)> {
        scan(json.as_bytes())
            .into_iter()
            .map(|n| (field_path(&n.path), n.text))
            .collect()
    }

    #[test]
    fn only_numbers_whose_float_lost_a_fraction_are_noted() {
        assert_eq!(
            paths(
                r#"{"year": 1999.00000000000001, "ok": 1999.0, "half": 1.5,
                   "s": "1999.00000000000001", "n": [1, 2e-400, {"k\"ey": 3.0000000000000001}]}"#
            ),
            [
                ("year".to_string(), "1999.00000000000001".to_string()),
                ("n[1]".to_string(), "2e-400".to_string()),
                ("n[2].k\"ey".to_string(), "3.0000000000000001".to_string()),
            ]
        );
        assert!(paths(r#"{"a": 1, "b": "x.y"}"#).is_empty());
        assert_eq!(
            paths(r#"[{"y": 1}, {"y": 7.00000000000000001}]"#),
            [("[1].y".to_string(), "7.00000000000000001".to_string())]
        );
    }

    #[test]
    fn integers_are_refused_and_numbers_kept() {
        let schema = json!({"type": "object", "properties": {
            "year": {"type": ["integer", "null"]},
            "price": {"type": "number"},
        }});
        let found = scan(br#"{"year": 1999.00000000000001, "price": 2.00000000000000001}"#);
        let err = refuse_in_integers(&found, &schema).unwrap_err();
        assert_eq!(err.errors.len(), 1);
        assert_eq!(err.errors[0].field, "year");
        let found = scan(br#"{"price": 2.00000000000000001}"#);
        assert!(refuse_in_integers(&found, &schema).is_ok());
        // A bulk body: the record schema applies to each item.
        let found = scan(br#"[{"year": 1}, {"year": 1999.00000000000001}]"#);
        let err = refuse_in_integers(&found, &schema).unwrap_err();
        assert_eq!(err.errors[0].field, "[1].year");
    }
}
