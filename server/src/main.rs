//! The `baleen` command: parses arguments and calls the server library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use manifests::{AppId, Channel, PackageId, Prefetch, ReleaseVersion};
use serde::Serialize;
use server::api::{ChangeRequest, PublishQuery};
use server::blob_store::BlobLocation;
use server::blob_store::s3::{S3BlobStore, S3Config};
use server::channel::Action;
use server::data_dir::DataDir;
use server::meta_store::MetaLocation;
use server::meta_store::Scope;
use server::publish::PublishRequest;
use server::remote::Remote;
use server::retention::Retention;
use server::service::Settings;

#[derive(Parser)]
#[command(
    name = "baleen",
    version,
    about = "Offline packages for mobile H5 pages"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines on standard error as text for people or as JSON objects for a log collector.
    #[arg(
        long,
        env = "BALEEN_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    log_format: LogFormat,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// One line per event, for people.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (embedded storage: files + SQLite in the data directory).
    #[command(args_override_self = true)]
    Serve(ServeArgs),
    /// Manage signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Manage API tokens (works on the data directory directly).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Publish a build (a directory or a zip) as a new release.
    Publish(PublishArgs),
    /// Sign a published release with a release key, after checking its manifest against the
    /// build.
    Sign {
        #[command(flatten)]
        remote: RemoteArgs,
        /// The host app.
        #[arg(long)]
        app: AppId,
        /// The package.
        #[arg(long)]
        package: PackageId,
        /// The release.
        #[arg(long)]
        version: ReleaseVersion,
        /// The release key's private key file.
        #[arg(long = "sign-with")]
        sign_with: PathBuf,
        /// The build (a directory or zip) the manifest must match.
        #[arg(long)]
        build: Option<PathBuf>,
    },
    /// Publish a folder as a new dev release shortly after every change, uploading only what changed.
    Watch {
        /// The build folder.
        dir: PathBuf,
        #[command(flatten)]
        remote: RemoteArgs,
        /// The host app.
        #[arg(long)]
        app: AppId,
        /// The package.
        #[arg(long)]
        package: PackageId,
        /// The channel each dev release is promoted to.
        #[arg(long, default_value = "dev")]
        channel: Channel,
        /// URL prefix the package answers for (repeatable; needed for a new package).
        #[arg(long = "route")]
        routes: Vec<String>,
        /// Dev releases are pre-releases of this version.
        #[arg(long, default_value = "0.0.0")]
        base_version: String,
        /// Quiet time before a publish, in milliseconds.
        #[arg(long, default_value_t = 300)]
        debounce_ms: u64,
        /// Stop after this many publishes.
        #[arg(long)]
        max_publishes: Option<usize>,
    },
    /// Make a release the stable one on a channel.
    Promote {
        #[command(flatten)]
        target: Target,
        /// The release to promote.
        #[arg(long)]
        version: ReleaseVersion,
    },
    /// Start a staged rollout, or change its share.
    Rollout {
        #[command(flatten)]
        target: Target,
        /// The release to roll out (default: the one rolling out now).
        #[arg(long)]
        version: Option<ReleaseVersion>,
        /// Share of devices, in percent (0 to 100, two decimals at most).
        #[arg(long)]
        percent: String,
    },
    /// Freeze a rollout's share.
    Pause {
        #[command(flatten)]
        target: Target,
    },
    /// Let a paused rollout's share change again.
    Resume {
        #[command(flatten)]
        target: Target,
    },
    /// Make the release rolling out the stable one.
    Complete {
        #[command(flatten)]
        target: Target,
    },
    /// Drop a rollout, or return to the previous (or a named) stable release.
    Rollback {
        #[command(flatten)]
        target: Target,
        /// The release to return to (default: the previous stable one).
        #[arg(long)]
        to: Option<ReleaseVersion>,
    },
    /// Restore the package's state before its last change on the channel (undo again to redo).
    Undo {
        #[command(flatten)]
        target: Target,
    },
    /// Health-gated rollouts: a candidate's share moved step by step while its devices' failed
    /// boots are no worse than stable's, paused or rolled back when they are.
    Ramp {
        #[command(subcommand)]
        command: RampCommand,
    },
    /// List a package's releases.
    Releases {
        #[command(flatten)]
        remote: RemoteArgs,
        /// The package.
        #[arg(long)]
        package: PackageId,
    },
    /// Show adoption, failures and page-open figures per release on a channel.
    Stats {
        #[command(flatten)]
        remote: RemoteArgs,
        /// The app.
        #[arg(long)]
        app: AppId,
        /// The channel.
        #[arg(long)]
        channel: Channel,
    },
    /// Manage an app's ingest keys: the public keys apps ship so that their devices' event
    /// reports are counted (several may be active, for rotation).
    IngestKey {
        #[command(subcommand)]
        command: IngestKeyCommand,
    },
    /// Show, or declare, the origins an app's packages may claim routes in.
    Origins {
        #[command(flatten)]
        remote: RemoteArgs,
        /// The app.
        #[arg(long)]
        app: AppId,
        /// Declare these origins instead, such as https://m.example.com (repeatable; replaces
        /// the list; needs an admin token).
        #[arg(long = "set")]
        set: Vec<String>,
    },
    /// Show the newest audit entries: publishes, channel changes, token lifecycle and token uses.
    Audit {
        #[command(flatten)]
        remote: RemoteArgs,
        /// How many entries, newest first (at most 10000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Remove the releases the retention policy lets go, and the blobs and packs nothing refers
    /// to any more (needs an admin token); --dry-run only shows what would go.
    Gc {
        #[command(flatten)]
        remote: RemoteArgs,
        /// Only show what would be removed; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// For this collection, in place of the server's --gc-max-age-secs: seconds a release
        /// on no channel is kept after it was last on one (or published).
        #[arg(long)]
        max_age_secs: Option<u64>,
        /// In place of the server's --gc-dev-max-age-secs: the same for dev builds.
        #[arg(long)]
        dev_max_age_secs: Option<u64>,
        /// In place of the server's --gc-history-depth: releases kept of each channel's history.
        #[arg(long)]
        history_depth: Option<u64>,
        /// In place of the server's --gc-keep-last: highest versions kept of each package.
        #[arg(long)]
        keep_last: Option<u64>,
    },
    /// Copy an embedded install (its blobs and SQLite metadata) to the S3 bucket and PostgreSQL
    /// database of a scaled config; stop the embedded server first.
    #[command(
        long_about = "Copy an embedded install (its blobs and SQLite metadata) to the S3 \
bucket and PostgreSQL database of a scaled config; stop the embedded server first.

Runs offline, with the embedded server stopped: what it changes after migrate has started is not \
copied. Every blob file (and precompressed copy) goes up first, checked against its sha256 in the \
data directory and again read back from the bucket; then every table is copied in one PostgreSQL \
transaction. Safe to run again after a failure: blobs already in the bucket are skipped, and the \
metadata is copied whole or not at all. A database holding other data is refused, unchanged. The \
signing key stays a file: the scaled servers need the install's key (`key` in the config)."
    )]
    Migrate {
        /// The embedded install's data directory.
        #[arg(long, env = "BALEEN_DATA_DIR", default_value = "baleen-data")]
        data_dir: PathBuf,
        /// The scaled servers' TOML file (`baleen serve --config`), read as `serve` reads it:
        /// `[storage] blobs = "s3://BUCKET"` and `meta = "postgres://…"` (BALEEN_BLOBS and
        /// BALEEN_META win over it), the bucket's endpoint and credentials from BALEEN_S3_* and
        /// AWS_* as for `serve`.
        #[arg(long = "to-config")]
        to_config: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a package's history on a channel.
    History {
        #[command(flatten)]
        remote: RemoteArgs,
        /// The package.
        #[arg(long)]
        package: PackageId,
        /// The channel.
        #[arg(long)]
        channel: Channel,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Data directory.
    #[arg(long, env = "BALEEN_DATA_DIR", default_value = "baleen-data")]
    data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "BALEEN_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Signing key (default: DATA_DIR/keys/signing.private.json).
    #[arg(long, env = "BALEEN_KEY")]
    key: Option<PathBuf>,
    /// More private keys the server holds (repeatable, or comma-separated in the variable): the
    /// new index key of a rotation, or release keys.
    #[arg(long = "extra-key", env = "BALEEN_EXTRA_KEYS", value_delimiter = ',')]
    extra_keys: Vec<PathBuf>,
    /// A TOML file of these settings, under the flags' names (`[gc] interval_secs = 0` is
    /// --gc-interval-secs 0); a flag or its variable wins over the file.
    #[arg(long = "config", env = "BALEEN_SERVER_CONFIG")]
    config: Option<PathBuf>,
    /// Where blobs and packs live: `files` (the data directory's blobs/) or `s3://BUCKET`, with
    /// the endpoint from BALEEN_S3_ENDPOINT (or AWS_ENDPOINT_URL), the region from
    /// BALEEN_S3_REGION (or AWS_REGION) and the credentials from AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY.
    #[arg(long, env = "BALEEN_BLOBS", default_value = "files")]
    blobs: String,
    /// Where the metadata lives: `sqlite` (the data directory's meta.sqlite3) or
    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE`, which any number of replicas share (with
    /// one bucket for the blobs).
    #[arg(
        long,
        env = "BALEEN_META",
        default_value = "sqlite",
        hide_env_values = true
    )]
    meta: String,
    /// Start with a temporary data dir and key, and publish a demo package.
    #[arg(long, env = "BALEEN_DEMO")]
    demo: bool,
    /// How long a signed index is valid, in seconds (2 to 31536000, a year).
    #[arg(long, env = "BALEEN_INDEX_TTL_SECS", default_value_t = 7 * 24 * 3600)]
    index_ttl_secs: u64,
    /// How long devices and caches (a CDN) may keep an index response before asking again, in
    /// seconds: how soon a change reaches devices behind a CDN.
    #[arg(long, env = "BALEEN_INDEX_MAX_AGE_SECS", default_value_t = 60)]
    index_max_age_secs: u64,
    /// Largest accepted upload, in bytes.
    #[arg(long, env = "BALEEN_MAX_UPLOAD_BYTES", default_value_t = 256 * 1024 * 1024)]
    max_upload_bytes: u64,
    /// How long a pack request waits for a build under way before it is answered 503 with
    /// Retry-After, in milliseconds.
    #[arg(long, env = "BALEEN_PACK_WAIT_MS", default_value_t = 500)]
    pack_wait_ms: u64,
    /// Event batches one device may send per minute (and at once); 0: no limit.
    #[arg(
        long,
        env = "BALEEN_EVENTS_PER_DEVICE_PER_MINUTE",
        default_value_t = server::service::DEFAULT_EVENTS_PER_DEVICE_PER_MINUTE
    )]
    events_per_device_per_minute: u32,
    /// Event batches one client address may send per minute (and at once); 0: no limit (behind
    /// a proxy or CDN every device has its address: limit there, or raise this).
    #[arg(
        long,
        env = "BALEEN_EVENTS_PER_ADDRESS_PER_MINUTE",
        default_value_t = server::service::DEFAULT_EVENTS_PER_ADDRESS_PER_MINUTE
    )]
    events_per_address_per_minute: u32,
    /// Collect a release on no channel this many seconds after it was last on one (or was
    /// published), unless the history depth or keep-last keeps it.
    #[arg(
        long,
        env = "BALEEN_GC_MAX_AGE_SECS",
        default_value_t = Retention::default().max_age_secs
    )]
    gc_max_age_secs: u64,
    /// The same for dev builds (versions such as 0.0.0-dev.1700000000000, as `baleen watch`
    /// publishes).
    #[arg(
        long,
        env = "BALEEN_GC_DEV_MAX_AGE_SECS",
        default_value_t = Retention::default().dev_max_age_secs
    )]
    gc_dev_max_age_secs: u64,
    /// Keep the last this many releases each channel held for each package.
    #[arg(
        long,
        env = "BALEEN_GC_HISTORY_DEPTH",
        default_value_t = Retention::default().history_depth
    )]
    gc_history_depth: u64,
    /// Keep this many highest versions of each package (at least 1).
    #[arg(
        long,
        env = "BALEEN_GC_KEEP_LAST",
        default_value_t = Retention::default().keep_last
    )]
    gc_keep_last: u64,
    /// Collect garbage every this many seconds; 0 collects only when asked (`baleen gc`).
    #[arg(
        long,
        env = "BALEEN_GC_INTERVAL_SECS",
        default_value_t = server::service::DEFAULT_GC_INTERVAL_SECS
    )]
    gc_interval_secs: u64,
    /// Evaluate the health-gated rollouts (`baleen ramp`) every this many seconds; 0 evaluates
    /// only when asked (`baleen ramp evaluate`).
    #[arg(
        long,
        env = "BALEEN_RAMP_INTERVAL_SECS",
        default_value_t = server::service::DEFAULT_RAMP_INTERVAL_SECS
    )]
    ramp_interval_secs: u64,
    /// Mebibytes of fast packs (served while the smaller final packs are built) held in memory
    /// at most; past it the ones held longest are let go and built again when asked for.
    #[arg(
        long,
        env = "BALEEN_FAST_PACK_MEMORY_MIB",
        default_value_t = server::service::DEFAULT_FAST_PACK_MEMORY_MIB
    )]
    fast_pack_memory_mib: u64,
    /// Mebibytes of small blobs (up to 4 MiB each) held in memory to answer the files devices ask
    /// for most without reading storage; 0 holds none.
    #[arg(
        long,
        env = "BALEEN_BLOB_CACHE_MIB",
        default_value_t = server::hot_blobs::DEFAULT_BLOB_CACHE_MIB
    )]
    blob_cache_mib: u64,
    /// A channel on which the console asks to type the channel's name before any change but a
    /// pause (repeat, or separate with commas; an empty value protects none).
    #[arg(
        long = "protected-channel",
        env = "BALEEN_PROTECTED_CHANNELS",
        value_delimiter = ',',
        default_value = "production"
    )]
    protected_channels: Vec<String>,
    /// Print the address (and the demo's details) as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Write a new Ed25519 key pair (NAME.private.json, NAME.public.json).
    Generate {
        /// Directory to write the key files into.
        #[arg(long, default_value = "baleen-data/keys")]
        dir: PathBuf,
        /// Base name of the key files.
        #[arg(long, default_value = "signing")]
        name: String,
        /// Print the key id and the files written as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make and sign a version of an app's key list (offline, with the root keys).
    List(KeyListArgs),
    /// Add signatures to a key list file (each root key holder in turn).
    Sign {
        /// The key list file; signatures are added in place.
        file: PathBuf,
        /// Private key file to sign with (repeatable).
        #[arg(long = "sign-with", required = true)]
        sign_with: Vec<PathBuf>,
    },
    /// Send the next version of an app's key list to the server (needs an admin token).
    Post {
        /// The signed key list file.
        file: PathBuf,
        #[command(flatten)]
        remote: RemoteArgs,
        /// The app.
        #[arg(long)]
        app: AppId,
    },
}

#[derive(Args)]
struct KeyListArgs {
    /// The app.
    #[arg(long)]
    app: AppId,
    /// The version: one more than the app's newest (the server's own list is version 1).
    #[arg(long)]
    version: u64,
    /// Root public key files (repeatable).
    #[arg(long = "root", required = true)]
    root: Vec<PathBuf>,
    /// Root keys that must sign a key list.
    #[arg(long, default_value_t = 1)]
    root_threshold: u32,
    /// Index public key files (repeatable): keys the server holds.
    #[arg(long = "index", required = true)]
    index: Vec<PathBuf>,
    /// Index keys that must sign an index.
    #[arg(long, default_value_t = 1)]
    index_threshold: u32,
    /// Release public key files (repeatable): the server's, the publishers', or both.
    #[arg(long = "release", required = true)]
    release: Vec<PathBuf>,
    /// Release keys that must sign a manifest.
    #[arg(long, default_value_t = 1)]
    release_threshold: u32,
    /// Private key files to sign with: the new root keys (and the old ones the server does not
    /// hold).
    #[arg(long = "sign-with", required = true)]
    sign_with: Vec<PathBuf>,
    /// Where to write the signed key list.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it (shown only once).
    Create {
        /// Data directory.
        #[arg(long, env = "BALEEN_DATA_DIR", default_value = "baleen-data")]
        data_dir: PathBuf,
        /// The metadata store the servers read: `sqlite` (the data directory's) or the
        /// `postgres://…` URL that `baleen serve --meta` is given.
        #[arg(
            long,
            env = "BALEEN_META",
            default_value = "sqlite",
            hide_env_values = true
        )]
        meta: String,
        /// A name for the token, recorded as the actor of what it does.
        #[arg(long)]
        name: String,
        /// publish, release or admin.
        #[arg(long)]
        scope: String,
        /// Bind the token to one package.
        #[arg(long)]
        package: Option<String>,
        /// The app of the bound package (found from the package when it exists).
        #[arg(long, requires = "package")]
        app: Option<String>,
        /// Lifetime, such as 3600s, 90m, 12h or 30d (default: never expires).
        #[arg(long, value_parser = parse_lifetime)]
        expires_in: Option<u64>,
        /// Print the token with its name and scope as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the server's tokens: scope, binding, expiry, revocation and last use (never a secret).
    List {
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Revoke a token by name: the server refuses it from now on.
    Revoke {
        /// The token's name.
        name: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

/// Parses a lifetime such as `3600s`, `90m`, `12h` or `30d` (a bare number is seconds) into seconds.
fn parse_lifetime(text: &str) -> std::result::Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "unknown unit {unit:?}; use s, m, h or d, as in 30d"
            ));
        }
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a lifetime such as 3600s, 90m, 12h or 30d"))?;
    match n.checked_mul(scale) {
        Some(0) => Err("a lifetime must be above 0".into()),
        Some(secs) if secs <= server::auth::MAX_TOKEN_LIFETIME_SECS => Ok(secs),
        _ => Err(format!(
            "{text:?} is longer than the ten years a token may live"
        )),
    }
}

