//! What one synthetic alert says: the object it belongs to (shared by its ~3 alerts), the
//! exposure and detection behind its `candidate`, its `prv_candidates` history (and, in schema
//! 4.02, the forced photometry of that history, `fp_hists`), its three cutouts, and the Avro
//! record holding all of it, every schema field filled.

use apache_avro::schema::RecordSchema;
use apache_avro::types::Value;

use super::avro::{self, RecordBuilder, SchemaMismatch};
use super::fits::gzip_fits;
use super::pixels::{render_cutouts, CutoutPlan, Image, NanMask, CCD_HEIGHT, CCD_WIDTH, CUTOUT_CENTRE, CUTOUT_SIDE};
use super::{depths, has_nan_pixels, AlertSchema, HistoryDepth, SynthConfig, ALERTS_PER_OBJECT, EDGE_INDEX};
use crate::calendar::civil_from_days;
use crate::rng::{mix64, Rng};

/// Tags of the independent random streams. Each kind of content draws from its own stream, so a
/// change in how one is drawn never shifts the others.
mod stream {
    pub const OBJECT: u64 = 1;
    pub const ALERT: u64 = 2;
    pub const HISTORY: u64 = 3;
    pub const PIXELS: u64 = 4;
    pub const SYNC: u64 = 5;
    pub const NAMES: u64 = 6;
    pub const DEPTH: u64 = 7;
    pub const FORCED: u64 = 8;
}

/// 2025-01-01T00:00 UT: the night all alerts are observed in.
const NIGHT_JD: f64 = 2_460_676.5;
/// Julian date of ZTF night ID 0, so that nid counts nights like ZTF's (about 3000 in 2025).
const NID_EPOCH_JD: f64 = 2_457_676.5;
/// Julian date of 1970-01-01T00:00 UT.
const UNIX_EPOCH_JD: f64 = 2_440_587.5;
const PUBLISHER: &str = "ZTF (www.ztf.caltech.edu)";
const PROGRAM_PI: &str = "Kulkarni";
const PUBLIC_PROGRAM: i32 = 1;
const RB_VERSION: &str = "t17_f5_c3";
const DRB_VERSION: &str = "d6_m7";
const EXPOSURE_SECONDS: f32 = 30.0;
/// ZTF's plate scale, arcsec per pixel.
const PIXEL_SCALE: f64 = 1.01;
const ARCSEC: f64 = 1.0 / 3600.0;
/// Object number of the edge alert's object: far above any `index / 3`, so it is its own object.
const EDGE_OBJECT_NUMBER: u64 = 1 << 32;
/// Object name serials used: 4 x 26^5, i.e. names "aaaaaaa" to "adzzzzz", the range a year of
/// ZTF objects actually spans (a few million names).
const OBJECT_SERIALS: u64 = 4 * 11_881_376;
/// Step between the serials of consecutive objects: coprime with `OBJECT_SERIALS` (odd, not a
/// multiple of 13), so that distinct objects get distinct names (up to 47 million objects), and
/// large, so that consecutive objects do not get consecutive names.
const OBJECT_SERIAL_STEP: u64 = 7_368_787;

/// The record of alert `index` of `cfg`: a pure function of (seed, first_candid, index, schema,
/// history depth).
pub(crate) fn build_alert(cfg: &SynthConfig, index: usize) -> Result<Value, SchemaMismatch> {
    let candid = cfg.candid(index);
    let object = SkyObject::new(cfg.seed, object_number(index));
    let mut rng = Rng::from_keys(&[cfg.seed, stream::ALERT, candid as u64]);

    let rank = (index % ALERTS_PER_OBJECT) as f64;
    let jd = object.first_jd_tonight + rank * 0.03 + rng.uniform(0.0, 0.01);
    let exposure = Exposure::new(&mut rng, &object, jd, candid / 1_000_000);
    let detection = Detection::new(&mut rng, &object, &exposure, candid);
    let history = history(cfg, index, &object, &exposure);

    let schema = avro::alert_record_schema(cfg.schema)?;
    let candidate = candidate_record(avro::nested_record(schema, "candidate")?, &mut rng, &object, &exposure, &detection, &history)?;
    let prv_schema = avro::nested_record(schema, "prv_candidates")?;
    let prv_candidates = history.iter().map(|past| prv_candidate_record(prv_schema, &object, past)).collect::<Result<Vec<_>, _>>()?;

    let mut pixel_rng = Rng::from_keys(&[cfg.seed, stream::PIXELS, candid as u64]);
    let plan = cutout_plan(&mut pixel_rng, index, &object, &exposure, &detection);
    let [science, template, difference] = render_cutouts(&plan, &mut pixel_rng);
    let cutout_schema = avro::nested_record(schema, "cutoutScience")?;
    let pid = exposure.pid;

    let mut alert = RecordBuilder::new(schema);
    alert
        .set("schemavsn", cfg.schema.as_str())
        .set("publisher", PUBLISHER)
        .set("objectId", object.id.as_str())
        .set("candid", candid)
        .set("candidate", candidate)
        .set("prv_candidates", Value::Array(prv_candidates))
        .set("cutoutScience", cutout_record(cutout_schema, format!("candid{candid}_pid{pid}_targ_sci.fits.gz"), &science)?)
        .set("cutoutTemplate", cutout_record(cutout_schema, format!("candid{candid}_ref.fits.gz"), &template)?)
        .set("cutoutDifference", cutout_record(cutout_schema, format!("candid{candid}_pid{pid}_targ_scimref.fits.gz"), &difference)?);
    if cfg.schema.has_fp_hists() {
        let fp_schema = avro::nested_record(schema, "fp_hists")?;
        // Newest first, as the real 4.02 alert lists them (prv_candidates are oldest first).
        let fp_hists = history
            .iter()
            .enumerate()
            .rev()
            .map(|(epoch, past)| fp_hist_record(fp_schema, cfg.seed, &object, epoch, past))
            .collect::<Result<Vec<_>, _>>()?;
        alert.set("fp_hists", Value::Array(fp_hists));
    }
    alert.finish()
}

