//! JSON Schema validation with precise 422s (§7).
//!
//! Schemas are compiled once, at start-up ([`Schema::compile`]); a request
//! only runs them. Every failed constraint becomes one [`FieldError`] with a
//! dotted field path (`pagination.size`, `[2].title` in bulk writes), a
//! stable snake_case code (`required`, `max_length`, `type`, …) and a
//! sentence. All errors are reported at once.
//!
//! [`coerce`] turns the strings of form bodies and query strings into the
//! types a schema asks for (`"2"` → `2`); what does not parse stays a
//! string, so the validator reports it.

use jsonschema::error::ValidationErrorKind;
use jsonschema::Validator;
use serde_json::{Map, Value};

use crate::error::{plural, ApiError, FieldError};

/// A compiled schema and its source.
pub struct Schema {
    pub source: Value,
    validator: Validator,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schema")
            .field("source", &self.source)
            .finish()
    }
}

impl Schema {
    pub fn compile(source: Value) -> Result<Schema, String> {
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&source)
            .map_err(|e| e.to_string())?;
        Ok(Schema { source, validator })
    }

    /// All failed constraints, field paths prefixed with `prefix`
    /// (`"[2]"` for the third record of a bulk write).
    pub fn errors(&self, instance: &Value, prefix: &str) -> Vec<FieldError> {
        let mut out = Vec::new();
        for e in self.validator.iter_errors(instance) {
            let base = join_path(prefix, &pointer_to_path(e.instance_path().as_str()));
            match e.kind() {
                ValidationErrorKind::Required { property } => {
                    let name = property.as_str().unwrap_or_default();
                    let field = join_path(&base, name);
                    out.push(FieldError {
                        message: format!("{field} is required."),
                        field,
                        code: "required".into(),
                    });
                }
                ValidationErrorKind::AdditionalProperties { unexpected } => {
                    for name in unexpected {
                        let field = join_path(&base, name);
                        out.push(FieldError {
                            message: format!("{field} is not a known field."),
                            field,
                            code: "unknown_field".into(),
                        });
                    }
                }
                kind => {
                    let (code, message) = describe(kind, &e.to_string());
                    out.push(FieldError {
                        field: base,
                        code: code.into(),
                        message,
                    });
                }
            }
        }
        out
    }

    /// `Ok` or a 422 listing every failure.
    pub fn check(&self, instance: &Value) -> Result<(), ApiError> {
        if self.validator.is_valid(instance) {
            return Ok(());
        }
        Err(ApiError::validation(self.errors(instance, "")))
    }
}

fn describe(kind: &ValidationErrorKind, fallback: &str) -> (&'static str, String) {
    use ValidationErrorKind as K;
    match kind {
        K::Type { kind } => ("type", format!("must be of type {}.", type_name(kind))),
        K::MaxLength { limit } => (
            "max_length",
            format!("must be at most {}.", plural(*limit, "character")),
        ),
        K::MinLength { limit } => (
            "min_length",
            format!("must be at least {}.", plural(*limit, "character")),
        ),
        K::Maximum { limit } => ("maximum", format!("must be at most {limit}.")),
        K::Minimum { limit } => ("minimum", format!("must be at least {limit}.")),
        K::ExclusiveMaximum { limit } => ("maximum", format!("must be less than {limit}.")),
        K::ExclusiveMinimum { limit } => ("minimum", format!("must be greater than {limit}.")),
        K::Pattern { pattern } => ("pattern", format!("must match the pattern {pattern}.")),
        K::Enum { options } => {
            // The values a client can send; `null` (an optional field's
            // "none") is said in words.
            let all = options.as_array().cloned().unwrap_or_default();
            let listed: Vec<String> = all
                .iter()
                .filter(|v| !v.is_null())
                .map(Value::to_string)
                .collect();
            let none = if all.iter().any(Value::is_null) {
                ", or null"
            } else {
                ""
            };
            (
                "enum",
                format!("must be one of {}{none}.", listed.join(", ")),
            )
        }
        K::Format { format } => ("format", format!("must be a valid {format}.")),
        K::MaxItems { limit } => (
            "max_items",
            format!("must have at most {}.", plural(*limit, "item")),
        ),
        K::MinItems { limit } => (
            "min_items",
            format!("must have at least {}.", plural(*limit, "item")),
        ),
        K::Constant { expected_value } => ("const", format!("must be {expected_value}.")),
        _ => ("invalid", fallback.to_string()),
    }
}

