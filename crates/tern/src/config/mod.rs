//! `tern.toml`: Tern's single configuration file.
//!
//! The file lives in the data folder; relative paths inside it (the TLS
//! files) are relative to that folder, so a whole installation moves as one
//! folder. Every table rejects keys it does not know (`deny_unknown_fields`),
//! because a misspelt key silently ignored is a setting the operator thinks
//! is on but is not.
//!
//! Every error from [`Config::load`] is one line that names the file, the line
//! when known, and the dotted key, e.g.
//! `tern.toml:7: listen.imap[0]: "127.0.0.1:99999" is not a socket address`.
//! The reference for every key is `docs/config.md`.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::listeners::TlsMode;

mod golive;
mod mail;
pub use golive::*;
pub use mail::*;
mod acme;
pub use acme::*;

/// The config file's name inside the data folder.
pub const FILE_NAME: &str = "tern.toml";

/// The longest shutdown grace accepted. Longer is almost surely a typo (an
/// extra zero), and a service manager would kill the process long before.
const MAX_GRACE_SECONDS: u64 = 24 * 60 * 60;

/// The whole configuration, as read from `tern.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct Config {
    /// The mail host's own name ("mail.example.com"): used in greetings and
    /// EHLO, as the MX target, and as the name on the TLS certificate.
    pub hostname: String,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub listen: ListenConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    #[serde(default)]
    pub smtp: SmtpSection,
    #[serde(default)]
    pub queue: QueueSection,
    #[serde(default)]
    pub relay: RelaySection,
    #[serde(default)]
    pub dns: DnsSection,
    #[serde(default)]
    pub acme: AcmeSection,
    #[serde(default)]
    pub golive: GoLiveSection,
}

/// `[tls]`: the certificate every TLS port and every STARTTLS upgrade uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a table")]
pub struct TlsConfig {
    /// PEM certificate chain, the server's certificate first. Relative paths
    /// are relative to the data folder.
    pub certificate: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1). Relative to the data folder.
    pub private_key: PathBuf,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            certificate: PathBuf::from("tls/cert.pem"),
            private_key: PathBuf::from("tls/key.pem"),
        }
    }
}

impl TlsConfig {
    /// Where the certificate file is, relative paths taken from `data_dir`.
    pub fn certificate_path(&self, data_dir: &Path) -> PathBuf {
        data_dir.join(&self.certificate)
    }

    /// Where the private key file is, relative paths taken from `data_dir`.
    pub fn private_key_path(&self, data_dir: &Path) -> PathBuf {
        data_dir.join(&self.private_key)
    }
}

/// `[listen]`: the sockets each service listens on. An empty (or missing)
/// list turns that service off.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a table")]
pub struct ListenConfig {
    /// IMAP with STARTTLS (RFC 9051 §6.2.1), usually port 143.
    #[serde(deserialize_with = "socket_addrs")]
    pub imap: Vec<SocketAddr>,
    /// IMAP over implicit TLS (RFC 8314 §3.3), usually port 993.
    #[serde(deserialize_with = "socket_addrs")]
    pub imaps: Vec<SocketAddr>,
    /// POP3 with STLS (RFC 2595 §4), usually port 110.
    #[serde(deserialize_with = "socket_addrs")]
    pub pop3: Vec<SocketAddr>,
    /// POP3 over implicit TLS (RFC 8314 §3.3), usually port 995.
    #[serde(deserialize_with = "socket_addrs")]
    pub pop3s: Vec<SocketAddr>,
    /// Inbound SMTP from other mail servers (the MX, RFC 5321), port 25,
    /// STARTTLS offered (RFC 3207).
    #[serde(deserialize_with = "socket_addrs")]
    pub smtp: Vec<SocketAddr>,
    /// Message submission with STARTTLS (RFC 6409), usually port 587.
    #[serde(deserialize_with = "socket_addrs")]
    pub submission: Vec<SocketAddr>,
    /// Message submission over implicit TLS (RFC 8314 §3.3), usually 465.
    #[serde(deserialize_with = "socket_addrs")]
    pub submissions: Vec<SocketAddr>,
    /// Plain HTTP: webmail, admin, autoconfig, ACME challenges.
    #[serde(deserialize_with = "socket_addrs")]
    pub http: Vec<SocketAddr>,
    /// HTTPS (HTTP over TLS from the first byte): webmail and the rest of the web
    /// face, usually port 443.
    #[serde(deserialize_with = "socket_addrs")]
    pub https: Vec<SocketAddr>,
}

impl ListenConfig {
    /// Every service as (config key, how its port speaks TLS, addresses), in
    /// the order the file lists them.
    pub fn services(&self) -> [(&'static str, TlsMode, &[SocketAddr]); 9] {
        [
            ("imap", TlsMode::StartTls, &self.imap),
            ("imaps", TlsMode::Implicit, &self.imaps),
            ("pop3", TlsMode::StartTls, &self.pop3),
            ("pop3s", TlsMode::Implicit, &self.pop3s),
            ("smtp", TlsMode::StartTls, &self.smtp),
            ("submission", TlsMode::StartTls, &self.submission),
            ("submissions", TlsMode::Implicit, &self.submissions),
            ("http", TlsMode::Plain, &self.http),
            ("https", TlsMode::Implicit, &self.https),
        ]
    }

    /// The first configured service that needs a certificate (one on an
    /// implicit-TLS port or one that offers STARTTLS), if any.
    pub fn first_tls_service(&self) -> Option<&'static str> {
        self.services()
            .into_iter()
            .find(|(_, mode, addrs)| *mode != TlsMode::Plain && !addrs.is_empty())
            .map(|(name, _, _)| name)
    }
}

/// `[auth]`: how clients may log in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a table")]
pub struct AuthConfig {
    /// Where a password may be sent before TLS is active.
    pub allow_plaintext: PlaintextAuth,
}

