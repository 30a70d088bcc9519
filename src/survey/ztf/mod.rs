//! Everything about one alert: from a file's bytes to catalog rows and stamps, or a reason why not.
//! Pure functions of bytes (no file or store access), so they run on any thread and test without I/O.
//!
//! Each file is decoded with its own writer schema (3.x writes unions value-first, 4.x null-first,
//! 1.x has fewer fields). A schema is compiled once into an [`AlertSchema`] — the Avro nodes plus
//! a plan saying what each top-level and candidate field becomes — and shared by every file that
//! embeds the same schema text.
//!
//! Every record a file declares comes back as an alert or inside a reject: a damaged block costs
//! only its own records (reading resumes at the next sync marker), a file whose schema is not a
//! ZTF alert is rejected once as a whole, and every size an input declares is checked against a
//! named limit before it is used (see `docs/limits.md`).

pub mod cutout;
pub mod history;
pub mod tables;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use crate::formats::avro::{self, AvroError, Cursor, Damaged, Frame, Header, Node, Schema};
use crate::survey::decode::{bounded, count_records, pack_noting, scalar, tail_chars, whole_file};
use crate::survey::{Alert, Decode, GivenSchema, Reject, RejectKind, Survey, WriterSchema};
use crate::table::Tables;
use crate::table::{Layout, Scalar};
pub use cutout::{Position, StampSpec};
use history::{CandidateCopy, History, Noticed, RecordBound, RecordPlan};

/// The three cutouts, in stamp channel order.
pub const CUTOUTS: [&str; 3] = ["cutoutScience", "cutoutTemplate", "cutoutDifference"];

/// The Zwicky Transient Facility's public alerts: Avro object containers, each decoded with its
/// own writer schema, with three gzip'd FITS cutouts and the candidate's history.
#[derive(Debug, Clone, Copy)]
pub struct Ztf;

impl Survey for Ztf {
    fn tables(&self) -> &'static Tables {
        &tables::TABLES
    }

    /// ZTF cutouts carry no PSF image: `psf` is refused before a build starts.
    fn decoder(&self, spec: StampSpec, lightcurves: bool, _psf: bool, _given: &[GivenSchema]) -> Box<dyn Decode> {
        Box::new(Decoder::new(spec).with_lightcurves(lightcurves))
    }

    /// An Avro container whose header names ZTF's schema namespace (`ztf.alert`).
    fn recognizes(&self, head: &[u8]) -> bool {
        head.starts_with(avro::MAGIC) && contains(head, b"\"ztf")
    }

    fn title(&self) -> &'static str {
        "ZTF"
    }
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

impl Decode for Decoder {
    fn decode_file(&self, name: &str, bytes: &[u8]) -> Vec<Result<Alert, Reject>> {
        Decoder::decode_file(self, name, bytes)
    }
}

impl WriterSchema for AlertSchema {
    fn docs(&self) -> &[(usize, String)] {
        &self.docs
    }

    fn unmapped(&self) -> &[String] {
        &self.unmapped
    }

    fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }
}

/// The reject of a file or block whose Avro does not decode.
fn avro_reject(error: &AvroError) -> Reject {
    Reject::new(RejectKind::CorruptAvro, format!("corrupt Avro: {error}"))
}

/// What a ZTF alert schema must have for its records to become rows: else the file is foreign.
fn check_alert_schema(schema: &Schema) -> Result<(), String> {
    let top = schema.record_fields(schema.root).ok_or("its top level is not a record")?;
    let field = |name: &str| top.iter().find(|f| f.name == name);
    let candidate = field("candidate").and_then(|f| schema.record_fields(f.node)).ok_or("no `candidate` record")?;
    if field("candid").is_none() && !candidate.iter().any(|f| f.name == "candid") {
        return Err("no `candid` field".into());
    }
    match CUTOUTS.iter().find(|c| field(c).is_none()) {
        Some(missing) => Err(format!("no `{missing}` field")),
        None => Ok(()),
    }
}

