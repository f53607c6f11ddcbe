//! One POP3 session: the AUTHORIZATION and TRANSACTION states of RFC 1939 §3, and the
//! UPDATE state that QUIT enters (RFC 1939 §6).

use std::io;
use std::net::IpAddr;

use tern_net::auth::LoginError;
use tern_net::listeners::{ConnContext, ShutdownSignal};
use tern_store::{Account, Expunge, MailboxId, Store, StoreError, Uid};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, info, warn};

use crate::Pop3Server;
use crate::command::{self, Command, MessageNumber};
use crate::maildrop::Maildrop;
use crate::transfer::{CHUNK, Source, Transfer};
use crate::wire::{Line, Wire};
use tern_net::sasl;

/// Unknown commands, bad arguments, over-long lines and commands in the wrong state a
/// session may send before it is closed: a real client makes few; something that is
/// not a POP3 client (an HTTP request sent to port 110) makes many.
pub const MAX_BAD_COMMANDS: u32 = 20;

/// Messages up to this size are read whole; larger ones are streamed from their file
/// when the store keeps them in one.
const READ_WHOLE_MAX: u64 = 64 * 1024;

/// How a session's run on one stream ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// The session is over; the connection may be closed.
    Closed,
    /// The client asked for STLS and was told to go ahead: upgrade the stream, then run
    /// the session again on it.
    StartTls,
}

/// What to do after a command.
enum Flow {
    Continue,
    Close,
    StartTls,
}

/// What waiting for a client line brought.
enum Input {
    Line(Vec<u8>),
    TooLong,
    /// The client closed the connection.
    Closed,
    /// RFC 1939 §3 autologout.
    Idle,
    /// The server is shutting down.
    Shutdown,
}

/// RFC 1939 §3 states (UPDATE lasts only as long as QUIT, so it is not one here).
enum State {
    Authorization { user: Option<String> },
    Transaction { account: Account, maildrop: Maildrop },
}

/// A session's state; it outlives an STLS upgrade of the stream beneath it.
pub struct Session<'a> {
    server: &'a Pop3Server,
    peer: IpAddr,
    tls_active: bool,
    /// Whether this connection may upgrade with STLS (a STARTTLS port with a
    /// certificate loaded), TLS not being active yet.
    stls_possible: bool,
    shutdown: ShutdownSignal,
    state: State,
    bad_commands: u32,
}

impl<'a> Session<'a> {
    pub fn new(server: &'a Pop3Server, ctx: &ConnContext, stls_possible: bool) -> Self {
        Session {
            server,
            peer: ctx.peer.ip(),
            tls_active: ctx.tls_active,
            stls_possible,
            shutdown: ctx.shutdown.clone(),
            state: State::Authorization { user: None },
            bad_commands: 0,
        }
    }

    /// The greeting (RFC 1939 §4). No timestamp in angle brackets: that would
    /// announce APOP, which Tern does not offer (its passwords are stored hashed).
    pub fn greet<S: AsyncRead + AsyncWrite + Unpin>(&self, wire: &mut Wire<S>) {
        wire.reply(&format!("+OK Tern POP3 ready {}", self.server.config.hostname));
    }

    /// TLS is now active on a new stream (after STLS).
    pub fn tls_started(&mut self) {
        self.tls_active = true;
        // RFC 2595 §4: the client must forget what it learnt before TLS; so does the
        // server, so a USER given in plaintext does not carry over.
        self.state = State::Authorization { user: None };
    }

    fn stls_offered(&self) -> bool {
        self.stls_possible && !self.tls_active
    }

    fn plaintext_allowed(&self) -> bool {
        self.server.auth.plaintext_allowed(self.peer, self.tls_active)
    }

    /// Serves commands until the session ends or the client asks for STLS.
    pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(&mut self, wire: &mut Wire<S>) -> io::Result<Ending> {
        loop {
            let flow = match self.next_input(wire).await? {
                Input::Line(line) => match command::parse(&line) {
                    Ok(command) => self.execute(command, wire).await?,
                    Err(e) => self.bad(wire, &e.to_string()),
                },
                Input::TooLong => self.bad(wire, "line too long"),
                Input::Closed => {
                    // RFC 1939 §6: without QUIT there is no UPDATE state; nothing is
                    // deleted.
                    debug!("client closed the connection");
                    return Ok(Ending::Closed);
                }
                Input::Idle => {
                    // RFC 1939 §3: on autologout the server closes "without removing
                    // any messages or sending any response".
                    debug!("idle timeout; closing");
                    wire.close().await;
                    return Ok(Ending::Closed);
                }
                Input::Shutdown => {
                    wire.reply("-ERR [SYS/TEMP] server shutting down");
                    Flow::Close
                }
            };
            match flow {
                Flow::Continue => {}
                Flow::Close => {
                    wire.close().await;
                    return Ok(Ending::Closed);
                }
                Flow::StartTls => {
                    wire.flush().await?;
                    return Ok(Ending::StartTls);
                }
            }
        }
    }

