//! The device's IO shell under stress: a stalled network or disk, garbage collection in the
//! middle of an install, stored manifests that no longer verify.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client_core::Client;
use client_core::fetch::builtin::BuiltinFetcher;
use client_core::fetch::{FetchError, FetchRequest, FetchResponse, Fetcher};
use manifests::{KeyPair, PackageId};
use tests::{ROUTE, Server, active_version, files_of, write_build};

/// A fetcher that refuses packs (so blobs come one by one) and, at the `stop_at`-th blob
/// request, says so and waits for a go-ahead.
struct Gate {
    inner: BuiltinFetcher,
    stop_at: usize,
    blobs: Mutex<usize>,
    reached: Mutex<Sender<()>>,
    go: Mutex<Receiver<()>>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gate")
    }
}

impl Fetcher for Gate {
    fn fetch(&self, request: &FetchRequest) -> Result<FetchResponse, FetchError> {
        if request.url.contains("/v1/packs/") {
            return Ok(FetchResponse {
                status: 404,
                headers: Vec::new(),
                body: Vec::new(),
            });
        }
        if request.url.contains("/v1/blobs/") {
            let n = {
                let mut blobs = self.blobs.lock().unwrap();
                *blobs += 1;
                *blobs
            };
            if n == self.stop_at {
                self.reached.lock().unwrap().send(()).unwrap();
                self.go.lock().unwrap().recv().unwrap();
            }
        }
        self.inner.fetch(request)
    }
}

/// A gate at the `stop_at`-th blob request; the test waits on the first channel and opens the
/// gate with the second.
fn gate(stop_at: usize) -> (Arc<Gate>, Receiver<()>, Sender<()>) {
    let (reached_tx, reached_rx) = channel();
    let (go_tx, go_rx) = channel();
    let gate = Arc::new(Gate {
        inner: BuiltinFetcher::default(),
        stop_at,
        blobs: Mutex::new(0),
        reached: Mutex::new(reached_tx),
        go: Mutex::new(go_rx),
    });
    (gate, reached_rx, go_tx)
}

fn checkout() -> PackageId {
    PackageId::parse("checkout").unwrap()
}

/// `f` answers within a second, however busy the client is.
#[track_caller]
fn answers_quickly<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{what} waited {:?}",
        start.elapsed()
    );
    out
}

#[test]
fn collecting_garbage_during_an_install_keeps_what_the_install_activates() {
    let (server, _) = Server::with_first_release("one");
    let dir = server.dir.path().join("device");
    let (gate, reached, go) = gate(2);
    let config = server.client_config(&dir, "device-1", "6.0");
    let client = Arc::new(Client::open(config, gate).unwrap());

    // Two files change (the page and its hashed chunk), so the update fetches two blobs.
    let build = server.dir.path().join("dist2");
    write_build(&build, "two");
    server.publish(&build, "checkout", "1.0.1", &["--channel", "production"]);
    let updating = {
        let client = client.clone();
        std::thread::spawn(move || tests::update_now(&client))
    };
    // The first blob is on disk, the second on its way: collect garbage now.
    reached.recv_timeout(Duration::from_secs(30)).unwrap();
    client.collect_garbage().unwrap();
    go.send(()).unwrap();
    let installed = updating.join().unwrap().unwrap();
    assert_eq!(installed.len(), 1);
    for (path, bytes) in files_of(&build) {
        let hit = client.resolve(&format!("{ROUTE}{path}")).unwrap();
        assert_eq!(std::fs::read(&hit.path).unwrap(), bytes, "{path}");
    }
}

#[test]
fn resolve_report_open_and_status_answer_while_an_install_stalls() {
    let (server, first) = Server::with_first_release("one");
    let dir = server.dir.path().join("device");
    let plain = server.client(&dir, "device-1", "6.0");
    tests::update_now(&plain).unwrap();
    plain.mark_ready(&checkout()).unwrap();
    drop(plain);

    let build = server.dir.path().join("dist2");
    write_build(&build, "two");
    server.publish(&build, "checkout", "1.0.1", &["--channel", "production"]);
    let (gate, reached, go) = gate(1);
    let client =
        Arc::new(Client::open(server.client_config(&dir, "device-1", "6.0"), gate).unwrap());
    let updating = {
        let client = client.clone();
        std::thread::spawn(move || tests::update_now(&client))
    };
    reached.recv_timeout(Duration::from_secs(30)).unwrap();
    // The install is stuck in the network: the page still opens from release 1.0.0.
    let (url, want) = (
        format!("{ROUTE}index.html"),
        std::fs::read(first.join("index.html")).unwrap(),
    );
    let hit = answers_quickly("resolve", || client.resolve(&url)).unwrap();
    assert_eq!(std::fs::read(hit.path).unwrap(), want);
    answers_quickly("report_open", || client.report_open(&url, 200));
    let status = answers_quickly("status", || client.status());
    assert_eq!(
        status.packages[0].active.as_ref().unwrap().to_string(),
        "1.0.0"
    );
    go.send(()).unwrap();
    updating.join().unwrap().unwrap();
    assert_eq!(active_version(&client), "1.0.1");
}

