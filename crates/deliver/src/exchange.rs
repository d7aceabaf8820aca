//! Sends one request and captures the outcome.
//!
//! The response body is read up to [`BODY_LIMIT`] (a fully read body lets
//! the connection go back to the pool); the store keeps its first 4 KiB.
//! Error texts never contain the URL: paths and queries often carry tokens.

use std::error::Error as _;
use std::time::{Duration, Instant, SystemTime};

use alertpost_event::job::AttemptCode;
use bytes::{Bytes, BytesMut};
use reqwest::header::{AUTHORIZATION, HeaderMap};

use crate::client::{Client, PolicyRefused};
use crate::request::{Endpoint, Request, RequestMeta};

/// How much of a response body is read.
pub const BODY_LIMIT: usize = 64 * 1024;

/// One attempt: when, how long, and what happened.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub started_at: SystemTime,
    pub duration: Duration,
    pub result: Answer,
}

#[derive(Debug, Clone)]
pub enum Answer {
    /// The endpoint answered (any status).
    Response(Response),
    /// No complete answer within the integration's timeout.
    Timeout,
    /// No connection: refused, reset, DNS failure, TLS failure.
    Connect(String),
    /// The outbound policy refused the destination; nothing was sent.
    Policy(String),
    /// No OAuth 2 token could be had; nothing was sent.
    Token(String),
    /// Anything else that went wrong in transport.
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    /// The start of the body, at most [`BODY_LIMIT`] bytes.
    pub body: Bytes,
    /// Whether the body went on past what was read.
    pub truncated: bool,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Answer {
    /// Its class: the `code` label of `alertpost_delivery_attempts_total`.
    pub fn code(&self) -> AttemptCode {
        match self {
            Answer::Response(r) => AttemptCode::of_status(r.status),
            Answer::Timeout => AttemptCode::Timeout,
            Answer::Connect(_) => AttemptCode::Connect,
            Answer::Policy(_) => AttemptCode::Policy,
            Answer::Token(_) => AttemptCode::Token,
            Answer::Failed(_) => AttemptCode::Error,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Answer::Response(r) => Some(r.status),
            _ => None,
        }
    }
}

impl Client {
    /// One attempt to deliver `body` to `endpoint`: the request with its
    /// auth and signature, sent once; with OAuth 2, a 401 fetches a fresh
    /// token and sends once more (still one attempt). Never fails: every way
    /// it can go wrong is an [`Answer`].
    pub async fn deliver(
        &self,
        endpoint: &Endpoint,
        body: Bytes,
        meta: &RequestMeta<'_>,
    ) -> Exchange {
        self.run(endpoint, body, meta, false).await.1
    }

    /// Like [`Client::deliver`], also returning the request as it was last
    /// sent (for `alertpost test`).
    pub async fn deliver_shown(
        &self,
        endpoint: &Endpoint,
        body: Bytes,
        meta: &RequestMeta<'_>,
    ) -> (Request, Exchange) {
        let (request, attempt) = self.run(endpoint, body, meta, true).await;
        // `run` keeps the request when asked to.
        let request = request.unwrap_or_else(|| Request::new(endpoint, Bytes::new(), meta));
        (request, attempt)
    }

