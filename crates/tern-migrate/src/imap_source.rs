//! An IMAP source: one logged-in connection to the old provider, with exactly the
//! commands a pass needs. Built on async-imap; NAMESPACE (RFC 2342), which it cannot
//! parse, is sent and read here.
//!
//! Folders are opened with EXAMINE (RFC 9051 §6.3.3), never SELECT, and bodies are
//! fetched with BODY.PEEK[] (§6.4.5): a migration never changes the source, not even
//! the \Seen flag of a message its user has not read yet.

use async_imap::types::{Fetch, Flag, NameAttribute};
use async_imap::{Authenticator, Client, Session};
use futures_util::StreamExt;
use tern_store::{Flags, SystemFlags};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::MigrateError;
use crate::connect::{self, SourceStream};
use crate::folders::{Namespace, SourceFolder};
use crate::source::{AuthMethod, Login, SourceSettings, TlsMode};

/// STATUS of a folder (RFC 9051 §6.3.11; HIGHESTMODSEQ from RFC 7162 §3.1.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FolderStatus {
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub messages: u32,
    pub highest_modseq: u64,
}

/// What a listing knows of a message before its body is fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    pub uid: u32,
    pub size: u64,
    pub flags: Flags,
    pub internal_date: Option<i64>,
}

/// A fetched message.
#[derive(Debug, Clone)]
pub struct FetchedMessage {
    pub uid: u32,
    pub raw: Vec<u8>,
    pub flags: Flags,
    pub internal_date: Option<i64>,
}

pub struct ImapSource {
    session: Session<SourceStream>,
    /// CONDSTORE (RFC 7162) is offered: flag changes can be asked for by MODSEQ.
    pub condstore: bool,
    pub namespace: Namespace,
    host: String,
}

impl std::fmt::Debug for ImapSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapSource").field("host", &self.host).finish()
    }
}

/// SASL PLAIN (RFC 4616 §2): `authzid NUL authcid NUL passwd`.
struct Plain(Vec<u8>);

impl Authenticator for Plain {
    type Response = Vec<u8>;
    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

/// Google's XOAUTH2: `user=U ^A auth=Bearer TOKEN ^A ^A`. On failure the server sends a
/// JSON challenge, answered with an empty line so it ends the exchange with NO.
struct XOAuth2(Option<Vec<u8>>);

impl Authenticator for XOAuth2 {
    type Response = Vec<u8>;
    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        self.0.take().unwrap_or_default()
    }
}

fn login_error(host: &str, e: async_imap::error::Error) -> MigrateError {
    match e {
        // Microsoft 365 refuses logins too when it throttles: that is not a bad password.
        async_imap::error::Error::No(text) if crate::is_throttling(&text) => MigrateError::Throttled {
            host: host.to_string(),
            reason: crate::server_text(&text),
        },
        async_imap::error::Error::No(text) | async_imap::error::Error::Bad(text) => MigrateError::Login {
            host: host.to_string(),
            reason: crate::server_text(&text),
        },
        other => MigrateError::from_imap(host, other),
    }
}

