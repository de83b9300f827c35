//! The disk quota: which releases give way when the store would hold more than the host allows.
//! Pure: holdings in, evictions out.
//!
//! Blobs are shared across releases and packages, so the store's size is the size of the union of
//! the blobs every kept release needs, and an eviction frees only what no other kept release
//! needs. Rules, in order:
//! 1. a protected package (its active release awaits `mark_ready`, or it is being installed) keeps
//!    both its releases: its rollback target must stay;
//! 2. rollback targets (previous releases) go first, least recently opened package first;
//! 3. then whole packages, least recently opened first — but, when making room for an incoming
//!    release, only packages opened less recently than the incoming one: an unused new package
//!    never pushes out one the user opens;
//! 4. if that is not enough, nothing is evicted and the incoming release waits.

use std::collections::{BTreeMap, BTreeSet};

use manifests::{Digest, PackageId};

/// What one package holds on the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holding {
    /// The package.
    pub package: PackageId,
    /// Blobs of its active release, with their sizes.
    pub active: BTreeMap<Digest, u64>,
    /// Blobs of its previous release (the rollback target).
    pub previous: BTreeMap<Digest, u64>,
    /// When a page of it was last opened (Unix seconds; 0: never), then how often: the recency.
    pub last_opened_secs: u64,
    /// Page opens counted.
    pub opens: u64,
    /// Never evicted (pending verification, or being installed).
    pub protected: bool,
}

/// What gives way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Eviction {
    /// The package's previous release (its rollback target) is dropped.
    Previous(PackageId),
    /// The package's releases are dropped; its pages go to the network until it returns.
    Package(PackageId),
}

/// The bytes the store holds for `holdings`: each blob counted once.
pub fn held_bytes(holdings: &[Holding]) -> u64 {
    let mut seen = BTreeSet::new();
    holdings
        .iter()
        .flat_map(|h| h.active.iter().chain(h.previous.iter()))
        .filter(|(d, _)| seen.insert(**d))
        .map(|(_, size)| *size)
        .sum()
}

/// The evictions that bring `holdings` within `quota_bytes`. With `incoming` (the holding of a
/// package as it will be after an install, marked protected), only packages opened less recently
/// than it are evicted. `None` when no allowed eviction is enough.
pub fn evictions(
    holdings: &[Holding],
    incoming: Option<&Holding>,
    quota_bytes: u64,
) -> Option<Vec<Eviction>> {
    let mut kept: Vec<Holding> = holdings
        .iter()
        .filter(|h| incoming.is_none_or(|i| i.package != h.package))
        .cloned()
        .chain(incoming.cloned())
        .collect();
    let mut out = Vec::new();
    if held_bytes(&kept) <= quota_bytes {
        return Some(out);
    }
    let recency = |h: &Holding| (h.last_opened_secs, h.opens);
    let mut order: Vec<usize> = (0..kept.len()).filter(|&i| !kept[i].protected).collect();
    order.sort_by_key(|&i| (recency(&kept[i]), kept[i].package.clone()));

    for &i in &order {
        if !kept[i].previous.is_empty() {
            kept[i].previous.clear();
            out.push(Eviction::Previous(kept[i].package.clone()));
            if held_bytes(&kept) <= quota_bytes {
                return Some(out);
            }
        }
    }
    for &i in &order {
        if incoming.is_some_and(|new| recency(&kept[i]) >= recency(new)) {
            continue;
        }
        kept[i].active.clear();
        out.retain(|e| *e != Eviction::Previous(kept[i].package.clone()));
        out.push(Eviction::Package(kept[i].package.clone()));
        if held_bytes(&kept) <= quota_bytes {
            return Some(out);
        }
    }
    None
}

#[cfg(test)]
mod tests;
