//! TLS material: making a self-signed certificate for a test setup, and
//! loading the operator's certificate into a rustls server config whose
//! certificate can be replaced while it serves ([`SwappableCertificate`], which
//! ACME renewals use).
//!
//! Everything here uses rustls' `ring` provider explicitly rather than a
//! process-wide default, so no other crate's choice of provider (or lack of
//! one) changes what Tern's servers offer.

use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, SanType};
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// How long a generated certificate is valid. Apple's clients refuse TLS
/// server certificates valid for more than 825 days, even trusted by hand.
const SELF_SIGNED_VALIDITY_DAYS: u64 = 825;

/// What went wrong with TLS files or settings. Each message names the file
/// and says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS certificate {}: {source}; check that tls.certificate in tern.toml points at a PEM file", path.display())]
    ReadCertificate {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },

    #[error("{} holds no certificate; it should hold PEM blocks starting \"-----BEGIN CERTIFICATE-----\", this server's certificate first, then its intermediates", path.display())]
    NoCertificate { path: PathBuf },

    #[error("cannot read the TLS private key {}: {source}; check that tls.private_key in tern.toml points at a PEM file", path.display())]
    ReadPrivateKey {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },

    #[error("{} holds no private key; it should hold a PEM block starting \"-----BEGIN PRIVATE KEY-----\" (or RSA/EC PRIVATE KEY)", path.display())]
    NoPrivateKey { path: PathBuf },

    #[error("the certificate {} and the private key {} cannot be used together: {source}; check that the key belongs to the certificate (the first one in the file)", certificate.display(), private_key.display())]
    Unusable {
        certificate: PathBuf,
        private_key: PathBuf,
        source: rustls::Error,
    },

    #[error("cannot make a certificate for {hostname:?}: {source}")]
    Generate { hostname: String, source: rcgen::Error },

    #[error("cannot write {}: {source}; check that the folder exists and is writable", path.display())]
    Write { path: PathBuf, source: std::io::Error },

    #[error("the ring provider refused rustls' default protocol versions: {0}")]
    Provider(rustls::Error),

    #[error("unusable certificate material: {0}")]
    Pem(String),
}

/// Makes a self-signed certificate for `hostname` (also valid for
/// "localhost", 127.0.0.1 and ::1, so clients on the same machine can
/// connect by any of those) and writes it and its key as PEM.
///
/// The key file is created with mode 0600. Both files are written to a
/// temporary name, synced, then renamed, so a crash never leaves half a key
/// where the server will look for one. Missing parent folders are created.
pub fn generate_self_signed(hostname: &str, cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    let (cert, key) = self_signed_pem(hostname)?;
    write_atomically(key_path, key.as_bytes(), 0o600)?;
    write_atomically(cert_path, cert.as_bytes(), 0o644)?;
    Ok(())
}

/// A self-signed certificate for `hostname` (and "localhost", 127.0.0.1, ::1) and its
/// private key, as PEM (certificate, key), kept in memory: what [`generate_self_signed`]
/// writes, and what a server whose ACME certificate has not come yet presents.
pub fn self_signed_pem(hostname: &str) -> Result<(String, String), TlsError> {
    let generate = |source| TlsError::Generate {
        hostname: hostname.to_string(),
        source,
    };

    let mut params = CertificateParams::default();
    let mut names = vec![hostname.to_string()];
    if hostname != "localhost" {
        names.push("localhost".to_string());
    }
    let mut sans = Vec::with_capacity(names.len() + 2);
    for name in &names {
        sans.push(SanType::DnsName(name.clone().try_into().map_err(generate)?));
    }
    sans.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    sans.push(SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    params.subject_alt_names = sans;
    params.distinguished_name.push(DnType::CommonName, hostname);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Tern self-signed");
    // A leaf for a server: what the key may do, and that it is for TLS
    // servers (Apple's clients insist on serverAuth).
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    // Start yesterday so a client whose clock lags a little still accepts it.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let today = now.as_secs() / 86_400;
    let (y, m, d) = civil_from_days(today.saturating_sub(1));
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = civil_from_days(today + SELF_SIGNED_VALIDITY_DAYS - 1);
    params.not_after = rcgen::date_time_ymd(y, m, d);

    // ECDSA P-256: rcgen's default, small and accepted by every current client.
    let key = KeyPair::generate().map_err(generate)?;
    let cert = params.self_signed(&key).map_err(generate)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Loads the certificate chain and private key into a rustls server config
/// built on the ring provider, with rustls' safe defaults (TLS 1.2 and 1.3).
/// The certificate is a [`SwappableCertificate`] fixed for the config's life; use
/// [`SwappableCertificate::load`] and [`server_config`] to replace it later.
pub fn load_server_config(cert_path: &Path, key_path: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    server_config(SwappableCertificate::load(cert_path, key_path)?)
}

/// A rustls server config on the ring provider, with rustls' safe defaults (TLS 1.2
/// and 1.3), that presents whatever certificate `certificate` holds at the moment of
/// each handshake. Every listener and every STARTTLS upgrade shares one such config,
/// so replacing the certificate reaches them all at once.
pub fn server_config(certificate: Arc<SwappableCertificate>) -> Result<Arc<ServerConfig>, TlsError> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Provider)?
        .with_no_client_auth()
        .with_cert_resolver(certificate);
    Ok(Arc::new(config))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate the server presents, replaceable while it serves: an ACME renewal
/// puts the new one in with [`SwappableCertificate::replace`], and every handshake
/// from then on (on every port, and every STARTTLS) gets it. Sessions already
/// established keep the one they started with.
pub struct SwappableCertificate {
    current: RwLock<Arc<CertifiedKey>>,
}

impl std::fmt::Debug for SwappableCertificate {
    // The private key stays out of debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwappableCertificate")
            .field("chain_len", &self.current().cert.len())
            .finish()
    }
}

