//! Rubin (LSST) inputs at the binary: hostile messages, containers, gzip and cutouts (crafted
//! from the real Fink 10.0 messages) each end in one clear reject while the other alerts are
//! stored; alerts of the other survey are refused both ways; `--schema-dir` reads messages of a
//! schema newer than the bundled ones; labels, splits, info and verify work on a Rubin store.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use ztf2zarr::store::StoreReader;
use ztf2zarr::survey::lsst::tables::{self, TABLES};

use crate::hostile::{long, records, summary_count};
use crate::util::{assert_sound, tree_bytes};

/// The real message every hostile build carries besides the hostile input (the largest
/// diaSourceId of the 20, so the last record of the container).
const GOOD: i64 = 169_813_007_334_899_766;
/// The real message hostile inputs are made from.
const BASE: i64 = 169_813_006_111_211_570;
/// Longest a build may take before it counts as a hang.
const HANG: Duration = Duration::from_secs(120);

/// The shared Rubin alerts: `../shared/data/lsst-alerts` beside the repo.
fn data() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/lsst-alerts");
    assert!(path.join("MANIFEST.md").is_file(), "Rubin alert data not found at {}", path.display());
    path
}

fn singles() -> PathBuf {
    data().join("fink-v10.0")
}

fn message(id: i64) -> Vec<u8> {
    let path = singles().join(format!("{id}.avro"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The diaSourceIds of the 20 single messages, sorted.
fn single_ids() -> Vec<i64> {
    let mut ids: Vec<i64> = std::fs::read_dir(singles())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "avro"))
        .map(|p| p.file_stem().unwrap().to_str().unwrap().parse().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids.len(), 20);
    ids
}

fn data_samples_night() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data-samples/ztf_public_20250101")
}

// ---- crafting: Avro varints, FITS cards, gzip -------------------------------------------------

/// An Avro `long` at the start of `bytes`, and how many bytes it took.
fn read_long(bytes: &[u8]) -> Option<(i64, usize)> {
    let mut value = 0u64;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            #[allow(clippy::cast_possible_wrap)]
            return Some((((value >> 1) as i64) ^ -((value & 1) as i64), i + 1));
        }
    }
    None
}

/// Where each cutout of a 10.0 message lies: from its union branch byte to the end of its bytes.
/// The three cutouts (cutoutDifference, cutoutScience, cutoutTemplate) are the datum's last
/// fields, each `0x02` (branch `bytes`), a length and a FITS file.
fn cutouts(message: &[u8]) -> Vec<(usize, usize)> {
    let fits: Vec<usize> = message.windows(9).enumerate().filter(|(_, w)| *w == b"SIMPLE  =").map(|(i, _)| i).collect();
    assert_eq!(fits.len(), 3, "three FITS cutouts in the message");
    let spans: Vec<(usize, usize)> = fits
        .iter()
        .map(|&start| {
            (start.saturating_sub(11)..start - 1)
                .find_map(|p| {
                    let (len, used) = read_long(&message[p + 1..])?;
                    (message[p] == 2 && p + 1 + used == start).then(|| (p, start + usize::try_from(len).unwrap()))
                })
                .expect("a bytes branch and length before each FITS")
        })
        .collect();
    assert_eq!(spans[0].1, spans[1].0, "cutouts follow each other");
    assert_eq!(spans[1].1, spans[2].0);
    assert_eq!(spans[2].1, message.len(), "the last cutout ends the message");
    spans
}

/// `message` with its first cutout (cutoutDifference) replaced by `fits`, or null.
fn with_difference(message: &[u8], fits: Option<&[u8]>) -> Vec<u8> {
    let (start, end) = cutouts(message)[0];
    let mut out = message[..start].to_vec();
    match fits {
        Some(bytes) => {
            out.push(2);
            out.extend(long(i64::try_from(bytes.len()).unwrap()));
            out.extend(bytes);
        }
        None => out.push(0),
    }
    out.extend(&message[end..]);
    out
}

/// One 80-character FITS card `KEY = value`.
fn card(key: &str, value: &str) -> Vec<u8> {
    let text = format!("{key:<8}= {value:>20}");
    assert!(text.len() <= 80);
    format!("{text:<80}").into_bytes()
}

/// A header of `cards`, with or without its END card, padded to whole 2880-byte blocks.
fn header(cards: &[(&str, String)], end: bool) -> Vec<u8> {
    let mut out: Vec<u8> = cards.iter().flat_map(|(k, v)| card(k, v)).collect();
    if end {
        out.extend(format!("{:<80}", "END").bytes());
    }
    pad(&mut out, b' ');
    out
}

fn pad(bytes: &mut Vec<u8>, with: u8) {
    bytes.resize(bytes.len().div_ceil(2880) * 2880, with);
}

