//! Command-line surface: clap types only, no I/O. Each subcommand's options become a struct
//! that `cmd::<name>::run` takes whole.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `--version`: a build with optional features names them (the fault hooks of a test build, the
/// generator), so that the tests and scripts can check the binary they run has what they need.
const VERSION: &str = match (cfg!(feature = "fault-injection"), cfg!(feature = "generate")) {
    (true, true) => concat!(env!("CARGO_PKG_VERSION"), " (fault-injection: a test build; generate)"),
    (true, false) => concat!(env!("CARGO_PKG_VERSION"), " (fault-injection: a test build)"),
    (false, true) => concat!(env!("CARGO_PKG_VERSION"), " (generate)"),
    (false, false) => env!("CARGO_PKG_VERSION"),
};

/// Turn ZTF public alert packets into one out-of-core Zarr v2 training store.
#[derive(Debug, Parser)]
#[command(name = "ztf2zarr", version = VERSION, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a Zarr v2 store (stamps + catalog) from alert files, folders and nightly archives, or append to one.
    #[command(after_help = BUILD_EXAMPLES)]
    Build(BuildArgs),
    /// Label (or relabel) every alert of a store from a classifier CSV, joined on objectId.
    #[command(after_help = LABEL_EXAMPLES)]
    Label(LabelArgs),
    /// Write train/val/test index arrays (splits/…), grouped by objectId and stratified by label.
    #[command(after_help = SPLIT_EXAMPLES)]
    Split(SplitArgs),
    /// Describe a store: rows, size, nights, schema versions, labels, flags, the builds that made it.
    #[command(after_help = "Examples:\n  ztf2zarr info train.zarr\n  ztf2zarr info train.zarr --json | jq .nights")]
    Info(InfoArgs),
    /// Check a store end to end (shapes, every chunk, unique candids, attrs, .zmetadata); exit 1 on problems.
    #[command(after_help = "Examples:\n  ztf2zarr verify train.zarr && echo sound")]
    Verify(VerifyArgs),
    /// Remove the lock object a killed writer left on a store in object storage.
    #[command(after_help = UNLOCK_EXAMPLES)]
    Unlock(UnlockArgs),
    /// Write synthetic, schema-faithful alert packets: ZTF (schema 3.3 or 4.02) or Rubin (7.0 to 11.1), for samples, tests and benchmarks.
    #[command(after_help = GENERATE_EXAMPLES)]
    Generate(GenerateArgs),
}

const UNLOCK_EXAMPLES: &str = "\
Examples:
  ztf2zarr unlock s3://bucket/train.zarr
  ztf2zarr unlock --force s3://bucket/train.zarr

A writer on object storage holds the store by a lock object, STORE/.ztf2zarr/lock, which it
renews every third of a lease (60 s, ZTF2ZARR_LEASE_SECONDS) while it works and deletes when it
ends. A writer that was killed leaves it; the next writer takes it over once it has watched it
unchanged for a lease (at once if the holder was a process on the same machine that is gone).
unlock watches the lock for up to a lease as well: it removes a lock that nobody renews in that
time, and refuses one whose holder renews it unless --force is given (the message names the
holder: pid, host, start time). No machine's clock is trusted to judge another's lease. Local
stores need no unlock: their lock dies with its process.
";

const BUILD_EXAMPLES: &str = "\
Examples:
  ztf2zarr build data-samples -o samples.zarr
  ztf2zarr build ztf_public_20200202.tar.gz -o train.zarr --threads 2
  ztf2zarr build alerts/ night.tar.gz -o full.zarr --stamp-size 63 --keep-nan
  ztf2zarr build ztf_public_20200203.tar.gz -o train.zarr      # appends the next night
  ztf2zarr build night/ -o s3://bucket/train.zarr               # a store on object storage
  ztf2zarr build alerts/ -o stamps-only.zarr --no-lightcurves    # no light-curve tables
  ztf2zarr build alerts/ -o raw.zarr --keep-masked               # masked pixels stay -3.4e38
  ztf2zarr build rubin-night/ -o rubin.zarr                      # Rubin (LSST) alerts
  ztf2zarr build rubin-night/ -o rubin.zarr --stamp-size 45 --no-variance
  ztf2zarr build rubin-night/ -o rubin.zarr --psf                # and the PSF images, at their own size
  ztf2zarr build rubin-night/ -o rubin.zarr --schema-dir my-schemas/   # schemas newer than 11.1

