//! Search (`q=`) and filters (`filter=`) → one typed predicate tree (§6.1,
//! §6.2).
//!
//! Three spellings produce the same [`Predicate`]:
//! - `q=(author:John Doe,title:Book 1*)`: equality pairs, ANDed; `*` makes a
//!   case-insensitive wildcard; `\,` `\:` `\(` `\)` `\\` escape.
//! - `filter=[{"field":"year","operator":">=","value":2000}]` (FreshRest
//!   JSON), with `{"and":[…]}`, `{"or":[…]}`, `{"not":…}`.
//! - `filter[year][gte]=2000&filter[author][in][]=A` (Yii2 DataFilter).
//!
//! Field names are API names, resolved against the model here: an unknown
//! (or hidden, or not filterable) field is a 400 naming it. Values are
//! checked against the field's type here too. Nothing here knows SQL.

use serde_json::{Map, Value};

use super::QueryError;
use crate::model::{FieldType, Resource};

/// Bounds for hostile input (§6.9).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_predicates: usize,
    pub max_in: usize,
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_predicates: 50,
            max_in: 1000,
            max_depth: 8,
        }
    }
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A typed condition over a resource's fields (indexes into
/// `Resource::fields`). Values are JSON of the field's type.
#[derive(Debug, Clone, PartialEq)]
pub enum Predicate {
    And(Vec<Predicate>),
    Or(Vec<Predicate>),
    Not(Box<Predicate>),
    Compare {
        field: usize,
        op: Op,
        value: Value,
    },
    In {
        field: usize,
        values: Vec<Value>,
        negate: bool,
    },
    /// Case-insensitive substring; `%` and `_` in `text` are literal.
    Contains {
        field: usize,
        text: String,
    },
    /// Case-insensitive match where `*` is any run of characters.
    Wildcard {
        field: usize,
        pattern: String,
    },
}

impl Predicate {
    /// Can this condition only match everything (or every non-null
    /// value)? An empty `like`, a wildcard of stars alone, `nin` of
    /// nothing, and any `and`/`or`/`not` built from such leaves. A bulk
    /// delete does not count such a filter as one: a client that sends an
    /// empty search box must not wipe the table.
    pub fn is_vacuous(&self) -> bool {
        match self {
            Predicate::And(items) => items.iter().all(Predicate::is_vacuous),
            Predicate::Or(items) => items.iter().any(Predicate::is_vacuous),
            Predicate::Not(inner) => inner.matches_nothing(),
            Predicate::Compare { .. } => false,
            Predicate::In { values, negate, .. } => *negate && values.is_empty(),
            Predicate::Contains { text, .. } => text.is_empty(),
            Predicate::Wildcard { pattern, .. } => pattern.chars().all(|c| c == '*'),
        }
    }

    /// Can this condition match nothing at all (`in` of nothing, the
    /// negation of a vacuous condition, …)?
    fn matches_nothing(&self) -> bool {
        match self {
            Predicate::And(items) => items.iter().any(Predicate::matches_nothing),
            Predicate::Or(items) => {
                !items.is_empty() && items.iter().all(Predicate::matches_nothing)
            }
            Predicate::Not(inner) => inner.is_vacuous(),
            Predicate::In { values, negate, .. } => !*negate && values.is_empty(),
            _ => false,
        }
    }

    /// Number of leaf conditions.
    pub fn leaves(&self) -> usize {
        match self {
            Predicate::And(v) | Predicate::Or(v) => v.iter().map(Predicate::leaves).sum(),
            Predicate::Not(p) => p.leaves(),
            _ => 1,
        }
    }

    pub fn depth(&self) -> usize {
        match self {
            Predicate::And(v) | Predicate::Or(v) => {
                1 + v.iter().map(Predicate::depth).max().unwrap_or(0)
            }
            Predicate::Not(p) => 1 + p.depth(),
            _ => 1,
        }
    }