/// An image HDU of `width`×`height` float32 zeros: primary or an IMAGE extension named `name`.
fn image_hdu(primary: bool, name: &str, width: u64, height: u64, data: bool) -> Vec<u8> {
    let mut cards = if primary { vec![("SIMPLE", "T".to_string())] } else { vec![("XTENSION", "'IMAGE   '".to_string())] };
    cards.extend([
        ("BITPIX", "-32".to_string()),
        ("NAXIS", "2".to_string()),
        ("NAXIS1", width.to_string()),
        ("NAXIS2", height.to_string()),
    ]);
    if !primary {
        cards.extend([("PCOUNT", "0".to_string()), ("GCOUNT", "1".to_string()), ("EXTNAME", format!("'{name}'"))]);
    }
    let mut out = header(&cards, true);
    if data {
        let mut pixels = vec![0u8; usize::try_from(width * height * 4).unwrap()];
        pad(&mut pixels, 0);
        out.extend(pixels);
    }
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

// ---- running the binary -----------------------------------------------------------------------

/// What one run of the binary did.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Run `ztf2zarr ARGS...`, killed (and the test failed) if it takes longer than [`HANG`].
fn run<S: AsRef<OsStr>>(args: &[S]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_ztf2zarr"))
        .args(args)
        .env("SOURCE_DATE_EPOCH", "1767225600")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("run ztf2zarr");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > HANG {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("ztf2zarr hung: {:?}", args.iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect::<Vec<_>>());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = |path: &Path| String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned();
    Run { code: status.code(), stdout: text(&out), stderr: text(&err) }
}

/// What a build that ran to its end did, as the user sees it.
struct Built {
    summary: String,
    written: usize,
    duplicates: usize,
    rejected: usize,
    rejects: Vec<Value>,
    /// diaSourceIds of the store's rows, in row order.
    ids: Vec<i64>,
}

/// `build INPUTS -o STORE EXTRA...`, which must exit 0 and leave a sound store.
fn build(store: &Path, inputs: &[&Path], extra: &[&str]) -> Built {
    let mut args: Vec<&OsStr> = vec!["build".as_ref()];
    args.extend(inputs.iter().map(|p| p.as_os_str()));
    args.extend(["-o".as_ref(), store.as_os_str(), "--no-progress".as_ref()]);
    args.extend(extra.iter().map(OsStr::new));
    let done = run(&args);
    assert_eq!(done.code, Some(0), "{}\n{}", done.stdout, done.stderr);
    let summary = done.stdout;
    assert_sound(store);
    let rejects = crate::util::rejects_text(store).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    Built {
        written: summary_count(&summary, "written"),
        duplicates: summary_count(&summary, "duplicates"),
        rejected: summary_count(&summary, "rejected"),
        summary,
        rejects,
        ids: column_i64(store, "diaSourceId"),
    }
}

fn column_i64(store: &Path, name: &str) -> Vec<i64> {
    let layout = tables::catalog();
    let index = layout.index_of(name).unwrap();
    StoreReader::open(store, &TABLES)
        .map(|r| r.catalog_rows().unwrap().iter().map(|row| layout.read_i64(row, index).unwrap()).collect())
        .unwrap_or_default()
}

fn column_str(store: &Path, name: &str) -> Vec<String> {
    let layout = tables::catalog();
    let index = layout.index_of(name).unwrap();
    StoreReader::open(store, &TABLES).unwrap().catalog_rows().unwrap().iter().map(|row| layout.read_str(row, index).unwrap()).collect()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Build the good message and the hostile input `bytes` (`records` alert records) into a new
/// store: the good alert is stored, the hostile input is one reject of `kind` whose reason,
/// containing `reason`, is in the summary and in the rejects log; every alert is accounted for
/// and the store is sound. Under `--strict` the same inputs stop the build (exit 2) with the
/// reason, and no store is left.
fn hostile(bytes: &[u8], kind: &str, reason: &str) -> Built {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    // Named so that it comes first: the first input's packet tells a new store its survey.
    write(&inputs, "0-good.avro", &message(GOOD));
    write(&inputs, "hostile.avro", bytes);
    let store = dir.path().join("store.zarr");
    let built = build(&store, &[&inputs], &[]);
    assert_eq!(built.ids, vec![GOOD], "the good alert alone is stored: {}", built.summary);
    assert_eq!((built.written, built.duplicates, built.rejected), (1, 0, 1), "{}", built.summary);
    assert_eq!(built.rejects.len(), 1, "{}", built.summary);
    let line = &built.rejects[0];
    assert!(line["source"].as_str().unwrap().ends_with("hostile.avro"), "{line}");
    assert_eq!(line["kind"], kind, "{line}");
    assert_eq!(records(line), 1, "{line}");
    let text = line["reason"].as_str().unwrap();
    assert!(text.contains(reason), "reason {text:?} lacks {reason:?}");
    assert!(built.summary.contains(&format!("rejected    1 ({kind} 1)")), "{}", built.summary);
    assert!(built.summary.contains(text), "the summary shows the reason: {}", built.summary);

    let strict = dir.path().join("strict.zarr");
    let done =
        run(&["build".as_ref(), inputs.as_os_str(), "-o".as_ref(), strict.as_os_str(), "--no-progress".as_ref(), "--strict".as_ref()]);
    assert_eq!(done.code, Some(2), "{}\n{}", done.stdout, done.stderr);
    assert!(done.stderr.contains("--strict") && done.stderr.contains(reason), "{}", done.stderr);
    assert!(column_i64(&strict, "diaSourceId").is_empty(), "--strict stores nothing");
    built
}

// ---- framing ----------------------------------------------------------------------------------

#[test]
fn a_three_byte_file_is_a_truncated_header() {
    hostile(&[0, 0, 0], "corrupt-avro", "truncated Confluent header: 3 bytes");
}

#[test]
fn a_header_cut_at_four_bytes_and_a_header_alone_are_corrupt() {
    hostile(&message(BASE)[..4], "corrupt-avro", "truncated Confluent header: 4 bytes");
    hostile(
        &message(BASE)[..5],
        "corrupt-avro",
        "corrupt Avro: truncated: data ends inside an integer (Confluent schema id 1000, version 10.0)",
    );
}

#[test]
fn a_schema_id_not_bundled_is_named() {
    let mut newer = message(BASE);
    newer[1..5].copy_from_slice(&1203i32.to_be_bytes());
    hostile(&newer, "not-an-alert", "Confluent schema id 1203 (version 12.3) is not bundled; newer schemas can be given with --schema-dir");
}

#[test]
fn a_datum_cut_in_half_is_corrupt() {
    let base = message(BASE);
    hostile(&base[..base.len() / 2], "corrupt-avro", "(Confluent schema id 1000, version 10.0)");
}

#[test]
fn garbage_after_the_datum_is_corrupt() {
    let mut longer = message(BASE);
    longer.extend_from_slice(b"trailing garbage");
    hostile(&longer, "corrupt-avro", "16 bytes after the datum");
}

#[test]
fn a_cut_gzip_message_and_gzip_of_garbage_are_corrupt() {
    let gzipped = gzip(&message(BASE));
    hostile(&gzipped[..gzipped.len() / 2], "corrupt-avro", "gzip data does not inflate: incomplete deflate stream");
    let mut bomb = message(BASE);
    bomb.resize(65 << 20, 0);
    hostile(&gzip(&bomb), "corrupt-avro", "gzip data inflates to more than 64 MiB");
    hostile(
        &gzip(b"no alert in here, just text"),
        "corrupt-avro",
        "a gzip'd alert file, inflated: not a Rubin alert: starts with byte 0x6e",
    );
}

#[test]
fn a_container_cut_mid_block_keeps_the_blocks_before_the_cut() {
    let container = std::fs::read(data().join("fink-v10.0-container/alerts.avro")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    write(&inputs, "0-good.avro", &message(GOOD));
    write(&inputs, "cut.avro", &container[..container.len() / 2]);
    let store = dir.path().join("store.zarr");
    let built = build(&store, &[&inputs], &[]);
    let kept = built.written - 1;
    assert!((8..=10).contains(&kept), "about half of the 20 one-alert blocks: {}", built.summary);
    let mut expected: Vec<i64> = single_ids()[..kept].to_vec();
    expected.insert(0, GOOD);
    assert_eq!(built.ids, expected, "the good alert, then the blocks before the cut in order");
    assert_eq!(built.rejects.len(), 1, "{}", built.summary);
    let line = &built.rejects[0];
    assert_eq!(line["kind"], "corrupt-avro");
    assert!(line["reason"].as_str().unwrap().contains("block"), "{line}");
    assert_eq!(records(line), 1, "the block cut in half");
    // Every alert the cut file still declares (the whole blocks and the cut one), and the good one.
    assert_eq!(built.written + built.duplicates + built.rejected, 1 + kept + 1, "{}", built.summary);
}

// ---- cutouts ----------------------------------------------------------------------------------

#[test]
fn the_crafted_cutout_is_where_the_message_had_its_difference_image() {
    // The crafting itself: a real message re-encoded with its own cutout is the same message,
    // and a replaced cutout is read back as the decoder would.
    let base = message(BASE);
    let spans = cutouts(&base);
    let (start, end) = spans[0];
    let (len, used) = read_long(&base[start + 1..]).unwrap();
    let own = &base[start + 1 + used..end];
    assert_eq!(usize::try_from(len).unwrap(), own.len());
    assert_eq!(with_difference(&base, Some(own)), base);
    let tiny = image_hdu(true, "", 2, 2, true);
    let replaced = with_difference(&base, Some(&tiny));
    assert_eq!(replaced.len(), base.len() - own.len() + tiny.len() + long(i64::try_from(tiny.len()).unwrap()).len() - used);
}

#[test]
fn a_cutout_without_an_end_card_is_a_bad_cutout() {
    let cards =
        [("SIMPLE", "T".to_string()), ("BITPIX", "-32".into()), ("NAXIS", "2".into()), ("NAXIS1", "30".into()), ("NAXIS2", "30".into())];
    let mut fits = header(&cards, false);
    fits.extend(vec![0u8; 2880 * 2]);
    hostile(&with_difference(&message(BASE), Some(&fits)), "bad-cutout", "cutoutDifference: HDU 0: FITS header has no END card");
}

#[test]
fn a_cutout_declaring_2_to_the_62_columns_is_a_bad_cutout() {
    let fits = image_hdu(true, "", 1 << 62, 30, false);
    hostile(
        &with_difference(&message(BASE), Some(&fits)),
        "bad-cutout",
        "cutoutDifference: HDU 0: FITS image of 4611686018427387904x30 pixels is larger than the 4194304-pixel limit",
    );
}

#[test]
fn a_cutout_declaring_10000_by_10000_pixels_is_a_bad_cutout() {
    let fits = image_hdu(true, "", 10_000, 10_000, false);
    hostile(
        &with_difference(&message(BASE), Some(&fits)),
        "bad-cutout",
        "cutoutDifference: HDU 0: FITS image of 10000x10000 pixels is larger than the 4194304-pixel limit",
    );
}

#[test]
fn a_cutout_wider_than_1024_is_a_bad_cutout() {
    let fits = image_hdu(true, "", 1100, 3, true);
    hostile(
        &with_difference(&message(BASE), Some(&fits)),
        "bad-cutout",
        "cutoutDifference: FITS image of 1100x3 pixels is larger than the 1024x1024 cutout limit",
    );
}

#[test]
fn a_cutout_of_20_hdus_is_a_bad_cutout() {
    let mut fits = image_hdu(true, "", 2, 2, true);
    for i in 1..20 {
        fits.extend(image_hdu(false, &format!("EXTRA{i}"), 2, 2, true));
    }
    hostile(&with_difference(&message(BASE), Some(&fits)), "bad-cutout", "cutoutDifference: HDU 16: FITS file has more than 16 HDUs");
}

#[test]
fn a_cutout_that_is_not_fits_is_a_bad_cutout() {
    let junk = b"<html><body>this is not a FITS file</body></html>".repeat(100);
    hostile(&with_difference(&message(BASE), Some(&junk)), "bad-cutout", "cutoutDifference: HDU 0: not a FITS file");
}

#[test]
fn a_null_cutout_is_flagged_not_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    write(&inputs, "0-good.avro", &message(GOOD));
    write(&inputs, "null.avro", &with_difference(&message(BASE), None));
    let store = dir.path().join("store.zarr");
    let built = build(&store, &[&inputs], &[]);
    assert_eq!((built.written, built.duplicates, built.rejected), (2, 0, 0), "{}", built.summary);
    assert!(built.summary.contains("no-cutout 1"), "{}", built.summary);
    let flags: BTreeMap<i64, i64> = built.ids.iter().copied().zip(column_i64(&store, "stamp_flags")).collect();
    assert_eq!(flags[&BASE] & 8, 8, "no_cutout on the alert whose cutout is null");
    assert_eq!(flags[&GOOD] & 8, 0);
}

// ---- surveys ----------------------------------------------------------------------------------

/// Every file of a store but its rejects logs and root attributes (which record each run).
fn data_files(store: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    tree_bytes(store)
        .into_iter()
        .filter(|(path, _)| !path.starts_with("rejects") && path != Path::new(".zattrs") && path != Path::new(".zmetadata"))
        .collect()
}

#[test]
fn a_rubin_message_into_a_ztf_store_is_not_an_alert() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("ztf.zarr");
    let first = run(&["build".as_ref(), data_samples_night().as_os_str(), "-o".as_ref(), store.as_os_str(), "--no-progress".as_ref()]);
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    let before = data_files(&store);
    let input = write(dir.path(), "rubin.avro", &message(BASE));
    let built = build(&store, &[&input], &[]);
    assert_eq!((built.written, built.duplicates, built.rejected), (0, 0, 1), "{}", built.summary);
    let line = &built.rejects[0];
    assert_eq!(line["kind"], "not-an-alert");
    assert!(line["reason"].as_str().unwrap().contains("a Rubin (LSST) alert, and this store holds ZTF alerts"), "{line}");
    assert_eq!(data_files(&store), before, "the ZTF store's data is unchanged");
    assert!(run(&["info", store.to_str().unwrap()]).stdout.contains("survey       ztf"));
}

#[test]
fn a_ztf_alert_into_a_rubin_store_is_not_an_alert() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("rubin.zarr");
    let good = write(dir.path(), "good.avro", &message(GOOD));
    assert_eq!(build(&store, &[&good], &[]).written, 1);
    let before = data_files(&store);
    let ztf_alert = std::fs::read_dir(data_samples_night()).unwrap().map(|e| e.unwrap().path()).min().unwrap();
    let built = build(&store, &[&ztf_alert], &[]);
    assert_eq!((built.written, built.duplicates, built.rejected), (0, 0, 1), "{}", built.summary);
    let line = &built.rejects[0];
    assert_eq!(line["kind"], "not-an-alert");
    assert!(line["reason"].as_str().unwrap().contains("a ZTF alert, and this store holds Rubin (LSST) alerts"), "{line}");
    assert_eq!(data_files(&store), before, "the Rubin store's data is unchanged");
}

#[test]
fn survey_options_against_the_store_or_the_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("ztf.zarr");
    let first = run(&["build".as_ref(), data_samples_night().as_os_str(), "-o".as_ref(), store.as_os_str(), "--no-progress".as_ref()]);
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    let before = tree_bytes(&store);
    let rubin = write(dir.path(), "rubin.avro", &message(BASE));
    let refused = run(&["build", rubin.to_str().unwrap(), "-o", store.to_str().unwrap(), "--survey", "lsst", "--no-progress"]);
    assert_eq!(refused.code, Some(2), "{}", refused.stdout);
    assert!(
        refused.stderr.contains("--survey lsst names another survey than the store's") && refused.stderr.contains("holds ZTF alerts"),
        "{}",
        refused.stderr
    );
    assert_eq!(tree_bytes(&store), before, "the refused build left the store as it was");

    // A new store told to be ZTF, given Rubin alerts only: each is rejected naming both surveys.
    let inputs: Vec<PathBuf> = single_ids()[..3].iter().map(|id| singles().join(format!("{id}.avro"))).collect();
    let paths: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    let ztf = dir.path().join("told-ztf.zarr");
    let built = build(&ztf, &paths, &["--survey", "ztf"]);
    assert_eq!((built.written, built.duplicates, built.rejected), (0, 0, 3), "{}", built.summary);
    assert_eq!(built.rejects.len(), 3);
    for line in &built.rejects {
        assert_eq!(line["kind"], "not-an-alert");
        assert!(line["reason"].as_str().unwrap().contains("a Rubin (LSST) alert, and this store holds ZTF alerts"), "{line}");
    }
}

