//! `ztf2zarr info`: what a store holds — rows, size, nights covered, schema versions, labels,
//! stamp flags, splits (and whether they still match the store), light curves (objects, epochs
//! per kind) and the builds that made it —
//! for people, or as JSON for programs.

use std::collections::{BTreeMap, HashSet};

use serde_json::{json, Value};

use super::{class_counts, counted, ExitStatus};
use crate::calendar::jd_to_date;
use crate::cli::InfoArgs;
use crate::split::{split_basis, stale_reasons};
use crate::store::inspect::{open_store, rejects_logged, split_sizes, splits_attrs};
use crate::store::{StoreReader, StoreTarget, LIGHTCURVES, MASKED_AS_MISSING, MASKED_KEPT, OBJECTS};
use crate::table::Tables;

/// Run `info`.
///
/// # Errors
/// The store cannot be read.
pub fn run(args: &InfoArgs, target: &StoreTarget) -> anyhow::Result<ExitStatus> {
    let survey = match super::store_survey(target) {
        Err(error) => return Err(first_build_interrupted(target).unwrap_or(error)),
        Ok(survey) => survey,
    };
    let reader = open_store(target, survey.tables())?;
    let info = gather(target, &reader)?;
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        crate::out!("{}", render(&info, reader.tables(), target));
    }
    Ok(ExitStatus::Success)
}

fn gather(root: &StoreTarget, reader: &StoreReader) -> anyhow::Result<Value> {
    let tables = reader.tables();
    let layout = tables.catalog;
    let rows = reader.catalog_rows()?;
    let column = |name: &str| layout.index_of(name);
    let (time_column, scale) = tables.time_column;
    let mut nights: BTreeMap<String, usize> = BTreeMap::new();
    let mut versions: BTreeMap<String, usize> = BTreeMap::new();
    let mut labels: BTreeMap<String, usize> = BTreeMap::new();
    let mut flags: BTreeMap<&str, usize> = tables.stamps.names.iter().map(|(_, name)| (*name, 0)).collect();
    let jd = column(time_column).map(|c| layout.columns()[c].offset);
    for row in &rows {
        if let Some(offset) = jd {
            let value = f64::from_le_bytes(row[offset..offset + 8].try_into()?);
            if value.is_finite() {
                *nights.entry(jd_to_date(scale.julian_date(value))).or_default() += 1;
            }
        }
        if let Some(c) = column(tables.version_column) {
            let version = layout.read_str(row, c).filter(|v| !v.is_empty()).unwrap_or_else(|| format!("({})", tables.no_version));
            *versions.entry(version).or_default() += 1;
        }
        if let Some(c) = column("label") {
            *labels.entry(layout.read_str(row, c).unwrap_or_default()).or_default() += 1;
        }
        let bits = column("stamp_flags").and_then(|c| layout.read_i64(row, c)).unwrap_or(0);
        for (bit, name) in tables.stamps.names {
            if bits & i64::from(*bit) != 0 {
                *flags.entry(name).or_default() += 1;
            }
        }
    }
    let classes = class_table(reader, &labels);
    for class in classes.iter().flatten() {
        labels.entry(class["label"].as_str().unwrap_or_default().to_string()).or_default();
    }
    let settings = reader.settings();
    let splits = splits_attrs(reader);
    let storage = reader.storage().as_ref();
    Ok(json!({
        "store": root.to_string(),
        "survey": tables.survey,
        "rows": reader.rows(),
        "bytes_on_disk": storage.total_size()?,
        "stamp_size": settings.stamp_size,
        "nan_policy": if settings.keep_nan { "keep" } else { "zero" },
        "masked_policy": if settings.keep_masked { MASKED_KEPT } else { MASKED_AS_MISSING },
        "chunk_rows": settings.chunk_rows,
        "variance": settings.variance,
        "psf": settings.psf,
        "chunks": reader.chunks(),
        "nights": nights,
        "schema_versions": versions,
        "labels": labels,
        "classes": classes,
        "labels_csv": reader.root_attrs()["ztf2zarr"]["labels"]["csv"],
        "stamp_flags": flags,
        "rejected_inputs": rejects_logged(storage)?,
        "splits": splits.as_ref().map(|_| split_sizes(reader)),
        "splits_stale": splits.as_ref().map(|attrs| splits_stale(tables, attrs, &rows)),
        "lightcurves": lightcurves(reader)?,
        "runs": reader.runs(),
        "unfinished": crate::store::interrupted(storage)?,
    }))
}

