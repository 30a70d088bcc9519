//! Everything about one Rubin (LSST) alert: from an input's bytes to catalog rows, stamps and
//! history rows, or a reason why not. Pure functions of bytes (no file or store access).
//!
//! The framing is told from the bytes, never from the name: a Confluent-framed Kafka message
//! (`0x00`, a big-endian schema id, one schemaless datum that must end where the input ends),
//! an Avro object container (`Obj\x01`, every record of every block, its writer schema
//! embedded), or either of these gzip'd. A message's writer schema is the bundled schema of its
//! id (`schemas/lsst/<M>.<m>.avsc`, compiled in); a container's is its own. A schema is compiled
//! once into an [`AlertSchema`]: the Avro nodes and a plan saying what each top-level field
//! becomes (diaSource fields → catalog columns of the same name, diaObject → `diaObject_*`,
//! ssSource → `ssSource_*`, the histories → light-curve rows, the cutouts → stamps).
//!
//! Every size an input declares is checked before use: a datum cut short, bytes after it, a
//! damaged block cost a `corrupt-avro` reject, never a panic.

pub mod cutout;
pub mod history;
pub mod tables;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use crate::formats::avro::{self, AvroError, Cursor, Damaged, Frame, Header, Node, Schema};
use crate::survey::decode::{bounded, pack_noting, scalar, tail_chars, whole_file};
use crate::survey::{Alert, Decode, GivenSchema, Psfs, Reject, RejectKind, StampSpec, Survey, WriterSchema};
use crate::table::{Dtype, Layout, Scalar, Tables};
use history::{History, Noticed, RecordBound, RecordPlan, SourceCopy};

/// The three cutouts, in stamp channel order.
pub const CUTOUTS: [&str; 3] = ["cutoutScience", "cutoutTemplate", "cutoutDifference"];

/// The bundled writer schemas, by version (`schemas/lsst/`): a Confluent message's schema id
/// `major*100 + minor` picks one.
pub const BUNDLED: [(&str, &str); 10] = [
    ("7.0", include_str!("../../../schemas/lsst/7.0.avsc")),
    ("7.1", include_str!("../../../schemas/lsst/7.1.avsc")),
    ("7.2", include_str!("../../../schemas/lsst/7.2.avsc")),
    ("7.3", include_str!("../../../schemas/lsst/7.3.avsc")),
    ("7.4", include_str!("../../../schemas/lsst/7.4.avsc")),
    ("8.0", include_str!("../../../schemas/lsst/8.0.avsc")),
    ("9.0", include_str!("../../../schemas/lsst/9.0.avsc")),
    ("10.0", include_str!("../../../schemas/lsst/10.0.avsc")),
    ("11.0", include_str!("../../../schemas/lsst/11.0.avsc")),
    ("11.1", include_str!("../../../schemas/lsst/11.1.avsc")),
];

/// Largest input a gzip'd message or container may inflate to (as an archive member may be).
pub const MAX_INFLATED: usize = 64 << 20;

/// Bytes of the Confluent wire format's header: `0x00` and the schema id (big-endian i32).
const CONFLUENT_HEADER: usize = 5;

/// The Vera C. Rubin Observatory's alerts (LSST): Confluent-framed Kafka messages or Avro
/// containers, with three FITS cutouts and the diaSource's history.
#[derive(Debug, Clone, Copy)]
pub struct Lsst;

impl Survey for Lsst {
    fn tables(&self) -> &'static Tables {
        &tables::TABLES
    }

    fn decoder(&self, spec: StampSpec, lightcurves: bool, psf: bool, given: &[GivenSchema]) -> Box<dyn Decode> {
        Box::new(Decoder::new(spec).with_lightcurves(lightcurves).with_psf(psf).with_given(given))
    }

    /// Each given schema must be named `<major>.<minor>.avsc` (major 7–99, minor 0–99), compile
    /// as a Rubin alert schema, and name that version in its alert record (`lsst.v12_0.alert`).
    /// One of a bundled version replaces the bundled one.
    fn check_schemas(&self, given: &[GivenSchema]) -> Result<(), String> {
        let spec = StampSpec { size: 1, keep_nan: false, keep_masked: false };
        let decoder = Decoder::new(spec).with_given(given);
        match decoder.given.iter().find_map(|g| g.compiled.as_ref().err().map(|e| (g, e))) {
            Some((g, error)) => Err(format!("`{}`: {error}", g.path)),
            None => Ok(()),
        }
    }

    /// A Confluent message with a plausible Rubin schema id (major 7 to 99), or an Avro
    /// container whose header names Rubin's schema namespace (`lsst.v…`).
    fn recognizes(&self, head: &[u8]) -> bool {
        match head {
            [0, a, b, c, d, _, ..] => (700..10_000).contains(&i32::from_be_bytes([*a, *b, *c, *d])),
            _ => head.starts_with(avro::MAGIC) && head.windows(6).any(|w| w == b"lsst.v"),
        }
    }

    fn title(&self) -> &'static str {
        "Rubin (LSST)"
    }
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
        (!self.version.is_empty()).then_some(self.version.as_str())
    }
}

