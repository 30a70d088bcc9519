//! ztf2zarr: ZTF public alert packets → one Zarr v2 training store.
//!
//! ```text
//! inputs ──► source:: ──(name, bytes)──► decode:: (rayon) ──Alert──► pipeline:: ──chunks──► store::
//!            files, folders,             Avro with the writer      dedup by candid,        Zarr v2 arrays,
//!            .tar.gz streamed            schema, cutouts → f32     ordered, one owner      metadata written last
//!                                        stamps, catalog row       per chunk
//! ```
//! `catalog` owns the column model (declared in `schemas/catalog.tsv`, `epochs.tsv`, `forced.tsv`);
//! `lightcurves` decides which history rows are new (dedup, object index); `cmd` holds one file
//! per subcommand; `synth` writes synthetic alerts for samples, tests and benchmarks.

pub mod calendar;
pub mod cli;
pub mod cmd;
pub mod fasthash;
pub mod formats;
pub mod ingest;
pub mod labels;
pub mod output;
mod rng;
pub mod split;
pub mod store;
pub mod survey;
pub mod synth;
pub mod table;
