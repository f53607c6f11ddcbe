//! The delivery worker: sends queued messages to other hosts.
//!
//! Each round it leases the entries that are due, groups their pending recipients by
//! destination (a domain's MX hosts, or a smarthost) and delivers each group over one
//! connection, one transaction per message (RFC 5321 §3.3), several destinations at a
//! time. The outcome of every recipient is written back to the entry:
//!
//! - 2xx after the message: delivered, never tried again;
//! - 5xx (at MAIL, RCPT or after DATA), a domain that does not exist or publishes a
//!   null MX (RFC 7505): failed, bounced to the sender (RFC 3464);
//! - 4xx or no host reachable: tried again after an exponential backoff, with a delay
//!   notice after `delay_notice_after`, and bounced after `max_queue_age`.
//!
//! MX resolution follows RFC 5321 §5.1: hosts by preference, falling back to the
//! domain's own A/AAAA when it has no MX. STARTTLS is used whenever offered, without
//! checking the certificate (opportunistic, RFC 7435); a failed handshake falls back
//! to plaintext, as a server that cannot do TLS would have had it anyway. MTA-STS and
//! DANE, which make TLS between MTAs verified, are not implemented yet.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use mail_auth::MessageAuthenticator;
use mail_send::SmtpClient;
use rustls_pki_types::ServerName;
use smtp_proto::{EXT_8BIT_MIME, EXT_CHUNKING, EXT_SIZE, EXT_SMTP_UTF8, EXT_START_TLS, EhloResponse};
use tern_store::lease::{is_dead_local_owner, owner_name};
use tern_store::{QueueEntry, QueueId, Store, StoreError};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::dsn::{self, Action, ReportedRecipient};
use crate::queue::{Envelope, Queue, Status, now};
use crate::{Smarthost, SmtpConfig};

/// How long a worker holds an entry it is delivering.
const LEASE_SECS: i64 = 15 * 60;
/// Entries leased per round.
const BATCH: usize = 64;
/// Destinations delivered to at the same time.
const PARALLEL_DESTINATIONS: usize = 16;
/// How often leases of dead processes are looked for.
const DEAD_OWNER_SCAN: Duration = Duration::from_secs(60);
/// How often the queue is looked at when nothing wakes the worker.
const POLL: Duration = Duration::from_secs(5);
/// RFC 5321 §4.5.3.2 client timeouts: 5 minutes for the greeting and commands, 10 for
/// the reply after the message.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5 * 60);
const FINAL_REPLY_TIMEOUT: Duration = Duration::from_secs(10 * 60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The backoff after the `attempts`-th failed attempt: the first retry after
/// `first_retry`, each later one twice as long, at most 4 hours apart.
pub fn backoff(first_retry: Duration, attempts: u32) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(16);
    first_retry.saturating_mul(factor).min(Duration::from_secs(4 * 3600))
}

/// What became of one recipient in one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered { reply: String, host: String },
    Permanent { reply: String, host: Option<String> },
    Temporary { reply: String, host: Option<String> },
}

/// Where a group of recipients is sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Destination {
    /// The MX hosts of a domain.
    Domain(String),
    /// A smarthost, by its index in the config (global first).
    Smarthost(usize),
}

/// One message's share of a destination.
struct Job {
    id: QueueId,
    sender: String,
    envelope: Arc<Envelope>,
    message: Arc<Vec<u8>>,
    recipients: Vec<String>,
}

