//! Synthetic ZTF alert packets: schema-faithful (ZTF alert schema 3.3, or 4.02 on request,
//! every field filled), realistic enough to exercise the whole build (repeated objects,
//! NaN-masked cutouts, an edge cutout, histories), and byte-identical for the same configuration.
//! Used by `ztf2zarr generate`, the tests and the benchmarks.
//!
//! Layout: `rng` (deterministic randomness), `pixels` (cutout images), `fits` (gzip'd FITS
//! files), `avro` (schemas, record builder, container file), `alert` (what an alert says),
//! `depths` (history lengths measured on real alerts), `output` (loose files or one nightly
//! `.tar.gz`).
//!
//! # Schema and history depth
//! [`SynthConfig::schema`] picks the writer schema: [`AlertSchema::V3_3`] (the default, unions
//! value-first, no `fp_hists`) or [`AlertSchema::V4_02`] (unions null-first, and `fp_hists`:
//! forced photometry on every exposure of `prv_candidates`, newest first, as in the real 4.02
//! alert). [`SynthConfig::history`] picks how long the histories are:
//! - [`HistoryDepth::Short`] (the default): 2 to 8 `prv_candidates` per object, uniformly,
//!   about two thirds of them detections (mean 5);
//! - [`HistoryDepth::Measured`]: lengths drawn from the distribution measured on the 548 real
//!   alerts of the test set (`depths`: 4 to 196 entries, mean 17.1, median 12, p90 24), 30.3 %
//!   of the entries detections, as there. With schema 4.02, `fp_hists` has as many entries.
//!
//! A history is drawn per object, so the alerts of one object carry the same epochs with the same
//! values: each `prv_candidates` and `fp_hists` entry is a function of the seed, the object, the
//! entry's place in the object's history and the pid its processing IDs count back from (no
//! epoch is ever revised). Every epoch lies 0.9 to 30 days before the object's first alert of the
//! night. With the defaults (3.3, short) processing IDs count back from each alert's own pid
//! (`candid / 10^6`), which the alerts of an object share unless their candids straddle a
//! multiple of 10^6. Otherwise they count back from the object's first alert, so its alerts
//! always agree, and epochs lie within 29.9 days, so within 30 days of each alert of the object.
//!
//! `data-samples/` is made with the defaults (3.3, short); the tests regenerate it and compare
//! it byte for byte.
//!
//! # Special alerts
//! Chosen by index alone (so they exist whenever `count` ≥ 10, whatever the seed; the seed only
//! moves the details):
//! - **Edge cutout: index [`EDGE_INDEX`] (5).** Its candidate lies 12 columns from the high-x
//!   edge of the 3072-column readout-channel image (xpos ≈ 3060), so all three cutouts are
//!   clipped to [`EDGE_WIDTH`] = 44 columns × 63 rows (NAXIS1 = 44, NAXIS2 = 63): the columns
//!   beyond the CCD edge are missing and the source sits at row 31, column 31. Its object has no
//!   other alert.
//! - **NaN pixels: every index ≡ 3 (mod 8)** (3, 11, 19, 27, …; see [`has_nan_pixels`]).
//!   Alternately (by `index / 8` even / odd): a bad reference-image column at 3 to 7 columns
//!   left or right of the source, NaN from top to bottom in the template and hence in the
//!   difference (inside the central 21×21 stamp); or a 3×3 to 5×5 masked block in a corner of
//!   the science image, hence also in the difference (outside the central 21×21 stamp).
//!
//! Every other alert has three finite 63×63 cutouts. Alerts come in runs of
//! [`ALERTS_PER_OBJECT`] sharing one `objectId` (indices 0–2, 3–4, 6–8, 9–11, …).

mod alert;
mod avro;
mod depths;
mod fits;
mod labels;
pub mod lsst;
mod output;
mod pixels;

pub use labels::{labels_csv, CLASSES};
pub use lsst::{write_lsst_files, write_lsst_tarball, Framing, LsstConfig, LsstSchema};
pub use output::{write_files, write_tarball};
pub use pixels::{CCD_HEIGHT, CCD_WIDTH, CUTOUT_CENTRE, CUTOUT_SIDE};

use std::path::PathBuf;

/// Index of the one alert whose cutouts are clipped at the CCD's high-x edge.
pub const EDGE_INDEX: usize = 5;
/// NAXIS1 (columns) of the edge alert's cutouts; NAXIS2 stays 63.
pub const EDGE_WIDTH: usize = 44;
/// Consecutive alerts that share one object (one `objectId`).
pub const ALERTS_PER_OBJECT: usize = 3;

