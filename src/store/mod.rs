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
//!
//! Files: this one holds the store's errors, settings and the commit's parts; `transaction.rs`
//! the change and its commit; `recovery.rs` finishing a killed writer's change; `target.rs` which
//! store a command names; `legacy.rs` what earlier releases left; `codec.rs` chunk filters and
//! compression; `lock.rs` and `stop.rs` the writer's lock and its stop on a signal.

pub mod arrays;
pub mod candids;
mod codec;
pub mod inspect;
pub mod lckeys;
mod legacy;
mod lock;
mod metadata;
pub mod object;
mod reader;
mod recovery;
pub use recovery::interrupted;
mod stop;
pub use stop::signal_number as stop_signal;
pub mod storage;
mod target;
mod transaction;
pub mod verify;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use thiserror::Error;

pub use crate::calendar::utc_now;
use crate::table::Tables;
use arrays::{declared, ArraySpec};
use candids::{run_key, CommittedCandids, Run};
use codec::COMPRESSOR;
pub use codec::{vlen, ChunkFilter, StampFilter};
use legacy::{restore_missing_runs, upgrade_candid_index};
pub use lock::{break_object_lock, lock_path, resolve, LockRecord, ObjectLock, StoreLock, Unlocked, Wait, OBJECT_LOCK};
pub use metadata::{
    column_spec, StoreMetadata, CATALOG, EPOCHS, FORCED, HISTORY, HISTORY_EPOCHS, HISTORY_FORCED, LEGACY_CANDIDS, LEGACY_REJECTS,
    LIGHTCURVES, MASKED_AS_MISSING, MASKED_KEPT, OBJECTS, PSF, PSF_INDEX, PSF_PIXELS, REJECTS, STAMPS, SURVEY,
};
pub use reader::{read_doc, read_json, survey_named, IntoStorage, ReadError, StoreReader};
use recovery::{delete_backups, recover, remove_empty_folders, restore_backups, restore_metadata};
pub use storage::{LocalStorage, Storage, StorageError};
pub use target::{open_storage, StoreTarget, StoreUrl};
use target::{refuse_local_non_store, refuse_what_is_not_a_store, resolve_target};
pub use transaction::Transaction;

/// The marker of a write in progress (or of one that was killed).
pub const PENDING: &str = ".ztf2zarr/pending.json";
/// Folder of the copies of committed chunks that a change rewrites, until it commits.
const BACKUPS: &str = ".ztf2zarr/backup";

/// A failure to write the store; always names the path.
#[derive(Debug, Error)]
pub enum StoreError {
    /// Another process is writing the store (and still was after `waited` seconds, if given).
    #[error("`{store}` is being written by another ztf2zarr ({holder}); {}{}", waited_text(*.waited), stale_text(store))]
    Locked { store: StoreTarget, holder: String, waited: Option<u64> },
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
    Missing(StoreTarget),
    /// The output exists and is not a store this tool wrote.
    #[error("`{0}` exists and is not a ztf2zarr store (no .zgroup / stamps / catalog); choose another path")]
    NotAStore(StoreTarget),
    /// The existing store cannot take rows built with these options.
    #[error("`{store}`: {reason}")]
    Incompatible { store: StoreTarget, reason: String },
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
fn stale_text(store: &StoreTarget) -> String {
    match store {
        StoreTarget::Remote(url) => format!(
            "; if no ztf2zarr is writing it (a killed build leaves its lock object behind), remove the lock with `ztf2zarr unlock {url}`"
        ),
        StoreTarget::Local(_) => String::new(),
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
    /// A new store without the `variance` array its survey's cutouts would give.
    pub no_variance: bool,
    /// A new store with the `psf` group (`--psf`): its survey's PSF images at their own size.
    pub psf: bool,
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
    /// Whether the store has the `variance` array (the cutouts' variance planes, beside `stamps`).
    pub variance: bool,
    /// Whether the store has the `psf` group (`psf/pixels`, `psf/index`).
    pub psf: bool,
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
/// alive) cannot overwrite what another writer did meanwhile. Only in a build with the
/// `fault-injection` feature (the tests'); in any other it is nothing.
#[cfg(feature = "fault-injection")]
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
/// how a failure there is handled where a real one cannot be made on demand. Only with the
/// `fault-injection` feature, as [`fault_point`].
#[cfg(feature = "fault-injection")]
fn injected_failure(name: &str) -> Option<std::io::Error> {
    std::env::var_os("ZTF2ZARR_FAULT")
        .is_some_and(|v| v == name)
        .then(|| std::io::Error::other(format!("failure injected by ZTF2ZARR_FAULT={name}")))
}

/// Without the `fault-injection` feature: no fault point.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
fn fault_point(_name: &str) {}

/// Without the `fault-injection` feature: no injected failure.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
fn injected_failure(_name: &str) -> Option<std::io::Error> {
    None
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}
