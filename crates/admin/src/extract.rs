//! What the admin surface takes from a request and how it refuses it:
//! a query or a JSON body that does not read becomes a JSON [`Problem`]
//! (axum's own refusals are plain text), and the token a request presents
//! is read one way for the API and the pages.

use axum::extract::{Query, Request};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

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

/// The token a request's `Authorization` presents: a Bearer token, or
/// with `basic` also the password of Basic authentication (any user
/// name); read as the ingest reads it ([`alertpost_config::Credentials`]).
pub(crate) fn token_of(headers: &axum::http::HeaderMap, basic: bool) -> Option<Vec<u8>> {
    let value = headers.get(header::AUTHORIZATION)?;
    alertpost_config::Credentials::token(value.as_bytes(), basic)
}
