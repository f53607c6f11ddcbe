//! The SMTP tables of tern.toml: `[smtp]` (receiving and submission), `[queue]`
//! (outbound delivery), `[relay]` (smarthosts) and `[dns]` (which resolvers the checks
//! and MX lookups use). docs/config.md describes every key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::{ConfigErrorKind, quoted_list, toml_string};

/// `[smtp]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a table")]
pub struct SmtpSection {
    /// Recipients per message (RFC 5321 §4.5.3.1.8 asks for at least 100).
    pub max_recipients: usize,
    /// Messages per connection before the client must reconnect.
    pub max_messages_per_connection: usize,
    /// Messages one user may submit per hour.
    pub submissions_per_hour: u32,
    /// Recipients one user may send to per hour.
    pub recipients_per_hour: u32,
    /// Messages accepted per hour from one IP address on the MX.
    pub inbound_per_ip_per_hour: u32,
    /// Mail failing DMARC under p=reject: "reject" it, or deliver it to "junk".
    pub dmarc_reject: DmarcRejectSetting,
}

impl Default for SmtpSection {
    fn default() -> Self {
        let d = tern_smtp::SmtpConfig::default();
        SmtpSection {
            max_recipients: d.max_recipients,
            max_messages_per_connection: d.max_messages_per_connection,
            submissions_per_hour: d.submissions_per_hour,
            recipients_per_hour: d.recipients_per_hour,
            inbound_per_ip_per_hour: d.inbound_per_ip_per_hour,
            dmarc_reject: DmarcRejectSetting::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DmarcRejectSetting(pub tern_smtp::DmarcReject);

impl DmarcRejectSetting {
    pub fn as_str(self) -> &'static str {
        match self.0 {
            tern_smtp::DmarcReject::Reject => "reject",
            tern_smtp::DmarcReject::Junk => "junk",
        }
    }
}

impl<'de> Deserialize<'de> for DmarcRejectSetting {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "reject" => Ok(DmarcRejectSetting(tern_smtp::DmarcReject::Reject)),
            "junk" => Ok(DmarcRejectSetting(tern_smtp::DmarcReject::Junk)),
            _ => Err(serde::de::Error::custom(format!(
                "unknown value {s:?} (expected one of {})",
                quoted_list(&["reject", "junk"])
            ))),
        }
    }
}

/// `[queue]`: delivery to other hosts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a table")]
pub struct QueueSection {
    /// Hours a message is retried before it is returned to its sender (5 days).
    pub max_age_hours: u64,
    /// Hours after which the sender is told a message is delayed.
    pub delay_notice_hours: u64,
    /// Seconds before the first retry; each later retry waits twice as long, at most
    /// 4 hours.
    pub first_retry_seconds: u64,
    /// The port other servers' MX hosts are reached on. Always 25 on the Internet;
    /// tests and private networks may need another.
    pub remote_port: u16,
}

impl Default for QueueSection {
    fn default() -> Self {
        QueueSection {
            max_age_hours: 5 * 24,
            delay_notice_hours: 4,
            first_retry_seconds: 300,
            remote_port: 25,
        }
    }
}

/// `[relay]`: a smarthost for all outgoing mail, and (`[relay.domains."example.com"]`)
/// per sending domain. The keys are spelt out in both tables rather than shared with
/// serde's flatten, which would lose the key's name in error messages.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a table")]
pub struct RelaySection {
    /// Host name of the smarthost for all outgoing mail; empty: deliver directly.
    pub host: String,
    pub port: u16,
    pub tls: RelayTls,
    pub username: String,
    pub password_file: PathBuf,
    /// Smarthosts for mail from one sending domain, overriding the global one.
    pub domains: BTreeMap<String, DomainRelay>,
}

impl Default for RelaySection {
    fn default() -> Self {
        RelaySection {
            host: String::new(),
            port: DEFAULT_RELAY_PORT,
            tls: RelayTls::StartTls,
            username: String::new(),
            password_file: PathBuf::new(),
            domains: BTreeMap::new(),
        }
    }
}

/// Submission (RFC 6409), what relays take logins on.
const DEFAULT_RELAY_PORT: u16 = 587;

