//! The fake's descriptions of what it serves, against the vendor's documentation, and over HTTP.

use chrono::DateTime;
use fake_oms::{CUSTOMERS, FakeCustomer, FakeOms, FakeOmsConfig, Kind};
use serde_json::Value;

/// The first record of the example response of "List Customers - Simple" (`GET
/// /api/v1/oms/customers/list-simple/`) in the vendor's API documentation, as printed there.
const VENDOR_EXAMPLE_RECORD: &str = r#"{
"id": 1,
"created_date": "2023-10-06T08:42:53.427023Z",
"modified_date": "2023-10-06T08:42:53.427050Z",
"omnitron_id": 55,
"email": "ali.test@akinon.com",
"first_name": "Ali",
"last_name": "Test",
"phone_number": "05555554433",
"erp_code": null,
"channel": 1
}"#;

/// Keys in the order they appear in a JSON object's text (serde_json's map sorts them).
fn keys_in_order(text: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut de = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    let Some(Ok(Value::Object(map))) = de.next() else {
        panic!("not an object: {text}")
    };
    let mut at: Vec<(usize, String)> = map
        .keys()
        .map(|k| {
            let pos = text
                .find(&format!("\"{k}\":"))
                .unwrap_or_else(|| panic!("{k} not in {text}"));
            (pos, k.clone())
        })
        .collect();
    at.sort();
    keys.extend(at.into_iter().map(|(_, k)| k));
    keys
}

fn kind_of(v: &Value) -> Option<Kind> {
    match v {
        Value::Number(n) if n.is_i64() => Some(Kind::Integer),
        Value::Bool(_) => Some(Kind::Boolean),
        Value::String(s) if DateTime::parse_from_rfc3339(s).is_ok() => Some(Kind::Timestamp),
        Value::String(_) => Some(Kind::Text),
        _ => None,
    }
}

#[test]
fn customers_fields_are_the_vendor_example_records_keys_in_order() {
    let names: Vec<&str> = CUSTOMERS.names().collect();
    assert_eq!(keys_in_order(VENDOR_EXAMPLE_RECORD), names);
    let example: Value = serde_json::from_str(VENDOR_EXAMPLE_RECORD).unwrap();
    for f in CUSTOMERS.fields {
        let v = &example[f.name];
        match kind_of(v) {
            Some(kind) => assert_eq!(kind, f.kind, "{}: {v}", f.name),
            None => assert!(
                v.is_null() && f.nullable,
                "{} is null in the example",
                f.name
            ),
        }
    }
    assert_eq!(CUSTOMERS.path, "/api/v1/oms/customers/list-simple/");
}

/// What the server writes for a customer has the described fields in the described order, each
/// of its kind, `null` only where the description allows it.
#[tokio::test]
async fn served_customers_follow_the_description() {
    let t = DateTime::from_timestamp(1_700_000_000, 123_000).unwrap();
    let mut sparse = FakeCustomer::new(2, t);
    sparse.omnitron_id = None;
    sparse.email = None;
    sparse.first_name = None;
    sparse.last_name = None;
    sparse.phone_number = None;
    sparse.erp_code = None;
    sparse.channel = None;
    let mut full = FakeCustomer::new(1, t);
    full.erp_code = Some("ERP-1".into());
    let oms = FakeOms::start(FakeOmsConfig::default(), vec![full, sparse])
        .await
        .unwrap();
    let body = reqwest::Client::new()
        .get(oms.customers_url())
        .header("Authorization", "Token test-token")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let page: Value = serde_json::from_str(&body).unwrap();
    let results = page["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    let names: Vec<&str> = CUSTOMERS.names().collect();
    let first = body.find("\"results\":[").unwrap() + "\"results\":[".len();
    assert_eq!(keys_in_order(&body[first..]), names, "{body}");
    for r in results {
        for f in CUSTOMERS.fields {
            match kind_of(&r[f.name]) {
                Some(kind) => assert_eq!(kind, f.kind, "{}: {r}", f.name),
                None => assert!(r[f.name].is_null() && f.nullable, "{}: {r}", f.name),
            }
        }
    }
    oms.shutdown().await;
}
