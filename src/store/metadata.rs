//! The JSON documents of a store: `.zgroup`, `.zattrs`, each array's `.zarray` and `.zattrs`, and
//! the consolidated `.zmetadata` that gathers them. The layout follows the qso.zarr example store
//! (root attrs name each dataset; `catalog/.zattrs` describes each column).

use serde_json::{json, Map, Value};

use super::arrays::{declared, ArraySpec, Cell, ColumnOf, Rows};
use super::codec::ChunkFilter;
use super::{Settings, SPLITS};
use crate::survey::ztf::cutout::{FLAG_EDGE_GUESSED, FLAG_EDGE_PLACED, FLAG_HAD_NAN, FLAG_MASKED};
use crate::table::{Dtype, Layout};

/// Name of the stamps array.
pub const STAMPS: &str = "stamps";
/// Name of the catalog array.
pub const CATALOG: &str = "catalog";
/// Name of the light-curve group.
pub const LIGHTCURVES: &str = "lightcurves";
/// The light-curve tables, each a group of one 1-D array per column: detections and upper
/// limits, forced photometry, the object index, and where each alert's own history is.
pub const EPOCHS: &str = "lightcurves/epochs";
/// Forced photometry.
pub const FORCED: &str = "lightcurves/forced";
/// The object index.
pub const OBJECTS: &str = "lightcurves/objects";
/// Where each alert's history is (row i = catalog row i).
pub const HISTORY: &str = "lightcurves/alerts";
/// The rows of `lightcurves/epochs` each alert carried, alert after alert.
pub const HISTORY_EPOCHS: &str = "lightcurves/history_epochs";
/// The rows of `lightcurves/forced` each alert carried.
pub const HISTORY_FORCED: &str = "lightcurves/history_forced";
/// The candid index of stores written before sorted runs: every row's candid in row order.
pub const LEGACY_CANDIDS: &str = ".candids";
/// The rejects log of stores written before one log per build.
pub const LEGACY_REJECTS: &str = "rejects.jsonl";
/// Folder of the rejects logs, one per build that rejected something (`rejects/000007.jsonl`).
pub const REJECTS: &str = "rejects";

/// `masked_policy` of a store whose ZTF masked pixels are stored as missing (the NaN policy's fill).
pub const MASKED_AS_MISSING: &str = "missing";
/// `masked_policy` of a store that keeps ZTF's masked-pixel value (`--keep-masked`).
pub const MASKED_KEPT: &str = "keep";

/// Everything the metadata of a store depends on.
#[derive(Debug, Clone)]
pub struct StoreMetadata {
    /// Rows (alerts) in every per-alert array.
    pub rows: usize,
    /// Rows of each array that has rows of its own, by name (missing: none yet).
    pub own_rows: Vec<(String, usize)>,
    /// Layout settings.
    pub settings: Settings,
    /// One description per catalog column, in column order.
    pub column_docs: Vec<String>,
    /// Provenance: one record per build, oldest first.
    pub runs: Vec<Value>,
    /// Where the labels came from and their code table (None: unlabeled store).
    pub labels: Option<Value>,
    /// The candid index: its sorted runs (`store/candids.rs`).
    pub candid_index: Value,
    /// Documents of other groups and arrays (e.g. `splits/.zgroup`), written as they are.
    pub extra: Vec<(String, Value)>,
    /// The light-curve key index (`store/lckeys.rs`); Null without light curves.
    pub lightcurve_keys: Value,
    /// Light-curve rows per kind: detections, upper limits, forced.
    pub lightcurve_counts: [u64; 3],
}

