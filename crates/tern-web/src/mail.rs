//! The folder view: one page of a folder's message list (sorted by date, sender,
//! subject or size; optionally as conversations; or the results of a search), and the
//! actions on selected messages: mark read or unread, flag, move, delete to Trash, mark
//! as junk or not junk.
//!
//! A page is one `Store::list_page` call, so paging through a folder of 100,000
//! messages costs the same on page 1 and page 2,000. Search runs the store's full-text
//! index (the same one IMAP SEARCH TEXT uses) and narrows by sender, recipient, subject
//! and date.

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use serde::Deserialize;
use tern_store::metadata::AddressItem;
use tern_store::{
    FlagOp, Flags, ListPage, ListQuery, ListSort, Mailbox, MailboxId, SpecialUse, SystemFlags, TextField, Uid,
};

use crate::AppState;
use crate::page::{self, Frame, WebError, WebResult, url_encode};
use crate::session::User;

/// Rows per page.
pub const PAGE_SIZE: usize = 50;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/mail") }))
        .route("/mail", get(list))
        .route("/mail/action", post(action))
}

/// The query string of the folder view.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ListParams {
    pub folder: String,
    pub page: usize,
    /// date | from | subject | size
    pub sort: String,
    /// asc | desc (default: desc for date and size, asc otherwise)
    pub order: String,
    /// "1": conversations.
    pub conv: String,
    /// Full-text search words.
    pub q: String,
    pub from: String,
    pub to: String,
    pub subject: String,
    /// YYYY-MM-DD, inclusive.
    pub since: String,
    /// YYYY-MM-DD, exclusive.
    pub before: String,
}

impl ListParams {
    pub fn folder(&self) -> &str {
        if self.folder.is_empty() { "INBOX" } else { &self.folder }
    }

    fn sort(&self) -> ListSort {
        match self.sort.as_str() {
            "from" => ListSort::From,
            "subject" => ListSort::Subject,
            "size" => ListSort::Size,
            _ => ListSort::Arrival,
        }
    }

    fn descending(&self) -> bool {
        match self.order.as_str() {
            "asc" => false,
            "desc" => true,
            _ => matches!(self.sort(), ListSort::Arrival | ListSort::Size),
        }
    }

    pub fn searching(&self) -> bool {
        [&self.q, &self.from, &self.to, &self.subject, &self.since, &self.before]
            .iter()
            .any(|s| !s.trim().is_empty())
    }

    /// This view's URL with some parameters changed.
    pub fn url_with(&self, changes: &[(&str, &str)]) -> String {
        let mut fields: Vec<(&str, String)> = vec![
            ("folder", self.folder().to_string()),
            ("sort", self.sort.clone()),
            ("order", self.order.clone()),
            ("conv", self.conv.clone()),
            ("q", self.q.clone()),
            ("from", self.from.clone()),
            ("to", self.to.clone()),
            ("subject", self.subject.clone()),
            ("since", self.since.clone()),
            ("before", self.before.clone()),
            (
                "page",
                if self.page > 0 {
                    self.page.to_string()
                } else {
                    String::new()
                },
            ),
        ];
        for (key, value) in changes {
            if let Some(field) = fields.iter_mut().find(|(k, _)| k == key) {
                field.1 = value.to_string();
            }
        }
        let query: Vec<String> = fields
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}={}", url_encode(&v)))
            .collect();
        format!("/mail?{}", query.join("&"))
    }

    /// This view with conversations on or off, from the first page.
    pub fn conversations_url(&self, on: bool) -> String {
        self.url_with(&[("conv", if on { "1" } else { "" }), ("page", "")])
    }

    /// The link of a column header: sorts by it, or flips the order if it already does.
    pub fn sort_url(&self, by: &str) -> String {
        let current = if self.sort.is_empty() {
            "date"
        } else {
            self.sort.as_str()
        };
        let order = if current == by {
            if self.descending() { "asc" } else { "desc" }
        } else {
            ""
        };
        self.url_with(&[("sort", by), ("order", order), ("page", "")])
    }
}

