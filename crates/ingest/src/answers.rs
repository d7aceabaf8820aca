//! What the ingest answers: its JSON bodies, which the OpenAPI document
//! describes from these same types.

use serde::Serialize;
use utoipa::openapi::{ArrayBuilder, OneOfBuilder, Ref, RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

/// `202`: every event stored (confirmed by the broker).
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// How many events were accepted.
    pub accepted: usize,
    /// Their ids, in the order given.
    pub ids: Vec<String>,
}

/// A refusal: what was wrong, and for an array, which event.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    pub error: String,
    /// The place in the array of the event refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
}

/// `/readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    pub ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The body of `POST /v1/events`: one event or an array of them.
pub struct EventsBody;

impl PartialSchema for EventsBody {
    fn schema() -> RefOr<Schema> {
        let event = || Ref::from_schema_name("Event");
        OneOfBuilder::new()
            .item(event())
            .item(ArrayBuilder::new().items(event()))
            .into()
    }
}

impl ToSchema for EventsBody {}

/// A JSON answer: `status` with a [`Problem`] saying `reason` (and, for an
/// array, which event).
pub(crate) fn problem(
    status: axum::http::StatusCode,
    reason: String,
    index: Option<usize>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = Problem {
        error: reason,
        index,
    };
    (status, axum::Json(body)).into_response()
}