impl StoreMetadata {
    /// Every metadata file as (key relative to the store, JSON), in the order they are written:
    /// the declared arrays', the extra groups' and arrays', then the root's.
    #[must_use]
    pub fn files(&self) -> Vec<(String, Value)> {
        let mut files = Vec::new();
        for spec in declared(&self.settings, &self.column_docs) {
            let rows = match spec.rows {
                Rows::PerAlert => self.rows,
                Rows::Own => self.own_rows.iter().find(|(name, _)| *name == spec.name).map_or(0, |(_, rows)| *rows),
            };
            files.push((spec.zarray_key(), spec.zarray(rows, self.settings.zstd_level)));
            files.push((spec.zattrs_key(), spec.attrs.clone()));
        }
        if self.settings.lightcurves {
            files.push((format!("{LIGHTCURVES}/.zgroup"), json!({"zarr_format": 2})));
            files.push((format!("{LIGHTCURVES}/.zattrs"), self.lightcurves_zattrs()));
            for table in lightcurve_tables() {
                files.push((format!("{}/.zgroup", table.name), json!({"zarr_format": 2})));
                files.push((format!("{}/.zattrs", table.name), table.zattrs()));
            }
        }
        files.extend(with_dimensions(&self.extra));
        files.push((".zgroup".into(), json!({"zarr_format": 2})));
        files.push((".zattrs".into(), self.root_zattrs()));
        files
    }

    fn lightcurves_zattrs(&self) -> Value {
        let [detections, upper_limits, forced] = self.lightcurve_counts;
        json!({
            "description": "Light curves of the stored alerts' objects: every distinct epoch that any stored alert carried, once",
            "epochs": "One row per distinct version of a detection (from prv_candidates and the alert's own candidate; kind = detection, keyed by candid) or upper limit (prv_candidates without a candid; kind = upper_limit, keyed by objectId, jd, fid): a key's row holds one value set some packet carried, a different value set is another row, an identical one adds nothing; alert_jd, alert_candid name the alert that first carried it",
            "forced": "One row per distinct version of a forced-photometry epoch (fp_hists, schema 4.x), keyed by objectId, jd, fid, pid, under the same rule: a revised epoch is a new row, no row is ever rewritten",
            "layout": "Each table (epochs, forced, objects, alerts) is a group of 1-D arrays, one per column, all of the group's length; strings are variable-length UTF-8 (vlen-utf8); the group's columns attribute lists them in table order",
            "objects": "The object index: rows [start, start+count) of table (epochs or forced) belong to objectId; an object may have several ranges (one per group of rows added together, more after appends); each build's ranges are sorted by objectId",
            "alerts": "Row i is catalog row i: its history is entries history_start .. history_start+history_count-1 of history_epochs, which are rows of epochs (forced: forced_start, forced_count, history_forced): exactly the epochs its own packet carried, nothing from its future",
            "ztf2zarr": {
                "rows": {"detections": detections, "upper_limits": upper_limits, "forced": forced},
            },
        })
    }

    fn root_zattrs(&self) -> Value {
        let s = self.settings.stamp_size;
        let missing: Map<String, Value> =
            Layout::builtin().columns().iter().map(|c| (c.name.clone(), Value::String(c.missing.clone()))).collect();
        let mut attrs = json!({
            CATALOG: "One row per alert (unique candid): every ZTF candidate field, objectId, stamp_flags and provenance. Row i describes stamps[i].",
            STAMPS: format!("Cutout stamps, float32 (N, 3, {s}, {s}): channel 0 science, 1 template, 2 difference; {}; {}; {}.", crop_text(s), nan_text(self.settings.keep_nan), masked_text(&self.settings)),
            "ztf2zarr": {
                "version": env!("CARGO_PKG_VERSION"),
                "stamp_size": s,
                "nan_policy": nan_policy(self.settings.keep_nan),
                "masked_policy": masked_policy(self.settings.keep_masked),
                "stamp_flags": {
                    FLAG_EDGE_PLACED.to_string(): "edge cutout (smaller than 63x63, clipped at a CCD edge) placed in the 63x63 frame; pixels beyond the edge hold the fill value",
                    FLAG_HAD_NAN.to_string(): "a stored stamp pixel was NaN in the cutout",
                    FLAG_EDGE_GUESSED.to_string(): "edge placement assumed the high edge because xpos/ypos was missing",
                    FLAG_MASKED.to_string(): "a stored stamp pixel held ZTF's masked-pixel value (-3.4028235e38, any value <= -1e30) in the cutout; masked_policy says what is stored there",
                },
                "missing_values": missing,
                "labels": self.labels,
                "candid_index": self.candid_index,
                "runs": self.runs,
            },
        });
        if self.settings.lightcurves {
            attrs[LIGHTCURVES] = json!("Light curves: lightcurves/epochs (detections, upper limits), lightcurves/forced (forced photometry), the object index lightcurves/objects and each alert's own history (lightcurves/alerts, history_epochs, history_forced); see lightcurves/.zattrs");
            attrs["ztf2zarr"]["lightcurve_keys"] = self.lightcurve_keys.clone();
        }
        if self.extra.iter().any(|(key, _)| key == "splits/.zgroup") {
            attrs[SPLITS] = json!("Training splits: 1-D int64 arrays of catalog/stamps row indices (train, val, test), grouped by objectId; see splits/.zattrs");
        }
        attrs
    }
}

