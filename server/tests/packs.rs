//! Full and diff packs over HTTP, unpacked the way a device does, on hand-made and real builds.

#![allow(clippy::unwrap_used)]

#[path = "support/harness.rs"]
mod harness;

use std::collections::BTreeMap;
use std::io::Read;

use harness::{TestServer, zip, zip_build};
use manifests::{
    Digest, Encoding, ExpectedPack, PACK_INDEX_ENTRY, PackIndex, PackReader, Release,
    verify_release,
};

const ROUTE: &str = "routes=https://m.example.com/app/";

fn release(s: &TestServer, version: &str) -> Release {
    let digest = manifest_digest(s, version);
    let manifest = s.admin_get(&format!("/v1/manifests/{digest}"));
    verify_release(&manifest.body, &s.trusted(), Some(&digest))
        .unwrap()
        .release
}

/// Unpacks a pack on top of `held` blobs with the device's reader, checking every result against
/// its digest.
fn unpack(pack: &[u8], held: &BTreeMap<Digest, Vec<u8>>) -> (PackIndex, BTreeMap<Digest, Vec<u8>>) {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(pack)).unwrap();
    for i in 0..archive.len() {
        let file = archive.by_index(i).unwrap();
        let name = file.name().unwrap().into_owned();
        assert_eq!(file.compression(), zip::CompressionMethod::Stored, "{name}");
    }
    let mut json = Vec::new();
    archive
        .by_name(PACK_INDEX_ENTRY)
        .unwrap()
        .read_to_end(&mut json)
        .unwrap();
    let index = manifests::parse_pack_index(&json).unwrap();
    let sizes = index.blobs.iter().map(|b| (b.sha256, b.size)).collect();
    // A zip pack names its blobs itself: no delivery order is needed to read it.
    let expected = ExpectedPack {
        to_manifest: index.to_manifest,
        from_manifest: index.from_manifest,
        blobs: &sizes,
        order: &[],
        from_blobs: &[],
    };
    (index, read_all(pack, &expected, held))
}

/// Every blob of `pack` read with the device's reader, each checked against its digest.
fn read_all(
    pack: &[u8],
    expected: &ExpectedPack<'_>,
    held: &BTreeMap<Digest, Vec<u8>>,
) -> BTreeMap<Digest, Vec<u8>> {
    let mut reader = PackReader::open(pack, expected).unwrap();
    let mut out = BTreeMap::new();
    for blob in reader.blobs(|_| true, |base| held.get(base).cloned()) {
        let (sha256, bytes) = blob.unwrap();
        assert_eq!(Digest::of(&bytes), sha256);
        out.insert(sha256, bytes);
    }
    out
}

/// Unpacks a compact pack from `from` (none: a full pack) to `to` as a device that holds `held`
/// does, knowing the two releases; returns whether it was a full pack, and the blobs.
fn unpack_compact(
    s: &TestServer,
    pack: &[u8],
    from: Option<&Release>,
    to: &Release,
    held: &BTreeMap<Digest, Vec<u8>>,
) -> (bool, BTreeMap<Digest, Vec<u8>>) {
    assert!(pack.starts_with(&manifests::COMPACT_MAGIC));
    let sizes = to.files.values().map(|f| (f.sha256, f.size)).collect();
    let order = to.blob_order();
    let from_blobs = from.map(Release::sorted_blobs).unwrap_or_default();
    let expected = ExpectedPack {
        to_manifest: manifest_digest(s, &to.version.to_string()),
        from_manifest: from.map(|f| manifest_digest(s, &f.version.to_string())),
        blobs: &sizes,
        order: &order,
        from_blobs: &from_blobs,
    };
    let full = PackReader::open(pack, &expected).unwrap().is_full();
    (full, read_all(pack, &expected, held))
}

fn manifest_digest(s: &TestServer, version: &str) -> Digest {
    let list = s.admin_get("/v1/admin/packages/app/releases").json();
    let digest = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["version"] == version)
        .unwrap()["manifest_digest"]
        .as_str()
        .unwrap()
        .to_owned();
    Digest::parse(&digest).unwrap()
}