    /// Conjunction of `parts`, flattened.
    pub fn all(parts: Vec<Predicate>) -> Option<Predicate> {
        let mut flat = Vec::new();
        for p in parts {
            match p {
                Predicate::And(inner) => flat.extend(inner),
                other => flat.push(other),
            }
        }
        match flat.len() {
            0 => None,
            1 => flat.pop(),
            _ => Some(Predicate::And(flat)),
        }
    }
}

/// Resolves API field names for filtering.
pub struct Fields<'a> {
    pub resource: &'a Resource,
    /// Fields the caller may read: any other is unknown (its existence is
    /// not revealed).
    pub readable: &'a [usize],
    /// Readable fields that may be filtered on; others are 400 not allowed.
    pub allowed: &'a [usize],
}

impl Fields<'_> {
    pub fn resolve(&self, name: &str, what: &str) -> Result<usize, QueryError> {
        let i = self
            .resource
            .field_index(name)
            .filter(|i| self.readable.contains(i))
            .ok_or_else(|| QueryError::UnknownField {
                param: what.to_string(),
                field: name.to_string(),
            })?;
        if !self.allowed.contains(&i) {
            return Err(QueryError::NotAllowed {
                param: what.to_string(),
                field: name.to_string(),
            });
        }
        Ok(i)
    }

    /// Converts a raw value (a JSON value, or a string from a query string)
    /// into the field's type; anything else is a 400.
    pub fn typed(&self, field: usize, raw: &Value) -> Result<Value, QueryError> {
        let f = &self.resource.fields[field];
        let bad = || QueryError::BadValue {
            field: f.name.clone(),
            expected: f.ty.as_str(),
            got: short(raw),
        };
        if let Value::String(s) = raw {
            literal_text(&f.name, s)?;
        }
        Ok(match (f.ty, raw) {
            (_, Value::Null) => Value::Null,
            (FieldType::Integer, Value::Number(n)) => {
                Value::from(crate::model::integral(n).ok_or_else(bad)?)
            }
            (FieldType::Integer, Value::String(s)) => {
                Value::from(crate::model::parse_integral(s.trim()).ok_or_else(bad)?)
            }
            (FieldType::Number, Value::Number(_)) => raw.clone(),
            (FieldType::Number, Value::String(s)) => {
                let n: f64 = s.trim().parse().map_err(|_| bad())?;
                if !n.is_finite() {
                    return Err(bad());
                }
                Value::from(n)
            }
            (FieldType::Boolean, Value::Bool(_)) => raw.clone(),
            (FieldType::Boolean, Value::String(s)) => match s.as_str() {
                "true" | "1" => Value::Bool(true),
                "false" | "0" => Value::Bool(false),
                _ => return Err(bad()),
            },
            (FieldType::String | FieldType::Json, Value::String(_)) => raw.clone(),
            (FieldType::String, Value::Number(n)) => Value::String(n.to_string()),
            (FieldType::DateTime, Value::String(s)) => {
                let t = chrono::DateTime::parse_from_rfc3339(s).map_err(|_| bad())?;
                Value::String(crate::model::value::format_datetime(t.to_utc()))
            }
            // Compared in their stored spelling: as dates, times, UUIDs
            // and exact decimals, not as free text.
            (FieldType::Date, Value::String(s)) => {
                Value::String(crate::model::value::parse_date(s.trim()).ok_or_else(bad)?)
            }
            (FieldType::Time, Value::String(s)) => {
                Value::String(crate::model::value::parse_time(s.trim()).ok_or_else(bad)?)
            }
            (FieldType::Uuid, Value::String(s)) => {
                Value::String(crate::model::value::parse_uuid(s.trim()).ok_or_else(bad)?)
            }
            (FieldType::Decimal { precision, scale }, Value::String(_) | Value::Number(_)) => {
                let units =
                    crate::model::value::decimal_units(raw, precision, scale).map_err(|_| bad())?;
                Value::String(crate::model::value::format_decimal(units, scale))
            }
            _ => return Err(bad()),
        })
    }

    fn is_text(&self, field: usize) -> bool {
        matches!(
            self.resource.fields[field].ty,
            FieldType::String | FieldType::Json
        )
    }
}

