//! Every page is checked against what was asked before anything of it is stored: django-filter
//! ignores a parameter an endpoint does not declare, silently, so an endpoint without
//! `modified_date__gte` answers with everything and one without `sort` in its default order.
//! A keyset walk that trusted such a page would skip rows or loop; instead the pass fails
//! naming the request and the rows, and the checkpoint stays where it was.
//!
//! What is checked follows from the query alone, so one check serves every path (forward
//! walk, tie drains, backfill ranges, the backfill's planning requests):
//! - `modified_date` (exact), `__gt`, `__gte`, `__lt`, `__lte`; `id__gt`, `__gte`, `__lt`,
//!   `__lte`: every row whose key could be read is inside;
//! - `sort=modified_date` / `-modified_date`: dates never go back (ties in any order: the
//!   server's order among equal dates is arbitrary); `sort=id` / `-id`: ids strictly move.

use std::cmp::Ordering;

use crate::api::{ListQuery, Page};
use crate::resource::Keyed;
use crate::timefmt;

/// The most offending ids a message names (the count says how many more).
const SHOWN_IDS: usize = 5;

/// What a query asked of its rows.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Asked {
    /// Bounds on `modified_date` (canonical text, which orders as time), each with whether
    /// it is inclusive.
    md_lo: Option<(String, bool)>,
    md_hi: Option<(String, bool)>,
    id_lo: Option<i64>,
    id_hi: Option<i64>,
    sort: Option<Sort>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sort {
    Id { desc: bool },
    Md { desc: bool },
}

impl Asked {
    /// Reads the parameters this crate sends; any other parameter asks nothing checkable.
    pub(crate) fn of(query: &ListQuery) -> Asked {
        let mut a = Asked::default();
        for (key, value) in &query.0 {
            let md = || timefmt::parse_api(value).map(|t| timefmt::canonical(&t));
            let id = || value.parse::<i64>().ok();
            match *key {
                "modified_date" => {
                    a.md_lo = md().map(|m| (m, true));
                    a.md_hi = md().map(|m| (m, true));
                }
                "modified_date__gt" => a.md_lo = md().map(|m| (m, false)),
                "modified_date__gte" => a.md_lo = md().map(|m| (m, true)),
                "modified_date__lt" => a.md_hi = md().map(|m| (m, false)),
                "modified_date__lte" => a.md_hi = md().map(|m| (m, true)),
                // Integer bounds, all made inclusive.
                "id__gt" => a.id_lo = id().and_then(|i| i.checked_add(1)),
                "id__gte" => a.id_lo = id(),
                "id__lt" => a.id_hi = id().and_then(|i| i.checked_sub(1)),
                "id__lte" => a.id_hi = id(),
                "sort" => {
                    a.sort = match value.as_str() {
                        "id" => Some(Sort::Id { desc: false }),
                        "-id" => Some(Sort::Id { desc: true }),
                        "modified_date" => Some(Sort::Md { desc: false }),
                        "-modified_date" => Some(Sort::Md { desc: true }),
                        _ => None,
                    }
                }
                _ => {}
            }
        }
        a
    }

    fn md_ok(&self, md: &str) -> bool {
        let lo = self.md_lo.as_ref().is_none_or(|(b, incl)| match md.cmp(b) {
            Ordering::Greater => true,
            Ordering::Equal => *incl,
            Ordering::Less => false,
        });
        let hi = self.md_hi.as_ref().is_none_or(|(b, incl)| match md.cmp(b) {
            Ordering::Less => true,
            Ordering::Equal => *incl,
            Ordering::Greater => false,
        });
        lo && hi
    }

    fn id_ok(&self, id: i64) -> bool {
        self.id_lo.is_none_or(|lo| id >= lo) && self.id_hi.is_none_or(|hi| id <= hi)
    }

    /// What is wrong with `page` for this query (None: nothing). Rows outside the filter are
    /// named first; the order is checked on the stored records, in the server's order.
    pub(crate) fn violation<T: Keyed>(&self, page: &Page<T>) -> Option<String> {
        let keys = page
            .records
            .iter()
            .map(|r| (Some(r.id()), Some(r.modified_date())))
            .chain(page.bad.iter().map(|b| (b.id, b.modified_date.as_deref())));
        let mut outside: Vec<String> = Vec::new();
        for (id, md) in keys {
            let bad_md = md.is_some_and(|m| !self.md_ok(m));
            let bad_id = id.is_some_and(|i| !self.id_ok(i));
            if bad_md || bad_id {
                let id = id.map_or_else(|| "?".to_owned(), |i| i.to_string());
                outside.push(match md {
                    Some(m) if bad_md => format!("{id} (modified_date {m})"),
                    _ => id,
                });
            }
        }
        if !outside.is_empty() {
            return Some(format!(
                "{} row(s) outside the filter ({}): id {}",
                outside.len(),
                self.describe_filter(),
                shown(&outside)
            ));
        }
        let sort = self.sort?;
        let broken = page.records.windows(2).find(|w| {
            let (a, b) = (&w[0], &w[1]);
            match sort {
                Sort::Id { desc: false } => b.id() <= a.id(),
                Sort::Id { desc: true } => b.id() >= a.id(),
                Sort::Md { desc: false } => b.modified_date() < a.modified_date(),
                Sort::Md { desc: true } => b.modified_date() > a.modified_date(),
            }
        })?;
        let (a, b) = (&broken[0], &broken[1]);
        Some(match sort {
            Sort::Id { desc } => format!(
                "rows out of the order asked (sort={}id): id {} came after id {}",
                if desc { "-" } else { "" },
                b.id(),
                a.id()
            ),
            Sort::Md { desc } => format!(
                "rows out of the order asked (sort={}modified_date): id {} ({}) came after id {} ({})",
                if desc { "-" } else { "" },
                b.id(),
                b.modified_date(),
                a.id(),
                a.modified_date()
            ),
        })
    }

