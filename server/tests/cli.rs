//! The `baleen` command as a user runs it: keys, tokens, a real `serve` process, and publish,
//! rollout and rollback through the CLI.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

#[path = "support/cli.rs"]
mod support;

use support::{BIN, Serve, baleen, fails, init, ok};

/// Starts `baleen serve` on a free port and returns it with its base URL.
fn serve(data: &Path) -> (Serve, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (Serve(child), base)
}

/// `baleen serve --json` on a free port with `args` and `env`, and the JSON line it starts with.
fn serve_json(args: &[&str], env: &[(&str, &str)]) -> (Serve, serde_json::Value) {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--json"])
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let started = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    (Serve(child), started)
}

fn write_build(dir: &Path, variant: &str) {
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    std::fs::write(
        dir.join("index.html"),
        format!("<!doctype html><h1>{variant}</h1>"),
    )
    .unwrap();
    std::fs::write(
        dir.join("assets/app.js"),
        format!("console.log('{variant}')"),
    )
    .unwrap();
}

#[test]
fn serve_refuses_to_start_without_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = baleen(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ],
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no signing key") && err.contains("baleen keys generate"),
        "{err}"
    );
}

#[test]
fn keys_are_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let first = ok(&baleen(
        &["keys", "generate", "--dir", keys.to_str().unwrap()],
        &[],
    ));
    assert!(first.contains("key id:"));
    let before = std::fs::read(keys.join("signing.private.json")).unwrap();
    let again = baleen(&["keys", "generate", "--dir", keys.to_str().unwrap()], &[]);
    assert!(!again.status.success());
    assert_eq!(
        std::fs::read(keys.join("signing.private.json")).unwrap(),
        before
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(keys.join("signing.private.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "private key readable by others: {mode:o}");
    }
}

#[test]
fn publish_rollout_and_rollback_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_str = data.to_str().unwrap();
    let token = init(&data, "ci", "admin");
    let token = token.trim().to_owned();
    assert!(token.starts_with("baleen_"));
    let bad_scope = baleen(
        &[
            "token",
            "create",
            "--data-dir",
            data_str,
            "--name",
            "x",
            "--scope",
            "root",
        ],
        &[],
    );
    assert!(String::from_utf8_lossy(&bad_scope.stderr).contains("unknown scope"));

    let (_server, base) = serve(&data);
    let env = [
        ("BALEEN_SERVER", base.as_str()),
        ("BALEEN_TOKEN", token.as_str()),
    ];

    let v1 = dir.path().join("dist-v1");
    write_build(&v1, "one");
    let published = ok(&baleen(
        &[
            "publish",
            v1.to_str().unwrap(),
            "--app",
            "shop",
            "--package",
            "checkout",
            "--version",
            "1.0.0",
            "--channel",
            "production",
            "--create-channel",
            "--route",
            "https://m.example.com/checkout/",
            "--spa",
            "--json",
        ],
        &env,
    ));
    let answer: serde_json::Value = serde_json::from_str(&published).unwrap();
    assert_eq!(answer["created"], true);
    assert_eq!(answer["release"]["file_count"], 2);
    assert_eq!(answer["sequence"], 1);

    let v2 = dir.path().join("dist-v2");
    write_build(&v2, "two");
    let out = ok(&baleen(
        &[
            "publish",
            v2.to_str().unwrap(),
            "--app",
            "shop",
            "--package",
            "checkout",
            "--version",
            "1.1.0",
        ],
        &env,
    ));
    assert!(
        out.starts_with("published checkout@1.1.0: 2 files"),
        "{out}"
    );

    let out = ok(&baleen(
        &[
            "rollout",
            "--package",
            "checkout",
            "--channel",
            "production",
            "--create-channel",
            "--version",
            "1.1.0",
            "--percent",
            "12.5",
        ],
        &env,
    ));
    assert_eq!(
        out.trim(),
        "checkout on production: stable 1.0.0, candidate 1.1.0 at 12.5% (index sequence 2)"
    );
    let out = ok(&baleen(
        &[
            "complete",
            "--package",
            "checkout",
            "--channel",
            "production",
        ],
        &env,
    ));
    assert_eq!(
        out.trim(),
        "checkout on production: stable 1.1.0, candidate - (index sequence 3)"
    );
    let out = ok(&baleen(
        &[
            "rollback",
            "--package",
            "checkout",
            "--channel",
            "production",
            "--reason",
            "blank page",
        ],
        &env,
    ));
    assert_eq!(
        out.trim(),
        "checkout on production: stable 1.0.0, candidate - (index sequence 4)"
    );
    // Undo the rollback, then undo the undo.
    let undo = [
        "undo",
        "--package",
        "checkout",
        "--channel",
        "production",
        "--reason",
        "wrong call",
    ];
    let out = ok(&baleen(&undo, &env));
    assert_eq!(
        out.trim(),
        "checkout on production: stable 1.1.0, candidate - (index sequence 5)"
    );
    let out = ok(&baleen(&undo, &env));
    assert_eq!(
        out.trim(),
        "checkout on production: stable 1.0.0, candidate - (index sequence 6)"
    );

    let bad = baleen(
        &[
            "rollout",
            "--package",
            "checkout",
            "--channel",
            "production",
            "--create-channel",
            "--version",
            "1.1.0",
            "--percent",
            "101",
        ],
        &env,
    );
    assert!(String::from_utf8_lossy(&bad.stderr).contains("above 100"));
    let missing = baleen(
        &[
            "promote",
            "--package",
            "checkout",
            "--channel",
            "production",
            "--create-channel",
            "--version",
            "9.0.0",
        ],
        &env,
    );
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("release 9.0.0 not found (not_found, HTTP 404)"),
        "{err}"
    );

    let history = ok(&baleen(
        &[
            "history",
            "--package",
            "checkout",
            "--channel",
            "production",
            "--json",
        ],
        &env,
    ));
    let history: serde_json::Value = serde_json::from_str(&history).unwrap();
    let actions: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["undo", "undo", "rollback", "complete", "rollout", "promote"]
    );
    assert_eq!(history[2]["reason"], "blank page");
    assert_eq!(history[0]["actor"], "ci");

    let releases = ok(&baleen(&["releases", "--package", "checkout"], &env));
    let versions: Vec<&str> = releases
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(versions, ["version", "1.1.0", "1.0.0"]);

    let no_token = baleen(
        &["releases", "--package", "checkout", "--server", &base],
        &[("HOME", dir.path().to_str().unwrap())],
    );
    assert!(String::from_utf8_lossy(&no_token.stderr).contains("no token"));
}

