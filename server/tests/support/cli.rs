//! Running the `baleen` binary from a test: the command, its outcome, and a server that stops
//! when dropped.

#![allow(dead_code)]

use std::process::{Child, Command, Output};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_baleen");

/// Runs `baleen` with `args` and `env` (and no server or token from the caller's environment).
pub fn baleen(args: &[&str], env: &[(&str, &str)]) -> Output {
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

/// The standard output of a command that succeeded.
#[track_caller]
pub fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// The standard error of a command that failed.
#[track_caller]
pub fn fails(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "succeeded; stdout: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// A data directory with a signing key and a token `name` of `scope`; returns what `token
/// create` printed (the token and a newline).
pub fn init(data: &std::path::Path, name: &str, scope: &str) -> String {
    ok(&baleen(
        &[
            "keys",
            "generate",
            "--dir",
            data.join("keys").to_str().unwrap(),
        ],
        &[],
    ));
    ok(&baleen(
        &[
            "token",
            "create",
            "--data-dir",
            data.to_str().unwrap(),
            "--name",
            name,
            "--scope",
            scope,
        ],
        &[],
    ))
}

/// A `baleen serve` process, killed when dropped.
pub struct Serve(pub Child);

impl Serve {
    /// Starts `baleen serve --listen 127.0.0.1:0` with `args` and `env` added, and returns it
    /// with the address it printed.
    pub fn start<A: AsRef<std::ffi::OsStr>>(
        args: &[A],
        env: &std::collections::BTreeMap<String, String>,
    ) -> (Serve, String) {
        use std::io::BufRead;
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .envs(env)
            // BALEEN_TEST_SERVE_LOG=server=debug shows what the server did, for a failing test.
            .env(
                "RUST_LOG",
                std::env::var("BALEEN_TEST_SERVE_LOG").unwrap_or("warn".into()),
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let serve = Serve(child);
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        (serve, base)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
