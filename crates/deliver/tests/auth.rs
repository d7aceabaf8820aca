//! Each auth kind against a real local server, checking what arrives; OAuth 2
//! against a real local token endpoint that counts token requests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alertpost_config::Config;
use alertpost_deliver::{Answer, Client, Endpoint, RequestMeta, Verdict, classify};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use bytes::Bytes;

#[derive(Default)]
struct Server {
    /// Authorization (or DD-API-KEY) of every hook request.
    seen: Mutex<Vec<HeaderMap>>,
    token_requests: AtomicUsize,
    token_forms: Mutex<Vec<String>>,
    /// The token the hook accepts; `None` accepts anything.
    valid: Mutex<Option<String>>,
    expires_in: AtomicUsize,
    token_fails: std::sync::atomic::AtomicBool,
}

async fn start() -> (String, Arc<Server>) {
    let server = Arc::new(Server::default());
    server.expires_in.store(3600, Ordering::SeqCst);
    let app = Router::new()
        .route(
            "/hook",
            post(|State(s): State<Arc<Server>>, headers: HeaderMap| async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
                s.seen.lock().unwrap().push(headers);
                let valid = s.valid.lock().unwrap().clone();
                match valid {
                    Some(token) if auth.as_deref() != Some(&format!("Bearer {token}")) => StatusCode::UNAUTHORIZED,
                    _ => StatusCode::OK,
                }
            }),
        )
        .route(
            "/token",
            post(|State(s): State<Arc<Server>>, body: String| async move {
                let n = s.token_requests.fetch_add(1, Ordering::SeqCst) + 1;
                s.token_forms.lock().unwrap().push(body);
                // A slow token endpoint makes concurrent attempts overlap.
                tokio::time::sleep(Duration::from_millis(50)).await;
                if s.token_fails.load(Ordering::SeqCst) {
                    return (StatusCode::INTERNAL_SERVER_ERROR, "{\"error\":\"server_error\"}".to_owned());
                }
                let expires = s.expires_in.load(Ordering::SeqCst);
                (
                    StatusCode::OK,
                    format!("{{\"access_token\":\"tok-{n}\",\"token_type\":\"Bearer\",\"expires_in\":{expires}}}"),
                )
            }),
        )
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, server)
}

