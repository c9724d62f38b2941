//! Values by declared type: the one place where JSON numbers, form strings
//! and query-string text become the value a field holds.
//!
//! Every conversion here either keeps the value exactly or refuses it;
//! none turns a value it does not understand into `null`. (A review found
//! `1999.0` for an integer field stored as NULL: JSON Schema calls it an
//! integer, `as_i64` did not.)

use serde_json::{Number, Value};

use super::{Field, FieldType};

/// UTC time in the fixed-width form restkit stores: sorts as text and
/// round-trips through RFC 3339.
pub fn format_datetime(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The integer a JSON number stands for: `7`, `7.0`, `7e0`, `-0`; `None`
/// for fractions, for values outside signed 64 bits, and for floats of
/// 2^53 or more, which a float cannot hold exactly (`9007199254740993.0`
/// already arrived as ...992: refused, not silently changed).
pub fn integral(n: &Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    (f.is_finite() && f.fract() == 0.0 && f.abs() < EXACT).then_some(f as i64)
}

/// An integer written as text: `"7"`, and also `"7.0"` or `"1e3"`, as a
/// JSON body may write it. Not `"inf"`, `"0x10"` or `"7.5"`, and not
/// `"1999.00000000000001"`: the fraction is judged on the digits as
/// written ([`has_fraction`]), not on the float they round to (1999.0).
pub fn parse_integral(s: &str) -> Option<i64> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(i);
    }
    let looks_numeric = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    if !looks_numeric {
        return None;
    }
    let f: f64 = s.parse().ok()?;
    if has_fraction(s) {
        return None;
    }
    Number::from_f64(f).as_ref().and_then(integral)
}

/// Whether decimal number text (`[+-]digits[.digits][e[+-]digits]`, as in
/// JSON) has a nonzero fraction, decided on its digits exactly: `1999.0`
/// and `1.999e3` have none; `1999.00000000000001` and `1e-400` do, though
/// each rounds to a whole float. Text that is not such a number: `false`.
pub fn has_fraction(text: &str) -> bool {
    let text = text.strip_prefix(['+', '-']).unwrap_or(text);
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], &text[i + 1..]),
        None => (text, "0"),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return false;
    }
    // The exponent only matters up to the digits' length: saturate it.
    let (negative, exp_digits) = match exponent.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, exponent.strip_prefix('+').unwrap_or(exponent)),
    };
    if exp_digits.is_empty() || !exp_digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let magnitude = exp_digits
        .trim_start_matches('0')
        .parse::<i64>()
        .unwrap_or(if exp_digits.trim_start_matches('0').is_empty() {
            0
        } else {
            i64::MAX / 4
        })
        .min(i64::MAX / 4);
    let exp = if negative { -magnitude } else { magnitude };
    // Digits at index `point` or beyond lie after the decimal point once
    // the exponent has moved it.
    let point = int.len() as i64 + exp;
    let last = match frac.bytes().rposition(|b| b != b'0') {
        Some(j) => Some(int.len() + j),
        None => int.bytes().rposition(|b| b != b'0'),
    };
    last.is_some_and(|last| last as i64 >= point)
}

/// Why a body value was refused before schema validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    code: &'static str,
    message: String,
}

impl Refusal {
    fn new(code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }

