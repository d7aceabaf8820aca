//! The worker's admin HTTP server.
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
//! | `POST /v1/dlq/replay` | body `{"integration": ID}`, `{"id": ID}` or `"all"`: sends them back to be delivered, attempts reset; answers `{"replayed", "unreadable"}` |
//! | `POST /v1/dlq/purge` | deletes every dead letter; answers `{"purged"}` |
//! | `GET /openapi.json` | this API as OpenAPI 3.1 ([`document`]) |
//! | `GET /`, `/attempts`, `/dead-letters`, `/dead-letters/{id}` | the console (`crate::console`) |
//!
//! `limit` is at most [`MAX_LIMIT`] (100 when not given). With `[admin]
//! token` set, every `/v1/` route needs `Authorization: Bearer <token>`
//! (401 otherwise); `/healthz`, `/readyz` and `/metrics` stay open, for
//! probes and Prometheus. Writes from another site's page, and (without a
//! token, on loopback) host names that are not local, are refused
//! (`crate::origin`); receivers' words are masked (`crate::masking`).
//! The dead-queue routes open a session with the backend for the request
//! (RabbitMQ: a connection of their own), so they work whatever the
//! worker's consumers are doing.

use std::future::Future;
use std::sync::Arc;

use alertpost_config::Secret;
use alertpost_seam::{Backend, BrokerError};
use alertpost_store::AttemptRecord;
use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use crate::deadletters::{self, Through, Which};
use crate::health::Health;
use crate::runtime::Ctx;

/// Records returned when the query names no limit, and the most it may ask.
const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

pub(crate) struct Admin<B> {
    pub(crate) health: Arc<Health>,
    /// The configuration in force, the store, metrics and integration
    /// states.
    pub(crate) ctx: Arc<Ctx>,
    pub(crate) backend: Arc<B>,
    /// Whether `[admin] token` is set (the console asks for it).
    pub(crate) token_required: bool,
}

// Derived `Clone` would ask `B: Clone`; only the `Arc`s are cloned.
impl<B> Clone for Admin<B> {
    fn clone(&self) -> Admin<B> {
        Admin {
            health: self.health.clone(),
            ctx: self.ctx.clone(),
            backend: self.backend.clone(),
            token_required: self.token_required,
        }
    }
}

/// The admin API's routes and the console over `backend` (whose dead
/// queue the `/v1/dlq` routes read); `token`: see the module docs;
/// `bound`: the address served on (without a token, a loopback one
/// answers only to local host names: `crate::origin`).
pub fn router<B: Backend>(
    health: Arc<Health>,
    ctx: Arc<Ctx>,
    backend: Arc<B>,
    token: Option<Secret>,
    bound: Option<std::net::SocketAddr>,
) -> Router {
    let local_only = token.is_none() && bound.is_some_and(|a| a.ip().is_loopback());
    let token = token.map(Arc::new);
    let admin = Admin {
        health,
        ctx,
        backend,
        token_required: token.is_some(),
    };
    let v1 = Router::new()
        .route("/v1/integrations", get(integrations::<B>))
        .route("/v1/integrations/{id}/test", post(integration_test::<B>))
        .route("/v1/attempts", get(attempts::<B>))
        .route("/v1/dead-letters", get(dead_letters::<B>))
        .route("/v1/dlq", get(dlq_list::<B>))
        .route("/v1/dlq/replay", post(dlq_replay::<B>))
        .route("/v1/dlq/purge", post(dlq_purge::<B>))
        .route("/v1/dlq/{id}", get(dlq_show::<B>))
        .route_layer(middleware::from_fn_with_state(token.clone(), authorize))
        .route_layer(middleware::from_fn(crate::origin::writes_from_here));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz::<B>))
        .route("/metrics", get(metrics_text::<B>))
        .route("/openapi.json", get(openapi_json))
        .merge(v1)
        .with_state(admin.clone())
        .merge(crate::console::router(admin, token))
        .layer(middleware::from_fn_with_state(
            local_only,
            crate::origin::local_host_only,
        ))
}

