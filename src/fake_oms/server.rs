//! The HTTP side: one fallback handler that logs every request, applies faults, authenticates,
//! runs the before-request hook, filters, paginates and writes the JSON by hand.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State as AxState};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use chrono::FixedOffset;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::dates::{parse_django_datetime, write_drf_datetime};
use super::store::{FakeCustomer, MdKey, Store, mix64};
use super::{BeforeRequestHook, CUSTOMERS_PATH, Fault, Knobs, RecordedRequest};

pub(crate) struct Shared {
    state: Mutex<State>,
    seq: AtomicU64,
}

pub(crate) struct State {
    pub store: Store,
    pub knobs: Knobs,
    pub faults: VecDeque<Fault>,
    pub rng: StdRng,
    pub log: Vec<RecordedRequest>,
    /// Requests completed since the last `clear_requests`.
    pub counted: u64,
    pub hook: Option<BeforeRequestHook>,
    pub addr: SocketAddr,
}

impl Shared {
    pub(crate) fn new(store: Store, knobs: Knobs, seed: u64, addr: SocketAddr) -> Shared {
        Shared {
            state: Mutex::new(State {
                store,
                knobs,
                faults: VecDeque::new(),
                rng: StdRng::seed_from_u64(seed),
                log: Vec::new(),
                counted: 0,
                hook: None,
                addr,
            }),
            seq: AtomicU64::new(0),
        }
    }

    /// Locks the state; a panic in a hook does not make the server unusable.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        assert!(
            !IN_CALLBACK.get(),
            "FakeOms: a with_store closure or before-request hook called back into the FakeOms \
             (that would deadlock); call it before or after the closure instead"
        );
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn total_requests(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }
}

