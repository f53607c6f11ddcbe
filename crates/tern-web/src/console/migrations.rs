//! The migrations pages: every mailbox's migration with its progress, and the actions
//! the CLI's `tern migrate start|pause|resume|cancel|finish` take, per mailbox or for the
//! whole selection (a domain's, or all); and one mailbox's report (its folders, its
//! recent errors). Actions only write the request; the worker inside `tern serve` runs
//! the pass, so the page shows "queued" until it starts.

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use tern_admin::migrations::{Control, Overview, PassRequest, Selector};
use tern_migrate::report::{Report, human_duration};
use tern_migrate::state::{Pass, Phase};
use tracing::info;

use super::{Admin, ConfirmPage, Frame, admin_error, done, store_error};
use crate::AppState;
use crate::mail::{field, form_pairs};
use crate::page::{self, WebError, WebResult, url_encode};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/migrations", get(list))
        .route("/admin/migrations/action", post(action))
        .route("/admin/migrations/{address}", get(detail))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Params {
    domain: String,
    done: String,
}

/// A migration as the table shows it.
pub struct Row {
    pub address: String,
    pub source: String,
    pub phase: &'static str,
    /// CSS class: running, waiting, failed, done, idle.
    pub state: &'static str,
    pub pass: &'static str,
    pub percent: Option<u8>,
    pub copied: u64,
    pub source_messages: u64,
    pub copied_bytes: String,
    pub rate: String,
    pub eta: String,
    pub errors: u64,
    pub last_error: String,
    pub retry_at: String,
    pub cutover: String,
    pub has_credentials: bool,
    pub paused: bool,
    pub done: bool,
}

impl Row {
    fn of(o: &Overview) -> Row {
        Row {
            address: o.address.clone(),
            source: o.source.clone(),
            phase: o.phase.name(),
            state: state_class(o.phase),
            pass: o.pass.map_or("", Pass::name),
            percent: o.percent,
            copied: o.copied,
            source_messages: o.source_messages,
            copied_bytes: super::bytes(o.copied_bytes),
            rate: o
                .rate
                .filter(|r| *r > 0.0)
                .map(|r| format!("{}/s", super::bytes(r as u64)))
                .unwrap_or_default(),
            eta: o.eta_seconds.map(human_duration).unwrap_or_default(),
            errors: o.errors,
            last_error: o.last_error.clone().unwrap_or_default(),
            retry_at: o.retry_at.map(super::when).unwrap_or_default(),
            cutover: o.cutover.map(super::when).unwrap_or_default(),
            has_credentials: o.has_credentials,
            paused: o.paused,
            done: o.phase == Phase::Done,
        }
    }
}

fn state_class(phase: Phase) -> &'static str {
    match phase {
        Phase::Running => "running",
        Phase::Queued | Phase::WaitingWindow | Phase::WaitingCap => "waiting",
        Phase::Failed => "failed",
        Phase::Done | Phase::Passed => "done",
        Phase::Paused | Phase::Cancelled | Phase::Idle => "idle",
    }
}

#[derive(Template)]
#[template(path = "admin/migrations.html")]
struct MigrationsPage {
    frame: Frame,
    domain: String,
    domains: Vec<String>,
    rows: Vec<Row>,
    /// Something runs or waits: the page script refreshes the table.
    active: bool,
}

async fn list(State(app): State<AppState>, admin: Admin, Query(params): Query<Params>) -> WebResult {
    let store = app.store.as_ref();
    let domain = params.domain.trim().to_ascii_lowercase();
    let overview = tern_admin::migrations::overview(store, (!domain.is_empty()).then_some(domain.as_str()))
        .await
        .map_err(admin_error)?;
    let mut domains: Vec<String> = store
        .migrations()
        .await
        .map_err(store_error)?
        .iter()
        .map(|m| tern_admin::domain_of(&m.address))
        .collect();
    domains.sort();
    domains.dedup();
    let rows: Vec<Row> = overview.iter().map(|(o, _)| Row::of(o)).collect();
    Ok(page::render(&MigrationsPage {
        frame: admin.frame(&app, "migrations", &params.done),
        active: rows.iter().any(|r| matches!(r.state, "running" | "waiting")),
        domain,
        domains,
        rows,
    }))
}

/// Where an action came from and goes back to.
fn back(user: &str, domain: &str, from_detail: bool) -> String {
    if from_detail && !user.is_empty() {
        format!("/admin/migrations/{}", url_encode(user))
    } else if domain.is_empty() {
        "/admin/migrations".into()
    } else {
        format!("/admin/migrations?domain={}", url_encode(domain))
    }
}

