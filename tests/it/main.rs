//! Integration tests: one binary (see Cargo.toml `[[test]]`), one module per subcommand.

mod append;
mod build;
mod label;
mod newcomer;
mod samples;
mod util;
