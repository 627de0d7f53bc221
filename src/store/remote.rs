//! Zarr stores in S3-compatible object storage (AWS S3, MinIO, Ceph, …), read through zarrs'
//! object_store support: the nodes of a cluster job read the same store without a shared
//! file system.
//!
//! A store is named `s3://BUCKET/PATH/TO/STORE.zarr`. Credentials, region and endpoint come
//! from the usual environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_REGION`, `AWS_ENDPOINT_URL` for a server other than AWS, `AWS_ALLOW_HTTP=true` for a
//! plain-http one). A request that gets no complete answer within `DVC_STREAM_S3_TIMEOUT`
//! seconds (30 by default), retries included, fails the run: without a bound, an endpoint that
//! accepts connections and never answers held a run for three minutes of retries.
//! Reads are asynchronous underneath; one Tokio runtime, started on first
//! use, runs them while the calling worker thread waits, so the rest of dvc-stream (the
//! chunk cache, the scheduler, the kernels) is the same as for local stores.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use zarrs::storage::ReadableListableStorageTraits;
use zarrs_object_store::object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use zarrs_object_store::object_store::{ClientConfigKey, RetryConfig};
use zarrs_object_store::object_store::prefix::PrefixStore;
use zarrs_object_store::AsyncObjectStore;
use zarrs_storage::byte_range::{ByteRange, ByteRangeIterator};
use zarrs_storage::storage_adapter::async_to_sync::{AsyncToSyncBlockOn, AsyncToSyncStorageAdapter};
use zarrs_storage::{
    ListableStorageTraits, MaybeBytes, MaybeBytesIterator, ReadableStorageTraits, StorageError, StoreKey, StoreKeys, StoreKeysPrefixes,
    StorePrefix,
};

/// Whether `path` names a store in object storage (`s3://…`) rather than on a file system.
pub fn is_remote(path: &Path) -> bool {
    path.to_str().is_some_and(|s| s.starts_with("s3://"))
}

/// The variable that bounds how long one read from object storage may take.
pub const TIMEOUT_VAR: &str = "DVC_STREAM_S3_TIMEOUT";

/// How long one read (with its retries) may take: `DVC_STREAM_S3_TIMEOUT` seconds, 30 by
/// default — object_store's own default for one attempt.
pub fn timeout() -> Result<Duration> {
    let Ok(v) = std::env::var(TIMEOUT_VAR) else { return Ok(Duration::from_secs(30)) };
    match v.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s <= 86400.0 => Ok(Duration::from_secs_f64(s)),
        _ => bail!("{TIMEOUT_VAR}='{v}': a number of seconds between 0 and 86400 is needed"),
    }
}

fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    if let Some(rt) = RT.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("dvc-s3")
        .enable_all()
        .build()
        .map_err(|e| anyhow!("cannot start the runtime for object storage ({e})"))?;
    Ok(RT.get_or_init(|| rt))
}

/// Runs a read to completion on the shared runtime (the caller is a plain or rayon thread).
struct BlockOn(tokio::runtime::Handle);

impl AsyncToSyncBlockOn for BlockOn {
    fn block_on<F: core::future::Future>(&self, future: F) -> F::Output {
        self.0.block_on(future)
    }
}

/// A store whose failures that took the whole timeout say so: object_store reports them as
/// "error sending request", which does not tell a user that the endpoint never answered, nor
/// what to change. Once a read has timed out, every later one fails at once with the same
/// message: opening a store tries several keys, and a silent endpoint would otherwise cost
/// the timeout once per key.
struct Timed<S> {
    inner: S,
    timeout: Duration,
    timed_out: OnceLock<String>,
}

impl<S> Timed<S> {
    fn said<T>(&self, started: Instant, r: Result<T, StorageError>) -> Result<T, StorageError> {
        r.map_err(|e| {
            if started.elapsed() + Duration::from_millis(50) >= self.timeout {
                StorageError::Other(
                    self.timed_out
                        .get_or_init(|| {
                            format!(
                                "timed out: no complete answer from the store within {} s ({TIMEOUT_VAR} to wait longer): {e}",
                                self.timeout.as_secs_f64()
                            )
                        })
                        .clone(),
                )
            } else {
                e
            }
        })
    }

