//! A POP3 source (RFC 1939), for old providers that offer nothing else: the maildrop
//! is copied into INBOX, and each message keeps its source UIDL (RFC 1939 §7) so POP3
//! clients left on "keep mail on server" do not download everything again after the
//! switch. Built on async-pop; STLS (RFC 2595 §4) is negotiated here, since async-pop
//! starts from a greeting.
//!
//! POP3 has no folders, flags or INTERNALDATE: messages arrive unflagged, dated by
//! their newest Received header (when the old server took them in), else their Date
//! header. The map's key is the UIDL.

use std::collections::HashSet;

use async_pop::response::types::DataType;
use async_pop::response::uidl::UidlResponse;
use tern_net::replay::Replayed;
use tern_store::{Expunge, Flags, MigratedMessage, StoreError};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::MigrateError;
use crate::connect::{self, SourceStream};
use crate::pass::{Copier, Incoming, Outcome, Shared};
use crate::source::{AuthMethod, Login, SourceSettings, TlsMode};
use crate::state::FolderState;

/// The map's folder name for a POP3 maildrop.
pub const MAILDROP: &str = "INBOX";

type Pop3Client = async_pop::Client<Replayed<SourceStream>>;

/// SASL PLAIN with an authorization identity (an admin opening a user's maildrop).
struct PlainAs {
    blob: String,
}

#[async_trait::async_trait]
impl async_pop::sasl::Authenticator for PlainAs {
    fn mechanism(&self) -> &str {
        "PLAIN"
    }
    fn auth(&self) -> Option<String> {
        Some(self.blob.clone())
    }
}

fn pop_err(host: &str, e: async_pop::error::Error) -> MigrateError {
    let text = e.message().to_string();
    if crate::is_throttling(&text) {
        MigrateError::Throttled {
            host: host.to_string(),
            reason: text,
        }
    } else {
        MigrateError::Protocol {
            host: host.to_string(),
            reason: text,
        }
    }
}

/// Connects, protects and logs in.
pub async fn connect(settings: &SourceSettings, login: &Login) -> Result<Pop3Client, MigrateError> {
    let host = settings.host.clone();
    let tcp = connect::tcp(settings).await?;
    let stream = match settings.tls {
        TlsMode::Implicit => Replayed::new(Vec::new(), connect::tls(settings, tcp).await?),
        TlsMode::None => Replayed::new(Vec::new(), SourceStream::Plain(tcp)),
        TlsMode::Starttls => {
            let io = |e: std::io::Error| MigrateError::Io(format!("{host}: {e}"));
            let mut reader = BufReader::new(tcp);
            let mut greeting = String::new();
            reader.read_line(&mut greeting).await.map_err(io)?;
            reader.get_mut().write_all(b"STLS\r\n").await.map_err(io)?;
            let mut answer = String::new();
            reader.read_line(&mut answer).await.map_err(io)?;
            if !answer.starts_with("+OK") {
                return Err(MigrateError::Tls {
                    host,
                    reason: format!("STLS refused: {}", answer.trim_end()),
                });
            }
            let tls = connect::tls(settings, reader.into_inner()).await?;
            // async-pop starts by reading a greeting: give it the one we already read.
            Replayed::new(greeting.into_bytes(), tls)
        }
    };
    let mut client = async_pop::new(stream).await.map_err(|e| pop_err(&host, e))?;
    let login_err = |e: async_pop::error::Error| MigrateError::Login {
        host: host.clone(),
        reason: e.message().to_string(),
    };
    match (settings.auth, &login.admin_user) {
        (AuthMethod::Plain, admin) => {
            let (authz, authc) = match admin {
                Some(a) => (login.user.as_str(), a.as_str()),
                None => ("", login.user.as_str()),
            };
            client
                .auth(PlainAs {
                    blob: format!("{authz}\0{authc}\0{}", login.secret()),
                })
                .await
                .map_err(login_err)?;
        }
        (_, admin) => {
            let user = match admin {
                Some(a) => format!("{}*{a}", login.user),
                None => login.user.clone(),
            };
            client.login(user, login.secret()).await.map_err(login_err)?;
        }
    }
    Ok(client)
}

/// The maildrop's messages: (message number, UIDL, size).
async fn listing(client: &mut Pop3Client, host: &str) -> Result<Vec<(usize, String, u64)>, MigrateError> {
    let uidls = match client.uidl(None).await.map_err(|e| pop_err(host, e))? {
        UidlResponse::Multiple(list) => list
            .items()
            .iter()
            .filter_map(|u| Some((u.index().value().ok()?, u.id().value().ok()?)))
            .collect::<Vec<(usize, String)>>(),
        UidlResponse::Single(u) => vec![(
            u.index().value().map_err(|e| pop_err(host, e))?,
            u.id().value().map_err(|e| pop_err(host, e))?,
        )],
    };
    let sizes: std::collections::HashMap<usize, u64> = match client.list(None).await.map_err(|e| pop_err(host, e))? {
        async_pop::response::list::ListResponse::Multiple(list) => list
            .items()
            .iter()
            .filter_map(|s| Some((s.counter().value().ok()?, s.size().value().ok()? as u64)))
            .collect(),
        async_pop::response::list::ListResponse::Single(s) => {
            [(s.counter().value().unwrap_or(0), s.size().value().unwrap_or(0) as u64)].into()
        }
    };
    Ok(uidls
        .into_iter()
        .map(|(n, uidl)| {
            let size = sizes.get(&n).copied().unwrap_or(0);
            (n, uidl, size)
        })
        .collect())
}

