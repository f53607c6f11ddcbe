//! Which accounts are administrators: they log in to the admin console with their
//! ordinary password (so the same login limits guard it). Kept as a setting, so every
//! node of an installation sees the same list.

use tern_store::Store;

use crate::{AdminError, Result};

/// The setting holding the administrators' addresses (a JSON array).
pub const SETTING: &str = "admin/accounts";

/// The administrators' addresses, sorted.
pub async fn list(store: &dyn Store) -> Result<Vec<String>> {
    Ok(match store.setting(SETTING).await? {
        Some(json) => serde_json::from_str(&json)
            .map_err(|e| AdminError::Internal(format!("the stored list of administrators is unreadable: {e}")))?,
        None => Vec::new(),
    })
}

/// Whether this address may use the console.
pub async fn is_admin(store: &dyn Store, address: &str) -> Result<bool> {
    Ok(list(store).await?.iter().any(|a| a.eq_ignore_ascii_case(address)))
}

/// Makes an existing account an administrator.
pub async fn grant(store: &dyn Store, address: &str) -> Result<String> {
    let account = store.account(address).await?;
    let mut admins = list(store).await?;
    if !admins.iter().any(|a| a.eq_ignore_ascii_case(&account.address)) {
        admins.push(account.address.clone());
        admins.sort();
        save(store, &admins).await?;
    }
    Ok(account.address)
}

/// Takes the role away. The last administrator stays (the console would be locked).
pub async fn revoke(store: &dyn Store, address: &str) -> Result<()> {
    let mut admins = list(store).await?;
    let before = admins.len();
    admins.retain(|a| !a.eq_ignore_ascii_case(address));
    if admins.len() == before {
        return Err(AdminError::NotFound(format!("{address} is not an administrator")));
    }
    if admins.is_empty() {
        return Err(AdminError::Invalid(format!(
            "{address} is the last administrator; make someone else one first"
        )));
    }
    save(store, &admins).await
}

async fn save(store: &dyn Store, admins: &[String]) -> Result<()> {
    let json = serde_json::to_string(admins).map_err(|e| AdminError::Internal(e.to_string()))?;
    Ok(store.set_setting(SETTING, Some(&json)).await?)
}
