//! The fake's descriptions of what it serves, against the vendor's documentation, and over HTTP.

use chrono::{DateTime, TimeDelta, Utc};
use fake_oms::{
    CUSTOMERS, FakeCustomer, FakeOms, FakeOmsConfig, Fault, Field, FieldValue, Kind, Record,
    Resource, Store, Stores, bulk_update, insert_new, synthetic_records, touch_random,
};
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

/// A resource that exists only in this test: an integer, a text, a nullable timestamp and a
/// boolean besides the keys.
static WIDGETS: Resource = Resource::new(
    "/api/v1/oms/widgets/",
    &[
        Field::integer("id"),
        Field::text("name").exact_filter("name"),
        Field::timestamp("checked_at").nullable(),
        Field::boolean("active").exact_filter("active"),
        Field::integer("size").nullable().exact_filter("size"),
        Field::timestamp("modified_date"),
    ],
);

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 250_000).unwrap()
}

/// Widgets 1..=30: 1..=20 tie at t0 + 100 s, the others one second apart before it; odd ids
/// active, every third unchecked, names `w<id % 5>`.
fn widgets() -> Vec<Record> {
    (1..=30)
        .map(|id| {
            let md = if id <= 20 {
                t0() + TimeDelta::seconds(100)
            } else {
                t0() + TimeDelta::seconds(id)
            };
            Record::new(&WIDGETS, id, md)
                .with("name", format!("w{}", id % 5))
                .with("active", id % 2 == 1)
                .with(
                    "checked_at",
                    (id % 3 != 0).then(|| t0() - TimeDelta::microseconds(id)),
                )
                .with("size", (id % 4 != 0).then_some(id * 10))
        })
        .collect()
}

struct Resp {
    status: u16,
    text: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
    fn ids(&self) -> Vec<i64> {
        self.json()["results"]
            .as_array()
            .unwrap_or_else(|| panic!("no results: {}", self.text))
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect()
    }
}

async fn get_url(url: &str, token: Option<&str>) -> Resp {
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = token {
        req = req.header("Authorization", format!("Token {t}"));
    }
    let r = req.send().await.unwrap();
    Resp {
        status: r.status().as_u16(),
        text: r.text().await.unwrap(),
    }
}

async fn get(oms: &FakeOms, resource: &Resource, query: &str) -> Resp {
    let url = format!("{}?{query}", oms.resource_url(resource));
    get_url(&url, Some(&oms.token())).await
}

/// Every page of `query` (limit 7) in order, following `next`.
async fn walk(oms: &FakeOms, resource: &Resource, query: &str) -> Vec<i64> {
    let mut url = format!("{}?limit=7&{query}", oms.resource_url(resource));
    let mut ids = Vec::new();
    loop {
        let r = get_url(&url, Some(&oms.token())).await;
        assert_eq!(r.status, 200, "{}", r.text);
        ids.extend(r.ids());
        match r.json()["next"].as_str() {
            Some(next) => url = next.to_owned(),
            None => return ids,
        }
    }
}

