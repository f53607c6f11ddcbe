//! A small blocking IMAP4rev1 client for tests: fills any server's mailbox with a
//! [`migration_corpus`](crate::migration_corpus) and reads a mailbox back as a
//! [`Snapshot`], so a migration test can compare source (Dovecot) and destination
//! (Tern) over the protocol, without trusting the migration's own records.
//!
//! It is deliberately independent of Tern's IMAP code (no imap-codec, no async): a bug
//! shared by the server and the checker would hide itself.
//!
//! ```no_run
//! # fn main() -> Result<(), String> {
//! use tern_testkit::{imap, migration_corpus};
//! let corpus = migration_corpus::mailbox(&migration_corpus::CorpusSpec::small());
//! let source: std::net::SocketAddr = "127.0.0.1:1143".parse().map_err(|e| format!("{e}"))?;
//! imap::fill(source, "alice", "secret", &corpus)?;
//! let snapshot = imap::snapshot(source, "alice", "secret")?;
//! let differences = imap::diff(&imap::Snapshot::from_corpus(&corpus), &snapshot);
//! assert!(differences.is_empty(), "{}", differences.join("\n"));
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::migration_corpus::{CorpusFolder, base64, imap_date_time, parse_imap_date_time};

/// How long a read or write on a TCP connection may stall: long enough for a server
/// to write a 10 MB message to its disk.
const IO_TIMEOUT: Duration = Duration::from_secs(120);
/// The longest response line (without literals) accepted; guards against a server
/// that never sends CRLF.
const MAX_LINE: usize = 1 << 20;
/// The largest literal accepted from a server.
const MAX_LITERAL: usize = 256 << 20;
/// APPENDs in flight at once with LITERAL+: enough to keep the server busy, few enough
/// that its replies (about 60 bytes each) never fill a socket buffer while we write.
const APPEND_WINDOW: usize = 64;

/// A personal namespace (RFC 2342): the prefix of every folder but INBOX, and the
/// hierarchy separator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    /// E.g. "" (Dovecot's default) or "INBOX." (Courier, Cyrus, many providers).
    pub prefix: String,
    /// E.g. '/' or '.'.
    pub separator: char,
}

impl Default for Namespace {
    fn default() -> Namespace {
        Namespace {
            prefix: String::new(),
            separator: '/',
        }
    }
}

impl Namespace {
    /// The wire name of a UTF-8 folder name with `/` between levels: separator
    /// translated, modified UTF-7 (RFC 3501 §5.1.3), prefix added. INBOX stays INBOX.
    pub fn wire_name(&self, folder: &str) -> Result<String, String> {
        if folder.eq_ignore_ascii_case("INBOX") {
            return Ok("INBOX".into());
        }
        if self.separator != '/' && folder.contains(self.separator) {
            return Err(format!(
                "folder {folder:?} contains the server's separator {:?}",
                self.separator
            ));
        }
        let translated = folder.replace('/', &self.separator.to_string());
        Ok(format!("{}{}", self.prefix, tern_store::utf7::encode(&translated)))
    }

    /// The inverse of [`Namespace::wire_name`] for a name the server listed with
    /// `separator` (None for a flat name). Names outside the prefix keep their whole
    /// (decoded) name.
    pub fn folder_name(&self, wire: &str, separator: Option<char>) -> Result<String, String> {
        let decoded = tern_store::utf7::decode(wire).ok_or_else(|| format!("{wire:?} is not valid modified UTF-7"))?;
        if decoded.eq_ignore_ascii_case("INBOX") {
            return Ok("INBOX".into());
        }
        let relative = decoded.strip_prefix(&self.prefix).unwrap_or(&decoded);
        Ok(match separator {
            Some(separator) if separator != '/' => relative.replace(separator, "/"),
            _ => relative.to_string(),
        })
    }
}

/// One item of a server response: what the IMAP grammar (RFC 3501 §9) builds
/// responses from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Token {
    /// An atom or number, flags (`\Seen`) and `BODY[]` included.
    Atom(String),
    /// A quoted string or a literal, as bytes.
    String(Vec<u8>),
    Nil,
    Open,
    Close,
}

impl Token {
    /// An atom's or string's text (lossy UTF-8 for strings); None for NIL and parentheses.
    pub fn text(&self) -> Option<String> {
        match self {
            Token::Atom(a) => Some(a.clone()),
            Token::String(s) => Some(String::from_utf8_lossy(s).into_owned()),
            _ => None,
        }
    }
}

/// An untagged response (`* ...`), without the `* `.
#[derive(Clone, Debug)]
pub struct Untagged {
    /// The response as text, literals shown as their `{n}` announcement only: for
    /// assertions and error messages.
    pub text: String,
    pub tokens: Vec<Token>,
}

/// A tagged command's result.
#[derive(Clone, Debug)]
pub struct Reply {
    /// "OK", "NO" or "BAD".
    pub status: String,
    /// The rest of the tagged line, e.g. "[APPENDUID 1 5] Append completed."
    pub text: String,
    pub untagged: Vec<Untagged>,
}

impl Reply {
    pub fn is_ok(&self) -> bool {
        self.status == "OK"
    }
}

/// A blocking IMAP connection over any byte stream (plain TCP, or a TLS stream the
/// test built), used one command at a time except for pipelined APPENDs.
pub struct Client<S: Read + Write> {
    stream: BufReader<S>,
    tag: u64,
    /// Upper-case capability names, as last announced.
    capabilities: Vec<String>,
}

impl Client<TcpStream> {
    /// Connects over plain TCP and reads the greeting.
    pub fn connect(addr: SocketAddr) -> Result<Client<TcpStream>, String> {
        let stream = TcpStream::connect(addr).map_err(|e| format!("cannot connect to IMAP at {addr}: {e}"))?;
        let timeouts = stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
            // Pipelined commands go out in small writes; waiting for ACKs between
            // them (Nagle) only slows the test.
            .and_then(|()| stream.set_nodelay(true));
        timeouts.map_err(|e| format!("cannot set up the connection to {addr}: {e}"))?;
        Client::new(stream)
    }
}

