//! JSON writing by hand, byte for byte as DRF renders it (Python's `json.dumps` with
//! `ensure_ascii=False`, DRF's U+2028/U+2029 escapes): customers in the order of their description,
//! the page envelope, and form errors. Hand-written because it is the hot path of the benchmark.

use std::sync::LazyLock;

use chrono::FixedOffset;

use super::customers::{CUSTOMERS, FakeCustomer, Slot};
use super::dates::write_drf_datetime;
use super::store::{Row, Store};

/// A page as DRF's `PageNumberPagination` renders it: `{count, next, previous, results}`,
/// with the rows `ids` of `store` as `results` (from its cache of their JSON when the
/// datetimes are in UTC, see [`Store::write_json_list`]).
pub(super) fn write_page<R: Row>(
    count: i64,
    next: Option<&str>,
    previous: Option<&str>,
    store: &mut Store<R>,
    ids: &[i64],
    offset: Option<FixedOffset>,
) -> Vec<u8> {
    let mut body = Vec::with_capacity(128 + ids.len() * 360);
    body.extend_from_slice(b"{\"count\":");
    write_i64(&mut body, count);
    body.extend_from_slice(b",\"next\":");
    write_opt_str(&mut body, next);
    body.extend_from_slice(b",\"previous\":");
    write_opt_str(&mut body, previous);
    body.extend_from_slice(b",\"results\":[");
    // The ids come from the store's own index; a missing one is a bug in the fake, which the
    // server's catch_unwind turns into a 500 rather than a page with a hole in it.
    match offset {
        None => assert!(store.write_json_list(&mut body, ids), "indexed ids exist"),
        Some(_) => {
            for (i, &id) in ids.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                let row = store.get(id).expect("indexed ids exist");
                row.write_json(&mut body, offset);
            }
        }
    }
    body.extend_from_slice(b"]}");
    body
}

/// Writes one customer as DRF would (`raw_override` verbatim if set): the documented fields in
/// [`CUSTOMERS`] order, an `extra` key naming one of them replacing its value in place, then the
/// other extra fields.
pub(crate) fn write_customer(buf: &mut Vec<u8>, c: &FakeCustomer, offset: Option<FixedOffset>) {
    if let Some(raw) = &c.raw_override {
        serde_json::to_writer(&mut *buf, raw).expect("writing to a Vec cannot fail");
        return;
    }
    let ex = &c.extra;
    for (name, (key, slot)) in CUSTOMERS.names().zip(LAYOUT.iter()) {
        buf.extend_from_slice(key);
        if let Some(v) = (!ex.is_empty()).then(|| ex.get(name)).flatten() {
            serde_json::to_writer(&mut *buf, v).expect("writing to a Vec cannot fail");
            continue;
        }
        match slot {
            Some(Slot::Id) => write_i64(buf, c.id),
            Some(Slot::CreatedDate) => write_datetime(buf, c.created_date, offset),
            Some(Slot::ModifiedDate) => write_datetime(buf, c.modified_date, offset),
            Some(Slot::OmnitronId) => write_opt_i64(buf, c.omnitron_id),
            Some(Slot::Email) => write_opt_str(buf, c.email.as_deref()),
            Some(Slot::FirstName) => write_opt_str(buf, c.first_name.as_deref()),
            Some(Slot::LastName) => write_opt_str(buf, c.last_name.as_deref()),
            Some(Slot::PhoneNumber) => write_opt_str(buf, c.phone_number.as_deref()),
            Some(Slot::ErpCode) => write_opt_str(buf, c.erp_code.as_deref()),
            Some(Slot::Channel) => write_opt_i64(buf, c.channel),
            // A field described before the fake stores it: DRF writes a nullable column
            // without a value as null.
            None => buf.extend_from_slice(b"null"),
        }
    }
    for (k, v) in ex {
        if CUSTOMERS.position(k).is_some() {
            continue;
        }
        buf.push(b',');
        write_json_str(buf, k);
        buf.push(b':');
        serde_json::to_writer(&mut *buf, v).expect("writing to a Vec cannot fail");
    }
    buf.push(b'}');
}

