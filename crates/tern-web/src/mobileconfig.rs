//! Apple configuration profiles (`.mobileconfig`) for iPhone, iPad and macOS Mail: one
//! `com.apple.mail.managed` payload with the IMAP (or POP3) and SMTP settings of an
//! address. Opening it on the device installs the account; the password is asked for
//! then and is never in the profile.
//!
//! When the server's TLS certificate is trusted (its chain verifies against the system's
//! CAs for this host's name), the profile is signed with that certificate as CMS
//! SignedData (RFC 5652 §5), so the device shows it as "Verified" with the host's name.
//! A self-signed or otherwise untrusted certificate would only make the profile look
//! worse than an unsigned one, so the profile is then served unsigned (the device says
//! "Unverified"; Apple accepts it).
//!
//! The signature is made by rustls' ring-backed keys (the same code that signs the TLS
//! handshakes with that key: constant-time, RSA, ECDSA P-256 and P-384), wrapped for the
//! RustCrypto `cms` crate's `SignedDataBuilder`, which assembles the structure.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cms::builder::{SignedDataBuilder, SignerInfoBuilder};
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::ContentInfo;
use cms::signed_data::{EncapsulatedContentInfo, SignerIdentifier};
use der::asn1::{BitString, OctetString};
use der::{Any, Decode, Encode};
use plist::{Dictionary, Value};
use rustls::SignatureScheme;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use spki::{AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier, ObjectIdentifier, SignatureBitStringEncoding};
use tern_net::endpoints::{ClientEndpoints, Endpoint, Protocol};
use tracing::{debug, warn};

use crate::AppState;
use crate::autoconfig::{plain, target};

/// The profile's path.
pub const PATH: &str = "/setup/apple.mobileconfig";
/// Its media type: Safari and macOS hand it to the profile installer.
pub const CONTENT_TYPE: &str = "application/x-apple-aspen-config";

pub fn routes() -> Router<AppState> {
    Router::new().route(PATH, get(download))
}

#[derive(Debug, Default, Deserialize)]
struct Params {
    email: Option<String>,
}