thread_local! {
    /// Set while this thread runs user code with the state locked.
    static IN_CALLBACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks the current thread as running user code under the lock (reentry panics instead of
/// deadlocking).
pub(crate) struct CallbackGuard(bool);

impl CallbackGuard {
    pub(crate) fn enter() -> CallbackGuard {
        CallbackGuard(IN_CALLBACK.replace(true))
    }
}

impl Drop for CallbackGuard {
    fn drop(&mut self) {
        IN_CALLBACK.set(self.0);
    }
}

/// What the handler knows about a request.
struct Incoming {
    seq: u64,
    method: Method,
    path: String,
    raw_query: Option<String>,
    query: Vec<(String, String)>,
    authorization: Option<String>,
    host: Option<String>,
    accept_encoding: Option<String>,
    received_at: std::time::Instant,
}

impl Incoming {
    fn from_request(seq: u64, req: &Request) -> Incoming {
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
    fn accepts_gzip(&self) -> bool {
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
    fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A response before it becomes an HTTP response.
struct Reply {
    status: u16,
    content_type: Cow<'static, str>,
    headers: Vec<(header::HeaderName, String)>,
    body: Vec<u8>,
    results: usize,
    /// The body was gzip-coded (`Content-Encoding: gzip`).
    gzipped: bool,
}

const JSON: &str = "application/json";
const HTML: &str = "text/html; charset=utf-8";

impl Reply {
    fn new(status: u16, content_type: impl Into<Cow<'static, str>>, body: Vec<u8>) -> Reply {
        Reply {
            status,
            content_type: content_type.into(),
            headers: Vec::new(),
            body,
            results: 0,
            gzipped: false,
        }
    }

    /// A DRF JSON reply (with the headers a DRF view adds).
    fn drf(status: u16, body: Vec<u8>) -> Reply {
        let mut r = Reply::new(status, JSON, body);
        r.headers
            .push((header::ALLOW, "GET, HEAD, OPTIONS".to_owned()));
        r.headers.push((header::VARY, "Accept, Cookie".to_owned()));
        r
    }

    fn detail(status: u16, detail: &str) -> Reply {
        let mut body = Vec::with_capacity(detail.len() + 16);
        body.extend_from_slice(b"{\"detail\":");
        write_json_str(&mut body, detail);
        body.push(b'}');
        Reply::drf(status, body)
    }

    fn header(mut self, name: header::HeaderName, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = Response::new(Body::from(self.body));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&self.content_type) {
            h.insert(header::CONTENT_TYPE, v);
        }
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.append(name, v);
            }
        }
        resp
    }
}

/// The HTML a load balancer (nginx) in front of the OMS answers with.
pub fn lb_html(status: u16) -> String {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    format!(
        "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n\
         <center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n\
         </body>\r\n</html>\r\n"
    )
}

fn django_html(title: &str, text: &str) -> Vec<u8> {
    format!(
        "\n<!doctype html>\n<html lang=\"en\">\n<head>\n  <title>{title}</title>\n</head>\n\
         <body>\n  <h1>{title}</h1><p>{text}</p>\n</body>\n</html>\n"
    )
    .into_bytes()
}

fn server_error() -> Reply {
    Reply::new(500, HTML, django_html("Server Error (500)", ""))
}

fn not_found_html() -> Reply {
    Reply::new(
        404,
        HTML,
        django_html(
            "Not Found",
            "The requested resource was not found on this server.",
        ),
    )
}

fn throttled(retry_after: &str) -> Reply {
    let detail = match retry_after.trim().parse::<u64>() {
        Ok(n) => format!(
            "Request was throttled. Expected available in {n} second{}.",
            if n == 1 { "" } else { "s" }
        ),
        Err(_) => "Request was throttled.".to_owned(),
    };
    Reply::detail(429, &detail).header(header::RETRY_AFTER, retry_after)
}

/// How a request is served after the fault stage.
#[derive(Default)]
struct Mods {
    delay: Option<Duration>,
    truncate: bool,
    short: Option<Short>,
    fault: Option<String>,
}

enum Short {
    Rows(usize),
    /// A random short page: `1 + draw % (limit - 1)` rows.
    Random(u64),
}

enum Pre {
    Reply(Reply, String),
    Serve(Mods),
}

/// The axum fallback handler: every method and path comes here.
pub(crate) async fn handle(AxState(shared): AxState<Arc<Shared>>, req: Request) -> Response {
    let seq = shared.seq.fetch_add(1, Ordering::Relaxed) + 1;
    let inc = Incoming::from_request(seq, &req);
    drop(req);
    let pre = shared.lock().pre_action();
    let mods = match pre {
        Pre::Reply(reply, fault) => {
            shared.lock().record(&inc, &reply, Some(fault));
            return reply.into_response();
        }
        Pre::Serve(mods) => mods,
    };
    if let Some(d) = mods.delay {
        tokio::time::sleep(d).await;
    }
    let sh = shared.clone();
    let work = tokio::task::spawn_blocking(move || {
        let reply = std::panic::catch_unwind(AssertUnwindSafe(|| sh.lock().serve(&inc, &mods)))
            .unwrap_or_else(|_| server_error());
        sh.lock().record(&inc, &reply, mods.fault);
        reply
    });
    match work.await {
        Ok(reply) => reply.into_response(),
        Err(_) => server_error().into_response(),
    }
}

impl State {
    fn record(&mut self, inc: &Incoming, reply: &Reply, fault: Option<String>) {
        self.counted += 1;
        if !self.knobs.record_requests {
            return;
        }
        self.log.push(RecordedRequest {
            seq: inc.seq,
            method: inc.method.to_string(),
            path: inc.path.clone(),
            raw_query: inc.raw_query.clone(),
            query: inc.query.clone(),
            authorization: inc.authorization.clone(),
            host: inc.host.clone(),
            status: reply.status,
            results: reply.results,
            fault,
            accept_encoding: inc.accept_encoding.clone(),
            gzipped: reply.gzipped,
            received_at: inc.received_at,
        });
    }

    /// Consumes a scripted fault, or draws a random one.
    fn pre_action(&mut self) -> Pre {
        if let Some(f) = self.faults.pop_front() {
            let desc = format!("{f:?}");
            let reply = match f {
                Fault::Status {
                    status,
                    body,
                    content_type,
                } => Reply::new(status, content_type, body.into_bytes()),
                Fault::TooManyRequests { retry_after } => throttled(&retry_after),
                Fault::ServiceUnavailable { retry_after } => {
                    let r = Reply::new(503, HTML, lb_html(503).into_bytes());
                    match retry_after {
                        Some(ra) => r.header(header::RETRY_AFTER, ra),
                        None => r,
                    }
                }
                Fault::InvalidJson => Reply::new(200, JSON, b"<html>oops</html>".to_vec()),
                Fault::Redirect { location } => {
                    Reply::new(302, HTML, Vec::new()).header(header::LOCATION, location)
                }
                Fault::TruncatedBody => {
                    return Pre::Serve(Mods {
                        truncate: true,
                        fault: Some(desc),
                        ..Mods::default()
                    });
                }
                Fault::Delay(d) => {
                    return Pre::Serve(Mods {
                        delay: Some(d),
                        fault: Some(desc),
                        ..Mods::default()
                    });
                }
                Fault::ShortPage { rows } => {
                    return Pre::Serve(Mods {
                        short: Some(Short::Rows(rows)),
                        fault: Some(desc),
                        ..Mods::default()
                    });
                }
            };
            return Pre::Reply(reply, desc);
        }
        let rate = self.knobs.random_fault_rate;
        if rate > 0.0 && self.rng.random::<f64>() < rate {
            let kind = self.rng.random_range(0..6u32);
            let reply = match kind {
                0 => server_error(),
                1..=3 => {
                    let status = [502, 503, 504][kind as usize - 1];
                    Reply::new(status, HTML, lb_html(status).into_bytes())
                }
                4 => throttled(if self.rng.random::<bool>() { "1" } else { "0" }),
                _ => {
                    return Pre::Serve(Mods {
                        truncate: true,
                        fault: Some("random TruncatedBody".to_owned()),
                        ..Mods::default()
                    });
                }
            };
            let desc = format!("random {}", reply.status);
            return Pre::Reply(reply, desc);
        }
        let rate = self.knobs.random_short_page_rate;
        if rate > 0.0 && self.rng.random::<f64>() < rate {
            return Pre::Serve(Mods {
                short: Some(Short::Random(self.rng.random())),
                fault: Some("random ShortPage".to_owned()),
                ..Mods::default()
            });
        }
        Pre::Serve(Mods::default())
    }

    /// Serves a request that passed the fault stage (the lock is held throughout).
    fn serve(&mut self, inc: &Incoming, mods: &Mods) -> Reply {
        let mut reply = self.serve_inner(inc, mods);
        if mods.truncate {
            let mut cut = reply.body.len() / 2;
            while cut > 0 && (reply.body[cut] & 0xC0) == 0x80 {
                cut -= 1; // keep it valid UTF-8: the JSON is cut, not the encoding
            }
            reply.body.truncate(cut);
        }
        if self.knobs.gzip && inc.accepts_gzip() {
            reply.body = gzip(&reply.body);
            reply.gzipped = true;
            reply
                .headers
                .push((header::CONTENT_ENCODING, "gzip".to_owned()));
        }
        reply
    }

    fn serve_inner(&mut self, inc: &Incoming, mods: &Mods) -> Reply {
        if inc.path != CUSTOMERS_PATH {
            return not_found_html();
        }
        if let Err(detail) = authenticate(inc.authorization.as_deref(), &self.knobs.token) {
            return Reply::detail(401, detail).header(header::WWW_AUTHENTICATE, "Token");
        }
        if self.knobs.forbidden {
            return Reply::detail(403, "You do not have permission to perform this action.");
        }
        if inc.method != Method::GET && inc.method != Method::HEAD {
            return Reply::detail(405, &format!("Method \"{}\" not allowed.", inc.method));
        }
        if let Some(hook) = self.hook.as_mut() {
            let _guard = CallbackGuard::enter();
            hook(inc.seq, &mut self.store);
        }
        let q = match parse_query(inc, &self.knobs) {
            Ok(q) => q,
            Err(QueryError::Invalid(errors)) => return Reply::drf(400, errors_json(&errors)),
            Err(QueryError::ServerError) => return server_error(),
        };
        let shuffle = self
            .knobs
            .shuffle_ties_per_request
            .then(|| self.rng.random::<u64>());
        self.store.ensure_indexes();
        let store = &self.store;
        let sel = select(store, &q.filters, q.sort);
        let count = sel.len();
        let num_pages = if count == 0 {
            1
        } else {
            count.div_ceil(q.limit) as u64
        };
        let page = match q.page {
            PageReq::Last => num_pages,
            PageReq::Number(n) if (1..=num_pages).contains(&n) => n,
            _ => return Reply::detail(404, "Invalid page."),
        };
        let offset = (page - 1) as usize * q.limit;
        let mut rows = q.limit.min(count - offset);
        match mods.short {
            Some(Short::Rows(n)) => rows = rows.min(n),
            Some(Short::Random(draw)) if q.limit > 1 => {
                rows = rows.min(1 + (draw % (q.limit as u64 - 1)) as usize)
            }
            _ => {}
        }
        let ids = page_ids(&sel, q.sort.desc, offset, rows, shuffle);

        let base = match &self.knobs.next_link_base {
            Some(b) => b.trim_end_matches('/').to_owned(),
            None => format!(
                "http://{}",
                inc.host.clone().unwrap_or_else(|| self.addr.to_string())
            ),
        };
        let next = (page < num_pages).then(|| page_link(&base, &inc.query, Some(page + 1)));
        let previous =
            (page > 1).then(|| page_link(&base, &inc.query, (page > 2).then_some(page - 1)));

        let mut body = Vec::with_capacity(128 + ids.len() * 360);
        body.extend_from_slice(b"{\"count\":");
        let shown_count = self.knobs.stale_count.map_or(count as i64, |c| c as i64);
        write_i64(&mut body, shown_count);
        body.extend_from_slice(b",\"next\":");
        write_opt_str(&mut body, next.as_deref());
        body.extend_from_slice(b",\"previous\":");
        write_opt_str(&mut body, previous.as_deref());
        body.extend_from_slice(b",\"results\":[");
        let offset_out = self.knobs.output_offset;
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            let c = store.get(*id).expect("indexed ids exist");
            write_customer(&mut body, c, offset_out);
        }
        body.extend_from_slice(b"]}");
        let mut reply = Reply::drf(200, body);
        reply.results = ids.len();
        reply
    }
}

/// Compresses a body as a gzip-coding web server would.
fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(body)
        .and_then(|()| enc.finish())
        .expect("writing to a Vec cannot fail")
}

