//! The admin console: server-rendered pages under `/admin` from which an administrator
//! runs the installation (domains and their DNS, users, migrations, the outbound queue,
//! health, API tokens).
//!
//! Administrators log in on the ordinary login page with their own account (so the
//! login limits guard the console too); [`Admin`] lets only accounts on the list of
//! `tern_admin::admins` through. Everything a page changes goes through `tern_admin`
//! (or the store, for the few plain settings), so the console, the CLI and the JSON API
//! do the same thing and refuse the same way.
//!
//! After a change a page redirects (303) back with `?done=KEY`: a fixed key whose
//! message is looked up here, so nothing a link carries is ever shown as text. The pages
//! showing a secret (a generated password, a new API token) are rendered directly, once,
//! and never cached (`Cache-Control: no-store`, set for every response in `lib.rs`).
//! Every state-changing action is logged with the administrator's address; secrets are
//! never logged.
//!
//! Submodules, one per page family: [`dashboard`], [`domains`], [`users`],
//! [`migrations`], [`queue`], [`health`], [`tokens`].

pub mod dashboard;
pub mod domains;
pub mod health;
pub mod migrations;
pub mod queue;
pub mod tokens;
pub mod users;

use askama::Template;
use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use tern_admin::AdminError;
use tracing::warn;

use crate::AppState;
use crate::page::{self, WebError};
use crate::session::User;

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(dashboard::routes())
        .merge(domains::routes())
        .merge(users::routes())
        .merge(migrations::routes())
        .merge(queue::routes())
        .merge(health::routes())
        .merge(tokens::routes())
        .layer(axum::middleware::map_response(back_to_the_console))
}

/// An error page from a console handler leads back to the console, not to the inbox.
async fn back_to_the_console(response: axum::response::Response) -> axum::response::Response {
    match response.extensions().get::<page::ShownError>() {
        Some(shown) => WebError::new(shown.status, shown.message.clone()).page("/admin", "Back to the console"),
        None => response,
    }
}

/// A logged-in administrator: what every console handler takes. No session: the login
/// page (coming back after); a session of an account that is not an administrator: a
/// 403 page saying how one becomes one.
pub struct Admin {
    pub user: User,
}

impl Admin {
    pub fn address(&self) -> &str {
        &self.user.account.address
    }

    /// The frame of a console page, `section` marked in the navigation, `done` the
    /// confirmation key of the change just made.
    pub fn frame(&self, app: &AppState, section: &'static str, done: &str) -> Frame {
        Frame {
            hostname: app.config.hostname.clone(),
            address: self.user.account.address.clone(),
            csrf: self.user.csrf.clone(),
            section,
            notice: notice(done),
        }
    }
}

#[derive(Template)]
#[template(path = "admin/forbidden.html")]
struct ForbiddenPage<'a> {
    address: &'a str,
    csrf: &'a str,
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Admin, Response> {
        let user = User::from_request_parts(parts, app).await?;
        match tern_admin::admins::is_admin(app.store.as_ref(), &user.account.address).await {
            Ok(true) => Ok(Admin { user }),
            Ok(false) => {
                let mut response = page::render(&ForbiddenPage {
                    address: &user.account.address,
                    csrf: &user.csrf,
                });
                *response.status_mut() = StatusCode::FORBIDDEN;
                Err(response)
            }
            Err(e) => Err(admin_error(e).into_response()),
        }
    }
}

/// The frame of every console page.
pub struct Frame {
    pub hostname: String,
    /// The administrator's address.
    pub address: String,
    pub csrf: String,
    /// The page family, marked in the navigation: "dashboard", "domains", ...
    pub section: &'static str,
    /// What the change just made did ("" for none).
    pub notice: &'static str,
}

impl Frame {
    /// The navigation: (link, label, whether it is the page's section).
    pub fn nav(&self) -> Vec<(&'static str, &'static str, bool)> {
        NAV.iter()
            .map(|(section, link, label)| (*link, *label, *section == self.section))
            .collect()
    }
}

/// The navigation: (section, link, label).
pub const NAV: [(&str, &str, &str); 7] = [
    ("dashboard", "/admin", "Dashboard"),
    ("domains", "/admin/domains", "Domains"),
    ("users", "/admin/users", "Users"),
    ("migrations", "/admin/migrations", "Migrations"),
    ("queue", "/admin/queue", "Queue"),
    ("health", "/admin/health", "Health"),
    ("tokens", "/admin/tokens", "API tokens"),
];