/// Where a password may travel unencrypted: IMAP LOGIN and AUTHENTICATE
/// PLAIN before STARTTLS (RFC 9051 §6.2.3 LOGINDISABLED), POP3 USER/PASS
/// before STLS (RFC 2595 §4), SMTP AUTH before STARTTLS (RFC 4954 §4).
/// Over TLS, logging in is always allowed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PlaintextAuth {
    /// Never: clients must start TLS first.
    Never,
    /// Only from loopback peers (127.0.0.0/8, ::1): the traffic never leaves
    /// the machine, so there is nothing to overhear.
    #[default]
    Loopback,
    /// From anywhere. Sends passwords in the clear over the network.
    Always,
}

impl PlaintextAuth {
    const NAMES: [&'static str; 3] = ["never", "loopback", "always"];

    /// The value as written in `tern.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            PlaintextAuth::Never => "never",
            PlaintextAuth::Loopback => "loopback",
            PlaintextAuth::Always => "always",
        }
    }

    /// Whether a client at `peer` may log in before TLS is active.
    pub fn allows(self, peer: IpAddr) -> bool {
        match self {
            PlaintextAuth::Never => false,
            PlaintextAuth::Loopback => is_loopback(peer),
            PlaintextAuth::Always => true,
        }
    }
}

/// Loopback, counting IPv4 loopback seen through an IPv6 socket
/// (`::ffff:127.0.0.1`).
fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

impl<'de> Deserialize<'de> for PlaintextAuth {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "never" => Ok(PlaintextAuth::Never),
            "loopback" => Ok(PlaintextAuth::Loopback),
            "always" => Ok(PlaintextAuth::Always),
            _ => Err(serde::de::Error::custom(format!(
                "unknown value {s:?} (expected one of {})",
                quoted_list(&PlaintextAuth::NAMES)
            ))),
        }
    }
}

/// 64 MiB: above what the large providers accept (Gmail 25 MB sent, 50 MB received), so
/// migrated mail always fits.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 64 * 1024 * 1024;

/// `[limits]`: protection against a client (or a crowd) holding every socket.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a table")]
pub struct LimitsConfig {
    /// Concurrent connections per service; more are closed at once.
    pub max_connections: usize,
    /// Concurrent connections per service from one IP address. Mail
    /// clients open several IMAP connections each, and a household or an
    /// office shares one address behind NAT, so this is not tiny.
    pub max_connections_per_ip: usize,
    /// Largest message accepted, in bytes: IMAP APPEND (advertised as APPENDLIMIT,
    /// RFC 7889) and, later, SMTP SIZE.
    pub max_message_size: u64,
}

impl From<&LimitsConfig> for tern_net::listeners::Limits {
    fn from(config: &LimitsConfig) -> Self {
        tern_net::listeners::Limits {
            max_connections: config.max_connections,
            max_connections_per_ip: config.max_connections_per_ip,
            ..Default::default()
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: 1000,
            max_connections_per_ip: 50,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a table")]
pub struct LogConfig {
    pub level: LogLevel,
}

/// How much Tern logs. Each level includes the ones before it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    const NAMES: [&'static str; 5] = ["error", "warn", "info", "debug", "trace"];

    /// The value as written in `tern.toml` (also a valid `tracing` filter).
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }

    /// The matching `tracing` level, for the subscriber's filter.
    pub fn to_tracing(self) -> tracing::Level {
        match self {
            LogLevel::Error => tracing::Level::ERROR,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Trace => tracing::Level::TRACE,
        }
    }
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "error" => Ok(LogLevel::Error),
            "warn" => Ok(LogLevel::Warn),
            "info" => Ok(LogLevel::Info),
            "debug" => Ok(LogLevel::Debug),
            "trace" => Ok(LogLevel::Trace),
            _ => Err(serde::de::Error::custom(format!(
                "unknown level {s:?} (expected one of {})",
                quoted_list(&LogLevel::NAMES)
            ))),
        }
    }
}

/// `[store]`: where mailboxes live.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a table")]
pub struct StoreConfig {
    pub backend: StoreBackend,
}

/// The mailbox store's backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StoreBackend {
    /// SQLite and blob files inside the data folder.
    #[default]
    Embedded,
}

impl StoreBackend {
    /// The value as written in `tern.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreBackend::Embedded => "embedded",
        }
    }
}

impl<'de> Deserialize<'de> for StoreBackend {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "embedded" => Ok(StoreBackend::Embedded),
            "postgres" | "postgresql" => Err(serde::de::Error::custom(format!(
                "unknown backend {s:?} (expected \"embedded\"; PostgreSQL is not supported yet)"
            ))),
            _ => Err(serde::de::Error::custom(format!(
                "unknown backend {s:?} (expected \"embedded\")"
            ))),
        }
    }
}

/// `[shutdown]`: what SIGTERM does.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a table")]
pub struct ShutdownConfig {
    /// How long open sessions get to finish after SIGTERM before they are
    /// cut. New connections are refused from the first moment.
    pub grace_seconds: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig { grace_seconds: 30 }
    }
}

impl ShutdownConfig {
    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.grace_seconds)
    }
}

/// The ports of `Config::quickstart` before the offset, in `services()` order.
/// All above 1024 so no privileges are needed.
const QUICKSTART_PORTS: [(&str, u16); 9] = [
    ("imap", 1143),
    ("imaps", 1993),
    ("pop3", 1110),
    ("pop3s", 1995),
    ("smtp", 2525),
    ("submission", 1587),
    ("submissions", 1465),
    ("http", 8080),
    ("https", 8443),
];

