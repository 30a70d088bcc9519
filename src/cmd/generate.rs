//! `ztf2zarr generate`: checks the options, writes synthetic alerts (loose files or one nightly
//! archive) with `synth`, and says on stderr what it wrote. Only in a binary built with the
//! cargo feature `generate` (see `cmd/mod.rs` for one without).

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context};

use super::ExitStatus;
use crate::cli::{GenerateArgs, GenerateFraming, GenerateHistory, GenerateSchema, GenerateSurvey};
use crate::synth::{self, AlertSchema, Framing, HistoryDepth, LsstConfig, LsstSchema, SynthConfig};

/// Run `ztf2zarr generate`.
///
/// # Errors
/// A `--tarball` that is not a plain `NAME.tar.gz` file name, candids that overflow, or any
/// failure to create the folder or write a file (the error names the path).
pub fn run(args: &GenerateArgs) -> anyhow::Result<ExitStatus> {
    if args.survey == GenerateSurvey::Lsst {
        return run_lsst(args);
    }
    if args.framing.is_some() || args.gzip {
        bail!("--framing and --gzip are for --survey lsst; ZTF alerts are Avro container files, one per alert");
    }
    let cfg = config(args)?;
    cfg.validate()?;
    let started = Instant::now();
    let written = match &args.tarball {
        Some(name) => write_archive(&args.output, name, &cfg)?,
        None => write_loose_files(&args.output, &cfg)?,
    };
    if let Some(name) = &args.labels {
        let path = args.output.join(name);
        std::fs::create_dir_all(&args.output).with_context(|| format!("cannot create {}", args.output.display()))?;
        std::fs::write(&path, synth::labels_csv(&cfg)).with_context(|| format!("cannot write {}", path.display()))?;
    }
    crate::errln!(
        "generate: wrote {written} (schema {}, {} histories, seed {}, {}) in {:.1} s",
        cfg.schema.as_str(),
        cfg.history.as_str(),
        cfg.seed,
        candid_range(&cfg),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitStatus::Success)
}

/// What `args` ask the ZTF generator for.
fn config(args: &GenerateArgs) -> anyhow::Result<SynthConfig> {
    let schema = match args.schema {
        None | Some(GenerateSchema::V3_3) => AlertSchema::V3_3,
        Some(GenerateSchema::V4_02) => AlertSchema::V4_02,
        Some(other) => bail!("--schema {} is a Rubin schema; ZTF has 3.3 and 4.02 (or give --survey lsst)", lsst_schema(other).as_str()),
    };
    let history = match args.history {
        None | Some(GenerateHistory::Short) => HistoryDepth::Short,
        Some(GenerateHistory::Measured) => HistoryDepth::Measured,
    };
    let first_candid = args.first_candid.unwrap_or(SynthConfig::default().first_candid);
    Ok(SynthConfig { count: args.count, seed: args.seed, first_candid, schema, history })
}

/// The Rubin schema of a `--schema` value (10.0 for the ZTF ones, which callers reject first).
fn lsst_schema(schema: GenerateSchema) -> LsstSchema {
    match schema {
        GenerateSchema::Lsst7_0 => LsstSchema::V7_0,
        GenerateSchema::Lsst7_1 => LsstSchema::V7_1,
        GenerateSchema::Lsst7_2 => LsstSchema::V7_2,
        GenerateSchema::Lsst7_3 => LsstSchema::V7_3,
        GenerateSchema::Lsst7_4 => LsstSchema::V7_4,
        GenerateSchema::Lsst8_0 => LsstSchema::V8_0,
        GenerateSchema::Lsst9_0 => LsstSchema::V9_0,
        GenerateSchema::V3_3 | GenerateSchema::V4_02 | GenerateSchema::Lsst10_0 => LsstSchema::V10_0,
        GenerateSchema::Lsst11_0 => LsstSchema::V11_0,
        GenerateSchema::Lsst11_1 => LsstSchema::V11_1,
    }
}