async fn download(State(app): State<AppState>, headers: HeaderMap, Query(params): Query<Params>) -> Response {
    let Some(email) = params.email.filter(|e| !e.trim().is_empty()) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "a profile is made for one address: add ?email=you@example.org\n".into(),
        );
    };
    let target = match target(&app, &headers, Some(&email)).await {
        Ok(target) => target,
        Err(e) => return e.into_response(),
    };
    let address = target.address.unwrap_or(email);
    let endpoints = app.endpoints();
    let profile = match profile(&endpoints, &address, &target.domain) {
        Ok(profile) => profile,
        Err(e) => return plain(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    };
    let body = match signing_identity(&app.config) {
        Ok(identity) => match identity.sign(&profile) {
            Ok(signed) => signed,
            Err(e) => {
                warn!(error = %e, "Apple profile: signing failed; serving it unsigned");
                profile
            }
        },
        Err(why) => {
            debug!(reason = %why, "Apple profile served unsigned");
            profile
        }
    };
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    let file = format!("attachment; filename=\"{}.mobileconfig\"", target.domain);
    if let Ok(value) = HeaderValue::from_str(&file) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

/// Why no profile can be made.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("this server has no IMAP or POP3 port configured, so there is nothing to set a mail app up with")]
    NoIncoming,
    #[error("this server has no submission port configured, so a mail app could not send")]
    NoOutgoing,
    #[error("cannot write the profile: {0}")]
    Write(#[from] plist::Error),
}

/// `mail.example.org` → `org.example.mail`: the reverse-DNS prefix of identifiers.
fn reverse_dns(host: &str) -> String {
    let labels: Vec<&str> = host.split('.').filter(|l| !l.is_empty()).rev().collect();
    if labels.is_empty() {
        "tern".into()
    } else {
        labels.join(".")
    }
}

/// A random (version 4) UUID, upper-case as Apple writes them.
fn random_uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode_upper(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The profile's identifier: the same for the same address and host every time, so
/// installing a newer profile replaces the old one instead of adding a second account.
/// The address is hashed (identifiers are shown in device management tools and may
/// not hold `@`).
pub fn payload_identifier(host: &str, address: &str) -> String {
    let digest = Sha256::digest(format!("{}\n{}", address.to_lowercase(), host.to_lowercase()).as_bytes());
    format!("{}.tern.mail.{}", reverse_dns(host), &hex::encode(digest)[..20])
}

/// The profile as XML property list: a `Configuration` holding one
/// `com.apple.mail.managed` payload. Incoming: IMAP if offered, else POP3; the endpoint
/// recommended for each (implicit TLS where offered, RFC 8314 §3). `…UseSSL` is true for
/// both TLS modes: Apple's Mail then uses TLS on implicit-TLS ports and STARTTLS on the
/// others, and never sends the password in clear.
pub fn profile(endpoints: &ClientEndpoints, address: &str, domain: &str) -> Result<Vec<u8>, ProfileError> {
    let incoming = endpoints
        .preferred(Protocol::Imap)
        .or_else(|| endpoints.preferred(Protocol::Pop3))
        .ok_or(ProfileError::NoIncoming)?;
    let outgoing = endpoints
        .preferred(Protocol::Submission)
        .ok_or(ProfileError::NoOutgoing)?;
    let host = &endpoints.hostname;
    let identifier = payload_identifier(host, address);
    let string = |s: &str| Value::String(s.to_string());
    let port = |e: &Endpoint| Value::Integer(i64::from(e.port).into());

    let mut mail = Dictionary::new();
    let account_type = if incoming.protocol == Protocol::Imap {
        "EmailTypeIMAP"
    } else {
        "EmailTypePOP"
    };
    mail.insert("EmailAccountDescription".into(), string(&format!("{domain} mail")));
    mail.insert("EmailAccountType".into(), string(account_type));
    mail.insert("EmailAddress".into(), string(address));
    mail.insert("IncomingMailServerAuthentication".into(), string("EmailAuthPassword"));
    mail.insert("IncomingMailServerHostName".into(), string(host));
    mail.insert("IncomingMailServerPortNumber".into(), port(&incoming));
    mail.insert("IncomingMailServerUseSSL".into(), Value::Boolean(true));
    mail.insert("IncomingMailServerUsername".into(), string(address));
    mail.insert("OutgoingMailServerAuthentication".into(), string("EmailAuthPassword"));
    mail.insert("OutgoingMailServerHostName".into(), string(host));
    mail.insert("OutgoingMailServerPortNumber".into(), port(&outgoing));
    mail.insert("OutgoingMailServerUseSSL".into(), Value::Boolean(true));
    mail.insert("OutgoingMailServerUsername".into(), string(address));
    mail.insert("OutgoingPasswordSameAsIncomingPassword".into(), Value::Boolean(true));
    mail.insert("PreventMove".into(), Value::Boolean(false));
    mail.insert("PreventAppSheet".into(), Value::Boolean(false));
    mail.insert("SMIMEEnabled".into(), Value::Boolean(false));
    mail.insert("PayloadType".into(), string("com.apple.mail.managed"));
    mail.insert("PayloadVersion".into(), Value::Integer(1.into()));
    mail.insert("PayloadIdentifier".into(), string(&format!("{identifier}.email")));
    mail.insert("PayloadUUID".into(), string(&random_uuid()));
    mail.insert("PayloadDisplayName".into(), string(&format!("Mail: {address}")));
    mail.insert(
        "PayloadDescription".into(),
        string(&format!("The mail account {address} on {host}")),
    );

    let mut top = Dictionary::new();
    top.insert("PayloadContent".into(), Value::Array(vec![Value::Dictionary(mail)]));
    top.insert("PayloadDisplayName".into(), string(&format!("{address} mail")));
    top.insert(
        "PayloadDescription".into(),
        string(&format!(
            "Sets up {address} in Mail. You will be asked for your password; it is not stored in this profile."
        )),
    );
    top.insert("PayloadIdentifier".into(), string(&identifier));
    top.insert("PayloadOrganization".into(), string(domain));
    top.insert("PayloadRemovalDisallowed".into(), Value::Boolean(false));
    top.insert("PayloadType".into(), string("Configuration"));
    top.insert("PayloadUUID".into(), string(&random_uuid()));
    top.insert("PayloadVersion".into(), Value::Integer(1.into()));

    let mut out = Vec::new();
    Value::Dictionary(top).to_writer_xml(&mut out)?;
    out.push(b'\n');
    Ok(out)
}

// --- Signing --------------------------------------------------------------------------------

/// Why a profile is served unsigned (logged at debug level; never an error for the
/// user).
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("no TLS certificate is configured")]
    NoCertificate,
    #[error("cannot read {}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error("the certificate is not trusted for {hostname} by the CAs in {}: {reason}", cas.display())]
    Untrusted {
        hostname: String,
        cas: PathBuf,
        reason: String,
    },
    #[error("the private key does not belong to the certificate")]
    KeyMismatch,
    #[error("the key's type cannot sign profiles (RSA, ECDSA P-256 and P-384 can)")]
    UnsupportedKey,
    #[error("cannot build the signature: {0}")]
    Build(String),
}

