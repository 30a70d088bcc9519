//! Checking a store end to end: metadata that agrees with itself and with `.zmetadata`, every
//! chunk of every array up to N present and decodable, candids unique and matching the candid
//! index run by run, a description for every column, and no unfinished write. Reports every
//! problem found rather than stopping at the first; damaged metadata is reported without
//! reading further (its sizes cannot be trusted).

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;

use super::candids::read_run;
use super::reader::read_doc;
use super::{Storage, StoreReader, CATALOG, LEGACY_CANDIDS, PENDING, PSF_INDEX, PSF_PIXELS, STAMPS};
use crate::table::Tables;

/// The outcome of verifying a store.
#[derive(Debug, Default)]
pub struct Report {
    /// Checks that passed, one line each.
    pub passed: Vec<String>,
    /// Problems found, one line each (empty: the store is sound).
    pub problems: Vec<String>,
}

impl Report {
    /// Record one check: `passed` when `ok`, else the problem.
    pub fn check(&mut self, ok: bool, passed: String, problem: impl FnOnce() -> String) {
        if ok {
            self.passed.push(passed);
        } else {
            self.problems.push(problem());
        }
    }
}

/// Verify the store in `storage`, a store of `tables`; `lightcurves` checks the light-curve
/// tables of a store that has them (what their rows mean is not the store layer's to know).
#[must_use]
pub fn verify(storage: &Arc<dyn Storage>, tables: &'static Tables, lightcurves: impl Fn(&StoreReader, &mut Report)) -> Report {
    let mut report = Report::default();
    let pending = check_pending(storage.as_ref(), &mut report);
    let reader = match StoreReader::open_metadata(storage, tables) {
        Ok(reader) => reader,
        Err(error) => {
            report.problems.push(format!("metadata: {error}"));
            return report;
        }
    };
    report.passed.push(format!(
        "metadata: stamps and catalog agree on {} rows in chunks of {}",
        reader.rows(),
        reader.settings().chunk_rows
    ));
    check_chunks(&reader, &mut report);
    check_candids(&reader, &mut report);
    check_attrs(&reader, &mut report);
    if reader.settings().psf {
        check_psf(&reader, &mut report);
    }
    if reader.settings().lightcurves {
        lightcurves(&reader, &mut report);
    } else if reader.has_legacy_lightcurves() {
        report.passed.push(
            "light curves: in the structured layout of an earlier release, not checked by this version (it checks the column layout it writes)".into(),
        );
    }
    check_consolidated(storage.as_ref(), &reader, pending.as_ref(), &mut report);
    report
}

/// A pending marker: a build's is harmless (the store reads as its last commit, and the next
/// writer tidies); a killed `label` or `split` rewrote committed chunks and must be run again.
fn check_pending(storage: &dyn Storage, report: &mut Report) -> Option<Value> {
    let pending = match read_doc(storage, PENDING) {
        Ok(pending) => pending?,
        Err(error) => {
            report.problems.push(format!("pending: {error}"));
            return None;
        }
    };
    let command = pending["command"].as_str().unwrap_or("build").to_string();
    let started = pending["started"].as_str().unwrap_or("at an unknown time").to_string();
    if command == "build" {
        report.passed.push(format!(
            "pending: a build started {started} did not finish (or is running); the store reads as its last commit, and the next build tidies what it left"
        ));
    } else {
        report.problems.push(format!(
            "pending: a `{command}` started {started} was killed before it finished; run `ztf2zarr {command}` again to finish it"
        ));
    }
    Some(pending)
}

fn check_chunks(reader: &StoreReader, report: &mut Report) {
    let mut bad = Vec::new();
    let arrays = reader.arrays();
    let mut count = 0;
    for spec in &arrays {
        for index in 0..spec.chunks_for(reader.array_rows(spec)) {
            count += 1;
            if let Err(error) = reader.chunk(spec, index) {
                bad.push(error.to_string());
            }
        }
    }
    report.check(bad.is_empty(), format!("chunks: all {count} chunks of the {} arrays decode to full size", arrays.len()), || {
        format!("chunks: {} damaged: {}", bad.len(), bad.join("; "))
    });
}

fn check_candids(reader: &StoreReader, report: &mut Report) {
    let candids = match reader.catalog_candids() {
        Ok(candids) => candids,
        Err(error) => {
            report.problems.push(format!("candids: cannot read the catalog: {error}"));
            return;
        }
    };
    let mut seen = HashSet::with_capacity(candids.len());
    let repeated: Vec<i64> = candids.iter().copied().filter(|c| !seen.insert(*c)).collect();
    report.check(repeated.is_empty(), format!("candids: {} unique", candids.len()), || {
        format!("candids: {} repeated, e.g. {:?}", repeated.len(), &repeated[..repeated.len().min(5)])
    });
    if let Err(error) = reader.check_candid_index() {
        report.problems.push(format!("candid index: {error}"));
        return;
    }
    match reader.candid_runs() {
        Err(error) => report.problems.push(format!("candid index: {error}")),
        Ok(Some(runs)) => check_runs(reader, &runs, &candids, report),
        Ok(None) => check_legacy_index(reader, &candids, report),
    }
}

