#!/usr/bin/env python3
"""Cost at scale, by simulation (issue 10, item 8): the real release series of the pinned web apps
replayed over a modelled fleet, printing origin egress, edge egress and origin requests per day for
three designs — full download, changed files whole (what CodePush and Capgo ship) and Baleen's
packs. Rendered as the `## Cost at scale (simulation)` section of BENCHMARKS.md.
Goal: Baleen's origin egress ≤ 2 % of the full-download design's. Standard library only.

Usage: bench/cost_sim.py [--quick] --baleen BIN --device BIN --webapps DIR --work DIR
                         [--results JSON] [--command CMD] [--commit SHA] OUT
       bench/cost_sim.py --measured JSON [--commit SHA] OUT   (the model alone, on saved figures)
--baleen is a release `baleen`, --device the release binary of tests/src/bin/update_bytes.rs (the
device of bench/update_bytes.py), --webapps the cache of scripts/fetch-webapps.sh; `zip` must be on
PATH. --quick measures two small web apps. The per-day table goes to stdout, the section to OUT.

1. Measure, on a real `baleen serve` (release build) on 127.0.0.1, one server per web app: every
   pinned release is published in version order; after each publish the packs a device can ask for
   are polled (`HEAD` every 100 ms) until final, with when each was servable, fast and final, and
   its size. Then a real device (client-core, every response counted on the wire: status line,
   headers, body as sent) holding each earlier release updates to the new one: every (from, to) pair
   the series allows, not only adjacent ones. For each pair, from the device's side:
   - full download: `zip -r` (deflate, default level) of the new release, one response;
   - changed files whole: the new release's files whose content the old release lacks (renames of
     unchanged content are free, which favours the peer), each gzip -9 or as is, whichever is
     smaller (as a CDN compresses), one response each, plus the new release's whole manifest
     (gzip) as its file list; each response costs the median response head the device measured;
   - Baleen: everything the device downloaded except the index (manifest delta + diff pack).
   A fresh device installing each release gives Baleen's whole-release cost (manifest + full pack).
   Also measured: the per-launch check (index delta after five packages changed, the first check
   after it, a 304) on a server holding five small packages, and a diff pack that no publish built
   (a device further behind than the packs built at publish), built on request.
   The server's settings the model needs are read from the binary (`baleen serve --help`: pack
   wait, retention) and its answers (the index's and a fast pack's `max-age`), and the number of
   diff packs built at publish from server/src/pack/mod.rs.

2. Model (expected values, no randomness; runs in well under a second per variant). Constants below.
   - Fleet: DEVICES devices, PACKAGES packages in one app and channel, each published once a day at
     RELEASE_HOUR (all five within a minute: one channel change a day, for the index). Each
     package's series cycles through the measured adjacent pairs (app by app, in version order),
     package p shifted by p days, so every day's update is a real one. Sizes are scaled so that each
     release's full download (its zip) is PACKAGE_BYTES: every byte count of a pair is multiplied by
     PACKAGE_BYTES ÷ the zip of its new release; check bytes are not scaled.
   - Launches: each device belongs to a segment of SEGMENTS (share, chance of launching on a given
     day, launches on such a day). A device launching today last launched k days ago with chance
     p(1-p)^(k-1): it is k releases behind on every package. The first launch of the day updates;
     later ones only check. Launch times follow HOURLY (local time, the same at every edge).
   - A device k behind pays the measured (from, to) pair when those k releases are one app's real
     series; when they span apps in the cycle, the measured pieces are added (COMPOSE "sum", an
     upper bound for every delta design; "max", a lower bound, is shown beside it), capped at the
     design's whole-release cost.
   - CDN: EDGES edge locations, each with an equal share of devices; a request arriving at an edge
     is Poisson at the launch rate. Objects addressed by content or version (zips, files, manifests,
     packs) are immutable: an edge fetches each from the origin once, when first asked, and keeps it.
     The index and its deltas (per held sequence) carry the server's `max-age`: an edge revalidates a
     URL with the origin at most once per max-age (a 200 the first time after the daily change, a
     304 after); an edge learns of the day's index uniformly within one max-age of the publish.
     Fast packs carry their own short max-age: an edge that fetched one fetches the final pack too.
     No origin shield (a variant with one is shown).
   - Checks: every launch checks the index the same way in all three designs (Baleen's signed index
     through the CDN): the first launch of the day gets the delta, the second the first check at the
     new sequence, later ones a 304 — so the check traffic is the same for each design and is shown
     on its own row as well as in the totals.
   - Baleen's server: diff packs to a new release from the last DIFF_PACKS_AT_PUBLISH releases are
     built at publish (fast pack first, then final); a device further behind asks for a diff pack
     that the first request builds: while it builds the request waits the pack wait, then `503`, and
     the device takes the full pack. A device whose release the server collected (retention: the
     `--gc-max-age-secs` default, one release a day) gets the full pack and the whole manifest.
     A device asking while its diff pack is not servable yet, after its edge learned the index, gets
     the full pack if it is servable, else the blobs it lacks one by one (identity). Build times are
     the ones measured here scaled by PACKAGE_BYTES ÷ the release's zip.
   Per day: origin egress (bytes the origin sends to the edges), edge egress (bytes devices
   download), origin requests; for each design, averaged over a whole cycle of the series (one
   day per measured pair), with the worst day.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import gzip
import hashlib
import http.client
import json
import math
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench as B  # noqa: E402  (the pinned releases, the server wrapper, the process registry)
import update_bytes as UB  # noqa: E402  (the device that counts every response)

ROOT = Path(__file__).resolve().parent.parent
GOAL_ORIGIN = 0.02  # Baleen's origin egress ÷ the full-download design's, at most

# --- the model's parameters ---------------------------------------------------------------------

DEVICES = 10_000_000
PACKAGES = 5
PACKAGE_BYTES = 30_000_000  # each release's full download (its zip)
EDGES = 50
RELEASE_HOUR = 10.0  # local time of the daily publish
# (name, share of devices, chance of launching on a given day, launches on such a day)
SEGMENTS = (("daily", 0.40, 0.90, 3.0), ("weekly", 0.35, 0.25, 1.5), ("monthly", 0.25, 0.05, 1.0))
# The brief's example: one share of the fleet launches each day (a variant).
ONE_SHARE = (("all", 1.0, 0.5, 2.0),)
# Launches per hour of the day, relative (night low, evening peak).
HOURLY = (2.0, 1.2, 0.8, 0.6, 0.6, 1.0, 2.0, 3.5, 4.5, 4.8, 5.0, 5.3,
          5.8, 5.5, 5.0, 5.0, 5.2, 5.5, 5.8, 6.3, 6.8, 6.5, 5.0, 3.4)
COMPOSE = "sum"
TAIL = 1e-12  # lags whose share of a segment's launches is below this are left out

APPS_FULL = ["swagger-ui-dist", "reveal.js", "@excalidraw/excalidraw", "pdfjs-dist"]
APPS_QUICK = ["swagger-ui-dist", "reveal.js"]
POLL_SECS = 0.1
PACK_LIMIT_SECS = 900.0
CHECK_PACKAGES = PACKAGES  # packages of the server that measures the check


def log(msg: str) -> None:
    print(f"bench/cost_sim: {msg}", file=sys.stderr, flush=True)


# --- 1. measurement -----------------------------------------------------------------------------


def zip_bytes(ctx: UB.Ctx, tree: Path) -> int:
    out = ctx.work / "full.bpk"
    out.unlink(missing_ok=True)
    ctx.procs.run(["zip", "-r", "-q", str(out), "."], "zip", cwd=tree)
    size = out.stat().st_size
    out.unlink()
    return size


def file_digests(tree: Path) -> dict[str, Path]:
    """sha256 -> one file with that content."""
    out: dict[str, Path] = {}
    for p in sorted(tree.rglob("*")):
        if p.is_file():
            out.setdefault(hashlib.sha256(p.read_bytes()).hexdigest(), p)
    return out


def served_size(path: Path) -> tuple[int, int]:
    """(identity bytes, bytes as a CDN serves it: gzip -9 or identity, the smaller)."""
    data = path.read_bytes()
    return len(data), min(len(data), len(gzip.compress(data, 9, mtime=0)))


def changed_files(old: dict[str, Path], new: dict[str, Path]) -> dict:
    """Files of the new release whose content the old one lacks."""
    fresh = [p for d, p in new.items() if d not in old]
    sizes = [served_size(p) for p in fresh]
    return {"files": len(fresh), "identity": sum(s[0] for s in sizes),
            "served": sum(s[1] for s in sizes)}


def whole_release(new: dict[str, Path]) -> dict:
    sizes = [served_size(p) for p in new.values()]
    return {"files": len(sizes), "identity": sum(s[0] for s in sizes),
            "served": sum(s[1] for s in sizes)}


def manifest_sizes(srv: B.Baleen, report: dict) -> dict:
    """The whole manifest the device fetched, as identity, gzip and zstd."""
    paths = [r["path"].split("/delta/")[0] for r in report["requests"]
             if r["path"].startswith("/v1/manifests/")]
    if not paths:
        return {}
    out = {}
    for enc in ("identity", "gzip", "zstd"):
        status, body = B.http_get(srv.url + paths[0], headers={"Accept-Encoding": enc})
        if status != 200:
            raise B.BenchError(f"GET {paths[0]} ({enc}): {status}")
        out[enc] = len(body)
    return out


def poll_pack(url: str, path: str, until: float) -> tuple[dict, int | None]:
    """HEADs one pack every POLL_SECS, on a connection of its own, until it is final: when it was
    first servable at each stage (seconds after `start`), its size, and a fast pack's max-age."""
    host = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=120)
    seen: dict[str, dict] = {}
    max_age = None
    start = until - PACK_LIMIT_SECS
    try:
        while time.perf_counter() < until and "final" not in seen:
            try:
                conn.request("HEAD", path)  # anonymous, as a device or a CDN asks
                r = conn.getresponse()
                r.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(host.hostname, host.port, timeout=120)
                continue
            got = time.perf_counter() - start
            if r.status == 200:
                cache = r.getheader("cache-control") or ""
                stage = "final" if "immutable" in cache else "fast"
                m = re.search(r"max-age=(\d+)", cache)
                if stage == "fast" and m:
                    max_age = int(m.group(1))
                seen.setdefault(stage, {"secs": got, "bytes": int(r.getheader("content-length") or 0)})
            elif r.status != 503:
                raise B.BenchError(f"HEAD {path}: {r.status}")
            if "final" not in seen:
                time.sleep(POLL_SECS)
    finally:
        conn.close()
    return seen, max_age


