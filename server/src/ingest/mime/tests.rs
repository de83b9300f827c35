use expect_test::expect;

use super::*;

fn mime(path: &str) -> String {
    let path = RelPath::parse(path).expect("test paths are valid");
    mime_for(&path).as_str().to_owned()
}

#[test]
fn every_entry_parses_and_the_table_is_sorted_without_repeats() {
    for pair in TABLE.windows(2) {
        assert!(
            pair[0].0 < pair[1].0,
            "{:?} then {:?}",
            pair[0].0,
            pair[1].0
        );
    }
    for (ext, text) in TABLE {
        assert_eq!(*ext, ext.to_ascii_lowercase());
        assert!(MimeType::parse(text).is_ok(), "{ext}: {text}");
    }
    assert!(MimeType::parse(FALLBACK).is_ok());
}

#[test]
fn web_build_files() {
    let paths = [
        "index.html",
        "legacy.htm",
        "assets/app.3f2a1b.js",
        "worker.mjs",
        "server.cjs",
        "assets/app.css",
        "data.json",
        "assets/app.js.map",
        "logo.svg",
        "a.png",
        "b.jpg",
        "c.jpeg",
        "d.gif",
        "e.webp",
        "f.avif",
        "favicon.ico",
        "fonts/x.woff",
        "fonts/x.woff2",
        "fonts/x.ttf",
        "fonts/x.otf",
        "fonts/x.eot",
        "app.wasm",
        "robots.txt",
        "sitemap.xml",
        "doc.pdf",
        "a.mp3",
        "a.mp4",
        "a.webm",
        "a.ogg",
        "a.wav",
        "README.md",
        "table.csv",
        "cmaps/UniGB-UCS2-H.bcmap",
        "standard_fonts/FoxitDingbats.pfb",
        "site.webmanifest",
        "app.manifest",
    ];
    let table: String = paths
        .iter()
        .map(|p| format!("{p:<34} {}\n", mime(p)))
        .collect();
    expect![[r#"
        index.html                         text/html; charset=utf-8
        legacy.htm                         text/html; charset=utf-8
        assets/app.3f2a1b.js               text/javascript; charset=utf-8
        worker.mjs                         text/javascript; charset=utf-8
        server.cjs                         text/javascript; charset=utf-8
        assets/app.css                     text/css; charset=utf-8
        data.json                          application/json; charset=utf-8
        assets/app.js.map                  application/json; charset=utf-8
        logo.svg                           image/svg+xml; charset=utf-8
        a.png                              image/png
        b.jpg                              image/jpeg
        c.jpeg                             image/jpeg
        d.gif                              image/gif
        e.webp                             image/webp
        f.avif                             image/avif
        favicon.ico                        image/x-icon
        fonts/x.woff                       font/woff
        fonts/x.woff2                      font/woff2
        fonts/x.ttf                        font/ttf
        fonts/x.otf                        font/otf
        fonts/x.eot                        application/vnd.ms-fontobject
        app.wasm                           application/wasm
        robots.txt                         text/plain; charset=utf-8
        sitemap.xml                        application/xml; charset=utf-8
        doc.pdf                            application/pdf
        a.mp3                              audio/mpeg
        a.mp4                              video/mp4
        a.webm                             video/webm
        a.ogg                              audio/ogg
        a.wav                              audio/wav
        README.md                          text/markdown; charset=utf-8
        table.csv                          text/csv; charset=utf-8
        cmaps/UniGB-UCS2-H.bcmap           application/octet-stream
        standard_fonts/FoxitDingbats.pfb   application/x-font-type1
        site.webmanifest                   application/manifest+json; charset=utf-8
        app.manifest                       application/manifest+json; charset=utf-8
    "#]]
    .assert_eq(&table);
}

#[test]
fn extension_case_does_not_matter() {
    assert_eq!(mime("INDEX.HTML"), "text/html; charset=utf-8");
    assert_eq!(mime("Photo.JPG"), "image/jpeg");
    assert_eq!(mime("x.WoFf2"), "font/woff2");
}

#[test]
fn unknown_or_missing_extensions_are_octet_stream() {
    for path in [
        "LICENSE",
        "Makefile",
        ".htaccess",
        "archive.tar.gz",
        "x.exe",
        "dir.v2/file",
        "trailing.",
        "a.jsx",
    ] {
        assert_eq!(mime(path), FALLBACK, "{path}");
    }
}
