//! Hostile Avro and FITS inputs, crafted byte by byte: a damaged block costs only its own
//! records, and every decoder limit (nesting, records per block, items per array, foreign
//! schemas, inflated size, FITS size) ends in one clear reject while the other inputs are stored.

use std::io::Write;
use std::path::Path;

use apache_avro::types::Value;
use ztf2zarr::formats::avro::Header;
use ztf2zarr::store::StoreReader;
use ztf2zarr::survey::ztf::tables;
use ztf2zarr::survey::ztf::tables::TABLES;
use ztf2zarr::synth::{synth_alert, synth_record, SynthConfig};

use crate::util::{assert_sound, ztf2zarr, ztf2zarr_ok};

/// The sync marker of every crafted container.
pub const SYNC: [u8; 16] = *b"0123456789abcdef";

/// Avro `long`: zig-zag, then base-128 varint.
pub fn long(value: i64) -> Vec<u8> {
    #[allow(clippy::cast_sign_loss)] // zig-zag maps the sign into the low bit
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    let mut out = Vec::new();
    loop {
        let byte = (zigzag & 0x7f) as u8;
        zigzag >>= 7;
        if zigzag == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// One block as written: the raw count varint (so a test can make it unreadable) and the data.
pub struct RawBlock {
    pub count: Vec<u8>,
    pub data: Vec<u8>,
}

impl RawBlock {
    pub fn new(count: i64, data: Vec<u8>) -> Self {
        RawBlock { count: long(count), data }
    }
}

/// An object container file: header (schema, codec, [`SYNC`]) and blocks, each followed by the sync marker.
pub fn container(schema: &str, codec: &str, blocks: &[RawBlock]) -> Vec<u8> {
    let mut out = b"Obj\x01".to_vec();
    out.extend(long(2));
    for (key, value) in [("avro.schema", schema.as_bytes()), ("avro.codec", codec.as_bytes())] {
        out.extend(long(key.len() as i64));
        out.extend(key.as_bytes());
        out.extend(long(value.len() as i64));
        out.extend(value);
    }
    out.extend(long(0));
    out.extend(SYNC);
    for block in blocks {
        out.extend(&block.count);
        out.extend(long(block.data.len() as i64));
        out.extend(&block.data);
        out.extend(SYNC);
    }
    out
}

fn synth_config() -> SynthConfig {
    SynthConfig { count: 100, ..SynthConfig::default() }
}

/// The ZTF 3.3 writer schema and the datum of synthetic alert `index` (candid first_candid + index).
pub fn synth_datum(index: usize) -> (String, Vec<u8>) {
    let file = synth_alert(&synth_config(), index);
    let header = Header::parse(&file).expect("a synthetic alert is a container");
    let frame = header.blocks().next().expect("one block").expect("an intact block");
    (String::from_utf8(header.schema_json.to_vec()).unwrap(), frame.data.to_vec())
}

/// A well-formed alert file, the input every hostile build carries besides the hostile one.
fn good_alert() -> (&'static str, Vec<u8>) {
    ("good.avro", synth_alert(&synth_config(), 99))
}

/// A container of `n` synthetic alerts, one per block, and their candids.
fn ten_blocks(n: usize) -> (String, Vec<RawBlock>, Vec<i64>) {
    let mut schema = String::new();
    let mut blocks = Vec::new();
    let mut candids = Vec::new();
    for index in 0..n {
        let (json, datum) = synth_datum(index);
        schema = json;
        blocks.push(RawBlock::new(1, datum));
        candids.push(synth_config().candid(index));
    }
    (schema, blocks, candids)
}

/// What one build did, as the user sees it.
pub struct Built {
    pub code: Option<i32>,
    pub summary: String,
    pub written: usize,
    pub rejected: usize,
    pub rejects: Vec<serde_json::Value>,
    pub candids: Vec<i64>,
}

impl Built {
    fn reasons(&self) -> Vec<&str> {
        self.rejects.iter().map(|r| r["reason"].as_str().unwrap()).collect()
    }

    /// The one reject line, which must name `file`.
    fn only_reject(&self, file: &str) -> &serde_json::Value {
        assert_eq!(self.rejects.len(), 1, "{}", self.summary);
        let reject = &self.rejects[0];
        assert!(reject["source"].as_str().unwrap().ends_with(file), "{reject}");
        reject
    }
}

/// The number after `label` at the start of a summary line (`  written     9 alerts…`).
pub fn summary_count(summary: &str, label: &str) -> usize {
    let line = summary.lines().find(|l| l.trim_start().starts_with(label)).unwrap_or_else(|| panic!("no `{label}` in {summary}"));
    line.trim_start()[label.len()..].split_whitespace().next().unwrap().parse().unwrap()
}

/// Records a `rejects.jsonl` line stands for.
pub fn records(reject: &serde_json::Value) -> usize {
    reject.get("records").map_or(1, |n| usize::try_from(n.as_u64().unwrap()).unwrap())
}

/// Build a store from `files` (written into one folder) and read back what it did.
pub fn build(dir: &Path, files: &[(&str, Vec<u8>)]) -> Built {
    let inputs = dir.join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    for (name, bytes) in files {
        std::fs::write(inputs.join(name), bytes).unwrap();
    }
    let store = dir.join("store.zarr");
    let output = ztf2zarr(["build".as_ref(), inputs.as_os_str(), "-o".as_ref(), store.as_os_str(), "--no-progress".as_ref()]);
    let summary = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(0), "{summary}\n{stderr}");
    let rejects = crate::util::rejects_text(&store).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let layout = tables::catalog();
    let candid = layout.index_of("candid").unwrap();
    let candids = StoreReader::open(&store, &TABLES)
        .map(|r| r.catalog_rows().unwrap().iter().map(|row| layout.read_i64(row, candid).unwrap()).collect())
        .unwrap_or_default();
    Built {
        code: output.status.code(),
        written: summary_count(&summary, "written"),
        rejected: summary_count(&summary, "rejected"),
        summary,
        rejects,
        candids,
    }
}

/// Build one 10-block file whose block 1 (the second) was damaged by `damage`; the nine other
/// alerts must be stored and the damaged block's one record rejected.
fn second_of_ten_damaged(damage: impl FnOnce(&mut Vec<RawBlock>)) -> Built {
    let (schema, mut blocks, candids) = ten_blocks(10);
    damage(&mut blocks);
    let dir = tempfile::tempdir().unwrap();
    let built = build(dir.path(), &[("ten.avro", container(&schema, "null", &blocks))]);
    let kept: Vec<i64> = candids.iter().enumerate().filter(|(i, _)| *i != 1).map(|(_, c)| *c).collect();
    assert_eq!(built.candids, kept, "{}", built.summary);
    assert_eq!(built.written, 9, "{}", built.summary);
    let reject = built.only_reject("ten.avro");
    assert_eq!(reject["kind"], "corrupt-avro");
    assert_eq!(built.rejected, records(reject), "{}", built.summary);
    built
}

#[test]
fn damaged_data_in_block_2_of_10_costs_only_its_record() {
    let built = second_of_ten_damaged(|blocks| {
        let half = blocks[1].data.len() / 2;
        blocks[1].data.truncate(half);
    });
    assert_eq!(built.rejected, 1);
    assert!(
        built.reasons()[0].contains("block 1") && built.reasons()[0].contains("reading on with the next block"),
        "{:?}",
        built.reasons()
    );
}

#[test]
fn a_damaged_sync_marker_after_block_2_of_10_costs_only_its_record() {
    let (schema, blocks, _) = ten_blocks(10);
    let mut file = container(&schema, "null", &blocks);
    // The sync marker after block 1 is the third occurrence of SYNC in the file (header, block 0, block 1).
    let third = file.windows(16).enumerate().filter(|(_, w)| *w == SYNC).nth(2).unwrap().0;
    file[third + 5] ^= 0x40;
    let dir = tempfile::tempdir().unwrap();
    let built = build(dir.path(), &[("ten.avro", file)]);
    assert_eq!((built.written, built.rejected), (9, 1), "{}", built.summary);
    assert!(built.only_reject("ten.avro")["reason"].as_str().unwrap().contains("does not end with the header's sync marker"));
}

#[test]
fn a_block_size_too_large_resumes_at_the_next_sync_marker() {
    let (schema, blocks, _) = ten_blocks(10);
    let mut file = container(&schema, "null", &blocks);
    // Block 1 starts right after the second SYNC; its count is one byte (2 = one record), then its size.
    let second = file.windows(16).enumerate().filter(|(_, w)| *w == SYNC).nth(1).unwrap().0 + 16;
    let size = long(blocks[1].data.len() as i64);
    let bigger = long(blocks[1].data.len() as i64 + 1000);
    assert_eq!(size.len(), bigger.len());
    file[second + 1..second + 1 + size.len()].copy_from_slice(&bigger);
    let dir = tempfile::tempdir().unwrap();
    let built = build(dir.path(), &[("ten.avro", file)]);
    assert_eq!((built.written, built.rejected), (9, 1), "{}", built.summary);
    assert!(built.reasons()[0].contains("reading resumed at the next sync marker"), "{:?}", built.reasons());
}

#[test]
fn an_unreadable_record_count_counts_as_one() {
    let built = second_of_ten_damaged(|blocks| blocks[1].count = vec![0xff; 11]);
    assert_eq!(built.rejected, 1);
    assert!(built.reasons()[0].contains("record count is unreadable, counted as 1"), "{:?}", built.reasons());
}

#[test]
fn a_huge_record_count_is_bounded_by_the_bytes_of_the_block() {
    let built = second_of_ten_damaged(|blocks| blocks[1].count = long(1 << 62));
    let datum_len = synth_datum(1).1.len();
    assert!(built.rejected > 1 && built.rejected < datum_len / 100, "{}", built.summary);
    assert!(built.reasons()[0].contains(&format!("declares {} records", 1u64 << 62)), "{:?}", built.reasons());
}

#[test]
fn a_cut_last_sync_marker_keeps_every_block_before_it() {
    let (schema, blocks, candids) = ten_blocks(10);
    let mut file = container(&schema, "null", &blocks);
    file.truncate(file.len() - 5);
    let dir = tempfile::tempdir().unwrap();
    let built = build(dir.path(), &[("cut.avro", file)]);
    assert_eq!(built.candids, candids[..9], "{}", built.summary);
    assert_eq!((built.written, built.rejected), (9, 1), "{}", built.summary);
    let reason = built.only_reject("cut.avro")["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("block 9") && reason.contains("no sync marker follows"), "{reason}");
}

/// A writer schema that passes for a ZTF alert (candid, candidate, three cutouts) with `extra`
/// fields (JSON) between the candidate and the cutouts.
fn alert_like_schema(extra: &str) -> String {
    format!(
        r#"{{"type":"record","name":"alert","namespace":"ztf","fields":[
        {{"name":"candid","type":"long"}},
        {{"name":"candidate","type":{{"type":"record","name":"candidate","fields":[{{"name":"jd","type":"double"}}]}}}},
        {extra}
        {{"name":"cutoutScience","type":["null","bytes"]}},
        {{"name":"cutoutTemplate","type":["null","bytes"]}},
        {{"name":"cutoutDifference","type":["null","bytes"]}}]}}"#
    )
}