/// Whether alert `index` has NaN pixels in some of its cutouts (about 1 in 8 alerts).
#[must_use]
pub fn has_nan_pixels(index: usize) -> bool {
    index % 8 == 3
}

/// What to generate: `count` alerts with candids `first_candid ..` drawn from `seed`, written
/// with `schema`, with histories as deep as `history` says.
///
/// Objects (names, positions, neighbours, history) depend on `seed` and the alert's index only;
/// everything drawn per alert (filter, photometry, pixels, sync marker) also on its candid. So
/// another `first_candid` with the same seed re-observes the same objects with new alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynthConfig {
    /// Number of alerts.
    pub count: usize,
    /// Same seed (and first candid) → the same bytes.
    pub seed: u64,
    /// Candid of alert 0; alert i has `first_candid + i`.
    pub first_candid: i64,
    /// The ZTF alert schema the packets are written with.
    pub schema: AlertSchema,
    /// How many entries the histories have.
    pub history: HistoryDepth,
}

impl Default for SynthConfig {
    /// The `ztf2zarr generate` defaults: 40 alerts, seed 1, first candid 1100000000015000000,
    /// schema 3.3, short histories.
    fn default() -> Self {
        Self {
            count: 40,
            seed: 1,
            first_candid: 1_100_000_000_015_000_000,
            schema: AlertSchema::default(),
            history: HistoryDepth::default(),
        }
    }
}

/// The ZTF alert schema version synthetic packets are written with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum AlertSchema {
    /// 3.3: unions value-first, no `fp_hists`.
    #[default]
    V3_3,
    /// 4.02: unions null-first, and `fp_hists` (forced photometry on the history's exposures).
    V4_02,
}

impl AlertSchema {
    /// The version as the packets' `schemavsn` field says it ("3.3", "4.02").
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            AlertSchema::V3_3 => "3.3",
            AlertSchema::V4_02 => "4.02",
        }
    }

    /// Whether packets of this schema carry `fp_hists`.
    #[must_use]
    pub fn has_fp_hists(self) -> bool {
        self == AlertSchema::V4_02
    }
}

/// How many entries the synthetic histories (`prv_candidates`, and `fp_hists` in 4.02) have.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum HistoryDepth {
    /// 2 to 8 per object (uniformly), about two thirds detections.
    #[default]
    Short,
    /// Drawn from the lengths measured on real alerts (mean 17.1, median 12, p90 24, max 196),
    /// 30.3 % detections (module `depths`).
    Measured,
}

impl HistoryDepth {
    /// The name `ztf2zarr generate --history` gives it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            HistoryDepth::Short => "short",
            HistoryDepth::Measured => "measured",
        }
    }
}

impl SynthConfig {
    /// Candid of alert `index` (checked by [`SynthConfig::validate`] not to overflow).
    #[must_use]
    pub fn candid(&self, index: usize) -> i64 {
        self.first_candid.wrapping_add(index as i64)
    }

    /// Rejects configurations whose candids would not be positive 64-bit integers.
    ///
    /// # Errors
    /// [`SynthError::BadCandids`] if `first_candid` < 1 or the last candid overflows `i64`.
    pub fn validate(&self) -> Result<(), SynthError> {
        let last = i64::try_from(self.count).ok().and_then(|count| self.first_candid.checked_add(count));
        if self.first_candid < 1 || last.is_none() {
            return Err(SynthError::BadCandids { first: self.first_candid, count: self.count });
        }
        Ok(())
    }
}

/// Why generating or writing alerts failed.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("cannot write {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("candids {first} + 0..{count} are not all positive 64-bit integers")]
    BadCandids { first: i64, count: usize },
    #[error("{} has no file name to name the archive's folder after", path.display())]
    NoArchiveName { path: PathBuf },
}

