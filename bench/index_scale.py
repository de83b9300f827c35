#!/usr/bin/env python3
"""The index at scale (issue 16): one app, one channel, 10, 100 and 1,000 one-file packages on a
release build of `baleen serve`, rendered as the `## Index at scale` section of BENCHMARKS.md.
Standard library only.

Usage: bench/index_scale.py --baleen BIN [--quick] [--work DIR] [--command CMD] [OUT]
       (OUT defaults to $CARGO_TARGET_DIR/bench/section-index-scale.md)

Per size:
  1. channel change   the median time of a promote (`POST …/channels/production`, keep-alive,
                      client side), each of another package that has a newer release published;
                      then the first delta and the first full index request after it, which sign
                      the new sequence's documents.
  2. launch bytes     a device holds the index of the sequence before one promote; what its launch
                      check costs after it, every byte of request and response counted (status
                      line, headers, body): the delta route, and for comparison the full index,
                      each without and with `Accept-Encoding: gzip`. Then nothing changed: the
                      first check at the new sequence (an empty delta) and every later one (304).
  3. request rate     `wrk -t2 -c64` on the full index and the delta, against nginx serving the
                      same bytes as static files (bench/nginx.conf.in).

Goals: the change at 1,000 packages within 1.5x of the one at 10; the launch after one change
under 2 KB plus that package's own entry (canonical JSON), at every size.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import io
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP, CHANNEL = "shop", "production"
SIZES = [10, 100, 1000]
GOAL_CHANGE_RATIO = 1.5
GOAL_LAUNCH_OVERHEAD = 2048


def log(msg: str) -> None:
    print(f"bench/index_scale: {msg}", file=sys.stderr, flush=True)


class Procs:
    """Processes this script started, stopped by process id."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, argv: list[str], **kw) -> subprocess.Popen:
        p = subprocess.Popen(argv, **kw)
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen) -> None:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self) -> None:
        for p in list(self.procs):
            self.stop(p)


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def wait_idle(pid: int, limit: float = 300.0) -> None:
    """Waits until the process used under 2 % of a CPU over half a second (background pack builds
    after publishes are done)."""
    deadline = time.monotonic() + limit
    hz = os.sysconf("SC_CLK_TCK")
    while time.monotonic() < deadline:
        t0 = cpu_ticks(pid)
        time.sleep(0.5)
        if (cpu_ticks(pid) - t0) / hz < 0.01:
            return
    log(f"process {pid} still busy after {limit:.0f} s; going on")


class Wire:
    """One HTTP/1.1 exchange over a fresh connection, every byte counted."""

    def __init__(self, host: str, port: int, path: str, headers: dict[str, str] | None = None):
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode()
        with socket.create_connection((host, port), timeout=60) as s:
            s.sendall(request)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(65536)
                if not chunk:
                    break
                head += chunk
            head, _, body = head.partition(b"\r\n\r\n")
            text = head.decode("latin-1").split("\r\n")
            self.status = int(text[0].split()[1])
            self.headers = {k.strip().lower(): v.strip() for k, v in
                            (line.split(":", 1) for line in text[1:] if ":" in line)}
            length = int(self.headers.get("content-length", "0"))
            while len(body) < length:
                chunk = s.recv(65536)
                if not chunk:
                    break
                body += chunk
        self.body = body
        self.request_bytes = len(request)
        self.response_bytes = len(head) + 4 + len(body)

    @property
    def total(self) -> int:
        return self.request_bytes + self.response_bytes


