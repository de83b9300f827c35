//! Installing one verified release: the blobs the device lacks — from a diff pack, a full pack or
//! one by one, falling back in that order — each blob's sha256 checked before it is stored. The
//! state switch that makes the release active is the caller's.

use std::collections::{BTreeMap, BTreeSet};

use manifests::{
    Digest, ExpectedPack, PackError, PackName, PackReader, PackageId, ReleaseVersion, paths,
};

use crate::error::{Error, Result};
use crate::net::Net;
use crate::store::{BlobWriter, Installed, Store};

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

/// What an install must bring: one verified release's blobs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Wanted<'a> {
    /// The package.
    pub(crate) package: &'a PackageId,
    /// The release.
    pub(crate) version: &'a ReleaseVersion,
    /// The digest of its signed manifest.
    pub(crate) manifest: Digest,
    /// Every blob of the release (each once), with its size.
    pub(crate) blobs: &'a BTreeMap<Digest, u64>,
    /// The blobs the device lacked when the caller looked, after claiming them all (so none of
    /// the others can have gone since).
    pub(crate) missing: &'a BTreeMap<Digest, u64>,
    /// Every blob of the release, each once, in the order of its first path: what a pack
    /// delivers, in order.
    pub(crate) order: &'a [Digest],
    /// The blobs of the release the device has active, sorted: what a diff pack from it does
    /// not deliver. Empty without one (or when the device does not know its blobs).
    pub(crate) from_blobs: &'a [Digest],
}

impl Wanted<'_> {
    /// What is still missing after `written` arrived: each blob stat-ed once per install.
    fn rest(&self, written: &BTreeSet<Digest>) -> Vec<(Digest, u64)> {
        let rest = self.missing.iter().filter(|(d, _)| !written.contains(d));
        rest.map(|(d, s)| (*d, *s)).collect()
    }

    /// The most bytes a pack of the release may have.
    fn pack_limit(&self) -> u64 {
        let total: u64 = self.blobs.values().sum();
        total.saturating_mul(2).saturating_add(1 << 20)
    }
}

/// Brings every blob of `wanted` onto the device: from a diff pack from `active`, else the full
/// pack, else one by one. The caller verified the release and stores its manifest; the state
/// switch is the caller's too.
pub(crate) fn install(
    store: &Store,
    net: &Net,
    wanted: &Wanted<'_>,
    active: Option<&Installed>,
) -> Result<Report> {
    let mut report = Report {
        method: Method::Nothing,
        downloaded_bytes: 0,
        fallbacks: Vec::new(),
    };
    if wanted.missing.is_empty() {
        return Ok(report);
    }
    let mut writer = store.blob_writer();
    let fetched = fetch_all(store, net, wanted, active, &mut writer, &mut report);
    // Blobs verified before a failure stay for the next try, durably like the rest.
    let finished = writer.finish();
    fetched?;
    finished?;
    Ok(report)
}

/// The blobs of `wanted`: from the packs, then one by one, into `writer`.
fn fetch_all(
    store: &Store,
    net: &Net,
    wanted: &Wanted<'_>,
    active: Option<&Installed>,
    writer: &mut BlobWriter<'_>,
    report: &mut Report,
) -> Result<()> {
    let (package, to) = (wanted.package, wanted.version);
    // A compact diff pack delivers what the active release lacks, so the device must know its
    // blobs (it does for every release it serves).
    let diff = active
        .filter(|a| a.version != *to && !wanted.from_blobs.is_empty())
        .map(|active| {
            let name = PackName::Diff {
                from: active.version.clone(),
                to: to.clone(),
            };
            (name, Some(active.manifest), Method::DiffPack)
        });
    // One blob or two are cheaper alone than a pack; more go in the full pack.
    let full = (wanted.missing.len() > 2)
        .then(|| (PackName::Full { to: to.clone() }, None, Method::FullPack));
    for (name, from_manifest, method) in diff.into_iter().chain(full) {
        if report.method != Method::Nothing {
            break;
        }
        let path = paths::compact_pack_path(package, &name);
        let mut applied = apply_pack(store, net, &path, wanted, from_manifest, writer);
        if let Err(Error::NotFound(why)) = &applied {
            // A server from before the compact container has the same pack as a zip.
            report.fallbacks.push(format!("{}: {why}", label(method)));
            let zip = paths::pack_path(package, &name);
            applied = apply_pack(store, net, &zip, wanted, from_manifest, writer);
        }
        match applied {
            Ok((n, full)) => {
                report.downloaded_bytes += n;
                // A tiny release's diff request is answered with its full pack.
                report.method = if full { Method::FullPack } else { method };
            }
            Err(e) => report.fallbacks.push(format!("{}: {e}", label(method))),
        }
    }
    let rest = wanted.rest(writer.written());
    if !rest.is_empty() && report.method == Method::Nothing {
        report.method = Method::Blobs;
    }
    for (digest, size) in rest {
        let path = paths::blob_path(&digest);
        let bytes = net.get_resumable(&path, size, &store.partial_dir())?;
        report.downloaded_bytes += bytes.len() as u64;
        writer.write(&digest, &bytes, "blob download")?;
    }
    Ok(())
}

