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
        files.extend(with_dimensions(&self.extra));
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
            // Every chunk is written, so no fill value is ever read; and xarray would mask a
            // fill value of 0.0, turning the stored zeros (NaN replacements, edge padding) to NaN.
            "fill_value": null,
            "order": "C",
            "filters": self.settings.stamp_filter.zarray_value(),
            "dimension_separator": ".",
        })
    }

    fn stamps_zattrs(&self) -> Value {
        json!({
            DIMENSIONS: ["alert", "channel", "y", "x"],
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
        let mut attrs = Map::new();
        attrs.insert(DIMENSIONS.into(), json!(["alert"]));
        attrs.extend(columns.iter().zip(&self.column_docs).map(|(c, doc)| (c.name.clone(), Value::String(doc.clone()))));
        Value::Object(attrs)
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

/// The attribute naming an array's dimensions, which xarray requires of every array it opens.
const DIMENSIONS: &str = "_ARRAY_DIMENSIONS";

/// `extra` with dimension names on every array that lacks them (stores written before they were
/// added get them at their next commit) and no fill value. A 1-D array `splits/train` gets `["train_index"]`: the
/// three splits differ in length, so one shared dimension name would stop
/// `xarray.open_zarr(store, group="splits")`.
fn with_dimensions(extra: &[(String, Value)]) -> Vec<(String, Value)> {
    let mut files = Vec::with_capacity(extra.len() + 1);
    for (key, value) in extra {
        let Some(array) = key.strip_suffix("/.zarray") else {
            if !(key.ends_with("/.zattrs") && extra.iter().any(|(k, _)| k.strip_suffix("/.zarray") == key.strip_suffix("/.zattrs"))) {
                files.push((key.clone(), value.clone()));
            }
            continue;
        };
        let mut zarray = value.clone();
        // As for stamps: every chunk is written, and xarray would mask a fill value (row 0 of
        // a split would become NaN).
        zarray["fill_value"] = Value::Null;
        files.push((key.clone(), zarray));
        let zattrs_key = format!("{array}/.zattrs");
        let mut attrs = extra.iter().find(|(k, _)| *k == zattrs_key).map_or_else(|| json!({}), |(_, v)| v.clone());
        if let Value::Object(map) = &mut attrs {
            if !map.contains_key(DIMENSIONS) {
                let name = array.rsplit('/').next().unwrap_or(array);
                let rank = value["shape"].as_array().map_or(1, Vec::len);
                let dims: Vec<String> = match rank {
                    1 => vec![format!("{name}_index")],
                    _ => (0..rank).map(|axis| format!("{name}_dim{axis}")).collect(),
                };
                map.insert(DIMENSIONS.into(), json!(dims));
            }
        }
        files.push((zattrs_key, attrs));
    }
    files
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_arrays_get_their_own_dimension_and_keep_their_attrs() {
        let extra = vec![
            ("splits/.zgroup".to_string(), json!({"zarr_format": 2})),
            ("splits/train/.zarray".to_string(), json!({"shape": [8]})),
            ("splits/train/.zattrs".to_string(), json!({"description": "train rows"})),
            ("splits/val/.zarray".to_string(), json!({"shape": [2]})),
        ];
        let files: Map<String, Value> = with_dimensions(&extra).into_iter().collect();
        assert_eq!(files.len(), 5, "{files:?}");
        assert_eq!(files["splits/train/.zattrs"], json!({"description": "train rows", DIMENSIONS: ["train_index"]}));
        assert_eq!(files["splits/val/.zattrs"], json!({DIMENSIONS: ["val_index"]}));
        assert_eq!(files["splits/.zgroup"], json!({"zarr_format": 2}));
    }

    #[test]
    fn dimension_names_already_given_are_kept() {
        let extra = vec![
            ("a/.zarray".to_string(), json!({"shape": [3, 4]})),
            ("a/.zattrs".to_string(), json!({DIMENSIONS: ["p", "q"]})),
            ("b/.zarray".to_string(), json!({"shape": [3, 4]})),
        ];
        let files: Map<String, Value> = with_dimensions(&extra).into_iter().collect();
        assert_eq!(files["a/.zattrs"][DIMENSIONS], json!(["p", "q"]));
        assert_eq!(files["b/.zattrs"][DIMENSIONS], json!(["b_dim0", "b_dim1"]));
    }
}
