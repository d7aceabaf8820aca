//! The admin HTTP server: its routes, who may use them, and serving.
//!
//! | route | answers |
//! | --- | --- |
//! | `GET /healthz` | the process is alive |
//! | `GET /readyz` | 200 when connected to the broker, consuming, able to publish (not blocked by an alarm, its publishing connection up) and the store writes; else 503 with the `reason` |
//! | `GET /metrics` | Prometheus metrics |
//! | `GET /v1/integrations` | every integration: state, circuit, counts, last success and failure ([`crate::status`]) |
//! | `POST /v1/integrations/{id}/test` | a test delivery of the sample event, as `alertpost test` makes it ([`crate::trial`]) |
//! | `GET /v1/attempts?event_id=&delivery_id=&integration=&limit=` | attempts from this worker's store, JSON, oldest first, secrets masked |
//! | `GET /v1/dead-letters?integration=&limit=` | dead letters this worker produced (its store's copies), JSON, newest first |
//! | `GET /v1/dlq?integration=&limit=` | the dead queue (every worker's), one row per delivery, oldest first |
//! | `GET /v1/dlq/{id}` | one dead letter in full, by its id, delivery id or event id; 404 if none |
//! | `POST /v1/dlq/replay` | body `{"integration": ID}`, `{"id": ID}` or `"all"`, `?force=true` to send those older than their alert's newest event: sends them back to be delivered, attempts reset; answers `{"replayed", "unreadable"}` |
//! | `POST /v1/dlq/purge` | deletes every dead letter; answers `{"purged"}` |
//! | `GET /openapi.json` | this API as OpenAPI 3.1 ([`crate::openapi::document`]) |
//! | `GET /`, `/attempts`, `/dead-letters`, `/dead-letters/{id}` | the console (`crate::console`) |
//!
//! `limit` is at most [`crate::MAX_LIMIT`] (100 when not given). With `[admin]
//! token` set, every `/v1/` route needs `Authorization: Bearer <token>`
//! (401 otherwise); `/healthz`, `/readyz` and `/metrics` stay open, for
//! probes and Prometheus. Writes from another site's page, and (without a
//! token, on loopback) host names that are not local, are refused
//! (`crate::browser`); receivers' words are masked (`crate::masking`).
//! The dead-queue routes open a session with the backend for the request
//! (RabbitMQ: a connection of their own), so they work whatever the
//! worker's consumers are doing.

use std::future::Future;
use std::sync::Arc;

use alertpost_config::Secret;
use alertpost_seam::Backend;
use alertpost_worker::View;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::extract::{Problem, token_of};
use crate::state::Admin;
use crate::{browser, console, dlq, openapi, probes, records};

/// The admin API's routes and the console over the worker's `view` and
/// `backend` (whose dead queue the `/v1/dlq` routes read); the token is
/// the config's `[admin] token`; `bound`: the address served on (without a
/// token, a loopback one answers only to local host names:
/// [`crate::browser`]).
pub fn router<B: Backend>(
    view: View,
    backend: Arc<B>,
    bound: Option<std::net::SocketAddr>,
) -> Router {
    let token = view.runtime().config.admin.token.clone();
    let local_only = token.is_none() && bound.is_some_and(|a| a.ip().is_loopback());
    let token = token.map(Arc::new);
    let admin = Admin {
        view,
        backend,
        token_required: token.is_some(),
    };
    let v1 = Router::new()
        .route("/v1/integrations", get(records::integrations::<B>))
        .route(
            "/v1/integrations/{id}/test",
            post(records::integration_test::<B>),
        )
        .route("/v1/attempts", get(records::attempts::<B>))
        .route("/v1/dead-letters", get(records::dead_letters::<B>))
        .route("/v1/dlq", get(dlq::dlq_list::<B>))
        .route("/v1/dlq/replay", post(dlq::dlq_replay::<B>))
        .route("/v1/dlq/purge", post(dlq::dlq_purge::<B>))
        .route("/v1/dlq/{id}", get(dlq::dlq_show::<B>))
        .route_layer(middleware::from_fn_with_state(token.clone(), authorize))
        .route_layer(middleware::from_fn(browser::writes_from_here));
    Router::new()
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(probes::readyz::<B>))
        .route("/metrics", get(probes::metrics_text::<B>))
        .route("/openapi.json", get(openapi::openapi_json))
        .merge(v1)
        .with_state(admin.clone())
        .merge(console::router(admin, token))
        .layer(middleware::from_fn_with_state(
            local_only,
            browser::local_host_only,
        ))
}

/// With a token configured, lets through only requests that bear it.
async fn authorize(
    State(token): State<Option<Arc<Secret>>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = token {
        // Bearer only: a browser sends Basic credentials by itself.
        let given = token_of(request.headers(), false);
        if !given.is_some_and(|g| token.is(&g)) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                axum::Json(Problem::new(
                    "this route needs the admin token: Authorization: Bearer <token>",
                )),
            )
                .into_response();
        }
    }
    next.run(request).await
}

/// Serves the admin API and the console of the worker behind `view` on
/// `listener` until `shutdown` completes.
pub async fn serve<B: Backend>(
    listener: tokio::net::TcpListener,
    view: View,
    backend: Arc<B>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = router(view, backend, listener.local_addr().ok());
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
