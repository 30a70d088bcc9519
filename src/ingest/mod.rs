//! Getting alerts into a store: the inputs (`source`: files, folders, archives, object storage),
//! the pipeline that decodes them on the worker pool and hands ordered chunks to the store
//! (`pipeline`), which history rows are new (`lightcurves`) and their checks (`lcverify`), what
//! a run did (`stats`) and how it is shown (`report`).

pub mod lcverify;
pub mod lightcurves;
pub mod pipeline;
pub mod report;
pub mod source;
pub mod stats;
