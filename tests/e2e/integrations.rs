//! What users configure per integration, end to end: filters, templates,
//! presets, auth, signatures, validators, reload.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use alertpost_event::{Event, Severity, Status};
use alertpost_tests::{Backend, Receiver, Reply, RunningWorker, TestPrefix};
use rstest::rstest;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);
const POLICY: &str = "[policy]\nallow_networks = [\"127.0.0.0/8\"]\n";

fn event(title: &str, severity: Option<Severity>, status: Status, team: &str) -> Event {
    let mut e = Event::new("test", status, title);
    e.severity = severity;
    e.labels.insert("team".into(), team.into());
    e
}

/// Titles of the events each path received.
fn titles_by_path(receiver: &Receiver) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in receiver.requests() {
        out.entry(r.path.clone())
            .or_default()
            .insert(r.json()["title"].as_str().unwrap_or("").to_owned());
    }
    out
}

#[rstest]
#[case::rabbitmq(Backend::RabbitMq)]
#[case::embedded(Backend::Embedded)]
#[tokio::test]
async fn filters_route_each_event_to_the_integrations_that_match(#[case] backend: Backend) {
    let prefix = TestPrefix::new("filters");
    let receiver = Receiver::start().await;
    let toml = format!(
        r#"{POLICY}
[[integration]]
id = "db-urgent"
url = "{db}"
match = ['labels.team="db"', 'severity=~"critical|high"']

[[integration]]
id = "open"
url = "{open}"
match = ['status!="resolved"']

[[integration]]
id = "ml"
url = "{ml}"
match = ['data.model_id=~"churn-.*"']

[[integration]]
id = "off"
enabled = false
url = "{off}"
"#,
        db = receiver.url("/db"),
        open = receiver.url("/open"),
        ml = receiver.url("/ml"),
        off = receiver.url("/off"),
    );
    let mut worker = RunningWorker::start_on(backend, &prefix, &toml).await;
    let mut model = event("e4", None, Status::Firing, "ml");
    model.data.insert("model_id".into(), json!("churn-v3"));
    let events = vec![
        event("e1", Some(Severity::Critical), Status::Firing, "db"),
        event("e2", Some(Severity::Warning), Status::Firing, "db"),
        event("e3", Some(Severity::High), Status::Resolved, "web"),
        model,
        event("e5", Some(Severity::High), Status::Resolved, "db"),
    ];
    worker.publish_all(events).await;
    receiver.wait_for(6, WAIT).await;
    receiver.assert_no_more(6, Duration::from_millis(500)).await;

    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let got = titles_by_path(&receiver);
    assert_eq!(got["/db"], set(&["e1", "e5"]));
    assert_eq!(got["/open"], set(&["e1", "e2", "e4"]));
    assert_eq!(got["/ml"], set(&["e4"]));
    assert!(!got.contains_key("/off"));
    worker.stop().await.unwrap();
    // e3 matched nothing and was acked all the same.
    assert_eq!(worker.waiting(&prefix).await, 0);
}

