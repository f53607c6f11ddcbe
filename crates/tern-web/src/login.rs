//! Logging in and out of webmail.
//!
//! Passwords are checked by the same `Authenticator` as IMAP, POP3 and SMTP, so failed
//! logins here count against the same per-address and per-account limits, and a
//! throttled client is told how long to wait. A password is only taken over TLS, or from
//! where `[auth] allow_plaintext` allows it (by default: loopback, for a TLS-terminating
//! proxy on the same machine).

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tern_net::auth::LoginError;
use tracing::info;

use crate::mail::{field, form_pairs};
use crate::page::render;
use crate::session::{self, token_of};
use crate::{AppState, Client};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/login", get(form).post(submit))
        .route("/logout", post(logout))
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    hostname: String,
    user: String,
    next: String,
    error: Option<String>,
    insecure: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LoginParams {
    next: String,
}

/// Where to go after logging in: a path of this site only (no open redirect).
fn safe_next(next: &str) -> String {
    if next.starts_with('/') && !next.starts_with("//") && !next.starts_with("/\\") {
        next.to_string()
    } else {
        "/mail".to_string()
    }
}

async fn form(
    State(app): State<AppState>,
    client: axum::Extension<Client>,
    Query(params): Query<LoginParams>,
) -> Response {
    render(&LoginPage {
        hostname: app.config.hostname.clone(),
        user: String::new(),
        next: safe_next(&params.next),
        error: None,
        insecure: !app.auth.plaintext_allowed(client.peer.ip(), client.tls),
    })
}

async fn submit(State(app): State<AppState>, client: axum::Extension<Client>, body: Bytes) -> Response {
    let pairs = form_pairs(&body);
    let user = field(&pairs, "user").trim().to_string();
    let password = field(&pairs, "password");
    let next = safe_next(field(&pairs, "next"));
    let insecure = !app.auth.plaintext_allowed(client.peer.ip(), client.tls);
    let again = |status: StatusCode, error: String| {
        let mut response = render(&LoginPage {
            hostname: app.config.hostname.clone(),
            user: user.clone(),
            next: next.clone(),
            error: Some(error),
            insecure,
        });
        *response.status_mut() = status;
        response
    };
    if insecure {
        return again(
            StatusCode::FORBIDDEN,
            "This connection is not encrypted; open webmail over https:// to log in.".into(),
        );
    }
    if user.is_empty() || password.is_empty() {
        return again(StatusCode::BAD_REQUEST, "Enter your email address and password.".into());
    }
    match app.auth.login("webmail", client.peer.ip(), &user, password).await {
        Ok(account) => {
            info!(user = %account.address, peer = %client.peer, "webmail login");
            let token = app.sessions.create(account.id);
            let mut response = Redirect::to(&next).into_response();
            if let Ok(cookie) = session::cookie(&token).parse() {
                response.headers_mut().insert(header::SET_COOKIE, cookie);
            }
            response
        }
        Err(LoginError::Invalid) => again(StatusCode::UNAUTHORIZED, "Wrong email address or password.".into()),
        Err(e @ LoginError::Throttled { .. }) => again(StatusCode::TOO_MANY_REQUESTS, capitalise(&e.to_string())),
        Err(e) => again(StatusCode::SERVICE_UNAVAILABLE, capitalise(&e.to_string())),
    }
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
        None => String::new(),
    }
}

async fn logout(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = token_of(&headers) {
        app.sessions.remove(&token);
    }
    let mut response = Redirect::to("/login").into_response();
    if let Ok(cookie) = session::cookie_cleared().parse() {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}
