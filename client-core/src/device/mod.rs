//! The device core: every decision the device makes, with no IO (as quinn-proto is to quinn).
//!
//! [`Device`] owns the trusted [`State`] (active and previous release per package, the bad-release
//! list, pending verification, sequence and time floors), the page-open counters and the event
//! queue. Its transitions take the time and their inputs as arguments; those that change the
//! state return a [`Change`] — the next state and the events it produces — which the IO shell
//! makes durable and then hands back to [`Device::commit`]. Nothing here reads a file, the network
//! or the clock, so every rule is tested with a fake clock and plain values (`device/tests.rs`).

use std::collections::{BTreeMap, BTreeSet};

use manifests::{
    AppId, Channel, Digest, Event, EventKind, HostVersion, Index, IndexScope, PackageId, Prefetch,
    ReleaseVersion, Timestamp, TrustedKeys, apply_index_delta, check_index, select_all,
    verify_index, verify_rebuilt_index,
};

use crate::error::{Error, Result};
use crate::plan::{self, Candidate, Conditions, Plan, Update};
use crate::quota::{Eviction, Holding};

mod state;
mod time;

pub use state::{Evicted, Installed, PackageState, State};

/// Most events kept while the network is away.
pub const MAX_QUEUED_EVENTS: usize = 1_000;

/// Who the device is, for the core's decisions.
#[derive(Clone, Debug)]
pub struct DeviceConfig {
    /// The host app.
    pub app: AppId,
    /// The channel the device follows.
    pub channel: Channel,
    /// A stable, random id of this installation (rollout buckets).
    pub device_id: String,
    /// The host app's version (targeting).
    pub host_version: HostVersion,
    /// Launches a new release may take without `mark_ready` before it is rolled back.
    pub max_pending_launches: u32,
    /// The lowest index sequence ever acceptable, shipped with the app.
    pub sequence_floor: u64,
}

/// A state change the core decided: the shell writes `state` durably, then calls
/// [`Device::commit`] with what it wrote. Until then nothing in the core has changed.
#[derive(Clone, Debug)]
#[must_use]
pub struct Change {
    state: State,
    events: Vec<Event>,
    serving: bool,
}

impl Change {
    /// The state to write.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Whether the releases served change, so the resolver needs a new table.
    pub fn changes_serving(&self) -> bool {
        self.serving
    }
}

/// How an index arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fetched {
    /// A `200` with this `ETag`.
    New(Option<String>),
    /// A `304`: the stored copy is still current.
    NotModified,
}

/// An index document as it reaches the device.
#[derive(Clone, Copy, Debug)]
pub enum IndexDoc<'a> {
    /// A whole signed index.
    Full(&'a [u8]),
    /// A signed delta from `base`, the index the device holds.
    Delta {
        /// The signed delta.
        delta: &'a [u8],
        /// The index it applies to.
        base: &'a Index,
    },
    /// The index the device holds, its signatures verified already in this check
    /// ([`Device::held_index`]): only scope, sequence and expiry are checked again.
    Held(&'a Index),
    /// An index the device rebuilt from deltas (its canonical JSON), with the last delta applied.
    Rebuilt {
        /// The signed delta that led to it.
        delta: &'a [u8],
        /// The rebuilt index.
        index: &'a [u8],
    },
}

impl IndexDoc<'_> {
    fn verify(
        &self,
        trusted: &TrustedKeys,
        scope: &IndexScope,
        now: Timestamp,
        seen: u64,
    ) -> Result<Index> {
        Ok(match *self {
            IndexDoc::Full(bytes) => verify_index(bytes, trusted, scope, now, seen)?.index,
            IndexDoc::Delta { delta, base } => {
                apply_index_delta(delta, trusted, scope, now, seen, base)?
            }
            IndexDoc::Held(index) => {
                check_index(index, scope, now, seen)?;
                index.clone()
            }
            IndexDoc::Rebuilt { delta, index } => {
                verify_rebuilt_index(delta, index, trusted, scope, now, seen)?
            }
        })
    }
}

