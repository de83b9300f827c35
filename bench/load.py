#!/usr/bin/env python3
"""Many connections at once (issue 13, item 4): `baleen serve` holding 100, 1,000 and 10,000
concurrent keep-alive connections on loopback, each making a device's launch requests (the
signed index with `If-None-Match`, answered 304) and now and then a blob download, against nginx
serving the same bytes with the same load. Run through `scripts/load`, which installs wrk and
nginx, builds `baleen` and fetches the web app first. Standard library only.

Usage: bench/load.py --baleen BIN --webapps DIR [--quick] [--work DIR] [--results JSON] [OUT]

  release  reveal.js 6.0.1 from the npm registry (111 files) published to app `bench`, channel
           `production`; the blob is its file closest to 64 KiB.
  load     `wrk -t2 -cN --timeout 10s` with bench/load.lua: four index checks with the server's
           own ETag to one blob GET, every answer's status counted (304 and 200 expected, nothing
           else); each size 3 runs of 20 s per server (quick: 1 of 8 s), servers taking turns.
  held     the server's established connections (its side of each socket, from /proc/net/tcp),
           sampled every 0.2 s: the largest count shows every connection was open at once.
  memory   the server's resident set (nginx: master and workers), sampled the same way: the
           largest. Before the first run and after the last, baleen's resident set at rest.

Every 200 must be whole (the run fails otherwise). Answers shed with 503, other statuses, socket
errors and timeouts are counted: a size is held without error only with none of them and every
connection open at once. The process raises its own file-descriptor limit (the servers
and wrk inherit it).
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
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from console_pages import tree, zipped  # noqa: E402  (reveal.js 6.0.1 from the npm registry)
from index_scale import Procs, Server, nginx_start, wait_idle  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
APP, CHANNEL, PACKAGE = "bench", "production", "reveal"
SIZES = [100, 1_000, 10_000]
BLOB_NEAR = 64 * 1024
CHECKS_PER_BLOB = 4
FDS = 65_536


def log(msg: str) -> None:
    print(f"bench/load: {msg}", file=sys.stderr, flush=True)


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(FDS, soft)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
    except (ValueError, OSError):
        # Not allowed to raise the hard limit: take what it allows.
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    needed = max(SIZES) + 1024  # per process: wrk's sockets, or the server's
    if soft < needed:
        raise SystemExit(f"bench/load: the file-descriptor limit is {soft}, under the {needed} "
                         "needed, and could not be raised (run as root or raise `ulimit -Hn`)")
    return soft


def publish(server: Server, files: dict[str, bytes]) -> None:
    query = (f"version=6.0.1&routes=https://m.example.com/{PACKAGE}/"
             f"&channel={CHANNEL}&create_channel=true")
    status, body = server.request(
        "POST", f"/v1/admin/apps/{APP}/packages/{PACKAGE}/releases?{query}", zipped(files),
        {"Authorization": f"Bearer {server.token}", "Content-Type": "application/zip"})
    if status != 201:
        raise SystemExit(f"publish: {status} {body[:300]!r}")


def get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def tree_pids(pid: int) -> list[int]:
    """`pid` and its children (nginx's workers)."""
    pids = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            pids.append(int(stat.parent.name))
    return pids


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            m = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
        except OSError:
            continue
        total += int(m.group(1)) * 1024 if m else 0
    return total


def established(port: int) -> int:
    """Sockets in state ESTABLISHED whose local port is `port` (the server's side)."""
    want = f":{port:04X}"
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[1].endswith(want) and fields[3] == "01":
                count += 1
    return count


class Sampler:
    """Samples the server's resident set and its established connections while wrk runs."""

    def __init__(self, pid: int, port: int):
        self.pids, self.port = tree_pids(pid), port
        self.rss = self.held = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            self.rss = max(self.rss, rss_bytes(self.pids))
            self.held = max(self.held, established(self.port))
            self.stop.wait(0.2)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def wrk(port: int, conns: int, secs: int, index: str, etag: str, blob: str, blob_size: int) -> dict:
    argv = ["wrk", "-t2", f"-c{conns}", f"-d{secs}s", "--timeout", "10s", "--latency",
            "-s", str(ROOT / "bench" / "load.lua"), f"http://127.0.0.1:{port}",
            "--", index, etag, blob, str(CHECKS_PER_BLOB)]
    out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=secs + 120).stdout
    m = re.search(r"^LOAD (\{.*\})$", out, re.M)
    if not m:
        raise SystemExit(f"wrk printed no report:\n{out}")
    r = json.loads(m.group(1))
    r["errors"] = sum(r[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts"))
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    if r["requests"] == 0:
        raise SystemExit(f"wrk got no answer on port {port}:\n{out}")
    if r["bytes"] < r["ok"] * blob_size:
        raise SystemExit(f"{r['ok']} blob answers in {r['bytes']} bytes: not every one was whole")
    # Refused answers (503 shed, anything but 304 and 200), socket errors and timeouts are
    # counted, and the size is reported as not held without error.
    r["failed"] = r["errors"] + r["shed"] + r["other"]
    if r["failed"]:
        log(f"{conns} connections on port {port}: {r['shed']} shed (503), {r['other']} other "
            f"answers, {r['errors']} socket errors or timeouts in {r['requests']} requests")
    return r


def measure(procs: Procs, binary: str, webapps: Path, work: Path, runs: int, secs: int) -> dict:
    files = tree(webapps)
    blob_name = min((n for n in files if n != "index.html"),
                    key=lambda n: abs(len(files[n]) - BLOB_NEAR))
    blob = files[blob_name]
    digest = hashlib.sha256(blob).hexdigest()

    server = Server(procs, binary, work / "data")
    nginx = None
    try:
        publish(server, files)
        index_path = f"/v1/apps/{APP}/channels/{CHANNEL}/index"
        status, headers, index = get(server.port, index_path)
        if status != 200 or "etag" not in headers:
            raise SystemExit(f"index: {status} {headers}")
        wait_idle(server.proc.pid)  # the release's packs are built in the background
        rest_before = rss_bytes([server.proc.pid])

        www = work / "www"
        (www / "blobs").mkdir(parents=True, exist_ok=True)
        (www / "index.json").write_bytes(index)
        (www / "blobs" / digest).write_bytes(blob)
        for p in [www, *www.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        nginx, nginx_port = nginx_start(procs, work, www, connections=max(SIZES) + 1024)
        _, nginx_headers, nginx_index = get(nginx_port, "/index.json")
        if nginx_index != index or "etag" not in nginx_headers:
            raise SystemExit("nginx does not serve the same index")

        targets = {
            "baleen": (server.proc.pid, server.port, index_path, headers["etag"],
                       f"/v1/blobs/{digest}"),
            "nginx": (nginx.pid, nginx_port, "/index.json", nginx_headers["etag"],
                      f"/blobs/{digest}"),
        }
        for name, (_, port, index_p, etag, blob_p) in targets.items():
            status, _, body = get(port, blob_p)
            if status != 200 or body != blob:
                raise SystemExit(f"{name} {blob_p}: {status}, {len(body)} bytes")
            wrk(port, 64, 2, index_p, etag, blob_p, len(blob))  # warm-up

        results: dict = {"blob": blob_name, "blob_size": len(blob), "index_size": len(index),
                         "rest_rss_before": rest_before, "sizes": {}}
        order = list(targets)
        for conns in SIZES:
            per = {name: [] for name in targets}
            for i in range(runs):
                for name in order[i % 2:] + order[:i % 2]:
                    pid, port, index_p, etag, blob_p = targets[name]
                    with Sampler(pid, port) as sample:
                        r = wrk(port, conns, secs, index_p, etag, blob_p, len(blob))
                    r |= {"rss": sample.rss, "held": sample.held}
                    per[name].append(r)
                    log(f"{conns:>6} connections, {name}, run {i + 1}: {r['rps']:,.0f} req/s, "
                        f"p50 {r['p50_us'] / 1e3:.2f} ms, p99 {r['p99_us'] / 1e3:.2f} ms, "
                        f"p99.9 {r['p999_us'] / 1e3:.2f} ms, held {sample.held}, "
                        f"RSS {sample.rss / 2**20:.1f} MiB")
                    # Let the closed connections leave TIME_WAIT's way before the next run.
                    time.sleep(1)
            results["sizes"][conns] = per
        results["rest_rss_after"] = rss_bytes([server.proc.pid])
        return results
    finally:
        if nginx:
            procs.stop(nginx)
        server.stop()


def med(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def render(results: dict, command: str, runs: int, secs: int) -> str:
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rows = []
    for conns, per in results["sizes"].items():
        b, n = per["baleen"], per["nginx"]
        for name, rs in (("baleen", b), ("nginx", n)):
            rows.append(
                f"| {int(conns):,} | {name} | {med(rs, 'rps'):,.0f} | "
                f"{med(rs, 'p50_us') / 1e3:.2f} / {med(rs, 'p99_us') / 1e3:.2f} / "
                f"{med(rs, 'p999_us') / 1e3:.2f} | {max(r['held'] for r in rs):,} | "
                f"{max(r['rss'] for r in rs) / 2**20:.1f} | "
                f"{sum(r['requests'] for r in rs):,} | {sum(r['shed'] for r in rs):,} | "
                f"{sum(r['errors'] + r['other'] for r in rs):,} | "
                f"{'yes' if min(r['held'] for r in rs) >= int(conns) and not any(r['failed'] for r in rs) else '**no**'} |")
        rows.append(f"| {int(conns):,} | **ratio baleen ÷ nginx** | "
                    f"{med(b, 'rps') / med(n, 'rps'):.2f}× | | | "
                    f"{max(r['rss'] for r in b) / max(r['rss'] for r in n):.1f}× | | | | |")
    table = "\n".join([
        "| connections | server | requests/s | latency p50 / p99 / p99.9 ms | held at once (max) "
        "| resident MiB (max) | answers | shed (503) | other errors | held, no error |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |", *rows])
    return f"""## Many connections

{table}

How measured: `{command}` on {now}, commit `{commit}`, {os.cpu_count()} CPUs shared by the load
generator and the server. `wrk -t2 -cN --timeout 10s` with `bench/load.lua`: each connection
makes four update checks (`GET` of the signed index of reveal.js 6.0.1 with `If-None-Match`,
answered 304) to one download of a {results['blob_size']:,}-byte blob (`{results['blob']}`),
{runs} run(s) of {secs} s per size and server, taking turns; medians. Every 200 was whole (the
run fails otherwise); answers shed with `503` (the server's `max_concurrent_requests`), other
statuses, socket errors and timeouts are counted, and a size is held without error only with
none of them and every connection open at once. "Held at once" is the
server's established sockets sampled every 0.2 s; the resident set is the server's (nginx: master
and workers), sampled the same way. nginx serves the same two files with `open_file_cache`,
`sendfile` and `worker_connections` raised to {max(SIZES) + 1024:,}. baleen at rest: {results['rest_rss_before'] / 2**20:.1f} MiB
resident before the first run, {results['rest_rss_after'] / 2**20:.1f} MiB after the last.
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baleen", required=True, help="a release build of the baleen binary")
    ap.add_argument("--webapps", required=True, type=Path, help="scripts/fetch-webapps.sh's cache")
    ap.add_argument("--quick", action="store_true", help="one 8 s run per size and server")
    ap.add_argument("--work", type=Path, help="work directory (default: a fresh temporary one)")
    ap.add_argument("--command", default="scripts/load", help="command named in the report")
    ap.add_argument("--results", type=Path, help="also write the raw figures as JSON here")
    ap.add_argument("out", nargs="?", type=Path, help="the Markdown section (default: stdout)")
    args = ap.parse_args()
    for tool in ["wrk", "nginx"]:
        if not shutil.which(tool):
            raise SystemExit(f"bench/load: {tool} not found (scripts/load installs it)")
    fds = raise_fd_limit()
    log(f"file-descriptor limit {fds}")
    work = args.work or Path(tempfile.mkdtemp(prefix="baleen-load."))
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)  # nginx workers (user nobody when started as root) read files under it
    procs = Procs()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    runs, secs = (1, 8) if args.quick else (3, 20)
    try:
        results = measure(procs, args.baleen, args.webapps, work, runs, secs)
    finally:
        procs.stop_all()
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(results, indent=1) + "\n")
    text = render(results, args.command + (" --quick" if args.quick else ""), runs, secs)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
