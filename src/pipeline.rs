//! The build pipeline: read inputs in order (source), decode them in parallel (decode), drop
//! candids already stored or already seen, gather rows into whole chunks, and hand each chunk
//! to exactly one writer (store). Rows keep input order whatever the thread count, so the
//! store's bytes do too. An existing store is appended to: its last, incomplete chunk is
//! continued and rewritten whole, and nothing is visible until the store commits.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde_json::json;
use thiserror::Error;

use crate::catalog::Layout;
use crate::decode::cutout::{FLAG_EDGE_GUESSED, FLAG_EDGE_PLACED, FLAG_HAD_NAN};
use crate::decode::{Alert, AlertSchema, Decoder, Reject, StampSpec};
use crate::labels::Labels;
use crate::report::Progress;
use crate::source::{self, Item, Plan};
use crate::store::{utc_now, Commit, PartialChunk, Purpose, Requested, StoreError, Transaction};

/// Items decoded together; large enough to keep every core busy, small enough to bound memory.
const BATCH: usize = 256;

/// A validated build: everything `build` needs, checked before any input is read.
#[derive(Debug, Clone)]
pub struct BuildConfig {
    /// The paths the user gave, in order (for provenance).
    pub given: Vec<PathBuf>,
    /// Inputs found from them, in reading order.
    pub plan: Arc<Plan>,
    /// The store to create or append to.
    pub output: PathBuf,
    /// Layout options as requested.
    pub requested: Requested,
    /// Stop at the first reject, leaving the store as it was.
    pub strict: bool,
    /// Labels to give the new rows.
    pub labels: Option<Arc<Labels>>,
}

/// One input alert (or file) that was not stored, and why.
#[derive(Debug, Clone)]
pub struct RejectRecord {
    /// The input's name (`path` or `archive:member`).
    pub source: String,
    /// Short class of the reason.
    pub kind: &'static str,
    /// The reason.
    pub reason: String,
}

/// An alert skipped because its candid was already stored or already seen in this build.
#[derive(Debug, Clone)]
pub struct Duplicate {
    /// The input's name.
    pub source: String,
    /// The repeated candid.
    pub candid: i64,
}

/// Counts for one path the user gave.
#[derive(Debug, Clone, Default)]
pub struct InputCounts {
    /// Files and archive members read.
    pub items: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Rows written.
    pub written: usize,
    /// Alerts skipped as duplicates.
    pub duplicates: usize,
    /// Inputs or records rejected.
    pub rejected: usize,
}

/// What a build did, for the summary.
#[derive(Debug, Default)]
pub struct Stats {
    /// Files and archive members read.
    pub items: usize,
    /// Bytes of those items.
    pub bytes: u64,
    /// Rows in the store before this build.
    pub rows_before: usize,
    /// Rows written.
    pub written: usize,
    /// Alerts skipped as repeats.
    pub duplicates: Vec<Duplicate>,
    /// Inputs not stored, with reasons.
    pub rejects: Vec<RejectRecord>,
    /// Per path given, in order.
    pub per_input: Vec<InputCounts>,
    /// Rows with each stamp flag: edge placed, had NaN, edge guessed.
    pub flagged: [usize; 3],
    /// Rows whose string values were cut to the column width: (source, columns).
    pub truncated: Vec<(String, Vec<String>)>,
    /// Schema versions seen, with the number of alerts written with each.
    pub schema_versions: Vec<(String, usize)>,
    /// Candidate fields of some writer schema that the catalog has no column for.
    pub unmapped_fields: Vec<String>,
    /// The store is labeled but this build gave no labels: its new rows are unlabeled.
    pub unlabeled_append: bool,
    /// False when nothing new was found and the store was left untouched.
    pub committed: bool,
    /// Wall time.
    pub elapsed: Duration,
}

