//! The loopback server of the instant-open benchmark (`src/bin/loopback.rs`): the origin of a
//! local-server WebView integration, backed by client-core. A path the package holds is answered
//! from the device store with `resolve`'s headers; any other goes upstream.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};

use tests::{Server, files_of};

/// Kills the server when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET url`: status, the `X-Baleen-Release` header if any, and the body.
fn get(url: &str) -> (u16, Option<String>, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let response = agent.get(url).call().unwrap();
    let status = response.status().as_u16();
    let release = response
        .headers()
        .get("x-baleen-release")
        .map(|v| v.to_str().unwrap().to_owned());
    let mut body = Vec::new();
    response
        .into_body()
        .into_reader()
        .read_to_end(&mut body)
        .unwrap();
    (status, release, body)
}

#[test]
fn the_loopback_server_answers_the_package_from_the_store_and_sends_the_rest_upstream() {
    let (server, build) = Server::with_first_release("v1");
    let store = server.dir.path().join("loopback-store");
    let key = server.key.public().to_hex();
    let mut child = Command::new(env!("CARGO_BIN_EXE_loopback"))
        .args([
            "--store",
            store.to_str().unwrap(),
            "--server",
            &server.base,
            "--app",
            "shop",
            "--channel",
            "production",
            "--key",
            &key,
            "--site",
            "https://m.example.com",
            "--upstream",
            &server.base,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _running = Running(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();

    // Every file of the release, from the store, marked with the release that answered.
    for (rel, bytes) in files_of(&build) {
        let (status, release, body) = get(&format!("{base}/checkout/{rel}"));
        assert_eq!(status, 200, "{rel}");
        assert_eq!(release.as_deref(), Some("checkout@1.0.0"), "{rel}");
        assert!(body == bytes, "{rel}: other bytes than the build's");
    }
    // The route's root is the entry page.
    let (_, _, body) = get(&format!("{base}/checkout/"));
    assert_eq!(body, std::fs::read(build.join("index.html")).unwrap());

    // What the package does not hold comes from upstream: here `baleen serve` itself.
    let (status, release, body) = get(&format!("{base}/openapi.json"));
    assert_eq!((status, release), (200, None));
    assert_eq!(body, server.get("/openapi.json").1);
    let (status, release, _) = get(&format!("{base}/checkout/missing.js"));
    assert_eq!((status, release), (404, None));
}
