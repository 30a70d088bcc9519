//! Reading a store back: settings and shapes from the metadata, catalog rows, stamps and candids
//! from the chunks. Used by appends (the committed state), `info`, `verify` and the tests.
//!
//! Opening a store checks what a damaged metadata file could make unbounded before anything
//! is allocated or looped over: the shape against the chunk files present, the chunk size
//! against [`MAX_CHUNK_BYTES`], and the candid index's length against the rows.

use std::path::{Path, PathBuf};

use serde_json::Value;
use thiserror::Error;

use super::{chunk_fits, Settings, CANDIDS, CATALOG, MAX_CHUNK_BYTES, STAMPS};
use crate::catalog::Layout;
use crate::decode::cutout::FRAME;

/// A failure to read a store; names the file.
#[derive(Debug, Error)]
pub enum ReadError {
    /// A file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A metadata file or chunk is not what this tool writes.
    #[error("`{path}`: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// An open store.
#[derive(Debug)]
pub struct StoreReader {
    root: PathBuf,
    rows: usize,
    settings: Settings,
    itemsize: usize,
    catalog_zarray: Value,
    root_attrs: Value,
}

impl StoreReader {
    /// Open the store at `root`: reads the arrays' `.zarray` and the root `.zattrs`, checks
    /// that they describe a store this version can read (see [`StoreReader::open_metadata`]),
    /// and that the candid index, if there is one, holds one candid per row.
    ///
    /// # Errors
    /// Missing, unreadable or damaged metadata, or a damaged candid index.
    pub fn open(root: &Path) -> Result<Self, ReadError> {
        let reader = Self::open_metadata(root)?;
        reader.check_candid_index()?;
        Ok(reader)
    }