/// What `args` ask the Rubin generator for.
fn lsst_config(args: &GenerateArgs) -> anyhow::Result<LsstConfig> {
    if args.first_candid.is_some() || args.history.is_some() || args.labels.is_some() {
        bail!("--first-candid, --history and --labels are for ZTF alerts, not --survey lsst");
    }
    let schema = match args.schema {
        None => LsstSchema::default(),
        Some(GenerateSchema::V3_3 | GenerateSchema::V4_02) => {
            bail!("--schema 3.3 and 4.02 are ZTF schemas; Rubin has 7.0, 7.1, 7.2, 7.3, 7.4, 8.0, 9.0, 10.0, 11.0, 11.1")
        }
        Some(other) => lsst_schema(other),
    };
    let framing = match args.framing {
        None | Some(GenerateFraming::Confluent) => Framing::Confluent,
        Some(GenerateFraming::Container) => Framing::Container,
    };
    Ok(LsstConfig { count: args.count, seed: args.seed, schema, framing, gzip: args.gzip })
}

/// `ztf2zarr generate --survey lsst`.
fn run_lsst(args: &GenerateArgs) -> anyhow::Result<ExitStatus> {
    let cfg = lsst_config(args)?;
    let started = Instant::now();
    let written = match &args.tarball {
        Some(name) => {
            check_archive_name(name)?;
            std::fs::create_dir_all(&args.output).with_context(|| format!("cannot create {}", args.output.display()))?;
            let path = args.output.join(name);
            synth::write_lsst_tarball(&path, &cfg).with_context(|| format!("writing the archive {}", path.display()))?;
            format!("{} alerts into {}", cfg.count, path.display())
        }
        None => {
            let paths =
                synth::write_lsst_files(&args.output, &cfg).with_context(|| format!("writing alerts into {}", args.output.display()))?;
            format!("{} alerts in {} files into {}", cfg.count, paths.len(), args.output.display())
        }
    };
    crate::errln!(
        "generate: wrote {written} (Rubin schema {}, {} framing{}, seed {}) in {:.1} s",
        cfg.schema.as_str(),
        match cfg.framing {
            Framing::Confluent => "confluent",
            Framing::Container => "container",
        },
        if cfg.gzip { ", gzip" } else { "" },
        cfg.seed,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitStatus::Success)
}

/// "candids FIRST..=LAST" for the summary line ("no candids" when nothing was asked for).
fn candid_range(cfg: &SynthConfig) -> String {
    match cfg.count.checked_sub(1) {
        Some(last) => format!("candids {}..={}", cfg.first_candid, cfg.candid(last)),
        None => "no candids".to_string(),
    }
}

/// Writes `DIR/<candid>.avro` files; returns what was written, for the summary line.
fn write_loose_files(dir: &Path, cfg: &SynthConfig) -> anyhow::Result<String> {
    let paths = synth::write_files(dir, cfg).with_context(|| format!("writing alerts into {}", dir.display()))?;
    Ok(format!("{} alert files into {}", paths.len(), dir.display()))
}

/// Writes the nightly archive `DIR/NAME`; returns what was written, for the summary line.
fn write_archive(dir: &Path, name: &str, cfg: &SynthConfig) -> anyhow::Result<String> {
    check_archive_name(name)?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(name);
    synth::write_tarball(&path, cfg).with_context(|| format!("writing the archive {}", path.display()))?;
    Ok(format!("{} alerts into {}", cfg.count, path.display()))
}

/// The archive goes directly into DIR and its members into a folder named after it, so the name
/// must be a bare `NAME.tar.gz`.
fn check_archive_name(name: &str) -> anyhow::Result<()> {
    let stem = name.strip_suffix(".tar.gz").unwrap_or_default();
    if stem.is_empty() || name.contains(['/', '\\']) {
        bail!("--tarball wants a file name like ztf_public_20250101.tar.gz, not {name:?}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names_must_be_bare_tar_gz_names() {
        assert!(check_archive_name("ztf_public_20250101.tar.gz").is_ok());
        assert!(check_archive_name("night.tgz").is_err());
        assert!(check_archive_name(".tar.gz").is_err());
        assert!(check_archive_name("sub/night.tar.gz").is_err());
        assert!(check_archive_name("night").is_err());
    }
}
