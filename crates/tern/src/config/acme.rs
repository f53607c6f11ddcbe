//! `[acme]` in tern.toml: getting the TLS certificate from an ACME CA (RFC 8555; Let's
//! Encrypt by default) and keeping it renewed. docs/config.md describes every key;
//! `crate::acme` does the work.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{ConfigErrorKind, toml_path, toml_string};

/// Let's Encrypt's production directory (RFC 8555 §7.1.1).
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// The renewal window by default: Let's Encrypt's certificates last 90 days and it
/// suggests renewing with a third of that left.
pub const DEFAULT_RENEW_BEFORE_DAYS: u32 = 30;

/// The longest renewal window accepted: past it, a 90-day certificate would be renewed
/// as soon as it is issued.
const MAX_RENEW_BEFORE_DAYS: u32 = 60;

/// `[acme]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a table")]
pub struct AcmeSection {
    /// Whether Tern gets and renews its certificate itself. `tern init` turns it on.
    pub enabled: bool,
    /// The CA's directory URL (https).
    pub directory: String,
    /// An email address the CA may write to about the account; empty: none.
    pub contact: String,
    /// A PEM file of CA certificates to trust for the ACME server's own HTTPS, besides
    /// the system's (a private or test CA such as pebble's). Empty: the system's only.
    pub ca_file: PathBuf,
    /// Renew when the certificate has fewer days than this left.
    pub renew_before_days: u32,
}

impl Default for AcmeSection {
    fn default() -> Self {
        AcmeSection {
            enabled: false,
            directory: LETS_ENCRYPT.to_string(),
            contact: String::new(),
            ca_file: PathBuf::new(),
            renew_before_days: DEFAULT_RENEW_BEFORE_DAYS,
        }
    }
}

impl AcmeSection {
    /// The extra CA file, relative paths taken from `data_dir`; `None` when unset.
    pub fn ca_file_path(&self, data_dir: &Path) -> Option<PathBuf> {
        (!self.ca_file.as_os_str().is_empty()).then(|| data_dir.join(&self.ca_file))
    }
}

impl super::Config {
    /// Checks of `[acme]` serde cannot make. `data_dir` is `None` when there is no
    /// folder to look in yet.
    pub(super) fn check_acme(&self, data_dir: Option<&Path>) -> Result<(), ConfigErrorKind> {
        let acme = &self.acme;
        let invalid = |key: &str, message: String| ConfigErrorKind::InvalidValue {
            key: key.to_string(),
            message,
        };
        // RFC 8555 §6.1: ACME runs over HTTPS only.
        let Some(rest) = acme.directory.strip_prefix("https://") else {
            return Err(invalid(
                "acme.directory",
                format!(
                    "{:?} is not an https:// URL (ACME runs over HTTPS only); Let's Encrypt's is {LETS_ENCRYPT:?}",
                    acme.directory
                ),
            ));
        };
        if rest.is_empty() || rest.starts_with('/') || acme.directory.chars().any(char::is_whitespace) {
            return Err(invalid(
                "acme.directory",
                format!("{:?} has no host name", acme.directory),
            ));
        }
        if !acme.contact.is_empty() && !is_plain_address(&acme.contact) {
            return Err(invalid(
                "acme.contact",
                format!(
                    "{:?} is not an email address (write it plain, e.g. \"postmaster@example.com\", without mailto:)",
                    acme.contact
                ),
            ));
        }
        if !(1..=MAX_RENEW_BEFORE_DAYS).contains(&acme.renew_before_days) {
            return Err(invalid(
                "acme.renew_before_days",
                format!(
                    "must be between 1 and {MAX_RENEW_BEFORE_DAYS} (Let's Encrypt's certificates last 90 days); {} is not",
                    acme.renew_before_days
                ),
            ));
        }
        if !acme.enabled {
            return Ok(());
        }
        // RFC 8555 §8.3: the CA fetches HTTP-01 challenges over plain HTTP (port 80).
        if self.listen.http.is_empty() {
            return Err(invalid(
                "acme.enabled",
                "needs the plain HTTP listener (listen.http, port 80 on the Internet): the CA checks \
                 this server's names there"
                    .to_string(),
            ));
        }
        if let Some(path) = data_dir.and_then(|dir| acme.ca_file_path(dir))
            && !path.is_file()
        {
            return Err(invalid(
                "acme.ca_file",
                format!(
                    "{} is not a file; point it at the PEM file of the ACME server's CA, or leave it empty",
                    path.display()
                ),
            ));
        }
        Ok(())
    }

