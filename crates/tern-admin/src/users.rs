//! Accounts: creating them (one, or many from a CSV file), passwords, enabling.

use std::io::Read;

use serde::Serialize;
use tern_store::{Account, NewAccount, Store, password};

use crate::{AdminError, Result, domain_of};

/// An account to create.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub address: String,
    pub display_name: Option<String>,
    /// `None`: one is generated and returned once in [`Created::password`].
    pub password: Option<String>,
    /// Bytes; `None` is unlimited.
    pub quota: Option<u64>,
}

/// An account just made.
#[derive(Debug, Clone, Serialize)]
pub struct Created {
    pub account: Account,
    /// The generated password, to be shown once; `None` when one was given.
    pub password: Option<String>,
    /// The role addresses (postmaster@, abuse@) that now deliver to it.
    pub role_aliases: Vec<String>,
}

/// Hashes the given password, or makes one up and returns it to be shown once.
fn password_hash(given: Option<&str>) -> Result<(String, Option<String>)> {
    let (password, shown) = match given {
        Some(p) if !p.is_empty() => (p.to_string(), None),
        Some(_) => {
            return Err(AdminError::Invalid(
                "the password is empty; leave it out to have one generated".into(),
            ));
        }
        None => {
            let p = password::generate();
            (p.clone(), Some(p))
        }
    };
    let hash = password::hash(&password)?;
    Ok((hash, shown))
}

/// Creates an account. RFC 5321 §4.5.1 requires postmaster@ at every domain that
/// receives mail, and RFC 2142 expects abuse@: the domain's first user gets them until
/// the administrator points them elsewhere.
pub async fn add(store: &dyn Store, user: NewUser) -> Result<Created> {
    let (hash, shown) = password_hash(user.password.as_deref())?;
    let account = store
        .create_account(NewAccount {
            address: user.address.trim().to_string(),
            display_name: user.display_name.filter(|n| !n.trim().is_empty()),
            password_hash: Some(hash),
            quota: user.quota,
        })
        .await?;
    let domain = domain_of(&account.address);
    let mut role_aliases = Vec::new();
    for role in ["postmaster", "abuse"] {
        let address = format!("{role}@{domain}");
        // Already reaching someone: an account, an alias or a catch-all.
        if store.resolve_recipient(&address).await?.is_some() {
            continue;
        }
        store.create_alias(&address, &account.address).await?;
        role_aliases.push(address);
    }
    Ok(Created {
        account,
        password: shown,
        role_aliases,
    })
}

/// Sets a new password (the given one, or a generated one, returned); every webmail
/// session of the account should end after this.
pub async fn reset_password(store: &dyn Store, address: &str, given: Option<&str>) -> Result<Option<String>> {
    let (hash, shown) = password_hash(given)?;
    store.set_password_hash(address, &hash).await?;
    Ok(shown)
}

/// Deletes an account and all its mail. An administrator loses the role with it; the
/// last administrator cannot be deleted (nobody could use the console after).
pub async fn remove(store: &dyn Store, address: &str) -> Result<Account> {
    let account = store.account(address).await?;
    if crate::admins::is_admin(store, &account.address).await? {
        crate::admins::revoke(store, &account.address)
            .await
            .map_err(|e| match e {
                AdminError::Invalid(_) => AdminError::Invalid(format!(
                    "{} is the last administrator; make someone else one before deleting it",
                    account.address
                )),
                other => other,
            })?;
    }
    store.delete_account(&account.address).await?;
    Ok(account)
}

/// Parses `500MB`, `2G`, `1.5GiB`, `1048576` or `unlimited` (`None`). Units are binary
/// (1 MB = 1024 KB), as mail clients display quotas.
pub fn parse_quota(s: &str) -> std::result::Result<Option<u64>, String> {
    let t = s.trim().to_ascii_lowercase();
    if matches!(t.as_str(), "unlimited" | "none" | "0" | "") {
        return Ok(None);
    }
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size; write e.g. 500MB, 2GB or unlimited"))?;
    let mult: u64 = match unit.trim().trim_end_matches("ib").trim_end_matches('b') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return Err(format!("{s:?} has an unknown unit; use KB, MB, GB or TB")),
    };
    Ok(Some((n * mult as f64) as u64))
}

/// What a CSV import did, line by line.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Import {
    /// The accounts made, with the generated passwords to hand out.
    pub created: Vec<Created>,
    /// Lines that made nothing: (line number, why).
    pub skipped: Vec<(usize, String)>,
}

/// The largest CSV file of accounts the console and the API take: tens of thousands of
/// lines, far more than one upload should carry, and small enough to hold in memory.
pub const MAX_CSV_BYTES: usize = 8 * 1024 * 1024;

/// Creates one account per line of a CSV file whose first line names the columns:
/// `address` (or `email`, `EmailAddress`), and optionally `name` (`DisplayName`),
/// `password` and `quota`. A line that cannot be made (an address in use, a domain not
/// hosted) is reported and the others go on, so an import can be run again after
/// fixing the file: the lines already made are skipped as "in use".
pub async fn import_csv(store: &dyn Store, input: impl Read) -> Result<Import> {
    let (mut reader, headers) = crate::open_csv(input)?;
    let col = |names: &[&str]| {
        headers
            .iter()
            .position(|h| names.iter().any(|n| h.eq_ignore_ascii_case(n)))
    };
    let Some(address_col) = col(&["address", "email", "emailaddress"]) else {
        return Err(AdminError::Invalid(
            "the CSV file's first line must name its columns: address, and optionally name, password, quota".into(),
        ));
    };
    let (name_col, password_col, quota_col) = (
        col(&["name", "displayname", "display_name"]),
        col(&["password"]),
        col(&["quota"]),
    );
    let mut rows = Vec::new();
    let mut import = Import::default();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                import.skipped.push((line, format!("unreadable: {e}")));
                continue;
            }
        };
        let field = |c: Option<usize>| c.and_then(|c| record.get(c)).filter(|v| !v.is_empty());
        let Some(address) = field(Some(address_col)) else {
            import.skipped.push((line, "no address".into()));
            continue;
        };
        let quota = match field(quota_col).map(parse_quota).transpose() {
            Ok(q) => q.flatten(),
            Err(e) => {
                import.skipped.push((line, format!("{address}: quota {e}")));
                continue;
            }
        };
        rows.push((
            line,
            NewUser {
                address: address.to_string(),
                display_name: field(name_col).map(str::to_string),
                password: field(password_col).map(str::to_string),
                quota,
            },
        ));
    }
    for (line, user) in rows {
        let address = user.address.clone();
        match add(store, user).await {
            Ok(created) => import.created.push(created),
            Err(e @ (AdminError::Invalid(_) | AdminError::NotFound(_))) => {
                import.skipped.push((line, format!("{address}: {e}")))
            }
            Err(e) => return Err(e),
        }
    }
    import.skipped.sort_by_key(|(line, _)| *line);
    Ok(import)
}
