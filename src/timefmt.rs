//! The one text form of an instant the warehouse stores and compares: UTC, `Z`, always six
//! fractional digits (`2023-10-06T08:42:53.427050Z`). Fixed width makes text order equal time
//! order, so SQLite can index and compare the column as text.

use std::borrow::Cow;

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
pub fn normalize(s: &str) -> Option<Cow<'_, str>> {
    // DRF writes most datetimes in UTC with microseconds, i.e. already canonical: returning
    // those as they are (borrowed) skips a chrono parse, a format and a copy per field.
    if is_canonical(s) {
        return Some(Cow::Borrowed(s));
    }
    parse_api(s).map(|t| Cow::Owned(canonical(&t)))
}

/// Whether `s` is exactly the canonical form of a real instant, so that [`normalize`] would
/// give it back unchanged. `false` only means "take the slow path", never "invalid": a leap
/// second (`:60`), say, is left to chrono.
fn is_canonical(s: &str) -> bool {
    const SHAPE: &[u8; 27] = b"0000-00-00T00:00:00.000000Z";
    let b = s.as_bytes();
    if b.len() != SHAPE.len()
        || !b.iter().zip(SHAPE).all(|(&c, &p)| {
            if p == b'0' {
                c.is_ascii_digit()
            } else {
                c == p
            }
        })
    {
        return false;
    }
    let num = |from: usize, to: usize| {
        b[from..to]
            .iter()
            .fold(0u32, |n, &c| n * 10 + u32::from(c - b'0'))
    };
    let (year, month, day) = (num(0, 4), num(5, 7), num(8, 10));
    // The proleptic Gregorian calendar, as chrono's; checked by hand because it runs for two
    // fields of every record.
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => 0,
    };
    (1..=days).contains(&day) && num(11, 13) < 24 && num(14, 16) < 60 && num(17, 19) < 60
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

    /// The old way, for comparison with the fast path.
    fn normalize_slow(s: &str) -> Option<String> {
        parse_api(s).map(|t| canonical(&t))
    }

    /// Inputs on and around the canonical shape: real and impossible dates and times, every
    /// byte of some canonical texts replaced by digits and separators, other lengths and forms.
    fn fast_path_inputs() -> Vec<String> {
        let mut v: Vec<String> = [
            "2023-10-06T08:42:53.427050Z",
            "2024-02-29T23:59:59.999999Z",
            "2023-02-29T00:00:00.000000Z",
            "2023-02-30T00:00:00.000000Z",
            "2023-04-31T00:00:00.000000Z",
            "2023-13-01T00:00:00.000000Z",
            "2023-00-01T00:00:00.000000Z",
            "2023-01-00T00:00:00.000000Z",
            "2023-01-32T00:00:00.000000Z",
            "2023-10-06T24:00:00.000000Z",
            "2023-10-06T23:60:00.000000Z",
            "2023-10-06T23:59:60.000000Z",
            "2016-12-31T23:59:60.500000Z",
            "2023-10-06T23:59:61.000000Z",
            "0000-01-01T00:00:00.000000Z",
            "0001-01-01T00:00:00.000000Z",
            "9999-12-31T23:59:59.999999Z",
            "1900-02-29T00:00:00.000000Z",
            "2000-02-29T00:00:00.000000Z",
            "2023-10-06T08:42:53.427050z",
            "2023-10-06t08:42:53.427050Z",
            "2023-10-06 08:42:53.427050Z",
            "2023-10-06T08:42:53,427050Z",
            "2023/10/06T08:42:53.427050Z",
            "2023-10-06T08-42-53.427050Z",
            "2023-10-06T08:42:53.427050+00:00",
            "2023-10-06T08:42:53.427050-00:00",
            "2023-10-06T11:42:53.427050+03:00",
            "2023-10-06T08:42:53.42705Z",
            "2023-10-06T08:42:53.4270500Z",
            "2023-10-06T08:42:53.4Z",
            "2023-10-06T08:42:53Z",
            "2023-10-06T08:42Z",
            "2023-10-06",
            "+2023-10-06T08:42:53.427050Z",
            "2023-10-06T08:42:53.427050Z ",
            " 2023-10-06T08:42:53.427050Z",
            "2023-1a-06T08:42:53.427050Z",
            "2023-10-06T08:42:53.42705ZZ",
            "2023-10-06T08:42:53.-27050Z",
            "2023-10-06T08:42:53.427050\u{0}",
            "\u{0663}023-10-06T08:42:53.427050Z",
            "",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let replacements = b"0123456789-:T.Z +zt";
        for base in [
            "2023-10-06T08:42:53.427050Z",
            "2024-02-29T23:59:59.999999Z",
            "1999-12-31T19:09:09.000001Z",
        ] {
            for i in 0..base.len() {
                for &r in replacements {
                    let mut b = base.as_bytes().to_vec();
                    b[i] = r;
                    v.push(String::from_utf8(b).expect("ascii"));
                }
            }
        }
        for year in [0, 1, 1900, 1970, 2000, 2023, 2024, 9999] {
            for month in 0..=13 {
                for day in 0..=32 {
                    v.push(format!("{year:04}-{month:02}-{day:02}T12:00:00.000000Z"));
                }
            }
        }
        for hour in 0..=25 {
            for minute in [0, 1, 30, 59, 60, 61, 99] {
                for second in [0, 1, 30, 59, 60, 61, 99] {
                    v.push(format!(
                        "2023-06-30T{hour:02}:{minute:02}:{second:02}.123456Z"
                    ));
                }
            }
        }
        v
    }

    #[test]
    fn fast_path_gives_what_the_slow_path_gives() {
        let mut fast = 0;
        for s in fast_path_inputs() {
            assert_eq!(
                normalize(&s).map(Cow::into_owned),
                normalize_slow(&s),
                "{s:?}"
            );
            if is_canonical(&s) {
                fast += 1;
                assert_eq!(normalize_slow(&s).as_deref(), Some(s.as_str()), "{s:?}");
            }
        }
        // The comparison must cover the fast path, not only inputs that avoid it.
        assert!(fast > 1000, "{fast}");
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
