//! Resolve latency and resolver memory, for BENCHMARKS: `cargo run --release -p client-core
//! --example resolve_bench`.
//!
//! Builds the resolver table of a 5,000-file package, times one million resolves of random
//! existing URLs (single thread, then four threads while a fifth swaps in a new table every
//! millisecond, as installs do), and reports the memory a 20,000-file table holds.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use client_core::resolve::{Resolver, Table};
use manifests::{
    Digest, FileEntry, HostRequirement, MimeType, PackageId, RelPath, Release, ReleaseVersion,
    Route, Timestamp, UrlPrefix,
};

fn release(package: &str, files: usize) -> Release {
    let mime = MimeType::parse("text/javascript; charset=utf-8").unwrap();
    let mut map = BTreeMap::new();
    for i in 0..files {
        let path = RelPath::parse(&format!("assets/chunk-{}/part-{i:05}.js", i % 64)).unwrap();
        map.insert(
            path,
            FileEntry {
                sha256: Digest::of(format!("{package}{i}").as_bytes()),
                size: 1000 + i as u64,
                mime: mime.clone(),
            },
        );
    }
    let entry = RelPath::parse("assets/chunk-0/part-00000.js").unwrap();
    Release {
        package: PackageId::parse(package).unwrap(),
        version: ReleaseVersion::parse("1.0.0").unwrap(),
        files: map,
        entry: entry.clone(),
        routes: vec![Route {
            prefix: UrlPrefix::parse(&format!("https://m.example.com/{package}/")).unwrap(),
            fallback: Some(entry),
        }],
        requires: HostRequirement::any(),
        created_at: Timestamp::from_unix_secs(0),
        notes: String::new(),
        source_revision: None,
    }
}

fn urls(package: &str, files: usize) -> Vec<String> {
    (0..files)
        .map(|i| {
            format!(
                "https://m.example.com/{package}/assets/chunk-{}/part-{i:05}.js?v=1",
                i % 64
            )
        })
        .collect()
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p) as usize] as f64 / 1000.0
}

fn timed(resolver: &Resolver, urls: &[String], n: usize, seed: u64) -> Vec<u64> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let url = &urls[(x % urls.len() as u64) as usize];
        let t = Instant::now();
        let hit = resolver.resolve(url);
        out.push(t.elapsed().as_nanos() as u64);
        assert!(hit.is_some());
    }
    out.sort_unstable();
    out
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse()
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0)
}

fn main() {
    let blobs = Path::new("/store/blobs");
    let checkout = release("checkout", 5_000);
    let resolver = Arc::new(Resolver::new(Some("baleen")));
    resolver.publish(Table::new([&checkout], blobs));
    let list = urls("checkout", 5_000);

    timed(&resolver, &list, 100_000, 7); // warm up
    let single = timed(&resolver, &list, 1_000_000, 42);
    println!(
        "resolve, 5,000-file package, 1 thread: p50 {:.2} us, p99 {:.2} us, p99.9 {:.2} us",
        percentile(&single, 0.5),
        percentile(&single, 0.99),
        percentile(&single, 0.999)
    );

    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (resolver, stop) = (resolver.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                resolver.publish(Table::new([&checkout], Path::new("/store/blobs")));
                swaps += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            swaps
        })
    };
    let workers: Vec<_> = (0..4u64)
        .map(|t| {
            let (resolver, list) = (resolver.clone(), list.clone());
            std::thread::spawn(move || timed(&resolver, &list, 250_000, 100 + t))
        })
        .collect();
    let mut all: Vec<u64> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    all.sort_unstable();
    println!(
        "resolve, 4 threads while a table is swapped in every ms ({swaps} swaps): p50 {:.2} us, p99 {:.2} us, p99.9 {:.2} us",
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        percentile(&all, 0.999)
    );

    let before = rss_kib();
    let packages: Vec<Release> = (0..4).map(|i| release(&format!("pkg{i}"), 5_000)).collect();
    let big = Resolver::new(None);
    big.publish(Table::new(packages.iter(), blobs));
    drop(packages);
    let after = rss_kib();
    println!(
        "resolver table of 20,000 files in 4 packages: {} files, about {:.1} MB resident",
        big.file_count(),
        (after.saturating_sub(before)) as f64 / 1024.0
    );
}
