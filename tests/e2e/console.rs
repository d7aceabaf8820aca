//! The console on a worker's admin address: the pages as HTML (readable
//! without script), their token, and the whole operator path in headless
//! Chromium (tests/e2e/console.py, Playwright driving Debian's chromium).

use std::process::Command;
use std::time::Duration;

use alertpost_event::{Event, Status, delivery_id};
use alertpost_tests::{Backend, Receiver, Reply, RunningWorker, TestPrefix, eventually};
use rstest::rstest;

const TOKEN: &str = "console-test-token-0123456789";
const WAIT: Duration = Duration::from_secs(20);

fn config(receiver: &Receiver) -> String {
    format!(
        "[admin]\ntoken = \"{TOKEN}\"\n[policy]\nallow_networks = [\"127.0.0.0/8\"]\n\
         [[integration]]\nid = \"hook\"\nname = \"The <b>hook</b>\"\nurl = \"{}\"\n\
         [[integration]]\nid = \"gone\"\nurl = \"{}\"\nheaders = {{ authorization = \"Bearer receiver-secret-42\" }}\n",
        receiver.url("/hook"),
        receiver.url("/gone"),
    )
}

/// A worker whose `gone` dead-letters the first `dead` events published
/// (410, echoing its secret), returned with them.
async fn with_dead_letters(
    backend: Backend,
    name: &str,
    dead: usize,
) -> (TestPrefix, Receiver, RunningWorker, Vec<Event>) {
    let prefix = TestPrefix::new(name);
    let receiver = Receiver::start().await;
    receiver.script(
        "/gone",
        (0..dead)
            .map(|_| Reply::status(410).body("gone; your token receiver-secret-42 is refused")),
    );
    let worker = RunningWorker::start_on(backend, &prefix, &config(&receiver)).await;
    let mut events = Vec::new();
    for n in 0..dead {
        events.push(
            worker
                .publish(Event::new("test", Status::Firing, format!("console {n}")))
                .await,
        );
    }
    eventually(WAIT, "the dead letters", || async {
        let n = worker.dead_count(&prefix).await;
        if n == dead {
            Ok(())
        } else {
            Err(format!("{n} dead"))
        }
    })
    .await;
    (prefix, receiver, worker, events)
}

