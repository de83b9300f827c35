//! A flaky or silent network: a cut download resumes where it stopped, within one update and
//! after the app was killed; a server that never answers times out; the active release serves on.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client_core::fetch::builtin::BuiltinFetcher;
use client_core::fetch::{FetchError, FetchRequest, FetchResponse, Fetcher};
use client_core::install::Method;
use client_core::{BaleenError, Client};
use manifests::PackageId;
use tests::{ROUTE, Server, write_build};

/// What the flaky link does to pack and blob downloads, in order; then it behaves.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// The body stops halfway (the connection dropped; `Content-Length` still says the whole).
    Half,
    /// No answer at all.
    Reset,
}

/// The built-in fetcher behind a flaky link that records every download request.
#[derive(Debug)]
struct Flaky {
    inner: BuiltinFetcher,
    faults: Mutex<Vec<Fault>>,
    /// (path, Range header, body bytes received) of every pack and blob request.
    log: Mutex<Vec<(String, Option<String>, usize)>>,
}

impl Flaky {
    fn new(faults: &[Fault]) -> Arc<Flaky> {
        Arc::new(Flaky {
            inner: BuiltinFetcher::default(),
            faults: Mutex::new(faults.iter().rev().copied().collect()),
            log: Mutex::new(Vec::new()),
        })
    }

    fn log(&self) -> Vec<(String, Option<String>, usize)> {
        self.log.lock().unwrap().clone()
    }
}

impl Fetcher for Flaky {
    fn fetch(&self, request: &FetchRequest) -> Result<FetchResponse, FetchError> {
        let download = request.url.contains("/v1/packs/") || request.url.contains("/v1/blobs/");
        let fault = if download {
            self.faults.lock().unwrap().pop()
        } else {
            None
        };
        let path = request.url.split_once("/v1/").unwrap().1.to_owned();
        let range = request
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("range"))
            .map(|(_, v)| v.clone());
        if let Some(Fault::Reset) = fault {
            self.log.lock().unwrap().push((path, range, 0));
            return Err(FetchError {
                message: "connection reset by peer".into(),
            });
        }
        let mut response = self.inner.fetch(request)?;
        if let Some(Fault::Half) = fault {
            response.body.truncate(response.body.len() / 2);
        }
        if download {
            self.log
                .lock()
                .unwrap()
                .push((path, range, response.body.len()));
        }
        Ok(response)
    }
}

fn checkout() -> PackageId {
    PackageId::parse("checkout").unwrap()
}

/// A server with 1.0.0 installed and ready on a device (store `device`), and 1.1.0 published.
fn with_update() -> Server {
    let (server, build) = Server::with_first_release("one");
    let device = server.client(&server.dir.path().join("device"), "device-1", "6.0");
    tests::update_now(&device).unwrap();
    device.mark_ready(&checkout()).unwrap();
    write_build(&build, "two");
    server.publish(&build, "checkout", "1.1.0", &["--channel", "production"]);
    // The halves a device resumes are of the final pack, not of the fast one served first.
    tests::wait_for_final_pack(&server.base, "/v1/packs/checkout/1.0.0..1.1.0.bpk");
    server
}

fn open(server: &Server, fetcher: Arc<dyn Fetcher>) -> Client {
    let config = server.client_config(&server.dir.path().join("device"), "device-1", "6.0");
    Client::open(config, fetcher).unwrap()
}

#[test]
fn a_pack_cut_halfway_resumes_with_a_range_instead_of_starting_over() {
    let server = with_update();
    let flaky = Flaky::new(&[Fault::Half]);
    let device = open(&server, flaky.clone());
    let installed = tests::update_now(&device).unwrap();
    assert_eq!(installed.len(), 1);
    assert_eq!(
        installed[0].1,
        Method::DiffPack,
        "the diff pack still made it"
    );

    let log = flaky.log();
    let pack: Vec<_> = log
        .iter()
        .filter(|(p, ..)| p.starts_with("packs/"))
        .collect();
    assert_eq!(pack.len(), 2, "{log:?}");
    let (_, first_range, first_bytes) = pack[0];
    let (_, second_range, second_bytes) = pack[1];
    assert_eq!(*first_range, None);
    assert_eq!(
        second_range.as_deref(),
        Some(format!("bytes={first_bytes}-").as_str()),
        "the second request asks only for the rest"
    );
    // Every byte crossed the link once: the two halves add up to the pack.
    let (status, whole) = server.get(&format!("/v1/{}", pack[0].0));
    assert_eq!(status, 200);
    assert_eq!(first_bytes + second_bytes, whole.len());
    let hit = device.resolve(&format!("{ROUTE}index.html")).unwrap();
    assert!(std::fs::read(hit.path).unwrap().ends_with(b"two"));
}

#[test]
fn bytes_that_arrived_before_the_app_was_killed_are_not_fetched_again() {
    let server = with_update();
    // Half the diff pack arrives, then the link dies for good.
    let mut faults = vec![Fault::Half];
    faults.extend([Fault::Reset; 40]);
    let flaky = Flaky::new(&faults);
    let device = open(&server, flaky.clone());
    let err = tests::update_now(&device).unwrap_err();
    assert!(
        matches!(BaleenError::from(err), BaleenError::Network { .. }),
        "a dead link is a network error"
    );
    let hit = device.resolve(&format!("{ROUTE}index.html")).unwrap();
    assert!(
        std::fs::read(hit.path).unwrap().ends_with(b"one"),
        "1.0.0 serves on"
    );
    let kept = flaky.log()[0].2;
    assert!(kept > 0);
    drop(device);

    // The app restarts on a good link.
    let good = Flaky::new(&[]);
    let device = open(&server, good.clone());
    let installed = tests::update_now(&device).unwrap();
    assert_eq!(installed[0].1, Method::DiffPack);
    let log = good.log();
    assert_eq!(
        log[0].1.as_deref(),
        Some(format!("bytes={kept}-").as_str()),
        "{log:?}"
    );
    let hit = device.resolve(&format!("{ROUTE}index.html")).unwrap();
    assert!(std::fs::read(hit.path).unwrap().ends_with(b"two"));
    assert!(
        std::fs::read_dir(device.store().partial_dir())
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "no partial download left"
    );
}

#[test]
fn a_server_that_never_answers_times_out_and_the_active_release_serves_on() {
    let server = with_update();
    // Accepts connections and never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = server.client_config(&server.dir.path().join("device"), "device-1", "6.0");
    config.server = format!("http://{}", silent.local_addr().unwrap());
    let device = Client::open(
        config,
        Arc::new(BuiltinFetcher::new(Duration::from_millis(300))),
    )
    .unwrap();
    let started = Instant::now();
    let err = tests::update_now(&device).unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(BaleenError::from(err), BaleenError::Network { .. }),
        "a timeout is a network error"
    );
    // Three tries of 300 ms plus 200 + 400 ms of backoff; far from hanging.
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    let hit = device.resolve(&format!("{ROUTE}index.html")).unwrap();
    assert!(std::fs::read(hit.path).unwrap().ends_with(b"one"));
    drop(silent);
}
