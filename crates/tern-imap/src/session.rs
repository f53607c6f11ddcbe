//! One IMAP connection from greeting to logout: the state machine of RFC 9051 §3
//! (not authenticated → authenticated → selected → logout), the command loop, and the
//! things every command shares (replies, flushing, syncing the selected mailbox).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use imap_codec::CommandCodec;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::command::{Command, CommandBody};
use tern_net::listeners::{ConnContext, Connection};
use tern_store::{Account, ChangeEvent, Store, StoreError};
use tokio::sync::broadcast;
use tracing::{debug, info, warn};

use crate::ImapServer;
use crate::commands;
use crate::framing::{Frame, FrameLimits, Framer};
use crate::response::{Out, Status};
use crate::view::{Announce, View};

/// After this many unparseable commands in a row the client is not speaking IMAP.
const MAX_BAD_COMMANDS: u32 = 20;

pub enum State {
    NotAuthenticated,
    Authenticated(Account),
    Selected(Account, View),
    Logout,
}

/// The result of a command: its tagged response. `Err` carries NO and BAD responses
/// so handlers can use `?`.
#[derive(Debug)]
pub struct Reply {
    /// The handler already sent its tagged response (STARTTLS) or the connection is
    /// gone: nothing more to write.
    pub sent: bool,
    pub status: Status,
    /// A response code without brackets (RFC 9051 §7.1), e.g. `APPENDUID 38505 3955`.
    pub code: Option<String>,
    pub text: String,
}

pub type Result<T = Reply> = std::result::Result<T, Reply>;

impl Reply {
    pub fn ok(text: impl Into<String>) -> Reply {
        Reply {
            sent: false,
            status: Status::Ok,
            code: None,
            text: text.into(),
        }
    }
    pub fn no(text: impl Into<String>) -> Reply {
        Reply {
            sent: false,
            status: Status::No,
            code: None,
            text: text.into(),
        }
    }
    pub fn bad(text: impl Into<String>) -> Reply {
        Reply {
            sent: false,
            status: Status::Bad,
            code: None,
            text: text.into(),
        }
    }
    pub fn already_sent() -> Reply {
        Reply {
            sent: true,
            ..Reply::ok("")
        }
    }
    pub fn code(mut self, code: impl Into<String>) -> Reply {
        self.code = Some(code.into());
        self
    }
}

/// Store failures as the client should see them (RFC 5530 response codes).
impl From<StoreError> for Reply {
    fn from(e: StoreError) -> Reply {
        let text = e.to_string();
        match e {
            StoreError::NoSuchMailbox(_) => Reply::no(text).code("NONEXISTENT"),
            StoreError::MailboxExists(_) => Reply::no(text).code("ALREADYEXISTS"),
            StoreError::HasChildren(_) => Reply::no(text).code("HASCHILDREN"),
            StoreError::QuotaExceeded { .. } => Reply::no(text).code("OVERQUOTA"),
            StoreError::InvalidMailboxName(_) | StoreError::ProtectedMailbox(..) => Reply::no(text).code("CANNOT"),
            StoreError::NoSuchMessage(_) => Reply::no(text).code("EXPUNGEISSUED"),
            StoreError::EmptyMessage => Reply::no(text).code("CANNOT"),
            StoreError::Closed => Reply::no("the server is shutting down").code("UNAVAILABLE"),
            other => {
                warn!(error = %other, "store error");
                Reply::no("internal error; the administrator can find it in the log").code("SERVERBUG")
            }
        }
    }
}

/// RFC 9051 §6.4.4: US-ASCII and UTF-8 are what Tern searches in; others get
/// BADCHARSET.
fn check_charset(charset: &imap_codec::imap_types::core::Charset<'_>) -> Result<()> {
    use imap_codec::imap_types::core::Charset;
    let name = match charset {
        Charset::Atom(a) => a.inner().to_ascii_uppercase(),
        Charset::Quoted(q) => q.inner().to_ascii_uppercase(),
    };
    if name == "UTF-8" || name == "US-ASCII" {
        Ok(())
    } else {
        Err(Reply::no(format!("Charset {name} is not supported")).code("BADCHARSET (UTF-8 US-ASCII)"))
    }
}

