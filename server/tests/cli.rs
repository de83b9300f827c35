//! The `baleen` command as a user runs it: keys, tokens, a real `serve` process, and publish,
//! rollout and rollback through the CLI.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_baleen");

fn baleen(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("BALEEN_SERVER")
        .env_remove("BALEEN_TOKEN")
        .env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[track_caller]
fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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

/// A data directory with a signing key and a token of `scope`; returns the token.
fn init(data: &Path, name: &str, scope: &str) -> String {
    ok(&baleen(
        &[
            "keys",
            "generate",
            "--dir",
            data.join("keys").to_str().unwrap(),
        ],
        &[],
    ));
    let data = data.to_str().unwrap();
    ok(&baleen(
        &[
            "token",
            "create",
            "--data-dir",
            data,
            "--name",
            name,
            "--scope",
            scope,
        ],
        &[],
    ))
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

    let bad = baleen(
        &[
            "rollout",
            "--package",
            "checkout",
            "--channel",
            "production",
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
    assert_eq!(actions, ["rollback", "complete", "rollout", "promote"]);
    assert_eq!(history[0]["reason"], "blank page");
    assert_eq!(history[0]["actor"], "ci");

    let releases = ok(&baleen(&["releases", "--package", "checkout"], &env));
    let versions: Vec<&str> = releases
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(versions, ["1.1.0", "1.0.0"]);

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
    let (out, _) = publish("three", "1.2.0", &["--channel", "production"]);
    ok(&out);
    let entry = stable_entry();
    assert_eq!(
        (entry["priority"].clone(), entry["prefetch"].clone()),
        (5.into(), "on_first_use".into())
    );
    let (out, _) = publish(
        "four",
        "1.3.0",
        &["--channel", "production", "--prefetch", "always"],
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