/// A datum of [`alert_like_schema`]: `extra` is the encoding of the extra fields; cutouts null.
fn alert_like_datum(extra: &[u8]) -> Vec<u8> {
    let mut datum = long(7);
    datum.extend(2_458_451.75f64.to_le_bytes());
    datum.extend(extra);
    datum.extend([0, 0, 0]);
    datum
}

/// Build the good alert and `file` named `name`: the good one is stored, `name` is rejected
/// once, as `kind`, with a reason containing `words`; returns the reject's record count.
fn rejected_once(name: &str, file: Vec<u8>, kind: &str, words: &str) -> usize {
    let dir = tempfile::tempdir().unwrap();
    records(&rejected_once_in(dir.path(), name, file, kind, words))
}

/// As [`rejected_once`], building the store in `dir`; returns the reject line.
fn rejected_once_in(dir: &Path, name: &str, file: Vec<u8>, kind: &str, words: &str) -> serde_json::Value {
    let built = build(dir, &[good_alert(), (name, file)]);
    assert_eq!(built.code, Some(0));
    assert_eq!(built.written, 1, "{}", built.summary);
    assert_eq!(built.candids, [synth_config().candid(99)]);
    let reject = built.only_reject(name);
    assert_eq!(reject["kind"], kind, "{reject}");
    assert!(reject["reason"].as_str().unwrap().contains(words), "{reject}");
    assert_eq!(built.rejected, records(reject), "{}", built.summary);
    assert!(built.summary.contains(name), "the summary names the file: {}", built.summary);
    reject.clone()
}

