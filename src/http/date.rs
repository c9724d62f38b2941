//! HTTP-date (RFC 9110 §5.6.7) as sent ([`format`], IMF-fixdate) and as
//! received: recipients accept all three forms.
//!
//! - IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`
//! - RFC 850: `Sunday, 06-Nov-94 08:49:37 GMT` (two-digit year)
//! - asctime: `Sun Nov  6 08:49:37 1994` (UTC)
//!
//! A day name that contradicts the date makes the text invalid: such a
//! date was not made by a clock, and a conditional request with an invalid
//! date is answered in full (the field is ignored).

use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveTime, Timelike, Utc};

const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `t` as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), whole
/// seconds; written directly (chrono's strftime parses its pattern on
/// every call, on every dated response).
pub fn format(t: DateTime<Utc>) -> String {
    fn two(out: &mut String, n: u32) {
        out.push(char::from(b'0' + (n / 10 % 10) as u8));
        out.push(char::from(b'0' + (n % 10) as u8));
    }
    let mut out = String::with_capacity(29);
    out.push_str(&DAYS[t.weekday().num_days_from_monday() as usize][..3]);
    out.push_str(", ");
    two(&mut out, t.day());
    out.push(' ');
    out.push_str(MONTHS[t.month0() as usize]);
    out.push(' ');
    // Four digits: HTTP-dates are years 0000-9999.
    let year = t.year().clamp(0, 9999) as u32;
    two(&mut out, year / 100);
    two(&mut out, year % 100);
    out.push(' ');
    two(&mut out, t.hour());
    out.push(':');
    two(&mut out, t.minute());
    out.push(':');
    two(&mut out, t.second());
    out.push_str(" GMT");
    out
}

/// An HTTP-date in any of its three forms; `None` when it is none of them.
pub fn parse(text: &str) -> Option<DateTime<Utc>> {
    parse_at(text, Utc::now())
}

/// [`parse`] as of `now`, which decides the century of an RFC 850 year.
pub fn parse_at(text: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let text = text.trim();
    // IMF-fixdate is RFC 5322's date-time in GMT (chrono checks the day
    // name against the date).
    if let Ok(t) = DateTime::parse_from_rfc2822(text) {
        return Some(t.to_utc());
    }
    rfc850(text, now).or_else(|| asctime(text))
}

/// `Sunday, 06-Nov-94 08:49:37 GMT`. A two-digit year is the latest year
/// with those digits that is not more than 50 years in the future (RFC
/// 9110 §5.6.7: a date that appears to be further ahead is in the past).
fn rfc850(text: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let (day_name, rest) = text.split_once(", ")?;
    let (date, time) = rest.strip_suffix(" GMT")?.split_once(' ')?;
    let mut parts = date.split('-');
    let (day, month, yy) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || yy.len() != 2 || day.len() != 2 {
        return None;
    }
    let yy = i32::try_from(digits(yy)?).ok()?;
    let (month, day, time) = fields(month, day, time)?;
    // Compared field by field, so that the century is chosen before the
    // date is checked (29 February exists in 2000, not in 2100).
    let limit = now.checked_add_months(Months::new(50 * 12))?.naive_utc();
    let ahead = |year: i32| {
        (year, month, day, time) > (limit.year(), limit.month(), limit.day(), limit.time())
    };
    let mut year = limit.year() - limit.year().rem_euclid(100) + yy;
    while ahead(year) {
        year -= 100;
    }
    let when = at(year, month, day, time)?;
    (DAYS[when.weekday().num_days_from_monday() as usize] == day_name).then_some(when)
}

/// `Sun Nov  6 08:49:37 1994` (a one-digit day is padded with a space).
fn asctime(text: &str) -> Option<DateTime<Utc>> {
    let mut parts = text.split_ascii_whitespace();
    let (day_name, month, day, time, year) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if parts.next().is_some() || year.len() != 4 || day.len() > 2 {
        return None;
    }
    let (month, day, time) = fields(month, day, time)?;
    let when = at(i32::try_from(digits(year)?).ok()?, month, day, time)?;
    (DAYS[when.weekday().num_days_from_monday() as usize][..3] == *day_name).then_some(when)
}

