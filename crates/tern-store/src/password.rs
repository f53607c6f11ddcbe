//! Account passwords: Argon2id hashes in PHC string form (RFC 9106 parameters as the
//! argon2 crate's defaults: m=19 MiB, t=2, p=1, OWASP's recommendation). The plain
//! password is never stored or logged.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::StoreError;

/// Hashes a password for storage.
pub fn hash(password: &str) -> Result<String, StoreError> {
    if password.is_empty() {
        return Err(StoreError::Password("the password is empty".into()));
    }
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Password(e.to_string()))
}

/// Checks a password against a stored hash. A malformed hash never verifies.
pub fn verify(password: &str, hash: &str) -> bool {
    Argon2::default().verify_password(password.as_bytes(), hash).is_ok()
}

/// A random password for a generated account: 20 characters from an alphabet without
/// look-alikes (no 0/O, 1/l/I), about 115 bits.
pub fn generate() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hash_and_verify() {
        let h = super::hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(super::verify("correct horse", &h));
        assert!(!super::verify("wrong horse", &h));
        assert!(!super::verify("correct horse", "not a hash"));
        assert!(super::hash("").is_err());
    }

    #[test]
    fn generated_passwords_differ() {
        let a = super::generate();
        assert_eq!(a.len(), 20);
        assert_ne!(a, super::generate());
    }
}
