//! Source formats → normalized events.
//!
//! One module per format, each a pure function from the payload (a parsed
//! JSON document) to events that still need [`Event::prepare`]. The mapping
//! of every field, status and severity is documented in each module and in
//! `docs/formats.md`. Payloads are read leniently (unknown fields are kept
//! under `data`, never refused), but a payload that lacks what the format
//! requires is refused with a reason.

mod alertmanager;
mod aporia;
mod documents;
mod hertzbeat;
mod oncall;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde_json::Value;
use time::OffsetDateTime;

use crate::event::{Event, Severity};

pub use documents::{Documents, Raw, documents};

/// A payload format accepted by `publish --format` and `/v1/ingest/<format>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `alertpost.event.v1` itself: one object or an array of them.
    Events,
    /// Alertmanager webhook (version 4); source `prometheus`.
    Alertmanager,
    /// Grafana unified alerting webhook contact point; source `grafana`.
    Grafana,
    /// Apache HertzBeat alert webhook; source `hertzbeat`.
    Hertzbeat,
    /// Grafana OnCall formatted webhook; source `grafana-oncall`.
    GrafanaOncall,
    /// Aporia monitor alert webhook; source `aporia`.
    Aporia,
}

impl Format {
    pub const ALL: [Format; 6] = [
        Format::Events,
        Format::Alertmanager,
        Format::Grafana,
        Format::Hertzbeat,
        Format::GrafanaOncall,
        Format::Aporia,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Format::Events => "events",
            Format::Alertmanager => "alertmanager",
            Format::Grafana => "grafana",
            Format::Hertzbeat => "hertzbeat",
            Format::GrafanaOncall => "grafana-oncall",
            Format::Aporia => "aporia",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = NormalizeError;

    fn from_str(s: &str) -> Result<Format, NormalizeError> {
        Format::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| NormalizeError {
                reason: format!(
                    "unknown format `{s}`; expected one of: {}",
                    Format::ALL.map(Format::name).join(", ")
                ),
            })
    }
}

/// Why a payload could not be turned into events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct NormalizeError {
    pub reason: String,
}

impl NormalizeError {
    fn new(reason: impl Into<String>) -> NormalizeError {
        NormalizeError {
            reason: reason.into(),
        }
    }
}

/// Turns one payload document of `format` into events, not yet prepared.
pub fn normalize(format: Format, doc: Value) -> Result<Vec<Event>, NormalizeError> {
    match format {
        Format::Events => events(doc),
        Format::Alertmanager => alertmanager::normalize(doc, "prometheus"),
        Format::Grafana => alertmanager::normalize(doc, "grafana"),
        Format::Hertzbeat => hertzbeat::normalize(doc),
        Format::GrafanaOncall => oncall::normalize(doc),
        Format::Aporia => aporia::normalize(doc),
    }
}

/// Why one document's bytes gave no events.
#[derive(Debug, thiserror::Error)]
pub enum SliceError {
    /// Not JSON. serde_json's error, for the reader to place: in a body, in
    /// a file.
    #[error("invalid JSON: {0}")]
    Json(serde_json::Error),
    #[error(transparent)]
    Normalize(#[from] NormalizeError),
}

/// One document of `format` from its bytes into events, not yet prepared:
/// `alertpost.event.v1` decoded straight into events when it can be (no
/// JSON value in between: about 10k instructions an event less), else, and
/// for the other formats, through a value and [`normalize`], which names
/// what is wrong and where (the index of the event, the field).
pub fn normalize_slice(format: Format, bytes: &[u8]) -> Result<Vec<Event>, SliceError> {
    if format == Format::Events
        && let Some(events) = events_from_slice(bytes)
    {
        return Ok(events);
    }
    let doc: Value = serde_json::from_slice(bytes).map_err(SliceError::Json)?;
    Ok(normalize(format, doc)?)
}

/// `alertpost.event.v1` bytes (one object or an array of them) straight
/// into events, with no JSON value in between. `None` when anything in
/// them does not decode; [`normalize`] of the parsed document then names
/// what and where (it knows each event's index).
fn events_from_slice(bytes: &[u8]) -> Option<Vec<Event>> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace())? {
        b'[' => serde_json::from_slice(bytes).ok(),
        b'{' => serde_json::from_slice(bytes).ok().map(|e| vec![e]),
        _ => None,
    }
}

fn events(doc: Value) -> Result<Vec<Event>, NormalizeError> {
    let one = |(i, v): (Option<usize>, Value)| {
        Event::from_value(v).map_err(|e| match i {
            Some(i) => NormalizeError::new(format!("event {i}: {e}")),
            None => NormalizeError::new(e.to_string()),
        })
    };
    match doc {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| one((Some(i), v)))
            .collect(),
        other => Ok(vec![one((None, other))?]),
    }
}

