//! The pack builds under way and the fast packs that answer until the final ones are stored.
//!
//! A build job brings one pack to a device-ready state in two stages: a fast pack (zstd level
//! [`super::delta::FAST_LEVEL`], seconds for a large release), kept in memory and served at once,
//! then the final pack (level [`super::delta::LEVEL`]), stored in the blob and metadata stores,
//! which replaces it. Jobs run in tasks of their own, so a request that gave up never throws a
//! build away. No final build starts while a fast build is queued or running, so the packs of a
//! new release become servable before the server spends minutes on smaller ones.
//!
//! Jobs started by requests are bounded ([`Builds::new`]'s `max_requested`): an anonymous client
//! asking for every pair of releases gets `503` once that many wait, not a queue of level-19
//! builds. Jobs started by a publish are not counted against it (a publish needs a token).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use manifests::{Digest, PackageId, ReleaseVersion};
use tokio::sync::{Semaphore, watch};

/// One pack: of `package`, from `from` (none: the full pack) to `to`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PackKey {
    /// The package.
    pub package: PackageId,
    /// The release a diff pack starts from; none for the full pack.
    pub from: Option<ReleaseVersion>,
    /// The release the pack brings.
    pub to: ReleaseVersion,
}

impl PackKey {
    /// The pack of `package` from `from` to `to`.
    pub fn new(package: &PackageId, from: Option<&ReleaseVersion>, to: &ReleaseVersion) -> Self {
        PackKey {
            package: package.clone(),
            from: from.cloned(),
            to: to.clone(),
        }
    }

    /// The full pack of the same release.
    pub fn full(&self) -> PackKey {
        PackKey::new(&self.package, None, &self.to)
    }
}

impl std::fmt::Display for PackKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.from {
            Some(from) => write!(f, "{}@{from}..{}", self.package, self.to),
            None => write!(f, "{}@{}", self.package, self.to),
        }
    }
}

/// A fast pack, read back with the device's reader like every pack, held in memory until the
/// final pack of the same name is stored.
#[derive(Debug)]
pub struct FastPack {
    /// The sha256 of `bytes`: the response's ETag.
    pub digest: Digest,
    /// The pack.
    pub bytes: Bytes,
}

/// Whether a job could be started or joined.
#[derive(Debug)]
pub(crate) enum Joined {
    /// A job for the pack runs (it was started now, or before); `changed()` fires when a stage
    /// of it is servable.
    Running {
        ready: watch::Receiver<u64>,
        started: bool,
    },
    /// Too many jobs started by requests wait already.
    Full,
}

#[derive(Debug)]
struct Job {
    ready: watch::Sender<u64>,
    requested: bool,
}

#[derive(Debug, Default)]
struct Jobs {
    by_key: HashMap<PackKey, Job>,
    requested: usize,
}

/// Counts the jobs and fast builds in progress, for the final builds and the tests to wait on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    jobs: usize,
    fast_pending: usize,
    /// Publishes whose packs are being started or whose blobs precompressed.
    after_publish: usize,
}

/// The fast packs held, within a budget of bytes: past it the packs held longest are let go
/// (`evicted`), and a request for one builds it again.
#[derive(Debug, Default)]
struct Held {
    packs: HashMap<PackKey, (u64, Arc<FastPack>)>,
    bytes: u64,
    next: u64,
    evicted: std::collections::HashSet<PackKey>,
}

impl Held {
    fn remove(&mut self, key: &PackKey) {
        if let Some((_, pack)) = self.packs.remove(key) {
            self.bytes -= pack.bytes.len() as u64;
        }
        self.evicted.remove(key);
    }
}

/// The pack builds of one server process.
#[derive(Debug)]
pub struct Builds {
    fast: Mutex<Held>,
    /// Bytes of fast packs held at most (the newest is held whatever its size).
    fast_budget: u64,
    jobs: Mutex<Jobs>,
    counts: watch::Sender<Counts>,
    /// Permits for fast builds at once (one per core).
    pub(crate) fast_builds: Semaphore,
    /// Permits for final builds at once (one per core).
    pub(crate) final_builds: Semaphore,
    threads: usize,
    max_requested: usize,
    /// The compact packs made from zip packs.
    pub(crate) compact: super::compact::CompactPacks,
}

impl Builds {
    /// Builds with `threads` fast and `threads` final builds at once (a final build starts only
    /// when no fast build waits), at most `max_requested` jobs started by requests, and at most
    /// `fast_budget` bytes of fast packs held.
    pub fn new(threads: usize, max_requested: usize, fast_budget: u64) -> Builds {
        Builds {
            fast: Mutex::default(),
            fast_budget,
            jobs: Mutex::default(),
            counts: watch::Sender::new(Counts::default()),
            fast_builds: Semaphore::new(threads.max(1)),
            final_builds: Semaphore::new(threads.max(1)),
            threads: threads.max(1),
            max_requested,
            compact: super::compact::CompactPacks::new(super::compact::COMPACT_BUDGET_BYTES),
        }
    }

    /// The fast pack of `key`, if one is held.
    pub fn fast(&self, key: &PackKey) -> Option<Arc<FastPack>> {
        lock(&self.fast)
            .packs
            .get(key)
            .map(|(_, pack)| pack.clone())
    }

