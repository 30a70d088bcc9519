//! Integration tests: one binary (see Cargo.toml `[[test]]`), one module per subcommand.

mod append;
mod archive;
mod build;
mod label;
mod samples;
mod util;