    /// Open the store at `root` from its metadata alone: shapes that agree, chunks of a size
    /// that can be held in memory, the last chunk file of both arrays present (so the row count
    /// is backed by files, not only by a number), the dtypes and columns of this version.
    ///
    /// # Errors
    /// Missing, unreadable or damaged metadata.
    pub fn open_metadata(root: &Path) -> Result<Self, ReadError> {
        let stamps_path = root.join(STAMPS).join(".zarray");
        let catalog_path = root.join(CATALOG).join(".zarray");
        let stamps = read_json(&stamps_path)?;
        let catalog = read_json(&catalog_path)?;
        let root_attrs = read_json(&root.join(".zattrs"))?;
        let invalid = |path: &Path, reason: String| ReadError::Invalid { path: path.to_path_buf(), reason };
        let shape = dims(&stamps, "shape");
        let chunks = dims(&stamps, "chunks");
        let [rows, 3, stamp_size, side] = shape[..] else {
            return Err(invalid(&stamps_path, format!("shape {shape:?} is not (N, 3, S, S)")));
        };
        if side != stamp_size || chunks.get(1..) != Some(&[3, stamp_size, stamp_size][..]) {
            return Err(invalid(&stamps_path, format!("chunks {chunks:?} do not match shape {shape:?}")));
        }
        let chunk_rows = chunks[0];
        if chunk_rows == 0 {
            return Err(invalid(&stamps_path, "chunks of 0 rows".into()));
        }
        if stamp_size == 0 || stamp_size > FRAME {
            return Err(invalid(&stamps_path, format!("stamps of {stamp_size}x{stamp_size} pixels (this tool writes 1 to {FRAME})")));
        }
        if !chunk_fits(chunk_rows, stamp_size) {
            return Err(invalid(
                &stamps_path,
                format!("chunks of {chunk_rows} rows exceed {} MiB (the largest chunk this tool writes or reads)", MAX_CHUNK_BYTES >> 20),
            ));
        }
        if stamps["dtype"] != "<f4" {
            return Err(invalid(&stamps_path, format!("dtype {} is not \"<f4\" (little-endian float32)", stamps["dtype"])));
        }
        if dims(&catalog, "shape") != [rows] || dims(&catalog, "chunks") != [chunk_rows] {
            return Err(invalid(
                &catalog_path,
                format!(
                    "shape/chunks {:?}/{:?} disagree with stamps ({rows} rows, chunks of {chunk_rows})",
                    dims(&catalog, "shape"),
                    dims(&catalog, "chunks")
                ),
            ));
        }
        let layout = Layout::builtin();
        let expected: Vec<Value> = layout.columns().iter().map(|c| serde_json::json!([c.name, c.dtype.numpy()])).collect();
        if catalog["dtype"] != Value::Array(expected) {
            return Err(invalid(
                &catalog_path,
                "the catalog's columns differ from this version's (schemas/catalog.tsv); use the ztf2zarr version that wrote the store"
                    .into(),
            ));
        }
        check_last_chunk(root, rows, chunk_rows)?;
        let zstd_level = stamps["compressor"]["level"].as_i64().and_then(|l| i32::try_from(l).ok()).unwrap_or(super::DEFAULT_ZSTD_LEVEL);
        let keep_nan = root_attrs["ztf2zarr"]["nan_policy"] == "keep";
        let stamp_filter = super::StampFilter::from_zarray(&stamps).map_err(|reason| invalid(&stamps_path, reason))?;
        Ok(StoreReader {
            root: root.to_path_buf(),
            rows,
            settings: Settings { stamp_size, keep_nan, chunk_rows, zstd_level, stamp_filter },
            itemsize: layout.itemsize(),
            catalog_zarray: catalog,
            root_attrs,
        })
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

    /// Bytes per catalog row.
    #[must_use]
    pub fn itemsize(&self) -> usize {
        self.itemsize
    }

    /// Bytes per stamps row.
    #[must_use]
    pub fn stamp_row_bytes(&self) -> usize {
        3 * self.settings.stamp_size * self.settings.stamp_size * 4
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

    /// The catalog's `.zarray`.
    #[must_use]
    pub fn catalog_zarray(&self) -> &Value {
        &self.catalog_zarray
    }

    /// Provenance records of earlier builds.
    ///
    /// # Errors
    /// Never at present; kept fallible for stores whose attrs are damaged.
    pub fn runs(&self) -> Result<Vec<Value>, ReadError> {
        Ok(self.root_attrs["ztf2zarr"]["runs"].as_array().cloned().unwrap_or_default())
    }

    /// Metadata documents in `.zmetadata` besides the root, stamps and catalog ones (e.g. the
    /// `splits` group), to carry over unchanged.
    ///
    /// # Errors
    /// Unreadable `.zmetadata`.
    pub fn extra_metadata(&self) -> Result<Vec<(String, Value)>, ReadError> {
        let consolidated = read_json(&self.root.join(".zmetadata"))?;
        let standard = [".zgroup", ".zattrs", "stamps/.zarray", "stamps/.zattrs", "catalog/.zarray", "catalog/.zattrs"];
        Ok(consolidated["metadata"]
            .as_object()
            .map(|m| m.iter().filter(|(k, _)| !standard.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default())
    }

    /// Column descriptions from `catalog/.zattrs`, in column order (empty where missing).
    ///
    /// # Errors
    /// Unreadable `catalog/.zattrs`.
    pub fn column_docs(&self) -> Result<Vec<String>, ReadError> {
        let attrs = read_json(&self.root.join(CATALOG).join(".zattrs"))?;
        Ok(Layout::builtin().columns().iter().map(|c| attrs[&c.name].as_str().unwrap_or_default().to_string()).collect())
    }

    /// Decompressed bytes of chunk `index` of (catalog, stamps), each a whole chunk long.
    ///
    /// # Errors
    /// A chunk that is missing, does not decompress, or has the wrong length.
    pub fn chunk_bytes(&self, index: usize) -> Result<(Vec<u8>, Vec<u8>), ReadError> {
        let rows = self.settings.chunk_rows;
        let catalog = read_chunk(&self.root.join(CATALOG).join(index.to_string()), rows * self.itemsize)?;
        let stamps = self
            .settings
            .stamp_filter
            .decode(read_chunk(&self.root.join(STAMPS).join(format!("{index}.0.0.0")), rows * self.stamp_row_bytes())?);
        Ok((catalog, stamps))
    }

    /// Every catalog row's bytes, in order.
    ///
    /// # Errors
    /// A chunk that is missing or does not decompress.
    pub fn catalog_rows(&self) -> Result<Vec<Vec<u8>>, ReadError> {
        let mut rows = Vec::with_capacity(self.rows);
        for chunk in 0..self.chunks() {
            let raw = read_chunk(&self.root.join(CATALOG).join(chunk.to_string()), self.settings.chunk_rows * self.itemsize)?;
            rows.extend(raw.chunks_exact(self.itemsize).take(self.rows - rows.len()).map(<[u8]>::to_vec));
        }
        Ok(rows)
    }

    /// Every stamp row (3 × S × S floats), in order.
    ///
    /// # Errors
    /// A chunk that is missing or does not decompress.
    pub fn stamps(&self) -> Result<Vec<Vec<f32>>, ReadError> {
        let row_bytes = self.stamp_row_bytes();
        let mut rows = Vec::with_capacity(self.rows);
        for chunk in 0..self.chunks() {
            let raw = self
                .settings
                .stamp_filter
                .decode(read_chunk(&self.root.join(STAMPS).join(format!("{chunk}.0.0.0")), self.settings.chunk_rows * row_bytes)?);
            for row in raw.chunks_exact(row_bytes).take(self.rows - rows.len()) {
                rows.push(row.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect());
            }
        }
        Ok(rows)
    }

    /// The committed candids in row order: from the candid index, or read from the catalog
    /// when there is no index (a store written before it, or an index deleted to be rebuilt).
    ///
    /// # Errors
    /// A damaged index, or an unreadable catalog.
    pub fn candids(&self) -> Result<Vec<i64>, ReadError> {
        match self.indexed_candids()? {
            Some(candids) => Ok(candids),
            None => self.catalog_candids(),
        }
    }

    /// Check the candid index's length without reading it: a whole number of 8-byte candids,
    /// one per row. A missing index is fine (the next build rebuilds it from the catalog).
    ///
    /// # Errors
    /// An index of another length, or one that cannot be examined.
    pub fn check_candid_index(&self) -> Result<(), ReadError> {
        let path = self.root.join(CANDIDS);
        let bytes = match std::fs::metadata(&path) {
            Ok(meta) => meta.len(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(ReadError::Io { path, source }),
        };
        let damaged = |what: String| ReadError::Invalid {
            path: path.clone(),
            reason: format!(
                "the candid index is damaged: {what}; `ztf2zarr verify` cross-checks it against the catalog, and deleting the \
                 file lets the next build rebuild it from the catalog"
            ),
        };
        if bytes % 8 != 0 {
            return Err(damaged(format!("it holds {bytes} bytes, not a whole number of 8-byte candids")));
        }
        if bytes / 8 != self.rows as u64 {
            return Err(damaged(format!("it holds {} candids for {} rows", bytes / 8, self.rows)));
        }
        Ok(())
    }

    /// The candid index, one candid per row (None: there is no index).
    ///
    /// # Errors
    /// An index of the wrong length, or unreadable.
    pub fn indexed_candids(&self) -> Result<Option<Vec<i64>>, ReadError> {
        let path = self.root.join(CANDIDS);
        if !path.exists() {
            return Ok(None);
        }
        self.check_candid_index()?;
        let bytes = std::fs::read(&path).map_err(|source| ReadError::Io { path: path.clone(), source })?;
        Ok(Some(
            bytes.chunks_exact(8).take(self.rows).map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])).collect(),
        ))
    }

    /// The candids as the catalog holds them.
    ///
    /// # Errors
    /// A chunk that is missing or does not decompress.
    pub fn catalog_candids(&self) -> Result<Vec<i64>, ReadError> {
        let layout = Layout::builtin();
        let column = layout.index_of("candid").unwrap_or(0);
        Ok(self.catalog_rows()?.iter().filter_map(|row| layout.read_i64(row, column)).collect())
    }
}

fn dims(value: &Value, key: &str) -> Vec<usize> {
    value[key].as_array().map(|a| a.iter().filter_map(|v| v.as_u64().and_then(|n| usize::try_from(n).ok())).collect()).unwrap_or_default()
}

/// Read and parse a JSON metadata file.
///
/// # Errors
/// Unreadable or not JSON.
pub fn read_json(path: &Path) -> Result<Value, ReadError> {
    let text = std::fs::read(path).map_err(|source| ReadError::Io { path: path.to_path_buf(), source })?;
    serde_json::from_slice(&text).map_err(|e| ReadError::Invalid { path: path.to_path_buf(), reason: e.to_string() })
}

/// The row count must be backed by chunk files: the last chunk of both arrays is present.
fn check_last_chunk(root: &Path, rows: usize, chunk_rows: usize) -> Result<(), ReadError> {
    if rows == 0 {
        return Ok(());
    }
    let last = (rows - 1) / chunk_rows;
    for path in [root.join(CATALOG).join(last.to_string()), root.join(STAMPS).join(format!("{last}.0.0.0"))] {
        if !path.is_file() {
            return Err(ReadError::Invalid {
                path: root.join(STAMPS).join(".zarray"),
                reason: format!(
                    "the shape says {rows} rows in {} chunks of {chunk_rows}, but the last chunk `{}` is missing (damaged metadata or chunks)",
                    last + 1,
                    path.display()
                ),
            });
        }
    }
    Ok(())
}

fn read_chunk(path: &Path, expected: usize) -> Result<Vec<u8>, ReadError> {
    let compressed = std::fs::read(path).map_err(|source| ReadError::Io { path: path.to_path_buf(), source })?;
    // A frame that declares another size is refused before memory is reserved for it.
    if let Ok(Some(declared)) = zstd::zstd_safe::get_frame_content_size(&compressed) {
        if declared != expected as u64 {
            return Err(ReadError::Invalid {
                path: path.to_path_buf(),
                reason: format!("chunk holds {declared} bytes, expected {expected}"),
            });
        }
    }
    let raw = zstd::bulk::decompress(&compressed, expected)
        .map_err(|e| ReadError::Invalid { path: path.to_path_buf(), reason: format!("chunk does not decompress: {e}") })?;
    if raw.len() != expected {
        return Err(ReadError::Invalid {
            path: path.to_path_buf(),
            reason: format!("chunk holds {} bytes, expected {expected}", raw.len()),
        });
    }
    Ok(raw)
}
