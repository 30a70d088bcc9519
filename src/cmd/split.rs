//! `ztf2zarr split`: train/val/test row-index arrays in the store's `splits` group, grouped by
//! objectId and stratified by label, committed atomically like every other change to a store.
//! The group records what it was made from (rows, a fingerprint of the labels), so that `info`
//! and `verify` can say when a later append or relabel has left the splits behind.

use std::collections::{HashMap, HashSet};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::{counted, ExitStatus};
use crate::cli::SplitArgs;
use crate::split::{assign, labels_fingerprint, SplitOptions, Splits, SPLIT_NAMES};
use crate::store::inspect::{require_store, write_splits};
use crate::store::{run_record, utc_now, Commit, Purpose, Requested, StoreTarget, Transaction, Wait, SPLITS};

/// The catalog columns a split reads, one entry per row.
struct RowLabels {
    objects: Vec<String>,
    labels: Vec<String>,
    codes: Vec<i64>,
}

/// Run `split`.
///
/// # Errors
/// Bad fractions, or a store that cannot be read or written.
pub fn run(args: &SplitArgs, target: &StoreTarget) -> anyhow::Result<ExitStatus> {
    if args.balance == Some(0) {
        bail!("--balance must be at least 1");
    }
    let options = SplitOptions {
        fractions: [args.train, args.val, args.test],
        seed: args.seed,
        one_per_object: args.one_per_object,
        balance: args.balance,
        labeled_only: args.labeled_only,
    };
    require_store(target)?;
    let survey = super::store_survey(target)?;
    let started = utc_now();
    let transaction = Transaction::begin(
        target,
        Requested { wait: Wait::from_option(args.wait.wait), single_writer: args.wait.single_writer, ..Requested::default() },
        Purpose::ReplaceSplits,
        survey.tables(),
    )?;
    let result = read_rows(&transaction).and_then(|rows| {
        let splits = assign(&rows.objects, &rows.labels, &options)?;
        warn_if_unlabeled(target, &rows);
        warn_of_classes_left_out(&splits, &options, &rows);
        let attrs = split_attrs(&transaction, &splits, &options, &rows);
        let extra = write_splits(&transaction, &splits.rows, attrs)?;
        Ok((splits, extra))
    });
    let (splits, extra) = match result {
        Ok(done) => done,
        Err(error) => {
            transaction.abandon();
            return Err(error);
        }
    };
    let rows = transaction.committed().map_or(0, |c| c.rows);
    let sizes: Vec<usize> = splits.rows.iter().map(Vec::len).collect();
    let run = run_record(&started, rows, rows, json!({"split": {"seed": args.seed, "train": sizes[0], "val": sizes[1], "test": sizes[2]}}));
    let commit = Commit { extra_metadata: Some(extra), ..Commit::same_rows(rows, run) };
    transaction.commit(commit).with_context(|| format!("cannot commit the splits to `{target}`"))?;
    crate::out!("{}", summary(target, &splits));
    Ok(ExitStatus::Success)
}

fn read_rows(transaction: &Transaction) -> anyhow::Result<RowLabels> {
    let reader = transaction.reader().context("no committed store to split")?;
    let layout = reader.tables().catalog;
    let column = |name: &str| layout.index_of(name).with_context(|| format!("no {name} column"));
    let (object, label, code) = (column(reader.tables().object_column)?, column("label")?, column("label_code")?);
    let rows = reader.catalog_rows()?;
    Ok(RowLabels {
        objects: rows.iter().map(|r| layout.read_id(r, object).unwrap_or_default()).collect(),
        labels: rows.iter().map(|r| layout.read_str(r, label).unwrap_or_default()).collect(),
        codes: rows.iter().map(|r| layout.read_i64(r, code).unwrap_or(-1)).collect(),
    })
}

/// Splitting an unlabeled store is allowed — grouping by object still keeps an object's alerts
/// out of two splits, which is what self-supervised or unlabeled work needs — but it cannot be
/// stratified by label, and a user who labels the store next should know to split again.
fn warn_if_unlabeled(target: &StoreTarget, rows: &RowLabels) {
    if !rows.labels.is_empty() && rows.labels.iter().all(String::is_empty) {
        crate::errln!(
            "warning: `{}` is unlabeled: the splits keep each object in one split but cannot be stratified by label; \
             after `ztf2zarr label`, run `ztf2zarr split` again (info and verify will say these splits are stale)",
            target
        );
    }
}

