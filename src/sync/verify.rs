//! Verifying an endpoint before trusting it: django-filter ignores a parameter an endpoint
//! does not declare, silently, so what a stream relies on is read from the server's `OPTIONS`
//! and probed, on the stream's first pass, when a backfill starts, and by `check`:
//! - `modified_date__gt` far in the future must give `count` 0;
//! - `id__gt` past any possible id must give `count` 0;
//! - `sort=-id` must come by falling id, `sort=id` by rising id, and `sort=modified_date` with
//!   dates that never go back (checked on a page of each).
//!
//! A probe that cannot tell (an empty endpoint, a page of one row) leaves the `OPTIONS`
//! `filters` list to decide, where the server gives one. The finding names the mode the
//! endpoint allows ([`Mode`]); `oms-sync check` reports it for every stream.

use serde::{Deserialize, Serialize};

use crate::api::{ApiClient, ApiError, ListQuery, OptionsAnswer};
use crate::resource::{Keyed, Resource, Spec};

/// A date no row can have been modified after.
const FAR_FUTURE: &str = "2999-01-01T00:00:00.000000+00:00";
/// An id past any the OMS can have (2^53 - 1: also safe for JSON readers that use doubles).
const PAST_ANY_ID: &str = "9007199254740991";
/// Requests one verification makes (`OPTIONS`, two counts, three pages).
pub const REQUESTS: u64 = 6;
/// Rows read to see the order of each `sort`.
const ORDER_PAGE: u32 = 50;

/// How a stream can be read, from what its endpoint honours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The `(modified_date, id)` keyset walk: every change is read.
    Keyset,
    /// New rows by `id__gt` with `sort=id`; changes to existing rows come with the scheduled
    /// reconciliation (a backfill), since the endpoint cannot be asked for them.
    ById,
    /// Neither walk can be trusted.
    Refused,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Keyset => "keyset",
            Mode::ById => "by_id",
            Mode::Refused => "refused",
        }
    }
}

/// What a probe (or, failing that, the `OPTIONS` list) showed of one capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Seen {
    Honoured,
    Ignored,
    /// Nothing could tell (e.g. an endpoint with no rows); trusted until shown otherwise, and
    /// every page is checked against its request anyway.
    Untested,
}

/// What verifying a stream's endpoint found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub mode: Mode,
    pub modified_date_filter: Seen,
    pub id_filter: Seen,
    pub sort_modified_date: Seen,
    pub sort_id: Seen,
    /// Why `OPTIONS` gave no DRF metadata (None: it did).
    pub options_error: Option<String>,
    /// The filter parameters `OPTIONS` listed, when it listed any.
    pub listed_filters: Option<Vec<String>>,
    /// Fields `OPTIONS` lists that the stream does not declare (kept in `extra`).
    pub undeclared_fields: Vec<String>,
    /// Declared fields `OPTIONS` no longer lists.
    pub missing_fields: Vec<String>,
    /// What this means, in words (what `check` prints).
    pub note: String,
}

/// Reads the endpoint's `OPTIONS` and probes its filters and sort; at most 6 requests.
pub async fn verify<R: Resource>(client: &ApiClient) -> Result<Finding, ApiError> {
    let spec = R::SPEC;
    let options = client.options(R::PATH).await?;
    let (options, listed_filters, fields) = match options {
        OptionsAnswer::Metadata(v) => (None, listed_filters(&v), listed_fields(&v)),
        OptionsAnswer::None(why) => (Some(why), None, None),
    };
    let count = async |q: ListQuery| -> Result<u64, ApiError> {
        Ok(client.list::<R>(&q.with("limit", "1")).await?.count)
    };
    let page = |sort: &'static str| {
        let q = ListQuery::new()
            .with("sort", sort)
            .with("limit", ORDER_PAGE.to_string());
        async move { client.list::<R>(&q).await }
    };
    let by_id_desc = page("-id").await?;
    let total = by_id_desc.count;
    let md_probe = count(ListQuery::new().with("modified_date__gt", FAR_FUTURE)).await?;
    let id_probe = count(ListQuery::new().with("id__gt", PAST_ANY_ID)).await?;
    let by_id = page("id").await?;
    let by_md = page("modified_date").await?;

    let listed = |name: &str| listed_filters.as_ref().map(|l| l.iter().any(|f| f == name));
    let probe = |count: u64, declared: bool, names: &[&str]| {
        if !declared {
            return Seen::Ignored;
        }
        match (total, count) {
            (_, c) if c > 0 => Seen::Ignored,
            (t, 0) if t > 0 => Seen::Honoured,
            // No rows: the count says nothing; the OPTIONS list may.
            _ => match names
                .iter()
                .map(|n| listed(n))
                .collect::<Option<Vec<bool>>>()
            {
                Some(v) if v.iter().all(|&b| b) => Seen::Honoured,
                Some(_) => Seen::Ignored,
                None => Seen::Untested,
            },
        }
    };
    let modified_date_filter = probe(
        md_probe,
        spec.filters.modified_date,
        &["modified_date__gt", "modified_date__gte", "modified_date"],
    );
    let id_filter = probe(id_probe, spec.filters.id_gt, &["id__gt"]);
    let ids = |p: &crate::api::Page<R::Record>| p.records.iter().map(Keyed::id).collect::<Vec<_>>();
    let (desc, asc) = (ids(&by_id_desc), ids(&by_id));
    let sort_listed = listed("sort");
    let ordered = |ok: bool, rows: usize| match (rows >= 2, ok) {
        (true, true) => Seen::Honoured,
        (true, false) => Seen::Ignored,
        (false, _) => match sort_listed {
            Some(true) => Seen::Honoured,
            Some(false) => Seen::Ignored,
            None => Seen::Untested,
        },
    };
    let desc_seen = ordered(desc.windows(2).all(|w| w[0] > w[1]), desc.len());
    let sort_id = if spec.filters.sort {
        ordered(asc.windows(2).all(|w| w[0] < w[1]), asc.len())
    } else {
        Seen::Ignored
    };
    let md_ordered = by_md
        .records
        .windows(2)
        .all(|w| w[0].modified_date() <= w[1].modified_date());
    // An endpoint that answers `sort=-id` by rising ids ignores `sort`: its order by date is
    // then a coincidence of the data, not something to walk on.
    let sort_modified_date = match (spec.filters.sort, desc_seen) {
        (false, _) | (_, Seen::Ignored) => Seen::Ignored,
        _ => ordered(md_ordered, by_md.records.len()),
    };
    let mode = if modified_date_filter != Seen::Ignored && sort_modified_date != Seen::Ignored {
        Mode::Keyset
    } else if id_filter != Seen::Ignored && sort_id != Seen::Ignored {
        Mode::ById
    } else {
        Mode::Refused
    };
    let (undeclared_fields, missing_fields) = match fields {
        Some(f) => compare_fields(spec, &f),
        None => (Vec::new(), Vec::new()),
    };
    let mut finding = Finding {
        mode,
        modified_date_filter,
        id_filter,
        sort_modified_date,
        sort_id,
        options_error: options,
        listed_filters,
        undeclared_fields,
        missing_fields,
        note: String::new(),
    };
    finding.note = note(&finding);
    Ok(finding)
}

