//! Domains, accounts and aliases in SQL.

use rusqlite::{Connection, OptionalExtension, params};

use super::mailboxes;
use super::now;
use crate::{
    Account, AccountId, Alias, Domain, DomainId, EmailAddress, NewAccount, SpecialUse, StoreError, normalise_domain,
};

pub fn domain_id(conn: &Connection, name: &str) -> Result<DomainId, StoreError> {
    let d = normalise_domain(name).ok_or_else(|| StoreError::InvalidAddress(name.to_string()))?;
    conn.query_row("SELECT id FROM domains WHERE name = ?1", [&d], |r| r.get(0))
        .optional()?
        .map(DomainId)
        .ok_or(StoreError::NoSuchDomain(d))
}

const DOMAIN_SELECT: &str = "SELECT d.id, d.name,
        (SELECT a.local_part || '@' || d.name FROM accounts a WHERE a.id = d.catch_all),
        (SELECT count(*) FROM accounts a WHERE a.domain_id = d.id),
        (SELECT count(*) FROM aliases a WHERE a.domain_id = d.id),
        d.receiving
    FROM domains d";

fn domain_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Domain> {
    Ok(Domain {
        id: DomainId(r.get(0)?),
        name: r.get(1)?,
        catch_all: r.get(2)?,
        accounts: r.get::<_, i64>(3)? as u64,
        aliases: r.get::<_, i64>(4)? as u64,
        receiving: r.get(5)?,
    })
}

pub fn create_domain(conn: &Connection, name: &str) -> Result<Domain, StoreError> {
    let d = normalise_domain(name).ok_or_else(|| StoreError::InvalidAddress(name.to_string()))?;
    let n = conn.execute(
        "INSERT OR IGNORE INTO domains (name, created) VALUES (?1, ?2)",
        params![d, now() as i64],
    )?;
    if n == 0 {
        return Err(StoreError::DomainExists(d));
    }
    domain(conn, &d)
}

pub fn domain(conn: &Connection, name: &str) -> Result<Domain, StoreError> {
    let id = domain_id(conn, name)?;
    Ok(conn.query_row(&format!("{DOMAIN_SELECT} WHERE d.id = ?1"), [id.0], domain_row)?)
}

pub fn domains(conn: &Connection) -> Result<Vec<Domain>, StoreError> {
    let mut st = conn.prepare(&format!("{DOMAIN_SELECT} ORDER BY d.name"))?;
    let rows = st.query_map([], domain_row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

pub fn delete_domain(conn: &Connection, name: &str) -> Result<(), StoreError> {
    let d = domain(conn, name)?;
    if d.accounts + d.aliases > 0 {
        return Err(StoreError::DomainNotEmpty(d.name, d.accounts + d.aliases));
    }
    conn.execute("DELETE FROM domains WHERE id = ?1", [d.id.0])?;
    // Its signing keys go with it; a domain added again later gets new ones.
    conn.execute("DELETE FROM dkim_keys WHERE domain = ?1", [&d.name])?;
    Ok(())
}

pub fn receiving(conn: &Connection, domain: &str) -> Result<Option<bool>, StoreError> {
    let Some(d) = normalise_domain(domain) else {
        return Ok(None);
    };
    Ok(conn
        .query_row("SELECT receiving FROM domains WHERE name = ?1", [&d], |r| r.get(0))
        .optional()?)
}

pub fn set_receiving(conn: &Connection, domain: &str, receiving: bool) -> Result<(), StoreError> {
    let d = domain_id(conn, domain)?;
    conn.execute(
        "UPDATE domains SET receiving = ?1 WHERE id = ?2",
        params![receiving, d.0],
    )?;
    Ok(())
}

pub fn set_catch_all(conn: &Connection, domain: &str, target: Option<&str>) -> Result<(), StoreError> {
    let d = domain_id(conn, domain)?;
    let target = target.map(|t| account_id(conn, t)).transpose()?;
    conn.execute(
        "UPDATE domains SET catch_all = ?1 WHERE id = ?2",
        params![target.map(|a| a.0), d.0],
    )?;
    Ok(())
}

/// The account an exact address names (no alias, no tag), if any.
fn lookup_account(conn: &Connection, addr: &EmailAddress) -> Result<Option<AccountId>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT a.id FROM accounts a JOIN domains d ON d.id = a.domain_id WHERE d.name = ?1 AND a.local_part = ?2",
            [&addr.domain, &addr.local],
            |r| r.get(0),
        )
        .optional()?
        .map(AccountId))
}