/// A folder that is no store yet because the first build into it was interrupted: say so, and
/// what to do, instead of "not a store" (None: it is not that).
fn first_build_interrupted(root: &StoreTarget) -> Option<anyhow::Error> {
    let storage = crate::store::open_storage(root).ok()?;
    let what = crate::store::interrupted(storage.as_ref()).ok()??;
    Some(anyhow::anyhow!(
        "`{}` is not a store yet: {what}; the first build into it committed nothing, so run it again (it starts anew)",
        root
    ))
}

/// The store's code table (root attrs `ztf2zarr.labels.classes`) in code order, each class with
/// its alerts counted from the catalog's labels, a class without any included (None: unlabeled).
fn class_table(reader: &StoreReader, alerts: &BTreeMap<String, usize>) -> Option<Vec<Value>> {
    let table = reader.root_attrs()["ztf2zarr"]["labels"]["classes"].as_object()?;
    let mut classes: Vec<(i64, &str)> = table.iter().filter_map(|(code, name)| Some((code.parse().ok()?, name.as_str()?))).collect();
    classes.sort_unstable();
    Some(
        classes
            .into_iter()
            .map(|(code, name)| json!({"code": code, "label": name, "alerts": alerts.get(name).copied().unwrap_or(0)}))
            .collect(),
    )
}

/// Objects and rows per kind of the light curves (null: the store has none). Objects are
/// counted from the object index, the small table of row ranges.
fn lightcurves(reader: &StoreReader) -> anyhow::Result<Value> {
    if reader.has_legacy_lightcurves() {
        return Ok(json!({"layout": "structured"}));
    }
    if !reader.settings().lightcurves {
        return Ok(Value::Null);
    }
    let Some(index) = reader.tables().lightcurve_table(OBJECTS) else { return Ok(Value::Null) };
    let layout = index.layout;
    // The object index's first column is the object.
    let objects: HashSet<String> =
        reader.table_rows(&index)?.chunks_exact(layout.itemsize()).filter_map(|row| layout.read_id(row, 0)).collect();
    let attrs = reader.documents().get(&format!("{LIGHTCURVES}/.zattrs")).cloned().unwrap_or(Value::Null);
    let rows = &attrs["ztf2zarr"]["rows"];
    Ok(json!({
        "objects": objects.len(),
        "detections": rows["detections"],
        "upper_limits": rows["upper_limits"],
        "forced": rows["forced"],
    }))
}

/// Why the splits no longer match the store (empty: they do; also empty when the splits predate
/// the record of what they were made from and nothing can be told).
fn splits_stale(tables: &Tables, attrs: &Value, rows: &[Vec<u8>]) -> Vec<String> {
    split_basis(attrs).map_or_else(Vec::new, |basis| stale_reasons(tables.catalog, &basis, rows))
}

fn counts(map: &Value) -> String {
    let Some(map) = map.as_object().filter(|m| !m.is_empty()) else { return "-".into() };
    map.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
}

/// Alerts per class in code order (every class of the code table, one without alerts too), then
/// the unlabeled ones, as the labelling summaries say it; and the CSV the labels came from.
fn label_counts(info: &Value) -> String {
    let alerts = info["labels"].as_object().cloned().unwrap_or_default();
    let unlabeled = alerts.get("").map_or(0, number);
    let Some(classes) = info["classes"].as_array() else {
        // Unlabeled, or labels without a code table: the labels the catalog holds.
        let named = alerts.iter().filter(|(name, _)| !name.is_empty()).map(|(name, n)| (name.as_str(), number(n)));
        return class_counts(named, unlabeled);
    };
    let known: HashSet<&str> = classes.iter().filter_map(|c| c["label"].as_str()).collect();
    let per_class = classes.iter().map(|c| (c["label"].as_str().unwrap_or_default(), number(&c["alerts"])));
    let strays =
        alerts.iter().filter(|(name, _)| !name.is_empty() && !known.contains(name.as_str())).map(|(name, n)| (name.as_str(), number(n)));
    let text = class_counts(per_class.chain(strays), unlabeled);
    match info["labels_csv"].as_str() {
        Some(csv) => format!("{text} (from {csv})"),
        None => text,
    }
}

/// Flag counts in the order of their values, each with its value (as `stamp_flags & value`).
fn flag_counts(map: &Value, tables: &Tables) -> String {
    tables.stamps.names.iter().map(|(value, name)| format!("{value}={name} {}", map[*name])).collect::<Vec<_>>().join(", ")
}

