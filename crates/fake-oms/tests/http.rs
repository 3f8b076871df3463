//! Black-box tests of the fake OMS over HTTP.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use fake_oms::{CUSTOMERS_PATH, FakeCustomer, FakeOms, FakeOmsConfig, Fault, synthetic_customers};
use serde_json::{Value, json};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2023, 10, 6, 8, 42, 53).unwrap() + TimeDelta::microseconds(427_050)
}

/// Customers 1..=n, one second apart.
fn simple(n: i64) -> Vec<FakeCustomer> {
    (1..=n)
        .map(|id| FakeCustomer::new(id, t0() + TimeDelta::seconds(id)))
        .collect()
}

async fn start(customers: Vec<FakeCustomer>) -> FakeOms {
    FakeOms::start(FakeOmsConfig::default(), customers)
        .await
        .expect("start")
}

struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
    fn ids(&self) -> Vec<i64> {
        self.json()["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect()
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn get_with(oms: &FakeOms, query: &str, auth: Option<&str>) -> Resp {
    let url = if query.is_empty() {
        oms.customers_url()
    } else {
        format!("{}?{query}", oms.customers_url())
    };
    let mut req = client().get(url);
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    let r = req.send().await.expect("send");
    Resp {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        text: r.text().await.expect("body"),
    }
}

async fn get(oms: &FakeOms, query: &str) -> Resp {
    let auth = format!("Token {}", oms.token());
    get_with(oms, query, Some(&auth)).await
}

#[tokio::test]
async fn auth_and_permissions() {
    let oms = start(simple(3)).await;
    let r = get_with(&oms, "", None).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json(),
        json!({"detail": "Authentication credentials were not provided."})
    );
    assert_eq!(r.headers["www-authenticate"], "Token");
    let r = get_with(&oms, "", Some("Token nope")).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json(), json!({"detail": "Invalid token."}));
    let r = get_with(&oms, "", Some("Token test-token")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["count"], 3);

    oms.knobs(|k| k.forbidden = true);
    let r = get(&oms, "").await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json(),
        json!({"detail": "You do not have permission to perform this action."})
    );
    oms.knobs(|k| {
        k.forbidden = false;
        k.token = format!("{}-rotated", oms.token()); // calling back from knobs() is fine
    });
    assert_eq!(
        get_with(&oms, "", Some("Token test-token")).await.status,
        401
    );
    assert_eq!(get(&oms, "").await.status, 200);

    // Other paths: Django's HTML 404, also without the trailing slash.
    let r = client()
        .get(format!(
            "{}/api/v1/oms/customers/list-simple",
            oms.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = client()
        .post(oms.customers_url())
        .header("Authorization", "Token test-token-rotated")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    oms.shutdown().await;
}

#[tokio::test]
async fn limit_default_cap_and_pages() {
    let oms = start(simple(250)).await;
    for q in ["", "limit=0", "limit=-5", "limit=abc", "limit="] {
        let r = get(&oms, q).await;
        assert_eq!(r.ids().len(), 20, "{q}");
        assert_eq!(r.json()["count"], 250);
    }
    assert_eq!(
        get(&oms, "limit=7").await.ids(),
        (1..=7).collect::<Vec<_>>()
    );
    oms.knobs(|k| k.max_limit = 50);
    let r = get(&oms, "limit=100&page=2").await;
    assert_eq!(r.ids(), (51..=100).collect::<Vec<_>>());
    oms.knobs(|k| k.max_limit = 1000);
    assert_eq!(get(&oms, "limit=99999").await.ids().len(), 250);

    assert_eq!(
        get(&oms, "limit=100&page=3").await.ids(),
        (201..=250).collect::<Vec<_>>()
    );
    assert_eq!(get(&oms, "limit=100&page=last").await.ids().len(), 50);
    for q in [
        "limit=100&page=4",
        "page=0",
        "page=-1",
        "page=abc",
        "page=1.0",
    ] {
        let r = get(&oms, q).await;
        assert_eq!(r.status, 404, "{q}");
        assert_eq!(r.json(), json!({"detail": "Invalid page."}));
    }
    // Page 1 of an empty result is a valid empty page; page 2 is not.
    let r = get(&oms, "id__gt=1000").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"count": 0, "next": null, "previous": null, "results": []})
    );
    assert_eq!(get(&oms, "id__gt=1000&page=2").await.status, 404);
}