fn default_relay_port() -> u16 {
    DEFAULT_RELAY_PORT
}

/// `[relay.domains."example.com"]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct DomainRelay {
    pub host: String,
    #[serde(default = "default_relay_port")]
    pub port: u16,
    #[serde(default)]
    pub tls: RelayTls,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password_file: PathBuf,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RelayTls {
    #[default]
    StartTls,
    Implicit,
    Opportunistic,
}

impl RelayTls {
    pub fn as_str(self) -> &'static str {
        match self {
            RelayTls::StartTls => "starttls",
            RelayTls::Implicit => "implicit",
            RelayTls::Opportunistic => "opportunistic",
        }
    }
}

impl<'de> Deserialize<'de> for RelayTls {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "starttls" => Ok(RelayTls::StartTls),
            "implicit" => Ok(RelayTls::Implicit),
            "opportunistic" => Ok(RelayTls::Opportunistic),
            _ => Err(serde::de::Error::custom(format!(
                "unknown value {s:?} (expected one of {})",
                quoted_list(&["starttls", "implicit", "opportunistic"])
            ))),
        }
    }
}

/// `[dns]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a table")]
pub struct DnsSection {
    /// Resolvers as "IP:PORT"; empty: the system's (/etc/resolv.conf).
    #[serde(deserialize_with = "super::socket_addrs")]
    pub nameservers: Vec<SocketAddr>,
    /// This server's public addresses: the A/AAAA records suggested for its host name,
    /// and an MX target resolving to one of them is this server. Empty: whatever the
    /// host name resolves to.
    pub public_addresses: Vec<std::net::IpAddr>,
}

/// A smarthost's settings as tern-smtp takes them; reads the password file. `key` names
/// the table in errors.
fn relay_smarthost(
    (host, port, tls, username, password_file): (&str, u16, RelayTls, &str, &Path),
    data_dir: &Path,
    key: &str,
) -> Result<tern_smtp::Smarthost, ConfigErrorKind> {
    let credentials = if username.is_empty() {
        None
    } else {
        let path = data_dir.join(password_file);
        let text = std::fs::read_to_string(&path).map_err(|e| ConfigErrorKind::InvalidValue {
            key: format!("{key}.password_file"),
            message: format!(
                "cannot read {} ({e}); put the smarthost password on its first line",
                path.display()
            ),
        })?;
        let password = text.lines().next().unwrap_or("").to_string();
        Some((username.to_string(), password))
    };
    Ok(tern_smtp::Smarthost {
        host: host.to_string(),
        port,
        implicit_tls: tls == RelayTls::Implicit,
        require_tls: tls != RelayTls::Opportunistic,
        credentials,
    })
}

impl super::Config {
    /// The settings tern-smtp runs with. Reads the smarthost password files.
    pub fn smtp_config(&self, data_dir: &Path) -> Result<tern_smtp::SmtpConfig, ConfigErrorKind> {
        let smarthost = if self.relay.host.is_empty() {
            None
        } else {
            let r = &self.relay;
            Some(relay_smarthost(
                (&r.host, r.port, r.tls, &r.username, &r.password_file),
                data_dir,
                "relay",
            )?)
        };
        let mut domain_smarthosts = Vec::new();
        for (domain, relay) in &self.relay.domains {
            let key = format!("relay.domains.{domain}");
            domain_smarthosts.push((
                domain.to_ascii_lowercase(),
                relay_smarthost(
                    (
                        &relay.host,
                        relay.port,
                        relay.tls,
                        &relay.username,
                        &relay.password_file,
                    ),
                    data_dir,
                    &key,
                )?,
            ));
        }
        Ok(tern_smtp::SmtpConfig {
            hostname: self.hostname.clone(),
            max_message_size: self.limits.max_message_size,
            max_recipients: self.smtp.max_recipients,
            max_messages_per_connection: self.smtp.max_messages_per_connection,
            submissions_per_hour: self.smtp.submissions_per_hour,
            recipients_per_hour: self.smtp.recipients_per_hour,
            inbound_per_ip_per_hour: self.smtp.inbound_per_ip_per_hour,
            dmarc_reject: self.smtp.dmarc_reject.0,
            max_queue_age: Duration::from_secs(self.queue.max_age_hours * 3600),
            delay_notice_after: Duration::from_secs(self.queue.delay_notice_hours * 3600),
            remote_port: self.queue.remote_port,
            smarthost,
            domain_smarthosts,
            nameservers: self.dns.nameservers.clone(),
            ..Default::default()
        })
    }

