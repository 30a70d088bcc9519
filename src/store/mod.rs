//! The Zarr v2 store: its arrays (`store/arrays.rs`), metadata documents, chunks, candid index
//! (`store/candids.rs`), rejects logs, the lock, and the commit protocol, over a [`Storage`]
//! (a local folder, or an object store: `store/object.rs`). Nothing outside `store/` touches the
//! objects of a store.
//!
//! Every change to a store is a [`Transaction`], committed by an order of whole-object writes
//! that holds on object storage as on a local disk (each `put` replaces one object atomically;
//! nothing spans two objects):
//!
//! 1. under the store's lock, a marker `.ztf2zarr/pending.json` says a write is in progress and
//!    which chunks it may add;
//! 2. new chunk objects are written past the committed rows (no reader looks there), and the
//!    incomplete last chunk is rewritten with its visible rows unchanged (no committed row ever
//!    changes: a revised light-curve epoch is a new row; the backups that markers of earlier
//!    releases name are still put back);
//! 3. this build's candid run, light-curve key blocks and rejects log (new objects no committed
//!    metadata names);
//! 4. every array's `.zarray`/`.zattrs`, other groups', the root `.zattrs`;
//! 5. `.zmetadata` last: the commit point. Then the marker is removed.
//!
//! Readers of the consolidated metadata see the old state or the new one; readers of the
//! separate files see, between steps 4 and 5, each array at its old or its new length, with
//! every row they can see complete. A writer killed at any step leaves a marker; the next writer
//! puts the separate metadata back as `.zmetadata` has it and deletes what the killed one added,
//! so a re-run gives the bytes of a one-shot build. On a local disk every object is synced
//! before the metadata that names it is written, and the metadata before `.zmetadata`.
//!
//! A local store is always written through its real path ([`resolve`]): a symlinked store is
//! locked where it lives, and the link stays a link. Besides errors, this module prints on
//! stderr that it waits for another writer's lock, and that it upgrades a store's candid index.
//! Spec: <https://zarr-specs.readthedocs.io/en/latest/v2/v2.0.html>.

pub mod arrays;
pub mod candids;
mod codec;
pub mod inspect;
pub mod lckeys;
mod lock;
mod metadata;
pub mod object;
mod reader;
mod stop;
pub mod storage;
pub mod verify;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use thiserror::Error;

pub use crate::calendar::utc_now;
use crate::table::Tables;
use arrays::{declared, ArraySpec};
use candids::{run_key, CommittedCandids, Run};
use codec::Part;
pub use codec::{vlen, ChunkFilter, StampFilter};
pub use lock::{break_object_lock, lock_path, resolve, LockRecord, ObjectLock, StoreLock, Unlocked, Wait, OBJECT_LOCK};
pub use metadata::{
    column_spec, StoreMetadata, CATALOG, EPOCHS, FORCED, HISTORY, HISTORY_EPOCHS, HISTORY_FORCED, LEGACY_CANDIDS, LEGACY_REJECTS,
    LIGHTCURVES, MASKED_AS_MISSING, MASKED_KEPT, OBJECTS, REJECTS, STAMPS, SURVEY,
};
pub use reader::{read_doc, read_json, IntoStorage, ReadError, StoreReader};
pub use storage::{LocalStorage, Storage, StorageError};

/// The marker of a write in progress (or of one that was killed).
pub const PENDING: &str = ".ztf2zarr/pending.json";
/// Folder of the copies of committed chunks that a change rewrites, until it commits.
const BACKUPS: &str = ".ztf2zarr/backup";

/// A failure to write the store; always names the path.
#[derive(Debug, Error)]
pub enum StoreError {
    /// Another process is writing the store (and still was after `waited` seconds, if given).
    #[error("`{}` is being written by another ztf2zarr ({holder}); {}{}", store.display(), waited_text(*.waited), stale_text(store))]
    Locked { store: PathBuf, holder: String, waited: Option<u64> },
    /// The lock file cannot be created (e.g. the folder is not writable).
    #[error("cannot write the store `{store}`: cannot create its lock file `{path}` ({source})")]
    Lock { store: PathBuf, path: PathBuf, source: std::io::Error },
    /// The store's path cannot be resolved to a real path (symlink loop, missing parent).
    #[error("cannot resolve the store path `{store}`: {source}")]
    Resolve { store: PathBuf, source: std::io::Error },
    /// The folder that holds (or will hold) the store cannot take new files.
    #[error("cannot write the store `{store}`: `{folder}` is not a writable folder ({source})")]
    Unwritable { store: PathBuf, folder: PathBuf, source: std::io::Error },
    /// There is no store at the path (to label or split).
    #[error("no store at `{0}`: nothing to label or split there (build one with `ztf2zarr build INPUT -o STORE`)")]
    Missing(PathBuf),
    /// The output exists and is not a store this tool wrote.
    #[error("`{0}` exists and is not a ztf2zarr store (no .zgroup / stamps / catalog); choose another path")]
    NotAStore(PathBuf),
    /// The existing store cannot take rows built with these options.
    #[error("`{store}`: {reason}")]
    Incompatible { store: PathBuf, reason: String },
    /// The existing store could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A file or folder could not be written.
    #[error("cannot write `{path}`: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    /// A file or folder could not be removed.
    #[error("cannot remove `{path}`: {source}")]
    Remove { path: PathBuf, source: std::io::Error },
    /// zstd failed to compress a chunk.
    #[error("cannot compress chunk `{path}`: {source}")]
    Compress { path: PathBuf, source: std::io::Error },
    /// An object could not be written.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A `label` or `split` of this store was killed before it finished.
    #[error("`{store}`: {reason}")]
    Interrupted { store: String, reason: String },
    /// Another writer took the store over while this one ran (its lock was removed): this one's
    /// conditional write of its marker or of the commit point was refused.
    #[error(
        "`{store}`: another writer has taken the store over since this one began ({what}); {kept}, and the store is as the \
         other writer left it: run the same command again"
    )]
    Fenced { store: String, what: String, kept: String },
    /// SIGTERM or SIGINT asked the writer to stop before its commit.
    #[error("`{store}`: stopped by {signal} before its commit: nothing of this run was committed; {kept}")]
    Stopped { store: String, signal: &'static str, kept: String },
    /// The writer's lease ran out before it could renew it (a store it cannot reach): another
    /// writer may take the store over, so this one stops.
    #[error(
        "`{store}`: this writer's lease on its lock ran out ({reason}), so another writer may take the store over; nothing \
         of this run was committed: run the same command again"
    )]
    LeaseExpired { store: String, reason: String },
    /// A STORE argument that is a URL which does not name one store's objects one for one.
    #[error("`{url}` cannot be used as a store: {reason}")]
    BadUrl { url: String, reason: String },
    /// The object store cannot replace an object conditionally, so a writer whose lock was
    /// removed could not be stopped from overwriting another's commit.
    #[error(
        "`{store}`: this object store cannot replace an object only if it is unchanged (a conditional PUT with If-Match), \
         which is how a writer whose lock was removed is kept from overwriting another writer's commit; if no two ztf2zarr \
         ever write this store at once, give --single-writer to write it without that protection"
    )]
    NoFencing { store: String },
}

/// How to break a lock left by a killed writer: only object stores keep one (a local lock dies
/// with its process).
fn stale_text(store: &Path) -> String {
    if object::is_url(&store.to_string_lossy()) {
        format!(
            "; if no ztf2zarr is writing it (a killed build leaves its lock object behind), remove the lock with `ztf2zarr unlock {}`",
            store.display()
        )
    } else {
        String::new()
    }
}

