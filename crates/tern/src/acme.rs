//! The TLS certificate from an ACME CA (RFC 8555; Let's Encrypt by default), kept
//! renewed while Tern runs.
//!
//! `tern serve` runs [`AcmeTask`] when `[acme] enabled`: at start and then twice a day
//! it looks at the certificate the listeners present and orders a new one when there
//! is none, when it is self-signed, when it lacks a name it should carry, or when it
//! expires within `renew_before_days`. It asks for this host's name and, for every
//! hosted domain, `autoconfig.`, `autodiscover.` and `mta-sts.` names, each only if
//! its DNS points at the same addresses as the host name (a name that does not would
//! fail the whole order; it is logged and left out). Challenges are HTTP-01 (RFC 8555
//! §8.3), answered by the web listeners from [`Http01Challenges`]. The new certificate
//! (with a new key each time) is written over `[tls]`'s files and swapped into every
//! listener through their shared [`SwappableCertificate`]; no restart. A failure is
//! retried later with a growing delay and never touches the certificate in use.
//!
//! What it keeps in `DATA/acme/` (mode 0700):
//! - `account.json` (0600): the ACME account's key and URL. Never logged.
//! - `status.json`: what the last checks found (names wanted and left out, the last
//!   error, the next check), read by `tern cert status`.
//! - `renew-request`: written by `tern cert renew`, taken by the running server,
//!   which orders at once and records the request's id in `status.json` when done.
//!
//! This sits in the binary's library beside `server` because it ties four parts
//! together (the store's domains, DNS, the web face's challenge map and tern-net's
//! listeners), none of which needs to know about the others.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType, HttpClient,
    Identifier, NewAccount, NewOrder, Order, OrderStatus, RetryPolicy,
};
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tern_dns::resolve::{Answer, Lookup};
use tern_net::tls::{self, SwappableCertificate, TlsError};
use tern_store::Store;
use tern_web::acme::{CertificateTrust, Http01Challenges};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::{AcmeSection, Config};

/// How often the certificate is looked at: twice a day.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(12 * 3600);
/// The first retry after a failure; each further failure doubles it, up to
/// [`CHECK_INTERVAL`]. Let's Encrypt allows 5 failed validations per name per hour.
const FIRST_RETRY: Duration = Duration::from_secs(5 * 60);
/// How often the running server looks for `tern cert renew`'s request.
const REQUEST_POLL: Duration = Duration::from_secs(1);
/// One HTTP exchange with the CA.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// A whole order, from placing it to the certificate.
const ORDER_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// The most names one certificate may carry (Let's Encrypt's limit).
pub const MAX_NAMES: usize = 100;
/// The per-domain names clients and other servers look up (autoconfig for Thunderbird,
/// autodiscover for Outlook, mta-sts for sending servers, RFC 8461 §3.3).
pub const DOMAIN_NAME_PREFIXES: [&str; 3] = ["autoconfig", "autodiscover", "mta-sts"];