/// Alive.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "Alive", body = String, content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// The document describing this API.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "This OpenAPI document", content_type = "application/json")))]
async fn openapi_json() -> axum::Json<serde_json::Value> {
    axum::Json(document())
}

/// A refusal or a failure: what went wrong.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    pub error: String,
}

impl Problem {
    pub(crate) fn new(error: impl Into<String>) -> Problem {
        Problem {
            error: error.into(),
        }
    }
}

/// `/readyz`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Ready {
    pub ready: bool,
    pub broker_connected: bool,
    pub consuming: bool,
    pub publishing: bool,
    /// The store's last write succeeded.
    pub store: bool,
    /// Why it is not ready.
    pub reason: Option<String>,
}

/// What a purge did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Purged {
    pub purged: usize,
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
        healthz,
        readyz,
        metrics_text,
        openapi_json,
        integrations,
        integration_test,
        attempts,
        dead_letters,
        dlq_list,
        dlq_show,
        dlq_replay,
        dlq_purge
    ),
    components(schemas(Problem, Ready, Purged)),
    modifiers(&Tokens)
)]
struct AdminApi;

/// The admin API's OpenAPI 3.1 document, the event's schema embedded.
pub fn document() -> serde_json::Value {
    use utoipa::OpenApi as _;
    let mut doc = serde_json::to_value(AdminApi::openapi()).unwrap_or_default();
    alertpost_event::event::embed_event_schema(&mut doc);
    doc
}

/// A query string, refused as a JSON [`Problem`] (400) when it does not
/// read (axum's own refusal is plain text).
pub(crate) struct Q<T>(pub(crate) T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<S> for Q<T> {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Q<T>, Response> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(q)) => Ok(Q(q)),
            Err(e) => Err((e.status(), axum::Json(Problem::new(e.body_text()))).into_response()),
        }
    }
}

/// A JSON body, refused as a JSON [`Problem`]: 415 without a JSON
/// content type, 400 when it does not parse, 422 when it is not the shape.
pub(crate) struct J<T>(pub(crate) T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for J<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<J<T>, Response> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(t)) => Ok(J(t)),
            Err(e) => Err((e.status(), axum::Json(Problem::new(e.body_text()))).into_response()),
        }
    }
}

/// The token `Authorization` presents: a Bearer token, or with `basic`
/// also the password of Basic authentication (any user name).
pub(crate) fn presented(headers: &axum::http::HeaderMap, basic: bool) -> Option<Vec<u8>> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.trim().split_once(' ')?;
    // Schemes are case-insensitive (RFC 9110 §11.1).
    if scheme.eq_ignore_ascii_case("bearer") {
        Some(rest.trim().as_bytes().to_vec())
    } else if basic && scheme.eq_ignore_ascii_case("basic") {
        use base64::Engine as _;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let colon = decoded.iter().position(|b| *b == b':')?;
        Some(decoded[colon + 1..].to_vec())
    } else {
        None
    }
}

/// With a token configured, lets through only requests that bear it.
async fn authorize(
    State(token): State<Option<Arc<Secret>>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = token {
        // Bearer only: a browser sends Basic credentials by itself.
        let given = presented(request.headers(), false);
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

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
async fn metrics_text<B>(State(admin): State<Admin<B>>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            alertpost_metrics::CONTENT_TYPE,
        )],
        admin.ctx.metrics.encode(),
    )
}