fn waited_text(waited: Option<u64>) -> String {
    match waited {
        None => "wait for it to finish, or give --wait to queue behind it".into(),
        Some(seconds) => format!("still locked after it waited {seconds} s"),
    }
}

/// Why a store whose light curves are in the structured layout of earlier releases is not
/// written to.
pub const LEGACY_LIGHTCURVES: &str = "its light curves are in the structured layout of an earlier ztf2zarr (one array of wide rows \
     per table); this version writes them as columns and does not change that layout in place. The store reads as before \
     (info, verify, the Python reader); to add alerts, labels or splits, build a new store from the same inputs \
     (`ztf2zarr build INPUTS -o NEW.zarr`)";

/// What the command line asks of the store: the options that fix its layout (None: the store's,
/// or the default for a new store), and how long to wait for another writer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Requested {
    /// `--wait[=SECONDS]`
    pub wait: Wait,
    /// `--stamp-size`
    pub stamp_size: Option<usize>,
    /// `--keep-nan`
    pub keep_nan: bool,
    /// `--keep-masked`
    pub keep_masked: bool,
    /// `--chunk-rows`
    pub chunk_rows: Option<usize>,
    /// `--zstd-level`
    pub zstd_level: Option<i32>,
    /// `--no-lightcurves`
    pub no_lightcurves: bool,
    /// `--single-writer`: write an object store that cannot fence a stale writer.
    pub single_writer: bool,
}

/// The layout settings of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Side of each stamp.
    pub stamp_size: usize,
    /// NaN pixels kept (else 0).
    pub keep_nan: bool,
    /// ZTF's masked-pixel value kept as it is (else stored as missing, by the NaN policy). A
    /// store written before this setting was recorded kept it, and keeps it.
    pub keep_masked: bool,
    /// Rows per chunk.
    pub chunk_rows: usize,
    /// zstd level of the chunks.
    pub zstd_level: i32,
    /// Filter of the stamp chunks before zstd (`stamps/.zarray` `filters`).
    pub stamp_filter: StampFilter,
    /// Whether the store has the `lightcurves` group.
    pub lightcurves: bool,
}

/// The largest uncompressed chunk (of either array) a store may have: bounds the memory a read
/// or a build reserves for one chunk, whatever a damaged `.zarray` says.
pub const MAX_CHUNK_BYTES: usize = 1 << 30;

/// Whether chunks of `chunk_rows` rows, of `stamp_size`² stamps and catalog rows of `catalog_row`
/// bytes, stay within [`MAX_CHUNK_BYTES`].
#[must_use]
pub fn chunk_fits(chunk_rows: usize, stamp_size: usize, catalog_row: usize) -> bool {
    let row_bytes = 3 * stamp_size * stamp_size * 4;
    chunk_rows.checked_mul(row_bytes.max(catalog_row)).is_some_and(|bytes| bytes <= MAX_CHUNK_BYTES)
}

/// Defaults for a new store.
pub const DEFAULT_STAMP_SIZE: usize = 21;
/// Rows per chunk of a new store.
pub const DEFAULT_CHUNK_ROWS: usize = 1000;
/// zstd level of a new store: level 1 measured as small as level 3 on stamps (+0.06 %) and the
/// catalog (+1 %) while compressing faster (docs/performance.md).
pub const DEFAULT_ZSTD_LEVEL: i32 = 1;

/// What a transaction will change, which decides what of the committed store is kept as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Add rows: every committed chunk is kept, the incomplete last one is continued.
    Append,
    /// Rewrite every catalog chunk (e.g. new labels); stamps are kept.
    RewriteCatalog,
    /// Replace the `splits` group; everything else is kept.
    ReplaceSplits,
}

/// Name of the group holding training split index arrays.
pub const SPLITS: &str = "splits";

/// An array's incomplete last chunk, to be rewritten whole with new rows after its own. Held as
/// stored (compressed) until then: an append onto a store whose ~115 last chunks are well
/// filled would otherwise hold tens of megabytes of their rows for the whole build.
#[derive(Debug, Clone)]
pub struct PartialChunk {
    /// Position of the array in [`Transaction::arrays`].
    pub array: usize,
    /// Chunk index.
    pub index: usize,
    /// Rows already in it.
    pub rows: usize,
    /// The chunk object as stored (its frame checked when the change began; inflated when the
    /// chunk is written, a damaged one then failing the change before anything is committed).
    pub stored: Vec<u8>,
}

/// What an existing store already holds.
#[derive(Debug)]
pub struct Committed {
    /// Rows committed.
    pub rows: usize,
    /// Rows of each array, in the order of [`Transaction::arrays`].
    pub array_rows: Vec<usize>,
    /// The incomplete last chunk of each array that has one.
    pub partials: Vec<PartialChunk>,
    /// The label provenance recorded in the root attrs, if the store is labeled.
    pub labels: Option<Value>,
    runs: Vec<Value>,
    column_docs: Vec<String>,
    candid_runs: Vec<Run>,
    lightcurve_blocks: Vec<lckeys::Block>,
    lightcurve_counts: [u64; 3],
    /// Metadata documents of groups and arrays besides the declared ones (e.g. `splits/…`).
    extra_metadata: Vec<(String, Value)>,
    /// The legacy candid index to delete once this commit has upgraded it.
    upgraded_legacy_index: bool,
}

/// A build's new light-curve keys with the rows they were written to, and its new rows per kind
/// (detections, upper limits, forced).
pub type NewLightCurves = (Vec<(lckeys::Key, u64)>, [u64; 3]);

/// What a finished build adds.
#[derive(Debug)]
pub struct Commit {
    /// Rows in the store after this build.
    pub rows: usize,
    /// Rows after this build of each array with rows of its own, by name.
    pub own_rows: Vec<(String, usize)>,
    /// Candids of the new rows, in row order.
    pub new_candids: Vec<i64>,
    /// Column descriptions (used for a new store; an existing store keeps its own).
    pub column_docs: Vec<String>,
    /// This build's rejects log (`rejects/NNNNNN.jsonl`), one JSON line per rejected input.
    pub new_rejects: String,
    /// This run's provenance record.
    pub run: Value,
    /// New label provenance (None: keep the store's).
    pub labels: Option<Value>,
    /// New metadata documents besides stamps and catalog (None: keep the store's).
    pub extra_metadata: Option<Vec<(String, Value)>>,
    /// The new light-curve keys with their rows, and new rows per kind (detections, upper
    /// limits, forced).
    pub lightcurves: Option<NewLightCurves>,
}

impl Commit {
    /// A commit that keeps the store's rows and changes what describes them (labels, splits).
    #[must_use]
    pub fn same_rows(rows: usize, run: Value) -> Commit {
        Commit {
            rows,
            own_rows: Vec::new(),
            new_candids: Vec::new(),
            column_docs: Vec::new(),
            new_rejects: String::new(),
            run,
            labels: None,
            extra_metadata: None,
            lightcurves: None,
        }
    }
}

/// A provenance record for `ztf2zarr.runs`: tool, start and end time, rows before and after,
/// and what the command did (`details`, merged in).
#[must_use]
pub fn run_record(started: &str, rows_before: usize, rows_after: usize, details: Value) -> Value {
    let mut record = serde_json::json!({
        "tool": format!("ztf2zarr {}", env!("CARGO_PKG_VERSION")),
        "started": started,
        "finished": utc_now(),
        "rows_before": rows_before,
        "rows_after": rows_after,
    });
    if let (Some(record), Value::Object(details)) = (record.as_object_mut(), details) {
        record.extend(details);
    }
    record
}

