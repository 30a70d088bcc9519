//! Integration tests: one binary (see Cargo.toml `[[test]]`), one module per subcommand or concern.
//! They kill, stop and fail builds at named points (`ZTF2ZARR_FAULT`), which only a binary built
//! with the `fault-injection` feature has: without it they do not compile, rather than pass
//! without testing what they claim.

#[cfg(not(feature = "fault-injection"))]
compile_error!(
    "the integration tests need the ZTF2ZARR_FAULT hooks: run them with `cargo test --release --features fault-injection,generate` \
     (scripts/test does)"
);

#[cfg(not(feature = "generate"))]
compile_error!(
    "the integration tests write their inputs with the generator: run them with `cargo test --release --features \
     fault-injection,generate` (scripts/test does)"
);

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