/// The decoding of one file's blocks: the results so far and the limits still left.
struct FileDecoder<'d, 'a> {
    decoder: &'d Decoder,
    header: &'d Header<'a>,
    schema: &'d Arc<AlertSchema>,
    name: &'d str,
    min_record: usize,
    /// Values the rest of the file may step over (see [`avro::MAX_VALUES_PER_BYTE`]).
    values_left: usize,
    /// Bytes the rest of the file's deflate blocks may inflate to.
    inflate_left: usize,
    damaged: usize,
    results: Vec<Result<Alert, Reject>>,
}

impl<'d, 'a> FileDecoder<'d, 'a> {
    fn new(decoder: &'d Decoder, header: &'d Header<'a>, schema: &'d Arc<AlertSchema>, name: &'d str) -> Self {
        FileDecoder {
            decoder,
            header,
            schema,
            name,
            min_record: schema.min_record,
            values_left: avro::value_budget(header.file_len()),
            inflate_left: header.inflate_allowance(),
            damaged: 0,
            results: Vec::new(),
        }
    }

    /// Take one block: its alerts, or one reject for all its records.
    fn block(&mut self, block: Result<Frame<'a>, Damaged>) {
        match block {
            Ok(frame) => {
                if let Err((error, capacity)) = self.intact_block(&frame) {
                    let records = bounded(frame.count, capacity, self.min_record);
                    let error = if error.names_block() { error.to_string() } else { format!("block {}: {error}", frame.index) };
                    self.reject_block(&error, records, "reading on with the next block");
                }
            }
            Err(damaged) => {
                let resume = if damaged.resumed { "reading resumed at the next sync marker" } else { "no sync marker follows it" };
                match damaged.count {
                    Some(count) => {
                        let records = bounded(count, self.header.capacity(damaged.bytes), self.min_record);
                        self.reject_block(&damaged.error.to_string(), records, resume);
                    }
                    None => {
                        let then = format!("its record count is unreadable, counted as 1; {resume}");
                        self.reject_block(&damaged.error.to_string(), 1, &then);
                    }
                }
            }
        }
    }

    fn reject_block(&mut self, error: &str, records: usize, then: &str) {
        self.damaged += 1;
        let noun = if records == 1 { "record" } else { "records" };
        let reason = format!("corrupt Avro: {error}; the block's {records} {noun} rejected, {then}");
        self.results.push(Err(Reject::new(RejectKind::CorruptAvro, reason).for_records(records)));
    }

    /// Decode the records of a block whose frame is intact; on failure, the error and the bytes
    /// of record data the block could hold (to bound its count).
    fn intact_block(&mut self, frame: &Frame<'a>) -> Result<(), (AvroError, usize)> {
        let data = self.header.block_data(frame, self.inflate_left).map_err(|error| (error, self.header.capacity(frame.data.len())))?;
        if self.header.deflate {
            self.inflate_left -= data.len();
            self.values_left = self.values_left.saturating_add(data.len().saturating_mul(avro::MAX_VALUES_PER_BYTE));
        }
        let bytes = data.len();
        let most = bytes / self.min_record.max(1);
        if frame.count > most {
            let error = AvroError::TooManyRecords { block: frame.index, count: frame.count, bytes, most, min: self.min_record };
            return Err((error, bytes));
        }
        let mut cursor = Cursor::with_budget(&data, self.values_left);
        let decoded = self.records(&mut cursor, frame.count);
        self.values_left = cursor.values_left();
        let mut alerts = decoded.map_err(|error| (error, bytes))?;
        if cursor.position() != bytes {
            return Err((AvroError::BlockSizeMismatch { block: frame.index, declared: bytes, used: cursor.position() }, bytes));
        }
        self.results.append(&mut alerts);
        Ok(())
    }

