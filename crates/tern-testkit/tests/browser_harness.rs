//! The browser harness (`tern_testkit::browser`) against a tiny HTTP server on loopback:
//! a click and a screenshot, a CSP violation reported, console errors and page errors
//! collected, a failing assertion reported with its message, and a run that hangs
//! killed with its Chromium.
//!
//! The pages carry `<link rel="icon" href="data:,">`: without an icon Chromium fetches
//! `/favicon.ico`, and a 404 there is a console error.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use tern_testkit::browser;

const INDEX: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>Harness</title></head>
<body>
<button id="go">Press</button>
<p id="out">waiting</p>
<script>
document.getElementById('go').addEventListener('click', () => {
  document.getElementById('out').textContent = 'pressed';
});
</script>
</body></html>"#;

/// Served with `Content-Security-Policy: script-src 'none'`: the inline script must not
/// run.
const CSP_PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>CSP</title></head>
<body>
<p id="out">static</p>
<script>document.getElementById('out').textContent = 'script ran';</script>
</body></html>"#;

/// Logs an error and throws an uncaught one.
const BROKEN_PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>Broken</title></head>
<body>
<p id="out">broken</p>
<script>
console.error('something went wrong here');
setTimeout(() => { throw new Error('uncaught in the page'); }, 0);
</script>
</body></html>"#;

/// Serves the pages above on a free loopback port, one thread per connection, until
/// the test process ends. Returns the base URL.
fn serve() -> String {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind loopback");
    let base = format!("http://{}", listener.local_addr().expect("local addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || answer(stream));
        }
    });
    base
}