/// What went wrong getting or keeping a certificate. Each message says what to look at.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("the ACME server ({directory}) {doing}: {source}")]
    Server {
        directory: String,
        doing: &'static str,
        source: instant_acme::Error,
    },
    #[error(
        "the CA could not validate {0}; check that each name's A/AAAA records point at this server and that port 80 reaches Tern's http listener"
    )]
    Validation(String),
    #[error("the CA offered no http-01 challenge for {0}")]
    NoHttp01(String),
    #[error("the authorization for {name} is {status}")]
    Authorization { name: String, status: String },
    #[error("the CA took longer than {} minutes over the order", ORDER_TIMEOUT.as_secs() / 60)]
    Timeout,
    #[error("the issued certificate lacks {0}")]
    Incomplete(String),
    #[error("cannot make the certificate request: {0}")]
    Csr(#[from] rcgen::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot read the certificate: {0}")]
    Certificate(String),
    #[error("cannot set up the connection to the ACME server: {0}")]
    Client(String),
    #[error("cannot list the hosted domains: {0}")]
    Store(#[from] tern_store::StoreError),
    #[error("{path}: {source}")]
    File { path: PathBuf, source: std::io::Error },
    #[error("{path} is damaged ({source}); delete it to start afresh")]
    Damaged { path: PathBuf, source: serde_json::Error },
}

impl AcmeError {
    fn server(directory: &str, doing: &'static str) -> impl FnOnce(instant_acme::Error) -> AcmeError {
        let directory = directory.to_string();
        move |source| AcmeError::Server {
            directory,
            doing,
            source,
        }
    }
}

// --- Files in the data folder --------------------------------------------------------

/// Where ACME keeps its state: `DATA/acme/`.
#[derive(Debug, Clone)]
pub struct AcmeFiles {
    dir: PathBuf,
}

/// `account.json`: the account and the directory (and contact) it was made with.
#[derive(Serialize, Deserialize)]
struct SavedAccount {
    directory: String,
    contact: String,
    credentials: AccountCredentials,
}

impl AcmeFiles {
    pub fn new(data_dir: &Path) -> AcmeFiles {
        AcmeFiles {
            dir: data_dir.join("acme"),
        }
    }

    pub fn status_path(&self) -> PathBuf {
        self.dir.join("status.json")
    }

    fn account_path(&self) -> PathBuf {
        self.dir.join("account.json")
    }

    fn request_path(&self) -> PathBuf {
        self.dir.join("renew-request")
    }

    /// The folder, created private (0700) if missing.
    fn ensure_dir(&self) -> Result<(), AcmeError> {
        let err = |source| AcmeError::File {
            path: self.dir.clone(),
            source,
        };
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(&self.dir).map_err(err)
    }

    fn write(&self, path: &Path, contents: &[u8], mode: u32) -> Result<(), AcmeError> {
        self.ensure_dir()?;
        tls::write_file_atomically(path, contents, mode).map_err(AcmeError::from)
    }

    fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, AcmeError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| AcmeError::Damaged {
                    path: path.to_path_buf(),
                    source,
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(AcmeError::File {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// What the server last recorded; `None` before its first check.
    pub fn read_status(&self) -> Result<Option<Status>, AcmeError> {
        Self::read_json(&self.status_path())
    }

    fn write_status(&self, status: &Status) -> Result<(), AcmeError> {
        let json = serde_json::to_vec_pretty(status).map_err(|source| AcmeError::Damaged {
            path: self.status_path(),
            source,
        })?;
        self.write(&self.status_path(), &json, 0o644)
    }

    fn read_account(&self) -> Result<Option<SavedAccount>, AcmeError> {
        Self::read_json(&self.account_path())
    }

    /// Saved 0600: it holds the account's private key.
    fn write_account(&self, account: &SavedAccount) -> Result<(), AcmeError> {
        let json = serde_json::to_vec(account).map_err(|source| AcmeError::Damaged {
            path: self.account_path(),
            source,
        })?;
        self.write(&self.account_path(), &json, 0o600)
    }

    /// Asks the running server to order a certificate now; returns the request's id,
    /// which `status.json`'s `handled_request` shows once it is done.
    pub fn request_renewal(&self) -> Result<String, AcmeError> {
        let id = format!("{}-{}", unix_now(), rand::random::<u32>());
        self.write(&self.request_path(), id.as_bytes(), 0o644)?;
        Ok(id)
    }

    /// Whether a request is still waiting to be picked up.
    pub fn renewal_requested(&self) -> bool {
        self.request_path().exists()
    }

    /// Takes `tern cert renew`'s request, if one is waiting.
    fn take_request(&self) -> Option<String> {
        let path = self.request_path();
        let id = std::fs::read_to_string(&path).ok()?;
        let _ = std::fs::remove_file(&path);
        Some(id.trim().to_string())
    }
}

/// What the server found at its checks, kept in `status.json` for `tern cert status`.
/// Holds no secret.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Status {
    /// The `tern serve` process that wrote it, and how many checks it has made since
    /// it started (0: its first check is still under way).
    pub pid: u32,
    #[serde(default)]
    pub checks: u64,
    pub directory: String,
    /// Unix times.
    pub last_check: Option<i64>,
    pub next_check: Option<i64>,
    pub last_issued: Option<i64>,
    pub last_error: Option<StatusError>,
    /// Failures in a row; the next retry waits longer after each.
    pub failures: u32,
    /// The names the last check wanted on the certificate.
    pub wanted: Vec<String>,
    /// Names of hosted domains left out, and why.
    pub left_out: Vec<LeftOut>,
    /// The SHA-256 of the last certificate issued through ACME (hex), so a restart
    /// knows the certificate on disk is one.
    pub issued_sha256: Option<String>,
    /// The last `tern cert renew` request handled.
    pub handled_request: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StatusError {
    pub at: i64,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LeftOut {
    pub name: String,
    pub reason: String,
}

// --- Certificates --------------------------------------------------------------------

/// What Tern needs to know of a certificate.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CertificateInfo {
    /// DNS names (subjectAltName), lower case.
    pub names: Vec<String>,
    pub subject: String,
    pub issuer: String,
    /// Unix times.
    pub not_before: i64,
    pub not_after: i64,
    /// Hex.
    pub serial: String,
    /// Issuer and subject are the same: quickstart's certificate, or the temporary one.
    pub self_signed: bool,
    /// SHA-256 of the certificate (DER), hex.
    pub sha256: String,
}

/// Reads the first certificate (the server's own) of a DER chain.
pub fn inspect(chain: &[CertificateDer<'_>]) -> Result<CertificateInfo, AcmeError> {
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::{FromDer, X509Certificate};
    let der = chain
        .first()
        .ok_or_else(|| AcmeError::Certificate("the chain is empty".into()))?;
    let (_, cert) =
        X509Certificate::from_der(der.as_ref()).map_err(|e| AcmeError::Certificate(format!("not X.509: {e}")))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                names.push(dns.to_ascii_lowercase());
            }
        }
    }
    Ok(CertificateInfo {
        names,
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        serial: hex::encode(cert.raw_serial()),
        self_signed: cert.subject().as_raw() == cert.issuer().as_raw(),
        sha256: hex::encode(Sha256::digest(der.as_ref())),
    })
}

/// Reads a PEM chain.
pub fn inspect_pem(pem: &[u8]) -> Result<CertificateInfo, AcmeError> {
    use rustls_pki_types::pem::PemObject;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| AcmeError::Certificate(e.to_string()))?;
    inspect(&chain)
}

/// The certificate file `[tls] certificate` names; `None` when there is none.
pub fn inspect_file(path: &Path) -> Result<Option<CertificateInfo>, AcmeError> {
    match std::fs::read(path) {
        Ok(pem) => inspect_pem(&pem).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(AcmeError::File {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Why the certificate must be replaced now, or `None` if it may stay.
pub fn renewal_reason(
    current: Option<&CertificateInfo>,
    wanted: &[String],
    now: i64,
    renew_before_days: u32,
) -> Option<String> {
    let Some(cert) = current else {
        return Some("there is no certificate".into());
    };
    if cert.self_signed {
        return Some("the certificate is self-signed".into());
    }
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|name| !cert.names.iter().any(|n| n.eq_ignore_ascii_case(name)))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Some(format!("the certificate lacks {}", missing.join(", ")));
    }
    if cert.not_after - now < i64::from(renew_before_days) * 86_400 {
        return Some(format!(
            "the certificate expires on {} (renewing {renew_before_days} days ahead)",
            date(cert.not_after)
        ));
    }
    None
}

/// When the certificate will be renewed if nothing else happens (unix time).
pub fn renewal_due(cert: &CertificateInfo, renew_before_days: u32) -> i64 {
    cert.not_after - i64::from(renew_before_days) * 86_400
}

/// Whether browsers trust `chain` for `hostname`: it chains to the system's CAs.
pub fn chains_to_system_cas(chain: &[CertificateDer<'static>], hostname: &str) -> bool {
    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::ServerCertVerifier;
    use rustls_pki_types::pem::PemObject;
    let Some((end_entity, intermediates)) = chain.split_first() else {
        return false;
    };
    let mut roots = rustls::RootCertStore::empty();
    if let Ok(certs) = CertificateDer::pem_file_iter(tls::SYSTEM_CAS) {
        for cert in certs.flatten() {
            let _ = roots.add(cert);
        }
    }
    if roots.is_empty() {
        return false;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let Ok(verifier) = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build() else {
        return false;
    };
    let Ok(name) = rustls_pki_types::ServerName::try_from(hostname.to_string()) else {
        return false;
    };
    verifier
        .verify_server_cert(end_entity, intermediates, &name, &[], rustls_pki_types::UnixTime::now())
        .is_ok()
}

/// Whether the certificate presented is one browsers trust: the one Tern's ACME task
/// last obtained, or one chaining to the system's CAs (an operator's own).
pub fn is_trusted(chain: &[CertificateDer<'static>], hostname: &str, status: Option<&Status>) -> bool {
    let Ok(info) = inspect(chain) else {
        return false;
    };
    if info.self_signed {
        return false;
    }
    let issued_by_acme = status.and_then(|s| s.issued_sha256.as_deref()) == Some(info.sha256.as_str());
    issued_by_acme || chains_to_system_cas(chain, hostname)
}

/// The certificate the listeners start with: `[tls]`'s files. With ACME on, files that
/// are missing or unusable (a first start, or a crash between writing the key and the
/// chain) are no reason not to start: a temporary self-signed certificate is served
/// until ACME delivers, a minute later.
pub fn initial_certificate(data_dir: &Path, config: &Config) -> Result<Arc<SwappableCertificate>, TlsError> {
    let cert_path = config.tls.certificate_path(data_dir);
    let key_path = config.tls.private_key_path(data_dir);
    match SwappableCertificate::load(&cert_path, &key_path) {
        Ok(certificate) => Ok(certificate),
        Err(e) if config.acme.enabled => {
            if cert_path.exists() || key_path.exists() {
                warn!(error = %e, "the certificate files are unusable; serving a temporary self-signed certificate until ACME delivers a new one");
            } else {
                info!(path = %cert_path.display(), "no certificate yet; serving a temporary self-signed one until ACME delivers");
            }
            let (cert, key) = tls::self_signed_pem(&config.hostname)?;
            Ok(SwappableCertificate::new(tls::certified_key_from_pem(&cert, &key)?))
        }
        Err(e) => Err(e),
    }
}

// --- Names ---------------------------------------------------------------------------

/// The names to ask for, and those left out with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedNames {
    pub names: Vec<String>,
    pub left_out: Vec<LeftOut>,
}

/// The DNS servers to ask: `[dns] nameservers` in order, or the system's.
pub fn lookups(config: &Config) -> Result<Vec<Lookup>, String> {
    if config.dns.nameservers.is_empty() {
        return Ok(vec![Lookup::system()?]);
    }
    config.dns.nameservers.iter().map(|a| Lookup::server(*a)).collect()
}

/// A name's addresses from the first server that answers.
async fn addresses(lookups: &[Lookup], name: &str) -> Answer<IpAddr> {
    let mut last = Answer::Failed("no DNS server configured".into());
    for lookup in lookups {
        last = lookup.addresses(name).await;
        if !matches!(last, Answer::Failed(_)) {
            break;
        }
    }
    last
}

/// This host's name always (Tern cannot work without it; if its DNS is wrong the order
/// fails and says so); each hosted domain's autoconfig, autodiscover and mta-sts names
/// only when every address they resolve to is one of this server's, since the CA must
/// reach Tern at each name and one name it cannot reach fails the whole order. This
/// server's addresses are `public` (`[dns] public_addresses`) when given, else what the
/// host name resolves to.
pub async fn wanted_names(hostname: &str, public: &[IpAddr], domains: &[String], lookups: &[Lookup]) -> WantedNames {
    let hostname = hostname.to_ascii_lowercase();
    let (host, whose): (BTreeSet<IpAddr>, String) = if public.is_empty() {
        let resolved = addresses(lookups, &hostname).await.records().iter().copied().collect();
        (resolved, format!("{hostname}'s"))
    } else {
        (public.iter().copied().collect(), "this server's".to_string())
    };
    let mut names = vec![hostname.clone()];
    let mut left_out = Vec::new();
    let mut seen: BTreeSet<String> = names.iter().cloned().collect();
    for domain in domains {
        for prefix in DOMAIN_NAME_PREFIXES {
            let name = format!("{prefix}.{}", domain.to_ascii_lowercase());
            if !seen.insert(name.clone()) {
                continue;
            }
            let answer = addresses(lookups, &name).await;
            let reason = match &answer {
                Answer::Records(ips, _) if host.is_empty() => Some(format!(
                    "resolves to {}, but {hostname} itself does not resolve, so it cannot be compared",
                    list(ips)
                )),
                Answer::Records(ips, _) if ips.iter().all(|ip| host.contains(ip)) => None,
                Answer::Records(ips, _) => Some(format!(
                    "resolves to {}, not to {whose} {}",
                    list(ips),
                    list(&host.iter().copied().collect::<Vec<_>>())
                )),
                Answer::NxDomain => Some("does not exist in DNS".into()),
                Answer::NoData => Some("has no A or AAAA record".into()),
                Answer::Failed(e) => Some(format!("DNS lookup failed ({e})")),
            };
            match reason {
                None if names.len() >= MAX_NAMES => left_out.push(LeftOut {
                    name,
                    reason: format!("a certificate carries at most {MAX_NAMES} names"),
                }),
                None => names.push(name),
                Some(reason) => left_out.push(LeftOut { name, reason }),
            }
        }
    }
    WantedNames { names, left_out }
}

fn list(ips: &[IpAddr]) -> String {
    ips.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

// --- The ACME client -----------------------------------------------------------------

/// instant-acme's HTTP client: hyper over rustls with the ring provider, trusting the
/// system's CAs plus `[acme] ca_file`, each exchange bounded in time.
struct AcmeHttp(HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>);

impl AcmeHttp {
    fn new(ca_file: Option<&Path>) -> Result<AcmeHttp, AcmeError> {
        let extra: Vec<String> = ca_file.iter().map(|p| p.display().to_string()).collect();
        let tls = tls::client_config(&extra).map_err(AcmeError::Client)?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_only()
            .enable_http1()
            .build();
        Ok(AcmeHttp(HyperClient::builder(TokioExecutor::new()).build(https)))
    }
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        request: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let response = self.0.request(request);
        Box::pin(async move {
            match tokio::time::timeout(HTTP_TIMEOUT, response).await {
                Ok(Ok(response)) => Ok(BytesResponse::from(response)),
                Ok(Err(e)) => Err(instant_acme::Error::Other(Box::new(e))),
                Err(_) => Err(instant_acme::Error::Other(
                    format!("no answer within {} s", HTTP_TIMEOUT.as_secs()).into(),
                )),
            }
        })
    }
}

/// Removes the challenges it published when dropped, whether the order succeeded,
/// failed or was cancelled by a shutdown.
struct Published<'a> {
    challenges: &'a Http01Challenges,
    tokens: Vec<String>,
}

impl Published<'_> {
    fn insert(&mut self, token: &str, key_authorization: &str) {
        self.challenges.insert(token, key_authorization);
        self.tokens.push(token.to_string());
    }
}

impl Drop for Published<'_> {
    fn drop(&mut self) {
        for token in &self.tokens {
            self.challenges.remove(token);
        }
    }
}

// --- The background task -------------------------------------------------------------

/// The running task and the switch that stops it.
pub type TaskHandle = (watch::Sender<bool>, tokio::task::JoinHandle<()>);

/// What one check did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The certificate may stay.
    Current,
    /// A new certificate is in use.
    Issued(CertificateInfo),
}

/// Gets and renews the certificate while `tern serve` runs; see the module's text.
pub struct AcmeTask {
    hostname: String,
    acme: AcmeSection,
    ca_file: Option<PathBuf>,
    cert_path: PathBuf,
    key_path: PathBuf,
    files: AcmeFiles,
    store: Arc<dyn Store>,
    lookups: Vec<Lookup>,
    /// `[dns] public_addresses`: what "points at this server" means when given.
    public_addresses: Vec<IpAddr>,
    certificate: Arc<SwappableCertificate>,
    challenges: Http01Challenges,
    trust: CertificateTrust,
    account: Option<Account>,
    /// A certificate issued but not yet written to `[tls]`'s files (the disk refused):
    /// written before anything else at the next check.
    unsaved: Option<(String, String)>,
}

impl AcmeTask {
    pub fn new(
        data_dir: &Path,
        config: &Config,
        store: Arc<dyn Store>,
        certificate: Arc<SwappableCertificate>,
        challenges: Http01Challenges,
        trust: CertificateTrust,
    ) -> AcmeTask {
        let lookups = lookups(config).unwrap_or_else(|e| {
            // The host name is still ordered; the per-domain names wait for DNS.
            warn!(error = %e, "no DNS resolver for ACME's name checks; set [dns] nameservers");
            Vec::new()
        });
        AcmeTask {
            hostname: config.hostname.to_ascii_lowercase(),
            acme: config.acme.clone(),
            ca_file: config.acme.ca_file_path(data_dir),
            cert_path: config.tls.certificate_path(data_dir),
            key_path: config.tls.private_key_path(data_dir),
            files: AcmeFiles::new(data_dir),
            store,
            lookups,
            public_addresses: config.dns.public_addresses.clone(),
            certificate,
            challenges,
            trust,
            account: None,
            unsaved: None,
        }
    }

    /// Checks at once, then every [`CHECK_INTERVAL`] (sooner after a failure, at once
    /// on `tern cert renew`), until `stop` turns true. An order in progress is
    /// abandoned at shutdown; the certificate in use is never touched by a failure.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut status = match self.files.read_status() {
            Ok(status) => status.unwrap_or_default(),
            Err(e) => {
                warn!(error = %e, "starting ACME with a fresh status");
                Status::default()
            }
        };
        status.pid = std::process::id();
        status.checks = 0;
        status.next_check = Some(unix_now());
        status.directory = self.acme.directory.clone();
        // At once, so `tern cert renew` knows a server runs while a first order is
        // still under way.
        if let Err(e) = self.files.write_status(&status) {
            warn!(error = %e, "cannot save the ACME status");
        }
        // Certificates are checked at start, whatever the last run planned.
        let mut next_check = tokio::time::Instant::now();
        loop {
            let request = self.files.take_request();
            if request.is_some() || tokio::time::Instant::now() >= next_check {
                let now = unix_now();
                let checked = tokio::select! {
                    checked = self.check(request.is_some(), &mut status) => checked,
                    _ = stop.changed() => break,
                };
                let wait = match checked {
                    Ok(outcome) => {
                        if let Outcome::Issued(info) = outcome {
                            status.last_issued = Some(unix_now());
                            status.issued_sha256 = Some(info.sha256);
                        }
                        status.failures = 0;
                        CHECK_INTERVAL
                    }
                    Err(e) => {
                        status.failures += 1;
                        let wait = retry_delay(status.failures);
                        warn!(
                            error = %e,
                            retry_in_minutes = wait.as_secs() / 60,
                            "could not get a certificate; the current one stays in use"
                        );
                        status.last_error = Some(StatusError {
                            at: now,
                            message: e.to_string(),
                        });
                        wait
                    }
                };
                status.last_check = Some(now);
                status.checks += 1;
                status.next_check = Some(unix_now() + wait.as_secs() as i64);
                if request.is_some() {
                    status.handled_request = request;
                }
                next_check = tokio::time::Instant::now() + wait;
                if let Err(e) = self.files.write_status(&status) {
                    warn!(error = %e, "cannot save the ACME status");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(REQUEST_POLL) => {}
                _ = stop.changed() => break,
            }
            if *stop.borrow() {
                break;
            }
        }
    }

    /// One check: renew if the certificate in use needs it (or `force`).
    pub async fn check(&mut self, force: bool, status: &mut Status) -> Result<Outcome, AcmeError> {
        if let Some((chain, key)) = self.unsaved.take() {
            self.save(&chain, &key)?;
        }
        let domains: Vec<String> = self.store.domains().await?.into_iter().map(|d| d.name).collect();
        let wanted = wanted_names(&self.hostname, &self.public_addresses, &domains, &self.lookups).await;
        for left_out in &wanted.left_out {
            info!(name = %left_out.name, reason = %left_out.reason, "left out of the certificate");
        }
        status.wanted = wanted.names.clone();
        status.left_out = wanted.left_out.clone();

        let current = inspect(&self.certificate.current().cert).ok();
        let reason = if force {
            Some("a renewal was asked for (tern cert renew)".to_string())
        } else {
            renewal_reason(current.as_ref(), &wanted.names, unix_now(), self.acme.renew_before_days)
        };
        let Some(reason) = reason else {
            return Ok(Outcome::Current);
        };
        info!(reason = %reason, names = %wanted.names.join(", "), "ordering a certificate");
        let (chain, key) = tokio::time::timeout(ORDER_TIMEOUT, self.order(&wanted.names))
            .await
            .map_err(|_| AcmeError::Timeout)??;

        let certified = tls::certified_key_from_pem(&chain, &key)?;
        let info = inspect(&certified.cert)?;
        let lacking: Vec<&str> = wanted
            .names
            .iter()
            .filter(|n| !info.names.contains(n))
            .map(String::as_str)
            .collect();
        if !lacking.is_empty() {
            return Err(AcmeError::Incomplete(lacking.join(", ")));
        }
        // In use first: a certificate the disk refused still serves until restart, and
        // is written at the next check.
        self.certificate.replace(certified);
        self.trust.set(true);
        status.issued_sha256 = Some(info.sha256.clone());
        if let Err(e) = self.save(&chain, &key) {
            self.unsaved = Some((chain, key));
            return Err(e);
        }
        info!(
            names = %info.names.join(", "),
            expires = %date(info.not_after),
            serial = %info.serial,
            "new certificate in use"
        );
        Ok(Outcome::Issued(info))
    }

    fn save(&self, chain: &str, key: &str) -> Result<(), AcmeError> {
        tls::write_certificate_files(&self.cert_path, &self.key_path, chain, key)?;
        Ok(())
    }

    /// The ACME account: loaded from `account.json`, or created (RFC 8555 §7.3) and
    /// saved there.
    async fn account(&mut self) -> Result<Account, AcmeError> {
        if let Some(account) = &self.account {
            return Ok(account.clone());
        }
        let directory = self.acme.directory.clone();
        let http = || AcmeHttp::new(self.ca_file.as_deref()).map(Box::new);
        let saved = self.files.read_account()?;
        let account = match saved {
            Some(saved) if saved.directory == directory => {
                let account = Account::builder_with_http(http()?)
                    .from_credentials(saved.credentials)
                    .await
                    .map_err(AcmeError::server(&directory, "refused the saved account"))?;
                if saved.contact != self.acme.contact {
                    // RFC 8555 §7.3.2: the contact is updated in place.
                    let contact = mailto(&self.acme.contact);
                    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
                    account
                        .update_contacts(&contacts)
                        .await
                        .map_err(AcmeError::server(&directory, "refused the new contact"))?;
                    self.files.write_account(&SavedAccount {
                        directory: directory.clone(),
                        contact: self.acme.contact.clone(),
                        credentials: saved_credentials(&self.files)?,
                    })?;
                }
                account
            }
            _ => {
                let contact = mailto(&self.acme.contact);
                let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
                let (account, credentials) = Account::builder_with_http(http()?)
                    .create(
                        &NewAccount {
                            contact: &contacts,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        directory.clone(),
                        None,
                    )
                    .await
                    .map_err(AcmeError::server(&directory, "refused a new account"))?;
                self.files.write_account(&SavedAccount {
                    directory: directory.clone(),
                    contact: self.acme.contact.clone(),
                    credentials,
                })?;
                info!(directory = %directory, "ACME account created");
                account
            }
        };
        self.account = Some(account.clone());
        Ok(account)
    }

    /// One order (RFC 8555 §7.4): HTTP-01 for each name not yet authorized, then a CSR
    /// with a new key. Returns the PEM chain and the PEM key.
    async fn order(&mut self, names: &[String]) -> Result<(String, String), AcmeError> {
        let account = self.account().await?;
        let directory = self.acme.directory.clone();
        let server = |doing| AcmeError::server(&directory, doing);
        let identifiers: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(server("refused the order"))?;

        let mut published = Published {
            challenges: &self.challenges,
            tokens: Vec::new(),
        };
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization.map_err(server("did not send an authorization"))?;
            let name = authorization.identifier().to_string();
            match authorization.status {
                // Validated for an earlier order of this account, still fresh.
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => {
                    return Err(AcmeError::Authorization {
                        name,
                        status: format!("{other:?}").to_lowercase(),
                    });
                }
            }
            let mut challenge = authorization
                .challenge(ChallengeType::Http01)
                .ok_or_else(|| AcmeError::NoHttp01(name.clone()))?;
            // RFC 8555 §8.3: served at /.well-known/acme-challenge/TOKEN.
            let key_authorization = challenge.key_authorization();
            published.insert(&challenge.token, key_authorization.as_str());
            challenge.set_ready().await.map_err(server("refused a challenge"))?;
        }

        let polling = RetryPolicy::new()
            .initial_delay(Duration::from_millis(500))
            .backoff(1.5)
            .timeout(Duration::from_secs(180));
        match order.poll_ready(&polling).await {
            Ok(OrderStatus::Ready) => {}
            Ok(_) | Err(instant_acme::Error::Api(_)) => {
                return Err(AcmeError::Validation(failed_names(&mut order).await));
            }
            Err(e) => return Err(server("did not finish validating")(e)),
        }
        drop(published);

        // A new key for every certificate: ECDSA P-256 (rcgen's default).
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(names.to_vec())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params.serialize_request(&key)?;
        order
            .finalize_csr(csr.der())
            .await
            .map_err(server("refused to finalize the order"))?;
        let chain = order
            .poll_certificate(&polling)
            .await
            .map_err(server("did not issue the certificate"))?;
        Ok((chain, key.serialize_pem()))
    }
}