/// DRF `TokenAuthentication` plus `IsAuthenticated`.
fn authenticate(header: Option<&str>, token: &str) -> Result<(), &'static str> {
    const NOT_PROVIDED: &str = "Authentication credentials were not provided.";
    let Some(h) = header else {
        return Err(NOT_PROVIDED);
    };
    let parts: Vec<&str> = h.split_ascii_whitespace().collect();
    match parts.as_slice() {
        [kw, ..] if !kw.eq_ignore_ascii_case("token") => Err(NOT_PROVIDED),
        [] => Err(NOT_PROVIDED),
        [_] => Err("Invalid token header. No credentials provided."),
        [_, t] => {
            if *t == token {
                Ok(())
            } else {
                Err("Invalid token.")
            }
        }
        _ => Err("Invalid token header. Token string should not contain spaces."),
    }
}

// ---------------------------------------------------------------------------------------------
// Query parsing

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SortKey {
    Id,
    Md,
}

#[derive(Debug, Clone, Copy)]
struct Sort {
    key: SortKey,
    desc: bool,
}

#[derive(Debug)]
enum PageReq {
    Number(u64),
    Last,
    Invalid,
}

#[derive(Debug, Clone, Copy)]
enum EqField {
    FirstName,
    LastName,
    Email,
    Phone,
    Erp,
}

