//! Times as operators type them: RFC 3339, `now`, or a span before now ("24 hours
//! ago", "7d", "90 minutes").

use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

/// The instant `text` names, relative spans counted back from `now`.
pub fn parse_time(text: &str, now: OffsetDateTime) -> Result<OffsetDateTime, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(at);
    }
    let span = text.strip_suffix("ago").unwrap_or(text).trim();
    let digits = span.find(|c: char| !c.is_ascii_digit()).unwrap_or(span.len());
    let (number, unit) = span.split_at(digits);
    let number: i64 = number.parse().map_err(|_| unreadable(text))?;
    let unit_seconds: i64 = match unit.trim().to_ascii_lowercase().as_str() {
        "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        "w" | "week" | "weeks" => 604_800,
        _ => return Err(unreadable(text)),
    };
    let seconds =
        number.checked_mul(unit_seconds).filter(|s| *s <= 100 * 365 * 86_400).ok_or_else(|| unreadable(text))?;
    Ok(now - Duration::seconds(seconds))
}

fn unreadable(text: &str) -> String {
    format!(
        "{text:?} is not a time: give RFC 3339 (2026-11-30T08:00:00Z), \"now\", or a span before now (\"24 hours ago\", \"7d\", \"90m\")"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_count_back_from_now_and_rfc3339_is_taken_as_is() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        assert_eq!(parse_time("24 hours ago", now).unwrap(), now - Duration::hours(24));
        assert_eq!(parse_time("7d", now).unwrap(), now - Duration::days(7));
        assert_eq!(parse_time("90m", now).unwrap(), now - Duration::minutes(90));
        assert_eq!(parse_time("1 week ago", now).unwrap(), now - Duration::weeks(1));
        assert_eq!(parse_time("now", now).unwrap(), now);
        let at = parse_time("2026-11-30T08:00:00Z", now).unwrap();
        assert_eq!(at.unix_timestamp(), 1_796_025_600);
        for bad in ["yesterday", "24 parsecs ago", "", "-5d", "2026-13-01T00:00:00Z", "99999999999999d"] {
            assert!(parse_time(bad, now).is_err(), "{bad}");
        }
    }
}