/// The message as it was before POP3's byte-stuffing (RFC 1939 §3): async-pop hands
/// back the lines as sent, without the final CRLF.
fn unstuff(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 2);
    let mut at_line_start = true;
    let mut i = 0;
    while i < content.len() {
        if at_line_start && content[i] == b'.' {
            i += 1; // a leading '.' was added by the server; the next byte is the line's
            if i >= content.len() {
                break;
            }
        }
        let b = content[i];
        out.push(b);
        at_line_start = b == b'\n';
        i += 1;
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// When the old server received the message: its newest (topmost) Received header's
/// date, else the Date header.
fn received_date(raw: &[u8]) -> Option<i64> {
    let message = mail_parser::MessageParser::default().parse_headers(raw)?;
    let received = message
        .header_values("Received")
        .find_map(|v| v.as_received().and_then(|r| r.date()).map(|d| d.to_timestamp()));
    received.or_else(|| message.date().map(|d| d.to_timestamp()))
}

/// Content hash (with no flags or date: POP3 has neither) and size of every message in
/// the maildrop, for `verify`.
pub(crate) async fn digests(
    settings: &SourceSettings,
    login: &Login,
) -> Result<Vec<((tern_store::ContentHash, Flags, Option<i64>), u64)>, MigrateError> {
    let mut client = connect(settings, login).await?;
    let mut out = Vec::new();
    for (number, _, _) in listing(&mut client, &settings.host).await? {
        let content = client.retr(number).await.map_err(|e| pop_err(&settings.host, e))?;
        let raw = unstuff(&content);
        out.push((
            (tern_store::content_hash(&raw), Flags::default(), None),
            raw.len() as u64,
        ));
    }
    let _ = client.quit().await;
    Ok(out)
}

/// Copies the maildrop into INBOX.
pub(crate) async fn run_pass(shared: &Shared) -> Result<Outcome, MigrateError> {
    let input = &shared.input;
    let store = &*input.store;
    let host = input.settings.host.clone();
    let mut client = connect(&input.settings, &input.login).await?;
    let inbox = store.mailbox(input.migration.account, tern_store::INBOX).await?;
    let known = store.migration_folders(input.migration.id).await?;
    let mut state: FolderState = known
        .iter()
        .find(|f| f.source_name == MAILDROP)
        .and_then(|f| serde_json::from_str(&f.state).ok())
        .unwrap_or_default();
    state.target = inbox.name.clone();
    let record = store
        .put_migration_folder(
            input.migration.id,
            MAILDROP,
            inbox.id,
            &serde_json::to_string(&state).unwrap_or_default(),
        )
        .await?;
    let map: std::collections::HashMap<String, MigratedMessage> = store
        .migrated_messages(record.id)
        .await?
        .into_iter()
        .map(|e| (e.source_key.clone(), e))
        .collect();
    let list = listing(&mut client, &host).await?;
    state.source_messages = list.len() as u64;
    state.source_bytes = list.iter().map(|(_, _, s)| s).sum();
    state.skipped.clear();
    shared.reporter.update(|p| {
        p.source_messages = state.source_messages;
        p.source_bytes = state.source_bytes;
        p.copied = map.len() as u64;
    });
    let copier = Copier::new(input.store.clone(), record.id, inbox.id, MAILDROP);
    let mut outcome = Outcome::Completed;
    for (number, uidl, size) in &list {
        if map.contains_key(uidl) {
            continue;
        }
        if *size > input.max_message_size {
            *state
                .skipped
                .entry(format!(
                    "larger than limits.max_message_size ({} bytes)",
                    input.max_message_size
                ))
                .or_default() += 1;
            continue;
        }
        if let Err(o) = shared.check_control() {
            outcome = o;
            break;
        }
        let content = client.retr(*number).await.map_err(|e| pop_err(&host, e))?;
        let raw = unstuff(&content);
        let date = received_date(&raw);
        if let (Some(since), Some(d)) = (input.request.since, date)
            && d < since
        {
            *state.skipped.entry("older than --since".into()).or_default() += 1;
            continue;
        }
        let cap = shared.account_bytes(raw.len() as u64).await;
        copier
            .put(
                &shared.reporter,
                vec![Incoming {
                    key: uidl.clone(),
                    raw,
                    flags: Flags::default(),
                    internal_date: date,
                    pop3_uidl: Some(uidl.clone()),
                }],
            )
            .await?;
        shared.reporter.save(false).await?;
        if let Err(o) = cap {
            outcome = o;
            break;
        }
    }
    if outcome == Outcome::Completed && input.request.propagate_deletions && input.request.cutover.is_none() {
        let present: HashSet<&String> = list.iter().map(|(_, u, _)| u).collect();
        let gone: Vec<&MigratedMessage> = map.values().filter(|e| !present.contains(&e.source_key)).collect();
        if !gone.is_empty() {
            let removed = store
                .expunge(inbox.id, Expunge::Uids(gone.iter().map(|e| e.uid).collect()))
                .await?;
            store
                .forget_migrated(record.id, Some(gone.iter().map(|e| e.source_key.clone()).collect()))
                .await?;
            shared.reporter.update(|p| p.deleted += removed.len() as u64);
        }
    }
    // QUIT without DELE: nothing at the source changes (RFC 1939 §6).
    let _ = client.quit().await;
    state.failed = copier.failed();
    state.errors = state.failed.len() as u64;
    state.copied = store.migrated_messages(record.id).await?.len() as u64;
    state.messages = list.len() as u32;
    store
        .put_migration_folder(
            input.migration.id,
            MAILDROP,
            inbox.id,
            &serde_json::to_string(&state).unwrap_or_default(),
        )
        .await
        .map_err(|e: StoreError| MigrateError::Store(e))?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_stuffing_is_undone_and_the_last_line_ends() {
        assert_eq!(unstuff(b"a\r\n..b\r\n..\r\nc"), b"a\r\n.b\r\n.\r\nc\r\n".to_vec());
    }
}
