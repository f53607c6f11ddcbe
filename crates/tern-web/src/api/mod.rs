//! The JSON API under `/admin/api/v1`: everything the admin console does, for scripts.
//!
//! Requests carry `Authorization: Bearer tern_...` (an API token made with `tern admin
//! token create NAME` or `POST /tokens`), checked by [`auth`]. Bodies are JSON (the CSV
//! import takes `text/csv`), unknown fields are refused, and every error is
//! `{"error": "what to do"}` with 400 (the request is wrong), 401 (no or a dead token),
//! 404 (no such thing), 409 (it exists already, or is in the way), 413 (too large),
//! 429 (too many failed attempts) or 500 (this server failed).
//!
//! Every action goes through tern-admin (reads through tern-store and tern-dns), so the
//! CLI, the console and the API behave the same. Each state-changing call is logged
//! with the name of the token that made it; the token itself never is.
//!
//! The OpenAPI 3.1 description (`assets/openapi.json`, hand-written) is served without
//! a token at `GET /admin/api/openapi.json`; the tests check the two agree.

mod admins;
pub mod auth;
mod domains;
mod health;
mod migrations;
mod queue;
mod tokens;
mod users;

use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tern_admin::AdminError;
use tern_store::StoreError;

use crate::AppState;

/// Where the API lives.
pub const PREFIX: &str = "/admin/api/v1";
/// Where its description is.
pub const OPENAPI_PATH: &str = "/admin/api/openapi.json";
/// The OpenAPI document, compiled in.
pub const OPENAPI: &str = include_str!("../../assets/openapi.json");

/// The largest JSON body taken: requests here are a few fields.
const MAX_JSON_BODY: usize = 64 * 1024;
/// The largest CSV file of accounts taken, the same as the console's.
const MAX_CSV_BODY: usize = tern_admin::users::MAX_CSV_BYTES;

pub fn routes() -> Router<AppState> {
    let v1 = Router::new()
        .merge(health::routes())
        .merge(domains::routes())
        .merge(users::routes())
        .merge(migrations::routes())
        .merge(queue::routes())
        .merge(tokens::routes())
        .merge(admins::routes())
        .fallback(unknown_path)
        .method_not_allowed_fallback(wrong_method);
    let v1 = auth::failure_count(v1);
    Router::new().nest(PREFIX, v1).route(OPENAPI_PATH, get(openapi))
}

async fn openapi() -> Response {
    let mut response = OPENAPI.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

async fn unknown_path() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no such API path; the paths are listed in {OPENAPI_PATH}"),
    )
}

async fn wrong_method(method: axum::http::Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not a method of this path; the methods are listed in {OPENAPI_PATH}"),
    )
}

/// An error as the API answers it: `{"error": "what to do"}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> ApiError {
        let status = match &e {
            AdminError::Invalid(_) => StatusCode::BAD_REQUEST,
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::Store(_) | AdminError::Internal(_) => {
                tracing::error!(error = %e, "API request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        AdminError::from(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(serde_json::json!({ "error": self.message }))).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// A JSON answer with a status (200 unless said).
pub fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> ApiResult<Response> {
    let body = serde_json::to_vec(value).map_err(|e| {
        tracing::error!(error = %e, "API answer could not be written as JSON");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the answer could not be written as JSON",
        )
    })?;
    Ok((status, [(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// `204 No Content`: done, nothing to say.
pub fn done() -> ApiResult<Response> {
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Whether a Content-Type is JSON (`application/json`, `application/*+json`, with or
/// without parameters; RFC 8259 §11, RFC 6839 §3.1).
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The request body, at most `limit` bytes (413 beyond), read whole.
async fn body_bytes(request: Request, limit: usize) -> ApiResult<axum::body::Bytes> {
    axum::body::to_bytes(request.into_body(), limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {limit} bytes; send less at once"),
        )
    })
}

/// A JSON request body. An empty body reads as JSON `null`, so `Body<Option<T>>` makes
/// the body optional. Unknown fields are refused by the types (`deny_unknown_fields`),
/// naming the field.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &S) -> ApiResult<Body<T>> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = body_bytes(request, MAX_JSON_BODY).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return serde_json::from_slice(b"null")
                .map(Body)
                .map_err(|_| ApiError::invalid("this call needs a JSON body; see the API description for its fields"));
        }
        if !content_type.as_deref().is_some_and(is_json) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        serde_json::from_slice(&bytes)
            .map(Body)
            .map_err(|e| ApiError::invalid(format!("the JSON body is not as expected: {e}")))
    }
}

/// A `text/csv` request body (RFC 4180), as bytes.
pub struct Csv(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for Csv {
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &S) -> ApiResult<Csv> {
        let csv = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| {
                t.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("text/csv")
            });
        if !csv {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the CSV file as the body with Content-Type: text/csv",
            ));
        }
        Ok(Csv(body_bytes(request, MAX_CSV_BODY).await?))
    }
}

/// Path parameters (percent-decoded), refused as a JSON error when they do not fit.
pub struct PathParams<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<PathParams<T>> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| PathParams(t))
            .map_err(|e: PathRejection| ApiError::invalid(e.body_text()))
    }
}

/// Query parameters, refused as a JSON error when they do not fit.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<QueryParams<T>> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(t)| QueryParams(t))
            .map_err(|e: QueryRejection| ApiError::invalid(e.body_text()))
    }
}

/// The `?domain=` filter of the list operations (users, migrations): blank is none.
#[derive(Deserialize)]
pub struct DomainFilter {
    domain: Option<String>,
}

impl DomainFilter {
    pub fn domain(&self) -> Option<&str> {
        self.domain.as_deref().map(str::trim).filter(|d| !d.is_empty())
    }
}

/// Reads a field that may be absent (`None`), `null` (`Some(None)`) or a value, for
/// PATCH bodies where `null` removes a setting and absence leaves it.
pub fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}
