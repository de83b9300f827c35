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

use manifests::{Digest, PackageId, TrustedKeys, paths};

use crate::api::{Config, PackageStatus, Status, UpdateOutcome};
use crate::clock::{Clock, SystemClock};
use crate::device::{Change, Device, Installed, Source, State};
use crate::error::{Error, Result};
use crate::fetch::Fetcher;
use crate::install::{self, Report};
use crate::net::Net;
use crate::plan::{Conditions, Network, Update, Wait};
use crate::releases::Releases;
use crate::resolve::{Resolved, Resolver, Served, Table};
use crate::store::{Recovery, Store};

mod events;
mod index;
mod preset;
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
    quarantined: Vec<PackageId>,
    core: Mutex<Device>,
    writer: Mutex<()>,
    claims: Mutex<BTreeMap<u64, BTreeSet<Digest>>>,
    next_claim: AtomicU64,
    /// The most bytes the store may hold; 0 for no limit.
    quota_bytes: AtomicU64,
}

/// An update's verified release, ready to plan and install: its blobs claimed (so none of them
/// can be collected), and the ones the device lacks.
struct Prepared<'a> {
    blobs: BTreeMap<Digest, u64>,
    missing: BTreeMap<Digest, u64>,
    manifest_bytes: u64,
    served: Arc<Served>,
    _claim: Claim<'a>,
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
        let trusted = TrustedKeys::new(config.trusted_keys.clone(), config.threshold)?;
        let (store, state, recovery) = Store::open(&config.dir)?;
        let net = Net {
            base: config.server.trim_end_matches('/').to_owned(),
            fetcher,
            retries: 2,
            backoff: Duration::from_millis(200),
        };
        let mut client = Client {
            resolver: Resolver::new(config.custom_scheme.as_deref()),
            core: Mutex::new(Device::new(config.device(), state)),
            config,
            store,
            net,
            releases: Releases::new(trusted),
            clock,
            recovery,
            quarantined: Vec::new(),
            writer: Mutex::new(()),
            claims: Mutex::new(BTreeMap::new()),
            next_claim: AtomicU64::new(0),
            quota_bytes: AtomicU64::new(0),
        };
        client.quarantined = client.verify_stored()?;
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

    /// The file answering `url`, or `None` (go to the network). Never blocks.
    pub fn resolve(&self, url: &str) -> Option<Resolved> {
        self.resolver.resolve(url)
    }

    /// Checks for updates, plans under `conditions` (network, battery, space, the publisher's
    /// priority and prefetch policy, how the user uses each package, the quota) and installs
    /// what the plan says to install now; the rest waits, with the reason. Offline, it decides
    /// from the stored index and installs only what needs no download. Blocks (network, disk).
    ///
    /// # Errors
    /// The check's errors, and the first install failure (updates installed before it stay).
    pub fn update(&self, conditions: &Conditions) -> Result<UpdateOutcome> {
        let online = conditions.network != Network::Offline;
        let outcome = match online {
            true => self.check()?,
            false if self.stored_index_path().is_file() => self.check_offline()?,
            false => return Ok(UpdateOutcome::default()),
        };
        let mut done = UpdateOutcome::default();
        let mut candidates = Vec::new();
        let mut releases = BTreeMap::new();
        for update in outcome.updates {
            let (release, bytes) = match self.fetch_release(&update, online) {
                Ok(fetched) => fetched,
                Err(_) if !online => {
                    done.waiting.push((update.package, Wait::Offline));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let prepared = self.prepare(&update, release, bytes);
            let missing = prepared.missing.values().sum();
            let size = update.to.size_bytes;
            releases.insert(update.package.clone(), prepared);
            candidates.push(lock(&self.core).candidate(update, missing, size));
        }
        let plan = self
            .snapshot()
            .plan(candidates, conditions, self.clock.now());
        self.remember_first_use(&plan.later, &releases)?;
        done.waiting.extend(plan.later);
        for candidate in plan.now {
            let update = candidate.update;
            let Some(prepared) = releases.remove(&update.package) else {
                continue;
            };
            let Some(evictions) = self.room_for(&update.package, &prepared.blobs) else {
                done.waiting.push((update.package, Wait::Quota));
                continue;
            };
            let mut report = self.install_release(&update, &prepared)?;
            report.downloaded_bytes += prepared.manifest_bytes;
            drop(prepared);
            self.evict(&evictions)?;
            done.installed.push((update, report));
        }
        Ok(done)
    }

    /// Keeps the routes of packages waiting for their first use, so that opening one counts.
    fn remember_first_use(
        &self,
        waiting: &[(PackageId, Wait)],
        releases: &BTreeMap<PackageId, Prepared<'_>>,
    ) -> Result<()> {
        let known: Vec<_> = waiting
            .iter()
            .filter(|(_, wait)| *wait == Wait::FirstUse)
            .filter_map(|(package, _)| releases.get(package))
            .map(|Prepared { served, .. }| {
                let (package, version) = (served.package().clone(), served.version().clone());
                (package, version, served.route_prefixes())
            })
            .collect();
        if known.is_empty() {
            return Ok(());
        }
        let writer = lock(&self.writer);
        let change = lock(&self.core).remember_routes(&known);
        self.commit(&writer, change).map(drop)
    }

    /// Downloads, verifies and activates one update, as [`Client::update`] does for each update
    /// its plan installs now; the release that was active keeps serving until the switch and
    /// becomes the rollback target. Blocks (network, disk).
    ///
    /// # Errors
    /// Network, verification and storage errors; on any of them nothing changes.
    pub fn install(&self, update: &Update) -> Result<Report> {
        let (release, manifest_bytes) = self.fetch_release(update, true)?;
        let prepared = self.prepare(update, release, manifest_bytes);
        let mut report = self.install_release(update, &prepared)?;
        report.downloaded_bytes += manifest_bytes;
        Ok(report)
    }

    /// The verified release `update` moves to, and the manifest bytes downloaded for it: read
    /// from the store (or the cache) if there, else fetched when `online`, and kept.
    fn fetch_release(&self, update: &Update, online: bool) -> Result<(Arc<Served>, u64)> {
        let (digest, package, version) = (&update.to.manifest, &update.package, &update.to.version);
        if let Some(release) = self.releases.cached(digest) {
            return Ok((release, 0));
        }
        if let Ok(bytes) = self.store.read_manifest(digest) {
            match self.releases.verify(&bytes, digest, package, version) {
                Ok(release) => return Ok((release, 0)),
                Err(_) => self.store.remove_manifest(digest)?,
            }
        }
        if !online {
            return Err(Error::Network(format!(
                "manifest {digest} needs the network"
            )));
        }
        let bytes = self
            .net
            .get(&paths::manifest_path(digest), MAX_MANIFEST_BYTES)?;
        let release = self.releases.verify(&bytes, digest, package, version)?;
        self.store.write_manifest(digest, &bytes)?;
        Ok((release, bytes.len() as u64))
    }

    /// Claims `blobs` and a release's manifest until the claim is dropped.
    fn claim(&self, blobs: &BTreeMap<Digest, u64>, manifest: Digest) -> Claim<'_> {
        let id = self.next_claim.fetch_add(1, Ordering::Relaxed);
        let mut needed: BTreeSet<_> = blobs.keys().copied().collect();
        needed.insert(manifest);
        lock(&self.claims).insert(id, needed);
        Claim(self, id)
    }

    /// Claims `served`'s blobs and manifest, then looks once for the blobs the device lacks.
    fn prepare(&self, update: &Update, served: Arc<Served>, manifest_bytes: u64) -> Prepared<'_> {
        let blobs = served.blobs();
        let claim = self.claim(&blobs, update.to.manifest);
        let mut missing = blobs.clone();
        missing.retain(|digest, _| !self.store.has_blob(digest));
        Prepared {
            blobs,
            missing,
            manifest_bytes,
            served,
            _claim: claim,
        }
    }

    fn install_release(&self, update: &Update, prepared: &Prepared<'_>) -> Result<Report> {
        let active = lock(&self.core)
            .state()
            .packages
            .get(&update.package)
            .and_then(|p| p.active.clone());
        let wanted = install::Wanted {
            package: &update.package,
            version: &update.to.version,
            manifest: update.to.manifest,
            blobs: &prepared.blobs,
            missing: &prepared.missing,
        };
        let report = install::install(&self.store, &self.net, &wanted, active.as_ref())?;
        let installed = Installed {
            version: update.to.version.clone(),
            manifest: update.to.manifest,
        };
        let writer = lock(&self.writer);
        let change = lock(&self.core).activate(&update.package, installed, Source::Download);
        self.commit(&writer, change)?;
        Ok(report)
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
            quarantined: self.quarantined.clone(),
        }
    }

    /// The store (for tests and tools).
    pub fn store(&self) -> &Store {
        &self.store
    }
}