// ---- a Rubin store: append, labels, splits, info, verify --------------------------------------

#[test]
fn the_container_appended_onto_its_single_messages_is_20_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("rubin.zarr");
    let first = build(&store, &[&singles()], &[]);
    assert_eq!((first.written, first.rejected), (20, 0), "{}", first.summary);
    let before = tree_bytes(&store);
    let again = build(&store, &[&data().join("fink-v10.0-container/alerts.avro")], &[]);
    assert_eq!((again.written, again.duplicates, again.rejected), (0, 20, 0), "{}", again.summary);
    assert!(again.summary.contains("nothing new, the store is unchanged (20 rows)"), "{}", again.summary);
    assert_eq!(tree_bytes(&store), before, "the store is byte for byte as it was");
}

#[test]
fn labels_splits_info_and_verify_on_a_rubin_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("rubin.zarr");
    build(&store, &[&singles()], &[]);
    let objects = column_i64(&store, "diaObjectId");
    assert_eq!(objects.len(), 20);
    let distinct: BTreeSet<i64> = objects.iter().copied().collect();
    assert!(distinct.len() < objects.len(), "two Solar System alerts share diaObjectId 0");
    // Every object a class by its id, but the first (left unlabeled).
    let classes = ["SN", "AGN", "VS"];
    let truth: BTreeMap<i64, &str> = distinct.iter().skip(1).map(|o| (*o, classes[usize::try_from(o.rem_euclid(3)).unwrap()])).collect();
    let mut csv = String::from("diaObjectId,predicted_class\n");
    for (object, class) in &truth {
        csv += &format!("{object},{class}\n");
    }
    let csv_path = write(dir.path(), "labels.csv", csv.as_bytes());
    let labeled = run(&["label", store.to_str().unwrap(), "--labels", csv_path.to_str().unwrap()]);
    assert_eq!(labeled.code, Some(0), "{}\n{}", labeled.stdout, labeled.stderr);
    let labels = column_str(&store, "label");
    for (object, label) in objects.iter().zip(&labels) {
        assert_eq!(label.as_str(), truth.get(object).copied().unwrap_or(""), "diaObjectId {object}");
    }
    assert!(labels.iter().filter(|l| !l.is_empty()).count() >= 17, "{labels:?}");

    let split = run(&["split", store.to_str().unwrap(), "--train", "0.5", "--val", "0.25", "--test", "0.25", "--seed", "3"]);
    assert_eq!(split.code, Some(0), "{}\n{}", split.stdout, split.stderr);
    let mut split_of: BTreeMap<i64, &str> = BTreeMap::new();
    let mut rows = 0;
    for name in ["train", "val", "test"] {
        for row in split_rows(&store, name) {
            rows += 1;
            let object = objects[usize::try_from(row).unwrap()];
            let first = *split_of.entry(object).or_insert(name);
            assert_eq!(first, name, "diaObjectId {object} is in {first} and {name}");
        }
    }
    assert_eq!(rows, 20, "every row in one split");
    assert!(split_of.values().collect::<BTreeSet<_>>().len() >= 2, "{split_of:?}");

    let info = run(&["info", store.to_str().unwrap()]);
    assert_eq!(info.code, Some(0), "{}", info.stderr);
    assert!(info.stdout.contains("survey       lsst") && info.stdout.contains("rows         20"), "{}", info.stdout);
    let verify = run(&["verify", store.to_str().unwrap()]);
    assert_eq!(verify.code, Some(0), "{}", verify.stdout);
    assert!(verify.stdout.contains(": sound"), "{}", verify.stdout);
}

