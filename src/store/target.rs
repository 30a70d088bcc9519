//! Which store a command names: a [`StoreTarget`], parsed once from the STORE argument — a
//! local folder (resolved through symbolic links to where it lives, refused when it is a file or
//! an unwritable place) or an object-store URL — and whether what is there is a store this tool
//! writes. Below the command line nothing tells the two apart by their text again: a function
//! that must know which kind it has matches on the enum.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{lock, object, resolve, LocalStorage, Purpose, Storage, StoreError, PENDING};

/// The store a command names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreTarget {
    /// A folder on this machine, as given (symbolic links are resolved where it is opened or
    /// locked, so that the messages name it as the user did).
    Local(PathBuf),
    /// A store on object storage.
    Remote(StoreUrl),
}

/// The URL of a store on object storage, as the user typed it, checked to map one for one onto
/// the objects' keys (see [`StoreTarget::parse`]); only that check makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreUrl(String);

impl StoreUrl {
    /// The URL as given.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StoreTarget {
    /// The STORE argument as the store layer takes it, so that one store has one name and so
    /// one lock: a path as it is; a `file://` URL as its local path (locked with `flock` like
    /// the path); an object-store URL as it is, if its key prefix maps one for one onto the
    /// objects' keys (what is refused, and why, is [`object::check_store_url`]'s).
    ///
    /// # Errors
    /// The argument is a URL that cannot be mapped one for one.
    pub fn parse(given: &Path) -> Result<StoreTarget, StoreError> {
        let text = given.to_string_lossy();
        let bad = |reason| StoreError::BadUrl { url: text.to_string(), reason };
        match object::check_store_url(&text).map_err(bad)? {
            object::Named::Path => Ok(StoreTarget::Local(given.to_path_buf())),
            object::Named::File(path) => Ok(StoreTarget::Local(path)),
            object::Named::Url => Ok(StoreTarget::Remote(StoreUrl(text.into_owned()))),
        }
    }

    /// The local folder, if the store is one.
    #[must_use]
    pub fn local(&self) -> Option<&Path> {
        match self {
            StoreTarget::Local(path) => Some(path),
            StoreTarget::Remote(_) => None,
        }
    }

    /// Whether the store is on object storage.
    #[must_use]
    pub fn is_remote(&self) -> bool {
        matches!(self, StoreTarget::Remote(_))
    }
}

/// What the user typed (a path as it prints), so that messages name the store as given.
impl fmt::Display for StoreTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreTarget::Local(path) => path.display().fmt(f),
            StoreTarget::Remote(url) => url.fmt(f),
        }
    }
}

/// The storage of the store named by `target`: an object store for a URL, else the local
/// folder at the real path (symlinks followed). Nothing is created.
///
/// # Errors
/// A URL that cannot be used (unknown scheme, bad configuration).
pub fn open_storage(target: &StoreTarget) -> Result<Arc<dyn Storage>, StoreError> {
    match target {
        StoreTarget::Remote(url) => Ok(Arc::new(object::ObjectStorage::from_url(url.as_str())?)),
        StoreTarget::Local(path) => {
            let root = resolve(path).unwrap_or_else(|_| path.clone());
            Ok(Arc::new(LocalStorage::new(&root)))
        }
    }
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
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(StoreError::Missing(StoreTarget::Local(target.to_path_buf()))),
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
        Err(_) if purpose != Purpose::Append => Err(StoreError::Missing(StoreTarget::Local(target.to_path_buf()))),
        Err(_) => check_writable(target, &lexical_parent(target)),
        Ok(meta) if !meta.is_dir() => Err(StoreError::NotAStore(StoreTarget::Local(target.to_path_buf()))),
        Ok(_) => {
            refuse_what_is_not_a_store(&LocalStorage::new(target), &StoreTarget::Local(target.to_path_buf()), purpose)?;
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
pub(super) fn refuse_what_is_not_a_store(storage: &dyn Storage, target: &StoreTarget, purpose: Purpose) -> Result<(), StoreError> {
    if storage.size(".zgroup")?.is_some() || storage.size(".zmetadata")?.is_some() {
        return Ok(());
    }
    if purpose != Purpose::Append {
        return Err(StoreError::Missing(target.clone()));
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
    Err(StoreError::NotAStore(target.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_argument_is_parsed_once_into_its_kind() {
        let parse = |text: &str| StoreTarget::parse(Path::new(text)).unwrap();
        assert_eq!(parse("data/s.zarr"), StoreTarget::Local("data/s.zarr".into()));
        assert_eq!(parse("night:1/s3://x"), StoreTarget::Local("night:1/s3://x".into()), "a path with a colon");
        assert_eq!(parse("file:///tmp/s.zarr/"), StoreTarget::Local("/tmp/s.zarr".into()), "one store, one name, one lock");
        let remote = parse("s3://b/x/y.zarr/");
        assert!(remote.is_remote() && remote.local().is_none());
        assert_eq!(remote.to_string(), "s3://b/x/y.zarr/", "messages name the store as typed");
        assert_eq!(parse("data/s.zarr").to_string(), "data/s.zarr");
    }

    #[test]
    fn a_url_that_does_not_map_one_for_one_is_refused_naming_it() {
        let message = StoreTarget::parse(Path::new("s3://b//y.zarr")).unwrap_err().to_string();
        assert!(message.starts_with("`s3://b//y.zarr` cannot be used as a store: its path has an empty path segment"), "{message}");
    }

    #[test]
    fn a_path_that_is_not_utf8_is_kept_as_given() {
        use std::os::unix::ffi::OsStrExt;
        let given = Path::new(std::ffi::OsStr::from_bytes(b"stores/s\xff.zarr"));
        assert_eq!(StoreTarget::parse(given).unwrap(), StoreTarget::Local(given.to_path_buf()));
    }

    #[test]
    fn only_a_store_on_object_storage_is_told_how_to_break_a_stale_lock() {
        let locked = |store| StoreError::Locked { store, holder: "pid 1".into(), waited: None }.to_string();
        let remote = locked(StoreTarget::parse(Path::new("memory:///s.zarr")).unwrap());
        assert!(remote.ends_with("remove the lock with `ztf2zarr unlock memory:///s.zarr`"), "{remote}");
        let local = locked(StoreTarget::Local("s.zarr".into()));
        assert!(local.starts_with("`s.zarr` is being written") && !local.contains("unlock"), "{local}");
    }
}
