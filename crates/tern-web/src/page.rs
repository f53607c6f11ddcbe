//! What every webmail page shares: the frame around it (folder tree with unread counts,
//! search box, the migration banner), errors shown as pages, the Content-Security-Policy
//! of Tern's own pages, and small encoding helpers.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode, utf8_percent_encode};
use tern_store::{Mailbox, SpecialUse, StoreError};
use tracing::warn;

use crate::AppState;
use crate::session::User;

/// The policy of Tern's own pages: only Tern's own script and style; images from Tern
/// (inline parts) and data: URLs; no plugins; frames only from Tern (the message body
/// frame); forms post only to Tern.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'self'";

/// A rendered page with Tern's policy.
pub fn html_page(body: String) -> Response {
    let mut response = Html(body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(PAGE_CSP));
    response
}

/// Renders a template as a page.
pub fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(body) => html_page(body),
        Err(e) => WebError::internal(format!("cannot render the page: {e}")).into_response(),
    }
}

/// Something went wrong; shown to the user as a page saying what to do.
#[derive(Debug)]
pub struct WebError {
    pub status: StatusCode,
    pub message: String,
}

impl WebError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> WebError {
        WebError {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> WebError {
        WebError::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> WebError {
        WebError::new(StatusCode::NOT_FOUND, message)
    }
    pub fn internal(message: impl Into<String>) -> WebError {
        WebError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl From<StoreError> for WebError {
    fn from(e: StoreError) -> WebError {
        match e {
            StoreError::NoSuchMailbox(_) => WebError::not_found("There is no such folder."),
            StoreError::NoSuchMessage(_) => WebError::not_found("The message is gone (moved or deleted)."),
            StoreError::MailboxExists(_) => WebError::bad_request("A folder of that name exists already."),
            StoreError::InvalidMailboxName(_)
            | StoreError::HasChildren(_)
            | StoreError::ProtectedMailbox(..)
            | StoreError::QuotaExceeded { .. } => WebError::bad_request(e.to_string()),
            other => {
                warn!(error = %other, "webmail: store error");
                WebError::internal("The mail store could not answer; try again in a moment.")
            }
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    message: &'a str,
    back: &'a str,
    back_label: &'a str,
}

/// An error page already rendered, kept in its response's extensions so a part of the
/// site with its own way back (the admin console) can render it again with that.
#[derive(Debug, Clone)]
pub struct ShownError {
    pub status: StatusCode,
    pub message: String,
}

impl WebError {
    /// The error page, with a button back to `back`.
    pub fn page(&self, back: &str, back_label: &str) -> Response {
        let page = ErrorPage {
            status: self.status.as_u16(),
            message: &self.message,
            back,
            back_label,
        };
        let mut response = match page.render() {
            Ok(body) => html_page(body),
            Err(_) => self.message.clone().into_response(),
        };
        *response.status_mut() = self.status;
        response.extensions_mut().insert(ShownError {
            status: self.status,
            message: self.message.clone(),
        });
        response
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        self.page("/mail", "Back to the inbox")
    }
}

pub type WebResult<T = Response> = Result<T, WebError>;

/// One folder in the tree.
#[derive(Debug, Clone)]
pub struct FolderRow {
    pub name: String,
    /// The last segment, as shown.
    pub label: String,
    pub depth: usize,
    pub unread: u32,
    pub total: u32,
    /// CSS class naming the special use ("inbox", "sent", "trash", ...), or "".
    pub kind: &'static str,
}

/// The frame of every webmail page.
pub struct Frame {
    pub hostname: String,
    pub address: String,
    pub display_name: String,
    pub csrf: String,
    pub folders: Vec<FolderRow>,
    /// The folder being looked at ("" on settings and compose).
    pub current: String,
    pub banner: Option<String>,
}

/// Folders sorted the way clients show them: INBOX, the special-use folders in their
/// usual order, then the rest by name (children under their parent).
pub fn folder_rows(mut mailboxes: Vec<Mailbox>) -> Vec<FolderRow> {
    fn rank(m: &Mailbox) -> u8 {
        if m.name.eq_ignore_ascii_case("INBOX") {
            return 0;
        }
        match m.special_use {
            Some(SpecialUse::Drafts) => 1,
            Some(SpecialUse::Sent) => 2,
            Some(SpecialUse::Archive) => 3,
            Some(SpecialUse::Junk) => 4,
            Some(SpecialUse::Trash) => 5,
            _ => 6,
        }
    }
    // The top-level folder a name lives under decides its place.
    let top_rank = |name: &str, all: &[Mailbox]| {
        let top = name.split(tern_store::DELIMITER).next().unwrap_or(name);
        all.iter().find(|m| m.name == top).map_or(6, rank)
    };
    let ranks: Vec<(u8, String)> = mailboxes
        .iter()
        .map(|m| (top_rank(&m.name, &mailboxes), m.name.clone()))
        .collect();
    let mut order: Vec<usize> = (0..mailboxes.len()).collect();
    order.sort_by(|&a, &b| ranks[a].cmp(&ranks[b]));
    let mut sorted: Vec<Mailbox> = Vec::with_capacity(mailboxes.len());
    let mut taken: Vec<Option<Mailbox>> = mailboxes.drain(..).map(Some).collect();
    for i in order {
        if let Some(m) = taken[i].take() {
            sorted.push(m);
        }
    }
    sorted
        .into_iter()
        .map(|m| {
            let depth = m.name.matches(tern_store::DELIMITER).count();
            let label = m
                .name
                .rsplit(tern_store::DELIMITER)
                .next()
                .unwrap_or(&m.name)
                .to_string();
            let kind = if m.name.eq_ignore_ascii_case("INBOX") {
                "inbox"
            } else {
                match m.special_use {
                    Some(SpecialUse::Drafts) => "drafts",
                    Some(SpecialUse::Sent) => "sent",
                    Some(SpecialUse::Archive) => "archive",
                    Some(SpecialUse::Junk) => "junk",
                    Some(SpecialUse::Trash) => "trash",
                    Some(SpecialUse::All) | Some(SpecialUse::Flagged) | None => "",
                }
            };
            let label = if kind == "inbox" { "Inbox".to_string() } else { label };
            FolderRow {
                label,
                depth,
                unread: m.unseen,
                total: m.messages,
                kind,
                name: m.name,
            }
        })
        .collect()
}

/// Builds the frame for `user`, looking at `current`.
pub async fn frame(app: &AppState, user: &User, current: &str) -> WebResult<Frame> {
    let mailboxes = app.store.mailboxes(user.account.id).await?;
    Ok(Frame {
        hostname: app.config.hostname.clone(),
        address: user.account.address.clone(),
        display_name: user.account.display_name.clone().unwrap_or_default(),
        csrf: user.csrf.clone(),
        folders: folder_rows(mailboxes),
        current: current.to_string(),
        banner: migration_banner(app, &user.account.address).await,
    })
}

/// "Your older mail is still being copied", while a migration of this mailbox runs.
pub async fn migration_banner(app: &AppState, address: &str) -> Option<String> {
    use tern_migrate::state::{Phase, Progress};
    let migration = app.store.migration(address).await.ok()?;
    let progress: Progress = serde_json::from_str(&migration.progress).unwrap_or_default();
    match progress.phase {
        Phase::Done | Phase::Cancelled | Phase::Idle => return None,
        Phase::Passed if progress.source_messages > 0 && progress.copied >= progress.source_messages => return None,
        _ => {}
    }
    let share = match progress.source_messages {
        0 => String::new(),
        total => format!(
            ": {} of {} messages so far ({}%)",
            thousands(progress.copied.min(total)),
            thousands(total),
            progress.copied.min(total) * 100 / total
        ),
    };
    Some(format!(
        "Your older mail is still being copied from your previous provider{share}. \
         Everything copied so far is already here, in its folders; the rest follows by itself."
    ))
}

/// 12345 → "12,345".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A size for people: "12 KB".
pub fn human_size(bytes: u64) -> String {
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{} KB", bytes.div_ceil(1_000)),
        _ => format!("{:.1} MB", bytes as f64 / 1_000_000.0),
    }
}

/// Characters escaped in a URL query value.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Percent-encodes a query value.
pub fn url_encode(value: &str) -> String {
    utf8_percent_encode(value, QUERY).to_string()
}

/// Decodes an `application/x-www-form-urlencoded` value (`+` is a space).
pub fn form_decode(value: &[u8]) -> String {
    let spaced: Vec<u8> = value.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect();
    percent_decode(&spaced).decode_utf8_lossy().into_owned()
}

/// A date for a message list: the time today, "Mon 14" this week... kept simple and
/// unambiguous: "14:05" today, "3 Nov" this year, "3 Nov 2024" before.
pub fn list_date(unix: i64, now: i64) -> String {
    use chrono::{Datelike, TimeZone, Utc};
    let Some(date) = Utc.timestamp_opt(unix, 0).single() else {
        return String::new();
    };
    let today = Utc.timestamp_opt(now, 0).single().unwrap_or(date);
    if date.date_naive() == today.date_naive() {
        date.format("%H:%M").to_string()
    } else if date.year() == today.year() {
        date.format("%-d %b").to_string()
    } else {
        date.format("%-d %b %Y").to_string()
    }
}

/// A full date: "Tue, 3 Nov 2026 14:05 UTC".
pub fn full_date(unix: i64) -> String {
    use chrono::{TimeZone, Utc};
    Utc.timestamp_opt(unix, 0)
        .single()
        .map(|d| d.format("%a, %-d %b %Y %H:%M UTC").to_string())
        .unwrap_or_default()
}
