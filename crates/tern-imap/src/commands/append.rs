//! APPEND (RFC 9051 §6.3.12) with APPENDUID (RFC 4315 §3), APPENDLIMIT (RFC 7889) and
//! UTF8=ACCEPT's literal8 form (RFC 6855 §4).

use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_codec::imap_types::flag::Flag;
use imap_codec::imap_types::mailbox::Mailbox;
use tern_store::{NewMessage, StoreError};

use super::flags_from;
use crate::session::{Reply, Result, Session};

pub async fn append(
    s: &mut Session,
    mailbox: Mailbox<'_>,
    flags: Vec<Flag<'_>>,
    date: Option<DateTime>,
    message: LiteralOrLiteral8<'_>,
) -> Result {
    let name = s.mailbox_name(&mailbox)?;
    let account = s.account_id()?;
    let flags = flags_from(&flags)?;
    let raw = match message {
        LiteralOrLiteral8::Literal(l) => l.data().to_vec(),
        LiteralOrLiteral8::Literal8(l) => l.data.into_owned(),
    };
    if raw.is_empty() {
        return Err(Reply::no("An empty message cannot be stored").code("CANNOT"));
    }
    if raw.len() as u64 > s.server.config.max_message_size {
        return Err(Reply::no("Message is over the size limit").code("TOOBIG"));
    }
    let target = match s.store.mailbox(account, &name).await {
        Ok(m) => m,
        // RFC 9051 §6.3.12: TRYCREATE when the mailbox does not exist.
        Err(StoreError::NoSuchMailbox(_)) => {
            return Err(Reply::no(format!("No mailbox named {name}")).code("TRYCREATE"));
        }
        Err(e) => return Err(e.into()),
    };
    let message = NewMessage {
        raw,
        flags,
        internal_date: date.map(|d| d.as_ref().timestamp()),
        pop3_uidl: None,
        migrated_from: None,
    };
    let appended = s.store.append(target.id, vec![message]).await?;
    let Some(a) = appended.first() else {
        return Err(Reply::no("The message was not stored").code("SERVERBUG"));
    };
    // The new message in the selected mailbox is announced with EXISTS now.
    s.sync(true, false).await?;
    Ok(Reply::ok("APPEND completed").code(format!("APPENDUID {} {}", a.uidvalidity, a.uid)))
}