/// The certificate chain and key that sign profiles.
pub struct SigningIdentity {
    chain: Vec<CertificateDer<'static>>,
    signer: ProfileSigner,
}

/// The identity to sign with, if the configured certificate is trusted for this host
/// by the configured CA bundle (the system's by default). Read on each call, so a
/// renewed certificate is used as soon as its files are replaced.
pub fn signing_identity(config: &crate::WebConfig) -> Result<SigningIdentity, SigningError> {
    let (Some(cert_path), Some(key_path)) = (&config.tls_certificate, &config.tls_private_key) else {
        return Err(SigningError::NoCertificate);
    };
    load_identity(cert_path, key_path, &config.trusted_cas, &config.hostname)
}

fn read_error(path: &Path, reason: impl ToString) -> SigningError {
    SigningError::Read {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Reads and checks a certificate chain and its key (see [`signing_identity`]).
pub fn load_identity(
    cert_path: &Path,
    key_path: &Path,
    cas: &Path,
    hostname: &str,
) -> Result<SigningIdentity, SigningError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| read_error(cert_path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| read_error(cert_path, e))?;
    let Some((leaf, intermediates)) = chain.split_first() else {
        return Err(read_error(cert_path, "it holds no certificate"));
    };

    let mut roots = rustls::RootCertStore::empty();
    // A block that does not parse, or a certificate webpki cannot use, is skipped: the
    // rest of the bundle still counts.
    for ca in CertificateDer::pem_file_iter(cas)
        .map_err(|e| read_error(cas, e))?
        .flatten()
    {
        let _ = roots.add(ca);
    }
    let untrusted = |reason: String| SigningError::Untrusted {
        hostname: hostname.to_string(),
        cas: cas.to_path_buf(),
        reason,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| untrusted(e.to_string()))?;
    let name = ServerName::try_from(hostname.to_string()).map_err(|e| untrusted(e.to_string()))?;
    rustls::client::danger::ServerCertVerifier::verify_server_cert(
        verifier.as_ref(),
        leaf,
        intermediates,
        &name,
        &[],
        UnixTime::now(),
    )
    .map_err(|e| untrusted(e.to_string()))?;

    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| read_error(key_path, e))?;
    let key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| read_error(key_path, e))?;
    rustls::sign::CertifiedKey::new(chain.clone(), key.clone())
        .keys_match()
        .map_err(|_| SigningError::KeyMismatch)?;
    let signer = ProfileSigner::new(key.as_ref()).ok_or(SigningError::UnsupportedKey)?;
    Ok(SigningIdentity { chain, signer })
}

// OIDs of RFC 5652's and RFC 5754's / RFC 5758's algorithms.
const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const ID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");

/// A rustls signing key, as the `cms` builder wants a signer.
struct ProfileSigner {
    signer: Box<dyn rustls::sign::Signer>,
    /// The digest of the content (RFC 5652 §5.4) and the signature algorithm.
    digest: ObjectIdentifier,
    algorithm: ObjectIdentifier,
}