/// Per [`CUSTOMERS`] field, its key as written (`{"id":` first, then `,"name":`) and its
/// slot: derived once from the description, so a record neither escapes its field names nor
/// matches them as strings.
static LAYOUT: LazyLock<Vec<(Vec<u8>, Option<Slot>)>> = LazyLock::new(|| {
    CUSTOMERS
        .names()
        .enumerate()
        .map(|(i, name)| {
            let mut key = vec![if i == 0 { b'{' } else { b',' }];
            write_json_str(&mut key, name);
            key.push(b':');
            (key, Slot::of(name))
        })
        .collect()
});

/// The slot of the [`CUSTOMERS`] field at `at`.
pub(crate) fn slot(at: usize) -> Option<Slot> {
    LAYOUT.get(at).and_then(|(_, slot)| *slot)
}

pub(crate) fn write_datetime(
    buf: &mut Vec<u8>,
    t: chrono::DateTime<chrono::Utc>,
    offset: Option<FixedOffset>,
) {
    buf.push(b'"');
    write_drf_datetime(buf, t, offset);
    buf.push(b'"');
}

pub(crate) fn write_i64(buf: &mut Vec<u8>, v: i64) {
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
/// of U+2028/U+2029. Runs of bytes written as they are (nearly every string) are copied whole.
pub(crate) fn write_json_str(buf: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let b = s.as_bytes();
    buf.reserve(b.len() + 2);
    buf.push(b'"');
    // `b[start..]` is not written yet; the next byte to look at is at `from` or after.
    let mut start = 0;
    let mut from = 0;
    while let Some(off) = b[from..].iter().position(|&c| SPECIAL[usize::from(c)]) {
        let i = from + off;
        let c = b[i];
        let control;
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0xE2 => match b.get(i + 1..i + 3) {
                Some([0x80, 0xA8]) => b"\\u2028",
                Some([0x80, 0xA9]) => b"\\u2029",
                // Another character starting with 0xE2 (such as '€'): written as it is.
                _ => {
                    from = i + 1;
                    continue;
                }
            },
            _ => {
                control = [
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(c >> 4)],
                    HEX[usize::from(c & 15)],
                ];
                &control
            }
        };
        buf.extend_from_slice(&b[start..i]);
        buf.extend_from_slice(esc);
        start = i + if c == 0xE2 { 3 } else { 1 };
        from = start;
    }
    buf.extend_from_slice(&b[start..]);
    buf.push(b'"');
}

