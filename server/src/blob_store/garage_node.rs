//! A throwaway single-node Garage for tests, started and stopped through `scripts/garage`.
//! Shared by the unit tests and `server/tests/s3.rs` (included there by path).

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

/// A running node; stopped and removed on drop.
pub struct GarageNode {
    dir: PathBuf,
    /// What `scripts/garage start` printed: `BALEEN_S3_ENDPOINT`, `BALEEN_S3_REGION`,
    /// `BALEEN_S3_BUCKET`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`.
    pub env: BTreeMap<String, String>,
    _temp: tempfile::TempDir,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/garage")
}

impl GarageNode {
    /// Starts a node, or returns `None` (saying so) when no Garage binary is built and
    /// `BALEEN_REQUIRE_GARAGE` is unset; with it set, a missing binary fails the test.
    pub fn start(test: &str) -> Option<GarageNode> {
        let found = Command::new(script()).arg("path").output().unwrap();
        if !found.status.success() {
            let why = String::from_utf8_lossy(&found.stderr);
            if std::env::var_os("BALEEN_REQUIRE_GARAGE").is_some() {
                panic!("BALEEN_REQUIRE_GARAGE is set but {why}");
            }
            eprintln!(
                "SKIPPED {test}: {} (scripts/test builds it; set BALEEN_REQUIRE_GARAGE to make this a failure)",
                why.trim()
            );
            return None;
        }
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("garage");
        let out = Command::new(script())
            .arg("start")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "scripts/garage start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let env = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Some(GarageNode {
            dir,
            env,
            _temp: temp,
        })
    }

    /// A variable the node printed.
    pub fn var(&self, name: &str) -> Option<String> {
        self.env.get(name).cloned()
    }
}

impl Drop for GarageNode {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("stop").arg(&self.dir).status();
    }
}
