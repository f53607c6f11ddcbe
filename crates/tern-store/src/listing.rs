//! A page of a mailbox's message list, as a mail client's list view shows it: sorted,
//! paged, optionally grouped into conversations, with what each row displays (sender,
//! subject, date, preview, markers). Webmail asks for one page at a time, so a folder of
//! 100,000 messages costs one indexed range read, not a load of every message.

use crate::metadata::AddressItem;
use crate::{MessageSummary, Uid};

/// The order of a message list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListSort {
    /// When the message arrived here (INTERNALDATE): what "Date" means in a mail list.
    #[default]
    Arrival,
    /// The first From address's display name, or its address.
    From,
    /// The base subject (without Re:/Fwd:, RFC 5256 §2.1).
    Subject,
    Size,
}

/// Which page of a message list to read.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub sort: ListSort,
    pub descending: bool,
    pub offset: usize,
    pub limit: usize,
    /// Only these messages (search results); `None` is the whole mailbox.
    pub only: Option<Vec<Uid>>,
    /// Only the messages of one conversation: this base subject (case-insensitive).
    pub same_subject: Option<String>,
    /// Group messages with the same base subject into one row (a conversation), shown
    /// by its newest message and ordered by it.
    pub conversations: bool,
}

/// One row of a message list.
#[derive(Debug, Clone)]
pub struct ListItem {
    pub summary: MessageSummary,
    pub from: Vec<AddressItem>,
    pub to: Vec<AddressItem>,
    /// The decoded Subject.
    pub subject: Option<String>,
    pub base_subject: String,
    /// The Date header, unix seconds.
    pub sent_date: Option<i64>,
    pub has_attachments: bool,
    /// The start of the text.
    pub preview: String,
    /// Messages in the row's conversation (1 outside conversation view).
    pub conversation_size: u32,
    /// Unread messages in the row's conversation.
    pub conversation_unread: u32,
}

/// A page of a message list and the length of the whole list.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    /// Rows (or conversations) in the whole list.
    pub total: usize,
    pub items: Vec<ListItem>,
}