/// One row as the list shows it.
pub struct Row {
    pub uid: Uid,
    pub unread: bool,
    pub flagged: bool,
    pub answered: bool,
    pub attachment: bool,
    pub from: String,
    pub subject: String,
    pub preview: String,
    pub date: String,
    pub full_date: String,
    pub size: String,
    pub conversation: u32,
    pub href: String,
}

#[derive(Template)]
#[template(path = "mail.html")]
struct MailPage {
    frame: Frame,
    params: ListParams,
    title: String,
    rows: Vec<Row>,
    /// "1–50 of 12,345"
    range: String,
    prev: Option<String>,
    next: Option<String>,
    sort: &'static str,
    /// "Newest first", "A–Z", ...: the order shown, on the button that reverses it.
    order_label: &'static str,
    conversations: bool,
    /// Folders to move to (all but this one).
    targets: Vec<(String, String)>,
    is_trash: bool,
    is_junk: bool,
    /// Sent or Drafts: the list names recipients.
    folder_is_sent: bool,
    searching: bool,
    back: String,
    mailbox_id: i64,
}

/// Names a sender list entry as a list shows it: the display name, or the address.
pub fn address_label(items: &[AddressItem]) -> String {
    let names: Vec<String> = items
        .iter()
        .filter_map(|a| match a {
            AddressItem::Mailbox { name, address } => name
                .clone()
                .filter(|n| !n.trim().is_empty())
                .or_else(|| address.clone()),
            AddressItem::Group { name, .. } => name.clone(),
        })
        .collect();
    names.join(", ")
}

async fn list(State(app): State<AppState>, user: User, Query(params): Query<ListParams>) -> WebResult {
    let mailbox = app.store.mailbox(user.account.id, params.folder()).await?;
    let only = if params.searching() {
        Some(search(&app, &mailbox, &params).await?)
    } else {
        None
    };
    let conversations = params.conv == "1" && !params.searching();
    let query = ListQuery {
        sort: params.sort(),
        descending: params.descending(),
        offset: params.page * PAGE_SIZE,
        limit: PAGE_SIZE,
        only,
        conversations,
        same_subject: None,
    };
    let page = app.store.list_page(mailbox.id, &query).await?;
    let rows = rows(&mailbox, &page, conversations, &params);
    let first = params.page * PAGE_SIZE;
    let range = if page.total == 0 {
        String::new()
    } else {
        format!(
            "{}–{} of {}",
            page::thousands(first as u64 + 1),
            page::thousands((first + rows.len()) as u64),
            page::thousands(page.total as u64)
        )
    };
    let prev = (params.page > 0).then(|| {
        let p = (params.page - 1).to_string();
        params.url_with(&[("page", if params.page == 1 { "" } else { &p })])
    });
    let next = (first + PAGE_SIZE < page.total).then(|| params.url_with(&[("page", &(params.page + 1).to_string())]));
    let mut frame = page::frame(&app, &user, &mailbox.name).await?;
    let title = frame
        .folders
        .iter()
        .find(|f| f.name == mailbox.name)
        .map(|f| f.label.clone())
        .unwrap_or_else(|| mailbox.name.clone());
    let targets = frame
        .folders
        .iter()
        .filter(|f| f.name != mailbox.name)
        .map(|f| (f.name.clone(), f.name.clone()))
        .collect();
    frame.current = mailbox.name.clone();
    let sort = match params.sort() {
        ListSort::Arrival => "date",
        ListSort::From => "from",
        ListSort::Subject => "subject",
        ListSort::Size => "size",
    };
    Ok(page::render(&MailPage {
        frame,
        title,
        rows,
        range,
        prev,
        next,
        sort,
        order_label: match (params.sort(), params.descending()) {
            (ListSort::Arrival, true) => "↓ Newest first",
            (ListSort::Arrival, false) => "↑ Oldest first",
            (ListSort::Size, true) => "↓ Largest first",
            (ListSort::Size, false) => "↑ Smallest first",
            (_, false) => "↓ A–Z",
            (_, true) => "↑ Z–A",
        },
        conversations,
        targets,
        is_trash: mailbox.special_use == Some(SpecialUse::Trash),
        is_junk: mailbox.special_use == Some(SpecialUse::Junk),
        folder_is_sent: matches!(mailbox.special_use, Some(SpecialUse::Sent | SpecialUse::Drafts)),
        mailbox_id: mailbox.id.0,
        searching: params.searching(),
        back: params.url_with(&[]),
        params,
    }))
}