def poll_packs(srv: B.Baleen, package: str, froms: list[str], to: str) -> dict:
    """From now (the publish just returned), every pack to `to` the publish builds, polled in
    parallel until final."""
    packs = {f: f"/v1/packs/{package}/{f}..{to}.bpk" for f in froms}
    packs["full"] = f"/v1/packs/{package}/{to}.bpk"
    until = time.perf_counter() + PACK_LIMIT_SECS
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(packs)) as pool:
        jobs = {k: pool.submit(poll_pack, srv.url, path, until) for k, path in packs.items()}
        results = {k: job.result() for k, job in jobs.items()}
    seen = {k: r[0] for k, r in results.items()}
    missing = [k for k, s in seen.items() if "final" not in s]
    if missing:
        raise B.BenchError(f"{package}@{to}: packs from {missing} not final after {PACK_LIMIT_SECS:.0f} s")
    ages = [r[1] for r in results.values() if r[1] is not None]
    return {"packs": seen, "fast_max_age": ages[0] if ages else None}


def device(ctx: UB.Ctx, dev: Path, store: Path, srv: B.Baleen, expect: str) -> dict:
    report = UB.device_update(ctx, dev, store, srv)
    if not report["installed"] or report["installed"][0]["version"] != expect:
        raise B.BenchError(f"device at {store} installed {report['installed']}, not {expect}")
    return report


def slim(report: dict) -> dict:
    """What the model needs of a device's report."""
    inst = report["installed"][0] if report["installed"] else {}
    return {"bytes": report["bytes"], "total": report["total"], "method": inst.get("method"),
            "fallbacks": inst.get("fallbacks", []), "requests": len(report["requests"]),
            "heads": [r["head_bytes"] for r in report["requests"]]}


def measure_app(ctx: UB.Ctx, dev: Path, rels: list[B.Release], diff_at_publish: int) -> dict:
    """Every release of one web app on a server of its own; every (from, to) pair by a device."""
    name = rels[0].app
    package = rels[0].package
    log(f"{name}: {len(rels)} releases")
    srv = B.Baleen(ctx, ctx.work / f"data-{package}", f"cost sim {name}")
    releases, pairs, timelines = [], [], []
    stores: list[Path] = []
    digests = []
    try:
        for j, rel in enumerate(rels):
            srv.publish(rel, package=package)
            froms = [r.version for r in rels[max(0, j - diff_at_publish):j]]
            tl = poll_packs(srv, package, froms, rel.version)
            tl.update(to=rel.version)
            timelines.append(tl)
            files = file_digests(rel.dir)
            digests.append(files)
            fresh_store = ctx.work / f"store-{package}-fresh-{j}"
            fresh = device(ctx, dev, fresh_store, srv, rel.version)
            releases.append({"version": rel.version, "zip": zip_bytes(ctx, rel.dir),
                             "whole": whole_release(files), "fresh": slim(fresh),
                             "manifest": manifest_sizes(srv, fresh)})
            log(f"  {rel.key}: zip {releases[-1]['zip']:,} B; fresh device {fresh['total']:,} B "
                f"({fresh['bytes']}); packs final after {max(s['final']['secs'] for s in tl['packs'].values()):.1f} s")
            for i in range(j):
                store = ctx.work / f"store-{package}-{i}-{j}"
                shutil.copytree(stores[i], store)
                upd = device(ctx, dev, store, srv, rel.version)
                pairs.append({"from": i, "to": j, "baleen": slim(upd),
                              "changed": changed_files(digests[i], files)})
                log(f"  {rels[i].version} -> {rel.version}: device {upd['total']:,} B ({upd['bytes']}, "
                    f"{upd['installed'][0]['method']}); changed files {pairs[-1]['changed']['served']:,} B "
                    f"in {pairs[-1]['changed']['files']}")
                if i == j - 1:
                    keep = ctx.work / f"store-{package}-at-{j}"
                    shutil.move(store, keep)
                else:
                    shutil.rmtree(store, ignore_errors=True)
            if j == 0:
                keep = ctx.work / f"store-{package}-at-0"
                shutil.move(fresh_store, keep)
            else:
                shutil.rmtree(fresh_store, ignore_errors=True)
            stores.append(keep)
        on_demand = measure_on_demand(ctx, srv, rels[0], rels[-1]) if len(rels) > 1 else None
    finally:
        srv.stop()
        for s in stores:
            shutil.rmtree(s, ignore_errors=True)
    return {"app": name, "versions": [r.version for r in rels], "releases": releases,
            "pairs": pairs, "timelines": timelines, "on_demand": on_demand}


