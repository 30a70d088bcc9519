//! `ztf2zarr label`: give every alert of a store the label of its object from a classifier CSV,
//! rewriting the catalog chunks (stamps untouched) in one atomic commit; and the labelling
//! summary that `label` and `build --labels` both print.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use anyhow::{bail, Context};
use rayon::prelude::*;
use serde_json::json;

use super::{class_counts, counted, ExitStatus};
use crate::cli::{LabelArgs, LabelSource};
use crate::labels::{LabelOptions, Labels, DEFAULT_OTHER, UNLABELED_CODE};
use crate::split::{split_basis, stale_reasons};
use crate::store::inspect::{open_store, require_store, splits_attrs};
use crate::store::{run_record, utc_now, Commit, Purpose, Requested, StoreError, StoreTarget, Transaction, Wait, CATALOG};
use crate::table::Tables;

/// Read the labels the options name, if any.
///
/// # Errors
/// Mapping options without `--labels`, `--other` without `--classes`, an empty or repeated class
/// name, or a CSV that cannot be read or mapped (a listed class it does not have).
pub fn load(source: &LabelSource, tables: &Tables) -> anyhow::Result<Option<Labels>> {
    let Some(csv) = &source.labels else {
        let given: Vec<&str> = [
            ("--classes", source.classes.is_some()),
            ("--other", source.other.is_some()),
            ("--class-column", source.class_column.is_some()),
            ("--id-column", source.id_column.is_some()),
        ]
        .into_iter()
        .filter_map(|(option, given)| given.then_some(option))
        .collect();
        if !given.is_empty() {
            let verb = if given.len() == 1 { "applies" } else { "apply" };
            bail!("{} only {verb} with --labels FILE.csv, which names the classifier CSV to read", given.join(", "));
        }
        return Ok(None);
    };
    let classes = source.classes.as_ref().map(|listed| class_list(listed)).transpose()?;
    let other = match (&source.other, &classes) {
        (Some(_), None) => bail!(
            "--other names the bucket for the classes not in --classes, and without --classes every class keeps its own name: give --classes A,B,… too, or leave --other out"
        ),
        (Some(name), Some(_)) if name.trim().is_empty() => bail!("--other is an empty class name"),
        (Some(name), Some(_)) => name.trim().to_string(),
        (None, _) => DEFAULT_OTHER.to_string(),
    };
    let options = LabelOptions {
        csv: csv.clone(),
        id_column: source.id_column.clone().unwrap_or_else(|| tables.labels_id_column.to_string()),
        class_column: source.class_column.clone(),
        classes,
        other,
    };
    Ok(Some(Labels::load(&options, tables.catalog, tables.object_column)?))
}

/// `--classes` as given, each name trimmed (`--classes "QSO, YSO"` means QSO and YSO), with no
/// empty or repeated name.
fn class_list(listed: &[String]) -> anyhow::Result<Vec<String>> {
    let mut names: Vec<String> = Vec::with_capacity(listed.len());
    for name in listed.iter().map(|n| n.trim()) {
        if name.is_empty() {
            bail!("--classes has an empty class name");
        }
        if names.iter().any(|n| n == name) {
            bail!("--classes lists `{name}` twice");
        }
        names.push(name.to_string());
    }
    Ok(names)
}

