"""Schemathesis hooks for scripts/api-fuzz.

Two kinds, and nothing else:

- a rule of docs/openapi.json that JSON Schema cannot state, kept by the cases that claim to be
  valid (so that a refusal of one of them is a real finding);
- values that exist on the demo server, mixed into what is generated, so that a share of the
  requests reach real data and the response checks see full answers, not only 404s.
"""

import json
import os
import re
import urllib.request

import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode

# What `baleen serve --demo` publishes (server/src/demo.rs).
DEMO = {"app": "demo", "package": "checkout", "channel": "production"}
DEMO_VERSIONS = ["1.0.0", "1.1.0"]
DEMO_PACKS = ["1.0.0.zip", "1.1.0.zip", "1.0.0..1.1.0.zip"]


def _get_json(path):
    with urllib.request.urlopen(os.environ["BALEEN_FUZZ_URL"] + path, timeout=10) as response:
        return json.load(response)


def _demo_digests():
    """The demo's manifest and blob digests, read from the server the script started."""
    index = _get_json(f"/v1/apps/{DEMO['app']}/channels/{DEMO['channel']}/index")
    entry = index["signed"]["packages"][DEMO["package"]]
    manifests = [entry[k]["manifest"] for k in ("stable", "candidate") if k in entry]
    blobs = set()
    for digest in manifests:
        release = _get_json(f"/v1/manifests/{digest}")
        blobs.update(f["sha256"] for f in release["signed"]["files"].values())
    return {"/v1/manifests/{digest}": manifests, "/v1/blobs/{digest}": sorted(blobs)}


DEMO_DIGESTS = _demo_digests()


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


EVENTS = "/v1/events"


def _is_positive(case):
    return case.meta is None or case.meta.generation.mode == GenerationMode.POSITIVE


@schemathesis.hook("map_case")
def opens_within_their_count(ctx, case):
    """`OpensEvent`: `offline_hits` and `under_1s` are each at most `count`, and so is the sum
    of `paint_ms`.

    JSON Schema cannot compare two fields, so the document states this rule in words; valid cases
    keep to it here, and the server refusing one that breaks it is not a finding.
    """
    if case.operation.path != EVENTS or not _is_positive(case) or not isinstance(case.body, dict):
        return case
    for event in case.body.get("events") or []:
        if isinstance(event, dict) and event.get("kind") == "opens":
            count = event.get("count", 1)
            for field in ("offline_hits", "under_1s"):
                if _is_number(count) and _is_number(event.get(field)) and event[field] > count:
                    event[field] = count
            # `paint_ms` counts at most `count` opens in all: keep the first buckets that fit.
            paints = event.get("paint_ms")
            if _is_number(count) and isinstance(paints, list) and all(map(_is_number, paints)):
                room = count
                for i, n in enumerate(paints):
                    paints[i] = min(n, room)
                    room -= paints[i]
    return case


def _patterns():
    """The document's patterns for the values swapped below, as the server serves them."""
    doc = _get_json("/openapi.json")
    components = doc["components"]
    name = components["schemas"]["Name"]["pattern"]
    return {
        "app": name,
        "package": name,
        "channel": name,
        "version": components["schemas"]["ReleaseVersion"]["pattern"],
        "digest": components["schemas"]["Digest"]["pattern"],
        "name": components["parameters"]["packName"]["schema"]["pattern"],
    }


PATTERNS = {key: re.compile(pattern) for key, pattern in _patterns().items()}


def _swap(container, key, value):
    """`container` with `key` set to `value` if it holds a valid value there already.

    A valid value swapped for another valid one keeps a generated case what it was: a valid case
    stays valid and an invalid one stays invalid, for a reason elsewhere.
    """
    current = container.get(key)
    if isinstance(current, str) and PATTERNS[key].fullmatch(current):
        container[key] = value


@schemathesis.hook
def flatmap_path_parameters(ctx, parameters):
    """Half the time, the demo's app, package, channel, packs and digests."""
    if not isinstance(parameters, dict) or not parameters:
        return st.just(parameters)
    path = ctx.operation.path if ctx.operation is not None else ""

    def demo(digest, pack):
        swapped = dict(parameters)
        for key, value in DEMO.items():
            _swap(swapped, key, value)
        if digest is not None:
            _swap(swapped, "digest", digest)
        _swap(swapped, "name", pack)
        return swapped

    return st.one_of(
        st.just(parameters),
        st.builds(
            demo,
            st.sampled_from(DEMO_DIGESTS.get(path) or [None]),
            st.sampled_from(DEMO_PACKS),
        ),
    )


@schemathesis.hook("flatmap_body")
def events_about_the_demo(ctx, body):
    """Half the time, a batch about the demo's releases, so that statistics have figures."""
    if ctx.operation is None or ctx.operation.path != EVENTS:
        return st.just(body)
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        return st.just(body)

    def demo(versions):
        swapped = dict(body)
        _swap(swapped, "app", DEMO["app"])
        _swap(swapped, "channel", DEMO["channel"])
        # The demo's ingest key (printed by the demo), for a string the schema allows there.
        key = os.environ.get("BALEEN_FUZZ_INGEST_KEY")
        current = swapped.get("ingest_key")
        if key and isinstance(current, str) and len(current) <= 128:
            swapped["ingest_key"] = key
        events = []
        for event, version in zip(body["events"], versions):
            if isinstance(event, dict):
                event = dict(event)
                _swap(event, "package", DEMO["package"])
                _swap(event, "version", version)
            events.append(event)
        swapped["events"] = events
        return swapped

    n = len(body["events"])
    return st.one_of(
        st.just(body),
        st.lists(st.sampled_from(DEMO_VERSIONS), min_size=n, max_size=n).map(demo),
    )