#[test]
fn priority_and_prefetch_set_at_publish_reach_the_signed_index() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let token = init(&data, "ci", "admin");
    let (_server, base) = serve(&data);
    let env = [
        ("BALEEN_SERVER", base.as_str()),
        ("BALEEN_TOKEN", token.trim()),
    ];
    let publish = |variant: &str, version: &str, extra: &[&str]| {
        let build = dir.path().join(variant);
        write_build(&build, variant);
        let mut args = vec![
            "publish",
            build.to_str().unwrap(),
            "--app",
            "shop",
            "--package",
            "checkout",
            "--version",
            version,
            "--route",
            "https://m.example.com/checkout/",
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = baleen(&args, &env);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out, text)
    };
    let stable_entry = || {
        let index: serde_json::Value = serde_json::from_slice(&harness_get(
            &base,
            "/v1/apps/shop/channels/production/index",
        ))
        .unwrap();
        index["signed"]["packages"]["checkout"].clone()
    };

    let (out, text) = publish(
        "one",
        "1.0.0",
        &[
            "--channel",
            "production",
            "--create-channel",
            "--priority",
            "90",
            "--prefetch",
            "wifi-only",
        ],
    );
    ok(&out);
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["release"]["priority"], 90);
    assert_eq!(answer["release"]["prefetch"], "wifi_only");
    let entry = stable_entry();
    assert_eq!(entry["priority"], 90);
    assert_eq!(entry["prefetch"], "wifi_only");
    assert_eq!(entry["stable"]["version"], "1.0.0");

    // A candidate's own policy waits until it is stable: the index has one per package.
    let (out, _) = publish(
        "two",
        "1.1.0",
        &["--priority", "5", "--prefetch", "on-first-use"],
    );
    ok(&out);
    ok(&baleen(
        &[
            "rollout",
            "--package",
            "checkout",
            "--channel",
            "production",
            "--create-channel",
            "--version",
            "1.1.0",
            "--percent",
            "50",
        ],
        &env,
    ));
    let entry = stable_entry();
    assert_eq!(entry["candidate"]["version"], "1.1.0");
    assert_eq!(
        (entry["priority"].clone(), entry["prefetch"].clone()),
        (90.into(), "wifi_only".into())
    );
    ok(&baleen(
        &[
            "complete",
            "--package",
            "checkout",
            "--channel",
            "production",
        ],
        &env,
    ));
    let entry = stable_entry();
    assert_eq!(
        (entry["priority"].clone(), entry["prefetch"].clone()),
        (5.into(), "on_first_use".into())
    );

    // Unset, both follow the previous release; "always" is the default and left out.
    let (out, _) = publish(
        "three",
        "1.2.0",
        &["--channel", "production", "--create-channel"],
    );
    ok(&out);
    let entry = stable_entry();
    assert_eq!(
        (entry["priority"].clone(), entry["prefetch"].clone()),
        (5.into(), "on_first_use".into())
    );
    let (out, _) = publish(
        "four",
        "1.3.0",
        &[
            "--channel",
            "production",
            "--create-channel",
            "--prefetch",
            "always",
        ],
    );
    ok(&out);
    let entry = stable_entry();
    assert_eq!(entry["priority"], 5);
    assert!(entry.get("prefetch").is_none(), "{entry}");

    let (bad, _) = publish("five", "1.4.0", &["--prefetch", "sometimes"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("wifi-only") && err.contains("on-first-use"),
        "{err}"
    );
    let (bad, _) = publish("five", "1.4.0", &["--priority", "256"]);
    assert!(!bad.status.success());
}

#[test]
fn watch_publishes_each_change_uploading_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let token = init(&data, "dev", "release");
    let (_server, base) = serve(&data);
    let dist = dir.path().join("dist");
    write_build(&dist, "one");
    std::fs::write(dist.join("assets/extra.css"), "body{}").unwrap();

    let mut watch = Command::new(BIN)
        .args([
            "watch",
            dist.to_str().unwrap(),
            "--app",
            "shop",
            "--package",
            "web",
            "--route",
            "https://m.example.com/web/",
        ])
        .args(["--debounce-ms", "200", "--max-publishes", "3"])
        .env("BALEEN_SERVER", &base)
        .env("BALEEN_TOKEN", token.trim())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(
        first.contains(": 3 files, 3 uploaded") && first.contains("index sequence 1"),
        "{first}"
    );

    let changed_at = std::time::Instant::now();
    std::fs::write(dist.join("assets/app.js"), "console.log('two')").unwrap();
    let second = lines.next().unwrap().unwrap();
    let took = changed_at.elapsed();
    assert!(
        second.contains(": 3 files, 1 uploaded") && second.contains("0 removed"),
        "{second}"
    );
    assert!(took < std::time::Duration::from_secs(5), "took {took:?}");

    std::fs::remove_file(dist.join("assets/extra.css")).unwrap();
    let third = lines.next().unwrap().unwrap();
    assert!(
        third.contains(": 2 files, 0 uploaded (0 bytes), 1 removed"),
        "{third}"
    );
    assert!(watch.wait().unwrap().success());

    // The dev channel now serves the edited script and no longer the removed file.
    let index = harness_get(&base, "/v1/apps/shop/channels/dev/index");
    let index: serde_json::Value = serde_json::from_slice(&index).unwrap();
    let digest = index["signed"]["packages"]["web"]["stable"]["manifest"]
        .as_str()
        .unwrap()
        .to_owned();
    let manifest: serde_json::Value =
        serde_json::from_slice(&harness_get(&base, &format!("/v1/manifests/{digest}"))).unwrap();
    let files = manifest["signed"]["files"].as_object().unwrap();
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        ["assets/app.js", "index.html"]
    );
    let script = files["assets/app.js"]["sha256"].as_str().unwrap();
    assert_eq!(
        harness_get(&base, &format!("/v1/blobs/{script}")),
        b"console.log('two')"
    );
}

