//! One SMTP session (RFC 5321 §4.1), on the MX or a submission port.
//!
//! Commands are parsed by smtp-proto's `RequestReceiver`; the message by its
//! `DataReceiver` (DATA, dot-unstuffing, RFC 5321 §4.5.2) or `BdatReceiver` (CHUNKING,
//! RFC 3030). Replies are collected and written when the session is about to wait for
//! input, which is what PIPELINING needs (RFC 2920 §3.1): a client may send MAIL, RCPT
//! and DATA in one packet and gets the three replies in one. A command that cannot be
//! parsed gets a 5xx and the session goes on; too many of them end it.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use smtp_proto::request::receiver::{BdatReceiver, DataReceiver, RequestReceiver};
use smtp_proto::{
    AUTH_LOGIN, AUTH_PLAIN, MAIL_BODY_8BITMIME, MAIL_BODY_BINARYMIME, MAIL_RET_HDRS, MAIL_SMTPUTF8, Request,
};
use tern_net::auth::LoginError;
use tern_net::listeners::{ConnContext, Connection, ShutdownSignal, TlsMode};
use tern_store::{Account, AccountId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, info, warn};

use crate::local::{self, Folder};
use crate::policy::{self, Route};
use crate::queue::{Envelope, Notify, Recipient};
use crate::reply::{self, Reply};
use crate::verify::{self, DmarcVerdict};
use crate::{DmarcReject, Mode, SmtpServer};

/// Commands a session may get wrong before it is closed: a real client makes few;
/// something that is not an SMTP client makes many.
const MAX_BAD_COMMANDS: u32 = 20;
/// Failed AUTH attempts per connection before it is closed (the login limits of
/// tern-net also apply across connections).
const MAX_AUTH_FAILURES: u32 = 3;
/// The longest command line accepted, CRLF included.
const MAX_COMMAND_LINE: usize = 4096;
/// How much is read from the socket at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Runs a session to its end, upgrading the connection on STARTTLS.
pub(crate) async fn serve(server: &SmtpServer, conn: Connection, ctx: &ConnContext, mode: Mode) {
    let starttls_possible = ctx.tls_mode == TlsMode::StartTls && ctx.tls_config.is_some();
    let mut session = Session::new(server, ctx, mode, starttls_possible);
    let mut wire = Wire::new(conn);
    session.greet(&mut wire);
    loop {
        match session.run(&mut wire).await {
            Ok(Ending::StartTls) => {
                let Some(config) = ctx.tls_config.clone() else { break };
                // RFC 3207 §5 / CVE-2011-0411: anything the client pipelined after
                // STARTTLS arrived in plaintext and is thrown away, not read as if it
                // had come over TLS.
                let conn = wire.into_connection();
                match conn.start_tls(config, ctx.tls_handshake_timeout).await {
                    Ok(conn) => {
                        wire = Wire::new(conn);
                        session.tls_started();
                    }
                    Err(e) => {
                        debug!(peer = %ctx.peer, error = %e, "STARTTLS handshake failed");
                        return;
                    }
                }
            }
            Ok(Ending::Closed) => break,
            Err(e) => {
                debug!(peer = %ctx.peer, error = %e, "connection error");
                return;
            }
        }
    }
    wire.close().await;
}

/// How a session's run on one stream ended.
enum Ending {
    Closed,
    StartTls,
}

/// What to do after a command.
enum Flow {
    Continue,
    Close,
    StartTls,
}

/// What waiting for input brought.
enum Input {
    Data,
    Closed,
    Timeout,
    Shutdown,
}

/// The socket, with the bytes read but not yet parsed and the replies not yet sent.
struct Wire {
    conn: Connection,
    buf: Vec<u8>,
    start: usize,
    out: Vec<u8>,
}

impl Wire {
    fn new(conn: Connection) -> Wire {
        Wire {
            conn,
            buf: Vec::with_capacity(READ_CHUNK),
            start: 0,
            out: Vec::new(),
        }
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
    }

    fn reply(&mut self, reply: &Reply) {
        self.out.extend_from_slice(reply.to_wire().as_bytes());
    }

    fn raw(&mut self, line: &str) {
        self.out.extend_from_slice(line.as_bytes());
    }

    async fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            self.conn.write_all(&self.out).await?;
            self.conn.flush().await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Sends the replies so far, then waits for more input.
    async fn fill(&mut self, timeout: Duration, shutdown: &ShutdownSignal) -> io::Result<Input> {
        self.flush().await?;
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        // Read into spare capacity: no zeroing of the buffer on every read.
        self.buf.reserve(READ_CHUNK);
        let read = tokio::select! {
            r = tokio::time::timeout(timeout, self.conn.read_buf(&mut self.buf)) => r,
            () = shutdown.triggered() => return Ok(Input::Shutdown),
        };
        let n = match read {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(Input::Timeout),
        };
        Ok(if n == 0 { Input::Closed } else { Input::Data })
    }

    /// The connection, dropping unread input.
    fn into_connection(self) -> Connection {
        self.conn
    }

    async fn close(mut self) {
        let _ = self.flush().await;
        let _ = self.conn.shutdown().await;
    }
}

/// The current mail transaction (RFC 5321 §3.3): MAIL, then RCPTs, then the message.
struct Transaction {
    sender: String,
    smtputf8: bool,
    eight_bit: bool,
    env_id: Option<String>,
    ret_headers_only: bool,
    recipients: Vec<Rcpt>,
    /// The message so far when it comes in BDAT chunks.
    chunks: Option<Chunks>,
}

