//! IMAP clients someone else wrote — curl, mbsync (isync), offlineimap and fetchmail —
//! against Tern over loopback, the way their users run them.
//!
//! Each client runs in a temporary folder of its own, with its own configuration file
//! and `HOME` pointing there (so nothing reads or writes the real home), under a time
//! limit after which it is killed; the folder goes when the test ends. The Debian
//! packages are `curl isync offlineimap3 fetchmail` (scripts/test.sh installs them).
//!
//! Maildir clients store messages with LF line endings (Maildir is a local Unix format)
//! and mbsync adds an `X-TUID` header to each message it copies; apart from that every
//! message must arrive byte for byte as it was stored.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Client, PASSWORD, Server, USER};
use tern_store::{Flags, NewMessage, Store, SystemFlags};

// --- Running a client ------------------------------------------------------------------

/// How long one run of a client may take before it is killed and the test fails.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// What a client run left behind.
struct Run {
    success: bool,
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    /// stdout and stderr as text, for assertion messages.
    fn log(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code,
            String::from_utf8_lossy(&self.stdout),
            self.stderr
        )
    }
}

/// A command for `program` with a clean environment: only `PATH`, `HOME` set to the
/// client's own folder, and a UTF-8 C locale.
fn client(program: &str, home: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .env("HOME", home)
        .env("TMPDIR", home)
        .env("LC_ALL", "C.UTF-8")
        .current_dir(home);
    cmd
}

/// Runs a client to completion off the async workers (the server keeps serving), killing
/// it after [`CLIENT_TIMEOUT`].
async fn run(cmd: Command) -> Run {
    tokio::task::spawn_blocking(move || run_blocking(cmd))
        .await
        .expect("client task")
}

fn run_blocking(mut cmd: Command) -> Run {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{program} could not start ({e}): install curl isync offlineimap3 fetchmail, as scripts/test.sh does"
            )
        });
    let mut out = child.stdout.take().expect("stdout pipe");
    let mut err = child.stderr.take().expect("stderr pipe");
    let stdout = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let stderr = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for client") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let run = Run {
        success: status.is_some_and(|s| s.success()),
        code: status.and_then(|s| s.code()),
        stdout: stdout.join().expect("stdout reader"),
        stderr: String::from_utf8_lossy(&stderr.join().expect("stderr reader")).into_owned(),
    };
    assert!(
        status.is_some(),
        "{program} did not finish within {CLIENT_TIMEOUT:?}\n{}",
        run.log()
    );
    run
}

/// Runs a client and fails the test, with its output, unless it exits successfully.
async fn run_ok(cmd: Command) -> Run {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let run = run(cmd).await;
    assert!(run.success, "{program} failed\n{}", run.log());
    run
}

// --- Messages ----------------------------------------------------------------------------

/// A small message with a known Message-ID, CRLF line endings as on the wire.
fn message(id: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Bob Builder <bob@example.org>\r\nTo: {USER}\r\nSubject: {subject}\r\nDate: Tue, 3 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{id}>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

/// Realistic generated messages (multipart, 8-bit UTF-8), `size` bytes or so each.
fn corpus(seed: u64, count: usize, size: usize) -> Vec<Vec<u8>> {
    tern_testkit::corpus::messages(seed, count, size)
}

/// The value of the Message-ID header, the identity of a message across both sides.
fn message_id(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    text.lines()
        .take_while(|l| !l.trim_end_matches('\r').is_empty())
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("Message-ID")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no Message-ID in {text}"))
}

/// CRLF line endings turned into LF, as Maildir clients store messages.
fn lf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\r' && raw.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(raw[i]);
        i += 1;
    }
    out
}

/// The message without header fields called `name` (header section only), for the
/// tracking headers clients add (mbsync's `X-TUID`).
fn without_header(raw: &[u8], name: &str) -> Vec<u8> {
    let prefix = format!("{}:", name.to_ascii_lowercase());
    let mut out = Vec::with_capacity(raw.len());
    let mut in_header = true;
    for line in raw.split_inclusive(|&b| b == b'\n') {
        if in_header && (line == b"\n" || line == b"\r\n") {
            in_header = false;
        }
        if in_header && line.to_ascii_lowercase().starts_with(prefix.as_bytes()) {
            continue;
        }
        out.extend_from_slice(line);
    }
    out
}

/// The Maildir flag letters (DFRST, sorted) of IMAP system flags.
fn letters(flags: &Flags) -> String {
    [
        (SystemFlags::DRAFT, 'D'),
        (SystemFlags::FLAGGED, 'F'),
        (SystemFlags::ANSWERED, 'R'),
        (SystemFlags::SEEN, 'S'),
        (SystemFlags::DELETED, 'T'),
    ]
    .into_iter()
    .filter(|(f, _)| flags.system.contains(*f))
    .map(|(_, c)| c)
    .collect()
}

// --- The Tern side -------------------------------------------------------------------------

/// A message as Tern stores it.
#[derive(Debug)]
struct Stored {
    uid: u32,
    raw: Vec<u8>,
    /// Maildir letters of its flags.
    flags: String,
}

