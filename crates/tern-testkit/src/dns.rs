//! An authoritative DNS server in the test process, for SMTP tests: MX, A/AAAA, TXT
//! (SPF, DKIM keys, DMARC, MTA-STS), PTR, CNAME and SRV records that a test sets, and
//! changes, while the server answers.
//!
//! [`TestDns`] serves UDP and TCP on one free port of 127.0.0.1 from its own thread
//! and Tokio runtime, so plain `#[test]`s and `#[tokio::test]`s use it alike. It is
//! authoritative for every name: a name the test set answers with its records; a name
//! it set without the asked type answers NOERROR with no answers (NODATA); any other
//! name answers NXDOMAIN. Negative answers carry an SOA for the root whose minimum is
//! the current TTL (RFC 2308 §5), so a resolver caches them no longer than positive ones.
//! Names are case-insensitive, with or without the trailing dot. A name that only has
//! names set below it ("_domainkey.example.test" when "sel._domainkey.example.test" is
//! set) exists, as RFC 8020 says, and answers NODATA.
//!
//! Resolvers answer some names themselves, without asking: hickory-resolver answers
//! `localhost.` names and the PTR of 127.0.0.0/8 and ::1 ("localhost.", RFC 6761 §6.3)
//! and, unless told `use_hosts_file = ResolveHosts::Never`, names in /etc/hosts. Test
//! with `.test` names (RFC 2606) and PTRs of TEST-NET addresses (192.0.2.0/24,
//! 2001:db8::/32).
//!
//! ```no_run
//! use std::net::Ipv4Addr;
//! let dns = tern_testkit::dns::TestDns::start().expect("DNS");
//! dns.set_mx("remote.test", &[(10, "mx1.remote.test"), (20, "mx2.remote.test")]);
//! dns.set_a("mx1.remote.test", &[Ipv4Addr::LOCALHOST]);
//! dns.set_txt("remote.test", &["v=spf1 ip4:127.0.0.1 -all"]);
//! // A resolver pointed at dns.addr() (hickory-resolver: a NameServerConfig for
//! // dns.addr().ip() with its UDP and TCP ConnectionConfig ports set to
//! // dns.addr().port()) now finds them; set_ttl(0) keeps it from caching across a flip.
//! ```

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::{A, AAAA, CNAME, MX, PTR, SOA, SRV, TXT};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

/// The TTL of answers until [`TestDns::set_ttl`] changes it.
pub const DEFAULT_TTL: u32 = 60;

/// How long a TCP client may stay silent before the server closes its connection.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Attempts to find a port free for both UDP and TCP.
const PORT_ATTEMPTS: usize = 20;
/// How many CNAMEs an answer follows before giving up on a loop.
const CNAME_DEPTH: usize = 8;

/// The records of every name, keyed by the name in lower case without the final dot.
type Zone = HashMap<String, Vec<RData>>;

