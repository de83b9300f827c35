//! Signing keys with roles: the online index key is rotated and the old one refused with no app
//! update; an app whose releases need the publisher's signature cannot be sent new content by a
//! server without that key; private key files others may read are refused.

use std::path::{Path, PathBuf};
use std::process::Command;

use client_core::Client;
use tests::{ROUTE, Server, active_version, baleen, baleen_bin, update_now, write_build};

/// Generates `NAME.private.json` / `NAME.public.json` in `dir`.
fn generate(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    baleen(
        &[
            "keys",
            "generate",
            "--dir",
            dir.to_str().unwrap(),
            "--name",
            name,
        ],
        &[],
    );
    (
        dir.join(format!("{name}.private.json")),
        dir.join(format!("{name}.public.json")),
    )
}

/// Runs `baleen` expecting failure; returns its standard error.
fn baleen_fails(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(baleen_bin())
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success(), "baleen {args:?} succeeded");
    String::from_utf8(out.stderr).unwrap()
}

/// Makes version `version` of app `shop`'s key list signed by `root_private`, and posts it.
fn post_key_list(
    server: &Server,
    version: u64,
    root: (&Path, &Path),
    index: &Path,
    release: &Path,
) -> String {
    let file = server.dir.path().join(format!("keys-v{version}.json"));
    baleen(
        &[
            "keys",
            "list",
            "--app",
            "shop",
            "--version",
            &version.to_string(),
            "--root",
            root.1.to_str().unwrap(),
            "--index",
            index.to_str().unwrap(),
            "--release",
            release.to_str().unwrap(),
            "--sign-with",
            root.0.to_str().unwrap(),
            "--out",
            file.to_str().unwrap(),
        ],
        &[],
    );
    baleen(
        &["keys", "post", file.to_str().unwrap(), "--app", "shop"],
        &server.env(),
    )
}

/// The server's own public key file (its key list version 1).
fn server_public(server: &Server) -> PathBuf {
    server.dir.path().join("data/keys/signing.public.json")
}

/// A server of someone holding `server`'s key (leaked) and nothing else, which has published
/// `releases` new versions of `checkout` to production: indexes at sequences above the real
/// server's, signed by that key.
fn impostor(server: &Server, releases: usize) -> Server {
    let key = server.dir.path().join("data/keys/signing.private.json");
    let attacker = Server::start_with(&["--key", key.to_str().unwrap()]);
    let evil = attacker.dir.path().join("evil");
    for i in 0..releases {
        write_build(&evil, &format!("evil{i}"));
        attacker.publish(
            &evil,
            "checkout",
            &format!("6.6.{i}"),
            &["--channel", "production", "--route", ROUTE],
        );
    }
    attacker
}

/// A client on `store` for app `shop` at `base`, pinned to `server`'s original key.
fn client_at(server: &Server, base: &str, store: &Path) -> Client {
    let mut config = server.client_config(store, "device-1", "6.0.0");
    config.server = base.to_owned();
    Client::open(
        config,
        std::sync::Arc::new(client_core::fetch::builtin::BuiltinFetcher::default()),
    )
    .unwrap()
}

