//! Email addresses as the store keys them: `local@domain`, the domain lower-cased, the
//! local part matched case-insensitively (as nearly every mail host does, though RFC 5321
//! §2.4 allows case-sensitive local parts), and plus-addressing (`alice+news@` reaches
//! `alice@`).

use crate::StoreError;

/// The character that separates a local part from its sub-address tag.
pub const PLUS: char = '+';

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress {
    pub local: String,
    pub domain: String,
}

impl EmailAddress {
    /// Parses `local@domain`. Accepts what RFC 5321 §4.1.2 allows in a dot-atom local part
    /// plus UTF-8 (RFC 6531); refuses spaces, control characters and quoted local parts,
    /// which no account should be named with.
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        let bad = || StoreError::InvalidAddress(s.to_string());
        let (local, domain) = s.trim().rsplit_once('@').ok_or_else(bad)?;
        if local.is_empty()
            || local.len() > 64
            || local.starts_with('.')
            || local.ends_with('.')
            || local.contains("..")
            || local
                .chars()
                .any(|c| c.is_control() || c.is_whitespace() || "\"(),:;<>@[\\]".contains(c))
        {
            return Err(bad());
        }
        let domain = normalise_domain(domain).ok_or_else(bad)?;
        Ok(EmailAddress {
            local: local.to_string(),
            domain,
        })
    }

    /// The local part without a `+tag` sub-address, if it has one.
    pub fn without_tag(&self) -> Option<EmailAddress> {
        let (base, _tag) = self.local.split_once(PLUS)?;
        (!base.is_empty()).then(|| EmailAddress {
            local: base.to_string(),
            domain: self.domain.clone(),
        })
    }
}

impl std::fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// Lower-cases a domain name and checks it is a plausible host name (RFC 1035 §2.3.1
/// labels, UTF-8 allowed for internationalised names). Returns `None` if it is not.
pub fn normalise_domain(domain: &str) -> Option<String> {
    let d = domain.trim().trim_end_matches('.').to_lowercase();
    let ok = !d.is_empty()
        && d.len() <= 253
        && d.contains('.')
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    ok.then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let a = EmailAddress::parse("Alice.Smith@Example.COM").unwrap();
        assert_eq!(a.local, "Alice.Smith");
        assert_eq!(a.domain, "example.com");
        assert_eq!(a.to_string(), "Alice.Smith@example.com");
    }

    #[test]
    fn refuses_malformed() {
        for bad in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "a b@example.com",
            "a..b@example.com",
            "alice@localhost",
            "alice@-x.com",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn plus_tag() {
        let a = EmailAddress::parse("alice+news@example.com").unwrap();
        assert_eq!(a.without_tag().unwrap().to_string(), "alice@example.com");
        assert!(EmailAddress::parse("+x@example.com").unwrap().without_tag().is_none());
        assert!(EmailAddress::parse("bob@example.com").unwrap().without_tag().is_none());
    }
}
