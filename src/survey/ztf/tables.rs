//! ZTF's store: the columns of its catalog and light-curve tables (declared in `schemas/catalog.tsv`,
//! `epochs.tsv` and `forced.tsv`, compiled into the binary so a store never depends on files
//! beside it), the object index and per-alert history tables, and what its stamps are. The store
//! layer writes what this declares ([`TABLES`]) without knowing it is ZTF.

use std::sync::{LazyLock, OnceLock};

use super::cutout::{FLAG_EDGE_GUESSED, FLAG_EDGE_PLACED, FLAG_HAD_NAN, FLAG_MASKED, FRAME, STAMP_FLAGS};
use crate::table::tables::{EPOCHS, FORCED, HISTORY, OBJECTS};
use crate::table::{KeyColumns, Layout, Rows, StampsDeclared, TableGroup, TableRole, Tables, TimeScale};

const CATALOG_TSV: &str = include_str!("../../../schemas/catalog.tsv");
const EPOCHS_TSV: &str = include_str!("../../../schemas/epochs.tsv");
const FORCED_TSV: &str = include_str!("../../../schemas/forced.tsv");

/// Columns of `lightcurves/objects`, the object index.
const OBJECTS_TSV: &str = "objectId\t<U12\t\tderived\tZTF object identifier
table\t<U6\t\tderived\tThe table the range is in: epochs (lightcurves/epochs) or forced (lightcurves/forced)
start\t<i8\t-1\tderived\tFirst row of the range
count\t<i8\t0\tderived\tRows in the range: rows start .. start+count-1 of the table belong to the object
";

/// Columns of `lightcurves/alerts`: row i is catalog row i.
const ALERTS_TSV: &str = "history_start\t<i8\t-1\tderived\tFirst entry of this alert's history in lightcurves/history_epochs
history_count\t<i4\t0\tderived\tDistinct epochs (detections and upper limits) this alert carried, itself included: entries history_start .. history_start+history_count-1
forced_start\t<i8\t-1\tderived\tFirst entry of this alert's forced photometry in lightcurves/history_forced
forced_count\t<i4\t0\tderived\tDistinct forced-photometry epochs this alert carried (0 before schema 4.x)
";

/// How the build summary and `info` name alerts whose `schemavsn` is empty: ZTF's packets carry
/// it from schema 3.x on. `info` says `(none: before 3.x)`; the build, which knows the packets'
/// writer schema, `(none: before 3.x; writer schema 1.8)`.
pub const NO_SCHEMAVSN: &str = "none: before 3.x";

/// The stamp side of a new store unless `--stamp-size` says otherwise.
pub const DEFAULT_STAMP_SIZE: usize = 21;

/// The catalog's layout (`schemas/catalog.tsv`).
pub fn catalog() -> &'static Layout {
    static LAYOUT: OnceLock<Layout> = OnceLock::new();
    Layout::parsed_once(&LAYOUT, CATALOG_TSV, "schemas/catalog.tsv")
}

/// The layout of `lightcurves/epochs` (detections and upper limits).
pub fn epochs() -> &'static Layout {
    static LAYOUT: OnceLock<Layout> = OnceLock::new();
    Layout::parsed_once(&LAYOUT, EPOCHS_TSV, "schemas/epochs.tsv")
}

/// The layout of `lightcurves/forced` (forced photometry).
pub fn forced() -> &'static Layout {
    static LAYOUT: OnceLock<Layout> = OnceLock::new();
    Layout::parsed_once(&LAYOUT, FORCED_TSV, "schemas/forced.tsv")
}

/// The layout of `lightcurves/objects`.
pub fn objects_layout() -> &'static Layout {
    static LAYOUT: OnceLock<Layout> = OnceLock::new();
    Layout::parsed_once(&LAYOUT, OBJECTS_TSV, "the objects table")
}

/// The layout of `lightcurves/alerts`.
pub fn alerts_layout() -> &'static Layout {
    static LAYOUT: OnceLock<Layout> = OnceLock::new();
    Layout::parsed_once(&LAYOUT, ALERTS_TSV, "the alerts table")
}

/// Where a stamp of side `size` is in its cutout: the centre of the 63×63 frame.
fn crop_text(size: usize) -> String {
    let start = (FRAME - size) / 2;
    format!("centre [{start}:{end}, {start}:{end}] of the {FRAME}x{FRAME} cutout", end = start + size)
}

/// What each `stamp_flags` bit means, in the root attrs.
const STAMP_FLAG_DOCS: [(u8, &str); 4] = [
    (FLAG_EDGE_PLACED, "edge cutout (smaller than 63x63, clipped at a CCD edge) placed in the 63x63 frame; pixels beyond the edge hold the fill value"),
    (FLAG_HAD_NAN, "a stored stamp pixel was NaN in the cutout"),
    (FLAG_EDGE_GUESSED, "edge placement assumed the high edge because xpos/ypos was missing"),
    (FLAG_MASKED, "a stored stamp pixel held ZTF's masked-pixel value (-3.4028235e38, any value <= -1e30) in the cutout; masked_policy says what is stored there"),
];

