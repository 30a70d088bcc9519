//! Finishing what a killed writer left: its pending marker says which chunks it may have added
//! and which metadata it may have written; the metadata is put back as `.zmetadata` (the commit
//! point) has it, the chunks past the committed rows are deleted, and backups named by markers
//! of earlier releases are restored (see `docs/appending.md`), and the temporary files it was
//! writing (`.<name>.tmp.<its pid>`) are deleted.

use std::path::Path;

use serde_json::Value;

use super::reader;
use super::storage::Conditional;
use super::{pretty, read_doc, Purpose, Storage, StoreError, BACKUPS, PENDING};

/// Finish what a killed writer left, as its pending marker describes: put the separate metadata
/// back as `.zmetadata` has it, delete the metadata of arrays it created, the chunks it added
/// past the committed rows, and its candid run and rejects log. After a first build that was
/// killed, what is left is no store at all.
///
/// A killed `label` or `split` rewrote committed chunks in place, which cannot be undone: only
/// the same command may then run, to finish it.
pub(super) fn recover(storage: &dyn Storage, purpose: Purpose) -> Result<(), StoreError> {
    let Some(pending) = read_doc(storage, PENDING)? else { return Ok(()) };
    let finished = finish(storage, purpose, &pending)?;
    // Said once, where the user who interrupted a build looks next: what was found, what is kept.
    crate::errln!("note: {finished}");
    Ok(())
}

/// Fence off the writer whose work is about to be removed. It may be alive (paused past its
/// lease, its lock taken over) and about to commit: its commit writes `.zmetadata` only if it is
/// still the version it read when it began. Rewriting `.zmetadata` as it is, conditionally,
/// before anything of that writer is deleted, gives it a new version, so that commit is refused
/// instead of naming chunks deleted here. Nothing to do where the store makes no conditional
/// writes (a local store: its `flock` dies with its holder) or has no `.zmetadata` yet (a first
/// build: docs/appending.md says what that leaves).
fn fence_commit_point(storage: &dyn Storage) -> Result<(), StoreError> {
    let Some((bytes, version)) = storage.get_versioned(".zmetadata")? else { return Ok(()) };
    match storage.put_if(".zmetadata", &bytes, Some(&version))? {
        Conditional::Written(_) | Conditional::Unsupported => Ok(()),
        Conditional::Conflict => Err(StoreError::Fenced {
            store: storage.location(),
            what: "the writer whose work this one was finishing committed in that moment".into(),
            kept: "nothing was written by this one".into(),
        }),
    }
}

/// What an interrupted change left, in words (None: nothing, or no marker).
///
/// # Errors
/// The marker cannot be read.
pub fn interrupted(storage: &dyn Storage) -> Result<Option<String>, StoreError> {
    let Some(pending) = read_doc(storage, PENDING)? else { return Ok(None) };
    let command = pending["command"].as_str().unwrap_or("build");
    let started = pending["started"].as_str().unwrap_or("at an unknown time");
    let then = if command == "build" {
        "nothing of it was committed; the next build finishes tidying it, and `verify` checks the store as its last commit describes it"
    } else {
        "it rewrote committed chunks in place and cannot be undone: run it again to finish it"
    };
    Ok(Some(format!("a `{command}` started {started} did not finish (killed or stopped): {then}")))
}

/// Finish what the killed change of `pending` left; what was done, in words.
fn finish(storage: &dyn Storage, purpose: Purpose, pending: &Value) -> Result<String, StoreError> {
    let command = pending["command"].as_str().unwrap_or("build");
    if command != "build" && command != purpose.command() {
        return Err(StoreError::Interrupted {
            store: storage.location(),
            reason: format!(
                "its last `{command}` (started {}) was killed before it finished, so some of what it rewrites may be new and \
                 some old; run `ztf2zarr {command}` again to finish it first",
                pending["started"].as_str().unwrap_or("at an unknown time")
            ),
        });
    }
    fence_commit_point(storage)?;
    // Put back together, as the commit wrote them, so that a plain reader (or a writer killed
    // again while it recovers) never finds the arrays at two lengths for longer than the renames.
    restore_metadata(storage, pending["metadata"].as_array().into_iter().flatten().filter_map(Value::as_str))?;
    let committed = match storage.get(".zmetadata")? {
        Some(_) => reader::committed_documents(storage)?,
        None => serde_json::Map::new(),
    };
    if command == "build" {
        let committed_runs = committed.get(".zattrs").and_then(|a| a["ztf2zarr"]["runs"].as_array().map(Vec::len)).unwrap_or(0);
        let number = pending["number"].as_u64().map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
        if committed_runs < number {
            restore_backups(storage, pending)?;
        }
        delete_backups(storage, pending)?;
        delete_added_chunks(storage, pending, &committed)?;
    }
    let named = committed_names(&committed);
    for key in pending["objects"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        if !named.iter().any(|n| n == key) {
            storage.delete(key)?;
        }
    }
    if let Some(pid) = pending["pid"].as_u64() {
        delete_temporary_files(storage, pid)?;
    }
    if command == "build" {
        storage.delete(PENDING)?;
    }
    storage.flush()?;
    let started = pending["started"].as_str().unwrap_or("at an unknown time");
    Ok(if command != "build" {
        format!("the interrupted `{command}` (started {started}) in {} is done again, whole, by this one", storage.location())
    } else if committed.is_empty() {
        format!(
            "finished what an interrupted `{command}` (started {started}) left in {}: it had committed nothing, so the store starts anew",
            storage.location()
        )
    } else {
        format!(
            "finished what an interrupted `{command}` (started {started}) left in {}: the store is as its last commit left it",
            storage.location()
        )
    })
}

