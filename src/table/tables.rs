//! What a survey puts in a store, declared by the survey and read by the store layer, which
//! knows no survey: the catalog's columns, the light-curve tables, and what the stamps array
//! says of its pixels. ZTF's declaration is `survey/ztf/tables.rs`.

use super::Layout;

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

/// How a table's rows relate to the alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    /// Row i is alert i (stamps, catalog): the array's length is the store's row count.
    PerAlert,
    /// Rows of its own, any number per alert (a table of epochs); its length is its own.
    Own,
}

/// What a light-curve table is to a build: which rows it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableRole {
    /// Detections and upper limits: the new epochs of the alerts' histories.
    Epochs,
    /// Forced photometry: the new forced epochs.
    Forced,
    /// The object index: its rows come at the end of a build.
    Objects,
    /// Where each alert's own history is: one row per alert.
    Alerts,
}

/// One light-curve table: a group of column arrays sharing one dimension.
#[derive(Debug, Clone, Copy)]
pub struct TableGroup {
    /// The group's key (`lightcurves/epochs`).
    pub name: &'static str,
    /// Which rows it takes.
    pub role: TableRole,
    /// Its columns.
    pub layout: &'static Layout,
    /// Its rows: its own, or one per alert.
    pub rows: Rows,
    /// The dimension name its arrays share.
    pub dimension: &'static str,
    /// What the table is, for its group's `.zattrs`.
    pub description: &'static str,
    /// Which columns key an epoch (tables of epochs only).
    pub key: Option<KeyColumns>,
}

/// The columns of a table of epochs that make an epoch's key, named by the survey. A key is
/// (object, time, band, id) plus a digest of the row's values up to `carrier`: a key's row holds
/// one value set some packet carried, and a packet carrying other values adds another row.
#[derive(Debug, Clone, Copy)]
pub struct KeyColumns {
    /// The object the epoch is of: an ASCII string of at most 12 characters, or an int64.
    pub object: &'static str,
    /// Its time, float64 (keys sort by it; never NaN in a stored epoch).
    pub time: &'static str,
    /// Its band: an int32, or a string whose first character counts.
    pub band: &'static str,
    /// Its id, int64. In a table of detections and upper limits, a row whose id is missing is
    /// an upper limit, keyed by object, time and band alone.
    pub id: &'static str,
    /// The first of the two columns of the carrying alert (its id, int64, then its time,
    /// float64), which end the row and are no part of a version.
    pub carrier: &'static str,
}

/// How the survey's alert times count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeScale {
    /// Julian date (ZTF's `jd`).
    JulianDate,
    /// Modified Julian date, TAI (Rubin's `midpointMjdTai`).
    MjdTai,
}

impl TimeScale {
    /// The Julian date of `time` (TAI and UTC differ by seconds: the same date for a night).
    #[must_use]
    pub fn julian_date(self, time: f64) -> f64 {
        match self {
            TimeScale::JulianDate => time,
            TimeScale::MjdTai => time + 2_400_000.5,
        }
    }
}

/// What the stamps of a survey's store are.
#[derive(Debug, Clone, Copy)]
pub struct StampsDeclared {
    /// Side of a full cutout: the largest stamp a store can have, and what a stamp is the
    /// centre of.
    pub frame: usize,
    /// Pixel units.
    pub units: &'static str,
    /// Every `stamp_flags` bit with what it means.
    pub flags: &'static [(u8, &'static str)],
    /// Every `stamp_flags` bit with its short name, in order of value (`1=edge_placed`), for
    /// the counts in summaries and `info`.
    pub names: &'static [(u8, &'static str)],
    /// What the store does with the survey's masked pixels, in words: masked pixels kept,
    /// stored as 0, stored as NaN.
    pub masked: [&'static str; 3],
    /// The survey's masked-pixel value, as `info` shows it (None: its cutouts have none).
    pub masked_value: Option<&'static str>,
    /// Where a stamp of a side is cut from its cutout, in words (the stamps' `crop` attribute).
    pub crop: fn(usize) -> String,
    /// The stamp side a new store gets unless `--stamp-size` says otherwise.
    pub default_size: usize,
    /// Whether a stamp side must be odd (a cutout centred on a pixel) or may be even.
    pub odd_only: bool,
    /// Whether the survey's cutouts carry variance planes (a `variance` array beside `stamps`).
    pub variance: bool,
    /// Whether the survey's cutouts carry PSF images (a `psf` group on request, `build --psf`).
    pub psf: bool,
}

/// A survey's store: everything the store layer writes that depends on the survey.
#[derive(Debug)]
pub struct Tables {
    /// The survey's name, as the store records it.
    pub survey: &'static str,
    /// The catalog's columns.
    pub catalog: &'static Layout,
    /// What the catalog is, for the root attrs.
    pub catalog_description: &'static str,
    /// The stamps.
    pub stamps: StampsDeclared,
    /// The light-curve tables: detections and upper limits, forced photometry, the object
    /// index, and where each alert's own history is (rows per alert).
    pub lightcurves: [TableGroup; 4],
    /// What `lightcurves/.zattrs` says, key by key, besides the row counts.
    pub lightcurves_description: &'static [(&'static str, &'static str)],
    /// What the root attrs say of the `lightcurves` group.
    pub lightcurves_summary: &'static str,
    /// The catalog column naming an alert's object: labels join on it, splits group by it.
    pub object_column: &'static str,
    /// The column of a classifier CSV that holds that object id, unless `--id-column` says.
    pub labels_id_column: &'static str,
    /// The catalog column of an alert's time, and how it counts.
    pub time_column: (&'static str, TimeScale),
    /// The catalog column of the packet's schema version.
    pub version_column: &'static str,
    /// How the summary and `info` name alerts whose version column is empty.
    pub no_version: &'static str,
}

impl Tables {
    /// The light-curve table whose group is `name` (`lightcurves/epochs`), if it is one.
    #[must_use]
    pub fn lightcurve_table(&self, name: &str) -> Option<TableGroup> {
        self.lightcurves.iter().copied().find(|table| table.name == name)
    }
}
