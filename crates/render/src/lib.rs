//! Request bodies: an integration's template over the event.
//!
//! Layout:
//! - [`template`]: compiling a template (checked against the event's
//!   fields) and rendering it;
//! - [`context`]: what a template sees: the event's fields, `event` (the
//!   whole event), `integration`, `delivery_id`;
//! - [`filters`]: the filters and functions alertpost adds to the engine;
//! - [`presets`]: the preset formats, template files under `presets/`.
//!
//! Templates use `{{ dotted.path }}` placeholders (minijinja: conditions,
//! loops and filters work too). A JSON template is parsed as JSON first and
//! only its strings are templates, so the body is valid JSON whatever the
//! event holds; a string that is exactly one placeholder becomes the value
//! itself, with its JSON type (and an object member whose value is missing
//! is left out). Other content types render the text as is.

pub mod context;
pub mod filters;
pub mod presets;
pub mod sample;
pub mod template;

pub use context::{Context, Extra};
pub use template::{Body, CompileError, RenderError};