fn harness_get(base: &str, path: &str) -> Vec<u8> {
    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
    agent
        .get(&format!("{base}{path}"))
        .call()
        .unwrap()
        .into_body()
        .read_to_vec()
        .unwrap()
}

/// A loopback address nothing listens on: a free port, released again.
fn closed_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

/// A server with `checkout@1.0.0` stable on `production`; returns it with its environment.
fn started(dir: &Path) -> (Serve, String, String) {
    let data = dir.join("data");
    let token = init(&data, "ci", "admin").trim().to_owned();
    let (server, base) = serve(&data);
    let build = dir.join("dist");
    write_build(&build, "one");
    ok(&baleen(
        &[
            "publish",
            build.to_str().unwrap(),
            "--app",
            "shop",
            "--package",
            "checkout",
            "--version",
            "1.0.0",
            "--channel",
            "production",
            "--create-channel",
            "--route",
            "https://m.example.com/checkout/",
        ],
        &[("BALEEN_SERVER", &base), ("BALEEN_TOKEN", &token)],
    ));
    (server, base, token)
}

#[test]
fn errors_name_what_the_user_did_not_the_api_path() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, base, token) = started(dir.path());
    let env = [("BALEEN_SERVER", base.as_str()), ("BALEEN_TOKEN", &token)];
    let err = fails(&baleen(
        &[
            "rollout",
            "--package",
            "checkout",
            "--channel",
            "production",
            "--create-channel",
            "--version",
            "1.5.0",
            "--percent",
            "10",
        ],
        &env,
    ));
    assert_eq!(
        err.trim(),
        "error: rolling out checkout 1.5.0 on production: release 1.5.0 not found \
         (not_found, HTTP 404)"
    );
    let err = fails(&baleen(
        &[
            "history",
            "--package",
            "nosuchpackage",
            "--channel",
            "production",
        ],
        &env,
    ));
    assert!(
        err.starts_with("error: reading the history of nosuchpackage on production: package nosuchpackage not found"),
        "{err}"
    );
    let err = fails(&baleen(
        &["releases", "--package", "checkout"],
        &[("BALEEN_SERVER", &base), ("BALEEN_TOKEN", "baleen_0000")],
    ));
    assert!(
        err.contains("listing the releases of checkout: missing or unknown token")
            && err.contains("baleen token create"),
        "{err}"
    );
    let closed = closed_address();
    let err = fails(&baleen(
        &["releases", "--package", "checkout"],
        &[("BALEEN_SERVER", &closed), ("BALEEN_TOKEN", &token)],
    ));
    assert!(
        err.contains(&format!(
            "listing the releases of checkout: cannot reach the server at {closed}"
        )),
        "{err}"
    );
    assert!(!err.contains("/v1/"), "{err}");
}

#[test]
fn a_missing_entry_page_is_named_as_the_user_wrote_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, base, token) = started(dir.path());
    let env = [("BALEEN_SERVER", base.as_str()), ("BALEEN_TOKEN", &token)];
    let build = dir.path().join("dist");
    let publish = |source: &Path| {
        baleen(
            &[
                "publish",
                source.to_str().unwrap(),
                "--app",
                "shop",
                "--package",
                "checkout",
                "--version",
                "1.1.0",
                "--entry",
                "main.html",
            ],
            &env,
        )
    };
    // A directory is checked here, before anything is zipped.
    let err = fails(&publish(&build));
    assert_eq!(
        err.trim(),
        format!(
            "error: entry page \"main.html\" is not in {} (choose one with --entry)",
            build.display()
        )
    );
    // A zip is checked by the server, which names the page the same way.
    let zip = dir.path().join("dist.zip");
    let mut bytes = server::remote::zip_dir(&build).unwrap();
    std::io::copy(&mut bytes, &mut std::fs::File::create(&zip).unwrap()).unwrap();
    let err = fails(&publish(&zip));
    assert!(
        err.contains(
            "publishing checkout 1.1.0: entry page \"main.html\" is not in the upload \
             (choose one with --entry)"
        ),
        "{err}"
    );
    assert!(!err.contains("RelPath"), "{err}");
}

#[test]
fn a_server_address_without_a_scheme_is_taken_as_http_and_others_get_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, base, token) = started(dir.path());
    let bare = base.strip_prefix("http://").unwrap();
    let out = ok(&baleen(
        &["releases", "--package", "checkout", "--server", bare],
        &[("BALEEN_TOKEN", &token)],
    ));
    assert!(out.lines().nth(1).unwrap().starts_with("1.0.0 "), "{out}");

    for (server, expected) in [
        (
            format!("ftp://{bare}"),
            "ftp:// is not supported; use an http:// or https:// URL, such as http://127.0.0.1:8080",
        ),
        (
            "http://".to_owned(),
            "is not a URL; give one such as http://127.0.0.1:8080",
        ),
    ] {
        let err = fails(&baleen(
            &["releases", "--package", "checkout", "--server", &server],
            &[("BALEEN_TOKEN", &token)],
        ));
        assert!(err.contains(expected), "{server}: {err}");
    }

    // The client config file is read the same way, from $XDG_CONFIG_HOME/baleen/client.json.
    let config = dir.path().join("config");
    std::fs::create_dir_all(config.join("baleen")).unwrap();
    std::fs::write(
        config.join("baleen/client.json"),
        serde_json::json!({"server": bare, "token": token}).to_string(),
    )
    .unwrap();
    let out = ok(&baleen(
        &["releases", "--package", "checkout", "--json"],
        &[("XDG_CONFIG_HOME", config.to_str().unwrap())],
    ));
    let releases: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(releases[0]["version"], "1.0.0");
}

#[test]
fn a_busy_port_is_reported_once_and_leaves_the_data_directory_alone() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    init(&data, "ci", "admin");
    let staged = data.join("tmp/up-inflight");
    std::fs::create_dir_all(&staged).unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = fails(&baleen(
        &[
            "serve",
            "--listen",
            &addr,
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
    ));
    assert_eq!(
        err.trim(),
        format!(
            "error: {addr} is already in use (another `baleen serve`?); listen elsewhere with \
             --listen or BALEEN_LISTEN"
        )
    );
    // A running server's uploads in flight are not cleared by a second one that cannot start.
    assert!(staged.is_dir());
}

