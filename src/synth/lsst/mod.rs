//! Synthetic Rubin (LSST) alerts: every field of the writer schema (any bundled version, 7.0 to
//! 11.1) filled, realistic where it matters, and byte-identical for the same configuration.
//!
//! # What an alert holds
//! - **Ids**: `diaSourceId` 18 digits (169813…), unique within a run; 7.x carries it as `alertId`,
//!   8.0 on as `diaSourceId`. Past sources of an object get ids from 1696…, forced sources 1697….
//! - **Objects recur**: alerts come in blocks of 6 cut into runs (each boundary with chance 0.65),
//!   each run one object observed again minutes apart the same night (`midpointMjdTai` ≈ 61041.2),
//!   so alert j of a run carries the run's alerts 0..j−1 in `prvDiaSources`, exactly as they
//!   were sent, after the object's past.
//! - **Past depth**: per object, no earlier detection with chance 0.75, else 1 + ⌊Exp(mean 7)⌋
//!   capped at 30, 0.3 to 4 days apart; forced photometry on those epochs plus 0–5 more, or for a
//!   new object none (chance 0.7) or 1–8. `prvDiaSources` is null when empty, as Rubin sends it;
//!   `prvDiaForcedSources` is `[]` when empty.
//! - **Solar System alerts**: about 1 in 10 (runs of one alert, chance 0.2): `diaObject` null,
//!   `diaSource.diaObjectId` 0 and `ssObjectId` set, `ssSource` and `MPCORB`/`mpc_orbits` set (7.x:
//!   `ssObject`), histories null.
//! - **NaN and null**: trail, dipole, moment and likelihood fields NaN 85 % of the time, other
//!   floats NaN 2 %; nullable numbers null 3–8 %; per-band diaObject fields of bands without data
//!   NaN and null (0 where 11.0 makes them required).
//! - **Cutouts**: three plain FITS files (module `cutout`), square, side 30 (55 %), 31–46 (30 %)
//!   or 47–102 (15 %), the same for the three; each null with chance 0.03.

mod cutout;
mod encode;

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use apache_avro::schema::{RecordSchema, Schema};
use flate2::{Compression, GzBuilder};
use rayon::prelude::*;

use self::cutout::{Channel, Scene};
use self::encode::{Kind, Names, Rec, Val};
use super::avro::put_long;
use super::SynthError;
use crate::calendar::civil_from_days;
use crate::rng::Rng;

/// A Rubin alert schema version bundled in `schemas/lsst/`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum LsstSchema {
    V7_0,
    V7_1,
    V7_2,
    V7_3,
    V7_4,
    V8_0,
    V9_0,
    /// The default: what Rubin sent from late 2025.
    #[default]
    V10_0,
    V11_0,
    V11_1,
}

const SCHEMA_JSONS: [&str; 10] = [
    include_str!("../../../schemas/lsst/7.0.avsc"),
    include_str!("../../../schemas/lsst/7.1.avsc"),
    include_str!("../../../schemas/lsst/7.2.avsc"),
    include_str!("../../../schemas/lsst/7.3.avsc"),
    include_str!("../../../schemas/lsst/7.4.avsc"),
    include_str!("../../../schemas/lsst/8.0.avsc"),
    include_str!("../../../schemas/lsst/9.0.avsc"),
    include_str!("../../../schemas/lsst/10.0.avsc"),
    include_str!("../../../schemas/lsst/11.0.avsc"),
    include_str!("../../../schemas/lsst/11.1.avsc"),
];

impl LsstSchema {
    /// Every bundled version, oldest first.
    pub const ALL: [LsstSchema; 10] = [
        LsstSchema::V7_0,
        LsstSchema::V7_1,
        LsstSchema::V7_2,
        LsstSchema::V7_3,
        LsstSchema::V7_4,
        LsstSchema::V8_0,
        LsstSchema::V9_0,
        LsstSchema::V10_0,
        LsstSchema::V11_0,
        LsstSchema::V11_1,
    ];

    fn slot(self) -> usize {
        self as usize
    }

