//! Installing one verified release: the blobs the device lacks — from a diff pack, a full pack or
//! one by one, falling back in that order — each blob's sha256 checked before it is stored. The
//! state switch that makes the release active is the caller's.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Cursor, Read};

use manifests::{
    Digest, Encoding, PACK_DATA_ENTRY, PACK_INDEX_ENTRY, PackIndex, Release, ReleaseRef,
};

use crate::decode;
use crate::error::{Error, Result};
use crate::net::Net;
use crate::releases::blob_sizes;
use crate::store::{Installed, Store};

/// Largest `pack.json` accepted.
const MAX_PACK_INDEX_BYTES: u64 = 16 * 1024 * 1024;

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
    /// How most bytes arrived.
    pub method: Method,
    /// Bytes downloaded (manifest, packs and blobs).
    pub downloaded_bytes: u64,
    /// Why a cheaper method was abandoned, if one was.
    pub fallbacks: Vec<String>,
}

/// Brings every blob of `release` (manifest `target`) onto the device: from a diff pack from
/// `active`, else the full pack, else one by one. The caller verified the release and stores its
/// manifest; the state switch is the caller's too.
pub(crate) fn install(
    store: &Store,
    net: &Net,
    release: &Release,
    target: &ReleaseRef,
    active: Option<&Installed>,
) -> Result<Report> {
    let package = &release.package;
    let needed = blob_sizes(release);
    let missing = |store: &Store| -> Vec<(Digest, u64)> {
        needed
            .iter()
            .filter(|(d, _)| !store.has_blob(d))
            .map(|(d, s)| (*d, *s))
            .collect()
    };
    let mut report = Report {
        method: Method::Nothing,
        downloaded_bytes: 0,
        fallbacks: Vec::new(),
    };
    if missing(store).is_empty() {
        return Ok(report);
    }
    let mut written = BTreeSet::new();
    let diff = active
        .filter(|a| a.version != target.version)
        .map(|active| {
            let path = format!(
                "/v1/packs/{package}/{}..{}.zip",
                active.version, target.version
            );
            (path, Some(active.manifest), Method::DiffPack)
        });
    // One blob or two are cheaper alone than a pack; more go in the full pack.
    let full = (missing(store).len() > 2).then(|| {
        let path = format!("/v1/packs/{package}/{}.zip", target.version);
        (path, None, Method::FullPack)
    });
    for (path, from_manifest, method) in diff.into_iter().chain(full) {
        if method == Method::FullPack && report.method == Method::DiffPack {
            break;
        }
        let target = Target {
            release,
            to_manifest: target.manifest,
            from_manifest,
            needed: &needed,
        };
        match apply_pack(store, net, &path, &target, &mut written) {
            Ok(n) => {
                report.downloaded_bytes += n;
                report.method = method;
            }
            Err(e) => report.fallbacks.push(format!("{}: {e}", label(method))),
        }
    }
    let rest = missing(store);
    if !rest.is_empty() && report.method == Method::Nothing {
        report.method = Method::Blobs;
    }
    for (digest, size) in rest {
        let bytes =
            net.get_resumable(&format!("/v1/blobs/{digest}"), size, &store.partial_dir())?;
        report.downloaded_bytes += bytes.len() as u64;
        store.write_blob(&digest, &bytes, "blob download")?;
        written.insert(digest);
    }
    store.sync_blob_dirs(&written)?;
    Ok(report)
}

fn label(method: Method) -> &'static str {
    match method {
        Method::DiffPack => "diff pack",
        _ => "full pack",
    }
}

/// Stores every blob of `release` that the device lacks from `full_pack` (a preset shipped in
/// the app), verified; fails unless every blob is then present.
pub(crate) fn unpack_all(
    store: &Store,
    full_pack: &[u8],
    label: &str,
    release: &Release,
    to_manifest: Digest,
) -> Result<()> {
    let needed = blob_sizes(release);
    if needed.keys().all(|d| store.has_blob(d)) {
        return Ok(());
    }
    let target = Target {
        release,
        to_manifest,
        from_manifest: None,
        needed: &needed,
    };
    let mut written = BTreeSet::new();
    unpack(store, full_pack, label, &target, &mut written)?;
    if let Some(missing) = needed.keys().find(|d| !store.has_blob(d)) {
        return Err(Error::BadPack(format!(
            "{label}: blob {missing} is missing"
        )));
    }
    store.sync_blob_dirs(&written)
}

