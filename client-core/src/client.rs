//! The client: what a host app calls.
//!
//! Every method that touches the network or the disk blocks and is meant for a background thread;
//! [`Client::resolve`] never blocks and may be called from any thread, any number at once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use manifests::{
    AppId, Channel, Digest, Event, EventBatch, EventKind, HostVersion, IndexScope, PackageId,
    PublicKey, Reason, Release, ReleaseRef, ReleaseVersion, Timestamp, TrustedKeys, select_all,
    verify_index, verify_release,
};

use crate::error::{Error, Result};
use crate::fetch::Fetcher;
use crate::install::{self, Method};
use crate::net::Net;
use crate::plan::{self, Candidate, Conditions, Network, Wait};
use crate::quota::{self, Eviction, Holding};
use crate::resolve::{Resolved, Resolver, Table};
use crate::store::{Evicted, Installed, PackageState, Recovery, State, Store};

/// Largest index accepted.
const MAX_INDEX_BYTES: u64 = 4 * 1024 * 1024;
/// Most events kept while the network is away.
const MAX_QUEUED_EVENTS: usize = 1_000;

/// How a client is set up.
#[derive(Clone, Debug)]
pub struct Config {
    /// The store's directory (app-private storage).
    pub dir: PathBuf,
    /// The server's base URL, such as `https://updates.example.com`.
    pub server: String,
    /// The host app.
    pub app: AppId,
    /// The channel the device follows.
    pub channel: Channel,
    /// A stable, random id of this installation (rollout buckets).
    pub device_id: String,
    /// The host app's version (targeting).
    pub host_version: HostVersion,
    /// The keys the app ships, and how many must sign.
    pub trusted_keys: Vec<PublicKey>,
    /// Distinct trusted keys required per signature.
    pub threshold: usize,
    /// A custom URL scheme `resolve` also accepts (iOS).
    pub custom_scheme: Option<String>,
    /// Launches a new release may take without `mark_ready` before it is rolled back.
    pub max_pending_launches: u32,
    /// The lowest index sequence ever acceptable, shipped with the app: after a state reset the
    /// device still refuses indexes older than the app itself.
    pub sequence_floor: u64,
}

/// A release the device should move to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    /// The package.
    pub package: PackageId,
    /// The release the device runs now, if any.
    pub from: Option<ReleaseVersion>,
    /// The release it should run.
    pub to: ReleaseRef,
    /// Why it gets that release.
    pub reason: Reason,
    /// The server's fetch priority for the package (higher first).
    pub priority: u8,
}

/// What a check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckOutcome {
    /// The sequence of the index in force.
    pub sequence: u64,
    /// False when the server answered `304 Not Modified`.
    pub changed: bool,
    /// Packages whose selected release differs from the active one.
    pub updates: Vec<Update>,
}

/// What [`Client::update_with`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Planned {
    /// Updates installed, with how their bytes came.
    pub installed: Vec<(Update, Method)>,
    /// Updates left for later, and why.
    pub later: Vec<(PackageId, Wait)>,
}

/// One package as the host's debug screen shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageStatus {
    /// The package.
    pub package: PackageId,
    /// The release served.
    pub active: Option<ReleaseVersion>,
    /// The release kept for rollback.
    pub previous: Option<ReleaseVersion>,
    /// Whether the active release awaits `mark_ready`.
    pub pending: bool,
}

/// The client's state for a debug screen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// Per package.
    pub packages: Vec<PackageStatus>,
    /// The highest index sequence accepted.
    pub sequence: u64,
    /// Files the resolver answers for.
    pub files: usize,
    /// How the state file was found when the store was opened.
    pub recovery: Recovery,
    /// Events waiting to be sent.
    pub queued_events: usize,
}

#[derive(Debug)]
struct Inner {
    state: State,
    /// Page-open counters since the last flush: (package, version) → (opens, offline, under 1 s).
    opens: BTreeMap<(PackageId, ReleaseVersion), (u64, u64, u64)>,
    /// Events waiting to be sent.
    events: Vec<Event>,
}