/// Every run covers the rows after the one before, and holds exactly their candids, sorted.
fn check_runs(reader: &StoreReader, runs: &[super::candids::Run], candids: &[i64], report: &mut Report) {
    let storage = reader.storage().as_ref();
    let mut next_row = 0;
    for run in runs {
        let location = storage.object_location(&run.key);
        if run.first_row != next_row || run.first_row + run.rows > candids.len() {
            report.problems.push(format!(
                "candid index: the run `{location}` covers rows {}..{}, but the runs before end at row {next_row} and the catalog at {}",
                run.first_row,
                run.first_row + run.rows,
                candids.len()
            ));
            return;
        }
        let stored = match read_run(storage, run) {
            Ok(stored) => stored,
            Err(error) => {
                report.problems.push(format!("candid index: {error}"));
                return;
            }
        };
        let mut expected = candids[run.first_row..run.first_row + run.rows].to_vec();
        expected.sort_unstable();
        if let Some(at) = first_mismatch(&stored, &expected) {
            report.problems.push(format!(
                "candid index: the run `{location}` disagrees with the catalog's candids of rows {}..{}: the run has {} where the catalog has {}",
                run.first_row,
                run.first_row + run.rows,
                shown(stored.get(at)),
                shown(expected.get(at)),
            ));
            return;
        }
        next_row += run.rows;
    }
    report.check(next_row == candids.len(), format!("candid index: {} runs match the catalog, run by run", runs.len()), || {
        format!("candid index: the runs cover {next_row} rows of {}", candids.len())
    });
}

/// A store written before candid runs: its row-ordered index, if it has one.
fn check_legacy_index(reader: &StoreReader, candids: &[i64], report: &mut Report) {
    let location = reader.storage().object_location(LEGACY_CANDIDS);
    match reader.legacy_candids() {
        Err(error) => report.problems.push(format!("candid index: {error}")),
        Ok(None) => report.problems.push(format!("candid index `{location}` is missing (the next build rebuilds it from the catalog)")),
        Ok(Some(indexed)) => match first_mismatch(&indexed, candids) {
            None => report
                .passed
                .push(format!("candid index `{location}` matches the catalog, row by row (the next build upgrades it to runs)")),
            Some(row) => report.problems.push(format!(
                "candid index `{location}` disagrees with the catalog from row {row}: the index has {}, the catalog {}",
                shown(indexed.get(row)),
                shown(candids.get(row)),
            )),
        },
    }
}

/// The first row where two candid lists differ (also where one ends before the other).
fn first_mismatch(a: &[i64], b: &[i64]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y).or_else(|| (a.len() != b.len()).then(|| a.len().min(b.len())))
}

fn shown(candid: Option<&i64>) -> String {
    candid.map_or_else(|| "no candid".into(), i64::to_string)
}

fn check_attrs(reader: &StoreReader, report: &mut Report) {
    let docs = reader.documents();
    let catalog_attrs = docs.get(&format!("{CATALOG}/.zattrs")).cloned().unwrap_or(Value::Null);
    let undocumented: Vec<&str> = reader
        .tables()
        .catalog
        .columns()
        .iter()
        .filter(|c| catalog_attrs[&c.name].as_str().is_none_or(str::is_empty))
        .map(|c| c.name.as_str())
        .collect();
    let columns = reader.tables().catalog.columns().len();
    report.check(undocumented.is_empty(), format!("attrs: all {columns} catalog columns described"), || {
        format!("attrs: {} columns lack a description in catalog/.zattrs: {}", undocumented.len(), undocumented.join(", "))
    });
    let root_attrs = reader.root_attrs();
    let described = [STAMPS, CATALOG].iter().all(|name| root_attrs[*name].is_string());
    report.check(described, "attrs: root describes stamps and catalog".into(), || {
        "attrs: root .zattrs does not describe both stamps and catalog".into()
    });
}

