//! Reads a Maildir tree and an mbox file written by a real writer — Python's standard
//! `mailbox` module — and checks every message against what the writer says it wrote:
//! the exact bytes, the flags, keywords and dates.
//!
//! The Python script writes the exports into a temporary folder and prints a JSON
//! manifest. For the Maildir, the expected bytes and flags are what `mailbox` reads
//! back. For the mbox they are the message as Python serialised it *before* its mboxo
//! `>From ` quoting (so the test checks that our reader undoes it), with the newline
//! Python adds to a message that lacks one; flags are what `mailbox` reads back.

use std::path::Path;

use serde_json::Value;
use tern_migrate::export::{ExportedMessage, Maildir, Mbox, maildir};
use tern_testkit::python::{self, i64_of, str_of, unhex};

const WRITER: &str = r#"
import calendar, email.generator, io, json, mailbox, os, sys, time

root = sys.argv[1]
manifest = {"maildir": {"folders": [], "messages": []}, "mbox": {"path": "", "messages": []}}

HEAD = (b"From: Alice <alice@example.com>\nTo: bob@example.org\n"
        b"Date: Thu, 01 Oct 2020 10:00:00 +0000\n")
UTF8_HEAD = b"MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n"

def message(subject, body, extra=b""):
    return HEAD + b"Subject: " + subject + b"\n" + extra + b"\n" + body

# ---------------------------------------------------------------- Maildir
md_root = os.path.join(root, "Maildir")
inbox = mailbox.Maildir(md_root, create=True)
keyword_names = {"a": "$Junk", "b": "project-x"}
with open(os.path.join(md_root, "dovecot-keywords"), "w") as f:
    f.write("0 $Junk\n1 project-x\n")

folders = {
    "INBOX": inbox,
    "Work/Reports": inbox.add_folder("Work.Reports"),
    "Entwürfe": inbox.add_folder("Entw&APw-rfe"),
}
written = [
    # folder, subject, body, subdir, flags, date
    ("INBOX", b"seen", b"Hello.\n", "cur", "S", 1600000000),
    ("INBOX", b"replied and flagged", b"Reply.\n", "cur", "FRS", 1600000100),
    ("INBOX", b"keywords", b"Tagged.\n", "cur", "Sab", 1600000200),
    ("INBOX", b"forwarded and trashed", b"Gone.\n", "cur", "PST", 1600000250),
    ("INBOX", b"unread", b"Not read yet.\n", "new", "", 1600000300),
    ("INBOX", b"utf-8", "Grüße aus Köln — ✓\n".encode(), "cur", "S", 1600000400),
    ("INBOX", b"from line", b"Hi,\nFrom the desk of Alice.\n", "cur", "D", 1600000500),
    ("INBOX", b"no newline", b"ends here", "cur", "S", 1600000600),
    ("Work/Reports", b"report", b"Q3.\n", "cur", "S", 1500000000),
    ("Work/Reports", b"report 2", b"Q4.\n", "new", "", 1500000100),
    ("Entwürfe", b"draft", b"Halbfertig.\n", "cur", "DS", 1400000000),
]
for folder, subject, body, subdir, flags, date in written:
    extra = UTF8_HEAD if subject == b"utf-8" else b""
    msg = mailbox.MaildirMessage(message(subject, body, extra))
    msg.set_subdir(subdir)
    msg.set_flags(flags)
    msg.set_date(date)
    folders[folder].add(msg)

dir_of = {"INBOX": md_root, "Work/Reports": os.path.join(md_root, ".Work.Reports"),
          "Entwürfe": os.path.join(md_root, ".Entw&APw-rfe")}
manifest["maildir"]["folders"] = [["INBOX", md_root]] + sorted(
    [name, path] for name, path in dir_of.items() if name != "INBOX")
for folder, path in dir_of.items():
    box = mailbox.Maildir(path, factory=None, create=False)
    for key in box.keys():
        msg = box.get_message(key)
        subdir = msg.get_subdir()
        names = [n for n in os.listdir(os.path.join(path, subdir))
                 if n == key or n.startswith(key + box.colon)]
        assert len(names) == 1, names
        flags = msg.get_flags()
        manifest["maildir"]["messages"].append({
            "folder": folder,
            "file": os.path.join(path, subdir, names[0]),
            "raw": box.get_bytes(key).hex(),
            "flags": flags,
            "keywords": [keyword_names[c] for c in flags if c in keyword_names],
            "date": int(msg.get_date()),
        })
    box.close()

# ---------------------------------------------------------------- mbox
mbox_path = os.path.join(root, "export.mbox")
manifest["mbox"]["path"] = mbox_path
written = [
    # subject, body, flags, sender, date
    (b"read", b"Body.\n", "RO", "MAILER-DAEMON", 1767225600),
    (b"answered flagged", b"Reply.\n", "ROAF", "alice@example.com", 1795428000),
    (b"quoting", b"Dear Bob,\n\nFrom the start, a line that looks like a separator.\n"
                 b"From alice@example.com Thu Jan  1 00:00:00 2026\n\nbye\n", "RO", "alice@example.com", 1767225601),
    (b"utf-8", "Grüße aus Köln — ✓\nFrom Köln\n".encode(), "", "bob@example.org", 1767225602),
    (b"no newline", b"ends here", "D", "carol@example.net", 1767225603),
    (b"draft", b"Half done.\n\n", "T", "dave@example.net", 1767225604),
]
manifest["mbox"]["messages"] = write_mbox(mbox_path, [
    (message(subject, body, UTF8_HEAD if subject == b"utf-8" else b""), flags, sender, date)
    for subject, body, flags, sender, date in written
])

