//! One page of one route: the query parsed against the route's [`Resource`], the selection,
//! DRF's pagination (`count`, `next`, `previous`, `Invalid page.`) and the page's JSON. Generic
//! over the store's rows, so customers and every described resource behave the same.

use std::net::SocketAddr;

use rand::Rng;
use rand::rngs::StdRng;

use super::Knobs;
use super::faults::{Mods, Short};
use super::json::{errors_json, write_page};
use super::links::page_link;
use super::query::{Incoming, PageReq, QueryError, parse_query};
use super::reply::{Reply, server_error};
use super::select::{page_ids, select};
use super::store::{Row, Store};

/// What serving a page needs besides the store.
pub(crate) struct PageCtx<'a> {
    pub(crate) inc: &'a Incoming,
    pub(crate) knobs: &'a Knobs,
    /// Draws the per-request tie shuffle (`Knobs::shuffle_ties_per_request`).
    pub(crate) rng: &'a mut StdRng,
    pub(crate) mods: &'a Mods,
    /// The server's address, for `next`/`previous` when the request had no `Host`.
    pub(crate) addr: SocketAddr,
}

pub(crate) fn serve_page<R: Row>(store: &mut Store<R>, cx: PageCtx<'_>) -> Reply {
    let PageCtx {
        inc,
        knobs,
        rng,
        mods,
        addr,
    } = cx;
    let q = match parse_query(inc, knobs, store.resource()) {
        Ok(q) => q,
        Err(QueryError::Invalid(errors)) => return Reply::drf(400, errors_json(&errors)),
        Err(QueryError::ServerError) => return server_error(),
    };
    let shuffle = knobs.shuffle_ties_per_request.then(|| rng.random::<u64>());
    store.ensure_indexes();
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

    let base = match &knobs.next_link_base {
        Some(b) => b.trim_end_matches('/').to_owned(),
        None => format!(
            "http://{}",
            inc.host.clone().unwrap_or_else(|| addr.to_string())
        ),
    };
    let path = store.resource().path;
    let next = (page < num_pages).then(|| page_link(&base, path, &inc.query, Some(page + 1)));
    let previous =
        (page > 1).then(|| page_link(&base, path, &inc.query, (page > 2).then_some(page - 1)));

    let shown_count = knobs.stale_count.map_or(count as i64, |c| c as i64);
    let body = write_page(
        shown_count,
        next.as_deref(),
        previous.as_deref(),
        store,
        &ids,
        knobs.output_offset,
    );
    let mut reply = Reply::drf(200, body);
    reply.results = ids.len();
    reply
}
