//! One file per subcommand; each exposes `run(args) -> Result<ExitStatus>`. This module
//! dispatches, and holds the text of an error with its causes, which every subcommand's
//! messages share (counted nouns are `report`'s).

mod build;
#[cfg(feature = "generate")]
mod generate;
mod info;
mod label;
mod split;
mod unlock;
mod verify;

use std::process::ExitCode;

use crate::cli::{Cli, Command};
pub(crate) use crate::ingest::report::counted;
use crate::store::StoreTarget;

/// How a subcommand ended, as the process exit code tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Everything asked for was done (exit 0).
    Success,
    /// The command ran but found problems it reports (exit 1).
    Failure,
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> Self {
        match status {
            ExitStatus::Success => ExitCode::SUCCESS,
            ExitStatus::Failure => ExitCode::from(1),
        }
    }
}

/// Run the parsed command line.
///
/// # Errors
/// Any error that stops the subcommand (bad options, unreadable input path, unwritable store).
pub fn run(cli: Cli) -> anyhow::Result<ExitStatus> {
    // One store, one name (and so one lock): the STORE argument is parsed once here — a file://
    // URL becomes its path, and a URL that does not map one for one onto object keys is refused
    // before anything is read — and every subcommand takes the store as that target.
    let target = |given: &std::path::Path| StoreTarget::parse(given);
    match cli.command {
        Command::Build(args) => build::run(&args, &target(&args.output)?),
        Command::Label(args) => label::run(&args, &target(&args.store)?),
        Command::Split(args) => split::run(&args, &target(&args.store)?),
        Command::Info(args) => info::run(&args, &target(&args.store)?),
        Command::Verify(args) => verify::run(&target(&args.store)?),
        Command::Unlock(args) => unlock::run(&args, &target(&args.store)?),
        #[cfg(feature = "generate")]
        Command::Generate(args) => generate::run(&args),
        #[cfg(not(feature = "generate"))]
        Command::Generate(_) => without_generator(),
    }
}

/// `generate` in a binary built without the generator (the cargo feature `generate`, off by
/// default so that the binary users install does not carry it): say how to get it.
#[cfg(not(feature = "generate"))]
fn without_generator() -> anyhow::Result<ExitStatus> {
    anyhow::bail!(
        "this ztf2zarr was built without the alert generator: build it with `cargo build --release --features generate` \
         (or install it with `cargo install --locked --path . --features generate`)"
    )
}

/// Alerts per class, in the order given, then the unlabeled ones (left out when there are
/// none): `QSO 3, YSO 0, other 7, (unlabeled) 2`, or `-` when there is nothing to count. Every
/// labelling summary and `info` say it so.
pub(crate) fn class_counts<'a>(classes: impl IntoIterator<Item = (&'a str, usize)>, unlabeled: usize) -> String {
    let mut parts: Vec<String> = classes.into_iter().map(|(name, n)| format!("{name} {n}")).collect();
    if unlabeled > 0 {
        parts.push(format!("(unlabeled) {unlabeled}"));
    }
    if parts.is_empty() {
        return "-".into();
    }
    parts.join(", ")
}

/// An error and its causes as one line, `outer: cause: root cause`, leaving out a cause whose text
/// the line already holds: the error types put their `{source}` in their own message, and anyhow
/// would print it a second time ("No such file or directory (os error 2): No such file or
/// directory (os error 2)"). Done here so that every error type, whoever wrote it, prints once.
#[must_use]
pub fn error_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if part.is_empty() || text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

/// The exit status of a command that failed: 128 + the signal when SIGINT or SIGTERM stopped a
/// writer (130, 143: what a shell reports for a process that the signal ended), else 2.
#[must_use]
pub fn failure_code() -> u8 {
    crate::store::stop_signal().and_then(|signal| u8::try_from(128 + signal).ok()).unwrap_or(2)
}

/// The survey whose alerts the store at `root` holds, for opening it with that survey's tables.
///
/// # Errors
/// Not a store, unreadable metadata, or a survey this version does not read.
pub(crate) fn store_survey(root: &StoreTarget) -> anyhow::Result<&'static dyn crate::survey::Survey> {
    let storage = crate::store::inspect::require_store(root)?;
    survey_of(storage.as_ref()).map_err(|reason| anyhow::anyhow!("{reason}"))
}

/// The survey a store's metadata names, or why it names none this version reads.
pub(crate) fn survey_of(storage: &dyn crate::store::Storage) -> Result<&'static dyn crate::survey::Survey, String> {
    let name = crate::store::survey_named(storage).map_err(|error| error.to_string())?;
    crate::survey::by_name(&name).ok_or_else(|| {
        let known: Vec<&str> = crate::survey::SURVEYS.iter().map(|s| s.name()).collect();
        format!(
            "{}: the store holds {name} alerts, and this version of ztf2zarr reads {} stores",
            storage.object_location(".zattrs"),
            known.join(" and ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("input `a.avro`: {source}")]
    struct Opening {
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_in_the_message_is_printed_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let io_text = io.to_string();
        let error = anyhow::Error::new(Opening { source: io }).context("cannot build `s.zarr`");
        let text = error_text(&error);
        assert_eq!(text.matches(&io_text).count(), 1, "{text}");
        assert!(text.starts_with("cannot build `s.zarr`: input `a.avro`: "), "{text}");
        let plain = anyhow::anyhow!("top").context("outer");
        assert_eq!(error_text(&plain), "outer: top");
    }
}
