//! ACME through the binary: `tern serve` with `[acme]` pointed at pebble (Let's
//! Encrypt's test server) gets a certificate for its host name and the per-domain names
//! whose DNS points at it, serves it on HTTPS and IMAPS, renews it on `tern cert renew`
//! without a restart, and keeps serving when the CA cannot be reached.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tern::config::Config;
use tern_testkit::dns::TestDns;
use tern_testkit::pebble::Pebble;

const HOST: &str = "mail.example.test";
/// The names of example.test that resolve to this server.
const SERVED: [&str; 4] = [
    "mail.example.test",
    "autoconfig.example.test",
    "autodiscover.example.test",
    "mta-sts.example.test",
];

/// `tern serve` on a data folder, its log kept beside it; killed when dropped.
struct Serve {
    child: Child,
    log: PathBuf,
}

impl Serve {
    fn start(data: &Path, http_port: u16) -> Serve {
        let log = data.with_file_name("tern.log");
        let child = Command::new(env!("CARGO_BIN_EXE_tern"))
            .arg("--data")
            .arg(data)
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let serve = Serve { child, log };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", http_port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "tern serve did not start:\n{}",
                serve.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        serve
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn still_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A quickstart-style data folder on free ports, resolving through `dns`, with
/// `[acme]` on (pointed at `directory`, trusting `ca_file`) and the given domains.
/// No certificate files: ACME is to fetch them.
fn data_folder(dir: &Path, config: &mut Config, directory: &str, ca_file: &Path, domains: &[&str]) -> PathBuf {
    let data = dir.join("tern-data");
    std::fs::create_dir_all(&data).unwrap();
    config.acme.enabled = true;
    config.acme.directory = directory.to_string();
    config.acme.contact = "postmaster@example.test".into();
    config.acme.ca_file = ca_file.to_path_buf();
    std::fs::write(data.join("tern.toml"), config.to_toml_string()).unwrap();
    for domain in domains {
        ok(&tern(&data, &["domain", "add", domain]));
    }
    data
}

fn cert_status(data: &Path) -> serde_json::Value {
    serde_json::from_str(&ok(&tern(data, &["cert", "status", "--json"]))).unwrap()
}

/// Polls `tern cert status --json` until `done` says so.
fn wait_for_status(
    data: &Path,
    serve: &Serve,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let status = cert_status(data);
        if done(&status) {
            return status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{what}: {status:#}\n{}",
            serve.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn client_config(roots: rustls::RootCertStore) -> Arc<rustls::ClientConfig> {
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A TLS connection to 127.0.0.1:`port` for `name` (SNI and verification).
fn connect(
    port: u16,
    name: &str,
    config: Arc<rustls::ClientConfig>,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let server_name = ServerName::try_from(name.to_string()).unwrap();
    let connection = rustls::ClientConnection::new(config, server_name).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .unwrap_or_else(|e| panic!("TLS handshake with {name} on port {port}: {e}"));
    }
    tls
}

/// The chain presented on `port` to a client asking for `name` that trusts only
/// pebble's root: the handshake verifies it.
fn presented(port: u16, name: &str, root_pem: &str) -> Vec<CertificateDer<'static>> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(root_pem.as_bytes()).unwrap())
        .unwrap();
    let tls = connect(port, name, client_config(roots));
    tls.conn
        .peer_certificates()
        .unwrap()
        .iter()
        .map(|c| c.clone().into_owned())
        .collect()
}

/// (DNS names, serial, self-signed) of a certificate.
fn describe(der: &CertificateDer<'_>) -> (Vec<String>, String, bool) {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der.as_ref()).unwrap();
    let mut names: Vec<String> = cert
        .subject_alternative_name()
        .unwrap()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let self_signed = cert.subject().as_raw() == cert.issuer().as_raw();
    (names, cert.raw_serial_as_string(), self_signed)
}

/// The response head of `GET /login` over HTTPS, lower-cased.
fn https_head(port: u16, config: Arc<rustls::ClientConfig>) -> String {
    let mut tls = connect(port, HOST, config);
    write!(tls, "GET /login HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).to_ascii_lowercase();
    text.split("\r\n\r\n").next().unwrap_or_default().to_string()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_certificate_from_acme_is_served_and_renewed_without_a_restart() {
    let dns = TestDns::start().unwrap();
    dns.set_ttl(0);
    for name in SERVED {
        dns.set_a(name, &[Ipv4Addr::LOCALHOST]);
    }
    // elsewhere.test: one name points at another machine, the others do not exist.
    dns.set_a("autoconfig.elsewhere.test", &[Ipv4Addr::new(192, 0, 2, 10)]);

    let dir = tempfile::tempdir().unwrap();
    let offset = free_offset();
    let mut config = Config::quickstart(HOST, offset).unwrap();
    config.dns.nameservers = vec![dns.addr()];
    let http_port = config.listen.http[0].port();
    let (https_port, imaps_port) = (config.listen.https[0].port(), config.listen.imaps[0].port());
    let pebble = Pebble::start(http_port, dns.addr()).unwrap();
    let data = data_folder(
        dir.path(),
        &mut config,
        &pebble.directory_url(),
        pebble.ca_file(),
        &["example.test", "elsewhere.test"],
    );
    assert!(!data.join("tls/cert.pem").exists());

    let mut serve = Serve::start(&data, http_port);
    let status = wait_for_status(&data, &serve, "no certificate was issued", |s| {
        s["acme"]["status"]["last_issued"].is_i64()
    });
    let root = pebble.root_pem().unwrap();

    // Served on HTTPS and IMAPS, verified against pebble's root, for every name that
    // resolves here and no other.
    let https = presented(https_port, HOST, &root);
    let (names, first_serial, self_signed) = describe(&https[0]);
    let mut want: Vec<String> = SERVED.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(names, want);
    assert!(!self_signed);
    assert!(https.len() >= 2, "the chain carries pebble's intermediate");
    let imaps = presented(imaps_port, "autoconfig.example.test", &root);
    assert_eq!(imaps[0], https[0]);
    presented(https_port, "mta-sts.example.test", &root);

    // The names that do not point here are left out, each with its reason.
    let left_out = status["acme"]["status"]["left_out"].as_array().unwrap();
    let reason = |name: &str| {
        left_out
            .iter()
            .find(|l| l["name"] == name)
            .and_then(|l| l["reason"].as_str())
            .unwrap_or_else(|| panic!("{name} not left out: {left_out:?}"))
            .to_string()
    };
    assert!(reason("autoconfig.elsewhere.test").contains("192.0.2.10"));
    assert!(reason("autodiscover.elsewhere.test").contains("does not exist"));
    assert!(reason("mta-sts.elsewhere.test").contains("does not exist"));
    assert_eq!(status["certificate"]["details"]["self_signed"], false);
    assert!(status["acme"]["status"]["last_error"].is_null(), "{status:#}");

    // The key files hold secrets.
    #[cfg(unix)]
    {
        assert_eq!(mode(&data.join("tls/key.pem")), 0o600);
        assert_eq!(mode(&data.join("acme/account.json")), 0o600);
        assert_eq!(mode(&data.join("acme")), 0o700);
    }
    let log = serve.log();
    assert!(!log.contains("BEGIN"), "key material in the log:\n{log}");
    assert!(log.contains("left out of the certificate"), "{log}");

    // A trusted certificate: HTTPS responses carry HSTS.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(root.as_bytes()).unwrap())
        .unwrap();
    let head = https_head(https_port, client_config(roots));
    assert!(head.contains("strict-transport-security: max-age=31536000"), "{head}");

    let human = ok(&tern(&data, &["cert", "status"]));
    assert!(human.contains("autodiscover.example.test"), "{human}");
    assert!(human.contains("Last error") && human.contains("none"), "{human}");
    assert!(human.contains("mta-sts.elsewhere.test: does not exist"), "{human}");

    // A renewal through the running server: a new certificate on new connections,
    // same process.
    let pid = serve.child.id();
    let out = ok(&tern(&data, &["cert", "renew"]));
    assert!(out.contains("New certificate in use"), "{out}");
    let renewed = presented(https_port, HOST, &root);
    let (names, second_serial, _) = describe(&renewed[0]);
    assert_eq!(names, want);
    assert_ne!(second_serial, first_serial, "the certificate was not replaced");
    assert!(out.contains(&second_serial.replace(':', "")), "{out}");
    assert_eq!(presented(imaps_port, HOST, &root)[0], renewed[0]);
    assert!(serve.still_running());
    assert_eq!(serve.child.id(), pid);
    // And on disk, for the next start.
    let on_disk = CertificateDer::pem_file_iter(data.join("tls/cert.pem"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(on_disk, renewed[0]);
    drop(serve);

    // Restarted, Tern serves the certificate from disk, trusts it (HSTS) and orders
    // nothing new.
    let issued = cert_status(&data)["acme"]["status"]["last_issued"].clone();
    let serve = Serve::start(&data, http_port);
    let new_pid = serve.child.id();
    let after = wait_for_status(&data, &serve, "no check after the restart", |s| {
        s["acme"]["status"]["pid"] == new_pid && s["acme"]["status"]["checks"] == 1
    });
    assert_eq!(after["acme"]["status"]["last_issued"], issued, "{after:#}");
    assert!(after["acme"]["status"]["last_error"].is_null(), "{after:#}");
    assert_eq!(presented(https_port, HOST, &root)[0], renewed[0]);
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(root.as_bytes()).unwrap())
        .unwrap();
    let head = https_head(https_port, client_config(roots));
    assert!(head.contains("strict-transport-security"), "{head}");
}

#[test]
fn tern_keeps_serving_when_the_acme_server_cannot_be_reached() {
    let dns = TestDns::start().unwrap();
    dns.set_a(HOST, &[Ipv4Addr::LOCALHOST]);
    let dir = tempfile::tempdir().unwrap();
    let offset = free_offset();
    let mut config = Config::quickstart(HOST, offset).unwrap();
    config.dns.nameservers = vec![dns.addr()];
    let http_port = config.listen.http[0].port();
    let https_port = config.listen.https[0].port();
    // A port nobody listens on, and a CA file that exists (so the config loads).
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, tern_net::tls::self_signed_pem("localhost").unwrap().0).unwrap();
    let data = data_folder(
        dir.path(),
        &mut config,
        &format!("https://{closed}/dir"),
        &ca_file,
        &["example.test"],
    );

    let mut serve = Serve::start(&data, http_port);
    let status = wait_for_status(&data, &serve, "no failure recorded", |s| {
        s["acme"]["status"]["last_error"].is_object()
    });
    let message = status["acme"]["status"]["last_error"]["message"].as_str().unwrap();
    assert!(message.contains(&closed.to_string()), "{message}");
    assert_eq!(status["acme"]["status"]["failures"], 1);
    assert!(status["acme"]["status"]["next_check"].as_i64() > status["acme"]["status"]["last_check"].as_i64());
    assert!(serve.still_running());

    // Still serving, on the temporary self-signed certificate, and without HSTS.
    let any = tern_net::tls::opportunistic_client_config();
    let tls = connect(https_port, HOST, any.clone());
    let (_, _, self_signed) = describe(&tls.conn.peer_certificates().unwrap()[0]);
    assert!(self_signed);
    let head = https_head(https_port, any);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("strict-transport-security"), "{head}");

    let human = ok(&tern(&data, &["cert", "status"]));
    assert!(human.contains("not there yet"), "{human}");
    assert!(
        human.contains("Last error") && human.contains(&closed.to_string()),
        "{human}"
    );

    // Asking for a renewal tries again, and says why it failed.
    let err = one_line_error(&tern(&data, &["cert", "renew"]));
    assert!(
        err.contains("no new certificate") && err.contains(&closed.to_string()),
        "{err}"
    );
    assert_eq!(cert_status(&data)["acme"]["status"]["failures"], 2);
    assert!(serve.still_running());
}

#[test]
fn cert_commands_explain_what_they_cannot_do() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tern-data");
    std::fs::create_dir_all(&data).unwrap();
    let mut config = Config::quickstart(HOST, free_offset()).unwrap();
    std::fs::write(data.join("tern.toml"), config.to_toml_string()).unwrap();
    tern::tls::generate_self_signed(HOST, &data.join("tls/cert.pem"), &data.join("tls/key.pem")).unwrap();

    // ACME off: status shows the self-signed certificate; renew refuses.
    let human = ok(&tern(&data, &["cert", "status"]));
    assert!(
        human.contains("(self-signed)") && human.contains("ACME") && human.contains("off"),
        "{human}"
    );
    let err = one_line_error(&tern(&data, &["cert", "renew"]));
    assert!(err.contains("ACME is off"), "{err}");

    // ACME on but no server running: renew says to start it.
    config.acme.enabled = true;
    std::fs::write(data.join("tern.toml"), config.to_toml_string()).unwrap();
    let err = one_line_error(&tern(&data, &["cert", "renew"]));
    assert!(err.contains("no `tern serve` is running"), "{err}");
    let status = cert_status(&data);
    assert_eq!(status["acme"]["server_running"], false);
    assert!(
        status["acme"]["next_renewal"].as_str().unwrap().contains("self-signed"),
        "{status:#}"
    );
}