    fn records(&self, cursor: &mut Cursor<'_>, count: usize) -> Result<Vec<Result<Alert, Reject>>, AvroError> {
        (0..count).map(|_| self.decoder.decode_record(self.schema, cursor, self.name)).collect()
    }
}

/// What one top-level alert field becomes.
#[derive(Debug, Clone)]
enum Action {
    Skip,
    Candid,
    /// A string or number stored in the column of this index.
    Column(usize),
    /// The candidate record: column index per field (None: not stored).
    Candidate(Vec<Option<usize>>),
    /// An array whose length goes into the column of this index.
    Count(usize),
    /// A history array (prv_candidates or fp_hists): its length goes into the column `count`,
    /// its records into rows of a light-curve table.
    History {
        count: Option<usize>,
        plan: RecordPlan,
        table: Table,
    },
    /// A cutout for this stamp channel.
    Cutout(usize),
}

/// Which light-curve table a history array feeds.
#[derive(Debug, Clone, Copy)]
enum Table {
    Epochs,
    Forced,
}

/// A compiled writer schema and the plan for decoding alerts written with it.
#[derive(Debug)]
pub struct AlertSchema {
    schema: Schema,
    plan: Vec<Action>,
    /// `doc` strings of the fields that map to catalog columns, by column index.
    pub docs: Vec<(usize, String)>,
    /// Candidate fields this schema has that the catalog has no column for.
    pub unmapped: Vec<String>,
    /// `version` of the writer schema (the alert record's own version, e.g. "3.3"), if given.
    pub version: Option<String>,
    /// Fewest bytes one alert record of this schema takes.
    min_record: usize,
}

/// Why a file's writer schema cannot be used to read alerts.
enum Unusable {
    /// Not a valid Avro schema.
    Invalid(AvroError),
    /// Valid, but not a ZTF alert: the file is rejected as a whole.
    Foreign { reason: String, min_record: usize },
}

/// Damaged blocks read past in one file; after that, the rest of the file is rejected unread
/// as one reject (a few damaged blocks are an accident, dozens a file not worth reading on).
pub const MAX_DAMAGED_BLOCKS: usize = 16;

/// A thread's most recent schema: (decoder id, schema text, compiled schema).
type LastSchema = (usize, Vec<u8>, Arc<AlertSchema>);

/// Decodes alerts; shares compiled schemas between threads.
pub struct Decoder {
    layout: &'static Layout,
    spec: StampSpec,
    schemas: RwLock<HashMap<Vec<u8>, Arc<AlertSchema>>>,
    columns: Columns,
    /// Whether alerts' histories become light-curve rows.
    lightcurves: bool,
    candidate_copy: CandidateCopy,
    /// Tells decoders apart in the per-thread schema cache.
    id: usize,
}

/// Indices of the columns the decoder fills itself.
struct Columns {
    candid: usize,
    stamp_flags: usize,
    source: usize,
    xpos: usize,
    ypos: usize,
    source_chars: usize,
    object_id: usize,
    jd: usize,
}

