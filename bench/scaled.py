#!/usr/bin/env python3
"""Replicas on S3 and PostgreSQL (issue 10, item 9): index and blob throughput of two
`baleen serve --config scaled.toml` replicas sharing one Garage bucket and one PostgreSQL database,
and the publish of pdfjs-dist to them, each against the embedded default (`baleen serve`, files +
SQLite) measured in the same run on the same machine. Rendered as the
`## Replicas on S3 and PostgreSQL` section of BENCHMARKS.md. Standard library only.

Usage: bench/scaled.py [--quick] --baleen BIN --webapps DIR --work DIR [--results JSON]
                       [--command CMD] OUT
       bench/scaled.py --rerender JSON OUT   (the section again from the results --results saved)
--baleen is a release `baleen`, --webapps the cache of scripts/fetch-webapps.sh (pdfjs-dist, its two
pinned releases, is what is published); `wrk` must be on PATH. The summary goes to stdout, the
section to OUT. --quick: 2 throughput runs of 3 s, 1 publish run.

Services: Garage through scripts/garage (built once with `scripts/garage build` if missing, about
15 minutes on 2 cores, said before it starts) and PostgreSQL through scripts/postgres (`install`
adds Debian's package if missing); both are started in the work dir and stopped on exit, as are the
servers, by process id. The replicas are set up as server/tests/replicas.rs does: one signing key
generated in the first data dir and copied into the second, an admin token made with
`baleen token create --meta URL`, `scaled.toml` naming the bucket and the database, the S3 endpoint
and credentials in the environment.

Three setups, all running for the whole benchmark (idle while another is measured):
  embedded       one `baleen serve --data-dir DIR` (blobs in files, metadata in SQLite): the peer;
  two replicas   replicas A and B on Garage + PostgreSQL;
  one replica    replica A alone (B idle), to tell the engines' cost from the second process's.

1. Throughput. Each setup gets the same releases (a 2 MiB random file as a release of its own, and
   pdfjs-dist's older pinned release); once every process is idle, wrk measures the signed index
   (`GET /v1/apps/bench/channels/production/index`, 64 connections) and the 2 MiB blob
   (`GET /v1/blobs/{sha256}`, 16 connections). The load is always two wrk processes started at
   once, each `-t1` with half the connections: both at the one server (embedded, one replica) or one
   at each replica (two replicas), as a layer-4 balancer or DNS round robin spreads devices, each
   keeping its connection to one replica. No proxy in front: on these shared CPUs a proxy would be
   one more busy process charged to the replicas. Requests/s add up over the two wrk processes;
   the latency percentiles shown are the larger of the two processes' (an upper bound of the
   combined one). Runs take turns between setups; a run during which other processes took over 10 %
   of the CPUs is measured again, as in bench/bench.py. The CPU time each setup's processes took
   (baleen, Garage, PostgreSQL, from /proc) is shown per answer.

2. Publish. Per run and setup, a new package: pdfjs-dist's older pinned release, then its newer one,
   each file of both trees with the same run-specific comment appended, so that every run stores
   the same new blobs as a fresh store would (all files of the first release; the 103 files the
   newer release changed) on servers that keep running. `baleen publish … --channel production` to
   the embedded server or to replica A is timed until it returns; then `HEAD` on the full pack and
   the diff pack, every 100 ms on every server of the setup (A and B), until each is final
   (`Cache-Control: … immutable`); "servable" is the first 200, fast or final. The first release's
   own packs are waited for, and every process of the setup is idle, before the newer one is
   published. Medians over the runs; ratios two replicas ÷ embedded.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import http.client
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench as B  # noqa: E402  (the server wrapper, the process registry, CPU watching, tables)

ROOT = Path(__file__).resolve().parent.parent
APP, CHANNEL = B.APP, B.CHANNEL
PUBLISH_APP = "pdfjs-dist"
BLOB_SIZE = 2 * 1024 * 1024
POLL_SECS = 0.1
PACK_LIMIT_SECS = 600.0  # a pack not final by then fails the run
IDLE_LIMIT_SECS = 600.0
IDLE_SHARE = 0.05  # a setup is idle when its processes take under 5 % of one CPU over a second
TRAILER = "\n/* baleen bench/scaled.py run {n:04d} */\n"
GARAGE = ROOT / "scripts" / "garage"
POSTGRES = ROOT / "scripts" / "postgres"


def log(msg: str) -> None:
    print(f"bench/scaled: {msg}", file=sys.stderr, flush=True)


@dataclass
class Mode:
    name: str
    runs: int  # throughput runs per setup and target
    secs: int
    warmup_secs: int
    publish_runs: int


MODES = {"full": Mode("full", 5, 10, 3, 3), "quick": Mode("quick", 2, 3, 1, 1)}
TARGETS = {"index": 64, "blob": 16}  # connections in all, split over the two wrk processes


# --- services ----------------------------------------------------------------------------------


def ensure_services() -> dict:
    """Garage built and PostgreSQL installed, as scripts/test would; returns their versions."""
    found = subprocess.run([str(GARAGE), "path"], capture_output=True, text=True)
    if found.returncode != 0:
        log("Garage is not built: building it once with `scripts/garage build` (cached under "
            "~/.cache/baleen/garage; several minutes on 2 cores, up to 15)")
        subprocess.run(["nice", str(GARAGE), "build"], check=True, stdout=subprocess.DEVNULL,
                       timeout=3600)
        found = subprocess.run([str(GARAGE), "path"], capture_output=True, text=True, check=True)
    garage_bin = found.stdout.strip()
    pg = subprocess.run([str(POSTGRES), "path"], capture_output=True, text=True)
    if pg.returncode != 0:
        log("PostgreSQL is not installed: `scripts/postgres install` (Debian's package, once)")
        pg = subprocess.run([str(POSTGRES), "install"], capture_output=True, text=True, check=True,
                            timeout=1800)
    pg_bin = pg.stdout.strip().splitlines()[-1]

    def version(argv: list[str]) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return "?"
        m = re.search(r"(\d+\.\d+(?:\.\d+)?)", out.stdout + out.stderr)
        return m.group(1) if m else "?"

    try:
        line = subprocess.run([garage_bin, "--version"], capture_output=True, text=True,
                              timeout=10).stdout
        m = re.search(r"\[features: ([^\]]*)\]", line)
        features = m.group(1) if m else "?"
    except (OSError, subprocess.TimeoutExpired):
        features = "?"
    return {"garage": version([garage_bin, "--version"]), "garage_features": features,
            "postgres": version([f"{pg_bin}/postgres", "--version"]),
            "wrk": version(["wrk", "-v"])}


class ScriptService:
    """A throwaway Garage or PostgreSQL through its script; `stop` is the script's own."""

    def __init__(self, script: Path, dir: Path):
        self.script, self.dir = script, dir
        self.env: dict[str, str] = {}
        # A start can fail on a machine busy with other work (a node that could not spawn its
        # threads): tried up to three times.
        for attempt in range(1, 4):
            try:
                out = subprocess.run([str(script), "start", str(dir)], capture_output=True,
                                     text=True, timeout=300)
            except BaseException:  # stopped meanwhile: leave nothing running
                self.stop()
                raise
            if out.returncode == 0:
                break
            self.stop()
            if attempt == 3:
                raise B.BenchError(f"{script.name} start: {out.stderr[-2000:]}")
            log(f"{script.name} start failed (attempt {attempt}), trying again: "
                f"{out.stderr.strip().splitlines()[-1][-300:] if out.stderr.strip() else ''}")
        for line in out.stdout.splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                self.env[k] = v

    def stop(self) -> None:
        subprocess.run([str(self.script), "stop", str(self.dir)], capture_output=True, timeout=120)