async fn mailbox(server: &Server, name: &str) -> tern_store::Mailbox {
    let account = server.store.account(USER).await.expect("account");
    server
        .store
        .mailbox(account.id, name)
        .await
        .unwrap_or_else(|e| panic!("mailbox {name} on Tern: {e}"))
}

/// Every message of a Tern mailbox by Message-ID.
async fn tern_messages(server: &Server, name: &str) -> BTreeMap<String, Stored> {
    let mailbox = mailbox(server, name).await;
    let mut out = BTreeMap::new();
    for summary in server.store.messages(mailbox.id).await.expect("messages") {
        let raw = server
            .store
            .read_message(mailbox.id, summary.uid)
            .await
            .expect("read message");
        let id = message_id(&raw);
        let stored = Stored {
            uid: summary.uid,
            raw,
            flags: letters(&summary.flags),
        };
        if let Some(other) = out.insert(id.clone(), stored) {
            panic!("{id} twice in Tern's {name} (UID {} and more)", other.uid);
        }
    }
    out
}

/// Creates a mailbox on Tern and appends messages with the given flags.
async fn fill_mailbox(server: &Server, name: &str, messages: &[(Vec<u8>, SystemFlags)]) {
    let account = server.store.account(USER).await.expect("account");
    let mailbox = server
        .store
        .create_mailbox(account.id, name, None)
        .await
        .expect("create mailbox");
    let new = messages
        .iter()
        .map(|(raw, flags)| NewMessage {
            flags: Flags::system(*flags),
            ..NewMessage::new(raw.clone())
        })
        .collect();
    server.store.append(mailbox.id, new).await.expect("append");
}

/// An IMAP session of "another device" that runs one command and checks it succeeded.
async fn imap_ok(client: &mut Client, command: &str) -> Vec<String> {
    let r = client.run(command).await;
    let tag = command.split(' ').next().expect("tag");
    assert!(
        r.last().is_some_and(|l| l.starts_with(&format!("{tag} OK"))),
        "{command}: {r:?}"
    );
    r
}

// --- The Maildir side ----------------------------------------------------------------------

/// A message file of a local Maildir.
#[derive(Debug)]
struct Local {
    path: PathBuf,
    raw: Vec<u8>,
    /// Maildir letters of its flags (DFRST only, sorted).
    flags: String,
}

/// Every message of a Maildir folder (`cur/` and `new/`) by Message-ID.
fn maildir_messages(folder: &Path) -> BTreeMap<String, Local> {
    let mut out = BTreeMap::new();
    for sub in ["cur", "new"] {
        let dir = folder.join(sub);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("Maildir folder {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("entry").path();
            let name = path.file_name().expect("name").to_string_lossy().into_owned();
            let flags = match name.rsplit_once(":2,") {
                Some((_, info)) => {
                    let mut f: Vec<char> = info.chars().filter(|c| "DFRST".contains(*c)).collect();
                    f.sort_unstable();
                    f.into_iter().collect()
                }
                None => String::new(),
            };
            let raw = std::fs::read(&path).expect("read message file");
            let id = message_id(&raw);
            if let Some(other) = out.insert(id.clone(), Local { path, raw, flags }) {
                panic!("{id} twice in {} ({})", folder.display(), other.path.display());
            }
        }
    }
    out
}

/// Sets a Maildir message's flags the way a mail reader does: rename it into `cur/`
/// with the new info suffix.
fn set_local_flags(local: &Local, flags: &str) {
    let name = local.path.file_name().expect("name").to_string_lossy().into_owned();
    let base = name.rsplit_once(":2,").map_or(name.as_str(), |(b, _)| b);
    let folder = local.path.parent().and_then(Path::parent).expect("Maildir folder");
    std::fs::rename(&local.path, folder.join("cur").join(format!("{base}:2,{flags}"))).expect("rename message file");
}

/// Puts a new message into a Maildir folder the way a local delivery agent does:
/// written in `tmp/`, then moved into `new/`.
fn add_local_message(folder: &Path, unique: &str, raw: &[u8]) {
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(folder.join(sub)).expect("Maildir folder");
    }
    let tmp = folder.join("tmp").join(unique);
    std::fs::write(&tmp, raw).expect("write message file");
    std::fs::rename(&tmp, folder.join("new").join(unique)).expect("deliver message file");
}

/// Both sides hold the same messages, with equal content (modulo `normalise` applied
/// to both) and equal flags.
fn assert_mirrored(
    what: &str,
    tern: &BTreeMap<String, Stored>,
    local: &BTreeMap<String, Local>,
    normalise: impl Fn(&[u8]) -> Vec<u8>,
) {
    let tern_ids: Vec<&String> = tern.keys().collect();
    let local_ids: Vec<&String> = local.keys().collect();
    assert_eq!(tern_ids, local_ids, "{what}: messages on Tern vs local");
    for (id, stored) in tern {
        let l = &local[id];
        assert!(
            normalise(&stored.raw) == normalise(&l.raw),
            "{what}: {id} differs\n--- Tern\n{}\n--- local {}\n{}",
            String::from_utf8_lossy(&stored.raw),
            l.path.display(),
            String::from_utf8_lossy(&l.raw)
        );
        assert_eq!(
            stored.flags,
            l.flags,
            "{what}: flags of {id} (Tern vs {})",
            l.path.display()
        );
    }
}