#[rstest]
#[case::rabbitmq(Backend::RabbitMq)]
#[case::embedded(Backend::Embedded)]
#[tokio::test]
async fn hostile_strings_render_to_valid_json(#[case] backend: Backend) {
    let prefix = TestPrefix::new("hostile");
    let receiver = Receiver::start().await;
    let toml = format!(
        r#"{POLICY}
[[integration]]
id = "custom"
url = "{url}"
template = '''
{{
  "summary": "[{{{{ severity | upper }}}}] {{{{ title }}}}",
  "text": "{{{{ message }}}}",
  "team": "{{{{ labels.team }}}}",
  "labels": "{{{{ labels }}}}",
  "payload": "{{{{ data.payload }}}}",
  "count": "{{{{ data.count }}}}",
  "missing": "{{{{ data.nothing }}}}",
  "{{{{ labels.team }}}}": true
}}
'''
"#,
        url = receiver.url("/custom")
    );
    let mut worker = RunningWorker::start_on(backend, &prefix, &toml).await;
    let hostile = "quote \" backslash \\ newline \n tab \t unicode ✓ 🔥 \u{0007} </script> {{ title }} {% raw %}";
    let mut e = Event::new("test", Status::Firing, "t");
    e.severity = Some(Severity::Critical);
    e.message = Some(hostile.to_owned());
    e.labels.insert("team".into(), hostile.to_owned());
    e.data.insert(
        "payload".into(),
        json!({"nested": [hostile, 1.5, null, true]}),
    );
    e.data.insert("count".into(), json!(42));
    worker.publish(e).await;
    let got = receiver.wait_for(1, WAIT).await;
    let body: Value = got[0].json();
    assert_eq!(body["summary"], "[CRITICAL] t");
    assert_eq!(body["text"], hostile);
    assert_eq!(body["team"], hostile);
    assert_eq!(body["labels"], json!({"team": hostile}));
    assert_eq!(
        body["payload"],
        json!({"nested": [hostile, 1.5, null, true]})
    );
    assert_eq!(body["count"], 42);
    assert!(body.get("missing").is_none());
    assert_eq!(body[hostile], true);
    assert_eq!(got[0].header("content-type"), Some("application/json"));
    worker.stop().await.unwrap();
}

#[rstest]
#[case::rabbitmq(Backend::RabbitMq)]
#[case::embedded(Backend::Embedded)]
#[tokio::test]
async fn text_templates_and_presets_send_their_shape(#[case] backend: Backend) {
    let prefix = TestPrefix::new("presets");
    let receiver = Receiver::start().await;
    let toml = format!(
        r#"{POLICY}
[[integration]]
id = "text"
url = "{text}"
template = "{{{{ status | upper }}}}: {{{{ title }}}}"
content_type = "text/plain; charset=utf-8"

[[integration]]
id = "oncall"
url = "{oncall}"
format = "grafana-oncall"

[[integration]]
id = "pd"
url = "{pd}"
format = "pagerduty"
routing_key = "R0UT1NG"
"#,
        text = receiver.url("/text"),
        oncall = receiver.url("/oncall"),
        pd = receiver.url("/pd"),
    );
    let mut worker = RunningWorker::start_on(backend, &prefix, &toml).await;
    let mut e = event("Disk full", Some(Severity::High), Status::Resolved, "db");
    e.dedup_key = Some("fp-1".into());
    worker.publish(e).await;
    receiver.wait_for(3, WAIT).await;
    let text = &receiver.requests_to("/text")[0];
    assert_eq!(&text.body[..], b"RESOLVED: Disk full");
    assert_eq!(
        text.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let oncall = receiver.requests_to("/oncall")[0].json();
    assert_eq!(
        oncall,
        json!({"alert_uid": "fp-1", "title": "Disk full", "state": "ok"})
    );
    let pd = receiver.requests_to("/pd")[0].json();
    assert_eq!(pd["routing_key"], "R0UT1NG");
    assert_eq!(pd["event_action"], "resolve");
    assert_eq!(pd["dedup_key"], "fp-1");
    assert_eq!(pd["payload"]["severity"], "error");
    worker.stop().await.unwrap();
}

/// One captured webhook: its headers and body.
type Captured = (Vec<(String, String)>, Vec<u8>);

/// Verifies captured webhooks with the Standard Webhooks reference library
/// (PyPI `standardwebhooks`); returns how many verified.
fn verify_with_reference(secret: &str, captured: &[Captured]) -> usize {
    let python = format!(
        "{}/../target/test-python/bin/python",
        env!("CARGO_MANIFEST_DIR")
    );
    assert!(
        std::path::Path::new(&python).exists(),
        "{python} is missing: run scripts/ensure-test-tools.sh (make test does)"
    );
    let input: Vec<Value> = captured
        .iter()
        .map(|(headers, body)| {
            let headers: serde_json::Map<String, Value> =
                headers.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            json!({"headers": headers, "body": String::from_utf8_lossy(body)})
        })
        .collect();
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
secret, items = sys.argv[1], json.load(sys.stdin)
ok = 0
for item in items:
    try:
        Webhook(secret).verify(item["body"], item["headers"])
        ok += 1
    except Exception as e:
        print("failed:", e, file=sys.stderr)
print(ok)
"#;
    let mut child = std::process::Command::new(python)
        .args(["-c", script, secret])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python runs");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a count")
}