/// Why a build stopped.
#[derive(Debug, Error)]
pub enum BuildError {
    /// Reading or writing the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The labels do not fit the store's.
    #[error("`{store}`: {reason}")]
    Labels { store: PathBuf, reason: String },
    /// `--strict` and an input was rejected.
    #[error("--strict: `{input}` rejected: {reason} (the store was not changed)")]
    Strict { input: String, reason: String },
}

/// Rows waiting to fill one chunk.
struct ChunkBuffer {
    index: usize,
    rows: usize,
    capacity: usize,
    catalog: Vec<u8>,
    stamps: Vec<u8>,
}

impl ChunkBuffer {
    fn new(index: usize, capacity: usize) -> Self {
        ChunkBuffer { index, rows: 0, capacity, catalog: Vec::new(), stamps: Vec::new() }
    }

    /// Continue the store's incomplete last chunk.
    fn resume(partial: PartialChunk, capacity: usize) -> Self {
        ChunkBuffer { index: partial.index, rows: partial.rows, capacity, catalog: partial.catalog, stamps: partial.stamps }
    }

    fn push(&mut self, alert: &Alert) {
        self.catalog.extend_from_slice(&alert.row);
        self.stamps.extend(alert.stamps.iter().flat_map(|p| p.to_le_bytes()));
        self.rows += 1;
    }

    fn is_full(&self) -> bool {
        self.rows == self.capacity
    }

    /// Pad to whole-chunk length: Zarr v2 chunks are always full size.
    fn padded(mut self, itemsize: usize, stamp_row_bytes: usize) -> Self {
        self.catalog.resize(self.capacity * itemsize, 0);
        self.stamps.resize(self.capacity * stamp_row_bytes, 0);
        self
    }
}

/// Column docs gathered from writer schemas: the first schema (in row order) that documents a column wins.
struct ColumnDocs {
    docs: Vec<Option<String>>,
    seen: HashSet<*const AlertSchema>,
}

impl ColumnDocs {
    fn merge(&mut self, schema: &Arc<AlertSchema>, stats: &mut Stats) {
        if !self.seen.insert(Arc::as_ptr(schema)) {
            return;
        }
        for (column, doc) in &schema.docs {
            self.docs[*column].get_or_insert_with(|| doc.clone());
        }
        for field in &schema.unmapped {
            if !stats.unmapped_fields.contains(field) {
                stats.unmapped_fields.push(field.clone());
            }
        }
    }

    fn finish(self, layout: &Layout) -> Vec<String> {
        self.docs.into_iter().zip(layout.columns()).map(|(doc, column)| doc.unwrap_or_else(|| column.description.clone())).collect()
    }
}

/// Build or append to the store in `config`, on `pool`'s threads.
///
/// # Errors
/// The store cannot be read or written, or `--strict` met a reject; the committed store is then
/// exactly as it was.
pub fn build(config: &BuildConfig, pool: &rayon::ThreadPool, progress: &Progress) -> Result<Stats, BuildError> {
    let mut transaction = Transaction::begin(&config.output, config.requested, Purpose::Append)?;
    check_labels(config, &transaction)?;
    match run(config, pool, progress, &mut transaction) {
        Ok((stats, commit)) => {
            match commit {
                Some(commit) => transaction.commit(commit)?,
                None => transaction.abandon(),
            }
            Ok(stats)
        }
        Err(error) => {
            transaction.abandon();
            Err(error)
        }
    }
}