impl Config {
    /// Read, parse and check `tern.toml`. Relative paths inside it are
    /// resolved against the folder holding `path` (the data folder).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = Self::read(path)?;
        let data_dir = path.parent().unwrap_or(Path::new(""));
        Self::from_toml_str(&text, path, data_dir)
    }

    /// Like [`Config::load`] for a command that serves nothing (`tern migrate run`):
    /// every check but that the TLS files exist.
    pub fn load_settings(path: &Path) -> Result<Config, ConfigError> {
        Self::parse(&Self::read(path)?, path)?.checked(path, None)
    }

    /// Runs the checks, naming `file` in the error.
    fn checked(self, file: &Path, data_dir: Option<&Path>) -> Result<Config, ConfigError> {
        self.check(data_dir).map_err(|kind| ConfigError {
            file: Some(file.to_path_buf()),
            line: None,
            kind,
        })?;
        Ok(self)
    }

    fn read(path: &Path) -> Result<String, ConfigError> {
        std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: Some(path.to_path_buf()),
            line: None,
            kind: ConfigErrorKind::Read(e),
        })
    }

    /// Parse and check config text. `file` is only used in error messages;
    /// `data_dir` is where relative paths point.
    pub fn from_toml_str(text: &str, file: &Path, data_dir: &Path) -> Result<Config, ConfigError> {
        Self::parse(text, file)?.checked(file, Some(data_dir))
    }

    /// Syntax and types only.
    fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let deserializer = toml::de::Deserializer::parse(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            ConfigError {
                file: Some(file.to_path_buf()),
                line: Some(line),
                kind: ConfigErrorKind::Syntax {
                    column,
                    message: e.message().to_string(),
                },
            }
        })?;
        serde_path_to_error::deserialize(deserializer).map_err(|e| ConfigError::from_serde(file, text, e))
    }

    /// A config for trying Tern on one machine: every service on 127.0.0.1
    /// at an unprivileged port (IMAP 1143, IMAPS 1993, POP3 1110, POP3S
    /// 1995, SMTP 2525, submission 1587, submissions 1465, HTTP 8080, HTTPS 8443), each
    /// plus `port_offset` so several instances can run side by side.
    /// TLS files are `tls/cert.pem` and `tls/key.pem` in the data folder
    /// (a self-signed pair, see `crate::tls::generate_self_signed`).
    pub fn quickstart(hostname: &str, port_offset: u16) -> Result<Config, ConfigError> {
        check_hostname(hostname).map_err(ConfigError::without_file)?;
        let max_offset = u16::MAX - QUICKSTART_PORTS.iter().map(|(_, p)| *p).max().unwrap_or(0);
        if port_offset > max_offset {
            return Err(ConfigError::without_file(ConfigErrorKind::PortOffset {
                offset: port_offset,
                max: max_offset,
            }));
        }
        let local = |base: u16| vec![SocketAddr::from(([127, 0, 0, 1], base + port_offset))];
        let [imap, imaps, pop3, pop3s, smtp, submission, submissions, http, https] =
            QUICKSTART_PORTS.map(|(_, port)| local(port));
        Ok(Config {
            hostname: hostname.to_string(),
            tls: TlsConfig::default(),
            listen: ListenConfig {
                imap,
                imaps,
                pop3,
                pop3s,
                smtp,
                submission,
                submissions,
                http,
                https,
            },
            auth: AuthConfig {
                allow_plaintext: PlaintextAuth::Loopback,
            },
            limits: LimitsConfig::default(),
            log: LogConfig::default(),
            store: StoreConfig::default(),
            shutdown: ShutdownConfig::default(),
            smtp: SmtpSection::default(),
            queue: QueueSection::default(),
            relay: RelaySection::default(),
            dns: DnsSection::default(),
            acme: AcmeSection::default(),
            golive: GoLiveSection::default(),
        })
    }

    /// A config for a real mail host: the standard ports (IMAP 143, IMAPS
    /// 993, POP3 110, POP3S 995, SMTP 25, submission 587, submissions 465,
    /// HTTP 80, HTTPS 443) on every IPv4 and IPv6 address. Binding ports below 1024
    /// needs root or CAP_NET_BIND_SERVICE.
    ///
    /// The TLS files are `tls/fullchain.pem` and `tls/privkey.pem` inside the
    /// data folder (the names certbot and most ACME clients use), so the
    /// whole installation stays in one folder; point them elsewhere (e.g.
    /// `/etc/letsencrypt/live/HOST/`) by editing `[tls]`.
    ///
    /// `[acme]` is on: Tern gets that certificate from Let's Encrypt itself.
    pub fn production(hostname: &str) -> Result<Config, ConfigError> {
        let mut config = Self::production_without_acme(hostname)?;
        config.acme.enabled = true;
        Ok(config)
    }

    fn production_without_acme(hostname: &str) -> Result<Config, ConfigError> {
        check_hostname(hostname).map_err(ConfigError::without_file)?;
        // Both wildcard addresses: the listeners open IPv6 sockets as
        // IPV6_V6ONLY, so "0.0.0.0" and "[::]" on one port do not collide
        // whatever the host's net.ipv6.bindv6only says.
        let everywhere = |port: u16| {
            vec![
                SocketAddr::from(([0, 0, 0, 0], port)),
                SocketAddr::from(([0u16; 8], port)),
            ]
        };
        Ok(Config {
            hostname: hostname.to_string(),
            tls: TlsConfig {
                certificate: PathBuf::from("tls/fullchain.pem"),
                private_key: PathBuf::from("tls/privkey.pem"),
            },
            listen: ListenConfig {
                imap: everywhere(143),
                imaps: everywhere(993),
                pop3: everywhere(110),
                pop3s: everywhere(995),
                smtp: everywhere(25),
                submission: everywhere(587),
                submissions: everywhere(465),
                // Plain HTTP serves ACME http-01 challenges (RFC 8555
                // §8.3) and autoconfig, and sends webmail to HTTPS.
                http: everywhere(80),
                https: everywhere(443),
            },
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
            log: LogConfig::default(),
            store: StoreConfig::default(),
            shutdown: ShutdownConfig::default(),
            smtp: SmtpSection::default(),
            queue: QueueSection::default(),
            relay: RelaySection::default(),
            dns: DnsSection::default(),
            acme: AcmeSection::default(),
            golive: GoLiveSection::default(),
        })
    }

    /// The config as a `tern.toml` a person can read: every key written out,
    /// each with a comment saying what it does. [`Config::load`] reads it
    /// back to an equal `Config`.
    pub fn to_toml_string(&self) -> String {
        let mut out = String::new();
        let mut line = |s: &str| {
            out.push_str(s);
            out.push('\n');
        };
        line("# tern.toml: the configuration of this Tern mail host.");
        line("# Every key is described in docs/config.md. Relative paths are relative");
        line("# to the folder holding this file (the data folder).");
        line("");
        line("# This host's own name: the name in its greetings, the name MX records point");
        line("# at, and the name on its TLS certificate.");
        line(&format!("hostname = {}", toml_string(&self.hostname)));
        line("");
        line("[tls]");
        line("# The certificate chain (PEM, this server's certificate first) and its");
        line("# private key (PEM). Every TLS port and every STARTTLS upgrade uses them;");
        line("# they must exist when any service other than http is on.");
        line(&format!("certificate = {}", toml_path(&self.tls.certificate)));
        line(&format!("private_key = {}", toml_path(&self.tls.private_key)));
        line("");
        line("[listen]");
        line("# Where each service listens: a list of \"IP:PORT\". An empty list turns the");
        line("# service off. IPv6 goes in brackets (\"[::]:993\") and \"[::]\" covers IPv6 only,");
        line("# so list \"0.0.0.0\" too for IPv4. Ports below 1024 need root or the");
        line("# CAP_NET_BIND_SERVICE capability. Port 0 picks a free port (for tests).");
        let listen_comments = [
            "# IMAP for mail clients; offers STARTTLS (RFC 9051). Standard port 143.",
            "# IMAP over TLS from the first byte (RFC 8314). Standard port 993.",
            "# POP3 for mail clients; offers STLS (RFC 1939, RFC 2595). Standard port 110.",
            "# POP3 over TLS from the first byte (RFC 8314). Standard port 995.",
            "# Inbound mail from other servers: the MX (RFC 5321); offers STARTTLS.\n# Other servers only ever connect to port 25.",
            "# Mail submission by your users' clients; offers STARTTLS (RFC 6409).\n# Standard port 587.",
            "# Mail submission over TLS from the first byte (RFC 8314). Standard port 465.",
            "# Plain HTTP: webmail, admin console, client autoconfiguration and ACME\n# challenges. Standard port 80. Webmail logins over it are taken only where\n# [auth] allow_plaintext allows (a TLS-terminating proxy on this machine).",
            "# HTTPS: webmail and the rest of the web face over TLS. Standard port 443.",
        ];
        for ((name, _, addrs), comment) in self.listen.services().into_iter().zip(listen_comments) {
            line(comment);
            line(&format!("{name} = {}", addr_list(addrs)));
        }
        line("");
        line("[auth]");
        line("# Whether a password may be sent before TLS is active (IMAP LOGIN, POP3");
        line("# USER/PASS, SMTP AUTH): \"never\"; \"loopback\", only from this machine");
        line("# itself, where nothing can overhear it; or \"always\", which sends passwords");
        line("# in the clear over the network. After STARTTLS, or on a TLS port, logging in");
        line("# is always allowed.");
        line(&format!(
            "allow_plaintext = {}",
            toml_string(self.auth.allow_plaintext.as_str())
        ));
        line("");
        line("[limits]");
        line("# Most connections open at once to each service; further ones are closed.");
        line(&format!("max_connections = {}", self.limits.max_connections));
        line("# Most connections open at once to each service from one IP address.");
        line(&format!(
            "max_connections_per_ip = {}",
            self.limits.max_connections_per_ip
        ));
        line("# Largest message accepted, in bytes (IMAP APPEND, SMTP SIZE).");
        line(&format!("max_message_size = {}", self.limits.max_message_size));
        line("");
        line("[log]");
        line("# How much to log: \"error\", \"warn\", \"info\", \"debug\" or \"trace\".");
        line(&format!("level = {}", toml_string(self.log.level.as_str())));
        line("");
        line("[store]");
        line("# Where mailboxes are kept. \"embedded\": SQLite and files in the data folder.");
        line(&format!("backend = {}", toml_string(self.store.backend.as_str())));
        line("");
        line("[shutdown]");
        line("# On SIGTERM or Ctrl-C, new connections are refused at once and open sessions");
        line("# get this many seconds to finish before they are cut.");
        line(&format!("grace_seconds = {}", self.shutdown.grace_seconds));
        line("");
        self.mail_toml(&mut line);
        line("");
        self.acme_toml(&mut line);
        line("");
        self.golive_toml(&mut line);
        out
    }

    /// Checks serde cannot make: values that depend on each other or on the
    /// disk. `data_dir` is `None` when there is no folder to look in yet.
    fn check(&self, data_dir: Option<&Path>) -> Result<(), ConfigErrorKind> {
        check_hostname(&self.hostname)?;

        // One address serving two services would fail at bind time with a
        // less helpful message; say which two keys clash. Port 0 asks the
        // kernel for a fresh port each time, so it never clashes.
        let mut seen: HashMap<SocketAddr, String> = HashMap::new();
        for (name, _, addrs) in self.listen.services() {
            for (i, addr) in addrs.iter().enumerate() {
                let key = format!("listen.{name}[{i}]");
                if addr.port() == 0 {
                    continue;
                }
                if let Some(first) = seen.get(addr) {
                    return Err(ConfigErrorKind::InvalidValue {
                        key,
                        message: format!("{addr} is already used by {first}; each address can serve one service"),
                    });
                }
                seen.insert(*addr, key);
            }
        }

        // With ACME on, the files come after start (a temporary certificate is served
        // until then), so they need not exist yet.
        if let (Some(dir), Some(service), false) = (data_dir, self.listen.first_tls_service(), self.acme.enabled) {
            for (key, path) in [
                ("tls.certificate", self.tls.certificate_path(dir)),
                ("tls.private_key", self.tls.private_key_path(dir)),
            ] {
                let problem = match std::fs::metadata(&path) {
                    Ok(meta) if meta.is_file() => None,
                    Ok(_) => Some("is not a file".to_string()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("does not exist".to_string()),
                    Err(e) => Some(format!("cannot be read ({e})")),
                };
                if let Some(problem) = problem {
                    return Err(ConfigErrorKind::InvalidValue {
                        key: key.to_string(),
                        message: format!(
                            "{} {problem}, and listen.{service} needs TLS; put the PEM file there \
                             or set {key} to where it is",
                            path.display()
                        ),
                    });
                }
            }
        }

        for (key, value) in [
            ("limits.max_connections", self.limits.max_connections),
            ("limits.max_connections_per_ip", self.limits.max_connections_per_ip),
        ] {
            if value == 0 {
                return Err(ConfigErrorKind::InvalidValue {
                    key: key.to_string(),
                    message: "must be at least 1 (0 would refuse every connection)".to_string(),
                });
            }
        }

        if !(1024..=1 << 30).contains(&self.limits.max_message_size) {
            return Err(ConfigErrorKind::InvalidValue {
                key: "limits.max_message_size".to_string(),
                message: "must be between 1024 and 1073741824 bytes (1 GiB)".to_string(),
            });
        }

        self.check_mail()?;
        self.check_acme(data_dir)?;
        self.check_golive()?;

        if self.shutdown.grace_seconds > MAX_GRACE_SECONDS {
            return Err(ConfigErrorKind::InvalidValue {
                key: "shutdown.grace_seconds".to_string(),
                message: format!(
                    "{} is more than a day (at most {MAX_GRACE_SECONDS})",
                    self.shutdown.grace_seconds
                ),
            });
        }
        Ok(())
    }
}

