//! Readers for exported mailboxes: a Maildir folder (or a Maildir++ tree of them) and
//! an mbox file.
//!
//! Both readers yield [`ExportedMessage`] values one at a time, so an import can
//! report progress and never holds more than one message in memory:
//!
//! - [`Maildir::open`] lists a folder up front; [`Maildir::len`] is the message count
//!   for a progress bar and [`Maildir::messages`] reads the files in a stable order.
//!   [`maildir::folders`] lists every folder of a Maildir++ tree.
//! - [`Mbox::open`] streams a file; [`Mbox::len_bytes`] and [`Mbox::bytes_read`] drive
//!   a byte-based progress bar, because counting messages would mean reading a
//!   multi-gigabyte file twice.

use std::fmt;
use std::io;
use std::path::PathBuf;

pub mod maildir;
pub mod mbox;

pub use maildir::Maildir;
pub use mbox::Mbox;

/// The largest single message a reader hands out unless told otherwise
/// (`with_max_message_size`). Every input is hostile: a broken export (an mbox whose
/// separators were mangled, say) must not make the import read gigabytes into memory.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 256 * 1024 * 1024;

/// One message read from an export, with what the export says about it.
#[derive(Clone, PartialEq, Eq)]
pub struct ExportedMessage {
    /// The message bytes exactly as in the export. For mbox, the `From ` separator line
    /// and the blank line before the next one are not part of the message, and mboxrd
    /// `>From ` quoting is undone; nothing else is touched (Status headers stay).
    pub raw: Vec<u8>,
    /// `\Seen`.
    pub seen: bool,
    /// `\Answered`.
    pub answered: bool,
    /// `\Flagged`.
    pub flagged: bool,
    /// `\Deleted`.
    pub deleted: bool,
    /// `\Draft`.
    pub draft: bool,
    /// IMAP keywords (e.g. `$Forwarded`, `$Junk`, `project-x`), without duplicates.
    pub keywords: Vec<String>,
    /// The message's arrival time (IMAP INTERNALDATE) in unix seconds; `None` if the
    /// export carries no date for it.
    pub internal_date: Option<i64>,
    /// Where the message came from, for error messages and reports: the message file's
    /// path for a maildir, `mbox:PATH#N` (N counting from 1) for an mbox.
    pub source: String,
}

// Written by hand so that logging a message with `{:?}` never prints its body.
impl fmt::Debug for ExportedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExportedMessage")
            .field("raw", &format_args!("<{} bytes>", self.raw.len()))
            .field("seen", &self.seen)
            .field("answered", &self.answered)
            .field("flagged", &self.flagged)
            .field("deleted", &self.deleted)
            .field("draft", &self.draft)
            .field("keywords", &self.keywords)
            .field("internal_date", &self.internal_date)
            .field("source", &self.source)
            .finish()
    }
}

impl ExportedMessage {
    pub(crate) fn new(raw: Vec<u8>, source: String) -> Self {
        ExportedMessage {
            raw,
            seen: false,
            answered: false,
            flagged: false,
            deleted: false,
            draft: false,
            keywords: Vec::new(),
            internal_date: None,
            source,
        }
    }

    pub(crate) fn add_keyword(&mut self, keyword: &str) {
        if !keyword.is_empty() && !self.keywords.iter().any(|k| k == keyword) {
            self.keywords.push(keyword.to_owned());
        }
    }
}

/// Why an export could not be read. Each message names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(
        "cannot read {}: {source}; check that the path exists and that the user running \
         tern may read it (if a mail server is still using the export, stop it or import \
         from a copy)",
        path.display()
    )]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(
        "{} is not a maildir: it has neither a cur/ nor a new/ folder; point the import at \
         the folder that contains cur/ and new/ (for a Maildir++ tree, at its root), or use \
         `tern import mbox` for a single-file export",
        path.display()
    )]
    NotMaildir { path: PathBuf },

    #[error(
        "{} is not an mbox file: {reason}; export the folder as mbox (a file whose first \
         line starts with \"From \"), or use `tern import maildir` for a maildir",
        path.display()
    )]
    NotMbox { path: PathBuf, reason: String },

    #[error("{} cannot be imported: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },

    #[error(
        "{location} is {size} bytes, more than the {limit}-byte limit for one message; \
         raise the message size limit for the import, or remove this message from the \
         export and import it again"
    )]
    TooLarge { location: String, size: u64, limit: u64 },
}

impl ExportError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        ExportError::Io {
            path: path.into(),
            source,
        }
    }
}
