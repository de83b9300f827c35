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

/// The middle byte of each payload: of a blob, or of every entry of a pack (a zip), so that every
/// blob the answer carries is hit, not a header field a reader may skip.
fn payload_middles(path: &str, body: &[u8]) -> Vec<usize> {
    if !path.starts_with("/v1/packs/") {
        return vec![body.len() / 2];
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
                    Act::Serve("/v1/packs/checkout/1.0.0.zip".to_owned())
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
            .position(|p| p == "/v1/packs/checkout/1.0.0..1.1.0.zip");
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
        report.fallbacks[0].starts_with("diff pack") && report.fallbacks[0].contains("not a zip"),
        "{:?}",
        report.fallbacks
    );
    for (path, bytes) in &v2 {
        let hit = client.resolve(&format!("{ROUTE}{path}")).unwrap();
        assert_eq!(&std::fs::read(hit.path).unwrap(), bytes, "{path}");
    }
}
