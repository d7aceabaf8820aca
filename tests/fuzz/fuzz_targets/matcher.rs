//! Any `match` line: parsed or refused; a matcher that parses matches an
//! event without panicking.
#![no_main]

use alertpost_config::Matcher;
use alertpost_event::{Event, Status};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = Matcher::parse(text) {
        let mut e = Event::new("fuzz", Status::Firing, text);
        e.labels.insert("team".to_owned(), text.to_owned());
        let _ = m.matches(&e);
    }
});
