//! Training splits without leakage: alerts are assigned to train/val/test by **object** (every
//! alert of an objectId lands in the same split) and separately within each label (stratified),
//! optionally keeping one alert per object and capping each class. Pure and deterministic for a
//! seed: the same store and options give the same index arrays.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::rng::{mix64, Rng};
use crate::table::Layout;

/// Split names, in the order of [`SplitOptions::fractions`].
pub use crate::store::inspect::SPLIT_NAMES;

/// How to split.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitOptions {
    /// Fractions of objects for train, val, test (summing to 1).
    pub fractions: [f64; 3],
    /// Shuffle seed.
    pub seed: u64,
    /// Keep only the first alert (lowest row) of each object.
    pub one_per_object: bool,
    /// At most this many alerts per label (whole objects).
    pub balance: Option<usize>,
    /// Leave out alerts with an empty label.
    pub labeled_only: bool,
}

/// Why options cannot be used.
#[derive(Debug, Error, PartialEq)]
pub enum SplitError {
    /// A negative or non-finite fraction, or fractions not summing to 1.
    #[error("--train/--val/--test must be between 0 and 1 and sum to 1 (got {0:?})")]
    Fractions([f64; 3]),
    /// `--labeled-only` where no alert has a label: the splits would be empty.
    #[error("--labeled-only: none of the {rows} alerts has a label, so every split would be empty; label the store first (ztf2zarr label STORE --labels FILE.csv)")]
    NothingLabeled { rows: usize },
}

/// The result: row indices per split (ascending), and alert counts per (label, split).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Splits {
    /// Row indices for train, val, test.
    pub rows: [Vec<i64>; 3],
    /// Alerts per label in each split.
    pub counts: BTreeMap<String, [usize; 3]>,
}

/// Assign rows to splits. `objects[i]` and `labels[i]` describe row i.
///
/// # Errors
/// Fractions out of range.
pub fn assign(objects: &[String], labels: &[String], options: &SplitOptions) -> Result<Splits, SplitError> {
    let [train, val, test] = options.fractions;
    let valid = options.fractions.iter().all(|f| f.is_finite() && (0.0..=1.0).contains(f)) && ((train + val + test) - 1.0).abs() < 1e-6;
    if !valid {
        return Err(SplitError::Fractions(options.fractions));
    }
    if options.labeled_only && labels.iter().all(String::is_empty) {
        return Err(SplitError::NothingLabeled { rows: labels.len() });
    }
    // Objects in order of first appearance, with their rows; an object's label is its first row's.
    let mut index_of: HashMap<&str, usize> = HashMap::new();
    let mut groups: Vec<(String, Vec<i64>)> = Vec::new();
    for (row, (object, label)) in objects.iter().zip(labels).enumerate() {
        if options.labeled_only && label.is_empty() {
            continue;
        }
        let slot = *index_of.entry(object.as_str()).or_insert_with(|| {
            groups.push((label.clone(), Vec::new()));
            groups.len() - 1
        });
        if !options.one_per_object || groups[slot].1.is_empty() {
            groups[slot].1.push(i64::try_from(row).unwrap_or(i64::MAX));
        }
    }
    let mut by_label: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (slot, (label, _)) in groups.iter().enumerate() {
        by_label.entry(label.clone()).or_default().push(slot);
    }
    let mut splits = Splits::default();
    for (label, mut members) in by_label {
        shuffle(&mut members, options.seed, &label);
        let members = cap(members, &groups, options.balance);
        let n = members.len() as f64;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // 0 ≤ fraction × n ≤ n
        let bounds = [(n * train).round() as usize, (n * (train + val)).round() as usize];
        let counts = splits.counts.entry(label).or_default();
        for (position, slot) in members.iter().enumerate() {
            let split = if position < bounds[0] {
                0
            } else if position < bounds[1] {
                1
            } else {
                2
            };
            splits.rows[split].extend(&groups[*slot].1);
            counts[split] += groups[*slot].1.len();
        }
    }
    for rows in &mut splits.rows {
        rows.sort_unstable();
    }
    Ok(splits)
}

