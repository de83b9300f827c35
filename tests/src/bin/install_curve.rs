//! The cost of installing a diff, for BENCHMARKS: a real `baleen serve` over loopback and the real
//! client. Run by `bench/client.py`; by hand:
//! `BALEEN_BIN=target/release/baleen cargo run --release -p tests --bin install_curve -- RUNS`.
//!
//! Publishes `big` (5,000 small files and three 1 MiB ones) and `small` (1,000 small files), then
//! releases of each that change K files in place (K = 1, 10, 100, 1000 for `big`; 10 and 100 for
//! `small`). A template store installs both first releases; each timed run copies it, opens a
//! client on the copy and times `Client::update()` (index check, manifest, diff pack, verify, write
//! with fsync, state switch) after the channel was moved to the K release and its diff pack built.
//! Downloaded bytes are the response bodies the client's fetcher received. K = 0 is an update with
//! nothing new (the index check alone). At K = 1000 one more run has four threads resolve URLs of
//! `big` through the same client, so the resolve latency is measured while a real install runs;
//! its time is reported apart, and the timed runs have the CPUs to themselves like the peers.
//!
//! The peer is `unzip -q -o` of a zip of the same K changed files (deflate, `zip -q`) into a fresh
//! directory: writing K files from a compressed archive, without verification or fsync.
//!
//! Where an update's time goes: the CPU seconds (user, system) of the thread running it (decode,
//! patch, hash, write calls, manifest and state work), the rest being waits for the network and
//! the disk; the fsync peer reports its time inside `fsync` apart. The disk is settled (`sync`)
//! before every timed part, so none pays for the writeback of another.
//!
//! Prints one JSON document on stdout; progress on stderr. `INSTALL_CURVE_CASES=big:1000,big:1`
//! runs only the cases named (for profiling one of them).

#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client_core::fetch::builtin::BuiltinFetcher;
use client_core::fetch::{FetchError, FetchRequest, FetchResponse, Fetcher};
use client_core::install::Method;
use client_core::{Client, Config};
use tests::Server;

/// Counts the body bytes and requests a client receives.
#[derive(Debug, Default)]
struct Counting {
    inner: BuiltinFetcher,
    bytes: AtomicU64,
    requests: AtomicU64,
}

impl Fetcher for Counting {
    fn fetch(&self, request: &FetchRequest) -> Result<FetchResponse, FetchError> {
        let response = self.inner.fetch(request)?;
        self.bytes
            .fetch_add(response.body.len() as u64, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        Ok(response)
    }
}

fn log(msg: &str) {
    eprintln!("install_curve: {msg}");
}

fn route(package: &str) -> String {
    format!("https://m.example.com/{package}/")
}

fn small_path(i: usize) -> String {
    format!("assets/chunk-{}/part-{i:05}.js", i % 64)
}

/// A small script of about 1.5 KB, distinct per file and per `variant`.
fn small_content(package: &str, i: usize, variant: usize) -> String {
    let mut s = String::with_capacity(1600);
    for line in 0..24 {
        s.push_str(&format!(
            "export function {package}_{i}_{line}(x) {{ return x * {} + {line}; }}\n",
            (i * 31 + line * 7) % 1009
        ));
    }
    if variant > 0 {
        s.push_str(&format!("// release {variant}\n"));
    }
    s
}

/// About 1 MiB of text that compresses like minified code (pseudo-random identifiers).
fn large_content(seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(1 << 20);
    while out.len() < 1 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let word = format!("var _{:x}=function(a){{return a+{}}};", x % 40_000, x % 97);
        out.extend_from_slice(word.as_bytes());
    }
    out
}

/// Writes the first release of a package: `files` small files, `large` 1 MiB files, an entry page.
fn write_base(dir: &Path, package: &str, files: usize, large: usize) {
    let _ = std::fs::remove_dir_all(dir);
    for i in 0..files {
        let path = dir.join(small_path(i));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, small_content(package, i, 0)).unwrap();
    }
    for j in 0..large {
        std::fs::write(
            dir.join(format!("assets/vendor-{j}.js")),
            large_content(j as u64 + 1),
        )
        .unwrap();
    }
    std::fs::write(
        dir.join("index.html"),
        format!("<!doctype html><title>{package}</title>"),
    )
    .unwrap();
}

