//! Blobs in an S3-compatible bucket (AWS S3, Garage, MinIO…) through `object_store`, under the
//! same content-addressed names as the file engine: `blobs/ab/abcdef…`, and `blobs/ab/abcdef….gzip`
//! for a precompressed representation.
//!
//! Only immutable objects live here: a name is the sha256 of its bytes (a representation decodes to
//! them), so writing one twice writes the same thing and no write needs a precondition. That
//! matters because some engines (Garage among them) ignore `If-None-Match` and `If-Match`; every
//! mutable pointer stays in the metadata store. A put first asks (HEAD) whether the blob is there;
//! an upload streams from the staged file, in parts above [`S3Config::multipart_threshold_bytes`],
//! hashing as it goes, and completes only when the bytes have the digest they are stored under.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use manifests::{Digest, Hasher};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutPayload, WriteMultipart,
};
use tokio::io::AsyncReadExt;

use super::fs::check_encoding;
use super::{BlobRead, BlobStore, StoredBlob};
use crate::error::{Error, Result};

/// Objects above this size are uploaded in parts of this size (S3's smallest part is 5 MiB).
pub const DEFAULT_MULTIPART_THRESHOLD_BYTES: usize = 8 * 1024 * 1024;

/// Parts uploaded at once; with the one being read, memory per upload stays under
/// `(PARTS_IN_FLIGHT + 1) × part size`.
const PARTS_IN_FLIGHT: usize = 2;

/// Staged files uploaded at once by [`BlobStore::put_files`].
const UPLOADS_IN_FLIGHT: usize = 8;

/// Keys removed per batch request (S3's `DeleteObjects` takes up to 1,000).
const REMOVE_BATCH: usize = 1000;

/// The key the start-up self-check writes twice, outside `blobs/` so a listing never sees it.
const SELF_CHECK_KEY: &str = "baleen-self-check/create-only";

/// Where the bucket is and how to reach it.
#[derive(Clone)]
pub struct S3Config {
    /// The bucket.
    pub bucket: String,
    /// The S3 endpoint, such as `http://127.0.0.1:3900`; none for AWS itself.
    pub endpoint: Option<String>,
    /// The region (`garage` for a default Garage node).
    pub region: String,
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key (never printed).
    pub secret_access_key: String,
    /// A session token for temporary credentials.
    pub session_token: Option<String>,
    /// Bucket in the host name (AWS) rather than in the path (Garage, MinIO).
    pub virtual_hosted_style: bool,
    /// Speak plain HTTP to the endpoint: on for a loopback endpoint, otherwise only when asked.
    pub allow_http: bool,
    /// Objects larger than this go up in parts of this size.
    pub multipart_threshold_bytes: usize,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .field("allow_http", &self.allow_http)
            .field("multipart_threshold_bytes", &self.multipart_threshold_bytes)
            .finish_non_exhaustive()
    }
}

impl S3Config {
    /// The settings for `bucket` from environment variables read through `var` (so a config
    /// file can supply them too): the endpoint from `BALEEN_S3_ENDPOINT` or `AWS_ENDPOINT_URL`,
    /// the region from `BALEEN_S3_REGION`, `AWS_REGION` or `AWS_DEFAULT_REGION` (default
    /// `us-east-1`), the credentials from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
    /// `AWS_SESSION_TOKEN`. With an endpoint the bucket goes in the path; plain HTTP is allowed
    /// to a loopback endpoint, or elsewhere with `BALEEN_S3_ALLOW_HTTP=true`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSetting`] (setting `blobs`) when credentials are missing or the endpoint
    /// is plain HTTP to another host without `BALEEN_S3_ALLOW_HTTP`.
    pub fn from_env(bucket: &str, var: impl Fn(&str) -> Option<String>) -> Result<S3Config> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let refuse = |reason: String| Error::InvalidSetting {
            setting: "blobs",
            value: format!("s3://{bucket}"),
            reason,
        };
        let endpoint = var("BALEEN_S3_ENDPOINT").or_else(|| var("AWS_ENDPOINT_URL"));
        let region = var("BALEEN_S3_REGION")
            .or_else(|| var("AWS_REGION"))
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".to_owned());
        let access_key_id = var("AWS_ACCESS_KEY_ID")
            .ok_or_else(|| refuse("AWS_ACCESS_KEY_ID is not set".into()))?;
        let secret_access_key = var("AWS_SECRET_ACCESS_KEY")
            .ok_or_else(|| refuse("AWS_SECRET_ACCESS_KEY is not set".into()))?;
        let asked_http = var("BALEEN_S3_ALLOW_HTTP")
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"));
        let allow_http = match endpoint.as_deref().and_then(|e| e.strip_prefix("http://")) {
            Some(rest) if is_loopback(rest) || asked_http => true,
            Some(_) => {
                return Err(refuse(format!(
                    "endpoint {} is plain HTTP to another host; use https, or set BALEEN_S3_ALLOW_HTTP=true",
                    endpoint.as_deref().unwrap_or_default()
                )));
            }
            None => false,
        };
        Ok(S3Config {
            bucket: bucket.to_owned(),
            virtual_hosted_style: endpoint.is_none(),
            endpoint,
            region,
            access_key_id,
            secret_access_key,
            session_token: var("AWS_SESSION_TOKEN"),
            allow_http,
            multipart_threshold_bytes: DEFAULT_MULTIPART_THRESHOLD_BYTES,
        })
    }
}

