//! What a build did, for its summary and its record in the store: alerts written, skipped as
//! duplicates or rejected (with reasons), per input and in all. The pipeline fills it; the
//! report prints it.

use std::time::Duration;

use super::lightcurves;
use crate::survey::RejectKind;

/// One input alert (or file) that was not stored, and why.
#[derive(Debug, Clone)]
pub struct RejectRecord {
    /// The input's name (`path` or `archive:member`).
    pub source: String,
    /// Short class of the reason.
    pub kind: RejectKind,
    /// The reason.
    pub reason: String,
    /// Alert records it stands for (1, or a whole block's or file's count).
    pub records: usize,
}

/// An alert skipped because its candid was already stored or already seen in this build.
#[derive(Debug, Clone)]
pub struct Duplicate {
    /// The input's name.
    pub source: String,
    /// The repeated candid.
    pub candid: i64,
}

/// Counts for one path the user gave.
#[derive(Debug, Clone, Default)]
pub struct InputCounts {
    /// Files and archive members read.
    pub items: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Rows written.
    pub written: usize,
    /// Alerts skipped as duplicates.
    pub duplicates: usize,
    /// Inputs or records rejected.
    pub rejected: usize,
}

/// What a build did, for the summary.
#[derive(Debug, Default)]
pub struct Stats {
    /// Files and archive members read.
    pub items: usize,
    /// Bytes of those items.
    pub bytes: u64,
    /// Rows in the store before this build.
    pub rows_before: usize,
    /// Rows written.
    pub written: usize,
    /// Alerts skipped as repeats.
    pub duplicates: Vec<Duplicate>,
    /// Inputs not stored, with reasons.
    pub rejects: Vec<RejectRecord>,
    /// Per path given, in order.
    pub per_input: Vec<InputCounts>,
    /// Rows with each `stamp_flags` bit set, by bit position (bit 1 << i at i).
    pub flagged: [usize; 8],
    /// The name of the alerts' unique id (`candid`, `diaSourceId`): the catalog's first column.
    pub id_column: &'static str,
    /// The survey's `stamp_flags` bits with their short names.
    pub flag_names: &'static [(u8, &'static str)],
    /// Rows whose string values were cut to the column width: (source, columns).
    pub truncated: Vec<(String, Vec<String>)>,
    /// Schema versions seen, with the number of alerts written with each.
    pub schema_versions: Vec<(String, usize)>,
    /// Archive members not read as alerts: (`archive:member`, why).
    pub ignored_members: Vec<(String, String)>,
    /// Candidate fields of some writer schema that the catalog has no column for.
    pub unmapped_fields: Vec<String>,
    /// The store is labeled but this build gave no labels: its new rows are unlabeled.
    pub unlabeled_append: bool,
    /// Where this build's rejects are logged (a path or URL), when it rejected anything.
    pub rejects_log: Option<String>,
    /// New light-curve rows per kind (detections, upper limits, forced), if the store has light curves.
    pub lightcurve_rows: Option<lightcurves::Counts>,
    /// False when nothing new was found and the store was left untouched.
    pub committed: bool,
    /// Wall time.
    pub elapsed: Duration,
}

impl Stats {
    /// Alert records rejected (a reject line may stand for many records).
    #[must_use]
    pub fn rejected(&self) -> usize {
        self.rejects.iter().map(|r| r.records).sum()
    }

    /// Alert records seen: written, skipped as duplicates, or rejected.
    #[must_use]
    pub fn alerts(&self) -> usize {
        self.written + self.duplicates.len() + self.rejected()
    }
}