    async fn run(
        &self,
        endpoint: &Endpoint,
        body: Bytes,
        meta: &RequestMeta<'_>,
        keep: bool,
    ) -> (Option<Request>, Exchange) {
        let started_at = SystemTime::now();
        let clock = Instant::now();
        let done = |shown: Option<Request>, result| {
            (
                shown,
                Exchange {
                    started_at,
                    duration: clock.elapsed(),
                    result,
                },
            )
        };
        // Its own client (proxy, tls) if it has one; token fetches through
        // its proxy but without its tls.
        let own;
        let client = match &endpoint.own {
            Some(o) => {
                own = self.through(o);
                &own
            }
            None => self,
        };
        let mut request = Request::new(endpoint, body, meta);
        let Some(tokens) = &endpoint.tokens else {
            let shown = keep.then(|| request.clone());
            return done(shown, client.send_once(request).await);
        };
        let token_client = self.for_tokens(endpoint.own.as_ref());
        let used = match tokens.header(&token_client, endpoint.timeout).await {
            Ok(h) => h,
            Err(reason) => return done(keep.then_some(request), Answer::Token(reason)),
        };
        request.headers.insert(AUTHORIZATION, used.clone());
        let mut again = request.clone();
        let mut shown = keep.then(|| request.clone());
        let mut result = client.send_once(request).await;
        if matches!(&result, Answer::Response(r) if r.status == 401) {
            result = match tokens.refresh(&token_client, endpoint.timeout, &used).await {
                Ok(fresh) => {
                    again.headers.insert(AUTHORIZATION, fresh);
                    if keep {
                        shown = Some(again.clone());
                    }
                    client.send_once(again).await
                }
                Err(reason) => Answer::Token(reason),
            };
        }
        done(shown, result)
    }

    /// Sends `request` once, as it is.
    pub async fn send(&self, request: Request) -> Exchange {
        let started_at = SystemTime::now();
        let clock = Instant::now();
        let result = self.send_once(request).await;
        Exchange {
            started_at,
            duration: clock.elapsed(),
            result,
        }
    }

    async fn send_once(&self, request: Request) -> Answer {
        let timeout = request.timeout;
        let checked_and_sent = async {
            match self.check(&request.url, request.pinned).await {
                Err(crate::client::Refusal::Policy(reason)) => Answer::Policy(reason),
                Err(crate::client::Refusal::Unresolved(reason)) => Answer::Connect(reason),
                Ok(()) => self.round_trip(request).await,
            }
        };
        match tokio::time::timeout(timeout, checked_and_sent).await {
            Ok(result) => result,
            Err(_) => Answer::Timeout,
        }
    }

    async fn round_trip(&self, request: Request) -> Answer {
        let sent = self
            .http
            .request(request.method, request.url)
            .headers(request.headers)
            .body(request.body)
            .send()
            .await;
        let mut response = match sent {
            Ok(r) => r,
            Err(e) => return transport_error(e),
        };
        let status = response.status().as_u16();
        let headers = std::mem::take(response.headers_mut());
        let (body, truncated) = read_body(&mut response).await;
        Answer::Response(Response {
            status,
            headers,
            body,
            truncated,
        })
    }
}

/// Reads the body up to [`BODY_LIMIT`]: `(bytes, truncated)`. A body that
/// breaks off after the status still yields what was read (the status is
/// the answer), marked truncated.
async fn read_body(response: &mut reqwest::Response) -> (Bytes, bool) {
    // Most webhook answers are one small chunk: keep it without copying.
    let mut first: Option<Bytes> = None;
    let mut more = BytesMut::new();
    let truncated = loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break false,
            Err(_) => break true,
        };
        if first.is_none() {
            first = Some(chunk);
            continue;
        }
        if more.is_empty() {
            more.extend_from_slice(first.as_deref().unwrap_or_default());
        }
        more.extend_from_slice(&chunk);
        if more.len() >= BODY_LIMIT {
            // Stopped before the end of the body.
            break true;
        }
    };
    let mut body = if more.is_empty() {
        first.unwrap_or_default()
    } else {
        more.freeze()
    };
    let over = body.len() > BODY_LIMIT;
    body.truncate(BODY_LIMIT);
    (body, truncated || over)
}

fn transport_error(e: reqwest::Error) -> Answer {
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(refused) = s.downcast_ref::<PolicyRefused>() {
            return Answer::Policy(refused.to_string());
        }
        source = s.source();
    }
    let timeout = e.is_timeout();
    let connect = e.is_connect();
    let text = error_text(&e.without_url());
    if timeout {
        Answer::Timeout
    } else if connect {
        Answer::Connect(text)
    } else {
        Answer::Failed(text)
    }
}

/// The error and its causes on one line: "error sending request: client
/// error (Connect): tcp connect error: Connection refused (os error 111)".
fn error_text(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}
