//! The README's "Publish and release" sequence, run as written with the real `baleen` on a fresh
//! data directory, so that the README and the command cannot drift apart.
//!
//! Only what must change is changed: the server listens on a free port instead of 8080, and the
//! whole sequence runs in a temporary directory holding a small build in `dist/`.

#![cfg(unix)]
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_baleen");
const START: &str = "<!-- readme-sequence: start";
const END: &str = "<!-- readme-sequence: end";
/// The address the README's sequence uses; replaced by a free port.
const README_ADDRESS: &str = "127.0.0.1:8080";

/// The commands of the README's marked shell block, continuation lines joined.
fn sequence() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let (_, rest) = readme
        .split_once(START)
        .expect("the README marks its sequence");
    let (block, _) = rest.split_once(END).expect("the README ends its sequence");
    let (_, block) = block
        .split_once("```sh\n")
        .expect("a sh block after the marker");
    let (block, _) = block.split_once("```").expect("the sh block ends");
    let mut commands = Vec::new();
    let mut pending = String::new();
    for line in block.lines() {
        match line.strip_suffix('\\') {
            Some(head) => pending.push_str(head),
            None => {
                pending.push_str(line);
                if !pending.trim().is_empty() {
                    commands.push(std::mem::take(&mut pending));
                }
                pending.clear();
            }
        }
    }
    commands
}

/// A shell for the sequence: `baleen` on the PATH, no settings from the environment it runs in.
fn shell(dir: &Path) -> Command {
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = std::env::join_paths(std::iter::once(bin_dir.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let mut cmd = Command::new("bash");
    cmd.current_dir(dir)
        .env("PATH", path)
        .env("HOME", dir)
        .env_remove("XDG_CONFIG_HOME")
        .env("RUST_LOG", "warn");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("BALEEN_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_readme_publish_and_release_sequence_runs_as_written() {
    let commands = sequence();
    let serve_at = commands
        .iter()
        .position(|c| c.starts_with("baleen serve"))
        .expect("the sequence starts a server");
    assert!(
        commands[serve_at].contains(README_ADDRESS),
        "the server line names the address the test replaces: {}",
        commands[serve_at]
    );

    let dir = tempfile::tempdir().unwrap();
    let dist = dir.path().join("dist");
    std::fs::create_dir_all(dist.join("assets")).unwrap();
    std::fs::write(
        dist.join("index.html"),
        "<!doctype html><script src=assets/app.js></script>",
    )
    .unwrap();
    std::fs::write(dist.join("assets/app.js"), "console.log('checkout')").unwrap();

    // Each step runs in turn, saying when it succeeded; the first failure stops the sequence.
    let run = |steps: &[String], address: &str| {
        let mut script = String::from("set -eu -o pipefail\n");
        for (i, step) in steps.iter().enumerate() {
            script.push_str(&step.replace(README_ADDRESS, address));
            script.push_str(&format!("\necho '<<step {i} done>>'\n"));
        }
        let out = shell(dir.path()).args(["-c", &script]).output().unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        for (i, step) in steps.iter().enumerate() {
            assert!(
                stdout.contains(&format!("<<step {i} done>>")),
                "README step failed: {step}\nstdout:\n{stdout}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(out.status.success());
        stdout
    };

    run(&commands[..serve_at], README_ADDRESS);

    // The server line as written, on a free port, in the foreground of its own shell.
    let line = commands[serve_at].split(" #").next().unwrap().trim();
    let line = line
        .strip_suffix('&')
        .expect("the server runs in the background");
    let mut child = shell(dir.path())
        .args([
            "-c",
            &format!("exec {}", line.replace(README_ADDRESS, "127.0.0.1:0")),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _server = Killed(child);
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).unwrap();
    let address = first
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();

    let rest = &commands[serve_at + 1..];
    let stdout = run(rest, &address);
    assert!(
        dir.path().join("baleen-data/meta.sqlite3").is_file(),
        "the sequence used its own data directory"
    );

    // The last step prints the history, newest first: the rollback on top.
    let history = stdout
        .split(&format!("<<step {} done>>", rest.len() - 2))
        .nth(1)
        .unwrap();
    let actions: Vec<&str> = history
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("<<"))
        .skip(1)
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    assert_eq!(
        actions,
        ["rollback", "complete", "rollout", "rollout", "promote"],
        "{history}"
    );
    let top = history.lines().find(|l| l.contains("rollback")).unwrap();
    assert!(
        top.contains("1.5.0") && top.contains("1.4.0") && top.ends_with("blank page on Android 9"),
        "{top}"
    );
}
