//! The users pages: the accounts (filtered by domain), adding one, resetting a password,
//! disabling and enabling, and importing many from a CSV file. A generated password is
//! shown once, on the page answering the POST: never in a URL, never logged.

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use tern_admin::users::{Created, NewUser};
use tracing::info;

use super::{Admin, Frame, admin_error, done, store_error};
use crate::AppState;
use crate::mail::{field, form_pairs};
use crate::page::{self, WebError, WebResult, url_encode};
use crate::session::check_form_token;

/// The largest CSV file taken, the same as the API's.
const MAX_CSV: usize = tern_admin::users::MAX_CSV_BYTES;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/users", get(list).post(add))
        .route("/admin/users/import", post(import))
        .route("/admin/users/{address}/password", post(reset_password))
        .route("/admin/users/{address}/enabled", post(enabled))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Params {
    domain: String,
    done: String,
}

/// A row of the users table.
pub struct UserRow {
    pub address: String,
    pub name: String,
    pub enabled: bool,
    pub used: String,
    /// "unlimited" or a size.
    pub quota: String,
    /// Share of the quota used, when there is one.
    pub percent: Option<u64>,
    pub admin: bool,
    /// The administrator looking at the page (who cannot disable themselves).
    pub is_self: bool,
}

#[derive(Template)]
#[template(path = "admin/users.html")]
struct UsersPage {
    frame: Frame,
    domain: String,
    domains: Vec<String>,
    users: Vec<UserRow>,
}

async fn list(State(app): State<AppState>, admin: Admin, Query(params): Query<Params>) -> WebResult {
    let store = app.store.as_ref();
    let domain = params.domain.trim().to_ascii_lowercase();
    let domains: Vec<String> = store
        .domains()
        .await
        .map_err(store_error)?
        .into_iter()
        .map(|d| d.name)
        .collect();
    if !domain.is_empty() && !domains.contains(&domain) {
        return Err(WebError::not_found(format!("{domain} is not hosted here.")));
    }
    let admins = tern_admin::admins::list(store).await.map_err(admin_error)?;
    let accounts = store
        .accounts((!domain.is_empty()).then_some(domain.as_str()))
        .await
        .map_err(store_error)?;
    let users = accounts
        .into_iter()
        .map(|a| UserRow {
            name: a.display_name.clone().unwrap_or_default(),
            enabled: a.enabled,
            used: super::bytes(a.used),
            quota: a.quota.map_or_else(|| "unlimited".into(), super::bytes),
            percent: a.quota.filter(|q| *q > 0).map(|q| (a.used.min(q) * 100) / q),
            admin: admins.iter().any(|x| x.eq_ignore_ascii_case(&a.address)),
            is_self: a.address.eq_ignore_ascii_case(admin.address()),
            address: a.address,
        })
        .collect();
    Ok(page::render(&UsersPage {
        frame: admin.frame(&app, "users", &params.done),
        domain,
        domains,
        users,
    }))
}

/// An account just made or given a password, for the page showing it once.
pub struct CreatedRow {
    pub address: String,
    /// The generated password; `None` when the administrator gave one.
    pub password: Option<String>,
    pub role_aliases: Vec<String>,
}

impl From<Created> for CreatedRow {
    fn from(c: Created) -> CreatedRow {
        CreatedRow {
            address: c.account.address,
            password: c.password,
            role_aliases: c.role_aliases,
        }
    }
}

/// The page answering an add, a reset or an import: the passwords, once.
#[derive(Template)]
#[template(path = "admin/users_done.html")]
struct DonePage {
    frame: Frame,
    title: String,
    intro: String,
    rows: Vec<CreatedRow>,
    /// Lines of a CSV import that made nothing: (line, why).
    skipped: Vec<(usize, String)>,
}

async fn add(State(app): State<AppState>, admin: Admin, body: Bytes) -> WebResult {
    let pairs = form_pairs(&body);
    let address = field(&pairs, "address").trim().to_string();
    if address.is_empty() {
        return Err(WebError::bad_request(
            "Enter the new account's address, like name@example.org.",
        ));
    }
    let quota = tern_admin::users::parse_quota(field(&pairs, "quota"))
        .map_err(|e| WebError::bad_request(format!("Quota: {e}.")))?;
    let password = field(&pairs, "password");
    let name = field(&pairs, "name").trim();
    if name.chars().any(char::is_control) || name.len() > 200 {
        return Err(WebError::bad_request("A name is one line of at most 200 characters."));
    }
    let created = tern_admin::users::add(
        app.store.as_ref(),
        NewUser {
            address,
            display_name: (!name.is_empty()).then(|| name.to_string()),
            password: (!password.is_empty()).then(|| password.to_string()),
            quota,
        },
    )
    .await
    .map_err(admin_error)?;
    info!(admin = %admin.address(), user = %created.account.address, "console: account created");
    let intro = match &created.password {
        Some(_) => "The account is ready. Hand its password to its user now: this page is the only place it is shown.",
        None => "The account is ready, with the password you gave.",
    };
    Ok(page::render(&DonePage {
        frame: admin.frame(&app, "users", ""),
        title: format!("Account {} created", created.account.address),
        intro: intro.into(),
        rows: vec![created.into()],
        skipped: Vec::new(),
    }))
}

