#!/usr/bin/env python3
"""Baleen's benchmarks against real peers; run through `scripts/bench`, which installs the peers,
builds `baleen` and fetches the web apps first. Standard library only.

Three phases, in this order, so that nothing timed overlaps a pack build:

  A. sizes       publish every pinned release of the chosen web apps, fetch each full pack and the
                 diff pack of each adjacent pair; meanwhile, on the other core, build the peers:
                 `zip -r`, sorted tar | `zstd -19 --long=27`, `zstd -19 --long=27 --patch-from`.
  B. publish     per run, a fresh data dir and server: `baleen publish` of pdfjs-dist (the older
                 release into an empty store, then the newer one) against `zip -r` of the same
                 trees, then how long the background packs take to be served.
  C. throughput  wrk against the signed index and a 2 MiB blob, baleen and nginx (open_file_cache,
                 sendfile) serving the same bytes, taking turns.

Every process started here is recorded in the pid file that scripts/bench's exit trap reads, and is
stopped here by its id on the way out.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import hashlib
import io
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

APP = "bench"  # the host app that every benchmark package belongs to
CHANNEL = "production"
PUBLISH_APP_NAME = "pdfjs-dist"  # the web app of the publish benchmark (its last two pinned releases)
BLOB_SIZE = 2 * 1024 * 1024


@dataclass
class Mode:
    name: str
    throughput_runs: int
    throughput_secs: int
    warmup_secs: int
    publish_runs: int
    # web app name -> how many of its pinned releases, newest last (None: all of them)
    apps: dict[str, int | None]


MODES = {
    "full": Mode("full", 5, 10, 3, 3, {
        "swagger-ui-dist": None,
        "reveal.js": None,
        "@excalidraw/excalidraw": None,
        "pdfjs-dist": None,
    }),
    "quick": Mode("quick", 2, 3, 1, 1, {"swagger-ui-dist": 2, "reveal.js": None}),
}

# The goals of the issue.
GOAL_INDEX = 1.0  # baleen req/s ÷ nginx req/s, at least
GOAL_BLOB = 0.95  # baleen MB/s ÷ nginx MB/s, at least
GOAL_PUBLISH = 0.5  # baleen publish seconds ÷ zip seconds, at most
GOAL_DIFF_PATCH = 0.10  # diff pack ÷ zip of the new release, at most, for a patch release
GOAL_DIFF_MEDIAN = 0.02  # the same, median over all pairs, at most
GOAL_DIFF_LOWER = 1.5  # diff pack ÷ zstd --patch-from of whole tars, at most
GOAL_FULL = 0.6  # full pack ÷ zip of the release, at most

PACK_DEADLINE = 900  # seconds a pack may take to appear, waits included
STEP_TIMEOUT = 900  # seconds any one command may take
QUIET_WAIT = 600  # seconds to wait for other work on the machine (a build) before a phase
RUN_QUIET_WAIT = 120  # the same before each timed run
DISTURBED = 0.10  # a timed run during which other processes took this share of the CPUs is redone
TRIES = 3  # times a disturbed run is tried in all


class Patience:
    """Seconds the whole run may spend waiting for other work and redoing disturbed runs, so that
    a machine that never calms down still gets a (flagged) result in bounded time."""

    def __init__(self, secs: float):
        self.left = secs

    def spend(self, secs: float) -> None:
        self.left = max(0.0, self.left - secs)


PATIENCE = Patience(float(os.environ.get("BENCH_PATIENCE", 360)))


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# --- processes -------------------------------------------------------------------------------


class Procs:
    """Every child process, recorded in a pid file so scripts/bench can stop leftovers by id."""

    def __init__(self, pidfile: Path | None):
        self.pidfile = pidfile
        self.lock = threading.Lock()
        self.live: dict[int, tuple[str, subprocess.Popen]] = {}
        self._write()

    def _write(self) -> None:
        if self.pidfile is None:
            return
        text = "".join(f"{pid} {name}\n" for pid, (name, _) in self.live.items())
        tmp = self.pidfile.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.pidfile)

    def start(self, argv: list[str], name: str, **kw) -> subprocess.Popen:
        with self.lock:
            p = subprocess.Popen(argv, **kw)
            self.live[p.pid] = (name, p)
            self._write()
            return p

    def forget(self, p: subprocess.Popen) -> None:
        with self.lock:
            self.live.pop(p.pid, None)
            self._write()

    def stop(self, p: subprocess.Popen, grace: float = 10.0) -> None:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        self.forget(p)

    def stop_all(self) -> None:
        with self.lock:
            procs = [p for _, p in self.live.values()]
        for p in procs:
            try:
                self.stop(p, grace=3.0)
            except Exception as e:  # keep stopping the others
                log(f"stopping {p.pid}: {e}")

    def run(self, argv: list[str], name: str, timeout: float = STEP_TIMEOUT,
            cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
        """Runs a command to completion (recorded while it runs); raises on a non-zero exit."""
        p = self.start(argv, name, cwd=cwd, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            raise BenchError(f"{name}: no answer within {timeout:.0f} s: {' '.join(argv)}")
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            self.forget(p)
        if p.returncode != 0:
            raise BenchError(
                f"{name} failed (exit {p.returncode}): {' '.join(map(str, argv))}\n"
                f"{err.decode(errors='replace')[-2000:]}")
        return subprocess.CompletedProcess(argv, p.returncode, out, err)

    def timed(self, argv: list[str], name: str, cwd: Path | None = None) -> float:
        t0 = time.perf_counter()
        self.run(argv, name, cwd=cwd)
        return time.perf_counter() - t0


# --- machine ---------------------------------------------------------------------------------


def cpu_busy(seconds: float = 1.0) -> float:
    """Share of all CPUs busy over `seconds`, from /proc/stat."""
    def sample():
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = f[3] + (f[4] if len(f) > 4 else 0)
        return sum(f), idle
    t1, i1 = sample()
    time.sleep(seconds)
    t2, i2 = sample()
    return 0.0 if t2 == t1 else 1.0 - (i2 - i1) / (t2 - t1)


def wait_quiet(what: str, limit: float, threshold: float = 0.15, quiet: bool = False) -> float:
    """Waits (at most `limit` seconds) until the machine is nearly idle; returns the last reading.

    Our own servers are idle at this point, so what is busy is someone else (a build, tests)."""
    start = time.monotonic()
    limit = min(limit, PATIENCE.left)
    deadline = start + limit
    busy = cpu_busy(0.5 if quiet else 1.0)
    if busy <= threshold:
        return busy
    said = False
    while busy > threshold and time.monotonic() < deadline:
        if not said:
            log(f"{what}: the machine is {busy:.0%} busy; waiting up to {limit:.0f} s for it to calm down")
            said = True
        busy = cpu_busy(2.0)
    PATIENCE.spend(time.monotonic() - start)
    if busy > threshold:
        log(f"{what}: still {busy:.0%} busy; measuring anyway (noted in the results)")
    elif said:
        log(f"{what}: quiet after {time.monotonic() - start:.0f} s")
    return busy


def process_cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def machine_busy_secs() -> float:
    """CPU seconds all CPUs spent busy since boot."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = f[3] + (f[4] if len(f) > 4 else 0)
    return (sum(f) - idle) / os.sysconf("SC_CLK_TCK")


