//! Surveys: what an alert packet of one survey is, and how it becomes a catalog row, stamps and
//! history rows. Today one survey, ZTF (`ztf/`). This file holds what every survey gives back:
//! a [`Reject`] when an input, or one record in it, cannot be stored, with its [`RejectKind`].

pub mod ztf;

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
