//! Integration tests: one binary (see Cargo.toml `[[test]]`), one module per subcommand.

mod append;
mod build;
mod folders;
mod label;
mod newcomer;
mod samples;
mod store;
mod util;
