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
    /// submission 1587, submissions 1465, HTTP 8080, HTTPS 8443 (webmail).
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
    /// Copy users' mailboxes from the old provider (IMAP or POP3), in the background.
    ///
    /// Add the old server as a source, add each mailbox, start a pre-stage pass; after
    /// the MX record moves, run delta passes, then finish. Passes run inside
    /// `tern serve` (or `tern migrate run`). docs/migration.md walks through it.
    #[command(subcommand)]
    Migrate(MigrateCommand),
    /// Look at and act on outgoing mail waiting for delivery to other servers.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Who may use the admin console, and the API tokens scripts use.
    ///
    /// Administrators log in to https://HOST/admin with their own account. Scripts call
    /// the JSON API under /admin/api/v1 with `Authorization: Bearer TOKEN`
    /// (docs/admin-console.md).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// The TLS certificate: what it covers and when it expires, and ACME renewals.
    ///
    /// With [acme] on, `tern serve` gets the certificate from the CA (Let's Encrypt) and
    /// renews it by itself; `renew` asks the running server to order one now.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Check a domain's DNS records, or print the ones to publish.
    #[command(subcommand)]
    Dns(DnsCommand),
    /// Check what a user's mail client would hit: names, ports, certificate, logins.
    ///
    /// Resolves the server's name, connects to every client port (IMAP 993/143, POP3
    /// 995/110, submission 465/587), checks the certificate's validity and name and,
    /// given the password, logs in over each protocol. Exits with status 1 when
    /// something a client needs is broken.
    Doctor(DoctorArgs),
}

