#!/usr/bin/env python3
"""Packs ready after a publish (issue 14, item 2): when each pack a device can ask for becomes
servable after `baleen publish` returns, fast and final, with its size, and the longest any request
made in that window waited for an answer. Rendered as the `## Packs ready after a publish` section
of BENCHMARKS.md. Standard library only.

Usage: bench/pack_timeline.py --baleen BIN --webapps DIR [--quick] [--work DIR] [--command CMD]
       [--results JSON] [OUT]   (OUT defaults to $CARGO_TARGET_DIR/bench/section-pack-timeline.md)

Two releases, each published after its predecessor on a fresh `baleen serve` (release build):
  1. the largest pinned web app (scripts/webapps.lock), its two versions;
  2. a synthetic bundler output: at least 1,500 files and 150 MB (quick: 300, 30 MB) taken in a
     fixed order from every fetched web app, each renamed `<stem>-<hash>.<ext>` with the sha256 of
     its content and the release; the second release takes each file's newer version where the
     app has one and renames every file (all hashed chunk names change).
After the second publish returns, the diff pack and the full pack are asked for with `HEAD` every
100 ms, each request timed, until both are final (`Cache-Control: … immutable`); a fast pack is
one served with a short max-age.

Goals: every pack servable within 5 s of the publish; no request waits more than 1 s.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL_SERVABLE_SECS = 5.0
GOAL_WAIT_SECS = 1.0
POLL_SECS = 0.1


def log(msg: str) -> None:
    print(f"bench/pack_timeline: {msg}", file=sys.stderr, flush=True)


def read_lock() -> dict[str, list[str]]:
    apps: dict[str, list[str]] = {}
    for line in (ROOT / "scripts/webapps.lock").read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) == 3:
            apps.setdefault(fields[0], []).append(fields[1])
    return apps


def tree(webapps: Path, app: str, version: str) -> Path:
    return webapps / f"{app.replace('/', '+')}@{version}" / "package"


def files_of(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def size_of(root: Path) -> int:
    return sum(p.stat().st_size for p in files_of(root))


def synthetic(webapps: Path, apps: dict[str, list[str]], out: Path, files: int,
              total: int) -> tuple[Path, Path]:
    """Two releases of a bundler-like build: the same chunks, every name's hash changed."""
    sources: list[tuple[Path, Path | None]] = []
    for app, versions in sorted(apps.items()):
        old = tree(webapps, app, versions[0])
        new = tree(webapps, app, versions[-1]) if len(versions) > 1 else None
        if not old.is_dir():
            continue
        for p in files_of(old):
            rel = p.relative_to(old)
            newer = new / rel if new is not None and (new / rel).is_file() else None
            sources.append((p, newer))
    if not sources:
        raise SystemExit("no fetched web apps; run scripts/fetch-webapps.sh")
    per_file = max(1, total // files)
    a, b = out / "synthetic-a", out / "synthetic-b"
    for d in (a, b):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    taken = size = 0
    i = 0
    while taken < 2 * files:
        old, newer = sources[i % len(sources)]
        turn = i // len(sources)
        i += 1
        body_a = old.read_bytes()
        if len(body_a) < per_file // 4:
            continue
        # Big files are cut so that the release reaches its file count and size together; a file
        # taken again on a later turn gets a banner, as a bundler's other entry point would.
        mark = f"/* entry {turn} */\n".encode() if turn else b""
        body_a = mark + body_a[: per_file * 8]
        body_b = mark + (newer.read_bytes()[: per_file * 8] if newer else body_a[len(mark):])
        ext = old.suffix or ".bin"
        stem = re.sub(r"[^A-Za-z0-9_-]", "_", old.stem)[:40]
        folder = f"chunks/{turn}/{taken % 20:02d}"
        for d, body, tag in ((a, body_a, b"a"), (b, body_b, b"b")):
            digest = hashlib.sha256(tag + body).hexdigest()[:8]
            path = d / folder / f"{stem}-{digest}{ext}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
        taken += 1
        size += len(body_a)
        if size >= total and taken >= files:
            break
    for d in (a, b):
        (d / "index.html").write_text("<!doctype html><title>synthetic</title>")
    return a, b


class Server:
    def __init__(self, baleen: str, data: Path):
        self.baleen, self.data = baleen, data
        data.mkdir(parents=True, exist_ok=True)
        subprocess.run([baleen, "keys", "generate", "--dir", str(data / "keys")], check=True,
                       capture_output=True)
        self.token = subprocess.run(
            [baleen, "token", "create", "--data-dir", str(data), "--name", "bench", "--scope",
             "admin"], check=True, capture_output=True).stdout.decode().strip()
        self.out = data / "serve.out"
        with open(self.out, "w") as out, open(data / "serve.err", "w") as err:
            self.proc = subprocess.Popen(
                [baleen, "serve", "--data-dir", str(data), "--listen", "127.0.0.1:0"],
                stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                env=dict(os.environ, RUST_LOG="warn"))
        deadline = time.monotonic() + 30
        self.url = ""
        while time.monotonic() < deadline and not self.url:
            m = re.search(r"listening on (http://\S+)", self.out.read_text())
            if m:
                self.url = m.group(1)
            elif self.proc.poll() is not None:
                break
            time.sleep(0.05)
        if not self.url:
            self.stop()
            raise SystemExit(f"baleen serve did not start: {(data / 'serve.err').read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def publish(self, dirpath: Path, package: str, version: str) -> float:
        argv = [self.baleen, "publish", str(dirpath), "--app", "shop", "--package", package,
                "--version", version, "--route", f"https://m.example.com/{package}/",
                "--entry", "index.html" if (dirpath / "index.html").is_file() else "package.json",
                "--server", self.url, "--token", self.token, "--json", "--channel", "production", "--create-channel"]
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, timeout=900)
        return time.perf_counter() - t0


def timeline(server: Server, package: str, old: str, new: str, limit: float,
             until: str = "final") -> dict:
    """Polls both packs of `new` from the moment the publish returned, until each has reached
    stage `until` (`fast`: any pack servable)."""
    host = urllib.parse.urlsplit(server.url)
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=120)
    packs = {"diff": f"/v1/packs/{package}/{old}..{new}.bpk", "full": f"/v1/packs/{package}/{new}.bpk"}
    seen: dict[str, dict] = {k: {} for k in packs}
    longest = 0.0
    statuses: dict[int, int] = {}
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit:
        for name, path in packs.items():
            sent = time.perf_counter()
            try:
                conn.request("HEAD", path)
                r = conn.getresponse()
                r.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(host.hostname, host.port, timeout=120)
                continue
            got = time.perf_counter()
            longest = max(longest, got - sent)
            statuses[r.status] = statuses.get(r.status, 0) + 1
            if r.status != 200:
                continue
            stage = "final" if "immutable" in (r.getheader("cache-control") or "") else "fast"
            if stage not in seen[name]:
                seen[name][stage] = {"secs": got - t0,
                                     "bytes": int(r.getheader("content-length") or 0)}
        if all(("final" in s) if until == "final" else bool(s) for s in seen.values()):
            break
        time.sleep(POLL_SECS)
    conn.close()
    return {"packs": seen, "longest_wait_secs": longest, "statuses": statuses}


