//! An old provider's server: how to reach it and how to log in, as `tern migrate source
//! add` records it (kept as JSON in the store, see `tern_store::MigrationSource`).

use serde::{Deserialize, Serialize};

/// How the connection is protected (RFC 8314 recommends implicit TLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// TLS from the first byte (IMAPS 993, POP3S 995).
    Implicit,
    /// Plain connection upgraded with STARTTLS (RFC 9051 §6.2.1) or STLS (RFC 2595 §4).
    Starttls,
    /// No TLS: allowed only to loopback unless the source says `allow_plaintext`.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Imap,
    Pop3,
}

/// How each mailbox logs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    /// IMAP LOGIN (RFC 9051 §6.2.3) / POP3 USER+PASS. With an admin user: Dovecot's
    /// master-user form `user*admin`.
    Login,
    /// SASL PLAIN (RFC 4616). With an admin user: PLAIN with the mailbox as
    /// authorization identity and the admin as authentication identity.
    Plain,
    /// Google's and Microsoft's XOAUTH2 with an OAuth 2.0 access token.
    Xoauth2,
}

/// Known providers' addresses and limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    Generic,
    /// imap.gmail.com: `[Gmail]/All Mail`, Starred and Important are views of other
    /// labels, not folders of their own; about 2.5 GB of IMAP downloads per account and
    /// day.
    Gmail,
    /// outlook.office365.com: answers "throttled" when pushed; back off, don't fail.
    Office365,
}

/// Gmail's documented IMAP download limit per account and day, a little under 2.5 GB
/// so a pass stops before the server starts refusing.
pub const GMAIL_DAILY_BYTES: u64 = 2_400_000_000;

/// A source as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSettings {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub protocol: Protocol,
    pub auth: AuthMethod,
    /// An admin ("master") user that can open every mailbox; its password is the
    /// source's sealed secret.
    #[serde(default)]
    pub admin_user: Option<String>,
    pub preset: Preset,
    /// Plain-text logins to a host other than loopback (the admin said so explicitly).
    #[serde(default)]
    pub allow_plaintext: bool,
    /// A PEM file of CA certificates to trust besides the system's (a private CA).
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Parallel connections per mailbox (folders are spread over them).
    #[serde(default = "default_connections")]
    pub connections: usize,
    /// Folder rules, applied to the source's names (after namespace translation).
    #[serde(default)]
    pub rules: crate::folders::FolderRules,
    /// Bytes one account may download per day (Gmail); `None` for no cap.
    #[serde(default)]
    pub daily_bytes: Option<u64>,
    /// The OAuth client whose token endpoint renews XOAUTH2 access tokens from
    /// refresh tokens; its secret, if any, is the source's sealed secret.
    #[serde(default)]
    pub oauth: Option<crate::oauth::OAuthClient>,
}

fn default_connections() -> usize {
    2
}

impl SourceSettings {
    /// The settings a preset implies; explicit options then override them.
    pub fn preset(preset: Preset, protocol: Protocol) -> SourceSettings {
        let (host, daily_bytes, excluded) = match preset {
            Preset::Generic => ("", None, Vec::new()),
            Preset::Gmail => (
                if protocol == Protocol::Pop3 {
                    "pop.gmail.com"
                } else {
                    "imap.gmail.com"
                },
                Some(GMAIL_DAILY_BYTES),
                // RFC 6154 §2: \All and \Flagged are virtual; RFC 8457: \Important.
                vec!["\\All".to_string(), "\\Flagged".to_string(), "\\Important".to_string()],
            ),
            Preset::Office365 => ("outlook.office365.com", None, Vec::new()),
        };
        let rules = crate::folders::FolderRules {
            exclude_attributes: excluded,
            ..Default::default()
        };
        SourceSettings {
            host: host.to_string(),
            port: default_port(protocol, TlsMode::Implicit),
            tls: TlsMode::Implicit,
            protocol,
            auth: AuthMethod::Login,
            admin_user: None,
            preset,
            allow_plaintext: false,
            ca_file: None,
            connections: default_connections(),
            rules,
            daily_bytes,
            oauth: None,
        }
    }

