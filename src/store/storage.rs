//! Where a store's objects live. A store is a set of objects named by keys relative to its
//! root (`.zmetadata`, `catalog/3`, `stamps/3.0.0.0`); [`Storage`] is all the store layer asks
//! of the place that keeps them: whole-object reads and atomic whole-object writes, a
//! conditional create (for a lock), deletes and listings. Two implementations: [`LocalStorage`]
//! (a folder on a local disk) and `ObjectStorage` (S3, GCS, Azure through `object_store`,
//! `store/object.rs`).
//!
//! The commit protocol (`store/mod.rs`) needs exactly what every object store gives: a `put`
//! that a reader sees whole or not at all, and nothing across objects. So it holds on a local
//! disk and on S3 alike. On object storage, where a lock can be broken by hand, the protocol
//! also fences its writes with conditional puts ([`Storage::put_if`]: replace an object only if
//! it is still the version this writer saw); a local store needs none (its `flock` cannot be
//! taken from a live process).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use thiserror::Error;

/// A failure of one storage operation; names the object (a path or a URL) and what was tried.
#[derive(Debug, Error)]
#[error("cannot {action} `{location}`: {source}")]
pub struct StorageError {
    /// What was tried ("read", "write", "delete", "list", "create").
    pub action: &'static str,
    /// The object's full path or URL.
    pub location: String,
    /// Why it failed.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl StorageError {
    /// An error of `action` on `location`.
    pub fn new(action: &'static str, location: impl Into<String>, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StorageError { action, location: location.into(), source: source.into() }
    }
}

/// The version of an object that a conditional write expects to find: its ETag and, where the
/// store keeps versions, its version id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Version {
    /// The object's ETag.
    pub e_tag: Option<String>,
    /// The object's version id.
    pub version: Option<String>,
}

/// What a conditional write ([`Storage::put_if`]) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conditional {
    /// The object was written; its new version.
    Written(Version),
    /// The object was not the expected version (or existed, for a create): nothing written.
    Conflict,
    /// The store cannot make this kind of conditional write: nothing written.
    Unsupported,
}

/// The objects of one store. Keys are `/`-separated and relative to the store's root.
pub trait Storage: std::fmt::Debug + Send + Sync {
    /// The store's name in messages: a local path or a URL.
    fn location(&self) -> String;

    /// The full name of one object in messages.
    fn object_location(&self, key: &str) -> String {
        format!("{}/{key}", self.location().trim_end_matches('/'))
    }

    /// Whether the store lives on a local disk (then `local_root` is its folder).
    fn local_root(&self) -> Option<&Path> {
        None
    }

    /// The object's bytes, or `None` when there is no such object.
    ///
    /// # Errors
    /// The object exists but cannot be read.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError>;

    /// Bytes `range` of an object (fewer when the object ends first).
    ///
    /// # Errors
    /// No such object, or it cannot be read.
    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>, StorageError>;

    /// The object's size in bytes, or `None` when there is no such object.
    ///
    /// # Errors
    /// The object cannot be examined.
    fn size(&self, key: &str) -> Result<Option<u64>, StorageError>;

    /// Store `bytes` as the object `key`, replacing what is there: a reader sees the old object
    /// or the new one, never a part. The bytes are durable when [`Storage::flush`] returns.
    ///
    /// # Errors
    /// The object cannot be written.
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError>;

    /// Store several objects, each as [`Storage::put`] does, in order; a store that can
    /// prepares them all first, so that they become visible close together.
    ///
    /// # Errors
    /// An object cannot be written.
    fn put_all(&self, objects: &[(String, Vec<u8>)]) -> Result<(), StorageError> {
        objects.iter().try_for_each(|(key, bytes)| self.put(key, bytes))
    }

    /// Store `bytes` as the object `key` only if there is no such object; `Ok(false)` if there
    /// is one (left as it was). Atomic against another writer doing the same.
    ///
    /// # Errors
    /// The object cannot be written.
    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool, StorageError>;

    /// Store `bytes` as the object `key` only if it is still `expected` (`None`: only if there
    /// is no such object), atomically against any other write of it.
    ///
    /// # Errors
    /// The object cannot be written.
    fn put_if(&self, key: &str, bytes: &[u8], expected: Option<&Version>) -> Result<Conditional, StorageError> {
        match expected {
            None => Ok(if self.put_if_absent(key, bytes)? { Conditional::Written(Version::default()) } else { Conditional::Conflict }),
            Some(_) => Ok(Conditional::Unsupported),
        }
    }

    /// Store `bytes` as the object `key`, as [`Storage::put`] does, and return its new version
    /// (empty where the store has none).
    ///
    /// # Errors
    /// The object cannot be written.
    fn put_versioned(&self, key: &str, bytes: &[u8]) -> Result<Version, StorageError> {
        self.put(key, bytes).map(|()| Version::default())
    }