#[derive(Args, Clone)]
struct RemoteArgs {
    /// Server URL (or BALEEN_SERVER, or "server" in the client config file).
    #[arg(long, env = "BALEEN_SERVER")]
    server: Option<String>,
    /// API token (or BALEEN_TOKEN, or "token" in the client config file).
    #[arg(long, env = "BALEEN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Client config file, JSON with "server" and "token" (default:
    /// $XDG_CONFIG_HOME/baleen/client.json, else ~/.config/baleen/client.json, if it exists).
    #[arg(long, env = "BALEEN_CONFIG")]
    config: Option<PathBuf>,
    /// Print the server's JSON answer.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct Target {
    #[command(flatten)]
    remote: RemoteArgs,
    /// The package.
    #[arg(long)]
    package: PackageId,
    /// The channel.
    #[arg(long)]
    channel: Channel,
    /// Why (kept in the channel's history).
    #[arg(long, default_value = "")]
    reason: String,
    /// Make the channel if the app has none of that name (else an unknown channel is an error
    /// that lists the app's channels).
    #[arg(long)]
    create_channel: bool,
}

#[derive(Subcommand)]
enum RampCommand {
    /// Start ramping a candidate (to the first step at once), replacing an earlier ramp.
    Start {
        #[command(flatten)]
        target: Target,
        /// The release to ramp (default: the candidate rolling out now).
        #[arg(long)]
        version: Option<ReleaseVersion>,
        /// The shares to go through, in percent, comma-separated, rising, ending at 100.
        #[arg(long, default_value = "1,5,25,100")]
        steps: String,
        /// Candidate devices that activated the release before a step may advance.
        #[arg(long, default_value_t = 100)]
        min_devices: u64,
        /// Seconds a step lasts at least.
        #[arg(long, default_value_t = 3600)]
        min_step_secs: u64,
        /// Largest acceptable increase of the failed-boot rate over stable's, in percentage
        /// points (two decimals at most).
        #[arg(long, default_value = "1")]
        margin: String,
        /// Roll the candidate back when it is clearly worse (at 99.9 %), not only pause.
        #[arg(long)]
        auto_rollback: bool,
    },
    /// Show a ramp: its policy, state and last evaluation with the figures.
    Show {
        #[command(flatten)]
        remote: RemoteArgs,
        /// The package.
        #[arg(long)]
        package: PackageId,
        /// The channel.
        #[arg(long)]
        channel: Channel,
    },
    /// Stop a ramp; the candidate's share stays where it is.
    Stop {
        #[command(flatten)]
        remote: RemoteArgs,
        /// The package.
        #[arg(long)]
        package: PackageId,
        /// The channel.
        #[arg(long)]
        channel: Channel,
    },
    /// Evaluate every running ramp now, rather than at the server's next pass (admin token).
    Evaluate {
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

#[derive(Args)]
struct PublishArgs {
    /// A build directory or a zip of it.
    source: PathBuf,
    #[command(flatten)]
    remote: RemoteArgs,
    /// The host app that embeds the package.
    #[arg(long)]
    app: AppId,
    /// The package.
    #[arg(long)]
    package: PackageId,
    /// The release's semantic version.
    #[arg(long)]
    version: ReleaseVersion,
    /// Promote to this channel right away.
    #[arg(long)]
    channel: Option<Channel>,
    /// Make the channel if the app has none of that name.
    #[arg(long, requires = "channel")]
    create_channel: bool,
    /// Supported host-app versions, a semver requirement such as ">=5.2, <7".
    #[arg(long)]
    requires: Option<String>,
    /// URL prefix the package answers for (repeatable).
    #[arg(long = "route")]
    routes: Vec<String>,
    /// Entry page (default index.html).
    #[arg(long)]
    entry: Option<String>,
    /// Serve the entry page for unknown paths (single-page app).
    #[arg(long)]
    spa: bool,
    /// Release notes.
    #[arg(long)]
    notes: Option<String>,
    /// Source revision (git commit) of the build.
    #[arg(long)]
    source_revision: Option<String>,
    /// Sign the release with this release key (the manifest is checked against the build
    /// first); a channel is only changed once it is signed.
    #[arg(long = "sign-with")]
    sign_with: Option<PathBuf>,
    /// Fetch priority for devices, 0 to 255, higher first (default: the previous release's, else 0).
    #[arg(long)]
    priority: Option<u8>,
    /// When devices may fetch the release before it is opened (default: the previous release's,
    /// else always).
    #[arg(long, value_enum)]
    prefetch: Option<PrefetchArg>,
}

/// `--prefetch`, spelled as command-line values are (`wifi-only`); see [`Prefetch`].
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum PrefetchArg {
    /// Whenever the device's conditions allow.
    Always,
    /// Only over Wi-Fi (an unmetered network).
    WifiOnly,
    /// Only once the package is opened.
    OnFirstUse,
}

impl From<PrefetchArg> for Prefetch {
    fn from(arg: PrefetchArg) -> Prefetch {
        match arg {
            PrefetchArg::Always => Prefetch::Always,
            PrefetchArg::WifiOnly => Prefetch::WifiOnly,
            PrefetchArg::OnFirstUse => Prefetch::OnFirstUse,
        }
    }
}

fn main() -> ExitCode {
    let cli = match parse_cli() {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("error: {}", report(&e));
            return ExitCode::FAILURE;
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let log_format = cli.log_format;
    match log_format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let message = report(&e);
            match log_format {
                LogFormat::Text => eprintln!("error: {message}"),
                LogFormat::Json => tracing::error!(error = %message, "failed"),
            }
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, outermost first. A cause whose text the message before
/// it already ends with (an IO error its context quotes) is said once, not twice.
fn report(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if message.ends_with(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The command line, with the settings of `serve --config FILE` (or `BALEEN_SERVER_CONFIG`)
/// placed before the command line's own, which override them.
fn parse_cli() -> Result<Cli> {
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let Some(serve) = argv.iter().position(|a| a == "serve") else {
        return Ok(Cli::parse_from(argv));
    };
    let after = &argv[serve + 1..];
    let given = after.iter().enumerate().find_map(|(i, a)| {
        let a = a.to_str()?;
        match a.strip_prefix("--config=") {
            Some(path) => Some(PathBuf::from(path)),
            None if a == "--config" => after.get(i + 1).map(PathBuf::from),
            None => None,
        }
    });
    let Some(file) = given.or_else(|| std::env::var_os("BALEEN_SERVER_CONFIG").map(PathBuf::from))
    else {
        return Ok(Cli::parse_from(argv));
    };
    let from_file = config_file_args(&file)?;
    let rest = argv.split_off(serve + 1);
    argv.extend(from_file.into_iter().map(Into::into));
    argv.extend(rest);
    Ok(Cli::parse_from(argv))
}

/// The `serve` arguments a config file sets, leaving out those whose variable is set in the
/// environment (it wins over the file).
fn config_file_args(file: &std::path::Path) -> Result<Vec<String>> {
    use clap::CommandFactory;
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading the server config {}", file.display()))?;
    let command = Cli::command();
    let flags: Vec<server::config_file::FlagSpec> = command
        .find_subcommand("serve")
        .map(|serve| {
            serve
                .get_arguments()
                .filter_map(|arg| {
                    Some(server::config_file::FlagSpec {
                        long: arg.get_long()?.to_owned(),
                        env: arg.get_env().and_then(|e| e.to_str()).map(str::to_owned),
                        switch: !arg.get_action().takes_values(),
                        repeatable: matches!(arg.get_action(), clap::ArgAction::Append),
                    })
                })
                .filter(|f| f.long != "config" && f.long != "help")
                .collect()
        })
        .unwrap_or_default();
    Ok(server::config_file::serve_args(
        &text,
        file,
        &flags,
        &|name| std::env::var_os(name).is_some(),
    )?)
}

/// The settings `baleen serve --config FILE` would run with (flags aside): the file's, under
/// its variables, over the defaults.
fn serve_settings_of(file: &std::path::Path) -> Result<ServeArgs> {
    let argv = ["baleen".to_owned(), "serve".to_owned()]
        .into_iter()
        .chain(config_file_args(file)?);
    match Cli::try_parse_from(argv) {
        Ok(Cli {
            command: Command::Serve(args),
            ..
        }) => Ok(args),
        Ok(_) => bail!("{}: not read as `serve` settings", file.display()),
        Err(e) => {
            let message = e.to_string();
            let first = message.lines().next().unwrap_or_default();
            bail!(
                "{}: {}",
                file.display(),
                first.strip_prefix("error: ").unwrap_or(first)
            )
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => runtime()?.block_on(serve(args)),
        Command::Keys {
            command: KeysCommand::Generate { dir, name, json },
        } => {
            let key = server::keys::generate(&dir, &name)?;
            if json {
                print_json(&serde_json::json!({
                    "key_id": key.keyid,
                    "private_key_file": key.private,
                    "public_key_file": key.public,
                }))
            } else {
                println!("key id:  {}", key.keyid);
                println!("private: {} (keep it secret)", key.private.display());
                println!("public:  {} (ship it in your apps)", key.public.display());
                Ok(())
            }
        }
        Command::Keys {
            command: KeysCommand::List(args),
        } => {
            let signers = args
                .sign_with
                .iter()
                .map(|p| server::keys::load(p))
                .collect::<Result<Vec<_>>>()?;
            let spec = |keys: &[PathBuf], threshold| server::keys::RoleSpec {
                keys: keys.to_vec(),
                threshold,
            };
            let bytes = server::keys::make_key_list(
                &args.app,
                args.version,
                [
                    &spec(&args.root, args.root_threshold),
                    &spec(&args.index, args.index_threshold),
                    &spec(&args.release, args.release_threshold),
                ],
                &signers,
            )?;
            std::fs::write(&args.out, &bytes)
                .with_context(|| format!("writing {}", args.out.display()))?;
            println!(
                "key list {} version {} written to {}",
                args.app,
                args.version,
                args.out.display()
            );
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::Sign { file, sign_with },
        } => {
            let mut bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            for path in &sign_with {
                let key = server::keys::load(path)?;
                bytes = manifests::cosign(&bytes, &key)
                    .with_context(|| format!("signing {}", file.display()))?
                    .bytes;
            }
            std::fs::write(&file, &bytes).with_context(|| format!("writing {}", file.display()))?;
            println!(
                "{} signed by {} more key(s)",
                file.display(),
                sign_with.len()
            );
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::Post { file, remote, app },
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let answer = client(&remote)?.add_key_list(&app, &bytes)?;
            print_answer(&remote, &answer, |a| {
                println!("app {} now uses key list version {}", a.app, a.version);
            })
        }
        Command::Sign {
            remote,
            app,
            package,
            version,
            sign_with,
            build,
        } => {
            let key = server::keys::load(&sign_with)?;
            let client = client(&remote)?;
            let release = client
                .releases(&package)?
                .into_iter()
                .find(|r| r.version == version)
                .ok_or_else(|| anyhow::anyhow!("{package} has no release {version}"))?;
            let digest = release.manifest_digest;
            let answer = server::remote::sign_published(
                &client,
                &app,
                &package,
                &version,
                &digest,
                &key,
                build.as_deref(),
            )?;
            print_answer(&remote, &answer, |a| {
                println!(
                    "signed {package}@{version} (manifest {}), now signed by {}",
                    a.manifest,
                    a.signed_by.join(", ")
                );
            })
        }
        Command::Token {
            command:
                TokenCommand::Create {
                    data_dir,
                    meta,
                    name,
                    scope,
                    package,
                    app,
                    expires_in,
                    json,
                },
        } => {
            let scope_name = scope;
            let scope = Scope::parse(&scope_name).with_context(|| {
                format!("unknown scope {scope_name:?}; use publish, release or admin")
            })?;
            let spec = server::auth::TokenSpec {
                name,
                scope,
                app: app.as_deref().map(manifests::AppId::parse).transpose()?,
                package: package
                    .as_deref()
                    .map(manifests::PackageId::parse)
                    .transpose()?,
                expires_in_secs: expires_in,
            };
            // A token goes into the database the server reads; a new, empty one elsewhere (a
            // mistyped path) would hold a token no server ever accepts.
            let meta = MetaLocation::parse(&meta).map_err(refusal)?;
            if meta == MetaLocation::DataDir && !data_dir.is_dir() {
                bail!(
                    "no data directory at {dir}: pass the --data-dir (or BALEEN_DATA_DIR) that \
                     `baleen serve` uses; a new one starts with `baleen keys generate --dir {dir}/keys`",
                    dir = data_dir.display()
                );
            }
            let made = runtime()?.block_on(async {
                let meta = meta
                    .open(&data_dir)
                    .await
                    .with_context(|| format!("opening the metadata store {meta:?}"))?;
                Ok::<_, anyhow::Error>(
                    server::auth::create_token(meta.as_ref(), &spec, "cli").await?,
                )
            })?;
            if json {
                print_json(&server::api::NewToken {
                    token: made.secret,
                    summary: server::api::TokenSummary::of(&made.record, server::service::now()),
                })
            } else {
                println!("{}", made.secret);
                Ok(())
            }
        }
        Command::Token {
            command: TokenCommand::List { remote },
        } => {
            let tokens = client(&remote)?.tokens()?;
            print_answer(&remote, &tokens, |tokens| {
                let when = |t: Option<manifests::Timestamp>| {
                    t.map_or_else(|| "-".to_owned(), |t| t.to_string())
                };
                let rows = tokens
                    .iter()
                    .map(|t| {
                        let binding = match (&t.app, &t.package) {
                            (Some(a), Some(p)) => format!("{a}/{p}"),
                            (None, Some(p)) => p.to_string(),
                            _ => "-".to_owned(),
                        };
                        vec![
                            t.name.clone(),
                            t.scope.clone(),
                            binding,
                            t.state.clone(),
                            t.created_at.to_string(),
                            when(t.expires_at),
                            when(t.last_used_at),
                        ]
                    })
                    .collect::<Vec<_>>();
                print_table(
                    &[
                        ("name", Left),
                        ("scope", Left),
                        ("package", Left),
                        ("state", Left),
                        ("created", Left),
                        ("expires", Left),
                        ("last used", Left),
                    ],
                    &rows,
                );
            })
        }
        Command::Token {
            command: TokenCommand::Revoke { name, remote },
        } => {
            let token = client(&remote)?.revoke_token(&name)?;
            print_answer(&remote, &token, |token| {
                let at = token.revoked_at.map(|t| t.to_string()).unwrap_or_default();
                println!("revoked token {} at {at}", token.name);
            })
        }
        Command::Origins { remote, app, set } => {
            let remote_client = client(&remote)?;
            let origins = if set.is_empty() {
                remote_client.origins(&app)?
            } else {
                remote_client.set_origins(&app, &server::api::Origins { origins: set })?
            };
            print_answer(&remote, &origins, |origins| {
                for origin in &origins.origins {
                    println!("{origin}");
                }
            })
        }
        Command::Audit { remote, limit } => {
            let entries = client(&remote)?.audit(limit)?;
            print_answer(&remote, &entries, |entries| {
                if entries.is_empty() {
                    println!("the audit log is empty");
                    return;
                }
                let rows = entries
                    .iter()
                    .map(|e| {
                        vec![
                            e.at.to_string(),
                            e.actor.clone(),
                            e.action.clone(),
                            e.target.clone(),
                            e.detail.clone(),
                        ]
                    })
                    .collect::<Vec<_>>();
                print_table(
                    &[
                        ("at", Left),
                        ("actor", Left),
                        ("action", Left),
                        ("target", Left),
                        ("detail", Left),
                    ],
                    &rows,
                );
            })
        }
        Command::Gc {
            remote,
            dry_run,
            max_age_secs,
            dev_max_age_secs,
            history_depth,
            keep_last,
        } => {
            let request = server::api::GcRequest {
                dry_run,
                max_age_secs,
                dev_max_age_secs,
                history_depth,
                keep_last,
            };
            // The values given are checked here, before the server is asked.
            if let Err(server::Error::InvalidPolicy {
                field,
                value,
                reason,
            }) = request.policy(Retention::default()).check()
            {
                bail!("--{} {value}: {reason}", field.replace('_', "-"));
            }
            let report = client(&remote)?.gc(&request)?;
            print_answer(&remote, &report, print_gc)
        }
        Command::Publish(args) => publish(args),
        Command::Migrate {
            data_dir,
            to_config,
            json,
        } => migrate(&data_dir, &to_config, json),
        Command::Watch {
            dir,
            remote,
            app,
            package,
            channel,
            routes,
            base_version,
            debounce_ms,
            max_publishes,
        } => {
            manifests::ReleaseVersion::parse(&base_version)?;
            let options = server::watch::WatchOptions {
                dir,
                app,
                package,
                channel,
                routes,
                base_version,
                debounce: std::time::Duration::from_millis(debounce_ms),
                max_publishes,
                json: remote.json,
            };
            server::watch::watch(&client(&remote)?, &options)
        }
        Command::Promote { target, version } => change(&target, Action::Promote { version }),
        Command::Rollout {
            target,
            version,
            percent,
        } => {
            let basis_points = percent_to_basis_points(&percent)?;
            change(
                &target,
                Action::Rollout {
                    version,
                    basis_points,
                },
            )
        }
        Command::Ramp { command } => ramp_command(command),
        Command::Pause { target } => change(&target, Action::Pause),
        Command::Resume { target } => change(&target, Action::Resume),
        Command::Complete { target } => change(&target, Action::Complete),
        Command::Rollback { target, to } => change(&target, Action::Rollback { to }),
        Command::Undo { target } => change(&target, Action::Undo),
        Command::Releases { remote, package } => {
            let releases = client(&remote)?.releases(&package)?;
            print_answer(&remote, &releases, |releases| {
                if releases.is_empty() {
                    println!("no releases of {package}");
                    return;
                }
                let rows = releases
                    .iter()
                    .map(|r| {
                        vec![
                            r.version.to_string(),
                            r.created_at.to_string(),
                            r.file_count.to_string(),
                            r.size_bytes.to_string(),
                            r.requires.as_str().to_owned(),
                            r.priority.to_string(),
                            r.prefetch.as_str().to_owned(),
                            r.publisher.clone(),
                            r.notes.lines().next().unwrap_or_default().to_owned(),
                        ]
                    })
                    .collect::<Vec<_>>();
                print_table(
                    &[
                        ("version", Left),
                        ("created", Left),
                        ("files", Right),
                        ("bytes", Right),
                        ("requires", Left),
                        ("priority", Right),
                        ("prefetch", Left),
                        ("publisher", Left),
                        ("notes", Left),
                    ],
                    &rows,
                );
            })
        }
        Command::IngestKey { command } => ingest_key(command),
        Command::Stats {
            remote,
            app,
            channel,
        } => {
            let reports = client(&remote)?.stats(&app, &channel)?;
            print_answer(&remote, &reports, |reports| {
                if reports.is_empty() {
                    println!("no figures for app {app} on {channel} yet");
                    return;
                }
                let pct =
                    |v: Option<f64>| v.map_or("-".to_owned(), |r| format!("{:.1}%", r * 100.0));
                let name = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
                let rows = reports
                    .iter()
                    .map(|r| {
                        vec![
                            name(r.package.as_ref().map(ToString::to_string)),
                            name(r.version.as_ref().map(ToString::to_string)),
                            r.installed.to_string(),
                            r.activated.to_string(),
                            r.failed.to_string(),
                            r.failure_rate_interval
                                .map_or("-".to_owned(), |[low, high]| {
                                    format!(
                                        "{} ({}..{})",
                                        pct(r.failure_rate),
                                        pct(Some(low)),
                                        pct(Some(high))
                                    )
                                }),
                            r.rolled_back.to_string(),
                            r.opens.to_string(),
                            pct(r.offline_hit_rate),
                            pct(r.under_1s_rate),
                        ]
                    })
                    .collect::<Vec<_>>();
                print_table(
                    &[
                        ("package", Left),
                        ("version", Left),
                        ("installed", Right),
                        ("activated", Right),
                        ("failed", Right),
                        ("failure rate (95 %)", Right),
                        ("rollback", Right),
                        ("opens", Right),
                        ("offline", Right),
                        ("<1s", Right),
                    ],
                    &rows,
                );
            })
        }
        Command::History {
            remote,
            package,
            channel,
        } => {
            let history = client(&remote)?.history(&package, &channel)?;
            print_answer(&remote, &history, |history| {
                if history.is_empty() {
                    println!("no history for {package} on {channel}");
                    return;
                }
                let version = |v: &Option<ReleaseVersion>| {
                    v.as_ref()
                        .map_or_else(|| "-".to_owned(), ToString::to_string)
                };
                let rows = history
                    .iter()
                    .map(|h| {
                        vec![
                            h.sequence.to_string(),
                            h.at.to_string(),
                            h.action.clone(),
                            version(&h.from_version),
                            version(&h.to_version),
                            h.rollout_basis_points
                                .map_or_else(|| "-".to_owned(), percent),
                            h.actor.clone(),
                            h.reason.clone(),
                        ]
                    })
                    .collect::<Vec<_>>();
                print_table(
                    &[
                        ("sequence", Right),
                        ("at", Left),
                        ("action", Left),
                        ("from", Left),
                        ("to", Left),
                        ("share", Right),
                        ("by", Left),
                        ("reason", Left),
                    ],
                    &rows,
                );
            })
        }
    }
}

/// A collection's report, for people.
fn print_gc(report: &server::api::GcReport) {
    let count = |n: u64, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let kept = report.releases_kept;
    println!(
        "{} {}, {} and {} ({} bytes); {} {}",
        if report.dry_run {
            "dry run, nothing removed: would remove"
        } else {
            "removed"
        },
        count(report.releases.len() as u64, "release"),
        count(report.packs, "pack"),
        count(report.blobs, "blob"),
        report.blob_bytes,
        count(kept, "release"),
        if kept == 1 { "stays" } else { "stay" },
    );
    if report.releases.is_empty() {
        return;
    }
    let rows = report
        .releases
        .iter()
        .map(|r| {
            vec![
                r.package.to_string(),
                r.version.to_string(),
                if r.dev_build { "dev build" } else { "release" }.to_owned(),
                r.created_at.to_string(),
                r.last_on_channel_at
                    .map_or_else(|| "never".to_owned(), |t| t.to_string()),
                r.file_count.to_string(),
                r.size_bytes.to_string(),
            ]
        })
        .collect::<Vec<_>>();
    println!();
    print_table(
        &[
            ("package", Left),
            ("version", Left),
            ("kind", Left),
            ("published", Left),
            ("last on a channel", Left),
            ("files", Right),
            ("bytes", Right),
        ],
        &rows,
    );
}

/// How a column's cells line up.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}
use Align::{Left, Right};

/// Prints rows under their headers, each column as wide as its widest cell, two spaces apart;
/// lines end without spaces.
fn print_table(headers: &[(&str, Align)], rows: &[Vec<String>]) {
    let width = |s: &str| s.chars().count();
    let widths: Vec<usize> = headers
        .iter()
        .enumerate()
        .map(|(i, (header, _))| {
            rows.iter()
                .filter_map(|row| row.get(i))
                .map(|cell| width(cell))
                .fold(width(header), usize::max)
        })
        .collect();
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, cell) in cells.enumerate() {
            let (Some(&column_width), Some(&(_, align))) = (widths.get(i), headers.get(i)) else {
                break;
            };
            if i > 0 {
                out.push_str("  ");
            }
            let pad = " ".repeat(column_width.saturating_sub(width(cell)));
            match align {
                Right => {
                    out.push_str(&pad);
                    out.push_str(cell);
                }
                Left => {
                    out.push_str(cell);
                    out.push_str(&pad);
                }
            }
        }
        // No trailing spaces, even when the last cells are empty.
        out.truncate(out.trim_end().len());
        out
    };
    println!("{}", line(&mut headers.iter().map(|(h, _)| *h)));
    for row in rows {
        println!("{}", line(&mut row.iter().map(String::as_str)));
    }
}

/// Basis points as a percentage: `1250` is `12.5%`.
fn percent(basis_points: u16) -> String {
    format!("{}%", f64::from(basis_points) / 100.0)
}

/// Prints a value as pretty JSON on standard output.
fn print_json<T: Serialize>(value: &T) -> Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(value).context("printing the answer as JSON")?
    );
    Ok(())
}

/// Parses `12.5` (percent) into basis points, refusing more than two decimals or over 100.
fn percent_to_basis_points(text: &str) -> Result<u16> {
    let (whole, frac) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
    let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || !digits_ok(whole)
        || !digits_ok(frac)
        || frac.len() > 2
        || whole.len() > 3
    {
        bail!("--percent {text:?}: expected a number from 0 to 100 with at most two decimals");
    }
    let whole: u32 = whole.parse()?;
    let frac: u32 = format!("{frac:0<2}").parse()?;
    let bp = whole * 100 + frac;
    if bp > 10_000 {
        bail!("--percent {text}: above 100");
    }
    Ok(bp as u16)
}

/// The client config file: where the commands that talk to a server find it when neither a flag
/// nor an environment variable says.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ClientConfig {
    server: Option<String>,
    token: Option<String>,
}

fn client(args: &RemoteArgs) -> Result<Remote> {
    let path = args.config.clone().or_else(|| {
        std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
            .map(|d| d.join("baleen").join("client.json"))
            .filter(|p| p.exists())
    });
    let config: ClientConfig = match &path {
        Some(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "parsing {} (expected {{\"server\": \"http://…\", \"token\": \"baleen_…\"}})",
                    path.display()
                )
            })?
        }
        None => ClientConfig::default(),
    };
    let server = args.server.clone().or(config.server).context(
        "no server: pass --server, set BALEEN_SERVER, or put \"server\" in the client config",
    )?;
    let server = server::remote::server_url(&server)?;
    let token = args.token.clone().or(config.token).context(
        "no token: pass --token, set BALEEN_TOKEN, or put \"token\" in the client config",
    )?;
    Ok(Remote::new(&server, &token))
}

