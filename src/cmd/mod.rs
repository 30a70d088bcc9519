//! One file per subcommand; each exposes `run(args) -> Result<ExitStatus>`. This module only dispatches.

mod build;
mod generate;
mod info;
mod label;
mod split;
mod verify;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

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
    match cli.command {
        Command::Build(args) => build::run(&args),
        Command::Label(args) => label::run(&args),
        Command::Split(args) => split::run(&args),
        Command::Info(args) => info::run(&args),
        Command::Verify(args) => verify::run(&args),
        Command::Generate(args) => generate::run(&args),
    }
}
