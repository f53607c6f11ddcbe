//! A scripted SMTP server for the misbehaviours a real MTA will not produce on demand
//! (a greeting of 421, a connection dropped in the middle of DATA, tempfails for the
//! first n transactions), and a small SMTP client ([`send_mail`]) for tests that inject
//! mail into a server.
//!
//! [`ScriptedSmtp`] listens on a free port of 127.0.0.1 with a thread per connection.
//! It speaks enough RFC 5321 for a sending MTA: EHLO (advertising PIPELINING, 8BITMIME,
//! SMTPUTF8, SIZE and ENHANCEDSTATUSCODES, never STARTTLS) or HELO, MAIL, RCPT, DATA with
//! dot-unstuffing, RSET, NOOP, VRFY and QUIT. It reads commands line by line, so
//! pipelined commands (RFC 2920) are answered in order. Every transaction it accepts is
//! recorded ([`ScriptedSmtp::transactions`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use tern_testkit::smtp_peer::{send_mail, Behaviour, ScriptedSmtp};
//! let peer = ScriptedSmtp::start(Behaviour::AcceptAfter(1)).expect("peer");
//! // The first transaction is refused with 451 after its data; the next is taken.
//! assert!(send_mail(peer.addr(), "a@x.test", &["b@y.test"], b"Subject: 1\r\n\r\nhi\r\n").is_err());
//! send_mail(peer.addr(), "a@x.test", &["b@y.test"], b"Subject: 2\r\n\r\nhi\r\n").expect("accepted");
//! let accepted = peer.wait_for_transactions(1, Duration::from_secs(5)).expect("recorded");
//! assert_eq!(accepted[0].rcpt_to, vec!["b@y.test".to_string()]);
//! ```

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The name the scripted server greets with and gives in EHLO.
const SERVER_NAME: &str = "scripted.tern-testkit.test";
/// The name [`send_mail`] says EHLO with.
const CLIENT_NAME: &str = "client.tern-testkit.test";
/// The SIZE the scripted server advertises (RFC 1870), as Postfix fixtures do: 30 MiB.
pub const SIZE_LIMIT: usize = 30 * 1024 * 1024;
/// How long either side waits for the other before giving up on a connection.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// What the scripted server does with each connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// A well-behaved MX: every transaction is accepted and recorded.
    Accept,
    /// Every RCPT is refused permanently: `550 5.1.1`.
    RejectAll,
    /// Every RCPT is refused temporarily: `451 4.3.0`.
    TempfailAll,
    /// The greeting is `421 4.3.2` and the connection closes (RFC 5321 §3.1).
    TempfailGreeting,
    /// DATA is answered 354, then the connection closes after the first line of the
    /// message arrives, with no reply: the client cannot know whether mail was taken.
    DropMidData,
    /// The first `n` transactions to reach the end of their data are refused with
    /// `451 4.3.0` (counted across connections); later ones are accepted.
    AcceptAfter(usize),
}

/// One mail transaction the server accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    /// The EHLO or HELO argument of its connection.
    pub helo: String,
    /// The reverse-path without angle brackets ("" for a bounce's null sender).
    pub mail_from: String,
    /// The MAIL parameters as sent ("SIZE=1234", "BODY=8BITMIME", "SMTPUTF8").
    pub mail_parameters: Vec<String>,
    /// The forward-paths without angle brackets, in order.
    pub rcpt_to: Vec<String>,
    /// The message as received, dot-unstuffed, without the final ".\r\n".
    pub data: Vec<u8>,
}

/// What the connection threads share with the test.
#[derive(Default)]
struct Shared {
    connections: usize,
    /// Transactions that reached the end of their data, accepted or not.
    data_ends: usize,
    transactions: Vec<Transaction>,
    commands: Vec<String>,
    /// Clones of the open client sockets by connection number, to shut down on drop.
    open: HashMap<usize, TcpStream>,
    workers: Vec<JoinHandle<()>>,
}

struct Inner {
    behaviour: Mutex<Behaviour>,
    shared: Mutex<Shared>,
    stopping: AtomicBool,
}