/// Delete the temporary files the killed writer `pid` left half-written (`catalog/.0.0.tmp.PID`,
/// `..zattrs.tmp.PID`: a local store writes each file beside its place, then renames it). Only
/// that writer's own names: the caller holds the store's lock, so no other writer is at work,
/// and a name of another pid is not this recovery's to judge. Object stores write whole
/// objects and list none.
fn delete_temporary_files(storage: &dyn Storage, pid: u64) -> Result<(), StoreError> {
    let suffix = format!(".tmp.{pid}");
    for key in storage.list("")? {
        let name = key.rsplit('/').next().unwrap_or(&key);
        if name.starts_with('.') && name.ends_with(&suffix) {
            storage.delete(&key)?;
        }
    }
    Ok(())
}

/// Put the metadata documents `keys` back as the committed `.zmetadata` has them (those it does
/// not name are deleted), so that the separate files agree with the commit point again.
pub(super) fn restore_metadata<'a>(storage: &dyn Storage, keys: impl Iterator<Item = &'a str>) -> Result<(), StoreError> {
    let committed = match storage.get(".zmetadata")? {
        Some(_) => reader::committed_documents(storage)?,
        None => serde_json::Map::new(),
    };
    let keys: Vec<&str> = keys.collect();
    let restored: Vec<(String, Vec<u8>)> =
        keys.iter().filter_map(|key| committed.get(*key).map(|doc| ((*key).to_string(), pretty(doc).into_bytes()))).collect();
    storage.put_all(&restored)?;
    for key in keys.iter().filter(|key| !committed.contains_key(**key)) {
        storage.delete(key)?;
    }
    Ok(())
}

/// Where the backup of chunk `key` made by change `number` lives.
pub(super) fn backup_key(number: usize, key: &str) -> String {
    format!("{BACKUPS}/{number:06}/{key}")
}

