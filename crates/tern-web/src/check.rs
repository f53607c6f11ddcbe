//! The connection check page (`/setup/check`, no login needed): `tern doctor` in the
//! browser. A user (or the person helping them) enters the address and, optionally, the
//! password, and sees what a mail app meets on its way in — the server's name, its
//! ports, TLS and the certificate, logging in — each as ok / warning / error with what
//! to do, the same findings as `tern doctor` (tern_dns::doctor).
//!
//! The checks run from this server against its own public name and ports, asking the
//! resolvers of `[dns] nameservers`, and trusting the system's CAs only, as a mail app
//! does. The password goes no further than the doctor's logins over IMAP, POP3 and
//! submission, where the shared `Authenticator` counts failures like any login; it is
//! taken only over TLS (or where `[auth] allow_plaintext` lets it travel), never put
//! back into the page and never logged. The setup page links here as
//! `/setup/check?email=ADDRESS`, which fills the address in.
//!
//! A POST is a form of this site: the CSRF guard wants its Origin and, for a visitor
//! with a webmail session, the session's token, which the form carries then. Only
//! addresses of hosted domains are checked, and a few checks at a time, so the page
//! cannot be used to make this server probe other domains or flood itself.

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use tern_dns::doctor::{Doctor, DoctorError, Password, Report, Status};
use tern_dns::resolve::Lookup;
use tern_net::auth::LoginError;
use tokio::sync::Semaphore;
use tracing::info;

use crate::mail::{field, form_pairs};
use crate::page::render;
use crate::session::User;
use crate::{AppState, Client};

pub const PATH: &str = "/setup/check";

/// Checks running at once; more wait for none and are told to try again.
const MAX_RUNNING: usize = 4;
static RUNNING: Semaphore = Semaphore::const_new(MAX_RUNNING);

pub fn routes() -> Router<AppState> {
    Router::new().route(PATH, get(form).post(run_check))
}

#[derive(Template)]
#[template(path = "check.html")]
struct CheckPage {
    hostname: String,
    email: String,
    /// The CSRF token of the visitor's webmail session, if there is one.
    csrf: Option<String>,
    insecure: bool,
    error: Option<String>,
    report: Option<ReportView>,
}

/// A report as the page shows it.
struct ReportView {
    summary: String,
    broken: bool,
    resolver: String,
    rows: Vec<Row>,
    todo: Vec<Row>,
}

struct Row {
    status: &'static str,
    check: &'static str,
    subject: String,
    /// What was seen, or for a "what to do" row the advice.
    text: String,
}

