//! Surveys: what an alert packet of one survey is, and how it becomes a catalog row, stamps and
//! history rows. Two surveys: ZTF (`ztf/`) and Rubin (`lsst/`). This file is the seam the rest
//! of the tool sees: a [`Survey`] declares its store ([`Tables`]) and makes a [`Decode`]r, which
//! gives back, per input, an [`Alert`] or a [`Reject`] with its [`RejectKind`].

pub mod decode;
pub mod lsst;
pub mod ztf;

use std::sync::Arc;

use crate::table::Tables;

/// One survey: what its store holds, and how its packets are read.
pub trait Survey: Sync + std::fmt::Debug {
    /// What its store holds: the catalog, the light-curve tables, the stamps.
    fn tables(&self) -> &'static Tables;

    /// Its name, as stores record it (`ztf`): its tables'.
    fn name(&self) -> &'static str {
        self.tables().survey
    }

    /// A decoder cutting stamps as `spec` says, reading alerts' histories into light-curve rows
    /// or not, and reading packets with the writer schemas `given` (checked by
    /// [`Survey::check_schemas`]) besides its own.
    fn decoder(&self, spec: StampSpec, lightcurves: bool, psf: bool, given: &[GivenSchema]) -> Box<dyn Decode>;

    /// Whether writer schemas given at run time (`build --schema-dir`) can be used: each must
    /// be a schema of this survey's packets, named as it expects; else why not, naming the file.
    /// By default a survey takes none: its packets carry their writer schema.
    ///
    /// # Errors
    /// The reason, for the user.
    fn check_schemas(&self, given: &[GivenSchema]) -> Result<(), String> {
        let _ = given;
        Err(format!(
            "{} alerts carry their own writer schema; given schemas are for Rubin (LSST) messages, which name theirs by an id",
            self.title()
        ))
    }

    /// Whether `head`, the first bytes of an input file (inflated when the file is gzip'd),
    /// is a packet of this survey: a cheap look at its framing, not a decoding.
    fn recognizes(&self, head: &[u8]) -> bool;

    /// How users call it (`ZTF`, `Rubin (LSST)`).
    fn title(&self) -> &'static str;
}

/// Bytes of an input a survey is told apart by: an Avro container's header holds its schema's
/// namespace well within them.
pub const HEAD_BYTES: usize = 64 << 10;

/// The survey whose packet `head` starts (see [`Survey::recognizes`]); gzip'd heads are
/// inflated first, up to [`HEAD_BYTES`].
#[must_use]
pub fn detect(head: &[u8]) -> Option<&'static dyn Survey> {
    let inflated;
    let head = if head.starts_with(&[0x1f, 0x8b]) {
        inflated = inflate_head(head);
        inflated.as_slice()
    } else {
        head
    };
    SURVEYS.iter().copied().find(|survey| survey.recognizes(head))
}

/// The first [`HEAD_BYTES`] a gzip stream inflates to (fewer if it ends or breaks sooner).
fn inflate_head(gzip: &[u8]) -> Vec<u8> {
    use std::io::Read as _;
    let mut out = Vec::new();
    let _ = flate2::read::MultiGzDecoder::new(gzip).take(HEAD_BYTES as u64).read_to_end(&mut out);
    out
}

/// Why a file `this` survey cannot read is another survey's packet, if it is one: the reason
/// of its reject, naming both (a store holds the alerts of one survey).
#[must_use]
pub fn foreign(this: &dyn Survey, bytes: &[u8]) -> Option<Reject> {
    let other = detect(&bytes[..bytes.len().min(HEAD_BYTES)])?;
    (other.name() != this.name()).then(|| {
        Reject::new(
            RejectKind::NotAnAlert,
            format!(
                "a {} alert, and this store holds {} alerts (a store holds the alerts of one survey: build a separate store for each)",
                other.title(),
                this.title()
            ),
        )
    })
}