/// The delivery worker.
pub struct Deliverer {
    config: SmtpConfig,
    queue: Queue,
    resolver: Arc<MessageAuthenticator>,
    owner: String,
    /// Retries' first delay (`[queue] first_retry`).
    first_retry: Duration,
    opportunistic_tls: tokio_rustls::TlsConnector,
    verified_tls: Option<tokio_rustls::TlsConnector>,
    /// When dead lease holders were last looked for.
    dead_scan: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Deliverer {
    pub fn new(
        config: SmtpConfig,
        queue: Queue,
        resolver: Arc<MessageAuthenticator>,
        first_retry: Duration,
        extra_ca_files: &[String],
    ) -> Deliverer {
        let verified_tls = match tern_net::tls::client_config(extra_ca_files) {
            Ok(c) => Some(tokio_rustls::TlsConnector::from(c)),
            Err(e) => {
                warn!(error = %e, "no verified TLS for smarthosts");
                None
            }
        };
        Deliverer {
            config,
            queue,
            resolver,
            owner: owner_name(),
            first_retry,
            opportunistic_tls: tokio_rustls::TlsConnector::from(tern_net::tls::opportunistic_client_config()),
            verified_tls,
            dead_scan: std::sync::Mutex::new(None),
        }
    }

    fn store(&self) -> &Arc<dyn Store> {
        self.queue.store()
    }

    /// Delivers until `stop` turns true. A round in progress finishes first (its
    /// transactions are short; the lease covers a crash).
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let me = Arc::new(self);
        loop {
            if *stop.borrow() {
                break;
            }
            match me.clone().round().await {
                Ok(n) if n > 0 => continue, // more may be due: look again at once
                Ok(_) => {}
                Err(e) => warn!(error = %e, "outbound queue round failed"),
            }
            tokio::select! {
                () = me.queue.woken() => {}
                () = tokio::time::sleep(POLL) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// One round: lease what is due, deliver it, record the outcomes. Returns how many
    /// entries it worked on.
    pub async fn round(self: Arc<Self>) -> Result<usize, StoreError> {
        let dead = self.dead_owners().await?;
        let entries = self
            .store()
            .claim_queue(&self.owner, now() + LEASE_SECS, &dead, BATCH)
            .await?;
        if entries.is_empty() {
            return Ok(0);
        }
        let count = entries.len();
        let mut jobs: BTreeMap<Destination, Vec<Job>> = BTreeMap::new();
        let mut envelopes: HashMap<QueueId, (QueueEntry, Envelope)> = HashMap::new();
        for entry in entries {
            let envelope = Envelope::parse(&entry);
            let message = match self.store().queue_message(entry.id).await {
                Ok(m) => Arc::new(m),
                Err(e) => {
                    warn!(id = %entry.id, error = %e, "queued message unreadable; leaving it for the next round");
                    continue;
                }
            };
            let shared = Arc::new(envelope.clone());
            let mut by_destination: BTreeMap<Destination, Vec<String>> = BTreeMap::new();
            for r in envelope.pending() {
                by_destination
                    .entry(self.destination(&entry.sender, &r.domain()))
                    .or_default()
                    .push(r.address.clone());
            }
            for (destination, recipients) in by_destination {
                jobs.entry(destination).or_default().push(Job {
                    id: entry.id,
                    sender: entry.sender.clone(),
                    envelope: shared.clone(),
                    message: message.clone(),
                    recipients,
                });
            }
            envelopes.insert(entry.id, (entry, envelope));
        }
        // Deliver to several destinations at once; one connection per destination.
        let mut outcomes: Vec<(QueueId, String, Outcome)> = Vec::new();
        let mut running = tokio::task::JoinSet::new();
        for (destination, group) in jobs {
            while running.len() >= PARALLEL_DESTINATIONS {
                if let Some(Ok(done)) = running.join_next().await {
                    outcomes.extend(done);
                }
            }
            let me = self.clone();
            running.spawn(async move { me.deliver_destination(destination, group).await });
        }
        while let Some(done) = running.join_next().await {
            match done {
                Ok(done) => outcomes.extend(done),
                Err(e) => warn!(error = %e, "a delivery task failed"),
            }
        }
        let mut per_entry: HashMap<QueueId, Vec<(String, Outcome)>> = HashMap::new();
        for (id, rcpt, outcome) in outcomes {
            per_entry.entry(id).or_default().push((rcpt, outcome));
        }
        for (id, (entry, mut envelope)) in envelopes {
            let results = per_entry.remove(&id).unwrap_or_default();
            if let Err(e) = self.record(&entry, &mut envelope, results).await {
                warn!(id = %id, error = %e, "could not record delivery results");
            }
        }
        Ok(count)
    }

    /// Lease holders on this machine whose process is gone (a server killed with
    /// messages in flight): looked for when the worker starts and then once a minute,
    /// since it means reading the whole queue.
    async fn dead_owners(&self) -> Result<Vec<String>, StoreError> {
        {
            let mut last = self.dead_scan.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < DEAD_OWNER_SCAN) {
                return Ok(Vec::new());
            }
            *last = Some(std::time::Instant::now());
        }
        Ok(self
            .store()
            .queue_entries()
            .await?
            .into_iter()
            .filter_map(|e| e.lease.map(|(owner, _)| owner))
            .filter(|owner| is_dead_local_owner(owner, &self.owner))
            .collect())
    }

    fn destination(&self, sender: &str, rcpt_domain: &str) -> Destination {
        let sender_domain = crate::policy::domain_of(sender).to_ascii_lowercase();
        if let Some(i) = self
            .config
            .domain_smarthosts
            .iter()
            .position(|(d, _)| d.eq_ignore_ascii_case(&sender_domain))
        {
            return Destination::Smarthost(i + 1);
        }
        if self.config.smarthost.is_some() {
            return Destination::Smarthost(0);
        }
        Destination::Domain(rcpt_domain.to_string())
    }

    fn smarthost(&self, index: usize) -> Option<&Smarthost> {
        match index {
            0 => self.config.smarthost.as_ref(),
            i => self.config.domain_smarthosts.get(i - 1).map(|(_, s)| s),
        }
    }

    /// Applies one round's outcomes: marks recipients, sends bounces and delay notices,
    /// and writes the entry back (or removes it when nothing is pending).
    async fn record(
        &self,
        entry: &QueueEntry,
        envelope: &mut Envelope,
        results: Vec<(String, Outcome)>,
    ) -> Result<(), StoreError> {
        let now = now();
        let expired = now >= entry.created + self.config.max_queue_age.as_secs() as i64;
        let mut failed = Vec::new();
        let mut delivered = Vec::new();
        let mut tempfailed = false;
        for r in envelope.recipients.iter_mut().filter(|r| r.status == Status::Pending) {
            let Some((_, outcome)) = results.iter().find(|(a, _)| a == &r.address) else {
                continue;
            };
            r.attempts += 1;
            match outcome {
                Outcome::Delivered { reply, host } => {
                    r.status = Status::Delivered;
                    r.last_reply = Some(reply.clone());
                    r.remote_host = Some(host.clone());
                    info!(id = %entry.id, rcpt = %r.address, host = %host, "delivered");
                    delivered.push(r.clone());
                }
                Outcome::Permanent { reply, host } => {
                    r.status = Status::Failed;
                    r.last_reply = Some(reply.clone());
                    r.remote_host = host.clone();
                    info!(id = %entry.id, rcpt = %r.address, reply = %reply, "delivery failed; bouncing");
                    failed.push(r.clone());
                }
                Outcome::Temporary { reply, host } => {
                    r.last_reply = Some(reply.clone());
                    r.remote_host = host.clone();
                    if expired {
                        // Returned with the last reply and its 4.x.x status, as
                        // RFC 3464 §2.3.4 has it: the failure was never permanent.
                        r.status = Status::Failed;
                        info!(id = %entry.id, rcpt = %r.address, attempts = r.attempts, "gave up; bouncing");
                        failed.push(r.clone());
                    } else {
                        tempfailed = true;
                        debug!(id = %entry.id, rcpt = %r.address, reply = %reply, "delivery deferred");
                    }
                }
            }
        }
        envelope.attempts += 1;
        let message = || self.store().queue_message(entry.id);
        if !entry.sender.is_empty() {
            let report = |rcpts: Vec<ReportedRecipient>, action_delay: bool, original: &[u8]| {
                dsn::build(&dsn::Report {
                    hostname: &self.config.hostname,
                    to: &entry.sender,
                    env_id: envelope.env_id.as_deref(),
                    arrival: entry.created,
                    retry_until: action_delay.then(|| entry.created + self.config.max_queue_age.as_secs() as i64),
                    recipients: &rcpts,
                    original,
                    headers_only: envelope.ret_headers_only,
                })
            };
            let to_report = |rs: &[crate::queue::Recipient], action: Action| -> Vec<ReportedRecipient> {
                rs.iter()
                    .filter(|r| match action {
                        Action::Failed => r.notify.failure,
                        Action::Delayed => r.notify.delay,
                        Action::Delivered => r.notify.success,
                    })
                    .map(|r| ReportedRecipient {
                        address: r.address.clone(),
                        orcpt: r.orcpt.clone(),
                        action,
                        reply: r.last_reply.clone(),
                        remote_host: r.remote_host.clone(),
                    })
                    .collect()
            };
            let bounced = to_report(&failed, Action::Failed);
            let succeeded = to_report(&delivered, Action::Delivered);
            let delay_due = tempfailed
                && !envelope.delay_notified
                && now >= entry.created + self.config.delay_notice_after.as_secs() as i64;
            let delayed = if delay_due {
                let pending: Vec<_> = envelope.pending().cloned().collect();
                to_report(&pending, Action::Delayed)
            } else {
                Vec::new()
            };
            if !bounced.is_empty() || !succeeded.is_empty() || !delayed.is_empty() {
                let original = message().await?;
                for (rcpts, delay) in [(bounced, false), (succeeded, false), (delayed, true)] {
                    if !rcpts.is_empty() {
                        self.notify_sender(&entry.sender, report(rcpts, delay, &original))
                            .await?;
                    }
                }
            }
            if delay_due {
                envelope.delay_notified = true;
            }
        } else if !failed.is_empty() {
            // A bounce that bounces is dropped (RFC 5321 §6.1: no loops of notices).
            warn!(id = %entry.id, "a delivery status notification could not be delivered; dropped");
        }
        if envelope.pending().next().is_none() {
            return self.store().delete_queue_entry(entry.id).await;
        }
        let next = now + backoff(self.first_retry, envelope.attempts).as_secs() as i64;
        self.store()
            .update_queue_entry(entry.id, &self.owner, &envelope.to_json(), next)
            .await
    }

    /// Sends a DSN to `to`: into the mailbox if it is local, else through the queue.
    async fn notify_sender(&self, to: &str, dsn: Vec<u8>) -> Result<(), StoreError> {
        match crate::policy::local_recipient(self.store().as_ref(), to, false).await {
            Ok(Some(account)) => {
                crate::local::deliver(self.store().as_ref(), &[account], dsn, crate::local::Folder::Inbox).await?;
            }
            Ok(None) => {
                let mut envelope = Envelope::default();
                envelope.recipients.push(crate::queue::Recipient::new(to));
                envelope.smtputf8 = !to.is_ascii();
                self.queue.submit("", dsn, &envelope).await?;
            }
            // A local sender that cannot take it now (full, disabled): nothing more to do.
            Err(reply) => warn!(rcpt = %to, reply = %reply, "delivery status notification not delivered"),
        }
        Ok(())
    }

    /// Delivers every job of one destination over (at most) one connection at a time.
    async fn deliver_destination(&self, destination: Destination, jobs: Vec<Job>) -> Vec<(QueueId, String, Outcome)> {
        let mut out = Vec::new();
        let all_failed = |jobs: &[Job], outcome: Outcome, out: &mut Vec<(QueueId, String, Outcome)>| {
            for job in jobs {
                for r in &job.recipients {
                    out.push((job.id, r.clone(), outcome.clone()));
                }
            }
        };
        let hosts = match &destination {
            Destination::Domain(domain) => match self.mx_hosts(domain).await {
                Ok(hosts) => hosts,
                Err(outcome) => {
                    all_failed(&jobs, outcome, &mut out);
                    return out;
                }
            },
            Destination::Smarthost(i) => match self.smarthost(*i) {
                Some(s) => vec![(s.host.clone(), None)],
                None => return out,
            },
        };
        let smarthost = match &destination {
            Destination::Smarthost(i) => self.smarthost(*i).cloned(),
            Destination::Domain(_) => None,
        };
        let mut connection: Option<Connected> = None;
        for (n, job) in jobs.iter().enumerate() {
            if connection.is_none() {
                match self.connect_any(&hosts, smarthost.as_ref()).await {
                    Ok(c) => connection = Some(c),
                    Err(outcome) => {
                        all_failed(&jobs[n..], outcome, &mut out);
                        return out;
                    }
                }
            }
            let Some(c) = connection.as_mut() else { break };
            let (results, usable) = c.transaction(job).await;
            for (rcpt, outcome) in results {
                out.push((job.id, rcpt, outcome));
            }
            if !usable {
                connection = None;
            }
        }
        if let Some(c) = connection {
            c.quit().await;
        }
        out
    }

    /// RFC 5321 §5.1: the hosts to try, in order, each with its addresses when known.
    async fn mx_hosts(&self, domain: &str) -> Result<Vec<(String, Option<Vec<IpAddr>>)>, Outcome> {
        let temp = |what: String| Outcome::Temporary {
            reply: format!("451 4.4.3 {what}"),
            host: None,
        };
        match self.resolver.mx_lookup(domain, None::<&NoCache>).await {
            Ok(set) if !set.rrset.is_empty() => {
                let mut hosts = Vec::new();
                for mx in set.rrset.iter() {
                    for exchange in mx.exchanges.iter() {
                        let host = exchange.trim_end_matches('.').to_string();
                        // RFC 7505: "0 ." says the domain takes no mail at all.
                        if host.is_empty() {
                            return Err(Outcome::Permanent {
                                reply: format!("556 5.1.10 {domain} does not accept mail (null MX)"),
                                host: None,
                            });
                        }
                        hosts.push((host, None));
                    }
                }
                Ok(hosts)
            }
            Ok(_) | Err(mail_auth::Error::Dns(mail_auth::DnsError::RecordNotFound(_))) => {
                // No MX: the domain itself is the implicit MX, if it has an address.
                match self
                    .resolver
                    .ip_lookup(
                        domain,
                        mail_auth::IpLookupStrategy::Ipv4thenIpv6,
                        10,
                        None::<&NoCacheV4>,
                        None::<&NoCacheV6>,
                    )
                    .await
                {
                    Ok(ips) if !ips.is_empty() => Ok(vec![(domain.to_string(), Some(ips))]),
                    Err(mail_auth::Error::Dns(mail_auth::DnsError::RecordNotFound(_))) | Ok(_) => {
                        Err(Outcome::Permanent {
                            reply: format!("550 5.1.2 {domain} has no mail server (no MX and no address)"),
                            host: None,
                        })
                    }
                    Err(e) => Err(temp(format!("cannot look up {domain}: {e}"))),
                }
            }
            Err(e) => Err(temp(format!("cannot look up the MX of {domain}: {e}"))),
        }
    }

    async fn addresses(&self, host: &str) -> Vec<IpAddr> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return vec![ip];
        }
        self.resolver
            .ip_lookup(
                host,
                mail_auth::IpLookupStrategy::Ipv4thenIpv6,
                10,
                None::<&NoCacheV4>,
                None::<&NoCacheV6>,
            )
            .await
            .unwrap_or_default()
    }

