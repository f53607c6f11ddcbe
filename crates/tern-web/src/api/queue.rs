//! The outbound queue: what waits for delivery to other hosts, trying again now, and
//! dropping a message (its sender is not told).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Serialize;
use tern_smtp::queue::Envelope;
use tern_store::{QueueEntry, QueueId};

use super::auth::ApiToken;
use super::{ApiResult, PathParams, done, json};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/queue", get(list))
        .route("/queue/retry", post(retry_all))
        .route("/queue/{id}", get(show).delete(remove))
        .route("/queue/{id}/retry", post(retry))
}

/// A queued message as `tern queue list --json` shows it.
#[derive(Serialize)]
struct Queued {
    id: i64,
    /// The envelope sender; empty for a bounce (`<>`).
    sender: String,
    size: u64,
    created: i64,
    next_attempt: i64,
    envelope: Envelope,
}

impl Queued {
    fn of(e: &QueueEntry) -> Queued {
        Queued {
            id: e.id.0,
            sender: e.sender.clone(),
            size: e.size,
            created: e.created,
            next_attempt: e.next_attempt,
            envelope: Envelope::parse(e),
        }
    }
}

async fn list(_: ApiToken, State(app): State<AppState>) -> ApiResult<Response> {
    let items: Vec<Queued> = app.store.queue_entries().await?.iter().map(Queued::of).collect();
    json(StatusCode::OK, &items)
}

async fn show(_: ApiToken, State(app): State<AppState>, PathParams(id): PathParams<i64>) -> ApiResult<Response> {
    json(StatusCode::OK, &Queued::of(&app.store.queue_entry(QueueId(id)).await?))
}

#[derive(Serialize)]
struct Count {
    /// How many messages will be tried again within seconds.
    messages: usize,
}

async fn retry(
    State(app): State<AppState>,
    ApiToken(token): ApiToken,
    PathParams(id): PathParams<i64>,
) -> ApiResult<Response> {
    let entry = app.store.queue_entry(QueueId(id)).await?;
    app.store.set_queue_next_attempt(entry.id, tern_migrate::now()).await?;
    tracing::info!(token = %token, queue_id = id, "API: queued message to be retried now");
    json(StatusCode::OK, &Count { messages: 1 })
}

async fn retry_all(State(app): State<AppState>, ApiToken(token): ApiToken) -> ApiResult<Response> {
    let now = tern_migrate::now();
    let entries = app.store.queue_entries().await?;
    for e in &entries {
        app.store.set_queue_next_attempt(e.id, now).await?;
    }
    tracing::info!(token = %token, messages = entries.len(), "API: whole queue to be retried now");
    json(
        StatusCode::OK,
        &Count {
            messages: entries.len(),
        },
    )
}

async fn remove(
    State(app): State<AppState>,
    ApiToken(token): ApiToken,
    PathParams(id): PathParams<i64>,
) -> ApiResult<Response> {
    app.store.delete_queue_entry(QueueId(id)).await?;
    tracing::info!(token = %token, queue_id = id, "API: queued message deleted");
    done()
}
