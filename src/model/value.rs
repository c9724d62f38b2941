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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Text holding a NUL character.
    NulCharacter,
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Refusal::NulCharacter => "invalid_character",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::NulCharacter => "must not contain NUL characters.",
        }
    }
}

/// Brings a body value into the form its field stores, before schema
/// validation: whole-number floats of integer fields become integers (a
/// fraction is left for the schema to refuse). Text holding NUL is
/// refused: SQLite cuts patterns and C strings short at it, PostgreSQL
/// refuses it.
pub fn normalize(field: &Field, v: &mut Value) -> Result<(), Refusal> {
    match (field.ty, &*v) {
        (FieldType::Integer, Value::Number(n)) => {
            if let Some(i) = integral(n) {
                *v = Value::from(i);
            }
            Ok(())
        }
        (FieldType::String | FieldType::DateTime, Value::String(s)) if s.contains('\0') => {
            Err(Refusal::NulCharacter)
        }
        _ => Ok(()),
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
            Err(Refusal::NulCharacter)
        );
    }
}
