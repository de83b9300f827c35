//! The planner: from the updates a check found, the device's conditions and how the user uses
//! each package, decide what to fetch now and in which order. Pure: values in, a plan out.
//!
//! Rules, in order:
//! 1. offline: nothing now;
//! 2. an update that needs no download (its blobs are on the device, as after a rollback) always
//!    goes, first;
//! 3. not enough free space for twice the release (download plus install headroom): wait;
//! 4. on a metered or cellular link, or on low battery, only packages the server marks urgent
//!    (priority ≥ [`URGENT_PRIORITY`]) or that the user opened in the last week go now;
//! 5. order: priority, then opens, then most recently opened, then the smaller download first.

use std::cmp::Reverse;

use manifests::PackageId;

use crate::client::Update;

/// Packages at or above this priority are fetched even on metered links and low battery.
pub const URGENT_PRIORITY: u8 = 80;
/// A package opened within this many seconds counts as in use.
pub const RECENT_SECS: u64 = 7 * 24 * 3600;

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
    /// The battery is low and not charging.
    pub low_battery: bool,
    /// Free space for the store, in bytes.
    pub free_space_bytes: u64,
    /// The time, in Unix seconds.
    pub now_secs: u64,
}

/// One update as the planner sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The update.
    pub update: Update,
    /// The server's priority for the package (0 to 255, higher first).
    pub priority: u8,
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
pub enum Wait {
    /// No network.
    Offline,
    /// Not enough free space.
    Space,
    /// Metered or cellular link, and the package is neither urgent nor in use.
    Metered,
    /// Low battery, and the package is neither urgent nor in use.
    Battery,
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

/// Plans `candidates` under `conditions`.
pub fn plan(candidates: Vec<Candidate>, conditions: &Conditions) -> Plan {
    let mut out = Plan::default();
    for c in candidates {
        let in_use = c.last_opened_secs > 0
            && conditions.now_secs.saturating_sub(c.last_opened_secs) <= RECENT_SECS;
        let urgent = c.priority >= URGENT_PRIORITY;
        let wait = if c.missing_bytes == 0 {
            None
        } else if conditions.network == Network::Offline {
            Some(Wait::Offline)
        } else if c.size_bytes.saturating_add(c.missing_bytes) > conditions.free_space_bytes {
            Some(Wait::Space)
        } else if (conditions.metered || conditions.network == Network::Cellular)
            && !urgent
            && !in_use
        {
            Some(Wait::Metered)
        } else if conditions.low_battery && !urgent && !in_use {
            Some(Wait::Battery)
        } else {
            None
        };
        match wait {
            Some(wait) => out.later.push((c.update.package.clone(), wait)),
            None => out.now.push(c),
        }
    }
    out.now.sort_by_key(|c| {
        (
            c.missing_bytes > 0,
            Reverse(c.priority),
            Reverse(c.opens),
            Reverse(c.last_opened_secs),
            c.missing_bytes,
        )
    });
    out
}

#[cfg(test)]
mod tests;
