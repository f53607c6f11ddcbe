//! The migration schedule: off-hours windows in the administrator's time zone, rate
//! caps and how many mailboxes run at once (`tern migrate schedule`). Kept in the store
//! as the setting [`SETTING`], so `tern serve` picks up a change within seconds.
//!
//! Windows hold pre-stage passes only: once the MX record has moved, a delta pass
//! brings users their mail whatever the hour.

use chrono::{DateTime, Datelike, NaiveTime, TimeZone, Timelike, Utc, Weekday};
use serde::{Deserialize, Serialize};

/// The store setting holding the schedule as JSON.
pub const SETTING: &str = "migration.schedule";

/// Mailboxes migrated at once unless the administrator says otherwise.
pub const DEFAULT_PARALLEL: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Schedule {
    /// As written (`Mon-Fri 19:00-07:00`); empty: always open.
    pub windows: Vec<String>,
    /// IANA time zone name the windows are in.
    pub tz: String,
    /// Bytes per second over all passes.
    pub max_rate: Option<u64>,
    /// Bytes per second per mailbox.
    pub mailbox_max_rate: Option<u64>,
    pub mailboxes_in_parallel: usize,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            windows: Vec::new(),
            tz: "UTC".into(),
            max_rate: None,
            mailbox_max_rate: None,
            mailboxes_in_parallel: DEFAULT_PARALLEL,
        }
    }
}

/// One parsed window: on these days, from `start` until `end` (next day when `end` is
/// not after `start`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    days: [bool; 7],
    start: NaiveTime,
    end: NaiveTime,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn day_index(s: &str) -> Option<usize> {
    let s = s.to_ascii_lowercase();
    DAYS.iter().position(|d| s.starts_with(d))
}

impl Window {
    /// Parses `Mon-Fri 19:00-07:00`, `Sat,Sun`, `Daily 22:00-06:00`, `Sat 00:00-24:00`.
    pub fn parse(text: &str) -> Result<Window, String> {
        let bad = |why: &str| {
            format!(
                "window {text:?}: {why}; write it like \"Mon-Fri 19:00-07:00\", \"Sat-Sun\" or \"Daily 22:00-06:00\""
            )
        };
        let mut parts = text.split_whitespace();
        let days_part = parts.next().ok_or_else(|| bad("empty"))?;
        let times_part = parts.next();
        if parts.next().is_some() {
            return Err(bad("too many parts"));
        }
        let mut days = [false; 7];
        if ["daily", "every", "*", "all"]
            .iter()
            .any(|d| days_part.eq_ignore_ascii_case(d))
        {
            days = [true; 7];
        } else {
            for item in days_part.split(',') {
                match item.split_once('-') {
                    Some((a, b)) => {
                        let (a, b) = (
                            day_index(a).ok_or_else(|| bad("unknown day"))?,
                            day_index(b).ok_or_else(|| bad("unknown day"))?,
                        );
                        let mut d = a;
                        loop {
                            days[d] = true;
                            if d == b {
                                break;
                            }
                            d = (d + 1) % 7;
                        }
                    }
                    None => days[day_index(item).ok_or_else(|| bad("unknown day"))?] = true,
                }
            }
        }
        let (start, end) = match times_part {
            None => (NaiveTime::MIN, NaiveTime::MIN),
            Some(t) => {
                let (a, b) = t.split_once('-').ok_or_else(|| bad("times are FROM-TO"))?;
                (
                    parse_time(a).ok_or_else(|| bad("bad time"))?,
                    parse_time(b).ok_or_else(|| bad("bad time"))?,
                )
            }
        };
        Ok(Window { days, start, end })
    }

    /// Open at this local weekday and time of day.
    fn open_at(&self, weekday: Weekday, time: NaiveTime) -> bool {
        let today = weekday.num_days_from_monday() as usize;
        let yesterday = (today + 6) % 7;
        if self.end > self.start {
            self.days[today] && time >= self.start && time < self.end
        } else {
            // Runs past midnight (or all day when start == end).
            (self.days[today] && time >= self.start) || (self.days[yesterday] && time < self.end)
        }
    }
}

/// `HH:MM`, with `24:00` as the end of the day.
fn parse_time(s: &str) -> Option<NaiveTime> {
    if s == "24:00" {
        return Some(NaiveTime::MIN);
    }
    NaiveTime::parse_from_str(s, "%H:%M").ok()
}

impl Schedule {
    pub fn validate(&self) -> Result<(), String> {
        self.tz.parse::<chrono_tz::Tz>().map_err(|_| {
            format!(
                "{:?} is not a time zone; use an IANA name like Europe/Berlin or UTC",
                self.tz
            )
        })?;
        for w in &self.windows {
            Window::parse(w)?;
        }
        if self.mailboxes_in_parallel == 0 || self.mailboxes_in_parallel > 256 {
            return Err("--mailboxes-in-parallel must be between 1 and 256".into());
        }
        Ok(())
    }

    /// Whether pre-stage passes may run at `now`.
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        if self.windows.is_empty() {
            return true;
        }
        let Ok(tz) = self.tz.parse::<chrono_tz::Tz>() else {
            return true;
        };
        let local = tz.from_utc_datetime(&now.naive_utc());
        let time = NaiveTime::from_hms_opt(local.hour(), local.minute(), local.second()).unwrap_or(NaiveTime::MIN);
        self.windows
            .iter()
            .filter_map(|w| Window::parse(w).ok())
            .any(|w| w.open_at(local.weekday(), time))
    }

    /// The next time (to the minute) a window opens, within a week.
    pub fn next_open(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        (0..7 * 24 * 60)
            .map(|m| now + chrono::Duration::minutes(m))
            .find(|t| self.is_open(*t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn overnight_weekday_windows_in_a_time_zone() {
        let s = Schedule {
            windows: vec!["Mon-Fri 19:00-07:00".into(), "Sat-Sun".into()],
            tz: "Europe/Berlin".into(),
            ..Default::default()
        };
        s.validate().unwrap();
        // Wednesday 2026-11-25, Berlin is UTC+1.
        assert!(!s.is_open(at("2026-11-25T12:00:00Z")), "Wednesday 13:00 Berlin");
        assert!(s.is_open(at("2026-11-25T18:30:00Z")), "Wednesday 19:30 Berlin");
        assert!(
            s.is_open(at("2026-11-26T05:30:00Z")),
            "Thursday 06:30 Berlin, from Wednesday night"
        );
        assert!(!s.is_open(at("2026-11-26T06:30:00Z")), "Thursday 07:30 Berlin");
        assert!(s.is_open(at("2026-11-28T12:00:00Z")), "Saturday all day");
        // A window belongs to the day it starts: Sunday's all-day window ends at midnight
        // and Monday's opens at 19:00.
        assert!(!s.is_open(at("2026-11-30T05:00:00Z")), "Monday 06:00 Berlin");
        assert_eq!(
            s.next_open(at("2026-11-25T12:00:00Z")),
            Some(at("2026-11-25T18:00:00Z"))
        );
    }

    #[test]
    fn bad_windows_and_zones_are_named() {
        assert!(Window::parse("Someday 10:00-11:00").unwrap_err().contains("Mon-Fri"));
        assert!(Window::parse("Mon 10-11").is_err());
        let s = Schedule {
            tz: "Mars/Olympus".into(),
            ..Default::default()
        };
        assert!(s.validate().unwrap_err().contains("IANA"));
    }
}