async fn reset_password(State(app): State<AppState>, admin: Admin, Path(address): Path<String>) -> WebResult {
    let store = app.store.as_ref();
    let account = store.account(&address).await.map_err(store_error)?;
    let password = tern_admin::users::reset_password(store, &account.address, None)
        .await
        .map_err(admin_error)?;
    // The old password may be known to someone it should not be: every webmail session
    // of the account ends (its mail clients need the new password too).
    app.sessions.remove_account(account.id, None);
    info!(admin = %admin.address(), user = %account.address, "console: password reset");
    Ok(page::render(&DonePage {
        frame: admin.frame(&app, "users", ""),
        title: format!("New password for {}", account.address),
        intro: "Its webmail sessions are logged out; its mail apps need the new password too. \
                Hand it to its user now: this page is the only place it is shown."
            .into(),
        rows: vec![CreatedRow {
            address: account.address,
            password,
            role_aliases: Vec::new(),
        }],
        skipped: Vec::new(),
    }))
}

async fn enabled(
    State(app): State<AppState>,
    admin: Admin,
    Path(address): Path<String>,
    body: Bytes,
) -> WebResult<Response> {
    let pairs = form_pairs(&body);
    let enable = match field(&pairs, "enabled") {
        "yes" => true,
        "no" => false,
        _ => return Err(WebError::bad_request("Say enabled=yes or enabled=no.")),
    };
    let store = app.store.as_ref();
    let account = store.account(&address).await.map_err(store_error)?;
    if !enable && account.address.eq_ignore_ascii_case(admin.address()) {
        return Err(WebError::bad_request(
            "You cannot disable your own account here: you would be locked out. Ask another administrator.",
        ));
    }
    store.set_enabled(&account.address, enable).await.map_err(store_error)?;
    if !enable {
        app.sessions.remove_account(account.id, None);
    }
    info!(admin = %admin.address(), user = %account.address, enabled = enable, "console: account enabled changed");
    let back = format!(
        "/admin/users?domain={}",
        url_encode(&tern_admin::domain_of(&account.address))
    );
    Ok(done(&back, if enable { "user-enabled" } else { "user-disabled" }))
}

async fn import(State(app): State<AppState>, admin: Admin, mut multipart: Multipart) -> WebResult {
    let bad =
        |e: axum::extract::multipart::MultipartError| WebError::bad_request(format!("The form could not be read: {e}"));
    let (mut csrf, mut file) = (String::new(), None::<Bytes>);
    while let Some(part) = multipart.next_field().await.map_err(bad)? {
        match part.name().unwrap_or("") {
            "csrf" => csrf = part.text().await.map_err(bad)?,
            "file" => {
                let bytes = part.bytes().await.map_err(bad)?;
                if bytes.len() > MAX_CSV {
                    return Err(WebError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!(
                            "The CSV file is larger than {}: split it.",
                            super::bytes(MAX_CSV as u64)
                        ),
                    ));
                }
                file = Some(bytes);
            }
            _ => {}
        }
    }
    // A multipart form is not read by the CSRF guard: its token is checked here.
    check_form_token(&admin.user, &csrf)?;
    let Some(file) = file.filter(|f| !f.is_empty()) else {
        return Err(WebError::bad_request("Choose a CSV file to import."));
    };
    let result = tern_admin::users::import_csv(app.store.as_ref(), &file[..])
        .await
        .map_err(admin_error)?;
    let created: Vec<&str> = result.created.iter().map(|c| c.account.address.as_str()).collect();
    info!(admin = %admin.address(), created = ?created, skipped = result.skipped.len(), "console: accounts imported");
    Ok(page::render(&DonePage {
        frame: admin.frame(&app, "users", ""),
        title: format!(
            "Imported {} account(s), skipped {} line(s)",
            result.created.len(),
            result.skipped.len()
        ),
        intro: if result.created.iter().any(|c| c.password.is_some()) {
            "Hand the generated passwords to their users now: this page is the only place they are shown.".into()
        } else {
            String::new()
        },
        rows: result.created.into_iter().map(CreatedRow::from).collect(),
        skipped: result.skipped,
    }))
}
