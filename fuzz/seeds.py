#!/usr/bin/env python3
"""Writes the seeds of the device-side fuzz targets from real documents: a `baleen serve --demo`
(its two releases, their manifests, the manifest delta between them, its full and diff packs)
and, when the pinned web apps are cached, the diff pack between two reveal.js releases from the
npm registry. Run by hand when a format changes; the output is committed.

  fuzz/data/manifest-stable.json, manifest-candidate.json   the release_delta target's base and
                                                            target (whole signed envelopes)
  fuzz/corpus/release_delta/demo.delta                      the real delta between them
  fuzz/corpus/pack_read/*.zip                               real packs
  fuzz/corpus/decode/*                                      data.zst frames and patches out of them,
                                                            in the decode target's framing
  fuzz/corpus/resolve/urls-*                                URLs a WebView asks for
  fuzz/corpus/ingest/*.zip                                  uploads: a small build, and the kinds
                                                            of hostile archive the server refuses
  fuzz/corpus/range/*                                       Range headers, in the range target's
                                                            framing (body size first)
  fuzz/corpus/pack_compact/*.bpk                            compact packs for the pack_compact
                                                            target's fixed releases (zstd CLI)

Usage: fuzz/seeds.py BALEEN_BIN [WEBAPPS_DIR]   (standard library only)
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

FUZZ = Path(__file__).resolve().parent


def get(url: str, headers: dict | None = None) -> bytes:
    request = urllib.request.Request(url, headers=headers or {"Accept-Encoding": "identity"})
    with urllib.request.urlopen(request, timeout=60) as r:
        return r.read()


def final_pack(base: str, path: str) -> bytes:
    """The pack at `path`, once its final (level-19) build is served."""
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(base + path, timeout=60) as r:
                if "immutable" in (r.headers.get("Cache-Control") or ""):
                    return r.read()
        except urllib.error.HTTPError as e:
            if e.code not in (503, 408):
                raise
        if time.monotonic() > deadline:
            raise SystemExit(f"{path} was not final within two minutes")
        time.sleep(0.5)


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    print(f"{path.relative_to(FUZZ)}: {len(data):,} bytes")


def decode_seeds(name: str, pack: bytes, blobs: dict[str, bytes]) -> None:
    """The decode target's inputs out of a pack: its solid frame, and each patch with its base."""
    with zipfile.ZipFile(io.BytesIO(pack)) as z:
        index = json.loads(z.read("pack.json"))
        solid = sum(b["size"] for b in index["blobs"] if b["encoding"] == "solid")
        if "data.zst" in z.namelist():
            write(FUZZ / f"corpus/decode/{name}-solid", struct.pack("<IB", solid, 0)
                  + z.read("data.zst"))
        for b in index["blobs"]:
            if b["encoding"] != "patch" or b["base"] not in blobs:
                continue
            base = blobs[b["base"]]
            if len(base) > 0xFFFF:
                continue
            frame = z.read(f"patches/{b['sha256']}.zst")
            write(FUZZ / f"corpus/decode/{name}-patch-{b['sha256'][:8]}",
                  struct.pack("<IBH", b["size"], 2, len(base)) + base + frame)