fn lookup_alias(conn: &Connection, addr: &EmailAddress) -> Result<Option<AccountId>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT a.account_id FROM aliases a JOIN domains d ON d.id = a.domain_id WHERE d.name = ?1 AND a.local_part = ?2",
            [&addr.domain, &addr.local],
            |r| r.get(0),
        )
        .optional()?
        .map(AccountId))
}

pub fn account_id(conn: &Connection, address: &str) -> Result<AccountId, StoreError> {
    let addr = EmailAddress::parse(address)?;
    lookup_account(conn, &addr)?.ok_or_else(|| StoreError::NoSuchAccount(addr.to_string()))
}

fn ensure_address_free(conn: &Connection, addr: &EmailAddress) -> Result<(), StoreError> {
    if lookup_account(conn, addr)?.is_some() || lookup_alias(conn, addr)?.is_some() {
        return Err(StoreError::AddressInUse(addr.to_string()));
    }
    Ok(())
}

pub fn create_account(conn: &Connection, new: &NewAccount) -> Result<(Account, Vec<crate::Mailbox>), StoreError> {
    let addr = EmailAddress::parse(&new.address)?;
    let domain = domain_id(conn, &addr.domain)?;
    ensure_address_free(conn, &addr)?;
    conn.execute(
        "INSERT INTO accounts (domain_id, local_part, display_name, password_hash, quota, enabled, created)
         VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6)",
        params![
            domain.0,
            addr.local,
            new.display_name,
            new.password_hash,
            new.quota.map(|q| q as i64),
            now() as i64
        ],
    )?;
    let id = AccountId(conn.last_insert_rowid());
    let mut created = vec![mailboxes::insert(conn, id, crate::INBOX, None, true)?];
    for (name, use_) in SpecialUse::DEFAULT_FOLDERS {
        created.push(mailboxes::insert(conn, id, name, Some(use_), true)?);
    }
    Ok((account(conn, id)?, created))
}

const ACCOUNT_SELECT: &str = "SELECT a.id, a.local_part || '@' || d.name, a.display_name, a.quota, a.enabled,
        (SELECT COALESCE(SUM(m.size), 0) FROM mailboxes m WHERE m.account_id = a.id), a.created, a.password_hash
    FROM accounts a JOIN domains d ON d.id = a.domain_id";

fn account_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: AccountId(r.get(0)?),
        address: r.get(1)?,
        display_name: r.get(2)?,
        quota: r.get::<_, Option<i64>>(3)?.map(|q| q as u64),
        enabled: r.get(4)?,
        used: r.get::<_, i64>(5)? as u64,
        created: r.get(6)?,
        password_hash: r.get(7)?,
    })
}

pub fn account(conn: &Connection, id: AccountId) -> Result<Account, StoreError> {
    conn.query_row(&format!("{ACCOUNT_SELECT} WHERE a.id = ?1"), [id.0], account_row)
        .optional()?
        .ok_or_else(|| StoreError::NoSuchAccount(format!("#{}", id.0)))
}

pub fn accounts(conn: &Connection, domain: Option<&str>) -> Result<Vec<Account>, StoreError> {
    let rows = match domain {
        Some(d) => {
            let d = domain_id(conn, d)?;
            let mut st = conn.prepare(&format!(
                "{ACCOUNT_SELECT} WHERE a.domain_id = ?1 ORDER BY d.name, a.local_part"
            ))?;
            st.query_map([d.0], account_row)?.collect::<Result<_, _>>()?
        }
        None => {
            let mut st = conn.prepare(&format!("{ACCOUNT_SELECT} ORDER BY d.name, a.local_part"))?;
            st.query_map([], account_row)?.collect::<Result<_, _>>()?
        }
    };
    Ok(rows)
}

/// Updates one column of an account, named by address.
pub fn update_account(
    conn: &Connection,
    address: &str,
    column: &'static str,
    value: rusqlite::types::Value,
) -> Result<(), StoreError> {
    let id = account_id(conn, address)?;
    conn.execute(
        &format!("UPDATE accounts SET {column} = ?1 WHERE id = ?2"),
        params![value, id.0],
    )?;
    Ok(())
}

