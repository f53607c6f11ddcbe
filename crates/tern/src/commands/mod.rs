//! One module per command family; this file holds what they share: opening the data
//! folder's store, reading passwords, sizes, and printing tables.

pub mod accounts;
pub mod admin;
pub mod cert;
pub mod dns;
pub mod doctor;
pub mod import;
pub mod mail;
pub mod migrate;
pub mod server;

use std::io::{BufRead, IsTerminal};
use std::path::Path;

use anyhow::{Context, Result, bail};
use tern_store::{EmbeddedStore, Store};

/// Where things live in the data folder.
pub struct DataDir<'a>(pub &'a Path);

impl DataDir<'_> {
    pub fn config(&self) -> std::path::PathBuf {
        self.0.join("tern.toml")
    }
    pub fn store(&self) -> std::path::PathBuf {
        self.0.join("store")
    }
    /// Opens the mail store, which must have been created by `quickstart` or `init`.
    pub fn open_store(&self) -> Result<EmbeddedStore> {
        if !self.config().exists() {
            bail!(
                "{} is not a Tern data folder (no tern.toml); run `tern quickstart` or `tern init`, or pass --data",
                self.0.display()
            );
        }
        EmbeddedStore::open(&self.store())
            .with_context(|| format!("cannot open the mail store in {}", self.store().display()))
    }
}

/// Opens the store, runs a command on it, and closes it whatever the command returned,
/// so everything it wrote is flushed before the process exits.
pub async fn with_store<F, Fut>(data: &DataDir<'_>, command: F) -> Result<()>
where
    F: FnOnce(EmbeddedStore) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let store = data.open_store()?;
    let result = command(store.clone()).await;
    let closed = store.close().await;
    result?;
    Ok(closed?)
}

/// A storage limit: bytes, or unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota(pub Option<u64>);

/// Parses a storage limit as tern_admin::users::parse_quota does (for clap).
pub fn parse_quota(s: &str) -> Result<Quota, String> {
    tern_admin::users::parse_quota(s).map(Quota)
}

/// Bytes for people: `12.3 MB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Reads one line from standard input as a password (for --password-stdin). The
/// trailing newline is not part of the password.
pub fn password_from_stdin() -> Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Password: ");
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        bail!(
            "no password on standard input; pipe one in, e.g. `printf '%s' \"$PW\" | tern user add ... --password-stdin`"
        );
    }
    Ok(password)
}

/// Prints rows as an aligned table with a header line.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas() {
        assert_eq!(parse_quota("500MB"), Ok(Quota(Some(500 << 20))));
        assert_eq!(parse_quota("2g"), Ok(Quota(Some(2 << 30))));
        assert_eq!(parse_quota("1.5GiB"), Ok(Quota(Some(3 << 29))));
        assert_eq!(parse_quota("4096"), Ok(Quota(Some(4096))));
        assert_eq!(parse_quota("unlimited"), Ok(Quota(None)));
        assert!(parse_quota("lots").is_err());
        assert!(parse_quota("5 parsecs").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KB");
        assert_eq!(human_size(3 << 30), "3.0 GB");
    }
}
