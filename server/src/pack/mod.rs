//! Packs: a full pack per release and diff packs between releases, built once, stored as blobs,
//! and served by version (`/v1/packs/{package}/{to}.zip`, `/v1/packs/{package}/{from}..{to}.zip`).
//!
//! Each pack is built twice (see [`builds`]): a fast pack at once, served until the final pack
//! replaces it. Building is deterministic at each stage (sorted entries, fixed zip timestamps,
//! single-threaded zstd at a fixed level), so two replicas that build the same pack produce the
//! same bytes; builds of different packs run in parallel, one per core. The container is written by
//! `manifests::write_pack`, and every pack is read back with `manifests::PackReader`, the
//! device's reader and decoder, before it is stored: a pack devices cannot read is never served.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt, stream};

use manifests::{
    Digest, Encoding, ExpectedPack, Fetch, PACK_FORMAT, PackBlob, PackIndex, PackReader, PackageId,
    Release, ReleaseVersion, plan_diff, write_pack,
};

use crate::blob_store::BlobStore;
use crate::blob_store::fs::blocking;
use crate::error::{Error, Result};
use crate::meta_store::{PackRecord, ReleaseRecord, StoreLock};
use crate::service::Service;

pub mod builds;
pub mod compact;
pub mod delta;

use builds::Joined;
pub use builds::{Builds, FastPack, PackKey};
pub use compact::CompactPack;

/// `Retry-After` of a pack that is not ready: a fast pack of the largest releases takes seconds.
pub const PACK_RETRY_AFTER_SECS: u64 = 5;

/// How many earlier releases get a diff pack built right after a publish.
pub const DIFF_PACKS_AT_PUBLISH: usize = 5;

/// The release manifest inside a stored record (the server's own, so not verified again).
pub(crate) fn release_of(record: &ReleaseRecord) -> Result<Release> {
    let envelope = manifests::parse_strict(&record.manifest)?;
    let signed = envelope
        .get("signed")
        .ok_or_else(|| Error::Internal("stored manifest has no signed part".into()))?;
    Ok(manifests::parse_release_unverified(
        &manifests::to_canonical_bytes(signed)?,
    )?)
}

/// The two stages of a pack: built fast to be servable at once, then small for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// zstd level [`delta::FAST_LEVEL`], no long-distance matching; held in memory.
    Fast,
    /// zstd level [`delta::LEVEL`]; stored and served from then on.
    Final,
}

impl Stage {
    fn level(self) -> i32 {
        match self {
            Stage::Fast => delta::FAST_LEVEL,
            Stage::Final => delta::LEVEL,
        }
    }
}

/// What a device asking for a pack gets.
#[derive(Debug)]
pub enum Servable {
    /// The final pack, stored: immutable.
    Final(PackRecord),
    /// The fast pack, until the final one replaces it: cached briefly only.
    Fast(Arc<FastPack>),
}

impl Service {
    /// The pack from `from` (none: full pack) to `to` as a device's request gets it: the final
    /// pack if stored, else the fast one if built. Otherwise a build job is started (or joined)
    /// and the request waits at most [`crate::service::Settings::pack_wait`] for its fast pack.
    ///
    /// # Errors
    /// [`Error::NotFound`] for releases that do not exist; [`Error::PackNotReady`] when no pack is
    /// servable yet (or too many requested builds wait already).
    pub async fn servable_pack(
        self: &Arc<Self>,
        package: &PackageId,
        from: Option<&ReleaseVersion>,
        to: &ReleaseVersion,
    ) -> Result<Servable> {
        let key = PackKey::new(package, from, to);
        if let Some(ready) = self.ready_pack(&key).await? {
            return Ok(ready);
        }
        // Refuses names of packs that cannot exist before anything is queued.
        self.releases_of(&key).await?;
        let not_ready = Error::PackNotReady {
            pack: key.to_string(),
            retry_after_secs: PACK_RETRY_AFTER_SECS,
        };
        let mut ready = match self.packs.join_or_start(&key, true) {
            Joined::Full => return Err(not_ready),
            Joined::Running { ready, started } => {
                if started {
                    tokio::spawn(self.clone().run_pack_job(key.clone()));
                }
                ready
            }
        };
        // The job may have finished a stage between the first look and the subscription.
        if let Some(ready) = self.ready_pack(&key).await? {
            return Ok(ready);
        }
        let wait = self.settings.pack_wait;
        // A fast pack let go for the memory budget is built again (the same bytes), within the
        // time a request may wait.
        if self.packs.evicted(&key)
            && let Ok(Ok(fast)) = tokio::time::timeout(wait, self.fast_pack(&key)).await
        {
            return Ok(Servable::Fast(fast));
        }
        if !wait.is_zero() {
            let deadline = tokio::time::Instant::now() + wait;
            while tokio::time::timeout_at(deadline, ready.changed())
                .await
                .is_ok_and(|r| r.is_ok())
            {
                if let Some(ready) = self.ready_pack(&key).await? {
                    return Ok(ready);
                }
            }
            if let Some(ready) = self.ready_pack(&key).await? {
                return Ok(ready);
            }
        }
        Err(not_ready)
    }

