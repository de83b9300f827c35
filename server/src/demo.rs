//! Demo mode: a small bundled H5 package in two releases, published into a fresh data directory
//! so that `baleen serve --demo` is usable straight away.

use std::io::Write;
use std::path::Path;

use manifests::{AppId, Channel, PackageId};
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
