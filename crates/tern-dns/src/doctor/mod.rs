//! `tern doctor`: what a user's mail client meets on its way in, checked step by step, so
//! that "my mail doesn't work" turns into one named problem and what to do about it.
//!
//! The checks run in the order a client meets them:
//!
//! 1. the server's host name resolves (A/AAAA); the user's domain publishes
//!    `autoconfig.DOMAIN` and `autodiscover.DOMAIN` and the SRV records of RFC 6186 §3
//!    and RFC 8314 §5.1 (warnings only: a client falls back to the host typed in);
//! 2. every configured client port answers TCP at the resolved addresses;
//! 3. TLS: implicit-TLS ports handshake at once, STARTTLS ports after their own small
//!    dialogue (IMAP RFC 9051 §6.2.1 / RFC 2595 §3.1, POP3 STLS RFC 2595 §4, SMTP EHLO and
//!    STARTTLS RFC 3207 §4); the certificate is judged against the system's CAs plus an
//!    optional private CA, each problem named apart (expired, not yet valid, wrong name,
//!    untrusted or self-signed issuer) and an expiry within [`EXPIRY_WARNING_DAYS`] warned of;
//! 4. with the password: a login over IMAP, POP3 and SMTP submission on each protocol's
//!    best port whose certificate verified.
//!
//! The certificate check's own connection accepts whatever certificate it is shown (it
//! records the chain and judges it afterwards, so every problem can be named, not just
//! the first one rustls stops at) and carries no secret. Logins use a connection that
//! verifies the certificate like a mail client does, and are not tried on a port whose
//! certificate failed: a password is not sent to a server that cannot prove who it is.
//! No text of a finding ever contains the password.
//!
//! One module per step: `dns` (1), `ports` (2), `tls` (3), `login` (4), and `dialogue`,
//! the small protocol exchanges steps 3 and 4 share. This file runs them in order and
//! gathers the report.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine;
use futures_util::future::join_all;
use rustls::RootCertStore;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use serde::Serialize;
use tern_net::endpoints::{ClientEndpoints, Endpoint, Protocol, Security};
use tern_net::replay::Replayed;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::resolve::{Answer, Lookup, Srv, normalize};

mod dialogue;
mod dns;
mod login;
mod ports;
#[cfg(test)]
mod tests;
mod tls;

use dialogue::*;
pub use dns::*;
use login::*;
pub use ports::*;
pub use tls::*;

/// A certificate expiring sooner than this many days is warned about.
pub const EXPIRY_WARNING_DAYS: i64 = 14;

/// How long a TCP connection may take to be accepted.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the TLS check or a login may take, dialogue included. A failed login is
/// answered only after the server's failure delay (a second on Tern).
const DIALOGUE_TIMEOUT: Duration = Duration::from_secs(20);
/// The longest line read from a server; anything longer is not a mail server talking.
const MAX_LINE: usize = 8192;
/// The most lines of one multi-line answer (CAPA, EHLO, CAPABILITY and its greeting).
const MAX_LINES: usize = 200;

/// What the doctor needs to know.
#[derive(Clone)]
pub struct Doctor {
    /// The user's address: its domain is where autoconfig and SRV records are looked for,
    /// and it is the login name.
    pub email: String,
    /// With it, the doctor logs in over every protocol.
    pub password: Option<Password>,
    /// The server's host name (or an IP address) as clients are told to use it.
    pub host: String,
    /// The client ports and their TLS modes (the host name inside is not used: `host` is).
    pub endpoints: ClientEndpoints,
    /// Where names are looked up.
    pub lookup: Lookup,
    /// A PEM file of CA certificates trusted besides the system's (a private CA).
    pub extra_ca: Option<PathBuf>,
}

/// A password that never shows up in logs or `Debug` output.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn new(password: impl Into<String>) -> Password {
        Password(password.into())
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(hidden)")
    }
}

/// Why the doctor could not run at all (every problem of the server is a [`Finding`]).
#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    #[error("{0:?} is not an email address; write it as name@domain, e.g. alice@example.com")]
    Address(String),
    #[error("{0:?} is not a host name or IP address a client could connect to")]
    Host(String),
    #[error("cannot use the CA file {}: {reason}", path.display())]
    CaFile { path: PathBuf, reason: String },
    #[error("cannot set up TLS: {0}")]
    Tls(String),
}

/// How a check went: the same scale as the DNS checks.
pub use crate::check::Status;