/// Run `label`.
///
/// # Errors
/// No `--labels`, an unreadable CSV, or a store that cannot be read or written.
pub fn run(args: &LabelArgs, target: &StoreTarget) -> anyhow::Result<ExitStatus> {
    // The parser requires --labels for `label`; `load` gives None only without it.
    // The CSV first: a missing file is named before anything of the store is read.
    if let Some(csv) = &args.source.labels {
        crate::labels::check_readable(csv)?;
    }
    require_store(target)?;
    let survey = super::store_survey(target)?;
    let tables = survey.tables();
    let Some(labels) = load(&args.source, tables)? else { bail!("--labels FILE.csv is required") };
    let started = utc_now();
    let transaction = Transaction::begin(
        target,
        Requested { wait: Wait::from_option(args.wait.wait), single_writer: args.wait.single_writer, ..Requested::default() },
        Purpose::RewriteCatalog,
        tables,
    )?;
    match relabel(&transaction, &labels) {
        Ok(counts) => {
            let rows = transaction.committed().map_or(0, |c| c.rows);
            let run = run_record(&started, rows, rows, json!({"relabel": labels.provenance["csv"], "labeled": counts.labeled}));
            let commit = Commit { labels: Some(labels.provenance.clone()), ..Commit::same_rows(rows, run) };
            transaction.commit(commit).with_context(|| format!("cannot commit the new labels to `{target}`"))?;
            crate::out!("ztf2zarr label → {target}\n{}", summary(&counts, &labels, "alerts"));
            warn_if_splits_stale(target, tables);
            Ok(ExitStatus::Success)
        }
        Err(error) => {
            transaction.abandon();
            Err(error.into())
        }
    }
}

/// What a labelling did: alerts labeled of all alerts looked at, objects found in the CSV.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    /// Alerts looked at.
    pub alerts: usize,
    /// Alerts whose object is in the CSV.
    pub labeled: usize,
    /// Distinct objects among the alerts.
    pub objects: usize,
    /// Distinct objects found in the CSV.
    pub objects_found: usize,
    /// Alerts of each label_code (the unlabeled ones are `alerts − labeled`).
    pub per_code: BTreeMap<i64, usize>,
}

/// The labelling summary `label` and `build --labels` print: how many alerts and objects got a
/// label, and the code table. `alerts` names what was labeled ("alerts", "new alerts").
#[must_use]
pub fn summary(counts: &Counts, labels: &Labels, alerts: &str) -> String {
    let mut out = String::new();
    let objects = counted(counts.objects, "object", "objects");
    let csv = labels.provenance["csv"].as_str().unwrap_or_default();
    let _ = writeln!(
        out,
        "  labeled     {} of {} {alerts} ({} of {objects} found in {csv})",
        counts.labeled, counts.alerts, counts.objects_found
    );
    let classes: Vec<String> = labels.names().iter().enumerate().map(|(i, n)| format!("{i}={n}")).collect();
    let _ = writeln!(out, "  classes     {} ({})", classes.join(", "), counted(classes.len(), "class", "classes"));
    let per_class = labels.names().iter().enumerate().map(|(code, name)| {
        let code = i64::try_from(code).unwrap_or(i64::MAX);
        (name.as_str(), counts.per_code.get(&code).copied().unwrap_or(0))
    });
    let _ = writeln!(out, "  per class   {} ({alerts})", class_counts(per_class, counts.alerts - counts.labeled));
    if counts.alerts > 0 && counts.labeled == 0 {
        let _ = writeln!(
            out,
            "  warning     none of these objects is in {csv}: check that its id column `{}` (--id-column) holds the store's object ids ({})",
            labels.provenance["id_column"].as_str().unwrap_or_default(),
            labels.object_column()
        );
    }
    out
}

/// Count labeled alerts and objects among catalog rows already labeled (a build's new rows).
#[must_use]
fn count(tables: &Tables, rows: &[Vec<u8>]) -> Counts {
    let layout = tables.catalog;
    let (Some(object), Some(code)) = (layout.index_of(tables.object_column), layout.index_of("label_code")) else {
        return Counts::default();
    };
    let (mut objects, mut found) = (HashSet::new(), HashSet::new());
    let (mut labeled, mut per_code) = (0, BTreeMap::new());
    for row in rows {
        let id = layout.read_id(row, object).unwrap_or_default();
        if let Some(c) = layout.read_i64(row, code).filter(|c| *c != i64::from(UNLABELED_CODE)) {
            labeled += 1;
            *per_code.entry(c).or_default() += 1;
            found.insert(id.clone());
        }
        objects.insert(id);
    }
    Counts { alerts: rows.len(), labeled, objects: objects.len(), objects_found: found.len(), per_code }
}