    /// (major, minor).
    #[must_use]
    pub fn version(self) -> (i32, i32) {
        const VERSIONS: [(i32, i32); 10] = [(7, 0), (7, 1), (7, 2), (7, 3), (7, 4), (8, 0), (9, 0), (10, 0), (11, 0), (11, 1)];
        VERSIONS[self.slot()]
    }

    /// "10.0".
    #[must_use]
    pub fn as_str(self) -> String {
        let (major, minor) = self.version();
        format!("{major}.{minor}")
    }

    /// The Confluent schema id: major·100 + minor (10.0 → 1000).
    #[must_use]
    pub fn confluent_id(self) -> i32 {
        let (major, minor) = self.version();
        major * 100 + minor
    }

    /// The bundled schema text (self-contained: named types inlined at first use).
    #[must_use]
    pub fn json(self) -> &'static str {
        SCHEMA_JSONS[self.slot()]
    }

    /// The parsed schema, parsed once per process.
    ///
    /// # Panics
    /// If a bundled schema does not parse (checked by the tests).
    #[must_use]
    pub fn schema(self) -> &'static Schema {
        static SCHEMAS: [OnceLock<Schema>; 10] = [const { OnceLock::new() }; 10];
        SCHEMAS[self.slot()].get_or_init(|| Schema::parse_str(self.json()).expect("bundled Rubin schema parses"))
    }

    fn names(self) -> &'static Names<'static> {
        static NAMES: [OnceLock<Names<'static>>; 10] = [const { OnceLock::new() }; 10];
        NAMES[self.slot()].get_or_init(|| Names::of(self.schema()))
    }

    fn record(self) -> &'static RecordSchema {
        match self.schema() {
            Schema::Record(record) => record,
            _ => panic!("the bundled Rubin schema {} is not a record", self.as_str()),
        }
    }

    /// 7.x: top-level `alertId`, `ssObject`, `prvDiaNondetectionLimits`.
    fn is_v7(self) -> bool {
        self.version().0 == 7
    }
}

impl std::str::FromStr for LsstSchema {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        LsstSchema::ALL.into_iter().find(|schema| schema.as_str() == text).ok_or_else(|| format!("no bundled Rubin schema {text}"))
    }
}

/// How alerts are put into files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Framing {
    /// One Kafka message per file, `<diaSourceId>.avro`: byte 0, the schema id as a big-endian
    /// int32, one schemaless datum.
    #[default]
    Confluent,
    /// All alerts in one Avro object container file, `alerts.avro` (codec null, one block per
    /// alert, as fastavro writes alerts larger than its 16,000-byte sync interval).
    Container,
}

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LsstConfig {
    pub count: usize,
    pub seed: u64,
    pub schema: LsstSchema,
    pub framing: Framing,
    /// Gzip each file (`.avro.gz`).
    pub gzip: bool,
}

impl Default for LsstConfig {
    fn default() -> Self {
        Self { count: 40, seed: 1, schema: LsstSchema::default(), framing: Framing::default(), gzip: false }
    }
}

const ALERT_ID_BASE: i64 = 169_813_006_000_000_000;
const PAST_ID_BASE: i64 = 169_600_000_000_000_000;
const FORCED_ID_BASE: i64 = 169_700_000_000_000_000;
const TAG_BLOCK: u64 = 0x10;
const TAG_OBJECT: u64 = 0x11;
const TAG_SOURCE: u64 = 0x12;
const TAG_ALERT: u64 = 0x13;
const TAG_PIXELS: u64 = 0x14;
const TAG_SYNC: u64 = 0x15;
const BLOCK: usize = 6;
const BANDS: [&str; 6] = ["u", "g", "r", "i", "z", "y"];
const REASONS: [&str; 5] = ["ddf_cosmos", "ddf_edfs_a", "ddf_edfs_b", "ddf_ecdfs", "wfd"];

impl LsstConfig {
    fn seed_part(&self) -> i64 {
        (self.seed % 1000) as i64 * 1_000_000_000
    }