def tree_ticks(pid: int) -> int:
    """CPU ticks of a live process and its live descendants."""
    try:
        total = process_cpu_ticks(pid)
        kids = []
        for task in Path(f"/proc/{pid}/task").iterdir():
            kids += [int(k) for k in (task / "children").read_text().split()]
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return 0
    return total + sum(tree_ticks(k) for k in kids)


class CpuWatch:
    """How much of the CPUs processes other than ours (this script, what it started, and their
    children) took during a `with` block: `share` of all CPUs over its wall time."""

    def __init__(self, procs: "Procs"):
        self.procs = procs
        self.share = 0.0

    def ours(self) -> float:
        t = os.times()
        with self.procs.lock:
            pids = list(self.procs.live)
        ticks = sum(tree_ticks(pid) for pid in pids)
        return t.user + t.system + t.children_user + t.children_system + ticks / os.sysconf("SC_CLK_TCK")

    def __enter__(self):
        self.t0, self.busy0, self.ours0 = time.monotonic(), machine_busy_secs(), self.ours()
        return self

    def __exit__(self, *exc):
        wall = time.monotonic() - self.t0
        others = (machine_busy_secs() - self.busy0) - (self.ours() - self.ours0)
        self.share = max(0.0, others) / max(wall * (os.cpu_count() or 1), 1e-9)
        return False


def undisturbed(ctx: "Ctx", what: str, fn):
    """Runs `fn` once the machine is quiet, again (up to TRIES in all) while other processes took
    more than DISTURBED of the CPUs meanwhile; returns its result and that share."""
    share = 0.0
    for attempt in range(1, TRIES + 1):
        wait_quiet(what, limit=RUN_QUIET_WAIT, quiet=True)
        t0 = time.monotonic()
        with CpuWatch(ctx.procs) as watch:
            result = fn()
        share = watch.share
        if share <= DISTURBED:
            break
        again = attempt < TRIES and PATIENCE.left > 0
        log(f"  {what}: other processes took {share:.0%} of the CPUs meanwhile; "
            + ("measuring again" if again else "keeping it, flagged"))
        if not again:
            break
        ctx.results["repeats"] = ctx.results.get("repeats", 0) + 1
        PATIENCE.spend(time.monotonic() - t0)
    return result, share


def wait_process_idle(pid: int, what: str, limit: float = 600.0) -> None:
    """Waits until process `pid` uses under 5 % of a CPU over half a second (background work done)."""
    hz = os.sysconf("SC_CLK_TCK")
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        a = process_cpu_ticks(pid)
        time.sleep(0.5)
        if process_cpu_ticks(pid) - a <= 0.05 * 0.5 * hz:
            return
    log(f"{what}: server still busy after {limit:.0f} s; going on")


