//! One writer per store. On a local disk: an exclusive `flock` on a lock file beside the store
//! (`.<store name>.lock` in the same folder). The kernel drops the lock when its process ends,
//! however it ends, so a lock left by a killed run never blocks the next one. The file is never
//! removed: unlinking a lock file lets two processes lock two different files.
//!
//! The lock is always taken on the store's real path (see [`resolve`]), so two writers that name
//! one store by two paths (a symlink and its target) take the same lock. A writer that finds the
//! lock held either stops at once or, with [`Wait`], polls until it is free (printing once on
//! stderr whom it waits for).
//!
//! On object storage, which has no `flock`: a lock object `.ztf2zarr/lock` inside the store,
//! made with a conditional create (it fails when the object exists) and deleted when the writer
//! ends. A writer killed without its `Drop` leaves the object: the error then says so and names
//! `ztf2zarr unlock STORE`, which deletes it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::storage::{Conditional, Version};
use super::{Storage, StoreError};

/// The lock object of a store on object storage.
pub const OBJECT_LOCK: &str = ".ztf2zarr/lock";

/// How long a writer waits for a store that another process is writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Wait {
    /// Stop at once with a message naming the holder.
    #[default]
    No,
    /// Wait as long as it takes.
    Forever,
    /// Wait at most this long, then stop as `No` does.
    AtMost(Duration),
}

impl Wait {
    /// The policy of a `--wait[=SECONDS]` option: absent, given bare, or given a number of seconds.
    #[must_use]
    pub fn from_option(option: Option<Option<u64>>) -> Wait {
        match option {
            None => Wait::No,
            Some(None) => Wait::Forever,
            Some(Some(seconds)) => Wait::AtMost(Duration::from_secs(seconds)),
        }
    }
}

/// How often a waiting writer tries the lock again.
const POLL: Duration = Duration::from_millis(100);

/// Symlinks followed at most while resolving a store path (as the kernel's own limit).
const MAX_LINKS: usize = 40;

/// A held store lock; released when dropped.
#[derive(Debug)]
pub struct StoreLock {
    file: File,
    store: PathBuf,
}

/// Where the lock of `store` lives (beside the real store when `store` is a symlink).
#[must_use]
pub fn lock_path(store: &Path) -> PathBuf {
    sibling(&resolve(store).unwrap_or_else(|_| store.to_path_buf()), "lock")
}

/// `<parent>/.<name>.<suffix>`: hidden files beside the store, on the same file system.
pub(super) fn sibling(store: &Path, suffix: &str) -> PathBuf {
    let name = store.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "store".into());
    store.with_file_name(format!(".{name}.{suffix}"))
}

/// The real path of a store: symlinks followed (also a link to a store not yet created), then
/// made absolute and canonical — the existing path itself, or for a new store its canonical
/// parent folder joined with its name. Writing through the resolved path publishes the real store
/// instead of replacing a link by a folder.
///
/// # Errors
/// A symlink loop, or a parent folder that does not exist or cannot be resolved.
pub fn resolve(store: &Path) -> std::io::Result<PathBuf> {
    let mut path = absolute(store)?;
    for _ in 0..MAX_LINKS {
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let link = std::fs::read_link(&path)?;
                path = path.parent().map_or_else(|| link.clone(), |parent| parent.join(&link));
            }
            Ok(_) => return std::fs::canonicalize(&path),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return canonical_new(&path),
            Err(error) => return Err(error),
        }
    }
    Err(std::io::Error::other(format!("more than {MAX_LINKS} symbolic links (a loop?)")))
}

fn absolute(path: &Path) -> std::io::Result<PathBuf> {
    if path.is_absolute() {
        Ok(path.to_path_buf())
    } else {
        Ok(std::env::current_dir()?.join(path))
    }
}

/// A path that does not exist yet: its parent canonicalized, its name kept.
fn canonical_new(path: &Path) -> std::io::Result<PathBuf> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(path.to_path_buf());
    };
    Ok(std::fs::canonicalize(parent)?.join(name))
}

impl StoreLock {
    /// Take the lock of `store` (its real path), or say who holds it.
    ///
    /// # Errors
    /// Another process holds the lock, or the lock file cannot be created.
    pub fn acquire(store: &Path) -> Result<StoreLock, StoreError> {
        StoreLock::acquire_waiting(store, Wait::No)
    }

    /// Take the lock of `store` (its real path), waiting for another writer as `wait` says.
    ///
    /// # Errors
    /// The lock is still held when the wait ends, or the lock file cannot be created.
    pub fn acquire_waiting(store: &Path, wait: Wait) -> Result<StoreLock, StoreError> {
        let store = resolve(store).map_err(|source| StoreError::Resolve { store: store.to_path_buf(), source })?;
        let path = sibling(&store, "lock");
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(|source| StoreError::Lock {
                store: store.clone(),
                path: path.clone(),
                source,
            })?;
        take_waiting(&store, wait, POLL, || Ok((!try_lock(&file)).then(|| holder(&mut file))))?;
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = writeln!(file, "pid {} since {}", std::process::id(), crate::calendar::utc_now());
        Ok(StoreLock { file, store })
    }

    /// The real path of the locked store.
    #[must_use]
    pub fn store(&self) -> &Path {
        &self.store
    }
}

/// A held lock object; deleted when dropped.
#[derive(Debug)]
pub struct ObjectLock {
    storage: Arc<dyn Storage>,
    /// What the object says (its holder).
    me: String,
    /// The version this writer last wrote.
    version: Version,
}