#[tokio::test]
async fn a_second_resource_is_served_on_its_own_route_beside_customers() {
    let customers: Vec<FakeCustomer> = (1..=12).map(|id| FakeCustomer::new(id, t0())).collect();
    let stores = Stores::new(Store::from_customers(customers))
        .with(Store::from_records(&WIDGETS, widgets()));
    let oms = FakeOms::start_with_stores(FakeOmsConfig::default(), stores)
        .await
        .unwrap();
    assert_eq!(oms.paths(), [CUSTOMERS.path, WIDGETS.path]);

    // Each route its own rows; anything else is Django's 404.
    assert_eq!(get(&oms, &CUSTOMERS, "limit=100").await.ids().len(), 12);
    let all = get(&oms, &WIDGETS, "limit=100").await;
    assert_eq!(all.json()["count"], 30);
    assert_eq!(
        all.ids(),
        (1..=30).collect::<Vec<_>>(),
        "id order by default"
    );
    let other = get_url(
        &format!("{}/api/v1/oms/gadgets/", oms.base_url()),
        Some("test-token"),
    )
    .await;
    assert_eq!(other.status, 404);

    // The records as described: keys in order, kinds, nulls where nullable.
    let names: Vec<&str> = WIDGETS.names().collect();
    let first = all.text.find("\"results\":[").unwrap() + "\"results\":[".len();
    assert_eq!(keys_in_order(&all.text[first..]), names);
    let rows = all.json()["results"].as_array().unwrap().clone();
    for r in &rows {
        for f in WIDGETS.fields {
            match kind_of(&r[f.name]) {
                Some(kind) => assert_eq!(kind, f.kind, "{}: {r}", f.name),
                None => assert!(r[f.name].is_null() && f.nullable, "{}: {r}", f.name),
            }
        }
    }
    assert_eq!(rows[2]["checked_at"], Value::Null);
    assert_eq!(rows[0]["checked_at"], "2023-11-14T22:13:20.000249Z");
    assert_eq!(rows[0]["active"], true);
    assert_eq!(rows[1]["active"], false);
    assert_eq!(rows[3]["size"], Value::Null);
    assert_eq!(rows[4]["name"], "w0");

    // Pagination, with next/previous on the widgets' route.
    let p2 = get(&oms, &WIDGETS, "limit=7&page=2").await;
    assert_eq!(p2.ids(), (8..=14).collect::<Vec<_>>());
    let next = p2.json()["next"].as_str().unwrap().to_owned();
    assert!(next.starts_with(&oms.resource_url(&WIDGETS)), "{next}");
    assert!(next.ends_with("?limit=7&page=3"), "{next}");
    let prev = p2.json()["previous"].as_str().unwrap().to_owned();
    assert!(prev.ends_with("/api/v1/oms/widgets/?limit=7"), "{prev}");
    assert_eq!(
        get(&oms, &WIDGETS, "limit=7&page=6").await.text,
        "{\"detail\":\"Invalid page.\"}"
    );
    assert_eq!(walk(&oms, &WIDGETS, "").await, (1..=30).collect::<Vec<_>>());

    // The key filters and sort.
    assert_eq!(
        walk(&oms, &WIDGETS, "id__gt=10&id__lte=14&sort=-id").await,
        [14, 13, 12, 11]
    );
    let md = |s: i64| {
        (t0() + TimeDelta::seconds(s))
            .to_rfc3339()
            .replace('+', "%2B")
    };
    assert_eq!(
        walk(
            &oms,
            &WIDGETS,
            &format!(
                "modified_date__gte={}&modified_date__lt={}",
                md(28),
                md(100)
            )
        )
        .await,
        [28, 29, 30]
    );
    // Ties (1..=20 at one instant) in a stable scramble, never in id order.
    let by_md = walk(&oms, &WIDGETS, "sort=modified_date").await;
    assert_eq!(by_md[..10], (21..=30).collect::<Vec<_>>());
    let tied = by_md[10..].to_vec();
    let mut sorted = tied.clone();
    sorted.sort();
    assert_eq!(sorted, (1..=20).collect::<Vec<_>>());
    assert_ne!(tied, sorted, "ties are not in id order");
    assert_eq!(
        walk(&oms, &WIDGETS, "sort=modified_date").await,
        by_md,
        "stable"
    );
    let bad = get(&oms, &WIDGETS, "sort=name").await;
    assert_eq!(bad.status, 400, "{}", bad.text);

    // The described exact filters, of each kind; customers' filters are not the widgets'.
    assert_eq!(
        walk(&oms, &WIDGETS, "name=w2").await,
        [2, 7, 12, 17, 22, 27]
    );
    assert_eq!(
        walk(&oms, &WIDGETS, "name=w2&active=true").await,
        [7, 17, 27]
    );
    assert_eq!(
        walk(&oms, &WIDGETS, "active=False&id__lt=7").await,
        [2, 4, 6]
    );
    assert_eq!(
        walk(&oms, &WIDGETS, "active=maybe&id__lt=3").await,
        [1, 2],
        "ignored"
    );
    assert_eq!(walk(&oms, &WIDGETS, "size=50").await, [5]);
    assert_eq!(
        walk(&oms, &WIDGETS, "size=40").await,
        Vec::<i64>::new(),
        "null never matches"
    );
    assert_eq!(
        get(&oms, &WIDGETS, "size=big").await.status,
        500,
        "the ORM's ValueError"
    );
    assert_eq!(
        walk(&oms, &WIDGETS, "email=x&id__lt=3").await,
        [1, 2],
        "not a widget filter"
    );
    assert_eq!(get(&oms, &CUSTOMERS, "name=w2").await.ids().len(), 12);

    // Auth, knobs and faults hold on every route.
    assert_eq!(get_url(&oms.resource_url(&WIDGETS), None).await.status, 401);
    oms.knobs(|k| k.max_limit = 4);
    assert_eq!(get(&oms, &WIDGETS, "limit=100").await.ids(), [1, 2, 3, 4]);
    oms.knobs(|k| k.max_limit = 1000);
    oms.push_fault(Fault::html(502));
    assert_eq!(get(&oms, &WIDGETS, "").await.status, 502);
    assert_eq!(get(&oms, &WIDGETS, "").await.status, 200);
    let logged = oms.requests();
    assert!(logged.iter().any(|r| r.path == WIDGETS.path));
    assert!(logged.iter().any(|r| r.path == CUSTOMERS.path));
    oms.shutdown().await;
}

