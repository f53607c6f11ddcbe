//! `[golive]` of tern.toml: how Tern notices that a migrating domain's MX record now
//! points to it, and how long it keeps bringing over late mail (tern_dns::golive).
//! docs/config.md describes every key.

use std::time::Duration;

use serde::Deserialize;

use super::{Config, ConfigErrorKind};

/// `[golive]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a table")]
pub struct GoLiveSection {
    /// Watch the MX records of migrating domains (off: only `tern migrate cutover`).
    pub watch: bool,
    /// Checks in a row that must see every MX record pointing here.
    pub consecutive_checks: u32,
    /// Seconds between MX checks.
    pub check_interval_seconds: u64,
    /// Seconds between delta passes after the cutover.
    pub delta_interval_seconds: u64,
    /// The shortest time without new mail at the old provider before the final pass
    /// (the quiet period is twice the old MX record's TTL, at least this).
    pub min_quiet_hours: u64,
}

impl Default for GoLiveSection {
    fn default() -> Self {
        let d = tern_dns::golive::GoLiveConfig::default();
        GoLiveSection {
            watch: d.watch,
            consecutive_checks: d.consecutive_checks,
            check_interval_seconds: d.check_interval.as_secs(),
            delta_interval_seconds: d.delta_interval.as_secs(),
            min_quiet_hours: d.min_quiet.as_secs() / 3600,
        }
    }
}

impl GoLiveSection {
    /// The settings as tern-dns takes them.
    pub fn config(&self) -> tern_dns::golive::GoLiveConfig {
        tern_dns::golive::GoLiveConfig {
            watch: self.watch,
            consecutive_checks: self.consecutive_checks,
            check_interval: Duration::from_secs(self.check_interval_seconds),
            delta_interval: Duration::from_secs(self.delta_interval_seconds),
            min_quiet: Duration::from_secs(self.min_quiet_hours * 3600),
        }
    }
}

impl Config {
    pub(super) fn check_golive(&self) -> Result<(), ConfigErrorKind> {
        let g = &self.golive;
        let invalid = |key: &str, message: &str| ConfigErrorKind::InvalidValue {
            key: format!("golive.{key}"),
            message: message.to_string(),
        };
        if g.consecutive_checks == 0 {
            return Err(invalid("consecutive_checks", "must be at least 1"));
        }
        if g.check_interval_seconds == 0 {
            return Err(invalid("check_interval_seconds", "must be at least 1"));
        }
        if g.delta_interval_seconds == 0 {
            return Err(invalid("delta_interval_seconds", "must be at least 1"));
        }
        if g.min_quiet_hours > 24 * 365 {
            return Err(invalid("min_quiet_hours", "must be at most 8760 (a year)"));
        }
        Ok(())
    }

    /// `[golive]` as tern.toml text, every key commented.
    pub(super) fn golive_toml(&self, line: &mut dyn FnMut(&str)) {
        let g = &self.golive;
        line("[golive]");
        line("# Watch the MX records of domains being migrated: when every MX record names");
        line("# this server on consecutive_checks checks in a row, the domain goes live");
        line("# (or say so by hand: tern migrate cutover DOMAIN).");
        line(&format!("watch = {}", g.watch));
        line(&format!("consecutive_checks = {}", g.consecutive_checks));
        line(&format!("check_interval_seconds = {}", g.check_interval_seconds));
        line("# After going live, a delta pass every delta_interval_seconds brings over mail");
        line("# that still reached the old provider, until none has come for twice the old MX");
        line("# record's TTL and at least min_quiet_hours; then the final pass finishes.");
        line(&format!("delta_interval_seconds = {}", g.delta_interval_seconds));
        line(&format!("min_quiet_hours = {}", g.min_quiet_hours));
    }
}
