//! Making an event ready to publish: `id` (UUID v7, or derived from the
//! message's bytes for an event that came without one) and `received_at`
//! when missing, a title when there is none, every rule of the schema
//! checked, the size cap last; one event or a batch. And the ids alertpost
//! derives (delivery ids).

use time::OffsetDateTime;
use uuid::Uuid;

use crate::event::{DEFAULT_KIND, Event, EventError, MAX_EVENT_BYTES};

/// Longest `id`, `source` or `kind` accepted.
const MAX_NAME_BYTES: usize = 200;

/// Titles are one line; longer ones are cut at this many characters.
const MAX_TITLE_CHARS: usize = 1000;

/// The producer's clock: `now`, or the nanosecond after the last stamp
/// this process gave when `now` is not later, so the stamps of one
/// producer strictly increase (two events of one batch included).
pub fn stamp(now: OffsetDateTime) -> OffsetDateTime {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(i64::MIN);
    let wanted = i64::try_from(now.unix_timestamp_nanos()).unwrap_or(i64::MAX);
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = wanted.max(last.saturating_add(1));
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => {
                return OffsetDateTime::from_unix_timestamp_nanos(i128::from(next)).unwrap_or(now);
            }
            Err(seen) => last = seen,
        }
    }
}

impl Event {
    /// Makes the event ready to publish: fills `id` (UUID v7), `kind`
    /// (`alert`) and `title` (derived) when missing, stamps `received_at`
    /// with the producer's clock ([`stamp`] of `now`, whatever the event
    /// said: it is the event's position among its alert's events, which no
    /// client sets), normalizes times to UTC and the title to one line, and
    /// checks every rule of the schema, the size cap last.
    pub fn prepare(&mut self, now: OffsetDateTime) -> Result<(), EventError> {
        if self.id.is_empty() {
            self.id = Uuid::now_v7().to_string();
        }
        self.received_at = Some(stamp(now));
        self.fill(now)?;
        check_size(self.encoded_len())
    }

    /// [`Event::prepare`], returning the encoding as published: one
    /// encoding, where `prepare` then [`Event::to_json`] make two.
    pub fn prepare_encoded(&mut self, now: OffsetDateTime) -> Result<Vec<u8>, EventError> {
        if self.id.is_empty() {
            self.id = Uuid::now_v7().to_string();
        }
        self.received_at = Some(stamp(now));
        self.fill(now)?;
        let mut body = self.to_json();
        check_size(body.len())?;
        // The encoder grows its buffer by doubling: a batch held encoded
        // (until its confirms) would otherwise take up to twice its size.
        if body.capacity() > body.len() + body.len() / 4 {
            body.shrink_to_fit();
        }
        Ok(body)
    }

    /// Like [`Event::prepare`], for an event that arrived from the queue: an
    /// event published without an id gets one derived from its bytes, so the
    /// same message always yields the same id (and the same delivery ids)
    /// however often it is redelivered; `received_at` is kept as its
    /// producer stamped it (`now` only for one published without).
    ///
    /// `Ok(true)` when preparing changed nothing (the event came prepared,
    /// as alertpost's producers send it): the message's bytes then encode
    /// the event as it is, and can be sent as they are.
    pub fn prepare_received(
        &mut self,
        raw: &[u8],
        now: OffsetDateTime,
    ) -> Result<bool, EventError> {
        let mut unchanged = true;
        if self.id.is_empty() {
            self.id = Uuid::new_v5(&ID_NAMESPACE, raw).to_string();
            unchanged = false;
        }
        let unchanged = self.fill(now)? && unchanged;
        // The message's own length stands for the encoded size: re-encoding
        // every received event only to measure it would cost more than the
        // few bytes of difference are worth.
        check_size(raw.len())?;
        Ok(unchanged)
    }