The survey (ZTF or Rubin) is told from the first input's packets for a new store, or given with
--survey; a store keeps its own, and a packet of the other survey is rejected (docs/rubin.md).

STORE is a folder, or a URL on object storage: s3://BUCKET/PATH (configured by AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_REGION, and AWS_ENDPOINT_URL with AWS_ALLOW_HTTP=true for a local
S3 server), gs://BUCKET/PATH (GOOGLE_APPLICATION_CREDENTIALS), az://CONTAINER/PATH (AZURE_*).

Inputs are read in the order given (folders in sorted order, archives member by member), and rows
keep that order. Alerts are unique by their id (ZTF's candid, Rubin's diaSourceId): repeats, in
the inputs or already in the store, are counted as duplicates, not written. Bad packets are
rejected with a reason (listed in the summary and in STORE/rejects/, one log per build); the
build still succeeds unless --strict is given.

Light curves: every stored alert's history (ZTF: prv_candidates, its own candidate, and fp_hists
in schema 4.x; Rubin: prvDiaSources, its own diaSource, and prvDiaForcedSources) goes into
STORE/lightcurves/ as tables of columns, each version of an epoch once (ZTF: detections by
candid, upper limits by objectId+jd+fid, forced photometry by objectId+jd+fid+pid; Rubin: by
diaSourceId and diaForcedSourceId; a packet that carries other values for an epoch adds a row,
nothing is rewritten), with an object index and each alert's own history, exactly the values its
packet carried (docs/lightcurves.md). --no-lightcurves leaves them out of a new store.

Missing pixels: a NaN pixel, a pixel holding ZTF's masked-pixel value (-3.4028235e38, the most
negative float32; any value <= -1e30 counts) and a pixel beyond the edge of a clipped cutout are
all stored as 0, or as NaN with --keep-nan, so that no batch holds -3.4e38. stamp_flags still
says which rows had them (2 = NaN, 8 = masked, 1 = edge). --keep-masked stores the masked value
as it is, pixel-exact with the cutout.

An existing STORE is appended to, in place: earlier rows stay as they are, and the new rows
become visible all at once when the build commits (a build that is interrupted leaves the store
as it was). Options that fix the layout (--stamp-size, --chunk-rows, --keep-nan, --keep-masked,
--zstd-level) are the store's; giving a different value is refused. One ztf2zarr writes a store
at a time: a build that finds it being written stops at once, or with --wait queues behind the
other one.";

const LABEL_EXAMPLES: &str = "\
Examples:
  ztf2zarr label train.zarr --labels unlabeled_set_predictions.csv
  ztf2zarr label train.zarr --labels labeled_set.csv --classes QSO,YSO,AGN --other Otro

The CSV is read as a stream; its id column (--id-column, default oid) is matched to objectId and
its class column (--class-column, default: predicted_class or classALeRCE, whichever exists)
gives the label. Without --classes every class keeps its own name (codes follow sorted names);
with --classes the listed classes get codes 0, 1, … in that order and every other class goes to
the --other bucket (default name: other). Alerts whose object is not in the CSV are unlabeled:
label \"\", label_code -1.

A class listed in --classes must be a class of the CSV, as written there (case included; spaces
around names are trimmed): one that no row has is refused, with the CSV's classes and their
counts, so that a typo cannot put every object in --other. --other without --classes is refused
too (every class keeps its name then, so there is nothing to put in it). The summary counts the
alerts of each class; `ztf2zarr info` shows the same counts.";

const SPLIT_EXAMPLES: &str = "\
Examples:
  ztf2zarr split train.zarr --train 0.8 --val 0.1 --test 0.1 --seed 7
  ztf2zarr split train.zarr --seed 7 --one-per-object --balance 12000

Objects, not alerts, are assigned to splits (all alerts of an object land in the same split, so
nothing leaks between them), separately within each label so every split keeps the class mix.
The result is deterministic for a seed. Read it with root['splits/train'][:]. A class of too few
objects to reach every split is named in a warning (stderr; the split is still written).

Split after labelling: an unlabeled store can be split (objects still never straddle splits),
with a warning that nothing is stratified, and --labeled-only on it is refused. The splits record
what they were made from; rows appended or labels changed later leave them stale, and `info`
and `verify` say so. verify reports stale splits as a WARNING line and still exits 0 (they are
not damage: every file is sound); run split again. Scripts can test `splits_stale` in
`ztf2zarr info --json`.";

