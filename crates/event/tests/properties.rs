//! Properties over any input: no JSON document makes a normalizer, the
//! event decoder or the job decoder panic; an event that prepares encodes
//! and decodes back to itself.

use alertpost_event::job::DeliveryJob;
use alertpost_event::normalize::{Format, normalize};
use alertpost_event::{Event, Status};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Any JSON value, with the keys the normalizers look for among the keys
/// (otherwise nearly every document fails at its first field).
fn json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("alerts".to_owned()),
        Just("status".to_owned()),
        Just("labels".to_owned()),
        Just("annotations".to_owned()),
        Just("startsAt".to_owned()),
        Just("endsAt".to_owned()),
        Just("groupKey".to_owned()),
        Just("content".to_owned()),
        Just("firstTriggerTime".to_owned()),
        Just("occurred_at".to_owned()),
        Just("source".to_owned()),
        Just("title".to_owned()),
        Just("alert_group".to_owned()),
        Just("alert".to_owned()),
        Just("severity".to_owned()),
        "[a-zA-Z_]{0,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop_oneof![
            Just("firing".to_owned()),
            Just("resolved".to_owned()),
            Just("9999-12-31T23:59:59-00:01".to_owned()),
            Just("0000-01-01T00:00:00+00:01".to_owned()),
            Just("2026-11-25T10:00:00Z".to_owned()),
            any::<String>(),
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_document_makes_a_normalizer_panic(doc in json()) {
        for format in Format::ALL {
            if let Ok(events) = normalize(format, doc.clone()) {
                for mut e in events {
                    // What the ingest does next: prepare, then encode.
                    if e.prepare(time::OffsetDateTime::now_utc()).is_ok() {
                        let back = Event::from_json(&e.to_json());
                        prop_assert!(back.is_ok(), "{format:?}: {e:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn no_bytes_make_the_decoders_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), doc in json()) {
        let _ = Event::from_json(&bytes);
        let _ = serde_json::from_slice::<DeliveryJob>(&bytes);
        let text = doc.to_string();
        if let Ok(mut e) = Event::from_json(text.as_bytes()) {
            let _ = e.prepare_received(text.as_bytes(), time::OffsetDateTime::now_utc());
        }
        let _ = serde_json::from_str::<DeliveryJob>(&text);
    }

    #[test]
    fn a_prepared_event_comes_back_as_it_went(
        title in any::<String>(),
        labels in prop::collection::btree_map(any::<String>(), any::<String>(), 0..8),
        message in proptest::option::of(any::<String>()),
        secs in -62_135_596_800i64..253_402_300_799i64,
    ) {
        let mut e = Event::new("prop", Status::Firing, title);
        e.labels = labels;
        e.message = message;
        e.occurred_at = time::OffsetDateTime::from_unix_timestamp(secs).ok();
        if e.prepare(time::OffsetDateTime::now_utc()).is_ok() {
            let back = Event::from_json(&e.to_json()).expect("an event it wrote");
            prop_assert_eq!(back, e);
        }
    }
}