def demo(baleen: str) -> None:
    proc = subprocess.Popen([baleen, "serve", "--demo", "--listen", "127.0.0.1:0", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        info = json.loads(proc.stdout.readline())
        base = info["listening"]
        index = json.loads(get(f"{base}/v1/apps/{info['app']}/channels/{info['channel']}/index"))
        entry = index["signed"]["packages"][info["package"]]
        stable, candidate = entry["stable"], entry["candidate"]
        old = get(f"{base}/v1/manifests/{stable['manifest']}")
        new = get(f"{base}/v1/manifests/{candidate['manifest']}")
        write(FUZZ / "data/manifest-stable.json", old)
        write(FUZZ / "data/manifest-candidate.json", new)
        write(FUZZ / "corpus/release_delta/demo.delta",
              get(f"{base}/v1/manifests/{candidate['manifest']}/delta/{stable['manifest']}"))
        package, v_old, v_new = info["package"], stable["version"], candidate["version"]
        blobs = {}
        for manifest in (old, new):
            for f in json.loads(manifest)["signed"]["files"].values():
                blobs[f["sha256"]] = get(f"{base}/v1/blobs/{f['sha256']}")
        for name, path in (("demo-full", f"/v1/packs/{package}/{v_new}.zip"),
                           ("demo-diff", f"/v1/packs/{package}/{v_old}..{v_new}.zip")):
            pack = final_pack(base, path)
            write(FUZZ / f"corpus/pack_read/{name}.zip", pack)
            decode_seeds(name, pack, blobs)
        route = json.loads(old)["signed"]["routes"][0]["prefix"]
        urls = [f"{route}index.html", f"{route}assets/app-7d1e0b3a.js?v=1#top", route,
                f"{route}no/such/file.js", route.replace("https://", "baleen://") + "index.html",
                f"{route}..%2Findex.html", f"{route}%69ndex.html"]
        for i, url in enumerate(urls):
            write(FUZZ / f"corpus/resolve/urls-{i}", url.encode())
    finally:
        proc.terminate()
        proc.wait(10)


def reveal(baleen: str, webapps: Path) -> None:
    """A diff pack between two reveal.js releases of the npm registry."""
    trees = [webapps / "reveal.js@6.0.1", webapps / "reveal.js@6.0.2"]
    trees = [t / "package" if (t / "package").is_dir() else t for t in trees]
    if not all((t / "index.html").is_file() for t in trees):
        print("reveal.js not cached (scripts/fetch-webapps.sh reveal.js); skipped")
        return
    work = Path(tempfile.mkdtemp(prefix="baleen-seeds."))
    proc = None
    try:
        data = work / "data"
        run = lambda *a: subprocess.run([baleen, *a], check=True, capture_output=True, text=True)
        run("keys", "generate", "--dir", str(data / "keys"))
        token = run("token", "create", "--data-dir", str(data), "--name", "seeds", "--scope",
                    "admin").stdout.strip()
        proc = subprocess.Popen([baleen, "serve", "--data-dir", str(data), "--listen",
                                 "127.0.0.1:0"], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        base = proc.stdout.readline().strip().removeprefix("listening on ")
        for tree, version in zip(trees, ["6.0.1", "6.0.2"]):
            run("publish", str(tree), "--server", base, "--token", token, "--app", "seeds",
                "--package", "reveal", "--version", version, "--channel", "production",
                "--create-channel", "--route", "https://m.example.com/reveal/")
        pack = final_pack(base, "/v1/packs/reveal/6.0.1..6.0.2.zip")
        write(FUZZ / "corpus/pack_read/reveal-diff.zip", pack)
        blobs = {hashlib.sha256(p.read_bytes()).hexdigest(): p.read_bytes()
                 for p in trees[0].rglob("*") if p.is_file()}
        decode_seeds("reveal-diff", pack, blobs)
    finally:
        if proc:
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def archive(entries: list[tuple[str, bytes, dict]]) -> bytes:
    """A zip of (name, bytes, options): `deflate`, `mode` (unix mode bits) as the options say."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, data, opts in entries:
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED if opts.get("deflate") else zipfile.ZIP_STORED
            info.external_attr = opts.get("mode", 0o100644) << 16
            z.writestr(info, data)
    return out.getvalue()


def archives() -> None:
    """Uploads for the ingest target: a small build, then one of each kind of archive the
    server's hostile-archive tests refuse (server/tests/support/hostile.rs)."""
    page = b"<!doctype html><script src=assets/app.js></script>"
    script = b"export const answer = () => 42;\n" * 40
    build = [("index.html", page, {}), ("assets/app.js", script, {"deflate": True})]
    seeds = {
        "build": build,
        "directories": [("assets/", b"", {"mode": 0o40755}), *build],
        "traversal": [*build, ("../escape.js", b"x", {})],
        "absolute": [*build, ("/etc/escape.js", b"x", {})],
        "backslash": [*build, ("assets\\win.js", b"x", {})],
        "duplicate": [*build, ("index.html", b"again", {})],
        "case-collision": [*build, ("Index.html", page, {})],
        "symlink": [*build, ("link", b"/etc/passwd", {"mode": 0o120777})],
        "ratio": [*build, ("zeros.bin", bytes(1 << 20), {"deflate": True})],
        "empty-name": [*build, ("", b"x", {})],
        "nul-name": [*build, ("a\x00b.js", b"x", {})],
        "dot-segments": [*build, ("assets/./x.js", b"x", {}), ("assets//y.js", b"y", {})],
    }
    for name, entries in seeds.items():
        write(FUZZ / f"corpus/ingest/{name}.zip", archive(entries))
    write(FUZZ / "corpus/ingest/empty.zip", archive([]))
    whole = archive(build)
    write(FUZZ / "corpus/ingest/truncated.zip", whole[: len(whole) // 2])


def ranges() -> None:
    """Range headers for the range target: the body size (8 bytes, little-endian), the header."""
    headers = ["bytes=0-99", "bytes=-10", "bytes=100-", "bytes=0-1,5-6", "bytes=", "bytes=-",
               "items=0-1", " bytes = 5 - 9 ", "bytes=18446744073709551615-", "bytes=9-3",
               "bytes=-0", "bytes=0-18446744073709551616"]
    for i, header in enumerate(headers):
        write(FUZZ / f"corpus/range/header-{i}", struct.pack("<Q", 1000) + header.encode())


def zstd(data: bytes, patch_from: bytes | None = None) -> bytes:
    """A zstd frame of `data` (content size and checksum, as the server writes), optionally
    against a raw prefix."""
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp, "in"), Path(tmp, "out")
        src.write_bytes(data)
        args = ["zstd", "-q", "-19", "-f", str(src), "-o", str(out)]
        if patch_from is not None:
            Path(tmp, "base").write_bytes(patch_from)
            args.append(f"--patch-from={Path(tmp, 'base')}")
        subprocess.run(args, check=True)
        return out.read_bytes()


def compact_seeds() -> None:
    """Compact packs for `fuzz_targets/pack_compact.rs`: its four target blobs (2048, 4096, 0 and
    100 bytes) from a starting release of two blobs, as a diff pack (one patch) and a full pack."""
    base = b"<!doctype html><h1>checkout</h1>\n" * 64
    a = (b"function a() { return 1; }\n" * 80)[:2048]
    b = (base + b"<p>changed</p>\n" * 200)[:4096]
    d = b"<p>tail</p>\n" * 8 + b"xxxx"
    assert (len(a), len(b), len(d)) == (2048, 4096, 100)
    head = b"BLNP\x02"
    to, frm = bytes([1] * 32), bytes([2] * 32)
    # A solid, B a patch against the starting release's blob 1, then C (empty) and D solid.
    diff = head + b"\x01" + to + frm + bytes([2, 3, 4]) + zstd(a + d) + zstd(b, patch_from=base)
    full = head + b"\x00" + to + bytes([8]) + zstd(a + b + d)
    write(FUZZ / "corpus/pack_compact/diff.bpk", diff)
    write(FUZZ / "corpus/pack_compact/full.bpk", full)


def main() -> int:
    if len(sys.argv) not in (2, 3):
        print(__doc__.split("Usage: ")[1].splitlines()[0], file=sys.stderr)
        return 2
    archives()
    ranges()
    compact_seeds()
    demo(sys.argv[1])
    if len(sys.argv) == 3:
        reveal(sys.argv[1], Path(sys.argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
