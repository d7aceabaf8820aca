use std::time::Duration;

use super::*;
use crate::WorkerSettings;
use crate::integration::{Auth, Kinds, Method, Order, RateLimit};
use crate::policy::Policy;

fn env(name: &str) -> Option<String> {
    match name {
        "TOKEN" => Some("s3cr3t-token".to_owned()),
        "ADMIN" => Some("adm1n-t0ken-long-enough".to_owned()),
        "NEWLINE" => Some("adm1n-t0ken-long\nenough".to_owned()),
        "HOST" => Some("hooks.example.com".to_owned()),
        _ => None,
    }
}

fn ok(text: &str) -> Config {
    match config(text, "t.toml", &env) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

fn problems(text: &str) -> Vec<String> {
    match config(text, "t.toml", &env) {
        Ok(_) => panic!("expected problems"),
        Err(e) => e.problems.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn minimal_integration_gets_the_documented_defaults() {
    let c = ok(r#"
[[integration]]
id = "hook"
url = "https://hooks.example.com/x"
"#);
    let i = &c.integrations[0];
    assert_eq!(i.name, "hook");
    assert!(i.enabled);
    assert_eq!(i.method, Method::Post);
    assert_eq!(i.timeout, Duration::from_secs(10));
    assert_eq!(i.concurrency, 32);
    assert_eq!(i.auth, Auth::None);
    assert!(i.headers.is_empty());
    assert_eq!(c.worker, WorkerSettings::default());
    assert_eq!(c.policy, Policy::default());
    assert_eq!(i.rate_limit, None);
    assert_eq!(i.kinds, Kinds::Only(vec!["alert".to_owned()]));
    assert!(i.send_resolved);
}

#[test]
fn full_file_with_defaults_env_and_policy() {
    let c = ok(r#"
[policy]
require_https = false
allow_networks = ["127.0.0.0/8", "::1"]

[worker]
max_inflight = 64
drain_timeout = "10s"

[defaults]
timeout = "5s"
headers = { "X-Env" = "prod", "X-Team" = "sre" }

[[integration]]
id = "oncall-db"
name = "Grafana OnCall — DB team"
enabled = false
url = "https://${HOST}/integrations/v1/formatted_webhook/XYZ/"
method = "put"
headers = { "X-Team" = "db", "Authorization" = "Bearer ${TOKEN}" }
concurrency = 4

[[integration]]
id = "local"
url = "http://127.0.0.1:9000/hook"
timeout = "250ms"
"#);
    assert_eq!(c.worker.max_inflight, 64);
    assert_eq!(c.worker.drain_timeout, Duration::from_secs(10));
    assert_eq!(c.policy.allow_networks.len(), 2);
    let db = c.integration("oncall-db").unwrap();
    assert_eq!(db.name, "Grafana OnCall — DB team");
    assert!(!db.enabled);
    assert_eq!(
        db.url.as_str(),
        "https://hooks.example.com/integrations/v1/formatted_webhook/XYZ/"
    );
    assert_eq!(db.method, Method::Put);
    assert_eq!(db.timeout, Duration::from_secs(5));
    assert_eq!(db.concurrency, 4);
    let headers: Vec<_> = db
        .headers
        .iter()
        .map(|h| (h.name.as_str(), h.value.expose(), h.sensitive))
        .collect();
    assert_eq!(
        headers,
        [
            ("x-env", "prod", false),
            ("authorization", "Bearer s3cr3t-token", true),
            ("x-team", "db", false)
        ]
    );
    let local = c.integration("local").unwrap();
    assert_eq!(local.timeout, Duration::from_millis(250));
    assert_eq!(c.enabled().count(), 1);
}

#[test]
fn credentials_in_the_url_become_basic_auth() {
    let c = ok(r#"
[[integration]]
id = "ilert"
url = "https://us%40r:p%3Ass@api.example.com/webhooks/ilert"
"#);
    let i = &c.integrations[0];
    assert_eq!(i.url.as_str(), "https://api.example.com/webhooks/ilert");
    let Auth::Basic { username, password } = &i.auth else {
        panic!("{:?}", i.auth)
    };
    assert_eq!(username, "us@r");
    assert_eq!(password.expose(), "p:ss");
    assert!(!format!("{c:?}").contains("p:ss"));
    assert_eq!(i.url_for_logs(), "https://api.example.com/…");
}

#[test]
fn every_problem_is_listed_with_integration_field_and_line() {
    let text = r#"
[defaults]
timeout = "5 parsecs"

[[integration]]
id = "a"
url = "ftp://example.com"

[[integration]]
id = "b"
url = "https://example.com"
method = "DELETE"
concurrency = 0

[[integration]]
url = "https://example.com"

[[integration]]
id = "a"
url = "https://example.com/${NOPE}"

[[integration]]
id = "c"
headers = { "Content-Type" = "text/plain", "X Bad" = "v" }
"#;
    let got = problems(text);
    let expected = [
        "t.toml:3:11: [defaults], field `timeout`: `5 parsecs` is not a duration",
        "t.toml:7:7: integration `a`, field `url`: scheme `ftp` is not supported",
        "t.toml:12:10: integration `b`, field `method`: `DELETE` is not supported",
        "t.toml:13:15: integration `b`, field `concurrency`: must be between 1 and 1024",
        "t.toml:15:1: integration #3, field `id`: required",
        "t.toml:20:7: integration `a`, field `url`: environment variable `NOPE` is not set",
        "t.toml:24:13: integration `c`, field `headers.Content-Type`: alertpost sets this header itself",
        "t.toml:24:44: integration `c`, field `headers.X Bad`: not a valid header name",
        "t.toml:22:1: integration `c`, field `url`: required",
    ];
    assert_eq!(got.len(), expected.len(), "{got:#?}");
    for (got, expected) in got.iter().zip(expected) {
        assert!(
            got.starts_with(expected),
            "got:      {got}\nexpected: {expected}"
        );
    }
}

#[test]
fn duplicate_ids_name_the_first() {
    let got = problems(
        r#"
[[integration]]
id = "x"
url = "https://a.example.com"
[[integration]]
id = "x"
url = "https://b.example.com"
"#,
    );
    assert_eq!(
        got,
        [
            "t.toml:6:6: integration `x`, field `id`: duplicate id; already used by the integration at line 3"
        ]
    );
}

#[test]
fn unknown_keys_and_wrong_types_are_refused_with_their_place() {
    let got =
        problems("[[integration]]\nid = \"hook\"\nurl = \"https://e.com\"\ntimout = \"5s\"\n");
    assert_eq!(got.len(), 1);
    assert!(
        got[0].starts_with("t.toml:4:1: integration `hook`: unknown field `timout`"),
        "{got:?}"
    );

    let got = problems("[defaults]\nenabled = \"yes\"\n");
    assert!(
        got[0].starts_with(
            "t.toml:2:11: [defaults]: invalid type: string \"yes\", expected a boolean"
        ),
        "{got:?}"
    );

    let got = problems("[polcy]\nrequire_https = true\n");
    assert!(got[0].contains("unknown field `polcy`"), "{got:?}");

    let got = problems("[[integration]]\nid = \"x\"\nurl = \"https://e.com\n");
    assert!(
        got[0].starts_with("t.toml:3:")
            && got[0].contains(": integration `x`: invalid basic string"),
        "{got:?}"
    );
}

#[test]
fn policy_refuses_private_literals_and_http() {
    let got = problems(
        r#"
[policy]
require_https = true
[[integration]]
id = "internal"
url = "http://10.0.0.5/hook"
"#,
    );
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].contains("integration `internal`, field `url`: the policy requires https"));
    assert!(got[1].contains("10.0.0.5 is not a public address"));

    let got = problems("[[integration]]\nid = \"m\"\nurl = \"http://[::ffff:169.254.169.254]/\"\n");
    assert!(
        got[0].contains("169.254.169.254 is not a public address"),
        "{got:?}"
    );

    ok(
        "[policy]\nallow_networks = [\"10.0.0.0/8\"]\n[[integration]]\nid = \"i\"\nurl = \"http://10.0.0.5/\"\n",
    );
    let got = problems("[policy]\nallow_networks = [\"10.0.0.0/33\"]\n");
    assert!(
        got[0].contains("[policy], field `allow_networks`"),
        "{got:?}"
    );
}

#[test]
fn secrets_never_appear_in_problems() {
    let got = problems(
        r#"
[[integration]]
id = "x"
url = "https://user:hunter2@example.com/"
headers = { "X-Key" = "${TOKEN}", "bad name" = "${TOKEN}" }
timeout = "forever"
"#,
    );
    let all = got.join("\n");
    assert!(!all.contains("hunter2") && !all.contains("s3cr3t"), "{all}");
    assert_eq!(got.len(), 2, "{all}");
}

#[test]
fn ids_may_not_be_in_defaults() {
    let got = problems("[defaults]\nid = \"x\"\n");
    assert_eq!(
        got,
        ["t.toml:2:6: [defaults], field `id`: ids are per integration; remove it from [defaults]"]
    );
}

#[test]
fn integration_features_load() {
    let c = ok(r#"
[defaults]
validate = [{ path = "$.status", expected = ["ok", 200] }]

[[integration]]
id = "oncall"
url = "https://oncall.example.com/hook"
match = ['severity=~"critical|high"', 'labels.team="db"']
format = "grafana-oncall"
auth = { type = "bearer", token = "${TOKEN}" }
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

[[integration]]
id = "custom"
url = "https://hooks.example.com/x"
template = '''
{ "alert": "{{ title }}", "team": "{{ labels.team }}" }
'''
auth = { type = "oauth2", client_id = "app", client_secret = "${TOKEN}", token_url = "https://auth.example.com/token", scopes = ["alerts:write"] }

[[integration]]
id = "text"
url = "https://hooks.example.com/t"
template = "{{ title }} is {{ status }}"
content_type = "text/plain; charset=utf-8"
auth = { type = "header", headers = { "DD-API-KEY" = "${TOKEN}" } }

[[integration]]
id = "pd"
url = "https://events.pagerduty.com/v2/enqueue"
format = "pagerduty"
routing_key = "${TOKEN}"
auth = { type = "basic", username = "u", password = "p" }
"#);
    let oncall = c.integration("oncall").unwrap();
    assert_eq!(oncall.filter.matchers().len(), 2);
    assert_eq!(oncall.body_source, "format grafana-oncall");
    assert!(matches!(&oncall.auth, Auth::Bearer { token } if token.expose() == "s3cr3t-token"));
    assert_eq!(oncall.signing_key.as_ref().unwrap().bytes().len(), 24);
    assert_eq!(oncall.validate.len(), 1);
    assert_eq!(oncall.validate[0].expected, ["ok", "200"]);
    assert!(oncall.validate[0].check(br#"{"status": 200}"#).is_ok());
    let err = oncall.validate[0]
        .check(br#"{"status": "error"}"#)
        .unwrap_err();
    assert_eq!(err, "$.status: found error, expected one of ok, 200");
    assert!(
        oncall.validate[0]
            .check(b"<html>")
            .unwrap_err()
            .contains("not JSON")
    );

    let custom = c.integration("custom").unwrap();
    assert_eq!(custom.body_source, "template");
    assert_eq!(custom.content_type, "application/json");
    let Auth::OAuth2(o) = &custom.auth else {
        panic!()
    };
    assert_eq!(
        (o.client_id.as_str(), o.client_secret.expose()),
        ("app", "s3cr3t-token")
    );
    assert_eq!(o.scopes, ["alerts:write"]);

    let text = c.integration("text").unwrap();
    assert!(!text.body.is_event());
    let Auth::Header(h) = &text.auth else {
        panic!()
    };
    assert_eq!(
        (h[0].name.as_str(), h[0].value.expose(), h[0].sensitive),
        ("dd-api-key", "s3cr3t-token", true)
    );

    let pd = c.integration("pd").unwrap();
    assert_eq!(pd.routing_key.as_ref().unwrap().expose(), "s3cr3t-token");
    assert!(
        c.integration("oncall").unwrap().filter.matchers()[0]
            .to_string()
            .starts_with("severity=~")
    );
    assert!(
        !format!("{c:?}").contains("s3cr3t"),
        "secrets stay out of Debug"
    );
}

#[test]
fn integration_feature_problems_are_placed() {
    let text = r#"
[[integration]]
id = "a"
url = "https://x.example.com"
match = ['severity="high"', 'sevrity="x"']
format = "nope"

[[integration]]
id = "b"
url = "https://x.example.com"
template = '''
{
  "t": "{{ titel }}",
  "u": "{{ title + }}"
}
'''

[[integration]]
id = "c"
url = "https://x.example.com"
auth = { type = "bearer", username = "u" }
secret = "not-a-secret"
validate = [{ path = "status", expected = [] }]

[[integration]]
id = "d"
url = "https://x.example.com"
format = "pagerduty"
template = "{}"

[[integration]]
id = "e"
url = "https://u:p@x.example.com"
auth = { type = "bearer", token = "t" }
"#;
    let got = problems(text);
    let expected = [
        "t.toml:5:29: integration `a`, field `match[1]`: `sevrity` is not a field",
        "t.toml:6:10: integration `a`, field `format`: `nope` is not a preset; presets: alertpost, grafana-oncall",
        "t.toml:14:20: integration `b`, field `template`: syntax error",
        "t.toml:21:8: integration `c`, field `auth.username`: not used by auth type bearer",
        "t.toml:21:8: integration `c`, field `auth.token`: required by auth type bearer",
        "t.toml:22:10: integration `c`, field `secret`: expected `whsec_`",
        "t.toml:23:22: integration `c`, field `validate[0].path`: not an RFC 9535 JSONPath",
        "t.toml:23:43: integration `c`, field `validate[0].expected`: list at least one value",
        "t.toml:28:10: integration `d`, field `format`: set `format` or `template`, not both",
        "t.toml:34:8: integration `e`, field `auth`: credentials are in the URL and in `auth`",
    ];
    for (got, expected) in got.iter().zip(expected) {
        assert!(
            got.starts_with(expected),
            "got:      {got}\nexpected: {expected}"
        );
    }
    assert_eq!(got.len(), expected.len(), "{got:#?}");
}

#[test]
fn unknown_template_fields_name_their_line() {
    let got = problems(
        "[[integration]]\nid = \"b\"\nurl = \"https://x.example.com\"\ntemplate = '''\n{\n  \"t\": \"{{ titel }}\"\n}\n'''\n",
    );
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with(
            "t.toml:6:12: integration `b`, field `template`: `titel` is not a field of the event"
        ),
        "{got:?}"
    );
}

#[test]
fn pagerduty_needs_a_routing_key_and_templates_must_render() {
    let got = problems(
        "[[integration]]\nid = \"pd\"\nurl = \"https://e.example.com\"\nformat = \"pagerduty\"\n",
    );
    assert!(
        got[0].contains("field `routing_key`: required by format pagerduty"),
        "{got:?}"
    );
    let got = problems(
        "[[integration]]\nid = \"r\"\nurl = \"https://e.example.com\"\ntemplate = '{\"t\": \"{{ title | timestamp_ms }}\"}'\n",
    );
    assert!(
        got[0].contains("field `template`: cannot render a sample event"),
        "{got:?}"
    );
}

#[test]
fn retry_tiers_and_store() {
    let c = ok(r#"
delay_tiers = ["30s", "1s", "5s", "1s"]

[store]
retention = "2d"
max_size = "64MiB"

[defaults]
retry = { max_attempts = 5, initial = "2s" }

[[integration]]
id = "a"
url = "https://a.example.com"
retry = { initial = "1s", multiplier = 3.0, jitter = 0.0 }

[[integration]]
id = "b"
url = "https://b.example.com"
"#);
    assert_eq!(
        c.delay_tiers,
        [
            Duration::from_secs(1),
            Duration::from_secs(5),
            Duration::from_secs(30)
        ]
    );
    assert_eq!(c.store.retention, Duration::from_secs(2 * 86400));
    assert_eq!(c.store.max_size, 64 << 20);
    let a = c.integration("a").unwrap().retry;
    assert_eq!(
        (a.max_attempts, a.initial, a.multiplier, a.jitter),
        (5, Duration::from_secs(1), 3.0, 0.0)
    );
    assert_eq!(a.max_age, Duration::from_secs(86400));
    let b = c.integration("b").unwrap().retry;
    assert_eq!(
        (b.max_attempts, b.initial, b.multiplier),
        (5, Duration::from_secs(2), 2.0)
    );
    assert_eq!(
        ok("[[integration]]\nid = \"x\"\nurl = \"https://x.example.com\"\n")
            .delay_tiers
            .len(),
        8
    );

    let got = problems(
        "delay_tiers = [\"1.5s\", \"forever\"]\n[store]\nmax_size = \"12 parsecs\"\n[[integration]]\nid = \"x\"\nurl = \"https://x.example.com\"\nretry = { max_attempts = 0, multiplier = 0.5, jitter = 2.0, initial = \"soon\" }\n",
    );
    let all = got.join("\n");
    for expected in [
        "delay_tiers: each tier is whole seconds",
        "delay_tiers, field `delay_tiers`: `forever` is not a duration",
        "[store], field `max_size`: not a size",
        "field `retry.max_attempts`: must be between 1 and 1000",
        "field `retry.initial`: `soon` is not a duration",
        "field `retry.multiplier`: must be between 1.0 and 10.0",
        "field `retry.jitter`: must be between 0.0 and 1.0",
    ] {
        assert!(all.contains(expected), "missing `{expected}` in:\n{all}");
    }

    // Spans a clock cannot add are refused, whatever the field.
    let got = problems(
        "[store]\nretention = \"400d\"\n[[integration]]\nid = \"x\"\nurl = \"https://x.example.com\"\nretry = { max_age = \"1000y\" }\ncircuit = { cooldown = \"500000000y\" }\n",
    );
    let all = got.join("\n");
    for expected in [
        "[store], field `retention`: must be at most 365 days",
        "field `retry.max_age`: must be at most 365 days",
        "field `circuit.cooldown`: must be at most 365 days",
    ] {
        assert!(all.contains(expected), "missing `{expected}` in:\n{all}");
    }
}

#[test]
fn the_admin_token_is_a_secret_of_its_own_section() {
    let c = ok(r#"
[admin]
token = "${ADMIN}"
"#);
    let token = c.admin.token.as_ref().expect("a token");
    assert_eq!(token.expose(), "adm1n-t0ken-long-enough");
    assert!(!format!("{c:?}").contains("adm1n"), "Debug hides it");
    assert_eq!(ok("").admin.token, None);

    let found = problems(
        r#"
[admin]
token = "short"
"#,
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("[admin]")
            && found[0].contains("`token`")
            && found[0].contains("t.toml:3:"),
        "{found:?}"
    );
    assert!(found[0].contains("at least 16"), "{found:?}");
    assert!(
        !found[0].contains("short"),
        "the value is not shown: {found:?}"
    );
    let found = problems("[admin]\ntoken = \"${NEWLINE}\"\n");
    assert!(found[0].contains("control characters"), "{found:?}");
    let found = problems("[admin]\ntoken = \"${MISSING}\"\n");
    assert!(found[0].contains("MISSING"), "{found:?}");
    let found = problems("[admin]\ntokn = \"x\"\n");
    assert!(found[0].contains("tokn"), "{found:?}");
}

#[test]
fn ingest_tokens_and_bound() {
    let c = ok(r#"
[ingest]
tokens = ["${ADMIN}", "another-token-0123456789"]
max_concurrent = 8
"#);
    let tokens: Vec<&str> = c.ingest.tokens.iter().map(|t| t.expose()).collect();
    assert_eq!(
        tokens,
        ["adm1n-t0ken-long-enough", "another-token-0123456789"]
    );
    assert_eq!(c.ingest.max_concurrent, 8);
    assert!(
        !format!("{c:?}").contains("another-token"),
        "Debug hides them"
    );
    let d = ok("");
    assert!(d.ingest.tokens.is_empty());
    assert_eq!(d.ingest.max_concurrent, 64);
    let found = problems("[ingest]\ntokens = [\"short\"]\nmax_concurrent = 0\n");
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found[0].contains("`tokens`") && found[0].contains("t.toml:2:"),
        "{found:?}"
    );
    assert!(found[1].contains("`max_concurrent`"), "{found:?}");
}

#[test]
fn header_auth_and_token_urls_pass_the_same_checks_as_headers_and_urls() {
    let found = problems(
        r#"
[policy]
require_https = true

[[integration]]
id = "a"
url = "https://hooks.example.com/x"
auth = { type = "header", headers = { "Host" = "evil.example.com", "webhook-signature" = "v1,forged", "X-Key" = "${NEWLINE}" } }

[[integration]]
id = "b"
url = "https://hooks.example.com/x"
headers = { "X-Env" = "${NEWLINE}" }

[[integration]]
id = "c"
url = "https://hooks.example.com/x"
auth = { type = "oauth2", client_id = "c", client_secret = "s", token_url = "http://login.example.com/token" }

[[integration]]
id = "d"
url = "https://hooks.example.com/x"
auth = { type = "oauth2", client_id = "c", client_secret = "s", token_url = "https://[::ffff:0:169.254.169.254]/token" }
"#,
    );
    let has = |needle: &[&str]| found.iter().any(|p| needle.iter().all(|n| p.contains(n)));
    assert!(
        has(&["`a`", "auth.headers.Host", "sets this header itself"]),
        "{found:?}"
    );
    assert!(
        has(&[
            "`a`",
            "auth.headers.webhook-signature",
            "sets this header itself"
        ]),
        "{found:?}"
    );
    assert!(
        has(&["`a`", "auth.headers.X-Key", "line breaks"]),
        "{found:?}"
    );
    assert!(has(&["`b`", "headers.X-Env", "line breaks"]), "{found:?}");
    assert!(
        has(&["`c`", "auth.token_url", "requires https"]),
        "{found:?}"
    );
    assert!(
        has(&[
            "`d`",
            "auth.token_url",
            "169.254.169.254 is not a public address"
        ]),
        "{found:?}"
    );
    assert_eq!(found.len(), 6, "{found:?}");
}

#[test]
fn debug_output_hides_secrets_in_webhook_urls() {
    let c = ok(r#"
[[integration]]
id = "slack"
url = "https://hooks.slack.com/services/T000/B000/XXXXsecretXXXX?token=qq"
"#);
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("XXXXsecretXXXX") && !shown.contains("token=qq"),
        "{shown}"
    );
    assert!(shown.contains("https://hooks.slack.com/…"), "{shown}");
    assert_eq!(
        crate::url_origin(&"http://127.0.0.1:8080/".parse().unwrap()),
        "http://127.0.0.1:8080"
    );
}

#[test]
fn header_names_that_look_secret() {
    for (name, secret) in [
        ("authorization", true),
        ("set-cookie", true),
        ("x-api-key", true),
        ("x-auth-token", true),
        ("x-session-id", true),
        ("webhook-signature", true),
        ("x-client-secret", true),
        ("content-type", false),
        ("content-length", false),
        ("date", false),
        ("x-request-id", false),
        ("", false),
    ] {
        assert_eq!(super::looks_secret(name), secret, "{name}");
    }
}

#[test]
fn rate_limit_kinds_and_send_resolved() {
    let c = ok(r#"
[defaults]
rate_limit = "600/m"
send_resolved = false

[[integration]]
id = "a"
url = "https://a.example.com/x"
kinds = ["alert", "integration.status"]

[[integration]]
id = "b"
url = "https://b.example.com/x"
rate_limit = "50/s"
kinds = ["*"]
send_resolved = true
"#);
    let (a, b) = (&c.integrations[0], &c.integrations[1]);
    assert_eq!(
        a.rate_limit,
        Some(RateLimit {
            count: 600,
            per: Duration::from_secs(60)
        })
    );
    assert_eq!(a.rate_limit.unwrap().to_string(), "600/m");
    assert!(!a.send_resolved);
    assert!(a.kinds.admits("integration.status") && a.kinds.admits("alert"));
    assert!(a.kinds.admits(""), "an event without a kind is an alert");
    assert!(!a.kinds.admits("deploy"));
    assert_eq!(b.rate_limit.unwrap().count, 50);
    assert!(b.send_resolved);
    assert!(b.kinds.admits("deploy"));

    let found = problems(
        r#"
[[integration]]
id = "a"
url = "https://a.example.com/x"
rate_limit = "fast"

[[integration]]
id = "b"
url = "https://b.example.com/x"
rate_limit = "0/s"
kinds = []

[[integration]]
id = "c"
url = "https://c.example.com/x"
kinds = ["alert", "two words"]
"#,
    );
    let all = found.join("\n");
    assert!(
        all.contains("t.toml:5:14: integration `a`, field `rate_limit`: `fast` is not a rate"),
        "{all}"
    );
    assert!(
        all.contains("t.toml:10:14: integration `b`, field `rate_limit`: the count must be between 1 and 1000000"),
        "{all}"
    );
    assert!(
        all.contains("integration `b`, field `kinds`: lists no kind"),
        "{all}"
    );
    assert!(
        all.contains("integration `c`, field `kinds`: `two words` is not an event kind: must not contain whitespace"),
        "{all}"
    );
    let found = problems(
        "[[integration]]\nid = \"a\"\nurl = \"https://a.example.com/x\"\nsend_resolved = \"no\"\n",
    );
    assert!(
        found[0].contains("t.toml:4:17: integration `a`")
            && found[0].contains("expected a boolean"),
        "{found:?}"
    );
}

#[test]
fn order_is_latest_by_default_set_per_integration_or_in_defaults() {
    let c = ok(r#"
[defaults]
order = "none"

[[integration]]
id = "a"
url = "https://a.example.com/x"

[[integration]]
id = "b"
url = "https://b.example.com/x"
order = "latest"
"#);
    assert_eq!(c.integrations[0].order, Order::None);
    assert_eq!(c.integrations[1].order, Order::Latest);
    let c = ok("[[integration]]\nid = \"a\"\nurl = \"https://a.example.com/x\"\n");
    assert_eq!(c.integrations[0].order, Order::Latest);

    let found = problems(
        "[[integration]]\nid = \"a\"\nurl = \"https://a.example.com/x\"\norder = \"newest\"\n",
    );
    assert!(
        found[0].contains("t.toml:4:9: integration `a`, field `order`: `newest` is not an order"),
        "{found:?}"
    );
    let found = problems(
        "[[integration]]\nid = \"a\"\nurl = \"https://a.example.com/x\"\norder = \"fifo\"\n",
    );
    assert!(
        found[0].contains("field `order`: `fifo` is not supported yet"),
        "{found:?}"
    );
}

#[test]
fn proxy_urls_are_checked_and_their_credentials_kept_secret() {
    let c = ok(r#"
[defaults]
proxy = "http://egress:${TOKEN}@proxy.internal:3128"

[[integration]]
id = "a"
url = "https://a.example.com/x"

[[integration]]
id = "b"
url = "https://b.example.com/x"
proxy = "https://other.internal:8443/"
"#);
    let (a, b) = (&c.integrations[0], &c.integrations[1]);
    let pa = a.proxy.as_ref().unwrap();
    assert_eq!(pa.shown, "http://proxy.internal:3128");
    assert_eq!(
        pa.url.expose(),
        "http://egress:s3cr3t-token@proxy.internal:3128"
    );
    assert_eq!(
        b.proxy.as_ref().unwrap().shown,
        "https://other.internal:8443"
    );
    let shown = format!("{a:?}");
    assert!(
        !shown.contains("s3cr3t") && shown.contains("proxy.internal"),
        "{shown}"
    );

    let found = problems(
        r#"
[[integration]]
id = "a"
url = "https://a.example.com/x"
proxy = "socks5://user:hunter2@p:1080"

[[integration]]
id = "b"
url = "https://b.example.com/x"
proxy = "http://p:3128/path"
"#,
    );
    let all = found.join("\n");
    assert!(
        all.contains(
            "t.toml:5:9: integration `a`, field `proxy`: scheme `socks5` is not supported"
        ),
        "{all}"
    );
    assert!(
        all.contains("integration `b`, field `proxy`: is a proxy's address"),
        "{all}"
    );
    assert!(!all.contains("hunter2"), "{all}");
}
