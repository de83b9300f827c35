//! Bad input and faults between server and device: every one is refused with a clear error and
//! the release that was active keeps serving unchanged.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use client_core::fetch::builtin::BuiltinFetcher;
use client_core::fetch::{FetchError, FetchRequest, FetchResponse, Fetcher};
use client_core::{BaleenError, Client};
use tests::{ROUTE, Server, active_version, write_build};

type Rule = Box<dyn FnMut(&FetchRequest, &mut FetchResponse) + Send>;

/// A fetcher that lets a test rewrite responses: a man in the middle, or a broken network.
pub(crate) struct Tamper {
    inner: BuiltinFetcher,
    rule: Mutex<Option<Rule>>,
    fail_transport: Mutex<bool>,
}

impl std::fmt::Debug for Tamper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tamper")
    }
}

impl Tamper {
    pub(crate) fn new() -> Arc<Tamper> {
        Arc::new(Tamper {
            inner: BuiltinFetcher::default(),
            rule: Mutex::new(None),
            fail_transport: Mutex::new(false),
        })
    }

    pub(crate) fn set(&self, rule: impl FnMut(&FetchRequest, &mut FetchResponse) + Send + 'static) {
        *self.rule.lock().unwrap() = Some(Box::new(rule));
    }

    /// An attacker replaying a captured, validly signed, older index: it answers the delta route
    /// `404` (so the device falls back to the whole index) and the index route with `index`.
    pub(crate) fn replay_index(&self, index: Vec<u8>) {
        self.set(move |request, response| {
            if request.url.contains("/index/delta/") {
                response.status = 404;
                response.body = b"{}".to_vec();
            } else if request.url.ends_with("/index") {
                response.status = 200;
                response.body = index.clone();
            } else {
                return;
            }
            response
                .headers
                .retain(|(k, _)| !k.eq_ignore_ascii_case("content-length"));
        });
    }

    fn clear(&self) {
        *self.rule.lock().unwrap() = None;
        *self.fail_transport.lock().unwrap() = false;
    }
}

impl Fetcher for Tamper {
    fn fetch(&self, request: &FetchRequest) -> Result<FetchResponse, FetchError> {
        if *self.fail_transport.lock().unwrap() {
            return Err(FetchError {
                message: "connection reset".into(),
            });
        }
        let mut response = self.inner.fetch(request)?;
        if let Some(rule) = self.rule.lock().unwrap().as_mut() {
            rule(request, &mut response);
        }
        Ok(response)
    }
}

/// A server with release 1.0.0 installed and ready on a device, and 1.1.0 published.
fn setup() -> (Server, Client, Arc<Tamper>) {
    let (server, build) = Server::with_first_release("one");
    let tamper = Tamper::new();
    let config = server.client_config(&server.dir.path().join("device"), "device-1", "6.0");
    let client = Client::open(config, tamper.clone()).unwrap();
    tests::update_now(&client).unwrap();
    client
        .mark_ready(&manifests::PackageId::parse("checkout").unwrap())
        .unwrap();
    write_build(&build, "two");
    server.publish(&build, "checkout", "1.1.0", &["--channel", "production"]);
    (server, client, tamper)
}

fn serving(client: &Client) -> String {
    let hit = client
        .resolve(&format!("{ROUTE}index.html"))
        .expect("still serving");
    let active = active_version(client);
    assert!(
        std::fs::read(hit.path).unwrap().ends_with(b"one"),
        "serves release 1 bytes"
    );
    active
}

fn set_header(response: &mut FetchResponse, name: &str, value: String) {
    response
        .headers
        .retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    response.headers.push((name.to_owned(), value));
}

fn kind(e: client_core::Error) -> BaleenError {
    BaleenError::from(e)
}

