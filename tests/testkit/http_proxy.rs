//! A forward HTTP proxy on 127.0.0.1:0 that records what it is asked to
//! fetch (the absolute-form target and the `proxy-authorization` it got)
//! and fetches it: enough to see an integration's requests go through it.
//! CONNECT (HTTPS targets) is not served.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// One request the proxy was asked to forward.
#[derive(Debug, Clone)]
pub struct Forwarded {
    pub method: String,
    /// The target as the client wrote it: `http://host:port/path`.
    pub target: String,
    pub proxy_authorization: Option<String>,
}

#[derive(Default)]
struct Seen {
    forwarded: Mutex<Vec<Forwarded>>,
}

pub struct HttpProxy {
    addr: SocketAddr,
    seen: Arc<Seen>,
}

impl HttpProxy {
    pub async fn start() -> HttpProxy {
        let seen = Arc::new(Seen::default());
        let app = Router::new().fallback(forward).with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the proxy can listen");
        let addr = listener.local_addr().expect("bound");
        tokio::spawn(async move { axum::serve(listener, app).await });
        HttpProxy { addr, seen }
    }

    /// `http://[credentials@]127.0.0.1:<port>`, for an integration's `proxy`.
    pub fn url(&self, credentials: Option<&str>) -> String {
        match credentials {
            Some(c) => format!("http://{c}@{}", self.addr),
            None => format!("http://{}", self.addr),
        }
    }

    pub fn forwarded(&self) -> Vec<Forwarded> {
        self.seen
            .forwarded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

async fn forward(State(seen): State<Arc<Seen>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let target = parts.uri.to_string();
    seen.forwarded
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Forwarded {
            method: parts.method.to_string(),
            target: target.clone(),
            proxy_authorization: parts
                .headers
                .get("proxy-authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        });
    if !target.starts_with("http://") {
        return (StatusCode::BAD_REQUEST, "not an absolute-form request").into_response();
    }
    let Ok(body) = axum::body::to_bytes(body, 4 << 20).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let mut headers = parts.headers.clone();
    for hop in [
        "proxy-authorization",
        "proxy-connection",
        "connection",
        "host",
    ] {
        headers.remove(hop);
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a client");
    match client
        .request(parts.method, &target)
        .headers(headers)
        .body(body)
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status();
            let body = r.bytes().await.unwrap_or_default();
            (status, body).into_response()
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}