/// The `stamps` array: (N, 3, S, S) float32.
#[must_use]
pub fn stamps_spec(settings: &Settings) -> ArraySpec {
    let s = settings.stamp_size;
    ArraySpec {
        name: STAMPS.into(),
        row_shape: vec![3, s, s],
        row_bytes: 3 * s * s * 4,
        cell: Cell::Fixed,
        column_of: None,
        chunk_rows: settings.chunk_rows,
        dtype: json!("<f4"),
        filter: settings.stamp_filter.into(),
        rows: Rows::PerAlert,
        attrs: json!({
            DIMENSIONS: ["alert", "channel", "y", "x"],
            "channels": ["science", "template", "difference"],
            "stamp_size": s,
            "crop": crop_text(s),
            "nan_policy": nan_policy(settings.keep_nan),
            "masked_policy": masked_policy(settings.keep_masked),
            "masked_pixels": masked_text(settings),
            "units": "DN",
        }),
    }
}

/// The `catalog` array: one structured row per alert, its columns from `schemas/catalog.tsv`.
#[must_use]
pub fn catalog_spec(settings: &Settings, column_docs: &[String]) -> ArraySpec {
    let layout = Layout::builtin();
    let fields: Vec<Value> = layout.columns().iter().map(|c| json!([c.name, c.dtype.numpy()])).collect();
    let mut attrs = Map::new();
    attrs.insert(DIMENSIONS.into(), json!(["alert"]));
    attrs.extend(layout.columns().iter().zip(column_docs).map(|(c, doc)| (c.name.clone(), Value::String(doc.clone()))));
    ArraySpec {
        name: CATALOG.into(),
        row_shape: Vec::new(),
        row_bytes: layout.itemsize(),
        cell: Cell::Fixed,
        column_of: None,
        chunk_rows: settings.chunk_rows,
        dtype: Value::Array(fields),
        filter: ChunkFilter::None,
        rows: Rows::PerAlert,
        attrs: Value::Object(attrs),
    }
}

/// One light-curve table: a group of column arrays sharing one dimension.
#[derive(Debug, Clone, Copy)]
pub struct LightCurveTable {
    /// The group's key (`lightcurves/epochs`).
    pub name: &'static str,
    /// Its columns.
    pub layout: &'static Layout,
    /// Its rows: its own, or one per alert.
    pub rows: Rows,
    /// The dimension name its arrays share.
    pub dimension: &'static str,
    description: &'static str,
}

impl LightCurveTable {
    fn zattrs(&self) -> Value {
        let columns: Vec<&str> = self.layout.columns().iter().map(|c| c.name.as_str()).collect();
        json!({"description": self.description, "columns": columns})
    }

    /// The array of column `index`.
    #[must_use]
    pub fn column_spec(&self, index: usize, settings: &Settings) -> ArraySpec {
        let column = &self.layout.columns()[index];
        let (dtype, cell, filter, chunk_rows) = match column.dtype {
            Dtype::Unicode(chars) => {
                (json!("|O"), Cell::Utf8 { max_bytes: 4 * chars }, ChunkFilter::VlenUtf8, settings.chunk_rows * STRING_CHUNK_FACTOR)
            }
            numeric => (
                json!(numeric.numpy()),
                Cell::Fixed,
                ChunkFilter::Shuffle(numeric.size()),
                settings.chunk_rows * NUMERIC_CHUNK_BYTES_PER_ROW / numeric.size(),
            ),
        };
        ArraySpec {
            name: format!("{}/{}", self.name, column.name),
            row_shape: Vec::new(),
            row_bytes: match cell {
                Cell::Fixed => column.dtype.size(),
                Cell::Utf8 { max_bytes } => max_bytes,
            },
            cell,
            column_of: Some(ColumnOf { table: self.name, offset: column.offset, width: column.dtype.size() }),
            chunk_rows,
            dtype,
            filter,
            rows: self.rows,
            attrs: json!({
                DIMENSIONS: [self.dimension],
                "description": column.description,
                "missing": column.missing,
            }),
        }
    }
}

