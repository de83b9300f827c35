//! Every crash point of the file blob store, enumerated: publishes (with their packs and gzip
//! representations built after them) and a garbage collection run with the blob store's durable
//! file operations under a recorder (`durable_fs::model`), and every write to the metadata store
//! marked in the same log with what the metadata then refers to. For every operation k, in two
//! modes (a crash loses everything not yet fsynced; or it also tears the fsync it interrupts),
//! the files a crash before k would leave are written out and opened as a restarted server
//! opens them: every blob the metadata referred to at that point (releases' files and manifests,
//! packs) is there whole, every blob under its final name hashes to that name, every gzip
//! representation decodes to its blob, and no temp file survives the reopening. A publish is so
//! either whole or invisible: the metadata commit that makes it visible comes after its blobs
//! are durable. The metadata store itself (SQLite, atomic by its own journal) is not modelled.

#![allow(clippy::unwrap_used)]

#[path = "support/counting.rs"]
mod counting;
#[path = "support/harness.rs"]
mod harness;

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use durable_fs::model::{Crash, Op, Recorder};
use harness::{TestServer, build, zip_build};
use manifests::Digest;
use serde_json::json;
use server::blob_store::BlobStore;
use server::blob_store::fs::FsBlobStore;

/// How a mark of the log names what the metadata referred to.
const REFERS: &str = "refers to ";

#[test]
fn a_crash_at_any_file_operation_of_a_publish_or_collection_leaves_every_referenced_blob_whole() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::new(&dir.path().join("data/blobs")).unwrap();
    let counting = std::sync::OnceLock::new();
    let s = TestServer::start_on(
        dir,
        |meta| {
            let wrapped = counting::Counting::new(meta);
            counting.set(wrapped.clone()).unwrap();
            wrapped
        },
        recorder.clone(),
    );
    let counting = counting.get().unwrap();
    let marks = recorder.clone();
    counting.after_write(move |live| match live {
        Ok(live) => {
            let names: Vec<String> = live.iter().map(ToString::to_string).collect();
            marks.mark(format!("{REFERS}{}", names.join(",")));
        }
        Err(e) => marks.mark(format!("unreadable: {e}")),
    });

    // Three releases, each with files of its own and files it shares; the last on a channel.
    for (i, version) in ["1.0.0", "1.1.0", "1.2.0"].iter().enumerate() {
        let mut files = build(&format!("crash points {i}"));
        // Sixteen chunks, half of them changed by each release.
        for c in 0..16 {
            let generation = if c % 2 == 0 { 0 } else { i };
            files.push((
                format!("assets/chunk-{c}.js"),
                format!("export const chunk{c} = {generation};\n")
                    .repeat(200)
                    .into_bytes(),
            ));
        }
        let channel = if i == 2 { "&channel=production" } else { "" };
        let query = format!("version={version}&routes=https://m.example.com/app/{channel}");
        let r = s.publish(&s.admin, "shop", "app", &query, &zip_build(&files));
        assert_eq!(r.status, 201, "{version}: {}", r.text());
        // The packs a device would ask for, built and stored; the gzip representations too.
        for pack in [format!("{version}.zip")]
            .into_iter()
            .chain((i > 0).then(|| format!("1.{}.0..{version}.zip", i - 1)))
        {
            assert_eq!(
                s.admin_get(&format!("/v1/packs/app/{pack}")).status,
                200,
                "{pack}"
            );
        }
        s.settle_packs();
        counting.wait_idle(Duration::from_millis(500));
    }
    // The first two releases go, with what only they hold.
    let r = s.post_json(
        "/v1/admin/gc",
        &s.admin,
        &json!({"max_age_secs": 0, "dev_max_age_secs": 0, "history_depth": 1, "keep_last": 1}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["blobs"].as_u64().unwrap() > 0, "{}", r.text());
    drop(s);

    let ops = recorder.ops();
    if std::env::var_os("BALEEN_DUMP_OPS").is_some() {
        for (i, op) in ops.iter().enumerate() {
            match op {
                Op::SyncFile(p, b) => {
                    eprintln!("{i}: SyncFile({}, {} bytes)", p.display(), b.len())
                }
                Op::Mark(m) => eprintln!("{i}: Mark({})", &m[..m.len().min(60)]),
                other => eprintln!("{i}: {other:?}"),
            }
        }
    }
    let removals = ops
        .iter()
        .filter(|op| matches!(op, Op::RemoveFile(_)))
        .count();
    assert!(removals > 0, "the collection removed no file");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Hundreds of small images: in memory where the machine has a tmpfs.
    let shm = Path::new("/dev/shm");
    let scratch = match shm.is_dir() {
        true => tempfile::tempdir_in(shm),
        false => tempfile::tempdir(),
    }
    .unwrap();
    let mut referenced_max = 0;
    for k in 0..=ops.len() {
        let referenced: BTreeSet<Digest> = ops[..k]
            .iter()
            .filter_map(|op| match op {
                Op::Mark(note) => Some(note),
                _ => None,
            })
            .next_back()
            .map(|note| {
                let list = note
                    .strip_prefix(REFERS)
                    .unwrap_or_else(|| panic!("before operation {k}: {note}"));
                list.split(',')
                    .filter(|d| !d.is_empty())
                    .map(|d| Digest::parse(d).unwrap())
                    .collect()
            })
            .unwrap_or_default();
        referenced_max = referenced_max.max(referenced.len());
        for crash in [Crash::Clean, Crash::Torn] {
            let at = format!("crash before operation {k} of {} ({crash:?})", ops.len());
            let root = scratch.path().join(format!("{k}-{crash:?}"));
            recorder.crash_image(k, crash).write_to(&root).unwrap();
            check(&runtime, &root, &referenced, &at);
            std::fs::remove_dir_all(&root).unwrap();
        }
    }
    eprintln!(
        "{} file operations ({removals} removals), {} crash images checked, up to {referenced_max} \
         blobs referenced",
        ops.len(),
        2 * (ops.len() + 1)
    );
    assert!(
        referenced_max > 10,
        "too few blobs referenced: {referenced_max}"
    );
}