    /// Waits for the client's next line, writing queued replies first unless the
    /// client already pipelined its next command (RFC 2449 §6.6).
    async fn next_input<S: AsyncRead + AsyncWrite + Unpin>(&mut self, wire: &mut Wire<S>) -> io::Result<Input> {
        if !wire.has_line() {
            wire.flush().await?;
        }
        let idle = self.server.config.idle_timeout;
        // The shutdown check happens only here, while the session waits for a command:
        // a RETR in progress finishes first.
        let read = tokio::select! {
            biased;
            () = self.shutdown.triggered() => None,
            read = tokio::time::timeout(idle, wire.read_line()) => Some(read),
        };
        Ok(match read {
            None => Input::Shutdown,
            Some(Err(_elapsed)) => Input::Idle,
            Some(Ok(line)) => match line? {
                Line::Complete(line) => Input::Line(line),
                Line::TooLong => Input::TooLong,
                Line::Closed => Input::Closed,
            },
        })
    }

    /// Answers a line that is not a usable command, and closes the session after too
    /// many of them.
    fn bad<S: AsyncRead + AsyncWrite + Unpin>(&mut self, wire: &mut Wire<S>, why: &str) -> Flow {
        self.bad_commands += 1;
        if self.bad_commands >= MAX_BAD_COMMANDS {
            debug!("too many bad commands; closing");
            wire.reply("-ERR too many bad commands; closing the connection");
            return Flow::Close;
        }
        wire.reply(&format!("-ERR {why}"));
        Flow::Continue
    }

