//! One reading of `Authorization` (RFC 9110: `scheme 1*SP credentials`,
//! the scheme in any case, the credentials one word) on every surface that
//! takes a token: the ingest (Bearer, or Basic with the token as password),
//! the admin API (Bearer only: a browser sends Basic by itself) and the
//! console's pages (Bearer or Basic).

use alertpost_tests::{RunningWorker, TestPrefix, start_ingest_with};
use base64::Engine as _;
use serde_json::json;

const TOKEN: &str = "one-token-for-both-0123456789";

fn basic(user: &str, password: &str) -> String {
    let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {pair}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_surface_reads_authorization_one_way() {
    let prefix = TestPrefix::new("tokens");
    prefix.declare().await;
    let toml = format!(
        "[admin]\ntoken = \"{TOKEN}\"\n[ingest]\ntokens = [\"{TOKEN}\"]\n[policy]\nallow_networks = [\"127.0.0.0/8\"]\n"
    );
    let worker = RunningWorker::start(&prefix, &toml).await;
    let config = alertpost_config::parse(&toml, "tokens.toml", &|_| None).unwrap();
    let ingest = start_ingest_with(&prefix.url, prefix.topology.clone(), config.ingest).await;
    let client = reqwest::Client::new();
    let body = json!({"source": "s", "status": "firing", "title": "t"}).to_string();
    // Each surface's verdict on one `Authorization` value: taken or not.
    let ingest_takes = |value: String| {
        let request = client
            .post(format!("http://{ingest}/v1/events"))
            .header("content-type", "application/json")
            .header("authorization", value)
            .body(body.clone());
        async move {
            match request.send().await.unwrap().status().as_u16() {
                202 => true,
                401 => false,
                other => panic!("the ingest answered {other}"),
            }
        }
    };
    let admin_takes = |path: &'static str, value: String| {
        let request = client
            .get(format!("http://{}{path}", worker.admin))
            .header("authorization", value);
        async move {
            match request.send().await.unwrap().status().as_u16() {
                200 => true,
                401 => false,
                other => panic!("{path} answered {other}"),
            }
        }
    };
    // (value, taken as a Bearer token, taken as a Basic password)
    let rows: Vec<(String, bool, bool)> = vec![
        (format!("Bearer {TOKEN}"), true, false),
        (format!("bearer {TOKEN}"), true, false),
        (format!("BEARER   {TOKEN}"), true, false),
        (format!("Bearer{TOKEN}"), false, false),
        (format!("Bearer\t{TOKEN}"), false, false),
        (format!("Bearer {TOKEN} {TOKEN}"), false, false),
        (format!("Token {TOKEN}"), false, false),
        ("Bearer wrong-token-0123456789-xx".to_owned(), false, false),
        (basic("anyone", TOKEN), false, true),
        (basic(TOKEN, "wrong"), false, false),
        (
            format!(
                "basic  {}",
                basic("ops", TOKEN).trim_start_matches("Basic ")
            ),
            false,
            true,
        ),
    ];
    for (value, bearer, basic_password) in rows {
        assert_eq!(
            ingest_takes(value.clone()).await,
            bearer || basic_password,
            "ingest: {value:?}"
        );
        assert_eq!(
            admin_takes("/v1/integrations", value.clone()).await,
            bearer,
            "admin API: {value:?}"
        );
        assert_eq!(
            admin_takes("/", value.clone()).await,
            bearer || basic_password,
            "console: {value:?}"
        );
    }
}
