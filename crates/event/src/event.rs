//! The normalized event, `alertpost.event.v1`: its fields, its JSON, its
//! routing key. Producers fill what they know; `prepare` makes an event
//! ready to publish. The JSON Schema in `schema/alertpost.event.v1.json`
//! describes the same contract, and a test keeps the two in step.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The schema name, carried as the AMQP `type` of every event message.
pub const EVENT_SCHEMA: &str = "alertpost.event.v1";

/// The largest event accepted, in bytes of its JSON encoding. Alerts are small;
/// anything bigger is almost always a payload put in the wrong place, and
/// refusing it early keeps one event from clogging a queue.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;
/// The `kind` of an event that does not say.
pub const DEFAULT_KIND: &str = "alert";

/// One alert event, as it travels through the queues.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Unique per event; a UUID v7 when the producer did not set one.
    #[serde(default)]
    pub id: String,
    /// The same for every event of one alert (firing, then resolved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_key: Option<String>,
    /// The emitting system: `prometheus`, `grafana`, `hertzbeat`, ...
    pub source: String,
    /// Event type; `alert` when not given.
    #[serde(default)]
    pub kind: String,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// One line. Derived from `labels.alertname`, `annotations.summary` or
    /// `message` when missing.
    #[serde(default)]
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub occurred_at: Option<OffsetDateTime>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub resolved_at: Option<OffsetDateTime>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub received_at: Option<OffsetDateTime>,
    /// Anything source-specific, kept as is.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub data: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Firing,
    Resolved,
    Acknowledged,
}

/// Severity levels; each source's own levels map onto these four.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    High,
    Warning,
    Info,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    pub href: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// Why an event was refused. The text is meant for the producer's user: it
/// names the field and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("not a valid {EVENT_SCHEMA} event: {0}")]
    Decode(String),
    #[error("field `{field}`: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error(
        "event is {size} bytes, over the {max}-byte limit (move large payloads out of the event and link to them)"
    )]
    TooLarge { size: usize, max: usize },
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
            Status::Acknowledged => "acknowledged",
        }
    }
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Event {
    /// A minimal event; the rest of the fields are empty.
    pub fn new(source: impl Into<String>, status: Status, title: impl Into<String>) -> Event {
        Event {
            id: String::new(),
            dedup_key: None,
            source: source.into(),
            kind: String::new(),
            status,
            severity: None,
            title: title.into(),
            message: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            links: Vec::new(),
            image_url: None,
            environment: None,
            occurred_at: None,
            resolved_at: None,
            received_at: None,
            data: serde_json::Map::new(),
        }
    }

    /// Decodes one event as a producer sent it, not yet prepared.
    pub fn from_json(bytes: &[u8]) -> Result<Event, EventError> {
        // The fast path; on failure, decode again to name the failing field.
        if let Ok(event) = serde_json::from_slice(bytes) {
            return Ok(event);
        }
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let event: Event = serde_path_to_error::deserialize(&mut de).map_err(decode_error)?;
        de.end()
            .map_err(|e| EventError::Decode(format!("trailing characters after the event: {e}")))?;
        Ok(event)
    }

    /// Decodes one event from a JSON value, not yet prepared.
    pub fn from_value(value: serde_json::Value) -> Result<Event, EventError> {
        serde_path_to_error::deserialize(value).map_err(decode_error)
    }

    /// The JSON encoding, as published.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing these types cannot fail: every map key is a string and
        // every value is plain data.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub(crate) fn encoded_len(&self) -> usize {
        struct Counter(usize);
        impl std::io::Write for Counter {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0 += buf.len();
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut counter = Counter(0);
        let _ = serde_json::to_writer(&mut counter, self);
        counter.0
    }

    /// The alert this event is about, for per-key order: its `dedup_key`,
    /// else the event alone (its id), the two kept apart.
    pub fn key(&self) -> AlertKey<'_> {
        match &self.dedup_key {
            Some(k) => AlertKey::Dedup(k),
            None => AlertKey::Event(&self.id),
        }
    }

    /// Where this event stands among its alert's events ([`Position`]).
    pub fn position(&self) -> Position {
        Position {
            at: self
                .received_at
                .map_or(i128::MIN, |t| t.unix_timestamp_nanos()),
            id: self.id.clone(),
        }
    }

    /// The routing key on the events exchange: `<source>.<kind>.<severity>`,
    /// `none` standing for a missing severity. AMQP caps keys at 255 bytes.
    pub fn routing_key(&self) -> String {
        let severity = self.severity.map_or("none", Severity::as_str);
        let mut key = format!("{}.{}.{}", self.source, self.kind, severity);
        if key.len() > 255 {
            let mut end = 255;
            while !key.is_char_boundary(end) {
                end -= 1;
            }
            key.truncate(end);
        }
        key
    }
}

/// Names the field that failed (serde's own messages do not, for values
/// such as times) and says what a time should look like.
pub(crate) fn decode_error<E: fmt::Display>(err: serde_path_to_error::Error<E>) -> EventError {
    let path = err.path().to_string();
    let inner = err.inner().to_string();
    let hint = if path.ends_with("_at") && !inner.contains("invalid type") {
        " (expected an RFC 3339 time such as 2026-11-25T10:00:00Z)"
    } else {
        ""
    };
    if path == "." {
        EventError::Decode(inner)
    } else {
        EventError::Decode(format!("`{path}`: {inner}{hint}"))
    }
}

/// The alert an event is about ([`Event::key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertKey<'a> {
    /// Its `dedup_key`: every event of one alert.
    Dedup(&'a str),
    /// An event without one: a key of its own.
    Event(&'a str),
}

impl std::fmt::Display for AlertKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AlertKey::Dedup(k) => f.write_str(k),
            AlertKey::Event(id) => write!(f, "event {id}"),
        }
    }
}

/// Where an event stands among its alert's events: its producer's stamp
/// (`received_at`, which strictly increases per producer and which no
/// client sets), then its id. Later is newer; order is decided by
/// positions, never by the order messages come back from the broker.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// `received_at`, nanoseconds since the epoch.
    pub at: i128,
    pub id: String,
}
