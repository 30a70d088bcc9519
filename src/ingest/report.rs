//! What the user sees: the progress bar on stderr (hidden when stderr is not a terminal) and the
//! one-screen summary of a build on stdout.

use std::fmt::Write as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::ingest::lightcurves;
use crate::ingest::source::{Ignored, Skip};
use crate::ingest::stats::Stats;

/// `count` and the noun, singular for exactly one: "1 night", "2 nights".
#[must_use]
pub fn counted(count: usize, singular: &str, plural: &str) -> String {
    if count == 1 {
        format!("{count} {singular}")
    } else {
        format!("{count} {plural}")
    }
}

/// Most reject and duplicate lines shown in the summary; the rest are in the store's rejects log.
const SHOWN: usize = 12;

/// A progress bar over the inputs' bytes (compressed bytes for archives, file sizes for loose
/// files), with the alerts written so far.
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A progress display, drawn on stderr when `enabled`; the pipeline sets its total with
    /// [`Progress::start`] once the input sizes are known.
    #[must_use]
    pub fn new(enabled: bool) -> Self {
        let bar = ProgressBar::new(0).with_style(bar_style());
        bar.set_draw_target(if enabled { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() });
        Progress { bar }
    }

    /// Begin: `total` input bytes to read.
    pub fn start(&self, total: u64) {
        self.bar.set_length(total);
        self.bar.set_message("0 alerts written");
        self.bar.enable_steady_tick(Duration::from_millis(200));
    }

    /// `bytes` more input bytes read; `written` rows so far.
    pub fn advance(&self, bytes: u64, written: usize) {
        self.bar.inc(bytes);
        self.bar.set_message(format!("{written} alerts written"));
    }

    /// Remove the bar before the summary is printed.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// `⠙ 00:01:12 ━━━━━━━━━━━━──────── 160.2/476.0 MB 2.2 MB/s eta 2m 3000 alerts written`: about
/// 60 columns besides the bar, so it stays on one line at 80 columns.
fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {elapsed_precise} {wide_bar} {done} {rate} eta {eta} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("done", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
            let total = state.len().unwrap_or(0);
            let _ = write!(w, "{:.1}/{:.1} MB", state.pos() as f64 / 1e6, total as f64 / 1e6);
        })
        .with_key("rate", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.1} MB/s", state.per_sec() / 1e6);
        })
        .progress_chars("━━─")
}

/// The build summary, as printed on stdout.
#[must_use]
pub fn build_summary(stats: &Stats, store: &crate::store::StoreTarget, threads: usize, ignored: &[Ignored]) -> String {
    let mut out = String::new();
    let seconds = stats.elapsed.as_secs_f64().max(1e-9);
    let megabytes = stats.bytes as f64 / 1e6;
    let _ = writeln!(out, "ztf2zarr build → {store}");
    let _ = writeln!(out, "  read        {} ({megabytes:.1} MB)", counted(stats.items, "alert file", "alert files"));
    ignored_lines(&mut out, ignored);
    if !stats.ignored_members.is_empty() {
        let _ = writeln!(
            out,
            "  ignored     {} that are not read as alerts",
            counted(stats.ignored_members.len(), "archive member", "archive members")
        );
        for (member, reason) in stats.ignored_members.iter().take(SHOWN) {
            let _ = writeln!(out, "      {member}: {reason}");
        }
        more(&mut out, stats.ignored_members.len());
    }
    let rows_after = stats.rows_before + stats.written;
    if stats.committed {
        let _ =
            writeln!(out, "  written     {} (store rows {} → {rows_after})", counted(stats.written, "alert", "alerts"), stats.rows_before);
    } else {
        let _ = writeln!(out, "  written     0 alerts: nothing new, the store is unchanged ({} rows)", stats.rows_before);
    }
    let id = stats.id_column;
    let _ = writeln!(out, "  duplicates  {} ({id} already in the store or earlier in the inputs; skipped)", stats.duplicates.len());
    for duplicate in stats.duplicates.iter().take(SHOWN) {
        let _ = writeln!(out, "      {}: {id} {}", duplicate.source, duplicate.candid);
    }
    more(&mut out, stats.duplicates.len());
    let _ = writeln!(out, "  rejected    {}{}", stats.rejected(), reject_kinds(stats));
    for reject in stats.rejects.iter().take(SHOWN) {
        let _ = writeln!(out, "      {}: {}", reject.source, reject.reason);
    }
    more(&mut out, stats.rejects.len());
    if let Some(log) = &stats.rejects_log {
        let _ = writeln!(out, "      (all reasons: {log})");
    }
    let flags: Vec<String> = stats
        .flag_names
        .iter()
        .map(|(bit, name)| format!("{} {}", name.replace('_', "-"), stats.flagged[bit.trailing_zeros() as usize]))
        .collect();
    let _ = writeln!(out, "  stamp flags {}", flags.join(", "));
    let versions: Vec<String> = stats.schema_versions.iter().map(|(v, n)| format!("{v} ×{n}")).collect();
    let _ = writeln!(out, "  schemas     {}", if versions.is_empty() { "-".into() } else { versions.join(", ") });
    if let Some(rows) = &stats.lightcurve_rows {
        lightcurve_line(&mut out, rows);
    }
    if !stats.truncated.is_empty() {
        let _ = writeln!(
            out,
            "  warning     {} alerts had strings longer than their column (cut), e.g. {}: {}",
            stats.truncated.len(),
            stats.truncated[0].0,
            stats.truncated[0].1.join(", ")
        );
    }
    if stats.unlabeled_append {
        let _ = writeln!(
            out,
            "  warning     the store is labeled but no --labels was given: the {} new alerts are unlabeled (run `ztf2zarr label {} --labels …`)",
            stats.written,
            store
        );
    }
    if !stats.unmapped_fields.is_empty() {
        let _ = writeln!(out, "  warning     fields with no catalog column (not stored): {}", stats.unmapped_fields.join(", "));
    }
    let rate = stats.alerts() as f64 / seconds;
    let _ = writeln!(
        out,
        "  time        {seconds:.2} s, {rate:.0} alerts/s, {:.1} MB/s, {}",
        megabytes / seconds,
        counted(threads, "thread", "threads")
    );
    out
}