/// Text a database may not take literally is refused: SQLite ends a LIKE
/// pattern at a NUL character (so `%\0x` matched every row), and
/// PostgreSQL refuses NUL in text altogether.
pub fn literal_text(field: &str, s: &str) -> Result<(), QueryError> {
    if s.contains('\0') {
        return Err(QueryError::BadValue {
            field: field.to_string(),
            expected: "text without NUL characters",
            got: short(&Value::String(s.replace('\0', "\\0"))),
        });
    }
    Ok(())
}

fn short(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

// ------------------------------------------------------------------ q=

/// One `key:value` pair of `q`, unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPair {
    pub key: String,
    pub value: String,
}

/// Parses `(k:v,k2:v2)` into pairs. Unbalanced or unescaped parentheses,
/// a pair without `:`, an empty key or a dangling `\` are errors.
pub fn parse_search(input: &str) -> Result<Vec<SearchPair>, QueryError> {
    let bad = |why: &str| QueryError::Syntax {
        param: "q".into(),
        why: why.to_string(),
    };
    let inner = input
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| bad("expected (key:value,…)"))?;
    let mut pairs = Vec::new();
    let mut key = String::new();
    let mut value = String::new();
    let mut in_value = false;
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let next = chars.next().ok_or_else(|| bad("a '\\' ends the search"))?;
                if !matches!(next, ',' | ':' | '(' | ')' | '\\') {
                    return Err(bad("only \\, \\: \\( \\) and \\\\ are escapes"));
                }
                if in_value {
                    value.push(next)
                } else {
                    key.push(next)
                }
            }
            '(' | ')' => return Err(bad("unescaped parenthesis")),
            ':' if !in_value => in_value = true,
            ',' => {
                if !in_value {
                    return Err(bad("a pair has no ':'"));
                }
                pairs.push(take_pair(&mut key, &mut value)?);
                in_value = false;
            }
            c => {
                if in_value {
                    value.push(c)
                } else {
                    key.push(c)
                }
            }
        }
    }
    if !in_value {
        return Err(bad(if pairs.is_empty() && key.is_empty() {
            "empty search"
        } else {
            "a pair has no ':'"
        }));
    }
    pairs.push(take_pair(&mut key, &mut value)?);
    Ok(pairs)
}

fn take_pair(key: &mut String, value: &mut String) -> Result<SearchPair, QueryError> {
    let k = std::mem::take(key);
    if k.trim().is_empty() {
        return Err(QueryError::Syntax {
            param: "q".into(),
            why: "a pair has an empty key".into(),
        });
    }
    Ok(SearchPair {
        key: k.trim().to_string(),
        value: std::mem::take(value),
    })
}

/// Prints pairs back as `q` text (the inverse of [`parse_search`]).
pub fn print_search(pairs: &[SearchPair]) -> String {
    let esc = |s: &str| {
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            if matches!(c, ',' | ':' | '(' | ')' | '\\') {
                out.push('\\');
            }
            out.push(c);
        }
        out
    };
    let body: Vec<String> = pairs
        .iter()
        .map(|p| format!("{}:{}", esc(&p.key), esc(&p.value)))
        .collect();
    format!("({})", body.join(","))
}

/// `q` → predicate: equality per pair, wildcards where the value has `*`.
pub fn search(input: &str, fields: &Fields<'_>) -> Result<Predicate, QueryError> {
    let mut parts = Vec::new();
    for pair in parse_search(input)? {
        let field = fields.resolve(&pair.key, "q")?;
        if pair.value.contains('*') {
            literal_text(&pair.key, &pair.value)?;
            if !fields.is_text(field) {
                return Err(QueryError::BadValue {
                    field: pair.key,
                    expected: fields.resource.fields[field].ty.as_str(),
                    got: pair.value,
                });
            }
            parts.push(Predicate::Wildcard {
                field,
                pattern: pair.value,
            });
        } else {
            let value = fields.typed(field, &Value::String(pair.value))?;
            parts.push(Predicate::Compare {
                field,
                op: Op::Eq,
                value,
            });
        }
    }
    Ok(Predicate::all(parts).unwrap_or(Predicate::And(Vec::new())))
}

// ------------------------------------------------------------ filter=

