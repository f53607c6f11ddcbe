//! Reading one message: the page with its headers, attachments and actions; the body
//! document shown in a sandboxed frame; attachment downloads; the raw source.
//!
//! An email's HTML never runs in Tern's origin. It is sanitised (`sanitize`), then served
//! as its own document under a Content-Security-Policy that sandboxes it (no scripts, an
//! opaque origin, so no cookies and no access to the page around it), allows no script,
//! no plugin, no form, and images only from data: URLs — plus http(s) when the user
//! chose to load remote images for this message or sender. Inline (cid:) images are
//! embedded as data: URLs, so the sandboxed frame never needs the session cookie.

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde::Deserialize;
use tern_store::{FlagOp, Flags, ListQuery, Mailbox, SpecialUse, SystemFlags, Uid};

use crate::AppState;
use crate::mail::{field, form_pairs};
use crate::mime::{self, Attachment, Body, Person};
use crate::page::{self, Frame, WebError, WebResult, url_encode};
use crate::sanitize::{self, Options};
use crate::session::User;
use crate::settings::Prefs;

/// Inline images up to this size are embedded in the body; larger ones are listed as
/// attachments only.
const MAX_INLINE_IMAGE: usize = 5 * 1024 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/mail/read", get(read))
        .route("/mail/body", get(body))
        .route("/mail/part", get(part))
        .route("/mail/raw", get(raw))
        .route("/mail/remote-images", post(allow_remote_images))
}

#[derive(Debug, Deserialize)]
pub struct MessageParams {
    pub folder: String,
    pub uid: Uid,
    #[serde(default)]
    pub remote: String,
    #[serde(default)]
    pub conv: String,
    #[serde(default)]
    pub part: u32,
}

/// The user's mailbox and the message's bytes. A mailbox is only ever looked up among
/// the user's own, so one user can never read another's mail by changing a URL.
async fn load(app: &AppState, user: &User, folder: &str, uid: Uid) -> WebResult<(Mailbox, Vec<u8>)> {
    let mailbox = app.store.mailbox(user.account.id, folder).await?;
    let raw = app.store.read_message(mailbox.id, uid).await?;
    Ok((mailbox, raw))
}

#[derive(Template)]
#[template(path = "read.html")]
struct ReadPage {
    frame: Frame,
    folder: String,
    uid: Uid,
    subject: String,
    from: Vec<Person>,
    to: String,
    cc: String,
    reply_to: String,
    date: String,
    flagged: bool,
    attachments: Vec<AttachmentRow>,
    /// Remote images were removed from the body.
    blocked_remote: bool,
    body_url: String,
    sender: String,
    targets: Vec<String>,
    is_junk: bool,
    is_drafts: bool,
    back: String,
    /// Other messages of the conversation (conversation view).
    conversation: Vec<ConversationRow>,
}

struct AttachmentRow {
    name: String,
    size: String,
    content_type: String,
    url: String,
}

struct ConversationRow {
    href: String,
    from: String,
    date: String,
    current: bool,
    unread: bool,
}