fn run(
    config: &BuildConfig,
    pool: &rayon::ThreadPool,
    progress: &Progress,
    transaction: &mut Transaction,
) -> Result<(Stats, Option<Commit>), BuildError> {
    let started = Instant::now();
    let started_at = utc_now();
    let layout = Layout::builtin();
    let settings = transaction.settings();
    let spec = StampSpec { size: settings.stamp_size, keep_nan: settings.keep_nan };
    let stamp_row_bytes = 3 * spec.pixels() * 4;
    let decoder = Decoder::new(spec);
    let mut stats = Stats { per_input: vec![InputCounts::default(); config.given.len()], ..Stats::default() };
    let mut seen: HashSet<i64> = HashSet::new();
    if let Some(committed) = transaction.committed() {
        stats.rows_before = committed.rows;
        seen.extend(&committed.candids);
    }
    let mut chunk = match transaction.take_partial() {
        Some(partial) => ChunkBuffer::resume(partial, settings.chunk_rows),
        None => ChunkBuffer::new(stats.rows_before / settings.chunk_rows, settings.chunk_rows),
    };
    let (items, reader) = source::stream(config.plan.inputs.clone(), 2 * BATCH);
    let mut docs = ColumnDocs { docs: vec![None; layout.columns().len()], seen: HashSet::new() };
    let mut versions: HashMap<String, usize> = HashMap::new();
    let mut new_candids = Vec::new();
    let mut full = Vec::new();
    loop {
        let batch: Vec<Item> = items.iter().take(BATCH).collect();
        if batch.is_empty() {
            break;
        }
        let decoded: Vec<Vec<Result<Alert, Reject>>> = pool.install(|| batch.par_iter().map(|item| decode_item(&decoder, item)).collect());
        for (item, results) in batch.iter().zip(decoded) {
            let counts = &mut stats.per_input[config.plan.origins[item.input]];
            let size = item.bytes.as_ref().map_or(0, |b| b.len() as u64);
            counts.items += 1;
            counts.bytes += size;
            stats.items += 1;
            stats.bytes += size;
            for result in results {
                let alert = match result {
                    Ok(alert) => alert,
                    Err(reject) => {
                        if config.strict {
                            return Err(BuildError::Strict { input: item.name.clone(), reason: reject.reason });
                        }
                        stats.per_input[config.plan.origins[item.input]].rejected += 1;
                        stats.rejects.push(RejectRecord { source: item.name.clone(), kind: reject.kind, reason: reject.reason });
                        continue;
                    }
                };
                if !seen.insert(alert.candid) {
                    stats.per_input[config.plan.origins[item.input]].duplicates += 1;
                    stats.duplicates.push(Duplicate { source: item.name.clone(), candid: alert.candid });
                    continue;
                }
                let mut alert = alert;
                if let Some(labels) = &config.labels {
                    labels.apply(layout, &mut alert.row);
                }
                stats.per_input[config.plan.origins[item.input]].written += 1;
                docs.merge(&alert.schema, &mut stats);
                record(&mut stats, &mut versions, &alert, &item.name, layout);
                new_candids.push(alert.candid);
                chunk.push(&alert);
                if chunk.is_full() {
                    let next = ChunkBuffer::new(chunk.index + 1, settings.chunk_rows);
                    full.push(std::mem::replace(&mut chunk, next));
                }
            }
        }
        progress.advance(batch.len() as u64, stats.written);
        write_chunks(pool, transaction, &mut full)?;
    }
    drop(items);
    let _ = reader.join();
    let mut versions: Vec<_> = versions.into_iter().collect();
    versions.sort();
    stats.schema_versions = versions;
    let is_new = transaction.committed().is_none();
    if stats.written == 0 && !is_new {
        stats.elapsed = started.elapsed();
        return Ok((stats, None)); // nothing new: leave the store exactly as it was
    }
    if chunk.rows > 0 {
        full.push(chunk.padded(layout.itemsize(), stamp_row_bytes));
        write_chunks(pool, transaction, &mut full)?;
    }
    stats.committed = true;
    stats.elapsed = started.elapsed();
    let run = run_record(config, &stats, &started_at);
    stats.unlabeled_append = config.labels.is_none() && transaction.committed().is_some_and(|c| c.labels.is_some());
    let commit = Commit {
        rows: stats.rows_before + stats.written,
        new_candids,
        column_docs: docs.finish(layout),
        new_rejects: rejects_jsonl(&stats.rejects),
        run,
        labels: config.labels.as_ref().map(|l| l.provenance.clone()),
        extra_metadata: None,
    };
    Ok((stats, Some(commit)))
}