# --- servers -----------------------------------------------------------------------------------


class Replica(B.Baleen):
    """`baleen serve --config scaled.toml` with its own data dir (holding only the shared key)."""

    def __init__(self, ctx, data: Path, name: str, config: Path, env: dict, token: str):
        self.ctx, self.data, self.name, self.token = ctx, data, name, token
        self.serve(["--config", str(config)], env, 60)


@dataclass
class Setup:
    name: str
    servers: list  # the servers devices reach; servers[0] takes the publishes
    garage: ScriptService | None = None
    postgres: ScriptService | None = None
    shared: bool = True  # the servers share one store (False: each its own, a control)

    def parts(self) -> dict[str, list[int]]:
        """Process ids whose CPU time (with their children) is this setup's, by part."""
        parts = {"baleen": [s.proc.pid for s in self.servers]}
        if self.garage:
            parts["Garage"] = [int(self.garage.env["GARAGE_PID"])]
        if self.postgres:
            parts["PostgreSQL"] = [int(self.postgres.env["PG_PID"])]
        return parts


def ticks(parts: dict[str, list[int]]) -> dict[str, int]:
    return {k: sum(B.tree_ticks(p) for p in pids) for k, pids in parts.items()}


def extra_pids(setups: list[Setup]) -> list[int]:
    """Our processes that are not our children: Garage and PostgreSQL (daemons)."""
    out = []
    for s in setups:
        for k, pids in s.parts().items():
            if k != "baleen":
                out += pids
    return out


def wait_idle(setups: list[Setup], what: str, limit: float = IDLE_LIMIT_SECS) -> float:
    """Waits until every process of `setups` is idle (background pack builds, Garage's own work
    done); returns the seconds waited."""
    hz = os.sysconf("SC_CLK_TCK")
    parts: dict[str, list[int]] = {}
    for s in setups:
        for k, pids in s.parts().items():
            parts.setdefault(k, []).extend(pids)
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        a = sum(ticks(parts).values())
        time.sleep(1.0)
        if sum(ticks(parts).values()) - a <= IDLE_SHARE * hz:
            return time.monotonic() - t0
    log(f"{what}: still busy after {limit:.0f} s; going on")
    return time.monotonic() - t0


class Watch(B.CpuWatch):
    """bench.CpuWatch, counting Garage and PostgreSQL (daemons, not our children) as ours."""

    def __init__(self, procs: B.Procs, extra: list[int]):
        super().__init__(procs)
        self.extra = extra

    def ours(self) -> float:
        return super().ours() + sum(B.tree_ticks(p) for p in self.extra) / os.sysconf("SC_CLK_TCK")


def undisturbed(ctx: "Ctx", what: str, fn):
    """bench.undisturbed with Watch: fn() again while other processes took over DISTURBED."""
    share = 0.0
    for attempt in range(1, B.TRIES + 1):
        B.wait_quiet(what, limit=B.RUN_QUIET_WAIT, quiet=True)
        t0 = time.monotonic()
        with Watch(ctx.procs, ctx.extra) as watch:
            result = fn()
        share = watch.share
        if share <= B.DISTURBED:
            break
        again = attempt < B.TRIES and B.PATIENCE.left > 0
        log(f"  {what}: other processes took {share:.0%} of the CPUs meanwhile; "
            + ("measuring again" if again else "keeping it, flagged"))
        if not again:
            break
        ctx.results["repeats"] = ctx.results.get("repeats", 0) + 1
        B.PATIENCE.spend(time.monotonic() - t0)
    return result, share


@dataclass
class Ctx:
    mode: Mode
    bin: str
    work: Path
    procs: B.Procs
    extra: list[int] = field(default_factory=list)
    results: dict = field(default_factory=dict)


EMBEDDED_4 = "embedded, 4 worker threads"
EMBEDDED_2 = "two embedded servers"


def start_embedded(ctx: Ctx) -> Setup:
    return Setup("embedded", [B.Baleen(ctx, ctx.work / "embedded", "embedded")])


def start_controls(ctx: Ctx, setups: list) -> tuple[Setup, Setup]:
    """Two controls for the index, each embedded (files + SQLite): one server with 4 tokio worker
    threads (TOKIO_WORKER_THREADS; the default is one per CPU), as many as two replicas have
    together; and two servers, each with its own data dir, as many processes as two replicas."""
    saved = os.environ.get("TOKIO_WORKER_THREADS")
    os.environ["TOKIO_WORKER_THREADS"] = "4"
    try:
        emb4 = Setup(EMBEDDED_4, [B.Baleen(ctx, ctx.work / "embedded-4", EMBEDDED_4)])
    finally:
        if saved is None:
            os.environ.pop("TOKIO_WORKER_THREADS")
        else:
            os.environ["TOKIO_WORKER_THREADS"] = saved
    setups.append(emb4)
    two = Setup(EMBEDDED_2, [], shared=False)
    setups.append(two)
    for n in ("x", "y"):
        two.servers.append(B.Baleen(ctx, ctx.work / f"embedded-{n}", f"embedded {n}"))
    return emb4, two


def start_scaled(ctx: Ctx) -> Setup:
    setup = Setup("two replicas", [])
    log("starting Garage (scripts/garage start) and PostgreSQL (scripts/postgres start)")
    setup.garage = ScriptService(GARAGE, ctx.work / "garage")
    try:
        setup.postgres = ScriptService(POSTGRES, ctx.work / "postgres")
    except BaseException:
        setup.garage.stop()
        raise
    try:
        url = setup.postgres.env["BALEEN_PG_URL"]
        bucket = setup.garage.env.get("BALEEN_S3_BUCKET", "baleen")
        config = ctx.work / "scaled.toml"
        config.write_text(f'[storage]\nblobs = "s3://{bucket}"\nmeta = "{url}"\n')
        data_a, data_b = ctx.work / "replica-a", ctx.work / "replica-b"
        ctx.procs.run([ctx.bin, "keys", "generate", "--dir", str(data_a / "keys")], "baleen keys")
        (data_b / "keys").mkdir(parents=True)
        for f in (data_a / "keys").iterdir():
            shutil.copy2(f, data_b / "keys" / f.name)
        token = ctx.procs.run([ctx.bin, "token", "create", "--meta", url, "--name", "bench",
                               "--scope", "admin"], "baleen token").stdout.decode().strip()
        if not token.startswith("baleen_"):
            raise B.BenchError(f"baleen token create printed {token!r}")
        env = {k: v for k, v in setup.garage.env.items() if not k.endswith("_PID")}
        for name, data in (("replica A", data_a), ("replica B", data_b)):
            setup.servers.append(Replica(ctx, data, name, config, env, token))
        if (data_a / "meta.sqlite3").exists():
            raise B.BenchError("replica A keeps metadata in its data dir: not on PostgreSQL")
    except BaseException:
        stop_setup(ctx, setup)
        raise
    return setup


