//! Zarr stores in S3-compatible object storage (AWS S3, MinIO, Ceph, …), read through zarrs'
//! object_store support: the nodes of a cluster job read the same store without a shared
//! file system.
//!
//! A store is named `s3://BUCKET/PATH/TO/STORE.zarr`. Credentials, region and endpoint come
//! from the usual environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_REGION`, `AWS_ENDPOINT_URL` for a server other than AWS, `AWS_ALLOW_HTTP=true` for a
//! plain-http one). Reads are asynchronous underneath; one Tokio runtime, started on first
//! use, runs them while the calling worker thread waits, so the rest of dvc-stream (the
//! chunk cache, the scheduler, the kernels) is the same as for local stores.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::{anyhow, bail, Result};
use zarrs::storage::ReadableListableStorageTraits;
use zarrs_object_store::object_store::aws::AmazonS3Builder;
use zarrs_object_store::object_store::prefix::PrefixStore;
use zarrs_object_store::AsyncObjectStore;
use zarrs_storage::storage_adapter::async_to_sync::{AsyncToSyncBlockOn, AsyncToSyncStorageAdapter};

/// Whether `path` names a store in object storage (`s3://…`) rather than on a file system.
pub fn is_remote(path: &Path) -> bool {
    path.to_str().is_some_and(|s| s.starts_with("s3://"))
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
    let s3 = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .build()
        .map_err(|e| anyhow!("{url}: cannot open the bucket ({e})"))?;
    let store = PrefixStore::new(s3, prefix.trim_end_matches('/'));
    let store = Arc::new(AsyncObjectStore::new(store));
    Ok(Arc::new(AsyncToSyncStorageAdapter::new(store, BlockOn(runtime()?.handle().clone()))))
}
