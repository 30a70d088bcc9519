//! Reading a store back: settings and shapes from the metadata, catalog rows, stamps and candids
//! from the chunks. Used by appends (the committed state), `info`, `verify` and the tests.
//!
//! Opening a store checks what a damaged metadata file could make unbounded before anything
//! is allocated or looped over: the shape against the chunk files present, the chunk size
//! against [`MAX_CHUNK_BYTES`], and the candid index's length against the rows.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Map, Value};
use thiserror::Error;

use super::arrays::{declared, is_declared_metadata, ArraySpec, Cell};
use super::candids::{parse_runs, Run};
use super::codec::vlen;
use super::metadata::column_spec;
use super::{chunk_fits, Settings, Storage, StorageError, LEGACY_CANDIDS, MAX_CHUNK_BYTES};
use crate::table::{TableGroup, Tables};

/// A failure to read a store; names the file or object.
#[derive(Debug, Error)]
pub enum ReadError {
    /// An object could not be read.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A metadata file or chunk is missing or not what this tool writes.
    #[error("`{}`: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

/// What names a store to open for reading: a local path, or a storage already made.
pub trait IntoStorage {
    /// The storage it names.
    fn into_storage(self) -> Arc<dyn Storage>;
}

impl IntoStorage for &std::path::Path {
    fn into_storage(self) -> Arc<dyn Storage> {
        Arc::new(super::LocalStorage::new(self))
    }
}

impl IntoStorage for &PathBuf {
    fn into_storage(self) -> Arc<dyn Storage> {
        self.as_path().into_storage()
    }
}

impl IntoStorage for Arc<dyn Storage> {
    fn into_storage(self) -> Arc<dyn Storage> {
        self
    }
}

impl IntoStorage for &Arc<dyn Storage> {
    fn into_storage(self) -> Arc<dyn Storage> {
        Arc::clone(self)
    }
}

/// An open store: its committed state as its consolidated metadata (`.zmetadata`, the commit
/// point) describes it.
#[derive(Debug)]
pub struct StoreReader {
    storage: Arc<dyn Storage>,
    /// What the survey's store holds.
    tables: &'static Tables,
    rows: usize,
    settings: Settings,
    itemsize: usize,
    docs: Map<String, Value>,
    root_attrs: Value,
    /// The store's light curves are in the structured layout of earlier releases (one array
    /// per table): read them elsewhere, and refuse to append to them.
    legacy_lightcurves: bool,
}

impl StoreReader {
    /// Open the store: reads its metadata, checks that it describes a store this version can
    /// read (see [`StoreReader::open_metadata`]), and that a legacy candid index, if there is
    /// one, holds one candid per row.
    ///
    /// # Errors
    /// Missing, unreadable or damaged metadata, or a damaged candid index.
    pub fn open(store: impl IntoStorage, tables: &'static Tables) -> Result<Self, ReadError> {
        let reader = Self::open_metadata(store, tables)?;
        reader.check_candid_index()?;
        Ok(reader)
    }