fn rows(mailbox: &Mailbox, page: &ListPage, conversations: bool, params: &ListParams) -> Vec<Row> {
    let now = chrono::Utc::now().timestamp();
    let in_sent = matches!(mailbox.special_use, Some(SpecialUse::Sent | SpecialUse::Drafts));
    page.items
        .iter()
        .map(|item| {
            let flags = &item.summary.flags.system;
            // In Sent and Drafts, who it went to says more than who sent it.
            let from = if in_sent {
                format!("To: {}", address_label(&item.to))
            } else {
                address_label(&item.from)
            };
            let mut href = format!(
                "/mail/read?folder={}&uid={}",
                url_encode(&mailbox.name),
                item.summary.uid
            );
            if conversations {
                href.push_str("&conv=1");
            }
            if !params.q.is_empty() {
                href.push_str(&format!("&q={}", url_encode(&params.q)));
            }
            Row {
                uid: item.summary.uid,
                unread: item.conversation_unread > 0,
                flagged: flags.contains(SystemFlags::FLAGGED),
                answered: flags.contains(SystemFlags::ANSWERED),
                attachment: item.has_attachments,
                from: if from.is_empty() { "(no sender)".into() } else { from },
                subject: item
                    .subject
                    .clone()
                    .filter(|s| !s.trim().is_empty())
                    .unwrap_or_else(|| "(no subject)".into()),
                preview: item.preview.clone(),
                date: page::list_date(item.summary.internal_date, now),
                full_date: page::full_date(item.summary.internal_date),
                size: page::human_size(item.summary.size),
                conversation: item.conversation_size,
                href,
            }
        })
        .collect()
}

/// The UIDs of the folder matching the search fields.
async fn search(app: &AppState, mailbox: &Mailbox, params: &ListParams) -> WebResult<Vec<Uid>> {
    let store = &app.store;
    // Each field narrows the set; the full-text index answers the words, and the
    // envelope confirms that a word found among the headers is in the right one.
    let mut found: Option<Vec<Uid>> = None;
    let narrow = |found: Option<Vec<Uid>>, hits: Vec<Uid>| -> Option<Vec<Uid>> {
        Some(match found {
            None => hits,
            Some(prev) => prev.into_iter().filter(|u| hits.binary_search(u).is_ok()).collect(),
        })
    };
    if !params.q.trim().is_empty() {
        let hits = store.search_text(mailbox.id, TextField::Text, &params.q).await?;
        found = narrow(found, hits);
    }
    for (field, value) in [("from", &params.from), ("to", &params.to), ("subject", &params.subject)] {
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        let candidates = store.search_text(mailbox.id, TextField::Headers, value).await?;
        let candidates = match &found {
            Some(prev) => candidates
                .into_iter()
                .filter(|u| prev.binary_search(u).is_ok())
                .collect(),
            None => candidates,
        };
        let confirmed = confirm_header(app, mailbox.id, &candidates, field, value).await?;
        found = narrow(found, confirmed);
    }
    let since = parse_day(&params.since, "since")?;
    let before = parse_day(&params.before, "before")?;
    if since.is_some() || before.is_some() {
        let all = match found.take() {
            Some(uids) => store.messages_by_uid(mailbox.id, &uids).await?,
            None => store.messages(mailbox.id).await?,
        };
        found = Some(
            all.into_iter()
                .filter(|m| since.is_none_or(|s| m.internal_date >= s) && before.is_none_or(|b| m.internal_date < b))
                .map(|m| m.uid)
                .collect(),
        );
    }
    Ok(found.unwrap_or_default())
}

