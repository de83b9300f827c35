//! Fixtures shared by the integration tests: deterministic keys, file lists from a one-line spec,
//! and sample releases and indexes.

#![allow(dead_code)]

use std::collections::BTreeMap;

use manifests::*;

/// A test key derived from a fixed seed: `sha256("baleen test key N")`. Never use outside tests.
pub fn key(n: u8) -> KeyPair {
    let seed = Digest::of(format!("baleen test key {n}").as_bytes());
    KeyPair::from_seed(seed.as_bytes())
}

pub fn trust(keys: &[&KeyPair], threshold: usize) -> TrustedKeys {
    TrustedKeys::new(keys.iter().map(|k| k.public().clone()), threshold).unwrap()
}

pub fn t(text: &str) -> Timestamp {
    Timestamp::parse(text).unwrap()
}

pub fn mime_for(path: &RelPath) -> MimeType {
    let mime = match path.extension().as_deref() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    };
    MimeType::parse(mime).unwrap()
}

pub fn entry(path: &RelPath, content: &[u8]) -> FileEntry {
    FileEntry {
        sha256: Digest::of(content),
        size: content.len() as u64,
        mime: mime_for(path),
    }
}

/// Files from a spec such as `"index.html=<h1> app.js=1"`: path, `=`, content.
pub fn files(spec: &str) -> Files {
    spec.split_whitespace()
        .map(|item| {
            let (path, content) = item.split_once('=').unwrap();
            let path = RelPath::parse(path).unwrap();
            let entry = entry(&path, content.as_bytes());
            (path, entry)
        })
        .collect()
}

pub fn release(version: &str, spec: &str) -> Release {
    let files = files(spec);
    let entry = files
        .keys()
        .find(|p| p.as_str() == "index.html")
        .unwrap_or_else(|| files.keys().next().unwrap())
        .clone();
    Release {
        package: PackageId::parse("checkout").unwrap(),
        version: ReleaseVersion::parse(version).unwrap(),
        files,
        entry: entry.clone(),
        routes: vec![Route {
            prefix: UrlPrefix::parse("https://m.example.com/checkout/").unwrap(),
            fallback: Some(entry),
        }],
        requires: HostRequirement::parse(">=5.2, <7").unwrap(),
        created_at: t("2026-11-20T10:00:00Z"),
        notes: "Faster checkout; fixes the coupon field.".to_owned(),
        source_revision: Some("9f1c2e7".to_owned()),
    }
}

pub fn release_ref(release: &Release, keys: &[&KeyPair]) -> ReleaseRef {
    ReleaseRef {
        version: release.version.clone(),
        manifest: release.sign(keys).unwrap().digest,
        requires: release.requires.clone(),
        size_bytes: release.size_bytes(),
    }
}

pub fn scope() -> IndexScope {
    IndexScope {
        app: AppId::parse("shop").unwrap(),
        channel: Channel::parse("production").unwrap(),
    }
}

/// An index for `shop/production` with `checkout` at `stable` and an optional candidate.
pub fn index(sequence: u64, stable: ReleaseRef, candidate: Option<(ReleaseRef, u16)>) -> Index {
    let scope = scope();
    Index {
        app: scope.app,
        channel: scope.channel,
        sequence,
        issued_at: t("2026-11-24T06:00:00Z"),
        expires_at: t("2026-12-01T06:00:00Z"),
        packages: BTreeMap::from([(
            PackageId::parse("checkout").unwrap(),
            PackageEntry {
                priority: 10,
                prefetch: Prefetch::default(),
                stable: Some(stable),
                candidate: candidate.map(|(release, rollout_basis_points)| Candidate {
                    release,
                    rollout_basis_points,
                }),
                older: Vec::new(),
            },
        )]),
    }
}

/// The time the golden documents are checked at.
pub fn now() -> Timestamp {
    t("2026-11-24T07:00:00Z")
}