fn syntax(why: impl Into<String>) -> QueryError {
    QueryError::Syntax {
        param: "filter".into(),
        why: why.into(),
    }
}

/// FreshRest JSON: an array (AND) of leaves `{"field","operator","value"}`
/// or groups `{"and":[…]}`, `{"or":[…]}`, `{"not":…}`.
pub fn filter_json(
    text: &str,
    fields: &Fields<'_>,
    limits: Limits,
) -> Result<Predicate, QueryError> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| syntax(format!("not valid JSON: {e}")))?;
    json_node(&v, fields, limits, 1)
}

fn check_depth(depth: usize, limits: Limits) -> Result<(), QueryError> {
    if depth > limits.max_depth {
        return Err(QueryError::TooComplex(format!(
            "filters nest deeper than {}",
            limits.max_depth
        )));
    }
    Ok(())
}

fn json_node(
    v: &Value,
    fields: &Fields<'_>,
    limits: Limits,
    depth: usize,
) -> Result<Predicate, QueryError> {
    check_depth(depth, limits)?;
    match v {
        Value::Array(items) => Ok(Predicate::And(
            items
                .iter()
                .map(|i| json_node(i, fields, limits, depth + 1))
                .collect::<Result<_, _>>()?,
        )),
        Value::Object(map) => {
            if let Some(inner) = map.get("and").or_else(|| map.get("or")) {
                if map.len() != 1 {
                    return Err(syntax("a group has exactly one key: and, or or not"));
                }
                let items = inner
                    .as_array()
                    .ok_or_else(|| syntax("and/or take an array"))?;
                let parts = items
                    .iter()
                    .map(|i| json_node(i, fields, limits, depth + 1))
                    .collect::<Result<_, _>>()?;
                return Ok(if map.contains_key("and") {
                    Predicate::And(parts)
                } else {
                    Predicate::Or(parts)
                });
            }
            if let Some(inner) = map.get("not") {
                if map.len() != 1 {
                    return Err(syntax("a group has exactly one key: and, or or not"));
                }
                return Ok(Predicate::Not(Box::new(json_node(
                    inner,
                    fields,
                    limits,
                    depth + 1,
                )?)));
            }
            for k in map.keys() {
                if !matches!(k.as_str(), "field" | "operator" | "value") {
                    return Err(syntax(format!("unexpected key '{k}'")));
                }
            }
            let name = map
                .get("field")
                .and_then(Value::as_str)
                .ok_or_else(|| syntax("a condition needs \"field\""))?;
            let op = match map.get("operator") {
                None => "=",
                Some(Value::String(op)) => op.as_str(),
                Some(_) => return Err(syntax("\"operator\" is a string")),
            };
            let value = map
                .get("value")
                .ok_or_else(|| syntax("a condition needs \"value\""))?;
            let op = match op {
                "=" | "==" => "eq",
                "!=" | "<>" => "neq",
                "<" => "lt",
                "<=" => "lte",
                ">" => "gt",
                ">=" => "gte",
                "like" => "like",
                "in" => "in",
                other => return Err(syntax(format!("unknown operator '{other}'"))),
            };
            leaf(name, op, value, fields, limits)
        }
        _ => Err(syntax("expected an array or an object")),
    }
}