/// Checks that `name` can be this host's name: a DNS name of letters,
/// digits and hyphens (RFC 1123 §2.1, RFC 5321 §2.3.5), not an IP address.
pub fn check_hostname(name: &str) -> Result<(), ConfigErrorKind> {
    let invalid = |why: String| ConfigErrorKind::InvalidValue {
        key: "hostname".to_string(),
        message: format!("{name:?} is not a host name: {why}"),
    };
    if name.is_empty() {
        return Err(ConfigErrorKind::InvalidValue {
            key: "hostname".to_string(),
            message: "is empty; set it to this server's name, e.g. \"mail.example.com\"".to_string(),
        });
    }
    if name.parse::<IpAddr>().is_ok() {
        return Err(invalid(
            "it is an IP address, and MX records and certificates need a name (RFC 5321 §5.1)".to_string(),
        ));
    }
    if name.len() > 253 {
        return Err(invalid("longer than 253 characters (RFC 1035 §2.3.4)".to_string()));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(invalid("it has an empty part between dots".to_string()));
        }
        if label.len() > 63 {
            return Err(invalid(format!(
                "{label:?} is longer than 63 characters (RFC 1035 §2.3.4)"
            )));
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(invalid(format!(
                "{label:?} may hold only letters, digits and hyphens (RFC 1123 §2.1)"
            )));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(invalid(format!("{label:?} starts or ends with a hyphen")));
        }
    }
    Ok(())
}

