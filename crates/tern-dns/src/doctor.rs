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

// ----------------------------------------------------------------------------- DNS

/// Step 1: the host's addresses.
async fn resolve_host(lookup: &Lookup, host: &str, domain: &str) -> (Finding, Vec<IpAddr>) {
    if let Ok(ip) = host.parse::<IpAddr>() {
        let finding = Finding::new(
            Status::Warning,
            Check::Host,
            host,
            "the server is given as an IP address: nothing to look up",
        )
        .advice(
            "Clients should connect by name: a certificate from a public CA names the host, not its address. \
             Set hostname in tern.toml to the server's DNS name.",
        );
        return (finding, vec![ip]);
    }
    let publish = format!(
        "Publish an A record for {host} with this server's public IPv4 address (and AAAA for IPv6); \
         `tern dns records {domain}` prints them."
    );
    match lookup.addresses(host).await {
        Answer::Records(addresses, _) => {
            let list = addresses.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(", ");
            (Finding::new(Status::Ok, Check::Host, host, list), addresses)
        }
        Answer::NxDomain => (
            Finding::new(Status::Error, Check::Host, host, "the name does not exist in DNS").advice(publish),
            Vec::new(),
        ),
        Answer::NoData => (
            Finding::new(Status::Error, Check::Host, host, "the name has no A or AAAA record").advice(publish),
            Vec::new(),
        ),
        Answer::Failed(e) => (
            Finding::new(
                Status::Error,
                Check::Host,
                host,
                format!("no answer from {} ({e})", lookup.name()),
            )
            .advice("Check that the DNS server answers (or pass another with --resolver), then run the check again."),
            Vec::new(),
        ),
    }
}

/// autoconfig.DOMAIN or autodiscover.DOMAIN: published, and pointing at this host?
async fn discovery_name(lookup: &Lookup, check: Check, domain: &str, host: &str, host_addresses: &[IpAddr]) -> Finding {
    let prefix = check.label();
    let name = format!("{prefix}.{domain}");
    let who = if check == Check::Autoconfig {
        "Thunderbird and other clients find"
    } else {
        "Outlook finds"
    };
    let record = if host.parse::<IpAddr>().is_ok() {
        format!("Publish {name} with an A record of this server")
    } else {
        format!("Publish {name} as a CNAME of {host}")
    };
    let publish = format!(
        "{record} so {who} the settings by themselves (`tern dns records {domain}` prints the record); until \
         then users type the server name."
    );
    match lookup.addresses(&name).await {
        Answer::Records(addresses, _) => {
            let list = addresses.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(", ");
            if !host_addresses.is_empty() && !addresses.iter().any(|a| host_addresses.contains(a)) {
                Finding::new(
                    Status::Warning,
                    check,
                    &name,
                    format!("points at {list}, not at {host}"),
                )
                .advice(format!(
                    "Point {name} at {host} (a CNAME) unless another web server there answers for Tern."
                ))
            } else {
                Finding::new(Status::Ok, check, &name, list)
            }
        }
        Answer::NxDomain => {
            Finding::new(Status::Warning, check, &name, "not published (the name does not exist)").advice(publish)
        }
        Answer::NoData => {
            Finding::new(Status::Warning, check, &name, "not published (no address record)").advice(publish)
        }
        Answer::Failed(e) => Finding::new(
            Status::Warning,
            check,
            &name,
            format!("no answer from {} ({e})", lookup.name()),
        )
        .advice("Check that the DNS server answers, then run the check again."),
    }
}

/// The SRV owner label of an endpoint: RFC 6186 §3.1–3.3 for IMAP, POP3 and submission
/// with STARTTLS, RFC 8314 §5.1 for their implicit-TLS forms.
pub fn srv_label(endpoint: Endpoint) -> &'static str {
    match (endpoint.protocol, endpoint.security) {
        (Protocol::Imap, Security::Tls) => "_imaps._tcp",
        (Protocol::Imap, Security::StartTls) => "_imap._tcp",
        (Protocol::Pop3, Security::Tls) => "_pop3s._tcp",
        (Protocol::Pop3, Security::StartTls) => "_pop3._tcp",
        (Protocol::Submission, Security::Tls) => "_submissions._tcp",
        (Protocol::Submission, Security::StartTls) => "_submission._tcp",
    }
}

/// One endpoint's SRV record: present, naming this host and port?
async fn srv_record(lookup: &Lookup, endpoint: Endpoint, domain: &str, host: &str) -> Finding {
    let name = format!("{}.{domain}", srv_label(endpoint));
    // An SRV target is a name, never an address (RFC 2782).
    let target = if host.parse::<IpAddr>().is_ok() {
        "SERVER-NAME"
    } else {
        host
    };
    let wanted = format!("0 1 {} {target}.", endpoint.port);
    let publish = format!(
        "Publish `{name}. SRV {wanted}` so clients that look up SRV records (RFC 6186) find this port; \
         until then users type the server name and port."
    );
    let finding = |status, detail: String| Finding::new(status, Check::Srv, &name, detail).at(endpoint);
    match lookup.srv(&name).await {
        Answer::Records(records, _) => {
            let list = records.iter().map(Srv::to_string).collect::<Vec<_>>().join(", ");
            if records.iter().any(|r| r.target == host && r.port == endpoint.port) {
                finding(Status::Ok, list)
            } else if records.iter().all(|r| r.target == ".") {
                // RFC 6186 §3.4 / RFC 2782: a target of "." means the service is not offered.
                finding(
                    Status::Warning,
                    format!(
                        "{list}: says the service is not offered, but it is on port {}",
                        endpoint.port
                    ),
                )
                .advice(publish)
            } else {
                finding(Status::Warning, format!("{list}: not {host} port {}", endpoint.port))
                    .advice(format!("Change the record to `{name}. SRV {wanted}`."))
            }
        }
        Answer::NxDomain | Answer::NoData => finding(Status::Warning, "not published".into()).advice(publish),
        Answer::Failed(e) => finding(Status::Warning, format!("no answer from {} ({e})", lookup.name()))
            .advice("Check that the DNS server answers, then run the check again."),
    }
}

