//! A device that updates once and reports every request it made, for the bytes-per-update
//! benchmark (`bench/update_bytes.py`): the built-in fetcher, wrapped so that each response's
//! status line, headers and body are counted as they arrived (the body as sent, before any
//! decoding) with when it started and ended, and the wall time of the whole `update()`.
//!
//! Usage: `update_bytes STORE_DIR SERVER_URL PUBLIC_KEY_HEX APP`; prints one JSON object.

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use client_core::fetch::builtin::BuiltinFetcher;
use client_core::fetch::{FetchError, FetchRequest, FetchResponse, Fetcher};
use client_core::{Client, Conditions, Config};
use manifests::{AppId, Channel, HostVersion, PublicKey};
use serde_json::{Value, json};

/// The built-in fetcher, recording each response's size.
#[derive(Debug, Default)]
struct Counting {
    inner: BuiltinFetcher,
    log: Mutex<Vec<Value>>,
    /// When `update()` started, for each request's start and end times.
    started: Mutex<Option<Instant>>,
}

impl Counting {
    fn since_start_ms(&self) -> f64 {
        let started = self.started.lock().ok().and_then(|s| *s);
        started.map_or(0.0, |s| s.elapsed().as_secs_f64() * 1000.0)
    }
}

impl Fetcher for Counting {
    fn fetch(&self, request: &FetchRequest) -> Result<FetchResponse, FetchError> {
        let start_ms = self.since_start_ms();
        let response = self.inner.fetch(request)?;
        let end_ms = self.since_start_ms();
        // "HTTP/1.1 200 OK\r\n", each "name: value\r\n", the blank line.
        let head = 17
            + response
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len() + 4)
                .sum::<usize>()
            + 2;
        let path = request.url.splitn(4, '/').nth(3).unwrap_or("");
        let entry = json!({
            "path": format!("/{path}"),
            "status": response.status,
            "head_bytes": head,
            "body_bytes": response.body.len(),
            "encoding": response.header("content-encoding"),
            "start_ms": start_ms,
            "end_ms": end_ms,
        });
        if let Ok(mut log) = self.log.lock() {
            log.push(entry);
        }
        Ok(response)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: update_bytes STORE_DIR SERVER_URL PUBLIC_KEY_HEX APP");
        return ExitCode::from(2);
    }
    let run = || -> Result<Value, String> {
        let config = Config {
            dir: args[1].clone().into(),
            server: args[2].clone(),
            app: AppId::parse(&args[4]).map_err(|e| e.to_string())?,
            channel: Channel::parse("production").map_err(|e| e.to_string())?,
            device_id: "bench-device".into(),
            host_version: HostVersion::parse("6.0").map_err(|e| e.to_string())?,
            trusted_keys: vec![PublicKey::from_hex(&args[3]).map_err(|e| e.to_string())?],
            threshold: 1,
            custom_scheme: None,
            max_pending_launches: 3,
            sequence_floor: 0,
            ingest_key: None,
        };
        let fetcher = Arc::new(Counting::default());
        let client = Client::open(config, fetcher.clone()).map_err(|e| e.to_string())?;
        let started = Instant::now();
        if let Ok(mut s) = fetcher.started.lock() {
            *s = Some(started);
        }
        let outcome = client
            .update(&Conditions::unrestricted())
            .map_err(|e| e.to_string())?;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        let installed: Vec<Value> = outcome
            .installed
            .iter()
            .map(|(update, report)| {
                json!({
                    "package": update.package.to_string(),
                    "version": update.to.version.to_string(),
                    "method": format!("{:?}", report.method),
                    "fallbacks": report.fallbacks,
                })
            })
            .collect();
        let requests = fetcher.log.lock().map(|l| l.clone()).unwrap_or_default();
        Ok(json!({ "elapsed_ms": elapsed_ms, "installed": installed, "requests": requests }))
    };
    match run() {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("update_bytes: {e}");
            ExitCode::FAILURE
        }
    }
}