impl<S: Read + Write> Client<S> {
    /// Reads the greeting from an open connection; it must be `* OK` (not PREAUTH or BYE).
    pub fn new(stream: S) -> Result<Client<S>, String> {
        let mut client = Client {
            stream: BufReader::with_capacity(256 << 10, stream),
            tag: 0,
            capabilities: Vec::new(),
        };
        let (text, _) = client.read_response()?;
        let greeting = String::from_utf8_lossy(&text).into_owned();
        if !greeting.starts_with("* OK") {
            return Err(format!("unexpected IMAP greeting: {greeting}"));
        }
        client.refresh_capabilities()?;
        Ok(client)
    }

    /// LOGIN (RFC 3501 §6.2.3). The arguments are sent as quoted strings, so they must
    /// be printable ASCII; use [`Client::authenticate_plain`] for anything else.
    pub fn login(&mut self, user: &str, password: &str) -> Result<(), String> {
        let command = format!("LOGIN {} {}", quoted(user)?, quoted(password)?);
        let reply = self.command(&command)?;
        if !reply.is_ok() {
            return Err(format!("LOGIN as {user:?} failed: {} {}", reply.status, reply.text));
        }
        self.refresh_capabilities()
    }

    /// AUTHENTICATE PLAIN (RFC 4616) with an authorization identity: `authzid` empty
    /// to log in as `authcid`, or another user's name for a master/admin login.
    pub fn authenticate_plain(&mut self, authzid: &str, authcid: &str, password: &str) -> Result<(), String> {
        let tag = self.next_tag();
        self.send(format!("{tag} AUTHENTICATE PLAIN\r\n").as_bytes())?;
        let (line, _) = self.read_response()?;
        if !line.starts_with(b"+") {
            return Err(format!(
                "AUTHENTICATE PLAIN: expected a continuation, got {}",
                String::from_utf8_lossy(&line)
            ));
        }
        let response = base64(format!("{authzid}\0{authcid}\0{password}").as_bytes());
        self.send(format!("{response}\r\n").as_bytes())?;
        let reply = self.until_tagged(&tag)?;
        if !reply.is_ok() {
            return Err(format!(
                "AUTHENTICATE PLAIN as {authcid:?} for {authzid:?} failed: {} {}",
                reply.status, reply.text
            ));
        }
        self.refresh_capabilities()
    }

    /// Whether the server announced `name` (case-insensitive) in its last CAPABILITY.
    pub fn has_capability(&self, name: &str) -> bool {
        self.capabilities.iter().any(|c| c.eq_ignore_ascii_case(name))
    }

    /// The capabilities as last announced (upper case).
    pub fn capabilities(&self) -> &[String] {
        &self.capabilities
    }

    /// Sends one command (without tag and CRLF) and reads to its tagged reply. A NO or
    /// BAD is a [`Reply`], not an error; errors are broken connections and protocol
    /// violations.
    pub fn command(&mut self, command: &str) -> Result<Reply, String> {
        let tag = self.next_tag();
        self.send(format!("{tag} {command}\r\n").as_bytes())?;
        self.until_tagged(&tag)
    }

    /// [`Client::command`], with anything but OK as an error naming the command.
    pub fn ok(&mut self, command: &str) -> Result<Reply, String> {
        let reply = self.command(command)?;
        if reply.is_ok() {
            Ok(reply)
        } else {
            Err(format!("{command}: {} {}", reply.status, reply.text))
        }
    }

    /// The personal namespace: from NAMESPACE (RFC 2342) when the server has it, else
    /// no prefix and the separator of `LIST "" ""` (RFC 3501 §6.3.8).
    pub fn namespace(&mut self) -> Result<Namespace, String> {
        if self.has_capability("NAMESPACE") {
            let reply = self.ok("NAMESPACE")?;
            for u in &reply.untagged {
                // NAMESPACE (("prefix" "sep") ...) other shared
                if let [Token::Atom(name), Token::Open, Token::Open, prefix, separator, ..] = u.tokens.as_slice()
                    && name.eq_ignore_ascii_case("NAMESPACE")
                {
                    return Ok(Namespace {
                        prefix: prefix.text().unwrap_or_default(),
                        separator: separator.text().and_then(|s| s.chars().next()).unwrap_or('/'),
                    });
                }
            }
        }
        let reply = self.ok("LIST \"\" \"\"")?;
        let separator = reply
            .untagged
            .iter()
            .filter_map(|u| list_entry(&u.tokens))
            .find_map(|entry| entry.separator)
            .unwrap_or('/');
        Ok(Namespace {
            prefix: String::new(),
            separator,
        })
    }

    /// Creates every folder but INBOX (parents first, as listed) and appends every
    /// message with its flags, keywords and INTERNALDATE, over this one connection
    /// ([`fill`] spreads the APPENDs over several).
    ///
    /// Names are translated for the server's namespace. A folder with a special use
    /// is created with CREATE-SPECIAL-USE (RFC 6154 §3) when the server offers it,
    /// falling back to a plain CREATE if it refuses the use. An existing folder is
    /// not an error. With LITERAL+ (RFC 7888) APPENDs are pipelined; otherwise each
    /// waits for the server's go-ahead.
    pub fn fill(&mut self, folders: &[CorpusFolder]) -> Result<(), String> {
        let namespace = self.namespace()?;
        self.create_folders(folders, &namespace)?;
        self.append_folders(folders, &namespace)
    }

    /// The CREATE half of [`Client::fill`].
    pub fn create_folders(&mut self, folders: &[CorpusFolder], namespace: &Namespace) -> Result<(), String> {
        let special_use = self.has_capability("CREATE-SPECIAL-USE");
        for folder in folders {
            let wire = namespace.wire_name(&folder.name)?;
            if wire != "INBOX" {
                self.create(&wire, folder.special_use.filter(|_| special_use))?;
            }
        }
        Ok(())
    }