/// Keeps the candidates whose From, To/Cc or Subject contains `value`.
async fn confirm_header(
    app: &AppState,
    mailbox: MailboxId,
    candidates: &[Uid],
    field: &str,
    value: &str,
) -> WebResult<Vec<Uid>> {
    let needle = value.to_lowercase();
    let has = |items: &[AddressItem]| {
        items.iter().any(|a| match a {
            AddressItem::Mailbox { name, address } => [name, address]
                .iter()
                .any(|s| s.as_deref().is_some_and(|s| s.to_lowercase().contains(&needle))),
            AddressItem::Group { name, members } => {
                name.as_deref().is_some_and(|s| s.to_lowercase().contains(&needle))
                    || members.iter().any(|(n, a)| {
                        [n, a]
                            .iter()
                            .any(|s| s.as_deref().is_some_and(|s| s.to_lowercase().contains(&needle)))
                    })
            }
        })
    };
    let mut confirmed = Vec::new();
    for chunk in candidates.chunks(1000) {
        for (uid, envelope) in app.store.envelopes(mailbox, chunk).await? {
            let decoded_subject = || {
                envelope
                    .subject
                    .as_deref()
                    .map(|s| {
                        mail_parser::MessageParser::default()
                            .parse_headers(format!("Subject: {s}\r\n\r\n").as_bytes())
                            .and_then(|m| m.subject().map(str::to_string))
                            .unwrap_or_else(|| s.to_string())
                    })
                    .unwrap_or_default()
            };
            let hit = match field {
                "from" => has(&envelope.from),
                "to" => has(&envelope.to) || has(&envelope.cc),
                _ => decoded_subject().to_lowercase().contains(&needle),
            };
            if hit {
                confirmed.push(uid);
            }
        }
    }
    Ok(confirmed)
}

/// YYYY-MM-DD as unix seconds at 00:00 UTC.
fn parse_day(value: &str, field: &str) -> WebResult<Option<i64>> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| Some(d.and_utc().timestamp()))
        .ok_or_else(|| WebError::bad_request(format!("The {field} date must look like 2026-11-26.")))
}

/// Decoded form fields, repeated keys kept (`uid=1&uid=2`).
pub fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    body.split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.iter().position(|&b| b == b'=') {
            Some(i) => (page::form_decode(&pair[..i]), page::form_decode(&pair[i + 1..])),
            None => (page::form_decode(pair), String::new()),
        })
        .collect()
}

/// The first value of a form field.
pub fn field<'a>(pairs: &'a [(String, String)], name: &str) -> &'a str {
    pairs.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
}

/// An action on selected messages.
async fn action(State(app): State<AppState>, user: User, headers: HeaderMap, body: Bytes) -> WebResult {
    let pairs = form_pairs(&body);
    let folder = match field(&pairs, "folder") {
        "" => "INBOX",
        f => f,
    };
    let uids: Vec<Uid> = pairs
        .iter()
        .filter(|(k, _)| k == "uid")
        .filter_map(|(_, v)| v.parse().ok())
        .collect();
    let what = field(&pairs, "action");
    let target = field(&pairs, "target");
    let outcome = apply(&app, &user, folder, &uids, what, target).await?;
    // Scripts ask for JSON; forms get sent back where they came from.
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    if wants_json {
        return Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({ "ok": true, "message": outcome }).to_string(),
        )
            .into_response());
    }
    let back = field(&pairs, "back");
    // Only a path of this site: never an open redirect.
    let back = if back.starts_with('/') && !back.starts_with("//") {
        back.to_string()
    } else {
        format!("/mail?folder={}", url_encode(folder))
    };
    Ok(Redirect::to(&back).into_response())
}