#[derive(Debug, Subcommand)]
pub enum DnsCommand {
    /// Look up the domain's records and say, for each, ok / warning / error, what is
    /// published and the exact record to publish.
    ///
    /// MX, SPF, DKIM (the published key must be the one Tern signs with), DMARC,
    /// MTA-STS and TLS-RPT (advisory), the autoconfig and autodiscover names, the
    /// client SRV records (RFC 6186, RFC 8314), A/AAAA of this host and reverse DNS.
    /// With several --resolver, also compares their answers (split-horizon DNS).
    /// Exits with status 1 when a finding is an error.
    Check {
        domain: String,
        /// Ask this DNS server (IP or IP:PORT) instead of the system's; repeat to
        /// compare an internal and a public resolver.
        #[arg(long, value_name = "IP[:PORT]")]
        resolver: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Print the records to publish for the domain as a zone-file snippet.
    Records { domain: String },
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The user's address, e.g. alice@example.com.
    pub email: String,
    /// Read the user's password from standard input (one line) and log in with it
    /// over every protocol.
    #[arg(long)]
    pub password_stdin: bool,
    /// Ask this DNS server (IP or IP:PORT) instead of the system's.
    #[arg(long, value_name = "IP[:PORT]")]
    pub resolver: Option<String>,
    /// The server to check instead of the one the configuration names (host name).
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Trust the CA certificates in this PEM file too, besides the system's (a private CA,
    /// or a self-signed certificate itself).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Names, issuer, validity; with ACME, the next renewal, the last check and error,
    /// and the hosted domains' names left out of the certificate and why.
    Status(JsonFlag),
    /// Order a new certificate now through the running `tern serve`, and wait for it.
    ///
    /// The new certificate is in use on every port as soon as it is issued; no restart.
    /// Also picks up names of domains added since the last check.
    Renew {
        /// Leave the request with the server and return at once.
        #[arg(long)]
        no_wait: bool,
        /// Seconds to wait for the certificate before giving up.
        #[arg(long, default_value_t = 300, value_name = "SECONDS")]
        timeout: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// List queued messages: sender, recipients still pending, attempts, next try.
    List(JsonFlag),
    /// Show one queued message: every recipient's state and the last reply about it.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Try a queued message (or, with --all, every one) again now.
    Retry {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<i64>,
        #[arg(long)]
        all: bool,
    },
    /// Remove a queued message without delivering it or telling its sender.
    Delete { id: i64 },
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
    /// Show a domain's DKIM keys and the DNS records to publish; rotate or retire keys.
    ///
    /// Rotating adds a new RSA and Ed25519 key under new selectors and signs with them
    /// from now on; the old keys stay listed (inactive) until deleted, so publish the
    /// new records first and remove the old ones a few days later.
    Dkim {
        domain: String,
        /// Make new keys and stop signing with the current ones.
        #[arg(long, conflicts_with = "delete")]
        rotate: bool,
        /// Delete an inactive key by its selector (after its DNS record is gone).
        #[arg(long, value_name = "SELECTOR")]
        delete: Option<String>,
    },
    /// Whether Tern's MX accepts mail for the domain yet.
    ///
    /// "no" during a migration whose old provider keeps receiving until cutover: a
    /// sender that reaches Tern early is asked to retry later (451 4.3.2). Users can
    /// still send, and mail between local users is delivered at once.
    Receiving {
        domain: String,
        #[arg(value_parser = ["yes", "no"])]
        receiving: String,
    },
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
    /// Create many accounts from a CSV file.
    ///
    /// The first line names the columns: `address` (or email), and optionally `name`,
    /// `password` (generated when empty) and `quota`. Lines that cannot be made (an
    /// address in use, a domain not hosted) are reported and the rest go on; the
    /// generated passwords are printed once.
    Import {
        file: PathBuf,
        #[command(flatten)]
        json: JsonFlag,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Let an account use the admin console.
    Grant { email: String },
    /// Take the administrator role away (the last administrator stays).
    Revoke { email: String },
    /// List the administrators.
    List(JsonFlag),
    /// API tokens for the JSON API.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token; it is printed once (only its hash is kept).
    Create {
        /// A name saying what uses it, e.g. backup-script.
        name: String,
        /// The token may only read (GET): health, progress, lists; every change is refused.
        #[arg(long)]
        read_only: bool,
        /// Refuse the token from this many days on (1 to 3650); without it, it lasts
        /// until revoked.
        #[arg(long, value_name = "DAYS")]
        expires_in_days: Option<u32>,
    },
    /// List the tokens: name, access, when made and by whom, last used, expiry.
    List(JsonFlag),
    /// Revoke a token: requests carrying it are refused from now on.
    Revoke { name: String },
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

/// Which migrations a command applies to: one mailbox, a domain's, or all.
#[derive(Debug, Args)]
pub struct MigrationSelector {
    /// Only this mailbox (its Tern address).
    #[arg(long, value_name = "EMAIL", conflicts_with = "domain")]
    pub user: Option<String>,
    /// Only the mailboxes of this domain.
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Option<String>,
}

impl MigrationSelector {
    pub fn selector(&self) -> tern_admin::migrations::Selector {
        tern_admin::migrations::Selector {
            user: self.user.clone(),
            domain: self.domain.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Manage the old provider's servers.
    #[command(subcommand)]
    Source(SourceCommand),
    /// Add a mailbox to migrate: one (--user) or many from a CSV file (--csv).
    Add(MigrateAddArgs),
    /// Ask for a pass over the selected mailboxes (all by default).
    Start(MigrateStartArgs),
    /// Show or change when and how fast passes run.
    Schedule(MigrateScheduleArgs),
    /// Progress per mailbox: messages, bytes, rate, ETA, errors.
    Status(MigrateStatusArgs),
    /// One mailbox's report: per folder, what was copied, skipped and why, errors.
    Report {
        email: String,
        #[arg(long)]
        json: bool,
        /// Also deliver the report as a message into the user's INBOX.
        #[arg(long)]
        deliver: bool,
    },
    /// Compare the source and Tern folder by folder (counts, sizes, flags, content).
    ///
    /// Reads everything at the source again and does not trust the migration's own
    /// records. Exits with status 1 if a source message is missing in Tern.
    Verify {
        email: String,
        #[arg(long)]
        json: bool,
    },
    /// Pause running and queued passes; `resume` continues where they stopped.
    Pause(MigrationSelector),
    /// Continue paused passes.
    Resume(MigrationSelector),
    /// Stop passes and drop what was asked for (copied mail stays).
    Cancel(MigrationSelector),
    /// Final delta pass, then wipe the stored source credentials and mark done.
    Finish {
        /// The mailbox to finish.
        #[arg(required_unless_present = "domain", conflicts_with = "domain")]
        email: Option<String>,
        /// Finish every mailbox of this domain.
        #[arg(long)]
        domain: Option<String>,
        /// Wait until the final pass has ended (needs `tern serve` or `tern migrate run`).
        #[arg(long)]
        wait: bool,
    },
    /// Declare that a domain's MX record now points to Tern (go-live), by hand.
    ///
    /// `tern serve` notices this by itself by watching the MX record. Either way: the
    /// cutover time is recorded, a delta pass runs for every mailbox of the domain,
    /// more follow until no new mail has arrived at the old provider for the quiet
    /// period, then a final pass finishes each migration and the admin is told.
    Cutover { domain: String },
    /// Run queued passes in the foreground until none is left (without `tern serve`).
    Run,
    /// Forget a mailbox's migration (its copied mail stays in Tern).
    Remove { email: String },
}

#[derive(Debug, Subcommand)]
pub enum SourceCommand {
    /// Add (or change) an old provider's server.
    Add(SourceAddArgs),
    /// List sources.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a source no migration uses.
    Remove { name: String },
}

#[derive(Debug, Args)]
pub struct SourceAddArgs {
    /// A name for this source, e.g. "oldmail".
    pub name: String,
    /// The server's host name (a preset fills it in for Gmail and Microsoft 365).
    #[arg(long)]
    pub host: Option<String>,
    /// Port; default 993/143 for IMAP, 995/110 for POP3 by TLS mode.
    #[arg(long)]
    pub port: Option<u16>,
    /// implicit (IMAPS/POP3S), starttls, or none (loopback only unless --allow-plaintext).
    #[arg(long, value_enum)]
    pub tls: Option<TlsArg>,
    #[arg(long, value_enum, default_value = "imap")]
    pub protocol: ProtocolArg,
    /// login: IMAP LOGIN / POP3 USER+PASS; plain: SASL PLAIN; xoauth2: OAuth access tokens.
    #[arg(long, value_enum)]
    pub auth: Option<AuthArg>,
    /// An admin ("master") user that can open every mailbox.
    #[arg(long, requires = "admin_password_stdin")]
    pub admin_user: Option<String>,
    /// Read the admin's password from standard input.
    #[arg(long, requires = "admin_user")]
    pub admin_password_stdin: bool,
    /// XOAUTH2 with refresh tokens: the provider's OAuth token endpoint
    /// (e.g. https://oauth2.googleapis.com/token).
    #[arg(long, value_name = "URL", requires = "client_id")]
    pub token_endpoint: Option<String>,
    /// The OAuth client ID registered for the migration.
    #[arg(long, value_name = "ID", requires = "token_endpoint")]
    pub client_id: Option<String>,
    /// Read the OAuth client secret from standard input.
    #[arg(long, requires = "token_endpoint", conflicts_with = "admin_password_stdin")]
    pub client_secret_stdin: bool,
    #[arg(long, value_enum, default_value = "generic")]
    pub preset: PresetArg,
    /// Allow --tls none to a host other than loopback.
    #[arg(long)]
    pub allow_plaintext: bool,
    /// A PEM file of CA certificates to trust for this source (a private CA).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Connections per mailbox (folders are spread over them).
    #[arg(long, value_name = "N")]
    pub connections: Option<usize>,
    /// Do not copy folders matching this pattern (* any text, % within a level).
    #[arg(long, value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// Copy folder FROM (and its subfolders) to TO, e.g. --rename "Old Stuff=Archive/Old".
    #[arg(long, value_name = "FROM=TO")]
    pub rename: Vec<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TlsArg {
    Implicit,
    Starttls,
    None,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ProtocolArg {
    Imap,
    Pop3,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum AuthArg {
    Plain,
    Login,
    Xoauth2,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PresetArg {
    Generic,
    Gmail,
    Office365,
}

#[derive(Debug, Args)]
pub struct MigrateAddArgs {
    /// The source (from `tern migrate source add`).
    #[arg(long)]
    pub source: String,
    /// The Tern account the mail goes to.
    #[arg(long, value_name = "EMAIL", required_unless_present = "csv", conflicts_with = "csv")]
    pub user: Option<String>,
    /// The user name at the source (default: the Tern address).
    #[arg(long, value_name = "NAME")]
    pub remote_user: Option<String>,
    /// Read the mailbox's password from standard input.
    #[arg(long, conflicts_with = "token_stdin")]
    pub password_stdin: bool,
    /// Read an OAuth 2.0 access token from standard input (--auth xoauth2 sources).
    #[arg(long, conflicts_with = "refresh_token_stdin")]
    pub token_stdin: bool,
    /// Read an OAuth 2.0 refresh token from standard input (--auth xoauth2 sources
    /// with --token-endpoint): access tokens are renewed as they expire.
    #[arg(long, conflicts_with = "password_stdin")]
    pub refresh_token_stdin: bool,
    /// Many mailboxes: a CSV with columns EmailAddress,UserName,Password[,UserRoot].
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct MigrateStartArgs {
    /// prestage (bulk, in schedule windows), full (everything, now), delta (what
    /// changed since the last pass), retry-errors.
    #[arg(long, value_enum, default_value = "prestage")]
    pub pass: PassArg,
    /// Only messages received on or after this date (YYYY-MM-DD).
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// Only messages received before this date (YYYY-MM-DD).
    #[arg(long, value_name = "DATE")]
    pub before: Option<String>,
    /// Also delete from Tern what was deleted at the source (refused after cutover).
    #[arg(long)]
    pub propagate_deletions: bool,
    #[command(flatten)]
    pub which: MigrationSelector,
    /// Wait until the passes have ended (needs `tern serve` or `tern migrate run`).
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PassArg {
    Prestage,
    Full,
    Delta,
    RetryErrors,
}

#[derive(Debug, Args)]
pub struct MigrateScheduleArgs {
    /// A window when pre-stage passes run, e.g. "Mon-Fri 19:00-07:00" or "Sat-Sun";
    /// repeat for several. Replaces the current windows.
    #[arg(long, value_name = "WINDOW")]
    pub window: Vec<String>,
    /// Let pre-stage passes run at any time again.
    #[arg(long, conflicts_with = "window")]
    pub always: bool,
    /// The windows' time zone (IANA name, e.g. Europe/Berlin).
    #[arg(long, value_name = "ZONE")]
    pub tz: Option<String>,
    /// Cap over all passes, e.g. 20MB/s ("none" for no cap).
    #[arg(long, value_name = "RATE")]
    pub max_rate: Option<String>,
    /// Cap per mailbox, e.g. 2MB/s.
    #[arg(long, value_name = "RATE")]
    pub mailbox_max_rate: Option<String>,
    /// Mailboxes migrated at once.
    #[arg(long, value_name = "N")]
    pub mailboxes_in_parallel: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct MigrateStatusArgs {
    /// Keep showing progress until no pass is running or queued.
    #[arg(long)]
    pub watch: bool,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub which: MigrationSelector,
}
