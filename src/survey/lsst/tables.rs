//! Rubin's store: the columns of its catalog and light-curve tables (declared in
//! `schemas/lsst/catalog.tsv`, `epochs.tsv` and `forced.tsv`, generated from the published alert
//! schemas and compiled into the binary), the object index and per-alert history tables, and
//! what its stamps are. The store layer writes what this declares ([`TABLES`]) without knowing
//! it is Rubin.

use std::sync::{LazyLock, OnceLock};

use super::cutout::{STAMP_FLAGS, STAMP_FLAG_DOCS};
use crate::table::tables::{EPOCHS, FORCED, HISTORY, OBJECTS};
use crate::table::{KeyColumns, Layout, Rows, StampsDeclared, TableGroup, TableRole, Tables, TimeScale};

const CATALOG_TSV: &str = include_str!("../../../schemas/lsst/catalog.tsv");
const EPOCHS_TSV: &str = include_str!("../../../schemas/lsst/epochs.tsv");
const FORCED_TSV: &str = include_str!("../../../schemas/lsst/forced.tsv");

/// Side of the largest stamp a Rubin store can have.
pub const FRAME: usize = 102;

/// Columns of `lightcurves/objects`, the object index.
const OBJECTS_TSV: &str = "diaObjectId\t<i8\t-9223372036854775808\tderived\tRubin diaObject identifier
table\t<U6\t\tderived\tThe table the range is in: epochs (lightcurves/epochs) or forced (lightcurves/forced)
start\t<i8\t-1\tderived\tFirst row of the range
count\t<i8\t0\tderived\tRows in the range: rows start .. start+count-1 of the table belong to the object
";

/// Columns of `lightcurves/alerts`: row i is catalog row i.
const ALERTS_TSV: &str = "history_start\t<i8\t-1\tderived\tFirst entry of this alert's history in lightcurves/history_epochs
history_count\t<i4\t0\tderived\tDistinct epochs (diaSources) this alert carried, itself included: entries history_start .. history_start+history_count-1
forced_start\t<i8\t-1\tderived\tFirst entry of this alert's forced photometry in lightcurves/history_forced
forced_count\t<i4\t0\tderived\tDistinct forced-photometry epochs (diaForcedSources) this alert carried
";

/// The catalog's layout (`schemas/lsst/catalog.tsv`).
pub fn catalog() -> &'static Layout {
    static LAYOUT: OnceLock<Layout> = OnceLock::new();
    Layout::parsed_once(&LAYOUT, CATALOG_TSV, "schemas/lsst/catalog.tsv")
}

/// The layout of `lightcurves/epochs` (diaSources).
pub fn epochs() -> &'static Layout {
    static LAYOUT: OnceLock<Layout> = OnceLock::new();
    Layout::parsed_once(&LAYOUT, EPOCHS_TSV, "schemas/lsst/epochs.tsv")
}

/// The layout of `lightcurves/forced` (diaForcedSources).
pub fn forced() -> &'static Layout {
    static LAYOUT: OnceLock<Layout> = OnceLock::new();
    Layout::parsed_once(&LAYOUT, FORCED_TSV, "schemas/lsst/forced.tsv")
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

/// What `lightcurves/.zattrs` says of the tables.
const LIGHTCURVES_DESCRIPTION: [(&str, &str); 6] = [
    ("description", "Light curves of the stored alerts' objects: every distinct epoch that any stored alert carried, once; times are midpointMjdTai (MJD, TAI), fluxes nJy"),
    ("epochs", "One row per distinct version of a diaSource (from prvDiaSources and the alert's own diaSource), keyed by diaSourceId: a key's row holds one value set some packet carried, a different value set is another row, an identical one adds nothing; alert_midpointMjdTai, alert_diaSourceId name the alert that first carried it"),
    ("forced", "One row per distinct version of a forced-photometry epoch (prvDiaForcedSources), keyed by diaForcedSourceId, under the same rule: a revised epoch is a new row, no row is ever rewritten"),
    ("layout", "Each table (epochs, forced, objects, alerts) is a group of 1-D arrays, one per column, all of the group's length; strings are variable-length UTF-8 (vlen-utf8); the group's columns attribute lists them in table order"),
    ("objects", "The object index: rows [start, start+count) of table (epochs or forced) belong to diaObjectId; an object may have several ranges (one per group of rows added together, more after appends); each build's ranges are sorted by diaObjectId"),
    ("alerts", "Row i is catalog row i: its history is entries history_start .. history_start+history_count-1 of history_epochs, which are rows of epochs (forced: forced_start, forced_count, history_forced): exactly the epochs its own packet carried, nothing from its future"),
];

/// Rubin's store, built on first use (its layouts are parsed from the column tables then).
/// Where a stamp of side `size` is in its cutout: a window around the diaSource.
fn crop_text(size: usize) -> String {
    format!(
        "the {size}x{size} window of each cutout centred on the diaSource, which is at 0-based pixel (x - CUTMINX - 1, y - CUTMINY - 1); \
         pixels beyond the cutout hold the fill value and set stamp_flags bit 1 (see docs/rubin.md)"
    )
}

