//! Who may use the admin console.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get};
use serde::{Deserialize, Serialize};

use super::auth::ApiToken;
use super::{ApiResult, Body, PathParams, done, json};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admins", get(list).post(grant))
        .route("/admins/{address}", delete(revoke))
}

async fn list(_: ApiToken, State(app): State<AppState>) -> ApiResult<Response> {
    json(StatusCode::OK, &tern_admin::admins::list(app.store.as_ref()).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAdmin {
    address: String,
}

#[derive(Serialize)]
struct Admin {
    address: String,
}

async fn grant(
    State(app): State<AppState>,
    ApiToken(token): ApiToken,
    Body(new): Body<NewAdmin>,
) -> ApiResult<Response> {
    let already = tern_admin::admins::is_admin(app.store.as_ref(), new.address.trim()).await?;
    let address = tern_admin::admins::grant(app.store.as_ref(), new.address.trim()).await?;
    tracing::info!(token = %token, admin = %address, "API: administrator added");
    // 200 when it was one already (nothing changed), 201 when made one.
    let status = if already { StatusCode::OK } else { StatusCode::CREATED };
    json(status, &Admin { address })
}

async fn revoke(
    State(app): State<AppState>,
    ApiToken(token): ApiToken,
    PathParams(address): PathParams<String>,
) -> ApiResult<Response> {
    tern_admin::admins::revoke(app.store.as_ref(), &address).await?;
    tracing::info!(token = %token, admin = %address, "API: administrator removed");
    done()
}
