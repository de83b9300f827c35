//! The generated bindings drive the library as a host app would, against a real server: Python
//! (a Python `HostFetcher`, resolve, ready, events, presets, a quota, typed errors) and Kotlin on
//! the JVM (the glue an Android app uses: a Kotlin `HostFetcher`, resolve, ready, typed errors).
//!
//! Needs the bindings generator, which `scripts/test` builds and names in `BALEEN_UNIFFI_BINDGEN`,
//! and for Kotlin the compiler and JNA it installs (`BALEEN_KOTLINC`, `BALEEN_JNA`); without them
//! a test says so and does nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tests::Server;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// Generates the `language` bindings of the debug library into the server's scratch directory
/// and returns their directory and the library; `None` without the generator.
fn generate(server: &Server, language: &str) -> Option<(PathBuf, PathBuf)> {
    let Some(bindgen) = std::env::var_os("BALEEN_UNIFFI_BINDGEN") else {
        eprintln!(
            "skipped: set BALEEN_UNIFFI_BINDGEN (scripts/test does) to run the {language} binding test"
        );
        return None;
    };
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), Into::into);
    let library = target.join("debug").join("libclient_core.so");
    assert!(
        library.is_file(),
        "{} missing: build client-core first",
        library.display()
    );
    let out_dir = server.dir.path().join(format!("bindings-{language}"));
    let out = Command::new(&bindgen)
        .args(["generate", "--no-format", "--library"])
        .arg(&library)
        .args(["--language", language, "--out-dir"])
        .arg(&out_dir)
        .current_dir(root())
        .output()
        .unwrap();
    assert_success("bindgen", &out);
    Some((out_dir, library))
}

#[track_caller]
fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn python_bindings_install_resolve_and_report() {
    let (server, build) = Server::with_first_release("py");
    let Some((bindings, library)) = generate(&server, "python") else {
        return;
    };
    std::fs::copy(&library, bindings.join("libclient_core.so")).unwrap();

    let out = Command::new("python3")
        .arg(root().join("tests/python/test_bindings.py"))
        .env("BALEEN_BINDINGS", &bindings)
        .env("BALEEN_SERVER", &server.base)
        .env("BALEEN_KEY", server.key.public().to_hex())
        .env("BALEEN_STORE", server.dir.path().join("py-store"))
        .env("BALEEN_INGEST_KEY", &server.ingest_key)
        .env("BALEEN_BUILD", &build)
        .output()
        .unwrap();
    assert_success("python", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("python bindings: ok"), "{stdout}");
}

#[test]
fn kotlin_bindings_compile_and_drive_the_library_on_the_jvm() {
    let (Some(kotlinc), Some(jna)) = (
        std::env::var_os("BALEEN_KOTLINC"),
        std::env::var_os("BALEEN_JNA"),
    ) else {
        eprintln!("skipped: set BALEEN_KOTLINC and BALEEN_JNA (scripts/test does) for Kotlin");
        return;
    };
    let (server, build) = Server::with_first_release("kt");
    let Some((bindings, library)) = generate(&server, "kotlin") else {
        return;
    };
    let jar = server.dir.path().join("smoke.jar");
    let out = Command::new(&kotlinc)
        .arg(bindings.join("uniffi/client_core/client_core.kt"))
        .arg(root().join("tests/kotlin/Smoke.kt"))
        .arg("-cp")
        .arg(&jna)
        .arg("-nowarn")
        .arg("-d")
        .arg(&jar)
        .output()
        .unwrap();
    assert_success("kotlinc", &out);

    let runtime = Path::new(&kotlinc)
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("lib/kotlin-stdlib.jar");
    let classpath =
        std::env::join_paths([jar.as_path(), Path::new(&jna), runtime.as_path()]).unwrap();
    let out = Command::new("java")
        .arg("-cp")
        .arg(classpath)
        .arg(format!(
            "-Djna.library.path={}",
            library.parent().unwrap().display()
        ))
        .arg("SmokeKt")
        .env("BALEEN_SERVER", &server.base)
        .env("BALEEN_KEY", server.key.public().to_hex())
        .env("BALEEN_STORE", server.dir.path().join("kt-store"))
        .env("BALEEN_EXPECTED", build.join("index.html"))
        .output()
        .unwrap();
    assert_success("the Kotlin smoke test", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("kotlin bindings: ok"), "{stdout}");
}