#[test]
fn token_create_refuses_a_data_directory_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("baleen-dta");
    let err = fails(&baleen(
        &[
            "token",
            "create",
            "--data-dir",
            missing.to_str().unwrap(),
            "--name",
            "ci",
            "--scope",
            "admin",
        ],
        &[],
    ));
    assert!(
        err.contains(&format!("no data directory at {}", missing.display()))
            && err.contains("BALEEN_DATA_DIR"),
        "{err}"
    );
    assert!(!missing.exists());
}

#[test]
fn publish_arguments_are_checked_before_anything_is_zipped_or_uploaded() {
    let dir = tempfile::tempdir().unwrap();
    let build = dir.path().join("dist");
    write_build(&build, "one");
    // Nothing listens there: a publish that got as far as the upload would say so.
    let closed = closed_address();
    let env = [
        ("BALEEN_SERVER", closed.as_str()),
        ("BALEEN_TOKEN", "baleen_x"),
    ];
    let publish = |extra: &[&str]| {
        let mut args = vec![
            "publish",
            build.to_str().unwrap(),
            "--app",
            "shop",
            "--package",
            "checkout",
            "--version",
            "1.0.0",
        ];
        args.extend_from_slice(extra);
        baleen(&args, &env)
    };
    for (extra, expected) in [
        (&["--requires", ">=banana"][..], "requirement"),
        (
            &["--route", "ftp://m.example.com/"][..],
            "ftp://m.example.com/",
        ),
        (&["--entry", "../index.html"][..], "../index.html"),
        (&["--source-revision", ""][..], "source_revision"),
    ] {
        let err = fails(&publish(extra));
        assert!(
            err.contains("nothing was published; check the arguments") && err.contains(expected),
            "{extra:?}: {err}"
        );
        assert!(!err.contains("cannot reach"), "{extra:?}: {err}");
    }
    let err = fails(&baleen(
        &[
            "publish",
            build.to_str().unwrap(),
            "--app",
            "shop",
            "--package",
            "checkout",
            "--version",
            "1.0",
        ],
        &env,
    ));
    assert!(err.contains("--version"), "{err}");
    let err = fails(&publish(&["--notes", "fine"]));
    assert!(err.contains("cannot reach the server"), "{err}");
}

/// Asserts that column `header` of `table` (a header line, then rows) lines up: each row's cell
/// starts where the header starts (left-aligned) or ends where it ends (right-aligned).
#[track_caller]
fn assert_column(table: &str, header: &str, right: bool) {
    let mut lines = table.lines();
    let head = lines.next().unwrap();
    let start = head
        .match_indices(header)
        .map(|(i, _)| i)
        .find(|&i| {
            (i == 0 || head.as_bytes()[i - 1] == b' ')
                && head
                    .as_bytes()
                    .get(i + header.len())
                    .is_none_or(|&b| b == b' ')
        })
        .unwrap_or_else(|| panic!("no column {header:?} in {head:?}"));
    let end = start + header.len();
    for row in lines {
        let bytes = row.as_bytes();
        let aligned = if right {
            bytes.get(end - 1).is_some_and(|&b| b != b' ')
                && bytes.get(end).is_none_or(|&b| b == b' ')
        } else {
            (start == 0 || bytes.get(start - 1) == Some(&b' '))
                && bytes.get(start).is_some_and(|&b| b != b' ')
        };
        assert!(aligned, "column {header:?} out of line:\n{table}");
    }
}

#[test]
fn tables_line_up_and_empty_results_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, base, token) = started(dir.path());
    let env = [("BALEEN_SERVER", base.as_str()), ("BALEEN_TOKEN", &token)];
    let build = dir.path().join("dist-2");
    write_build(&build, "a second build, somewhat longer");
    ok(&baleen(
        &[
            "publish",
            build.to_str().unwrap(),
            "--app",
            "shop",
            "--package",
            "checkout",
            "--version",
            "1.10.0-beta.1",
            "--notes",
            "second",
            "--priority",
            "200",
        ],
        &env,
    ));
    ok(&baleen(
        &[
            "rollout",
            "--package",
            "checkout",
            "--channel",
            "production",
            "--create-channel",
            "--version",
            "1.10.0-beta.1",
            "--percent",
            "12.5",
            "--reason",
            "first step",
        ],
        &env,
    ));

    let releases = ok(&baleen(&["releases", "--package", "checkout"], &env));
    assert_eq!(releases.lines().count(), 3, "{releases}");
    for (header, right) in [
        ("version", false),
        ("created", false),
        ("files", true),
        ("bytes", true),
        ("requires", false),
        ("priority", true),
        ("prefetch", false),
        ("publisher", false),
    ] {
        assert_column(&releases, header, right);
    }
    assert!(releases.lines().all(|l| !l.ends_with(' ')), "{releases}");

    let history = ok(&baleen(
        &[
            "history",
            "--package",
            "checkout",
            "--channel",
            "production",
        ],
        &env,
    ));
    assert_eq!(history.lines().count(), 3, "{history}");
    for (header, right) in [
        ("sequence", true),
        ("at", false),
        ("action", false),
        ("from", false),
        ("to", false),
        ("share", true),
        ("by", false),
        ("reason", false),
    ] {
        assert_column(&history, header, right);
    }
    assert!(
        history.lines().nth(1).unwrap().contains("12.5%"),
        "{history}"
    );

    let event = |version: &str, kind: &str| serde_json::json!({"package": "checkout", "version": version, "kind": kind});
    // Devices report with the app's ingest key, made and listed by the command line.
    let key = ok(&baleen(
        &[
            "ingest-key",
            "create",
            "--app",
            "shop",
            "--name",
            "android-5.3",
        ],
        &env,
    ));
    let key = key.trim();
    assert!(key.starts_with("bik_"), "{key}");
    let keys = ok(&baleen(&["ingest-key", "list", "--app", "shop"], &env));
    assert!(
        keys.contains("android-5.3") && keys.contains("active") && !keys.contains("bik_"),
        "{keys}"
    );
    let events = serde_json::json!({"app": "shop", "channel": "production", "ingest_key": key,
        "device_id": "cli-device", "events": [
        event("1.0.0", "installed"), event("1.10.0-beta.1", "installed"),
        event("1.10.0-beta.1", "activated"),
        {"package": "checkout", "version": "1.0.0", "kind": "opens", "count": 1000, "offline_hits": 999},
    ]});
    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
    agent
        .post(&format!("{base}/v1/events"))
        .content_type("application/json")
        .send(events.to_string().as_bytes())
        .unwrap();
    let stats = ok(&baleen(
        &["stats", "--app", "shop", "--channel", "production"],
        &env,
    ));
    assert_eq!(stats.lines().count(), 3, "{stats}");
    // One device activated 1.10.0-beta.1 and none failed: 0 %, and up to 79.3 % at 95 %.
    assert!(stats.contains("0.0% (0.0%..79.3%)"), "{stats}");
    for (header, right) in [
        ("package", false),
        ("version", false),
        ("installed", true),
        ("activated", true),
        ("failure rate (95 %)", true),
        ("opens", true),
        ("offline", true),
        ("<1s", true),
    ] {
        assert_column(&stats, header, right);
    }

    let empty = ok(&baleen(
        &[
            "history",
            "--package",
            "checkout",
            "--channel",
            "nosuchchannel",
        ],
        &env,
    ));
    assert_eq!(empty, "no history for checkout on nosuchchannel\n");
    let empty = ok(&baleen(
        &["stats", "--app", "shop", "--channel", "beta"],
        &env,
    ));
    assert_eq!(empty, "no figures for app shop on beta yet\n");
    let empty = ok(&baleen(
        &[
            "history",
            "--package",
            "checkout",
            "--channel",
            "nosuchchannel",
            "--json",
        ],
        &env,
    ));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&empty).unwrap(),
        serde_json::json!([])
    );
}

