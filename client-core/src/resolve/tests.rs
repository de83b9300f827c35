//! The resolver as a table of URLs.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;

use expect_test::{Expect, expect};
use manifests::{
    Digest, FileEntry, HostRequirement, MimeType, PackageId, RelPath, Release, ReleaseVersion,
    Route, Timestamp, UrlPrefix,
};

use super::{Resolver, Table};

fn release(package: &str, prefixes: &[&str], spa: bool, files: &[&str]) -> Release {
    let files: BTreeMap<RelPath, FileEntry> = files
        .iter()
        .map(|p| {
            let mime = if p.ends_with(".html") {
                "text/html; charset=utf-8"
            } else {
                "text/javascript"
            };
            (
                RelPath::parse(p).unwrap(),
                FileEntry {
                    sha256: Digest::of(format!("{package}/{p}").as_bytes()),
                    size: p.len() as u64,
                    mime: MimeType::parse(mime).unwrap(),
                },
            )
        })
        .collect();
    let entry = RelPath::parse("index.html").unwrap();
    Release {
        package: PackageId::parse(package).unwrap(),
        version: ReleaseVersion::parse("1.0.0").unwrap(),
        files,
        entry: entry.clone(),
        routes: prefixes
            .iter()
            .map(|p| Route {
                prefix: UrlPrefix::parse(p).unwrap(),
                fallback: spa.then(|| entry.clone()),
            })
            .collect(),
        requires: HostRequirement::any(),
        created_at: Timestamp::from_unix_secs(0),
        notes: String::new(),
        source_revision: None,
    }
}

fn resolver() -> Resolver {
    let r = Resolver::new(Some("baleen"));
    let releases = [
        release(
            "checkout",
            &["https://m.example.com/checkout/"],
            true,
            &["index.html", "app.js", "a b/ü.js", "docs/index.html"],
        ),
        release(
            "shop",
            &["https://m.example.com/", "http://127.0.0.1:8080/shop/"],
            false,
            &["index.html", "checkout/old.js", "main.js"],
        ),
    ];
    r.publish(Table::of_releases(&releases, Path::new("/store/blobs")));
    r
}

#[track_caller]
fn check(url: &str, expect: Expect) {
    let got = match resolver().resolve(url) {
        Some(hit) => {
            let file = hit.path.file_name().unwrap().to_str().unwrap()[..8].to_owned();
            let name = [
                "checkout/index.html",
                "checkout/app.js",
                "checkout/a b/ü.js",
                "checkout/docs/index.html",
                "shop/index.html",
                "shop/checkout/old.js",
                "shop/main.js",
            ]
            .into_iter()
            .find(|n| Digest::of(n.as_bytes()).to_string().starts_with(&file))
            .unwrap_or("?");
            format!("{} {name} ({})", hit.package, hit.mime)
        }
        None => "miss".to_owned(),
    };
    expect.assert_eq(&got);
}

#[test]
fn urls_resolve_to_files_of_the_active_release() {
    check(
        "https://m.example.com/checkout/app.js",
        expect!["checkout checkout/app.js (text/javascript)"],
    );
    check(
        "https://m.example.com/checkout/",
        expect!["checkout checkout/index.html (text/html; charset=utf-8)"],
    );
    check(
        "https://m.example.com/checkout/app.js?v=3#top",
        expect!["checkout checkout/app.js (text/javascript)"],
    );
    check(
        "HTTPS://M.EXAMPLE.COM:443/checkout/app.js",
        expect!["checkout checkout/app.js (text/javascript)"],
    );
    check(
        "https://m.example.com/checkout/a%20b/%C3%BC.js",
        expect!["checkout checkout/a b/ü.js (text/javascript)"],
    );
    check(
        "https://m.example.com/checkout/docs/",
        expect!["checkout checkout/docs/index.html (text/html; charset=utf-8)"],
    );
    check(
        "baleen://m.example.com/checkout/app.js",
        expect!["checkout checkout/app.js (text/javascript)"],
    );
    // The longest prefix wins, whatever the order of packages.
    check(
        "https://m.example.com/main.js",
        expect!["shop shop/main.js (text/javascript)"],
    );
    check(
        "https://m.example.com/",
        expect!["shop shop/index.html (text/html; charset=utf-8)"],
    );
    check(
        "http://127.0.0.1:8080/shop/main.js",
        expect!["shop shop/main.js (text/javascript)"],
    );
}