    /// The object's bytes with their version, or `None` when there is no such object.
    ///
    /// # Errors
    /// The object exists but cannot be read.
    fn get_versioned(&self, key: &str) -> Result<Option<(Vec<u8>, Version)>, StorageError> {
        Ok(self.get(key)?.map(|bytes| (bytes, Version::default())))
    }

    /// The object's version, or `None` when there is no such object.
    ///
    /// # Errors
    /// The object cannot be examined.
    fn version(&self, key: &str) -> Result<Option<Version>, StorageError> {
        Ok(self.size(key)?.map(|_| Version::default()))
    }

    /// Remove an object; one that does not exist is not an error.
    ///
    /// # Errors
    /// The object exists and cannot be removed.
    fn delete(&self, key: &str) -> Result<(), StorageError>;

    /// Every key under `prefix` (`""` for the whole store, else a folder such as `"rejects/"`),
    /// in no particular order.
    ///
    /// # Errors
    /// The listing fails.
    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError>;

    /// Bytes of every object of the store.
    ///
    /// # Errors
    /// The listing fails, or an object cannot be examined.
    fn total_size(&self) -> Result<u64, StorageError> {
        let mut total = 0;
        for key in self.list("")? {
            total += self.size(&key)?.unwrap_or(0);
        }
        Ok(total)
    }

    /// Make every `put` so far durable (a local disk syncs the folders that got new entries;
    /// object stores are durable when a put returns).
    ///
    /// # Errors
    /// A sync fails.
    fn flush(&self) -> Result<(), StorageError> {
        Ok(())
    }
}

/// A store in a folder on a local disk. Every `put` writes a temporary file beside the object
/// and renames it over the object, so that a reader never sees half a file.
///
/// Syncs wait for the disk, so they are put off to `flush`, the step before anything names the
/// new objects, and done there together: a new object's disk write only starts when it is put,
/// and `flush` syncs every such file and every folder that got entries, on several threads at
/// once (a file system commits concurrent syncs together). Only an object that replaces one is
/// synced before its rename, so that a power cut leaves the old object or the new one, never an
/// empty file where a committed object was.
#[derive(Debug)]
pub struct LocalStorage {
    root: PathBuf,
    /// Folders with entries not yet synced.
    dirty: Mutex<Vec<PathBuf>>,
    /// New objects in place whose bytes are not yet synced.
    unsynced: Mutex<Vec<PathBuf>>,
}

/// A temporary file written beside the object it becomes.
struct Written {
    file: File,
    temporary: PathBuf,
    path: PathBuf,
    /// Whether an object is there already (the bytes are then synced before the rename).
    replaces: bool,
}

impl Written {
    /// Remove the temporary file: its object is not put.
    fn discard(self) {
        drop(self.file);
        let _ = std::fs::remove_file(&self.temporary);
    }
}

/// Threads that sync files at once in `flush`: a sync waits for the disk, not for a core.
const SYNC_THREADS: usize = 8;