    /// Connects to the first host (and address) that answers with a 220 and EHLO.
    async fn connect_any(
        &self,
        hosts: &[(String, Option<Vec<IpAddr>>)],
        smarthost: Option<&Smarthost>,
    ) -> Result<Connected, Outcome> {
        let port = smarthost.map_or(self.config.remote_port, |s| s.port);
        let mut last = "451 4.4.1 no mail server of the destination answered".to_string();
        let mut last_host = None;
        for (host, known) in hosts {
            let ips = match known {
                Some(ips) => ips.clone(),
                None => self.addresses(host).await,
            };
            if ips.is_empty() {
                last = format!("451 4.4.3 cannot find the address of {host}");
                continue;
            }
            for ip in ips {
                match self.connect(host, SocketAddr::new(ip, port), smarthost, true).await {
                    Ok(c) => return Ok(c),
                    Err(Failure::Permanent(reply)) => {
                        return Err(Outcome::Permanent {
                            reply,
                            host: Some(host.clone()),
                        });
                    }
                    Err(Failure::Temporary(reply)) => {
                        debug!(%host, %ip, %reply, "cannot deliver through this host");
                        last = reply;
                        last_host = Some(host.clone());
                    }
                }
            }
        }
        Err(Outcome::Temporary {
            reply: last,
            host: last_host,
        })
    }