/// One change to one store, committed by [`Transaction::commit`] (see the module comment).
#[derive(Debug)]
pub struct Transaction {
    storage: Arc<dyn Storage>,
    /// What the survey's store holds.
    tables: &'static Tables,
    settings: Settings,
    arrays: Vec<ArraySpec>,
    purpose: Purpose,
    committed: Option<Committed>,
    reader: Option<StoreReader>,
    /// This change's number: its place in the provenance (`ztf2zarr.runs`), from 1.
    number: usize,
    pending: Value,
    /// Keys of extra arrays' chunks written (to delete what a replaced group no longer has).
    extra_written: Mutex<Vec<String>>,
    /// Whether a committed chunk was rewritten in place (by a label or a split).
    rewrote: std::sync::atomic::AtomicBool,
    /// For a new local store: whether its folder was there before (else an abandoned build removes it).
    folder_existed: bool,
    /// What the conditional writes of this change expect (None: a local store, or an object
    /// store written with `--single-writer`).
    fence: Option<Fence>,
    lock: Held,
}

/// The versions a change on object storage saw when it began. Its marker and its commit point
/// are written only if they are still these: another writer that took the store over (after its
/// lock was removed) has replaced the marker when it finished this one's leftovers, and has
/// replaced `.zmetadata` when it committed.
#[derive(Debug)]
struct Fence {
    /// `.zmetadata` as this change read it (None: a new store).
    commit_point: Option<storage::Version>,
    /// The marker as this change wrote it.
    marker: storage::Version,
}

/// The writer lock held for a transaction.
#[derive(Debug)]
enum Held {
    Local { _lock: StoreLock },
    Object { lock: ObjectLock },
}

/// The storage of the store named by `target`: an object store for a URL, else the local
/// folder at the real path (symlinks followed). Nothing is created.
///
/// # Errors
/// A URL that cannot be used (unknown scheme, bad configuration).
pub fn open_storage(target: &Path) -> Result<Arc<dyn Storage>, StoreError> {
    let text = target.to_string_lossy();
    if object::is_url(&text) {
        return Ok(Arc::new(object::ObjectStorage::from_url(&text)?));
    }
    let root = resolve(target).unwrap_or_else(|_| target.to_path_buf());
    Ok(Arc::new(LocalStorage::new(&root)))
}

/// Whether `target` names an object store rather than a local path.
#[must_use]
pub fn is_url(target: &Path) -> bool {
    object::is_url(&target.to_string_lossy())
}

impl Transaction {
    /// Lock the store named by `target` (refusing first, before any lock is made, a path that is
    /// not a store this tool writes), finish what a killed writer left, read the committed
    /// state, check the requested options against it, and mark the write as in progress — all
    /// before any input is read.
    ///
    /// # Errors
    /// Locked, not a store, an unwritable folder, incompatible options, or I/O failure.
    pub fn begin(target: &Path, requested: Requested, purpose: Purpose, tables: &'static Tables) -> Result<Transaction, StoreError> {
        stop::catch();
        let mut folder_existed = true;
        let mut fencing = false;
        let (storage, lock) = if is_url(target) {
            let storage = open_storage(target)?;
            refuse_what_is_not_a_store(storage.as_ref(), target, purpose)?;
            let mut lock = ObjectLock::acquire(Arc::clone(&storage), target, requested.wait, requested.single_writer)?;
            if !lock.can_fence(target)? && !requested.single_writer {
                return Err(StoreError::NoFencing { store: target.display().to_string() });
            }
            fencing = !requested.single_writer;
            (storage, Held::Object { lock })
        } else {
            let resolved = resolve_target(target, purpose)?;
            refuse_local_non_store(&resolved, purpose)?;
            let lock = StoreLock::acquire_waiting(&resolved, requested.wait)?;
            let root = lock.store().to_path_buf();
            legacy::recover(&root)?;
            folder_existed = root.exists();
            let storage: Arc<dyn Storage> = Arc::new(LocalStorage::new(&root));
            refuse_what_is_not_a_store(storage.as_ref(), target, purpose)?;
            (storage, Held::Local { _lock: lock })
        };
        recover(storage.as_ref(), purpose)?;
        // Before the read: a commit made between the two then fails this change's commit, safely.
        let commit_point = if fencing { storage.version(".zmetadata")? } else { None };
        let reader = open_existing(&storage, tables)?;
        if reader.as_ref().is_some_and(StoreReader::has_legacy_lightcurves) {
            return Err(StoreError::Incompatible { store: target.to_path_buf(), reason: LEGACY_LIGHTCURVES.into() });
        }
        let settings = match &reader {
            Some(reader) => check_compatible(target, reader.settings(), requested)?,
            None => Settings {
                stamp_size: requested.stamp_size.unwrap_or(DEFAULT_STAMP_SIZE),
                keep_nan: requested.keep_nan,
                keep_masked: requested.keep_masked,
                chunk_rows: requested.chunk_rows.unwrap_or(DEFAULT_CHUNK_ROWS),
                zstd_level: requested.zstd_level.unwrap_or(DEFAULT_ZSTD_LEVEL),
                stamp_filter: StampFilter::NEW_STORE,
                lightcurves: !requested.no_lightcurves,
            },
        };
        if purpose != Purpose::Append && reader.is_none() {
            return Err(StoreError::NotAStore(target.to_path_buf()));
        }
        let arrays = match &reader {
            Some(reader) => reader.arrays(),
            None => declared(&settings, tables, &[]),
        };
        let number = reader.as_ref().map_or(0, |r| r.runs().len()) + 1;
        let first_new: Vec<Value> = arrays
            .iter()
            .map(|a| {
                let from = reader.as_ref().map_or(0, |r| r.array_rows(a) / a.chunk_rows);
                json!({"array": a.name, "from": from, "suffix": ".0".repeat(a.row_shape.len())})
            })
            .collect();
        let pending = json!({
            "command": purpose.command(),
            "pid": std::process::id(),
            "started": utc_now(),
            "number": number,
            "chunks_from": first_new,
            "objects": [],
            "metadata": [],
        });
        let marker = storage.put_versioned(PENDING, pretty(&pending).as_bytes())?;
        storage.flush()?;
        let fence = fencing.then_some(Fence { commit_point, marker });
        let committed = match &reader {
            Some(reader) => Some(read_committed(reader, storage.as_ref(), purpose, number)?),
            None => None,
        };
        Ok(Transaction {
            tables,
            storage,
            settings,
            arrays,
            purpose,
            committed,
            reader,
            number,
            pending,
            extra_written: Mutex::new(Vec::new()),
            rewrote: std::sync::atomic::AtomicBool::new(false),
            folder_existed,
            fence,
            lock,
        })
    }

    /// The committed store, for reading what a rewrite starts from.
    #[must_use]
    pub fn reader(&self) -> Option<&StoreReader> {
        self.reader.as_ref()
    }

    /// Where the store lives.
    #[must_use]
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// The store's arrays, in the order chunk writes name them.
    #[must_use]
    pub fn arrays(&self) -> &[ArraySpec] {
        &self.arrays
    }

    /// Position of the array `name` in [`Transaction::arrays`].
    #[must_use]
    pub fn array_index(&self, name: &str) -> Option<usize> {
        self.arrays.iter().position(|a| a.name == name)
    }

    /// Look-ups of the committed light-curve keys (reading key blocks only as needed).
    #[must_use]
    pub fn committed_lightcurve_keys(&self) -> lckeys::CommittedKeys {
        lckeys::CommittedKeys::new(self.committed.as_ref().map(|c| c.lightcurve_blocks.clone()).unwrap_or_default())
    }

    /// Look-ups of the committed candids (reading the candid runs only as needed).
    #[must_use]
    pub fn committed_candids(&self) -> CommittedCandids {
        CommittedCandids::new(self.committed.as_ref().map(|c| c.candid_runs.clone()).unwrap_or_default())
    }

