//! Bringing mail into Tern.
//!
//! Two ways in:
//!
//! - **Migration** from a live old provider over IMAP or POP3 (`tern migrate`): passes
//!   that copy every user's mailbox in the background, byte for byte with flags and
//!   dates, resumable at any point and never duplicating. The pieces, in the order a
//!   pass uses them: [`source`] (how to reach the old server), [`secrets`] (its
//!   passwords at rest), [`connect`], [`imap_source`] / [`pop3_source`] (the clients),
//!   [`folders`] (which folder goes where), [`pass`] (one pass over one mailbox),
//!   [`throttle`] and [`schedule`] (rate caps and off-hours windows), [`worker`] (the
//!   pool inside `tern serve`), [`report`] and [`verify`].
//! - **Import** of exported mailboxes ([`export`]): Maildir folders and mbox files for
//!   `tern import maildir|mbox`.
//!
//! Everything durable goes through `tern_store::Store`; the migration's own records
//! ([`state`]) are JSON documents the store keeps beside the mail.

pub mod connect;
pub mod export;
pub mod folders;
pub mod imap_source;
pub mod oauth;
pub mod pass;
pub mod pop3_source;
pub mod report;
pub mod schedule;
pub mod secrets;
pub mod source;
pub mod state;
pub mod throttle;
pub mod verify;
pub mod worker;

use tern_store::StoreError;

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// What can go wrong in a migration. Each message names the server and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("cannot connect to {host}:{port}: {reason}; check --host and --port of the source")]
    Connect { host: String, port: u16, reason: String },
    #[error("TLS with {host} failed: {reason}")]
    Tls { host: String, reason: String },
    #[error(
        "{host} refused the login: {reason}; check the user name and password (tern migrate add again to change them)"
    )]
    Login { host: String, reason: String },
    /// The provider asks us to slow down (Microsoft 365's "throttled"): back off.
    #[error("{host} is throttling this account: {reason}")]
    Throttled { host: String, reason: String },
    #[error("{host} answered: {reason}")]
    Protocol { host: String, reason: String },
    #[error("connection to the source lost: {0}")]
    Io(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Secret(#[from] secrets::SecretError),
    #[error("{0}")]
    Config(String),
}

impl MigrateError {
    pub fn from_imap(host: &str, e: async_imap::error::Error) -> MigrateError {
        use async_imap::error::Error;
        match e {
            Error::No(text) | Error::Bad(text) if is_throttling(&text) => MigrateError::Throttled {
                host: host.to_string(),
                reason: server_text(&text),
            },
            Error::No(text) | Error::Bad(text) => MigrateError::Protocol {
                host: host.to_string(),
                reason: server_text(&text),
            },
            Error::Io(e) => MigrateError::Io(format!("{host}: {e}")),
            Error::ConnectionLost => MigrateError::Io(format!("{host} closed the connection")),
            other => MigrateError::Protocol {
                host: host.to_string(),
                reason: other.to_string(),
            },
        }
    }

    /// Worth trying again on a new connection (as opposed to a wrong password).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            MigrateError::Io(_) | MigrateError::Throttled { .. } | MigrateError::Connect { .. }
        )
    }
}

/// What the server said in a NO or BAD, as an administrator should read it. async-imap
/// words a tagged NO as `code: Some(..), info: Some("text")` (Rust debug output): the
/// text is the server's human-readable part (RFC 9051 §7.1), with the response code
/// in brackets before it when there is one, as the server sent it.
pub fn server_text(reason: &str) -> String {
    let Some(start) = reason.find("info: Some(\"") else {
        return reason.to_string();
    };
    let quoted = &reason[start + "info: Some(\"".len()..];
    let mut text = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => text.extend(chars.next()),
            '"' => break,
            c => text.push(c),
        }
    }
    // The code, when async-imap split it off: `code: Some(AuthenticationFailed)`.
    // The message goes on after it ("...: TEXT; check the user name ..."): no full stop.
    let text = text.trim_end().trim_end_matches('.').to_string();
    match reason.strip_prefix("code: Some(").and_then(|r| r.split_once(')')) {
        Some((code, _)) if !text.starts_with('[') => format!("[{}] {text}", code.to_ascii_uppercase()),
        _ => text,
    }
}

/// Microsoft 365 says "Request is throttled" or "Server Unavailable. 15"; RFC 5530's
/// [UNAVAILABLE] and [LIMIT] mean the same.
pub fn is_throttling(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    ["throttl", "[unavailable]", "[limit]", "server unavailable", "too many"]
        .iter()
        .any(|w| t.contains(w))
}

#[cfg(test)]
mod server_text_tests {
    use super::server_text;

    #[test]
    fn the_servers_words_are_kept_and_the_debug_wrapping_dropped() {
        assert_eq!(
            server_text(r#"code: None, info: Some("[AUTHENTICATIONFAILED] Authentication failed.")"#),
            "[AUTHENTICATIONFAILED] Authentication failed"
        );
        assert_eq!(
            server_text(r#"code: Some(AuthenticationFailed), info: Some("Authentication \"failed\".")"#),
            "[AUTHENTICATIONFAILED] Authentication \"failed\""
        );
        assert_eq!(server_text("plain words"), "plain words");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn throttling_answers_are_recognised() {
        for text in [
            "Request is throttled. Suggested Backoff Time: 120000 milliseconds",
            "[UNAVAILABLE] Server Unavailable. 15",
            "[LIMIT] Too many simultaneous connections",
            "Account exceeded command or bandwidth limits. (Too many)",
        ] {
            assert!(super::is_throttling(text), "{text}");
        }
        assert!(!super::is_throttling("[AUTHENTICATIONFAILED] Invalid credentials"));
    }
}
