//! The outbound queue page: what waits for delivery (as `tern queue list` and `show`
//! tell it), trying a message or all of them again now, and deleting one.

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use tern_smtp::queue::Envelope;
use tern_store::QueueId;
use tracing::info;

use super::{Admin, ConfirmPage, Frame, done, store_error};
use crate::AppState;
use crate::mail::{field, form_pairs};
use crate::page::{self, WebResult};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/queue", get(list))
        .route("/admin/queue/retry-all", post(retry_all))
        .route("/admin/queue/{id}/retry", post(retry))
        .route("/admin/queue/{id}/delete", post(delete))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Params {
    done: String,
}

/// A queued message as the table shows it.
pub struct EntryRow {
    pub id: i64,
    pub sender: String,
    pub pending: Vec<String>,
    pub size: String,
    pub attempts: u32,
    pub queued: String,
    pub next_try: String,
    /// The last reply about a pending recipient, with the host that gave it.
    pub last_reply: String,
}

#[derive(Template)]
#[template(path = "admin/queue.html")]
struct QueuePage {
    frame: Frame,
    entries: Vec<EntryRow>,
}

async fn list(State(app): State<AppState>, admin: Admin, Query(params): Query<Params>) -> WebResult {
    let now = chrono::Utc::now().timestamp();
    let entries = app
        .store
        .queue_entries()
        .await
        .map_err(store_error)?
        .iter()
        .map(|e| {
            let envelope = Envelope::parse(e);
            let last_reply = envelope
                .pending()
                .find_map(|r| {
                    r.last_reply.as_ref().map(|reply| match &r.remote_host {
                        Some(host) => format!("{host}: {reply}"),
                        None => reply.clone(),
                    })
                })
                .unwrap_or_default();
            EntryRow {
                id: e.id.0,
                sender: if e.sender.is_empty() {
                    "<>".into()
                } else {
                    e.sender.clone()
                },
                pending: envelope.pending().map(|r| r.address.clone()).collect(),
                size: super::bytes(e.size),
                attempts: envelope.attempts,
                queued: super::ago(e.created, now),
                next_try: if e.next_attempt <= now {
                    "now".into()
                } else {
                    super::when(e.next_attempt)
                },
                last_reply,
            }
        })
        .collect();
    Ok(page::render(&QueuePage {
        frame: admin.frame(&app, "queue", &params.done),
        entries,
    }))
}

async fn retry(State(app): State<AppState>, admin: Admin, Path(id): Path<i64>) -> WebResult<Response> {
    app.store
        .set_queue_next_attempt(QueueId(id), tern_migrate::now())
        .await
        .map_err(store_error)?;
    info!(admin = %admin.address(), queue_id = id, "console: queued message retried");
    Ok(done("/admin/queue", "queue-retry"))
}

async fn retry_all(State(app): State<AppState>, admin: Admin) -> WebResult<Response> {
    let now = tern_migrate::now();
    let entries = app.store.queue_entries().await.map_err(store_error)?;
    for e in &entries {
        app.store.set_queue_next_attempt(e.id, now).await.map_err(store_error)?;
    }
    info!(admin = %admin.address(), messages = entries.len(), "console: every queued message retried");
    Ok(done("/admin/queue", "queue-retry-all"))
}

async fn delete(State(app): State<AppState>, admin: Admin, Path(id): Path<i64>, body: Bytes) -> WebResult<Response> {
    let pairs = form_pairs(&body);
    if !super::yes(field(&pairs, "confirm")) {
        let entry = app.store.queue_entry(QueueId(id)).await.map_err(store_error)?;
        let sender = if entry.sender.is_empty() {
            "<>"
        } else {
            entry.sender.as_str()
        };
        return Ok(page::render(&ConfirmPage {
            frame: admin.frame(&app, "queue", ""),
            title: format!("Delete queued message {id}?"),
            message: format!(
                "The message from {sender} ({}) is dropped without being delivered, and its sender is not told.",
                super::bytes(entry.size)
            ),
            action: format!("/admin/queue/{id}/delete"),
            fields: Vec::new(),
            checkbox: None,
            button: "Delete the message".into(),
            cancel: "/admin/queue".into(),
        }));
    }
    app.store.delete_queue_entry(QueueId(id)).await.map_err(store_error)?;
    info!(admin = %admin.address(), queue_id = id, "console: queued message deleted");
    Ok(done("/admin/queue", "queue-deleted"))
}