/// One connection.
pub struct Session {
    pub server: Arc<ImapServer>,
    pub store: Arc<dyn Store>,
    pub conn: Option<crate::stream::Stream>,
    pub framer: Framer,
    pub out: Out,
    pub ctx: ConnContext,
    pub peer: SocketAddr,
    pub tls: bool,
    pub state: State,
    /// ENABLE IMAP4rev2 (RFC 9051 §6.3.1).
    pub rev2: bool,
    /// ENABLE UTF8=ACCEPT (RFC 6855 §3) or IMAP4rev2: names and strings in UTF-8.
    pub utf8: bool,
    /// CONDSTORE enabled (RFC 7162 §3.1: by ENABLE, SELECT (CONDSTORE) or a command
    /// with a CONDSTORE modifier).
    pub condstore: bool,
    /// ENABLE QRESYNC (RFC 7162 §3.2.3).
    pub qresync: bool,
    pub bus: broadcast::Receiver<ChangeEvent>,
    /// The tag of the command being run (ESEARCH repeats it, RFC 4731 §3.1).
    pub current_tag: String,
    /// SEARCHRES: the result saved by `SEARCH RETURN (SAVE)`, as UIDs (RFC 5182 §2.1).
    pub saved: Vec<tern_store::Uid>,
    bad_commands: u32,
}

pub async fn run(server: Arc<ImapServer>, conn: Connection, ctx: ConnContext) {
    let store = server.auth.store().clone();
    let limits = FrameLimits {
        max_line: server.config.max_line,
        max_literal: server.config.max_message_size,
        max_command: server.config.max_message_size + server.config.max_line as u64 * 2,
    };
    let mut session = Session {
        bus: store.subscribe(),
        store,
        framer: Framer::new(limits),
        out: Out::default(),
        peer: ctx.peer,
        tls: ctx.tls_active,
        conn: Some(crate::stream::Stream::new(conn)),
        ctx,
        state: State::NotAuthenticated,
        rev2: false,
        utf8: false,
        condstore: false,
        qresync: false,
        server,
        current_tag: String::new(),
        saved: Vec::new(),
        bad_commands: 0,
    };
    if let Err(e) = session.serve().await {
        debug!(peer = %session.peer, error = %e, "IMAP connection ended");
    }
    if let Some(mut conn) = session.conn.take() {
        let _ = tokio::time::timeout(Duration::from_secs(2), conn.shutdown()).await;
    }
}

impl Session {
    async fn serve(&mut self) -> std::io::Result<()> {
        // RFC 9051 §7.1.1: the greeting carries the capabilities so clients need not ask.
        let caps = self.capabilities();
        self.out
            .raw(b"* OK [CAPABILITY ")
            .text(&caps)
            .raw(b"] Tern IMAP ready on ")
            .text(&self.server.config.hostname)
            .crlf();
        self.flush().await?;
        loop {
            let timeout = match self.state {
                State::NotAuthenticated => self.server.config.login_timeout,
                _ => self.server.config.idle_timeout,
            };
            let frame = {
                let Some(conn) = self.conn.as_mut() else { return Ok(()) };
                tokio::select! {
                    frame = self.framer.next(conn) => frame?,
                    () = self.ctx.shutdown.triggered() => {
                        self.out.untagged("BYE [UNAVAILABLE] Server shutting down; reconnect shortly");
                        return self.flush().await;
                    }
                    () = tokio::time::sleep(timeout) => {
                        // RFC 9051 §5.4 autologout.
                        self.out.untagged("BYE Autologout; idle for too long");
                        return self.flush().await;
                    }
                }
            };
            match frame {
                Frame::Eof => return Ok(()),
                Frame::Command(bytes) => self.command(&bytes).await?,
                Frame::LiteralRequest { length } => {
                    if length > self.server.config.max_message_size {
                        let tag = self.framer.refuse_literal().unwrap_or_else(|| "*".into());
                        // RFC 7889 §4: TOOBIG for a message over APPENDLIMIT.
                        self.out.tagged(
                            &tag,
                            Status::No,
                            &format!(
                                "[TOOBIG] Literal of {length} octets is over the limit of {}",
                                self.server.config.max_message_size
                            ),
                        );
                    } else {
                        self.framer.accept_literal();
                        self.out.raw(b"+ Ready for literal data\r\n");
                    }
                    self.flush().await?;
                }
                Frame::LineTooLong { tag } => {
                    let limit = self.server.config.max_line;
                    self.reply_bad(
                        tag.as_deref(),
                        &format!("[TOOBIG] Command line longer than {limit} octets"),
                    );
                    self.flush().await?;
                }
                Frame::NonSyncLiteralTooLarge => {
                    self.out
                        .untagged("BYE [TOOBIG] Non-synchronising literal over the limit; closing the connection");
                    return self.flush().await;
                }
            }
            if matches!(self.state, State::Logout) || self.bad_commands >= MAX_BAD_COMMANDS {
                if !matches!(self.state, State::Logout) {
                    self.out.untagged("BYE Too many invalid commands");
                    self.flush().await?;
                }
                return Ok(());
            }
        }
    }