/// A configuration without the ports a client needs at all.
fn missing_services(endpoints: &ClientEndpoints) -> Option<Finding> {
    let has = |p| !endpoints.of(p).is_empty();
    if !has(Protocol::Imap) && !has(Protocol::Pop3) {
        Some(
            Finding::new(
                Status::Error,
                Check::Port,
                "[listen]",
                "no IMAP or POP3 port is configured: clients cannot read mail",
            )
            .advice("Add imaps (993) and submissions (465) to [listen] in tern.toml and restart tern serve."),
        )
    } else if !has(Protocol::Submission) {
        Some(
            Finding::new(
                Status::Warning,
                Check::Port,
                "[listen]",
                "no submission port is configured: clients can read mail but not send it",
            )
            .advice("Add submissions (465) or submission (587) to [listen] in tern.toml and restart tern serve."),
        )
    } else {
        None
    }
}

// ---------------------------------------------------------------------------- ports

/// How an endpoint is named in a report: "IMAP 993 (SSL/TLS)".
pub fn endpoint_name(endpoint: Endpoint) -> String {
    format!(
        "{} {} ({})",
        endpoint.protocol.label(),
        endpoint.port,
        endpoint.security.label()
    )
}

/// Step 2: the port at every address; the first connection that worked is kept for TLS.
async fn check_port(endpoint: Endpoint, addresses: &[IpAddr]) -> (Finding, Option<(IpAddr, TcpStream)>) {
    let tries = join_all(addresses.iter().map(|ip| async move {
        let addr = SocketAddr::new(*ip, endpoint.port);
        let result = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                Err("connection refused (nothing listens there)".to_string())
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "no answer within {} s (a firewall may drop it)",
                CONNECT_TIMEOUT.as_secs()
            )),
        };
        (*ip, result)
    }))
    .await;
    let mut reached = None;
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for (ip, result) in tries {
        match result {
            Ok(stream) => {
                good.push(ip.to_string());
                if reached.is_none() {
                    let _ = stream.set_nodelay(true);
                    reached = Some((ip, stream));
                }
            }
            Err(why) => bad.push(format!("{ip}: {why}")),
        }
    }
    let name = endpoint_name(endpoint);
    let finding = if bad.is_empty() {
        Finding::new(
            Status::Ok,
            Check::Port,
            name,
            format!("reachable at {}", good.join(", ")),
        )
    } else if good.is_empty() {
        Finding::new(
            Status::Error,
            Check::Port,
            name,
            format!("port {} cannot be reached: {}", endpoint.port, bad.join("; ")),
        )
        .advice(format!(
            "Check that tern serve is running and listens on port {} (the [listen] table of tern.toml and its \
             start-up table), and that no firewall between clients and the server blocks it.",
            endpoint.port
        ))
    } else {
        Finding::new(
            Status::Warning,
            Check::Port,
            name,
            format!("reachable at {}, not at {}", good.join(", "), bad.join("; ")),
        )
        .advice(
            "Clients pick any of the host's addresses: make every client port reachable on all of them, or remove \
             the DNS record of the address that does not answer.",
        )
    };
    (finding.at(endpoint), reached)
}

// ------------------------------------------------------------------------------ TLS

/// Step 3: the TLS handshake on a connected port, and the certificate it showed.
/// Returns the finding and whether the certificate verified.
async fn check_tls(
    endpoint: Endpoint,
    stream: TcpStream,
    server_name: &ServerName<'static>,
    roots: &RootCertStore,
    provider: &Arc<CryptoProvider>,
) -> (Finding, bool) {
    let name = endpoint_name(endpoint);
    let recorder = Arc::new(Recorder {
        provider: provider.clone(),
        chain: Mutex::new(Vec::new()),
    });
    let config =
        match rustls::ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions() {
            Ok(builder) => builder
                .dangerous()
                .with_custom_certificate_verifier(recorder.clone())
                .with_no_client_auth(),
            Err(e) => {
                return (
                    Finding::new(Status::Error, Check::Tls, name, format!("cannot set up TLS here: {e}")).at(endpoint),
                    false,
                );
            }
        };
    let connector = TlsConnector::from(Arc::new(config));
    let handshake = async {
        let stream = match endpoint.security {
            Security::Tls => stream,
            Security::StartTls => starttls(endpoint.protocol, stream).await?,
        };
        let mut tls = connector
            .connect(server_name.clone(), stream)
            .await
            .map_err(|e| format!("the TLS handshake failed: {e}"))?;
        let version = match tls.get_ref().1.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2",
            _ => "TLS",
        };
        // On an implicit-TLS port the server speaks first: its greeting shows that the
        // right service sits behind the TLS.
        if endpoint.security == Security::Tls {
            let mut conn = Conn::new(&mut tls);
            expect_greeting(endpoint.protocol, &mut conn).await?;
        }
        let _ = tls.shutdown().await;
        Ok::<_, String>(version)
    };
    let version = match tokio::time::timeout(DIALOGUE_TIMEOUT, handshake).await {
        Ok(Ok(version)) => version,
        Ok(Err(why)) => {
            let advice = match endpoint.security {
                Security::Tls => format!(
                    "Port {} must speak TLS from the first byte (RFC 8314): check that [listen] puts it under \
                     the implicit-TLS service (imaps, pop3s, submissions) and that tern serve started with a \
                     certificate.",
                    endpoint.port
                ),
                Security::StartTls => format!(
                    "Port {} must offer STARTTLS: check that [listen] puts it under the STARTTLS service (imap, \
                     pop3, submission) and that tern serve started with a certificate.",
                    endpoint.port
                ),
            };
            return (
                Finding::new(Status::Error, Check::Tls, name, why)
                    .advice(advice)
                    .at(endpoint),
                false,
            );
        }
        Err(_) => {
            return (
                Finding::new(
                    Status::Error,
                    Check::Tls,
                    name,
                    format!("no TLS within {} s", DIALOGUE_TIMEOUT.as_secs()),
                )
                .advice("Check that the service on this port is Tern's and that the server is not overloaded.")
                .at(endpoint),
                false,
            );
        }
    };
    let chain = std::mem::take(&mut *recorder.chain.lock().unwrap_or_else(PoisonError::into_inner));
    let verdict = judge(&chain, server_name, roots, provider, unix_now());
    let (status, detail, advice) = verdict.finding(version);
    let mut finding = Finding::new(status, Check::Tls, name, detail).at(endpoint);
    finding.advice = advice;
    (finding, verdict.problems.is_empty())
}