/// A digest of every row's (label, label_code), in row order: recorded when the splits are made,
/// it tells later whether the labels of those rows have changed since (a relabel, or labels given
/// to a store that was split unlabeled).
#[must_use]
pub fn labels_fingerprint<'a>(labels: impl IntoIterator<Item = (&'a str, i64)>) -> String {
    let mut hasher = Sha256::new();
    for (label, code) in labels {
        hasher.update(code.to_le_bytes());
        hasher.update(label.as_bytes());
        hasher.update([0]); // ends the label, so ("ab", "c") and ("a", "bc") differ
    }
    format!("{:x}", hasher.finalize())
}

/// What a store's splits were made from, as `splits/.zattrs` records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitBasis {
    /// Rows in the store when the splits were made.
    pub rows: usize,
    /// [`labels_fingerprint`] of those rows then (None: splits written before it was recorded).
    pub labels_fingerprint: Option<String>,
    /// Whether any of those rows had a label.
    pub labeled: bool,
}

/// Why the splits no longer describe the store, one reason per line (empty: they still match).
/// `fingerprint_now` is [`labels_fingerprint`] of the store's first `basis.rows` rows today.
#[must_use]
pub fn staleness(basis: &SplitBasis, rows_now: usize, fingerprint_now: Option<&str>) -> Vec<String> {
    let mut reasons = Vec::new();
    if rows_now > basis.rows {
        let added = rows_now - basis.rows;
        let (rows, were) = if added == 1 { ("row", "is") } else { ("rows", "are") };
        reasons.push(format!("{added} {rows} added since the split {were} in no split"));
    } else if rows_now < basis.rows {
        reasons.push(format!("the splits index {} rows but the store has {rows_now}", basis.rows));
    }
    if let (Some(then), Some(now)) = (&basis.labels_fingerprint, fingerprint_now) {
        if then != now {
            reasons.push(if basis.labeled {
                "labels changed since the split".to_string()
            } else {
                "labels given since the split, which was made from an unlabeled store (not stratified by label)".to_string()
            });
        }
    }
    reasons
}

/// What is wrong with a store's split index arrays (`splits`: each split's name and its rows as
/// stored), one line per problem naming the split (empty: nothing). Each index must be a row of
/// the catalog's `rows`, ascending and unique within its split, and no row may be in two splits.
#[must_use]
pub fn index_problems(splits: &[(&str, &[i64])], rows: usize) -> Vec<String> {
    let mut problems = Vec::new();
    let mut owner: HashMap<i64, &str> = HashMap::new();
    for (name, indices) in splits {
        let outside: Vec<i64> = indices.iter().copied().filter(|r| usize::try_from(*r).map_or(true, |r| r >= rows)).collect();
        if let Some(first) = outside.first() {
            problems.push(format!(
                "splits/{name}: {} not a catalog row (the catalog has {rows} rows), the first {first}",
                counted_indices(outside.len())
            ));
        }
        if let Some(at) = indices.windows(2).position(|pair| pair[1] <= pair[0]) {
            let (a, b) = (indices[at], indices[at + 1]);
            problems.push(if a == b {
                format!("splits/{name}: row {a} is listed twice")
            } else {
                format!("splits/{name}: rows do not ascend (row {b} follows row {a})")
            });
        }
        let mut shared =
            indices.iter().filter_map(|row| owner.insert(*row, *name).filter(|other| other != name).map(|other| (*row, other)));
        if let Some((row, other)) = shared.next() {
            let more = shared.count();
            let also = if more == 0 { String::new() } else { format!(" (and {more} more)") };
            problems.push(format!("splits/{name}: row {row} is in splits/{other} too{also}"));
        }
    }
    problems
}

fn counted_indices(n: usize) -> String {
    if n == 1 {
        "1 index is".to_string()
    } else {
        format!("{n} indices are")
    }
}

