"""Drives client-core through its generated Python bindings, exactly as a host app would.

Run by tests/tests/e2e/bindings.rs with a live server. Environment:
  BALEEN_BINDINGS  directory holding client_core.py and libclient_core.so
  BALEEN_SERVER    the server's base URL
  BALEEN_KEY       the trusted public key (hex)
  BALEEN_INGEST_KEY  the app's ingest key, sent with events
  BALEEN_STORE     an empty directory for the device store
  BALEEN_BUILD     the published build directory (release 1.0.0, package checkout)
"""

import json
import os
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.environ["BALEEN_BINDINGS"])
import client_core as baleen  # noqa: E402

ROUTE = "https://m.example.com/checkout/"


class UrllibFetcher(baleen.HostFetcher):
    """The host's own HTTP stack, as OkHttp or URLSession would be."""

    def __init__(self):
        self.calls = 0

    def fetch(self, request):
        self.calls += 1
        req = urllib.request.Request(request.url, data=request.body or None, method=request.method)
        for name, value in request.headers.items():
            req.add_header(name, value)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                body = resp.read(request.max_bytes + 1)
                return baleen.HttpResponse(status=resp.status, headers=dict(resp.headers), body=body)
        except urllib.error.HTTPError as err:
            return baleen.HttpResponse(status=err.code, headers=dict(err.headers), body=err.read())
        except OSError as err:
            raise baleen.FetchFailure.Transport(str(err))


class BrokenFetcher(baleen.HostFetcher):
    """A host fetcher with a bug: it throws something other than FetchFailure."""

    def fetch(self, request):
        raise ValueError("a bug in the host's HTTP stack")


def conditions(network, metered=False, battery=80, charging=False, space=1 << 30):
    return baleen.DeviceConditions(
        network=network,
        metered=metered,
        battery_percent=battery,
        charging=charging,
        low_power_mode=False,
        free_space_bytes=space,
        foreground=True,
    )


def config(keys, store):
    return baleen.ClientConfig(
        dir=store,
        server=os.environ["BALEEN_SERVER"],
        app="shop",
        channel="production",
        device_id="python-device",
        host_version="6.0",
        public_keys=keys,
        threshold=1,
        custom_scheme="baleen",
        max_pending_launches=2,
        sequence_floor=0,
        ingest_key=os.environ["BALEEN_INGEST_KEY"],
    )


def main():
    store = os.environ["BALEEN_STORE"]
    build = os.environ["BALEEN_BUILD"]
    fetcher = UrllibFetcher()
    client = baleen.BaleenClient(config([os.environ["BALEEN_KEY"]], store), fetcher)

    assert client.resolve(ROUTE + "index.html") is None, "nothing before the first install"
    # The planner's decisions reach the host: on a metered cellular link a package nobody has
    # opened waits for Wi-Fi; without room it waits for space; offline nothing is fetched.
    report = client.update(conditions(baleen.NetworkType.CELLULAR, metered=True))
    assert report.installed == [], report
    assert [(w.package, w.reason) for w in report.waiting] == [
        ("checkout", baleen.WaitReason.WIFI)
    ], report
    report = client.update(conditions(baleen.NetworkType.WIFI, space=10))
    assert [(w.package, w.reason) for w in report.waiting] == [
        ("checkout", baleen.WaitReason.SPACE)
    ], report
    report = client.update(conditions(baleen.NetworkType.OFFLINE))
    assert report.installed == [], report
    report = client.update(conditions(baleen.NetworkType.WIFI))
    assert [(i.package, i.to) for i in report.installed] == [("checkout", "1.0.0")], report
    assert report.installed[0].downloaded_bytes > 0, report
    assert report.waiting == [], report
    assert fetcher.calls > 0, "the host fetcher was used"

    # A fetcher that throws an arbitrary exception is a retryable network error, never a crash.
    broken = baleen.BaleenClient(config([os.environ["BALEEN_KEY"]], store + "-broken"), BrokenFetcher())
    try:
        broken.update(conditions(baleen.NetworkType.WIFI))
        raise AssertionError("a throwing fetcher did not fail the update")
    except baleen.BaleenError.Network as err:
        assert "host fetcher" in err.detail, err.detail
    assert broken.packages() == []

    checked = 0
    for root, _, names in os.walk(build):
        for name in names:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, build).replace(os.sep, "/")
            with open(path, "rb") as f:
                want = f.read()
            for url in (ROUTE + rel, "baleen://m.example.com/checkout/" + rel):
                hit = client.resolve(url)
                assert hit is not None, url
                assert hit.size == len(want), url
                with open(hit.path, "rb") as f:
                    assert f.read() == want, url
                assert client.resolve_bytes(url) == want, url
            checked += 1
    assert checked >= 4, checked
    assert client.resolve("https://elsewhere.example.com/x.js") is None

    [pkg] = client.packages()
    assert (pkg.package, pkg.active, pkg.pending) == ("checkout", "1.0.0", True), pkg
    client.mark_ready("checkout")
    assert not client.packages()[0].pending
    client.report_open(ROUTE + "index.html", 250)
    assert client.flush_events() >= 1

    # Errors arrive as the variant that tells the host what to do.
    try:
        client.mark_ready("Not A Package")
        raise AssertionError("a bad package id was accepted")
    except baleen.BaleenError.Other:
        pass
    other_key = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"
    stranger = baleen.BaleenClient(config([other_key], store + "-stranger"), None)
    try:
        stranger.check()
        raise AssertionError("an index signed by another key was accepted")
    except baleen.BaleenError.Verification as err:
        assert "trusted key" in err.detail, err.detail

    # A preset shipped in the app: the signed manifest and full pack a build step downloads,
    # seeded into a device that has no network yet; then a quota that evicts it.
    server = os.environ["BALEEN_SERVER"]
    with urllib.request.urlopen(server + "/v1/apps/shop/channels/production/index") as resp:
        index = json.load(resp)
    digest = index["signed"]["packages"]["checkout"]["stable"]["manifest"]
    with urllib.request.urlopen(server + "/v1/manifests/" + digest) as resp:
        manifest = resp.read()
    with urllib.request.urlopen(server + "/v1/packs/checkout/1.0.0.zip") as resp:
        pack = resp.read()
    offline = config([os.environ["BALEEN_KEY"]], store + "-preset")
    offline.server = "http://127.0.0.1:9"
    device = baleen.BaleenClient(offline, None)
    try:
        device.seed(manifest, pack[: len(pack) // 2])
        raise AssertionError("a cut pack was accepted")
    except baleen.BaleenError.Verification:
        pass
    assert device.packages() == [], "nothing installed from a cut pack"
    assert device.seed(manifest, pack) == "1.0.0"
    assert device.seed(manifest, pack) is None, "seeding twice is a no-op"
    assert device.resolve_bytes(ROUTE + "index.html") == client.resolve_bytes(ROUTE + "index.html")
    assert device.set_quota_bytes(1) == ["checkout"], "a one-byte quota evicts the package"
    assert device.resolve(ROUTE + "index.html") is None
    assert device.set_quota_bytes(None) == []

    print("python bindings: ok,", checked, "files resolved")


if __name__ == "__main__":
    main()