/// Deletes an account and everything it owns. Returns its mailboxes (for events) and
/// its blobs (for the index; the blob folder goes whole).
pub fn delete_account(
    conn: &Connection,
    address: &str,
) -> Result<(AccountId, Vec<crate::Mailbox>, Vec<super::messages::Removed>), StoreError> {
    let id = account_id(conn, address)?;
    let boxes = mailboxes::list(conn, id)?;
    let mut st = conn.prepare("SELECT id FROM blobs WHERE account_id = ?1")?;
    let blobs = st
        .query_map([id.0], |r| r.get(0))?
        .map(|b| b.map(|blob_id| super::messages::Removed { blob_id, file: None }))
        .collect::<Result<Vec<_>, _>>()?;
    conn.execute(
        "DELETE FROM blob_bodies WHERE blob_id IN (SELECT id FROM blobs WHERE account_id = ?1)",
        [id.0],
    )?;
    conn.execute("DELETE FROM blobs WHERE account_id = ?1", [id.0])?;
    for b in &boxes {
        conn.execute("DELETE FROM messages WHERE mailbox_id = ?1", [b.id.0])?;
        conn.execute("DELETE FROM expunged WHERE mailbox_id = ?1", [b.id.0])?;
    }
    conn.execute("DELETE FROM mailboxes WHERE account_id = ?1", [id.0])?;
    super::migration::delete_for_account(conn, id)?;
    conn.execute("DELETE FROM aliases WHERE account_id = ?1", [id.0])?;
    conn.execute("UPDATE domains SET catch_all = NULL WHERE catch_all = ?1", [id.0])?;
    conn.execute("DELETE FROM accounts WHERE id = ?1", [id.0])?;
    Ok((id, boxes, blobs))
}

pub fn create_alias(conn: &Connection, address: &str, target: &str) -> Result<Alias, StoreError> {
    let addr = EmailAddress::parse(address)?;
    let domain = domain_id(conn, &addr.domain)?;
    let target_id = account_id(conn, target)?;
    ensure_address_free(conn, &addr)?;
    conn.execute(
        "INSERT INTO aliases (domain_id, local_part, account_id) VALUES (?1, ?2, ?3)",
        params![domain.0, addr.local, target_id.0],
    )?;
    Ok(Alias {
        address: addr.to_string(),
        target: account(conn, target_id)?.address,
    })
}

pub fn aliases(conn: &Connection, domain: Option<&str>) -> Result<Vec<Alias>, StoreError> {
    let filter = domain.map(|d| domain_id(conn, d)).transpose()?;
    let mut st = conn.prepare(
        "SELECT al.local_part || '@' || d.name, a.local_part || '@' || ad.name
         FROM aliases al JOIN domains d ON d.id = al.domain_id
         JOIN accounts a ON a.id = al.account_id JOIN domains ad ON ad.id = a.domain_id
         WHERE ?1 IS NULL OR al.domain_id = ?1 ORDER BY d.name, al.local_part",
    )?;
    let rows = st
        .query_map([filter.map(|d| d.0)], |r| {
            Ok(Alias {
                address: r.get(0)?,
                target: r.get(1)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

pub fn delete_alias(conn: &Connection, address: &str) -> Result<(), StoreError> {
    let addr = EmailAddress::parse(address)?;
    let n = conn.execute(
        "DELETE FROM aliases WHERE local_part = ?2 AND domain_id = (SELECT id FROM domains WHERE name = ?1)",
        [&addr.domain, &addr.local],
    )?;
    if n == 0 {
        return Err(StoreError::NoSuchAlias(addr.to_string()));
    }
    Ok(())
}

pub fn resolve_recipient(conn: &Connection, address: &str) -> Result<Option<AccountId>, StoreError> {
    let Ok(addr) = EmailAddress::parse(address) else {
        return Ok(None);
    };
    let catch_all: Option<Option<i64>> = conn
        .query_row("SELECT catch_all FROM domains WHERE name = ?1", [&addr.domain], |r| {
            r.get(0)
        })
        .optional()?;
    let Some(catch_all) = catch_all else { return Ok(None) };
    let base = addr.without_tag();
    for candidate in std::iter::once(&addr).chain(base.as_ref()) {
        if let Some(id) = lookup_account(conn, candidate)? {
            return Ok(Some(id));
        }
        if let Some(id) = lookup_alias(conn, candidate)? {
            return Ok(Some(id));
        }
    }
    Ok(catch_all.map(AccountId))
}