/// The labelling summary of the rows a build added from row `first` on (printed by `build
/// --labels`); `known` gives the counts instead when the build committed nothing.
///
/// # Errors
/// The store's new catalog chunks cannot be read.
pub fn summary_of_new_rows(
    store: &StoreTarget,
    tables: &'static Tables,
    first: usize,
    labels: &Labels,
    known: Option<Counts>,
) -> anyhow::Result<String> {
    let counts = match known {
        Some(counts) => counts,
        None => count(tables, &open_store(store, tables)?.catalog_rows_from(first)?),
    };
    Ok(summary(&counts, labels, "new alerts"))
}

/// A relabel keeps the splits, which were made from the old labels: say so when they differ now.
fn warn_if_splits_stale(store: &StoreTarget, tables: &'static Tables) {
    let Ok(reader) = open_store(store, tables) else { return };
    let Some(basis) = splits_attrs(&reader).as_ref().and_then(split_basis) else { return };
    let Ok(rows) = reader.catalog_rows() else { return };
    let reasons = stale_reasons(tables.catalog, &basis, &rows);
    if !reasons.is_empty() {
        crate::errln!("warning: the store's splits are stale: {}; run `ztf2zarr split` again", reasons.join("; "));
    }
}

/// What relabelling one catalog chunk found.
#[derive(Default)]
struct Chunk {
    labeled: usize,
    per_code: BTreeMap<i64, usize>,
    objects: HashSet<String>,
    found: HashSet<String>,
}

/// Rewrite every catalog chunk with new labels, in parallel (each chunk by one thread).
fn relabel(transaction: &Transaction, labels: &Labels) -> Result<Counts, StoreError> {
    let reader = transaction.reader().ok_or_else(|| StoreError::NotAStore(StoreTarget::Local(std::path::PathBuf::new())))?;
    let tables = reader.tables();
    let layout = tables.catalog;
    let itemsize = layout.itemsize();
    let chunk_rows = reader.settings().chunk_rows;
    let array = transaction.array_index(CATALOG).ok_or_else(|| StoreError::NotAStore(StoreTarget::Local(std::path::PathBuf::new())))?;
    let spec = &transaction.arrays()[array];
    let per_chunk: Vec<Chunk> = (0..reader.chunks())
        .into_par_iter()
        .map(|index| {
            let mut catalog = reader.chunk(spec, index)?;
            let rows = chunk_rows.min(reader.rows() - index * chunk_rows);
            let mut chunk = Chunk::default();
            let object_column = layout.index_of(tables.object_column).unwrap_or(0);
            let code_column = layout.index_of("label_code").unwrap_or(0);
            for row in catalog.chunks_exact_mut(itemsize).take(rows) {
                let object = layout.read_id(row, object_column).unwrap_or_default();
                if labels.apply(layout, row) {
                    chunk.labeled += 1;
                    *chunk.per_code.entry(layout.read_i64(row, code_column).unwrap_or_default()).or_default() += 1;
                    chunk.found.insert(object.clone());
                }
                chunk.objects.insert(object);
            }
            transaction.write_chunk(array, index, &catalog)?;
            Ok(chunk)
        })
        .collect::<Result<_, StoreError>>()?;
    let mut counts = Counts { alerts: reader.rows(), ..Counts::default() };
    let (mut objects, mut found) = (HashSet::new(), HashSet::new());
    for chunk in per_chunk {
        counts.labeled += chunk.labeled;
        for (code, n) in chunk.per_code {
            *counts.per_code.entry(code).or_default() += n;
        }
        objects.extend(chunk.objects);
        found.extend(chunk.found);
    }
    counts.objects = objects.len();
    counts.objects_found = found.len();
    Ok(counts)
}
