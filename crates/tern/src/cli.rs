//! The command line: every subcommand, its flags and its help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Tern: a mail host that makes moving to it painless.
///
/// Tern hosts mail for your domains (IMAP, POP3, SMTP, webmail) and copies your users'
/// old mailboxes in from the previous provider while everyone keeps working.
///
/// Start with `tern quickstart` to try it on this machine, or `tern init` to write a
/// production configuration.
#[derive(Debug, Parser)]
#[command(name = "tern", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// The data folder: configuration (tern.toml), mail store and TLS files.
    #[arg(
        long,
        global = true,
        env = "TERN_DATA",
        default_value = "./tern-data",
        value_name = "DIR"
    )]
    pub data: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Set up a complete Tern on this machine and run it on loopback.
    ///
    /// On first run creates the data folder with a config, a self-signed certificate,
    /// a domain and a first user whose password is printed once. Later runs reuse it.
    /// Serves on 127.0.0.1: IMAP 1143, IMAPS 1993, POP3 1110, POP3S 1995, SMTP 2525,
    /// submission 1587, submissions 1465, HTTP 8080.
    Quickstart(QuickstartArgs),
    /// Write a production configuration (standard ports) without starting anything.
    Init(InitArgs),
    /// Run Tern as the configuration in the data folder says.
    Serve,
    /// Manage hosted domains.
    #[command(subcommand)]
    Domain(DomainCommand),
    /// Manage user accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage aliases: extra addresses that deliver to an account.
    #[command(subcommand)]
    Alias(AliasCommand),
    /// Bring an exported mailbox (maildir or mbox) into an account.
    #[command(subcommand)]
    Import(ImportCommand),
}

#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// The mail domain to create on first run.
    #[arg(long, default_value = "example.test")]
    pub domain: String,
    /// Add N to every port (to run beside another mail server, or several Terns).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub port_offset: u16,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The first mail domain to host (e.g. example.com).
    #[arg(long)]
    pub domain: String,
    /// This server's host name as clients and other servers reach it (e.g. mail.example.com).
    #[arg(long)]
    pub hostname: String,
    /// Overwrite an existing tern.toml.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DomainCommand {
    /// Start hosting a domain.
    Add { domain: String },
    /// List hosted domains.
    List(JsonFlag),
    /// Stop hosting a domain (it must have no accounts or aliases left).
    Remove { domain: String },
    /// Deliver mail for unknown addresses of a domain to one account, or stop doing so.
    CatchAll {
        domain: String,
        /// The account that receives it.
        #[arg(long, conflicts_with = "off", required_unless_present = "off")]
        target: Option<String>,
        /// Refuse unknown addresses again.
        #[arg(long)]
        off: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account (with INBOX, Sent, Drafts, Trash, Junk and Archive).
    ///
    /// Without --password-stdin a strong password is generated and printed once.
    Add {
        /// The account's address, e.g. alice@example.com.
        email: String,
        /// Display name, e.g. "Alice Smith".
        #[arg(long)]
        name: Option<String>,
        /// Storage limit, e.g. 500MB, 2GB, or "unlimited" (the default).
        #[arg(long, value_parser = crate::commands::parse_quota)]
        quota: Option<crate::commands::Quota>,
        /// Read the password from standard input (one line) instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List accounts.
    List {
        /// Only accounts of this domain.
        #[arg(long)]
        domain: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Set a new password (generated and printed unless --password-stdin).
    Passwd {
        email: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Stop an account from logging in (its mail stays).
    Disable { email: String },
    /// Let a disabled account log in again.
    Enable { email: String },
    /// Change an account's storage limit (e.g. 2GB, or "unlimited").
    Quota {
        email: String,
        #[arg(value_parser = crate::commands::parse_quota)]
        size: crate::commands::Quota,
    },
    /// Delete an account and all its mail.
    Remove {
        email: String,
        /// Confirm that the account's mail is to be deleted.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AliasCommand {
    /// Make ADDRESS deliver to the account TARGET.
    Add { address: String, target: String },
    /// List aliases.
    List {
        /// Only aliases of this domain.
        #[arg(long)]
        domain: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Remove an alias.
    Remove { address: String },
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Import a maildir, or a whole Maildir++ tree with its subfolders.
    ///
    /// Flags (seen, replied, flagged, trashed, draft; Dovecot keywords) and dates come
    /// along. The root folder goes to INBOX (or --folder), subfolders keep their names.
    Maildir(ImportArgs),
    /// Import an mbox file (as written by mutt, Thunderbird, Dovecot, Google Takeout).
    ///
    /// Status/X-Status flags and the dates of the "From " lines come along.
    Mbox(ImportArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The account to import into.
    pub email: String,
    /// The maildir folder or mbox file.
    pub path: PathBuf,
    /// The folder to import into (created if missing). Default: INBOX; for a Maildir++
    /// tree, subfolders go beneath this folder.
    #[arg(long, value_name = "NAME")]
    pub folder: Option<String>,
}
