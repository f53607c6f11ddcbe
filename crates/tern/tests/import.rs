//! `tern import maildir|mbox` end to end, against exports written by real writers: a
//! Maildir++ tree that a real Dovecot wrote while Python's imaplib APPENDed to it over
//! IMAP, and an mbox written by Python's `mailbox` module. Each test drives the `tern`
//! binary as an administrator would (`init`, `user add`, `import`) and then opens the
//! store to check every message against what was written: bytes, flags, keywords,
//! INTERNALDATE and folder names.
//!
//! Dovecot stores message files with LF line endings (its default `mail_save_crlf = no`
//! turns each CRLF of an APPEND into LF; bare LF and bare CR stay as they are) and
//! serves them with CRLF again. The maildir file is the export, so Tern must keep the
//! file's bytes; the test also pins Dovecot's conversion so a change in it is noticed.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use tern_store::{EmbeddedStore, Flags, MessageSummary, Store};
use tern_testkit::dovecot::Dovecot;
use tern_testkit::python::{self, str_of, strings_of, unhex};

const DOMAIN: &str = "example.test";
const ALICE: &str = "alice@example.test";

/// Runs `tern --data DATA ARGS...` with `stdin` piped in.
fn tern(data: &Path, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tern"))
        .arg("--data")
        .arg(data)
        .args(args)
        .env_remove("TERN_DATA")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tern");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait for tern")
}

/// Runs tern and insists it succeeds; returns its standard output.
fn tern_ok(data: &Path, args: &[&str], stdin: &str) -> String {
    let out = tern(data, args, stdin);
    assert!(
        out.status.success(),
        "tern {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh data folder with the domain and the given accounts.
fn data_folder(accounts: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary folder");
    tern_ok(
        dir.path(),
        &["init", "--domain", DOMAIN, "--hostname", "mail.example.test"],
        "",
    );
    for account in accounts {
        tern_ok(dir.path(), &["user", "add", account, "--password-stdin"], "pw\n");
    }
    dir
}

/// Runs a Python script (standard library only) and parses the JSON it prints.
fn python(script: &str, args: &[&str]) -> Value {
    let args: Vec<&dyn AsRef<std::ffi::OsStr>> = args.iter().map(|a| a as &dyn AsRef<std::ffi::OsStr>).collect();
    python::run_json(script, &args)
}

/// Dovecot's save conversion: every CRLF becomes LF, nothing else changes.
fn crlf_to_lf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\r' && raw.get(i + 1) == Some(&b'\n') {
            i += 1;
        }
        out.push(raw[i]);
        i += 1;
    }
    out
}

/// Every message of every mailbox of an account, in UID order, with its bytes.
type Snapshot = BTreeMap<String, Vec<(MessageSummary, Vec<u8>)>>;

/// Opens the data folder's store (no tern process may be running), reads an account's
/// mailboxes and closes the store again.
async fn snapshot(data: &Path, account: &str) -> Snapshot {
    let store = EmbeddedStore::open(&data.join("store")).expect("open the store");
    let account = store.account(account).await.expect("account");
    let mut out = Snapshot::new();
    for mailbox in store.mailboxes(account.id).await.expect("mailboxes") {
        let mut messages = store.messages(mailbox.id).await.expect("messages");
        messages.sort_by_key(|m| m.uid);
        let mut with_bytes = Vec::new();
        for m in messages {
            let raw = store.read_message(mailbox.id, m.uid).await.expect("read message");
            with_bytes.push((m, raw));
        }
        out.insert(mailbox.name, with_bytes);
    }
    store.close().await.expect("close the store");
    out
}

/// A new account's folders, which exist (empty) before any import.
const DEFAULT_FOLDERS: [&str; 6] = ["INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"];

// ------------------------------------------------------------------ Test A: Dovecot

/// APPENDs a varied set of messages to Dovecot over IMAP and prints a manifest of
/// what it sent. Literals are sent raw (imaplib's `append` would rewrite every line
/// ending to CRLF, and this test wants a bare LF and a bare CR to reach Dovecot).
const APPENDER: &str = r#"
import datetime, imaplib, json, sys

port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()