/// Prints the server's answer: as JSON with `--json`, else for people.
fn print_answer<T: Serialize>(args: &RemoteArgs, answer: &T, human: impl FnOnce(&T)) -> Result<()> {
    if args.json {
        print_json(answer)
    } else {
        human(answer);
        Ok(())
    }
}

fn describe_ramp(r: &server::ramp::RampRecord) {
    let steps: Vec<String> = r.policy.steps.iter().map(|&s| percent(s)).collect();
    println!(
        "{} on {}: ramping {} through {} ({})",
        r.package,
        r.channel,
        r.version,
        steps.join(", "),
        r.state.name()
    );
    match &r.last {
        Some(e) => println!(
            "  {} at {} ({}): {}",
            e.verdict,
            percent(e.basis_points),
            e.at,
            e.reason
        ),
        None => println!("  not evaluated yet"),
    }
}

fn ramp_command(command: RampCommand) -> Result<()> {
    match command {
        RampCommand::Start {
            target,
            version,
            steps,
            min_devices,
            min_step_secs,
            margin,
            auto_rollback,
        } => {
            let steps = steps
                .split(',')
                .map(|s| percent_to_basis_points(s.trim()))
                .collect::<Result<Vec<u16>>>()
                .context("--steps: percentages such as 1,5,25,100")?;
            let policy = server::ramp::RampPolicy {
                steps,
                min_devices,
                min_step_secs,
                margin_basis_points: percent_to_basis_points(&margin).context("--margin")?,
                auto_rollback,
            };
            let request = server::api::RampRequest {
                version,
                policy,
                reason: target.reason.clone(),
            };
            let ramp =
                client(&target.remote)?.start_ramp(&target.package, &target.channel, &request)?;
            let needed = ramp.policy.devices_to_conclude();
            if needed > ramp.policy.min_devices {
                eprintln!(
                    "note: with a margin of {} points, a step advances only once about {needed} \
                     devices activated the candidate without a failed boot (more with failures); \
                     until then it holds, whatever --min-devices says",
                    f64::from(ramp.policy.margin_basis_points) / 100.0
                );
            }
            print_answer(&target.remote, &ramp, describe_ramp)
        }
        RampCommand::Show {
            remote,
            package,
            channel,
        } => {
            let ramp = client(&remote)?.ramp(&package, &channel)?;
            print_answer(&remote, &ramp, describe_ramp)
        }
        RampCommand::Stop {
            remote,
            package,
            channel,
        } => {
            let ramp = client(&remote)?.stop_ramp(&package, &channel)?;
            print_answer(&remote, &ramp, describe_ramp)
        }
        RampCommand::Evaluate { remote } => {
            let ramps = client(&remote)?.evaluate_ramps()?;
            print_answer(&remote, &ramps, |ramps| {
                if ramps.is_empty() {
                    println!("no ramp evaluated (none running, or another replica is at it)");
                }
                ramps.iter().for_each(describe_ramp);
            })
        }
    }
}

