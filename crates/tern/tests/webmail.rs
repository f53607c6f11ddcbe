//! Webmail end to end: the `tern` binary (`tern quickstart`) serving webmail on https,
//! driven by headless Chromium through Playwright (`tern_testkit::browser`), with mail
//! put in and checked by real peers: Python's smtplib (the MX and submission ports) and
//! imaplib (IMAP with STARTTLS).
//!
//! Each test starts its own quickstart on a temporary data folder and free ports, adds
//! bob@example.test with the CLI, and runs one browser script from `tests/webmail/`
//! (`lib.mjs` holds what the scripts share, `peer.py` the Python peers). The scripts
//! say what they check, step by step.
//!
//! `screenshots` takes the screenshots of docs/screenshots/ from a small realistic
//! mailbox. It saves them into a temporary folder; with `TERN_UPDATE_SCREENSHOTS=1` into
//! docs/screenshots/ itself:
//!
//! ```text
//! TERN_UPDATE_SCREENSHOTS=1 cargo test -p tern --test webmail screenshots
//! ```

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Quickstart, Screenshots};
use tern_testkit::browser::Output;

const BOB: &str = "bob@example.test";
const BOB_PASSWORD: &str = "bob-password-1234";

/// A running quickstart with bob added.
fn server() -> Quickstart {
    let server = Quickstart::start();
    server.add_user(BOB, "Bob Baker", BOB_PASSWORD);
    server
}

/// The console errors a run may show (each containing one of these); a page that throws
/// or breaks its Content-Security-Policy always fails the test.
#[derive(Default)]
struct Allowed<'a> {
    console: &'a [&'a str],
}

/// Runs `tests/webmail/<script>` against `server`; panics with everything the run saw
/// (and the end of the server's log) if it fails, or if a page logged an error, threw,
/// or broke its Content-Security-Policy (console errors beyond what `allowed` lists).
fn browse(
    server: &Quickstart,
    script: &str,
    timeout: Duration,
    screenshots: Option<&Path>,
    allowed: Allowed,
) -> Output {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webmail").join(script);
    let base = format!("https://127.0.0.1:{}", server.port(8443));
    let http_base = format!("http://127.0.0.1:{}", server.port(8080));
    let ports = [1143, 2525, 1587].map(|p| server.port(p).to_string());
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tern-web/tests/xss_corpus");
    let corpus = corpus.canonicalize().unwrap_or(corpus);
    let env = [
        ("BASE", base.as_str()),
        ("HTTP_BASE", http_base.as_str()),
        ("IMAP", ports[0].as_str()),
        ("SMTP", ports[1].as_str()),
        ("SUBMISSION", ports[2].as_str()),
        ("ADMIN", "admin@example.test"),
        ("ADMIN_PASSWORD", server.admin_password.as_str()),
        ("BOB", BOB),
        ("BOB_PASSWORD", BOB_PASSWORD),
        ("XSS_CORPUS", corpus.to_str().unwrap()),
    ];
    server.browse(&path, &env, timeout, screenshots, |c| {
        allowed.console.iter().any(|a| c.contains(a))
    })
}

/// A failed login or a refused request is a console error in Chromium ("Failed to load
/// resource: … 401").
const FAILED_LOAD: &str = "Failed to load resource: the server responded with a status of";

/// A wrong password, then the right one; the inbox; a plain-text and an HTML message
/// (remote images held back until "Show images"); attachments downloaded under their
/// names (one not ASCII) with their bytes; "Show original" byte for byte.
#[test]
fn login_inbox_reading_remote_images_attachments_and_original() {
    let server = server();
    browse(
        &server,
        "read.mjs",
        Duration::from_secs(180),
        None,
        Allowed {
            console: &[&format!("{FAILED_LOAD} 401")],
        },
    );
}

/// A new message with an attachment saved as a draft by itself, then sent (at bob over
/// IMAP, a read copy in Sent, the draft gone); a reply (In-Reply-To, \Answered); a
/// forward as attachment (the original inside, byte for byte, $Forwarded).
#[test]
fn compose_send_reply_forward_as_attachment_and_drafts() {
    let server = server();
    browse(
        &server,
        "compose.mjs",
        Duration::from_secs(240),
        None,
        Allowed::default(),
    );
}

/// The search box and the search options; Move menu; drag and drop onto a folder;
/// delete to Trash; empty Trash; junk and not junk; flag; mark unread; all over IMAP too.
#[test]
fn search_move_drag_delete_empty_junk_flag_unread() {
    let server = server();
    browse(
        &server,
        "organise.mjs",
        Duration::from_secs(240),
        None,
        Allowed::default(),
    );
}

/// Mail arriving over SMTP shows up in the open inbox, and the unread count changes,
/// without a reload; so does a message read over IMAP.
#[test]
fn live_arrival_without_reload() {
    let server = server();
    browse(&server, "live.mjs", Duration::from_secs(180), None, Allowed::default());
}

/// Display name and signature (in compose and in what bob receives), vacation and
/// forwarding saved and shown again, the password changed (old one refused over IMAP
/// and webmail, new one taken).
#[test]
fn settings_profile_signature_vacation_forwarding_password() {
    let server = server();
    browse(
        &server,
        "settings.mjs",
        Duration::from_secs(240),
        None,
        Allowed {
            console: &[&format!("{FAILED_LOAD} 401")],
        },
    );
}

/// Keyboard shortcuts (j, k, o, u, #, r, a, f, e, /, ?, c), the rich-text editor, and the
/// phone layout with its folder menu.
#[test]
fn keyboard_shortcuts_and_phone_layout() {
    let server = server();
    browse(&server, "keys.mjs", Duration::from_secs(240), None, Allowed::default());
}

/// Create, rename and delete folders; refusals for a bad name and a folder with children.
#[test]
fn folder_management() {
    let server = server();
    browse(
        &server,
        "folders.mjs",
        Duration::from_secs(180),
        None,
        Allowed::default(),
    );
}

/// Cookie attributes; CSRF token and Origin checks (a hostile page among them); no
/// framing by another site; logout; plain http from loopback; login throttling.
#[test]
fn csrf_cross_origin_cookie_framing_logout_and_login_throttling() {
    let server = server();
    browse(
        &server,
        "security.mjs",
        Duration::from_secs(240),
        None,
        Allowed {
            // The refused requests and logins.
            console: &[
                &format!("{FAILED_LOAD} 403"),
                &format!("{FAILED_LOAD} 401"),
                &format!("{FAILED_LOAD} 429"),
            ],
        },
    );
}

/// Every file of the XSS corpus read in webmail, with remote images off and on.
#[test]
fn xss_corpus_opened_in_webmail() {
    let server = server();
    browse(&server, "xss.mjs", Duration::from_secs(600), None, Allowed::default());
}

/// docs/screenshots/ (see the top of this file).
#[test]
fn screenshots() {
    let server = server();
    let shots = Screenshots::new();
    let output = browse(
        &server,
        "screenshots.mjs",
        Duration::from_secs(300),
        Some(&shots.dir),
        Allowed::default(),
    );
    assert_eq!(
        Screenshots::taken(&output),
        [
            "login.png",
            "settings.png",
            "folders.png",
            "inbox.png",
            "conversations.png",
            "message-html.png",
            "message-remote-images-blocked.png",
            "compose.png",
            "search.png",
            "phone-inbox.png",
            "phone-message.png",
        ]
    );
}
