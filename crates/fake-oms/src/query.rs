//! Reading a request: the [`Incoming`] summary the handler keeps of it (query pairs, headers),
//! and django-filter's parsing of the query into a [`Query`] — `limit`, `page`, `sort` and the
//! filters, the exact ones from the route's [`Resource`] — with Django's leniencies (empty
//! values ignored, last repeated value wins) and its errors (400 with the form's field errors,
//! or the 500 the ORM gives for a non-integer value of an integer field: `channel_id=abc`).

use axum::extract::Request;
use axum::http::{HeaderValue, Method, header};

use super::Knobs;
use super::dates::parse_django_datetime;
use super::resource::{Kind, Resource};
use super::select::{Filters, Sort, SortKey};
use super::store::Exact;

/// What the handler knows about a request.
pub(super) struct Incoming {
    pub(super) seq: u64,
    pub(super) method: Method,
    pub(super) path: String,
    pub(super) raw_query: Option<String>,
    pub(super) query: Vec<(String, String)>,
    pub(super) authorization: Option<String>,
    pub(super) host: Option<String>,
    pub(super) accept_encoding: Option<String>,
    pub(super) received_at: std::time::Instant,
}

impl Incoming {
    pub(super) fn from_request(seq: u64, req: &Request) -> Incoming {
        let uri = req.uri();
        let raw_query = uri.query().map(str::to_owned);
        let query = raw_query
            .as_deref()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let hdr = |name| {
            req.headers()
                .get(name)
                .map(|v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        Incoming {
            seq,
            method: req.method().clone(),
            path: uri.path().to_owned(),
            raw_query,
            query,
            authorization: hdr(header::AUTHORIZATION),
            host: hdr(header::HOST),
            accept_encoding: hdr(header::ACCEPT_ENCODING),
            received_at: std::time::Instant::now(),
        }
    }

    /// Whether the client accepts a gzip-coded body (`Accept-Encoding: gzip`, q > 0).
    pub(super) fn accepts_gzip(&self) -> bool {
        self.accept_encoding.as_deref().is_some_and(|v| {
            v.split(',').any(|part| {
                let mut it = part.split(';');
                let coding = it.next().unwrap_or("").trim();
                let q_zero = it.any(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .and_then(|q| q.trim().parse::<f64>().ok())
                        .is_some_and(|q| q <= 0.0)
                });
                coding.eq_ignore_ascii_case("gzip") && !q_zero
            })
        })
    }

    /// The last value of a parameter (Django's `QueryDict.get`).
    pub(super) fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug)]
pub(super) enum PageReq {
    Number(u64),
    Last,
    Invalid,
}

pub(super) struct Query {
    pub(super) limit: usize,
    pub(super) page: PageReq,
    pub(super) sort: Sort,
    pub(super) filters: Filters,
}

