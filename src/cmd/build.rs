//! `ztf2zarr build`: check the options and inputs, run the pipeline (new store or append),
//! print the summary.

use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::{bail, Context};

use super::ExitStatus;
use crate::cli::BuildArgs;
use crate::ingest::pipeline::{self, BuildConfig};
use crate::ingest::report::{self, Progress};
use crate::ingest::source;
use crate::store::{chunk_fits, Requested, StoreTarget, Wait, MAX_CHUNK_BYTES};
use crate::survey::ztf::Ztf;
use crate::survey::{self, GivenSchema, Survey};

/// Run `build`.
///
/// # Errors
/// Invalid options, a missing input path, or a store that cannot be read or written.
pub fn run(args: &BuildArgs, target: &StoreTarget) -> anyhow::Result<ExitStatus> {
    validate(args)?;
    let plan = source::discover(&args.inputs, target)?;
    if plan.inputs.is_empty() {
        bail!("no .avro files or .tar.gz archives found in {}", list(&args.inputs));
    }
    let survey = survey_of_build(args, target, &plan)?;
    validate_for(args, survey)?;
    let schemas = given_schemas(args, survey)?;
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .start_handler(|_| yield_to_the_reader())
        .build()
        .context("cannot start worker threads")?;
    let progress = Progress::new(!args.no_progress && std::io::stderr().is_terminal());
    let config = BuildConfig {
        survey,
        given: args.inputs.clone(),
        plan: Arc::new(plan),
        output: target.clone(),
        requested: Requested {
            wait: Wait::from_option(args.wait.wait),
            stamp_size: args.stamp_size,
            keep_nan: args.keep_nan,
            keep_masked: args.keep_masked,
            chunk_rows: args.chunk_rows,
            zstd_level: args.zstd_level,
            no_lightcurves: args.no_lightcurves,
            no_variance: args.no_variance,
            psf: args.psf,
            single_writer: args.wait.single_writer,
        },
        strict: args.strict,
        labels: super::label::load(&args.labels, survey.tables())?.map(Arc::new),
        schemas,
    };
    let result = pipeline::build(&config, &pool, &progress);
    progress.finish();
    let stats = result?;
    crate::out!("{}", report::build_summary(&stats, target, threads, &config.plan.ignored));
    if let Some(labels) = &config.labels {
        let counts = if stats.committed { None } else { Some(super::label::Counts::default()) };
        crate::out!("{}", super::label::summary_of_new_rows(target, survey.tables(), stats.rows_before, labels, counts)?);
    }
    Ok(ExitStatus::Success)
}

/// The survey of the store: an existing store's own, else `--survey`, else the survey whose
/// packet the first input starts with (ZTF when nothing tells: a store of an earlier release).
fn survey_of_build(args: &BuildArgs, target: &StoreTarget, plan: &source::Plan) -> anyhow::Result<&'static dyn Survey> {
    let named = match &args.survey {
        Some(name) => Some(survey::by_name(name).with_context(|| {
            let known: Vec<&str> = survey::SURVEYS.iter().map(|s| s.name()).collect();
            format!("--survey {name} is not a survey this version reads ({})", known.join(", "))
        })?),
        None => None,
    };
    if let Ok(storage) = crate::store::inspect::require_store(target) {
        let store = super::survey_of(storage.as_ref()).map_err(|reason| anyhow::anyhow!("{reason}"))?;
        if let Some(named) = named.filter(|named| named.name() != store.name()) {
            bail!(
                "--survey {} names another survey than the store's: `{}` holds {} alerts (a store holds the alerts of one survey)",
                named.name(),
                target,
                store.title()
            );
        }
        return Ok(store);
    }
    Ok(named.or_else(|| source::first_head(plan, survey::HEAD_BYTES).and_then(|head| survey::detect(&head))).unwrap_or(&Ztf))
}

/// The writer schemas of `--schema-dir`: every `*.avsc` file of the folder, each checked by the
/// survey (which refuses them if its packets carry their schema).
fn given_schemas(args: &BuildArgs, survey: &dyn Survey) -> anyhow::Result<Vec<GivenSchema>> {
    let Some(dir) = &args.schema_dir else {
        return Ok(Vec::new());
    };
    let shown = dir.display();
    survey
        .check_schemas(&[])
        .map_err(|reason| anyhow::anyhow!("--schema-dir `{shown}` is refused for this {} build: {reason}", survey.title()))?;
    let mut schemas = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read --schema-dir `{shown}`"))? {
        let path = entry.with_context(|| format!("cannot read --schema-dir `{shown}`"))?.path();
        if path.extension().is_none_or(|e| e != "avsc") {
            continue;
        }
        let json = std::fs::read(&path).with_context(|| format!("cannot read schema `{}`", path.display()))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        schemas.push(GivenSchema { path: path.display().to_string(), name, json });
    }
    if schemas.is_empty() {
        bail!("--schema-dir `{shown}` holds no schema: it needs <major>.<minor>.avsc files (schemas/lsst/make_lsst_schemas.py makes them)");
    }
    schemas.sort_by(|a, b| a.path.cmp(&b.path));
    survey.check_schemas(&schemas).map_err(|reason| anyhow::anyhow!("--schema-dir: {reason}"))?;
    Ok(schemas)
}

fn validate(args: &BuildArgs) -> anyhow::Result<()> {
    if args.chunk_rows == Some(0) {
        bail!("--chunk-rows must be at least 1");
    }
    if args.threads == Some(0) {
        bail!("--threads must be at least 1");
    }
    if let Some(level) = args.zstd_level.filter(|l| !(1..=22).contains(l)) {
        bail!("--zstd-level {level} is outside 1..=22");
    }
    Ok(())
}

/// The options that depend on the survey: the stamp side, and the chunk size it makes.
fn validate_for(args: &BuildArgs, survey: &dyn Survey) -> anyhow::Result<()> {
    let stamps = &survey.tables().stamps;
    if args.psf && !stamps.psf {
        bail!("--psf: {} cutouts carry no PSF image (only Rubin's do, in their PSFIMAGE HDU)", survey.title());
    }
    let frame = stamps.frame;
    if let Some(size) = args.stamp_size.filter(|s| *s == 0 || *s > frame || (stamps.odd_only && s % 2 == 0)) {
        let odd = if stamps.odd_only { "an odd number" } else { "a number" };
        bail!("--stamp-size {size} is not {odd} from 1 to {frame} ({} stamps)", survey.title());
    }
    if let Some(rows) = args.chunk_rows {
        let side = args.stamp_size.unwrap_or(stamps.default_size);
        if !chunk_fits(rows, side, survey.tables().catalog.itemsize()) {
            bail!("--chunk-rows {rows} makes stamp chunks larger than {} MiB; choose fewer rows", MAX_CHUNK_BYTES >> 20);
        }
    }
    Ok(())
}

fn list(paths: &[std::path::PathBuf]) -> String {
    paths.iter().map(|p| format!("`{}`", p.display())).collect::<Vec<_>>().join(", ")
}

/// Lower the calling worker thread's scheduling priority a little (nice +5). Inflating a nightly
/// archive is one serial stream on the reader thread while the workers decode; when the cores are
/// all busy, the reader must not wait for a core, or every worker soon waits for it.
fn yield_to_the_reader() {
    // SAFETY: gettid and setpriority on the calling thread only; failure just keeps the priority.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid);
        #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)] // a thread id is a positive pid_t
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 5);
    }
}