#[tokio::test]
async fn next_and_previous_links() {
    let oms = start(simple(25)).await;
    let host = oms.addr().to_string();
    let base = format!("http://{host}{CUSTOMERS_PATH}");
    let r = get(&oms, "limit=10&sort=id&zzz=a%20b").await.json();
    assert_eq!(r["next"], format!("{base}?limit=10&page=2&sort=id&zzz=a+b"));
    assert_eq!(r["previous"], Value::Null);
    let r = get(&oms, "page=2&limit=10").await.json();
    assert_eq!(r["next"], format!("{base}?limit=10&page=3"));
    assert_eq!(r["previous"], format!("{base}?limit=10"));
    let r = get(
        &oms,
        "page=3&limit=10&modified_date__gt=2000-01-01T00:00:00%2B03:00",
    )
    .await
    .json();
    assert_eq!(r["next"], Value::Null);
    assert_eq!(
        r["previous"],
        format!("{base}?limit=10&modified_date__gt=2000-01-01T00%3A00%3A00%2B03%3A00&page=2")
    );
    // Following next links visits everything exactly once.
    let c = client();
    let mut url = format!("{}?limit=7", oms.customers_url());
    let mut seen = Vec::new();
    loop {
        let v: Value = c
            .get(&url)
            .header("Authorization", "Token test-token")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        seen.extend(
            v["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_i64().unwrap()),
        );
        match v["next"].as_str() {
            Some(n) => url = n.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, (1..=25).collect::<Vec<_>>());

    oms.knobs(|k| k.next_link_base = Some("http://evil.example:9999/".into()));
    let r = get(&oms, "limit=10").await.json();
    assert_eq!(
        r["next"],
        format!("http://evil.example:9999{CUSTOMERS_PATH}?limit=10&page=2")
    );
}

#[tokio::test]
async fn id_filters() {
    let oms = start(simple(30)).await;
    let ids = |q: &'static str| {
        let oms = &oms;
        async move { get(oms, &format!("limit=100&{q}")).await.ids() }
    };
    assert_eq!(ids("id__gt=25").await, [26, 27, 28, 29, 30]);
    assert_eq!(ids("id__gte=28").await, [28, 29, 30]);
    assert_eq!(ids("id__lt=3").await, [1, 2]);
    assert_eq!(ids("id__lte=2").await, [1, 2]);
    assert_eq!(ids("id__gt=5&id__lt=8").await, [6, 7]);
    assert_eq!(ids("id__gt=5.5&id__lte=7.5").await, [6, 7]);
    assert_eq!(
        ids("id__gt=&id__lt=3").await,
        [1, 2],
        "empty values are ignored"
    );
    assert_eq!(ids("id__gt=27&sort=-id").await, [30, 29, 28]);
    let r = get(&oms, "id__gt=abc&id__lte=x").await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.text,
        r#"{"id__gt":["Enter a number."],"id__lte":["Enter a number."]}"#
    );
    let r = get(&oms, "sort=name").await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"sort": ["Select a valid choice. name is not one of the available choices."]})
    );
}

/// A route told to ignore a parameter behaves as django-filter does with one it does not
/// declare: silently, as if it was not sent; other routes and parameters are untouched.
#[tokio::test]
async fn ignored_filters_and_sort_are_dropped_silently() {
    let oms = start(simple(30)).await;
    // Customer 28's instant (t0 + 28 s).
    let md_q = "limit=100&modified_date__gt=2023-10-06T08:43:21.427050Z";
    assert_eq!(get(&oms, md_q).await.ids(), [29, 30]);
    oms.knobs(|k| k.ignore(CUSTOMERS_PATH, fake_oms::MODIFIED_DATE_FILTERS));
    let r = get(&oms, md_q).await;
    assert_eq!((r.status, r.json()["count"].as_i64()), (200, Some(30)));
    // A value the filter would refuse is not even read.
    assert_eq!(get(&oms, "modified_date__gte=garbage").await.status, 200);
    assert_eq!(get(&oms, "limit=100&id__gt=27").await.ids(), [28, 29, 30]);

    oms.knobs(|k| k.ignore(CUSTOMERS_PATH, fake_oms::ID_FILTERS));
    assert_eq!(get(&oms, "limit=100&id__gt=27").await.ids().len(), 30);
    assert_eq!(get(&oms, "limit=3&sort=-id").await.ids(), [30, 29, 28]);

    oms.knobs(|k| k.ignore(CUSTOMERS_PATH, fake_oms::SORT));
    assert_eq!(
        get(&oms, "limit=3&sort=-id").await.ids(),
        [1, 2, 3],
        "default order"
    );
    assert_eq!(
        get(&oms, "sort=name").await.status,
        200,
        "not even validated"
    );
    assert!(oms.knobs(|k| k.ignores(CUSTOMERS_PATH, "sort")));
    assert!(!oms.knobs(|k| k.ignores("/other/", "sort")));
}