async fn read(State(app): State<AppState>, user: User, Query(params): Query<MessageParams>) -> WebResult {
    let (mailbox, raw) = load(&app, &user, &params.folder, params.uid).await?;
    let view = mime::view(&raw);
    let summary = app
        .store
        .messages_by_uid(mailbox.id, &[params.uid])
        .await?
        .pop()
        .ok_or_else(|| WebError::not_found("The message is gone (moved or deleted)."))?;
    // Opening a message reads it (RFC 9051 §6.4.5: as a FETCH of the body would).
    if !summary.flags.is_seen() {
        app.store
            .store_flags(
                mailbox.id,
                &[params.uid],
                FlagOp::Add,
                &Flags::system(SystemFlags::SEEN),
                None,
            )
            .await?;
    }
    let prefs = Prefs::load(&app, user.account.id).await;
    let sender = view.from.first().map(|p| p.address.to_lowercase()).unwrap_or_default();
    let remote_shown = params.remote == "1" || prefs.remote_images_from(&sender);
    let blocked_remote = match &view.body {
        Body::Html(html) => {
            !remote_shown
                && sanitize::sanitize_html(
                    html,
                    &Options {
                        allow_remote: false,
                        cid_url: &|_| None,
                    },
                )
                .blocked_remote
                    > 0
        }
        Body::Text(_) => false,
    };
    let folder_q = url_encode(&mailbox.name);
    let message_q = format!("folder={folder_q}&uid={}", params.uid);
    let attachments = view
        .attachments
        .iter()
        .filter(|a| !a.inline)
        .map(|a: &Attachment| AttachmentRow {
            name: a.name.clone(),
            size: page::human_size(a.size),
            content_type: a.content_type.clone(),
            url: format!("/mail/part?{message_q}&part={}", a.part),
        })
        .collect();
    let conversation = if params.conv == "1" {
        conversation_rows(&app, &mailbox, params.uid).await?
    } else {
        Vec::new()
    };
    let frame = page::frame(&app, &user, &mailbox.name).await?;
    let targets = frame
        .folders
        .iter()
        .filter(|f| f.name != mailbox.name)
        .map(|f| f.name.clone())
        .collect();
    let join = |people: &[Person]| people.iter().map(Person::display).collect::<Vec<_>>().join(", ");
    let mut back = format!("/mail?folder={folder_q}");
    if params.conv == "1" {
        back.push_str("&conv=1");
    }
    Ok(page::render(&ReadPage {
        frame,
        folder: mailbox.name.clone(),
        uid: params.uid,
        subject: if view.subject.trim().is_empty() {
            "(no subject)".into()
        } else {
            view.subject.clone()
        },
        to: join(&view.to),
        cc: join(&view.cc),
        reply_to: join(&view.reply_to),
        from: view.from.clone(),
        date: page::full_date(view.date.unwrap_or(summary.internal_date)),
        flagged: summary.flags.system.contains(SystemFlags::FLAGGED),
        attachments,
        blocked_remote,
        body_url: format!("/mail/body?{message_q}{}", if remote_shown { "&remote=1" } else { "" }),
        sender,
        targets,
        is_junk: mailbox.special_use == Some(SpecialUse::Junk),
        is_drafts: mailbox.special_use == Some(SpecialUse::Drafts),
        back,
        conversation,
    }))
}

/// The messages of the folder sharing the message's conversation, oldest first.
async fn conversation_rows(app: &AppState, mailbox: &Mailbox, uid: Uid) -> WebResult<Vec<ConversationRow>> {
    let metadata = app.store.metadata(mailbox.id, &[uid]).await?;
    let Some((_, m)) = metadata.into_iter().next() else {
        return Ok(Vec::new());
    };
    if m.base_subject.is_empty() {
        return Ok(Vec::new());
    }
    let page = app
        .store
        .list_page(
            mailbox.id,
            &ListQuery {
                limit: 200,
                same_subject: Some(m.base_subject.clone()),
                ..Default::default()
            },
        )
        .await?;
    if page.items.len() < 2 {
        return Ok(Vec::new());
    }
    let now = chrono::Utc::now().timestamp();
    Ok(page
        .items
        .iter()
        .map(|item| ConversationRow {
            href: format!(
                "/mail/read?folder={}&uid={}&conv=1",
                url_encode(&mailbox.name),
                item.summary.uid
            ),
            from: crate::mail::address_label(&item.from),
            date: page::list_date(item.summary.internal_date, now),
            current: item.summary.uid == uid,
            unread: !item.summary.flags.is_seen(),
        })
        .collect())
}

/// The policy of a message body document. `sandbox` without allow-scripts or
/// allow-same-origin holds even if the document is opened on its own.
fn body_csp(remote: bool) -> String {
    let images = if remote { "data: https: http:" } else { "data:" };
    format!(
        "sandbox allow-popups allow-popups-to-escape-sandbox; default-src 'none'; style-src 'unsafe-inline'; \
         img-src {images}; font-src data:; form-action 'none'; base-uri 'none'; frame-ancestors 'self'"
    )
}

