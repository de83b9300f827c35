//! `baleen watch` against a real server: a front-end developer edits a file and a device on the
//! dev channel serves the edited bytes at its next update.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use client_core::Client;
use manifests::Channel;
use tests::Server;

const ROUTE: &str = "https://m.example.com/docs/";
const DEADLINE: Duration = Duration::from_secs(30);

/// The watch process, killed when the test ends however it ends.
struct Watch(Child);

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `(uploaded, removed)` from the next `published …` line, waiting at most until `deadline`.
fn next_publish(lines: &Receiver<String>, deadline: Instant) -> (u64, u64) {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .expect("baleen watch published nothing in time");
        if !line.starts_with("published ") {
            continue;
        }
        // "published docs@0.0.0-dev.N: 3 files, 3 uploaded (…), 0 removed, index sequence 1"
        let count = |word: &str| {
            let before = line.split(word).next().unwrap();
            before.split_whitespace().last().unwrap().parse().unwrap()
        };
        return (count(" uploaded"), count(" removed"));
    }
}

/// The bytes `url` resolves to, if any.
fn served(client: &Client, url: &str) -> Option<Vec<u8>> {
    client
        .resolve(url)
        .map(|hit| std::fs::read(hit.path).unwrap())
}

/// Updates `client` until `done` holds, polling until `deadline`.
fn update_until(client: &Client, deadline: Instant, what: &str, done: impl Fn(&Client) -> bool) {
    loop {
        tests::update_now(client).unwrap();
        if done(client) {
            return;
        }
        assert!(Instant::now() < deadline, "the device never saw {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_edit_in_a_watched_folder_reaches_a_device_on_the_dev_channel() {
    let started = Instant::now();
    let server = Server::start();
    let folder = server.dir.path().join("site");
    std::fs::create_dir_all(folder.join("js")).unwrap();
    std::fs::write(folder.join("index.html"), "<h1>draft 1</h1>").unwrap();
    std::fs::write(
        folder.join("js/app.js"),
        "console.log('app');\n".repeat(500),
    )
    .unwrap();
    std::fs::write(folder.join("old.css"), "p { color: red }").unwrap();

    let child = Command::new(tests::baleen_bin())
        .arg("watch")
        .arg(&folder)
        .args(["--app", "shop", "--package", "docs", "--channel", "dev"])
        .args(["--route", ROUTE, "--debounce-ms", "100"])
        .envs(server.env())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut watch = Watch(child);
    let stdout = watch.0.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            eprintln!("watch: {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    assert_eq!(
        next_publish(&lines, Instant::now() + DEADLINE),
        (3, 0),
        "the first publish uploads every file"
    );

    let mut config = server.client_config(&server.dir.path().join("device"), "dev-phone", "6.0");
    config.channel = Channel::parse("dev").unwrap();
    let client = Client::open(
        config,
        std::sync::Arc::new(client_core::fetch::builtin::BuiltinFetcher::default()),
    )
    .unwrap();
    let page = format!("{ROUTE}index.html");
    update_until(&client, Instant::now() + DEADLINE, "draft 1", |c| {
        served(c, &page).as_deref() == Some(b"<h1>draft 1</h1>")
    });
    let app = std::fs::read(folder.join("js/app.js")).unwrap();
    assert_eq!(
        served(&client, &format!("{ROUTE}js/app.js")),
        Some(app.clone())
    );
    let first = client.status().packages[0].active.clone().unwrap();
    assert!(first.to_string().starts_with("0.0.0-dev."), "{first}");

    // The developer edits the page and deletes a stylesheet.
    std::fs::write(folder.join("index.html"), "<h1>draft 2</h1>").unwrap();
    std::fs::remove_file(folder.join("old.css")).unwrap();
    let deadline = Instant::now() + DEADLINE;
    let css = format!("{ROUTE}old.css");
    update_until(&client, deadline, "draft 2 without old.css", |c| {
        served(c, &page).as_deref() == Some(b"<h1>draft 2</h1>") && served(c, &css).is_none()
    });
    // The edit and the removal may land in one publish or two; together they upload one file.
    let (mut uploaded, mut removed) = next_publish(&lines, deadline);
    while (uploaded, removed) != (1, 1) {
        assert!(
            uploaded <= 1 && removed <= 1,
            "{uploaded} uploaded, {removed} removed"
        );
        let (u, r) = next_publish(&lines, deadline);
        (uploaded, removed) = (uploaded + u, removed + r);
    }
    assert_eq!(served(&client, &format!("{ROUTE}js/app.js")), Some(app));
    let second = client.status().packages[0].active.clone().unwrap();
    assert!(second > first, "{second} after {first}");

    // It keeps watching until stopped.
    assert!(watch.0.try_wait().unwrap().is_none(), "baleen watch exited");
    drop(watch);
    eprintln!("watch round trip: {:?}", started.elapsed());
}
