//! Settings changed by read-modify-write: the API tokens, the administrators, a
//! domain's go-live state. Two writers that both read, change and write back would
//! each undo the other's change (a revoked token brought back by a request noting
//! when it was last used, a declared cutover overwritten by the MX watch), so the write
//! only lands if the setting still holds what was read, and is otherwise redone on the
//! newer value.

use crate::{Result, Store, StoreError};

/// Attempts before giving up: each lost race means another writer got through, so
/// running out takes a writer storm, not bad luck.
const ATTEMPTS: usize = 64;

/// Reads `key`, lets `change` make the new value from the current one (`None`: absent;
/// a new `None` removes it), and stores it unless the setting changed meanwhile, in
/// which case `change` runs again on the newer value. `change` must have no other
/// effects. Returns what `change` returned with the value that was stored.
pub async fn update<R, E>(
    store: &dyn Store,
    key: &str,
    mut change: impl FnMut(Option<&str>) -> Result<(Option<String>, R), E>,
) -> Result<R, E>
where
    E: From<StoreError>,
{
    for _ in 0..ATTEMPTS {
        let current = store.setting(key).await?;
        let (new, result) = change(current.as_deref())?;
        if new == current || store.replace_setting(key, current.as_deref(), new.as_deref()).await? {
            return Ok(result);
        }
    }
    Err(StoreError::WriteFailed(format!(
        "the setting {key} kept changing under {ATTEMPTS} attempts to update it; try again"
    ))
    .into())
}