#[derive(Debug)]
struct Filters {
    /// Inclusive id bounds.
    id_lo: i64,
    id_hi: i64,
    has_id: bool,
    /// Inclusive `modified_date` bounds in microseconds.
    md_lo: i64,
    md_hi: i64,
    has_md: bool,
    eq: Vec<(EqField, String)>,
    channel: Option<i64>,
}

/// No filter: every id and every `modified_date`.
impl Default for Filters {
    fn default() -> Self {
        Filters {
            id_lo: i64::MIN,
            id_hi: i64::MAX,
            has_id: false,
            md_lo: i64::MIN,
            md_hi: i64::MAX,
            has_md: false,
            eq: Vec::new(),
            channel: None,
        }
    }
}

impl Filters {
    fn needs_row(&self) -> bool {
        !self.eq.is_empty() || self.channel.is_some()
    }

    fn row_matches(&self, c: &FakeCustomer) -> bool {
        if self.channel.is_some() && c.channel != self.channel {
            return false;
        }
        self.eq.iter().all(|(f, v)| {
            let field = match f {
                EqField::FirstName => &c.first_name,
                EqField::LastName => &c.last_name,
                EqField::Email => &c.email,
                EqField::Phone => &c.phone_number,
                EqField::Erp => &c.erp_code,
            };
            field.as_deref() == Some(v.as_str())
        })
    }