    /// The APPEND half of [`Client::fill`]: the folders must exist. Messages go in
    /// folder order, so a folder's UIDs follow its message order.
    pub fn append_folders<'a>(
        &mut self,
        folders: impl IntoIterator<Item = &'a CorpusFolder>,
        namespace: &Namespace,
    ) -> Result<(), String> {
        let pipelined = self.has_capability("LITERAL+");
        let mut in_flight: VecDeque<(String, String)> = VecDeque::new();
        let mut out: Vec<u8> = Vec::with_capacity(1 << 20);
        for folder in folders {
            let wire = quoted(&namespace.wire_name(&folder.name)?)?;
            for (k, message) in folder.messages.iter().enumerate() {
                let what = format!("APPEND to {:?} (message {k})", folder.name);
                let tag = self.next_tag();
                let head = format!(
                    "{tag} APPEND {wire} ({}) \"{}\" {{{}{}}}\r\n",
                    message.flag_list(),
                    message.internal_date_imap(),
                    message.raw.len(),
                    if pipelined { "+" } else { "" }
                );
                if !pipelined {
                    self.send(head.as_bytes())?;
                    let (line, _) = self.read_response()?;
                    if !line.starts_with(b"+") {
                        return Err(format!("{what}: refused: {}", String::from_utf8_lossy(&line)));
                    }
                    self.send(&message.raw)?;
                    self.send(b"\r\n")?;
                    let reply = self.until_tagged(&tag)?;
                    if !reply.is_ok() {
                        return Err(format!("{what}: {} {}", reply.status, reply.text));
                    }
                    continue;
                }
                out.extend_from_slice(head.as_bytes());
                if message.raw.len() > 64 << 10 {
                    self.send(&out)?;
                    out.clear();
                    self.send(&message.raw)?;
                } else {
                    out.extend_from_slice(&message.raw);
                }
                out.extend_from_slice(b"\r\n");
                in_flight.push_back((tag, what));
                if in_flight.len() >= APPEND_WINDOW || out.len() > 1 << 20 {
                    self.send(&out)?;
                    out.clear();
                }
                // A sliding window: one reply read for each command sent once full.
                self.finish_appends(&mut in_flight, APPEND_WINDOW - 1)?;
            }
        }
        self.send(&out)?;
        self.finish_appends(&mut in_flight, 0)
    }

    /// Reads the tagged replies of pipelined APPENDs, oldest first, until at most
    /// `keep` are outstanding. A failure ends the fill: the connection may be out of
    /// step (Dovecot answers a pipelined APPEND it cannot parse with BAD before reading
    /// its LITERAL+ data, and then reads that data as commands).
    fn finish_appends(&mut self, in_flight: &mut VecDeque<(String, String)>, keep: usize) -> Result<(), String> {
        while in_flight.len() > keep {
            let Some((tag, what)) = in_flight.pop_front() else {
                break;
            };
            let reply = self.until_tagged(&tag).map_err(|e| format!("{what}: {e}"))?;
            if !reply.is_ok() {
                return Err(format!("{what}: {} {}", reply.status, reply.text));
            }
        }
        Ok(())
    }

    fn create(&mut self, wire: &str, special_use: Option<&str>) -> Result<(), String> {
        let name = quoted(wire)?;
        let mut reply = match special_use {
            Some(usage) => self.command(&format!("CREATE {name} (USE ({usage}))"))?,
            None => self.command(&format!("CREATE {name}"))?,
        };
        // RFC 6154 §5.1: NO [USEATTR] when the server cannot give the folder that use.
        if special_use.is_some() && reply.status == "NO" && reply.text.to_ascii_uppercase().contains("[USEATTR]") {
            reply = self.command(&format!("CREATE {name}"))?;
        }
        // RFC 5530 §3: ALREADYEXISTS; a Dovecot with `auto = create` made it already.
        if reply.is_ok() || reply.text.to_ascii_uppercase().contains("[ALREADYEXISTS]") {
            Ok(())
        } else {
            Err(format!("CREATE {name}: {} {}", reply.status, reply.text))
        }
    }

    /// Every selectable folder and every message in it: LIST "" "*", then per folder
    /// EXAMINE (read-only, so nothing changes, \Recent included) and
    /// `UID FETCH 1:* (UID FLAGS INTERNALDATE BODY.PEEK[])`.
    pub fn snapshot(&mut self) -> Result<Snapshot, String> {
        let namespace = self.namespace()?;
        let reply = self.ok("LIST \"\" \"*\"")?;
        let mut snapshot = Snapshot::default();
        let mut folders = Vec::new();
        for u in &reply.untagged {
            let Some(entry) = list_entry(&u.tokens) else {
                continue;
            };
            let unselectable = entry
                .attributes
                .iter()
                .any(|a| a.eq_ignore_ascii_case("\\Noselect") || a.eq_ignore_ascii_case("\\NonExistent"));
            if unselectable {
                continue;
            }
            let name = namespace.folder_name(&entry.name, entry.separator)?;
            if let Some(usage) = entry.attributes.iter().find(|a| is_special_use(a)) {
                snapshot.special_use.insert(name.clone(), usage.clone());
            }
            folders.push((name, entry.name));
        }
        for (name, wire) in folders {
            let messages = self
                .folder_messages(&wire)
                .map_err(|e| format!("folder {name:?}: {e}"))?;
            if snapshot.folders.insert(name.clone(), messages).is_some() {
                return Err(format!("two listed folders map to {name:?}"));
            }
        }
        Ok(snapshot)
    }

    fn folder_messages(&mut self, wire: &str) -> Result<Vec<SnapshotMessage>, String> {
        let reply = self.ok(&format!("EXAMINE {}", quoted(wire)?))?;
        let exists = reply.untagged.iter().find_map(|u| match u.tokens.as_slice() {
            [Token::Atom(n), Token::Atom(word)] if word.eq_ignore_ascii_case("EXISTS") => n.parse::<u32>().ok(),
            _ => None,
        });
        if exists == Some(0) {
            return Ok(Vec::new());
        }
        let reply = self.ok("UID FETCH 1:* (UID FLAGS INTERNALDATE BODY.PEEK[])")?;
        // Keyed by sequence number: a server may split one message's items over
        // several FETCH responses.
        let mut by_sequence: BTreeMap<u32, Partial> = BTreeMap::new();
        for u in reply.untagged {
            let mut tokens = u.tokens.into_iter();
            let (Some(Token::Atom(sequence)), Some(Token::Atom(word)), Some(Token::Open)) =
                (tokens.next(), tokens.next(), tokens.next())
            else {
                continue;
            };
            if !word.eq_ignore_ascii_case("FETCH") {
                continue;
            }
            let sequence: u32 = sequence
                .parse()
                .map_err(|_| format!("bad sequence number in FETCH: {}", u.text))?;
            let partial = by_sequence.entry(sequence).or_default();
            parse_fetch_items(&mut tokens, partial).map_err(|e| format!("{e} in: {}", u.text))?;
        }
        let mut messages = Vec::with_capacity(by_sequence.len());
        for (sequence, p) in by_sequence {
            let missing = |what: &str| format!("message {sequence}: the server sent no {what}");
            let (mut flags, mut keywords): (Vec<String>, Vec<String>) = p
                .flags
                .ok_or_else(|| missing("FLAGS"))?
                .into_iter()
                .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
                .partition(|f| f.starts_with('\\'));
            flags.sort();
            keywords.sort();
            messages.push(SnapshotMessage {
                uid: p.uid.ok_or_else(|| missing("UID"))?,
                flags,
                keywords,
                internal_date: p.internal_date.ok_or_else(|| missing("INTERNALDATE"))?,
                raw: p.body.ok_or_else(|| missing("BODY[]"))?,
            });
        }
        messages.sort_by_key(|m| m.uid);
        Ok(messages)
    }

    /// LOGOUT, ignoring what the server says: the test is done with it.
    pub fn logout(mut self) {
        let _ = self.command("LOGOUT");
    }

    fn refresh_capabilities(&mut self) -> Result<(), String> {
        let reply = self.ok("CAPABILITY")?;
        self.capabilities = reply
            .untagged
            .iter()
            .filter(|u| matches!(u.tokens.first(), Some(Token::Atom(a)) if a.eq_ignore_ascii_case("CAPABILITY")))
            .flat_map(|u| u.tokens[1..].iter().filter_map(Token::text))
            .map(|c| c.to_ascii_uppercase())
            .collect();
        Ok(())
    }

    fn next_tag(&mut self) -> String {
        self.tag += 1;
        format!("t{}", self.tag)
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        let stream = self.stream.get_mut();
        stream
            .write_all(bytes)
            .and_then(|()| stream.flush())
            .map_err(|e| format!("cannot write to the IMAP server: {e}"))
    }

    /// Reads responses up to the one tagged `tag`; untagged ones are collected and
    /// anything else (another tag, a continuation) is a protocol error.
    fn until_tagged(&mut self, tag: &str) -> Result<Reply, String> {
        let mut untagged = Vec::new();
        loop {
            let (text, literals) = self.read_response()?;
            if let Some(rest) = text.strip_prefix(b"* ") {
                // Literal offsets count from the start of the line, before "* ".
                let literals = literals.into_iter().map(|(end, l)| (end - 2, l)).collect();
                untagged.push(Untagged {
                    text: String::from_utf8_lossy(rest).into_owned(),
                    tokens: tokenize(rest, literals),
                });
                continue;
            }
            let line = String::from_utf8_lossy(&text).into_owned();
            let Some(rest) = line.strip_prefix(tag).and_then(|r| r.strip_prefix(' ')) else {
                return Err(format!("expected the reply to {tag}, got: {line}"));
            };
            let (status, text) = rest.split_once(' ').unwrap_or((rest, ""));
            return Ok(Reply {
                status: status.to_ascii_uppercase(),
                text: text.to_string(),
                untagged,
            });
        }
    }

    /// One whole response: its lines joined (CRLFs removed) with each literal's
    /// `{n}` announcement left in place, and the literals' bytes in order, each with
    /// the offset in the text just after its announcement.
    fn read_response(&mut self) -> Result<(Vec<u8>, Literals), String> {
        let mut text = Vec::new();
        let mut literals = Vec::new();
        loop {
            let start = text.len();
            let read = (&mut self.stream)
                .take(MAX_LINE as u64)
                .read_until(b'\n', &mut text)
                .map_err(|e| format!("cannot read from the IMAP server: {e}"))?;
            if read == 0 {
                return Err(format!(
                    "the IMAP server closed the connection (after {:?})",
                    String::from_utf8_lossy(&text)
                ));
            }
            if text.last() != Some(&b'\n') {
                return Err(format!("a response line over {MAX_LINE} bytes"));
            }
            text.pop();
            if text.last() == Some(&b'\r') {
                text.pop();
            }
            let Some(length) = literal_length(&text[start..]) else {
                return Ok((text, literals));
            };
            if length > MAX_LITERAL {
                return Err(format!("a literal of {length} bytes from the server"));
            }
            let mut literal = vec![0; length];
            self.stream
                .read_exact(&mut literal)
                .map_err(|e| format!("cannot read a {length}-byte literal: {e}"))?;
            literals.push((text.len(), literal));
        }
    }
}

