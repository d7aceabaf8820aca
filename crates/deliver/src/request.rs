//! The request of one attempt.
//!
//! Headers, in the order they are sent: `content-type`, the Standard
//! Webhooks `webhook-id` (the delivery id, the same on every attempt) and
//! `webhook-timestamp`, `alertpost-attempt`, `alertpost-event-id`, the
//! integration's configured headers, then `authorization` from its auth.
//! `user-agent` is the client's. Values marked sensitive (credentials,
//! values from the environment) are masked wherever a request is shown.

use std::time::Duration;

use alertpost_config::{Auth, Integration, Method};
use base64::Engine;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use url::Url;

/// What identifies one attempt of one delivery.
#[derive(Debug, Clone, Copy)]
pub struct RequestMeta<'a> {
    pub delivery_id: &'a str,
    pub event_id: &'a str,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Unix seconds, sent as `webhook-timestamp` (and signed, with a secret).
    pub timestamp: i64,
}

/// An integration made ready for requests: its method, URL, timeout and the
/// headers that are the same on every request, parsed once.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub method: reqwest::Method,
    pub url: Url,
    pub timeout: Duration,
    /// Configured headers and auth, in order.
    pub headers: HeaderMap,
}

/// A configured header that cannot be sent (checked at load, so only a
/// value the config check could not see, such as a control character from
/// the environment).
#[derive(Debug, thiserror::Error)]
#[error("header `{0}` cannot be sent: invalid name or value")]
pub struct BadHeader(pub String);

impl Endpoint {
    pub fn new(integration: &Integration) -> Result<Endpoint, BadHeader> {
        let mut headers = HeaderMap::with_capacity(integration.headers.len() + 1);
        for h in &integration.headers {
            let name =
                HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| BadHeader(h.name.clone()))?;
            let mut value =
                HeaderValue::from_str(h.value.expose()).map_err(|_| BadHeader(h.name.clone()))?;
            value.set_sensitive(h.sensitive);
            headers.append(name, value);
        }
        match &integration.auth {
            Auth::None => {}
            Auth::Basic { username, password } => {
                let credentials = format!("{username}:{}", password.expose());
                let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
                let mut value = HeaderValue::from_str(&format!("Basic {encoded}"))
                    .map_err(|_| BadHeader("authorization".to_owned()))?;
                value.set_sensitive(true);
                headers.insert(reqwest::header::AUTHORIZATION, value);
            }
        }
        Ok(Endpoint {
            method: match integration.method {
                Method::Post => reqwest::Method::POST,
                Method::Put => reqwest::Method::PUT,
                Method::Patch => reqwest::Method::PATCH,
            },
            url: integration.url.clone(),
            timeout: integration.timeout,
            headers,
        })
    }
}

/// A request ready to send.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: reqwest::Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Bound on the whole attempt: connect, send, response, body.
    pub timeout: Duration,
}

static WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
static WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
static ATTEMPT: HeaderName = HeaderName::from_static("alertpost-attempt");
static EVENT_ID: HeaderName = HeaderName::from_static("alertpost-event-id");

impl Request {
    /// The request of one attempt to deliver `body` to `endpoint`.
    pub fn new(
        endpoint: &Endpoint,
        body: Bytes,
        content_type: &str,
        meta: &RequestMeta<'_>,
    ) -> Request {
        let mut headers = HeaderMap::with_capacity(6 + endpoint.headers.len());
        let mut put = |name: &HeaderName, value: &str| {
            // Ids are alertpost's own (printable ASCII); a value that still
            // fails is left out rather than failing the attempt.
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(name.clone(), v);
            }
        };
        put(&reqwest::header::CONTENT_TYPE, content_type);
        put(&WEBHOOK_ID, meta.delivery_id);
        put(&WEBHOOK_TIMESTAMP, &meta.timestamp.to_string());
        put(&ATTEMPT, &meta.attempt.to_string());
        put(&EVENT_ID, meta.event_id);
        for (name, value) in &endpoint.headers {
            headers.append(name.clone(), value.clone());
        }
        Request {
            method: endpoint.method.clone(),
            url: endpoint.url.clone(),
            headers,
            body,
            timeout: endpoint.timeout,
        }
    }

    /// The value of a header, for tests and displays.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}
