//! Pebble, Let's Encrypt's small ACME test server (Debian package `pebble`), run on
//! loopback for tests of Tern's ACME client.
//!
//! [`Pebble::start`] writes a config into a temporary folder (ACME and management
//! listeners on free ports of 127.0.0.1, its own HTTPS certificate made here for
//! 127.0.0.1 and localhost), and runs `pebble` with `-dnsserver` pointing at a
//! [`crate::dns::TestDns`], so the names a test publishes there resolve for pebble's
//! validation, and with its HTTP-01 port set to the port Tern's http listener is on.
//! `PEBBLE_VA_NOSLEEP=1` (no artificial delays) and `PEBBLE_WFE_NONCEREJECT=0` (no
//! nonces refused at random) keep a test fast and deterministic. Dropping it kills the
//! process by its PID and removes the folder.
//!
//! Pebble makes a new root CA at every start; [`Pebble::root_pem`] fetches it from the
//! management interface, for clients that must verify what pebble issued.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;

/// How long pebble gets to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running pebble. Dropping it stops it.
pub struct Pebble {
    child: Child,
    acme: SocketAddr,
    management: SocketAddr,
    ca_file: PathBuf,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl Pebble {
    /// Starts pebble validating HTTP-01 challenges on `http_port` of whatever address
    /// `dns` resolves a name to.
    pub fn start(http_port: u16, dns: SocketAddr) -> Result<Pebble, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("cannot make pebble's folder: {e}"))?;
        let (cert_pem, key_pem) = https_certificate()?;
        let ca_file = dir.path().join("pebble-https.pem");
        let key_file = dir.path().join("pebble-https.key");
        write(&ca_file, &cert_pem)?;
        write(&key_file, &key_pem)?;
        let acme = free_addr()?;
        let management = free_addr()?;
        // tls-alpn-01 is never used by Tern; give it a port nobody listens on.
        let tls_alpn = free_addr()?;
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": acme.to_string(),
                "managementListenAddress": management.to_string(),
                "certificate": ca_file,
                "privateKey": key_file,
                "httpPort": http_port,
                "tlsPort": tls_alpn.port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false
            }
        });
        let config_file = dir.path().join("pebble-config.json");
        write(&config_file, &config.to_string())?;
        let log = dir.path().join("pebble.log");
        let log_file = std::fs::File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let log_err = log_file
            .try_clone()
            .map_err(|e| format!("cannot share pebble's log file: {e}"))?;
        let child = Command::new("pebble")
            .arg("-config")
            .arg(&config_file)
            .arg("-dnsserver")
            .arg(dns.to_string())
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("cannot run pebble ({e}); install it: apt-get install pebble"))?;
        let mut pebble = Pebble {
            child,
            acme,
            management,
            ca_file,
            log,
            dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        for addr in [acme, management] {
            while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
                if let Ok(Some(status)) = pebble.child.try_wait() {
                    return Err(format!("pebble exited ({status}) before listening:\n{}", pebble.log()));
                }
                if Instant::now() > deadline {
                    return Err(format!("pebble did not listen on {addr}:\n{}", pebble.log()));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(pebble)
    }

    /// The ACME directory URL.
    pub fn directory_url(&self) -> String {
        format!("https://{}/dir", self.acme)
    }

    /// The PEM certificate pebble's own HTTPS presents: what an ACME client must trust
    /// to talk to it (Tern's `[acme] ca_file`).
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The root CA pebble issues under, as PEM, from its management interface.
    pub fn root_pem(&self) -> Result<String, String> {
        self.management_get("/roots/0")
    }

    /// What pebble logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The folder pebble runs in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// GET on the management interface over HTTPS (trusting [`Pebble::ca_file`]); the
    /// body of a 200 answer.
    fn management_get(&self, path: &str) -> Result<String, String> {
        let mut roots = rustls::RootCertStore::empty();
        let cert = rustls_pki_types::CertificateDer::from_pem_file(&self.ca_file)
            .map_err(|e| format!("cannot read {}: {e}", self.ca_file.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("unusable pebble certificate: {e}"))?;
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls_pki_types::ServerName::IpAddress(self.management.ip().into());
        let connection = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
        let tcp = TcpStream::connect_timeout(&self.management, Duration::from_secs(5))
            .map_err(|e| format!("cannot reach pebble's management interface: {e}"))?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let mut tls = rustls::StreamOwned::new(connection, tcp);
        write!(
            tls,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.management
        )
        .map_err(|e| format!("cannot ask pebble: {e}"))?;
        let mut response = Vec::new();
        // Pebble closes without close_notify; what was read until then is the answer.
        if let Err(e) = tls.read_to_end(&mut response)
            && e.kind() != std::io::ErrorKind::UnexpectedEof
        {
            return Err(format!("cannot read pebble's answer: {e}"));
        }
        let text = String::from_utf8_lossy(&response);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("pebble's answer has no body: {text:?}"))?;
        if !head.starts_with("HTTP/1.1 200") {
            return Err(format!("pebble answered {path} with {head:?}"));
        }
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            return Ok(dechunk(body));
        }
        Ok(body.to_string())
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        // Child::kill sends SIGKILL to this child's PID only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A chunked HTTP/1.1 body joined (RFC 9112 §7.1).
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

/// A self-signed certificate for pebble's HTTPS: 127.0.0.1 and localhost.
fn https_certificate() -> Result<(String, String), String> {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .map_err(|e| format!("cannot make pebble's certificate: {e}"))?;
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "pebble test server");
    let key = rcgen::KeyPair::generate().map_err(|e| format!("cannot make pebble's key: {e}"))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("cannot sign pebble's certificate: {e}"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A port of 127.0.0.1 free right now.
fn free_addr() -> Result<SocketAddr, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), "hello world");
        assert_eq!(dechunk("zz\r\n"), "");
    }

    #[test]
    fn pebble_serves_a_directory_and_its_root() {
        let dns = crate::dns::TestDns::start().expect("DNS");
        let pebble = Pebble::start(free_addr().expect("port").port(), dns.addr()).expect("pebble");
        let root = pebble.root_pem().expect("root");
        assert!(root.starts_with("-----BEGIN CERTIFICATE-----"), "{root}");
        let url = pebble.directory_url();
        assert!(url.starts_with("https://127.0.0.1:") && url.ends_with("/dir"), "{url}");
        let dir = pebble.dir().to_path_buf();
        drop(pebble);
        assert!(!dir.exists(), "pebble's folder is removed");
    }
}
