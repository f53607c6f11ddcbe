//! TLS material: making a self-signed certificate for a test setup, and
//! loading the operator's certificate into a rustls server config.
//!
//! Everything here uses rustls' `ring` provider explicitly rather than a
//! process-wide default, so no other crate's choice of provider (or lack of
//! one) changes what Tern's servers offer.

use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, SanType};
use rustls::ServerConfig;
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
}

/// Makes a self-signed certificate for `hostname` (also valid for
/// "localhost", 127.0.0.1 and ::1, so clients on the same machine can
/// connect by any of those) and writes it and its key as PEM.
///
/// The key file is created with mode 0600. Both files are written to a
/// temporary name, synced, then renamed, so a crash never leaves half a key
/// where the server will look for one. Missing parent folders are created.
pub fn generate_self_signed(hostname: &str, cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
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

    write_atomically(key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_atomically(cert_path, cert.pem().as_bytes(), 0o644)?;
    Ok(())
}

/// Loads the certificate chain and private key into a rustls server config
/// built on the ring provider, with rustls' safe defaults (TLS 1.2 and 1.3).
pub fn load_server_config(cert_path: &Path, key_path: &Path) -> Result<Arc<ServerConfig>, TlsError> {
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

    let unusable = |source| TlsError::Unusable {
        certificate: cert_path.to_path_buf(),
        private_key: key_path.to_path_buf(),
        source,
    };
    // with_single_cert checks that the key matches the first certificate.
    let config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(unusable)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(unusable)?;
    Ok(Arc::new(config))
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