/// `OPTIONS` answers with DRF's metadata after the vendor's customers example: the wire
/// fields in `actions.GET`, the declared filters in `filters`, without those the route ignores.
#[tokio::test]
async fn options_describes_fields_and_filters() {
    let oms = start(simple(3)).await;
    let options = || async {
        let r = client()
            .request(reqwest::Method::OPTIONS, oms.customers_url())
            .header("Authorization", "Token test-token")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()
    };
    let filter_names = |v: &Value| -> Vec<String> {
        v["filters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field_name"].as_str().unwrap().to_owned())
            .collect()
    };
    let v = options().await;
    assert_eq!(v["name"], "list-simple");
    let fields: Vec<&str> = v["actions"]["GET"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for f in ["id", "modified_date", "email", "channel"] {
        assert!(fields.contains(&f), "{f} in {fields:?}");
    }
    let names = filter_names(&v);
    for f in ["sort", "id", "modified_date", "channel_id"] {
        assert!(names.iter().any(|n| n == f), "{f} in {names:?}");
    }
    oms.knobs(|k| k.ignore(CUSTOMERS_PATH, fake_oms::SORT));
    oms.knobs(|k| k.ignore(CUSTOMERS_PATH, fake_oms::MODIFIED_DATE_FILTERS));
    let names = filter_names(&options().await);
    assert!(
        !names.iter().any(|n| n == "sort" || n == "modified_date"),
        "{names:?}"
    );
    let r = client()
        .request(reqwest::Method::OPTIONS, oms.customers_url())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "OPTIONS needs the token too");
}

#[tokio::test]
async fn modified_date_filters_and_offsets() {
    let oms = start(simple(10)).await;
    // Customer k has modified_date t0 + k s = 2023-10-06T08:42:(53+k).427050Z.
    let ids = |q: String| {
        let oms = &oms;
        async move {
            let r = get(oms, &q).await;
            assert_eq!(r.status, 200, "{q}: {}", r.text);
            r.ids()
        }
    };
    let at5_utc = "2023-10-06T08:42:58.427050Z";
    let at5_ist = "2023-10-06T11:42:58.427050%2B03:00";
    assert_eq!(ids(format!("modified_date={at5_utc}")).await, [5]);
    assert_eq!(ids(format!("modified_date={at5_ist}")).await, [5]);
    assert_eq!(
        ids("modified_date=2023-10-06T11:42:58.427050%2B0300".into()).await,
        [5]
    );
    assert_eq!(
        ids("modified_date=2023-10-06%2011:42:58.42705".into()).await,
        [5],
        "naive = +03:00"
    );
    assert_eq!(
        ids("modified_date=2023-10-06T08:42:58.427051Z".into()).await,
        Vec::<i64>::new()
    );
    assert_eq!(
        ids(format!("modified_date__gt={at5_ist}")).await,
        [6, 7, 8, 9, 10]
    );
    assert_eq!(
        ids(format!(
            "modified_date__gte={at5_utc}&modified_date__lt=2023-10-06T08:43:01Z"
        ))
        .await,
        [5, 6, 7]
    );
    assert_eq!(
        ids(format!("modified_date__lte={at5_ist}&sort=-modified_date")).await,
        [5, 4, 3, 2, 1]
    );
    assert_eq!(
        ids("modified_date__gt=2023-10-06T05:43:10-03:00".into()).await,
        Vec::<i64>::new()
    );

    // A '+' that was not percent-encoded arrives as a space.
    for bad in [
        "2023-10-06T11:42:58.427050+03:00",
        "2023-10-06",
        "yesterday",
        "2023-10-06T25:00:00Z",
    ] {
        let r = get(&oms, &format!("modified_date__gt={bad}")).await;
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(
            r.json(),
            json!({"modified_date__gt": ["Enter a valid date/time."]})
        );
    }

    let r = get(&oms, "id__lte=1").await.json();
    assert_eq!(
        r["results"][0]["modified_date"],
        "2023-10-06T08:42:54.427050Z"
    );
    oms.knobs(|k| k.output_offset = Some(chrono::FixedOffset::east_opt(3 * 3600).unwrap()));
    let r = get(&oms, "id__lte=1").await.json();
    assert_eq!(
        r["results"][0]["modified_date"],
        "2023-10-06T11:42:54.427050+03:00"
    );
}