pub(super) enum QueryError {
    /// Form errors in field order: 400.
    Invalid(Vec<(&'static str, String)>),
    /// What Django does with `channel_id=abc` (a `ValueError` in the ORM): 500.
    ServerError,
}

/// Python's `int(str)`: surrounding whitespace, a sign, digits with single `_` between them.
/// Saturates at the i128 range.
pub(super) fn py_int(s: &str) -> Option<i128> {
    let s = s.trim();
    let (neg, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let b = digits.as_bytes();
    if b.is_empty() || b[0] == b'_' || b[b.len() - 1] == b'_' {
        return None;
    }
    let mut v: i128 = 0;
    let mut prev_us = false;
    for &c in b {
        match c {
            b'_' if !prev_us => prev_us = true,
            b'0'..=b'9' => {
                prev_us = false;
                v = v.saturating_mul(10).saturating_add(i128::from(c - b'0'));
            }
            _ => return None,
        }
    }
    Some(if neg { -v } else { v })
}

/// A `forms.DecimalField` value: an integer, or a finite decimal (`10.5`, `1e3`).
pub(super) fn parse_number(s: &str) -> Option<f64> {
    let t = s.trim();
    if let Some(i) = py_int(t) {
        return Some(i as f64);
    }
    let ok_chars = t
        .bytes()
        .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'));
    if !ok_chars || !t.bytes().any(|c| c.is_ascii_digit()) {
        return None;
    }
    t.parse::<f64>().ok().filter(|v| v.is_finite())
}

pub(super) fn clamp_i64(v: f64) -> i64 {
    // `as` saturates at the i64 range.
    v as i64
}

/// Django's `BooleanFilter` (a `NullBooleanField`): anything else means no filter.
fn py_bool(s: &str) -> Option<bool> {
    match s.trim() {
        "True" | "true" | "1" => Some(true),
        "False" | "false" | "0" => Some(false),
        _ => None,
    }
}

pub(super) fn parse_query(
    inc: &Incoming,
    knobs: &Knobs,
    resource: &Resource,
) -> Result<Query, QueryError> {
    // A parameter the route does not declare (`Knobs::ignored_params`) is dropped silently,
    // as django-filter drops any it does not know.
    let non_empty = |k: &str| {
        inc.param(k)
            .filter(|v| !v.trim().is_empty())
            .filter(|_| !knobs.ignores(&inc.path, k))
    };
    let mut errors: Vec<(&'static str, String)> = Vec::new();

    let limit = match inc.param("limit").map(py_int) {
        Some(Some(n)) if n > 0 => {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if knobs.max_limit > 0 {
                n.min(knobs.max_limit)
            } else {
                n
            }
        }
        _ => knobs.default_limit.max(1),
    };
    let page = match inc.param("page").filter(|v| !v.is_empty()) {
        None => PageReq::Number(1),
        Some("last") => PageReq::Last,
        Some(v) => match py_int(v) {
            Some(n) if n >= 1 => PageReq::Number(u64::try_from(n).unwrap_or(u64::MAX)),
            _ => PageReq::Invalid,
        },
    };

    let mut sort = Sort {
        key: SortKey::Id,
        desc: false,
    };
    if let Some(v) = non_empty("sort") {
        let v = v.trim();
        match v {
            "id" | "-id" | "modified_date" | "-modified_date" => {
                sort.desc = v.starts_with('-');
                sort.key = if v.ends_with("id") {
                    SortKey::Id
                } else {
                    SortKey::Md
                };
            }
            _ => errors.push((
                "sort",
                format!("Select a valid choice. {v} is not one of the available choices."),
            )),
        }
    }

    let mut f = Filters::default();
    for (name, op) in [("id__gt", 0), ("id__gte", 1), ("id__lt", 2), ("id__lte", 3)] {
        let Some(v) = non_empty(name) else { continue };
        let Some(x) = parse_number(v) else {
            errors.push((name, "Enter a number.".to_owned()));
            continue;
        };
        f.has_id = true;
        match op {
            0 => f.id_lo = f.id_lo.max(clamp_i64(x.floor()).saturating_add(1)),
            1 => f.id_lo = f.id_lo.max(clamp_i64(x.ceil())),
            2 => f.id_hi = f.id_hi.min(clamp_i64(x.ceil()).saturating_sub(1)),
            _ => f.id_hi = f.id_hi.min(clamp_i64(x.floor())),
        }
    }
    let mut int_bad = false;
    for (at, param) in resource.exact_filters() {
        let Some(v) = non_empty(param) else { continue };
        let want = match resource.fields[at].kind {
            Kind::Text => Exact::Text(v.trim().to_owned()),
            Kind::Integer => match py_int(v) {
                Some(n) => Exact::Integer(i64::try_from(n).unwrap_or(i64::MAX)),
                None => {
                    int_bad = true;
                    continue;
                }
            },
            Kind::Boolean => match py_bool(v) {
                Some(b) => Exact::Boolean(b),
                None => continue,
            },
            // `Field::exact_filter` refuses timestamps.
            Kind::Timestamp => continue,
        };
        f.eq.push((at, want));
    }
    for (name, op) in [
        ("modified_date", 0),
        ("modified_date__gt", 1),
        ("modified_date__gte", 2),
        ("modified_date__lt", 3),
        ("modified_date__lte", 4),
    ] {
        let Some(v) = non_empty(name) else { continue };
        let Some(t) = parse_django_datetime(v, knobs.naive_offset) else {
            errors.push((name, "Enter a valid date/time.".to_owned()));
            continue;
        };
        let m = t.timestamp_micros();
        f.has_md = true;
        match op {
            0 => {
                f.md_lo = f.md_lo.max(m);
                f.md_hi = f.md_hi.min(m);
            }
            1 => f.md_lo = f.md_lo.max(m.saturating_add(1)),
            2 => f.md_lo = f.md_lo.max(m),
            3 => f.md_hi = f.md_hi.min(m.saturating_sub(1)),
            _ => f.md_hi = f.md_hi.min(m),
        }
    }
    if !errors.is_empty() {
        return Err(QueryError::Invalid(errors));
    }
    if int_bad {
        return Err(QueryError::ServerError);
    }
    Ok(Query {
        limit,
        page,
        sort,
        filters: f,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_int() {
        assert_eq!(py_int(" 12 "), Some(12));
        assert_eq!(py_int("+1_000"), Some(1000));
        assert_eq!(py_int("-3"), Some(-3));
        for bad in ["", "1.0", "abc", "1__0", "_1", "1_", "--1", "0x10"] {
            assert_eq!(py_int(bad), None, "{bad}");
        }
        assert_eq!(parse_number("10.5"), Some(10.5));
        assert_eq!(parse_number("1e3"), Some(1000.0));
        assert_eq!(parse_number("nan"), None);
        assert_eq!(parse_number("inf"), None);
        assert_eq!(parse_number("abc"), None);
    }
}