    async fn execute<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        command: Command,
        wire: &mut Wire<S>,
    ) -> io::Result<Flow> {
        debug!(command = command.keyword(), "command");
        match command {
            // RFC 2449 §5: CAPA is valid in both states.
            Command::Capa => {
                self.capa(wire);
                Ok(Flow::Continue)
            }
            Command::Quit => Ok(self.quit(wire).await),
            command if matches!(self.state, State::Transaction { .. }) => self.transaction(command, wire).await,
            command => self.authorization(command, wire).await,
        }
    }

    /// RFC 2449 §5, §6: the capabilities. RFC 2449 §5 asks that capabilities of the
    /// AUTHORIZATION state be listed in both states, so the list is the same after login.
    fn capa<S: AsyncRead + AsyncWrite + Unpin>(&self, wire: &mut Wire<S>) {
        wire.reply("+OK capability list follows");
        wire.reply("TOP"); // RFC 2449 §6.1
        wire.reply("UIDL"); // RFC 2449 §6.8
        if self.plaintext_allowed() {
            wire.reply("USER"); // RFC 2449 §6.2
            wire.reply("SASL PLAIN"); // RFC 2449 §6.3, RFC 5034 §3
        }
        wire.reply("RESP-CODES"); // RFC 2449 §6.4
        wire.reply("AUTH-RESP-CODE"); // RFC 3206 §6
        wire.reply("PIPELINING"); // RFC 2449 §6.6
        if self.stls_offered() {
            wire.reply("STLS"); // RFC 2595 §4
        }
        wire.reply("EXPIRE NEVER"); // RFC 2449 §6.7: Tern never deletes mail by itself
        wire.reply("LOGIN-DELAY 0"); // RFC 2449 §6.5: failed logins are delayed, not successful ones
        wire.reply("IMPLEMENTATION Tern"); // RFC 2449 §6.9
        wire.reply(".");
    }

    /// QUIT (RFC 1939 §4 in AUTHORIZATION, §6 in TRANSACTION).
    async fn quit<S: AsyncRead + AsyncWrite + Unpin>(&mut self, wire: &mut Wire<S>) -> Flow {
        let State::Transaction { account, maildrop } = &self.state else {
            wire.reply("+OK Tern POP3 signing off");
            return Flow::Close;
        };
        // RFC 1939 §6: the UPDATE state removes the messages marked deleted.
        let marked = maildrop.marked();
        if marked.is_empty() {
            wire.reply("+OK Tern POP3 signing off");
            return Flow::Close;
        }
        let store = self.server.auth.store();
        match store.expunge(maildrop.mailbox(), Expunge::Uids(marked)).await {
            Ok(removed) => {
                info!(user = %account.address, deleted = removed.len(), "POP3 QUIT removed messages");
                wire.reply(&format!(
                    "+OK Tern POP3 signing off ({} messages deleted)",
                    removed.len()
                ));
            }
            Err(e) => {
                warn!(user = %account.address, error = %e, "POP3 QUIT could not remove the deleted messages");
                // RFC 1939 §6: "-ERR some deleted messages not removed".
                wire.reply("-ERR [SYS/TEMP] some deleted messages not removed; try again later");
            }
        }
        Flow::Close
    }

    // ----------------------------------------------------------------- AUTHORIZATION

    async fn authorization<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        command: Command,
        wire: &mut Wire<S>,
    ) -> io::Result<Flow> {
        match command {
            Command::Stls => Ok(self.stls(wire)),
            Command::User(user) => {
                // RFC 2449 §6.2, RFC 2595 §2.3: no password before TLS unless the
                // policy allows it.
                if !self.plaintext_allowed() {
                    self.refuse_plaintext(wire);
                    return Ok(Flow::Continue);
                }
                // RFC 1939 §7: the server may accept any name here; saying whether the
                // mailbox exists would tell a guesser which addresses are real.
                self.state = State::Authorization { user: Some(user) };
                wire.reply("+OK send PASS");
                Ok(Flow::Continue)
            }
            Command::Pass(password) => {
                if !self.plaintext_allowed() {
                    self.refuse_plaintext(wire);
                    return Ok(Flow::Continue);
                }
                let State::Authorization { user } = &mut self.state else {
                    return Ok(Flow::Continue);
                };
                let Some(user) = user.take() else {
                    return Ok(self.bad(wire, "give USER first"));
                };
                self.login(wire, &user, &password).await;
                Ok(Flow::Continue)
            }
            Command::Auth {
                mechanism,
                initial_response,
            } => self.auth(wire, mechanism, initial_response).await,
            _ => Ok(self.bad(wire, "log in first (USER and PASS, or AUTH)")),
        }
    }

    /// RFC 2595 §4.
    fn stls<S: AsyncRead + AsyncWrite + Unpin>(&mut self, wire: &mut Wire<S>) -> Flow {
        if self.tls_active {
            wire.reply("-ERR TLS is already active");
            Flow::Continue
        } else if !self.stls_offered() {
            wire.reply("-ERR STLS is not available on this port");
            Flow::Continue
        } else {
            wire.reply("+OK Begin TLS negotiation");
            Flow::StartTls
        }
    }

    fn refuse_plaintext<S: AsyncRead + AsyncWrite + Unpin>(&self, wire: &mut Wire<S>) {
        // RFC 3206 §5: [AUTH] says the failure is about the credentials (here, how
        // they would travel), not a passing system problem; retrying as is won't help.
        if self.stls_offered() {
            wire.reply("-ERR [AUTH] passwords are not accepted before TLS; use STLS first");
        } else {
            wire.reply("-ERR [AUTH] passwords are not accepted on this connection; connect with TLS (POP3S)");
        }
    }

    /// AUTH (RFC 5034 §4) with the PLAIN mechanism (RFC 4616).
    async fn auth<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        wire: &mut Wire<S>,
        mechanism: Option<String>,
        initial_response: Option<String>,
    ) -> io::Result<Flow> {
        let Some(mechanism) = mechanism else {
            // A bare AUTH lists the mechanisms (from the RFC 1734 drafts; Outlook and
            // others still probe with it). Only PLAIN, and only where a password may
            // be sent.
            wire.reply("+OK");
            if self.plaintext_allowed() {
                wire.reply("PLAIN");
            }
            wire.reply(".");
            return Ok(Flow::Continue);
        };
        if mechanism != "PLAIN" {
            wire.reply("-ERR unsupported authentication mechanism");
            return Ok(Flow::Continue);
        }
        if !self.plaintext_allowed() {
            self.refuse_plaintext(wire);
            return Ok(Flow::Continue);
        }
        let response = match initial_response {
            Some(response) => response,
            None => {
                // RFC 5034 §4: an empty challenge is sent as "+ " and the client answers
                // with a line of base64, or "*" to cancel.
                wire.reply("+ ");
                match self.next_input(wire).await? {
                    Input::Line(line) => String::from_utf8_lossy(command::strip_line_end(&line)).into_owned(),
                    Input::TooLong => return Ok(self.bad(wire, "line too long")),
                    Input::Closed => return Ok(Flow::Close),
                    Input::Idle => return Ok(Flow::Close),
                    Input::Shutdown => {
                        wire.reply("-ERR [SYS/TEMP] server shutting down");
                        return Ok(Flow::Close);
                    }
                }
            }
        };
        if response.trim() == "*" {
            wire.reply("-ERR authentication cancelled");
            return Ok(Flow::Continue);
        }
        match sasl::decode_plain(&response) {
            Ok(credentials) => self.login(wire, &credentials.user, &credentials.password).await,
            Err(e) => wire.reply(&format!("-ERR {e}")),
        }
        Ok(Flow::Continue)
    }

    /// Checks a password and, if it is right, opens the maildrop and enters the
    /// TRANSACTION state (RFC 1939 §7 PASS, RFC 5034 §4 AUTH).
    async fn login<S: AsyncRead + AsyncWrite + Unpin>(&mut self, wire: &mut Wire<S>, user: &str, password: &str) {
        let account = match self.server.auth.login("pop3", self.peer, user, password).await {
            Ok(account) => account,
            // RFC 3206 §4: [SYS/TEMP] for a problem on our side that may pass.
            Err(e @ LoginError::Unavailable(_)) => {
                warn!(user, error = ?e, "POP3 login: the store is unavailable");
                wire.reply(&format!("-ERR [SYS/TEMP] {e}"));
                return;
            }
            // RFC 3206 §5: [AUTH] for wrong credentials, and for an account refusing
            // logins for now (the text says when to try again).
            Err(e) => {
                wire.reply(&format!("-ERR [AUTH] {e}"));
                return;
            }
        };
        match open_maildrop(self.server.auth.store().as_ref(), &account).await {
            Ok(maildrop) => {
                let (count, size) = maildrop.stat();
                wire.reply(&format!("+OK maildrop has {count} messages ({size} octets)"));
                self.state = State::Transaction { account, maildrop };
            }
            Err(e) => {
                warn!(user = %account.address, error = %e, "POP3 login: cannot open the INBOX");
                wire.reply("-ERR [SYS/TEMP] cannot open the maildrop; try again shortly");
            }
        }
    }

    // ------------------------------------------------------------------- TRANSACTION

    async fn transaction<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        command: Command,
        wire: &mut Wire<S>,
    ) -> io::Result<Flow> {
        let State::Transaction { maildrop, .. } = &mut self.state else {
            return Ok(Flow::Continue);
        };
        match command {
            // RFC 1939 §5 STAT.
            Command::Stat => {
                let (count, size) = maildrop.stat();
                wire.reply(&format!("+OK {count} {size}"));
            }
            // RFC 1939 §5 LIST.
            Command::List(None) => {
                let (count, size) = maildrop.stat();
                wire.reply(&format!("+OK {count} messages ({size} octets)"));
                for (n, message) in maildrop.live() {
                    wire.reply(&format!("{n} {}", message.size));
                }
                wire.reply(".");
            }
            Command::List(Some(n)) => match maildrop.get(n) {
                Ok(message) => wire.reply(&format!("+OK {n} {}", message.size)),
                Err(e) => wire.reply(&format!("-ERR {e}")),
            },
            // RFC 1939 §7 UIDL.
            Command::Uidl(None) => {
                wire.reply("+OK unique-id listing follows");
                for (n, message) in maildrop.live() {
                    wire.reply(&format!("{n} {}", message.uidl));
                }
                wire.reply(".");
            }
            Command::Uidl(Some(n)) => match maildrop.get(n) {
                Ok(message) => wire.reply(&format!("+OK {n} {}", message.uidl)),
                Err(e) => wire.reply(&format!("-ERR {e}")),
            },
            // RFC 1939 §5 RETR.
            Command::Retr(n) => self.send_message(wire, n, Transfer::whole()).await?,
            // RFC 1939 §7 TOP.
            Command::Top { message, lines } => self.send_message(wire, message, Transfer::top(lines)).await?,
            // RFC 1939 §5 DELE: only marks; the UPDATE state removes.
            Command::Dele(n) => match maildrop.mark_deleted(n) {
                Ok(()) => wire.reply(&format!("+OK message {n} deleted")),
                Err(e) => wire.reply(&format!("-ERR {e}")),
            },
            // RFC 1939 §5 NOOP.
            Command::Noop => wire.reply("+OK"),
            // RFC 1939 §5 RSET.
            Command::Rset => {
                maildrop.unmark_all();
                let (count, size) = maildrop.stat();
                wire.reply(&format!("+OK maildrop has {count} messages ({size} octets)"));
            }
            Command::Stls => wire.reply("-ERR STLS is only allowed before login"),
            Command::User(_) | Command::Pass(_) | Command::Auth { .. } => wire.reply("-ERR already logged in"),
            // Handled before the state split.
            Command::Capa | Command::Quit => {}
        }
        Ok(Flow::Continue)
    }

    /// RETR and TOP: "+OK", then the message as a multi-line response (RFC 1939 §3),
    /// streamed.
    async fn send_message<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        wire: &mut Wire<S>,
        n: MessageNumber,
        mut transfer: Transfer,
    ) -> io::Result<()> {
        let State::Transaction { maildrop, .. } = &self.state else {
            return Ok(());
        };
        let (uid, size) = match maildrop.get(n) {
            Ok(message) => (message.uid, message.size),
            Err(e) => {
                wire.reply(&format!("-ERR {e}"));
                return Ok(());
            }
        };
        // Open the message before saying +OK, so a message that has gone gets a clean
        // -ERR instead of a broken response.
        let mut source = match open_message(self.server.auth.store().as_ref(), maildrop.mailbox(), uid, size).await {
            Ok(source) => source,
            Err(StoreError::NoSuchMessage(_)) => {
                // Expunged by another session (IMAP, webmail) since this one logged in.
                wire.reply("-ERR message no longer exists");
                return Ok(());
            }
            Err(e) => {
                warn!(uid, error = %e, "POP3: cannot read a message");
                wire.reply("-ERR [SYS/TEMP] cannot read the message; try again shortly");
                return Ok(());
            }
        };
        if transfer.is_top() {
            wire.reply("+OK top of message follows");
        } else {
            // RFC 1939 §5 RETR: the size in octets is customary in the +OK line.
            wire.reply(&format!("+OK {size} octets"));
        }
        let mut chunk = Vec::with_capacity(CHUNK);
        let mut offset = 0;
        while !transfer.is_done() {
            if let Err(e) = source.next_chunk(&mut offset, &mut chunk).await {
                // The +OK has gone out; there is no way to take it back, so end the
                // session rather than leave the client waiting for the end.
                warn!(uid, error = %e, "POP3: reading a message failed midway");
                return Err(e);
            }
            if chunk.is_empty() {
                break;
            }
            transfer.push(&chunk, wire.output());
            if wire.queued() >= CHUNK {
                wire.flush().await?;
            }
        }
        transfer.finish(wire.output());
        Ok(())
    }
}

/// The snapshot the TRANSACTION state works on (RFC 1939 §5).
async fn open_maildrop(store: &dyn Store, account: &Account) -> Result<Maildrop, StoreError> {
    let inbox = store.mailbox(account.id, tern_store::INBOX).await?;
    let messages = store.messages(inbox.id).await?;
    let uidls = store.pop3_uidls(inbox.id).await?;
    Ok(Maildrop::new(&inbox, messages, uidls))
}

/// A message's bytes: whole for a small one, its file for a large one when the store
/// keeps it in a file of its own.
async fn open_message(store: &dyn Store, mailbox: MailboxId, uid: Uid, size: u64) -> Result<Source, StoreError> {
    if size > READ_WHOLE_MAX
        && let Some(path) = store.message_file(mailbox, uid).await?
    {
        return match tokio::fs::File::open(&path).await {
            Ok(file) => Ok(Source::File(file)),
            // Expunged (and its file removed) between the look-up and the open.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::NoSuchMessage(uid)),
            Err(source) => Err(StoreError::Io {
                context: format!("cannot open {}", path.display()),
                source,
            }),
        };
    }
    store.read_message(mailbox, uid).await.map(Source::Bytes)
}