    /// The fast pack held for `key`, else its stored final pack. The fast pack is looked at
    /// first: a job stores the final pack before it drops the fast one, so one of them is found.
    async fn ready_pack(&self, key: &PackKey) -> Result<Option<Servable>> {
        if let Some(fast) = self.packs.fast(key) {
            return Ok(Some(Servable::Fast(fast)));
        }
        Ok(self
            .meta
            .pack(&key.package, key.from.as_ref(), &key.to)
            .await?
            .map(Servable::Final))
    }

    /// The pack builds of this process.
    pub fn pack_builds(&self) -> &Builds {
        &self.packs
    }

    /// Starts the job of `key` unless one runs; publish-started jobs are not bounded.
    fn start_pack_job(self: &Arc<Self>, key: PackKey) {
        if let Joined::Running { started: true, .. } = self.packs.join_or_start(&key, false) {
            tokio::spawn(self.clone().run_pack_job(key));
        }
    }

    /// One pack job: the fast pack (unless the final pack exists), then, once no fast build
    /// waits anywhere, the final pack. Failures are logged: a device falls back to the next
    /// source, and a later request starts the job again.
    ///
    /// Servers sharing the store build each final pack once: one that finds the job's lease
    /// taken builds only its own fast pack (cheap, and the same bytes on every server, so any
    /// replica answers at once), serves it until the holder's final pack is stored, and takes
    /// the job over if the holder dies (its lease expires within seconds).
    async fn run_pack_job(self: Arc<Self>, key: PackKey) {
        let lease = match self.meta.try_lock(&format!("pack-job:{key}")).await {
            Ok(lease) => lease,
            Err(e) => {
                tracing::error!(pack = %key, error = %e, "taking a pack job failed");
                self.packs.fast_done();
                self.packs.finish(&key);
                return;
            }
        };
        let stored = self
            .meta
            .pack(&key.package, key.from.as_ref(), &key.to)
            .await;
        let needed = match stored {
            Ok(stored) => stored.is_none(),
            Err(e) => {
                tracing::error!(pack = %key, error = %e, "looking up a pack failed");
                false
            }
        };
        if needed {
            match self.fast_pack(&key).await {
                Ok(_) => self.packs.notify(&key),
                Err(e) => failed(&key, &e, "building a fast pack failed"),
            }
        }
        self.packs.fast_done();
        if needed {
            let lease = match lease {
                Some(lease) => Some(lease),
                None => {
                    tracing::debug!(pack = %key, "another server builds this pack");
                    self.final_elsewhere_or_lease(&key).await
                }
            };
            if lease.is_some() {
                self.packs.fast_settled().await;
                if let Err(e) = self.pack(&key.package, key.from.as_ref(), &key.to).await {
                    failed(&key, &e, "building a pack failed");
                }
            }
            // Stored now (by this job, or by another server), or failed: either way the fast
            // pack is served no longer, and after a failure the next request starts the job
            // again (here, or on the server that takes the lease).
            self.packs.forget_fast(&key);
        }
        self.packs.finish(&key);
    }