/// The stamp side of a new store unless `--stamp-size` says otherwise: Rubin's smallest cutout
/// (30×30 in every real alert so far), so that a default stamp is the whole cutout, unpadded.
pub const DEFAULT_STAMP_SIZE: usize = 30;

pub static TABLES: LazyLock<Tables> = LazyLock::new(|| {
    Tables {
    survey: "lsst",
    catalog: catalog(),
    catalog_description: "One row per alert (unique diaSourceId): every Rubin diaSource field, the alert's diaObject (diaObject_*) and ssSource (ssSource_*) fields, stamp_flags and provenance. Row i describes stamps[i].",
    stamps: StampsDeclared {
        frame: FRAME,
        units: "nJy",
        flags: &STAMP_FLAG_DOCS,
        names: &STAMP_FLAGS,
        masked: [
            "Rubin cutouts have no masked-pixel value (missing pixels are NaN, see nan_policy): nothing to keep",
            "Rubin cutouts have no masked-pixel value (missing pixels are NaN, see nan_policy): nothing stored as 0",
            "Rubin cutouts have no masked-pixel value (missing pixels are NaN, see nan_policy): nothing stored as NaN",
        ],
        masked_value: None,
        crop: crop_text,
        default_size: DEFAULT_STAMP_SIZE,
        odd_only: false,
        variance: true,
        psf: true,
    },
    lightcurves: [
        TableGroup {
            name: EPOCHS,
            role: TableRole::Epochs,
            layout: epochs(),
            rows: Rows::Own,
            dimension: "epoch",
            description: "diaSources: one row per distinct version of each diaSource (see lightcurves/.zattrs)",
            key: Some(KeyColumns { object: "diaObjectId", time: "midpointMjdTai", band: "band", id: "diaSourceId", carrier: "alert_diaSourceId" }),
        },
        TableGroup {
            name: FORCED,
            role: TableRole::Forced,
            layout: forced(),
            rows: Rows::Own,
            dimension: "forced_epoch",
            description: "Forced photometry (diaForcedSources): one row per distinct version of each epoch",
            key: Some(KeyColumns {
                object: "diaObjectId",
                time: "midpointMjdTai",
                band: "band",
                id: "diaForcedSourceId",
                carrier: "alert_diaSourceId",
            }),
        },
        TableGroup {
            name: OBJECTS,
            role: TableRole::Objects,
            layout: objects_layout(),
            rows: Rows::Own,
            dimension: "object_range",
            description: "The object index: rows start .. start+count-1 of table belong to diaObjectId",
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
    lightcurves_summary: "Light curves: lightcurves/epochs (diaSources), lightcurves/forced (forced photometry), the object index lightcurves/objects and each alert's own history (lightcurves/alerts, history_epochs, history_forced); see lightcurves/.zattrs",
    object_column: "diaObjectId",
    labels_id_column: "diaObjectId",
    time_column: ("midpointMjdTai", TimeScale::MjdTai),
    version_column: "schema_version",
    no_version: "none",
}
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_parses_with_its_key_columns_first_and_provenance_last() {
        let layout = catalog();
        let names: Vec<&str> = layout.columns().iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names[..2], ["diaSourceId", "diaObjectId"]);
        assert_eq!(names[names.len() - 5..], ["schema_version", "stamp_flags", "label", "label_code", "source"]);
        for name in [
            "midpointMjdTai",
            "band",
            "x",
            "y",
            "psfFlux",
            "alertId",
            "observation_reason",
            "diaObject_nDiaSources",
            "ssSource_designation",
        ] {
            assert!(layout.index_of(name).is_some(), "{name} missing");
        }
        let sum: usize = layout.columns().iter().map(|c| c.dtype.size()).sum();
        assert_eq!(layout.itemsize(), sum);
    }

    #[test]
    fn light_curve_tables_end_with_the_carrying_alert() {
        for layout in [epochs(), forced()] {
            let names: Vec<&str> = layout.columns().iter().map(|c| c.name.as_str()).collect();
            assert_eq!(names[names.len() - 2..], ["alert_diaSourceId", "alert_midpointMjdTai"]);
        }
        for name in ["diaSourceId", "diaObjectId", "midpointMjdTai", "band", "psfFlux"] {
            assert!(epochs().index_of(name).is_some(), "epochs: {name} missing");
        }
        for name in ["diaForcedSourceId", "diaObjectId", "midpointMjdTai", "band", "psfFlux"] {
            assert!(forced().index_of(name).is_some(), "forced: {name} missing");
        }
    }

    #[test]
    fn every_epochs_column_but_the_carriers_is_a_catalog_column_of_the_same_type() {
        let (catalog, epochs) = (catalog(), epochs());
        for column in &epochs.columns()[..epochs.columns().len() - 2] {
            let index = catalog.index_of(&column.name).unwrap_or_else(|| panic!("{} not in the catalog", column.name));
            assert_eq!(catalog.columns()[index].dtype, column.dtype, "{}", column.name);
        }
    }

    #[test]
    fn declared_tables_parse() {
        assert_eq!(TABLES.survey, "lsst");
        assert_eq!(objects_layout().columns()[0].name, "diaObjectId");
        assert_eq!(alerts_layout().columns().len(), 4);
        let row = catalog().new_row();
        assert_eq!(catalog().read_i64(&row, 0), Some(i64::MIN));
    }
}
