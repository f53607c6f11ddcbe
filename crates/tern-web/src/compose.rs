//! Writing mail: new messages, reply, reply-all, forward (inline or as an attachment),
//! drafts, and sending.
//!
//! Sending goes through Tern's submission path (`SmtpServer::submit`): the same sender
//! checks, rate limits, DKIM signature, queue and local delivery as a desktop client
//! sending on port 587. The copy filed in Sent keeps the Bcc field; the copy sent does
//! not (RFC 5322 §3.6.3).
//!
//! Attachments: new files come with the form; attachments carried over (a forwarded
//! message's, or a saved draft's) are named as parts of a *source* message and copied
//! from it. Saving a draft makes the draft the source of everything attached so far,
//! and the page script then lists the draft's attachments instead of its file picker's.

use askama::Template;
use axum::Router;
use axum::extract::{Multipart, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address as BuiltAddress;
use mail_parser::MessageParser;
use serde::Deserialize;
use tern_store::{FlagOp, Flags, ListQuery, Mailbox, NewMessage, SpecialUse, SystemFlags, Uid};
use tracing::info;

use crate::AppState;
use crate::mime::{self, Body, Person};
use crate::page::{self, Frame, WebError, WebResult};
use crate::session::{User, check_form_token};
use crate::settings::Prefs;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/compose", get(form))
        .route("/compose/send", post(send))
        .route("/compose/draft", post(save_draft))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ComposeParams {
    /// reply | all | forward | attach | draft
    mode: String,
    folder: String,
    uid: Option<Uid>,
    to: String,
}

#[derive(Template)]
#[template(path = "compose.html")]
struct ComposePage {
    frame: Frame,
    identities: Vec<(String, bool)>,
    to: String,
    cc: String,
    bcc: String,
    subject: String,
    text: String,
    in_reply_to: String,
    references: String,
    source_folder: String,
    source_uid: String,
    /// Attachments carried over from the source: (part, name, size).
    kept: Vec<(u32, String, String)>,
    attach_message: bool,
    /// The draft this compose replaces when saved again or sent.
    draft_uid: String,
    /// What the source was, for the heading.
    heading: String,
    max_upload: String,
}

/// The addresses the user may send as: the account and its aliases.
async fn identities(app: &AppState, user: &User) -> WebResult<Vec<String>> {
    let mut out = vec![user.account.address.clone()];
    let domain = user.account.address.rsplit('@').next().unwrap_or("");
    for alias in app.store.aliases(Some(domain)).await? {
        if alias.target.eq_ignore_ascii_case(&user.account.address) {
            out.push(alias.address);
        }
    }
    Ok(out)
}

fn people(list: &[Person]) -> String {
    list.iter().map(Person::display).collect::<Vec<_>>().join(", ")
}

/// `> `-quotes a text for a reply.
fn quote(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.is_empty() {
                ">".to_string()
            } else {
                format!("> {l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The text of a message body, for quoting.
fn body_text(body: &Body) -> String {
    match body {
        Body::Text(t) => t.clone(),
        Body::Html(h) => mail_parser::decoders::html::html_to_text(h),
    }
}

/// Adds `prefix` ("Re: ", "Fwd: ") unless the subject has it already.
fn prefixed(prefix: &str, subject: &str) -> String {
    let lower = subject.to_ascii_lowercase();
    if lower.starts_with(&prefix.to_ascii_lowercase()) {
        subject.to_string()
    } else {
        format!("{prefix}{subject}")
    }
}

async fn form(State(app): State<AppState>, user: User, Query(params): Query<ComposeParams>) -> WebResult {
    let prefs = Prefs::load(&app, user.account.id).await;
    let own = identities(&app, &user).await?;
    let signature = if prefs.signature.trim().is_empty() {
        String::new()
    } else {
        format!("\n\n-- \n{}", prefs.signature.trim_end())
    };
    let mut page = ComposePage {
        frame: page::frame(&app, &user, "").await?,
        identities: Vec::new(),
        to: params.to.clone(),
        cc: String::new(),
        bcc: String::new(),
        subject: String::new(),
        text: signature.clone(),
        in_reply_to: String::new(),
        references: String::new(),
        source_folder: String::new(),
        source_uid: String::new(),
        kept: Vec::new(),
        attach_message: false,
        draft_uid: String::new(),
        heading: "New message".into(),
        max_upload: page::human_size(app.config.max_upload as u64),
    };
    let mut from = own[0].clone();
    if let (Some(uid), false) = (params.uid, params.folder.is_empty()) {
        let mailbox = app.store.mailbox(user.account.id, &params.folder).await?;
        let raw = app.store.read_message(mailbox.id, uid).await?;
        let view = mime::view(&raw);
        // Reply from the address the message was sent to, when it is one of ours.
        if let Some(ours) = own.iter().find(|a| {
            view.to
                .iter()
                .chain(view.cc.iter())
                .any(|p| p.address.eq_ignore_ascii_case(a))
        }) {
            from = ours.clone();
        }
        let when = page::full_date(view.date.unwrap_or(0));
        let who = view.from.first().map(Person::display).unwrap_or_default();
        page.source_folder = mailbox.name.clone();
        page.source_uid = uid.to_string();
        match params.mode.as_str() {
            "reply" | "all" => {
                let reply_to = if view.reply_to.is_empty() {
                    &view.from
                } else {
                    &view.reply_to
                };
                page.to = people(reply_to);
                if params.mode == "all" {
                    let others: Vec<Person> = view
                        .to
                        .iter()
                        .chain(view.cc.iter())
                        .filter(|p| !own.iter().any(|a| a.eq_ignore_ascii_case(&p.address)))
                        .filter(|p| !reply_to.iter().any(|r| r.address.eq_ignore_ascii_case(&p.address)))
                        .cloned()
                        .collect();
                    page.cc = people(&others);
                }
                page.subject = prefixed("Re: ", &view.subject);
                // RFC 5322 §3.6.4: In-Reply-To is the parent; References the parent's
                // References plus the parent.
                if let Some(id) = &view.message_id {
                    page.in_reply_to = format!("<{id}>");
                    let mut refs: Vec<String> = view.references.iter().map(|r| format!("<{r}>")).collect();
                    refs.push(format!("<{id}>"));
                    page.references = refs.join(" ");
                }
                page.text = format!(
                    "{signature}\n\nOn {when}, {who} wrote:\n{}",
                    quote(&body_text(&view.body))
                );
                page.heading = format!("Reply to {who}");
                page.source_folder.clear();
                page.source_uid.clear();
            }
            "forward" | "attach" => {
                page.subject = prefixed("Fwd: ", &view.subject);
                if params.mode == "attach" {
                    page.attach_message = true;
                    page.text = signature.clone();
                } else {
                    page.text = format!(
                        "{signature}\n\n---------- Forwarded message ----------\nFrom: {who}\nDate: {when}\nSubject: {}\nTo: {}\n\n{}",
                        view.subject,
                        people(&view.to),
                        body_text(&view.body)
                    );
                    page.kept = view
                        .attachments
                        .iter()
                        .map(|a| (a.part, a.name.clone(), page::human_size(a.size)))
                        .collect();
                }
                page.heading = format!("Forward \"{}\"", view.subject);
            }
            "draft" => {
                page.to = people(&view.to);
                page.cc = people(&view.cc);
                page.subject = view.subject.clone();
                page.text = body_text(&view.body);
                page.kept = view
                    .attachments
                    .iter()
                    .map(|a| (a.part, a.name.clone(), page::human_size(a.size)))
                    .collect();
                if let Some(sender) = view.from.first() {
                    from = sender.address.clone();
                }
                let parsed = mime::parse(&raw);
                let header = |name: &str| {
                    parsed
                        .as_ref()
                        .and_then(|m| m.header_raw(name))
                        .map(|v| v.trim().to_string())
                        .unwrap_or_default()
                };
                page.in_reply_to = header("In-Reply-To");
                page.references = header("References");
                page.bcc = header("Bcc");
                page.draft_uid = uid.to_string();
                page.heading = "Draft".into();
            }
            _ => {}
        }
    }
    page.identities = own
        .into_iter()
        .map(|a| {
            let selected = a.eq_ignore_ascii_case(&from);
            (a, selected)
        })
        .collect();
    Ok(page::render(&page))
}

/// What a compose form holds.
#[derive(Debug, Default)]
struct Draft {
    csrf: String,
    from: String,
    to: String,
    cc: String,
    bcc: String,
    subject: String,
    text: String,
    /// From the rich-text editor, when used.
    html: String,
    in_reply_to: String,
    references: String,
    source_folder: String,
    source_uid: Option<Uid>,
    keep_parts: Vec<u32>,
    attach_message: bool,
    draft_uid: Option<Uid>,
    /// New files: (name, content type, bytes).
    files: Vec<(String, String, Vec<u8>)>,
}

async fn read_form(app: &AppState, mut multipart: Multipart) -> WebResult<Draft> {
    let mut draft = Draft::default();
    let mut uploaded = 0usize;
    let bad =
        |e: axum::extract::multipart::MultipartError| WebError::bad_request(format!("The form could not be read: {e}"));
    while let Some(field) = multipart.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or("").to_string();
        if name == "file" {
            let file_name = field.file_name().unwrap_or("").to_string();
            let content_type = field.content_type().unwrap_or("application/octet-stream").to_string();
            let bytes = field.bytes().await.map_err(bad)?;
            if file_name.is_empty() && bytes.is_empty() {
                continue; // an empty file input
            }
            uploaded += bytes.len();
            if uploaded > app.config.max_upload {
                return Err(WebError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "The attachments are larger than {} in all; send big files another way.",
                        page::human_size(app.config.max_upload as u64)
                    ),
                ));
            }
            draft.files.push((file_name, content_type, bytes.to_vec()));
            continue;
        }
        let value = field.text().await.map_err(bad)?;
        match name.as_str() {
            "csrf" => draft.csrf = value,
            "from" => draft.from = value,
            "to" => draft.to = value,
            "cc" => draft.cc = value,
            "bcc" => draft.bcc = value,
            "subject" => draft.subject = value,
            "text" => draft.text = value,
            "html" => draft.html = value,
            "in_reply_to" => draft.in_reply_to = value,
            "references" => draft.references = value,
            "source_folder" => draft.source_folder = value,
            "source_uid" => draft.source_uid = value.parse().ok(),
            "keep_part" => draft.keep_parts.extend(value.parse::<u32>().ok()),
            "attach_message" => draft.attach_message = value == "1",
            "draft_uid" => draft.draft_uid = value.parse().ok(),
            _ => {}
        }
    }
    Ok(draft)
}

/// Parses an address field as people type it: `Bob <bob@example.org>, carol@example.org`.
fn parse_addresses(field: &str, label: &str) -> WebResult<Vec<(Option<String>, String)>> {
    let field = field.trim().trim_end_matches([',', ';']);
    if field.is_empty() {
        return Ok(Vec::new());
    }
    let header = format!("To: {}\r\n\r\n", field.replace(';', ",").replace(['\r', '\n'], " "));
    let parsed = MessageParser::default().parse_headers(header.as_bytes());
    let mut out = Vec::new();
    if let Some(list) = parsed.as_ref().and_then(|m| m.to()) {
        for a in list.iter() {
            let Some(address) = a.address.as_deref() else { continue };
            let address = address.trim();
            let valid = address
                .rsplit_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !address.contains(char::is_whitespace));
            if !valid {
                return Err(WebError::bad_request(format!(
                    "\"{address}\" in {label} is not an email address."
                )));
            }
            out.push((
                a.name.as_deref().map(str::to_string).filter(|n| !n.is_empty()),
                address.to_string(),
            ));
        }
    }
    if out.is_empty() {
        return Err(WebError::bad_request(format!("{label} holds no email address.")));
    }
    Ok(out)
}

