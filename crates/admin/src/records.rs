//! This worker's own records: its integrations' states, the attempts and
//! dead letters in its store, and a test delivery to one integration.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::extract::{Problem, Q};
use crate::state::{Admin, AttemptsQuery, DEFAULT_LIMIT, MAX_LIMIT, find_attempts};

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
pub(crate) async fn attempts<B>(State(admin): State<Admin<B>>, Q(q): Q<AttemptsQuery>) -> Response {
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
    axum::Json(find_attempts(&admin.view, q).await).into_response()
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
pub(crate) async fn integrations<B>(State(admin): State<Admin<B>>) -> impl IntoResponse {
    axum::Json(crate::status::snapshot(&admin.view))
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
pub(crate) async fn integration_test<B>(
    State(admin): State<Admin<B>>,
    Path(id): Path<String>,
) -> Response {
    let runtime = admin.view.runtime();
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
pub(crate) struct DeadQuery {
    pub(crate) integration: Option<String>,
    pub(crate) limit: Option<usize>,
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
pub(crate) async fn dead_letters<B>(
    State(admin): State<Admin<B>>,
    Q(q): Q<DeadQuery>,
) -> impl IntoResponse {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let mut found = admin.view.dead_letters(q.integration, limit).await;
    let runtime = admin.view.runtime();
    for letter in &mut found {
        crate::masking::letter(&runtime.config, letter);
    }
    axum::Json(found)
}
