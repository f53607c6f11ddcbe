//! Password logins for every protocol (IMAP LOGIN/AUTHENTICATE, POP3 USER/PASS and
//! AUTH, SMTP AUTH), with the defences a public mail server needs.
//!
//! - Each failure is answered only after a delay, so a guesser gets few tries a minute
//!   per connection, and an unknown user costs the same Argon2 work as a wrong
//!   password, so timing does not tell which addresses exist.
//! - Too many failures from one IP address, or against one account, within the window
//!   refuse further attempts from that address / on that account until the window has
//!   passed, without checking the password at all.
//! - Failures are logged with the service, the peer and the user name; never the
//!   password.
//! - Where a password may travel without TLS is one policy for all protocols
//!   ([`PlaintextPolicy`]); protocols ask [`Authenticator::plaintext_allowed`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tern_store::{Account, Store, StoreError};
use tracing::{info, warn};

/// Where a password may be sent before TLS is active (`[auth] allow_plaintext`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaintextPolicy {
    Never,
    /// Only from the loopback interface (a local webmail, tests, SSH tunnels).
    Loopback,
    Always,
}

/// How hard the login defences bite. The defaults suit a public server.
#[derive(Debug, Clone, Copy)]
pub struct AuthLimits {
    /// How long a failed attempt waits before its answer.
    pub failure_delay: Duration,
    /// Failures from one IP address within `window` before that address is refused.
    pub max_failures_per_ip: u32,
    /// Failures against one account within `window` before the account refuses logins.
    pub max_failures_per_account: u32,
    pub window: Duration,
}

impl Default for AuthLimits {
    fn default() -> Self {
        AuthLimits {
            failure_delay: Duration::from_secs(1),
            // Generous enough for an office behind one NAT address where a few people
            // mistype; far too few for guessing.
            max_failures_per_ip: 20,
            max_failures_per_account: 30,
            window: Duration::from_secs(15 * 60),
        }
    }
}

/// Why a login did not succeed. The `Display` text is safe to send to the client.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Wrong user name or password, or a disabled account (not told apart, RFC 9051
    /// §6.2.3 lets the server say as little as it likes).
    #[error("invalid user name or password")]
    Invalid,
    #[error("too many failed logins; try again in {} minutes", .retry_after.as_secs().div_ceil(60).max(1))]
    Throttled { retry_after: Duration },
    #[error("the mail store is unavailable; try again shortly")]
    Unavailable(#[source] StoreError),
}

/// Checks passwords against the store and keeps the failure counters.
pub struct Authenticator {
    store: Arc<dyn Store>,
    plaintext: PlaintextPolicy,
    limits: AuthLimits,
    failures: Mutex<Failures>,
}

#[derive(Default)]
struct Failures {
    by_ip: HashMap<IpAddr, Window>,
    by_account: HashMap<String, Window>,
}

#[derive(Clone, Copy)]
struct Window {
    started: Instant,
    count: u32,
}

/// Bound on remembered addresses/accounts; older windows are dropped beyond it.
const MAX_TRACKED: usize = 100_000;

impl Authenticator {
    pub fn new(store: Arc<dyn Store>, plaintext: PlaintextPolicy, limits: AuthLimits) -> Authenticator {
        Authenticator {
            store,
            plaintext,
            limits,
            failures: Mutex::new(Failures::default()),
        }
    }

    /// The store logins are checked against.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Whether a client at `peer` may send a password on this connection.
    pub fn plaintext_allowed(&self, peer: IpAddr, tls_active: bool) -> bool {
        tls_active
            || match self.plaintext {
                PlaintextPolicy::Always => true,
                PlaintextPolicy::Loopback => peer.is_loopback() || is_mapped_loopback(peer),
                PlaintextPolicy::Never => false,
            }
    }

