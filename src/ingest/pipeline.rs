//! The build pipeline: read inputs in order (source), decode them in parallel (decode), drop
//! candids already stored or already seen, gather rows into whole chunks, and hand each chunk
//! to exactly one writer (store). Rows keep input order whatever the thread count, so the
//! store's bytes do too. An existing store is appended to: its last, incomplete chunk is
//! continued and rewritten whole, and nothing is visible until the store commits.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use serde_json::json;
use thiserror::Error;

pub use super::stats::{Duplicate, InputCounts, RejectRecord, Stats};
use crate::fasthash::FastSet;
use crate::formats::gzip;
use crate::ingest::lightcurves::{self, Added, LightCurves};
use crate::ingest::report::Progress;
use crate::ingest::source::{self, Item, Mark, Payload, Plan};
use crate::labels::Labels;
use crate::store::candids::CommittedCandids;
use crate::store::{self, utc_now, Commit, PartialChunk, Purpose, Requested, StoreError, Transaction};
use crate::survey::{Alert, Decode, GivenSchema, StampSpec, Survey, WriterSchema};
use crate::survey::{Reject, RejectKind};
use crate::table::{Layout, TableRole, Tables};
use store::arrays::Source;

/// Items decoded together: large enough that the hand-over between stages is rare (64 measured
/// far slower than 512), small enough to bound memory (archive members wait here as bytes).
const BATCH: usize = 512;
/// Bytes of packed epochs a light-curve batch holds before its keys are looked up in the
/// committed key blocks (each look-up reads the blocks of the batch's jd range once, so larger
/// batches read the store less often, and hold more).
const LIGHTCURVE_BATCH_BYTES: usize = 32 << 20;
/// Items in the first batch; each next one is twice as large, up to [`BATCH`].
const FIRST_BATCH: usize = 32;

/// A validated build: everything `build` needs, checked before any input is read.
#[derive(Debug, Clone)]
pub struct BuildConfig {
    /// The survey whose alerts are read, and whose store is written.
    pub survey: &'static dyn Survey,
    /// The paths the user gave, in order (for provenance).
    pub given: Vec<PathBuf>,
    /// Inputs found from them, in reading order.
    pub plan: Arc<Plan>,
    /// The store to create or append to.
    pub output: store::StoreTarget,
    /// Layout options as requested.
    pub requested: Requested,
    /// Stop at the first reject, leaving the store as it was.
    pub strict: bool,
    /// Labels to give the new rows.
    pub labels: Option<Arc<Labels>>,
    /// Writer schemas given at run time (`--schema-dir`), checked by the survey.
    pub schemas: Vec<GivenSchema>,
}

/// Why a build stopped.
#[derive(Debug, Error)]
pub enum BuildError {
    /// Reading or writing the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The labels do not fit the store's.
    #[error("`{store}`: {reason}")]
    Labels { store: store::StoreTarget, reason: String },
    /// `--strict` and an input was rejected.
    #[error("--strict: `{input}` rejected: {reason} (the store was not changed)")]
    Strict { input: String, reason: String },
    /// The thread reading the inputs failed: what it would have handed over is unknown.
    #[error("reading the inputs failed: {reason} (the store was not changed)")]
    Reader { reason: String },
}

/// Rows waiting to fill one chunk of one array.
#[derive(Clone)]
struct ChunkBuffer {
    /// Position of the array in the transaction's arrays.
    array: usize,
    index: usize,
    rows: usize,
    capacity: usize,
    row_bytes: usize,
    /// Rows are length-prefixed strings (`vlen-utf8` items), not `row_bytes` each.
    utf8: bool,
    /// The store's own rows of this chunk (its incomplete last chunk, continued by an append),
    /// still as stored; `rows` counts them, `bytes` holds only the rows after them.
    committed: Option<Arc<PartialChunk>>,
    bytes: Vec<u8>,
}

impl ChunkBuffer {
    /// An empty chunk (its buffer reserved as [`ChunkBuffer::reserve`] says).
    fn new(array: usize, index: usize, spec: &store::arrays::ArraySpec) -> Self {
        let mut chunk = ChunkBuffer {
            array,
            index,
            rows: 0,
            capacity: spec.chunk_rows,
            row_bytes: spec.row_bytes,
            utf8: is_utf8(spec),
            committed: None,
            bytes: Vec::new(),
        };
        chunk.bytes.reserve(chunk.reserve());
        chunk
    }

    /// Continue the store's incomplete last chunk.
    fn resume(partial: PartialChunk, spec: &store::arrays::ArraySpec) -> Self {
        ChunkBuffer {
            array: partial.array,
            index: partial.index,
            rows: partial.rows,
            capacity: spec.chunk_rows,
            row_bytes: spec.row_bytes,
            utf8: is_utf8(spec),
            committed: Some(Arc::new(partial)),
            bytes: Vec::new(),
        }
    }

    fn is_full(&self) -> bool {
        self.rows == self.capacity
    }

    /// Bytes to reserve for a fresh buffer: a whole chunk of fixed-size rows; for strings, whose
    /// length is not known ahead, what the buffer grows to as it fills.
    fn reserve(&self) -> usize {
        if self.utf8 {
            0
        } else {
            self.capacity * self.row_bytes
        }
    }
}

fn is_utf8(spec: &store::arrays::ArraySpec) -> bool {
    matches!(spec.cell, store::arrays::Cell::Utf8 { .. })
}