/// Whether `host[:port][/…]` names the loopback interface.
fn is_loopback(rest: &str) -> bool {
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Blobs in a bucket.
#[derive(Debug, Clone)]
pub struct S3BlobStore {
    store: Arc<dyn ObjectStore>,
    part_bytes: usize,
}

impl S3BlobStore {
    /// Connects to the bucket, and checks that it answers and whether it honours create-only
    /// writes, logging a warning when it does not (harmless here: see the module's doc).
    ///
    /// # Errors
    ///
    /// [`Error::ObjectStore`] when the bucket cannot be reached or written.
    pub async fn open(config: &S3Config) -> Result<S3BlobStore> {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(&config.secret_access_key)
            .with_virtual_hosted_style_request(config.virtual_hosted_style)
            .with_allow_http(config.allow_http);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(token) = &config.session_token {
            builder = builder.with_token(token);
        }
        let s3 = builder
            .build()
            .map_err(|e| Error::object_store(format!("configuring bucket {}", config.bucket), e))?;
        let store = S3BlobStore::with_store(Arc::new(s3), config.multipart_threshold_bytes);
        if !store.honours_create_only().await? {
            tracing::warn!(
                bucket = %config.bucket,
                "the object store ignores conditional writes (If-None-Match); Baleen keeps only immutable, content-addressed blobs there, so this is safe, but nothing mutable may ever be stored in it"
            );
        }
        Ok(store)
    }

    /// Blobs in any `object_store` engine (an in-memory one in tests), uploading objects larger
    /// than `part_bytes` in parts of that size.
    pub fn with_store(store: Arc<dyn ObjectStore>, part_bytes: usize) -> S3BlobStore {
        S3BlobStore {
            store,
            part_bytes: part_bytes.max(1),
        }
    }

    /// Writes one key twice, create-only, and says whether the second write was refused.
    ///
    /// # Errors
    ///
    /// [`Error::ObjectStore`] when the key cannot be written or removed.
    pub async fn honours_create_only(&self) -> Result<bool> {
        let key = ObjectPath::from(SELF_CHECK_KEY);
        let context = || format!("self-check writing {SELF_CHECK_KEY}");
        let remove = || async {
            match self.store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(Error::object_store(context(), e)),
            }
        };
        remove().await?;
        let create = || {
            self.store
                .put_opts(&key, PutPayload::from_static(b"1"), PutMode::Create.into())
        };
        match create().await {
            // Another replica checking at the same moment.
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(Error::object_store(context(), e)),
        }
        let honoured = match create().await {
            Ok(_) => false,
            Err(object_store::Error::AlreadyExists { .. }) => true,
            Err(e) => return Err(Error::object_store(context(), e)),
        };
        remove().await?;
        Ok(honoured)
    }

    /// Uploads `bytes` (already known to have the key's digest) in one request or in parts.
    async fn upload_bytes(&self, key: &ObjectPath, bytes: &[u8]) -> Result<()> {
        if bytes.len() <= self.part_bytes {
            self.store
                .put(key, PutPayload::from(Bytes::copy_from_slice(bytes)))
                .await
                .map_err(|e| Error::object_store(format!("writing {key}"), e))?;
            return Ok(());
        }
        let mut upload = self.start_multipart(key).await?;
        for part in bytes.chunks(self.part_bytes) {
            if let Err(e) = upload.wait_for_capacity(PARTS_IN_FLIGHT).await {
                return Err(abort(upload, key, e).await);
            }
            upload.put(Bytes::copy_from_slice(part));
        }
        upload
            .finish()
            .await
            .map_err(|e| Error::object_store(format!("completing the upload of {key}"), e))?;
        Ok(())
    }

    async fn start_multipart(&self, key: &ObjectPath) -> Result<WriteMultipart> {
        let upload = self
            .store
            .put_multipart(key)
            .await
            .map_err(|e| Error::object_store(format!("starting an upload of {key}"), e))?;
        Ok(WriteMultipart::new_with_chunk_size(upload, self.part_bytes))
    }

    /// Streams a staged file to the blob's key, hashing as it goes, and completes the upload only
    /// if the bytes have `digest`. At most a few parts are in memory at once.
    async fn upload_file(&self, staged: &Path, digest: &Digest) -> Result<()> {
        let key = blob_key(digest);
        let mut file = tokio::fs::File::open(staged)
            .await
            .map_err(|e| Error::io(format!("opening {}", staged.display()), e))?;
        let size = file
            .metadata()
            .await
            .map_err(|e| Error::io(format!("reading {}", staged.display()), e))?
            .len();
        let mismatch = |actual: Digest| {
            Error::Internal(format!(
                "staged file {} has sha256 {actual}, not {digest}; not stored",
                staged.display()
            ))
        };
        if size <= self.part_bytes as u64 {
            let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            file.read_to_end(&mut bytes)
                .await
                .map_err(|e| Error::io(format!("reading {}", staged.display()), e))?;
            let actual = Digest::of(&bytes);
            if actual != *digest {
                return Err(mismatch(actual));
            }
            return self.upload_bytes(&key, &bytes).await;
        }
        let mut upload = self.start_multipart(&key).await?;
        let mut hasher = Hasher::new();
        loop {
            if let Err(e) = upload.wait_for_capacity(PARTS_IN_FLIGHT).await {
                return Err(abort(upload, &key, e).await);
            }
            let mut part = Vec::with_capacity(self.part_bytes);
            let read = (&mut file)
                .take(self.part_bytes as u64)
                .read_to_end(&mut part)
                .await;
            if let Err(e) = read {
                let _ = upload.abort().await;
                return Err(Error::io(format!("reading {}", staged.display()), e));
            }
            if part.is_empty() {
                break;
            }
            hasher.update(&part);
            upload.put(Bytes::from(part));
        }
        let actual = hasher.finish();
        if actual != *digest {
            if let Err(e) = upload.abort().await {
                tracing::warn!(key = %key, error = %e, "could not abort a refused upload; the bucket may keep its parts until a lifecycle rule removes them");
            }
            return Err(mismatch(actual));
        }
        upload
            .finish()
            .await
            .map_err(|e| Error::object_store(format!("completing the upload of {key}"), e))?;
        Ok(())
    }

    /// The object's size, or `None` if it is absent.
    async fn head(&self, key: &ObjectPath) -> Result<Option<u64>> {
        match self.store.head(key).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Error::object_store(format!("asking for {key}"), e)),
        }
    }

    /// Reads an object, or a range of it, as a stream.
    async fn get(&self, key: &ObjectPath, range: Option<Range<u64>>) -> Result<Option<BlobRead>> {
        let (total_size, range) = match range {
            None => (None, None),
            Some(asked) => {
                let Some(total) = self.head(key).await? else {
                    return Ok(None);
                };
                let clamped = asked.start.min(total)..asked.end.min(total);
                if clamped.start >= clamped.end {
                    // An empty range: nothing to ask the store for.
                    return Ok(Some(BlobRead {
                        total_size: total,
                        range: clamped.start..clamped.start,
                        reader: Box::pin(tokio::io::empty()),
                        in_memory: None,
                    }));
                }
                (Some(total), Some(clamped))
            }
        };
        let options = GetOptions::new().with_range(range.clone().map(GetRange::Bounded));
        let got = match self.store.get_opts(key, options).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(Error::object_store(format!("reading {key}"), e)),
        };
        let total_size = total_size.unwrap_or(got.meta.size);
        let range = got.range.clone();
        let key = key.clone();
        let stream = got.into_stream().map_err(move |e| {
            std::io::Error::other(Error::object_store(format!("reading {key}"), e))
        });
        Ok(Some(BlobRead {
            total_size,
            range,
            reader: Box::pin(tokio_util::io::StreamReader::new(stream)),
            in_memory: None,
        }))
    }

    /// Removes keys in batches; keys already gone are not an error.
    async fn remove_keys(&self, keys: Vec<ObjectPath>) -> Result<()> {
        for batch in keys.chunks(REMOVE_BATCH).map(<[ObjectPath]>::to_vec) {
            let paths = futures::stream::iter(batch.into_iter().map(Ok)).boxed();
            let mut results = self.store.delete_stream(paths);
            while let Some(result) = results.next().await {
                match result {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(Error::object_store("removing blobs", e)),
                }
            }
        }
        Ok(())
    }
}