/// Maps a source's severity word onto alertpost's four levels,
/// case-insensitively; `None` for words it does not know.
///
/// | alertpost | source words |
/// | --- | --- |
/// | critical | critical, crit, fatal, emergency, disaster, page, p1, sev1 |
/// | high | high, error, err, major, p2, sev2 |
/// | warning | warning, warn, medium, minor, average, p3, sev3 |
/// | info | info, informational, low, notice, ok, none, debug, p4, p5, sev4, sev5 |
pub fn map_severity(word: &str) -> Option<Severity> {
    let word = word.trim().to_ascii_lowercase();
    Some(match word.as_str() {
        "critical" | "crit" | "fatal" | "emergency" | "disaster" | "page" | "p1" | "sev1" => {
            Severity::Critical
        }
        "high" | "error" | "err" | "major" | "p2" | "sev2" => Severity::High,
        "warning" | "warn" | "medium" | "minor" | "average" | "p3" | "sev3" => Severity::Warning,
        "info" | "informational" | "low" | "notice" | "ok" | "none" | "debug" | "p4" | "p5"
        | "sev4" | "sev5" => Severity::Info,
        _ => return None,
    })
}

/// An RFC 3339 time, or `None` for a missing, unparsable or zero time
/// (Alertmanager writes `0001-01-01T00:00:00Z` for "not yet").
fn rfc3339(s: Option<&str>) -> Option<OffsetDateTime> {
    let t = OffsetDateTime::parse(s?, &time::format_description::well_known::Rfc3339).ok()?;
    (t.year() > 1).then_some(t)
}

/// Milliseconds since the epoch, as a number or a numeric string.
fn epoch_millis(v: Option<&Value>) -> Option<OffsetDateTime> {
    let ms = as_i64(v?)?;
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A scalar as a label value: strings as they are, numbers and bools in
/// their JSON form; `None` for null, arrays and objects.
fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn str_field<'a>(obj: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a str> {
    obj.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn object(doc: Value, what: &str) -> Result<serde_json::Map<String, Value>, NormalizeError> {
    match doc {
        Value::Object(map) => Ok(map),
        other => Err(NormalizeError::new(format!(
            "{what} payload must be a JSON object, got {}",
            kind_of(&other)
        ))),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// String-valued entries of a JSON object (others are dropped: labels are
/// strings by contract).
fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    let Some(Value::Object(map)) = v else {
        return BTreeMap::new();
    };
    map.iter()
        .filter_map(|(k, v)| Some((k.clone(), scalar_string(v)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_words() {
        for (word, expected) in [
            ("CRITICAL", Some(Severity::Critical)),
            ("error", Some(Severity::High)),
            ("Warn", Some(Severity::Warning)),
            ("medium", Some(Severity::Warning)),
            ("low", Some(Severity::Info)),
            ("whatever", None),
        ] {
            assert_eq!(map_severity(word), expected, "{word}");
        }
    }

    #[test]
    fn events_format_takes_an_object_or_an_array() {
        let v = serde_json::json!([{"source": "a", "status": "firing", "title": "t"},
            {"source": "b", "status": "resolved", "title": "u"}]);
        assert_eq!(normalize(Format::Events, v).unwrap().len(), 2);
        let bad = serde_json::json!([{"source": "a", "status": "firing"}, {"status": "x"}]);
        let err = normalize(Format::Events, bad).unwrap_err();
        assert!(err.reason.starts_with("event 1: "), "{err}");
    }

    #[test]
    fn the_fast_path_decodes_what_normalize_does_and_leaves_the_rest_to_it() {
        let docs: [&[u8]; 4] = [
            br#" {"source":"a","status":"firing","title":"t","labels":{"k":"v"},"data":{"n":1.5}}"#,
            br#"[{"source":"a","status":"firing","title":"t"},
                 {"source":"b","status":"resolved","occurred_at":"2026-11-25T10:00:00+02:00"}]"#,
            b"[]",
            // A duplicate key: the struct refuses it, the value keeps the last.
            br#"{"source":"a","source":"b","status":"firing","title":"t"}"#,
        ];
        for (i, doc) in docs.iter().enumerate() {
            let slow = normalize(Format::Events, serde_json::from_slice(doc).unwrap()).unwrap();
            match events_from_slice(doc) {
                Some(fast) => assert_eq!(fast, slow, "document {i}"),
                None => assert_eq!(i, 3, "document {i} left to the slow path"),
            }
        }
        for bad in [
            &br#"[{"source":"a","status":"firing"},{"status":"x"}]"#[..],
            br#"{"source":"a","status":"firing","extra":1}"#,
            br#"{"source":"a","status":"firing"} trailing"#,
            b"\"a string\"",
            b"",
            b"  ",
        ] {
            assert_eq!(
                events_from_slice(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn format_names_round_trip() {
        for f in Format::ALL {
            assert_eq!(f.name().parse::<Format>().unwrap(), f);
        }
        let err = "nagios".parse::<Format>().unwrap_err();
        assert!(err.reason.contains("alertmanager, grafana"), "{err}");
    }
}