/// The body of a message as a document of its own, for the reading frame.
async fn body(State(app): State<AppState>, user: User, Query(params): Query<MessageParams>) -> WebResult {
    let (_, raw) = load(&app, &user, &params.folder, params.uid).await?;
    let view = mime::view(&raw);
    let remote = params.remote == "1";
    let content = match &view.body {
        Body::Html(html) => {
            let parsed = mime::parse(&raw);
            let cid_url = |cid: &str| -> Option<String> {
                let message = parsed.as_ref()?;
                let wanted = cid.trim().trim_start_matches('<').trim_end_matches('>');
                let a = view
                    .attachments
                    .iter()
                    .find(|a| a.content_id.as_deref() == Some(wanted) && safe_image(&a.content_type))?;
                let bytes = message.parts.get(a.part as usize)?.contents();
                (bytes.len() <= MAX_INLINE_IMAGE).then(|| {
                    format!(
                        "data:{};base64,{}",
                        a.content_type,
                        base64::engine::general_purpose::STANDARD.encode(bytes)
                    )
                })
            };
            sanitize::sanitize_html(
                html,
                &Options {
                    allow_remote: remote,
                    cid_url: &cid_url,
                },
            )
            .html
        }
        Body::Text(text) => format!("<div class=\"plain\">{}</div>", sanitize::text_to_html(text)),
    };
    let document = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><style>{BODY_STYLE}</style></head><body>{content}</body></html>"
    );
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        document,
    )
        .into_response();
    if let Ok(csp) = HeaderValue::from_str(&body_csp(remote)) {
        response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    Ok(response)
}

/// Base styles of a body document (the message's own styles come after and win).
const BODY_STYLE: &str = "body{margin:0;padding:12px 16px;font:15px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;\
     color:#1d2330;word-wrap:break-word;overflow-wrap:anywhere}img{max-width:100%;height:auto}\
     .plain{font-size:15px}\
     blockquote{margin:0 0 0 .5em;padding-left:.8em;border-left:3px solid #c9d1e0;color:#4a5468}\
     a{color:#1a56c8}table{max-width:100%}";

/// Image types a browser shows without running anything (no SVG: it can carry script).
fn safe_image(content_type: &str) -> bool {
    matches!(content_type, "image/png" | "image/jpeg" | "image/gif" | "image/webp")
}

/// An attachment, downloaded with its type and file name.
async fn part(State(app): State<AppState>, user: User, Query(params): Query<MessageParams>) -> WebResult {
    let (_, raw) = load(&app, &user, &params.folder, params.uid).await?;
    let view = mime::view(&raw);
    let attachment = view
        .attachments
        .iter()
        .find(|a| a.part == params.part)
        .ok_or_else(|| WebError::not_found("The message has no such attachment."))?;
    let (content_type, bytes) = mime::part_bytes(&raw, params.part)
        .ok_or_else(|| WebError::not_found("The message has no such attachment."))?;
    Ok(download(&content_type, &attachment.name, bytes))
}

/// A file download: always `attachment` (never rendered in Tern's origin), sandboxed if
/// opened anyway, and never sniffed as another type.
pub fn download(content_type: &str, name: &str, bytes: Vec<u8>) -> Response {
    let content_type =
        HeaderValue::from_str(content_type).unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    let mut response = (StatusCode::OK, bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type);
    if let Ok(v) = HeaderValue::from_str(&content_disposition(name)) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// `attachment; filename="plain ASCII"; filename*=UTF-8''percent-encoded` (RFC 6266 §4.3):
/// every browser gets the real name, including non-ASCII ones.
pub fn content_disposition(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '/' | '\\') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let ascii: String = clean
        .chars()
        .map(|c| if c.is_ascii() && c != '"' { c } else { '_' })
        .collect();
    format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{}",
        url_encode(&clean)
    )
}

/// "Show original": the message exactly as stored, as text.
async fn raw(State(app): State<AppState>, user: User, Query(params): Query<MessageParams>) -> WebResult {
    let (_, raw) = load(&app, &user, &params.folder, params.uid).await?;
    let mut response = (StatusCode::OK, raw).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    Ok(response)
}

/// "Always show images from this sender".
async fn allow_remote_images(State(app): State<AppState>, user: User, body: Bytes) -> WebResult {
    let pairs = form_pairs(&body);
    let sender = field(&pairs, "sender").trim().to_lowercase();
    if !sender.contains('@') {
        return Err(WebError::bad_request("No sender to trust."));
    }
    let mut prefs = Prefs::load(&app, user.account.id).await;
    if !prefs.remote_images.contains(&sender) {
        prefs.remote_images.push(sender);
        prefs.save(&app, user.account.id).await?;
    }
    let back = field(&pairs, "back");
    let back = if back.starts_with("/mail/read?") { back } else { "/mail" };
    Ok(Redirect::to(back).into_response())
}
