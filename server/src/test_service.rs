//! Throwaway services for tests — a single-node Garage, a PostgreSQL — started and stopped
//! through their scripts (`scripts/garage`, `scripts/postgres`). Shared by the unit tests and the
//! integration tests (included there by path).

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

/// The services a test can start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Garage, an S3-compatible object store, built once by `scripts/garage build`.
    Garage,
    /// PostgreSQL, Debian's package, installed by `scripts/postgres install`.
    Postgres,
}

impl Kind {
    fn script(self) -> PathBuf {
        let name = match self {
            Kind::Garage => "garage",
            Kind::Postgres => "postgres",
        };
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../scripts")
            .join(name)
    }

    /// Set by `scripts/test` once the service is available: then a missing service fails a
    /// test instead of skipping it.
    fn required_by(self) -> &'static str {
        match self {
            Kind::Garage => "BALEEN_REQUIRE_GARAGE",
            Kind::Postgres => "BALEEN_REQUIRE_POSTGRES",
        }
    }
}

/// A running service; stopped and removed on drop.
#[derive(Debug)]
pub struct TestService {
    kind: Kind,
    dir: PathBuf,
    /// What the script's `start` printed, e.g. `BALEEN_S3_ENDPOINT`, `AWS_ACCESS_KEY_ID` for
    /// Garage, `BALEEN_PG_URL` for PostgreSQL.
    pub env: BTreeMap<String, String>,
    _temp: tempfile::TempDir,
}

impl TestService {
    /// Starts one, or returns `None` (saying so) when it is not installed and its
    /// `BALEEN_REQUIRE_*` variable is unset; with it set, a missing service fails the test.
    pub fn start(kind: Kind, test: &str) -> Option<TestService> {
        let found = Command::new(kind.script()).arg("path").output().unwrap();
        if !found.status.success() {
            let why = String::from_utf8_lossy(&found.stderr);
            let required = kind.required_by();
            if std::env::var_os(required).is_some() {
                panic!("{required} is set but {why}");
            }
            eprintln!(
                "SKIPPED {test}: {} (scripts/test installs it; set {required} to make this a failure)",
                why.trim()
            );
            return None;
        }
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("service");
        let out = Command::new(kind.script())
            .arg("start")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} start: {}",
            kind.script().display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Some(TestService {
            kind,
            dir,
            env: parse_vars(&out.stdout),
            _temp: temp,
        })
    }

    /// A variable the service printed.
    pub fn var(&self, name: &str) -> Option<String> {
        self.env.get(name).cloned()
    }

    /// Restarts it (PostgreSQL: a fast shutdown, then a start on the same port).
    pub fn restart(&mut self) {
        self.run("restart");
    }

    /// Stops it, keeping its data, until [`TestService::resume`] (PostgreSQL).
    pub fn halt(&mut self) {
        self.run("halt");
    }

    /// Starts a halted one again on the same port.
    pub fn resume(&mut self) {
        self.run("resume");
    }

    fn run(&mut self, command: &str) {
        let out = Command::new(self.kind.script())
            .arg(command)
            .arg(&self.dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.env.extend(parse_vars(&out.stdout));
    }
}

fn parse_vars(stdout: &[u8]) -> BTreeMap<String, String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

impl Drop for TestService {
    fn drop(&mut self) {
        let _ = Command::new(self.kind.script())
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}