#[test]
fn the_index_key_is_rotated_and_a_leaked_old_one_refused_without_an_app_update() {
    let keys = tempfile::tempdir().unwrap();
    let root = generate(keys.path(), "root");
    let index = generate(keys.path(), "index");
    // The new index key is handed to the server before the key list naming it is posted.
    let (server, build) =
        Server::with_first_release_using("v1", &["--extra-key", index.0.to_str().unwrap()]);
    let store = server.dir.path().join("device");
    let device = server.client(&store, "device-1", "6.0.0");
    device.check().unwrap();
    update_now(&device).unwrap();
    assert_eq!(active_version(&device), "1.0.0");

    // A key list the server could not sign indexes under is refused.
    let stranger = generate(keys.path(), "stranger");
    let file = server.dir.path().join("bad.json");
    baleen(
        &[
            "keys",
            "list",
            "--app",
            "shop",
            "--version",
            "2",
            "--root",
            root.1.to_str().unwrap(),
            "--index",
            stranger.1.to_str().unwrap(),
            "--release",
            server_public(&server).to_str().unwrap(),
            "--sign-with",
            root.0.to_str().unwrap(),
            "--out",
            file.to_str().unwrap(),
        ],
        &[],
    );
    let refused = baleen_fails(
        &["keys", "post", file.to_str().unwrap(), "--app", "shop"],
        &server.env(),
    );
    assert!(refused.contains("key_not_held"), "{refused}");

    // Version 2: an offline root, the new index key; the server's key keeps signing releases.
    // The server adds its signature as the old root.
    let posted = post_key_list(
        &server,
        2,
        (&root.0, &root.1),
        &index.1,
        &server_public(&server),
    );
    assert!(posted.contains("version 2"), "{posted}");
    let (status, chain) = server.get("/v1/apps/shop/keys");
    assert_eq!(status, 200);
    let chain: serde_json::Value = serde_json::from_slice(&chain).unwrap();
    assert_eq!(chain.as_array().unwrap().len(), 2);

    write_build(&build, "v2");
    server.publish(&build, "checkout", "1.1.0", &["--channel", "production"]);
    // The index is signed by the new key alone; the device learns the key list from it.
    device.check().unwrap();
    update_now(&device).unwrap();
    assert_eq!(active_version(&device), "1.1.0");

    // Someone holding the old key (the server's, leaked) runs a server of their own and ships
    // new content, at higher sequences than the device has seen.
    let attacker = impostor(&server, 6);
    // The leaked key was the first root: on their server it signs a key list of their own, to a
    // root of theirs that then signs a third one. A device that moved past that root refuses it.
    let theirs = generate(keys.path(), "theirs");
    let leaked = server.dir.path().join("data/keys/signing.public.json");
    for version in [2, 3] {
        post_key_list(&attacker, version, (&theirs.0, &theirs.1), &leaked, &leaked);
    }
    let (_, chain) = attacker.get("/v1/apps/shop/keys");
    let chain: serde_json::Value = serde_json::from_slice(&chain).unwrap();
    assert_eq!(chain.as_array().unwrap().len(), 3);
    drop(device);
    let fooled = client_at(&server, &attacker.base, &store);
    let err = fooled.check().unwrap_err();
    assert!(
        matches!(
            &err,
            client_core::Error::Contract(manifests::Error::UntrustedSigner { .. })
        ),
        "{err:?}"
    );
    assert_eq!(active_version(&fooled), "1.1.0");
    // Nothing it was sent stayed: back at the real server it checks and updates as before.
    drop(fooled);
    let device = server.client(&store, "device-1", "6.0.0");
    assert!(device.check().is_ok());
    assert_eq!(active_version(&device), "1.1.0");
    drop(device);

    // A device that never saw the key list learns it before trusting anything.
    let fresh = server.client(&server.dir.path().join("fresh"), "device-2", "6.0.0");
    fresh.check().unwrap();
    update_now(&fresh).unwrap();
    assert_eq!(active_version(&fresh), "1.1.0");
    drop(fresh);
    let fresh = client_at(&server, &attacker.base, &server.dir.path().join("fresh"));
    assert!(fresh.check().is_err());
    assert_eq!(active_version(&fresh), "1.1.0");
}