/// What an alert gives each array: the bytes of its row, or for a column of a light-curve
/// table, one cell of each of the table's rows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Feed {
    Catalog,
    Stamps,
    /// Its variance planes.
    Variance,
    /// The pixels of its PSF images.
    PsfPixels,
    /// Where its PSF images are in the pixels.
    PsfIndex,
    /// The rows of epochs the alert carried.
    CarriedEpochs,
    /// The rows of forced photometry it carried.
    CarriedForced,
    /// A column of a light-curve table: bytes `offset .. offset + width` of each packed row of
    /// `row_bytes` (UTF-32 cells written as variable-length UTF-8 when the array's cells are
    /// strings).
    Column {
        table: TableRole,
        row_bytes: usize,
        offset: usize,
        width: usize,
    },
}

impl Feed {
    /// How the array declared by `spec` is fed: its declared source; None for an array a
    /// command writes whole, which a build does not feed.
    fn for_array(spec: &store::arrays::ArraySpec) -> Option<Feed> {
        Some(match spec.source {
            Source::CatalogRow => Feed::Catalog,
            Source::Stamps => Feed::Stamps,
            Source::Variance => Feed::Variance,
            Source::PsfPixels => Feed::PsfPixels,
            Source::PsfIndex => Feed::PsfIndex,
            Source::Carried(TableRole::Forced) => Feed::CarriedForced,
            Source::Carried(_) => Feed::CarriedEpochs,
            Source::Command => return None,
            Source::Column(column) => {
                Feed::Column { table: column.role, row_bytes: column.row_bytes, offset: column.offset, width: column.width }
            }
        })
    }

    /// The rows `alert` adds to the array, packed one after the other (one row for a per-alert
    /// array, any number for a table with rows of its own), given what its history added to
    /// the light curves (`alert_row`); for a column, the table's packed rows and their size.
    /// The arrays of the epochs tables take their rows a batch of alerts at a time instead
    /// ([`Feed::batch_rows`]).
    /// `no_history` is the row of `lightcurves/alerts` of an alert that carried none;
    /// `psf_index` the alert's row of `psf/index` ([`Collector::psf_index`]).
    fn rows<'a>(
        self,
        alert: &'a Alert,
        alert_row: &'a [u8],
        no_history: &'a [u8],
        psf_index: &'a [u8],
    ) -> (std::borrow::Cow<'a, [u8]>, Option<usize>) {
        match self {
            Feed::Catalog => (alert.row.as_slice().into(), None),
            Feed::Stamps => (le_bytes(&alert.stamps), None),
            Feed::Variance => (le_bytes(&alert.variance), None),
            Feed::PsfPixels => (le_bytes(&alert.psf.pixels), None),
            Feed::PsfIndex => (psf_index.into(), None),
            Feed::CarriedEpochs | Feed::CarriedForced => ([].as_slice().into(), None),
            Feed::Column { table, row_bytes, .. } => {
                let rows: &[u8] = match table {
                    TableRole::Alerts if alert_row.is_empty() => no_history,
                    TableRole::Alerts => alert_row,
                    TableRole::Epochs | TableRole::Forced | TableRole::Objects => &[],
                };
                (rows.into(), Some(row_bytes))
            }
        }
    }

    /// Whether the array takes its rows a batch of alerts at a time: [`Feed::batch_rows`] has
    /// rows for it (of an empty batch: which arrays, not what rows).
    fn takes_batches(self) -> bool {
        self.batch_rows(&Added::default()).is_some()
    }

    /// The rows a batch of alerts adds to the array, if it is one of the epochs tables' (their
    /// columns and the history arrays); as [`Feed::rows`].
    fn batch_rows(self, added: &Added) -> Option<(&[u8], Option<usize>)> {
        match self {
            Feed::CarriedEpochs => Some((&added.carried_epochs, None)),
            Feed::CarriedForced => Some((&added.carried_forced, None)),
            Feed::Column { table: TableRole::Epochs, row_bytes, .. } => Some((&added.epochs, Some(row_bytes))),
            Feed::Column { table: TableRole::Forced, row_bytes, .. } => Some((&added.forced, Some(row_bytes))),
            _ => None,
        }
    }
}

/// Pixels as the store's little-endian float32 bytes. On a little-endian machine those are the
/// bytes the pixels already lie in, so they are borrowed: a copy and an allocation per alert
/// less on the ordering thread.
fn le_bytes(pixels: &[f32]) -> std::borrow::Cow<'_, [u8]> {
    #[cfg(target_endian = "little")]
    {
        // SAFETY: the slice covers exactly the pixels' bytes, borrowed for as long as the pixels
        // are; f32 has no padding and every byte is a valid u8.
        std::borrow::Cow::Borrowed(unsafe { std::slice::from_raw_parts(pixels.as_ptr().cast::<u8>(), std::mem::size_of_val(pixels)) })
    }
    #[cfg(not(target_endian = "little"))]
    {
        pixels.iter().flat_map(|p| p.to_le_bytes()).collect::<Vec<u8>>().into()
    }
}

/// Compresses and writes chunks. While alerts are decoded it runs on the ordering thread, beside
/// the pool's workers: spawning chunk writes onto the pool measured slower (the workers then wait
/// on the decode batches they were pulled away from). The last chunks, written once decoding is
/// over, go to the pool (`write_last_chunks`).
struct ChunkWriter<'t> {
    transaction: &'t Transaction,
}

