//! The not-authenticated state (RFC 9051 §6.2): STARTTLS, LOGIN, AUTHENTICATE with
//! PLAIN (RFC 4616) and LOGIN (draft-murchison-sasl-login), SASL-IR (RFC 4959).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use imap_codec::imap_types::auth::AuthMechanism;
use tern_net::auth::LoginError;

use crate::session::{Reply, Result, Session, State};

/// RFC 9051 §6.2.1.
pub async fn starttls(s: &mut Session, tag: &str) -> Result {
    if !matches!(s.state, State::NotAuthenticated) {
        return Err(Reply::bad("STARTTLS is only allowed before logging in"));
    }
    if s.tls {
        return Err(Reply::bad("TLS is already active"));
    }
    let Some(config) = s.ctx.tls_config.clone() else {
        return Err(Reply::bad("STARTTLS is not offered on this port"));
    };
    s.out
        .tagged(tag, crate::response::Status::Ok, "Begin TLS negotiation now");
    s.flush().await.map_err(|_| Reply::already_sent())?;
    // Anything pipelined after STARTTLS came in the clear and must not be taken as if it
    // had come over TLS (RFC 9051 §6.2.1; CVE-2011-0411).
    s.framer.discard_buffered();
    let Some(stream) = s.conn.take() else {
        return Err(Reply::already_sent());
    };
    match stream.conn.start_tls(config, s.ctx.tls_handshake_timeout).await {
        Ok(tls) => {
            s.conn = Some(crate::stream::Stream::new(tls));
            s.tls = true;
        }
        Err(e) => tracing::debug!(peer = %s.peer, error = %e, "STARTTLS handshake failed"),
    }
    Err(Reply::already_sent())
}

/// RFC 9051 §6.2.3.
pub async fn login(s: &mut Session, user: &[u8], password: &[u8]) -> Result {
    let (Ok(user), Ok(password)) = (std::str::from_utf8(user), std::str::from_utf8(password)) else {
        return Err(Reply::no("User name and password must be UTF-8").code("AUTHENTICATIONFAILED"));
    };
    check_plaintext(s)?;
    log_in(s, user, password).await
}

/// RFC 9051 §6.2.2.
pub async fn authenticate(s: &mut Session, mechanism: AuthMechanism<'_>, initial: Option<Vec<u8>>) -> Result {
    check_plaintext(s)?;
    match mechanism {
        AuthMechanism::Plain => {
            let response = match initial {
                Some(r) => r,
                None => challenge(s, "").await?,
            };
            // RFC 4616 §2: [authzid] NUL authcid NUL passwd.
            let mut parts = response.split(|&b| b == 0);
            let (Some(authzid), Some(authcid), Some(password), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(Reply::bad("Malformed PLAIN response (RFC 4616 §2)"));
            };
            if !authzid.is_empty() && authzid != authcid {
                return Err(Reply::no("Logging in as another user is not allowed").code("AUTHORIZATIONFAILED"));
            }
            let (Ok(user), Ok(password)) = (std::str::from_utf8(authcid), std::str::from_utf8(password)) else {
                return Err(Reply::no("User name and password must be UTF-8").code("AUTHENTICATIONFAILED"));
            };
            log_in(s, user, password).await
        }
        AuthMechanism::Login => {
            let user = match initial {
                Some(u) => u,
                None => challenge(s, "Username:").await?,
            };
            let password = challenge(s, "Password:").await?;
            let (Ok(user), Ok(password)) = (String::from_utf8(user), String::from_utf8(password)) else {
                return Err(Reply::no("User name and password must be UTF-8").code("AUTHENTICATIONFAILED"));
            };
            log_in(s, &user, &password).await
        }
        other => Err(Reply::no(format!("Mechanism {other} is not supported; use PLAIN or LOGIN")).code("CANNOT")),
    }
}

fn check_plaintext(s: &Session) -> Result<()> {
    if s.server.auth.plaintext_allowed(s.peer.ip(), s.tls) {
        Ok(())
    } else {
        Err(Reply::no("Use STARTTLS or port 993 before sending a password").code("PRIVACYREQUIRED"))
    }
}

/// Sends a SASL challenge and reads the client's base64 answer (RFC 9051 §6.2.2); "*"
/// cancels.
async fn challenge(s: &mut Session, prompt: &str) -> Result<Vec<u8>> {
    s.out.raw(b"+ ").text(&BASE64.encode(prompt)).crlf();
    s.flush().await.map_err(|_| Reply::already_sent())?;
    let Some(conn) = s.conn.as_mut() else {
        return Err(Reply::already_sent());
    };
    let line = match s.framer.next_line(conn).await {
        Ok(Some(line)) => line,
        _ => return Err(Reply::already_sent()),
    };
    if line == b"*" {
        return Err(Reply::bad("Authentication cancelled"));
    }
    if line.is_empty() {
        return Ok(Vec::new());
    }
    BASE64
        .decode(line.trim_ascii())
        .map_err(|_| Reply::bad("Authentication response is not valid base64"))
}

async fn log_in(s: &mut Session, user: &str, password: &str) -> Result {
    match s.server.auth.login("imap", s.peer.ip(), user, password).await {
        Ok(account) => {
            s.state = State::Authenticated(account);
            // RFC 9051 §6.2.3: the new capabilities in the tagged OK save a round trip.
            let caps = s.capabilities();
            Ok(Reply::ok("Logged in").code(format!("CAPABILITY {caps}")))
        }
        Err(e @ LoginError::Invalid) => Err(Reply::no(e.to_string()).code("AUTHENTICATIONFAILED")),
        Err(e) => Err(Reply::no(e.to_string()).code("UNAVAILABLE")),
    }
}