#[tokio::test]
async fn the_data_helpers_and_hooks_work_on_any_resource() {
    let oms = FakeOms::start(FakeOmsConfig::default(), Vec::new())
        .await
        .unwrap();
    let data = synthetic_records(&WIDGETS, 500, 3);
    assert_eq!(data, synthetic_records(&WIDGETS, 500, 3), "deterministic");
    assert!(
        data.iter()
            .any(|r| r.get("checked_at") == Some(FieldValue::Null))
    );
    assert!(
        data.iter()
            .any(|r| r.get("active") == Some(FieldValue::Boolean(true)))
    );
    oms.add_resource(Store::from_records(&WIDGETS, data));
    assert_eq!(get(&oms, &WIDGETS, "limit=1").await.json()["count"], 500);
    assert!(
        oms.with_resource(WIDGETS.path, |s: &mut Store<FakeCustomer>| s.len())
            .is_none(),
        "wrong row type"
    );

    let before = oms
        .with_resource(WIDGETS.path, |s: &mut Store<Record>| s.max_modified_date())
        .flatten()
        .unwrap();
    let touched = oms
        .with_resource(WIDGETS.path, |s: &mut Store<Record>| {
            touch_random(s, 0.02, 4)
        })
        .unwrap();
    assert_eq!(touched.len(), 10);
    let added = oms
        .with_resource(WIDGETS.path, |s: &mut Store<Record>| insert_new(s, 5, 5))
        .unwrap();
    assert_eq!(added.len(), 5);
    let since = (before + TimeDelta::microseconds(1))
        .to_rfc3339()
        .replace('+', "%2B");
    let mut changed = walk(&oms, &WIDGETS, &format!("modified_date__gte={since}")).await;
    changed.sort();
    let mut want = [touched.clone(), added.clone()].concat();
    want.sort();
    assert_eq!(changed, want);

    let at = before + TimeDelta::days(1);
    let n = oms
        .with_resource(WIDGETS.path, |s: &mut Store<Record>| {
            bulk_update(s, &touched, at)
        })
        .unwrap();
    assert_eq!(n, 10);
    let at_q = at.to_rfc3339().replace('+', "%2B");
    let mut tied = walk(&oms, &WIDGETS, &format!("modified_date={at_q}")).await;
    tied.sort();
    assert_eq!(tied, touched);

    // A hook on the widgets' store runs before each request, on any route.
    let victim = added[0];
    oms.set_before_request_on(
        WIDGETS.path,
        Box::new(move |_, s: &mut Store<Record>| {
            s.remove(victim);
        }),
    );
    assert_eq!(get(&oms, &CUSTOMERS, "").await.status, 200);
    assert!(!walk(&oms, &WIDGETS, "id__gte=0").await.contains(&victim));
    oms.clear_before_request();
    oms.shutdown().await;
}

#[test]
fn records_refuse_values_their_resource_does_not_describe() {
    let mut w = Record::new(&WIDGETS, 1, t0());
    assert_eq!(w.get("name"), Some(FieldValue::Text(String::new())));
    assert_eq!(w.get("checked_at"), Some(FieldValue::Null));
    assert!(w.set("colour", "red").is_err());
    assert!(w.set("active", "yes").is_err());
    assert!(
        w.set("name", None::<String>).is_err(),
        "name is not nullable"
    );
    assert!(w.set("checked_at", None::<DateTime<Utc>>).is_ok());
    assert!(w.set("id", 9).is_ok());
    assert_eq!(w.id, 9);
}
