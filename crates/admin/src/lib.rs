//! alertpost's operator surface, over a worker's read-only view
//! (`alertpost_worker::View`) and its backend: the admin API, the console,
//! the OpenAPI document, test deliveries and the dead-letter tools. It
//! reads the delivery core; the core never reads it.
//!
//! Layout, from the request in:
//! - [`server`]: the routes, the token, serving (`serve`);
//! - [`browser`]: requests a browser makes on another site's behalf,
//!   refused;
//! - `extract`: queries and bodies refused as JSON, the token a request
//!   presents;
//! - `state`: what every route shares, and the reads the API and the
//!   console both make (masked);
//! - `probes`: `/healthz`, `/readyz`, `/metrics`;
//! - `records`: this worker's integrations, attempts and dead letters;
//!   a test delivery;
//! - `dlq`: the dead queue through the API;
//! - [`openapi`]: the API as OpenAPI 3.1;
//! - `console`: the operators' pages, over the same reads;
//! - [`status`]: where each integration stands;
//! - [`trial`]: a test delivery shown in full (`alertpost test` too);
//! - [`deadletters`]: the dead queue for operators over any backend's
//!   reader (`alertpost dlq` too);
//! - [`masking`]: the integrations' secrets out of what receivers answered.

pub mod browser;
mod console;
pub mod deadletters;
mod dlq;
mod extract;
pub mod masking;
pub mod openapi;
mod probes;
mod records;
pub mod server;
mod state;
pub mod status;
pub mod trial;

pub use extract::Problem;
pub use openapi::document;
pub use server::{router, serve};
pub use state::MAX_LIMIT;