fn change(target: &Target, action: Action) -> Result<()> {
    let request = ChangeRequest {
        action,
        reason: target.reason.clone(),
        create_channel: target.create_channel,
    };
    let answer = client(&target.remote)?.change(&target.package, &target.channel, &request)?;
    print_answer(&target.remote, &answer, |a| {
        let s = &a.state;
        println!(
            "{} on {}: stable {}, candidate {}{} (index sequence {})",
            target.package,
            target.channel,
            s.stable
                .as_ref()
                .map_or_else(|| "-".to_owned(), ToString::to_string),
            s.candidate
                .as_ref()
                .map_or_else(|| "-".to_owned(), ToString::to_string),
            s.candidate
                .as_ref()
                .map(|_| format!(
                    " at {}{}",
                    percent(s.rollout_basis_points),
                    if s.paused { ", paused" } else { "" }
                ))
                .unwrap_or_default(),
            a.sequence
        );
    })
}

fn publish(args: PublishArgs) -> Result<()> {
    let request = PublishRequest {
        version: args.version.to_string(),
        channel: args.channel.as_ref().map(ToString::to_string),
        requires: args.requires.clone(),
        routes: args.routes.clone(),
        entry: args.entry.clone(),
        spa: args.spa.then_some(true),
        notes: args.notes.clone(),
        source_revision: args.source_revision.clone(),
        priority: args.priority,
        prefetch: args.prefetch.map(|p| Prefetch::from(p).as_str().to_owned()),
        ..PublishRequest::default()
    };
    // Everything that can be checked here is, before a large build is zipped and uploaded.
    request
        .check()
        .context("nothing was published; check the arguments")?;
    let source = &args.source;
    if !source.exists() {
        bail!(
            "{} does not exist; give the build directory or a zip of it",
            source.display()
        );
    }
    if let Some(entry) = &args.entry
        && source.is_dir()
        && !source.join(entry).is_file()
    {
        bail!(
            "entry page \"{entry}\" is not in {} (choose one with --entry)",
            source.display()
        );
    }
    // A release to be signed here goes to its channel only once signed.
    let signer = args
        .sign_with
        .as_deref()
        .map(server::keys::load)
        .transpose()?;
    let remote = client(&args.remote)?;
    let query = PublishQuery {
        version: request.version.clone(),
        channel: request.channel.clone().filter(|_| signer.is_none()),
        requires: request.requires.clone(),
        entry: request.entry.clone(),
        notes: request.notes.clone(),
        source_revision: request.source_revision.clone(),
        spa: request.spa,
        routes: (!request.routes.is_empty()).then(|| request.routes.join(",")),
        priority: request.priority,
        prefetch: request.prefetch.clone(),
        create_channel: (args.create_channel && signer.is_none()).then_some(true),
        ..PublishQuery::default()
    };
    let mut answer = remote.publish(source, &args.app, &args.package, &query, !args.remote.json)?;
    if let Some(key) = &signer {
        server::remote::sign_published(
            &remote,
            &args.app,
            &args.package,
            &args.version,
            &answer.release.manifest_digest,
            key,
            Some(source),
        )
        .context("published, but not signed: sign it with `baleen sign`")?;
        if let Some(channel) = &args.channel {
            let change = ChangeRequest {
                action: Action::Promote {
                    version: args.version.clone(),
                },
                reason: String::new(),
                create_channel: args.create_channel,
            };
            answer.sequence = Some(remote.change(&args.package, channel, &change)?.sequence);
        }
    }
    print_answer(&args.remote, &answer, |a| {
        let r = &a.release;
        println!(
            "{} {}@{}: {} files, {} bytes, manifest {}",
            if a.created {
                "published"
            } else {
                "already published (no change)"
            },
            args.package,
            r.version,
            r.file_count,
            r.size_bytes,
            r.manifest_digest
        );
        if let (Some(seq), Some(channel)) = (a.sequence, &args.channel) {
            println!("promoted to {channel} (index sequence {seq})");
        }
    })
}

