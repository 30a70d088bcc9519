//! The JSON documents of a store: `.zgroup`, `.zattrs`, each array's `.zarray` and `.zattrs`, and
//! the consolidated `.zmetadata` that gathers them. The layout follows the qso.zarr example store
//! (root attrs name each dataset; `catalog/.zattrs` describes each column).

use serde_json::{json, Map, Value};

use super::arrays::{declared, ArraySpec, Cell, ColumnOf, Source};
use super::codec::ChunkFilter;
use super::{Settings, SPLITS};
use crate::table::{Dtype, Rows, TableGroup, TableRole, Tables};

/// Name of the stamps array.
pub const STAMPS: &str = "stamps";
/// The variance planes of the stamps' pixels, for surveys whose cutouts carry them.
pub const VARIANCE: &str = "variance";
/// The group of the PSF images (`build --psf`), stored ragged at their own size.
pub const PSF: &str = "psf";
/// Every PSF pixel of every alert, float32, image after image.
pub const PSF_PIXELS: &str = "psf/pixels";
/// Where alert i's three PSF images are in `psf/pixels`: (N, 3, 3) int64 of start, height, width.
pub const PSF_INDEX: &str = "psf/index";
/// Name of the catalog array.
pub const CATALOG: &str = "catalog";
pub use crate::table::tables::{EPOCHS, FORCED, HISTORY, HISTORY_EPOCHS, HISTORY_FORCED, LIGHTCURVES, OBJECTS};
/// The root attribute naming the survey whose alerts the store holds (`ztf`); a store written
/// before it was recorded holds ZTF alerts.
pub const SURVEY: &str = "survey";
/// The survey of a store that does not name one.
pub const SURVEY_UNNAMED: &str = "ztf";
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
    /// What the survey's store holds.
    pub tables: &'static Tables,
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
        for spec in declared(&self.settings, self.tables, &self.column_docs) {
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
            for table in &self.tables.lightcurves {
                files.push((format!("{}/.zgroup", table.name), json!({"zarr_format": 2})));
                files.push((format!("{}/.zattrs", table.name), group_zattrs(table)));
            }
        }
        if self.settings.psf {
            files.push((format!("{PSF}/.zgroup"), json!({"zarr_format": 2})));
            files.push((format!("{PSF}/.zattrs"), json!({"description": PSF_DESCRIPTION, "units": PSF_UNITS})));
        }
        files.extend(with_dimensions(&self.extra));
        files.push((".zgroup".into(), json!({"zarr_format": 2})));
        files.push((".zattrs".into(), self.root_zattrs()));
        files
    }

    fn lightcurves_zattrs(&self) -> Value {
        let [detections, upper_limits, forced] = self.lightcurve_counts;
        let mut attrs: Map<String, Value> =
            self.tables.lightcurves_description.iter().map(|(key, text)| ((*key).to_string(), json!(text))).collect();
        attrs.insert("ztf2zarr".into(), json!({"rows": {"detections": detections, "upper_limits": upper_limits, "forced": forced}}));
        Value::Object(attrs)
    }

    fn root_zattrs(&self) -> Value {
        let s = self.settings.stamp_size;
        let missing: Map<String, Value> =
            self.tables.catalog.columns().iter().map(|c| (c.name.clone(), Value::String(c.missing.clone()))).collect();
        let flags: Map<String, Value> = self.tables.stamps.flags.iter().map(|(bit, text)| (bit.to_string(), json!(text))).collect();
        let mut attrs = json!({
            CATALOG: self.tables.catalog_description,
            STAMPS: format!("Cutout stamps, float32 (N, 3, {s}, {s}): channel 0 science, 1 template, 2 difference; {}; {}; {}.", (self.tables.stamps.crop)(s), nan_text(self.settings.keep_nan), masked_text(&self.settings, self.tables)),
            SURVEY: self.tables.survey,
            "ztf2zarr": {
                "version": env!("CARGO_PKG_VERSION"),
                "stamp_size": s,
                "nan_policy": nan_policy(self.settings.keep_nan),
                "masked_policy": masked_policy(self.settings.keep_masked),
                "stamp_flags": flags,
                "missing_values": missing,
                "labels": self.labels,
                "candid_index": self.candid_index,
                "runs": self.runs,
            },
        });
        if self.settings.lightcurves {
            attrs[LIGHTCURVES] = json!(self.tables.lightcurves_summary);
            attrs["ztf2zarr"]["lightcurve_keys"] = self.lightcurve_keys.clone();
        }
        if self.settings.psf {
            attrs[PSF] = json!(PSF_DESCRIPTION);
        }
        if self.extra.iter().any(|(key, _)| key == "splits/.zgroup") {
            attrs[SPLITS] = json!("Training splits: 1-D int64 arrays of catalog/stamps row indices (train, val, test), grouped by objectId; see splits/.zattrs");
        }
        attrs
    }
}

