//! Which accounts are administrators: they log in to the admin console with their
//! ordinary password (so the same login limits guard it). Kept as a setting, so every
//! node of an installation sees the same list.

use tern_store::Store;

use crate::{AdminError, Result, load_json, update_json};

/// The setting holding the administrators' addresses (a JSON array).
pub const SETTING: &str = "admin/accounts";
const WHAT: &str = "the stored administrators";

/// The administrators' addresses, sorted.
pub async fn list(store: &dyn Store) -> Result<Vec<String>> {
    load_json(store, SETTING, WHAT).await
}

/// Whether this address may use the console.
pub async fn is_admin(store: &dyn Store, address: &str) -> Result<bool> {
    Ok(list(store).await?.iter().any(|a| a.eq_ignore_ascii_case(address)))
}

/// Makes an existing account an administrator.
pub async fn grant(store: &dyn Store, address: &str) -> Result<String> {
    let account = store.account(address).await?;
    update_json(store, SETTING, WHAT, |admins: &mut Vec<String>| {
        if !admins.iter().any(|a| a.eq_ignore_ascii_case(&account.address)) {
            admins.push(account.address.clone());
            admins.sort();
        }
        Ok(())
    })
    .await?;
    Ok(account.address)
}

/// Takes the role away. The last administrator stays (the console would be locked).
pub async fn revoke(store: &dyn Store, address: &str) -> Result<()> {
    update_json(store, SETTING, WHAT, |admins: &mut Vec<String>| {
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
        Ok(())
    })
    .await
}
