//! The setup page end to end: the `tern` binary (`tern quickstart`) serving `/setup` on
//! https, driven by headless Chromium through Playwright (`tern_testkit::browser`), as a
//! user would: from the login page's link, an address typed in, each mail app picked in
//! turn (its steps with this server's host name and ports), the Apple profile and the
//! Outlook 2007 file downloaded and read back (Python's plistlib for the profile), a
//! wrong and a right password checked, and the phone layout. No page may log an error
//! (beyond the refusals it provokes), throw, or break its Content-Security-Policy.
//!
//! `screenshots` writes docs/screenshots/setup-*.png with `TERN_UPDATE_SCREENSHOTS=1`:
//!
//! ```text
//! TERN_UPDATE_SCREENSHOTS=1 cargo test -p tern --test setup screenshots
//! ```

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::Quickstart;
use tern_testkit::browser::{self, Output};

const BOB: &str = "bob@example.test";
const BOB_PASSWORD: &str = "bob-password-1234";

/// A refused password (401) and an address of a domain not hosted here (404) are console
/// errors in Chromium ("Failed to load resource: … 401"); nothing else may be.
const REFUSED: [&str; 2] = [
    "Failed to load resource: the server responded with a status of 401",
    "Failed to load resource: the server responded with a status of 404",
];

fn server() -> Quickstart {
    let server = Quickstart::start();
    server.add_user(BOB, "Bob Baker", BOB_PASSWORD);
    server
}

/// Runs `tests/setup/<script>` against `server`; panics with everything the run saw if
/// it fails, or if a page said more than the refusals it provokes.
fn browse(server: &Quickstart, script: &str, screenshots: Option<&Path>) -> Output {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/setup").join(script);
    let base = format!("https://127.0.0.1:{}", server.port(8443));
    let ports = [1143, 1993, 1110, 1995, 1587, 1465, 8443].map(|p| server.port(p).to_string());
    let env = [
        ("BASE", base.as_str()),
        ("HOSTNAME", "mail.example.test"),
        ("IMAP", ports[0].as_str()),
        ("IMAPS", ports[1].as_str()),
        ("POP3", ports[2].as_str()),
        ("POP3S", ports[3].as_str()),
        ("SUBMISSION", ports[4].as_str()),
        ("SUBMISSIONS", ports[5].as_str()),
        ("HTTPS", ports[6].as_str()),
        ("BOB", BOB),
        ("BOB_PASSWORD", BOB_PASSWORD),
    ];
    let mut chromium = browser::require().with_timeout(Duration::from_secs(240));
    if let Some(dir) = screenshots {
        chromium = chromium.with_screenshots(dir);
    }
    let output = chromium
        .run(&path, &env)
        .unwrap_or_else(|e| panic!("{e}\n--- the end of tern's log:\n{}", server.log_tail(40)));
    let console: Vec<&String> = output
        .console
        .iter()
        .filter(|c| !REFUSED.iter().any(|r| c.contains(r)))
        .collect();
    assert!(
        console.is_empty() && output.csp_violations.is_empty() && output.page_errors.is_empty(),
        "{script}: the pages said more than expected\nconsole errors: {console:#?}\nCSP violations: {:#?}\n\
         page errors: {:#?}\nsteps: {:#?}",
        output.csp_violations,
        output.page_errors,
        output.steps
    );
    output
}

/// From the login page to the steps of every mail app, the downloads, the password
/// check and the phone layout.
#[test]
fn setup_page_each_app_profiles_and_password_check() {
    let server = server();
    browse(&server, "setup.mjs", None);
    // The password was never written to the log.
    let log = std::fs::read_to_string(server.data.parent().unwrap().join("tern.log")).unwrap_or_default();
    assert!(!log.contains(BOB_PASSWORD), "the password is in the log");
    assert!(!log.contains("not-the-password"), "the wrong password is in the log");
}

/// docs/screenshots/setup-*.png (see the top of this file).
#[test]
fn screenshots() {
    let server = server();
    let update = std::env::var_os("TERN_UPDATE_SCREENSHOTS").is_some_and(|v| v == "1");
    let scratch = tempfile::tempdir().unwrap();
    let dir: PathBuf = if update {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots")
    } else {
        scratch.path().to_path_buf()
    };
    let output = browse(&server, "screenshots.mjs", Some(&dir));
    let names: Vec<String> = output
        .screenshots
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "setup-start.png",
            "setup-iphone.png",
            "setup-thunderbird.png",
            "setup-phone.png",
        ]
    );
}