/// What one top-level alert field becomes.
#[derive(Debug, Clone)]
enum Action {
    Skip,
    /// A string or number stored in the column of this index.
    Column(usize),
    /// A record (diaSource, diaObject, ssSource): the column of each field (None: not stored);
    /// `required`: a null is a reject, else it leaves the columns missing.
    Record {
        columns: Vec<Option<usize>>,
        required: bool,
    },
    /// A history array, read into rows of a light-curve table.
    History {
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
    docs: Vec<(usize, String)>,
    /// Fields this schema has that the catalog has no column for.
    unmapped: Vec<String>,
    /// The schema version (`10.0`) from the alert record's namespace (`lsst.v10_0`); empty if it
    /// has none.
    version: String,
    /// Fewest bytes one alert record of this schema takes.
    min_record: usize,
}

/// Why a writer schema cannot be used to read alerts.
enum Unusable {
    /// Not a valid Avro schema.
    Invalid(AvroError),
    /// Valid, but not a Rubin alert.
    Foreign { reason: String, min_record: usize },
}

/// Decodes Rubin alerts; shares compiled schemas between threads.
pub struct Decoder {
    layout: &'static Layout,
    spec: StampSpec,
    lightcurves: bool,
    /// Read each cutout's PSF image (`build --psf`).
    psf: bool,
    /// The bundled schemas, compiled on first use (index as in [`BUNDLED`]).
    bundled: [OnceLock<Result<Arc<AlertSchema>, String>>; BUNDLED.len()],
    /// Schemas given at run time (`--schema-dir`), compiled when given; one of a bundled
    /// version is used instead of the bundled one.
    given: Vec<Given>,
    /// Containers' own writer schemas, by their JSON text.
    embedded: RwLock<HashMap<Vec<u8>, Arc<AlertSchema>>>,
    columns: Columns,
    source_copy: SourceCopy,
}

/// A schema given at run time: its version (from its file name), and the schema compiled or why
/// it cannot be used.
struct Given {
    version: String,
    path: String,
    compiled: Result<Arc<AlertSchema>, String>,
}

/// Indices of the catalog columns the decoder reads or fills itself.
struct Columns {
    id: usize,
    time: usize,
    x: usize,
    y: usize,
    schema_version: usize,
    stamp_flags: usize,
    source: usize,
    source_chars: usize,
}

impl Decoder {
    /// A decoder for the built-in catalog layout.
    ///
    /// # Panics
    /// If the built-in catalog lacks the columns the decoder fills (checked by tests).
    #[must_use]
    pub fn new(spec: StampSpec) -> Self {
        let layout = tables::catalog();
        let index = |name: &str| layout.index_of(name).unwrap_or_else(|| panic!("schemas/lsst/catalog.tsv has no `{name}` column"));
        let source = index("source");
        let Dtype::Unicode(source_chars) = layout.columns()[source].dtype else {
            panic!("schemas/lsst/catalog.tsv: `source` must be a <U column")
        };
        let columns = Columns {
            id: index("diaSourceId"),
            time: index(history::TIME),
            x: index("x"),
            y: index("y"),
            schema_version: index("schema_version"),
            stamp_flags: index("stamp_flags"),
            source,
            source_chars,
        };
        Decoder {
            layout,
            spec,
            lightcurves: true,
            psf: false,
            bundled: std::array::from_fn(|_| OnceLock::new()),
            given: Vec::new(),
            embedded: RwLock::new(HashMap::new()),
            columns,
            source_copy: SourceCopy::new(layout, tables::epochs()),
        }
    }

    /// The same decoder, reading each cutout's PSF image or not (`build --psf`).
    #[must_use]
    pub fn with_psf(mut self, on: bool) -> Self {
        self.psf = on;
        self
    }

    /// The same decoder, reading histories into light-curve rows or not (`--no-lightcurves`).
    #[must_use]
    pub fn with_lightcurves(mut self, on: bool) -> Self {
        self.lightcurves = on;
        self
    }

    /// The same decoder, also reading messages written with the schemas `given` (see
    /// [`Survey::check_schemas`]); each is compiled here, once.
    #[must_use]
    pub fn with_given(mut self, given: &[GivenSchema]) -> Self {
        self.given = given
            .iter()
            .map(|g| {
                let version = version_of_file(&g.name);
                let compiled = match &version {
                    Some(version) => self.compile_given(&g.json, version).map(Arc::new),
                    None => Err("is not named `<major>.<minor>.avsc` (major 7 to 99, minor 0 to 99, no leading zeros): \
                                 the name gives the version its Confluent schema id is made of (12.0 → 1200)"
                        .to_string()),
                };
                Given { version: version.unwrap_or_default(), path: g.path.clone(), compiled }
            })
            .collect();
        self
    }

    /// A given schema of version `version`, compiled, or why it cannot be used.
    fn compile_given(&self, json: &[u8], version: &str) -> Result<AlertSchema, String> {
        let schema = match self.compile(json) {
            Ok(schema) => schema,
            Err(Unusable::Invalid(error)) => return Err(format!("not a valid Avro schema: {error}")),
            Err(Unusable::Foreign { reason, .. }) => return Err(reason),
        };
        if schema.version != version {
            let says = if schema.version.is_empty() { "no version".to_string() } else { format!("version {}", schema.version) };
            return Err(format!(
                "its file name says version {version}, but its alert record names {says} (it must be named `lsst.v{}.alert`)",
                version.replace('.', "_")
            ));
        }
        Ok(schema)
    }

    /// Decode every alert of one input named `name`: a Confluent-framed message, an Avro
    /// container, or either gzip'd. Every record the input declares comes back as an alert or
    /// inside a reject.
    #[must_use]
    pub fn decode_file(&self, name: &str, bytes: &[u8]) -> Vec<Result<Alert, Reject>> {
        if bytes.starts_with(&[0x1f, 0x8b]) {
            return match inflate(bytes) {
                Ok(inflated) if inflated.starts_with(&[0x1f, 0x8b]) => {
                    vec![Err(corrupt("a gzip member holding another gzip member, not an alert"))]
                }
                Ok(inflated) => self.decode_framed(name, &inflated, " (gzip'd)"),
                Err(reject) => vec![Err(reject)],
            };
        }
        self.decode_framed(name, bytes, "")
    }

    fn decode_framed(&self, name: &str, bytes: &[u8], gzipped: &str) -> Vec<Result<Alert, Reject>> {
        match bytes.first() {
            _ if bytes.starts_with(avro::MAGIC) => self.decode_container(name, bytes),
            Some(0) => vec![self.decode_message(name, bytes)],
            Some(first) => vec![Err(corrupt(format!(
                "not a Rubin alert{gzipped}: starts with byte 0x{first:02x}, neither a Confluent-framed message (0x00 and a schema id) nor an Avro container (Obj\\x01)"
            )))],
            None => vec![Err(corrupt(format!("empty input{gzipped}")))],
        }
    }