    /// Checks of the SMTP tables that serde cannot make.
    pub(super) fn check_mail(&self) -> Result<(), ConfigErrorKind> {
        let invalid = |key: &str, message: &str| ConfigErrorKind::InvalidValue {
            key: key.to_string(),
            message: message.to_string(),
        };
        if self.smtp.max_recipients < 1 {
            return Err(invalid(
                "smtp.max_recipients",
                "must be at least 1 (RFC 5321 asks for 100)",
            ));
        }
        if self.smtp.max_messages_per_connection < 1 {
            return Err(invalid("smtp.max_messages_per_connection", "must be at least 1"));
        }
        if self.queue.max_age_hours < 1 {
            return Err(invalid("queue.max_age_hours", "must be at least 1 hour"));
        }
        if self.queue.first_retry_seconds < 1 {
            return Err(invalid("queue.first_retry_seconds", "must be at least 1 second"));
        }
        if self.queue.remote_port == 0 {
            return Err(invalid(
                "queue.remote_port",
                "must be a port number (25 on the Internet)",
            ));
        }
        for (domain, relay) in &self.relay.domains {
            if relay.host.is_empty() {
                return Err(invalid(
                    &format!("relay.domains.{domain}.host"),
                    "is empty; name the smarthost",
                ));
            }
        }
        Ok(())
    }

