//! Packs: a full pack per release and diff packs between releases, built once, stored as blobs,
//! and served by version (`/v1/packs/{package}/{to}.zip`, `/v1/packs/{package}/{from}..{to}.zip`).
//!
//! Building is deterministic (sorted entries, fixed zip timestamps, single-threaded zstd), so two
//! replicas that build the same pack produce the same bytes. The format is `manifests::PackIndex`.

use std::io::{Cursor, Write};
use std::sync::Arc;

use manifests::{
    Digest, Encoding, PACK_DATA_ENTRY, PACK_FORMAT, PACK_INDEX_ENTRY, PackBlob, PackIndex,
    PackageId, Release, ReleaseVersion, plan_diff, to_canonical,
};
use zip::write::SimpleFileOptions;

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
            Some(v) if v == to => {
                return Err(Error::BadRequest(
                    "a diff pack needs two different releases".into(),
                ));
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
        let digest = self.blobs.put_bytes(&bytes).await?;
        let record = PackRecord {
            digest,
            size_bytes: bytes.len() as u64,
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

/// Builds the bytes of a pack.
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

    // Read what the pack needs: each fetched blob, and each patch base.
    let mut inputs = Vec::with_capacity(plan.fetch.len());
    for fetch in &plan.fetch {
        let target = read(&*blobs, &fetch.sha256).await?;
        let base = match fetch.base {
            Some(base) => Some(read(&*blobs, &base).await?),
            None => None,
        };
        inputs.push((fetch.clone(), target, base));
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
    blocking(move || encode(index_head, inputs)).await
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
    inputs: Vec<(manifests::Fetch, Vec<u8>, Option<Vec<u8>>)>,
) -> Result<Vec<u8>> {
    let mut solid = Vec::new();
    let mut patches = Vec::new();
    for (fetch, target, base) in inputs {
        let patched = match &base {
            Some(base) => {
                let p = delta::patch(base, &target)?;
                // Check what a device will do before shipping it.
                if delta::decode(&p, Some(base), fetch.size)? != target {
                    return Err(Error::Internal(format!(
                        "patch for {} does not rebuild it",
                        fetch.sha256
                    )));
                }
                // A patch that saves little may lose to whole compression among the other files.
                let worth =
                    p.len() * 2 <= target.len() || p.len() < delta::compress(&target)?.len();
                worth.then_some(p)
            }
            None => None,
        };
        match (patched, fetch.base) {
            (Some(p), Some(base)) => {
                let blob = PackBlob {
                    sha256: fetch.sha256,
                    size: fetch.size,
                    encoding: Encoding::Patch { base },
                };
                patches.push((blob, p));
            }
            _ => {
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
    index.blobs.extend(patches.iter().map(|(b, _)| b.clone()));
    index.validate()?;

    let zip_err = |e: zip::result::ZipError| Error::Internal(format!("writing pack: {e}"));
    let io_err = |e: std::io::Error| Error::Internal(format!("writing pack: {e}"));
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o644);
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    zip.start_file(PACK_INDEX_ENTRY, options).map_err(zip_err)?;
    zip.write_all(&to_canonical(&index)?).map_err(io_err)?;
    if !solid.is_empty() {
        let frame = delta::compress(&solid)?;
        zip.start_file(PACK_DATA_ENTRY, options).map_err(zip_err)?;
        zip.write_all(&frame).map_err(io_err)?;
    }
    for (blob, p) in &patches {
        let name = blob.patch_entry().unwrap_or_default();
        zip.start_file(name, options).map_err(zip_err)?;
        zip.write_all(p).map_err(io_err)?;
    }
    Ok(zip.finish().map_err(zip_err)?.into_inner())
}
