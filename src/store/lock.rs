//! One writer per store: an exclusive `flock` on a lock file beside the store
//! (`.<store name>.lock` in the same folder). The kernel drops the lock when its process ends,
//! however it ends, so a lock left by a killed run never blocks the next one. The file is never
//! removed: unlinking a lock file lets two processes lock two different files.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::StoreError;

/// A held store lock; released when dropped.
#[derive(Debug)]
pub struct StoreLock {
    file: File,
}

/// Where the lock of `store` lives.
#[must_use]
pub fn lock_path(store: &Path) -> PathBuf {
    sibling(store, "lock")
}

/// `<parent>/.<name>.<suffix>`: hidden files beside the store, on the same file system.
pub(super) fn sibling(store: &Path, suffix: &str) -> PathBuf {
    let name = store.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "store".into());
    store.with_file_name(format!(".{name}.{suffix}"))
}

impl StoreLock {
    /// Take the lock of `store`, or say who holds it.
    ///
    /// # Errors
    /// Another process holds the lock, or the lock file cannot be created.
    pub fn acquire(store: &Path) -> Result<StoreLock, StoreError> {
        let path = lock_path(store);
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(|source| StoreError::Lock {
                store: store.to_path_buf(),
                path: path.clone(),
                source,
            })?;
        // SAFETY: flock on a file descriptor we own; no memory is shared with the kernel.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(StoreError::Locked { store: store.to_path_buf(), holder: holder.trim().to_string() });
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = writeln!(file, "pid {} since {}", std::process::id(), crate::calendar::utc_now());
        Ok(StoreLock { file })
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        // SAFETY: as in `acquire`; closing the file would release the lock too.
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("s.zarr");
        let first = StoreLock::acquire(&store).unwrap();
        let err = StoreLock::acquire(&store).unwrap_err().to_string();
        assert!(err.contains("s.zarr") && err.contains(&format!("pid {}", std::process::id())), "{err}");
        drop(first);
        StoreLock::acquire(&store).unwrap();
    }
}
