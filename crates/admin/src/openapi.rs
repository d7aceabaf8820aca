//! The admin API as OpenAPI 3.1 (`/openapi.json`): utoipa on the handlers,
//! their answers' own types, the event's JSON Schema embedded.

use crate::dlq::{self, Purged};
use crate::extract::Problem;
use crate::probes::{self, Ready};
use crate::records;

/// The document describing this API.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "This OpenAPI document", content_type = "application/json")))]
pub(crate) async fn openapi_json() -> axum::Json<serde_json::Value> {
    axum::Json(document())
}

struct Tokens;

impl utoipa::Modify for Tokens {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        if let Some(c) = api.components.as_mut() {
            c.add_security_scheme(
                "token",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "alertpost admin",
        description = "A worker's (or `alertpost run`'s) health, metrics, attempts, and the dead queue. With `[admin] token`, every /v1/ route needs it as a Bearer token."
    ),
    paths(
        probes::healthz,
        probes::readyz,
        probes::metrics_text,
        openapi_json,
        records::integrations,
        records::integration_test,
        records::attempts,
        records::dead_letters,
        dlq::dlq_list,
        dlq::dlq_show,
        dlq::dlq_replay,
        dlq::dlq_purge
    ),
    components(schemas(Problem, Ready, Purged)),
    modifiers(&Tokens)
)]
struct AdminApi;

/// The admin API's OpenAPI 3.1 document, the event's schema embedded.
pub fn document() -> serde_json::Value {
    use utoipa::OpenApi as _;
    let mut doc = serde_json::to_value(AdminApi::openapi()).unwrap_or_default();
    alertpost_event::schema::embed_event_schema(&mut doc);
    doc
}
