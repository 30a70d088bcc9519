//! The arrays a store holds, as declarations: each array's key, the shape of one row, its
//! dtype, chunking, filter and attrs. The commit protocol, the reader, `verify` and the pipeline
//! work over this list, so adding an array (a light-curve table, a ragged one with rows of its
//! own) is one more [`ArraySpec`] here, not edits across the store layer.

use serde_json::{json, Value};

use super::codec::ChunkFilter;
use super::Settings;
pub use crate::table::Rows;
use crate::table::{TableRole, Tables};

/// What one row of an array is in its chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    /// `row_bytes` little-endian bytes.
    Fixed,
    /// A variable-length UTF-8 string (`vlen-utf8`) of at most `max_bytes` bytes.
    Utf8 { max_bytes: usize },
}

/// Where a column array's cells come from: bytes `offset .. offset + width` of each packed
/// row of a light-curve table (a `<U` cell is UTF-32, written as UTF-8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnOf {
    /// The table's group (`lightcurves/epochs`).
    pub table: &'static str,
    /// Which rows the table takes.
    pub role: TableRole,
    /// Bytes of one packed row of the table.
    pub row_bytes: usize,
    /// The cell's offset in the packed row.
    pub offset: usize,
    /// The cell's width in the packed row.
    pub width: usize,
}

/// Where an array's rows come from in a build: declared with the array, so that the build
/// routes rows by the declaration rather than by the array's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Each alert's packed catalog row.
    CatalogRow,
    /// Each alert's stamps.
    Stamps,
    /// Each alert's variance planes.
    Variance,
    /// The pixels of each alert's PSF images, one after the other (rows of its own).
    PsfPixels,
    /// Where each alert's PSF images are in the pixels (start, height, width per cutout).
    PsfIndex,
    /// The rows of a light-curve table (epochs or forced) that each alert carried.
    Carried(TableRole),
    /// A column of a light-curve table.
    Column(ColumnOf),
    /// None: written whole by a command of its own (the split index arrays), read back here.
    Command,
}

/// One array of the store.
#[derive(Debug, Clone)]
pub struct ArraySpec {
    /// Key of the array's folder (`stamps`, `catalog`, `lightcurves/epochs`).
    pub name: String,
    /// Shape of one row (empty for a 1-D table).
    pub row_shape: Vec<usize>,
    /// Uncompressed bytes per row (for a string column: at most this many UTF-8 bytes).
    pub row_bytes: usize,
    /// What a row is in the chunks.
    pub cell: Cell,
    /// Where its rows come from in a build.
    pub source: Source,
    /// Rows per chunk.
    pub chunk_rows: usize,
    /// The Zarr `dtype` value.
    pub dtype: Value,
    /// Filter applied before compression.
    pub filter: ChunkFilter,
    /// How its rows relate to the alerts.
    pub rows: Rows,
    /// The array's `.zattrs`.
    pub attrs: Value,
}

impl ArraySpec {
    /// Key of chunk `index`: the row index followed by `.0` for every further axis.
    #[must_use]
    pub fn chunk_key(&self, index: usize) -> String {
        let mut key = format!("{}/{index}", self.name);
        for _ in &self.row_shape {
            key.push_str(".0");
        }
        key
    }

    /// Uncompressed bytes of one whole chunk (for a string column: at most).
    #[must_use]
    pub fn chunk_bytes(&self) -> usize {
        match self.cell {
            Cell::Fixed => self.chunk_rows * self.row_bytes,
            Cell::Utf8 { max_bytes } => 4 + self.chunk_rows * (4 + max_bytes),
        }
    }

    /// Uncompressed bytes of one whole chunk if every chunk has the same (None: strings).
    #[must_use]
    pub fn exact_chunk_bytes(&self) -> Option<usize> {
        (self.cell == Cell::Fixed).then(|| self.chunk_bytes())
    }

    /// Chunks holding `rows` rows.
    #[must_use]
    pub fn chunks_for(&self, rows: usize) -> usize {
        rows.div_ceil(self.chunk_rows)
    }

    /// The `.zarray` document for an array of `rows` rows.
    #[must_use]
    pub fn zarray(&self, rows: usize, zstd_level: i32) -> Value {
        let mut shape = vec![rows];
        shape.extend(&self.row_shape);
        let mut chunks = vec![self.chunk_rows];
        chunks.extend(&self.row_shape);
        json!({
            "zarr_format": 2,
            "shape": shape,
            "chunks": chunks,
            "dtype": self.dtype,
            "compressor": {"id": "zstd", "level": zstd_level},
            // Every chunk is written, so no fill value is ever read; and xarray would mask a
            // fill value of 0.0, turning stored zeros (NaN replacements, edge padding) to NaN.
            "fill_value": null,
            "order": "C",
            "filters": self.filter.zarray_value(),
            "dimension_separator": ".",
        })
    }

    /// Key of the array's `.zarray`.
    #[must_use]
    pub fn zarray_key(&self) -> String {
        format!("{}/.zarray", self.name)
    }

    /// Key of the array's `.zattrs`.
    #[must_use]
    pub fn zattrs_key(&self) -> String {
        format!("{}/.zattrs", self.name)
    }
}

/// Whether `key` is a metadata document of one of `arrays` (or of the light-curve groups,
/// which the metadata writes with them).
#[must_use]
pub fn is_declared_metadata(arrays: &[ArraySpec], key: &str) -> bool {
    let group_doc = |group: &str| key.strip_prefix(group).is_some_and(|rest| rest == "/.zgroup" || rest == "/.zattrs");
    group_doc(super::metadata::LIGHTCURVES)
        || group_doc(super::metadata::PSF)
        || arrays.iter().filter_map(|a| if let Source::Column(c) = a.source { Some(c) } else { None }).any(|c| group_doc(c.table))
        || arrays.iter().any(|a| key == a.zarray_key() || key == a.zattrs_key())
}

/// The arrays of a store of `tables` with `settings` whose catalog columns are described by
/// `column_docs`.
#[must_use]
pub fn declared(settings: &Settings, tables: &Tables, column_docs: &[String]) -> Vec<ArraySpec> {
    let mut arrays = vec![super::metadata::stamps_spec(settings, tables), super::metadata::catalog_spec(settings, tables, column_docs)];
    if settings.variance {
        arrays.push(super::metadata::variance_spec(settings, tables));
    }
    if settings.lightcurves {
        arrays.extend(super::metadata::lightcurve_specs(settings, tables));
    }
    if settings.psf {
        arrays.extend(super::metadata::psf_specs(settings, tables));
    }
    arrays
}