/// Whether the worker can do its work now.
#[utoipa::path(
    get,
    path = "/readyz",
    responses(
        (status = 200, description = "Connected, consuming, able to publish, the store writing", body = Ready),
        (status = 503, description = "Not ready; `reason` says why", body = Ready),
    )
)]
async fn readyz<B>(State(admin): State<Admin<B>>) -> impl IntoResponse {
    let health = &admin.health;
    let store_ok = admin.ctx.store.healthy();
    let ready = health.ready() && store_ok;
    let reason = match health.reason() {
        Some(reason) => Some(reason),
        None if !store_ok => Some("the store's last write failed".to_owned()),
        None => None,
    };
    let body = Ready {
        ready,
        broker_connected: health.connected(),
        consuming: health.consuming(),
        publishing: health.connected() && health.not_publishing().is_none(),
        store: store_ok,
        reason,
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AttemptsQuery {
    /// Attempts of this event.
    pub(crate) event_id: Option<String>,
    /// Attempts of this delivery (searched among the recent ones).
    pub(crate) delivery_id: Option<String>,
    pub(crate) integration: Option<String>,
    pub(crate) limit: Option<usize>,
}

/// Attempts from this worker's store, oldest first; the integrations'
/// secrets masked in what receivers answered.
#[utoipa::path(
    get,
    path = "/v1/attempts",
    params(AttemptsQuery),
    responses(
        (status = 200, description = "The attempts", body = Vec<alertpost_store::AttemptRecord>),
        (status = 400, description = "A query that does not read, or a delivery id of another form", body = Problem),
        (status = 401, description = "The admin token is needed", body = Problem),
    ),
    security(("token" = []))
)]
async fn attempts<B>(State(admin): State<Admin<B>>, Q(q): Q<AttemptsQuery>) -> Response {
    if let Some(d) = q
        .delivery_id
        .as_deref()
        .filter(|d| !alertpost_event::is_delivery_id(d))
    {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(Problem::new(format!(
                "`{d}` is not a delivery id (dlv_ and 32 hex digits)"
            ))),
        )
            .into_response();
    }
    axum::Json(find_attempts(&admin.ctx, q).await).into_response()
}

/// What `q` asks of the store, masked.
pub(crate) async fn find_attempts(ctx: &Ctx, q: AttemptsQuery) -> Vec<AttemptRecord> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let store = ctx.store.clone();
    // sled reads are blocking calls; keep them off the async threads.
    let found = tokio::task::spawn_blocking(move || match (&q.event_id, &q.delivery_id) {
        (Some(event), None) => store.attempts(Some(event), q.integration.as_deref(), limit),
        (_, Some(delivery)) => {
            let mut found = store.attempts_of_delivery(delivery, usize::MAX);
            found.retain(|r| {
                q.event_id.as_ref().is_none_or(|e| &r.event_id == e)
                    && q.integration.as_ref().is_none_or(|i| &r.integration == i)
            });
            let skip = found.len().saturating_sub(limit);
            found.into_iter().skip(skip).collect()
        }
        (None, None) => store.attempts(None, q.integration.as_deref(), limit),
    })
    .await
    .unwrap_or_default();
    masked(ctx, found)
}

/// Attempt records with their integration's secrets masked (a receiver
/// can echo a token in its answer).
fn masked(ctx: &Ctx, mut found: Vec<AttemptRecord>) -> Vec<AttemptRecord> {
    let runtime = ctx.current.get();
    for r in &mut found {
        crate::masking::record(&runtime.config, r);
    }
    found
}

/// Every integration of the configuration in force: its state, circuit,
/// counts since the worker started, last success and failure.
#[utoipa::path(
    get,
    path = "/v1/integrations",
    responses(
        (status = 200, description = "The integrations, in the config's order", body = Vec<crate::status::IntegrationStatus>),
        (status = 401, description = "The admin token is needed", body = Problem),
    ),
    security(("token" = []))
)]
async fn integrations<B>(State(admin): State<Admin<B>>) -> impl IntoResponse {
    axum::Json(crate::status::snapshot(&admin.ctx))
}

/// A test delivery of the sample event to one integration (enabled or
/// not, filters ignored), as `alertpost test` makes it: nothing recorded,
/// retried or counted.
#[utoipa::path(
    post,
    path = "/v1/integrations/{id}/test",
    params(("id" = String, Path, description = "The integration's id")),
    responses(
        (status = 200, description = "What the receiver answered (`delivered` says whether it took it)", body = crate::trial::Trial),
        (status = 401, description = "The admin token is needed", body = Problem),
        (status = 403, description = "Sent from another site's page", body = Problem),
        (status = 404, description = "No integration by that id", body = Problem),
        (status = 422, description = "The sample could not be made into a request (a header, its template)", body = Problem),
    ),
    security(("token" = []))
)]
async fn integration_test<B>(State(admin): State<Admin<B>>, Path(id): Path<String>) -> Response {
    let runtime = admin.ctx.current.get();
    let Some(integration) = runtime.config.integration(&id) else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(Problem::new(format!("no integration `{id}`"))),
        )
            .into_response();
    };
    let event = alertpost_render::sample::full();
    let tried = crate::trial::run(
        &runtime.client,
        integration,
        &event,
        "the sample event",
        crate::trial::Url::Origin,
    )
    .await;
    match tried {
        Ok(trial) => {
            tracing::info!(integration = %id, outcome = trial.outcome, "test delivery through the admin API");
            axum::Json(trial).into_response()
        }
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(Problem::new(e.to_string())),
        )
            .into_response(),
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DeadQuery {
    integration: Option<String>,
    limit: Option<usize>,
}