fn config(base: &str, auth: &str) -> Config {
    let text = format!(
        "[policy]\nallow_networks = [\"127.0.0.0/8\"]\n[[integration]]\nid = \"hook\"\nurl = \"{base}/hook\"\ntimeout = \"2s\"\nauth = {auth}\n"
    );
    alertpost_config::parse(&text, "test.toml", &|name| {
        (name == "SECRET").then(|| "s3cr3t".to_owned())
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

fn meta() -> RequestMeta<'static> {
    RequestMeta {
        delivery_id: "dlv_1",
        event_id: "evt_1",
        attempt: 1,
        timestamp: 1_764_064_800,
    }
}

async fn attempt(client: &Client, endpoint: &Endpoint) -> Answer {
    client
        .deliver(endpoint, Bytes::from_static(b"{}"), &meta())
        .await
        .result
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

#[tokio::test]
async fn static_auth_kinds_send_their_headers() {
    let (base, server) = start().await;
    for (auth, name, expected) in [
        (
            r#"{ type = "basic", username = "al", password = "${SECRET}" }"#,
            "authorization",
            "Basic YWw6czNjcjN0",
        ),
        (
            r#"{ type = "bearer", token = "${SECRET}" }"#,
            "authorization",
            "Bearer s3cr3t",
        ),
        (
            r#"{ type = "header", headers = { "DD-API-KEY" = "${SECRET}" } }"#,
            "dd-api-key",
            "s3cr3t",
        ),
    ] {
        let c = config(&base, auth);
        let client = Client::new(c.policy.clone()).unwrap();
        let endpoint = Endpoint::new(&c.integrations[0], &client).unwrap();
        assert_eq!(attempt(&client, &endpoint).await.status(), Some(200));
        let seen = server.seen.lock().unwrap().pop().unwrap();
        assert_eq!(header(&seen, name).as_deref(), Some(expected), "{auth}");
        assert!(
            !format!("{endpoint:?}").contains("s3cr3t"),
            "{auth}: Debug shows no secret"
        );
    }
}

#[tokio::test]
async fn oauth2_fetches_once_caches_and_sends_the_token() {
    let (base, server) = start().await;
    let c = config(
        &base,
        &format!(
            r#"{{ type = "oauth2", client_id = "app", client_secret = "${{SECRET}}", token_url = "{base}/token", scopes = ["alerts:write", "read"] }}"#
        ),
    );
    let client = Client::new(c.policy.clone()).unwrap();
    let endpoint = Endpoint::new(&c.integrations[0], &client).unwrap();

    // Concurrent first attempts share one token request.
    let results = futures_join(&client, &endpoint, 8).await;
    assert!(
        results.iter().all(|r| r.status() == Some(200)),
        "{results:?}"
    );
    assert_eq!(attempt(&client, &endpoint).await.status(), Some(200));
    assert_eq!(server.token_requests.load(Ordering::SeqCst), 1);
    let form = server.token_forms.lock().unwrap()[0].clone();
    assert_eq!(
        form,
        "grant_type=client_credentials&client_id=app&client_secret=s3cr3t&scope=alerts%3Awrite+read"
    );
    for seen in server.seen.lock().unwrap().iter() {
        assert_eq!(
            header(seen, "authorization").as_deref(),
            Some("Bearer tok-1")
        );
    }
}

#[tokio::test]
async fn a_huge_expires_in_is_capped_not_a_panic() {
    let (base, server) = start().await;
    server.expires_in.store(usize::MAX, Ordering::SeqCst);
    let c = config(
        &base,
        &format!(
            r#"{{ type = "oauth2", client_id = "app", client_secret = "x", token_url = "{base}/token" }}"#
        ),
    );
    let client = Client::new(c.policy.clone()).unwrap();
    let endpoint = Endpoint::new(&c.integrations[0], &client).unwrap();
    assert_eq!(attempt(&client, &endpoint).await.status(), Some(200));
    assert_eq!(attempt(&client, &endpoint).await.status(), Some(200));
    assert_eq!(server.token_requests.load(Ordering::SeqCst), 1, "cached");
}

async fn futures_join(client: &Client, endpoint: &Endpoint, n: usize) -> Vec<Answer> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let client = client.clone();
        let endpoint = endpoint.clone();
        tasks.spawn(async move { attempt(&client, &endpoint).await });
    }
    let mut out = Vec::new();
    while let Some(r) = tasks.join_next().await {
        out.push(r.unwrap());
    }
    out
}

#[tokio::test]
async fn oauth2_refreshes_before_expiry_and_once_on_401() {
    let (base, server) = start().await;
    server.expires_in.store(1, Ordering::SeqCst);
    let c = config(
        &base,
        &format!(
            r#"{{ type = "oauth2", client_id = "app", client_secret = "x", token_url = "{base}/token" }}"#
        ),
    );
    let client = Client::new(c.policy.clone()).unwrap();
    let endpoint = Endpoint::new(&c.integrations[0], &client).unwrap();
    assert_eq!(attempt(&client, &endpoint).await.status(), Some(200));
    assert_eq!(server.token_requests.load(Ordering::SeqCst), 1);
    // A one-second token is refreshed shortly before it expires.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(attempt(&client, &endpoint).await.status(), Some(200));
    assert_eq!(server.token_requests.load(Ordering::SeqCst), 2);

    // The endpoint now refuses tok-2: one 401, a fresh token, success.
    server.expires_in.store(3600, Ordering::SeqCst);
    *server.valid.lock().unwrap() = Some("tok-3".to_owned());
    server.seen.lock().unwrap().clear();
    let result = attempt(&client, &endpoint).await;
    assert_eq!(result.status(), Some(200), "{result:?}");
    assert_eq!(server.token_requests.load(Ordering::SeqCst), 3);
    let auths: Vec<_> = server
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|h| header(h, "authorization"))
        .collect();
    assert_eq!(
        auths,
        [
            Some("Bearer tok-2".to_owned()),
            Some("Bearer tok-3".to_owned())
        ]
    );

    // Refused again after the refresh: the 401 stands (no loop).
    *server.valid.lock().unwrap() = Some("never".to_owned());
    let result = attempt(&client, &endpoint).await;
    assert_eq!(result.status(), Some(401));
    assert_eq!(server.token_requests.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_failing_token_endpoint_is_a_retry_and_nothing_is_sent() {
    let (base, server) = start().await;
    server.token_fails.store(true, Ordering::SeqCst);
    let c = config(
        &base,
        &format!(
            r#"{{ type = "oauth2", client_id = "app", client_secret = "${{SECRET}}", token_url = "{base}/token" }}"#
        ),
    );
    let client = Client::new(c.policy.clone()).unwrap();
    let endpoint = Endpoint::new(&c.integrations[0], &client).unwrap();
    let result = attempt(&client, &endpoint).await;
    let Answer::Token(reason) = &result else {
        panic!("{result:?}")
    };
    assert!(
        reason.contains("token endpoint answered HTTP 500"),
        "{reason}"
    );
    assert!(!reason.contains("s3cr3t"));
    assert!(matches!(
        classify(&result, &endpoint.validate),
        Verdict::Retry { .. }
    ));
    assert!(server.seen.lock().unwrap().is_empty());
    assert_eq!(result.code(), alertpost_event::job::AttemptCode::Token);
}

#[tokio::test]
async fn a_token_endpoint_that_never_stops_answering_is_cut_off() {
    // An endless 200 body: read up to the cap, then a token failure.
    let app = Router::new().route(
        "/token",
        post(|| async {
            let chunks = futures_util::stream::repeat_with(|| {
                Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 16 * 1024]))
            });
            axum::body::Body::from_stream(chunks)
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let c = config(
        &base,
        &format!(
            r#"{{ type = "oauth2", client_id = "app", client_secret = "x", token_url = "{base}/token" }}"#
        ),
    );
    let client = Client::new(c.policy.clone()).unwrap();
    let endpoint = Endpoint::new(&c.integrations[0], &client).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), attempt(&client, &endpoint))
        .await
        .expect("bounded");
    let Answer::Token(reason) = &result else {
        panic!("{result:?}")
    };
    assert!(reason.contains("over 65536 bytes"), "{reason}");
}