/// Fisher–Yates with a stream seeded by the seed and the label, so classes shuffle independently.
fn shuffle(items: &mut [usize], seed: u64, label: &str) {
    let label_key = label.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| mix64(h ^ u64::from(b)));
    let mut rng = Rng::from_keys(&[seed, label_key]);
    for i in (1..items.len()).rev() {
        let j = usize::try_from(rng.int_in(0, i64::try_from(i).unwrap_or(i64::MAX))).unwrap_or(0);
        items.swap(i, j);
    }
}

/// Keep whole objects, in shuffled order, while the label's alert count stays within `limit`.
fn cap(members: Vec<usize>, groups: &[(String, Vec<i64>)], limit: Option<usize>) -> Vec<usize> {
    let Some(limit) = limit else { return members };
    let mut total = 0;
    members
        .into_iter()
        .filter(|slot| {
            let size = groups[*slot].1.len();
            let keep = total + size <= limit;
            if keep {
                total += size;
            }
            keep
        })
        .collect()
}

/// [`labels_fingerprint`] of the first `count` catalog rows (of `layout`).
#[must_use]
pub fn rows_fingerprint(layout: &Layout, rows: &[Vec<u8>], count: usize) -> String {
    let (label, code) = (layout.index_of("label"), layout.index_of("label_code"));
    let pairs: Vec<(String, i64)> = rows
        .iter()
        .take(count)
        .map(|row| {
            (label.and_then(|c| layout.read_str(row, c)).unwrap_or_default(), code.and_then(|c| layout.read_i64(row, c)).unwrap_or(-1))
        })
        .collect();
    labels_fingerprint(pairs.iter().map(|(l, c)| (l.as_str(), *c)))
}

/// Why splits made from `basis` no longer match the store whose catalog rows are `rows` (empty:
/// they still match), comparing the label fingerprint when the splits recorded one.
#[must_use]
pub fn stale_reasons(layout: &Layout, basis: &SplitBasis, rows: &[Vec<u8>]) -> Vec<String> {
    let fingerprint = basis.labels_fingerprint.as_ref().map(|_| rows_fingerprint(layout, rows, basis.rows));
    staleness(basis, rows.len(), fingerprint.as_deref())
}

