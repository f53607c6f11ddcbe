//! The SASL PLAIN mechanism (RFC 4616) as POP3 AUTH (RFC 5034 §4) and SMTP AUTH (RFC 4954
//! §4) carry it: base64 of authzid NUL authcid NUL password.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// A decoded PLAIN response. Debug leaves the password out.
pub struct PlainCredentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for PlainCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainCredentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Why a PLAIN response was refused. The `Display` text goes to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PlainError {
    #[error("the response is not valid base64")]
    Base64,
    #[error("the response is not authzid NUL authcid NUL password")]
    Malformed,
    #[error("the response is not valid UTF-8")]
    Utf8,
    #[error("[AUTH] logging in as another user is not supported")]
    OtherIdentity,
}

/// Decodes a client's base64 PLAIN response.
///
/// RFC 5034 §4: a single "=" stands for an empty initial response (which then fails
/// here as malformed: PLAIN needs its two NULs).
pub fn decode_plain(response: &str) -> Result<PlainCredentials, PlainError> {
    let response = response.trim();
    let bytes = if response == "=" {
        Vec::new()
    } else {
        STANDARD.decode(response).map_err(|_| PlainError::Base64)?
    };
    // RFC 4616 §2: message = [authzid] UTF8NUL authcid UTF8NUL passwd
    let mut parts = bytes.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(PlainError::Malformed);
    };
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| PlainError::Utf8);
    let (authzid, user, password) = (text(authzid)?, text(authcid)?, text(password)?);
    if user.is_empty() || password.is_empty() {
        return Err(PlainError::Malformed);
    }
    // RFC 4616 §2: an authzid other than the user's own asks to act as someone else,
    // which Tern has no notion of.
    if !authzid.is_empty() && !authzid.trim().eq_ignore_ascii_case(user.trim()) {
        return Err(PlainError::OtherIdentity);
    }
    Ok(PlainCredentials { user, password })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(raw: &[u8]) -> String {
        STANDARD.encode(raw)
    }

    #[test]
    fn plain_with_and_without_authzid() {
        let c = decode_plain(&encode(b"\0alice@example.test\0secret pw")).expect("plain");
        assert_eq!(
            (c.user.as_str(), c.password.as_str()),
            ("alice@example.test", "secret pw")
        );
        let c = decode_plain(&encode(b"Alice@Example.test\0alice@example.test\0pw")).expect("same identity");
        assert_eq!(c.user, "alice@example.test");
    }

    #[test]
    fn refusals() {
        assert_eq!(decode_plain("not base64!").unwrap_err(), PlainError::Base64);
        assert_eq!(decode_plain("=").unwrap_err(), PlainError::Malformed);
        assert_eq!(decode_plain(&encode(b"alice\0pw")).unwrap_err(), PlainError::Malformed);
        assert_eq!(decode_plain(&encode(b"\0a\0b\0c")).unwrap_err(), PlainError::Malformed);
        assert_eq!(decode_plain(&encode(b"\0alice\0")).unwrap_err(), PlainError::Malformed);
        assert_eq!(decode_plain(&encode(b"\0\xff\0pw")).unwrap_err(), PlainError::Utf8);
        assert_eq!(
            decode_plain(&encode(b"bob\0alice\0pw")).unwrap_err(),
            PlainError::OtherIdentity
        );
    }

    #[test]
    fn debug_hides_the_password() {
        let c = decode_plain(&encode(b"\0alice\0hunter2")).expect("plain");
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