/// `baleen migrate`: the target read from the scaled config as `serve` reads it, checked before
/// anything is copied, then the copy and its report.
fn migrate(data_dir: &std::path::Path, config: &std::path::Path, json: bool) -> Result<()> {
    let target = serve_settings_of(config)?;
    let in_config = || format!("the target in {}", config.display());
    let bucket = match BlobLocation::parse(&target.blobs).with_context(in_config)? {
        BlobLocation::S3 { bucket } => bucket,
        BlobLocation::DataDir => bail!(
            "{}: blobs = {:?} keeps blobs in a data directory; migrate copies them to a bucket: \
             set [storage] blobs = \"s3://BUCKET\" (or BALEEN_BLOBS)",
            config.display(),
            target.blobs
        ),
    };
    let meta = MetaLocation::parse(&target.meta).with_context(in_config)?;
    let MetaLocation::Postgres { url } = &meta else {
        bail!(
            "{}: meta = {:?} keeps the metadata in a data directory; migrate copies it to \
             PostgreSQL: set [storage] meta = \"postgres://USER:PASSWORD@HOST:PORT/DATABASE\" \
             (or BALEEN_META)",
            config.display(),
            target.meta
        );
    };
    let shown = server::meta_store::postgres::redact(url);
    server::migrate::check_install(data_dir)?;
    let key = check_signing_key(data_dir, &target, config)?;
    let s3 =
        S3Config::from_env(&bucket, |name| std::env::var(name).ok()).with_context(in_config)?;
    let report = runtime()?.block_on(async {
        let blobs = S3BlobStore::open(&s3)
            .await
            .with_context(|| format!("opening bucket {bucket}"))?;
        let store = server::meta_store::postgres::PostgresMetaStore::connect(url)
            .await
            .with_context(|| format!("opening PostgreSQL {shown}"))?;
        server::migrate::migrate(data_dir, &blobs, &store)
            .await
            .with_context(|| {
                format!(
                    "migrating {} to bucket {bucket} and PostgreSQL {shown}",
                    data_dir.display()
                )
            })
    })?;
    if json {
        return print_json(&report);
    }
    let blobs = &report.blobs;
    println!(
        "blobs: copied {} ({}) and {} precompressed copies, each verified; {} ({}) and {} precompressed copies were in the bucket already{}",
        blobs.copied,
        bytes(blobs.copied_bytes),
        blobs.variants_copied,
        blobs.skipped,
        bytes(blobs.skipped_bytes),
        blobs.variants_skipped,
        if blobs.replaced > 0 {
            format!("; {} damaged copies in the bucket replaced", blobs.replaced)
        } else {
            String::new()
        }
    );
    let tables = report
        .tables
        .iter()
        .map(|t| format!("{} {}", t.table, t.rows))
        .collect::<Vec<_>>()
        .join(", ");
    match report.metadata {
        server::migrate::MetadataOutcome::Copied => {
            println!("metadata: copied in one transaction and verified: {tables}");
        }
        server::migrate::MetadataOutcome::AlreadyCopied => println!(
            "metadata: PostgreSQL already holds exactly this install's rows (an earlier run copied them); nothing written: {tables}"
        ),
    }
    println!(
        "done in {:.1} s; start the scaled servers with `baleen serve --config {}` and the signing key {key}",
        report.elapsed_ms as f64 / 1000.0,
        config.display()
    );
    Ok(())
}

