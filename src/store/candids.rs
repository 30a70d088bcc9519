//! The candid index: which candids a store holds, for finding duplicates without reading the
//! store. Each build that adds rows writes one **run**, the sorted candids of its rows, as one
//! object (`.ztf2zarr/candids/000007`: little-endian int64); the root attrs list every run with
//! its row range, count, smallest and largest candid (`ztf2zarr.candid_index`). Runs are never
//! rewritten.
//!
//! A candid is looked up only in the runs whose [min, max] range holds it, and a run is read
//! (whole, then binary-searched) only when some candid falls in its range. ZTF candids grow
//! with time, so a new night's candids fall in no earlier night's range: an append reads no run
//! at all, and its memory is the night's own candids. A re-run of a night reads that night's run
//! only. The cost of a look-up thus follows the nights whose candid ranges overlap the new one,
//! not the store's size.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::{ReadError, Storage};

/// Folder of the run objects.
pub const RUNS: &str = ".ztf2zarr/candids";

/// One run of the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Key of its object.
    pub key: String,
    /// First store row it covers.
    pub first_row: usize,
    /// Rows (and candids) it covers.
    pub rows: usize,
    /// Smallest candid.
    pub min: i64,
    /// Largest candid.
    pub max: i64,
}

impl Run {
    /// The run of `candids` (the rows from `first_row` on), stored under `key`: its object
    /// bytes and its entry.
    #[must_use]
    pub fn of(key: String, first_row: usize, candids: &[i64]) -> (Run, Vec<u8>) {
        let mut sorted = candids.to_vec();
        sorted.sort_unstable();
        let run =
            Run { key, first_row, rows: sorted.len(), min: sorted.first().copied().unwrap_or(0), max: sorted.last().copied().unwrap_or(0) };
        (run, sorted.iter().flat_map(|c| c.to_le_bytes()).collect())
    }

    fn json(&self) -> Value {
        json!({"key": self.key, "first_row": self.first_row, "rows": self.rows, "min": self.min, "max": self.max})
    }
}

/// Key of the run written by build number `number`.
#[must_use]
pub fn run_key(number: usize) -> String {
    format!("{RUNS}/{number:06}")
}

/// The runs listed in `ztf2zarr.candid_index` (None: the store predates the index).
///
/// # Errors
/// An entry that is not a run (names `.zattrs`).
pub fn parse_runs(value: &Value, location: &str) -> Result<Option<Vec<Run>>, ReadError> {
    let Some(list) = value["runs"].as_array() else { return Ok(None) };
    let invalid = |reason: String| ReadError::Invalid { path: location.into(), reason };
    let mut runs = Vec::with_capacity(list.len());
    for entry in list {
        let number = |field: &str| entry[field].as_u64().and_then(|n| usize::try_from(n).ok());
        let (Some(key), Some(first_row), Some(rows), Some(min), Some(max)) =
            (entry["key"].as_str(), number("first_row"), number("rows"), entry["min"].as_i64(), entry["max"].as_i64())
        else {
            return Err(invalid(format!("ztf2zarr.candid_index holds an entry that is not a run: {entry}")));
        };
        if !key.starts_with(RUNS) {
            return Err(invalid(format!("ztf2zarr.candid_index names `{key}`, outside {RUNS}/")));
        }
        runs.push(Run { key: key.to_string(), first_row, rows, min, max });
    }
    Ok(Some(runs))
}

/// The `ztf2zarr.candid_index` value for `runs`.
#[must_use]
pub fn runs_json(runs: &[Run]) -> Value {
    json!({"format": 1, "runs": runs.iter().map(Run::json).collect::<Vec<_>>()})
}

/// Decode a run object into its candids, checking its length against its entry.
///
/// # Errors
/// A missing object, or one of another length.
pub fn read_run(storage: &dyn Storage, run: &Run) -> Result<Vec<i64>, ReadError> {
    let location = storage.object_location(&run.key);
    let bytes = storage.get(&run.key)?.ok_or_else(|| ReadError::Invalid {
        path: location.clone().into(),
        reason: "the candid index names this run, but it is missing".into(),
    })?;
    if bytes.len() != run.rows * 8 {
        return Err(ReadError::Invalid {
            path: location.into(),
            reason: format!("the candid run holds {} bytes, expected {} ({} candids)", bytes.len(), run.rows * 8, run.rows),
        });
    }
    Ok(bytes.chunks_exact(8).map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])).collect())
}

/// Look-ups of candids in the committed runs, reading a run only when a candid falls in its range.
///
/// The runs are kept sorted by their greatest candid, so a look-up starts at the first run that
/// can hold it: a new night's candids are greater than every earlier night's, and a store of
/// years of appends is not scanned run by run for each alert.
#[derive(Debug, Default)]
pub struct CommittedCandids {
    runs: Vec<Run>,
    loaded: HashMap<usize, Vec<i64>>,
}

impl CommittedCandids {
    /// Look-ups in `runs`.
    #[must_use]
    pub fn new(mut runs: Vec<Run>) -> CommittedCandids {
        runs.sort_by_key(|run| run.max);
        CommittedCandids { runs, loaded: HashMap::new() }
    }

    /// Whether the store holds `candid`.
    ///
    /// # Errors
    /// A run that must be read and cannot be.
    pub fn contains(&mut self, storage: &dyn Storage, candid: i64) -> Result<bool, ReadError> {
        let first = self.runs.partition_point(|run| run.max < candid);
        for (index, run) in self.runs.iter().enumerate().skip(first) {
            if candid < run.min {
                continue;
            }
            let candids = match self.loaded.entry(index) {
                std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::hash_map::Entry::Vacant(entry) => entry.insert(read_run(storage, run)?),
            };
            if candids.binary_search(&candid).is_ok() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Candids read from runs so far (what the look-ups cost in memory).
    #[must_use]
    pub fn loaded(&self) -> usize {
        self.loaded.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LocalStorage;

    #[test]
    fn a_run_is_sorted_and_found_only_in_its_range() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::new(dir.path());
        let (first, bytes) = Run::of(run_key(1), 0, &[30, 10, 20]);
        storage.put(&first.key, &bytes).unwrap();
        let (second, bytes) = Run::of(run_key(2), 3, &[100, 90]);
        storage.put(&second.key, &bytes).unwrap();
        assert_eq!((first.min, first.max, second.first_row), (10, 30, 3));
        let parsed = parse_runs(&runs_json(&[first.clone(), second]), "x").unwrap().unwrap();
        let mut index = CommittedCandids::new(parsed);
        assert!(!index.contains(&storage, 50).unwrap());
        assert_eq!(index.loaded(), 0, "50 is in no run's range: nothing is read");
        assert!(index.contains(&storage, 20).unwrap());
        assert!(!index.contains(&storage, 25).unwrap());
        assert_eq!(index.loaded(), 3, "only the first run was read");
        assert_eq!(read_run(&storage, &first).unwrap(), vec![10, 20, 30]);
    }

    #[test]
    fn a_run_of_the_wrong_length_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::new(dir.path());
        let (run, _) = Run::of(run_key(1), 0, &[1, 2]);
        storage.put(&run.key, &[0; 12]).unwrap();
        let error = read_run(&storage, &run).unwrap_err().to_string();
        assert!(error.contains("000001") && error.contains("12 bytes"), "{error}");
    }
}
