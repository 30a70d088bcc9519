//! Integration tests: one binary (see Cargo.toml `[[test]]`), one module per subcommand.

mod append;
mod build;
mod hostile;
mod label;
mod mutation;
mod samples;
mod util;
