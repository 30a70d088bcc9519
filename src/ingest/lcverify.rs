//! `verify`'s checks of the light curves: no version of an epoch (its key and values) repeats in its table, the object index
//! covers every row once with ranges of its own object, each alert's history entries are rows of
//! its own object and follow one another alert by alert, the key index holds exactly the tables' keys, and the row counts
//! per kind in `lightcurves/.zattrs` are the tables'.

use std::collections::HashSet;

use serde_json::Value;

use super::lightcurves::{layout_of, EpochKeys, ObjectCell, Table};
use crate::store::lckeys::{parse_blocks, read_block, Key, KeyKind};
use crate::store::verify::Report;
use crate::store::{StoreReader, EPOCHS, FORCED, HISTORY, HISTORY_EPOCHS, HISTORY_FORCED, LIGHTCURVES, OBJECTS};
use crate::table::TableRole;

/// The rows of both epoch tables, as keys in row order.
struct Tables {
    epochs: Vec<Key>,
    forced: Vec<Key>,
}

impl Tables {
    fn of(&self, table: Table) -> &[Key] {
        match table {
            Table::Epochs => &self.epochs,
            Table::Forced => &self.forced,
        }
    }
}

/// Run every light-curve check, reporting each.
pub fn check_lightcurves(reader: &StoreReader, report: &mut Report) {
    let read = |name: &str| -> Result<Vec<u8>, String> {
        if let Some(table) = reader.tables().lightcurve_table(name) {
            return reader.table_rows(&table).map_err(|e| e.to_string());
        }
        let spec = reader.arrays().into_iter().find(|a| a.name == name).ok_or_else(|| format!("{name} is not declared"))?;
        reader.table_bytes(&spec).map_err(|e| e.to_string())
    };
    let epoch_keys = EpochKeys::of(reader.tables());
    let keys = |name: &str, table: Table| -> Result<Vec<Key>, String> {
        Ok(read(name)?.chunks_exact(epoch_keys.layout(table).itemsize()).map(|row| epoch_keys.key(table, row)).collect())
    };
    let tables = match (keys(EPOCHS, Table::Epochs), keys(FORCED, Table::Forced)) {
        (Ok(epochs), Ok(forced)) => Tables { epochs, forced },
        (Err(error), _) | (_, Err(error)) => {
            report.problems.push(format!("light curves: cannot read the tables: {error}"));
            return;
        }
    };
    check_unique(&tables, report);
    check_counts(reader, &tables, report);
    match read(OBJECTS) {
        Ok(index) => check_index(reader, &index, &tables, report),
        Err(error) => report.problems.push(format!("light curves: cannot read {OBJECTS}: {error}")),
    }
    let carried = |name: &str| -> Result<Vec<u64>, String> {
        Ok(read(name)?.chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default())).collect())
    };
    match (read(HISTORY), reader.catalog_rows(), carried(HISTORY_EPOCHS), carried(HISTORY_FORCED)) {
        (Ok(history), Ok(catalog), Ok(epochs), Ok(forced)) => {
            check_histories(reader, &history, &catalog, [&epochs, &forced], &tables, report);
        }
        (Err(error), ..) | (_, _, Err(error), _) | (.., Err(error)) => {
            report.problems.push(format!("light curves: cannot read the alerts' histories: {error}"))
        }
        (_, Err(error), ..) => report.problems.push(format!("light curves: cannot read the catalog: {error}")),
    }
    check_key_index(reader, &tables, report);
}

/// No version twice in a table: a key (candid, or objectId+jd+fid[+pid]) with the same values
/// is one row, as the build keys them.
fn check_unique(tables: &Tables, report: &mut Report) {
    let mut seen = HashSet::new();
    let mut repeated = 0usize;
    for key in tables.epochs.iter().chain(&tables.forced) {
        repeated += usize::from(!seen.insert(*key));
    }
    let rows = tables.epochs.len() + tables.forced.len();
    report.check(repeated == 0, format!("light curves: {rows} epochs, no version repeated"), || {
        format!("light curves: {repeated} rows repeat a version (a key, candid or objectId+jd+fid[+pid], with the same values)")
    });
}

/// The row counts per kind in `lightcurves/.zattrs` are the tables'.
fn check_counts(reader: &StoreReader, tables: &Tables, report: &mut Report) {
    let attrs = reader.documents().get(&format!("{LIGHTCURVES}/.zattrs")).cloned().unwrap_or(Value::Null);
    let said = &attrs["ztf2zarr"]["rows"];
    let count = |kind: KeyKind| tables.epochs.iter().chain(&tables.forced).filter(|k| k.kind == kind).count() as u64;
    let have = [count(KeyKind::Detection), count(KeyKind::UpperLimit), count(KeyKind::Forced)];
    let stated = [said["detections"].as_u64(), said["upper_limits"].as_u64(), said["forced"].as_u64()];
    report.check(
        stated.iter().zip(&have).all(|(s, h)| *s == Some(*h)),
        format!("light curves: rows per kind {have:?} as attrs say"),
        || format!("light curves: {LIGHTCURVES}/.zattrs says rows per kind {stated:?}, the tables have {have:?}"),
    );
}