#[test]
fn tampered_blobs_and_packs_are_refused_and_the_active_release_keeps_serving() {
    let (_server, client, tamper) = setup();
    // Every download with a body gets one byte flipped (length kept): packs and blobs alike.
    tamper.set(|request, response| {
        if (request.url.contains("/v1/packs/") || request.url.contains("/v1/blobs/"))
            && !response.body.is_empty()
        {
            // Flip a byte in every 64: whatever the layout, payloads are hit.
            for i in (40..response.body.len()).step_by(64) {
                response.body[i] ^= 0x40;
            }
        }
    });
    let err = tests::update_now(&client).unwrap_err();
    assert!(matches!(kind(err), BaleenError::Verification { .. }));
    assert_eq!(serving(&client), "1.0.0");
    assert!(client.store().temp_files().unwrap().is_empty());

    // Only the pack is tampered: the device falls back to single blobs and succeeds.
    tamper.set(|request, response| {
        if request.url.contains("/v1/packs/") && !response.body.is_empty() {
            // Flip a byte in every 64: whatever the layout, payloads are hit.
            for i in (40..response.body.len()).step_by(64) {
                response.body[i] ^= 0x40;
            }
        }
    });
    let outcome = client.check().unwrap();
    let report = client.install(&outcome.updates[0]).unwrap();
    assert_eq!(report.method, client_core::install::Method::Blobs);
    assert!(!report.fallbacks.is_empty());
}

#[test]
fn a_pack_with_a_foreign_or_traversing_entry_is_refused() {
    let (_server, client, tamper) = setup();
    // A compact pack names no file, so nothing in it can point outside the store: what is
    // smuggled after its last frame is refused. (A zip pack's traversing entries are refused by
    // the same reader; its tests cover them.)
    tamper.set(|request, response| {
        if request.url.contains("/v1/packs/") && response.status == 200 {
            assert!(response.body.starts_with(&manifests::COMPACT_MAGIC));
            response.body.extend_from_slice(b"../../evil.js\0alert(1)");
            set_header(response, "content-length", response.body.len().to_string());
        }
    });
    let outcome = client.check().unwrap();
    let report = client.install(&outcome.updates[0]).unwrap();
    assert_eq!(report.method, client_core::install::Method::Blobs);
    assert!(
        report
            .fallbacks
            .iter()
            .any(|f| f.contains("compact pack") && f.contains("after the last frame")),
        "{:?}",
        report.fallbacks
    );
    assert!(
        !client
            .store()
            .root()
            .parent()
            .unwrap()
            .join("evil.js")
            .exists()
    );
}

#[test]
fn an_index_signed_by_another_key_is_refused() {
    let (server, _client, _tamper) = setup();
    let store = server.dir.path().join("other-device");
    let mut config = server.client_config(&store, "device-2", "6.0");
    config.trusted_keys = vec![manifests::KeyPair::from_seed(&[9; 32]).public().clone()];
    let client = Client::open(config, Arc::new(BuiltinFetcher::default())).unwrap();
    let err = client.check().unwrap_err();
    assert!(
        err.to_string().contains("no signature by a trusted key"),
        "{err}"
    );
    assert!(matches!(kind(err), BaleenError::Verification { .. }));
    assert!(client.status().packages.is_empty());
}

#[test]
fn a_replayed_older_index_is_refused() {
    let (server, client, tamper) = setup();
    // Capture the index and the delta the device sees now (they name 1.1.0), then roll back on
    // the server.
    let old_index = server.get("/v1/apps/shop/channels/production/index").1;
    let old_delta = Arc::new(Mutex::new(Vec::new()));
    let captured = old_delta.clone();
    tamper.set(move |request, response| {
        let mut captured = captured.lock().unwrap();
        if request.url.contains("/index/delta/") && response.status == 200 && captured.is_empty() {
            *captured = response.body.clone();
        }
    });
    client.check().unwrap();
    assert!(
        !old_delta.lock().unwrap().is_empty(),
        "the device asked for a delta"
    );
    server.release("rollback", "checkout", &[]);
    client.check().unwrap();
    let seen = client.status().sequence;
    // An attacker now replays the captured, validly signed, older index...
    tamper.replay_index(old_index);
    let err = client.check().unwrap_err();
    assert!(err.to_string().contains("replayed index"), "{err}");
    // ...or the older delta: it starts from a sequence the device has left, so the device
    // takes the whole index instead, which the attacker did not touch, and stays where it is.
    let replayed = old_delta.lock().unwrap().clone();
    let asked_full = Arc::new(Mutex::new(false));
    let flag = asked_full.clone();
    tamper.set(move |request, response| {
        if request.url.contains("/index/delta/") {
            response.status = 200;
            response.body = replayed.clone();
            response
                .headers
                .retain(|(k, _)| !k.eq_ignore_ascii_case("content-length"));
        } else if request.url.ends_with("/index") {
            *flag.lock().unwrap() = true;
        }
    });
    let outcome = client.check().unwrap();
    assert!(
        *asked_full.lock().unwrap(),
        "the device fell back to the whole index"
    );
    assert_eq!(outcome.sequence, seen);
    assert_eq!(client.status().sequence, seen);
    assert_eq!(serving(&client), "1.0.0");
}