    /// Open the store from its metadata alone: shapes that agree, chunks of a size that can be
    /// held in memory, the last chunk of both arrays present (so the row count is backed by
    /// objects, not only by a number), the dtypes and columns of this version. The metadata is
    /// the consolidated `.zmetadata` (written last by every commit), or, for a store without
    /// one, the separate files.
    ///
    /// # Errors
    /// Missing, unreadable or damaged metadata.
    pub fn open_metadata(store: impl IntoStorage, tables: &'static Tables) -> Result<Self, ReadError> {
        let storage = store.into_storage();
        let docs = committed_documents(storage.as_ref())?;
        let doc = |key: &str| -> Result<Value, ReadError> {
            docs.get(key).cloned().ok_or_else(|| invalid(storage.as_ref(), key, "missing (not in .zmetadata)".into()))
        };
        let stamps = doc("stamps/.zarray")?;
        let catalog = doc("catalog/.zarray")?;
        let root_attrs = doc(".zattrs")?;
        check_survey(&root_attrs, tables).map_err(|reason| invalid(storage.as_ref(), ".zattrs", reason))?;
        let stamps_key = "stamps/.zarray";
        let shape = dims(&stamps, "shape");
        let chunks = dims(&stamps, "chunks");
        let bad = |key: &str, reason: String| invalid(storage.as_ref(), key, reason);
        let [rows, 3, stamp_size, side] = shape[..] else {
            return Err(bad(stamps_key, format!("shape {shape:?} is not (N, 3, S, S)")));
        };
        if side != stamp_size || chunks.get(1..) != Some(&[3, stamp_size, stamp_size][..]) {
            return Err(bad(stamps_key, format!("chunks {chunks:?} do not match shape {shape:?}")));
        }
        let chunk_rows = chunks[0];
        if chunk_rows == 0 {
            return Err(bad(stamps_key, "chunks of 0 rows".into()));
        }
        let frame = tables.stamps.frame;
        if stamp_size == 0 || stamp_size > frame {
            return Err(bad(stamps_key, format!("stamps of {stamp_size}x{stamp_size} pixels (this tool writes 1 to {frame})")));
        }
        if !chunk_fits(chunk_rows, stamp_size, tables.catalog.itemsize()) {
            return Err(bad(
                stamps_key,
                format!("chunks of {chunk_rows} rows exceed {} MiB (the largest chunk this tool writes or reads)", MAX_CHUNK_BYTES >> 20),
            ));
        }
        if stamps["dtype"] != "<f4" {
            return Err(bad(stamps_key, format!("dtype {} is not \"<f4\" (little-endian float32)", stamps["dtype"])));
        }
        if dims(&catalog, "shape") != [rows] || dims(&catalog, "chunks") != [chunk_rows] {
            return Err(bad(
                "catalog/.zarray",
                format!(
                    "shape/chunks {:?}/{:?} disagree with stamps ({rows} rows, chunks of {chunk_rows})",
                    dims(&catalog, "shape"),
                    dims(&catalog, "chunks")
                ),
            ));
        }
        let layout = tables.catalog;
        let expected: Vec<Value> = layout.columns().iter().map(|c| serde_json::json!([c.name, c.dtype.numpy()])).collect();
        if catalog["dtype"] != Value::Array(expected) {
            return Err(bad(
                "catalog/.zarray",
                "the catalog's columns differ from this version's (schemas/catalog.tsv); use the ztf2zarr version that wrote the store"
                    .into(),
            ));
        }
        let zstd_level = stamps["compressor"]["level"].as_i64().and_then(|l| i32::try_from(l).ok()).unwrap_or(super::DEFAULT_ZSTD_LEVEL);
        let keep_nan = root_attrs["ztf2zarr"]["nan_policy"] == "keep";
        // Stores written before the masked-pixel policy was recorded kept the value as it is.
        let keep_masked = root_attrs["ztf2zarr"]["masked_policy"] != super::metadata::MASKED_AS_MISSING;
        let stamp_filter = super::StampFilter::from_zarray(&stamps).map_err(|reason| bad(stamps_key, reason))?;
        let legacy_lightcurves = docs.contains_key(&format!("{}/.zarray", super::metadata::EPOCHS));
        let variance = docs.contains_key(&format!("{}/.zarray", super::metadata::VARIANCE));
        let psf = docs.contains_key(&format!("{}/.zarray", super::metadata::PSF_PIXELS));
        let settings =
            Settings { stamp_size, keep_nan, keep_masked, chunk_rows, zstd_level, stamp_filter, lightcurves: false, variance, psf };
        let lightcurves = check_lightcurves(&docs, &settings, tables).map_err(|(key, reason)| bad(&key, reason))?;
        let reader = StoreReader {
            storage,
            tables,
            rows,
            settings: Settings { lightcurves, ..settings },
            itemsize: layout.itemsize(),
            docs,
            root_attrs,
            legacy_lightcurves,
        };
        reader.check_last_chunk()?;
        reader.check_history_rows()?;
        Ok(reader)
    }