/// A response's literals, each with the offset in the response text just after its
/// `{n}` announcement.
type Literals = Vec<(usize, Vec<u8>)>;

/// `{n}` (or `{n+}`) at the end of a line: a literal of n bytes follows.
fn literal_length(line: &[u8]) -> Option<usize> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Splits a response (as [`Client::read_response`] joins it) into tokens. Lenient:
/// free text after a status word is tokenised too, and an unclosed quote ends at the
/// end of the line.
fn tokenize(text: &[u8], literals: Literals) -> Vec<Token> {
    let mut literals = literals.into_iter().peekable();
    let mut tokens = Vec::new();
    let mut at = 0;
    while at < text.len() {
        match text[at] {
            b' ' => at += 1,
            b'(' => {
                tokens.push(Token::Open);
                at += 1;
            }
            b')' => {
                tokens.push(Token::Close);
                at += 1;
            }
            b'"' => {
                let mut value = Vec::new();
                at += 1;
                while at < text.len() && text[at] != b'"' {
                    if text[at] == b'\\' && at + 1 < text.len() {
                        at += 1;
                    }
                    value.push(text[at]);
                    at += 1;
                }
                at += 1;
                tokens.push(Token::String(value));
            }
            // The announcement `{n}` stands where the literal's bytes were.
            b'{' if literals
                .peek()
                .is_some_and(|(end, _)| *end > at && literal_length(&text[at..*end]).is_some()) =>
            {
                let (end, literal) = literals.next().unwrap_or_default();
                tokens.push(Token::String(literal));
                at = end;
            }
            _ => {
                let end = text[at..]
                    .iter()
                    .position(|&b| matches!(b, b' ' | b'(' | b')' | b'"'))
                    .map_or(text.len(), |p| at + p);
                let atom = String::from_utf8_lossy(&text[at..end]).into_owned();
                tokens.push(if atom.eq_ignore_ascii_case("NIL") {
                    Token::Nil
                } else {
                    Token::Atom(atom)
                });
                at = end;
            }
        }
    }
    tokens
}

