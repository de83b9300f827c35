//! Memory of an opened client, for BENCHMARKS: `cargo run --release -p client-core --example
//! memory_bench`.
//!
//! Builds a real store holding five signed releases of 4,000 files each (20,005 files with their
//! entry pages: blobs, manifests, state), then measures what `Client::open` on it keeps allocated,
//! with a counting global allocator: live heap bytes after the open minus before it, the peak
//! during the open, and the change of the process's resident set. Peers, measured the same way: a
//! plain `HashMap<String, PathBuf>` from each file's URL (without scheme) to its blob path, and the
//! signed manifests' size on disk. Prints one JSON line.

#![allow(clippy::unwrap_used)]

#[path = "support/store_fixture.rs"]
mod fixture;

use std::alloc::System;
use std::collections::HashMap;
use std::path::PathBuf;

use cap::Cap;

/// Counts live and peak heap bytes (the `cap` crate wraps the system allocator).
#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

const PACKAGES: [&str; 5] = ["home", "checkout", "search", "account", "help"];
const FILES_EACH: usize = 4_000;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

fn live() -> usize {
    ALLOCATOR.allocated()
}

fn main() {
    // The store is built by a child process, so that this one's peak heap is the open's alone.
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, dir] = &args[..]
        && flag == "--build-store"
    {
        let packages: Vec<(&str, usize)> = PACKAGES.iter().map(|p| (*p, FILES_EACH)).collect();
        println!(
            "{}",
            fixture::build_store(std::path::Path::new(dir), &packages)
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(&args[0])
        .arg("--build-store")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "building the store failed");
    let manifest_bytes: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();

    let (live0, rss0) = (live(), rss_bytes());
    let client = fixture::open(dir.path());
    let (live1, peak1, rss1) = (live(), ALLOCATOR.max_allocated(), rss_bytes());
    let files = client.status().files;
    let probe = format!("{}{}", fixture::prefix("search"), fixture::file_path(1234));
    assert!(client.resolve(&probe).is_some());

    let blobs = dir.path().join("blobs");
    let live2 = live();
    let map: HashMap<String, PathBuf> = PACKAGES
        .iter()
        .flat_map(|p| {
            let blobs = &blobs;
            (0..FILES_EACH).map(move |i| {
                let hex = manifests::Digest::of(&fixture::content(p, i)).to_string();
                (
                    format!("m.example.com/{p}/{}", fixture::file_path(i)),
                    blobs.join(&hex[..2]).join(hex),
                )
            })
        })
        .collect();
    let map_bytes = live() - live2;

    println!(
        "{{\"packages\":{},\"files\":{files},\"client_live_bytes\":{},\"client_peak_bytes\":{},\"client_rss_bytes\":{},\"hashmap_entries\":{},\"hashmap_live_bytes\":{map_bytes},\"manifest_bytes\":{manifest_bytes}}}",
        PACKAGES.len(),
        live1 - live0,
        peak1 - live0,
        rss1.saturating_sub(rss0),
        map.len(),
    );
    drop(client);
}