/// The row indices of a split (its chunks, zstd'd int64; an empty split has none).
fn split_rows(store: &Path, name: &str) -> Vec<i64> {
    let folder = store.join("splits").join(name);
    let mut chunks: Vec<PathBuf> = std::fs::read_dir(&folder)
        .map(|dir| dir.map(|e| e.unwrap().path()).filter(|p| !p.file_name().unwrap().to_str().unwrap().starts_with('.')).collect())
        .unwrap_or_default();
    chunks.sort();
    chunks
        .iter()
        .flat_map(|chunk| {
            let raw = zstd::decode_all(&std::fs::read(chunk).unwrap()[..]).unwrap();
            raw.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect::<Vec<_>>()
        })
        .collect()
}

// ---- --schema-dir -----------------------------------------------------------------------------

/// A folder holding the bundled 10.0 schema as version 12.0, and a real 10.0 message framed with
/// schema id 1200.
fn version_12(dir: &Path) -> (PathBuf, PathBuf) {
    let schemas = dir.join("schemas");
    std::fs::create_dir(&schemas).unwrap();
    let bundled = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/lsst/10.0.avsc")).unwrap();
    assert!(bundled.contains("lsst.v10_0.alert"));
    write(&schemas, "12.0.avsc", bundled.replace("v10_0", "v12_0").replace("v10.0", "v12.0").as_bytes());
    write(&schemas, "README.md", b"not a schema: ignored");
    let mut framed = message(BASE);
    framed[1..5].copy_from_slice(&1200i32.to_be_bytes());
    let input = write(dir, "id1200.avro", &framed);
    (schemas, input)
}