/// A quoted string (RFC 3501 §4.3) for printable ASCII.
fn quoted(text: &str) -> Result<String, String> {
    if !text.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return Err(format!(
            "{text:?} cannot be sent as a quoted string (printable ASCII only)"
        ));
    }
    Ok(format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\"")))
}

/// RFC 6154 §2 use attributes.
fn is_special_use(attribute: &str) -> bool {
    [
        "\\All",
        "\\Archive",
        "\\Drafts",
        "\\Flagged",
        "\\Junk",
        "\\Sent",
        "\\Trash",
    ]
    .iter()
    .any(|u| u.eq_ignore_ascii_case(attribute))
}

struct ListEntry {
    attributes: Vec<String>,
    separator: Option<char>,
    name: String,
}

/// `LIST (attributes) "sep" name` (RFC 3501 §7.2.2).
fn list_entry(tokens: &[Token]) -> Option<ListEntry> {
    let [Token::Atom(word), Token::Open, rest @ ..] = tokens else {
        return None;
    };
    if !word.eq_ignore_ascii_case("LIST") {
        return None;
    }
    let close = rest.iter().position(|t| *t == Token::Close)?;
    let attributes = rest[..close].iter().filter_map(Token::text).collect();
    let separator = rest.get(close + 1)?.text().and_then(|s| s.chars().next());
    let name = rest.get(close + 2)?.text()?;
    Some(ListEntry {
        attributes,
        separator,
        name,
    })
}

#[derive(Default)]
struct Partial {
    uid: Option<u32>,
    flags: Option<Vec<String>>,
    internal_date: Option<String>,
    body: Option<Vec<u8>>,
}

/// The items of one FETCH response, after its opening parenthesis.
fn parse_fetch_items(tokens: &mut impl Iterator<Item = Token>, partial: &mut Partial) -> Result<(), String> {
    loop {
        let name = match tokens.next() {
            Some(Token::Atom(name)) => name.to_ascii_uppercase(),
            Some(Token::Close) | None => return Ok(()),
            Some(other) => return Err(format!("unexpected {other:?} where a FETCH item was due")),
        };
        match name.as_str() {
            "UID" => {
                let value = tokens.next().and_then(|t| t.text()).unwrap_or_default();
                partial.uid = Some(value.parse().map_err(|_| format!("bad UID {value:?}"))?);
            }
            "FLAGS" => {
                if tokens.next() != Some(Token::Open) {
                    return Err("FLAGS without a list".into());
                }
                let mut flags = Vec::new();
                loop {
                    match tokens.next() {
                        Some(Token::Close) => break,
                        Some(t) => flags.extend(t.text()),
                        None => return Err("unclosed FLAGS list".into()),
                    }
                }
                partial.flags = Some(flags);
            }
            "INTERNALDATE" => partial.internal_date = tokens.next().and_then(|t| t.text()),
            "BODY[]" => {
                partial.body = match tokens.next() {
                    Some(Token::String(bytes)) => Some(bytes),
                    // NIL: the server could not read the message.
                    _ => None,
                }
            }
            // MODSEQ (n) and anything else we did not ask for: skip one value.
            _ => skip_value(tokens),
        }
    }
}

fn skip_value(tokens: &mut impl Iterator<Item = Token>) {
    let mut depth = 0usize;
    for token in tokens {
        match token {
            Token::Open => depth += 1,
            Token::Close => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth == 0 {
            return;
        }
    }
}

/// One message as a server serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotMessage {
    /// 0 in a snapshot made from a corpus.
    pub uid: u32,
    /// System flags, sorted, without `\Recent` (which says which session saw the
    /// message first, not anything migrated).
    pub flags: Vec<String>,
    /// Keywords, sorted.
    pub keywords: Vec<String>,
    /// INTERNALDATE as served, e.g. "05-Mar-2019 08:33:22 +0000".
    pub internal_date: String,
    /// BODY[]: the whole message.
    pub raw: Vec<u8>,
}