const GENERATE_EXAMPLES: &str = "\
Examples:
  ztf2zarr generate -o data-samples/ztf_public_20250101 --count 32
  ztf2zarr generate -o /tmp/night --count 20000 --tarball ztf_public_20250101.tar.gz
  ztf2zarr generate -o /tmp/night --count 40 --labels labels.csv
  ztf2zarr generate -o /tmp/deep --count 20000 --schema 4.02 --history measured
  ztf2zarr generate --survey lsst -o /tmp/rubin --count 200                  # schema 10.0
  ztf2zarr generate --survey lsst -o /tmp/rubin9 --schema 9.0 --framing container --gzip

Every three alerts share an object, and the alerts of an object carry the same history (the same
epochs with the same values). --schema 4.02 adds fp_hists: forced photometry on each exposure of
prv_candidates, newest first. --history measured draws each
object's number of prv_candidates (and of fp_hists) from the lengths counted on 548 real ZTF
alerts (schemas 1.3-4.02): 4 to 196, mean 17.1, median 12, 90 % at most 24; 30 % of the entries
are detections, the rest upper limits.

The defaults reproduce data-samples/: `generate -o DIR --count 32` writes
data-samples/ztf_public_20250101 byte for byte, and with any larger --count the first 32 alerts
are those 32 (data-samples/README.md gives the commands of the other files).

--survey lsst writes Rubin alerts of any bundled schema (--schema 7.0 ... 11.1, default 10.0):
with --framing confluent (the default) one Kafka message per file, DIR/<diaSourceId>.avro (byte 0,
the schema id major*100+minor as a big-endian int32, one schemaless Avro datum); with --framing
container all alerts in one Avro object container file, DIR/alerts.avro. --gzip gzips each file;
--tarball puts the files into one archive. Objects recur within blocks of 6 alerts (growing
prvDiaSources), about 1 alert in 11 is a Solar System alert (diaObject null), and each alert has
three FITS cutouts (PRIMARY, UNCERT, PSFIMAGE; square, 30 to 102 px) with the source at
CRPIX - 1. --first-candid, --history and --labels are ZTF only.";

/// Options of `ztf2zarr build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Alert files (.avro), folders (searched recursively) and nightly archives (.tar.gz).
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,

    /// The Zarr store to create, or to append to if it exists.
    #[arg(short, long, value_name = "STORE")]
    pub output: PathBuf,

    /// Side of the square stamp cut around each source [new store default: 21 for ZTF (odd, 1..=63, the centre
    /// of the 63x63 cutout), 30 for Rubin (1..=102)].
    #[arg(long, value_name = "PIXELS")]
    pub stamp_size: Option<usize>,

    /// The survey whose alerts a new store holds: ztf or lsst [default: the survey of the first input's packets;
    /// an existing store keeps its own].
    #[arg(long, value_name = "NAME")]
    pub survey: Option<String>,

    /// Rubin (LSST) writer schemas newer than the bundled ones (7.0 to 11.1): a folder of self-contained
    /// `<major>.<minor>.avsc` files, one per version, as in the source's schemas/lsst/ (make one from the published
    /// lsst/alert_packet schema with schemas/lsst/make_lsst_schemas.py). A message's Confluent schema id
    /// major*100+minor picks its file (12.0.avsc reads id 1200); a file of a bundled version replaces the bundled
    /// schema. Files not ending in .avsc are ignored; every .avsc file is checked before anything is written.
    /// Refused for a ZTF build (ZTF alerts carry their schema).
    #[arg(long, value_name = "DIR")]
    pub schema_dir: Option<PathBuf>,

    /// Keep NaN pixels as NaN (default: replace them by 0).
    #[arg(long)]
    pub keep_nan: bool,

    /// Keep ZTF's masked-pixel value -3.4e38 as it is (default: store it as missing, like NaN: 0, or NaN with --keep-nan).
    #[arg(long)]
    pub keep_masked: bool,

    /// Alerts per chunk along the first axis of every array [new store default: 1000].
    #[arg(long, value_name = "ROWS")]
    pub chunk_rows: Option<usize>,

    /// Worker threads for decoding and compressing (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Fail (exit 2, store left as it was) if any input is rejected.
    #[arg(long)]
    pub strict: bool,

    /// zstd level for the chunks (1..=22) [new store default: 1].
    #[arg(long, value_name = "LEVEL")]
    pub zstd_level: Option<i32>,

    /// Do not show a progress bar.
    #[arg(long)]
    pub no_progress: bool,

    /// Make a new store without light curves (the `lightcurves` group); a store without them stays so.
    #[arg(long)]
    pub no_lightcurves: bool,

    /// Make a new store without the `variance` array (Rubin: the cutouts' variance planes beside the stamps);
    /// refused on an existing store that has it.
    #[arg(long)]
    pub no_variance: bool,

    /// Make a new store with the cutouts' PSF images, each at its own size (Rubin only): the `psf` group,
    /// `psf/pixels` and `psf/index` (docs/rubin.md). On an existing store it must match its layout (refused on one built without it).
    #[arg(long)]
    pub psf: bool,

    /// Label the new alerts from a classifier CSV (see `ztf2zarr label --help`).
    #[command(flatten)]
    pub labels: LabelSource,

    /// Queue behind another writer of the store.
    #[command(flatten)]
    pub wait: WaitArg,
}

