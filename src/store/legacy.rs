//! What earlier releases left, brought up to date: a store moved aside, staging and trash
//! folders of a version that published by exchanging folders (put back or removed before a
//! local store is locked), and a candid index of one object per store (rewritten as sorted runs).

use std::path::{Path, PathBuf};

use super::candids::{self, Run};
use super::{lock, Storage, StoreError, StoreReader};

/// Put back a store moved aside and remove staging and trash folders of a killed build of
/// a version that published by exchanging folders.
pub(super) fn recover(target: &Path) -> Result<(), StoreError> {
    let previous = lock::sibling(target, "previous");
    if previous.exists() {
        if target.exists() {
            remove(&previous)?;
        } else {
            std::fs::rename(&previous, target).map_err(|source| StoreError::Write { path: target.to_path_buf(), source })?;
        }
    }
    for tree in std::iter::once(lock::sibling(target, "staging")).chain(trash_folders(target)) {
        if tree.exists() {
            remove(&tree)?;
        }
    }
    Ok(())
}

fn remove(tree: &Path) -> Result<(), StoreError> {
    std::fs::remove_dir_all(tree).map_err(|source| StoreError::Remove { path: tree.to_path_buf(), source })
}

fn trash_folders(target: &Path) -> Vec<PathBuf> {
    let prefix = lock::sibling(target, "trash.").file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let Some(parent) = target.parent() else { return Vec::new() };
    let Ok(entries) = std::fs::read_dir(parent) else { return Vec::new() };
    entries.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().starts_with(&prefix)).map(|e| e.path()).collect()
}

/// A store written before candid runs: its candids (from the legacy index, else the catalog)
/// become one run, written now and named by this change's commit.
pub(super) fn upgrade_candid_index(reader: &StoreReader, storage: &dyn Storage, number: usize) -> Result<Vec<Run>, StoreError> {
    if reader.rows() == 0 {
        return Ok(Vec::new());
    }
    crate::errln!("upgrading the candid index of `{}` to sorted runs (once: {} candids are read)", storage.location(), reader.rows());
    let candids = match reader.legacy_candids()? {
        Some(candids) => candids,
        None => reader.catalog_candids()?,
    };
    let (run, bytes) = Run::of(format!("{}/{:06}-upgraded", candids::RUNS, number - 1), 0, &candids);
    storage.put(&run.key, &bytes)?;
    storage.flush()?;
    Ok(vec![run])
}

/// A run of the candid index that is missing (deleted after `verify` or an error found it
/// damaged) is rebuilt from the catalog rows it covers.
pub(super) fn restore_missing_runs(reader: &StoreReader, storage: &dyn Storage, runs: Vec<Run>) -> Result<Vec<Run>, StoreError> {
    for run in &runs {
        if storage.size(&run.key)?.is_some() {
            continue;
        }
        crate::errln!("rebuilding the missing candid run `{}` from the catalog ({} rows)", storage.object_location(&run.key), run.rows);
        let candids = reader.catalog_candids_of(run.first_row, run.rows)?;
        let (_, bytes) = Run::of(run.key.clone(), run.first_row, &candids);
        storage.put(&run.key, &bytes)?;
    }
    storage.flush()?;
    Ok(runs)
}