def autogroups(setup: Setup) -> dict:
    """Which scheduling autogroup this script, Garage and PostgreSQL are in."""
    def group(pid: int | str) -> str:
        try:
            return Path(f"/proc/{pid}/autogroup").read_text().split()[0]
        except (OSError, IndexError):
            return "?"
    try:
        enabled = Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        enabled = False
    groups = {"this script": group("self")}
    for k, pids in setup.parts().items():
        if k != "baleen":
            groups[k] = group(pids[0])
    return {"enabled": enabled, "groups": groups}


def stop_setup(ctx: Ctx, setup: Setup) -> None:
    for s in setup.servers:
        try:
            s.stop()
        except Exception as e:  # keep stopping the others
            log(f"stopping {s.name}: {e}")
    for svc in (setup.garage, setup.postgres):
        if svc:
            try:
                svc.stop()
            except Exception as e:
                log(f"stopping {svc.script.name}: {e}")


# --- 1. throughput -----------------------------------------------------------------------------


def wrk_pair(ctx: Ctx, urls: list[str], connections: int, secs: int, body: int) -> dict:
    """Two wrk processes at once, `-t1` and half the connections each, one per URL."""
    lua = str(ROOT / "bench" / "wrk-report.lua")
    each = connections // len(urls)
    # Nothing else is waited for meanwhile: the children's CPU time that grows is wrk's.
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    ps = [ctx.procs.start(["wrk", "-t1", f"-c{each}", f"-d{secs}s", "--timeout", "5s", "-s", lua, u],
                          "wrk", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          stdin=subprocess.DEVNULL) for u in urls]
    reports = []
    try:
        for p, u in zip(ps, urls):
            out, err = p.communicate(timeout=secs + 60)
            text = out.decode(errors="replace")
            m = re.search(r"^BENCH (\{.*\})$", text, re.M)
            if p.returncode != 0 or not m:
                raise B.BenchError(f"wrk on {u} printed no report (exit {p.returncode}):\n{text}"
                                   f"{err.decode(errors='replace')}")
            r = json.loads(m.group(1))
            if r["requests"] == 0:
                raise B.BenchError(f"wrk got no answer from {u}:\n{text}")
            if r["status_errors"]:
                raise B.BenchError(f"{u}: {r['status_errors']} of {r['requests']} answers were not "
                                   f"2xx/3xx:\n{text}")
            if r["bytes"] < r["requests"] * body:
                raise B.BenchError(f"{u}: {r['bytes']} bytes for {r['requests']} answers of a "
                                   f"{body}-byte body: not every answer was a full 200")
            reports.append(r)
    finally:
        for p in ps:
            if p.poll() is None:
                p.kill()
                p.wait()
            ctx.procs.forget(p)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    rps = sum(r["requests"] / (r["duration_us"] / 1e6) for r in reports)
    errors = sum(r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"]
                 for r in reports)
    return {"requests": sum(r["requests"] for r in reports), "rps": rps, "mbps": rps * body / 1e6,
            "p50_ms": max(r["p50_us"] for r in reports) / 1e3,
            "p99_ms": max(r["p99_us"] for r in reports) / 1e3,
            "per_process_rps": [r["requests"] / (r["duration_us"] / 1e6) for r in reports],
            "socket_errors": errors,
            "wrk_cpu_us": wrk_cpu / max(sum(r["requests"] for r in reports), 1) * 1e6}


def seed(ctx: Ctx, setup: Setup, blob_tree: Path, old: B.Release) -> dict:
    """The releases every setup serves during the throughput runs: the blob's and pdfjs-dist's
    older release (its publish, into an empty store, timed once)."""
    B.warm_page_cache(old.dir)
    out = {}
    for srv in setup.servers[:1] if setup.shared else setup.servers:
        srv.publish(B.Release("blob2m", "1.0.0", blob_tree), entry="blob.bin")
        secs, _ = srv.publish(old)
        log(f"  {srv.name}: first publish of {old.key} into an empty store: {secs:.2f} s")
        out.setdefault("first_publish_secs", secs)
    return out