/// What `lightcurves/.zattrs` says of the tables.
const LIGHTCURVES_DESCRIPTION: [(&str, &str); 6] = [
    ("description", "Light curves of the stored alerts' objects: every distinct epoch that any stored alert carried, once"),
    ("epochs", "One row per distinct version of a detection (from prv_candidates and the alert's own candidate; kind = detection, keyed by candid) or upper limit (prv_candidates without a candid; kind = upper_limit, keyed by objectId, jd, fid): a key's row holds one value set some packet carried, a different value set is another row, an identical one adds nothing; alert_jd, alert_candid name the alert that first carried it"),
    ("forced", "One row per distinct version of a forced-photometry epoch (fp_hists, schema 4.x), keyed by objectId, jd, fid, pid, under the same rule: a revised epoch is a new row, no row is ever rewritten"),
    ("layout", "Each table (epochs, forced, objects, alerts) is a group of 1-D arrays, one per column, all of the group's length; strings are variable-length UTF-8 (vlen-utf8); the group's columns attribute lists them in table order"),
    ("objects", "The object index: rows [start, start+count) of table (epochs or forced) belong to objectId; an object may have several ranges (one per group of rows added together, more after appends); each build's ranges are sorted by objectId"),
    ("alerts", "Row i is catalog row i: its history is entries history_start .. history_start+history_count-1 of history_epochs, which are rows of epochs (forced: forced_start, forced_count, history_forced): exactly the epochs its own packet carried, nothing from its future"),
];

/// ZTF's store, built on first use (its layouts are parsed from the column tables then).
pub static TABLES: LazyLock<Tables> = LazyLock::new(|| {
    Tables {
        survey: "ztf",
        catalog: catalog(),
        catalog_description: "One row per alert (unique candid): every ZTF candidate field, objectId, stamp_flags and provenance. Row i describes stamps[i].",
        stamps: StampsDeclared {
            frame: FRAME,
            units: "DN",
            flags: &STAMP_FLAG_DOCS,
            names: &STAMP_FLAGS,
            masked: [
                "ZTF's masked pixels (-3.4028235e38) kept as they are",
                "ZTF's masked pixels (-3.4028235e38) stored as 0, like NaN pixels",
                "ZTF's masked pixels (-3.4028235e38) stored as NaN, like NaN pixels",
            ],
            masked_value: Some("-3.4e38"),
            crop: crop_text,
            default_size: DEFAULT_STAMP_SIZE,
            odd_only: true,
            variance: false,
            psf: false,
        },
        lightcurves: [
            TableGroup {
                name: EPOCHS,
                role: TableRole::Epochs,
                layout: epochs(),
                rows: Rows::Own,
                dimension: "epoch",
                description: "Detections and upper limits: one row per distinct version of each epoch (see lightcurves/.zattrs)",
                key: Some(KeyColumns { object: "objectId", time: "jd", band: "fid", id: "candid", carrier: "alert_candid" }),
            },
            TableGroup {
                name: FORCED,
                role: TableRole::Forced,
                layout: forced(),
                rows: Rows::Own,
                dimension: "forced_epoch",
                description: "Forced photometry (fp_hists, schema 4.x): one row per distinct version of each epoch",
                key: Some(KeyColumns { object: "objectId", time: "jd", band: "fid", id: "pid", carrier: "alert_candid" }),
            },
            TableGroup {
                name: OBJECTS,
                role: TableRole::Objects,
                layout: objects_layout(),
                rows: Rows::Own,
                dimension: "object_range",
                description: "The object index: rows start .. start+count-1 of table belong to objectId",
                key: None,
            },
            TableGroup {
                name: HISTORY,
                role: TableRole::Alerts,
                layout: alerts_layout(),
                rows: Rows::PerAlert,
                dimension: "alert",
                description: "Row i is catalog row i: where its own history is in history_epochs and history_forced",
                key: None,
            },
        ],
        lightcurves_description: &LIGHTCURVES_DESCRIPTION,
        lightcurves_summary: "Light curves: lightcurves/epochs (detections, upper limits), lightcurves/forced (forced photometry), the object index lightcurves/objects and each alert's own history (lightcurves/alerts, history_epochs, history_forced); see lightcurves/.zattrs",
        object_column: "objectId",
        labels_id_column: "oid",
        time_column: ("jd", TimeScale::JulianDate),
        version_column: "schemavsn",
        no_version: NO_SCHEMAVSN,
    }
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_parses_with_every_candidate_field() {
        let layout = Layout::parse(CATALOG_TSV).unwrap();
        assert_eq!(layout.columns()[0].name, "candid");
        for name in ["objectId", "stamp_flags", "jd", "magpsf", "drb", "sgscore", "source"] {
            assert!(layout.index_of(name).is_some(), "{name} missing");
        }
        let sum: usize = layout.columns().iter().map(|c| c.dtype.size()).sum();
        assert_eq!(layout.itemsize(), sum);
    }

    #[test]
    fn light_curve_tables_parse_with_their_key_columns() {
        let epochs = Layout::parse(EPOCHS_TSV).unwrap();
        for name in ["objectId", "kind", "candid", "jd", "fid", "magpsf", "diffmaglim"] {
            assert!(epochs.index_of(name).is_some(), "epochs: {name} missing");
        }
        let forced = Layout::parse(FORCED_TSV).unwrap();
        for name in ["objectId", "jd", "fid", "pid", "forcediffimflux", "alert_candid", "alert_jd"] {
            assert!(forced.index_of(name).is_some(), "forced: {name} missing");
        }
    }

    #[test]
    fn missing_row_holds_nan_and_sentinels() {
        let layout = catalog();
        let row = layout.new_row();
        let jd = &layout.columns()[layout.index_of("jd").unwrap()];
        assert!(f64::from_le_bytes(row[jd.offset..jd.offset + 8].try_into().unwrap()).is_nan());
        assert_eq!(layout.read_i64(&row, layout.index_of("fid").unwrap()), Some(i64::from(i32::MIN)));
        assert_eq!(layout.read_i64(&row, 0), Some(i64::MIN));
    }
}
