//! JSON writing by hand, byte for byte as DRF renders it (Python's `json.dumps` with
//! `ensure_ascii=False`, DRF's U+2028/U+2029 escapes): customers in the vendor's field order,
//! the page envelope, and form errors. Hand-written because it is the hot path of the benchmark.

use chrono::FixedOffset;

use super::dates::write_drf_datetime;
use super::store::FakeCustomer;
use crate::resource::customers::FIELDS;

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

/// Writes one customer as DRF would (`raw_override` verbatim if set): the documented fields in
/// [`FIELDS`] order, an `extra` key naming one of them replacing its value in place, then the
/// other extra fields.
pub(crate) fn write_customer(buf: &mut Vec<u8>, c: &FakeCustomer, offset: Option<FixedOffset>) {
    if let Some(raw) = &c.raw_override {
        serde_json::to_writer(&mut *buf, raw).expect("writing to a Vec cannot fail");
        return;
    }
    let ex = &c.extra;
    for (i, &name) in FIELDS.iter().enumerate() {
        buf.push(if i == 0 { b'{' } else { b',' });
        write_json_str(buf, name);
        buf.push(b':');
        if let Some(v) = (!ex.is_empty()).then(|| ex.get(name)).flatten() {
            serde_json::to_writer(&mut *buf, v).expect("writing to a Vec cannot fail");
            continue;
        }
        match name {
            "id" => write_i64(buf, c.id),
            "created_date" => write_datetime(buf, c.created_date, offset),
            "modified_date" => write_datetime(buf, c.modified_date, offset),
            "omnitron_id" => write_opt_i64(buf, c.omnitron_id),
            "email" => write_opt_str(buf, c.email.as_deref()),
            "first_name" => write_opt_str(buf, c.first_name.as_deref()),
            "last_name" => write_opt_str(buf, c.last_name.as_deref()),
            "phone_number" => write_opt_str(buf, c.phone_number.as_deref()),
            "erp_code" => write_opt_str(buf, c.erp_code.as_deref()),
            "channel" => write_opt_i64(buf, c.channel),
            // A field added to FIELDS before the fake stores it: DRF writes a nullable
            // column without a value as null.
            _ => buf.extend_from_slice(b"null"),
        }
    }
    for (k, v) in ex {
        if FIELDS.contains(&k.as_str()) {
            continue;
        }
        buf.push(b',');
        write_json_str(buf, k);
        buf.push(b':');
        serde_json::to_writer(&mut *buf, v).expect("writing to a Vec cannot fail");
    }
    buf.push(b'}');
}

fn write_datetime(
    buf: &mut Vec<u8>,
    t: chrono::DateTime<chrono::Utc>,
    offset: Option<FixedOffset>,
) {
    buf.push(b'"');
    write_drf_datetime(buf, t, offset);
    buf.push(b'"');
}

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
    fn customers_are_written_in_fields_order() {
        let t = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let c = FakeCustomer::new(4, t).with_extra("zz", serde_json::json!(1));
        let mut b = Vec::new();
        write_customer(&mut b, &c, None);
        let text = String::from_utf8(b).unwrap();
        let keys: Vec<usize> = FIELDS
            .iter()
            .map(|f| text.find(&format!("\"{f}\":")).expect(f))
            .collect();
        assert!(keys.is_sorted(), "{text}");
        assert!(text.ends_with(",\"zz\":1}"), "{text}");
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