impl Transaction {
    /// The accounts of the recipients delivered here.
    fn local_accounts(&self) -> Vec<AccountId> {
        self.recipients
            .iter()
            .filter_map(|r| match r.route {
                Route::Local(a) => Some(a),
                Route::Remote => None,
            })
            .collect()
    }
}

struct Rcpt {
    address: String,
    orcpt: Option<String>,
    notify: Notify,
    route: Route,
}

struct Chunks {
    body: Vec<u8>,
    too_big: bool,
}

/// A session's state; it outlives a STARTTLS upgrade of the stream beneath it.
struct Session<'a> {
    server: &'a SmtpServer,
    mode: Mode,
    peer: SocketAddr,
    tls_active: bool,
    starttls_possible: bool,
    shutdown: ShutdownSignal,
    /// The client's EHLO/HELO name, and whether it said EHLO.
    helo: Option<(String, bool)>,
    account: Option<Account>,
    tx: Option<Transaction>,
    transactions: usize,
    bad_commands: u32,
    auth_failures: u32,
}

impl<'a> Session<'a> {
    fn new(server: &'a SmtpServer, ctx: &ConnContext, mode: Mode, starttls_possible: bool) -> Self {
        Session {
            server,
            mode,
            peer: ctx.peer,
            tls_active: ctx.tls_active,
            starttls_possible,
            shutdown: ctx.shutdown.clone(),
            helo: None,
            account: None,
            tx: None,
            transactions: 0,
            bad_commands: 0,
            auth_failures: 0,
        }
    }

    fn hostname(&self) -> &str {
        &self.server.config.hostname
    }

    /// RFC 5321 §4.2: 220 and the server's name. "ESMTP" tells old clients to say EHLO.
    fn greet(&self, wire: &mut Wire) {
        wire.reply(&Reply::new(220, "", format!("{} ESMTP Tern", self.hostname())));
    }

    /// RFC 3207 §4.2: after TLS starts, the session starts over, knowing nothing the
    /// client said before.
    fn tls_started(&mut self) {
        self.tls_active = true;
        self.helo = None;
        self.tx = None;
        self.account = None;
    }

    async fn run(&mut self, wire: &mut Wire) -> io::Result<Ending> {
        let mut receiver = RequestReceiver::default();
        // Inside an over-long line: its rest is thrown away up to the next line end.
        let mut discarding = false;
        loop {
            let flow = match wire.pending().iter().position(|&b| b == b'\n') {
                // Only whole lines go to the parser, so the length limit holds however
                // the line arrived (RFC 5321 §4.5.3.1.4 allows 512 octets; extensions'
                // parameters need more).
                Some(end) if discarding || end + 1 > MAX_COMMAND_LINE => {
                    wire.consume(end + 1);
                    discarding = false;
                    self.bad(wire, Reply::new(500, "5.5.2", "line too long"))
                }
                Some(end) => {
                    let parsed = {
                        let line = &wire.pending()[..end + 1];
                        receiver.ingest(&mut line.iter()).map(Request::into_owned)
                    };
                    wire.consume(end + 1);
                    match parsed {
                        Ok(request) => self.command(request, wire).await?,
                        Err(e) => self.bad(wire, parse_error(&e)),
                    }
                }
                None => {
                    if wire.pending().len() > MAX_COMMAND_LINE {
                        let all = wire.pending().len();
                        wire.consume(all);
                        discarding = true;
                    }
                    match wire.fill(self.server.config.command_timeout, &self.shutdown).await? {
                        Input::Data => continue,
                        Input::Closed => return Ok(Ending::Closed),
                        Input::Timeout => {
                            // RFC 5321 §4.5.3.2.7: the server may close after 5 minutes.
                            wire.reply(&reply::closing(format!(
                                "{} timeout; closing connection",
                                self.hostname()
                            )));
                            Flow::Close
                        }
                        Input::Shutdown => {
                            wire.reply(&reply::closing(format!("{} shutting down", self.hostname())));
                            Flow::Close
                        }
                    }
                }
            };
            match flow {
                Flow::Continue => {}
                Flow::Close => {
                    wire.flush().await?;
                    return Ok(Ending::Closed);
                }
                Flow::StartTls => {
                    wire.flush().await?;
                    return Ok(Ending::StartTls);
                }
            }
        }
    }

    fn bad(&mut self, wire: &mut Wire, reply: Reply) -> Flow {
        self.bad_commands += 1;
        wire.reply(&reply);
        if self.bad_commands >= MAX_BAD_COMMANDS {
            wire.reply(&reply::closing("too many errors; closing connection"));
            return Flow::Close;
        }
        Flow::Continue
    }