fn note(f: &Finding) -> String {
    let ignored = |s: Seen| s == Seen::Ignored;
    let mut missing = Vec::new();
    if ignored(f.modified_date_filter) {
        missing.push("modified_date__gt");
    }
    if ignored(f.id_filter) {
        missing.push("id__gt");
    }
    if ignored(f.sort_modified_date) || ignored(f.sort_id) {
        missing.push("sort");
    }
    let fix = "fix: ask the OMS vendor to enable those filters on the endpoint, or remove the stream from sync.streams";
    match f.mode {
        Mode::Keyset if missing.is_empty() => "the endpoint honours modified_date__gt, id__gt and sort: the (modified_date, id) keyset walk and the backfill by id can be trusted".to_owned(),
        Mode::Keyset => format!(
            "the endpoint ignores {}: incremental passes can be trusted, but a backfill (and the daemon's reconciliation) walks by id and fails at its second page, and a tie group larger than a page cannot be drained; {fix}",
            missing.join(", ")
        ),
        Mode::ById => format!(
            "the endpoint ignores {}: only a walk by id__gt with sort=id can be trusted, so incremental passes fail at the first page outside what they asked (nothing of it is stored); {fix}",
            missing.join(", ")
        ),
        Mode::Refused => format!(
            "the endpoint ignores {}: neither modified_date__gt with sort=modified_date nor id__gt with sort=id can be trusted; {fix}",
            missing.join(", ")
        ),
    }
}

/// The query parameters the `filters` list names (`field` for `exact`, else
/// `field__lookup`; `sort` by its name).
fn listed_filters(v: &serde_json::Value) -> Option<Vec<String>> {
    let list = v.get("filters")?.as_array()?;
    let mut names = Vec::new();
    for f in list {
        let Some(field) = f.get("field_name").and_then(|x| x.as_str()) else {
            continue;
        };
        let lookups = f.get("lookup_expr").and_then(|x| x.as_array());
        for l in lookups.into_iter().flatten().filter_map(|l| l.as_str()) {
            names.push(if l == "exact" {
                field.to_owned()
            } else {
                format!("{field}__{l}")
            });
        }
    }
    Some(names)
}

/// The fields `actions.GET` lists.
fn listed_fields(v: &serde_json::Value) -> Option<Vec<String>> {
    let get = v.get("actions")?.get("GET")?.as_object()?;
    Some(get.keys().cloned().collect())
}

/// (listed but not declared, declared but not listed), each in a stable order.
fn compare_fields(spec: &Spec, listed: &[String]) -> (Vec<String>, Vec<String>) {
    let declared: Vec<&str> = spec
        .columns
        .iter()
        .map(|c| c.name)
        .filter(|n| *n != "extra")
        .collect();
    let mut undeclared: Vec<String> = listed
        .iter()
        .filter(|f| !declared.contains(&f.as_str()))
        .cloned()
        .collect();
    undeclared.sort();
    let missing = declared
        .iter()
        .filter(|d| !listed.iter().any(|f| f == *d))
        .map(|d| (*d).to_owned())
        .collect();
    (undeclared, missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_named_as_query_parameters() {
        let v = serde_json::json!({"filters": [
            {"field_name": "sort", "lookup_expr": ["exact"]},
            {"field_name": "id", "lookup_expr": ["gt"]},
            {"field_name": "modified_date", "lookup_expr": ["exact", "gt", "gte"]},
            {"label": "no field name"}
        ]});
        assert_eq!(
            listed_filters(&v).expect("a list"),
            [
                "sort",
                "id__gt",
                "modified_date",
                "modified_date__gt",
                "modified_date__gte"
            ]
        );
        assert_eq!(listed_filters(&serde_json::json!({"name": "x"})), None);
    }

    #[test]
    fn fields_are_compared_with_the_declaration() {
        let spec = crate::resource::Customers::SPEC;
        let mut listed: Vec<String> = spec
            .columns
            .iter()
            .map(|c| c.name.to_owned())
            .filter(|n| n != "extra" && n != "erp_code")
            .collect();
        listed.push("loyalty_tier".into());
        assert_eq!(
            compare_fields(spec, &listed),
            (vec!["loyalty_tier".to_owned()], vec!["erp_code".to_owned()])
        );
    }
}
