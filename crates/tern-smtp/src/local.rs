//! Delivery into local mailboxes.
//!
//! One message to several local recipients is one store call: one transaction, one
//! durable commit, the bytes stored once. Only after it returns does the session
//! answer 250 (DESIGN.md: acknowledged means durable).

use tern_store::{AccountId, Appended, INBOX, MailboxId, NewMessage, SpecialUse, Store, StoreError};

/// Which folder a delivered message lands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Folder {
    Inbox,
    /// The account's Junk folder (special-use \Junk), or INBOX if it has none.
    Junk,
}

async fn target(store: &dyn Store, account: AccountId, folder: Folder) -> Result<MailboxId, StoreError> {
    if folder == Folder::Junk
        && let Some(junk) = store
            .mailboxes(account)
            .await?
            .into_iter()
            .find(|m| m.special_use == Some(SpecialUse::Junk))
    {
        return Ok(junk.id);
    }
    Ok(store.mailbox(account, INBOX).await?.id)
}

/// Delivers `raw` to each account once (two aliases of one account get one copy).
/// Returns the outcome per distinct account.
pub async fn deliver(
    store: &dyn Store,
    accounts: &[AccountId],
    raw: Vec<u8>,
    folder: Folder,
) -> Result<Vec<(AccountId, Result<Appended, StoreError>)>, StoreError> {
    let mut distinct: Vec<AccountId> = Vec::with_capacity(accounts.len());
    for a in accounts {
        if !distinct.contains(a) {
            distinct.push(*a);
        }
    }
    let mut mailboxes = Vec::with_capacity(distinct.len());
    for &a in &distinct {
        mailboxes.push(target(store, a, folder).await?);
    }
    let results = store.deliver(&mailboxes, NewMessage::new(raw)).await?;
    Ok(distinct.into_iter().zip(results).collect())
}
