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
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use zarrs::storage::ReadableListableStorageTraits;
use zarrs_object_store::object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use zarrs_object_store::object_store::{ClientConfigKey, RetryConfig};
use zarrs_object_store::object_store::prefix::PrefixStore;
use zarrs_object_store::AsyncObjectStore;
use zarrs_storage::storage_adapter::async_to_sync::{AsyncToSyncBlockOn, AsyncToSyncStorageAdapter};

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
    Ok(Arc::new(AsyncToSyncStorageAdapter::new(store, BlockOn(runtime()?.handle().clone()))))
}
