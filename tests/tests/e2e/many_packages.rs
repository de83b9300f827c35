//! A super-app: 1,000 packages in one app and channel. A device installs them all, then follows a
//! staged rollout and a rollback on a few, and what it downloads to learn of one change does not
//! grow with the app.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use client_core::fetch::builtin::BuiltinFetcher;
use client_core::fetch::{FetchError, FetchRequest, FetchResponse, Fetcher};
use client_core::{Client, Conditions};
use manifests::PackageId;
use tests::Server;

const PACKAGES: usize = 1_000;

/// Counts the requests and response-body bytes a device receives.
#[derive(Debug, Default)]
struct Counting {
    inner: BuiltinFetcher,
    requests: AtomicU64,
    bytes: AtomicU64,
}

impl Counting {
    fn take(&self) -> (u64, u64) {
        (
            self.requests.swap(0, Ordering::SeqCst),
            self.bytes.swap(0, Ordering::SeqCst),
        )
    }
}

impl Fetcher for Counting {
    fn fetch(&self, request: &FetchRequest) -> Result<FetchResponse, FetchError> {
        let response = self.inner.fetch(request)?;
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.bytes
            .fetch_add(response.body.len() as u64, Ordering::SeqCst);
        Ok(response)
    }
}

fn name(i: usize) -> String {
    format!("mini{i:04}")
}

/// A one-page zip for `package@version`.
fn page(package: &str, version: &str) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    writer.start_file("index.html", options).unwrap();
    write!(writer, "<!doctype html><h1>{package} {version}</h1>").unwrap();
    writer.finish().unwrap().into_inner()
}

/// Publishes `package@version` over the API (a thousand CLI processes would take minutes).
fn publish(server: &Server, package: &str, version: &str, query: &str) {
    let query = format!("version={version}{query}");
    let (status, body) = server.upload(package, &query, &page(package, version));
    assert_eq!(status, 201, "{package}@{version}: {body}");
}

fn active(client: &Client, package: &str) -> Option<String> {
    let package = PackageId::parse(package).unwrap();
    let status = client.status();
    let p = status.packages.iter().find(|p| p.package == package)?;
    p.active.as_ref().map(ToString::to_string)
}

#[test]
fn a_thousand_package_app_rolls_out_and_back_and_a_change_costs_what_changed() {
    let server = Server::start();
    for i in 0..PACKAGES {
        let route = format!(
            "&channel=production&create_channel=true&routes=https://m.example.com/{}/",
            name(i)
        );
        publish(&server, &name(i), "1.0.0", &route);
    }
    let fetcher = Arc::new(Counting::default());
    let config = server.client_config(&server.dir.path().join("device"), "device-1", "6.0");
    let client = Client::open(config, fetcher.clone()).unwrap();
    let outcome = client.update(&Conditions::unrestricted()).unwrap();
    assert_eq!(outcome.installed.len(), PACKAGES);
    fetcher.take();

    // Nothing changed: the launch check costs next to nothing.
    assert!(client.check().unwrap().updates.is_empty());
    let (requests, bytes) = fetcher.take();
    assert!(
        requests <= 2 && bytes < 2_048,
        "{requests} requests, {bytes} bytes"
    );

    // A staged rollout on three packages: at 100 % every device takes the candidates.
    for i in [3, 500, 999] {
        publish(&server, &name(i), "1.0.1", "");
        server.release(
            "rollout",
            &name(i),
            &["--version", "1.0.1", "--percent", "100"],
        );
    }
    let outcome = client.update(&Conditions::unrestricted()).unwrap();
    let mut installed: Vec<String> = outcome
        .installed
        .iter()
        .map(|(u, _)| u.package.to_string())
        .collect();
    installed.sort();
    assert_eq!(installed, [name(3), name(500), name(999)]);
    assert_eq!(active(&client, &name(500)).as_deref(), Some("1.0.1"));
    fetcher.take();

    // One package rolls back: the device learns of it in a delta of one entry and follows.
    server.release(
        "rollback",
        &name(500),
        &["--reason", "broken on old phones"],
    );
    let check = client.check().unwrap();
    let (requests, bytes) = fetcher.take();
    assert_eq!(check.updates.len(), 1);
    assert_eq!(check.updates[0].package.to_string(), name(500));
    assert!(
        requests == 1 && bytes < 2_048 + 512,
        "one change among {PACKAGES} packages cost {requests} requests, {bytes} bytes"
    );
    client.update(&Conditions::unrestricted()).unwrap();
    assert_eq!(active(&client, &name(500)).as_deref(), Some("1.0.0"));
    assert_eq!(active(&client, &name(999)).as_deref(), Some("1.0.1"));
    assert_eq!(active(&client, &name(7)).as_deref(), Some("1.0.0"));

    // A device that never saw this app gets the whole index, and the same answer.
    let fresh = server.client(&server.dir.path().join("fresh"), "device-2", "6.0");
    let outcome = fresh.update(&Conditions::unrestricted()).unwrap();
    assert_eq!(outcome.installed.len(), PACKAGES);
    assert_eq!(active(&fresh, &name(500)).as_deref(), Some("1.0.0"));
    assert_eq!(active(&fresh, &name(3)).as_deref(), Some("1.0.1"));
}