impl ImapSource {
    /// Connects, protects and logs in.
    pub async fn connect(settings: &SourceSettings, login: &Login) -> Result<ImapSource, MigrateError> {
        let host = settings.host.clone();
        let tcp = connect::tcp(settings).await?;
        let stream = match settings.tls {
            TlsMode::Implicit => connect::tls(settings, tcp).await?,
            TlsMode::None => SourceStream::Plain(tcp),
            TlsMode::Starttls => {
                // RFC 9051 §6.2.1: after the tagged OK the TLS negotiation begins; no
                // greeting follows, and everything learnt before is forgotten.
                let mut client = Client::new(SourceStream::Plain(tcp));
                greeting(&mut client, &host).await?;
                client
                    .run_command_and_check_ok("STARTTLS", None)
                    .await
                    .map_err(|e| MigrateError::Tls {
                        host: host.clone(),
                        reason: format!("STARTTLS refused: {e}"),
                    })?;
                let SourceStream::Plain(tcp) = client.into_inner() else {
                    unreachable!("the stream was plain before STARTTLS");
                };
                connect::tls(settings, tcp).await?
            }
        };
        let mut client = Client::new(stream);
        if settings.tls != TlsMode::Starttls {
            greeting(&mut client, &host).await?;
        }
        let secret = login.secret().to_string();
        let session = match (settings.auth, &login.admin_user, &login.credential) {
            (AuthMethod::Xoauth2, _, _) => {
                let access_token = login.access_token().await?;
                let blob = format!("user={}\x01auth=Bearer {access_token}\x01\x01", login.user);
                client
                    .authenticate("XOAUTH2", XOAuth2(Some(blob.into_bytes())))
                    .await
                    .map_err(|(e, _)| login_error(&host, e))?
            }
            (AuthMethod::Plain, admin, _) => {
                // With an admin: authorise as the mailbox, authenticate as the admin.
                let (authz, authc) = match admin {
                    Some(admin) => (login.user.as_str(), admin.as_str()),
                    None => ("", login.user.as_str()),
                };
                let blob = format!("{authz}\0{authc}\0{secret}");
                client
                    .authenticate("PLAIN", Plain(blob.into_bytes()))
                    .await
                    .map_err(|(e, _)| login_error(&host, e))?
            }
            (AuthMethod::Login, admin, _) => {
                // Dovecot's master-user form: "user*admin" with the admin's password.
                let user = match admin {
                    Some(admin) => format!("{}*{admin}", login.user),
                    None => login.user.clone(),
                };
                client
                    .login(user, &secret)
                    .await
                    .map_err(|(e, _)| login_error(&host, e))?
            }
        };
        let mut source = ImapSource {
            session,
            condstore: false,
            namespace: Namespace::default(),
            host,
        };
        let caps = source.session.capabilities().await.map_err(|e| source.err(e))?;
        source.condstore = caps.has_str("CONDSTORE") || caps.has_str("QRESYNC");
        if source.condstore {
            // RFC 7162 §3.1.8: after ENABLE CONDSTORE, EXAMINE reports HIGHESTMODSEQ.
            source
                .session
                .run_command_and_check_ok("ENABLE CONDSTORE")
                .await
                .map_err(|e| source.err(e))?;
        }
        if caps.has_str("NAMESPACE") {
            source.namespace = source.namespace_command().await?;
        }
        Ok(source)
    }

    fn err(&self, e: async_imap::error::Error) -> MigrateError {
        MigrateError::from_imap(&self.host, e)
    }