/// A running DNS server on 127.0.0.1. Dropping it stops the server and its thread.
pub struct TestDns {
    addr: SocketAddr,
    state: Arc<State>,
    /// Tells the server thread to stop; dropping the sender does too.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the test changes and the server reads.
struct State {
    zone: Mutex<Zone>,
    ttl: AtomicU32,
    queries: AtomicUsize,
}

impl TestDns {
    /// Starts a server with no records (every name NXDOMAIN), UDP and TCP on the same
    /// free port of 127.0.0.1.
    pub fn start() -> Result<TestDns, String> {
        let (udp, tcp) = bind_udp_and_tcp()?;
        let addr = udp
            .local_addr()
            .map_err(|e| format!("cannot read the DNS server's address: {e}"))?;
        let state = Arc::new(State {
            zone: Mutex::new(Zone::new()),
            ttl: AtomicU32::new(DEFAULT_TTL),
            queries: AtomicUsize::new(0),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot build the DNS server's Tokio runtime: {e}"))?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, is_ready) = std::sync::mpsc::channel::<Result<(), String>>();
        let handler = Handler { state: state.clone() };
        let thread = std::thread::Builder::new()
            .name(format!("test-dns-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let registered = (|| {
                        udp.set_nonblocking(true)?;
                        tcp.set_nonblocking(true)?;
                        Ok::<_, std::io::Error>((
                            tokio::net::UdpSocket::from_std(udp)?,
                            tokio::net::TcpListener::from_std(tcp)?,
                        ))
                    })();
                    let (udp, tcp) = match registered {
                        Ok(sockets) => sockets,
                        Err(e) => {
                            let _ = ready.send(Err(format!("cannot register the DNS sockets: {e}")));
                            return;
                        }
                    };
                    let mut server = Server::new(handler);
                    server.register_socket(udp);
                    server.register_listener(tcp, TCP_IDLE, 64);
                    let _ = ready.send(Ok(()));
                    // Either a stop or the TestDns gone.
                    let _ = stopped.await;
                    // Open TCP connections would hold a graceful shutdown until their idle
                    // timeout; dropping the runtime after a moment ends them anyway.
                    let _ = tokio::time::timeout(Duration::from_secs(1), server.shutdown_gracefully()).await;
                });
            })
            .map_err(|e| format!("cannot start the DNS server's thread: {e}"))?;
        let mut dns = TestDns {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        };
        match is_ready.recv() {
            Ok(Ok(())) => Ok(dns),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                dns.stop.take();
                Err("the DNS server's thread ended before serving".to_string())
            }
        }
    }

    /// Where the server answers, over UDP and TCP.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the MX set of `domain` with `(preference, exchange)` records. An empty
    /// list leaves the name existing without MX records (NODATA, so a sender falls back
    /// to the domain's A record, RFC 5321 §5.1); `(0, ".")` is a null MX (RFC 7505).
    ///
    /// Panics on a name that is not a valid domain name.
    pub fn set_mx(&self, domain: &str, records: &[(u16, &str)]) {
        let rdata = records
            .iter()
            .map(|(preference, exchange)| RData::MX(MX::new(*preference, fqdn(exchange))))
            .collect();
        self.replace(domain, RecordType::MX, rdata);
    }

    /// Replaces the A records of `name`.
    pub fn set_a(&self, name: &str, ips: &[Ipv4Addr]) {
        let rdata = ips.iter().map(|ip| RData::A(A(*ip))).collect();
        self.replace(name, RecordType::A, rdata);
    }

    /// Replaces the AAAA records of `name`.
    pub fn set_aaaa(&self, name: &str, ips: &[Ipv6Addr]) {
        let rdata = ips.iter().map(|ip| RData::AAAA(AAAA(*ip))).collect();
        self.replace(name, RecordType::AAAA, rdata);
    }

    /// Replaces the TXT records of `name`: each text is one record. A text longer than
    /// 255 bytes is split into 255-byte character-strings within its record (RFC 1035
    /// §3.3.14), as DKIM keys are published (RFC 6376 §3.6.2.2); readers join them.
    pub fn set_txt(&self, name: &str, texts: &[&str]) {
        let rdata = texts
            .iter()
            .map(|text| RData::TXT(TXT::from_bytes(text.as_bytes().chunks(255).collect())))
            .collect();
        self.replace(name, RecordType::TXT, rdata);
    }

    /// Sets the PTR record of `ip` (its in-addr.arpa or ip6.arpa name) to `name`.
    pub fn set_ptr(&self, ip: IpAddr, name: &str) {
        self.replace(&reverse_name(ip), RecordType::PTR, vec![RData::PTR(PTR(fqdn(name)))]);
    }

    /// Replaces the SRV records of `name` (e.g. "_imaps._tcp.example.test") with
    /// `(priority, weight, port, target)` records (RFC 2782); a target of "." with port 0
    /// says the service is not offered (RFC 6186 §3.4).
    pub fn set_srv(&self, name: &str, records: &[(u16, u16, u16, &str)]) {
        let rdata = records
            .iter()
            .map(|(priority, weight, port, target)| RData::SRV(SRV::new(*priority, *weight, *port, fqdn(target))))
            .collect();
        self.replace(name, RecordType::SRV, rdata);
    }

    /// Makes `name` an alias of `target`, replacing every other record of `name` (a
    /// CNAME stands alone, RFC 1034 §3.6.2). Answers for `name` carry the CNAME and,
    /// when this server knows `target`, its records of the asked type.
    pub fn set_cname(&self, name: &str, target: &str) {
        let rdata = vec![RData::CNAME(CNAME(fqdn(target)))];
        self.zone().insert(key(name), rdata);
    }

    /// Replaces the records of `name` of the types in `rdata` with them, for a type
    /// without its own setter (TLSA for DANE, ...).
    pub fn set_rdata(&self, name: &str, rdata: &[RData]) {
        let mut zone = self.zone();
        let records = zone.entry(key(name)).or_default();
        records.retain(|r| {
            r.record_type() != RecordType::CNAME && !rdata.iter().any(|n| n.record_type() == r.record_type())
        });
        records.extend(rdata.iter().cloned());
    }

    /// Removes every record of `name`: it answers NXDOMAIN again (unless names below it
    /// are set).
    pub fn remove(&self, name: &str) {
        self.zone().remove(&key(name));
    }

    /// The TTL of answers, and of the negative-caching SOA, from now on (default
    /// [`DEFAULT_TTL`]). 0 keeps resolvers from caching at all.
    pub fn set_ttl(&self, seconds: u32) {
        self.state.ttl.store(seconds, Ordering::SeqCst);
    }

    /// How many queries the server has answered so far.
    pub fn queries(&self) -> usize {
        self.state.queries.load(Ordering::SeqCst)
    }

    fn zone(&self) -> std::sync::MutexGuard<'_, Zone> {
        self.state.zone.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the records of one type of `name`, dropping a CNAME it had.
    fn replace(&self, name: &str, record_type: RecordType, rdata: Vec<RData>) {
        let mut zone = self.zone();
        let records = zone.entry(key(name)).or_default();
        records.retain(|r| r.record_type() != record_type && r.record_type() != RecordType::CNAME);
        records.extend(rdata);
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// UDP and TCP sockets bound to the same free port of 127.0.0.1.
fn bind_udp_and_tcp() -> Result<(UdpSocket, TcpListener), String> {
    let mut last = String::new();
    for _ in 0..PORT_ATTEMPTS {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| format!("cannot bind a UDP socket on 127.0.0.1: {e}"))?;
        let port = udp
            .local_addr()
            .map_err(|e| format!("cannot read a bound UDP port: {e}"))?
            .port();
        match TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = format!("TCP port {port}: {e}"),
        }
    }
    Err(format!(
        "cannot find a port free for both UDP and TCP on 127.0.0.1 in {PORT_ATTEMPTS} attempts: {last}"
    ))
}