/// The scaled servers must sign with the install's key (or every device refuses their indexes):
/// a key the config names that is another is refused before anything is copied. Returns the key
/// to give them, as the report names it.
fn check_signing_key(
    data_dir: &std::path::Path,
    target: &ServeArgs,
    config: &std::path::Path,
) -> Result<String> {
    let ours = DataDir::new(data_dir).key_path();
    let theirs = target
        .key
        .clone()
        .unwrap_or_else(|| DataDir::new(&target.data_dir).key_path());
    if !ours.exists() {
        return Ok(format!(
            "the install was served with (it is not at {})",
            ours.display()
        ));
    }
    let id = server::keys::load_public(&ours)?.id();
    if theirs.exists() {
        let their_id = server::keys::load_public(&theirs)?.id();
        if their_id != id {
            bail!(
                "{}: the scaled servers would sign with key {their_id} ({}), not the install's key \
                 {id} ({}); devices would refuse their indexes: give them the install's key \
                 (key = \"…\" in the file); nothing was copied",
                config.display(),
                theirs.display(),
                ours.display()
            );
        }
    }
    Ok(format!("{id} ({})", ours.display()))
}

/// A byte count for people: `3.4 MiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The settings of `serve`, checked: a bad value is refused now, naming its flag and variable.
fn settings(data: &DataDir, args: &ServeArgs) -> Result<Settings> {
    let mut settings = data.settings();
    settings.index_ttl_secs = args.index_ttl_secs;
    settings.index_max_age_secs = args.index_max_age_secs;
    settings.max_upload_bytes = args.max_upload_bytes;
    settings.pack_wait = std::time::Duration::from_millis(args.pack_wait_ms);
    settings.events_per_device_per_minute = args.events_per_device_per_minute;
    settings.events_per_address_per_minute = args.events_per_address_per_minute;
    settings.retention = Retention {
        max_age_secs: args.gc_max_age_secs,
        dev_max_age_secs: args.gc_dev_max_age_secs,
        history_depth: args.gc_history_depth,
        keep_last: args.gc_keep_last,
    };
    settings.gc_interval =
        (args.gc_interval_secs > 0).then(|| std::time::Duration::from_secs(args.gc_interval_secs));
    settings.ramp_interval = (args.ramp_interval_secs > 0)
        .then(|| std::time::Duration::from_secs(args.ramp_interval_secs));
    settings.fast_pack_memory_bytes = args.fast_pack_memory_mib.saturating_mul(1024 * 1024);
    settings.blob_cache_bytes = args.blob_cache_mib.saturating_mul(1024 * 1024);
    settings.protected_channels = args
        .protected_channels
        .iter()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .collect();
    for channel in &settings.protected_channels {
        manifests::Channel::parse(channel)
            .map_err(|e| anyhow::anyhow!("--protected-channel {channel:?}: {e}"))?;
    }
    settings.check().map_err(refusal)?;
    Ok(settings)
}