/// Labels must describe the whole store with one code table: an append with labels must use the
/// store's table, and an unlabeled store with rows gets labels through `ztf2zarr label` first.
fn check_labels(config: &BuildConfig, transaction: &Transaction) -> Result<(), BuildError> {
    let (Some(labels), Some(committed)) = (&config.labels, transaction.committed()) else { return Ok(()) };
    let refuse = |reason: String| Err(BuildError::Labels { store: config.output.clone(), reason });
    match &committed.labels {
        None if committed.rows > 0 => refuse(format!(
            "the store's {} rows are unlabeled; label them first (ztf2zarr label {} --labels …), then append with the same --labels",
            committed.rows,
            config.output.display()
        )),
        Some(have) if have["classes"] != labels.provenance["classes"] => refuse(format!(
            "the store's label codes are {}, these labels' are {}; relabel the whole store with `ztf2zarr label` instead",
            have["classes"], labels.provenance["classes"]
        )),
        _ => Ok(()),
    }
}

fn decode_item(decoder: &Decoder, item: &Item) -> Vec<Result<Alert, Reject>> {
    match &item.bytes {
        Ok(bytes) => decoder.decode_file(&item.name, bytes),
        Err(reason) => vec![Err(Reject { kind: "unreadable", reason: reason.clone() })],
    }
}

fn record(stats: &mut Stats, versions: &mut HashMap<String, usize>, alert: &Alert, name: &str, layout: &Layout) {
    stats.written += 1;
    let flags = layout.index_of("stamp_flags").and_then(|c| layout.read_i64(&alert.row, c)).unwrap_or(0);
    for (slot, bit) in [FLAG_EDGE_PLACED, FLAG_HAD_NAN, FLAG_EDGE_GUESSED].into_iter().enumerate() {
        if flags & i64::from(bit) != 0 {
            stats.flagged[slot] += 1;
        }
    }
    if !alert.truncated.is_empty() {
        stats.truncated.push((name.to_string(), alert.truncated.clone()));
    }
    // schemavsn is what ZTF says the packet is; older packets lack it, so fall back to the writer schema's version.
    let version = layout
        .index_of("schemavsn")
        .and_then(|c| layout.read_str(&alert.row, c))
        .filter(|v| !v.is_empty())
        .or_else(|| alert.schema.version.clone())
        .unwrap_or_else(|| "unknown".into());
    *versions.entry(version).or_default() += 1;
}

fn write_chunks(pool: &rayon::ThreadPool, transaction: &Transaction, full: &mut Vec<ChunkBuffer>) -> Result<(), StoreError> {
    if full.is_empty() {
        return Ok(());
    }
    pool.install(|| full.par_iter().try_for_each(|chunk| transaction.write_chunk(chunk.index, &chunk.catalog, &chunk.stamps)))?;
    full.clear();
    Ok(())
}

fn run_record(config: &BuildConfig, stats: &Stats, started_at: &str) -> serde_json::Value {
    let inputs: Vec<serde_json::Value> = config
        .given
        .iter()
        .zip(&stats.per_input)
        .map(|(path, c)| {
            json!({
                "name": path.display().to_string(),
                "files": c.items,
                "bytes": c.bytes,
                "written": c.written,
                "duplicates": c.duplicates,
                "rejected": c.rejected,
            })
        })
        .collect();
    json!({
        "tool": format!("ztf2zarr {}", env!("CARGO_PKG_VERSION")),
        "started": started_at,
        "finished": utc_now(),
        "labels": config.labels.as_ref().map(|l| l.provenance["csv"].clone()),
        "rows_before": stats.rows_before,
        "rows_after": stats.rows_before + stats.written,
        "inputs": inputs,
    })
}

fn rejects_jsonl(rejects: &[RejectRecord]) -> String {
    rejects.iter().map(|r| serde_json::json!({"source": r.source, "kind": r.kind, "reason": r.reason}).to_string() + "\n").collect()
}
