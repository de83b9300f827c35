//! Garbage collection: removes the releases retention lets go ([`crate::retention`]), then every
//! stored blob (file, pack or precompressed representation) that no remaining release or pack
//! refers to. `baleen serve` runs one every [`crate::service::Settings::gc_interval`], and an
//! admin asks for one, or for a dry run, with `baleen gc` (`POST /v1/admin/gc`).
//!
//! Crash safety rests on an order and a gate:
//!
//! - Release rows (with their packs and the list of their blobs) go first, in one transaction
//!   that commits only if no channel changed since the decision and no channel names them; blob
//!   files go after. A kill between the two leaves blobs nothing refers to, which the next
//!   collection removes; never a release without its blobs.
//! - A blob is removed only if no stored release or pack refers to it, as read while the
//!   collection holds `Service::blob_gate` exclusively. Whatever is about to make a stored blob
//!   referenced holds the gate shared from before it relies on the blob until its row is
//!   committed: a publish (from reading its base release and finding its files already stored
//!   until its release is on its channel), a pack build (from storing the pack until it is
//!   recorded). So a blob a publish deduplicated against is either referenced when the
//!   collection reads the references, or removed before the publish looks for it and then
//!   stored again from the upload.
//! - Only blobs listed before the gate was taken are candidates, so nothing written during the
//!   collection is removed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use manifests::{Digest, Timestamp};

use crate::blob_store::StoredBlob;
use crate::error::{Error, Result};
use crate::meta_store::AuditEntry;
use crate::retention::{self, Expired, Plan, Retention};
use crate::service::{Service, now};

/// Blobs removed per call to the blob store.
const REMOVE_BATCH: usize = 1000;

/// What a collection removed, or with `dry_run` would remove.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collected {
    /// Nothing was changed.
    pub dry_run: bool,
    /// The policy applied.
    pub policy: Retention,
    /// The releases removed, by package and version.
    pub releases: Vec<Expired>,
    /// How many releases stay.
    pub releases_kept: usize,
    /// How many built packs were removed with their releases.
    pub packs: usize,
    /// How many stored blobs (files and packs) were removed.
    pub blobs: u64,
    /// The bytes they took, precompressed representations included.
    pub blob_bytes: u64,
}

impl Service {
    /// Collects garbage under `policy`: removes the releases it lets go and the blobs nothing
    /// refers to any more; with `dry_run`, only says what would go. `actor` is recorded in the
    /// audit log with the releases removed. Collections run one at a time.
    ///
    /// # Errors
    /// [`Error::InvalidPolicy`] for a policy value out of range; [`Error::Conflict`] when
    /// channels kept changing while the collection decided; store errors. A failure part-way
    /// leaves only unreferenced blobs behind, for the next collection.
    pub async fn collect_garbage(
        &self,
        dry_run: bool,
        policy: &Retention,
        actor: &str,
    ) -> Result<Collected> {
        policy.check()?;
        let _one_at_a_time = self.collecting.lock().await;
        let started = std::time::Instant::now();
        let at = now();
        // Blobs stored from here on belong to writes under way: they are not candidates.
        let stored = self.blobs.list().await?;
        // A dry run removes nothing, so it does not hold up publishes.
        let gate = match dry_run {
            true => None,
            false => Some(self.blobs_to_remove().await?),
        };
        let plan = self.expire(policy, at, dry_run, actor).await?;
        let excluding = if dry_run {
            plan.keys()
        } else {
            BTreeSet::new()
        };
        let live = self.meta.live_digests(&excluding).await?;
        let garbage: Vec<StoredBlob> = stored
            .into_iter()
            .filter(|b| !live.contains(&b.digest))
            .collect();
        if !dry_run {
            for batch in garbage.chunks(REMOVE_BATCH) {
                self.blobs.remove(batch).await?;
                self.hot_blobs.forget(batch.iter().map(|b| &b.digest));
            }
        }
        drop(gate);
        let blobs = garbage.iter().filter(|b| b.size_bytes.is_some()).count() as u64;
        let blob_bytes = garbage.iter().map(StoredBlob::total_bytes).sum();
        let collected = Collected {
            dry_run,
            policy: *policy,
            releases_kept: plan.kept,
            packs: plan.packs.len(),
            releases: plan.expired,
            blobs,
            blob_bytes,
        };
        if !dry_run {
            self.meta.set_last_collection(at).await?;
            let m = &self.metrics;
            m.gc_runs.inc();
            m.gc_releases.inc_by(collected.releases.len() as u64);
            m.gc_blobs.inc_by(blobs);
            m.gc_bytes.inc_by(blob_bytes);
        }
        tracing::info!(
            dry_run,
            releases = collected.releases.len(),
            kept = collected.releases_kept,
            packs = collected.packs,
            blobs,
            blob_bytes,
            seconds = started.elapsed().as_secs_f64(),
            "collected garbage"
        );
        Ok(collected)
    }

    /// Decides which releases go and, unless `dry_run`, removes them, deciding again if a
    /// channel changed in between.
    async fn expire(
        &self,
        policy: &Retention,
        at: Timestamp,
        dry_run: bool,
        actor: &str,
    ) -> Result<Plan> {
        for _attempt in 0..8 {
            let facts = self.meta.retention_facts().await?;
            let plan = retention::plan(&facts, policy, at);
            if dry_run || plan.expired.is_empty() {
                return Ok(plan);
            }
            let names: Vec<String> = plan
                .expired
                .iter()
                .map(|e| format!("{}@{}", e.package, e.version))
                .collect();
            let audit = AuditEntry {
                at,
                actor: actor.to_owned(),
                action: "gc".into(),
                target: match names.as_slice() {
                    [one] => one.clone(),
                    many => format!("{} releases", many.len()),
                },
                detail: serde_json::json!({
                    "releases": names,
                    "packs": plan.packs.len(),
                    "policy": policy,
                })
                .to_string(),
            };
            if self
                .meta
                .delete_releases(&plan.keys(), facts.history_mark, &audit)
                .await?
            {
                let manifests: BTreeSet<Digest> =
                    plan.expired.iter().map(|e| e.manifest_digest).collect();
                self.manifest_docs.forget(&manifests);
                self.packs.forget_releases(&plan.keys());
                return Ok(plan);
            }
            tracing::debug!("a channel changed while the collection decided; deciding again");
        }
        Err(Error::Conflict(
            "channels kept changing during the collection; try again".into(),
        ))
    }
}

/// Collects garbage with the server's policy every `every`, counting from the last collection
/// (kept in the metadata store, so that restarts more frequent than `every` do not put it off
/// for ever). Failures are logged and the next attempt comes `every` later.
pub async fn collect_periodically(service: Arc<Service>, every: Duration) {
    let mut wait = match service.meta.last_collection().await {
        Ok(Some(last)) => {
            let due = last.unix_secs().saturating_add(every.as_secs());
            match due.checked_sub(now().unix_secs()) {
                Some(left) if left > 0 => Duration::from_secs(left),
                // Overdue: soon, once the server has settled after its start.
                _ => every.min(Duration::from_secs(60)),
            }
        }
        Ok(None) => {
            if let Err(e) = service.meta.set_last_collection(now()).await {
                tracing::error!(error = %e, "recording the start of periodic collection failed");
            }
            every
        }
        Err(e) => {
            tracing::error!(error = %e, "reading the last collection's time failed");
            every
        }
    };
    loop {
        tokio::time::sleep(wait).await;
        let policy = service.settings().retention;
        if let Err(e) = service.collect_garbage(false, &policy, "server").await {
            tracing::error!(error = %e, "periodic garbage collection failed");
        }
        wait = every;
    }
}
