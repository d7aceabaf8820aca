//! The console: what operators look at, served on the admin address.
//!
//! | page | shows |
//! | --- | --- |
//! | `GET /` | the integrations: state, circuit, counts, in flight, last success and failure; a Test button each |
//! | `GET /attempts?q=&integration=` | recent attempts, or those of one event or delivery (`q`), answers as recorded, secrets masked |
//! | `GET /dead-letters?integration=` | the dead queue (every worker's): replay one or an integration's, purge |
//! | `GET /dead-letters/{id}` | one dead letter in full, with its attempt history |
//!
//! Every page is whole HTML from the server: readable without JavaScript.
//! The script (`/console/console.js`, embedded like the stylesheet; nothing
//! comes from another host) only refreshes the overview and runs the
//! actions, which are the admin API's own routes.
//!
//! With `[admin] token` set, the pages need it too, as a Bearer token or
//! as the password of HTTP Basic authentication (any user name), so a
//! browser can ask for it without script. Actions (test, replay, purge)
//! take it only as a Bearer header, which the script sends from what the
//! operator entered in the page: a browser attaches Basic credentials to
//! any request to this host, a header set by script only to its own, so
//! another site cannot make the browser act (no CSRF).

mod pages;

use std::sync::Arc;

use alertpost_config::Secret;
use alertpost_seam::Backend;
use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::Markup;
use serde::Deserialize;

use crate::extract::token_of;
use crate::state::{Admin, AttemptsQuery, dead_one, dead_rows, find_attempts};

/// Rows a page lists.
const PAGE_ROWS: usize = 100;

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// Nothing from another host, no inline script or style, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub(crate) fn router<B: Backend>(admin: Admin<B>, token: Option<Arc<Secret>>) -> Router {
    Router::new()
        .route("/", get(overview::<B>))
        .route("/attempts", get(attempts::<B>))
        .route("/dead-letters", get(dead_letters::<B>))
        .route("/dead-letters/{id}", get(dead_letter::<B>))
        .route_layer(middleware::from_fn_with_state(token, authorize))
        .route("/console/console.css", get(css))
        .route("/console/console.js", get(js))
        // Browsers ask for it on every page; none is the answer.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .with_state(admin)
}

/// With a token configured, lets through page requests that bear it, as
/// a Bearer token or a Basic password.
async fn authorize(
    State(token): State<Option<Arc<Secret>>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = token {
        let given = token_of(request.headers(), true);
        if !given.is_some_and(|g| token.is(&g)) {
            let mut answer = page(StatusCode::UNAUTHORIZED, pages::needs_token());
            answer.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"alertpost console\", charset=\"UTF-8\""),
            );
            return answer;
        }
    }
    next.run(request).await
}

/// An HTML answer with the console's headers.
fn page(status: StatusCode, markup: Markup) -> Response {
    let mut answer = (status, markup.into_string()).into_response();
    let h = answer.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // What it shows changes by the second, and may be sensitive.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    answer
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

fn frame<B>(admin: &Admin<B>) -> pages::Frame {
    pages::Frame {
        token_required: admin.token_required,
        ready: admin.view.health().ready() && admin.view.store_healthy(),
        reason: admin.view.health().reason(),
        now: time::OffsetDateTime::now_utc(),
    }
}

async fn overview<B: Backend>(State(admin): State<Admin<B>>) -> Response {
    let integrations = crate::status::snapshot(&admin.view);
    page(
        StatusCode::OK,
        pages::overview(&frame(&admin), &integrations),
    )
}

#[derive(Debug, Deserialize)]
struct AttemptsForm {
    /// An event id or a delivery id.
    #[serde(default)]
    q: String,
    #[serde(default)]
    integration: String,
}

async fn attempts<B: Backend>(
    State(admin): State<Admin<B>>,
    Query(form): Query<AttemptsForm>,
) -> Response {
    let q = form.q.trim().to_owned();
    let integration = Some(form.integration.trim().to_owned()).filter(|i| !i.is_empty());
    let query = |event_id: Option<String>, delivery_id: Option<String>| AttemptsQuery {
        event_id,
        delivery_id,
        integration: integration.clone(),
        limit: Some(PAGE_ROWS),
    };
    let found = if q.is_empty() {
        let mut recent = find_attempts(&admin.view, query(None, None)).await;
        // Newest first when browsing; a search shows a history in order.
        recent.reverse();
        recent
    } else if alertpost_event::is_delivery_id(&q) {
        find_attempts(&admin.view, query(None, Some(q.clone()))).await
    } else {
        find_attempts(&admin.view, query(Some(q.clone()), None)).await
    };
    let ids: Vec<String> = admin
        .view
        .runtime()
        .config
        .integrations
        .iter()
        .map(|i| i.id.clone())
        .collect();
    page(
        StatusCode::OK,
        pages::attempts(&frame(&admin), &q, integration.as_deref(), &ids, &found),
    )
}

#[derive(Debug, Deserialize)]
struct DeadForm {
    #[serde(default)]
    integration: String,
}

async fn dead_letters<B: Backend>(
    State(admin): State<Admin<B>>,
    Query(form): Query<DeadForm>,
) -> Response {
    let integration = Some(form.integration.trim().to_owned()).filter(|i| !i.is_empty());
    let rows = dead_rows(&admin, integration.clone(), PAGE_ROWS).await;
    let status = if rows.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    page(
        status,
        pages::dead_letters(&frame(&admin), integration.as_deref(), &rows),
    )
}

async fn dead_letter<B: Backend>(
    State(admin): State<Admin<B>>,
    Path(id): Path<String>,
) -> Response {
    let found = dead_one(&admin, id.clone()).await;
    let (status, body) = match found {
        Ok(Some(full)) => {
            // This worker's records of the delivery, with the answers:
            // found by its event (indexed), then by delivery.
            let job = match &full {
                crate::deadletters::DeadInFull::Letter(l) => l.job.as_ref(),
                crate::deadletters::DeadInFull::Job { job, .. } => Some(&**job),
                _ => None,
            };
            let recorded = match job {
                Some(j) => {
                    let mut found = find_attempts(
                        &admin.view,
                        AttemptsQuery {
                            event_id: Some(j.event.id.clone()),
                            delivery_id: None,
                            integration: Some(j.integration.clone()),
                            limit: Some(PAGE_ROWS),
                        },
                    )
                    .await;
                    found.retain(|r| r.delivery_id == j.delivery_id);
                    found
                }
                None => Vec::new(),
            };
            (
                StatusCode::OK,
                pages::dead_letter(&frame(&admin), &id, &full, &recorded),
            )
        }
        Ok(None) => (StatusCode::NOT_FOUND, pages::not_found(&frame(&admin), &id)),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            pages::unavailable(&frame(&admin), &e),
        ),
    };
    page(status, body)
}
