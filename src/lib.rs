//! ztf2zarr: alert packets → one Zarr v2 training store.
//!
//! ```text
//! inputs ──► ingest::source ──(name, bytes)──► survey::ztf (rayon) ──Alert──► ingest::pipeline ──chunks──► store
//!            files, folders,                  Avro with the writer            dedup by alert id,         Zarr v2 arrays,
//!            .tar.gz streamed                 schema, cutouts → f32           ordered, one owner         metadata written last
//!                                             stamps, catalog row             per chunk
//! ```
//! Layers, lowest first (each uses only those below it; `scripts/check_layers` checks it):
//! util (`calendar`, `fasthash`, `output`, `rng`), `formats`, `table`, `store`, `survey`,
//! classes (`labels`, `split`), `ingest`, `synth`, then `cmd`. See docs/architecture.md.
//!
//! Public are the modules the binary (`cli`, `cmd`, `output`) and the integration tests and
//! examples (`formats`, `table`, `store`, `survey`, `synth`) use; the rest is the crate's own.

mod calendar;
pub mod cli;
pub mod cmd;
mod fasthash;
pub mod formats;
mod ingest;
mod labels;
pub mod output;
mod rng;
mod split;
pub mod store;
pub mod survey;
#[cfg(feature = "generate")]
pub mod synth;
pub mod table;
