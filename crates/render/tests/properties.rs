//! For any event, every preset and a JSON template with placeholders in
//! every position render valid JSON (strings escaped, nothing left out of
//! place), or fail with an error: never invalid JSON, never a panic.

use alertpost_event::{Event, Severity, Status};
use alertpost_render::presets::{PRESETS, preset};
use alertpost_render::{Body, Context, Extra};
use bytes::Bytes;
use proptest::prelude::*;

/// Strings that stress escaping: quotes, backslashes, control characters,
/// template syntax, any Unicode.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("\"".to_owned()),
        Just("\\".to_owned()),
        Just("{{ title }}".to_owned()),
        Just("</script>\u{0}\u{1f}\u{2028}".to_owned()),
        Just(String::new()),
        any::<String>(),
        "[\"\\\\{}%\n\t ]{0,8}",
    ]
}

fn event() -> impl Strategy<Value = Event> {
    (
        text(),
        proptest::option::of(text()),
        prop::collection::btree_map(text(), text(), 0..6),
        prop::collection::btree_map(text(), text(), 0..4),
        prop_oneof![
            Just(Status::Firing),
            Just(Status::Resolved),
            Just(Status::Acknowledged)
        ],
        proptest::option::of(prop_oneof![
            Just(Severity::Critical),
            Just(Severity::High),
            Just(Severity::Warning),
            Just(Severity::Info),
        ]),
        proptest::option::of(text()),
    )
        .prop_map(
            |(title, message, labels, annotations, status, severity, env)| {
                let mut e = Event::new("prop", status, title);
                e.message = message;
                e.labels = labels;
                e.annotations = annotations;
                e.severity = severity;
                e.environment = env;
                e.dedup_key = Some("k".to_owned());
                e
            },
        )
}

const TEMPLATE: &str = r#"{
  "title": "{{ title }}",
  "both": "{{ title }} / {{ message }}",
  "labels": "{{ labels }}",
  "merged": "{{ merge(labels, annotations, {'x': title}) }}",
  "team": "{{ labels.team | default('none') }}",
  "severity": "{{ severity }}",
  "count": "{{ labels | length }}",
  "list": ["{{ title | upper }}", "{{ message | truncate(5) }}", "{{ environment }}"]
}"#;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_body_renders_valid_json_for_any_event(mut e in event()) {
        if e.prepare(time::OffsetDateTime::now_utc()).is_err() {
            return Ok(());
        }
        let extra = Extra {
            integration_id: "hook",
            integration_name: "Hook \"quoted\"",
            routing_key: Some("R\\1"),
            delivery_id: "dlv_1",
        };
        let json = Bytes::from(e.to_json());
        let context = Context::new(&e);
        let mut sources: Vec<(&str, &str)> = PRESETS
            .iter()
            .map(|(name, _)| (*name, preset(name).unwrap_or_default()))
            .collect();
        sources.push(("template", TEMPLATE));
        for (name, source) in sources {
            let body = Body::compile(source, true).unwrap_or_else(|errs| panic!("{name}: {errs:?}"));
            if let Ok(bytes) = body.render(&context, &json, &extra) {
                let parsed = serde_json::from_slice::<serde_json::Value>(&bytes);
                prop_assert!(
                    parsed.is_ok(),
                    "{name}: invalid JSON for {e:?}: {}",
                    String::from_utf8_lossy(&bytes)
                );
            }
        }
    }
}