    /// One Confluent-framed message: `0x00`, the schema id, one datum ending at the end.
    fn decode_message(&self, name: &str, bytes: &[u8]) -> Result<Alert, Reject> {
        let Some(id) = bytes.get(1..CONFLUENT_HEADER) else {
            return Err(corrupt(format!(
                "truncated Confluent header: {} bytes, a message starts with {CONFLUENT_HEADER} (0x00 and a 4-byte schema id)",
                bytes.len()
            )));
        };
        let id = i32::from_be_bytes([id[0], id[1], id[2], id[3]]);
        let schema = self.bundled(id)?;
        let datum = &bytes[CONFLUENT_HEADER..];
        let mut cursor = Cursor::new(datum);
        let at = |error: &AvroError| corrupt(format!("corrupt Avro: {error} (Confluent schema id {id}, version {})", schema.version));
        let alert = self.decode_record(&schema, &mut cursor, name).map_err(|e| at(&e))?;
        if cursor.position() != datum.len() {
            let (used, left) = (cursor.position(), datum.len() - cursor.position());
            return Err(corrupt(format!(
                "corrupt Avro: {left} bytes after the datum (schema id {id}'s datum ends after {used} of {} bytes): a message holds one datum",
                datum.len()
            )));
        }
        alert
    }

    /// The schema of Confluent schema id `id`: a given one of its version, else the bundled one.
    fn bundled(&self, id: i32) -> Result<Arc<AlertSchema>, Reject> {
        let (major, minor) = (id / 100, id % 100);
        let version = format!("{major}.{minor}");
        if let Some(given) = self.given.iter().find(|g| g.version == version).filter(|_| id >= 0) {
            return given
                .compiled
                .clone()
                .map_err(|error| Reject::new(RejectKind::NotAnAlert, format!("schema `{}`: {error}", given.path)));
        }
        let Some(index) = BUNDLED.iter().position(|(v, _)| *v == version).filter(|_| id >= 0) else {
            let reason = if id < 0 {
                format!("Confluent schema id {id} is not a Rubin alert schema id (major*100 + minor)")
            } else if self.given.is_empty() {
                format!("Confluent schema id {id} (version {version}) is not bundled; newer schemas can be given with --schema-dir")
            } else {
                format!("Confluent schema id {id} (version {version}) is neither bundled nor given in --schema-dir")
            };
            return Err(Reject::new(RejectKind::NotAnAlert, reason));
        };
        let compiled = self.bundled[index].get_or_init(|| match self.compile(BUNDLED[index].1.as_bytes()) {
            Ok(schema) => Ok(Arc::new(schema)),
            Err(Unusable::Invalid(error)) => Err(error.to_string()),
            Err(Unusable::Foreign { reason, .. }) => Err(reason),
        });
        compiled.clone().map_err(|error| Reject::new(RejectKind::NotAnAlert, format!("bundled schema {version} does not compile: {error}")))
    }

    /// Every record of every block of an Avro container.
    fn decode_container(&self, name: &str, bytes: &[u8]) -> Vec<Result<Alert, Reject>> {
        let header = match Header::parse(bytes) {
            Ok(header) => header,
            Err(error) => return vec![Err(corrupt(format!("corrupt Avro: {error}")))],
        };
        let schema = match self.embedded_schema(header.schema_json) {
            Ok(schema) => schema,
            Err(Unusable::Invalid(error)) => {
                return vec![Err(whole_file(&header, 1, RejectKind::CorruptAvro, &format!("corrupt Avro: {error}")))]
            }
            Err(Unusable::Foreign { reason, min_record }) => {
                let reason = crate::survey::foreign(&Lsst, bytes).map_or(reason, |reject| reject.reason);
                return vec![Err(whole_file(&header, min_record, RejectKind::NotAnAlert, &reason))];
            }
        };
        let mut results = Vec::new();
        let mut values_left = avro::value_budget(header.file_len());
        let mut inflate_left = header.inflate_allowance();
        for block in header.blocks() {
            match block {
                Ok(frame) => {
                    let outcome = self.block(&header, &frame, &schema, name, &mut values_left, &mut inflate_left);
                    match outcome {
                        Ok(mut alerts) => results.append(&mut alerts),
                        Err((error, capacity)) => {
                            let records = bounded(frame.count, capacity, schema.min_record);
                            let error = if error.names_block() { error.to_string() } else { format!("block {}: {error}", frame.index) };
                            results.push(Err(block_reject(&error, records, "reading on with the next block")));
                        }
                    }
                }
                Err(damaged) => results.push(Err(damaged_reject(&header, &damaged, schema.min_record))),
            }
        }
        if results.is_empty() {
            results.push(Err(corrupt("container holds no records")));
        }
        results
    }

    /// The alerts of one intact block; on failure the error and the bytes of record data the
    /// block could hold (to bound its count).
    fn block(
        &self,
        header: &Header<'_>,
        frame: &Frame<'_>,
        schema: &Arc<AlertSchema>,
        name: &str,
        values_left: &mut usize,
        inflate_left: &mut usize,
    ) -> Result<Vec<Result<Alert, Reject>>, (AvroError, usize)> {
        let data = header.block_data(frame, *inflate_left).map_err(|error| (error, header.capacity(frame.data.len())))?;
        if header.deflate {
            *inflate_left -= data.len();
            *values_left = values_left.saturating_add(data.len().saturating_mul(avro::MAX_VALUES_PER_BYTE));
        }
        let bytes = data.len();
        let most = bytes / schema.min_record.max(1);
        if frame.count > most {
            return Err((AvroError::TooManyRecords { block: frame.index, count: frame.count, bytes, most, min: schema.min_record }, bytes));
        }
        let mut cursor = Cursor::with_budget(&data, *values_left);
        let decoded: Result<Vec<_>, _> = (0..frame.count).map(|_| self.decode_record(schema, &mut cursor, name)).collect();
        *values_left = cursor.values_left();
        let alerts = decoded.map_err(|error| (error, bytes))?;
        if cursor.position() != bytes {
            return Err((AvroError::BlockSizeMismatch { block: frame.index, declared: bytes, used: cursor.position() }, bytes));
        }
        Ok(alerts)
    }

    fn embedded_schema(&self, json: &[u8]) -> Result<Arc<AlertSchema>, Unusable> {
        if let Some(found) = self.embedded.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(json) {
            return Ok(Arc::clone(found));
        }
        let compiled = Arc::new(self.compile(json)?);
        let mut schemas = self.embedded.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(Arc::clone(schemas.entry(json.to_vec()).or_insert(compiled)))
    }