    /// Connects, reads the greeting, says EHLO, starts TLS (if
    /// `try_starttls` and offered, or as the smarthost settings require) and logs in to a smarthost.
    async fn connect(
        &self,
        host: &str,
        addr: SocketAddr,
        smarthost: Option<&Smarthost>,
        try_starttls: bool,
    ) -> Result<Connected, Failure> {
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| Failure::Temporary(format!("451 4.4.1 connection to {host} ({addr}) timed out")))?
            .map_err(|e| Failure::Temporary(format!("451 4.4.1 cannot connect to {host} ({addr}): {e}")))?;
        let implicit = smarthost.is_some_and(|s| s.implicit_tls);
        let require_tls = smarthost.is_some_and(|s| s.require_tls || s.implicit_tls);
        let connector = match smarthost {
            Some(s) if s.require_tls || s.implicit_tls => self.verified_tls.clone().ok_or_else(|| {
                Failure::Temporary("451 4.7.5 no CA certificates to verify the smarthost with".into())
            })?,
            _ => self.opportunistic_tls.clone(),
        };
        let stream = if implicit {
            Stream::Tls(Box::new(handshake(&connector, host, tcp).await?))
        } else {
            Stream::Plain(tcp)
        };
        let mut client = SmtpClient {
            stream,
            timeout: COMMAND_TIMEOUT,
        };
        // RFC 5321 §3.1: the greeting.
        let greeting = read_reply(&mut client, COMMAND_TIMEOUT).await?;
        if greeting.code != 220 {
            return Err(classify(&greeting, host));
        }
        let mut ehlo = self.ehlo(&mut client, host).await?;
        if try_starttls && !client.stream.is_tls() && ehlo.capabilities & EXT_START_TLS != 0 {
            match starttls(client, &connector, host).await {
                Ok(tls) => {
                    client = tls;
                    // RFC 3207 §4.2: everything learnt before TLS is forgotten.
                    ehlo = self.ehlo(&mut client, host).await?;
                }
                Err(reply) if require_tls => return Err(Failure::Temporary(reply)),
                Err(reply) => {
                    // The server offered TLS but the handshake failed: deliver in
                    // plaintext on a new connection, as without STARTTLS.
                    debug!(%host, %reply, "STARTTLS failed; delivering without TLS");
                    return Box::pin(self.connect(host, addr, smarthost, false)).await;
                }
            }
        } else if require_tls && !client.stream.is_tls() {
            return Err(Failure::Temporary(format!(
                "451 4.7.4 {host} does not offer STARTTLS, which the smarthost settings require"
            )));
        }
        if let Some(s) = smarthost
            && let Some((user, password)) = &s.credentials
        {
            let credentials = mail_send::Credentials::new(user.as_str(), password.as_str());
            if let Err(e) = client.authenticate(&credentials, &ehlo).await {
                return Err(Failure::Temporary(format!(
                    "454 4.7.0 login at smarthost {host} failed: {e}"
                )));
            }
        }
        Ok(Connected {
            client,
            ehlo,
            host: host.to_string(),
        })
    }

    async fn ehlo(&self, client: &mut SmtpClient<Stream>, host: &str) -> Result<EhloResponse<String>, Failure> {
        match client.ehlo(&self.config.hostname).await {
            Ok(ehlo) => Ok(ehlo),
            Err(mail_send::Error::UnexpectedReply(r)) => Err(classify(&r, host)),
            Err(e) => Err(Failure::Temporary(format!("451 4.4.2 EHLO to {host} failed: {e}"))),
        }
    }
}