/// The zone's key for a name: lower case, no final dot.
fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A fully qualified name from test input; panics on one that is not a domain name.
fn fqdn(name: &str) -> Name {
    let mut parsed = Name::from_ascii(name).unwrap_or_else(|e| panic!("TestDns: {name:?} is not a domain name: {e}"));
    parsed.set_fqdn(true);
    parsed
}

/// The name a PTR record of `ip` lives at (RFC 1035 §3.5, RFC 3596 §2.5).
fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa")
        }
        IpAddr::V6(v6) => {
            let mut name = String::new();
            for byte in v6.octets().iter().rev() {
                name.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            name.push_str("ip6.arpa");
            name
        }
    }
}

/// The answer to one question.
struct Answer {
    code: ResponseCode,
    answers: Vec<Record>,
    /// The SOA of a negative answer.
    authority: Vec<Record>,
}

impl State {
    fn answer(&self, qname: &Name, qtype: RecordType) -> Answer {
        let ttl = self.ttl.load(Ordering::SeqCst);
        let zone = self.zone.lock().unwrap_or_else(PoisonError::into_inner);
        let mut answers = Vec::new();
        let mut owner = qname.clone();
        for _ in 0..CNAME_DEPTH {
            let name = key(&owner.to_ascii());
            let Some(records) = zone.get(&name) else {
                // An empty non-terminal exists (RFC 8020 §2). After a CNAME the code
                // is the target's, with the alias still answered (RFC 6604 §2.1).
                let below = format!(".{name}");
                let code = if zone.keys().any(|k| k.ends_with(&below)) {
                    ResponseCode::NoError
                } else {
                    ResponseCode::NXDomain
                };
                return negative(code, answers, ttl);
            };
            let cname = records.iter().find_map(|r| match r {
                RData::CNAME(target) if qtype != RecordType::CNAME => Some(target.0.clone()),
                _ => None,
            });
            if let Some(target) = cname {
                answers.push(Record::from_rdata(
                    owner.clone(),
                    ttl,
                    RData::CNAME(CNAME(target.clone())),
                ));
                owner = target;
                continue;
            }
            answers.extend(
                records
                    .iter()
                    .filter(|r| qtype == RecordType::ANY || r.record_type() == qtype)
                    .map(|r| Record::from_rdata(owner.clone(), ttl, r.clone())),
            );
            if answers.is_empty() {
                return negative(ResponseCode::NoError, answers, ttl);
            }
            return Answer {
                code: ResponseCode::NoError,
                answers,
                authority: Vec::new(),
            };
        }
        // A CNAME loop: what a real server answers after giving up.
        Answer {
            code: ResponseCode::ServFail,
            answers: Vec::new(),
            authority: Vec::new(),
        }
    }
}