#[test]
fn a_recursive_type_nested_10000_deep_hits_the_nesting_limit() {
    let schema =
        alert_like_schema(r#"{"name":"chain","type":{"type":"record","name":"link","fields":[{"name":"next","type":["null","link"]}]}},"#);
    let mut chain = vec![2u8; 10_000]; // union branch 1: another link
    chain.push(0); // branch 0: null ends the chain
    let file = container(&schema, "null", &[RawBlock::new(1, alert_like_datum(&chain))]);
    assert_eq!(rejected_once("deep.avro", file, "corrupt-avro", "nested more than 64 deep"), 1);
}

#[test]
fn zero_byte_records_declared_by_the_hundred_million_are_one_reject() {
    let schema = r#"{"type":"record","name":"nothing","fields":[]}"#;
    for count in [100_000_000, 1 << 62] {
        let file = container(schema, "null", &[RawBlock::new(count, Vec::new())]);
        // Zero bytes hold no record that takes a byte: the count is bounded to one.
        assert_eq!(rejected_once("empty.avro", file, "not-an-alert", "not a ZTF alert"), 1);
    }
}

#[test]
fn more_alert_records_than_the_bytes_can_hold_are_one_bounded_reject() {
    let (schema, datum) = synth_datum(0);
    let file = container(&schema, "null", &[RawBlock::new(100_000_000, datum.clone())]);
    let counted = rejected_once("many.avro", file, "corrupt-avro", "declares 100000000 records");
    assert!(counted > 1 && counted < datum.len() / 100, "{counted}");
}

#[test]
fn an_array_of_nulls_counted_in_quintillions_runs_out_of_values() {
    let schema = alert_like_schema(r#"{"name":"nothing","type":{"type":"array","items":"null"}},"#);
    let mut items = long(1 << 62);
    items.push(0);
    let file = container(&schema, "null", &[RawBlock::new(1, alert_like_datum(&items))]);
    assert_eq!(rejected_once("nulls.avro", file, "corrupt-avro", "more values than"), 1);
}

#[test]
fn a_foreign_schema_with_two_million_records_is_one_reject() {
    let schema = r#"{"type":"record","name":"flag","fields":[{"name":"on","type":"boolean"}]}"#;
    let file = container(schema, "null", &[RawBlock::new(2_000_000, vec![1; 2_000_000])]);
    assert_eq!(rejected_once("foreign.avro", file, "not-an-alert", "no `candidate` record"), 2_000_000);
}

/// A raw deflate stream of `copies` × 1 MiB of zeros, made from one sync-flushed megabyte
/// repeated (each copy refers only to zeros before it) and a final empty block.
fn zeros_deflated(copies: usize) -> Vec<u8> {
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&vec![0; 1 << 20]).unwrap();
    encoder.flush().unwrap();
    let megabyte = encoder.get_ref().clone();
    let mut stream: Vec<u8> = megabyte.iter().copied().cycle().take(megabyte.len() * copies).collect();
    stream.extend([0x03, 0x00]); // a final fixed-Huffman block holding only its end code
    stream
}

#[test]
fn a_deflate_block_of_3_mb_inflating_to_3_gb_is_capped() {
    // The stream is sound: two copies inflate to exactly 2 MiB.
    let mut inflated = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::DeflateDecoder::new(&zeros_deflated(2)[..]), &mut inflated).unwrap();
    assert_eq!(inflated.len(), 2 << 20);

    let bomb = zeros_deflated(3 * 1024);
    assert!(bomb.len() < 4 << 20, "{}", bomb.len());
    let (schema, _) = synth_datum(0);
    let file = container(&schema, "deflate", &[RawBlock::new(1, bomb)]);
    let limit = ztf2zarr::formats::avro::MAX_INFLATED_BLOCK;
    assert_eq!(rejected_once("bomb.avro", file, "corrupt-avro", &format!("inflates to more than {limit} bytes")), 1);
}