    /// Waits, while another server holds the job of `key`, until its final pack is stored
    /// (`None`) or its lease is free (`Some`: the holder died, and this job takes it over).
    /// Gives up after [`FOREIGN_JOB_WAIT`], and on an error of the store (`None`, logged): the
    /// next request starts the job again.
    async fn final_elsewhere_or_lease(&self, key: &PackKey) -> Option<StoreLock> {
        let deadline = tokio::time::Instant::now() + FOREIGN_JOB_WAIT;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(FOREIGN_JOB_POLL).await;
            match self
                .meta
                .pack(&key.package, key.from.as_ref(), &key.to)
                .await
            {
                Ok(Some(_)) => return None,
                Ok(None) => {}
                Err(e) => {
                    failed(key, &e, "looking up a pack built elsewhere failed");
                    return None;
                }
            }
            match self.meta.try_lock(&format!("pack-job:{key}")).await {
                Ok(Some(lease)) => return Some(lease),
                Ok(None) => {}
                Err(e) => {
                    failed(key, &e, "taking a pack job failed");
                    return None;
                }
            }
        }
        tracing::warn!(pack = %key, "no final pack from the server holding its job; letting go");
        None
    }

    /// The releases a pack goes between.
    async fn releases_of(&self, key: &PackKey) -> Result<(Option<ReleaseRecord>, ReleaseRecord)> {
        let (package, to) = (&key.package, &key.to);
        let to_record = self
            .meta
            .release(package, to)
            .await?
            .ok_or_else(|| Error::NotFound(format!("release {package}@{to}")))?;
        let from_record = match &key.from {
            // A well-formed name, but no such pack exists: a diff needs two releases.
            Some(v) if v == to => {
                return Err(Error::NotFound(format!(
                    "diff pack from {package}@{v} to itself"
                )));
            }
            Some(v) => Some(
                self.meta
                    .release(package, v)
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("release {package}@{v}")))?,
            ),
            None => None,
        };
        Ok((from_record, to_record))
    }

    /// Builds the bytes of `key` at `stage`, timed in the metrics.
    async fn build_stage(
        &self,
        key: &PackKey,
        from: Option<&ReleaseRecord>,
        to: &ReleaseRecord,
        stage: Stage,
    ) -> Result<Vec<u8>> {
        let permits = match stage {
            Stage::Fast => &self.packs.fast_builds,
            Stage::Final => &self.packs.final_builds,
        };
        let _permit = permits
            .acquire()
            .await
            .map_err(|_| Error::Internal("pack builder closed".into()))?;
        let started = std::time::Instant::now();
        let bytes = build(self.blobs.clone(), from, to, stage).await?;
        self.metrics.pack_builds.inc();
        if stage == Stage::Final {
            self.metrics.final_pack_builds.inc();
        }
        self.metrics
            .pack_build_seconds
            .observe(started.elapsed().as_secs_f64());
        tracing::info!(pack = %key, ?stage, size_bytes = bytes.len(), seconds = started.elapsed().as_secs_f64(), "pack built");
        Ok(bytes)
    }

    /// Whether a diff pack of `size_bytes` should give way to the full pack (when that is no
    /// larger): a diff that carries most of a release (a tiny release, or one that changed whole)
    /// may be no smaller than the full pack, and then the full pack answers for it, so a device
    /// asking for the diff downloads the smaller one with its one request.
    fn full_may_answer(key: &PackKey, size_bytes: u64, to: &ReleaseRecord) -> Result<bool> {
        Ok(key.from.is_some() && size_bytes.saturating_mul(4) >= release_of(to)?.size_bytes())
    }

    /// The fast pack of `key`, built now (and held) unless held already.
    async fn fast_pack(&self, key: &PackKey) -> Result<Arc<FastPack>> {
        if let Some(fast) = self.packs.fast(key) {
            return Ok(fast);
        }
        let _guard = self.publish_lock(&format!("fast-pack:{key}")).await;
        if let Some(fast) = self.packs.fast(key) {
            return Ok(fast);
        }
        let pack = self.build_fast(key).await?;
        self.packs.put_fast(key.clone(), pack.clone());
        Ok(pack)
    }

    /// Builds the fast pack of `key` (a diff may be answered by the full pack, built for the
    /// comparison, or the one held). Holds nothing: only the job of a pack holds its fast pack,
    /// and drops it once the final one is stored.
    async fn build_fast(&self, key: &PackKey) -> Result<Arc<FastPack>> {
        let (from_record, to_record) = self.releases_of(key).await?;
        let mut bytes = self
            .build_stage(key, from_record.as_ref(), &to_record, Stage::Fast)
            .await?;
        // Held in memory, counted against its budget by length: no spare capacity kept.
        bytes.shrink_to_fit();
        let mut pack = Arc::new(FastPack {
            digest: Digest::of(&bytes),
            bytes: bytes.into(),
        });
        if Self::full_may_answer(key, pack.bytes.len() as u64, &to_record)? {
            let full = match self.packs.fast(&key.full()) {
                Some(full) => full,
                None => Box::pin(self.build_fast(&key.full())).await?,
            };
            if full.bytes.len() <= pack.bytes.len() {
                pack = full;
            }
        }
        Ok(pack)
    }

    /// The final pack from `from` (none: full pack) to `to`, built now if it was not built
    /// before; its fast pack, if one was held, is dropped once it is stored.
    pub async fn pack(
        &self,
        package: &PackageId,
        from: Option<&ReleaseVersion>,
        to: &ReleaseVersion,
    ) -> Result<PackRecord> {
        if let Some(record) = self.meta.pack(package, from, to).await? {
            return Ok(record);
        }
        let key = PackKey::new(package, from, to);
        let (from_record, to_record) = self.releases_of(&key).await?;
        // One build per pack at a time here; whoever waited finds it built. Across servers the
        // job's lease keeps builds apart (two that met anyway build the same bytes).
        let _guard = self.publish_lock(&format!("pack:{key}")).await;
        if let Some(record) = self.meta.pack(package, from, to).await? {
            return Ok(record);
        }
        let bytes = self
            .build_stage(&key, from_record.as_ref(), &to_record, Stage::Final)
            .await?;
        let size_bytes = bytes.len() as u64;
        let mut full = None;
        if Self::full_may_answer(&key, size_bytes, &to_record)? {
            let built = Box::pin(self.pack(package, None, to)).await?;
            full = Some(built).filter(|f| f.size_bytes <= size_bytes);
        }
        // From storing the pack until it is recorded, no collection removes it (`gc`).
        let blob_in_use = self.blobs_in_use().await?;
        let record = match full {
            Some(full) => full,
            None => PackRecord {
                digest: self.blobs.put_bytes(&bytes).await?,
                size_bytes,
            },
        };
        self.meta.insert_pack(package, from, to, &record).await?;
        drop(blob_in_use);
        self.packs.forget_fast(&key);
        Ok(record)
    }

    /// Starts the pack jobs of a new release: the diff packs to `to` from up to
    /// [`DIFF_PACKS_AT_PUBLISH`] earlier releases (newest first), then its full pack. Diff packs
    /// go first: devices that already run the package, most of them, ask for one as soon as the
    /// release is out. Once every fast pack is built, precompresses the release's text blobs
    /// (the final packs follow in the background). Failures are logged: a device falls back to
    /// the next source, or a request starts the job again.
    ///
    /// The work counts as under way from this call (not from the first poll of the future), so
    /// that [`Builds::settled`] right after a publish waits for it.
    pub fn build_packs_after_publish(
        self: Arc<Self>,
        package: PackageId,
        to: ReleaseVersion,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.packs.publish_started();
        async move {
            self.packs_after_publish(&package, &to).await;
            self.packs.publish_done();
        }
    }

    async fn packs_after_publish(self: &Arc<Self>, package: &PackageId, to: &ReleaseVersion) {
        let (package, to) = (package.clone(), to.clone());
        match self.meta.releases(&package).await {
            Ok(releases) => {
                let earlier = releases
                    .into_iter()
                    .map(|r| r.version)
                    .filter(|v| *v < to)
                    .take(DIFF_PACKS_AT_PUBLISH);
                for from in earlier {
                    self.start_pack_job(PackKey::new(&package, Some(&from), &to));
                }
            }
            Err(e) => {
                tracing::error!(%package, error = %e, "listing releases for diff packs failed");
            }
        }
        self.start_pack_job(PackKey::new(&package, None, &to));
        self.packs.fast_settled().await;
        match self.precompress(&package, &to).await {
            Ok(n) => tracing::debug!(%package, %to, blobs = n, "precompressed"),
            Err(e) => failed(
                &PackKey::new(&package, None, &to),
                &e,
                "precompressing failed",
            ),
        }
    }
}