/// Rewrites files `0..k` as release `variant` (or back to the base with `variant` 0).
fn change(dir: &Path, package: &str, k: usize, variant: usize) {
    for i in 0..k {
        std::fs::write(dir.join(small_path(i)), small_content(package, i, variant)).unwrap();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// CPU ticks (user + system) of a process, from /proc.
fn ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// CPU seconds (user, system) this process's main thread, which runs `Client::update()`, spent.
fn main_thread_cpu() -> (f64, f64) {
    let pid = std::process::id();
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/stat")) else {
        return (0.0, 0.0);
    };
    let rest = stat.rfind(')').map_or("", |i| &stat[i + 2..]);
    let fields: Vec<f64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    // Clock ticks; 100 per second on Linux.
    let tick = |i: usize| fields.get(i).copied().unwrap_or(0.0) / 100.0;
    (tick(11), tick(12))
}

/// Writes back everything dirty (the template copy, the last run's deletions), so each timed
/// part starts on a settled disk and pays only for its own writes.
fn settle_disk() {
    let _ = Command::new("sync").status();
}

/// The pid of the `baleen serve` whose command line names `data_dir`.
fn server_pid(data_dir: &Path) -> Option<u32> {
    let needle = data_dir.to_str()?;
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        (cmd.contains(" serve ") && cmd.contains(needle)).then_some(pid)
    })
}

