//! `OPTIONS` on a list endpoint: DRF's metadata (`actions.GET` fields, and the `filters` list
//! the OMS adds), read when a stream's endpoint is verified. One attempt through the shared
//! rate limiter: the answer only adds to what the probes find, so a server that does not
//! answer it (405, HTML, a transient fault) is reported as "no answer", not retried.

use reqwest::header::AUTHORIZATION;
use reqwest::{Method, StatusCode};

use super::{ApiClient, ApiError, Outcome, detail_of, endpoint_of, transport_error};

/// What an endpoint's `OPTIONS` said.
#[derive(Debug, Clone, PartialEq)]
pub enum OptionsAnswer {
    /// A JSON object (DRF metadata).
    Metadata(serde_json::Value),
    /// Anything else, with the reason (status, not JSON, a transport fault).
    None(String),
}

impl ApiClient {
    /// `OPTIONS base_url + path`; only 401/403 are errors (the token is refused).
    pub async fn options(&self, path: &str) -> Result<OptionsAnswer, ApiError> {
        let url = self.base.join(path).map_err(|e| ApiError::Transport {
            url: self.base.to_string(),
            endpoint: endpoint_of(&self.base),
            cause: e.to_string(),
        })?;
        let permit = self.limiter.acquire().await;
        let auth = self.auth_header(url.as_str())?;
        let started = std::time::Instant::now();
        let sent = self
            .http
            .request(Method::OPTIONS, url.clone())
            .header(AUTHORIZATION, auth)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                self.observe(None, started);
                self.limiter.observe(permit, Outcome::Unanswered);
                let e = transport_error(&e, url.to_string(), endpoint_of(&url));
                return Ok(OptionsAnswer::None(e.to_string()));
            }
        };
        let status = resp.status();
        let body = resp.bytes().await;
        self.observe(Some(status.as_u16()), started);
        if status == StatusCode::TOO_MANY_REQUESTS {
            self.limiter
                .observe(permit, Outcome::Throttled { retry_after: None });
            return Ok(OptionsAnswer::None("429 Too Many Requests".into()));
        }
        self.limiter.observe(permit, Outcome::Served);
        let Ok(body) = body else {
            return Ok(OptionsAnswer::None("the body could not be read".into()));
        };
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(ApiError::Auth {
                status: status.as_u16(),
                url: url.to_string(),
                detail: detail_of(&body),
            });
        }
        if !status.is_success() {
            return Ok(OptionsAnswer::None(format!("status {}", status.as_u16())));
        }
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(v) if v.is_object() => Ok(OptionsAnswer::Metadata(v)),
            _ => Ok(OptionsAnswer::None("not a JSON object".into())),
        }
    }
}