    async fn command(&mut self, request: Request<String>, wire: &mut Wire) -> io::Result<Flow> {
        Ok(match request {
            Request::Ehlo { host } => self.ehlo(host, wire),
            Request::Helo { host } => {
                self.helo = Some((host, false));
                self.tx = None;
                wire.reply(&Reply::new(250, "", self.hostname().to_string()));
                Flow::Continue
            }
            Request::Lhlo { .. } => self.bad(wire, reply::not_implemented("this is SMTP, not LMTP")),
            Request::StartTls => self.starttls(wire),
            Request::Auth {
                mechanism,
                initial_response,
            } => self.auth(mechanism, initial_response, wire).await?,
            Request::Mail { from } => {
                let reply = self.mail(from).await;
                self.answer(wire, reply)
            }
            Request::Rcpt { to } => {
                let reply = self.rcpt(to).await;
                self.answer(wire, reply)
            }
            Request::Data => self.data(wire).await?,
            Request::Bdat { chunk_size, is_last } => self.bdat(chunk_size, is_last, wire).await?,
            Request::Rset => {
                self.tx = None;
                wire.reply(&reply::ok("reset"));
                Flow::Continue
            }
            Request::Noop { .. } => {
                wire.reply(&reply::ok("OK"));
                Flow::Continue
            }
            Request::Quit => {
                wire.reply(&Reply::new(
                    221,
                    "2.0.0",
                    format!("{} closing connection", self.hostname()),
                ));
                Flow::Close
            }
            // RFC 5321 §3.5.3: 252 neither confirms nor denies, so VRFY does not tell
            // a harvester which addresses exist.
            Request::Vrfy { .. } => {
                wire.reply(&Reply::new(
                    252,
                    "2.5.0",
                    "cannot VRFY; send the message and Tern will try",
                ));
                Flow::Continue
            }
            Request::Expn { .. } => self.bad(wire, reply::not_implemented("EXPN is not available")),
            Request::Help { .. } => {
                wire.reply(&Reply::new(
                    214,
                    "2.0.0",
                    "commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT STARTTLS AUTH VRFY HELP",
                ));
                Flow::Continue
            }
            Request::Etrn { .. } | Request::Atrn { .. } | Request::Burl { .. } => {
                self.bad(wire, reply::not_implemented("command not implemented"))
            }
        })
    }

    /// Sends a reply; a 5xx for a command counts towards the bad-command limit only
    /// when it is a protocol error, not a refused recipient.
    fn answer(&mut self, wire: &mut Wire, reply: Reply) -> Flow {
        let close = reply.code == 421;
        wire.reply(&reply);
        if close { Flow::Close } else { Flow::Continue }
    }

    fn auth_offered(&self) -> bool {
        // Passwords only ever travel encrypted on submission (RFC 8314 §3, RFC 4954 §4).
        self.mode == Mode::Submission && self.tls_active
    }

    /// RFC 5321 §4.1.1.1, with the extensions Tern implements.
    fn ehlo(&mut self, host: String, wire: &mut Wire) -> Flow {
        let greeting = format!("{} greets {} [{}]", self.hostname(), host, self.peer.ip());
        self.helo = Some((host, true));
        self.tx = None;
        let mut lines = vec![
            greeting,
            "PIPELINING".to_string(),                                // RFC 2920
            "8BITMIME".to_string(),                                  // RFC 6152
            "SMTPUTF8".to_string(),                                  // RFC 6531
            format!("SIZE {}", self.server.config.max_message_size), // RFC 1870
            "ENHANCEDSTATUSCODES".to_string(),                       // RFC 2034
            "CHUNKING".to_string(),                                  // RFC 3030
        ];
        if self.mode == Mode::Submission {
            lines.push("DSN".to_string()); // RFC 3461
        }
        if self.starttls_possible && !self.tls_active {
            lines.push("STARTTLS".to_string()); // RFC 3207
        }
        if self.auth_offered() && self.account.is_none() {
            lines.push("AUTH PLAIN LOGIN".to_string()); // RFC 4954
        }
        let last = lines.len() - 1;
        for (i, line) in lines.iter().enumerate() {
            wire.raw(&format!("250{}{line}\r\n", if i == last { ' ' } else { '-' }));
        }
        Flow::Continue
    }

    fn starttls(&mut self, wire: &mut Wire) -> Flow {
        if self.tls_active {
            wire.reply(&reply::bad_sequence("TLS is already active"));
            return Flow::Continue;
        }
        if !self.starttls_possible {
            wire.reply(&Reply::new(454, "4.7.0", "TLS not available"));
            return Flow::Continue;
        }
        wire.reply(&Reply::new(220, "2.0.0", "ready to start TLS"));
        Flow::StartTls
    }

