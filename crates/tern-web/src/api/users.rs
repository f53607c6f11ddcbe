//! Accounts: listing, creating (one, or many from a CSV file), changing, disabling,
//! deleting, and passwords. Disabling an account or setting its password ends its
//! webmail sessions, as the console does.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tern_admin::users::{Created, NewUser, parse_quota};

use super::auth::ApiToken;
use super::{ApiError, ApiResult, Body, Csv, DomainFilter, PathParams, QueryParams, done, json, present};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/users", get(list).post(add))
        .route("/users/import", post(import))
        .route("/users/{address}", get(show).patch(change).delete(remove))
        .route("/users/{address}/password", post(password))
}

async fn list(
    _: ApiToken,
    State(app): State<AppState>,
    QueryParams(filter): QueryParams<DomainFilter>,
) -> ApiResult<Response> {
    let domain = match filter.domain() {
        // An unknown domain is a 404, not an empty list that hides a typing mistake.
        Some(d) => Some(app.store.domain(d).await?.name),
        None => None,
    };
    json(StatusCode::OK, &app.store.accounts(domain.as_deref()).await?)
}

/// A quota as given: bytes, or text such as "2GB" or "unlimited".
#[derive(Deserialize)]
#[serde(untagged)]
enum Quota {
    Bytes(u64),
    Text(String),
}

impl Quota {
    fn bytes(quota: Option<Quota>) -> ApiResult<Option<u64>> {
        match quota {
            None => Ok(None),
            Some(Quota::Bytes(0)) => Ok(None),
            Some(Quota::Bytes(n)) => Ok(Some(n)),
            Some(Quota::Text(t)) => parse_quota(&t).map_err(|e| ApiError::invalid(format!("quota: {e}"))),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAccount {
    address: String,
    name: Option<String>,
    password: Option<String>,
    quota: Option<Quota>,
}

async fn add(
    State(app): State<AppState>,
    ApiToken(token): ApiToken,
    Body(new): Body<NewAccount>,
) -> ApiResult<Response> {
    let address = new.address.trim().to_string();
    let quota = Quota::bytes(new.quota)?;
    // The store refuses an address in use among other refusals; asked first so a
    // script can tell "exists already" apart (409).
    if app.store.account(&address).await.is_ok()
        || app
            .store
            .aliases(Some(&tern_admin::domain_of(&address)))
            .await?
            .iter()
            .any(|a| a.address.eq_ignore_ascii_case(&address))
    {
        return Err(ApiError::conflict(format!(
            "{address} is already in use by an account or alias"
        )));
    }
    let created = tern_admin::users::add(
        app.store.as_ref(),
        NewUser {
            address,
            display_name: new.name,
            password: new.password,
            quota,
        },
    )
    .await?;
    tracing::info!(token = %token, user = %created.account.address, "API: account created");
    json(StatusCode::CREATED, &created)
}

/// A line of an import that made nothing.
#[derive(Serialize)]
struct Skipped {
    line: usize,
    reason: String,
}

#[derive(Serialize)]
struct Imported {
    created: Vec<Created>,
    skipped: Vec<Skipped>,
}

async fn import(State(app): State<AppState>, ApiToken(token): ApiToken, Csv(body): Csv) -> ApiResult<Response> {
    let import = tern_admin::users::import_csv(app.store.as_ref(), body.as_ref()).await?;
    tracing::info!(
        token = %token,
        created = import.created.len(),
        skipped = import.skipped.len(),
        "API: accounts imported"
    );
    let out = Imported {
        created: import.created,
        skipped: import
            .skipped
            .into_iter()
            .map(|(line, reason)| Skipped { line, reason })
            .collect(),
    };
    json(StatusCode::OK, &out)
}

async fn show(
    _: ApiToken,
    State(app): State<AppState>,
    PathParams(address): PathParams<String>,
) -> ApiResult<Response> {
    json(StatusCode::OK, &app.store.account(&address).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Change {
    enabled: Option<bool>,
    /// `null` removes the display name.
    #[serde(default, deserialize_with = "present")]
    name: Option<Option<String>>,
    /// `null` makes it unlimited.
    #[serde(default, deserialize_with = "present")]
    quota: Option<Option<Quota>>,
}

async fn change(
    State(app): State<AppState>,
    ApiToken(token): ApiToken,
    PathParams(address): PathParams<String>,
    Body(change): Body<Change>,
) -> ApiResult<Response> {
    if change.enabled.is_none() && change.name.is_none() && change.quota.is_none() {
        return Err(ApiError::invalid("nothing to change: send enabled, name or quota"));
    }
    let quota = change.quota.map(Quota::bytes).transpose()?;
    let account = app.store.account(&address).await?;
    let address = account.address.clone();
    if let Some(name) = &change.name {
        let name = name.as_deref().map(str::trim).filter(|n| !n.is_empty());
        app.store.set_display_name(&address, name).await?;
    }
    if let Some(quota) = quota {
        app.store.set_quota(&address, quota).await?;
    }
    if let Some(enabled) = change.enabled {
        app.store.set_enabled(&address, enabled).await?;
        if !enabled {
            // A disabled account cannot log in; its open webmail sessions end too.
            app.sessions.remove_account(account.id, None);
        }
    }
    tracing::info!(
        token = %token,
        user = %address,
        enabled = ?change.enabled,
        name_changed = change.name.is_some(),
        quota = ?quota,
        "API: account changed"
    );
    json(StatusCode::OK, &app.store.account(&address).await?)
}

async fn remove(
    State(app): State<AppState>,
    ApiToken(token): ApiToken,
    PathParams(address): PathParams<String>,
) -> ApiResult<Response> {
    let account = tern_admin::users::remove(app.store.as_ref(), &address).await?;
    app.sessions.remove_account(account.id, None);
    tracing::info!(token = %token, user = %account.address, "API: account deleted");
    done()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    password: Option<String>,
}

#[derive(Serialize)]
struct PasswordSet {
    /// The generated password, shown once; `null` when one was given.
    password: Option<String>,
}

async fn password(
    State(app): State<AppState>,
    ApiToken(token): ApiToken,
    PathParams(address): PathParams<String>,
    Body(body): Body<Option<NewPassword>>,
) -> ApiResult<Response> {
    let account = app.store.account(&address).await?;
    let given = body.and_then(|b| b.password);
    let shown = tern_admin::users::reset_password(app.store.as_ref(), &account.address, given.as_deref()).await?;
    // Whoever knew the old password is logged out of webmail.
    app.sessions.remove_account(account.id, None);
    tracing::info!(token = %token, user = %account.address, generated = shown.is_some(), "API: password set");
    json(StatusCode::OK, &PasswordSet { password: shown })
}
