//! The store's vocabulary: ids, flags, mailbox and message records, and the requests
//! that writers hand to the store.

use serde::{Deserialize, Serialize};

/// Row id of a hosted domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DomainId(pub i64);

/// Row id of an account (a user's mail account, `local@domain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AccountId(pub i64);

/// Row id of a mailbox (an IMAP folder).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MailboxId(pub i64);

/// An IMAP UID: unique within a mailbox for one UIDVALIDITY, strictly increasing,
/// never reused (RFC 9051 §2.3.1.1).
pub type Uid = u32;

/// A CONDSTORE mod-sequence (RFC 7162 §3.1.1): every change to a mailbox gets a larger one.
pub type ModSeq = u64;

/// The hierarchy delimiter of mailbox names (RFC 9051 §5.1).
pub const DELIMITER: char = '/';

/// The name of the inbox; matched case-insensitively (RFC 9051 §5.1).
pub const INBOX: &str = "INBOX";

/// IMAP system flags (RFC 9051 §2.3.2), kept as a bit set. `\Recent` is not stored:
/// IMAP4rev2 dropped it and a rev1 session derives it itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct SystemFlags(pub u8);

impl SystemFlags {
    pub const SEEN: SystemFlags = SystemFlags(1);
    pub const ANSWERED: SystemFlags = SystemFlags(2);
    pub const FLAGGED: SystemFlags = SystemFlags(4);
    pub const DELETED: SystemFlags = SystemFlags(8);
    pub const DRAFT: SystemFlags = SystemFlags(16);
    pub const ALL: [(SystemFlags, &'static str); 5] = [
        (Self::SEEN, "\\Seen"),
        (Self::ANSWERED, "\\Answered"),
        (Self::FLAGGED, "\\Flagged"),
        (Self::DELETED, "\\Deleted"),
        (Self::DRAFT, "\\Draft"),
    ];

    pub const fn empty() -> Self {
        SystemFlags(0)
    }
    pub const fn contains(self, other: SystemFlags) -> bool {
        self.0 & other.0 == other.0
    }
    pub const fn union(self, other: SystemFlags) -> Self {
        SystemFlags(self.0 | other.0)
    }
    pub const fn difference(self, other: SystemFlags) -> Self {
        SystemFlags(self.0 & !other.0)
    }
    /// Parses an IMAP system flag name such as `\Seen` (case-insensitive).
    pub fn from_name(name: &str) -> Option<SystemFlags> {
        Self::ALL
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(name))
            .map(|(f, _)| *f)
    }
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::ALL
            .into_iter()
            .filter(move |(f, _)| self.contains(*f))
            .map(|(_, n)| n)
    }
}

/// A message's flags: system flags plus keywords (RFC 9051 §2.3.2). Keywords are kept
/// sorted and unique so that two equal sets compare equal.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Flags {
    pub system: SystemFlags,
    pub keywords: Vec<String>,
}

impl Flags {
    pub fn new(system: SystemFlags, keywords: impl IntoIterator<Item = String>) -> Self {
        let mut f = Flags {
            system,
            keywords: keywords.into_iter().collect(),
        };
        f.normalise();
        f
    }
    pub fn system(system: SystemFlags) -> Self {
        Flags {
            system,
            keywords: Vec::new(),
        }
    }
    /// Parses IMAP flag names (`\Seen`, `$Forwarded`, `Work`). Unknown backslash flags are
    /// dropped: a client may not invent system flags (RFC 9051 §2.3.2).
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut f = Flags::default();
        for name in names {
            if let Some(s) = SystemFlags::from_name(name) {
                f.system = f.system.union(s);
            } else if !name.starts_with('\\') && !name.is_empty() {
                f.keywords.push(name.to_string());
            }
        }
        f.normalise();
        f
    }
    /// Every flag as its IMAP name, system flags first.
    pub fn names(&self) -> Vec<String> {
        self.system
            .names()
            .map(str::to_string)
            .chain(self.keywords.iter().cloned())
            .collect()
    }
    pub fn is_seen(&self) -> bool {
        self.system.contains(SystemFlags::SEEN)
    }
    pub fn is_deleted(&self) -> bool {
        self.system.contains(SystemFlags::DELETED)
    }
    fn normalise(&mut self) {
        // Keywords are case-insensitive atoms (RFC 9051 §2.3.2); keep the first spelling.
        self.keywords.sort_by_key(|k| k.to_ascii_lowercase());
        self.keywords.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    }
    pub(crate) fn apply(&self, op: FlagOp, change: &Flags) -> Flags {
        match op {
            FlagOp::Replace => change.clone(),
            FlagOp::Add => Flags::new(
                self.system.union(change.system),
                self.keywords.iter().chain(&change.keywords).cloned(),
            ),
            FlagOp::Remove => Flags::new(
                self.system.difference(change.system),
                self.keywords
                    .iter()
                    .filter(|k| !change.keywords.iter().any(|c| c.eq_ignore_ascii_case(k)))
                    .cloned(),
            ),
        }
    }
}