/// Seconds since 1970 now.
fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Accepts any certificate but keeps the chain it was shown, for [`judge`]. Handshake
/// signatures are still checked, so the chain judged is the one whose key is in use.
#[derive(Debug)]
struct Recorder {
    provider: Arc<CryptoProvider>,
    chain: Mutex<Vec<CertificateDer<'static>>>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = vec![end_entity.clone().into_owned()];
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        *self.chain.lock().unwrap_or_else(PoisonError::into_inner) = chain;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// What is wrong with a certificate, each problem on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertProblem {
    /// Past its notAfter (a Unix time).
    Expired { not_after: i64 },
    /// Before its notBefore.
    NotYetValid { not_before: i64 },
    /// Not issued for the host name; the names it has.
    WrongName { names: Vec<String> },
    /// Signed by itself, and not trusted as such.
    SelfSigned,
    /// Issued by a CA that is not trusted here.
    UntrustedIssuer { issuer: String },
    /// Anything else the verifier refused, or a certificate that cannot be read.
    Other(String),
}

/// A certificate as judged.
#[derive(Debug, Clone)]
pub struct CertVerdict {
    /// The DNS names and IP addresses it is for.
    pub names: Vec<String>,
    /// Who issued it (the issuer's common name, or the whole name).
    pub issuer: String,
    pub not_before: i64,
    pub not_after: i64,
    /// Empty when the certificate verifies.
    pub problems: Vec<CertProblem>,
    now: i64,
}

impl CertVerdict {
    /// Whole days until it expires (negative once expired).
    pub fn days_left(&self) -> i64 {
        (self.not_after - self.now).div_euclid(86_400)
    }

    /// The finding's status, detail and advice.
    fn finding(&self, version: &str) -> (Status, String, Option<String>) {
        let names = if self.names.is_empty() {
            "no names".to_string()
        } else {
            self.names.join(", ")
        };
        let about = format!(
            "certificate for {names}, issued by {}, valid until {}",
            self.issuer,
            date(self.not_after)
        );
        if self.problems.is_empty() {
            let days = self.days_left();
            if days < EXPIRY_WARNING_DAYS {
                return (
                    Status::Warning,
                    format!("{version}; {about}: expires in {days} days"),
                    Some(
                        "Renew the certificate now (and check that its automatic renewal works), then restart \
                         tern serve or let it reload the files."
                            .into(),
                    ),
                );
            }
            return (Status::Ok, format!("{version}; {about}"), None);
        }
        let mut seen = Vec::new();
        let mut todo = Vec::new();
        for problem in &self.problems {
            match problem {
                CertProblem::Expired { not_after } => {
                    seen.push(format!("EXPIRED on {}", date(*not_after)));
                    todo.push("Renew the certificate and restart tern serve.".to_string());
                }
                CertProblem::NotYetValid { not_before } => {
                    seen.push(format!("NOT YET VALID: only from {}", date(*not_before)));
                    todo.push(
                        "Check the server's clock (and the clock of the machine that issued the certificate)."
                            .to_string(),
                    );
                }
                CertProblem::WrongName { names } => {
                    let names = if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    };
                    seen.push(format!("WRONG NAME: it names {names}, not the server's name"));
                    todo.push(
                        "Get a certificate that includes the server's host name (the hostname of tern.toml), or \
                         tell clients the name the certificate has."
                            .to_string(),
                    );
                }
                CertProblem::SelfSigned => {
                    seen.push("SELF-SIGNED: no client trusts it unless told to".to_string());
                    todo.push(
                        "Get a certificate from a public CA (e.g. Let's Encrypt) for the server's host name; a \
                         self-signed one makes every client warn or refuse."
                            .to_string(),
                    );
                }
                CertProblem::UntrustedIssuer { issuer } => {
                    seen.push(format!("UNTRUSTED ISSUER: {issuer} is not a CA trusted here"));
                    todo.push(
                        "Install the full chain (the certificate followed by its intermediates) in the \
                         certificate file; for a private CA, every client must trust that CA (check with \
                         --ca-file CA.pem)."
                            .to_string(),
                    );
                }
                CertProblem::Other(why) => {
                    seen.push(why.clone());
                    todo.push("Replace the certificate with one from a public CA for the server's name.".to_string());
                }
            }
        }
        todo.dedup();
        (
            Status::Error,
            format!("{version}; {about}: {}", seen.join("; ")),
            Some(todo.join(" ")),
        )
    }
}

