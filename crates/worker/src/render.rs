//! The render stage: a delivery's body, the event as its message carried
//! it or its integration's template rendered
//! ([`alertpost_config::Integration::render_body`], the one way test
//! deliveries render too).

use alertpost_render::{Context, RenderError};
use bytes::Bytes;

use crate::delivery::Delivery;

/// What bodies are made from: the event's JSON (the `alertpost` body as it
/// is) and, when a template needs it, the rendering context; both built
/// once per message, shared by its deliveries.
#[derive(Clone, Copy)]
pub(crate) struct Rendering<'a> {
    pub event_json: &'a Bytes,
    pub context: Option<&'a Context>,
}

/// The body of `d`.
pub(crate) fn body(d: &Delivery<'_>, from: Rendering<'_>) -> Result<Bytes, RenderError> {
    d.target
        .integration
        .render_body(from.event_json, from.context, &d.id)
}