/// Month number (from its three-letter name), day number and `hh:mm:ss`.
fn fields(month: &str, day: &str, time: &str) -> Option<(u32, u32, NaiveTime)> {
    let month = MONTHS.iter().position(|m| *m == month)? as u32 + 1;
    if time.len() != 8 {
        return None;
    }
    let time = NaiveTime::parse_from_str(time, "%H:%M:%S").ok()?;
    Some((month, digits(day)?, time))
}

/// That moment in UTC, if the date exists.
fn at(year: i32, month: u32, day: u32, time: NaiveTime) -> Option<DateTime<Utc>> {
    Some(
        NaiveDate::from_ymd_opt(year, month, day)?
            .and_time(time)
            .and_utc(),
    )
}

/// A run of ASCII digits (no sign, no spaces) as a number.
fn digits(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn format_writes_imf_fixdate_as_strftime_did() {
        use chrono::TimeZone;
        for secs in [0i64, 784_111_777, 1_796_000_000, 4_102_444_799, 951_782_400] {
            let t = Utc.timestamp_opt(secs, 0).unwrap();
            assert_eq!(
                super::format(t),
                t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
            );
            assert_eq!(parse(&super::format(t)), Some(t));
        }
    }

    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn the_three_forms_name_the_same_instant() {
        let now = utc("2026-12-05T18:00:00Z");
        let want = utc("2026-12-05T17:33:26Z");
        for text in [
            "Sat, 05 Dec 2026 17:33:26 GMT",
            "Saturday, 05-Dec-26 17:33:26 GMT",
            "Sat Dec  5 17:33:26 2026",
            "Sat Dec 05 17:33:26 2026",
        ] {
            assert_eq!(parse_at(text, now), Some(want), "{text}");
        }
        assert_eq!(
            parse_at("Sunday, 06-Nov-94 08:49:37 GMT", now),
            Some(utc("1994-11-06T08:49:37Z"))
        );
        assert_eq!(
            parse_at("Sun Nov  6 08:49:37 1994", now),
            Some(utc("1994-11-06T08:49:37Z"))
        );
    }

    #[test]
    fn a_two_digit_year_more_than_50_years_ahead_is_in_the_last_century() {
        let now = utc("2026-12-05T18:00:00Z");
        // 2076-12-05 is less than 50 years ahead; 2077-01-01 is more.
        assert_eq!(
            parse_at("Thursday, 05-Nov-76 00:00:00 GMT", now),
            Some(utc("2076-11-05T00:00:00Z"))
        );
        assert_eq!(
            parse_at("Saturday, 01-Jan-77 00:00:00 GMT", now),
            Some(utc("1977-01-01T00:00:00Z"))
        );
        assert_eq!(
            parse_at(
                "Friday, 01-Jan-00 00:00:00 GMT",
                utc("2099-06-01T00:00:00Z")
            ),
            Some(utc("2100-01-01T00:00:00Z"))
        );
        // A leap day of a two-digit year.
        assert_eq!(
            parse_at(
                "Tuesday, 29-Feb-00 00:00:00 GMT",
                utc("2026-12-05T18:00:00Z")
            ),
            Some(utc("2000-02-29T00:00:00Z"))
        );
    }

    #[test]
    fn anything_else_is_not_a_date() {
        let now = utc("2026-12-05T18:00:00Z");
        for text in [
            "",
            "yesterday",
            // The day name contradicts the date.
            "Sunday, 05-Dec-26 17:33:26 GMT",
            "Sun Dec  5 17:33:26 2026",
            "Sun, 05 Dec 2026 17:33:26 GMT",
            // Malformed parts.
            "Saturday, 05-Dec-2026 17:33:26 GMT",
            "Saturday, 05-Dec-26 17:33:26 UTC",
            "Saturday, 05-Dec-+6 17:33:26 GMT",
            "Saturday, 32-Dec-26 17:33:26 GMT",
            "Sat Dex  5 17:33:26 2026",
            "Sat Dec  5 17:33 2026",
            "Sat Dec  5 17:33:26 26",
            "Sat Dec  5 17:33:26 2026 GMT",
            "Sat Dec 005 17:33:26 2026",
        ] {
            assert_eq!(parse_at(text, now), None, "{text:?}");
        }
    }
}