/// `--blobs`, checked.
fn blob_location(value: &str) -> Result<BlobLocation> {
    BlobLocation::parse(value).map_err(refusal)
}

/// A refused setting, naming its flag and variable.
fn refusal(e: server::Error) -> anyhow::Error {
    match e {
        server::Error::InvalidSetting {
            setting,
            value,
            reason,
        } => anyhow::anyhow!(
            "refusing to start: --{} {value} (or BALEEN_{}): {reason}",
            setting.replace('_', "-"),
            setting.to_uppercase()
        ),
        e => e.into(),
    }
}

/// Binds the address to listen on, saying so plainly when another process holds it.
async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    match server::http::bind(addr).await {
        Ok(listener) => Ok(listener),
        Err(server::Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::AddrInUse => {
            bail!(
                "{addr} is already in use (another `baleen serve`?); \
                 listen elsewhere with --listen or BALEEN_LISTEN"
            )
        }
        Err(e) => Err(e.into()),
    }
}

/// Removes the data directories that demo servers killed without a chance to clean up left in
/// the temporary directory (`baleen-demo-<pid>` of a process that no longer runs). Where there
/// is no `/proc` to tell, nothing is removed.
fn sweep_dead_demo_dirs() {
    let proc_fs = std::path::Path::new("/proc/self");
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    if !proc_fs.exists() {
        return;
    }
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("baleen-demo-"))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            // Best effort: another demo server may be sweeping the same directory.
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

