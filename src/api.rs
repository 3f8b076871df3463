//! HTTP client for OMS list endpoints.
//!
//! It only ever requests `base_url + Resource::PATH` with query parameters it built itself: it
//! never follows `next` links nor redirects, so the token goes to the configured origin only.
//! Transient faults (timeouts, resets, 5xx, 429, cut or non-JSON bodies) are retried with
//! jittered exponential backoff capped at `api.retry_max_delay` ([`backoff`], driven by
//! [`backon`]), honouring `Retry-After`; 400/401/403 are not.
//! Every attempt first passes the client's shared [`RateLimiter`] (`limit`), which learns a
//! throttling server's limit from its 429s and spaces every range under it; a 429 waits no
//! longer than the limiter holds every request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::Retryable;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use serde::Deserialize;
use serde_json::value::RawValue;
use url::Url;

use crate::config::{ApiConfig, Secret};
use crate::resource::{BadRecord, Keyed, Resource};

mod backoff;
mod error;
mod limit;
mod options;
pub use backoff::RetryBackoff;
pub use error::{ApiError, endpoint_of, root_cause, transport_error};
pub use limit::{Outcome, Permit, RateLimiter, throttle_hint};
pub use options::OptionsAnswer;

/// Longest `Retry-After` we obey; a server asking for more is treated as down for now.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const BODY_SNIPPET: usize = 200;

/// Query parameters of one list request, in the order they are sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery(pub Vec<(&'static str, String)>);

impl ListQuery {
    pub fn new() -> Self {
        ListQuery(Vec::new())
    }
    pub fn with(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.0.push((key, value.into()));
        self
    }
}

/// One parsed page. Records keep the server's order.
#[derive(Debug, PartialEq)]
pub struct Page<T> {
    /// The server's `count` for the whole query (a hint: it can change between requests).
    pub count: u64,
    /// Elements in `results`, good and bad.
    pub len: usize,
    pub records: Vec<T>,
    pub bad: Vec<BadRecord>,
    /// Keyset fields of the last element (in server order) whose keys could be read.
    pub last_id: Option<i64>,
    pub last_modified: Option<String>,
    /// Largest readable id in the page.
    pub max_id: Option<i64>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    count: u64,
    #[serde(borrow)]
    results: Vec<&'a RawValue>,
}

/// The envelope with every element read by [`Resource::read`] in the same pass.
#[derive(Deserialize)]
#[serde(bound = "")]
struct Whole<R: Resource> {
    count: u64,
    results: Vec<Read<R>>,
}

/// One element of `results` as [`Resource::read`] reads it.
struct Read<R: Resource>(R::Record);

impl<'de, R: Resource> Deserialize<'de> for Read<R> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        R::read(d).map(Read)
    }
}

/// Parses a response body; a bad record becomes a [`BadRecord`], a bad envelope an error.
///
/// A page whose elements all parse (nearly every page) is read in one pass. Otherwise the
/// body is read again by [`parse_page_by_element`], which keeps each element's text to parse
/// it alone, so that a bad one is quarantined and the rest stored; it also gives the error
/// for a bad envelope.
pub fn parse_page<R: Resource>(body: &[u8]) -> Result<Page<R::Record>, String> {
    // UTF-8 is checked once for the whole body, not string by string as `from_slice` does.
    match std::str::from_utf8(body).map(serde_json::from_str::<Whole<R>>) {
        Ok(Ok(whole)) => {
            let mut page = Pager::new(whole.count, whole.results.len());
            for Read(rec) in whole.results {
                page.push(Ok(rec));
            }
            Ok(page.finish())
        }
        _ => parse_page_by_element::<R>(body),
    }
}

/// [`parse_page`] without the one-pass path: each element of `results` is kept as text and
/// parsed alone with [`Resource::parse`].
pub fn parse_page_by_element<R: Resource>(body: &[u8]) -> Result<Page<R::Record>, String> {
    let env: Envelope<'_> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut page = Pager::new(env.count, env.results.len());
    for raw in env.results {
        page.push(R::parse(raw));
    }
    Ok(page.finish())
}

/// Builds a [`Page`] element by element in server order.
struct Pager<T> {
    page: Page<T>,
    /// Where the last readable `modified_date` is (copied once, in `finish`).
    last_modified: Option<Last>,
}

enum Last {
    Record(usize),
    Bad(usize),
}

impl<T: Keyed> Pager<T> {
    fn new(count: u64, len: usize) -> Self {
        let page = Page {
            count,
            len,
            records: Vec::with_capacity(len),
            bad: Vec::new(),
            last_id: None,
            last_modified: None,
            max_id: None,
        };
        Pager {
            page,
            last_modified: None,
        }
    }