/// A class with no alert in a split that should have some (its fraction is not 0) cannot be
/// measured there, and a model selected on val never sees it: say so, naming the class and why
/// (objects are split whole, so a class of a few objects lands in train alone).
fn warn_of_classes_left_out(splits: &Splits, options: &SplitOptions, rows: &RowLabels) {
    let mut objects: HashMap<&str, HashSet<&str>> = HashMap::new();
    for row in splits.rows.iter().flatten() {
        let row = usize::try_from(*row).unwrap_or(usize::MAX);
        if let (Some(label), Some(object)) = (rows.labels.get(row), rows.objects.get(row)) {
            objects.entry(label.as_str()).or_default().insert(object.as_str());
        }
    }
    for (label, counts) in splits.counts.iter().filter(|(label, _)| !label.is_empty()) {
        let empty: Vec<&str> = SPLIT_NAMES
            .iter()
            .zip(counts)
            .zip(options.fractions)
            .filter(|((_, n), f)| **n == 0 && *f > 0.0)
            .map(|((name, _), _)| *name)
            .collect();
        if empty.is_empty() {
            continue;
        }
        let alerts: usize = counts.iter().sum();
        let held: Vec<(&str, usize)> = SPLIT_NAMES.iter().zip(counts).filter(|(_, n)| **n > 0).map(|(name, n)| (*name, *n)).collect();
        let place = match held.as_slice() {
            [(name, _)] => (*name).to_string(),
            _ => held.iter().map(|(name, n)| format!("{name} ({n})")).collect::<Vec<_>>().join(" and "),
        };
        crate::errln!(
            "warning: class `{label}` has no alert in {}: its {} ({}) {} in {place}, since an object's alerts stay in one split; \
             nothing there measures it; label more objects of it, or merge it into another class (label --classes, --other)",
            empty.join(" or "),
            counted(alerts, "alert", "alerts"),
            counted(objects.get(label.as_str()).map_or(0, HashSet::len), "object", "objects"),
            if alerts == 1 { "is" } else { "are" },
        );
    }
}

/// `splits/.zattrs`: how the splits were made and from what (rows, labels), so that a later
/// append or relabel is seen to have left them behind.
fn split_attrs(transaction: &Transaction, splits: &Splits, options: &SplitOptions, rows: &RowLabels) -> Value {
    let committed = transaction.committed();
    let counts: serde_json::Map<String, Value> = splits
        .counts
        .iter()
        .map(|(label, c)| {
            (if label.is_empty() { "(unlabeled)".into() } else { label.clone() }, json!({"train": c[0], "val": c[1], "test": c[2]}))
        })
        .collect();
    let labels_at_split = committed.and_then(|c| c.labels.as_ref()).map(|l| json!({"csv": l["csv"], "sha256": l["sha256"]}));
    json!({
        "description": "Row indices into catalog and stamps. All alerts of an objectId are in one split; objects are assigned within each label.",
        "rows_at_split": committed.map_or(0, |c| c.rows),
        "labels_at_split": labels_at_split,
        "labels_fingerprint": labels_fingerprint(rows.labels.iter().map(String::as_str).zip(rows.codes.iter().copied())),
        "seed": options.seed,
        "fractions": {"train": options.fractions[0], "val": options.fractions[1], "test": options.fractions[2]},
        "one_per_object": options.one_per_object,
        "balance": options.balance,
        "labeled_only": options.labeled_only,
        "alerts_per_label": counts,
    })
}

fn summary(target: &StoreTarget, splits: &Splits) -> String {
    use std::fmt::Write as _;
    let mut out = format!("ztf2zarr split → {target}/{SPLITS}\n");
    let _ = writeln!(out, "  {:<16} {:>9} {:>9} {:>9}", "label", "train", "val", "test");
    for (label, counts) in &splits.counts {
        let name = if label.is_empty() { "(unlabeled)" } else { label };
        let _ = writeln!(out, "  {name:<16} {:>9} {:>9} {:>9}", counts[0], counts[1], counts[2]);
    }
    let _ = writeln!(out, "  {:<16} {:>9} {:>9} {:>9}", "all", splits.rows[0].len(), splits.rows[1].len(), splits.rows[2].len());
    out
}