    /// RFC 4954: AUTH PLAIN (RFC 4616) and LOGIN, on submission over TLS only.
    async fn auth(&mut self, mechanism: u64, initial: String, wire: &mut Wire) -> io::Result<Flow> {
        if self.mode != Mode::Submission {
            wire.reply(&reply::not_implemented(
                "AUTH is only available on the submission ports",
            ));
            return Ok(Flow::Continue);
        }
        if !self.tls_active {
            // RFC 4954 §6 538: encryption required for the requested mechanism.
            wire.reply(&Reply::new(
                538,
                "5.7.11",
                "start TLS first (STARTTLS) before logging in",
            ));
            return Ok(Flow::Continue);
        }
        if self.account.is_some() {
            wire.reply(&reply::bad_sequence("already authenticated"));
            return Ok(Flow::Continue);
        }
        if self.tx.is_some() {
            wire.reply(&reply::bad_sequence("AUTH is not allowed during a mail transaction"));
            return Ok(Flow::Continue);
        }
        let credentials = match mechanism {
            AUTH_PLAIN => {
                let Some(response) = self.initial_or_challenge(wire, initial, "").await? else {
                    return Ok(self.auth_cancelled(wire));
                };
                match tern_net::sasl::decode_plain(&response) {
                    Ok(c) => (c.user, c.password),
                    Err(e) => {
                        wire.reply(&reply::bad_arguments(format!("AUTH PLAIN: {e}")));
                        return Ok(Flow::Continue);
                    }
                }
            }
            AUTH_LOGIN => {
                // base64 "Username:" and "Password:", as every client expects.
                let Some(user) = self.initial_or_challenge(wire, initial, "VXNlcm5hbWU6").await? else {
                    return Ok(self.auth_cancelled(wire));
                };
                let Some(password) = self.challenge(wire, "UGFzc3dvcmQ6").await? else {
                    return Ok(self.auth_cancelled(wire));
                };
                match (decode_text(&user), decode_text(&password)) {
                    (Some(u), Some(p)) => (u, p),
                    _ => {
                        wire.reply(&reply::bad_arguments("AUTH LOGIN: the response is not valid base64"));
                        return Ok(Flow::Continue);
                    }
                }
            }
            _ => {
                wire.reply(&Reply::new(504, "5.5.4", "unsupported mechanism; use PLAIN or LOGIN"));
                return Ok(Flow::Continue);
            }
        };
        let (user, password) = credentials;
        match self.server.auth.login("smtp", self.peer.ip(), &user, &password).await {
            Ok(account) => {
                info!(peer = %self.peer, user = %account.address, "submission login");
                self.account = Some(account);
                wire.reply(&Reply::new(235, "2.7.0", "authentication successful"));
                Ok(Flow::Continue)
            }
            Err(LoginError::Invalid) => {
                self.auth_failures += 1;
                wire.reply(&Reply::new(535, "5.7.8", "authentication credentials invalid"));
                if self.auth_failures >= MAX_AUTH_FAILURES {
                    wire.reply(&reply::closing("too many failed logins"));
                    return Ok(Flow::Close);
                }
                Ok(Flow::Continue)
            }
            Err(e @ LoginError::Throttled { .. }) => {
                wire.reply(&Reply::new(454, "4.7.0", e.to_string()));
                Ok(Flow::Close)
            }
            Err(LoginError::Unavailable(e)) => {
                warn!(error = %e, "login failed: store unavailable");
                wire.reply(&Reply::new(454, "4.7.0", "temporary authentication failure"));
                Ok(Flow::Continue)
            }
        }
    }

    fn auth_cancelled(&mut self, wire: &mut Wire) -> Flow {
        wire.reply(&Reply::new(501, "5.0.0", "authentication cancelled"));
        Flow::Continue
    }

    /// The initial response given with AUTH (RFC 4954 §4), or else the answer to a
    /// challenge.
    async fn initial_or_challenge(
        &mut self,
        wire: &mut Wire,
        initial: String,
        text: &str,
    ) -> io::Result<Option<String>> {
        if initial.is_empty() {
            self.challenge(wire, text).await
        } else {
            Ok(Some(initial))
        }
    }

    /// Sends a 334 challenge and reads the client's line; `None` if it cancelled ("*",
    /// RFC 4954 §4) or went away.
    async fn challenge(&mut self, wire: &mut Wire, text: &str) -> io::Result<Option<String>> {
        wire.raw(&format!("334 {text}\r\n"));
        loop {
            if let Some(end) = wire.pending().iter().position(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(&wire.pending()[..end]).trim().to_string();
                wire.consume(end + 1);
                return Ok((line != "*").then_some(line));
            }
            if wire.pending().len() > 12 * 1024 {
                return Ok(None);
            }
            match wire.fill(self.server.config.command_timeout, &self.shutdown).await? {
                Input::Data => {}
                _ => return Ok(None),
            }
        }
    }

    /// RFC 5321 §4.1.1.2 MAIL.
    async fn mail(&mut self, from: smtp_proto::MailFrom<String>) -> Reply {
        let config = &self.server.config;
        if self.helo.is_none() {
            return reply::bad_sequence("say EHLO first");
        }
        if self.tx.is_some() {
            return reply::bad_sequence("a mail transaction is already open; send RSET first");
        }
        if self.mode == Mode::Submission && self.account.is_none() {
            return reply::auth_required();
        }
        if self.transactions >= config.max_messages_per_connection {
            return Reply::new(421, "4.7.0", "too many messages on one connection; please reconnect");
        }
        if from.size as u64 > config.max_message_size {
            return reply::too_big(config.max_message_size);
        }
        if from.flags & MAIL_BODY_BINARYMIME != 0 {
            return Reply::new(555, "5.5.4", "BODY=BINARYMIME is not supported");
        }
        let sender = from.address.clone();
        match (&self.mode, &self.account) {
            (Mode::Submission, Some(account)) => {
                if sender.is_empty() {
                    return Reply::new(553, "5.7.1", "a submitted message needs a sender address");
                }
                match policy::may_send_as(self.server.store.as_ref(), account, &sender).await {
                    Ok(true) => {}
                    Ok(false) => {
                        warn!(user = %account.address, sender = %sender, "refused: sending as someone else");
                        return Reply::new(
                            553,
                            "5.7.1",
                            format!("<{sender}> is not yours to send as; use your own address or one of its aliases"),
                        );
                    }
                    Err(e) => return reply::local_error(format!("cannot check the sender: {e}")),
                }
                if !self
                    .server
                    .rates
                    .take(&format!("send:{}", account.address), 1, config.submissions_per_hour)
                {
                    return Reply::new(
                        450,
                        "4.7.1",
                        format!(
                            "you have sent {} messages in the last hour, the most allowed; try again later",
                            config.submissions_per_hour
                        ),
                    );
                }
            }
            _ => {
                if !self
                    .server
                    .rates
                    .take(&format!("ip:{}", self.peer.ip()), 1, config.inbound_per_ip_per_hour)
                {
                    return Reply::new(450, "4.7.1", "too many messages from your address; try again later");
                }
            }
        }
        self.tx = Some(Transaction {
            sender,
            smtputf8: from.flags & MAIL_SMTPUTF8 != 0,
            eight_bit: from.flags & MAIL_BODY_8BITMIME != 0,
            env_id: from.env_id,
            ret_headers_only: from.flags & MAIL_RET_HDRS != 0,
            recipients: Vec::new(),
            chunks: None,
        });
        Reply::new(250, "2.1.0", "sender OK")
    }