/// One condition, by Yii operator name.
fn leaf(
    name: &str,
    op: &str,
    value: &Value,
    fields: &Fields<'_>,
    limits: Limits,
) -> Result<Predicate, QueryError> {
    let field = fields.resolve(name, "filter")?;
    let cmp = |op: Op| -> Result<Predicate, QueryError> {
        if value.is_array() || value.is_object() {
            return Err(syntax(format!("'{name}' takes a single value here")));
        }
        Ok(Predicate::Compare {
            field,
            op,
            value: fields.typed(field, value)?,
        })
    };
    match op {
        "eq" => cmp(Op::Eq),
        "neq" => cmp(Op::Ne),
        "lt" => cmp(Op::Lt),
        "lte" => cmp(Op::Le),
        "gt" => cmp(Op::Gt),
        "gte" => cmp(Op::Ge),
        "like" => {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return Err(syntax(format!("like on '{name}' takes a string"))),
            };
            literal_text(name, &text)?;
            Ok(Predicate::Contains { field, text })
        }
        "in" | "nin" => {
            let items = match value {
                Value::Array(items) => items.clone(),
                // Yii lets a single bracket value stand for a one-item list.
                Value::String(_) | Value::Number(_) | Value::Bool(_) => vec![value.clone()],
                _ => return Err(syntax(format!("in on '{name}' takes a list"))),
            };
            if items.len() > limits.max_in {
                return Err(QueryError::TooComplex(format!(
                    "an in list has more than {} values",
                    limits.max_in
                )));
            }
            let values = items
                .iter()
                .map(|v| fields.typed(field, v))
                .collect::<Result<_, _>>()?;
            Ok(Predicate::In {
                field,
                values,
                negate: op == "nin",
            })
        }
        other => Err(syntax(format!("unknown operator '{other}'"))),
    }
}

/// Yii2 DataFilter brackets, already nested by the query-string parser:
/// `{"year": {"gte": "2000"}, "or": [{…}, {…}], "not": {…}, "title": "x"}`.
pub fn filter_brackets(
    tree: &Value,
    fields: &Fields<'_>,
    limits: Limits,
) -> Result<Predicate, QueryError> {
    bracket_node(tree, fields, limits, 1)
}