/// Every row of both tables is in exactly one range of the object index, of its own object.
fn check_index(reader: &StoreReader, index: &[u8], tables: &Tables, report: &mut Report) {
    let layout = layout_of(reader.tables(), TableRole::Objects);
    let cell = ObjectCell::of(layout, &layout.columns()[0].name);
    let mut covered = [vec![false; tables.epochs.len()], vec![false; tables.forced.len()]];
    let mut problems = Vec::new();
    for row in index.chunks_exact(layout.itemsize()) {
        let object_key = cell.bytes(row);
        let object = cell.text(&object_key);
        let name = layout.index_of("table").and_then(|c| layout.read_str(row, c)).unwrap_or_default();
        let int = |column: &str| layout.index_of(column).and_then(|c| layout.read_i64(row, c)).unwrap_or(-1);
        let (Ok(start), Ok(count)) = (usize::try_from(int("start")), usize::try_from(int("count"))) else {
            problems.push(format!("{object}: a range with a negative start or count"));
            continue;
        };
        let Some(table) = [Table::Epochs, Table::Forced].into_iter().find(|t| t.name() == name) else {
            problems.push(format!("{object}: table `{name}` is neither epochs nor forced"));
            continue;
        };
        let keys = tables.of(table);
        let Some(end) = start.checked_add(count).filter(|end| *end <= keys.len()) else {
            problems.push(format!("{object}: {name} rows {start}+{count} past the table's {} rows", keys.len()));
            continue;
        };
        for row in start..end {
            let flags = &mut covered[table as usize];
            if flags[row] {
                problems.push(format!("{name} row {row} is in two ranges"));
            }
            flags[row] = true;
            if keys[row].object != object_key {
                problems.push(format!("{name} row {row} is not of {object}"));
            }
        }
    }
    let uncovered = covered.iter().map(|flags| flags.iter().filter(|c| !**c).count()).sum::<usize>();
    if uncovered > 0 {
        problems.push(format!("{uncovered} rows in no range"));
    }
    let ranges = index.len() / layout.itemsize();
    report.check(problems.is_empty(), format!("light curves: the object index's {ranges} ranges cover every row once"), || {
        format!("light curves: object index: {}", first_few(&problems))
    });
}

/// Each alert's history entries follow the previous alert's, and are rows of its own object.
fn check_histories(reader: &StoreReader, history: &[u8], catalog: &[Vec<u8>], carried: [&[u64]; 2], tables: &Tables, report: &mut Report) {
    let layout = layout_of(reader.tables(), TableRole::Alerts);
    let catalog_cell = ObjectCell::of(reader.tables().catalog, reader.tables().object_column);
    let mut wrong = Vec::new();
    let mut next = [0u64; 2];
    for (row, (entry, alert)) in history.chunks_exact(layout.itemsize()).zip(catalog).enumerate() {
        let object_key = catalog_cell.bytes(alert);
        let object = catalog_cell.text(&object_key);
        let n = |name: &str| layout.index_of(name).and_then(|c| layout.read_i64(entry, c)).and_then(|v| u64::try_from(v).ok());
        for (side, table, start, count) in
            [(0, Table::Epochs, "history_start", "history_count"), (1, Table::Forced, "forced_start", "forced_count")]
        {
            let (Some(start), Some(count)) = (n(start), n(count)) else {
                wrong.push(format!("row {row}: a negative {start} or {count}"));
                continue;
            };
            if start != next[side] {
                wrong.push(format!("row {row}: {} entries start at {start}, expected {}", table.name(), next[side]));
            }
            next[side] = start + count;
            let rows = carried[side].get(start as usize..(start + count) as usize).unwrap_or_default();
            if rows.len() as u64 != count {
                wrong.push(format!("row {row}: {} entries {start}+{count} past the end", table.name()));
            }
            let keys = tables.of(table);
            if rows.iter().any(|r| keys.get(*r as usize).is_none_or(|key| key.object != object_key)) {
                wrong.push(format!("row {row} ({object}): a {} entry that is not a row of its object", table.name()));
            }
        }
    }
    if next != [carried[0].len() as u64, carried[1].len() as u64] {
        wrong.push(format!("the alerts' entries end at {next:?}, the arrays hold {} and {}", carried[0].len(), carried[1].len()));
    }
    report.check(wrong.is_empty(), format!("light curves: the {} alerts' histories are rows of their own objects", catalog.len()), || {
        format!("light curves: histories: {} wrong, e.g. {}", wrong.len(), first_few(&wrong))
    });
}

/// The key index holds each table row's key once, and nothing else.
fn check_key_index(reader: &StoreReader, tables: &Tables, report: &mut Report) {
    let storage = reader.storage().as_ref();
    let blocks = match parse_blocks(&reader.root_attrs()["ztf2zarr"]["lightcurve_keys"], &storage.object_location(".zattrs")) {
        Ok(blocks) => blocks,
        Err(error) => {
            report.problems.push(format!("light-curve key index: {error}"));
            return;
        }
    };
    let mut indexed = HashSet::new();
    for block in &blocks {
        match read_block(storage, block) {
            Ok(records) => indexed.extend(records.into_iter().map(|(key, row)| (key.kind == KeyKind::Forced, key, row))),
            Err(error) => {
                report.problems.push(format!("light-curve key index: {error}"));
                return;
            }
        }
    }
    let rows: HashSet<(bool, Key, u64)> = [(false, &tables.epochs), (true, &tables.forced)]
        .into_iter()
        .flat_map(|(forced, keys)| keys.iter().enumerate().map(move |(row, key)| (forced, *key, row as u64)))
        .collect();
    report.check(indexed == rows, format!("light-curve key index: {} blocks hold every table row's key", blocks.len()), || {
        let missing = rows.difference(&indexed).count();
        let extra = indexed.difference(&rows).count();
        format!("light-curve key index: {missing} table rows not indexed, {extra} indexed keys not in the tables")
    });
}

fn first_few(problems: &[String]) -> String {
    let shown: Vec<&str> = problems.iter().take(5).map(String::as_str).collect();
    shown.join("; ")
}
