//! `resolve(url)`, the device's answer to every WebView request, over the demo's release: any
//! URL string gets a file of that release under the blob directory, or nothing; never a panic.
#![no_main]

use std::path::Path;

use client_core::resolve::{Resolver, Table};
use libfuzzer_sys::fuzz_target;

const RELEASE: &[u8] = include_bytes!("../corpus/release/demo-stable.json");

fuzz_target!(|data: &[u8]| {
    let Ok(url) = std::str::from_utf8(data) else {
        return;
    };
    let release = manifests::parse_release_unverified(RELEASE).expect("the demo release");
    let resolver = Resolver::new(Some("baleen"));
    resolver.publish(Table::of_releases([&release], Path::new("/blobs")));
    if let Some(hit) = resolver.resolve(url) {
        assert!(hit.path.starts_with("/blobs"), "{url:?} resolved outside the blobs");
        let name = hit.path.file_name().map(|n| n.to_string_lossy().into_owned());
        assert!(
            release
                .files
                .values()
                .any(|f| Some(f.sha256.to_string()) == name),
            "{url:?} resolved to a file the release does not have"
        );
    }
});
