//! `GET /admin`: what needs the administrator (health problems), how much is hosted,
//! how the migrations and the outbound queue are doing, and where each domain is in
//! going live.

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use serde::Deserialize;
use tern_admin::health::Health;

use super::{Admin, Frame, admin_error, store_error};
use crate::AppState;
use crate::page::{self, WebResult};

pub fn routes() -> Router<AppState> {
    Router::new().route("/admin", get(show))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Params {
    done: String,
}

/// A domain's line on the dashboard.
pub struct DomainLine {
    pub name: String,
    pub accounts: u64,
    pub receiving: bool,
    /// Where it is in going live, for a domain with migrations; "" otherwise.
    pub golive: String,
}

/// All migrations together.
#[derive(Default)]
pub struct Totals {
    pub copied: u64,
    pub source_messages: u64,
    pub percent: u64,
}

#[derive(Template)]
#[template(path = "admin/dashboard.html")]
struct DashboardPage {
    frame: Frame,
    health: Health,
    mail: String,
    disk_free: String,
    /// "free of 270.6 GB on disk".
    disk_label: String,
    /// Migrations neither running, waiting, failed nor done: idle, paused, between
    /// passes.
    between: u64,
    totals: Totals,
    domains: Vec<DomainLine>,
    queue_oldest: String,
}

async fn show(State(app): State<AppState>, admin: Admin, Query(params): Query<Params>) -> WebResult {
    let store = app.store.as_ref();
    let health = tern_admin::health::health(store, &app.config.server)
        .await
        .map_err(admin_error)?;
    let overview = tern_admin::migrations::overview(store, None)
        .await
        .map_err(admin_error)?;
    let mut totals = Totals::default();
    for (o, _) in &overview {
        totals.copied += o.copied.min(o.source_messages);
        totals.source_messages += o.source_messages;
    }
    totals.percent = (totals.copied * 100).checked_div(totals.source_messages).unwrap_or(0);
    let mut domains = Vec::new();
    for d in store.domains().await.map_err(store_error)? {
        let migrating = overview
            .iter()
            .any(|(o, _)| tern_admin::domain_of(&o.address) == d.name);
        let golive = if migrating {
            tern_dns::golive::load(store, &d.name)
                .await
                .map_err(store_error)?
                .summary()
        } else {
            String::new()
        };
        domains.push(DomainLine {
            name: d.name,
            accounts: d.accounts,
            receiving: d.receiving,
            golive,
        });
    }
    let now = chrono::Utc::now().timestamp();
    Ok(page::render(&DashboardPage {
        frame: admin.frame(&app, "dashboard", &params.done),
        mail: super::bytes(health.store.mail_bytes),
        disk_free: health
            .store
            .disk_free_bytes
            .map_or_else(|| "unknown".into(), super::bytes),
        disk_label: match health.store.disk_total_bytes {
            Some(total) => format!("free of {} on disk", super::bytes(total)),
            None => "free on disk".into(),
        },
        between: {
            let m = &health.migrations;
            m.total.saturating_sub(m.running + m.waiting + m.failed + m.done)
        },
        queue_oldest: health.queue.oldest.map(|t| super::ago(t, now)).unwrap_or_default(),
        health,
        totals,
        domains,
    }))
}
