//! New mail without reloading: server-sent events (the HTML Living Standard's
//! EventSource) carrying the store's change notifications for the logged-in account.
//!
//! Each event says which mailbox changed and how; the page script then fetches the
//! folder tree and, if it shows that mailbox, the message list again. A subscriber that
//! fell behind the change bus gets one "everything may have changed" event (mailbox 0).
//! The stream ends when Tern shuts down, so a graceful shutdown never waits for it.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures_util::stream::{self, Stream};
use tern_store::{AccountId, ChangeKind};
use tokio::sync::broadcast::error::RecvError;

use crate::AppState;
use crate::session::User;

pub fn routes() -> Router<AppState> {
    Router::new().route("/events", get(events))
}

/// The data of one event: `{"mailbox": id, "kind": "appended", "count": n}`.
fn event(mailbox: i64, kind: &str, count: usize) -> Event {
    Event::default()
        .event("change")
        .data(serde_json::json!({ "mailbox": mailbox, "kind": kind, "count": count }).to_string())
}

async fn events(State(app): State<AppState>, user: User) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = app.store.subscribe();
    let account: AccountId = user.account.id;
    let shutdown = user.client.shutdown.clone();
    let stream = stream::unfold((receiver, shutdown), move |(mut receiver, shutdown)| async move {
        loop {
            let next = tokio::select! {
                next = receiver.recv() => next,
                _ = shutdown.triggered() => return None,
            };
            let item = match next {
                Ok(change) if change.account == account => {
                    let (kind, count) = match &change.kind {
                        ChangeKind::Appended(uids) => ("appended", uids.len()),
                        ChangeKind::FlagsChanged(uids) => ("flags", uids.len()),
                        ChangeKind::Expunged(uids) => ("expunged", uids.len()),
                        ChangeKind::MailboxCreated { .. }
                        | ChangeKind::MailboxRenamed { .. }
                        | ChangeKind::MailboxDeleted { .. }
                        | ChangeKind::Subscription { .. } => ("folders", 0),
                    };
                    event(change.mailbox.0, kind, count)
                }
                Ok(_) => continue,
                Err(RecvError::Lagged(_)) => event(0, "resync", 0),
                Err(RecvError::Closed) => return None,
            };
            return Some((Ok(item), (receiver, shutdown)));
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(25)))
}