/// What the build added to the light curves: new keys, and new versions of stored ones.
fn lightcurve_line(out: &mut String, rows: &lightcurves::Counts) {
    let _ = writeln!(
        out,
        "  light curves +{}, +{}, +{} (new keys and new versions of stored ones)",
        counted(rows.detections as usize, "detection", "detections"),
        counted(rows.upper_limits as usize, "upper limit", "upper limits"),
        counted(rows.forced as usize, "forced-photometry epoch", "forced-photometry epochs")
    );
}

/// Paths found and not read: counts by reason, then the first few with their reason.
fn ignored_lines(out: &mut String, ignored: &[Ignored]) {
    if ignored.is_empty() {
        return;
    }
    let mut kinds: Vec<(&Skip, usize)> = Vec::new();
    for entry in ignored {
        match kinds.iter_mut().find(|(kind, _)| kind.kind() == entry.reason.kind()) {
            Some((_, n)) => *n += 1,
            None => kinds.push((&entry.reason, 1)),
        }
    }
    let kinds: Vec<String> = kinds.iter().map(|(kind, n)| counted(*n, kind.kind(), kind.kinds())).collect();
    let _ = writeln!(out, "  ignored     {} ({})", counted(ignored.len(), "path", "paths"), kinds.join(", "));
    for entry in ignored.iter().take(SHOWN) {
        let _ = writeln!(out, "      {}: {}", entry.path.display(), entry.reason);
    }
    more(out, ignored.len());
}

fn more(out: &mut String, total: usize) {
    if total > SHOWN {
        let _ = writeln!(out, "      … and {} more", total - SHOWN);
    }
}

fn reject_kinds(stats: &Stats) -> String {
    if stats.rejects.is_empty() {
        return String::new();
    }
    format!(" ({})", tally(stats.rejects.iter().map(|reject| (reject.kind.name(), reject.records))))
}

/// `kind n, kind n, …`: the counts added up per kind, kinds in the order first seen.
fn tally<'k>(counts: impl Iterator<Item = (&'k str, usize)>) -> String {
    let mut kinds: Vec<(&str, usize)> = Vec::new();
    for (kind, count) in counts {
        match kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += count,
            None => kinds.push((kind, count)),
        }
    }
    kinds.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_is_singular() {
        assert_eq!(counted(1, "night", "nights"), "1 night");
        assert_eq!(counted(0, "night", "nights"), "0 nights");
        assert_eq!(counted(2, "class", "classes"), "2 classes");
    }
}
