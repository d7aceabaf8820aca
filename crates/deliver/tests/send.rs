//! One attempt against a real HTTP server on 127.0.0.1.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use alertpost_config::{Config, Policy};
use alertpost_deliver::{Answer, Client, Endpoint, Request, RequestMeta, Verdict, classify};
use axum::Router;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::{any, post};
use bytes::Bytes;

type Seen = Arc<Mutex<Vec<(Method, HeaderMap, Bytes)>>>;

async fn server() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let app = Router::new()
        .route(
            "/ok",
            any(move |method: Method, headers: HeaderMap, body: Bytes| {
                let record = record.clone();
                async move {
                    record.lock().unwrap().push((method, headers, body));
                    (StatusCode::OK, "{\"status\":\"ok\"}")
                }
            }),
        )
        .route(
            "/redirect",
            post(|| async { (StatusCode::FOUND, [("location", "/ok")], "") }),
        )
        .route(
            "/slow",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route("/big", post(|| async { "x".repeat(200_000) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

fn config(url: &str, extra: &str) -> Config {
    let text = format!(
        "[policy]\nallow_networks = [\"127.0.0.0/8\"]\n[[integration]]\nid = \"hook\"\nurl = \"{url}\"\n{extra}\n"
    );
    alertpost_config::parse(&text, "test.toml", &|_| Some("tok".to_owned())).unwrap()
}

fn meta() -> RequestMeta<'static> {
    RequestMeta {
        delivery_id: "dlv_1",
        event_id: "evt_1",
        attempt: 2,
        timestamp: 1_764_064_800,
    }
}

#[tokio::test]
async fn sends_the_documented_headers_and_body() {
    let (base, seen) = server().await;
    let url = format!("{base}/ok").replace("http://", "http://user:p%40ss@");
    let config = config(
        &url,
        "method = \"PUT\"\nheaders = { \"X-Env\" = \"prod\", \"X-Token\" = \"${TOKEN}\" }",
    );
    let client = Client::new(config.policy.clone()).unwrap();
    let request = Request::new(
        &Endpoint::new(&config.integrations[0], &client).unwrap(),
        Bytes::from_static(b"{\"a\":1}"),
        &meta(),
    );
    let attempt = client.send(request.clone()).await;
    assert_eq!(
        classify(&attempt.result, &[]),
        Verdict::Delivered,
        "{attempt:?}"
    );
    let Answer::Response(response) = &attempt.result else {
        panic!()
    };
    assert_eq!(&response.body[..], b"{\"status\":\"ok\"}");

    let seen = seen.lock().unwrap();
    let (method, headers, body) = &seen[0];
    assert_eq!(method, Method::PUT);
    assert_eq!(&body[..], b"{\"a\":1}");
    let h = |n: &str| headers.get(n).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(h("content-type").as_deref(), Some("application/json"));
    assert_eq!(h("webhook-id").as_deref(), Some("dlv_1"));
    assert_eq!(h("webhook-timestamp").as_deref(), Some("1764064800"));
    assert_eq!(h("alertpost-attempt").as_deref(), Some("2"));
    assert_eq!(h("alertpost-event-id").as_deref(), Some("evt_1"));
    assert_eq!(h("x-env").as_deref(), Some("prod"));
    assert_eq!(h("x-token").as_deref(), Some("tok"));
    assert_eq!(
        h("user-agent").as_deref(),
        Some(alertpost_deliver::USER_AGENT)
    );
    // user:p@ss
    assert_eq!(h("authorization").as_deref(), Some("Basic dXNlcjpwQHNz"));
    assert!(h("webhook-signature").is_none());
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let (base, seen) = server().await;
    let config = config(&format!("{base}/redirect"), "");
    let client = Client::new(config.policy.clone()).unwrap();
    let request = Request::new(
        &Endpoint::new(&config.integrations[0], &client).unwrap(),
        Bytes::new(),
        &meta(),
    );
    let attempt = client.send(request.clone()).await;
    assert_eq!(attempt.result.status(), Some(302));
    assert!(matches!(
        classify(&attempt.result, &[]),
        Verdict::Dead { .. }
    ));
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn timeouts_bound_the_attempt() {
    let (base, _) = server().await;
    let config = config(&format!("{base}/slow"), "timeout = \"200ms\"");
    let client = Client::new(config.policy.clone()).unwrap();
    let request = Request::new(
        &Endpoint::new(&config.integrations[0], &client).unwrap(),
        Bytes::new(),
        &meta(),
    );
    let attempt = client.send(request.clone()).await;
    assert!(matches!(attempt.result, Answer::Timeout), "{attempt:?}");
    assert!(attempt.duration < Duration::from_secs(2));
    assert!(matches!(
        classify(&attempt.result, &[]),
        Verdict::Retry { .. }
    ));
}

#[tokio::test]
async fn large_bodies_are_cut() {
    let (base, _) = server().await;
    let config = config(&format!("{base}/big"), "");
    let client = Client::new(config.policy.clone()).unwrap();
    let request = Request::new(
        &Endpoint::new(&config.integrations[0], &client).unwrap(),
        Bytes::new(),
        &meta(),
    );
    let Answer::Response(r) = client.send(request.clone()).await.result else {
        panic!()
    };
    assert_eq!(r.body.len(), alertpost_deliver::exchange::BODY_LIMIT);
    assert!(r.truncated);
}

#[tokio::test]
async fn policy_refuses_loopback_by_address_and_by_name() {
    let (base, seen) = server().await;
    let config = config(&format!("{base}/ok"), "");
    let strict = Client::new(Policy::default()).unwrap();

    let request = Request::new(
        &Endpoint::new(&config.integrations[0], &strict).unwrap(),
        Bytes::new(),
        &meta(),
    );
    let attempt = strict.send(request.clone()).await;
    let Answer::Policy(reason) = &attempt.result else {
        panic!("{attempt:?}")
    };
    assert!(
        reason.contains("127.0.0.1 is not a public address"),
        "{reason}"
    );

    // A host name that resolves to loopback is caught by the resolver.
    let mut by_name = request.clone();
    by_name.url = format!("{base}/ok")
        .replace("127.0.0.1", "localhost")
        .parse()
        .unwrap();
    let attempt = strict.send(by_name.clone()).await;
    let Answer::Policy(reason) = &attempt.result else {
        panic!("{attempt:?}")
    };
    assert!(
        reason.contains("localhost resolves only to addresses the outbound policy refuses"),
        "{reason}"
    );
    assert!(matches!(
        classify(&attempt.result, &[]),
        Verdict::Dead { .. }
    ));
    assert!(seen.lock().unwrap().is_empty());

    // Allowed, the same name goes through.
    let open = Client::new(config.policy.clone()).unwrap();
    let attempt = open.send(by_name).await;
    assert_eq!(attempt.result.status(), Some(200), "{attempt:?}");
}

#[tokio::test]
async fn connection_refused_is_retried_and_hides_the_url() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let config = config(&format!("http://127.0.0.1:{port}/secret-token-path"), "");
    let client = Client::new(config.policy.clone()).unwrap();
    let request = Request::new(
        &Endpoint::new(&config.integrations[0], &client).unwrap(),
        Bytes::new(),
        &meta(),
    );
    let attempt = client.send(request.clone()).await;
    let Answer::Connect(reason) = &attempt.result else {
        panic!("{attempt:?}")
    };
    assert!(!reason.contains("secret-token-path"), "{reason}");
    assert!(matches!(
        classify(&attempt.result, &[]),
        Verdict::Retry { .. }
    ));
}