impl SnapshotMessage {
    /// The INTERNALDATE's instant (seconds since the epoch), or None if unreadable.
    pub fn internal_instant(&self) -> Option<i64> {
        parse_imap_date_time(&self.internal_date).map(|(t, _)| t)
    }

    /// "Message-ID <…>, Subject …, N bytes": enough to find the message in a mailbox.
    pub fn describe(&self) -> String {
        let id = header(&self.raw, "Message-ID").unwrap_or_else(|| "no Message-ID".into());
        let subject = header(&self.raw, "Subject").unwrap_or_default();
        format!("[{id}, Subject {subject:?}, {} bytes]", self.raw.len())
    }
}

/// A mailbox as a server serves it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Folder name → messages in UID order. Names are UTF-8 with `/` between levels,
    /// the namespace prefix removed, and "INBOX" for the inbox.
    pub folders: BTreeMap<String, Vec<SnapshotMessage>>,
    /// Folder name → its RFC 6154 special-use attribute as the server listed it.
    pub special_use: BTreeMap<String, String>,
}

impl Snapshot {
    /// What a server should serve after [`Client::fill`] with `folders`: UIDs 0,
    /// INTERNALDATEs in the zone they were appended with.
    pub fn from_corpus(folders: &[CorpusFolder]) -> Snapshot {
        let mut snapshot = Snapshot::default();
        for folder in folders {
            let messages = folder
                .messages
                .iter()
                .map(|m| {
                    let (mut flags, mut keywords) = (m.flags.clone(), m.keywords.clone());
                    flags.sort();
                    keywords.sort();
                    SnapshotMessage {
                        uid: 0,
                        flags,
                        keywords,
                        internal_date: imap_date_time(m.internal_date, m.tz_offset_minutes),
                        raw: m.raw.clone(),
                    }
                })
                .collect();
            snapshot.folders.insert(folder.name.clone(), messages);
            if let Some(usage) = folder.special_use {
                snapshot.special_use.insert(folder.name.clone(), usage.to_string());
            }
        }
        snapshot
    }

    /// Messages in all folders.
    pub fn message_count(&self) -> usize {
        self.folders.values().map(Vec::len).sum()
    }
}

/// What a Tern account holds, read straight from its store (no IMAP, and not through
/// any migration's records), in the snapshot shape; folders without messages are left
/// out. INTERNALDATEs are given in UTC: the store keeps the instant only.
pub async fn store_snapshot(store: &dyn tern_store::Store, account: tern_store::AccountId) -> Result<Snapshot, String> {
    let mut snapshot = Snapshot::default();
    let err = |e: tern_store::StoreError| e.to_string();
    for mailbox in store.mailboxes(account).await.map_err(err)? {
        let summaries = store.messages(mailbox.id).await.map_err(err)?;
        if summaries.is_empty() {
            continue;
        }
        let mut messages = Vec::with_capacity(summaries.len());
        for s in summaries {
            let raw = store.read_message(mailbox.id, s.uid).await.map_err(err)?;
            let mut flags: Vec<String> = s.flags.system.names().map(str::to_string).collect();
            flags.sort();
            let mut keywords = s.flags.keywords.clone();
            keywords.sort();
            messages.push(SnapshotMessage {
                uid: s.uid,
                flags,
                keywords,
                internal_date: imap_date_time(s.internal_date, 0),
                raw,
            });
        }
        snapshot.folders.insert(mailbox.name.clone(), messages);
    }
    Ok(snapshot)
}

/// Where `actual` differs from `expected`, one readable line per difference; empty
/// when they agree.
///
/// Folders must match by name. Within a folder messages are compared as multisets of
/// (bytes, flags, keywords, INTERNALDATE instant): UIDs and order are ignored, and so
/// is the zone of an INTERNALDATE (Dovecot's maildir keeps only the instant).
/// Special-use attributes are not compared: compare [`Snapshot::special_use`]
/// directly where the server is expected to announce them.
pub fn diff(expected: &Snapshot, actual: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    for (name, messages) in &expected.folders {
        if !actual.folders.contains_key(name) {
            out.push(format!("folder {name:?} is missing ({} messages)", messages.len()));
        }
    }
    for (name, messages) in &actual.folders {
        match expected.folders.get(name) {
            None => out.push(format!("unexpected folder {name:?} ({} messages)", messages.len())),
            Some(want) => diff_folder(name, want, messages, &mut out),
        }
    }
    out
}

type MessageKey<'a> = (&'a [u8], &'a [String], &'a [String], Result<i64, &'a str>);

fn key(m: &SnapshotMessage) -> MessageKey<'_> {
    (
        &m.raw,
        &m.flags,
        &m.keywords,
        m.internal_instant().ok_or(m.internal_date.as_str()),
    )
}

fn diff_folder(folder: &str, expected: &[SnapshotMessage], actual: &[SnapshotMessage], out: &mut Vec<String>) {
    // Exact matches first, as a multiset: same bytes twice must be there twice.
    let mut unmatched_actual: HashMap<MessageKey<'_>, Vec<&SnapshotMessage>> = HashMap::new();
    for m in actual {
        unmatched_actual.entry(key(m)).or_default().push(m);
    }
    let mut missing = Vec::new();
    for m in expected {
        match unmatched_actual.get_mut(&key(m)).and_then(Vec::pop) {
            Some(_) => {}
            None => missing.push(m),
        }
    }
    let mut extra: Vec<&SnapshotMessage> = unmatched_actual.into_values().flatten().collect();
    extra.sort_by_key(|m| m.uid);

    for want in missing {
        // The same bytes with other metadata, else the same Message-ID with other bytes.
        let same_bytes = extra.iter().position(|got| got.raw == want.raw);
        let same_id = || {
            let id = header(&want.raw, "Message-ID")?;
            extra
                .iter()
                .position(|got| header(&got.raw, "Message-ID").as_deref() == Some(id.as_str()))
        };
        let Some(at) = same_bytes.or_else(same_id) else {
            out.push(format!("{folder:?}: missing {}", want.describe()));
            continue;
        };
        let got = extra.remove(at);
        let what = format!("{folder:?}: {} (UID {})", want.describe(), got.uid);
        if got.raw != want.raw {
            out.push(format!("{what}: {}", first_difference(&want.raw, &got.raw)));
        }
        if got.flags != want.flags {
            out.push(format!("{what}: flags {:?}, expected {:?}", got.flags, want.flags));
        }
        if got.keywords != want.keywords {
            out.push(format!(
                "{what}: keywords {:?}, expected {:?}",
                got.keywords, want.keywords
            ));
        }
        if got.internal_instant().ok_or(&got.internal_date) != want.internal_instant().ok_or(&want.internal_date) {
            out.push(format!(
                "{what}: INTERNALDATE {:?}, expected {:?}",
                got.internal_date, want.internal_date
            ));
        }
    }
    for got in extra {
        out.push(format!("{folder:?}: unexpected {} (UID {})", got.describe(), got.uid));
    }
}

