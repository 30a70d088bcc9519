//! Checking a store end to end: metadata that agrees with itself and with `.zmetadata`, every
//! chunk up to N present and decodable, candids unique and matching the candid index row by row,
//! and a description for every column. Reports every problem found rather than stopping at the
//! first; damaged metadata is reported without reading further (its sizes cannot be trusted).

use std::collections::HashSet;
use std::path::Path;

use serde_json::Value;

use super::reader::read_json;
use super::{StoreReader, CANDIDS, CATALOG, STAMPS};
use crate::catalog::Layout;

/// The outcome of verifying a store.
#[derive(Debug, Default)]
pub struct Report {
    /// Checks that passed, one line each.
    pub passed: Vec<String>,
    /// Problems found, one line each (empty: the store is sound).
    pub problems: Vec<String>,
}

impl Report {
    fn check(&mut self, ok: bool, passed: String, problem: impl FnOnce() -> String) {
        if ok {
            self.passed.push(passed);
        } else {
            self.problems.push(problem());
        }
    }
}

/// Verify the store at `root`.
#[must_use]
pub fn verify(root: &Path) -> Report {
    let mut report = Report::default();
    let reader = match StoreReader::open_metadata(root) {
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
    check_candids(root, &reader, &mut report);
    check_attrs(root, &mut report);
    check_consolidated(root, &mut report);
    report
}

fn check_chunks(reader: &StoreReader, report: &mut Report) {
    let mut bad = Vec::new();
    for index in 0..reader.chunks() {
        if let Err(error) = reader.chunk_bytes(index) {
            bad.push(error.to_string());
        }
    }
    let count = reader.chunks();
    report.check(bad.is_empty(), format!("chunks: all {count} chunks of both arrays decode to full size"), || {
        format!("chunks: {} of {count} chunk pairs are damaged: {}", bad.len(), bad.join("; "))
    });
}

fn check_candids(root: &Path, reader: &StoreReader, report: &mut Report) {
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
    let passed = format!("candid index `{CANDIDS}` matches the catalog, row by row");
    match reader.indexed_candids() {
        Err(error) => report.problems.push(format!("candid index: {error}")),
        Ok(None) => report
            .problems
            .push(format!("candid index `{}` is missing (the next build rebuilds it from the catalog)", root.join(CANDIDS).display())),
        Ok(Some(indexed)) => match first_mismatch(&indexed, &candids) {
            None => report.passed.push(passed),
            Some(row) => report.problems.push(format!(
                "candid index `{}` disagrees with the catalog from row {row}: the index has {}, the catalog {}",
                root.join(CANDIDS).display(),
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

fn check_attrs(root: &Path, report: &mut Report) {
    let catalog_attrs = read_json(&root.join(CATALOG).join(".zattrs")).unwrap_or(Value::Null);
    let undocumented: Vec<&str> = Layout::builtin()
        .columns()
        .iter()
        .filter(|c| catalog_attrs[&c.name].as_str().is_none_or(str::is_empty))
        .map(|c| c.name.as_str())
        .collect();
    let columns = Layout::builtin().columns().len();
    report.check(undocumented.is_empty(), format!("attrs: all {columns} catalog columns described"), || {
        format!("attrs: {} columns lack a description in catalog/.zattrs: {}", undocumented.len(), undocumented.join(", "))
    });
    let root_attrs = read_json(&root.join(".zattrs")).unwrap_or(Value::Null);
    let described = [STAMPS, CATALOG].iter().all(|name| root_attrs[*name].is_string());
    report.check(described, "attrs: root describes stamps and catalog".into(), || {
        "attrs: root .zattrs does not describe both stamps and catalog".into()
    });
}

fn check_consolidated(root: &Path, report: &mut Report) {
    let consolidated = match read_json(&root.join(".zmetadata")) {
        Ok(value) => value,
        Err(error) => {
            report.problems.push(format!("consolidated: {error}"));
            return;
        }
    };
    let Some(entries) = consolidated["metadata"].as_object() else {
        report.problems.push("consolidated: .zmetadata has no `metadata` object".into());
        return;
    };
    let keys = [".zgroup", ".zattrs", "stamps/.zarray", "stamps/.zattrs", "catalog/.zarray", "catalog/.zattrs"];
    let differing: Vec<&str> = keys.iter().filter(|key| read_json(&root.join(key)).ok().as_ref() != entries.get(**key)).copied().collect();
    report.check(differing.is_empty(), "consolidated: .zmetadata matches every metadata file".into(), || {
        format!("consolidated: .zmetadata disagrees with {}", differing.join(", "))
    });
}
