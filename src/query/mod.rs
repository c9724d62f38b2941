//! The query string of a collection request, parsed into a typed
//! [`CollectionQuery`] (§5.2, §6).
//!
//! This module never sees SQL: it resolves API field names against the
//! model, types values, enforces the guard rails (§6.9) and produces
//! predicates, projections, sort keys and page positions that
//! `store::sql` translates. Every problem is a [`QueryError`], which
//! becomes a 400 naming the parameter and the field.

pub mod brackets;
pub mod cursor;
pub mod predicate;

use serde_json::Value;

use crate::error::ApiError;
pub use crate::model::CountMode;
use crate::model::Resource;
pub use predicate::{Limits, Op, Predicate};

/// Why a query string was refused. One conversion into [`ApiError`]: 400.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    #[error("'{param}' is malformed: {why}.")]
    Syntax { param: String, why: String },
    #[error("Unknown field '{field}' in '{param}'.")]
    UnknownField { param: String, field: String },
    #[error("Field '{field}' cannot be used in '{param}' on this resource.")]
    NotAllowed { param: String, field: String },
    #[error("'{field}' expects a value of type {expected}, not '{got}'.")]
    BadValue {
        field: String,
        expected: &'static str,
        got: String,
    },
    #[error("The query is too complex: {0}.")]
    TooComplex(String),
    #[error("The cursor is invalid: {0}.")]
    BadCursor(String),
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> ApiError {
        let code = match &e {
            QueryError::UnknownField { .. } => "UNKNOWN_FIELD",
            QueryError::BadCursor(_) => "INVALID_CURSOR",
            _ => "INVALID_QUERY",
        };
        ApiError::new(http::StatusCode::BAD_REQUEST, code, e.to_string())
    }
}

/// Page sizes a collection applies (§5.2).
#[derive(Debug, Clone, Copy)]
pub struct Paging {
    pub default_per_page: u64,
    pub max_per_page: u64,
}

impl Default for Paging {
    fn default() -> Self {
        Paging {
            default_per_page: 20,
            max_per_page: 100,
        }
    }
}

/// One sort key (§6.5): a field index and a direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortKey {
    pub field: usize,
    pub descending: bool,
}

/// Which slice of a collection to read by offset (§5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u64,
    pub offset: u64,
}

/// How a request pages.
#[derive(Debug, Clone, PartialEq)]
pub enum Position {
    Offset(PageRequest),
    /// Keyset pagination (§6.8): `after` holds the sort-key values and the
    /// primary key of the last record seen; `None` for the first page.
    Cursor {
        limit: u64,
        after: Option<Vec<Value>>,
    },
}

impl Position {
    pub fn limit(&self) -> u64 {
        match self {
            Position::Offset(p) => p.limit,
            Position::Cursor { limit, .. } => *limit,
        }
    }
}

/// `Prefer: count=…` from request headers, if any.
pub fn count_preference(headers: &http::HeaderMap) -> Option<CountMode> {
    headers.get_all("prefer").iter().find_map(|v| {
        v.to_str().ok().and_then(|s| {
            s.split([',', ';'])
                .filter_map(|p| p.trim().strip_prefix("count="))
                .find_map(CountMode::parse)
        })
    })
}

/// A relation to embed, with the fields asked for it (`reviews.rating`).
#[derive(Debug, Clone, PartialEq)]
pub struct Expansion {
    /// Index into `Resource::relations`.
    pub relation: usize,
    /// API names on the target; `None`: its readable fields.
    pub fields: Option<Vec<String>>,
    /// What to embed in each embedded record in turn: the rest of
    /// `expand=pet.owner` (`owner`), resolved against the target's
    /// relations by the controller.
    pub nested: Vec<String>,
}

/// Most relations one `expand=` path crosses: `visit.pet.owner`.
pub const MAX_EXPAND_DEPTH: usize = 3;

/// What a resource allows and defaults to; fixed at start-up.
#[derive(Debug, Clone)]
pub struct QueryPolicy {
    pub paging: Paging,
    pub limits: Limits,
    /// Fields a request may name in `fields=` (the action's readable
    /// fields, scenarios applied); any other is unknown.
    pub readable: Vec<usize>,
    /// Fields usable in `q`/`filter` (from the resource's plan).
    pub filterable: Vec<usize>,
    /// Fields usable in `sort`.
    pub sortable: Vec<usize>,
    pub count: CountMode,
    /// Page by cursor even without `cursor=`.
    pub cursor_by_default: bool,
}