    /// Fills in and checks all but the size; `Ok(true)` when nothing had
    /// to change.
    fn fill(&mut self, now: OffsetDateTime) -> Result<bool, EventError> {
        let mut unchanged = true;
        check_name("id", &self.id)?;
        check_name("source", &self.source)?;
        if self.kind.is_empty() {
            self.kind = DEFAULT_KIND.to_owned();
            unchanged = false;
        }
        check_name("kind", &self.kind)?;
        if self.title.trim().is_empty() {
            self.title = self.derive_title().ok_or(EventError::Invalid {
                field: "title",
                reason:
                    "required (or labels.alertname, annotations.summary or message to make it from)"
                        .to_owned(),
            })?;
            unchanged = false;
        }
        if !is_one_line(&self.title, MAX_TITLE_CHARS) {
            self.title = one_line(&self.title, MAX_TITLE_CHARS);
            unchanged = false;
        }
        for (i, link) in self.links.iter().enumerate() {
            if link.href.trim().is_empty() {
                return Err(EventError::Invalid {
                    field: "links",
                    reason: format!("link {i} has an empty href"),
                });
            }
        }
        if self.received_at.is_none() {
            self.received_at = Some(now);
            unchanged = false;
        }
        for (field, t) in [
            ("occurred_at", &mut self.occurred_at),
            ("resolved_at", &mut self.resolved_at),
            ("received_at", &mut self.received_at),
        ] {
            let Some(t) = t else { continue };
            // Checked every time on the way in: a time that cannot be
            // written back as RFC 3339 in UTC would be accepted, then fail
            // (or panic) when the event is encoded.
            let utc = t
                .checked_to_offset(time::UtcOffset::UTC)
                .filter(|u| (0..=9999).contains(&u.year()))
                .ok_or_else(|| EventError::Invalid {
                    field,
                    reason: "out of range: must fall between the years 0000 and 9999 in UTC"
                        .to_owned(),
                })?;
            if t.offset() != time::UtcOffset::UTC {
                *t = utc;
                unchanged = false;
            }
        }
        Ok(unchanged)
    }

    fn derive_title(&self) -> Option<String> {
        [
            self.labels.get("alertname").map(String::as_str),
            self.annotations.get("summary").map(String::as_str),
            self.message.as_deref(),
        ]
        .into_iter()
        .flatten()
        .flat_map(str::lines)
        .map(str::trim)
        .find(|line| !line.is_empty())
        .map(str::to_owned)
    }
}

/// Namespace of the UUID v5 ids alertpost derives (event ids of id-less
/// messages, delivery ids).
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6a1e_7905_7d4b_4c1e_9a43_5e0c_2f1d_8b77);

/// The delivery id of an event's delivery to one integration: stable across
/// retries and redeliveries, so it serves as the `webhook-id` receivers use
/// to drop duplicates and as the journal's key.
pub fn delivery_id(event_id: &str, integration_id: &str) -> String {
    let name = format!("{event_id}\n{integration_id}");
    format!(
        "dlv_{}",
        Uuid::new_v5(&ID_NAMESPACE, name.as_bytes()).simple()
    )
}

