//! Managing mailboxes: CREATE (RFC 9051 §6.3.4, with CREATE-SPECIAL-USE, RFC 6154 §3),
//! DELETE (§6.3.5), RENAME (§6.3.6), SUBSCRIBE and UNSUBSCRIBE (§6.3.7, §6.3.8).

use imap_codec::imap_types::mailbox::Mailbox;

use crate::extensions::Extra;
use crate::session::{Reply, Result, Session, State};

pub async fn create(s: &mut Session, mailbox: Mailbox<'_>, extra: Extra) -> Result {
    let name = s.mailbox_name(&mailbox)?;
    // RFC 9051 §6.3.4: a trailing delimiter only says the client means to create
    // children; the name is without it.
    let name = name.trim_end_matches('/').to_string();
    if name.is_empty() {
        return Err(Reply::no("A mailbox needs a name").code("CANNOT"));
    }
    let special_use = extra.special_use().map_err(|e| Reply::no(e).code("USEATTR"))?;
    let account = s.account_id()?;
    s.store.create_mailbox(account, &name, special_use).await?;
    Ok(Reply::ok("CREATE completed"))
}

pub async fn delete(s: &mut Session, mailbox: Mailbox<'_>) -> Result {
    let name = s.mailbox_name(&mailbox)?;
    let account = s.account_id()?;
    let target = s.store.mailbox(account, &name).await?;
    s.store.delete_mailbox(account, &name).await?;
    // Deleting the selected mailbox leaves nothing selected.
    if let State::Selected(a, view) = &s.state
        && view.id() == target.id
    {
        s.state = State::Authenticated(a.clone());
    }
    Ok(Reply::ok("DELETE completed"))
}

pub async fn rename(s: &mut Session, from: Mailbox<'_>, to: Mailbox<'_>) -> Result {
    let from = s.mailbox_name(&from)?;
    let to = s.mailbox_name(&to)?;
    let to = to.trim_end_matches('/').to_string();
    let account = s.account_id()?;
    s.store.rename_mailbox(account, &from, &to).await?;
    Ok(Reply::ok("RENAME completed"))
}

pub async fn subscribe(s: &mut Session, mailbox: Mailbox<'_>, subscribed: bool) -> Result {
    let name = s.mailbox_name(&mailbox)?;
    let account = s.account_id()?;
    s.store.set_subscribed(account, &name, subscribed).await?;
    Ok(Reply::ok(if subscribed {
        "SUBSCRIBE completed"
    } else {
        "UNSUBSCRIBE completed"
    }))
}