    /// `diaSourceId` of alert `index`.
    #[must_use]
    pub fn dia_source_id(&self, index: usize) -> i64 {
        let mut rng = Rng::from_keys(&[self.seed, TAG_ALERT, index as u64]);
        ALERT_ID_BASE + self.seed_part() + index as i64 * 1000 + rng.int_in(0, 999)
    }

    /// The file names this configuration writes, in order.
    #[must_use]
    pub fn file_names(&self) -> Vec<String> {
        let gz = if self.gzip { ".gz" } else { "" };
        match self.framing {
            Framing::Confluent => (0..self.count).map(|index| format!("{}.avro{gz}", self.dia_source_id(index))).collect(),
            Framing::Container => vec![format!("alerts.avro{gz}")],
        }
    }
}

/// The run (one object's alerts) that alert `index` belongs to.
#[derive(Debug, Clone, Copy)]
struct Run {
    /// Index of the run's first alert; also the object's number.
    start: usize,
    len: usize,
}

fn run_of(seed: u64, index: usize) -> Run {
    let block = index / BLOCK;
    let mut rng = Rng::from_keys(&[seed, TAG_BLOCK, block as u64]);
    let mut cuts = [false; BLOCK];
    cuts[0] = true;
    for cut in cuts.iter_mut().skip(1) {
        *cut = rng.chance(0.65);
    }
    let offset = index % BLOCK;
    let start = (0..=offset).rev().find(|&at| cuts[at]).unwrap_or(0);
    let end = (offset + 1..BLOCK).find(|&at| cuts[at]).unwrap_or(BLOCK);
    Run { start: block * BLOCK + start, len: end - start }
}

/// One object: where it is, how bright, its past and its run of alerts.
struct Object {
    run: Run,
    solar: bool,
    ra: f64,
    dec: f64,
    flux: f64,
    host: f64,
    main_band: usize,
    ss_object_id: i64,
    /// Times of the past detections, oldest first.
    past: Vec<f64>,
    /// Times of the past forced measurements, oldest first.
    forced: Vec<f64>,
    /// Times of the run's alerts.
    times: Vec<f64>,
}

fn object(cfg: &LsstConfig, run: Run) -> Object {
    let mut rng = Rng::from_keys(&[cfg.seed, TAG_OBJECT, run.start as u64]);
    let solar = run.len == 1 && rng.chance(0.2);
    let ra = rng.uniform(0.0, 360.0);
    let dec = (rng.uniform(-1.0, 0.2f64.sin())).asin().to_degrees();
    let sign = if rng.chance(0.1) { -1.0 } else { 1.0 };
    let flux = sign * 3000.0 * (0.8 * rng.normal()).exp();
    let host = if rng.chance(0.5) { 20_000.0 * (rng.normal()).exp() } else { 0.0 };
    let main_band = rng.int_in(0, 5) as usize;
    let ss_object_id = 21_000_000_000_000_000 + rng.int_in(0, 999_999_999_999_999);
    let first = 61_041.2 + rng.uniform(0.0, 0.03);
    let mut times = vec![first];
    for _ in 1..run.len {
        let last = times[times.len() - 1];
        times.push(last + rng.uniform(0.0005, 0.02));
    }
    let depth = if solar || rng.chance(0.75) { 0 } else { (1 + (-7.0 * (1.0 - rng.unit()).ln()) as usize).min(30) };
    let mut past = Vec::with_capacity(depth);
    let mut when = first;
    for _ in 0..depth {
        when -= rng.uniform(0.3, 4.0);
        past.push(when);
    }
    past.reverse();
    let forced_extra = if solar {
        0
    } else if depth == 0 {
        if rng.chance(0.7) {
            0
        } else {
            rng.int_in(1, 8) as usize
        }
    } else {
        rng.int_in(0, 5) as usize
    };
    let mut forced = past.iter().map(|t| t + 0.0001).collect::<Vec<_>>();
    let mut when = past.first().copied().unwrap_or(first);
    for _ in 0..forced_extra {
        when -= rng.uniform(0.5, 3.0);
        forced.push(when);
    }
    forced.sort_by(f64::total_cmp);
    Object { run, solar, ra, dec, flux, host, main_band, ss_object_id, past, forced, times }
}