#[test]
fn schema_dir_reads_a_newer_version_and_without_it_the_id_is_rejected() {
    let help = run(&["build", "--help"]).stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    for said in ["--schema-dir <DIR>", "schemas/lsst/make_lsst_schemas.py", "a file of a bundled version replaces the bundled schema"] {
        assert!(help.contains(said), "build --help lacks {said:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let (schemas, input) = version_12(dir.path());

    let without = build(&dir.path().join("without.zarr"), &[&input], &["--survey", "lsst"]);
    assert_eq!((without.written, without.rejected), (0, 1), "{}", without.summary);
    assert_eq!(without.rejects[0]["kind"], "not-an-alert");
    let reason = without.rejects[0]["reason"].as_str().unwrap();
    assert!(reason.contains("Confluent schema id 1200 (version 12.0) is not bundled") && reason.contains("--schema-dir"), "{reason}");

    let store = dir.path().join("with.zarr");
    let with = build(&store, &[&input], &["--schema-dir", schemas.to_str().unwrap()]);
    assert_eq!((with.written, with.rejected), (1, 0), "{}", with.summary);
    assert_eq!(with.ids, vec![BASE]);
    assert_eq!(column_str(&store, "schema_version"), vec!["12.0"]);
    assert!(with.summary.contains("12.0 ×1"), "{}", with.summary);

    // The same message as 10.0 gives the same row but its version.
    let ten = build(&dir.path().join("ten.zarr"), &[&singles().join(format!("{BASE}.avro"))], &[]);
    assert_eq!(ten.ids, vec![BASE]);
    let catalog = |store: &Path| column_i64(store, "diaObjectId");
    assert_eq!(catalog(&store), catalog(&dir.path().join("ten.zarr")));
}

#[test]
fn schema_dir_files_are_checked_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (schemas, input) = version_12(dir.path());
    let bundled = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/lsst/10.0.avsc")).unwrap();
    let cases: [(&str, &[u8], &str); 4] = [
        ("13.0.avsc", b"{ \"type\": \"record\", ", "13.0.avsc`: not a valid Avro schema"),
        ("14.0.avsc", bundled.as_bytes(), "its file name says version 14.0, but its alert record names version 10.0"),
        ("15.00.avsc", bundled.as_bytes(), "15.00.avsc`: is not named `<major>.<minor>.avsc`"),
        (
            "16.0.avsc",
            b"{\"type\": \"record\", \"name\": \"lsst.v16_0.alert\", \"fields\": []}",
            "16.0.avsc`: the writer schema `lsst.v16_0.alert` is not a Rubin alert",
        ),
    ];
    for (name, bytes, message) in cases {
        let bad = write(&schemas, name, bytes);
        let store = dir.path().join("store.zarr");
        let done = run(&[
            "build",
            input.to_str().unwrap(),
            "-o",
            store.to_str().unwrap(),
            "--schema-dir",
            schemas.to_str().unwrap(),
            "--no-progress",
        ]);
        assert_eq!(done.code, Some(2), "{name}: {}", done.stdout);
        assert!(done.stderr.contains("--schema-dir") && done.stderr.contains(message), "{name}: {}", done.stderr);
        assert!(!store.exists(), "{name}: nothing written");
        std::fs::remove_file(bad).unwrap();
    }

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let done = run(&[
        "build",
        input.to_str().unwrap(),
        "-o",
        dir.path().join("e.zarr").to_str().unwrap(),
        "--schema-dir",
        empty.to_str().unwrap(),
    ]);
    assert_eq!(done.code, Some(2));
    assert!(done.stderr.contains("holds no schema"), "{}", done.stderr);

    // ZTF alerts carry their schema: a ZTF build is refused a --schema-dir.
    let store = dir.path().join("ztf.zarr");
    let done =
        run(&["build", data_samples_night().to_str().unwrap(), "-o", store.to_str().unwrap(), "--schema-dir", schemas.to_str().unwrap()]);
    assert_eq!(done.code, Some(2), "{}", done.stdout);
    assert!(done.stderr.contains("is refused for this ZTF build: ZTF alerts carry their own writer schema"), "{}", done.stderr);
    assert!(!store.exists());
}

#[test]
fn a_schema_dir_file_of_a_bundled_version_replaces_the_bundled_schema() {
    let dir = tempfile::tempdir().unwrap();
    let schemas = dir.path().join("schemas");
    std::fs::create_dir(&schemas).unwrap();
    // 10.0 whose diaSource.band is renamed: the store's band column stays empty.
    let bundled = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/lsst/10.0.avsc")).unwrap();
    let renamed = bundled.replace("\"name\": \"band\"", "\"name\": \"band_renamed\"");
    assert_ne!(renamed, bundled);
    write(&schemas, "10.0.avsc", renamed.as_bytes());
    let input = singles().join(format!("{BASE}.avro"));
    let plain = build(&dir.path().join("plain.zarr"), &[&input], &[]);
    let given = build(&dir.path().join("given.zarr"), &[&input], &["--schema-dir", schemas.to_str().unwrap()]);
    assert_eq!((plain.written, given.written), (1, 1));
    assert_eq!(column_str(&dir.path().join("plain.zarr"), "band"), vec!["i"]);
    assert_eq!(column_str(&dir.path().join("given.zarr"), "band"), vec![""], "the given 10.0 was used");
}

// ---- --psf: the PSF images at their own size --------------------------------------------------

/// The FITS cutouts of a real message, by store channel (science, template, difference); the
/// message holds them in schema order (difference, science, template).
fn message_cutouts(message: &[u8]) -> [Vec<u8>; 3] {
    let fits = |(span_start, end): (usize, usize)| {
        let start = span_start + message[span_start..].windows(9).position(|w| w == b"SIMPLE  =").unwrap();
        message[start..end].to_vec()
    };
    let spans = cutouts(message);
    [fits(spans[1]), fits(spans[2]), fits(spans[0])]
}

/// `psf/index` (flattened, 9 per row) and `psf/pixels` of a store with the `psf` group.
fn psf_arrays(store: &Path) -> (Vec<i64>, Vec<f32>) {
    let reader = StoreReader::open(store, &TABLES).unwrap();
    let arrays = reader.arrays();
    let read = |name: &str| reader.table_bytes(arrays.iter().find(|a| a.name == name).unwrap()).unwrap();
    let index = read("psf/index").chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect();
    let pixels = read("psf/pixels").chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    (index, pixels)
}

/// Row i's image of `channel` in the psf arrays, as (height, width, pixels), or None.
fn stored_psf(index: &[i64], pixels: &[f32], row: usize, channel: usize) -> Option<(usize, usize, Vec<f32>)> {
    let entry = &index[row * 9 + channel * 3..row * 9 + channel * 3 + 3];
    if entry == [-1, 0, 0] {
        return None;
    }
    let [start, height, width] = [entry[0], entry[1], entry[2]].map(|n| usize::try_from(n).unwrap());
    Some((height, width, pixels[start..start + height * width].to_vec()))
}

#[test]
fn psf_stores_every_real_psf_image_exactly_at_its_own_size() {
    use ztf2zarr::survey::lsst::cutout;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("psf.zarr");
    let built = build(&store, &[&singles()], &["--psf"]);
    assert_eq!((built.written, built.rejected), (20, 0), "{}", built.summary);
    let (index, pixels) = psf_arrays(&store);
    assert_eq!(index.len(), 20 * 9);
    let mut sizes = BTreeSet::new();
    for (row, id) in built.ids.iter().enumerate() {
        for (channel, fits) in message_cutouts(&message(*id)).iter().enumerate() {
            let (width, height, expected) = cutout::psf(fits).unwrap().expect("every real cutout has a PSFIMAGE");
            let stored = stored_psf(&index, &pixels, row, channel).expect("an image in the index");
            assert_eq!((stored.0, stored.1), (height, width), "row {row} channel {channel}");
            assert!(stored.2.iter().zip(&expected).all(|(a, b)| a.to_bits() == b.to_bits()), "row {row} channel {channel}: pixels differ");
            sizes.insert((channel, height));
        }
    }
    // Science and difference 41 x 41, templates of two sizes (the 9.0 alert's is 77 x 77).
    assert_eq!(sizes, BTreeSet::from([(0, 41), (1, 39), (1, 49), (2, 41)]));
    let verify = run(&["verify", store.to_str().unwrap()]);
    assert!(verify.stdout.contains("psf: psf/index places 60 PSF images of the 20 alerts"), "{}", verify.stdout);
    let zmetadata: Value = serde_json::from_slice(&std::fs::read(store.join(".zmetadata")).unwrap()).unwrap();
    for key in ["psf/.zgroup", "psf/.zattrs", "psf/index/.zarray", "psf/index/.zattrs", "psf/pixels/.zarray", "psf/pixels/.zattrs"] {
        assert!(zmetadata["metadata"].get(key).is_some(), "{key} consolidated");
    }
    assert_eq!(zmetadata["metadata"]["psf/pixels/.zarray"]["chunks"], serde_json::json!([1 << 20]));
    let info = run(&["info", store.to_str().unwrap()]).stdout;
    assert!(info.contains(", with variance planes (variance), PSF images at their own size (psf)"), "{info}");
    let help = run(&["build", "--help"]).stdout;
    assert!(help.contains("--psf") && help.contains("psf/pixels"), "build --help names --psf");
}

/// Two folders in `dir` holding the first 7 and the other 13 single messages.
fn two_parts(dir: &Path) -> (PathBuf, PathBuf) {
    let ids = single_ids();
    let (first, second) = (dir.join("first"), dir.join("second"));
    for (folder, part) in [(&first, &ids[..7]), (&second, &ids[7..])] {
        std::fs::create_dir(folder).unwrap();
        for id in part {
            write(folder, &format!("{id}.avro"), &message(*id));
        }
    }
    (first, second)
}

#[test]
fn psf_appends_continue_the_starts_and_follow_the_store_layout() {
    let dir = tempfile::tempdir().unwrap();
    let ids = single_ids();
    let (first, second) = two_parts(dir.path());
    // A null difference cutout and one without PSFIMAGE: [-1, 0, 0], the other images stored.
    let mut no_psf = image_hdu(true, "", 30, 30, true);
    no_psf.extend(image_hdu(false, "UNCERT", 30, 30, true));
    write(&second, "zz-null.avro", &with_difference(&message(ids[0]), None));
    let crafted = dir.path().join("crafted");
    std::fs::create_dir(&crafted).unwrap();
    write(&crafted, "no-psf.avro", &with_difference(&message(ids[1]), Some(&no_psf)));

    let once = dir.path().join("once.zarr");
    let whole = build(&once, &[&first, &second], &["--psf", "--chunk-rows", "3"]);
    assert_eq!((whole.written, whole.duplicates), (20, 1), "{}", whole.summary);
    let appended = dir.path().join("appended.zarr");
    build(&appended, &[&first], &["--psf", "--chunk-rows", "3"]);
    // The store has the psf group: an append without --psf continues it.
    build(&appended, &[&second], &[]);
    assert_eq!(psf_arrays(&appended), psf_arrays(&once), "an append gives the starts a single build gives");
    let psf_files = |store: &Path| tree_bytes(&store.join("psf"));
    assert_eq!(psf_files(&appended), psf_files(&once), "byte for byte");

    // Another store: the crafted cutouts, each [-1, 0, 0] where it has no PSF image.
    let holes = dir.path().join("holes.zarr");
    let null_input = write(dir.path(), "null.avro", &with_difference(&message(ids[0]), None));
    build(&holes, &[&null_input, &crafted.join("no-psf.avro")], &["--psf"]);
    let (index, pixels) = psf_arrays(&holes);
    for row in 0..2 {
        assert_eq!(stored_psf(&index, &pixels, row, 2), None, "row {row}: no difference PSF");
        assert!(stored_psf(&index, &pixels, row, 0).is_some() && stored_psf(&index, &pixels, row, 1).is_some());
    }
    assert_eq!(&index[6..9], &[-1, 0, 0]);

    // The layout is the store's: --psf onto a store without PSF images, or --no-variance onto
    // one with variance, is refused (exit 2, the store as it was), as --stamp-size is.
    let plain = dir.path().join("plain.zarr");
    build(&plain, &[&first], &[]);
    let metadata = std::fs::read(plain.join(".zmetadata")).unwrap();
    for (flag, says) in [("--psf", "has no PSF images"), ("--no-variance", "keeps the cutouts' variance planes")] {
        let refused = run(&["build".as_ref(), second.as_os_str(), "-o".as_ref(), plain.as_os_str(), flag.as_ref()]);
        assert_eq!(refused.code, Some(2), "{flag}: {}", refused.stderr);
        assert!(refused.stderr.contains(says), "{flag}: {}", refused.stderr);
        assert_eq!(std::fs::read(plain.join(".zmetadata")).unwrap(), metadata, "{flag}: the store is as it was");
    }
    assert!(!plain.join("psf").exists(), "an append does not change the store's layout");
    // Without the flags an append keeps the store's layout: its PSF images, or their absence.
    build(&plain, &[&second], &[]);
    assert!(!plain.join("psf").exists());
}

#[test]
fn a_psf_image_too_large_is_a_bad_cutout_only_under_psf() {
    let mut fits = image_hdu(true, "", 30, 30, true);
    fits.extend(image_hdu(false, "UNCERT", 30, 30, true));
    fits.extend(image_hdu(false, "PSFIMAGE", 1025, 1, true));
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "wide-psf.avro", &with_difference(&message(BASE), Some(&fits)));
    let plain = build(&dir.path().join("plain.zarr"), &[&input], &[]);
    assert_eq!((plain.written, plain.rejected), (1, 0), "{}", plain.summary);
    let with_psf = build(&dir.path().join("psf.zarr"), &[&input], &["--psf"]);
    assert_eq!((with_psf.written, with_psf.rejected), (0, 1), "{}", with_psf.summary);
    assert_eq!(with_psf.rejects[0]["kind"], "bad-cutout");
    let reason = with_psf.rejects[0]["reason"].as_str().unwrap();
    assert!(reason.contains("cutoutDifference PSFIMAGE: 1025x1 pixels, larger than the 1024x1024 cutout limit"), "{reason}");
}

