//! Mailbox names on the wire.
//!
//! The store keeps names in UTF-8 with "/" as the hierarchy delimiter. IMAP4rev1
//! clients send and expect modified UTF-7 (RFC 3501 §5.1.3, [`tern_store::utf7`]);
//! IMAP4rev2 (RFC 9051 §5.1) and UTF8=ACCEPT clients (RFC 6855 §3) use UTF-8 directly.

use tern_store::utf7;

/// A name as the client sent it, in the store's form. INBOX is matched in any case
/// (RFC 9051 §5.1).
pub fn from_wire(raw: &[u8], utf8: bool) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?;
    let name = if utf8 {
        text.to_string()
    } else if text.is_ascii() {
        utf7::decode(text)?
    } else {
        return None;
    };
    Some(if name.eq_ignore_ascii_case("INBOX") {
        "INBOX".to_string()
    } else if name.len() > 6 && name[..6].eq_ignore_ascii_case("INBOX/") {
        format!("INBOX/{}", &name[6..])
    } else {
        name
    })
}

/// A store name as this client should see it.
pub fn to_wire(name: &str, utf8: bool) -> String {
    if utf8 { name.to_string() } else { utf7::encode(name) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_and_to_the_wire() {
        assert_eq!(from_wire(b"Entw&APw-rfe", false).as_deref(), Some("Entwürfe"));
        assert_eq!(from_wire("Entwürfe".as_bytes(), true).as_deref(), Some("Entwürfe"));
        assert_eq!(from_wire("Grüße".as_bytes(), false), None, "8-bit needs UTF-8 mode");
        assert_eq!(from_wire(b"inbox", false).as_deref(), Some("INBOX"));
        assert_eq!(from_wire(b"Inbox/Sub", false).as_deref(), Some("INBOX/Sub"));
        assert_eq!(to_wire("Entwürfe", false), "Entw&APw-rfe");
        assert_eq!(to_wire("Entwürfe", true), "Entwürfe");
    }
}
