//! Tern's SMTP: the MX that receives mail for hosted domains (RFC 5321), message
//! submission for users' clients (RFC 6409, RFC 8314), and the durable outbound queue
//! that delivers to other hosts, signed with DKIM.
//!
//! - [`session`]: one SMTP conversation, inbound or submission, over smtp-proto's
//!   parser: EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA, BDAT.
//! - [`policy`]: who may send what to whom: hosted domains and recipients, relay
//!   refusal, the submission sender rules.
//! - [`verify`]: SPF, DKIM, ARC and DMARC of incoming mail (mail-auth).
//! - [`local`]: delivery into mailboxes through the store.
//! - [`queue`]: what a queued message's envelope records, and queueing it.
//! - [`outbound`]: the delivery worker: MX lookup, STARTTLS, retries, bounces.
//! - [`dsn`]: delivery status notifications (RFC 3464).
//! - [`dkim`]: keys, DNS records and signing.
//! - [`rate`]: per-sender and per-address hourly limits.
//! - [`reply`]: reply codes and enhanced status codes.

pub mod dkim;
pub mod dsn;
pub mod local;
pub mod outbound;
pub mod policy;
pub mod queue;
pub mod rate;
pub mod reply;
pub mod rules;
pub mod session;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use tern_net::auth::Authenticator;
use tern_net::listeners::{BoxFuture, ConnContext, Connection, Service};
use tern_store::{Account, Store};

/// What happens to mail that fails DMARC under the sender's `p=reject` policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DmarcReject {
    /// Refused at the end of DATA (550 5.7.1), as the domain owner asked.
    #[default]
    Reject,
    /// Accepted and delivered to the recipient's Junk folder.
    Junk,
}

/// A smarthost: a relay that delivers for Tern (many networks block port 25 out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Smarthost {
    pub host: String,
    pub port: u16,
    /// TLS from the first byte (port 465) instead of STARTTLS.
    pub implicit_tls: bool,
    /// Require STARTTLS and a valid certificate (otherwise opportunistic).
    pub require_tls: bool,
    /// AUTH PLAIN/LOGIN credentials.
    pub credentials: Option<(String, String)>,
}

/// SMTP settings, from `[smtp]`, `[queue]` and `[relay]` in tern.toml.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// The host name in greetings, EHLO and Received fields.
    pub hostname: String,
    /// SIZE (RFC 1870): the largest message accepted.
    pub max_message_size: u64,
    /// Recipients per transaction (RFC 5321 §4.5.3.1.8: at least 100).
    pub max_recipients: usize,
    /// Transactions per connection before "421 come back later". High: a sending MTA
    /// that gets 421 defers the message rather than simply reconnecting.
    pub max_messages_per_connection: usize,
    /// Messages an authenticated user may submit per hour.
    pub submissions_per_hour: u32,
    /// Recipients an authenticated user may send to per hour.
    pub recipients_per_hour: u32,
    /// Messages accepted per hour from one IP address on the MX.
    pub inbound_per_ip_per_hour: u32,
    pub dmarc_reject: DmarcReject,
    /// RFC 5321 §4.5.3.2 server timeouts.
    pub command_timeout: Duration,
    pub data_block_timeout: Duration,
    /// Outbound: how long a message is retried before it bounces (5 days).
    pub max_queue_age: Duration,
    /// Outbound: when the sender is told a message is delayed (4 hours).
    pub delay_notice_after: Duration,
    /// Outbound: the port MX hosts are reached on (25; tests use another).
    pub remote_port: u16,
    /// Outbound: a relay for all mail, and per sending domain.
    pub smarthost: Option<Smarthost>,
    pub domain_smarthosts: Vec<(String, Smarthost)>,
    /// DNS servers for the checks and MX lookups; empty: the system's.
    pub nameservers: Vec<std::net::SocketAddr>,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            hostname: "localhost".into(),
            max_message_size: 64 * 1024 * 1024,
            max_recipients: 100,
            max_messages_per_connection: 10_000,
            submissions_per_hour: 500,
            recipients_per_hour: 2000,
            inbound_per_ip_per_hour: 3600,
            dmarc_reject: DmarcReject::Reject,
            command_timeout: Duration::from_secs(5 * 60),
            data_block_timeout: Duration::from_secs(3 * 60),
            max_queue_age: Duration::from_secs(5 * 24 * 3600),
            delay_notice_after: Duration::from_secs(4 * 3600),
            remote_port: 25,
            smarthost: None,
            domain_smarthosts: Vec::new(),
            nameservers: Vec::new(),
        }
    }
}

/// Which side of SMTP a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The MX (port 25): mail for hosted domains from anyone, no relaying, no AUTH.
    Inbound,
    /// Submission (587, 465): authenticated users send anywhere.
    Submission,
}

/// The SMTP server every SMTP listener shares.
pub struct SmtpServer {
    pub(crate) config: SmtpConfig,
    pub(crate) auth: Arc<Authenticator>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) resolver: Arc<mail_auth::MessageAuthenticator>,
    pub(crate) queue: queue::Queue,
    pub(crate) rates: rate::Rates,
}

impl SmtpServer {
    pub fn new(
        config: SmtpConfig,
        auth: Arc<Authenticator>,
        resolver: Arc<mail_auth::MessageAuthenticator>,
        queue: queue::Queue,
    ) -> Arc<SmtpServer> {
        Arc::new(SmtpServer {
            store: auth.store().clone(),
            rates: rate::Rates::default(),
            config,
            auth,
            resolver,
            queue,
        })
    }
}

impl SmtpServer {
    /// Sends a message written in webmail by `account` (logged in from `peer`) the way
    /// an authenticated submission session does: same checks and limits, DKIM, queue
    /// and local delivery. `Err` is the SMTP refusal, whose text says what to change.
    pub async fn submit(
        &self,
        account: Account,
        peer: std::net::SocketAddr,
        sender: &str,
        recipients: &[String],
        message: Vec<u8>,
    ) -> Result<reply::Reply, reply::Reply> {
        session::submit_without_socket(self, account, peer, sender, recipients, message).await
    }

    /// The largest message submission accepts, in bytes.
    pub fn max_message_size(&self) -> u64 {
        self.config.max_message_size
    }
}

impl Service for SmtpServer {
    fn name(&self) -> &'static str {
        "smtp"
    }

    fn handle(self: Arc<Self>, conn: Connection, ctx: ConnContext) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let mode = if ctx.listener == "smtp" {
                Mode::Inbound
            } else {
                Mode::Submission
            };
            session::serve(&self, conn, &ctx, mode).await;
        })
    }

    fn busy_reply(&self) -> Option<&'static [u8]> {
        // RFC 5321 §3.8: 421 and close.
        Some(b"421 4.7.0 Too many connections, try again later\r\n")
    }
}
