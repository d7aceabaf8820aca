//! Any config file: loaded, or refused with problems; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = alertpost_config::parse(text, "fuzz.toml", &|name| Some(format!("value-of-{name}")));
});
