//! Golden tests: every preset, on two sample events, renders exactly the
//! body in `presets/golden/<preset>[.minimal].json`.
//! `UPDATE_GOLDEN=1 cargo test -p alertpost-render` rewrites them; review
//! the diff before committing.

use alertpost_event::Event;
use alertpost_render::presets::{PRESETS, preset};
use alertpost_render::{Body, Context, Extra};
use bytes::Bytes;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/presets/golden");

fn sample(name: &str) -> Event {
    let text = std::fs::read(format!("{GOLDEN}/{name}.json")).unwrap();
    let mut event = Event::from_json(&text).unwrap();
    // As a worker renders it: from the queue, `received_at` kept as its
    // producer stamped it.
    event
        .prepare_received(&text, time::OffsetDateTime::UNIX_EPOCH)
        .unwrap();
    event
}

fn render(name: &str, event: &Event) -> String {
    let body =
        Body::compile(preset(name).unwrap(), true).unwrap_or_else(|e| panic!("{name}: {e:?}"));
    let extra = Extra {
        integration_id: "oncall-db",
        integration_name: "OnCall DB",
        routing_key: Some("R0UT1NGK3Y"),
        delivery_id: "dlv_0123456789abcdef0123456789abcdef",
    };
    let bytes = body
        .render(&Context::new(event), &Bytes::from(event.to_json()), &extra)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{name}: not JSON: {e}"));
    serde_json::to_string_pretty(&value).unwrap() + "\n"
}

#[test]
fn every_preset_renders_its_golden_body() {
    let update = std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    let mut failures = Vec::new();
    for (name, _) in PRESETS {
        for (sample_name, suffix) in [("event", ""), ("minimal", ".minimal")] {
            let got = render(name, &sample(sample_name));
            let path = format!("{GOLDEN}/{name}{suffix}.json");
            if update {
                std::fs::write(&path, &got).unwrap();
                continue;
            }
            let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            if got != want {
                failures.push(format!("{path}:\n--- want\n{want}--- got\n{got}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn presets_are_valid_templates() {
    for (name, template) in PRESETS {
        Body::compile(template, true).unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
}
