//! Retention: which releases a collection keeps and which it removes, decided from facts the
//! metadata store reads in one transaction. Pure: no IO, the time comes in as an argument;
//! [`crate::gc`] reads the facts, commits the decision and sweeps the blobs.
//!
//! A release is kept when any of these holds:
//!
//! 1. a channel's current index entry names it (stable, candidate, or an older release kept for
//!    host apps too old for the newer ones);
//! 2. it is among the last [`Retention::history_depth`] releases one channel held for its
//!    package (stable or candidate, as the channel's history names them), so that rolling back
//!    stays possible;
//! 3. it is among the [`Retention::keep_last`] highest versions of its package (the highest
//!    version is what a publish takes its routes and defaults from);
//! 4. it was on a channel, or published, more recently than its maximum age:
//!    [`Retention::dev_max_age_secs`] for dev builds (what `baleen watch` publishes),
//!    [`Retention::max_age_secs`] for the others.
//!
//! Every other release is collected, with the packs built to or from it.

use std::collections::{BTreeMap, BTreeSet};

use manifests::{Digest, PackageId, ReleaseVersion, Timestamp};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::meta_store::{PackFact, RetentionFacts};

#[cfg(test)]
mod tests;

/// The longest maximum age, ten years: a larger value is a typo (milliseconds for seconds).
pub const MAX_AGE_LIMIT_SECS: u64 = 10 * 365 * 24 * 3600;

/// The largest history depth or number of releases kept per package.
pub const MAX_KEPT: u64 = 10_000;

/// How long releases off every channel are kept, and what is kept whatever their age.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// A release on no channel is collected this long after it was last on one (or published,
    /// if it never was), unless another rule keeps it. Default 30 days.
    pub max_age_secs: u64,
    /// The same for dev builds (a pre-release identifier `dev`, or ending in `-dev`, as `baleen
    /// watch` publishes: `0.0.0-dev.1700000000000`). Default 7 days: a dev build is useful while
    /// someone is working on it, and the dev channel's history keeps the last few anyway.
    pub dev_max_age_secs: u64,
    /// Per channel and package, the last this many releases the channel held are kept, stable
    /// or candidate. Default 10.
    pub history_depth: u64,
    /// Per package, the this many highest versions are kept. At least 1. Default 5.
    pub keep_last: u64,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            max_age_secs: 30 * 24 * 3600,
            dev_max_age_secs: 7 * 24 * 3600,
            history_depth: 10,
            keep_last: 5,
        }
    }
}

impl Retention {
    /// Checks every value, so that a typo is refused before anything is removed.
    ///
    /// # Errors
    /// [`Error::InvalidPolicy`] naming the first bad field, its value and what would work.
    pub fn check(&self) -> Result<()> {
        let refuse = |field: &'static str, value: u64, reason: String| {
            Err(Error::InvalidPolicy {
                field,
                value: value.to_string(),
                reason,
            })
        };
        for (field, value) in [
            ("max_age_secs", self.max_age_secs),
            ("dev_max_age_secs", self.dev_max_age_secs),
        ] {
            if value > MAX_AGE_LIMIT_SECS {
                return refuse(
                    field,
                    value,
                    format!(
                        "a maximum age is at most ten years, {MAX_AGE_LIMIT_SECS} seconds \
                         (was it given in milliseconds?)"
                    ),
                );
            }
        }
        if self.history_depth > MAX_KEPT {
            return refuse(
                "history_depth",
                self.history_depth,
                format!("keep from 0 to {MAX_KEPT} releases of each channel's history"),
            );
        }
        if self.keep_last == 0 || self.keep_last > MAX_KEPT {
            return refuse(
                "keep_last",
                self.keep_last,
                format!(
                    "keep from 1 to {MAX_KEPT} releases of each package: the highest version is \
                     always kept, since a publish takes its routes and defaults from it"
                ),
            );
        }
        Ok(())
    }
}

/// Whether a version is a dev build: a pre-release identifier `dev`, or one ending in `-dev`
/// (what `baleen watch` appends to its base version).
pub fn is_dev_build(version: &ReleaseVersion) -> bool {
    version
        .semver()
        .pre
        .as_str()
        .split('.')
        .any(|id| id == "dev" || id.ends_with("-dev"))
}