#[test]
fn keys_token_serve_and_watch_print_json_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keys = ok(&baleen(
        &[
            "keys",
            "generate",
            "--dir",
            data.join("keys").to_str().unwrap(),
            "--json",
        ],
        &[],
    ));
    let keys: serde_json::Value = serde_json::from_str(&keys).unwrap();
    assert!(!keys["key_id"].as_str().unwrap().is_empty());
    assert!(Path::new(keys["private_key_file"].as_str().unwrap()).is_file());
    assert!(Path::new(keys["public_key_file"].as_str().unwrap()).is_file());

    let token = ok(&baleen(
        &[
            "token",
            "create",
            "--data-dir",
            data.to_str().unwrap(),
            "--name",
            "dev",
            "--scope",
            "release",
            "--expires-in",
            "30d",
            "--json",
        ],
        &[],
    ));
    let token: serde_json::Value = serde_json::from_str(&token).unwrap();
    assert!(token["token"].as_str().unwrap().starts_with("baleen_"));
    assert_eq!(
        (&token["name"], &token["scope"], &token["state"]),
        (&"dev".into(), &"release".into(), &"active".into())
    );
    assert!(token["package"].is_null());
    let lifetime = manifests::Timestamp::parse(token["expires_at"].as_str().unwrap())
        .unwrap()
        .unix_secs()
        - manifests::Timestamp::parse(token["created_at"].as_str().unwrap())
            .unwrap()
            .unix_secs();
    assert_eq!(lifetime, 30 * 86_400);

    let (_server, started) = serve_json(&["--data-dir", data.to_str().unwrap()], &[]);
    let base = started["listening"].as_str().unwrap().to_owned();
    assert_eq!(started["key_id"], keys["key_id"]);

    let dist = dir.path().join("dist");
    write_build(&dist, "one");
    let out = ok(&baleen(
        &[
            "watch",
            dist.to_str().unwrap(),
            "--app",
            "shop",
            "--package",
            "web",
            "--route",
            "https://m.example.com/web/",
            "--max-publishes",
            "1",
            "--json",
        ],
        &[
            ("BALEEN_SERVER", &base),
            ("BALEEN_TOKEN", token["token"].as_str().unwrap()),
        ],
    ));
    let published: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(published["published"]["release"]["file_count"], 2);
    assert_eq!(published["uploaded_files"], 2);
    assert_eq!(published["published"]["sequence"], 1);
}

#[test]
fn zipping_and_uploading_show_progress_only_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, base, token) = started(dir.path());
    let build = dir.path().join("big");
    write_build(&build, "big");
    // Bytes that do not compress, so that the upload is large too.
    let mut state = 1u64;
    let noise: Vec<u8> = (0..3_000_000)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect();
    std::fs::write(build.join("assets/big.bin"), noise).unwrap();
    let build_arg = build.to_str().unwrap();
    let args = |version| {
        [
            "publish",
            build_arg,
            "--app",
            "shop",
            "--package",
            "checkout",
            "--version",
            version,
        ]
    };
    let env = [("BALEEN_SERVER", base.as_str()), ("BALEEN_TOKEN", &token)];

    // Standard error is not a terminal here: no bar.
    let plain = baleen(&args("1.1.0"), &env);
    ok(&plain);
    assert_eq!(String::from_utf8_lossy(&plain.stderr), "");

    // `script` gives the command a terminal.
    let Ok(out) = Command::new("script")
        .args([
            "-q",
            "-e",
            "-c",
            &format!("{BIN} {}", args("1.2.0").join(" ")),
        ])
        .arg("/dev/null")
        .env_remove("BALEEN_CONFIG")
        .env("BALEEN_SERVER", &base)
        .env("BALEEN_TOKEN", &token)
        .env("RUST_LOG", "warn")
        .output()
    else {
        eprintln!("skipped: no `script` command to run the CLI on a terminal");
        return;
    };
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("zip    [####################] 100%"),
        "{shown}"
    );
    assert!(
        shown.contains("upload [####################] 100%"),
        "{shown}"
    );
    assert!(shown.contains("published checkout@1.2.0"), "{shown}");
}