    /// Checks what can be checked without connecting.
    pub fn validate(&self) -> Result<(), String> {
        if self.host.is_empty() {
            return Err("the source needs a host: pass --host".into());
        }
        if self.port == 0 {
            return Err("--port must be between 1 and 65535".into());
        }
        if self.tls == TlsMode::None && !self.allow_plaintext && !is_loopback(&self.host) {
            return Err(format!(
                "{} is not on this machine and --tls none would send passwords in clear text; use --tls implicit or starttls, or --allow-plaintext if the network is private",
                self.host
            ));
        }
        if self.connections == 0 || self.connections > 16 {
            return Err("--connections must be between 1 and 16".into());
        }
        if let Some(oauth) = &self.oauth {
            if self.auth != AuthMethod::Xoauth2 {
                return Err("--token-endpoint is for --auth xoauth2 sources".into());
            }
            let plain_host = oauth.token_endpoint.strip_prefix("http://").map(|rest| {
                let authority = rest.split('/').next().unwrap_or("");
                authority
                    .rsplit_once(':')
                    .map(|(h, _)| h)
                    .unwrap_or(authority)
                    .to_string()
            });
            match plain_host {
                Some(h) if !is_loopback(&h) => {
                    return Err(
                        "--token-endpoint must be an https:// URL (client secrets and tokens travel there)".into(),
                    );
                }
                None if !oauth.token_endpoint.starts_with("https://") => {
                    return Err(format!(
                        "--token-endpoint {:?} is not an https:// URL",
                        oauth.token_endpoint
                    ));
                }
                _ => {}
            }
        }
        if self.protocol == Protocol::Pop3 && self.auth == AuthMethod::Xoauth2 {
            return Err("XOAUTH2 is supported for IMAP sources only".into());
        }
        Ok(())
    }
}

/// A source by name, with its settings parsed.
pub async fn load(
    store: &dyn tern_store::Store,
    name: &str,
) -> Result<(tern_store::MigrationSource, SourceSettings), crate::MigrateError> {
    let source = store
        .migration_sources()
        .await?
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| tern_store::StoreError::NoSuchMigrationSource(name.to_string()))?;
    let settings = serde_json::from_str(&source.settings).map_err(|e| {
        crate::MigrateError::Config(format!("source {name:?}: unreadable settings ({e}); add it again"))
    })?;
    Ok((source, settings))
}

pub fn default_port(protocol: Protocol, tls: TlsMode) -> u16 {
    match (protocol, tls) {
        (Protocol::Imap, TlsMode::Implicit) => 993,
        (Protocol::Imap, _) => 143,
        (Protocol::Pop3, TlsMode::Implicit) => 995,
        (Protocol::Pop3, _) => 110,
    }
}

pub fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// One mailbox's way in, sealed into the migration's secret.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Credential {
    Password {
        password: String,
    },
    /// An OAuth 2.0 access token for XOAUTH2.
    Token {
        access_token: String,
    },
    /// An OAuth 2.0 refresh token, turned into access tokens at the source's token
    /// endpoint.
    Refresh {
        refresh_token: String,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a password or token, not even in a debug log.
        match self {
            Credential::Password { .. } => f.write_str("Password(…)"),
            Credential::Token { .. } => f.write_str("Token(…)"),
            Credential::Refresh { .. } => f.write_str("Refresh(…)"),
        }
    }
}

/// Everything needed to log in to one mailbox at the source.
#[derive(Debug, Clone)]
pub struct Login {
    pub user: String,
    /// The mailbox's own credential, or the admin's when `admin_user` is set.
    pub credential: Credential,
    pub admin_user: Option<String>,
    /// Renews access tokens for a `Credential::Refresh`.
    pub oauth: Option<std::sync::Arc<crate::oauth::OAuthSession>>,
}

impl Login {
    /// The password or access token given as it is (empty for a refresh token).
    pub fn secret(&self) -> &str {
        match &self.credential {
            Credential::Password { password } => password,
            Credential::Token { access_token } => access_token,
            Credential::Refresh { .. } => "",
        }
    }

    /// The XOAUTH2 access token: as given, or renewed from the refresh token.
    pub async fn access_token(&self) -> Result<String, crate::MigrateError> {
        match (&self.credential, &self.oauth) {
            (Credential::Token { access_token }, _) => Ok(access_token.clone()),
            (Credential::Refresh { .. }, Some(session)) => session.access_token().await,
            _ => Err(crate::MigrateError::Config(
                "XOAUTH2 needs an access token (--token-stdin) or a refresh token (--refresh-token-stdin)".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_only_to_loopback_unless_allowed() {
        let mut s = SourceSettings::preset(Preset::Generic, Protocol::Imap);
        s.host = "mail.old.example".into();
        s.tls = TlsMode::None;
        assert!(s.validate().unwrap_err().contains("clear text"));
        s.allow_plaintext = true;
        assert!(s.validate().is_ok());
        s.allow_plaintext = false;
        for host in ["127.0.0.1", "::1", "[::1]", "localhost"] {
            s.host = host.into();
            assert!(s.validate().is_ok(), "{host}");
        }
    }

    #[test]
    fn gmail_preset_skips_virtual_folders_and_caps_downloads() {
        let s = SourceSettings::preset(Preset::Gmail, Protocol::Imap);
        assert_eq!(
            (s.host.as_str(), s.port, s.tls),
            ("imap.gmail.com", 993, TlsMode::Implicit)
        );
        assert!(s.rules.exclude_attributes.contains(&"\\All".to_string()));
        assert_eq!(s.daily_bytes, Some(GMAIL_DAILY_BYTES));
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let c = Credential::Password {
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