    fn reply_bad(&mut self, tag: Option<&str>, text: &str) {
        self.bad_commands += 1;
        self.out.tagged(tag.unwrap_or("*"), Status::Bad, text);
    }

    /// Parses and runs one command.
    async fn command(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        // SEARCHRES: `$` stands for the saved result (RFC 5182 §2.1), as far as those
        // messages are still in the mailbox.
        let substituted = match &self.state {
            State::Selected(_, view) if bytes.contains(&b'$') => {
                let saved: Vec<tern_store::Uid> = self
                    .saved
                    .iter()
                    .copied()
                    .filter(|u| view.seq_of(*u).is_some())
                    .collect();
                crate::extensions::substitute_saved(bytes, &saved)
            }
            _ => None,
        };
        let bytes = substituted.as_deref().unwrap_or(bytes);
        let (bytes, extra) = crate::extensions::lift(bytes);
        let parsed = CommandCodec::default().decode(&bytes);
        let command = match parsed {
            Ok((b"", command)) => command,
            _ => {
                let tag = crate::framing::tag_of(&bytes);
                let text = match &tag {
                    Some(_) => "Unknown command or invalid arguments",
                    None => "Missing or invalid tag",
                };
                self.reply_bad(tag.as_deref(), text);
                return self.flush().await;
            }
        };
        let tag = command.tag.inner().to_string();
        let name = command.body.name();
        self.current_tag.clone_from(&tag);
        let reply = match self.dispatch(&tag, command, extra).await {
            Ok(r) | Err(r) => r,
        };
        if reply.sent {
            return Ok(());
        }
        if reply.status == Status::Bad {
            self.bad_commands += 1;
        } else {
            self.bad_commands = 0;
        }
        if reply.status != Status::Ok {
            debug!(peer = %self.peer, command = name, status = reply.status.as_str(), text = %reply.text, "command failed");
        }
        let text = match &reply.code {
            Some(code) => format!("[{code}] {}", reply.text),
            None => reply.text,
        };
        self.out.tagged(&tag, reply.status, &text);
        self.flush().await
    }

