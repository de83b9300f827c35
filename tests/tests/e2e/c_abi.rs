//! The C ABI as a C host uses it: `tests/c/client.c`, compiled against `client-core/include/
//! baleen.h` and linked with the library, installs from a live server and resolves a URL.
//!
//! Needs a C compiler (`cc`) and the library built by `scripts/test`; without a compiler the test
//! says so and does nothing.

use std::path::Path;
use std::process::Command;

use tests::{ROUTE, Server};

#[test]
fn a_c_program_installs_and_resolves_through_the_header() {
    if Command::new("cc").arg("--version").output().is_err() {
        eprintln!("skipped: no C compiler (cc) to build tests/c/client.c");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), Into::into);
    let libdir = target.join("debug");
    assert!(
        libdir.join("libclient_core.so").is_file(),
        "build client-core first (scripts/test does)"
    );
    let (server, build) = Server::with_first_release("c");
    let exe = server.dir.path().join("client");
    let out = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&exe)
        .arg(root.join("tests/c/client.c"))
        .arg("-I")
        .arg(root.join("client-core/include"))
        .arg("-L")
        .arg(&libdir)
        .arg("-lclient_core")
        .arg(format!("-Wl,-rpath,{}", libdir.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = serde_json::json!({
        "dir": server.dir.path().join("c-store"),
        "server": server.base,
        "app": "shop",
        "channel": "production",
        "device_id": "c-device",
        "host_version": "6.0",
        "public_keys": [server.key.public().to_hex()],
        "threshold": 1,
        "max_pending_launches": 2,
        "ingest_key": server.ingest_key,
    });
    let out = Command::new(&exe)
        .arg(config.to_string())
        .arg(format!("{ROUTE}index.html"))
        .arg(build.join("index.html"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
}
