//! A Zarr file-system store for writing many chunks quickly.
//!
//! zarrs' `FilesystemStore` calls `fsync` after every chunk it writes, so a 1 GiB conversion
//! into 64³ chunks waits on 16 384 disk flushes. Our outputs are staged under `NAME.partial`
//! and only renamed into place when complete, so per-chunk durability buys nothing: this
//! store writes chunk files plainly and [`BulkWriteStore::sync`] flushes the file system once
//! before the rename. Reads, partial writes and erasures go to zarrs' store unchanged.

use std::path::{Path, PathBuf};

use zarrs::filesystem::FilesystemStore;
use zarrs::storage::{
    byte_range::ByteRangeIterator, Bytes, MaybeBytesIterator, OffsetBytesIterator, ReadableStorageTraits, StorageError,
    StoreKey, StorePrefix, WritableStorageTraits,
};

/// A file-system store whose whole-chunk writes are not flushed one by one.
#[derive(Debug)]
pub struct BulkWriteStore {
    inner: FilesystemStore,
    root: PathBuf,
}

impl BulkWriteStore {
    pub fn new(root: &Path) -> Result<BulkWriteStore, StorageError> {
        let inner = FilesystemStore::new(root).map_err(|e| StorageError::Other(e.to_string()))?;
        Ok(BulkWriteStore { inner, root: root.to_path_buf() })
    }
}

/// Flushes everything written under `root` to disk (one `syncfs` for the file system).
pub fn sync(root: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let dir = std::fs::File::open(root)?;
    // SAFETY: syncfs only reads the descriptor, which stays open for the call.
    let r = unsafe { libc::syncfs(dir.as_raw_fd()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl ReadableStorageTraits for BulkWriteStore {
    fn get_partial_many<'a>(&'a self, key: &StoreKey, byte_ranges: ByteRangeIterator<'a>) -> Result<MaybeBytesIterator<'a>, StorageError> {
        self.inner.get_partial_many(key, byte_ranges)
    }
    fn size_key(&self, key: &StoreKey) -> Result<Option<u64>, StorageError> {
        self.inner.size_key(key)
    }
    fn supports_get_partial(&self) -> bool {
        self.inner.supports_get_partial()
    }
}

impl WritableStorageTraits for BulkWriteStore {
    fn set(&self, key: &StoreKey, value: Bytes) -> Result<(), StorageError> {
        let path = self.root.join(key.as_str());
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, &value)?;
        Ok(())
    }
    fn set_partial_many(&self, key: &StoreKey, offset_values: OffsetBytesIterator) -> Result<(), StorageError> {
        self.inner.set_partial_many(key, offset_values)
    }
    fn erase(&self, key: &StoreKey) -> Result<(), StorageError> {
        self.inner.erase(key)
    }
    fn erase_prefix(&self, prefix: &StorePrefix) -> Result<(), StorageError> {
        self.inner.erase_prefix(prefix)
    }
    fn supports_set_partial(&self) -> bool {
        self.inner.supports_set_partial()
    }
}