with open(mbox_path, "rb") as f:
    content = f.read()
# Python must have quoted the body's From lines, or this test proves nothing.
assert b"\n>From the start" in content and b"\n>From K" in content

print(json.dumps(manifest))
"#;

fn run_writer(dir: &Path) -> Value {
    python::run_json(&format!("{}{WRITER}", python::WRITE_MBOX), &[&dir])
}

fn keywords(message: &ExportedMessage) -> Vec<&str> {
    message.keywords.iter().map(String::as_str).collect()
}

#[test]
fn maildir_tree_written_by_python_reads_back_exactly() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let manifest = run_writer(dir.path());
    let expected = &manifest["maildir"];

    let found = maildir::folders(&dir.path().join("Maildir")).expect("folders");
    let found_names: Vec<(String, String)> = found
        .iter()
        .map(|(name, path)| (name.clone(), path.display().to_string()))
        .collect();
    let expected_names: Vec<(String, String)> = expected["folders"]
        .as_array()
        .expect("folders")
        .iter()
        .map(|pair| {
            (
                pair[0].as_str().expect("name").to_owned(),
                pair[1].as_str().expect("path").to_owned(),
            )
        })
        .collect();
    assert_eq!(found_names, expected_names);

    let expected_messages = expected["messages"].as_array().expect("messages");
    let mut checked = 0;
    for (folder, path) in &found {
        let maildir = Maildir::open(path).expect("open maildir");
        let in_folder: Vec<&Value> = expected_messages
            .iter()
            .filter(|m| str_of(m, "folder") == folder)
            .collect();
        assert_eq!(maildir.len(), in_folder.len(), "messages in {folder}");

        let mut previous_date = i64::MIN;
        for message in maildir.messages() {
            let message = message.expect("read message");
            let want = in_folder
                .iter()
                .find(|m| str_of(m, "file") == message.source)
                .unwrap_or_else(|| panic!("{} is not in Python's manifest", message.source));
            assert_eq!(
                String::from_utf8_lossy(&message.raw),
                String::from_utf8_lossy(&unhex(str_of(want, "raw"))),
                "{}",
                message.source
            );
            assert_eq!(message.raw, unhex(str_of(want, "raw")), "{}", message.source);

            let flags = str_of(want, "flags");
            assert_eq!(message.seen, flags.contains('S'), "{}", message.source);
            assert_eq!(message.answered, flags.contains('R'), "{}", message.source);
            assert_eq!(message.flagged, flags.contains('F'), "{}", message.source);
            assert_eq!(message.deleted, flags.contains('T'), "{}", message.source);
            assert_eq!(message.draft, flags.contains('D'), "{}", message.source);
            let mut want_keywords: Vec<&str> = Vec::new();
            if flags.contains('P') {
                want_keywords.push("$Forwarded");
            }
            want_keywords.extend(
                want["keywords"]
                    .as_array()
                    .expect("keywords")
                    .iter()
                    .map(|k| k.as_str().expect("keyword")),
            );
            assert_eq!(keywords(&message), want_keywords, "{}", message.source);

            let date = i64_of(want, "date");
            assert_eq!(message.internal_date, Some(date), "{}", message.source);
            assert!(date >= previous_date, "import order follows the date");
            previous_date = date;
            checked += 1;
        }
    }
    assert_eq!(checked, expected_messages.len());
}

#[test]
fn mbox_written_by_python_reads_back_exactly() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let manifest = run_writer(dir.path());
    let expected = &manifest["mbox"];
    let path = Path::new(str_of(expected, "path"));
    let expected_messages = expected["messages"].as_array().expect("messages");

    let mut mbox = Mbox::open(path).expect("open mbox");
    let mut read = Vec::new();
    while let Some(message) = mbox.next() {
        read.push(message.expect("read message"));
        assert!(mbox.bytes_read() <= mbox.len_bytes());
    }
    assert_eq!(mbox.bytes_read(), mbox.len_bytes(), "progress reaches 100%");
    assert_eq!(read.len(), expected_messages.len());

    for (i, (message, want)) in read.iter().zip(expected_messages).enumerate() {
        assert_eq!(message.source, format!("mbox:{}#{}", path.display(), i + 1));
        let want_raw = unhex(str_of(want, "raw"));
        assert_eq!(
            String::from_utf8_lossy(&message.raw),
            String::from_utf8_lossy(&want_raw),
            "{}",
            message.source
        );
        assert_eq!(message.raw, want_raw, "{}", message.source);

        let flags = str_of(want, "flags");
        assert_eq!(message.seen, flags.contains('R'), "{}", message.source);
        assert_eq!(message.answered, flags.contains('A'), "{}", message.source);
        assert_eq!(message.flagged, flags.contains('F'), "{}", message.source);
        assert_eq!(message.draft, flags.contains('T'), "{}", message.source);
        assert_eq!(message.deleted, flags.contains('D'), "{}", message.source);
        assert!(message.keywords.is_empty());
        assert_eq!(
            message.internal_date,
            Some(i64_of(want, "date")),
            "{} (From {})",
            message.source,
            str_of(want, "from")
        );
    }
}