/// Where a release being activated came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Downloaded: pending until the page says it works, reported as installed and activated.
    Download,
    /// Shipped inside the app: not pending, not reported.
    Preset,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Opens {
    count: u64,
    offline: u64,
    under_1s: u64,
    paint: [u64; manifests::PAINT_BUCKETS],
}

/// The device core.
#[derive(Clone, Debug)]
pub struct Device {
    config: DeviceConfig,
    state: State,
    /// Page opens since the last flush, per release.
    opens: BTreeMap<(PackageId, ReleaseVersion), Opens>,
    /// Events waiting to be sent.
    events: Vec<Event>,
}

impl Device {
    /// A core over the state read from the store.
    pub fn new(config: DeviceConfig, state: State) -> Device {
        Device {
            config,
            state,
            opens: BTreeMap::new(),
            events: Vec::new(),
        }
    }

    /// The committed state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Events waiting to be sent.
    pub fn queued_events(&self) -> usize {
        self.events.len()
    }

    fn scope_key(&self) -> String {
        format!("{}/{}", self.config.app, self.config.channel)
    }

    /// The highest index sequence accepted for the device's app and channel.
    pub fn sequence(&self) -> u64 {
        let seen = self.state.highest_sequence.get(&self.scope_key());
        seen.copied().unwrap_or(0)
    }

    /// The `ETag` of the stored index, for a conditional request.
    pub fn index_etag(&self) -> Option<&str> {
        self.state
            .index_etag
            .get(&self.scope_key())
            .map(String::as_str)
    }

    /// Makes `change` the committed state, as the shell wrote it (`saved`), and queues its events.
    pub fn commit(&mut self, change: Change, saved: State) {
        self.state = saved;
        self.events.extend(change.events);
        let over = self.events.len().saturating_sub(MAX_QUEUED_EVENTS);
        self.events.drain(..over);
    }

    fn change(&self, state: State, events: Vec<Event>, serving: bool) -> Change {
        Change {
            state,
            events,
            serving,
        }
    }

    /// Records a wall-clock reading in the trusted time (bounded by the newest index's expiry;
    /// see `device/time.rs`). The shell writes it before checking an index, so even a check that
    /// is refused leaves the time it happened behind.
    pub fn observe(&self, wall: Timestamp) -> Change {
        let mut next = self.state.clone();
        time::observe(&mut next, wall);
        self.change(next, Vec::new(), false)
    }

    fn scope(&self) -> IndexScope {
        IndexScope {
            app: self.config.app.clone(),
            channel: self.config.channel.clone(),
        }
    }

    /// The index the device holds (`doc`, read back from its store), checked for signatures and
    /// scope but not expiry — an expired index still says what the device runs, and is the base
    /// a delta applies to — and for being the one the state names.
    ///
    /// # Errors
    /// A document that does not verify, or another sequence than the state's.
    pub fn held_index(&self, doc: IndexDoc<'_>, trusted: &TrustedKeys) -> Result<Index> {
        let index = doc.verify(trusted, &self.scope(), Timestamp::from_unix_secs(0), 0)?;
        if index.sequence != self.sequence() {
            return Err(Error::Invalid(format!(
                "the stored index is at sequence {}, the state at {}",
                index.sequence,
                self.sequence()
            )));
        }
        Ok(index)
    }

    /// Verifies an index document at `wall` (the device's clock) against the trusted keys, the
    /// device's app and channel, the highest sequence seen (or the app's floor) and the trusted
    /// time.
    ///
    /// # Errors
    /// A forged, misdirected, replayed or expired index, or a delta for another base; nothing
    /// changes then.
    pub fn accept_index(
        &self,
        doc: IndexDoc<'_>,
        trusted: &TrustedKeys,
        wall: Timestamp,
        fetched: Fetched,
    ) -> Result<(Index, Change)> {
        let mut next = self.state.clone();
        time::observe(&mut next, wall);
        let seen = self.sequence().max(self.config.sequence_floor);
        let now = time::trusted_now(&next, wall);
        let index = doc.verify(trusted, &self.scope(), now, seen)?;
        if let Fetched::New(etag) = fetched {
            let key = self.scope_key();
            next.highest_sequence.insert(key.clone(), index.sequence);
            next.index_expires_secs = index.expires_at.unix_secs();
            time::observe(&mut next, wall);
            match etag {
                Some(etag) => next.index_etag.insert(key, etag),
                None => next.index_etag.remove(&key),
            };
        }
        Ok((index, self.change(next, Vec::new(), false)))
    }

