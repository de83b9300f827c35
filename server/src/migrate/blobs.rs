//! The blob side: every blob file and precompressed copy of the data directory that the target
//! lacks, hashed before it goes up and read back after.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use manifests::{Digest, Hasher};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::source::Source;
use super::{BlobReport, MigrateError};
use crate::blob_store::{BlobStore, StoredBlob};
use crate::error::{Error, Result};

/// Blobs copied at once: uploads wait on the network, not the CPU.
const BLOBS_IN_FLIGHT: usize = 8;

/// Damaged files named in the error; the rest are counted.
const DAMAGED_SHOWN: usize = 10;

/// How often a long blob copy logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// What copying one blob (and its representations) did.
#[derive(Debug, Default)]
struct BlobOutcome {
    copied_bytes: Option<u64>,
    skipped_bytes: Option<u64>,
    replaced: bool,
    variants_copied: u64,
    variants_skipped: u64,
    /// Damaged source files found, described.
    damaged: Vec<String>,
}

/// Copies every blob file of the data directory that the target lacks, then checks that every
/// blob the metadata names is in the target.
pub(super) async fn copy_blobs(
    source: &Source,
    target: &dyn BlobStore,
    referenced: &BTreeMap<Digest, String>,
) -> Result<BlobReport> {
    // Hard links to the blob files, which a put moves or removes; in the staging area `serve`
    // empties at start.
    let staging = source.dir.join("tmp").join("migrate");
    reset_dir(&staging)?;
    let copied = copy_files(source, &staging, target).await;
    remove_dir(&staging)?;
    let (report, damaged, in_target) = copied?;
    if !damaged.is_empty() {
        let count = damaged.len();
        let mut list = damaged
            .iter()
            .take(DAMAGED_SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
        if count > DAMAGED_SHOWN {
            list.push_str(&format!("; and {} more", count - DAMAGED_SHOWN));
        }
        return Err(MigrateError::DamagedBlobs {
            dir: source.blob_dir(),
            count,
            list,
        }
        .into());
    }
    if let Some((digest, by)) = referenced.iter().find(|(d, _)| !in_target.contains(d)) {
        return Err(MigrateError::MissingBlob {
            by: by.clone(),
            digest: *digest,
            dir: source.blob_dir(),
        }
        .into());
    }
    Ok(report)
}

/// Copies the blob files, a few at once; returns the counts, the damaged files found and every
/// blob the target holds now.
async fn copy_files(
    source: &Source,
    staging: &Path,
    target: &dyn BlobStore,
) -> Result<(BlobReport, Vec<String>, BTreeSet<Digest>)> {
    let listed = source.blobs.list().await?;
    let present: BTreeMap<Digest, StoredBlob> = target
        .list()
        .await?
        .into_iter()
        .map(|b| (b.digest, b))
        .collect();
    let total = listed.len();
    tracing::info!(blobs = total, in_target = present.len(), "copying blobs");
    let mut report = BlobReport::default();
    let mut damaged = Vec::new();
    let mut in_target: BTreeSet<Digest> = present
        .values()
        .filter(|b| b.size_bytes.is_some())
        .map(|b| b.digest)
        .collect();
    let mut results = futures::stream::iter(&listed)
        .map(|blob| copy_blob(source, staging, target, blob, present.get(&blob.digest)))
        .buffer_unordered(BLOBS_IN_FLIGHT);
    let (mut done, mut logged) = (0, Instant::now());
    while let Some(outcome) = results.next().await {
        let (digest, outcome) = outcome?;
        if let Some(bytes) = outcome.copied_bytes {
            report.copied += 1;
            report.copied_bytes += bytes;
            in_target.insert(digest);
        }
        if let Some(bytes) = outcome.skipped_bytes {
            report.skipped += 1;
            report.skipped_bytes += bytes;
        }
        report.replaced += u64::from(outcome.replaced);
        report.variants_copied += outcome.variants_copied;
        report.variants_skipped += outcome.variants_skipped;
        damaged.extend(outcome.damaged);
        done += 1;
        if logged.elapsed() >= PROGRESS_EVERY {
            tracing::info!(done, total, copied = report.copied, "copying blobs");
            logged = Instant::now();
        }
    }
    Ok((report, damaged, in_target))
}

/// Copies one blob unless the target holds it with the right size, then its representations.
async fn copy_blob(
    source: &Source,
    staging: &Path,
    target: &dyn BlobStore,
    blob: &StoredBlob,
    there: Option<&StoredBlob>,
) -> Result<(Digest, BlobOutcome)> {
    let digest = blob.digest;
    let mut out = BlobOutcome::default();
    // Only representations, left by an interrupted removal of a blob nothing names: not copied.
    let Some(size) = blob.size_bytes else {
        return Ok((digest, out));
    };
    match there.and_then(|t| t.size_bytes) {
        Some(n) if n == size => out.skipped_bytes = Some(size),
        other => {
            if let Some(n) = other {
                // Names are sha256s, so a copy of another size is damaged: replaced.
                tracing::warn!(%digest, size, target_size = n, "the target's copy has another size; replacing it");
                target
                    .remove(&[StoredBlob {
                        digest,
                        size_bytes: Some(n),
                        variants: Vec::new(),
                    }])
                    .await?;
                out.replaced = true;
            }
            let path = source.blobs.path_of(&digest);
            let staged = staging.join(digest.to_string());
            link_or_copy(&path, &staged)?;
            let (actual, actual_size) = hash_file(&staged).await?;
            if actual != digest {
                remove_file(&staged)?;
                out.damaged.push(format!(
                    "blob {digest} ({}): its {actual_size} bytes have sha256 {actual}",
                    path.display()
                ));
                return Ok((digest, out));
            }
            target.put_file(&staged, &digest).await?;
            check_arrival(target, &digest, size).await?;
            out.copied_bytes = Some(size);
        }
    }
    for (encoding, variant_size) in &blob.variants {
        let there_size = there
            .and_then(|t| t.variants.iter().find(|(e, _)| e == encoding))
            .map(|(_, n)| *n);
        if there_size == Some(*variant_size) && !out.replaced {
            out.variants_skipped += 1;
            continue;
        }
        match copy_variant(source, target, &digest, encoding).await? {
            Ok(true) => out.variants_copied += 1,
            Ok(false) => {}
            Err(damage) => out.damaged.push(damage),
        }
    }
    Ok((digest, out))
}

/// Reads a blob back from the target; removes it and fails unless it is `digest`'s `size` bytes.
pub(super) async fn check_arrival(
    target: &dyn BlobStore,
    digest: &Digest,
    size: u64,
) -> Result<()> {
    let (actual, actual_size) = match target.read(digest, None).await? {
        Some(read) => hash_reader(read.reader, &format!("reading back blob {digest}")).await?,
        None => (Digest::of(b""), 0),
    };
    if actual == *digest && actual_size == size {
        return Ok(());
    }
    target
        .remove(&[StoredBlob {
            digest: *digest,
            size_bytes: Some(actual_size),
            variants: Vec::new(),
        }])
        .await?;
    Err(MigrateError::ArrivedDamaged {
        what: format!("blob {digest}"),
        size,
        actual,
        actual_size,
        action: "removed it",
    }
    .into())
}

/// Copies a precompressed representation after checking that it decodes to the blob; `Ok(false)`
/// when it is gone from the data directory since it was listed, `Err(description)` when damaged.
async fn copy_variant(
    source: &Source,
    target: &dyn BlobStore,
    digest: &Digest,
    encoding: &str,
) -> Result<std::result::Result<bool, String>> {
    let what = format!("{encoding} representation of blob {digest}");
    let Some(read) = source.blobs.read_variant(digest, encoding).await? else {
        return Ok(Ok(false));
    };
    let mut bytes = Vec::new();
    let mut reader = read.reader;
    reader
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| Error::io(format!("reading the {what}"), e))?;
    if encoding == "gzip" {
        let mut hasher = Hasher::new();
        let decoded = std::io::copy(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut hasher);
        let path = source.blobs.variant_path(digest, encoding);
        match decoded {
            Ok(_) => {
                let actual = hasher.finish();
                if actual != *digest {
                    return Ok(Err(format!(
                        "{what} (in {}): decodes to sha256 {actual}",
                        path.display()
                    )));
                }
            }
            Err(e) => {
                return Ok(Err(format!(
                    "{what} (in {}): not valid gzip ({e})",
                    path.display()
                )));
            }
        }
    }
    let sent = Digest::of(&bytes);
    // A representation has no name of its own to check against: read back and compared with
    // what was sent, written once more if it differs.
    for _ in 0..2 {
        target.put_variant(digest, encoding, &bytes).await?;
        let (actual, actual_size) = match target.read_variant(digest, encoding).await? {
            Some(read) => hash_reader(read.reader, &format!("reading back the {what}")).await?,
            None => (Digest::of(b""), 0),
        };
        if actual == sent && actual_size == bytes.len() as u64 {
            return Ok(Ok(true));
        }
        tracing::warn!(%digest, encoding, "a representation read back differently; writing it again");
    }
    let (actual, actual_size) = match target.read_variant(digest, encoding).await? {
        Some(read) => hash_reader(read.reader, &format!("reading back the {what}")).await?,
        None => (Digest::of(b""), 0),
    };
    Err(MigrateError::ArrivedDamaged {
        what,
        size: bytes.len() as u64,
        actual,
        actual_size,
        action: "it was written twice",
    }
    .into())
}

/// The sha256 and length of a file.
async fn hash_file(path: &Path) -> Result<(Digest, u64)> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    hash_reader(Box::pin(file), &format!("reading {}", path.display())).await
}

/// The sha256 and length of what a reader yields.
async fn hash_reader(
    mut reader: std::pin::Pin<Box<dyn AsyncRead + Send>>,
    context: &str,
) -> Result<(Digest, u64)> {
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = reader
            .read(&mut buf)
            .await
            .map_err(|e| Error::io(context.to_owned(), e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hasher.finish(), total))
}

/// A hard link to `from` at `to`, or a copy where links are not possible.
fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| Error::io(format!("copying {} to {}", from.display(), to.display()), e))
}

fn remove_file(path: &Path) -> Result<()> {
    std::fs::remove_file(path).map_err(|e| Error::io(format!("removing {}", path.display()), e))
}

fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", dir.display()), e)),
    }
}

/// An empty directory at `dir` (what an interrupted run left there removed).
fn reset_dir(dir: &Path) -> Result<()> {
    remove_dir(dir)?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))
}