/// The on-device client.
#[derive(Debug)]
pub struct Client {
    config: Config,
    trusted: TrustedKeys,
    store: Store,
    net: Net,
    resolver: Resolver,
    recovery: Recovery,
    inner: Mutex<Inner>,
    /// The most bytes the store may hold; 0 for no limit.
    quota_bytes: AtomicU64,
}

impl Client {
    /// Opens the store in `config.dir` and starts serving what is installed. Blocks (disk).
    ///
    /// # Errors
    /// A bad configuration or a store that cannot be opened.
    pub fn open(config: Config, fetcher: Arc<dyn Fetcher>) -> Result<Client> {
        let trusted = TrustedKeys::new(config.trusted_keys.clone(), config.threshold)?;
        let (store, state, recovery) = Store::open(&config.dir)?;
        let net = Net {
            base: config.server.trim_end_matches('/').to_owned(),
            fetcher,
            retries: 2,
            backoff: Duration::from_millis(200),
        };
        let client = Client {
            resolver: Resolver::new(config.custom_scheme.as_deref()),
            config,
            trusted,
            store,
            net,
            recovery,
            quota_bytes: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                state,
                opens: BTreeMap::new(),
                events: Vec::new(),
            }),
        };
        let state = client.lock().state.clone();
        client.publish_table(&state)?;
        Ok(client)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn scope_key(&self) -> String {
        format!("{}/{}", self.config.app, self.config.channel)
    }

    /// The file answering `url`, or `None` (go to the network). Never blocks.
    pub fn resolve(&self, url: &str) -> Option<Resolved> {
        self.resolver.resolve(url)
    }

    /// A release the state names, read from the store and verified again: nothing on disk is
    /// trusted without its signature.
    fn stored_release(&self, installed: &Installed) -> Result<Release> {
        let bytes = self.store.read_manifest(&installed.manifest)?;
        Ok(verify_release(&bytes, &self.trusted, Some(&installed.manifest))?.release)
    }

    /// The verified active release of each package, for the resolver.
    fn active_releases(&self, state: &State) -> Result<Vec<Release>> {
        let mut out = Vec::new();
        for (package, p) in &state.packages {
            if let Some(active) = &p.active {
                let release = self.stored_release(active)?;
                if release.package != *package {
                    return Err(Error::Invalid(format!(
                        "stored manifest {} is not {package}",
                        active.manifest
                    )));
                }
                out.push(release);
            }
        }
        Ok(out)
    }

    fn publish_table(&self, state: &State) -> Result<()> {
        let releases = self.active_releases(state)?;
        let evicted = state.packages.iter().filter_map(|(package, p)| {
            let e = p.evicted.as_ref().filter(|_| p.active.is_none())?;
            Some((package, &e.version, e.routes.as_slice()))
        });
        self.resolver
            .publish(Table::new(&releases, &self.store.root().join("blobs")).with_evicted(evicted));
        Ok(())
    }

    /// The current time as the device trusts it: never before the newest index it accepted.
    fn now(&self, state: &State) -> Timestamp {
        let wall = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Timestamp::from_unix_secs(wall.max(state.last_trusted_secs))
    }

    /// Asks the server whether anything is new: one conditional request for the whole app.
    /// Blocks (network).
    ///
    /// # Errors
    /// Network errors; a replayed, expired, forged or misdirected index (nothing changes).
    pub fn check(&self) -> Result<CheckOutcome> {
        let key = self.scope_key();
        let state = self.lock().state.clone();
        let etag = state.index_etag.get(&key).cloned();
        let stored = self.store.root().join(format!(
            "index-{}-{}.json",
            self.config.app, self.config.channel
        ));
        let mut headers = Vec::new();
        if let (Some(etag), true) = (&etag, stored.is_file()) {
            headers.push(("If-None-Match".to_owned(), etag.clone()));
        }
        let path = format!(
            "/v1/apps/{}/channels/{}/index",
            self.config.app, self.config.channel
        );
        let response = self
            .net
            .request("GET", &path, &headers, Vec::new(), MAX_INDEX_BYTES)?;
        let (bytes, changed) = match response.status {
            200 => (response.body.clone(), true),
            304 => (
                std::fs::read(&stored).map_err(|e| Error::io("reading the stored index", e))?,
                false,
            ),
            status => return Err(Error::Network(format!("GET {path}: HTTP {status}"))),
        };
        let seen = state
            .highest_sequence
            .get(&key)
            .copied()
            .unwrap_or(0)
            .max(self.config.sequence_floor);
        let scope = IndexScope {
            app: self.config.app.clone(),
            channel: self.config.channel.clone(),
        };
        let verified = verify_index(&bytes, &self.trusted, &scope, self.now(&state), seen)?;
        let index = verified.index;

        if changed {
            crate::store::state::write_durably(
                self.store.root(),
                stored
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("index.json"),
                &bytes,
            )?;
            let mut inner = self.lock();
            let mut next = inner.state.clone();
            next.highest_sequence.insert(key.clone(), index.sequence);
            next.last_trusted_secs = next.last_trusted_secs.max(index.issued_at.unix_secs());
            match response.header("etag") {
                Some(etag) => next.index_etag.insert(key, etag.to_owned()),
                None => next.index_etag.remove(&key),
            };
            inner.state = self.store.save(&next)?;
        }

        let state = self.lock().state.clone();
        let mut updates = Vec::new();
        for (package, selection) in
            select_all(&index, &self.config.host_version, &self.config.device_id)
        {
            let priority = index.packages.get(package).map_or(0, |e| e.priority);
            let current = state.packages.get(package);
            let active = current.and_then(|p| p.active.as_ref());
            let bad = current.is_some_and(|p| p.bad.contains(&selection.release.manifest));
            if bad || active.is_some_and(|a| a.manifest == selection.release.manifest) {
                continue;
            }
            updates.push(Update {
                package: package.clone(),
                from: active.map(|a| a.version.clone()),
                to: selection.release.clone(),
                reason: selection.reason,
                priority,
            });
        }
        Ok(CheckOutcome {
            sequence: index.sequence,
            changed,
            updates,
        })
    }

    /// Downloads, verifies and activates one update; the release that was active keeps serving
    /// until the switch, and becomes the rollback target. Blocks (network, disk).
    ///
    /// # Errors
    /// Network, verification and storage errors; on any of them nothing changes.
    pub fn install(&self, update: &Update) -> Result<install::Report> {
        let active = self
            .lock()
            .state
            .packages
            .get(&update.package)
            .and_then(|p| p.active.clone());
        let report = install::install(
            &self.store,
            &self.net,
            &self.trusted,
            &update.package,
            &update.to,
            active.as_ref(),
        )?;
        let mut inner = self.lock();
        let installed = Installed {
            version: update.to.version.clone(),
            manifest: update.to.manifest,
        };
        self.activate(&mut inner, &update.package, installed, true)?;
        push_event(
            &mut inner.events,
            &update.package,
            &update.to.version,
            EventKind::Installed,
        );
        push_event(
            &mut inner.events,
            &update.package,
            &update.to.version,
            EventKind::Activated,
        );
        Ok(report)
    }

    /// Installs a release shipped inside the app binary (a *preset*), so that the very first
    /// launch opens pages instantly without a network. `manifest` is the release's signed manifest
    /// (`GET /v1/manifests/{digest}`) and `full_pack` its full pack (`GET
    /// /v1/packs/{package}/{version}.zip`), both fetched when the app is built. Both are verified
    /// like any download: the signature against the trusted keys, every blob's sha256 against the
    /// manifest. The preset becomes active only if the package has no active release, or an older
    /// one; it is not pending, since it shipped with the app. Blocks (disk).
    ///
    /// Returns the version activated, or `None` when the device already runs it or something
    /// newer, or marked it bad.
    ///
    /// # Errors
    /// A bad signature, a pack that does not match the manifest, storage errors; on any of them
    /// nothing changes.
    pub fn seed(&self, manifest: &[u8], full_pack: &[u8]) -> Result<Option<ReleaseVersion>> {
        let verified = verify_release(manifest, &self.trusted, None)?;
        let (release, digest) = (verified.release, verified.digest);
        let skip = |state: &State| {
            state.packages.get(&release.package).is_some_and(|p| {
                p.bad.contains(&digest)
                    || p.active
                        .as_ref()
                        .is_some_and(|a| a.manifest == digest || a.version >= release.version)
            })
        };
        if skip(&self.lock().state) {
            return Ok(None);
        }
        let needed = install::blob_sizes(&release);
        let mut written = BTreeSet::new();
        if needed.keys().any(|d| !self.store.has_blob(d)) {
            let target = install::Target {
                release: &release,
                to_manifest: digest,
                from_manifest: None,
                needed: &needed,
            };
            let label = format!("preset {}@{}", release.package, release.version);
            install::unpack(&self.store, full_pack, &label, &target, &mut written)?;
            if let Some(missing) = needed.keys().find(|d| !self.store.has_blob(d)) {
                return Err(Error::BadPack(format!(
                    "{label}: blob {missing} is missing"
                )));
            }
            self.store.sync_blob_dirs(&written)?;
        }
        self.store.write_manifest(&digest, manifest)?;

        let mut inner = self.lock();
        if skip(&inner.state) {
            return Ok(None);
        }
        let installed = Installed {
            version: release.version.clone(),
            manifest: digest,
        };
        // Not pending: it shipped with the app.
        self.activate(&mut inner, &release.package, installed, false)?;
        Ok(Some(release.version))
    }

    /// Makes `installed` the active release of `package` in one state commit, the release before
    /// it the rollback target, and serves it; `pending` until the page says it works.
    fn activate(
        &self,
        inner: &mut Inner,
        package: &PackageId,
        installed: Installed,
        pending: bool,
    ) -> Result<()> {
        let mut next = inner.state.clone();
        let entry = next.packages.entry(package.clone()).or_default();
        if entry.active.as_ref() != Some(&installed) {
            entry.previous = entry.active.take();
            entry.active = Some(installed);
            entry.pending = pending;
            entry.pending_launches = 0;
        }
        entry.evicted = None;
        let saved = self.store.save(&next)?;
        self.publish_table(&saved)?;
        inner.state = saved;
        Ok(())
    }

    /// Checks, plans under `conditions` and installs what the plan says to install now.
    /// Blocks (network, disk).
    ///
    /// # Errors
    /// The check's errors, and the first install failure (updates installed before it stay).
    pub fn update_with(&self, conditions: &Conditions) -> Result<Planned> {
        if conditions.network == Network::Offline {
            return Ok(Planned::default());
        }
        let outcome = self.check()?;
        let state = self.lock().state.clone();
        let mut candidates = Vec::new();
        let mut releases = BTreeMap::new();
        for update in outcome.updates {
            let release = self.stored_manifest(&update)?;
            let missing_bytes = install::blob_sizes(&release)
                .iter()
                .filter(|(digest, _)| !self.store.has_blob(digest))
                .map(|(_, size)| size)
                .sum();
            let usage = state.packages.get(&update.package);
            candidates.push(Candidate {
                priority: update.priority,
                missing_bytes,
                size_bytes: release.size_bytes(),
                opens: usage.map_or(0, |p| p.opens),
                last_opened_secs: usage.map_or(0, |p| p.last_opened_secs),
                update,
            });
            releases.insert(release.package.clone(), release);
        }
        let plan = plan::plan(candidates, conditions);
        let mut done = Planned {
            later: plan.later,
            ..Planned::default()
        };
        for candidate in plan.now {
            let release = releases.get(&candidate.update.package);
            let Some(evictions) = self.room_for(&candidate.update, release)? else {
                done.later.push((candidate.update.package, Wait::Quota));
                continue;
            };
            let report = self.install(&candidate.update)?;
            self.evict(&evictions)?;
            done.installed.push((candidate.update, report.method));
        }
        Ok(done)
    }

    /// Checks and installs every update that fits the quota; returns what was installed.
    /// Blocks (network, disk).
    ///
    /// # Errors
    /// The first failure; updates installed before it stay installed.
    pub fn update(&self) -> Result<Vec<(Update, Method)>> {
        let outcome = self.check()?;
        let mut done = Vec::new();
        for update in outcome.updates {
            // An update that does not fit the quota waits; the next check offers it again.
            let Some(evictions) = self.room_for(&update, None)? else {
                continue;
            };
            let report = self.install(&update)?;
            self.evict(&evictions)?;
            done.push((update, report.method));
        }
        Ok(done)
    }

    /// The page of `package` works: the active release is no longer pending. Blocks (disk).
    ///
    /// # Errors
    /// Storage errors.
    pub fn mark_ready(&self, package: &PackageId) -> Result<()> {
        let mut inner = self.lock();
        let Some(p) = inner.state.packages.get(package) else {
            return Err(Error::NotFound(format!(
                "package {package} is not installed"
            )));
        };
        if !p.pending {
            return Ok(());
        }
        let version = p.active.as_ref().map(|a| a.version.clone());
        let mut next = inner.state.clone();
        if let Some(p) = next.packages.get_mut(package) {
            p.pending = false;
            p.pending_launches = 0;
        }
        inner.state = self.store.save(&next)?;
        if let Some(version) = version {
            push_event(&mut inner.events, package, &version, EventKind::Ready);
        }
        drop(inner);
        // Its rollback target was protected while it was pending; now it may give way.
        self.enforce_quota()?;
        Ok(())
    }

    /// The page of `package` failed: go back to the previous release, and never install the
    /// failed one again. Blocks (disk).
    ///
    /// # Errors
    /// [`Error::NotFound`] without a previous release; storage errors.
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
        let mut inner = self.lock();
        let mut next = inner.state.clone();
        let p: &mut PackageState = next
            .packages
            .get_mut(package)
            .ok_or_else(|| Error::NotFound(format!("package {package} is not installed")))?;
        let Some(active) = p.active.clone() else {
            return Err(Error::NotFound(format!(
                "package {package} has no active release"
            )));
        };
        let previous = p.previous.take();
        if failed && !p.bad.contains(&active.manifest) {
            p.bad.push(active.manifest);
        }
        if previous.is_none() && !failed {
            p.previous = Some(active);
            return Err(Error::NotFound(format!(
                "package {package} has no previous release"
            )));
        }
        p.active = previous;
        p.pending = false;
        p.pending_launches = 0;
        let saved = self.store.save(&next)?;
        self.publish_table(&saved)?;
        inner.state = saved;
        if failed {
            push_event(
                &mut inner.events,
                package,
                &active.version,
                EventKind::Failed,
            );
        }
        push_event(
            &mut inner.events,
            package,
            &active.version,
            EventKind::RolledBack,
        );
        Ok(())
    }

    /// Call once per app launch: a release still pending after `max_pending_launches` launches
    /// is rolled back as failed. Returns the packages rolled back. Blocks (disk).
    ///
    /// # Errors
    /// Storage errors.
    pub fn on_launch(&self) -> Result<Vec<PackageId>> {
        let limit = self.config.max_pending_launches;
        let expired: Vec<PackageId> = {
            let mut inner = self.lock();
            let mut next = inner.state.clone();
            let mut expired = Vec::new();
            for (package, p) in next.packages.iter_mut() {
                if p.pending {
                    p.pending_launches += 1;
                    if p.pending_launches > limit {
                        expired.push(package.clone());
                    }
                }
            }
            inner.state = self.store.save(&next)?;
            expired
        };
        for package in &expired {
            self.roll_back(package, true)?;
        }
        Ok(expired)
    }

    /// Counts a page open for the open-rate figures: was it answered offline, and did it show
    /// within one second. Never blocks on IO.
    pub fn report_open(&self, url: &str, ms_to_first_paint: u64) {
        // A page of an installed package that was not answered offline still counts, as a miss.
        let (key, offline) = match self.resolver.resolve(url) {
            Some(hit) => ((hit.package, hit.version), true),
            None => match self.resolver.route_of(url) {
                Some(route) => (route, false),
                None => return,
            },
        };
        let mut inner = self.lock();
        let counters = inner.opens.entry(key).or_default();
        counters.0 += 1;
        if offline {
            counters.1 += 1;
        }
        if ms_to_first_paint < 1_000 {
            counters.2 += 1;
        }
    }

    /// Sends queued events and open counters to the server; on failure they stay queued.
    /// Blocks (network).
    ///
    /// # Errors
    /// Network errors.
    pub fn flush_events(&self) -> Result<usize> {
        let events = {
            let mut inner = self.lock();
            let opens = std::mem::take(&mut inner.opens);
            let now_secs = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let mut usage = inner.state.clone();
            for ((package, _), (count, _, _)) in &opens {
                if let Some(p) = usage.packages.get_mut(package) {
                    p.opens += count;
                    p.last_opened_secs = now_secs;
                }
            }
            if !opens.is_empty() {
                // Usage steers the planner; losing it is harmless, so a failed write is not fatal.
                if let Ok(saved) = self.store.save(&usage) {
                    inner.state = saved;
                }
            }
            for ((package, version), (count, offline, fast)) in opens {
                inner.events.push(Event {
                    package,
                    version,
                    kind: EventKind::Opens,
                    count,
                    offline_hits: offline,
                    under_1s: fast,
                });
            }
            let keep = inner.events.len().saturating_sub(MAX_QUEUED_EVENTS);
            inner.events.drain(..keep);
            std::mem::take(&mut inner.events)
        };
        if events.is_empty() {
            return Ok(0);
        }
        let batch = EventBatch {
            app: self.config.app.clone(),
            channel: self.config.channel.clone(),
            events,
        };
        let body = serde_json::to_vec(&batch).map_err(|e| Error::Invalid(e.to_string()))?;
        let headers = [("Content-Type".to_owned(), "application/json".to_owned())];
        let result = self
            .net
            .request("POST", "/v1/events", &headers, body, 64 * 1024)
            .and_then(|r| match r.status {
                202 => Ok(batch.events.len()),
                s => Err(Error::Network(format!("POST /v1/events: HTTP {s}"))),
            });
        if result.is_err() {
            let mut inner = self.lock();
            let mut back = batch.events;
            back.append(&mut inner.events);
            inner.events = back;
        }
        result
    }

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
        match self.quota_bytes.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n),
        }
    }

    /// The blobs of a stored release, with their sizes.
    fn blobs_of(&self, installed: Option<&Installed>) -> Result<BTreeMap<Digest, u64>> {
        let Some(installed) = installed else {
            return Ok(BTreeMap::new());
        };
        Ok(install::blob_sizes(&self.stored_release(installed)?))
    }

    fn holdings(&self, state: &State) -> Result<Vec<Holding>> {
        state
            .packages
            .iter()
            .map(|(package, p)| {
                Ok(Holding {
                    package: package.clone(),
                    active: self.blobs_of(p.active.as_ref())?,
                    previous: self.blobs_of(p.previous.as_ref())?,
                    last_opened_secs: p.last_opened_secs,
                    opens: p.opens,
                    protected: p.pending,
                })
            })
            .collect()
    }

    /// The verified release `update` moves to, its manifest fetched if need be and kept.
    fn stored_manifest(&self, update: &Update) -> Result<Release> {
        let (release, bytes, _) = install::manifest(
            &self.store,
            &self.net,
            &self.trusted,
            &update.package,
            &update.to,
        )?;
        self.store.write_manifest(&update.to.manifest, &bytes)?;
        Ok(release)
    }

    /// What must give way for `update` to fit the quota; `None` when it cannot fit. `release`
    /// is the verified release it moves to, or `None` to read it here (only with a quota).
    fn room_for(
        &self,
        update: &Update,
        release: Option<&Release>,
    ) -> Result<Option<Vec<Eviction>>> {
        let Some(quota_bytes) = self.quota() else {
            return Ok(Some(Vec::new()));
        };
        let read;
        let release = match release {
            Some(release) => release,
            None => {
                read = self.stored_manifest(update)?;
                &read
            }
        };
        let state = self.lock().state.clone();
        let current = state.packages.get(&update.package);
        let incoming = Holding {
            package: update.package.clone(),
            active: install::blob_sizes(release),
            previous: self.blobs_of(current.and_then(|p| p.active.as_ref()))?,
            last_opened_secs: current.map_or(0, |p| p.last_opened_secs),
            opens: current.map_or(0, |p| p.opens),
            protected: true,
        };
        Ok(quota::evictions(
            &self.holdings(&state)?,
            Some(&incoming),
            quota_bytes,
        ))
    }

    /// Brings the store within the quota, if it is over (as after `mark_ready` or a lower quota).
    fn enforce_quota(&self) -> Result<Vec<Eviction>> {
        let Some(quota_bytes) = self.quota() else {
            return Ok(Vec::new());
        };
        let state = self.lock().state.clone();
        // What cannot be brought within the quota now is left for a later pass.
        let evictions =
            quota::evictions(&self.holdings(&state)?, None, quota_bytes).unwrap_or_default();
        self.evict(&evictions)?;
        Ok(evictions)
    }

    /// Drops evicted releases from the state (one commit), then deletes what nothing needs.
    fn evict(&self, evictions: &[Eviction]) -> Result<()> {
        if evictions.is_empty() {
            return Ok(());
        }
        {
            let mut inner = self.lock();
            let mut next = inner.state.clone();
            for eviction in evictions {
                match eviction {
                    Eviction::Previous(package) => {
                        if let Some(p) = next.packages.get_mut(package) {
                            p.previous = None;
                        }
                    }
                    Eviction::Package(package) => {
                        let Some(p) = next.packages.get_mut(package) else {
                            continue;
                        };
                        // Usage and routes stay: opens of its pages rank it when it asks to
                        // return.
                        if let Some(active) = p.active.take() {
                            let release = self.stored_release(&active)?;
                            p.evicted = Some(Evicted {
                                version: active.version,
                                routes: release
                                    .routes
                                    .iter()
                                    .map(|r| r.prefix.without_scheme().to_owned())
                                    .collect(),
                            });
                        }
                        p.previous = None;
                        p.pending = false;
                    }
                }
            }
            let saved = self.store.save(&next)?;
            self.publish_table(&saved)?;
            inner.state = saved;
        }
        self.collect_garbage()?;
        Ok(())
    }

    /// Deletes blobs and manifests no active or previous release needs; returns bytes freed.
    /// Blocks (disk).
    ///
    /// # Errors
    /// Storage errors.
    pub fn collect_garbage(&self) -> Result<u64> {
        let inner = self.lock();
        let mut keep_manifests = std::collections::BTreeSet::new();
        let mut keep_blobs = std::collections::BTreeSet::new();
        for p in inner.state.packages.values() {
            for installed in p.active.iter().chain(p.previous.iter()) {
                let release = self.stored_release(installed)?;
                keep_blobs.extend(release.files.values().map(|f| f.sha256));
                keep_manifests.insert(installed.manifest);
            }
        }
        self.store.collect_garbage(&keep_blobs, &keep_manifests)
    }

    /// What the client holds, for a debug screen.
    pub fn status(&self) -> Status {
        let inner = self.lock();
        Status {
            packages: inner
                .state
                .packages
                .iter()
                .map(|(package, p)| PackageStatus {
                    package: package.clone(),
                    active: p.active.as_ref().map(|a| a.version.clone()),
                    previous: p.previous.as_ref().map(|a| a.version.clone()),
                    pending: p.pending,
                })
                .collect(),
            sequence: inner
                .state
                .highest_sequence
                .get(&self.scope_key())
                .copied()
                .unwrap_or(0),
            files: self.resolver_files(),
            recovery: self.recovery,
            queued_events: inner.events.len(),
        }
    }

    fn resolver_files(&self) -> usize {
        self.resolver.file_count()
    }

    /// The store (for tests and tools).
    pub fn store(&self) -> &Store {
        &self.store
    }
}

fn push_event(
    events: &mut Vec<Event>,
    package: &PackageId,
    version: &ReleaseVersion,
    kind: EventKind,
) {
    events.push(Event {
        package: package.clone(),
        version: version.clone(),
        kind,
        count: 1,
        offline_hits: 0,
        under_1s: 0,
    });
}