/// Which check a finding comes from, in the order a client meets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Check {
    /// The server's host name resolves.
    Host,
    /// autoconfig.DOMAIN (Thunderbird and others).
    Autoconfig,
    /// autodiscover.DOMAIN (Outlook).
    Autodiscover,
    /// The RFC 6186 / RFC 8314 SRV record of one service.
    Srv,
    /// A client port answers TCP.
    Port,
    /// TLS on a client port and the certificate it shows.
    Tls,
    /// Logging in with the user's password.
    Login,
}

impl Check {
    pub fn label(self) -> &'static str {
        match self {
            Check::Host => "DNS",
            Check::Autoconfig => "autoconfig",
            Check::Autodiscover => "autodiscover",
            Check::Srv => "SRV",
            Check::Port => "port",
            Check::Tls => "TLS",
            Check::Login => "login",
        }
    }
}

/// One check's outcome: what was seen and, unless it is fine, what to do.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub status: Status,
    pub check: Check,
    /// What exactly was checked: a DNS name, or a port ("IMAP 993 (SSL/TLS)").
    pub subject: String,
    /// What was seen.
    pub detail: String,
    /// What to do about it; absent when there is nothing to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
    /// The port a port, TLS or login finding is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<Endpoint>,
}

impl Finding {
    fn new(status: Status, check: Check, subject: impl Into<String>, detail: impl Into<String>) -> Finding {
        Finding {
            status,
            check,
            subject: subject.into(),
            detail: detail.into(),
            advice: None,
            endpoint: None,
        }
    }

    fn advice(mut self, advice: impl Into<String>) -> Finding {
        self.advice = Some(advice.into());
        self
    }

    fn at(mut self, endpoint: Endpoint) -> Finding {
        self.endpoint = Some(endpoint);
        self
    }
}

/// Everything the doctor found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub email: String,
    pub host: String,
    /// The DNS server asked ("system resolver" or its address).
    pub resolver: String,
    /// Where the host name led.
    pub addresses: Vec<IpAddr>,
    /// Whether logins were tried (a password was given).
    pub logins_checked: bool,
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether something a client needs is broken: any finding is an error.
    pub fn is_broken(&self) -> bool {
        self.findings.iter().any(|f| f.status == Status::Error)
    }

    /// How many findings have this status.
    pub fn count(&self, status: Status) -> usize {
        self.findings.iter().filter(|f| f.status == status).count()
    }

    /// The findings with something to do, errors first (they keep clients out), each
    /// piece of advice once: several ports often share one cause.
    pub fn to_do(&self) -> Vec<&Finding> {
        let mut todo: Vec<&Finding> = self.findings.iter().filter(|f| f.advice.is_some()).collect();
        todo.sort_by_key(|f| std::cmp::Reverse(f.status));
        let mut said: Vec<&str> = Vec::new();
        todo.retain(|f| {
            let advice = f.advice.as_deref().unwrap_or_default();
            let new = !said.contains(&advice);
            said.push(advice);
            new
        });
        todo
    }

    /// Whether logins were tried and every one worked.
    pub fn logins_work(&self) -> bool {
        let mut logins = self.findings.iter().filter(|f| f.check == Check::Login).peekable();
        logins.peek().is_some() && logins.all(|f| f.status == Status::Ok)
    }
}