/// Where two messages' bytes first differ, with a little context from each.
fn first_difference(expected: &[u8], actual: &[u8]) -> String {
    let at = expected
        .iter()
        .zip(actual)
        .position(|(a, b)| a != b)
        .unwrap_or(expected.len().min(actual.len()));
    let context =
        |bytes: &[u8]| String::from_utf8_lossy(&bytes[at.min(bytes.len())..(at + 40).min(bytes.len())]).into_owned();
    format!(
        "bytes differ from offset {at} ({} bytes, expected {}): got {:?}, expected {:?}",
        actual.len(),
        expected.len(),
        context(actual),
        context(expected)
    )
}

/// A header field's unfolded value from a message's header block.
fn header(raw: &[u8], name: &str) -> Option<String> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n").peekable();
    while let Some(line) = lines.next() {
        let Some((field, value)) = line.split_once(':') else {
            continue;
        };
        if field.eq_ignore_ascii_case(name) {
            let mut value = value.trim().to_string();
            while let Some(next) = lines.next_if(|l| l.starts_with([' ', '\t'])) {
                value.push(' ');
                value.push_str(next.trim());
            }
            return Some(value);
        }
    }
    None
}

/// Connects over plain TCP, logs in with LOGIN and fills the mailbox as
/// [`Client::fill`] does, but with the folders' APPENDs spread over one connection per
/// CPU (at most 4): a server parses and indexes each message as it saves it, which
/// for one connection is one busy core, and a big corpus would take minutes.
pub fn fill(addr: SocketAddr, user: &str, password: &str, folders: &[CorpusFolder]) -> Result<(), String> {
    let mut client = Client::connect(addr)?;
    client.login(user, password)?;
    let namespace = client.namespace()?;
    client.create_folders(folders, &namespace)?;
    let connections = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4);
    let groups = balance(folders, connections);
    let namespace = &namespace;
    std::thread::scope(|scope| {
        let workers: Vec<_> = groups
            .iter()
            .skip(1)
            .map(|group| {
                scope.spawn(move || -> Result<(), String> {
                    let mut client = Client::connect(addr)?;
                    client.login(user, password)?;
                    client.append_folders(group.iter().copied(), namespace)?;
                    client.logout();
                    Ok(())
                })
            })
            .collect();
        let mut result = match groups.first() {
            Some(group) => client.append_folders(group.iter().copied(), namespace),
            None => Ok(()),
        };
        for worker in workers {
            let outcome = worker
                .join()
                .unwrap_or_else(|_| Err("a fill connection's thread panicked".into()));
            result = result.and(outcome);
        }
        result
    })?;
    client.logout();
    Ok(())
}

/// Up to `n` non-empty groups of folders with about equal bytes: the biggest folder
/// first, each into the lightest group so far.
fn balance(folders: &[CorpusFolder], n: usize) -> Vec<Vec<&CorpusFolder>> {
    let bytes = |f: &CorpusFolder| f.messages.iter().map(|m| m.raw.len()).sum::<usize>();
    let mut order: Vec<&CorpusFolder> = folders.iter().collect();
    order.sort_by_key(|f| std::cmp::Reverse(bytes(f)));
    let mut groups: Vec<(usize, Vec<&CorpusFolder>)> = vec![(0, Vec::new()); n.max(1)];
    for folder in order {
        if let Some(lightest) = groups.iter_mut().min_by_key(|(load, _)| *load) {
            lightest.0 += bytes(folder);
            lightest.1.push(folder);
        }
    }
    groups.into_iter().map(|(_, g)| g).filter(|g| !g.is_empty()).collect()
}

