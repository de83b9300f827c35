//! The generated Python bindings drive the library as a host app would (a Python `HostFetcher`,
//! resolve, ready, events, typed errors), against a real server.
//!
//! Needs the bindings generator, which `scripts/test` builds and names in `BALEEN_UNIFFI_BINDGEN`;
//! without it the test says so and does nothing.

use std::path::Path;
use std::process::Command;

use tests::Server;

#[test]
fn python_bindings_install_resolve_and_report() {
    let Some(bindgen) = std::env::var_os("BALEEN_UNIFFI_BINDGEN") else {
        eprintln!(
            "skipped: set BALEEN_UNIFFI_BINDGEN (scripts/test does) to run the Python binding test"
        );
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), Into::into);
    let library = target.join("debug").join("libclient_core.so");
    assert!(
        library.is_file(),
        "{} missing: build client-core first",
        library.display()
    );

    let (server, build) = Server::with_first_release("py");

    let bindings = server.dir.path().join("bindings");
    let out = Command::new(&bindgen)
        .args(["generate", "--library"])
        .arg(&library)
        .args(["--language", "python", "--out-dir"])
        .arg(&bindings)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bindgen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::copy(&library, bindings.join("libclient_core.so")).unwrap();

    let out = Command::new("python3")
        .arg(root.join("tests/python/test_bindings.py"))
        .env("BALEEN_BINDINGS", &bindings)
        .env("BALEEN_SERVER", &server.base)
        .env("BALEEN_KEY", server.key.public().to_hex())
        .env("BALEEN_STORE", server.dir.path().join("py-store"))
        .env("BALEEN_BUILD", &build)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("python bindings: ok"), "{stdout}");
}