fn type_name(kind: &jsonschema::error::TypeKind) -> String {
    match kind {
        jsonschema::error::TypeKind::Single(t) => t.to_string(),
        jsonschema::error::TypeKind::Multiple(ts) => {
            let names: Vec<String> = ts.iter().map(|t| t.to_string()).collect();
            names.join(" or ")
        }
    }
}

/// `/a/b/0/c` → `a.b[0].c`.
fn pointer_to_path(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push('[');
            out.push_str(&seg);
            out.push(']');
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    out
}

fn join_path(base: &str, name: &str) -> String {
    match (base.is_empty(), name.is_empty()) {
        (true, _) => name.to_string(),
        (_, true) => base.to_string(),
        _ if name.starts_with('[') => format!("{base}{name}"),
        _ => format!("{base}.{name}"),
    }
}

/// Converts string leaves to the types `schema` declares for them, where
/// they parse. Follows `properties`, `items` and `additionalProperties`.
pub fn coerce(value: &mut Value, schema: &Value) {
    match value {
        Value::Object(map) => coerce_object(map, schema),
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for v in items {
                    coerce(v, item_schema);
                }
            }
        }
        Value::String(s) => {
            if let Some(v) = coerce_str(s, schema) {
                *value = v;
            }
        }
        _ => {}
    }
}

fn coerce_object(map: &mut Map<String, Value>, schema: &Value) {
    let props = schema.get("properties").and_then(Value::as_object);
    let extra = schema.get("additionalProperties").filter(|s| s.is_object());
    for (k, v) in map.iter_mut() {
        if let Some(s) = props.and_then(|p| p.get(k)).or(extra) {
            coerce(v, s);
        }
    }
}

/// A body that shows what `schema` takes: each property with its default,
/// or an empty value of its type (the browsable page's form starts with
/// it). Read-only properties are left out.
pub fn example_body(schema: &Value) -> Value {
    if let Some(default) = schema.get("default") {
        return default.clone();
    }
    // A value the schema takes, where it says enough to make one: the
    // first allowed value, a well-formed date, a long-enough text.
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.iter().find(|v| !v.is_null()))
    {
        return first.clone();
    }
    let types = types_of(schema);
    let format = schema.get("format").and_then(Value::as_str);
    match format {
        Some("date") => return Value::from("2024-01-31"),
        Some("date-time") => return Value::from("2024-01-31T12:00:00Z"),
        Some("uuid") => return Value::from("0b8e3c3a-58a1-4c3e-9a3e-8f1f2b0c8d11"),
        Some("decimal") => {
            // `^-?[0-9]{1,N}\.[0-9]{S}$`: zero with S decimals.
            let scale = schema
                .get("pattern")
                .and_then(Value::as_str)
                .and_then(|p| p.rsplit_once("\\.[0-9]{"))
                .and_then(|(_, rest)| rest.split('}').next()?.parse::<usize>().ok())
                .unwrap_or(0);
            return Value::from(if scale == 0 {
                "0".to_string()
            } else {
                format!("0.{}", "0".repeat(scale))
            });
        }
        _ => {}
    }
    let minimum = schema.get("minimum").and_then(Value::as_f64);
    // A pattern says more than an example here can: an optional field
    // starts empty (null) rather than with a value the pattern refuses.
    if schema.get("pattern").is_some() && types.contains(&"null") {
        return Value::Null;
    }
    match types.iter().find(|t| **t != "null").copied() {
        Some("object") | None if schema.get("properties").is_some() => {
            let props = schema.get("properties").and_then(Value::as_object);
            let map: Map<String, Value> = props
                .into_iter()
                .flatten()
                .filter(|(_, s)| s.get("readOnly") != Some(&Value::Bool(true)))
                .map(|(k, s)| (k.clone(), example_body(s)))
                .collect();
            Value::Object(map)
        }
        Some("object") => Value::Object(Map::new()),
        Some("string") => {
            let min = schema.get("minLength").and_then(Value::as_u64).unwrap_or(0);
            let max = schema
                .get("maxLength")
                .and_then(Value::as_u64)
                .unwrap_or(u64::MAX);
            if min == 0 {
                Value::String(String::new())
            } else {
                Value::String(
                    "text"
                        .chars()
                        .cycle()
                        .take(min.max(4).min(max) as usize)
                        .collect(),
                )
            }
        }
        Some("integer") => Value::from(minimum.map_or(0, |m| m.max(0.0).ceil() as i64)),
        Some("number") => Value::from(minimum.map_or(0.0, |m| m.max(0.0))),
        Some("boolean") => Value::Bool(false),
        Some("array") => Value::Array(Vec::new()),
        _ => Value::Null,
    }
}