async fn serve(args: ServeArgs) -> Result<()> {
    let demo_dir = args
        .demo
        .then(|| std::env::temp_dir().join(format!("baleen-demo-{}", std::process::id())));
    let data = DataDir::new(demo_dir.as_ref().unwrap_or(&args.data_dir));
    // Checked before anything is read or written.
    let settings = settings(&data, &args)?;
    let blobs = blob_location(&args.blobs)?;
    let meta = MetaLocation::parse(&args.meta).map_err(refusal)?;
    let (key, _demo_dir) = match demo_dir {
        Some(dir) => {
            sweep_dead_demo_dirs();
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("clearing {}", dir.display()))?;
            }
            let cleanup = RemoveOnDrop(dir.clone());
            let generated = server::keys::generate(&dir.join("keys"), "signing")?;
            (server::keys::load(&generated.private)?, Some(cleanup))
        }
        None => {
            let key_path = args.key.clone().unwrap_or_else(|| data.key_path());
            if !key_path.exists() {
                bail!(
                    "no signing key at {}: create one with `baleen keys generate --dir {}`, \
                     pass --key, or try `baleen serve --demo`",
                    key_path.display(),
                    key_path
                        .parent()
                        .map_or_else(|| ".".into(), |p| p.display().to_string())
                );
            }
            (server::keys::load(&key_path)?, None)
        }
    };
    let extra_keys = args
        .extra_keys
        .iter()
        .map(|p| server::keys::load(p))
        .collect::<Result<Vec<_>>>()?;
    // Bound before the data directory is opened: opening clears the staging area, which must
    // not happen under a server already running on it.
    let listener = bind(args.listen).await?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let blobs = match blobs {
        BlobLocation::DataDir => None,
        BlobLocation::S3 { bucket } => {
            let config =
                S3Config::from_env(&bucket, |name| std::env::var(name).ok()).map_err(refusal)?;
            let store = S3BlobStore::open(&config)
                .await
                .with_context(|| format!("opening bucket {bucket}"))?;
            tracing::info!(bucket = %bucket, endpoint = ?config.endpoint, "blobs in S3");
            Some(Arc::new(store) as Arc<dyn server::blob_store::BlobStore>)
        }
    };
    let meta = match meta {
        MetaLocation::DataDir => None,
        postgres => {
            let store = postgres
                .open(data.root())
                .await
                .with_context(|| format!("opening the metadata store {postgres:?}"))?;
            tracing::info!(meta = ?postgres, "metadata in PostgreSQL");
            Some(store)
        }
    };
    let service = Arc::new(
        data.open_with_stores(key, settings, blobs, meta)?
            .with_keys(extra_keys),
    );
    service
        .follow_store()
        .await
        .context("following the channel changes of other replicas")?;
    if args.demo {
        let seeded = server::demo::seed(&service, &data.root().join("tmp")).await?;
        print_demo(addr, &data, &service, &seeded, args.json)?;
        // The simulated fleet's reports, while the server starts: a few seconds of writes.
        let (fleet_service, key) = (service.clone(), seeded.ingest_key.clone());
        tokio::spawn(async move {
            match server::demo::seed_fleet(&fleet_service, &key).await {
                Ok(()) => tracing::info!("demo fleet's reports recorded"),
                Err(e) => tracing::error!(error = %e, "recording the demo fleet's reports failed"),
            }
        });
    } else {
        tracing::info!(data_dir = %data.root().display(), keyid = %service.public_key().id(), "serving");
        if args.json {
            println!(
                "{}",
                serde_json::json!({
                    "listening": format!("http://{addr}"),
                    "data_dir": data.root(),
                    "key_id": service.public_key().id().to_string(),
                })
            );
        } else {
            println!("listening on http://{addr}");
        }
    }
    server::http::serve(service, listener, shutdown_signal()).await?;
    Ok(())
}

fn print_demo(
    addr: SocketAddr,
    data: &DataDir,
    service: &server::service::Service,
    seeded: &server::demo::Seeded,
    json: bool,
) -> Result<()> {
    use server::demo::{APP, CHANNEL, PACKAGE};
    let base = format!("http://{addr}");
    if json {
        println!(
            "{}",
            serde_json::json!({
                "listening": base,
                "console": format!("{base}/console"),
                "data_dir": data.root(),
                "key_id": service.public_key().id().to_string(),
                "public_key": service.public_key().to_hex(),
                "admin_token": seeded.admin_token,
                "ingest_key": seeded.ingest_key,
                "app": APP,
                "package": PACKAGE,
                "channel": CHANNEL,
            })
        );
        return Ok(());
    }
    println!("Baleen demo server on {base}");
    println!("  data dir:    {} (removed on exit)", data.root().display());
    println!("  public key:  {}", service.public_key().to_hex());
    println!("  admin token: {}", seeded.admin_token);
    println!("  console:     {base}/console (sign in with the admin token)");
    println!(
        "  ingest key:  {} (devices send it with events)",
        seeded.ingest_key
    );
    println!(
        "  package {PACKAGE} of app {APP}: 1.0.0 stable on {CHANNEL}, 1.1.0 rolling out to 50 %"
    );
    println!();
    println!("Try:");
    println!("  curl -s {base}/v1/apps/{APP}/channels/{CHANNEL}/index");
    println!(
        "  export BALEEN_SERVER={base} BALEEN_TOKEN={}",
        seeded.admin_token
    );
    println!("  baleen releases --package {PACKAGE}");
    println!("  baleen stats --app {APP} --channel {CHANNEL}     # a simulated fleet's reports");
    println!(
        "  baleen ramp start --package {PACKAGE} --channel {CHANNEL} --steps 60,100 --min-step-secs 0 --margin 6"
    );
    println!(
        "  baleen ramp evaluate                                # let the devices' health decide"
    );
    println!("  baleen complete --package {PACKAGE} --channel {CHANNEL} --reason 'looks good'");
    println!("  baleen rollback --package {PACKAGE} --channel {CHANNEL} --reason 'blank page'");
    println!(
        "  baleen undo --package {PACKAGE} --channel {CHANNEL}      # the state before the last change"
    );
    println!("  baleen history --package {PACKAGE} --channel {CHANNEL}");
    println!(
        "(use `cargo run -p server --bin baleen --` in place of `baleen` inside the repository)"
    );
    Ok(())
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

#[derive(Subcommand)]
enum IngestKeyCommand {
    /// Make an ingest key for an app and print it (shown only this once): ship it in the app's
    /// client configuration (`ingest_key`).
    Create {
        #[command(flatten)]
        remote: RemoteArgs,
        /// The app.
        #[arg(long)]
        app: AppId,
        /// A name unique in the app, such as the app version that ships it.
        #[arg(long)]
        name: String,
    },
    /// List an app's ingest keys (never a key).
    List {
        #[command(flatten)]
        remote: RemoteArgs,
        /// The app.
        #[arg(long)]
        app: AppId,
    },
    /// Revoke an app's ingest key: batches carrying it are refused from now on (within 10 s on
    /// every replica).
    Revoke {
        #[command(flatten)]
        remote: RemoteArgs,
        /// The app.
        #[arg(long)]
        app: AppId,
        /// The key's name.
        name: String,
    },
}

fn ingest_key(command: IngestKeyCommand) -> Result<()> {
    match command {
        IngestKeyCommand::Create { remote, app, name } => {
            let made = client(&remote)?
                .create_ingest_key(&app, &server::api::IngestKeyRequest { name })?;
            print_answer(&remote, &made, |made| println!("{}", made.key))?;
        }
        IngestKeyCommand::List { remote, app } => {
            let keys = client(&remote)?.ingest_keys(&app)?;
            print_answer(&remote, &keys, |keys| {
                let rows = keys
                    .iter()
                    .map(|k| {
                        vec![
                            k.name.clone(),
                            k.state.clone(),
                            k.created_at.to_string(),
                            k.revoked_at.map_or("-".to_owned(), |t| t.to_string()),
                        ]
                    })
                    .collect::<Vec<_>>();
                print_table(
                    &[
                        ("NAME", Align::Left),
                        ("STATE", Align::Left),
                        ("CREATED", Align::Left),
                        ("REVOKED", Align::Left),
                    ],
                    &rows,
                );
            })?;
        }
        IngestKeyCommand::Revoke { remote, app, name } => {
            let key = client(&remote)?.revoke_ingest_key(&app, &name)?;
            print_answer(&remote, &key, |key| {
                println!("ingest key {:?} of app {app} revoked", key.name);
            })?;
        }
    }
    Ok(())
}