    /// Adds the next element and moves the keyset fields past it.
    fn push(&mut self, element: Result<T, BadRecord>) {
        let page = &mut self.page;
        let id = match element {
            Ok(rec) => {
                self.last_modified = Some(Last::Record(page.records.len()));
                let id = rec.id();
                page.records.push(rec);
                Some(id)
            }
            Err(bad) => {
                if bad.modified_date.is_some() {
                    self.last_modified = Some(Last::Bad(page.bad.len()));
                }
                let id = bad.id;
                page.bad.push(bad);
                id
            }
        };
        if let Some(id) = id {
            page.max_id = Some(page.max_id.map_or(id, |m| m.max(id)));
            page.last_id = Some(id);
        }
    }

    fn finish(mut self) -> Page<T> {
        let page = &mut self.page;
        page.last_modified = match self.last_modified {
            Some(Last::Record(i)) => page.records.get(i).map(|r| r.modified_date().to_string()),
            Some(Last::Bad(i)) => page.bad.get(i).and_then(|b| b.modified_date.clone()),
            None => None,
        };
        self.page
    }
}

/// Observes each HTTP attempt (for metrics); `status` is None on a transport error.
pub type RequestObserver = Arc<dyn Fn(Option<u16>, Duration) + Send + Sync>;

#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: Url,
    token: Secret,
    backoff: RetryBackoff,
    /// Shared by every clone: all ranges of a backfill slow down together on a 429.
    limiter: Arc<RateLimiter>,
    observer: Option<RequestObserver>,
    max_retries: u32,
    /// Per-attempt timeout, for the announced retry bound.
    timeout: Duration,
}

impl ApiClient {
    pub fn new(cfg: &ApiConfig) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("oms-sync/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT.min(cfg.timeout))
            // A stalled body (no bytes for this long) fails fast even under a long total timeout.
            .read_timeout(cfg.timeout)
            .timeout(cfg.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .gzip(true)
            .build()
            .map_err(|e| ApiError::Transport {
                url: cfg.base_url.to_string(),
                endpoint: endpoint_of(&cfg.base_url),
                cause: format!("cannot build the HTTP client: {e}"),
            })?;
        let backoff = RetryBackoff::new(cfg);
        let limiter = Arc::new(RateLimiter::new(cfg.max_requests_per_second));
        Ok(ApiClient {
            http,
            base: cfg.base_url.clone(),
            token: cfg.token.clone(),
            backoff,
            limiter,
            observer: None,
            max_retries: cfg.max_retries,
            timeout: cfg.timeout,
        })
    }

    pub fn set_observer(&mut self, observer: RequestObserver) {
        self.observer = Some(observer);
    }

    /// The rate limiter every clone shares (for the metrics: the limit in force).
    pub fn limiter(&self) -> Arc<RateLimiter> {
        self.limiter.clone()
    }

    /// Fetches and parses one page, retrying transient faults within the retry budget.
    pub async fn list<R: Resource>(&self, query: &ListQuery) -> Result<Page<R::Record>, ApiError> {
        let endpoint = endpoint_of(&self.base);
        let url = self.base.join(R::PATH).map_err(|e| ApiError::Transport {
            url: self.base.to_string(),
            endpoint: endpoint.clone(),
            cause: e.to_string(),
        })?;
        let started = Instant::now();
        let mut attempts = 0u32;
        let mut retried = false;
        let result = (|| {
            attempts += 1;
            self.attempt::<R>(&url, query)
        })
        .retry(self.backoff)
        .when(ApiError::is_retryable)
        // Retry-After replaces the backoff delay but never extends the budget: `dur` is None
        // once the retries are spent, and then so is the answer. A throttled request waits
        // no longer than the shared limiter holds every request: from its own count of the
        // server's window it knows when the window frees, which a throttle's whole-second
        // Retry-After rounds up (with nothing to count it holds them for the Retry-After).
        .adjust(|err, dur| {
            dur.map(|d| match err.retry_after() {
                Some(ra) if ra <= MAX_RETRY_AFTER && err.is_throttled() => {
                    ra.min(self.limiter.held_for())
                }
                Some(ra) if ra <= MAX_RETRY_AFTER => ra,
                _ => d,
            })
        })
        .notify(|err, dur| {
            if !retried {
                retried = true;
                // Said once, so an operator knows how long an outage is retried before the
                // pass gives up: every wait is capped, so their sum is a true bound.
                let waits = humantime::format_duration(self.backoff.bound()).to_string();
                let timeout = humantime::format_duration(self.timeout).to_string();
                tracing::warn!(
                    endpoint = %endpoint,
                    retries = self.max_retries,
                    waits_at_most_ms = self.backoff.bound().as_millis() as u64,
                    "request failed; retrying up to {} time(s), waiting at most {waits} in all between attempts (each attempt up to {timeout}; a Retry-After of up to {} replaces a wait)",
                    self.max_retries,
                    humantime::format_duration(MAX_RETRY_AFTER),
                );
            }
            tracing::warn!(
                error = %err,
                url = err.url(),
                retry_in_ms = dur.as_millis() as u64,
                "request failed, retrying"
            );
        })
        .await;
        match result {
            Err(e) if e.is_retryable() => Err(ApiError::GaveUp {
                attempts,
                last: Box::new(e),
                endpoint,
                elapsed: started.elapsed(),
            }),
            other => other,
        }
    }

    async fn attempt<R: Resource>(
        &self,
        url: &Url,
        query: &ListQuery,
    ) -> Result<Page<R::Record>, ApiError> {
        let shown = display_url(url, query);
        let auth = self.auth_header(&shown)?;
        let permit = self.limiter.acquire().await;
        let started = Instant::now();
        let sent = self
            .http
            .get(url.clone())
            .query(&query.0)
            .header(AUTHORIZATION, auth)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                self.observe(None, started);
                self.limiter.observe(permit, Outcome::Unanswered);
                return Err(transport_error(&e, shown, endpoint_of(url)));
            }
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = resp.bytes().await;
        self.observe(Some(status.as_u16()), started);
        if status == StatusCode::TOO_MANY_REQUESTS {
            // A gateway may drop the header and keep DRF's body, which says the same.
            let retry_after = retry_after.or_else(|| {
                body.as_ref()
                    .ok()
                    .and_then(|b| throttle_hint(&detail_of(b)))
            });
            self.limiter
                .observe(permit, Outcome::Throttled { retry_after });
        } else {
            self.limiter.observe(permit, Outcome::Served);
        }
        let body = body.map_err(|e| ApiError::Transport {
            url: shown.clone(),
            endpoint: endpoint_of(url),
            cause: format!("reading the body: {}", root_cause(&e)),
        })?;
        if status.is_success() {
            return parse_page::<R>(&body).map_err(|reason| ApiError::Decode {
                url: shown,
                reason: format!("{reason} (body starts {:?})", snippet(&body)),
            });
        }
        let code = status.as_u16();
        let retry_after = retry_after.or_else(|| {
            (status == StatusCode::TOO_MANY_REQUESTS)
                .then(|| throttle_hint(&detail_of(&body)))
                .flatten()
        });
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ApiError::Auth {
                status: code,
                url: shown,
                detail: detail_of(&body),
            },
            s if s.is_redirection() => ApiError::Redirect {
                status: code,
                url: shown,
                location,
            },
            s if s.is_client_error()
                && s != StatusCode::TOO_MANY_REQUESTS
                && s != StatusCode::REQUEST_TIMEOUT =>
            {
                ApiError::Rejected {
                    status: code,
                    url: shown,
                    body: snippet(&body),
                }
            }
            _ => ApiError::Status {
                status: code,
                url: shown,
                body: snippet(&body),
                retry_after,
            },
        })
    }

    /// The `Authorization` header, marked sensitive so that it is never logged.
    fn auth_header(&self, shown: &str) -> Result<HeaderValue, ApiError> {
        let mut auth =
            HeaderValue::from_str(&format!("Token {}", self.token.expose())).map_err(|_| {
                ApiError::Auth {
                    status: 0,
                    url: shown.to_owned(),
                    detail: "the token contains characters not allowed in a header".into(),
                }
            })?;
        auth.set_sensitive(true);
        Ok(auth)
    }

    fn observe(&self, status: Option<u16>, started: Instant) {
        if let Some(o) = &self.observer {
            o(status, started.elapsed());
        }
    }
}