/// One alert as ZTF distributes it: the bytes of an Avro object container file (codec `null`)
/// holding exactly one record of the ZTF alert schema `cfg.schema`.
///
/// A pure function of (`cfg.seed`, `cfg.first_candid`, `index`): `cfg.count` does not matter,
/// and alerts may be made in any order or in parallel. `index` should be below `cfg.count`, and
/// `cfg` should pass [`SynthConfig::validate`] (otherwise candids wrap around).
///
/// # Panics
/// Only on a bug in this module (a generated value that does not fit the schema).
#[must_use]
pub fn synth_alert(cfg: &SynthConfig, index: usize) -> Vec<u8> {
    let alert = synth_record(cfg, index);
    // Same argument as in synth_record: the record was built field by field from the schema.
    let datum = avro::encode_alert(cfg.schema, alert).expect("a record built from the schema encodes");
    avro::alert_container(cfg.schema, alert::sync_marker(cfg.seed, cfg.candid(index)), &datum)
}

/// The Avro record of alert `index`, as [`synth_alert`] writes it and a reader gives it back
/// (unions as `Value::Union(branch, value)` in the schema's branch order).
///
/// # Panics
/// As [`synth_alert`].
#[must_use]
pub fn synth_record(cfg: &SynthConfig, index: usize) -> apache_avro::types::Value {
    // The schema is compiled in and every field is set by name through a builder that checks
    // names and types against it; the tests build and encode hundreds of alerts covering every
    // branch (null / non-null, every special case). A failure here is a bug in this module, not
    // something input can cause, so it panics rather than burdening every caller with a Result.
    alert::build_alert(cfg, index).expect("synthetic alert fits the embedded ZTF schema")
}