    fn compile(&self, json: &[u8]) -> Result<AlertSchema, Unusable> {
        let schema = Schema::parse(json).map_err(Unusable::Invalid)?;
        let min_record = schema.min_size(schema.root);
        if let Err(reason) = check_alert_schema(&schema) {
            return Err(Unusable::Foreign { reason, min_record });
        }
        let version = match schema.node(schema.root) {
            Node::Record { name, .. } => version_of(name).unwrap_or_default(),
            _ => String::new(),
        };
        let top = schema.record_fields(schema.root).unwrap_or_default();
        let mut docs = Vec::new();
        let mut unmapped = Vec::new();
        let mut plan = Vec::with_capacity(top.len());
        for field in top {
            let action = match field.name.as_str() {
                // The alert's own id (8.0 on): its diaSource's diaSourceId in real alerts (the
                // fake samples alone differ), stored from the diaSource, so not listed unmapped.
                "diaSourceId" => Action::Skip,
                "diaSource" => self.record_action(&schema, field, "diaSource", "", true, &mut docs, &mut unmapped),
                "diaObject" => self.record_action(&schema, field, "diaObject", "diaObject_", false, &mut docs, &mut unmapped),
                "ssSource" => self.record_action(&schema, field, "ssSource", "ssSource_", false, &mut docs, &mut unmapped),
                "prvDiaSources" => self.history_action(&schema, field.node, "prvDiaSources", Table::Epochs),
                "prvDiaForcedSources" => self.history_action(&schema, field.node, "prvDiaForcedSources", Table::Forced),
                name => match CUTOUTS.iter().position(|c| *c == name) {
                    Some(channel) => Action::Cutout(channel),
                    None => match self.mapped(&format!("alert.{name}"), name) {
                        Some(column) => {
                            if let Some(doc) = &field.doc {
                                docs.push((column, self.doc(column, doc)));
                            }
                            Action::Column(column)
                        }
                        None => {
                            unmapped.push(name.to_string());
                            Action::Skip
                        }
                    },
                },
            };
            plan.push(action);
        }
        Ok(AlertSchema { schema, plan, docs, unmapped, version, min_record })
    }

    /// The catalog column `name` if its source is `source` (`diaSource.psfFlux`).
    fn mapped(&self, source: &str, name: &str) -> Option<usize> {
        self.layout.index_of(name).filter(|c| self.layout.columns()[*c].source == source)
    }

