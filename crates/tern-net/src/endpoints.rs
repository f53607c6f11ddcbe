//! Where clients reach this server: the host name and the port of each client service.
//!
//! One description shared by everything that tells a client (or an administrator) how
//! to connect: the autoconfig and autodiscover answers, the Apple profiles and the setup
//! page (tern-web), the SRV records in the DNS suggestions and `tern doctor` (tern-dns).
//! It is built from the `[listen]` table after the listeners are bound, so a port given
//! as 0 shows as the port actually taken.

use std::net::SocketAddr;

use serde::Serialize;

/// How a client port speaks TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// TLS from the first byte (RFC 8314 §3: IMAPS 993, POP3S 995, submissions 465).
    Tls,
    /// Plain text upgraded with STARTTLS / STLS (IMAP 143, POP3 110, submission 587).
    StartTls,
}

impl Security {
    /// How a client's settings screen names it.
    pub fn label(self) -> &'static str {
        match self {
            Security::Tls => "SSL/TLS",
            Security::StartTls => "STARTTLS",
        }
    }
}

/// A client protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Imap,
    Pop3,
    Submission,
}

impl Protocol {
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Imap => "IMAP",
            Protocol::Pop3 => "POP3",
            Protocol::Submission => "SMTP",
        }
    }
}

/// One way in: a protocol on a port with a TLS mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub protocol: Protocol,
    pub port: u16,
    pub security: Security,
}

/// The host name and ports clients use. `None`: the service is not configured.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClientEndpoints {
    /// The name clients connect to (the `hostname` of tern.toml, on the certificate).
    pub hostname: String,
    pub imap: Option<u16>,
    pub imaps: Option<u16>,
    pub pop3: Option<u16>,
    pub pop3s: Option<u16>,
    pub submission: Option<u16>,
    pub submissions: Option<u16>,
    /// The MX port (25 in production): not a client port, but `tern doctor` and the DNS
    /// checks look at it.
    pub smtp: Option<u16>,
    pub http: Option<u16>,
    pub https: Option<u16>,
}

impl ClientEndpoints {
    /// From the `[listen]` table's services as (config key, addresses): the first
    /// address of each names its port.
    pub fn from_services<'a>(
        hostname: &str,
        services: impl IntoIterator<Item = (&'a str, &'a [SocketAddr])>,
    ) -> ClientEndpoints {
        let mut e = ClientEndpoints {
            hostname: hostname.to_string(),
            ..Default::default()
        };
        for (name, addrs) in services {
            let port = addrs.first().map(|a| a.port());
            let slot = match name {
                "imap" => &mut e.imap,
                "imaps" => &mut e.imaps,
                "pop3" => &mut e.pop3,
                "pop3s" => &mut e.pop3s,
                "submission" => &mut e.submission,
                "submissions" => &mut e.submissions,
                "smtp" => &mut e.smtp,
                "http" => &mut e.http,
                "https" => &mut e.https,
                _ => continue,
            };
            if slot.is_none() {
                *slot = port;
            }
        }
        e
    }

    /// Every configured client endpoint of a protocol, best first: implicit TLS before
    /// STARTTLS, as RFC 8314 §3 and §5.1 recommend to clients.
    pub fn of(&self, protocol: Protocol) -> Vec<Endpoint> {
        let (tls, starttls) = match protocol {
            Protocol::Imap => (self.imaps, self.imap),
            Protocol::Pop3 => (self.pop3s, self.pop3),
            Protocol::Submission => (self.submissions, self.submission),
        };
        let mut out = Vec::new();
        if let Some(port) = tls {
            out.push(Endpoint {
                protocol,
                port,
                security: Security::Tls,
            });
        }
        if let Some(port) = starttls {
            out.push(Endpoint {
                protocol,
                port,
                security: Security::StartTls,
            });
        }
        out
    }

    /// The endpoint to recommend for a protocol, if it is served at all.
    pub fn preferred(&self, protocol: Protocol) -> Option<Endpoint> {
        self.of(protocol).into_iter().next()
    }

    /// Every client endpoint, IMAP, then POP3, then submission.
    pub fn all(&self) -> Vec<Endpoint> {
        [Protocol::Imap, Protocol::Pop3, Protocol::Submission]
            .into_iter()
            .flat_map(|p| self.of(p))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implicit_tls_is_preferred_and_missing_services_are_left_out() {
        let a = |p: u16| vec![SocketAddr::from(([127, 0, 0, 1], p))];
        let (imap, imaps, sub) = (a(143), a(993), a(587));
        let e = ClientEndpoints::from_services(
            "mail.example.test",
            [
                ("imap", imap.as_slice()),
                ("imaps", imaps.as_slice()),
                ("pop3", &[][..]),
                ("submission", sub.as_slice()),
            ],
        );
        assert_eq!(
            e.preferred(Protocol::Imap).map(|p| (p.port, p.security)),
            Some((993, Security::Tls))
        );
        assert_eq!(e.of(Protocol::Imap).len(), 2);
        assert_eq!(e.preferred(Protocol::Pop3), None);
        assert_eq!(
            e.preferred(Protocol::Submission).map(|p| (p.port, p.security)),
            Some((587, Security::StartTls))
        );
        assert_eq!(e.all().len(), 3);
    }
}