    /// Text holding a NUL character.
    pub fn nul() -> Refusal {
        Refusal::new("invalid_character", "must not contain NUL characters.")
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    /// What the value must be, after the field's name.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Brings a body value into the form its field stores, before schema
/// validation: whole-number floats of integer fields become integers (a
/// fraction is left for the schema to refuse); dates, times and UUIDs
/// take their one canonical spelling (so they compare and sort as text);
/// decimals become their exact text with `scale` decimals. Text holding
/// NUL is refused: SQLite cuts patterns and C strings short at it,
/// PostgreSQL refuses it. A value of the wrong JSON type is left for the
/// schema to name.
pub fn normalize(field: &Field, v: &mut Value) -> Result<(), Refusal> {
    if let Value::String(s) = &*v {
        if s.contains('\0') {
            return Err(Refusal::nul());
        }
    }
    match (field.ty, &*v) {
        (FieldType::Integer, Value::Number(n)) => {
            if let Some(i) = integral(n) {
                *v = Value::from(i);
            }
        }
        (FieldType::Date, Value::String(s)) => {
            *v = Value::String(parse_date(s).ok_or_else(|| {
                Refusal::new(
                    "format",
                    "must be a date, YYYY-MM-DD, of a year from 0001 to 9999.",
                )
            })?);
        }
        (FieldType::Time, Value::String(s)) => {
            *v = Value::String(parse_time(s).ok_or_else(|| {
                Refusal::new(
                    "format",
                    "must be a time of day, HH:MM:SS with an optional fraction (no time zone).",
                )
            })?);
        }
        (FieldType::Uuid, Value::String(s)) => {
            *v = Value::String(
                parse_uuid(s).ok_or_else(|| Refusal::new("format", "must be a UUID."))?,
            );
        }
        (FieldType::Decimal { precision, scale }, Value::String(_) | Value::Number(_)) => {
            let units =
                decimal_units(v, precision, scale).map_err(|why| Refusal::new("decimal", why))?;
            let whole = units as f64 / 10f64.powi(i32::from(scale));
            if let Some(lo) = field.minimum.filter(|lo| whole < *lo) {
                return Err(Refusal::new("minimum", format!("must be at least {lo}.")));
            }
            if let Some(hi) = field.maximum.filter(|hi| whole > *hi) {
                return Err(Refusal::new("maximum", format!("must be at most {hi}.")));
            }
            *v = Value::String(format_decimal(units, scale));
        }
        _ => {}
    }
    Ok(())
}

/// `2024-02-29` as restkit stores it: a real calendar date of a year
/// from 0001 to 9999, written `YYYY-MM-DD` (ISO 8601's calendar date, the
/// only spelling that sorts as text).
pub fn parse_date(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b.len() != 10
        || b[4] != b'-'
        || b[7] != b'-'
        || !digits(0..4)
        || !digits(5..7)
        || !digits(8..10)
    {
        return None;
    }
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    (s[..4] != *"0000").then(|| d.format("%Y-%m-%d").to_string())
}

/// A time of day as restkit stores it: `HH:MM:SS`, with the fraction of
/// a second (up to nanoseconds) and no trailing zeros when there is one;
/// `HH:MM` is read as `HH:MM:00`. No leap second, no time zone.
pub fn parse_time(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let two = |i: usize| {
        b.get(i..i + 2)
            .filter(|d| d.iter().all(u8::is_ascii_digit))
            .map(|d| u32::from(d[0] - b'0') * 10 + u32::from(d[1] - b'0'))
    };
    let (h, m) = (two(0)?, two(3)?);
    if b.get(2) != Some(&b':') || h > 23 || m > 59 {
        return None;
    }
    if b.len() == 5 {
        return Some(format!("{h:02}:{m:02}:00"));
    }
    let sec = two(6)?;
    if b.get(5) != Some(&b':') || sec > 59 {
        return None;
    }
    let mut out = format!("{h:02}:{m:02}:{sec:02}");
    match &s[8..] {
        "" => {}
        frac => {
            let digits = frac.strip_prefix('.')?;
            if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|d| d.is_ascii_digit())
            {
                return None;
            }
            let kept = digits.trim_end_matches('0');
            if !kept.is_empty() {
                out.push('.');
                out.push_str(kept);
            }
        }
    }
    Some(out)
}

/// A UUID in any of its spellings (upper or lower case, braced, `urn:`,
/// without hyphens), as restkit stores it: lowercase and hyphenated.
pub fn parse_uuid(s: &str) -> Option<String> {
    uuid::Uuid::try_parse(s)
        .ok()
        .map(|u| u.hyphenated().to_string())
}

/// Most digits a decimal may declare: its units are a signed 64-bit
/// integer.
pub const MAX_DECIMAL_PRECISION: u8 = 18;

/// A decimal value — JSON text (`"12.30"`, `"-0.5"`, `"7"`) or a JSON
/// number of at most 15 significant digits, which a float holds exactly
/// as written — as an integer count of `10^-scale`: exact, never a
/// binary float. More decimals than `scale`, more digits than
/// `precision`, or anything else: why not, in words.
pub fn decimal_units(v: &Value, precision: u8, scale: u8) -> Result<i64, String> {
    let text = match v {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => {
            let text = n.to_string();
            let significant = text
                .bytes()
                .take_while(|b| *b != b'e' && *b != b'E')
                .filter(u8::is_ascii_digit)
                .count();
            let exact = n.is_i64() || n.is_u64();
            if !exact && (significant > 15 || text.contains(['e', 'E'])) {
                return Err(format!(
                    "is a number a JSON parser may round ({text}); send it as a string, \"{text}\"."
                ));
            }
            text
        }
        _ => return Err("must be a decimal number, as a string (\"12.30\").".into()),
    };
    let shape = || {
        format!(
            "must be a decimal number with at most {} digits before the point and {scale} after it, e.g. \"{}\".",
            precision - scale,
            format_decimal(1234 % 10i64.pow(u32::from(precision.min(4))), scale)
        )
    };
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(&text)),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let ok = !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && !(body.contains('.') && frac.is_empty());
    if !ok {
        return Err(shape());
    }
    let frac = frac.trim_end_matches('0');
    let int = int.trim_start_matches('0');
    if frac.len() > usize::from(scale) || int.len() > usize::from(precision - scale) {
        return Err(shape());
    }
    let mut units: i64 = 0;
    let padded = format!("{frac:0<width$}", width = usize::from(scale));
    for d in int.bytes().chain(padded.bytes()) {
        units = units * 10 + i64::from(d - b'0');
    }
    Ok(if negative { -units } else { units })
}