/// Judges a chain as a client would for `server_name` at time `now`, naming each
/// problem: validity dates and names are read from the leaf itself, and whether it
/// chains to a trusted CA is asked at a moment inside its validity, so an expired
/// certificate from an unknown CA reports both.
pub fn judge(
    chain: &[CertificateDer<'_>],
    server_name: &ServerName<'_>,
    roots: &RootCertStore,
    provider: &CryptoProvider,
    now: i64,
) -> CertVerdict {
    let mut verdict = CertVerdict {
        names: Vec::new(),
        issuer: "an unknown issuer".into(),
        not_before: 0,
        not_after: 0,
        problems: Vec::new(),
        now,
    };
    let Some(leaf) = chain.first() else {
        verdict
            .problems
            .push(CertProblem::Other("the server sent no certificate".into()));
        return verdict;
    };
    let self_signed = match x509_parser::parse_x509_certificate(leaf.as_ref()) {
        Ok((_, cert)) => {
            verdict.not_before = cert.validity().not_before.timestamp();
            verdict.not_after = cert.validity().not_after.timestamp();
            verdict.issuer = common_name(cert.issuer()).unwrap_or_else(|| cert.issuer().to_string());
            if let Ok(Some(san)) = cert.subject_alternative_name() {
                for name in &san.value.general_names {
                    match name {
                        x509_parser::extensions::GeneralName::DNSName(n) => verdict.names.push(n.to_string()),
                        x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                            if let Some(ip) = ip_from_bytes(bytes) {
                                verdict.names.push(ip.to_string());
                            }
                        }
                        _ => {}
                    }
                }
            }
            if verdict.names.is_empty()
                && let Some(cn) = common_name(cert.subject())
            {
                // Clients ignore the common name (RFC 6125 §6.4.4), but it says what was meant.
                verdict.names.push(format!("{cn} (common name only)"));
            }
            cert.issuer().as_raw() == cert.subject().as_raw()
        }
        Err(e) => {
            verdict
                .problems
                .push(CertProblem::Other(format!("the certificate cannot be read: {e}")));
            return verdict;
        }
    };
    let time_ok = if now < verdict.not_before {
        verdict.problems.push(CertProblem::NotYetValid {
            not_before: verdict.not_before,
        });
        false
    } else if now > verdict.not_after {
        verdict.problems.push(CertProblem::Expired {
            not_after: verdict.not_after,
        });
        false
    } else {
        true
    };
    let parsed = match ParsedCertificate::try_from(leaf) {
        Ok(parsed) => parsed,
        Err(e) => {
            verdict
                .problems
                .push(CertProblem::Other(format!("the certificate cannot be used: {e}")));
            return verdict;
        }
    };
    let at = if time_ok {
        now
    } else {
        verdict.not_before + (verdict.not_after - verdict.not_before) / 2
    };
    let at = UnixTime::since_unix_epoch(Duration::from_secs(at.max(0) as u64));
    if let Err(e) = rustls::client::verify_server_cert_signed_by_trust_anchor(
        &parsed,
        roots,
        &chain[1..],
        at,
        provider.signature_verification_algorithms.all,
    ) {
        verdict.problems.push(match e {
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) if self_signed => {
                CertProblem::SelfSigned
            }
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => CertProblem::UntrustedIssuer {
                issuer: verdict.issuer.clone(),
            },
            rustls::Error::InvalidCertificate(
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. },
            ) => CertProblem::Other("an intermediate certificate of the chain is outside its validity dates".into()),
            other => CertProblem::Other(format!("the certificate does not verify: {other}")),
        });
    }
    if let Err(e) = rustls::client::verify_server_name(&parsed, server_name) {
        verdict.problems.push(match e {
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => CertProblem::WrongName {
                names: verdict.names.clone(),
            },
            other => CertProblem::Other(format!("the certificate's names cannot be checked: {other}")),
        });
    }
    verdict
}

fn common_name(name: &x509_parser::x509::X509Name<'_>) -> Option<String> {
    name.iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string)
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// "2027-03-01 12:00 UTC".
fn date(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| unix.to_string())
}

// ---------------------------------------------------------------- client dialogues

/// A line-oriented connection to a server, with limits on what it may send.
struct Conn<S> {
    io: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    fn new(stream: S) -> Conn<S> {
        Conn {
            io: BufReader::new(stream),
        }
    }

    /// One line without its CRLF.
    async fn line(&mut self) -> Result<String, String> {
        let mut buf = Vec::new();
        let n = (&mut self.io)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut buf)
            .await
            .map_err(|e| format!("reading from the server failed: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        if buf.last() != Some(&b'\n') {
            return Err(format!("the server sent a line longer than {MAX_LINE} bytes"));
        }
        let text = String::from_utf8_lossy(&buf);
        Ok(text.trim_end_matches(['\r', '\n']).to_string())
    }

    async fn send(&mut self, line: &str) -> Result<(), String> {
        let stream = self.io.get_mut();
        stream
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .map_err(|e| format!("writing to the server failed: {e}"))?;
        stream
            .flush()
            .await
            .map_err(|e| format!("writing to the server failed: {e}"))
    }

    /// An SMTP reply (RFC 5321 §4.2.1): its code and the text of every line.
    async fn smtp_reply(&mut self) -> Result<(u16, Vec<String>), String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line().await?;
            let code = line.get(..3).and_then(|c| c.parse::<u16>().ok());
            let Some(code) = code else {
                return Err(format!("not an SMTP reply: {:?}", clip(&line)));
            };
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_string());
            if last {
                return Ok((code, lines));
            }
            if lines.len() > MAX_LINES {
                return Err("the server's reply does not end".into());
            }
        }
    }

    /// The stream, for TLS. Anything the server sent after agreeing to start TLS would be
    /// read as if it had come over TLS (the response-injection attack of CVE-2011-0411,
    /// from the client's side), so it is refused.
    fn into_inner(self) -> Result<S, String> {
        if self.io.buffer().is_empty() {
            Ok(self.io.into_inner())
        } else {
            Err("the server sent data after agreeing to start TLS (a broken server or an attack)".into())
        }
    }
}

/// A server's text, cut short for a report.
fn clip(text: &str) -> String {
    const MAX: usize = 160;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(MAX).collect::<String>())
    }
}

/// The greeting each protocol starts with: IMAP `* OK` (RFC 9051 §7.1.1), POP3 `+OK`
/// (RFC 1939 §4), SMTP `220` (RFC 5321 §4.3.1). Returns the greeting line(s).
async fn expect_greeting<S: AsyncRead + AsyncWrite + Unpin>(
    protocol: Protocol,
    conn: &mut Conn<S>,
) -> Result<String, String> {
    let (ok, line) = match protocol {
        Protocol::Imap => {
            let line = conn.line().await?;
            (line.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("* OK")), line)
        }
        Protocol::Pop3 => {
            let line = conn.line().await?;
            (line.starts_with("+OK"), line)
        }
        Protocol::Submission => {
            let (code, lines) = conn.smtp_reply().await?;
            (code == 220, format!("{code} {}", lines.join(" / ")))
        }
    };
    if ok {
        Ok(line)
    } else {
        Err(format!(
            "the server did not answer with a greeting of {}: {:?}",
            protocol.label(),
            clip(&line)
        ))
    }
}