    /// Where the store lives.
    #[must_use]
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// The store's arrays, as declared for its settings.
    #[must_use]
    pub fn arrays(&self) -> Vec<ArraySpec> {
        declared(&self.settings, self.tables, &self.column_docs())
    }

    /// Rows of an array: the store's rows for a per-alert array, its own length for one with
    /// rows of its own (0 for an array the store does not have yet: it starts empty).
    #[must_use]
    pub fn array_rows(&self, spec: &ArraySpec) -> usize {
        match spec.rows {
            super::arrays::Rows::PerAlert => self.rows,
            super::arrays::Rows::Own => self.docs.get(&spec.zarray_key()).map_or(0, |z| dims(z, "shape").first().copied().unwrap_or(0)),
        }
    }

    /// The committed metadata documents (key → JSON), as `.zmetadata` holds them.
    #[must_use]
    pub fn documents(&self) -> &Map<String, Value> {
        &self.docs
    }

    /// The candid index's runs (None: a store written before them).
    ///
    /// # Errors
    /// A damaged `ztf2zarr.candid_index`.
    pub fn candid_runs(&self) -> Result<Option<Vec<Run>>, ReadError> {
        parse_runs(&self.root_attrs["ztf2zarr"]["candid_index"], &self.storage.object_location(".zattrs"))
    }

    /// Every column of `lightcurves/alerts` has one row per alert (checked after the stamps'
    /// and catalog's shapes, which name the store's row count), and the columns of each table
    /// have one length.
    fn check_history_rows(&self) -> Result<(), ReadError> {
        if !self.settings.lightcurves {
            return Ok(());
        }
        for table in &self.tables.lightcurves {
            let mut length = None;
            for index in 0..table.layout.columns().len() {
                let key = column_spec(table, index, &self.settings).zarray_key();
                let shape = self.docs.get(&key).map(|z| dims(z, "shape")).unwrap_or_default();
                let expected = match table.rows {
                    super::arrays::Rows::PerAlert => Some(self.rows),
                    super::arrays::Rows::Own => length,
                };
                match expected {
                    Some(rows) if shape != [rows] => {
                        let what = if length.is_some() { "the table's other columns" } else { "the catalog" };
                        return Err(invalid(self.storage.as_ref(), &key, format!("{shape:?} rows, but {what} {rows}")));
                    }
                    _ => length = shape.first().copied(),
                }
            }
        }
        Ok(())
    }

    /// Whether the store's light curves are in the structured layout of earlier releases.
    #[must_use]
    pub fn has_legacy_lightcurves(&self) -> bool {
        self.legacy_lightcurves
    }