/// The invariants of a blob directory a crash left, opened as a restarted server opens it.
fn check(runtime: &tokio::runtime::Runtime, root: &Path, referenced: &BTreeSet<Digest>, at: &str) {
    let store = FsBlobStore::open(root).unwrap_or_else(|e| panic!("{at}: does not open: {e}"));
    let tmp: Vec<_> = std::fs::read_dir(root.join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "{at}: temp files survive the reopening");
    let stored = runtime.block_on(store.list()).unwrap();
    let path = |digest: &Digest| {
        let hex = digest.to_string();
        root.join(&hex[..2]).join(hex)
    };
    for blob in &stored {
        if blob.size_bytes.is_some() {
            let bytes = std::fs::read(path(&blob.digest)).unwrap();
            assert_eq!(
                Digest::of(&bytes),
                blob.digest,
                "{at}: a torn blob in place"
            );
        }
        for (encoding, _) in &blob.variants {
            assert_eq!(encoding, "gzip", "{at}");
            let gz = std::fs::read(format!("{}.gzip", path(&blob.digest).display())).unwrap();
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut plain)
                .unwrap_or_else(|e| panic!("{at}: a torn gzip representation: {e}"));
            assert_eq!(
                Digest::of(&plain),
                blob.digest,
                "{at}: a wrong representation"
            );
        }
    }
    let present: BTreeSet<Digest> = stored
        .iter()
        .filter(|b| b.size_bytes.is_some())
        .map(|b| b.digest)
        .collect();
    let missing: Vec<_> = referenced.difference(&present).collect();
    assert!(
        missing.is_empty(),
        "{at}: referenced blobs missing: {missing:?}"
    );
}