/// What a table's read parameters accept, for the documentation (§11):
/// derived from the same policies the parser enforces.
#[derive(Debug, Clone)]
pub struct QueryShape {
    /// Rules for a collection read.
    pub list: QueryPolicy,
    /// Rules for one record's `fields=`/`expand=`.
    pub view: QueryPolicy,
    /// Relations that `expand`/`fields` may embed, with the field names
    /// each target serves.
    pub relations: Vec<(String, Vec<String>)>,
}

/// Everything a collection request asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionQuery {
    pub filter: Option<Predicate>,
    /// Requested projection (indexes); `None`: the resource's list fields.
    pub fields: Option<Vec<usize>>,
    pub expand: Vec<Expansion>,
    /// Sort keys as asked; the store adds the primary key as tie-break.
    pub sort: Vec<SortKey>,
    pub position: Position,
    pub count: CountMode,
    /// Whether the request chose the count mode (then `Preference-Applied`).
    pub count_requested: bool,
    pub envelope: bool,
    /// `timestamp=`: only records changed after this instant (§6.7).
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// The key part of a sync position (`timestamp=<time>~<id>`): at
    /// `since` itself, only records after this key (ties at one change
    /// time are never skipped, and never repeated for ever).
    pub since_key: Option<i64>,
    /// `sync_mark=`: the sync mark of the first page of a traversal, which
    /// restkit's page links carry so that the last page's
    /// `X-Sync-Timestamp` is no later than it (a row that an offset shift
    /// skipped during the traversal is then seen on the next sync).
    pub sync_mark: Option<chrono::DateTime<chrono::Utc>>,
    /// Text of q/filter/sort, for binding cursors to their query.
    pub signature: String,
}

fn get<'a>(query: &'a [(String, String)], k: &str) -> Option<&'a str> {
    query
        .iter()
        .rev()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.as_str())
}

fn number(name: &str, raw: &str) -> Result<u64, QueryError> {
    raw.trim().parse::<u64>().map_err(|_| QueryError::Syntax {
        param: name.to_string(),
        why: format!("'{raw}' is not a non-negative integer"),
    })
}

fn syntax(param: &str, why: impl Into<String>) -> QueryError {
    QueryError::Syntax {
        param: param.to_string(),
        why: why.into(),
    }
}

impl PageRequest {
    /// `limit`/`offset` (0-based) or `page` (1-based)/`per-page`. Sizes over
    /// the maximum are capped; zero, negative or non-numeric values are 400.
    pub fn parse(query: &[(String, String)], paging: Paging) -> Result<PageRequest, QueryError> {
        let limit = page_size(query, paging)?;
        let offset = match (get(query, "offset"), get(query, "page")) {
            (Some(raw), _) => number("offset", raw)?,
            (None, Some(raw)) => {
                let page = number("page", raw)?;
                if page == 0 {
                    return Err(syntax("page", "pages start at 1"));
                }
                (page - 1).saturating_mul(limit)
            }
            (None, None) => 0,
        };
        Ok(PageRequest { limit, offset })
    }
}

fn page_size(query: &[(String, String)], paging: Paging) -> Result<u64, QueryError> {
    let size = match (get(query, "limit"), get(query, "per-page")) {
        (Some(v), _) => Some(("limit", v)),
        (None, Some(v)) => Some(("per-page", v)),
        (None, None) => None,
    };
    Ok(match size {
        Some((name, raw)) => {
            let n = number(name, raw)?;
            if n == 0 {
                return Err(syntax(name, "must be at least 1"));
            }
            n.min(paging.max_per_page)
        }
        None => paging.default_per_page,
    })
}
/// The index of `relation`'s expansion in `expand`, added (all fields, no
/// nesting) if `expand` and `fields` have not named it yet.
fn expansion_of(expand: &mut Vec<Expansion>, relation: usize) -> usize {
    if let Some(at) = expand.iter().position(|e| e.relation == relation) {
        return at;
    }
    expand.push(Expansion {
        relation,
        fields: None,
        nested: Vec::new(),
    });
    expand.len() - 1
}

/// `(a,b)` or `a,b` → trimmed, non-empty names.
fn name_list<'a>(param: &str, raw: &'a str) -> Result<Vec<&'a str>, QueryError> {
    let inner = match (raw.strip_prefix('('), raw.strip_suffix(')')) {
        (Some(_), Some(_)) => &raw[1..raw.len() - 1],
        (None, None) => raw,
        _ => return Err(syntax(param, "unbalanced parentheses")),
    };
    let names: Vec<&str> = inner.split(',').map(str::trim).collect();
    if names.iter().any(|n| n.is_empty()) {
        return Err(syntax(param, "empty name in the list"));
    }
    if names.len() > 200 {
        return Err(QueryError::TooComplex(format!(
            "'{param}' lists more than 200 names"
        )));
    }
    Ok(names)
}

