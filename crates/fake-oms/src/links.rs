//! DRF's `next`/`previous` links: `replace_query_param` / `remove_query_param` on the absolute
//! URI of the request, with the query re-encoded as Python's `urlencode` does.

use std::borrow::Cow;

/// DRF's `replace_query_param` / `remove_query_param` on the absolute URI of the request
/// (`base` and the route's `path`).
pub(super) fn page_link(
    base: &str,
    path: &str,
    query: &[(String, String)],
    page: Option<u64>,
) -> String {
    let mut groups: Vec<(&str, Vec<Cow<'_, str>>)> = Vec::new();
    for (k, v) in query {
        match groups.iter_mut().find(|(gk, _)| gk == k) {
            Some((_, vs)) => vs.push(Cow::Borrowed(v)),
            None => groups.push((k, vec![Cow::Borrowed(v)])),
        }
    }
    match (groups.iter_mut().find(|(k, _)| *k == "page"), page) {
        (Some(g), Some(p)) => g.1 = vec![Cow::Owned(p.to_string())],
        (None, Some(p)) => groups.push(("page", vec![Cow::Owned(p.to_string())])),
        (_, None) => groups.retain(|(k, _)| *k != "page"),
    }
    groups.sort_by(|x, y| x.0.cmp(y.0));
    let mut url = String::with_capacity(base.len() + path.len() + 64);
    url.push_str(base);
    url.push_str(path);
    let mut first = true;
    for (k, vs) in &groups {
        for v in vs {
            url.push(if first { '?' } else { '&' });
            first = false;
            quote_plus(&mut url, k);
            url.push('=');
            quote_plus(&mut url, v);
        }
    }
    url
}

/// Python's `urllib.parse.quote_plus`.
pub(super) fn quote_plus(out: &mut String, s: &str) {
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 15) as usize] as char);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CUSTOMERS_PATH;

    #[test]
    fn links_like_drf() {
        let q = vec![
            ("sort".to_owned(), "modified_date".to_owned()),
            (
                "modified_date__gt".to_owned(),
                "2023-10-06T08:42:53+03:00".to_owned(),
            ),
            ("limit".to_owned(), "2".to_owned()),
            ("page".to_owned(), "2".to_owned()),
            ("x".to_owned(), "a b".to_owned()),
        ];
        assert_eq!(
            page_link("http://h:1", CUSTOMERS_PATH, &q, Some(3)),
            "http://h:1/api/v1/oms/customers/list-simple/?limit=2&\
             modified_date__gt=2023-10-06T08%3A42%3A53%2B03%3A00&page=3&sort=modified_date&x=a+b"
        );
        assert_eq!(
            page_link("http://h:1", CUSTOMERS_PATH, &q[2..4], None),
            "http://h:1/api/v1/oms/customers/list-simple/?limit=2"
        );
        assert_eq!(
            page_link("http://h:1", CUSTOMERS_PATH, &[], None),
            "http://h:1/api/v1/oms/customers/list-simple/"
        );
    }
}