    /// NAMESPACE (RFC 2342 §5), read straight off the connection: async-imap's parser
    /// does not know the response. Nothing else is in flight between commands.
    async fn namespace_command(&mut self) -> Result<Namespace, MigrateError> {
        let stream = self.session.get_mut();
        let io = |e: std::io::Error| MigrateError::Io(format!("NAMESPACE: {e}"));
        stream.write_all(b"TNS1 NAMESPACE\r\n").await.map_err(io)?;
        stream.flush().await.map_err(io)?;
        let mut namespace = None;
        loop {
            let mut line = Vec::new();
            loop {
                let b = stream.read_u8().await.map_err(io)?;
                line.push(b);
                if line.ends_with(b"\r\n") || line.len() > 64 * 1024 {
                    break;
                }
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end();
            if let Some(rest) = text.strip_prefix("* NAMESPACE ") {
                namespace = crate::folders::parse_namespace(rest);
            } else if text.starts_with("TNS1 ") {
                break;
            }
        }
        Ok(namespace.unwrap_or_default())
    }

    /// Every folder (LIST "" "*"), with its SPECIAL-USE attributes where the server
    /// sends them.
    pub async fn folders(&mut self) -> Result<Vec<SourceFolder>, MigrateError> {
        let host = self.host.clone();
        let mut names = self
            .session
            .list(Some(""), Some("*"))
            .await
            .map_err(|e| MigrateError::from_imap(&host, e))?;
        let mut out = Vec::new();
        while let Some(name) = names.next().await {
            let name = name.map_err(|e| MigrateError::from_imap(&host, e))?;
            out.push(SourceFolder {
                wire_name: name.name().to_string(),
                delimiter: name.delimiter().and_then(|d| d.chars().next()),
                attributes: name.attributes().iter().map(attribute_name).collect(),
            });
        }
        Ok(out)
    }

    /// STATUS: enough to see that nothing changed without opening the folder.
    pub async fn status(&mut self, folder: &str) -> Result<FolderStatus, MigrateError> {
        let items = if self.condstore {
            "(MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)"
        } else {
            "(MESSAGES UIDNEXT UIDVALIDITY)"
        };
        let m = self.session.status(folder, items).await.map_err(|e| self.err(e))?;
        Ok(FolderStatus {
            uidvalidity: m.uid_validity.unwrap_or(0),
            uidnext: m.uid_next.unwrap_or(0),
            messages: m.exists,
            highest_modseq: m.highest_modseq.unwrap_or(0),
        })
    }

    /// Opens a folder read-only.
    pub async fn examine(&mut self, folder: &str) -> Result<FolderStatus, MigrateError> {
        let m = self.session.examine(folder).await.map_err(|e| self.err(e))?;
        Ok(FolderStatus {
            uidvalidity: m.uid_validity.unwrap_or(0),
            uidnext: m.uid_next.unwrap_or(0),
            messages: m.exists,
            highest_modseq: m.highest_modseq.unwrap_or(0),
        })
    }

    /// UID, size, flags and INTERNALDATE of the examined folder's messages with UIDs
    /// from `from_uid` on.
    pub async fn list_messages(&mut self, from_uid: u32) -> Result<Vec<MessageInfo>, MigrateError> {
        let host = self.host.clone();
        let mut fetches = self
            .session
            .uid_fetch(format!("{}:*", from_uid.max(1)), "(UID RFC822.SIZE FLAGS INTERNALDATE)")
            .await
            .map_err(|e| MigrateError::from_imap(&host, e))?;
        let mut out = Vec::new();
        while let Some(f) = fetches.next().await {
            let f = f.map_err(|e| MigrateError::from_imap(&host, e))?;
            // "n:*" always includes the last message (RFC 9051 §6.4.8), even when its
            // UID is below n.
            if let Some(uid) = f.uid.filter(|&u| u >= from_uid) {
                out.push(MessageInfo {
                    uid,
                    size: u64::from(f.size.unwrap_or(0)),
                    flags: flags_of(&f),
                    internal_date: f.internal_date().map(|d| d.timestamp()),
                });
            }
        }
        out.sort_by_key(|m| m.uid);
        Ok(out)
    }

    /// Flags of the messages with UIDs below `uidnext`: all of them, or with CONDSTORE
    /// only those changed since `modseq` (RFC 7162 §3.1.4, CHANGEDSINCE).
    pub async fn flags(&mut self, uidnext: u32, changed_since: Option<u64>) -> Result<Vec<(u32, Flags)>, MigrateError> {
        if uidnext <= 1 {
            return Ok(Vec::new());
        }
        let query = match changed_since {
            Some(m) if self.condstore => format!("(UID FLAGS) (CHANGEDSINCE {m})"),
            _ => "(UID FLAGS)".to_string(),
        };
        let host = self.host.clone();
        let mut fetches = self
            .session
            .uid_fetch(format!("1:{}", uidnext - 1), query)
            .await
            .map_err(|e| MigrateError::from_imap(&host, e))?;
        let mut out = Vec::new();
        while let Some(f) = fetches.next().await {
            let f = f.map_err(|e| MigrateError::from_imap(&host, e))?;
            if let Some(uid) = f.uid.filter(|&u| u < uidnext) {
                out.push((uid, flags_of(&f)));
            }
        }
        Ok(out)
    }

    /// The UIDs present in the examined folder (UID SEARCH ALL).
    pub async fn uids(&mut self) -> Result<Vec<u32>, MigrateError> {
        let mut uids: Vec<u32> = self
            .session
            .uid_search("ALL")
            .await
            .map_err(|e| self.err(e))?
            .into_iter()
            .collect();
        uids.sort_unstable();
        Ok(uids)
    }

    /// The bodies (byte for byte), flags and INTERNALDATEs of the given messages, in
    /// one pipelined UID FETCH. Messages expunged meanwhile are simply absent.
    pub async fn fetch(&mut self, uids: &[u32]) -> Result<Vec<FetchedMessage>, MigrateError> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let host = self.host.clone();
        let mut fetches = self
            .session
            .uid_fetch(uid_set(uids), "(UID FLAGS INTERNALDATE BODY.PEEK[])")
            .await
            .map_err(|e| MigrateError::from_imap(&host, e))?;
        let mut out = Vec::with_capacity(uids.len());
        while let Some(f) = fetches.next().await {
            let f = f.map_err(|e| MigrateError::from_imap(&host, e))?;
            let (Some(uid), Some(body)) = (f.uid, f.body()) else {
                continue;
            };
            out.push(FetchedMessage {
                uid,
                raw: body.to_vec(),
                flags: flags_of(&f),
                internal_date: f.internal_date().map(|d| d.timestamp()),
            });
        }
        out.sort_by_key(|m| m.uid);
        Ok(out)
    }