/// The dead letters this worker produced (its store's copies), newest first.
#[utoipa::path(
    get,
    path = "/v1/dead-letters",
    params(DeadQuery),
    responses(
        (status = 200, description = "The dead letters", body = Vec<alertpost_event::job::DeadLetter>),
        (status = 400, description = "A query that does not read", body = Problem),
        (status = 401, description = "The admin token is needed", body = Problem),
    ),
    security(("token" = []))
)]
async fn dead_letters<B>(State(admin): State<Admin<B>>, Q(q): Q<DeadQuery>) -> impl IntoResponse {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let store = admin.ctx.store.clone();
    let mut found =
        tokio::task::spawn_blocking(move || store.dead_letters(q.integration.as_deref(), limit))
            .await
            .unwrap_or_default();
    let runtime = admin.ctx.current.get();
    for letter in &mut found {
        crate::masking::letter(&runtime.config, letter);
    }
    axum::Json(found)
}

/// A failure of the dead-queue routes: 503 with what went wrong (the
/// broker's errors carry no secrets: URLs come redacted).
fn unavailable(e: impl std::fmt::Display) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(Problem::new(e.to_string())),
    )
        .into_response()
}

/// Runs `work` in a task of its own: a caller that hangs up mid-request
/// neither cuts a replay short nor leaves what it took out of the dead
/// queue held by a session nobody closes. The error says what failed.
async fn detached<T: Send + 'static>(
    work: impl Future<Output = Result<T, BrokerError>> + Send + 'static,
) -> Result<T, String> {
    match tokio::spawn(work).await {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("the dead-queue task failed: {e}")),
    }
}

/// The dead queue's rows (of one integration), oldest first, their
/// integrations' secrets masked.
pub(crate) async fn dead_rows<B: Backend>(
    admin: &Admin<B>,
    integration: Option<String>,
    limit: usize,
) -> Result<Vec<deadletters::DlqRow>, String> {
    let backend = admin.backend.clone();
    let mut rows = detached(async move {
        let integration = integration.as_deref();
        deadletters::with_dead_queue(&*backend, async |_, reader| {
            deadletters::list(reader, integration, limit).await
        })
        .await?
    })
    .await?;
    let runtime = admin.ctx.current.get();
    for row in &mut rows {
        crate::masking::row(&runtime.config, row);
    }
    Ok(rows)
}

/// One dead message in full, by its id, delivery id or event id, its
/// integration's secrets masked (in the detail and the attempts' errors:
/// receivers echo what they were sent).
pub(crate) async fn dead_one<B: Backend>(
    admin: &Admin<B>,
    id: String,
) -> Result<Option<deadletters::DeadInFull>, String> {
    let backend = admin.backend.clone();
    let mut found = detached(async move {
        deadletters::with_dead_queue(&*backend, async |_, reader| {
            deadletters::show(reader, &id).await
        })
        .await?
    })
    .await?;
    if let Some(full) = &mut found {
        crate::masking::full(&admin.ctx.current.get().config, full);
    }
    Ok(found)
}

