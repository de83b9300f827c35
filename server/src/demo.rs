//! Demo mode: a small bundled H5 package in two releases, published into a fresh data directory
//! so that `baleen serve --demo` is usable straight away.

use std::io::Write;
use std::path::Path;

use manifests::{AppId, Channel, Event, EventBatch, EventKind, PackageId, ReleaseVersion};
use zip::write::SimpleFileOptions;

use crate::auth::TokenSpec;
use crate::channel::Action;
use crate::error::{Error, Result};
use crate::meta_store::Scope;
use crate::publish::PublishRequest;
use crate::service::Service;

/// The demo's app.
pub const APP: &str = "demo";
/// The demo's package.
pub const PACKAGE: &str = "checkout";
/// The demo's channel.
pub const CHANNEL: &str = "production";
/// The URL prefix the demo package answers for.
pub const ROUTE: &str = "https://m.example.com/checkout/";

/// A release's files: (path, bytes).
type Files = &'static [(&'static str, &'static [u8])];

const RELEASES: [(&str, Files); 2] = [
    (
        "1.0.0",
        &[
            ("index.html", include_bytes!("../demo/1.0.0/index.html")),
            (
                "assets/app-7d1e0b3a.js",
                include_bytes!("../demo/1.0.0/assets/app-7d1e0b3a.js"),
            ),
            (
                "assets/style-4f9a2c1e.css",
                include_bytes!("../demo/1.0.0/assets/style-4f9a2c1e.css"),
            ),
            (
                "assets/logo.svg",
                include_bytes!("../demo/1.0.0/assets/logo.svg"),
            ),
        ],
    ),
    (
        "1.1.0",
        &[
            ("index.html", include_bytes!("../demo/1.1.0/index.html")),
            (
                "assets/app-c2e4a6f8.js",
                include_bytes!("../demo/1.1.0/assets/app-c2e4a6f8.js"),
            ),
            (
                "assets/style-9b3c5d7f.css",
                include_bytes!("../demo/1.1.0/assets/style-9b3c5d7f.css"),
            ),
            (
                "assets/logo.svg",
                include_bytes!("../demo/1.1.0/assets/logo.svg"),
            ),
        ],
    ),
];

/// What the demo set up.
#[derive(Debug, Clone)]
pub struct Seeded {
    /// An admin token for trying the admin API.
    pub admin_token: String,
    /// An ingest key of the demo app, for devices' event reports.
    pub ingest_key: String,
}

/// Publishes the demo package: 1.0.0 stable on `production`, 1.1.0 rolling out to 50 % of devices.
pub async fn seed(service: &Service, scratch: &Path) -> Result<Seeded> {
    let admin_token = service
        .create_token(&TokenSpec::unbound("demo-admin", Scope::Admin), "demo")
        .await?
        .secret;
    let (app, package, channel) = (
        AppId::parse(APP)?,
        PackageId::parse(PACKAGE)?,
        Channel::parse(CHANNEL)?,
    );
    for (i, (version, files)) in RELEASES.iter().enumerate() {
        let zip = scratch.join(format!("demo-{version}.zip"));
        write_zip(&zip, files)?;
        let request = PublishRequest {
            version: (*version).to_owned(),
            requires: Some(">=1.0".to_owned()),
            routes: vec![ROUTE.to_owned()],
            spa: Some(true),
            notes: Some(format!("Demo release {version}")),
            channel: (i == 0).then(|| CHANNEL.to_owned()),
            ..PublishRequest::default()
        };
        service
            .publish(&app, &package, &request, &zip, "demo")
            .await?;
        std::fs::remove_file(&zip)
            .map_err(|e| Error::io(format!("removing {}", zip.display()), e))?;
    }
    let rollout = Action::Rollout {
        version: Some(manifests::ReleaseVersion::parse(RELEASES[1].0)?),
        basis_points: 5_000,
    };
    service
        .change_channel(
            &package,
            &channel,
            &rollout,
            "demo",
            "demo: stage 1.1.0 to half the devices",
        )
        .await?;
    let (ingest_key, _) = service.create_ingest_key(&app, "demo", "demo").await?;
    Ok(Seeded {
        admin_token,
        ingest_key,
    })
}