/// The plain-text part of a STARTTLS port: greeting, the capability that offers TLS,
/// and the command that starts it. Returns the stream, ready for the TLS handshake.
async fn starttls(protocol: Protocol, stream: TcpStream) -> Result<TcpStream, String> {
    let me = ehlo_name(&stream);
    let mut conn = Conn::new(stream);
    expect_greeting(protocol, &mut conn).await?;
    upgrade(protocol, &mut conn, &me).await?;
    conn.into_inner()
}

/// After the greeting: checks that the server offers TLS and asks for it.
/// `me` is what this side calls itself in SMTP's EHLO.
async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    protocol: Protocol,
    conn: &mut Conn<S>,
    me: &str,
) -> Result<(), String> {
    match protocol {
        Protocol::Imap => {
            // RFC 9051 §6.1.1 CAPABILITY must list STARTTLS (RFC 2595 §3.1); then §6.2.1:
            // after the tagged OK, TLS begins at once.
            let capabilities = imap_command(conn, "D1", "CAPABILITY").await?;
            if !capabilities
                .iter()
                .filter(|l| l.get(..13).is_some_and(|p| p.eq_ignore_ascii_case("* CAPABILITY ")))
                .flat_map(|l| l.split_whitespace())
                .any(|c| c.eq_ignore_ascii_case("STARTTLS"))
            {
                return Err("the server does not offer STARTTLS (not in its CAPABILITY)".into());
            }
            imap_command(conn, "D2", "STARTTLS")
                .await
                .map_err(|e| format!("STARTTLS refused: {e}"))?;
        }
        Protocol::Pop3 => {
            // RFC 2449 §5 CAPA lists STLS (RFC 2595 §4); a server without CAPA may still
            // take STLS, so the command itself decides then.
            conn.send("CAPA").await?;
            let first = conn.line().await?;
            if first.starts_with("+OK") {
                let mut offered = false;
                let mut ended = false;
                for _ in 0..MAX_LINES {
                    let line = conn.line().await?;
                    if line == "." {
                        ended = true;
                        break;
                    }
                    offered |= line
                        .split_whitespace()
                        .next()
                        .is_some_and(|c| c.eq_ignore_ascii_case("STLS"));
                }
                if !ended {
                    return Err("the server's CAPA answer does not end".into());
                }
                if !offered {
                    return Err("the server does not offer STLS (not in its CAPA)".into());
                }
            }
            conn.send("STLS").await?;
            let answer = conn.line().await?;
            if !answer.starts_with("+OK") {
                return Err(format!("STLS refused: {:?}", clip(&answer)));
            }
        }
        Protocol::Submission => {
            // RFC 3207 §4: EHLO lists STARTTLS; STARTTLS answered 220 starts TLS.
            let keywords = smtp_ehlo(conn, me).await?;
            if !keywords.iter().any(|k| k == "STARTTLS") {
                return Err("the server does not offer STARTTLS (not in its EHLO reply)".into());
            }
            conn.send("STARTTLS").await?;
            let (code, text) = conn.smtp_reply().await?;
            if code != 220 {
                return Err(format!("STARTTLS refused: {code} {}", clip(&text.join(" "))));
            }
        }
    }
    Ok(())
}

/// Sends a tagged IMAP command and reads up to its tagged answer, which must be OK.
/// Returns the untagged lines before it.
async fn imap_command<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    tag: &str,
    command: &str,
) -> Result<Vec<String>, String> {
    conn.send(&format!("{tag} {command}")).await?;
    let mut untagged = Vec::new();
    for _ in 0..MAX_LINES {
        let line = conn.line().await?;
        if let Some(rest) = line.strip_prefix(tag).and_then(|r| r.strip_prefix(' ')) {
            return if rest.get(..2).is_some_and(|s| s.eq_ignore_ascii_case("OK")) {
                Ok(untagged)
            } else {
                Err(clip(rest))
            };
        }
        untagged.push(line);
    }
    Err(format!("no answer to {command}"))
}

/// This side's address literal for EHLO (RFC 5321 §4.1.3: a client without a name of
/// its own sends its address, `[192.0.2.1]` or `[IPv6:2001:db8::1]`).
fn ehlo_name(stream: &TcpStream) -> String {
    match stream.local_addr().map(|a| a.ip()) {
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("[{v4}]"),
            None => format!("[IPv6:{v6}]"),
        },
        Ok(IpAddr::V4(v4)) => format!("[{v4}]"),
        Err(_) => "[127.0.0.1]".into(),
    }
}

/// EHLO as `me`. Returns the extension keywords, upper case.
async fn smtp_ehlo<S: AsyncRead + AsyncWrite + Unpin>(conn: &mut Conn<S>, me: &str) -> Result<Vec<String>, String> {
    conn.send(&format!("EHLO {me}")).await?;
    let (code, lines) = conn.smtp_reply().await?;
    if code != 250 {
        return Err(format!("EHLO refused: {code} {}", clip(&lines.join(" "))));
    }
    // The first line is the server's name; each further one an extension (RFC 5321 §4.1.1.1).
    Ok(lines.iter().skip(1).map(|l| l.to_ascii_uppercase()).collect())
}

// --------------------------------------------------------------------------- logins

/// What a refused login means.
enum Refusal {
    /// Wrong password, unknown or disabled account.
    Credentials(String),
    /// The server refuses for now (too many failures, store unavailable).
    Temporary(String),
    /// Anything else: the dialogue broke.
    Broken(String),
}