/// What went wrong with the configuration, and where.
///
/// Displays as one line: `FILE[:LINE]: [KEY: ]message`.
#[derive(Debug)]
pub struct ConfigError {
    file: Option<PathBuf>,
    line: Option<usize>,
    kind: ConfigErrorKind,
}

/// The kinds of configuration error.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The file could not be read.
    Read(std::io::Error),
    /// The text is not TOML.
    Syntax { column: usize, message: String },
    /// A key this version of Tern does not know; `expected` lists the keys
    /// that table takes.
    UnknownKey { key: String, expected: Vec<String> },
    /// A required key is absent.
    MissingKey { key: String },
    /// The key is known but its value is wrong.
    InvalidValue { key: String, message: String },
    /// `quickstart`'s port offset would push a port past 65535.
    PortOffset { offset: u16, max: u16 },
}

impl ConfigError {
    /// An error found after loading (reading a file the config names), in `file`.
    pub fn in_file(file: &Path, kind: ConfigErrorKind) -> Self {
        ConfigError {
            file: Some(file.to_path_buf()),
            line: None,
            kind,
        }
    }

    fn without_file(kind: ConfigErrorKind) -> Self {
        ConfigError {
            file: None,
            line: None,
            kind,
        }
    }

    /// The config file, when the error came from one.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The 1-based line in the file, when known.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    pub fn kind(&self) -> &ConfigErrorKind {
        &self.kind
    }

    /// The dotted key the error is about (`listen.imap[0]`), when there is one.
    pub fn key(&self) -> Option<&str> {
        match &self.kind {
            ConfigErrorKind::UnknownKey { key, .. }
            | ConfigErrorKind::MissingKey { key }
            | ConfigErrorKind::InvalidValue { key, .. } => Some(key),
            _ => None,
        }
    }

    fn from_serde(file: &Path, text: &str, err: serde_path_to_error::Error<toml::de::Error>) -> Self {
        let path = dotted_path(err.path());
        let span = err.inner().span();
        let message = err.inner().message();
        let mut line = span.map(|s| line_col(text, s.start).0);

        let kind = if let Some(rest) = message.strip_prefix("unknown field `") {
            // serde_path_to_error's path already ends with the unknown key.
            let key = if path.is_empty() {
                rest.split('`').next().unwrap_or_default().to_string()
            } else {
                path
            };
            ConfigErrorKind::UnknownKey {
                key,
                expected: backticked_after_expected(message),
            }
        } else if let Some(rest) = message.strip_prefix("missing field `") {
            // The path ends at the table the key is missing from, and the
            // span points at the table, not at a line worth showing.
            line = None;
            let field = rest.split('`').next().unwrap_or_default();
            let key = if path.is_empty() {
                field.to_string()
            } else {
                format!("{path}.{field}")
            };
            ConfigErrorKind::MissingKey { key }
        } else {
            let key = if path.is_empty() {
                "(top level)".to_string()
            } else {
                path
            };
            ConfigErrorKind::InvalidValue {
                key,
                message: humanize_serde_message(message),
            }
        };
        ConfigError {
            file: Some(file.to_path_buf()),
            line,
            kind,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
                if let ConfigErrorKind::Syntax { column, .. } = &self.kind {
                    write!(f, ":{column}")?;
                }
            }
            write!(f, ": ")?;
        }
        match &self.kind {
            ConfigErrorKind::Read(e) => write!(f, "cannot read the config file: {e}"),
            ConfigErrorKind::Syntax { message, .. } => write!(f, "not valid TOML: {message}"),
            ConfigErrorKind::UnknownKey { key, expected } => {
                write!(f, "unknown key `{key}`")?;
                match expected.as_slice() {
                    [] => write!(f, " (this table takes no keys)"),
                    [one] => write!(f, " (expected {one})"),
                    many => write!(f, " (expected one of {})", many.join(", ")),
                }
            }
            ConfigErrorKind::MissingKey { key } => write!(f, "missing key `{key}`"),
            ConfigErrorKind::InvalidValue { key, message } => write!(f, "{key}: {message}"),
            ConfigErrorKind::PortOffset { offset, max } => write!(
                f,
                "port offset {offset} is too large: the highest quickstart port would pass 65535 \
                 (use at most {max})"
            ),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ConfigErrorKind::Read(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ConfigErrorKind> for ConfigError {
    fn from(kind: ConfigErrorKind) -> Self {
        ConfigError::without_file(kind)
    }
}

/// `listen.imap[0]` from serde_path_to_error's segments.
fn dotted_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Enum { variant } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(variant);
            }
            Segment::Unknown => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push('?');
            }
        }
    }
    out
}