    /// Checks `user`'s password. `service` names the protocol in logs ("imap").
    pub async fn login(&self, service: &str, peer: IpAddr, user: &str, password: &str) -> Result<Account, LoginError> {
        let key = user.trim().to_ascii_lowercase();
        if let Some(retry_after) = self.throttled(peer, &key) {
            warn!(service, %peer, user = %key, "login refused: too many recent failures");
            tokio::time::sleep(self.limits.failure_delay).await;
            return Err(LoginError::Throttled { retry_after });
        }
        let account = match self.store.account(&key).await {
            Ok(account) => Some(account),
            Err(StoreError::NoSuchAccount(_) | StoreError::NoSuchDomain(_) | StoreError::InvalidAddress(_)) => None,
            Err(e) => return Err(LoginError::Unavailable(e)),
        };
        let hash = account.as_ref().and_then(|a| a.password_hash.clone());
        let password = password.to_owned();
        // Argon2 takes tens of milliseconds of CPU: keep it off the async workers. An
        // unknown user is checked against a dummy hash so it takes as long.
        let ok = tokio::task::spawn_blocking(move || match hash {
            Some(hash) => tern_store::password::verify(&password, &hash),
            None => {
                let _ = tern_store::password::verify(&password, dummy_hash());
                false
            }
        })
        .await
        .unwrap_or(false);
        match account {
            Some(account) if ok && account.enabled => {
                self.lock().by_account.remove(&key);
                info!(service, %peer, user = %key, "login");
                Ok(account)
            }
            _ => {
                self.record_failure(peer, &key);
                info!(service, %peer, user = %key, "login failed");
                tokio::time::sleep(self.limits.failure_delay).await;
                Err(LoginError::Invalid)
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Failures> {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn throttled(&self, peer: IpAddr, account: &str) -> Option<Duration> {
        let now = Instant::now();
        let window = self.limits.window;
        let failures = self.lock();
        let over = |w: Option<&Window>, max: u32| {
            w.filter(|w| now.duration_since(w.started) < window && w.count >= max)
                .map(|w| window.saturating_sub(now.duration_since(w.started)))
        };
        over(failures.by_ip.get(&peer), self.limits.max_failures_per_ip)
            .or_else(|| over(failures.by_account.get(account), self.limits.max_failures_per_account))
    }

    fn record_failure(&self, peer: IpAddr, account: &str) {
        let now = Instant::now();
        let window = self.limits.window;
        let mut failures = self.lock();
        let bump = |w: &mut Window| {
            if now.duration_since(w.started) >= window {
                *w = Window { started: now, count: 0 };
            }
            w.count += 1;
        };
        let fresh = Window { started: now, count: 0 };
        bump(failures.by_ip.entry(peer).or_insert(fresh));
        bump(failures.by_account.entry(account.to_owned()).or_insert(fresh));
        if failures.by_ip.len() > MAX_TRACKED || failures.by_account.len() > MAX_TRACKED {
            failures.by_ip.retain(|_, w| now.duration_since(w.started) < window);
            failures
                .by_account
                .retain(|_, w| now.duration_since(w.started) < window);
        }
    }
}

fn is_mapped_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        IpAddr::V4(_) => false,
    }
}

/// A real Argon2id hash of a random password, made once, for unknown users.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        tern_store::password::hash(&tern_store::password::generate()).unwrap_or_else(|_| String::from("$argon2id$"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_store::{EmbeddedStore, NewAccount};

    async fn authenticator(limits: AuthLimits) -> (tempfile::TempDir, Authenticator) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        store.create_domain("example.test").await.expect("domain");
        store
            .create_account(NewAccount {
                address: "alice@example.test".into(),
                password_hash: Some(tern_store::password::hash("right").expect("hash")),
                ..Default::default()
            })
            .await
            .expect("account");
        (
            dir,
            Authenticator::new(Arc::new(store), PlaintextPolicy::Loopback, limits),
        )
    }

    fn fast(max_ip: u32, max_account: u32) -> AuthLimits {
        AuthLimits {
            failure_delay: Duration::from_millis(1),
            max_failures_per_ip: max_ip,
            max_failures_per_account: max_account,
            window: Duration::from_secs(60),
        }
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[tokio::test]
    async fn right_password_logs_in_and_wrong_or_unknown_do_not() {
        let (_dir, auth) = authenticator(fast(100, 100)).await;
        let account = auth
            .login("imap", A, "Alice@Example.test", "right")
            .await
            .expect("login");
        assert_eq!(account.address, "alice@example.test");
        assert!(matches!(
            auth.login("imap", A, "alice@example.test", "wrong").await,
            Err(LoginError::Invalid)
        ));
        assert!(matches!(
            auth.login("imap", A, "bob@example.test", "right").await,
            Err(LoginError::Invalid)
        ));
        assert!(matches!(auth.login("imap", A, "", "").await, Err(LoginError::Invalid)));
    }

    #[tokio::test]
    async fn an_address_with_too_many_failures_is_refused_even_with_the_right_password() {
        let (_dir, auth) = authenticator(fast(3, 100)).await;
        for _ in 0..3 {
            assert!(auth.login("imap", A, "alice@example.test", "guess").await.is_err());
        }
        let refused = auth.login("imap", A, "alice@example.test", "right").await;
        assert!(matches!(refused, Err(LoginError::Throttled { .. })), "{refused:?}");
        // Another address is not affected.
        auth.login("imap", B, "alice@example.test", "right")
            .await
            .expect("other ip");
    }

    #[tokio::test]
    async fn an_account_under_attack_from_many_addresses_is_refused() {
        let (_dir, auth) = authenticator(fast(100, 4)).await;
        for i in 0..4u8 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, i));
            assert!(auth.login("pop3", ip, "alice@example.test", "guess").await.is_err());
        }
        let refused = auth.login("imap", B, "alice@example.test", "right").await;
        assert!(matches!(refused, Err(LoginError::Throttled { .. })), "{refused:?}");
        assert!(refused.unwrap_err().to_string().contains("try again in"));
    }

    #[test]
    fn plaintext_policy() {
        let loopback = IpAddr::from([127, 0, 0, 1]);
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().expect("ip");
        let check = |policy, ip, tls| {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = EmbeddedStore::open(dir.path()).expect("open");
            Authenticator::new(Arc::new(store), policy, AuthLimits::default()).plaintext_allowed(ip, tls)
        };
        assert!(check(PlaintextPolicy::Loopback, loopback, false));
        assert!(check(PlaintextPolicy::Loopback, mapped, false));
        assert!(!check(PlaintextPolicy::Loopback, A, false));
        assert!(check(PlaintextPolicy::Loopback, A, true));
        assert!(!check(PlaintextPolicy::Never, loopback, false));
        assert!(check(PlaintextPolicy::Always, A, false));
    }
}
