//! The request of one attempt.
//!
//! Headers, in the order they are sent: `content-type`, the Standard
//! Webhooks `webhook-id` (the delivery id, the same on every attempt),
//! `webhook-timestamp` and, with a signing key, `webhook-signature`;
//! `alertpost-attempt`, `alertpost-event-id`; the integration's configured
//! headers; then its auth (`authorization`, or the auth headers). The
//! `user-agent` is the client's. Values that are credentials are marked
//! sensitive and masked wherever a request is shown.

use std::sync::Arc;
use std::time::Duration;

use alertpost_config::{Auth, Integration, Method, SigningKey, Validator};
use base64::Engine;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use url::Url;

use crate::client::{Client, OwnClient};
use crate::oauth::TokenCache;
use crate::sign::sign;

/// What identifies one attempt of one delivery.
#[derive(Debug, Clone, Copy)]
pub struct RequestMeta<'a> {
    pub delivery_id: &'a str,
    pub event_id: &'a str,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Unix seconds, sent as `webhook-timestamp` (and signed).
    pub timestamp: i64,
}

impl RequestMeta<'_> {
    /// The ids of attempt number `attempt`, stamped now.
    pub fn now<'a>(delivery_id: &'a str, event_id: &'a str, attempt: u32) -> RequestMeta<'a> {
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        RequestMeta {
            delivery_id,
            event_id,
            attempt,
            timestamp,
        }
    }
}

/// An integration made ready for requests: parsed once, used for every
/// attempt. Cheap to clone. `Debug` hides the URL's path and query (see
/// [`alertpost_config::url_origin`]) and sensitive header values.
#[derive(Clone)]
pub struct Endpoint {
    pub id: String,
    pub method: reqwest::Method,
    pub url: Url,
    pub timeout: Duration,
    pub content_type: HeaderValue,
    /// Configured headers and static auth, in order.
    pub headers: HeaderMap,
    /// OAuth 2: the token is added per request.
    pub tokens: Option<Arc<TokenCache>>,
    pub signing_key: Option<SigningKey>,
    pub validate: Arc<[Validator]>,
    /// Its own client when it has a `proxy` or `tls` of its own.
    pub own: Option<OwnClient>,
    /// With `tls.server_name`, the URL's IP address: the request goes to
    /// the server name, pinned to this address, which the policy checks.
    pub pinned: Option<std::net::IpAddr>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("id", &self.id)
            .field("method", &self.method)
            .field("url", &alertpost_config::url_origin(&self.url))
            .field("timeout", &self.timeout)
            .field("headers", &self.headers)
            .field("oauth2", &self.tokens.is_some())
            .field("signed", &self.signing_key.is_some())
            .field("proxy", &self.own.as_ref().and_then(|o| o.proxy.as_ref()))
            .field("tls", &self.own.is_some())
            .finish_non_exhaustive()
    }
}

/// A configured header that cannot be sent (checked at load, so only a
/// value the config check could not see, such as a control character from
/// the environment).
#[derive(Debug, thiserror::Error)]
#[error("header `{0}` cannot be sent: invalid name or value")]
pub struct BadHeader(pub String);

/// Why an integration cannot be made ready for requests.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error(transparent)]
    Header(#[from] BadHeader),
    /// Its own client (proxy, TLS) cannot be built; the reason names no
    /// secret.
    #[error("integration `{0}`: {1}")]
    Client(String, String),
}

impl Endpoint {
    /// `client`: the worker's, whose outbound policy an integration's own
    /// client keeps.
    pub fn new(integration: &Integration, client: &Client) -> Result<Endpoint, EndpointError> {
        let mut headers = HeaderMap::with_capacity(integration.headers.len() + 1);
        let mut add = |name: &str, value: &str, sensitive: bool| -> Result<(), BadHeader> {
            let bad = || BadHeader(name.to_owned());
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
            let mut value = HeaderValue::from_str(value).map_err(|_| bad())?;
            value.set_sensitive(sensitive);
            headers.append(name, value);
            Ok(())
        };
        for h in &integration.headers {
            add(&h.name, h.value.expose(), h.sensitive)?;
        }
        let (own, url, pinned) = client
            .own_for(integration)
            .map_err(|e| EndpointError::Client(integration.id.clone(), e))?;
        let mut tokens = None;
        match &integration.auth {
            Auth::None => {}
            Auth::Basic { username, password } => {
                let credentials = format!("{username}:{}", password.expose());
                let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
                add("authorization", &format!("Basic {encoded}"), true)?;
            }
            Auth::Bearer { token } => {
                add("authorization", &format!("Bearer {}", token.expose()), true)?
            }
            Auth::Header(auth_headers) => {
                for h in auth_headers {
                    add(&h.name, h.value.expose(), true)?;
                }
            }
            Auth::OAuth2(o) => tokens = Some(Arc::new(TokenCache::new(o.clone()))),
        }
        Ok(Endpoint {
            id: integration.id.clone(),
            method: match integration.method {
                Method::Post => reqwest::Method::POST,
                Method::Put => reqwest::Method::PUT,
                Method::Patch => reqwest::Method::PATCH,
            },
            url,
            timeout: integration.timeout,
            content_type: HeaderValue::from_str(&integration.content_type)
                .map_err(|_| BadHeader("content-type".to_owned()))?,
            headers,
            tokens,
            signing_key: integration.signing_key.clone(),
            validate: integration.validate.clone().into(),
            own,
            pinned,
        })
    }
}

/// A request ready to send.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: reqwest::Method,
    pub url: Url,
    /// The address the URL's host is pinned to (`tls.server_name`).
    pub pinned: Option<std::net::IpAddr>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Bound on the whole attempt: connect, send, response, body.
    pub timeout: Duration,
}

static WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
static WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
static WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");
static ATTEMPT: HeaderName = HeaderName::from_static("alertpost-attempt");
static EVENT_ID: HeaderName = HeaderName::from_static("alertpost-event-id");

impl Request {
    /// The request of one attempt to deliver `body` to `endpoint`, without
    /// an OAuth 2 token (added when sending).
    pub fn new(endpoint: &Endpoint, body: Bytes, meta: &RequestMeta<'_>) -> Request {
        let mut headers = HeaderMap::with_capacity(7 + endpoint.headers.len());
        let mut put = |name: &HeaderName, value: &str| {
            // Ids are alertpost's own (printable ASCII); a value that still
            // fails is left out rather than failing the attempt.
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(name.clone(), v);
            }
        };
        put(&WEBHOOK_ID, meta.delivery_id);
        put(&WEBHOOK_TIMESTAMP, &meta.timestamp.to_string());
        if let Some(key) = &endpoint.signing_key {
            put(
                &WEBHOOK_SIGNATURE,
                &sign(key.bytes(), meta.delivery_id, meta.timestamp, &body),
            );
        }
        put(&ATTEMPT, &meta.attempt.to_string());
        put(&EVENT_ID, meta.event_id);
        headers.insert(reqwest::header::CONTENT_TYPE, endpoint.content_type.clone());
        for (name, value) in &endpoint.headers {
            headers.append(name.clone(), value.clone());
        }
        Request {
            method: endpoint.method.clone(),
            url: endpoint.url.clone(),
            pinned: endpoint.pinned,
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