    /// The releases `index` selects for this device that it does not run, leaving out releases
    /// that failed here before.
    pub fn updates(&self, index: &Index) -> Vec<Update> {
        let chosen = select_all(index, &self.config.host_version, &self.config.device_id);
        let mut updates = Vec::new();
        for (package, selection) in chosen {
            let entry = index.packages.get(package);
            let current = self.state.packages.get(package);
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
                priority: entry.map_or(0, |e| e.priority),
                prefetch: entry.map_or(Prefetch::Always, |e| e.prefetch),
            });
        }
        updates
    }

    /// `update` as the planner sees it, with the device's usage of the package.
    pub fn candidate(&self, update: Update, missing_bytes: u64, size_bytes: u64) -> Candidate {
        let usage = self.state.packages.get(&update.package);
        Candidate {
            missing_bytes,
            size_bytes,
            opens: usage.map_or(0, |p| p.opens),
            last_opened_secs: usage.map_or(0, |p| p.last_opened_secs),
            update,
        }
    }

    /// What to install now under `conditions`, and what waits.
    pub fn plan(
        &self,
        candidates: Vec<Candidate>,
        conditions: &Conditions,
        now: Timestamp,
    ) -> Plan {
        plan::plan(candidates, conditions, now.unix_secs())
    }

    /// Whether a preset release (`version`, manifest `digest`) should replace what `package` runs:
    /// not when the device runs it or something newer, or marked it bad.
    pub fn wants_preset(
        &self,
        package: &PackageId,
        version: &ReleaseVersion,
        digest: &Digest,
    ) -> bool {
        !self.state.packages.get(package).is_some_and(|p| {
            p.bad.contains(digest)
                || p.active
                    .as_ref()
                    .is_some_and(|a| a.manifest == *digest || a.version >= *version)
        })
    }

    /// Makes `installed` the active release of `package`, the release before it the rollback
    /// target; a download stays pending until the page says it works.
    pub fn activate(&self, package: &PackageId, installed: Installed, source: Source) -> Change {
        let mut next = self.state.clone();
        let entry = next.packages.entry(package.clone()).or_default();
        let mut events = Vec::new();
        if entry.active.as_ref() != Some(&installed) {
            if source == Source::Download {
                events.push(event(package, &installed.version, EventKind::Installed));
                events.push(event(package, &installed.version, EventKind::Activated));
            }
            entry.previous = entry.active.take();
            entry.active = Some(installed);
            entry.pending = source == Source::Download;
            entry.pending_launches = 0;
        }
        entry.evicted = None;
        self.change(next, events, true)
    }

    /// The page of `package` works: its active release is no longer pending. `None` when it was
    /// not pending.
    ///
    /// # Errors
    /// [`Error::NotFound`] when the package is not installed.
    pub fn mark_ready(&self, package: &PackageId) -> Result<Option<Change>> {
        let Some(p) = self.state.packages.get(package) else {
            return Err(Error::NotFound(format!(
                "package {package} is not installed"
            )));
        };
        if !p.pending {
            return Ok(None);
        }
        let mut next = self.state.clone();
        let mut events = Vec::new();
        if let Some(p) = next.packages.get_mut(package) {
            p.pending = false;
            p.pending_launches = 0;
            if let Some(active) = &p.active {
                events.push(event(package, &active.version, EventKind::Ready));
            }
        }
        Ok(Some(self.change(next, events, false)))
    }

    /// Goes back to the previous release of `package`; `failed` also marks the active release
    /// bad (never installed again) and reports the failure.
    ///
    /// # Errors
    /// [`Error::NotFound`] without an active release, or without a previous one unless `failed`.
    pub fn roll_back(&self, package: &PackageId, failed: bool) -> Result<Change> {
        let mut next = self.state.clone();
        let mut events = Vec::new();
        roll_back_in(&mut next, package, failed, &mut events)?;
        Ok(self.change(next, events, true))
    }

    /// One app launch: a release pending for more than `max_pending_launches` launches is rolled
    /// back as failed. Returns the change and the packages rolled back.
    pub fn launch(&self) -> (Change, Vec<PackageId>) {
        let mut next = self.state.clone();
        let mut expired = Vec::new();
        for (package, p) in next.packages.iter_mut().filter(|(_, p)| p.pending) {
            p.pending_launches += 1;
            if p.pending_launches > self.config.max_pending_launches {
                expired.push(package.clone());
            }
        }
        let mut events = Vec::new();
        for package in &expired {
            // A pending package has an active release, so this cannot fail.
            let _ = roll_back_in(&mut next, package, true, &mut events);
        }
        let serving = !expired.is_empty();
        (self.change(next, events, serving), expired)
    }

    /// Drops evicted releases. `routes` gives the route prefixes of an evicted active release,
    /// kept so opens of its pages still count and can bring it back.
    pub fn evict(
        &self,
        evictions: &[Eviction],
        routes: impl Fn(&Installed) -> Vec<String>,
    ) -> Change {
        let mut next = self.state.clone();
        for eviction in evictions {
            let (Eviction::Previous(package) | Eviction::Package(package)) = eviction;
            let Some(p) = next.packages.get_mut(package) else {
                continue;
            };
            p.previous = None;
            if let Eviction::Package(_) = eviction
                && let Some(active) = p.active.take()
            {
                p.evicted = Some(Evicted {
                    routes: routes(&active),
                    version: active.version,
                });
                p.pending = false;
            }
        }
        self.change(next, Vec::new(), true)
    }

    /// Remembers the routes of packages the device does not run (waiting for their first use),
    /// so opens of their pages, answered by the network, count and bring them in.
    pub fn remember_routes(&self, known: &[(PackageId, ReleaseVersion, Vec<String>)]) -> Change {
        let mut next = self.state.clone();
        for (package, version, routes) in known {
            let p = next.packages.entry(package.clone()).or_default();
            if p.active.is_none() {
                p.evicted = Some(Evicted {
                    version: version.clone(),
                    routes: routes.clone(),
                });
            }
        }
        self.change(next, Vec::new(), true)
    }

    /// Forgets releases whose stored manifest no longer verifies (corrupted, or signed by a key
    /// the app no longer trusts): such a package serves nothing until it is fetched again, and
    /// every other package keeps serving.
    pub fn quarantine(&self, broken: &BTreeSet<Digest>) -> Change {
        let mut next = self.state.clone();
        for p in next.packages.values_mut() {
            let is_broken =
                |i: &Option<Installed>| i.as_ref().is_some_and(|i| broken.contains(&i.manifest));
            if is_broken(&p.active) {
                p.active = None;
                p.previous = None;
                p.pending = false;
                p.pending_launches = 0;
            }
            if is_broken(&p.previous) {
                p.previous = None;
            }
        }
        self.change(next, Vec::new(), true)
    }

    /// The releases the device keeps (active and rollback targets).
    pub fn kept(&self) -> impl Iterator<Item = &Installed> {
        let packages = self.state.packages.values();
        packages.flat_map(|p| p.active.iter().chain(p.previous.iter()))
    }

    /// The quota's view of what each package holds; `blobs` gives a release's blobs and sizes.
    pub fn holdings(&self, blobs: impl Fn(&Installed) -> BTreeMap<Digest, u64>) -> Vec<Holding> {
        let of = |i: Option<&Installed>| i.map(&blobs).unwrap_or_default();
        let packages = self.state.packages.iter();
        packages
            .map(|(package, p)| Holding {
                package: package.clone(),
                active: of(p.active.as_ref()),
                previous: of(p.previous.as_ref()),
                last_opened_secs: p.last_opened_secs,
                opens: p.opens,
                protected: p.pending,
            })
            .collect()
    }

    /// The quota's view of `package` once `incoming` (its new release's blobs) is installed: the
    /// active release becomes the rollback target.
    pub fn incoming(
        &self,
        package: &PackageId,
        incoming: BTreeMap<Digest, u64>,
        blobs: impl Fn(&Installed) -> BTreeMap<Digest, u64>,
    ) -> Holding {
        let current = self.state.packages.get(package);
        Holding {
            package: package.clone(),
            active: incoming,
            previous: current
                .and_then(|p| p.active.as_ref())
                .map(blobs)
                .unwrap_or_default(),
            last_opened_secs: current.map_or(0, |p| p.last_opened_secs),
            opens: current.map_or(0, |p| p.opens),
            protected: true,
        }
    }

    /// Counts a page open of `release` (package and version): answered offline or not, painted
    /// within one second or not. In memory until the next [`Device::take_events`].
    pub fn record_open(&mut self, release: (PackageId, ReleaseVersion), offline: bool, ms: u64) {
        let counters = self.opens.entry(release).or_default();
        counters.count += 1;
        counters.offline += u64::from(offline);
        counters.under_1s += u64::from(ms < 1_000);
        counters.paint[manifests::paint_bucket(ms)] += 1;
    }

    /// Takes every queued event, open counters included, to send them; the usage they carry
    /// (how often and when each package was opened, for the planner) comes back as a change to
    /// write, or `None` when there were no opens.
    pub fn take_events(&mut self, now: Timestamp) -> (Option<Change>, Vec<Event>) {
        let opens = std::mem::take(&mut self.opens);
        let mut usage = None;
        if !opens.is_empty() {
            let mut next = self.state.clone();
            for ((package, _), counts) in &opens {
                if let Some(p) = next.packages.get_mut(package) {
                    p.opens += counts.count;
                    p.last_opened_secs = now.unix_secs();
                }
            }
            usage = Some(self.change(next, Vec::new(), false));
        }
        for ((package, version), counts) in opens {
            self.events.push(Event {
                package,
                version,
                kind: EventKind::Opens,
                count: counts.count,
                offline_hits: counts.offline,
                under_1s: counts.under_1s,
                paint_ms: {
                    let used = counts
                        .paint
                        .iter()
                        .rposition(|n| *n > 0)
                        .map_or(0, |i| i + 1);
                    counts.paint[..used].to_vec()
                },
            });
        }
        let over = self.events.len().saturating_sub(MAX_QUEUED_EVENTS);
        self.events.drain(..over);
        (usage, std::mem::take(&mut self.events))
    }

    /// Puts back events that could not be sent, before any queued since.
    pub fn requeue(&mut self, mut events: Vec<Event>) {
        events.append(&mut self.events);
        self.events = events;
        let over = self.events.len().saturating_sub(MAX_QUEUED_EVENTS);
        self.events.drain(..over);
    }
}