impl SwappableCertificate {
    /// Holds `key` until replaced.
    pub fn new(key: CertifiedKey) -> Arc<SwappableCertificate> {
        Arc::new(SwappableCertificate {
            current: RwLock::new(Arc::new(key)),
        })
    }

    /// Reads the PEM chain and key from disk; errors name the file at fault.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<SwappableCertificate>, TlsError> {
        Ok(Self::new(load_certified_key(cert_path, key_path)?))
    }

    /// What handshakes present now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Presents `key` from the next handshake on.
    pub fn replace(&self, key: CertifiedKey) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
    }
}

impl ResolvesServerCert for SwappableCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // One certificate for every name: it carries every name Tern answers to.
        Some(self.current())
    }
}

/// Reads a PEM certificate chain and its private key from disk into a key rustls
/// can serve, checking that the key belongs to the first certificate.
pub fn load_certified_key(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
    let read_cert = |source| TlsError::ReadCertificate {
        path: cert_path.to_path_buf(),
        source,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(read_cert)?
        .collect::<Result<_, _>>()
        .map_err(read_cert)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_path_buf(),
        });
    }

    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|source| match source {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            path: key_path.to_path_buf(),
        },
        source => TlsError::ReadPrivateKey {
            path: key_path.to_path_buf(),
            source,
        },
    })?;

    CertifiedKey::from_der(certs, key, &provider()).map_err(|source| TlsError::Unusable {
        certificate: cert_path.to_path_buf(),
        private_key: key_path.to_path_buf(),
        source,
    })
}

/// A PEM chain and PEM key held in memory (a certificate just issued, or a
/// placeholder) as a key rustls can serve; the key must belong to the first
/// certificate.
pub fn certified_key_from_pem(chain_pem: &str, key_pem: &str) -> Result<CertifiedKey, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem(format!("the certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::Pem("the certificate chain holds no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| TlsError::Pem(format!("the private key: {e}")))?;
    CertifiedKey::from_der(certs, key, &provider())
        .map_err(|e| TlsError::Pem(format!("the key does not fit the certificate: {e}")))
}

/// Writes a certificate chain and its private key where the server reads them
/// (`[tls]`), each atomically: the key (mode 0600) first, then the chain. A crash
/// between the two renames leaves a key that does not fit the old chain; the caller
/// must cope with that at the next start (ACME does: it orders again).
pub fn write_certificate_files(
    cert_path: &Path,
    key_path: &Path,
    chain_pem: &str,
    key_pem: &str,
) -> Result<(), TlsError> {
    write_atomically(key_path, key_pem.as_bytes(), 0o600)?;
    write_atomically(cert_path, chain_pem.as_bytes(), 0o644)
}

/// Writes `contents` to `path` atomically (temporary file in the same folder with
/// `mode`, synced, renamed, folder synced): other files Tern keeps beside its
/// certificates (ACME's account key and state) use it too.
pub fn write_file_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    write_atomically(path, contents, mode)
}