impl Object {
    fn dia_object_id(&self, cfg: &LsstConfig) -> i64 {
        if self.solar {
            0
        } else if self.past.is_empty() {
            cfg.dia_source_id(self.run.start)
        } else {
            self.past_id(cfg, 0)
        }
    }

    fn past_id(&self, cfg: &LsstConfig, entry: usize) -> i64 {
        PAST_ID_BASE + cfg.seed_part() + self.run.start as i64 * 100 + entry as i64
    }

    fn forced_id(&self, cfg: &LsstConfig, entry: usize) -> i64 {
        FORCED_ID_BASE + cfg.seed_part() + self.run.start as i64 * 100 + entry as i64
    }
}

/// The `visit` of an exposure at `mjd`: day of observation (UTC − 12 h) as YYYYMMDD, then a
/// 5-digit sequence number.
fn visit(mjd: f64) -> i64 {
    let night = mjd - 0.5;
    let (year, month, day) = civil_from_days(night.floor() as i64 - 40_587);
    let seq = (night.fract() * 86_400.0 / 35.0) as i64;
    (year * 10_000 + i64::from(month) * 100 + i64::from(day)) * 100_000 + seq
}

/// A diaSource of `obj` with id `id` at `mjd`.
fn source(cfg: &LsstConfig, obj: &Object, id: i64, mjd: f64) -> Rec {
    let mut rng = Rng::from_keys(&[cfg.seed, TAG_SOURCE, id as u64]);
    let band = if rng.chance(0.6) { obj.main_band } else { rng.int_in(0, 5) as usize };
    let err = rng.uniform(250.0, 480.0);
    let flux = obj.flux * (1.0 + 0.25 * rng.normal()) + err * rng.normal();
    let arcsec = 1.0 / 3600.0;
    let mut rec = Rec::new(Kind::Source, id as u64);
    rec.set("diaSourceId", Val::Long(id))
        .set("visit", Val::Long(visit(mjd)))
        .set("detector", Val::Long(rng.int_in(0, 188)))
        .set("diaObjectId", Val::Long(obj.dia_object_id(cfg)))
        .set("ssObjectId", Val::Long(if obj.solar { obj.ss_object_id } else { 0 }))
        .set("parentDiaSourceId", Val::Long(0))
        .set("midpointMjdTai", Val::Double(mjd))
        .set("ra", Val::Double(obj.ra + 0.05 * arcsec * rng.normal() / obj.dec.to_radians().cos()))
        .set("dec", Val::Double(obj.dec + 0.05 * arcsec * rng.normal()))
        .set("x", Val::Double(rng.uniform(15.0, 4057.0)))
        .set("y", Val::Double(rng.uniform(15.0, 3985.0)))
        .set("xErr", Val::Double(rng.uniform(0.05, 0.9)))
        .set("yErr", Val::Double(rng.uniform(0.05, 0.9)))
        .set("psfFlux", Val::Double(flux))
        .set("psfFluxErr", Val::Double(err))
        .set("snr", Val::Double(flux / err))
        .set("isNegative", Val::Bool(flux < 0.0))
        .set("scienceFlux", Val::Double(obj.host + flux.max(0.0) + err * rng.normal()))
        .set("scienceFluxErr", Val::Double(err * 0.95))
        .set("reliability", Val::Double(rng.unit()))
        .set("band", Val::Str(BANDS[band].to_string()))
        .set("timeProcessedMjdTai", Val::Double(mjd + rng.uniform(0.003, 0.02)))
        .set("timeWithdrawnMjdTai", Val::Double(f64::NAN));
    rec
}

