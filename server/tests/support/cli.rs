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

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
