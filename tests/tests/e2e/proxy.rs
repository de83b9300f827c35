//! A man in the middle on the wire: a small HTTP proxy between the device's built-in fetcher and
//! the server flips bytes, truncates bodies or answers with other content. Every install through
//! it is refused with a clear error, and the release that was active keeps serving its bytes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use client_core::fetch::builtin::BuiltinFetcher;
use client_core::install::Method;
use client_core::{BaleenError, Client};
use manifests::Digest;
use tests::{ROUTE, Server, active_version, files_of, write_build};

/// What the proxy does to one request.
#[derive(Clone, Debug, PartialEq)]
enum Act {
    /// Forward it untouched.
    Pass,
    /// Forward it, then flip one byte in the middle of each payload (see [`payload_middles`]).
    Flip,
    /// Forward it, then answer with the first half of the body only (a consistent, shorter
    /// response: `Content-Length` matches, so it is no network error).
    Truncate,
    /// Answer with what the server returns for this other path.
    Serve(String),
}

type Rule = Box<dyn Fn(&str) -> Act + Send>;

/// An HTTP/1.1 proxy on `127.0.0.1:0`, one thread per connection and one request per connection.
struct Proxy {
    base: String,
    rule: Arc<Mutex<Rule>>,
    /// The path of every request, in order.
    log: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let rule: Arc<Mutex<Rule>> = Arc::new(Mutex::new(Box::new(|_: &str| Act::Pass)));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (upstream, shared, shared_log) = (upstream.to_owned(), rule.clone(), log.clone());
        // The accept loop lives as long as the test process; it holds no resource of the server.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (upstream, rule, log) = (upstream.clone(), shared.clone(), shared_log.clone());
                std::thread::spawn(move || serve(stream, &upstream, &rule, &log));
            }
        });
        Proxy { base, rule, log }
    }

    /// The paths requested since the last call.
    fn requests(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }

    fn set(&self, rule: impl Fn(&str) -> Act + Send + 'static) {
        *self.rule.lock().unwrap() = Box::new(rule);
    }
}

fn serve(stream: TcpStream, upstream: &str, rule: &Mutex<Rule>, log: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap().to_owned(),
        parts.next().unwrap().to_owned(),
    );
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).unwrap();
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap();
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();

    log.lock().unwrap().push(path.clone());
    let act = (rule.lock().unwrap())(&path);
    let target = match &act {
        Act::Serve(other) => other.clone(),
        _ => path,
    };
    let mut request = ureq::http::Request::builder()
        .method(method.as_str())
        .uri(format!("{upstream}{target}"));
    for (name, value) in &headers {
        if !["host", "connection", "content-length"].contains(&name.to_ascii_lowercase().as_str()) {
            request = request.header(name, value);
        }
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let response = agent.run(request.body(body).unwrap()).unwrap();
    let status = response.status();
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    for (name, value) in response.headers() {
        if !["content-length", "transfer-encoding", "connection"].contains(&name.as_str()) {
            head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
        }
    }
    let mut body = Vec::new();
    response
        .into_body()
        .into_reader()
        .read_to_end(&mut body)
        .unwrap();
    match act {
        Act::Flip if status.is_success() => {
            for at in payload_middles(&target, &body) {
                body[at] ^= 0x01;
            }
        }
        Act::Truncate => body.truncate(body.len() / 2),
        _ => {}
    }
    head.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    let mut stream = stream;
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
}

/// The middle byte of each payload: of a blob, or of every frame of a compact pack (every entry
/// of a zip pack), so that every blob the answer carries is hit, not a header field a reader may
/// skip.
fn payload_middles(path: &str, body: &[u8]) -> Vec<usize> {
    if !path.starts_with("/v1/packs/") {
        return vec![body.len() / 2];
    }
    if body.starts_with(&manifests::COMPACT_MAGIC) {
        // The frames follow the header (38 or 70 bytes) and the tags, which are short.
        let magic = [0x28, 0xb5, 0x2f, 0xfd];
        let mut at = 38 + body[38..].windows(4).position(|w| w == magic).unwrap();
        let mut middles = Vec::new();
        while at < body.len() {
            let len = manifests::frame_len(&body[at..]).unwrap();
            middles.push(at + len / 2);
            at += len;
        }
        return middles;
    }
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(body)).unwrap();
    (0..archive.len())
        .map(|i| {
            let entry = archive.by_index_raw(i).unwrap();
            (entry.data_start().unwrap() + entry.compressed_size() / 2) as usize
        })
        .collect()
}

fn is_download(path: &str) -> bool {
    path.starts_with("/v1/packs/") || path.starts_with("/v1/blobs/")
}

