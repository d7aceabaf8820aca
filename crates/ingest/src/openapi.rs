//! The ingest's OpenAPI 3.1 document, served at `/openapi.json`: the
//! operations from the handlers' `#[utoipa::path]` annotations, the
//! answers from the types the handlers send, and the event from the
//! `alertpost.event.v1` JSON Schema the event crate keeps in step with
//! its type (embedded whole, its `$defs` as components).

use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The answers' types, as the document names them.
pub use crate::answers::{Accepted, EventsBody, Problem, Ready};
use crate::routes;

/// The document describing this API.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "This OpenAPI document", content_type = "application/json")))]
pub(crate) async fn openapi_json() -> axum::Json<serde_json::Value> {
    axum::Json(document())
}

struct Tokens;

impl Modify for Tokens {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        if let Some(c) = api.components.as_mut() {
            c.add_security_scheme(
                "token",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "alertpost ingest",
        description = "Alerts in, as alertpost.event.v1 events or in a source's format; 202 only once the broker has confirmed every event."
    ),
    paths(
        routes::events,
        routes::ingest,
        routes::healthz,
        routes::readyz,
        routes::metrics,
        openapi_json
    ),
    components(schemas(Accepted, Problem, Ready)),
    modifiers(&Tokens)
)]
struct IngestApi;

/// The document, the event's schema embedded.
pub fn document() -> Value {
    let mut doc = serde_json::to_value(IngestApi::openapi()).unwrap_or_default();
    alertpost_event::schema::embed_event_schema(&mut doc);
    // The formats the route takes, from the list it parses against.
    let names: Vec<&str> = alertpost_event::normalize::Format::ALL
        .iter()
        .map(|f| f.name())
        .collect();
    if let Some(params) = doc
        .pointer_mut("/paths/~1v1~1ingest~1{format}/post/parameters")
        .and_then(Value::as_array_mut)
    {
        for p in params.iter_mut().filter(|p| p["name"] == "format") {
            p["schema"] = serde_json::json!({ "type": "string", "enum": names });
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_describes_every_route_and_embeds_the_event() {
        let doc = document();
        assert!(
            doc["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1")),
            "{}",
            doc["openapi"]
        );
        for path in [
            "/v1/events",
            "/v1/ingest/{format}",
            "/healthz",
            "/readyz",
            "/metrics",
            "/openapi.json",
        ] {
            assert!(doc["paths"].get(path).is_some(), "{path} is described");
        }
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["Event"]["required"],
            serde_json::json!(["source", "status"])
        );
        assert!(
            schemas.get("name").is_some(),
            "the event's $defs are components"
        );
        let text = doc.to_string();
        assert!(
            !text.contains("#/$defs/"),
            "every reference points into components"
        );
        assert!(schemas.get("Accepted").is_some() && schemas.get("Problem").is_some());
        let format = &doc["paths"]["/v1/ingest/{format}"]["post"]["parameters"][0];
        assert_eq!(format["name"], "format");
        assert!(
            format["schema"]["enum"]
                .as_array()
                .is_some_and(|e| e.iter().any(|n| n == "alertmanager")),
            "{format}"
        );
    }
}