fn built(list: &[(Option<String>, String)]) -> BuiltAddress<'static> {
    let items: Vec<BuiltAddress<'static>> = list
        .iter()
        .map(|(name, address)| match name {
            Some(n) => BuiltAddress::new_address(Some(n.clone()), address.clone()),
            None => BuiltAddress::new_address(None::<String>, address.clone()),
        })
        .collect();
    BuiltAddress::new_list(items)
}

/// Message ids from a header value: `<a@b> <c@d>` → ["a@b", "c@d"].
fn message_ids(value: &str) -> Vec<String> {
    value
        .split(|c: char| c.is_whitespace() || c == ',')
        .map(|s| s.trim().trim_start_matches('<').trim_end_matches('>'))
        .filter(|s| s.contains('@'))
        .map(str::to_string)
        .collect()
}

/// The message as it will be filed (with Bcc) and as it will be sent (without).
struct Built {
    filed: Vec<u8>,
    sent: Vec<u8>,
    recipients: Vec<String>,
    sender: String,
}

async fn build(app: &AppState, user: &User, draft: &Draft, for_sending: bool) -> WebResult<Built> {
    let own = identities(app, user).await?;
    let sender = own
        .iter()
        .find(|a| a.eq_ignore_ascii_case(draft.from.trim()))
        .cloned()
        .unwrap_or_else(|| own[0].clone());
    let to = parse_addresses(&draft.to, "To")?;
    let cc = parse_addresses(&draft.cc, "Cc")?;
    let bcc = parse_addresses(&draft.bcc, "Bcc")?;
    let recipients: Vec<String> = to.iter().chain(&cc).chain(&bcc).map(|(_, a)| a.clone()).collect();
    if for_sending && recipients.is_empty() {
        return Err(WebError::bad_request("Add at least one recipient."));
    }
    // Attachments carried over from the source message.
    let mut carried: Vec<(String, String, Vec<u8>)> = Vec::new();
    if let (Some(uid), false) = (draft.source_uid, draft.source_folder.is_empty()) {
        let mailbox = app.store.mailbox(user.account.id, &draft.source_folder).await?;
        let raw = app.store.read_message(mailbox.id, uid).await?;
        let view = mime::view(&raw);
        for part in &draft.keep_parts {
            if let (Some(a), Some((content_type, bytes))) = (
                view.attachments.iter().find(|a| a.part == *part),
                mime::part_bytes(&raw, *part),
            ) {
                carried.push((a.name.clone(), content_type, bytes));
            }
        }
        if draft.attach_message {
            let name = if view.subject.trim().is_empty() {
                "message".into()
            } else {
                view.subject.clone()
            };
            carried.push((format!("{name}.eml"), "message/rfc822".into(), raw));
        }
    }
    let display = user.account.display_name.clone().filter(|n| !n.trim().is_empty());
    let domain = sender.rsplit('@').next().unwrap_or("localhost").to_string();
    let message_id = format!("{}@{domain}", hex::encode(rand::random::<[u8; 12]>()));
    let now = chrono::Utc::now().timestamp();
    let make = |with_bcc: bool| -> WebResult<Vec<u8>> {
        let mut m = MessageBuilder::new()
            .from(match &display {
                Some(n) => BuiltAddress::new_address(Some(n.clone()), sender.clone()),
                None => BuiltAddress::new_address(None::<String>, sender.clone()),
            })
            .subject(draft.subject.trim().to_string())
            .date(now)
            .message_id(message_id.clone())
            .header("User-Agent", mail_builder::headers::text::Text::new("Tern webmail"));
        if !to.is_empty() {
            m = m.to(built(&to));
        }
        if !cc.is_empty() {
            m = m.cc(built(&cc));
        }
        if with_bcc && !bcc.is_empty() {
            m = m.bcc(built(&bcc));
        }
        let in_reply_to = message_ids(&draft.in_reply_to);
        if !in_reply_to.is_empty() {
            m = m.in_reply_to(in_reply_to);
        }
        let references = message_ids(&draft.references);
        if !references.is_empty() {
            m = m.references(references);
        }
        let text = draft.text.replace("\r\n", "\n");
        if draft.html.trim().is_empty() {
            m = m.text_body(text);
        } else {
            // The rich editor's HTML is the user's own, but it is cleaned all the same:
            // what Tern sends must not carry script either.
            let html = crate::sanitize::sanitize_html(
                &draft.html,
                &crate::sanitize::Options {
                    allow_remote: true,
                    cid_url: &|_| None,
                },
            )
            .html;
            let plain = mail_parser::decoders::html::html_to_text(&html);
            m = m
                .text_body(plain)
                .html_body(format!("<!doctype html><html><body>{html}</body></html>"));
        }
        for (name, content_type, bytes) in carried.iter().chain(draft.files.iter()) {
            if content_type.eq_ignore_ascii_case("message/rfc822") {
                // RFC 2046 §5.2.1: a message/rfc822 body is 7bit, 8bit or binary, never
                // base64; the attached message goes as it is.
                let encoding = if bytes.is_ascii() { "7bit" } else { "8bit" };
                let part = mail_builder::mime::MimePart::new(content_type.clone(), bytes.clone())
                    .attachment(name.clone())
                    .transfer_encoding(encoding);
                m.attachments.get_or_insert_with(Vec::new).push(part);
            } else {
                m = m.attachment(content_type.clone(), name.clone(), bytes.clone());
            }
        }
        m.write_to_vec()
            .map_err(|e| WebError::internal(format!("cannot build the message: {e}")))
    };
    Ok(Built {
        filed: make(true)?,
        sent: make(false)?,
        recipients,
        sender,
    })
}