/// A NODATA or NXDOMAIN answer with the root's SOA for negative caching (RFC 2308 §3).
fn negative(code: ResponseCode, answers: Vec<Record>, ttl: u32) -> Answer {
    let soa = SOA::new(
        fqdn("ns.tern-test-dns"),
        fqdn("hostmaster.tern-test-dns"),
        1,
        3600,
        600,
        86400,
        ttl,
    );
    Answer {
        code,
        answers,
        authority: vec![Record::from_rdata(Name::root(), ttl, RData::SOA(soa))],
    }
}

/// Answers every query from the shared zone.
struct Handler {
    state: Arc<State>,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, mut response: R) -> ResponseInfo {
        self.state.queries.fetch_add(1, Ordering::SeqCst);
        // RFC 6891 §6.1.1: an OPT in the query gets one in the response.
        let edns = request.edns.as_ref().map(|asked| {
            let mut edns = hickory_server::proto::op::Edns::new();
            edns.set_max_payload(asked.max_payload().max(512));
            edns
        });
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        let mut metadata = Metadata::response_from_request(&request.metadata);
        let query = match request.request_info() {
            Ok(info) if request.metadata.op_code == OpCode::Query => info.query,
            Ok(_) => {
                return send(
                    response,
                    builder.error_msg(&request.metadata, ResponseCode::NotImp),
                    metadata,
                )
                .await;
            }
            Err(_) => {
                return send(
                    response,
                    builder.error_msg(&request.metadata, ResponseCode::FormErr),
                    metadata,
                )
                .await;
            }
        };
        let answer = self.state.answer(query.original().name(), query.query_type());
        metadata.authoritative = true;
        metadata.response_code = answer.code;
        let message = builder.build(
            metadata,
            answer.answers.iter(),
            answer.authority.iter(),
            std::iter::empty(),
            std::iter::empty(),
        );
        match response.send_response(message).await {
            Ok(info) => info,
            Err(_) => failed(metadata),
        }
    }
}

/// Sends an error response; `metadata` stands in for the info if sending fails.
async fn send<'a, R: ResponseHandler>(
    mut response: R,
    message: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    metadata: Metadata,
) -> ResponseInfo {
    match response.send_response(message).await {
        Ok(info) => info,
        Err(_) => failed(metadata),
    }
}

/// The info of a response that could not be sent.
fn failed(mut metadata: Metadata) -> ResponseInfo {
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names_follow_in_addr_and_ip6_arpa() {
        assert_eq!(
            reverse_name(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
            "1.2.0.192.in-addr.arpa"
        );
        let v6 = reverse_name(IpAddr::V6("2001:db8::1".parse().expect("IPv6")));
        assert_eq!(
            v6,
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        );
    }
}
