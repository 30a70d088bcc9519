//! Training splits without leakage: alerts are assigned to train/val/test by **object** (every
//! alert of an objectId lands in the same split) and separately within each label (stratified),
//! optionally keeping one alert per object and capping each class. Pure and deterministic for a
//! seed: the same store and options give the same index arrays.

use std::collections::{BTreeMap, HashMap};

use thiserror::Error;

use crate::rng::{mix64, Rng};

/// Split names, in the order of [`SplitOptions::fractions`].
pub const SPLIT_NAMES: [&str; 3] = ["train", "val", "test"];

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
    fn bad_fractions_are_refused() {
        let (objects, labels) = data();
        assert!(assign(&objects, &labels, &SplitOptions { fractions: [0.8, 0.3, 0.1], ..options() }).is_err());
        assert!(assign(&objects, &labels, &SplitOptions { fractions: [1.1, -0.1, 0.0], ..options() }).is_err());
    }
}