impl Inner {
    fn shared(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn behaviour(&self) -> Behaviour {
        *self.behaviour.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A scripted SMTP server on 127.0.0.1; dropping it closes the port and every
/// connection.
pub struct ScriptedSmtp {
    addr: SocketAddr,
    inner: Arc<Inner>,
    acceptor: Option<JoinHandle<()>>,
}

impl ScriptedSmtp {
    /// Starts a server that treats every connection as `behaviour` says.
    pub fn start(behaviour: Behaviour) -> Result<ScriptedSmtp, String> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| format!("cannot bind the scripted SMTP server on 127.0.0.1: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("cannot read the scripted SMTP server's address: {e}"))?;
        let inner = Arc::new(Inner {
            behaviour: Mutex::new(behaviour),
            shared: Mutex::new(Shared::default()),
            stopping: AtomicBool::new(false),
        });
        let accepting = inner.clone();
        let acceptor = std::thread::Builder::new()
            .name(format!("scripted-smtp-{}", addr.port()))
            .spawn(move || accept_loop(listener, accepting))
            .map_err(|e| format!("cannot start the scripted SMTP server's thread: {e}"))?;
        Ok(ScriptedSmtp {
            addr,
            inner,
            acceptor: Some(acceptor),
        })
    }

    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Changes what connections opened from now on get (a connection keeps the
    /// behaviour it started with).
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        *self.inner.behaviour.lock().unwrap_or_else(PoisonError::into_inner) = behaviour;
    }

    /// The transactions accepted so far, in the order their data ended.
    pub fn transactions(&self) -> Vec<Transaction> {
        self.inner.shared().transactions.clone()
    }

    /// How many connections the server has accepted.
    pub fn connections(&self) -> usize {
        self.inner.shared().connections
    }

    /// Every command line received so far, across connections, in arrival order,
    /// without CRLF (message data is not included).
    pub fn commands(&self) -> Vec<String> {
        self.inner.shared().commands.clone()
    }

    /// Waits until at least `count` transactions were accepted and returns them all.
    pub fn wait_for_transactions(&self, count: usize, timeout: Duration) -> Result<Vec<Transaction>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let transactions = self.transactions();
            if transactions.len() >= count {
                return Ok(transactions);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the scripted SMTP server accepted {} of {count} transactions within {timeout:?}; commands so far: {:?}",
                    transactions.len(),
                    self.commands()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ScriptedSmtp {
    fn drop(&mut self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept().
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let (open, workers) = {
            let mut shared = self.inner.shared();
            (std::mem::take(&mut shared.open), std::mem::take(&mut shared.workers))
        };
        for stream in open.values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        for worker in workers {
            let _ = worker.join();
        }
    }
}

fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
    for stream in listener.incoming() {
        if inner.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let behaviour = inner.behaviour();
        let serving = inner.clone();
        let mut shared = inner.shared();
        shared.connections += 1;
        let number = shared.connections;
        if let Ok(clone) = stream.try_clone() {
            shared.open.insert(number, clone);
        }
        if let Ok(worker) = std::thread::Builder::new()
            .name("scripted-smtp-connection".into())
            .spawn(move || {
                // A client that vanishes is just the end of the connection.
                let _ = serve(&stream, behaviour, &serving);
                let _ = stream.shutdown(Shutdown::Both);
                serving.shared().open.remove(&number);
            })
        {
            shared.workers.push(worker);
        }
    }
}

/// The envelope of the transaction in progress.
#[derive(Default)]
struct Envelope {
    mail: Option<(String, Vec<String>)>,
    rcpts: Vec<String>,
}

fn reply(stream: &mut TcpStream, text: &str) -> std::io::Result<()> {
    stream.write_all(text.as_bytes())?;
    stream.write_all(b"\r\n")?;
    stream.flush()
}

/// The address inside `<...>` after `FROM:`/`TO:`, and the parameters after it.
fn path_and_parameters(argument: &str, prefix: &str) -> Option<(String, Vec<String>)> {
    let head = argument.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = argument[prefix.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    let parameters = rest[end + 1..].split_whitespace().map(str::to_string).collect();
    Some((rest[..end].to_string(), parameters))
}

fn serve(stream: &TcpStream, behaviour: Behaviour, inner: &Inner) -> std::io::Result<()> {
    let mut stream = stream.try_clone()?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    if behaviour == Behaviour::TempfailGreeting {
        return reply(
            &mut stream,
            "421 4.3.2 scripted: service not available, try again later",
        );
    }
    reply(
        &mut stream,
        &format!("220 {SERVER_NAME} ESMTP tern-testkit scripted peer"),
    )?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut helo = String::new();
    let mut envelope = Envelope::default();
    loop {
        let mut raw = Vec::new();
        if reader.read_until(b'\n', &mut raw)? == 0 {
            return Ok(());
        }
        let line = String::from_utf8_lossy(&raw).trim_end_matches(['\r', '\n']).to_string();
        inner.shared().commands.push(line.clone());
        let (verb, argument) = match line.split_once(' ') {
            Some((verb, argument)) => (verb.to_ascii_uppercase(), argument.trim()),
            None => (line.to_ascii_uppercase(), ""),
        };
        match verb.as_str() {
            "EHLO" => {
                helo = argument.to_string();
                envelope = Envelope::default();
                reply(
                    &mut stream,
                    &format!(
                        "250-{SERVER_NAME} greets {argument}\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-SIZE {SIZE_LIMIT}\r\n250 ENHANCEDSTATUSCODES"
                    ),
                )?;
            }
            "HELO" => {
                helo = argument.to_string();
                envelope = Envelope::default();
                reply(&mut stream, &format!("250 {SERVER_NAME}"))?;
            }
            "MAIL" => match path_and_parameters(argument, "FROM:") {
                _ if envelope.mail.is_some() => reply(&mut stream, "503 5.5.1 Error: nested MAIL command")?,
                Some(mail) => {
                    envelope.mail = Some(mail);
                    reply(&mut stream, "250 2.1.0 Ok")?;
                }
                None => reply(&mut stream, "501 5.5.4 Syntax: MAIL FROM:<address>")?,
            },
            "RCPT" => match path_and_parameters(argument, "TO:") {
                _ if envelope.mail.is_none() => reply(&mut stream, "503 5.5.1 Error: need MAIL command")?,
                None => reply(&mut stream, "501 5.5.4 Syntax: RCPT TO:<address>")?,
                Some(_) if behaviour == Behaviour::RejectAll => {
                    reply(&mut stream, "550 5.1.1 scripted: recipient rejected")?
                }
                Some(_) if behaviour == Behaviour::TempfailAll => {
                    reply(&mut stream, "451 4.3.0 scripted: recipient deferred, try again later")?
                }
                Some((rcpt, _)) => {
                    envelope.rcpts.push(rcpt);
                    reply(&mut stream, "250 2.1.5 Ok")?;
                }
            },
            "DATA" => {
                let Some((mail_from, mail_parameters)) = envelope.mail.clone() else {
                    reply(&mut stream, "503 5.5.1 Error: need MAIL command")?;
                    continue;
                };
                if envelope.rcpts.is_empty() {
                    reply(&mut stream, "554 5.5.1 Error: no valid recipients")?;
                    continue;
                }
                reply(&mut stream, "354 End data with <CR><LF>.<CR><LF>")?;
                if behaviour == Behaviour::DropMidData {
                    let mut first = Vec::new();
                    reader.read_until(b'\n', &mut first)?;
                    return Ok(());
                }
                let data = read_data(&mut reader)?;
                let rcpt_to = std::mem::take(&mut envelope.rcpts);
                envelope = Envelope::default();
                let mut shared = inner.shared();
                let attempt = shared.data_ends;
                shared.data_ends += 1;
                if let Behaviour::AcceptAfter(n) = behaviour
                    && attempt < n
                {
                    drop(shared);
                    reply(
                        &mut stream,
                        &format!(
                            "451 4.3.0 scripted: transaction {} of {n} deferred, try again later",
                            attempt + 1
                        ),
                    )?;
                    continue;
                }
                shared.transactions.push(Transaction {
                    helo: helo.clone(),
                    mail_from,
                    mail_parameters,
                    rcpt_to,
                    data,
                });
                let id = shared.transactions.len();
                drop(shared);
                reply(&mut stream, &format!("250 2.0.0 Ok: queued as SCRIPTED{id}"))?;
            }
            "RSET" => {
                envelope = Envelope::default();
                reply(&mut stream, "250 2.0.0 Ok")?;
            }
            "NOOP" => reply(&mut stream, "250 2.0.0 Ok")?,
            "VRFY" => reply(&mut stream, "252 2.0.0 Cannot VRFY, but will accept the message")?,
            "QUIT" => {
                reply(&mut stream, "221 2.0.0 Bye")?;
                return Ok(());
            }
            _ => reply(&mut stream, "502 5.5.2 Error: command not recognized")?,
        }
    }
}

/// The message after DATA's 354, up to the line holding only "." (RFC 5321 §4.1.1.4),
/// with the leading dot of stuffed lines removed (§4.5.2).
fn read_data(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::new();
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed inside DATA",
            ));
        }
        if line == b".\r\n" || line == b".\n" {
            return Ok(data);
        }
        let unstuffed = line.strip_prefix(b".").unwrap_or(&line);
        data.extend_from_slice(unstuffed);
    }
}

/// Sends one message over SMTP to `addr`: EHLO, MAIL, one RCPT per address, DATA,
/// QUIT, with PIPELINING off so each refusal names its command. `message` is sent with
/// CRLF line endings (bare LFs converted) and dot-stuffed; `BODY=8BITMIME` and
/// `SMTPUTF8` are added when the message or addresses need them and the server offers
/// them. Returns the server's reply to the data (e.g. "250 2.0.0 Ok: queued as ...");
/// an error names the refused command and quotes the reply ("RCPT TO:<x@y> refused:
/// 550 5.1.1 ...").
pub fn send_mail(addr: SocketAddr, from: &str, to: &[&str], message: &[u8]) -> Result<String, String> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .map_err(|e| format!("cannot connect to SMTP at {addr}: {e}"))?;
    let mut client = Client::new(stream).map_err(|e| format!("SMTP at {addr}: {e}"))?;
    let sent = client.transaction(from, to, message);
    // Whether or not the transaction worked, leave politely.
    let _ = client.command("QUIT");
    sent.map_err(|e| format!("SMTP at {addr}: {e}"))
}

