//! Updating: check, prepare each update's verified release, plan under the device's conditions,
//! and install what the plan says to install now.

use std::collections::BTreeMap;
use std::sync::Arc;

use manifests::{Digest, PackageId, paths};

use super::{Claim, Client, MAX_MANIFEST_BYTES, lock};
use crate::api::UpdateOutcome;
use crate::device::{Installed, Source};
use crate::error::{Error, Result};
use crate::install::{self, Report};
use crate::plan::{Conditions, Network, Update, Wait};
use crate::resolve::Served;

/// An update's verified release, ready to plan and install: its blobs claimed (so none of them
/// can be collected), and the ones the device lacks.
struct Prepared<'a> {
    blobs: BTreeMap<Digest, u64>,
    missing: BTreeMap<Digest, u64>,
    manifest_bytes: u64,
    served: Arc<Served>,
    _claim: Claim<'a>,
}

impl Client {
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
        let now = self.clock.now();
        let plan = lock(&self.core).plan(candidates, conditions, now);
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
        // A delta from the release the device holds when the server has one and it rebuilds
        // exactly the manifest the index names with valid signatures; otherwise the whole one.
        let rebuilt = self.manifest_from_delta(update);
        let (bytes, release, wire) = match rebuilt {
            Some(rebuilt) => rebuilt,
            None => {
                let path = paths::manifest_path(digest);
                let (bytes, wire) = self.get_manifest(&path)?;
                let release = self.releases.verify(&bytes, digest, package, version)?;
                (bytes, release, wire)
            }
        };
        self.store.write_manifest(digest, &bytes)?;
        Ok((release, wire))
    }

    /// `update`'s manifest rebuilt from a release delta against the manifest of the release the
    /// device has active and verified as a whole manifest would be, with its bytes and the bytes
    /// downloaded for it; none when there is no such release, the server has no delta (`404`: it
    /// does not know the base, or predates deltas) or the delta does not rebuild a manifest that
    /// verifies as the one the index names.
    fn manifest_from_delta(&self, update: &Update) -> Option<(Vec<u8>, Arc<Served>, u64)> {
        let active = lock(&self.core)
            .state()
            .packages
            .get(&update.package)?
            .active
            .clone()?;
        if active.manifest == update.to.manifest {
            return None;
        }
        let base = self.store.read_manifest(&active.manifest).ok()?;
        let path = paths::manifest_delta_path(&update.to.manifest, &active.manifest);
        let (delta, wire) = self.get_manifest(&path).ok()?;
        let (bytes, release) = self
            .releases
            .rebuild(
                &delta,
                &base,
                &active.manifest,
                &update.to.manifest,
                &update.package,
                &update.to.version,
            )
            .ok()?;
        Some((bytes, release, wire))
    }

    /// GETs a manifest or release delta, zstd-encoded if the server will, and returns it decoded
    /// (never above [`MAX_MANIFEST_BYTES`], whatever the frame) with the bytes on the wire.
    fn get_manifest(&self, path: &str) -> Result<(Vec<u8>, u64)> {
        let headers = [("Accept-Encoding".to_owned(), "zstd".to_owned())];
        let response = self
            .net
            .request("GET", path, &headers, Vec::new(), MAX_MANIFEST_BYTES)?;
        if response.status != 200 {
            return Err(Error::Network(format!(
                "GET {path}: HTTP {}",
                response.status
            )));
        }
        let wire = response.body.len() as u64;
        let body = match response.header("content-encoding").map(str::trim) {
            None | Some("identity") => response.body,
            Some(coding) if coding.eq_ignore_ascii_case("zstd") => {
                manifests::decode_bounded(&response.body, MAX_MANIFEST_BYTES).map_err(
                    |e| match e {
                        manifests::DecodeError::DeclaredSize { .. } => Error::TooLarge {
                            what: format!("GET {path} (decoded)"),
                            limit_bytes: MAX_MANIFEST_BYTES,
                        },
                        e => Error::Network(format!("GET {path}: the zstd body: {e}")),
                    },
                )?
            }
            Some(coding) => {
                return Err(Error::Network(format!(
                    "GET {path}: unexpected Content-Encoding {coding:?}"
                )));
            }
        };
        Ok((body, wire))
    }

    /// Claims `served`'s blobs and manifest, then looks once for the blobs the device lacks.
    fn prepare(&self, update: &Update, served: Arc<Served>, manifest_bytes: u64) -> Prepared<'_> {
        let blobs = served.blobs();
        let (claim, missing) = self.claim(&blobs, update.to.manifest);
        Prepared {
            blobs,
            missing,
            manifest_bytes,
            served,
            _claim: claim,
        }
    }

    fn install_release(&self, update: &Update, prepared: &Prepared<'_>) -> Result<Report> {
        // A URL prefix belongs to one package of an app: a release that would answer for
        // another installed package's pages is refused, whoever signed it.
        if let Some((route, taken, owner)) = self
            .resolver
            .overlapping(&update.package, &prepared.served.route_prefixes())
        {
            return Err(Error::RouteTaken(Box::new(crate::error::RouteConflict {
                package: update.package.clone(),
                version: update.to.version.clone(),
                route,
                taken,
                owner,
            })));
        }
        let active = lock(&self.core)
            .state()
            .packages
            .get(&update.package)
            .and_then(|p| p.active.clone());
        let from_blobs: Vec<Digest> = active
            .as_ref()
            .map(|a| self.releases.blobs(a).into_keys().collect())
            .unwrap_or_default();
        let order = prepared.served.blob_order();
        let wanted = install::Wanted {
            package: &update.package,
            version: &update.to.version,
            manifest: update.to.manifest,
            blobs: &prepared.blobs,
            missing: &prepared.missing,
            order: &order,
            from_blobs: &from_blobs,
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
}