#[cfg(unix)]
#[test]
fn a_stalled_disk_read_blocks_neither_resolve_nor_report_open() {
    let (server, _) = Server::with_first_release("one");
    let dir = server.dir.path().join("device");
    let client = Arc::new(server.client(&dir, "device-1", "6.0"));
    tests::update_now(&client).unwrap();
    let build = server.dir.path().join("dist2");
    write_build(&build, "two");
    server.publish(&build, "checkout", "1.0.1", &["--channel", "production"]);
    // The new release's manifest file is a FIFO: reading it blocks until a writer comes, as a
    // stalled storage device would.
    let digest = client.check().unwrap().updates[0].to.manifest;
    let fifo = dir.join("manifests").join(format!("{digest}.json"));
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let updating = {
        let client = client.clone();
        std::thread::spawn(move || tests::update_now(&client))
    };
    std::thread::sleep(Duration::from_millis(300));
    assert!(!updating.is_finished(), "the update reads the stalled file");
    let url = format!("{ROUTE}index.html");
    assert!(answers_quickly("resolve", || client.resolve(&url)).is_some());
    answers_quickly("report_open", || client.report_open(&url, 200));
    answers_quickly("status", || client.status());
    // The disk answers with garbage: the update fetches the manifest again and goes on.
    std::fs::write(&fifo, b"garbage").unwrap();
    updating.join().unwrap().unwrap();
    assert_eq!(active_version(&client), "1.0.1");
}

#[test]
fn a_corrupted_or_untrusted_stored_manifest_quarantines_only_its_package() {
    let (server, _) = Server::with_first_release("one");
    server.publish_package("profile", &[]);
    let dir = server.dir.path().join("device");
    let client = server.client(&dir, "device-1", "6.0");
    assert_eq!(tests::update_now(&client).unwrap().len(), 2);
    drop(client);

    // One stored manifest is damaged on disk: the client still opens, that package is
    // quarantined, the other one serves on, and the next update brings the damaged one back.
    let path = dir
        .join("manifests")
        .join(format!("{}.json", active_manifest(&dir, "checkout")));
    std::fs::write(&path, b"{\"signed\": 1}").unwrap();
    let client = server.client(&dir, "device-1", "6.0");
    assert_eq!(client.status().quarantined, [checkout()]);
    assert!(client.resolve(&format!("{ROUTE}index.html")).is_none());
    assert!(
        client
            .resolve("https://m.example.com/profile/index.html")
            .is_some()
    );
    assert_eq!(tests::update_now(&client).unwrap().len(), 1);
    assert!(client.resolve(&format!("{ROUTE}index.html")).is_some());
    drop(client);

    // The app now trusts another key only: both packages are quarantined, none is served, and
    // opening does not fail.
    let mut config = server.client_config(&dir, "device-1", "6.0");
    config.trusted_keys = vec![KeyPair::from_seed(&[9; 32]).public().clone()];
    let stranger = Client::open(config, Arc::new(BuiltinFetcher::default())).unwrap();
    assert_eq!(stranger.status().quarantined.len(), 2);
    assert_eq!(stranger.status().files, 0);
    assert!(
        stranger
            .resolve("https://m.example.com/profile/index.html")
            .is_none()
    );
}

/// The manifest digest of `package`'s active release, as the device's state names it.
fn active_manifest(dir: &std::path::Path, package: &str) -> manifests::Digest {
    let (_, state, _) = client_core::store::Store::open(dir).unwrap();
    let p = &state.packages[&PackageId::parse(package).unwrap()];
    p.active.as_ref().unwrap().manifest
}
