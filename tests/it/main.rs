//! Integration tests: one binary (see Cargo.toml `[[test]]`), one module per subcommand or concern.

mod append;
mod archive;
mod build;
mod classes;
mod folders;
mod generate_lsst;
mod hostile;
mod label;
mod lightcurves;
mod lsst;
mod masked;
mod mutation;
mod newcomer;
mod output;
mod samples;
mod store;
mod synthetic;
mod util;