/// Aborts a multipart upload after `e`, and returns the error to report.
async fn abort(upload: WriteMultipart, key: &ObjectPath, e: object_store::Error) -> Error {
    let _ = upload.abort().await;
    Error::object_store(format!("uploading {key}"), e)
}

fn blob_key(digest: &Digest) -> ObjectPath {
    let hex = digest.to_string();
    ObjectPath::from(format!("blobs/{}/{hex}", &hex[..2]))
}

fn variant_key(digest: &Digest, encoding: &str) -> ObjectPath {
    let hex = digest.to_string();
    ObjectPath::from(format!("blobs/{}/{hex}.{encoding}", &hex[..2]))
}

/// The blob (and representation) a key under `blobs/` names, by the file engine's rules; other
/// keys are not ours.
fn parse_key(key: &str) -> Option<(Digest, Option<&str>)> {
    let rest = key.strip_prefix("blobs/")?;
    let (prefix, name) = rest.split_once('/')?;
    let (hex, encoding) = match name.split_once('.') {
        Some((hex, encoding)) => (hex, Some(check_encoding(encoding).ok().map(|()| encoding)?)),
        None => (name, None),
    };
    let digest = Digest::parse(hex).ok()?;
    (prefix.len() == 2 && hex.starts_with(prefix)).then_some((digest, encoding))
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn put_file(&self, staged: &Path, digest: &Digest) -> Result<()> {
        if self.head(&blob_key(digest)).await?.is_none() {
            self.upload_file(staged, digest).await?;
        }
        tokio::fs::remove_file(staged)
            .await
            .map_err(|e| Error::io(format!("removing {}", staged.display()), e))
    }

    async fn put_files(&self, files: Vec<(PathBuf, Digest)>) -> Result<()> {
        futures::stream::iter(files)
            .map(|(staged, digest)| async move { self.put_file(&staged, &digest).await })
            .buffer_unordered(UPLOADS_IN_FLIGHT)
            .try_collect::<()>()
            .await
    }

    async fn put_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of(bytes);
        let key = blob_key(&digest);
        if self.head(&key).await?.is_none() {
            self.upload_bytes(&key, bytes).await?;
        }
        Ok(digest)
    }

    async fn size(&self, digest: &Digest) -> Result<Option<u64>> {
        self.head(&blob_key(digest)).await
    }

    async fn read(&self, digest: &Digest, range: Option<Range<u64>>) -> Result<Option<BlobRead>> {
        self.get(&blob_key(digest), range).await
    }

    async fn read_all(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        let key = blob_key(digest);
        let got = match self.store.get(&key).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(Error::object_store(format!("reading {key}"), e)),
        };
        let bytes = got
            .bytes()
            .await
            .map_err(|e| Error::object_store(format!("reading {key}"), e))?;
        Ok(Some(bytes.to_vec()))
    }

    async fn put_variant(&self, digest: &Digest, encoding: &str, bytes: &[u8]) -> Result<()> {
        check_encoding(encoding)?;
        self.upload_bytes(&variant_key(digest, encoding), bytes)
            .await
    }

    async fn read_variant(&self, digest: &Digest, encoding: &str) -> Result<Option<BlobRead>> {
        check_encoding(encoding)?;
        self.get(&variant_key(digest, encoding), None).await
    }

    async fn list(&self) -> Result<Vec<StoredBlob>> {
        let mut found: BTreeMap<Digest, StoredBlob> = BTreeMap::new();
        let mut listing = self.store.list(Some(&ObjectPath::from("blobs")));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| Error::object_store("listing blobs", e))?;
            let Some((digest, encoding)) = parse_key(meta.location.as_ref()) else {
                continue;
            };
            let blob = found.entry(digest).or_insert_with(|| StoredBlob {
                digest,
                size_bytes: None,
                variants: Vec::new(),
            });
            match encoding {
                Some(encoding) => blob.variants.push((encoding.to_owned(), meta.size)),
                None => blob.size_bytes = Some(meta.size),
            }
        }
        for blob in found.values_mut() {
            blob.variants.sort();
        }
        Ok(found.into_values().collect())
    }

    async fn remove(&self, blobs: &[StoredBlob]) -> Result<()> {
        // Representations first, in one pass, then the blobs: an interrupted removal leaves at
        // most representations of blobs nothing refers to, as the contract says.
        let mut variants = Vec::new();
        for blob in blobs {
            for (encoding, _) in &blob.variants {
                check_encoding(encoding)?;
                variants.push(variant_key(&blob.digest, encoding));
            }
        }
        self.remove_keys(variants).await?;
        self.remove_keys(blobs.iter().map(|b| blob_key(&b.digest)).collect())
            .await
    }
}