/// Step 4: one login, on a connection that verifies the certificate.
async fn login(
    endpoint: Endpoint,
    ip: IpAddr,
    server_name: &ServerName<'static>,
    tls: &TlsConnector,
    user: &str,
    password: &Password,
) -> Finding {
    let name = format!("{} {}", endpoint.protocol.label(), endpoint.port);
    let attempt = async {
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(SocketAddr::new(ip, endpoint.port)))
            .await
            .map_err(|_| Refusal::Broken("no answer to connect".into()))?
            .map_err(|e| Refusal::Broken(format!("cannot connect: {e}")))?;
        let me = ehlo_name(&tcp);
        let (tcp, greeting) = match endpoint.security {
            Security::Tls => (tcp, None),
            Security::StartTls => {
                let mut conn = Conn::new(tcp);
                // POP3's greeting is read again by async-pop below.
                let greeting = expect_greeting(endpoint.protocol, &mut conn)
                    .await
                    .map_err(Refusal::Broken)?;
                upgrade(endpoint.protocol, &mut conn, &me)
                    .await
                    .map_err(Refusal::Broken)?;
                (conn.into_inner().map_err(Refusal::Broken)?, Some(greeting))
            }
        };
        let stream = tls
            .connect(server_name.clone(), tcp)
            .await
            .map_err(|e| Refusal::Broken(format!("TLS failed: {e}")))?;
        match endpoint.protocol {
            Protocol::Imap => imap_login(stream, greeting.is_none(), user, password).await,
            Protocol::Pop3 => pop3_login(stream, greeting, user, password).await,
            Protocol::Submission => smtp_login(stream, greeting.is_none(), &me, user, password).await,
        }
    };
    let result = match tokio::time::timeout(DIALOGUE_TIMEOUT, attempt).await {
        Ok(result) => result,
        Err(_) => Err(Refusal::Broken(format!(
            "no answer within {} s",
            DIALOGUE_TIMEOUT.as_secs()
        ))),
    };
    let finding = match result {
        Ok(()) => Finding::new(
            Status::Ok,
            Check::Login,
            name,
            format!("logged in as {user} on {}", endpoint_name(endpoint)),
        ),
        Err(Refusal::Credentials(said)) => Finding::new(
            Status::Error,
            Check::Login,
            name,
            format!(
                "refused: wrong password or disabled account (the server said: {})",
                redact(&said, password)
            ),
        )
        .advice(format!(
            "Check the password the client uses; to set a new one: `tern user passwd {user}`; to see whether the \
             account is enabled: `tern user list`."
        )),
        Err(Refusal::Temporary(said)) => Finding::new(
            Status::Error,
            Check::Login,
            name,
            format!("the server refuses logins for now: {}", redact(&said, password)),
        )
        .advice(
            "Too many failed logins from this address or on this account lock logins for up to 15 minutes; \
             stop the client that keeps trying a wrong password, wait, and check again.",
        ),
        Err(Refusal::Broken(why)) => Finding::new(
            Status::Error,
            Check::Login,
            name,
            format!("the login could not be tried: {}", redact(&why, password)),
        )
        .advice("Look at the server's log at the time of this check for the reason."),
    };
    finding.at(endpoint)
}

/// Classifies a refusal by the server's words: a throttled or unavailable server says so
/// (Tern: `[UNAVAILABLE]` in IMAP, `[SYS/TEMP]` in POP3 (RFC 3206 §4), "too many failed
/// logins" in all three).
fn refusal(text: String) -> Refusal {
    let lower = text.to_ascii_lowercase();
    if lower.contains("too many") || lower.contains("[unavailable]") || lower.contains("[sys/temp]") {
        Refusal::Temporary(text)
    } else {
        Refusal::Credentials(text)
    }
}

async fn imap_login<S>(stream: S, read_greeting: bool, user: &str, password: &Password) -> Result<(), Refusal>
where
    S: AsyncRead + AsyncWrite + Unpin + fmt::Debug + Send,
{
    let mut client = async_imap::Client::new(stream);
    if read_greeting {
        match client.read_response().await {
            Ok(Some(_)) => {}
            Ok(None) => return Err(Refusal::Broken("the server closed the connection".into())),
            Err(e) => return Err(Refusal::Broken(e.to_string())),
        }
    }
    // RFC 9051 §6.2.3 LOGIN; after STARTTLS no greeting comes (§6.2.1).
    match client.login(user, password.expose()).await {
        Ok(mut session) => {
            let _ = session.logout().await;
            Ok(())
        }
        Err((async_imap::error::Error::No(text), _)) => Err(refusal(text)),
        Err((async_imap::error::Error::Bad(text), _)) => Err(Refusal::Broken(format!("LOGIN refused: {text}"))),
        Err((e, _)) => Err(Refusal::Broken(e.to_string())),
    }
}

async fn pop3_login<S>(stream: S, greeting: Option<String>, user: &str, password: &Password) -> Result<(), Refusal>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    // async-pop starts by reading a greeting; after STLS (RFC 2595 §4) none comes, so the
    // one read before it is given again.
    let stream = Replayed::new(
        greeting.map(|g| format!("{g}\r\n").into_bytes()).unwrap_or_default(),
        stream,
    );
    let mut client = async_pop::new(stream)
        .await
        .map_err(|e| Refusal::Broken(e.message().to_string()))?;
    // AUTH PLAIN (RFC 5034 §4) when offered, else USER/PASS (RFC 1939 §7). Chosen here,
    // because async-pop's login() falls back from one to the other and a wrong
    // password would count twice against the account's limit.
    let result = if client.has_auth_mechanism("PLAIN") {
        client
            .auth(async_pop::sasl::PlainAuthenticator::new(user, password.expose()))
            .await
            .map(|_| ())
    } else {
        client.login(user, password.expose()).await.map(|_| ())
    };
    match result {
        Ok(()) => {
            let _ = client.quit().await;
            Ok(())
        }
        Err(e) => match e.kind() {
            async_pop::error::ErrorKind::ServerError(text) => Err(refusal(text.clone())),
            _ => Err(Refusal::Broken(e.message().to_string())),
        },
    }
}

