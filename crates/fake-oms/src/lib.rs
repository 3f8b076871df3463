//! A fake of Akinon OMS's `GET /api/v1/oms/customers/list-simple/` (a Django REST Framework
//! list view with page-number pagination and django-filter filters), for oms-sync's
//! integration tests, property tests and benchmarks, its demo, and the `fake-oms` binary.
//!
//! The fake is an oracle written apart from the product: it describes the wire fields of what
//! it serves itself ([`CUSTOMERS`], from the vendor's documentation) and depends on nothing of
//! oms-sync, so a field the product gets wrong fails a test instead of agreeing with itself.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use fake_oms::{FakeOms, FakeOmsConfig, Fault, synthetic_customers};
//! let oms = FakeOms::start(FakeOmsConfig::default(), synthetic_customers(500, 7)).await?;
//! oms.push_fault(Fault::TooManyRequests { retry_after: "1".into() });
//! oms.knobs(|k| k.max_limit = 100);
//! let url = format!("{}/api/v1/oms/customers/list-simple/?limit=50", oms.base_url());
//! # let _ = url;
//! oms.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Besides customers it serves any number of other resources, each described by a
//! [`Resource`] (path, fields, exact filters) with [`Record`] rows, on its own route with the
//! same behaviour and knobs:
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use fake_oms::{FakeOms, FakeOmsConfig, Field, Record, Resource, Store, synthetic_records};
//! static WIDGETS: Resource = Resource::new(
//!     "/api/v1/oms/widgets/",
//!     &[
//!         Field::integer("id"),
//!         Field::text("name").exact_filter("name"),
//!         Field::timestamp("checked_at").nullable(),
//!         Field::boolean("active"),
//!         Field::timestamp("modified_date"),
//!     ],
//! );
//! let oms = FakeOms::start(FakeOmsConfig::default(), Vec::new()).await?;
//! oms.add_resource(Store::from_records(&WIDGETS, synthetic_records(&WIDGETS, 100, 7)));
//! let url = format!("{}?sort=modified_date&limit=10", oms.resource_url(&WIDGETS));
//! oms.with_resource(WIDGETS.path, |s: &mut Store<Record>| fake_oms::touch_random(s, 0.1, 8));
//! # let _ = url;
//! # Ok(()) }
//! ```
//!
//! Behaviour in short (see the module sources for the details):
//! - Only the routes of the stores exist (customers' `CUSTOMERS_PATH` always; Django's HTML
//!   404 elsewhere). Auth is DRF
//!   `TokenAuthentication` (401 with `WWW-Authenticate: Token`), then the `forbidden` knob (403),
//!   then `OPTIONS` gets the route's DRF metadata (`options`), other methods than GET/HEAD 405.
//! - `limit` (default 20; invalid/zero/negative → default; capped at `max_limit`), `page`
//!   (default 1, `last` allowed; invalid or past the end → 404 `Invalid page.`).
//! - Filters `id__gt/gte/lt/lte` (decimal numbers), `modified_date[__gt/gte/lt/lte]` (Django's
//!   `parse_datetime`, naive values in +03:00), and the resource's exact filters (customers:
//!   `first_name`, `last_name`, `email`, `phone_number`, `erp_code`, `channel_id`); empty
//!   values and unknown parameters are ignored; the last of repeated parameters wins. An
//!   integer filter's value that is not an integer (`channel_id=abc`) gives Django's 500 page
//!   (what the ORM does with it).
//! - `sort` ∈ `id`, `-id`, `modified_date`, `-modified_date` (default `id`); anything else is a
//!   400. Rows with equal `modified_date` come in a stable scramble, never by id.
//! - Before all of that, each request waits `Knobs::latency` (+ jitter), then passes the
//!   throttle (`Knobs::throttle_per_second`, 429 above N in any second), then the faults.
//!
//! Layout (one concern per file):
//! - `lib.rs`: the public handle ([`FakeOms`]), its settings ([`FakeOmsConfig`], [`Knobs`]) and
//!   the request log ([`RecordedRequest`]).
//! - `server`: the request pipeline and the shared, locked state; it only orders the steps below.
//! - `stores`: the routes ([`Stores`]: customers and the other resources' stores).
//! - `page`: one page of a route, generic over its rows.
//! - `throttle`: the latency and the throttle, the first steps of every request.
//! - `faults`: scripted and random faults ([`Fault`]), the next step.
//! - `auth`: DRF token authentication.
//! - `query`: the request summary and the parsing of `limit`, `page`, `sort` and the filters.
//! - `select`: filtering, ordering and the ids of one page.
//! - `links`: DRF's `next` / `previous` URLs.
//! - `options`: the `OPTIONS` answer (DRF metadata: fields and filters).
//! - `json`: the page and customer JSON, written by hand as DRF renders it.
//! - `reply`: error bodies (DRF detail, Django and load-balancer HTML), 429, gzip.
//! - `resource`: the description of a route's records ([`Resource`], [`Field`], [`Kind`]).
//! - `customers`: the customers' description ([`CUSTOMERS`]) and row ([`FakeCustomer`]).
//! - `locations`: the stock locations' and customer addresses' descriptions
//!   ([`STOCK_LOCATIONS`], [`CUSTOMER_ADDRESSES`]) and their realistic synthetic rows.
//! - `record`: the rows of any other resource ([`Record`], [`FieldValue`]).
//! - `store`: a route's rows and their indexes ([`Store`]), and what it asks of a row ([`Row`]).
//! - `data`, `dates`: synthetic data and bulk changes, Django's datetimes.
//! - `main.rs`: the `fake-oms` binary.