#[tokio::test]
async fn equality_filters_and_record_shapes() {
    let mut v = simple(6);
    v[1].email = Some("ayşe@example.com".into());
    v[1].first_name = Some("Ayşe".into());
    v[2].erp_code = Some("E-1".into());
    v[2].channel = Some(2);
    v[3].phone_number = None;
    v[3].last_name = Some("Güneş".into());
    v[4] = v[4]
        .clone()
        .with_raw(json!({"id": "five", "modified_date": "not a date"}));
    v[5] = v[5]
        .clone()
        .with_extra("loyalty_tier", json!("gold"))
        .with_extra("channel", json!("web"));
    v[0].created_date = Utc.with_ymd_and_hms(2023, 1, 1, 0, 0, 0).unwrap();
    let oms = start(v).await;
    assert_eq!(get(&oms, "email=ay%C5%9Fe@example.com").await.ids(), [2]);
    assert_eq!(get(&oms, "first_name=Ay%C5%9Fe").await.ids(), [2]);
    assert_eq!(get(&oms, "last_name=G%C3%BCne%C5%9F").await.ids(), [2, 4]);
    assert_eq!(get(&oms, "erp_code=E-1").await.ids(), [3]);
    assert_eq!(get(&oms, "channel_id=2").await.ids(), [3]);
    assert_eq!(
        get(&oms, "channel_id=2&erp_code=nope").await.ids(),
        Vec::<i64>::new()
    );
    assert_eq!(get(&oms, "channel_id=abc").await.status, 500);
    let phone = oms.with_store(|s| s.get(1).unwrap().phone_number.clone().unwrap());
    assert_eq!(
        get(&oms, &format!("phone_number={phone}&unknown=1"))
            .await
            .ids(),
        [1]
    );

    let r = get(&oms, "").await.json();
    let rows = r["results"].as_array().unwrap();
    assert_eq!(
        rows[0],
        json!({
            "id": 1, "created_date": "2023-01-01T00:00:00Z",
            "modified_date": "2023-10-06T08:42:54.427050Z", "omnitron_id": 1001,
            "email": "customer1@example.com", "first_name": "İpek", "last_name": "Öztürk",
            "phone_number": phone, "erp_code": null, "channel": 1
        })
    );
    assert_eq!(rows[3]["phone_number"], Value::Null);
    assert_eq!(
        rows[4],
        json!({"id": "five", "modified_date": "not a date"})
    );
    assert_eq!(rows[5]["loyalty_tier"], "gold");
    assert_eq!(rows[5]["channel"], "web");
    assert_eq!(rows[5].as_object().unwrap().len(), 11);
    // The record with raw_override still filters and sorts by its stored id and date.
    assert_eq!(get(&oms, "id__gte=5&id__lte=5").await.json()["count"], 1);
}

#[tokio::test]
async fn ties_are_scrambled_but_stable() {
    let at = t0();
    let mut v: Vec<FakeCustomer> = (1..=60).map(|id| FakeCustomer::new(id, at)).collect();
    v.push(FakeCustomer::new(61, at - TimeDelta::seconds(1)));
    v.push(FakeCustomer::new(62, at + TimeDelta::seconds(1)));
    let oms = start(v).await;
    let pages = |sort: &'static str| {
        let oms = &oms;
        async move {
            let mut all = Vec::new();
            for p in 1..=7 {
                all.extend(
                    get(oms, &format!("sort={sort}&limit=10&page={p}"))
                        .await
                        .ids(),
                );
            }
            all
        }
    };
    let asc = pages("modified_date").await;
    assert_eq!(asc.len(), 62);
    assert_eq!((asc[0], asc[61]), (61, 62));
    let tied = &asc[1..61];
    let mut sorted = tied.to_vec();
    sorted.sort();
    assert_eq!(
        sorted,
        (1..=60).collect::<Vec<_>>(),
        "no duplicates or gaps when stable"
    );
    assert_ne!(tied, &sorted[..], "ties are not in id order");
    let mut rev = sorted.clone();
    rev.reverse();
    assert_ne!(tied, &rev[..]);
    assert_eq!(pages("modified_date").await, asc, "stable across requests");
    let desc = pages("-modified_date").await;
    assert_eq!((desc[0], desc[61]), (62, 61));

    // An unstable server: ties re-scrambled per request.
    oms.knobs(|k| k.shuffle_ties_per_request = true);
    let a = get(&oms, "sort=modified_date&limit=62").await.ids();
    let b = get(&oms, "sort=modified_date&limit=62").await.ids();
    assert_ne!(a, b);
    assert_eq!((a[0], a[61], b[0], b[61]), (61, 62, 61, 62));
    let mut a_sorted = a.clone();
    a_sorted.sort();
    assert_eq!(a_sorted, (1..=62).collect::<Vec<_>>());
}