/// Parses `timestamp=`: a time (see [`parse_timestamp`]), or a sync
/// position `<time>~<id>` as restkit's `X-Sync-Timestamp` hands out
/// (changes after the time, and at the time after record `id`).
pub fn parse_position(
    raw: &str,
) -> Result<(chrono::DateTime<chrono::Utc>, Option<i64>), QueryError> {
    match raw.rsplit_once('~') {
        Some((time, key)) => {
            let key = key.trim().parse::<i64>().map_err(|_| {
                syntax(
                    "timestamp",
                    "a position is <time>~<id>, as X-Sync-Timestamp gives it",
                )
            })?;
            Ok((parse_timestamp(time)?, Some(key)))
        }
        None => Ok((parse_timestamp(raw)?, None)),
    }
}

/// A sync position's place in change order: `time~key`, or a whole
/// `time` (after every key at that time).
pub fn position_order(p: &str) -> (&str, i64) {
    match p.split_once('~') {
        Some((t, k)) => (t, k.parse().unwrap_or(i64::MAX)),
        None => (p, i64::MAX),
    }
}

/// The text of a sync position: the stored time, and the key when given.
pub fn format_position(time: &str, key: Option<i64>) -> String {
    match key {
        Some(k) => format!("{time}~{k}"),
        None => time.to_string(),
    }
}

/// Parses `timestamp=`: Unix seconds, Unix milliseconds, or RFC 3339.
pub fn parse_timestamp(raw: &str) -> Result<chrono::DateTime<chrono::Utc>, QueryError> {
    let bad = || {
        syntax(
            "timestamp",
            "use Unix seconds, Unix milliseconds or RFC 3339",
        )
    };
    let raw = raw.trim();
    let t = if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        let n: i64 = raw.parse().map_err(|_| bad())?;
        // The digit count decides, never the value: up to 12 digits are
        // seconds (through 9999-12-31T23:59:59Z, 253402300799), 13 or more
        // milliseconds (from 2001-09-09, 1000000000000). So year 10000 in
        // seconds (253402300800) is refused below, not read as
        // milliseconds in 1978.
        if raw.len() >= 13 {
            chrono::DateTime::from_timestamp_millis(n)
        } else {
            chrono::DateTime::from_timestamp(n, 0)
        }
        .ok_or_else(bad)?
    } else {
        chrono::DateTime::parse_from_rfc3339(raw)
            .map(|t| t.to_utc())
            .map_err(|_| bad())?
    };
    // Change times are stored as fixed-width text, which sorts as time only
    // for four-digit years: `+10000-…` would compare below every stored
    // time and return everything.
    if !(1..=9999).contains(&chrono::Datelike::year(&t)) {
        return Err(syntax(
            "timestamp",
            "it lies outside the years 1 to 9999, which restkit can store",
        ));
    }
    Ok(t)
}

