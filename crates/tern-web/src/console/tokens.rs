//! The API tokens page: the tokens scripts use for `/admin/api/v1` (names, who made
//! them, when last used; never their secrets, which are not kept), making one (shown
//! once, with how to use it) and revoking one.

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use tern_admin::AdminError;
use tern_admin::tokens::{Access, NewToken};
use tracing::info;

use super::{Admin, ConfirmPage, Frame, admin_error, done};
use crate::AppState;
use crate::mail::{field, form_pairs};
use crate::page::{self, WebResult, url_encode};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/tokens", get(list).post(create))
        .route("/admin/tokens/{name}/revoke", post(revoke))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Params {
    done: String,
}

pub struct TokenRow {
    pub name: String,
    pub access: &'static str,
    pub created: String,
    pub created_by: String,
    pub last_used: String,
    pub expires: String,
    pub expired: bool,
}

#[derive(Template)]
#[template(path = "admin/tokens.html")]
struct TokensPage {
    frame: Frame,
    tokens: Vec<TokenRow>,
}

async fn list(State(app): State<AppState>, admin: Admin, Query(params): Query<Params>) -> WebResult {
    let now = chrono::Utc::now().timestamp();
    let tokens = tern_admin::tokens::list(app.store.as_ref())
        .await
        .map_err(admin_error)?
        .into_iter()
        .map(|t| TokenRow {
            access: t.access.name(),
            expired: t.expired_at(now),
            expires: t.expires.map(super::when).unwrap_or_else(|| "never".into()),
            created: super::when(t.created),
            last_used: t.last_used.map(super::when).unwrap_or_else(|| "never".into()),
            created_by: t.created_by,
            name: t.name,
        })
        .collect();
    Ok(page::render(&TokensPage {
        frame: admin.frame(&app, "tokens", &params.done),
        tokens,
    }))
}

#[derive(Template)]
#[template(path = "admin/token_created.html")]
struct CreatedPage {
    frame: Frame,
    name: String,
    token: String,
    /// Its access and expiry, in words.
    terms: String,
    /// `https://HOST[:PORT]`, where the API is reached.
    base: String,
}

async fn create(State(app): State<AppState>, admin: Admin, body: Bytes) -> WebResult {
    let pairs = form_pairs(&body);
    let name = field(&pairs, "name").trim().to_string();
    let access = match field(&pairs, "access") {
        "" => Access::Full,
        other => Access::parse(other).map_err(admin_error)?,
    };
    let valid_days = match field(&pairs, "expires_in_days").trim() {
        "" => None,
        days => Some(days.parse::<u32>().map_err(|_| {
            admin_error(AdminError::Invalid(format!(
                "{days:?} is not a number of days; choose when the token expires from the list"
            )))
        })?),
    };
    let new = NewToken {
        name: name.clone(),
        access,
        valid_days,
    };
    let token = tern_admin::tokens::create(app.store.as_ref(), &new, admin.address())
        .await
        .map_err(admin_error)?;
    info!(admin = %admin.address(), token = %name, access = access.name(), "console: API token created");
    let terms = match valid_days {
        Some(days) => format!(
            "Access: {}. Expires in {days} day(s), on {}.",
            access.name(),
            super::when(chrono::Utc::now().timestamp() + i64::from(days) * 86_400)
        ),
        None => format!("Access: {}. It lasts until it is revoked.", access.name()),
    };
    let endpoints = app.endpoints();
    let base = match endpoints.https {
        Some(443) | None => format!("https://{}", endpoints.hostname),
        Some(port) => format!("https://{}:{port}", endpoints.hostname),
    };
    Ok(page::render(&CreatedPage {
        frame: admin.frame(&app, "tokens", ""),
        name,
        token,
        terms,
        base,
    }))
}

async fn revoke(
    State(app): State<AppState>,
    admin: Admin,
    Path(name): Path<String>,
    body: Bytes,
) -> WebResult<Response> {
    let pairs = form_pairs(&body);
    if !super::yes(field(&pairs, "confirm")) {
        return Ok(page::render(&ConfirmPage {
            frame: admin.frame(&app, "tokens", ""),
            title: format!("Revoke the API token {name}?"),
            message: "Scripts using it are refused from their next request on. A revoked token cannot be brought \
                      back; make a new one if it is needed again."
                .into(),
            action: format!("/admin/tokens/{}/revoke", url_encode(&name)),
            fields: Vec::new(),
            checkbox: None,
            button: "Revoke the token".into(),
            cancel: "/admin/tokens".into(),
        }));
    }
    tern_admin::tokens::revoke(app.store.as_ref(), &name)
        .await
        .map_err(admin_error)?;
    info!(admin = %admin.address(), token = %name, "console: API token revoked");
    Ok(done("/admin/tokens", "token-revoked"))
}