mod auth;
mod customers;
mod data;
mod dates;
mod faults;
mod json;
mod links;
mod locations;
mod options;
mod page;
mod query;
mod record;
mod reply;
mod resource;
mod select;
mod server;
mod store;
mod stores;
mod throttle;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::serve::ListenerExt;
use chrono::FixedOffset;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use customers::{CUSTOMERS, CUSTOMERS_PATH, FakeCustomer};
pub use data::{
    ascii_fold, bulk_update, insert_new, synthetic_customers, synthetic_records, touch_random,
};
pub use dates::{format_drf_datetime, istanbul, parse_django_datetime, write_drf_datetime};
pub use faults::Fault;
pub use locations::{
    CUSTOMER_ADDRESSES, CUSTOMER_ADDRESSES_PATH, STOCK_LOCATIONS, STOCK_LOCATIONS_PATH,
    synthetic_customer_addresses, synthetic_stock_locations,
};
pub use record::{FieldValue, Record, SetError};
pub use reply::lb_html;
pub use resource::{Field, Kind, Resource};
pub use store::{Exact, Row, Store, trunc_micros};
pub use stores::Stores;

use server::Shared;

/// The hook run at the start of every authorized request (see [`FakeOms::set_before_request`]).
pub type BeforeRequestHook = Box<dyn FnMut(u64, &mut Store) + Send>;

/// A before-request hook on the store of one route (see [`FakeOms::set_before_request_on`]).
pub type StoreHook<R> = Box<dyn FnMut(u64, &mut Store<R>) + Send>;

/// A before-request hook on every store (see [`FakeOms::set_before_request_all`]).
pub type StoresHook = Box<dyn FnMut(u64, &mut Stores) + Send>;

/// Start-up settings.
#[derive(Debug, Clone)]
pub struct FakeOmsConfig {
    pub token: String,
    pub max_limit: usize,
    /// 0 = any free port.
    pub port: u16,
    /// Seeds the random faults and per-request tie shuffles.
    pub seed: u64,
}

impl Default for FakeOmsConfig {
    fn default() -> Self {
        FakeOmsConfig {
            token: "test-token".to_owned(),
            max_limit: 1000,
            port: 0,
            seed: 0x5eed,
        }
    }
}

