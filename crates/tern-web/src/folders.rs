//! Managing folders: create (under a parent), rename (children follow, RFC 9051
//! §6.3.6), delete (refused for INBOX, special-use folders and folders with children,
//! so nothing is lost by a slip).

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tern_store::DELIMITER;

use crate::AppState;
use crate::mail::{field, form_pairs};
use crate::page::{self, FolderRow, Frame, WebResult, url_encode};
use crate::session::User;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/folders", get(show))
        .route("/folders/create", post(create))
        .route("/folders/rename", post(rename))
        .route("/folders/delete", post(delete))
}

#[derive(Template)]
#[template(path = "folders.html")]
struct FoldersPage {
    frame: Frame,
    rows: Vec<FolderRow>,
    saved: String,
    error: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Params {
    saved: String,
    error: String,
}

async fn show(State(app): State<AppState>, user: User, Query(params): Query<Params>) -> WebResult {
    let frame = page::frame(&app, &user, "").await?;
    let rows = frame.folders.clone();
    Ok(page::render(&FoldersPage {
        frame,
        rows,
        saved: params.saved,
        error: params.error,
    }))
}

fn done(saved: &str) -> Response {
    Redirect::to(&format!("/folders?saved={}", url_encode(saved))).into_response()
}

fn refused(error: impl std::fmt::Display) -> Response {
    Redirect::to(&format!("/folders?error={}", url_encode(&error.to_string()))).into_response()
}

/// A folder name segment as typed: no separator, no control characters.
fn clean_segment(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("Give the folder a name.".into());
    }
    if name.contains(DELIMITER) || name.chars().any(|c| c.is_control() || c == '*' || c == '%') {
        return Err(format!("A folder name cannot contain \"{DELIMITER}\", \"*\" or \"%\"."));
    }
    Ok(name.to_string())
}

async fn create(State(app): State<AppState>, user: User, body: Bytes) -> WebResult {
    let pairs = form_pairs(&body);
    let name = match clean_segment(field(&pairs, "name")) {
        Ok(n) => n,
        Err(e) => return Ok(refused(e)),
    };
    let parent = field(&pairs, "parent");
    let full = if parent.is_empty() {
        name
    } else {
        format!("{parent}{DELIMITER}{name}")
    };
    match app.store.create_mailbox(user.account.id, &full, None).await {
        Ok(_) => {
            let _ = app.store.set_subscribed(user.account.id, &full, true).await;
            Ok(done(&format!("Created {full}.")))
        }
        Err(e) => Ok(refused(page::WebError::from(e).message)),
    }
}

async fn rename(State(app): State<AppState>, user: User, body: Bytes) -> WebResult {
    let pairs = form_pairs(&body);
    let from = field(&pairs, "folder");
    let name = match clean_segment(field(&pairs, "name")) {
        Ok(n) => n,
        Err(e) => return Ok(refused(e)),
    };
    if from.eq_ignore_ascii_case("INBOX") {
        return Ok(refused("The inbox keeps its name."));
    }
    let to = match from.rsplit_once(DELIMITER) {
        Some((parent, _)) => format!("{parent}{DELIMITER}{name}"),
        None => name,
    };
    match app.store.rename_mailbox(user.account.id, from, &to).await {
        Ok(()) => Ok(done(&format!("Renamed {from} to {to}."))),
        Err(e) => Ok(refused(page::WebError::from(e).message)),
    }
}

async fn delete(State(app): State<AppState>, user: User, body: Bytes) -> WebResult {
    let pairs = form_pairs(&body);
    let folder = field(&pairs, "folder");
    let mailbox = app.store.mailbox(user.account.id, folder).await?;
    if mailbox.name.eq_ignore_ascii_case("INBOX") || mailbox.special_use.is_some() {
        return Ok(refused(format!(
            "{} is one of the standard folders and stays.",
            mailbox.name
        )));
    }
    match app.store.delete_mailbox(user.account.id, folder).await {
        Ok(()) => Ok(done(&format!("Deleted {folder} and the messages in it."))),
        Err(e) => Ok(refused(page::WebError::from(e).message)),
    }
}