type NoCache = mail_auth::common::cache::NoCache<Box<str>, mail_auth::RecordSet<mail_auth::MX>>;
type NoCacheV4 = mail_auth::common::cache::NoCache<Box<str>, mail_auth::RecordSet<std::net::Ipv4Addr>>;
type NoCacheV6 = mail_auth::common::cache::NoCache<Box<str>, mail_auth::RecordSet<std::net::Ipv6Addr>>;

/// Why a connection could not be used.
enum Failure {
    Permanent(String),
    Temporary(String),
}

impl Failure {
    /// The reply text, whichever kind.
    fn into_reply(self) -> String {
        match self {
            Failure::Permanent(r) | Failure::Temporary(r) => r,
        }
    }
}

/// What a refusal (4xx or 5xx) from `host` means for the recipients it concerns.
fn refused(r: &smtp_proto::Response<String>, host: &str) -> Outcome {
    match classify(r, host) {
        Failure::Permanent(reply) => Outcome::Permanent {
            reply,
            host: Some(host.to_string()),
        },
        Failure::Temporary(reply) => Outcome::Temporary {
            reply,
            host: Some(host.to_string()),
        },
    }
}

fn reply_text(r: &smtp_proto::Response<String>) -> String {
    let esc = if r.esc[0] != 0 {
        format!("{}.{}.{} ", r.esc[0], r.esc[1], r.esc[2])
    } else {
        String::new()
    };
    format!("{} {esc}{}", r.code, r.message.replace(['\r', '\n'], " "))
}