impl CollectionQuery {
    /// Parses every collection parameter against resource `r`.
    pub fn parse(
        query: &[(String, String)],
        r: &Resource,
        policy: &QueryPolicy,
        prefer_count: Option<CountMode>,
    ) -> Result<CollectionQuery, QueryError> {
        // A NUL character ends a pattern early in SQLite and is refused by
        // PostgreSQL: no parameter may carry one (JSON filters decode
        // `\u0000` later and are checked value by value).
        if let Some((k, _)) = query
            .iter()
            .find(|(k, v)| k.contains('\0') || v.contains('\0'))
        {
            return Err(syntax(
                k.split('[').next().unwrap_or(k),
                "it contains a NUL character",
            ));
        }
        let filter_fields = predicate::Fields {
            resource: r,
            readable: &policy.readable,
            allowed: &policy.filterable,
        };
        let mut parts = Vec::new();
        let mut signature = String::new();
        if let Some(q) = get(query, "q") {
            parts.push(predicate::search(q, &filter_fields)?);
            signature.push_str(&format!("q={q}\n"));
        }
        if let Some(f) = get(query, "filter") {
            parts.push(predicate::filter_json(f, &filter_fields, policy.limits)?);
            signature.push_str(&format!("filter={f}\n"));
        }
        let bracket_pairs: Vec<(String, String)> = query
            .iter()
            .filter(|(k, _)| k.starts_with("filter["))
            .map(|(k, v)| (k["filter".len()..].to_string(), v.clone()))
            .map(|(k, v)| (format!("f{k}"), v))
            .collect();
        if !bracket_pairs.is_empty() {
            for (k, v) in &bracket_pairs {
                signature.push_str(&format!("{k}={v}\n"));
            }
            let tree = brackets::nest(bracket_pairs)
                .map_err(|e| syntax("filter", e.detail.to_string()))?;
            let tree = tree.get("f").cloned().unwrap_or(Value::Null);
            parts.push(predicate::filter_brackets(
                &tree,
                &filter_fields,
                policy.limits,
            )?);
        }
        let filter = Predicate::all(parts);
        if let Some(p) = &filter {
            if p.leaves() > policy.limits.max_predicates {
                return Err(QueryError::TooComplex(format!(
                    "more than {} conditions",
                    policy.limits.max_predicates
                )));
            }
            if p.depth() > policy.limits.max_depth + 1 {
                return Err(QueryError::TooComplex(format!(
                    "filters nest deeper than {}",
                    policy.limits.max_depth
                )));
            }
        }

        let mut expand = Vec::new();
        if let Some(raw) = get(query, "expand") {
            for path in name_list("expand", raw)? {
                if path.split('.').count() > MAX_EXPAND_DEPTH {
                    return Err(QueryError::TooComplex(format!(
                        "expand={path} crosses more than {MAX_EXPAND_DEPTH} relations"
                    )));
                }
                let (name, rest) = match path.split_once('.') {
                    Some((name, rest)) => (name, Some(rest)),
                    None => (path, None),
                };
                let relation = r
                    .relations
                    .iter()
                    .position(|rel| rel.name == name)
                    .ok_or_else(|| QueryError::UnknownField {
                        param: "expand".into(),
                        field: path.to_string(),
                    })?;
                let at = expansion_of(&mut expand, relation);
                if let Some(rest) = rest {
                    if !expand[at].nested.iter().any(|n| n == rest) {
                        expand[at].nested.push(rest.to_string());
                    }
                }
            }
        }

        let mut fields = None;
        if let Some(raw) = get(query, "fields") {
            let mut top = Vec::new();
            for name in name_list("fields", raw)? {
                // A relation in `fields` embeds it, as `expand` does:
                // `reviews` with all its readable fields, `reviews.rating`
                // with those named (the target checks the names when it is
                // read). Never silently dropped.
                let (rel, sub) = match name.split_once('.') {
                    Some((rel, sub)) => (rel, Some(sub)),
                    None => (name, None),
                };
                if let Some(relation) = r.relations.iter().position(|x| x.name == rel) {
                    let at = expansion_of(&mut expand, relation);
                    if let Some(sub) = sub {
                        let wanted = expand[at].fields.get_or_insert_with(Vec::new);
                        // Named twice, shown once (a column selected twice
                        // is an error on PostgreSQL).
                        if !wanted.iter().any(|w| w == sub) {
                            wanted.push(sub.to_string());
                        }
                    }
                    continue;
                }
                if sub.is_some() {
                    return Err(QueryError::UnknownField {
                        param: "fields".into(),
                        field: name.to_string(),
                    });
                }
                let i = r
                    .field_index(name)
                    .filter(|i| policy.readable.contains(i))
                    .ok_or_else(|| QueryError::UnknownField {
                        param: "fields".into(),
                        field: name.to_string(),
                    })?;
                if !top.contains(&i) {
                    top.push(i);
                }
            }
            fields = Some(top);
        }

        let mut sort = Vec::new();
        if let Some(raw) = get(query, "sort") {
            signature.push_str(&format!("sort={raw}\n"));
            for item in name_list("sort", raw)? {
                let (name, descending) = match item.strip_prefix('-') {
                    Some(n) => (n, true),
                    None => (item.strip_prefix('+').unwrap_or(item), false),
                };
                let i = r
                    .field_index(name)
                    .filter(|i| policy.readable.contains(i))
                    .ok_or_else(|| QueryError::UnknownField {
                        param: "sort".into(),
                        field: name.to_string(),
                    })?;
                if !policy.sortable.contains(&i) {
                    return Err(QueryError::NotAllowed {
                        param: "sort".into(),
                        field: name.to_string(),
                    });
                }
                if !sort.iter().any(|k: &SortKey| k.field == i) {
                    sort.push(SortKey {
                        field: i,
                        descending,
                    });
                }
            }
        }

        let (since, since_key) = match get(query, "timestamp") {
            Some(raw) if r.sync => {
                let (t, key) = parse_position(raw)?;
                (Some(t), key)
            }
            Some(_) => {
                return Err(syntax(
                    "timestamp",
                    "this resource does not keep change times",
                ));
            }
            None => (None, None),
        };
        if let Some(t) = since {
            signature.push_str(&format!("timestamp={}\n", t.timestamp_micros()));
        }
        if let Some(k) = since_key {
            signature.push_str(&format!("timestamp_key={k}\n"));
        }
        let sync_mark = match get(query, "sync_mark") {
            Some(raw) if r.sync => Some(parse_timestamp(raw).map_err(|_| {
                syntax(
                    "sync_mark",
                    "pass back the value restkit's page links carry",
                )
            })?),
            Some(_) => {
                return Err(syntax(
                    "sync_mark",
                    "this resource does not keep change times",
                ));
            }
            None => None,
        };

        let cursor = get(query, "cursor");
        let position = if cursor.is_some() || policy.cursor_by_default {
            if get(query, "offset").is_some() || get(query, "page").is_some() {
                return Err(syntax(
                    "cursor",
                    "cursor pages cannot be combined with offset or page",
                ));
            }
            Position::Cursor {
                limit: page_size(query, policy.paging)?,
                after: None,
            }
        } else {
            Position::Offset(PageRequest::parse(query, policy.paging)?)
        };

        let envelope = match get(query, "envelope") {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(_) => return Err(syntax("envelope", "use true or false")),
        };

        Ok(CollectionQuery {
            filter,
            fields,
            expand,
            sort,
            position,
            count: prefer_count.unwrap_or(policy.count),
            count_requested: prefer_count.is_some(),
            envelope,
            since,
            since_key,
            sync_mark,
            signature,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn pages_and_offsets() {
        let p = Paging::default();
        assert_eq!(
            PageRequest::parse(&q(&[]), p).unwrap(),
            PageRequest {
                limit: 20,
                offset: 0
            }
        );
        assert_eq!(
            PageRequest::parse(&q(&[("page", "3"), ("per-page", "10")]), p).unwrap(),
            PageRequest {
                limit: 10,
                offset: 20
            }
        );
        assert_eq!(
            PageRequest::parse(&q(&[("limit", "500"), ("offset", "7")]), p).unwrap(),
            PageRequest {
                limit: 100,
                offset: 7
            }
        );
    }

    #[test]
    fn nonsense_is_an_error() {
        let p = Paging::default();
        for bad in [
            ("limit", "-1"),
            ("offset", "x"),
            ("page", "0"),
            ("per-page", "0"),
            ("limit", "1e3"),
        ] {
            assert!(PageRequest::parse(&q(&[bad]), p).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn positions_order_by_time_then_key_and_a_whole_time_comes_last() {
        let t = "2026-12-06T10:00:00.000000Z";
        assert!(position_order(&format!("{t}~7")) < position_order(&format!("{t}~8")));
        assert!(position_order(&format!("{t}~8")) < position_order(t));
        assert!(position_order(t) < position_order("2026-12-06T10:00:00.000001Z~1"));
    }

    #[test]
    fn timestamps_in_three_spellings() {
        let s = parse_timestamp("1700000000").unwrap();
        let ms = parse_timestamp("1700000000000").unwrap();
        let rfc = parse_timestamp("2023-11-14T22:13:20Z").unwrap();
        assert_eq!(s, ms);
        assert_eq!(s, rfc);
        assert!(parse_timestamp("yesterday").is_err());
    }

    #[test]
    fn the_digit_count_decides_seconds_or_milliseconds() {
        let year = |raw: &str| parse_timestamp(raw).map(|t| chrono::Datelike::year(&t));
        // 12 digits are seconds: the last second of 9999 passes, the first
        // of 10000 is refused (it was read as milliseconds in 1978).
        assert_eq!(year("253402300799"), Ok(9999));
        assert!(year("253402300800").is_err());
        assert!(year("999999999999").is_err());
        // 13 and more are milliseconds, up to the end of 9999.
        assert_eq!(year("1000000000000"), Ok(2001));
        assert_eq!(year("253402300799999"), Ok(9999));
        assert!(year("253402300800000").is_err());
        assert!(year("99999999999999999999").is_err());
        // RFC 3339 outside the years 1 to 9999.
        assert!(year("0000-12-31T00:00:00Z").is_err());
        assert_eq!(year("0001-01-01T00:00:00Z"), Ok(1));
    }

    #[test]
    fn prefer_count_is_read() {
        let mut h = http::HeaderMap::new();
        h.insert("prefer", "return=minimal, count=none".parse().unwrap());
        assert_eq!(count_preference(&h), Some(CountMode::None));
    }
}
