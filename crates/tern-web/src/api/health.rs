//! `GET /health`: the server's health, as the console's dashboard shows it.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;

use super::auth::ApiToken;
use super::{ApiResult, json};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/health", get(health))
}

async fn health(_: ApiToken, State(app): State<AppState>) -> ApiResult<Response> {
    let health = tern_admin::health::health(app.store.as_ref(), &app.config.server).await?;
    json(StatusCode::OK, &health)
}