/// `--wait[=SECONDS]` and `--single-writer`, for every command that writes a store.
#[derive(Debug, Args)]
pub struct WaitArg {
    /// If another ztf2zarr is writing the store, wait for it (at most SECONDS, if given) instead of stopping at once.
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, require_equals = true)]
    pub wait: Option<Option<u64>>,

    /// Write a store on an object store that cannot replace an object conditionally (If-Match), which is otherwise
    /// refused: you promise that no two ztf2zarr write it at once (docs/appending.md).
    #[arg(long)]
    pub single_writer: bool,
}

/// Where labels come from and how classes map to codes.
#[derive(Debug, Args)]
pub struct LabelSource {
    /// Classifier CSV with one row per object (e.g. ALeRCE's predictions).
    #[arg(long, value_name = "FILE.csv")]
    pub labels: Option<PathBuf>,

    /// CSV column holding the object id the catalog joins on [default: oid for ZTF stores (the ZTF objectId, as
    /// ALeRCE names it), diaObjectId for Rubin stores].
    #[arg(long, value_name = "NAME")]
    pub id_column: Option<String>,

    /// CSV column holding the class [default: predicted_class or classALeRCE].
    #[arg(long, value_name = "NAME")]
    pub class_column: Option<String>,

    /// Keep only these classes (comma-separated, in code order; spaces around names are trimmed); others go to --other.
    /// Each must be a class of the CSV, exactly as written there.
    #[arg(long, value_delimiter = ',', value_name = "A,B,…")]
    pub classes: Option<Vec<String>>,

    /// Name of the bucket for classes not in --classes [default: other]; only with --classes.
    #[arg(long, value_name = "NAME")]
    pub other: Option<String>,
}

/// Options of `ztf2zarr unlock`.
#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// The store whose lock object to remove (a URL on object storage).
    pub store: PathBuf,

    /// Remove the lock at once, without watching whether its holder renews it (a holder that is alive is stopped at its next write).
    #[arg(long)]
    pub force: bool,
}

/// Options of `ztf2zarr label`. `--labels`, optional for `build`, is required here: the usage line
/// and the help show it so, under its own heading.
#[derive(Debug, Args)]
#[command(mut_arg("labels", |arg| arg.required(true).help_heading("Required")))]
pub struct LabelArgs {
    /// The store to label.
    pub store: PathBuf,

    /// Labels and class mapping (--labels is required here).
    #[command(flatten)]
    pub source: LabelSource,

    /// Queue behind another writer of the store.
    #[command(flatten)]
    pub wait: WaitArg,
}

/// Options of `ztf2zarr split`.
#[derive(Debug, Args)]
pub struct SplitArgs {
    /// The store to split.
    pub store: PathBuf,

    /// Fraction of objects for training.
    #[arg(long, default_value_t = 0.8)]
    pub train: f64,

    /// Fraction of objects for validation.
    #[arg(long, default_value_t = 0.1)]
    pub val: f64,

    /// Fraction of objects for testing.
    #[arg(long, default_value_t = 0.1)]
    pub test: f64,

    /// Seed of the shuffle: the same seed gives the same splits.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Keep only the first alert (lowest row) of each object.
    #[arg(long)]
    pub one_per_object: bool,

    /// Keep at most this many alerts per label (whole objects, chosen by the seed).
    #[arg(long, value_name = "ALERTS")]
    pub balance: Option<usize>,