/// A release a collection removes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expired {
    /// The package.
    pub package: PackageId,
    /// The version.
    pub version: ReleaseVersion,
    /// The digest of its signed manifest.
    pub manifest_digest: Digest,
    /// When it was published.
    pub created_at: Timestamp,
    /// When a channel's history last named it; none if no channel ever held it.
    pub last_on_channel_at: Option<Timestamp>,
    /// The sum of its file sizes.
    pub size_bytes: u64,
    /// Its number of files.
    pub file_count: u64,
    /// Whether it is a dev build, held to [`Retention::dev_max_age_secs`].
    pub dev_build: bool,
}

/// What a collection removes from the metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The releases removed, by package and version.
    pub expired: Vec<Expired>,
    /// How many releases stay.
    pub kept: usize,
    /// The packs built to or from a removed release.
    pub packs: Vec<PackFact>,
}

impl Plan {
    /// The removed releases as (package, version).
    pub fn keys(&self) -> BTreeSet<(PackageId, ReleaseVersion)> {
        self.expired
            .iter()
            .map(|e| (e.package.clone(), e.version.clone()))
            .collect()
    }
}

type Key = (PackageId, ReleaseVersion);

/// Decides what a collection at `now` removes under `policy`.
pub fn plan(facts: &RetentionFacts, policy: &Retention, now: Timestamp) -> Plan {
    let mut kept: BTreeSet<Key> = facts.named.iter().cloned().collect();

    // The last versions each channel's history names for each package, newest first.
    let mut last_seen: BTreeMap<Key, Timestamp> = BTreeMap::new();
    let mut depth: BTreeMap<(&str, &str, &PackageId), Vec<&ReleaseVersion>> = BTreeMap::new();
    for mention in &facts.history {
        let held = depth
            .entry((
                mention.app.as_str(),
                mention.channel.as_str(),
                &mention.package,
            ))
            .or_default();
        for version in [&mention.to_version, &mention.from_version]
            .into_iter()
            .flatten()
        {
            let key = (mention.package.clone(), version.clone());
            let seen = last_seen.entry(key.clone()).or_insert(mention.at);
            *seen = (*seen).max(mention.at);
            if (held.len() as u64) < policy.history_depth && !held.contains(&version) {
                held.push(version);
                kept.insert(key);
            }
        }
    }

    // The highest versions of each package.
    let mut by_package: BTreeMap<&PackageId, Vec<&ReleaseVersion>> = BTreeMap::new();
    for release in &facts.releases {
        by_package
            .entry(&release.package)
            .or_default()
            .push(&release.version);
    }
    for (package, versions) in &mut by_package {
        versions.sort_unstable_by(|a, b| b.cmp(a));
        let last = usize::try_from(policy.keep_last).unwrap_or(usize::MAX);
        for version in versions.iter().take(last) {
            kept.insert(((*package).clone(), (*version).clone()));
        }
    }

    let mut out = Plan::default();
    for release in &facts.releases {
        let key = (release.package.clone(), release.version.clone());
        let on_channel = last_seen.get(&key).copied();
        let since = on_channel.map_or(release.created_at, |at| at.max(release.created_at));
        let dev_build = is_dev_build(&release.version);
        let max_age = if dev_build {
            policy.dev_max_age_secs
        } else {
            policy.max_age_secs
        };
        let age = now.unix_secs().saturating_sub(since.unix_secs());
        if kept.contains(&key) || age < max_age {
            out.kept += 1;
            continue;
        }
        out.expired.push(Expired {
            package: release.package.clone(),
            version: release.version.clone(),
            manifest_digest: release.manifest_digest,
            created_at: release.created_at,
            last_on_channel_at: on_channel,
            size_bytes: release.size_bytes,
            file_count: release.file_count,
            dev_build,
        });
    }
    out.expired
        .sort_by(|a, b| (&a.package, &a.version).cmp(&(&b.package, &b.version)));
    let gone = out.keys();
    out.packs = facts
        .packs
        .iter()
        .filter(|p| {
            gone.contains(&(p.package.clone(), p.to.clone()))
                || p.from
                    .as_ref()
                    .is_some_and(|f| gone.contains(&(p.package.clone(), f.clone())))
        })
        .cloned()
        .collect();
    out
}