/// The chunks the marker's change backed up, with their backups' keys.
pub(super) fn backups_of(pending: &Value) -> Vec<(String, String)> {
    let number = pending["number"].as_u64().and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
    pending["backups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|key| (key.to_string(), backup_key(number, key)))
        .collect()
}

/// Put back every chunk the marker's change backed up (a backup not yet made means its chunk
/// was not yet rewritten). Only markers of earlier releases list backups: they rewrote
/// forced-photometry rows in place, which no change does now.
pub(super) fn restore_backups(storage: &dyn Storage, pending: &Value) -> Result<(), StoreError> {
    let backups = backups_of(pending);
    for (key, backup) in &backups {
        if let Some(bytes) = storage.get(backup)? {
            storage.put(key, &bytes)?;
        }
    }
    if !backups.is_empty() {
        storage.flush()?;
    }
    Ok(())
}

pub(super) fn delete_backups(storage: &dyn Storage, pending: &Value) -> Result<(), StoreError> {
    let backups = backups_of(pending);
    for (_, backup) in &backups {
        storage.delete(backup)?;
    }
    // A local disk keeps the folders the backups were in; an object store has none.
    if let Some(root) = storage.local_root().filter(|_| !backups.is_empty()) {
        let folder = root.join(BACKUPS);
        remove_empty_folders(&folder);
        let _ = std::fs::remove_dir(folder);
    }
    Ok(())
}

/// Delete the chunks a killed build wrote past the committed rows of each array.
pub(super) fn delete_added_chunks(
    storage: &dyn Storage,
    pending: &Value,
    committed: &serde_json::Map<String, Value>,
) -> Result<(), StoreError> {
    for entry in pending["chunks_from"].as_array().into_iter().flatten() {
        let (Some(name), Some(first), Some(suffix)) = (entry["array"].as_str(), entry["from"].as_u64(), entry["suffix"].as_str()) else {
            continue;
        };
        let zarray = committed.get(&format!("{name}/.zarray"));
        let rows = zarray.and_then(|z| z["shape"][0].as_u64()).unwrap_or(0);
        let chunk_rows = zarray.and_then(|z| z["chunks"][0].as_u64()).filter(|c| *c > 0).unwrap_or(1);
        let start = first.max(rows.div_ceil(chunk_rows));
        for index in start.. {
            let key = format!("{name}/{index}{suffix}");
            if storage.size(&key)?.is_none() {
                break;
            }
            storage.delete(&key)?;
        }
    }
    Ok(())
}

/// The candid runs and rejects logs the committed root attrs name.
pub(super) fn committed_names(committed: &serde_json::Map<String, Value>) -> Vec<String> {
    let attrs = committed.get(".zattrs").cloned().unwrap_or(Value::Null);
    let mut names: Vec<String> = attrs["ztf2zarr"]["candid_index"]["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["key"].as_str().map(String::from))
        .collect();
    names.extend(attrs["ztf2zarr"]["runs"].as_array().into_iter().flatten().filter_map(|r| r["rejects_log"].as_str().map(String::from)));
    names.extend(
        attrs["ztf2zarr"]["lightcurve_keys"]["blocks"].as_array().into_iter().flatten().filter_map(|b| b["key"].as_str().map(String::from)),
    );
    names
}

/// Remove the empty folders under `root` (what a deleted first build leaves in a folder the
/// user made), keeping `root` itself.
pub(super) fn remove_empty_folders(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for entry in entries.filter_map(Result::ok) {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_empty_folders(&entry.path());
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::storage::LocalStorage;

    /// A killed build's temporary files go with its recovery; another pid's names, and files
    /// that only look alike, stay.
    #[test]
    fn recovery_deletes_the_killed_writers_temporary_files_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::new(dir.path());
        let pending = serde_json::json!({"command": "build", "pid": 4242, "number": 1, "chunks_from": [], "objects": [], "metadata": []});
        storage.put(PENDING, pretty(&pending).as_bytes()).unwrap();
        let left = ["catalog/.0.tmp.4242", "..zattrs.tmp.4242", "lightcurves/epochs/jd/.3.tmp.4242"];
        let kept = ["catalog/.0.tmp.777", "catalog/0.tmp.4242", "..zattrs.tmp.42420", "catalog/0"];
        for key in left.iter().chain(&kept) {
            storage.put(key, b"x").unwrap();
        }
        recover(&storage, Purpose::Append).unwrap();
        let after = storage.list("").unwrap();
        for key in left {
            assert!(!after.iter().any(|k| k == key), "{key} deleted: {after:?}");
        }
        for key in kept {
            assert!(after.iter().any(|k| k == key), "{key} kept: {after:?}");
        }
        assert!(storage.get(PENDING).unwrap().is_none(), "the marker goes last");
    }

    /// A writer whose lock was taken over, paused with its work written, cannot commit once the
    /// next writer has begun removing that work: the recovery gives `.zmetadata` a new version
    /// before it deletes anything, so the stale writer's commit (conditional on the version it
    /// began with) is refused.
    #[test]
    fn recovery_fences_off_the_commit_of_the_writer_it_finishes() {
        let storage = crate::store::object::ObjectStorage::from_url("memory:///s.zarr").unwrap();
        let committed = br#"{"metadata": {}, "zarr_consolidated_format": 1}"#;
        storage.put(".zmetadata", committed).unwrap();
        let began_with = storage.version(".zmetadata").unwrap();
        let pending = serde_json::json!({"command": "build", "pid": 4242, "number": 2, "chunks_from": [], "objects": [], "metadata": []});
        storage.put(PENDING, pretty(&pending).as_bytes()).unwrap();
        recover(&storage, Purpose::Append).unwrap();
        assert_eq!(storage.get(".zmetadata").unwrap().as_deref(), Some(&committed[..]), "the commit point reads as it was");
        let stale = storage.put_if(".zmetadata", b"{\"stale\": true}", began_with.as_ref()).unwrap();
        assert_eq!(stale, Conditional::Conflict, "the stale writer's commit is refused");
        assert_eq!(storage.get(".zmetadata").unwrap().as_deref(), Some(&committed[..]));
    }
}
