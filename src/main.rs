//! Entry point: parse the command line, run the subcommand, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = ztf2zarr::cli::Cli::parse();
    match ztf2zarr::cmd::run(cli) {
        Ok(status) => status.into(),
        Err(err) => {
            eprintln!("error: {}", ztf2zarr::cmd::error_text(&err));
            ExitCode::from(2)
        }
    }
}