#[test]
fn psf_is_refused_on_a_ztf_build() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("ztf.zarr");
    let refused = run(&["build".as_ref(), data_samples_night().as_os_str(), "-o".as_ref(), store.as_os_str(), "--psf".as_ref()]);
    assert_eq!(refused.code, Some(2), "{}", refused.stdout);
    assert!(refused.stderr.contains("--psf: ZTF cutouts carry no PSF image"), "{}", refused.stderr);
    assert!(!store.exists(), "no store is made");
    let built = run(&["build".as_ref(), data_samples_night().as_os_str(), "-o".as_ref(), store.as_os_str(), "--no-progress".as_ref()]);
    assert_eq!(built.code, Some(0), "{}", built.stderr);
    let before = tree_bytes(&store);
    let again = run(&["build".as_ref(), data_samples_night().as_os_str(), "-o".as_ref(), store.as_os_str(), "--psf".as_ref()]);
    assert_eq!(again.code, Some(2), "{}", again.stdout);
    assert!(again.stderr.contains("--psf: ZTF cutouts carry no PSF image"), "{}", again.stderr);
    assert_eq!(tree_bytes(&store), before, "the ZTF store is as it was");
}

#[test]
fn psf_on_generated_alerts_stores_their_gaussian_psfs() {
    let dir = tempfile::tempdir().unwrap();
    let night = dir.path().join("night");
    let made = run(&["generate", "--survey", "lsst", "--count", "30", "-o", night.to_str().unwrap()]);
    assert_eq!(made.code, Some(0), "{}", made.stderr);
    let store = dir.path().join("psf.zarr");
    let built = build(&store, &[&night], &["--psf"]);
    assert_eq!(built.written + built.rejected, 30, "{}", built.summary);
    let (index, pixels) = psf_arrays(&store);
    let mut images = 0;
    for row in 0..built.ids.len() {
        for channel in 0..3 {
            let Some((height, width, image)) = stored_psf(&index, &pixels, row, channel) else { continue };
            images += 1;
            assert_eq!(height, width, "square");
            if channel != 1 {
                assert_eq!(height, 41, "science and difference PSFs are 41 x 41, as Rubin's");
            }
            let sum: f64 = image.iter().map(|&p| f64::from(p)).sum();
            assert!((sum - 1.0).abs() < 1e-4, "row {row} channel {channel}: a normalised kernel sums to 1, not {sum}");
        }
    }
    assert!(images > 0, "the generated cutouts carry PSF images");
}

