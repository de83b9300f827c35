//! The client: the thin IO shell around the device core.
//!
//! [`Device`] decides; this file fetches, stores and serves. Three locks, never held across the
//! network, and only `writer` across the disk:
//! - `core` guards the [`Device`]; held only while a core method runs, so `resolve` (no lock at
//!   all), `report_open` and `status` never wait on an install;
//! - `writer` serialises state changes: decide on the core, write the state durably, commit;
//! - `claims` guards the blobs and manifests installs in flight need, so garbage collection never
//!   deletes what an install is about to activate.
//!
//! Every method that touches the network or the disk blocks and is meant for a background thread;
//! [`Client::resolve`] never blocks and may be called from any thread, any number at once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use manifests::{Digest, PackageId, TrustedKeys};

use crate::api::{Config, PackageStatus, Status};
use crate::clock::{Clock, SystemClock};
use crate::device::{Change, Device, State};
use crate::error::Result;
use crate::fetch::Fetcher;
use crate::net::Net;
use crate::releases::Releases;
use crate::resolve::{Resolved, Resolver, Served, Table};
use crate::store::{Recovery, Store};

mod events;
mod index;
mod keys;
mod preset;
mod update;
mod upkeep;

/// Largest index accepted.
const MAX_INDEX_BYTES: u64 = 4 * 1024 * 1024;
/// Largest signed manifest accepted.
const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;

/// The on-device client.
#[derive(Debug)]
pub struct Client {
    config: Config,
    store: Store,
    net: Net,
    releases: Releases,
    resolver: Resolver,
    clock: Arc<dyn Clock>,
    recovery: Recovery,
    quarantined: Mutex<Vec<PackageId>>,
    /// The root keys the app ships.
    pinned: TrustedKeys,
    /// The key list in force and the index keys.
    keys: Mutex<keys::KeyState>,
    core: Mutex<Device>,
    writer: Mutex<()>,
    claims: Mutex<BTreeMap<u64, BTreeSet<Digest>>>,
    next_claim: AtomicU64,
    /// The most bytes the store may hold; 0 for no limit.
    quota_bytes: AtomicU64,
}

/// Locks a mutex whose data a panic cannot leave half-changed (every change is a swap of a whole
/// value), so a poisoned lock is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Blobs and a manifest an install in flight needs; released when dropped.
struct Claim<'a>(&'a Client, u64);

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        lock(&self.0.claims).remove(&self.1);
    }
}

impl Client {
    /// Opens the store in `config.dir` and starts serving what is installed. Blocks (disk).
    ///
    /// # Errors
    /// A bad configuration or a store that cannot be opened.
    pub fn open(config: Config, fetcher: Arc<dyn Fetcher>) -> Result<Client> {
        Client::open_with_clock(config, fetcher, Arc::new(SystemClock))
    }

    /// [`Client::open`] with the clock the client trusts no further than the device core allows.
    ///
    /// # Errors
    /// A bad configuration or a store that cannot be opened.
    pub fn open_with_clock(
        config: Config,
        fetcher: Arc<dyn Fetcher>,
        clock: Arc<dyn Clock>,
    ) -> Result<Client> {
        Client::open_on(config, fetcher, clock, durable_fs::RealFs::shared())
    }

    /// [`Client::open_with_clock`] with the store's durable file operations going through `fs`
    /// (a recorder, in the crash-point tests).
    ///
    /// # Errors
    /// A bad configuration or a store that cannot be opened.
    pub fn open_on(
        config: Config,
        fetcher: Arc<dyn Fetcher>,
        clock: Arc<dyn Clock>,
        fs: Arc<dyn durable_fs::Fs>,
    ) -> Result<Client> {
        let pinned = TrustedKeys::new(config.trusted_keys.clone(), config.threshold)?;
        let (store, state, recovery) = Store::open_on(&config.dir, fs)?;
        let (key_state, release_keys) = keys::load(store.root(), &pinned, &config.app)?;
        let net = Net {
            base: config.server.trim_end_matches('/').to_owned(),
            fetcher,
            retries: 2,
            backoff: Duration::from_millis(200),
        };
        let client = Client {
            resolver: Resolver::new(config.custom_scheme.as_deref()),
            core: Mutex::new(Device::new(config.device(), state)),
            config,
            store,
            net,
            releases: Releases::new(release_keys),
            pinned,
            keys: Mutex::new(key_state),
            clock,
            recovery,
            quarantined: Mutex::new(Vec::new()),
            writer: Mutex::new(()),
            claims: Mutex::new(BTreeMap::new()),
            next_claim: AtomicU64::new(0),
            quota_bytes: AtomicU64::new(0),
        };
        let quarantined = client.verify_stored()?;
        *lock(&client.quarantined) = quarantined;
        Ok(client)
    }

    /// Verifies every kept release once; a package whose stored manifest fails is quarantined
    /// (it serves nothing until fetched again) while every other package serves on.
    fn verify_stored(&self) -> Result<Vec<PackageId>> {
        let device = self.snapshot();
        let mut broken = BTreeSet::new();
        let mut packages = Vec::new();
        for (package, p) in &device.state().packages {
            for installed in p.active.iter().chain(p.previous.iter()) {
                if self
                    .releases
                    .stored(&self.store, package, installed)
                    .is_err()
                {
                    self.store.remove_manifest(&installed.manifest)?;
                    broken.insert(installed.manifest);
                    packages.push(package.clone());
                }
            }
        }
        let writer = lock(&self.writer);
        match broken.is_empty() {
            true => self.publish_table(device.state()),
            false => self.commit(&writer, device.quarantine(&broken)).map(drop)?,
        }
        packages.dedup();
        Ok(packages)
    }

