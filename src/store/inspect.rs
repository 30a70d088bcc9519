//! What the subcommands read and write in a store besides its two arrays: whether a path is a
//! store at all, its size on disk, the rejects log, and the `splits` group (its index arrays and
//! the record in `splits/.zattrs` of what the splits were made from). Kept here so that the
//! commands never open files inside a store themselves.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{json, Value};
use thiserror::Error;

use super::arrays::{ArraySpec, Cell, Rows, Source};
use super::target::StoreTarget;
use super::{open_storage, ChunkFilter, ReadError, Storage, StoreError, StoreReader, Transaction, LEGACY_REJECTS, REJECTS, SPLITS};
use crate::table::Tables;

/// The split index arrays of the `splits` group.
pub const SPLIT_NAMES: [&str; 3] = ["train", "val", "test"];

/// Rows per chunk of a split index array (8 MB of int64).
const INDEX_CHUNK: usize = 1 << 20;

/// Why a path given as a store cannot be used as one.
#[derive(Debug, Error)]
pub enum NotAStore {
    /// Nothing at the path.
    #[error("no store at `{0}`: there is no such file or folder (build one with `ztf2zarr build INPUT -o STORE`)")]
    Missing(PathBuf),
    /// A file, not a folder.
    #[error("`{0}` is a file, not a store (a store is a folder)")]
    File(PathBuf),
    /// A folder (or prefix) without the store's `.zgroup`.
    #[error("`{0}` is not a ztf2zarr store: it has no .zgroup")]
    NoGroup(StoreTarget),
    /// The location cannot be used (an object store that cannot be reached or configured).
    #[error(transparent)]
    Unusable(#[from] StoreError),
    /// A store whose metadata cannot be read.
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// Check that `root` (a path or a URL) looks like a store before anything else is done with it,
/// so that a wrong path gets one plain sentence rather than the name of a file deep inside it.
///
/// # Errors
/// Missing path, a file, or a folder that is not a store.
pub fn require_store(root: &StoreTarget) -> Result<Arc<dyn Storage>, NotAStore> {
    if let StoreTarget::Local(path) = root {
        let metadata = std::fs::metadata(path).map_err(|_| NotAStore::Missing(path.clone()))?;
        if !metadata.is_dir() {
            return Err(NotAStore::File(path.clone()));
        }
    }
    let storage = open_storage(root)?;
    // A read, not a size: object stores answer a HEAD of an object in a missing bucket with a
    // bare 404, and only a GET says that the bucket itself is missing.
    if storage.get(".zgroup").map_err(StoreError::from)?.is_none() {
        return Err(NotAStore::NoGroup(root.clone()));
    }
    Ok(storage)
}

/// Open the store at `root` for reading, after [`require_store`].
///
/// # Errors
/// Not a store, or metadata that cannot be read.
pub fn open_store(root: &StoreTarget, tables: &'static Tables) -> Result<StoreReader, NotAStore> {
    Ok(StoreReader::open(require_store(root)?, tables)?)
}

/// Lines of the rejects logs (one per rejected input; a line may stand for many alert records).
///
/// # Errors
/// A log that cannot be read.
pub fn rejects_logged(storage: &dyn Storage) -> Result<usize, StoreError> {
    Ok(rejects_text(storage)?.lines().count())
}

/// Every rejects log of the store, oldest first, as one text.
///
/// # Errors
/// A log that cannot be read.
pub fn rejects_text(storage: &dyn Storage) -> Result<String, StoreError> {
    let mut keys: Vec<String> = storage.list(&format!("{REJECTS}/"))?.into_iter().filter(|k| k.ends_with(".jsonl")).collect();
    keys.sort();
    let mut text = String::new();
    for key in std::iter::once(LEGACY_REJECTS.to_string()).chain(keys) {
        if let Some(bytes) = storage.get(&key)? {
            text.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    Ok(text)
}

/// The `splits` group's attrs, if the store has splits.
#[must_use]
pub fn splits_attrs(reader: &StoreReader) -> Option<Value> {
    reader.documents().get(&format!("{SPLITS}/.zattrs")).cloned()
}

/// Rows in each split index array, from their `.zarray` shapes.
#[must_use]
pub fn split_sizes(reader: &StoreReader) -> Value {
    let sizes: serde_json::Map<String, Value> = SPLIT_NAMES
        .iter()
        .filter_map(|name| {
            let zarray = reader.documents().get(&format!("{SPLITS}/{name}/.zarray"))?;
            Some(((*name).to_string(), zarray["shape"][0].clone()))
        })
        .collect();
    Value::Object(sizes)
}

/// The row indices each split index array holds, in stored order, for every split the store
/// has (a split whose array cannot be read: why, naming its file).
#[must_use]
pub fn split_indices(reader: &StoreReader) -> Vec<(&'static str, Result<Vec<i64>, ReadError>)> {
    SPLIT_NAMES
        .iter()
        .filter_map(|name| {
            let zarray = reader.documents().get(&format!("{SPLITS}/{name}/.zarray"))?;
            let spec = ArraySpec {
                name: format!("{SPLITS}/{name}"),
                row_shape: Vec::new(),
                row_bytes: 8,
                cell: Cell::Fixed,
                source: Source::Command,
                chunk_rows: zarray["chunks"][0].as_u64().and_then(|n| usize::try_from(n).ok()).unwrap_or(INDEX_CHUNK).max(1),
                dtype: json!("<i8"),
                filter: ChunkFilter::None,
                rows: Rows::Own,
                attrs: Value::Null,
            };
            let rows = reader
                .table_bytes(&spec)
                .map(|bytes| bytes.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8]))).collect());
            Some((*name, rows))
        })
        .collect()
}

/// Write the `splits` group into a transaction: one int64 index array per split (ascending row
/// numbers) and the group's attrs. Returns the metadata documents to commit.
///
/// # Errors
/// Compression or file I/O failure.
pub fn write_splits(transaction: &Transaction, rows: &[Vec<i64>; 3], attrs: Value) -> Result<Vec<(String, Value)>, StoreError> {
    let level = transaction.settings().zstd_level;
    let mut files = vec![(format!("{SPLITS}/.zgroup"), json!({"zarr_format": 2})), (format!("{SPLITS}/.zattrs"), attrs)];
    for (name, rows) in SPLIT_NAMES.iter().zip(rows) {
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