    /// `[acme]` as tern.toml text, every key commented.
    pub(super) fn acme_toml(&self, line: &mut dyn FnMut(&str)) {
        let acme = &self.acme;
        line("[acme]");
        line("# Get the TLS certificate from an ACME CA (Let's Encrypt) and renew it before it");
        line("# expires, without a restart. It covers this host's name and, for every hosted");
        line("# domain, autoconfig., autodiscover. and mta-sts. names whose DNS points here.");
        line("# The CA checks each name over plain HTTP: listen.http must be reachable on port 80.");
        line("# The certificate is written to [tls] certificate and private_key.");
        line(&format!("enabled = {}", acme.enabled));
        line("# The CA's directory URL.");
        line(&format!("directory = {}", toml_string(&acme.directory)));
        line("# An email address the CA may write to about this account (optional).");
        line(&format!("contact = {}", toml_string(&acme.contact)));
        line("# A PEM file of CAs to trust for the ACME server's own HTTPS, besides the system's");
        line("# (a private or test CA). Empty: the system's only.");
        line(&format!("ca_file = {}", toml_path(&acme.ca_file)));
        line("# Renew when the certificate has fewer than this many days left.");
        line(&format!("renew_before_days = {}", acme.renew_before_days));
    }
}

/// `local@domain` with no spaces, brackets or URL scheme: what goes after "mailto:" in
/// the account's contact (RFC 8555 §7.3).
fn is_plain_address(address: &str) -> bool {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !address.to_ascii_lowercase().starts_with("mailto:")
        && address
            .chars()
            .all(|c| c.is_ascii_graphic() && !"<>()[]\\,;:\"".contains(c))
}

#[cfg(test)]
mod tests {
    use super::super::{Config, FILE_NAME};
    use std::path::Path;

    fn load(text: &str, dir: &Path) -> Result<Config, String> {
        Config::from_toml_str(text, &dir.join(FILE_NAME), dir).map_err(|e| e.to_string())
    }

    #[test]
    fn off_by_default_and_on_for_production() {
        let dir = tempfile::tempdir().unwrap();
        let config = load("hostname = \"mail.example.com\"\n", dir.path()).unwrap();
        assert!(!config.acme.enabled);
        assert_eq!(config.acme.directory, super::LETS_ENCRYPT);
        assert_eq!(config.acme.renew_before_days, 30);
        assert!(!Config::quickstart("mail.example.test", 0).unwrap().acme.enabled);
        let production = Config::production("mx.example.org").unwrap();
        assert!(production.acme.enabled);
    }

    #[test]
    fn production_with_acme_loads_before_any_certificate_exists() {
        // ACME fetches the certificate after start, so its files need not exist yet.
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::production("mx.example.org").unwrap();
        config.acme.contact = "postmaster@example.org".into();
        config.acme.renew_before_days = 21;
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, config.to_toml_string()).unwrap();
        assert_eq!(Config::load(&path).unwrap(), config);
        // Without ACME the missing files are an error again.
        config.acme.enabled = false;
        std::fs::write(&path, config.to_toml_string()).unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.contains("tls.certificate"), "{err}");
    }

    #[test]
    fn every_key_is_written_under_a_comment() {
        let text = Config::production("mx.example.org").unwrap().to_toml_string();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.iter().position(|l| *l == "[acme]").expect("[acme] written");
        for key in ["enabled", "directory", "contact", "ca_file", "renew_before_days"] {
            let at = start
                + lines[start..]
                    .iter()
                    .position(|l| l.starts_with(&format!("{key} = ")))
                    .unwrap_or_else(|| panic!("{key} not written"));
            assert!(lines[at - 1].starts_with('#'), "{key} has no comment above it");
        }
    }

    #[test]
    fn bad_values_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let base = "hostname = \"mail.example.com\"\n[listen]\nhttp = [\"127.0.0.1:0\"]\n[acme]\n";
        for (body, key, words) in [
            (
                "directory = \"http://acme.example/dir\"\n",
                "acme.directory",
                "not an https:// URL",
            ),
            ("directory = \"https:///dir\"\n", "acme.directory", "no host name"),
            (
                "contact = \"mailto:me@example.com\"\n",
                "acme.contact",
                "without mailto:",
            ),
            ("contact = \"nobody\"\n", "acme.contact", "not an email address"),
            ("renew_before_days = 0\n", "acme.renew_before_days", "between 1 and 60"),
            ("renew_before_days = 90\n", "acme.renew_before_days", "between 1 and 60"),
            ("enabled = \"yes\"\n", "acme.enabled", "true or false"),
            ("renew = 3\n", "acme.renew", "unknown key"),
            (
                "enabled = true\nca_file = \"pebble.pem\"\n",
                "acme.ca_file",
                "pebble.pem is not a file",
            ),
        ] {
            let err = load(&format!("{base}{body}"), dir.path()).unwrap_err();
            assert!(err.contains(key) && err.contains(words), "{body}: {err}");
        }
        let err = load("hostname = \"mail.example.com\"\n[acme]\nenabled = true\n", dir.path()).unwrap_err();
        assert!(err.contains("acme.enabled: needs the plain HTTP listener"), "{err}");
        // A CA file that is there is taken, relative to the data folder.
        std::fs::write(dir.path().join("pebble.pem"), "x").unwrap();
        let config = load(
            &format!("{base}enabled = true\ncontact = \"admin@example.com\"\nca_file = \"pebble.pem\"\n"),
            dir.path(),
        )
        .unwrap();
        assert_eq!(
            config.acme.ca_file_path(dir.path()),
            Some(dir.path().join("pebble.pem"))
        );
    }
}