fn classify(r: &smtp_proto::Response<String>, host: &str) -> Failure {
    let text = reply_text(r);
    debug!(%host, reply = %text, "refused");
    if r.code >= 500 {
        Failure::Permanent(text)
    } else {
        Failure::Temporary(text)
    }
}

async fn read_reply(
    client: &mut SmtpClient<Stream>,
    timeout: Duration,
) -> Result<smtp_proto::Response<String>, Failure> {
    match tokio::time::timeout(timeout, client.read()).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(Failure::Temporary(format!("451 4.4.2 connection lost: {e}"))),
        Err(_) => Err(Failure::Temporary("451 4.4.2 timed out waiting for the server".into())),
    }
}

async fn handshake(
    connector: &tokio_rustls::TlsConnector,
    host: &str,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Failure> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| Failure::Permanent(format!("554 5.4.0 {host} is not a valid TLS server name")))?;
    tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp))
        .await
        .map_err(|_| Failure::Temporary(format!("451 4.7.5 TLS handshake with {host} timed out")))?
        .map_err(|e| Failure::Temporary(format!("451 4.7.5 TLS handshake with {host} failed: {e}")))
}

/// RFC 3207: STARTTLS on a plain connection.
async fn starttls(
    mut client: SmtpClient<Stream>,
    connector: &tokio_rustls::TlsConnector,
    host: &str,
) -> Result<SmtpClient<Stream>, String> {
    let reply = client
        .cmd(b"STARTTLS\r\n")
        .await
        .map_err(|e| format!("451 4.7.5 STARTTLS: {e}"))?;
    if reply.code != 220 {
        return Err(reply_text(&reply));
    }
    let Stream::Plain(tcp) = client.stream else {
        return Err("451 4.7.5 TLS is already active".into());
    };
    match handshake(connector, host, tcp).await {
        Ok(tls) => Ok(SmtpClient {
            stream: Stream::Tls(Box::new(tls)),
            timeout: client.timeout,
        }),
        Err(f) => Err(f.into_reply()),
    }
}