/// A gzip'd FITS header whose axes are `width` × `height`, with a few pixels of data.
fn fits_gz(width: &str, height: &str) -> Vec<u8> {
    let cards = ["SIMPLE  =  T", "BITPIX  =                  -32", "NAXIS   =                    2"].map(String::from).into_iter().chain([
        format!("NAXIS1  = {width:>20}"),
        format!("NAXIS2  = {height:>20}"),
        "END".into(),
    ]);
    let mut fits: Vec<u8> = cards.flat_map(|c| format!("{c:<80}").into_bytes()).collect();
    fits.resize(2880 + 64, 0);
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&fits).unwrap();
    encoder.finish().unwrap()
}

/// A top-level field of an alert record.
fn field<'f>(fields: &'f mut [(String, Value)], name: &str) -> &'f mut Value {
    &mut fields.iter_mut().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no `{name}` field")).1
}

/// The value inside a union (or the value itself).
fn unwrapped(value: &mut Value) -> &mut Value {
    match value {
        Value::Union(_, inner) => unwrapped(inner),
        other => other,
    }
}

/// Synthetic alert `index` with `edit` applied to its top-level fields, in a container.
pub fn edited_alert(index: usize, edit: impl FnOnce(&mut Vec<(String, Value)>)) -> Vec<u8> {
    let (json, _) = synth_datum(index);
    let schema = apache_avro::Schema::parse_str(&json).unwrap();
    let Value::Record(mut fields) = synth_record(&synth_config(), index) else { panic!("an alert is a record") };
    edit(&mut fields);
    let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&schema).build().unwrap();
    let datum = writer.write_value_to_vec(Value::Record(fields)).unwrap();
    container(&json, "null", &[RawBlock::new(1, datum)])
}

