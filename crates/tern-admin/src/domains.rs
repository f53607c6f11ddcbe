//! Hosted domains and the DKIM keys their outgoing mail is signed with.

use tern_smtp::dkim;
use tern_store::{DkimAlgorithm, DkimKey, Domain, Store};

use crate::{AdminError, Result, now};

/// Adds a domain and gives it its signing keys, so mail from its first user is signed.
pub async fn add(store: &dyn Store, name: &str) -> Result<Domain> {
    let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() || !name.contains('.') || !name.chars().all(|c| c.is_ascii_alphanumeric() || ".-".contains(c)) {
        return Err(AdminError::Invalid(format!(
            "{name:?} is not a domain name; write it as example.org"
        )));
    }
    let domain = store.create_domain(&name).await?;
    add_dkim_keys(store, &domain.name).await?;
    Ok(store.domain(&domain.name).await?)
}

/// Gives a domain a new RSA-2048 and Ed25519 key (at creation, and on rotation): both,
/// because RFC 8463 verifiers are not yet everywhere and RSA alone is the past.
pub async fn add_dkim_keys(store: &dyn Store, domain: &str) -> Result<Vec<DkimKey>> {
    let taken: Vec<String> = store
        .dkim_keys(Some(domain))
        .await?
        .into_iter()
        .map(|k| k.selector)
        .collect();
    let created = now();
    // RSA key generation takes a moment of CPU: off the async workers.
    let (domain2, taken2) = (domain.to_string(), taken.clone());
    let rsa = tokio::task::spawn_blocking(move || dkim::generate(&domain2, DkimAlgorithm::RsaSha256, created, &taken2))
        .await
        .map_err(|e| AdminError::Internal(format!("DKIM key generation stopped: {e}")))?
        .map_err(|e| AdminError::Internal(e.to_string()))?;
    let ed = dkim::generate(domain, DkimAlgorithm::Ed25519Sha256, created, &taken)
        .map_err(|e| AdminError::Internal(e.to_string()))?;
    store.add_dkim_key(rsa.clone()).await?;
    store.add_dkim_key(ed.clone()).await?;
    Ok(vec![rsa, ed])
}

/// New keys sign from now on; the old ones are kept (retired) until their DNS records
/// can go, so mail signed with them still verifies while in flight.
pub async fn rotate_dkim(store: &dyn Store, domain: &str) -> Result<Vec<DkimKey>> {
    let domain = store.domain(domain).await?.name;
    let old: Vec<String> = store
        .dkim_keys(Some(&domain))
        .await?
        .into_iter()
        .filter(|k| k.active)
        .map(|k| k.selector)
        .collect();
    let new = add_dkim_keys(store, &domain).await?;
    for selector in &old {
        store.set_dkim_key_active(&domain, selector, false).await?;
    }
    Ok(new)
}

/// Deletes a retired key; a key still signing is refused.
pub async fn delete_dkim_key(store: &dyn Store, domain: &str, selector: &str) -> Result<()> {
    let domain = store.domain(domain).await?.name;
    let keys = store.dkim_keys(Some(&domain)).await?;
    match keys.iter().find(|k| k.selector == selector) {
        Some(k) if k.active => Err(AdminError::Invalid(format!(
            "key {selector} of {domain} is still signing mail; rotate the keys first (`tern domain dkim {domain} --rotate`)"
        ))),
        _ => Ok(store.delete_dkim_key(&domain, selector).await?),
    }
}