/// The 16-byte sync marker of alert `candid`'s file: random-looking, but fixed by seed and candid.
pub(crate) fn sync_marker(seed: u64, candid: i64) -> [u8; 16] {
    let mut rng = Rng::from_keys(&[seed, stream::SYNC, candid as u64]);
    let mut marker = [0u8; 16];
    marker[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
    marker[8..].copy_from_slice(&rng.next_u64().to_le_bytes());
    marker
}

/// Which object alert `index` belongs to: alerts come in runs of `ALERTS_PER_OBJECT` per object,
/// except the edge alert, whose object sits at the CCD edge and so is alone.
pub(crate) fn object_number(index: usize) -> u64 {
    if index == EDGE_INDEX {
        EDGE_OBJECT_NUMBER
    } else {
        (index / ALERTS_PER_OBJECT) as u64
    }
}

/// Everything the alerts of one object share: where it is, what is around it, how bright it is.
struct SkyObject {
    number: u64,
    id: String,
    ra: f64,
    dec: f64,
    field: i32,
    rcid: i32,
    /// Position in the readout-channel image, 1-based FITS pixel coordinates.
    xpos: f64,
    ypos: f64,
    /// Typical PSF magnitude of the transient in the difference image.
    mag: f64,
    /// Flux of the quiescent counterpart (in the template), as a fraction of the transient's.
    quiescent_fraction: f64,
    first_jd_tonight: f64,
    nearest_ref: ReferenceSource,
    ps1: [Option<Ps1Source>; 3],
    /// PS1 sources within 30 arcsec (the three closest are `ps1`).
    ps1_within_30: i32,
    gaia: GaiaNeighbours,
    solar_system: Option<SolarSystemMatch>,
    reference_image: ReferenceImage,
    /// Detections before the ones in prv_candidates, and when the first of them was.
    older_detections: i32,
    history_start_jd: f64,
}

/// Nearest source in the reference image's PSF catalogue.
struct ReferenceSource {
    distance_px: f32,
    mag: f32,
    sigma_mag: f32,
    chi: f32,
    sharp: f32,
    ra: f64,
    dec: f64,
}

/// One of the three closest Pan-STARRS1 sources.
struct Ps1Source {
    object_id: i64,
    mags_griz: [f32; 4],
    star_galaxy_score: f32,
    distance_arcsec: f32,
}

struct GaiaNeighbours {
    nearest_arcsec: f32,
    nearest_mag: f32,
    /// Nearest source brighter than G = 14, if one lies within 90 arcsec.
    bright: Option<(f32, f32)>,
}

struct SolarSystemMatch {
    name: String,
    distance_arcsec: f32,
    mag: f32,
}

struct ReferenceImage {
    rfid: i64,
    jd_start: f64,
    jd_end: f64,
    frames: i32,
}

impl SkyObject {
    fn new(seed: u64, number: u64) -> Self {
        let mut rng = Rng::from_keys(&[seed, stream::OBJECT, number]);
        let ra = rng.uniform(0.0, 360.0);
        // Uniform on the sphere between dec -30 and +90: sin(dec) is uniform.
        let dec = rng.uniform(-0.5, 1.0).asin().to_degrees();
        let field = rng.int_in(200, 1900) as i32;
        let rcid = rng.int_in(0, 63) as i32;
        let (xpos, ypos) = if number == EDGE_OBJECT_NUMBER {
            // 12 columns from the high-x edge: a cutout centred on column 3060 ends at 3091, so
            // its last 19 columns are off the CCD and 44 remain, the source in column 31.
            (3060.1, rng.uniform(500.0, 2500.0))
        } else {
            // Far enough from every edge for a whole 63x63 cutout.
            (rng.uniform(40.0, 3030.0), rng.uniform(40.0, 3040.0))
        };
        let older_detections = if rng.chance(0.4) { 0 } else { rng.int_in(1, 60) as i32 };
        let history_start_jd = NIGHT_JD - rng.uniform(40.0, 2200.0);
        let id = object_id(seed, number, calendar_year(history_start_jd));
        let ps1_within_30 = rng.int_in(0, 25) as i32;
        let ps1 = nearest_ps1(&mut rng, ra, dec, ps1_within_30);
        Self {
            nearest_ref: reference_source(&mut rng, ra, dec),
            gaia: gaia_neighbours(&mut rng),
            solar_system: rng.chance(0.05).then(|| SolarSystemMatch {
                name: rng.int_in(1_000, 650_000).to_string(),
                distance_arcsec: rng.uniform(0.1, 5.0) as f32,
                mag: rng.uniform(16.5, 21.0) as f32,
            }),
            reference_image: reference_image(&mut rng, field, rcid),
            // The edge object is bright, so its source is plain to see in the clipped cutouts.
            mag: if number == EDGE_OBJECT_NUMBER { rng.uniform(16.0, 17.0) } else { rng.uniform(15.5, 20.5) },
            quiescent_fraction: if rng.chance(0.4) { 0.0 } else { rng.uniform(0.05, 0.5) },
            first_jd_tonight: NIGHT_JD + rng.uniform(0.12, 0.45),
            number,
            id,
            ra,
            dec,
            field,
            rcid,
            xpos,
            ypos,
            ps1,
            ps1_within_30,
            older_detections,
            history_start_jd,
        }
    }
}

/// "ZTF" + 2-digit year + 7 lowercase letters (a base-26 serial, as ZTF numbers its objects),
/// from a seed-dependent start; distinct objects of one run always get distinct letters.
fn object_id(seed: u64, number: u64, year: i64) -> String {
    let start = mix64(seed ^ mix64(stream::NAMES)) % OBJECT_SERIALS;
    let step = (number % OBJECT_SERIALS) * OBJECT_SERIAL_STEP % OBJECT_SERIALS;
    let mut serial = (start + step) % OBJECT_SERIALS;
    let mut letters = ['a'; 7];
    for letter in letters.iter_mut().rev() {
        *letter = char::from(b'a' + (serial % 26) as u8);
        serial /= 26;
    }
    let letters: String = letters.iter().collect();
    format!("ZTF{:02}{letters}", year.rem_euclid(100))
}

fn reference_source(rng: &mut Rng, ra: f64, dec: f64) -> ReferenceSource {
    // Most transients sit on or next to something already in the reference image.
    let distance_px = if rng.chance(0.7) { rng.uniform(0.05, 1.5) } else { rng.uniform(1.5, 25.0) };
    let (ra_nr, dec_nr) = offset_position(rng, ra, dec, distance_px * PIXEL_SCALE);
    ReferenceSource {
        distance_px: distance_px as f32,
        mag: rng.uniform(14.0, 21.5) as f32,
        sigma_mag: rng.uniform(0.01, 0.15) as f32,
        chi: rng.uniform(0.5, 3.0) as f32,
        sharp: rng.uniform(-0.1, 0.15) as f32,
        ra: ra_nr,
        dec: dec_nr,
    }
}

fn nearest_ps1(rng: &mut Rng, ra: f64, dec: f64, within_30: i32) -> [Option<Ps1Source>; 3] {
    let mut distance = 0.0;
    [0, 1, 2].map(|rank| {
        // Closest first: each next source lies farther out.
        distance = rng.uniform(distance, distance + 10.0);
        (rank < within_30).then(|| {
            let g = rng.uniform(14.5, 22.5);
            let colour = rng.uniform(0.1, 1.2);
            let (ra_ps1, dec_ps1) = offset_position(rng, ra, dec, distance);
            Ps1Source {
                object_id: ps1_object_id(ra_ps1, dec_ps1),
                mags_griz: [g as f32, (g - colour) as f32, (g - 1.4 * colour) as f32, (g - 1.6 * colour) as f32],
                star_galaxy_score: rng.unit() as f32,
                distance_arcsec: distance as f32,
            }
        })
    })
}

/// A PS1-style object ID: declination zone (1/120 deg high), then right ascension.
fn ps1_object_id(ra: f64, dec: f64) -> i64 {
    let zone = ((dec + 90.0) * 120.0).floor() as i64;
    let ra_part = (ra / 360.0 * 1e9).floor() as i64;
    zone * 1_000_000_000_000 + ra_part * 1_000
}

fn gaia_neighbours(rng: &mut Rng) -> GaiaNeighbours {
    GaiaNeighbours {
        nearest_arcsec: rng.uniform(0.1, 30.0) as f32,
        nearest_mag: rng.uniform(12.0, 20.5) as f32,
        bright: rng.chance(0.3).then(|| (rng.uniform(5.0, 90.0) as f32, rng.uniform(8.0, 14.0) as f32)),
    }
}

fn reference_image(rng: &mut Rng, field: i32, rcid: i32) -> ReferenceImage {
    let jd_start = rng.uniform(2_458_200.0, 2_458_500.0);
    ReferenceImage {
        rfid: 600_000_000 + i64::from(field) * 1_000 + i64::from(rcid) * 10,
        jd_start,
        jd_end: jd_start + rng.uniform(30.0, 400.0),
        frames: rng.int_in(15, 40) as i32,
    }
}

/// A point `distance_arcsec` from (ra, dec) in a random direction.
fn offset_position(rng: &mut Rng, ra: f64, dec: f64, distance_arcsec: f64) -> (f64, f64) {
    let angle = rng.uniform(0.0, std::f64::consts::TAU);
    let ddec = distance_arcsec * ARCSEC * angle.sin();
    let dra = distance_arcsec * ARCSEC * angle.cos() / dec.to_radians().cos().max(1e-6);
    ((ra + dra).rem_euclid(360.0), (dec + ddec).clamp(-90.0, 90.0))
}

/// One exposure of the object's field: when, through which filter, how deep, how calibrated.
struct Exposure {
    jd: f64,
    fid: i32,
    pid: i64,
    nid: i32,
    field: i32,
    rcid: i32,
    diffmaglim: f32,
    magzpsci: f32,
    magzpsciunc: f32,
    magzpscirms: f32,
    clrcoeff: f32,
    clrcounc: f32,
}

impl Exposure {
    fn new(rng: &mut Rng, object: &SkyObject, jd: f64, pid: i64) -> Self {
        let fid = if rng.chance(0.45) { 1 } else { 2 };
        // g and r zero points and colour terms differ; ZTF's are about these.
        let (zero_point, colour_term) = if fid == 1 { (26.3, rng.uniform(-0.08, -0.02)) } else { (26.2, rng.uniform(0.06, 0.12)) };
        Self {
            jd,
            fid,
            pid,
            nid: (jd - NID_EPOCH_JD).floor() as i32,
            field: object.field,
            rcid: object.rcid,
            diffmaglim: rng.uniform(19.8, 21.2) as f32,
            magzpsci: rng.gauss(zero_point, 0.08) as f32,
            magzpsciunc: rng.uniform(1e-6, 1e-5) as f32,
            magzpscirms: rng.uniform(0.02, 0.05) as f32,
            clrcoeff: colour_term as f32,
            clrcounc: rng.uniform(1e-6, 1e-5) as f32,
        }
    }

    /// The difference image's file name, as ZTF's pipeline names it.
    fn pdiffimfilename(&self) -> String {
        let (year, month, day, fraction) = calendar(self.jd);
        let filter = match self.fid {
            1 => "zg",
            2 => "zr",
            _ => "zi",
        };
        let ccd = self.rcid / 4 + 1;
        let quadrant = self.rcid % 4 + 1;
        let fraction = ((fraction * 1e6) as u32).min(999_999);
        format!(
            "ztf_{year:04}{month:02}{day:02}{fraction:06}_{field:06}_{filter}_c{ccd:02}_o_q{quadrant}_scimrefdiffimg.fits.fz",
            field = self.field
        )
    }
}

/// One detection: photometry, astrometry and shape of the source in the difference image.
struct Detection {
    candid: i64,
    isdiffpos: &'static str,
    tblid: i64,
    xpos: f32,
    ypos: f32,
    ra: f64,
    dec: f64,
    magpsf: f32,
    sigmapsf: f32,
    chipsf: f32,
    magap: f32,
    sigmagap: f32,
    sky: f32,
    fwhm: f32,
    classtar: f32,
    mindtoedge: f32,
    seeratio: f32,
    aimage: f32,
    bimage: f32,
    nneg: i32,
    nbad: i32,
    rb: f32,
    sumrat: f32,
    magapbig: f32,
    sigmagapbig: f32,
    scorr: f64,
}

impl Detection {
    fn new(rng: &mut Rng, object: &SkyObject, exposure: &Exposure, candid: i64) -> Self {
        let limit = f64::from(exposure.diffmaglim);
        // A detection is at least a 5-sigma one, so brighter than the image's 5-sigma limit.
        let magpsf = rng.gauss(object.mag, 0.3).clamp(15.0, (limit - 0.2).min(21.0));
        let snr = 5.0 * 10f64.powf(0.4 * (limit - magpsf));
        let sigmapsf = (1.0857 / snr).clamp(0.05, 0.2);
        let magap = magpsf + rng.gauss(0.0, 0.05);
        let sigmagap = sigmapsf * rng.uniform(1.0, 1.3);
        let fwhm = rng.uniform(1.8, 2.6);
        let aimage = fwhm * rng.uniform(0.3, 0.45);
        // Within 0.2 px of the object's position, so the edge object stays on column 3060.
        let xpos = object.xpos + rng.uniform(-0.2, 0.2);
        let ypos = object.ypos + rng.uniform(-0.2, 0.2);
        // Astrometric scatter between detections: ~0.08 arcsec.
        let scatter = rng.gauss(0.0, 0.08).abs();
        let (ra, dec) = offset_position(rng, object.ra, object.dec, scatter);
        let rb = 0.25 + 0.75 * rng.unit().sqrt();
        Self {
            candid,
            isdiffpos: if rng.chance(0.8) { "t" } else { "f" },
            tblid: rng.int_in(0, 150),
            xpos: xpos as f32,
            ypos: ypos as f32,
            ra,
            dec,
            magpsf: magpsf as f32,
            sigmapsf: sigmapsf as f32,
            chipsf: rng.uniform(0.5, 3.0) as f32,
            magap: magap as f32,
            sigmagap: sigmagap as f32,
            sky: rng.gauss(0.0, 0.8) as f32,
            fwhm: fwhm as f32,
            classtar: rng.uniform(0.6, 1.0) as f32,
            mindtoedge: distance_to_edge(xpos, ypos) as f32,
            seeratio: rng.uniform(0.8, 1.3) as f32,
            aimage: aimage as f32,
            bimage: (aimage * rng.uniform(0.7, 1.0)) as f32,
            nneg: rng.int_in(0, 6) as i32,
            nbad: if rng.chance(0.9) { 0 } else { rng.int_in(1, 2) as i32 },
            rb: rb as f32,
            sumrat: rng.uniform(0.75, 1.0) as f32,
            magapbig: (magap + rng.gauss(-0.02, 0.03)) as f32,
            sigmagapbig: (sigmagap * rng.uniform(1.05, 1.25)) as f32,
            scorr: snr * rng.uniform(0.8, 1.2),
        }
    }
}

/// Pixels from (xpos, ypos) to the nearest edge of the readout-channel image.
fn distance_to_edge(xpos: f64, ypos: f64) -> f64 {
    let width = CCD_WIDTH as f64;
    let height = CCD_HEIGHT as f64;
    (xpos - 1.0).min(width - xpos).min(ypos - 1.0).min(height - ypos)
}

/// One earlier observation of the object: a detection, or only an upper limit.
struct PastObservation {
    exposure: Exposure,
    detection: Option<Detection>,
}

/// The object's previous observations, oldest first, over the last 30 nights: 2 to 8 of them,
/// about two thirds detections ([`HistoryDepth::Short`]), or as many and as often detected as
/// in real alerts ([`HistoryDepth::Measured`], `depths`). Drawn per object, so its alerts share
/// their history: the epochs, and every value of each.
fn history(cfg: &SynthConfig, index: usize, object: &SkyObject, now: &Exposure) -> Vec<PastObservation> {
    let mut rng = Rng::from_keys(&[cfg.seed, stream::HISTORY, object.number]);
    let (count, detected) = match cfg.history {
        HistoryDepth::Short => (rng.int_in(2, 8) as usize, 0.65),
        HistoryDepth::Measured => {
            let mut depth = Rng::from_keys(&[cfg.seed, stream::DEPTH, object.number]);
            (depths::draw_prv_length(&mut depth), depths::detected_fraction())
        }
    };
    // The 3.3 short histories count back from the alert's own pid, over 30 days (the bytes of
    // data-samples/ are made so). The others count back from the pid of the object's
    // first alert, which all its alerts agree on even when their candids straddle a multiple of
    // 10^6, and keep within 29.9 days, so within 30 days of every alert of the object tonight.
    let classic = cfg.schema == AlertSchema::V3_3 && cfg.history == HistoryDepth::Short;
    let (anchor_pid, oldest_days) = if classic { (now.pid, 30.0) } else { (cfg.candid(first_index_of_object(index)) / 1_000_000, 29.9) };
    let mut days_ago: Vec<f64> = (0..count).map(|_| rng.uniform(0.9, oldest_days)).collect();
    days_ago.sort_by(|a, b| b.total_cmp(a));
    days_ago
        .into_iter()
        .map(|days| {
            let jd = object.first_jd_tonight - days;
            // Processing IDs grow with time, like ZTF's.
            let pid = anchor_pid - (days * 1e6) as i64;
            let exposure = Exposure::new(&mut rng, object, jd, pid);
            let detection = rng.chance(detected).then(|| {
                let candid = pid * 1_000_000 + rng.int_in(0, 999_999);
                Detection::new(&mut rng, object, &exposure, candid)
            });
            PastObservation { exposure, detection }
        })
        .collect()
}

/// Index of the first alert of alert `index`'s object.
fn first_index_of_object(index: usize) -> usize {
    if index == EDGE_INDEX {
        EDGE_INDEX
    } else {
        index / ALERTS_PER_OBJECT * ALERTS_PER_OBJECT
    }
}

/// Forced-photometry processing status codes other than "0" (no warnings) that the generator
/// writes (3 % of the epochs), with ZTF's placeholder -99999 for the flux and its error: what
/// readers of `fp_hists` filter out.
const FORCED_WARNINGS: [&str; 4] = ["56", "57", "58", "61"];
/// ZTF's placeholder for a forced-photometry value that could not be measured.
const NOT_MEASURED: f32 = -99_999.0;

/// The `fp_hist` record of the object's history entry `epoch` (0 = oldest): forced PSF
/// photometry on that entry's exposure (same jd, fid, pid, field, rcid, calibration and limit),
/// a detection's flux where it was detected, noise where it was not. Drawn from the object and
/// the epoch only, so every alert of the object carries the same values for it.
fn fp_hist_record(
    schema: &RecordSchema,
    seed: u64,
    object: &SkyObject,
    epoch: usize,
    past: &PastObservation,
) -> Result<Value, SchemaMismatch> {
    let mut rng = Rng::from_keys(&[seed, stream::FORCED, object.number, epoch as u64]);
    let exposure = &past.exposure;
    let near = &object.nearest_ref;
    let seeing = rng.uniform(1.6, 3.2);
    // The difference image's 5-sigma PSF-fit limit is diffmaglim: the flux error is a fifth of it.
    let flux_unc = psf_flux(exposure.diffmaglim, exposure.magzpsci) / 5.0;
    let signal = past.detection.as_ref().map_or(0.0, |d| {
        let flux = psf_flux(d.magpsf, exposure.magzpsci);
        if d.isdiffpos == "t" {
            flux
        } else {
            -flux
        }
    });
    let (procstatus, flux, unc) = if rng.chance(0.97) {
        ("0", (signal + rng.gauss(0.0, flux_unc)) as f32, (flux_unc * rng.uniform(0.9, 1.1)) as f32)
    } else {
        (rng.pick(&FORCED_WARNINGS), NOT_MEASURED, NOT_MEASURED)
    };
    let background = if exposure.fid == 1 { rng.uniform(100.0, 180.0) } else { rng.uniform(220.0, 320.0) };
    let mut record = RecordBuilder::new(schema);
    record
        .set("field", exposure.field)
        .set("rcid", exposure.rcid)
        .set("fid", exposure.fid)
        .set("pid", exposure.pid)
        .set("rfid", object.reference_image.rfid + i64::from(exposure.fid))
        .set("sciinpseeing", seeing as f32)
        .set("scibckgnd", background as f32)
        .set("scisigpix", science_noise(exposure, seeing) as f32)
        .set("magzpsci", exposure.magzpsci)
        .set("magzpsciunc", exposure.magzpsciunc)
        .set("magzpscirms", exposure.magzpscirms)
        .set("clrcoeff", exposure.clrcoeff)
        .set("clrcounc", exposure.clrcounc)
        .set("exptime", EXPOSURE_SECONDS)
        .set("adpctdif1", rng.uniform(0.05, 0.16) as f32)
        .set("adpctdif2", rng.uniform(0.05, 0.12) as f32)
        .set("diffmaglim", exposure.diffmaglim)
        .set("programid", PUBLIC_PROGRAM)
        .set("jd", exposure.jd)
        .set("forcediffimflux", flux)
        .set("forcediffimfluxunc", unc)
        .set("procstatus", procstatus)
        // In arcsec here (the candidate's distnr is in pixels).
        .set("distnr", (f64::from(near.distance_px) * PIXEL_SCALE) as f32)
        .set("ranr", near.ra)
        .set("decnr", near.dec)
        .set("magnr", near.mag)
        .set("sigmagnr", near.sigma_mag)
        .set("chinr", near.chi)
        .set("sharpnr", near.sharp);
    record.finish()
}

/// Flux [DN] of a PSF of magnitude `mag` at zero point `zero_point`.
fn psf_flux(mag: f32, zero_point: f32) -> f64 {
    10f64.powf(-0.4 * f64::from(mag - zero_point))
}

/// The 16 fields every observation record has, detection or not.
fn set_exposure(record: &mut RecordBuilder, exposure: &Exposure) {
    record
        .set("jd", exposure.jd)
        .set("fid", exposure.fid)
        .set("pid", exposure.pid)
        .set("diffmaglim", exposure.diffmaglim)
        .set("pdiffimfilename", exposure.pdiffimfilename())
        .set("programpi", PROGRAM_PI)
        .set("programid", PUBLIC_PROGRAM)
        .set("nid", exposure.nid)
        .set("rcid", exposure.rcid)
        .set("field", exposure.field)
        .set("magzpsci", exposure.magzpsci)
        .set("magzpsciunc", exposure.magzpsciunc)
        .set("magzpscirms", exposure.magzpscirms)
        .set("clrcoeff", exposure.clrcoeff)
        .set("clrcounc", exposure.clrcounc)
        .set("rbversion", RB_VERSION);
}

/// The 41 fields of a detection (all null for an upper limit, as in ZTF's prv_candidates).
fn set_detection(record: &mut RecordBuilder, object: &SkyObject, exposure: &Exposure, detection: Option<&Detection>) {
    let d = detection;
    let near = d.map(|_| &object.nearest_ref);
    let solar = d.and(object.solar_system.as_ref());
    record
        .set("candid", d.map(|d| d.candid))
        .set("isdiffpos", d.map(|d| d.isdiffpos))
        .set("tblid", d.map(|d| d.tblid))
        .set("xpos", d.map(|d| d.xpos))
        .set("ypos", d.map(|d| d.ypos))
        .set("ra", d.map(|d| d.ra))
        .set("dec", d.map(|d| d.dec))
        .set("magpsf", d.map(|d| d.magpsf))
        .set("sigmapsf", d.map(|d| d.sigmapsf))
        .set("chipsf", d.map(|d| d.chipsf))
        .set("magap", d.map(|d| d.magap))
        .set("sigmagap", d.map(|d| d.sigmagap))
        .set("distnr", near.map(|n| n.distance_px))
        .set("magnr", near.map(|n| n.mag))
        .set("sigmagnr", near.map(|n| n.sigma_mag))
        .set("chinr", near.map(|n| n.chi))
        .set("sharpnr", near.map(|n| n.sharp))
        .set("sky", d.map(|d| d.sky))
        .set("magdiff", d.map(|d| d.magap - d.magpsf))
        .set("fwhm", d.map(|d| d.fwhm))
        .set("classtar", d.map(|d| d.classtar))
        .set("mindtoedge", d.map(|d| d.mindtoedge))
        .set("magfromlim", d.map(|d| exposure.diffmaglim - d.magap))
        .set("seeratio", d.map(|d| d.seeratio))
        .set("aimage", d.map(|d| d.aimage))
        .set("bimage", d.map(|d| d.bimage))
        .set("aimagerat", d.map(|d| d.aimage / d.fwhm))
        .set("bimagerat", d.map(|d| d.bimage / d.fwhm))
        .set("elong", d.map(|d| d.aimage / d.bimage))
        .set("nneg", d.map(|d| d.nneg))
        .set("nbad", d.map(|d| d.nbad))
        .set("rb", d.map(|d| d.rb))
        .set("ssdistnr", solar.map(|s| s.distance_arcsec))
        .set("ssmagnr", solar.map(|s| s.mag))
        .set("ssnamenr", solar.map(|s| s.name.as_str()))
        .set("sumrat", d.map(|d| d.sumrat))
        .set("magapbig", d.map(|d| d.magapbig))
        .set("sigmagapbig", d.map(|d| d.sigmagapbig))
        .set("ranr", near.map(|n| n.ra))
        .set("decnr", near.map(|n| n.dec))
        .set("scorr", d.map(|d| d.scorr));
}

fn prv_candidate_record(schema: &RecordSchema, object: &SkyObject, past: &PastObservation) -> Result<Value, SchemaMismatch> {
    let mut record = RecordBuilder::new(schema);
    set_exposure(&mut record, &past.exposure);
    set_detection(&mut record, object, &past.exposure, past.detection.as_ref());
    record.finish()
}

/// The `candidate` record: the 57 observation fields plus the 46 that only candidates carry
/// (catalogue cross-matches, detection history, reference image, calibration, classifiers).
fn candidate_record(
    schema: &RecordSchema,
    rng: &mut Rng,
    object: &SkyObject,
    exposure: &Exposure,
    detection: &Detection,
    history: &[PastObservation],
) -> Result<Value, SchemaMismatch> {
    let mut record = RecordBuilder::new(schema);
    set_exposure(&mut record, exposure);
    set_detection(&mut record, object, exposure, Some(detection));
    set_history(&mut record, rng, object, exposure, history);
    for (rank, source) in object.ps1.iter().enumerate() {
        set_ps1(&mut record, rank + 1, source.as_ref());
    }
    let reference = &object.reference_image;
    let dsnrms = rng.uniform(2.0, 20.0);
    let ssnrms = dsnrms + rng.uniform(2.0, 30.0);
    let rb = f64::from(detection.rb);
    record
        .set("tooflag", 0)
        .set("nmtchps", object.ps1_within_30)
        .set("rfid", reference.rfid + i64::from(exposure.fid))
        .set("jdstartref", reference.jd_start)
        .set("jdendref", reference.jd_end)
        .set("nframesref", reference.frames)
        .set("dsnrms", dsnrms as f32)
        .set("ssnrms", ssnrms as f32)
        .set("dsdiff", (dsnrms - ssnrms) as f32)
        .set("nmatches", rng.int_in(300, 2000) as i32)
        .set("zpclrcov", rng.uniform(-1e-5, -1e-7) as f32)
        .set("zpmed", (f64::from(exposure.magzpsci) + rng.gauss(0.0, 0.01)) as f32)
        .set("clrmed", rng.uniform(0.4, 0.7) as f32)
        .set("clrrms", rng.uniform(0.2, 0.3) as f32)
        .set("neargaia", object.gaia.nearest_arcsec)
        .set("maggaia", object.gaia.nearest_mag)
        .set("neargaiabright", object.gaia.bright.map(|(distance, _)| distance))
        .set("maggaiabright", object.gaia.bright.map(|(_, mag)| mag))
        .set("exptime", EXPOSURE_SECONDS)
        // The deep-learning score mostly agrees with the random forest's.
        .set("drb", (rb + rng.gauss(0.0, 0.1)).clamp(0.0, 1.0) as f32)
        .set("drbversion", DRB_VERSION);
    record.finish()
}

/// ndethist, ncovhist, jdstarthist, jdendhist: counts that agree with prv_candidates.
fn set_history(record: &mut RecordBuilder, rng: &mut Rng, object: &SkyObject, exposure: &Exposure, history: &[PastObservation]) {
    let past_detections: Vec<f64> = history.iter().filter(|past| past.detection.is_some()).map(|past| past.exposure.jd).collect();
    let detections = object.older_detections + past_detections.len() as i32 + 1;
    let first_jd =
        if object.older_detections > 0 { object.history_start_jd } else { past_detections.first().copied().unwrap_or(exposure.jd) };
    record
        .set("ndethist", detections)
        .set("ncovhist", detections + rng.int_in(10, 1500) as i32)
        .set("jdstarthist", first_jd)
        .set("jdendhist", exposure.jd);
}

/// objectidps<rank>, s{g,r,i,z}mag<rank>, sgscore<rank>, distpsnr<rank>.
fn set_ps1(record: &mut RecordBuilder, rank: usize, source: Option<&Ps1Source>) {
    let band_names = ["sgmag", "srmag", "simag", "szmag"];
    record.set(&format!("objectidps{rank}"), source.map(|s| s.object_id));
    for (band, name) in band_names.iter().enumerate() {
        record.set(&format!("{name}{rank}"), source.map(|s| s.mags_griz[band]));
    }
    record
        .set(&format!("sgscore{rank}"), source.map(|s| s.star_galaxy_score))
        .set(&format!("distpsnr{rank}"), source.map(|s| s.distance_arcsec));
}

/// What the cutouts of this alert show, from its photometry (and the special cases by index).
fn cutout_plan(rng: &mut Rng, index: usize, object: &SkyObject, exposure: &Exposure, detection: &Detection) -> CutoutPlan {
    let transient_flux = psf_flux(detection.magpsf, exposure.magzpsci);
    let mut quiescent_flux = object.quiescent_fraction * transient_flux;
    let (science_flux, template_flux) = if detection.isdiffpos == "t" {
        (quiescent_flux + transient_flux, quiescent_flux)
    } else {
        // A negative subtraction: the source has faded since the reference, which must have it.
        quiescent_flux = quiescent_flux.max(0.5 * transient_flux);
        (quiescent_flux, quiescent_flux + transient_flux)
    };
    CutoutPlan {
        sky: rng.uniform(80.0, 130.0),
        noise: science_noise(exposure, f64::from(detection.fwhm)),
        fwhm: f64::from(detection.fwhm),
        science_flux,
        template_flux,
        nan_mask: has_nan_pixels(index).then(|| nan_mask(rng, index)),
        clipped_width: clipped_width(f64::from(detection.xpos)),
    }
}

/// Pixel noise of the science image [DN] that makes `diffmaglim` the difference image's 5-sigma
/// PSF-fit limit, so every detection (brighter than the limit) really stands out of the noise.
fn science_noise(exposure: &Exposure, fwhm: f64) -> f64 {
    let limit_flux = psf_flux(exposure.diffmaglim, exposure.magzpsci);
    let sigma_psf = fwhm / (8.0 * std::f64::consts::LN_2).sqrt();
    // PSF-fit flux noise = pixel noise x sqrt(4 pi sigma^2) (the PSF's noise-equivalent area).
    let noise_equivalent_side = (4.0 * std::f64::consts::PI * sigma_psf * sigma_psf).sqrt();
    let difference_noise = limit_flux / (5.0 * noise_equivalent_side);
    // The template (a co-add) has half the science noise: diff² = sci² (1 + 1/4).
    difference_noise / 1.25f64.sqrt()
}

/// The NaN pattern of a NaN alert: alternately a bad template column inside the central 21x21
/// stamp (but off the source column), and a small masked block in a corner of the science image.
fn nan_mask(rng: &mut Rng, index: usize) -> NanMask {
    if (index / 8) % 2 == 0 {
        let offset = rng.int_in(3, 7) as usize;
        let column = if rng.chance(0.5) { CUTOUT_CENTRE - offset } else { CUTOUT_CENTRE + offset };
        NanMask::TemplateColumn { column }
    } else {
        let side = rng.int_in(3, 5) as usize;
        let far = CUTOUT_SIDE - side - 2;
        NanMask::ScienceBlock { row: rng.pick(&[2, far]), column: rng.pick(&[2, far]), side }
    }
}

/// Columns of a 63-wide cutout centred on `xpos` (1-based) that fall on the CCD, when some don't.
fn clipped_width(xpos: f64) -> Option<usize> {
    let centre = xpos.round() as i64;
    let last_column = centre + CUTOUT_CENTRE as i64;
    let beyond = last_column - CCD_WIDTH as i64;
    (beyond > 0).then(|| CUTOUT_SIDE.saturating_sub(beyond as usize))
}

fn cutout_record(schema: &RecordSchema, file_name: String, image: &Image) -> Result<Value, SchemaMismatch> {
    let mut record = RecordBuilder::new(schema);
    record.set("fileName", file_name).set("stampData", gzip_fits(image.width, image.height, &image.pixels));
    record.finish()
}

/// (year, month, day, fraction of the UT day) of a Julian date.
fn calendar(jd: f64) -> (i64, u32, u32, f64) {
    let since_epoch = jd - UNIX_EPOCH_JD;
    let days = since_epoch.floor();
    let (year, month, day) = civil_from_days(days as i64);
    (year, month, day, since_epoch - days)
}

fn calendar_year(jd: f64) -> i64 {
    calendar(jd).0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_matches_known_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        let (year, month, day, fraction) = calendar(NIGHT_JD + 0.25);
        assert_eq!((year, month, day), (2025, 1, 1));
        assert!((fraction - 0.25).abs() < 1e-9);
    }

    #[test]
    fn object_ids_are_ztf_shaped_and_distinct() {
        let numbers = (0..100_000).chain([EDGE_OBJECT_NUMBER]);
        let ids: Vec<String> = numbers.map(|n| object_id(1, n, 2025)).collect();
        for id in &ids {
            assert_eq!(id.len(), 12);
            assert!(id.starts_with("ZTF25a"), "{id}");
            assert!(id[5..].chars().all(|c| c.is_ascii_lowercase()), "{id}");
        }
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len());
        assert_eq!(object_id(1, 7, 2019).len(), 12);
        assert!(object_id(1, 7, 2019).starts_with("ZTF19"));
    }

    #[test]
    fn edge_object_clips_to_44_columns_and_others_do_not() {
        let edge = SkyObject::new(1, EDGE_OBJECT_NUMBER);
        for jitter in [-0.2, 0.0, 0.2] {
            assert_eq!(clipped_width(edge.xpos + jitter), Some(44));
        }
        assert_eq!(clipped_width(3041.0), None);
        assert_eq!(clipped_width(3042.0), Some(62));
        for number in 0..500 {
            let object = SkyObject::new(9, number);
            assert_eq!(clipped_width(object.xpos + 0.2), None);
        }
    }

    #[test]
    fn pdiffimfilename_looks_like_ztfs() {
        let object = SkyObject::new(3, 0);
        let mut rng = Rng::from_keys(&[0]);
        let exposure = Exposure::new(&mut rng, &object, NIGHT_JD + 0.5, 1_100_000_000_015);
        let name = exposure.pdiffimfilename();
        assert!(name.starts_with("ztf_20250101500000_"), "{name}");
        assert!(name.ends_with("_scimrefdiffimg.fits.fz"));
        assert!(name.len() <= 64, "{name} is too long for the catalog's column");
    }
}