    /// RFC 5321 §4.1.1.3 RCPT.
    async fn rcpt(&mut self, to: smtp_proto::RcptTo<String>) -> Reply {
        let config = &self.server.config;
        let Some(tx) = self.tx.as_ref() else {
            return reply::bad_sequence("send MAIL first");
        };
        if tx.recipients.len() >= config.max_recipients {
            // RFC 5321 §4.5.3.1.10: 452 asks the client to send the rest in another
            // transaction.
            return Reply::new(
                452,
                "4.5.3",
                "too many recipients in one message; send the rest separately",
            );
        }
        let address = to.address.clone();
        let route = match self.mode {
            Mode::Inbound => match policy::inbound_recipient(self.server.store.as_ref(), &address).await {
                Ok(id) => Route::Local(id),
                Err(reply) => return reply,
            },
            Mode::Submission => {
                let route = match policy::submission_recipient(self.server.store.as_ref(), &address).await {
                    Ok(route) => route,
                    Err(reply) => return reply,
                };
                let user = self.account.as_ref().map_or("", |a| a.address.as_str());
                if !self
                    .server
                    .rates
                    .take(&format!("rcpt:{user}"), 1, config.recipients_per_hour)
                {
                    return Reply::new(
                        450,
                        "4.7.1",
                        format!(
                            "you have sent to {} recipients in the last hour, the most allowed; try again later",
                            config.recipients_per_hour
                        ),
                    );
                }
                route
            }
        };
        let Some(tx) = self.tx.as_mut() else {
            return reply::bad_sequence("send MAIL first");
        };
        if !tx.recipients.iter().any(|r| r.address.eq_ignore_ascii_case(&address)) {
            tx.recipients.push(Rcpt {
                address,
                orcpt: to.orcpt,
                notify: Notify::from_flags(to.flags),
                route,
            });
        }
        Reply::new(250, "2.1.5", "recipient OK")
    }

    /// RFC 5321 §4.1.1.4 DATA.
    async fn data(&mut self, wire: &mut Wire) -> io::Result<Flow> {
        match &self.tx {
            None => {
                wire.reply(&reply::bad_sequence("send MAIL and RCPT first"));
                return Ok(Flow::Continue);
            }
            // RFC 2920 §3.1: after pipelined RCPTs that all failed, DATA gets 554.
            Some(tx) if tx.recipients.is_empty() => {
                wire.reply(&Reply::new(554, "5.5.1", "no valid recipients"));
                return Ok(Flow::Continue);
            }
            Some(tx) if tx.chunks.is_some() => {
                wire.reply(&reply::bad_sequence("DATA cannot follow BDAT; finish with BDAT LAST"));
                return Ok(Flow::Continue);
            }
            Some(_) => {}
        }
        wire.reply(&Reply::new(354, "", "go ahead; end with <CRLF>.<CRLF>"));
        let max = self.server.config.max_message_size as usize;
        let mut receiver = DataReceiver::new();
        let mut body = Vec::new();
        let mut too_big = false;
        loop {
            let (done, used) = {
                let data = wire.pending();
                let mut iter = data.iter();
                let done = receiver.ingest(&mut iter, &mut body);
                (done, data.len() - iter.len())
            };
            wire.consume(used);
            if body.len() > max {
                // Keep reading to the end so the session stays in step, but stop
                // keeping the bytes.
                too_big = true;
                body.clear();
            }
            if done {
                break;
            }
            if let Some(flow) = self.more_of_the_message(wire).await? {
                return Ok(flow);
            }
        }
        let reply = if too_big {
            self.tx = None;
            reply::too_big(self.server.config.max_message_size)
        } else {
            self.finish(body).await
        };
        Ok(self.answer(wire, reply))
    }

    /// Waits for more of a message (DATA or a BDAT chunk); `Some` ends the session:
    /// the client went away, stalled past the RFC 5321 §4.5.3.2.5 data-block
    /// timeout, or the server is shutting down.
    async fn more_of_the_message(&mut self, wire: &mut Wire) -> io::Result<Option<Flow>> {
        Ok(
            match wire.fill(self.server.config.data_block_timeout, &self.shutdown).await? {
                Input::Data => None,
                Input::Closed => Some(Flow::Close),
                Input::Timeout | Input::Shutdown => {
                    self.tx = None;
                    wire.reply(&reply::closing("timeout waiting for the message; closing"));
                    Some(Flow::Close)
                }
            },
        )
    }

