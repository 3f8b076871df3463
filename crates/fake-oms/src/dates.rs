//! Datetimes as DRF writes them and as Django's `parse_datetime` reads filter values.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, TimeZone, Timelike, Utc};

/// The server's time zone for filter values without an offset (Europe/Istanbul, fixed +03:00
/// since 2016).
pub fn istanbul() -> FixedOffset {
    FixedOffset::east_opt(3 * 3600).expect("valid offset")
}

/// Writes `t` like DRF (`isoformat()` with `+00:00` turned into `Z`): microseconds only when
/// non-zero; in `offset` if given.
pub fn write_drf_datetime(buf: &mut Vec<u8>, t: DateTime<Utc>, offset: Option<FixedOffset>) {
    let secs = offset.map_or(0, |o| o.local_minus_utc());
    let local = t.naive_utc() + chrono::TimeDelta::seconds(secs as i64);
    let year = local.year();
    if (0..=9999).contains(&year) {
        push_digits(buf, year as u32, 4);
    } else {
        buf.extend_from_slice(year.to_string().as_bytes());
    }
    buf.push(b'-');
    push_digits(buf, local.month(), 2);
    buf.push(b'-');
    push_digits(buf, local.day(), 2);
    buf.push(b'T');
    push_digits(buf, local.hour(), 2);
    buf.push(b':');
    push_digits(buf, local.minute(), 2);
    buf.push(b':');
    push_digits(buf, local.second(), 2);
    let micros = local.nanosecond() / 1000;
    if micros != 0 {
        buf.push(b'.');
        push_digits(buf, micros.min(999_999), 6);
    }
    if secs == 0 {
        buf.push(b'Z');
    } else {
        buf.push(if secs < 0 { b'-' } else { b'+' });
        let m = secs.unsigned_abs() / 60;
        push_digits(buf, m / 60, 2);
        buf.push(b':');
        push_digits(buf, m % 60, 2);
        let s = secs.unsigned_abs() % 60;
        if s != 0 {
            buf.push(b':');
            push_digits(buf, s, 2);
        }
    }
}

/// [`write_drf_datetime`] into a `String`.
pub fn format_drf_datetime(t: DateTime<Utc>, offset: Option<FixedOffset>) -> String {
    let mut buf = Vec::with_capacity(32);
    write_drf_datetime(&mut buf, t, offset);
    String::from_utf8(buf).expect("ascii")
}