/// The JSON types a schema allows (`type`, one or a list).
pub(crate) fn types_of(schema: &Value) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn coerce_str(s: &str, schema: &Value) -> Option<Value> {
    let types = types_of(schema);
    if types.contains(&"string") {
        return None;
    }
    for t in &types {
        let v = match *t {
            "integer" => crate::model::parse_integral(s.trim()).map(Value::from),
            "number" => s
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(Value::from),
            "boolean" => match s {
                "true" | "1" => Some(Value::Bool(true)),
                "false" | "0" => Some(Value::Bool(false)),
                _ => None,
            },
            "null" if s.is_empty() => Some(Value::Null),
            _ => None,
        };
        if v.is_some() {
            return v;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_bodies_show_defaults_and_types() {
        let schema = serde_json::json!({
            "type": "object",
            "properties": {
                "title": {"type": "string"},
                "year": {"type": ["integer", "null"]},
                "rating": {"type": "integer", "default": 3},
                "id": {"type": "integer", "readOnly": true}
            }
        });
        assert_eq!(
            example_body(&schema),
            serde_json::json!({"title": "", "year": 0, "rating": 3})
        );
    }
    use serde_json::json;

    fn schema() -> Schema {
        Schema::compile(json!({
            "type": "object",
            "properties": {
                "title": {"type": "string", "maxLength": 3},
                "year": {"type": ["integer", "null"], "minimum": 0},
                "pagination": {"type": "object", "properties": {
                    "page": {"type": "integer", "minimum": 1}}}
            },
            "required": ["title"],
            "additionalProperties": false
        }))
        .unwrap()
    }

    #[test]
    fn an_enum_lists_what_may_be_sent_and_says_null_in_words() {
        let s = Schema::compile(json!({"type": "object", "properties": {
            "kind": {"type": ["string", "null"], "enum": ["cat", "dog", null]}}}))
        .unwrap();
        let e = s.errors(&json!({"kind": "cow"}), "");
        assert_eq!(e[0].code, "enum");
        assert_eq!(e[0].message, "must be one of \"cat\", \"dog\", or null.");
    }

    #[test]
    fn every_failure_is_reported_with_its_path() {
        let errs = schema().errors(
            &json!({"year": -1, "bogus": 1, "pagination": {"page": 0}}),
            "",
        );
        let mut got: Vec<(String, String)> = errs.into_iter().map(|e| (e.field, e.code)).collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("bogus".into(), "unknown_field".into()),
                ("pagination.page".into(), "minimum".into()),
                ("title".into(), "required".into()),
                ("year".into(), "minimum".into()),
            ]
        );
    }

    #[test]
    fn bulk_prefix_indexes_the_record() {
        let errs = schema().errors(&json!({"title": "long"}), "[2]");
        assert_eq!(errs[0].field, "[2].title");
        assert_eq!(errs[0].code, "max_length");
    }

    #[test]
    fn coercion_follows_the_schema_and_leaves_garbage() {
        let s = schema();
        let mut v = json!({"title": "12", "year": "2010", "pagination": {"page": "x"}});
        coerce(&mut v, &s.source);
        assert_eq!(
            v,
            json!({"title": "12", "year": 2010, "pagination": {"page": "x"}})
        );
    }

    #[test]
    fn pointer_paths_read_naturally() {
        assert_eq!(pointer_to_path("/a/0/b"), "a[0].b");
        assert_eq!(pointer_to_path(""), "");
    }
}
