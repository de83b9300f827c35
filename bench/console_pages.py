#!/usr/bin/env python3
"""Console pages at scale (issue 11): how long `baleen serve` takes to answer the release
console's pages with 1,000 releases and a million recorded device events, rendered as the
`## Console pages` section of BENCHMARKS.md. Standard library only.

Usage: bench/console_pages.py --baleen BIN --webapps DIR [--quick] [--work DIR] [OUT]
       (OUT defaults to $CARGO_TARGET_DIR/bench/section-console.md)

  1. releases   10 packages of app `shop` (quick: 2), each with 100 releases (quick: 50) on
                channel `production`, every one promoted as it is published (a history of 100
                changes per package). Each release is the reveal.js 6.0.1 build from the npm
                registry (111 files) with its index.html changed: the first uploaded whole, the
                next ones as changes against the one before (`base`).
  2. events     1,000,000 events (quick: 100,000) through `POST /v1/events`, 20 per batch, one
                batch per device (50,000 devices): each reports install, activation, a boot (one
                in 50 fails) and opens for the newest five releases of its package.
  3. pages      signed in as an admin, each page asked 25 times over one keep-alive connection
                after 3 warm-ups: the median and p90 of the time to the last byte on loopback
                (an upper bound of the server's time), the page's bytes; the JSON figures of the
                same channel (`GET …/stats`) beside them.

Goal: every page under 100 ms.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import http.client
import io
import json
import os
import re
import statistics
import sys
import tempfile
import time
import urllib.parse
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from index_scale import Procs, Server, wait_idle  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
APP, CHANNEL = "shop", "production"
WEBAPP = "reveal.js@6.0.1"
GOAL_MS = 100.0
EVENTS_PER_BATCH = 20
CLIENTS = 4


def log(msg: str) -> None:
    print(f"bench/console_pages: {msg}", file=sys.stderr, flush=True)


def tree(webapps: Path) -> dict[str, bytes]:
    """The build's files, from the npm package's `dist`-like root (its `package` directory)."""
    root = webapps / WEBAPP
    if (root / "package").is_dir():
        root = root / "package"
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            files[path.relative_to(root).as_posix()] = path.read_bytes()
    if "index.html" not in files:
        raise SystemExit(f"{root} has no index.html; run scripts/fetch-webapps.sh reveal.js")
    return files


def zipped(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def version(n: int) -> str:
    return f"1.0.{n}"


def publish_all(server: Server, files: dict[str, bytes], packages: int, releases: int) -> float:
    auth = {"Authorization": f"Bearer {server.token}", "Content-Type": "application/zip"}
    t0 = time.perf_counter()
    for p in range(packages):
        package = f"page{p}"
        for n in range(1, releases + 1):
            index = files["index.html"] + f"\n<!-- {package} build {n} -->\n".encode()
            query = {"version": version(n), "routes": f"https://m.example.com/{package}/",
                     "channel": CHANNEL, "create_channel": "true",
                     "notes": f"build {n}", "source_revision": f"{n:040x}"}
            if n == 1:
                body = zipped({**files, "index.html": index})
            else:
                query["base"] = version(n - 1)
                body = zipped({"index.html": index})
            status, text = server.request(
                "POST", f"/v1/admin/apps/{APP}/packages/{package}/releases?"
                + urllib.parse.urlencode(query), body, auth)
            if status != 201:
                raise SystemExit(f"publish {package} {version(n)}: {status} {text[:300]!r}")
    return time.perf_counter() - t0


def post_events(server: Server, key: str, packages: int, releases: int, events: int) -> float:
    batches = events // EVENTS_PER_BATCH
    newest = [version(n) for n in range(releases - 4, releases + 1)]

    def batch(d: int) -> bytes:
        package = f"page{d % packages}"
        evs = []
        for v in newest:
            evs += [{"package": package, "version": v, "kind": "installed"},
                    {"package": package, "version": v, "kind": "activated"},
                    {"package": package, "version": v,
                     "kind": "failed" if d % 50 == 0 else "ready"},
                    {"package": package, "version": v, "kind": "opens", "count": 3,
                     "offline_hits": 3, "under_1s": 2}]
        return json.dumps({"app": APP, "channel": CHANNEL, "ingest_key": key,
                           "device_id": f"bench-device-{d}", "events": evs}).encode()

    def client(k: int) -> int:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=120)
        sent = 0
        for d in range(k, batches, CLIENTS):
            conn.request("POST", "/v1/events", body=batch(d),
                         headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            body = r.read()
            if r.status != 202:
                raise SystemExit(f"events: {r.status} {body[:300]!r}")
            sent += EVENTS_PER_BATCH
        conn.close()
        return sent

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        total = sum(pool.map(client, range(CLIENTS)))
    assert total == batches * EVENTS_PER_BATCH
    return time.perf_counter() - t0


class Console:
    """A signed-in browser, as far as the server can tell: its cookie on a keep-alive connection."""

    def __init__(self, server: Server):
        self.conn = http.client.HTTPConnection(server.host, server.port, timeout=120)
        status, headers, page = self.get("/console/sign-in", cookie=None)
        nonce_cookie = next(v for k, v in headers if k.lower() == "set-cookie"
                            and v.startswith("baleen_sign_in=")).split(";")[0]
        nonce = re.search(rb'name="nonce" value="([0-9a-f]+)"', page).group(1).decode()
        body = urllib.parse.urlencode({"token": server.token, "nonce": nonce}).encode()
        self.conn.request("POST", "/console/sign-in", body=body, headers={
            "Cookie": nonce_cookie, "Content-Type": "application/x-www-form-urlencoded"})
        r = self.conn.getresponse()
        r.read()
        if r.status != 303:
            raise SystemExit(f"sign-in: {r.status}")
        self.cookie = next(v for k, v in r.getheaders() if k.lower() == "set-cookie"
                           and v.startswith("baleen_session=")).split(";")[0]

    def get(self, path: str, cookie: str | None = "") -> tuple[int, list, bytes]:
        headers = {}
        if cookie is None:
            pass
        elif cookie:
            headers["Cookie"] = cookie
        else:
            headers["Cookie"] = self.cookie
        self.conn.request("GET", path, headers=headers)
        r = self.conn.getresponse()
        return r.status, r.getheaders(), r.read()


def timed(fn, runs: int = 25, warm: int = 3) -> tuple[float, float, int]:
    for _ in range(warm):
        fn()
    times, size = [], 0
    for _ in range(runs):
        t0 = time.perf_counter()
        size = fn()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return statistics.median(times), times[int(0.9 * (len(times) - 1))], size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baleen", required=True)
    ap.add_argument("--webapps", required=True, type=Path)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--work", type=Path)
    ap.add_argument("--command", default="scripts/bench")
    ap.add_argument("out", nargs="?", type=Path)
    args = ap.parse_args()
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    out = args.out or target / "bench" / "section-console.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    packages, releases, events = (2, 50, 100_000) if args.quick else (10, 100, 1_000_000)
    work = args.work or Path(tempfile.mkdtemp(prefix="baleen-console-"))
    files = tree(args.webapps)
    procs = Procs()
    try:
        server = Server(procs, args.baleen, work / "data", extra=(
            "--events-per-device-per-minute", "0", "--events-per-address-per-minute", "0",
            "--ramp-interval-secs", "0", "--gc-interval-secs", "0"))
        auth = {"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"}
        log(f"publishing {packages * releases} releases")
        publish_secs = publish_all(server, files, packages, releases)
        status, body = server.request("POST", f"/v1/admin/apps/{APP}/ingest-keys",
                                      json.dumps({"name": "bench"}).encode(), auth)
        if status != 201:
            raise SystemExit(f"ingest key: {status} {body[:200]!r}")
        key = json.loads(body)["key"]
        wait_idle(server.proc.pid)
        log(f"posting {events:,} events")
        events_secs = post_events(server, key, packages, releases, events)
        wait_idle(server.proc.pid)
        console = Console(server)
        last = version(releases)
        pages = [
            ("apps", "/console/apps"),
            ("channel (every package, figures, adoption, history)",
             f"/console/apps/{APP}/channels/{CHANNEL}"),
            ("release (files, packs from every earlier release)",
             f"/console/packages/page0/releases/{last}"),
            ("comparison of two releases",
             f"/console/packages/page0/compare?from={version(1)}&to={last}"),
        ]
        rows = []
        for name, path in pages:
            def fetch(path=path):
                status, _, page = console.get(path)
                if status != 200:
                    raise SystemExit(f"{path}: {status} {page[:300]!r}")
                return len(page)
            med, p90, size = timed(fetch)
            rows.append((name, path, size, med, p90))
            log(f"{name}: median {med:.1f} ms, p90 {p90:.1f} ms, {size:,} bytes")

        api_conn = http.client.HTTPConnection(server.host, server.port, timeout=120)

        def stats():
            api_conn.request("GET", f"/v1/admin/apps/{APP}/channels/{CHANNEL}/stats",
                             headers={"Authorization": f"Bearer {server.token}"})
            r = api_conn.getresponse()
            body = r.read()
            assert r.status == 200, r.status
            return len(body)
        api = timed(stats)
        server.stop()
    finally:
        procs.stop_all()

    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    lines = [
        "## Console pages",
        "",
        f"Measured {when} by `{args.command}` (bench/console_pages.py"
        f"{' --quick' if args.quick else ''}): app `{APP}`, {packages} packages of {releases}"
        f" releases each ({packages * releases:,} releases, every one promoted on `{CHANNEL}`;"
        f" each is the {WEBAPP} build, 111 files), then {events:,} events from"
        f" {events // EVENTS_PER_BATCH:,} devices through `POST /v1/events`"
        f" (publishing took {publish_secs:.0f} s, the events {events_secs:.0f} s,"
        f" {events / events_secs:,.0f} events/s). Each page asked 25 times on one keep-alive"
        " connection after 3 warm-ups, signed in as an admin; time to the last byte on"
        " loopback, an upper bound of the server's time.",
        "",
        "| Page | Bytes | Median | p90 | Goal (< 100 ms) |",
        "|---|---:|---:|---:|---|",
    ]
    for name, path, size, med, p90 in rows:
        met = "met" if p90 < GOAL_MS else "**missed**"
        lines.append(f"| {name} | {size:,} | {med:.1f} ms | {p90:.1f} ms | {met} |")
    lines.append(f"| (the same channel's figures as JSON, `GET …/stats`) | {api[2]:,} |"
                 f" {api[0]:.1f} ms | {api[1]:.1f} ms | |")
    lines.append("")
    out.write_text("\n".join(lines) + "\n")
    print(out)


if __name__ == "__main__":
    main()
