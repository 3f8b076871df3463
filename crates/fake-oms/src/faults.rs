//! Faults: the scripted ones a test pushes ([`Fault`], consumed one per request in push order)
//! and the random ones drawn from `Knobs::random_fault_rate` / `random_short_page_rate`. The
//! fault stage runs before anything else and decides whether a request gets a canned answer
//! ([`Pre::Reply`]) or is served with modifications ([`Mods`]: delay, truncation, short page).

use std::time::Duration;

use axum::http::header;
use rand::Rng;

use super::reply::{HTML, JSON, Reply, lb_html, server_error, throttled};
use super::server::State;

/// A scripted fault, consumed by the next request (in push order).
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer with this status, body and `Content-Type`.
    Status {
        status: u16,
        body: String,
        content_type: String,
    },
    /// 429 with `Retry-After: <retry_after>` and DRF's throttled detail.
    TooManyRequests { retry_after: String },
    /// 503 with a load balancer's HTML page and an optional `Retry-After`.
    ServiceUnavailable { retry_after: Option<String> },
    /// Serve normally, then cut the body in half (Content-Length matches the cut body).
    TruncatedBody,
    /// 200, `Content-Type: application/json`, body `<html>oops</html>`.
    InvalidJson,
    /// Sleep, then serve normally.
    Delay(Duration),
    /// 302 to `location`.
    Redirect { location: String },
    /// Serve at most `rows` results; `count`, `next` and `previous` stay correct.
    ShortPage { rows: usize },
}

impl Fault {
    /// `status` with a load balancer's (nginx) HTML page, e.g. `Fault::html(502)`.
    pub fn html(status: u16) -> Fault {
        Fault::Status {
            status,
            body: lb_html(status),
            content_type: "text/html".to_owned(),
        }
    }

    /// `status` with a JSON body.
    pub fn json(status: u16, body: impl Into<String>) -> Fault {
        Fault::Status {
            status,
            body: body.into(),
            content_type: "application/json".to_owned(),
        }
    }
}

/// How a request is served after the fault stage.
#[derive(Default)]
pub(super) struct Mods {
    pub(super) delay: Option<Duration>,
    pub(super) truncate: bool,
    pub(super) short: Option<Short>,
    pub(super) fault: Option<String>,
}

pub(super) enum Short {
    Rows(usize),
    /// A random short page: `1 + draw % (limit - 1)` rows.
    Random(u64),
}

pub(super) enum Pre {
    Reply(Reply, String),
    Serve(Mods),
}

impl State {
    /// Consumes a scripted fault, or draws a random one.
    pub(super) fn pre_action(&mut self) -> Pre {
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
}
