//! Any template source, compiled as a JSON template and rendered for a
//! sample event: it compiles or is refused, renders or fails, and what it
//! renders is valid JSON.
#![no_main]

use alertpost_event::{Event, Status};
use alertpost_render::{Body, Context, Extra};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let mut e = Event::new("fuzz", Status::Firing, "a \"title\" \\ with {{ braces }}");
    e.labels.insert("team".to_owned(), "db\n\"x\"".to_owned());
    let _ = e.prepare(time::OffsetDateTime::UNIX_EPOCH);
    let extra = Extra {
        integration_id: "hook",
        integration_name: "Hook",
        routing_key: Some("R"),
        delivery_id: "dlv",
    };
    for json in [true, false] {
        let Ok(body) = Body::compile(source, json) else {
            continue;
        };
        if let Ok(bytes) = body.render(&Context::new(&e), &Bytes::from(e.to_json()), &extra)
            && json
        {
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .expect("a JSON template renders JSON");
        }
    }
});