fn label(method: Method) -> &'static str {
    match method {
        Method::DiffPack => "diff pack",
        _ => "full pack",
    }
}

/// Stores every blob of `wanted` that the device lacks from `full_pack` (a preset shipped in the
/// app), verified; fails unless every blob is then present.
pub(crate) fn unpack_all(
    store: &Store,
    full_pack: &[u8],
    label: &str,
    wanted: &Wanted<'_>,
) -> Result<()> {
    if wanted.missing.is_empty() {
        return Ok(());
    }
    let mut writer = store.blob_writer();
    unpack(store, full_pack, label, wanted, None, &mut writer)?;
    if let Some((missing, _)) = wanted.rest(writer.written()).first() {
        return Err(Error::BadPack(format!(
            "{label}: blob {missing} is missing"
        )));
    }
    writer.finish().map(drop)
}

/// Downloads a pack and stores the blobs it carries; returns the bytes downloaded and whether
/// the pack was a full one.
fn apply_pack(
    store: &Store,
    net: &Net,
    path: &str,
    wanted: &Wanted<'_>,
    from_manifest: Option<Digest>,
    writer: &mut BlobWriter<'_>,
) -> Result<(u64, bool)> {
    let bytes = net.get_pack(path, wanted.pack_limit(), &store.partial_dir())?;
    let full = unpack(store, &bytes, path, wanted, from_manifest, writer)?;
    Ok((bytes.len() as u64, full))
}

/// Checks a pack against `wanted` (a diff pack from `from_manifest`, or a full pack) and stores,
/// verified, every blob it carries that the device lacks; returns whether it was a full pack.
/// `label` names the pack in errors.
fn unpack(
    store: &Store,
    bytes: &[u8],
    label: &str,
    wanted: &Wanted<'_>,
    from_manifest: Option<Digest>,
    writer: &mut BlobWriter<'_>,
) -> Result<bool> {
    let bad = |e: PackError| match e {
        PackError::NotInRelease { .. } => Error::BadPack(format!(
            "{label}: {e} ({}@{})",
            wanted.package, wanted.version
        )),
        e => Error::BadPack(format!("{label}: {e}")),
    };
    let expected = ExpectedPack {
        to_manifest: wanted.manifest,
        from_manifest,
        blobs: wanted.blobs,
        order: wanted.order,
        from_blobs: if from_manifest.is_some() {
            wanted.from_blobs
        } else {
            &[]
        },
    };
    let mut reader = PackReader::open(bytes, &expected).map_err(bad)?;
    let full = reader.is_full();
    // `missing` was looked up once, after the claim: the other blobs are there and stay.
    let already = writer.written().clone();
    let blobs = reader.blobs(
        |blob| wanted.missing.contains_key(blob) && !already.contains(blob),
        |base| store.read_blob(base).ok(),
    );
    for blob in blobs {
        let (sha256, bytes) = blob.map_err(bad)?;
        // The pack is only a hint: the writer checks the sha256 the signed manifest lists.
        writer.write(&sha256, &bytes, label)?;
    }
    Ok(full)
}