/// An append killed at each step of the commit protocol leaves the psf arrays as committed (or,
/// once published, as after), and its re-run gives the single build's psf files exactly.
#[test]
fn a_killed_psf_append_reads_as_committed_and_reruns_exactly() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = two_parts(dir.path());
    let once = dir.path().join("once.zarr");
    build(&once, &[&first, &second], &["--psf", "--chunk-rows", "3"]);
    let expected = (psf_arrays(&once), tree_bytes(&once.join("psf")));
    for point in ["after-chunk", "before-metadata", "before-publish", "after-publish"] {
        let store = dir.path().join(format!("{point}.zarr"));
        build(&store, &[&first], &["--psf", "--chunk-rows", "3"]);
        let committed = psf_arrays(&store);
        let status = Command::new(env!("CARGO_BIN_EXE_ztf2zarr"))
            .args(["build".as_ref(), second.as_os_str(), "-o".as_ref(), store.as_os_str(), "--no-progress".as_ref()])
            .env("ZTF2ZARR_FAULT", point)
            .status()
            .unwrap();
        assert_eq!(status.signal(), Some(9), "{point}: the build should have been killed");
        let after_kill = psf_arrays(&store);
        assert_eq!(after_kill, if point == "after-publish" { expected.0.clone() } else { committed }, "{point}");
        assert_sound(&store);
        build(&store, &[&second], &[]);
        assert_eq!((psf_arrays(&store), tree_bytes(&store.join("psf"))), expected, "{point}: the re-run completes it exactly");
    }
}