def measure_on_demand(ctx: UB.Ctx, srv: B.Baleen, first: B.Release, last: B.Release) -> dict:
    """A diff pack no publish built: `last` published first (off the channel), `first` published to
    the channel, then `last` promoted; the first request for first..last builds it."""
    package = f"{first.package}-od"
    srv.publish(last, package=package, channel=None)
    srv.publish(first, package=package)
    ctx.procs.run([ctx.bin, "promote", "--package", package, "--channel", B.CHANNEL, "--version",
                   last.version, "--server", srv.url, "--token", srv.token], "baleen promote")
    srv.idle("on-demand diff pack: publish-time packs")
    path = f"/v1/packs/{package}/{first.version}..{last.version}.bpk"
    t0 = time.perf_counter()
    status, _ = B.http_get(srv.url + path)  # the first request starts the build
    first_answer = {"status": status, "secs": time.perf_counter() - t0}
    if status not in (200, 503):
        raise B.BenchError(f"GET {path}: {status}")
    stages, _ = poll_pack(srv.url, path, t0 + PACK_LIMIT_SECS)
    if "final" not in stages:
        raise B.BenchError(f"{path}: not final after {PACK_LIMIT_SECS:.0f} s")
    log(f"  on-demand {first.version} -> {last.version}: first answer {status} after "
        f"{first_answer['secs']:.2f} s; servable after {min(s['secs'] for s in stages.values()):.1f} s, "
        f"final after {stages['final']['secs']:.1f} s")
    return {"from": first.version, "to": last.version, "first": first_answer, "stages": stages}


def measure_check(ctx: UB.Ctx, dev: Path) -> dict:
    """The check a launch makes, on a server with CHECK_PACKAGES small packages in one channel:
    the delta after every package changed (one day behind, and two), the first check after it,
    and a 304."""
    log(f"check: {CHECK_PACKAGES} packages, one channel")
    srv = B.Baleen(ctx, ctx.work / "data-check", "cost sim check")
    try:
        def release(v: int) -> None:
            for p in range(CHECK_PACKAGES):
                tree = ctx.work / f"check-tree-{p}-{v}"
                tree.mkdir(parents=True, exist_ok=True)
                (tree / "index.html").write_text(f"<!doctype html><title>p{p}</title>release {v}\n")
                srv.publish(B.Release(f"p{p}", f"1.0.{v}", tree), package=f"p{p}", entry="index.html")
        release(0)
        base = ctx.work / "check-store-0"
        UB.device_update(ctx, dev, base, srv)
        release(1)
        one = ctx.work / "check-store-1"
        shutil.copytree(base, one)
        behind1 = UB.device_update(ctx, dev, one, srv)
        first_after = UB.device_update(ctx, dev, one, srv)
        later = UB.device_update(ctx, dev, one, srv)
        release(2)
        behind2 = UB.device_update(ctx, dev, base, srv)  # still at release 0: two days behind
        with urllib.request.urlopen(srv.url + f"/v1/apps/{B.APP}/channels/{B.CHANNEL}/index") as r:
            cache = r.headers.get("Cache-Control") or ""
        m = re.search(r"max-age=(\d+)", cache)
        if not m:
            raise B.BenchError(f"index Cache-Control {cache!r} has no max-age")

        def index_only(report: dict) -> dict:
            reqs = [r for r in report["requests"] if "/index" in r["path"]]
            return {"bytes": sum(r["head_bytes"] + r["body_bytes"] for r in reqs),
                    "statuses": [r["status"] for r in reqs], "all": report["total"],
                    "other": {k: v for k, v in report["bytes"].items() if k != "index"}}
        out = {"behind_1": index_only(behind1), "behind_2": index_only(behind2),
               "first_after": index_only(first_after), "later": index_only(later),
               "index_max_age": int(m.group(1))}
        for k in ("first_after", "later"):
            if out[k]["other"] and any(out[k]["other"].values()):
                raise B.BenchError(f"check {k}: the device fetched more than the index: {out[k]}")
        log(f"  check bytes: {json.dumps({k: v['bytes'] for k, v in out.items() if isinstance(v, dict)})}; "
            f"index max-age {out['index_max_age']} s")
        return out
    finally:
        srv.stop()


def server_settings(baleen: Path) -> dict:
    """The defaults the model needs, from the binary's help and the server's source."""
    text = subprocess.run([str(baleen), "serve", "--help"], capture_output=True, text=True,
                          check=True).stdout

    def default(flag: str) -> int:
        m = re.search(rf"--{flag} <[A-Z_]+>(?:(?!\n\s+--).)*?\[default: (\d+)\]", text, re.S)
        if not m:
            raise B.BenchError(f"`baleen serve --help` shows no default for --{flag}")
        return int(m.group(1))
    src = (ROOT / "server/src/pack/mod.rs").read_text()
    m = re.search(r"pub const DIFF_PACKS_AT_PUBLISH: usize = (\d+);", src)
    if not m:
        raise B.BenchError("server/src/pack/mod.rs: DIFF_PACKS_AT_PUBLISH not found")
    return {"pack_wait_ms": default("pack-wait-ms"), "gc_max_age_secs": default("gc-max-age-secs"),
            "gc_history_depth": default("gc-history-depth"), "gc_keep_last": default("gc-keep-last"),
            "diff_packs_at_publish": int(m.group(1))}


def measure(args) -> dict:
    args.work.mkdir(parents=True, exist_ok=True)
    ctx = UB.Ctx(args.baleen, args.work)
    lock = B.read_lock(ROOT / "scripts" / "webapps.lock", args.webapps)
    names = APPS_QUICK if args.quick else APPS_FULL
    t0 = time.monotonic()
    busy = B.cpu_busy(1.0)
    settings = server_settings(args.baleen)
    try:
        apps = [measure_app(ctx, args.device, lock[n], settings["diff_packs_at_publish"]) for n in names]
        check = measure_check(ctx, args.device)
    finally:
        ctx.procs.stop_all()
    fast_ages = [tl["fast_max_age"] for a in apps for tl in a["timelines"] if tl["fast_max_age"]]
    settings["fast_pack_max_age"] = statistics.median(fast_ages) if fast_ages else None
    settings["index_max_age"] = check["index_max_age"]
    info = B.machine_info(ROOT)
    return {"apps": apps, "check": check, "settings": settings, "quick": args.quick,
            "measured_at": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
            "commit": info["commit"], "dirty": info["dirty"], "machine": {
                "nproc": info["nproc"], "cpu": info["cpu"], "mem_gib": info["mem_gib"],
                "os": info["os"], "busy_before": busy},
            "measure_secs": time.monotonic() - t0}


