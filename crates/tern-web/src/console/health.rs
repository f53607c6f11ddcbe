//! `GET /admin/health`: everything `tern_admin::health` knows of the running server,
//! the same facts `GET /admin/api/v1/health` gives scripts.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use tern_admin::health::Health;

use super::{Admin, Frame, admin_error};
use crate::AppState;
use crate::page::{self, WebResult};

pub fn routes() -> Router<AppState> {
    Router::new().route("/admin/health", get(show))
}

/// The certificate as the page shows it.
pub struct CertificateView {
    pub names: String,
    pub issuer: String,
    pub expires: String,
    pub days_left: i64,
    pub self_signed: bool,
    pub trusted: bool,
}

#[derive(Template)]
#[template(path = "admin/health.html")]
struct HealthPage {
    frame: Frame,
    health: Health,
    started: String,
    uptime: String,
    mail: String,
    disk_free: String,
    disk_total: String,
    queue_oldest: String,
    certificate: Option<CertificateView>,
}

async fn show(State(app): State<AppState>, admin: Admin) -> WebResult {
    let health = tern_admin::health::health(app.store.as_ref(), &app.config.server)
        .await
        .map_err(admin_error)?;
    let now = chrono::Utc::now().timestamp();
    let size = |b: Option<u64>| b.map(super::bytes).unwrap_or_else(|| "unknown".into());
    Ok(page::render(&HealthPage {
        frame: admin.frame(&app, "health", ""),
        started: if health.started > 0 {
            super::when(health.started)
        } else {
            "unknown".into()
        },
        uptime: tern_migrate::report::human_duration(health.uptime_seconds.max(0) as u64),
        mail: super::bytes(health.store.mail_bytes),
        disk_free: size(health.store.disk_free_bytes),
        disk_total: size(health.store.disk_total_bytes),
        queue_oldest: health.queue.oldest.map(|t| super::ago(t, now)).unwrap_or_default(),
        certificate: health.certificate.as_ref().map(|c| CertificateView {
            names: c.names.join(", "),
            issuer: c.issuer.clone(),
            expires: super::when(c.not_after),
            days_left: (c.not_after - now) / 86400,
            self_signed: c.self_signed,
            trusted: c.trusted,
        }),
        health,
    }))
}