/// The names serde lists after "expected" in an unknown-field message:
/// "unknown field `x`, expected one of `a`, `b`" gives [a, b].
fn backticked_after_expected(message: &str) -> Vec<String> {
    let Some((_, tail)) = message.split_once(", expected ") else {
        return Vec::new();
    };
    tail.split('`').skip(1).step_by(2).map(str::to_string).collect()
}

/// Rewords serde's "invalid type: X, expected Y" as "expected Y, found X",
/// and names TOML's kinds of value instead of Rust's.
fn humanize_serde_message(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some((found, expected)) = rest.rsplit_once(", expected ")
        {
            let expected = match expected {
                "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number, 0 or more",
                "a sequence" => "a list",
                "a boolean" => "true or false",
                "a map" => "a table",
                other => other,
            };
            return format!("expected {expected}, found {found}");
        }
    }
    message.to_string()
}

/// 1-based (line, column) of a byte offset; the column counts characters.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let bytes = text.as_bytes();
    let offset = offset.min(bytes.len());
    let before = &bytes[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
    (line, column)
}

/// `"a", "b", "c"`, for messages.
fn quoted_list(names: &[&str]) -> String {
    names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
}

/// A listen address as written in the file. Its own type so that a bad
/// entry's error carries its index (`listen.imap[1]`) and a message in our
/// words rather than the standard library's.
struct ListenAddr(SocketAddr);

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map(ListenAddr).map_err(|_| {
            serde::de::Error::custom(format!(
                "{s:?} is not a socket address (write IP:PORT, e.g. \"0.0.0.0:143\" or \"[::]:143\")"
            ))
        })
    }
}

fn socket_addrs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    Ok(Vec::<ListenAddr>::deserialize(d)?.into_iter().map(|a| a.0).collect())
}

/// A TOML basic string, escaped by the toml crate itself.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A path as a TOML string. TOML holds only UTF-8, so a non-UTF-8 path is
/// written lossily; such a path cannot come from a loaded file anyway.
fn toml_path(p: &Path) -> String {
    toml_string(&p.to_string_lossy())
}