/// A gzip'd single-HDU FITS image exactly like ZTF's cutouts (BITPIX -32, `BUNIT = 'DN'`),
/// with a fixed gzip header, so the same pixels always give the same bytes.
///
/// `pixels` is row-major: `height` rows of `width` values (NAXIS1 = `width` varies fastest).
///
/// # Panics
/// If `pixels.len() != width * height`.
#[must_use]
pub fn fits_gz(width: usize, height: usize, pixels: &[f32]) -> Vec<u8> {
    fits::gzip_fits(width, height, pixels)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use apache_avro::types::Value;

    use super::*;

    fn cfg(count: usize, seed: u64) -> SynthConfig {
        SynthConfig { count, seed, ..SynthConfig::default() }
    }

    /// The value inside a record field (looking through its union, if any).
    fn field<'v>(record: &'v Value, name: &str) -> &'v Value {
        let Value::Record(fields) = record else { panic!("not a record: {record:?}") };
        let value = &fields.iter().find(|(key, _)| key == name).unwrap_or_else(|| panic!("no field {name}")).1;
        match value {
            Value::Union(_, inner) => inner,
            plain => plain,
        }
    }

    fn float(record: &Value, name: &str) -> f64 {
        match field(record, name) {
            Value::Float(x) => f64::from(*x),
            Value::Double(x) => *x,
            other => panic!("{name} is {other:?}"),
        }
    }

    fn int(record: &Value, name: &str) -> i64 {
        match field(record, name) {
            Value::Int(x) => i64::from(*x),
            Value::Long(x) => *x,
            other => panic!("{name} is {other:?}"),
        }
    }

    fn string<'v>(record: &'v Value, name: &str) -> &'v str {
        match field(record, name) {
            Value::String(s) => s,
            other => panic!("{name} is {other:?}"),
        }
    }

    fn read_back(file: &[u8]) -> Value {
        let mut reader = apache_avro::Reader::new(file).expect("valid container header");
        let record = reader.next().expect("one record").expect("readable record");
        assert!(reader.next().is_none(), "exactly one record");
        record
    }

    /// (width, height, pixels) of a cutout field.
    fn cutout(record: &Value, name: &str) -> (usize, usize, Vec<f32>) {
        let Value::Bytes(stamp) = field(field(record, name), "stampData") else { panic!("{name}.stampData is not bytes") };
        fits::read_gzip_fits(stamp)
    }

    #[test]
    fn reader_gets_back_exactly_the_built_record() {
        let cfg = cfg(12, 1);
        for index in 0..cfg.count {
            let file = synth_alert(&cfg, index);
            assert_eq!(&file[..4], b"Obj\x01");
            assert_eq!(read_back(&file), synth_record(&cfg, index), "alert {index}");
        }
    }

    #[test]
    fn every_schema_field_is_present() {
        let record = synth_record(&cfg(40, 3), 7);
        let Value::Record(top) = &record else { panic!("alert is not a record") };
        assert_eq!(top.len(), 9);
        let Value::Record(candidate) = field(&record, "candidate") else { panic!("candidate is not a record") };
        assert_eq!(candidate.len(), 103);
        let Value::Array(history) = field(&record, "prv_candidates") else { panic!("prv_candidates is not an array") };
        assert!((2..=8).contains(&history.len()));
        for past in history {
            let Value::Record(fields) = past else { panic!("prv_candidate is not a record") };
            assert_eq!(fields.len(), 57);
        }
    }

    #[test]
    fn same_config_gives_same_bytes_and_seed_changes_them() {
        let a = cfg(10, 11);
        for index in [0, 5, 9] {
            let bytes = synth_alert(&a, index);
            assert!(bytes == synth_alert(&a, index), "same config, same bytes");
            let more = SynthConfig { count: 500, ..a };
            assert!(bytes == synth_alert(&more, index), "count does not change an alert");
            assert!(bytes != synth_alert(&cfg(10, 12), index), "seed changes it");
        }
    }

    #[test]
    fn sync_marker_depends_on_seed_and_candid() {
        let file = |seed, index| {
            let bytes = synth_alert(&cfg(10, seed), index);
            bytes[bytes.len() - 16..].to_vec()
        };
        assert_eq!(file(1, 0), file(1, 0));
        assert_ne!(file(1, 0), file(1, 1));
        assert_ne!(file(1, 0), file(2, 0));
    }

    #[test]
    fn catalog_values_are_plausible() {
        let cfg = cfg(120, 5);
        let mut ssnamenr_set = 0;
        for index in 0..cfg.count {
            let alert = synth_record(&cfg, index);
            let candidate = field(&alert, "candidate");
            assert_eq!(int(&alert, "candid"), cfg.candid(index));
            assert_eq!(int(candidate, "candid"), cfg.candid(index));
            assert_eq!(string(&alert, "schemavsn"), "3.3");
            assert_eq!(string(&alert, "publisher"), "ZTF (www.ztf.caltech.edu)");
            let object_id = string(&alert, "objectId");
            assert_eq!(object_id.len(), 12);
            assert!(object_id.starts_with("ZTF"));
            assert!(object_id[3..5].chars().all(|c| c.is_ascii_digit()));
            assert!(object_id[5..].chars().all(|c| c.is_ascii_lowercase()));

            let jd = float(candidate, "jd");
            assert!((2_460_676.5..2_460_677.5).contains(&jd), "jd {jd}");
            assert!([1, 2].contains(&int(candidate, "fid")));
            assert!((0.0..360.0).contains(&float(candidate, "ra")));
            assert!((-30.0..=90.0).contains(&float(candidate, "dec")));
            assert!((15.0..=21.0).contains(&float(candidate, "magpsf")));
            assert!((0.05..=0.2).contains(&float(candidate, "sigmapsf")));
            assert!(["t", "f"].contains(&string(candidate, "isdiffpos")));
            assert!((0..=63).contains(&int(candidate, "rcid")));
            assert!((200..=1900).contains(&int(candidate, "field")));
            assert!((1.0..=3072.0).contains(&float(candidate, "xpos")));
            assert!((1.0..=3080.0).contains(&float(candidate, "ypos")));
            assert!((0.0..=1.0).contains(&float(candidate, "rb")));
            assert!((0.0..=1.0).contains(&float(candidate, "drb")));
            assert_eq!(string(candidate, "rbversion"), "t17_f5_c3");
            assert_eq!(string(candidate, "drbversion"), "d6_m7");
            assert_eq!(int(candidate, "programid"), 1);
            assert!(int(candidate, "ndethist") >= 1);
            if !matches!(field(candidate, "ssnamenr"), Value::Null) {
                ssnamenr_set += 1;
            }
            // prv_candidates are earlier, oldest first.
            let Value::Array(history) = field(&alert, "prv_candidates") else { panic!("prv_candidates is not an array") };
            let jds: Vec<f64> = history.iter().map(|past| float(past, "jd")).collect();
            assert!(jds.windows(2).all(|w| w[0] <= w[1]));
            assert!(jds.iter().all(|&past| past < jd));
        }
        assert!(ssnamenr_set < cfg.count / 5, "ssnamenr is mostly null");
    }

    #[test]
    fn alerts_of_one_object_share_its_id_and_position() {
        let cfg = cfg(30, 2);
        let records: Vec<Value> = (0..cfg.count).map(|i| synth_record(&cfg, i)).collect();
        let ids: Vec<&str> = records.iter().map(|r| string(r, "objectId")).collect();
        let mut distinct = ids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 11, "10 runs of three, and the edge alert alone");
        assert_eq!(ids[0], ids[1]);
        assert_eq!(ids[1], ids[2]);
        assert_ne!(ids[2], ids[3]);
        assert_eq!(ids[3], ids[4]);
        assert_ne!(ids[4], ids[EDGE_INDEX]);
        let position = |r: &Value| (float(field(r, "candidate"), "ra"), float(field(r, "candidate"), "dec"));
        let (ra0, dec0) = position(&records[0]);
        let (ra1, dec1) = position(&records[1]);
        assert!((ra0 - ra1).abs() * dec0.to_radians().cos() < 1.0 / 3600.0);
        assert!((dec0 - dec1).abs() < 1.0 / 3600.0);
    }

    #[test]
    fn cutouts_are_fits_with_the_source_at_the_centre() {
        let cfg = cfg(40, 1);
        for index in (0..cfg.count).filter(|&i| i != EDGE_INDEX && !has_nan_pixels(i)) {
            let alert = synth_record(&cfg, index);
            let positive = string(field(&alert, "candidate"), "isdiffpos") == "t";
            let (_, _, science) = cutout(&alert, "cutoutScience");
            let (_, _, template) = cutout(&alert, "cutoutTemplate");
            for name in ["cutoutScience", "cutoutTemplate", "cutoutDifference"] {
                let (width, height, pixels) = cutout(&alert, name);
                assert_eq!((width, height), (63, 63), "alert {index} {name}");
                assert!(pixels.iter().all(|v| v.is_finite()), "alert {index} {name}");
            }
            let (_, _, difference) = cutout(&alert, "cutoutDifference");
            let centre = CUTOUT_CENTRE * CUTOUT_SIDE + CUTOUT_CENTRE;
            let corner_sky = science[..10].iter().sum::<f32>() / 10.0;
            assert!((60.0..160.0).contains(&corner_sky), "science sky {corner_sky}");
            assert_eq!(difference[centre], science[centre] - template[centre]);
            // The transient shows at the centre of the difference, with the right sign.
            let central_sum: f32 =
                (29..=33).flat_map(|row| (29..=33).map(move |column| row * CUTOUT_SIDE + column)).map(|i| difference[i]).sum();
            assert_eq!(central_sum > 0.0, positive, "alert {index}: {central_sum}");
        }
    }

    #[test]
    fn nan_alerts_have_nan_cutout_pixels_and_others_none() {
        let cfg = cfg(40, 8);
        let nan_indices: Vec<usize> = (0..cfg.count).filter(|&i| has_nan_pixels(i)).collect();
        assert_eq!(nan_indices, [3, 11, 19, 27, 35]);
        for index in 0..cfg.count {
            let alert = synth_record(&cfg, index);
            let nan_in = |name| cutout(&alert, name).2.iter().filter(|v| v.is_nan()).count();
            let difference_nan = nan_in("cutoutDifference");
            if has_nan_pixels(index) {
                assert!(difference_nan >= 9, "alert {index}");
                assert_eq!(
                    difference_nan,
                    nan_in("cutoutScience") + nan_in("cutoutTemplate"),
                    "a mask sits in one input image and shows in the difference"
                );
            } else {
                assert_eq!(difference_nan, 0, "alert {index}");
            }
        }
    }

    #[test]
    fn edge_alert_cutouts_are_63_rows_by_44_columns_with_the_source_in_column_31() {
        let cfg = cfg(10, 4);
        let alert = synth_record(&cfg, EDGE_INDEX);
        let candidate = field(&alert, "candidate");
        let xpos = float(candidate, "xpos");
        assert!((3059.5..3060.5).contains(&xpos), "xpos {xpos}");
        assert!(float(candidate, "mindtoedge") < 13.0);
        for name in ["cutoutScience", "cutoutTemplate", "cutoutDifference"] {
            let (width, height, pixels) = cutout(&alert, name);
            assert_eq!((width, height), (EDGE_WIDTH, 63), "{name}");
            assert!(pixels.iter().all(|v| v.is_finite()), "{name}");
        }
        let (_, _, science) = cutout(&alert, "cutoutScience");
        let brightest = science.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| (i / EDGE_WIDTH, i % EDGE_WIDTH));
        assert_eq!(brightest, Some((31, 31)));
    }

    #[test]
    fn fits_gz_is_a_ztf_cutout() {
        let pixels: Vec<f32> = (0..44 * 63).map(|i| i as f32).collect();
        let gz = fits_gz(44, 63, &pixels);
        let mut fits = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice()).read_to_end(&mut fits).expect("gzip");
        assert_eq!(fits.len() % 2880, 0);
        assert!(fits.starts_with(b"SIMPLE  =                    T"));
        assert_eq!(fits::read_gzip_fits(&gz), (44, 63, pixels));
    }

    /// The array inside a record field (looking through its union).
    fn array<'v>(record: &'v Value, name: &str) -> &'v [Value] {
        match field(record, name) {
            Value::Array(items) => items,
            other => panic!("{name} is {other:?}"),
        }
    }

    fn deep(count: usize, seed: u64, schema: AlertSchema) -> SynthConfig {
        SynthConfig { count, seed, schema, history: HistoryDepth::Measured, ..SynthConfig::default() }
    }

    #[test]
    fn v4_02_alerts_carry_forced_photometry_on_every_prv_candidates_exposure() {
        for history in [HistoryDepth::Short, HistoryDepth::Measured] {
            let cfg = SynthConfig { count: 40, seed: 4, schema: AlertSchema::V4_02, history, ..SynthConfig::default() };
            let mut measured = 0;
            for index in 0..cfg.count {
                let alert = read_back(&synth_alert(&cfg, index));
                assert_eq!(alert, synth_record(&cfg, index), "alert {index}");
                let Value::Record(top) = &alert else { panic!("alert is not a record") };
                assert_eq!(top.len(), 10);
                assert_eq!(string(&alert, "schemavsn"), "4.02");
                let jd = float(field(&alert, "candidate"), "jd");
                let (prv, fp) = (array(&alert, "prv_candidates"), array(&alert, "fp_hists"));
                assert_eq!(fp.len(), prv.len(), "alert {index}");
                // Newest first, one per prv_candidates exposure (those are oldest first).
                for (forced, past) in fp.iter().zip(prv.iter().rev()) {
                    let Value::Record(fields) = forced else { panic!("fp_hist is not a record") };
                    assert_eq!(fields.len(), 29);
                    for name in ["jd", "diffmaglim", "magzpsci"] {
                        assert_eq!(float(forced, name), float(past, name), "{name}");
                    }
                    for name in ["fid", "pid", "field", "rcid", "programid"] {
                        assert_eq!(int(forced, name), int(past, name), "{name}");
                    }
                    assert!((1..=3).contains(&int(forced, "fid")));
                    let age = jd - float(forced, "jd");
                    assert!(age > 0.0 && age <= 30.0, "alert {index}: an epoch {age} days old");
                    assert_eq!(int(forced, "rfid") % 10, int(forced, "fid"));
                    let (flux, unc) = (float(forced, "forcediffimflux"), float(forced, "forcediffimfluxunc"));
                    if string(forced, "procstatus") == "0" {
                        measured += 1;
                        assert!(flux.is_finite() && unc > 0.0 && unc < 1000.0, "flux {flux} ± {unc}");
                        if !matches!(field(past, "candid"), Value::Null) {
                            // A detection shows in the forced flux, with its sign.
                            let positive = string(past, "isdiffpos") == "t";
                            assert_eq!(flux > 0.0, positive, "flux {flux} ± {unc}");
                            assert!(flux.abs() > 2.0 * unc, "flux {flux} ± {unc}");
                        }
                    } else {
                        assert_eq!((flux, unc), (-99_999.0, -99_999.0));
                    }
                    assert!((0.0..=30.0).contains(&float(forced, "distnr")));
                    assert!((1.0..=4.0).contains(&float(forced, "sciinpseeing")));
                    assert_eq!(float(forced, "exptime"), 30.0);
                }
            }
            assert!(measured > 0);
        }
    }

    #[test]
    fn deeper_histories_and_4_02_are_deterministic_and_leave_the_defaults_alone() {
        let base = cfg(12, 9);
        assert_eq!((base.schema, base.history), (AlertSchema::V3_3, HistoryDepth::Short), "the defaults");
        for (schema, history) in [
            (AlertSchema::V4_02, HistoryDepth::Short),
            (AlertSchema::V3_3, HistoryDepth::Measured),
            (AlertSchema::V4_02, HistoryDepth::Measured),
        ] {
            let other = SynthConfig { schema, history, ..base };
            for index in [0, 5, 7] {
                let bytes = synth_alert(&other, index);
                assert!(bytes == synth_alert(&other, index), "same config, same bytes");
                assert!(bytes == synth_alert(&SynthConfig { count: 500, ..other }, index), "count does not change an alert");
                assert!(bytes != synth_alert(&SynthConfig { seed: 10, ..other }, index), "seed changes it");
                assert!(bytes != synth_alert(&base, index), "{schema:?} {history:?} is not the default alert");
            }
        }
        // The measured lengths are the 3.3 alert's and the 4.02 alert's alike.
        let lengths = |schema| (0..12).map(|i| array(&synth_record(&deep(12, 9, schema), i), "prv_candidates").len()).collect::<Vec<_>>();
        assert_eq!(lengths(AlertSchema::V3_3), lengths(AlertSchema::V4_02));
        let alert = synth_record(&deep(12, 9, AlertSchema::V3_3), 0);
        assert_eq!(string(&alert, "schemavsn"), "3.3");
        let Value::Record(top) = &alert else { panic!("alert is not a record") };
        assert_eq!(top.len(), 9, "3.3 has no fp_hists");
    }

    #[test]
    fn measured_history_lengths_follow_the_measured_table() {
        use rayon::prelude::*;
        let cfg = deep(3000, 17, AlertSchema::V3_3);
        let histories: Vec<(usize, usize)> = (0..cfg.count)
            .into_par_iter()
            .map(|index| {
                let alert = synth_record(&cfg, index);
                let prv = array(&alert, "prv_candidates");
                (prv.len(), prv.iter().filter(|past| !matches!(field(past, "candid"), Value::Null)).count())
            })
            .collect();
        let mut lengths: Vec<usize> = histories.iter().map(|&(length, _)| length).collect();
        lengths.sort_unstable();
        let mean = lengths.iter().sum::<usize>() as f64 / lengths.len() as f64;
        // About 1000 objects (the 3 alerts of one share their length): the table's standard
        // deviation 20.4 puts their mean within 0.65 of 17.07 by one sigma.
        assert!((mean - depths::mean_prv_length()).abs() < 2.5, "mean {mean}");
        assert!((10..=14).contains(&lengths[lengths.len() / 2]), "median {}", lengths[lengths.len() / 2]);
        assert!((20..=30).contains(&lengths[lengths.len() * 9 / 10]), "p90 {}", lengths[lengths.len() * 9 / 10]);
        assert!(lengths[0] >= 4 && lengths[lengths.len() - 1] <= 196);
        let is_measured_length = |length: usize| depths::PRV_CANDIDATES.iter().any(|&(l, _)| usize::from(l) == length);
        assert!(lengths.iter().all(|&length| is_measured_length(length)));
        let detections: usize = histories.iter().map(|&(_, detected)| detected).sum();
        let share = detections as f64 / lengths.iter().sum::<usize>() as f64;
        assert!((share - depths::detected_fraction()).abs() < 0.02, "detections {share}");
    }

    #[test]
    fn alerts_of_one_object_carry_the_same_history_even_across_a_million_candids() {
        // Alert 0 has candid …015999999 and alert 1 …016000000: another pid for the alert itself,
        // but the same object, so the same epochs with the same values.
        let cfg = SynthConfig { first_candid: 1_100_000_000_015_999_999, ..deep(9, 3, AlertSchema::V4_02) };
        for run in [0..3, 6..9] {
            let records: Vec<Value> = run.map(|index| synth_record(&cfg, index)).collect();
            for other in &records[1..] {
                assert_eq!(string(other, "objectId"), string(&records[0], "objectId"));
                assert_eq!(array(other, "prv_candidates"), array(&records[0], "prv_candidates"));
                assert_eq!(array(other, "fp_hists"), array(&records[0], "fp_hists"));
            }
        }
        assert_ne!(int(&synth_record(&cfg, 0), "candid") / 1_000_000, int(&synth_record(&cfg, 1), "candid") / 1_000_000);
    }

    #[test]
    fn validate_refuses_overflowing_or_non_positive_candids() {
        assert!(SynthConfig::default().validate().is_ok());
        let overflow = SynthConfig { first_candid: i64::MAX - 5, ..SynthConfig::default() };
        assert!(overflow.validate().is_err());
        let zero = SynthConfig { first_candid: 0, ..SynthConfig::default() };
        assert!(zero.validate().is_err());
    }
}