impl ChunkWriter<'_> {
    /// Compress and write, padded to whole-chunk length (Zarr v2 chunks are always full size:
    /// zeros, or empty strings). Gives back the chunk's buffer, emptied, for the next chunk of
    /// the array.
    fn write(&self, mut chunk: ChunkBuffer) -> Result<Vec<u8>, StoreError> {
        self.transaction.write_chunk_rows(chunk.committed.as_deref(), chunk.array, chunk.index, &chunk.bytes, chunk.rows)?;
        chunk.bytes.clear();
        Ok(chunk.bytes)
    }
}

/// One decoded input, without its bytes (freed as soon as it is decoded), or a mark.
struct Decoded {
    input: usize,
    name: String,
    size: u64,
    /// Input bytes this item stands for in the progress display.
    progress: u64,
    results: Vec<Result<Alert, Reject>>,
    mark: Option<Mark>,
}

type CandidSet = FastSet<i64>;

/// Everything gathered from decoded alerts in row order: the rows themselves, in chunks, and
/// what the summary and the commit need to know about them.
struct Collector<'c> {
    config: &'c BuildConfig,
    layout: &'static Layout,
    stats: Stats,
    storage: &'c dyn store::Storage,
    stored: CommittedCandids,
    seen: CandidSet,
    docs: ColumnDocs,
    versions: HashMap<String, usize>,
    new_candids: Vec<i64>,
    /// One buffer per array, each feeding from the alerts.
    chunks: Vec<(ChunkBuffer, Feed)>,
    /// Where to go back to if the archive being read fails its checksum.
    rollback: Option<Snapshot>,
    /// Per array: chunks written from this index on hold rolled-back rows; delete them before writing more.
    stale_chunks: Vec<Option<usize>>,
    /// The build's light curves (None: the store has none).
    lightcurves: Option<LightCurves>,
    /// Bytes a batch of light-curve epochs may hold before it is looked up and added.
    lightcurve_batch_bytes: usize,
    /// The alert being taken's row of `lightcurves/alerts`.
    alert_row: Vec<u8>,
    /// The row of `lightcurves/alerts` of an alert that carried no history.
    no_history: &'static [u8],
    /// What a batch adds to the light curves (its buffers reused batch after batch).
    added: Added,
    /// Per array: the buffer of a chunk already written, for the next chunk (already-touched
    /// memory instead of fresh pages for every chunk of every array).
    spare: Vec<Option<Vec<u8>>>,
}

/// The collector's state at an archive's last verified point. Rows after it are only in the
/// chunk buffer, or in chunks handed to the writer since (the buffer's part before the point
/// is then kept in `saved`).
struct Snapshot {
    origin: usize,
    counts: InputCounts,
    written: usize,
    duplicates: usize,
    new_candids: usize,
    truncated: usize,
    unmapped: usize,
    flagged: [usize; 8],
    versions: HashMap<String, usize>,
    docs: ColumnDocs,
    chunks: Vec<ChunkMark>,
    lightcurves: Option<lightcurves::Mark>,
}

/// Where one array's buffer stood at the rollback point.
struct ChunkMark {
    index: usize,
    rows: usize,
    len: usize,
    /// The store's own rows of that chunk, if it continues the store's last one.
    committed: Option<Arc<PartialChunk>>,
    /// The buffer's part before the point, kept when the buffer left for the writer since.
    saved: Option<Vec<u8>>,
}

impl ChunkMark {
    /// Where `chunk` stands now.
    fn of(chunk: &ChunkBuffer) -> Self {
        ChunkMark { index: chunk.index, rows: chunk.rows, len: chunk.bytes.len(), committed: chunk.committed.clone(), saved: None }
    }
}

