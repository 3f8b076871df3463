//! The request pipeline and the state it shares: one axum fallback handler that numbers and
//! logs every request, runs the fault stage, finds the route, authenticates, runs the
//! before-request hook, then serves a page of the route. The steps live in their own modules
//! (`throttle`, `faults`, `auth`, `stores`, `page` and what it uses); this file only orders them
//! and owns the locking.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::extract::{Request, State as AxState};
use axum::http::{Method, header};
use axum::response::Response;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::auth::authenticate;
use super::faults::{Mods, Pre};
use super::options::options_reply;
use super::page::PageCtx;
use super::query::Incoming;
use super::reply::{Reply, gzip, not_found_html, server_error};
use super::stores::Stores;
use super::throttle::Throttle;
use super::{Fault, Knobs, RecordedRequest};

/// The hook run at the start of every authorized request, with every store.
pub(crate) type AnyHook = Box<dyn FnMut(u64, &mut Stores) + Send>;

pub(crate) struct Shared {
    state: Mutex<State>,
    seq: AtomicU64,
}

pub(crate) struct State {
    pub stores: Stores,
    pub knobs: Knobs,
    pub faults: VecDeque<Fault>,
    pub rng: StdRng,
    pub log: Vec<RecordedRequest>,
    /// Requests completed since the last `clear_requests`.
    pub counted: u64,
    pub hook: Option<AnyHook>,
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
    pub(crate) fn new(stores: Stores, knobs: Knobs, seed: u64, addr: SocketAddr) -> Shared {
        Shared {
            state: Mutex::new(State {
                stores,
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
        if !self.stores.serves(&inc.path) {
            return not_found_html();
        }
        if let Err(detail) = authenticate(inc.authorization.as_deref(), &self.knobs.token) {
            return Reply::detail(401, detail).header(header::WWW_AUTHENTICATE, "Token");
        }
        if self.knobs.forbidden || self.knobs.forbidden_paths.contains(&inc.path) {
            return Reply::detail(403, "You do not have permission to perform this action.");
        }
        if inc.method == Method::OPTIONS
            && let Some(resource) = self.stores.resource(&inc.path)
        {
            return options_reply(resource, &self.knobs);
        }
        if inc.method != Method::GET && inc.method != Method::HEAD {
            return Reply::detail(405, &format!("Method \"{}\" not allowed.", inc.method));
        }
        if let Some(hook) = self.hook.as_mut() {
            let _guard = CallbackGuard::enter();
            hook(inc.seq, &mut self.stores);
        }
        let cx = PageCtx {
            inc,
            knobs: &self.knobs,
            rng: &mut self.rng,
            mods,
            addr: self.addr,
        };
        // Stores only add or replace routes (a hook cannot remove one): found as above.
        self.stores
            .serve(&inc.path, cx)
            .unwrap_or_else(not_found_html)
    }
}
