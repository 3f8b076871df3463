//! The one text form of an instant the warehouse stores and compares: UTC, `Z`, always six
//! fractional digits (`2023-10-06T08:42:53.427050Z`). Fixed width makes text order equal time
//! order, so SQLite can index and compare the column as text.

use chrono::{DateTime, SecondsFormat, Utc};

/// Parses an API datetime (RFC 3339 with `Z` or an offset, fraction optional) into UTC; the
/// canonical stored form is one such text, so this reads it back too.
pub fn parse_api(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// The canonical stored form.
pub fn canonical(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses an API datetime straight into the canonical form.
pub fn normalize(s: &str) -> Option<String> {
    parse_api(s).map(|t| canonical(&t))
}

/// The form sent in filters: microseconds and an explicit `+00:00` offset, so the server never
/// falls back to its own time zone. The `+` must be percent-encoded on the wire.
pub fn filter_value(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, false)
}

pub fn now_canonical() -> String {
    canonical(&Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_the_same_instant_in_utc() {
        assert_eq!(
            normalize("2023-10-06T11:42:53.427050+03:00").unwrap(),
            "2023-10-06T08:42:53.427050Z"
        );
        assert_eq!(
            normalize("2023-10-06T08:42:53Z").unwrap(),
            "2023-10-06T08:42:53.000000Z"
        );
        assert_eq!(
            normalize("2023-10-06T08:42:53.5Z").unwrap(),
            "2023-10-06T08:42:53.500000Z"
        );
        assert!(normalize("2023-10-06 08:42").is_none());
        assert!(normalize("yesterday").is_none());
    }

    #[test]
    fn filter_value_has_explicit_offset() {
        let t = parse_api("2023-10-06T08:42:53.000001Z").unwrap();
        assert_eq!(filter_value(&t), "2023-10-06T08:42:53.000001+00:00");
    }

    #[test]
    fn text_order_is_time_order() {
        let a = normalize("2023-10-06T08:42:53Z").unwrap();
        let b = normalize("2023-10-06T08:42:53.000001Z").unwrap();
        let c = normalize("2023-10-06T11:42:54+03:00").unwrap();
        assert!(a < b && b < c, "{a} {b} {c}");
    }
}