# --- 2. model -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    devices: int = DEVICES
    packages: int = PACKAGES
    package_bytes: int = PACKAGE_BYTES
    edges: int = EDGES
    shield: bool = False  # an origin shield: the origin sees one cache instead of every edge
    release_hour: float = RELEASE_HOUR
    segments: tuple = SEGMENTS
    hourly: tuple = HOURLY
    compose: str = COMPOSE
    # Diff packs the publish did not build are built on the first request (what the server does);
    # False: a device further behind takes the full pack (the assumption).
    on_request: bool = True

    @property
    def caches(self) -> int:
        """Caches that fetch from the origin."""
        return 1 if self.shield else self.edges


@dataclass
class Seg:
    """One measured (from, to) pair of one app, scaled to the model's package size."""
    app: int
    frm: int
    to: int
    baleen_manifest: float
    baleen_pack: float
    changed_served: float
    changed_identity: float
    changed_files: int


@dataclass
class Release:
    """One measured release, scaled."""
    scale: float
    fresh_manifest: float  # what a fresh Baleen device downloads: the whole manifest ...
    fresh_pack: float  # ... and the full pack
    whole_served: float  # every file, gzip or as is
    whole_identity: float  # every file, as is
    whole_files: int
    manifest_gzip: float  # the changed-files design's file list
    # The publish's pack timeline, scaled (s after the publish): per lag, when the diff pack from
    # that many releases back was servable and final (lags the series lacks: the latest of them),
    # and when the full pack was servable.
    servable: dict = field(default_factory=dict)
    final: dict = field(default_factory=dict)
    full_servable: float = 0.0
    fast_ratio: float = 1.0  # fast ÷ final bytes of the publish's diff packs


class Inputs:
    """The measured figures, as the model uses them."""

    def __init__(self, measured: dict, model: Model):
        s = measured["settings"]
        self.pack_wait = s["pack_wait_ms"] / 1000
        self.index_max_age = s["index_max_age"]
        self.fast_max_age = s["fast_pack_max_age"] or 30
        self.at_publish = s["diff_packs_at_publish"]
        # A release k behind left the channel k - 1 days before today's publish.
        self.kept_lags = max(math.ceil(s["gc_max_age_secs"] / 86400), s["gc_history_depth"] - 1,
                             s["gc_keep_last"] - 1)
        heads = [h for a in measured["apps"] for p in a["pairs"] for h in p["baleen"]["heads"]]
        self.head = statistics.median(heads)
        self.apps = measured["apps"]
        self.releases: dict[tuple[int, int], Release] = {}
        self.segs: dict[tuple[int, int, int], Seg] = {}
        self.cycle: list[tuple[int, int, int]] = []  # adjacent pairs, app by app
        fast_ratios_od, dem_servable, dem_final = [], [], []
        for a, app in enumerate(self.apps):
            for j, r in enumerate(app["releases"]):
                scale = model.package_bytes / r["zip"]
                fb = r["fresh"]["bytes"]
                tl = app["timelines"][j]["packs"]
                versions = app["versions"]
                diffs = {j - versions.index(k): v for k, v in tl.items() if k != "full"}
                first = lambda st: min(x["secs"] for x in st.values())
                ratios = [v["fast"]["bytes"] / v["final"]["bytes"] for v in diffs.values() if "fast" in v]
                rel = Release(
                    scale=scale, fresh_manifest=fb.get("manifest", 0) * scale,
                    fresh_pack=(fb.get("pack", 0) + fb.get("blobs", 0)) * scale,
                    whole_served=r["whole"]["served"] * scale,
                    whole_identity=r["whole"]["identity"] * scale, whole_files=r["whole"]["files"],
                    manifest_gzip=r["manifest"]["gzip"] * scale,
                    servable={k: first(v) * scale for k, v in diffs.items()},
                    final={k: v["final"]["secs"] * scale for k, v in diffs.items()},
                    full_servable=first(tl["full"]) * scale,
                    fast_ratio=statistics.median(ratios) if ratios else 1.0)
                self.releases[(a, j)] = rel
            for p in app["pairs"]:
                rel = self.releases[(a, p["to"])]
                b = p["baleen"]["bytes"]
                self.segs[(a, p["from"], p["to"])] = Seg(
                    a, p["from"], p["to"], b.get("manifest", 0) * rel.scale,
                    (b.get("pack", 0) + b.get("blobs", 0) + b.get("other", 0)) * rel.scale,
                    p["changed"]["served"] * rel.scale,
                    p["changed"]["identity"] * rel.scale, p["changed"]["files"])
            self.cycle += [(a, j - 1, j) for j in range(1, len(app["releases"]))]
            od = app.get("on_demand")
            if od:
                scale = model.package_bytes / app["releases"][-1]["zip"]
                st = od["stages"]
                servable = od["first"]["secs"] if od["first"]["status"] == 200 else min(
                    x["secs"] for x in st.values())
                dem_servable.append(servable * scale)
                dem_final.append(st["final"]["secs"] * scale)
                if "fast" in st:
                    fast_ratios_od.append(st["fast"]["bytes"] / st["final"]["bytes"])
        if not self.cycle:
            raise SystemExit("no release pairs measured")
        self.demand_servable = statistics.median(dem_servable) if dem_servable else 0.0
        self.demand_final = statistics.median(dem_final) if dem_final else 0.0
        self.demand_fast_ratio = statistics.median(fast_ratios_od) if fast_ratios_od else 1.0
        c = measured["check"]
        self.check = {"behind_1": c["behind_1"]["bytes"], "behind_2": c["behind_2"]["bytes"],
                      "first_after": c["first_after"]["bytes"], "later": c["later"]["bytes"]}

    def segments_of(self, c: int, k: int) -> list[Seg]:
        """The measured pieces of a device k releases behind on the day of cycle pair c: runs of
        consecutive pairs of one app are one real (from, to) update."""
        steps = [self.cycle[(c - k + 1 + i) % len(self.cycle)] for i in range(k)]
        out: list[tuple[int, int, int]] = []
        for a, i, j in steps:
            if out and out[-1][0] == a and out[-1][2] == i:
                out[-1] = (a, out[-1][1], j)
            else:
                out.append((a, i, j))
        return [self.segs[s] for s in out]


def combine(values: list[float], how: str) -> float:
    return sum(values) if how == "sum" else max(values)


