//! What a template sees.
//!
//! | name | value |
//! | --- | --- |
//! | `id`, `source`, `status`, `title`, `labels`, ... | the event's fields (a missing one is undefined) |
//! | `event` | the whole event |
//! | `integration` | `id`, `name`, and `routing_key` when set |
//! | `delivery_id` | the delivery id (the `webhook-id`) |

use alertpost_event::Event;
use minijinja::Value;
use minijinja::value::Serde;

/// Every top-level field of an event a template may name.
pub const EVENT_FIELDS: &[&str] = &[
    "id",
    "dedup_key",
    "source",
    "kind",
    "status",
    "severity",
    "title",
    "message",
    "labels",
    "annotations",
    "links",
    "image_url",
    "environment",
    "occurred_at",
    "resolved_at",
    "received_at",
    "data",
];

/// Fields whose keys are the event's own: any `labels.x` is valid.
pub const OPEN_FIELDS: &[&str] = &["labels", "annotations", "data"];

/// The event as templates see it; built once per message and shared by every
/// integration's rendering.
#[derive(Debug, Clone)]
pub struct Context {
    event: Value,
}

/// What differs per integration.
#[derive(Debug, Clone, Copy)]
pub struct Extra<'a> {
    pub integration_id: &'a str,
    pub integration_name: &'a str,
    pub routing_key: Option<&'a str>,
    pub delivery_id: &'a str,
}

impl Context {
    pub fn new(event: &Event) -> Context {
        Context {
            event: Value::from(Serde(event)),
        }
    }

    /// The full context for one integration.
    pub(crate) fn with(&self, extra: &Extra<'_>) -> Value {
        let mut integration = vec![
            ("id", Value::from(extra.integration_id)),
            ("name", Value::from(extra.integration_name)),
        ];
        if let Some(key) = extra.routing_key {
            integration.push(("routing_key", Value::from(key)));
        }
        minijinja::context! {
            event => self.event.clone(),
            integration => Value::from_pairs(integration),
            delivery_id => extra.delivery_id,
            ..self.event.clone()
        }
    }
}
