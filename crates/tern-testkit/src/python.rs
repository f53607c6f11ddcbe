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
