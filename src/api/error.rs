//! Errors of the OMS client: what failed, sorted into what a retry may fix and what it cannot
//! ([`ApiError::is_retryable`]), with messages that name the endpoint (`host:port`), the cause
//! and the fix, short enough for one line.

use std::time::Duration;

use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(
        "authentication failed (HTTP {status}: {detail}) at {url}; fix: check api.token or api.token_file, and that the token's user may list customers"
    )]
    Auth {
        status: u16,
        url: String,
        detail: String,
    },
    #[error(
        "the API rejected the request (HTTP {status}) at {url}: {body}; fix: this is a bug in oms-sync or an API change, please report it"
    )]
    Rejected {
        status: u16,
        url: String,
        body: String,
    },
    #[error(
        "the API answered with a redirect (HTTP {status}) from {url} to {location:?}, which oms-sync never follows so the token cannot leak; fix: set api.base_url to the origin that serves the API"
    )]
    Redirect {
        status: u16,
        url: String,
        location: String,
    },
    #[error("HTTP {status} from {url}: {body}")]
    Status {
        status: u16,
        url: String,
        body: String,
        retry_after: Option<Duration>,
    },
    #[error("request to {endpoint} failed: {cause}")]
    Transport {
        url: String,
        /// `host:port`, what an operator checks first.
        endpoint: String,
        cause: String,
    },
    /// A transport failure no retry can fix (TLS or protocol mismatch, unknown host).
    #[error("cannot talk to the API at {endpoint}: {cause}; fix: {fix}")]
    Unusable {
        url: String,
        endpoint: String,
        cause: String,
        fix: &'static str,
    },
    #[error("unreadable response from {url}: {reason}")]
    Decode { url: String, reason: String },
    #[error(
        "API at {endpoint} unreachable after {}: {}; fix: check api.base_url, the network and the OMS status, then run again (the checkpoint did not move)",
        attempts_over(*.attempts, *.elapsed),
        .last.short()
    )]
    GaveUp {
        attempts: u32,
        last: Box<ApiError>,
        endpoint: String,
        elapsed: Duration,
    },
}

/// "1 attempt in 0s", "9 attempts over 1m 31s".
fn attempts_over(attempts: u32, elapsed: Duration) -> String {
    // Whole seconds, or milliseconds under a second: enough to tell a quick refusal from a
    // long outage.
    let took = if elapsed >= Duration::from_secs(1) {
        humantime::format_duration(Duration::from_secs(elapsed.as_secs()))
    } else {
        humantime::format_duration(Duration::from_millis(elapsed.as_millis() as u64))
    };
    if attempts == 1 {
        format!("1 attempt in {took}")
    } else {
        format!("{attempts} attempts over {took}")
    }
}

/// Longest cause quoted in a one-line summary.
const SHORT_CAUSE: usize = 80;

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

impl ApiError {
    /// Whether trying the same request again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ApiError::Status { status, .. } => {
                *status == 429 || *status == 408 || (500..600).contains(status)
            }
            ApiError::Transport { .. } | ApiError::Decode { .. } => true,
            _ => false,
        }
    }

    /// A 429.
    pub(super) fn is_throttled(&self) -> bool {
        matches!(self, ApiError::Status { status: 429, .. })
    }

    pub(super) fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The URL of the request that failed, when there was one.
    pub fn url(&self) -> &str {
        match self {
            ApiError::Auth { url, .. }
            | ApiError::Rejected { url, .. }
            | ApiError::Redirect { url, .. }
            | ApiError::Status { url, .. }
            | ApiError::Transport { url, .. }
            | ApiError::Unusable { url, .. }
            | ApiError::Decode { url, .. } => url,
            ApiError::GaveUp { last, .. } => last.url(),
        }
    }

    /// The cause without the URL, for one-line summaries ("HTTP 503", "connection refused").
    pub fn short(&self) -> String {
        match self {
            ApiError::Transport { cause, .. } | ApiError::Unusable { cause, .. } => {
                truncate(cause, SHORT_CAUSE)
            }
            ApiError::Status { status, body, .. } if body.is_empty() => format!("HTTP {status}"),
            ApiError::Status { status, body, .. } => {
                format!("HTTP {status} ({})", truncate(body, 40))
            }
            ApiError::Decode { reason, .. } => {
                format!("unreadable response ({})", truncate(reason, 60))
            }
            ApiError::GaveUp { last, .. } => last.short(),
            other => truncate(&other.to_string(), SHORT_CAUSE),
        }
    }
}