#[test]
fn server_errors_cut_bodies_and_oversized_answers_are_network_errors() {
    let (_server, client, tamper) = setup();
    tamper.set(|request, response| {
        if request.url.contains("/index") {
            response.status = 500;
        }
    });
    assert!(matches!(
        kind(client.check().unwrap_err()),
        BaleenError::Network { .. }
    ));

    // A body shorter than its Content-Length (a cut connection) is retried, then refused.
    tamper.set(|request, response| {
        if request.url.contains("/index") {
            let full = response.body.len();
            response.body.truncate(full / 2);
            set_header(response, "content-length", full.to_string());
        }
    });
    let err = client.check().unwrap_err();
    assert!(err.to_string().contains("cut short"), "{err}");

    // Endless data: more bytes than a blob can have.
    tamper.clear();
    let outcome = client.check().unwrap();
    tamper.set(|request, response| {
        if request.url.contains("/v1/blobs/") || request.url.contains("/v1/packs/") {
            response.body.extend(std::iter::repeat_n(b'x', 10_000_000));
            response
                .headers
                .retain(|(k, _)| !k.eq_ignore_ascii_case("content-length"));
        }
    });
    let err = client.install(&outcome.updates[0]).unwrap_err();
    assert!(err.to_string().contains("larger than"), "{err}");

    // No network at all.
    tamper.clear();
    *tamper.fail_transport.lock().unwrap() = true;
    assert!(matches!(
        kind(client.check().unwrap_err()),
        BaleenError::Network { .. }
    ));
    assert_eq!(serving(&client), "1.0.0");
}

#[test]
fn an_expired_index_is_refused_and_the_installed_release_keeps_serving() {
    // Indexes that live two seconds: the server re-signs them, but a stale copy expires.
    let (server, _build) = Server::with_first_release_using("one", &["--index-ttl-secs", "2"]);
    let tamper = Tamper::new();
    let config = server.client_config(&server.dir.path().join("device"), "device-1", "6.0");
    let client = Client::open(config, tamper.clone()).unwrap();
    // Capture the index the device accepts now...
    tests::update_now(&client).unwrap();
    let captured = server.get("/v1/apps/shop/channels/production/index").1;
    // ...and serve that same, validly signed index once it has expired (a freeze attack).
    std::thread::sleep(Duration::from_millis(3_100));
    tamper.replay_index(captured);
    let err = client.check().unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    assert_eq!(serving(&client), "1.0.0");
}

/// The signed part of a served envelope, as canonical bytes.
fn signed_part(envelope: &[u8]) -> Vec<u8> {
    let value = manifests::parse_strict(envelope).unwrap();
    manifests::to_canonical_bytes(&value["signed"]).unwrap()
}