    async fn dispatch(&mut self, tag: &str, command: Command<'_>, extra: crate::extensions::Extra) -> Result {
        use CommandBody as C;
        let body = command.body;
        // Commands valid in any state (RFC 9051 §6.1).
        match body {
            C::Capability => return commands::any::capability(self),
            C::Noop => return commands::any::noop(self).await,
            C::Logout => return commands::any::logout(self),
            C::Id { parameters } => return commands::any::id(self, parameters),
            C::StartTLS => return commands::auth::starttls(self, tag).await,
            C::Compress { .. } if matches!(self.state, State::NotAuthenticated) => {
                return Err(Reply::bad("Log in first"));
            }
            C::Compress { .. } => return commands::compress::compress(self, tag).await,
            _ => {}
        }
        if matches!(self.state, State::NotAuthenticated) {
            return match body {
                C::Login { username, password } => {
                    commands::auth::login(self, username.as_ref(), password.declassify().as_ref()).await
                }
                C::Authenticate {
                    mechanism,
                    initial_response,
                } => {
                    commands::auth::authenticate(self, mechanism, initial_response.map(|r| r.declassify().to_vec()))
                        .await
                }
                _ => Err(Reply::bad("Log in first (LOGIN or AUTHENTICATE)")),
            };
        }
        let selected_only = |s: &Session| -> Result<()> {
            match s.state {
                State::Selected(..) => Ok(()),
                _ => Err(Reply::bad("Select a mailbox first")),
            }
        };
        match body {
            C::Login { .. } | C::Authenticate { .. } => Err(Reply::bad("Already logged in")),
            C::Enable { capabilities } => commands::any::enable(self, capabilities),
            C::Namespace => commands::any::namespace(self),
            C::Select { mailbox, parameters } => commands::select::select(self, mailbox, parameters, false).await,
            C::Examine { mailbox, parameters } => commands::select::select(self, mailbox, parameters, true).await,
            C::Create { mailbox } => commands::mailbox::create(self, mailbox, extra).await,
            C::Delete { mailbox } => commands::mailbox::delete(self, mailbox).await,
            C::Rename { from, to } => commands::mailbox::rename(self, from, to).await,
            C::Subscribe { mailbox } => commands::mailbox::subscribe(self, mailbox, true).await,
            C::Unsubscribe { mailbox } => commands::mailbox::subscribe(self, mailbox, false).await,
            C::List {
                reference,
                mailbox_wildcard,
            } => commands::list::list(self, reference, mailbox_wildcard, false, extra).await,
            C::Lsub {
                reference,
                mailbox_wildcard,
            } => commands::list::list(self, reference, mailbox_wildcard, true, extra).await,
            C::GetQuotaRoot { mailbox } => commands::quota::get_quota_root(self, mailbox).await,
            C::GetQuota { root } => commands::quota::get_quota(self, root).await,
            C::SetQuota { .. } => commands::quota::set_quota(self),
            C::Status { mailbox, item_names } => commands::status::status(self, mailbox, &item_names).await,
            C::Append {
                mailbox,
                flags,
                date,
                message,
            } => commands::append::append(self, mailbox, flags, date, message).await,
            C::Idle => commands::idle::idle(self).await,
            C::Check => {
                selected_only(self)?;
                commands::any::noop(self).await
            }
            C::Close => {
                selected_only(self)?;
                commands::select::close(self, true).await
            }
            C::Unselect => {
                selected_only(self)?;
                commands::select::close(self, false).await
            }
            C::Expunge => {
                selected_only(self)?;
                commands::expunge::expunge(self, None).await
            }
            C::ExpungeUid { sequence_set } => {
                selected_only(self)?;
                commands::expunge::expunge(self, Some(sequence_set)).await
            }
            C::Search { criteria, uid, charset } => {
                selected_only(self)?;
                if let Some(charset) = &charset {
                    check_charset(charset)?;
                }
                commands::search::search(self, criteria, uid, extra).await
            }
            C::Sort {
                sort_criteria,
                charset,
                search_criteria,
                uid,
            } => {
                selected_only(self)?;
                check_charset(&charset)?;
                commands::sort::sort(self, sort_criteria, search_criteria, uid).await
            }
            C::Thread {
                algorithm,
                charset,
                search_criteria,
                uid,
            } => {
                selected_only(self)?;
                check_charset(&charset)?;
                commands::sort::thread(self, algorithm, search_criteria, uid).await
            }
            C::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                modifiers,
            } => {
                selected_only(self)?;
                commands::fetch::fetch(self, sequence_set, macro_or_item_names, uid, modifiers, extra.savedate).await
            }
            C::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                modifiers,
            } => {
                selected_only(self)?;
                commands::store::store(self, sequence_set, kind, response, flags, uid, modifiers).await
            }
            C::Copy {
                sequence_set,
                mailbox,
                uid,
            } => {
                selected_only(self)?;
                commands::copy::copy(self, sequence_set, mailbox, uid, false).await
            }
            C::Move {
                sequence_set,
                mailbox,
                uid,
            } => {
                selected_only(self)?;
                commands::copy::copy(self, sequence_set, mailbox, uid, true).await
            }
            other => Err(Reply::bad(format!("{} is not supported", other.name()))),
        }
    }

    /// Writes what is buffered to the client. A client that does not read for
    /// `write_timeout` is dropped, so it cannot hold anything up.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        if self.out.buf.is_empty() {
            return Ok(());
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(std::io::ErrorKind::NotConnected.into());
        };
        let timeout = self.server.config.write_timeout;
        let write = async {
            conn.send(&self.out.buf).await?;
            conn.flush().await
        };
        match tokio::time::timeout(timeout, write).await {
            Ok(result) => {
                self.out.buf.clear();
                result
            }
            Err(_) => {
                info!(peer = %self.peer, "client stopped reading; disconnecting");
                Err(std::io::ErrorKind::TimedOut.into())
            }
        }
    }

    /// Flushes when a large response has built up (FETCH of many messages).
    pub async fn flush_if_large(&mut self) -> std::io::Result<()> {
        if self.out.buf.len() >= 256 * 1024 {
            self.flush().await
        } else {
            Ok(())
        }
    }

    /// The capabilities for this moment of the session (RFC 9051 §7.2.2).
    pub fn capabilities(&self) -> String {
        let mut caps = String::from("IMAP4rev1 IMAP4rev2 ID ENABLE IDLE SASL-IR LITERAL+");
        let plaintext = self.server.auth.plaintext_allowed(self.peer.ip(), self.tls);
        if matches!(self.state, State::NotAuthenticated) {
            if !self.tls && self.ctx.tls_config.is_some() {
                caps.push_str(" STARTTLS");
            }
            if plaintext {
                caps.push_str(" AUTH=PLAIN AUTH=LOGIN");
            } else {
                // RFC 9051 §6.2.3: no passwords in the clear.
                caps.push_str(" LOGINDISABLED");
            }
        } else {
            caps.push_str(
                " NAMESPACE UNSELECT UIDPLUS MOVE CONDSTORE QRESYNC SPECIAL-USE CREATE-SPECIAL-USE CHILDREN \
                 LIST-EXTENDED LIST-STATUS ESEARCH SEARCHRES SORT SORT=DISPLAY THREAD=REFERENCES \
                 THREAD=ORDEREDSUBJECT STATUS=SIZE UTF8=ACCEPT BINARY SAVEDATE QUOTA QUOTA=RES-STORAGE COMPRESS=DEFLATE",
            );
            caps.push_str(&format!(" APPENDLIMIT={}", self.server.config.max_message_size));
        }
        caps
    }

    pub fn account(&self) -> Option<&Account> {
        match &self.state {
            State::Authenticated(a) | State::Selected(a, _) => Some(a),
            _ => None,
        }
    }

    /// The account of an authenticated session (dispatch guarantees there is one).
    pub fn account_id(&self) -> Result<tern_store::AccountId> {
        self.account().map(|a| a.id).ok_or_else(|| Reply::bad("Log in first"))
    }

    pub fn view(&mut self) -> Result<&mut View> {
        match &mut self.state {
            State::Selected(_, view) => Ok(view),
            _ => Err(Reply::bad("Select a mailbox first")),
        }
    }

    /// Announces what others changed in the selected mailbox. `expunges` says whether
    /// EXPUNGE may be sent now (RFC 9051 §7.5.1).
    pub async fn sync(&mut self, expunges: bool, force: bool) -> Result<()> {
        let announce = Announce {
            modseq: self.condstore,
            vanished: self.qresync,
            expunges,
        };
        if let State::Selected(_, view) = &mut self.state {
            view.sync(&self.store, &mut self.bus, announce, force, &mut self.out)
                .await?;
        }
        Ok(())
    }

    /// Announces messages this session itself removed (EXPUNGE, MOVE).
    pub fn announce_expunged(&mut self, uids: &[tern_store::Uid]) {
        if let State::Selected(_, view) = &mut self.state {
            view.expunged(uids, self.qresync, &mut self.out);
        }
    }

    /// A mailbox name from the client, in the store's form.
    pub fn mailbox_name(&self, mailbox: &imap_codec::imap_types::mailbox::Mailbox<'_>) -> Result<String> {
        use imap_codec::imap_types::mailbox::Mailbox as M;
        match mailbox {
            M::Inbox => Ok("INBOX".into()),
            M::Other(other) => crate::names::from_wire(other.as_ref(), self.utf8)
                .ok_or_else(|| Reply::bad("Mailbox name is not valid modified UTF-7 (RFC 3501 §5.1.3)")),
        }
    }
}
