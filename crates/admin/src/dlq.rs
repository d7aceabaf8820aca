//! The dead queue (every worker's) through the admin API: list, show,
//! replay, purge. Each request opens a session with the backend of its own
//! (RabbitMQ: a connection of its own), so it works whatever the worker's
//! consumers are doing; the work runs detached from the request, so a
//! caller that hangs up cuts nothing short.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use alertpost_seam::Backend;

use crate::deadletters::{self, Through, Which};
use crate::extract::{J, Problem, Q};
use crate::records::DeadQuery;
use crate::state::{Admin, DEFAULT_LIMIT, MAX_LIMIT, dead_one, dead_rows, detached};

/// What a purge did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Purged {
    pub purged: usize,
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
pub(crate) async fn dlq_list<B: Backend>(
    State(admin): State<Admin<B>>,
    Q(q): Q<DeadQuery>,
) -> Response {
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
pub(crate) async fn dlq_show<B: Backend>(
    State(admin): State<Admin<B>>,
    Path(id): Path<String>,
) -> Response {
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

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReplayQuery {
    /// `true`: each delivery is sent even if its alert had a newer event
    /// since (per-key order would supersede it).
    force: Option<bool>,
}

/// Sends dead letters back to be delivered, attempts reset.
#[utoipa::path(
    post,
    path = "/v1/dlq/replay",
    params(ReplayQuery),
    request_body(content = deadletters::Which, description = "`{\"integration\": ID}`, `{\"id\": ID}` or `\"all\"`"),
    responses(
        (status = 200, description = "What was replayed", body = deadletters::Replayed),
        (status = 403, description = "Sent from another site's page", body = Problem),
        (status = 413, description = "A body too large", body = Problem),
        (status = 400, description = "A body that is not JSON", body = Problem),
        (status = 415, description = "No JSON content type", body = Problem),
        (status = 422, description = "JSON that says no dead letters", body = Problem),
        (status = 400, description = "A query that does not read", body = Problem),
        (status = 401, description = "The admin token is needed", body = Problem),
        (status = 503, description = "The broker cannot be read or written now (what went out stays out)", body = Problem),
    ),
    security(("token" = []))
)]
pub(crate) async fn dlq_replay<B: Backend>(
    State(admin): State<Admin<B>>,
    Q(query): Q<ReplayQuery>,
    J(which): J<Which>,
) -> Response {
    let backend = admin.backend.clone();
    let chosen = which.clone();
    let force = query.force.unwrap_or(false);
    let done = detached(async move {
        let done = deadletters::with_dead_queue(&*backend, async |session, reader| {
            deadletters::replay(reader, &Through(session), &chosen, force).await
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
                force,
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
pub(crate) async fn dlq_purge<B: Backend>(State(admin): State<Admin<B>>) -> Response {
    let backend = admin.backend.clone();
    let purged = detached(async move { deadletters::purge(&*backend).await }).await;
    match purged {
        Ok(n) => {
            tracing::warn!(purged = n, "dead queue purged through the admin API");
            axum::Json(Purged { purged: n }).into_response()
        }
        Err(e) => unavailable(e),
    }
}