/// A writer schema given at run time (`build --schema-dir`), for packets that name their schema
/// by an id instead of carrying it.
#[derive(Debug, Clone)]
pub struct GivenSchema {
    /// Where it was read from, for messages.
    pub path: String,
    /// Its file name, which the survey reads its version from (`12.0.avsc`).
    pub name: String,
    /// Its JSON text.
    pub json: Vec<u8>,
}

/// Reads one input's bytes into alerts; shared by the worker threads.
pub trait Decode: Send + Sync {
    /// Every alert record of the input named `name`, each an alert or inside a reject.
    fn decode_file(&self, name: &str, bytes: &[u8]) -> Vec<Result<Alert, Reject>>;
}

/// The surveys this tool reads.
pub static SURVEYS: [&(dyn Survey + 'static); 2] = [&ztf::Ztf, &lsst::Lsst];

/// The survey named `name`, if this tool reads it.
#[must_use]
pub fn by_name(name: &str) -> Option<&'static dyn Survey> {
    SURVEYS.iter().copied().find(|survey| survey.name() == name)
}

/// How stamps are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StampSpec {
    /// Side of the stored stamp: the centre `[start, start + size)` of the cutout's frame.
    pub size: usize,
    /// Keep NaN pixels (and fill with NaN) instead of 0.
    pub keep_nan: bool,
    /// Keep the survey's masked-pixel value as it is instead of storing the fill. By default a
    /// masked pixel is missing data like NaN: −3.4e38 in a training batch overflows any loss.
    pub keep_masked: bool,
}

impl StampSpec {
    /// Pixels in one stamp.
    #[must_use]
    pub fn pixels(&self) -> usize {
        self.size * self.size
    }

    /// The value of a missing pixel.
    #[must_use]
    pub fn fill(&self) -> f32 {
        if self.keep_nan {
            f32::NAN
        } else {
            0.0
        }
    }
}

/// What the writer of some alerts says of the catalog's columns.
pub trait WriterSchema: Send + Sync + std::fmt::Debug {
    /// Descriptions of the catalog columns it documents, by column index.
    fn docs(&self) -> &[(usize, String)];
    /// Fields it has that the catalog has no column for.
    fn unmapped(&self) -> &[String];
    /// Its version, if it gives one.
    fn version(&self) -> Option<&str>;
}

/// One decoded alert, ready to be stored.
#[derive(Debug)]
pub struct Alert {
    /// The alert's id: the store's unique key.
    pub id: i64,
    /// The packed catalog row.
    pub row: Vec<u8>,
    /// Three stamps (science, template, difference), each `size²` pixels, row-major.
    pub stamps: Vec<f32>,
    /// Their variance planes, in the same order and window (empty when the survey's cutouts
    /// carry none).
    pub variance: Vec<f32>,
    /// Its cutouts' PSF images (empty unless the decoder reads them: `build --psf`).
    pub psf: Psfs,
    /// The writer schema it was decoded with (for column docs).
    pub writer: Arc<dyn WriterSchema>,
    /// Columns whose string value was longer than the column and was cut.
    pub truncated: Vec<String>,
    /// Its history as light-curve rows (None when the decoder reads no light curves).
    pub history: Option<History>,
}

/// The PSF images of an alert's three cutouts (science, template, difference), each at its own
/// size: they differ within one alert, so they are kept whole rather than cut to one side.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Psfs {
    /// Every image's pixels, row-major, image after image.
    pub pixels: Vec<f32>,
    /// Each cutout's image as (height, width); None when the cutout is null or has no PSF image.
    pub shapes: [Option<(usize, usize)>; 3],
}

/// The packed history rows of one alert, in the layouts of the survey's light-curve tables.
#[derive(Debug, Default, Clone)]
pub struct History {
    /// The alert's own time (ZTF: its candidate's jd), which orders alerts for forced photometry.
    pub jd: f64,
    /// Rows of `lightcurves/epochs`: the earlier epochs, then the alert's own.
    pub epochs: Vec<u8>,
    /// Rows of `lightcurves/forced`: forced photometry.
    pub forced: Vec<u8>,
}