def phase_throughput(ctx: Ctx, emb: Setup, emb4: Setup, emb2: Setup, scaled: Setup,
                     old: B.Release) -> None:
    log("1. throughput: the signed index and a 2 MiB blob, embedded against the replicas")
    blob_tree = ctx.work / "blob-release"
    blob_tree.mkdir(exist_ok=True)
    blob = os.urandom(BLOB_SIZE)
    (blob_tree / "blob.bin").write_bytes(blob)
    digest = hashlib.sha256(blob).hexdigest()
    ctx.results["seed"] = {s.name: seed(ctx, s, blob_tree, old) for s in (emb, emb4, emb2, scaled)}

    index_path = f"/v1/apps/{APP}/channels/{CHANNEL}/index"
    a, b = scaled.servers
    # B serves what was published on A, the same signed bytes.
    deadline = time.monotonic() + 10
    while True:
        sa, ia = B.http_get(a.url + index_path)
        sb, ib = B.http_get(b.url + index_path)
        if sa == 200 and ia == ib:
            break
        if time.monotonic() > deadline:
            raise B.BenchError(f"replica B does not serve A's index: {sa} {sb}, {len(ia)} and {len(ib)} bytes")
        time.sleep(0.1)
    indexes = {a.url: ia, b.url: ib}  # by server: the controls' servers sign with keys of their own
    for srv in emb.servers + emb4.servers + emb2.servers:
        status, indexes[srv.url] = B.http_get(srv.url + index_path)
        if status != 200:
            raise B.BenchError(f"{srv.name} index: {status}")
    if len({len(x) for x in indexes.values()}) != 1:
        raise B.BenchError(f"the index differs in size between setups: {[len(x) for x in indexes.values()]}")
    paths = {"index": index_path, "blob": f"/v1/blobs/{digest}"}
    # target -> setup name -> (URLs of the two wrk processes, the setup whose processes' CPU
    # time counts); the embedded server with 4 worker threads only for the index.
    configs = {target: {
        "embedded": ([emb.servers[0].url] * 2, emb),
        **({emb4.name: ([emb4.servers[0].url] * 2, emb4),
            emb2.name: ([x.url for x in emb2.servers], emb2)} if target == "index" else {}),
        "one replica": ([a.url] * 2, scaled),
        "two replicas": ([a.url, b.url], scaled),
    } for target in TARGETS}

    def body(target: str, url: str) -> bytes:
        return indexes[url] if target == "index" else blob

    for target in TARGETS:
        for name, (urls, setup) in configs[target].items():
            for u in set(urls):
                status, got = B.http_get(u + paths[target])
                if status != 200 or got != body(target, u):
                    raise B.BenchError(f"{u}{paths[target]}: {status}, {len(got)} bytes, not the "
                                       f"{len(body(target, u))} expected")
    log(f"  index: {len(ia):,} bytes")
    ctx.results["throughput_idle_wait"] = wait_idle([emb, emb4, emb2, scaled], "throughput")
    ctx.results["throughput_busy"] = B.wait_quiet("throughput", limit=B.QUIET_WAIT)
    hz = os.sysconf("SC_CLK_TCK")
    for target, conns in TARGETS.items():
        order = list(configs[target])
        runs: dict[str, list] = {n: [] for n in order}
        for name in order:  # warm-up
            urls, setup = configs[target][name]
            wrk_pair(ctx, [u + paths[target] for u in urls], conns, ctx.mode.warmup_secs,
                     len(body(target, urls[0])))
        for i in range(ctx.mode.runs):
            for name in order[i % len(order):] + order[:i % len(order)]:
                urls, setup = configs[target][name]
                size = len(body(target, urls[0]))
                parts = setup.parts()

                def one():
                    before = ticks(parts)
                    load = wrk_pair(ctx, [u + paths[target] for u in urls], conns, ctx.mode.secs, size)
                    after = ticks(parts)
                    load["cpu_us"] = {k: (after[k] - before[k]) / hz / max(load["requests"], 1) * 1e6
                                      for k in parts}
                    return load

                load, share = undisturbed(ctx, f"{target} {name} run {i + 1}", one)
                load["others"] = share
                runs[name].append(load)
                log(f"  {target} {name} run {i + 1}: {load['rps']:,.0f} req/s, {load['mbps']:,.1f} MB/s, "
                    f"p50/p99 {load['p50_ms']:.2f}/{load['p99_ms']:.2f} ms, CPU µs/answer "
                    + " ".join(f"{k} {v:.1f}" for k, v in load["cpu_us"].items())
                    + f", wrk {load['wrk_cpu_us']:.1f} (others {share:.0%})")
        ctx.results[target] = {"connections": conns, "size": len(body(target, a.url)),
                               "size_scaled": len(body(target, a.url)),
                               "secs": ctx.mode.secs, "runs": runs}


# --- 2. publish --------------------------------------------------------------------------------


def marked_tree(src: Path, dst: Path, n: int) -> None:
    """A copy of `src` with the run's comment appended to every file (new blobs every run)."""
    trailer = TRAILER.format(n=n).encode()
    if dst.exists():
        shutil.rmtree(dst)
    for p in sorted(src.rglob("*")):
        if p.is_file():
            out = dst / p.relative_to(src)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(p.read_bytes() + trailer)


class Poller(threading.Thread):
    """HEAD on one pack of one server every POLL_SECS until it is final: when it was first
    servable (200, fast or final) and when final, from `t0`."""

    def __init__(self, url: str, path: str, t0: float, limit: float):
        super().__init__(daemon=True)
        self.url, self.path, self.t0, self.limit = url, path, t0, limit
        self.servable: float | None = None
        self.first_stage = ""
        self.final: float | None = None
        self.not_ready = 0
        self.longest = 0.0
        self.error = ""

    def run(self) -> None:
        host = urllib.parse.urlsplit(self.url)
        conn = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
        try:
            while time.perf_counter() - self.t0 < self.limit:
                sent = time.perf_counter()
                try:
                    conn.request("HEAD", self.path)
                    r = conn.getresponse()
                    r.read()
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
                    time.sleep(POLL_SECS)
                    continue
                got = time.perf_counter()
                self.longest = max(self.longest, got - sent)
                if r.status == 200:
                    final = "immutable" in (r.getheader("cache-control") or "")
                    if self.servable is None:
                        self.servable, self.first_stage = got - self.t0, "final" if final else "fast"
                    if final:
                        self.final = got - self.t0
                        return
                elif r.status == 503:
                    self.not_ready += 1
                else:
                    self.error = f"HEAD {self.path}: {r.status}"
                    return
                time.sleep(POLL_SECS)
            self.error = f"{self.path}: not final within {self.limit:.0f} s"
        finally:
            conn.close()

    def result(self) -> dict:
        return {"servable": self.servable, "stage": self.first_stage, "final": self.final,
                "not_ready": self.not_ready, "longest": self.longest}


def timeline(setup: Setup, packs: dict[str, str], t0: float) -> dict:
    """Polls every pack on every server of the setup until final everywhere."""
    pollers = {(s.name, k): Poller(s.url, p, t0, PACK_LIMIT_SECS)
               for s in setup.servers for k, p in packs.items()}
    for p in pollers.values():
        p.start()
    for p in pollers.values():
        p.join(PACK_LIMIT_SECS + 120)
    errors = [p.error for p in pollers.values() if p.error]
    if errors:
        raise B.BenchError("; ".join(errors))
    out: dict[str, dict] = {}
    for (server, pack), p in pollers.items():
        out.setdefault(pack, {})[server] = p.result()
    return out


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def next(self) -> int:
        self.n += 1
        return self.n


def publish_run(ctx: Ctx, setup: Setup, old: B.Release, new: B.Release, n: int) -> dict:
    """A new package pdfjs-dist-N: the older release, its pack final everywhere, then the newer
    one, timed until it returns and until its packs are servable and final on every server."""
    package = f"{PUBLISH_APP}-{n}"
    trees = ctx.work / "trees"
    old_tree, new_tree = trees / f"old-{n}", trees / f"new-{n}"
    marked_tree(old.dir, old_tree, n)
    marked_tree(new.dir, new_tree, n)
    srv = setup.servers[0]
    try:
        wait_idle([setup], f"{setup.name} before publishing {package}@{old.version}")
        secs_old, _ = srv.publish(B.Release(PUBLISH_APP, old.version, old_tree), package=package)
        t0 = time.perf_counter()
        first = timeline(setup, {"full": f"/v1/packs/{package}/{old.version}.bpk"}, t0)
        wait_idle([setup], f"{setup.name} before publishing {package}@{new.version}")
        t1 = time.perf_counter()
        secs_new, _ = srv.publish(B.Release(PUBLISH_APP, new.version, new_tree), package=package)
        t0 = time.perf_counter()
        packs = {"full": f"/v1/packs/{package}/{new.version}.bpk",
                 "diff": f"/v1/packs/{package}/{old.version}..{new.version}.bpk"}
        tl = timeline(setup, packs, t0)
        settled = time.perf_counter() - t1
    finally:
        shutil.rmtree(old_tree, ignore_errors=True)
        shutil.rmtree(new_tree, ignore_errors=True)
    return {"package": package, "publish_old": secs_old, "publish_new": secs_new,
            "old_packs": first, "packs": tl, "publish_to_all_final": settled}