/// Settings that tests change while the server runs (via [`FakeOms::knobs`]).
#[derive(Debug, Clone)]
pub struct Knobs {
    /// The valid token (`Authorization: Token <token>`).
    pub token: String,
    /// `limit` above this is silently capped (DRF `max_page_size`); 0 = no cap.
    pub max_limit: usize,
    /// Page size when `limit` is absent, zero, negative or not a number (20).
    pub default_limit: usize,
    /// Every authenticated request gets 403.
    pub forbidden: bool,
    /// Routes whose authenticated requests get 403 (a token without the permission for that
    /// list), e.g. `CUSTOMER_ADDRESSES_PATH`; the other routes answer.
    pub forbidden_paths: Vec<String>,
    /// Replaces `http://<Host header>` in `next`/`previous`, e.g. `"http://other.example:81"`.
    pub next_link_base: Option<String>,
    /// Writes datetimes in this offset instead of `Z` (same instant).
    pub output_offset: Option<FixedOffset>,
    /// How filter values without an offset are read (+03:00, Europe/Istanbul).
    pub naive_offset: FixedOffset,
    /// Probability (0..1) that a request gets a random 500/502/503/504/429/truncated answer.
    pub random_fault_rate: f64,
    /// Probability (0..1) that a served page is cut short (1..limit-1 rows, true count/next).
    pub random_short_page_rate: f64,
    /// Re-scramble rows with equal `modified_date` with a new seed on every request.
    pub shuffle_ties_per_request: bool,
    /// Keep the request log (turn off for long-running servers; counts are kept anyway).
    pub record_requests: bool,
    /// Gzip-code served pages (`Content-Encoding: gzip`) for clients that send
    /// `Accept-Encoding: gzip`, as a web server in front of the OMS does. Fault replies are
    /// never coded; a truncated body is cut before it is coded.
    pub gzip: bool,
    /// Report this `count` instead of the true one, as DRF does when rows commit between its
    /// COUNT query and its page query (a count taken before a bulk update landed).
    pub stale_count: Option<u64>,
    /// Added to every request before it is answered, as the round trip to a remote OMS would
    /// be. Slept with tokio, so concurrent requests wait at the same time.
    pub latency: Duration,
    /// Up to this much more latency, drawn uniformly per request.
    pub latency_jitter: Duration,
    /// Let at most this many requests through in any one-second span (DRF's
    /// `SimpleRateThrottle`, checked before the scripted faults); the rest get 429. `None` = no
    /// limit. See [`FakeOms::throttled_count`] and [`FakeOms::served_count`].
    pub throttle_per_second: Option<u32>,
    /// Whether a throttled 429 carries `Retry-After` (whole seconds until a request would be
    /// let through), as DRF's does; `false` answers like a gateway that does not say.
    pub throttle_retry_after: bool,
    /// Query parameters a route does not declare, as `(path, parameter)`: ignored silently as
    /// django-filter ignores any parameter it does not know (the rows come unfiltered, or in
    /// the default order by id for `sort`), and left out of the route's `OPTIONS` `filters`.
    /// See [`Knobs::ignore`].
    pub ignored_params: Vec<(String, String)>,
}

/// `modified_date` and its lookups, for [`Knobs::ignore`].
pub const MODIFIED_DATE_FILTERS: &[&str] = &[
    "modified_date",
    "modified_date__gt",
    "modified_date__gte",
    "modified_date__lt",
    "modified_date__lte",
];
/// The id lookups, for [`Knobs::ignore`].
pub const ID_FILTERS: &[&str] = &["id__gt", "id__gte", "id__lt", "id__lte"];
/// `sort`, for [`Knobs::ignore`].
pub const SORT: &[&str] = &["sort"];

impl Knobs {
    /// Makes the route at `path` ignore `params` (e.g. [`MODIFIED_DATE_FILTERS`]).
    pub fn ignore(&mut self, path: &str, params: &[&str]) {
        for p in params {
            if !self.ignores(path, p) {
                self.ignored_params.push((path.to_owned(), (*p).to_owned()));
            }
        }
    }