class Costs:
    """What one device k releases behind downloads, per design, on the day of cycle pair c."""

    def __init__(self, inp: Inputs, model: Model):
        self.inp, self.model = inp, model
        self.memo: dict[tuple[int, int], dict] = {}

    def newest(self, c: int) -> Release:
        a, _, j = self.inp.cycle[c]
        return self.inp.releases[(a, j)]

    def of(self, c: int, k: int) -> dict:
        key = (c, k)
        if key in self.memo:
            return self.memo[key]
        inp, how, h = self.inp, self.model.compose, self.inp.head
        segs = inp.segments_of(c, k)
        rel = self.newest(c)
        cap_cf = rel.manifest_gzip + h + rel.whole_served + rel.whole_files * h
        changed = combine([s.changed_served + s.changed_files * h for s in segs], how)
        identity = combine([s.changed_identity + s.changed_files * h for s in segs], how)
        out = {
            "full": self.model.package_bytes + h,
            "changed": min(cap_cf, rel.manifest_gzip + h + changed),
            "blobs": min(rel.whole_identity + rel.whole_files * h, identity),  # one by one, as is
            "manifest": min(rel.fresh_manifest, combine([s.baleen_manifest for s in segs], how)),
            "pack": min(rel.fresh_pack, combine([s.baleen_pack for s in segs], how)),
        }
        if k > inp.kept_lags:  # its release was collected: the whole manifest and the full pack
            out["manifest"], out["pack"] = rel.fresh_manifest, rel.fresh_pack
        elif k > inp.at_publish and not self.model.on_request:
            out["pack"] = rel.fresh_pack
        out["baleen"] = out["manifest"] + out["pack"]
        self.memo[key] = out
        return out


def lag_counts(model: Model) -> tuple[list[float], dict]:
    """Devices updating today per lag (index k: k releases behind; index 0 unused), and launches."""
    kmax = 1
    for _, share, p, _ in model.segments:
        if p < 1:
            kmax = max(kmax, math.ceil(math.log(TAIL) / math.log(1 - p)))
    per_lag = [0.0] * (kmax + 1)
    first = later = 0.0
    segs = []
    for name, share, p, launches in model.segments:
        active = model.devices * share * p
        first += active
        later += active * (launches - 1)
        for k in range(1, kmax + 1):
            per_lag[k] += active * p * (1 - p) ** (k - 1)
        segs.append({"name": name, "active": active, "launches": launches})
    return per_lag, {"first": first, "later": later, "segments": segs}


def mean_over_u(fn, max_age: float, steps: int = 200) -> float:
    """E[fn(U)] for U uniform in [0, max_age): when an edge learns of the new index."""
    return sum(fn((i + 0.5) * max_age / steps) for i in range(steps)) / steps


def fetched(demand: float, caches: int) -> float:
    """Expected origin fetches of one immutable object asked `demand` times a day, spread over
    `caches` caches: each cache fetches it once if asked at all."""
    return caches * -math.expm1(-demand / caches)


def revalidations(daily: float, model: Model, max_age: float, caches: int) -> float:
    """Expected origin requests for one URL with a max-age, asked `daily` times a day spread over
    `caches` caches by the launch profile: at most one per cache and max-age window."""
    total = sum(model.hourly)
    out = 0.0
    for w in model.hourly:
        rate = daily * w / total / 3600 / caches  # requests per second at one cache
        out += (3600 / max_age) * -math.expm1(-rate * max_age)
    return out * caches


def simulate(measured: dict, model: Model) -> dict:
    inp = Inputs(measured, model)
    costs = Costs(inp, model)
    per_lag, launches = lag_counts(model)
    kmax = len(per_lag) - 1
    R, P = inp.kept_lags, len(inp.cycle)
    No = model.caches
    M, pw, h = inp.index_max_age, inp.pack_wait, inp.head
    profile = model.hourly[int(model.release_hour) % 24] / sum(model.hourly) / 3600  # per second
    behind = sum(per_lag[R + 1:])

    # The check: the same in every design, once per launch for the whole app.
    ch = inp.check
    check_edge = per_lag[1] * ch["behind_1"] + (launches["first"] - per_lag[1]) * ch["behind_2"]
    for s in launches["segments"]:
        later = s["active"] * (s["launches"] - 1)
        check_edge += min(later, s["active"]) * ch["first_after"] + max(0.0, later - s["active"]) * ch["later"]
    check_origin = check_req = 0.0
    urls = [(per_lag[k], ch["behind_1"] if k == 1 else ch["behind_2"]) for k in range(1, kmax + 1)]
    urls.append((launches["later"], ch["first_after"]))  # devices already at today's sequence
    for daily, body in urls:
        if daily <= 0:
            continue
        req = revalidations(daily, model, M, No)
        first = fetched(daily, No)  # the first fetch after the daily change: a 200
        check_req += req
        check_origin += first * body + max(0.0, req - first) * ch["later"]

    days = []
    for d in range(P):
        day = {"full": [0.0, 0.0, 0.0], "changed": [0.0, 0.0, 0.0], "baleen": [0.0, 0.0, 0.0]}
        parts = {"diff packs, built at publish": 0.0, "diff packs, built on request": 0.0,
                 "manifest deltas": 0.0, "full packs and whole manifests": 0.0,
                 "fast packs later replaced": 0.0, "blobs, while packs build": 0.0}
        fallbacks = {"blobs": 0.0, "full pack": 0.0}
        lag1 = 0.0  # origin bytes of the diff packs and manifest deltas for devices one behind
        for p in range(model.packages):
            c = (d + p) % P
            a, _, j = inp.cycle[c]
            rel = inp.releases[(a, j)]
            seg1 = inp.segs[inp.cycle[c]]
            updating = launches["first"]
            # full download: one object a day
            f = fetched(updating, No)
            day["full"][0] += f * (model.package_bytes + h)
            day["full"][1] += updating * (model.package_bytes + h)
            day["full"][2] += f
            # changed files whole: today's new files and file list, once per cache
            day["changed"][0] += f * (seg1.changed_served + seg1.changed_files * h + rel.manifest_gzip + h)
            day["changed"][2] += f * (seg1.changed_files + 1)
            # Baleen
            rate = lambda k: per_lag[k] * profile  # lag-k updates per second at the publish
            edge = req = 0.0
            fp_demand = behind  # devices that need the full pack today
            for k in range(1, kmax + 1):
                cost = costs.of(c, k)
                day["changed"][1] += per_lag[k] * cost["changed"]
                edge += per_lag[k] * cost["baleen"]
                if k > R:
                    continue
                on_demand = k > inp.at_publish
                if on_demand and not model.on_request:
                    fp_demand += per_lag[k]
                    parts["manifest deltas"] += fetched(per_lag[k], No) * cost["manifest"]
                    req += fetched(per_lag[k], No)
                    continue
                got = fetched(per_lag[k], No)
                if k == 1:
                    lag1 += got * (cost["pack"] + cost["manifest"])
                parts["diff packs, built on request" if on_demand else "diff packs, built at publish"] += got * cost["pack"]
                parts["manifest deltas"] += got * cost["manifest"]
                req += 2 * got
                if not on_demand:
                    # Devices whose edge learned of the release before their diff pack was
                    # servable: blobs while the full pack is not servable either, else the full pack.
                    ready = rel.servable.get(k, max(rel.servable.values(), default=0.0))
                    final = rel.final.get(k, max(rel.final.values(), default=0.0))
                    blobs_until = min(ready, rel.full_servable) - pw
                    n_blobs = rate(k) * mean_over_u(lambda u: max(0.0, blobs_until - u), M)
                    n_full = rate(k) * mean_over_u(
                        lambda u: max(0.0, ready - pw - max(u, rel.full_servable - pw)), M)
                    fast_for = lambda u: max(0.0, final - max(u, ready))
                    fast_pack = cost["pack"] * rel.fast_ratio
                else:
                    # The first request builds it: 503 and the full pack until it is servable.
                    window = inp.demand_servable - pw
                    n_blobs = 0.0
                    n_full = -math.expm1(-per_lag[k]) * (1 + rate(k) * window) if window > 0 else 0.0
                    fast_for = lambda u: max(0.0, inp.demand_final - inp.demand_servable)
                    fast_pack = cost["pack"] * inp.demand_fast_ratio
                fallbacks["blobs"] += n_blobs
                fallbacks["full pack"] += n_full
                fp_demand += n_full
                edge += n_blobs * (cost["blobs"] - cost["pack"]) + n_full * (rel.fresh_pack - cost["pack"])
                if n_blobs:
                    gb = fetched(n_blobs, No)
                    parts["blobs, while packs build"] += gb * (seg1.changed_identity + seg1.changed_files * h)
                    req += gb * seg1.changed_files
                # A cache whose first request came while the fast pack was served fetches it, then
                # the final pack (counted above) once its max-age ran out.
                q = No * mean_over_u(lambda u: -math.expm1(-rate(k) / No * fast_for(u)), M)
                parts["fast packs later replaced"] += q * fast_pack
                req += q * (1 + mean_over_u(fast_for, M) / inp.fast_max_age)
                served_fast = lambda u: fast_for(u) + inp.fast_max_age / 2 if fast_for(u) > 0 else 0.0
                edge += rate(k) * mean_over_u(served_fast, M) * (fast_pack - cost["pack"])
                if on_demand:
                    req += n_full  # the 503s
            gf = fetched(fp_demand, No)
            gm = fetched(behind, No)
            parts["full packs and whole manifests"] += gf * rel.fresh_pack + gm * rel.fresh_manifest
            req += gf + gm
            day["baleen"][1] += edge
            day["baleen"][2] += req
        day["baleen"][0] = sum(parts.values())
        for design in day:
            day[design][0] += check_origin
            day[design][1] += check_edge
            day[design][2] += check_req
        days.append({"totals": day, "parts": parts, "fallbacks": fallbacks, "lag1": lag1,
                     "pairs": [inp.cycle[(d + p) % P] for p in range(model.packages)]})

    def mean(design: str, i: int) -> float:
        return statistics.mean(x["totals"][design][i] for x in days)

    def worst(design: str, i: int) -> float:
        return max(x["totals"][design][i] for x in days)
    totals = {d: {"origin": mean(d, 0), "edge": mean(d, 1), "requests": mean(d, 2),
                  "origin_worst": worst(d, 0), "edge_worst": worst(d, 1)}
              for d in ("full", "changed", "baleen")}
    parts = {k: statistics.mean(x["parts"][k] for x in days) for k in days[0]["parts"]}
    parts["index checks"] = check_origin
    fallbacks = {k: statistics.mean(x["fallbacks"][k] for x in days) for k in days[0]["fallbacks"]}
    lag1 = statistics.mean(x["lag1"] for x in days)
    ratio_days = [x["totals"]["baleen"][0] / x["totals"]["full"][0] for x in days]
    # Per-lag costs, mean over the cycle, for the report.
    lag_rows = []
    for k in sorted({1, 2, 3, 4, 5, 6, 7, 10, 14, 30, R, R + 1}):
        if k > kmax:
            continue
        cs = [costs.of(c, k) for c in range(P)]
        lag_rows.append({"lag": k, "devices": per_lag[k],
                         **{d: statistics.mean(x[d] for x in cs) for d in ("full", "changed", "baleen")}})
    return {"model": model, "inputs": inp, "totals": totals, "parts": parts, "fallbacks": fallbacks,
            "check": {"origin": check_origin, "edge": check_edge, "requests": check_req},
            "launches": launches, "behind_kept": behind, "per_lag": per_lag, "lag_rows": lag_rows,
            "ratio_days": ratio_days, "days": P, "lag1": lag1}