def run_case(baleen: str, work: Path, name: str, a: Path, b: Path, old: str, new: str,
             limit: float, runs: int) -> dict:
    """The first run follows both packs until final; later runs, on fresh servers, only until
    both are servable (the goals), for medians."""
    files, size = len(files_of(b)), size_of(b)
    log(f"{name}: {files} files, {size / 1e6:.1f} MB, {runs} run(s)")
    results = []
    for i in range(runs):
        data = work / f"data-{re.sub(r'[^A-Za-z0-9]', '-', name)}-{i}"
        server = Server(baleen, data)
        try:
            server.publish(a, "app", old)
            # The first release's own packs are not what is measured: let them finish.
            time.sleep(1)
            publish_secs = server.publish(b, "app", new)
            results.append(timeline(server, "app", old, new, limit, "final" if i == 0 else "fast"))
        finally:
            server.stop()
            shutil.rmtree(data, ignore_errors=True)
        results[-1]["publish_secs"] = publish_secs
        log(f"{name} run {i + 1}: {json.dumps(results[-1])}")
    result = results[0]
    for pack in ("diff", "full"):
        fast = [r["packs"][pack]["fast"]["secs"] for r in results if "fast" in r["packs"][pack]]
        if fast:
            result["packs"][pack]["fast"]["median_secs"] = statistics.median(fast)
            result["packs"][pack]["fast"]["all_secs"] = fast
    result.update(name=name, files=files, bytes=size, runs=runs,
                  longest_wait_secs=max(r["longest_wait_secs"] for r in results))
    return result


