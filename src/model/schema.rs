//! JSON Schemas derived from field declarations.
//!
//! Validation (422s) and, later, OpenAPI read these; the constraints are
//! written once, on the fields.

use serde_json::{json, Map, Value};

use super::{Field, FieldType, Resource};

/// Schema of one field's value. Optional fields also accept `null`.
pub fn field_schema(f: &Field) -> Value {
    let mut s = Map::new();
    let ty = match f.ty {
        FieldType::Integer => "integer",
        FieldType::Number => "number",
        FieldType::String
        | FieldType::DateTime
        | FieldType::Date
        | FieldType::Time
        | FieldType::Decimal { .. }
        | FieldType::Uuid => "string",
        FieldType::Boolean => "boolean",
        FieldType::Json => "",
    };
    if !ty.is_empty() {
        if f.required || f.primary_key {
            s.insert("type".into(), json!(ty));
        } else {
            s.insert("type".into(), json!([ty, "null"]));
        }
    }
    match f.ty {
        FieldType::DateTime => {
            s.insert("format".into(), json!("date-time"));
        }
        FieldType::Date => {
            s.insert("format".into(), json!("date"));
        }
        FieldType::Uuid => {
            s.insert("format".into(), json!("uuid"));
        }
        // JSON Schema's `time` has a time zone; restkit's times of day
        // have none: the pattern says what is served.
        FieldType::Time => {
            s.insert(
                "pattern".into(),
                json!("^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?$"),
            );
        }
        FieldType::Decimal { precision, scale } => {
            s.insert("format".into(), json!("decimal"));
            let int = precision - scale;
            let pattern = if scale == 0 {
                format!("^-?[0-9]{{1,{int}}}$")
            } else {
                format!("^-?[0-9]{{1,{}}}\\.[0-9]{{{scale}}}$", int.max(1))
            };
            s.insert("pattern".into(), json!(pattern));
        }
        FieldType::Json => {
            if let Some(own) = &f.json_schema {
                let mut own = own.clone();
                // Optional: null too — added to the schema's own type
                // where it names one, so errors still point inside.
                if !f.required {
                    own = match own.get("type").cloned() {
                        Some(Value::String(t)) => {
                            own["type"] = json!([t, "null"]);
                            own
                        }
                        _ => json!({"anyOf": [own, {"type": "null"}]}),
                    };
                }
                if let Value::Object(own) = own {
                    s.extend(own);
                }
            }
        }
        _ => {}
    }
    if let Some(n) = f.max_length {
        s.insert("maxLength".into(), json!(n));
    }
    match f.min_length {
        Some(n) => {
            s.insert("minLength".into(), json!(n));
        }
        // A required string must say something: "" is not a title.
        None if f.required && f.ty == FieldType::String => {
            s.insert("minLength".into(), json!(1));
        }
        None => {}
    }
    // Integers are stored as signed 64-bit: the range bounds them even
    // when the declaration does not, so nothing overflows to NULL.
    let (lo, hi) = if f.ty == FieldType::Integer {
        (Some(json!(i64::MIN)), Some(json!(i64::MAX)))
    } else {
        (None, None)
    };
    if let Some(v) = f.minimum.map(number).or(lo) {
        s.insert("minimum".into(), v);
    }
    if let Some(v) = f.maximum.map(number).or(hi) {
        s.insert("maximum".into(), v);
    }
    if let Some(p) = &f.pattern {
        s.insert("pattern".into(), json!(p));
    }
    if let Some(e) = &f.enumeration {
        let mut e = e.clone();
        if !f.required {
            e.push(Value::Null);
        }
        s.insert("enum".into(), Value::Array(e));
    }
    if let Some(d) = &f.default {
        // An annotation: what a create that leaves the field out gets.
        s.insert("default".into(), d.clone());
    }
    if !f.description.is_empty() {
        s.insert("description".into(), json!(f.description));
    }
    if f.read_only || f.primary_key || f.created_at || f.updated_at {
        s.insert("readOnly".into(), json!(true));
    }
    Value::Object(s)
}

/// Integral bounds print as integers so messages read `maximum of 2100`.
fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9e15 {
        json!(n as i64)
    } else {
        json!(n)
    }
}

/// Schema a request body must satisfy to create (`create == true`) or
/// replace a record: the writable fields, the required ones required, and
/// nothing else.
pub fn input_schema(r: &Resource, create: bool) -> Value {
    let mut props = Map::new();
    let mut required = Vec::new();
    for i in r.writable(create) {
        let f = &r.fields[i];
        props.insert(f.name.clone(), field_schema(f));
        // A required field with a default takes the default when omitted.
        if f.required && f.default.is_none() {
            required.push(json!(f.name));
        }
    }
    json!({
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::builder::*;
    use crate::model::FieldType;

    #[test]
    fn required_fields_are_required_and_optional_ones_nullable() {
        let r = Resource::new("books", "books")
            .field(Field::new("id", FieldType::Integer).primary_key())
            .field(
                Field::new("title", FieldType::String)
                    .required()
                    .max_length(200),
            )
            .field(Field::new("year", FieldType::Integer).range(0.0, 2100.0))
            .field(Field::new("createdAt", FieldType::DateTime).created_at());
        let s = input_schema(&r, true);
        assert_eq!(s["required"], json!(["title"]));
        assert_eq!(s["properties"]["year"]["type"], json!(["integer", "null"]));
        assert_eq!(s["properties"]["year"]["maximum"], json!(2100));
        assert!(s["properties"].get("id").is_none());
        assert!(s["properties"].get("createdAt").is_none());
    }

    #[test]
    fn unbounded_integers_still_fit_64_bits() {
        let r = Resource::new("t", "t")
            .field(Field::new("id", FieldType::Integer).primary_key())
            .field(Field::new("count", FieldType::Integer));
        let s = input_schema(&r, true);
        assert_eq!(s["properties"]["count"]["maximum"], json!(i64::MAX));
        let v = crate::validate::Schema::compile(s).unwrap();
        let errs = v.errors(&json!({"count": 9223372036854775808u64}), "");
        assert_eq!(
            (errs[0].field.as_str(), errs[0].code.as_str()),
            ("count", "maximum")
        );
    }
}