# --- 3. report ----------------------------------------------------------------------------------


def size(n: float) -> str:
    for unit, div in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(n) >= div:
            return f"{n / div:,.2f} {unit}"
    return f"{n:,.0f} B"


def pct(x: float) -> str:
    return f"{x * 100:.2f} %" if x < 0.1 else f"{x * 100:.1f} %"


def variants() -> list[tuple[str, Model]]:
    base = Model()
    return [
        ("the model above", base),
        ("pieces across apps: the largest instead of the sum (lower bound)", replace(base, compose="max")),
        ("an origin shield in front of the origin", replace(base, shield=True)),
        (f"devices more than the publish's diff packs behind take the full pack (the issue's "
         f"assumption, not what the server does)", replace(base, on_request=False)),
        ("one share: half of the devices launch on a day, twice", replace(base, segments=ONE_SHARE)),
        ("one share, and an origin shield", replace(base, segments=ONE_SHARE, shield=True)),
    ]


def calibration(measured: dict, head: float) -> dict:
    """On the real multi-release pairs: the real update ÷ the sum (and ÷ the largest) of its
    adjacent steps, per design: how far the composition rule is from a real series."""
    out: dict[str, list[float]] = {"baleen_sum": [], "baleen_max": [], "changed_sum": [], "changed_max": []}
    for app in measured["apps"]:
        pairs = {(p["from"], p["to"]): p for p in app["pairs"]}

        def cost(p: dict) -> tuple[float, float]:
            b = p["baleen"]["bytes"]
            return (b.get("manifest", 0) + b.get("pack", 0) + b.get("blobs", 0) + b.get("other", 0),
                    p["changed"]["served"] + p["changed"]["files"] * head)
        for (i, j), p in pairs.items():
            if j - i < 2:
                continue
            steps = [cost(pairs[(x, x + 1)]) for x in range(i, j)]
            real = cost(p)
            for n, d in ((0, "baleen"), (1, "changed")):
                out[f"{d}_sum"].append(real[n] / sum(s[n] for s in steps))
                out[f"{d}_max"].append(real[n] / max(s[n] for s in steps))
    return {k: statistics.median(v) for k, v in out.items() if v} | {"pairs": len(out["baleen_sum"])}


def nearer(design: str, to_sum: float, to_max: float) -> str:
    """Which composition rule a real series is nearer, in ratio."""
    rule = "the largest step" if abs(math.log(to_max)) < abs(math.log(to_sum)) else "the sum"
    return f"for {design} the real update is nearer {rule}"