/// How STORE changes flags (RFC 9051 §6.4.6: FLAGS, +FLAGS, -FLAGS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagOp {
    Replace,
    Add,
    Remove,
}

/// Special-use attributes of mailboxes (RFC 6154 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SpecialUse {
    All,
    Archive,
    Drafts,
    Flagged,
    Junk,
    Sent,
    Trash,
}

impl SpecialUse {
    pub fn attribute(self) -> &'static str {
        match self {
            SpecialUse::All => "\\All",
            SpecialUse::Archive => "\\Archive",
            SpecialUse::Drafts => "\\Drafts",
            SpecialUse::Flagged => "\\Flagged",
            SpecialUse::Junk => "\\Junk",
            SpecialUse::Sent => "\\Sent",
            SpecialUse::Trash => "\\Trash",
        }
    }
    pub fn from_attribute(s: &str) -> Option<SpecialUse> {
        [
            SpecialUse::All,
            SpecialUse::Archive,
            SpecialUse::Drafts,
            SpecialUse::Flagged,
            SpecialUse::Junk,
            SpecialUse::Sent,
            SpecialUse::Trash,
        ]
        .into_iter()
        .find(|u| u.attribute().eq_ignore_ascii_case(s))
    }
    /// The folders every new account starts with, besides INBOX.
    pub const DEFAULT_FOLDERS: [(&'static str, SpecialUse); 5] = [
        ("Sent", SpecialUse::Sent),
        ("Drafts", SpecialUse::Drafts),
        ("Trash", SpecialUse::Trash),
        ("Junk", SpecialUse::Junk),
        ("Archive", SpecialUse::Archive),
    ];
}

/// A hosted domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domain {
    pub id: DomainId,
    pub name: String,
    /// Where mail to unknown local parts goes, if anywhere.
    pub catch_all: Option<String>,
    /// Whether SMTP accepts mail for it. `false` during a migration whose old provider
    /// must keep receiving until cutover: senders are told to try later (4xx) and
    /// retry, so nothing is split between the two hosts.
    pub receiving: bool,
    pub accounts: u64,
    pub aliases: u64,
}

/// A user's account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
    pub address: String,
    pub display_name: Option<String>,
    /// Maximum bytes of mail; `None` is unlimited.
    pub quota: Option<u64>,
    pub enabled: bool,
    /// Bytes of mail in all mailboxes (what QUOTA reports as STORAGE).
    pub used: u64,
    pub created: i64,
    #[serde(skip)]
    pub password_hash: Option<String>,
}

/// What `create_account` needs.
#[derive(Debug, Clone, Default)]
pub struct NewAccount {
    pub address: String,
    pub display_name: Option<String>,
    /// An Argon2id PHC string from [`crate::password::hash`]; `None` means no password
    /// login until one is set.
    pub password_hash: Option<String>,
    pub quota: Option<u64>,
}

/// An alias: another address delivering to an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alias {
    pub address: String,
    pub target: String,
}

