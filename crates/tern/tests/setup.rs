//! The setup page end to end: the `tern` binary (`tern quickstart`) serving `/setup` on
//! https, driven by headless Chromium through Playwright (`tern_testkit::browser`), as a
//! user would: from the login page's link, an address typed in, each mail app picked in
//! turn (its steps with this server's host name and ports), the Apple profile and the
//! Outlook 2007 file downloaded and read back (Python's plistlib for the profile), a
//! wrong and a right password checked, and the phone layout. No page may log an error
//! (beyond the refusals it provokes), throw, or break its Content-Security-Policy. curl
//! fetches the autoconfig, Autodiscover and MTA-STS documents from the same server by
//! their DNS names, over http and https.
//!
//! `screenshots` writes docs/screenshots/setup-*.png with `TERN_UPDATE_SCREENSHOTS=1`:
//!
//! ```text
//! TERN_UPDATE_SCREENSHOTS=1 cargo test -p tern --test setup screenshots
//! ```

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Quickstart, Screenshots};
use tern_testkit::browser::Output;

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
    server.browse(&path, &env, Duration::from_secs(240), screenshots, |c| {
        REFUSED.iter().any(|r| c.contains(r))
    })
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
    let shots = Screenshots::new();
    let output = browse(&server, "screenshots.mjs", Some(&shots.dir));
    assert_eq!(
        Screenshots::taken(&output),
        [
            "setup-start.png",
            "setup-iphone.png",
            "setup-thunderbird.png",
            "setup-phone.png",
        ]
    );
}

/// curl, as a mail client would fetch them from the running server: Thunderbird's
/// autoconfig over plain http and over https by the autoconfig name, Outlook's
/// Autodiscover POST by the autodiscover name, and the MTA-STS policy by the mta-sts
/// name (curl's `--resolve` points those names at the loopback listeners).
#[test]
fn curl_fetches_autoconfig_autodiscover_and_mta_sts() {
    let server = server();
    let (http, https) = (server.port(8080), server.port(8443));
    let curl = |args: &[&str]| -> (String, String) {
        let out = std::process::Command::new("curl")
            .args([
                "--silent",
                "--show-error",
                "--insecure",
                "--write-out",
                "\n%{http_code}",
            ])
            .args(args)
            .output()
            .expect("curl runs");
        assert!(
            out.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (body.to_string(), code.to_string())
    };
    let resolve = |name: &str, port: u16| format!("{name}:{port}:127.0.0.1");

    for (scheme, port) in [("http", http), ("https", https)] {
        let url =
            format!("{scheme}://autoconfig.example.test:{port}/mail/config-v1.1.xml?emailaddress=bob%40example.test");
        let (body, code) = curl(&["--resolve", &resolve("autoconfig.example.test", port), &url]);
        assert_eq!(code, "200", "{url}: {body}");
        assert!(body.contains("<emailProvider id=\"example.test\">"), "{body}");
        assert!(
            body.contains(&format!("<port>{}</port>", server.port(1993))),
            "IMAPS port: {body}"
        );
        assert!(body.contains("<hostname>mail.example.test</hostname>"));
    }

    let request = "<?xml version=\"1.0\" encoding=\"utf-8\"?><Autodiscover \
        xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006\"><Request>\
        <EMailAddress>bob@example.test</EMailAddress><AcceptableResponseSchema>\
        http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a\
        </AcceptableResponseSchema></Request></Autodiscover>";
    let url = format!("https://autodiscover.example.test:{https}/Autodiscover/Autodiscover.xml");
    let (body, code) = curl(&[
        "--resolve",
        &resolve("autodiscover.example.test", https),
        "-H",
        "Content-Type: text/xml",
        "--data-binary",
        request,
        &url,
    ]);
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("<LoginName>bob@example.test</LoginName>"), "{body}");
    assert!(body.contains(&format!("<Port>{}</Port>", server.port(1465))), "{body}");

    let url = format!("https://mta-sts.example.test:{https}/.well-known/mta-sts.txt");
    let (body, code) = curl(&["--resolve", &resolve("mta-sts.example.test", https), &url]);
    assert_eq!(code, "200");
    assert!(
        body.starts_with("version: STSv1\r\n") && body.contains("mx: mail.example.test\r\n"),
        "{body:?}"
    );
}