/// `method url` with the token; the status and the JSON answer.
async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
) -> (u16, serde_json::Value) {
    let answer = http
        .request(method, url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    let text = answer.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Every page is whole HTML from the server, behind the token (Basic or
/// Bearer); actions take only a Bearer header; secrets are masked.
#[rstest]
#[case::rabbitmq(Backend::RabbitMq)]
#[case::embedded(Backend::Embedded)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_pages_hold_the_data_behind_the_token(#[case] backend: Backend) {
    let (prefix, receiver, mut worker, events) =
        with_dead_letters(backend, "console-pages", 1).await;
    let e = &events[0];
    receiver.wait_for(2, WAIT).await;
    let base = format!("http://{}", worker.admin);
    let http = client();

    let anonymous = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(
        anonymous.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic"),
        "a browser asks for it"
    );
    let wrong = http
        .get(format!("{base}/"))
        .basic_auth("operator", Some("not-the-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    let page = |path: &str| {
        let (http, url) = (http.clone(), format!("{base}{path}"));
        async move {
            let answer = http
                .get(url)
                .basic_auth("operator", Some(TOKEN))
                .send()
                .await
                .unwrap();
            let status = answer.status().as_u16();
            let headers = answer.headers().clone();
            (status, headers, answer.text().await.unwrap())
        }
    };
    // The state follows the dead letter's confirm: wait for it.
    let (status, headers, overview) = eventually(WAIT, "gone in warning", || async {
        let answer = page("/").await;
        if answer
            .2
            .contains(r#"<span class="state warning">warning</span>"#)
        {
            Ok(answer)
        } else {
            Err(answer.2)
        }
    })
    .await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert_eq!(headers["cache-control"], "no-store");
    for expected in [
        r#"data-integration="hook""#,
        r#"data-integration="gone""#,
        "The &lt;b&gt;hook&lt;/b&gt;",
        r#"data-action="test""#,
        "/console/console.js",
    ] {
        assert!(overview.contains(expected), "{expected} in {overview}");
    }
    assert!(!overview.contains("<b>hook</b>"), "names are escaped");
    assert!(!overview.contains("receiver-secret-42"), "{overview}");
    assert!(
        overview.contains("your token *** is refused"),
        "the last error, masked: {overview}"
    );

    // The dead letter, listed and in full.
    let dead_id = delivery_id(&e.id, "gone");
    let (status, _, list) = page("/dead-letters").await;
    assert_eq!(status, 200);
    assert!(list.contains(&e.id) && list.contains(&dead_id), "{list}");
    assert!(list.contains(r#"data-action="purge""#));
    assert!(!list.contains("receiver-secret-42"), "{list}");
    assert!(list.contains("your token *** is refused"), "{list}");
    let hook_id = delivery_id(&e.id, "hook");
    // Once the store wrote the attempts (every few hundred milliseconds).
    let one = eventually(WAIT, "the letter with this worker's records", || async {
        let (status, _, one) = page(&format!("/dead-letters/{dead_id}")).await;
        if status == 200 && one.contains("Recorded by this worker") {
            Ok(one)
        } else {
            Err(one)
        }
    })
    .await;
    assert!(
        one.contains("HTTP 410") && one.contains("console 0"),
        "{one}"
    );
    assert!(!one.contains("receiver-secret-42"), "{one}");
    assert!(one.contains("your token *** is refused"), "{one}");
    assert!(!one.contains(&hook_id), "only the dead delivery's records");
    let (status, _, _) = page("/dead-letters/no-such-letter").await;
    assert_eq!(status, 404);

    // Attempts by event id and by delivery id.
    let (_, _, by_event) = page(&format!("/attempts?q={}", e.id)).await;
    assert!(
        by_event.contains(&dead_id) && by_event.contains(&hook_id),
        "{by_event}"
    );
    assert!(!by_event.contains("receiver-secret-42"), "{by_event}");
    let (_, _, by_delivery) = page(&format!("/attempts?q={dead_id}")).await;
    assert!(
        by_delivery.contains(r#"<table class="attempts">"#) && by_delivery.contains("HTTP 410"),
        "its attempt, in the table: {by_delivery}"
    );
    assert!(!by_delivery.contains(&hook_id), "only that delivery");
    assert!(
        by_delivery.contains("<summary>request</summary>") && by_delivery.contains("console 0"),
        "what the failed attempt sent: {by_delivery}"
    );
    assert_eq!(
        by_event.matches("<summary>request</summary>").count(),
        1,
        "a delivered attempt keeps no request: {by_event}"
    );
    let (_, _, none) = page("/attempts?q=nothing-by-this-id").await;
    assert!(none.contains("No attempts of an event or delivery"));
    assert!(!none.contains(r#"<table class="attempts">"#));

    // The JSON the console's data comes from, masked the same.
    let get_json = |path: String| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let text = http
                .get(format!("{base}{path}"))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert!(!text.contains("receiver-secret-42"), "{path}: {text}");
            assert!(text.contains("your token *** is refused"), "{path}: {text}");
            text
        }
    };
    let attempts: serde_json::Value =
        serde_json::from_str(&get_json(format!("/v1/attempts?delivery_id={dead_id}")).await)
            .unwrap();
    assert_eq!(attempts.as_array().unwrap().len(), 1, "{attempts}");
    assert_eq!(
        attempts[0]["response_body"],
        "gone; your token *** is refused"
    );
    get_json("/v1/dead-letters".to_owned()).await;
    get_json(format!("/v1/dlq/{dead_id}")).await;
    get_json("/v1/dlq".to_owned()).await;
    let bad_id = http
        .get(format!("{base}/v1/attempts?delivery_id=x"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_id.status(), 400, "a delivery id of another form");

    // Actions: Basic credentials (which a browser sends by itself) do not
    // do; the Bearer header does.
    for (path, body) in [
        ("/v1/dlq/replay", r#"{"integration": "gone"}"#),
        ("/v1/dlq/purge", ""),
        ("/v1/integrations/hook/test", ""),
    ] {
        let by_basic = http
            .post(format!("{base}{path}"))
            .basic_auth("operator", Some(TOKEN))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(by_basic.status(), 401, "{path} by Basic");
    }
    assert_eq!(
        worker.dead_count(&prefix).await,
        1,
        "nothing replayed or purged"
    );
    let (code, trial) = call(
        &http,
        reqwest::Method::POST,
        format!("{base}/v1/integrations/hook/test"),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(trial["delivered"], true, "{trial}");
    assert!(
        trial["text"]
            .as_str()
            .unwrap()
            .contains("result: delivered")
    );
    // A test of `gone` whose answer echoes the secret: masked in the text.
    receiver.script(
        "/gone",
        [Reply::status(410).body("gone; your token receiver-secret-42 is refused")],
    );
    let (_, trial) = call(
        &http,
        reqwest::Method::POST,
        format!("{base}/v1/integrations/gone/test"),
    )
    .await;
    assert_eq!(trial["delivered"], false);
    let text = trial["text"].as_str().unwrap();
    assert!(
        text.contains("your token *** is refused") && !text.contains("receiver-secret-42"),
        "{text}"
    );
    assert!(text.contains("authorization: *** (masked)"), "{text}");
    let (code, _) = call(
        &http,
        reqwest::Method::POST,
        format!("{base}/v1/integrations/nope/test"),
    )
    .await;
    assert_eq!(code, 404);
    let (_, status) = call(
        &http,
        reqwest::Method::GET,
        format!("{base}/v1/integrations"),
    )
    .await;
    let gone = status
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == "gone")
        .unwrap();
    assert_eq!(gone["state"], "warning", "{gone}");
    assert_eq!(gone["dead"], 1);
    assert!(gone["last_failure"].is_string());
    assert!(!gone.to_string().contains("receiver-secret-42"), "{gone}");

    // Assets are the binary's own.
    let js = http
        .get(format!("{base}/console/console.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), 200);
    assert!(
        js.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    worker.stop().await.unwrap();
}

/// Without a token, on loopback: a write another site's page makes the
/// browser send is refused (its `Origin`, its `Sec-Fetch-Site`), and so is
/// a host name that is not local (DNS rebinding); clients that are no
/// browser, and the console itself, go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_another_site_cannot_act_or_read() {
    let prefix = TestPrefix::new("console-origin");
    let receiver = Receiver::start().await;
    let toml = format!(
        "[policy]\nallow_networks = [\"127.0.0.0/8\"]\n[[integration]]\nid = \"hook\"\nurl = \"{}\"\n",
        receiver.url("/hook")
    );
    let mut worker = RunningWorker::start(&prefix, &toml).await;
    let base = format!("http://{}", worker.admin);
    let http = client();
    let post = |headers: Vec<(&'static str, String)>| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let mut request = http.post(format!("{base}/v1/integrations/hook/test"));
            for (k, v) in headers {
                request = request.header(k, v);
            }
            request.send().await.unwrap().status().as_u16()
        }
    };
    let from = |k: &'static str, v: &str| vec![(k, v.to_owned())];
    assert_eq!(post(from("origin", "http://evil.example")).await, 403);
    assert_eq!(post(from("sec-fetch-site", "cross-site")).await, 403);
    assert_eq!(post(from("origin", "null")).await, 403);
    assert!(receiver.requests_to("/hook").is_empty(), "nothing was sent");
    let own = vec![
        ("origin", base.clone()),
        ("sec-fetch-site", "same-origin".to_owned()),
    ];
    assert_eq!(post(own).await, 200, "the console's own page");
    assert_eq!(post(Vec::new()).await, 200, "a client that is no browser");
    assert_eq!(receiver.requests_to("/hook").len(), 2);

    let rebound = http
        .get(format!("{base}/"))
        .header("host", format!("evil.example:{}", worker.admin.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 403, "a name that is not local");
    let local = http
        .get(format!("{base}/"))
        .header("host", format!("localhost:{}", worker.admin.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(local.status(), 200);
    worker.stop().await.unwrap();
}

/// The operator's path in headless Chromium: the overview names the
/// integrations, a test delivery shows its exchange, a dead letter is
/// shown, replayed from the page (and delivered), the rest purged after a
/// confirmation.
#[rstest]
#[case::rabbitmq(Backend::RabbitMq)]
#[case::embedded(Backend::Embedded)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_headless_chromium_replays_a_dead_letter(#[case] backend: Backend) {
    let (prefix, receiver, mut worker, events) =
        with_dead_letters(backend, "console-chromium", 2).await;
    let (replayed, purged) = (&events[0], &events[1]);
    let python = format!(
        "{}/../target/test-python/bin/python",
        env!("CARGO_MANIFEST_DIR")
    );
    let script = format!("{}/e2e/console.py", env!("CARGO_MANIFEST_DIR"));
    let shots = tempfile::tempdir().unwrap();
    let screenshot = shots.path().join("console.png");
    let base = format!("http://{}", worker.admin);
    let (tx, rx) = tokio::sync::oneshot::channel();
    {
        let args = [
            base,
            TOKEN.to_owned(),
            replayed.id.clone(),
            purged.id.clone(),
            screenshot.display().to_string(),
        ];
        let python = python.clone();
        std::thread::spawn(move || {
            let out = Command::new(&python).arg(&script).args(&args).output();
            let _ = tx.send(out);
        });
    }
    let out = tokio::time::timeout(Duration::from_secs(120), rx)
        .await
        .expect("the browser finishes within 2 minutes")
        .unwrap()
        .unwrap_or_else(|e| {
            panic!("{python} runs (scripts/ensure-test-tools.sh installs it): {e}")
        });
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        screenshot.metadata().unwrap().len() > 10_000,
        "a screenshot"
    );

    // The replay from the page delivered; the purged one never arrives.
    let replayed_id = delivery_id(&replayed.id, "gone");
    receiver
        .wait_delivered(&[replayed_id].into_iter().collect(), WAIT)
        .await;
    assert!(
        receiver
            .requests_to("/hook")
            .iter()
            .any(|r| r.json()["id"] == alertpost_render::sample::full().id),
        "the Test button's delivery of the sample event"
    );
    assert_eq!(worker.dead_count(&prefix).await, 0, "purged");
    let purged_id = delivery_id(&purged.id, "gone");
    assert!(!receiver.delivered_ids().contains(&purged_id));
    worker.stop().await.unwrap();
}
