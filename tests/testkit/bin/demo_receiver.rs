//! A webhook receiver for `make run`: prints every request it gets.
//!
//! `alertpost-demo-receiver [ADDR]` (default 127.0.0.1:9000). Answers 200 to
//! everything. A demo and debugging aid, not a test double.

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9000".to_owned());
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("demo receiver: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    println!("demo receiver listening on http://{addr}");
    let app = Router::new().fallback(show);
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("demo receiver: {e}");
    }
}

async fn show(method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> &'static str {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    let pretty = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    println!(
        "──── {method} {} webhook-id={} attempt={}\n{pretty}",
        uri.path(),
        header("webhook-id"),
        header("alertpost-attempt"),
    );
    "{\"status\":\"ok\"}"
}