#[tokio::test]
async fn scripted_faults() {
    let oms = start(simple(30)).await;
    oms.push_faults([
        Fault::TooManyRequests {
            retry_after: "7".into(),
        },
        Fault::html(502),
        Fault::ServiceUnavailable {
            retry_after: Some("1".into()),
        },
        Fault::TruncatedBody,
        Fault::InvalidJson,
        Fault::Redirect {
            location: "http://elsewhere.example/".into(),
        },
        Fault::ShortPage { rows: 3 },
        Fault::Delay(Duration::from_millis(200)),
        Fault::json(500, r#"{"detail":"boom"}"#),
    ]);
    let r = get(&oms, "").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.headers["retry-after"], "7");
    assert_eq!(
        r.json(),
        json!({"detail": "Request was throttled. Expected available in 7 seconds."})
    );
    let r = get(&oms, "").await;
    assert_eq!(r.status, 502);
    assert!(r.text.contains("502 Bad Gateway"), "{}", r.text);
    let r = get(&oms, "").await;
    assert_eq!(
        (r.status, r.headers["retry-after"].to_str().unwrap()),
        (503, "1")
    );

    let r = get(&oms, "limit=10").await;
    assert_eq!(r.status, 200);
    let len: usize = r.headers["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(len, r.text.len());
    assert!(serde_json::from_str::<Value>(&r.text).is_err());
    assert!(r.text.starts_with(r#"{"count":30,"#));

    let r = get(&oms, "").await;
    assert_eq!((r.status, r.text.as_str()), (200, "<html>oops</html>"));
    let r = get(&oms, "").await;
    assert_eq!(r.status, 302);
    assert_eq!(r.headers["location"], "http://elsewhere.example/");
    let r = get(&oms, "limit=10").await.json();
    assert_eq!(r["results"].as_array().unwrap().len(), 3);
    assert_eq!(r["count"], 30);
    assert!(r["next"].as_str().unwrap().ends_with("page=2"));

    let started = Instant::now();
    assert_eq!(get(&oms, "").await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(get(&oms, "").await.status, 500);
    assert_eq!(oms.pending_faults(), 0);
    assert_eq!(get(&oms, "").await.status, 200);

    let log = oms.requests();
    assert_eq!(log.len(), 10);
    assert_eq!(
        log[0].fault.as_deref(),
        Some(r#"TooManyRequests { retry_after: "7" }"#)
    );
    assert_eq!(log[6].results, 3);
    assert_eq!(log[9].fault, None);
}

#[tokio::test]
async fn random_faults_are_seeded() {
    let run = || async {
        let oms = start(simple(40)).await;
        oms.knobs(|k| {
            k.random_fault_rate = 0.5;
            k.random_short_page_rate = 0.3;
        });
        let mut out = Vec::new();
        for _ in 0..40 {
            let r = get(&oms, "limit=10").await;
            let n = if r.status == 200 {
                serde_json::from_str::<Value>(&r.text)
                    .map(|v| v["results"].as_array().unwrap().len() as i64)
                    .unwrap_or(-1)
            } else {
                0
            };
            if r.status == 429 {
                assert!(["0", "1"].contains(&r.headers["retry-after"].to_str().unwrap()));
            }
            out.push((r.status, n));
        }
        out
    };
    let a = run().await;
    assert_eq!(a, run().await, "same seed, same faults");
    let statuses: HashSet<u16> = a.iter().map(|x| x.0).collect();
    assert!(
        statuses.contains(&200) && statuses.len() >= 3,
        "{statuses:?}"
    );
    assert!(a.iter().any(|x| x.1 == -1), "a truncated body");
    assert!(
        a.iter().any(|x| x.0 == 200 && (1..10).contains(&x.1)),
        "a short page"
    );
}

#[tokio::test]
async fn before_request_hook_and_log() {
    let oms = start(simple(10)).await;
    oms.set_before_request(Box::new(|n, store| {
        if n == 2 {
            store.upsert(FakeCustomer::new(11, t0() + TimeDelta::seconds(100)));
            store.touch(1, t0() + TimeDelta::seconds(200));
            store.remove(5);
        }
    }));
    assert_eq!(get_with(&oms, "id__gt=0", None).await.status, 401); // seq 1, no hook
    assert_eq!(
        get(&oms, "limit=5&sort=modified_date").await.ids(),
        [2, 3, 4, 6, 7]
    ); // seq 2
    let r = get(&oms, "limit=50&sort=-modified_date").await;
    assert_eq!(r.ids(), [1, 11, 10, 9, 8, 7, 6, 4, 3, 2]);
    oms.clear_before_request();
    assert_eq!(oms.with_store(|s| s.len()), 10);

    let log = oms.requests();
    assert_eq!(oms.request_count(), 3);
    assert_eq!(log.len(), 3);
    assert_eq!(log[0].seq, 1);
    assert_eq!(log[0].status, 401);
    assert_eq!(log[0].authorization, None);
    assert_eq!(log[1].authorization.as_deref(), Some("Token test-token"));
    assert_eq!(log[1].path, CUSTOMERS_PATH);
    assert_eq!(
        log[1].raw_query.as_deref(),
        Some("limit=5&sort=modified_date")
    );
    assert_eq!(log[1].param("sort"), Some("modified_date"));
    assert_eq!(
        log[1].host.as_deref(),
        Some(oms.addr().to_string().as_str())
    );
    assert_eq!((log[1].status, log[1].results), (200, 5));
    assert_eq!(log[2].results, 10);
    oms.clear_requests();
    assert_eq!((oms.request_count(), oms.requests().len()), (0, 0));
    assert_eq!(oms.total_requests(), 3);
}

#[tokio::test]
async fn calling_back_from_with_store_panics_instead_of_deadlocking() {
    let oms = start(simple(1)).await;
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        oms.with_store(|_| oms.token());
    }));
    assert!(caught.is_err());
    assert_eq!(oms.token(), "test-token", "still usable");
    assert_eq!(get(&oms, "").await.status, 200);
}

#[tokio::test]
async fn keyset_passes_over_synthetic_data() {
    let data = synthetic_customers(5000, 11);
    let oms = start(data.clone()).await;
    // id keyset.
    let mut last = 0;
    let mut ids = Vec::new();
    loop {
        let r = get(&oms, &format!("id__gt={last}&sort=id&limit=1000"))
            .await
            .json();
        let page: Vec<i64> = r["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["id"].as_i64().unwrap())
            .collect();
        if page.is_empty() {
            break;
        }
        last = *page.last().unwrap();
        ids.extend(page);
    }
    assert_eq!(ids, data.iter().map(|c| c.id).collect::<Vec<_>>());
    // modified_date order with page numbers: everything once, non-decreasing.
    let mut seen = Vec::new();
    for p in 1..=5 {
        let r = get(&oms, &format!("sort=modified_date&limit=1000&page={p}"))
            .await
            .json();
        for x in r["results"].as_array().unwrap() {
            seen.push((
                x["modified_date"].as_str().unwrap().to_owned(),
                x["id"].as_i64().unwrap(),
            ));
        }
    }
    let parsed: Vec<DateTime<Utc>> = seen
        .iter()
        .map(|(d, _)| DateTime::parse_from_rfc3339(d).unwrap().to_utc())
        .collect();
    assert!(parsed.windows(2).all(|w| w[0] <= w[1]));
    let set: HashSet<i64> = seen.iter().map(|x| x.1).collect();
    assert_eq!(set.len(), 5000);
    // A count with a filter on the other key.
    let cut = parsed[2500];
    let expect = data
        .iter()
        .filter(|c| c.modified_date > cut && c.id > 2000)
        .count();
    let q = format!(
        "modified_date__gt={}&id__gt=2000&limit=1",
        cut.format("%Y-%m-%dT%H:%M:%S%.6fZ")
    );
    assert_eq!(get(&oms, &q).await.json()["count"], expect);
}

/// `cargo test --release --test fake_oms -- --ignored --nocapture serving_rate`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn serving_rate() {
    let started = Instant::now();
    let data = synthetic_customers(1_000_000, 1);
    println!("generated 1M in {:?}", started.elapsed());
    let started = Instant::now();
    let oms = start(data).await;
    println!("store built in {:?}", started.elapsed());
    oms.knobs(|k| k.record_requests = false);
    let c = client();
    let auth = format!("Token {}", oms.token());
    for sort in ["id", "modified_date"] {
        let started = Instant::now();
        let (mut rows, mut last_id, mut last_md) =
            (0usize, 0i64, String::from("2000-01-01T00:00:00Z"));
        let mut fetching = Duration::ZERO;
        loop {
            let url = if sort == "id" {
                format!(
                    "{}?id__gt={last_id}&sort=id&limit=1000",
                    oms.customers_url()
                )
            } else {
                // Not a correct keyset over ties; only a load pattern.
                format!(
                    "{}?modified_date__gt={}&sort=modified_date&limit=1000",
                    oms.customers_url(),
                    last_md.replace('+', "%2B")
                )
            };
            let fetch_started = Instant::now();
            let body = c
                .get(url)
                .header("Authorization", &auth)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            fetching += fetch_started.elapsed();
            let v: Value = serde_json::from_slice(&body).unwrap();
            let res = v["results"].as_array().unwrap();
            if res.is_empty() {
                break;
            }
            rows += res.len();
            last_id = res.last().unwrap()["id"].as_i64().unwrap();
            last_md = res.last().unwrap()["modified_date"]
                .as_str()
                .unwrap()
                .to_owned();
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "sort={sort}: {rows} rows in {secs:.2}s = {:.0} rows/s with client JSON parsing, {:.0} rows/s request+body only",
            rows as f64 / secs,
            rows as f64 / fetching.as_secs_f64()
        );
    }
    let started = Instant::now();
    let changed = oms.with_store(|s| fake_oms::touch_random(s, 0.01, 2));
    println!("touched {} in {:?}", changed.len(), started.elapsed());
    oms.shutdown().await;
}

/// Sends `n` authorized requests at once; returns them in completion order.
async fn get_concurrently(oms: &FakeOms, n: usize) -> Vec<Resp> {
    let url = oms.customers_url();
    let auth = format!("Token {}", oms.token());
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (url, auth) = (url.clone(), auth.clone());
        set.spawn(async move {
            let r = client()
                .get(url)
                .header("Authorization", auth)
                .send()
                .await
                .expect("send");
            Resp {
                status: r.status().as_u16(),
                headers: r.headers().clone(),
                text: r.text().await.expect("body"),
            }
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.expect("request task"));
    }
    out
}

#[tokio::test]
async fn latency_is_applied_to_every_request_and_waits_concurrently() {
    const LATENCY: Duration = Duration::from_millis(200);
    let oms = start(simple(3)).await;
    oms.knobs(|k| k.latency = LATENCY);

    let started = Instant::now();
    let r = get(&oms, "").await;
    assert_eq!(r.status, 200);
    assert!(started.elapsed() >= LATENCY, "{:?}", started.elapsed());
    // Errors wait too: the latency is the network's, not the application's.
    let started = Instant::now();
    assert_eq!(get_with(&oms, "", None).await.status, 401);
    assert!(started.elapsed() >= LATENCY, "{:?}", started.elapsed());

    // 8 requests one after another would take 1.6 s; at the same time they take about 0.2 s.
    let started = Instant::now();
    let rs = get_concurrently(&oms, 8).await;
    let took = started.elapsed();
    assert!(rs.iter().all(|r| r.status == 200));
    assert!(took >= LATENCY, "{took:?}");
    // Sequential would be 8 x LATENCY; the margin is for a loaded machine.
    assert!(
        took < 6 * LATENCY,
        "requests waited one after another: {took:?}"
    );

    // Jitter adds up to its amount on top of the fixed latency.
    oms.knobs(|k| {
        k.latency = Duration::from_millis(100);
        k.latency_jitter = Duration::from_millis(50);
    });
    let started = Instant::now();
    assert_eq!(get(&oms, "").await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(100));
    oms.shutdown().await;
}

/// Checks a burst of 20 against a throttle of 5/s; returns the 429s.
async fn burst_against_throttle(oms: &FakeOms) -> Vec<Resp> {
    oms.knobs(|k| k.throttle_per_second = Some(5));
    let rs = get_concurrently(oms, 20).await;
    let ok = rs.iter().filter(|r| r.status == 200).count();
    let throttled: Vec<Resp> = rs.into_iter().filter(|r| r.status == 429).collect();
    // At most 5 in any second: the burst takes far less than a second on loopback, so 5 get
    // through; the bound leaves room for a machine slow enough to spread it over ~2 s.
    assert!((5..=10).contains(&ok), "{ok} served");
    assert_eq!(ok + throttled.len(), 20, "every request is a 200 or a 429");
    assert_eq!(oms.served_count(), ok as u64);
    assert_eq!(oms.throttled_count(), throttled.len() as u64);
    let logged = oms
        .requests()
        .iter()
        .filter(|r| r.status == 429 && r.fault.as_deref() == Some("throttled"))
        .count();
    assert_eq!(logged, throttled.len());
    for r in &throttled {
        assert_eq!(
            r.json()["detail"]
                .as_str()
                .map(|d| d.starts_with("Request was throttled.")),
            Some(true)
        );
    }
    throttled
}

#[tokio::test]
async fn throttle_answers_429_with_retry_after_above_n_per_second() {
    let oms = start(simple(3)).await;
    let throttled = burst_against_throttle(&oms).await;
    for r in &throttled {
        assert_eq!(r.headers["retry-after"], "1");
        assert_eq!(
            r.json()["detail"],
            "Request was throttled. Expected available in 1 second."
        );
    }
    // After the wait it announced, the window has slid and requests are served again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(&oms, "").await.status, 200);
    // Off again: everything is served, nothing more is counted as throttled.
    oms.knobs(|k| k.throttle_per_second = None);
    let before = oms.throttled_count();
    assert!(
        get_concurrently(&oms, 20)
            .await
            .iter()
            .all(|r| r.status == 200)
    );
    assert_eq!(oms.throttled_count(), before);
    oms.clear_requests();
    assert_eq!((oms.served_count(), oms.throttled_count()), (0, 0));
    oms.shutdown().await;
}

#[tokio::test]
async fn throttle_can_answer_429_without_retry_after() {
    let oms = start(simple(3)).await;
    oms.knobs(|k| k.throttle_retry_after = false);
    let throttled = burst_against_throttle(&oms).await;
    assert!(!throttled.is_empty());
    for r in &throttled {
        assert!(r.headers.get("retry-after").is_none(), "{:?}", r.headers);
    }
    oms.shutdown().await;
}

/// Runs the real `fake-oms` binary to completion (killed after 60 s so a test cannot hang).
fn run_fake_oms(args: &[&str]) -> std::process::Output {
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-oms"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fake-oms starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("fake-oms {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn binary_prints_its_version() {
    let out = run_fake_oms(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("fake-oms {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn binary_names_the_address_in_use_and_the_fix() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let out = run_fake_oms(&["--port", &port, "--customers", "1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.contains("choose another --port"), "{err}");
    drop(taken);
}

#[test]
fn binary_rejects_a_malformed_latency() {
    let out = run_fake_oms(&["--latency", "fast"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--latency"));
}

/// Kills the child on drop, so a failed assertion does not leave a server running.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn binary_flags_set_latency_and_throttle() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_fake-oms"))
            .args(["--port", "0", "--customers", "5", "--latency", "150ms"])
            .args([
                "--latency-jitter",
                "20ms",
                "--throttle",
                "2",
                "--no-retry-after",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("fake-oms starts"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .map(|_| line)
    })
    .await
    .expect("reader")
    .expect("first line");
    // "fake-oms serving 5 customers at http://127.0.0.1:PORT token test-token"
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"));
    let url = format!("{base}{CUSTOMERS_PATH}");
    let mut statuses = Vec::new();
    let started = Instant::now();
    for _ in 0..4 {
        let r = client()
            .get(&url)
            .header("Authorization", "Token test-token")
            .send()
            .await
            .expect("send");
        assert!(r.headers().get("retry-after").is_none());
        statuses.push(r.status().as_u16());
    }
    // Four requests one after another, each at least 150 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 200).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 429).count(),
        2,
        "{statuses:?}"
    );
}
