//! `tern doctor` and the `/setup/check` page against a real `tern serve`: a healthy
//! server (a certificate from a test CA, DNS from an in-process server), a port nobody
//! listens on, wrong certificates, and a wrong password.

mod common;

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::Value;
use tern::config::Config;
use tern_testkit::dns::TestDns;

const HOST: &str = "mail.example.test";
const ALICE: &str = "alice@example.test";
const PASSWORD: &str = "doctor-test-Pa55word";

/// A private CA the tests trust with --ca-file.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl TestCa {
    fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Tern Doctor Test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        TestCa {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// A server certificate for `names` and its key, as PEM.
    fn issue(&self, names: &[&str]) -> (String, String) {
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// The certificate a test server presents.
enum Certificate {
    /// From the test CA, for mail.example.test.
    Good,
    /// From the test CA, for another name.
    OtherName,
    /// Self-signed for mail.example.test (what quickstart makes).
    SelfSigned,
}

/// `tern serve` on free ports with its own DNS server; killed when dropped.
struct Server {
    data: PathBuf,
    ca_file: PathBuf,
    log: PathBuf,
    offset: u16,
    dns: TestDns,
    child: Child,
    dir: tempfile::TempDir,
}

impl Server {
    fn start(certificate: Certificate) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("tern-data");
        std::fs::create_dir_all(&data).unwrap();
        let offset = free_offset();
        let dns = TestDns::start().unwrap();
        let mut config = Config::quickstart(HOST, offset).unwrap();
        config.dns.nameservers = vec![dns.addr()];
        std::fs::write(data.join("tern.toml"), config.to_toml_string()).unwrap();

        let ca = TestCa::new();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &ca.pem).unwrap();
        let (cert_path, key_path) = (config.tls.certificate_path(&data), config.tls.private_key_path(&data));
        std::fs::create_dir_all(cert_path.parent().unwrap()).unwrap();
        match certificate {
            Certificate::Good | Certificate::OtherName => {
                let name = if matches!(certificate, Certificate::Good) {
                    HOST
                } else {
                    "other.example.test"
                };
                let (cert, key) = ca.issue(&[name]);
                std::fs::write(&cert_path, cert).unwrap();
                std::fs::write(&key_path, key).unwrap();
            }
            Certificate::SelfSigned => tern::tls::generate_self_signed(HOST, &cert_path, &key_path).unwrap(),
        }

        // What a well-published domain has: the host, the discovery names, every SRV.
        dns.set_ttl(0);
        dns.set_a(HOST, &[Ipv4Addr::LOCALHOST]);
        dns.set_cname("autoconfig.example.test", HOST);
        dns.set_cname("autodiscover.example.test", HOST);
        for (label, base) in [
            ("_imaps._tcp", 1993),
            ("_imap._tcp", 1143),
            ("_pop3s._tcp", 1995),
            ("_pop3._tcp", 1110),
            ("_submissions._tcp", 1465),
            ("_submission._tcp", 1587),
        ] {
            dns.set_srv(&format!("{label}.example.test"), &[(0, 1, base + offset, HOST)]);
        }

        ok(&tern(&data, &["domain", "add", "example.test"]));
        ok(&tern_stdin(
            &data,
            &["user", "add", ALICE, "--password-stdin"],
            &format!("{PASSWORD}\n"),
        ));
        let log = dir.path().join("tern.log");
        let child = Command::new(env!("CARGO_BIN_EXE_tern"))
            .arg("--data")
            .arg(&data)
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let server = Server {
            data,
            ca_file,
            log,
            offset,
            dns,
            child,
            dir,
        };
        let started = Instant::now();
        for base in [1993, 1143, 1995, 1110, 1465, 1587, 8443] {
            while std::net::TcpStream::connect(("127.0.0.1", base + offset)).is_err() {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "tern serve did not start: {}",
                    std::fs::read_to_string(&server.log).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        server
    }

    fn port(&self, base: u16) -> u16 {
        base + self.offset
    }

    /// `tern doctor ALICE` with `args` after it, asking this server's DNS; the password,
    /// if any, on standard input.
    fn doctor(&self, data: &Path, args: &[&str], password: Option<&str>) -> Output {
        let resolver = self.dns.addr().to_string();
        let mut all = vec!["doctor", ALICE, "--resolver", &resolver];
        all.extend_from_slice(args);
        if password.is_some() {
            all.push("--password-stdin");
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_tern"))
            .arg("--data")
            .arg(data)
            .args(&all)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        if let Some(password) = password {
            stdin.write_all(format!("{password}\n").as_bytes()).unwrap();
        }
        drop(stdin);
        child.wait_with_output().unwrap()
    }

    fn ca(&self) -> String {
        self.ca_file.display().to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn findings(out: &Output) -> Vec<Value> {
    let report: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    report["findings"].as_array().unwrap().clone()
}

fn of<'a>(findings: &'a [Value], check: &str) -> Vec<&'a Value> {
    findings.iter().filter(|f| f["check"] == check).collect()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_healthy_server_passes_every_check() {
    let server = Server::start(Certificate::Good);
    let out = server.doctor(&server.data, &["--ca-file", &server.ca(), "--json"], Some(PASSWORD));
    assert!(out.status.success(), "{}", text(&out));
    let all = findings(&out);
    for f in &all {
        assert_eq!(f["status"], "ok", "{f}");
    }
    assert_eq!(of(&all, "host").len(), 1);
    assert_eq!(of(&all, "srv").len(), 6);
    assert_eq!(of(&all, "port").len(), 6);
    assert_eq!(of(&all, "tls").len(), 6);
    assert_eq!(of(&all, "login").len(), 3);
    let tls = of(&all, "tls");
    assert!(
        tls.iter().all(|f| f["detail"]
            .as_str()
            .unwrap()
            .contains("certificate for mail.example.test, issued by Tern Doctor Test CA")),
        "{tls:?}"
    );
    let logins: Vec<&str> = of(&all, "login")
        .iter()
        .map(|f| f["subject"].as_str().unwrap())
        .collect();
    // Each protocol's implicit-TLS port is the one a client should use (RFC 8314).
    assert_eq!(
        logins,
        vec![
            format!("IMAP {}", server.port(1993)),
            format!("POP3 {}", server.port(1995)),
            format!("SMTP {}", server.port(1465)),
        ]
    );

    // The same as text: one line per finding, and no advice needed.
    let out = server.doctor(&server.data, &["--ca-file", &server.ca()], Some(PASSWORD));
    let stdout = ok(&out);
    assert!(
        stdout.contains("A mail client can connect: 0 warning(s); logins work."),
        "{stdout}"
    );
    assert!(!stdout.contains("What to do"), "{stdout}");
    let imap_line = stdout
        .lines()
        .find(|l| l.contains(&format!("IMAP {} (STARTTLS)", server.port(1143))) && l.contains("TLS "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(imap_line.starts_with("ok"), "{imap_line}");
}

#[test]
fn a_wrong_password_is_named_and_never_shown() {
    let server = Server::start(Certificate::Good);
    let wrong = "not-the-Pa55word-xyz";
    let out = server.doctor(&server.data, &["--ca-file", &server.ca()], Some(wrong));
    let err = one_line_error(&out);
    assert!(err.contains("3 error(s)"), "{err}");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let refused: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("error") && l.contains("login"))
        .collect();
    assert_eq!(refused.len(), 3, "{stdout}");
    assert!(
        refused.iter().all(|l| l.contains("wrong password or disabled account")),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("tern user passwd {ALICE}")), "{stdout}");
    assert!(!text(&out).contains(wrong), "the password leaked: {}", text(&out));
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(log.contains("login failed"), "{log}");
    assert!(!log.contains(wrong), "the password is in the server's log");

    // A disabled account is refused the same way, with the right password.
    ok(&tern(&server.data, &["user", "disable", ALICE]));
    let out = server.doctor(&server.data, &["--ca-file", &server.ca(), "--json"], Some(PASSWORD));
    assert!(!out.status.success());
    let all = findings(&out);
    let logins = of(&all, "login");
    assert_eq!(logins.len(), 3);
    for f in logins {
        assert_eq!(f["status"], "error", "{f}");
        assert!(
            f["detail"]
                .as_str()
                .unwrap()
                .contains("wrong password or disabled account"),
            "{f}"
        );
    }
    assert!(!text(&out).contains(PASSWORD));
}

#[test]
fn a_port_nobody_listens_on_is_an_error_naming_it() {
    let server = Server::start(Certificate::Good);
    // A copy of the configuration whose POP3S port is one nothing listens on; only its
    // tern.toml exists there (the doctor needs no store).
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let copy = server.dir.path().join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    let mut config = Config::load_settings(&server.data.join("tern.toml")).unwrap();
    config.listen.pop3s = vec![std::net::SocketAddr::from(([127, 0, 0, 1], closed))];
    std::fs::write(copy.join("tern.toml"), config.to_toml_string()).unwrap();

    let out = server.doctor(&copy, &["--ca-file", &server.ca(), "--json"], None);
    assert!(!out.status.success(), "{}", text(&out));
    let all = findings(&out);
    let errors: Vec<&Value> = all.iter().filter(|f| f["status"] == "error").collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let error = errors[0];
    assert_eq!(error["check"], "port");
    assert_eq!(error["endpoint"]["port"], closed);
    assert_eq!(error["subject"], format!("POP3 {closed} (SSL/TLS)"));
    assert!(
        error["detail"].as_str().unwrap().contains("connection refused"),
        "{error}"
    );
    assert!(
        error["advice"].as_str().unwrap().contains(&format!("port {closed}")),
        "{error}"
    );
    // The other ports are fine; no TLS check for the closed one.
    assert_eq!(of(&all, "tls").len(), 5);
    assert!(of(&all, "tls").iter().all(|f| f["status"] == "ok"));
    assert!(!copy.join("store").exists(), "the doctor opened a store");

    let out = server.doctor(&copy, &["--ca-file", &server.ca()], None);
    let err = one_line_error(&out);
    assert!(err.contains("1 error(s)"), "{err}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("error") && l.contains(&format!("POP3 {closed} (SSL/TLS)"))),
        "{stdout}"
    );
    assert!(stdout.contains("logins not checked"), "{stdout}");
}

#[test]
fn wrong_certificates_are_named() {
    // A certificate for another name, from the trusted CA.
    let server = Server::start(Certificate::OtherName);
    let out = server.doctor(&server.data, &["--ca-file", &server.ca(), "--json"], Some(PASSWORD));
    assert!(!out.status.success());
    let all = findings(&out);
    let tls = of(&all, "tls");
    assert_eq!(tls.len(), 6);
    for f in &tls {
        assert_eq!(f["status"], "error", "{f}");
        let detail = f["detail"].as_str().unwrap();
        assert!(detail.contains("WRONG NAME: it names other.example.test"), "{detail}");
        assert!(!detail.contains("UNTRUSTED"), "{detail}");
    }
    // No password goes to a server whose certificate fails.
    let logins = of(&all, "login");
    assert_eq!(logins.len(), 3);
    assert!(
        logins
            .iter()
            .all(|f| f["status"] == "warning" && f["detail"].as_str().unwrap().starts_with("not tried")),
        "{logins:?}"
    );
    assert!(
        !std::fs::read_to_string(&server.log).unwrap().contains(ALICE),
        "a login was tried"
    );
    drop(server);

    // Self-signed: untrusted even with the CA given, and said so.
    let server = Server::start(Certificate::SelfSigned);
    let out = server.doctor(&server.data, &["--ca-file", &server.ca()], None);
    one_line_error(&out);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let tls: Vec<&str> = stdout
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("TLS"))
        .collect();
    assert_eq!(tls.len(), 6, "{stdout}");
    assert!(
        tls.iter().all(|l| l.starts_with("error") && l.contains("SELF-SIGNED")),
        "{stdout}"
    );
    assert!(stdout.contains("Get a certificate from a public CA"), "{stdout}");
    // Trusting that very certificate makes it pass.
    let cert = server.data.join("tls/cert.pem").display().to_string();
    let out = server.doctor(&server.data, &["--ca-file", &cert], None);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn bad_input_is_one_readable_line() {
    let dir = tempfile::tempdir().unwrap();
    let err = one_line_error(&tern(dir.path(), &["doctor", ALICE]));
    assert!(err.contains("not a Tern data folder"), "{err}");
    let server = Server::start(Certificate::Good);
    // Without --ca-file the test CA is trusted by nobody: said for every TLS port.
    let out = server.doctor(&server.data, &[], None);
    let err = one_line_error(&out);
    assert!(err.contains("6 error(s)"), "{err}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.matches("UNTRUSTED ISSUER: Tern Doctor Test CA").count(),
        6,
        "{stdout}"
    );
    let err = one_line_error(&tern(&server.data, &["doctor", "alice-at-example.test"]));
    assert!(err.contains("is not an email address"), "{err}");
    let err = one_line_error(&tern(&server.data, &["doctor", ALICE, "--resolver", "dns.example"]));
    assert!(
        err.contains("--resolver") && err.contains("not a DNS server address"),
        "{err}"
    );
    let err = one_line_error(&tern(
        &server.data,
        &["doctor", ALICE, "--ca-file", "/nonexistent/ca.pem"],
    ));
    assert!(err.contains("--ca-file /nonexistent/ca.pem"), "{err}");
    let not_pem = server.dir.path().join("not-a-ca.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();
    let err = one_line_error(&tern(
        &server.data,
        &["doctor", ALICE, "--ca-file", &not_pem.display().to_string()],
    ));
    assert!(err.contains("holds no certificate"), "{err}");
}

/// curl with `args` (insecure TLS: the page's own certificate is not what is tested);
/// returns the status and body.
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-k", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

/// The page's findings as (status, what, seen).
fn page_findings(page: &str) -> Vec<(String, String, String)> {
    let cell = |row: &str, class: &str| -> String {
        let start = row.find(&format!("<td class=\"{class}\">")).unwrap() + class.len() + 13;
        let end = start + row[start..].find("</td>").unwrap();
        let text = row[start..end]
            .replace("<span class=\"badge\">", "")
            .replace("</span>", "");
        text.replace("&#x27;", "'")
            .replace("&#39;", "'")
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    };
    page.split("<tr class=\"finding ")
        .skip(1)
        .map(|row| {
            let row = &row[..row.find("</tr>").unwrap()];
            (cell(row, "status"), cell(row, "subject"), cell(row, "seen"))
        })
        .collect()
}

#[test]
fn the_check_page_shows_the_same_findings() {
    let server = Server::start(Certificate::Good);
    let base = format!("https://127.0.0.1:{}", server.port(8443));
    let url = format!("{base}/setup/check");

    // The setup page's link fills the address in.
    let (status, page) = curl(&[&format!("{url}?email=alice%40example.test")]);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(r#"name="email" value="alice@example.test""#), "{page}");
    assert!(!page.contains(r#"name="csrf""#), "no session, no token: {page}");
    assert!(!page.contains("<script"), "no script on the page");
    let headers = Command::new("curl")
        .args(["-s", "-k", "-o", "/dev/null", "-D", "-", &url])
        .output()
        .unwrap();
    let headers = String::from_utf8_lossy(&headers.stdout).to_ascii_lowercase();
    for header in [
        "content-security-policy: default-src 'none'; script-src 'self'",
        "x-frame-options: sameorigin",
        "x-content-type-options: nosniff",
        "cache-control: no-store",
    ] {
        assert!(headers.contains(header), "{header} in {headers}");
    }

    // A POST from no page of this site is refused.
    let form = ["--data-urlencode", "email=alice@example.test"];
    let (status, _) = curl(&[&form[..], &[url.as_str()]].concat());
    assert_eq!(status, 403);

    // From the page: the same findings as tern doctor trusting what a mail app trusts
    // (the test CA is not among them, so no password is sent anywhere).
    let origin = format!("Origin: {base}");
    let password = format!("password={PASSWORD}");
    let (status, page) = curl(&[
        "-H",
        &origin,
        "--data-urlencode",
        "email=alice@example.test",
        "--data-urlencode",
        &password,
        &url,
    ]);
    assert_eq!(status, 200, "{page}");
    assert!(!page.contains(PASSWORD), "the password came back in the page");
    let shown = page_findings(&page);
    let cli = server.doctor(&server.data, &["--json"], Some(PASSWORD));
    assert!(!cli.status.success());
    let expected: Vec<(String, String, String)> = findings(&cli)
        .iter()
        .map(|f| {
            (
                f["status"].as_str().unwrap().to_string(),
                f["subject"].as_str().unwrap().to_string(),
                f["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(shown, expected);
    assert!(
        shown
            .iter()
            .any(|(s, _, seen)| s == "error" && seen.contains("UNTRUSTED ISSUER: Tern Doctor Test CA")),
        "{shown:?}"
    );
    assert!(page.contains("What to do"), "{page}");
    assert!(page.contains("problem(s) keep a mail app from connecting"), "{page}");
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(log.contains("connection check"), "{log}");
    assert!(!log.contains(PASSWORD), "the password is in the log");

    // Addresses of domains this server does not host are not checked.
    let (status, page) = curl(&["-H", &origin, "--data-urlencode", "email=bob@elsewhere.test", &url]);
    assert_eq!(status, 400);
    assert!(
        page.contains("elsewhere.test is not a domain this server hosts"),
        "{page}"
    );

    // A wrong password is caught as the visitor's own login (counted against the
    // visitor's address and the account); the doctor then logs in nowhere with it.
    let (status, page) = curl(&[
        "-H",
        &origin,
        "--data-urlencode",
        "email=alice@example.test",
        "--data-urlencode",
        "password=not-Alices-password-42",
        &url,
    ]);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Wrong password"), "{page}");
    assert!(
        !page.contains("not-Alices-password-42"),
        "the password came back in the page"
    );
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(!log.contains("not-Alices-password-42"), "the password is in the log");

    // With a webmail session the form carries its CSRF token, and the guard wants it.
    let jar = server.dir.path().join("cookies");
    let jar = jar.to_str().unwrap();
    let user = format!("user={ALICE}");
    let (status, _) = curl(&[
        "-c",
        jar,
        "-H",
        &origin,
        "--data-urlencode",
        &user,
        "--data-urlencode",
        &password,
        &format!("{base}/login"),
    ]);
    assert_eq!(status, 303, "webmail login");
    let (status, page) = curl(&["-b", jar, &url]);
    assert_eq!(status, 200);
    let token = page
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no CSRF field with a session: {page}"))
        .to_string();
    let (status, page) = curl(&[
        "-b",
        jar,
        "-H",
        &origin,
        "--data-urlencode",
        "email=alice@example.test",
        &url,
    ]);
    assert_eq!(status, 403, "without the token: {page}");
    let csrf = format!("csrf={token}");
    let (status, page) = curl(&[
        "-b",
        jar,
        "-H",
        &origin,
        "--data-urlencode",
        &csrf,
        "--data-urlencode",
        "email=alice@example.test",
        &url,
    ]);
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        page_findings(&page).len(),
        expected.len() - 3,
        "the same checks, without logins"
    );
}