/// Downloads a pack and stores the blobs it carries; returns the bytes downloaded.
fn apply_pack(
    store: &Store,
    net: &Net,
    path: &str,
    target: &Target<'_>,
    written: &mut BTreeSet<Digest>,
) -> Result<u64> {
    let bytes = net.get_resumable(path, pack_limit(target.release), &store.partial_dir())?;
    unpack(store, &bytes, path, target, written)?;
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

/// Checks a pack against `target` and stores, verified, every blob it carries that the device
/// lacks. `label` names the pack in errors.
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
    let path = label;
    let limit = pack_limit(release);
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| Error::BadPack(format!("{path}: not a zip: {e}")))?;
    let index = read_index(&mut archive, path)?;
    if index.to_manifest != to_manifest || index.from_manifest != from_manifest {
        return Err(Error::BadPack(format!(
            "{path}: pack is for other releases"
        )));
    }
    // Only the entries the format names; anything else (a path like `../x`) is refused.
    let expected: BTreeSet<String> = [PACK_INDEX_ENTRY.to_owned(), PACK_DATA_ENTRY.to_owned()]
        .into_iter()
        .chain(index.blobs.iter().filter_map(|b| b.patch_entry()))
        .collect();
    for name in archive.file_names() {
        let name = name.map_err(|e| Error::BadPack(format!("{path}: entry name: {e}")))?;
        if !expected.contains(name.as_ref()) {
            return Err(Error::BadPack(format!("{path}: unexpected entry {name:?}")));
        }
    }
    for blob in &index.blobs {
        if needed.get(&blob.sha256) != Some(&blob.size) {
            return Err(Error::BadPack(format!(
                "{path}: blob {} is not a file of {}@{}",
                blob.sha256, release.package, release.version
            )));
        }
    }
    let solid_size = index.solid_size();
    let solid = if solid_size > 0 {
        let frame = read_entry(&mut archive, PACK_DATA_ENTRY, limit, path)?;
        decode::decode_frame(&frame, solid_size)
            .map_err(|e| Error::BadPack(format!("{path}: {e}")))?
    } else {
        Vec::new()
    };
    for blob in &index.blobs {
        if store.has_blob(&blob.sha256) {
            continue;
        }
        let bytes = match &blob.encoding {
            Encoding::Solid { offset } => {
                let start =
                    usize::try_from(*offset).map_err(|_| Error::BadPack("offset".into()))?;
                let end = start
                    .checked_add(
                        usize::try_from(blob.size).map_err(|_| Error::BadPack("size".into()))?,
                    )
                    .ok_or_else(|| Error::BadPack("size".into()))?;
                solid
                    .get(start..end)
                    .ok_or_else(|| Error::BadPack(format!("{path}: solid data too short")))?
                    .to_vec()
            }
            Encoding::Patch { base } => {
                let frame = read_entry(
                    &mut archive,
                    &blob.patch_entry().unwrap_or_default(),
                    limit,
                    path,
                )?;
                let base_bytes = store.read_blob(base).map_err(|_| {
                    Error::BadPack(format!("{path}: patch base {base} is not on the device"))
                })?;
                decode::decode_patch(&frame, &base_bytes, blob.size)
                    .map_err(|e| Error::BadPack(format!("{path}: {e}")))?
            }
            _ => return Err(Error::BadPack(format!("{path}: unknown encoding"))),
        };
        store.write_blob(&blob.sha256, &bytes, path)?;
        written.insert(blob.sha256);
    }
    Ok(())
}

fn read_index(archive: &mut zip::ZipArchive<Cursor<&[u8]>>, path: &str) -> Result<PackIndex> {
    let bytes = read_entry(archive, PACK_INDEX_ENTRY, MAX_PACK_INDEX_BYTES, path)?;
    manifests::parse_pack_index(&bytes)
        .map_err(|e| Error::BadPack(format!("{path}: pack.json: {e}")))
}

fn read_entry(
    archive: &mut zip::ZipArchive<Cursor<&[u8]>>,
    name: &str,
    limit: u64,
    path: &str,
) -> Result<Vec<u8>> {
    let entry = archive
        .by_name(name)
        .map_err(|e| Error::BadPack(format!("{path}: {name}: {e}")))?;
    let mut out = Vec::new();
    entry
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| Error::BadPack(format!("{path}: {name}: {e}")))?;
    if out.len() as u64 > limit {
        return Err(Error::BadPack(format!("{path}: {name} is too large")));
    }
    Ok(out)
}