/// The `stamps` array: (N, 3, S, S) float32.
#[must_use]
pub fn stamps_spec(settings: &Settings, tables: &Tables) -> ArraySpec {
    let s = settings.stamp_size;
    ArraySpec {
        name: STAMPS.into(),
        row_shape: vec![3, s, s],
        row_bytes: 3 * s * s * 4,
        cell: Cell::Fixed,
        source: Source::Stamps,
        chunk_rows: settings.chunk_rows,
        dtype: json!("<f4"),
        filter: settings.stamp_filter.into(),
        rows: Rows::PerAlert,
        attrs: json!({
            DIMENSIONS: ["alert", "channel", "y", "x"],
            "channels": ["science", "template", "difference"],
            "stamp_size": s,
            "crop": (tables.stamps.crop)(s),
            "nan_policy": nan_policy(settings.keep_nan),
            "masked_policy": masked_policy(settings.keep_masked),
            "masked_pixels": masked_text(settings, tables),
            "units": tables.stamps.units,
        }),
    }
}

/// The `variance` array: (N, 3, S, S) float32, the variance of each stamp pixel, cut from the
/// cutouts' variance planes on the stamps' window.
#[must_use]
pub fn variance_spec(settings: &Settings, tables: &Tables) -> ArraySpec {
    let mut spec = stamps_spec(settings, tables);
    spec.name = VARIANCE.into();
    spec.source = Source::Variance;
    spec.attrs["description"] =
        json!("Variance of each pixel of stamps[i] (the cutouts' variance planes, on the same window; missing pixels hold the fill value)");
    spec.attrs["units"] = json!(format!("({})^2", tables.stamps.units));
    spec
}

/// What the `psf` group is, for its `.zattrs` and the root attrs.
const PSF_DESCRIPTION: &str =
    "PSF images of the cutouts (their PSFIMAGE HDU), each at its own size: psf/index[i, k] = [start, height, width] \
     of alert i's cutout k (0 science, 1 template, 2 difference) in psf/pixels, whose pixels start .. start + height*width are the \
     image row-major; start -1 (height 0, width 0): that cutout is null or has no PSFIMAGE";
/// What a PSF pixel is.
const PSF_UNITS: &str = "none: the PSF model at the source as the cutout gives it, a kernel normalised to sum 1 (within 2e-6 on real alerts, with small negative wings), float64 in the FITS, stored as float32";

/// Values per chunk of `psf/pixels`: 4 MiB of float32, whatever the catalog's chunking. A
/// reader takes one alert's three images (a few thousand values) out of one chunk, so a chunk
/// is sized as an object worth a request, like a light-curve column's, and holds the PSFs of
/// some 200 alerts (41² + 77² + 41² values on the real ones) without the last, partial chunk
/// an append rewrites growing large.
pub const PSF_CHUNK_VALUES: usize = 1 << 20;

/// The `psf` group's arrays: the pixels, rows of their own, and the index, one row per alert.
#[must_use]
pub fn psf_specs(settings: &Settings, tables: &Tables) -> [ArraySpec; 2] {
    let pixels = ArraySpec {
        name: PSF_PIXELS.into(),
        row_shape: Vec::new(),
        row_bytes: 4,
        cell: Cell::Fixed,
        source: Source::PsfPixels,
        chunk_rows: PSF_CHUNK_VALUES,
        dtype: json!("<f4"),
        filter: ChunkFilter::Shuffle(4),
        rows: Rows::Own,
        attrs: json!({
            DIMENSIONS: ["psf_pixel"],
            "description": "Every pixel of every PSF image, row-major image after image (alert after alert in catalog row order; science, template, difference); psf/index says where each image is",
            "units": PSF_UNITS,
            "survey": tables.survey,
        }),
    };
    let index = ArraySpec {
        name: PSF_INDEX.into(),
        row_shape: vec![3, 3],
        row_bytes: 3 * 3 * 8,
        cell: Cell::Fixed,
        source: Source::PsfIndex,
        chunk_rows: settings.chunk_rows,
        dtype: json!("<i8"),
        filter: ChunkFilter::Shuffle(8),
        rows: Rows::PerAlert,
        attrs: json!({
            DIMENSIONS: ["alert", "channel", "psf_field"],
            "channels": ["science", "template", "difference"],
            "fields": ["start", "height", "width"],
            "description": "Row i = catalog row i: for each cutout, [start, height, width] of its PSF image in psf/pixels (pixels start .. start + height*width, row-major); [-1, 0, 0]: the cutout is null or has no PSFIMAGE",
        }),
    };
    [pixels, index]
}