    /// Runs `read` unless a read has already timed out.
    fn read<T>(&self, read: impl FnOnce() -> Result<T, StorageError>) -> Result<T, StorageError> {
        if let Some(why) = self.timed_out.get() {
            return Err(StorageError::Other(why.clone()));
        }
        self.said(Instant::now(), read())
    }
}

impl<S: ReadableStorageTraits> ReadableStorageTraits for Timed<S> {
    fn get(&self, key: &StoreKey) -> Result<MaybeBytes, StorageError> {
        self.read(|| self.inner.get(key))
    }
    fn get_partial_many<'a>(&'a self, key: &StoreKey, byte_ranges: ByteRangeIterator<'a>) -> Result<MaybeBytesIterator<'a>, StorageError> {
        let started = Instant::now();
        let parts = self.read(|| self.inner.get_partial_many(key, byte_ranges))?;
        Ok(parts.map(|it| Box::new(it.map(move |r| self.said(started, r))) as Box<dyn Iterator<Item = _> + 'a>))
    }
    fn get_partial(&self, key: &StoreKey, byte_range: ByteRange) -> Result<MaybeBytes, StorageError> {
        self.read(|| self.inner.get_partial(key, byte_range))
    }
    fn size_key(&self, key: &StoreKey) -> Result<Option<u64>, StorageError> {
        self.read(|| self.inner.size_key(key))
    }
    fn supports_get_partial(&self) -> bool {
        self.inner.supports_get_partial()
    }
}

impl<S: ListableStorageTraits> ListableStorageTraits for Timed<S> {
    fn list(&self) -> Result<StoreKeys, StorageError> {
        self.read(|| self.inner.list())
    }
    fn list_prefix(&self, prefix: &StorePrefix) -> Result<StoreKeys, StorageError> {
        self.read(|| self.inner.list_prefix(prefix))
    }
    fn list_dir(&self, prefix: &StorePrefix) -> Result<StoreKeysPrefixes, StorageError> {
        self.read(|| self.inner.list_dir(prefix))
    }
    fn size_prefix(&self, prefix: &StorePrefix) -> Result<u64, StorageError> {
        self.read(|| self.inner.size_prefix(prefix))
    }
    fn size(&self) -> Result<u64, StorageError> {
        self.read(|| self.inner.size())
    }
}

/// The store at `s3://BUCKET/PREFIX`, readable and listable as a synchronous zarrs store.
pub fn open_s3(path: &Path) -> Result<Arc<dyn ReadableListableStorageTraits>> {
    let url = path.to_str().ok_or_else(|| anyhow!("{}: not a valid s3:// address", path.display()))?;
    let rest = url.strip_prefix("s3://").ok_or_else(|| anyhow!("{url}: not an s3:// address"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        bail!("{url}: no bucket name (s3://BUCKET/PATH)");
    }
    let timeout = timeout()?;
    let millis = |d: Duration| format!("{}ms", d.as_millis().max(1));
    // One attempt may take the whole time; retries of failed attempts stop once it is spent.
    let s3 = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::Timeout), millis(timeout))
        .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout), millis(timeout.min(Duration::from_secs(5))))
        .with_retry(RetryConfig { retry_timeout: timeout, ..Default::default() })
        .build()
        .map_err(|e| anyhow!("{url}: cannot open the bucket ({e})"))?;
    let store = PrefixStore::new(s3, prefix.trim_end_matches('/'));
    let store = Arc::new(AsyncObjectStore::new(store));
    let sync = AsyncToSyncStorageAdapter::new(store, BlockOn(runtime()?.handle().clone()));
    Ok(Arc::new(Timed { inner: sync, timeout, timed_out: OnceLock::new() }))
}
