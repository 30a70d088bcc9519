//! `ztf2zarr label`: give every alert of a store the label of its object from a classifier CSV,
//! rewriting the catalog chunks (stamps untouched) in one atomic commit.

use std::collections::HashSet;

use anyhow::{bail, Context};
use rayon::prelude::*;
use serde_json::json;

use super::ExitStatus;
use crate::catalog::Layout;
use crate::cli::{LabelArgs, LabelSource};
use crate::labels::{LabelOptions, Labels};
use crate::store::{run_record, utc_now, Commit, Purpose, Requested, StoreError, Transaction, Wait};

/// Read the labels the options name, if any.
///
/// # Errors
/// A CSV that cannot be read or mapped.
pub fn load(source: &LabelSource) -> anyhow::Result<Option<Labels>> {
    let Some(csv) = &source.labels else { return Ok(None) };
    if source.classes.as_ref().is_some_and(|c| c.iter().any(String::is_empty)) {
        bail!("--classes has an empty class name");
    }
    let options = LabelOptions {
        csv: csv.clone(),
        id_column: source.id_column.clone(),
        class_column: source.class_column.clone(),
        classes: source.classes.clone(),
        other: source.other.clone(),
    };
    Ok(Some(Labels::load(&options)?))
}

/// Run `label`.
///
/// # Errors
/// No `--labels`, an unreadable CSV, or a store that cannot be read or written.
pub fn run(args: &LabelArgs) -> anyhow::Result<ExitStatus> {
    let Some(labels) = load(&args.source)? else { bail!("--labels FILE.csv is required") };
    let started = utc_now();
    let transaction = Transaction::begin(
        &args.store,
        Requested { wait: Wait::from_option(args.wait.wait), ..Requested::default() },
        Purpose::RewriteCatalog,
    )?;
    match relabel(&transaction, &labels) {
        Ok(counts) => {
            let rows = transaction.committed().map_or(0, |c| c.rows);
            let run = run_record(&started, rows, rows, json!({"relabel": labels.provenance["csv"], "labeled": counts.labeled}));
            let commit = Commit { labels: Some(labels.provenance.clone()), ..Commit::same_rows(rows, run) };
            transaction.commit(commit).with_context(|| format!("cannot commit the new labels to `{}`", args.store.display()))?;
            println!(
                "ztf2zarr label → {}\n  labeled     {} of {rows} alerts ({} of {} objects found in {})\n  classes     {}",
                args.store.display(),
                counts.labeled,
                counts.objects_found,
                counts.objects,
                labels.provenance["csv"].as_str().unwrap_or_default(),
                labels.names().iter().enumerate().map(|(i, n)| format!("{i}={n}")).collect::<Vec<_>>().join(", ")
            );
            Ok(ExitStatus::Success)
        }
        Err(error) => {
            transaction.abandon();
            Err(error.into())
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    labeled: usize,
    objects: usize,
    objects_found: usize,
}

/// Rewrite every catalog chunk with new labels, in parallel (each chunk by one thread).
fn relabel(transaction: &Transaction, labels: &Labels) -> Result<Counts, StoreError> {
    let reader = transaction.reader().ok_or_else(|| StoreError::NotAStore(std::path::PathBuf::new()))?;
    let layout = Layout::builtin();
    let itemsize = layout.itemsize();
    let chunk_rows = reader.settings().chunk_rows;
    let per_chunk: Vec<(usize, HashSet<String>, HashSet<String>)> = (0..reader.chunks())
        .into_par_iter()
        .map(|index| {
            let (mut catalog, _) = reader.chunk_bytes(index)?;
            let rows = chunk_rows.min(reader.rows() - index * chunk_rows);
            let (mut labeled, mut objects, mut found) = (0, HashSet::new(), HashSet::new());
            let object_column = layout.index_of("objectId").unwrap_or(0);
            for row in catalog.chunks_exact_mut(itemsize).take(rows) {
                let object = layout.read_str(row, object_column).unwrap_or_default();
                if labels.apply(layout, row) {
                    labeled += 1;
                    found.insert(object.clone());
                }
                objects.insert(object);
            }
            transaction.write_catalog_chunk(index, &catalog)?;
            Ok((labeled, objects, found))
        })
        .collect::<Result<_, StoreError>>()?;
    let mut counts = Counts::default();
    let (mut objects, mut found) = (HashSet::new(), HashSet::new());
    for (labeled, chunk_objects, chunk_found) in per_chunk {
        counts.labeled += labeled;
        objects.extend(chunk_objects);
        found.extend(chunk_found);
    }
    counts.objects = objects.len();
    counts.objects_found = found.len();
    Ok(counts)
}