/// An archive that fails its checksum is rolled back whole: the PSF pixels of its alerts go with
/// them, and the starts of the alerts after it continue from where the pixels stood before it.
#[test]
fn psf_starts_after_a_rolled_back_archive_continue_from_the_kept_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let ids = single_ids();
    let folder = |name: &str, part: &[i64]| {
        let path = dir.path().join(name);
        std::fs::create_dir(&path).unwrap();
        for id in part {
            write(&path, &format!("{id}.avro"), &message(*id));
        }
        path
    };
    let (before, after) = (folder("before", &ids[..3]), folder("after", &ids[8..10]));
    let mut archive = tar::Builder::new(Vec::new());
    for id in &ids[3..8] {
        let bytes = message(*id);
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        archive.append_data(&mut header, format!("{id}.avro"), bytes.as_slice()).unwrap();
    }
    let mut bad = gzip(&archive.into_inner().unwrap());
    let crc = bad.len() - 8;
    bad[crc] ^= 0x80;
    let bad = write(dir.path(), "bad.tar.gz", &bad);
    let store = dir.path().join("rolled.zarr");
    let built = build(&store, &[&before, &bad, &after], &["--psf", "--chunk-rows", "2"]);
    assert_eq!((built.written, built.rejected), (5, 5), "{}", built.summary);
    let expected = dir.path().join("expected.zarr");
    build(&expected, &[&before, &after], &["--psf", "--chunk-rows", "2"]);
    assert_eq!(psf_arrays(&store), psf_arrays(&expected));
    assert_eq!(tree_bytes(&store.join("psf")), tree_bytes(&expected.join("psf")));
}
