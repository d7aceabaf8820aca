//! Any bytes, as each source's payload: normalized, prepared and encoded
//! as the ingest does; nothing may panic, and what prepares must encode.
#![no_main]

use alertpost_event::Event;
use alertpost_event::normalize::{Format, documents, normalize};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((first, rest)) = data.split_first() else {
        return;
    };
    let format = Format::ALL[usize::from(*first) % Format::ALL.len()];
    // As `alertpost publish` reads its input: JSON or NDJSON documents.
    for (_, doc) in documents(rest) {
        let Ok(doc) = doc else { continue };
        let Ok(events) = normalize(format, doc) else {
            continue;
        };
        for mut e in events {
            if e.prepare(time::OffsetDateTime::UNIX_EPOCH).is_ok() {
                let json = e.to_json();
                assert!(!json.is_empty(), "a prepared event encodes");
                Event::from_json(&json).expect("an event decodes what it encoded");
            }
        }
    }
});
