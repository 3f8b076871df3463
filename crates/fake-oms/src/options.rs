//! `OPTIONS` on a route: DRF's metadata answer (`SimpleMetadata`) as the OMS gives it, after
//! the vendor's documented example for customers — `name`, `renders`, `parses`,
//! `actions.GET` with one entry per wire field, and the `filters` list the OMS adds (the
//! `sort` dropdown with its choices, the id lookups, the exact filters, `modified_date` with
//! its lookups). A parameter the route ignores (`Knobs::ignored_params`) is not listed, as
//! it would not be by an endpoint that does not declare it.

use serde_json::{Value, json};

use super::Knobs;
use super::reply::Reply;
use super::resource::{Kind, Resource};

/// The route's `OPTIONS` answer (200).
pub(crate) fn options_reply(resource: &Resource, knobs: &Knobs) -> Reply {
    let body = describe(resource, |p| knobs.ignores(resource.path, p));
    Reply::drf(200, body.to_string().into_bytes())
}

fn describe(resource: &Resource, ignored: impl Fn(&str) -> bool) -> Value {
    let mut get = serde_json::Map::new();
    for f in resource.fields {
        let ty = match f.kind {
            Kind::Integer => "integer",
            Kind::Text => "string",
            Kind::Boolean => "boolean",
            Kind::Timestamp => "datetime",
        };
        let server_side = matches!(f.name, "id" | "created_date" | "modified_date");
        get.insert(
            f.name.to_owned(),
            json!({
                "type": ty,
                "required": !f.nullable && !server_side,
                "read_only": server_side,
                "label": label(f.name),
            }),
        );
    }
    let mut filters = Vec::new();
    if !ignored("sort") {
        filters.push(json!({
            "label": "Sort", "field_name": "sort", "type": "dropdown", "lookup_expr": ["exact"],
            "extra": {
                "choices": [["id", "ID"], ["-id", "ID (descending)"],
                            ["modified_date", "Modified Date"],
                            ["-modified_date", "Modified Date (descending)"]],
                "help_text": "", "null_label": null, "required": false
            }
        }));
    }
    for lookup in ["gt", "gte", "lt", "lte"] {
        if !ignored(&format!("id__{lookup}")) {
            filters.push(filter(
                &format!("Id {}", label(lookup)),
                "id",
                "integer",
                &[lookup],
            ));
        }
    }
    for (at, param) in resource.exact_filters() {
        let ty = match resource.fields[at].kind {
            Kind::Integer => "integer",
            _ => "string",
        };
        if !ignored(param) {
            filters.push(filter(&label(param), param, ty, &["exact"]));
        }
    }
    let lookups: Vec<&str> = [
        ("exact", "modified_date"),
        ("gt", "modified_date__gt"),
        ("gte", "modified_date__gte"),
        ("lt", "modified_date__lt"),
        ("lte", "modified_date__lte"),
    ]
    .into_iter()
    .filter(|(_, p)| !ignored(p))
    .map(|(l, _)| l)
    .collect();
    if !lookups.is_empty() {
        filters.push(filter(
            "Modified date",
            "modified_date",
            "datetime",
            &lookups,
        ));
    }
    json!({
        "name": "list-simple",
        "renders": ["application/json", "text/csv", "application/xls"],
        "parses": ["application/json", "application/x-www-form-urlencoded", "multipart/form-data"],
        "actions": {"GET": get},
        "filters": filters,
    })
}

fn filter(label: &str, field: &str, ty: &str, lookups: &[&str]) -> Value {
    json!({
        "label": label, "field_name": field, "type": ty, "lookup_expr": lookups,
        "extra": {"required": false}
    })
}

/// `first_name` → `First name`, as Django's verbose names read.
fn label(name: &str) -> String {
    let words = name.replace('_', " ");
    let mut c = words.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CUSTOMERS;

    /// The vendor's example: the wire fields in `actions.GET`, and the filter names.
    #[test]
    fn customers_are_described_as_the_vendor_documents() {
        let d = describe(&CUSTOMERS, |_| false);
        let get = d["actions"]["GET"].as_object().expect("actions.GET");
        let names: Vec<&str> = get.keys().map(String::as_str).collect();
        let expected: Vec<&str> = CUSTOMERS.names().collect();
        let (mut a, mut b) = (names.clone(), expected.clone());
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b);
        assert_eq!(get["modified_date"]["type"], "datetime");
        let filters = d["filters"].as_array().expect("filters");
        assert_eq!(filters[0]["field_name"], "sort");
        let md = filters.last().expect("modified_date last");
        assert_eq!(
            md["lookup_expr"],
            json!(["exact", "gt", "gte", "lt", "lte"])
        );
        assert!(filters.iter().any(|f| f["field_name"] == "channel_id"));

        let d = describe(&CUSTOMERS, |p| {
            p == "sort" || p.starts_with("modified_date")
        });
        let names: Vec<&Value> = d["filters"]
            .as_array()
            .expect("filters")
            .iter()
            .map(|f| &f["field_name"])
            .collect();
        assert!(!names.contains(&&json!("sort")) && !names.contains(&&json!("modified_date")));
        assert!(names.contains(&&json!("id")));
    }
}
