//! Entry point: parse the command line, run the subcommand, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = ztf2zarr::cli::Cli::parse();
    let status = match ztf2zarr::cmd::run(cli) {
        Ok(status) => status.into(),
        Err(err) => {
            ztf2zarr::errln!("error: {}", ztf2zarr::cmd::error_text(&err));
            return ExitCode::from(ztf2zarr::cmd::failure_code());
        }
    };
    // The work is done (a build committed, a store verified); only what it printed is lost.
    if let Some(failure) = ztf2zarr::output::stdout_failure() {
        ztf2zarr::errln!("error: could not write to standard output: {failure} (the command's work is done and kept)");
        return ExitCode::from(2);
    }
    status
}