    fn snapshot(&self) -> Device {
        lock(&self.core).clone()
    }

    /// Writes `change` durably, serves it, then commits it to the core. The caller holds `writer`
    /// from the decision to here, so the state cannot have moved in between.
    fn commit(&self, _writer: &MutexGuard<'_, ()>, change: Change) -> Result<State> {
        let current = lock(&self.core).state().clone();
        let saved = match change.state() == &current {
            true => current,
            false => self.store.save(change.state())?,
        };
        if change.changes_serving() {
            self.publish_table(&saved);
        }
        lock(&self.core).commit(change, saved.clone());
        Ok(saved)
    }

    /// Swaps in a resolver table of `state`'s active releases (all verified at open or install).
    fn publish_table(&self, state: &State) {
        let active = state.packages.iter().filter_map(|(package, p)| {
            let installed = p.active.as_ref()?;
            self.releases.stored(&self.store, package, installed).ok()
        });
        let active: Vec<Arc<Served>> = active.collect();
        let evicted = state.packages.iter().filter_map(|(package, p)| {
            let e = p.evicted.as_ref().filter(|_| p.active.is_none())?;
            Some((package, &e.version, e.routes.as_slice()))
        });
        let blobs = self.store.root().join("blobs");
        let table = Table::new(active, &blobs).with_evicted(evicted);
        self.resolver.publish(table);
    }

    /// Claims `blobs` and a release's manifest until the claim is dropped, then looks once for
    /// the blobs the device lacks: claimed, none of the others can be collected meanwhile.
    fn claim(
        &self,
        blobs: &BTreeMap<Digest, u64>,
        manifest: Digest,
    ) -> (Claim<'_>, BTreeMap<Digest, u64>) {
        let id = self.next_claim.fetch_add(1, Ordering::Relaxed);
        let mut needed: BTreeSet<_> = blobs.keys().copied().collect();
        needed.insert(manifest);
        lock(&self.claims).insert(id, needed);
        let mut missing = blobs.clone();
        self.store.retain_missing(&mut missing);
        (Claim(self, id), missing)
    }

    /// The file answering `url`, or `None` (go to the network). Never blocks.
    pub fn resolve(&self, url: &str) -> Option<Resolved> {
        self.resolver.resolve(url)
    }

    /// The page of `package` works: the active release is no longer pending. Blocks (disk).
    ///
    /// # Errors
    /// Storage errors; [`Error::NotFound`] when the package is not installed.
    pub fn mark_ready(&self, package: &PackageId) -> Result<()> {
        {
            let writer = lock(&self.writer);
            let change = lock(&self.core).mark_ready(package)?;
            let Some(change) = change else { return Ok(()) };
            self.commit(&writer, change)?;
        }
        // Its rollback target was protected while it was pending; now it may give way.
        self.enforce_quota().map(drop)
    }

    /// The page of `package` failed: go back to the previous release, and never install the
    /// failed one again. Blocks (disk).
    ///
    /// # Errors
    /// [`Error::NotFound`] without an active release; storage errors.
    pub fn report_failure(&self, package: &PackageId) -> Result<()> {
        self.roll_back(package, true)
    }

    /// Goes back to the previous release of `package` on the host's request. Blocks (disk).
    ///
    /// # Errors
    /// [`Error::NotFound`] without a previous release; storage errors.
    pub fn rollback(&self, package: &PackageId) -> Result<()> {
        self.roll_back(package, false)
    }

    fn roll_back(&self, package: &PackageId, failed: bool) -> Result<()> {
        let writer = lock(&self.writer);
        let change = lock(&self.core).roll_back(package, failed)?;
        self.commit(&writer, change).map(drop)
    }

    /// Call once per app launch: a release still pending after `max_pending_launches` launches
    /// is rolled back as failed. Returns the packages rolled back. Blocks (disk).
    ///
    /// # Errors
    /// Storage errors.
    pub fn on_launch(&self) -> Result<Vec<PackageId>> {
        let writer = lock(&self.writer);
        let (change, expired) = lock(&self.core).launch();
        self.commit(&writer, change)?;
        Ok(expired)
    }

    /// What the client holds, for a debug screen.
    pub fn status(&self) -> Status {
        let core = lock(&self.core);
        let packages = core
            .state()
            .packages
            .iter()
            .map(|(package, p)| PackageStatus {
                package: package.clone(),
                active: p.active.as_ref().map(|a| a.version.clone()),
                previous: p.previous.as_ref().map(|a| a.version.clone()),
                pending: p.pending,
            });
        Status {
            packages: packages.collect(),
            sequence: core.sequence(),
            files: self.resolver.file_count(),
            recovery: self.recovery,
            queued_events: core.queued_events(),
            quarantined: lock(&self.quarantined).clone(),
        }
    }

    /// The store (for tests and tools).
    pub fn store(&self) -> &Store {
        &self.store
    }
}