    /// Whether the route at `path` ignores `param`.
    pub fn ignores(&self, path: &str, param: &str) -> bool {
        self.ignored_params
            .iter()
            .any(|(p, q)| p == path && q == param)
    }
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            token: "test-token".to_owned(),
            max_limit: 1000,
            default_limit: 20,
            forbidden: false,
            forbidden_paths: Vec::new(),
            next_link_base: None,
            output_offset: None,
            naive_offset: istanbul(),
            random_fault_rate: 0.0,
            random_short_page_rate: 0.0,
            shuffle_ties_per_request: false,
            record_requests: true,
            gzip: false,
            stale_count: None,
            latency: Duration::ZERO,
            latency_jitter: Duration::ZERO,
            throttle_per_second: None,
            throttle_retry_after: true,
            ignored_params: Vec::new(),
        }
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// 1-based number of the request since the server started (never reset); the number the
    /// before-request hook gets.
    pub seq: u64,
    pub method: String,
    pub path: String,
    /// The raw query string (without `?`), if any.
    pub raw_query: Option<String>,
    /// Decoded query pairs in order.
    pub query: Vec<(String, String)>,
    pub authorization: Option<String>,
    pub host: Option<String>,
    pub status: u16,
    /// Number of results in the page served (before any truncation); 0 for errors.
    pub results: usize,
    /// The fault applied, if any (`Debug` form of the [`Fault`], or `random ...`).
    pub fault: Option<String>,
    /// The request's `Accept-Encoding` header.
    pub accept_encoding: Option<String>,
    /// The body was sent gzip-coded (see [`Knobs::gzip`]).
    pub gzipped: bool,
    /// When the request arrived (for tests of retry delays and rate limits).
    pub received_at: std::time::Instant,
}

impl RecordedRequest {
    /// The last value of a query parameter.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A running fake OMS. Dropping it stops the server (gracefully, in the background).
pub struct FakeOms {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl FakeOms {
    /// Starts serving `customers` on 127.0.0.1 (`config.port`, 0 = any free port).
    pub async fn start(
        config: FakeOmsConfig,
        customers: Vec<FakeCustomer>,
    ) -> std::io::Result<FakeOms> {
        let store = if customers.len() > 20_000 {
            tokio::task::spawn_blocking(move || Store::from_customers(customers))
                .await
                .map_err(std::io::Error::other)?
        } else {
            Store::from_customers(customers)
        };
        Self::start_with_store(config, store).await
    }

    /// Like [`FakeOms::start`] with a ready store.
    pub async fn start_with_store(config: FakeOmsConfig, store: Store) -> std::io::Result<FakeOms> {
        Self::start_with_stores(config, Stores::new(store)).await
    }

    /// Starts serving every route of `stores` (see [`Stores::with`]).
    pub async fn start_with_stores(
        config: FakeOmsConfig,
        stores: Stores,
    ) -> std::io::Result<FakeOms> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, config.port)).await?;
        let addr = listener.local_addr()?;
        let knobs = Knobs {
            token: config.token,
            max_limit: config.max_limit,
            ..Knobs::default()
        };
        let shared = Arc::new(Shared::new(stores, knobs, config.seed, addr));
        let app = Router::new()
            .fallback(server::handle)
            .with_state(shared.clone());
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(FakeOms {
            shared,
            addr,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `base_url()` + [`CUSTOMERS_PATH`].
    pub fn customers_url(&self) -> String {
        format!("{}{}", self.base_url(), CUSTOMERS_PATH)
    }

    /// `base_url()` + the resource's path.
    pub fn resource_url(&self, resource: &Resource) -> String {
        format!("{}{}", self.base_url(), resource.path)
    }

    /// Serves `store` on its resource's path from now on, in place of what was served there.
    pub fn add_resource<R: Row>(&self, store: Store<R>) {
        self.shared.lock().stores.add(store);
    }

    /// The routes served, customers first.
    pub fn paths(&self) -> Vec<&'static str> {
        self.shared.lock().stores.paths()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The currently valid token.
    pub fn token(&self) -> String {
        self.shared.lock().knobs.token.clone()
    }

    /// Runs `f` on the store (the server waits meanwhile; keep it short). `f` must not call
    /// this `FakeOms` (that panics rather than deadlocks).
    pub fn with_store<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        self.with_stores(|s| f(s.customers()))
    }

    /// [`FakeOms::with_store`] on the store served at `path`; `None` if there is none there
    /// with rows of type `R` (`Store<Record>` for a described [`Resource`]).
    pub fn with_resource<R: Row, T>(
        &self,
        path: &str,
        f: impl FnOnce(&mut Store<R>) -> T,
    ) -> Option<T> {
        self.with_stores(|s| s.get_mut::<R>(path).map(f))
    }

    /// [`FakeOms::with_store`] on every store at once.
    pub fn with_stores<T>(&self, f: impl FnOnce(&mut Stores) -> T) -> T {
        let mut st = self.shared.lock();
        let _guard = server::CallbackGuard::enter();
        f(&mut st.stores)
    }

    /// Reads or changes the knobs. `f` works on a copy that is written back afterwards, so it
    /// may call other methods of this `FakeOms` (e.g. `k.token = oms.token()`).
    pub fn knobs<R>(&self, f: impl FnOnce(&mut Knobs) -> R) -> R {
        let mut knobs = self.shared.lock().knobs.clone();
        let r = f(&mut knobs);
        self.shared.lock().knobs = knobs;
        r
    }

    pub fn push_fault(&self, fault: Fault) {
        self.shared.lock().faults.push_back(fault);
    }

    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.shared.lock().faults.extend(faults);
    }