    /// RFC 3030 §2 BDAT: the message in chunks of a stated size, no dot-stuffing.
    async fn bdat(&mut self, size: usize, last: bool, wire: &mut Wire) -> io::Result<Flow> {
        let max = self.server.config.max_message_size as usize;
        let mut receiver = BdatReceiver::new(size, last);
        // The chunk is read whatever happens: its bytes are not commands.
        let mut chunk = Vec::with_capacity(size.min(READ_CHUNK * 16));
        let keep = self.tx.as_ref().is_some_and(|tx| {
            !tx.recipients.is_empty()
                && tx
                    .chunks
                    .as_ref()
                    .is_none_or(|c| !c.too_big && c.body.len() + size <= max)
        });
        loop {
            let (done, used) = {
                let data = wire.pending();
                let mut iter = data.iter();
                let done = receiver.ingest(&mut iter, &mut chunk);
                (done, data.len() - iter.len())
            };
            wire.consume(used);
            if !keep {
                chunk.clear();
            }
            if done {
                break;
            }
            if let Some(flow) = self.more_of_the_message(wire).await? {
                return Ok(flow);
            }
        }
        let Some(tx) = self.tx.as_mut() else {
            wire.reply(&reply::bad_sequence("send MAIL and RCPT first"));
            return Ok(Flow::Continue);
        };
        if tx.recipients.is_empty() {
            wire.reply(&Reply::new(554, "5.5.1", "no valid recipients"));
            return Ok(Flow::Continue);
        }
        let chunks = tx.chunks.get_or_insert(Chunks {
            body: Vec::new(),
            too_big: false,
        });
        if keep {
            chunks.body.extend_from_slice(&chunk);
        } else {
            chunks.too_big = true;
            chunks.body = Vec::new();
        }
        if !last {
            let reply = Reply::new(250, "2.0.0", format!("{size} octets received"));
            wire.reply(&reply);
            return Ok(Flow::Continue);
        }
        let Some(Chunks { body, too_big }) = tx.chunks.take() else {
            return Ok(Flow::Continue);
        };
        let reply = if too_big {
            self.tx = None;
            reply::too_big(self.server.config.max_message_size)
        } else {
            self.finish(body).await
        };
        Ok(self.answer(wire, reply))
    }

    /// The message is complete: check, deliver or queue it, and say so only once it is
    /// durable.
    async fn finish(&mut self, body: Vec<u8>) -> Reply {
        let Some(tx) = self.tx.take() else {
            return reply::bad_sequence("no transaction");
        };
        self.transactions += 1;
        match self.mode {
            Mode::Inbound => self.finish_inbound(tx, body).await,
            Mode::Submission => self.finish_submission(tx, body).await,
        }
    }

    /// RFC 5321 §4.4: the Received field this hop adds, with the RFC 3848 protocol name.
    fn received(&self, tx: &Transaction, id: &str) -> String {
        let (helo, esmtp) = self.helo.clone().unwrap_or_else(|| ("unknown".into(), false));
        let protocol = match (esmtp, self.tls_active, self.account.is_some()) {
            (false, _, _) => "SMTP",
            (true, false, false) => "ESMTP",
            (true, true, false) => "ESMTPS",
            (true, false, true) => "ESMTPA",
            (true, true, true) => "ESMTPSA",
        };
        let utf8 = if tx.smtputf8 { "UTF8" } else { "" };
        // One recipient is named; several are not, so that each copy does not tell
        // every recipient about the others (RFC 5321 §7.2).
        let for_clause = match tx.recipients.as_slice() {
            [only] => format!("\r\n\tfor <{}>", only.address),
            _ => String::new(),
        };
        let date = chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S +0000");
        format!(
            "Received: from {helo} ([{ip}])\r\n\tby {host} (Tern) with {utf8}{protocol} id {id}{for_clause};\r\n\t{date}\r\n",
            ip = self.peer.ip(),
            host = self.hostname(),
        )
    }

    async fn finish_inbound(&mut self, tx: Transaction, body: Vec<u8>) -> Reply {
        let helo = self.helo.as_ref().map_or("unknown", |(h, _)| h.as_str()).to_string();
        let verdict = verify::check(
            &self.server.resolver,
            self.hostname(),
            self.peer.ip(),
            &helo,
            &tx.sender,
            &body,
        )
        .await;
        let folder = match (verdict.dmarc, self.server.config.dmarc_reject) {
            (DmarcVerdict::Reject, DmarcReject::Reject) => {
                info!(peer = %self.peer, from = %verdict.from_domain, "refused by DMARC policy");
                return Reply::new(
                    550,
                    "5.7.1",
                    format!(
                        "rejected: the message fails DMARC and {} asks receivers to reject such mail",
                        verdict.from_domain
                    ),
                );
            }
            (DmarcVerdict::Reject | DmarcVerdict::Quarantine, _) => Folder::Junk,
            (DmarcVerdict::Accept, _) => Folder::Inbox,
        };
        let id = message_id();
        let mut raw = Vec::with_capacity(body.len() + 1024);
        // RFC 5321 §4.4: final delivery adds Return-Path.
        raw.extend_from_slice(format!("Return-Path: <{}>\r\n", tx.sender).as_bytes());
        raw.extend_from_slice(verdict.header.as_bytes());
        raw.extend_from_slice(self.received(&tx, &id).as_bytes());
        raw.extend_from_slice(&body);
        let accounts = tx.local_accounts();
        self.deliver_local(&tx, &accounts, raw, folder, &id).await
    }

