//! Installing one release: fetch its signed manifest, then the blobs the device lacks — from a
//! diff pack, a full pack or one by one, falling back in that order — verifying each blob's sha256
//! before it is stored. The state switch that makes the release active is the caller's.

use std::collections::{BTreeMap, BTreeSet};

use manifests::{
    Digest, ExpectedPack, PackError, PackReader, PackageId, Release, ReleaseRef, TrustedKeys,
    verify_release,
};

use crate::error::{Error, Result};
use crate::net::Net;
use crate::store::{Installed, Store};

/// Largest signed manifest accepted.
pub const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;

/// How the blobs arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Everything was already on the device.
    Nothing,
    /// A diff pack from the active release.
    DiffPack,
    /// The full pack.
    FullPack,
    /// Blob by blob.
    Blobs,
}

/// What an install did.
#[derive(Clone, Debug)]
pub struct Report {
    /// The verified release.
    pub release: Release,
    /// How most bytes arrived.
    pub method: Method,
    /// Bytes downloaded (manifest, packs and blobs).
    pub downloaded_bytes: u64,
    /// Why a cheaper method was abandoned, if one was.
    pub fallbacks: Vec<String>,
}

/// Fetches (or reads) and verifies the signed manifest of `target`.
pub(crate) fn manifest(
    store: &Store,
    net: &Net,
    trusted: &TrustedKeys,
    package: &PackageId,
    target: &ReleaseRef,
) -> Result<(Release, Vec<u8>, u64)> {
    let (bytes, downloaded) = match store.read_manifest(&target.manifest) {
        Ok(bytes) => (bytes, 0),
        Err(_) => {
            let bytes = net.get(
                &format!("/v1/manifests/{}", target.manifest),
                MAX_MANIFEST_BYTES,
            )?;
            let n = bytes.len() as u64;
            (bytes, n)
        }
    };
    let verified = verify_release(&bytes, trusted, Some(&target.manifest))?;
    if verified.release.package != *package || verified.release.version != target.version {
        return Err(Error::BadPack(format!(
            "manifest {} is {}@{}, the index says {package}@{}",
            target.manifest, verified.release.package, verified.release.version, target.version
        )));
    }
    Ok((verified.release, bytes, downloaded))
}

/// Every blob of `release` (each once, however many paths share it), with its size.
pub(crate) fn blob_sizes(release: &Release) -> BTreeMap<Digest, u64> {
    release.files.values().map(|f| (f.sha256, f.size)).collect()
}

/// Brings every blob of `target` onto the device and stores its manifest.
pub(crate) fn install(
    store: &Store,
    net: &Net,
    trusted: &TrustedKeys,
    package: &PackageId,
    target: &ReleaseRef,
    active: Option<&Installed>,
) -> Result<Report> {
    let (release, manifest_bytes, mut downloaded) = manifest(store, net, trusted, package, target)?;
    let needed = blob_sizes(&release);
    let missing = |store: &Store| -> Vec<(Digest, u64)> {
        needed
            .iter()
            .filter(|(d, _)| !store.has_blob(d))
            .map(|(d, s)| (*d, *s))
            .collect()
    };
    let mut fallbacks = Vec::new();
    let mut method = Method::Nothing;
    let mut written = BTreeSet::new();

    if !missing(store).is_empty() {
        let mut done = false;
        if let Some(active) = active.filter(|a| a.version != target.version) {
            let path = format!(
                "/v1/packs/{package}/{}..{}.zip",
                active.version, target.version
            );
            match apply_pack(
                store,
                net,
                &path,
                &release,
                target.manifest,
                Some(active.manifest),
                &needed,
                &mut written,
            ) {
                Ok(n) => {
                    downloaded += n;
                    method = Method::DiffPack;
                    done = true;
                }
                Err(e) => fallbacks.push(format!("diff pack: {e}")),
            }
        }
        // One blob or two are cheaper alone than a pack; more go in the full pack.
        if !done && missing(store).len() > 2 {
            let path = format!("/v1/packs/{package}/{}.zip", target.version);
            match apply_pack(
                store,
                net,
                &path,
                &release,
                target.manifest,
                None,
                &needed,
                &mut written,
            ) {
                Ok(n) => {
                    downloaded += n;
                    method = Method::FullPack;
                }
                Err(e) => fallbacks.push(format!("full pack: {e}")),
            }
        }
        let rest = missing(store);
        if !rest.is_empty() && method == Method::Nothing {
            method = Method::Blobs;
        }
        for (digest, size) in rest {
            let bytes =
                net.get_resumable(&format!("/v1/blobs/{digest}"), size, &store.partial_dir())?;
            downloaded += bytes.len() as u64;
            store.write_blob(&digest, &bytes, "blob download")?;
            written.insert(digest);
        }
        store.sync_blob_dirs(&written)?;
    }
    store.write_manifest(&target.manifest, &manifest_bytes)?;
    Ok(Report {
        release,
        method,
        downloaded_bytes: downloaded,
        fallbacks,
    })
}

/// Downloads a pack and stores the blobs it carries; returns the bytes downloaded.
#[allow(clippy::too_many_arguments)]
fn apply_pack(
    store: &Store,
    net: &Net,
    path: &str,
    release: &Release,
    to_manifest: Digest,
    from_manifest: Option<Digest>,
    needed: &BTreeMap<Digest, u64>,
    written: &mut BTreeSet<Digest>,
) -> Result<u64> {
    let bytes = net.get_resumable(path, pack_limit(release), &store.partial_dir())?;
    let target = Target {
        release,
        to_manifest,
        from_manifest,
        needed,
    };
    unpack(store, &bytes, path, &target, written)?;
    Ok(bytes.len() as u64)
}

/// The most bytes a pack of `release` may have.
fn pack_limit(release: &Release) -> u64 {
    release
        .size_bytes()
        .saturating_mul(2)
        .saturating_add(1 << 20)
}

/// The release a pack must bring, and from which.
pub(crate) struct Target<'a> {
    /// The verified release.
    pub(crate) release: &'a Release,
    /// Its manifest's digest.
    pub(crate) to_manifest: Digest,
    /// The release a diff pack starts from; `None` for a full pack.
    pub(crate) from_manifest: Option<Digest>,
    /// Every blob of the release, with its size.
    pub(crate) needed: &'a BTreeMap<Digest, u64>,
}

/// Checks a pack against `target` with the manifests pack reader and stores, verified, every
/// blob it carries that the device lacks. `label` names the pack in errors.
pub(crate) fn unpack(
    store: &Store,
    bytes: &[u8],
    label: &str,
    target: &Target<'_>,
    written: &mut BTreeSet<Digest>,
) -> Result<()> {
    let Target {
        release,
        to_manifest,
        from_manifest,
        needed,
    } = *target;
    let bad = |e: PackError| match e {
        PackError::NotInRelease { .. } => Error::BadPack(format!(
            "{label}: {e} ({}@{})",
            release.package, release.version
        )),
        e => Error::BadPack(format!("{label}: {e}")),
    };
    let expected = ExpectedPack {
        to_manifest,
        from_manifest,
        blobs: needed,
    };
    let mut reader = PackReader::open(bytes, &expected).map_err(bad)?;
    let blobs = reader.blobs(
        |blob| !store.has_blob(blob),
        |base| store.read_blob(base).ok(),
    );
    for blob in blobs {
        let (sha256, bytes) = blob.map_err(bad)?;
        // The pack is only a hint: the store checks the sha256 the signed manifest lists.
        store.write_blob(&sha256, &bytes, label)?;
        written.insert(sha256);
    }
    Ok(())
}