def derive(setup: Setup, run: dict) -> dict:
    """The figures of one run: from the newer release's publish returning."""
    took = setup.servers[0].name
    tl = run["packs"]
    out = {"publish_old": run["publish_old"], "publish_new": run["publish_new"]}
    for pack in ("full", "diff"):
        out[f"{pack}_here"] = tl[pack][took]["servable"]
        out[f"{pack}_everywhere"] = max(v["servable"] for v in tl[pack].values())
        out[f"{pack}_final"] = max(v["final"] for v in tl[pack].values())
    out["both_here"] = max(out["full_here"], out["diff_here"])
    out["both_everywhere"] = max(out["full_everywhere"], out["diff_everywhere"])
    out["all_final"] = max(out["full_final"], out["diff_final"])
    out["old_full_here"] = run["old_packs"]["full"][took]["servable"]
    out["old_full_everywhere"] = max(v["servable"] for v in run["old_packs"]["full"].values())
    out["longest_wait"] = max(v["longest"] for p in tl.values() for v in p.values())
    out["not_ready"] = {s.name: sum(tl[p][s.name]["not_ready"] for p in tl) for s in setup.servers}
    return out


def phase_publish(ctx: Ctx, emb: Setup, scaled: Setup, old: B.Release, new: B.Release) -> None:
    log(f"2. publish: {old.key} then {new.version}, a new package per run and setup, "
        f"{ctx.mode.publish_runs} run(s)")
    for rel in (old, new):
        B.warm_page_cache(rel.dir)
    counter = Counter()
    runs: dict[str, list] = {emb.name: [], scaled.name: []}
    for i in range(ctx.mode.publish_runs):
        order = [emb, scaled] if i % 2 == 0 else [scaled, emb]
        for setup in order:
            run, share = undisturbed(ctx, f"publish {setup.name} run {i + 1}",
                                     lambda: publish_run(ctx, setup, old, new, counter.next()))
            run["derived"] = derive(setup, run)
            run["others"] = share
            d = run["derived"]
            log(f"  {setup.name} run {i + 1}: publish {d['publish_old']:.2f} s then "
                f"{d['publish_new']:.2f} s; packs servable here {d['both_here']:.2f} s, everywhere "
                f"{d['both_everywhere']:.2f} s, all final {d['all_final']:.2f} s (others {share:.0%})")
            runs[setup.name].append(run)
    files_old, bytes_old = B.tree_bytes(old.dir)
    files_new, bytes_new = B.tree_bytes(new.dir)
    changed = sum(1 for p in new.dir.rglob("*") if p.is_file() and (
        not (old.dir / p.relative_to(new.dir)).is_file()
        or (old.dir / p.relative_to(new.dir)).read_bytes() != p.read_bytes()))
    ctx.results["publish"] = {"old": old.key, "new": new.key, "runs": runs,
                              "old_files": files_old, "old_bytes": bytes_old,
                              "new_files": files_new, "new_bytes": bytes_new, "changed": changed}


# --- report ------------------------------------------------------------------------------------


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def summarize(R: dict) -> dict:
    s: dict = {}
    for target in TARGETS:
        if target not in R:
            continue
        s[target] = {name: {k: med([r[k] for r in runs])
                            for k in ("rps", "mbps", "p50_ms", "p99_ms", "wrk_cpu_us")}
                     for name, runs in R[target]["runs"].items()}
        for name, runs in R[target]["runs"].items():
            s[target][name]["cpu_us"] = {k: med([r["cpu_us"][k] for r in runs]) for k in runs[0]["cpu_us"]}
    if "publish" in R:
        s["publish"] = {}
        for name, runs in R["publish"]["runs"].items():
            keys = [k for k, v in runs[0]["derived"].items() if isinstance(v, float)]
            s["publish"][name] = {k: med([r["derived"][k] for r in runs]) for k in keys}
    return s


def cpu_fmt(us: float) -> str:
    return f"{us:,.1f}" if us < 100 else f"{us:,.0f}"


def ratio(a: float, b: float) -> str:
    return B.fmt_ratio(a / b) if b else "–"


def secs(x: float) -> str:
    return f"{x:.2f}"


