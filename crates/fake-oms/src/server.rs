//! The request pipeline and the state it shares: one axum fallback handler that numbers and
//! logs every request, runs the fault stage, authenticates, runs the before-request hook, parses
//! the query, selects the page and writes it. The steps live in their own modules (`faults`,
//! `auth`, `query`, `select`, `links`, `json`, `reply`); this file only orders them and owns the
//! locking.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::extract::{Request, State as AxState};
use axum::http::{Method, header};
use axum::response::Response;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::auth::authenticate;
use super::faults::{Mods, Pre, Short};
use super::json::{errors_json, write_page};
use super::links::page_link;
use super::query::{Incoming, PageReq, QueryError, parse_query};
use super::reply::{Reply, gzip, not_found_html, server_error};
use super::select::{page_ids, select};
use super::store::Store;
use super::throttle::Throttle;
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
    /// Draws `Knobs::latency_jitter`; separate from `rng` so that turning latency on does not
    /// change the seeded sequence of random faults.
    pub jitter_rng: StdRng,
    /// The request log of `Knobs::throttle_per_second`, built on first use.
    pub throttle: Option<Throttle>,
    /// Requests let through the throttle (all of them while it is off), since start or the
    /// last `clear_requests`.
    pub served: u64,
    /// Requests the throttle answered with 429, since start or the last `clear_requests`.
    pub throttled: u64,
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
                jitter_rng: StdRng::seed_from_u64(seed ^ 0x1a7e_4c11),
                throttle: None,
                served: 0,
                throttled: 0,
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

/// The axum fallback handler: every method and path comes here.
pub(crate) async fn handle(AxState(shared): AxState<Arc<Shared>>, req: Request) -> Response {
    let seq = shared.seq.fetch_add(1, Ordering::Relaxed) + 1;
    let inc = Incoming::from_request(seq, &req);
    drop(req);
    // The network first, then the gateway's throttle, then the application (faults and on).
    let latency = shared.lock().latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let pre = {
        let mut st = shared.lock();
        match st.throttle(tokio::time::Instant::now()) {
            Some(reply) => Pre::Reply(reply, "throttled".to_owned()),
            None => st.pre_action(),
        }
    };
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
        let sel = select(&self.store, &q.filters, q.sort);
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

        let shown_count = self.knobs.stale_count.map_or(count as i64, |c| c as i64);
        let body = write_page(
            shown_count,
            next.as_deref(),
            previous.as_deref(),
            &mut self.store,
            &ids,
            self.knobs.output_offset,
        );
        let mut reply = Reply::drf(200, body);
        reply.results = ids.len();
        reply
    }
}