    pub async fn logout(mut self) {
        let _ = self.session.logout().await;
    }
}

async fn greeting(client: &mut Client<SourceStream>, host: &str) -> Result<(), MigrateError> {
    match client.read_response().await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(MigrateError::Connect {
            host: host.to_string(),
            port: 0,
            reason: "the server closed the connection before greeting".into(),
        }),
        Err(e) => Err(MigrateError::Io(format!("{host}: {e}"))),
    }
}

fn attribute_name(a: &NameAttribute<'_>) -> String {
    match a {
        NameAttribute::NoInferiors => "\\Noinferiors".into(),
        NameAttribute::NoSelect => "\\Noselect".into(),
        NameAttribute::Marked => "\\Marked".into(),
        NameAttribute::Unmarked => "\\Unmarked".into(),
        NameAttribute::All => "\\All".into(),
        NameAttribute::Archive => "\\Archive".into(),
        NameAttribute::Drafts => "\\Drafts".into(),
        NameAttribute::Flagged => "\\Flagged".into(),
        NameAttribute::Junk => "\\Junk".into(),
        NameAttribute::Sent => "\\Sent".into(),
        NameAttribute::Trash => "\\Trash".into(),
        NameAttribute::Extension(s) => s.to_string(),
        other => format!("{other:?}"),
    }
}

/// The message's flags as Tern keeps them: system flags and keywords; \Recent is the
/// source session's own and is not carried over (RFC 9051 §2.3.2).
pub fn flags_of(f: &Fetch) -> Flags {
    let mut system = SystemFlags::empty();
    let mut keywords = Vec::new();
    for flag in f.flags() {
        match flag {
            Flag::Seen => system = system.union(SystemFlags::SEEN),
            Flag::Answered => system = system.union(SystemFlags::ANSWERED),
            Flag::Flagged => system = system.union(SystemFlags::FLAGGED),
            Flag::Deleted => system = system.union(SystemFlags::DELETED),
            Flag::Draft => system = system.union(SystemFlags::DRAFT),
            Flag::Recent | Flag::MayCreate => {}
            Flag::Custom(k) => keywords.push(k.to_string()),
        }
    }
    Flags::new(system, keywords)
}

/// A UID set with runs folded into ranges (RFC 9051 §9, sequence-set).
pub fn uid_set(uids: &[u32]) -> String {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn uid_sets_fold_runs() {
        assert_eq!(super::uid_set(&[5, 1, 2, 3, 7, 9, 10]), "1:3,5,7,9:10");
        assert_eq!(super::uid_set(&[4]), "4");
    }
}