#[test]
fn a_release_claiming_another_package_s_pages_is_refused_even_when_signed() {
    // The server refuses such a release at publish; a device refuses it too, whoever signed it
    // (here the server's own key, as a compromised or buggy server would).
    let (server, client, tamper) = setup();
    let b_build = server.dir.path().join("b");
    write_build(&b_build, "b");
    server.publish(
        &b_build,
        "b",
        "1.0.0",
        &[
            "--channel",
            "production",
            "--route",
            "https://m.example.com/b/",
        ],
    );
    tamper.clear();
    tests::update_now(&client).unwrap();
    let b = manifests::PackageId::parse("b").unwrap();
    client.mark_ready(&b).unwrap();

    // b 1.0.1: b's files, but answering for checkout's payment pages.
    let (_, index_bytes) = server.get("/v1/apps/shop/channels/production/index");
    let mut index = manifests::parse_index_unverified(&signed_part(&index_bytes)).unwrap();
    let b_ref = index.packages[&b].stable.clone().unwrap();
    let (_, b_manifest) = server.get(&manifests::paths::manifest_path(&b_ref.manifest));
    let mut release = manifests::parse_release_unverified(&signed_part(&b_manifest)).unwrap();
    release.version = manifests::ReleaseVersion::parse("1.0.1").unwrap();
    release.routes[0].prefix =
        manifests::UrlPrefix::parse("https://m.example.com/checkout/pay/").unwrap();
    let forged = release.sign(&[&server.key]).unwrap();
    let entry = index.packages.get_mut(&b).unwrap();
    entry.stable = Some(manifests::ReleaseRef {
        version: release.version.clone(),
        manifest: forged.digest,
        ..b_ref
    });
    index.sequence += 10;
    let forged_index = index.sign(&[&server.key]).unwrap().bytes;
    let forged_path = manifests::paths::manifest_path(&forged.digest);
    let forged_manifest = forged.bytes.clone();
    tamper.set(move |request, response| {
        let (status, body) = if request.url.contains("/index/delta/") {
            (404, b"{}".to_vec())
        } else if request.url.ends_with("/index") {
            (200, forged_index.clone())
        } else if request.url.ends_with(&forged_path) {
            (200, forged_manifest.clone())
        } else {
            return;
        };
        response.status = status;
        response.body = body;
        response
            .headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case("content-length"));
    });
    let err = client
        .update(&client_core::Conditions::unrestricted())
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("claims m.example.com/checkout/pay/")
            && text.contains("overlaps m.example.com/checkout/ of package checkout"),
        "{text}"
    );
    assert!(matches!(kind(err), BaleenError::Verification { .. }));
    // checkout still answers its payment pages; b stays on 1.0.0.
    let status = client.status();
    let version = |p: &str| {
        status
            .packages
            .iter()
            .find(|s| s.package.as_str() == p)
            .and_then(|s| s.active.clone())
            .map(|v| v.to_string())
    };
    assert_eq!(version("b").as_deref(), Some("1.0.0"));
    assert_eq!(version("checkout").as_deref(), Some("1.1.0"));
    assert!(client.resolve(&format!("{ROUTE}index.html")).is_some());
}

#[test]
fn a_pack_not_ready_sends_the_device_to_the_blobs_at_once_and_it_installs_correctly() {
    // Pack requests wait for no build: a pack not built yet is answered 503 at once.
    let (server, build) = Server::with_first_release_using("one", &["--pack-wait-ms", "0"]);
    let config = server.client_config(&server.dir.path().join("device"), "device-1", "6.0");
    let client = Client::open(config, Arc::new(BuiltinFetcher::default())).unwrap();
    tests::update_now(&client).unwrap();
    let package = manifests::PackageId::parse("checkout").unwrap();
    client.mark_ready(&package).unwrap();
    // Six releases later, the diff pack from the device's 1.0.0 is not among those a publish
    // builds (the five newest earlier releases), and two changed files are not worth the full
    // pack: the one pack the device asks for is being built when it asks.
    for n in 1..=6 {
        write_build(&build, &format!("release {n}"));
        server.publish(
            &build,
            "checkout",
            &format!("1.{n}.0"),
            &["--channel", "production"],
        );
    }
    let outcome = client.check().unwrap();
    let report = client.install(&outcome.updates[0]).unwrap();
    assert_eq!(report.method, client_core::install::Method::Blobs);
    assert!(
        report.fallbacks.iter().any(|f| f.contains("503")),
        "{:?}",
        report.fallbacks
    );
    assert_eq!(active_version(&client), "1.6.0");
    let hit = client.resolve(&format!("{ROUTE}index.html")).unwrap();
    assert!(std::fs::read(hit.path).unwrap().ends_with(b"release 6"));
}
