//! The replies the fake writes that are not pages: DRF `{"detail": ...}` errors, Django's and a
//! load balancer's HTML error pages, DRF's throttled 429, and the gzip coding of a served body.
//! A [`Reply`] is the handler's answer before it becomes an axum response.

use std::borrow::Cow;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

use super::json::write_json_str;

/// A response before it becomes an HTTP response.
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) content_type: Cow<'static, str>,
    pub(super) headers: Vec<(header::HeaderName, String)>,
    pub(super) body: Vec<u8>,
    pub(super) results: usize,
    /// The body was gzip-coded (`Content-Encoding: gzip`).
    pub(super) gzipped: bool,
}

pub(super) const JSON: &str = "application/json";
pub(super) const HTML: &str = "text/html; charset=utf-8";

impl Reply {
    pub(super) fn new(
        status: u16,
        content_type: impl Into<Cow<'static, str>>,
        body: Vec<u8>,
    ) -> Reply {
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
    pub(super) fn drf(status: u16, body: Vec<u8>) -> Reply {
        let mut r = Reply::new(status, JSON, body);
        r.headers
            .push((header::ALLOW, "GET, HEAD, OPTIONS".to_owned()));
        r.headers.push((header::VARY, "Accept, Cookie".to_owned()));
        r
    }

    pub(super) fn detail(status: u16, detail: &str) -> Reply {
        let mut body = Vec::with_capacity(detail.len() + 16);
        body.extend_from_slice(b"{\"detail\":");
        write_json_str(&mut body, detail);
        body.push(b'}');
        Reply::drf(status, body)
    }

    pub(super) fn header(mut self, name: header::HeaderName, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    pub(super) fn into_response(self) -> Response {
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

pub(super) fn django_html(title: &str, text: &str) -> Vec<u8> {
    format!(
        "\n<!doctype html>\n<html lang=\"en\">\n<head>\n  <title>{title}</title>\n</head>\n\
         <body>\n  <h1>{title}</h1><p>{text}</p>\n</body>\n</html>\n"
    )
    .into_bytes()
}

pub(super) fn server_error() -> Reply {
    Reply::new(500, HTML, django_html("Server Error (500)", ""))
}

pub(super) fn not_found_html() -> Reply {
    Reply::new(
        404,
        HTML,
        django_html(
            "Not Found",
            "The requested resource was not found on this server.",
        ),
    )
}

pub(super) fn throttled(retry_after: &str) -> Reply {
    let detail = match retry_after.trim().parse::<u64>() {
        Ok(n) => format!(
            "Request was throttled. Expected available in {n} second{}.",
            if n == 1 { "" } else { "s" }
        ),
        Err(_) => "Request was throttled.".to_owned(),
    };
    Reply::detail(429, &detail).header(header::RETRY_AFTER, retry_after)
}

/// A 429 as a gateway that does not say when to come back sends it: no `Retry-After`.
pub(super) fn throttled_without_retry_after() -> Reply {
    Reply::detail(429, "Request was throttled.")
}

/// Compresses a body as a gzip-coding web server would.
pub(super) fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(body)
        .and_then(|()| enc.finish())
        .expect("writing to a Vec cannot fail")
}