def render(measured: dict, runs: list[tuple[str, dict]], command: str) -> str:
    main = runs[0][1]
    model: Model = main["model"]
    inp: Inputs = main["inputs"]
    t = main["totals"]
    full = t["full"]
    ratio = t["baleen"]["origin"] / full["origin"]
    worst = max(main["ratio_days"])
    ok = lambda b: "met" if b else "**missed**"
    names = {"full": "full download (a zip of the release)",
             "changed": "changed files whole (CodePush, Capgo)", "baleen": "Baleen (packs)"}
    mach = measured["machine"]
    w: list[str] = []
    w.append("## Cost at scale (simulation)\n")
    w.append(f"The real release series of the pinned web apps replayed over a modelled fleet: "
             f"{model.devices:,} devices, {model.packages} packages of {model.package_bytes / 1e6:.0f} MB "
             f"(each release's zip), one release a day per package, launches spread over the day, "
             f"behind a CDN of {model.edges} edges honouring the server's `max-age`s. Three designs: "
             f"the whole release each time, the changed files whole, Baleen's packs. Baleen's bytes "
             f"per update are what a real device downloaded from a real `baleen serve` for every "
             f"(from, to) pair of the series, the peers' come from the same trees (`zip -r`, gzip "
             f"per file); all are scaled to the package size, and the fleet is arithmetic on them "
             f"(expected values; the model is stated below and in bench/cost_sim.py's docstring).\n")
    alone = ("bench/cost_sim.py --baleen target/release/baleen --device target/release/update_bytes "
             "--webapps DIR --work DIR OUT")
    via = (f"`{command}` (step 5d: bench/cost_sim.py); alone: `{alone}`" if command != alone
           else f"`{alone}` (also step 5d of `scripts/bench`)")
    w.append(f"- Command: {via}; `bench/cost_sim.py --measured JSON OUT` reruns the model alone on the "
             f"measurements `--results JSON` saved. Measuring took {measured['measure_secs'] / 60:.0f} "
             f"min, the model {runs[0][1]['secs']:.1f} s a variant.")
    w.append(f"- Measured {measured['measured_at']}; commit `{measured['commit']}`"
             f"{' with uncommitted changes' if measured['dirty'] else ''}; `baleen` built with "
             f"`cargo build --release`; {mach['nproc']} CPUs ({mach['cpu']}), shared with other "
             f"work ({mach['busy_before']:.0%} busy when it started), which stretches the build times below.")
    w.append("")
    w.append("### Goal\n")
    w.append("| goal | figure | target | |")
    w.append("| --- | ---: | ---: | --- |")
    w.append(f"| Baleen's origin egress ÷ the full-download design's, per day (mean over the "
             f"{main['days']}-day cycle; worst day {pct(worst)}) | {pct(ratio)} | ≤ {GOAL_ORIGIN * 100:.0f} % | "
             f"{ok(ratio <= GOAL_ORIGIN)} |")
    w.append(f"| (no goal) Baleen's edge egress ÷ the full-download design's | "
             f"{pct(t['baleen']['edge'] / full['edge'])} |  | – |")
    w.append("")
    w.append(f"### Per day\n")
    w.append("| design | origin egress | edge egress (devices download) | origin requests | "
             "origin ÷ full download | edge ÷ full download |")
    w.append("| --- | ---: | ---: | ---: | ---: | ---: |")
    for d in ("full", "changed", "baleen"):
        x = t[d]
        w.append(f"| {names[d]} | {size(x['origin'])} | {size(x['edge'])} | {x['requests']:,.0f} | "
                 f"{pct(x['origin'] / full['origin'])} | {pct(x['edge'] / full['edge'])} |")
    ck = main["check"]
    w.append(f"| of which the launch checks, the same in each design | {size(ck['origin'])} | "
             f"{size(ck['edge'])} | {ck['requests']:,.0f} |  |  |")
    w.append("")
    w.append(f"Means over the {main['days']} days of the cycle (each package moves one measured pair a "
             f"day, package p shifted p days); worst day: full download {size(full['origin_worst'])} "
             f"origin, changed files {size(t['changed']['origin_worst'])}, Baleen "
             f"{size(t['baleen']['origin_worst'])}. {main['launches']['first']:,.0f} devices launch "
             f"on a day ({main['launches']['first'] + main['launches']['later']:,.0f} launches), "
             f"{main['behind_kept']:,.0f} of them more than {inp.kept_lags} releases behind "
             f"(their release collected).\n")
    w.append("Where Baleen's origin egress goes, per day:\n")
    w.append("| part | origin egress | share |")
    w.append("| --- | ---: | ---: |")
    total = t["baleen"]["origin"]
    for k, v in main["parts"].items():
        w.append(f"| {k} | {size(v)} | {pct(v / total)} |")
    fb = main["fallbacks"]
    w.append("")
    w.append(f"The diff packs and manifest deltas for devices one release behind alone are "
             f"{pct(main['lag1'] / full['origin'])} of the full-download design's origin egress; each "
             f"further release behind is another object per package, edge and day, and a larger one.\n")
    w.append(f"Devices a day that asked for a diff pack not yet servable: {fb['full pack']:,.1f} took "
             f"the full pack, {fb['blobs']:,.1f} the blobs one by one.\n")
    cal = calibration(measured, inp.head)
    if cal["pairs"]:
        w.append(f"How far the composition rule is from a real series: on the {cal['pairs']} measured "
                 f"pairs more than one release apart, the real update is {cal['baleen_sum']:.2f}× the "
                 f"sum of its steps and {cal['baleen_max']:.2f}× the largest for Baleen, "
                 f"{cal['changed_sum']:.2f}× and {cal['changed_max']:.2f}× for the changed files "
                 f"(medians): {nearer('Baleen', cal['baleen_sum'], cal['baleen_max'])}; "
                 f"{nearer('the changed files', cal['changed_sum'], cal['changed_max'])}.\n")
    w.append("### Variants\n")
    w.append("| variant | Baleen origin ÷ full | changed files origin ÷ full | Baleen edge ÷ full | "
             "changed files edge ÷ full | goal |")
    w.append("| --- | ---: | ---: | ---: | ---: | --- |")
    for name, r in runs:
        x = r["totals"]
        ro = x["baleen"]["origin"] / x["full"]["origin"]
        w.append(f"| {name} | {pct(ro)} | {pct(x['changed']['origin'] / x['full']['origin'])} | "
                 f"{pct(x['baleen']['edge'] / x['full']['edge'])} | "
                 f"{pct(x['changed']['edge'] / x['full']['edge'])} | {ok(ro <= GOAL_ORIGIN)} |")
    w.append("")
    w.append(f"### One device's update, by releases behind\n")
    w.append(f"Bytes per package update (manifest or file list and payload, each response's head "
             f"included; the check apart), mean over the cycle, scaled to {model.package_bytes / 1e6:.0f} MB; "
             f"devices a day at each lag under the model above.\n")
    w.append("| releases behind | devices a day | full download | changed files whole | Baleen |")
    w.append("| ---: | ---: | ---: | ---: | ---: |")
    for r in main["lag_rows"]:
        w.append(f"| {r['lag']} | {r['devices']:,.0f} | {size(r['full'])} | {size(r['changed'])} | "
                 f"{size(r['baleen'])} |")
    w.append("")
    w.append("### Measured inputs\n")
    w.append("Per (from, to) pair, bytes a device downloads; ratios to the zip of the new release, "
             "which the model scales to the package size.\n")
    w.append("| pair | zip of new | changed files whole (files) | Baleen: manifest + pack | "
             "Baleen ÷ zip | changed ÷ zip |")
    w.append("| --- | ---: | ---: | ---: | ---: | ---: |")
    for app in measured["apps"]:
        for p in app["pairs"]:
            z = app["releases"][p["to"]]["zip"]
            b = p["baleen"]["bytes"]
            mp = b.get("manifest", 0) + b.get("pack", 0) + b.get("blobs", 0) + b.get("other", 0)
            cf = p["changed"]["served"] + p["changed"]["files"] * inp.head
            w.append(f"| {app['app']}@{app['versions'][p['from']]} → {app['versions'][p['to']]} | "
                     f"{z:,} | {cf:,.0f} ({p['changed']['files']}) | {mp:,} | {mp / z:.4f} | {cf / z:.3f} |")
    w.append("")
    w.append("| release | zip | fresh Baleen device: manifest + full pack | file list (manifest, gzip) | "
             "packs of its publish: diffs servable / full servable / all final |")
    w.append("| --- | ---: | ---: | ---: | ---: |")
    for a, app in enumerate(measured["apps"]):
        for j, r in enumerate(app["releases"]):
            fb_ = r["fresh"]["bytes"]
            tl = app["timelines"][j]["packs"]
            diffs = [min(x["secs"] for x in v.values()) for k, v in tl.items() if k != "full"]
            w.append(f"| {app['app']}@{r['version']} | {r['zip']:,} | "
                     f"{fb_.get('manifest', 0) + fb_.get('pack', 0) + fb_.get('blobs', 0):,} | "
                     f"{r['manifest']['gzip']:,} | "
                     f"{(f'{max(diffs):.1f} s' if diffs else '–')} / {min(x['secs'] for x in tl['full'].values()):.1f} s / "
                     f"{max(v['final']['secs'] for v in tl.values()):.1f} s |")
    w.append("")
    ods = [(app["app"], app["on_demand"]) for app in measured["apps"] if app.get("on_demand")]
    if ods:
        w.append("A diff pack no publish built (a device further behind than the packs built at "
                 "publish), asked for anonymously: " + "; ".join(
                     f"{name} {od['from']} → {od['to']}: first answer {od['first']['status']} after "
                     f"{od['first']['secs']:.2f} s, servable after "
                     f"{(od['first']['secs'] if od['first']['status'] == 200 else min(x['secs'] for x in od['stages'].values())):.1f} s, "
                     f"final after {od['stages']['final']['secs']:.1f} s" for name, od in ods) + ".\n")
    c = measured["check"]
    s = measured["settings"]
    w.append(f"The check on launch, counted whole by the device on a server holding {CHECK_PACKAGES} "
             f"packages in one channel: index delta after all of them changed {c['behind_1']['bytes']:,} B "
             f"(one day behind), {c['behind_2']['bytes']:,} B (two); the first check after it "
             f"{c['first_after']['bytes']:,} B; later checks {c['later']['bytes']:,} B (304). The "
             f"index's `max-age` is {s['index_max_age']} s, a fast pack's {s['fast_pack_max_age']} s; "
             f"pack wait {s['pack_wait_ms']} ms; diff packs built at publish from the last "
             f"{s['diff_packs_at_publish']} releases; retention: releases off the channel for less "
             f"than {s['gc_max_age_secs'] // 86400} days, the last {s['gc_history_depth']} a channel "
             f"held and the {s['gc_keep_last']} highest are kept, so a device up to {inp.kept_lags} "
             f"releases behind finds its release. Median response head: {inp.head:.0f} B.\n")
    w.append("### Model\n")
    seg = "; ".join(f"{n}: {sh:.0%} of devices, chance of launching on a day {p:g}, launches on such a day {l:g}"
                    for n, sh, p, l in model.segments)
    w.append(f"- Fleet: {model.devices:,} devices in segments — {seg}. A device launching today is k "
             f"releases behind with chance p(1-p)^(k-1); the day's first launch updates, later ones check.")
    w.append(f"- Launches by hour (local time, relative): {', '.join(f'{x:g}' for x in model.hourly)}; "
             f"the {model.packages} packages are published at {model.release_hour:04.1f} h.")
    w.append(f"- Series: each package cycles through the {len(inp.cycle)} measured adjacent pairs; a "
             f"device k behind pays the measured pair when its k releases are one app's series, else "
             f"the sum of the measured pieces (the variant: the largest), capped at the whole release "
             f"(Baleen: the fresh device's manifest and full pack).")
    w.append(f"- CDN: {model.edges} edges, each with an equal share of devices; immutable objects "
             f"fetched from the origin once per edge, when first asked; index URLs (one per held "
             f"sequence) revalidated at most once per {s['index_max_age']} s per edge; an edge learns "
             f"of a new index uniformly within {s['index_max_age']} s of the publish.")
    w.append(f"- Baleen's server as measured: diff packs to the new release from the last "
             f"{s['diff_packs_at_publish']} releases built at publish, others on the first request "
             f"(`503` to requests during the build, then the full pack); pack build times scaled by "
             f"{model.package_bytes / 1e6:.0f} MB ÷ the measured release's zip (on-demand: servable "
             f"{inp.demand_servable:.1f} s, final {inp.demand_final:.1f} s after the first request, "
             f"median over apps).")
    w.append(f"- Not modelled: new installs (the same full download in every design, or an app's "
             f"bundled preset), rollouts and rollbacks, CDN evictions, retries, TLS.")
    w.append("")
    return "\n".join(w)