/// The dead queue (every worker's), one row per delivery, oldest first.
#[utoipa::path(
    get,
    path = "/v1/dlq",
    params(DeadQuery),
    responses(
        (status = 200, description = "The rows", body = Vec<deadletters::DlqRow>),
        (status = 400, description = "A query that does not read", body = Problem),
        (status = 401, description = "The admin token is needed", body = Problem),
        (status = 503, description = "The broker cannot be read now", body = Problem),
    ),
    security(("token" = []))
)]
async fn dlq_list<B: Backend>(State(admin): State<Admin<B>>, Q(q): Q<DeadQuery>) -> Response {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    match dead_rows(&admin, q.integration, limit).await {
        Ok(rows) => axum::Json(rows).into_response(),
        Err(e) => unavailable(e),
    }
}

/// One dead message in full, by its id, delivery id or event id.
#[utoipa::path(
    get,
    path = "/v1/dlq/{id}",
    params(("id" = String, Path, description = "A dead letter's id, a delivery id or an event id")),
    responses(
        (status = 200, description = "The dead message", body = deadletters::DeadInFull),
        (status = 401, description = "The admin token is needed", body = Problem),
        (status = 404, description = "None by that id", body = Problem),
        (status = 503, description = "The broker cannot be read now", body = Problem),
    ),
    security(("token" = []))
)]
async fn dlq_show<B: Backend>(State(admin): State<Admin<B>>, Path(id): Path<String>) -> Response {
    match dead_one(&admin, id.clone()).await {
        Ok(Some(full)) => axum::Json(full).into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            axum::Json(Problem::new(format!(
                "no dead letter `{id}` (by id, delivery id or event id)"
            ))),
        )
            .into_response(),
        Err(e) => unavailable(e),
    }
}

/// Sends dead letters back to be delivered, attempts reset.
#[utoipa::path(
    post,
    path = "/v1/dlq/replay",
    request_body(content = deadletters::Which, description = "`{\"integration\": ID}`, `{\"id\": ID}` or `\"all\"`"),
    responses(
        (status = 200, description = "What was replayed", body = deadletters::Replayed),
        (status = 403, description = "Sent from another site's page", body = Problem),
        (status = 413, description = "A body too large", body = Problem),
        (status = 400, description = "A body that is not JSON", body = Problem),
        (status = 415, description = "No JSON content type", body = Problem),
        (status = 422, description = "JSON that says no dead letters", body = Problem),
        (status = 401, description = "The admin token is needed", body = Problem),
        (status = 503, description = "The broker cannot be read or written now (what went out stays out)", body = Problem),
    ),
    security(("token" = []))
)]
async fn dlq_replay<B: Backend>(State(admin): State<Admin<B>>, J(which): J<Which>) -> Response {
    let backend = admin.backend.clone();
    let chosen = which.clone();
    let done = detached(async move {
        let done = deadletters::with_dead_queue(&*backend, async |session, reader| {
            deadletters::replay(reader, &Through(session), &chosen).await
        })
        .await?;
        // A replay that failed half-way: what went out stays out (acked),
        // the rest stays dead; the answer says which.
        Ok(done.map_err(|e| e.to_string()))
    })
    .await;
    match done {
        Ok(Ok(done)) => {
            tracing::info!(
                replayed = done.replayed,
                ?which,
                "dead letters replayed through the admin API"
            );
            axum::Json(done).into_response()
        }
        Ok(Err(e)) | Err(e) => unavailable(e),
    }
}

/// Deletes every dead letter.
#[utoipa::path(
    post,
    path = "/v1/dlq/purge",
    responses(
        (status = 200, description = "How many were deleted", body = Purged),
        (status = 403, description = "Sent from another site's page", body = Problem),
        (status = 401, description = "The admin token is needed", body = Problem),
        (status = 503, description = "The broker cannot be read now", body = Problem),
    ),
    security(("token" = []))
)]
async fn dlq_purge<B: Backend>(State(admin): State<Admin<B>>) -> Response {
    let backend = admin.backend.clone();
    let purged = detached(async move {
        deadletters::with_dead_queue(&*backend, async |_, reader| {
            deadletters::purge(reader).await
        })
        .await?
    })
    .await;
    match purged {
        Ok(n) => {
            tracing::warn!(purged = n, "dead queue purged through the admin API");
            axum::Json(Purged { purged: n }).into_response()
        }
        Err(e) => unavailable(e),
    }
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