impl ObjectLock {
    /// Create the lock object of the store in `storage` (named `store` in messages), waiting
    /// for another writer as `wait` says.
    ///
    /// # Errors
    /// The lock object is still there when the wait ends, or it cannot be created.
    pub fn acquire(storage: Arc<dyn Storage>, store: &Path, wait: Wait) -> Result<ObjectLock, StoreError> {
        let me = format!("pid {} on {} since {}", std::process::id(), host_name(), crate::calendar::utc_now());
        let mut version = Version::default();
        take_waiting(store, wait, POLL * 10, || {
            if let Conditional::Written(written) = storage.put_if(OBJECT_LOCK, me.as_bytes(), None)? {
                version = written;
                return Ok(None);
            }
            let (holder, found) = match storage.get_versioned(OBJECT_LOCK) {
                Ok(Some((bytes, found))) => (String::from_utf8_lossy(&bytes).trim().to_string(), found),
                _ => ("a writer that has just finished".into(), Version::default()),
            };
            // Our create succeeded but its answer was lost, and the retry found our own lock.
            if holder == me {
                version = found;
                return Ok(None);
            }
            Ok(Some(holder))
        })?;
        Ok(ObjectLock { storage, me, version })
    }

    /// Whether the store can fence a writer whose lock was taken from it: rewrites the lock
    /// object conditionally on the version this writer created, which needs the conditional
    /// update (`If-Match`) that the commit point is written with.
    ///
    /// # Errors
    /// The lock object was removed or replaced since it was created, or it cannot be written.
    pub fn can_fence(&mut self, store: &Path) -> Result<bool, StoreError> {
        match self.storage.put_if(OBJECT_LOCK, self.me.as_bytes(), Some(&self.version))? {
            Conditional::Written(version) => {
                self.version = version;
                Ok(true)
            }
            Conditional::Unsupported => Ok(false),
            Conditional::Conflict => Err(StoreError::Fenced {
                store: store.display().to_string(),
                what: "this writer's lock was removed or replaced as soon as it was taken".into(),
                kept: "nothing was written".into(),
            }),
        }
    }
}

impl Drop for ObjectLock {
    fn drop(&mut self) {
        let _ = self.storage.delete(OBJECT_LOCK);
    }
}

/// Remove the lock object a killed writer left; returns what it said (None: there was none).
///
/// # Errors
/// The object cannot be read or deleted.
pub fn break_object_lock(storage: &dyn Storage) -> Result<Option<String>, StoreError> {
    let Some(bytes) = storage.get(OBJECT_LOCK)? else { return Ok(None) };
    storage.delete(OBJECT_LOCK)?;
    Ok(Some(String::from_utf8_lossy(&bytes).trim().to_string()))
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "an unknown host".into())
}

/// Call `attempt` until it takes the lock (it returns `None`, or the holder when another
/// writer has it), every `poll`, as long as `wait` allows; says once on stderr whom it waits for.
fn take_waiting(
    store: &Path,
    wait: Wait,
    poll: Duration,
    mut attempt: impl FnMut() -> Result<Option<String>, StoreError>,
) -> Result<(), StoreError> {
    let started = Instant::now();
    let mut announced = false;
    while let Some(holder) = attempt()? {
        let expired = match wait {
            Wait::No => true,
            Wait::Forever => false,
            Wait::AtMost(limit) => started.elapsed() >= limit,
        };
        if expired {
            let waited = (wait != Wait::No).then(|| started.elapsed().as_secs());
            return Err(StoreError::Locked { store: store.to_path_buf(), holder, waited });
        }
        if !announced {
            crate::errln!("waiting for `{}`: it is being written by another ztf2zarr ({holder})", store.display());
            announced = true;
        }
        std::thread::sleep(poll);
    }
    Ok(())
}

fn try_lock(file: &File) -> bool {
    // SAFETY: flock on a file descriptor we own; no memory is shared with the kernel.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// What the lock file says about its holder ("pid N since T"), read from the start.
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.rewind();
    let _ = file.read_to_string(&mut text);
    let text = text.trim();
    if text.is_empty() {
        "a process that has not yet written its pid".into()
    } else {
        text.to_string()
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        // SAFETY: as in `try_lock`; closing the file would release the lock too.
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

    #[test]
    fn a_link_and_its_target_share_one_lock() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.zarr");
        std::fs::create_dir(&real).unwrap();
        let link = dir.path().join("link.zarr");
        std::os::unix::fs::symlink("real.zarr", &link).unwrap();
        let held = StoreLock::acquire(&link).unwrap();
        assert_eq!(held.store(), std::fs::canonicalize(&real).unwrap());
        assert!(StoreLock::acquire(&real).is_err());
        assert!(!dir.path().join(".link.zarr.lock").exists());
    }

    #[test]
    fn a_link_to_a_store_not_yet_made_resolves_to_its_target() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("disk")).unwrap();
        let link = dir.path().join("s.zarr");
        std::os::unix::fs::symlink("disk/new.zarr", &link).unwrap();
        assert_eq!(resolve(&link).unwrap(), std::fs::canonicalize(dir.path()).unwrap().join("disk/new.zarr"));
    }

    #[test]
    fn a_symlink_loop_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.zarr"), dir.path().join("b.zarr"));
        std::os::unix::fs::symlink(&b, &a).unwrap();
        std::os::unix::fs::symlink(&a, &b).unwrap();
        assert!(resolve(&a).unwrap_err().to_string().contains("symbolic links"));
    }

    #[test]
    fn a_bounded_wait_gives_up_and_says_how_long_it_waited() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("s.zarr");
        let _held = StoreLock::acquire(&store).unwrap();
        let err = StoreLock::acquire_waiting(&store, Wait::AtMost(Duration::ZERO)).unwrap_err().to_string();
        assert!(err.contains("waited 0 s"), "{err}");
    }
}