def plain_table(r: dict) -> str:
    t = r["totals"]
    lines = [f"{'design':40} {'origin egress':>16} {'edge egress':>16} {'origin requests':>16}"]
    for d, n in (("full", "full download"), ("changed", "changed files whole"), ("baleen", "Baleen packs")):
        lines.append(f"{n:40} {size(t[d]['origin']):>16} {size(t[d]['edge']):>16} {t[d]['requests']:>16,.0f}")
    ratio = t["baleen"]["origin"] / t["full"]["origin"]
    lines.append(f"Baleen origin egress ÷ full download: {pct(ratio)} (goal ≤ {GOAL_ORIGIN * 100:.0f} %: "
                 f"{'met' if ratio <= GOAL_ORIGIN else 'missed'})")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="two small web apps")
    ap.add_argument("--baleen", type=Path)
    ap.add_argument("--device", type=Path)
    ap.add_argument("--webapps", type=Path)
    ap.add_argument("--work", type=Path)
    ap.add_argument("--command", default="bench/cost_sim.py --baleen target/release/baleen --device "
                    "target/release/update_bytes --webapps DIR --work DIR OUT")
    ap.add_argument("--commit", help="the commit `baleen` was built from, when not the checkout's HEAD")
    ap.add_argument("--results", type=Path, help="write the measurements here (JSON)")
    ap.add_argument("--measured", type=Path, help="skip measuring: the model on these measurements")
    ap.add_argument("out", type=Path)
    args = ap.parse_args()
    if args.measured:
        measured = json.loads(args.measured.read_text())
    else:
        for flag in ("baleen", "device", "webapps", "work"):
            if getattr(args, flag) is None:
                ap.error(f"--{flag} is needed to measure (or --measured JSON)")
        measured = measure(args)
        if args.results:
            args.results.parent.mkdir(parents=True, exist_ok=True)
            args.results.write_text(json.dumps(measured, indent=1))
    if args.commit:
        measured["commit"], measured["dirty"] = args.commit, False
    t0 = time.monotonic()
    runs = [(name, simulate(measured, model)) for name, model in variants()]
    runs[0][1]["secs"] = (time.monotonic() - t0) / len(runs)
    log(f"model: {len(runs)} variants in {time.monotonic() - t0:.1f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(measured, runs, args.command))
    print(plain_table(runs[0][1]))
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