#[test]
fn releases_that_need_the_publisher_s_signature_cannot_be_shipped_by_the_server_alone() {
    let keys = tempfile::tempdir().unwrap();
    let root = generate(keys.path(), "root");
    let publisher = generate(keys.path(), "publisher");
    let server = Server::start();
    let build = server.dir.path().join("dist");
    write_build(&build, "v1");
    // The app's first publish declares it; its key list then moves releases to the publisher.
    server.publish(&build, "checkout", "0.9.0", &["--route", ROUTE]);
    post_key_list(
        &server,
        2,
        (&root.0, &root.1),
        &server_public(&server),
        &publisher.1,
    );

    // Signed at publish time by the publisher's CI, then promoted.
    let signed = server.publish(
        &build,
        "checkout",
        "1.0.0",
        &[
            "--channel",
            "production",
            "--sign-with",
            publisher.0.to_str().unwrap(),
        ],
    );
    assert!(signed["sequence"].as_u64().is_some(), "{signed}");
    let store = server.dir.path().join("device");
    let device = server.client(&store, "device-1", "6.0.0");
    device.check().unwrap();
    update_now(&device).unwrap();
    assert_eq!(active_version(&device), "1.0.0");

    // Unsigned: published, but the server will not send it out.
    write_build(&build, "v2");
    let args = [
        "publish",
        build.to_str().unwrap(),
        "--app",
        "shop",
        "--package",
        "checkout",
        "--version",
        "1.1.0",
        "--channel",
        "production",
    ];
    let refused = baleen_fails(&args, &server.env());
    assert!(refused.contains("release_unsigned"), "{refused}");
    // Signing checks the manifest against the build: another build is not signed.
    let other = server.dir.path().join("other");
    write_build(&other, "other");
    let sign = |dir: &Path| {
        vec![
            "sign".to_owned(),
            "--app".into(),
            "shop".into(),
            "--package".into(),
            "checkout".into(),
            "--version".into(),
            "1.1.0".into(),
            "--sign-with".into(),
            publisher.0.to_str().unwrap().into(),
            "--build".into(),
            dir.to_str().unwrap().into(),
        ]
    };
    let args: Vec<String> = sign(&other);
    let refused = baleen_fails(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &server.env(),
    );
    assert!(refused.contains("nothing was signed"), "{refused}");
    let args: Vec<String> = sign(&build);
    baleen(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &server.env(),
    );
    server.release("promote", "checkout", &["--version", "1.1.0"]);
    device.check().unwrap();
    update_now(&device).unwrap();
    assert_eq!(active_version(&device), "1.1.0");

    // A server that holds every key but the publisher's (its own, and the old root) serves new
    // content: here, one started on the same key without the key list, as a compromised one
    // would. Its index verifies (the index key is the server's); its manifest does not.
    let attacker = impostor(&server, 7);
    drop(device);
    let fooled = client_at(&server, &attacker.base, &store);
    fooled.check().unwrap();
    let err = update_now(&fooled).map(|_| ()).unwrap_err();
    assert!(format!("{err:?}").contains("UntrustedSigner"), "{err:?}");
    assert_eq!(active_version(&fooled), "1.1.0");
}

#[cfg(unix)]
#[test]
fn private_key_files_others_can_read_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let keys = tempfile::tempdir().unwrap();
    let publisher = generate(keys.path(), "publisher");
    std::fs::set_permissions(&publisher.0, std::fs::Permissions::from_mode(0o644)).unwrap();
    let server = Server::start();
    let build = server.dir.path().join("dist");
    write_build(&build, "v1");
    let args = [
        "publish",
        build.to_str().unwrap(),
        "--app",
        "shop",
        "--package",
        "checkout",
        "--version",
        "1.0.0",
        "--route",
        ROUTE,
        "--sign-with",
        publisher.0.to_str().unwrap(),
    ];
    let refused = baleen_fails(&args, &server.env());
    assert!(refused.contains("chmod 600"), "{refused}");
    // Nothing was published.
    let (status, _) = server.get("/v1/apps/shop/channels/production/index");
    assert_eq!(status, 404);
    // The server refuses to start on such a key, and never prints the secret.
    let secret = std::fs::read_to_string(&publisher.0).unwrap();
    let refused = baleen_fails(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            server.dir.path().join("data").to_str().unwrap(),
            "--key",
            publisher.0.to_str().unwrap(),
        ],
        &[],
    );
    assert!(refused.contains("chmod 600"), "{refused}");
    let seed = serde_json::from_str::<serde_json::Value>(&secret).unwrap()["seed"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!refused.contains(&seed));
}