/// Logs a failed build: at debug when a release of the pack is gone (a collection removed it
/// meanwhile, which is no fault), else as an error.
fn failed(key: &PackKey, e: &Error, what: &str) {
    if matches!(e, Error::NotFound(_)) {
        tracing::debug!(pack = %key, error = %e, "{what}: a release was collected meanwhile");
    } else {
        tracing::error!(pack = %key, error = %e, "{what}");
    }
}

/// How often a server serving its own fast pack looks for the final one another server builds.
const FOREIGN_JOB_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// How long it waits for that final pack at most.
const FOREIGN_JOB_WAIT: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Blobs a pack build reads at once.
const CONCURRENT_READS: usize = 16;

/// Builds the bytes of a pack at `stage` and checks them with the device's reader.
async fn build(
    blobs: Arc<dyn BlobStore>,
    from: Option<&ReleaseRecord>,
    to: &ReleaseRecord,
    stage: Stage,
) -> Result<Vec<u8>> {
    let to_release = release_of(to)?;
    let from_release = from.map(release_of).transpose()?;
    let plan = plan_diff(
        from_release.as_ref().map(|r| &r.files),
        &to_release.files,
        |_| false,
    );

    // Read what the pack needs: each fetched blob, and each patch base once, several at a
    // time (from a bucket each read is a round trip; one after another, a release of a few
    // hundred files took seconds before its fast pack could start).
    let targets: Vec<(Fetch, Vec<u8>)> = stream::iter(plan.fetch.clone())
        .map(|fetch| {
            let blobs = blobs.clone();
            async move {
                let bytes = read(&*blobs, &fetch.sha256).await?;
                Ok::<_, Error>((fetch, bytes))
            }
        })
        .buffered(CONCURRENT_READS)
        .try_collect()
        .await?;
    let wanted: BTreeSet<Digest> = plan.fetch.iter().filter_map(|f| f.base).collect();
    let bases: BTreeMap<Digest, Vec<u8>> = stream::iter(wanted)
        .map(|base| {
            let blobs = blobs.clone();
            async move { Ok::<_, Error>((base, read(&*blobs, &base).await?)) }
        })
        .buffer_unordered(CONCURRENT_READS)
        .try_collect()
        .await?;
    let index_head = PackIndex {
        format: PACK_FORMAT,
        package: to.package.clone(),
        from: from.map(|f| f.version.clone()),
        to: to.version.clone(),
        from_manifest: from.map(|f| f.manifest_digest),
        to_manifest: to.manifest_digest,
        added: plan.added.keys().cloned().collect(),
        changed: plan.changed.keys().cloned().collect(),
        removed: plan.removed.keys().cloned().collect(),
        blobs: Vec::new(),
    };
    let label = format!(
        "{}@{}..{}",
        to.package,
        from.map(|f| f.version.to_string()).unwrap_or_default(),
        to.version
    );
    let sizes = to_release
        .files
        .values()
        .map(|f| (f.sha256, f.size))
        .collect();
    let (to_manifest, from_manifest) = (index_head.to_manifest, index_head.from_manifest);
    let order = to_release.blob_order();
    let from_blobs = from_release
        .as_ref()
        .map(Release::sorted_blobs)
        .unwrap_or_default();
    blocking(move || {
        let pack = encode(index_head, targets, &bases, stage.level())?;
        let expected = ExpectedPack {
            to_manifest,
            from_manifest,
            blobs: &sizes,
            order: &order,
            from_blobs: &from_blobs,
        };
        check(&pack, &expected, &plan.fetch, &bases).inspect_err(|e| {
            tracing::error!(pack = %label, error = %e, "a built pack fails the device's reader; not stored");
        })?;
        Ok(pack)
    })
    .await
}