/// Asserts a local copy is the stored message as a Maildir client writes it: LF line
/// endings, `extra` headers (the client's tracking headers) aside.
fn assert_arrived(original: &[u8], local: &Local, extra: &[&str]) {
    let mut got = local.raw.clone();
    for name in extra {
        got = without_header(&got, name);
    }
    assert!(
        got == lf(original),
        "{} is not the message Tern stored\n--- stored\n{}\n--- local\n{}",
        local.path.display(),
        String::from_utf8_lossy(original),
        String::from_utf8_lossy(&local.raw)
    );
}

// --- curl ----------------------------------------------------------------------------------

/// curl with the account's credentials and no ~/.curlrc.
fn curl(home: &Path, url: &str, extra: &[&str]) -> Command {
    let mut cmd = client("curl", home);
    cmd.args(["-q", "--silent", "--show-error", "--max-time", "20"])
        .args(["--user", &format!("{USER}:{PASSWORD}")])
        .args(extra)
        .arg(url);
    cmd
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_lists_fetches_searches_and_uploads() {
    let server = Server::start().await;
    // Two small messages and a large one (streamed from its own file by the store).
    let mut inbox = corpus(1, 2, 2_000);
    inbox.extend(corpus(2, 1, 300_000));
    let uids = server.deliver(inbox.clone()).await;
    assert_eq!(uids, [1, 2, 3]);
    let work = message("work.1@example.org", "Quarterly numbers", "See attached.");
    fill_mailbox(&server, "Projects/Work", &[(work.clone(), SystemFlags::empty())]).await;
    let home = tempfile::tempdir().expect("client folder");
    let h = home.path();
    let base = format!("imap://127.0.0.1:{}", server.port());

    // The top level lists every mailbox; a mailbox's URL lists the ones below it.
    let r = run_ok(curl(h, &format!("{base}/"), &[])).await;
    let listing = String::from_utf8_lossy(&r.stdout).into_owned();
    for name in ["\"INBOX\"", "\"Projects/Work\"", "\"Sent\"", "\"Trash\""] {
        assert!(listing.contains(name), "{name} in\n{listing}");
    }
    assert!(listing.contains("\\Sent"), "special-use attributes in\n{listing}");
    let r = run_ok(curl(h, &format!("{base}/Projects"), &[])).await;
    let below = String::from_utf8_lossy(&r.stdout).into_owned();
    assert!(below.contains("\"Projects/Work\""), "{below}");
    assert!(!below.contains("INBOX"), "{below}");

    // A custom command: curl prints the untagged response.
    let r = run_ok(curl(h, &format!("{base}/INBOX"), &["--request", "UID SEARCH ALL"])).await;
    assert_eq!(String::from_utf8_lossy(&r.stdout), "* SEARCH 1 2 3\r\n");

    // ;UID=n fetches one message (BODY[]), byte for byte — and so marks it read
    // (RFC 9051 §6.4.5), which curl's own search then shows.
    let r = run_ok(curl(h, &format!("{base}/INBOX;UID=1"), &[])).await;
    assert!(
        r.stdout == inbox[0],
        "UID 1 as curl received it:\n{}",
        String::from_utf8_lossy(&r.stdout)
    );
    let r = run_ok(curl(h, &format!("{base}/INBOX?UNSEEN"), &[])).await;
    assert_eq!(String::from_utf8_lossy(&r.stdout), "* SEARCH 2 3\r\n");
    for (uid, raw) in uids.iter().zip(&inbox).skip(1) {
        let r = run_ok(curl(h, &format!("{base}/INBOX;UID={uid}"), &[])).await;
        assert_eq!(r.stdout.len(), raw.len(), "size of UID {uid}");
        assert!(r.stdout == *raw, "UID {uid} differs from what was delivered");
    }
    let r = run_ok(curl(h, &format!("{base}/INBOX;UID=2;SECTION=TEXT"), &[])).await;
    let body_at = inbox[1].windows(4).position(|w| w == b"\r\n\r\n").expect("body") + 4;
    assert!(r.stdout == inbox[1][body_at..], "SECTION=TEXT of UID 2");
    let r = run_ok(curl(h, &format!("{base}/Projects/Work;UID=1"), &[])).await;
    assert!(
        r.stdout == work,
        "Projects/Work UID 1:\n{}",
        String::from_utf8_lossy(&r.stdout)
    );

    // Upload (-T): APPEND, stored byte for byte; curl appends as \Seen.
    let upload = message("upload.1@example.test", "Sent from curl", "Uploaded with curl -T.");
    std::fs::write(h.join("upload.eml"), &upload).expect("write upload");
    run_ok(curl(
        h,
        &format!("{base}/Projects/Work"),
        &["--upload-file", "upload.eml"],
    ))
    .await;
    let work_box = tern_messages(&server, "Projects/Work").await;
    let stored = &work_box["<upload.1@example.test>"];
    assert!(
        stored.raw == upload,
        "uploaded message as stored:\n{}",
        String::from_utf8_lossy(&stored.raw)
    );
    assert_eq!(stored.flags, "S");
    assert_eq!(work_box.len(), 2);

    // Wrong password: curl reports a login failure (exit 67), nothing is printed.
    let mut cmd = client("curl", h);
    cmd.args(["-q", "--silent", "--max-time", "20", "--user", &format!("{USER}:wrong")])
        .arg(format!("{base}/INBOX;UID=1"));
    let r = run(cmd).await;
    assert_eq!(r.code, Some(67), "{}", r.log());
    assert!(r.stdout.is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_fetches_over_implicit_tls_and_starttls() {
    let server = Server::start().await;
    let inbox = corpus(3, 3, 5_000);
    server.deliver(inbox.clone()).await;
    let (tls_addr, cert) = server.tls.clone().expect("TLS listener");
    let home = tempfile::tempdir().expect("client folder");
    let h = home.path();
    let cert = cert.to_str().expect("certificate path").to_string();

    // imaps:// on the implicit-TLS port, the certificate checked against "localhost".
    let port = tls_addr.port();
    let resolve = format!("localhost:{port}:127.0.0.1");
    let r = run_ok(curl(
        h,
        &format!("imaps://localhost:{port}/INBOX;UID=2"),
        &["--cacert", &cert, "--resolve", &resolve, "--verbose"],
    ))
    .await;
    assert!(
        r.stdout == inbox[1],
        "UID 2 over imaps:\n{}",
        String::from_utf8_lossy(&r.stdout)
    );
    assert!(r.stderr.contains("SSL connection using TLS"), "{}", r.log());

    // STARTTLS on the plain port, required (--ssl-reqd), then a search and a fetch.
    let port = server.port();
    let resolve = format!("localhost:{port}:127.0.0.1");
    let tls = ["--ssl-reqd", "--cacert", &cert, "--resolve", &resolve, "--verbose"];
    let r = run_ok(curl(h, &format!("imap://localhost:{port}/INBOX;UID=3"), &tls)).await;
    assert!(
        r.stdout == inbox[2],
        "UID 3 after STARTTLS:\n{}",
        String::from_utf8_lossy(&r.stdout)
    );
    assert!(
        r.stderr
            .lines()
            .any(|l| l.starts_with("> ") && l.ends_with(" STARTTLS")),
        "curl sent STARTTLS\n{}",
        r.log()
    );
    assert!(r.stderr.contains("SSL connection using TLS"), "{}", r.log());
    let mut search = tls.to_vec();
    search.extend(["--request", "UID SEARCH ALL"]);
    let r = run_ok(curl(h, &format!("imap://localhost:{port}/INBOX"), &search)).await;
    assert_eq!(String::from_utf8_lossy(&r.stdout), "* SEARCH 1 2 3\r\n");
    server.stop().await;
}

// --- mbsync (isync) ------------------------------------------------------------------------

/// An .mbsyncrc mirroring every mailbox of the account into `<dir>/Mail` (INBOX at
/// `Mail/INBOX`, subfolders as nested directories), two-way, deletions included.
/// Plain text with LOGIN, or STARTTLS trusting `cert` with SASL PLAIN.
fn mbsyncrc(dir: &Path, port: u16, starttls_cert: Option<&Path>) -> PathBuf {
    let security = match starttls_cert {
        None => "SSLType None\nAuthMechs LOGIN\n".to_string(),
        Some(cert) => format!(
            "SSLType STARTTLS\nCertificateFile \"{}\"\nSystemCertificates no\nAuthMechs PLAIN\n",
            cert.display()
        ),
    };
    let mail = dir.join("Mail");
    std::fs::create_dir_all(&mail).expect("Mail folder");
    let config = format!(
        "IMAPAccount tern
Host 127.0.0.1
Port {port}
User \"{USER}\"
Pass \"{PASSWORD}\"
Timeout 20
{security}
IMAPStore tern-remote
Account tern

MaildirStore local
Path \"{mail}/\"
Inbox \"{mail}/INBOX\"
SubFolders Verbatim

Channel tern
Far :tern-remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
",
        mail = mail.display()
    );
    let path = dir.join(if starttls_cert.is_some() {
        "mbsyncrc-starttls"
    } else {
        "mbsyncrc"
    });
    std::fs::write(&path, config).expect("write .mbsyncrc");
    path
}

async fn mbsync(dir: &Path, config: &Path) -> Run {
    let mut cmd = client("mbsync", dir);
    // -D: the IMAP exchange, for the failure message.
    cmd.arg("-c").arg(config).args(["-D", "--all"]);
    run_ok(cmd).await
}

#[tokio::test(flavor = "multi_thread")]
async fn mbsync_mirrors_the_account_and_syncs_changes_both_ways() {
    let server = Server::start().await;
    let mut inbox = corpus(11, 4, 3_000);
    inbox.push(corpus(12, 1, 250_000).remove(0));
    server.deliver(inbox.clone()).await;
    let work = corpus(13, 3, 2_000);
    fill_mailbox(
        &server,
        "Projects/Work",
        &[
            (work[0].clone(), SystemFlags::FLAGGED),
            (work[1].clone(), SystemFlags::SEEN),
            (work[2].clone(), SystemFlags::empty()),
        ],
    )
    .await;
    let home = tempfile::tempdir().expect("client folder");
    let dir = home.path();
    let mail = dir.join("Mail");
    let plain = mbsyncrc(dir, server.port(), None);

    // 1. The first sync copies everything down, byte for byte, flags included.
    let first = mbsync(dir, &plain).await;
    let local_inbox = maildir_messages(&mail.join("INBOX"));
    assert_eq!(local_inbox.len(), inbox.len(), "{}", first.log());
    for raw in &inbox {
        assert_arrived(raw, &local_inbox[&message_id(raw)], &["X-TUID"]);
    }
    let local_work = maildir_messages(&mail.join("Projects/Work"));
    assert_eq!(local_work.len(), work.len(), "{}", first.log());
    for raw in &work {
        assert_arrived(raw, &local_work[&message_id(raw)], &["X-TUID"]);
    }
    assert_eq!(local_work[&message_id(&work[0])].flags, "F");
    assert_eq!(local_work[&message_id(&work[1])].flags, "S");
    for name in ["Sent", "Drafts", "Trash", "Archive", "Junk"] {
        assert!(mail.join(name).join("cur").is_dir(), "{name} mirrored\n{}", first.log());
    }
    // Mirroring is not reading: nothing became \Seen on Tern.
    let tern_inbox = tern_messages(&server, "INBOX").await;
    assert!(tern_inbox.values().all(|m| m.flags.is_empty()), "{tern_inbox:?}");
    let ids: Vec<String> = inbox.iter().map(|m| message_id(m)).collect();

    // 2. Changes on both sides.
    // Locally: read one, delete one, write one, and file one into a new folder.
    set_local_flags(&local_inbox[&ids[0]], "S");
    std::fs::remove_file(&local_inbox[&ids[1]].path).expect("delete local message");
    let written = lf(&message(
        "local.1@example.test",
        "Written offline",
        "Composed on the train.",
    ));
    add_local_message(&mail.join("INBOX"), "1780000000.P1Q1.laptop", &written);
    let receipt = lf(&message(
        "receipt.1@shop.example",
        "Your receipt",
        "Thanks for your order.",
    ));
    add_local_message(&mail.join("Receipts 2026"), "1780000001.P1Q2.laptop", &receipt);
    // On Tern: new mail, a flag set and an expunge by another IMAP client, a new folder.
    let delivered = message("tern.1@example.org", "Arrived meanwhile", "Delivered by SMTP.");
    server.deliver(vec![delivered.clone()]).await;
    let mut other = Client::login(server.addr).await;
    imap_ok(&mut other, "s SELECT INBOX").await;
    let uid = tern_inbox[&ids[2]].uid;
    imap_ok(&mut other, &format!("f UID STORE {uid} +FLAGS (\\Flagged)")).await;
    let tern_work = tern_messages(&server, "Projects/Work").await;
    imap_ok(&mut other, "w SELECT Projects/Work").await;
    let uid = tern_work[&message_id(&work[2])].uid;
    imap_ok(&mut other, &format!("d UID STORE {uid} +FLAGS (\\Deleted)")).await;
    imap_ok(&mut other, "e EXPUNGE").await;
    imap_ok(&mut other, "o LOGOUT").await;
    let list_mail = message("list.1@lists.example", "[rust] release", "A new release.");
    fill_mailbox(&server, "Lists/Rust", &[(list_mail.clone(), SystemFlags::SEEN)]).await;

    // 3. The second sync, over STARTTLS this time, reconciles both sides.
    let (_, cert) = server.tls.clone().expect("certificate");
    let starttls = mbsyncrc(dir, server.port(), Some(&cert));
    let second = mbsync(dir, &starttls).await;
    assert!(second.log().contains(">>> 1 STARTTLS"), "{}", second.log());
    // Without X-TUID and with LF line endings, the two sides hold the same bytes.
    let same = |raw: &[u8]| lf(&without_header(raw, "X-TUID"));
    let tern_inbox = tern_messages(&server, "INBOX").await;
    let local_inbox = maildir_messages(&mail.join("INBOX"));
    assert_mirrored("INBOX", &tern_inbox, &local_inbox, same);
    let expected: BTreeSet<&str> = [&ids[0], &ids[2], &ids[3], &ids[4]]
        .into_iter()
        .map(String::as_str)
        .chain(["<local.1@example.test>", "<tern.1@example.org>"])
        .collect();
    let got: BTreeSet<&str> = tern_inbox.keys().map(String::as_str).collect();
    assert_eq!(got, expected, "deleted locally → expunged on Tern\n{}", second.log());
    assert_eq!(tern_inbox[&ids[0]].flags, "S", "read locally → \\Seen on Tern");
    assert_eq!(local_inbox[&ids[2]].flags, "F", "flagged on Tern → F locally");
    assert!(
        tern_inbox[&ids[0]].raw == inbox[0],
        "Tern's copy of a synced message is untouched"
    );
    assert_eq!(
        same(&tern_inbox["<local.1@example.test>"].raw),
        written,
        "uploaded local message"
    );
    assert_arrived(&delivered, &local_inbox["<tern.1@example.org>"], &["X-TUID"]);

    let tern_work = tern_messages(&server, "Projects/Work").await;
    let local_work = maildir_messages(&mail.join("Projects/Work"));
    assert_mirrored("Projects/Work", &tern_work, &local_work, same);
    assert!(!tern_work.contains_key(&message_id(&work[2])), "expunged on Tern");
    assert_eq!(tern_work.len(), 2);

    let tern_receipts = tern_messages(&server, "Receipts 2026").await;
    assert_mirrored(
        "Receipts 2026",
        &tern_receipts,
        &maildir_messages(&mail.join("Receipts 2026")),
        same,
    );
    assert_eq!(same(&tern_receipts["<receipt.1@shop.example>"].raw), receipt);
    let local_lists = maildir_messages(&mail.join("Lists/Rust"));
    assert_mirrored(
        "Lists/Rust",
        &tern_messages(&server, "Lists/Rust").await,
        &local_lists,
        same,
    );
    assert_eq!(local_lists["<list.1@lists.example>"].flags, "S");

    // 4. A third sync with nothing changed changes nothing.
    let snapshot = |tern: &BTreeMap<String, Stored>, local: &BTreeMap<String, Local>| {
        (
            tern.iter()
                .map(|(k, v)| (k.clone(), v.uid, v.flags.clone()))
                .collect::<Vec<_>>(),
            local
                .iter()
                .map(|(k, v)| (k.clone(), v.path.clone()))
                .collect::<Vec<_>>(),
        )
    };
    let before = snapshot(&tern_inbox, &local_inbox);
    let third = mbsync(dir, &starttls).await;
    let after = snapshot(
        &tern_messages(&server, "INBOX").await,
        &maildir_messages(&mail.join("INBOX")),
    );
    assert_eq!(before, after, "{}", third.log());
    server.stop().await;
}

// --- offlineimap -----------------------------------------------------------------------------

/// An offlineimaprc for one account mirrored into `<dir>/Mail` (Maildir, subfolders as
/// `Parent.Child`), its state in `<dir>/meta`, plain text on loopback.
fn offlineimaprc(dir: &Path, port: u16) -> PathBuf {
    let config = format!(
        "[general]
accounts = tern
metadata = {meta}
fsync = false

[Account tern]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = {mail}

[Repository remote]
type = IMAP
remotehost = 127.0.0.1
remoteport = {port}
remoteuser = {USER}
remotepass = {PASSWORD}
ssl = no
starttls = no
",
        meta = dir.join("meta").display(),
        mail = dir.join("Mail").display(),
    );
    let path = dir.join("offlineimaprc");
    std::fs::write(&path, config).expect("write offlineimaprc");
    path
}

/// One pass of offlineimap (`-o`), basic UI; fails on any reported error.
async fn offlineimap(dir: &Path, config: &Path) -> Run {
    let mut cmd = client("offlineimap", dir);
    cmd.arg("-c").arg(config).args(["-o", "-u", "basic"]);
    let run = run_ok(cmd).await;
    assert!(
        !run.log().contains("ERROR"),
        "offlineimap reported an error\n{}",
        run.log()
    );
    run
}

#[tokio::test(flavor = "multi_thread")]
async fn offlineimap_mirrors_the_account_and_picks_up_changes() {
    let server = Server::start().await;
    let inbox_box = mailbox(&server, "INBOX").await;
    let mut inbox = corpus(21, 4, 3_000);
    inbox.extend(corpus(22, 1, 200_000));
    let flags = [SystemFlags::SEEN, SystemFlags::empty(), SystemFlags::FLAGGED];
    let new = inbox
        .iter()
        .enumerate()
        .map(|(i, raw)| NewMessage {
            flags: Flags::system(flags[i % flags.len()]),
            ..NewMessage::new(raw.clone())
        })
        .collect();
    server.store.append(inbox_box.id, new).await.expect("append");
    let work = corpus(23, 2, 2_000);
    fill_mailbox(
        &server,
        "Old Mail/2025 Q1",
        &[
            (work[0].clone(), SystemFlags::empty()),
            (work[1].clone(), SystemFlags::SEEN),
        ],
    )
    .await;
    let home = tempfile::tempdir().expect("client folder");
    let dir = home.path();
    let mail = dir.join("Mail");
    let config = offlineimaprc(dir, server.port());

    // 1. The first pass copies every folder down, byte for byte (LF line endings).
    let first = offlineimap(dir, &config).await;
    let local_inbox = maildir_messages(&mail.join("INBOX"));
    assert_eq!(local_inbox.len(), inbox.len(), "{}", first.log());
    for raw in &inbox {
        assert_arrived(raw, &local_inbox[&message_id(raw)], &[]);
    }
    let same = |raw: &[u8]| lf(raw);
    assert_mirrored("INBOX", &tern_messages(&server, "INBOX").await, &local_inbox, same);
    assert_eq!(local_inbox[&message_id(&inbox[0])].flags, "S");
    assert_eq!(local_inbox[&message_id(&inbox[2])].flags, "F");
    let local_work = maildir_messages(&mail.join("Old Mail.2025 Q1"));
    for raw in &work {
        assert_arrived(raw, &local_work[&message_id(raw)], &[]);
    }
    assert_mirrored(
        "Old Mail/2025 Q1",
        &tern_messages(&server, "Old Mail/2025 Q1").await,
        &local_work,
        same,
    );
    for name in ["Sent", "Drafts", "Trash"] {
        assert!(mail.join(name).join("cur").is_dir(), "{name} mirrored\n{}", first.log());
    }

    // 2. Meanwhile on Tern: new mail, and another client flags one message and expunges
    //    another. Locally: a message written offline, and one read.
    let delivered = message("tern.2@example.org", "Arrived meanwhile", "Delivered by SMTP.");
    server.deliver(vec![delivered.clone()]).await;
    let tern_inbox = tern_messages(&server, "INBOX").await;
    let ids: Vec<String> = inbox.iter().map(|m| message_id(m)).collect();
    let mut other = Client::login(server.addr).await;
    imap_ok(&mut other, "s SELECT INBOX").await;
    let flagged = tern_inbox[&ids[1]].uid;
    imap_ok(&mut other, &format!("f UID STORE {flagged} +FLAGS (\\Flagged)")).await;
    let gone = tern_inbox[&ids[3]].uid;
    imap_ok(&mut other, &format!("d UID STORE {gone} +FLAGS (\\Deleted)")).await;
    imap_ok(&mut other, "e EXPUNGE").await;
    imap_ok(&mut other, "o LOGOUT").await;
    let written = lf(&message(
        "local.2@example.test",
        "Written offline",
        "Composed on the plane.",
    ));
    add_local_message(&mail.join("INBOX"), "1780000000.P2Q1.laptop", &written);
    set_local_flags(&local_work[&message_id(&work[0])], "S");

    // 3. The second pass brings both sides together.
    let second = offlineimap(dir, &config).await;
    let tern_inbox = tern_messages(&server, "INBOX").await;
    let local_inbox = maildir_messages(&mail.join("INBOX"));
    assert_mirrored("INBOX", &tern_inbox, &local_inbox, same);
    assert!(
        !local_inbox.contains_key(&ids[3]),
        "expunged on Tern → gone locally\n{}",
        second.log()
    );
    assert_eq!(local_inbox[&ids[1]].flags, "F", "flagged on Tern → F locally");
    assert_arrived(&delivered, &local_inbox["<tern.2@example.org>"], &[]);
    let uploaded = &tern_inbox["<local.2@example.test>"];
    assert!(
        lf(&uploaded.raw) == written,
        "written offline, as Tern stored it:\n{}",
        String::from_utf8_lossy(&uploaded.raw)
    );
    assert_eq!(tern_inbox.len(), 6);
    let tern_work = tern_messages(&server, "Old Mail/2025 Q1").await;
    assert_mirrored(
        "Old Mail/2025 Q1",
        &tern_work,
        &maildir_messages(&mail.join("Old Mail.2025 Q1")),
        same,
    );
    assert_eq!(
        tern_work[&message_id(&work[0])].flags,
        "S",
        "read locally → \\Seen on Tern"
    );
    server.stop().await;
}

// --- fetchmail -------------------------------------------------------------------------------

/// A fetchmailrc polling the account's INBOX over IMAP and handing each message to an
/// MDA script that writes it to a file of its own under `<dir>/delivered`. `options`
/// are poll options such as `keep fetchall` and the TLS settings.
fn fetchmailrc(dir: &Path, port: u16, options: &str) -> PathBuf {
    let delivered = dir.join("delivered");
    std::fs::create_dir_all(&delivered).expect("delivered folder");
    let mda = dir.join("deliver.sh");
    std::fs::write(
        &mda,
        format!(
            "#!/bin/sh\nexec cat > \"$(mktemp '{}/msg.XXXXXXXX')\"\n",
            delivered.display()
        ),
    )
    .expect("write MDA");
    set_mode(&mda, 0o755);
    let config = format!(
        "set no bouncemail
poll 127.0.0.1 service {port} proto IMAP auth password
  user \"{USER}\" there with password \"{PASSWORD}\" is \"alice\" here
  {options}
  mda \"{mda}\"
",
        mda = mda.display()
    );
    let path = dir.join("fetchmailrc");
    std::fs::write(&path, config).expect("write fetchmailrc");
    // fetchmail refuses a run control file others can read.
    set_mode(&path, 0o600);
    path
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// One poll by fetchmail, in the foreground, without its Received: header (so
/// what the MDA gets is the message as stored, with LF line endings). Returns the run
/// and the messages the MDA received since the last call (which it takes away).
async fn fetchmail(dir: &Path, config: &Path) -> (Run, Vec<Vec<u8>>) {
    let mut cmd = client("fetchmail", dir);
    cmd.env("FETCHMAILHOME", dir)
        .arg("-f")
        .arg(config)
        .args(["--nodetach", "--invisible", "--verbose"]);
    let run = run(cmd).await;
    // Exit 0: mail delivered; 1: no new mail. Anything else is a failure.
    assert!(matches!(run.code, Some(0 | 1)), "fetchmail failed\n{}", run.log());
    let mut got = Vec::new();
    for entry in std::fs::read_dir(dir.join("delivered")).expect("delivered folder") {
        let path = entry.expect("entry").path();
        got.push(std::fs::read(&path).expect("delivered message"));
        std::fs::remove_file(&path).expect("take delivered message");
    }
    (run, got)
}

/// The delivered messages by Message-ID, each checked to be the stored message with LF
/// line endings, and no message twice.
fn assert_fetched(what: &str, run: &Run, got: &[Vec<u8>], expected: &[&Vec<u8>]) {
    let mut by_id = BTreeMap::new();
    for raw in got {
        assert!(
            by_id.insert(message_id(raw), raw).is_none(),
            "{what}: {} twice",
            message_id(raw)
        );
    }
    let want: BTreeSet<String> = expected.iter().map(|m| message_id(m)).collect();
    let have: BTreeSet<String> = by_id.keys().cloned().collect();
    assert_eq!(have, want, "{what}: messages fetched\n{}", run.log());
    for raw in expected {
        let got = by_id[&message_id(raw)];
        assert!(
            *got == lf(raw),
            "{what}: {} arrived changed\n--- stored\n{}\n--- delivered\n{}",
            message_id(raw),
            String::from_utf8_lossy(raw),
            String::from_utf8_lossy(got)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fetchmail_keeps_mail_and_then_fetches_only_new_mail_over_starttls() {
    let server = Server::start().await;
    let mut first = corpus(31, 4, 3_000);
    first.push(corpus(32, 1, 200_000).remove(0));
    server.deliver(first.clone()).await;
    let home = tempfile::tempdir().expect("client folder");
    let dir = home.path();

    // 1. keep + fetchall, plain text on loopback: everything, byte for byte; left on
    //    the server, now marked read.
    let config = fetchmailrc(dir, server.port(), "keep fetchall sslproto ''");
    let (run, got) = fetchmail(dir, &config).await;
    assert_fetched("first poll", &run, &got, &first.iter().collect::<Vec<_>>());
    let tern_inbox = tern_messages(&server, "INBOX").await;
    assert_eq!(tern_inbox.len(), first.len(), "keep leaves mail on the server");
    assert!(
        tern_inbox.values().all(|m| m.flags == "S"),
        "fetched mail is \\Seen: {tern_inbox:?}"
    );

    // 2. New mail arrives; a poll with keep (no fetchall), over STARTTLS with the
    //    certificate checked, fetches only what is new (unseen).
    let second = vec![
        message("new.1@example.org", "Second wave", "One."),
        message("new.2@example.org", "Second wave", "Two."),
    ];
    server.deliver(second.clone()).await;
    let (_, cert) = server.tls.clone().expect("certificate");
    let tls = format!(
        "keep sslproto 'TLS1.2+' sslcertck sslcertfile \"{}\" sslcommonname localhost",
        cert.display()
    );
    let config = fetchmailrc(dir, server.port(), &tls);
    let (run, got) = fetchmail(dir, &config).await;
    assert!(run.log().contains("upgrade to TLS succeeded"), "{}", run.log());
    assert_fetched("poll for new mail", &run, &got, &second.iter().collect::<Vec<_>>());

    // 3. Nothing new: nothing fetched, exit status 1 ("no mail").
    let (run, got) = fetchmail(dir, &config).await;
    assert!(got.is_empty(), "{}", run.log());
    assert_eq!(run.code, Some(1), "{}", run.log());
    assert_eq!(tern_messages(&server, "INBOX").await.len(), first.len() + second.len());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fetchmail_without_keep_empties_the_inbox() {
    let server = Server::start().await;
    let mail = corpus(41, 6, 4_000);
    server.deliver(mail.clone()).await;
    let home = tempfile::tempdir().expect("client folder");
    let dir = home.path();

    let config = fetchmailrc(dir, server.port(), "fetchall sslproto ''");
    let (run, got) = fetchmail(dir, &config).await;
    assert_fetched("fetch and delete", &run, &got, &mail.iter().collect::<Vec<_>>());
    let left = tern_messages(&server, "INBOX").await;
    assert!(
        left.is_empty(),
        "fetched mail is deleted from the server: {left:?}\n{}",
        run.log()
    );
    assert_eq!(mailbox(&server, "INBOX").await.messages, 0);

    // Mail delivered afterwards is fetched by the next poll, once.
    let later = message("later.1@example.org", "Later", "After the first poll.");
    server.deliver(vec![later.clone()]).await;
    let (run, got) = fetchmail(dir, &config).await;
    assert_fetched("next poll", &run, &got, &[&later]);
    assert!(tern_messages(&server, "INBOX").await.is_empty());
    server.stop().await;
}
