use super::*;
use alertpost_event::{Event, Severity, Status};
use serde_json::json;

fn event() -> Event {
    let mut e = Event::from_value(json!({
        "id": "evt-1", "source": "grafana", "status": "firing", "severity": "critical",
        "title": "Quote \" backslash \\ newline\nunicode ✓ <tag> {{ not a placeholder }}",
        "labels": {"team": "db", "app.kubernetes.io/name": "api"},
        "data": {"count": 3, "nested": {"ok": true, "list": [1, "two", null]}},
        "occurred_at": "2026-11-25T10:00:00.5Z"
    }))
    .unwrap();
    e.severity = Some(Severity::Critical);
    e
}

fn extra() -> Extra<'static> {
    Extra {
        integration_id: "hook",
        integration_name: "Hook",
        routing_key: Some("R123"),
        delivery_id: "dlv_1",
    }
}

fn render_json(source: &str, event: &Event) -> serde_json::Value {
    let body = Body::compile(source, true).unwrap_or_else(|e| panic!("{e:?}"));
    let bytes = body
        .render(
            &Context::new(event),
            &Bytes::from(event.to_json()),
            &extra(),
        )
        .unwrap();
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("invalid JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
}

#[test]
fn hostile_strings_stay_valid_json() {
    let v = render_json(
        r#"{"text": "Alert: {{ title }} for {{ labels.team }}", "raw": "{{ title }}"}"#,
        &event(),
    );
    let title = "Quote \" backslash \\ newline\nunicode ✓ <tag> {{ not a placeholder }}";
    assert_eq!(v["text"], format!("Alert: {title} for db"));
    assert_eq!(v["raw"], title);
}

#[test]
fn a_single_placeholder_keeps_the_json_type() {
    let v = render_json(
        r#"{"n": "{{ data.count }}", "obj": "{{ data.nested }}", "ok": "{{ data.nested.ok }}",
            "labels": "{{ labels }}", "missing": "{{ data.nope }}", "null": "{{ none }}",
            "arr": ["{{ data.nope }}", "{{ severity }}"], "text": " {{ data.count }} items"}"#,
        &event(),
    );
    assert_eq!(v["n"], 3);
    assert_eq!(v["obj"], json!({"ok": true, "list": [1, "two", null]}));
    assert_eq!(v["ok"], true);
    assert_eq!(
        v["labels"],
        json!({"team": "db", "app.kubernetes.io/name": "api"})
    );
    assert!(
        v.get("missing").is_none(),
        "a missing value leaves its member out: {v}"
    );
    assert_eq!(v["null"], serde_json::Value::Null);
    assert_eq!(v["arr"], json!([null, "critical"]));
    assert_eq!(v["text"], " 3 items");
}

#[test]
fn conditions_filters_and_keys() {
    let v = render_json(
        r#"{"state": "{% if status == 'resolved' %}ok{% else %}alerting{% endif %}",
            "{{ labels.team }}_team": "{{ title | upper | truncate(5) }}",
            "ms": "{{ occurred_at | timestamp_ms }}",
            "merged": "{{ merge(labels, {'team': 'ops', 'x': 1}) }}",
            "who": "{{ integration.id }}/{{ delivery_id }}/{{ integration.routing_key }}",
            "page": "{{ data.nope | default('none') }}"}"#,
        &event(),
    );
    assert_eq!(v["state"], "alerting");
    assert_eq!(v["db_team"], "QUOT…");
    assert_eq!(v["ms"], 1_795_600_800_500i64);
    assert_eq!(
        v["merged"],
        json!({"team": "ops", "app.kubernetes.io/name": "api", "x": 1})
    );
    assert_eq!(v["who"], "hook/dlv_1/R123");
    assert_eq!(v["page"], "none");
}

#[test]
fn the_event_itself_is_the_published_bytes() {
    let body = Body::compile(r#""{{ event }}""#, true).unwrap();
    assert!(body.is_event());
    let e = event();
    let bytes = Bytes::from(e.to_json());
    assert_eq!(
        body.render(&Context::new(&e), &bytes, &extra()).unwrap(),
        bytes
    );
    // Nested, the event is an ordinary value.
    let v = render_json(r#"{"alert": "{{ event }}"}"#, &e);
    assert_eq!(v["alert"]["id"], "evt-1");
}

#[test]
fn text_templates_render_as_written() {
    let body = Body::compile("{{ title | mrkdwn }} ({{ severity }})\n", false).unwrap();
    let mut e = Event::new("s", Status::Firing, "a <b> & c");
    e.severity = Some(Severity::Info);
    let out = body
        .render(&Context::new(&e), &Bytes::new(), &extra())
        .unwrap();
    assert_eq!(&out[..], b"a &lt;b&gt; &amp; c (info)\n");
}

#[test]
fn errors_are_placed_in_the_template() {
    let errs = Body::compile("{\n  \"a\": \"{{ title + }}\"\n}", true).unwrap_err();
    assert_eq!((errs[0].line, errs[0].column), (2, 20), "{errs:?}");
    assert!(errs[0].message.contains("syntax error"), "{errs:?}");

    let errs =
        Body::compile("{\"a\": \"{{ title }}\",\n \"b\": {{ severity }}}", true).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].line, 2, "{errs:?}");
    assert!(errs[0].message.starts_with("not valid JSON"), "{errs:?}");

    let errs = Body::compile(
        "{\"a\": \"{{ titel }}\",\n \"b\": \"{{ title.x }} {{ labels.anything }} {{ data.a.b }}\"}",
        true,
    )
    .unwrap_err();
    let messages: Vec<_> = errs
        .iter()
        .map(|e| (e.line, e.column, e.message.as_str()))
        .collect();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_eq!((messages[0].0, messages[0].1), (1, 11));
    assert!(
        messages[0]
            .2
            .contains("`titel` is not a field of the event")
    );
    assert_eq!((messages[1].0, messages[1].1), (2, 11));
    assert!(messages[1].2.contains("`title` has no field `x`"));

    let errs =
        Body::compile("{\"a\": \"{% if status %}\", \"b\": \"{% endif %}\"}", true).unwrap_err();
    assert!(errs[0].message.contains("syntax error"), "{errs:?}");
}

#[test]
fn runaway_templates_run_out_of_fuel() {
    let body = Body::compile(r#"{"a": "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"}"#, true)
        .unwrap();
    let e = event();
    let err = body
        .render(&Context::new(&e), &Bytes::new(), &extra())
        .unwrap_err();
    assert!(err.0.contains("fuel"), "{err}");
}

#[test]
fn merge_is_linear_in_the_labels() {
    // About 20 000 labels fit in an event (256 KiB): found to cost seconds
    // per render with a search of the output for every key.
    let mut e = event();
    for i in 0..20_000 {
        e.labels.insert(format!("l{i:05}"), "v".to_owned());
    }
    let started = std::time::Instant::now();
    let v = render_json(
        r#"{"all": "{{ merge(labels, annotations, {'team': 'ops'}) | length }}", "team": "{{ merge(labels, {'team': 'ops'}).team }}"}"#,
        &e,
    );
    let took = started.elapsed();
    assert_eq!(v["all"], 20_002);
    assert_eq!(v["team"], "ops", "a later map wins");
    // A guard against the complexity coming back, not a benchmark:
    // quadratic took seconds per render; linear takes milliseconds.
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
}