/// Synthetic alert 0 with its science cutout replaced by `stamp`, in a container.
fn alert_with_science_cutout(stamp: Vec<u8>) -> Vec<u8> {
    edited_alert(0, |fields| {
        let Value::Record(parts) = unwrapped(field(fields, "cutoutScience")) else { panic!("a cutout is a record") };
        parts.iter_mut().find(|(name, _)| name == "stampData").unwrap().1 = Value::Bytes(stamp);
    })
}

#[test]
fn fits_axes_whose_product_overflows_are_a_bad_cutout() {
    for (width, height) in [("4611686018427387904", "4"), ("4294967296", "4294967296"), ("9999999", "9999999")] {
        let file = alert_with_science_cutout(fits_gz(width, height));
        assert_eq!(rejected_once("fits.avro", file, "bad-cutout", "-pixel limit"), 1);
    }
}

/// Build `file` onto the store that [`build`] made in `dir`, as a later night; returns the summary.
fn build_onto(dir: &Path, name: &str, file: Vec<u8>) -> String {
    let inputs = dir.join("later");
    std::fs::create_dir_all(&inputs).unwrap();
    std::fs::write(inputs.join(name), file).unwrap();
    let store = dir.join("store.zarr");
    ztf2zarr_ok(["build".as_ref(), inputs.as_os_str(), "-o".as_ref(), store.as_os_str(), "--no-progress".as_ref()])
}

/// The `stampData` of synthetic alert 0's three cutouts.
fn synth_stamps() -> Vec<Vec<u8>> {
    let Value::Record(mut fields) = synth_record(&synth_config(), 0) else { panic!("an alert is a record") };
    ["cutoutScience", "cutoutTemplate", "cutoutDifference"]
        .iter()
        .map(|name| {
            let Value::Record(parts) = unwrapped(field(&mut fields, name)) else { panic!("a cutout is a record") };
            match &parts.iter().find(|(part, _)| part == "stampData").unwrap().1 {
                Value::Bytes(stamp) => stamp.clone(),
                other => panic!("stampData is {other:?}"),
            }
        })
        .collect()
}

/// A datum of [`alert_like_schema`] with real cutouts, so that only `extra` can make it a reject.
fn alert_like_datum_with_cutouts(extra: &[u8]) -> Vec<u8> {
    let mut datum = alert_like_datum(extra);
    datum.truncate(datum.len() - 3); // the three null cutouts
    for stamp in synth_stamps() {
        datum.extend(long(1));
        datum.extend(long(stamp.len() as i64));
        datum.extend(stamp);
    }
    datum
}

/// An `fp_hists` array of records holding only a jd, for [`alert_like_schema`].
const FP_HISTS_OF_JDS: &str = r#"{"name":"fp_hists","type":["null",{"type":"array","items":{"type":"record","name":"fp_hist","fields":[{"name":"jd","type":"double"}]}}]},"#;

/// An alert of [`alert_like_schema`] whose fp_hists hold `jds`.
fn fp_hists_with_jds(jds: &[f64]) -> Vec<u8> {
    let mut history = long(1);
    history.extend(long(jds.len() as i64));
    history.extend(jds.iter().flat_map(|jd| jd.to_le_bytes()));
    history.push(0);
    container(&alert_like_schema(FP_HISTS_OF_JDS), "null", &[RawBlock::new(1, alert_like_datum_with_cutouts(&history))])
}