async fn read(blobs: &dyn BlobStore, digest: &Digest) -> Result<Vec<u8>> {
    blobs
        .read_all(digest)
        .await?
        .ok_or_else(|| Error::Internal(format!("blob {digest} of a release is missing")))
}

/// Encodes blobs into a pack: patches where they beat whole compression, the rest solid.
fn encode(
    mut index: PackIndex,
    targets: Vec<(Fetch, Vec<u8>)>,
    bases: &BTreeMap<Digest, Vec<u8>>,
    level: i32,
) -> Result<Vec<u8>> {
    let mut solid = Vec::new();
    let mut patched = Vec::new();
    let mut patches = BTreeMap::new();
    for (fetch, target) in targets {
        let patch = match fetch
            .base
            .and_then(|b| bases.get(&b).map(|bytes| (b, bytes)))
        {
            Some((base, base_bytes)) => {
                let p = delta::patch(base_bytes, &target, level)?;
                // A patch that saves little may lose to whole compression among the other files.
                let worth =
                    p.len() * 2 <= target.len() || p.len() < delta::compress(&target, level)?.len();
                worth.then_some((base, p))
            }
            None => None,
        };
        match patch {
            Some((base, p)) => {
                patched.push(PackBlob {
                    sha256: fetch.sha256,
                    size: fetch.size,
                    encoding: Encoding::Patch { base },
                });
                patches.insert(fetch.sha256, p);
            }
            None => {
                let offset = solid.len() as u64;
                solid.extend_from_slice(&target);
                index.blobs.push(PackBlob {
                    sha256: fetch.sha256,
                    size: fetch.size,
                    encoding: Encoding::Solid { offset },
                });
            }
        }
    }
    index.blobs.extend(patched);
    let data = if solid.is_empty() {
        None
    } else {
        Some(delta::compress(&solid, level)?)
    };
    write_pack(&index, data.as_deref(), &patches).map_err(|e| pack_error("writing", &e))
}