/// The `catalog` array: one structured row per alert, its columns as the survey declares them.
#[must_use]
pub fn catalog_spec(settings: &Settings, tables: &Tables, column_docs: &[String]) -> ArraySpec {
    let layout = tables.catalog;
    let fields: Vec<Value> = layout.columns().iter().map(|c| json!([c.name, c.dtype.numpy()])).collect();
    let mut attrs = Map::new();
    attrs.insert(DIMENSIONS.into(), json!(["alert"]));
    attrs.extend(layout.columns().iter().zip(column_docs).map(|(c, doc)| (c.name.clone(), Value::String(doc.clone()))));
    ArraySpec {
        name: CATALOG.into(),
        row_shape: Vec::new(),
        row_bytes: layout.itemsize(),
        cell: Cell::Fixed,
        source: Source::CatalogRow,
        chunk_rows: settings.chunk_rows,
        dtype: Value::Array(fields),
        filter: ChunkFilter::None,
        rows: Rows::PerAlert,
        attrs: Value::Object(attrs),
    }
}

/// A light-curve table's group `.zattrs`.
fn group_zattrs(table: &TableGroup) -> Value {
    let columns: Vec<&str> = table.layout.columns().iter().map(|c| c.name.as_str()).collect();
    json!({"description": table.description, "columns": columns})
}

/// The array of column `index` of a light-curve table.
#[must_use]
pub fn column_spec(table: &TableGroup, index: usize, settings: &Settings) -> ArraySpec {
    let column = &table.layout.columns()[index];
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
        name: format!("{}/{}", table.name, column.name),
        row_shape: Vec::new(),
        row_bytes: match cell {
            Cell::Fixed => column.dtype.size(),
            Cell::Utf8 { max_bytes } => max_bytes,
        },
        cell,
        source: Source::Column(ColumnOf {
            table: table.name,
            role: table.role,
            row_bytes: table.layout.itemsize(),
            offset: column.offset,
            width: column.dtype.size(),
        }),
        chunk_rows,
        dtype,
        filter,
        rows: table.rows,
        attrs: json!({
            DIMENSIONS: [table.dimension],
            "description": column.description,
            "missing": column.missing,
        }),
    }
}

/// A numeric column's chunk holds `chunk_rows × 1024` bytes (1 MB at the default 1,000 rows):
/// a column is read on its own, so its chunk is sized as an object worth a request, whatever
/// the catalog's chunking.
const NUMERIC_CHUNK_BYTES_PER_ROW: usize = 1024;
/// A string column's chunk holds `chunk_rows × 64` strings (64,000 at the default).
const STRING_CHUNK_FACTOR: usize = 64;

/// The light-curve arrays of a store with light curves: every column of every table, then the
/// two arrays of what each alert carried.
#[must_use]
pub fn lightcurve_specs(settings: &Settings, tables: &Tables) -> Vec<ArraySpec> {
    let mut specs: Vec<ArraySpec> =
        tables.lightcurves.iter().flat_map(|table| (0..table.layout.columns().len()).map(|i| column_spec(table, i, settings))).collect();
    specs.push(carried(HISTORY_EPOCHS, EPOCHS, TableRole::Epochs, "history_epoch", settings));
    specs.push(carried(HISTORY_FORCED, FORCED, TableRole::Forced, "history_forced_epoch", settings));
    specs
}

/// A 1-D int64 array of rows of `table` that alerts carried: alert i's are entries
/// `start .. start+count` (its `lightcurves/alerts` row says where).
fn carried(name: &str, table: &str, role: TableRole, dimension: &str, settings: &Settings) -> ArraySpec {
    ArraySpec {
        name: name.into(),
        row_shape: Vec::new(),
        row_bytes: 8,
        cell: Cell::Fixed,
        source: Source::Carried(role),
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

/// What a store does with the survey's masked pixels, in words.
fn masked_text(settings: &Settings, tables: &Tables) -> &'static str {
    let [kept, as_zero, as_nan] = tables.stamps.masked;
    match (settings.keep_masked, settings.keep_nan) {
        (true, _) => kept,
        (false, false) => as_zero,
        (false, true) => as_nan,
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
