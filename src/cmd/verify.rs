//! `ztf2zarr verify`: check a store end to end and say plainly what is wrong; exit 1 if anything is.
//!
//! Splits that no longer match the store (rows appended or labels changed since `split`) are a
//! warning, not a problem: every file is still sound and the splits still index valid rows, but a
//! training run would leave the new rows out or keep the old stratification. Exit 1 stays for
//! damage; scripts that need fresh splits read `splits_stale` from `ztf2zarr info --json`.

use std::sync::Arc;

use super::{counted, ExitStatus};
use crate::ingest::lcverify::check_lightcurves;
use crate::split::{index_problems, split_basis, stale_reasons};
use crate::store::inspect::{require_store, split_indices, splits_attrs, NotAStore};
use crate::store::verify::{verify, Report};
use crate::store::{Storage, StoreReader, StoreTarget};
use crate::survey::ztf::Ztf;
use crate::survey::Survey;
use crate::table::Tables;

/// Run `verify`.
///
/// # Errors
/// A path that is missing or is a file; every problem of a store is reported and reflected in
/// the exit status instead.
pub fn run(target: &StoreTarget) -> anyhow::Result<ExitStatus> {
    // A folder that is a damaged store is verify's to report; a path that is no folder, or a
    // folder with nothing of a store in it, is a mistake, said as `info` says it (exit 2).
    let storage = match require_store(target) {
        Ok(storage) => storage,
        Err(NotAStore::NoGroup(path)) => {
            let storage = crate::store::open_storage(target)?;
            if !has_store_traces(storage.as_ref())? {
                return Err(NotAStore::NoGroup(path).into());
            }
            storage
        }
        Err(error) => return Err(error.into()),
    };
    // A store whose metadata names no survey this version reads is checked as ZTF's, the
    // survey of stores that name none: the first check then reports what it names.
    let tables = super::survey_of(storage.as_ref()).map_or_else(|_| Ztf.tables(), |survey| survey.tables());
    let mut report = verify(&storage, tables, check_lightcurves);
    let (fresh, warnings) = check_splits(&storage, tables, &mut report);
    for line in report.passed.iter().chain(&fresh) {
        crate::outln!("ok       {line}");
    }
    for line in &warnings {
        crate::outln!("WARNING  {line}");
    }
    for line in &report.problems {
        crate::outln!("PROBLEM  {line}");
    }
    let warned = if warnings.is_empty() { String::new() } else { format!(" ({})", counted(warnings.len(), "warning", "warnings")) };
    if report.problems.is_empty() {
        crate::outln!("{target}: sound{warned}");
        Ok(ExitStatus::Success)
    } else {
        crate::outln!("{target}: {} found{warned}", counted(report.problems.len(), "problem", "problems"));
        Ok(ExitStatus::Failure)
    }
}

/// Whether a folder without `.zgroup` holds anything a store writes at its root: then it is a
/// damaged store, not some other folder.
fn has_store_traces(storage: &dyn Storage) -> anyhow::Result<bool> {
    for key in [".zmetadata", ".zattrs"] {
        if storage.get(key)?.is_some() {
            return Ok(true);
        }
    }
    Ok(!storage.list("catalog/")?.is_empty())
}

/// Whether the split index arrays are sound (a problem each when not: an index outside the
/// catalog, out of order or repeated, or a row in two splits, which a training run would read as
/// another row or as leakage between splits), and whether the splits still match the store:
/// (passed lines, warning lines). Nothing when the store has no splits or cannot be read (the
/// store checks report that).
fn check_splits(storage: &Arc<dyn Storage>, tables: &'static Tables, report: &mut Report) -> (Vec<String>, Vec<String>) {
    let Ok(reader) = StoreReader::open(storage, tables) else { return (Vec::new(), Vec::new()) };
    let mut passed = Vec::new();
    let splits = split_indices(&reader);
    let mut read = Vec::new();
    for (name, rows) in &splits {
        match rows {
            Ok(rows) => read.push((*name, rows.as_slice())),
            Err(error) => report.problems.push(format!("splits/{name}: cannot be read: {error}")),
        }
    }
    if !read.is_empty() {
        let problems = index_problems(&read, reader.rows());
        let indices: usize = read.iter().map(|(_, rows)| rows.len()).sum();
        report.check(
            problems.is_empty(),
            format!("splits: {} ascending, unique, in one split each, and all catalog rows", counted(indices, "index", "indices")),
            || problems.join("; "),
        );
    }
    let Some(attrs) = splits_attrs(&reader) else { return (passed, Vec::new()) };
    let Ok(rows) = reader.catalog_rows() else { return (passed, Vec::new()) };
    let Some(basis) = split_basis(&attrs) else {
        return (passed, vec!["splits: splits/.zattrs does not say how many rows were split; run `ztf2zarr split` again".into()]);
    };
    let reasons = stale_reasons(tables.catalog, &basis, &rows);
    if !reasons.is_empty() {
        let line = format!("splits: stale, {}; run `ztf2zarr split` again", reasons.join("; "));
        return (passed, vec![line]);
    }
    let labels =
        if basis.labels_fingerprint.is_some() { " and their current labels" } else { " (made before labels were recorded with them)" };
    passed.push(format!("splits: made from all {}{labels}", counted(rows.len(), "row", "rows")));
    (passed, Vec::new())
}
