//! Timestamps: whole seconds since the Unix epoch, written as RFC 3339 UTC (`2026-11-24T06:33:36Z`).
//!
//! The clock never comes from here: callers pass `now` in, so the contract stays pure and testable.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result, excerpt};

/// A point in time, to the second, in UTC.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Timestamp(u64);

/// 9999-12-31T23:59:59Z, the last second the text form can hold.
const MAX_SECS: u64 = 253_402_300_799;

impl Timestamp {
    /// The given number of seconds after 1970-01-01T00:00:00Z, capped at year 9999.
    pub fn from_unix_secs(secs: u64) -> Timestamp {
        Timestamp(secs.min(MAX_SECS))
    }

    /// Seconds since the Unix epoch.
    pub fn unix_secs(self) -> u64 {
        self.0
    }

    /// This time plus `secs` seconds (saturating at year 9999).
    pub fn plus_secs(self, secs: u64) -> Timestamp {
        Timestamp::from_unix_secs(self.0.saturating_add(secs))
    }

    /// Parses exactly `YYYY-MM-DDTHH:MM:SSZ`.
    ///
    /// # Errors
    /// [`Error::InvalidField`] for any other form or an impossible date.
    pub fn parse(text: &str) -> Result<Timestamp> {
        let bad = |reason: &str| Error::InvalidField {
            field: format!("timestamp {:?}", excerpt(text, 40)),
            reason: reason.to_owned(),
        };
        let b = text.as_bytes();
        let shape_ok = b.len() == 20
            && b[4] == b'-'
            && b[7] == b'-'
            && b[10] == b'T'
            && b[13] == b':'
            && b[16] == b':'
            && b[19] == b'Z';
        if !shape_ok {
            return Err(bad("expected YYYY-MM-DDTHH:MM:SSZ"));
        }
        let num = |range: std::ops::Range<usize>| -> Result<u64> {
            let digits = &b[range];
            if !digits.iter().all(u8::is_ascii_digit) {
                return Err(bad("expected digits"));
            }
            Ok(digits
                .iter()
                .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0')))
        };
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if year < 1970 {
            return Err(bad("year before 1970"));
        }
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return Err(bad("no such date"));
        }
        if hour > 23 || minute > 59 || second > 59 {
            return Err(bad("no such time of day"));
        }
        let days = days_from_civil(year, month, day);
        Ok(Timestamp(
            days * 86_400 + hour * 3_600 + minute * 60 + second,
        ))
    }
}

fn is_leap(year: u64) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given date (proleptic Gregorian), for years ≥ 1970.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    // Shift the year to start in March so that the leap day is the last day of the year.
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date for a number of days since 1970-01-01.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (year, month, day) = civil_from_days(self.0 / 86_400);
        let secs = self.0 % 86_400;
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            secs / 3_600,
            secs / 60 % 60,
            secs % 60
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        crate::de::parse_str(deserializer, Timestamp::parse)
    }
}
