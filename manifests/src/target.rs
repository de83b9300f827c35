//! Targeting: which release of a package a given device runs.

use std::collections::BTreeMap;

use crate::rollout::{bucket, in_rollout};
use crate::{HostVersion, Index, PackageEntry, PackageId, ReleaseRef};

/// Why a device got the release it got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// The device is inside the candidate's rollout and its host app can run the candidate.
    Candidate,
    /// The stable release.
    Stable,
    /// An older release, because the host app is too old (or too new) for the stable one.
    Older,
}

/// The release chosen for a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Selection<'a> {
    /// The release.
    pub release: &'a ReleaseRef,
    /// Why.
    pub reason: Reason,
}

/// Chooses the release of `package` that a device with `device_id`, running host app `host`,
/// gets from `entry`:
///
/// 1. the candidate, if the device's [`bucket`] is inside the rollout and the host app satisfies
///    the candidate's requirement;
/// 2. else the stable release, if the host app satisfies its requirement;
/// 3. else the first (newest) older release whose requirement the host app satisfies;
/// 4. else none: the package has nothing this app can run.
pub fn select<'a>(
    package: &PackageId,
    entry: &'a PackageEntry,
    host: &HostVersion,
    device_id: &str,
) -> Option<Selection<'a>> {
    if let Some(candidate) = &entry.candidate {
        let release = &candidate.release;
        if release.requires.matches(host)
            && in_rollout(
                bucket(device_id, package, &release.version),
                candidate.rollout_basis_points,
            )
        {
            return Some(Selection {
                release,
                reason: Reason::Candidate,
            });
        }
    }
    if let Some(stable) = &entry.stable
        && stable.requires.matches(host)
    {
        return Some(Selection {
            release: stable,
            reason: Reason::Stable,
        });
    }
    entry
        .older
        .iter()
        .find(|r| r.requires.matches(host))
        .map(|release| Selection {
            release,
            reason: Reason::Older,
        })
}

/// [`select`] for every package of an index; packages with nothing for this device are left out.
pub fn select_all<'a>(
    index: &'a Index,
    host: &HostVersion,
    device_id: &str,
) -> BTreeMap<&'a PackageId, Selection<'a>> {
    index
        .packages
        .iter()
        .filter_map(|(id, entry)| select(id, entry, host, device_id).map(|s| (id, s)))
        .collect()
}