/// The confirmation of a change, by its key; unknown keys say nothing.
pub fn notice(key: &str) -> &'static str {
    match key {
        "domain-added" => "The domain is added, with its DKIM signing keys. Publish its DNS records next.",
        "dkim-rotated" => {
            "New DKIM keys sign from now on. Publish their records now; delete the old keys once their records are gone."
        }
        "dkim-deleted" => "The retired DKIM key is deleted; remove its DNS record too.",
        "receiving-on" => "The domain's mail is delivered here now.",
        "receiving-off" => {
            "The domain's mail is deferred here (senders retry), while the old provider still receives it."
        }
        "cutover" => "The cutover is declared: delta passes run for every mailbox of the domain.",
        "user-enabled" => "The account is enabled again.",
        "user-disabled" => "The account is disabled; its webmail sessions ended and it cannot log in.",
        "migration-started" => "The pass is asked for; the migration worker starts it within seconds.",
        "migration-retry" => "The failed messages will be tried again.",
        "migration-paused" => "Paused: the pass stops between messages and goes on from there on resume.",
        "migration-resumed" => "Resumed.",
        "migration-cancelled" => "Cancelled: what was copied stays.",
        "migration-finish" => "The final pass is asked for; the credentials are wiped when it ends.",
        "queue-retry" => "The message will be tried again within seconds.",
        "queue-retry-all" => "Every queued message will be tried again within seconds.",
        "queue-deleted" => "The message is deleted from the queue; its sender is not told.",
        "token-revoked" => "The token is revoked: requests carrying it are refused from now on.",
        _ => "",
    }
}

/// A 303 back to a page, with the confirmation key.
pub fn done(path: &str, key: &'static str) -> Response {
    let join = if path.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{path}{join}done={key}")).into_response()
}

/// What an administrative refusal or failure shows: the administrator's mistakes (400,
/// 404) say what to do; the server's own failures are logged and worded generally.
pub fn admin_error(e: AdminError) -> WebError {
    match e {
        AdminError::Invalid(m) => WebError::bad_request(capitalise(&m)),
        AdminError::NotFound(m) => WebError::not_found(capitalise(&m)),
        AdminError::Store(e) => {
            warn!(error = %e, "admin console: store error");
            WebError::internal("The mail store could not answer; try again in a moment.")
        }
        AdminError::Internal(m) => {
            warn!(error = %m, "admin console: internal error");
            WebError::internal(format!("{}. Look at the server's log.", capitalise(&m)))
        }
    }
}

/// A store error on a console page.
pub fn store_error(e: tern_store::StoreError) -> WebError {
    admin_error(e.into())
}

/// "no such thing" → "No such thing." for a message shown as a sentence.
fn capitalise(s: &str) -> String {
    let s = s.trim();
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return String::new();
    };
    let end = if s.ends_with(['.', '!', '?', ')']) { "" } else { "." };
    format!("{}{}{end}", first.to_uppercase(), chars.as_str())
}

/// Unix seconds as `2026-11-26 17:40 UTC`.
pub fn when(t: i64) -> String {
    tern_migrate::report::timestamp(t)
}

/// An optional time, "—" when there is none.
pub fn when_opt(t: Option<i64>) -> String {
    t.map(when).unwrap_or_else(|| "—".into())
}

/// Bytes for people (powers of 1000, as the CLI shows them).
pub fn bytes(n: u64) -> String {
    tern_migrate::report::human_bytes(n)
}

/// How long ago `t` was, from `now`: "3h 05m ago".
pub fn ago(t: i64, now: i64) -> String {
    format!("{} ago", tern_migrate::report::human_duration((now - t).max(0) as u64))
}

/// "yes" for a checked checkbox or a `yes` value.
pub fn yes(value: &str) -> bool {
    matches!(value, "yes" | "on" | "1" | "true")
}

/// The step before something that cannot be undone (finishing a migration, declaring a
/// cutover, deleting a queued message): the same form again with `confirm=yes`, so it
/// works without a script.
#[derive(Template)]
#[template(path = "admin/confirm.html")]
pub struct ConfirmPage {
    pub frame: Frame,
    pub title: String,
    /// What will happen, one paragraph.
    pub message: String,
    /// Where the confirmed form posts.
    pub action: String,
    /// The fields of the original form, posted again.
    pub fields: Vec<(String, String)>,
    /// A checkbox that must be ticked (`checked=yes`), e.g. "I have changed the MX record".
    pub checkbox: Option<String>,
    pub button: String,
    /// Where "Cancel" goes.
    pub cancel: String,
}