    /// Leave out unlabeled alerts.
    #[arg(long)]
    pub labeled_only: bool,

    /// Queue behind another writer of the store.
    #[command(flatten)]
    pub wait: WaitArg,
}

/// Options of `ztf2zarr generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Folder to write into (created if missing).
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,

    /// Survey whose alerts to write: ztf (Avro container files, as ZTF's archive) or lsst (Rubin).
    #[arg(long, value_enum, default_value_t = GenerateSurvey::Ztf)]
    pub survey: GenerateSurvey,

    /// Number of alerts to write.
    #[arg(long, default_value_t = 40)]
    pub count: usize,

    /// Seed: the same seed and count give byte-identical files.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// First candid (ZTF only); alert i gets candid FIRST + i. Another range gives alerts that do
    /// not collide with these (to append), on the same dates: jd does not follow the candid.
    /// [default: 1100000000015000000]
    #[arg(long)]
    pub first_candid: Option<i64>,

    /// Write the alerts into one nightly archive of this name inside DIR instead of loose files.
    #[arg(long, value_name = "NAME.tar.gz")]
    pub tarball: Option<String>,

    /// Also write a classifier CSV of this name inside DIR (oid,predicted_class,probability), one
    /// row per object (ZTF only).
    #[arg(long, value_name = "NAME.csv")]
    pub labels: Option<String>,

    /// Alert schema to write. ZTF: 3.3 (default), or 4.02 (null-first unions, and fp_hists on
    /// every prv_candidates exposure). Rubin: 7.0, 7.1, 7.2, 7.3, 7.4, 8.0, 9.0, 10.0 (default),
    /// 11.0 or 11.1.
    #[arg(long, value_enum, value_name = "VERSION", hide_possible_values = true)]
    pub schema: Option<GenerateSchema>,

    /// History length per object (ZTF only): short (2 to 8 prv_candidates, the default) or
    /// measured (drawn from real alerts: mean 17, max 196).
    #[arg(long, value_enum, value_name = "DEPTH")]
    pub history: Option<GenerateHistory>,

    /// How Rubin alerts are put into files (lsst only): confluent (default: one Kafka message
    /// per file, DIR/<diaSourceId>.avro) or container (all alerts in one Avro object container
    /// file, DIR/alerts.avro).
    #[arg(long, value_enum, value_name = "FRAMING")]
    pub framing: Option<GenerateFraming>,

    /// Gzip each file (lsst only): .avro.gz.
    #[arg(long)]
    pub gzip: bool,
}

/// `ztf2zarr generate --survey`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GenerateSurvey {
    /// Zwicky Transient Facility.
    Ztf,
    /// Vera C. Rubin Observatory (LSST).
    Lsst,
}

/// `ztf2zarr generate --schema`: the versions of both surveys (checked against `--survey`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GenerateSchema {
    /// ZTF alert schema 3.3: unions value-first, no fp_hists.
    #[value(name = "3.3")]
    V3_3,
    /// ZTF alert schema 4.02: unions null-first, fp_hists filled.
    #[value(name = "4.02")]
    V4_02,
    #[value(name = "7.0")]
    Lsst7_0,
    #[value(name = "7.1")]
    Lsst7_1,
    #[value(name = "7.2")]
    Lsst7_2,
    #[value(name = "7.3")]
    Lsst7_3,
    #[value(name = "7.4")]
    Lsst7_4,
    #[value(name = "8.0")]
    Lsst8_0,
    #[value(name = "9.0")]
    Lsst9_0,
    #[value(name = "10.0")]
    Lsst10_0,
    #[value(name = "11.0")]
    Lsst11_0,
    #[value(name = "11.1")]
    Lsst11_1,
}

/// `ztf2zarr generate --history`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GenerateHistory {
    /// 2 to 8 prv_candidates per object, uniformly; about two thirds detections.
    Short,
    /// Lengths drawn from those of 548 real alerts (mean 17.1, median 12, p90 24, max 196); 30 % detections.
    Measured,
}

/// `ztf2zarr generate --framing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GenerateFraming {
    /// One Kafka message per file: byte 0, the schema id (big-endian int32), the datum.
    Confluent,
    /// One Avro object container file holding every alert.
    Container,
}

/// Options of `ztf2zarr info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The store to describe.
    pub store: PathBuf,

    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Options of `ztf2zarr verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The store to check.
    pub store: PathBuf,
}
