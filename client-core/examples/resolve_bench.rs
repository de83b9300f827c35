//! Resolve latency against real peers, for BENCHMARKS: `cargo run --release -p client-core
//! --example resolve_bench [-- SAMPLES]`.
//!
//! Builds a real store holding one signed 5,000-file release (blobs, manifest, state) and opens a
//! `Client` on it. Then, single-threaded, it times `Client::resolve` of random existing URLs, and
//! on the same URLs two peers: what an interceptor must do anyway to serve the file (open, fstat
//! and close of the resolved blob: `File::open` and `metadata`) and a plain
//! `HashMap<String, PathBuf>` lookup of the URL's path. Then four threads resolve while a fifth
//! builds and swaps in a new 5,000-file table every millisecond, as installs do, and the open and
//! fstat peer runs under the same load. Every call is timed on its own (`Instant`, whose own cost
//! is printed as `timer_ns`). Prints one JSON line; percentiles are in nanoseconds.

#![allow(clippy::unwrap_used)]

#[path = "support/store_fixture.rs"]
mod fixture;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use client_core::resolve::{Resolver, Table};

const FILES: usize = 5_000;
const PACKAGE: &str = "checkout";

/// xorshift64: the same pseudo-random URL sequence for every contender.
fn picks(n: usize, len: usize, seed: u64) -> Vec<usize> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % len as u64) as usize
        })
        .collect()
}

/// Times `f` once per pick; sorted nanoseconds.
fn timed(picks: &[usize], mut f: impl FnMut(usize)) -> Vec<u64> {
    let mut out = Vec::with_capacity(picks.len());
    for &i in picks {
        let t = Instant::now();
        f(i);
        out.push(t.elapsed().as_nanos() as u64);
    }
    out.sort_unstable();
    out
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

fn summary(sorted: &[u64]) -> String {
    format!(
        "{{\"n\":{},\"p50\":{},\"p99\":{},\"p999\":{},\"mean\":{}}}",
        sorted.len(),
        pct(sorted, 0.5),
        pct(sorted, 0.99),
        pct(sorted, 0.999),
        sorted.iter().sum::<u64>() / sorted.len() as u64
    )
}

/// The `open` + `fstat` + `close` an interceptor does to hand the file to the WebView.
fn open_stat(path: &PathBuf) {
    let file = std::fs::File::open(path).unwrap();
    let meta = file.metadata().unwrap();
    assert!(meta.len() > 0);
}

fn main() {
    let samples: usize = std::env::args()
        .nth(1)
        .map_or(1_000_000, |s| s.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    fixture::build_store(dir.path(), &[(PACKAGE, FILES)]);
    let client = fixture::open(dir.path());
    let prefix = fixture::prefix(PACKAGE);
    let urls: Vec<String> = (0..FILES)
        .map(|i| format!("{prefix}{}?v=1", fixture::file_path(i)))
        .collect();
    let paths: Vec<PathBuf> = urls
        .iter()
        .map(|u| client.resolve(u).unwrap().path)
        .collect();
    // The peer table: the URL's path (prefix and query stripped) → the blob's path.
    let map: HashMap<String, PathBuf> = (0..FILES)
        .map(|i| (fixture::file_path(i), paths[i].clone()))
        .collect();

    let timer = timed(&picks(100_000, FILES, 3), |_| {});
    let warm = picks(samples / 10, FILES, 7);
    timed(&warm, |i| assert!(client.resolve(&urls[i]).is_some()));
    timed(&warm, |i| open_stat(&paths[i]));

    let one = picks(samples, FILES, 42);
    let resolve1 = timed(&one, |i| assert!(client.resolve(&urls[i]).is_some()));
    let open1 = timed(&one[..samples / 4], |i| open_stat(&paths[i]));
    let map1 = timed(&one, |i| {
        let url = &urls[i];
        let rest = url.strip_prefix(prefix.as_str()).unwrap();
        let rest = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
        assert!(map.contains_key(rest));
    });

    // Four resolvers while a fifth thread rebuilds and swaps the table every millisecond. The
    // client's resolver cannot be swapped from outside, so this uses a `Resolver` holding the same
    // release (what `Client::resolve` calls).
    let release = fixture::release(PACKAGE, FILES);
    let blobs = dir.path().join("blobs");
    let resolver = Arc::new(Resolver::new(Some("baleen")));
    resolver.publish(Table::of_releases([&release], &blobs));
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (resolver, stop, blobs) = (resolver.clone(), stop.clone(), blobs.clone());
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                resolver.publish(Table::of_releases([&release], &blobs));
                swaps += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            swaps
        })
    };
    let urls = Arc::new(urls);
    let paths = Arc::new(paths);
    let started = Instant::now();
    let workers: Vec<_> = (0..4u64)
        .map(|t| {
            let (resolver, urls) = (resolver.clone(), urls.clone());
            let picks = picks(samples / 4, FILES, 100 + t);
            std::thread::spawn(move || {
                timed(&picks, |i| assert!(resolver.resolve(&urls[i]).is_some()))
            })
        })
        .collect();
    let mut resolve4: Vec<u64> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    let resolve_secs = started.elapsed().as_secs_f64();
    let workers: Vec<_> = (0..4u64)
        .map(|t| {
            let paths = paths.clone();
            let picks = picks(samples / 16, FILES, 200 + t);
            std::thread::spawn(move || timed(&picks, |i| open_stat(&paths[i])))
        })
        .collect();
    let mut open4: Vec<u64> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    resolve4.sort_unstable();
    open4.sort_unstable();

    println!(
        "{{\"files\":{FILES},\"timer_ns\":{},\"single\":{{\"resolve\":{},\"open_fstat_close\":{},\"hashmap\":{}}},\"threads4\":{{\"resolve\":{},\"open_fstat_close\":{},\"swaps\":{swaps},\"resolves_per_sec\":{:.0}}}}}",
        pct(&timer, 0.5),
        summary(&resolve1),
        summary(&open1),
        summary(&map1),
        summary(&resolve4),
        summary(&open4),
        resolve4.len() as f64 / resolve_secs,
    );
}