/// `["127.0.0.1:143", "[::1]:143"]`.
fn addr_list(addrs: &[SocketAddr]) -> String {
    let items: Vec<String> = addrs.iter().map(|a| toml_string(&a.to_string())).collect();
    format!("[{}]", items.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `text` as `tern.toml` in a fresh folder and loads it.
    fn load_text(text: &str) -> (tempfile::TempDir, Result<Config, ConfigError>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, text).expect("write config");
        let result = Config::load(&path);
        (dir, result)
    }

    /// The error message, after checking it names the file.
    fn load_error(text: &str) -> String {
        let (_dir, result) = load_text(text);
        let err = result.expect_err("config should be rejected");
        let message = err.to_string();
        assert!(message.contains(FILE_NAME), "message does not name the file: {message}");
        assert!(!message.contains('\n'), "message is not one line: {message}");
        message
    }

    /// Creates the default TLS files so configs with TLS services load.
    fn with_tls_files(dir: &Path) {
        std::fs::create_dir_all(dir.join("tls")).expect("mkdir");
        std::fs::write(dir.join("tls/cert.pem"), "x").expect("write");
        std::fs::write(dir.join("tls/key.pem"), "x").expect("write");
    }

    #[test]
    fn minimal_file_gets_defaults() {
        let (_dir, result) = load_text("hostname = \"mail.example.com\"\n");
        let config = result.expect("loads");
        assert_eq!(config.hostname, "mail.example.com");
        assert_eq!(config.listen, ListenConfig::default());
        assert_eq!(config.listen.first_tls_service(), None);
        assert_eq!(config.auth.allow_plaintext, PlaintextAuth::Loopback);
        assert_eq!(config.limits.max_connections, 1000);
        assert_eq!(config.limits.max_connections_per_ip, 50);
        assert_eq!(config.log.level, LogLevel::Info);
        assert_eq!(config.store.backend, StoreBackend::Embedded);
        assert_eq!(config.shutdown.grace(), Duration::from_secs(30));
        assert_eq!(config.tls.certificate, PathBuf::from("tls/cert.pem"));
    }

    #[test]
    fn quickstart_round_trips_through_the_written_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        with_tls_files(dir.path());
        let config = Config::quickstart("mail.example.test", 7).expect("quickstart");
        assert_eq!(
            config.listen.imap,
            vec!["127.0.0.1:1150".parse::<SocketAddr>().expect("addr")]
        );
        assert_eq!(
            config.listen.http,
            vec!["127.0.0.1:8087".parse::<SocketAddr>().expect("addr")]
        );
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, config.to_toml_string()).expect("write");
        assert_eq!(Config::load(&path).expect("reload"), config);
    }

    #[test]
    fn production_round_trips_through_the_written_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("tls")).expect("mkdir");
        std::fs::write(dir.path().join("tls/fullchain.pem"), "x").expect("write");
        std::fs::write(dir.path().join("tls/privkey.pem"), "x").expect("write");
        let mut config = Config::production("mx.example.org").expect("production");
        // Values other than the defaults, so the round trip proves each is written.
        config.auth.allow_plaintext = PlaintextAuth::Never;
        config.log.level = LogLevel::Debug;
        config.limits.max_connections = 7;
        config.limits.max_connections_per_ip = 3;
        config.shutdown.grace_seconds = 5;
        config.listen.pop3.clear();
        let text = config.to_toml_string();
        assert!(text.contains("imaps = [\"0.0.0.0:993\", \"[::]:993\"]"), "{text}");
        assert!(text.contains("pop3 = []"), "{text}");
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, &text).expect("write");
        assert_eq!(Config::load(&path).expect("reload"), config);
    }

    #[test]
    fn written_file_explains_every_key() {
        let text = Config::quickstart("localhost", 0).expect("quickstart").to_toml_string();
        for key in [
            "hostname",
            "certificate",
            "private_key",
            "imap",
            "imaps",
            "pop3",
            "pop3s",
            "smtp",
            "submission",
            "submissions",
            "http",
            "https",
            "allow_plaintext",
            "max_connections",
            "max_connections_per_ip",
            "max_message_size",
            "level",
            "backend",
            "grace_seconds",
        ] {
            let lines: Vec<&str> = text.lines().collect();
            let at = lines
                .iter()
                .position(|l| l.starts_with(&format!("{key} = ")))
                .unwrap_or_else(|| panic!("{key} not written"));
            // The key's line is directly under a comment, or is one of a
            // group of lines under one comment.
            let above = lines[..at].iter().rev().find(|l| !l.contains(" = "));
            assert!(
                above.is_some_and(|l| l.starts_with('#')),
                "{key} has no comment above it"
            );
        }
    }

    #[test]
    fn quickstart_rejects_an_offset_past_the_last_port() {
        assert!(Config::quickstart("localhost", 65535 - 8443).is_ok());
        let err = Config::quickstart("localhost", 65535 - 8443 + 1).expect_err("too large");
        assert!(
            matches!(err.kind(), ConfigErrorKind::PortOffset { max: 57092, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("at most 57092"), "{err}");
    }

    #[test]
    fn constructors_reject_a_bad_hostname() {
        let err = Config::production("mail_host.example.com").expect_err("bad name");
        assert_eq!(err.key(), Some("hostname"));
        assert!(err.to_string().contains("\"mail_host\""), "{err}");
    }

    #[test]
    fn unreadable_file_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        let err = Config::load(&path).expect_err("missing file");
        assert!(matches!(err.kind(), ConfigErrorKind::Read(_)));
        let message = err.to_string();
        assert!(message.starts_with(&path.display().to_string()), "{message}");
        assert!(message.contains("cannot read"), "{message}");
    }

    #[test]
    fn syntax_error_names_file_line_and_column() {
        let message = load_error("hostname = \"a.example\"\n[listen\n");
        assert!(
            message.contains(&format!("{FILE_NAME}:2:8: not valid TOML")),
            "{message}"
        );
    }

    #[test]
    fn unknown_key_names_the_dotted_key_and_the_choices() {
        let message = load_error("hostname = \"a.example\"\n[listen]\nimapz = []\n");
        assert!(
            message.contains(&format!(
                "{FILE_NAME}:3: unknown key `listen.imapz` (expected one of imap, imaps, pop3, \
                 pop3s, smtp, submission, submissions, http, https)"
            )),
            "{message}"
        );
    }

    #[test]
    fn unknown_table_is_an_unknown_key() {
        let message = load_error("hostname = \"a.example\"\n[imap]\nallow_plaintext_auth = true\n");
        assert!(message.contains("unknown key `imap`"), "{message}");
        assert!(message.contains("expected one of hostname, tls, listen"), "{message}");
    }

    #[test]
    fn missing_hostname_is_named() {
        let message = load_error("[log]\nlevel = \"info\"\n");
        assert!(
            message.ends_with(&format!("{FILE_NAME}: missing key `hostname`")),
            "{message}"
        );
    }

    #[test]
    fn bad_socket_address_names_the_entry() {
        let message =
            load_error("hostname = \"a.example\"\n[listen]\nhttp = [\"127.0.0.1:8080\", \"127.0.0.1:99999\"]\n");
        assert!(
            message.contains(&format!(
                "{FILE_NAME}:3: listen.http[1]: \"127.0.0.1:99999\" is not a socket address"
            )),
            "{message}"
        );
    }

    #[test]
    fn wrong_type_says_what_was_expected() {
        let message = load_error("hostname = \"a.example\"\n[listen]\nhttp = \"127.0.0.1:80\"\n");
        assert!(
            message.contains("listen.http: expected a list, found string \"127.0.0.1:80\""),
            "{message}"
        );
        let message = load_error("hostname = \"a.example\"\n[shutdown]\ngrace_seconds = -1\n");
        assert!(
            message.contains("shutdown.grace_seconds: expected a whole number, 0 or more, found integer `-1`"),
            "{message}"
        );
        let message = load_error("hostname = \"a.example\"\nlog = 3\n");
        assert!(
            message.contains("log: expected a table, found integer `3`"),
            "{message}"
        );
    }

    #[test]
    fn unknown_backend_is_named() {
        let message = load_error("hostname = \"a.example\"\n[store]\nbackend = \"mysql\"\n");
        assert!(
            message.contains(&format!(
                "{FILE_NAME}:3: store.backend: unknown backend \"mysql\" (expected \"embedded\")"
            )),
            "{message}"
        );
    }

    #[test]
    fn unknown_log_level_is_named() {
        let message = load_error("hostname = \"a.example\"\n[log]\nlevel = \"verbose\"\n");
        assert!(
            message.contains(
                "log.level: unknown level \"verbose\" (expected one of \"error\", \"warn\", \"info\", \"debug\", \"trace\")"
            ),
            "{message}"
        );
    }

    #[test]
    fn unknown_plaintext_policy_is_named() {
        let message = load_error("hostname = \"a.example\"\n[auth]\nallow_plaintext = true\n");
        assert!(
            message.contains("auth.allow_plaintext: expected a string, found boolean `true`"),
            "{message}"
        );
        let message = load_error("hostname = \"a.example\"\n[auth]\nallow_plaintext = \"lan\"\n");
        assert!(
            message.contains("auth.allow_plaintext: unknown value \"lan\""),
            "{message}"
        );
    }

    #[test]
    fn bad_hostname_is_named() {
        let message = load_error("hostname = \"192.0.2.1\"\n");
        assert!(
            message.contains(&format!("{FILE_NAME}: hostname: \"192.0.2.1\" is not a host name")),
            "{message}"
        );
        let message = load_error("hostname = \"\"\n");
        assert!(message.contains("hostname: is empty"), "{message}");
    }

    #[test]
    fn missing_tls_files_are_named_when_a_tls_service_is_on() {
        let message = load_error("hostname = \"a.example\"\n[listen]\nimaps = [\"127.0.0.1:0\"]\n");
        assert!(
            message.contains(&format!("{FILE_NAME}: tls.certificate: ")),
            "{message}"
        );
        assert!(
            message.contains("cert.pem does not exist, and listen.imaps needs TLS"),
            "{message}"
        );

        // Only the key missing: the key is named.
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("c.pem"), "x").expect("write");
        let path = dir.path().join(FILE_NAME);
        std::fs::write(
            &path,
            "hostname = \"a.example\"\n[tls]\ncertificate = \"c.pem\"\nprivate_key = \"k.pem\"\n\
             [listen]\nsmtp = [\"127.0.0.1:0\"]\n",
        )
        .expect("write");
        let message = Config::load(&path).expect_err("no key").to_string();
        assert!(message.contains("tls.private_key: "), "{message}");
        assert!(message.contains("listen.smtp needs TLS"), "{message}");

        // HTTP alone needs no certificate.
        let (_dir, result) = load_text("hostname = \"a.example\"\n[listen]\nhttp = [\"127.0.0.1:0\"]\n");
        assert!(result.is_ok());
    }

    #[test]
    fn message_size_limit_is_checked() {
        let message = load_error("hostname = \"a.example\"\n[limits]\nmax_message_size = 10\n");
        assert!(
            message.contains("limits.max_message_size: must be between 1024 and 1073741824"),
            "{message}"
        );
    }

    #[test]
    fn one_address_for_two_services_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        with_tls_files(dir.path());
        let path = dir.path().join(FILE_NAME);
        std::fs::write(
            &path,
            "hostname = \"a.example\"\n[listen]\nimap = [\"127.0.0.1:1143\"]\npop3 = [\"127.0.0.1:1143\"]\n",
        )
        .expect("write");
        let message = Config::load(&path).expect_err("clash").to_string();
        assert!(
            message.contains("listen.pop3[0]: 127.0.0.1:1143 is already used by listen.imap[0]"),
            "{message}"
        );
    }

    #[test]
    fn zero_limits_and_huge_grace_are_refused() {
        let message = load_error("hostname = \"a.example\"\n[limits]\nmax_connections_per_ip = 0\n");
        assert!(
            message.contains("limits.max_connections_per_ip: must be at least 1"),
            "{message}"
        );
        let message = load_error("hostname = \"a.example\"\n[shutdown]\ngrace_seconds = 864000\n");
        assert!(
            message.contains("shutdown.grace_seconds: 864000 is more than a day"),
            "{message}"
        );
    }

    #[test]
    fn plaintext_policy_decides_by_peer() {
        let lo4: IpAddr = "127.0.0.5".parse().expect("ip");
        let lo6: IpAddr = "::1".parse().expect("ip");
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().expect("ip");
        let remote: IpAddr = "192.0.2.7".parse().expect("ip");
        assert!(PlaintextAuth::Loopback.allows(lo4));
        assert!(PlaintextAuth::Loopback.allows(lo6));
        assert!(PlaintextAuth::Loopback.allows(mapped));
        assert!(!PlaintextAuth::Loopback.allows(remote));
        assert!(!PlaintextAuth::Never.allows(lo4));
        assert!(PlaintextAuth::Always.allows(remote));
    }

    #[test]
    fn relative_tls_paths_resolve_against_the_data_folder() {
        let tls = TlsConfig {
            certificate: "tls/c.pem".into(),
            private_key: "/etc/k.pem".into(),
        };
        assert_eq!(
            tls.certificate_path(Path::new("/srv/tern")),
            PathBuf::from("/srv/tern/tls/c.pem")
        );
        assert_eq!(
            tls.private_key_path(Path::new("/srv/tern")),
            PathBuf::from("/etc/k.pem")
        );
    }
}
