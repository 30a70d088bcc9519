//! The Zarr v2 store on disk: the hierarchy (`.zgroup`, `stamps/`, `catalog/`), chunk files, the
//! `.zarray`/`.zattrs` metadata, consolidated `.zmetadata`, the candid index and the rejects log,
//! the lock, and the commit protocol. Nothing outside `store/` touches files inside a store.
//!
//! Every build is a [`Transaction`]: under the store's lock, the new state is assembled in a
//! staging folder beside the store (committed chunks hard-linked, new and rewritten chunks
//! written, then all metadata), and published with one atomic `renameat2(RENAME_EXCHANGE)` — or
//! one `rename` for a new store. A reader, or a build killed at any moment, sees the old store or
//! the new one, never a mix; a leftover staging folder is removed by the next build. Every file
//! and folder of the staging tree is synced before the exchange and the parent folder after it,
//! so a power cut cannot publish a store whose files are empty.
//!
//! A store is always written through its real path ([`resolve`]): a symlinked store is locked
//! and published where it lives, and the link stays a link. Besides errors, this module prints
//! two things itself on stderr: that it waits for another writer's lock, and a warning when the
//! old tree cannot be removed after a publish (the store is then already committed).
//! Spec: <https://zarr-specs.readthedocs.io/en/latest/v2/v2.0.html>.

mod codec;
pub mod inspect;
mod lock;
mod metadata;
pub mod object;
mod reader;
pub mod storage;
pub mod verify;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;
use thiserror::Error;

pub use crate::calendar::utc_now;
pub use codec::StampFilter;
pub use lock::{lock_path, resolve, StoreLock, Wait};
pub use metadata::{StoreMetadata, CANDIDS, CATALOG, REJECTS, STAMPS};
pub use reader::{read_json, ReadError, StoreReader};
pub use storage::{LocalStorage, Storage, StorageError};

/// A failure to write the store; always names the path.
#[derive(Debug, Error)]
pub enum StoreError {
    /// Another process is writing the store (and still was after `waited` seconds, if given).
    #[error("`{store}` is being written by another ztf2zarr ({holder}); {}", waited_text(*.waited))]
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
}

fn waited_text(waited: Option<u64>) -> String {
    match waited {
        None => "wait for it to finish, or give --wait to queue behind it".into(),
        Some(seconds) => format!("still locked after it waited {seconds} s"),
    }
}

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
    /// `--chunk-rows`
    pub chunk_rows: Option<usize>,
    /// `--zstd-level`
    pub zstd_level: Option<i32>,
}

/// The layout settings of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Side of each stamp.
    pub stamp_size: usize,
    /// NaN pixels kept (else 0).
    pub keep_nan: bool,
    /// Rows per chunk.
    pub chunk_rows: usize,
    /// zstd level of the chunks.
    pub zstd_level: i32,
    /// Filter of the stamp chunks before zstd (`stamps/.zarray` `filters`).
    pub stamp_filter: StampFilter,
}

/// The largest uncompressed chunk (of either array) a store may have: bounds the memory a read
/// or a build reserves for one chunk, whatever a damaged `.zarray` says.
pub const MAX_CHUNK_BYTES: usize = 1 << 30;

