//! Login sessions: a random token in a cookie (`Secure; HttpOnly; SameSite=Strict`),
//! the account it belongs to, and a CSRF token per session.
//!
//! Sessions live in memory: a restart logs everyone out of webmail (their mail clients
//! are unaffected). Each ends after an idle period and after a fixed lifetime, and
//! changing the password ends every session of the account.
//!
//! Cross-site request forgery is stopped three times over: the cookie is never sent on
//! a cross-site request (SameSite=Strict); every state-changing request must carry an
//! `Origin` (or `Referer`) of this very host; and it must carry the session's CSRF token
//! (the `X-CSRF-Token` header from the page script, or a `csrf` form field).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use tern_store::{Account, AccountId};

use crate::{AppState, Client};

/// The session cookie's name.
pub const COOKIE: &str = "tern_session";
/// The form field and header carrying the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

#[derive(Debug, Clone)]
struct Entry {
    account: AccountId,
    csrf: String,
    created: Instant,
    last_seen: Instant,
}

/// Every live session of this process.
pub struct Sessions {
    entries: Mutex<HashMap<String, Entry>>,
    idle: Duration,
    lifetime: Duration,
}

/// A new random token: 256 bits, hex.
fn token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

impl Sessions {
    pub fn new(idle: Duration, lifetime: Duration) -> Sessions {
        Sessions {
            entries: Mutex::new(HashMap::new()),
            idle,
            lifetime,
        }
    }

    /// Starts a session; returns its token.
    pub fn create(&self, account: AccountId) -> String {
        let token = token();
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        // Drop expired sessions now and then, so abandoned ones do not pile up.
        if entries.len().is_multiple_of(64) {
            entries.retain(|_, e| self.alive(e, now));
        }
        entries.insert(
            token.clone(),
            Entry {
                account,
                csrf: token_short(),
                created: now,
                last_seen: now,
            },
        );
        token
    }

    fn alive(&self, e: &Entry, now: Instant) -> bool {
        now.duration_since(e.last_seen) < self.idle && now.duration_since(e.created) < self.lifetime
    }

    /// The account and CSRF token of a live session, marking it used.
    fn touch(&self, token: &str) -> Option<(AccountId, String)> {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.get_mut(token)?;
        if !self.alive(entry, now) {
            entries.remove(token);
            return None;
        }
        entry.last_seen = now;
        Some((entry.account, entry.csrf.clone()))
    }

    /// The CSRF token of the live session whose token the request's cookie carries (for
    /// forms on pages that need no login, such as the setup page's password check).
    pub fn csrf_of(&self, headers: &HeaderMap) -> Option<String> {
        self.touch(&token_of(headers)?).map(|(_, csrf)| csrf)
    }

    pub fn remove(&self, token: &str) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).remove(token);
    }

    /// Ends every session of an account but `keep` (after a password change).
    pub fn remove_account(&self, account: AccountId, keep: Option<&str>) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|t, e| e.account != account || Some(t.as_str()) == keep);
    }
}

fn token_short() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// The `Set-Cookie` value starting a session.
pub fn cookie(token: &str) -> String {
    format!("{COOKIE}={token}; Path=/; HttpOnly; Secure; SameSite=Strict")
}

/// The `Set-Cookie` value ending it.
pub fn cookie_cleared() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0")
}

/// The session token from the request's cookies.
pub fn token_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A logged-in user: what handlers of webmail pages take. A request without a live
/// session is sent to the login page (pages) or answered 401 (scripts).
pub struct User {
    pub account: Account,
    pub token: String,
    /// The session's CSRF token, for forms and the page script.
    pub csrf: String,
    pub client: Client,
}

impl FromRequestParts<AppState> for User {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<User, Response> {
        let client = parts
            .extensions
            .get::<Client>()
            .cloned()
            .ok_or_else(|| StatusCode::INTERNAL_SERVER_ERROR.into_response())?;
        let session = token_of(&parts.headers).and_then(|t| app.sessions.touch(&t).map(|s| (t, s)));
        let Some((token, (account_id, csrf))) = session else {
            return Err(login_required(parts));
        };
        match app.store.account_by_id(account_id).await {
            Ok(account) if account.enabled => Ok(User {
                account,
                token,
                csrf,
                client,
            }),
            _ => {
                app.sessions.remove(&token);
                Err(login_required(parts))
            }
        }
    }
}

/// Where a request without a session goes: pages to the login page (coming back after),
/// scripts get 401.
fn login_required(parts: &Parts) -> Response {
    let wants_html = parts.method == Method::GET
        && parts
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"));
    if wants_html {
        let back = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let target = format!("/login?next={}", crate::page::url_encode(back));
        Redirect::to(&target).into_response()
    } else {
        (StatusCode::UNAUTHORIZED, "log in first").into_response()
    }
}

