use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "TOKEN" => Some("s3cr3t-token".to_owned()),
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