/// The bytes [`write_json_str`] stops at: `"`, `\`, controls, and 0xE2, the lead byte of
/// U+2028/U+2029 (and of other characters, which are written as they are).
static SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = true;
        c += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t[0xE2] = true;
    t
};

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

    /// [`write_json_str`] as it was before the plain-run fast path: the reference it must match.
    fn write_json_str_reference(buf: &mut Vec<u8>, s: &str) {
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

    /// [`write_customer`] as it was before the precomputed keys: the reference it must match.
    fn write_customer_reference(buf: &mut Vec<u8>, c: &FakeCustomer, offset: Option<FixedOffset>) {
        if let Some(raw) = &c.raw_override {
            serde_json::to_writer(&mut *buf, raw).expect("writing to a Vec cannot fail");
            return;
        }
        let ex = &c.extra;
        for (i, name) in CUSTOMERS.names().enumerate() {
            buf.push(if i == 0 { b'{' } else { b',' });
            write_json_str_reference(buf, name);
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
                // A field described before the fake stores it: DRF writes a nullable
                // column without a value as null.
                _ => buf.extend_from_slice(b"null"),
            }
        }
        for (k, v) in ex {
            if CUSTOMERS.position(k).is_some() {
                continue;
            }
            buf.push(b',');
            write_json_str_reference(buf, k);
            buf.push(b':');
            serde_json::to_writer(&mut *buf, v).expect("writing to a Vec cannot fail");
        }
        buf.push(b'}');
    }

    /// Pieces that need escaping, look like they might, or are multi-byte.
    const AWKWARD: &[&str] = &[
        "", "a", "Zz9", " ", "\"", "\\", "\\u2028", "\n", "\r", "\t", "\u{8}", "\u{c}", "\u{0}",
        "\u{1}", "\u{1f}", "\u{7f}", "\u{2028}", "\u{2029}", "\u{2027}", "\u{202a}", "\u{2000}",
        "€", "\u{2fff}", "İ", "ş", "日本", "😀", "\u{80}", "\u{ffff}",
    ];

    #[test]
    fn json_strings_match_the_reference_writer() {
        let check = |s: &str| {
            let mut new = Vec::new();
            write_json_str(&mut new, s);
            let mut reference = Vec::new();
            write_json_str_reference(&mut reference, s);
            assert_eq!(new, reference, "{s:?}");
        };
        for a in AWKWARD {
            for b in AWKWARD {
                for c in AWKWARD {
                    check(&format!("{a}{b}{c}"));
                }
            }
        }
        check(&"plain text, no escapes at all ".repeat(40));
        check(&AWKWARD.concat().repeat(5));
        // Appends to what the buffer holds.
        let mut b = b"x".to_vec();
        write_json_str(&mut b, "\u{2028}€");
        assert_eq!(b, "x\"\\u2028€\"".as_bytes());
    }

    #[test]
    fn customers_match_the_reference_writer() {
        let t = chrono::DateTime::from_timestamp(1_700_000_000, 123_456_000).unwrap();
        let whole = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let mut customers = vec![
            FakeCustomer::new(1, t),
            FakeCustomer::new(-2, whole),
            FakeCustomer::new(3, t).with_extra("zz", serde_json::json!({"a": [1, "\u{2028}"]})),
            FakeCustomer::new(4, t)
                .with_extra("email", serde_json::json!(17))
                .with_extra("aa\"\n", serde_json::json!(null)),
            FakeCustomer::new(5, t).with_raw(serde_json::json!({"id": "x"})),
        ];
        let mut c = FakeCustomer::new(6, t);
        c.omnitron_id = None;
        c.email = None;
        c.first_name = Some("İpek \"q\" \\ \u{1}\u{2029}€".into());
        c.last_name = Some(String::new());
        c.phone_number = None;
        c.erp_code = Some("\u{2028}".into());
        c.channel = None;
        customers.push(c);
        for text in AWKWARD {
            let mut c = FakeCustomer::new(7, t);
            c.last_name = Some(text.to_string());
            c.erp_code = Some(format!("{text}{text}x"));
            customers.push(c.with_extra(*text, serde_json::json!(text)));
        }
        let offsets = [
            None,
            Some(super::super::dates::istanbul()),
            FixedOffset::west_opt(5 * 3600 + 30 * 60),
        ];
        for c in &customers {
            for offset in offsets {
                let mut new = Vec::new();
                write_customer(&mut new, c, offset);
                let mut reference = Vec::new();
                write_customer_reference(&mut reference, c, offset);
                assert_eq!(
                    String::from_utf8_lossy(&new),
                    String::from_utf8_lossy(&reference)
                );
            }
        }
    }

    #[test]
    fn every_field_has_its_own_slot() {
        for (name, (key, slot)) in CUSTOMERS.names().zip(LAYOUT.iter()) {
            assert!(slot.is_some(), "{name}");
            assert!(key.ends_with(format!("\"{name}\":").as_bytes()), "{name}");
        }
        assert_eq!(LAYOUT.len(), CUSTOMERS.fields.len());
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
        let keys: Vec<usize> = CUSTOMERS
            .names()
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
