//! Every crash point of a device's life, enumerated: a first install, an update, a rollback and a
//! garbage collection run under a recorder of the store's durable file operations
//! (`durable_fs::model`); then for every operation k, in two modes (the crash loses everything
//! not yet fsynced; or it also tears the fsync it interrupts), the files a crash before k would
//! leave are written out and a device opens them. At every point: the store opens, its state
//! was not lost, the active release is one of those installed so far and is whole (its manifest
//! verifies and every file is there with its sha256), the release kept for rollback is whole too,
//! no temp file is left, and the entry page resolves to the right bytes. Where a step had returned,
//! its outcome is what the device serves.

use std::path::Path;
use std::sync::Arc;

use client_core::Client;
use client_core::clock::SystemClock;
use client_core::fetch::builtin::BuiltinFetcher;
use client_core::store::{PackageState, Recovery, Store};
use durable_fs::model::{Crash, Op, Recorder};
use manifests::{Digest, PackageId, verify_release};
use tests::{ROUTE, Server, write_build};

/// A build of `variant` with more files than [`write_build`]'s, so that blobs land in many
/// fan-out directories and an update both adds and keeps files.
fn write_release(dir: &Path, variant: &str) {
    write_build(dir, variant);
    for i in 0..12 {
        // Half the files change between variants, half stay.
        let body = match i % 2 {
            0 => format!("export const part{i} = {i};\n"),
            _ => format!("export const part{i} = '{variant}';\n"),
        };
        std::fs::write(dir.join(format!("assets/part-{i}.js")), body.repeat(20)).unwrap();
    }
}

fn promote(server: &Server, version: &str) {
    tests::baleen(
        &[
            "promote",
            "--package",
            "checkout",
            "--channel",
            "production",
            "--version",
            version,
        ],
        &server.env(),
    );
}

/// Where each step of the device's life ended in the log: (mark, version active after it).
const STEPS: [(&str, &str); 4] = [
    ("installed 1.0.0", "1.0.0"),
    ("installed 1.1.0", "1.1.0"),
    ("rolled back", "1.0.0"),
    ("collected", "1.0.0"),
];