#[test]
fn a_non_finite_jd_rejects_its_alert_and_the_store_stays_sound() {
    let prv_nan = edited_alert(0, |fields| {
        let Value::Array(history) = unwrapped(field(fields, "prv_candidates")) else { panic!("prv_candidates is an array") };
        assert!(history.len() > 3, "alert 0 has {} prv_candidates", history.len());
        let Value::Record(record) = unwrapped(&mut history[3]) else { panic!("a prv_candidate is a record") };
        *unwrapped(field(record, "jd")) = Value::Double(f64::NAN);
    });
    let candidate_inf = edited_alert(1, |fields| {
        let Value::Record(candidate) = unwrapped(field(fields, "candidate")) else { panic!("candidate is a record") };
        *unwrapped(field(candidate, "jd")) = Value::Double(f64::NEG_INFINITY);
    });
    let cases = [
        (prv_nan, "prv_candidates[3].jd is NaN: an epoch needs a finite jd"),
        (candidate_inf, "candidate.jd is -inf: an epoch needs a finite jd"),
        (fp_hists_with_jds(&[2_458_451.5, f64::INFINITY]), "fp_hists[1].jd is inf: an epoch needs a finite jd"),
    ];
    for (file, reason) in cases {
        let dir = tempfile::tempdir().unwrap();
        rejected_once_in(dir.path(), "jd.avro", file, "bad-value", reason);
        assert_sound(&dir.path().join("store.zarr"));
        let later = build_onto(dir.path(), "later.avro", synth_alert(&synth_config(), 98));
        assert_eq!(summary_count(&later, "written"), 1, "{later}");
        assert_sound(&dir.path().join("store.zarr"));
    }
}

#[test]
fn two_hundred_thousand_tiny_history_records_are_rejected_for_their_bytes() {
    let prv_candidates = |fields: &str| {
        let items = format!(r#"{{"type":"record","name":"prv_candidate","fields":[{fields}]}}"#);
        alert_like_schema(&format!(r#"{{"name":"prv_candidates","type":["null",{{"type":"array","items":{items}}}]}},"#))
    };
    // One one-byte field per record (fid 1), or records with no field at all.
    for (schema, record) in [(prv_candidates(r#"{"name":"fid","type":"int"}"#), long(1)), (prv_candidates(""), Vec::new())] {
        let mut history = long(1);
        history.extend(long(200_000));
        history.extend(record.repeat(200_000));
        history.push(0);
        let datum = alert_like_datum_with_cutouts(&history);
        let file = container(&schema, "null", &[RawBlock::new(1, datum.clone())]);
        let words = format!("history of 200000 records in {} bytes", datum.len());
        assert_eq!(rejected_once("tiny.avro", file, "bad-value", &words), 1);
    }
}

#[test]
fn object_ids_that_differ_in_one_non_ascii_character_are_rejected() {
    // U+00E9 and U+0229 differ only above their low byte: a light-curve key keeps one byte per
    // character, so these two objects would share their epochs.
    let ids = ["ZTF18abcd\u{e9}fg", "ZTF18abcd\u{229}fg"];
    let files: Vec<(&str, Vec<u8>)> = [("e9.avro", 0), ("229.avro", 1)]
        .into_iter()
        .zip(ids)
        .map(|((name, index), id)| (name, edited_alert(index, |fields| *unwrapped(field(fields, "objectId")) = Value::String(id.into()))))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut inputs = vec![good_alert()];
    inputs.extend(files);
    let built = build(dir.path(), &inputs);
    assert_eq!((built.written, built.rejected), (1, 2), "{}", built.summary);
    assert_eq!(built.candids, [synth_config().candid(99)]);
    assert_eq!(built.rejects.len(), 2, "{}", built.summary);
    for reject in &built.rejects {
        let escaped = if reject["source"].as_str().unwrap().ends_with("e9.avro") { r"ZTF18abcd\u{e9}fg" } else { r"ZTF18abcd\u{229}fg" };
        assert_eq!(reject["kind"], "bad-value", "{reject}");
        let reason = reject["reason"].as_str().unwrap();
        assert!(reason.contains(&format!("objectId \"{escaped}\" is not ASCII")) && reason.contains("must be ASCII"), "{reason}");
    }
    assert_sound(&dir.path().join("store.zarr"));
}