/// Waits (up to 10 minutes) until the server's background work (packs) is done.
fn wait_server_idle(pid: Option<u32>) {
    let Some(pid) = pid else {
        std::thread::sleep(Duration::from_secs(2));
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    while Instant::now() < deadline {
        let a = ticks(pid).unwrap_or(0);
        std::thread::sleep(Duration::from_millis(500));
        if ticks(pid).unwrap_or(0).saturating_sub(a) <= 2 {
            return;
        }
    }
    log("server still busy after 10 minutes; going on");
}

fn config(server: &Server, store: &Path) -> Config {
    server.client_config(store, "bench-device", "6.0")
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

fn list(xs: &[f64]) -> String {
    let items: Vec<String> = xs.iter().map(|x| format!("{x:.6}")).collect();
    format!("[{}]", items.join(","))
}

struct Case {
    package: &'static str,
    files: usize,
    k: usize,
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .map_or(3, |s| s.parse().unwrap())
        .max(1);
    let cases = [
        Case {
            package: "big",
            files: 5_000,
            k: 0,
        },
        Case {
            package: "big",
            files: 5_000,
            k: 1,
        },
        Case {
            package: "big",
            files: 5_000,
            k: 10,
        },
        Case {
            package: "big",
            files: 5_000,
            k: 100,
        },
        Case {
            package: "big",
            files: 5_000,
            k: 1000,
        },
        Case {
            package: "small",
            files: 1_000,
            k: 10,
        },
        Case {
            package: "small",
            files: 1_000,
            k: 100,
        },
    ];
    let only = std::env::var("INSTALL_CURVE_CASES").ok();
    let cases: Vec<Case> = cases
        .into_iter()
        .filter(|c| {
            only.as_deref().is_none_or(|only| {
                only.split(',')
                    .any(|name| name == format!("{}:{}", c.package, c.k))
            })
        })
        .collect();
    let has_zip = Command::new("zip").arg("-v").output().is_ok()
        && Command::new("unzip").arg("-v").output().is_ok();

    log("starting baleen serve");
    let server = Server::start();
    let pid = server_pid(&server.dir.path().join("data"));
    let work = server.dir.path().join("bench");
    let builds = work.join("builds");

    // Publish every release; the first ones go to the channel.
    let t = Instant::now();
    for (package, files, large) in [("big", 5_000, 3), ("small", 1_000, 0)] {
        let dir = builds.join(package);
        write_base(&dir, package, files, large);
        server.publish(
            &dir,
            package,
            "1.0.0",
            &["--channel", "production", "--route", &route(package)],
        );
        for case in cases.iter().filter(|c| c.package == package && c.k > 0) {
            change(&dir, package, case.k, case.k);
            server.publish(&dir, package, &format!("1.0.{}", case.k), &[]);
            if has_zip {
                let zip = work.join(format!("peer-{package}-{}.zip", case.k));
                let mut cmd = Command::new("zip");
                cmd.current_dir(&dir).arg("-q").arg(&zip);
                cmd.args((0..case.k).map(small_path));
                assert!(cmd.status().unwrap().success(), "zip failed");
            }
            change(&dir, package, case.k, 0);
        }
    }
    log(&format!("published in {:.1} s", t.elapsed().as_secs_f64()));

    // The template device: both first releases installed.
    let template = work.join("template");
    let client = Client::open(config(&server, &template), Arc::new(Counting::default())).unwrap();
    let installed = tests::update_now(&client).unwrap();
    assert_eq!(installed.len(), 2, "template install: {installed:?}");
    drop(client);

    let mut out = Vec::new();
    let mut resolve_p50 = Vec::new();
    let mut resolve_p99 = Vec::new();
    let mut resolve_n = 0usize;
    for case in &cases {
        let version = format!("1.0.{}", case.k);
        let mut pack_bytes = 0usize;
        if case.k > 0 {
            server.release("promote", case.package, &["--version", &version]);
            let (status, body) =
                server.get(&format!("/v1/packs/{}/1.0.0..{version}.zip", case.package));
            assert_eq!(status, 200, "diff pack");
            pack_bytes = body.len();
        }
        wait_server_idle(pid);
        std::thread::sleep(Duration::from_millis(1100)); // the server's one-second index cache
        let mut secs = Vec::new();
        let mut bytes = Vec::new();
        let mut requests = Vec::new();
        let (mut cpu_user, mut cpu_sys) = (Vec::new(), Vec::new());
        let mut with_resolvers = Vec::new();
        // At K = 1000, one more run with resolver threads: the timed runs get the CPUs to
        // themselves, as the fsync peer does.
        let extra = usize::from(case.k == 1000);
        for run in 0..runs + extra {
            let resolving = run == runs;
            let store = work.join(format!("run-{}-{}-{run}", case.package, case.k));
            copy_dir(&template, &store);
            let fetcher = Arc::new(Counting::default());
            let client = Arc::new(Client::open(config(&server, &store), fetcher.clone()).unwrap());
            let stop = Arc::new(AtomicBool::new(false));
            let samples = Arc::new(Mutex::new(Vec::new()));
            let resolvers: Vec<_> = if resolving {
                (0..4u64)
                    .map(|t| {
                        let (client, stop, samples) =
                            (client.clone(), stop.clone(), samples.clone());
                        std::thread::spawn(move || {
                            let urls: Vec<String> = (0..5_000)
                                .map(|i| format!("{}{}", route("big"), small_path(i)))
                                .collect();
                            let mut x = 0x2545_F491_4F6C_DD1D_u64 ^ t;
                            let mut mine = Vec::new();
                            while !stop.load(Ordering::Relaxed) {
                                x ^= x << 13;
                                x ^= x >> 7;
                                x ^= x << 17;
                                let url = &urls[(x % urls.len() as u64) as usize];
                                let t0 = Instant::now();
                                let hit = client.resolve(url);
                                mine.push(t0.elapsed().as_nanos() as u64);
                                assert!(hit.is_some());
                            }
                            samples.lock().unwrap().extend(mine);
                        })
                    })
                    .collect()
            } else {
                Vec::new()
            };
            settle_disk();
            let cpu0 = main_thread_cpu();
            let t0 = Instant::now();
            let done = tests::update_now(&client).unwrap();
            let elapsed = t0.elapsed().as_secs_f64();
            let cpu1 = main_thread_cpu();
            stop.store(true, Ordering::Relaxed);
            for r in resolvers {
                r.join().unwrap();
            }
            if case.k == 0 {
                assert!(done.is_empty(), "nothing to install: {done:?}");
            } else {
                assert_eq!(done.len(), 1, "{done:?}");
                assert_eq!(done[0].1, Method::DiffPack, "{done:?}");
            }
            let mut lat = std::mem::take(&mut *samples.lock().unwrap());
            if !lat.is_empty() {
                lat.sort_unstable();
                resolve_p50.push(lat[lat.len() / 2] as f64);
                resolve_p99.push(lat[(lat.len() - 1) * 99 / 100] as f64);
                resolve_n += lat.len();
            }
            if resolving {
                with_resolvers.push(elapsed);
            } else {
                secs.push(elapsed);
                cpu_user.push(cpu1.0 - cpu0.0);
                cpu_sys.push(cpu1.1 - cpu0.1);
                bytes.push(fetcher.bytes.load(Ordering::Relaxed) as f64);
                requests.push(fetcher.requests.load(Ordering::Relaxed) as f64);
            }
            drop(client);
            std::fs::remove_dir_all(&store).unwrap();
        }
        if case.k > 0 {
            // Back to the first release, so the next case installs only its own package.
            server.release("promote", case.package, &["--version", "1.0.0"]);
        }
        // Peer 2: what a durable installer must do at least, K files each written to a temp
        // file, fsynced and renamed into place, then the directory fsynced.
        let mut fsync_peer = Vec::new();
        let mut fsync_peer_waits = Vec::new();
        if case.k > 0 {
            for run in 0..runs {
                let dest = work.join(format!("fsync-{run}"));
                std::fs::create_dir_all(&dest).unwrap();
                settle_disk();
                let t0 = Instant::now();
                let mut waits = Duration::ZERO;
                for i in 0..case.k {
                    let tmp = dest.join(format!("{i}.part"));
                    let mut f = std::fs::File::create(&tmp).unwrap();
                    f.write_all(small_content(case.package, i, case.k).as_bytes())
                        .unwrap();
                    let w0 = Instant::now();
                    f.sync_all().unwrap();
                    waits += w0.elapsed();
                    drop(f);
                    std::fs::rename(&tmp, dest.join(i.to_string())).unwrap();
                }
                std::fs::File::open(&dest).unwrap().sync_all().unwrap();
                fsync_peer.push(t0.elapsed().as_secs_f64());
                fsync_peer_waits.push(waits.as_secs_f64());
                std::fs::remove_dir_all(&dest).unwrap();
            }
        }
        let mut peer = Vec::new();
        let mut peer_bytes = 0u64;
        if has_zip && case.k > 0 {
            let zip = work.join(format!("peer-{}-{}.zip", case.package, case.k));
            peer_bytes = std::fs::metadata(&zip).unwrap().len();
            for run in 0..runs {
                let dest = work.join(format!("unzip-{run}"));
                std::fs::create_dir_all(&dest).unwrap();
                let t0 = Instant::now();
                let status = Command::new("unzip")
                    .arg("-q")
                    .arg("-o")
                    .arg(&zip)
                    .arg("-d")
                    .arg(&dest)
                    .status()
                    .unwrap();
                peer.push(t0.elapsed().as_secs_f64());
                assert!(status.success(), "unzip failed");
                std::fs::remove_dir_all(&dest).unwrap();
            }
        }
        log(&format!(
            "{}@{} K={}: update {:.3} s (median of {runs}), {} bytes",
            case.package,
            case.files,
            case.k,
            median(&mut secs.clone()),
            median(&mut bytes.clone())
        ));
        out.push(format!(
            "{{\"package\":\"{}\",\"files\":{},\"k\":{},\"update_secs\":{},\"downloaded_bytes\":{},\"requests\":{},\"diff_pack_bytes\":{pack_bytes},\"peer_unzip_secs\":{},\"peer_zip_bytes\":{peer_bytes},\"peer_fsync_secs\":{},\"peer_fsync_wait_secs\":{},\"update_cpu_user_secs\":{},\"update_cpu_sys_secs\":{},\"update_with_resolvers_secs\":{}}}",
            case.package,
            case.files,
            case.k,
            list(&secs),
            list(&bytes),
            list(&requests),
            list(&peer),
            list(&fsync_peer),
            list(&fsync_peer_waits),
            list(&cpu_user),
            list(&cpu_sys),
            list(&with_resolvers),
        ));
    }
    println!(
        "{{\"runs\":{runs},\"cases\":[{}],\"resolve_during_install\":{{\"threads\":4,\"samples\":{resolve_n},\"p50_ns\":{},\"p99_ns\":{}}}}}",
        out.join(","),
        list(&resolve_p50),
        list(&resolve_p99),
    );
}