fn bracket_node(
    v: &Value,
    fields: &Fields<'_>,
    limits: Limits,
    depth: usize,
) -> Result<Predicate, QueryError> {
    check_depth(depth, limits)?;
    let map: &Map<String, Value> = v
        .as_object()
        .ok_or_else(|| syntax("expected filter[field][operator]=value"))?;
    let mut parts = Vec::with_capacity(map.len());
    for (key, val) in map {
        match key.as_str() {
            "and" | "or" => {
                let items: Vec<&Value> = match val {
                    Value::Array(items) => items.iter().collect(),
                    Value::Object(m) => m.values().collect(),
                    _ => return Err(syntax(format!("filter[{key}] takes a list of conditions"))),
                };
                let sub = items
                    .into_iter()
                    .map(|i| bracket_node(i, fields, limits, depth + 1))
                    .collect::<Result<Vec<_>, _>>()?;
                parts.push(if key == "and" {
                    Predicate::And(sub)
                } else {
                    Predicate::Or(sub)
                });
            }
            "not" => parts.push(Predicate::Not(Box::new(bracket_node(
                val,
                fields,
                limits,
                depth + 1,
            )?))),
            name => match val {
                Value::Object(ops) => {
                    for (op, operand) in ops {
                        parts.push(leaf(name, op, operand, fields, limits)?);
                    }
                }
                Value::Array(_) => parts.push(leaf(name, "in", val, fields, limits)?),
                scalar => parts.push(leaf(name, "eq", scalar, fields, limits)?),
            },
        }
    }
    Ok(Predicate::all(parts).unwrap_or(Predicate::And(Vec::new())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::builder::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn books() -> Resource {
        Resource::new("books", "books")
            .field(Field::new("id", FieldType::Integer).primary_key())
            .field(Field::new("title", FieldType::String))
            .field(Field::new("year", FieldType::Integer))
            .field(Field::new("secret", FieldType::String).hidden())
    }

    fn fields(r: &Resource) -> Fields<'_> {
        let readable: &'static [usize] = Box::leak(r.readable(false).into_boxed_slice());
        Fields {
            resource: r,
            readable,
            allowed: readable,
        }
    }

    #[test]
    fn filters_that_can_only_match_everything_are_vacuous() {
        let like = |t: &str| Predicate::Contains {
            field: 1,
            text: t.into(),
        };
        let nothing = Predicate::In {
            field: 2,
            values: vec![],
            negate: false,
        };
        let year = Predicate::Compare {
            field: 2,
            op: Op::Ge,
            value: json!(2000),
        };
        assert!(like("").is_vacuous());
        assert!(!like("a").is_vacuous());
        assert!(Predicate::Wildcard {
            field: 1,
            pattern: "**".into()
        }
        .is_vacuous());
        assert!(Predicate::In {
            field: 2,
            values: vec![],
            negate: true
        }
        .is_vacuous());
        assert!(Predicate::Not(Box::new(nothing.clone())).is_vacuous());
        assert!(Predicate::Or(vec![year.clone(), like("")]).is_vacuous());
        assert!(Predicate::And(vec![like(""), like("")]).is_vacuous());
        assert!(!Predicate::And(vec![year.clone(), like("")]).is_vacuous());
        assert!(!Predicate::Not(Box::new(like(""))).is_vacuous());
        assert!(!year.is_vacuous());
    }

    #[test]
    fn search_pairs_unescape() {
        let p = parse_search(r"(title:Book 1\, part\:2,year:2010)").unwrap();
        assert_eq!(p[0].value, "Book 1, part:2");
        assert_eq!(
            p[1],
            SearchPair {
                key: "year".into(),
                value: "2010".into()
            }
        );
    }

    #[test]
    fn malformed_search_is_an_error() {
        for bad in [
            "title:x",
            "(title)",
            "(title:x",
            "((title:x))",
            "(:x)",
            r"(a:x\)",
            r"(a:\q)",
            "()",
        ] {
            assert!(parse_search(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn search_types_values_and_makes_wildcards() {
        let r = books();
        let p = search("(title:Book 1*,year:2010)", &fields(&r)).unwrap();
        assert_eq!(
            p,
            Predicate::And(vec![
                Predicate::Wildcard {
                    field: 1,
                    pattern: "Book 1*".into()
                },
                Predicate::Compare {
                    field: 2,
                    op: Op::Eq,
                    value: json!(2010)
                },
            ])
        );
        assert!(matches!(
            search("(year:abc)", &fields(&r)),
            Err(QueryError::BadValue { .. })
        ));
        assert!(matches!(
            search("(secret:x)", &fields(&r)),
            Err(QueryError::UnknownField { .. })
        ));
    }

    #[test]
    fn json_and_brackets_build_the_same_tree() {
        let r = books();
        let a = filter_json(
            r#"[{"field":"year","operator":">=","value":2000},{"field":"title","operator":"in","value":["A","B"]}]"#,
            &fields(&r),
            Limits::default(),
        )
        .unwrap();
        let b = filter_brackets(
            &json!({"year": {"gte": "2000"}, "title": {"in": ["A", "B"]}}),
            &fields(&r),
            Limits::default(),
        )
        .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn groups_nest_and_depth_is_bounded() {
        let r = books();
        let p = filter_json(
            r#"{"or":[{"field":"year","operator":"<","value":1960},{"not":{"field":"title","operator":"like","value":"%"}}]}"#,
            &fields(&r),
            Limits::default(),
        )
        .unwrap();
        assert_eq!(p.leaves(), 2);
        let deep = format!(
            "{}{{\"field\":\"year\",\"value\":1}}{}",
            "{\"not\":".repeat(20),
            "}".repeat(20)
        );
        assert!(matches!(
            filter_json(&deep, &fields(&r), Limits::default()),
            Err(QueryError::TooComplex(_))
        ));
    }

    proptest! {
        #[test]
        fn search_parse_never_panics(s in ".{0,200}") {
            let _ = parse_search(&s);
        }

        #[test]
        fn search_print_parse_round_trips(
            pairs in proptest::collection::vec(("[a-zA-Z][a-zA-Z0-9 ,:()\\\\]{0,8}", ".{0,12}"), 1..5)
        ) {
            let pairs: Vec<SearchPair> = pairs
                .into_iter()
                .map(|(k, v)| SearchPair { key: k.trim().to_string(), value: v })
                .filter(|p| !p.key.is_empty())
                .collect();
            prop_assume!(!pairs.is_empty());
            let text = print_search(&pairs);
            prop_assert_eq!(parse_search(&text).unwrap(), pairs);
        }

        #[test]
        fn json_filter_never_panics(s in ".{0,200}") {
            let r = books();
            let _ = filter_json(&s, &fields(&r), Limits::default());
        }
    }
}