#[test]
fn a_proxy_that_flips_truncates_or_swaps_content_cannot_get_an_install_through() {
    let (server, build) = Server::with_first_release("one");
    let v1 = files_of(&build);
    let proxy = Proxy::start(&server.base);
    let mut config = server.client_config(&server.dir.path().join("device"), "device-1", "6.0");
    config.server = proxy.base.clone();
    let client = Client::open(config, Arc::new(BuiltinFetcher::default())).unwrap();
    // Through the proxy, untouched: release 1 installs.
    assert_eq!(tests::update_now(&client).unwrap().len(), 1);
    client
        .mark_ready(&manifests::PackageId::parse("checkout").unwrap())
        .unwrap();
    let serves_release_1 = |client: &Client, case: &str| {
        assert_eq!(active_version(client), "1.0.0", "{case}");
        for (path, bytes) in &v1 {
            let hit = client.resolve(&format!("{ROUTE}{path}")).unwrap();
            assert_eq!(&std::fs::read(hit.path).unwrap(), bytes, "{case}: {path}");
        }
        assert!(client.store().temp_files().unwrap().is_empty(), "{case}");
    };

    write_build(&build, "two");
    let v2 = files_of(&build);
    server.publish(&build, "checkout", "1.1.0", &["--channel", "production"]);
    // A blob the server really has, of another file: what a swapped answer carries.
    let other = Digest::of(&v1.iter().find(|(p, _)| p == "index.html").unwrap().1);

    let flip: fn(&str) -> Act = |path| {
        if is_download(path) {
            Act::Flip
        } else {
            Act::Pass
        }
    };
    let truncate: fn(&str) -> Act = |path| {
        if is_download(path) {
            Act::Truncate
        } else {
            Act::Pass
        }
    };
    let cases: [(&str, Rule); 3] = [
        ("flipped byte", Box::new(flip)),
        ("truncated body", Box::new(truncate)),
        (
            "swapped content",
            Box::new(move |path: &str| {
                if path.starts_with("/v1/packs/") {
                    Act::Serve("/v1/packs/checkout/1.0.0.bpk".to_owned())
                } else if path.starts_with("/v1/blobs/") {
                    Act::Serve(format!("/v1/blobs/{other}"))
                } else {
                    Act::Pass
                }
            }),
        ),
    ];
    for (case, rule) in cases {
        proxy.set(rule);
        proxy.requests();
        let err = tests::update_now(&client).unwrap_err();
        // The diff pack was tried and refused before the single blobs.
        let requests = proxy.requests();
        let pack = requests
            .iter()
            .position(|p| p == "/v1/packs/checkout/1.0.0..1.1.0.bpk");
        let blob = requests.iter().position(|p| p.starts_with("/v1/blobs/"));
        assert!(pack.is_some() && pack < blob, "{case}: {requests:?}");
        let message = err.to_string();
        eprintln!("{case}: {message}");
        // The last resort, single blobs, is checked against the signed manifest's sha256.
        assert!(message.contains("arrived as"), "{case}: {message}");
        if case == "swapped content" {
            assert!(message.contains(&other.to_string()), "{case}: {message}");
        }
        assert!(
            matches!(BaleenError::from(err), BaleenError::Verification { .. }),
            "{case}"
        );
        serves_release_1(&client, case);
    }

    // Only the packs are cut: the device notices, falls back to single blobs and installs.
    proxy.set(|path| {
        if path.starts_with("/v1/packs/") {
            Act::Truncate
        } else {
            Act::Pass
        }
    });
    let outcome = client.check().unwrap();
    let report = client.install(&outcome.updates[0]).unwrap();
    assert_eq!(report.method, Method::Blobs);
    assert!(
        report.fallbacks[0].starts_with("diff pack") && report.fallbacks[0].contains("cut short"),
        "{:?}",
        report.fallbacks
    );
    for (path, bytes) in &v2 {
        let hit = client.resolve(&format!("{ROUTE}{path}")).unwrap();
        assert_eq!(&std::fs::read(hit.path).unwrap(), bytes, "{path}");
    }
}

fn is_manifest_delta(path: &str) -> bool {
    path.starts_with("/v1/manifests/") && path.contains("/delta/")
}

/// The manifest paths a device asked for: whole (`/v1/manifests/{d}`) or delta (`…/delta/{from}`).
fn manifest_requests(proxy: &Proxy) -> Vec<String> {
    proxy
        .requests()
        .into_iter()
        .filter(|p| p.starts_with("/v1/manifests/"))
        .collect()
}

