//! No text makes the matcher parser or the config loader panic; a matcher
//! that parses matches any event without panicking.

use alertpost_config::Matcher;
use alertpost_event::{Event, Status};
use proptest::prelude::*;

fn matcher_text() -> impl Strategy<Value = String> {
    let field = prop_oneof![
        Just("status"),
        Just("severity"),
        Just("labels.team"),
        Just("annotations.x"),
        Just("source"),
        Just("title"),
        Just("data.a.b"),
        Just(""),
    ];
    let op = prop_oneof![Just("="), Just("!="), Just("=~"), Just("!~"), Just("")];
    let value = prop_oneof![
        Just("\"db\"".to_owned()),
        Just("\"(a|b\"".to_owned()),
        Just("\"a{1000000}\"".to_owned()),
        Just("'x'".to_owned()),
        any::<String>(),
    ];
    prop_oneof![
        (field, op, value).prop_map(|(f, o, v)| format!("{f}{o}{v}")),
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_text_makes_the_matcher_parser_panic(text in matcher_text(), title in any::<String>()) {
        if let Ok(m) = Matcher::parse(&text) {
            let mut e = Event::new("s", Status::Firing, title);
            e.labels.insert("team".to_owned(), "db".to_owned());
            let _ = m.matches(&e);
        }
    }

    #[test]
    fn no_text_makes_the_config_loader_panic(
        text in prop_oneof![
            any::<String>(),
            Just("[[integration]]\nid = \"a\"\nurl = \"https://x.example.com\"\n".to_owned()),
        ],
        extra in any::<String>(),
    ) {
        let _ = alertpost_config::parse(&text, "p.toml", &|_| None);
        let joined = format!("{text}\n{extra}");
        let _ = alertpost_config::parse(&joined, "p.toml", &|_| Some(extra.clone()));
    }
}