    /// The SMTP tables as tern.toml text, every key commented.
    pub(super) fn mail_toml(&self, line: &mut dyn FnMut(&str)) {
        line("[smtp]");
        line("# Recipients per message; more are asked to come in another message.");
        line(&format!("max_recipients = {}", self.smtp.max_recipients));
        line("# Messages per connection before the client must reconnect.");
        line(&format!(
            "max_messages_per_connection = {}",
            self.smtp.max_messages_per_connection
        ));
        line("# Messages one user may submit per hour, and recipients they may send to.");
        line(&format!("submissions_per_hour = {}", self.smtp.submissions_per_hour));
        line(&format!("recipients_per_hour = {}", self.smtp.recipients_per_hour));
        line("# Messages accepted per hour from one IP address by the MX.");
        line(&format!(
            "inbound_per_ip_per_hour = {}",
            self.smtp.inbound_per_ip_per_hour
        ));
        line("# Incoming mail that fails DMARC when its domain publishes p=reject:");
        line("# \"reject\" it at the end of DATA, or deliver it to the Junk folder (\"junk\").");
        line("# p=quarantine always goes to Junk.");
        line(&format!(
            "dmarc_reject = {}",
            toml_string(self.smtp.dmarc_reject.as_str())
        ));
        line("");
        line("[queue]");
        line("# Delivery to other servers. A message is retried for max_age_hours, then");
        line("# returned to its sender; the sender hears of a delay after delay_notice_hours.");
        line(&format!("max_age_hours = {}", self.queue.max_age_hours));
        line(&format!("delay_notice_hours = {}", self.queue.delay_notice_hours));
        line("# Seconds before the first retry; each later one waits twice as long (at most 4 h).");
        line(&format!("first_retry_seconds = {}", self.queue.first_retry_seconds));
        line("# The port of other servers' MX hosts: 25 on the Internet.");
        line(&format!("remote_port = {}", self.queue.remote_port));
        line("");
        line("[relay]");
        line("# A smarthost that delivers all outgoing mail for Tern (many networks block");
        line("# port 25 out). Empty: Tern delivers to each domain's MX itself. Per sending");
        line("# domain: [relay.domains.\"example.com\"] with the same keys.");
        line(&format!("host = {}", toml_string(&self.relay.host)));
        line(&format!("port = {}", self.relay.port));
        line("# \"starttls\", \"implicit\" (TLS from the first byte, port 465) or \"opportunistic\".");
        line(&format!("tls = {}", toml_string(self.relay.tls.as_str())));
        line("# Login at the smarthost; the password is the first line of password_file.");
        line(&format!("username = {}", toml_string(&self.relay.username)));
        line(&format!(
            "password_file = {}",
            super::toml_path(&self.relay.password_file)
        ));
        for (domain, relay) in &self.relay.domains {
            line("");
            line(&format!("[relay.domains.{}]", toml_string(domain)));
            line(&format!("host = {}", toml_string(&relay.host)));
            line(&format!("port = {}", relay.port));
            line(&format!("tls = {}", toml_string(relay.tls.as_str())));
            line(&format!("username = {}", toml_string(&relay.username)));
            line(&format!("password_file = {}", super::toml_path(&relay.password_file)));
        }
        line("");
        line("[dns]");
        line("# Resolvers for SPF/DKIM/DMARC checks and MX lookups, as \"IP:PORT\".");
        line("# Empty: the system's (/etc/resolv.conf).");
        line(&format!("nameservers = {}", super::addr_list(&self.dns.nameservers)));
        line("# This server's public IP addresses, for the DNS records to publish and for");
        line("# telling an MX record that points here. Empty: what the host name resolves to.");
        let public: Vec<String> = self
            .dns
            .public_addresses
            .iter()
            .map(|a| super::toml_string(&a.to_string()))
            .collect();
        line(&format!("public_addresses = [{}]", public.join(", ")));
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use std::path::Path;

    const BASE: &str = "hostname = \"mail.example.com\"\n";

    fn load(text: &str, dir: &Path) -> Result<Config, String> {
        Config::from_toml_str(text, &dir.join("tern.toml"), dir).map_err(|e| e.to_string())
    }

    #[test]
    fn smarthosts_globally_and_per_domain() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("relay-password"), "s3cret\nignored\n").unwrap();
        let text = format!(
            "{BASE}[smtp]\ndmarc_reject = \"junk\"\n[relay]\nhost = \"smtp.provider.example\"\n\
             username = \"tern@example.com\"\npassword_file = \"relay-password\"\n\
             [relay.domains.\"example.org\"]\nhost = \"relay.example.org\"\nport = 465\ntls = \"implicit\"\n\
             [dns]\nnameservers = [\"127.0.0.1:5353\"]\n"
        );
        let config = load(&text, dir.path()).unwrap();
        let smtp = config.smtp_config(dir.path()).unwrap();
        assert_eq!(smtp.dmarc_reject, tern_smtp::DmarcReject::Junk);
        let global = smtp.smarthost.unwrap();
        assert_eq!(
            (global.host.as_str(), global.port, global.require_tls),
            ("smtp.provider.example", 587, true)
        );
        assert_eq!(global.credentials, Some(("tern@example.com".into(), "s3cret".into())));
        let (domain, per_domain) = &smtp.domain_smarthosts[0];
        assert_eq!(domain, "example.org");
        assert!(per_domain.implicit_tls && per_domain.credentials.is_none());
        assert_eq!(smtp.nameservers, vec!["127.0.0.1:5353".parse().unwrap()]);
        // What Tern writes reads back the same.
        assert_eq!(load(&config.to_toml_string(), dir.path()).unwrap(), config);
    }

    #[test]
    fn bad_smtp_settings_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let err = load(
            &format!("{BASE}[relay]\nhost = \"x\"\ntls = \"sometimes\"\n"),
            dir.path(),
        )
        .unwrap_err();
        assert!(err.contains("relay.tls") && err.contains("\"starttls\""), "{err}");
        let err = load(&format!("{BASE}[smtp]\nmax_recipients = 0\n"), dir.path()).unwrap_err();
        assert!(err.contains("smtp.max_recipients"), "{err}");
        let err = load(&format!("{BASE}[queue]\nremote_port = 0\n"), dir.path()).unwrap_err();
        assert!(err.contains("queue.remote_port"), "{err}");
        let config = load(
            &format!("{BASE}[relay]\nhost = \"x\"\nusername = \"u\"\npassword_file = \"missing\"\n"),
            dir.path(),
        )
        .unwrap();
        let err = config.smtp_config(dir.path()).unwrap_err();
        let text = format!("{err:?}");
        assert!(text.contains("relay.password_file"), "{text}");
    }
}