/// `host:port` of a URL (the port filled in from the scheme).
pub fn endpoint_of(url: &Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port_or_known_default() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// The innermost cause of an error chain: the part that says what happened ("Connection
/// refused (os error 111)"), without the wrappers that repeat the URL.
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last: &dyn std::error::Error = e;
    while let Some(inner) = last.source() {
        last = inner;
    }
    last.to_string()
}

/// Sorts a failed send into what a retry may fix (timeouts, refused or reset connections,
/// DNS hiccups) and what it cannot (TLS or protocol mismatch, bad certificate, unknown host).
pub fn transport_error(e: &reqwest::Error, url: String, endpoint: String) -> ApiError {
    let cause = if e.is_timeout() {
        "timed out".to_string()
    } else {
        root_cause(e)
    };
    let lower = cause.to_ascii_lowercase();
    let unusable = |cause: String, fix: &'static str| ApiError::Unusable {
        url: url.clone(),
        endpoint: endpoint.clone(),
        cause,
        fix,
    };
    if lower.contains("corrupt message") || lower.contains("invalidcontenttype") {
        return unusable(
            "no TLS on this port (handshake: received corrupt message)".to_string(),
            "use http:// in api.base_url, or the port that serves https",
        );
    }
    if lower.contains("certificate") {
        return unusable(
            format!("TLS certificate rejected ({cause})"),
            "check the host name in api.base_url; the server's certificate must be valid for it",
        );
    }
    if lower.contains("tls") || lower.contains("handshake") || lower.contains("alert") {
        return unusable(
            format!("TLS handshake failed ({cause})"),
            "check the scheme and port of api.base_url",
        );
    }
    if lower.contains("invalid http version") || lower.contains("http/0.9") {
        return unusable(
            format!("the server does not answer in HTTP ({cause}); it may expect TLS"),
            "use https:// in api.base_url if that port serves TLS",
        );
    }
    if lower.contains("name or service not known")
        || lower.contains("no address associated")
        || lower.contains("nodename nor servname")
    {
        return unusable(
            format!("host name not found ({cause})"),
            "check the host name in api.base_url",
        );
    }
    let cause = if lower.contains("connection refused") {
        "connection refused".to_string()
    } else {
        cause
    };
    ApiError::Transport {
        url,
        endpoint,
        cause,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gave_up_is_one_short_line_naming_the_endpoint_once() {
        let url = "https://oms.example.com/api/v1/oms/customers/list-simple/?sort=modified_date&modified_date__gt=2024-03-01T09%3A00%3A00.000000%2B00%3A00&limit=100";
        let e = ApiError::GaveUp {
            attempts: 9,
            last: Box::new(ApiError::Transport {
                url: url.into(),
                endpoint: "oms.example.com:443".into(),
                cause: "connection refused".into(),
            }),
            endpoint: "oms.example.com:443".into(),
            elapsed: Duration::from_millis(91_700),
        };
        let msg = e.to_string();
        assert!(msg.len() < 200, "{} chars: {msg}", msg.len());
        assert!(msg.contains("oms.example.com:443") && msg.contains("connection refused"));
        assert!(msg.contains("9 attempts over 1m 31s"), "{msg}");
        assert!(!msg.contains("list-simple"), "{msg}");
        assert_eq!(e.url(), url);
    }

    #[test]
    fn endpoint_fills_in_the_default_port() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            endpoint_of(&u("https://oms.example.com")),
            "oms.example.com:443"
        );
        assert_eq!(endpoint_of(&u("http://127.0.0.1:8080/")), "127.0.0.1:8080");
    }
}