/// Which names failed validation and why, from the authorizations (RFC 8555 §7.1.4:
/// an invalid authorization's challenge carries the error).
async fn failed_names(order: &mut Order) -> String {
    let mut failures = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authorization)) = authorizations.next().await {
        let name = authorization.identifier().to_string();
        let Ok(state) = authorization.refresh().await else {
            continue;
        };
        if state.status == AuthorizationStatus::Valid {
            continue;
        }
        let problem = state
            .challenges
            .iter()
            .find_map(|c| c.error.as_ref())
            .and_then(|p| p.detail.clone())
            .unwrap_or_else(|| format!("{:?}", state.status).to_lowercase());
        failures.push(format!("{name} ({problem})"));
    }
    if failures.is_empty() {
        "the order's names".into()
    } else {
        failures.join("; ")
    }
}

/// The saved credentials again (instant-acme's are not Clone).
fn saved_credentials(files: &AcmeFiles) -> Result<AccountCredentials, AcmeError> {
    files
        .read_account()?
        .map(|s| s.credentials)
        .ok_or_else(|| AcmeError::File {
            path: files.account_path(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "the account file went away"),
        })
}

/// RFC 8555 §7.3: contacts are URLs.
fn mailto(contact: &str) -> Vec<String> {
    if contact.is_empty() {
        Vec::new()
    } else {
        vec![format!("mailto:{contact}")]
    }
}