    /// Local delivery and its reply. Recipients whose mailbox refused the message after
    /// it was accepted (a quota reached in between) get a bounce.
    async fn deliver_local(
        &self,
        tx: &Transaction,
        accounts: &[AccountId],
        raw: Vec<u8>,
        folder: Folder,
        id: &str,
    ) -> Reply {
        let store = self.server.store.as_ref();
        // Each recipient's delivery rules (webmail settings): forwarding, vacation reply.
        let mut with_rules = Vec::with_capacity(accounts.len());
        for &a in accounts {
            if with_rules.iter().any(|(b, _, _)| *b == a) {
                continue;
            }
            // One settings read per recipient; the account only when a rule is on.
            let rules = crate::rules::load(store, a).await.unwrap_or_default();
            let account = if rules.forwarding.active() || rules.vacation.enabled {
                store.account_by_id(a).await.ok()
            } else {
                None
            };
            with_rules.push((a, account, rules));
        }
        // Junk is kept, never forwarded or answered.
        let act = folder == Folder::Inbox;
        let forward_only = |r: &crate::rules::DeliveryRules| act && r.forwarding.active() && !r.forwarding.keep_copy;
        // Forward-only recipients first: if their forward cannot be queued, nothing is
        // stored yet and the sender simply tries again.
        for (_, account, rules) in &with_rules {
            if let Some(account) = account
                && forward_only(rules)
                && crate::rules::apply(self.server, account, rules, &tx.sender, &raw)
                    .await
                    .forward_failed
            {
                return reply::local_error("could not forward the message; try again later");
            }
        }
        let keep: Vec<AccountId> = with_rules
            .iter()
            .filter(|(_, _, r)| !forward_only(r))
            .map(|(a, _, _)| *a)
            .collect();
        if keep.is_empty() {
            info!(id, peer = %self.peer, recipients = accounts.len(), "forwarded");
            return Reply::new(250, "2.0.0", format!("OK, forwarded as {id}"));
        }
        match local::deliver(store, &keep, raw.clone(), folder).await {
            Ok(results) => {
                let failed: Vec<&AccountId> = results.iter().filter(|(_, r)| r.is_err()).map(|(a, _)| a).collect();
                if failed.len() == results.len() {
                    return Reply::new(452, "4.2.2", "mailbox full; try again later");
                }
                if !failed.is_empty() && !tx.sender.is_empty() {
                    self.bounce_local_failures(tx, &failed, &raw).await;
                }
                if act {
                    // The message is stored: now the copies and answers its rules ask for.
                    for (a, account, rules) in &with_rules {
                        if let Some(account) = account
                            && !forward_only(rules)
                            && !failed.contains(&a)
                        {
                            crate::rules::apply(self.server, account, rules, &tx.sender, &raw).await;
                        }
                    }
                }
                info!(id, peer = %self.peer, recipients = accounts.len(), size = raw.len(), "delivered");
                Reply::new(250, "2.0.0", format!("OK, delivered as {id}"))
            }
            Err(e) => {
                warn!(error = %e, "local delivery failed");
                reply::local_error("could not store the message; try again later")
            }
        }
    }

    async fn bounce_local_failures(&self, tx: &Transaction, failed: &[&AccountId], raw: &[u8]) {
        let mut reported = Vec::new();
        for r in &tx.recipients {
            if let Route::Local(a) = r.route
                && failed.contains(&&a)
            {
                reported.push(crate::dsn::ReportedRecipient {
                    address: r.address.clone(),
                    orcpt: r.orcpt.clone(),
                    action: crate::dsn::Action::Failed,
                    reply: Some("552 5.2.2 mailbox full".into()),
                    remote_host: None,
                });
            }
        }
        let dsn = crate::dsn::build(&crate::dsn::Report {
            hostname: self.hostname(),
            to: &tx.sender,
            env_id: tx.env_id.as_deref(),
            arrival: crate::queue::now(),
            retry_until: None,
            recipients: &reported,
            original: raw,
            headers_only: true,
        });
        let mut envelope = Envelope::default();
        envelope.recipients.push(Recipient::new(tx.sender.clone()));
        if let Err(e) = self.server.queue.submit("", dsn, &envelope).await {
            warn!(error = %e, "could not queue a bounce");
        }
    }

