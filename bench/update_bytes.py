#!/usr/bin/env python3
"""Bytes per device update, all requests counted: a real device (client-core, through
tests/src/bin/update_bytes.rs) updates from each pinned release to the next against a real
`baleen serve` on 127.0.0.1, and every response it received is counted as it came off the wire
(status line, headers and body as sent, before any decoding): the index or index delta, the
manifest or manifest delta, the pack or blobs, and anything else. The peer is the lower bound of
shipping the change at all: `zstd -19 --long=27 --patch-from` of the old release's whole tar to
the new one's. Rendered as the `## Bytes per device update` section of BENCHMARKS.md.

Usage: bench/update_bytes.py [--quick] --baleen BIN --device BIN --webapps DIR --work DIR OUT

Also a one-file change to a synthetic 5,000-file package (1.5 KB scripts), timed: the whole
`update()` on the device, median of several devices updating from copies of one store, after one
device has warmed the server's caches (the manifest delta is built and encoded on first request).
Standard library only.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench as B  # noqa: E402  (the pinned releases, the server wrapper, the process registry)

ROOT = Path(__file__).resolve().parent.parent
GOAL_MEDIAN = 1.5  # (manifest + pack) ÷ zstd --patch-from of whole tars, median over pairs
GOAL_EACH = 2.0  # the same, on each pair
GOAL_BIG_EXTRA_BYTES = 10_000  # one-file change to 5,000 files: bytes beyond the patch
GOAL_BIG_MS = 30.0  # ... and the update's wall time on loopback
BIG_FILES = 5000
BIG_RUNS = 7

APPS_FULL = ["swagger-ui-dist", "reveal.js", "@excalidraw/excalidraw", "pdfjs-dist"]
APPS_QUICK = ["swagger-ui-dist", "reveal.js"]


def log(msg: str) -> None:
    print(f"bench/update_bytes: {msg}", file=sys.stderr, flush=True)


class Ctx:
    """What bench.Baleen needs: the binary and the process registry."""

    def __init__(self, baleen: Path, work: Path):
        self.bin = str(baleen)
        self.procs = B.Procs(None)
        self.work = work


def public_key_hex(data: Path) -> str:
    files = sorted((data / "keys").glob("*.public.json"))
    if not files:
        raise B.BenchError(f"no public key under {data / 'keys'}")
    return json.loads(files[0].read_text())["public"]


def device_update(ctx: Ctx, device: Path, store: Path, srv: B.Baleen) -> dict:
    out = ctx.procs.run([str(device), str(store), srv.url, public_key_hex(srv.data), B.APP],
                        "update_bytes device")
    report = json.loads(out.stdout)
    kinds: dict[str, int] = {}
    for r in report["requests"]:
        p = r["path"]
        kind = ("index" if "/index" in p else "manifest" if p.startswith("/v1/manifests/")
                else "pack" if p.startswith("/v1/packs/") else "blobs" if p.startswith("/v1/blobs/")
                else "other")
        kinds[kind] = kinds.get(kind, 0) + r["head_bytes"] + r["body_bytes"]
    report["bytes"] = kinds
    report["total"] = sum(kinds.values())
    return report


def tar(tree: Path, out: Path) -> None:
    subprocess.run(["tar", "--sort=name", "--mtime=@0", "--owner=0", "--group=0", "-C", str(tree),
                    "-cf", str(out), "."], check=True)


def patch_from(work: Path, old: Path, new: Path) -> int:
    a, b, out = work / "old.tar", work / "new.tar", work / "patch.zst"
    tar(old, a)
    tar(new, b)
    subprocess.run(["zstd", "-q", "-f", "-19", "--long=27", f"--patch-from={a}", str(b), "-o", str(out)],
                   check=True)
    size = out.stat().st_size
    for p in (a, b, out):
        p.unlink()
    return size


def warm_pack(srv: B.Baleen, package: str, frm: str, to: str) -> int:
    """Waits until the diff pack is servable, so that the device measures the pack path; returns
    the pack's fixed overhead (the compact container's header and tags)."""
    return srv.get_pack(package, frm, to)[2]


def bench_pairs(ctx: Ctx, device: Path, apps: dict[str, list[B.Release]], names: list[str]) -> list[dict]:
    rows = []
    srv = B.Baleen(ctx, ctx.work / "pairs-data", "update bytes")
    try:
        for name in names:
            rels = apps[name]
            for old, new in zip(rels, rels[1:]):
                # Each pair under its own package name, so every device starts from `old`.
                package = f"{old.package}-{len(rows)}"
                store = ctx.work / f"store-{len(rows)}"
                srv.publish(old, package=package)
                first = device_update(ctx, device, store, srv)
                srv.publish(new, package=package)
                overhead = warm_pack(srv, package, old.version, new.version)
                upd = device_update(ctx, device, store, srv)
                if not upd["installed"] or upd["installed"][0]["version"] != new.version:
                    raise B.BenchError(f"{old.key} -> {new.version}: device installed {upd['installed']}")
                lower = patch_from(ctx.work, old.dir, new.dir)
                b = upd["bytes"]
                row = {"old": old.key, "new": new.version, "lower": lower, "bytes": b,
                       "total": upd["total"], "first_install": first["total"],
                       "method": upd["installed"][0]["method"],
                       "fallbacks": upd["installed"][0]["fallbacks"],
                       "elapsed_ms": upd["elapsed_ms"], "pack_overhead": overhead,
                       "manifest_whole": whole_manifest_bytes(srv, upd)}
                row["mp"] = b.get("manifest", 0) + b.get("pack", 0) + b.get("blobs", 0)
                row["ratio"] = row["mp"] / lower
                rows.append(row)
                log(f"  {old.key} -> {new.version}: {upd['total']} B on the wire ({b}); "
                    f"patch-from {lower} B; ratio {row['ratio']:.2f}")
                shutil.rmtree(store, ignore_errors=True)
    finally:
        srv.stop()
    return rows


def whole_manifest_bytes(srv: B.Baleen, upd: dict) -> dict:
    """What the whole manifest would have cost: identity and zstd bodies."""
    deltas = [r["path"] for r in upd["requests"] if r["path"].startswith("/v1/manifests/")]
    if not deltas:
        return {}
    path = deltas[0].split("/delta/")[0]
    _, identity = B.http_get(srv.url + path)
    _, zstd = B.http_get(srv.url + path, headers={"Accept-Encoding": "zstd"})
    return {"identity": len(identity), "zstd": len(zstd)}


def write_big(tree: Path, variant: int) -> None:
    for i in range(BIG_FILES):
        path = tree / f"assets/chunk-{i % 64}/part-{i:05}.js"
        path.parent.mkdir(parents=True, exist_ok=True)
        body = "".join(f"export function big_{i}_{line}(x) {{ return x * {(i * 31 + line * 7) % 1009} + {line}; }}\n"
                       for line in range(24))
        if i == 0 and variant:
            body += f"// release {variant}\n"
        path.write_text(body)
    (tree / "index.html").write_text("<!doctype html><title>big</title>")


def bench_big(ctx: Ctx, device: Path) -> dict:
    old_tree, new_tree = ctx.work / "big-1", ctx.work / "big-2"
    write_big(old_tree, 0)
    write_big(new_tree, 0)
    write_big(new_tree, 1)
    old = B.Release("big", "1.0.0", old_tree)
    new = B.Release("big", "1.0.1", new_tree)
    srv = B.Baleen(ctx, ctx.work / "big-data", "update bytes (5,000 files)")
    try:
        srv.publish(old, entry="index.html")
        base = ctx.work / "big-store"
        device_update(ctx, device, base, srv)
        srv.publish(new, entry="index.html")
        overhead = warm_pack(srv, "big", "1.0.0", "1.0.1")
        runs = []
        for i in range(BIG_RUNS + 1):
            store = ctx.work / f"big-store-{i}"
            shutil.copytree(base, store)
            runs.append(device_update(ctx, device, store, srv))
            shutil.rmtree(store, ignore_errors=True)
        lower = patch_from(ctx.work, old_tree, new_tree)
        measured = runs[1:]  # the first warmed the server's caches
        last = measured[-1]
        # Where the time goes: before the first request (opening the store), each request, and
        # the gaps between them (verifying the index, rebuilding and verifying the manifest,
        # planning) and after the last one (installing), medians over the measured devices.
        def phases(r: dict) -> dict:
            reqs = r["requests"]
            out = {"before first request": reqs[0]["start_ms"] if reqs else r["elapsed_ms"]}
            for prev, req in zip([None] + reqs, reqs):
                kind = req["path"].split("/")[2] if req["path"].count("/") > 2 else req["path"]
                if prev:
                    gap = f"after {prev['path'].split('/')[2]}, before {kind}"
                    out[gap] = req["start_ms"] - prev["end_ms"]
                out[f"GET {kind}"] = req["end_ms"] - req["start_ms"]
            if reqs:
                out["after the last request (install)"] = r["elapsed_ms"] - reqs[-1]["end_ms"]
            return out
        split = [phases(r) for r in measured]
        where = {k: statistics.median([s.get(k, 0.0) for s in split]) for k in split[0]}
        return {"where_ms": where, "lower": lower, "bytes": last["bytes"], "total": last["total"],
                "ms": [r["elapsed_ms"] for r in measured], "cold_ms": runs[0]["elapsed_ms"],
                "method": last["installed"][0]["method"], "pack_overhead": overhead,
                "manifest_whole": whole_manifest_bytes(srv, last)}
    finally:
        srv.stop()


def kb(n: float) -> str:
    return f"{n / 1000:,.1f} KB" if n >= 1000 else f"{n:,.0f} B"


def render(rows: list[dict], big: dict, command: str) -> str:
    ratios = [r["ratio"] for r in rows]
    overheads = [r["pack_overhead"] for r in rows] + [big["pack_overhead"]]
    med, worst = statistics.median(ratios), max(rows, key=lambda r: r["ratio"])
    extra = big["total"] - big["lower"]
    big_ms = statistics.median(big["ms"])
    ok = lambda b: "met" if b else "**missed**"
    w = []
    w.append("## Bytes per device update\n")
    w.append("Everything a device downloads for one update, counted on the wire by the device itself: "
             "a real device (client-core with the built-in fetcher, `tests/src/bin/update_bytes.rs`) "
             "holding the older release calls `update()` against the release `baleen serve` on "
             "127.0.0.1, and every response is counted as received (status line, headers, body as "
             "sent, before decoding). The peer is the lower bound of shipping the change at all: "
             "`zstd -19 --long=27 --patch-from` of the old release's sorted tar to the new one's. "
             f"Command: `{command}` (section script `bench/update_bytes.py`).\n")
    w.append("| goal | figure | target | |")
    w.append("|:--|--:|--:|:--|")
    w.append(f"| manifest + pack ÷ patch-from, median of {len(rows)} pairs | {med:.2f}× | ≤ {GOAL_MEDIAN}× | {ok(med <= GOAL_MEDIAN)} |")
    w.append(f"| manifest + pack ÷ patch-from, worst pair ({worst['old']} → {worst['new']}) | {worst['ratio']:.2f}× | ≤ {GOAL_EACH}× each | {ok(worst['ratio'] <= GOAL_EACH)} |")
    w.append(f"| one-file change to {BIG_FILES:,} files: bytes beyond the patch-from lower bound | {kb(extra)} | < {kb(GOAL_BIG_EXTRA_BYTES)} | {ok(extra < GOAL_BIG_EXTRA_BYTES)} |")
    w.append(f"| the same update's wall time on loopback (median of {len(big['ms'])}) | {big_ms:.1f} ms | < {GOAL_BIG_MS:.0f} ms | {ok(big_ms < GOAL_BIG_MS)} |")
    w.append(f"| fixed pack overhead (the container around the frames), worst pack | {kb(max(overheads))} | < 1 KB | {ok(max(overheads) < 1000)} |")
    w.append("")
    w.append("| pair | index | manifest (whole: identity / zstd) | pack (of which the container) | blobs | other | all requests | patch-from | (manifest + pack) ÷ patch-from |")
    w.append("|:--|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in rows + [dict(big, old=f"synthetic {BIG_FILES:,} files, one changed", new="",
                          mp=big["bytes"].get("manifest", 0) + big["bytes"].get("pack", 0) + big["bytes"].get("blobs", 0))]:
        b = r["bytes"]
        whole = r.get("manifest_whole") or {}
        whole_text = f" ({kb(whole['identity'])} / {kb(whole['zstd'])})" if whole else ""
        pair = f"{r['old']} → {r['new']}" if r["new"] else r["old"]
        w.append(f"| {pair} | {kb(b.get('index', 0))} | {kb(b.get('manifest', 0))}{whole_text} | "
                 f"{kb(b.get('pack', 0))} ({kb(r['pack_overhead'])}) | {kb(b.get('blobs', 0))} | {kb(b.get('other', 0))} | "
                 f"{kb(r['total'])} | {kb(r['lower'])} | {r['mp'] / r['lower']:.2f}× |")
    w.append("")
    w.append(f"The manifest column is what the device downloaded: the manifest as a zstd-encoded release "
             f"delta from the release it held (`GET /v1/manifests/{{to}}/delta/{{from}}`); in brackets "
             f"what the whole manifest costs, as JSON and zstd-encoded, for a device without the base. "
             f"The 5,000-file update took {', '.join(f'{x:.1f}' for x in big['ms'])} ms "
             f"({big['cold_ms']:.1f} ms for the first device, which made the server build and encode "
             f"the delta); method {big['method']}. Where the time goes, against the "
             f"{kb(big['total'])} on the wire. Medians, in ms: "
             + "; ".join(f"{k} {v:.1f}" for k, v in big["where_ms"].items()) + ".")
    w.append("")
    return "\n".join(w)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--baleen", required=True, type=Path)
    ap.add_argument("--device", required=True, type=Path)
    ap.add_argument("--webapps", required=True, type=Path)
    ap.add_argument("--work", required=True, type=Path)
    ap.add_argument("--command", default="scripts/bench")
    ap.add_argument("--results", type=Path)
    ap.add_argument("out", type=Path)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    ctx = Ctx(args.baleen, args.work)
    apps = B.read_lock(ROOT / "scripts" / "webapps.lock", args.webapps)
    names = APPS_QUICK if args.quick else APPS_FULL
    try:
        log("web-app pairs")
        rows = bench_pairs(ctx, args.device, apps, names)
        log(f"one-file change to {BIG_FILES} files")
        big = bench_big(ctx, args.device)
    finally:
        ctx.procs.stop_all()
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps({"pairs": rows, "big": big}, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(rows, big, args.command))
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
