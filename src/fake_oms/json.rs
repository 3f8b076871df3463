//! JSON writing by hand, byte for byte as DRF renders it (Python's `json.dumps` with
//! `ensure_ascii=False`, DRF's U+2028/U+2029 escapes): customers in the vendor's field order,
//! the page envelope, and form errors. Hand-written because it is the hot path of the benchmark.

use chrono::FixedOffset;

use super::dates::write_drf_datetime;
use super::store::FakeCustomer;

/// A page as DRF's `PageNumberPagination` renders it: `{count, next, previous, results}`.
pub(super) fn write_page<'a>(
    count: i64,
    next: Option<&str>,
    previous: Option<&str>,
    rows: impl ExactSizeIterator<Item = &'a FakeCustomer>,
    offset: Option<FixedOffset>,
) -> Vec<u8> {
    let mut body = Vec::with_capacity(128 + rows.len() * 360);
    body.extend_from_slice(b"{\"count\":");
    write_i64(&mut body, count);
    body.extend_from_slice(b",\"next\":");
    write_opt_str(&mut body, next);
    body.extend_from_slice(b",\"previous\":");
    write_opt_str(&mut body, previous);
    body.extend_from_slice(b",\"results\":[");
    for (i, c) in rows.enumerate() {
        if i > 0 {
            body.push(b',');
        }
        write_customer(&mut body, c, offset);
    }
    body.extend_from_slice(b"]}");
    body
}

/// Writes one customer as DRF would (`raw_override` verbatim if set).
pub(crate) fn write_customer(buf: &mut Vec<u8>, c: &FakeCustomer, offset: Option<FixedOffset>) {
    if let Some(raw) = &c.raw_override {
        serde_json::to_writer(&mut *buf, raw).expect("writing to a Vec cannot fail");
        return;
    }
    let ex = &c.extra;
    let overridden = |buf: &mut Vec<u8>, key: &[u8], name: &str| -> bool {
        buf.extend_from_slice(key);
        if ex.is_empty() {
            return false;
        }
        match ex.get(name) {
            Some(v) => {
                serde_json::to_writer(&mut *buf, v).expect("writing to a Vec cannot fail");
                true
            }
            None => false,
        }
    };
    if !overridden(buf, b"{\"id\":", "id") {
        write_i64(buf, c.id);
    }
    if !overridden(buf, b",\"created_date\":", "created_date") {
        buf.push(b'"');
        write_drf_datetime(buf, c.created_date, offset);
        buf.push(b'"');
    }
    if !overridden(buf, b",\"modified_date\":", "modified_date") {
        buf.push(b'"');
        write_drf_datetime(buf, c.modified_date, offset);
        buf.push(b'"');
    }
    if !overridden(buf, b",\"omnitron_id\":", "omnitron_id") {
        write_opt_i64(buf, c.omnitron_id);
    }
    if !overridden(buf, b",\"email\":", "email") {
        write_opt_str(buf, c.email.as_deref());
    }
    if !overridden(buf, b",\"first_name\":", "first_name") {
        write_opt_str(buf, c.first_name.as_deref());
    }
    if !overridden(buf, b",\"last_name\":", "last_name") {
        write_opt_str(buf, c.last_name.as_deref());
    }
    if !overridden(buf, b",\"phone_number\":", "phone_number") {
        write_opt_str(buf, c.phone_number.as_deref());
    }
    if !overridden(buf, b",\"erp_code\":", "erp_code") {
        write_opt_str(buf, c.erp_code.as_deref());
    }
    if !overridden(buf, b",\"channel\":", "channel") {
        write_opt_i64(buf, c.channel);
    }
    for (k, v) in ex {
        if STANDARD_FIELDS.contains(&k.as_str()) {
            continue;
        }
        buf.push(b',');
        write_json_str(buf, k);
        buf.push(b':');
        serde_json::to_writer(&mut *buf, v).expect("writing to a Vec cannot fail");
    }
    buf.push(b'}');
}

pub(super) const STANDARD_FIELDS: [&str; 10] = [
    "id",
    "created_date",
    "modified_date",
    "omnitron_id",
    "email",
    "first_name",
    "last_name",
    "phone_number",
    "erp_code",
    "channel",
];

pub(super) fn write_i64(buf: &mut Vec<u8>, v: i64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    let mut u = v.unsigned_abs();
    loop {
        i -= 1;
        tmp[i] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    if v < 0 {
        buf.push(b'-');
    }
    buf.extend_from_slice(&tmp[i..]);
}

pub(super) fn write_opt_i64(buf: &mut Vec<u8>, v: Option<i64>) {
    match v {
        Some(v) => write_i64(buf, v),
        None => buf.extend_from_slice(b"null"),
    }
}

pub(super) fn write_opt_str(buf: &mut Vec<u8>, v: Option<&str>) {
    match v {
        Some(s) => write_json_str(buf, s),
        None => buf.extend_from_slice(b"null"),
    }
}

/// A JSON string as Python's `json.dumps(ensure_ascii=False)` writes it, plus DRF's escaping
/// of U+2028/U+2029.
pub(super) fn write_json_str(buf: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf.push(b'"');
    let b = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let esc: Option<&[u8]> = match c {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0x08 => Some(b"\\b"),
            0x0c => Some(b"\\f"),
            0xE2 if i + 2 < b.len()
                && b[i + 1] == 0x80
                && (b[i + 2] == 0xA8 || b[i + 2] == 0xA9) =>
            {
                Some(if b[i + 2] == 0xA8 {
                    b"\\u2028"
                } else {
                    b"\\u2029"
                })
            }
            _ => None,
        };
        if let Some(e) = esc {
            buf.extend_from_slice(&b[start..i]);
            buf.extend_from_slice(e);
            i += if c == 0xE2 { 3 } else { 1 };
            start = i;
        } else if c < 0x20 {
            buf.extend_from_slice(&b[start..i]);
            buf.extend_from_slice(b"\\u00");
            buf.push(HEX[(c >> 4) as usize]);
            buf.push(HEX[(c & 15) as usize]);
            i += 1;
            start = i;
        } else {
            i += 1;
        }
    }
    buf.extend_from_slice(&b[start..]);
    buf.push(b'"');
}

pub(super) fn errors_json(errors: &[(&'static str, String)]) -> Vec<u8> {
    let mut b = Vec::with_capacity(64);
    b.push(b'{');
    for (i, (k, msg)) in errors.iter().enumerate() {
        if i > 0 {
            b.push(b',');
        }
        write_json_str(&mut b, k);
        b.extend_from_slice(b":[");
        write_json_str(&mut b, msg);
        b.push(b']');
    }
    b.push(b'}');
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn js(s: &str) -> String {
        let mut b = Vec::new();
        write_json_str(&mut b, s);
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn json_strings_escape_like_python() {
        assert_eq!(
            js("İpek \"x\" \\ \n\u{1}\u{2028}ş"),
            "\"İpek \\\"x\\\" \\\\ \\n\\u0001\\u2028ş\""
        );
        let parsed: String = serde_json::from_str(&js("a\u{7}\u{2029}b\tç")).unwrap();
        assert_eq!(parsed, "a\u{7}\u{2029}b\tç");
    }

    #[test]
    fn ints() {
        for v in [0, 7, -7, 1234567890, i64::MIN, i64::MAX] {
            let mut b = Vec::new();
            write_i64(&mut b, v);
            assert_eq!(String::from_utf8(b).unwrap(), v.to_string());
        }
    }
}