async fn special(app: &AppState, user: &User, use_: SpecialUse) -> WebResult<Mailbox> {
    app.store
        .mailboxes(user.account.id)
        .await?
        .into_iter()
        .find(|m| m.special_use == Some(use_))
        .ok_or_else(|| WebError::bad_request(format!("There is no {} folder; create one first.", use_.attribute())))
}

/// Removes the previous save of a draft.
async fn drop_draft(app: &AppState, user: &User, uid: Option<Uid>) -> WebResult<()> {
    if let Some(uid) = uid {
        let drafts = special(app, user, SpecialUse::Drafts).await?;
        app.store
            .expunge(drafts.id, tern_store::Expunge::Uids(vec![uid]))
            .await?;
    }
    Ok(())
}

async fn send(State(app): State<AppState>, user: User, multipart: Multipart) -> WebResult {
    let draft = read_form(&app, multipart).await?;
    check_form_token(&user, &draft.csrf)?;
    let message = build(&app, &user, &draft, true).await?;
    let reply = app
        .smtp
        .submit(
            user.account.clone(),
            user.client.peer,
            &message.sender,
            &message.recipients,
            message.sent,
        )
        .await
        .map_err(|refusal| {
            let status = if refusal.code >= 500 {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            WebError::new(status, format!("Not sent: {}", refusal.text))
        })?;
    info!(user = %user.account.address, recipients = message.recipients.len(), reply = %reply.text, "webmail: sent");
    // File the sent copy (read), mark what it answers or forwards.
    let sent = special(&app, &user, SpecialUse::Sent).await?;
    let mut copy = NewMessage::new(message.filed);
    copy.flags = Flags::system(SystemFlags::SEEN);
    app.store.append(sent.id, vec![copy]).await?;
    drop_draft(&app, &user, draft.draft_uid).await?;
    if !draft.in_reply_to.is_empty() {
        mark_answered(&app, &user, &draft.in_reply_to, &draft.subject).await;
    }
    // What was forwarded gets $Forwarded (RFC 5550 §5.9, the IANA keyword).
    if let (Some(uid), false) = (draft.source_uid, draft.source_folder.is_empty())
        && let Ok(mailbox) = app.store.mailbox(user.account.id, &draft.source_folder).await
        && mailbox.special_use != Some(SpecialUse::Drafts)
    {
        let _ = app
            .store
            .store_flags(
                mailbox.id,
                &[uid],
                FlagOp::Add,
                &Flags::from_names(["$Forwarded"]),
                None,
            )
            .await;
    }
    Ok(Redirect::to("/mail?folder=INBOX&sent=1").into_response())
}

/// Sets \Answered on the message a reply answers: the INBOX message of the reply's
/// conversation (the same base subject, RFC 5256 §2.1) whose Message-ID the reply's
/// In-Reply-To names. Message-IDs are not in the full-text index, so the conversation
/// narrows the search instead.
async fn mark_answered(app: &AppState, user: &User, in_reply_to: &str, subject: &str) {
    let Some(id) = message_ids(in_reply_to).into_iter().next() else {
        return;
    };
    let Ok(inbox) = app.store.mailbox(user.account.id, "INBOX").await else {
        return;
    };
    let header = format!("Subject: {}\r\n\r\n", subject.replace(['\r', '\n'], " "));
    let base = MessageParser::default()
        .parse_headers(header.as_bytes())
        .and_then(|m| m.thread_name().map(|s| s.trim().to_string()))
        .unwrap_or_default();
    if base.is_empty() {
        return;
    }
    let query = ListQuery {
        limit: 1000,
        same_subject: Some(base),
        ..Default::default()
    };
    let Ok(conversation) = app.store.list_page(inbox.id, &query).await else {
        return;
    };
    let hits: Vec<Uid> = conversation.items.iter().map(|item| item.summary.uid).collect();
    if let Ok(metadata) = app.store.metadata(inbox.id, &hits).await {
        let answered: Vec<Uid> = metadata
            .into_iter()
            .filter(|(_, m)| m.message_id.as_deref() == Some(id.as_str()))
            .map(|(uid, _)| uid)
            .collect();
        if !answered.is_empty() {
            let _ = app
                .store
                .store_flags(
                    inbox.id,
                    &answered,
                    FlagOp::Add,
                    &Flags::system(SystemFlags::ANSWERED),
                    None,
                )
                .await;
        }
    }
}

/// Saves the form as a draft (the page script calls this every few seconds while the
/// user types). Answers JSON: the draft's UID and its attachments, which from now on
/// are carried from the draft.
async fn save_draft(
    State(app): State<AppState>,
    user: User,
    headers: axum::http::HeaderMap,
    multipart: Multipart,
) -> WebResult {
    let draft = read_form(&app, multipart).await?;
    check_form_token(&user, &draft.csrf)?;
    let message = build(&app, &user, &draft, false).await?;
    let drafts = special(&app, &user, SpecialUse::Drafts).await?;
    let mut copy = NewMessage::new(message.filed.clone());
    copy.flags = Flags::system(SystemFlags::SEEN.union(SystemFlags::DRAFT));
    let appended = app.store.append(drafts.id, vec![copy]).await?;
    let uid = appended
        .first()
        .map(|a| a.uid)
        .ok_or_else(|| WebError::internal("the draft was not saved"))?;
    drop_draft(&app, &user, draft.draft_uid.filter(|old| *old != uid)).await?;
    let attachments: Vec<serde_json::Value> = mime::view(&message.filed)
        .attachments
        .iter()
        .map(|a| serde_json::json!({ "part": a.part, "name": a.name, "size": page::human_size(a.size) }))
        .collect();
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    if !wants_json {
        // The form without the page script: show the saved draft.
        let target = format!("/mail/read?folder={}&uid={uid}", page::url_encode(&drafts.name));
        return Ok(Redirect::to(&target).into_response());
    }
    let body = serde_json::json!({
        "draft_uid": uid,
        "source_folder": drafts.name,
        "source_uid": uid,
        "attachments": attachments,
    });
    Ok(([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response())
}