    /// A writer `doc` for column `column`; a flag column keeps saying how it stores booleans.
    fn doc(&self, column: usize, doc: &str) -> String {
        let doc = doc.split_whitespace().collect::<Vec<_>>().join(" ");
        match self.layout.columns()[column].dtype {
            Dtype::U1 => format!("{doc} [1 true, 0 false, 255 null]"),
            _ => doc,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn record_action(
        &self,
        schema: &Schema,
        field: &avro::Field,
        record: &str,
        prefix: &str,
        required: bool,
        docs: &mut Vec<(usize, String)>,
        unmapped: &mut Vec<String>,
    ) -> Action {
        let fields = schema.record_fields(field.node).unwrap_or_default();
        let columns = fields
            .iter()
            .map(|f| {
                let column = self.mapped(&format!("{record}.{}", f.name), &format!("{prefix}{}", f.name));
                match (column, &f.doc) {
                    (Some(column), Some(doc)) => docs.push((column, self.doc(column, doc))),
                    (None, _) => unmapped.push(format!("{record}.{}", f.name)),
                    (Some(_), None) => {}
                }
                column
            })
            .collect();
        Action::Record { columns, required }
    }

    fn history_action(&self, schema: &Schema, node: usize, array: &'static str, table: Table) -> Action {
        let layout = match table {
            Table::Epochs => tables::epochs(),
            Table::Forced => tables::forced(),
        };
        match history_record_fields(schema, node) {
            Some(fields) => Action::History { plan: RecordPlan::new(array, fields, layout), table },
            None => Action::Skip,
        }
    }

    /// Decode one alert datum. The outer error means the Avro data itself is broken (nothing
    /// after it can be read); the inner one that this alert is rejected for its content.
    fn decode_record(&self, compiled: &Arc<AlertSchema>, cursor: &mut Cursor<'_>, name: &str) -> Result<Result<Alert, Reject>, AvroError> {
        let start = cursor.position();
        let mut bound = RecordBound::new(cursor.rest().len());
        let schema = &compiled.schema;
        let fields = schema.record_fields(schema.root).unwrap_or_default();
        let mut row = self.layout.new_row();
        let mut cutouts: [Option<&[u8]>; 3] = [None; 3];
        let mut problem = None;
        let mut truncated = Vec::new();
        let mut history = self.lightcurves.then(History::default);
        let mut noticed = Noticed::default();
        for (field, action) in fields.iter().zip(&compiled.plan) {
            match action {
                Action::Skip => cursor.skip(schema, field.node)?,
                Action::Column(column) => {
                    let value = scalar(cursor, schema, field.node)?;
                    pack_noting(self.layout, &mut row, *column, value, &mut truncated, &mut problem);
                }
                Action::Record { columns, required } => {
                    let present = self.read_record(cursor, schema, field.node, columns, &mut row, &mut truncated, &mut problem)?;
                    if !present && *required {
                        problem.get_or_insert(Reject::new(RejectKind::BadValue, format!("{} is null", field.name)));
                    }
                }
                Action::History { plan, table } => {
                    let Some(history) = history.as_mut() else {
                        cursor.skip(schema, field.node)?;
                        continue;
                    };
                    let out = match table {
                        Table::Epochs => &mut history.epochs,
                        Table::Forced => &mut history.forced,
                    };
                    history::read_records(cursor, schema, field.node, plan, out, &mut noticed, &mut bound)?;
                }
                Action::Cutout(channel) => cutouts[*channel] = cutout_bytes(cursor, schema, field.node)?,
            }
        }
        // Before any other reason: past the bound, the history's rows were not all read.
        if let Some(reason) = bound.exceeded(cursor.position() - start) {
            return Ok(Err(Reject::new(RejectKind::BadValue, reason)));
        }
        if let Some(reason) = noticed.problem {
            problem.get_or_insert(Reject::new(RejectKind::BadValue, reason));
        }
        truncated.extend(noticed.truncated.into_iter().map(|column| format!("history.{column}")));
        if let Some(reject) = problem {
            return Ok(Err(reject));
        }
        let id = match self.layout.read_i64(&row, self.columns.id) {
            Some(id) if id != i64::MIN => id,
            _ => return Ok(Err(Reject::new(RejectKind::BadValue, "diaSource has no diaSourceId"))),
        };
        let time = self.layout.read_f64(&row, self.columns.time).unwrap_or(f64::NAN);
        if history.is_some() && !time.is_finite() {
            return Ok(Err(Reject::new(
                RejectKind::BadValue,
                format!("diaSource.{} is {time}: an epoch needs a finite time", history::TIME),
            )));
        }
        let mut alert = match self.finish(compiled, row, id, cutouts, name, truncated) {
            Ok(alert) => alert,
            Err(reject) => return Ok(Err(reject)),
        };
        if let Some(mut history) = history {
            let (epochs, forced) = (tables::epochs(), tables::forced());
            self.source_copy.append(&alert.row, epochs, &mut history.epochs);
            history::carried_by(&mut history.epochs, epochs, id, time);
            history::carried_by(&mut history.forced, forced, id, time);
            history.jd = time;
            alert.history = Some(history);
        }
        Ok(Ok(alert))
    }

    /// A record's fields (through a union) into their columns; false if it is null.
    #[allow(clippy::too_many_arguments)]
    fn read_record(
        &self,
        cursor: &mut Cursor<'_>,
        schema: &Schema,
        node: usize,
        columns: &[Option<usize>],
        row: &mut [u8],
        truncated: &mut Vec<String>,
        problem: &mut Option<Reject>,
    ) -> Result<bool, AvroError> {
        match schema.node(node) {
            Node::Union(branches) => {
                let branch = cursor.branch(branches.len())?;
                self.read_record(cursor, schema, branches[branch], columns, row, truncated, problem)
            }
            Node::Record { fields, .. } if fields.len() == columns.len() => {
                for (field, column) in fields.iter().zip(columns) {
                    match column {
                        Some(column) => {
                            let value = scalar(cursor, schema, field.node)?;
                            pack_noting(self.layout, row, *column, value, truncated, problem);
                        }
                        None => cursor.skip(schema, field.node)?,
                    }
                }
                Ok(true)
            }
            Node::Null => Ok(false),
            _ => {
                cursor.skip(schema, node)?;
                Ok(false)
            }
        }
    }

    fn finish(
        &self,
        compiled: &Arc<AlertSchema>,
        mut row: Vec<u8>,
        id: i64,
        cutouts: [Option<&[u8]>; 3],
        name: &str,
        truncated: Vec<String>,
    ) -> Result<Alert, Reject> {
        let columns = &self.columns;
        let x = self.layout.read_f64(&row, columns.x).unwrap_or(f64::NAN);
        let y = self.layout.read_f64(&row, columns.y).unwrap_or(f64::NAN);
        let cut = cutout::cut(cutouts, x, y, self.spec)?;
        let psf = if self.psf { cutout::psfs(cutouts)? } else { Psfs::default() };
        let _ = self.layout.pack(&mut row, columns.stamp_flags, Scalar::Int(i64::from(cut.flags)));
        let _ = self.layout.pack(&mut row, columns.schema_version, Scalar::Str(compiled.version.as_bytes()));
        let source = tail_chars(name, columns.source_chars);
        let _ = self.layout.pack(&mut row, columns.source, Scalar::Str(source.as_bytes()));
        Ok(Alert {
            id,
            row,
            stamps: cut.stamps,
            variance: cut.variance,
            psf,
            writer: Arc::clone(compiled) as Arc<dyn WriterSchema>,
            truncated,
            history: None,
        })
    }
}

/// A `corrupt-avro` reject of one record.
fn corrupt(reason: impl Into<String>) -> Reject {
    Reject::new(RejectKind::CorruptAvro, reason)
}

/// The version `10.0` of the alert record named `lsst.v10_0.alert`, if it is named so.
fn version_of(name: &str) -> Option<String> {
    let (major, minor) = name.strip_prefix("lsst.v")?.strip_suffix(".alert")?.split_once('_')?;
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (number(major) && number(minor)).then(|| format!("{major}.{minor}"))
}

/// The version `12.0` of a given schema file named `12.0.avsc`: major 7 to 99, minor 0 to 99
/// (a Confluent id `major*100 + minor` Rubin's packets are recognized by), written without
/// leading zeros.
fn version_of_file(name: &str) -> Option<String> {
    let (major, minor) = name.strip_suffix(".avsc")?.split_once('.')?;
    let number = |s: &str, range: std::ops::RangeInclusive<u32>| {
        let n: u32 = s.parse().ok().filter(|_| s.bytes().all(|b| b.is_ascii_digit()))?;
        (range.contains(&n) && n.to_string() == s).then_some(n)
    };
    let (major, minor) = (number(major, 7..=99)?, number(minor, 0..=99)?);
    Some(format!("{major}.{minor}"))
}

/// What a Rubin alert schema must have for its records to become rows: else the input is foreign.
fn check_alert_schema(schema: &Schema) -> Result<(), String> {
    let top = schema.record_fields(schema.root).ok_or("the writer schema's top level is not a record, so not a Rubin alert")?;
    let field = |name: &str| top.iter().find(|f| f.name == name);
    let root_name = match schema.node(schema.root) {
        Node::Record { name, .. } => name.as_str(),
        _ => "",
    };
    if field("candidate").is_some() || root_name.starts_with("ztf.") {
        return Err("the writer schema is a ZTF alert, not a Rubin one".into());
    }
    let not_rubin = |what: String| format!("the writer schema `{root_name}` is not a Rubin alert ({what})");
    let dia_source =
        field("diaSource").and_then(|f| schema.record_fields(f.node)).ok_or_else(|| not_rubin("no `diaSource` record".into()))?;
    if !dia_source.iter().any(|f| f.name == "diaSourceId") {
        return Err(not_rubin("its diaSource has no `diaSourceId`".into()));
    }
    match CUTOUTS.iter().find(|c| field(c).is_none()) {
        Some(missing) => Err(not_rubin(format!("no `{missing}` field"))),
        None => Ok(()),
    }
}

/// The fields of a history array's records (through unions), if it is an array of records.
fn history_record_fields(schema: &Schema, node: usize) -> Option<&[avro::Field]> {
    match schema.node(node) {
        Node::Union(branches) => branches.iter().find_map(|b| history_record_fields(schema, *b)),
        Node::Array(items) => schema.record_fields(*items),
        _ => None,
    }
}

/// A cutout's bytes (through a union); None for a null cutout.
fn cutout_bytes<'a>(cursor: &mut Cursor<'a>, schema: &Schema, node: usize) -> Result<Option<&'a [u8]>, AvroError> {
    match schema.node(node) {
        Node::Union(branches) => {
            let branch = cursor.branch(branches.len())?;
            cutout_bytes(cursor, schema, branches[branch])
        }
        Node::Bytes => Ok(Some(cursor.bytes()?)),
        _ => {
            cursor.skip(schema, node)?;
            Ok(None)
        }
    }
}

/// Inflate a gzip'd input, to at most [`MAX_INFLATED`] bytes.
fn inflate(bytes: &[u8]) -> Result<Vec<u8>, Reject> {
    use std::io::Read;
    let mut out = Vec::new();
    let take = u64::try_from(MAX_INFLATED).unwrap_or(u64::MAX).saturating_add(1);
    flate2::read::MultiGzDecoder::new(bytes)
        .take(take)
        .read_to_end(&mut out)
        .map_err(|error| corrupt(format!("gzip'd input does not inflate: {error}")))?;
    if out.len() > MAX_INFLATED {
        return Err(corrupt(format!("gzip'd input inflates to more than {} MiB, more than an alert may have", MAX_INFLATED >> 20)));
    }
    Ok(out)
}

fn block_reject(error: &str, records: usize, then: &str) -> Reject {
    let noun = if records == 1 { "record" } else { "records" };
    corrupt(format!("corrupt Avro: {error}; the block's {records} {noun} rejected, {then}")).for_records(records)
}

fn damaged_reject(header: &Header<'_>, damaged: &Damaged, min_record: usize) -> Reject {
    let resume = if damaged.resumed { "reading resumed at the next sync marker" } else { "no sync marker follows it" };
    match damaged.count {
        Some(count) => block_reject(&damaged.error.to_string(), bounded(count, header.capacity(damaged.bytes), min_record), resume),
        None => block_reject(&damaged.error.to_string(), 1, &format!("its record count is unreadable, counted as 1; {resume}")),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::Write;
    use std::path::{Path, PathBuf};

    use super::*;

    const SPEC: StampSpec = StampSpec { size: 21, keep_nan: false, keep_masked: false };
    const BOOM: &str = "boom/7912941781254298.avro";
    const BOOM_ID: i64 = 7_912_941_781_254_298;

    /// The shared Rubin alerts: `../shared/data/lsst-alerts` beside the repo.
    fn data() -> PathBuf {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/lsst-alerts");
        assert!(path.join("MANIFEST.md").is_file(), "Rubin alert data not found at {}", path.display());
        path
    }

    fn read(relative: &str) -> Vec<u8> {
        let path = data().join(relative);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn files(folder: &str) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(data().join(folder))
            .unwrap_or_else(|e| panic!("{folder}: {e}"))
            .map(|entry| entry.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "avro"))
            .collect();
        files.sort();
        files
    }

    fn one(results: Vec<Result<Alert, Reject>>) -> Alert {
        assert_eq!(results.len(), 1, "{results:?}");
        results.into_iter().next().unwrap().unwrap_or_else(|reject| panic!("rejected: {reject:?}"))
    }

    fn reject(results: &[Result<Alert, Reject>]) -> &Reject {
        assert_eq!(results.len(), 1, "{results:?}");
        results[0].as_ref().expect_err("a reject")
    }

    fn f64_of(row: &[u8], name: &str) -> f64 {
        let layout = tables::catalog();
        layout.read_f64(row, layout.index_of(name).unwrap()).unwrap()
    }

    fn i64_of(row: &[u8], name: &str) -> i64 {
        let layout = tables::catalog();
        layout.read_i64(row, layout.index_of(name).unwrap()).unwrap()
    }

    fn str_of(row: &[u8], name: &str) -> String {
        let layout = tables::catalog();
        layout.read_str(row, layout.index_of(name).unwrap()).unwrap()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn every_real_message_decodes_to_the_diasource_its_file_is_named_by() {
        let decoder = Decoder::new(SPEC);
        let mut paths = files("fink-v10.0");
        assert_eq!(paths.len(), 20);
        paths.extend(files("boom"));
        for path in paths {
            let alert = one(decoder.decode_file("x.avro", &std::fs::read(&path).unwrap()));
            let named: i64 = path.file_stem().unwrap().to_str().unwrap().parse().unwrap();
            assert_eq!(alert.id, named, "{}", path.display());
            assert_eq!(i64_of(&alert.row, "diaSourceId"), named);
            assert_eq!(alert.stamps.len(), 3 * SPEC.pixels());
            let version = if named == BOOM_ID { "9.0" } else { "10.0" };
            assert_eq!(str_of(&alert.row, "schema_version"), version);
            assert_eq!(alert.writer.version(), Some(version));
        }
    }

    #[test]
    fn the_container_gives_the_rows_of_the_single_messages() {
        let decoder = Decoder::new(SPEC);
        let container = decoder.decode_file("same", &read("fink-v10.0-container/alerts.avro"));
        assert_eq!(container.len(), 20);
        let by_id: BTreeMap<i64, Alert> = container.into_iter().map(|r| r.unwrap()).map(|a| (a.id, a)).collect();
        assert_eq!(by_id.len(), 20, "20 distinct diaSourceIds");
        for path in files("fink-v10.0") {
            let single = one(decoder.decode_file("same", &std::fs::read(&path).unwrap()));
            let twin = &by_id[&single.id];
            assert!(single.row == twin.row, "{}: catalog rows differ", path.display());
            let (a, b) = (single.history.unwrap(), twin.history.as_ref().unwrap());
            assert!(a.epochs == b.epochs && a.forced == b.forced, "{}: history rows differ", path.display());
            assert_eq!(a.jd.to_bits(), b.jd.to_bits());
        }
    }

    #[test]
    fn every_fake_sample_decodes_with_its_version() {
        let decoder = Decoder::new(SPEC);
        let paths = files("fake");
        assert_eq!(paths.len(), 9);
        for path in paths {
            let version = path.file_stem().unwrap().to_str().unwrap().to_string();
            let alert = one(decoder.decode_file("fake.avro", &std::fs::read(&path).unwrap()));
            assert_eq!(alert.id, 281_323_062_375_219_200, "{version}");
            assert_eq!(str_of(&alert.row, "schema_version"), version);
            let alert_id = i64_of(&alert.row, "alertId");
            assert_eq!(alert_id, if version.starts_with("7.") { 1_231_321_321 } else { i64::MIN }, "{version}");
            let history = alert.history.unwrap();
            assert_eq!(history.epochs.len(), 3 * tables::epochs().itemsize(), "{version}: 2 prvDiaSources and its own");
            assert!(history.forced.is_empty(), "{version}");
        }
    }

    #[test]
    fn the_boom_alert_keeps_its_values_nan_and_nulls() {
        let decoder = Decoder::new(SPEC);
        let alert = one(decoder.decode_file("some/dir/boom.avro", &read(BOOM)));
        let row = &alert.row;
        assert_eq!(alert.id, BOOM_ID);
        // Read with fastavro 1.13.1 and the published 9.0 schema.
        assert_eq!(i64_of(row, "diaObjectId"), BOOM_ID);
        assert_eq!(i64_of(row, "visit"), 943_296);
        assert_eq!(i64_of(row, "detector"), 168);
        assert_eq!(str_of(row, "band"), "r");
        assert_eq!(f64_of(row, "midpointMjdTai"), 60_961.233_092_222_22);
        assert_eq!(f64_of(row, "ra"), 55.752_127_609_726_86);
        assert_eq!(f64_of(row, "x"), 754.232_910_156_25);
        assert_eq!(f64_of(row, "psfFlux"), -1_230.275_756_835_937_5);
        assert_eq!(i64_of(row, "ssObjectId"), 0);
        assert_eq!(i64_of(row, "parentDiaSourceId"), 0);
        assert_eq!(i64_of(row, "pixelFlags_bad"), 0, "false");
        assert_eq!(i64_of(row, "diaObject_diaObjectId"), BOOM_ID);
        assert_eq!(i64_of(row, "diaObject_nDiaSources"), 1);
        assert_eq!(f64_of(row, "diaObject_r_psfFluxMean"), -1_230.275_756_835_937_5);
        for nan in ["psfLnL", "trailLength", "dipoleChi2", "extendedness", "ixx", "templateFlux", "diaObject_u_psfFluxMean"] {
            assert!(f64_of(row, nan).is_nan(), "{nan} is NaN in the alert");
        }
        assert_eq!(i64_of(row, "trailNdata"), i64::from(i32::MIN), "null keeps the missing value");
        assert_eq!(str_of(row, "observation_reason"), "", "null");
        assert!(f64_of(row, "ssSource_phaseAngle").is_nan(), "ssSource is null");
        assert_eq!(i64_of(row, "ssSource_ssObjectId"), i64::MIN, "ssSource is null");
        assert_eq!(i64_of(row, "alertId"), i64::MIN, "no alertId after 7.x");
        assert_eq!(str_of(row, "source"), "some/dir/boom.avro");
        let history = alert.history.unwrap();
        assert!(history.forced.is_empty(), "prvDiaForcedSources is an empty array");
        assert_eq!(history.jd, 60_961.233_092_222_22);
        let epochs = tables::epochs();
        assert_eq!(history.epochs.len(), epochs.itemsize(), "prvDiaSources is null: the alert's own diaSource only");
        let own = &history.epochs;
        assert_eq!(epochs.read_i64(own, epochs.index_of("diaSourceId").unwrap()), Some(BOOM_ID));
        assert_eq!(epochs.read_i64(own, epochs.index_of("alert_diaSourceId").unwrap()), Some(BOOM_ID));
        assert_eq!(epochs.read_f64(own, epochs.index_of("alert_midpointMjdTai").unwrap()), Some(60_961.233_092_222_22));
        assert!(epochs.read_f64(own, epochs.index_of("psfLnL").unwrap()).unwrap().is_nan());
        assert_eq!(epochs.read_str(own, epochs.index_of("band").unwrap()).as_deref(), Some("r"));
    }

    #[test]
    fn histories_and_solar_system_alerts_fill_their_tables() {
        let decoder = Decoder::new(SPEC);
        let epochs = tables::epochs();
        let alert = one(decoder.decode_file("x", &read("fink-v10.0/169813006131658851.avro")));
        let history = alert.history.unwrap();
        assert_eq!(history.epochs.len(), 17 * epochs.itemsize(), "16 prvDiaSources, then its own");
        let rows: Vec<&[u8]> = history.epochs.chunks_exact(epochs.itemsize()).collect();
        let id = |row: &[u8]| epochs.read_i64(row, epochs.index_of("diaSourceId").unwrap()).unwrap();
        assert_eq!(id(rows[16]), alert.id, "the alert's own diaSource comes last");
        assert!(rows[..16].iter().all(|row| id(row) != alert.id && id(row) > 0));
        let carrier = epochs.index_of("alert_diaSourceId").unwrap();
        assert!(rows.iter().all(|row| epochs.read_i64(row, carrier) == Some(alert.id)));
        assert_eq!(str_of(&alert.row, "target_name"), "lowdust, ddf_edfs_a");

        let solar = one(decoder.decode_file("x", &read("fink-v10.0/169813006395375696.avro")));
        assert_eq!(str_of(&solar.row, "ssSource_designation"), "K17SA9A");
        assert_eq!(i64_of(&solar.row, "diaObject_diaObjectId"), i64::MIN, "diaObject is null");
        assert_eq!(i64_of(&solar.row, "diaObjectId"), 0, "Rubin writes 0 for no diaObject");
        assert!(solar.writer.unmapped().iter().any(|f| f == "mpc_orbits"), "{:?}", solar.writer.unmapped());
        assert!(!solar.writer.unmapped().iter().any(|f| f == "diaSourceId"), "stored from its diaSource");
        let docs = solar.writer.docs();
        let band = tables::catalog().index_of("band").unwrap();
        assert!(docs.iter().any(|(c, doc)| *c == band && doc.contains("band")), "band's writer doc");
    }

    #[test]
    fn without_light_curves_there_is_no_history() {
        let decoder = Decoder::new(SPEC).with_lightcurves(false);
        let alert = one(decoder.decode_file("x", &read("fink-v10.0/169813006131658851.avro")));
        assert!(alert.history.is_none());
    }

    #[test]
    fn bundled_schemas_compile_and_reuse_their_named_types() {
        let decoder = Decoder::new(SPEC);
        for (version, _) in BUNDLED {
            let (major, minor) = version.split_once('.').unwrap();
            let id = major.parse::<i32>().unwrap() * 100 + minor.parse::<i32>().unwrap();
            let compiled = decoder.bundled(id).unwrap_or_else(|r| panic!("{version}: {r:?}"));
            assert_eq!(compiled.version, version);
            let schema = &compiled.schema;
            let top = schema.record_fields(schema.root).unwrap();
            let node = |name: &str| top.iter().find(|f| f.name == name).unwrap().node;
            let dia_source = schema.record_fields(node("diaSource")).unwrap();
            let previous = history_record_fields(schema, node("prvDiaSources")).unwrap();
            assert_eq!(dia_source, previous, "{version}: prvDiaSources' items are its diaSource");
        }
    }

    #[test]
    fn gzip_is_told_from_the_bytes() {
        let decoder = Decoder::new(SPEC);
        let plain = one(decoder.decode_file("a", &read(BOOM)));
        let gzipped = one(decoder.decode_file("a", &gzip(&read(BOOM))));
        assert!(plain.row == gzipped.row);
        let container = decoder.decode_file("a", &gzip(&read("fake/9.0.avro")));
        assert!(container[0].is_ok(), "{container:?}");
    }

    #[test]
    fn hostile_inputs_are_clear_rejects() {
        let decoder = Decoder::new(SPEC);
        let boom = read(BOOM);

        let short = decoder.decode_file("x", &boom[..4]);
        let r = reject(&short);
        assert_eq!(r.kind, RejectKind::CorruptAvro);
        assert!(r.reason.contains("truncated Confluent header: 4 bytes"), "{}", r.reason);

        let mut newer = boom.clone();
        newer[1..5].copy_from_slice(&1203i32.to_be_bytes());
        let r = reject(&decoder.decode_file("x", &newer)).clone();
        assert_eq!(r.kind, RejectKind::NotAnAlert);
        assert!(r.reason.contains("schema id 1203 (version 12.3) is not bundled"), "{}", r.reason);

        let half = decoder.decode_file("x", &boom[..boom.len() / 2]);
        let r = reject(&half);
        assert_eq!(r.kind, RejectKind::CorruptAvro);
        assert!(r.reason.contains("truncated") || r.reason.contains("bytes are left"), "{}", r.reason);

        let mut longer = boom.clone();
        longer.extend_from_slice(b"garbage");
        let r = reject(&decoder.decode_file("x", &longer)).clone();
        assert_eq!(r.kind, RejectKind::CorruptAvro);
        assert!(r.reason.contains("7 bytes after the datum"), "{}", r.reason);

        let r = reject(&decoder.decode_file("x", &gzip(b"not an alert at all"))).clone();
        assert_eq!(r.kind, RejectKind::CorruptAvro);
        assert!(r.reason.contains("not a Rubin alert (gzip'd)"), "{}", r.reason);

        let gzipped = gzip(&boom);
        let r = reject(&decoder.decode_file("x", &gzipped[..gzipped.len() / 2])).clone();
        assert_eq!(r.kind, RejectKind::CorruptAvro);
        assert!(r.reason.contains("does not inflate"), "{}", r.reason);

        for empty in [&b""[..], b"x"] {
            assert_eq!(reject(&decoder.decode_file("x", empty)).kind, RejectKind::CorruptAvro);
        }
    }

    #[test]
    fn every_prefix_of_a_message_is_a_corrupt_avro_reject() {
        let decoder = Decoder::new(SPEC);
        let boom = read(BOOM);
        for len in (0..boom.len()).step_by(101).chain(boom.len() - 8..boom.len()) {
            let results = decoder.decode_file("x", &boom[..len]);
            assert_eq!(reject(&results).kind, RejectKind::CorruptAvro, "prefix of {len} bytes");
        }
    }

    #[test]
    fn a_damaged_container_costs_only_its_damaged_blocks() {
        let decoder = Decoder::new(SPEC);
        let container = read("fink-v10.0-container/alerts.avro");
        let results = decoder.decode_file("x", &container[..container.len() / 2]);
        let alerts = results.iter().filter(|r| r.is_ok()).count();
        let rejected: usize = results.iter().filter_map(|r| r.as_ref().err()).map(|r| r.records).sum();
        assert!((8..=10).contains(&alerts), "about half the 20 one-record blocks: {alerts}");
        assert_eq!(rejected, 1, "the block cut in half: {results:?}");
        assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|r| r.kind == RejectKind::CorruptAvro));
    }