#[test]
fn bad_settings_are_refused_at_start_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    init(&data, "ci", "admin");
    let data_arg = data.to_str().unwrap();
    let serve = |args: &[&str], env: &[(&str, &str)]| {
        let mut all = vec!["serve", "--listen", "127.0.0.1:0", "--data-dir", data_arg];
        all.extend_from_slice(args);
        fails(&baleen(&all, env))
    };
    let ttl = "refusing to start: --index-ttl-secs 0 (or BALEEN_INDEX_TTL_SECS): an index must \
               stay valid from 2 seconds";
    let err = serve(&["--index-ttl-secs", "0"], &[]);
    assert!(err.starts_with(&format!("error: {ttl}")), "{err}");
    let err = serve(&[], &[("BALEEN_INDEX_TTL_SECS", "0")]);
    assert!(err.starts_with(&format!("error: {ttl}")), "{err}");
    let err = serve(&["--index-ttl-secs", "40000000"], &[]);
    assert!(err.contains("--index-ttl-secs 40000000"), "{err}");
    let err = serve(&["--max-upload-bytes", "0"], &[]);
    assert!(
        err.contains(
            "--max-upload-bytes 0 (or BALEEN_MAX_UPLOAD_BYTES): every publish would be refused"
        ),
        "{err}"
    );
    // The same holds for the demo, and nothing was opened or written.
    let err = serve(&["--demo", "--index-ttl-secs", "1"], &[]);
    assert!(err.contains("--index-ttl-secs 1"), "{err}");
    assert!(!data.join("blobs").exists());
}