    async fn finish_submission(&mut self, tx: Transaction, body: Vec<u8>) -> Reply {
        let Some(account) = self.account.clone() else {
            return reply::auth_required();
        };
        let store = self.server.store.as_ref();
        // The From field must be the user's too, or the envelope check means little.
        let from = policy::from_addresses(&body);
        if from.is_empty() {
            return Reply::new(550, "5.6.0", "the message has no From field (RFC 5322 §3.6)");
        }
        for address in &from {
            match policy::may_send_as(store, &account, address).await {
                Ok(true) => {}
                Ok(false) => {
                    warn!(user = %account.address, from = %address, "refused: From is someone else");
                    return Reply::new(
                        550,
                        "5.7.1",
                        format!(
                            "From: <{address}> is not yours to send as; use your own address or one of its aliases"
                        ),
                    );
                }
                Err(e) => return reply::local_error(format!("cannot check the From field: {e}")),
            }
        }
        let id = message_id();
        let mut raw = self.received(&tx, &id).into_bytes();
        raw.extend_from_slice(&body);
        let local = tx.local_accounts();
        let remote: Vec<&Rcpt> = tx.recipients.iter().filter(|r| r.route == Route::Remote).collect();
        if !remote.is_empty() {
            let signed = match self.sign(&from[0], &raw).await {
                Ok(signed) => signed,
                Err(reply) => return reply,
            };
            let envelope = Envelope {
                recipients: remote
                    .iter()
                    .map(|r| Recipient {
                        orcpt: r.orcpt.clone(),
                        notify: r.notify,
                        ..Recipient::new(r.address.clone())
                    })
                    .collect(),
                env_id: tx.env_id.clone(),
                ret_headers_only: tx.ret_headers_only,
                smtputf8: tx.smtputf8,
                eight_bit: tx.eight_bit || !body.is_ascii(),
                submitted_by: Some(account.address.clone()),
                ..Default::default()
            };
            match self.server.queue.submit(&tx.sender, signed, &envelope).await {
                Ok(qid) => info!(id, queue = %qid, user = %account.address, recipients = remote.len(), "queued"),
                Err(e) => {
                    warn!(error = %e, "could not queue a submitted message");
                    return reply::local_error("could not queue the message; try again later");
                }
            }
        }
        if !local.is_empty() {
            let mut delivered = format!("Return-Path: <{}>\r\n", tx.sender).into_bytes();
            delivered.extend_from_slice(&raw);
            let reply = self.deliver_local(&tx, &local, delivered, Folder::Inbox, &id).await;
            if !reply.is_positive() {
                return reply;
            }
        }
        Reply::new(250, "2.0.0", format!("OK, queued as {id}"))
    }

    /// DKIM-signs with the keys of the From domain, if it has any.
    async fn sign(&self, from: &str, raw: &[u8]) -> Result<Vec<u8>, Reply> {
        crate::dkim::sign_with_domain_keys(self.server.store.as_ref(), from, raw)
            .await
            .map_err(|e| {
                warn!(error = %e, from, "DKIM signing failed");
                reply::local_error("could not sign the message; try again later")
            })
    }
}

/// Webmail's send button: the message goes through exactly what an authenticated
/// submission session over TLS does — the sender and From checks, the rate limits,
/// routing, DKIM, the queue and local delivery — without a socket. `Ok` holds the
/// positive final reply, `Err` the first refusal (MAIL, a RCPT, or the message).
pub(crate) async fn submit_without_socket(
    server: &SmtpServer,
    account: Account,
    peer: SocketAddr,
    sender: &str,
    recipients: &[String],
    message: Vec<u8>,
) -> Result<Reply, Reply> {
    let (_trigger, shutdown) = ShutdownSignal::channel();
    let mut session = Session {
        server,
        mode: Mode::Submission,
        peer,
        tls_active: true,
        starttls_possible: false,
        shutdown,
        helo: Some(("webmail".into(), true)),
        account: Some(account),
        tx: None,
        transactions: 0,
        bad_commands: 0,
        auth_failures: 0,
    };
    let flags = if message.is_ascii() { 0 } else { MAIL_BODY_8BITMIME };
    let mail = smtp_proto::MailFrom {
        address: sender.to_string(),
        flags,
        size: message.len(),
        ..Default::default()
    };
    let reply = session.mail(mail).await;
    if !reply.is_positive() {
        return Err(reply);
    }
    for address in recipients {
        let rcpt = smtp_proto::RcptTo {
            address: address.clone(),
            ..Default::default()
        };
        let reply = session.rcpt(rcpt).await;
        if !reply.is_positive() {
            return Err(Reply::new(
                reply.code,
                reply.status,
                format!("<{address}>: {}", reply.text),
            ));
        }
    }
    if message.len() as u64 > server.config.max_message_size {
        return Err(reply::too_big(server.config.max_message_size));
    }
    let reply = session.finish(message).await;
    if reply.is_positive() { Ok(reply) } else { Err(reply) }
}

/// A short unique id for logs and the Received field.
fn message_id() -> String {
    format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

fn decode_text(b64: &str) -> Option<String> {
    STANDARD.decode(b64.trim()).ok().and_then(|b| String::from_utf8(b).ok())
}

/// The reply for a line smtp-proto could not parse.
fn parse_error(e: &smtp_proto::Error) -> Reply {
    use smtp_proto::Error;
    match e {
        Error::UnknownCommand => reply::syntax("command not recognized"),
        Error::InvalidSenderAddress => Reply::new(501, "5.1.7", "bad sender address syntax"),
        Error::InvalidRecipientAddress => Reply::new(501, "5.1.3", "bad recipient address syntax"),
        Error::SyntaxError { syntax } => reply::bad_arguments(format!("syntax: {syntax}")),
        Error::InvalidParameter { param } => reply::bad_arguments(format!("invalid parameter {param}")),
        Error::UnsupportedParameter { param } => Reply::new(555, "5.5.4", format!("unsupported parameter {param}")),
        Error::ResponseTooLong => Reply::new(500, "5.5.2", "line too long"),
        Error::NeedsMoreData { .. } | Error::InvalidResponse { .. } => reply::syntax("command not recognized"),
    }
}

impl std::fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("peer", &self.peer)
            .field("mode", &self.mode)
            .finish()
    }
}