def machine_info(root: Path) -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    models = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    mem_kib = int(re.search(r"^MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text(), re.M).group(1))
    os_name = ""
    if Path("/etc/os-release").exists():
        m = re.search(r'^PRETTY_NAME="?([^"\n]*)"?', Path("/etc/os-release").read_text(), re.M)
        os_name = m.group(1) if m else ""
    if Path("/etc/debian_version").exists():
        os_name += f" ({Path('/etc/debian_version').read_text().strip()})"

    def first_line(argv, stream="stdout", pattern=None):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return "?"
        text = (r.stdout if stream == "stdout" else r.stderr) or r.stdout or r.stderr
        if pattern:
            m = re.search(pattern, text)
            return m.group(1) if m else "?"
        return text.strip().split("\n")[0]

    def git(*args):
        try:
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                                  text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    return {
        "nproc": os.cpu_count(),
        "cpu": models[0] if models else platform.processor() or "?",
        "mem_gib": mem_kib / 1024 / 1024,
        "kernel": platform.release(),
        "os": os_name.strip(),
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "tools": {
            "nginx": first_line(["nginx", "-v"], "stderr", r"nginx/(\S+)"),
            "wrk": first_line(["wrk", "-v"], "stdout", r"wrk (\S+)"),
            "zip": first_line(["zip", "-v"], "stdout", r"This is Zip (\S+)"),
            "zstd": first_line(["zstd", "--version"], "stdout", r"v(\d+\.\d+\.\d+)"),
            "tar": first_line(["tar", "--version"], "stdout", r"\(GNU tar\) (\S+)"),
        },
    }


# --- web apps --------------------------------------------------------------------------------


@dataclass
class Release:
    app: str  # npm name
    version: str
    dir: Path  # the unpacked package/ tree

    @property
    def package(self) -> str:
        """The Baleen package name: the npm name without scope, as Baleen spells names."""
        name = self.app.rsplit("/", 1)[-1].lower()
        return re.sub(r"[^a-z0-9._-]", "-", name)

    @property
    def key(self) -> str:
        return f"{self.app}@{self.version}"

    @property
    def slug(self) -> str:
        return f"{self.app.replace('/', '+')}@{self.version}"

    @property
    def entry(self) -> str:
        return "index.html" if (self.dir / "index.html").is_file() else "package.json"


def read_lock(lock: Path, webapps: Path) -> dict[str, list[Release]]:
    apps: dict[str, list[Release]] = {}
    for line in lock.read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) != 3:
            continue
        name, version, _ = fields
        tree = webapps / f"{name.replace('/', '+')}@{version}" / "package"
        apps.setdefault(name, []).append(Release(name, version, tree))
    return apps


def is_patch_release(old: str, new: str) -> bool:
    a, b = old.split("-")[0].split("."), new.split("-")[0].split(".")
    return a[:2] == b[:2] and a[2:] != b[2:]


def tree_bytes(tree: Path) -> tuple[int, int]:
    files = size = 0
    for p in tree.rglob("*"):
        if p.is_file():
            files += 1
            size += p.stat().st_size
    return files, size


def warm_page_cache(tree: Path) -> None:
    for p in sorted(tree.rglob("*")):
        if p.is_file():
            with open(p, "rb") as f:
                while f.read(1 << 20):
                    pass


# --- HTTP ------------------------------------------------------------------------------------


def http_get(url: str, timeout: float = 120.0, headers: dict | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- servers ---------------------------------------------------------------------------------


class Baleen:
    """A `baleen serve` on a loopback port with its own data dir, key and admin token."""

    def __init__(self, ctx: "Ctx", data: Path, name: str):
        self.ctx, self.data, self.name = ctx, data, name
        fresh = not (data / "keys").exists()
        data.mkdir(parents=True, exist_ok=True)
        if fresh:
            ctx.procs.run([ctx.bin, "keys", "generate", "--dir", str(data / "keys")], "baleen keys")
            out = ctx.procs.run([ctx.bin, "token", "create", "--data-dir", str(data), "--name",
                                 "bench", "--scope", "admin"], "baleen token").stdout.decode().strip()
            if not out.startswith("baleen_"):
                raise BenchError(f"baleen token create printed {out!r}")
            (data / "bench-token").write_text(out)
        self.token = (data / "bench-token").read_text().strip()
        self.serve([], {}, 30)

    def serve(self, extra: list[str], env: dict, within: float) -> None:
        """Starts `baleen serve` on this data dir with `extra` arguments and `env`, and waits
        (at most `within` seconds) until it answers `/healthz`."""
        out_path, self.err_path = self.data / "serve.out", self.data / "serve.err"
        with open(out_path, "w") as out, open(self.err_path, "a") as err:
            self.proc = self.ctx.procs.start(
                [self.ctx.bin, "serve", "--data-dir", str(self.data), "--listen", "127.0.0.1:0",
                 *extra],
                f"baleen serve ({self.name})", stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                env=dict(os.environ, **env, RUST_LOG="warn"))
        deadline = time.monotonic() + within
        self.url = ""
        while time.monotonic() < deadline:
            m = re.search(r"listening on (http://\S+)", out_path.read_text())
            if m:
                self.url = m.group(1)
                break
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        if not self.url:
            self.stop()
            raise BenchError(f"baleen serve ({self.name}) did not start: "
                             f"{self.err_path.read_text()[-2000:]}")
        status, _ = http_get(self.url + "/healthz", timeout=10)
        if status != 200:
            raise BenchError(f"{self.url}/healthz answered {status}")

    def stop(self) -> None:
        self.ctx.procs.stop(self.proc)

    def idle(self, what: str) -> None:
        wait_process_idle(self.proc.pid, what)

    def publish(self, rel: Release, package: str | None = None, channel: str | None = CHANNEL,
                entry: str | None = None, tree: Path | None = None) -> tuple[float, dict]:
        package = package or rel.package
        argv = [self.ctx.bin, "publish", str(tree or rel.dir), "--app", APP, "--package", package,
                "--version", rel.version, "--route", f"https://m.example.com/{package}/",
                "--entry", entry or rel.entry, "--server", self.url, "--token", self.token, "--json"]
        if channel:
            argv += ["--channel", channel, "--create-channel"]
        t0 = time.perf_counter()
        out = self.ctx.procs.run(argv, f"baleen publish {package}@{rel.version}")
        seconds = time.perf_counter() - t0
        answer = json.loads(out.stdout)
        if not answer.get("created"):
            raise BenchError(f"publish of {package}@{rel.version} created nothing: {answer}")
        return seconds, answer

    def get_pack(self, package: str, frm: str | None, to: str) -> tuple[float, int, int]:
        """GETs the final compact pack (built now if it is not yet), retrying while the server
        answers 503 (not ready) or a fast pack; returns seconds until it arrived, its size, and how
        much of that is not payload (the container: its header and tags)."""
        name = f"{frm}..{to}" if frm else to
        url = f"{self.url}/v1/packs/{package}/{name}.bpk"
        t0 = time.perf_counter()
        retries = 0
        while True:
            try:
                # A fast pack (served until the level-19 one replaces it) is not what is measured.
                with urllib.request.urlopen(url, timeout=300) as r:
                    status, body = r.status, r.read()
                    if "immutable" not in (r.headers.get("Cache-Control") or ""):
                        status = 503
            except urllib.error.HTTPError as e:
                status, body = e.code, e.read()
            except (TimeoutError, urllib.error.URLError, ConnectionError) as e:
                status, body = 0, str(e).encode()
            if status == 200:
                break
            if status in (0, 408, 502, 503, 504) and time.perf_counter() - t0 < PACK_DEADLINE:
                retries += 1
                time.sleep(1.0)
                continue
            raise BenchError(f"GET {url}: {status} {body[:300]!r}")
        seconds = time.perf_counter() - t0
        diff, payload = compact_payload(body)
        # A diff request may be answered by the full pack when that is no larger.
        if diff and not frm:
            raise BenchError(f"{url} holds a diff pack")
        if retries:
            log(f"{package} {name}: {retries} retries (not ready, or the fast pack)")
        return seconds, len(body), len(body) - payload


def zstd_frame_len(data: bytes, at: int) -> int:
    """The length of the zstd frame at `at`, from its header and block headers."""
    if data[at:at + 4] != b"\x28\xb5\x2f\xfd":
        raise BenchError(f"no zstd frame at byte {at}")
    fhd = data[at + 4]
    single = fhd & 0x20
    pos = at + 5 + (0 if single else 1) + (0, 1, 2, 4)[fhd & 3] + ((1 if single else 0), 2, 4, 8)[fhd >> 6]
    while True:
        h = int.from_bytes(data[pos:pos + 3], "little")
        kind, size = (h >> 1) & 3, h >> 3
        pos += 3 + (1 if kind == 1 else size)
        if h & 1:
            break
    return pos + (4 if fhd & 4 else 0) - at


def compact_payload(pack: bytes) -> tuple[bool, int]:
    """Whether a compact pack (docs/protocol.md, Packs) is a diff pack, and the bytes of its
    zstd frames: the frames follow the header (38 or 70 bytes) and a varint per patch or run of
    solid blobs, each varint's last byte below 0x80."""
    if pack[:5] != b"BLNP\x02":
        raise BenchError("not a compact pack")
    diff = bool(pack[5] & 1)
    at = 70 if diff else 38
    # Tags end where the first frame starts: skip varints until the zstd magic.
    while pack[at:at + 4] != b"\x28\xb5\x2f\xfd" and at < len(pack):
        at += 1
    payload = 0
    while at < len(pack):
        n = zstd_frame_len(pack, at)
        payload += n
        at += n
    return diff, payload


class Nginx:
    """nginx in the foreground on a loopback port, serving `root` with bench/nginx.conf.in."""

    def __init__(self, ctx: "Ctx", root: Path):
        self.ctx = ctx
        prefix = ctx.work / "nginx"
        prefix.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        conf = (ctx.bench_dir / "nginx.conf.in").read_text()
        conf = conf.replace("@PREFIX@", str(prefix)).replace("@PORT@", str(self.port))
        conf = conf.replace("@ROOT@", str(root))
        (prefix / "nginx.conf").write_text(conf)
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = ctx.procs.start(
            ["nginx", "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e",
             str(prefix / "error.log")],
            "nginx", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(prefix / "stderr.log", "w"))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"nginx exited: {(prefix / 'stderr.log').read_text()[-2000:]}"
                                 f"{(prefix / 'error.log').read_text()[-2000:] if (prefix / 'error.log').exists() else ''}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise BenchError("nginx did not start listening")

    def stop(self) -> None:
        self.ctx.procs.stop(self.proc)


# --- wrk -------------------------------------------------------------------------------------


@dataclass
class Load:
    requests: int
    seconds: float
    body: int
    p50_ms: float
    p99_ms: float
    socket_errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def mbps(self) -> float:
        return self.requests * self.body / self.seconds / 1e6


def wrk(ctx: "Ctx", url: str, connections: int, secs: int, body: int) -> Load:
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{secs}s", "--timeout", "5s",
            "-s", str(ctx.bench_dir / "wrk-report.lua"), url]
    out = ctx.procs.run(argv, "wrk", timeout=secs + 60).stdout.decode()
    m = re.search(r"^BENCH (\{.*\})$", out, re.M)
    if not m:
        raise BenchError(f"wrk printed no report:\n{out}")
    r = json.loads(m.group(1))
    if r["requests"] == 0:
        raise BenchError(f"wrk got no answer from {url}:\n{out}")
    if r["status_errors"]:
        raise BenchError(f"{url}: {r['status_errors']} of {r['requests']} answers were not 2xx/3xx:\n{out}")
    if r["bytes"] < r["requests"] * body:
        raise BenchError(f"{url}: {r['bytes']} bytes for {r['requests']} answers of a {body}-byte "
                         f"body: not every answer was a full 200")
    errors = r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"]
    if errors:
        log(f"{url}: {errors} socket errors or timeouts in {r['requests']} requests")
    return Load(r["requests"], r["duration_us"] / 1e6, body, r["p50_us"] / 1e3, r["p99_us"] / 1e3, errors)


# --- context ---------------------------------------------------------------------------------


@dataclass
class Ctx:
    mode: Mode
    root: Path
    bench_dir: Path
    bin: str
    work: Path
    procs: Procs
    apps: dict[str, list[Release]]
    results: dict = field(default_factory=dict)


def median(xs):
    return statistics.median(xs)


# --- phase A: sizes --------------------------------------------------------------------------


def peers_of_release(ctx: Ctx, rel: Release) -> dict:
    d = ctx.work / "peers"
    d.mkdir(exist_ok=True)
    zip_path, tar_path, zst_path = d / f"{rel.slug}.zip", d / f"{rel.slug}.tar", d / f"{rel.slug}.tar.zst"
    zip_path.unlink(missing_ok=True)
    ctx.procs.run(["zip", "-r", "-q", str(zip_path), "."], "zip", cwd=rel.dir)
    ctx.procs.run(["tar", "--sort=name", "--mtime=@0", "--owner=0", "--group=0", "-C", str(rel.dir),
                   "-cf", str(tar_path), "."], "tar")
    ctx.procs.run(["zstd", "-q", "-f", "-19", "--long=27", str(tar_path), "-o", str(zst_path)], "zstd")
    out = {"zip": zip_path.stat().st_size, "tar": tar_path.stat().st_size,
           "tar_zstd": zst_path.stat().st_size}
    zip_path.unlink()
    zst_path.unlink()
    return out


def peers_of_pair(ctx: Ctx, old: Release, new: Release) -> int:
    d = ctx.work / "peers"
    out = d / f"{old.slug}..{new.slug}.zst"
    ctx.procs.run(["zstd", "-q", "-f", "-19", "--long=27", f"--patch-from={d / (old.slug + '.tar')}",
                   str(d / f"{new.slug}.tar"), "-o", str(out)], "zstd --patch-from")
    size = out.stat().st_size
    out.unlink()
    return size


def phase_sizes(ctx: Ctx) -> None:
    log("A. sizes: publishing every release, fetching its packs, building the peers meanwhile")
    releases, pairs = [], []
    for app, keep in ctx.mode.apps.items():
        rels = ctx.apps[app][-keep:] if keep else ctx.apps[app]
        releases += rels
        pairs += list(zip(rels, rels[1:]))
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    rel_jobs = {r.key: pool.submit(peers_of_release, ctx, r) for r in releases}
    pair_jobs = {(o.key, n.key): pool.submit(peers_of_pair, ctx, o, n) for o, n in pairs}
    srv = Baleen(ctx, ctx.work / "data", "sizes")
    full, diff = {}, {}
    try:
        for app, keep in ctx.mode.apps.items():
            rels = ctx.apps[app][-keep:] if keep else ctx.apps[app]
            prev = None
            for rel in rels:
                seconds, answer = srv.publish(rel)
                r = answer["release"]
                _, size, overhead = srv.get_pack(rel.package, None, rel.version)
                full[rel.key] = {"pack": size, "overhead": overhead, "files": r["file_count"],
                                 "bytes": r["size_bytes"]}
                log(f"  {rel.key}: {r['file_count']} files, {r['size_bytes']} bytes; full pack {size}")
                if prev:
                    _, size, overhead = srv.get_pack(rel.package, prev.version, rel.version)
                    diff[(prev.key, rel.key)] = {"pack": size, "overhead": overhead}
                    log(f"  {prev.key} -> {rel.version}: diff pack {size}")
                prev = rel
        log("  waiting for the peers")
        for key, job in rel_jobs.items():
            full[key].update(job.result(timeout=STEP_TIMEOUT))
        for key, job in pair_jobs.items():
            diff[key]["patch_from"] = job.result(timeout=STEP_TIMEOUT)
            diff[key]["zip_new"] = full[key[1]]["zip"]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        # Stopping drops the diff packs still being built in the background (non-adjacent pairs).
        srv.stop()
    for p in (ctx.work / "peers").glob("*.tar"):
        p.unlink()
    ctx.results["full"] = [{"release": k, **v} for k, v in full.items()]
    ctx.results["diff"] = [{"old": o, "new": n, "patch": is_patch_release(o.rsplit("@", 1)[1], n.rsplit("@", 1)[1]), **v}
                           for (o, n), v in diff.items()]


# --- phase B: publish ------------------------------------------------------------------------


def phase_publish(ctx: Ctx) -> None:
    old, new = ctx.apps[PUBLISH_APP_NAME][-2:]
    log(f"B. publish: {old.key} then {new.version} into a fresh store, {ctx.mode.publish_runs} run(s)")
    for rel in (old, new):
        warm_page_cache(rel.dir)
    ctx.results["publish_busy"] = wait_quiet("publish", limit=QUIET_WAIT)
    zipdir = ctx.work / "zips"
    zipdir.mkdir(exist_ok=True)

    def zip_time(rel: Release) -> float:
        out = zipdir / f"{rel.slug}.zip"
        out.unlink(missing_ok=True)
        t = ctx.procs.timed(["zip", "-r", "-q", str(out), "."], "zip -r", cwd=rel.dir)
        out.unlink()
        return t

    def one_run(i: int) -> dict:
        run = {}
        if i % 2 == 0:
            run["zip_old"], run["zip_new"] = zip_time(old), zip_time(new)
        data = ctx.work / f"data-publish-{i}"
        shutil.rmtree(data, ignore_errors=True)
        srv = Baleen(ctx, data, f"publish {i}")
        try:
            srv.idle("publish")
            run["publish_old"], _ = srv.publish(old)
            run["full_old"], _, _ = srv.get_pack(old.package, None, old.version)
            srv.idle("publish")
            run["publish_new"], _ = srv.publish(new)
            run["full_new"], _, _ = srv.get_pack(new.package, None, new.version)
            run["diff"], _, _ = srv.get_pack(new.package, old.version, new.version)
        finally:
            srv.stop()
            shutil.rmtree(data, ignore_errors=True)
        if i % 2 == 1:
            run["zip_old"], run["zip_new"] = zip_time(old), zip_time(new)
        return run

    runs = []
    for i in range(ctx.mode.publish_runs):
        run, share = undisturbed(ctx, f"publish run {i + 1}", lambda: one_run(i))
        run["others"] = share
        log(f"  run {i + 1}: " + ", ".join(f"{k} {v:.2f} s" for k, v in run.items() if k != "others")
            + f" (others {share:.0%})")
        runs.append(run)
    files_old, bytes_old = tree_bytes(old.dir)
    files_new, bytes_new = tree_bytes(new.dir)
    ctx.results["publish"] = {
        "old": old.key, "new": new.key, "runs": runs,
        "old_files": files_old, "old_bytes": bytes_old,
        "new_files": files_new, "new_bytes": bytes_new,
    }


# --- phase C: throughput ---------------------------------------------------------------------


def with_cpu(pid: int, fn):
    """fn()'s result and the CPU seconds the process `pid` and its children took meanwhile."""
    before = tree_ticks(pid)
    result = fn()
    return result, (tree_ticks(pid) - before) / os.sysconf("SC_CLK_TCK")


def phase_throughput(ctx: Ctx) -> None:
    log("C. throughput: wrk against baleen and nginx, taking turns")
    www = ctx.work / "www"
    www.mkdir(exist_ok=True)
    # A 2 MiB incompressible file, published as a release of its own to become a blob.
    blob_tree = ctx.work / "blob-release"
    blob_tree.mkdir(exist_ok=True)
    blob = os.urandom(BLOB_SIZE)
    (blob_tree / "blob.bin").write_bytes(blob)
    digest = hashlib.sha256(blob).hexdigest()
    (www / "blob.bin").write_bytes(blob)

    srv = Baleen(ctx, ctx.work / "data", "throughput")  # the data of phase A: the index lists its apps
    nginx = None
    try:
        srv.publish(Release("blob2m", "1.0.0", blob_tree), entry="blob.bin")
        srv.idle("throughput")  # its full pack is built in the background
        status, index = http_get(f"{srv.url}/v1/apps/{APP}/channels/{CHANNEL}/index")
        if status != 200:
            raise BenchError(f"index: {status} {index[:200]!r}")
        (www / "index.json").write_bytes(index)
        for p in [www, *www.iterdir()]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        nginx = Nginx(ctx, www)
        # name -> connections, {server: (url, body)}; "healthz" is baleen's HTTP stack and
        # middleware alone (a 3-byte constant answer), to show what the index handler adds.
        targets = {
            "index": (64, {"baleen": (f"{srv.url}/v1/apps/{APP}/channels/{CHANNEL}/index", index),
                           "nginx": (f"{nginx.url}/index.json", index),
                           "baleen /healthz": (f"{srv.url}/healthz", b"ok\n")}),
            "blob": (16, {"baleen": (f"{srv.url}/v1/blobs/{digest}", blob),
                          "nginx": (f"{nginx.url}/blob.bin", blob)}),
        }
        for name, (_, servers) in targets.items():
            for url, body in servers.values():
                status, got = http_get(url)
                if status != 200 or got != body:
                    raise BenchError(f"{url}: {status}, {len(got)} bytes, not the {len(body)} expected")
        ctx.results["throughput_busy"] = wait_quiet("throughput", limit=QUIET_WAIT)
        for name, (conns, servers) in targets.items():
            runs = {server: [] for server in servers}
            order = list(servers)
            for server in order:
                url, body = servers[server]
                wrk(ctx, url, conns, ctx.mode.warmup_secs, len(body))
            for i in range(ctx.mode.throughput_runs):
                for server in order[i % len(order):] + order[:i % len(order)]:
                    url, body = servers[server]
                    pid = nginx.proc.pid if server == "nginx" else srv.proc.pid
                    (load, cpu), share = undisturbed(ctx, f"{name} {server} run {i + 1}", lambda: with_cpu(
                        pid, lambda: wrk(ctx, url, conns, ctx.mode.throughput_secs, len(body))))
                    # The server's own CPU time per answer: what it costs, whatever the machine's noise.
                    cpu_us = cpu / max(load.requests, 1) * 1e6
                    runs[server].append(load.__dict__ | {"rps": load.rps, "mbps": load.mbps,
                                                         "others": share, "cpu_us": cpu_us})
                    log(f"  {name} {server} run {i + 1}: {load.rps:,.0f} req/s, {load.mbps:,.1f} MB/s, "
                        f"p99 {load.p99_ms:.2f} ms (others {share:.0%})")
            ctx.results[name] = {"connections": conns, "size": len(servers["baleen"][1]),
                                 "secs": ctx.mode.throughput_secs, "runs": runs}
    finally:
        if nginx:
            nginx.stop()
        srv.stop()


# --- report ----------------------------------------------------------------------------------


def fmt_ratio(r: float) -> str:
    """0.71×, 1.65×; below 0.1 two significant digits: 0.081×, 0.0067×."""
    return f"{r:.2f}×" if r >= 0.1 else f"{r:.2g}×"


def fmt_bytes(n: float) -> str:
    return f"{n:,.0f}"


def fmt_kb(n: float) -> str:
    return f"{n / 1000:,.1f} kB" if n < 1e6 else f"{n / 1e6:,.2f} MB"


def yes(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def summarize(ctx: Ctx) -> dict:
    """Medians, ratios and goals, from the raw results."""
    R = ctx.results
    s = {}
    if "index" in R:
        for name in ("index", "blob"):
            b = median([r["rps"] for r in R[name]["runs"]["baleen"]])
            n = median([r["rps"] for r in R[name]["runs"]["nginx"]])
            bm = median([r["mbps"] for r in R[name]["runs"]["baleen"]])
            nm = median([r["mbps"] for r in R[name]["runs"]["nginx"]])
            s[name] = {"baleen_rps": b, "nginx_rps": n, "baleen_mbps": bm, "nginx_mbps": nm,
                       "ratio_rps": b / n, "ratio_mbps": bm / nm}
    if "publish" in R:
        runs = R["publish"]["runs"]
        m = {k: median([r[k] for r in runs]) for k in runs[0]}
        s["publish"] = m | {"ratio_new": m["publish_new"] / m["zip_new"],
                            "ratio_old": m["publish_old"] / m["zip_old"]}
    if "diff" in R:
        for d in R["diff"]:
            d["ratio_zip"] = d["pack"] / d["zip_new"]
            d["ratio_lower"] = d["pack"] / d["patch_from"]
            d["lower_zip"] = d["patch_from"] / d["zip_new"]
        s["diff_median_zip"] = median([d["ratio_zip"] for d in R["diff"]])
        s["diff_median_lower"] = median([d["ratio_lower"] for d in R["diff"]])
        s["diff_patch_max"] = max([d["ratio_zip"] for d in R["diff"] if d["patch"]], default=0.0)
        s["diff_lower_max"] = max(d["ratio_lower"] for d in R["diff"])
        for f in R["full"]:
            f["ratio_zip"] = f["pack"] / f["zip"]
            f["ratio_zstd"] = f["pack"] / f["tar_zstd"]
            f["zstd_zip"] = f["tar_zstd"] / f["zip"]
        s["full_max"] = max(f["ratio_zip"] for f in R["full"])
        s["full_median"] = median([f["ratio_zip"] for f in R["full"]])
    return s


def goals(ctx: Ctx, s: dict) -> list[tuple[str, str, str, str, str, bool]]:
    rows = []
    if "index" in s:
        rows.append(("1. index requests/s", f"{s['index']['baleen_rps']:,.0f}",
                     f"nginx {s['index']['nginx_rps']:,.0f}", fmt_ratio(s["index"]["ratio_rps"]),
                     f"≥ {GOAL_INDEX}×", s["index"]["ratio_rps"] >= GOAL_INDEX))
        rows.append(("2. 2 MiB blob MB/s", f"{s['blob']['baleen_mbps']:,.0f}",
                     f"nginx {s['blob']['nginx_mbps']:,.0f}", fmt_ratio(s["blob"]["ratio_mbps"]),
                     f"≥ {GOAL_BLOB}×", s["blob"]["ratio_mbps"] >= GOAL_BLOB))
    if "publish" in s:
        p, P = s["publish"], ctx.results["publish"]
        rows.append((f"3. publish {P['new']} (s)", f"{p['publish_new']:.2f}",
                     f"zip -r {p['zip_new']:.2f}", fmt_ratio(p["ratio_new"]), f"≤ {GOAL_PUBLISH}×",
                     p["ratio_new"] <= GOAL_PUBLISH))
    if "diff_median_zip" in s:
        R = ctx.results
        pair = lambda d: f"{d['old']} → {d['new'].rsplit('@', 1)[1]}"
        patch_pairs = [d for d in R["diff"] if d["patch"]]
        if patch_pairs:
            d = max(patch_pairs, key=lambda d: d["ratio_zip"])
            rows.append((f"4. diff pack bytes, worst of {len(patch_pairs)} patch releases ({pair(d)})",
                         fmt_bytes(d["pack"]), f"zip {fmt_bytes(d['zip_new'])}",
                         fmt_ratio(d["ratio_zip"]), f"≤ {GOAL_DIFF_PATCH}× each",
                         d["ratio_zip"] <= GOAL_DIFF_PATCH))
        rows.append((f"4. diff pack bytes, median of {len(R['diff'])} pairs", "", "zip",
                     fmt_ratio(s["diff_median_zip"]), f"≤ {GOAL_DIFF_MEDIAN}×",
                     s["diff_median_zip"] <= GOAL_DIFF_MEDIAN))
        d = max(R["diff"], key=lambda d: d["ratio_lower"])
        rows.append((f"4. diff pack bytes, worst of {len(R['diff'])} pairs ({pair(d)})", fmt_bytes(d["pack"]),
                     f"zstd --patch-from {fmt_bytes(d['patch_from'])}",
                     fmt_ratio(d["ratio_lower"]) + f" (median {fmt_ratio(s['diff_median_lower'])})",
                     f"≤ {GOAL_DIFF_LOWER}× each", d["ratio_lower"] <= GOAL_DIFF_LOWER))
        f = max(R["full"], key=lambda f: f["ratio_zip"])
        rows.append((f"5. full pack bytes, worst of {len(R['full'])} releases ({f['release']})",
                     fmt_bytes(f["pack"]), f"zip {fmt_bytes(f['zip'])}",
                     fmt_ratio(f["ratio_zip"]) + f" (median {fmt_ratio(s['full_median'])})",
                     f"≤ {GOAL_FULL}× each", f["ratio_zip"] <= GOAL_FULL))
    return rows


def render(ctx: Ctx, info: dict, args, s: dict) -> str:
    R = ctx.results
    elapsed = time.time() - args.started
    t = info["tools"]
    out = []
    w = out.append
    w("# Benchmarks\n")
    w("Baleen against real peers, all measured in one run on one machine by the command below, which\n"
      "also rewrites this file. Every time or rate is the median of the runs listed beside it.\n")
    w(f"- Command: `{args.command}` — the whole run took {elapsed // 60:.0f} min {elapsed % 60:.0f} s, "
      f"of which {args.setup_secs:.0f} s installing tools, building `baleen` and fetching web apps.")
    w(f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; commit "
      f"`{info['commit']}`{' with uncommitted changes' if info['dirty'] else ''}; `baleen` built with "
      f"`cargo build --release`.")
    w(f"- Machine: {info['nproc']} CPUs ({info['cpu']}), {info['mem_gib']:.1f} GiB memory, "
      f"{info['os']}, Linux {info['kernel']}. Load generator and server share these CPUs.")
    w(f"- Peers: nginx {t['nginx']}, wrk {t['wrk']}, Info-ZIP zip {t['zip']}, zstd {t['zstd']}, "
      f"GNU tar {t['tar']} (Debian's packages).")
    shares = [r.get("others", 0) for r in R.get("publish", {}).get("runs", [])]
    for name in ("index", "blob"):
        shares += [x.get("others", 0) for runs in R.get(name, {}).get("runs", {}).values() for x in runs]
    if any(x > DISTURBED for x in shares):
        flagged = sum(x > DISTURBED for x in shares)
        w(f"- Caution: other work on the machine took more than {DISTURBED:.0%} of the CPUs during "
          f"{flagged} of the {len(shares)} timed runs kept (up to {max(shares):.0%}; see the "
          f"last columns), even after waiting and measuring again; those figures are low.")
    elif R.get("repeats"):
        w(f"- {R['repeats']} timed run(s) were measured again because other processes took over "
          f"{DISTURBED:.0%} of the CPUs meanwhile.")
    w("")
    w("## Goals\n")
    w(table(["benchmark", "baleen", "peer", "ratio", "goal", ""],
            [[a, b, c, d, e, yes(f)] for a, b, c, d, e, f in goals(ctx, s)], "lrrrrl"))
    w("")

    if "index" in R:
        for num, name, title in ((1, "index", "Index requests per second"),
                                 (2, "blob", "2 MiB blob download throughput")):
            r = R[name]
            w(f"## {num}. {title}\n")
            rows = []
            for server, runs in r["runs"].items():
                rps = median([x["rps"] for x in runs])
                mbps = median([x["mbps"] for x in runs])
                row = [server, f"{rps:,.0f}", f"{mbps:,.1f}",
                       f"{median([x['p50_ms'] for x in runs]):.2f} / {median([x['p99_ms'] for x in runs]):.2f}",
                       ", ".join(f"{x['rps']:,.0f}" for x in runs),
                       f"{median([x.get('cpu_us', 0) for x in runs]):.1f}",
                       str(sum(x["socket_errors"] for x in runs)),
                       f"{max(x.get('others', 0) for x in runs):.0%}"]
                if server == "baleen /healthz":
                    row[1] += f" ({fmt_ratio(rps / s[name]['nginx_rps'])} of nginx)"
                rows.append(row)
                if server == "nginx":
                    rows.append(["**ratio baleen ÷ nginx**", fmt_ratio(s[name]["ratio_rps"]),
                                 fmt_ratio(s[name]["ratio_mbps"]), "", "", "", "", ""])
            ratio = s[name]["ratio_rps"] if name == "index" else s[name]["ratio_mbps"]
            w(table(["server", "requests/s", "MB/s (body)", "latency p50 / p99 ms", "runs, requests/s",
                     "server CPU µs per answer", "socket errors", "others' CPU share (max)"], rows,
                    "lrrrlrrr"))
            w("")
            if name == "index":
                w(f"How measured: `wrk -t2 -c{r['connections']} -d{r['secs']}s` on "
                  f"`GET /v1/apps/{APP}/channels/{CHANNEL}/index` ({r['size']:,} bytes of signed JSON "
                  f"listing the packages of sections 4 and 5 and the blob's) against nginx serving the same bytes as a "
                  f"static file with `open_file_cache`, `sendfile`, `access_log off`, "
                  f"`worker_processes auto` and long keep-alive (`bench/nginx.conf.in`); "
                  f"{ctx.mode.throughput_runs} runs each after a {ctx.mode.warmup_secs} s warm-up, "
                  f"the servers taking turns; baleen with `RUST_LOG=warn`. Every answer was a "
                  f"full 200 (the run fails otherwise). The index in memory is answered before the "
                  f"router; `baleen /healthz` is the same server answering a constant `ok` through "
                  f"the router and its middleware, the path of every other route. The server's CPU "
                  f"time per answer (all its processes or threads, from /proc) is the median over "
                  f"the runs: what an answer costs, less sensitive to other work on the machine than "
                  f"requests/s. A run during which other processes took over "
                  f"{DISTURBED:.0%} of the CPUs is measured again (up to {TRIES} tries; the last "
                  f"column shows the largest share kept). Goal ≥ {GOAL_INDEX}×: "
                  f"{yes(ratio >= GOAL_INDEX)}.\n")
            else:
                w(f"How measured: `wrk -t2 -c{r['connections']} -d{r['secs']}s` on "
                  f"`GET /v1/blobs/{{sha256}}` of a {BLOB_SIZE:,}-byte random (incompressible) file "
                  f"published in a release of its own, against the same nginx serving the same file; "
                  f"MB/s counts body bytes (10^6). Same turns, warm-up and checks as above. "
                  f"Goal ≥ {GOAL_BLOB}×: {yes(ratio >= GOAL_BLOB)}.\n")

    if "publish" in R:
        P, p = R["publish"], s["publish"]
        runs = P["runs"]
        w("## 3. Publish until servable\n")
        rows = [
            [f"{P['new']}, next release ({P['old'].rsplit('@', 1)[1]} in the store)",
             f"{P['new_files']} / {P['new_bytes'] / 1e6:.1f} MB",
             f"{p['publish_new']:.2f}", f"{p['zip_new']:.2f}", fmt_ratio(p["ratio_new"]),
             ", ".join(f"{r['publish_new']:.2f}" for r in runs),
             ", ".join(f"{r['zip_new']:.2f}" for r in runs)],
            [f"{P['old']}, first release (empty store)",
             f"{P['old_files']} / {P['old_bytes'] / 1e6:.1f} MB",
             f"{p['publish_old']:.2f}", f"{p['zip_old']:.2f}", fmt_ratio(p["ratio_old"]),
             ", ".join(f"{r['publish_old']:.2f}" for r in runs),
             ", ".join(f"{r['zip_old']:.2f}" for r in runs)],
        ]
        w(table(["release", "files / bytes", "baleen publish s", "zip -r s", "ratio", "runs, publish",
                 "runs, zip"], rows, "lrrrrll"))
        w("")
        shares = ", ".join(f"{r.get('others', 0):.0%}" for r in runs)
        w(f"Others' CPU share during each run: {shares} (a run is done again when over "
          f"{DISTURBED:.0%}, up to {TRIES} tries).")
        w("")
        w(table(["background pack, after the publish above returned", "s (median)", "runs"], [
            [f"full pack of {P['old']}", f"{p['full_old']:.2f}", ", ".join(f"{r['full_old']:.2f}" for r in runs)],
            [f"full pack of {P['new']}", f"{p['full_new']:.2f}", ", ".join(f"{r['full_new']:.2f}" for r in runs)],
            [f"then the diff pack {P['old'].rsplit('@', 1)[1]} → {P['new'].rsplit('@', 1)[1]}",
             f"{p['diff']:.2f}", ", ".join(f"{r['diff']:.2f}" for r in runs)],
        ], "lrl"))
        w("")
        w(f"How measured: wall time of `baleen publish DIR --app {APP} --package NAME --version V "
          f"--channel {CHANNEL} …` (the command zips the tree, uploads it and returns once the release "
          f"is stored, signed and in the channel's index) against `zip -r -q out.zip .` in the same "
          f"tree, files in the page cache. Each run starts a new server on an empty data dir and "
          f"publishes {P['old']} and then {P['new'].rsplit('@', 1)[1]} to it; the zips run before "
          f"or after the server, in turns. {len(runs)} run(s). The pack times are from the publish "
          f"returning until `GET /v1/packs/NAME/V.bpk` answered (the background build, or the "
          f"request's own), then until `GET /v1/packs/NAME/OLD..V.bpk` answered. "
          f"Goal ≤ {GOAL_PUBLISH}× for {P['new']}: {yes(p['ratio_new'] <= GOAL_PUBLISH)}.\n")

    if "diff" in R:
        w("## 4. Diff pack bytes\n")
        rows = []
        for d in R["diff"]:
            rows.append([f"{d['old']} → {d['new'].rsplit('@', 1)[1]}{' (patch)' if d['patch'] else ''}",
                         fmt_bytes(d["pack"]), fmt_bytes(d["overhead"]), fmt_bytes(d["zip_new"]),
                         fmt_ratio(d["ratio_zip"]), fmt_bytes(d["patch_from"]),
                         fmt_ratio(d["ratio_lower"])])
        rows.append(["**median**", "", "", "", fmt_ratio(s["diff_median_zip"]), "",
                     fmt_ratio(s["diff_median_lower"])])
        w(table(["pair", "diff pack bytes", "of which the container", "zip of new bytes",
                 "pack ÷ zip", "zstd --patch-from bytes", "pack ÷ patch-from"], rows))
        w("")
        w(f"How measured: every release published in version order; the diff pack is "
          f"`GET /v1/packs/NAME/OLD..NEW.bpk` (the compact container: two manifest digests, a varint "
          f"per patch or run of solid blobs, one solid zstd frame, per-file patches); the third column "
          f"is what is not compressed payload. Peers: `zip -r -q` (deflate, default level) of the new release, and the lower "
          f"bound `zstd -19 --long=27 --patch-from=old.tar new.tar` of whole tars made with "
          f"`tar --sort=name --mtime=@0 --owner=0 --group=0`. Goals: ≤ {GOAL_DIFF_PATCH}× of the zip "
          f"for each patch release ({yes(s['diff_patch_max'] <= GOAL_DIFF_PATCH)}), median ≤ "
          f"{GOAL_DIFF_MEDIAN}× ({yes(s['diff_median_zip'] <= GOAL_DIFF_MEDIAN)}), ≤ {GOAL_DIFF_LOWER}× "
          f"of the lower bound for each pair ({yes(s['diff_lower_max'] <= GOAL_DIFF_LOWER)}).\n")

        w("## 5. Full pack bytes\n")
        rows = []
        for f in R["full"]:
            rows.append([f["release"], f"{f['files']} / {f['bytes'] / 1e6:.1f} MB", fmt_bytes(f["pack"]),
                         fmt_bytes(f["zip"]), fmt_ratio(f["ratio_zip"]), fmt_bytes(f["tar_zstd"]),
                         fmt_ratio(f["ratio_zstd"])])
        rows.append(["**median**", "", "", "", fmt_ratio(s["full_median"]), "",
                     fmt_ratio(median([f["ratio_zstd"] for f in R["full"]]))])
        w(table(["release", "files / bytes", "full pack bytes", "zip bytes", "pack ÷ zip",
                 "tar \\| zstd -19 --long=27 bytes", "pack ÷ tar.zst"], rows))
        w("")
        w(f"How measured: `GET /v1/packs/NAME/V.bpk` of every release against `zip -r -q` (deflate, "
          f"default level) of the same tree, with `tar --sort=name … | zstd -19 --long=27` as a "
          f"reference. Goal ≤ {GOAL_FULL}× of the zip for each release: {yes(s['full_max'] <= GOAL_FULL)}.\n")
    return "\n".join(out)


def summary_text(ctx: Ctx, s: dict) -> str:
    rows = goals(ctx, s)
    widths = [max(len(str(r[i])) for r in rows + [("benchmark", "baleen", "peer", "ratio", "goal", "")])
              for i in range(5)]
    lines = []
    head = ("benchmark", "baleen", "peer", "ratio", "goal")
    lines.append("  ".join(h.ljust(widths[i]) for i, h in enumerate(head)) + "  result")
    for r in rows:
        lines.append("  ".join(str(r[i]).ljust(widths[i]) for i in range(5)) + ("  met" if r[5] else "  MISSED"))
    return "\n".join(lines)


# --- main ------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=MODES, default="full")
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--baleen", required=True)
    ap.add_argument("--webapps", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--out", type=Path, help="Markdown report to write (default: none)")
    ap.add_argument("--results", type=Path, help="raw results as JSON")
    ap.add_argument("--command", default="scripts/bench")
    ap.add_argument("--started", type=float, default=time.time())
    ap.add_argument("--setup-secs", type=float, default=0.0)
    ap.add_argument("--phases", default="sizes,publish,throughput")
    args = ap.parse_args()

    def on_term(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_term)

    mode = MODES[args.mode]
    if "BENCH_PATIENCE" not in os.environ:
        PATIENCE.left = 360.0 if mode.name == "full" else 60.0
    apps = read_lock(args.root / "scripts" / "webapps.lock", args.webapps)
    needed = set(mode.apps) | {PUBLISH_APP_NAME}
    for app in needed:
        for rel in apps.get(app, []):
            if not rel.dir.is_dir():
                raise BenchError(f"{rel.dir} is missing: run scripts/fetch-webapps.sh")
    procs = Procs(args.work / "pids")
    ctx = Ctx(mode, args.root, Path(__file__).resolve().parent, args.baleen, args.work, procs, apps)
    info = machine_info(args.root)
    phases = args.phases.split(",")
    try:
        if "sizes" in phases:
            phase_sizes(ctx)
        if "publish" in phases:
            phase_publish(ctx)
        if "throughput" in phases:
            if "sizes" not in phases:
                raise BenchError("the throughput phase serves the data of the sizes phase")
            phase_throughput(ctx)
    finally:
        procs.stop_all()
    s = summarize(ctx)
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps({"mode": mode.name, "machine": info, "results": ctx.results,
                                            "summary": s}, indent=2, default=str))
    report = render(ctx, info, args, s)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
        log(f"wrote {args.out}")
    print(summary_text(ctx, s))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        log(f"ERROR: {e}")
        sys.exit(1)
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
