//! The user's settings: display name, signature, senders whose remote images load, the
//! vacation auto-reply and forwarding (kept where local delivery reads them, see
//! `tern_smtp::rules`), and changing the password.

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tern_smtp::rules::{self, DeliveryRules};
use tern_store::AccountId;

use crate::AppState;
use crate::mail::{field, form_pairs};
use crate::page::{self, Frame, WebError, WebResult};
use crate::session::User;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/settings", get(show))
        .route("/settings/profile", post(profile))
        .route("/settings/vacation", post(vacation))
        .route("/settings/forwarding", post(forwarding))
        .route("/settings/password", post(password))
}

/// Webmail's own preferences of an account.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Prefs {
    pub signature: String,
    /// Senders (lowercase addresses) whose remote images load without asking.
    pub remote_images: Vec<String>,
}

impl Prefs {
    fn key(account: AccountId) -> String {
        format!("webmail-prefs/{}", account.0)
    }

    /// The account's preferences; defaults if none are saved or the store cannot answer
    /// (a page must not fail over a signature).
    pub async fn load(app: &AppState, account: AccountId) -> Prefs {
        match app.store.setting(&Prefs::key(account)).await {
            Ok(Some(json)) => serde_json::from_str(&json).unwrap_or_default(),
            _ => Prefs::default(),
        }
    }

    pub async fn save(&self, app: &AppState, account: AccountId) -> WebResult<()> {
        let json = serde_json::to_string(self).map_err(|e| WebError::internal(e.to_string()))?;
        app.store.set_setting(&Prefs::key(account), Some(&json)).await?;
        Ok(())
    }

    pub fn remote_images_from(&self, sender: &str) -> bool {
        !sender.is_empty() && self.remote_images.iter().any(|s| s == sender)
    }
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    frame: Frame,
    display_name: String,
    prefs: Prefs,
    rules: DeliveryRules,
    saved: String,
    error: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ShowParams {
    saved: String,
    error: String,
}

async fn show(State(app): State<AppState>, user: User, Query(params): Query<ShowParams>) -> WebResult {
    let rules = rules::load(app.store.as_ref(), user.account.id).await?;
    let saved = match params.saved.as_str() {
        "profile" => "Your name and signature are saved.",
        "vacation" => "Your vacation reply is saved.",
        "forwarding" => "Forwarding is saved.",
        "password" => "Your password is changed. Other webmail sessions were logged out.",
        _ => "",
    };
    Ok(page::render(&SettingsPage {
        frame: page::frame(&app, &user, "").await?,
        display_name: user.account.display_name.clone().unwrap_or_default(),
        prefs: Prefs::load(&app, user.account.id).await,
        rules,
        saved: saved.to_string(),
        error: params.error,
    }))
}

fn back(saved: &str) -> axum::response::Response {
    Redirect::to(&format!("/settings?saved={saved}")).into_response()
}

fn refused(error: &str) -> axum::response::Response {
    Redirect::to(&format!("/settings?error={}", page::url_encode(error))).into_response()
}

async fn profile(State(app): State<AppState>, user: User, body: Bytes) -> WebResult {
    let pairs = form_pairs(&body);
    let name = field(&pairs, "display_name").trim();
    if name.chars().any(|c| c.is_control()) || name.len() > 200 {
        return Ok(refused("A name is one line of at most 200 characters."));
    }
    app.store
        .set_display_name(&user.account.address, (!name.is_empty()).then_some(name))
        .await?;
    let mut prefs = Prefs::load(&app, user.account.id).await;
    prefs.signature = field(&pairs, "signature").replace("\r\n", "\n");
    prefs.save(&app, user.account.id).await?;
    Ok(back("profile"))
}

async fn vacation(State(app): State<AppState>, user: User, body: Bytes) -> WebResult {
    let pairs = form_pairs(&body);
    let mut rules = rules::load(app.store.as_ref(), user.account.id).await?;
    let day = |name: &str| -> Result<String, String> {
        let v = field(&pairs, name).trim();
        if v.is_empty() || chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").is_ok() {
            Ok(v.to_string())
        } else {
            Err(format!("The {name} date must look like 2026-12-24."))
        }
    };
    let (start, end) = match (day("start"), day("end")) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(e), _) | (_, Err(e)) => return Ok(refused(&e)),
    };
    if !start.is_empty() && !end.is_empty() && end < start {
        return Ok(refused("The vacation ends before it starts."));
    }
    let enabled = field(&pairs, "enabled") == "1";
    let body_text = field(&pairs, "body").replace("\r\n", "\n");
    if enabled && body_text.trim().is_empty() {
        return Ok(refused("Write the reply's text before turning it on."));
    }
    rules.vacation = rules::Vacation {
        enabled,
        subject: field(&pairs, "subject").trim().to_string(),
        body: body_text,
        start,
        end,
        days_between: field(&pairs, "days").parse().unwrap_or(4).clamp(1, 30),
    };
    rules::save(app.store.as_ref(), user.account.id, &rules).await?;
    Ok(back("vacation"))
}

async fn forwarding(State(app): State<AppState>, user: User, body: Bytes) -> WebResult {
    let pairs = form_pairs(&body);
    let mut rules = rules::load(app.store.as_ref(), user.account.id).await?;
    let to = field(&pairs, "to").trim().to_string();
    if !to.is_empty() {
        let valid = to
            .rsplit_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'))
            && !to.contains(|c: char| c.is_whitespace() || c == ',');
        if !valid {
            return Ok(refused("Forward to one email address, like name@example.org."));
        }
        if to.eq_ignore_ascii_case(&user.account.address) {
            return Ok(refused("Forwarding to this very mailbox would loop."));
        }
    }
    rules.forwarding = rules::Forwarding {
        to,
        keep_copy: field(&pairs, "keep_copy") == "1",
    };
    rules::save(app.store.as_ref(), user.account.id, &rules).await?;
    Ok(back("forwarding"))
}

/// The shortest new password accepted.
const MIN_PASSWORD: usize = 10;

async fn password(State(app): State<AppState>, user: User, body: Bytes) -> WebResult {
    let pairs = form_pairs(&body);
    let current = field(&pairs, "current");
    let new = field(&pairs, "new");
    if new != field(&pairs, "confirm") {
        return Ok(refused("The two new passwords differ."));
    }
    if new.chars().count() < MIN_PASSWORD {
        return Ok(refused(&format!(
            "Choose a password of at least {MIN_PASSWORD} characters."
        )));
    }
    // The current password is checked like a login, so guessing it here is throttled too.
    if let Err(e) = app
        .auth
        .login("webmail", user.client.peer.ip(), &user.account.address, current)
        .await
    {
        let message = match e {
            tern_net::auth::LoginError::Invalid => "The current password is wrong.".to_string(),
            other => other.to_string(),
        };
        return Ok(refused(&message));
    }
    let hash = tern_store::password::hash(new)?;
    app.store.set_password_hash(&user.account.address, &hash).await?;
    app.sessions.remove_account(user.account.id, Some(&user.token));
    Ok(back("password"))
}