#[test]
fn a_crash_at_any_file_operation_of_an_install_rollback_or_collection_leaves_a_whole_release() {
    let server = Server::start();
    let build = server.dir.path().join("dist");
    write_release(&build, "alpha");
    server.publish(
        &build,
        "checkout",
        "1.0.0",
        &["--channel", "production", "--route", ROUTE],
    );
    write_release(&build, "beta");
    server.publish(&build, "checkout", "1.1.0", &[]);
    let package = PackageId::parse("checkout").unwrap();
    let trusted = manifests::TrustedKeys::single(server.key.public().clone());

    // The device's whole life under the recorder, each step marked where it returned.
    let store = server.dir.path().join("device");
    std::fs::create_dir_all(&store).unwrap();
    let recorder = Recorder::new(&store).unwrap();
    let client = Client::open_on(
        server.client_config(&store, "crash-points", "6.0"),
        Arc::new(BuiltinFetcher::default()),
        Arc::new(SystemClock),
        recorder.clone(),
    )
    .unwrap();
    tests::update_now(&client).unwrap();
    recorder.mark(STEPS[0].0);
    promote(&server, "1.1.0");
    tests::update_now(&client).unwrap();
    recorder.mark(STEPS[1].0);
    client.rollback(&package).unwrap();
    recorder.mark(STEPS[2].0);
    let freed = client.collect_garbage().unwrap();
    recorder.mark(STEPS[3].0);
    assert!(freed > 0, "the collection removed nothing");
    drop(client);

    let ops = recorder.ops();
    let syncs = ops
        .iter()
        .filter(|op| matches!(op, Op::SyncFile(..) | Op::SyncDir(_)))
        .count();
    // Hundreds of small images: in memory where the machine has a tmpfs.
    let shm = Path::new("/dev/shm");
    let scratch = match shm.is_dir() {
        true => tempfile::tempdir_in(shm),
        false => tempfile::tempdir(),
    }
    .unwrap();
    let mut checked = 0;
    for k in 0..=ops.len() {
        // The last step that had returned before k, if any.
        let returned = ops[..k]
            .iter()
            .filter_map(|op| match op {
                Op::Mark(note) => STEPS.iter().position(|(m, _)| m == note),
                _ => None,
            })
            .next_back();
        for crash in [Crash::Clean, Crash::Torn] {
            let dir = scratch.path().join(format!("{k}-{crash:?}"));
            recorder.crash_image(k, crash).write_to(&dir).unwrap();
            let at = format!("crash before operation {k} of {} ({crash:?})", ops.len());
            check(&dir, &trusted, &package, returned, &at);
            // What the device serves after opening is the same store a relaunch gets.
            let client = Client::open(
                server.client_config(&dir, "crash-points", "6.0"),
                Arc::new(BuiltinFetcher::default()),
            )
            .unwrap_or_else(|e| panic!("{at}: the device does not open: {e}"));
            assert!(
                client.store().temp_files().unwrap().is_empty(),
                "{at}: temp files left"
            );
            assert!(
                client.status().quarantined.is_empty(),
                "{at}: a manifest no longer verifies"
            );
            match client
                .status()
                .packages
                .first()
                .and_then(|p| p.active.clone())
            {
                Some(_) => {
                    let hit = client
                        .resolve(&format!("{ROUTE}index.html"))
                        .unwrap_or_else(|| panic!("{at}: no entry page"));
                    let bytes = std::fs::read(&hit.path).unwrap();
                    assert_eq!(bytes.len() as u64, hit.size, "{at}");
                }
                None => assert!(returned.is_none(), "{at}: nothing active after an install"),
            }
            drop(client);
            std::fs::remove_dir_all(&dir).unwrap();
            checked += 1;
        }
    }
    eprintln!(
        "{} file operations ({syncs} fsyncs), {checked} crash images checked",
        ops.len()
    );
    assert!(
        ops.len() > 100,
        "too few operations recorded: {}",
        ops.len()
    );
}

/// The invariants of a store a crash left, read as a relaunch reads it.
fn check(
    dir: &Path,
    trusted: &manifests::TrustedKeys,
    package: &PackageId,
    returned: Option<usize>,
    at: &str,
) {
    let (store, state, recovery) =
        Store::open(dir).unwrap_or_else(|e| panic!("{at}: the store does not open: {e}"));
    assert_ne!(recovery, Recovery::Reset, "{at}: the state was lost");
    let package_state: PackageState = state.packages.get(package).cloned().unwrap_or_default();
    let active = package_state.active.clone().map(|a| a.version.to_string());
    match returned {
        // The step that returned last decided what is active, unless a later one committed.
        Some(step) => {
            let allowed: Vec<&str> = STEPS[step..].iter().map(|(_, v)| *v).collect();
            let active = active.as_deref().unwrap_or("none");
            assert!(
                allowed.contains(&active),
                "{at}: {active} active after \"{}\"",
                STEPS[step].0
            );
            if step + 1 == STEPS.len() {
                assert_eq!(active, STEPS[step].1, "{at}");
            }
        }
        None => assert!(
            active.as_deref().is_none_or(|v| v == "1.0.0"),
            "{at}: {active:?} active before the first install returned"
        ),
    }
    // Whatever the state names, active or kept for rollback, is whole.
    for installed in [&package_state.active, &package_state.previous]
        .into_iter()
        .flatten()
    {
        let what = format!("{at}: release {}", installed.version);
        let envelope = store
            .read_manifest(&installed.manifest)
            .unwrap_or_else(|e| panic!("{what}: manifest missing: {e}"));
        let release = verify_release(&envelope, trusted, Some(&installed.manifest))
            .unwrap_or_else(|e| panic!("{what}: manifest does not verify: {e}"))
            .release;
        for (path, file) in &release.files {
            let bytes = store
                .read_blob(&file.sha256)
                .unwrap_or_else(|e| panic!("{what}: {path} missing: {e}"));
            assert_eq!(Digest::of(&bytes), file.sha256, "{what}: {path} torn");
        }
    }
}