fn forced_source(cfg: &LsstConfig, obj: &Object, id: i64, mjd: f64) -> Rec {
    let mut rng = Rng::from_keys(&[cfg.seed, TAG_SOURCE, id as u64]);
    let err = rng.uniform(250.0, 480.0);
    let flux = if rng.chance(0.5) { obj.flux * (1.0 + 0.25 * rng.normal()) } else { 0.0 } + err * rng.normal();
    let band = if rng.chance(0.6) { obj.main_band } else { rng.int_in(0, 5) as usize };
    let mut rec = Rec::new(Kind::Forced, id as u64);
    rec.set("diaForcedSourceId", Val::Long(id))
        .set("diaObjectId", Val::Long(obj.dia_object_id(cfg)))
        .set("ra", Val::Double(obj.ra))
        .set("dec", Val::Double(obj.dec))
        .set("x", Val::Double(rng.uniform(15.0, 4057.0)))
        .set("y", Val::Double(rng.uniform(15.0, 3985.0)))
        .set("visit", Val::Long(visit(mjd)))
        .set("detector", Val::Long(rng.int_in(0, 188)))
        .set("psfFlux", Val::Double(flux))
        .set("psfFluxErr", Val::Double(err))
        .set("midpointMjdTai", Val::Double(mjd))
        .set("scienceFlux", Val::Double(obj.host + flux.max(0.0)))
        .set("scienceFluxErr", Val::Double(err))
        .set("band", Val::Str(BANDS[band].to_string()))
        .set("timeProcessedMjdTai", Val::Double(mjd + 0.3))
        .set("timeWithdrawnMjdTai", Val::Double(f64::NAN));
    rec
}

fn band_bit(rec: &Rec) -> u8 {
    match rec.get("band") {
        Some(Val::Str(band)) => BANDS.iter().position(|b| b == band).map_or(0, |at| 1 << at),
        _ => 0,
    }
}

fn f64_of(rec: &Rec, name: &str) -> f64 {
    match rec.get(name) {
        Some(Val::Double(value)) => *value,
        _ => f64::NAN,
    }
}