/// The URL as shown in errors and logs (the token is a header, so nothing to hide here).
fn display_url(url: &Url, query: &ListQuery) -> String {
    let mut u = url.clone();
    u.query_pairs_mut()
        .extend_pairs(query.0.iter().map(|(k, v)| (*k, v.as_str())));
    u.to_string()
}

/// `path?query` as sent (for messages that name a request without the host).
pub fn path_and_query(path: &str, query: &ListQuery) -> String {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    ser.extend_pairs(query.0.iter().map(|(k, v)| (*k, v.as_str())));
    format!("{path}?{}", ser.finish())
}

fn detail_of(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Detail {
        detail: String,
    }
    serde_json::from_slice::<Detail>(body)
        .map(|d| d.detail)
        .unwrap_or_else(|_| snippet(body))
}

fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(BODY_SNIPPET)]);
    crate::text::one_line(&s)
}

/// `Retry-After` is either delta-seconds or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Customers;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        let d = parse_retry_after(&later).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn page_keeps_bad_records_and_keys() {
        let body = br#"{"count": 3, "next": null, "previous": null, "results": [
            {"id": 5, "modified_date": "2023-01-01T00:00:00Z"},
            {"id": 9, "modified_date": "garbage"},
            {"id": 2, "modified_date": "2023-01-01T00:00:01Z"}]}"#;
        let p = parse_page::<Customers>(body).unwrap();
        assert_eq!((p.count, p.len, p.records.len(), p.bad.len()), (3, 3, 2, 1));
        assert_eq!(p.last_id, Some(2));
        assert_eq!(p.max_id, Some(9));
        assert_eq!(
            p.last_modified.as_deref(),
            Some("2023-01-01T00:00:01.000000Z")
        );
        assert!(parse_page::<Customers>(b"{\"count\": 1, \"results\": [").is_err());
        assert!(parse_page::<Customers>(b"<html>502</html>").is_err());
    }
}
