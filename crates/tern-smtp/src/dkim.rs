//! DKIM keys and signing (RFC 6376; Ed25519 per RFC 8463).
//!
//! `tern domain add` gives every domain two keys, RSA-2048 and Ed25519, under selectors
//! named after the date they were made (`tern202611r`, `tern202611e`), so a rotation
//! never reuses a selector whose old record may still be cached. Outgoing mail is
//! signed with every active key of the From domain: receivers that know Ed25519 use it,
//! the others fall back to RSA (RFC 8463 §4 recommends signing with both).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer};
use tern_store::{DkimAlgorithm, DkimKey};

/// The header fields signed (RFC 6376 §5.4.1: From is required; the others are what a
/// reader sees and relies on). Fields listed but absent are signed as absent, so they
/// cannot be added later without breaking the signature.
const SIGNED_HEADERS: [&str; 14] = [
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Cc",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Unsubscribe",
    "List-Id",
];

#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    #[error("cannot generate a DKIM key: {0}")]
    Generate(String),
    #[error("the stored DKIM key {selector} of {domain} is unusable: {reason}")]
    BadKey {
        domain: String,
        selector: String,
        reason: String,
    },
    #[error("DKIM signing failed: {0}")]
    Sign(String),
}

/// Makes a new key for `domain`. `created` (unix seconds) names the selector.
pub fn generate(domain: &str, algorithm: DkimAlgorithm, created: i64, taken: &[String]) -> Result<DkimKey, DkimError> {
    let (private_key, public_key) = match algorithm {
        DkimAlgorithm::RsaSha256 => {
            use rsa::pkcs1::EncodeRsaPrivateKey;
            use rsa::pkcs8::EncodePublicKey;
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
                .map_err(|e| DkimError::Generate(e.to_string()))?;
            let private = key.to_pkcs1_der().map_err(|e| DkimError::Generate(e.to_string()))?;
            // The DNS record carries SubjectPublicKeyInfo, as `openssl rsa -pubout` gives
            // and every verifier reads (RFC 6376 §3.6.1).
            let public = key
                .to_public_key()
                .to_public_key_der()
                .map_err(|e| DkimError::Generate(e.to_string()))?;
            (private.as_bytes().to_vec(), public.as_bytes().to_vec())
        }
        DkimAlgorithm::Ed25519Sha256 => {
            let pkcs8 = Ed25519Key::generate_pkcs8().map_err(|e| DkimError::Generate(e.to_string()))?;
            let key = Ed25519Key::from_pkcs8_der(&pkcs8).map_err(|e| DkimError::Generate(e.to_string()))?;
            // RFC 8463 §4.2: the record holds the raw 32-byte public key.
            (pkcs8, key.public_key())
        }
    };
    Ok(DkimKey {
        domain: domain.to_string(),
        selector: selector_for(algorithm, created, taken),
        algorithm,
        private_key,
        public_key,
        created,
        active: true,
    })
}

/// `tern` + year and month + `r` (RSA) or `e` (Ed25519), with a counter when that
/// selector exists already (two rotations in one month).
fn selector_for(algorithm: DkimAlgorithm, created: i64, taken: &[String]) -> String {
    let month = chrono::DateTime::from_timestamp(created, 0)
        .map(|d| d.format("%Y%m").to_string())
        .unwrap_or_else(|| "0".into());
    let kind = match algorithm {
        DkimAlgorithm::RsaSha256 => 'r',
        DkimAlgorithm::Ed25519Sha256 => 'e',
    };
    let base = format!("tern{month}{kind}");
    (1..)
        .map(|n| if n == 1 { base.clone() } else { format!("{base}{n}") })
        .find(|s| !taken.iter().any(|t| t.eq_ignore_ascii_case(s)))
        .unwrap_or(base)
}

/// The owner name of the key's TXT record.
pub fn record_name(key: &DkimKey) -> String {
    format!("{}._domainkey.{}", key.selector, key.domain)
}

/// The TXT record's value (RFC 6376 §3.6.1).
pub fn record_value(key: &DkimKey) -> String {
    format!(
        "v=DKIM1; k={}; p={}",
        key.algorithm.key_type(),
        STANDARD.encode(&key.public_key)
    )
}

/// The DKIM-Signature header fields for `message`, one per active key of `keys`,
/// ready to prepend.
pub fn sign(message: &[u8], keys: &[DkimKey]) -> Result<String, DkimError> {
    let mut headers = String::new();
    for key in keys.iter().filter(|k| k.active) {
        let bad = |reason: String| DkimError::BadKey {
            domain: key.domain.clone(),
            selector: key.selector.clone(),
            reason,
        };
        let signature = match key.algorithm {
            DkimAlgorithm::RsaSha256 => {
                let pk = RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(
                    key.private_key.as_slice(),
                )))
                .map_err(|e| bad(e.to_string()))?;
                signer(DkimSigner::from_key(pk), key, message)?
            }
            DkimAlgorithm::Ed25519Sha256 => {
                let pk = Ed25519Key::from_pkcs8_der(&key.private_key).map_err(|e| bad(e.to_string()))?;
                signer(DkimSigner::from_key(pk), key, message)?
            }
        };
        headers.push_str(&signature);
    }
    Ok(headers)
}

fn signer<T: mail_auth::common::crypto::SigningKey<Hasher = Sha256>>(
    signer: DkimSigner<T, mail_auth::dkim::NeedDomain>,
    key: &DkimKey,
    message: &[u8],
) -> Result<String, DkimError> {
    use mail_auth::dkim::Canonicalization;
    signer
        .domain(key.domain.clone())
        .selector(key.selector.clone())
        .headers(SIGNED_HEADERS)
        // relaxed/relaxed survives the re-folding and whitespace changes of relays.
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed)
        .sign(message)
        .map(|s| s.to_header())
        .map_err(|e| DkimError::Sign(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_count_up_within_a_month() {
        let t = 1_795_000_000; // 2026-11
        assert_eq!(selector_for(DkimAlgorithm::RsaSha256, t, &[]), "tern202611r");
        assert_eq!(
            selector_for(DkimAlgorithm::Ed25519Sha256, t, &["tern202611e".into()]),
            "tern202611e2"
        );
    }
}

/// Why a message could not be signed for its From domain.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("cannot read the DKIM keys: {0}")]
    Keys(#[from] tern_store::StoreError),
    #[error(transparent)]
    Sign(#[from] DkimError),
}

/// The message with DKIM signatures of the active keys of `from`'s domain prepended;
/// unchanged if the domain has no active key.
pub async fn sign_with_domain_keys(
    store: &dyn tern_store::Store,
    from: &str,
    raw: &[u8],
) -> Result<Vec<u8>, SignError> {
    let domain = crate::policy::domain_of(from).to_ascii_lowercase();
    let keys = store.dkim_keys(Some(&domain)).await?;
    if keys.iter().all(|k| !k.active) {
        return Ok(raw.to_vec());
    }
    let mut signed = sign(raw, &keys)?.into_bytes();
    signed.extend_from_slice(raw);
    Ok(signed)
}