class Server:
    """`baleen serve` on a loopback port with its own data dir, key and admin token."""

    def __init__(self, procs: Procs, binary: str, data: Path, extra: tuple[str, ...] = ()):
        self.procs = procs
        data.mkdir(parents=True)
        run = lambda *a: subprocess.run([binary, *a], check=True, capture_output=True, text=True)
        run("keys", "generate", "--dir", str(data / "keys"))
        self.token = run("token", "create", "--data-dir", str(data), "--name", "bench",
                         "--scope", "admin").stdout.strip()
        out = data / "serve.out"
        with open(out, "w") as o, open(data / "serve.err", "w") as e:
            self.proc = procs.start([binary, "serve", "--data-dir", str(data), "--listen",
                                     "127.0.0.1:0", *extra], stdout=o, stderr=e, stdin=subprocess.DEVNULL,
                                    env=dict(os.environ, RUST_LOG="warn"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            m = re.search(r"listening on http://(\S+):(\d+)", out.read_text())
            if m:
                self.host, self.port = m.group(1), int(m.group(2))
                break
            if self.proc.poll() is not None:
                raise SystemExit(f"baleen serve exited: {(data / 'serve.err').read_text()[-2000:]}")
            time.sleep(0.05)
        else:
            raise SystemExit("baleen serve did not start")
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)

    def stop(self) -> None:
        self.conn.close()
        self.procs.stop(self.proc)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None) -> tuple[int, bytes]:
        self.conn.request(method, path, body=body, headers=headers or {})
        r = self.conn.getresponse()
        return r.status, r.read()

    def publish(self, package: str, version: str, promote: bool) -> None:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("index.html", f"<!doctype html><h1>{package} {version}</h1>\n")
        query = f"version={version}&routes=https://m.example.com/{package}/"
        if promote:
            query += f"&channel={CHANNEL}&create_channel=true"
        status, body = self.request(
            "POST", f"/v1/admin/apps/{APP}/packages/{package}/releases?{query}", buf.getvalue(),
            {"Authorization": f"Bearer {self.token}", "Content-Type": "application/zip"})
        if status != 201:
            raise SystemExit(f"publish {package}@{version}: {status} {body[:300]!r}")

    def promote(self, package: str, version: str) -> tuple[float, int]:
        payload = json.dumps({"action": "promote", "version": version}).encode()
        t0 = time.perf_counter()
        status, body = self.request(
            "POST", f"/v1/admin/packages/{package}/channels/{CHANNEL}", payload,
            {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        seconds = time.perf_counter() - t0
        if status != 200:
            raise SystemExit(f"promote {package}@{version}: {status} {body[:300]!r}")
        return seconds, json.loads(body)["sequence"]

    def timed_get(self, path: str) -> tuple[float, bytes]:
        t0 = time.perf_counter()
        status, body = self.request("GET", path)
        seconds = time.perf_counter() - t0
        if status != 200:
            raise SystemExit(f"GET {path}: {status} {body[:300]!r}")
        return seconds, body

    def wire(self, path: str, headers: dict | None = None) -> Wire:
        return Wire(self.host, self.port, path, headers)


INDEX = f"/v1/apps/{APP}/channels/{CHANNEL}/index"


def delta_path(sequence: int) -> str:
    return f"{INDEX}/delta/{sequence}"


def canonical(value) -> bytes:
    """Canonical JSON as the server writes it for these values (sorted keys, no whitespace,
    no non-ASCII in entries)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def nginx_start(procs: Procs, work: Path, www: Path,
                connections: int = 1024) -> tuple[subprocess.Popen, int]:
    """nginx serving `www` with bench/nginx.conf.in, each worker taking up to `connections`."""
    prefix = work / "nginx"
    prefix.mkdir(parents=True, exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = (ROOT / "bench" / "nginx.conf.in").read_text()
    conf = conf.replace("@PREFIX@", str(prefix)).replace("@PORT@", str(port)).replace("@ROOT@", str(www))
    if connections != 1024:
        conf = conf.replace("worker_connections 1024;", f"worker_connections {connections};")
        conf = conf.replace("worker_processes auto;",
                            f"worker_processes auto;\nworker_rlimit_nofile {connections + 1024};")
    (prefix / "nginx.conf").write_text(conf)
    with open(prefix / "stderr.log", "w") as err:
        p = procs.start(["nginx", "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e",
                         str(prefix / "error.log")], stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return p, port
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nginx did not start: {(prefix / 'stderr.log').read_text()[-2000:]}")


def wrk(url: str, secs: int, headers: dict | None = None) -> float:
    argv = ["wrk", "-t2", "-c64", f"-d{secs}s", "--timeout", "5s",
            "-s", str(ROOT / "bench" / "wrk-report.lua")]
    for k, v in (headers or {}).items():
        argv += ["-H", f"{k}: {v}"]
    out = subprocess.run(argv + [url], check=True, capture_output=True, text=True,
                         timeout=secs + 60).stdout
    m = re.search(r"^BENCH (\{.*\})$", out, re.M)
    if not m:
        raise SystemExit(f"wrk printed no report:\n{out}")
    r = json.loads(m.group(1))
    errors = sum(r[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors",
                                "timeouts"))
    if errors:
        raise SystemExit(f"wrk: {errors} errors against {url}: {r}")
    return r["requests"] / (r["duration_us"] / 1e6)


def one_size(procs: Procs, binary: str, work: Path, n: int, changes: int, wrk_secs: int,
             wrk_runs: int) -> dict:
    log(f"{n} packages: publishing")
    srv = Server(procs, binary, work / f"data-{n}")
    nginx = None
    try:
        names = [f"p{i:04d}" for i in range(n)]
        for name in names:
            srv.publish(name, "1.0.0", promote=True)
        # The packages to change, spread over the app; each gets as many newer releases as it is
        # changed, published before anything is timed.
        plan: list[tuple[str, str]] = []
        for k in range(changes):
            name = names[(k * max(1, n // changes) + k // n) % n]
            plan.append((name, f"1.0.{1 + k // n}"))
        for name, version in plan:
            srv.publish(name, version, promote=False)
        wait_idle(srv.proc.pid)

        # 1. channel change, then the first requests at the new sequence.
        _, index = srv.timed_get(INDEX)
        sequence = json.loads(index)["signed"]["sequence"]
        change_s, delta_s, index_s = [], [], []
        for name, version in plan:
            seconds, new = srv.promote(name, version)
            change_s.append(seconds)
            seconds, _ = srv.timed_get(delta_path(sequence))
            delta_s.append(seconds)
            seconds, index = srv.timed_get(INDEX)
            index_s.append(seconds)
            sequence = new

        # 2. launch bytes after one change: the device holds the index of `held`.
        held_index = json.loads(index)
        held = held_index["signed"]["sequence"]
        held_etag = srv.wire(INDEX).headers["etag"]
        name = names[n // 2]
        srv.publish(name, "2.0.0", promote=False)
        wait_idle(srv.proc.pid)
        srv.promote(name, "2.0.0")
        gzip = {"Accept-Encoding": "gzip"}
        launch = {
            "delta": srv.wire(delta_path(held)),
            "delta_gzip": srv.wire(delta_path(held), gzip),
            "index": srv.wire(INDEX, {"If-None-Match": held_etag}),
            "index_gzip": srv.wire(INDEX, {"If-None-Match": held_etag, **gzip}),
        }
        delta = json.loads(launch["delta"].body)["signed"]
        if set(delta.get("changed", {})) != {name} or delta.get("removed"):
            raise SystemExit(f"the delta after changing {name} holds {sorted(delta.get('changed', {}))}")
        entry_bytes = len(canonical(delta["changed"][name]))
        current = delta["sequence"]
        # Nothing changed: the first check at the new sequence gets an empty delta, later ones 304.
        first = srv.wire(delta_path(current))
        etag = first.headers["etag"]
        first_gzip = srv.wire(delta_path(current), gzip)
        same = srv.wire(delta_path(current), {"If-None-Match": etag})
        same_gzip = srv.wire(delta_path(current), {"If-None-Match": first_gzip.headers["etag"], **gzip})
        same_index = srv.wire(INDEX, {"If-None-Match": launch["index"].headers["etag"]})
        for what, w, status in [("delta", launch["delta"], 200), ("304", same, 304),
                                ("304 gzip", same_gzip, 304), ("index 304", same_index, 304)]:
            if w.status != status:
                raise SystemExit(f"{what}: {w.status}, expected {status}")

        # 3. request rate against nginx serving the same bytes.
        www = work / f"www-{n}"
        www.mkdir()
        (www / "index.json").write_bytes(launch["index"].body)
        (www / "delta.json").write_bytes(launch["delta"].body)
        for p in [work, www, *www.iterdir()]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        nginx, port = nginx_start(procs, work / f"nginx-{n}", www)
        base = f"http://{srv.host}:{srv.port}"
        targets = {
            "index baleen": (base + INDEX, None),
            "index baleen gzip": (base + INDEX, gzip),
            "index nginx": (f"http://127.0.0.1:{port}/index.json", None),
            "delta baleen": (base + delta_path(held), None),
            "delta nginx": (f"http://127.0.0.1:{port}/delta.json", None),
        }
        rates: dict[str, list[float]] = {k: [] for k in targets}
        for url, headers in targets.values():
            wrk(url, 1, headers)  # warm-up
        for i in range(wrk_runs):
            for what, (url, headers) in targets.items():
                rates[what].append(wrk(url, wrk_secs, headers))
        log(f"{n} packages: change {statistics.median(change_s) * 1e3:.2f} ms, "
            f"delta {launch['delta'].total} B, index {launch['index'].total} B, "
            f"index {statistics.median(rates['index baleen']):,.0f} req/s vs nginx "
            f"{statistics.median(rates['index nginx']):,.0f}")
        return {
            "packages": n,
            "changes": len(change_s),
            "change_ms": [s * 1e3 for s in change_s],
            "first_delta_ms": [s * 1e3 for s in delta_s],
            "first_index_ms": [s * 1e3 for s in index_s],
            "index_body": len(launch["index"].body),
            "index_gzip_body": len(launch["index_gzip"].body),
            "entry_bytes": entry_bytes,
            "launch": {k: {"request": w.request_bytes, "response": w.response_bytes,
                           "body": len(w.body), "total": w.total} for k, w in launch.items()},
            "unchanged": {"first": first.total, "first_gzip": first_gzip.total,
                          "304": same.total, "304_gzip": same_gzip.total,
                          "index_304": same_index.total},
            "rates": rates,
            "wrk_secs": wrk_secs,
        }
    finally:
        if nginx:
            procs.stop(nginx)
        srv.stop()


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def render(results: list[dict], command: str, quick: bool) -> str:
    by = {r["packages"]: r for r in results}
    small, large = by[min(by)], by[max(by)]
    ratio = median(large["change_ms"]) / median(small["change_ms"])
    out: list[str] = []
    w = out.append
    w("## Index at scale\n")
    w(f"One app and channel with {', '.join(f'{n:,}' for n in sorted(by))} one-file packages on a "
      f"release build of `baleen serve` (issue 16). Command: `{command}`"
      f"{' (quick mode)' if quick else ''}; "
      f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
      f"{os.cpu_count()} CPUs shared by the load generator and the server.\n")
    w("### Goals\n")
    w("| goal | figure | target |  |")
    w("| --- | ---: | ---: | --- |")
    w(f"| channel change at {max(by):,} packages ÷ at {min(by):,} | {ratio:.2f}× "
      f"({median(large['change_ms']):.2f} ÷ {median(small['change_ms']):.2f} ms) | ≤ {GOAL_CHANGE_RATIO}× "
      f"| **{'met' if ratio <= GOAL_CHANGE_RATIO else 'missed'}** |")
    for n in sorted(by):
        r = by[n]
        limit = GOAL_LAUNCH_OVERHEAD + r["entry_bytes"]
        got = r["launch"]["delta"]["total"]
        w(f"| launch bytes after one change, {n:,} packages | {got:,} B | < 2,048 + {r['entry_bytes']} "
          f"(the entry) = {limit:,} B | **{'met' if got < limit else 'missed'}** |")
    w("")
    w("### Figures\n")
    w("| packages | channel change | first delta after it | first full index after it | "
      "full index (gzip) |")
    w("| ---: | ---: | ---: | ---: | ---: |")
    for n in sorted(by):
        r = by[n]
        w(f"| {n:,} | {median(r['change_ms']):.2f} ms | {median(r['first_delta_ms']):.2f} ms | "
          f"{median(r['first_index_ms']):.2f} ms | {r['index_body']:,} B ({r['index_gzip_body']:,} B) |")
    w("")
    w(f"A channel change is the median of {small['changes']} promotes per size, each of a package "
      "with a newer release published beforehand, timed at the client over a kept-alive connection. "
      "The change writes the package's row only; the next delta and full index requests sign the "
      "new sequence's documents (the full index also gzips and stores it), once per sequence.\n")
    w("Bytes a device moves on launch after one package changed, request and response counted "
      "whole (status line, headers, body):\n")
    w("| packages | delta | delta, gzip | full index | full index, gzip | nothing changed: "
      "first check | later checks (304) | full index 304 |")
    w("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in sorted(by):
        r = by[n]
        l, u = r["launch"], r["unchanged"]
        w(f"| {n:,} | {l['delta']['total']:,} B | {l['delta_gzip']['total']:,} B | "
          f"{l['index']['total']:,} B | {l['index_gzip']['total']:,} B | {u['first']:,} B | "
          f"{u['304']:,} B | {u['index_304']:,} B |")
    w("")
    w("The delta is `GET …/index/delta/{held}` by a device holding the index before the change "
      "(its body carries the changed entry whole); the full index is what a device that knows only "
      "`GET …/index` downloads, asking with the ETag it held. After applying a delta a device's "
      "first check at the new sequence gets a delta without changes; later checks send its ETag "
      "and get `304`.\n")
    w("Requests per second (`wrk -t2 -c64`, median of "
      f"{len(small['rates']['index nginx'])} runs of {small['wrk_secs']} s), against nginx serving "
      "the same bytes as static files (`bench/nginx.conf.in`):\n")
    w("| packages | full index | full index, gzip | nginx, same bytes | ratio | delta | nginx, same bytes | ratio |")
    w("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in sorted(by):
        m = {k: median(v) for k, v in by[n]["rates"].items()}
        w(f"| {n:,} | {m['index baleen']:,.0f} | {m['index baleen gzip']:,.0f} | {m['index nginx']:,.0f} | "
          f"{m['index baleen'] / m['index nginx']:.2f}× | {m['delta baleen']:,.0f} | "
          f"{m['delta nginx']:,.0f} | {m['delta baleen'] / m['delta nginx']:.2f}× |")
    w("")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baleen", required=True, help="a release build of the baleen binary")
    ap.add_argument("--quick", action="store_true", help="7 changes and 1 short wrk run per size")
    ap.add_argument("--work", type=Path, help="work directory (default: a fresh temporary one)")
    ap.add_argument("--command", default="bench/index_scale.py", help="command named in the report")
    ap.add_argument("--results", type=Path, help="also write the raw figures as JSON here")
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    ap.add_argument("out", nargs="?", type=Path, default=target / "bench" / "section-index-scale.md")
    args = ap.parse_args()
    for tool in ["wrk", "nginx"]:
        if not shutil.which(tool):
            raise SystemExit(f"bench/index_scale: {tool} not found (scripts/bench installs it)")
    work = args.work or Path(tempfile.mkdtemp(prefix="baleen-index-scale."))
    work.mkdir(parents=True, exist_ok=True)
    procs = Procs()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    changes, wrk_secs, wrk_runs = (7, 2, 1) if args.quick else (21, 5, 3)
    try:
        results = [one_size(procs, args.baleen, work, n, changes, wrk_secs, wrk_runs)
                   for n in SIZES]
    finally:
        procs.stop_all()
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(results, indent=1) + "\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(results, args.command, args.quick))
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