    #[test]
    fn foreign_alerts_are_not_alerts_of_the_other_survey() {
        let path = data().join("../ztf-alerts/ztf-avro-alert/1661382530015060001.avro");
        let ztf_alert = std::fs::read(&path).unwrap_or_else(|e| panic!("a ZTF alert at {}: {e}", path.display()));
        let r = reject(&Decoder::new(SPEC).decode_file("x", &ztf_alert)).clone();
        assert_eq!(r.kind, RejectKind::NotAnAlert);
        assert!(r.reason.contains("a ZTF alert, and this store holds Rubin (LSST) alerts"), "{}", r.reason);

        let ztf = crate::survey::ztf::Decoder::new(SPEC);
        let r = reject(&ztf.decode_file("x", &read("fake/10.0.avro"))).clone();
        assert_eq!(r.kind, RejectKind::NotAnAlert, "{}", r.reason);
    }

    #[test]
    fn versions_come_from_the_alert_record_name() {
        assert_eq!(version_of("lsst.v10_0.alert").as_deref(), Some("10.0"));
        assert_eq!(version_of("lsst.v7_1.alert").as_deref(), Some("7.1"));
        assert_eq!(version_of("lsst.v7_1.diaSource"), None);
        assert_eq!(version_of("lsst.v_1.alert"), None);
        assert_eq!(version_of_file("12.0.avsc").as_deref(), Some("12.0"));
        assert_eq!(version_of_file("99.99.avsc").as_deref(), Some("99.99"));
        for bad in ["12.00.avsc", "012.0.avsc", "+12.0.avsc", "6.0.avsc", "100.0.avsc", "12.100.avsc", "12.0.json", "12.avsc", "x.y.avsc"] {
            assert_eq!(version_of_file(bad), None, "{bad}");
        }
    }
}