impl Collector<'_> {
    /// Take one decoded input's alerts (or mark) in order; chunks that become full go to `full`.
    fn take(&mut self, decoded: Decoded, full: &mut Vec<ChunkBuffer>) -> Result<(), BuildError> {
        let origin = self.config.plan.origins[decoded.input];
        if let Some(mark) = decoded.mark {
            return self.mark(mark, origin, decoded.name, full);
        }
        self.stats.items += 1;
        self.stats.bytes += decoded.size;
        self.stats.per_input[origin].items += 1;
        self.stats.per_input[origin].bytes += decoded.size;
        for result in decoded.results {
            let mut alert = match result {
                Ok(alert) => alert,
                Err(reject) => {
                    self.reject(origin, decoded.name.clone(), reject)?;
                    continue;
                }
            };
            if self.stored.contains(self.storage, alert.id).map_err(StoreError::from)? || !self.seen.insert(alert.id) {
                self.stats.per_input[origin].duplicates += 1;
                self.stats.duplicates.push(Duplicate { source: decoded.name.clone(), candid: alert.id });
                continue;
            }
            if let Some(labels) = &self.config.labels {
                labels.apply(self.layout, &mut alert.row);
            }
            self.stats.per_input[origin].written += 1;
            self.docs.merge(&alert.writer, &mut self.stats);
            record(&mut self.stats, &mut self.versions, &alert, &decoded.name, self.config.survey.tables());
            self.new_candids.push(alert.id);
            let alert_row = self.take_history(&alert, full);
            let psf_index = self.psf_index(&alert);
            for position in 0..self.chunks.len() {
                let feed = self.chunks[position].1;
                match feed.rows(&alert, &alert_row, self.no_history, &psf_index) {
                    (rows, None) => self.push_rows(position, &rows, full),
                    (rows, Some(itemsize)) => self.push_cells(position, &rows, itemsize, full),
                }
            }
            self.alert_row = alert_row;
            if self.lightcurves.as_ref().is_some_and(|curves| curves.batch_bytes() >= self.lightcurve_batch_bytes) {
                self.add_lightcurve_batch(full)?;
            }
        }
        Ok(())
    }

    /// The alert's row of `psf/index` (empty without the `psf` group): for each cutout, the
    /// start of its PSF image in `psf/pixels`, its height and width, or [-1, 0, 0] without one.
    /// The starts continue from the pixels so far, the store's committed ones included: they are
    /// where the `psf/pixels` buffer stands (which a rollback moves back with the rows).
    fn psf_index(&self, alert: &Alert) -> Vec<u8> {
        let Some((pixels, _)) = self.chunks.iter().find(|(_, feed)| *feed == Feed::PsfPixels) else { return Vec::new() };
        let mut start = pixels.index * pixels.capacity + pixels.rows;
        let mut row = Vec::with_capacity(3 * 3 * 8);
        for shape in alert.psf.shapes {
            let entry = match shape {
                Some((height, width)) => {
                    let entry = [start, height, width].map(|n| i64::try_from(n).unwrap_or(i64::MAX));
                    start += height * width;
                    entry
                }
                None => [-1, 0, 0],
            };
            row.extend(entry.iter().flat_map(|n| n.to_le_bytes()));
        }
        row
    }

    /// Take the alert's history into the light curves (its versions added at once, or into the
    /// batch); gives its row of `lightcurves/alerts` (empty without light curves or history).
    fn take_history(&mut self, alert: &Alert, full: &mut Vec<ChunkBuffer>) -> Vec<u8> {
        let mut row = std::mem::take(&mut self.alert_row);
        row.clear();
        if let (Some(curves), Some(history)) = (self.lightcurves.as_mut(), alert.history.as_ref()) {
            let mut added = std::mem::take(&mut self.added);
            added.clear();
            row = curves.take(history, &mut added);
            self.push_batch(&added, full);
            self.added = added;
        }
        row
    }

    /// Look the light curves' batch up in the committed keys and add its rows to the arrays of
    /// the epochs tables. A rollback point inside the batch moves to the same point of the
    /// adding, so that rolling back still keeps exactly what came before it.
    fn add_lightcurve_batch(&mut self, full: &mut Vec<ChunkBuffer>) -> Result<(), BuildError> {
        let Some(mut curves) = self.lightcurves.take() else { return Ok(()) };
        let looked_up = curves.look_up(self.storage);
        if let Err(error) = looked_up {
            self.lightcurves = Some(curves);
            return Err(StoreError::from(error).into());
        }
        let mut added = std::mem::take(&mut self.added);
        if let Some(split) = self.rollback.as_ref().and_then(|snap| snap.lightcurves.as_ref()).and_then(lightcurves::Mark::pending) {
            added.clear();
            curves.add_batch(split, &mut added);
            self.push_batch(&added, full);
            self.mark_batch_added(&curves);
        }
        added.clear();
        curves.add_batch(usize::MAX, &mut added);
        self.push_batch(&added, full);
        self.added = added;
        self.lightcurves = Some(curves);
        Ok(())
    }

    /// Add a batch's rows to the arrays of the epochs tables.
    fn push_batch(&mut self, added: &Added, full: &mut Vec<ChunkBuffer>) {
        for position in 0..self.chunks.len() {
            match self.chunks[position].1.batch_rows(added) {
                Some((rows, None)) => self.push_rows(position, rows, full),
                Some((rows, Some(itemsize))) => self.push_cells(position, rows, itemsize, full),
                None => {}
            }
        }
    }

    /// The batch is added up to the rollback point: move the point's marks of the light curves
    /// and of the arrays that take batches to here.
    fn mark_batch_added(&mut self, curves: &LightCurves) {
        let Some(snap) = self.rollback.as_mut() else { return };
        if let Some(mark) = snap.lightcurves.as_mut() {
            curves.mark_added(mark);
        }
        for ((chunk, feed), mark) in self.chunks.iter().zip(&mut snap.chunks) {
            if feed.takes_batches() {
                *mark = ChunkMark::of(chunk);
            }
        }
    }

    /// Add packed rows to the buffer at `position`; each chunk that becomes full goes to `full`.
    fn push_rows(&mut self, position: usize, mut rows: &[u8], full: &mut Vec<ChunkBuffer>) {
        while !rows.is_empty() {
            let chunk = &mut self.chunks[position].0;
            let fitting = (rows.len() / chunk.row_bytes).min(chunk.capacity - chunk.rows);
            let (now, later) = rows.split_at(fitting * chunk.row_bytes);
            chunk.bytes.extend_from_slice(now);
            chunk.rows += fitting;
            rows = later;
            if chunk.is_full() {
                self.next_chunk(position, full);
            } else {
                debug_assert!(rows.is_empty(), "rows are whole: {} bytes left of {}-byte rows", rows.len(), chunk.row_bytes);
                break;
            }
        }
    }

    /// Add one cell of each of a table's packed `rows` (of `itemsize` bytes) to the column
    /// buffer at `position`; each chunk that becomes full goes to `full`.
    fn push_cells(&mut self, position: usize, rows: &[u8], itemsize: usize, full: &mut Vec<ChunkBuffer>) {
        let Feed::Column { offset, width, .. } = self.chunks[position].1 else { return };
        for row in rows.chunks_exact(itemsize) {
            let cell = &row[offset..offset + width];
            let chunk = &mut self.chunks[position].0;
            if chunk.utf8 {
                store::vlen::push_utf32_cell(cell, &mut chunk.bytes);
            } else {
                chunk.bytes.extend_from_slice(cell);
            }
            chunk.rows += 1;
            if chunk.is_full() {
                self.next_chunk(position, full);
            }
        }
    }

    /// The buffer at `position` is full: hand it to `full` and start the array's next chunk.
    fn next_chunk(&mut self, position: usize, full: &mut Vec<ChunkBuffer>) {
        self.save_for_rollback(position);
        let chunk = &self.chunks[position].0;
        let reserve = chunk.reserve();
        let bytes = self.spare[position].take().unwrap_or_else(|| Vec::with_capacity(reserve));
        let chunk = &mut self.chunks[position].0;
        let next = ChunkBuffer { index: chunk.index + 1, rows: 0, committed: None, bytes, ..*chunk };
        full.push(std::mem::replace(chunk, next));
    }

    /// Write the chunks that filled, after deleting any written chunks that hold rolled-back rows.
    fn write_full(&mut self, transaction: &Transaction, writer: &ChunkWriter<'_>, full: &mut Vec<ChunkBuffer>) -> Result<(), BuildError> {
        for (array, stale) in self.stale_chunks.iter_mut().enumerate() {
            if let Some(first) = stale.take() {
                transaction.discard_chunks_from(array, first)?;
            }
        }
        for chunk in full.drain(..) {
            let array = chunk.array;
            let bytes = writer.write(chunk)?;
            self.recycle(array, bytes);
        }
        Ok(())
    }

    /// Keep a written chunk's buffer for the array's next chunk (one spare per array is enough:
    /// chunks are written as they fill). Not for the light-curve columns: a hundred arrays of
    /// megabyte chunks would hold a spare megabyte each (18 MB more peak memory on 20,000 alerts
    /// of measured history depth), and their chunks fill too rarely for fresh pages to matter.
    fn recycle(&mut self, array: usize, bytes: Vec<u8>) {
        if matches!(self.chunks[array].1, Feed::Column { .. }) {
            return;
        }
        self.spare[array].get_or_insert(bytes);
    }

    /// Add the build's segment of the object index to its columns, once every alert is taken.
    fn index_objects(&mut self, full: &mut Vec<ChunkBuffer>) {
        let rows = self.lightcurves.as_ref().map(LightCurves::index_rows).unwrap_or_default().concat();
        for position in 0..self.chunks.len() {
            if let Feed::Column { table: TableRole::Objects, row_bytes, .. } = self.chunks[position].1 {
                self.push_cells(position, &rows, row_bytes, full);
            }
        }
    }

    fn reject(&mut self, origin: usize, source: String, reject: Reject) -> Result<(), BuildError> {
        if self.config.strict {
            return Err(BuildError::Strict { input: source, reason: reject.reason });
        }
        self.stats.per_input[origin].rejected += reject.records;
        self.stats.rejects.push(RejectRecord { source, kind: reject.kind, reason: reject.reason, records: reject.records });
        Ok(())
    }

    fn mark(&mut self, mark: Mark, origin: usize, name: String, full: &mut Vec<ChunkBuffer>) -> Result<(), BuildError> {
        match mark {
            Mark::Verified => self.rollback = Some(self.snapshot(origin)),
            Mark::Closed => self.rollback = None,
            Mark::Ignored { reason } => self.stats.ignored_members.push((name, reason)),
            Mark::Problem(reject) => self.reject(origin, name, reject)?,
            Mark::Failed { kind, reason, unsent } => {
                let lost = self.roll_back(full);
                let what = match lost {
                    0 => "no alert read from it had been kept".to_string(),
                    1 => "the 1 alert read from it since the last verified member is not stored".to_string(),
                    n => format!("the {n} alerts read from it since the last verified member are not stored"),
                };
                let cut = if unsent > 0 { "; the alert member it broke in is lost" } else { "" };
                self.reject(origin, name, Reject::new(kind, format!("{reason}; {what}{cut}")).for_records(lost + unsent))?;
            }
        }
        Ok(())
    }

    fn snapshot(&self, origin: usize) -> Snapshot {
        Snapshot {
            origin,
            counts: self.stats.per_input[origin].clone(),
            written: self.stats.written,
            duplicates: self.stats.duplicates.len(),
            new_candids: self.new_candids.len(),
            truncated: self.stats.truncated.len(),
            unmapped: self.stats.unmapped_fields.len(),
            flagged: self.stats.flagged,
            versions: self.versions.clone(),
            docs: self.docs.clone(),
            chunks: self.chunks.iter().map(|(c, _)| ChunkMark::of(c)).collect(),
            lightcurves: self.lightcurves.as_ref().map(LightCurves::mark),
        }
    }

    /// A chunk buffer is about to leave for the writer: keep its part before the rollback point.
    fn save_for_rollback(&mut self, position: usize) {
        let chunk = &self.chunks[position].0;
        let Some(snap) = self.rollback.as_mut() else { return };
        let mark = &mut snap.chunks[position];
        if mark.index == chunk.index && mark.saved.is_none() {
            mark.saved = Some(chunk.bytes[..mark.len].to_vec());
        }
    }

    /// Undo every alert taken since the rollback point; returns how many (written or duplicate).
    fn roll_back(&mut self, full: &mut Vec<ChunkBuffer>) -> usize {
        let Some(snap) = self.rollback.take() else { return 0 };
        let stats = &mut self.stats;
        let lost = (stats.written - snap.written) + (stats.duplicates.len() - snap.duplicates);
        for candid in self.new_candids.drain(snap.new_candids..) {
            self.seen.remove(&candid);
        }
        stats.written = snap.written;
        stats.duplicates.truncate(snap.duplicates);
        stats.truncated.truncate(snap.truncated);
        stats.unmapped_fields.truncate(snap.unmapped);
        stats.flagged = snap.flagged;
        let counts = &mut stats.per_input[snap.origin];
        counts.written = snap.counts.written;
        counts.duplicates = snap.counts.duplicates;
        self.versions.clone_from(&snap.versions);
        self.docs.clone_from(&snap.docs);
        if let (Some(curves), Some(mark)) = (self.lightcurves.as_mut(), &snap.lightcurves) {
            curves.roll_back(mark);
        }
        for (position, mark) in snap.chunks.iter().enumerate() {
            let chunk = &mut self.chunks[position].0;
            if chunk.index == mark.index {
                chunk.rows = mark.rows;
                chunk.bytes.truncate(mark.len);
            } else {
                let array = chunk.array;
                let bytes = mark.saved.clone().unwrap_or_default();
                *chunk = ChunkBuffer { index: mark.index, rows: mark.rows, committed: mark.committed.clone(), bytes, ..*chunk };
                full.retain(|c| c.array != array || c.index < mark.index);
                let stale = &mut self.stale_chunks[position];
                *stale = Some(stale.map_or(mark.index, |k| k.min(mark.index)));
            }
        }
        self.rollback = Some(self.snapshot(snap.origin));
        lost
    }
}