#[test]
fn every_serve_setting_has_an_environment_variable_and_logs_can_be_json() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let token = init(&data, "ci", "admin").trim().to_owned();
    // A key outside the data directory, as BALEEN_KEY names it.
    let elsewhere = dir.path().join("keys-elsewhere");
    ok(&baleen(
        &["keys", "generate", "--dir", elsewhere.to_str().unwrap()],
        &[],
    ));
    let key = elsewhere.join("signing.private.json");
    let mut child = Command::new(BIN)
        .arg("serve")
        .env("BALEEN_DATA_DIR", &data)
        .env("BALEEN_LISTEN", "127.0.0.1:0")
        .env("BALEEN_KEY", &key)
        .env("BALEEN_INDEX_TTL_SECS", "3600")
        .env("BALEEN_MAX_UPLOAD_BYTES", "20000")
        .env("BALEEN_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let _server = Serve(child);
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    let mut log = String::new();
    stderr.read_line(&mut log).unwrap();
    let log: serde_json::Value = serde_json::from_str(&log).unwrap();
    assert_eq!(
        (&log["level"], &log["message"]),
        (&"INFO".into(), &"serving".into())
    );
    let public = std::fs::read(elsewhere.join("signing.public.json")).unwrap();
    let public = manifests::PublicKey::from_file_bytes(&public).unwrap();
    assert_eq!(log["keyid"], public.id().to_string());

    let env = [("BALEEN_SERVER", base.as_str()), ("BALEEN_TOKEN", &token)];
    let build = dir.path().join("dist");
    write_build(&build, "one");
    let publish = |version: &str| {
        baleen(
            &[
                "publish",
                build.to_str().unwrap(),
                "--app",
                "shop",
                "--package",
                "checkout",
                "--version",
                version,
                "--channel",
                "production",
                "--create-channel",
                "--route",
                "https://m.example.com/checkout/",
            ],
            &env,
        )
    };
    ok(&publish("1.0.0"));
    let index: serde_json::Value = serde_json::from_slice(&harness_get(
        &base,
        "/v1/apps/shop/channels/production/index",
    ))
    .unwrap();
    let time = |field: &str| {
        manifests::Timestamp::parse(index["signed"][field].as_str().unwrap())
            .unwrap()
            .unix_secs()
    };
    assert_eq!(time("expires_at") - time("issued_at"), 3600);
    let mut state = 7u64;
    let noise: Vec<u8> = (0..30_000)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect();
    std::fs::write(build.join("noise.bin"), noise).unwrap();
    let err = fails(&publish("1.1.0"));
    assert!(err.contains("upload larger than 20000 bytes"), "{err}");

    // BALEEN_DEMO, with the start as JSON.
    let (_demo, started) = serve_json(&[], &[("BALEEN_DEMO", "true")]);
    assert!(
        started["admin_token"]
            .as_str()
            .unwrap()
            .starts_with("baleen_")
    );
    // The demo's simulated fleet reports through the ingest path: figures in devices.
    let (base, admin) = (
        started["listening"].as_str().unwrap().to_owned(),
        started["admin_token"].as_str().unwrap().to_owned(),
    );
    let remote = [
        ("BALEEN_SERVER", base.as_str()),
        ("BALEEN_TOKEN", admin.as_str()),
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let figures = loop {
        let out = baleen(
            &[
                "stats",
                "--app",
                "demo",
                "--channel",
                "production",
                "--json",
            ],
            &remote,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let of = |v: &str| {
            stats
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["version"] == v)
                .map(|r| {
                    (
                        r["activated"].as_u64().unwrap(),
                        r["failed"].as_u64().unwrap(),
                    )
                })
        };
        let now = (of("1.0.0"), of("1.1.0"));
        if now == (Some((400, 2)), Some((200, 5))) || std::time::Instant::now() > deadline {
            break now;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(
        figures,
        (Some((400, 2)), Some((200, 5))),
        "the demo fleet's figures"
    );

    // A ramp through the CLI on those figures: 5/200 failing against 2/400 is within a margin
    // of 6 points at 95 %, so the candidate goes from 50 % to the first step, then to 100 %.
    let ramp = |args: &[&str]| {
        let mut all = vec!["ramp"];
        all.extend_from_slice(args);
        let out = baleen(&all, &remote);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let target = ["--package", "checkout", "--channel", "production"];
    let started_ramp = ramp(
        &[
            &["start"][..],
            &target,
            &[
                "--steps",
                "60,100",
                "--min-devices",
                "100",
                "--min-step-secs",
                "0",
                "--margin",
                "6",
            ],
        ]
        .concat(),
    );
    assert!(
        started_ramp.contains("ramping 1.1.0 through 60%, 100%"),
        "{started_ramp}"
    );
    let evaluated: serde_json::Value =
        serde_json::from_str(&ramp(&["evaluate", "--json"])).unwrap();
    assert_eq!(evaluated[0]["last"]["verdict"], "advance", "{evaluated}");
    assert_eq!(evaluated[0]["last"]["basis_points"], 6000, "{evaluated}");
    let shown = ramp(&[&["show"][..], &target[..4]].concat());
    assert!(
        shown.contains("advance at 60%") && shown.contains("5/200"),
        "{shown}"
    );
    let stopped = ramp(&[&["stop"][..], &target[..4]].concat());
    assert!(stopped.contains("(ended)"), "{stopped}");
    // A margin the minimum sample cannot show is pointed out: 1 point needs ~381 clean devices.
    let out = baleen(
        &[
            &["ramp", "start"][..],
            &target,
            &["--steps", "100", "--margin", "1", "--min-devices", "10"],
        ]
        .concat(),
        &remote,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let note = String::from_utf8_lossy(&out.stderr);
    assert!(note.contains("about 381 devices"), "{note}");
    // A policy that does not hold is refused, naming what is wrong.
    let out = baleen(
        &[&["ramp", "start"][..], &target, &["--steps", "50,20"]].concat(),
        &remote,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be 10000"));

    // A command's error is a JSON log line too.
    let err = fails(&baleen(
        &[
            "token",
            "create",
            "--data-dir",
            dir.path().join("missing").to_str().unwrap(),
            "--name",
            "x",
            "--scope",
            "admin",
            "--log-format",
            "json",
        ],
        &[],
    ));
    let line: serde_json::Value = serde_json::from_str(err.trim()).unwrap();
    assert_eq!(line["level"], "ERROR");
    assert!(
        line["error"]
            .as_str()
            .unwrap()
            .starts_with("no data directory at"),
        "{line}"
    );
}

#[test]
fn tokens_are_listed_revoked_and_every_use_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let admin = init(&data, "ops", "admin").trim().to_owned();
    let data_str = data.to_str().unwrap();
    // A lifetime the CLI cannot parse, or too long, is refused before anything is written.
    for (bad, says) in [
        ("5y", "unknown unit"),
        ("0d", "above 0"),
        ("4000d", "ten years"),
    ] {
        let out = baleen(
            &[
                "token",
                "create",
                "--data-dir",
                data_str,
                "--name",
                "x",
                "--scope",
                "publish",
                "--expires-in",
                bad,
            ],
            &[],
        );
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{bad}: {err}");
    }
    // A package-bound token needs its app when the package does not exist yet.
    let out = baleen(
        &[
            "token",
            "create",
            "--data-dir",
            data_str,
            "--name",
            "ci",
            "--scope",
            "publish",
            "--package",
            "checkout",
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("names its app"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ci = ok(&baleen(
        &[
            "token",
            "create",
            "--data-dir",
            data_str,
            "--name",
            "ci",
            "--scope",
            "publish",
            "--package",
            "checkout",
            "--app",
            "shop",
        ],
        &[],
    ))
    .trim()
    .to_owned();

    let (_server, base) = serve(&data);
    let as_admin = [
        ("BALEEN_SERVER", base.as_str()),
        ("BALEEN_TOKEN", admin.as_str()),
    ];
    let as_ci = [
        ("BALEEN_SERVER", base.as_str()),
        ("BALEEN_TOKEN", ci.as_str()),
    ];
    // The bound token may not create the app its package belongs to.
    let v1 = dir.path().join("dist");
    write_build(&v1, "one");
    let publish = |env: &[(&str, &str)], package: &str| {
        baleen(
            &[
                "publish",
                v1.to_str().unwrap(),
                "--app",
                "shop",
                "--package",
                package,
                "--version",
                "1.0.0",
                "--route",
                &format!("https://m.example.com/{package}/"),
            ],
            env,
        )
    };
    let refused = publish(&as_ci, "checkout");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("may not create app shop"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    ok(&publish(&as_admin, "home"));
    ok(&publish(&as_ci, "checkout"));

    let listed: serde_json::Value =
        serde_json::from_str(&ok(&baleen(&["token", "list", "--json"], &as_admin))).unwrap();
    let ci_row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "ci")
        .unwrap();
    assert_eq!(
        (&ci_row["app"], &ci_row["package"], &ci_row["state"]),
        (&"shop".into(), &"checkout".into(), &"active".into())
    );
    assert!(ci_row["last_used_at"].is_string(), "{ci_row}");
    let text = ok(&baleen(&["token", "list"], &as_admin));
    assert!(
        text.contains("shop/checkout") && !text.contains(&ci),
        "{text}"
    );

    assert!(ok(&baleen(&["token", "revoke", "ci"], &as_admin)).contains("revoked token ci"));
    let after = publish(&as_ci, "checkout");
    let err = String::from_utf8_lossy(&after.stderr);
    assert!(
        !after.status.success() && err.contains("was revoked"),
        "{err}"
    );
    let missing = baleen(&["token", "revoke", "nobody"], &as_admin);
    assert!(!missing.status.success());

    let audit: serde_json::Value =
        serde_json::from_str(&ok(&baleen(&["audit", "--json"], &as_admin))).unwrap();
    let seen: Vec<(String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["actor"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for expected in [
        ("token.revoke", "ops"),
        ("publish", "ci"),
        ("token.use", "ci"),
        ("token.use", "ops"),
        ("token.create", "cli"),
    ] {
        assert!(
            seen.iter()
                .any(|(a, b)| (a.as_str(), b.as_str()) == expected),
            "{expected:?} missing from {seen:?}"
        );
    }
    assert!(ok(&baleen(&["audit"], &as_admin)).contains("token.revoke"));
}

/// A zip of `count` empty stored files named by number, with ZIP64 end records (as any zip of
/// over 65,535 entries has), written by hand so that a million entries take a moment.
fn zip_of_empty_files(count: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(count as usize * 100);
    let mut central = Vec::with_capacity(count as usize * 60);
    let header = |out: &mut Vec<u8>, name: &[u8]| {
        // version 2.0, no flags, stored, 1980-01-01, CRC 0, sizes 0, name, no extra
        out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0x21, 0]);
        out.extend_from_slice(&[0; 12]);
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0, 0]);
    };
    for i in 0..count {
        let name = format!("{i}.txt");
        let offset = out.len() as u32;
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        header(&mut out, name.as_bytes());
        out.extend_from_slice(name.as_bytes());
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&[20, 3]); // made by unix
        header(&mut central, name.as_bytes());
        central.extend_from_slice(&[0; 6]); // comment, disk, internal attributes
        central.extend_from_slice(&(0o100_644u32 << 16).to_le_bytes());
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let start = out.len() as u64;
    out.extend_from_slice(&central);
    let zip64_end = out.len() as u64;
    out.extend_from_slice(&0x0606_4b50u32.to_le_bytes());
    out.extend_from_slice(&44u64.to_le_bytes());
    out.extend_from_slice(&[45, 3, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&u64::from(count).to_le_bytes());
    out.extend_from_slice(&u64::from(count).to_le_bytes());
    out.extend_from_slice(&(central.len() as u64).to_le_bytes());
    out.extend_from_slice(&start.to_le_bytes());
    out.extend_from_slice(&0x0706_4b50u32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&zip64_end.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    out.extend_from_slice(&[0xff; 8]);
    out.extend_from_slice(&[0, 0]);
    out
}

/// The peak resident memory of a process, in KiB, from `/proc`.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn an_upload_of_a_million_empty_entries_is_refused_without_memory_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let token = init(&data, "ci", "admin").trim().to_owned();
    let (server, base) = serve(&data);
    let zip = dir.path().join("million.zip");
    std::fs::write(&zip, zip_of_empty_files(1_000_000)).unwrap();
    let before = peak_rss_kib(server.0.id());
    let out = baleen(
        &[
            "publish",
            zip.to_str().unwrap(),
            "--app",
            "shop",
            "--package",
            "checkout",
            "--version",
            "1.0.0",
            "--route",
            "https://m.example.com/checkout/",
        ],
        &[("BALEEN_SERVER", &base), ("BALEEN_TOKEN", &token)],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("declares 1000000 entries") && err.contains("limit of 20000"),
        "{err}"
    );
    // Parsing a million central-directory entries costs hundreds of MB; reading the end
    // record costs nothing, so the server's peak grows by little more than its upload buffers.
    let grown = peak_rss_kib(server.0.id()).saturating_sub(before);
    assert!(
        grown < 48 * 1024,
        "the server's peak memory grew by {grown} KiB"
    );
    // Nothing was stored.
    let releases = baleen(
        &["releases", "--package", "checkout"],
        &[("BALEEN_SERVER", &base), ("BALEEN_TOKEN", &token)],
    );
    assert!(!releases.status.success());
}

#[test]
fn serve_reads_a_toml_config_file_under_its_flags_and_variables() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    init(&data, "ci", "admin");
    let keys: serde_json::Value = serde_json::from_str(&ok(&baleen(
        &[
            "keys",
            "generate",
            "--dir",
            data.join("keys").to_str().unwrap(),
            "--name",
            "other",
            "--json",
        ],
        &[],
    )))
    .unwrap();
    let config = dir.path().join("baleen.toml");
    let write = |text: String| std::fs::write(&config, text).unwrap();
    let file = config.to_str().unwrap();
    // The file's settings apply: a port that cannot be bound is overridden on the command line,
    // the data directory and the JSON switch come from the file.
    write(format!(
        "listen = \"127.0.0.1:1\"\ndata_dir = {:?}\njson = true\nkey = {:?}\n\n[index]\nttl_secs = 3600\n",
        data.to_str().unwrap(),
        data.join("keys/other.private.json").to_str().unwrap(),
    ));
    let mut child = Command::new(BIN)
        .args(["serve", "--config", file, "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _server = Serve(child);
    let started: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(started["key_id"], keys["key_id"], "{line}");
    assert!(
        started["listening"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );

    // A value in the file is checked like the flag's; a variable wins over the file.
    write(format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n[index]\nttl_secs = 0\n",
        data.to_str().unwrap()
    ));
    let err = fails(&baleen(&["serve", "--config", file], &[]));
    assert!(err.contains("--index-ttl-secs 0"), "{err}");
    let err = fails(&baleen(
        &["serve", "--max-upload-bytes", "0"],
        &[
            ("BALEEN_SERVER_CONFIG", file),
            ("BALEEN_INDEX_TTL_SECS", "3600"),
        ],
    ));
    assert!(err.contains("--max-upload-bytes 0"), "{err}");
    // A typo is an error naming the file and the key, and nothing starts.
    write("[gc]\nintervall_secs = 60\n".to_owned());
    let err = fails(&baleen(&["serve", "--config", file], &[]));
    assert!(
        err.contains(&format!("{file}: unknown setting \"gc.intervall_secs\"")),
        "{err}"
    );
    write("listen = ".to_owned());
    let err = fails(&baleen(&["serve", "--config", file], &[]));
    assert!(err.contains("not a TOML file"), "{err}");
}

/// A demo server killed outright cannot remove its data directory; the next one removes every
/// such directory whose process is gone, and leaves a running server's alone.
#[test]
fn a_demo_server_sweeps_the_directories_of_killed_demo_servers() {
    let tmp = tempfile::tempdir().unwrap();
    let start = || {
        let (demo, started) = serve_json(&["--demo"], &[("TMPDIR", tmp.path().to_str().unwrap())]);
        assert!(started["admin_token"].is_string(), "{started}");
        let pid = demo.0.id();
        (demo, tmp.path().join(format!("baleen-demo-{pid}")))
    };
    // Left by a process that is gone (no pid is this large), and by one that runs (this test).
    let gone = tmp.path().join("baleen-demo-4294967295");
    let running = tmp
        .path()
        .join(format!("baleen-demo-{}", std::process::id()));
    for dir in [&gone, &running] {
        std::fs::create_dir_all(dir.join("blobs")).unwrap();
    }
    let (first, first_dir) = start();
    assert!(first_dir.is_dir());
    assert!(!gone.exists(), "a dead server's directory is swept");
    assert!(running.is_dir(), "a running process's directory stays");
    // Killed (Serve's drop), the first leaves its directory; the next sweeps it.
    drop(first);
    assert!(first_dir.is_dir());
    let (_second, second_dir) = start();
    assert!(second_dir.is_dir());
    assert!(!first_dir.exists(), "the killed demo's directory is swept");
    assert!(running.is_dir());
}