def render(ctx: Ctx, info: dict, versions: dict, s: dict, command: str, elapsed: float,
           busy_before: float) -> str:
    R = ctx.results
    w: list[str] = []
    P = R["publish"]
    pe, ps = s["publish"]["embedded"], s["publish"]["two replicas"]
    w.append("## Replicas on S3 and PostgreSQL\n")
    w.append("Two `baleen serve --config scaled.toml` replicas sharing one Garage bucket and one "
             "PostgreSQL database (README, ARCHITECTURE \"Replicas\") against the embedded default, "
             "one `baleen serve` with its blobs in files and its metadata in SQLite, measured in the "
             "same run on the same machine: the signed index and a 2 MiB blob under wrk, and the "
             f"publish of {P['new']} until its packs are servable (issue 10, item 9).\n")
    alone = "bench/scaled.py --baleen target/release/baleen --webapps DIR --work DIR OUT"
    via = (f"`{command}` (step 5e: bench/scaled.py); alone: `{alone}`" if command != alone
           else f"`{alone}` (also step 5e of `scripts/bench`)")
    w.append(f"- Command: {via}; took {elapsed // 60:.0f} min {elapsed % 60:.0f} s, services "
             f"started and stopped included.")
    w.append(f"- Date: {R.get('date', '?')}; commit "
             f"`{info['commit']}`{' with uncommitted changes' if info['dirty'] else ''}; `baleen` "
             f"built with `cargo build --release`.")
    w.append(f"- Machine: {info['nproc']} CPUs ({info['cpu']}), {info['mem_gib']:.1f} GiB memory, "
             f"{info['os']}, Linux {info['kernel']}; {busy_before:.0%} busy with other work when the "
             f"run started.")
    w.append(f"- Everything shares these {info['nproc']} CPUs: the two wrk processes, the baleen "
             f"processes, Garage and PostgreSQL (and whatever else runs on the machine). Two "
             f"replicas here cannot add CPUs, only split the same ones; the figures show what the "
             f"S3 and PostgreSQL engines and a second process cost, not how replicas scale on "
             f"machines of their own.")
    ag = R.get("autogroups", {})
    if ag.get("enabled") and len(set(ag.get("groups", {}).values())) > 1:
        w.append(f"- The kernel's autogroup scheduling is on (`kernel.sched_autogroup_enabled`): a "
                 f"contended CPU is shared equally between sessions, then within each. Garage and "
                 f"PostgreSQL run in sessions of their own (their scripts detach them), the baleen "
                 f"servers and wrk in this script's; so while other work competes, the S3 and "
                 f"PostgreSQL side gets group shares the embedded server does not.")
    w.append(f"- Services: Garage {versions['garage']} (scripts/garage: one node, SQLite metadata, "
             f"replication factor 1, its default block compression; the cached binary's features: "
             f"{versions.get('garage_features', '?')}), PostgreSQL {versions['postgres']} "
             f"(scripts/postgres: Debian's package, `fsync=off`, `synchronous_commit=off`), both on "
             f"127.0.0.1; wrk {versions['wrk']}.")
    shares = [r.get("others", 0) for t in TARGETS if t in R for runs in R[t]["runs"].values() for r in runs]
    shares += [r.get("others", 0) for runs in P["runs"].values() for r in runs]
    if any(x > B.DISTURBED for x in shares):
        flagged = sum(x > B.DISTURBED for x in shares)
        w.append(f"- Caution: other work on the machine took more than {B.DISTURBED:.0%} of the CPUs "
                 f"during {flagged} of the {len(shares)} timed runs kept (median {med(shares):.0%}, up "
                 f"to {max(shares):.0%}), even after waiting and measuring again. Requests/s move "
                 f"with it (one setup's runs may meet a busier moment than another's); the CPU time "
                 f"per answer hardly does, and is the steadier comparison.")
    elif R.get("repeats"):
        w.append(f"- {R['repeats']} timed run(s) were measured again because other processes took "
                 f"over {B.DISTURBED:.0%} of the CPUs meanwhile.")
    w.append("")

    w.append("### Summary\n")
    rows = []
    if "index" in s:
        e, t = s["index"]["embedded"], s["index"]["two replicas"]
        rows.append(["index requests/s", f"{e['rps']:,.0f}", f"{t['rps']:,.0f}", ratio(t["rps"], e["rps"])])
        ce, ct = sum(e["cpu_us"].values()), sum(t["cpu_us"].values())
        rows.append(["… CPU µs per index answer, all the setup's processes", cpu_fmt(ce), cpu_fmt(ct),
                     ratio(ct, ce)])
        e, t = s["blob"]["embedded"], s["blob"]["two replicas"]
        rows.append(["2 MiB blob MB/s", f"{e['mbps']:,.0f}", f"{t['mbps']:,.0f}", ratio(t["mbps"], e["mbps"])])
        ce, ct = sum(e["cpu_us"].values()), sum(t["cpu_us"].values())
        rows.append(["… CPU µs per blob answer, all the setup's processes", cpu_fmt(ce), cpu_fmt(ct),
                     ratio(ct, ce)])
    rows.append([f"publish {P['new']}, s until it returns", secs(pe["publish_new"]),
                 secs(ps["publish_new"]), ratio(ps["publish_new"], pe["publish_new"])])
    rows.append(["… s until both its packs are servable on the server that took it",
                 secs(pe["both_here"]), secs(ps["both_here"]), ratio(ps["both_here"], pe["both_here"])])
    rows.append(["… s until both are servable on every replica", secs(pe["both_everywhere"]),
                 secs(ps["both_everywhere"]), ratio(ps["both_everywhere"], pe["both_everywhere"])])
    rows.append([f"publish {P['old']} as a package's first release (all files new), s",
                 secs(pe["publish_old"]), secs(ps["publish_old"]), ratio(ps["publish_old"], pe["publish_old"])])
    w.append(B.table(["benchmark (medians)", "embedded (files + SQLite)", "two replicas (S3 + PostgreSQL)",
                      "ratio replicas ÷ embedded"], rows))
    w.append("")

    for num, target, title in ((1, "index", "Index requests per second"),
                               (2, "blob", "2 MiB blob download throughput")):
        if target not in R:
            continue
        r = R[target]
        w.append(f"### {title}\n")
        rows = []
        for name, runs in r["runs"].items():
            m = s[target][name]
            cpu = m["cpu_us"]
            cpu_text = " / ".join(cpu_fmt(cpu[k]) if k in cpu else "–"
                                  for k in ("baleen", "Garage", "PostgreSQL"))
            rows.append([name, f"{m['rps']:,.0f}", f"{m['mbps']:,.1f}",
                         f"{m['p50_ms']:.2f} / {m['p99_ms']:.2f}",
                         ", ".join(f"{x['rps']:,.0f}" for x in runs), cpu_text,
                         cpu_fmt(m["wrk_cpu_us"]), str(sum(x["socket_errors"] for x in runs)),
                         f"{max(x.get('others', 0) for x in runs):.0%}"])
        pairs = [("two replicas", "embedded"), ("one replica", "embedded")]
        for control in (EMBEDDED_4, EMBEDDED_2):
            if control in s[target]:
                pairs.append((control, "embedded"))
        if EMBEDDED_2 in s[target]:
            pairs.append(("two replicas", EMBEDDED_2))
        for name, peer in pairs:
            t, e = s[target][name], s[target][peer]
            rows.append([f"**ratio {name} ÷ {peer}**", ratio(t["rps"], e["rps"]),
                         ratio(t["mbps"], e["mbps"]), "", "",
                         f"{ratio(sum(t['cpu_us'].values()), sum(e['cpu_us'].values()))} (all parts)",
                         ratio(t["wrk_cpu_us"], e["wrk_cpu_us"]), "", ""])
        w.append(B.table(["setup", "requests/s", "MB/s (body)", "latency p50 / p99 ms",
                          "runs, requests/s", "CPU µs per answer: baleen / Garage / PostgreSQL",
                          "wrk CPU µs per answer", "socket errors", "others' CPU share (max)"], rows,
                         "lrrrlrrrr"))
        w.append("")
        if target == "index":
            sizes = (f"{r['size']:,} bytes of signed JSON" if r["size"] == r["size_scaled"] else
                     f"{r['size']:,} bytes of signed JSON embedded, {r['size_scaled']:,} on the replicas")
            w.append(f"How measured: `GET /v1/apps/{APP}/channels/{CHANNEL}/index` ({sizes}, listing "
                     f"the blob's package and {P['old']}), {r['connections']} connections in all: two "
                     f"`wrk -t1 -c{r['connections'] // 2} -d{r['secs']}s` started at once, both at the "
                     f"one server (embedded; one replica, B idle) or one at each replica (two "
                     f"replicas), "
                     f"as a layer-4 balancer or DNS spreads devices over replicas, each device keeping "
                     f"its connection. No proxy in front: here it would be one more process on the same "
                     f"CPUs, charged to the replicas. Requests/s add up over the two wrk processes; "
                     f"the latencies are the larger of the two processes' percentiles (an upper bound "
                     f"of the combined percentile). {ctx.mode.runs} runs each after a "
                     f"{ctx.mode.warmup_secs} s warm-up, the setups taking turns; every answer a full "
                     f"200 (the run fails otherwise); servers with `RUST_LOG=warn`. CPU µs per answer: "
                     f"the CPU time the setup's processes took during the run (each with its children, "
                     f"from /proc), divided by the answers; wrk's the same from its resource usage. "
                     f"A run during which other processes took "
                     f"over {B.DISTURBED:.0%} of the CPUs is measured again (up to {B.TRIES} tries). "
                     f"Two controls, for the index only, files + SQLite like the embedded default: "
                     f"{EMBEDDED_4} (`TOKIO_WORKER_THREADS=4`; the default is one per CPU), as many "
                     f"async workers as the two replicas have together, and {EMBEDDED_2}, each with "
                     f"its own data dir holding the same releases and one wrk process at each, as "
                     f"many processes as the replicas.\n")
        else:
            w.append(f"How measured: `GET /v1/blobs/{{sha256}}` of a {BLOB_SIZE:,}-byte random "
                     f"(incompressible) file published in a release of its own, {r['connections']} "
                     f"connections in all (two `wrk -t1 -c{r['connections'] // 2}`), no "
                     f"`Accept-Encoding` (as devices ask for blobs); MB/s counts body bytes (10^6). "
                     f"Same setups, turns and checks as the index.\n")

    w.append(f"### Publish until servable\n")
    runs = P["runs"]
    rows = []

    def row(label: str, key: str) -> list[str]:
        e, t = pe[key], ps[key]
        return [label, secs(e), secs(t), ratio(t, e),
                ", ".join(secs(r["derived"][key]) for r in runs["embedded"]),
                ", ".join(secs(r["derived"][key]) for r in runs["two replicas"])]

    rows.append(row(f"publish {P['new']} ({P['changed']} of {P['new_files']} files new), s until "
                    f"it returns", "publish_new"))
    rows.append(row("full pack servable on the server that took the publish", "full_here"))
    rows.append(row(f"diff pack {P['old'].rsplit('@', 1)[1]} → {P['new'].rsplit('@', 1)[1]} "
                    f"servable there", "diff_here"))
    rows.append(row("full pack servable on every replica", "full_everywhere"))
    rows.append(row("diff pack servable on every replica", "diff_everywhere"))
    rows.append(row("both packs final (level 19) everywhere", "all_final"))
    rows.append(row(f"publish {P['old']} as the package's first release ({P['old_files']} files, "
                    f"all new), s", "publish_old"))
    rows.append(row("its full pack servable on the server that took it", "old_full_here"))
    rows.append(row("… on every replica", "old_full_everywhere"))
    w.append(B.table(["seconds (median), pack times from the publish returning", "embedded",
                      "two replicas", "ratio", "runs, embedded", "runs, two replicas"], rows, "lrrrll"))
    w.append("")
    shares = ", ".join(f"{r.get('others', 0):.0%}" for n in runs for r in runs[n])
    nr = [r["derived"]["not_ready"] for r in runs["two replicas"]]
    other = [k for k in nr[0] if k != "replica A"]
    seeded = R.get("seed", {})
    w.append(f"How measured: per run and setup a new package `{PUBLISH_APP}-N`: the tree of "
             f"{P['old']} ({P['old_files']} files, {P['old_bytes'] / 1e6:.1f} MB), then the tree of "
             f"{P['new']} ({P['new_files']} files, {P['new_bytes'] / 1e6:.1f} MB, {P['changed']} of "
             f"them changed), each file of both with the same run-numbered comment appended, so that "
             f"every run stores new blobs exactly as a fresh store would, on servers that keep "
             f"running; `baleen publish DIR --app {APP} --package {PUBLISH_APP}-N --version V "
             f"--channel {CHANNEL} …` to the embedded server or to replica A (the command zips the "
             f"tree, uploads it, and returns once the release is stored, signed and in the channel's "
             f"index). After each publish returns, `HEAD` on the full pack (and the diff pack) every "
             f"{POLL_SECS * 1000:.0f} ms on every server of the setup, until final there; servable "
             f"is the first 200 (a fast pack, zstd level 1, or the final one). Before each publish "
             f"every process of the setup is idle (the first release's packs built). "
             f"{len(runs['embedded'])} run(s) per setup, taking turns; others' CPU share per run: "
             f"{shares}. The other replica's `503` answers (not ready) per run: "
             f"{', '.join(str(x[other[0]]) for x in nr) if other else '–'}; longest single answer "
             f"while polling: {max(r['derived']['longest_wait'] for n in runs for r in runs[n]):.2f} s.")
    if seeded:
        w.append(f"Into empty stores, before the throughput runs (one publish each): {P['old']} took "
                 f"{seeded['embedded']['first_publish_secs']:.2f} s embedded, "
                 f"{seeded['two replicas']['first_publish_secs']:.2f} s on the replicas.")
    w.append("")

    # What stands out, from the figures above.
    notes = []
    if "index" in s:
        e, t, o = s["index"]["embedded"], s["index"]["two replicas"], s["index"]["one replica"]
        co, ce = sum(o["cpu_us"].values()), sum(e["cpu_us"].values())
        text = (f"The index is answered from memory on every setup (each replica reads the "
                f"channel's row from PostgreSQL at most once a second): one replica gives "
                f"{ratio(o['rps'], e['rps'])} of the embedded server's requests/s, at "
                f"{cpu_fmt(co)} µs of CPU per answer against {cpu_fmt(ce)}"
                + (", so the engines add nothing measurable to an index answer"
                   if abs(co / ce - 1) <= 0.15 else "")
                + f"; two replicas give {ratio(t['rps'], e['rps'])}.")
        f4, f2 = s["index"].get(EMBEDDED_4), s["index"].get(EMBEDDED_2)
        if f4 and f2:
            text += (f" The controls tell where that comes from: one embedded server with 4 "
                     f"worker threads gives {ratio(f4['rps'], e['rps'])} of the default's "
                     f"requests/s, two embedded servers {ratio(f2['rps'], e['rps'])}, and two "
                     f"replicas {ratio(t['rps'], f2['rps'])} of the latter")
            if t["rps"] > 1.15 * e["rps"] and 0.85 <= t["rps"] / f2["rps"] <= 1.15 \
                    and f4["rps"] < 1.15 * e["rps"]:
                text += (f": the gain comes from a second server process, whatever its engines, "
                         f"not from more worker threads. With two processes the CPU per answer falls "
                         f"on both sides (servers {cpu_fmt(sum(e['cpu_us'].values()))} → "
                         f"{cpu_fmt(sum(f2['cpu_us'].values()))} µs, wrk "
                         f"{cpu_fmt(e['wrk_cpu_us'])} → {cpu_fmt(f2['wrk_cpu_us'])} µs): with more "
                         f"busy threads than CPUs, each wakes up less often per answer (or spins "
                         f"less for work). Likely an effect of load generator and servers sharing "
                         f"2 CPUs, not capacity replicas add")
            text += "."
        notes.append(text)
    if "blob" in s:
        e, t, o = s["blob"]["embedded"], s["blob"]["two replicas"], s["blob"]["one replica"]
        c = t["cpu_us"]
        notes.append(f"A blob on S3 costs the setup {sum(c.values()):,.0f} µs of CPU per 2 MiB "
                     f"answer ({c.get('baleen', 0):,.0f} in baleen, {c.get('Garage', 0):,.0f} in "
                     f"Garage), against {sum(e['cpu_us'].values()):,.0f} µs embedded: the replica "
                     f"asks the bucket for the object's size (`HEAD`), then streams it (`GET`) "
                     f"through its HTTP client, and Garage reads, checks and sends it, all on the "
                     f"same CPUs (in production the bucket's side runs elsewhere; baleen's own share "
                     f"is {ratio(c.get('baleen', 0), sum(e['cpu_us'].values()))} of the embedded "
                     f"server's). One replica alone gives {ratio(o['mbps'], e['mbps'])} of the "
                     f"embedded server's MB/s, two {ratio(t['mbps'], e['mbps'])}.")
    if ps["both_here"] > 2 * pe["both_here"] + 0.5:
        notes.append(f"On the replica that took the publish, the packs were servable after "
                     f"{ps['both_here']:.1f} s against {pe['both_here']:.1f} s embedded (the full "
                     f"pack {ps['full_here']:.1f} s against {pe['full_here']:.1f} s), though the "
                     f"publish itself returned in {ps['publish_new']:.2f} s against "
                     f"{pe['publish_new']:.2f} s: the fast pack's build reads every blob it packs "
                     f"back from the bucket (16 at a time), where the embedded server reads "
                     f"files.")
    if ps["both_everywhere"] > ps["both_here"] + 1.0:
        notes.append(f"A fast pack lives only in the memory of the replica that built it "
                     f"(ARCHITECTURE, Replicas): the other replica answered `503` until the final "
                     f"pack was stored, so both packs were servable on every replica only after "
                     f"{ps['both_everywhere']:.1f} s, against {ps['both_here']:.1f} s on the replica "
                     f"that took the publish (embedded: {pe['both_here']:.1f} s). Behind a balancer, "
                     f"devices reaching the other replica in that window fall back to the blobs.")
    if notes:
        w.append("What stands out:\n")
        w += [f"- {n}" for n in notes]
        w.append("")
    return "\n".join(w)


