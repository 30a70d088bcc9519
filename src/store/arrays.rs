//! The arrays a store holds, as declarations: each array's key, the shape of one row, its
//! dtype, chunking, filter and attrs. The commit protocol, the reader, `verify` and the pipeline
//! work over this list, so adding an array (a light-curve table, a ragged one with rows of its
//! own) is one more [`ArraySpec`] here, not edits across the store layer.

use serde_json::{json, Value};

use super::{Settings, StampFilter};

/// How an array's rows relate to the alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    /// Row i is alert i (stamps, catalog): the array's length is the store's row count.
    PerAlert,
    /// Rows of its own, any number per alert (a table of epochs); its length is its own.
    Own,
}

/// One array of the store.
#[derive(Debug, Clone)]
pub struct ArraySpec {
    /// Key of the array's folder (`stamps`, `catalog`, `lightcurves/epochs`).
    pub name: String,
    /// Shape of one row (empty for a 1-D table).
    pub row_shape: Vec<usize>,
    /// Uncompressed bytes per row.
    pub row_bytes: usize,
    /// Rows per chunk.
    pub chunk_rows: usize,
    /// The Zarr `dtype` value.
    pub dtype: Value,
    /// Filter applied before compression.
    pub filter: StampFilter,
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

    /// Uncompressed bytes of one whole chunk.
    #[must_use]
    pub fn chunk_bytes(&self) -> usize {
        self.chunk_rows * self.row_bytes
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

/// Whether `key` is a metadata document of one of `arrays` (or of the light-curve group,
/// which the metadata writes with them).
#[must_use]
pub fn is_declared_metadata(arrays: &[ArraySpec], key: &str) -> bool {
    let group = super::metadata::LIGHTCURVES;
    key.strip_prefix(group).is_some_and(|rest| rest == "/.zgroup" || rest == "/.zattrs")
        || arrays.iter().any(|a| key == a.zarray_key() || key == a.zattrs_key())
}

/// The arrays of a store with `settings` whose catalog columns are described by `column_docs`.
#[must_use]
pub fn declared(settings: &Settings, column_docs: &[String]) -> Vec<ArraySpec> {
    let mut arrays = vec![super::metadata::stamps_spec(settings), super::metadata::catalog_spec(settings, column_docs)];
    if settings.lightcurves {
        arrays.extend(super::metadata::lightcurve_specs(settings));
    }
    arrays
}
