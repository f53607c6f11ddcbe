//! Rate caps: a global one shared by every pass and one per mailbox, so pre-staging
//! never saturates the old provider's link or trips its abuse limits.
//!
//! The limiter keeps "the time the link is booked until": each transfer books
//! `bytes / rate` seconds after the previous booking and waits when the booking runs
//! more than a second ahead of now. Bursts of up to one second's worth go through at
//! once; over longer spans the rate holds exactly.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Default)]
pub struct RateLimiter {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Bytes per second; `None` for no cap.
    rate: Option<u64>,
    booked_until: Option<Instant>,
}

/// How far ahead of now bookings may run before a transfer waits.
const BURST: Duration = Duration::from_secs(1);

impl RateLimiter {
    pub fn new(rate: Option<u64>) -> RateLimiter {
        RateLimiter {
            inner: Mutex::new(Inner {
                rate,
                booked_until: None,
            }),
        }
    }

    pub fn set_rate(&self, rate: Option<u64>) {
        if let Ok(mut i) = self.inner.lock() {
            i.rate = rate.filter(|&r| r > 0);
        }
    }

    pub fn rate(&self) -> Option<u64> {
        self.inner.lock().ok().and_then(|i| i.rate)
    }

    /// Books `bytes` and waits as long as the cap requires.
    pub async fn consume(&self, bytes: u64) {
        let wait = {
            let Ok(mut i) = self.inner.lock() else { return };
            let Some(rate) = i.rate else { return };
            let now = Instant::now();
            let start = i.booked_until.filter(|&b| b > now).unwrap_or(now);
            let until = start + Duration::from_secs_f64(bytes as f64 / rate as f64);
            i.booked_until = Some(until);
            until.saturating_duration_since(now + BURST)
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Parses a rate such as `20MB/s`, `512KB/s`, `1.5MiB/s` or a bare number of bytes per
/// second; `0`, `none` and `unlimited` mean no cap.
pub fn parse_rate(text: &str) -> Result<Option<u64>, String> {
    let t = text.trim();
    if ["0", "none", "unlimited", "off"]
        .iter()
        .any(|w| t.eq_ignore_ascii_case(w))
    {
        return Ok(None);
    }
    let bad = || format!("{text:?} is not a rate; write it like 20MB/s, 500KB/s or 1GB/s");
    let t = t.strip_suffix("/s").unwrap_or(t).trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    let rate = (number * factor) as u64;
    if rate == 0 {
        return Err(bad());
    }
    Ok(Some(rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("20MB/s"), Ok(Some(20_000_000)));
        assert_eq!(parse_rate("512 KiB/s"), Ok(Some(512 * 1024)));
        assert_eq!(parse_rate("1.5GB/s"), Ok(Some(1_500_000_000)));
        assert_eq!(parse_rate("none"), Ok(None));
        assert!(parse_rate("fast").unwrap_err().contains("20MB/s"));
        assert!(parse_rate("3 parsecs/s").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn the_cap_holds_beyond_the_first_second() {
        let limiter = RateLimiter::new(Some(1_000_000));
        let start = tokio::time::Instant::now();
        for _ in 0..10 {
            limiter.consume(500_000).await;
        }
        // 5 MB at 1 MB/s: about 5 s, less the one-second burst.
        let took = start.elapsed();
        assert!(took >= Duration::from_secs(3), "{took:?}");
        assert!(took <= Duration::from_secs(5), "{took:?}");
    }
}