/// A simulated device's opens by time to first paint ([`manifests::PAINT_MS_BOUNDS`]): its
/// `fast` ones spread over the buckets under one second, the `slow` ones over those above.
fn demo_paints(device: usize, fast: u64, slow: u64) -> Vec<u64> {
    let mut buckets = vec![0; manifests::PAINT_BUCKETS];
    for k in 0..fast {
        buckets[(device + k as usize) % 6] += 1;
    }
    for k in 0..slow {
        buckets[6 + (device + k as usize) % 3] += 1;
    }
    buckets
}

fn write_zip(path: &Path, files: &[(&str, &[u8])]) -> Result<()> {
    let io = |e: std::io::Error| Error::io(format!("writing {}", path.display()), e);
    let zip_err = |e: zip::result::ZipError| Error::Internal(format!("writing demo zip: {e}"));
    let file = std::fs::File::create(path).map_err(io)?;
    let mut writer = zip::ZipWriter::new(file);
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in files {
        writer.start_file(*name, options).map_err(zip_err)?;
        writer.write_all(bytes).map_err(io)?;
    }
    writer.finish().map_err(zip_err)?;
    Ok(())
}

/// Devices of the simulated fleet on the stable release and on the candidate.
pub const FLEET: (usize, usize) = (400, 200);

/// Reports the events of a simulated fleet, so that a new user sees figures at once: devices on
/// the stable release and on the candidate install, activate, boot (a few fail and roll back)
/// and open pages, most from the device and within a second. Through the same path as devices'
/// reports (the ingest key, a device id each), so the figures are counted as real ones are.
///
/// # Errors
/// The first report refused.
pub async fn seed_fleet(service: &Service, ingest_key: &str) -> Result<()> {
    let (app, package, channel) = (
        AppId::parse(APP)?,
        PackageId::parse(PACKAGE)?,
        Channel::parse(CHANNEL)?,
    );
    let fleets = [
        (RELEASES[0].0, FLEET.0, 200_usize),
        (RELEASES[1].0, FLEET.1, 40),
    ];
    for (version, devices, fail_every) in fleets {
        let version = ReleaseVersion::parse(version)?;
        for i in 0..devices {
            let event = |kind, count, offline_hits, under_1s, paint_ms| Event {
                package: package.clone(),
                version: version.clone(),
                kind,
                count,
                offline_hits,
                under_1s,
                paint_ms,
            };
            let mut events = vec![
                event(EventKind::Installed, 1, 0, 0, Vec::new()),
                event(EventKind::Activated, 1, 0, 0, Vec::new()),
            ];
            if i % fail_every == fail_every - 1 {
                events.push(event(EventKind::Failed, 1, 0, 0, Vec::new()));
                events.push(event(EventKind::RolledBack, 1, 0, 0, Vec::new()));
            } else {
                let opens = 2 + (i as u64 * 7) % 9;
                let offline = opens - u64::from(i % 6 == 0);
                let fast = offline - u64::from(i % 4 == 0).min(offline);
                events.push(event(EventKind::Ready, 1, 0, 0, Vec::new()));
                events.push(event(
                    EventKind::Opens,
                    opens,
                    offline,
                    fast,
                    demo_paints(i, fast, opens - fast),
                ));
            }
            let batch = EventBatch {
                app: app.clone(),
                channel: channel.clone(),
                ingest_key: Some(ingest_key.to_owned()),
                device_id: Some(format!("demo-device-{version}-{i}")),
                events,
            };
            service.record_events(&batch).await?;
        }
    }
    Ok(())
}
