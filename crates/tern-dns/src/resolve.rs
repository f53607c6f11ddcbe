//! DNS lookups as the checks need them: every answer with its TTL, and "the name does
//! not exist" (NXDOMAIN), "no record of that type" (NODATA) and "could not ask"
//! (timeout, SERVFAIL) kept apart, because each gets different advice.
//!
//! A [`Lookup`] asks either the system's resolvers (/etc/resolv.conf) or one given DNS
//! server, without a cache (a check must see what is published now, and the MX watch
//! must see a flip) and without /etc/hosts (which only this machine sees).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};

/// How long one question may take; with two attempts a dead server costs 6 s.
const TIMEOUT: Duration = Duration::from_secs(3);

/// What a DNS server answered for one name and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<T> {
    /// Records, and the smallest TTL among them.
    Records(Vec<T>, u32),
    /// The name exists but has no record of this type.
    NoData,
    /// The name does not exist.
    NxDomain,
    /// No answer: timeout, SERVFAIL, refused. The text says which.
    Failed(String),
}

impl<T> Answer<T> {
    /// The records, or none.
    pub fn records(&self) -> &[T] {
        match self {
            Answer::Records(r, _) => r,
            _ => &[],
        }
    }

    pub fn ttl(&self) -> Option<u32> {
        match self {
            Answer::Records(_, ttl) => Some(*ttl),
            _ => None,
        }
    }

    fn map<U>(self, f: impl Fn(T) -> U) -> Answer<U> {
        match self {
            Answer::Records(r, ttl) => Answer::Records(r.into_iter().map(f).collect(), ttl),
            Answer::NoData => Answer::NoData,
            Answer::NxDomain => Answer::NxDomain,
            Answer::Failed(e) => Answer::Failed(e),
        }
    }
}

impl<T: std::fmt::Display> Answer<T> {
    /// What is published, for a report: the records, or why there are none.
    pub fn describe(&self) -> String {
        match self {
            Answer::Records(r, _) => r.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", "),
            Answer::NoData => "no record".into(),
            Answer::NxDomain => "the name does not exist".into(),
            Answer::Failed(e) => format!("no answer ({e})"),
        }
    }
}

/// An MX record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mx {
    pub preference: u16,
    /// The exchange, lower case, without the final dot.
    pub exchange: String,
}

impl std::fmt::Display for Mx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.preference, self.exchange)
    }
}

/// An SRV record (RFC 2782).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// Lower case, without the final dot; "." means "not offered" (RFC 2782).
    pub target: String,
}

impl std::fmt::Display for Srv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {} {}", self.priority, self.weight, self.port, self.target)
    }
}

/// Asks one DNS server (or the system's) questions.
#[derive(Clone)]
pub struct Lookup {
    resolver: TokioResolver,
    /// "system" or the server's address, for reports.
    name: String,
}

impl Lookup {
    /// The system's resolvers, from /etc/resolv.conf.
    pub fn system() -> Result<Lookup, String> {
        let (config, _) = hickory_resolver::system_conf::read_system_conf()
            .map_err(|e| format!("cannot read the system's DNS configuration (/etc/resolv.conf): {e}"))?;
        Self::build(config, "system resolver".into())
    }

    /// One DNS server, over UDP (TCP when an answer is truncated).
    pub fn server(addr: SocketAddr) -> Result<Lookup, String> {
        let name = if addr.port() == 53 {
            addr.ip().to_string()
        } else {
            addr.to_string()
        };
        Self::build(ResolverConfig::from_parts(None, vec![], vec![name_server(addr)]), name)
    }

    /// The servers of tern.toml's `[dns] nameservers` as one resolver (the system's
    /// when there are none), as Tern's own MX lookups use them.
    pub fn servers(addrs: &[SocketAddr]) -> Result<Lookup, String> {
        match addrs {
            [] => Lookup::system(),
            [one] => Lookup::server(*one),
            many => {
                let names: Vec<String> = many.iter().map(|a| a.to_string()).collect();
                let servers = many.iter().map(|a| name_server(*a)).collect();
                Self::build(ResolverConfig::from_parts(None, vec![], servers), names.join(", "))
            }
        }
    }