impl ProfileSigner {
    /// The key's signer for the first of the schemes profiles can be signed with.
    fn new(key: &dyn rustls::sign::SigningKey) -> Option<ProfileSigner> {
        let signer = key.choose_scheme(&[
            SignatureScheme::ECDSA_NISTP256_SHA256,
            SignatureScheme::ECDSA_NISTP384_SHA384,
            SignatureScheme::RSA_PKCS1_SHA256,
        ])?;
        let (digest, algorithm) = match signer.scheme() {
            SignatureScheme::ECDSA_NISTP256_SHA256 => (ID_SHA256, ECDSA_WITH_SHA256),
            SignatureScheme::ECDSA_NISTP384_SHA384 => (ID_SHA384, ECDSA_WITH_SHA384),
            SignatureScheme::RSA_PKCS1_SHA256 => (ID_SHA256, SHA256_WITH_RSA),
            _ => return None,
        };
        Some(ProfileSigner {
            signer,
            digest,
            algorithm,
        })
    }
}

/// A signature as produced: the DER `ECDSA-Sig-Value` or the RSA block.
struct RawSignature(Vec<u8>);

impl SignatureBitStringEncoding for RawSignature {
    fn to_bitstring(&self) -> der::Result<BitString> {
        BitString::from_bytes(&self.0)
    }
}

impl signature::Keypair for ProfileSigner {
    // The certificate carries the public key; the builder needs none of its own.
    type VerifyingKey = ();
    fn verifying_key(&self) {}
}

impl DynSignatureAlgorithmIdentifier for ProfileSigner {
    fn signature_algorithm_identifier(&self) -> spki::Result<AlgorithmIdentifierOwned> {
        // RFC 4055 §5: sha256WithRSAEncryption takes NULL parameters; RFC 5758 §3.2:
        // the ECDSA ones take none.
        let parameters = (self.algorithm == SHA256_WITH_RSA).then(|| Any::from(der::asn1::Null));
        Ok(AlgorithmIdentifierOwned {
            oid: self.algorithm,
            parameters,
        })
    }
}

impl signature::Signer<RawSignature> for ProfileSigner {
    fn try_sign(&self, message: &[u8]) -> Result<RawSignature, signature::Error> {
        self.signer
            .sign(message)
            .map(RawSignature)
            .map_err(signature::Error::from_source)
    }
}

impl SigningIdentity {
    /// `content` wrapped in CMS SignedData (RFC 5652 §5.1): the content itself inside
    /// (id-data, so the device reads it from the signature), signed attributes with the
    /// content type, its digest and the signing time (§5.3, §11), the signer named by
    /// the certificate's issuer and serial number, and the whole chain included so the
    /// device can build the path to its trusted root. DER-encoded `ContentInfo`.
    pub fn sign(&self, content: &[u8]) -> Result<Vec<u8>, SigningError> {
        let build = |e: &dyn std::fmt::Display| SigningError::Build(e.to_string());
        let certificates: Vec<x509_cert::Certificate> = self
            .chain
            .iter()
            .map(|c| x509_cert::Certificate::from_der(c.as_ref()))
            .collect::<Result<_, _>>()
            .map_err(|e| build(&e))?;
        let leaf = certificates.first().ok_or_else(|| build(&"no certificate"))?;
        let econtent = Any::new(
            der::Tag::OctetString,
            OctetString::new(content).map_err(|e| build(&e))?.as_bytes(),
        )
        .map_err(|e| build(&e))?;
        let content_info = EncapsulatedContentInfo {
            econtent_type: ID_DATA,
            econtent: Some(econtent),
        };
        let digest = AlgorithmIdentifierOwned {
            oid: self.signer.digest,
            parameters: None,
        };
        let sid = SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: leaf.tbs_certificate.issuer.clone(),
            serial_number: leaf.tbs_certificate.serial_number.clone(),
        });
        let mut signer_info =
            SignerInfoBuilder::new(&self.signer, sid, digest.clone(), &content_info, None).map_err(|e| build(&e))?;
        signer_info
            .add_signed_attribute(cms::builder::create_signing_time_attribute().map_err(|e| build(&e))?)
            .map_err(|e| build(&e))?;
        let mut builder = SignedDataBuilder::new(&content_info);
        builder.add_digest_algorithm(digest).map_err(|e| build(&e))?;
        for certificate in certificates {
            builder
                .add_certificate(CertificateChoices::Certificate(certificate))
                .map_err(|e| build(&e))?;
        }
        builder
            .add_signer_info::<ProfileSigner, RawSignature>(signer_info)
            .map_err(|e| build(&e))?;
        let signed: ContentInfo = builder.build().map_err(|e| build(&e))?;
        signed.to_der().map_err(|e| build(&e))
    }
}