impl ReportView {
    fn new(report: &Report) -> ReportView {
        let (errors, warnings) = (report.count(Status::Error), report.count(Status::Warning));
        let logins = if !report.logins_checked {
            "Logging in was not checked: enter the password to check it too."
        } else if report.logins_work() {
            "Logging in works."
        } else {
            "See the login findings."
        };
        let summary = if errors == 0 {
            format!("A mail app can connect ({warnings} warning(s)). {logins}")
        } else {
            format!("{errors} problem(s) keep a mail app from connecting ({warnings} warning(s)). {logins}")
        };
        let row = |f: &tern_dns::doctor::Finding, text: String| Row {
            status: f.status.label(),
            check: f.check.label(),
            subject: f.subject.clone(),
            text,
        };
        ReportView {
            summary,
            broken: report.is_broken(),
            resolver: report.resolver.clone(),
            rows: report.findings.iter().map(|f| row(f, f.detail.clone())).collect(),
            todo: report
                .to_do()
                .into_iter()
                .map(|f| row(f, f.advice.clone().unwrap_or_default()))
                .collect(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CheckParams {
    email: String,
}

async fn form(
    State(app): State<AppState>,
    client: axum::Extension<Client>,
    session: Result<User, Response>,
    Query(params): Query<CheckParams>,
) -> Response {
    render(&CheckPage {
        hostname: app.config.hostname.clone(),
        email: params.email.trim().to_string(),
        csrf: session.ok().map(|user| user.csrf),
        insecure: !app.auth.plaintext_allowed(client.peer.ip(), client.tls),
        error: None,
        report: None,
    })
}

async fn run_check(
    State(app): State<AppState>,
    client: axum::Extension<Client>,
    session: Result<User, Response>,
    body: Bytes,
) -> Response {
    let pairs = form_pairs(&body);
    let email = field(&pairs, "email").trim().to_string();
    let password = field(&pairs, "password");
    let insecure = !app.auth.plaintext_allowed(client.peer.ip(), client.tls);
    let mut page = CheckPage {
        hostname: app.config.hostname.clone(),
        email: email.clone(),
        csrf: session.ok().map(|user| user.csrf),
        insecure,
        error: None,
        report: None,
    };
    let refuse = |mut page: CheckPage, status: StatusCode, error: &str| {
        page.error = Some(error.to_string());
        let mut response = render(&page);
        *response.status_mut() = status;
        response
    };
    // A password that came unencrypted from where it may not is not used (the page says
    // so); the rest of the check runs.
    let password = if insecure { "" } else { password };
    let Some(domain) = email
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
    else {
        return refuse(
            page,
            StatusCode::BAD_REQUEST,
            "Enter an email address, e.g. alice@example.com.",
        );
    };
    if app.store.domain(&domain).await.is_err() {
        return refuse(
            page,
            StatusCode::BAD_REQUEST,
            &format!("{domain} is not a domain this server hosts, so there is nothing here to check."),
        );
    }
    let Ok(_permit) = RUNNING.try_acquire() else {
        return refuse(
            page,
            StatusCode::SERVICE_UNAVAILABLE,
            "Several checks are running right now; try again in a minute.",
        );
    };
    // The password is tried here first, as the visitor's login: a wrong one counts
    // against the visitor's address and the account (the shared limits), and the
    // doctor's own logins — whose peer is this server — only ever use a right one, so
    // the page is no way around the login limits.
    let password = if password.is_empty() {
        None
    } else {
        match app.auth.login("setup-check", client.peer.ip(), &email, password).await {
            Ok(_) => Some(Password::new(password)),
            Err(LoginError::Invalid) => {
                page.error = Some(
                    "Wrong password (or this address has no mailbox here): logging in was not tried. \
                     The other checks below ran without it."
                        .into(),
                );
                None
            }
            Err(e @ LoginError::Throttled { .. }) => {
                return refuse(page, StatusCode::TOO_MANY_REQUESTS, &capitalised(&e.to_string()));
            }
            Err(e) => return refuse(page, StatusCode::SERVICE_UNAVAILABLE, &capitalised(&e.to_string())),
        }
    };
    let lookup = match Lookup::servers(&app.config.nameservers) {
        Ok(lookup) => lookup,
        Err(e) => {
            return refuse(
                page,
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("The check cannot look names up: {e}."),
            );
        }
    };
    let doctor = Doctor {
        email: email.clone(),
        password,
        host: app.config.hostname.clone(),
        endpoints: app.endpoints(),
        lookup,
        extra_ca: None,
    };
    match tern_dns::doctor::run(doctor).await {
        Ok(report) => {
            info!(
                peer = %client.peer,
                user = %email,
                errors = report.count(Status::Error),
                warnings = report.count(Status::Warning),
                logins = report.logins_checked,
                "connection check"
            );
            page.report = Some(ReportView::new(&report));
            render(&page)
        }
        Err(e @ DoctorError::Address(_)) => refuse(page, StatusCode::BAD_REQUEST, &capitalised(&e.to_string())),
        Err(e) => refuse(page, StatusCode::INTERNAL_SERVER_ERROR, &capitalised(&e.to_string())),
    }
}

/// An error message as a sentence.
fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str().trim_end_matches('.')),
        None => String::new(),
    }
}
