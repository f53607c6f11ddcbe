//! Hourly limits: messages and recipients per authenticated sender (a stolen password
//! must not become a spam cannon) and messages per IP address on the MX.
//!
//! Counted per process in fixed one-hour windows. With several nodes each node counts
//! its own share; the login limits of tern-net work the same way.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(3600);
/// Bound on remembered keys; the oldest windows go beyond it.
const MAX_TRACKED: usize = 100_000;

#[derive(Default)]
pub struct Rates {
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl Rates {
    /// Counts `n` more against `key` if that stays within `limit` this hour. Returns
    /// whether it did; a refused attempt is not counted.
    pub fn take(&self, key: &str, n: u32, limit: u32) -> bool {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= MAX_TRACKED {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let entry = windows.entry(key.to_string()).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        if entry.1.saturating_add(n) > limit {
            return false;
        }
        entry.1 += n;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_limit_without_counting() {
        let r = Rates::default();
        assert!(r.take("a", 3, 5));
        assert!(!r.take("a", 3, 5));
        assert!(r.take("a", 2, 5));
        assert!(!r.take("a", 1, 5));
        assert!(r.take("b", 5, 5));
    }
}
