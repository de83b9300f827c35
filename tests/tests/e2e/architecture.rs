//! The structural invariants ARCHITECTURE.md states, checked on the sources themselves, so the
//! document cannot drift from the code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `.rs` file under `dir` (tests excluded when `with_tests` is false), with its text.
fn sources(dir: &Path, with_tests: bool) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if with_tests || name != "tests" {
                    stack.push(path);
                }
            } else if name.ends_with(".rs") && (with_tests || name != "tests.rs") {
                out.push((path.clone(), std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Lines of `text` that are code, not comments.
fn code_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim_start)
        .filter(|l| !l.starts_with("//"))
}

#[track_caller]
fn assert_absent(dir: &Path, forbidden: &[&str], why: &str) {
    let mut found = Vec::new();
    for (path, text) in sources(dir, false) {
        for line in code_lines(&text) {
            for word in forbidden {
                if line.contains(word) {
                    found.push(format!("{}: {word}", path.display()));
                }
            }
        }
    }
    assert!(found.is_empty(), "{why}:\n{}", found.join("\n"));
}

#[test]
fn manifests_does_no_io_and_reads_no_clock() {
    assert_absent(
        &root().join("manifests/src"),
        &[
            "std::fs",
            "std::net",
            "std::thread",
            "std::env",
            "SystemTime::now",
            "Instant::now",
            "tokio",
            "getrandom",
        ],
        "manifests is pure: bytes and values in, values out",
    );
}

#[test]
fn the_device_core_does_no_io_and_reads_no_clock() {
    assert_absent(
        &root().join("client-core/src/device"),
        &[
            "std::fs",
            "std::net",
            "std::thread",
            "SystemTime",
            "Instant",
            "crate::store",
            "crate::net",
            "crate::fetch",
            "crate::client",
            "crate::install",
        ],
        "the device core takes the time and its inputs as arguments",
    );
}

#[test]
fn server_and_client_core_do_not_depend_on_each_other() {
    for (krate, other) in [("server", "client-core"), ("client-core", "server")] {
        let manifest = std::fs::read_to_string(root().join(krate).join("Cargo.toml")).unwrap();
        let depends = manifest.lines().any(|l| {
            l.trim_start().starts_with(&format!("{other} "))
                || l.trim_start().starts_with(&format!("{other}."))
        });
        assert!(!depends, "{krate} depends on {other}");
    }
}

#[test]
fn unsafe_code_is_allowed_only_in_the_c_abi() {
    // Spelled in two pieces so that this file does not match itself.
    let needle = concat!("allow(", "unsafe_code)");
    let mut allowed = Vec::new();
    for krate in ["manifests", "server", "client-core", "tests"] {
        for (path, text) in sources(&root().join(krate), true) {
            if code_lines(&text).any(|l| l.contains(needle)) {
                allowed.push(path.strip_prefix(root()).unwrap().display().to_string());
            }
        }
    }
    assert_eq!(allowed, ["client-core/src/ffi/c.rs"]);
}

/// The top-level module of `crate_src` a file belongs to.
fn module_of(crate_src: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(crate_src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

#[test]
fn no_two_client_core_modules_import_from_each_other() {
    let src = root().join("client-core/src");
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, text) in sources(&src, false) {
        let from = module_of(&src, &path);
        for line in code_lines(&text) {
            for (i, _) in line.match_indices("crate::") {
                let rest = &line[i + "crate::".len()..];
                let to: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !to.is_empty() && to != from {
                    edges.entry(from.clone()).or_default().insert(to);
                }
            }
        }
    }
    // No cycle of any length: a depth-first search never meets a module on its own path.
    fn visit<'a>(
        node: &'a str,
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if let Some(at) = path.iter().position(|n| *n == node) {
            panic!("module cycle: {}", path[at..].join(" -> "));
        }
        if !done.insert(node) {
            return;
        }
        path.push(node);
        for next in edges.get(node).into_iter().flatten() {
            visit(next, edges, path, done);
        }
        path.pop();
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        visit(node, &edges, &mut Vec::new(), &mut done);
    }
    assert!(
        edges["client"].contains("device"),
        "the shell drives the core: {edges:?}"
    );
}
