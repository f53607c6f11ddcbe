//! Checking who really sent an incoming message: SPF (RFC 7208), DKIM (RFC 6376),
//! ARC (RFC 8617) and DMARC (RFC 7489), all through mail-auth, and the
//! Authentication-Results header (RFC 8601) that records them for the reader's client.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use mail_auth::dmarc::Policy;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{AuthenticatedMessage, AuthenticationResults, DmarcResult, MessageAuthenticator};

/// A resolver for the checks and for outbound MX lookups: the given name servers, or
/// the system's (`/etc/resolv.conf`) when none are given.
pub fn resolver(nameservers: &[SocketAddr]) -> Result<MessageAuthenticator, String> {
    let mut options = ResolverOpts::default();
    // A slow DNS must not hold a sender past its DATA timeout (RFC 5321 §4.5.3.2.6:
    // 10 minutes); a few seconds per query is what MTAs use.
    options.timeout = Duration::from_secs(4);
    options.attempts = 2;
    if nameservers.is_empty() {
        return MessageAuthenticator::new_system_conf()
            .map_err(|e| format!("cannot read the system's DNS configuration (/etc/resolv.conf): {e}"));
    }
    let mut config = ResolverConfig::from_parts(None, vec![], vec![]);
    for ns in nameservers {
        let mut server = NameServerConfig::udp_and_tcp(ns.ip());
        for c in &mut server.connections {
            c.port = ns.port();
        }
        config.add_name_server(server);
    }
    MessageAuthenticator::new(config, options).map_err(|e| format!("cannot set up the DNS resolver: {e}"))
}

/// What DMARC says about a message, and so what happens to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmarcVerdict {
    /// Passed, or the From domain publishes no DMARC policy.
    Accept,
    /// Failed under p=quarantine: delivered to Junk.
    Quarantine,
    /// Failed under p=reject: refused at DATA, or delivered to Junk, per
    /// `[smtp] dmarc_reject`.
    Reject,
}

/// The outcome of the checks.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The Authentication-Results header field, CRLF-terminated.
    pub header: String,
    pub dmarc: DmarcVerdict,
    /// The From domain DMARC judged, for the refusal text.
    pub from_domain: String,
}

/// Runs every check on one message. `mail_from` is empty for a null reverse-path.
pub async fn check(
    auth: &MessageAuthenticator,
    hostname: &str,
    ip: IpAddr,
    helo: &str,
    mail_from: &str,
    raw: &[u8],
) -> Verdict {
    let Some(message) = AuthenticatedMessage::parse(raw) else {
        // Not even a header block: nothing to authenticate. The message is still
        // delivered (bad MIME never blocks storage); the reader sees "none".
        return Verdict {
            header: format!("Authentication-Results: {hostname}; none\r\n"),
            dmarc: DmarcVerdict::Accept,
            from_domain: String::new(),
        };
    };
    let dkim = auth.verify_dkim(&message).await;
    let arc = auth.verify_arc(&message).await;
    // RFC 7208 §2.4: with a null reverse-path the HELO identity is checked instead.
    let spf = if mail_from.is_empty() {
        auth.verify_spf(SpfParameters::verify_ehlo(ip, helo, hostname)).await
    } else {
        auth.verify_spf(SpfParameters::verify_mail_from(ip, helo, hostname, mail_from))
            .await
    };
    let mail_from_domain = mail_from.rsplit_once('@').map_or(helo, |(_, d)| d);
    let dmarc = auth
        .verify_dmarc(DmarcParameters::new(&message, &dkim, mail_from_domain, &spf))
        .await;
    let header_from = message.from().to_string();
    let results = AuthenticationResults::new(hostname)
        .with_dkim_results(&dkim, &header_from)
        .with_spf_mailfrom_result(&spf, ip, mail_from, helo)
        .with_arc_result(&arc, ip)
        .with_dmarc_result(&dmarc);
    // RFC 7489 §6.6.2: fails when neither an aligned SPF nor an aligned DKIM passes.
    let failed = matches!(dmarc.result(), DmarcResult::Fail(_));
    let verdict = match (failed, dmarc.policy()) {
        (true, Policy::Reject) => DmarcVerdict::Reject,
        (true, Policy::Quarantine) => DmarcVerdict::Quarantine,
        _ => DmarcVerdict::Accept,
    };
    let mut header = format!("Authentication-Results: {results}\r\n");
    if dkim.is_empty() {
        // RFC 8601 §2.7.1: say that there was nothing to check, not nothing at all.
        header.insert_str(
            "Authentication-Results: ".len() + hostname.len(),
            ";\r\n\tdkim=none (no signatures)",
        );
    }
    Verdict {
        header,
        dmarc: verdict,
        from_domain: dmarc.domain().to_string(),
    }
}
