//! `ztf2zarr verify`: check a store end to end and say plainly what is wrong; exit 1 if anything is.

use super::ExitStatus;
use crate::cli::VerifyArgs;
use crate::store::verify::verify;

/// Run `verify`.
///
/// # Errors
/// Never: every problem is reported and reflected in the exit status.
pub fn run(args: &VerifyArgs) -> anyhow::Result<ExitStatus> {
    let report = verify(&args.store);
    for line in &report.passed {
        println!("ok       {line}");
    }
    for line in &report.problems {
        println!("PROBLEM  {line}");
    }
    if report.problems.is_empty() {
        println!("{}: sound", args.store.display());
        Ok(ExitStatus::Success)
    } else {
        println!("{}: {} problem(s) found", args.store.display(), report.problems.len());
        Ok(ExitStatus::Failure)
    }
}
