//! The query string of a collection request, parsed into typed values.
//!
//! This module never sees SQL: it produces [`PageRequest`] (and, as §6
//! lands, filters, sorts and field lists) that the store translates.
//! Malformed input is a 400 naming the parameter.

use crate::controller::table::Paging;
use crate::error::ApiError;

/// Which slice of a collection to read (§5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u64,
    pub offset: u64,
}

fn number(name: &str, raw: &str) -> Result<u64, ApiError> {
    raw.trim().parse::<u64>().map_err(|_| {
        ApiError::bad_query(format!(
            "'{name}' must be a non-negative integer, not '{raw}'."
        ))
    })
}

impl PageRequest {
    /// `limit`/`offset` (0-based) or `page` (1-based)/`per-page`. Sizes over
    /// the maximum are capped; zero, negative or non-numeric values are 400.
    pub fn parse(query: &[(String, String)], paging: Paging) -> Result<PageRequest, ApiError> {
        let get = |k: &str| {
            query
                .iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        let size = match (get("limit"), get("per-page")) {
            (Some(v), _) => Some(("limit", v)),
            (None, Some(v)) => Some(("per-page", v)),
            (None, None) => None,
        };
        let limit = match size {
            Some((name, raw)) => {
                let n = number(name, raw)?;
                if n == 0 {
                    return Err(ApiError::bad_query(format!("'{name}' must be at least 1.")));
                }
                n.min(paging.max_per_page)
            }
            None => paging.default_per_page,
        };
        let offset = match (get("offset"), get("page")) {
            (Some(raw), _) => number("offset", raw)?,
            (None, Some(raw)) => {
                let page = number("page", raw)?;
                if page == 0 {
                    return Err(ApiError::bad_query("'page' starts at 1."));
                }
                (page - 1).saturating_mul(limit)
            }
            (None, None) => 0,
        };
        Ok(PageRequest { limit, offset })
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
    fn nonsense_is_400() {
        let p = Paging::default();
        for bad in [
            ("limit", "-1"),
            ("offset", "x"),
            ("page", "0"),
            ("per-page", "0"),
            ("limit", "1e3"),
        ] {
            let e = PageRequest::parse(&q(&[bad]), p).unwrap_err();
            assert_eq!(e.status, 400, "{bad:?}");
        }
    }
}