def summary_text(s: dict) -> str:
    lines = []
    for target in TARGETS:
        if target in s:
            e = s[target]["embedded"]
            for name in ("one replica", "two replicas"):
                t = s[target][name]
                lines.append(f"{target:6} {name:13} {t['rps']:>10,.0f} req/s {t['mbps']:>9,.1f} MB/s  "
                             f"÷ embedded {e['rps']:,.0f} req/s: {ratio(t['rps'], e['rps'])}")
    if "publish" in s:
        e, t = s["publish"]["embedded"], s["publish"]["two replicas"]
        for k in ("publish_new", "both_here", "both_everywhere", "all_final", "publish_old"):
            lines.append(f"publish {k:16} embedded {e[k]:6.2f} s, two replicas {t[k]:6.2f} s: "
                         f"{ratio(t[k], e[k])}")
    return "\n".join(lines)


# --- main --------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 short throughput runs, 1 publish run")
    ap.add_argument("--baleen", type=Path)
    ap.add_argument("--webapps", type=Path)
    ap.add_argument("--work", type=Path)
    ap.add_argument("--results", type=Path, help="write the raw results here (JSON)")
    ap.add_argument("--rerender", type=Path, metavar="JSON",
                    help="measure nothing: render OUT again from the raw results --results saved")
    ap.add_argument("--command", default="bench/scaled.py --baleen target/release/baleen "
                    "--webapps DIR --work DIR OUT")
    ap.add_argument("out", type=Path)
    args = ap.parse_args()
    started = time.time()
    if args.rerender:
        saved = json.loads(args.rerender.read_text())
        ctx = Ctx(MODES[saved["mode"]], "", Path("."), B.Procs(None), results=saved["results"])
        s = summarize(ctx.results)
        args.out.write_text(render(ctx, saved["machine"], saved["versions"], s, saved["command"],
                                   saved["elapsed"], saved["busy_before"]))
        print(summary_text(s))
        print(args.out)
        return 0
    for flag in ("baleen", "webapps", "work"):
        if getattr(args, flag) is None:
            ap.error(f"--{flag} is needed to measure")

    def on_term(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_term)

    mode = MODES["quick" if args.quick else "full"]
    if "BENCH_PATIENCE" not in os.environ:
        B.PATIENCE.left = 360.0 if mode.name == "full" else 60.0
    for tool in ("wrk",):
        if shutil.which(tool) is None:
            raise B.BenchError(f"{tool} is not on PATH (scripts/bench installs it)")
    apps = B.read_lock(ROOT / "scripts" / "webapps.lock", args.webapps)
    if len(apps.get(PUBLISH_APP, [])) < 2:
        raise B.BenchError(f"scripts/webapps.lock pins fewer than two releases of {PUBLISH_APP}")
    old, new = apps[PUBLISH_APP][-2:]
    for rel in (old, new):
        if not rel.dir.is_dir():
            raise B.BenchError(f"{rel.dir} is missing: run scripts/fetch-webapps.sh {PUBLISH_APP}")
    work = args.work.resolve()
    marker = work / ".bench-scaled"
    if work.exists() and any(work.iterdir()) and not marker.exists():
        raise B.BenchError(f"{work} is not empty and not a work dir of bench/scaled.py")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    marker.touch()
    procs = B.Procs(None)
    ctx = Ctx(mode, str(args.baleen.resolve()), work, procs)
    versions = ensure_services()
    info = B.machine_info(ROOT)
    busy_before = B.cpu_busy(2.0)
    setups: list[Setup] = []
    try:
        log(f"starting the embedded server and two replicas ({mode.name} mode)")
        emb = start_embedded(ctx)
        setups.append(emb)
        emb4, emb2 = start_controls(ctx, setups)
        scaled = start_scaled(ctx)
        setups.append(scaled)
        ctx.extra = extra_pids(setups)
        ctx.results["autogroups"] = autogroups(scaled)
        phase_throughput(ctx, emb, emb4, emb2, scaled, old)
        phase_publish(ctx, emb, scaled, old, new)
    finally:
        for setup in reversed(setups):
            stop_setup(ctx, setup)
        procs.stop_all()
    s = summarize(ctx.results)
    elapsed = time.time() - started
    ctx.results["date"] = f"{datetime.datetime.fromtimestamp(started, datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps({"mode": mode.name, "command": args.command,
                                            "machine": info, "versions": versions,
                                            "busy_before": busy_before, "elapsed": elapsed,
                                            "results": ctx.results, "summary": s}, indent=1,
                                           default=str))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(ctx, info, versions, s, args.command, elapsed, busy_before))
    if not os.environ.get("BENCH_KEEP"):
        shutil.rmtree(work, ignore_errors=True)
    print(summary_text(s))
    print(args.out)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except B.BenchError as e:
        log(f"ERROR: {e}")
        sys.exit(1)
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