/// An open, greeted connection to a receiving server.
struct Connected {
    client: SmtpClient<Stream>,
    ehlo: EhloResponse<String>,
    host: String,
}

impl Connected {
    /// One message to its recipients at this host. Returns each recipient's outcome
    /// and whether the connection can carry another transaction.
    async fn transaction(&mut self, job: &Job) -> (Vec<(String, Outcome)>, bool) {
        let host = self.host.clone();
        let all = |outcome: Outcome| job.recipients.iter().map(|r| (r.clone(), outcome.clone())).collect();
        let broken = |reply: String| Outcome::Temporary {
            reply,
            host: Some(host.clone()),
        };
        let caps = self.ehlo.capabilities;
        if job.envelope.smtputf8 && caps & EXT_SMTP_UTF8 == 0 {
            // RFC 6531 §3.2: a message that needs SMTPUTF8 cannot go to a server
            // without it.
            let reply = format!("553 5.6.7 {host} does not support SMTPUTF8, which this message needs");
            return (
                all(Outcome::Permanent {
                    reply,
                    host: Some(host.clone()),
                }),
                true,
            );
        }
        let mut params = String::new();
        if caps & EXT_SIZE != 0 {
            params.push_str(&format!(" SIZE={}", job.message.len()));
        }
        if job.envelope.eight_bit && caps & EXT_8BIT_MIME != 0 {
            params.push_str(" BODY=8BITMIME");
        }
        if job.envelope.smtputf8 {
            params.push_str(" SMTPUTF8");
        }
        let cmd = format!("MAIL FROM:<{}>{params}\r\n", job.sender);
        let reply = match self.command(cmd.as_bytes()).await {
            Ok(r) => r,
            Err(e) => return (all(broken(e)), false),
        };
        if reply.code / 100 != 2 {
            let outcome = refused(&reply, &host);
            let usable = self.command(b"RSET\r\n").await.is_ok();
            return (all(outcome), usable);
        }
        let mut results = Vec::new();
        let mut accepted = Vec::new();
        for rcpt in &job.recipients {
            let cmd = format!("RCPT TO:<{rcpt}>\r\n");
            match self.command(cmd.as_bytes()).await {
                Ok(r) if r.code / 100 == 2 => accepted.push(rcpt.clone()),
                Ok(r) => {
                    let outcome = refused(&r, &host);
                    results.push((rcpt.clone(), outcome));
                }
                Err(e) => {
                    let answered: Vec<String> = results.iter().map(|(a, _)| a.clone()).collect();
                    for r in job.recipients.iter().filter(|r| !answered.contains(r)) {
                        results.push((r.clone(), broken(e.clone())));
                    }
                    return (results, false);
                }
            }
        }
        if accepted.is_empty() {
            let usable = self.command(b"RSET\r\n").await.is_ok();
            return (results, usable);
        }
        let final_reply = if caps & EXT_CHUNKING != 0 {
            self.bdat(&job.message).await
        } else {
            self.data(&job.message).await
        };
        let (outcome, usable) = match final_reply {
            Ok(r) if r.code / 100 == 2 => (
                Outcome::Delivered {
                    reply: reply_text(&r),
                    host: host.clone(),
                },
                true,
            ),
            Ok(r) => (refused(&r, &host), true),
            // Lost mid-message: the server did not take it (RFC 5321 §4.1.1.4 needs
            // the final reply), so it is tried again.
            Err(e) => (broken(e), false),
        };
        for rcpt in accepted {
            results.push((rcpt, outcome.clone()));
        }
        (results, usable)
    }

