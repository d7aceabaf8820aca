//! A recording HTTP receiver on 127.0.0.1:0.
//!
//! Every request to any path is recorded. Answers come from the script of
//! that path, one reply per request in order, then `200 {"status":"ok"}`.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::sync::Notify;

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub at: Instant,
    /// The status it was answered with.
    pub status: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (panics if it is not: a test failure).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: String::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn ok() -> Reply {
        Reply::status(200).body("{\"status\":\"ok\"}")
    }

    pub fn body(mut self, body: &str) -> Reply {
        self.body = body.to_owned();
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<Received>>,
    scripts: Mutex<HashMap<String, VecDeque<Reply>>>,
    /// Paths answered 500 at random, with this probability, once their
    /// script is used up; and the random state (xorshift: reproducible
    /// enough, no crate).
    flaky: Mutex<(HashMap<String, f64>, u64)>,
    arrived: Notify,
}

/// The receiver; it stops when dropped.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        Receiver::bind("127.0.0.1:0".parse().expect("a valid address")).await
    }

    pub async fn bind(addr: SocketAddr) -> Receiver {
        let shared = Arc::new(Shared::default());
        let app = Router::new().fallback(record).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("the receiver can listen");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            addr,
            shared,
            server,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers the next requests to `path` with `replies`, in order.
    pub fn script(&self, path: &str, replies: impl IntoIterator<Item = Reply>) {
        self.shared
            .scripts
            .lock()
            .expect("lock")
            .entry(path.to_owned())
            .or_default()
            .extend(replies);
    }

    /// Answers requests to `path` (past its script) 500 with probability
    /// `p`, 200 otherwise.
    pub fn flaky(&self, path: &str, p: f64) {
        let mut flaky = self.shared.flaky.lock().expect("lock");
        flaky.0.insert(path.to_owned(), p);
        if flaky.1 == 0 {
            flaky.1 = 0x9e37_79b9_7f4a_7c15;
        }
    }

    /// The requests answered 2xx.
    pub fn accepted(&self) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect()
    }

    /// The delivery ids (`webhook-id`) answered 2xx.
    pub fn delivered_ids(&self) -> std::collections::BTreeSet<String> {
        self.accepted()
            .iter()
            .filter_map(|r| r.header("webhook-id").map(str::to_owned))
            .collect()
    }

    /// Waits until every one of `expected` was answered 2xx; panics after
    /// `timeout` naming how many are missing.
    pub async fn wait_delivered(
        &self,
        expected: &std::collections::BTreeSet<String>,
        timeout: Duration,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            let missing = expected.difference(&self.delivered_ids()).count();
            if missing == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{missing} of {} not delivered within {timeout:?}",
                expected.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Drops the replies still scripted for `path`: it answers 200 again.
    pub fn clear(&self, path: &str) {
        self.shared.scripts.lock().expect("lock").remove(path);
    }

    pub fn requests(&self) -> Vec<Received> {
        self.shared.requests.lock().expect("lock").clone()
    }

    pub fn requests_to(&self, path: &str) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    pub fn count(&self) -> usize {
        self.shared.requests.lock().expect("lock").len()
    }

    /// Waits until at least `n` requests arrived; panics after `timeout`
    /// with what did arrive.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.shared.arrived.notified();
            let got = self.count();
            if got >= n {
                return self.requests();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, notified).await.is_err() {
                panic!(
                    "waited {timeout:?} for {n} requests, got {}: {:?}",
                    self.count(),
                    self.requests().iter().map(|r| &r.path).collect::<Vec<_>>()
                );
            }
        }
    }

    /// Waits `quiet` and checks that no request beyond `n` arrived.
    pub async fn assert_no_more(&self, n: usize, quiet: Duration) {
        tokio::time::sleep(quiet).await;
        assert_eq!(self.count(), n, "unexpected extra requests");
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn record(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let reply = shared
        .scripts
        .lock()
        .expect("lock")
        .get_mut(&path)
        .and_then(VecDeque::pop_front)
        .unwrap_or_else(|| {
            let mut flaky = shared.flaky.lock().expect("lock");
            let (paths, state) = &mut *flaky;
            match paths.get(&path).copied() {
                Some(p) => {
                    *state ^= *state << 13;
                    *state ^= *state >> 7;
                    *state ^= *state << 17;
                    if (*state % 10_000) as f64 / 10_000.0 < p {
                        Reply::status(500)
                    } else {
                        Reply::ok()
                    }
                }
                None => Reply::ok(),
            }
        });
    shared.requests.lock().expect("lock").push(Received {
        method: method.to_string(),
        path,
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
        at: Instant::now(),
        status: reply.status,
    });
    shared.arrived.notify_waiters();
    // Recorded on arrival, answered after the delay: a slow endpoint still
    // counts the attempt.
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, reply.body).into_response();
    for (name, value) in reply.headers {
        if let (Ok(n), Ok(v)) = (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            axum::http::HeaderValue::from_str(&value),
        ) {
            response.headers_mut().insert(n, v);
        }
    }
    response
}