async fn action(State(app): State<AppState>, admin: Admin, body: Bytes) -> WebResult<Response> {
    let pairs = form_pairs(&body);
    let user = field(&pairs, "user").trim();
    let domain = field(&pairs, "domain").trim().to_ascii_lowercase();
    let which = match (user, domain.as_str()) {
        ("", "") => Selector::default(),
        ("", d) => Selector::domain(d),
        (u, _) => Selector::user(u),
    };
    let scope = match (user, domain.as_str()) {
        ("", "") => "every migration".to_string(),
        ("", d) => format!("every migration of {d}"),
        (u, _) => format!("the migration of {u}"),
    };
    let from_detail = field(&pairs, "back") == "detail";
    let store = app.store.as_ref();
    let what = field(&pairs, "action");
    let (count, key) = match what {
        "start" => {
            let pass = match field(&pairs, "pass") {
                "prestage" => Pass::Prestage,
                "full" => Pass::Full,
                "delta" => Pass::Delta,
                other => {
                    return Err(WebError::bad_request(format!(
                        "{other:?} is not a pass to start: choose prestage, full or delta."
                    )));
                }
            };
            let n = tern_admin::migrations::start(store, &which, PassRequest::new(pass))
                .await
                .map_err(admin_error)?;
            (n, "migration-started")
        }
        "retry" => {
            let n = tern_admin::migrations::start(store, &which, PassRequest::new(Pass::RetryErrors))
                .await
                .map_err(admin_error)?;
            (n, "migration-retry")
        }
        "pause" | "resume" | "cancel" => {
            let (control, key) = match what {
                "pause" => (Control::Pause, "migration-paused"),
                "resume" => (Control::Resume, "migration-resumed"),
                _ => (Control::Cancel, "migration-cancelled"),
            };
            let n = tern_admin::migrations::control(store, &which, control)
                .await
                .map_err(admin_error)?;
            (n, key)
        }
        "finish" => {
            if !super::yes(field(&pairs, "confirm")) {
                let mut fields = vec![("action".to_string(), "finish".to_string())];
                for name in ["user", "domain", "back"] {
                    let value = field(&pairs, name);
                    if !value.is_empty() {
                        fields.push((name.to_string(), value.to_string()));
                    }
                }
                return Ok(page::render(&ConfirmPage {
                    frame: admin.frame(&app, "migrations", ""),
                    title: format!("Finish {scope}?"),
                    message: "A last delta pass copies what arrived since the previous pass, then the source \
                              credentials are wiped and the migration is done: no more passes can run unless the \
                              mailbox is added again. Finish once the domain's MX record names this server."
                        .into(),
                    action: "/admin/migrations/action".into(),
                    fields,
                    checkbox: None,
                    button: "Finish and wipe the credentials".into(),
                    cancel: back(user, &domain, from_detail),
                }));
            }
            let n = tern_admin::migrations::finish(store, &which)
                .await
                .map_err(admin_error)?;
            (n, "migration-finish")
        }
        other => {
            return Err(WebError::bad_request(format!(
                "{other:?} is not a migration action: start, retry, pause, resume, cancel or finish."
            )));
        }
    };
    info!(
        admin = %admin.address(),
        action = %what,
        pass = %field(&pairs, "pass"),
        scope = %scope,
        migrations = count,
        "console: migration action"
    );
    Ok(done(&back(user, &domain, from_detail), key))
}

/// A folder of the report.
pub struct FolderRow {
    pub source: String,
    pub target: String,
    pub source_messages: u64,
    pub size: String,
    pub copied: u64,
    pub skipped: u64,
    /// Why messages were skipped: "reason: n".
    pub skipped_why: Vec<String>,
    pub errors: u64,
    pub gone: bool,
}

/// A recent error: (when, folder, message, error).
pub struct ErrorRow {
    pub at: String,
    pub folder: String,
    pub message: String,
    pub error: String,
}

#[derive(Template)]
#[template(path = "admin/migration.html")]
struct DetailPage {
    frame: Frame,
    row: Row,
    remote_user: String,
    started: String,
    finished: String,
    pass_copied: u64,
    skipped: u64,
    flag_updates: u64,
    folders: Vec<FolderRow>,
    errors: Vec<ErrorRow>,
}

async fn detail(
    State(app): State<AppState>,
    admin: Admin,
    Path(address): Path<String>,
    Query(params): Query<Params>,
) -> WebResult {
    let store = app.store.as_ref();
    let m = store.migration(&address).await.map_err(store_error)?;
    let report = Report::load(store, &m).await.map_err(|e| admin_error(e.into()))?;
    let p = &report.progress;
    let folders = report
        .folders
        .iter()
        .map(|f| {
            let s = &f.state;
            FolderRow {
                source: f.source.clone(),
                target: s.target.clone(),
                source_messages: s.source_messages,
                size: super::bytes(s.source_bytes),
                copied: s.copied,
                skipped: s.skipped.values().sum(),
                skipped_why: s.skipped.iter().map(|(why, n)| format!("{why}: {n}")).collect(),
                errors: s.errors,
                gone: s.gone,
            }
        })
        .collect();
    let errors = p
        .recent_errors
        .iter()
        .rev()
        .map(|e| ErrorRow {
            at: super::when(e.at),
            folder: e.folder.clone(),
            message: e.message.clone(),
            error: e.error.clone(),
        })
        .collect();
    Ok(page::render(&DetailPage {
        frame: admin.frame(&app, "migrations", &params.done),
        row: Row::of(&Overview::of(&report)),
        remote_user: report.remote_user.clone(),
        started: super::when_opt(p.started),
        finished: super::when_opt(p.finished),
        pass_copied: p.pass_copied,
        skipped: p.skipped,
        flag_updates: p.flag_updates,
        folders,
        errors,
    }))
}