/// What the splits were made from, from their attrs.
#[must_use]
pub fn split_basis(attrs: &Value) -> Option<SplitBasis> {
    let rows = usize::try_from(attrs["rows_at_split"].as_u64()?).ok()?;
    Some(SplitBasis {
        rows,
        labels_fingerprint: attrs["labels_fingerprint"].as_str().map(str::to_string),
        labeled: attrs["labels_at_split"].is_object(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> (Vec<String>, Vec<String>) {
        let mut objects = Vec::new();
        let mut labels = Vec::new();
        for object in 0..300 {
            let label = ["QSO", "YSO", "other"][object % 3];
            for _ in 0..=(object % 4) {
                objects.push(format!("ZTF{object:09}"));
                labels.push(label.to_string());
            }
        }
        (objects, labels)
    }

    fn options() -> SplitOptions {
        SplitOptions { fractions: [0.8, 0.1, 0.1], seed: 7, one_per_object: false, balance: None, labeled_only: false }
    }

    #[test]
    fn objects_never_straddle_splits_and_every_row_is_used_once() {
        let (objects, labels) = data();
        let splits = assign(&objects, &labels, &options()).unwrap();
        let mut owner: HashMap<&str, usize> = HashMap::new();
        let mut total = 0;
        for (split, rows) in splits.rows.iter().enumerate() {
            total += rows.len();
            for row in rows {
                let object = objects[usize::try_from(*row).unwrap()].as_str();
                assert_eq!(*owner.entry(object).or_insert(split), split, "{object} in two splits");
            }
        }
        assert_eq!(total, objects.len());
    }

    #[test]
    fn stratified_reproducible_and_seed_dependent() {
        let (objects, labels) = data();
        let a = assign(&objects, &labels, &options()).unwrap();
        assert_eq!(a, assign(&objects, &labels, &options()).unwrap());
        let b = assign(&objects, &labels, &SplitOptions { seed: 8, ..options() }).unwrap();
        assert_ne!(a.rows, b.rows);
        for (label, counts) in &a.counts {
            let total: usize = counts.iter().sum();
            let train = counts[0] as f64 / total as f64;
            assert!((train - 0.8).abs() < 0.05, "{label}: train share {train}");
        }
    }

    #[test]
    fn one_per_object_and_balance() {
        let (objects, labels) = data();
        let splits = assign(&objects, &labels, &SplitOptions { one_per_object: true, balance: Some(40), ..options() }).unwrap();
        for counts in splits.counts.values() {
            assert_eq!(counts.iter().sum::<usize>(), 40);
        }
        let rows: Vec<i64> = splits.rows.concat();
        let mut objects_seen: Vec<&String> = rows.iter().map(|r| &objects[usize::try_from(*r).unwrap()]).collect();
        objects_seen.sort();
        let before = objects_seen.len();
        objects_seen.dedup();
        assert_eq!(before, objects_seen.len(), "one alert per object");
        // the first alert of each object is the one kept
        for row in rows {
            let row = usize::try_from(row).unwrap();
            assert!(row == 0 || objects[row - 1] != objects[row]);
        }
    }

    #[test]
    fn staleness_names_rows_added_and_labels_changed() {
        let rows = [("QSO", 0), ("", -1), ("YSO", 1)];
        let then = labels_fingerprint(rows);
        let basis = SplitBasis { rows: 3, labels_fingerprint: Some(then.clone()), labeled: true };
        assert!(staleness(&basis, 3, Some(&then)).is_empty());
        let added = staleness(&basis, 5, Some(&then));
        assert!(added.len() == 1 && added[0].contains("2 rows added"), "{added:?}");
        let relabeled = labels_fingerprint([("QSO", 0), ("AGN", 2), ("YSO", 1)]);
        assert_ne!(relabeled, then);
        let changed = staleness(&basis, 4, Some(&relabeled));
        assert!(changed[0].contains("1 row added") && changed[1].contains("labels changed"), "{changed:?}");
        let old = SplitBasis { labels_fingerprint: None, ..basis };
        assert!(staleness(&old, 3, Some(&relabeled)).is_empty(), "unknown is not stale");
        assert_ne!(labels_fingerprint([("ab", 0), ("c", 0)]), labels_fingerprint([("a", 0), ("bc", 0)]));
    }

    #[test]
    fn labeled_only_without_labels_is_refused() {
        let objects = vec!["ZTF1".to_string(), "ZTF2".to_string()];
        let labels = vec![String::new(), String::new()];
        let err = assign(&objects, &labels, &SplitOptions { labeled_only: true, ..options() }).unwrap_err();
        assert_eq!(err, SplitError::NothingLabeled { rows: 2 });
        assert!(assign(&objects, &labels, &options()).is_ok());
    }

    #[test]
    fn index_problems_name_the_split() {
        let train: &[i64] = &[0, 2, 4];
        let val: &[i64] = &[1, 3];
        assert!(index_problems(&[("train", train), ("val", val)], 5).is_empty());
        let outside = index_problems(&[("train", &[0, 2, 5, 7]), ("val", &[3, -1])], 5);
        assert_eq!(
            outside,
            vec![
                "splits/train: 2 indices are not a catalog row (the catalog has 5 rows), the first 5".to_string(),
                "splits/val: 1 index is not a catalog row (the catalog has 5 rows), the first -1".to_string(),
                "splits/val: rows do not ascend (row -1 follows row 3)".to_string(),
            ]
        );
        let twice = index_problems(&[("train", &[0, 2, 2, 4])], 5);
        assert_eq!(twice, vec!["splits/train: row 2 is listed twice".to_string()]);
        let shared = index_problems(&[("train", train), ("test", &[3, 4])], 5);
        assert_eq!(shared, vec!["splits/test: row 4 is in splits/train too".to_string()]);
    }

    #[test]
    fn bad_fractions_are_refused() {
        let (objects, labels) = data();
        assert!(assign(&objects, &labels, &SplitOptions { fractions: [0.8, 0.3, 0.1], ..options() }).is_err());
        assert!(assign(&objects, &labels, &SplitOptions { fractions: [1.1, -0.1, 0.0], ..options() }).is_err());
    }
}
