//! Keeping the store within the quota and free of what nothing needs.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use std::collections::BTreeMap;

use manifests::{Digest, PackageId};

use super::{Client, lock};
use crate::device::Installed;
use crate::error::Result;
use crate::quota::{self, Eviction};

impl Client {
    /// Limits the bytes the store holds (`None`: no limit). When an update would exceed it,
    /// rollback targets and then the least recently opened packages give way (see [`quota`]);
    /// an update that would push out packages used more recently than its own waits. Lowering
    /// the quota evicts at once. Blocks (disk).
    ///
    /// # Errors
    /// Storage errors.
    pub fn set_quota_bytes(&self, quota_bytes: Option<u64>) -> Result<Vec<Eviction>> {
        self.quota_bytes
            .store(quota_bytes.unwrap_or(0), Ordering::Relaxed);
        self.enforce_quota()
    }

    fn quota(&self) -> Option<u64> {
        Some(self.quota_bytes.load(Ordering::Relaxed)).filter(|&n| n > 0)
    }

    /// What must give way for `release` of `package` to fit the quota; `None` when it cannot.
    pub(super) fn room_for(
        &self,
        package: &PackageId,
        blobs: &BTreeMap<Digest, u64>,
    ) -> Option<Vec<Eviction>> {
        let Some(quota_bytes) = self.quota() else {
            return Some(Vec::new());
        };
        let device = self.snapshot();
        let incoming = device.incoming(package, blobs.clone(), |i| self.releases.blobs(i));
        let holdings = device.holdings(|i| self.releases.blobs(i));
        quota::evictions(&holdings, Some(&incoming), quota_bytes)
    }

    /// Brings the store within the quota, if it is over (as after `mark_ready` or a lower quota).
    pub(super) fn enforce_quota(&self) -> Result<Vec<Eviction>> {
        let Some(quota_bytes) = self.quota() else {
            return Ok(Vec::new());
        };
        let holdings = self.snapshot().holdings(|i| self.releases.blobs(i));
        // What cannot be brought within the quota now is left for a later pass.
        let evictions = quota::evictions(&holdings, None, quota_bytes).unwrap_or_default();
        self.evict(&evictions)?;
        Ok(evictions)
    }

    /// Drops evicted releases from the state (one commit), then deletes what nothing needs.
    pub(super) fn evict(&self, evictions: &[Eviction]) -> Result<()> {
        if evictions.is_empty() {
            return Ok(());
        }
        {
            let writer = lock(&self.writer);
            let routes = |i: &Installed| {
                let served = self.releases.cached(&i.manifest);
                served.map(|s| s.route_prefixes()).unwrap_or_default()
            };
            let change = lock(&self.core).evict(evictions, routes);
            self.commit(&writer, change)?;
        }
        self.collect_garbage().map(drop)
    }

    /// Deletes blobs and manifests that no kept release and no install in flight needs; returns
    /// bytes freed. Blocks (disk).
    ///
    /// # Errors
    /// Storage errors, or a kept release whose manifest cannot be read (then nothing is deleted).
    pub fn collect_garbage(&self) -> Result<u64> {
        let _writer = lock(&self.writer);
        let device = self.snapshot();
        let mut keep = BTreeSet::new();
        for (package, p) in &device.state().packages {
            for installed in p.active.iter().chain(p.previous.iter()) {
                let served = self.releases.stored(&self.store, package, installed)?;
                keep.extend(served.blobs().into_keys());
                keep.insert(installed.manifest);
            }
        }
        // Held for the whole pass: an install claims its blobs before it looks for them on disk.
        let claims = lock(&self.claims);
        let claimed = |d: &Digest| claims.values().any(|c| c.contains(d));
        let freed = self
            .store
            .collect_garbage(|d| keep.contains(d) || claimed(d))?;
        // Verified releases the device no longer keeps leave the cache with their files.
        self.releases.retain(|d| keep.contains(d) || claimed(d));
        Ok(freed)
    }
}