/// Column docs gathered from writer schemas: the first schema (in row order) that documents a column wins.
#[derive(Clone)]
struct ColumnDocs {
    docs: Vec<Option<String>>,
    /// The writer schemas merged, by address: each is merged once.
    seen: HashSet<*const ()>,
}

impl ColumnDocs {
    fn merge(&mut self, schema: &Arc<dyn WriterSchema>, stats: &mut Stats) {
        if !self.seen.insert(Arc::as_ptr(schema).cast::<()>()) {
            return;
        }
        for (column, doc) in schema.docs() {
            self.docs[*column].get_or_insert_with(|| doc.clone());
        }
        for field in schema.unmapped() {
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
    let mut transaction = Transaction::begin(&config.output, config.requested, Purpose::Append, config.survey.tables())?;
    if let Err(error) = check_labels(config, &transaction) {
        transaction.abandon();
        return Err(error);
    }
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

/// What a build read, ready to commit: its summary and the commit (None: nothing new).
type Outcome = (Stats, Option<Commit>);

fn run(config: &BuildConfig, pool: &rayon::ThreadPool, progress: &Progress, transaction: &mut Transaction) -> Result<Outcome, BuildError> {
    let started = Instant::now();
    let started_at = utc_now();
    let survey_tables = config.survey.tables();
    let layout = survey_tables.catalog;
    let settings = transaction.settings();
    let spec = StampSpec { size: settings.stamp_size, keep_nan: settings.keep_nan, keep_masked: settings.keep_masked };
    let rows_before = transaction.committed().map_or(0, |c| c.rows);
    let chunks = chunk_buffers(transaction);
    let lightcurves = settings.lightcurves.then(|| {
        let rows = |name: &str| transaction.array_index(name).map_or(0, |a| transaction.committed_rows(a) as u64);
        let first_column = |role| {
            let group = lightcurves::group_of(survey_tables, role);
            format!("{}/{}", group.name, group.layout.columns()[0].name)
        };
        let tables = [rows(&first_column(TableRole::Epochs)), rows(&first_column(TableRole::Forced))];
        LightCurves::new(
            survey_tables,
            transaction.committed_lightcurve_keys(),
            tables,
            [rows(store::HISTORY_EPOCHS), rows(store::HISTORY_FORCED)],
        )
    });
    let transaction: &Transaction = transaction;
    let mut collector = Collector {
        config,
        layout,
        stats: Stats {
            per_input: vec![InputCounts::default(); config.given.len()],
            rows_before,
            flag_names: survey_tables.stamps.names,
            id_column: layout.columns()[0].name.as_str(),
            ..Stats::default()
        },
        storage: transaction.storage().as_ref(),
        stored: transaction.committed_candids(),
        seen: CandidSet::default(),
        docs: ColumnDocs { docs: vec![None; layout.columns().len()], seen: HashSet::new() },
        versions: HashMap::new(),
        new_candids: Vec::new(),
        stale_chunks: vec![None; chunks.len()],
        chunks,
        rollback: None,
        lightcurves,
        lightcurve_batch_bytes: lightcurve_batch_bytes(),
        alert_row: Vec::new(),
        no_history: lightcurves::layout_of(survey_tables, TableRole::Alerts).missing_row(),
        added: Added::default(),
        spare: vec![None; transaction.arrays().len()],
    };
    let writer = ChunkWriter { transaction };
    progress.start(config.plan.bytes);
    let (items, reader) = source::stream(config.plan.inputs.clone(), BATCH);
    let decoder = config.survey.decoder(spec, settings.lightcurves, settings.psf, &config.schemas);
    // Three stages overlap: the reader thread lists files and streams archives into `items`; a
    // decode thread has batches read and decoded on the pool; this thread puts the alerts in
    // order and compresses and writes each chunk as it fills.
    let outcome = std::thread::scope(|threads| -> Result<(), BuildError> {
        let (decoded_tx, decoded_rx) = sync_channel::<Vec<Decoded>>(2);
        let decoder = decoder.as_ref();
        threads.spawn(move || decode_stage(&items, decoder, pool, &decoded_tx));
        let mut full = Vec::new();
        for batch in decoded_rx {
            let bytes: u64 = batch.iter().map(|d| d.progress).sum();
            for decoded in batch {
                collector.take(decoded, &mut full)?;
                // Chunks are written as soon as they fill, so their buffers come back for the
                // next chunks while the batch is still being taken.
                collector.write_full(transaction, &writer, &mut full)?;
            }
            progress.advance(bytes, collector.stats.written);
        }
        Ok(())
    });
    let read = join_reader(reader);
    outcome?;
    read?;
    let mut last_chunks = Vec::new();
    collector.add_lightcurve_batch(&mut last_chunks)?;
    collector.index_objects(&mut last_chunks);
    let Collector { mut stats, docs, versions, new_candids, chunks, lightcurves, .. } = collector;
    let mut versions: Vec<_> = versions.into_iter().collect();
    versions.sort();
    stats.schema_versions = versions;
    if stats.written == 0 && stats.rejects.is_empty() && transaction.committed().is_some() {
        stats.elapsed = started.elapsed();
        return Ok((stats, None)); // nothing new: leave the store exactly as it was
    }
    // From here on the run is committed, even with no new row: its rejects and its run record
    // must reach the store, or the user is told of rejects the store does not keep.
    let mut own_rows = Vec::new();
    for (chunk, _) in chunks {
        let spec = &transaction.arrays()[chunk.array];
        if spec.rows == store::arrays::Rows::Own {
            own_rows.push((spec.name.clone(), chunk.index * spec.chunk_rows + chunk.rows));
        }
        if chunk.rows > 0 {
            last_chunks.push(chunk);
        }
    }
    write_last_chunks(pool, &writer, last_chunks)?;
    stats.committed = true;
    if !stats.rejects.is_empty() {
        stats.rejects_log = Some(transaction.storage().object_location(&transaction.rejects_log_key()));
    }
    stats.elapsed = started.elapsed();
    let run = run_record(config, &stats, &started_at);
    stats.unlabeled_append = config.labels.is_none() && transaction.committed().is_some_and(|c| c.labels.is_some());
    let lightcurve_commit = lightcurves.map(|curves| {
        let counts = curves.counts();
        stats.lightcurve_rows = Some(counts);
        (curves.new_keys().to_vec(), [counts.detections, counts.upper_limits, counts.forced])
    });
    let commit = Commit {
        rows: stats.rows_before + stats.written,
        own_rows,
        new_candids,
        column_docs: docs.finish(layout),
        new_rejects: rejects_jsonl(&stats.rejects),
        run,
        labels: config.labels.as_ref().map(|l| l.provenance.clone()),
        extra_metadata: None,
        lightcurves: lightcurve_commit,
    };
    Ok((stats, Some(commit)))
}

/// Bytes of epochs a light-curve batch holds before it is looked up in the committed keys:
/// [`LIGHTCURVE_BATCH_BYTES`], or `ZTF2ZARR_LIGHTCURVE_BATCH_BYTES` (for tests of batches that
/// span rollback points).
fn lightcurve_batch_bytes() -> usize {
    std::env::var("ZTF2ZARR_LIGHTCURVE_BATCH_BYTES").ok().and_then(|v| v.parse().ok()).unwrap_or(LIGHTCURVE_BATCH_BYTES)
}

/// The chunks left once every alert is taken (each array's incomplete last chunk, the object
/// index's): compressed and written on the pool side by side, as nothing else runs by then.
fn write_last_chunks(pool: &rayon::ThreadPool, writer: &ChunkWriter<'_>, chunks: Vec<ChunkBuffer>) -> Result<(), StoreError> {
    pool.install(|| chunks.into_par_iter().try_for_each(|chunk| writer.write(chunk).map(drop)))
}

/// One buffer per array of the store a build feeds, continuing its incomplete last chunk if it
/// has one. An array a command writes whole (split indices) gets none; a store never declares
/// one, so each buffer's position stays its array's index.
fn chunk_buffers(transaction: &mut Transaction) -> Vec<(ChunkBuffer, Feed)> {
    let mut partials = transaction.take_partials();
    transaction
        .arrays()
        .iter()
        .enumerate()
        .filter_map(|(array, spec)| {
            let rows_before = transaction.committed_rows(array);
            let feed = Feed::for_array(spec)?;
            let chunk = match partials.iter().position(|p| p.array == array) {
                Some(at) => ChunkBuffer::resume(partials.swap_remove(at), spec),
                None => ChunkBuffer::new(array, rows_before / spec.chunk_rows, spec),
            };
            Some((chunk, feed))
        })
        .collect()
}

/// Wait for the reader thread. A panic there means inputs may be missing from what was read,
/// so it fails the build rather than leaving a store that silently lacks them.
fn join_reader(reader: std::thread::JoinHandle<()>) -> Result<(), BuildError> {
    reader.join().map_err(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".into());
        BuildError::Reader { reason: format!("the reader thread panicked: {message}") }
    })
}

/// Decode batches of items on the pool, in order, until the inputs end or the consumer stops.
fn decode_stage(items: &Receiver<Item>, decoder: &dyn Decode, pool: &rayon::ThreadPool, decoded: &SyncSender<Vec<Decoded>>) {
    // The first batches are small so that ordering and writing start early instead of waiting
    // for a whole batch: then they overlap the decoding of the rest, even for a few hundred alerts.
    let mut size = FIRST_BATCH;
    loop {
        let batch: Vec<Item> = items.iter().take(size).collect();
        size = (size * 2).min(BATCH);
        if batch.is_empty() {
            return;
        }
        let results: Vec<(u64, Vec<Result<Alert, Reject>>)> =
            pool.install(|| batch.par_iter().map(|item| decode_item(decoder, item)).collect());
        let batch = batch.into_iter().zip(results).map(|(item, (size, results))| into_decoded(item, size, results)).collect();
        if decoded.send(batch).is_err() {
            return;
        }
    }
}

/// Labels must describe the whole store with one code table: an append with labels must use the
/// store's table, and an unlabeled store with rows gets labels through `ztf2zarr label` first.
fn check_labels(config: &BuildConfig, transaction: &Transaction) -> Result<(), BuildError> {
    let (Some(labels), Some(committed)) = (&config.labels, transaction.committed()) else { return Ok(()) };
    let refuse = |reason: String| Err(BuildError::Labels { store: config.output.clone(), reason });
    match &committed.labels {
        None if committed.rows > 0 => refuse(format!(
            "the store's {} rows are unlabeled; label them first (ztf2zarr label {} --labels …), then append with the same --labels",
            committed.rows, config.output
        )),
        Some(have) if have["classes"] != labels.provenance["classes"] => refuse(format!(
            "the store's label codes are {}, these labels' are {}; relabel the whole store with `ztf2zarr label` instead",
            have["classes"], labels.provenance["classes"]
        )),
        _ => Ok(()),
    }
}

fn into_decoded(item: Item, size: u64, results: Vec<Result<Alert, Reject>>) -> Decoded {
    let progress = if matches!(item.payload, Payload::File(_)) { size } else { item.consumed };
    let mark = match item.payload {
        Payload::Mark(mark) => Some(mark),
        _ => None,
    };
    Decoded { input: item.input, name: item.name, size, progress, results, mark }
}

/// The most a gzip'd alert file may inflate to: the size an archive member may have.
const MAX_GZIPPED_ALERT: usize = 64 << 20;

/// Read (if still to be read) and decode one item; returns its size in bytes and its alerts.
fn decode_item(decoder: &dyn Decode, item: &Item) -> (u64, Vec<Result<Alert, Reject>>) {
    match &item.payload {
        Payload::Mark(_) => return (0, Vec::new()),
        Payload::Rejected(reject) => return (0, vec![Err(reject.clone())]),
        _ => {}
    }
    match item.load() {
        Ok(bytes) if gzip::is_gzip(&bytes) => {
            // A gzip'd alert file (`.avro.gz`, as Rubin's alert archive stores them): decoded as
            // what it inflates to, whatever the survey.
            let results = match gzip::inflate_all(&bytes, MAX_GZIPPED_ALERT) {
                // A reject of what it inflates to says so: its reason speaks of the inflated bytes.
                Ok(inflated) => decoder
                    .decode_file(&item.name, &inflated)
                    .into_iter()
                    .map(|result| {
                        result.map_err(|mut reject| {
                            reject.reason = format!("a gzip'd alert file, inflated: {}", reject.reason);
                            reject
                        })
                    })
                    .collect(),
                Err(reason) => vec![Err(Reject::new(RejectKind::CorruptAvro, format!("a gzip'd alert file: {reason}")))],
            };
            (bytes.len() as u64, results)
        }
        Ok(bytes) => (bytes.len() as u64, decoder.decode_file(&item.name, &bytes)),
        Err(reason) => (0, vec![Err(Reject::new(RejectKind::Unreadable, reason))]),
    }
}

fn record(stats: &mut Stats, versions: &mut HashMap<String, usize>, alert: &Alert, name: &str, tables: &Tables) {
    let layout = tables.catalog;
    stats.written += 1;
    let flags = layout.index_of("stamp_flags").and_then(|c| layout.read_i64(&alert.row, c)).unwrap_or(0);
    for (position, count) in stats.flagged.iter_mut().enumerate() {
        *count += usize::from(flags & (1 << position) != 0);
    }
    if !alert.truncated.is_empty() {
        stats.truncated.push((name.to_string(), alert.truncated.clone()));
    }
    // The version column is what the packet says it is, and all the store keeps: `info` counts
    // the catalog's column. Packets without it (ZTF's before 3.x) are named as `info` names
    // them, with the writer schema's version, which the build alone knows.
    let no_version = tables.no_version;
    let version =
        layout.index_of(tables.version_column).and_then(|c| layout.read_str(&alert.row, c)).filter(|v| !v.is_empty()).unwrap_or_else(
            || match alert.writer.version() {
                Some(writer) => format!("({no_version}; writer schema {writer})"),
                None => format!("({no_version})"),
            },
        );
    *versions.entry(version).or_default() += 1;
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
    let details = json!({
        "labels": config.labels.as_ref().map(|l| l.provenance["csv"].clone()),
        "inputs": inputs,
    });
    store::run_record(started_at, stats.rows_before, stats.rows_before + stats.written, details)
}

fn rejects_jsonl(rejects: &[RejectRecord]) -> String {
    rejects
        .iter()
        .map(|r| {
            let mut line = serde_json::json!({"source": r.source, "kind": r.kind.name(), "reason": r.reason});
            if r.records != 1 {
                line["records"] = r.records.into();
            }
            line.to_string() + "\n"
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixels_are_stored_as_their_little_endian_bytes() {
        let pixels = [1.0f32, -2.5, f32::NAN, 0.0, f32::MIN_POSITIVE];
        let expected: Vec<u8> = pixels.iter().flat_map(|p| p.to_le_bytes()).collect();
        assert_eq!(le_bytes(&pixels).as_ref(), expected.as_slice());
        assert!(le_bytes(&[]).is_empty());
    }
}