/// A line-at-a-time SMTP client.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn new(stream: TcpStream) -> Result<Client, String> {
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
            .map_err(|e| format!("cannot set timeouts: {e}"))?;
        let writer = stream
            .try_clone()
            .map_err(|e| format!("cannot clone the socket: {e}"))?;
        let mut client = Client {
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = client.read_reply()?;
        if !greeting.starts_with("220") {
            return Err(format!("greeting refused: {greeting}"));
        }
        Ok(client)
    }

    /// The whole reply (continuation lines joined by "\n").
    fn read_reply(&mut self) -> Result<String, String> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = self
                .reader
                .read_line(&mut line)
                .map_err(|e| format!("cannot read a reply: {e}"))?;
            if n == 0 {
                return Err(format!("connection closed; got so far: {}", lines.join("\n")));
            }
            let line = line.trim_end_matches(['\r', '\n']).to_string();
            let last = line.len() < 4 || line.as_bytes()[3] != b'-';
            lines.push(line);
            if last {
                return Ok(lines.join("\n"));
            }
        }
    }

    fn command(&mut self, command: &str) -> Result<String, String> {
        self.writer
            .write_all(format!("{command}\r\n").as_bytes())
            .map_err(|e| format!("cannot send {command}: {e}"))?;
        self.read_reply()
    }

    /// `command`, which must be answered with a reply starting with `expected`.
    fn expect(&mut self, command: &str, expected: char) -> Result<String, String> {
        let reply = self.command(command)?;
        if reply.starts_with(expected) {
            Ok(reply)
        } else {
            Err(format!("{command} refused: {reply}"))
        }
    }

    fn transaction(&mut self, from: &str, to: &[&str], message: &[u8]) -> Result<String, String> {
        let ehlo = self.expect(&format!("EHLO {CLIENT_NAME}"), '2')?;
        let offers = |extension: &str| {
            ehlo.lines()
                .skip(1)
                .any(|l| l.get(4..).is_some_and(|e| e.eq_ignore_ascii_case(extension)))
        };
        let mut parameters = String::new();
        if !message.is_ascii() && offers("8BITMIME") {
            parameters.push_str(" BODY=8BITMIME");
        }
        if (!from.is_ascii() || to.iter().any(|t| !t.is_ascii())) && offers("SMTPUTF8") {
            parameters.push_str(" SMTPUTF8");
        }
        self.expect(&format!("MAIL FROM:<{from}>{parameters}"), '2')?;
        for rcpt in to {
            self.expect(&format!("RCPT TO:<{rcpt}>"), '2')?;
        }
        self.expect("DATA", '3')?;
        self.writer
            .write_all(&dot_stuffed(message))
            .map_err(|e| format!("cannot send the message: {e}"))?;
        let reply = self.command(".")?;
        if reply.starts_with('2') {
            Ok(reply)
        } else {
            Err(format!("the message was refused: {reply}"))
        }
    }
}