/// `units` of `10^-scale` as decimal text with exactly `scale` decimals:
/// `1230, 2` → `"12.30"`.
pub fn format_decimal(units: i64, scale: u8) -> String {
    let digits = units.unsigned_abs().to_string();
    let scale = usize::from(scale);
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    let sign = if units < 0 { "-" } else { "" };
    if scale == 0 {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn num(text: &str) -> Number {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn whole_numbers_are_integers_whatever_their_spelling() {
        for (text, want) in [
            ("1999", Some(1999)),
            ("1999.0", Some(1999)),
            ("1e2", Some(100)),
            ("2.01e3", Some(2010)),
            ("-0", Some(0)),
            ("-0.0", Some(0)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("9223372036854775807", Some(i64::MAX)),
            ("1.5", None),
            ("9223372036854775808", None),
            ("1e19", None),
            ("-1e19", None),
            ("9007199254740991.0", Some(9_007_199_254_740_991)),
            ("9007199254740993.0", None),
            ("1.2345678901234567e18", None),
        ] {
            assert_eq!(integral(&num(text)), want, "{text}");
        }
    }

    #[test]
    fn integer_text_parses_in_the_same_spellings() {
        assert_eq!(parse_integral("1999.0"), Some(1999));
        assert_eq!(parse_integral("1e3"), Some(1000));
        assert_eq!(parse_integral("-0"), Some(0));
        assert_eq!(
            parse_integral("9007199254740993"),
            Some(9_007_199_254_740_993)
        );
        assert_eq!(parse_integral("9007199254740993.5"), None);
        for bad in [
            "inf",
            "NaN",
            "0x10",
            "7.5",
            "",
            " 7",
            "1e400",
            "1999.00000000000001",
            "1e-400",
        ] {
            assert_eq!(parse_integral(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_fraction_is_judged_on_the_digits_as_written() {
        for whole in [
            "1999", "1999.0", "1999.000", "-0", "-0.0", "1e3", "1.999e3", "2.01E+3", "0e-5", "0.0",
            "100e-2", "12300e-2", "1e400",
        ] {
            assert!(!has_fraction(whole), "{whole}");
        }
        for fraction in [
            "1999.00000000000001",
            "1999.5",
            "-0.1",
            "1e-400",
            "1.23e1",
            "12345e-2",
            "1999.000000000000000000000000001",
            "1e-9223372036854775808000",
        ] {
            assert!(has_fraction(fraction), "{fraction}");
        }
    }

    #[test]
    fn normalize_keeps_values_or_refuses_them() {
        let year = Field::new("year", FieldType::Integer);
        let mut v = json!(1956.0);
        normalize(&year, &mut v).unwrap();
        assert_eq!(v, json!(1956));
        assert!(v.is_i64());
        let mut v = json!(1956.5);
        normalize(&year, &mut v).unwrap();
        assert_eq!(v, json!(1956.5), "fractions are left for the schema");
        let title = Field::new("title", FieldType::String);
        assert_eq!(
            normalize(&title, &mut json!("a\u{0}b")),
            Err(Refusal::nul())
        );
    }

    #[test]
    fn dates_are_real_calendar_days_of_years_1_to_9999() {
        for (text, want) in [
            ("2024-02-29", Some("2024-02-29")),
            ("0001-01-01", Some("0001-01-01")),
            ("9999-12-31", Some("9999-12-31")),
            ("2023-02-29", None),
            ("1900-02-29", None),
            ("2000-02-29", Some("2000-02-29")),
            ("0000-01-01", None),
            ("10000-01-01", None),
            ("2024-1-01", None),
            ("2024-13-01", None),
            ("2024-12-32", None),
            ("+2024-01-01", None),
            ("2024-01-01T00:00:00Z", None),
            ("", None),
        ] {
            assert_eq!(parse_date(text).as_deref(), want, "{text}");
        }
    }

    #[test]
    fn times_have_one_spelling_that_sorts() {
        for (text, want) in [
            ("00:00:00", Some("00:00:00")),
            ("23:59:59", Some("23:59:59")),
            ("09:30", Some("09:30:00")),
            ("12:00:00.500", Some("12:00:00.5")),
            ("12:00:00.000", Some("12:00:00")),
            ("12:00:00.123456789", Some("12:00:00.123456789")),
            ("12:00:00.1234567890", None),
            ("24:00:00", None),
            ("23:60:00", None),
            ("23:59:60", None),
            ("12:00:00Z", None),
            ("12:00:00+01:00", None),
            ("1:00:00", None),
            ("12:00:00.", None),
        ] {
            assert_eq!(parse_time(text).as_deref(), want, "{text}");
        }
        let mut sorted = [
            "10:00:00.5",
            "10:00:01",
            "10:00:00",
            "10:00:00.25",
            "09:59:59.999",
        ];
        sorted.sort();
        assert_eq!(
            sorted,
            [
                "09:59:59.999",
                "10:00:00",
                "10:00:00.25",
                "10:00:00.5",
                "10:00:01"
            ]
        );
    }

    #[test]
    fn uuids_are_lowercase_and_hyphenated() {
        let lower = "67e55044-10b1-426f-9247-bb680e5fe0c8";
        for text in [
            lower,
            "67E55044-10B1-426F-9247-BB680E5FE0C8",
            "67e5504410b1426f9247bb680e5fe0c8",
            "{67e55044-10b1-426f-9247-bb680e5fe0c8}",
            "urn:uuid:67e55044-10b1-426f-9247-bb680e5fe0c8",
        ] {
            assert_eq!(parse_uuid(text).as_deref(), Some(lower), "{text}");
        }
        for bad in ["67e55044-10b1-426f-9247-bb680e5fe0c", "not-a-uuid", ""] {
            assert_eq!(parse_uuid(bad), None, "{bad}");
        }
    }

    #[test]
    fn decimals_are_exact_at_their_edges() {
        let units = |v: Value| decimal_units(&v, 18, 2);
        assert_eq!(
            units(json!("0.1")).unwrap() + units(json!("0.2")).unwrap(),
            units(json!("0.3")).unwrap()
        );
        assert_eq!(
            format_decimal(
                units(json!("0.1")).unwrap() + units(json!("0.2")).unwrap(),
                2
            ),
            "0.30"
        );
        for (v, want) in [
            (json!("12.3"), "12.30"),
            (json!("-0.5"), "-0.50"),
            (json!("-0"), "0.00"),
            (json!("007"), "7.00"),
            (json!("+1.10"), "1.10"),
            (json!(0.1), "0.10"),
            (json!(12), "12.00"),
            (json!("9999999999999999.99"), "9999999999999999.99"),
            (json!("-9999999999999999.99"), "-9999999999999999.99"),
            (json!("1.500"), "1.50"),
        ] {
            assert_eq!(format_decimal(units(v.clone()).unwrap(), 2), want, "{v}");
        }
        for bad in [
            json!("1.234"),
            json!("10000000000000000.00"),
            json!("1e3"),
            json!(".5"),
            json!("5."),
            json!("abc"),
            json!(""),
            json!("1,5"),
            json!(true),
            json!(1e20),
            json!(0.1234567890123456),
        ] {
            assert!(units(bad.clone()).is_err(), "{bad}");
        }
        assert_eq!(format_decimal(5, 0), "5");
        assert_eq!(format_decimal(-5, 3), "-0.005");
        assert_eq!(format_decimal(i64::MIN + 1, 2), "-92233720368547758.07");
    }
}