#[allow(clippy::cast_precision_loss)] // sizes for display
fn render(info: &Value, tables: &Tables, target: &StoreTarget) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "store        {}", info["store"].as_str().unwrap_or_default());
    let _ = writeln!(out, "survey       {}", tables.survey);
    let _ = writeln!(out, "rows         {}", info["rows"]);
    let place = if target.is_remote() { "in object storage" } else { "on disk" };
    let _ = writeln!(out, "size         {:.1} MB {place}", info["bytes_on_disk"].as_u64().unwrap_or(0) as f64 / 1e6);
    let nan_policy = info["nan_policy"].as_str().unwrap_or_default();
    let masked = match (tables.stamps.masked_value, info["masked_policy"].as_str(), nan_policy) {
        (None, ..) => String::new(),
        (Some(value), Some(MASKED_KEPT), _) => format!(", masked pixels kept as {value}"),
        (Some(_), _, "keep") => ", masked pixels stored as NaN".into(),
        (Some(_), ..) => ", masked pixels stored as 0".into(),
    };
    let variance = if info["variance"] == true { ", with variance planes (variance)" } else { "" };
    let psf = if info["psf"] == true { ", PSF images at their own size (psf)" } else { "" };
    let _ = writeln!(out, "stamps       3 x {0} x {0}, NaN policy {nan_policy}{masked}{variance}{psf}", info["stamp_size"]);
    let _ = writeln!(out, "chunks       {} of {} rows", info["chunks"], info["chunk_rows"]);
    let nights = info["nights"].as_object().cloned().unwrap_or_default();
    let span = match (nights.keys().next(), nights.keys().next_back()) {
        (Some(first), Some(last)) if first == last => format!("1 night, {first} (UTC date of {})", tables.time_column.0),
        (Some(first), Some(last)) => format!("{} nights, {first} … {last} (UTC dates of {})", nights.len(), tables.time_column.0),
        _ => "-".into(),
    };
    let _ = writeln!(out, "nights       {span}");
    let _ = writeln!(out, "schemas      {}", counts(&info["schema_versions"]));
    let _ = writeln!(out, "labels       {}", label_counts(info));
    let _ = writeln!(out, "stamp flags  {}", flag_counts(&info["stamp_flags"], tables));
    let _ = writeln!(out, "splits       {}", counts(&info["splits"]));
    let stale: Vec<&str> = info["splits_stale"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    if !stale.is_empty() {
        let _ = writeln!(out, "             stale: {}; run `ztf2zarr split` again", stale.join("; "));
    }
    let curves = &info["lightcurves"];
    let line = if curves.is_null() {
        "- (built with --no-lightcurves, or by an earlier version)".to_string()
    } else if curves["layout"] == "structured" {
        "in the structured layout of an earlier release (read by the Python reader; writing commands refuse it: build a new store)"
            .to_string()
    } else {
        format!(
            "{}: {}, {}, {} (lightcurves/)",
            counted(number(&curves["objects"]), "object", "objects"),
            counted(number(&curves["detections"]), "detection", "detections"),
            counted(number(&curves["upper_limits"]), "upper limit", "upper limits"),
            counted(number(&curves["forced"]), "forced-photometry epoch", "forced-photometry epochs"),
        )
    };
    let _ = writeln!(out, "light curves {line}");
    let rejected = number(&info["rejected_inputs"]);
    let logs = if rejected > 0 { " (logs in rejects/)" } else { "" };
    let _ = writeln!(out, "rejected     {}{logs}", counted(rejected, "input", "inputs"));
    if let Some(unfinished) = info["unfinished"].as_str() {
        let _ = writeln!(out, "unfinished   {unfinished}");
    }
    let runs = info["runs"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(out, "builds       {}", runs.len());
    for run in &runs {
        let _ = writeln!(
            out,
            "  {}  rows {} → {}  {}",
            run["started"].as_str().unwrap_or_default(),
            run["rows_before"],
            run["rows_after"],
            describe_run(run)
        );
    }
    out
}

/// One line about what a build, relabel or split did.
fn describe_run(run: &Value) -> String {
    if let Some(csv) = run["relabel"].as_str() {
        return format!("relabeled from {csv} ({} labeled)", counted(number(&run["labeled"]), "alert", "alerts"));
    }
    if run["split"].is_object() {
        let split = &run["split"];
        return format!("split with seed {}: train {}, val {}, test {}", split["seed"], split["train"], split["val"], split["test"]);
    }
    let inputs: Vec<String> = run["inputs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            format!(
                "{} ({} written, {}, {} rejected)",
                i["name"].as_str().unwrap_or_default(),
                i["written"],
                counted(number(&i["duplicates"]), "duplicate", "duplicates"),
                i["rejected"]
            )
        })
        .collect();
    inputs.join("; ")
}

/// A count from the JSON this tool wrote (0 where missing).
fn number(value: &Value) -> usize {
    value.as_u64().and_then(|n| usize::try_from(n).ok()).unwrap_or(0)
}
