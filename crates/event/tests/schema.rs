//! Keeps `schema/alertpost.event.v1.json` in step with the Rust types: the
//! same fields, the same enums, and the same verdict on a table of events.

use alertpost_event::normalize::{Format, normalize};
use alertpost_event::{Event, Severity, Status};
use serde_json::{Value, json};
use time::macros::datetime;

fn schema() -> Value {
    let text = include_str!("../schema/alertpost.event.v1.json");
    serde_json::from_str(text).expect("the schema file is JSON")
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&schema()).expect("the schema compiles")
}

/// What the producer says of an input: prepared, or refused.
fn producer_accepts(input: &Value) -> bool {
    Event::from_value(input.clone())
        .and_then(|mut e| e.prepare(datetime!(2026-11-25 10:00 UTC)))
        .is_ok()
}

#[test]
fn schema_and_types_have_the_same_fields() {
    let schema = schema();
    let mut in_schema: Vec<_> = schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    in_schema.sort();

    let full = json!({
        "id": "e", "dedup_key": "k", "source": "s", "kind": "alert", "status": "firing",
        "severity": "info", "title": "t", "message": "m", "labels": {"a": "b"},
        "annotations": {"c": "d"}, "links": [{"href": "h", "text": "x"}], "image_url": "i",
        "environment": "e", "occurred_at": "2026-01-01T00:00:00Z",
        "resolved_at": "2026-01-01T00:00:00Z", "received_at": "2026-01-01T00:00:00Z",
        "data": {"x": 1}
    });
    let event = Event::from_value(full).unwrap();
    let encoded: Value = serde_json::from_slice(&event.to_json()).unwrap();
    let mut in_types: Vec<_> = encoded.as_object().unwrap().keys().cloned().collect();
    in_types.sort();
    assert_eq!(in_schema, in_types);

    let link_keys: Vec<_> = schema["properties"]["links"]["items"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(link_keys, ["href", "text"]);
}

#[test]
fn schema_enums_match_the_types() {
    let schema = schema();
    let statuses: Vec<Value> = [Status::Firing, Status::Resolved, Status::Acknowledged]
        .iter()
        .map(|s| serde_json::to_value(s).unwrap())
        .collect();
    assert_eq!(
        schema["properties"]["status"]["enum"],
        Value::Array(statuses)
    );
    let severities: Vec<Value> = [
        Severity::Critical,
        Severity::High,
        Severity::Warning,
        Severity::Info,
    ]
    .iter()
    .map(|s| serde_json::to_value(s).unwrap())
    .collect();
    assert_eq!(
        schema["properties"]["severity"]["enum"],
        Value::Array(severities)
    );
}

#[test]
fn schema_and_producer_agree_on_a_table_of_events() {
    let validator = validator();
    // (input, schema accepts, producer accepts). The only disagreements are
    // the rules JSON Schema cannot state: a title derivable from other
    // fields, and the size cap.
    let cases = [
        (
            json!({"source": "s", "status": "firing", "title": "t"}),
            true,
            true,
        ),
        (
            json!({"source": "s", "status": "resolved", "labels": {"alertname": "A"}}),
            true,
            true,
        ),
        (
            json!({"source": "s", "status": "firing", "message": "first line"}),
            true,
            true,
        ),
        (json!({"source": "s", "status": "firing"}), true, false),
        (
            json!({"source": "s", "status": "firing", "title": "t", "message": "x".repeat(300_000)}),
            true,
            false,
        ),
        (json!({"status": "firing", "title": "t"}), false, false),
        (json!({"source": "s", "title": "t"}), false, false),
        (
            json!({"source": "s", "status": "FIRING", "title": "t"}),
            false,
            false,
        ),
        (
            json!({"source": "s", "status": "firing", "title": "t", "severity": "major"}),
            false,
            false,
        ),
        (
            json!({"source": "s", "status": "firing", "title": "t", "extra": 1}),
            false,
            false,
        ),
        (
            json!({"source": "", "status": "firing", "title": "t"}),
            false,
            false,
        ),
        (
            json!({"source": "a b", "status": "firing", "title": "t"}),
            false,
            false,
        ),
        // Control characters, C0 and C1 (the schema's pattern spells out
        // the ranges: validators in other languages lack \p{Cc}).
        (
            json!({"source": "a\u{7}b", "status": "firing", "title": "t"}),
            false,
            false,
        ),
        (
            json!({"source": "a\u{85}b", "status": "firing", "title": "t"}),
            false,
            false,
        ),
        (
            json!({"source": "café-ü", "status": "firing", "title": "t"}),
            true,
            true,
        ),
        (
            json!({"source": "s", "kind": "integration.status", "status": "firing", "title": "t"}),
            true,
            true,
        ),
        (
            json!({"source": "s", "status": "firing", "title": "t", "labels": {"n": 1}}),
            false,
            false,
        ),
        (
            json!({"source": "s", "status": "firing", "title": "t", "data": "x"}),
            false,
            false,
        ),
        (
            json!({"source": "s", "status": "firing", "title": "t", "links": [{"text": "x"}]}),
            false,
            false,
        ),
        (
            json!({"source": "s", "status": "firing", "title": "t", "links": [{"href": "h", "rel": "x"}]}),
            false,
            false,
        ),
        (
            json!({"source": "s", "status": "firing", "title": "t", "occurred_at": "2026-11-25 10:00"}),
            false,
            false,
        ),
        (
            json!({"source": "s", "status": "firing", "title": "t", "occurred_at": "2026-11-25T10:00:00.5+01:00"}),
            true,
            true,
        ),
        (
            json!({"source": "s", "status": "firing", "title": "t", "id": "x".repeat(201)}),
            false,
            false,
        ),
        (json!(["not", "an", "object"]), false, false),
    ];
    for (input, schema_ok, producer_ok) in cases {
        let short: String = input.to_string().chars().take(120).collect();
        assert_eq!(
            validator.is_valid(&input),
            schema_ok,
            "schema verdict on {short}"
        );
        assert_eq!(
            producer_accepts(&input),
            producer_ok,
            "producer verdict on {short}"
        );
    }
}

#[test]
fn every_prepared_event_matches_the_schema() {
    let validator = validator();
    let samples = [
        (
            Format::Alertmanager,
            json!({"alerts": [{"status": "firing",
            "labels": {"alertname": "A", "severity": "critical"},
            "startsAt": "2026-11-25T10:00:00Z", "generatorURL": "http://p"}]}),
        ),
        (
            Format::Grafana,
            json!({"orgId": 1, "alerts": [{"status": "resolved",
            "labels": {"alertname": "B"}, "endsAt": "2026-11-25T10:00:00Z",
            "imageURL": "http://i", "values": {"A": 1}}]}),
        ),
        (
            Format::Hertzbeat,
            json!({"id": 1, "priority": 2, "status": 2, "content": "c",
            "tags": {"m": "n"}, "gmtCreate": "2022-02-25T13:32:13", "gmtUpdate": "2022-02-25T13:40:00"}),
        ),
        (
            Format::GrafanaOncall,
            json!({"alert_uid": "u", "state": "ok"}),
        ),
        (
            Format::Aporia,
            json!({"alert_id": "a", "severity": "low", "monitor_name": "m",
            "dashboard_link": "http://d"}),
        ),
    ];
    for (format, doc) in samples {
        for mut event in normalize(format, doc).unwrap() {
            event.prepare(datetime!(2026-11-25 10:00 UTC)).unwrap();
            let encoded: Value = serde_json::from_slice(&event.to_json()).unwrap();
            let errors: Vec<String> = validator
                .iter_errors(&encoded)
                .map(|e| e.to_string())
                .collect();
            assert!(errors.is_empty(), "{format}: {errors:?} in {encoded}");
        }
    }
}