/// Why an input, or one record in it, is not stored: one class per reason, named in the
/// summary and in `rejects.jsonl`; `docs/limits.md` says when each one happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectKind {
    /// The bytes are not a readable Avro container, or a block of it does not decode.
    CorruptAvro,
    /// A valid Avro file whose writer schema is not an alert of the survey.
    NotAnAlert,
    /// A value of the alert cannot be stored: a missing key, a value its column cannot hold, a
    /// non-finite epoch time, an oversized history.
    BadValue,
    /// A cutout is null.
    NullCutout,
    /// A cutout cannot be read as an image, or breaks a cutout limit.
    BadCutout,
    /// A file, or the rest of an archive, could not be read.
    Unreadable,
    /// A gzip member of an archive failed its CRC-32 or length check.
    ArchiveChecksum,
    /// A gzip member does not inflate, or intact bytes are not a tar header.
    ArchiveCorrupt,
    /// An archive ends inside a member or without its gzip trailer.
    ArchiveTruncated,
    /// An archive member declares more bytes than an alert may have.
    MemberTooLarge,
}

impl RejectKind {
    /// Every kind, in the order `docs/limits.md` lists them.
    pub const ALL: [RejectKind; 10] = [
        RejectKind::CorruptAvro,
        RejectKind::NotAnAlert,
        RejectKind::BadValue,
        RejectKind::NullCutout,
        RejectKind::BadCutout,
        RejectKind::Unreadable,
        RejectKind::ArchiveChecksum,
        RejectKind::ArchiveCorrupt,
        RejectKind::ArchiveTruncated,
        RejectKind::MemberTooLarge,
    ];

    /// The name the summary and `rejects.jsonl` give it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            RejectKind::CorruptAvro => "corrupt-avro",
            RejectKind::NotAnAlert => "not-an-alert",
            RejectKind::BadValue => "bad-value",
            RejectKind::NullCutout => "null-cutout",
            RejectKind::BadCutout => "bad-cutout",
            RejectKind::Unreadable => "unreadable",
            RejectKind::ArchiveChecksum => "archive-checksum",
            RejectKind::ArchiveCorrupt => "archive-corrupt",
            RejectKind::ArchiveTruncated => "archive-truncated",
            RejectKind::MemberTooLarge => "member-too-large",
        }
    }
}

impl std::fmt::Display for RejectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an input, or one record in it, is not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// Its class, for the summary and the rejects log.
    pub kind: RejectKind,
    /// The full reason, for the user.
    pub reason: String,
    /// How many alert records this reject stands for: 1, or more when a whole block or file of
    /// records is rejected at once (one line in `rejects.jsonl`, every record counted).
    pub records: usize,
}

impl Reject {
    /// A reject of one record (or of a file that holds one).
    #[must_use]
    pub fn new(kind: RejectKind, reason: impl Into<String>) -> Self {
        Reject { kind, reason: reason.into(), records: 1 }
    }

    /// The same reject, standing for `records` alert records.
    #[must_use]
    pub fn for_records(mut self, records: usize) -> Self {
        self.records = records;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_survey_is_found_by_the_name_its_stores_record() {
        for survey in SURVEYS {
            let found = by_name(survey.name()).expect("found by its own name");
            assert_eq!(found.tables().survey, survey.name(), "its tables name it");
        }
        assert_eq!(by_name("ztf").map(Survey::name), Some("ztf"));
        assert_eq!(by_name("lsst").map(Survey::name), Some("lsst"));
        assert!(by_name("ptf").is_none(), "a survey this tool does not read");
    }

    /// `docs/limits.md` is where users look a kind up: every kind has its row there, and every
    /// kind named in its tables is one the tool gives.
    #[test]
    fn limits_doc_lists_every_reject_kind_and_no_other() {
        let doc = include_str!("../../docs/limits.md");
        let listed: std::collections::BTreeSet<&str> = doc
            .lines()
            .filter_map(|line| line.strip_prefix("| `")?.split('`').next())
            .filter(|cell| cell.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
            .collect();
        let kinds: std::collections::BTreeSet<&str> = RejectKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(listed, kinds, "docs/limits.md's kind tables against RejectKind::ALL");
    }
}
