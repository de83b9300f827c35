//! Packs: a full pack per release and diff packs between releases, built once, stored as blobs,
//! and served by version (`/v1/packs/{package}/{to}.zip`, `/v1/packs/{package}/{from}..{to}.zip`).
//!
//! Building is deterministic (sorted entries, fixed zip timestamps, single-threaded zstd), so two
//! replicas that build the same pack produce the same bytes. The container is written by
//! `manifests::write_pack`, and every pack is read back with `manifests::PackReader`, the
//! device's reader and decoder, before it is stored: a pack devices cannot read is never served.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use manifests::{
    Digest, Encoding, ExpectedPack, Fetch, PACK_FORMAT, PackBlob, PackIndex, PackReader, PackageId,
    Release, ReleaseVersion, plan_diff, write_pack,
};

use crate::blob_store::BlobStore;
use crate::blob_store::fs::blocking;
use crate::error::{Error, Result};
use crate::meta_store::{PackRecord, ReleaseRecord};
use crate::service::Service;

pub mod delta;

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

impl Service {
    /// The pack from `from` (none: full pack) to `to`, built now if it was not built before.
    pub async fn pack(
        &self,
        package: &PackageId,
        from: Option<&ReleaseVersion>,
        to: &ReleaseVersion,
    ) -> Result<PackRecord> {
        if let Some(record) = self.meta.pack(package, from, to).await? {
            return Ok(record);
        }
        let to_record = self
            .meta
            .release(package, to)
            .await?
            .ok_or_else(|| Error::NotFound(format!("release {package}@{to}")))?;
        let from_record = match from {
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
        // One build per pack at a time; whoever waited finds it built.
        let _guard = self
            .publish_lock(&format!(
                "pack:{package}:{}:{to}",
                from.map(ToString::to_string).unwrap_or_default()
            ))
            .await;
        if let Some(record) = self.meta.pack(package, from, to).await? {
            return Ok(record);
        }
        let bytes = {
            let _permit = self
                .pack_builds
                .acquire()
                .await
                .map_err(|_| Error::Internal("pack builder closed".into()))?;
            let started = std::time::Instant::now();
            let bytes = build(self.blobs.clone(), from_record.as_ref(), &to_record).await?;
            self.metrics.pack_builds.inc();
            self.metrics
                .pack_build_seconds
                .observe(started.elapsed().as_secs_f64());
            bytes
        };
        // A diff that carries most of a release (a tiny release, or one that changed whole) may
        // be no smaller than the full pack: then the full pack answers for it, so a device asking
        // for the diff downloads the smaller one with its one request.
        let size_bytes = bytes.len() as u64;
        let release_bytes = release_of(&to_record)?.size_bytes();
        let mut full = None;
        if from.is_some() && size_bytes.saturating_mul(4) >= release_bytes {
            let built = Box::pin(self.pack(package, None, to)).await?;
            full = Some(built).filter(|f| f.size_bytes <= size_bytes);
        }
        let record = match full {
            Some(full) => full,
            None => PackRecord {
                digest: self.blobs.put_bytes(&bytes).await?,
                size_bytes,
            },
        };
        self.meta.insert_pack(package, from, to, &record).await?;
        tracing::info!(
            %package,
            from = from.map(ToString::to_string).unwrap_or_else(|| "-".into()),
            %to,
            size_bytes = record.size_bytes,
            "pack built"
        );
        Ok(record)
    }

    /// Builds the diff packs to `to` from up to [`DIFF_PACKS_AT_PUBLISH`] earlier releases
    /// (newest first), then its full pack, then precompresses its text blobs, logging failures (a
    /// device falls back to blobs, or a request builds the pack). Diff packs go first: devices
    /// that already run the package, most of them, ask for one as soon as the release is out,
    /// and builds run one at a time.
    pub async fn build_packs_after_publish(
        self: Arc<Self>,
        package: PackageId,
        to: ReleaseVersion,
    ) {
        match self.meta.releases(&package).await {
            Ok(releases) => {
                let earlier = releases
                    .into_iter()
                    .map(|r| r.version)
                    .filter(|v| *v < to)
                    .take(DIFF_PACKS_AT_PUBLISH);
                for from in earlier {
                    if let Err(e) = self.pack(&package, Some(&from), &to).await {
                        tracing::error!(%package, %from, %to, error = %e, "building a diff pack failed");
                    }
                }
            }
            Err(e) => {
                tracing::error!(%package, error = %e, "listing releases for diff packs failed");
            }
        }
        if let Err(e) = self.pack(&package, None, &to).await {
            tracing::error!(%package, %to, error = %e, "building the full pack failed");
        }
        match self.precompress(&package, &to).await {
            Ok(n) => tracing::debug!(%package, %to, blobs = n, "precompressed"),
            Err(e) => tracing::error!(%package, %to, error = %e, "precompressing failed"),
        }
    }
}

/// Builds the bytes of a pack and checks them with the device's reader.
async fn build(
    blobs: Arc<dyn BlobStore>,
    from: Option<&ReleaseRecord>,
    to: &ReleaseRecord,
) -> Result<Vec<u8>> {
    let to_release = release_of(to)?;
    let from_release = from.map(release_of).transpose()?;
    let plan = plan_diff(
        from_release.as_ref().map(|r| &r.files),
        &to_release.files,
        |_| false,
    );

    // Read what the pack needs: each fetched blob, and each patch base once.
    let mut targets = Vec::with_capacity(plan.fetch.len());
    let mut bases = BTreeMap::new();
    for fetch in &plan.fetch {
        targets.push((fetch.clone(), read(&*blobs, &fetch.sha256).await?));
        if let Some(base) = fetch.base
            && !bases.contains_key(&base)
        {
            bases.insert(base, read(&*blobs, &base).await?);
        }
    }
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
    blocking(move || {
        let pack = encode(index_head, targets, &bases)?;
        let expected = ExpectedPack {
            to_manifest,
            from_manifest,
            blobs: &sizes,
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
                let p = delta::patch(base_bytes, &target)?;
                // A patch that saves little may lose to whole compression among the other files.
                let worth =
                    p.len() * 2 <= target.len() || p.len() < delta::compress(&target)?.len();
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
        Some(delta::compress(&solid)?)
    };
    write_pack(&index, data.as_deref(), &patches).map_err(|e| pack_error("writing", &e))
}

/// Reads `pack` back as a device does (the device's reader and decoder, with the old release's
/// blobs as patch bases) and checks that it brings every blob of `fetch`, each with the sha256
/// the target release lists.
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
    match fetch.iter().find(|f| !delivered.contains(&f.sha256)) {
        Some(missing) => Err(Error::Internal(format!(
            "pack lacks blob {}",
            missing.sha256
        ))),
        None => Ok(()),
    }
}

fn pack_error(what: &str, e: &manifests::PackError) -> Error {
    Error::Internal(format!("{what} pack: {e}"))
}

#[cfg(test)]
mod tests;
