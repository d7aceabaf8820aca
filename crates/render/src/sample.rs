//! Sample events: what `alertpost check` renders every template with, and
//! what `alertpost test` sends when no event is given. Also the golden
//! tests' inputs (`presets/golden/event.json`, `minimal.json`).

use alertpost_event::Event;
use time::OffsetDateTime;

/// A firing event with every field set.
pub fn full() -> Event {
    parse(include_str!("../presets/golden/event.json"))
}

/// A resolved event with only what is required.
pub fn minimal() -> Event {
    parse(include_str!("../presets/golden/minimal.json"))
}

fn parse(text: &str) -> Event {
    // Both files are part of this crate and covered by its tests.
    let mut event = Event::from_json(text.as_bytes())
        .unwrap_or_else(|_| Event::new("alertpost", alertpost_event::Status::Firing, "sample"));
    // As a worker sees an event: from the queue, `received_at` as its
    // producer stamped it.
    let _ = event.prepare_received(text.as_bytes(), OffsetDateTime::now_utc());
    event
}
