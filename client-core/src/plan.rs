//! The planner: from the updates a check found, the device's conditions and how the user uses
//! each package, decide what to fetch now and in which order. Pure: values in, a plan out.
//!
//! Rules, in order:
//! 1. an update that needs no download (its blobs are on the device, as after a rollback) always
//!    goes, first;
//! 2. offline: nothing else now;
//! 3. a package published "on first use" that the user never opened waits for its first open;
//! 4. not enough free space for the release plus what must be downloaded: wait for space;
//! 5. a package published "Wi-Fi only" waits for an unmetered Wi-Fi link;
//! 6. on a metered or cellular link only urgent packages (priority ≥ [`URGENT_PRIORITY`]) go,
//!    and, while the app is in the foreground, packages the user opened in the last week;
//! 7. on low battery (at most [`LOW_BATTERY_PERCENT`] and not charging) or in low-power mode,
//!    only urgent and in-use packages go;
//! 8. order: priority, then opens, then most recently opened, then the smaller download first;
//!    off Wi-Fi, non-urgent downloads stop at [`CELLULAR_BUDGET_BYTES`] per update and the rest
//!    are deferred by priority.

use std::cmp::Reverse;

use manifests::{PackageId, Prefetch, Reason, ReleaseRef, ReleaseVersion};

/// Packages at or above this priority are fetched even on metered links and low battery.
pub const URGENT_PRIORITY: u8 = 80;
/// A package opened within this many seconds counts as in use.
pub const RECENT_SECS: u64 = 7 * 24 * 3600;
/// At or below this charge, and not charging, the battery counts as low.
pub const LOW_BATTERY_PERCENT: u8 = 20;
/// The most bytes one update downloads for non-urgent packages off Wi-Fi.
pub const CELLULAR_BUDGET_BYTES: u64 = 20 * 1024 * 1024;

/// A release the device should move to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    /// The package.
    pub package: PackageId,
    /// The release the device runs now, if any.
    pub from: Option<ReleaseVersion>,
    /// The release it should run.
    pub to: ReleaseRef,
    /// Why it gets that release.
    pub reason: Reason,
    /// The publisher's fetch priority for the package (higher first).
    pub priority: u8,
    /// The publisher's prefetch policy for the package.
    pub prefetch: Prefetch,
}

/// The network the device is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network {
    /// Wi-Fi or Ethernet.
    Wifi,
    /// A mobile network.
    Cellular,
    /// No network.
    Offline,
}

/// What the host knows about the device right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conditions {
    /// The network.
    pub network: Network,
    /// The link is metered (a capped plan, a hotspot).
    pub metered: bool,
    /// The battery's charge, 0 to 100.
    pub battery_percent: u8,
    /// The device is charging.
    pub charging: bool,
    /// The system's low-power (battery saver) mode is on.
    pub low_power_mode: bool,
    /// Free space for the store, in bytes.
    pub free_space_bytes: u64,
    /// The app is in the foreground (a launch), not a background task.
    pub foreground: bool,
}

impl Conditions {
    /// Unmetered Wi-Fi, a full battery on charge, plenty of space, in the foreground: everything
    /// goes now. For tests, tools and hosts that do not know better.
    pub fn unrestricted() -> Conditions {
        Conditions {
            network: Network::Wifi,
            metered: false,
            battery_percent: 100,
            charging: true,
            low_power_mode: false,
            free_space_bytes: u64::MAX,
            foreground: true,
        }
    }

    fn unmetered_wifi(&self) -> bool {
        self.network == Network::Wifi && !self.metered
    }

    fn low_battery(&self) -> bool {
        self.low_power_mode || (self.battery_percent <= LOW_BATTERY_PERCENT && !self.charging)
    }
}

/// One update as the planner sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The update.
    pub update: Update,
    /// Bytes the device lacks for the release (0 when every blob is present).
    pub missing_bytes: u64,
    /// Bytes of the whole release.
    pub size_bytes: u64,
    /// Page opens counted for the package.
    pub opens: u64,
    /// When a page of the package was last opened (Unix seconds; 0: never).
    pub last_opened_secs: u64,
}

/// Why an update waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Wait {
    /// No network.
    Offline,
    /// Waiting for an unmetered Wi-Fi link (the link is metered or cellular and the package is
    /// neither urgent nor in use, or its publisher asked for Wi-Fi only).
    Wifi,
    /// Waiting for charge (low battery or low-power mode) and the package is neither urgent nor
    /// in use.
    Charge,
    /// Not enough free space.
    Space,
    /// Deferred by priority: packages before it used this update's budget off Wi-Fi.
    Priority,
    /// Published "on first use", and the user has not opened it yet.
    FirstUse,
    /// The store's quota is full of packages opened more recently.
    Quota,
}

/// What to do now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Updates to install now, in this order.
    pub now: Vec<Candidate>,
    /// Updates that wait, and why.
    pub later: Vec<(PackageId, Wait)>,
}

/// Plans `candidates` under `conditions` at `now_secs` (Unix seconds).
pub fn plan(candidates: Vec<Candidate>, conditions: &Conditions, now_secs: u64) -> Plan {
    let mut out = Plan::default();
    for c in candidates {
        match wait(&c, conditions, now_secs) {
            Some(wait) => out.later.push((c.update.package.clone(), wait)),
            None => out.now.push(c),
        }
    }
    out.now.sort_by_key(|c| {
        (
            c.missing_bytes > 0,
            Reverse(c.update.priority),
            Reverse(c.opens),
            Reverse(c.last_opened_secs),
            c.missing_bytes,
        )
    });
    if !conditions.unmetered_wifi() {
        let mut budget = CELLULAR_BUDGET_BYTES;
        let (mut now, mut deferred) = (Vec::new(), Vec::new());
        for c in std::mem::take(&mut out.now) {
            if c.update.priority >= URGENT_PRIORITY || c.missing_bytes <= budget {
                if c.update.priority < URGENT_PRIORITY {
                    budget -= c.missing_bytes;
                }
                now.push(c);
            } else {
                deferred.push((c.update.package, Wait::Priority));
            }
        }
        out.now = now;
        out.later.extend(deferred);
    }
    out
}

/// Why `c` waits under `conditions`, or `None` when it goes now.
fn wait(c: &Candidate, conditions: &Conditions, now_secs: u64) -> Option<Wait> {
    let in_use =
        c.last_opened_secs > 0 && now_secs.saturating_sub(c.last_opened_secs) <= RECENT_SECS;
    let urgent = c.update.priority >= URGENT_PRIORITY;
    let wifi = conditions.unmetered_wifi();
    // A policy newer than this code may restrict downloads: fetch such a package on first use.
    let prefetch = match c.update.prefetch {
        Prefetch::Unknown => Prefetch::OnFirstUse,
        known => known,
    };
    // Off Wi-Fi only urgent packages go, and in the foreground the ones the user is using.
    let allowed_off_wifi = urgent || (in_use && conditions.foreground);
    if c.missing_bytes == 0 {
        None
    } else if conditions.network == Network::Offline {
        Some(Wait::Offline)
    } else if prefetch == Prefetch::OnFirstUse && c.opens == 0 && c.update.from.is_none() {
        Some(Wait::FirstUse)
    } else if c.size_bytes.saturating_add(c.missing_bytes) > conditions.free_space_bytes {
        Some(Wait::Space)
    } else if !wifi && (prefetch == Prefetch::WifiOnly || !allowed_off_wifi) {
        Some(Wait::Wifi)
    } else if conditions.low_battery() && !urgent && !in_use {
        Some(Wait::Charge)
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