impl LocalStorage {
    /// The store in folder `root` (which need not exist yet).
    #[must_use]
    pub fn new(root: &Path) -> LocalStorage {
        LocalStorage { root: root.to_path_buf(), dirty: Mutex::new(Vec::new()), unsynced: Mutex::new(Vec::new()) }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    fn error(&self, action: &'static str, key: &str, source: std::io::Error) -> StorageError {
        StorageError::new(action, self.path(key).display().to_string(), source)
    }

    fn note_dirty(&self, folder: &Path) {
        let mut dirty = self.dirty.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !dirty.iter().any(|f| f == folder) {
            dirty.push(folder.to_path_buf());
        }
    }

    /// Write `bytes` to a temporary file beside the object `key`. A failed write leaves no
    /// temporary file.
    fn write_temporary(&self, key: &str, bytes: &[u8]) -> Result<Written, StorageError> {
        let path = self.path(key);
        let temporary = temporary_path(&path);
        let write = || -> std::io::Result<(File, bool)> {
            self.make_parents(&path)?;
            let mut file = File::create(&temporary)?;
            file.write_all(bytes)?;
            let replaces = path.symlink_metadata().is_ok();
            if !replaces {
                start_writeback(&file);
            }
            Ok((file, replaces))
        };
        let (file, replaces) = write().map_err(|e| {
            let _ = std::fs::remove_file(&temporary);
            self.error("write", key, e)
        })?;
        Ok(Written { file, temporary, path, replaces })
    }

    /// Sync the temporary file of an object that replaces one, before its rename.
    fn sync_temporary(&self, key: &str, written: &Written) -> Result<(), StorageError> {
        sync(&written.file).map_err(|e| self.error("sync", key, e))
    }

    /// Rename a temporary file over its object (atomic for readers), noting the folder to sync
    /// and, for a new object, its bytes. One that replaces an object must be synced already.
    fn rename_into_place(&self, key: &str, written: Written) -> Result<(), StorageError> {
        let Written { file, temporary, path, replaces } = written;
        drop(file);
        std::fs::rename(&temporary, &path).map_err(|e| {
            let _ = std::fs::remove_file(&temporary);
            self.error("write", key, e)
        })?;
        if let Some(parent) = path.parent() {
            self.note_dirty(parent);
        }
        if !replaces {
            self.unsynced.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(path);
        }
        Ok(())
    }

    /// Create the folders above `path` (noting each new one as dirty in its parent).
    fn make_parents(&self, path: &Path) -> std::io::Result<()> {
        let Some(parent) = path.parent() else { return Ok(()) };
        if parent.is_dir() {
            return Ok(());
        }
        self.make_parents(parent)?;
        match std::fs::create_dir(parent) {
            Ok(()) => {
                if let Some(grand) = parent.parent() {
                    self.note_dirty(grand);
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Storage for LocalStorage {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn object_location(&self, key: &str) -> String {
        self.path(key).display().to_string()
    }

    fn local_root(&self) -> Option<&Path> {
        Some(&self.root)
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        match std::fs::read(self.path(key)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.error("read", key, e)),
        }
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>, StorageError> {
        let read = || -> std::io::Result<Vec<u8>> {
            let mut file = File::open(self.path(key))?;
            file.seek(SeekFrom::Start(range.start))?;
            let mut bytes = Vec::new();
            file.take(range.end.saturating_sub(range.start)).read_to_end(&mut bytes)?;
            Ok(bytes)
        };
        read().map_err(|e| self.error("read", key, e))
    }

    fn size(&self, key: &str) -> Result<Option<u64>, StorageError> {
        match std::fs::metadata(self.path(key)) {
            Ok(meta) if meta.is_file() => Ok(Some(meta.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound || e.kind() == std::io::ErrorKind::NotADirectory => Ok(None),
            Err(e) => Err(self.error("read", key, e)),
        }
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let written = self.write_temporary(key, bytes)?;
        if written.replaces {
            if let Err(error) = self.sync_temporary(key, &written) {
                written.discard();
                return Err(error);
            }
        }
        self.rename_into_place(key, written)
    }

    /// Every file written first (those that replace an object synced, together), then the
    /// renames one after another: the new metadata documents of a commit appear within
    /// microseconds of each other.
    fn put_all(&self, objects: &[(String, Vec<u8>)]) -> Result<(), StorageError> {
        let mut prepared = Vec::with_capacity(objects.len());
        for (key, bytes) in objects {
            prepared.push((key, self.write_temporary(key, bytes)?));
        }
        let replacing: Vec<_> = prepared.iter().filter(|(_, w)| w.replaces).collect();
        if let Err(error) = sync_each(&replacing, |(key, written)| self.sync_temporary(key, written)) {
            prepared.into_iter().for_each(|(_, written)| written.discard());
            return Err(error);
        }
        for (key, written) in prepared {
            self.rename_into_place(key, written)?;
        }
        Ok(())
    }

    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool, StorageError> {
        let path = self.path(key);
        self.make_parents(&path).map_err(|e| self.error("create", key, e))?;
        let mut file = match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(self.error("create", key, e)),
        };
        file.write_all(bytes).and_then(|()| sync(&file)).map_err(|e| self.error("write", key, e))?;
        if let Some(parent) = path.parent() {
            self.note_dirty(parent);
        }
        Ok(true)
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path(key);
        match std::fs::remove_file(&path) {
            Ok(()) => {
                if let Some(parent) = path.parent() {
                    self.note_dirty(parent);
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.error("delete", key, e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let folder = self.path(prefix.trim_end_matches('/'));
        let mut keys = Vec::new();
        match list_files(&folder, prefix.trim_end_matches('/'), &mut keys) {
            Ok(()) => Ok(keys),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(self.error("list", prefix, e)),
        }
    }

    fn flush(&self) -> Result<(), StorageError> {
        let files = std::mem::take(&mut *self.unsynced.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        let folders = std::mem::take(&mut *self.dirty.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        if !syncing() {
            return Ok(());
        }
        // Files and folders together: all are synced before flush returns, and nothing names
        // them before that, so their order does not matter.
        let paths: Vec<PathBuf> = files.into_iter().chain(folders).collect();
        sync_each(&paths, |path| match File::open(path).and_then(|f| f.sync_all()) {
            // Removed since (a discarded chunk, emptied backups): nothing left to sync.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            result => result.map_err(|e| StorageError::new("sync", path.display().to_string(), e)),
        })
    }
}

/// `sync_one` for every item, on up to [`SYNC_THREADS`] threads; the first error is returned.
fn sync_each<T: Sync>(items: &[T], sync_one: impl Fn(&T) -> Result<(), StorageError> + Sync) -> Result<(), StorageError> {
    if items.len() < 2 {
        return items.iter().try_for_each(&sync_one);
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let worker = || -> Result<(), StorageError> {
        while let Some(item) = items.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) {
            sync_one(item)?;
        }
        Ok(())
    };
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..items.len().min(SYNC_THREADS)).map(|_| scope.spawn(worker)).collect();
        threads.into_iter().try_for_each(|t| t.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    })
}

/// Have the disk write of a new file start now, so that the sync in `flush` finds it (nearly)
/// done. Only a hint: a failure is ignored, and `flush` syncs the file all the same.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File) {
    use std::os::fd::AsRawFd;
    if syncing() {
        // SAFETY: sync_file_range on a file descriptor this function borrows; it reads no memory.
        let _ = unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File) {}

/// `.<name>.tmp.<pid>` beside `path`: on the same file system, so the rename is atomic, and
/// hidden from zarr (its name starts with a dot).
fn temporary_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp.{}", std::process::id()))
}

fn list_files(folder: &Path, relative: &str, keys: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(folder)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let key = if relative.is_empty() { name } else { format!("{relative}/{name}") };
        if entry.file_type()?.is_dir() {
            list_files(&entry.path(), &key, keys)?;
        } else {
            keys.push(key);
        }
    }
    Ok(())
}

/// Whether files and folders are synced: always, except when `ZTF2ZARR_NO_SYNC` is set, which
/// only the benchmarks (`scripts/bench_durability`, `scripts/bench_lightcurves`) do, to measure what the syncs cost.
pub(super) fn syncing() -> bool {
    static SYNCING: OnceLock<bool> = OnceLock::new();
    *SYNCING.get_or_init(|| std::env::var_os("ZTF2ZARR_NO_SYNC").is_none())
}

fn sync(file: &File) -> std::io::Result<()> {
    if syncing() {
        file.sync_all()
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_replaces_whole_objects_and_makes_folders() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::new(&dir.path().join("s.zarr"));
        storage.put("a/b/c", b"one").unwrap();
        storage.put("a/b/c", b"two!").unwrap();
        storage.flush().unwrap();
        assert_eq!(storage.get("a/b/c").unwrap().as_deref(), Some(&b"two!"[..]));
        assert_eq!(storage.size("a/b/c").unwrap(), Some(4));
        assert_eq!(storage.get_range("a/b/c", 1..3).unwrap(), b"wo");
        assert_eq!(storage.get("a/none").unwrap(), None);
        assert_eq!(storage.list("a/").unwrap(), vec!["a/b/c".to_string()]);
        assert!(storage.list("nothing/").unwrap().is_empty());
    }

    #[test]
    fn new_objects_wait_for_flush_to_be_synced_and_replacements_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::new(&dir.path().join("s.zarr"));
        let unsynced = |s: &LocalStorage| s.unsynced.lock().unwrap().clone();
        storage.put("a/new", b"one").unwrap();
        assert_eq!(unsynced(&storage), vec![dir.path().join("s.zarr/a/new")]);
        storage.put("a/new", b"two").unwrap(); // replaces: synced before its rename
        storage.put_all(&[("a/new".into(), b"three".to_vec()), ("b/other".into(), b"x".to_vec())]).unwrap();
        assert_eq!(unsynced(&storage).len(), 2, "only new objects wait for flush: {:?}", unsynced(&storage));
        storage.delete("b/other").unwrap(); // gone before the flush: nothing to sync
        storage.flush().unwrap();
        assert!(unsynced(&storage).is_empty());
        assert!(storage.dirty.lock().unwrap().is_empty());
        assert_eq!(storage.get("a/new").unwrap().as_deref(), Some(&b"three"[..]));
    }

    #[test]
    fn a_failed_sync_among_many_is_reported() {
        let items: Vec<usize> = (0..20).collect();
        let failing = |i: &usize| if *i == 13 { Err(StorageError::new("sync", format!("file {i}"), "no")) } else { Ok(()) };
        let error = sync_each(&items, failing).unwrap_err();
        assert_eq!(error.location, "file 13");
        assert!(sync_each(&items[..3], |_| Ok(())).is_ok());
    }

    #[test]
    fn put_if_absent_creates_once() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::new(dir.path());
        assert!(storage.put_if_absent("lock", b"1").unwrap());
        assert!(!storage.put_if_absent("lock", b"2").unwrap());
        assert_eq!(storage.get("lock").unwrap().as_deref(), Some(&b"1"[..]));
        storage.delete("lock").unwrap();
        storage.delete("lock").unwrap();
        assert!(storage.put_if_absent("lock", b"3").unwrap());
    }
}
