//! The request of one attempt.
//!
//! Headers, in the order they are sent: `content-type`, the Standard
//! Webhooks `webhook-id` (the delivery id, the same on every attempt) and
//! `webhook-timestamp`, `alertpost-attempt`, `alertpost-event-id`, the
//! integration's configured headers, then `authorization` from its auth.
//! `user-agent` is the client's.

use std::time::Duration;

use alertpost_config::{Auth, Integration, Method, Secret};
use base64::Engine;
use bytes::Bytes;
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

/// One header of a request; `sensitive` ones are masked wherever a request
/// is shown.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestHeader {
    pub name: String,
    pub value: Secret,
    pub sensitive: bool,
}

/// A request ready to send.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub url: Url,
    pub headers: Vec<RequestHeader>,
    pub body: Bytes,
    /// Bound on the whole attempt: connect, send, response, body.
    pub timeout: Duration,
}

impl Request {
    /// The request of one attempt to deliver `body` to `integration`.
    pub fn new(
        integration: &Integration,
        body: Bytes,
        content_type: &str,
        meta: &RequestMeta<'_>,
    ) -> Request {
        let plain = |name: &str, value: String| RequestHeader {
            name: name.to_owned(),
            value: Secret::new(value),
            sensitive: false,
        };
        let mut headers = Vec::with_capacity(6 + integration.headers.len());
        headers.push(plain("content-type", content_type.to_owned()));
        headers.push(plain("webhook-id", meta.delivery_id.to_owned()));
        headers.push(plain("webhook-timestamp", meta.timestamp.to_string()));
        headers.push(plain("alertpost-attempt", meta.attempt.to_string()));
        headers.push(plain("alertpost-event-id", meta.event_id.to_owned()));
        for h in &integration.headers {
            headers.push(RequestHeader {
                name: h.name.clone(),
                value: h.value.clone(),
                sensitive: h.sensitive,
            });
        }
        match &integration.auth {
            Auth::None => {}
            Auth::Basic { username, password } => {
                let credentials = format!("{username}:{}", password.expose());
                let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
                headers.push(RequestHeader {
                    name: "authorization".to_owned(),
                    value: Secret::new(format!("Basic {encoded}")),
                    sensitive: true,
                });
            }
        }
        Request {
            method: integration.method,
            url: integration.url.clone(),
            headers,
            body,
            timeout: integration.timeout,
        }
    }

    /// The value of a header, for tests and displays.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.value.expose())
    }
}
