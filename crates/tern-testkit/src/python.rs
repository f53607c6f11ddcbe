//! Python 3 as a peer: tests hand a standard-library script (imaplib, mailbox, …) to
//! `python3 -c`, and the script prints a JSON manifest of what it did; these helpers run
//! it and read the manifest.

use std::process::Command;

use serde_json::Value;

/// Runs a Python script with arguments and parses the JSON it prints.
pub fn run_json(script: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Value {
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .expect("python3 must be installed to run this test (scripts/test.sh installs it)");
    assert!(
        output.status.success(),
        "the Python script failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the Python script prints JSON")
}

/// Bytes from the hex a manifest carries them in.
pub fn unhex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd-length hex from Python");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex from Python"))
        .collect()
}

/// A string field of a manifest entry.
pub fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or_else(|| panic!("{key} in {value}"))
}

/// An integer field of a manifest entry.
pub fn i64_of(value: &Value, key: &str) -> i64 {
    value[key].as_i64().unwrap_or_else(|| panic!("{key} in {value}"))
}

/// A list-of-strings field of a manifest entry.
pub fn strings_of<'a>(value: &'a Value, key: &str) -> Vec<&'a str> {
    value[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} in {value}"))
        .iter()
        .map(|v| v.as_str().expect("string"))
        .collect()
}

/// Python source of `write_mbox(path, written)`, for scripts to start with
/// (`format!("{WRITE_MBOX}{script}")`). `written` is a list of
/// `(message_bytes, flags, sender, unix_date)`; it writes them with `mailbox.mbox` and
/// returns, per message, what a reader must get back: `raw` (hex of the bytes Python gave
/// the file before its mboxo `>From ` quoting, plus the newline `mailbox` adds to a
/// message lacking one), `flags` as `mailbox` reads them back, `from` (the separator
/// line) and `date`.
pub const WRITE_MBOX: &str = r#"
import email.generator, io, mailbox, time

def write_mbox(path, written):
    box = mailbox.mbox(path, create=True)
    expected = []
    for raw, flags, sender, date in written:
        msg = mailbox.mboxMessage(raw)
        msg.set_flags(flags)
        msg.set_from(sender, time.gmtime(date))
        # Serialised before add(): for an 8-bit body Python's generator writes the
        # ">From " quoting into the message object itself.
        buf = io.BytesIO()
        email.generator.BytesGenerator(buf, False, 0).flatten(msg)
        data = buf.getvalue()
        if not data.endswith(b"\n"):
            data += b"\n"
        expected.append((data, date))
        box.add(msg)
    box.flush()
    box.close()
    box = mailbox.mbox(path, create=False)
    assert len(box) == len(written), (len(box), len(written))
    manifest = []
    for (data, date), key in zip(expected, box.keys()):
        msg = box.get_message(key)
        manifest.append({"raw": data.hex(), "flags": msg.get_flags(), "from": msg.get_from(), "date": date})
    box.close()
    return manifest
"#;
