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
use super::{Storage, StoreReader, CATALOG, LEGACY_CANDIDS, PENDING, STAMPS};
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