#[test]
fn single_page_routes_fall_back_to_the_entry_but_assets_do_not() {
    check(
        "https://m.example.com/checkout/orders/42",
        expect!["checkout checkout/index.html (text/html; charset=utf-8)"],
    );
    check("https://m.example.com/checkout/missing.js", expect!["miss"]);
    check("https://m.example.com/nope", expect!["miss"]);
}

#[test]
fn nothing_escapes_and_strangers_miss() {
    check(
        "https://m.example.com/checkout/../shop/main.js",
        expect!["miss"],
    );
    check(
        "https://m.example.com/checkout/%2e%2e/shop/main.js",
        expect!["miss"],
    );
    check("https://m.example.com/checkout/a%2fb", expect!["miss"]);
    check("https://m.example.com/checkout/%ZZ", expect!["miss"]);
    check("https://m.example.com/checkout/%00", expect!["miss"]);
    check("https://m.example.com/checkout/%C3", expect!["miss"]);
    check("https://evil.example.com/checkout/app.js", expect!["miss"]);
    check(
        "https://user@m.example.com/checkout/app.js",
        expect!["miss"],
    );
    check("ftp://m.example.com/checkout/app.js", expect!["miss"]);
    check("other://m.example.com/checkout/app.js", expect!["miss"]);
    check("http://m.example.com:8080/checkout/app.js", expect!["miss"]);
    check("not a url", expect!["miss"]);
    check("", expect!["miss"]);
}

#[test]
fn headers_name_the_release_and_an_empty_table_misses() {
    let hit = resolver()
        .resolve("https://m.example.com/checkout/app.js")
        .unwrap();
    let names: Vec<&str> = hit.headers.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "Content-Type",
            "Content-Length",
            "Cache-Control",
            "X-Baleen-Release"
        ]
    );
    assert_eq!(hit.headers[3].1, "checkout@1.0.0");
    assert!(hit.path.starts_with("/store/blobs"));
    assert!(
        Resolver::new(None)
            .resolve("https://m.example.com/checkout/app.js")
            .is_none()
    );
}

#[test]
fn a_prefix_held_by_one_package_overlaps_for_every_other() {
    let table = Table::of_releases(
        &[
            release(
                "checkout",
                &["https://m.example.com/checkout/"],
                false,
                &["index.html"],
            ),
            release(
                "search",
                &["https://m.example.com/search/"],
                false,
                &["index.html"],
            ),
        ],
        Path::new("/nonexistent"),
    );
    let b = PackageId::parse("b").unwrap();
    let claim = |prefixes: &[&str], package: &PackageId| {
        let prefixes: Vec<String> = prefixes.iter().map(|p| (*p).to_owned()).collect();
        table.overlapping(package, &prefixes)
    };
    // Inside, above, or equal to checkout's prefix: taken.
    for inside in [
        "m.example.com/checkout/pay/",
        "m.example.com/",
        "m.example.com/checkout/",
    ] {
        let (route, taken, owner) = claim(&[inside], &b).expect(inside);
        assert_eq!(
            (route.as_str(), taken.as_str(), owner.as_str()),
            (inside, "m.example.com/checkout/", "checkout")
        );
    }
    // Beside it: free; and a package never conflicts with its own routes.
    assert_eq!(
        claim(&["m.example.com/checkout-b/", "pay.example.com/"], &b),
        None
    );
    let checkout = PackageId::parse("checkout").unwrap();
    assert_eq!(claim(&["m.example.com/checkout/pay/"], &checkout), None);
}

/// What a device expects a pack to deliver, in order, is what the server builds it in: the
/// order the served table works out is the release's, whatever paths share a blob.
#[test]
fn the_served_blob_order_is_the_release_s() {
    let mut release = release(
        "shop",
        &["https://m.example.com/shop/"],
        false,
        &[
            "index.html",
            "b/z.js",
            "B/a.js",
            "a.js",
            "a-b.js",
            "é.js",
            "z/y/x.js",
        ],
    );
    // Two paths share one blob: it is delivered once, at its first path.
    let shared = release.files[&RelPath::parse("z/y/x.js").unwrap()].clone();
    release
        .files
        .insert(RelPath::parse("0.js").unwrap(), shared);
    let served = super::Served::new(&release);
    assert_eq!(served.blob_order(), release.blob_order());
    assert_eq!(served.blob_order().len(), release.files.len() - 1);
}