/// `message` with CRLF line endings, every line starting with "." doubled, and a final
/// CRLF (the terminating "." is sent separately).
fn dot_stuffed(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 50 + 2);
    let mut at_line_start = true;
    let mut previous = 0u8;
    for &byte in message {
        if at_line_start && byte == b'.' {
            out.push(b'.');
        }
        if byte == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(byte);
        at_line_start = byte == b'\n';
        previous = byte;
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffing_doubles_leading_dots_and_ends_with_crlf() {
        assert_eq!(dot_stuffed(b".a\n..b\r\nc"), b"..a\r\n...b\r\nc\r\n".to_vec());
        assert_eq!(dot_stuffed(b"x\r\n"), b"x\r\n".to_vec());
    }

    #[test]
    fn data_is_unstuffed_up_to_the_lone_dot() {
        let mut input: &[u8] = b"..a\r\nb\r\n.\r\nQUIT\r\n";
        assert_eq!(read_data(&mut input).expect("data"), b".a\r\nb\r\n".to_vec());
    }

    #[test]
    fn paths_and_parameters_are_split() {
        assert_eq!(
            path_and_parameters("FROM:<a@b> SIZE=10 BODY=8BITMIME", "FROM:"),
            Some((
                "a@b".to_string(),
                vec!["SIZE=10".to_string(), "BODY=8BITMIME".to_string()]
            ))
        );
        assert_eq!(path_and_parameters("from: <>", "FROM:"), Some((String::new(), vec![])));
        assert_eq!(path_and_parameters("TO:a@b", "TO:"), None);
    }
}