def render(results: list[dict], command: str, quick: bool) -> str:
    out = ["## Packs ready after a publish", ""]
    out.append(f"Command: `{command}` (bench/pack_timeline.py). After `baleen publish` of the "
               "second release returns, the diff pack from the first release and the full pack "
               "are asked for with `HEAD` every 100 ms until both are final; each request is "
               "timed. Fast packs (zstd level 1) are served with `max-age=30`, final ones "
               "(level 19) as immutable.")
    out.append("")
    out.append("Fast servable is the median of the runs (the first run also follows the final "
               "packs); the goal is checked on the slowest run. The longest wait is over all runs: "
               "a request that arrives while a pack's fast build runs waits for it at most "
               "`--pack-wait-ms` (500 ms), then gets the pack or `503` with `Retry-After`.")
    out.append("")
    out.append("| release | files | MB | pack | fast servable | fast size | final servable | "
               "final size | longest request wait |")
    out.append("|---|--:|--:|---|--:|--:|--:|--:|--:|")
    met_ready = met_wait = True
    for r in results:
        for pack in ("diff", "full"):
            p = r["packs"][pack]
            first = max(p["fast"]["all_secs"]) if "fast" in p else p.get("final", {}).get("secs")
            met_ready &= first is not None and first <= GOAL_SERVABLE_SECS
            def cell(st: str, key: str) -> str:
                if st not in p:
                    return "—"
                v = p[st].get(key, p[st].get("secs"))
                if key.endswith("secs"):
                    return f"{v:.1f} s"
                return f"{v / 1e6:.2f} MB" if v >= 1e6 else f"{v / 1e3:.1f} KB"
            out.append(f"| {r['name']} | {r['files']:,} | {r['bytes'] / 1e6:.0f} | {pack} | "
                       f"{cell('fast', 'median_secs')} | {cell('fast', 'bytes')} | "
                       f"{cell('final', 'secs')} | {cell('final', 'bytes')} | "
                       f"{r['longest_wait_secs'] * 1000:.0f} ms |")
        met_wait &= r["longest_wait_secs"] <= GOAL_WAIT_SECS
    out.append("")
    runs = results[0]["runs"] if results else 0
    out.append(f"- Runs per release: {runs}.")
    out.append(f"- Every pack servable within {GOAL_SERVABLE_SECS:.0f} s of the publish: "
               f"**{'met' if met_ready else 'missed'}**.")
    out.append(f"- No request waits more than {GOAL_WAIT_SECS:.0f} s: "
               f"**{'met' if met_wait else 'missed'}**.")
    if quick:
        out.append("- Quick mode: the synthetic release is at least 300 files and 30 MB.")
    out.append("")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baleen", required=True)
    ap.add_argument("--webapps", required=True, type=Path)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, help="runs per release (default: 3, quick: 1)")
    ap.add_argument("--work", type=Path)
    ap.add_argument("--command", default="bench/pack_timeline.py")
    ap.add_argument("--results", type=Path)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    ap.add_argument("out", nargs="?", type=Path, default=target / "bench" / "section-pack-timeline.md")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="baleen-pack-timeline."))
    work.mkdir(parents=True, exist_ok=True)
    apps = {a: v for a, v in read_lock().items() if tree(args.webapps, a, v[0]).is_dir()}
    limit = 300.0 if args.quick else 900.0
    runs = args.runs or (1 if args.quick else 3)
    results = []
    pairs = [(a, v) for a, v in apps.items() if len(v) > 1 and tree(args.webapps, a, v[-1]).is_dir()]
    if pairs:
        app, versions = max(pairs, key=lambda p: size_of(tree(args.webapps, p[0], p[1][-1])))
        results.append(run_case(args.baleen, work, f"{app} {versions[0]} → {versions[-1]}",
                                tree(args.webapps, app, versions[0]),
                                tree(args.webapps, app, versions[-1]), "1.0.0", "1.1.0", limit, runs))
    files, total = (300, 30_000_000) if args.quick else (1_500, 150_000_000)
    a, b = synthetic(args.webapps, apps, work, files, total)
    results.append(run_case(args.baleen, work, "synthetic bundler output", a, b, "1.0.0", "1.1.0",
                            limit, runs))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(results, args.command, args.quick))
    if args.results:
        args.results.write_text(json.dumps(results, indent=2))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
