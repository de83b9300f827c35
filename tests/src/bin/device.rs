//! A device process for crash tests: opens a store and installs whatever the index says, then
//! exits; with `rollback`, it then goes back to the package's previous release, as a host does
//! when the new page fails. The crash test kills it at random moments.
//!
//! Usage: `device STORE_DIR SERVER_URL PUBLIC_KEY_HEX [rollback]`

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;

use client_core::fetch::builtin::BuiltinFetcher;
use client_core::{Client, Config};
use manifests::{AppId, Channel, HostVersion, PackageId, PublicKey};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let rollback = match (args.len(), args.get(4).map(String::as_str)) {
        (4, None) => false,
        (5, Some("rollback")) => true,
        _ => {
            eprintln!("usage: device STORE_DIR SERVER_URL PUBLIC_KEY_HEX [rollback]");
            return ExitCode::from(2);
        }
    };
    let run = || -> Result<(), String> {
        let config = Config {
            dir: args[1].clone().into(),
            server: args[2].clone(),
            app: AppId::parse("shop").map_err(|e| e.to_string())?,
            channel: Channel::parse("production").map_err(|e| e.to_string())?,
            device_id: "crash-device".into(),
            host_version: HostVersion::parse("6.0").map_err(|e| e.to_string())?,
            trusted_keys: vec![PublicKey::from_hex(&args[3]).map_err(|e| e.to_string())?],
            threshold: 1,
            custom_scheme: None,
            max_pending_launches: 3,
            sequence_floor: 0,
            ingest_key: None,
        };
        let client =
            Client::open(config, Arc::new(BuiltinFetcher::default())).map_err(|e| e.to_string())?;
        tests::update_now(&client).map_err(|e| e.to_string())?;
        if rollback {
            let package = PackageId::parse("checkout").map_err(|e| e.to_string())?;
            client.rollback(&package).map_err(|e| e.to_string())?;
        }
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("device: {e}");
            ExitCode::FAILURE
        }
    }
}