/// How long to wait after `failures` failures in a row: 5 minutes, doubling, at most
/// [`CHECK_INTERVAL`].
pub fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (FIRST_RETRY * 2u32.pow(doublings)).min(CHECK_INTERVAL)
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `2026-11-26 14:29 UTC`.
pub fn date(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| unix.to_string())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn info(names: &[&str], not_after: i64, self_signed: bool) -> CertificateInfo {
        CertificateInfo {
            names: names.iter().map(|n| n.to_string()).collect(),
            subject: "CN=mail.example.test".into(),
            issuer: if self_signed { "CN=mail.example.test" } else { "CN=CA" }.into(),
            not_before: 0,
            not_after,
            serial: "01".into(),
            self_signed,
            sha256: "00".into(),
        }
    }

    #[test]
    fn renewal_is_needed_for_missing_self_signed_incomplete_or_expiring_certificates() {
        let now = 1_800_000_000;
        let day = 86_400;
        let wanted = vec!["mail.example.test".to_string(), "autoconfig.example.test".to_string()];
        let good = info(&["mail.example.test", "autoconfig.example.test"], now + 60 * day, false);
        assert_eq!(renewal_reason(Some(&good), &wanted, now, 30), None);
        // Extra names on the certificate are no reason.
        assert_eq!(renewal_reason(Some(&good), &wanted[..1], now, 30), None);

        let reason = |cert: Option<&CertificateInfo>| renewal_reason(cert, &wanted, now, 30).expect("renew");
        assert!(reason(None).contains("no certificate"));
        assert!(reason(Some(&info(&["mail.example.test"], now + 600 * day, true))).contains("self-signed"));
        let lacking = reason(Some(&info(&["MAIL.example.test"], now + 60 * day, false)));
        assert_eq!(lacking, "the certificate lacks autoconfig.example.test");
        let expiring = info(&["mail.example.test", "autoconfig.example.test"], now + 29 * day, false);
        assert!(reason(Some(&expiring)).contains("expires on"));
        // A shorter window lets it stay.
        assert_eq!(renewal_reason(Some(&expiring), &wanted, now, 7), None);
        assert_eq!(renewal_due(&expiring, 7), now + 22 * day);
    }

    #[test]
    fn failures_back_off_from_five_minutes_to_the_check_interval() {
        assert_eq!(retry_delay(1), Duration::from_secs(300));
        assert_eq!(retry_delay(2), Duration::from_secs(600));
        assert_eq!(retry_delay(4), Duration::from_secs(2400));
        assert_eq!(retry_delay(9), CHECK_INTERVAL);
        assert_eq!(retry_delay(u32::MAX), CHECK_INTERVAL);
    }

    #[test]
    fn inspecting_a_self_signed_certificate() {
        let (cert, _key) = tls::self_signed_pem("mail.example.test").expect("generate");
        let info = inspect_pem(cert.as_bytes()).expect("inspect");
        assert!(info.self_signed);
        assert_eq!(info.names, vec!["mail.example.test", "localhost"]);
        assert!(info.not_after - info.not_before > 800 * 86_400);
        assert_eq!(info.sha256.len(), 64);
        assert!(inspect_pem(b"not pem").is_err());
        // A self-signed certificate is never trusted, whatever the status says.
        let chain: Vec<CertificateDer<'static>> = {
            use rustls_pki_types::pem::PemObject;
            CertificateDer::pem_slice_iter(cert.as_bytes())
                .map(|c| c.expect("pem"))
                .collect()
        };
        let status = Status {
            issued_sha256: Some(info.sha256.clone()),
            ..Status::default()
        };
        assert!(!is_trusted(&chain, "mail.example.test", Some(&status)));
    }

    #[tokio::test]
    async fn only_names_pointing_at_the_host_are_wanted() {
        let dns = tern_testkit::dns::TestDns::start().expect("DNS");
        let lookups = vec![Lookup::server(dns.addr()).expect("lookup")];
        dns.set_a(
            "mail.example.test",
            &[Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2)],
        );
        dns.set_a("autoconfig.example.test", &[Ipv4Addr::new(192, 0, 2, 2)]);
        dns.set_cname("autodiscover.example.test", "mail.example.test");
        dns.set_a(
            "mta-sts.example.test",
            &[Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(198, 51, 100, 7)],
        );
        dns.set_txt("autoconfig.other.test", &["v=nothing"]);
        let domains = vec!["Example.test".to_string(), "other.test".to_string()];
        let wanted = wanted_names("Mail.Example.Test", &[], &domains, &lookups).await;
        assert_eq!(
            wanted.names,
            vec![
                "mail.example.test",
                "autoconfig.example.test",
                "autodiscover.example.test"
            ]
        );
        let reasons: Vec<(&str, &str)> = wanted
            .left_out
            .iter()
            .map(|l| (l.name.as_str(), l.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            vec![
                (
                    "mta-sts.example.test",
                    "resolves to 192.0.2.1, 198.51.100.7, not to mail.example.test's 192.0.2.1, 192.0.2.2"
                ),
                ("autoconfig.other.test", "has no A or AAAA record"),
                ("autodiscover.other.test", "does not exist in DNS"),
                ("mta-sts.other.test", "does not exist in DNS"),
            ]
        );

        // A host name that does not resolve is still wanted (the order then says why it
        // fails); nothing can be compared with it.
        dns.remove("mail.example.test");
        let wanted = wanted_names("mail.example.test", &[], &domains[..1], &lookups).await;
        assert_eq!(wanted.names, vec!["mail.example.test"]);
        assert!(
            wanted.left_out[0].reason.contains("itself does not resolve"),
            "{wanted:?}"
        );

        // With [dns] public_addresses, names are compared with those instead.
        let public = [
            IpAddr::from(Ipv4Addr::new(192, 0, 2, 1)),
            IpAddr::from(Ipv4Addr::new(198, 51, 100, 7)),
        ];
        let wanted = wanted_names("mail.example.test", &public, &domains[..1], &lookups).await;
        assert_eq!(wanted.names, vec!["mail.example.test", "mta-sts.example.test"]);
        assert_eq!(
            wanted.left_out[0].reason,
            "resolves to 192.0.2.2, not to this server's 192.0.2.1, 198.51.100.7"
        );
    }

    #[test]
    fn published_challenges_go_when_the_order_ends() {
        let challenges = Http01Challenges::default();
        {
            let mut published = Published {
                challenges: &challenges,
                tokens: Vec::new(),
            };
            published.insert("token-1", "token-1.key");
            published.insert("token-2", "token-2.key");
            assert_eq!(challenges.get("token-2").as_deref(), Some("token-2.key"));
        }
        assert!(challenges.is_empty());
    }

    #[test]
    fn renewal_requests_are_taken_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = AcmeFiles::new(dir.path());
        assert_eq!(files.take_request(), None);
        let id = files.request_renewal().expect("request");
        assert!(files.renewal_requested());
        assert_eq!(files.take_request(), Some(id));
        assert!(!files.renewal_requested());
        assert_eq!(files.take_request(), None);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("acme"))
                .expect("dir")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        // A damaged status file is reported with its path, not taken as empty.
        std::fs::write(files.status_path(), "{").expect("write");
        let err = files.read_status().expect_err("damaged");
        assert!(err.to_string().contains("status.json is damaged"), "{err}");
    }

    #[test]
    fn a_first_start_with_acme_serves_a_temporary_certificate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::production("mail.example.test").expect("config");
        let certificate = initial_certificate(dir.path(), &config).expect("temporary");
        let info = inspect(&certificate.current().cert).expect("inspect");
        assert!(info.self_signed && info.names.contains(&"mail.example.test".to_string()));
        // Without ACME, missing files stop the start.
        config.acme.enabled = false;
        assert!(initial_certificate(dir.path(), &config).is_err());
    }
}