impl Decoder {
    /// A decoder for the built-in catalog layout.
    ///
    /// # Panics
    /// If the built-in catalog lacks the columns the decoder fills (checked by tests).
    #[must_use]
    pub fn new(spec: StampSpec) -> Self {
        let layout = tables::catalog();
        let index = |name: &str| layout.index_of(name).unwrap_or_else(|| panic!("catalog.tsv has no `{name}` column"));
        let source = index("source");
        let source_chars = match layout.columns()[source].dtype {
            crate::table::Dtype::Unicode(n) => n,
            _ => panic!("catalog.tsv: `source` must be a <U column"),
        };
        let columns = Columns {
            candid: index("candid"),
            stamp_flags: index("stamp_flags"),
            source,
            xpos: index("xpos"),
            ypos: index("ypos"),
            source_chars,
            object_id: index("objectId"),
            jd: index("jd"),
        };
        static NEXT_ID: AtomicUsize = AtomicUsize::new(0);
        Decoder {
            layout,
            spec,
            schemas: RwLock::new(HashMap::new()),
            columns,
            lightcurves: true,
            candidate_copy: CandidateCopy::new(layout, tables::epochs()),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The same decoder, reading histories into light-curve rows or not (`--no-lightcurves`).
    #[must_use]
    pub fn with_lightcurves(mut self, on: bool) -> Self {
        self.lightcurves = on;
        self
    }

    /// The stamp specification in use.
    #[must_use]
    pub fn spec(&self) -> StampSpec {
        self.spec
    }

    /// Decode every record of one container file named `name`. Every record the file declares
    /// comes back as an alert or inside a reject: a damaged block is rejected with its record
    /// count and reading resumes at the next sync marker.
    #[must_use]
    pub fn decode_file(&self, name: &str, bytes: &[u8]) -> Vec<Result<Alert, Reject>> {
        let header = match Header::parse(bytes) {
            Ok(header) => header,
            Err(error) => return vec![Err(crate::survey::foreign(&Ztf, bytes).unwrap_or_else(|| avro_reject(&error)))],
        };
        let schema = match self.schema(header.schema_json) {
            Ok(schema) => schema,
            Err(Unusable::Invalid(error)) => {
                return vec![Err(whole_file(&header, 1, RejectKind::CorruptAvro, &format!("corrupt Avro: {error}")))]
            }
            Err(Unusable::Foreign { reason, min_record }) => {
                let reason = crate::survey::foreign(&Ztf, bytes).map_or(reason, |reject| reject.reason);
                return vec![Err(whole_file(&header, min_record, RejectKind::NotAnAlert, &reason))];
            }
        };
        let mut file = FileDecoder::new(self, &header, &schema, name);
        let mut blocks = header.blocks().peekable();
        while let Some(block) = blocks.next() {
            file.block(block);
            if file.damaged == MAX_DAMAGED_BLOCKS && blocks.peek().is_some() {
                let rest = count_records(blocks, &header, file.min_record);
                file.results.push(Err(Reject::new(
                    RejectKind::CorruptAvro,
                    format!("corrupt Avro: {MAX_DAMAGED_BLOCKS} damaged blocks; the rest of the file ({rest} records) is rejected unread"),
                )
                .for_records(rest.max(1))));
                break;
            }
        }
        if file.results.is_empty() {
            file.results.push(Err(Reject::new(RejectKind::CorruptAvro, "container holds no records")));
        }
        file.results
    }

    fn schema(&self, json: &[u8]) -> Result<Arc<AlertSchema>, Unusable> {
        thread_local! {
            /// The schema this thread saw last, by decoder: nights are written with one schema, so
            /// one comparison of the text usually replaces hashing ~20 KB of JSON per file.
            static LAST: RefCell<Option<LastSchema>> = const { RefCell::new(None) };
        }
        let hit = LAST.with_borrow(|last| match last {
            Some((id, text, schema)) if *id == self.id && text.as_slice() == json => Some(Arc::clone(schema)),
            _ => None,
        });
        if let Some(schema) = hit {
            return Ok(schema);
        }
        let schema = self.shared_schema(json)?;
        LAST.with_borrow_mut(|last| *last = Some((self.id, json.to_vec(), Arc::clone(&schema))));
        Ok(schema)
    }

    fn shared_schema(&self, json: &[u8]) -> Result<Arc<AlertSchema>, Unusable> {
        if let Some(found) = self.schemas.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(json) {
            return Ok(Arc::clone(found));
        }
        let compiled = Arc::new(self.compile(json)?);
        let mut schemas = self.schemas.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(Arc::clone(schemas.entry(json.to_vec()).or_insert(compiled)))
    }

    fn compile(&self, json: &[u8]) -> Result<AlertSchema, Unusable> {
        let schema = Schema::parse(json).map_err(Unusable::Invalid)?;
        let min_record = schema.min_size(schema.root);
        if let Err(missing) = check_alert_schema(&schema) {
            let reason = format!("the writer schema is not a ZTF alert ({missing})");
            return Err(Unusable::Foreign { reason, min_record });
        }
        let top = schema.record_fields(schema.root).unwrap_or_default();
        let mut docs = Vec::new();
        let mut unmapped = Vec::new();
        let mut plan = Vec::with_capacity(top.len());
        for field in top {
            let column = self.layout.index_of(&field.name);
            let action = match field.name.as_str() {
                "candid" => Action::Candid,
                "candidate" => {
                    let fields = schema.record_fields(field.node).unwrap_or_default();
                    let mut map = Vec::with_capacity(fields.len());
                    for f in fields {
                        let col = self.layout.index_of(&f.name).filter(|c| *c != self.columns.candid && self.is_candidate_column(*c));
                        match (col, &f.doc) {
                            (Some(c), Some(doc)) => docs.push((c, doc.clone())),
                            (None, _) if f.name != "candid" => unmapped.push(f.name.clone()),
                            _ => {}
                        }
                        map.push(col);
                    }
                    Action::Candidate(map)
                }
                "prv_candidates" => self.history_action(&schema, field.node, "n_prv_candidates", Table::Epochs),
                "fp_hists" => self.history_action(&schema, field.node, "n_fp_hists", Table::Forced),
                name => match CUTOUTS.iter().position(|c| *c == name) {
                    Some(channel) => Action::Cutout(channel),
                    None => column.map_or(Action::Skip, Action::Column),
                },
            };
            if let (Action::Column(c), Some(doc)) = (&action, &field.doc) {
                docs.push((*c, doc.clone()));
            }
            plan.push(action);
        }
        let version = serde_json::from_slice::<serde_json::Value>(json)
            .ok()
            .and_then(|v| v.get("version").and_then(|v| v.as_str().map(String::from)));
        Ok(AlertSchema { schema, plan, docs, unmapped, version, min_record })
    }

    /// A history array's action: read into light-curve rows, else only counted.
    fn history_action(&self, schema: &Schema, node: usize, count_column: &str, table: Table) -> Action {
        let count = self.layout.index_of(count_column);
        let fields = self.lightcurves.then(|| history_record_fields(schema, node)).flatten();
        match (fields, count) {
            (Some(fields), _) => {
                let (array, layout) = match table {
                    Table::Epochs => ("prv_candidates", tables::epochs()),
                    Table::Forced => ("fp_hists", tables::forced()),
                };
                Action::History { count, plan: RecordPlan::new(array, schema, fields, layout), table }
            }
            (None, Some(column)) => Action::Count(column),
            (None, None) => Action::Skip,
        }
    }

    fn is_candidate_column(&self, column: usize) -> bool {
        self.layout.columns()[column].source.starts_with("candidate.")
    }

    /// Decode one record. The outer error means the Avro data itself is broken (the rest of the
    /// block cannot be read); the inner one that this alert is rejected for its content.
    fn decode_record(&self, compiled: &Arc<AlertSchema>, cursor: &mut Cursor<'_>, name: &str) -> Result<Result<Alert, Reject>, AvroError> {
        let start = cursor.position();
        let mut bound = RecordBound::new(cursor.rest().len());
        let schema = &compiled.schema;
        let fields = schema.record_fields(schema.root).unwrap_or_default();
        let mut row = self.layout.new_row();
        let mut candid = None;
        let mut cutouts: [Option<&[u8]>; 3] = [None; 3];
        let mut problem = None;
        let mut truncated = Vec::new();
        let mut history = self.lightcurves.then(History::default);
        let mut noticed = Noticed::default();
        for (field, action) in fields.iter().zip(&compiled.plan) {
            match action {
                Action::Skip => cursor.skip(schema, field.node)?,
                Action::Candid => candid = Some(scalar(cursor, schema, field.node)?),
                Action::Column(col) => {
                    let value = scalar(cursor, schema, field.node)?;
                    if *col == self.columns.object_id {
                        if let Some(reject) = non_ascii_object_id(&value) {
                            problem.get_or_insert(reject);
                        }
                    }
                    pack_noting(self.layout, &mut row, *col, value, &mut truncated, &mut problem);
                }
                Action::Candidate(map) => {
                    let candidate = schema.record_fields(field.node).unwrap_or_default();
                    if let Node::Union(branches) = schema.node(field.node) {
                        let branch = cursor.branch(branches.len())?;
                        if schema.node(branches[branch]) == &Node::Null {
                            problem.get_or_insert(Reject::new(RejectKind::BadValue, "candidate is null"));
                            continue;
                        }
                    }
                    for (f, col) in candidate.iter().zip(map) {
                        match col {
                            Some(col) => {
                                let value = scalar(cursor, schema, f.node)?;
                                pack_noting(self.layout, &mut row, *col, value, &mut truncated, &mut problem);
                            }
                            None if f.name == "candid" => {
                                let value = scalar(cursor, schema, f.node)?;
                                candid.get_or_insert(value);
                            }
                            None => cursor.skip(schema, f.node)?,
                        }
                    }
                }
                Action::Count(col) => {
                    if let Some(count) = array_length(cursor, schema, field.node)? {
                        let count = i64::try_from(count).unwrap_or(i64::MAX);
                        pack_noting(self.layout, &mut row, *col, Scalar::Int(count), &mut truncated, &mut problem);
                    }
                }
                Action::History { count, plan, table } => {
                    let Some(history) = history.as_mut() else {
                        cursor.skip(schema, field.node)?;
                        continue;
                    };
                    let out = match table {
                        Table::Epochs => &mut history.epochs,
                        Table::Forced => &mut history.forced,
                    };
                    let rows = history::read_records(cursor, schema, field.node, plan, out, &mut noticed, &mut bound)?;
                    if let Some(column) = count {
                        let rows = i64::try_from(rows).unwrap_or(i64::MAX);
                        pack_noting(self.layout, &mut row, *column, Scalar::Int(rows), &mut truncated, &mut problem);
                    }
                }
                Action::Cutout(channel) => cutouts[*channel] = cutout_bytes(cursor, schema, field.node)?,
            }
        }
        // Before any other reason: past the bound, the history's rows were not all read.
        if let Some(reason) = bound.exceeded(cursor.position() - start) {
            return Ok(Err(Reject::new(RejectKind::BadValue, reason)));
        }
        if history.is_some() {
            if let Some(reject) = self.bad_candidate_jd(&row) {
                problem.get_or_insert(reject);
            }
        }
        if let Some(reason) = noticed.problem {
            problem.get_or_insert(Reject::new(RejectKind::BadValue, reason));
        }
        truncated.extend(noticed.truncated.into_iter().map(|column| format!("history.{column}")));
        if let Some(reject) = problem {
            return Ok(Err(reject));
        }
        let candid = match candid {
            Some(Scalar::Int(candid)) => candid,
            _ => return Ok(Err(Reject::new(RejectKind::BadValue, "alert has no integer candid"))),
        };
        let mut alert = self.finish(compiled, row, candid, cutouts, name, truncated);
        if let (Ok(alert), Some(history)) = (&mut alert, history) {
            alert.history = Some(self.complete_history(&alert.row, candid, history));
        }
        Ok(alert)
    }

    /// Why the alert's own detection cannot be an epoch of its light curve, if it cannot: its
    /// jd keys that epoch (and orders the alert's forced photometry), as a history record's does.
    fn bad_candidate_jd(&self, row: &[u8]) -> Option<Reject> {
        let jd = self.layout.read_f64(row, self.columns.jd)?;
        (!jd.is_finite()).then(|| Reject::new(RejectKind::BadValue, format!("candidate.jd is {jd}: an epoch needs a finite jd")))
    }

    /// Add the candidate's own detection row, and put into every row what the alert knows:
    /// its objectId, and which alert carried the values.
    fn complete_history(&self, row: &[u8], candid: i64, mut history: History) -> History {
        let (epochs, forced) = (tables::epochs(), tables::forced());
        self.candidate_copy.append(row, epochs, &mut history.epochs);
        let object = &self.layout.columns()[self.columns.object_id];
        let object_id = &row[object.offset..object.offset + object.dtype.size()];
        let copy_object = |rows: &mut [u8], layout: &Layout| {
            let target = layout.column("objectId");
            for each in rows.chunks_exact_mut(layout.itemsize()) {
                each[target.offset..target.offset + object_id.len()].copy_from_slice(object_id);
            }
        };
        copy_object(&mut history.epochs, epochs);
        copy_object(&mut history.forced, forced);
        let alert_jd = self.layout.read_f64(row, self.columns.jd).unwrap_or(f64::NAN);
        history.jd = alert_jd;
        let carried_by = |rows: &mut [u8], layout: &Layout| {
            let (Some(c), Some(j)) = (layout.index_of("alert_candid"), layout.index_of("alert_jd")) else { return };
            for each in rows.chunks_exact_mut(layout.itemsize()) {
                let _ = layout.pack(each, c, Scalar::Int(candid));
                let _ = layout.pack(each, j, Scalar::F64(alert_jd));
            }
        };
        carried_by(&mut history.epochs, epochs);
        carried_by(&mut history.forced, forced);
        history
    }

    fn finish(
        &self,
        compiled: &Arc<AlertSchema>,
        mut row: Vec<u8>,
        candid: i64,
        cutouts: [Option<&[u8]>; 3],
        name: &str,
        truncated: Vec<String>,
    ) -> Result<Alert, Reject> {
        let columns = &self.columns;
        // candid may have come only from candidate.candid (never in ZTF, but cheap to allow).
        self.layout.pack(&mut row, columns.candid, Scalar::Int(candid)).map_err(|e| Reject::new(RejectKind::BadValue, e.to_string()))?;
        let position = Position { x: self.read_f32(&row, columns.xpos), y: self.read_f32(&row, columns.ypos) };
        let pixels = self.spec.pixels();
        let mut stamps = vec![0.0; 3 * pixels];
        let mut flags = 0;
        for (channel, bytes) in cutouts.iter().enumerate() {
            let Some(bytes) = bytes else {
                return Err(Reject::new(RejectKind::NullCutout, format!("{} is null", CUTOUTS[channel])));
            };
            let out = &mut stamps[channel * pixels..(channel + 1) * pixels];
            flags |= cutout::decode_into(bytes, position, self.spec, out)
                .map_err(|e| Reject::new(RejectKind::BadCutout, format!("{} {e}", CUTOUTS[channel])))?;
        }
        let _ = self.layout.pack(&mut row, columns.stamp_flags, Scalar::Int(i64::from(flags)));
        let source = tail_chars(name, columns.source_chars);
        let _ = self.layout.pack(&mut row, columns.source, Scalar::Str(source.as_bytes()));
        Ok(Alert {
            id: candid,
            row,
            stamps,
            variance: Vec::new(),
            psf: crate::survey::Psfs::default(),
            writer: Arc::clone(compiled) as Arc<dyn WriterSchema>,
            truncated,
            history: None,
        })
    }

    fn read_f32(&self, row: &[u8], col: usize) -> Option<f32> {
        let offset = self.layout.columns()[col].offset;
        let value = f32::from_le_bytes(row.get(offset..offset + 4)?.try_into().ok()?);
        value.is_finite().then_some(value)
    }
}

/// Characters of a rejected objectId shown in the reason: enough for any real one.
const OBJECT_ID_SHOWN: usize = 32;

/// Why `value`, an alert's objectId, is refused, if it is not ASCII. ZTF objectIds are ASCII
/// (ZTFyyaaaaaaa), and the light-curve keys hold one byte per character: two ids differing in
/// one non-ASCII character would share their epochs.
fn non_ascii_object_id(value: &Scalar<'_>) -> Option<Reject> {
    let Scalar::Str(bytes) = value else { return None };
    if bytes.is_ascii() {
        return None;
    }
    let text = String::from_utf8_lossy(bytes);
    let mut shown: String = text.chars().take(OBJECT_ID_SHOWN).flat_map(char::escape_default).collect();
    if text.chars().nth(OBJECT_ID_SHOWN).is_some() {
        shown.push('…');
    }
    Some(Reject::new(RejectKind::BadValue, format!("objectId \"{shown}\" is not ASCII: a ZTF objectId must be ASCII (ZTFyyaaaaaaa)")))
}

/// The fields of a history array's records (through unions), if it is an array of records.
fn history_record_fields(schema: &Schema, node: usize) -> Option<&[avro::Field]> {
    match schema.node(node) {
        Node::Union(branches) => branches.iter().find_map(|b| history_record_fields(schema, *b)),
        Node::Array(items) => match schema.node(*items) {
            Node::Union(branches) => branches.iter().find_map(|b| schema.record_fields(*b)),
            _ => schema.record_fields(*items),
        },
        _ => None,
    }
}

/// The length of an array (through a union); None for null.
fn array_length(cursor: &mut Cursor<'_>, schema: &Schema, node: usize) -> Result<Option<usize>, AvroError> {
    match schema.node(node) {
        Node::Array(items) => Ok(Some(cursor.count_items(schema, *items)?)),
        Node::Union(branches) => {
            let branch = cursor.branch(branches.len())?;
            array_length(cursor, schema, branches[branch])
        }
        _ => {
            cursor.skip(schema, node)?;
            Ok(None)
        }
    }
}

/// The `stampData` bytes of a cutout record (through a union); None for a null cutout.
fn cutout_bytes<'a>(cursor: &mut Cursor<'a>, schema: &Schema, node: usize) -> Result<Option<&'a [u8]>, AvroError> {
    match schema.node(node) {
        Node::Union(branches) => {
            let branch = cursor.branch(branches.len())?;
            cutout_bytes(cursor, schema, branches[branch])
        }
        Node::Bytes => Ok(Some(cursor.bytes()?)),
        Node::Record { fields, .. } => {
            let mut found = None;
            for field in fields {
                if field.name == "stampData" {
                    found = cutout_bytes(cursor, schema, field.node)?;
                } else {
                    cursor.skip(schema, field.node)?;
                }
            }
            Ok(found)
        }
        _ => {
            cursor.skip(schema, node)?;
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_end() {
        assert_eq!(tail_chars("abcdef", 3), "def");
        assert_eq!(tail_chars("ab", 3), "ab");
        assert_eq!(tail_chars("ééé", 2), "éé");
    }

    #[test]
    fn a_non_ascii_object_id_is_shown_escaped_and_cut() {
        assert_eq!(non_ascii_object_id(&Scalar::Str(b"ZTF18abcdefg")), None);
        let long = "\u{e9}".repeat(100);
        let reason = non_ascii_object_id(&Scalar::Str(long.as_bytes())).unwrap().reason;
        assert!(reason.starts_with(&format!("objectId \"{}…\" is not ASCII", r"\u{e9}".repeat(OBJECT_ID_SHOWN))), "{reason}");
    }

    #[test]
    fn garbage_is_a_corrupt_avro_reject() {
        let decoder = Decoder::new(StampSpec { size: 21, keep_nan: false, keep_masked: false });
        let results = decoder.decode_file("x.avro", b"not avro at all");
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].as_ref().unwrap_err().kind, RejectKind::CorruptAvro);
    }
}