    /// The row count must be backed by chunk objects: the last chunk of every array is present.
    fn check_last_chunk(&self) -> Result<(), ReadError> {
        for spec in self.arrays() {
            let rows = self.array_rows(&spec);
            let Some(last) = rows.checked_sub(1).map(|r| r / spec.chunk_rows) else { continue };
            let key = spec.chunk_key(last);
            if self.storage.size(&key)?.is_none() {
                return Err(invalid(
                    self.storage.as_ref(),
                    &spec.zarray_key(),
                    format!(
                        "the shape says {rows} rows in {} chunks of {}, but the last chunk `{}` is missing (damaged metadata or chunks)",
                        last + 1,
                        spec.chunk_rows,
                        self.storage.object_location(&key)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Rows in the store.
    #[must_use]
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Side of the stamps.
    #[must_use]
    pub fn stamp_size(&self) -> usize {
        self.settings.stamp_size
    }

    /// Layout settings.
    #[must_use]
    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// What the survey's store holds.
    #[must_use]
    pub fn tables(&self) -> &'static Tables {
        self.tables
    }

    /// Bytes per catalog row.
    #[must_use]
    pub fn itemsize(&self) -> usize {
        self.itemsize
    }

    /// Number of chunks holding the committed rows.
    #[must_use]
    pub fn chunks(&self) -> usize {
        self.rows.div_ceil(self.settings.chunk_rows)
    }

    /// The root `.zattrs`.
    #[must_use]
    pub fn root_attrs(&self) -> &Value {
        &self.root_attrs
    }

    /// Provenance records of earlier builds.
    #[must_use]
    pub fn runs(&self) -> Vec<Value> {
        self.root_attrs["ztf2zarr"]["runs"].as_array().cloned().unwrap_or_default()
    }

    /// Metadata documents besides the root's and the declared arrays' (e.g. the `splits`
    /// group), to carry over unchanged.
    #[must_use]
    pub fn extra_metadata(&self) -> Vec<(String, Value)> {
        let arrays = self.arrays();
        self.docs
            .iter()
            .filter(|(key, _)| !matches!(key.as_str(), ".zgroup" | ".zattrs") && !is_declared_metadata(&arrays, key))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Column descriptions from `catalog/.zattrs`, in column order (empty where missing).
    #[must_use]
    pub fn column_docs(&self) -> Vec<String> {
        let attrs = self.docs.get("catalog/.zattrs").cloned().unwrap_or(Value::Null);
        self.tables.catalog.columns().iter().map(|c| attrs[&c.name].as_str().unwrap_or_default().to_string()).collect()
    }

    /// Decompressed bytes of chunk `index` of `spec`, a whole chunk long, its filter undone.
    ///
    /// # Errors
    /// A chunk that is missing, does not decompress, or has the wrong length.
    pub fn chunk(&self, spec: &ArraySpec, index: usize) -> Result<Vec<u8>, ReadError> {
        decode_chunk(self.storage.as_ref(), spec, index, &self.stored_chunk(spec, index)?)
    }

    /// Chunk `index` of `spec` as stored (compressed).
    ///
    /// # Errors
    /// A chunk that is missing.
    pub fn stored_chunk(&self, spec: &ArraySpec, index: usize) -> Result<Vec<u8>, ReadError> {
        let key = spec.chunk_key(index);
        self.storage.get(&key)?.ok_or_else(|| invalid(self.storage.as_ref(), &key, "the chunk is missing".into()))
    }

    /// The first `kept` rows of chunk `index` of `spec`, as a build holds them while filling it:
    /// fixed-size cells, or length-prefixed strings (see [`vlen`]).
    ///
    /// # Errors
    /// A chunk that is missing, does not decompress, or (strings) does not parse.
    pub fn chunk_rows(&self, spec: &ArraySpec, index: usize, kept: usize) -> Result<Vec<u8>, ReadError> {
        let mut rows = chunk_rows_of(self.storage.as_ref(), spec, index, &self.stored_chunk(spec, index)?, kept)?;
        // A light-curve column's chunk is a megabyte, mostly padding in its last chunk: hold
        // only the kept rows.
        rows.shrink_to_fit();
        Ok(rows)
    }

    /// Every row of a light-curve table, packed as the build packs them (its columns read and
    /// put back side by side): what `verify` and `info` check.
    ///
    /// # Errors
    /// A chunk that is missing, does not decompress or does not parse, or columns of different lengths.
    pub fn table_rows(&self, table: &TableGroup) -> Result<Vec<u8>, ReadError> {
        let layout = table.layout;
        let first = column_spec(table, 0, &self.settings);
        let rows = self.array_rows(&first);
        let mut packed = layout.missing_row().repeat(rows);
        for (index, column) in layout.columns().iter().enumerate() {
            let spec = column_spec(table, index, &self.settings);
            if self.array_rows(&spec) != rows {
                return Err(invalid(self.storage.as_ref(), &spec.zarray_key(), format!("not {rows} rows like {}", first.name)));
            }
            for chunk in 0..spec.chunks_for(rows) {
                let first_row = chunk * spec.chunk_rows;
                let kept = (rows - first_row).min(spec.chunk_rows);
                let raw = self.chunk(&spec, chunk)?;
                let targets = packed[first_row * layout.itemsize()..].chunks_exact_mut(layout.itemsize());
                match spec.cell {
                    Cell::Fixed => {
                        for (target, cell) in targets.zip(raw.chunks_exact(spec.row_bytes).take(kept)) {
                            target[column.offset..column.offset + cell.len()].copy_from_slice(cell);
                        }
                    }
                    Cell::Utf8 { .. } => {
                        let items =
                            vlen::items(&raw, spec.chunk_rows).map_err(|r| invalid(self.storage.as_ref(), &spec.chunk_key(chunk), r))?;
                        for (target, item) in targets.zip(items.into_iter().take(kept)) {
                            let _ = layout.pack(target, index, crate::table::Scalar::Str(String::from_utf8_lossy(item).as_bytes()));
                        }
                    }
                }
            }
        }
        Ok(packed)
    }

    /// Every row of `spec` (an array the store has), concatenated, in order.
    ///
    /// # Errors
    /// A chunk that is missing or does not decompress.
    pub fn table_bytes(&self, spec: &ArraySpec) -> Result<Vec<u8>, ReadError> {
        let rows = self.array_rows(spec);
        let mut bytes = Vec::with_capacity(rows.saturating_mul(spec.row_bytes));
        for chunk in 0..spec.chunks_for(rows) {
            let raw = self.chunk(spec, chunk)?;
            let kept = (rows - chunk * spec.chunk_rows).min(spec.chunk_rows);
            bytes.extend_from_slice(&raw[..kept * spec.row_bytes]);
        }
        Ok(bytes)
    }

    /// Every catalog row's bytes, in order.
    ///
    /// # Errors
    /// A chunk that is missing or does not decompress.
    pub fn catalog_rows(&self) -> Result<Vec<Vec<u8>>, ReadError> {
        self.catalog_rows_from(0)
    }

    /// Catalog rows from row `first` to the end, reading only the chunks that hold them.
    ///
    /// # Errors
    /// A chunk that is missing or does not decompress.
    pub fn catalog_rows_from(&self, first: usize) -> Result<Vec<Vec<u8>>, ReadError> {
        let spec = super::metadata::catalog_spec(&self.settings, self.tables, &[]);
        let chunk_rows = self.settings.chunk_rows;
        let mut rows = Vec::with_capacity(self.rows.saturating_sub(first));
        for chunk in first / chunk_rows..self.chunks() {
            let start = chunk * chunk_rows;
            let raw = self.chunk(&spec, chunk)?;
            for (offset, row) in raw.chunks_exact(self.itemsize).enumerate().take(self.rows - start) {
                if start + offset >= first {
                    rows.push(row.to_vec());
                }
            }
        }
        Ok(rows)
    }

    /// Every stamp row (3 × S × S floats), in order.
    ///
    /// # Errors
    /// A chunk that is missing or does not decompress.
    pub fn stamps(&self) -> Result<Vec<Vec<f32>>, ReadError> {
        let spec = super::metadata::stamps_spec(&self.settings, self.tables);
        let mut rows = Vec::with_capacity(self.rows);
        for chunk in 0..self.chunks() {
            let raw = self.chunk(&spec, chunk)?;
            for row in raw.chunks_exact(spec.row_bytes).take(self.rows - rows.len()) {
                rows.push(row.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect());
            }
        }
        Ok(rows)
    }

    /// Check the candid index's lengths without reading it: each run (or a legacy index) a
    /// whole number of 8-byte candids, as many as the rows it covers. A missing run or legacy
    /// index is not an error here: the next build rebuilds it from the catalog.
    ///
    /// # Errors
    /// An index object of another length, or one that cannot be examined.
    pub fn check_candid_index(&self) -> Result<(), ReadError> {
        let runs = match self.candid_runs()? {
            Some(runs) => runs.into_iter().map(|run| (run.key, run.rows)).collect(),
            None => vec![(LEGACY_CANDIDS.to_string(), self.rows)],
        };
        for (key, rows) in runs {
            let Some(bytes) = self.storage.size(&key)? else { continue };
            let damaged = |what: String| {
                invalid(
                    self.storage.as_ref(),
                    &key,
                    format!(
                        "the candid index is damaged: {what}; `ztf2zarr verify` cross-checks it against the catalog, and deleting \
                         the file lets the next build rebuild it from the catalog"
                    ),
                )
            };
            if bytes % 8 != 0 {
                return Err(damaged(format!("it holds {bytes} bytes, not a whole number of 8-byte candids")));
            }
            if bytes / 8 != rows as u64 {
                return Err(damaged(format!("it holds {} candids for {rows} rows", bytes / 8)));
            }
        }
        Ok(())
    }

    /// A legacy candid index, one candid per row (None: there is none).
    ///
    /// # Errors
    /// An index of the wrong length, or unreadable.
    pub fn legacy_candids(&self) -> Result<Option<Vec<i64>>, ReadError> {
        self.check_candid_index()?;
        let Some(bytes) = self.storage.get(LEGACY_CANDIDS)? else { return Ok(None) };
        Ok(Some(
            bytes.chunks_exact(8).take(self.rows).map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])).collect(),
        ))
    }

    /// The candids as the catalog holds them, in row order.
    ///
    /// # Errors
    /// A chunk that is missing or does not decompress.
    pub fn catalog_candids(&self) -> Result<Vec<i64>, ReadError> {
        self.catalog_candids_of(0, self.rows)
    }

    /// The candids of `count` catalog rows from row `first` on, in row order, reading only the
    /// chunks that hold them.
    ///
    /// # Errors
    /// A chunk that is missing or does not decompress.
    pub fn catalog_candids_of(&self, first: usize, count: usize) -> Result<Vec<i64>, ReadError> {
        let layout = self.tables.catalog;
        let column = layout.index_of("candid").unwrap_or(0);
        Ok(self.catalog_rows_from(first)?.iter().take(count).filter_map(|row| layout.read_i64(row, column)).collect())
    }
}

/// Whether the store has light curves (in the columns this version writes), and if so that
/// their arrays are the ones this version writes: every table's columns, their dtypes, filters
/// and chunking.
fn check_lightcurves(docs: &Map<String, Value>, settings: &Settings, tables: &Tables) -> Result<bool, (String, String)> {
    if !docs.contains_key(&format!("{}/.zgroup", super::metadata::EPOCHS)) {
        return Ok(false);
    }
    for table in &tables.lightcurves {
        for index in 0..table.layout.columns().len() {
            let spec = column_spec(table, index, settings);
            let key = spec.zarray_key();
            let Some(zarray) = docs.get(&key) else {
                return Err((key, "missing (not in .zmetadata): the light-curve columns differ from this version's".into()));
            };
            if zarray["dtype"] != spec.dtype || zarray["filters"] != spec.filter.zarray_value() {
                return Err((
                    key,
                    "the light-curve columns differ from this version's; use the ztf2zarr version that wrote the store".into(),
                ));
            }
            if dims(zarray, "chunks") != [spec.chunk_rows] || dims(zarray, "shape").len() != 1 {
                let (shape, chunks) = (dims(zarray, "shape"), dims(zarray, "chunks"));
                return Err((key, format!("shape/chunks {shape:?}/{chunks:?} are not 1-D chunks of {} rows", spec.chunk_rows)));
            }
        }
    }
    for name in [super::metadata::HISTORY_EPOCHS, super::metadata::HISTORY_FORCED] {
        let key = format!("{name}/.zarray");
        match docs.get(&key) {
            Some(zarray) if zarray["dtype"] == "<i8" && dims(zarray, "shape").len() == 1 => {}
            Some(_) => return Err((key, "not a 1-D int64 array".into())),
            None => return Err((key, "missing (not in .zmetadata)".into())),
        }
    }
    Ok(true)
}

/// The survey whose alerts the committed store holds, as its root attrs name it (a store that
/// names none holds ZTF's): what a command needs to know before it opens the store with that
/// survey's tables.
///
/// # Errors
/// The metadata cannot be read, or names no survey as a string.
pub fn survey_named(storage: &dyn Storage) -> Result<String, ReadError> {
    let docs = committed_documents(storage)?;
    let attrs = docs.get(".zattrs").ok_or_else(|| invalid(storage, ".zattrs", "missing (not in .zmetadata)".into()))?;
    match attrs.get(super::metadata::SURVEY) {
        None => Ok(super::metadata::SURVEY_UNNAMED.to_string()),
        Some(Value::String(name)) => Ok(name.clone()),
        Some(other) => Err(invalid(storage, ".zattrs", format!("`{}` is {other}, not a survey's name", super::metadata::SURVEY))),
    }
}

/// The store holds alerts of the survey whose `tables` the caller gave (a store that names no
/// survey holds ZTF's).
fn check_survey(root_attrs: &Value, tables: &Tables) -> Result<(), String> {
    let survey = root_attrs.get(super::metadata::SURVEY).map_or(Some(super::metadata::SURVEY_UNNAMED), Value::as_str);
    match survey {
        Some(survey) if survey == tables.survey => Ok(()),
        Some(survey) => Err(format!("the store holds {survey} alerts, and this command reads {} stores", tables.survey)),
        None => Err(format!("`{}` is {}, not a survey's name", super::metadata::SURVEY, root_attrs[super::metadata::SURVEY])),
    }
}

pub(super) fn dims(value: &Value, key: &str) -> Vec<usize> {
    value[key].as_array().map(|a| a.iter().filter_map(|v| v.as_u64().and_then(|n| usize::try_from(n).ok())).collect()).unwrap_or_default()
}

fn invalid(storage: &dyn Storage, key: &str, reason: String) -> ReadError {
    ReadError::Invalid { path: storage.object_location(key).into(), reason }
}

/// Read and parse one JSON document of a store (None: there is no such object).
///
/// # Errors
/// Unreadable or not JSON.
pub fn read_doc(storage: &dyn Storage, key: &str) -> Result<Option<Value>, ReadError> {
    let Some(bytes) = storage.get(key)? else { return Ok(None) };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| invalid(storage, key, e.to_string()))
}

/// The metadata documents of the committed state: `.zmetadata`'s, or for a store without one
/// the separate files of the root and the two arrays.
pub(super) fn committed_documents(storage: &dyn Storage) -> Result<Map<String, Value>, ReadError> {
    if let Some(consolidated) = read_doc(storage, ".zmetadata")? {
        return match consolidated["metadata"].as_object() {
            Some(docs) => Ok(docs.clone()),
            None => Err(invalid(storage, ".zmetadata", "no `metadata` object".into())),
        };
    }
    let mut docs = Map::new();
    for key in [".zgroup", ".zattrs", "stamps/.zarray", "stamps/.zattrs", "catalog/.zarray", "catalog/.zattrs"] {
        if let Some(doc) = read_doc(storage, key)? {
            docs.insert(key.to_string(), doc);
        }
    }
    Ok(docs)
}

/// Chunk `index` of `spec` from its stored bytes: a whole chunk long, its filter undone.
///
/// # Errors
/// A chunk that does not decompress, or has the wrong length.
fn decode_chunk(storage: &dyn Storage, spec: &ArraySpec, index: usize, compressed: &[u8]) -> Result<Vec<u8>, ReadError> {
    let key = spec.chunk_key(index);
    let size = chunk_size(storage, spec, &key, compressed)?;
    Ok(spec.filter.decode(decompress_chunk(storage, &key, compressed, size)?))
}

/// Whether chunk `index` of `spec`, as stored, has the size its array gives a chunk as far as
/// its frame tells without inflating it ([`chunk_size`]); the rest is checked where it is
/// decoded.
///
/// # Errors
/// A frame that declares another size, or (strings) none.
pub fn check_stored_chunk(storage: &dyn Storage, spec: &ArraySpec, index: usize, compressed: &[u8]) -> Result<(), ReadError> {
    chunk_size(storage, spec, &spec.chunk_key(index), compressed).map(drop)
}

/// The bytes chunk `key` of `spec` inflates to, from its zstd frame's header, before any memory
/// is reserved for it: a whole chunk for fixed-size cells (a frame that declares another size is
/// refused; one that declares none is checked once inflated); for strings, whose chunk has no
/// fixed size, the size the frame must declare, at most what the chunk's strings can take.
///
/// # Errors
/// A size the array's chunk cannot have, or (strings) no declared size.
fn chunk_size(storage: &dyn Storage, spec: &ArraySpec, key: &str, compressed: &[u8]) -> Result<usize, ReadError> {
    let declared = zstd::zstd_safe::get_frame_content_size(compressed).ok().flatten();
    let limit = spec.chunk_bytes();
    match (spec.exact_chunk_bytes(), declared) {
        (Some(expected), Some(declared)) if declared != expected as u64 => {
            Err(invalid(storage, key, format!("chunk holds {declared} bytes, expected {expected}")))
        }
        (Some(expected), _) => Ok(expected),
        (None, Some(declared)) if declared <= limit as u64 => Ok(declared as usize),
        (None, Some(declared)) => {
            Err(invalid(storage, key, format!("chunk holds {declared} bytes, more than the {limit} its strings can take")))
        }
        (None, None) => Err(invalid(storage, key, "chunk's zstd frame does not declare its size".into())),
    }
}

/// The first `kept` rows of chunk `index` of `spec` from its stored bytes, as
/// [`StoreReader::chunk_rows`] gives them.
///
/// # Errors
/// A chunk that does not decompress, or (strings) does not parse.
pub fn chunk_rows_of(storage: &dyn Storage, spec: &ArraySpec, index: usize, compressed: &[u8], kept: usize) -> Result<Vec<u8>, ReadError> {
    let mut raw = decode_chunk(storage, spec, index, compressed)?;
    match spec.cell {
        Cell::Fixed => {
            // Its room stays a whole chunk: the rows that continue the chunk fit without moving it.
            raw.truncate(kept * spec.row_bytes);
            Ok(raw)
        }
        Cell::Utf8 { .. } => vlen::kept(&raw, spec.chunk_rows, kept).map_err(|reason| invalid(storage, &spec.chunk_key(index), reason)),
    }
}

/// The `expected` bytes of the zstd chunk `key` (filter not undone; its frame's declared size
/// checked first, by [`chunk_size`]).
///
/// # Errors
/// A frame that does not decompress, or to another size.
fn decompress_chunk(storage: &dyn Storage, key: &str, compressed: &[u8], expected: usize) -> Result<Vec<u8>, ReadError> {
    let raw = zstd::bulk::decompress(compressed, expected).map_err(|e| invalid(storage, key, format!("chunk does not decompress: {e}")))?;
    if raw.len() != expected {
        return Err(invalid(storage, key, format!("chunk holds {} bytes, expected {expected}", raw.len())));
    }
    Ok(raw)
}

/// Read and parse a JSON file of a local store.
///
/// # Errors
/// Unreadable or not JSON.
pub fn read_json(path: &std::path::Path) -> Result<Value, ReadError> {
    let text = std::fs::read(path).map_err(|e| StorageError::new("read", path.display().to_string(), e))?;
    serde_json::from_slice(&text).map_err(|e| ReadError::Invalid { path: path.to_path_buf(), reason: e.to_string() })
}