/// Reads `pack` back as a device does (the device's reader and decoder, with the old release's
/// blobs as patch bases) and checks that it brings every blob of `fetch`, each with the sha256
/// the target release lists, and that its compact form (the same frames) opens too.
fn check(
    pack: &[u8],
    expected: &ExpectedPack<'_>,
    fetch: &[Fetch],
    bases: &BTreeMap<Digest, Vec<u8>>,
) -> Result<()> {
    let mut reader =
        PackReader::open(pack, expected).map_err(|e| pack_error("reading back the", &e))?;
    let mut delivered = BTreeSet::new();
    for blob in reader.blobs(|_| true, |base| bases.get(base).cloned()) {
        let (sha256, bytes) = blob.map_err(|e| pack_error("reading back the", &e))?;
        let actual = Digest::of(&bytes);
        if actual != sha256 {
            return Err(Error::Internal(format!(
                "pack rebuilds blob {sha256} as {actual}"
            )));
        }
        delivered.insert(sha256);
    }
    if let Some(missing) = fetch.iter().find(|f| !delivered.contains(&f.sha256)) {
        return Err(Error::Internal(format!(
            "pack lacks blob {}",
            missing.sha256
        )));
    }
    // The same reader, its container already checked, carries the frames over.
    let compact = reader
        .to_compact(pack, expected)
        .map_err(|e| pack_error("carrying over the", &e))?;
    PackReader::open(&compact, expected).map_err(|e| pack_error("reading back the compact", &e))?;
    Ok(())
}

fn pack_error(what: &str, e: &manifests::PackError) -> Error {
    Error::Internal(format!("{what} pack: {e}"))
}

#[cfg(test)]
mod tests;