    /// Drops the scripted faults not consumed yet.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Scripted faults not consumed yet.
    pub fn pending_faults(&self) -> usize {
        self.shared.lock().faults.len()
    }

    /// Sets the hook run at the start of every authorized request (after auth and the
    /// `forbidden` check, before parsing and filtering), with the request's 1-based `seq`
    /// (counted over all requests, see [`RecordedRequest::seq`]) and the store. It runs on a
    /// blocking thread with the state locked: it must not call back into this `FakeOms`.
    pub fn set_before_request(&self, mut hook: BeforeRequestHook) {
        self.set_before_request_all(Box::new(move |seq, stores| hook(seq, stores.customers())));
    }

    /// Like [`FakeOms::set_before_request`] with the store served at `path` (skipped while
    /// there is no store of rows `R` there). It runs on requests to every route; there is one
    /// hook at a time, whichever setter set it.
    pub fn set_before_request_on<R: Row>(&self, path: &str, mut hook: StoreHook<R>) {
        let path = path.to_owned();
        self.set_before_request_all(Box::new(move |seq, stores| {
            if let Some(store) = stores.get_mut::<R>(&path) {
                hook(seq, store)
            }
        }));
    }

    /// Like [`FakeOms::set_before_request`] with every store.
    pub fn set_before_request_all(&self, hook: StoresHook) {
        self.shared.lock().hook = Some(hook);
    }

    pub fn clear_before_request(&self) {
        self.shared.lock().hook = None;
    }

    /// The request log, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        let mut v = self.shared.lock().log.clone();
        v.sort_by_key(|r| r.seq);
        v
    }

    /// Empties the log and resets [`FakeOms::request_count`], [`FakeOms::served_count`] and
    /// [`FakeOms::throttled_count`].
    pub fn clear_requests(&self) {
        let mut st = self.shared.lock();
        st.log.clear();
        st.counted = 0;
        st.served = 0;
        st.throttled = 0;
    }

    /// Requests the throttle let through (every request while it is off), since start or the
    /// last [`FakeOms::clear_requests`].
    pub fn served_count(&self) -> u64 {
        self.shared.lock().served
    }

    /// Requests the throttle answered with 429 ([`Knobs::throttle_per_second`]), since start
    /// or the last [`FakeOms::clear_requests`]. Scripted and random 429s are not counted here.
    pub fn throttled_count(&self) -> u64 {
        self.shared.lock().throttled
    }

    /// Requests answered since start or the last [`FakeOms::clear_requests`] (all of them,
    /// failed and unauthorized ones included).
    pub fn request_count(&self) -> u64 {
        self.shared.lock().counted
    }

    /// Requests received since start (never reset; the last `seq` handed out).
    pub fn total_requests(&self) -> u64 {
        self.shared.total_requests()
    }

    /// Stops accepting, closes idle connections and waits (up to 5 s) for in-flight requests.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for FakeOms {
    fn drop(&mut self) {
        // Graceful: the listener closes and idle keep-alive connections are shut. Aborting the
        // accept task instead would leave connection tasks running.
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl std::fmt::Debug for FakeOms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeOms").field("addr", &self.addr).finish()
    }
}