/// Whether chunks of `chunk_rows` rows of `stamp_size`² stamps stay within [`MAX_CHUNK_BYTES`]
/// (the stamps chunk is always the larger of the two).
#[must_use]
pub fn chunk_fits(chunk_rows: usize, stamp_size: usize) -> bool {
    let row_bytes = 3 * stamp_size * stamp_size * 4;
    let catalog_row = crate::catalog::Layout::builtin().itemsize();
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

/// The rows of an incomplete last chunk, to be rewritten whole with the new rows after them.
#[derive(Debug, Clone)]
pub struct PartialChunk {
    /// Chunk index.
    pub index: usize,
    /// Rows already in it.
    pub rows: usize,
    /// Their catalog bytes (`rows × itemsize`).
    pub catalog: Vec<u8>,
    /// Their stamp bytes (`rows × 3 × S² × 4`).
    pub stamps: Vec<u8>,
}

/// What an existing store already holds.
#[derive(Debug)]
pub struct Committed {
    /// Rows committed.
    pub rows: usize,
    /// Candids of those rows, in row order.
    pub candids: Vec<i64>,
    /// The incomplete last chunk, if any.
    pub partial: Option<PartialChunk>,
    /// The label provenance recorded in the root attrs, if the store is labeled.
    pub labels: Option<Value>,
    runs: Vec<Value>,
    column_docs: Vec<String>,
    rejects: String,
    /// Metadata documents of groups and arrays besides stamps and catalog (e.g. `splits/…`).
    extra_metadata: Vec<(String, Value)>,
}

/// What a finished build adds.
#[derive(Debug)]
pub struct Commit {
    /// Rows in the store after this build.
    pub rows: usize,
    /// Candids of the new rows, in row order.
    pub new_candids: Vec<i64>,
    /// Column descriptions (used for a new store; an existing store keeps its own).
    pub column_docs: Vec<String>,
    /// New lines for `rejects.jsonl`.
    pub new_rejects: String,
    /// This run's provenance record.
    pub run: Value,
    /// New label provenance (None: keep the store's).
    pub labels: Option<Value>,
    /// New metadata documents besides stamps and catalog (None: keep the store's).
    pub extra_metadata: Option<Vec<(String, Value)>>,
}

impl Commit {
    /// A commit that keeps the store's rows and changes what describes them (labels, splits).
    #[must_use]
    pub fn same_rows(rows: usize, run: Value) -> Commit {
        Commit {
            rows,
            new_candids: Vec::new(),
            column_docs: Vec::new(),
            new_rejects: String::new(),
            run,
            labels: None,
            extra_metadata: None,
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

/// One build's changes to one store, published atomically by [`Transaction::commit`].
#[derive(Debug)]
pub struct Transaction {
    target: PathBuf,
    staging: PathBuf,
    settings: Settings,
    committed: Option<Committed>,
    reader: Option<StoreReader>,
    _lock: StoreLock,
}

impl Transaction {
    /// Resolve `target` to the real store, refuse a path that is not a store this tool writes
    /// (before any lock file is made), lock it, tidy what a killed build left, read the committed
    /// state (if the store exists), check the requested options against it, and prepare the
    /// staging folder — all before any input is read.
    ///
    /// # Errors
    /// Locked, not a store, an unwritable folder, incompatible options, or I/O failure.
    pub fn begin(target: &Path, requested: Requested, purpose: Purpose) -> Result<Transaction, StoreError> {
        let resolved = resolve_target(target, purpose)?;
        refuse_what_is_not_a_store(&resolved, purpose)?;
        let lock = StoreLock::acquire_waiting(&resolved, requested.wait)?;
        let target = lock.store().to_path_buf();
        recover(&target)?;
        let staging = lock::sibling(&target, "staging");
        let committed_reader = open_existing(&target)?;
        let settings = match &committed_reader {
            Some(reader) => check_compatible(&target, reader.settings(), requested)?,
            None => Settings {
                stamp_size: requested.stamp_size.unwrap_or(DEFAULT_STAMP_SIZE),
                keep_nan: requested.keep_nan,
                chunk_rows: requested.chunk_rows.unwrap_or(DEFAULT_CHUNK_ROWS),
                zstd_level: requested.zstd_level.unwrap_or(DEFAULT_ZSTD_LEVEL),
                stamp_filter: StampFilter::NEW_STORE,
            },
        };
        if purpose != Purpose::Append && committed_reader.is_none() {
            return Err(StoreError::NotAStore(target));
        }
        for folder in [staging.clone(), staging.join(STAMPS), staging.join(CATALOG)] {
            std::fs::create_dir_all(&folder).map_err(|source| StoreError::Unwritable {
                store: target.clone(),
                folder: folder.clone(),
                source,
            })?;
        }
        let committed = match &committed_reader {
            Some(reader) => Some(stage_existing(reader, &target, &staging, purpose)?),
            None => None,
        };
        Ok(Transaction { target, staging, settings, committed, reader: committed_reader, _lock: lock })
    }

    /// The committed store, for reading what a rewrite starts from.
    #[must_use]
    pub fn reader(&self) -> Option<&StoreReader> {
        self.reader.as_ref()
    }

    /// Compress and write one catalog chunk (whole, padded) into the staging folder.
    ///
    /// # Errors
    /// Compression or file I/O failure.
    pub fn write_catalog_chunk(&self, index: usize, catalog: &[u8]) -> Result<(), StoreError> {
        self.write_compressed(&self.staging.join(CATALOG).join(index.to_string()), catalog)
    }

    /// Write a file of an extra array (e.g. `splits/train/0`) into the staging folder, compressed
    /// as the store's chunks are.
    ///
    /// # Errors
    /// Compression or file I/O failure.
    pub fn write_extra_chunk(&self, key: &str, raw: &[u8]) -> Result<(), StoreError> {
        let path = self.staging.join(key);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Write { path: parent.to_path_buf(), source })?;
        }
        self.write_compressed(&path, raw)
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

    /// Take the partial last chunk out, for the pipeline to continue filling.
    pub fn take_partial(&mut self) -> Option<PartialChunk> {
        self.committed.as_mut().and_then(|c| c.partial.take())
    }

    /// Compress and write chunk `index` of both arrays into the staging folder. `catalog` holds
    /// whole packed rows and `stamps` whole stamp rows (little-endian float32), both padded to the
    /// chunk length.
    ///
    /// # Errors
    /// Compression or file I/O failure.
    pub fn write_chunk(&self, index: usize, catalog: &[u8], stamps: &[u8]) -> Result<(), StoreError> {
        self.write_compressed(&self.staging.join(CATALOG).join(index.to_string()), catalog)?;
        self.write_compressed(&self.staging.join(STAMPS).join(format!("{index}.0.0.0")), &self.settings.stamp_filter.encode(stamps))?;
        fault_point("after-chunk");
        Ok(())
    }

    fn write_compressed(&self, path: &Path, raw: &[u8]) -> Result<(), StoreError> {
        let compressed = zstd::bulk::compress(raw, self.settings.zstd_level)
            .map_err(|source| StoreError::Compress { path: path.to_path_buf(), source })?;
        write_file(path, &compressed)
    }

    /// Write the candid index, the rejects log and every metadata file (`.zmetadata` last) into
    /// the staging folder, then publish it as the store in one atomic step.
    ///
    /// # Errors
    /// File I/O failure; the committed store is then unchanged.
    pub fn commit(self, commit: Commit) -> Result<(), StoreError> {
        fault_point("before-metadata");
        let (runs, column_docs, mut rejects) = match &self.committed {
            Some(c) => (c.runs.clone(), c.column_docs.clone(), c.rejects.clone()),
            None => (Vec::new(), commit.column_docs, String::new()),
        };
        let labels = commit.labels.or_else(|| self.committed.as_ref().and_then(|c| c.labels.clone()));
        let extra = commit.extra_metadata.unwrap_or_else(|| self.committed.as_ref().map(|c| c.extra_metadata.clone()).unwrap_or_default());
        append_candids(&self.staging.join(CANDIDS), &commit.new_candids)?;
        rejects.push_str(&commit.new_rejects);
        write_file(&self.staging.join(REJECTS), rejects.as_bytes())?;
        let mut runs = runs;
        runs.push(commit.run);
        let metadata = StoreMetadata { rows: commit.rows, settings: self.settings, column_docs, runs, labels, extra };
        let files = metadata.files();
        for (key, value) in &files {
            let path = self.staging.join(key);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|source| StoreError::Write { path: parent.to_path_buf(), source })?;
            }
            write_file(&path, pretty(value).as_bytes())?;
        }
        write_file(&self.staging.join(".zmetadata"), pretty(&metadata::consolidated(&files)).as_bytes())?;
        sync_folders(&self.staging)?;
        fault_point("before-publish");
        publish(&self.staging, &self.target, self.committed.is_some())?;
        fault_point("after-publish");
        Ok(())
    }

    /// Drop this build's changes; the committed store stays as it was.
    pub fn abandon(self) {
        let _ = std::fs::remove_dir_all(&self.staging);
    }

    /// Delete the staged chunk files of both arrays from chunk `first` on (rows rolled back after
    /// an archive failed its checksum); chunks are staged in order, so this stops at the first
    /// index that has neither file.
    ///
    /// # Errors
    /// A staged chunk file that exists but cannot be deleted.
    pub fn discard_chunks_from(&self, first: usize) -> Result<(), StoreError> {
        for index in first.. {
            let files = [self.staging.join(CATALOG).join(index.to_string()), self.staging.join(STAMPS).join(format!("{index}.0.0.0"))];
            let mut found = false;
            for path in files {
                match std::fs::remove_file(&path) {
                    Ok(()) => found = true,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => return Err(StoreError::Write { path, source }),
                }
            }
            if !found {
                break;
            }
        }
        Ok(())
    }
}

/// Kill this process with SIGKILL at a named point when `ZTF2ZARR_FAULT` names it: lets the
/// tests check that a build killed there leaves a readable store and completes on a re-run.
fn fault_point(name: &str) {
    if std::env::var_os("ZTF2ZARR_FAULT").is_some_and(|v| v == name) {
        // SAFETY: sending a signal to ourselves; nothing is shared.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
}

/// Undo what a killed build left behind: a staging folder (never published), or a store moved
/// aside by the non-atomic fallback of `publish`; and remove old trees an earlier build could not.
fn recover(target: &Path) -> Result<(), StoreError> {
    let staging = lock::sibling(target, "staging");
    let previous = lock::sibling(target, "previous");
    if previous.exists() {
        if target.exists() {
            discard(target, &previous)?;
        } else {
            std::fs::rename(&previous, target).map_err(|source| StoreError::Write { path: target.to_path_buf(), source })?;
        }
    }
    if staging.exists() {
        discard(target, &staging)?;
    }
    for trash in trash_folders(target) {
        if let Err(error) = remove_tree(&trash) {
            warn_left(&trash, &error);
        }
    }
    Ok(())
}

/// Remove a tree this build needs out of the way; if it cannot be removed, move it aside to a
/// trash folder beside the store (removed by a later build) with a warning, so that one stuck
/// tree never fails every later build.
fn discard(target: &Path, tree: &Path) -> Result<(), StoreError> {
    let Err(error) = remove_tree(tree) else { return Ok(()) };
    let trash = lock::sibling(target, &format!("trash.{}", std::process::id()));
    if std::fs::rename(tree, &trash).is_err() {
        return Err(error); // the removal's error says more than the rename's
    }
    warn_left(&trash, &error);
    Ok(())
}

/// Trash folders beside the store (`.<name>.trash.<pid>`).
fn trash_folders(target: &Path) -> Vec<PathBuf> {
    let prefix = lock::sibling(target, "trash.").file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let Some(parent) = target.parent() else { return Vec::new() };
    let Ok(entries) = std::fs::read_dir(parent) else { return Vec::new() };
    entries.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().starts_with(&prefix)).map(|e| e.path()).collect()
}

fn warn_left(tree: &Path, error: &StoreError) {
    eprintln!("warning: {error}; the store is sound, and a later build removes `{}`", tree.display());
}

fn remove_tree(path: &Path) -> Result<(), StoreError> {
    std::fs::remove_dir_all(path).map_err(|source| StoreError::Remove { path: path.to_path_buf(), source })
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

/// Refuse, before a lock file is made beside it, a path that this transaction would not write:
/// a file, a folder of other things, or (to label or split) no store at all. The same checks run
/// again under the lock, where they decide.
fn refuse_what_is_not_a_store(target: &Path, purpose: Purpose) -> Result<(), StoreError> {
    match std::fs::metadata(target) {
        Err(_) if purpose != Purpose::Append => Err(StoreError::Missing(target.to_path_buf())),
        Err(_) => Ok(()),
        Ok(meta) if !meta.is_dir() => Err(StoreError::NotAStore(target.to_path_buf())),
        Ok(_) => open_existing(target).map(|_| ()).or_else(|error| match error {
            // A damaged store is reported under the lock (a writer may be publishing it right now).
            StoreError::Read(_) => Ok(()),
            other => Err(other),
        }),
    }
}

/// The existing store at `target`, if there is one (an empty folder counts as none).
fn open_existing(target: &Path) -> Result<Option<StoreReader>, StoreError> {
    if !target.exists() {
        return Ok(None);
    }
    let empty = std::fs::read_dir(target).map(|mut d| d.next().is_none()).unwrap_or(false);
    if empty {
        return Ok(None);
    }
    if !target.join(".zgroup").is_file() || !target.join(STAMPS).join(".zarray").is_file() {
        return Err(StoreError::NotAStore(target.to_path_buf()));
    }
    Ok(Some(StoreReader::open(target)?))
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
    if let Some(level) = requested.zstd_level.filter(|l| *l != have.zstd_level) {
        return refuse(format!("the store's chunks use zstd level {}; --zstd-level {level} differs", have.zstd_level));
    }
    Ok(have)
}

/// Fill the staging folder with the committed store's files — every data file hard-linked (no
/// copy) except those this transaction rewrites — and read what will be rewritten.
fn stage_existing(reader: &StoreReader, target: &Path, staging: &Path, purpose: Purpose) -> Result<Committed, StoreError> {
    let rows = reader.rows();
    let chunk_rows = reader.settings().chunk_rows;
    let partial_index = (rows % chunk_rows != 0 && purpose == Purpose::Append).then_some(rows / chunk_rows);
    let rewritten = |relative: &Path| -> bool {
        let first = relative.components().next().map(|c| c.as_os_str().to_string_lossy().into_owned()).unwrap_or_default();
        let name = relative.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let is_chunk_of = |array: &str, key: String| first == array && relative.components().count() == 2 && name == key;
        name.starts_with('.') // metadata and the candid index are written anew
            || relative == Path::new(REJECTS)
            || (purpose == Purpose::RewriteCatalog && first == CATALOG)
            || (purpose == Purpose::ReplaceSplits && first == SPLITS)
            || partial_index.is_some_and(|i| is_chunk_of(CATALOG, i.to_string()) || is_chunk_of(STAMPS, format!("{i}.0.0.0")))
    };
    link_tree(target, staging, Path::new(""), &rewritten)?;
    let partial = match partial_index {
        None => None,
        Some(index) => {
            let (catalog, stamps) = reader.chunk_bytes(index)?;
            let kept = rows - index * chunk_rows;
            Some(PartialChunk {
                index,
                rows: kept,
                catalog: catalog[..kept * reader.itemsize()].to_vec(),
                stamps: stamps[..kept * reader.stamp_row_bytes()].to_vec(),
            })
        }
    };
    let candids = reader.candids()?;
    write_file(&staging.join(CANDIDS), &candids.iter().flat_map(|c| c.to_le_bytes()).collect::<Vec<_>>())?;
    let labels = Some(reader.root_attrs()["ztf2zarr"]["labels"].clone()).filter(|v| !v.is_null());
    let extra_metadata = if purpose == Purpose::ReplaceSplits { Vec::new() } else { reader.extra_metadata()? };
    Ok(Committed {
        rows,
        candids,
        partial,
        labels,
        runs: reader.runs()?,
        column_docs: reader.column_docs()?,
        rejects: std::fs::read_to_string(target.join(REJECTS)).unwrap_or_default(),
        extra_metadata,
    })
}

/// Hard-link every file under `from/relative` into `to/relative`, except those `skip` names.
fn link_tree(from: &Path, to: &Path, relative: &Path, skip: &dyn Fn(&Path) -> bool) -> Result<(), StoreError> {
    let folder = from.join(relative);
    let entries = std::fs::read_dir(&folder).map_err(|source| StoreError::Write { path: folder.clone(), source })?;
    for entry in entries {
        let entry = entry.map_err(|source| StoreError::Write { path: folder.clone(), source })?;
        let child = relative.join(entry.file_name());
        if entry.path().is_dir() {
            std::fs::create_dir_all(to.join(&child)).map_err(|source| StoreError::Write { path: to.join(&child), source })?;
            link_tree(from, to, &child, skip)?;
        } else if !skip(&child) {
            link(&from.join(&child), &to.join(&child))?;
        }
    }
    Ok(())
}

fn link(from: &Path, to: &Path) -> Result<(), StoreError> {
    std::fs::hard_link(from, to).map_err(|source| StoreError::Write { path: to.to_path_buf(), source })
}

fn append_candids(path: &Path, candids: &[i64]) -> Result<(), StoreError> {
    let fail = |source| StoreError::Write { path: path.to_path_buf(), source };
    let mut file = OpenOptions::new().create(true).append(true).open(path).map_err(fail)?;
    file.write_all(&candids.iter().flat_map(|c| c.to_le_bytes()).collect::<Vec<_>>()).map_err(fail)?;
    sync(&file).map_err(fail)
}

/// Write a new file of the staging tree and sync it to the disk.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let fail = |source| StoreError::Write { path: path.to_path_buf(), source };
    let mut file = File::create(path).map_err(fail)?;
    file.write_all(bytes).map_err(fail)?;
    sync(&file).map_err(fail)
}

/// Whether files and folders are synced: always, except when `ZTF2ZARR_NO_SYNC` is set, which
/// only `scripts/bench_durability` does, to measure what the syncs cost.
fn syncing() -> bool {
    static SYNCING: OnceLock<bool> = OnceLock::new();
    *SYNCING.get_or_init(|| std::env::var_os("ZTF2ZARR_NO_SYNC").is_none())
}

fn sync(file: &File) -> std::io::Result<()> {
    if syncing() {
        file.sync_all()
    } else {
        Ok(())
    }
}

/// Sync a folder, so that the entries made in it (new files, links, renames) reach the disk.
fn sync_folder(folder: &Path) -> Result<(), StoreError> {
    File::open(folder).and_then(|f| sync(&f)).map_err(|source| StoreError::Write { path: folder.to_path_buf(), source })
}

/// Sync every folder of a tree, deepest first (the files themselves were synced when written).
fn sync_folders(root: &Path) -> Result<(), StoreError> {
    let entries = std::fs::read_dir(root).map_err(|source| StoreError::Write { path: root.to_path_buf(), source })?;
    for entry in entries {
        let entry = entry.map_err(|source| StoreError::Write { path: root.to_path_buf(), source })?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            sync_folders(&entry.path())?;
        }
    }
    sync_folder(root)
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

/// Make the staging folder the store. A new store is one `rename`. An existing one is swapped
/// with `renameat2(RENAME_EXCHANGE)`, atomic for every reader; where the file system cannot do
/// that, the old store is moved aside first (a reader may then briefly find no store, never a
/// mixed one, and `recover` puts it back if we die in between). The parent folder is synced
/// after the swap, so that the published store survives a power cut. Removing the old tree
/// afterwards is tidying: a failure there is a warning, and the next build removes it.
fn publish(staging: &Path, target: &Path, existed: bool) -> Result<(), StoreError> {
    let fail = |source| StoreError::Write { path: target.to_path_buf(), source };
    let parent = lexical_parent(target);
    if !existed {
        if target.exists() {
            std::fs::remove_dir(target).map_err(fail)?; // the empty folder the user named
        }
        std::fs::rename(staging, target).map_err(fail)?;
        return sync_folder(&parent);
    }
    if exchange(staging, target).is_ok() {
        sync_folder(&parent)?;
        fault_point("after-exchange");
        // `staging` now holds the old store: its files are all still linked from the new one or replaced.
        tidy(staging);
        return Ok(());
    }
    let previous = lock::sibling(target, "previous");
    std::fs::rename(target, &previous).map_err(fail)?;
    std::fs::rename(staging, target).map_err(fail)?;
    sync_folder(&parent)?;
    tidy(&previous);
    Ok(())
}

/// Remove the old tree after a publish; the store is committed already, so a failure is only
/// a warning (the next build's `recover` removes what is left).
fn tidy(old: &Path) {
    let result = match injected_failure("tidy") {
        Some(source) => Err(StoreError::Remove { path: old.to_path_buf(), source }),
        None => remove_tree(old),
    };
    if let Err(error) = result {
        warn_left(old, &error);
    }
}

/// An I/O error to return at a named point when `ZTF2ZARR_FAULT` names it: lets the tests check
/// how a failure there is handled where a real one cannot be made on demand.
fn injected_failure(name: &str) -> Option<std::io::Error> {
    std::env::var_os("ZTF2ZARR_FAULT")
        .is_some_and(|v| v == name)
        .then(|| std::io::Error::other(format!("failure injected by ZTF2ZARR_FAULT={name}")))
}

#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let a = CString::new(a.as_os_str().as_bytes())?;
    let b = CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: two valid NUL-terminated paths, relative to the current directory.
    let rc = unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), libc::RENAME_EXCHANGE) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn exchange(_a: &Path, _b: &Path) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}