/// Connects over plain TCP, logs in with LOGIN and takes a [`Client::snapshot`].
pub fn snapshot(addr: SocketAddr, user: &str, password: &str) -> Result<Snapshot, String> {
    let mut client = Client::connect(addr)?;
    client.login(user, password)?;
    let snapshot = client.snapshot()?;
    client.logout();
    Ok(snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tokens of `text`, each `{n}` in it followed by the next of `literals`.
    fn tokens(text: &str, literals: &[&[u8]]) -> Vec<Token> {
        let mut placed = Vec::new();
        let mut from = 0;
        for literal in literals {
            let end = from + text[from..].find('}').expect("an announcement per literal") + 1;
            placed.push((end, literal.to_vec()));
            from = end;
        }
        tokenize(text.as_bytes(), placed)
    }

    #[test]
    fn responses_tokenise_with_quotes_literals_and_nil() {
        let atom = |a: &str| Token::Atom(a.into());
        let string = |s: &[u8]| Token::String(s.to_vec());
        assert_eq!(
            tokens(
                "1 FETCH (UID 7 FLAGS (\\Seen $Label1) INTERNALDATE \" 5-Mar-2019 14:03:22 +0530\" BODY[] {5})",
                &[b"ab\r\nc"]
            ),
            vec![
                atom("1"),
                atom("FETCH"),
                Token::Open,
                atom("UID"),
                atom("7"),
                atom("FLAGS"),
                Token::Open,
                atom("\\Seen"),
                atom("$Label1"),
                Token::Close,
                atom("INTERNALDATE"),
                string(b" 5-Mar-2019 14:03:22 +0530"),
                atom("BODY[]"),
                string(b"ab\r\nc"),
                Token::Close,
            ]
        );
        assert_eq!(
            tokens(r#"LIST (\HasNoChildren) NIL "a \"b\" \\c""#, &[]),
            vec![
                atom("LIST"),
                Token::Open,
                atom("\\HasNoChildren"),
                Token::Close,
                Token::Nil,
                string(br#"a "b" \c"#),
            ]
        );
        assert_eq!(literal_length(b"* 1 FETCH (BODY[] {12}"), Some(12));
        assert_eq!(literal_length(b"A APPEND x {3+}"), Some(3));
        assert_eq!(literal_length(b"* OK {x}"), None);
        assert_eq!(literal_length(b"* OK done"), None);
    }

    #[test]
    fn names_translate_both_ways_through_a_namespace() {
        let dotted = Namespace {
            prefix: "INBOX.".into(),
            separator: '.',
        };
        assert_eq!(dotted.wire_name("INBOX").as_deref(), Ok("INBOX"));
        assert_eq!(
            dotted.wire_name("Käse & Brot/Ünïcode").as_deref(),
            Ok("INBOX.K&AOQ-se &- Brot.&ANw-n&AO8-code")
        );
        assert_eq!(
            dotted
                .folder_name("INBOX.K&AOQ-se &- Brot.&ANw-n&AO8-code", Some('.'))
                .as_deref(),
            Ok("Käse & Brot/Ünïcode")
        );
        assert_eq!(dotted.folder_name("INBOX", Some('.')).as_deref(), Ok("INBOX"));
        assert!(dotted.wire_name("v1.2").is_err());
        let plain = Namespace::default();
        assert_eq!(plain.wire_name("Archive/2019").as_deref(), Ok("Archive/2019"));
        assert_eq!(
            plain.folder_name("Archive/2019", Some('/')).as_deref(),
            Ok("Archive/2019")
        );
        assert!(plain.folder_name("&Jjo", Some('/')).is_err());
    }

    #[test]
    fn diff_ignores_order_and_uids_but_reports_each_kind_of_difference() {
        let message = |uid: u32, raw: &str, flags: &[&str]| SnapshotMessage {
            uid,
            flags: flags.iter().map(|f| f.to_string()).collect(),
            keywords: Vec::new(),
            internal_date: "05-Mar-2019 14:03:22 +0530".into(),
            raw: raw.as_bytes().to_vec(),
        };
        let a = "Message-ID: <a@x>\r\nSubject: A\r\n\r\nbody a\r\n";
        let b = "Message-ID: <b@x>\r\nSubject: B\r\n\r\nbody b\r\n";
        let mut expected = Snapshot::default();
        expected.folders.insert(
            "INBOX".into(),
            vec![
                message(0, a, &["\\Seen"]),
                message(0, a, &["\\Seen"]),
                message(0, b, &[]),
            ],
        );
        let mut actual = expected.clone();
        let inbox = actual.folders.get_mut("INBOX").expect("INBOX");
        inbox.reverse();
        for (uid, m) in inbox.iter_mut().enumerate() {
            m.uid = uid as u32 + 1;
            // The same instant in another zone.
            m.internal_date = "05-Mar-2019 08:33:22 +0000".into();
        }
        assert_eq!(diff(&expected, &actual), Vec::<String>::new());

        let inbox = actual.folders.get_mut("INBOX").expect("INBOX");
        inbox.pop(); // one copy of `a`
        inbox[0].flags = vec!["\\Flagged".into()];
        actual.folders.insert("Extra".into(), Vec::new());
        let differences = diff(&expected, &actual);
        assert_eq!(differences.len(), 3, "{differences:#?}");
        assert!(differences[0].contains("unexpected folder \"Extra\""));
        assert!(
            differences.iter().any(|d| d.contains("missing [<a@x>")),
            "{differences:#?}"
        );
        assert!(
            differences.iter().any(|d| d.contains("flags [\"\\\\Flagged\"]")),
            "{differences:#?}"
        );

        let mut changed = expected.clone();
        changed.folders.get_mut("INBOX").expect("INBOX")[2].raw = b.replace("body b", "body B").into_bytes();
        let differences = diff(&expected, &changed);
        assert_eq!(differences.len(), 1, "{differences:#?}");
        assert!(differences[0].contains("bytes differ from offset"), "{differences:#?}");
    }

    #[test]
    fn without_literal_plus_each_append_waits_for_the_go_ahead() {
        use crate::dovecot::Dovecot;
        use crate::migration_corpus::{CorpusSpec, mailbox};
        if Dovecot::skip_if_missing("without_literal_plus_each_append_waits_for_the_go_ahead") {
            return;
        }
        let dovecot = Dovecot::start().unwrap_or_else(|e| panic!("{e}"));
        let corpus = mailbox(&CorpusSpec {
            messages: 30,
            folders: 4,
            large_messages: 1,
            ..CorpusSpec::small()
        });
        let mut client = Client::connect(dovecot.imap_addr()).expect("connect");
        client.login("frank", Dovecot::PASSWORD).expect("login");
        // As a server without RFC 7888 would announce itself.
        client.capabilities.retain(|c| c != "LITERAL+");
        client
            .fill(&corpus)
            .unwrap_or_else(|e| panic!("{e}\n{}", dovecot.log()));
        let snapshot = snapshot(dovecot.imap_addr(), "frank", Dovecot::PASSWORD).expect("snapshot");
        assert_eq!(diff(&Snapshot::from_corpus(&corpus), &snapshot), Vec::<String>::new());
    }
}