    fn describe_filter(&self) -> String {
        let mut parts = Vec::new();
        if let Some((m, incl)) = &self.md_lo {
            parts.push(format!(
                "modified_date {} {m}",
                if *incl { ">=" } else { ">" }
            ));
        }
        if let Some((m, incl)) = &self.md_hi {
            parts.push(format!(
                "modified_date {} {m}",
                if *incl { "<=" } else { "<" }
            ));
        }
        if let Some(i) = self.id_lo {
            parts.push(format!("id >= {i}"));
        }
        if let Some(i) = self.id_hi {
            parts.push(format!("id <= {i}"));
        }
        parts.join(", ")
    }
}

fn shown(ids: &[String]) -> String {
    let mut s = ids
        .iter()
        .take(SHOWN_IDS)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > SHOWN_IDS {
        s.push_str(&format!(" and {} more", ids.len() - SHOWN_IDS));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::parse_page;
    use crate::resource::Customers;

    fn page(rows: &[(i64, &str)]) -> Page<<Customers as crate::resource::Resource>::Record> {
        let results: Vec<String> = rows
            .iter()
            .map(|(id, md)| format!(r#"{{"id": {id}, "modified_date": "{md}"}}"#))
            .collect();
        let body = format!(
            r#"{{"count": {}, "results": [{}]}}"#,
            rows.len(),
            results.join(",")
        );
        parse_page::<Customers>(body.as_bytes()).expect("page parses")
    }

    fn asked(params: &[(&'static str, &str)]) -> Asked {
        Asked::of(&ListQuery(
            params.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        ))
    }

    const T1: &str = "2024-01-01T00:00:01.000000Z";
    const T2: &str = "2024-01-01T00:00:02.000000Z";
    const T3: &str = "2024-01-01T00:00:03.000000Z";

    #[test]
    fn gte_keeps_the_instant_and_gt_does_not() {
        let q = ListQuery::new()
            .with("sort", "modified_date")
            .with("modified_date__gte", "2024-01-01T00:00:02.000000+00:00");
        let a = Asked::of(&q);
        // Ties at the re-read instant, in any order among themselves, are what was asked.
        assert_eq!(a.violation(&page(&[(9, T2), (3, T2), (4, T3)])), None);
        let v = a
            .violation(&page(&[(7, T1), (3, T2)]))
            .expect("row before the filter");
        assert!(
            v.contains("id 7 (modified_date 2024-01-01T00:00:01.000000Z)"),
            "{v}"
        );

        let q = ListQuery::new().with("modified_date__gt", "2024-01-01T03:00:02+03:00");
        let v = Asked::of(&q)
            .violation(&page(&[(3, T2), (4, T3)]))
            .expect("tie at gt");
        assert!(v.contains("1 row(s)") && v.contains("id 3 ("), "{v}");
    }

    #[test]
    fn tie_drain_and_backfill_bounds() {
        let a = asked(&[
            ("modified_date", "2024-01-01T00:00:02.000000+00:00"),
            ("sort", "id"),
            ("id__gt", "5"),
        ]);
        assert_eq!(a.violation(&page(&[(6, T2), (8, T2)])), None);
        let v = a.violation(&page(&[(5, T2), (8, T3)])).expect("outside");
        assert!(v.contains("2 row(s)") && v.contains("id 5, 8 ("), "{v}");

        let a = asked(&[("sort", "id"), ("id__gt", "10"), ("id__lte", "20")]);
        assert_eq!(a.violation(&page(&[(11, T3), (20, T1)])), None);
        let v = a
            .violation(&page(&[(11, T1), (21, T1)]))
            .expect("past the range");
        assert!(v.contains("id 21") && v.contains("id <= 20"), "{v}");
    }

    #[test]
    fn order_is_checked_as_asked() {
        let by_id = Asked::of(&ListQuery::new().with("sort", "id"));
        assert_eq!(by_id.violation(&page(&[(1, T3), (2, T1)])), None);
        let v = by_id.violation(&page(&[(2, T1), (1, T1)])).expect("by id");
        assert!(v.contains("id 1 came after id 2"), "{v}");
        // A repeated id is out of order too: the walk would stop on it.
        assert!(by_id.violation(&page(&[(2, T1), (2, T1)])).is_some());

        let by_md = Asked::of(&ListQuery::new().with("sort", "modified_date"));
        assert_eq!(by_md.violation(&page(&[(5, T1), (2, T1), (1, T2)])), None);
        let v = by_md
            .violation(&page(&[(5, T2), (6, T1)]))
            .expect("by date");
        assert!(
            v.contains("sort=modified_date") && v.contains("id 6"),
            "{v}"
        );

        let desc = Asked::of(&ListQuery::new().with("sort", "-id"));
        assert_eq!(desc.violation(&page(&[(3, T1), (2, T1)])), None);
        assert!(desc.violation(&page(&[(2, T1), (3, T1)])).is_some());
        // No sort asked: no order to check.
        assert_eq!(
            Asked::of(&ListQuery::new()).violation(&page(&[(3, T2), (1, T1)])),
            None
        );
    }

    #[test]
    fn many_offenders_are_counted_not_listed() {
        let q = ListQuery::new().with("id__gt", "100");
        let rows: Vec<(i64, &str)> = (1..=8).map(|i| (i, T1)).collect();
        let v = Asked::of(&q).violation(&page(&rows)).expect("outside");
        assert!(
            v.contains("8 row(s)") && v.ends_with("id 1, 2, 3, 4, 5 and 3 more"),
            "{v}"
        );
    }
}