async fn smtp_login<S>(stream: S, read_greeting: bool, me: &str, user: &str, password: &Password) -> Result<(), Refusal>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = Conn::new(stream);
    if read_greeting {
        expect_greeting(Protocol::Submission, &mut conn)
            .await
            .map_err(Refusal::Broken)?;
    }
    // RFC 3207 §4.2: after STARTTLS the client forgets what it knew and says EHLO again.
    let keywords = smtp_ehlo(&mut conn, me).await.map_err(Refusal::Broken)?;
    let plain = keywords.iter().any(|k| {
        let mut words = k.split_whitespace();
        words.next() == Some("AUTH") && words.any(|m| m == "PLAIN")
    });
    if !plain {
        return Err(Refusal::Broken(
            "the server does not offer AUTH PLAIN on this port (RFC 4954)".into(),
        ));
    }
    // RFC 4954 §4 with an initial response; RFC 4616 §2: authzid NUL authcid NUL passwd.
    let blob = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{}", password.expose()));
    conn.send(&format!("AUTH PLAIN {blob}"))
        .await
        .map_err(Refusal::Broken)?;
    let (code, text) = conn.smtp_reply().await.map_err(Refusal::Broken)?;
    let said = format!("{code} {}", text.join(" "));
    let outcome = match code {
        235 => Ok(()),
        // RFC 4954 §6: 535 credentials invalid; 454 temporary failure.
        535 => Err(Refusal::Credentials(said)),
        400..=499 => Err(Refusal::Temporary(said)),
        _ => Err(Refusal::Broken(format!("AUTH refused: {said}"))),
    };
    let _ = conn.send("QUIT").await;
    outcome
}