/// Runs every check and reports what it found.
pub async fn run(doctor: Doctor) -> Result<Report, DoctorError> {
    let domain = email_domain(&doctor.email).ok_or_else(|| DoctorError::Address(doctor.email.clone()))?;
    let host = normalize(doctor.host.trim());
    let server_name = ServerName::try_from(host.clone()).map_err(|_| DoctorError::Host(doctor.host.clone()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = Arc::new(trusted_roots(doctor.extra_ca.as_deref())?);
    let extra: Vec<String> = doctor.extra_ca.iter().map(|p| p.display().to_string()).collect();
    let login_tls = TlsConnector::from(tern_net::tls::client_config(&extra).map_err(DoctorError::Tls)?);

    let mut report = Report {
        email: doctor.email.trim().to_string(),
        host: host.clone(),
        resolver: doctor.lookup.name().to_string(),
        addresses: Vec::new(),
        logins_checked: doctor.password.is_some(),
        findings: Vec::new(),
    };

    // 1. DNS: the host first (everything else needs it), the discovery names beside it.
    let endpoints = doctor.endpoints.all();
    let (host_finding, addresses) = resolve_host(&doctor.lookup, &host, &domain).await;
    report.findings.push(host_finding);
    report.addresses = addresses.clone();
    let (autoconfig, autodiscover, srv) = tokio::join!(
        discovery_name(&doctor.lookup, Check::Autoconfig, &domain, &host, &addresses),
        discovery_name(&doctor.lookup, Check::Autodiscover, &domain, &host, &addresses),
        join_all(endpoints.iter().map(|e| srv_record(&doctor.lookup, *e, &domain, &host))),
    );
    report.findings.push(autoconfig);
    report.findings.push(autodiscover);
    report.findings.extend(srv);

    if let Some(missing) = missing_services(&doctor.endpoints) {
        report.findings.push(missing);
    }
    if addresses.is_empty() {
        // Nothing to connect to; the host finding says why.
        if doctor.password.is_some() {
            report.findings.push(
                Finding::new(
                    Status::Warning,
                    Check::Login,
                    "logins",
                    format!("not tried: {host} has no address to connect to"),
                )
                .advice("Fix the DNS finding above, then run the check again."),
            );
        }
        return Ok(report);
    }

    // 2 and 3. Each port, then TLS on it; the ports are checked side by side.
    let outcomes = join_all(endpoints.iter().map(|e| {
        let (roots, provider, server_name, addresses) =
            (roots.clone(), provider.clone(), server_name.clone(), addresses.clone());
        async move {
            let (port, reached) = check_port(*e, &addresses).await;
            let tls = match reached {
                Some((ip, stream)) => Some((ip, check_tls(*e, stream, &server_name, &roots, &provider).await)),
                None => None,
            };
            (port, tls)
        }
    }))
    .await;
    let mut usable: Vec<(Endpoint, IpAddr)> = Vec::new();
    let mut tls_findings = Vec::new();
    for ((port, tls), endpoint) in outcomes.into_iter().zip(&endpoints) {
        report.findings.push(port);
        if let Some((ip, (finding, verified))) = tls {
            if verified {
                usable.push((*endpoint, ip));
            }
            tls_findings.push(finding);
        }
    }
    report.findings.extend(tls_findings);

    // 4. Logins, on each protocol's best port with a verified certificate.
    if let Some(password) = &doctor.password {
        let user = doctor.email.trim().to_string();
        let logins = [Protocol::Imap, Protocol::Pop3, Protocol::Submission].map(|protocol| {
            let (login_tls, server_name, user) = (login_tls.clone(), server_name.clone(), user.clone());
            let offered = doctor.endpoints.of(protocol);
            let chosen = offered
                .iter()
                .find_map(|e| usable.iter().find(|(u, _)| u == e).copied());
            async move {
                match chosen {
                    _ if offered.is_empty() => None,
                    Some((endpoint, ip)) => Some(login(endpoint, ip, &server_name, &login_tls, &user, password).await),
                    None => Some(
                        Finding::new(
                            Status::Warning,
                            Check::Login,
                            protocol.label(),
                            format!(
                                "not tried: no {} port answered with a certificate that verifies, and a password is \
                             only sent to a server that proves who it is",
                                protocol.label()
                            ),
                        )
                        .advice("Fix the port and TLS findings above, then run the check again."),
                    ),
                }
            }
        });
        report.findings.extend(join_all(logins).await.into_iter().flatten());
    }
    Ok(report)
}

/// The domain of an address, lower case; None if it is not an address.
fn email_domain(email: &str) -> Option<String> {
    let email = email.trim();
    let (local, domain) = email.rsplit_once('@')?;
    let domain = normalize(domain);
    let valid_domain = domain.contains('.')
        && domain
            .split('.')
            .all(|l| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    (!local.is_empty() && !email.chars().any(|c| c.is_whitespace() || c.is_control()) && valid_domain).then_some(domain)
}

/// The CAs a certificate may chain to: the system's bundle plus the extra file. The extra
/// file must exist and hold at least one usable certificate.
fn trusted_roots(extra: Option<&Path>) -> Result<RootCertStore, DoctorError> {
    let mut roots = RootCertStore::empty();
    // Without the system's bundle (a minimal container) only the extra CA is trusted.
    if let Ok(certs) = CertificateDer::pem_file_iter(tern_net::tls::SYSTEM_CAS) {
        for cert in certs.flatten() {
            let _ = roots.add(cert);
        }
    }
    if let Some(path) = extra {
        let ca_error = |reason: String| DoctorError::CaFile {
            path: path.to_path_buf(),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(path).map_err(|e| ca_error(e.to_string()))?;
        let mut added = 0;
        for cert in certs {
            let cert = cert.map_err(|e| ca_error(e.to_string()))?;
            roots
                .add(cert)
                .map_err(|e| ca_error(format!("a certificate in it cannot be a trust anchor: {e}")))?;
            added += 1;
        }
        if added == 0 {
            return Err(ca_error(
                "it holds no certificate (PEM blocks starting \"-----BEGIN CERTIFICATE-----\")".into(),
            ));
        }
    }
    Ok(roots)
}