    /// `IP` or `IP:PORT` (port 53 by default), as `--resolver` takes it.
    pub fn parse_server(text: &str) -> Result<SocketAddr, String> {
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, 53));
        }
        text.parse::<SocketAddr>()
            .map_err(|_| format!("{text:?} is not a DNS server address: write an IP address, optionally with :PORT"))
    }

    /// The system's resolvers when `servers` is empty, else one Lookup per server.
    pub fn for_servers(servers: &[String]) -> Result<Vec<Lookup>, String> {
        if servers.is_empty() {
            return Ok(vec![Lookup::system()?]);
        }
        servers
            .iter()
            .map(|s| Lookup::server(Lookup::parse_server(s)?))
            .collect()
    }

    fn build(config: ResolverConfig, name: String) -> Result<Lookup, String> {
        let mut options = ResolverOpts::default();
        options.cache_size = 0;
        options.attempts = 2;
        options.timeout = TIMEOUT;
        options.use_hosts_file = ResolveHosts::Never;
        // Names are always given fully qualified: no search domains.
        options.ndots = 0;
        let resolver = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(options)
            .build()
            .map_err(|e| format!("cannot set up the DNS resolver: {e}"))?;
        Ok(Lookup { resolver, name })
    }

    /// The resolver itself, for mail-auth's SPF evaluation.
    pub fn resolver(&self) -> &TokioResolver {
        &self.resolver
    }

    /// Which server this asks, for reports.
    pub fn name(&self) -> &str {
        &self.name
    }

    async fn ask(&self, name: &str, kind: RecordType) -> Answer<RData> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        match self.resolver.lookup(fqdn.as_str(), kind).await {
            Ok(lookup) => {
                let answers = lookup.answers();
                let ttl = answers.iter().map(|r| r.ttl).min().unwrap_or(0);
                // The answer section also holds the CNAMEs followed to get there.
                let records: Vec<RData> = answers
                    .iter()
                    .filter(|r| r.record_type() == kind)
                    .map(|r| r.data.clone())
                    .collect();
                if records.is_empty() {
                    Answer::NoData
                } else {
                    Answer::Records(records, ttl)
                }
            }
            Err(e) if e.is_nx_domain() => Answer::NxDomain,
            Err(e) if e.is_no_records_found() => Answer::NoData,
            Err(e) => Answer::Failed(e.to_string()),
        }
    }

    /// MX records, sorted by preference.
    pub async fn mx(&self, domain: &str) -> Answer<Mx> {
        let mut answer = self.ask(domain, RecordType::MX).await.map(|r| match r {
            RData::MX(mx) => Some(Mx {
                preference: mx.preference,
                exchange: normalize(&mx.exchange.to_ascii()),
            }),
            _ => None,
        });
        flatten(&mut answer)
    }

    /// TXT records, each one's strings joined (as SPF, DKIM and DMARC readers do).
    pub async fn txt(&self, name: &str) -> Answer<String> {
        let mut answer = self.ask(name, RecordType::TXT).await.map(|r| match r {
            RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect::<String>(),
            ),
            _ => None,
        });
        flatten(&mut answer)
    }

    /// IPv4 addresses (A), following CNAMEs.
    pub async fn a(&self, name: &str) -> Answer<IpAddr> {
        let mut answer = self.ask(name, RecordType::A).await.map(|r| match r {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        });
        flatten(&mut answer)
    }

    /// IPv6 addresses (AAAA), following CNAMEs.
    pub async fn aaaa(&self, name: &str) -> Answer<IpAddr> {
        let mut answer = self.ask(name, RecordType::AAAA).await.map(|r| match r {
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        });
        flatten(&mut answer)
    }

    /// Every address of a name (A and AAAA), or the first answer's reason for none.
    pub async fn addresses(&self, name: &str) -> Answer<IpAddr> {
        let (v4, v6) = tokio::join!(self.a(name), self.aaaa(name));
        match (v4, v6) {
            (Answer::Records(mut a, t1), Answer::Records(b, t2)) => {
                a.extend(b);
                Answer::Records(a, t1.min(t2))
            }
            (Answer::Records(a, t), _) | (_, Answer::Records(a, t)) => Answer::Records(a, t),
            (Answer::Failed(e), _) | (_, Answer::Failed(e)) => Answer::Failed(e),
            (Answer::NxDomain, _) => Answer::NxDomain,
            _ => Answer::NoData,
        }
    }

    /// The CNAME of a name, if it is an alias.
    pub async fn cname(&self, name: &str) -> Answer<String> {
        let mut answer = self.ask(name, RecordType::CNAME).await.map(|r| match r {
            RData::CNAME(c) => Some(normalize(&c.0.to_ascii())),
            _ => None,
        });
        flatten(&mut answer)
    }

    /// SRV records, sorted by priority.
    pub async fn srv(&self, name: &str) -> Answer<Srv> {
        let mut answer = self.ask(name, RecordType::SRV).await.map(|r| match r {
            RData::SRV(srv) => Some(Srv {
                priority: srv.priority,
                weight: srv.weight,
                port: srv.port,
                target: match normalize(&srv.target.to_ascii()) {
                    t if t.is_empty() => ".".into(),
                    t => t,
                },
            }),
            _ => None,
        });
        flatten(&mut answer)
    }

    /// The names an address points back to (PTR, RFC 1035 §3.5).
    pub async fn ptr(&self, ip: IpAddr) -> Answer<String> {
        let name = reverse_name(ip);
        let mut answer = self.ask(&name, RecordType::PTR).await.map(|r| match r {
            RData::PTR(p) => Some(normalize(&p.0.to_ascii())),
            _ => None,
        });
        flatten(&mut answer)
    }
}