/// `psf/index` against `psf/pixels`: one row per alert, and the images one after the other,
/// each inside the pixels, the last ending where the pixels do.
fn check_psf(reader: &StoreReader, report: &mut Report) {
    let arrays = reader.arrays();
    let (Some(index), Some(pixels)) = (arrays.iter().find(|a| a.name == PSF_INDEX), arrays.iter().find(|a| a.name == PSF_PIXELS)) else {
        return;
    };
    let shape = super::reader::dims(&reader.documents()[&index.zarray_key()], "shape");
    if shape != [reader.rows(), 3, 3] {
        report.problems.push(format!("psf: {PSF_INDEX} has shape {shape:?}, the store {} rows (expected [{0}, 3, 3])", reader.rows()));
        return;
    }
    let entries = match reader.table_bytes(index) {
        Ok(bytes) => bytes.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap_or_default())).collect::<Vec<_>>(),
        Err(error) => {
            report.problems.push(format!("psf: {PSF_INDEX} cannot be read: {error}"));
            return;
        }
    };
    let length = reader.array_rows(pixels);
    match psf_index_problem(&entries, length) {
        None => report.passed.push(format!(
            "psf: {PSF_INDEX} places {} PSF images of the {} alerts one after the other over all {length} values of {PSF_PIXELS}",
            entries.chunks_exact(3).filter(|e| e[0] >= 0).count(),
            reader.rows()
        )),
        Some(problem) => report.problems.push(format!("psf: {PSF_INDEX} {problem}")),
    }
}

/// What is wrong with the `psf/index` entries `[start, height, width]` (flattened) over
/// `length` pixels, if anything: an image is [-1, 0, 0] (none), or starts where the one before
/// it ended with a positive height and width; the last ends at `length`.
fn psf_index_problem(entries: &[i64], length: usize) -> Option<String> {
    let mut end = 0_i64;
    for (at, entry) in entries.chunks_exact(3).enumerate() {
        let (row, channel) = (at / 3, at % 3);
        let [start, height, width] = [entry[0], entry[1], entry[2]];
        if [start, height, width] == [-1, 0, 0] {
            continue;
        }
        let size = height.checked_mul(width).filter(|_| height > 0 && width > 0);
        let Some(next) = size.and_then(|size| start.checked_add(size)).filter(|_| start == end) else {
            return Some(format!(
                "row {row}, channel {channel}: [{start}, {height}, {width}] is not an image starting at {end}, where the one before it ends"
            ));
        };
        if usize::try_from(next).map_or(true, |next| next > length) {
            return Some(format!(
                "row {row}, channel {channel}: [{start}, {height}, {width}] ends at {next}, past the {length} PSF pixels"
            ));
        }
        end = next;
    }
    (usize::try_from(end) != Ok(length)).then(|| format!("places images over {end} pixels, but psf/pixels holds {length}"))
}

/// Every metadata file as `.zmetadata` has it. While a build's marker is pending, newer files
/// are what the killed build wrote before its commit point: the next writer puts them back.
fn check_consolidated(storage: &dyn Storage, reader: &StoreReader, pending: Option<&Value>, report: &mut Report) {
    if storage.size(".zmetadata").ok().flatten().is_none() {
        report.problems.push(format!("consolidated: `{}` is missing", storage.object_location(".zmetadata")));
        return;
    }
    let differing: Vec<&str> = reader
        .documents()
        .iter()
        .filter(|(key, doc)| read_doc(storage, key).ok().flatten().as_ref() != Some(*doc))
        .map(|(key, _)| key.as_str())
        .collect();
    let building = pending.is_some_and(|p| p["command"] == "build");
    if differing.is_empty() {
        report.passed.push("consolidated: .zmetadata matches every metadata file".into());
    } else if building {
        report.passed.push(format!(
            "consolidated: {} newer than .zmetadata, written by the unfinished build; the next build puts them back",
            differing.join(", ")
        ));
    } else {
        report.problems.push(format!("consolidated: .zmetadata disagrees with {}", differing.join(", ")));
    }
}

#[cfg(test)]
mod tests {
    use super::psf_index_problem;

    #[test]
    fn psf_index_entries_must_tile_the_pixels() {
        let good = [0, 2, 3, -1, 0, 0, 6, 1, 1, 7, 3, 3, -1, 0, 0, -1, 0, 0];
        assert_eq!(psf_index_problem(&good, 16), None);
        assert!(psf_index_problem(&good, 17).unwrap().contains("over 16 pixels, but psf/pixels holds 17"));
        let past = [0, 4, 4, -1, 0, 0, -1, 0, 0];
        assert!(psf_index_problem(&past, 10).unwrap().contains("ends at 16, past the 10"));
        let gap = [0, 1, 1, 2, 1, 1, -1, 0, 0];
        assert!(psf_index_problem(&gap, 3).unwrap().contains("row 0, channel 1: [2, 1, 1] is not an image starting at 1"));
        let empty = [0, 0, 5, -1, 0, 0, -1, 0, 0];
        assert!(psf_index_problem(&empty, 0).unwrap().contains("[0, 0, 5]"));
        let huge = [i64::MAX, 2, 2, -1, 0, 0, -1, 0, 0];
        assert!(psf_index_problem(&huge, 4).is_some());
        assert_eq!(psf_index_problem(&[], 0), None);
    }
}
