//! `ztf2zarr split`: train/val/test row-index arrays in the store's `splits` group, grouped by
//! objectId and stratified by label, committed atomically like every other change to a store.

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::ExitStatus;
use crate::catalog::Layout;
use crate::cli::SplitArgs;
use crate::split::{assign, SplitOptions, Splits, SPLIT_NAMES};
use crate::store::{run_record, utc_now, Commit, Purpose, Requested, Transaction, Wait, SPLITS};

/// Rows per chunk of a split index array (8 MB of int64).
const INDEX_CHUNK: usize = 1 << 20;

/// Run `split`.
///
/// # Errors
/// Bad fractions, or a store that cannot be read or written.
pub fn run(args: &SplitArgs) -> anyhow::Result<ExitStatus> {
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
    let started = utc_now();
    let transaction = Transaction::begin(
        &args.store,
        Requested { wait: Wait::from_option(args.wait.wait), ..Requested::default() },
        Purpose::ReplaceSplits,
    )?;
    let result = compute(&transaction, &options).and_then(|splits| {
        let extra = write_arrays(&transaction, &splits, &options)?;
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
    transaction.commit(commit).with_context(|| format!("cannot commit the splits to `{}`", args.store.display()))?;
    print!("{}", summary(args, &splits));
    Ok(ExitStatus::Success)
}

fn compute(transaction: &Transaction, options: &SplitOptions) -> anyhow::Result<Splits> {
    let reader = transaction.reader().context("no committed store to split")?;
    let layout = Layout::builtin();
    let (object, label) =
        (layout.index_of("objectId").context("no objectId column")?, layout.index_of("label").context("no label column")?);
    let rows = reader.catalog_rows()?;
    let objects: Vec<String> = rows.iter().map(|r| layout.read_str(r, object).unwrap_or_default()).collect();
    let labels: Vec<String> = rows.iter().map(|r| layout.read_str(r, label).unwrap_or_default()).collect();
    Ok(assign(&objects, &labels, options)?)
}

/// Write the index arrays' chunks; returns the metadata documents of the `splits` group.
fn write_arrays(transaction: &Transaction, splits: &Splits, options: &SplitOptions) -> anyhow::Result<Vec<(String, Value)>> {
    let level = transaction.settings().zstd_level;
    let rows_at_split = transaction.committed().map_or(0, |c| c.rows);
    let counts: serde_json::Map<String, Value> = splits
        .counts
        .iter()
        .map(|(label, c)| {
            (if label.is_empty() { "(unlabeled)".into() } else { label.clone() }, json!({"train": c[0], "val": c[1], "test": c[2]}))
        })
        .collect();
    let mut files = vec![
        (format!("{SPLITS}/.zgroup"), json!({"zarr_format": 2})),
        (
            format!("{SPLITS}/.zattrs"),
            json!({
                "description": "Row indices into catalog and stamps. All alerts of an objectId are in one split; objects are assigned within each label.",
                "rows_at_split": rows_at_split,
                "seed": options.seed,
                "fractions": {"train": options.fractions[0], "val": options.fractions[1], "test": options.fractions[2]},
                "one_per_object": options.one_per_object,
                "balance": options.balance,
                "labeled_only": options.labeled_only,
                "alerts_per_label": counts,
            }),
        ),
    ];
    for (name, rows) in SPLIT_NAMES.iter().zip(&splits.rows) {
        let chunk = rows.len().clamp(1, INDEX_CHUNK);
        for (index, part) in rows.chunks(chunk).enumerate() {
            let mut raw: Vec<u8> = part.iter().flat_map(|r| r.to_le_bytes()).collect();
            raw.resize(chunk * 8, 0);
            transaction.write_extra_chunk(&format!("{SPLITS}/{name}/{index}"), &raw)?;
        }
        files.push((
            format!("{SPLITS}/{name}/.zarray"),
            json!({
                "zarr_format": 2, "shape": [rows.len()], "chunks": [chunk], "dtype": "<i8",
                "compressor": {"id": "zstd", "level": level}, "fill_value": 0, "order": "C",
                "filters": null, "dimension_separator": ".",
            }),
        ));
        files.push((format!("{SPLITS}/{name}/.zattrs"), json!({"description": format!("{name} rows, ascending")})));
    }
    Ok(files)
}

fn summary(args: &SplitArgs, splits: &Splits) -> String {
    use std::fmt::Write as _;
    let mut out = format!("ztf2zarr split → {}/{SPLITS}\n", args.store.display());
    let _ = writeln!(out, "  {:<16} {:>9} {:>9} {:>9}", "label", "train", "val", "test");
    for (label, counts) in &splits.counts {
        let name = if label.is_empty() { "(unlabeled)" } else { label };
        let _ = writeln!(out, "  {name:<16} {:>9} {:>9} {:>9}", counts[0], counts[1], counts[2]);
    }
    let _ = writeln!(out, "  {:<16} {:>9} {:>9} {:>9}", "all", splits.rows[0].len(), splits.rows[1].len(), splits.rows[2].len());
    out
}