    fn md_ok(&self, micros: i64) -> bool {
        (self.md_lo..=self.md_hi).contains(&micros)
    }

    fn id_ok(&self, id: i64) -> bool {
        (self.id_lo..=self.id_hi).contains(&id)
    }
}

struct Query {
    limit: usize,
    page: PageReq,
    sort: Sort,
    filters: Filters,
}

enum QueryError {
    /// Form errors in field order: 400.
    Invalid(Vec<(&'static str, String)>),
    /// What Django does with `channel_id=abc` (a `ValueError` in the ORM): 500.
    ServerError,
}

/// Python's `int(str)`: surrounding whitespace, a sign, digits with single `_` between them.
/// Saturates at the i128 range.
fn py_int(s: &str) -> Option<i128> {
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
fn parse_number(s: &str) -> Option<f64> {
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

fn clamp_i64(v: f64) -> i64 {
    // `as` saturates at the i64 range.
    v as i64
}

fn parse_query(inc: &Incoming, knobs: &Knobs) -> Result<Query, QueryError> {
    let non_empty = |k: &str| inc.param(k).filter(|v| !v.trim().is_empty());
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
    for (name, field) in [
        ("first_name", EqField::FirstName),
        ("last_name", EqField::LastName),
        ("email", EqField::Email),
        ("phone_number", EqField::Phone),
        ("erp_code", EqField::Erp),
    ] {
        if let Some(v) = non_empty(name) {
            f.eq.push((field, v.trim().to_owned()));
        }
    }
    let mut channel_bad = false;
    if let Some(v) = non_empty("channel_id") {
        match py_int(v) {
            Some(n) => f.channel = Some(i64::try_from(n).unwrap_or(i64::MAX)),
            None => channel_bad = true,
        }
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
    if channel_bad {
        return Err(QueryError::ServerError);
    }
    Ok(Query {
        limit,
        page,
        sort,
        filters: f,
    })
}

fn errors_json(errors: &[(&'static str, String)]) -> Vec<u8> {
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

// ---------------------------------------------------------------------------------------------
// Selection

/// The filtered rows in ascending sort order.
enum Sel<'a> {
    Ids(Cow<'a, [i64]>),
    Mds(Cow<'a, [MdKey]>),
}

impl Sel<'_> {
    fn len(&self) -> usize {
        match self {
            Sel::Ids(v) => v.len(),
            Sel::Mds(v) => v.len(),
        }
    }
}

/// O(log n) when only the sort key is filtered on; otherwise a scan of the smaller of the id
/// and `modified_date` ranges (and a sort when that is not the sort key's index).
fn select<'a>(store: &'a Store, f: &Filters, sort: Sort) -> Sel<'a> {
    let ids = store.id_index();
    let mds = store.md_index();
    let id_rng: &[i64] = if f.id_lo > f.id_hi {
        &[]
    } else {
        &ids[ids.partition_point(|&x| x < f.id_lo)..ids.partition_point(|&x| x <= f.id_hi)]
    };
    let md_rng: &[MdKey] = if f.md_lo > f.md_hi {
        &[]
    } else {
        &mds[mds.partition_point(|k| k.micros < f.md_lo)
            ..mds.partition_point(|k| k.micros <= f.md_hi)]
    };
    let row_ok = |id: i64| !f.needs_row() || store.get(id).is_some_and(|c| f.row_matches(c));
    match sort.key {
        SortKey::Id => {
            if !f.has_md && !f.needs_row() {
                return Sel::Ids(Cow::Borrowed(id_rng));
            }
            if id_rng.len() <= md_rng.len() {
                let v = id_rng
                    .iter()
                    .copied()
                    .filter(|&id| {
                        store.get(id).is_some_and(|c| {
                            f.md_ok(c.modified_date.timestamp_micros())
                                && (!f.needs_row() || f.row_matches(c))
                        })
                    })
                    .collect();
                Sel::Ids(Cow::Owned(v))
            } else {
                let mut v: Vec<i64> = md_rng
                    .iter()
                    .filter(|k| f.id_ok(k.id) && row_ok(k.id))
                    .map(|k| k.id)
                    .collect();
                v.sort_unstable();
                Sel::Ids(Cow::Owned(v))
            }
        }
        SortKey::Md => {
            if !f.has_id && !f.needs_row() {
                return Sel::Mds(Cow::Borrowed(md_rng));
            }
            if md_rng.len() <= id_rng.len() {
                let v = md_rng
                    .iter()
                    .filter(|k| f.id_ok(k.id) && row_ok(k.id))
                    .copied()
                    .collect();
                Sel::Mds(Cow::Owned(v))
            } else {
                let mut v: Vec<MdKey> = id_rng
                    .iter()
                    .filter_map(|&id| store.get(id))
                    .filter(|c| {
                        f.md_ok(c.modified_date.timestamp_micros())
                            && (!f.needs_row() || f.row_matches(c))
                    })
                    .map(MdKey::of)
                    .collect();
                v.sort_unstable();
                Sel::Mds(Cow::Owned(v))
            }
        }
    }
}

/// The ids at output positions `offset..offset + n`. With `shuffle`, rows with equal
/// `modified_date` are re-scrambled with that seed (only the tie groups the page touches are
/// re-sorted, so this stays O(page + tie group)).
fn page_ids(sel: &Sel<'_>, desc: bool, offset: usize, n: usize, shuffle: Option<u64>) -> Vec<i64> {
    let len = sel.len();
    if n == 0 || offset >= len {
        return Vec::new();
    }
    let n = n.min(len - offset);
    // The window in ascending positions.
    let (a, b) = if desc {
        (len - offset - n, len - offset)
    } else {
        (offset, offset + n)
    };
    let mut out: Vec<i64> = match (sel, shuffle) {
        (Sel::Ids(v), _) => v[a..b].to_vec(),
        (Sel::Mds(v), None) => v[a..b].iter().map(|k| k.id).collect(),
        (Sel::Mds(v), Some(seed)) => {
            let lo_m = v[a].micros;
            let hi_m = v[b - 1].micros;
            let ea = v.partition_point(|k| k.micros < lo_m);
            let eb = v.partition_point(|k| k.micros <= hi_m);
            let mut w: Vec<(i64, u64, i64)> = v[ea..eb]
                .iter()
                .map(|k| (k.micros, mix64(k.id as u64 ^ seed), k.id))
                .collect();
            w.sort_unstable();
            w[a - ea..b - ea].iter().map(|k| k.2).collect()
        }
    };
    if desc {
        out.reverse();
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Links

/// DRF's `replace_query_param` / `remove_query_param` on the absolute URI of the request.
fn page_link(base: &str, query: &[(String, String)], page: Option<u64>) -> String {
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
    let mut url = String::with_capacity(base.len() + CUSTOMERS_PATH.len() + 64);
    url.push_str(base);
    url.push_str(CUSTOMERS_PATH);
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
fn quote_plus(out: &mut String, s: &str) {
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

// ---------------------------------------------------------------------------------------------
// JSON writing

/// Writes one customer as DRF would (`raw_override` verbatim if set).
pub(crate) fn write_customer(buf: &mut Vec<u8>, c: &FakeCustomer, offset: Option<FixedOffset>) {
    if let Some(raw) = &c.raw_override {
        serde_json::to_writer(&mut *buf, raw).expect("writing to a Vec cannot fail");
        return;
    }
    let ex = &c.extra;
    let overridden = |buf: &mut Vec<u8>, key: &[u8], name: &str| -> bool {
        buf.extend_from_slice(key);
        if ex.is_empty() {
            return false;
        }
        match ex.get(name) {
            Some(v) => {
                serde_json::to_writer(&mut *buf, v).expect("writing to a Vec cannot fail");
                true
            }
            None => false,
        }
    };
    if !overridden(buf, b"{\"id\":", "id") {
        write_i64(buf, c.id);
    }
    if !overridden(buf, b",\"created_date\":", "created_date") {
        buf.push(b'"');
        write_drf_datetime(buf, c.created_date, offset);
        buf.push(b'"');
    }
    if !overridden(buf, b",\"modified_date\":", "modified_date") {
        buf.push(b'"');
        write_drf_datetime(buf, c.modified_date, offset);
        buf.push(b'"');
    }
    if !overridden(buf, b",\"omnitron_id\":", "omnitron_id") {
        write_opt_i64(buf, c.omnitron_id);
    }
    if !overridden(buf, b",\"email\":", "email") {
        write_opt_str(buf, c.email.as_deref());
    }
    if !overridden(buf, b",\"first_name\":", "first_name") {
        write_opt_str(buf, c.first_name.as_deref());
    }
    if !overridden(buf, b",\"last_name\":", "last_name") {
        write_opt_str(buf, c.last_name.as_deref());
    }
    if !overridden(buf, b",\"phone_number\":", "phone_number") {
        write_opt_str(buf, c.phone_number.as_deref());
    }
    if !overridden(buf, b",\"erp_code\":", "erp_code") {
        write_opt_str(buf, c.erp_code.as_deref());
    }
    if !overridden(buf, b",\"channel\":", "channel") {
        write_opt_i64(buf, c.channel);
    }
    for (k, v) in ex {
        if STANDARD_FIELDS.contains(&k.as_str()) {
            continue;
        }
        buf.push(b',');
        write_json_str(buf, k);
        buf.push(b':');
        serde_json::to_writer(&mut *buf, v).expect("writing to a Vec cannot fail");
    }
    buf.push(b'}');
}

const STANDARD_FIELDS: [&str; 10] = [
    "id",
    "created_date",
    "modified_date",
    "omnitron_id",
    "email",
    "first_name",
    "last_name",
    "phone_number",
    "erp_code",
    "channel",
];

fn write_i64(buf: &mut Vec<u8>, v: i64) {
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

fn write_opt_i64(buf: &mut Vec<u8>, v: Option<i64>) {
    match v {
        Some(v) => write_i64(buf, v),
        None => buf.extend_from_slice(b"null"),
    }
}

fn write_opt_str(buf: &mut Vec<u8>, v: Option<&str>) {
    match v {
        Some(s) => write_json_str(buf, s),
        None => buf.extend_from_slice(b"null"),
    }
}

/// A JSON string as Python's `json.dumps(ensure_ascii=False)` writes it, plus DRF's escaping
/// of U+2028/U+2029.
fn write_json_str(buf: &mut Vec<u8>, s: &str) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn js(s: &str) -> String {
        let mut b = Vec::new();
        write_json_str(&mut b, s);
        String::from_utf8(b).unwrap()
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
    fn ints() {
        for v in [0, 7, -7, 1234567890, i64::MIN, i64::MAX] {
            let mut b = Vec::new();
            write_i64(&mut b, v);
            assert_eq!(String::from_utf8(b).unwrap(), v.to_string());
        }
    }

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
            page_link("http://h:1", &q, Some(3)),
            "http://h:1/api/v1/oms/customers/list-simple/?limit=2&\
             modified_date__gt=2023-10-06T08%3A42%3A53%2B03%3A00&page=3&sort=modified_date&x=a+b"
        );
        assert_eq!(
            page_link("http://h:1", &q[2..4], None),
            "http://h:1/api/v1/oms/customers/list-simple/?limit=2"
        );
        assert_eq!(
            page_link("http://h:1", &[], None),
            "http://h:1/api/v1/oms/customers/list-simple/"
        );
    }

    /// `select` + `page_ids` against a brute-force model, over random stores full of ties.
    #[test]
    fn selection_matches_a_naive_model() {
        use super::super::store::tie_hash;
        use chrono::{TimeDelta, TimeZone, Utc};
        use rand::seq::SliceRandom;

        let mut rng = StdRng::seed_from_u64(99);
        let t0 = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        for round in 0..400 {
            let mut ids: Vec<i64> = (1..120).collect();
            ids.shuffle(&mut rng);
            let n = rng.random_range(0..60);
            let mut store = Store::new();
            for &id in &ids[..n] {
                let mut c = FakeCustomer::new(id, t0 + TimeDelta::seconds(rng.random_range(0..8)));
                c.channel = Some(rng.random_range(1..=2));
                store.upsert(c);
            }
            if round % 3 == 0 && n > 0 {
                store.remove(ids[0]);
                store.touch(ids[n - 1], t0 + TimeDelta::seconds(rng.random_range(0..8)));
            }
            store.ensure_indexes();
            let mut f = Filters::default();
            let micros = |s: i64| (t0 + TimeDelta::seconds(s)).timestamp_micros();
            if rng.random_bool(0.5) {
                f.has_id = true;
                f.id_lo = rng.random_range(0..100);
                f.id_hi = rng.random_range(f.id_lo - 5..130);
            }
            if rng.random_bool(0.5) {
                f.has_md = true;
                f.md_lo = micros(rng.random_range(-1..8));
                f.md_hi = micros(rng.random_range(0..9));
            }
            if rng.random_bool(0.3) {
                f.channel = Some(1);
            }
            let expect_set: Vec<&FakeCustomer> = store
                .all()
                .filter(|c| {
                    f.id_ok(c.id) && f.md_ok(c.modified_date.timestamp_micros()) && f.row_matches(c)
                })
                .collect();
            for (key, desc) in [
                (SortKey::Id, false),
                (SortKey::Id, true),
                (SortKey::Md, false),
                (SortKey::Md, true),
            ] {
                let mut expect: Vec<&FakeCustomer> = expect_set.clone();
                match key {
                    SortKey::Id => expect.sort_by_key(|c| c.id),
                    SortKey::Md => expect.sort_by_key(|c| {
                        (c.modified_date.timestamp_micros(), tie_hash(c.id), c.id)
                    }),
                }
                if desc {
                    expect.reverse();
                }
                let expect: Vec<i64> = expect.iter().map(|c| c.id).collect();
                let sel = select(&store, &f, Sort { key, desc });
                assert_eq!(sel.len(), expect.len());
                let limit = rng.random_range(1..8);
                for shuffle in [None, Some(rng.random::<u64>())] {
                    let mut got = Vec::new();
                    let mut off = 0;
                    while off < sel.len() {
                        got.extend(page_ids(&sel, desc, off, limit, shuffle));
                        off += limit;
                    }
                    if shuffle.is_none() || key == SortKey::Id {
                        assert_eq!(got, expect, "round {round} {key:?} desc={desc}");
                    } else {
                        let mut a = got.clone();
                        a.sort();
                        let mut b = expect.clone();
                        b.sort();
                        assert_eq!(a, b, "same rows once each");
                        let md = |id: &i64| store.get(*id).unwrap().modified_date;
                        let mds: Vec<_> = got.iter().map(md).collect();
                        let want: Vec<_> = expect.iter().map(md).collect();
                        assert_eq!(mds, want, "only ties move");
                    }
                }
            }
        }
    }

    #[test]
    fn auth_header_forms() {
        assert_eq!(authenticate(Some("Token abc"), "abc"), Ok(()));
        assert_eq!(authenticate(Some("token  abc "), "abc"), Ok(()));
        assert_eq!(
            authenticate(Some("Token abd"), "abc"),
            Err("Invalid token.")
        );
        assert_eq!(
            authenticate(None, "abc"),
            Err("Authentication credentials were not provided.")
        );
        assert_eq!(
            authenticate(Some("Bearer abc"), "abc"),
            Err("Authentication credentials were not provided.")
        );
        assert!(authenticate(Some("Token"), "abc").is_err());
        assert!(authenticate(Some("Token a b"), "abc").is_err());
    }
}