/// Rolls `package` back inside `state`, reporting into `events`.
fn roll_back_in(
    state: &mut State,
    package: &PackageId,
    failed: bool,
    events: &mut Vec<Event>,
) -> Result<()> {
    let p = state
        .packages
        .get_mut(package)
        .ok_or_else(|| Error::NotFound(format!("package {package} is not installed")))?;
    let Some(active) = p.active.clone() else {
        return Err(Error::NotFound(format!(
            "package {package} has no active release"
        )));
    };
    if p.previous.is_none() && !failed {
        return Err(Error::NotFound(format!(
            "package {package} has no previous release"
        )));
    }
    if failed && !p.bad.contains(&active.manifest) {
        p.bad.push(active.manifest);
    }
    p.active = p.previous.take();
    p.pending = false;
    p.pending_launches = 0;
    if failed {
        events.push(event(package, &active.version, EventKind::Failed));
    }
    events.push(event(package, &active.version, EventKind::RolledBack));
    Ok(())
}

fn event(package: &PackageId, version: &ReleaseVersion, kind: EventKind) -> Event {
    Event {
        package: package.clone(),
        version: version.clone(),
        kind,
        count: 1,
        offline_hits: 0,
        under_1s: 0,
        paint_ms: Vec::new(),
    }
}

#[cfg(test)]
mod tests;