/// A server's words with the password cut out, should a server ever echo it.
fn redact(text: &str, password: &Password) -> String {
    let secret = password.expose();
    if secret.is_empty() {
        clip(text)
    } else {
        clip(&text.replace(secret, "(password hidden)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Datelike;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    use tokio::net::TcpListener;

    const HOST: &str = "mail.example.test";

    /// (year, month, day) `days` from today (negative: in the past).
    fn ymd(days: i64) -> (i32, u8, u8) {
        let d = chrono::Utc::now() + chrono::Duration::days(days);
        (d.year(), d.month() as u8, d.day() as u8)
    }

    /// A CA: its issuer (to sign leaves) and certificate (to trust).
    fn ca(name: &str) -> (Issuer<'static, KeyPair>, CertificateDer<'static>) {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("CA");
        (Issuer::new(params, key), cert.der().clone())
    }

    /// A leaf for `names`, valid from `from` to `until` days from today, signed by
    /// `issuer` (or by itself).
    fn leaf(
        names: &[&str],
        from: i64,
        until: i64,
        issuer: Option<&Issuer<'static, KeyPair>>,
    ) -> CertificateDer<'static> {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("params");
        params.distinguished_name.push(DnType::CommonName, names[0]);
        let (y, m, d) = ymd(from);
        params.not_before = rcgen::date_time_ymd(y, m, d);
        let (y, m, d) = ymd(until);
        params.not_after = rcgen::date_time_ymd(y, m, d);
        let key = KeyPair::generate().expect("key");
        match issuer {
            Some(issuer) => params.signed_by(&key, issuer).expect("sign").der().clone(),
            None => params.self_signed(&key).expect("self-sign").der().clone(),
        }
    }

    fn roots(trusted: &[&CertificateDer<'static>]) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        for cert in trusted {
            roots.add((*cert).clone()).expect("trust anchor");
        }
        roots
    }

    fn judged(chain: &[CertificateDer<'static>], roots: &RootCertStore) -> CertVerdict {
        let name = ServerName::try_from(HOST).expect("name");
        judge(
            chain,
            &name,
            roots,
            &rustls::crypto::ring::default_provider(),
            unix_now(),
        )
    }

    #[test]
    fn a_good_certificate_is_ok_and_says_what_it_is() {
        let (issuer, ca_cert) = ca("Doctor Test CA");
        let verdict = judged(&[leaf(&[HOST], -1, 90, Some(&issuer))], &roots(&[&ca_cert]));
        assert_eq!(verdict.problems, vec![]);
        assert_eq!(verdict.names, vec![HOST.to_string()]);
        assert_eq!(verdict.issuer, "Doctor Test CA");
        assert!(verdict.days_left() >= 88, "{}", verdict.days_left());
        let (status, detail, advice) = verdict.finding("TLS 1.3");
        assert_eq!(status, Status::Ok);
        assert!(
            detail.starts_with("TLS 1.3; certificate for mail.example.test, issued by Doctor Test CA"),
            "{detail}"
        );
        assert!(advice.is_none());
    }

    #[test]
    fn each_problem_is_named_apart() {
        let (issuer, ca_cert) = ca("Doctor Test CA");
        let trusted = roots(&[&ca_cert]);

        let expired = judged(&[leaf(&[HOST], -100, -3, Some(&issuer))], &trusted);
        assert!(
            matches!(expired.problems.as_slice(), [CertProblem::Expired { .. }]),
            "{:?}",
            expired.problems
        );
        assert!(expired.finding("TLS 1.3").1.contains("EXPIRED on"));

        let early = judged(&[leaf(&[HOST], 3, 100, Some(&issuer))], &trusted);
        assert!(
            matches!(early.problems.as_slice(), [CertProblem::NotYetValid { .. }]),
            "{:?}",
            early.problems
        );

        let other = judged(
            &[leaf(
                &["other.example.test", "www.other.example.test"],
                -1,
                90,
                Some(&issuer),
            )],
            &trusted,
        );
        assert_eq!(
            other.problems,
            vec![CertProblem::WrongName {
                names: vec!["other.example.test".into(), "www.other.example.test".into()]
            }]
        );
        let (status, detail, _) = other.finding("TLS 1.3");
        assert_eq!(status, Status::Error);
        assert!(
            detail.contains("WRONG NAME: it names other.example.test, www.other.example.test"),
            "{detail}"
        );

        let self_signed = judged(&[leaf(&[HOST], -1, 90, None)], &trusted);
        assert_eq!(self_signed.problems, vec![CertProblem::SelfSigned]);
        assert!(self_signed.finding("TLS 1.3").1.contains("SELF-SIGNED"));

        let (stranger, _) = ca("Some Other CA");
        let untrusted = judged(&[leaf(&[HOST], -1, 90, Some(&stranger))], &trusted);
        assert_eq!(
            untrusted.problems,
            vec![CertProblem::UntrustedIssuer {
                issuer: "Some Other CA".into()
            }]
        );

        // Everything at once: every problem reported, not just the first.
        let all = judged(&[leaf(&["other.example.test"], -100, -3, Some(&stranger))], &trusted);
        assert_eq!(all.problems.len(), 3, "{:?}", all.problems);
        let detail = all.finding("TLS 1.2").1;
        for word in ["EXPIRED", "UNTRUSTED ISSUER: Some Other CA", "WRONG NAME"] {
            assert!(detail.contains(word), "{word} in {detail}");
        }
    }

    #[test]
    fn a_certificate_expiring_soon_is_a_warning() {
        let (issuer, ca_cert) = ca("Doctor Test CA");
        let verdict = judged(&[leaf(&[HOST], -80, 5, Some(&issuer))], &roots(&[&ca_cert]));
        assert!(verdict.problems.is_empty(), "{:?}", verdict.problems);
        let (status, detail, advice) = verdict.finding("TLS 1.3");
        assert_eq!(status, Status::Warning);
        assert!(
            detail.contains("expires in 4 days") || detail.contains("expires in 5 days"),
            "{detail}"
        );
        assert!(advice.is_some_and(|a| a.contains("Renew")));
    }

    #[test]
    fn a_self_signed_certificate_given_as_the_ca_verifies() {
        let cert = leaf(&[HOST], -1, 90, None);
        assert!(
            judged(std::slice::from_ref(&cert), &roots(&[&cert]))
                .problems
                .is_empty()
        );
    }

    #[test]
    fn addresses_and_their_domains() {
        assert_eq!(email_domain(" alice@Example.COM "), Some("example.com".into()));
        assert_eq!(
            email_domain("a.b+c@mail.example.test."),
            Some("mail.example.test".into())
        );
        for bad in [
            "alice",
            "@example.com",
            "alice@",
            "alice@localhost",
            "al ice@example.com",
            "a@exa mple.com",
            "a@-..com",
        ] {
            assert_eq!(email_domain(bad), None, "{bad}");
        }
    }

    #[test]
    fn srv_labels_follow_rfc_6186_and_8314() {
        let e = |protocol, security| Endpoint {
            protocol,
            port: 1,
            security,
        };
        assert_eq!(srv_label(e(Protocol::Imap, Security::Tls)), "_imaps._tcp");
        assert_eq!(srv_label(e(Protocol::Pop3, Security::StartTls)), "_pop3._tcp");
        assert_eq!(srv_label(e(Protocol::Submission, Security::Tls)), "_submissions._tcp");
        assert_eq!(
            srv_label(e(Protocol::Submission, Security::StartTls)),
            "_submission._tcp"
        );
    }

    #[test]
    fn a_password_never_shows() {
        let password = Password::new("s3cret!");
        assert_eq!(format!("{password:?}"), "Password(hidden)");
        assert_eq!(
            redact("NO user s3cret! unknown", &password),
            "NO user (password hidden) unknown"
        );
    }

    /// A one-connection server that answers each line the client sends with the next
    /// scripted answer, after sending `greeting`.
    async fn scripted(greeting: &'static str, answers: Vec<&'static str>) -> TcpStream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let mut conn = Conn::new(stream);
            conn.io.get_mut().write_all(greeting.as_bytes()).await.expect("greet");
            for answer in answers {
                if conn.line().await.is_err() {
                    return;
                }
                conn.io.get_mut().write_all(answer.as_bytes()).await.expect("answer");
            }
            // Hold the connection until the client is done with it.
            let _ = conn.line().await;
        });
        TcpStream::connect(addr).await.expect("connect")
    }

    #[tokio::test]
    async fn starttls_dialogues_reach_the_handshake() {
        let imap = scripted(
            "* OK ready\r\n",
            vec![
                "* CAPABILITY IMAP4rev1 STARTTLS\r\nD1 OK done\r\n",
                "D2 OK begin TLS\r\n",
            ],
        )
        .await;
        starttls(Protocol::Imap, imap).await.expect("IMAP STARTTLS");

        let pop3 = scripted(
            "+OK POP3\r\n",
            vec!["+OK\r\nUSER\r\nSTLS\r\n.\r\n", "+OK begin TLS\r\n"],
        )
        .await;
        starttls(Protocol::Pop3, pop3).await.expect("POP3 STLS");

        let smtp = scripted(
            "220-mail.example.test\r\n220 ESMTP\r\n",
            vec![
                "250-mail.example.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n",
                "220 go ahead\r\n",
            ],
        )
        .await;
        starttls(Protocol::Submission, smtp).await.expect("SMTP STARTTLS");
    }

    #[tokio::test]
    async fn a_server_without_tls_or_with_injected_data_is_refused() {
        let imap = scripted("* OK ready\r\n", vec!["* CAPABILITY IMAP4rev1\r\nD1 OK done\r\n"]).await;
        let err = starttls(Protocol::Imap, imap).await.expect_err("no STARTTLS");
        assert!(err.contains("does not offer STARTTLS"), "{err}");

        let pop3 = scripted("+OK POP3\r\n", vec!["+OK\r\nUSER\r\n.\r\n"]).await;
        let err = starttls(Protocol::Pop3, pop3).await.expect_err("no STLS");
        assert!(err.contains("does not offer STLS"), "{err}");

        let smtp = scripted("220 ESMTP\r\n", vec!["250-mail.example.test\r\n250 PIPELINING\r\n"]).await;
        let err = starttls(Protocol::Submission, smtp).await.expect_err("no STARTTLS");
        assert!(err.contains("does not offer STARTTLS"), "{err}");

        // Plain text after the go-ahead would be taken as if it came over TLS.
        let smtp = scripted(
            "220 ESMTP\r\n",
            vec![
                "250-mail.example.test\r\n250 STARTTLS\r\n",
                "220 go ahead\r\n250 injected\r\n",
            ],
        )
        .await;
        let err = starttls(Protocol::Submission, smtp).await.expect_err("injection");
        assert!(err.contains("after agreeing to start TLS"), "{err}");

        let wrong = scripted("+OK POP3 here\r\n", vec![]).await;
        let err = starttls(Protocol::Imap, wrong).await.expect_err("not IMAP");
        assert!(err.contains("not answer with a greeting of IMAP"), "{err}");
    }
}