/// Applies `what` to `uids` of `folder`; returns what happened, for the status line.
pub async fn apply(
    app: &AppState,
    user: &User,
    folder: &str,
    uids: &[Uid],
    what: &str,
    target: &str,
) -> WebResult<String> {
    let store = &app.store;
    let mailbox = store.mailbox(user.account.id, folder).await?;
    let empty = what == "empty";
    if uids.is_empty() && !empty {
        return Err(WebError::bad_request("Select one or more messages first."));
    }
    let flag = |op: FlagOp, f: SystemFlags| (op, Flags::system(f));
    let n = uids.len();
    let change = match what {
        "read" => Some(flag(FlagOp::Add, SystemFlags::SEEN)),
        "unread" => Some(flag(FlagOp::Remove, SystemFlags::SEEN)),
        "flag" => Some(flag(FlagOp::Add, SystemFlags::FLAGGED)),
        "unflag" => Some(flag(FlagOp::Remove, SystemFlags::FLAGGED)),
        _ => None,
    };
    if let Some((op, flags)) = change {
        store.store_flags(mailbox.id, uids, op, &flags, None).await?;
        return Ok(format!("{n} updated"));
    }
    let special = |use_: SpecialUse| async move {
        let all = store.mailboxes(user.account.id).await?;
        all.into_iter()
            .find(|m| m.special_use == Some(use_))
            .ok_or_else(|| WebError::bad_request(format!("There is no {} folder; create one first.", use_.attribute())))
    };
    match what {
        "move" => {
            if target.is_empty() {
                return Err(WebError::bad_request("Choose the folder to move to."));
            }
            let to = store.mailbox(user.account.id, target).await?;
            if to.id != mailbox.id {
                store.move_messages(mailbox.id, uids, to.id).await?;
            }
            Ok(format!("{n} moved to {}", to.name))
        }
        "delete" => {
            // In Trash (and Junk) delete means gone; elsewhere it means "to Trash".
            let trash = special(SpecialUse::Trash).await?;
            if mailbox.id == trash.id || mailbox.special_use == Some(SpecialUse::Junk) {
                store
                    .expunge(mailbox.id, tern_store::Expunge::Uids(uids.to_vec()))
                    .await?;
                Ok(format!("{n} deleted"))
            } else {
                store.move_messages(mailbox.id, uids, trash.id).await?;
                Ok(format!("{n} moved to Trash"))
            }
        }
        "junk" => {
            let junk = special(SpecialUse::Junk).await?;
            mark_junk(app, mailbox.id, uids, true).await?;
            if junk.id != mailbox.id {
                store.move_messages(mailbox.id, uids, junk.id).await?;
            }
            Ok(format!("{n} marked as junk"))
        }
        "notjunk" => {
            mark_junk(app, mailbox.id, uids, false).await?;
            if mailbox.special_use == Some(SpecialUse::Junk) {
                let inbox = store.mailbox(user.account.id, "INBOX").await?;
                store.move_messages(mailbox.id, uids, inbox.id).await?;
            }
            Ok(format!("{n} marked as not junk"))
        }
        "empty" => {
            if !matches!(mailbox.special_use, Some(SpecialUse::Trash | SpecialUse::Junk)) {
                return Err(WebError::bad_request("Only Trash and Junk can be emptied."));
            }
            let all: Vec<Uid> = store.messages(mailbox.id).await?.into_iter().map(|m| m.uid).collect();
            let gone = store.expunge(mailbox.id, tern_store::Expunge::Uids(all)).await?;
            Ok(format!("{} deleted for good", gone.len()))
        }
        other => Err(WebError::bad_request(format!("Unknown action \"{other}\"."))),
    }
}

/// Sets `$Junk` and clears `$NotJunk`, or the reverse: the keywords that tell spam
/// filters and other clients what the user decided (RFC 9051 §2.3.2, IANA keywords).
async fn mark_junk(app: &AppState, mailbox: MailboxId, uids: &[Uid], junk: bool) -> WebResult<()> {
    let (set, clear) = if junk {
        ("$Junk", "$NotJunk")
    } else {
        ("$NotJunk", "$Junk")
    };
    app.store
        .store_flags(mailbox, uids, FlagOp::Add, &Flags::from_names([set]), None)
        .await?;
    app.store
        .store_flags(mailbox, uids, FlagOp::Remove, &Flags::from_names([clear]), None)
        .await?;
    Ok(())
}