def internaldate(ts, offset_minutes):
    # RFC 9051 date-time, built by hand so the locale cannot change the month names.
    d = datetime.datetime.fromtimestamp(ts, datetime.timezone(datetime.timedelta(minutes=offset_minutes)))
    sign = "+" if offset_minutes >= 0 else "-"
    o = abs(offset_minutes)
    return '"%02d-%s-%04d %02d:%02d:%02d %s%02d%02d"' % (
        d.day, MONTHS[d.month - 1], d.year, d.hour, d.minute, d.second, sign, o // 60, o % 60)

def simple(subject, body, extra=b"", date="Thu, 01 Oct 2020 10:00:00 +0000"):
    return (b"From: Bob <bob@example.org>\r\nTo: Alice <alice@example.test>\r\n"
            b"Date: " + date.encode() + b"\r\nSubject: " + subject + b"\r\n"
            b"Message-ID: <" + subject.replace(b" ", b".") + b"@example.org>\r\n" + extra + b"\r\n" + body)

UTF8 = b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
MULTIPART = (b"From: Carol <carol@example.net>\r\nTo: alice@example.test\r\nSubject: report with attachment\r\n"
             b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
             b"This is a multi-part message in MIME format.\r\n--b1\r\n"
             b"Content-Type: text/plain; charset=us-ascii\r\n\r\nSee the attached figures.\r\n--b1\r\n"
             b"Content-Type: application/octet-stream; name=\"q3.bin\"\r\n"
             b"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"q3.bin\"\r\n\r\n"
             b"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\r\n--b1--\r\n")
# Over 256 KiB: the store keeps a body this size in a blob file, not inline.
BIG = simple(b"big attachment", b"".join(b"%06d the quick brown fox jumps over the lazy dog\r\n" % i
                                          for i in range(6000)))
TWIN = simple(b"weekly newsletter", b"Same text, delivered twice.\r\n")

T = 1600000000  # 2020-09-13; every date is in the past, as a real mailbox's are
messages = [
    # IMAP folder (modified UTF-7), folder as Tern names it, message, flags, date, zone
    ("INBOX", "INBOX", simple(b"seen", b"Hello.\r\n"), ["\\Seen"], T, 0),
    ("INBOX", "INBOX", simple(b"answered", b"Thanks.\r\n"), ["\\Answered", "\\Seen"], T + 60, 120),
    ("INBOX", "INBOX", simple(b"flagged", b"Important.\r\n"), ["\\Flagged"], T + 120, -300),
    ("INBOX", "INBOX", simple(b"deleted", b"Gone soon.\r\n"), ["\\Deleted", "\\Seen"], T + 180, 0),
    ("INBOX", "INBOX", simple(b"draft in inbox", b"Half.\r\n"), ["\\Draft"], T + 240, 330),
    ("INBOX", "INBOX", simple(b"forwarded", b"Passed on.\r\n"), ["\\Seen", "$Forwarded"], T + 300, 0),
    ("INBOX", "INBOX", simple(b"junk", b"Buy now.\r\n"), ["$Junk"], T + 360, 0),
    ("INBOX", "INBOX", simple(b"all keywords", b"Tagged.\r\n"),
     ["\\Flagged", "$Forwarded", "Project-X", "$Junk"], T + 420, 60),
    ("INBOX", "INBOX", MULTIPART, ["\\Seen"], T + 480, 0),
    ("INBOX", "INBOX", simple(b"utf-8 body", "Grüße aus Köln — ✓\r\n".encode(), UTF8), [], T + 540, 60),
    ("INBOX", "INBOX", simple(b"bare lf", b"line one\r\nbare LF follows\nline three\r\n"), ["\\Seen"], T + 600, 0),
    ("INBOX", "INBOX", simple(b"bare cr", b"carriage\rreturn alone\r\n"), ["\\Seen"], T + 660, 0),
    ("INBOX", "INBOX", b"From: x@example.org\nSubject: lf only\n\nWritten with LF.\n", [], T + 720, 0),
    ("INBOX", "INBOX", simple(b"no final newline", b"ends here"), ["\\Seen"], T + 780, 0),
    ("INBOX", "INBOX", TWIN, ["\\Seen"], T + 840, 0),
    ("INBOX", "INBOX", TWIN, ["\\Seen"], T + 840, 0),
    ("INBOX", "INBOX", BIG, ["\\Seen"], T + 900, 0),
    ("INBOX", "INBOX", simple("Ümlaut im Betreff".encode(), b"Raw UTF-8 header.\r\n", UTF8), ["\\Seen"], T + 960, 0),
    ("Work", "Work", simple(b"work 1", b"Meeting at ten.\r\n"), ["\\Seen"], 1500000000, 0),
    ("Work", "Work", simple(b"work 2", b"Agenda.\r\n"), ["\\Answered", "\\Seen", "Project-X"], 1500000100, 0),
    ("Work", "Work", simple(b"work 3", b"Unread.\r\n"), [], 1500000200, -480),
    ("Work/Reports", "Work/Reports", simple(b"report q1", b"Q1.\r\n"), ["\\Seen"], 1400000000, 0),
    ("Work/Reports", "Work/Reports", simple(b"report q2", b"Q2.\r\n"), ["\\Seen", "\\Flagged"], 1400000100, 0),
    ("Work/Reports", "Work/Reports", simple(b"report q3", b"Q3.\r\n"), ["\\Seen", "$Forwarded"], 1400000200, 0),
    ("Work/Reports", "Work/Reports", simple(b"report q4", b"Q4.\r\n"), ["\\Deleted"], 1400000300, 0),
    ("Work/Reports", "Work/Reports", simple(b"old report", b"From 1995.\r\n"), ["\\Seen"], 800000000, 0),
    ("Entw&APw-rfe", "Entwürfe", simple(b"draft 1", b"Erster Entwurf.\r\n"), ["\\Draft", "\\Seen"], 1300000000, 60),
    ("Entw&APw-rfe", "Entwürfe", simple(b"draft 2", "Zweiter Entwurf, grün.\r\n".encode(), UTF8),
     ["\\Draft"], 1300000100, 120),
    ("Entw&APw-rfe", "Entwürfe", simple(b"draft 3", b"Dritter.\r\n"), ["\\Draft", "Project-X"], 1300000200, 0),
    ("Entw&APw-rfe", "Entwürfe", simple(b"draft 4", b"Vierter.\r\n"), [], 1300000300, 0),
]

imap = imaplib.IMAP4("127.0.0.1", port)
imap.login(user, password)
for folder in ["Work", "Work/Reports", "Entw&APw-rfe"]:
    typ, data = imap.create(folder)
    assert typ == "OK", (folder, data)
manifest = []
for imap_folder, folder, raw, flags, ts, zone in messages:
    imap.literal = raw
    flag_list = "(" + " ".join(flags) + ")" if flags else None
    typ, data = imap._simple_command("APPEND", imap_folder, flag_list, internaldate(ts, zone))
    assert typ == "OK", (imap_folder, flags, data)
    manifest.append({"folder": folder, "raw": raw.hex(), "flags": flags, "date": ts})
imap.logout()
print(json.dumps(manifest))
"#;

/// One message as appended to Dovecot.
struct Appended {
    folder: String,
    raw: Vec<u8>,
    flags: Vec<String>,
    date: i64,
}

fn appended(manifest: &Value) -> Vec<Appended> {
    manifest
        .as_array()
        .expect("manifest")
        .iter()
        .map(|m| Appended {
            folder: str_of(m, "folder").to_owned(),
            raw: unhex(str_of(m, "raw")),
            flags: strings_of(m, "flags").into_iter().map(str::to_owned).collect(),
            date: m["date"].as_i64().expect("date"),
        })
        .collect()
}

/// The message files of one maildir folder.
fn maildir_files(folder: &Path) -> Vec<Vec<u8>> {
    let mut files = Vec::new();
    for sub in ["cur", "new"] {
        for entry in std::fs::read_dir(folder.join(sub)).expect("list maildir") {
            let entry = entry.expect("maildir entry");
            files.push(std::fs::read(entry.path()).expect("read message file"));
        }
    }
    files.sort();
    files
}

/// Checks an imported account against what was appended to Dovecot: `folder_of` maps
/// a Dovecot folder to the Tern folder it should have landed in.
fn check_against_appended(snapshot: &Snapshot, appended: &[Appended], folder_of: impl Fn(&str) -> String) {
    let mut want_folders: BTreeMap<String, Vec<&Appended>> = BTreeMap::new();
    for a in appended {
        want_folders.entry(folder_of(&a.folder)).or_default().push(a);
    }
    let mut expected_names: Vec<String> = DEFAULT_FOLDERS.iter().map(|f| f.to_string()).collect();
    expected_names.extend(want_folders.keys().cloned());
    expected_names.sort();
    expected_names.dedup();
    let names: Vec<String> = snapshot.keys().cloned().collect();
    assert_eq!(names, expected_names, "the account's folders after import");

    for (folder, messages) in snapshot {
        let mut want = want_folders.remove(folder).unwrap_or_default();
        assert_eq!(
            messages.len(),
            want.len(),
            "messages in {folder}: {:?}",
            messages.iter().map(|(m, _)| m.uid).collect::<Vec<_>>()
        );
        let mut previous_date = i64::MIN;
        for (summary, raw) in messages {
            // Duplicates are byte-identical with identical flags and dates, so which of
            // the two an imported copy matches does not matter; each is used once.
            let at = want.iter().position(|a| crlf_to_lf(&a.raw) == *raw).unwrap_or_else(|| {
                panic!(
                    "{folder} UID {} is not a message appended to Dovecot (or its bytes changed):\n{}",
                    summary.uid,
                    String::from_utf8_lossy(raw)
                )
            });
            let a = want.remove(at);
            let what = format!(
                "{folder} UID {} ({})",
                summary.uid,
                String::from_utf8_lossy(&raw[..raw.len().min(200)])
                    .lines()
                    .find(|l| l.starts_with("Subject:"))
                    .unwrap_or("no subject")
            );
            let want_flags = Flags::from_names(a.flags.iter().map(String::as_str));
            assert_eq!(summary.flags.names(), want_flags.names(), "flags of {what}");
            assert_eq!(summary.internal_date, a.date, "INTERNALDATE of {what}");
            assert_eq!(summary.size, raw.len() as u64, "size of {what}");
            // The import appends oldest first, so UIDs follow the dates.
            assert!(summary.internal_date >= previous_date, "UID order of {what}");
            previous_date = summary.internal_date;
        }
    }
    assert!(
        want_folders.is_empty(),
        "folders not imported: {:?}",
        want_folders.keys()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn maildir_tree_written_by_dovecot_imports_exactly() {
    let mut dovecot = Dovecot::start().unwrap_or_else(|e| panic!("{e}"));
    let port = dovecot.imap_port().to_string();
    let manifest = python(APPENDER, &[&port, ALICE, Dovecot::PASSWORD]);
    let appended = appended(&manifest);
    assert_eq!(appended.len(), 30);
    // Stopped, so nothing changes the maildir while it is read (as the import's help
    // advises for a real export).
    dovecot.stop().unwrap_or_else(|e| panic!("{e}\n{}", dovecot.log()));
    let maildir = dovecot.maildir(ALICE);

    // What Dovecot made of the APPENDs: one file per message, CRLF turned into LF.
    for (folder, dir) in [
        ("INBOX", maildir.clone()),
        ("Work", maildir.join(".Work")),
        ("Work/Reports", maildir.join(".Work.Reports")),
        ("Entwürfe", maildir.join(".Entw&APw-rfe")),
    ] {
        let mut want: Vec<Vec<u8>> = appended
            .iter()
            .filter(|a| a.folder == folder)
            .map(|a| crlf_to_lf(&a.raw))
            .collect();
        want.sort();
        assert!(
            maildir_files(&dir) == want,
            "Dovecot's files in {} are not the APPENDed messages with CRLF turned into LF",
            dir.display()
        );
    }

    let data = data_folder(&[ALICE, "bob@example.test"]);
    let maildir_arg = maildir.to_str().expect("temporary paths are UTF-8");
    let out = tern_ok(data.path(), &["import", "maildir", ALICE, maildir_arg], "");
    assert!(out.contains("Imported 30 messages"), "{out}");
    check_against_appended(&snapshot(data.path(), ALICE).await, &appended, |f| f.to_owned());

    // Again: nothing is added, and the two identical messages are still two.
    let out = tern_ok(data.path(), &["import", "maildir", ALICE, maildir_arg], "");
    assert!(
        out.contains("Imported 0 messages") && out.contains("Skipped 30"),
        "{out}"
    );
    check_against_appended(&snapshot(data.path(), ALICE).await, &appended, |f| f.to_owned());

    // With --folder the whole tree goes beneath that folder, INBOX becoming it.
    let out = tern_ok(
        data.path(),
        &[
            "import",
            "maildir",
            "bob@example.test",
            maildir_arg,
            "--folder",
            "Old Provider",
        ],
        "",
    );
    assert!(out.contains("Imported 30 messages"), "{out}");
    check_against_appended(
        &snapshot(data.path(), "bob@example.test").await,
        &appended,
        |f| match f {
            "INBOX" => "Old Provider".to_owned(),
            sub => format!("Old Provider/{sub}"),
        },
    );
}

// ------------------------------------------------------------------ Test B: mbox

/// Writes an mbox with Python's `mailbox` and prints, per message, the bytes Python
/// gave the file before its mboxo `>From ` quoting (plus the newline `mailbox` adds to
/// a message lacking one), the flags `mailbox` reads back and the date of the `From `
/// line. As in tern-migrate's export_python_written test.
const MBOX_WRITER: &str = r#"
import email.generator, io, json, mailbox, sys, time

path = sys.argv[1]
HEAD = (b"From: Alice <alice@example.com>\nTo: bob@example.org\n"
        b"Date: Thu, 01 Oct 2020 10:00:00 +0000\n")
UTF8 = b"MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n"
MULTIPART = (b"MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=\"alt\"\n")

def message(subject, body, extra=b""):
    return HEAD + b"Subject: " + subject + b"\n" + extra + b"\n" + body

written = [
    # subject, body, extra headers, flags, sender, date
    (b"read", b"Body.\n", b"", "RO", "MAILER-DAEMON", 1700000000),
    (b"answered flagged", b"Reply.\n", b"", "ROAF", "alice@example.com", 1700000100),
    (b"quoting", b"Dear Bob,\n\nFrom the start, a line that looks like a separator.\n"
                 b"From alice@example.com Thu Jan  1 00:00:00 2026\n\nbye\n", b"", "RO",
     "alice@example.com", 1700000200),
    (b"utf-8", "Grüße aus Köln — ✓\nFrom Köln\n".encode(), UTF8, "", "bob@example.org", 1700000300),
    (b"no newline", b"ends here", b"", "D", "carol@example.net", 1700000400),
    (b"draft", b"Half done.\n\n", b"", "T", "dave@example.net", 1700000500),
    (b"unread new", b"Not even opened.\n", b"", "", "erin@example.net", 1000000000),
    (b"multipart", b"--alt\nContent-Type: text/plain\n\nPlain.\n--alt\nContent-Type: text/html\n\n"
                   b"<p>HTML.</p>\n--alt--\n", MULTIPART, "RO", "frank@example.net", 1700000600),
    (b"deleted read", b"Trash me.\n", b"", "ROD", "grace@example.net", 1700000700),
    (b"everything", b"All flags.\n", b"", "ROAFTD", "heidi@example.net", 1700000800),
]
print(json.dumps(write_mbox(path, [
    (message(subject, body, extra), flags, sender, date) for subject, body, extra, flags, sender, date in written
])))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn mbox_written_by_python_imports_exactly_into_the_named_folder() {
    let export = tempfile::tempdir().expect("temporary folder");
    let path = export.path().join("Old Mail.mbox");
    let path_arg = path.to_str().expect("temporary paths are UTF-8");
    let manifest = python(&format!("{}{MBOX_WRITER}", python::WRITE_MBOX), &[path_arg]);
    let expected = manifest.as_array().expect("manifest");
    assert_eq!(expected.len(), 10);

    let data = data_folder(&[ALICE]);
    let out = tern_ok(
        data.path(),
        &["import", "mbox", ALICE, path_arg, "--folder", "Old Mail"],
        "",
    );
    assert!(out.contains("Imported 10 messages"), "{out}");

    let snapshot = snapshot(data.path(), ALICE).await;
    let mut names: Vec<&str> = DEFAULT_FOLDERS.to_vec();
    names.push("Old Mail");
    names.sort();
    assert_eq!(snapshot.keys().collect::<Vec<_>>(), names);
    for folder in DEFAULT_FOLDERS {
        assert!(snapshot[folder].is_empty(), "{folder} stays empty");
    }

    // An mbox is imported in file order, so UID order is the order Python wrote.
    let imported = &snapshot["Old Mail"];
    assert_eq!(imported.len(), expected.len());
    for (i, ((summary, raw), want)) in imported.iter().zip(expected).enumerate() {
        let what = format!("message {} (UID {})", i + 1, summary.uid);
        let want_raw = unhex(str_of(want, "raw"));
        assert_eq!(
            String::from_utf8_lossy(raw),
            String::from_utf8_lossy(&want_raw),
            "{what}"
        );
        assert_eq!(*raw, want_raw, "{what}");
        assert_eq!(summary.size, raw.len() as u64, "{what}");

        // mbox Status letters: R read, O old (no IMAP flag); X-Status: A answered,
        // F flagged, T draft, D deleted.
        let letters = str_of(want, "flags");
        let mut want_flags = Vec::new();
        for (letter, flag) in [
            ('R', "\\Seen"),
            ('A', "\\Answered"),
            ('F', "\\Flagged"),
            ('D', "\\Deleted"),
            ('T', "\\Draft"),
        ] {
            if letters.contains(letter) {
                want_flags.push(flag);
            }
        }
        assert_eq!(summary.flags.names(), Flags::from_names(want_flags).names(), "{what}");
        assert_eq!(summary.internal_date, want["date"].as_i64().expect("date"), "{what}");
    }

    // Running the same import again (say, after an interruption) adds nothing.
    let out = tern_ok(
        data.path(),
        &["import", "mbox", ALICE, path_arg, "--folder", "Old Mail"],
        "",
    );
    assert!(
        out.contains("Imported 0 messages") && out.contains("Skipped 10"),
        "{out}"
    );
    let again = self::snapshot(data.path(), ALICE).await;
    assert_eq!(again["Old Mail"].len(), 10);
}

// ------------------------------------------------------------------ Test C: errors

/// Runs a failing import and returns its one line of stderr.
fn failing(data: &Path, args: &[&str]) -> String {
    let out = tern(data, args, "");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "tern {args:?} should fail; stdout:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "tern {args:?} should explain itself in one line:\n{stderr}"
    );
    stderr
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_imports_name_the_account_or_path_and_create_nothing() {
    let data = data_folder(&[ALICE]);
    let export = tempfile::tempdir().expect("temporary folder");
    // A real, importable maildir and mbox, so only the named problem can fail.
    let maildir = export.path().join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).expect("create maildir");
    }
    std::fs::write(maildir.join("new").join("1600000000.1.host"), b"Subject: hi\n\nhello\n").expect("write message");
    let mbox = export.path().join("export.mbox");
    std::fs::write(
        &mbox,
        b"From alice@example.com Thu Jan  1 00:00:00 2026\nSubject: hi again\n\nhello\n\n",
    )
    .expect("write mbox");
    let maildir = maildir.to_str().expect("UTF-8 path");
    let mbox = mbox.to_str().expect("UTF-8 path");
    let before = snapshot(data.path(), ALICE).await;

    for kind_and_path in [["maildir", maildir], ["mbox", mbox]] {
        let [kind, path] = kind_and_path;
        let stderr = failing(data.path(), &["import", kind, "nobody@example.test", path]);
        assert!(stderr.contains("nobody@example.test"), "{stderr}");
        let stderr = failing(
            data.path(),
            &["import", kind, "nobody@example.test", path, "--folder", "Imported"],
        );
        assert!(stderr.contains("nobody@example.test"), "{stderr}");
    }

    let missing_dir = export.path().join("no such maildir");
    let missing_mbox = export.path().join("no-such.mbox");
    for (kind, missing) in [("maildir", &missing_dir), ("mbox", &missing_mbox)] {
        let missing: &str = missing.to_str().expect("UTF-8 path");
        let stderr = failing(data.path(), &["import", kind, ALICE, missing]);
        assert!(stderr.contains(missing), "{stderr}");
        let stderr = failing(data.path(), &["import", kind, ALICE, missing, "--folder", "Imported"]);
        assert!(stderr.contains(missing), "{stderr}");
    }

    // Nothing was created: no account, no folder, no message.
    assert_eq!(snapshot(data.path(), ALICE).await, before);
    assert!(before.values().all(Vec::is_empty));
    let store = EmbeddedStore::open(&data.path().join("store")).expect("open the store");
    let accounts: Vec<String> = store
        .accounts(None)
        .await
        .expect("accounts")
        .into_iter()
        .map(|a| a.address)
        .collect();
    assert_eq!(accounts, [ALICE]);
    store.close().await.expect("close the store");

    // And the same imports do work, so the failures above were for the reasons named.
    tern_ok(data.path(), &["import", "maildir", ALICE, maildir], "");
    tern_ok(data.path(), &["import", "mbox", ALICE, mbox], "");
    assert_eq!(snapshot(data.path(), ALICE).await["INBOX"].len(), 2);
}