/// A mailbox and its IMAP state (RFC 9051 §6.3.11 STATUS, RFC 7162 HIGHESTMODSEQ).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mailbox {
    pub id: MailboxId,
    pub account: AccountId,
    pub name: String,
    pub special_use: Option<SpecialUse>,
    pub subscribed: bool,
    pub uidvalidity: u32,
    pub uidnext: Uid,
    pub highest_modseq: ModSeq,
    pub messages: u32,
    pub unseen: u32,
    pub deleted: u32,
    /// Sum of RFC822.SIZE of the messages (STATUS SIZE, RFC 8438).
    pub size: u64,
}

/// One message as a mailbox listing sees it: enough to build a session's view
/// (sequence numbers ↔ UIDs) and answer FLAGS, MODSEQ, INTERNALDATE and RFC822.SIZE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageSummary {
    pub uid: Uid,
    pub modseq: ModSeq,
    pub flags: Flags,
    /// INTERNALDATE, unix seconds.
    pub internal_date: i64,
    /// SAVEDATE (RFC 8514), unix seconds: when the message entered this mailbox.
    pub save_date: i64,
    pub size: u64,
}

/// A message to append.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The message exactly as received or fetched; stored byte for byte.
    pub raw: Vec<u8>,
    pub flags: Flags,
    /// INTERNALDATE, unix seconds; `None` means now.
    pub internal_date: Option<i64>,
    /// The UIDL the message had on the POP3 server it was migrated from; POP3 then
    /// reports it unchanged (RFC 1939 §7), so clients that leave mail on the server do
    /// not download it again. `None` for everything else.
    pub pop3_uidl: Option<String>,
    /// The source message a migration copied this from: its map entry is written in
    /// the same transaction, so a pass killed at any moment never copies it twice.
    pub migrated_from: Option<crate::MigrationOrigin>,
}

impl NewMessage {
    pub fn new(raw: impl Into<Vec<u8>>) -> Self {
        NewMessage {
            raw: raw.into(),
            flags: Flags::default(),
            internal_date: None,
            pop3_uidl: None,
            migrated_from: None,
        }
    }
}

/// What an append returns for each message (the APPENDUID data of RFC 4315 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub uidvalidity: u32,
    pub uid: Uid,
    pub modseq: ModSeq,
}

/// Which messages an expunge removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expunge {
    /// Every message flagged `\Deleted` (IMAP EXPUNGE, CLOSE).
    AllDeleted,
    /// The given UIDs, if flagged `\Deleted` (UID EXPUNGE, RFC 4315 §2.1).
    DeletedAmong(Vec<Uid>),
    /// The given UIDs whatever their flags (POP3 DELE at QUIT, webmail delete, MOVE).
    Uids(Vec<Uid>),
}

/// The outcome of a flag change (STORE / UID STORE with CONDSTORE, RFC 7162 §3.1.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlagsUpdate {
    /// Messages whose flags are now as given (changed or not), with their modseq.
    pub updated: Vec<(Uid, Flags, ModSeq)>,
    /// UIDs not changed because their modseq was above UNCHANGEDSINCE (the MODIFIED
    /// response code).
    pub modified: Vec<Uid>,
}

/// UIDs in the source and the messages they became in the target (COPYUID, RFC 4315 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyResult {
    pub uidvalidity: u32,
    pub mapping: Vec<(Uid, Uid)>,
}

/// What changed in a mailbox since a mod-sequence (CONDSTORE / QRESYNC, RFC 7162 §3.2.5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub changed: Vec<MessageSummary>,
    /// Expunged UIDs with an expunge modseq above the given one (VANISHED (EARLIER)).
    pub vanished: Vec<Uid>,
}

/// Where a full-text search looks (RFC 9051 §6.4.4 BODY, TEXT; webmail search).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TextField {
    /// Header fields (subject, addresses and names).
    Headers,
    /// Decoded text of the body parts.
    Body,
    /// Both.
    Text,
}