#[test]
fn an_update_fetches_the_manifest_as_a_delta_and_falls_back_to_the_whole_one() {
    let (server, build) = Server::with_first_release("one");
    let proxy = Proxy::start(&server.base);
    let open = |name: &str| {
        let mut config = server.client_config(&server.dir.path().join(name), name, "6.0");
        config.server = proxy.base.clone();
        Client::open(config, Arc::new(BuiltinFetcher::default())).unwrap()
    };
    let client = open("device-1");
    assert_eq!(tests::update_now(&client).unwrap().len(), 1);
    // No release held: the whole manifest.
    let first = manifest_requests(&proxy);
    assert!(
        first.len() == 1 && !first[0].contains("/delta/"),
        "{first:?}"
    );
    let v1_manifest = first[0].trim_start_matches("/v1/manifests/").to_owned();

    // Each release of the package as a delta from 1.0.0; every way the delta can fail falls back
    // to the whole manifest, verified on its own, and the update goes through.
    let cases: [(&str, Rule); 5] = [
        ("delta", Box::new(|_: &str| Act::Pass)),
        (
            "server without deltas",
            Box::new(|path: &str| match is_manifest_delta(path) {
                true => Act::Serve("/v1/manifests/not-a-route/delta".into()),
                false => Act::Pass,
            }),
        ),
        (
            "flipped delta",
            Box::new(|path: &str| match is_manifest_delta(path) {
                true => Act::Flip,
                false => Act::Pass,
            }),
        ),
        (
            "truncated delta",
            Box::new(|path: &str| match is_manifest_delta(path) {
                true => Act::Truncate,
                false => Act::Pass,
            }),
        ),
        (
            "a manifest in place of the delta",
            Box::new(move |path: &str| match is_manifest_delta(path) {
                true => Act::Serve(path.split("/delta/").next().unwrap().to_owned()),
                false => Act::Pass,
            }),
        ),
    ];
    for (n, (case, rule)) in cases.into_iter().enumerate() {
        let device = open(&format!("device-{}", n + 2));
        proxy.set(|_| Act::Pass);
        tests::update_now(&device).unwrap();
        let version = format!("1.{}.0", n + 1);
        write_build(&build, &format!("variant-{n}"));
        server.publish(&build, "checkout", &version, &["--channel", "production"]);
        proxy.set(rule);
        proxy.requests();
        let installed = tests::update_now(&device)
            .unwrap_or_else(|e| panic!("{case}: {e} after {:?}", proxy.requests()));
        assert_eq!(installed.len(), 1, "{case}");
        assert_eq!(active_version(&device), version, "{case}");
        let asked = manifest_requests(&proxy);
        let digest = installed[0].0.to.manifest;
        let delta_path = format!("/v1/manifests/{digest}/delta/");
        assert!(asked[0].starts_with(&delta_path), "{case}: {asked:?}");
        match case {
            "delta" => assert_eq!(asked.len(), 1, "{case}: {asked:?}"),
            _ => assert_eq!(asked[1..], [format!("/v1/manifests/{digest}")], "{case}"),
        }
        for (path, bytes) in files_of(&build) {
            let hit = device.resolve(&format!("{ROUTE}{path}")).unwrap();
            assert_eq!(std::fs::read(hit.path).unwrap(), bytes, "{case}: {path}");
        }
        // A device without the base release gets the whole manifest.
        let fresh = open(&format!("fresh-{n}"));
        proxy.requests();
        tests::update_now(&fresh).unwrap();
        assert_eq!(
            manifest_requests(&proxy),
            [format!("/v1/manifests/{digest}")]
        );
    }
    assert!(!v1_manifest.is_empty());

    // Every manifest answer forged: the update is refused and the device keeps its release.
    let device = open("device-2");
    let before = active_version(&device);
    write_build(&build, "last");
    server.publish(&build, "checkout", "2.0.0", &["--channel", "production"]);
    proxy.set(|path| match path.starts_with("/v1/manifests/") {
        true => Act::Flip,
        false => Act::Pass,
    });
    let err = tests::update_now(&device).unwrap_err();
    eprintln!("every manifest flipped: {err}");
    assert_eq!(active_version(&device), before);
}

#[test]
fn a_device_talking_to_a_server_without_compact_packs_installs_from_the_zip_pack() {
    let (server, build) = Server::with_first_release("one");
    let proxy = Proxy::start(&server.base);
    let mut config = server.client_config(&server.dir.path().join("device"), "device-1", "6.0");
    config.server = proxy.base.clone();
    let device = Client::open(config, Arc::new(BuiltinFetcher::default())).unwrap();
    tests::update_now(&device).unwrap();
    write_build(&build, "two");
    server.publish(&build, "checkout", "1.1.0", &["--channel", "production"]);

    // A server from before the compact container: `.bpk` is no route there (404).
    proxy.set(|path: &str| match path.ends_with(".bpk") {
        true => Act::Serve("/v1/packs/checkout/no-such-pack".into()),
        false => Act::Pass,
    });
    proxy.requests();
    let installed = tests::update_now(&device).unwrap();
    assert_eq!(installed[0].1, Method::DiffPack);
    let packs: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter(|p| p.starts_with("/v1/packs/"))
        .collect();
    assert_eq!(
        packs,
        [
            "/v1/packs/checkout/1.0.0..1.1.0.bpk",
            "/v1/packs/checkout/1.0.0..1.1.0.zip"
        ]
    );
    for (path, bytes) in files_of(&build) {
        let hit = device.resolve(&format!("{ROUTE}{path}")).unwrap();
        assert_eq!(std::fs::read(hit.path).unwrap(), bytes, "{path}");
    }
}