/// A numeric column's chunk holds `chunk_rows × 1024` bytes (1 MB at the default 1,000 rows):
/// a column is read on its own, so its chunk is sized as an object worth a request, whatever
/// the catalog's chunking.
const NUMERIC_CHUNK_BYTES_PER_ROW: usize = 1024;
/// A string column's chunk holds `chunk_rows × 64` strings (64,000 at the default).
const STRING_CHUNK_FACTOR: usize = 64;

/// The light-curve tables, in the order their arrays are declared.
#[must_use]
pub fn lightcurve_tables() -> [LightCurveTable; 4] {
    [
        LightCurveTable {
            name: EPOCHS,
            layout: Layout::epochs(),
            rows: Rows::Own,
            dimension: "epoch",
            description: "Detections and upper limits: one row per distinct version of each epoch (see lightcurves/.zattrs)",
        },
        LightCurveTable {
            name: FORCED,
            layout: Layout::forced(),
            rows: Rows::Own,
            dimension: "forced_epoch",
            description: "Forced photometry (fp_hists, schema 4.x): one row per distinct version of each epoch",
        },
        LightCurveTable {
            name: OBJECTS,
            layout: crate::ingest::lightcurves::objects_layout(),
            rows: Rows::Own,
            dimension: "object_range",
            description: "The object index: rows start .. start+count-1 of table belong to objectId",
        },
        LightCurveTable {
            name: HISTORY,
            layout: crate::ingest::lightcurves::alerts_layout(),
            rows: Rows::PerAlert,
            dimension: "alert",
            description: "Row i is catalog row i: where its own history is in history_epochs and history_forced",
        },
    ]
}

/// The light-curve table whose group is `name` (`lightcurves/epochs`), if it is one.
#[must_use]
pub fn lightcurve_table(name: &str) -> Option<LightCurveTable> {
    lightcurve_tables().into_iter().find(|table| table.name == name)
}

/// The light-curve arrays of a store with light curves: every column of every table, then the
/// two arrays of what each alert carried.
#[must_use]
pub fn lightcurve_specs(settings: &Settings) -> Vec<ArraySpec> {
    let mut specs: Vec<ArraySpec> =
        lightcurve_tables().iter().flat_map(|table| (0..table.layout.columns().len()).map(|i| table.column_spec(i, settings))).collect();
    specs.push(carried(HISTORY_EPOCHS, EPOCHS, "history_epoch", settings));
    specs.push(carried(HISTORY_FORCED, FORCED, "history_forced_epoch", settings));
    specs
}

/// A 1-D int64 array of rows of `table` that alerts carried: alert i's are entries
/// `start .. start+count` (its `lightcurves/alerts` row says where).
fn carried(name: &str, table: &str, dimension: &str, settings: &Settings) -> ArraySpec {
    ArraySpec {
        name: name.into(),
        row_shape: Vec::new(),
        row_bytes: 8,
        cell: Cell::Fixed,
        column_of: None,
        chunk_rows: settings.chunk_rows * 8,
        dtype: json!("<i8"),
        filter: ChunkFilter::None,
        rows: Rows::Own,
        attrs: json!({
            DIMENSIONS: [dimension],
            "description": format!("Rows of {table} that each alert carried in its packet, alert after alert (catalog row order); lightcurves/alerts says where each alert's entries start and how many there are: exactly its packet's history, nothing from its future"),
        }),
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

fn masked_policy(keep_masked: bool) -> &'static str {
    if keep_masked {
        MASKED_KEPT
    } else {
        MASKED_AS_MISSING
    }
}

/// What a store does with ZTF's masked pixels, in words.
fn masked_text(settings: &Settings) -> &'static str {
    match (settings.keep_masked, settings.keep_nan) {
        (true, _) => "ZTF's masked pixels (-3.4028235e38) kept as they are",
        (false, false) => "ZTF's masked pixels (-3.4028235e38) stored as 0, like NaN pixels",
        (false, true) => "ZTF's masked pixels (-3.4028235e38) stored as NaN, like NaN pixels",
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