/// The alert record of `index` and the scene of its cutouts.
fn build_alert(cfg: &LsstConfig, index: usize) -> Rec {
    let run = run_of(cfg.seed, index);
    let obj = object(cfg, run);
    let position = index - run.start;
    let id = cfg.dia_source_id(index);
    let mut rng = Rng::from_keys(&[cfg.seed, TAG_ALERT, id as u64]);
    let dia_source = source(cfg, &obj, id, obj.times[position]);

    let mut history: Vec<Rec> = obj.past.iter().enumerate().map(|(k, &t)| source(cfg, &obj, obj.past_id(cfg, k), t)).collect();
    history.extend((0..position).map(|j| source(cfg, &obj, cfg.dia_source_id(run.start + j), obj.times[j])));
    let mut forced: Vec<Rec> = obj.forced.iter().enumerate().map(|(k, &t)| forced_source(cfg, &obj, obj.forced_id(cfg, k), t)).collect();
    let forced_past = forced.len();
    forced.extend((0..position).map(|j| forced_source(cfg, &obj, obj.forced_id(cfg, forced_past + j), obj.times[j] + 0.0001)));

    let mut alert = Rec::new(Kind::Alert, id as u64);
    alert.set("alertId", Val::Long(id)).set("diaSourceId", Val::Long(id));
    let reason = rng.pick(&REASONS);
    alert.set("observation_reason", if rng.chance(0.15) { Val::Null } else { Val::Str(reason.to_string()) });
    alert.set("target_name", if rng.chance(0.2) { Val::Null } else { Val::Str(format!("lowdust, {reason}")) });

    if obj.solar {
        alert.set("diaObject", Val::Null).set("prvDiaSources", Val::Null).set("prvDiaForcedSources", Val::Null);
        let mut ss = Rec::new(Kind::Solar, obj.ss_object_id as u64);
        ss.set("ssObjectId", Val::Long(obj.ss_object_id)).set("diaSourceId", Val::Long(id));
        if cfg.schema.is_v7() {
            alert.set("ssObject", Val::Rec(Box::new(ss)));
        } else {
            let designation = format!("20{:02} SB{}", rng.int_in(0, 25), rng.int_in(1, 99));
            ss.set("designation", Val::Str(designation.clone()));
            let mut orbit = Rec::new(Kind::Solar, obj.ss_object_id as u64 ^ 1);
            orbit.set("ssObjectId", Val::Long(obj.ss_object_id)).set("designation", Val::Str(designation));
            alert
                .set("ssSource", Val::Rec(Box::new(ss)))
                .set("MPCORB", Val::Rec(Box::new(orbit.clone())))
                .set("mpc_orbits", Val::Rec(Box::new(orbit)));
        }
    } else {
        let mask = history.iter().chain(std::iter::once(&dia_source)).fold(0, |mask, rec| mask | band_bit(rec));
        let first = history.first().map_or(obj.times[position], |rec| f64_of(rec, "midpointMjdTai"));
        let mut dia_object = Rec::new(Kind::Object(mask), obj.dia_object_id(cfg) as u64 ^ (position as u64) << 56);
        dia_object
            .set("diaObjectId", Val::Long(obj.dia_object_id(cfg)))
            .set("ra", Val::Double(obj.ra))
            .set("dec", Val::Double(obj.dec))
            .set("validityStartMjdTai", Val::Double(obj.times[position] + 0.001))
            .set("nDiaSources", Val::Long(history.len() as i64 + 1))
            .set("firstDiaSourceMjdTai", Val::Double(first))
            .set("lastDiaSourceMjdTai", Val::Double(obj.times[position]));
        alert.set("diaObject", Val::Rec(Box::new(dia_object)));
        alert.set("prvDiaSources", if history.is_empty() { Val::Null } else { Val::Arr(history) });
        alert.set("prvDiaForcedSources", Val::Arr(forced));
        alert.set("prvDiaNondetectionLimits", Val::Null);
        alert.set("ssObject", Val::Null).set("ssSource", Val::Null).set("MPCORB", Val::Null).set("mpc_orbits", Val::Null);
    }

    let scene = scene(cfg, &obj, &dia_source, &mut rng);
    for (name, channel) in
        [("cutoutDifference", Channel::Difference), ("cutoutScience", Channel::Science), ("cutoutTemplate", Channel::Template)]
    {
        let value = if rng.chance(0.03) {
            Val::Null
        } else {
            Val::Bytes(cutout::cutout(&scene, channel, &[cfg.seed, TAG_PIXELS, id as u64, channel as u64]))
        };
        alert.set(name, value);
    }
    alert.set("diaSource", Val::Rec(Box::new(dia_source)));
    alert
}

fn scene(cfg: &LsstConfig, obj: &Object, dia_source: &Rec, rng: &mut Rng) -> Scene {
    let roll = rng.unit();
    let side = if roll < 0.55 {
        30
    } else if roll < 0.85 {
        rng.int_in(31, 46) as usize
    } else {
        rng.int_in(47, 102) as usize
    };
    let seeing = rng.uniform(1.3, 2.2);
    Scene {
        side,
        x: f64_of(dia_source, "x") as f32 as f64,
        y: f64_of(dia_source, "y") as f32 as f64,
        ra: f64_of(dia_source, "ra"),
        dec: f64_of(dia_source, "dec"),
        psf_flux: f64_of(dia_source, "psfFlux"),
        host_flux: obj.host,
        seeing,
        template_seeing: seeing * rng.uniform(0.7, 0.95),
        template_psf_side: rng.pick(&[39, 41, 49, 77]),
        rotation: rng.uniform(-180.0, 180.0),
        rotpa: cfg.schema.version().0 >= 10,
    }
}

/// The schemaless Avro datum of alert `index` (what follows the Confluent header).
#[must_use]
pub fn alert_datum(cfg: &LsstConfig, index: usize) -> Vec<u8> {
    let rec = build_alert(cfg, index);
    let mut out = Vec::with_capacity(128 * 1024);
    encode::write_record(cfg.schema.names(), cfg.schema.record(), &rec, &mut out);
    out
}

