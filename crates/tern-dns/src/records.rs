//! The records a domain publishes for Tern.

/// The MTA-STS policy Tern serves at `https://mta-sts.DOMAIN/.well-known/mta-sts.txt`
/// (RFC 8461 §3.2): senders that support MTA-STS then insist on TLS with a valid
/// certificate for `hostname` when delivering to the domain. "testing" mode: failures
/// are reported (TLS-RPT, RFC 8460) but mail is still delivered, the safe start while
/// a domain moves.
pub fn mta_sts_policy(hostname: &str) -> String {
    format!("version: STSv1\r\nmode: testing\r\nmx: {hostname}\r\nmax_age: 604800\r\n")
}
