//! The file formats alerts arrive in, read without knowing any survey: Avro (object container
//! files and the datum walker, `avro.rs`), FITS images (`fits.rs`) and gzip members with their
//! positions and checksums (`gzip.rs`). Each reader checks every size it is given against a
//! named limit before using it.

pub mod avro;
pub mod fits;
pub mod gzip;
