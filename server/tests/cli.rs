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
    ok(&baleen(
        &[
            "keys",
            "generate",
            "--dir",
            data.join("keys").to_str().unwrap(),
        ],
        &[],
    ));
    let token = ok(&baleen(
        &[
            "token",
            "create",
            "--data-dir",
            data_str,
            "--name",
            "ci",
            "--scope",
            "admin",
        ],
        &[],
    ));
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