fn answer(mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let request = String::from_utf8_lossy(&request);
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let (status, headers, body) = match path {
        "/" => ("200 OK", "", INDEX),
        "/csp" => ("200 OK", "Content-Security-Policy: script-src 'none'\r\n", CSP_PAGE),
        "/broken" => ("200 OK", "", BROKEN_PAGE),
        _ => ("404 Not Found", "", "not found"),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n{headers}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
}

#[test]
fn click_changes_text_and_screenshot_is_saved() {
    let base = serve();
    let shots = tempfile::tempdir().expect("tempdir");
    let browser = browser::require().with_screenshots(shots.path());
    let script = r#"
export default async function ({ page, env, assert, screenshot, step }) {
  step('open the page');
  await page.goto(env.BASE + '/');
  assert.equal(await page.textContent('#out'), 'waiting');
  step('press the button');
  await page.click('#go');
  assert.equal(await page.textContent('#out'), 'pressed');
  await screenshot('harness-click');
}
"#;
    let output = browser
        .run(script, &[("BASE", &base)])
        .unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(output.screenshots, vec![shots.path().join("harness-click.png")]);
    let png = std::fs::read(&output.screenshots[0]).expect("the screenshot exists");
    assert!(png.len() > 100, "a PNG of {} bytes", png.len());
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(output.steps[0].starts_with("launched Chromium "), "{:?}", output.steps);
    assert_eq!(output.steps[1..], ["open the page", "press the button"]);
    assert!(output.console.is_empty(), "console errors: {:?}", output.console);
    assert!(output.page_errors.is_empty(), "page errors: {:?}", output.page_errors);
    assert!(output.csp_violations.is_empty(), "CSP: {:?}", output.csp_violations);
    assert!(output.stdout.lines().last().unwrap().contains(r#""type":"result""#));
}

#[test]
fn csp_violation_is_reported() {
    let base = serve();
    let script = r#"
export default async function ({ page, env, assert }) {
  await page.goto(env.BASE + '/csp');
  // The inline script was blocked, and the report may come a moment after the load.
  assert.equal(await page.textContent('#out'), 'static');
  await page.waitForTimeout(200);
}
"#;
    let output = browser::require()
        .run(script, &[("BASE", &base)])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(output.csp_violations.len(), 1, "{:?}", output.csp_violations);
    let violation = &output.csp_violations[0];
    assert!(
        violation.contains("inline script") && violation.contains("script-src 'none'"),
        "{violation}"
    );
    assert!(violation.contains(&format!("{base}/csp")), "no location: {violation}");
    assert!(output.console.is_empty(), "console errors: {:?}", output.console);
    assert!(output.page_errors.is_empty(), "page errors: {:?}", output.page_errors);
}

#[test]
fn console_errors_and_page_errors_are_collected() {
    let base = serve();
    let script = r#"
export default async function ({ page, env }) {
  const uncaught = page.waitForEvent('pageerror');
  await page.goto(env.BASE + '/broken');
  await uncaught;
}
"#;
    let output = browser::require()
        .run(script, &[("BASE", &base)])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(output.console.len(), 1, "{:?}", output.console);
    assert!(
        output.console[0].starts_with("something went wrong here"),
        "{:?}",
        output.console
    );
    assert_eq!(output.page_errors.len(), 1, "{:?}", output.page_errors);
    assert!(
        output.page_errors[0].contains("uncaught in the page"),
        "{:?}",
        output.page_errors
    );
    assert!(output.csp_violations.is_empty(), "CSP: {:?}", output.csp_violations);
}

#[test]
fn failing_assertion_is_an_error_with_its_message() {
    let base = serve();
    let shots = tempfile::tempdir().expect("tempdir");
    let script = r#"
export default async function ({ page, env, assert, step }) {
  await page.goto(env.BASE + '/broken');
  step('check the text');
  assert.equal(await page.textContent('#out'), 'pressed', 'the button text after the click');
}
"#;
    let error = browser::require()
        .with_screenshots(shots.path())
        .run(script, &[("BASE", &base)])
        .expect_err("the assertion fails");
    assert!(error.starts_with("the browser test failed:"), "{error}");
    assert!(error.contains("the button text after the click"), "{error}");
    assert!(error.contains("AssertionError"), "no stack: {error}");
    // What the page said and what the script did are in the report.
    assert!(error.contains("something went wrong here"), "no console: {error}");
    assert!(error.contains("check the text"), "no steps: {error}");
    let failure_shot = shots.path().join("script-failure.png");
    assert!(error.contains(&failure_shot.display().to_string()), "{error}");
    assert!(std::fs::metadata(&failure_shot).expect("failure screenshot").len() > 0);
}

#[test]
fn script_file_errors_are_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("no_default.mjs");
    std::fs::write(&file, "export const x = 1;\n").expect("write");
    let browser = browser::require().with_screenshots(dir.path());
    let error = browser.run(file.as_path(), &[]).expect_err("no default export");
    assert!(error.contains("must export a default async function (ctx)"), "{error}");

    let error = browser
        .run(dir.path().join("missing.mjs").as_path(), &[])
        .expect_err("no such file");
    assert!(error.contains("does not exist"), "{error}");
}

#[test]
fn timeout_kills_node_and_chromium() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pids = dir.path().join("pids");
    // Node's PID and its children's (Chromium's browser process), then it hangs.
    let script = r#"
import fs from 'node:fs';
export default async function ({ page, env }) {
  await page.setContent('<p>hanging</p>');
  const children = fs.readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, 'utf8');
  fs.writeFileSync(env.PIDS, `${process.pid} ${children}`);
  await new Promise((resolve) => setTimeout(resolve, 600_000));
}
"#;
    let started = Instant::now();
    let error = browser::require()
        .with_timeout(Duration::from_secs(15))
        .run(script, &[("PIDS", pids.to_str().unwrap())])
        .expect_err("the run times out");
    assert!(error.contains("timed out after 15s"), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "took {:?}",
        started.elapsed()
    );

    let pids: Vec<u32> = std::fs::read_to_string(&pids)
        .expect("the script wrote its PIDs")
        .split_whitespace()
        .map(|p| p.parse().expect("a PID"))
        .collect();
    assert!(pids.len() >= 2, "node and Chromium: {pids:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive: Vec<u32> = pids.iter().copied().filter(|&p| alive(p)).collect();
        if alive.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "still running after the timeout: {alive:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether a process exists and is not a zombie.
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")) else {
        return false;
    };
    // "pid (comm) state …": the state follows the last ')'.
    let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start()).unwrap_or("");
    !state.starts_with('Z') && !state.starts_with('X')
}