/// Middleware: webmail over plain HTTP only where passwords may travel unencrypted
/// (`[auth] allow_plaintext`: by default from loopback, i.e. a TLS-terminating proxy on
/// this machine). Anyone else is sent to the HTTPS listener (308 keeps the method), or
/// refused if there is none.
pub async fn require_tls(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let Some(client) = request.extensions().get::<Client>().cloned() else {
        return next.run(request).await;
    };
    if app.auth.plaintext_allowed(client.peer.ip(), client.tls) {
        return next.run(request).await;
    }
    // The public, password-free documents clients fetch over plain HTTP (autoconfig,
    // MTA-STS, ACME challenges): answered as they are.
    if crate::autoconfig::served_over_plain_http(request.method(), request.uri().path()) {
        return next.run(request).await;
    }
    // A script calling the API over plain HTTP has already sent its token in the
    // clear: a redirect would hide that and the script would go on doing it. Refuse, so
    // it is fixed to use https://.
    if request.uri().path().starts_with(crate::api::PREFIX) {
        return crate::api::ApiError::new(
            StatusCode::FORBIDDEN,
            "the API is served over HTTPS only: call https://; the token sent may have been seen, so revoke it and make a new one",
        )
        .into_response();
    }
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(|h| host_without_port(h).to_string())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)));
    match (app.endpoints().https, host) {
        (Some(port), Some(host)) => {
            let path = request.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let target = if port == 443 {
                format!("https://{host}{path}")
            } else {
                format!("https://{host}:{port}{path}")
            };
            (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, target)]).into_response()
        }
        _ => (
            StatusCode::FORBIDDEN,
            "webmail needs an encrypted connection: open it with an https:// address",
        )
            .into_response(),
    }
}

/// `mail.example.org:8080` → `mail.example.org`; `[::1]:8080` → `[::1]`.
fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// Middleware: a state-changing request must come from a page of this host and, when
/// a session exists, carry the session's CSRF token: as the `X-CSRF-Token` header (the
/// page script), or as the `csrf` field of a url-encoded form, checked here for every
/// handler. A multipart form (compose, with attachments) is checked by its handler with
/// [`check_form_token`], the only handler taking one.
pub async fn csrf_guard(State(app): State<AppState>, request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(request).await;
    }
    // Outlook's Autodiscover POST: not from a browser page, reads no session, changes
    // nothing.
    if crate::autodiscover::is_pox_post(request.method(), request.uri().path()) {
        return next.run(request).await;
    }
    // A call of the JSON API without a session cookie: the API takes only bearer
    // tokens (`Authorization: Bearer`), which a browser never adds on its own (only a
    // page's script can, and a script of another site would need a CORS preflight this
    // server never grants), and without the cookie the request carries no session to
    // abuse. So it cannot be forged cross-site, and the API answers it itself (a JSON
    // 401 when the token is missing) rather than this guard.
    if request.uri().path().starts_with(crate::api::PREFIX) && !has_session_cookie(request.headers()) {
        return next.run(request).await;
    }
    if !same_origin(request.headers()) {
        return (
            StatusCode::FORBIDDEN,
            "refused: the request did not come from a page of this site (cross-site request)",
        )
            .into_response();
    }
    let Some(expected) = token_of(request.headers()).and_then(|t| app.sessions.touch(&t).map(|(_, csrf)| csrf)) else {
        // No session: only the login form can do anything, and the handlers of every
        // other route refuse a request without a session.
        return next.run(request).await;
    };
    let expired = || (StatusCode::FORBIDDEN, "refused: the form has expired; reload the page").into_response();
    if let Some(sent) = request.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()) {
        return if sent == expected {
            next.run(request).await
        } else {
            expired()
        };
    }
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("multipart/form-data") {
        return next.run(request).await;
    }
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return expired();
    }
    // Read the (small) form to find the field, then hand the same bytes on.
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 1024 * 1024).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "the form is too large").into_response();
    };
    let sent = form_urlencoded_field(&bytes, CSRF_FIELD);
    if sent.as_deref() != Some(expected.as_str()) {
        return expired();
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

/// Whether the request carries a session cookie at all (valid or not).
fn has_session_cookie(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .any(|pair| pair.trim().split('=').next() == Some(COOKIE))
}

/// One field of an `application/x-www-form-urlencoded` body.
fn form_urlencoded_field(body: &[u8], name: &str) -> Option<String> {
    body.split(|&b| b == b'&').find_map(|pair| {
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        (key == name.as_bytes()).then(|| crate::page::form_decode(value))
    })
}

/// Whether the request's Origin (or, failing that, Referer) names the Host it was sent
/// to. Browsers send Origin on every POST (Fetch standard); a request with neither is
/// not from a browser page and is refused.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let origin = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    let Some(origin) = origin else {
        return false;
    };
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .unwrap_or("");
    let authority = rest.split('/').next().unwrap_or("");
    authority.eq_ignore_ascii_case(host)
}

/// Checks a multipart form's CSRF field against the session.
pub fn check_form_token(user: &User, sent: &str) -> Result<(), crate::page::WebError> {
    if sent == user.csrf {
        Ok(())
    } else {
        Err(crate::page::WebError::new(
            StatusCode::FORBIDDEN,
            "The form has expired; reload the page.",
        ))
    }
}
