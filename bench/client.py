#!/usr/bin/env python3
"""The device library's benchmarks (client-core), against real peers on the same machine in the
same run, rendered as the `## Device library` section of BENCHMARKS.md. Standard library only.

Usage: bench/client.py [--quick] [OUT]      (OUT defaults to $CARGO_TARGET_DIR/bench/section-client.md)

  1. resolve latency   client-core/examples/resolve_bench.rs: a real store with a 5,000-file
                       release; `Client::resolve` against open+fstat+close of the resolved file and
                       a HashMap<String, PathBuf> lookup; 1 thread, and 4 threads while tables swap.
  2. memory            client-core/examples/memory_bench.rs: live heap bytes `Client::open` keeps
                       for 20,005 files in 5 signed releases (counting allocator), against a
                       HashMap<String, PathBuf> of the same files.
  3. install curve     tests/src/bin/install_curve.rs: a real `baleen serve` on 127.0.0.1;
                       `Client::update()` of diffs touching K files, against `unzip` of the same K
                       files; also resolve latency while those installs run.
  4. library size      `cargo build --profile release-mobile -p client-core` with and without the
                       built-in fetcher; the stripped `.so`; `cargo bloat` when installed (full mode).

Everything is built in release mode in $CARGO_TARGET_DIR (default: target). Full mode takes about
10-15 minutes on 2 cores once the builds are cached; --quick about 3-5.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

GOAL_RESOLVE_P50_US = 2.0
GOAL_RESOLVE_P99_US = 10.0
GOAL_MEMORY_MB = 5.0
GOAL_SO_FETCHER_MB = 2.0
# The library apps ship: host fetcher, release-mobile profile (issue 14).
GOAL_SO_BARE_MB = 1.0
# A 1,000-file install within this multiple of writing and fsyncing the same files (issue 14).
GOAL_INSTALL_FLOOR = 1.5
# O(K): at the same K, a package 5x larger may cost at most this much more time.
GOAL_SIZE_INDEPENDENCE = 1.5
MOBILE_TARGETS = ["aarch64-linux-android", "aarch64-apple-ios"]


def log(msg: str) -> None:
    print(f"bench/client: {msg}", file=sys.stderr, flush=True)


def run(argv: list[str], env: dict | None = None, timeout: float = 3600, cwd: Path = ROOT,
        check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    if check and r.returncode != 0:
        sys.stderr.write(r.stderr[-4000:])
        raise SystemExit(f"bench/client: failed (exit {r.returncode}): {' '.join(argv)}")
    return r


def cargo(args: list[str], target: Path, extra_env: dict | None = None) -> None:
    env = dict(os.environ, CARGO_TARGET_DIR=str(target), **(extra_env or {}))
    log("cargo " + " ".join(args))
    run(["cargo", *args], env=env)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def busy_share(secs: float = 1.0) -> float:
    """Share of all CPUs busy over `secs`, from /proc/stat."""
    def sample():
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        return sum(f), f[3] + (f[4] if len(f) > 4 else 0)
    t1, i1 = sample()
    time.sleep(secs)
    t2, i2 = sample()
    return 0.0 if t2 == t1 else 1.0 - (i2 - i1) / (t2 - t1)


def wait_quiet(limit: float) -> float:
    """Waits up to `limit` seconds for the machine to be under 15 % busy; returns the last share."""
    deadline = time.monotonic() + limit
    share = busy_share()
    while share > 0.15 and time.monotonic() < deadline:
        share = busy_share()
    return share


def machine() -> dict:
    cpu = re.findall(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    mem = int(re.search(r"^MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text(), re.M).group(1))
    os_name = ""
    if Path("/etc/os-release").exists():
        m = re.search(r'^PRETTY_NAME="?([^"\n]*)"?', Path("/etc/os-release").read_text(), re.M)
        os_name = m.group(1) if m else ""

    def out(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=20,
                                  cwd=ROOT).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu[0] if cpu else platform.processor(),
        "mem_gib": mem / 1024 / 1024,
        "os": os_name,
        "kernel": platform.release(),
        "rustc": out(["rustc", "--version"]),
        "commit": out(["git", "rev-parse", "--short", "HEAD"]),
        "dirty": bool(out(["git", "status", "--porcelain", "--untracked-files=no"])),
        "unzip": (out(["unzip", "-v"]).split("\n") or [""])[0],
    }


# --- 1-3: the benchmark programs ---------------------------------------------------------------


def bench_resolve(target: Path, runs: int, samples: int) -> list[dict]:
    exe = target / "release" / "examples" / "resolve_bench"
    out = []
    for i in range(runs):
        share = wait_quiet(60)
        log(f"resolve run {i + 1}/{runs} (machine {share:.0%} busy before)")
        r = run([str(exe), str(samples)], timeout=900)
        d = json.loads(r.stdout.strip().split("\n")[-1])
        d["busy_before"] = share
        out.append(d)
    return out


def bench_memory(target: Path, runs: int) -> list[dict]:
    exe = target / "release" / "examples" / "memory_bench"
    out = []
    for i in range(runs):
        log(f"memory run {i + 1}/{runs}")
        r = run([str(exe)], timeout=900)
        out.append(json.loads(r.stdout.strip().split("\n")[-1]))
    return out


def bench_install(target: Path, runs: int) -> dict:
    exe = target / "release" / "install_curve"
    env = dict(os.environ, BALEEN_BIN=str(target / "release" / "baleen"))
    wait_quiet(60)
    log(f"install curve, {runs} runs per case (a real baleen serve on 127.0.0.1)")
    p = subprocess.run([str(exe), str(runs)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                       stderr=sys.stderr, text=True, timeout=3600, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise SystemExit(f"bench/client: install_curve failed (exit {p.returncode})")
    return json.loads(p.stdout.strip().split("\n")[-1])


# --- 4: library size ---------------------------------------------------------------------------


def so_size(path: Path, work: Path) -> tuple[int, int]:
    """(bytes as built, bytes after `strip --strip-all` of a copy)."""
    work.mkdir(parents=True, exist_ok=True)
    copy = work / path.name
    shutil.copyfile(path, copy)
    stripped = copy.stat().st_size
    if shutil.which("strip"):
        run(["strip", "--strip-all", str(copy)])
        stripped = copy.stat().st_size
    return path.stat().st_size, stripped


def bench_size(target: Path, full: bool) -> dict:
    work = target / "bench" / "size"
    work.mkdir(parents=True, exist_ok=True)
    res: dict = {}
    # A cdylib's file name has no hash, so builds with different features in one target dir would
    # overwrite each other's file and leave cargo thinking both fresh: the variant without the
    # built-in fetcher gets a target dir of its own.
    variants = [
        ("builtin-fetcher", target, []),
        ("no-default-features", target / "bench" / "size-no-default", ["--no-default-features"]),
    ]
    for name, tdir, flags in variants:
        cargo(["build", "--profile", "release-mobile", "-p", "client-core", "--lib", *flags], tdir)
        so = tdir / "release-mobile" / "libclient_core.so"
        built, stripped = so_size(so, work / name)
        staticlib = tdir / "release-mobile" / "libclient_core.a"
        res[name] = {"built": built, "stripped": stripped,
                     "staticlib": staticlib.stat().st_size if staticlib.exists() else None}
    installed = run(["rustup", "target", "list", "--installed"], check=False).stdout.split()
    res["installed_targets"] = installed
    res["mobile_targets"] = {}
    for t in MOBILE_TARGETS:
        if t not in installed:
            res["mobile_targets"][t] = None
            continue
        # Linking a cdylib for a phone needs the NDK's or Xcode's linker; a staticlib needs none.
        env = dict(os.environ, CARGO_TARGET_DIR=str(target))
        log(f"cargo rustc --crate-type staticlib --target {t}")
        r = run(["cargo", "rustc", "--profile", "release-mobile", "-p", "client-core", "--lib",
                 "--target", t, "--crate-type", "staticlib"], env=env, check=False)
        lib = target / t / "release-mobile" / "libclient_core.a"
        if r.returncode == 0 and lib.exists():
            res["mobile_targets"][t] = {"staticlib": lib.stat().st_size}
        else:
            res["mobile_targets"][t] = {"error": r.stderr.strip().split("\n")[-1][:300]}
    res["symbols"] = symbol_table(target) if full else None
    res["bloat"] = None
    if full and shutil.which("cargo-bloat"):
        # cargo-bloat needs symbols: the same profile unstripped, in a target dir of its own.
        env = dict(os.environ, CARGO_TARGET_DIR=str(target / "bench" / "size-bloat"),
                   CARGO_PROFILE_RELEASE_MOBILE_STRIP="false")
        bloat = {}
        for name, flags in [("builtin-fetcher", [])]:
            log(f"cargo bloat ({name})")
            r = run(["cargo", "bloat", "--profile", "release-mobile", "-p", "client-core", "--lib",
                     "--crates", "-n", "15", "--message-format", "json", *flags], env=env, check=False,
                    timeout=3600)
            try:
                bloat[name] = json.loads(r.stdout.strip().split("\n")[-1])
            except (json.JSONDecodeError, IndexError):
                bloat[name] = {"error": (r.stderr or r.stdout)[-500:]}
        res["bloat"] = bloat
    return res


# Sections of the stripped .so, grouped by what they hold.
SECTION_GROUPS = [
    ("code (.text)", [".text"]),
    ("unwind tables (.eh_frame, .eh_frame_hdr, .gcc_except_table)",
     [".eh_frame", ".eh_frame_hdr", ".gcc_except_table"]),
    ("read-only data (.rodata, .data.rel.ro)", [".rodata", ".data.rel.ro"]),
    ("relocations (.rela.dyn)", [".rela.dyn"]),
]


def crate_of(symbol: str) -> str:
    """The crate a demangled symbol's path starts with (generic code counts where it is defined:
    a `Vec<T>` method is `alloc`'s, a `drop_in_place` is `core`'s)."""
    name = re.sub(r"^[<&*]+|^(dyn |mut |impl )", "", symbol)
    m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)::", name)
    if m:
        return m.group(1)
    return "uniffi metadata" if symbol.startswith("UNIFFI_META") else "other symbols"


def symbol_table(target: Path) -> dict | None:
    """What remains in the shipped build (host fetcher): bytes per section group of the stripped
    .so and per crate of the symbols, from the same profile built unstripped."""
    if not (shutil.which("nm") and shutil.which("size") and shutil.which("strip")):
        return None
    tdir = target / "bench" / "size-symbols"
    cargo(["build", "--profile", "release-mobile", "-p", "client-core", "--lib", "--no-default-features"],
          tdir, {"CARGO_PROFILE_RELEASE_MOBILE_STRIP": "false"})
    so = tdir / "release-mobile" / "libclient_core.so"
    stripped = tdir / "stripped.so"
    run(["strip", "--strip-all", "-o", str(stripped), str(so)])
    sections = {}
    for line in run(["size", "-A", str(stripped)]).stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit():
            sections[parts[0]] = int(parts[1])
    crates: dict = {}
    for line in run(["nm", "--size-sort", "-S", "-C", str(so)]).stdout.splitlines():
        parts = line.split(" ", 3)
        if len(parts) < 4:
            continue
        crate = crate_of(parts[3])
        crates[crate] = crates.get(crate, 0) + int(parts[1], 16)
    return {"file": stripped.stat().st_size, "sections": sections,
            "crates": sorted(crates.items(), key=lambda kv: -kv[1])}


# --- report ------------------------------------------------------------------------------------


def us(ns) -> str:
    return "–" if ns is None else f"{ns / 1000:.2f} µs"


def mb(n) -> str:
    return "–" if n is None else f"{n / 1e6:.2f} MB"


def ratio(a, b) -> str:
    if a is None or not b:
        return "–"
    r = a / b
    return f"{r:.2f}×" if r >= 0.1 else f"{r:.3f}×"


def met(ok) -> str:
    return "–" if ok is None else ("**met**" if ok else "**missed**")


def table(header: list[str], rows: list[list[str]], align: str) -> str:
    spec = {"l": "---", "r": "---:"}
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(spec[a] for a in align) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def linear_fit(ks: list[float], ts: list[float]) -> tuple[float, float, float]:
    """Least squares t = a + b*k; returns (a, b, r^2)."""
    n = len(ks)
    mk, mt = sum(ks) / n, sum(ts) / n
    sxx = sum((k - mk) ** 2 for k in ks)
    b = sum((k - mk) * (t - mt) for k, t in zip(ks, ts)) / sxx
    a = mt - b * mk
    ss_tot = sum((t - mt) ** 2 for t in ts)
    ss_res = sum((t - a - b * k) ** 2 for k, t in zip(ks, ts))
    return a, b, 1 - ss_res / ss_tot if ss_tot else 1.0


def render(args, info: dict, R: dict, elapsed: float) -> tuple[str, list]:
    w: list[str] = []
    goals = []  # (benchmark, figure, peer, ratio, goal, ok)
    runs = R["runs"]
    w.append("## Device library\n")
    w.append("`client-core` on this machine against peers measured in the same run. Every figure is the "
             "median of the runs listed beside it (each run a new process).\n")
    w.append(f"- Command: `{args.command}` — took {elapsed // 60:.0f} min {elapsed % 60:.0f} s "
             f"(builds included).")
    w.append(f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; commit "
             f"`{info['commit']}`{' with uncommitted changes' if info['dirty'] else ''}; "
             f"{info['rustc']}; benchmarks built with `cargo build --release`, the library size with "
             f"`--profile release-mobile`.")
    w.append(f"- Machine: {info['nproc']} CPUs ({info['cpu']}), {info['mem_gib']:.1f} GiB memory, "
             f"{info['os']}, Linux {info['kernel']}; shared with other work, so tails (p99, p99.9) are "
             f"noisy: compare the runs beside each median.")
    w.append("")

    # 1. resolve
    rs = R["resolve"]
    def med(path):
        vals = []
        for d in rs:
            x = d
            for p in path:
                x = x[p]
            vals.append(x)
        return median(vals), vals
    r50, r50s = med(["single", "resolve", "p50"])
    r99, r99s = med(["single", "resolve", "p99"])
    o50, _ = med(["single", "open_fstat_close", "p50"])
    o99, _ = med(["single", "open_fstat_close", "p99"])
    h50, _ = med(["single", "hashmap", "p50"])
    h99, _ = med(["single", "hashmap", "p99"])
    c50, c50s = med(["threads4", "resolve", "p50"])
    c99, c99s = med(["threads4", "resolve", "p99"])
    co50, _ = med(["threads4", "open_fstat_close", "p50"])
    co99, _ = med(["threads4", "open_fstat_close", "p99"])
    timer, _ = med(["timer_ns"])
    swaps, _ = med(["threads4", "swaps"])
    inst = R.get("install") or {}
    rdi = inst.get("resolve_during_install") or {}
    i50, i99 = median(rdi.get("p50_ns", [])), median(rdi.get("p99_ns", []))
    goals.append(("1. resolve p50, 5,000-file package, 1 thread", us(r50), f"open+fstat+close {us(o50)}",
                  ratio(r50, o50), "≤ 2 µs", r50 / 1000 <= GOAL_RESOLVE_P50_US))
    goals.append(("1. resolve p99, 1 thread", us(r99), f"open+fstat+close {us(o99)}", ratio(r99, o99),
                  "≤ 10 µs", r99 / 1000 <= GOAL_RESOLVE_P99_US))
    goals.append(("1. resolve p50 / p99, 4 threads, table swapped every ms", f"{us(c50)} / {us(c99)}",
                  f"open+fstat+close {us(co50)} / {us(co99)}", f"{ratio(c50, co50)} / {ratio(c99, co99)}",
                  "≤ 2 / ≤ 10 µs", c50 / 1000 <= GOAL_RESOLVE_P50_US and c99 / 1000 <= GOAL_RESOLVE_P99_US))
    if i50 is not None:
        goals.append(("1. resolve p50 / p99, 4 threads, during a real 1,000-file install",
                      f"{us(i50)} / {us(i99)}", "", "", "≤ 2 / ≤ 10 µs",
                      i50 / 1000 <= GOAL_RESOLVE_P50_US and i99 / 1000 <= GOAL_RESOLVE_P99_US))

    # 2. memory
    ms = R["memory"]
    live = median([d["client_live_bytes"] for d in ms])
    peak = median([d["client_peak_bytes"] for d in ms])
    rss = median([d["client_rss_bytes"] for d in ms])
    hmap = median([d["hashmap_live_bytes"] for d in ms])
    mfiles = ms[0]["files"]
    mbytes = ms[0]["manifest_bytes"]
    goals.append((f"2. memory of an opened client, {mfiles:,} files", mb(live),
                  f"HashMap<String, PathBuf> {mb(hmap)}", ratio(live, hmap), "≤ 5 MB",
                  live / 1e6 <= GOAL_MEMORY_MB))

    # 3. install curve
    cases = inst.get("cases", [])
    def case(pkg, k):
        return next((c for c in cases if c["package"] == pkg and c["k"] == k), None)
    big = [c for c in cases if c["package"] == "big" and c["k"] > 0]
    fit = None
    if len(big) >= 2:
        fit = linear_fit([c["k"] for c in big], [median(c["update_secs"]) for c in big])
    b10, s10 = case("big", 10), case("small", 10)
    if b10 and s10:
        tb, ts = median(b10["update_secs"]), median(s10["update_secs"])
        goals.append((f"3. install K=10 files: {b10['files']:,}-file ÷ {s10['files']:,}-file package",
                      f"{tb:.3f} s ÷ {ts:.3f} s", "", f"{tb / ts:.2f}×",
                      f"≤ {GOAL_SIZE_INDEPENDENCE}× (O(K))", tb / ts <= GOAL_SIZE_INDEPENDENCE))
    b1000 = case("big", 1000)
    if b1000 and b1000["peer_unzip_secs"]:
        t, p = median(b1000["update_secs"]), median(b1000["peer_unzip_secs"])
        f = median(b1000.get("peer_fsync_secs", []))
        goals.append(("3. install K=1000 of 5,000 files", f"{t:.3f} s",
                      f"unzip {p:.3f} s; write+fsync {f:.3f} s", f"{ratio(t, p)}; {ratio(t, f)}",
                      f"≤ {GOAL_INSTALL_FLOOR}× write+fsync",
                      None if f is None else t / f <= GOAL_INSTALL_FLOOR))

    # 4. size
    sz = R["size"]
    so_f, so_b = sz["builtin-fetcher"]["stripped"], sz["no-default-features"]["stripped"]
    goals.append(("4. stripped .so, built-in fetcher", mb(so_f), "", "", "≤ 2 MB", so_f / 1e6 <= GOAL_SO_FETCHER_MB))
    goals.append(("4. stripped .so, --no-default-features", mb(so_b), "", "", f"≤ {GOAL_SO_BARE_MB} MB",
                  so_b / 1e6 <= GOAL_SO_BARE_MB))

    w.append("### Goals\n")
    w.append(table(["benchmark", "client-core", "peer", "ratio", "goal", ""],
                   [[a, b, c, d, e, met(f)] for a, b, c, d, e, f in goals], "lrrrrl"))
    w.append("")

    # details 1
    w.append("### 1. resolve latency\n")
    def runs_of(vals):
        return ", ".join(f"{v / 1000:.2f}" for v in vals)
    w.append(table(
        ["call", "p50", "p99", "p99.9 (median)", "runs, p50 µs", "runs, p99 µs"],
        [["`Client::resolve`, 1 thread", us(r50), us(r99), us(med(["single", "resolve", "p999"])[0]),
          runs_of(r50s), runs_of(r99s)],
         ["peer: `File::open` + `metadata` + close, 1 thread", us(o50), us(o99),
          us(med(["single", "open_fstat_close", "p999"])[0]),
          runs_of(med(["single", "open_fstat_close", "p50"])[1]),
          runs_of(med(["single", "open_fstat_close", "p99"])[1])],
         ["peer: `HashMap<String, PathBuf>` lookup, 1 thread", us(h50), us(h99),
          us(med(["single", "hashmap", "p999"])[0]), runs_of(med(["single", "hashmap", "p50"])[1]),
          runs_of(med(["single", "hashmap", "p99"])[1])],
         ["**ratio resolve ÷ open+fstat+close**", ratio(r50, o50), ratio(r99, o99), "", "", ""],
         ["ratio resolve ÷ HashMap lookup", ratio(r50, h50), ratio(r99, h99), "", "", ""],
         ["`Resolver::resolve`, 4 threads, table rebuilt and swapped every ms", us(c50), us(c99),
          us(med(["threads4", "resolve", "p999"])[0]), runs_of(c50s), runs_of(c99s)],
         ["peer: open+fstat+close, 4 threads, same swaps", us(co50), us(co99),
          us(med(["threads4", "open_fstat_close", "p999"])[0]),
          runs_of(med(["threads4", "open_fstat_close", "p50"])[1]),
          runs_of(med(["threads4", "open_fstat_close", "p99"])[1])],
         ["**ratio, 4 threads**", ratio(c50, co50), ratio(c99, co99), "", "", ""],
         ["`Client::resolve`, 4 threads, during real 1,000-file installs (section 3)", us(i50), us(i99), "",
          runs_of(rdi.get("p50_ns", [])), runs_of(rdi.get("p99_ns", []))]],
        "lrrrll"))
    w.append("")
    w.append(f"How measured: `client-core/examples/resolve_bench.rs` builds a real store (blobs, a signed "
             f"5,000-file manifest, the state file) and opens a `Client` on it; each call on a random "
             f"existing URL with a query string (`https://m.example.com/checkout/assets/chunk-N/part-NNNNN.js?v=1`) "
             f"is timed on its own with `Instant` (which costs about {timer:.0f} ns, included). "
             f"{rs[0]['single']['resolve']['n']:,} resolves per run and as many HashMap lookups, "
             f"{rs[0]['single']['open_fstat_close']['n']:,} opens; the HashMap peer strips the prefix "
             f"and query and looks the path up, the open peer is what an interceptor does anyway to "
             f"hand the resolved file to the WebView. The 4-thread rows run four resolvers while a fifth "
             f"thread rebuilds a 5,000-file `Table` and swaps it in every millisecond ({swaps:.0f} swaps "
             f"per run, median) — on 2 CPUs, so 5 busy threads share 2 cores and the tails include "
             f"preemption. The last row is four threads calling `Client::resolve` while the same client "
             f"runs `update()` of a real 1,000-file diff from `baleen serve` "
             f"({rdi.get('samples', 0):,} resolves in all). {runs} run(s).")
    w.append("")

    # details 2
    w.append("### 2. memory of an opened client\n")
    w.append(table(["what", "bytes", "per file", "runs"],
                   [[f"`Client::open`, live heap kept ({mfiles:,} files, {ms[0]['packages']} packages)", f"{live:,.0f}",
                     f"{live / mfiles:.0f}", ", ".join(f"{d['client_live_bytes']:,}" for d in ms)],
                    ["`Client::open`, heap peak during the open", f"{peak:,.0f}", f"{peak / mfiles:.0f}",
                     ", ".join(f"{d['client_peak_bytes']:,}" for d in ms)],
                    ["`Client::open`, resident set growth", f"{rss:,.0f}", f"{rss / mfiles:.0f}",
                     ", ".join(f"{d['client_rss_bytes']:,}" for d in ms)],
                    [f"peer: `HashMap<String, PathBuf>` URL → blob path ({ms[0]['hashmap_entries']:,} entries)",
                     f"{hmap:,.0f}", f"{hmap / ms[0]['hashmap_entries']:.0f}",
                     ", ".join(f"{d['hashmap_live_bytes']:,}" for d in ms)],
                    ["peer: the signed manifests on disk", f"{mbytes:,}", f"{mbytes / mfiles:.0f}", ""],
                    ["**ratio client ÷ HashMap**", ratio(live, hmap), "", ""]],
                   "lrrl"))
    w.append("")
    w.append("How measured: `client-core/examples/memory_bench.rs` has a child process write a real "
             "store — five signed releases of 4,000 files (plus an entry page each), their blobs and "
             "the state file — and opens a `Client` on it in a fresh process (which reads and "
             "verifies the manifests and builds the resolver table). A counting global allocator "
             "(the `cap` crate) gives the live heap bytes after the open minus before it (the "
             "figure), and the process's peak; the resident-set growth is from `/proc/self/status` "
             "and includes the code paged in and the freed heap the allocator keeps. The peer map is "
             f"built the same way after the open. {len(ms)} run(s); the counts are deterministic.")
    w.append("")

    # details 3
    w.append("### 3. install cost against the number of files changed\n")
    rows = []
    for c in cases:
        t = median(c["update_secs"])
        p = median(c["peer_unzip_secs"])
        f = median(c.get("peer_fsync_secs", []))
        rows.append([f"{c['package']} ({c['files']:,} files)", f"{c['k']:,}", f"{t:.3f}",
                     f"{median(c['downloaded_bytes']):,.0f}",
                     f"{c['diff_pack_bytes']:,}" if c["diff_pack_bytes"] else "–",
                     "–" if p is None else f"{p:.3f}", ratio(t, p),
                     "–" if not c["peer_zip_bytes"] else f"{c['peer_zip_bytes']:,}",
                     "–" if f is None else f"{f:.3f}", ratio(t, f),
                     ", ".join(f"{x:.3f}" for x in c["update_secs"])])
    w.append(table(["package", "K files changed", "update() s", "bytes downloaded", "of which diff pack",
                    "peer: unzip s", "ratio", "peer: zip bytes", "peer: write+fsync s", "ratio",
                    "runs, s"], rows, "lrrrrrrrrrl"))
    w.append("")
    if fit:
        a, b, r2 = fit
        w.append(f"Linear fit over K = {', '.join(str(c['k']) for c in big)} on the 5,000-file package: "
                 f"t ≈ {a * 1000:.1f} ms + {b * 1e6:.0f} µs × K (R² = {r2:.3f}); K = 0 (an index check "
                 f"with nothing to install) takes {median(case('big', 0)['update_secs']) * 1000:.1f} ms."
                 if case("big", 0) else "")
        per = []
        for lo, hi in zip(big, big[1:]):
            dt = median(hi["update_secs"]) - median(lo["update_secs"])
            per.append(f"K {lo['k']}→{hi['k']}: {dt / (hi['k'] - lo['k']) * 1e6:.0f} µs per extra file")
        w.append("Marginal cost: " + "; ".join(per) + ".")
        if b10 and s10:
            w.append(f"At K = 10 the 5,000-file package costs {median(b10['update_secs']) / median(s10['update_secs']):.2f}× "
                     f"the time and {median(b10['downloaded_bytes']) / median(s10['downloaded_bytes']):.2f}× "
                     f"the bytes of the 1,000-file one.")
        w.append("")
    if b1000 and b1000.get("update_cpu_user_secs"):
        t = median(b1000["update_secs"])
        u, k = median(b1000["update_cpu_user_secs"]), median(b1000["update_cpu_sys_secs"])
        f = median(b1000.get("peer_fsync_secs", []))
        fw = median(b1000.get("peer_fsync_wait_secs", []))
        w.append(f"Where the time of the K = 1,000 update goes ({t:.3f} s, median): the thread running "
                 f"`update()` spends {u:.3f} s of CPU in user code (index and manifest checks, diff-pack "
                 f"decoding and patching, sha256 of every blob, the resolver table) and {k:.3f} s in the "
                 f"kernel (reading bases, writing files, creating inodes); the remaining "
                 f"{max(t - u - k, 0):.3f} s it waits, for the loopback server and for the blobs' fsyncs, "
                 f"which eight syncer threads run at once so that the file system commits them together "
                 f"(client-core `store::BlobWriter`). The floor spends {fw:.3f} s of its {f:.3f} s inside "
                 f"`fsync`, one journal commit per file: the disk's waits, not the installer's work, set "
                 f"both figures, and they swing with other load on the machine, so compare the ratio.")
        w.append("")
    w.append(f"How measured: `tests/src/bin/install_curve.rs` starts the release `baleen serve` on "
             f"127.0.0.1, publishes `big` (5,000 files of about 1.5 KB and three of 1 MiB) and `small` "
             f"(1,000 files), then releases changing K files in place. A template device installs both "
             f"first releases; each run copies that store, opens a client on the copy and times "
             f"`Client::update()` — the signed index, the manifest, the diff pack (built beforehand), "
             f"decoding, sha256 checks, every blob written with fsync, the state switch and the new "
             f"resolver table — after the server went idle and the disk was settled (`sync`). Bytes are the response bodies the client "
             f"received (index and manifest included). The peer is `unzip -q -o` ({info['unzip'] or 'Info-ZIP'}) "
             f"of a `zip -q` of the same K changed files into an empty directory: no verification, "
             f"no fsync. The second peer is the least a durable installer does: the K files each "
             f"written to a temp file, fsynced and renamed, then the directory fsynced (in Rust, same "
             f"disk, settled the same way). {inst.get('runs', runs)} run(s) per row, each with the CPUs to itself like "
             f"the peers; one more K = 1,000 run shares them with the four resolver threads of section 1 "
             f"(its resolve latency is section 1's; its update took "
             f"{', '.join(f'{x:.3f}' for x in (b1000 or {}).get('update_with_resolvers_secs', [])) or '–'} s).")
    w.append("")

    # details 4
    w.append("### 4. library size\n")
    rows = []
    for name, label in [("builtin-fetcher", "default features (built-in ureq fetcher)"),
                        ("no-default-features", "`--no-default-features` (host fetcher only)")]:
        s = sz[name]
        rows.append([label, f"{s['built']:,}", f"{s['stripped']:,}", mb(s["stripped"]),
                     "–" if s["staticlib"] is None else f"{s['staticlib']:,}"])
    w.append(table(["build", ".so as built (profile strips)", ".so after strip --strip-all", "MB",
                    ".a (staticlib, unstripped)"], rows, "lrrrr"))
    w.append("")
    mt = sz["mobile_targets"]
    missing = [t for t, v in mt.items() if v is None]
    if missing:
        w.append(f"Mobile targets: {', '.join(f'`{t}`' for t in missing)} not installed here "
                 f"(`rustup target list --installed`: {', '.join(sz['installed_targets'])}), so the "
                 f"figures are for x86_64 Linux; an aarch64 build is usually of similar size.")
    for t, v in mt.items():
        if v and "staticlib" in v:
            w.append(f"`{t}` is installed: its staticlib (`cargo rustc --profile release-mobile --crate-type "
                     f"staticlib --target {t}`; every dependency's objects, unstripped and before the app's "
                     f"linker drops unused code) is {v['staticlib']:,} bytes; a `.so` for it needs the "
                     f"platform linker, not present here.")
        elif v:
            w.append(f"`{t}` is installed but the build failed: {v['error']}")
    w.append("")
    sym = sz.get("symbols")
    if sym:
        secs = sym["sections"]
        grouped = [(label, sum(secs.get(n, 0) for n in names)) for label, names in SECTION_GROUPS]
        rest = sym["file"] - sum(b for _, b in grouped)
        rows = [[label, f"{b:,}", f"{b / sym['file']:.0%}"] for label, b in grouped + [("the rest", rest)]]
        w.append(f"What remains in the shipped build (`--no-default-features`, {sym['file']:,} bytes stripped), "
                 f"by section:\n")
        w.append(table(["part of the stripped .so", "bytes", "share"], rows, "lrr"))
        w.append("")
        total = sum(b for _, b in sym["crates"]) or 1
        top = sym["crates"][:16]
        other = total - sum(b for _, b in top)
        rows = [[f"`{c}`" if " " not in c else c, f"{b:,}", f"{b / total:.0%}"] for c, b in top]
        rows.append([f"{len(sym['crates']) - len(top)} more", f"{other:,}", f"{other / total:.0%}"])
        w.append(f"By crate: the sized symbols of the same build unstripped (`nm --size-sort -S -C`; code "
                 f"and data, {total:,} bytes; generic code counts for the crate defining it, so `alloc` "
                 f"and `core` hold the collections and drops of every other crate's types):\n")
        w.append(table(["crate", "bytes", "share"], rows, "lrr"))
        w.append("")
    bloat = sz.get("bloat")
    if bloat:
        for name, d in bloat.items():
            if "crates" not in d:
                w.append(f"`cargo bloat` ({name}) failed: {d.get('error', '')!r}")
                continue
            total = d.get("text-section-size") or 1
            top = d["crates"][:12]
            w.append(f"Largest crates in `.text` ({name}, `cargo bloat --profile release-mobile -p "
                     f"client-core --lib --crates`, unstripped; .text {d.get('text-section-size', 0):,} of "
                     f"{d.get('file-size', 0):,} bytes): "
                     + ", ".join(f"{c['name']} {c['size'] / 1024:.0f} KiB ({c['size'] / total:.0%})" for c in top)
                     + ".")
            w.append("")
    w.append("The shipped build is the one without the built-in fetcher (`ureq`, plain HTTP without TLS: a "
             "test and desktop convenience behind the default `builtin-fetcher` feature; apps pass a "
             "`HostFetcher` with their platform's HTTPS). Weighed and left: `panic = \"abort\"` would drop "
             "the unwind tables and landing pads, but the pack decoder's guard turns a panic inside the zstd "
             "decoder on a hostile pack into an error, and UniFFI and the C ABI turn a panic into an error for "
             "the host; with abort either would end the app. `opt-level = \"z\"` came out larger than "
             "`\"s\"` with fat LTO (2,069,856 against 1,987,304 bytes stripped, x86_64), so the profile keeps "
             "`\"s\"`. A client-only `manifests` feature would save nothing: LTO already drops the server's "
             "code (signing, diff planning, the pack writer), which the device never calls. What is left is "
             "std's panic and backtrace machinery (`std`, `gimli`, `addr2line`, `rustc_demangle`, "
             "`miniz_oxide`), the JSON formats (`serde_json`, `serde_path_to_error`, and their generic code "
             "counted in `alloc` and `core`), the pack reader (`zip`, `crc32fast`, `ruzstd`), signatures "
             "and hashes (`curve25519_dalek`, `sha2`) and the FFI (`uniffi_core`).")
    w.append("")
    w.append("How measured: `cargo build --profile release-mobile -p client-core --lib` (`opt-level = "
             "\"s\"`, fat LTO, one codegen unit, `strip = true`), with default features and with "
             "`--no-default-features` (each in its own target dir: a cdylib's file name carries no "
             "feature hash); `libclient_core.so` as built and after `strip --strip-all` of a copy.")
    w.append("")
    return "\n".join(w), goals


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", help="Markdown to write (default $CARGO_TARGET_DIR/bench/section-client.md)")
    ap.add_argument("--quick", action="store_true", help="fewer and shorter runs, no cargo bloat")
    ap.add_argument("--command", help="the command to print in the report")
    args = ap.parse_args()
    started = time.time()
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    if not target.is_absolute():
        target = ROOT / target
    out = Path(args.out) if args.out else target / "bench" / "section-client.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    full = not args.quick
    args.command = args.command or ("bench/client.py" + ("" if full else " --quick"))
    runs = 5 if full else 2
    for tool in ("cargo", "zip", "unzip"):
        if not shutil.which(tool):
            raise SystemExit(f"bench/client: {tool} not found on PATH")

    cargo(["build", "--release", "-p", "server", "--bin", "baleen"], target)
    cargo(["build", "--release", "-p", "client-core", "--example", "resolve_bench",
           "--example", "memory_bench"], target)
    cargo(["build", "--release", "-p", "tests", "--bin", "install_curve"], target)
    info = machine()
    R = {"runs": runs, "machine": info}
    R["size"] = bench_size(target, full)
    R["memory"] = bench_memory(target, 3 if full else 1)
    R["resolve"] = bench_resolve(target, runs, 1_000_000 if full else 200_000)
    R["install"] = bench_install(target, runs if full else 3)
    (target / "bench" / f"results-client-{'full' if full else 'quick'}.json").write_text(json.dumps(R, indent=1))
    text, goals = render(args, info, R, time.time() - started)
    out.write_text(text)
    for g in goals:
        log(f"{g[0]}: {g[1]} (goal {g[4]}) {met(g[5]).strip('*')}")
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