    /// The store's settings (the existing store's, or the new store's).
    #[must_use]
    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// What the store held before this build (None for a new store).
    #[must_use]
    pub fn committed(&self) -> Option<&Committed> {
        self.committed.as_ref()
    }

    /// Rows committed in array `array` (0 for a new store).
    #[must_use]
    pub fn committed_rows(&self, array: usize) -> usize {
        self.committed.as_ref().and_then(|c| c.array_rows.get(array).copied()).unwrap_or(0)
    }

    /// Take the incomplete last chunks out, for the pipeline to continue filling.
    pub fn take_partials(&mut self) -> Vec<PartialChunk> {
        self.committed.as_mut().map(|c| std::mem::take(&mut c.partials)).unwrap_or_default()
    }

    /// Compress and write chunk `index` of array `array` (whole rows, padded to the chunk
    /// length), replacing any object there.
    ///
    /// # Errors
    /// Compression or storage failure.
    pub fn write_chunk(&self, array: usize, index: usize, raw: &[u8]) -> Result<(), StoreError> {
        let spec = &self.arrays[array];
        let key = spec.chunk_key(index);
        self.check_writing()?;
        if self.purpose != Purpose::Append {
            self.rewrote.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        self.put_compressed(&key, &spec.filter.encode(raw))?;
        fault_point("after-chunk");
        Ok(())
    }

    /// Compress and write chunk `index` of array `array` from its first `rows` rows, as a build
    /// holds them (fixed-size rows, or `vlen` items): the rows of `partial` (the store's own, if
    /// the chunk continues its incomplete last chunk), then `bytes`. Padded to the chunk length
    /// as Zarr v2 requires: the padding is compressed as it streams by, never put in memory (a
    /// light-curve column's last chunk is mostly padding: a megabyte for a few rows).
    ///
    /// # Errors
    /// Compression or storage failure, or a `partial` that does not decode.
    pub fn write_chunk_rows(
        &self,
        partial: Option<&PartialChunk>,
        array: usize,
        index: usize,
        bytes: &[u8],
        rows: usize,
    ) -> Result<(), StoreError> {
        let joined;
        let bytes = match partial {
            Some(partial) => {
                let spec = &self.arrays[array];
                let mut own = reader::chunk_rows_of(self.storage.as_ref(), spec, index, &partial.stored, partial.rows)?;
                own.extend_from_slice(bytes);
                joined = own;
                joined.as_slice()
            }
            None => bytes,
        };
        let spec = &self.arrays[array];
        let key = spec.chunk_key(index);
        self.check_writing()?;
        if self.purpose != Purpose::Append {
            self.rewrote.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let failed = |source| StoreError::Compress { path: self.storage.object_location(&key).into(), source };
        COMPRESSOR.with_borrow_mut(|compressor| {
            let mut scratch = std::mem::take(&mut compressor.scratch);
            let parts = codec::padded_parts(spec.filter, bytes, spec.row_bytes, rows, spec.chunk_rows, &mut scratch);
            let result =
                compressor.compress_parts(&parts, self.settings.zstd_level).map_err(failed).and_then(|c| Ok(self.storage.put(&key, c)?));
            compressor.scratch = scratch;
            result
        })?;
        fault_point("after-chunk");
        Ok(())
    }

    /// Write a chunk of an extra array (e.g. `splits/train/0`), compressed as the store's
    /// chunks are.
    ///
    /// # Errors
    /// Compression or storage failure.
    pub fn write_extra_chunk(&self, key: &str, raw: &[u8]) -> Result<(), StoreError> {
        self.check_writing()?;
        self.rewrote.store(true, std::sync::atomic::Ordering::Relaxed);
        self.put_compressed(key, raw)?;
        self.extra_written.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(key.to_string());
        Ok(())
    }

    fn put_compressed(&self, key: &str, raw: &[u8]) -> Result<(), StoreError> {
        let failed = |source| StoreError::Compress { path: self.storage.object_location(key).into(), source };
        COMPRESSOR.with_borrow_mut(|compressor| {
            let compressed = compressor.compress(raw, self.settings.zstd_level).map_err(failed)?;
            Ok(self.storage.put(key, compressed)?)
        })
    }

    /// Delete the chunks of array `array` written by this build from chunk `first` on (rows
    /// rolled back after an archive failed its checksum). Chunks are written in order, so this
    /// stops at the first index with no object; committed chunks are never deleted (the
    /// incomplete last one is rewritten again before the commit).
    ///
    /// # Errors
    /// A chunk that exists but cannot be deleted.
    pub fn discard_chunks_from(&self, array: usize, first: usize) -> Result<(), StoreError> {
        self.check_lock()?;
        let spec = &self.arrays[array];
        let committed = spec.chunks_for(self.committed_rows(array));
        for index in first.max(committed).. {
            let key = spec.chunk_key(index);
            if self.storage.size(&key)?.is_none() {
                break;
            }
            self.storage.delete(&key)?;
        }
        Ok(())
    }

    /// Write this change's candid run and rejects log, then every metadata document, then
    /// `.zmetadata`, as the module comment orders them.
    ///
    /// # Errors
    /// Storage failure; the committed state is then unchanged, and the next writer tidies.
    pub fn commit(mut self, commit: Commit) -> Result<(), StoreError> {
        fault_point("before-metadata");
        // A signal from here on lets the commit finish: it takes a few requests.
        if let Some(signal) = stop::requested() {
            let (store, kept) = (self.storage.location(), self.kept_when_stopped());
            self.abandon();
            return Err(StoreError::Stopped { store, signal, kept });
        }
        let own_rows = self.own_rows_after(&commit.own_rows);
        let committed = self.committed.take();
        let (mut runs, column_docs, mut candid_runs, rows_before) = match &committed {
            Some(c) => (c.runs.clone(), c.column_docs.clone(), c.candid_runs.clone(), c.rows),
            None => (Vec::new(), commit.column_docs, Vec::new(), 0),
        };
        let mut blocks = committed.as_ref().map(|c| c.lightcurve_blocks.clone()).unwrap_or_default();
        let mut lightcurve_counts = committed.as_ref().map_or([0; 3], |c| c.lightcurve_counts);
        let labels = commit.labels.or_else(|| committed.as_ref().and_then(|c| c.labels.clone()));
        let extra =
            commit.extra_metadata.clone().unwrap_or_else(|| committed.as_ref().map(|c| c.extra_metadata.clone()).unwrap_or_default());
        let mut run = commit.run;
        let mut objects = Vec::new();
        if !commit.new_candids.is_empty() {
            let (entry, bytes) = Run::of(run_key(self.number), rows_before, &commit.new_candids);
            objects.push((entry.key.clone(), bytes));
            candid_runs.push(entry);
        }
        if let Some((keys, counts)) = &commit.lightcurves {
            for (block, bytes) in lckeys::blocks_of(self.number, keys, self.settings.zstd_level) {
                objects.push((block.key.clone(), bytes));
                blocks.push(block);
            }
            for (total, new) in lightcurve_counts.iter_mut().zip(counts) {
                *total += new;
            }
        }
        if !commit.new_rejects.is_empty() {
            let key = self.rejects_log_key();
            run["rejects_log"] = json!(key);
            objects.push((key, commit.new_rejects.into_bytes()));
        }
        runs.push(run);
        let metadata = StoreMetadata {
            tables: self.tables,
            rows: commit.rows,
            own_rows,
            settings: self.settings,
            column_docs,
            runs,
            labels,
            candid_index: candids::runs_json(&candid_runs),
            extra,
            lightcurve_keys: if self.settings.lightcurves { lckeys::blocks_json(&blocks) } else { Value::Null },
            lightcurve_counts,
        };
        let files = metadata.files();
        self.pending["objects"] = json!(objects.iter().map(|(k, _)| k).collect::<Vec<_>>());
        self.pending["metadata"] = json!(files.iter().map(|(k, _)| k).collect::<Vec<_>>());
        self.check_lock()?;
        self.put_marker()?;
        for (key, bytes) in &objects {
            self.storage.put(key, bytes)?;
        }
        self.storage.flush()?;
        fault_point("before-publish");
        let documents: Vec<(String, Vec<u8>)> = files.iter().map(|(k, v)| (k.clone(), pretty(v).into_bytes())).collect();
        self.check_lock()?;
        self.storage.put_all(&documents)?;
        self.storage.flush()?;
        fault_point("before-consolidated");
        self.check_lock()?;
        self.put_commit_point(pretty(&metadata::consolidated(&files)).as_bytes(), &files)?;
        self.storage.flush()?;
        fault_point("after-publish");
        fault_point("after-commit");
        self.tidy(committed.as_ref(), &files);
        Ok(())
    }

    /// Rewrite the marker with what the commit will write, the first write of the commit. On
    /// object storage only if it is still the marker this change wrote: a writer that took the
    /// store over has deleted it (finishing this change as a killed one) or replaced it.
    fn put_marker(&self) -> Result<(), StoreError> {
        let bytes = pretty(&self.pending);
        let Some(fence) = &self.fence else { return Ok(self.storage.put(PENDING, bytes.as_bytes())?) };
        match self.storage.put_if(PENDING, bytes.as_bytes(), Some(&fence.marker))? {
            storage::Conditional::Written(_) => Ok(()),
            storage::Conditional::Conflict | storage::Conditional::Unsupported => Err(self.fenced(
                "its lock was removed while this one ran, and the other writer has replaced this one's write-in-progress marker",
                "nothing of this run was committed or written since",
            )),
        }
    }

    /// Write `.zmetadata`, the commit point. On object storage only if it is still the one this
    /// change read when it began: else another writer committed in between, and its commit
    /// stands. The metadata documents this change wrote are then put back as that commit has
    /// them.
    fn put_commit_point(&self, bytes: &[u8], files: &[(String, Value)]) -> Result<(), StoreError> {
        let Some(fence) = &self.fence else { return Ok(self.storage.put(".zmetadata", bytes)?) };
        match self.storage.put_if(".zmetadata", bytes, fence.commit_point.as_ref())? {
            storage::Conditional::Written(_) => Ok(()),
            storage::Conditional::Conflict | storage::Conditional::Unsupported => {
                let restored = restore_metadata(self.storage.as_ref(), files.iter().map(|(key, _)| key.as_str()));
                let kept = match restored {
                    Ok(()) => "nothing of this run was committed (its metadata documents were put back as the other writer's commit has them)".to_string(),
                    Err(error) => format!("nothing of this run was committed, but its metadata documents could not be put back ({error}): run `ztf2zarr verify`"),
                };
                Err(self.fenced("its lock was removed while this one ran, and the other writer committed first", &kept))
            }
        }
    }

    /// Before each chunk write: that no signal asked this writer to stop (it then stops as a
    /// failed change does), and [`Self::check_lock`].
    fn check_writing(&self) -> Result<(), StoreError> {
        match stop::requested() {
            Some(signal) => Err(StoreError::Stopped { store: self.storage.location(), signal, kept: self.kept_when_stopped() }),
            None => self.check_lock(),
        }
    }

    /// What is left of this change once it is abandoned.
    fn kept_when_stopped(&self) -> String {
        if self.purpose != Purpose::Append && self.rewrote.load(std::sync::atomic::Ordering::Relaxed) {
            format!("some of what it rewrites is new and some old: run `ztf2zarr {}` again to finish it", self.purpose.command())
        } else {
            "what it wrote is removed and the store is as it was: run the same command again".into()
        }
    }

    /// On object storage, that the lock is still this writer's and its lease fresh (renewing
    /// it if it is not), before each write: a writer paused past its lease, whose store was
    /// taken over meanwhile, stops at its next write instead of writing over the other's.
    fn check_lock(&self) -> Result<(), StoreError> {
        match &self.lock {
            Held::Object { lock } => lock.check().map_err(|why| {
                if lock.lost() {
                    self.fenced(&why, "nothing of this run was committed")
                } else {
                    StoreError::LeaseExpired { store: self.storage.location(), reason: why }
                }
            }),
            Held::Local { .. } => Ok(()),
        }
    }

    fn fenced(&self, what: &str, kept: &str) -> StoreError {
        StoreError::Fenced { store: self.storage.location(), what: what.into(), kept: kept.into() }
    }

    /// Rows of every array with rows of its own after this change: what the change says, else
    /// what was committed.
    fn own_rows_after(&self, changed: &[(String, usize)]) -> Vec<(String, usize)> {
        self.arrays
            .iter()
            .enumerate()
            .filter(|(_, spec)| spec.rows == arrays::Rows::Own)
            .map(|(array, spec)| {
                let rows = changed.iter().find(|(name, _)| *name == spec.name).map_or(self.committed_rows(array), |(_, rows)| *rows);
                (spec.name.clone(), rows)
            })
            .collect()
    }

    /// After the commit point: remove what the new state no longer names (a replaced group's
    /// old chunks, an upgraded legacy index) and the pending marker. The store is committed, so
    /// a failure here is a warning, and the next writer finishes it.
    fn tidy(&self, committed: Option<&Committed>, files: &[(String, Value)]) {
        let mut result = Ok(());
        if self.purpose == Purpose::ReplaceSplits {
            result = self.delete_unnamed_split_chunks(files);
        }
        if committed.is_some_and(|c| c.upgraded_legacy_index) {
            result = result.and(self.storage.delete(LEGACY_CANDIDS).map_err(StoreError::from));
        }
        result = result.and(delete_backups(self.storage.as_ref(), &self.pending));
        let result = result.and_then(|()| match injected_failure("tidy") {
            Some(source) => Err(StoreError::Remove { path: self.storage.object_location(PENDING).into(), source }),
            None => Ok(self.storage.delete(PENDING).and_then(|()| self.storage.flush())?),
        });
        if let Err(error) = result {
            crate::errln!("warning: {error}; the store is committed and sound, and the next build finishes tidying it");
        }
    }

    fn delete_unnamed_split_chunks(&self, files: &[(String, Value)]) -> Result<(), StoreError> {
        let written = self.extra_written.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        for key in self.storage.list(&format!("{SPLITS}/"))? {
            if !written.contains(&key) && !files.iter().any(|(k, _)| *k == key) {
                self.storage.delete(&key)?;
            }
        }
        Ok(())
    }

    /// Key of this change's rejects log.
    #[must_use]
    pub fn rejects_log_key(&self) -> String {
        format!("{REJECTS}/{:06}.jsonl", self.number)
    }

    /// Drop this change: delete what it wrote past the committed rows and the marker. What
    /// cannot be deleted now is deleted by the next writer (the marker says what).
    pub fn abandon(self) {
        if matches!(&self.lock, Held::Object { lock } if lock.lost()) {
            // Another writer has the store: what this one wrote was finished by that writer's
            // recovery, and deleting by this one's stale view could delete that writer's chunks.
            return;
        }
        if self.committed.is_none() && self.purpose == Purpose::Append {
            self.abandon_new_store();
            return;
        }
        if self.purpose == Purpose::Append {
            if restore_backups(self.storage.as_ref(), &self.pending).is_err() {
                return; // the marker stays: the next writer puts the chunks back
            }
            for array in 0..self.arrays.len() {
                let first = self.arrays[array].chunks_for(self.committed_rows(array));
                if self.discard_chunks_from(array, first).is_err() {
                    return;
                }
            }
        }
        // A label or split that rewrote committed chunks keeps its marker: it must be run again.
        if self.purpose == Purpose::Append || !self.rewrote.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = self.storage.delete(PENDING);
        }
        let _ = self.storage.flush();
    }
}

impl Transaction {
    /// A first build that fails leaves nothing: every object it wrote is deleted, and a local
    /// folder it made is removed.
    fn abandon_new_store(&self) {
        let Ok(keys) = self.storage.list("") else { return };
        for key in keys.iter().filter(|k| k.as_str() != lock::OBJECT_LOCK && k.as_str() != PENDING) {
            if self.storage.delete(key).is_err() {
                return; // the marker stays: the next build deletes the rest
            }
        }
        let _ = self.storage.delete(PENDING);
        if let Some(root) = self.storage.local_root().filter(|_| !self.folder_existed) {
            let _ = std::fs::remove_dir_all(root);
        } else if let Some(root) = self.storage.local_root() {
            remove_empty_folders(root);
        }
        let _ = self.storage.flush();
    }
}

/// Remove the empty folders under `root` (what a deleted first build leaves in a folder the
/// user made), keeping `root` itself.
fn remove_empty_folders(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for entry in entries.filter_map(Result::ok) {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_empty_folders(&entry.path());
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

impl Purpose {
    fn command(self) -> &'static str {
        match self {
            Purpose::Append => "build",
            Purpose::RewriteCatalog => "label",
            Purpose::ReplaceSplits => "split",
        }
    }
}

/// Kill this process with SIGKILL at a named point when `ZTF2ZARR_FAULT` names it, or stop it
/// with SIGSTOP when it names `stop-` and the point: lets the tests check that a build killed
/// there leaves a readable store and completes on a re-run, and that one paused there (slow but
/// alive) cannot overwrite what another writer did meanwhile.
fn fault_point(name: &str) {
    let Some(fault) = std::env::var_os("ZTF2ZARR_FAULT") else { return };
    let signal = if fault == name {
        libc::SIGKILL
    } else if fault.to_str().and_then(|f| f.strip_prefix("stop-")) == Some(name) {
        libc::SIGSTOP
    } else {
        return;
    };
    // SAFETY: sending a signal to ourselves; nothing is shared.
    unsafe { libc::kill(libc::getpid(), signal) };
}

/// An I/O error to return at a named point when `ZTF2ZARR_FAULT` names it: lets the tests check
/// how a failure there is handled where a real one cannot be made on demand.
fn injected_failure(name: &str) -> Option<std::io::Error> {
    std::env::var_os("ZTF2ZARR_FAULT")
        .is_some_and(|v| v == name)
        .then(|| std::io::Error::other(format!("failure injected by ZTF2ZARR_FAULT={name}")))
}

/// Finish what a killed writer left, as its pending marker describes: put the separate metadata
/// back as `.zmetadata` has it, delete the metadata of arrays it created, the chunks it added
/// past the committed rows, and its candid run and rejects log. After a first build that was
/// killed, what is left is no store at all.
///
/// A killed `label` or `split` rewrote committed chunks in place, which cannot be undone: only
/// the same command may then run, to finish it.
fn recover(storage: &dyn Storage, purpose: Purpose) -> Result<(), StoreError> {
    let Some(pending) = read_doc(storage, PENDING)? else { return Ok(()) };
    let command = pending["command"].as_str().unwrap_or("build");
    if command != "build" && command != purpose.command() {
        return Err(StoreError::Interrupted {
            store: storage.location(),
            reason: format!(
                "its last `{command}` (started {}) was killed before it finished, so some of what it rewrites may be new and \
                 some old; run `ztf2zarr {command}` again to finish it first",
                pending["started"].as_str().unwrap_or("at an unknown time")
            ),
        });
    }
    // Put back together, as the commit wrote them, so that a plain reader (or a writer killed
    // again while it recovers) never finds the arrays at two lengths for longer than the renames.
    restore_metadata(storage, pending["metadata"].as_array().into_iter().flatten().filter_map(Value::as_str))?;
    let committed = match storage.get(".zmetadata")? {
        Some(_) => reader::committed_documents(storage)?,
        None => serde_json::Map::new(),
    };
    if command == "build" {
        let committed_runs = committed.get(".zattrs").and_then(|a| a["ztf2zarr"]["runs"].as_array().map(Vec::len)).unwrap_or(0);
        let number = pending["number"].as_u64().map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
        if committed_runs < number {
            restore_backups(storage, &pending)?;
        }
        delete_backups(storage, &pending)?;
        delete_added_chunks(storage, &pending, &committed)?;
    }
    let named = committed_names(&committed);
    for key in pending["objects"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        if !named.iter().any(|n| n == key) {
            storage.delete(key)?;
        }
    }
    if command == "build" {
        storage.delete(PENDING)?;
    }
    storage.flush()?;
    Ok(())
}

/// Put the metadata documents `keys` back as the committed `.zmetadata` has them (those it does
/// not name are deleted), so that the separate files agree with the commit point again.
fn restore_metadata<'a>(storage: &dyn Storage, keys: impl Iterator<Item = &'a str>) -> Result<(), StoreError> {
    let committed = match storage.get(".zmetadata")? {
        Some(_) => reader::committed_documents(storage)?,
        None => serde_json::Map::new(),
    };
    let keys: Vec<&str> = keys.collect();
    let restored: Vec<(String, Vec<u8>)> =
        keys.iter().filter_map(|key| committed.get(*key).map(|doc| ((*key).to_string(), pretty(doc).into_bytes()))).collect();
    storage.put_all(&restored)?;
    for key in keys.iter().filter(|key| !committed.contains_key(**key)) {
        storage.delete(key)?;
    }
    Ok(())
}

/// Where the backup of chunk `key` made by change `number` lives.
fn backup_key(number: usize, key: &str) -> String {
    format!("{BACKUPS}/{number:06}/{key}")
}

/// The chunks the marker's change backed up, with their backups' keys.
fn backups_of(pending: &Value) -> Vec<(String, String)> {
    let number = pending["number"].as_u64().and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
    pending["backups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|key| (key.to_string(), backup_key(number, key)))
        .collect()
}

/// Put back every chunk the marker's change backed up (a backup not yet made means its chunk
/// was not yet rewritten). Only markers of earlier releases list backups: they rewrote
/// forced-photometry rows in place, which no change does now.
fn restore_backups(storage: &dyn Storage, pending: &Value) -> Result<(), StoreError> {
    let backups = backups_of(pending);
    for (key, backup) in &backups {
        if let Some(bytes) = storage.get(backup)? {
            storage.put(key, &bytes)?;
        }
    }
    if !backups.is_empty() {
        storage.flush()?;
    }
    Ok(())
}

fn delete_backups(storage: &dyn Storage, pending: &Value) -> Result<(), StoreError> {
    let backups = backups_of(pending);
    for (_, backup) in &backups {
        storage.delete(backup)?;
    }
    // A local disk keeps the folders the backups were in; an object store has none.
    if let Some(root) = storage.local_root().filter(|_| !backups.is_empty()) {
        let folder = root.join(BACKUPS);
        remove_empty_folders(&folder);
        let _ = std::fs::remove_dir(folder);
    }
    Ok(())
}

/// Delete the chunks a killed build wrote past the committed rows of each array.
fn delete_added_chunks(storage: &dyn Storage, pending: &Value, committed: &serde_json::Map<String, Value>) -> Result<(), StoreError> {
    for entry in pending["chunks_from"].as_array().into_iter().flatten() {
        let (Some(name), Some(first), Some(suffix)) = (entry["array"].as_str(), entry["from"].as_u64(), entry["suffix"].as_str()) else {
            continue;
        };
        let zarray = committed.get(&format!("{name}/.zarray"));
        let rows = zarray.and_then(|z| z["shape"][0].as_u64()).unwrap_or(0);
        let chunk_rows = zarray.and_then(|z| z["chunks"][0].as_u64()).filter(|c| *c > 0).unwrap_or(1);
        let start = first.max(rows.div_ceil(chunk_rows));
        for index in start.. {
            let key = format!("{name}/{index}{suffix}");
            if storage.size(&key)?.is_none() {
                break;
            }
            storage.delete(&key)?;
        }
    }
    Ok(())
}

/// The candid runs and rejects logs the committed root attrs name.
fn committed_names(committed: &serde_json::Map<String, Value>) -> Vec<String> {
    let attrs = committed.get(".zattrs").cloned().unwrap_or(Value::Null);
    let mut names: Vec<String> = attrs["ztf2zarr"]["candid_index"]["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["key"].as_str().map(String::from))
        .collect();
    names.extend(attrs["ztf2zarr"]["runs"].as_array().into_iter().flatten().filter_map(|r| r["rejects_log"].as_str().map(String::from)));
    names.extend(
        attrs["ztf2zarr"]["lightcurve_keys"]["blocks"].as_array().into_iter().flatten().filter_map(|b| b["key"].as_str().map(String::from)),
    );
    names
}

/// The real path of `target`. For a build into a store not yet made, the parent folders are
/// created first, so that the new store's folder can be resolved.
fn resolve_target(target: &Path, purpose: Purpose) -> Result<PathBuf, StoreError> {
    let resolve_error = |source| StoreError::Resolve { store: target.to_path_buf(), source };
    match resolve(target) {
        Ok(path) => Ok(path),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && purpose == Purpose::Append => {
            let parent = lexical_parent(target);
            std::fs::create_dir_all(&parent).map_err(|source| StoreError::Unwritable {
                store: target.to_path_buf(),
                folder: parent.clone(),
                source,
            })?;
            resolve(target).map_err(resolve_error)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotADirectory => {
            Err(StoreError::Unwritable { store: target.to_path_buf(), folder: lexical_parent(target), source: error })
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(StoreError::Missing(target.to_path_buf())),
        Err(error) => Err(resolve_error(error)),
    }
}

fn lexical_parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Refuse, before a lock file is made beside it, a local path that this transaction would not
/// write: a file, or (to label or split) nothing; and a folder that cannot take new files.
fn refuse_local_non_store(target: &Path, purpose: Purpose) -> Result<(), StoreError> {
    match std::fs::metadata(target) {
        Err(_) if purpose != Purpose::Append => Err(StoreError::Missing(target.to_path_buf())),
        Err(_) => check_writable(target, &lexical_parent(target)),
        Ok(meta) if !meta.is_dir() => Err(StoreError::NotAStore(target.to_path_buf())),
        Ok(_) => {
            refuse_what_is_not_a_store(&LocalStorage::new(target), target, purpose)?;
            check_writable(target, target)
        }
    }
}

/// Whether `folder` takes new files (probed with a file that is removed at once).
fn check_writable(store: &Path, folder: &Path) -> Result<(), StoreError> {
    let probe = folder.join(format!(".ztf2zarr-probe.{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(source) => Err(StoreError::Unwritable { store: store.to_path_buf(), folder: folder.to_path_buf(), source }),
    }
}

/// Refuse a location that holds something other than a store (a store, an empty place, or
/// what a killed first build left are fine), and, to label or split, one with no store.
fn refuse_what_is_not_a_store(storage: &dyn Storage, target: &Path, purpose: Purpose) -> Result<(), StoreError> {
    if storage.size(".zgroup")?.is_some() || storage.size(".zmetadata")?.is_some() {
        return Ok(());
    }
    if purpose != Purpose::Append {
        return Err(StoreError::Missing(target.to_path_buf()));
    }
    if storage.size(PENDING)?.is_some() {
        return Ok(()); // a first build that was killed: the next one starts it again
    }
    let empty = match storage.local_root() {
        Some(root) => std::fs::read_dir(root).map_or(true, |mut entries| entries.next().is_none()),
        None => storage.list("")?.iter().all(|key| key == lock::OBJECT_LOCK),
    };
    if empty {
        return Ok(());
    }
    Err(StoreError::NotAStore(target.to_path_buf()))
}

/// The committed store, if there is one.
fn open_existing(storage: &Arc<dyn Storage>, tables: &'static Tables) -> Result<Option<StoreReader>, StoreError> {
    if storage.size(".zgroup")?.is_none() && storage.size(".zmetadata")?.is_none() {
        return Ok(None);
    }
    Ok(Some(StoreReader::open(Arc::clone(storage), tables)?))
}

fn check_compatible(target: &Path, have: Settings, requested: Requested) -> Result<Settings, StoreError> {
    let refuse = |reason: String| Err(StoreError::Incompatible { store: target.to_path_buf(), reason });
    if let Some(size) = requested.stamp_size.filter(|s| *s != have.stamp_size) {
        return refuse(format!(
            "the store's stamps are {0}x{0}; --stamp-size {size} would change its layout (build a new store instead)",
            have.stamp_size
        ));
    }
    if let Some(rows) = requested.chunk_rows.filter(|r| *r != have.chunk_rows) {
        return refuse(format!("the store's chunks hold {} rows; --chunk-rows {rows} would change its layout", have.chunk_rows));
    }
    if requested.keep_nan && !have.keep_nan {
        return refuse("the store replaces NaN pixels by 0; --keep-nan would mix two NaN policies in one store".into());
    }
    if requested.keep_masked && !have.keep_masked {
        return refuse(
            "the store holds ZTF's masked pixels (-3.4e38) as missing pixels, like NaN; --keep-masked would mix two masked-pixel policies in one store"
                .into(),
        );
    }
    if let Some(level) = requested.zstd_level.filter(|l| *l != have.zstd_level) {
        return refuse(format!("the store's chunks use zstd level {}; --zstd-level {level} differs", have.zstd_level));
    }
    if requested.no_lightcurves && have.lightcurves {
        return refuse("the store has light curves; --no-lightcurves would leave the new alerts' epochs out of them".into());
    }
    Ok(have)
}

/// Read what this change continues from: the incomplete last chunks (for an append), the
/// candid runs (a store written before them gets its index upgraded here, once), provenance,
/// column docs and extra metadata.
fn read_committed(reader: &StoreReader, storage: &dyn Storage, purpose: Purpose, number: usize) -> Result<Committed, StoreError> {
    let rows = reader.rows();
    let arrays = reader.arrays();
    let array_rows: Vec<usize> = arrays.iter().map(|spec| reader.array_rows(spec)).collect();
    let mut partials = Vec::new();
    if purpose == Purpose::Append {
        for (array, spec) in arrays.iter().enumerate() {
            let rows = array_rows[array];
            if rows % spec.chunk_rows != 0 {
                let index = rows / spec.chunk_rows;
                let kept = rows - index * spec.chunk_rows;
                let stored = reader.stored_chunk(spec, index)?;
                reader::check_stored_chunk(storage, spec, index, &stored)?;
                partials.push(PartialChunk { array, index, rows: kept, stored });
            }
        }
    }
    let (candid_runs, upgraded_legacy_index) = match reader.candid_runs()? {
        Some(runs) => (restore_missing_runs(reader, storage, runs)?, false),
        None => (upgrade_candid_index(reader, storage, number)?, true),
    };
    let labels = Some(reader.root_attrs()["ztf2zarr"]["labels"].clone()).filter(|v| !v.is_null());
    let extra_metadata = if purpose == Purpose::ReplaceSplits {
        reader.extra_metadata().into_iter().filter(|(k, _)| !k.starts_with(&format!("{SPLITS}/"))).collect()
    } else {
        reader.extra_metadata()
    };
    let location = storage.object_location(".zattrs");
    let lightcurve_blocks = lckeys::parse_blocks(&reader.root_attrs()["ztf2zarr"]["lightcurve_keys"], &location)?;
    let rows_by_kind = &reader.documents().get(&format!("{LIGHTCURVES}/.zattrs")).cloned().unwrap_or(Value::Null)["ztf2zarr"]["rows"];
    let count = |kind: &str| rows_by_kind[kind].as_u64().unwrap_or(0);
    let lightcurve_counts = [count("detections"), count("upper_limits"), count("forced")];
    Ok(Committed {
        rows,
        array_rows,
        partials,
        labels,
        runs: reader.runs(),
        column_docs: reader.column_docs(),
        candid_runs,
        lightcurve_blocks,
        lightcurve_counts,
        extra_metadata,
        upgraded_legacy_index,
    })
}

/// A store written before candid runs: its candids (from the legacy index, else the catalog)
/// become one run, written now and named by this change's commit.
fn upgrade_candid_index(reader: &StoreReader, storage: &dyn Storage, number: usize) -> Result<Vec<Run>, StoreError> {
    if reader.rows() == 0 {
        return Ok(Vec::new());
    }
    crate::errln!("upgrading the candid index of `{}` to sorted runs (once: {} candids are read)", storage.location(), reader.rows());
    let candids = match reader.legacy_candids()? {
        Some(candids) => candids,
        None => reader.catalog_candids()?,
    };
    let (run, bytes) = Run::of(format!("{}/{:06}-upgraded", candids::RUNS, number - 1), 0, &candids);
    storage.put(&run.key, &bytes)?;
    storage.flush()?;
    Ok(vec![run])
}

/// A run of the candid index that is missing (deleted after `verify` or an error found it
/// damaged) is rebuilt from the catalog rows it covers.
fn restore_missing_runs(reader: &StoreReader, storage: &dyn Storage, runs: Vec<Run>) -> Result<Vec<Run>, StoreError> {
    for run in &runs {
        if storage.size(&run.key)?.is_some() {
            continue;
        }
        crate::errln!("rebuilding the missing candid run `{}` from the catalog ({} rows)", storage.object_location(&run.key), run.rows);
        let candids = reader.catalog_candids_of(run.first_row, run.rows)?;
        let (_, bytes) = Run::of(run.key.clone(), run.first_row, &candids);
        storage.put(&run.key, &bytes)?;
    }
    storage.flush()?;
    Ok(runs)
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

/// What a version that published by exchanging folders may have left beside a local store.
mod legacy {
    use std::path::{Path, PathBuf};

    use super::{lock, StoreError};

    /// Put back a store moved aside and remove staging and trash folders of a killed build of
    /// a version that published by exchanging folders.
    pub(super) fn recover(target: &Path) -> Result<(), StoreError> {
        let previous = lock::sibling(target, "previous");
        if previous.exists() {
            if target.exists() {
                remove(&previous)?;
            } else {
                std::fs::rename(&previous, target).map_err(|source| StoreError::Write { path: target.to_path_buf(), source })?;
            }
        }
        for tree in std::iter::once(lock::sibling(target, "staging")).chain(trash_folders(target)) {
            if tree.exists() {
                remove(&tree)?;
            }
        }
        Ok(())
    }

    fn remove(tree: &Path) -> Result<(), StoreError> {
        std::fs::remove_dir_all(tree).map_err(|source| StoreError::Remove { path: tree.to_path_buf(), source })
    }

    fn trash_folders(target: &Path) -> Vec<PathBuf> {
        let prefix = lock::sibling(target, "trash.").file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let Some(parent) = target.parent() else { return Vec::new() };
        let Ok(entries) = std::fs::read_dir(parent) else { return Vec::new() };
        entries.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().starts_with(&prefix)).map(|e| e.path()).collect()
    }
}

thread_local! {
    /// Each writing thread's compressor: one zstd context and output buffer for all its chunks,
    /// instead of a fresh context and fresh pages per chunk.
    static COMPRESSOR: std::cell::RefCell<ChunkCompressor> = std::cell::RefCell::default();
}

/// A zstd context kept for one level, and the buffer it compresses into.
#[derive(Default)]
struct ChunkCompressor {
    context: Option<(i32, zstd::bulk::Compressor<'static>)>,
    /// The streaming context of [`ChunkCompressor::compress_parts`].
    stream: Option<zstd::zstd_safe::CCtx<'static>>,
    out: Vec<u8>,
    /// A buffer for the filtered bytes of a chunk.
    scratch: Vec<u8>,
}

impl ChunkCompressor {
    /// `raw` compressed as one zstd frame at `level` (the same bytes as `zstd::bulk::compress`).
    fn compress(&mut self, raw: &[u8], level: i32) -> std::io::Result<&[u8]> {
        if self.context.as_ref().is_none_or(|(kept, _)| *kept != level) {
            self.context = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        let Some((_, context)) = self.context.as_mut() else { unreachable!("set above") };
        self.out.clear();
        self.out.reserve(zstd::zstd_safe::compress_bound(raw.len()));
        context.compress_to_buffer(raw, &mut self.out)?;
        Ok(&self.out)
    }

    /// `parts`, one after the other, compressed as one zstd frame at `level` that declares its
    /// size (a string chunk is read by that size).
    fn compress_parts(&mut self, parts: &[Part<'_>], level: i32) -> std::io::Result<&[u8]> {
        use zstd::zstd_safe::zstd_sys::ZSTD_EndDirective as EndDirective;
        use zstd::zstd_safe::{CParameter, InBuffer, OutBuffer};
        static ZEROS: [u8; 1 << 16] = [0; 1 << 16];
        let fail = |code: usize| std::io::Error::other(zstd::zstd_safe::get_error_name(code));
        let total: usize = parts.iter().map(Part::size).sum();
        let context = self.stream.get_or_insert_with(zstd::zstd_safe::CCtx::create);
        context.reset(zstd::zstd_safe::ResetDirective::SessionAndParameters).map_err(fail)?;
        context.set_parameter(CParameter::CompressionLevel(level)).map_err(fail)?;
        context.set_pledged_src_size(Some(total as u64)).map_err(fail)?;
        self.out.clear();
        self.out.reserve(zstd::zstd_safe::compress_bound(total));
        let mut out = OutBuffer::around(&mut self.out);
        let feed = |bytes: &[u8], out: &mut OutBuffer<'_, Vec<u8>>, context: &mut zstd::zstd_safe::CCtx<'static>| -> std::io::Result<()> {
            let mut input = InBuffer::around(bytes);
            while input.pos() < bytes.len() {
                context.compress_stream2(out, &mut input, EndDirective::ZSTD_e_continue).map_err(fail)?;
            }
            Ok(())
        };
        for part in parts {
            match *part {
                Part::Bytes(bytes) => feed(bytes, &mut out, context)?,
                Part::Zeros(mut left) => {
                    while left > 0 {
                        let now = left.min(ZEROS.len());
                        feed(&ZEROS[..now], &mut out, context)?;
                        left -= now;
                    }
                }
            }
        }
        loop {
            let remaining = context.compress_stream2(&mut out, &mut InBuffer::around(&[]), EndDirective::ZSTD_e_end).map_err(fail)?;
            if remaining == 0 {
                break;
            }
        }
        Ok(&self.out)
    }
}
