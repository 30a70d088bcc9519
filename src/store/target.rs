//! Which store a command names: a local folder (resolved through symbolic links to where it
//! lives, refused when it is a file or an unwritable place) or an object-store URL, and whether
//! what is there is a store this tool writes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{lock, object, resolve, LocalStorage, Purpose, Storage, StoreError, PENDING};

/// The storage of the store named by `target`: an object store for a URL, else the local
/// folder at the real path (symlinks followed). Nothing is created.
///
/// # Errors
/// A URL that cannot be used (unknown scheme, bad configuration).
pub fn open_storage(target: &Path) -> Result<Arc<dyn Storage>, StoreError> {
    let text = target.to_string_lossy();
    if object::is_url(&text) {
        return Ok(Arc::new(object::ObjectStorage::from_url(&text)?));
    }
    let root = resolve(target).unwrap_or_else(|_| target.to_path_buf());
    Ok(Arc::new(LocalStorage::new(&root)))
}

/// Whether `target` names an object store rather than a local path.
#[must_use]
pub fn is_url(target: &Path) -> bool {
    object::is_url(&target.to_string_lossy())
}

/// The real path of `target`. For a build into a store not yet made, the parent folders are
/// created first, so that the new store's folder can be resolved.
pub(super) fn resolve_target(target: &Path, purpose: Purpose) -> Result<PathBuf, StoreError> {
    let resolve_error = |source| StoreError::Resolve { store: target.to_path_buf(), source };
    match resolve(target) {
        Ok(path) => Ok(path),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && purpose == Purpose::Append => {
            let parent = lexical_parent(target);
            std::fs::create_dir_all(&parent).map_err(|source| StoreError::Unwritable {
                store: target.to_path_buf(),
                folder: parent.clone(),
                source,
            })?;
            resolve(target).map_err(resolve_error)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotADirectory => {
            Err(StoreError::Unwritable { store: target.to_path_buf(), folder: lexical_parent(target), source: error })
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(StoreError::Missing(target.to_path_buf())),
        Err(error) => Err(resolve_error(error)),
    }
}

pub(super) fn lexical_parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Refuse, before a lock file is made beside it, a local path that this transaction would not
/// write: a file, or (to label or split) nothing; and a folder that cannot take new files.
pub(super) fn refuse_local_non_store(target: &Path, purpose: Purpose) -> Result<(), StoreError> {
    match std::fs::metadata(target) {
        Err(_) if purpose != Purpose::Append => Err(StoreError::Missing(target.to_path_buf())),
        Err(_) => check_writable(target, &lexical_parent(target)),
        Ok(meta) if !meta.is_dir() => Err(StoreError::NotAStore(target.to_path_buf())),
        Ok(_) => {
            refuse_what_is_not_a_store(&LocalStorage::new(target), target, purpose)?;
            check_writable(target, target)
        }
    }
}

/// Whether `folder` takes new files (probed with a file that is removed at once).
pub(super) fn check_writable(store: &Path, folder: &Path) -> Result<(), StoreError> {
    let probe = folder.join(format!(".ztf2zarr-probe.{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(source) => Err(StoreError::Unwritable { store: store.to_path_buf(), folder: folder.to_path_buf(), source }),
    }
}

/// Refuse a location that holds something other than a store (a store, an empty place, or
/// what a killed first build left are fine), and, to label or split, one with no store.
pub(super) fn refuse_what_is_not_a_store(storage: &dyn Storage, target: &Path, purpose: Purpose) -> Result<(), StoreError> {
    if storage.size(".zgroup")?.is_some() || storage.size(".zmetadata")?.is_some() {
        return Ok(());
    }
    if purpose != Purpose::Append {
        return Err(StoreError::Missing(target.to_path_buf()));
    }
    if storage.size(PENDING)?.is_some() {
        return Ok(()); // a first build that was killed: the next one starts it again
    }
    let empty = match storage.local_root() {
        Some(root) => std::fs::read_dir(root).map_or(true, |mut entries| entries.next().is_none()),
        None => storage.list("")?.iter().all(|key| key == lock::OBJECT_LOCK),
    };
    if empty {
        return Ok(());
    }
    Err(StoreError::NotAStore(target.to_path_buf()))
}