/// A server asked over UDP, and TCP when an answer is truncated, on its port.
fn name_server(addr: SocketAddr) -> NameServerConfig {
    let mut udp = ConnectionConfig::udp();
    udp.port = addr.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = addr.port();
    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
}

/// Drops the `None`s a type filter left, sorting what remains.
fn flatten<T: Ord>(answer: &mut Answer<Option<T>>) -> Answer<T> {
    match std::mem::replace(answer, Answer::NoData) {
        Answer::Records(r, ttl) => {
            let mut r: Vec<T> = r.into_iter().flatten().collect();
            r.sort();
            if r.is_empty() {
                Answer::NoData
            } else {
                Answer::Records(r, ttl)
            }
        }
        Answer::NoData => Answer::NoData,
        Answer::NxDomain => Answer::NxDomain,
        Answer::Failed(e) => Answer::Failed(e),
    }
}

/// Lower case without the final dot: how names are compared.
pub fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The PTR owner name of an address: `4.3.2.1.in-addr.arpa` (RFC 1035 §3.5) or the
/// nibbles of `ip6.arpa` (RFC 3596 §2.5).
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut parts = Vec::with_capacity(34);
            for byte in v6.octets().iter().rev() {
                parts.push(format!("{:x}", byte & 0x0f));
                parts.push(format!("{:x}", byte >> 4));
            }
            parts.push("ip6.arpa".into());
            parts.join(".")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names() {
        assert_eq!(reverse_name("192.0.2.10".parse().unwrap()), "10.2.0.192.in-addr.arpa");
        assert_eq!(
            reverse_name("2001:db8::1".parse().unwrap()),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        );
    }

    #[test]
    fn resolver_addresses() {
        assert_eq!(Lookup::parse_server("10.0.0.53").unwrap().port(), 53);
        assert_eq!(Lookup::parse_server("127.0.0.1:5353").unwrap().port(), 5353);
        assert!(
            Lookup::parse_server("dns.example")
                .unwrap_err()
                .contains("not a DNS server address")
        );
    }
}