    /// Holds the fast pack of `key`; lets go of the packs held longest while the bytes held
    /// exceed the budget.
    pub(crate) fn put_fast(&self, key: PackKey, pack: Arc<FastPack>) {
        let mut held = lock(&self.fast);
        held.remove(&key);
        held.next += 1;
        held.bytes += pack.bytes.len() as u64;
        let at = held.next;
        held.packs.insert(key.clone(), (at, pack));
        while held.bytes > self.fast_budget && held.packs.len() > 1 {
            let Some(oldest) = held
                .packs
                .iter()
                .filter(|(k, _)| **k != key)
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            held.remove(&oldest);
            tracing::debug!(pack = %oldest, "fast pack let go: over the memory budget");
            held.evicted.insert(oldest);
        }
    }

    /// Whether the fast pack of `key` was let go for the budget before its final pack was
    /// stored (a request builds it again).
    pub(crate) fn evicted(&self, key: &PackKey) -> bool {
        lock(&self.fast).evicted.contains(key)
    }

    /// The bytes of fast packs held.
    pub fn fast_bytes(&self) -> u64 {
        lock(&self.fast).bytes
    }

    /// How many fast packs are held.
    pub fn fast_held(&self) -> usize {
        lock(&self.fast).packs.len()
    }

    /// Drops the fast pack of `key`: its final pack is stored.
    pub(crate) fn forget_fast(&self, key: &PackKey) {
        lock(&self.fast).remove(key);
    }

    /// Drops the fast packs to or from `releases`: they were collected.
    pub(crate) fn forget_releases(
        &self,
        releases: &std::collections::BTreeSet<(PackageId, ReleaseVersion)>,
    ) {
        let gone = |package: &PackageId, version: &ReleaseVersion| {
            releases.contains(&(package.clone(), version.clone()))
        };
        let mut held = lock(&self.fast);
        let doomed: Vec<PackKey> = held
            .packs
            .keys()
            .chain(held.evicted.iter())
            .filter(|key| {
                gone(&key.package, &key.to)
                    || key.from.as_ref().is_some_and(|f| gone(&key.package, f))
            })
            .cloned()
            .collect();
        for key in &doomed {
            held.remove(key);
        }
    }

    /// Joins the job of `key`, or starts one (the caller spawns it) unless `requested` and the
    /// bound of request-started jobs is reached. A started job counts as a pending fast build
    /// until [`Builds::fast_done`].
    pub(crate) fn join_or_start(&self, key: &PackKey, requested: bool) -> Joined {
        let mut jobs = lock(&self.jobs);
        if let Some(job) = jobs.by_key.get(key) {
            return Joined::Running {
                ready: job.ready.subscribe(),
                started: false,
            };
        }
        if requested && jobs.requested >= self.max_requested {
            return Joined::Full;
        }
        let (ready, receiver) = watch::channel(0);
        jobs.by_key.insert(key.clone(), Job { ready, requested });
        jobs.requested += usize::from(requested);
        self.counts.send_modify(|c| {
            c.jobs += 1;
            c.fast_pending += 1;
        });
        Joined::Running {
            ready: receiver,
            started: true,
        }
    }

    /// Tells whoever waits on `key` that a stage of it is servable.
    pub(crate) fn notify(&self, key: &PackKey) {
        if let Some(job) = lock(&self.jobs).by_key.get(key) {
            job.ready.send_modify(|n| *n += 1);
        }
    }

    /// The fast stage of a started job is over (built or failed).
    pub(crate) fn fast_done(&self) {
        self.counts
            .send_modify(|c| c.fast_pending = c.fast_pending.saturating_sub(1));
    }

    /// The job of `key` is over.
    pub(crate) fn finish(&self, key: &PackKey) {
        let mut jobs = lock(&self.jobs);
        if let Some(job) = jobs.by_key.remove(key) {
            jobs.requested -= usize::from(job.requested);
            job.ready.send_modify(|n| *n += 1);
            self.counts
                .send_modify(|c| c.jobs = c.jobs.saturating_sub(1));
        }
    }

    /// Waits until no fast build is queued or running.
    pub(crate) async fn fast_settled(&self) {
        let mut counts = self.counts.subscribe();
        // The sender lives as long as `self`, so this ends only when the condition holds.
        let _ = counts.wait_for(|c| c.fast_pending == 0).await;
    }

    /// Waits until no pack job is queued or running, and no publish's packs are being started.
    pub async fn settled(&self) {
        let mut counts = self.counts.subscribe();
        let _ = counts
            .wait_for(|c| c.jobs == 0 && c.after_publish == 0)
            .await;
    }

    /// A publish's packs are about to be started.
    pub(crate) fn publish_started(&self) {
        self.counts.send_modify(|c| c.after_publish += 1);
    }

    /// A publish's packs are started and its blobs precompressed.
    pub(crate) fn publish_done(&self) {
        self.counts
            .send_modify(|c| c.after_publish = c.after_publish.saturating_sub(1));
    }

    /// Jobs in progress (queued or running).
    pub fn jobs(&self) -> usize {
        self.counts.borrow().jobs
    }

    /// Holds every final build permit: no final build starts until the permit is dropped (fast
    /// builds go on). For tests and for operators who need the cores for a while.
    ///
    /// # Errors
    /// Never in practice: the semaphore is never closed.
    pub async fn hold_final_builds(
        &self,
    ) -> Result<tokio::sync::SemaphorePermit<'_>, tokio::sync::AcquireError> {
        self.final_builds
            .acquire_many(u32::try_from(self.threads).unwrap_or(u32::MAX))
            .await
    }
}

#[cfg(test)]
mod tests;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
