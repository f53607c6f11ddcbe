//! Certificates: what one covers and until when, whether it must be renewed, whether
//! clients trust it, and the one served before the first order.

use super::*;

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