#[rstest]
#[case::rabbitmq(Backend::RabbitMq)]
#[case::embedded(Backend::Embedded)]
#[tokio::test]
async fn signatures_verify_with_the_reference_implementation(#[case] backend: Backend) {
    let prefix = TestPrefix::new("signed");
    let receiver = Receiver::start().await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let toml = format!(
        "{POLICY}\n[[integration]]\nid = \"signed\"\nurl = \"{}\"\nsecret = \"{secret}\"\nformat = \"slack\"\n\
         [[integration]]\nid = \"unsigned\"\nurl = \"{}\"\n",
        receiver.url("/signed"),
        receiver.url("/unsigned")
    );
    let mut worker = RunningWorker::start_on(backend, &prefix, &toml).await;
    let events: Vec<Event> = (0..5)
        .map(|i| {
            event(
                &format!("signed ✓ \"{i}\""),
                Some(Severity::Info),
                Status::Firing,
                "db",
            )
        })
        .collect();
    worker.publish_all(events).await;
    receiver.wait_for(10, WAIT).await;
    let signed: Vec<_> = receiver
        .requests_to("/signed")
        .into_iter()
        .map(|r| (r.headers.clone(), r.body.to_vec()))
        .collect();
    assert_eq!(signed.len(), 5);
    for (headers, _) in &signed {
        let sig = headers
            .iter()
            .find(|(n, _)| n == "webhook-signature")
            .map(|(_, v)| v.as_str());
        assert!(sig.is_some_and(|s| s.starts_with("v1,")), "{headers:?}");
    }
    assert_eq!(verify_with_reference(secret, &signed), 5);
    // The reference does check: a changed body or another key fails.
    let mut tampered = signed.clone();
    tampered[0].1.push(b' ');
    assert_eq!(verify_with_reference(secret, &tampered), 4);
    assert_eq!(
        verify_with_reference("whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0", &signed),
        0
    );
    for r in receiver.requests_to("/unsigned") {
        assert!(r.header("webhook-signature").is_none());
        assert!(r.header("webhook-id").is_some() && r.header("webhook-timestamp").is_some());
    }
    worker.stop().await.unwrap();
}