/// Alert `index` as one Kafka message: `0x00`, the schema id (big-endian int32), the datum.
#[must_use]
pub fn confluent_message(cfg: &LsstConfig, index: usize) -> Vec<u8> {
    let datum = alert_datum(cfg, index);
    let mut out = Vec::with_capacity(datum.len() + 5);
    out.push(0);
    out.extend_from_slice(&cfg.schema.confluent_id().to_be_bytes());
    out.extend_from_slice(&datum);
    out
}

fn sync_marker(cfg: &LsstConfig) -> [u8; 16] {
    let mut rng = Rng::from_keys(&[cfg.seed, TAG_SYNC, cfg.schema.confluent_id() as u64]);
    let mut sync = [0u8; 16];
    sync[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
    sync[8..].copy_from_slice(&rng.next_u64().to_le_bytes());
    sync
}

/// Writes every alert as one Avro object container file (codec null, one block per alert).
fn write_container(cfg: &LsstConfig, out: &mut dyn Write) -> io::Result<()> {
    let schema: serde_json::Value = serde_json::from_str(cfg.schema.json()).map_err(io::Error::other)?;
    let mut header = b"Obj\x01".to_vec();
    put_long(&mut header, 2);
    for (key, value) in [("avro.schema", schema.to_string().into_bytes()), ("avro.codec", b"null".to_vec())] {
        encode::put_bytes(&mut header, key.as_bytes());
        encode::put_bytes(&mut header, &value);
    }
    put_long(&mut header, 0);
    let sync = sync_marker(cfg);
    header.extend_from_slice(&sync);
    out.write_all(&header)?;
    let mut start = 0;
    while start < cfg.count {
        let end = (start + 64).min(cfg.count);
        let data: Vec<Vec<u8>> = (start..end).into_par_iter().map(|index| alert_datum(cfg, index)).collect();
        for datum in data {
            let mut block = Vec::with_capacity(20);
            put_long(&mut block, 1);
            put_long(&mut block, datum.len() as i64);
            out.write_all(&block)?;
            out.write_all(&datum)?;
            out.write_all(&sync)?;
        }
        start = end;
    }
    Ok(())
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzBuilder::new().mtime(0).write(Vec::with_capacity(bytes.len() / 2), Compression::fast());
    encoder.write_all(bytes).expect("gzip into a Vec cannot fail");
    encoder.finish().expect("gzip into a Vec cannot fail")
}

/// File `k` of [`LsstConfig::file_names`], as bytes.
fn file_bytes(cfg: &LsstConfig, k: usize) -> io::Result<Vec<u8>> {
    let raw = match cfg.framing {
        Framing::Confluent => confluent_message(cfg, k),
        Framing::Container => {
            let mut out = Vec::new();
            write_container(cfg, &mut out)?;
            out
        }
    };
    Ok(if cfg.gzip { gzip(&raw) } else { raw })
}

/// Writes the files of `cfg` into `dir` (created if needed); returns their paths in order.
///
/// # Errors
/// [`SynthError::Io`] naming the folder or file that could not be written.
pub fn write_lsst_files(dir: &Path, cfg: &LsstConfig) -> Result<Vec<PathBuf>, SynthError> {
    let io_error = |path: &Path, source| SynthError::Io { path: path.to_path_buf(), source };
    fs::create_dir_all(dir).map_err(|source| io_error(dir, source))?;
    let names = cfg.file_names();
    if cfg.framing == Framing::Container {
        // Streamed (through gzip if asked): the container may be large.
        let path = dir.join(&names[0]);
        let file = File::create(&path).map_err(|source| io_error(&path, source))?;
        let written = if cfg.gzip {
            let mut writer = GzBuilder::new().mtime(0).write(BufWriter::new(file), Compression::fast());
            write_container(cfg, &mut writer).and_then(|()| writer.finish()).and_then(|mut inner| inner.flush())
        } else {
            let mut writer = BufWriter::new(file);
            write_container(cfg, &mut writer).and_then(|()| writer.flush())
        };
        written.map_err(|source| io_error(&path, source))?;
        return Ok(vec![path]);
    }
    names
        .par_iter()
        .enumerate()
        .map(|(k, name)| {
            let path = dir.join(name);
            file_bytes(cfg, k).and_then(|bytes| fs::write(&path, bytes)).map_err(|source| io_error(&path, source))?;
            Ok(path)
        })
        .collect()
}

/// Writes the files of `cfg` as members `<stem>/<name>` of the gzip'd tar `path` (fixed member
/// headers and gzip mtime 0, so equal configurations give equal bytes).
///
/// # Errors
/// [`SynthError::Io`] naming `path`, [`SynthError::NoArchiveName`] if it has no file name.
pub fn write_lsst_tarball(path: &Path, cfg: &LsstConfig) -> Result<(), SynthError> {
    let name = path.file_name().ok_or_else(|| SynthError::NoArchiveName { path: path.to_path_buf() })?.to_string_lossy().into_owned();
    let stem = name.strip_suffix(".tar.gz").or_else(|| name.strip_suffix(".tgz")).unwrap_or(&name).to_string();
    let io_error = |source| SynthError::Io { path: path.to_path_buf(), source };
    let file = File::create(path).map_err(io_error)?;
    let gzip = GzBuilder::new().mtime(0).write(BufWriter::new(file), Compression::fast());
    let mut archive = tar::Builder::new(gzip);
    let names = cfg.file_names();
    for start in (0..names.len()).step_by(128) {
        let end = (start + 128).min(names.len());
        let files: Vec<io::Result<Vec<u8>>> = (start..end).into_par_iter().map(|k| file_bytes(cfg, k)).collect();
        for (k, bytes) in (start..end).zip(files) {
            let bytes = bytes.map_err(io_error)?;
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(1_767_225_600);
            archive.append_data(&mut header, format!("{stem}/{}", names[k]), bytes.as_slice()).map_err(io_error)?;
        }
    }
    let gzip = archive.into_inner().map_err(io_error)?;
    let mut buffered = gzip.finish().map_err(io_error)?;
    buffered.flush().map_err(io_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use apache_avro::types::Value;

    use super::*;

    fn field<'v>(record: &'v Value, name: &str) -> &'v Value {
        let Value::Record(fields) = record else { panic!("not a record") };
        match &fields.iter().find(|(key, _)| key == name).unwrap_or_else(|| panic!("no field {name}")).1 {
            Value::Union(_, inner) => inner,
            plain => plain,
        }
    }

    #[test]
    fn every_version_round_trips_through_apache_avro() {
        for schema in LsstSchema::ALL {
            let cfg = LsstConfig { count: 24, seed: 3, schema, ..LsstConfig::default() };
            for index in 0..cfg.count {
                let datum = alert_datum(&cfg, index);
                let mut reader = datum.as_slice();
                let decoder = apache_avro::reader::datum::GenericDatumReader::builder(schema.schema()).build().expect("reader");
                let value = decoder.read_value(&mut reader).expect("decodes");
                assert!(reader.is_empty(), "{}: {} bytes left", schema.as_str(), reader.len());
                let id_field = if schema.is_v7() { "alertId" } else { "diaSourceId" };
                assert_eq!(field(&value, id_field), &Value::Long(cfg.dia_source_id(index)));
            }
        }
    }

    #[test]
    fn runs_cover_blocks_and_histories_grow() {
        let cfg = LsstConfig { count: 60, seed: 9, ..LsstConfig::default() };
        let mut recurring = 0;
        for index in 0..cfg.count {
            let run = run_of(cfg.seed, index);
            assert!(run.start <= index && index < run.start + run.len && run.len <= BLOCK);
            assert_eq!(run.start / BLOCK, index / BLOCK);
            if run.len > 1 {
                recurring += 1;
            }
        }
        assert!(recurring > cfg.count / 3, "{recurring} alerts of recurring objects");
    }

    #[test]
    fn visits_follow_the_day_of_observation() {
        // Fink 169813006111211570: midpointMjdTai 61041.22 in visit 2025123100240.
        assert_eq!(visit(61_041.22) / 100_000, 20_251_231);
    }
}
