//! API tokens: listing (never their secrets or hashes), making one (its secret shown
//! once), revoking.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get};
use serde::{Deserialize, Serialize};

use super::auth::ApiToken;
use super::{ApiError, ApiResult, Body, PathParams, done, json};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/tokens", get(list).post(create))
        .route("/tokens/{name}", delete(revoke))
}

/// A token as listed.
#[derive(Serialize)]
struct Listed {
    name: String,
    access: &'static str,
    created: i64,
    created_by: String,
    last_used: Option<i64>,
    expires: Option<i64>,
    expired: bool,
}

async fn list(_: ApiToken, State(app): State<AppState>) -> ApiResult<Response> {
    let now = chrono::Utc::now().timestamp();
    let items: Vec<Listed> = tern_admin::tokens::list(app.store.as_ref())
        .await?
        .into_iter()
        .map(|t| Listed {
            access: t.access.name(),
            expired: t.expired_at(now),
            name: t.name,
            created: t.created,
            created_by: t.created_by,
            last_used: t.last_used,
            expires: t.expires,
        })
        .collect();
    json(StatusCode::OK, &items)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    /// `full` (the default) or `read-only`.
    #[serde(default)]
    access: Option<String>,
    /// Days until it expires; absent or null: until revoked.
    #[serde(default)]
    expires_in_days: Option<u32>,
}

#[derive(Serialize)]
struct Made {
    name: String,
    /// The secret: shown this once, only its hash is kept.
    token: String,
}

async fn create(State(app): State<AppState>, ApiToken(by): ApiToken, Body(new): Body<NewToken>) -> ApiResult<Response> {
    let name = new.name.trim().to_string();
    if tern_admin::tokens::list(app.store.as_ref())
        .await?
        .iter()
        .any(|t| t.name == name)
    {
        return Err(ApiError::conflict(format!(
            "a token named {name} exists; revoke it first or choose another name"
        )));
    }
    let new = tern_admin::tokens::NewToken {
        access: match &new.access {
            Some(access) => tern_admin::tokens::Access::parse(access)?,
            None => tern_admin::tokens::Access::Full,
        },
        valid_days: new.expires_in_days,
        name: name.clone(),
    };
    let token = tern_admin::tokens::create(app.store.as_ref(), &new, &format!("API token {by}")).await?;
    tracing::info!(token = %by, new_token = %name, access = new.access.name(), "API: token made");
    json(StatusCode::CREATED, &Made { name, token })
}

async fn revoke(
    State(app): State<AppState>,
    ApiToken(by): ApiToken,
    PathParams(name): PathParams<String>,
) -> ApiResult<Response> {
    tern_admin::tokens::revoke(app.store.as_ref(), &name).await?;
    tracing::info!(token = %by, revoked = %name, "API: token revoked");
    done()
}