/// Writes `contents` to `path` by way of a temporary file in the same
/// folder created with `mode`, synced before the rename (and the folder
/// after it) so the file is complete and durable once this returns.
fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let write_err = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(write_err)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));

    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let result = (|| {
        let mut file = options.open(&tmp)?;
        // The mode above applies only when the file is created; a stale
        // temporary left by a crash could be wider, so set it again.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        #[cfg(unix)]
        fs::File::open(&dir)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(write_err)
}

/// The (year, month, day) `days` days after 1970-01-01 (Howard Hinnant's
/// civil_from_days). Spares a dependency on a date crate for two dates.
fn civil_from_days(days: u64) -> (i32, u8, u8) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn generated() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = dir.path().join("tls/cert.pem");
        let key = dir.path().join("tls/key.pem");
        generate_self_signed("mail.example.test", &cert, &key).expect("generate");
        (dir, cert, key)
    }

    /// A client config that trusts exactly the certificate in `cert`.
    fn client_trusting(cert: &Path) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(cert).expect("open cert") {
            roots.add(c.expect("parse cert")).expect("add root");
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }

    #[test]
    fn key_file_is_private_and_both_files_are_pem() {
        let (_dir, cert, key) = generated();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&key).expect("key").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "key mode {mode:o}");
        }
        let cert_text = fs::read_to_string(&cert).expect("cert");
        assert!(cert_text.starts_with("-----BEGIN CERTIFICATE-----"));
        let key_text = fs::read_to_string(&key).expect("key");
        assert!(key_text.starts_with("-----BEGIN PRIVATE KEY-----"));
        // No temporaries left beside them.
        let names: Vec<_> = fs::read_dir(cert.parent().expect("dir"))
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn regenerating_replaces_the_pair() {
        let (_dir, cert, key) = generated();
        let first = fs::read(&key).expect("key");
        generate_self_signed("mail.example.test", &cert, &key).expect("again");
        assert_ne!(first, fs::read(&key).expect("key"));
        load_server_config(&cert, &key).expect("new pair loads");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
    }

    #[test]
    fn missing_certificate_names_the_file() {
        let (dir, _cert, key) = generated();
        let missing = dir.path().join("nope.pem");
        let err = load_server_config(&missing, &key).expect_err("missing");
        let message = err.to_string();
        assert!(matches!(err, TlsError::ReadCertificate { .. }));
        assert!(
            message.contains("nope.pem") && message.contains("tls.certificate"),
            "{message}"
        );
    }

    #[test]
    fn key_in_place_of_certificate_is_explained() {
        let (_dir, _cert, key) = generated();
        let err = load_server_config(&key, &key).expect_err("no cert in a key file");
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
        assert!(err.to_string().contains("BEGIN CERTIFICATE"), "{err}");
    }

    #[test]
    fn certificate_in_place_of_key_is_explained() {
        let (_dir, cert, _key) = generated();
        let err = load_server_config(&cert, &cert).expect_err("no key in a cert file");
        assert!(matches!(err, TlsError::NoPrivateKey { .. }), "{err}");
        assert!(err.to_string().contains("cert.pem holds no private key"), "{err}");
    }

    #[test]
    fn key_of_another_certificate_is_refused() {
        let (_dir, cert, _key) = generated();
        let (_dir2, _cert2, other_key) = generated();
        let err = load_server_config(&cert, &other_key).expect_err("mismatch");
        assert!(matches!(err, TlsError::Unusable { .. }), "{err}");
        assert!(err.to_string().contains("key belongs to the certificate"), "{err}");
    }

    #[tokio::test]
    async fn handshake_with_a_client_that_trusts_the_generated_certificate() {
        let (_dir, cert, key) = generated();
        let server_config = load_server_config(&cert, &key).expect("load");
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            for _ in 0..3 {
                let (tcp, _) = listener.accept().await.expect("accept");
                let mut tls = acceptor.accept(tcp).await.expect("server handshake");
                let mut buf = [0u8; 4];
                tls.read_exact(&mut buf).await.expect("read");
                tls.write_all(&buf).await.expect("write");
                tls.shutdown().await.expect("close");
            }
        });

        let connector = tokio_rustls::TlsConnector::from(client_trusting(&cert));
        // Every name the certificate was made for is accepted.
        for name in ["mail.example.test", "localhost", "127.0.0.1"] {
            let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let server_name = rustls_pki_types::ServerName::try_from(name.to_string()).expect("name");
            let mut tls = connector.connect(server_name, tcp).await.expect("client handshake");
            tls.write_all(b"ping").await.expect("write");
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await.expect("read");
            assert_eq!(&buf, b"ping");
        }
        server.await.expect("server");
    }

    /// A TLS client connection to `addr` trusting the PEM files `trusting`.
    async fn connect(
        addr: std::net::SocketAddr,
        trusting: &[&Path],
    ) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in trusting {
            for c in CertificateDer::pem_file_iter(cert).expect("open cert") {
                roots.add(c.expect("parse cert")).expect("add root");
            }
        }
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let name = rustls_pki_types::ServerName::try_from("mail.example.test").expect("name");
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .expect("handshake")
    }

    /// The DER of the certificate the server presented on `tls`.
    fn presented(tls: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> Vec<u8> {
        tls.get_ref().1.peer_certificates().expect("certificates")[0].to_vec()
    }

    #[tokio::test]
    async fn a_replaced_certificate_is_presented_to_new_connections_only() {
        let (_dir, cert, key) = generated();
        let (_dir2, cert2, key2) = generated();
        let swappable = SwappableCertificate::load(&cert, &key).expect("load");
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config(swappable.clone()).expect("config"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        // An echo server: every connection answers what it reads until closed.
        let server = tokio::spawn(async move {
            let mut sessions = tokio::task::JoinSet::new();
            for _ in 0..3 {
                let (tcp, _) = listener.accept().await.expect("accept");
                let acceptor = acceptor.clone();
                sessions.spawn(async move {
                    let mut tls = acceptor.accept(tcp).await.expect("server handshake");
                    let mut buf = [0u8; 4];
                    while tls.read_exact(&mut buf).await.is_ok() {
                        tls.write_all(&buf).await.expect("write");
                    }
                });
            }
            while sessions.join_next().await.is_some() {}
        });
        let first = CertificateDer::from_pem_file(&cert).expect("pem").to_vec();
        let second = CertificateDer::from_pem_file(&cert2).expect("pem").to_vec();

        let mut before = connect(addr, &[&cert, &cert2]).await;
        assert_eq!(presented(&before), first);
        swappable.replace(load_certified_key(&cert2, &key2).expect("second"));
        let mut after = connect(addr, &[&cert, &cert2]).await;
        assert_eq!(presented(&after), second);
        assert_eq!(presented(&connect(addr, &[&cert, &cert2]).await), second);
        // The session made before the swap goes on.
        for tls in [&mut before, &mut after] {
            tls.write_all(b"ping").await.expect("write");
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await.expect("read");
            assert_eq!(&buf, b"ping");
        }
        drop((before, after));
        server.await.expect("server");
    }

    #[test]
    fn pem_in_memory_must_fit_together() {
        let (cert, key) = self_signed_pem("mail.example.test").expect("generate");
        let (_, other_key) = self_signed_pem("mail.example.test").expect("generate");
        certified_key_from_pem(&cert, &key).expect("a matching pair");
        let err = certified_key_from_pem(&cert, &other_key).expect_err("a foreign key");
        assert!(err.to_string().contains("does not fit"), "{err}");
        let err = certified_key_from_pem(&key, &key).expect_err("no certificate");
        assert!(err.to_string().contains("no certificate"), "{err}");
    }

    #[tokio::test]
    async fn client_refuses_a_name_the_certificate_lacks() {
        let (_dir, cert, key) = generated();
        let acceptor = tokio_rustls::TlsAcceptor::from(load_server_config(&cert, &key).expect("load"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            assert!(acceptor.accept(tcp).await.is_err());
        });
        let connector = tokio_rustls::TlsConnector::from(client_trusting(&cert));
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let name = rustls_pki_types::ServerName::try_from("other.example").expect("name");
        assert!(connector.connect(name, tcp).await.is_err());
        server.await.expect("server");
    }
}

/// Debian's bundle of the system's trusted CAs (package ca-certificates).
pub const SYSTEM_CAS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A TLS client config that verifies servers against the system's CAs plus the
/// given extra CA files (a private CA). Errors name the file that could not be read.
pub fn client_config(extra_ca_files: &[String]) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let mut files = vec![SYSTEM_CAS.to_string()];
    files.extend(extra_ca_files.iter().cloned());
    for file in &files {
        let certs = match CertificateDer::pem_file_iter(file) {
            Ok(certs) => certs,
            // Without the system bundle only the private CA is trusted.
            Err(_) if file == SYSTEM_CAS => continue,
            Err(e) => return Err(format!("cannot read the CA file {file}: {e}")),
        };
        for cert in certs.flatten() {
            let _ = roots.add(cert);
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A TLS client config that encrypts without checking who is on the other end:
/// opportunistic STARTTLS between MTAs (RFC 7435 §1.3, RFC 3207 §4.1). It defeats
/// passive eavesdropping only; MTA-STS (RFC 8461) or DANE (RFC 7672) are what make
/// server-to-server TLS verified, and neither is implemented yet.
pub fn opportunistic_client_config() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Arc::new(config)
}

/// Accepts any certificate, but still checks the handshake signatures, so the
/// session is encrypted to whoever holds the presented key.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
