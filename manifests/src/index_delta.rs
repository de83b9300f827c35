//! Index deltas: what changed in an app's channel since the sequence a device holds, so that a
//! device's launch check costs what changed, not the size of the app.
//!
//! A delta names the sequence it starts from and the one it brings, carries the whole entry of
//! each package that changed (and the packages that left), and the sha256 of the canonical JSON
//! of the resulting `packages` map. A device applies a delta only to the exact index it holds
//! (`from_sequence` equal to its sequence), then checks that digest: the index it ends with is
//! the one the server signed the delta for, entry for entry, so entries of different sequences
//! can never be mixed. Replay (a lower sequence), freeze (expiry, checked against the trusted
//! time) and the app's sequence floor hold as for a full index. A delta with no changes is how
//! a fresh expiry reaches a device whose index did not change.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::envelope::{SignedDocument, check_header, from_value, open, sign_value, with_header};
use crate::error::{Error, Result};
use crate::index::{Freshness, IndexScope, MAX_PACKAGES, PackageEntry, Prefetch};
use crate::{AppId, Channel, Digest, Index, KeyPair, PackageId, Timestamp, TrustedKeys};

/// The index delta format this code writes and reads.
pub const INDEX_DELTA_FORMAT: u64 = 1;

/// What changed in an app's channel index between two sequences.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexDelta {
    /// The host app.
    pub app: AppId,
    /// The channel.
    pub channel: Channel,
    /// The sequence of the index this delta applies to.
    pub from_sequence: u64,
    /// The sequence of the index it brings (equal to `from_sequence` when nothing changed and
    /// the delta only renews the expiry).
    pub sequence: u64,
    /// When the delta was signed.
    pub issued_at: Timestamp,
    /// After this, a device does not install new content from the index it brings.
    pub expires_at: Timestamp,
    /// The whole entry of each package that changed or arrived.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub changed: BTreeMap<PackageId, PackageEntry>,
    /// Packages that left the channel.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub removed: BTreeSet<PackageId>,
    /// The sha256 of the canonical JSON of the whole `packages` map at `sequence`.
    pub packages_digest: Digest,
}

/// The sha256 of the canonical JSON of a `packages` map: what a delta's `packages_digest` names.
///
/// # Errors
/// A map that does not serialise canonically (an integer out of range).
pub fn packages_digest(packages: &BTreeMap<PackageId, PackageEntry>) -> Result<Digest> {
    let value = serde_json::to_value(packages).map_err(|e| Error::NotCanonical {
        at: format!("packages ({e})"),
        reason: "the packages do not serialise to JSON",
    })?;
    Ok(Digest::of(&crate::to_canonical_bytes(&value)?))
}

impl IndexDelta {
    /// The delta that takes `from` to `to` (two indexes of one app and channel), valid from
    /// `issued_at` until `expires_at`.
    ///
    /// # Errors
    /// Indexes of different apps or channels, or `to` older than `from`.
    pub fn between(
        from: &Index,
        to: &Index,
        issued_at: Timestamp,
        expires_at: Timestamp,
    ) -> Result<IndexDelta> {
        if from.app != to.app || from.channel != to.channel || to.sequence < from.sequence {
            return Err(Error::InvalidField {
                field: "from_sequence".into(),
                reason: format!(
                    "{}/{}@{} does not lead to {}/{}@{}",
                    from.app, from.channel, from.sequence, to.app, to.channel, to.sequence
                ),
            });
        }
        let changed = to
            .packages
            .iter()
            .filter(|(id, entry)| from.packages.get(*id) != Some(*entry));
        let removed = from
            .packages
            .keys()
            .filter(|id| !to.packages.contains_key(*id));
        Ok(IndexDelta {
            app: to.app.clone(),
            channel: to.channel.clone(),
            from_sequence: from.sequence,
            sequence: to.sequence,
            issued_at,
            expires_at,
            changed: changed.map(|(id, e)| (id.clone(), e.clone())).collect(),
            removed: removed.cloned().collect(),
            packages_digest: packages_digest(&to.packages)?,
        })
    }

    /// Checks the rules beyond field types: a sequence not below the one it starts from, and
    /// equal only when nothing changed; expiry after issue; no package both changed and removed;
    /// entries valid as in an index.
    ///
    /// # Errors
    /// [`Error::InvalidField`] naming the field.
    pub fn validate(&self) -> Result<()> {
        let invalid = |field: &str, reason: String| Error::InvalidField {
            field: field.to_owned(),
            reason,
        };
        let unchanged = self.changed.is_empty() && self.removed.is_empty();
        if self.sequence < self.from_sequence || (self.sequence == self.from_sequence && !unchanged)
        {
            return Err(invalid(
                "sequence",
                format!("{} does not follow {}", self.sequence, self.from_sequence),
            ));
        }
        if self.expires_at <= self.issued_at {
            return Err(invalid(
                "expires_at",
                format!(
                    "{} is not after issued_at {}",
                    self.expires_at, self.issued_at
                ),
            ));
        }
        if self.changed.len() + self.removed.len() > MAX_PACKAGES {
            return Err(invalid("changed", "more than 10000 packages".into()));
        }
        if let Some(id) = self
            .removed
            .iter()
            .find(|id| self.changed.contains_key(*id))
        {
            return Err(invalid("removed", format!("{id} is also changed")));
        }
        // The entries follow the rules of an index's entries.
        Index {
            app: self.app.clone(),
            channel: self.channel.clone(),
            sequence: self.sequence.max(1),
            issued_at: self.issued_at,
            expires_at: self.expires_at,
            packages: self.changed.clone(),
        }
        .validate()
    }