    async fn command(&mut self, cmd: &[u8]) -> Result<smtp_proto::Response<String>, String> {
        self.client
            .stream
            .write_all(cmd)
            .await
            .map_err(|e| format!("451 4.4.2 connection to {} lost: {e}", self.host))?;
        self.client
            .stream
            .flush()
            .await
            .map_err(|e| format!("451 4.4.2 connection to {} lost: {e}", self.host))?;
        read_reply(&mut self.client, COMMAND_TIMEOUT)
            .await
            .map_err(Failure::into_reply)
    }

    /// RFC 5321 §4.5.2: DATA with dot-stuffing after CRLF, the message ending in CRLF
    /// before the final ".".
    async fn data(&mut self, message: &[u8]) -> Result<smtp_proto::Response<String>, String> {
        let reply = self.command(b"DATA\r\n").await?;
        if reply.code != 354 {
            return Ok(reply);
        }
        let lost = |e: std::io::Error| format!("451 4.4.2 connection lost during DATA: {e}");
        let stream = &mut self.client.stream;
        let mut start = 0;
        let mut at_line_start = true;
        for (i, &b) in message.iter().enumerate() {
            if at_line_start && b == b'.' {
                stream.write_all(&message[start..i]).await.map_err(lost)?;
                stream.write_all(b".").await.map_err(lost)?;
                start = i;
            }
            at_line_start = b == b'\n' && i > 0 && message[i - 1] == b'\r';
        }
        stream.write_all(&message[start..]).await.map_err(lost)?;
        if !message.ends_with(b"\r\n") {
            stream.write_all(b"\r\n").await.map_err(lost)?;
        }
        stream.write_all(b".\r\n").await.map_err(lost)?;
        stream.flush().await.map_err(lost)?;
        read_reply(&mut self.client, FINAL_REPLY_TIMEOUT)
            .await
            .map_err(Failure::into_reply)
    }

    /// RFC 3030 §2: the message as one BDAT LAST chunk, byte for byte.
    async fn bdat(&mut self, message: &[u8]) -> Result<smtp_proto::Response<String>, String> {
        let lost = |e: std::io::Error| format!("451 4.4.2 connection lost during BDAT: {e}");
        let stream = &mut self.client.stream;
        stream
            .write_all(format!("BDAT {} LAST\r\n", message.len()).as_bytes())
            .await
            .map_err(lost)?;
        stream.write_all(message).await.map_err(lost)?;
        stream.flush().await.map_err(lost)?;
        read_reply(&mut self.client, FINAL_REPLY_TIMEOUT)
            .await
            .map_err(Failure::into_reply)
    }

    async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.command(b"QUIT\r\n")).await;
    }
}

/// A connection to a receiving server, plain or TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_four_hours() {
        let first = Duration::from_secs(300);
        assert_eq!(backoff(first, 1), Duration::from_secs(300));
        assert_eq!(backoff(first, 2), Duration::from_secs(600));
        assert_eq!(backoff(first, 4), Duration::from_secs(2400));
        assert_eq!(backoff(first, 30), Duration::from_secs(4 * 3600));
    }
}