fn blobs_of(s: &TestServer, release: &Release) -> BTreeMap<Digest, Vec<u8>> {
    release
        .files
        .values()
        .map(|f| (f.sha256, s.get(&format!("/v1/blobs/{}", f.sha256)).body))
        .collect()
}

fn lorem(seed: u32, words: usize) -> String {
    let vocab = [
        "const", "function", "return", "render", "state", "props", "=>", "{", "}", "(", ")",
        "value", "key", "map",
    ];
    let mut x = seed;
    (0..words)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            vocab[(x >> 20) as usize % vocab.len()]
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn a_diff_pack_carries_patches_for_changed_and_renamed_files() {
    let s = TestServer::start();
    let vendor = lorem(1, 20_000);
    let app_v1 = lorem(2, 5_000);
    let app_v2 = app_v1.replacen("render", "paint", 3);
    let v1 = zip(&[
        (
            "index.html",
            b"<script src=assets/index-4f9a2c1e.js></script>",
        ),
        ("assets/index-4f9a2c1e.js", app_v1.as_bytes()),
        ("assets/vendor.js", vendor.as_bytes()),
        ("old.txt", b"going away"),
    ]);
    let vendor_v2 = vendor.clone() + " extra";
    let v2 = zip(&[
        (
            "index.html",
            b"<script src=assets/index-9c8d7e6f.js></script>",
        ),
        ("assets/index-9c8d7e6f.js", app_v2.as_bytes()),
        ("assets/vendor.js", vendor_v2.as_bytes()),
        ("new.txt", b"brand new"),
    ]);
    assert_eq!(
        s.publish(
            &s.admin,
            "shop",
            "app",
            &format!("version=1.0.0&{ROUTE}"),
            &v1
        )
        .status,
        201
    );
    assert_eq!(
        s.publish(&s.admin, "shop", "app", "version=1.1.0", &v2)
            .status,
        201
    );
    let (r1, r2) = (release(&s, "1.0.0"), release(&s, "1.1.0"));

    // The final packs, built in the background after the publish.
    s.settle_packs();
    let diff = s.admin_get("/v1/packs/app/1.0.0..1.1.0.zip");
    assert_eq!(diff.status, 200, "{}", diff.text());
    assert_eq!(diff.header("content-type"), Some("application/zip"));
    assert_eq!(
        diff.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    let held = blobs_of(&s, &r1);
    let (index, delivered) = unpack(&diff.body, &held);
    assert_eq!(index.from.as_ref().unwrap().to_string(), "1.0.0");
    let listed = s.admin_get("/v1/admin/packages/app/releases").json();
    assert_eq!(
        index.to_manifest.to_string(),
        listed[0]["manifest_digest"].as_str().unwrap()
    );
    let names = |v: &[manifests::RelPath]| v.iter().map(|p| p.to_string()).collect::<Vec<_>>();
    assert_eq!(names(&index.added), ["assets/index-9c8d7e6f.js", "new.txt"]);
    assert_eq!(names(&index.changed), ["assets/vendor.js", "index.html"]);
    assert_eq!(
        names(&index.removed),
        ["assets/index-4f9a2c1e.js", "old.txt"]
    );

    // The renamed chunk and the grown vendor file travel as patches.
    let patched: Vec<u64> = index
        .blobs
        .iter()
        .filter(|b| matches!(b.encoding, Encoding::Patch { .. }))
        .map(|b| b.size)
        .collect();
    assert!(
        patched.contains(&(app_v2.len() as u64)),
        "renamed chunk is patched: {index:?}"
    );
    assert!(
        patched.contains(&(vendor_v2.len() as u64)),
        "changed file is patched: {index:?}"
    );
    // Every file of 1.1.0 is now on the device, byte for byte.
    for (path, file) in &r2.files {
        let bytes = delivered
            .get(&file.sha256)
            .or_else(|| held.get(&file.sha256))
            .unwrap_or_else(|| panic!("{path} missing"));
        assert_eq!(Digest::of(bytes), file.sha256);
    }

    let full = s.admin_get("/v1/packs/app/1.1.0.zip");
    assert_eq!(full.status, 200);
    let (full_index, all) = unpack(&full.body, &BTreeMap::new());
    assert!(full_index.from.is_none());
    assert_eq!(all.len(), r2.files.len());
    assert!(
        diff.body.len() * 4 < full.body.len(),
        "diff {} vs full {}",
        diff.body.len(),
        full.body.len()
    );

    // A second request gets the stored pack.
    let again = s.admin_get("/v1/packs/app/1.0.0..1.1.0.zip");
    assert_eq!(again.body, diff.body);
    let etag = again.header("etag").unwrap().to_owned();
    assert_eq!(
        s.admin_get_with(
            "/v1/packs/app/1.0.0..1.1.0.zip",
            &[("If-None-Match", &etag)]
        )
        .status,
        304
    );
    let part = s.admin_get_with("/v1/packs/app/1.1.0.zip", &[("Range", "bytes=0-99")]);
    assert_eq!(
        (part.status, part.body.as_slice()),
        (206, &full.body[..100])
    );

    // The compact packs carry the same blobs, without pack.json and zip headers.
    let compact = s.admin_get("/v1/packs/app/1.0.0..1.1.0.bpk");
    assert_eq!(compact.status, 200, "{}", compact.text());
    assert_eq!(
        compact.header("content-type"),
        Some("application/vnd.baleen.pack")
    );
    assert_eq!(
        compact.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    let (full_pack, compact_delivered) = unpack_compact(&s, &compact.body, Some(&r1), &r2, &held);
    assert!(!full_pack);
    assert_eq!(compact_delivered, delivered);
    let json = manifests::to_canonical(&index).unwrap();
    assert!(
        compact.body.len() + json.len() < diff.body.len(),
        "compact {} vs zip {} with a pack.json of {}",
        compact.body.len(),
        diff.body.len(),
        json.len()
    );
    let tag = compact.header("etag").unwrap().to_owned();
    assert_eq!(tag, format!("{}.bpk\"", etag.trim_end_matches('"')));
    assert_eq!(
        s.admin_get_with("/v1/packs/app/1.0.0..1.1.0.bpk", &[("If-None-Match", &tag)])
            .status,
        304
    );
    let full_compact = s.admin_get("/v1/packs/app/1.1.0.bpk");
    let (full_pack, everything) = unpack_compact(&s, &full_compact.body, None, &r2, &held);
    assert!(full_pack);
    assert_eq!(everything, all);
    // Resumable: a range of the compact pack is that range of its bytes.
    let part = s.admin_get_with("/v1/packs/app/1.1.0.bpk", &[("Range", "bytes=10-")]);
    assert_eq!(
        (part.status, part.body.as_slice()),
        (206, &full_compact.body[10..])
    );
    assert_eq!(
        s.admin_get_with("/v1/packs/app/1.1.0.bpk", &[("Range", "bytes=999999999-")])
            .status,
        416
    );
}

#[test]
fn a_tiny_release_answers_its_diff_request_with_the_smaller_full_pack() {
    let s = TestServer::start();
    let page = |n: u32| format!("<!doctype html><title>tiny</title><p>{}</p>", lorem(n, 150));
    let (v1, v2) = (page(7), page(8));
    assert_eq!(
        s.publish(
            &s.admin,
            "shop",
            "app",
            &format!("version=1.0.0&{ROUTE}"),
            &zip(&[("index.html", v1.as_bytes())])
        )
        .status,
        201
    );
    assert_eq!(
        s.publish(
            &s.admin,
            "shop",
            "app",
            "version=1.0.1",
            &zip(&[("index.html", v2.as_bytes())])
        )
        .status,
        201
    );
    s.settle_packs();
    let full = s.admin_get("/v1/packs/app/1.0.1.zip");
    let diff = s.admin_get("/v1/packs/app/1.0.0..1.0.1.zip");
    assert_eq!((full.status, diff.status), (200, 200));
    // The diff would carry the whole page and a pack.json naming both releases: no smaller than
    // the full pack, so the full pack answers for it.
    assert_eq!(diff.body, full.body);
    let (index, blobs) = unpack(&diff.body, &BTreeMap::new());
    assert_eq!(index.from_manifest, None);
    assert_eq!(blobs.values().next().unwrap(), v2.as_bytes());
    // So does its compact form, which a device expecting the diff reads as a full pack.
    let compact = s.admin_get("/v1/packs/app/1.0.0..1.0.1.bpk");
    assert_eq!(compact.body, s.admin_get("/v1/packs/app/1.0.1.bpk").body);
    let (r1, r2) = (release(&s, "1.0.0"), release(&s, "1.0.1"));
    let (full, compact_blobs) = unpack_compact(&s, &compact.body, Some(&r1), &r2, &BTreeMap::new());
    assert!(full);
    assert_eq!(compact_blobs, blobs);
}

#[test]
fn bad_pack_requests_are_refused() {
    let s = TestServer::start();
    let build = harness::build("v1");
    assert_eq!(
        s.publish(
            &s.admin,
            "shop",
            "app",
            &format!("version=1.0.0&{ROUTE}"),
            &zip_build(&build)
        )
        .status,
        201
    );
    for (path, status, code) in [
        ("/v1/packs/app/2.0.0.zip", 404, "not_found"),
        ("/v1/packs/app/0.9.0..1.0.0.zip", 404, "not_found"),
        ("/v1/packs/nope/1.0.0.zip", 404, "not_found"),
        ("/v1/packs/app/1.0.0..1.0.0.zip", 404, "not_found"),
        ("/v1/packs/app/1.0.0.tar", 404, "not_found"),
        ("/v1/packs/app/one.zip", 422, "invalid_version"),
        ("/v1/packs/app/2.0.0.bpk", 404, "not_found"),
        ("/v1/packs/app/1.0.0..1.0.0.bpk", 404, "not_found"),
        ("/v1/packs/app/one.bpk", 422, "invalid_version"),
    ] {
        let r = s.admin_get(path);
        assert_eq!(
            (r.status, r.code().as_str()),
            (status, code),
            "{path}: {}",
            r.text()
        );
    }
}

/// Real builds no one here wrote: consecutive swagger-ui-dist releases from the npm registry,
/// fetched by `scripts/fetch-webapps.sh` (CI sets BALEEN_WEBAPPS to its cache dir).
#[test]
fn real_release_diff_pack_is_a_small_fraction_of_a_zip() {
    let Some(cache) = std::env::var_os("BALEEN_WEBAPPS") else {
        eprintln!(
            "skipped: set BALEEN_WEBAPPS to the cache dir printed by scripts/fetch-webapps.sh"
        );
        return;
    };
    let cache = std::path::PathBuf::from(cache);
    let (old_dir, new_dir) = (
        cache.join("swagger-ui-dist@5.33.3/package"),
        cache.join("swagger-ui-dist@5.34.0/package"),
    );
    assert!(
        old_dir.is_dir() && new_dir.is_dir(),
        "run scripts/fetch-webapps.sh swagger-ui-dist"
    );
    let read_zip = |dir: &std::path::Path| {
        let mut file = server::remote::zip_dir(dir).unwrap();
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).unwrap();
        bytes
    };
    let (old_zip, new_zip) = (read_zip(&old_dir), read_zip(&new_dir));
    let s = TestServer::start();
    for (query, zip) in [
        (format!("version=5.33.3&{ROUTE}"), &old_zip),
        ("version=5.34.0".to_owned(), &new_zip),
    ] {
        let r = s.publish(&s.admin, "shop", "app", &query, zip);
        assert_eq!(r.status, 201, "{query}: {}", r.text());
    }
    let (r1, r2) = (release(&s, "5.33.3"), release(&s, "5.34.0"));
    s.settle_packs();
    let diff = s.admin_get("/v1/packs/app/5.33.3..5.34.0.zip").body;
    let held = blobs_of(&s, &r1);
    let (_, delivered) = unpack(&diff, &held);
    for file in r2.files.values() {
        assert!(delivered.contains_key(&file.sha256) || held.contains_key(&file.sha256));
    }
    let ratio = diff.len() as f64 / new_zip.len() as f64;
    eprintln!(
        "swagger-ui-dist 5.33.3 -> 5.34.0: diff pack {} bytes, deflate zip {} bytes, ratio {ratio:.4}",
        diff.len(),
        new_zip.len()
    );
    assert!(ratio < 0.1, "diff pack is {ratio:.3} of a zip");
}

/// Releases 1.0.0, 1.1.0, … of a page large enough for the fast and the final packs to differ.
fn publish_releases(s: &TestServer, count: usize) {
    let v1 = lorem(11, 60_000);
    for n in 0..count {
        let body = v1.replacen("render", "paint", n * 5) + &" and more".repeat(n);
        let query = match n {
            0 => format!("version=1.0.0&{ROUTE}"),
            n => format!("version=1.{n}.0"),
        };
        let files = zip(&[
            ("index.html", b"<script src=app.js></script>".as_slice()),
            ("app.js", body.as_bytes()),
            ("vendor.js", lorem(12, 40_000).as_bytes()),
        ]);
        let r = s.publish(&s.admin, "shop", "app", &query, &files);
        assert_eq!(r.status, 201, "{query}: {}", r.text());
    }
}

#[test]
fn a_manifest_delta_is_named_by_its_own_bytes_in_each_coding() {
    let s = TestServer::start();
    publish_two(&s);
    let (m1, m2) = (manifest_digest(&s, "1.0.0"), manifest_digest(&s, "1.1.0"));
    let path = format!("/v1/manifests/{m2}/delta/{m1}");
    let plain = s.admin_get(&path);
    assert_eq!(plain.status, 200, "{}", plain.text());
    let named = Digest::of(&plain.body);
    assert_eq!(plain.header("etag"), Some(format!("\"{named}\"").as_str()));
    let zstd = s.admin_get_with(&path, &[("Accept-Encoding", "zstd")]);
    assert_eq!(zstd.header("content-encoding"), Some("zstd"));
    let tag = zstd.header("etag").unwrap().to_owned();
    assert_eq!(tag, format!("\"{named}.zst\""));
    let again = s.admin_get_with(
        &path,
        &[("Accept-Encoding", "zstd"), ("If-None-Match", &tag)],
    );
    assert_eq!(again.status, 304);
}

fn publish_two(s: &TestServer) {
    publish_releases(s, 2);
}

#[test]
fn the_fast_pack_answers_until_the_final_pack_replaces_it_and_both_read_back() {
    let s =
        TestServer::start_with(|settings| settings.pack_wait = std::time::Duration::from_secs(60));
    // No final build may start yet: the fast packs are all there is.
    let held_finals = s
        .block_on(s.service.pack_builds().hold_final_builds())
        .unwrap();
    publish_two(&s);
    let (r1, r2) = (release(&s, "1.0.0"), release(&s, "1.1.0"));
    let held = blobs_of(&s, &r1);
    let path = "/v1/packs/app/1.0.0..1.1.0.zip";

    let fast = s.admin_get(path);
    assert_eq!(fast.status, 200, "{}", fast.text());
    // Caches keep the fast pack briefly only; its ETag names its bytes.
    assert_eq!(fast.header("cache-control"), Some("public, max-age=30"));
    let fast_tag = fast.header("etag").unwrap().to_owned();
    assert_eq!(fast_tag, format!("\"{}\"", Digest::of(&fast.body)));
    let (index, delivered) = unpack(&fast.body, &held);
    assert_eq!(index.from.as_ref().unwrap().to_string(), "1.0.0");
    for file in r2.files.values() {
        assert!(delivered.contains_key(&file.sha256) || held.contains_key(&file.sha256));
    }
    assert_eq!(
        s.admin_get_with(path, &[("If-None-Match", &fast_tag)])
            .status,
        304
    );
    // The fast pack's compact form is cached as briefly, served whole whatever the range.
    let compact_path = "/v1/packs/app/1.0.0..1.1.0.bpk";
    let fast_compact = s.admin_get_with(compact_path, &[("Range", "bytes=10-")]);
    assert_eq!(fast_compact.status, 200);
    assert_eq!(
        fast_compact.header("cache-control"),
        Some("public, max-age=30")
    );
    let (_, compact_delivered) = unpack_compact(&s, &fast_compact.body, Some(&r1), &r2, &held);
    assert_eq!(compact_delivered, delivered);

    drop(held_finals);
    s.settle_packs();
    let last = s.admin_get(path);
    assert_eq!(last.status, 200);
    assert_eq!(
        last.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_ne!(last.body, fast.body, "the final pack replaced the fast one");
    assert!(last.body.len() <= fast.body.len());
    // A cache revalidating with the fast pack's ETag gets the final pack.
    let revalidated = s.admin_get_with(path, &[("If-None-Match", &fast_tag)]);
    assert_eq!((revalidated.status, &revalidated.body), (200, &last.body));
    let (index, delivered) = unpack(&last.body, &held);
    assert_eq!(index.to_manifest, unpack(&fast.body, &held).0.to_manifest);
    for file in r2.files.values() {
        assert!(delivered.contains_key(&file.sha256) || held.contains_key(&file.sha256));
    }
    // The compact form follows: the final pack's, under another ETag.
    let last_compact = s.admin_get(compact_path);
    assert_eq!(
        last_compact.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_ne!(last_compact.header("etag"), fast_compact.header("etag"));
    let (_, compact_delivered) = unpack_compact(&s, &last_compact.body, Some(&r1), &r2, &held);
    assert_eq!(compact_delivered, delivered);
}

#[test]
fn fast_packs_let_go_for_the_memory_budget_are_built_again_when_asked_for() {
    // Room for no fast pack but the newest: every other one is let go as soon as the next is
    // built, while no final pack may be built.
    let s = TestServer::start_with(|settings| {
        settings.pack_wait = std::time::Duration::from_secs(60);
        settings.fast_pack_memory_bytes = 1;
    });
    let held_finals = s
        .block_on(s.service.pack_builds().hold_final_builds())
        .unwrap();
    publish_releases(&s, 3);
    let r1 = release(&s, "1.0.0");
    let held = blobs_of(&s, &r1);
    for path in [
        "/v1/packs/app/1.0.0..1.2.0.zip",
        "/v1/packs/app/1.1.0..1.2.0.zip",
        "/v1/packs/app/1.0.0..1.1.0.zip",
    ] {
        let fast = s.admin_get(path);
        assert_eq!(fast.status, 200, "{path}: {}", fast.text());
        assert_eq!(fast.header("cache-control"), Some("public, max-age=30"));
        if path.starts_with("/v1/packs/app/1.0.0..") {
            unpack(&fast.body, &held);
        }
        // One fast pack at a time is held, whatever was asked for.
        assert_eq!(s.service.pack_builds().fast_held(), 1);
    }
    drop(held_finals);
    s.settle_packs();
    assert_eq!(s.service.pack_builds().fast_bytes(), 0);
}

#[test]
fn a_pack_not_ready_is_answered_503_at_once_and_requests_start_a_bounded_number_of_builds() {
    // Requests may start no build, and wait for none.
    let s = TestServer::start_with(|settings| {
        settings.pack_wait = std::time::Duration::ZERO;
        settings.max_requested_pack_builds = 0;
    });
    publish_two(&s);
    s.settle_packs();
    // A pack no publish builds: the way back from 1.1.0 to 1.0.0.
    let path = "/v1/packs/app/1.1.0..1.0.0.zip";
    let r = s.admin_get(path);
    assert_eq!(
        (r.status, r.code().as_str()),
        (503, "pack_not_ready"),
        "{}",
        r.text()
    );
    assert_eq!(r.header("retry-after"), Some("5"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(
        s.service.pack_builds().jobs(),
        0,
        "the bound let nothing start"
    );
    // Packs of releases that do not exist are still 404, not "not ready".
    assert_eq!(s.admin_get("/v1/packs/app/0.1.0..1.0.0.zip").status, 404);

    // With room for one requested build, the request starts it and is answered at once; the build
    // goes on without the request, and the pack is served once it is done.
    let s = TestServer::start_with(|settings| {
        settings.pack_wait = std::time::Duration::ZERO;
        settings.max_requested_pack_builds = 1;
    });
    publish_releases(&s, 3);
    s.settle_packs();
    let held_finals = s
        .block_on(s.service.pack_builds().hold_final_builds())
        .unwrap();
    let first = s.admin_get(path);
    assert_eq!(first.status, 503, "{}", first.text());
    assert_eq!(s.service.pack_builds().jobs(), 1);
    // The one room is taken (the job waits for its final stage): another pack starts nothing.
    let other = s.admin_get("/v1/packs/app/1.2.0..1.0.0.zip");
    assert_eq!(other.status, 503, "{}", other.text());
    assert_eq!(s.service.pack_builds().jobs(), 1);
    drop(held_finals);
    s.settle_packs();
    let built = s.admin_get(path);
    assert_eq!(built.status, 200, "{}", built.text());
    let (index, _) = unpack(&built.body, &blobs_of(&s, &release(&s, "1.1.0")));
    assert_eq!(index.to.to_string(), "1.0.0");
}

#[test]
fn without_a_token_only_what_was_released_to_devices_is_readable() {
    let s = TestServer::start();
    let publish = |version: &str, channel: bool| {
        let files = zip_build(&[("index.html".to_owned(), version.as_bytes().to_vec())]);
        let to_channel = if channel { "&channel=production" } else { "" };
        let r = s.publish(
            &s.admin,
            "shop",
            "app",
            &format!("version={version}{to_channel}&{ROUTE}"),
            &files,
        );
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()["release"]["manifest_digest"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let m1 = publish("1.0.0", true);
    let m2 = publish("1.1.0", false); // a dev build, never on a channel
    let m3 = publish("1.2.0", true);
    s.settle_packs();

    // Released: readable by devices.
    assert_eq!(s.get(&format!("/v1/manifests/{m1}")).status, 200);
    assert_eq!(s.get(&format!("/v1/manifests/{m3}")).status, 200);
    assert_eq!(s.get("/v1/packs/app/1.0.0..1.2.0.zip").status, 200);
    assert_eq!(s.get("/v1/packs/app/1.2.0.zip").status, 200);
    assert_eq!(s.get(&format!("/v1/manifests/{m3}/delta/{m1}")).status, 200);
    // Never released: no manifest, delta or pack without a token, and nothing is built.
    let builds = |s: &TestServer| s.admin_get("/metrics").text();
    let before = builds(&s);
    for path in [
        format!("/v1/manifests/{m2}"),
        format!("/v1/manifests/{m3}/delta/{m2}"),
        "/v1/packs/app/1.1.0.zip".to_owned(),
        "/v1/packs/app/1.0.0..1.1.0.zip".to_owned(),
        "/v1/packs/app/1.1.0..1.2.0.zip".to_owned(),
        "/v1/packs/app/1.1.0.bpk".to_owned(),
        "/v1/packs/app/1.0.0..1.1.0.bpk".to_owned(),
    ] {
        let r = s.get(&path);
        assert_eq!(
            (r.status, r.code()),
            (401, "unauthorized".to_owned()),
            "{path}"
        );
        assert!(r.text().contains("needs a token"), "{path}: {}", r.text());
    }
    let after = builds(&s);
    let count = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("baleen_pack_builds_total"))
            .map(str::to_owned)
    };
    assert!(count(&before).is_some(), "{before}");
    assert_eq!(count(&before), count(&after), "no build was started");
    // A bad token is refused, not taken for none; a good one reads everything.
    let bad = s.get_with(
        "/v1/packs/app/1.1.0.zip",
        &[("Authorization", "Bearer baleen_00")],
    );
    assert_eq!(bad.status, 401);
    assert_eq!(s.admin_get(&format!("/v1/manifests/{m2}")).status, 200);
    assert_eq!(s.admin_get("/v1/packs/app/1.0.0..1.1.0.zip").status, 200);
}
