//! A forward HTTP proxy on 127.0.0.1:0 that records what it is asked to
//! reach (the absolute-form target, or the authority of a CONNECT, and
//! the `proxy-authorization` it got) and does it: forwards plain requests,
//! tunnels CONNECT (HTTPS targets). Enough to see an integration's
//! requests go through it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// One request the proxy was asked to forward.
#[derive(Debug, Clone)]
pub struct Forwarded {
    pub method: String,
    /// The target as the client wrote it: `http://host:port/path`, or
    /// `host:port` for a CONNECT.
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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the proxy can listen");
        let addr = listener.local_addr().expect("bound");
        let served = seen.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let seen = served.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(seen.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
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

fn status(code: StatusCode) -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = code;
    r
}

async fn handle(
    seen: Arc<Seen>,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, Infallible> {
    let connect = request.method() == Method::CONNECT;
    let target = if connect {
        request
            .uri()
            .authority()
            .map_or_else(String::new, ToString::to_string)
    } else {
        request.uri().to_string()
    };
    seen.forwarded
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Forwarded {
            method: request.method().to_string(),
            target: target.clone(),
            proxy_authorization: request
                .headers()
                .get("proxy-authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        });
    if connect {
        // 200 now; the tunnel once the client's connection is handed over.
        tokio::spawn(async move {
            let Ok(upgraded) = hyper::upgrade::on(request).await else {
                return;
            };
            let Ok(mut server) = tokio::net::TcpStream::connect(target.as_str()).await else {
                return;
            };
            let mut client = TokioIo::new(upgraded);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        });
        return Ok(Response::new(Body::empty()));
    }
    if !target.starts_with("http://") {
        return Ok(status(StatusCode::BAD_REQUEST));
    }
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(Body::new(body), 4 << 20).await else {
        return Ok(status(StatusCode::BAD_REQUEST));
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
    let Ok(client) = reqwest::Client::builder().no_proxy().build() else {
        return Ok(status(StatusCode::BAD_GATEWAY));
    };
    Ok(
        match client
            .request(parts.method, &target)
            .headers(headers)
            .body(body)
            .send()
            .await
        {
            Ok(r) => {
                let code = r.status();
                let body = r.bytes().await.unwrap_or_default();
                let mut response = Response::new(Body::from(body));
                *response.status_mut() = code;
                response
            }
            Err(_) => status(StatusCode::BAD_GATEWAY),
        },
    )
}