    /// Signs the delta with every key in `keys`.
    ///
    /// # Errors
    /// As [`IndexDelta::validate`], and for an entry with a policy this code does not know.
    pub fn sign(&self, keys: &[&KeyPair]) -> Result<SignedDocument> {
        self.validate()?;
        if let Some(id) = self
            .changed
            .iter()
            .find(|(_, e)| e.prefetch == Prefetch::Unknown)
        {
            return Err(Error::InvalidField {
                field: format!("changed.{}.prefetch", id.0),
                reason: "a policy this code does not know is read, never written".into(),
            });
        }
        let body = serde_json::to_value(self).map_err(|e| Error::NotCanonical {
            at: format!("$ ({e})"),
            reason: "index delta does not serialise to JSON",
        })?;
        sign_value(&with_header(body, "index-delta", INDEX_DELTA_FORMAT)?, keys)
    }
}

/// Opens a signed delta: signatures, type and format, fields and rules.
fn open_delta(bytes: &[u8], trusted: &TrustedKeys) -> Result<IndexDelta> {
    let opened = open(bytes, trusted)?;
    check_header(&opened.signed, "index-delta", INDEX_DELTA_FORMAT)?;
    let delta: IndexDelta = from_value::<IndexDelta>(opened.signed, "index-delta")?;
    delta.validate()?;
    Ok(delta)
}

impl IndexDelta {
    /// For `scope`, a sequence not below `highest_seen`, unexpired at `now`: as an index.
    fn check_fresh(&self, scope: &IndexScope, now: Timestamp, highest_seen: u64) -> Result<()> {
        let document = Freshness {
            app: &self.app,
            channel: &self.channel,
            sequence: self.sequence,
            expires_at: self.expires_at,
        };
        document.check(scope, now, highest_seen)
    }
}

/// Verifies a signed delta and applies it to `base`, the index the device holds (verified
/// before): the delta must start from `base`'s sequence, bring one not below `highest_seen`, be
/// unexpired at `now`, and lead to exactly the packages it names the digest of. Returns the new
/// index, with the delta's sequence and times.
///
/// # Errors
/// A forged, misdirected or expired delta ([`Error::BadSignature`], [`Error::WrongIndex`],
/// [`Error::Expired`], …); [`Error::Replay`] below `highest_seen`; [`Error::DeltaBase`] when it
/// starts from another sequence than `base`'s; [`Error::DeltaMismatch`] when the result is not
/// what the server signed.
pub fn apply_index_delta(
    bytes: &[u8],
    trusted: &TrustedKeys,
    scope: &IndexScope,
    now: Timestamp,
    highest_seen: u64,
    base: &Index,
) -> Result<Index> {
    let delta = open_delta(bytes, trusted)?;
    if delta.from_sequence != base.sequence {
        return Err(Error::DeltaBase {
            held: base.sequence,
            found: delta.from_sequence,
        });
    }
    delta.check_fresh(scope, now, highest_seen)?;
    let mut packages = base.packages.clone();
    for id in &delta.removed {
        packages.remove(id);
    }
    packages.extend(delta.changed.clone());
    finish(delta, packages)
}

/// Verifies an index a device rebuilt from deltas and stored (`index`, the canonical JSON of its
/// fields) against the last delta it applied (`delta`, signed): the same app, channel, sequence
/// and times, and packages with the digest the delta names. How a device trusts its stored index
/// again after a restart or a `304`.
///
/// # Errors
/// As [`apply_index_delta`], and [`Error::DeltaMismatch`] when the stored index is not the one
/// the delta led to.
pub fn verify_rebuilt_index(
    delta: &[u8],
    index: &[u8],
    trusted: &TrustedKeys,
    scope: &IndexScope,
    now: Timestamp,
    highest_seen: u64,
) -> Result<Index> {
    let delta = open_delta(delta, trusted)?;
    delta.check_fresh(scope, now, highest_seen)?;
    let stored: Index = from_value(crate::parse_strict(index)?, "index")?;
    if (stored.sequence, stored.issued_at, stored.expires_at)
        != (delta.sequence, delta.issued_at, delta.expires_at)
    {
        return Err(Error::DeltaMismatch {
            sequence: delta.sequence,
        });
    }
    finish(delta, stored.packages)
}

/// The index `delta` leads to with `packages`, once their digest is the one it names.
fn finish(delta: IndexDelta, packages: BTreeMap<PackageId, PackageEntry>) -> Result<Index> {
    if packages_digest(&packages)? != delta.packages_digest {
        return Err(Error::DeltaMismatch {
            sequence: delta.sequence,
        });
    }
    let index = Index {
        app: delta.app,
        channel: delta.channel,
        sequence: delta.sequence,
        issued_at: delta.issued_at,
        expires_at: delta.expires_at,
        packages,
    };
    index.validate()?;
    Ok(index)
}

/// The canonical JSON of an index's fields (without a signature): how a device stores an index
/// it rebuilt from deltas.
///
/// # Errors
/// An index that does not serialise canonically.
pub fn rebuilt_index_bytes(index: &Index) -> Result<Vec<u8>> {
    let value: Value = serde_json::to_value(index).map_err(|e| Error::NotCanonical {
        at: format!("$ ({e})"),
        reason: "index does not serialise to JSON",
    })?;
    crate::to_canonical_bytes(&value)
}

#[cfg(test)]
mod tests;
