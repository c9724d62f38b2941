//! CSV (§5.1, RFC 4180): a header row of the first record's keys (unless
//! `csv_header=false`), then one row per record in those columns; nested
//! values are JSON text in their cell; `null` is an empty cell.
//!
//! Cells that start with `=`, `+`, `-`, `@`, tab or carriage return are
//! prefixed with `'` so that spreadsheets do not run them as formulas
//! (OWASP "CSV injection"); `format.csv_formula_guard = false` turns that
//! off for consumers that are not spreadsheets.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::Content;

/// How to write CSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsvOptions {
    pub header: bool,
    pub formula_guard: bool,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            header: true,
            formula_guard: true,
        }
    }
}

/// Encodes content as CSV rows. A single record is one row; an envelope is
/// its records; any other value is one row of one cell.
pub fn encode(content: &Content, opts: CsvOptions) -> Bytes {
    let rows: Vec<&Map<String, Value>> = match content {
        Content::Empty => Vec::new(),
        Content::Record(r) => vec![r],
        Content::Records(rs) => rs.iter().collect(),
        Content::Value(v) => objects(v),
    };
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::with_capacity(4096));
    let columns: Vec<&String> = match rows.first() {
        Some(first) => first.keys().collect(),
        None => match content {
            Content::Value(v) if !v.is_object() && !v.is_array() => {
                let _ = w.write_record([cell(v, opts)]);
                return finish(w);
            }
            _ => Vec::new(),
        },
    };
    let mut scratch = Vec::with_capacity(256);
    if opts.header && !columns.is_empty() {
        for c in &columns {
            let _ = w.write_field(guarded(c.as_bytes(), opts, &mut scratch));
        }
        let _ = w.write_record(None::<&[u8]>);
    }
    for row in rows {
        // Records of a page share their keys' order: take the values in
        // order then, and look keys up only when a record differs.
        let same = row.len() == columns.len() && row.keys().zip(&columns).all(|(k, c)| k == *c);
        if same {
            for v in row.values() {
                let _ = w.write_field(cell_into(v, opts, &mut scratch));
            }
        } else {
            for c in &columns {
                let field = match row.get(c.as_str()) {
                    Some(v) => cell_into(v, opts, &mut scratch),
                    None => &[][..],
                };
                let _ = w.write_field(field);
            }
        }
        let _ = w.write_record(None::<&[u8]>);
    }
    finish(w)
}

fn finish(w: csv::Writer<Vec<u8>>) -> Bytes {
    // Writing to a Vec cannot fail.
    Bytes::from(w.into_inner().unwrap_or_default())
}

/// The records a value holds: an array of objects, an envelope's
/// `records`, or one object.
fn objects(v: &Value) -> Vec<&Map<String, Value>> {
    match v {
        Value::Array(items) => items.iter().filter_map(Value::as_object).collect(),
        Value::Object(map) => match map.get("records").or_else(|| map.get("record")) {
            Some(inner) if map.contains_key("_meta") => objects(inner),
            _ => vec![map],
        },
        _ => Vec::new(),
    }
}

fn cell(v: &Value, opts: CsvOptions) -> Vec<u8> {
    let mut scratch = Vec::new();
    cell_into(v, opts, &mut scratch).to_vec()
}

/// The cell's bytes: borrowed from the value when it needs no change,
/// else written into `scratch` (no allocation per cell).
fn cell_into<'a>(v: &'a Value, opts: CsvOptions, scratch: &'a mut Vec<u8>) -> &'a [u8] {
    match v {
        Value::Null => &[],
        Value::String(s) => guarded(s.as_bytes(), opts, scratch),
        Value::Bool(true) => b"true",
        Value::Bool(false) => b"false",
        Value::Number(n) => {
            use std::io::Write as _;
            scratch.clear();
            let _ = write!(scratch, "{n}");
            scratch
        }
        // JSON text of an object or array starts with `{` or `[`: never
        // a formula.
        other => {
            scratch.clear();
            let _ = serde_json::to_writer(&mut *scratch, other);
            scratch
        }
    }
}

/// `s`, or `'` + `s` when the formula guard applies.
fn guarded<'a>(s: &'a [u8], opts: CsvOptions, scratch: &'a mut Vec<u8>) -> &'a [u8] {
    if opts.formula_guard && matches!(s.first(), Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')) {
        scratch.clear();
        scratch.push(b'\'');
        scratch.extend_from_slice(s);
        scratch
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn csv(v: Value, opts: CsvOptions) -> String {
        String::from_utf8(encode(&Content::Value(v), opts).to_vec()).unwrap()
    }

    #[test]
    fn rows_follow_the_first_records_columns() {
        let out = csv(
            json!([{"id": 1, "title": "a, \"b\"", "tags": ["x"]}, {"id": 2, "title": null}]),
            CsvOptions::default(),
        );
        assert_eq!(
            out,
            "id,title,tags\r\n1,\"a, \"\"b\"\"\",\"[\"\"x\"\"]\"\r\n2,,\r\n"
        );
        let out = csv(
            json!([{"id": 1}]),
            CsvOptions {
                header: false,
                ..CsvOptions::default()
            },
        );
        assert_eq!(out, "1\r\n");
    }

    #[test]
    fn formulas_are_defused_unless_turned_off() {
        let v = json!([{"a": "=1+1", "b": "-2", "c": "@x", "d": "\tx", "e": "ok", "f": -3}]);
        let out = csv(v.clone(), CsvOptions::default());
        assert_eq!(out.lines().nth(1).unwrap(), "'=1+1,'-2,'@x,'\tx,ok,-3");
        let out = csv(
            v,
            CsvOptions {
                formula_guard: false,
                ..CsvOptions::default()
            },
        );
        assert_eq!(out.lines().nth(1).unwrap(), "=1+1,-2,@x,\tx,ok,-3");
    }

    #[test]
    fn every_kind_of_cell_and_records_in_another_order() {
        let out = csv(
            json!([
                {"n": 1.5, "b": true, "o": {"k": "=x"}, "s": "+1"},
                {"s": "y", "n": -0.25, "b": false, "extra": 1},
                {"n": 7}
            ]),
            CsvOptions::default(),
        );
        assert_eq!(
            out,
            "n,b,o,s\r\n1.5,true,\"{\"\"k\"\":\"\"=x\"\"}\",'+1\r\n-0.25,false,,y\r\n7,,,\r\n"
        );
    }
}