/// Whether `s` has the form of a [`delivery_id`]: `dlv_` and 32 lowercase
/// hex digits.
pub fn is_delivery_id(s: &str) -> bool {
    s.strip_prefix("dlv_").is_some_and(|hex| {
        hex.len() == 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn check_name(field: &'static str, value: &str) -> Result<(), EventError> {
    match name_problem(value) {
        None => Ok(()),
        Some(reason) => Err(EventError::Invalid {
            field,
            reason: reason.to_owned(),
        }),
    }
}

/// What is wrong with an `id`, `source` or `kind`, if anything (the config
/// checks the kinds an integration lists by the same rule).
pub fn name_problem(value: &str) -> Option<&'static str> {
    if value.trim().is_empty() {
        Some("must not be empty")
    } else if value.len() > MAX_NAME_BYTES {
        Some("longer than 200 bytes")
    } else if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        Some("must not contain whitespace or control characters")
    } else {
        None
    }
}

/// The size cap, checked last (the rules name a field; this the whole).
fn check_size(size: usize) -> Result<(), EventError> {
    if size > MAX_EVENT_BYTES {
        return Err(EventError::TooLarge {
            size,
            max: MAX_EVENT_BYTES,
        });
    }
    Ok(())
}

/// Whether [`one_line`] would leave `s` as it is.
fn is_one_line(s: &str, max: usize) -> bool {
    s.len() <= max
        && s.trim() == s
        && !s.contains("  ")
        && !s.contains(|c: char| c.is_whitespace() && c != ' ')
}

/// Collapses every run of whitespace (newlines included) to one space and
/// cuts the result at `max` characters.
fn one_line(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for (n, word) in s.split_whitespace().enumerate() {
        if n > 0 {
            out.push(' ');
        }
        out.push_str(word);
    }
    if out.chars().count() > max {
        out = out.chars().take(max - 1).collect();
        out.push('…');
    }
    out
}

/// An event of a batch refused before anything was sent; `index` is its
/// place in the batch.
#[derive(Debug, thiserror::Error)]
#[error("event {index}: {source}")]
pub struct Refused {
    pub index: usize,
    pub source: EventError,
}

/// Prepares every event at `now` ([`Event::prepare`]), refusing the whole
/// batch at the first invalid one.
pub fn prepare_all(events: &mut [Event], now: OffsetDateTime) -> Result<(), Refused> {
    for (index, event) in events.iter_mut().enumerate() {
        event
            .prepare(now)
            .map_err(|source| Refused { index, source })?;
    }
    Ok(())
}

/// [`prepare_all`], returning each event's encoding as published.
pub fn encode_all(events: &mut [Event], now: OffsetDateTime) -> Result<Vec<Vec<u8>>, Refused> {
    events
        .iter_mut()
        .enumerate()
        .map(|(index, event)| {
            event
                .prepare_encoded(now)
                .map_err(|source| Refused { index, source })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Status;

    #[test]
    fn delivery_ids_have_one_form() {
        let id = delivery_id("01a23340-ee72-73f7-b30c-441143b2176d", "hook");
        assert!(is_delivery_id(&id), "{id}");
        for not in [
            "",
            "dlv_",
            "dlv_abc",
            &id.to_uppercase(),
            &format!("{id}0"),
            "01a23340-ee72-73f7-b30c-441143b2176d",
        ] {
            assert!(!is_delivery_id(not), "{not}");
        }
    }

    use serde_json::json;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-25 10:00:00 UTC);

    fn prepared(value: serde_json::Value) -> Result<Event, EventError> {
        let mut event = Event::from_value(value)?;
        event.prepare(NOW)?;
        Ok(event)
    }

    #[test]
    fn times_that_cannot_be_written_back_are_refused_on_the_way_in() {
        // Year −1 and year 10000 once in UTC: found accepted, then lost
        // (an empty body) or a panic in `to_offset`.
        for (field, value) in [
            ("occurred_at", "0000-01-01T00:00:00+00:01"),
            ("occurred_at", "9999-12-31T23:59:59-00:01"),
            ("resolved_at", "9999-12-31T23:59:59-23:59"),
        ] {
            let doc = json!({"source": "s", "status": "firing", "title": "t", field: value});
            match prepared(doc) {
                Err(EventError::Invalid { field: f, reason }) => {
                    assert_eq!(f, field);
                    assert!(reason.contains("0000 and 9999"), "{reason}");
                }
                other => panic!("{value}: {other:?}"),
            }
        }
        // A time from epoch milliseconds (HertzBeat) before year 0.
        let mut e = Event::new("s", Status::Firing, "t");
        e.occurred_at = Some(
            OffsetDateTime::from_unix_timestamp_nanos(-62_167_219_200_001 * 1_000_000).unwrap(),
        );
        assert!(matches!(
            e.prepare(NOW),
            Err(EventError::Invalid {
                field: "occurred_at",
                ..
            })
        ));
        // The edges that can be written are kept, in UTC.
        let e = prepared(json!({"source": "s", "status": "firing", "title": "t",
            "occurred_at": "9999-12-31T23:59:59+00:01"}))
        .unwrap();
        let back = Event::from_json(&e.to_json()).unwrap();
        assert_eq!(back.occurred_at, e.occurred_at);
        assert!(!e.to_json().is_empty());
    }

    #[test]
    fn fills_id_kind_received_at() {
        let event =
            prepared(json!({"source": "prometheus", "status": "firing", "title": "Disk full"}))
                .unwrap();
        assert_eq!(Uuid::parse_str(&event.id).unwrap().get_version_num(), 7);
        assert_eq!(event.kind, "alert");
        // The producer's clock: `NOW`, or later when this process already
        // stamped something at or after it.
        assert!(event.received_at.unwrap() >= NOW);
        assert_eq!(event.routing_key(), "prometheus.alert.none");
    }

    #[test]
    fn the_producer_stamps_received_at_strictly_increasing_and_exactly() {
        let mut events: Vec<Event> = (0..50)
            .map(|n| {
                let mut e = Event::new("s", crate::event::Status::Firing, format!("e{n}"));
                // A client's own value is not the event's position.
                e.received_at = Some(datetime!(2030-01-01 00:00 UTC));
                e
            })
            .collect();
        let bodies = encode_all(&mut events, NOW).unwrap();
        for pair in events.windows(2) {
            assert!(
                pair[0].position() < pair[1].position(),
                "one batch, in order"
            );
        }
        for (event, body) in events.iter().zip(&bodies) {
            assert_ne!(event.received_at, Some(datetime!(2030-01-01 00:00 UTC)));
            let back = Event::from_json(body).unwrap();
            assert_eq!(back.position(), event.position(), "to the nanosecond");
        }
    }

    #[test]
    fn keeps_given_id_and_times_in_utc_and_stamps_received_at() {
        let event = prepared(json!({
            "id": "evt-1", "source": "grafana", "status": "resolved", "title": "x",
            "severity": "high", "occurred_at": "2026-11-25T12:00:00+02:00",
            "received_at": "2026-11-25T10:00:01Z"
        }))
        .unwrap();
        assert_eq!(event.id, "evt-1");
        assert_eq!(event.occurred_at, Some(datetime!(2026-11-25 10:00:00 UTC)));
        assert_ne!(
            event.received_at,
            Some(datetime!(2026-11-25 10:00:01 UTC)),
            "the producer's own stamp"
        );
        assert_eq!(event.routing_key(), "grafana.alert.high");
        let text = String::from_utf8(event.to_json()).unwrap();
        assert!(
            text.contains(r#""occurred_at":"2026-11-25T10:00:00Z""#),
            "{text}"
        );
    }

    #[test]
    fn derives_title_in_order() {
        let from_alertname = prepared(json!({"source": "s", "status": "firing",
            "labels": {"alertname": "HighLatency"}, "annotations": {"summary": "p99 high"}}))
        .unwrap();
        assert_eq!(from_alertname.title, "HighLatency");
        let from_summary = prepared(json!({"source": "s", "status": "firing",
            "annotations": {"summary": "p99 high"}, "message": "m"}))
        .unwrap();
        assert_eq!(from_summary.title, "p99 high");
        let from_message =
            prepared(json!({"source": "s", "status": "firing", "message": "\n  first\nsecond"}))
                .unwrap();
        assert_eq!(from_message.title, "first");
    }

    #[test]
    fn title_becomes_one_line_and_is_capped() {
        let event =
            prepared(json!({"source": "s", "status": "firing", "title": "a\nb\r\n  c"})).unwrap();
        assert_eq!(event.title, "a b c");
        let long = "x".repeat(5000);
        let event = prepared(json!({"source": "s", "status": "firing", "title": long})).unwrap();
        assert_eq!(event.title.chars().count(), MAX_TITLE_CHARS);
        assert!(event.title.ends_with('…'));
    }

    #[test]
    fn refuses_what_the_schema_does_not_allow() {
        let cases = [
            (
                json!({"status": "firing", "title": "t"}),
                "missing field `source`",
            ),
            (
                json!({"source": "s", "title": "t"}),
                "missing field `status`",
            ),
            (
                json!({"source": "s", "status": "fired", "title": "t"}),
                "unknown variant `fired`",
            ),
            (
                json!({"source": "s", "status": "firing", "title": "t", "severity": "sev1"}),
                "unknown variant `sev1`",
            ),
            (
                json!({"source": "s", "status": "firing", "title": "t", "lables": {}}),
                "unknown field `lables`",
            ),
            (
                json!({"source": "s", "status": "firing", "title": "t", "labels": {"a": 1}}),
                "invalid type: integer `1`, expected a string",
            ),
            (
                json!({"source": "s", "status": "firing", "title": "t", "data": []}),
                "invalid type: sequence, expected a map",
            ),
            (
                json!({"source": "s", "status": "firing", "title": "t", "occurred_at": "yesterday"}),
                "occurred_at",
            ),
            (
                json!({"source": "s", "status": "firing"}),
                "field `title`: required",
            ),
            (
                json!({"source": "", "status": "firing", "title": "t"}),
                "field `source`: must not be empty",
            ),
            (
                json!({"source": "a b", "status": "firing", "title": "t"}),
                "field `source`: must not contain",
            ),
            (
                json!({"source": "s", "status": "firing", "title": "t", "links": [{"href": " "}]}),
                "field `links`: link 0 has an empty href",
            ),
        ];
        for (input, expected) in cases {
            let err = prepared(input.clone())
                .expect_err(&input.to_string())
                .to_string();
            assert!(err.contains(expected), "{input}: {err}");
        }
    }

    #[test]
    fn size_cap_is_a_clear_error() {
        let err = prepared(json!({"source": "s", "status": "firing", "title": "t",
            "message": "m".repeat(MAX_EVENT_BYTES)}))
        .unwrap_err();
        assert!(matches!(
            err,
            EventError::TooLarge {
                max: MAX_EVENT_BYTES,
                ..
            }
        ));
        assert!(
            err.to_string().contains("over the 262144-byte limit"),
            "{err}"
        );
    }

    #[test]
    fn received_events_get_a_stable_id() {
        let raw = br#"{"source":"s","status":"firing","title":"t"}"#;
        let mut a = Event::from_json(raw).unwrap();
        let mut b = Event::from_json(raw).unwrap();
        assert!(
            !a.prepare_received(raw, NOW).unwrap(),
            "id, kind, received_at filled in"
        );
        b.prepare_received(raw, NOW).unwrap();
        // As a producer sends it: prepared already, nothing changes.
        let sent = a.to_json();
        let mut c = Event::from_json(&sent).unwrap();
        assert!(c.prepare_received(&sent, NOW).unwrap());
        assert_eq!(c, a);
        let spaced = br#"{"id":"e","kind":"alert","source":"s","status":"firing","title":"a  b","received_at":"2026-11-25T10:00:00Z"}"#;
        let mut d = Event::from_json(spaced).unwrap();
        assert!(
            !d.prepare_received(spaced, NOW).unwrap(),
            "the title was made one line"
        );
        assert_eq!(a.id, b.id);
        assert_ne!(delivery_id(&a.id, "x"), delivery_id(&a.id, "y"));
        assert_eq!(delivery_id(&a.id, "x"), delivery_id(&b.id, "x"));
    }

    #[test]
    fn round_trips() {
        let event = prepared(json!({
            "id": "e1", "dedup_key": "k", "source": "s", "kind": "integration.status",
            "status": "acknowledged", "severity": "info", "title": "t", "message": "m",
            "labels": {"team": "db"}, "annotations": {"runbook": "r"},
            "links": [{"href": "https://x", "text": "X"}], "image_url": "https://i",
            "environment": "prod", "occurred_at": "2026-01-01T00:00:00Z",
            "resolved_at": "2026-01-01T01:00:00.5Z", "data": {"n": [1, 2]}
        }))
        .unwrap();
        let back = Event::from_json(&event.to_json()).unwrap();
        assert_eq!(back, event);
        assert_eq!(event.routing_key(), "s.integration.status.info");
    }
}