fn push_digits(buf: &mut Vec<u8>, mut v: u32, width: usize) {
    let start = buf.len();
    buf.resize(start + width, b'0');
    for i in (0..width).rev() {
        buf[start + i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Parses a filter value like Django's `parse_datetime` (after the form field's `strip()`):
/// `YYYY-MM-DD[T ]H[H]:M[M][:S[S][(.|,)ffffff[ffffff]]][ws][Z|±HH[[:]MM]]`.
/// A value without an offset is read in `naive_offset`. `None` means "Enter a valid
/// date/time.".
pub fn parse_django_datetime(value: &str, naive_offset: FixedOffset) -> Option<DateTime<Utc>> {
    let s = value.trim().as_bytes();
    let mut p = Cursor { s, i: 0 };
    let year = p.digits(4, 4)?;
    p.lit(b'-')?;
    let month = p.digits(1, 2)?;
    p.lit(b'-')?;
    let day = p.digits(1, 2)?;
    if !(p.lit(b'T').is_some() || p.lit(b' ').is_some()) {
        return None;
    }
    let hour = p.digits(1, 2)?;
    p.lit(b':')?;
    let minute = p.digits(1, 2)?;
    let (mut second, mut micro) = (0, 0);
    if p.peek() == Some(b':') {
        p.i += 1;
        second = p.digits(1, 2)?;
        if matches!(p.peek(), Some(b'.' | b',')) {
            p.i += 1;
            let start = p.i;
            let _ = p.digits(1, 12)?;
            let frac = &s[start..p.i];
            let six = &frac[..frac.len().min(6)];
            micro = six.iter().fold(0u32, |a, d| a * 10 + u32::from(d - b'0'))
                * 10u32.pow(6 - six.len() as u32);
        }
    }
    while p.peek().is_some_and(|c| c.is_ascii_whitespace()) {
        p.i += 1;
    }
    let offset_secs: Option<i32> = match p.peek() {
        None => None,
        Some(b'Z') => {
            p.i += 1;
            Some(0)
        }
        Some(sign @ (b'+' | b'-')) => {
            p.i += 1;
            let h = p.digits(2, 2)? as i32;
            let m = match p.peek() {
                None => 0,
                Some(b':') => {
                    p.i += 1;
                    p.digits(2, 2)? as i32
                }
                Some(_) => p.digits(2, 2)? as i32,
            };
            let total = (h * 60 + m) * 60;
            if total >= 24 * 3600 {
                return None;
            }
            Some(if sign == b'-' { -total } else { total })
        }
        Some(_) => return None,
    };
    if p.i != s.len() {
        return None;
    }
    let naive = NaiveDate::from_ymd_opt(year as i32, month, day)?
        .and_hms_micro_opt(hour, minute, second, micro)?;
    if year == 0 {
        return None;
    }
    let tz = match offset_secs {
        Some(secs) => FixedOffset::east_opt(secs)?,
        None => naive_offset,
    };
    tz.from_local_datetime(&naive)
        .single()
        .map(|d| d.with_timezone(&Utc))
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn lit(&mut self, c: u8) -> Option<()> {
        (self.peek() == Some(c)).then(|| self.i += 1)
    }
    /// Greedy `\d{min,max}` (the following regex item is never a digit, so no backtracking).
    fn digits(&mut self, min: usize, max: usize) -> Option<u32> {
        let start = self.i;
        let mut v: u64 = 0;
        while self.i - start < max && self.peek().is_some_and(|c| c.is_ascii_digit()) {
            v = v * 10 + u64::from(self.s[self.i] - b'0');
            self.i += 1;
        }
        (self.i - start >= min).then_some(v.min(u32::MAX as u64) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<String> {
        parse_django_datetime(s, istanbul()).map(|t| format_drf_datetime(t, None))
    }

    #[test]
    fn formats_like_drf() {
        let t = DateTime::parse_from_rfc3339("2023-10-06T08:42:53.427050Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format_drf_datetime(t, None), "2023-10-06T08:42:53.427050Z");
        assert_eq!(
            format_drf_datetime(t, Some(istanbul())),
            "2023-10-06T11:42:53.427050+03:00"
        );
        assert_eq!(
            format_drf_datetime(t, FixedOffset::west_opt(5 * 3600 + 30 * 60)),
            "2023-10-06T03:12:53.427050-05:30"
        );
        assert_eq!(
            format_drf_datetime(t, FixedOffset::east_opt(0)),
            "2023-10-06T08:42:53.427050Z"
        );
        let whole = DateTime::parse_from_rfc3339("2023-10-06T08:42:53Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format_drf_datetime(whole, None), "2023-10-06T08:42:53Z");
        let tenth = DateTime::parse_from_rfc3339("2023-10-06T08:42:53.1Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            format_drf_datetime(tenth, None),
            "2023-10-06T08:42:53.100000Z"
        );
    }

    #[test]
    fn parses_like_django() {
        let z = Some("2023-10-06T08:42:53.427050Z".to_string());
        assert_eq!(p("2023-10-06T08:42:53.427050Z"), z);
        assert_eq!(p("2023-10-06T11:42:53.427050+03:00"), z);
        assert_eq!(p("2023-10-06T11:42:53.427050+0300"), z);
        assert_eq!(p("2023-10-06 11:42:53.427050+03"), z);
        assert_eq!(p("2023-10-06T11:42:53.427050"), z, "naive = Istanbul");
        assert_eq!(p("2023-10-06T08:42:53,427050 Z"), z);
        assert_eq!(p(" 2023-10-06T08:42:53.427050999Z "), z);
        assert_eq!(
            p("2023-10-06T08:42:53.5-01:30"),
            Some("2023-10-06T10:12:53.500000Z".into())
        );
        assert_eq!(p("2023-1-6T8:4Z"), Some("2023-01-06T08:04:00Z".into()));
        for bad in [
            "2023-10-06T11:42:53 03:00",
            "2023-10-06",
            "2023-10-06T11",
            "2023-13-06T11:42:53Z",
            "2023-02-30T11:42:53Z",
            "2023-10-06T24:00:00Z",
            "2023-10-06T11:42:60Z",
            "2023-10-06T11:42:53+3",
            "2023-10-06T11:42:53+03:0",
            "2023-10-06T11:42:53+24:00",
            "2023-10-06T11:42:53.Z",
            "2023-10-06T11:42:53.1234567890123Z",
            "2023-10-06X11:42:53Z",
            "0000-01-01T00:00:00Z",
            "yesterday",
            "",
        ] {
            assert_eq!(p(bad), None, "{bad}");
        }
    }
}