#[rstest]
#[case::rabbitmq(Backend::RabbitMq)]
#[case::embedded(Backend::Embedded)]
#[tokio::test]
async fn oauth2_through_the_worker_fetches_one_token(#[case] backend: Backend) {
    let prefix = TestPrefix::new("oauth2");
    let receiver = Receiver::start().await;
    receiver.script(
        "/token",
        [Reply::ok().body(r#"{"access_token":"tok-1","token_type":"bearer","expires_in":3600}"#)],
    );
    let toml = format!(
        "{POLICY}\n[[integration]]\nid = \"api\"\nurl = \"{}\"\n\
         auth = {{ type = \"oauth2\", client_id = \"alertpost\", client_secret = \"${{ALERTPOST_TEST_SECRET}}\", token_url = \"{}\", scopes = [\"alerts\"] }}\n",
        receiver.url("/hook"),
        receiver.url("/token")
    );
    // SAFETY: tests in this binary read the variable only through config
    // parsing, and every writer sets the same value.
    unsafe { std::env::set_var("ALERTPOST_TEST_SECRET", "cl1ent-s3cret") };
    let mut worker = RunningWorker::start_on(backend, &prefix, &toml).await;
    let events: Vec<Event> = (0..20)
        .map(|i| event(&format!("e{i}"), None, Status::Firing, "x"))
        .collect();
    worker.publish_all(events).await;
    receiver.wait_for(21, WAIT).await;
    receiver
        .assert_no_more(21, Duration::from_millis(300))
        .await;
    let tokens = receiver.requests_to("/token");
    assert_eq!(tokens.len(), 1, "one token for twenty deliveries");
    let form = String::from_utf8_lossy(&tokens[0].body).into_owned();
    assert_eq!(
        form,
        "grant_type=client_credentials&client_id=alertpost&client_secret=cl1ent-s3cret&scope=alerts"
    );
    for r in receiver.requests_to("/hook") {
        assert_eq!(r.header("authorization"), Some("Bearer tok-1"));
    }
    worker.stop().await.unwrap();
}

#[rstest]
#[case::rabbitmq(Backend::RabbitMq)]
#[case::embedded(Backend::Embedded)]
#[tokio::test]
async fn a_failed_validator_means_another_try(#[case] backend: Backend) {
    let prefix = TestPrefix::new("validate");
    let receiver = Receiver::start().await;
    receiver.script(
        "/hook",
        [
            Reply::ok().body(r#"{"status":"error","reason":"queue full"}"#),
            Reply::ok().body(r#"{"status":"accepted"}"#),
        ],
    );
    let toml = format!(
        "{POLICY}\n[[integration]]\nid = \"v\"\nurl = \"{}\"\nvalidate = [{{ path = \"$.status\", expected = [\"ok\", \"accepted\"] }}]\nretry = {{ initial = \"1s\", jitter = 0.0 }}\n",
        receiver.url("/hook")
    );
    let mut worker = RunningWorker::start_on(backend, &prefix, &toml).await;
    worker.publish(event("v", None, Status::Firing, "x")).await;
    receiver.wait_for(2, WAIT).await;
    receiver.assert_no_more(2, Duration::from_millis(500)).await;
    worker.stop().await.unwrap();
    assert_eq!(worker.waiting(&prefix).await, 0);
}

#[rstest]
#[case::rabbitmq(Backend::RabbitMq)]
#[case::embedded(Backend::Embedded)]
#[tokio::test]
async fn a_reload_switches_integrations_and_in_flight_deliveries_finish_under_the_old(
    #[case] backend: Backend,
) {
    let prefix = TestPrefix::new("reload");
    let receiver = Receiver::start().await;
    receiver.script("/old", [Reply::ok().delay(Duration::from_millis(1500))]);
    let old = format!(
        "{POLICY}\n[[integration]]\nid = \"old\"\nurl = \"{}\"\n",
        receiver.url("/old")
    );
    let new = format!(
        "{POLICY}\n[[integration]]\nid = \"new\"\nurl = \"{}\"\n",
        receiver.url("/new")
    );
    let mut worker = RunningWorker::start_on(backend, &prefix, &old).await;
    worker
        .publish(event("first", None, Status::Firing, "x"))
        .await;
    receiver.wait_for(1, WAIT).await; // in flight at /old, answered in 1.5 s

    worker.reload(&new).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    worker
        .publish(event("second", None, Status::Firing, "x"))
        .await;
    receiver.wait_for(2, WAIT).await;
    receiver
        .assert_no_more(2, Duration::from_millis(1800))
        .await;
    let got = titles_by_path(&receiver);
    assert_eq!(got["/old"], BTreeSet::from(["first".to_owned()]));
    assert_eq!(got["/new"], BTreeSet::from(["second".to_owned()]));
    worker.stop().await.unwrap();
    // The first finished under the old config and was acked, not redone.
    assert_eq!(worker.waiting(&prefix).await, 0);
}

/// `send_resolved = false` filters resolved events out for its integration;
/// `kinds` chooses the event kinds it gets (`["alert"]` unless listed, `*`
/// for any), so operational events reach only those that opt in.
#[rstest]
#[case::rabbitmq(Backend::RabbitMq)]
#[case::embedded(Backend::Embedded)]
#[tokio::test]
async fn kinds_and_send_resolved_choose_what_an_integration_gets(#[case] backend: Backend) {
    let prefix = TestPrefix::new("kinds");
    let receiver = Receiver::start().await;
    let toml = format!(
        r#"{POLICY}
[[integration]]
id = "plain"
url = "{plain}"

[[integration]]
id = "firing-only"
url = "{firing}"
send_resolved = false

[[integration]]
id = "status"
url = "{status}"
kinds = ["integration.status"]

[[integration]]
id = "any"
url = "{any}"
kinds = ["*"]
"#,
        plain = receiver.url("/plain"),
        firing = receiver.url("/firing-only"),
        status = receiver.url("/status"),
        any = receiver.url("/any"),
    );
    let mut worker = RunningWorker::start_on(backend, &prefix, &toml).await;
    let mut deploy = event("deploy", None, Status::Firing, "web");
    deploy.kind = "deploy".into();
    let mut op = event("op", None, Status::Firing, "web");
    op.kind = "integration.status".into();
    worker
        .publish_all(vec![
            event("firing", None, Status::Firing, "web"),
            event("resolved", None, Status::Resolved, "web"),
            deploy,
            op,
        ])
        .await;
    receiver.wait_for(8, WAIT).await;
    receiver.assert_no_more(8, Duration::from_millis(500)).await;
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let got = titles_by_path(&receiver);
    assert_eq!(got["/plain"], set(&["firing", "resolved"]));
    assert_eq!(got["/firing-only"], set(&["firing"]));
    assert_eq!(got["/status"], set(&["op"]));
    assert_eq!(got["/any"], set(&["firing", "resolved", "deploy", "op"]));
    worker.stop().await.unwrap();
    assert_eq!(worker.waiting(&prefix).await, 0);
}

/// `proxy`: an integration's requests go through its HTTP proxy (from
/// `[defaults]` too), with the proxy URL's credentials as
/// `proxy-authorization`; the outbound policy still holds for the target,
/// checked on what its host resolves to before anything reaches the proxy.
#[tokio::test]
async fn requests_go_through_the_integration_proxy_and_the_policy_still_holds() {
    let prefix = TestPrefix::new("proxy");
    let receiver = Receiver::start().await;
    let proxy = alertpost_tests::http_proxy::HttpProxy::start().await;
    let toml = format!(
        r#"{POLICY}
[defaults]
proxy = "{proxy}"

[[integration]]
id = "via"
url = "{via}"

[[integration]]
id = "direct"
url = "{direct}"
proxy = "{other}"
"#,
        proxy = proxy.url(Some("alert:pr0xy-pw")),
        via = receiver.url("/via"),
        direct = receiver.url("/direct"),
        other = proxy.url(None),
    );
    let mut worker = RunningWorker::start(&prefix, &toml).await;
    let sent = worker
        .publish(event("through", None, Status::Firing, "web"))
        .await;
    receiver.wait_for(2, WAIT).await;
    receiver.assert_no_more(2, Duration::from_millis(300)).await;
    let seen = proxy.forwarded();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let via = seen
        .iter()
        .find(|f| f.target.ends_with("/via"))
        .expect("the proxy forwarded /via");
    assert_eq!(via.method, "POST");
    assert_eq!(via.target, receiver.url("/via"));
    // alert:pr0xy-pw
    assert_eq!(
        via.proxy_authorization.as_deref(),
        Some("Basic YWxlcnQ6cHIweHktcHc=")
    );
    let direct = seen
        .iter()
        .find(|f| f.target.ends_with("/direct"))
        .expect("the proxy forwarded /direct");
    assert_eq!(direct.proxy_authorization, None);
    let delivered = receiver.requests();
    assert!(
        delivered
            .iter()
            .all(|r| r.header("alertpost-event-id") == Some(sent.id.as_str()))
    );
    worker.stop().await.unwrap();

    // A target whose host resolves only to addresses the policy refuses
    // (no allow_networks: loopback is refused) is dead-lettered at once;
    // the proxy (loopback too, but the operator's own) never sees it.
    let refused = TestPrefix::new("proxy-refused");
    let port = receiver.url("/").split(':').nth(2).unwrap_or("").to_owned();
    // And one whose name does not resolve here cannot be checked: not
    // sent either, but tried again like a connection that failed.
    let toml = format!(
        "[[integration]]\nid = \"inside\"\nurl = \"http://localhost:{port}\"\nproxy = \"{p}\"\n\
         [[integration]]\nid = \"unknown\"\nurl = \"http://alertpost-test.invalid/x\"\nproxy = \"{p}\"\n\
         retry = {{ max_attempts = 1 }}\n",
        p = proxy.url(None)
    );
    let mut worker = RunningWorker::start(&refused, &toml).await;
    worker
        .publish(event("inside", None, Status::Firing, "web"))
        .await;
    let mut dead: Vec<Value> = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    while dead.len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "both deliveries dead-lettered; so far {dead:?}"
        );
        for m in worker.take_dead(&refused).await {
            dead.push(serde_json::from_slice(&m.body).unwrap());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let by = |id: &str| {
        dead.iter()
            .find(|l| l["job"]["integration"] == id)
            .unwrap_or_else(|| panic!("no dead letter of {id}: {dead:?}"))
            .clone()
    };
    let inside = by("inside");
    assert_eq!(inside["reason"], "policy", "{inside}");
    assert!(
        inside["detail"]
            .as_str()
            .is_some_and(|d| d.contains("not sent to the proxy")),
        "{inside}"
    );
    let unknown = by("unknown");
    assert_eq!(
        unknown["reason"], "exhausted",
        "a connection failure, tried again: {unknown}"
    );
    assert!(
        unknown["detail"]
            .as_str()
            .is_some_and(|d| d.contains("does not resolve here")),
        "{unknown}"
    );
    assert_eq!(proxy.forwarded().len(), 2, "nothing more reached the proxy");
    worker.stop().await.unwrap();
}

/// `tls` per integration against an HTTPS receiver of a private CA that
/// requires a client certificate: the integration with that CA and a
/// client certificate gets through, one without a certificate or with a
/// certificate of another CA does not (dead after its one attempt), and
/// `server_name` checks the receiver's certificate against a name for a
/// URL that is an IP address (the right name passes, another fails); one
/// through a proxy goes by CONNECT; renewed files are read on a reload.
#[tokio::test]
async fn tls_with_a_private_ca_and_client_certificates() {
    use alertpost_tests::tls::{TestCa, TlsReceiver};
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "private");
    let server = ca.issue("server", &["localhost", "receiver.test"]);
    let client = ca.issue("client", &["alertpost-client"]);
    let rogue = TestCa::new(dir.path(), "rogue").issue("rogue", &["rogue"]);
    let receiver = TlsReceiver::start(&server, Some(&ca.ca_file())).await;
    let port = receiver.addr().port();
    // HTTPS through a proxy goes by CONNECT.
    let proxy = alertpost_tests::http_proxy::HttpProxy::start().await;
    let (ca_file, cert, key) = (
        ca.ca_file().display().to_string(),
        client.cert_file.display().to_string(),
        client.key_file.display().to_string(),
    );
    let once = r#"retry = { max_attempts = 1 }"#;
    let toml = format!(
        r#"[policy]
allow_networks = ["127.0.0.0/8", "::1"]

[[integration]]
id = "mtls"
url = "https://localhost:{port}/mtls"
tls = {{ ca_file = "{ca_file}", cert_file = "{cert}", key_file = "{key}", min_version = "1.2" }}

[[integration]]
id = "no-cert"
url = "https://localhost:{port}/no-cert"
tls = {{ ca_file = "{ca_file}" }}
{once}

[[integration]]
id = "rogue"
url = "https://localhost:{port}/rogue"
tls = {{ ca_file = "{ca_file}", cert_file = "{rogue_cert}", key_file = "{rogue_key}" }}
{once}

[[integration]]
id = "by-name"
url = "https://127.0.0.1:{port}/by-name"
tls = {{ ca_file = "{ca_file}", cert_file = "{cert}", key_file = "{key}", server_name = "receiver.test" }}

[[integration]]
id = "wrong-name"
url = "https://127.0.0.1:{port}/wrong-name"
tls = {{ ca_file = "{ca_file}", cert_file = "{cert}", key_file = "{key}", server_name = "other.test" }}
{once}

[[integration]]
id = "tunnel"
url = "https://localhost:{port}/tunnel"
proxy = "{proxy}"
tls = {{ ca_file = "{ca_file}", cert_file = "{cert}", key_file = "{key}" }}

[[integration]]
id = "rotated"
url = "https://localhost:{port}/rotated"
tls = {{ ca_file = "{ca_file}", cert_file = "{rot_cert}", key_file = "{rot_key}" }}
{once}
"#,
        rogue_cert = rogue.cert_file.display(),
        rogue_key = rogue.key_file.display(),
        proxy = proxy.url(None),
        rot_cert = dir.path().join("rot.pem").display(),
        rot_key = dir.path().join("rot.key").display(),
    );
    std::fs::copy(&client.cert_file, dir.path().join("rot.pem")).unwrap();
    std::fs::copy(&client.key_file, dir.path().join("rot.key")).unwrap();
    let prefix = TestPrefix::new("tls");
    let mut worker = RunningWorker::start(&prefix, &toml).await;
    worker
        .publish(event("secure", None, Status::Firing, "web"))
        .await;
    alertpost_tests::eventually(WAIT, "three dead letters and three deliveries", || async {
        let (n, got) = (worker.dead_count(&prefix).await, receiver.paths().len());
        if n >= 3 && got >= 4 {
            Ok(())
        } else {
            Err(format!("{n} dead, {got} delivered"))
        }
    })
    .await;
    let mut paths = receiver.paths();
    paths.sort();
    assert_eq!(paths, ["/by-name", "/mtls", "/rotated", "/tunnel"]);
    let tunnelled = proxy.forwarded();
    assert_eq!(tunnelled.len(), 1, "{tunnelled:?}");
    assert_eq!(
        (tunnelled[0].method.as_str(), tunnelled[0].target.clone()),
        ("CONNECT", format!("localhost:{port}"))
    );
    let mut dead: Vec<String> = worker
        .take_dead(&prefix)
        .await
        .iter()
        .map(|m| {
            let letter: Value = serde_json::from_slice(&m.body).unwrap();
            letter["job"]["integration"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    dead.sort();
    assert_eq!(dead, ["no-cert", "rogue", "wrong-name"]);
    assert!(
        receiver.refused() >= 2,
        "the receiver refused the handshakes"
    );

    // Files renewed on disk are read again on a reload (SIGHUP): here the
    // rotated integration's certificate is replaced by one the receiver
    // does not trust, and its next delivery fails.
    std::fs::copy(&rogue.cert_file, dir.path().join("rot.pem")).unwrap();
    std::fs::copy(&rogue.key_file, dir.path().join("rot.key")).unwrap();
    worker.reload(&toml).await;
    alertpost_tests::eventually(WAIT, "the reload is applied", || async {
        let m = alertpost_tests::metrics::scrape(worker.admin).await;
        let applied = alertpost_tests::metrics::value(
            &m,
            r#"alertpost_config_reloads_total{result="applied"}"#,
        );
        if applied >= 1.0 {
            Ok(())
        } else {
            Err(format!("{applied} applied"))
        }
    })
    .await;
    worker
        .publish(event("after the renewal", None, Status::Firing, "web"))
        .await;
    alertpost_tests::eventually(WAIT, "the rotated delivery is dead", || async {
        let dead = worker.take_dead(&prefix).await;
        let ids: Vec<String> = dead
            .iter()
            .map(|m| {
                let letter: Value = serde_json::from_slice(&m.body).unwrap();
                letter["job"]["integration"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect();
        if ids.iter().any(|i| i == "rotated") {
            Ok(())
        } else {
            Err(format!("dead so far: {ids:?}"))
        }
    })
    .await;
    assert_eq!(
        receiver.paths().iter().filter(|p| *p == "/rotated").count(),
        1,
        "nothing more got through with the untrusted certificate"
    );
    worker.stop().await.unwrap();
}
