//! The JSON documents of a store: `.zgroup`, `.zattrs`, each array's `.zarray` and `.zattrs`, and
//! the consolidated `.zmetadata` that gathers them. The layout follows the qso.zarr example store
//! (root attrs name each dataset; `catalog/.zattrs` describes each column).

use serde_json::{json, Map, Value};

use super::{Settings, SPLITS};
use crate::catalog::Layout;
use crate::decode::cutout::{FLAG_EDGE_GUESSED, FLAG_EDGE_PLACED, FLAG_HAD_NAN, FLAG_MASKED};

/// Name of the stamps array.
pub const STAMPS: &str = "stamps";
/// Name of the catalog array.
pub const CATALOG: &str = "catalog";
/// The candid of every row, in row order, as little-endian i64: loads in one read when appending.
pub const CANDIDS: &str = ".candids";
/// One JSON line per rejected input, over all builds.
pub const REJECTS: &str = "rejects.jsonl";

/// Everything the metadata of a store depends on.
#[derive(Debug, Clone)]
pub struct StoreMetadata {
    /// Rows (alerts) in both arrays.
    pub rows: usize,
    /// Layout settings.
    pub settings: Settings,
    /// One description per catalog column, in column order.
    pub column_docs: Vec<String>,
    /// Provenance: one record per build, oldest first.
    pub runs: Vec<Value>,
    /// Where the labels came from and their code table (None: unlabeled store).
    pub labels: Option<Value>,
    /// Documents of other groups and arrays (e.g. `splits/.zgroup`), written as they are.
    pub extra: Vec<(String, Value)>,
}

impl StoreMetadata {
    /// Every metadata file as (key relative to the store, JSON), in the order they are written.
    #[must_use]
    pub fn files(&self) -> Vec<(String, Value)> {
        let mut files = vec![
            (format!("{STAMPS}/.zarray"), self.stamps_zarray()),
            (format!("{STAMPS}/.zattrs"), self.stamps_zattrs()),
            (format!("{CATALOG}/.zarray"), self.catalog_zarray()),
            (format!("{CATALOG}/.zattrs"), self.catalog_zattrs()),
        ];
        files.extend(self.extra.iter().cloned());
        files.push((".zgroup".into(), json!({"zarr_format": 2})));
        files.push((".zattrs".into(), self.root_zattrs()));
        files
    }

    fn compressor(&self) -> Value {
        json!({"id": "zstd", "level": self.settings.zstd_level})
    }

    fn stamps_zarray(&self) -> Value {
        let s = self.settings.stamp_size;
        json!({
            "zarr_format": 2,
            "shape": [self.rows, 3, s, s],
            "chunks": [self.settings.chunk_rows, 3, s, s],
            "dtype": "<f4",
            "compressor": self.compressor(),
            "fill_value": 0.0,
            "order": "C",
            "filters": null,
            "dimension_separator": ".",
        })
    }

    fn stamps_zattrs(&self) -> Value {
        json!({
            "_ARRAY_DIMENSIONS": ["alert", "channel", "y", "x"],
            "channels": ["science", "template", "difference"],
            "stamp_size": self.settings.stamp_size,
            "crop": crop_text(self.settings.stamp_size),
            "nan_policy": nan_policy(self.settings.keep_nan),
            "units": "DN",
        })
    }

    fn catalog_zarray(&self) -> Value {
        let fields: Vec<Value> = Layout::builtin().columns().iter().map(|c| json!([c.name, c.dtype.numpy()])).collect();
        json!({
            "zarr_format": 2,
            "shape": [self.rows],
            "chunks": [self.settings.chunk_rows],
            "dtype": fields,
            "compressor": self.compressor(),
            "fill_value": null,
            "order": "C",
            "filters": null,
            "dimension_separator": ".",
        })
    }

    fn catalog_zattrs(&self) -> Value {
        let columns = Layout::builtin().columns();
        Value::Object(columns.iter().zip(&self.column_docs).map(|(c, doc)| (c.name.clone(), Value::String(doc.clone()))).collect())
    }

    fn root_zattrs(&self) -> Value {
        let s = self.settings.stamp_size;
        let missing: Map<String, Value> =
            Layout::builtin().columns().iter().map(|c| (c.name.clone(), Value::String(c.missing.clone()))).collect();
        let mut attrs = json!({
            CATALOG: "One row per alert (unique candid): every ZTF candidate field, objectId, stamp_flags and provenance. Row i describes stamps[i].",
            STAMPS: format!("Cutout stamps, float32 (N, 3, {s}, {s}): channel 0 science, 1 template, 2 difference; {}; {}.", crop_text(s), nan_text(self.settings.keep_nan)),
            "ztf2zarr": {
                "version": env!("CARGO_PKG_VERSION"),
                "stamp_size": s,
                "nan_policy": nan_policy(self.settings.keep_nan),
                "stamp_flags": {
                    FLAG_EDGE_PLACED.to_string(): "edge cutout (smaller than 63x63, clipped at a CCD edge) placed in the 63x63 frame; pixels beyond the edge hold the fill value",
                    FLAG_HAD_NAN.to_string(): "a stored stamp pixel was NaN in the cutout",
                    FLAG_EDGE_GUESSED.to_string(): "edge placement assumed the high edge because xpos/ypos was missing",
                    FLAG_MASKED.to_string(): "a stored stamp pixel holds ZTF's masked-pixel value (-3.4028235e38, any value <= -1e30), kept as it is",
                },
                "missing_values": missing,
                "labels": self.labels,
                "runs": self.runs,
            },
        });
        if self.extra.iter().any(|(key, _)| key == "splits/.zgroup") {
            attrs[SPLITS] = json!("Training splits: 1-D int64 arrays of catalog/stamps row indices (train, val, test), grouped by objectId; see splits/.zattrs");
        }
        attrs
    }
}

fn crop_text(size: usize) -> String {
    let start = (63 - size) / 2;
    format!("centre [{start}:{end}, {start}:{end}] of the 63x63 cutout", end = start + size)
}

fn nan_policy(keep_nan: bool) -> &'static str {
    if keep_nan {
        "keep"
    } else {
        "zero"
    }
}

fn nan_text(keep_nan: bool) -> &'static str {
    if keep_nan {
        "NaN pixels kept"
    } else {
        "NaN pixels replaced by 0"
    }
}

/// The consolidated `.zmetadata` document for `files`.
#[must_use]
pub fn consolidated(files: &[(String, Value)]) -> Value {
    let metadata: Map<String, Value> = files.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    json!({"metadata": metadata, "zarr_consolidated_format": 1})
}
