//! The Avro side of a packet: the embedded ZTF writer schemas (3.3 and 4.02), a record builder
//! that puts every value in its schema slot (wrapping unions with the right branch index), and
//! the hand-written object container file (so the sync marker, hence the bytes, are ours to fix).

use std::sync::OnceLock;

use apache_avro::schema::{RecordSchema, Schema};
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;

use super::AlertSchema;

/// ZTF's published alert schemas v3.3 and v4.02 (with `fp_hists`), each assembled into one JSON
/// document (`schemas/make_schemas.py`), by [`slot`].
const SCHEMA_JSONS: [&str; 2] = [include_str!("../../schemas/ztf_alert_v3.3.avsc"), include_str!("../../schemas/ztf_alert_v4.02.avsc")];

/// Where `version`'s schema, header text and writer sit in the per-version tables.
fn slot(version: AlertSchema) -> usize {
    match version {
        AlertSchema::V3_3 => 0,
        AlertSchema::V4_02 => 1,
    }
}

/// A generated value does not fit the schema: always a bug in this module, never bad input.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SchemaMismatch {
    #[error("record {record} has no field {field}")]
    UnknownField { record: String, field: String },
    #[error("record {record}: field {field} was never set")]
    MissingField { record: String, field: String },
    #[error("field {field}: a {value} value fits no branch of its schema {schema}")]
    WrongType { field: String, value: String, schema: String },
    #[error("the alert schema is not a record")]
    NotARecord,
    #[error("Avro: {0}")]
    Avro(#[from] apache_avro::Error),
}

/// The parsed writer schema of `version`, parsed once per process.
pub(crate) fn alert_schema(version: AlertSchema) -> &'static Schema {
    static SCHEMAS: [OnceLock<Schema>; 2] = [OnceLock::new(), OnceLock::new()];
    // The schemas are compiled into the binary and parsed by the tests: parsing cannot fail at run time.
    SCHEMAS[slot(version)].get_or_init(|| Schema::parse_str(SCHEMA_JSONS[slot(version)]).expect("embedded ZTF schema parses"))
}

/// The schema as one line of JSON (fields in their published order), for the file header: what
/// fastavro, which ZTF uses, writes there too.
pub(crate) fn header_schema_json(version: AlertSchema) -> &'static str {
    static COMPACT: [OnceLock<String>; 2] = [OnceLock::new(), OnceLock::new()];
    COMPACT[slot(version)].get_or_init(|| {
        // Same reason as alert_schema: the embedded text is valid JSON, checked by the tests.
        let parsed: serde_json::Value = serde_json::from_str(SCHEMA_JSONS[slot(version)]).expect("embedded ZTF schema is JSON");
        parsed.to_string()
    })
}

/// Encodes `record` as one Avro datum of `version`'s alert schema (validated against it first).
pub(crate) fn encode_alert(version: AlertSchema, record: Value) -> Result<Vec<u8>, SchemaMismatch> {
    static WRITERS: [OnceLock<GenericDatumWriter<'static>>; 2] = [OnceLock::new(), OnceLock::new()];
    let cell = &WRITERS[slot(version)];
    let writer = match cell.get() {
        Some(writer) => writer,
        None => {
            let built = GenericDatumWriter::builder(alert_schema(version)).build()?;
            cell.get_or_init(|| built)
        }
    };
    Ok(writer.write_value_to_vec(record)?)
}

/// The record schema of the top-level field `field` (looking through a `[record, "null"]` union).
pub(crate) fn nested_record(parent: &'static RecordSchema, field: &str) -> Result<&'static RecordSchema, SchemaMismatch> {
    let unknown = || SchemaMismatch::UnknownField { record: parent.name.to_string(), field: field.to_string() };
    let schema = &parent.fields[*parent.lookup.get(field).ok_or_else(unknown)?].schema;
    first_record_in(schema).ok_or_else(unknown)
}

/// The first record found in `schema`, looking into unions and array items.
fn first_record_in(schema: &Schema) -> Option<&RecordSchema> {
    match schema {
        Schema::Record(record) => Some(record),
        Schema::Union(union) => union.variants().iter().find_map(first_record_in),
        Schema::Array(array) => first_record_in(&array.items),
        _ => None,
    }
}

/// The top-level `alert` record schema of `version`.
pub(crate) fn alert_record_schema(version: AlertSchema) -> Result<&'static RecordSchema, SchemaMismatch> {
    match alert_schema(version) {
        Schema::Record(record) => Ok(record),
        _ => Err(SchemaMismatch::NotARecord),
    }
}

/// Rust values that become one plain (non-union) Avro value; `None` becomes `null`.
pub(crate) trait IntoAvro {
    fn into_avro(self) -> Value;
}

impl IntoAvro for Value {
    fn into_avro(self) -> Value {
        self
    }
}
impl IntoAvro for f32 {
    fn into_avro(self) -> Value {
        Value::Float(self)
    }
}
impl IntoAvro for f64 {
    fn into_avro(self) -> Value {
        Value::Double(self)
    }
}
impl IntoAvro for i32 {
    fn into_avro(self) -> Value {
        Value::Int(self)
    }
}
impl IntoAvro for i64 {
    fn into_avro(self) -> Value {
        Value::Long(self)
    }
}
impl IntoAvro for String {
    fn into_avro(self) -> Value {
        Value::String(self)
    }
}
impl IntoAvro for &str {
    fn into_avro(self) -> Value {
        Value::String(self.to_string())
    }
}
impl IntoAvro for Vec<u8> {
    fn into_avro(self) -> Value {
        Value::Bytes(self)
    }
}
impl<T: IntoAvro> IntoAvro for Option<T> {
    fn into_avro(self) -> Value {
        self.map_or(Value::Null, IntoAvro::into_avro)
    }
}

/// Fills one record field by field, by name, and checks at the end that none was forgotten.
///
/// Values are given plain (`Float`, `Null`, …); the builder finds the union branch that takes
/// them, so the branch index always matches the schema's order, whichever way round it is.
pub(crate) struct RecordBuilder<'s> {
    schema: &'s RecordSchema,
    slots: Vec<Option<Value>>,
    /// The first mistake; later ones are usually consequences of it.
    error: Option<SchemaMismatch>,
}

impl<'s> RecordBuilder<'s> {
    pub(crate) fn new(schema: &'s RecordSchema) -> Self {
        Self { schema, slots: vec![None; schema.fields.len()], error: None }
    }

    /// Sets field `name` to `value` (wrapped in its union branch if the field is a union).
    pub(crate) fn set(&mut self, name: &str, value: impl IntoAvro) -> &mut Self {
        if self.error.is_some() {
            return self;
        }
        let Some(&position) = self.schema.lookup.get(name) else {
            self.error = Some(SchemaMismatch::UnknownField { record: self.schema.name.to_string(), field: name.to_string() });
            return self;
        };
        match fit(name, &self.schema.fields[position].schema, value.into_avro()) {
            Ok(fitted) => self.slots[position] = Some(fitted),
            Err(mismatch) => self.error = Some(mismatch),
        }
        self
    }

    /// The finished record, fields in schema order.
    pub(crate) fn finish(self) -> Result<Value, SchemaMismatch> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let mut fields = Vec::with_capacity(self.slots.len());
        for (field, slot) in self.schema.fields.iter().zip(self.slots) {
            let value =
                slot.ok_or_else(|| SchemaMismatch::MissingField { record: self.schema.name.to_string(), field: field.name.clone() })?;
            fields.push((field.name.clone(), value));
        }
        Ok(Value::Record(fields))
    }
}

/// `value` as field `field` of type `schema` holds it: inside `Union(branch, …)` when the schema is
/// a union, the branch being the first whose type is the value's.
fn fit(field: &str, schema: &Schema, value: Value) -> Result<Value, SchemaMismatch> {
    if let Schema::Union(union) = schema {
        let branch = union.variants().iter().position(|variant| takes(variant, &value));
        return match branch {
            // A union has far fewer than 2^32 branches.
            Some(index) => Ok(Value::Union(index as u32, Box::new(value))),
            None => Err(wrong_type(field, schema, &value)),
        };
    }
    if takes(schema, &value) {
        Ok(value)
    } else {
        Err(wrong_type(field, schema, &value))
    }
}

/// Whether a plain `value` is of the (non-union) type `schema`. Named references are records
/// here (the cutout), and records are built by their own `RecordBuilder`.
fn takes(schema: &Schema, value: &Value) -> bool {
    matches!(
        (schema, value),
        (Schema::Null, Value::Null)
            | (Schema::Int, Value::Int(_))
            | (Schema::Long, Value::Long(_))
            | (Schema::Float, Value::Float(_))
            | (Schema::Double, Value::Double(_))
            | (Schema::String, Value::String(_))
            | (Schema::Bytes, Value::Bytes(_))
            | (Schema::Array(_), Value::Array(_))
            | (Schema::Record(_) | Schema::Ref { .. }, Value::Record(_))
    )
}

fn wrong_type(field: &str, schema: &Schema, value: &Value) -> SchemaMismatch {
    let value = format!("{value:?}");
    SchemaMismatch::WrongType {
        field: field.to_string(),
        value: value.chars().take(40).collect(),
        schema: format!("{schema:?}").chars().take(80).collect(),
    }
}

/// Map from a metadata key to its value, as an Avro file header holds them.
pub(crate) type Metadata<'a> = [(&'a str, &'a [u8])];

/// A complete Avro object container file holding the single encoded record `datum`.
///
/// Layout (Avro spec, "Object Container Files"): magic `Obj\x01`; the metadata map; the 16-byte
/// sync marker; one block = record count, byte size, the datum bytes, the sync marker again.
pub(crate) fn object_container(metadata: &Metadata, sync: [u8; 16], datum: &[u8]) -> Vec<u8> {
    let metadata_len: usize = metadata.iter().map(|(k, v)| k.len() + v.len() + 20).sum();
    let mut out = Vec::with_capacity(metadata_len + datum.len() + 64);
    out.extend_from_slice(b"Obj\x01");
    put_map(&mut out, metadata);
    out.extend_from_slice(&sync);
    put_long(&mut out, 1);
    put_long(&mut out, datum.len() as i64);
    out.extend_from_slice(datum);
    out.extend_from_slice(&sync);
    out
}

/// The header metadata of an alert file: its schema and codec `null`, like ZTF's.
pub(crate) fn alert_container(version: AlertSchema, sync: [u8; 16], datum: &[u8]) -> Vec<u8> {
    let metadata: [(&str, &[u8]); 2] = [("avro.schema", header_schema_json(version).as_bytes()), ("avro.codec", b"null")];
    object_container(&metadata, sync, datum)
}

/// An Avro map<bytes>: one block with all entries, then the empty block that ends the map.
fn put_map(out: &mut Vec<u8>, entries: &Metadata) {
    if !entries.is_empty() {
        put_long(out, entries.len() as i64);
        for (key, value) in entries {
            put_bytes(out, key.as_bytes());
            put_bytes(out, value);
        }
    }
    put_long(out, 0);
}

/// Avro `bytes`/`string`: length, then the bytes.
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_long(out, bytes.len() as i64);
    out.extend_from_slice(bytes);
}

/// Avro `long`: zig-zag, then little-endian base-128 varint.
pub(crate) fn put_long(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8 & 0x7f) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

/// Decoded metadata of a container header, for tests of other modules.
#[cfg(test)]
pub(crate) fn header_metadata(file: &[u8]) -> std::collections::HashMap<String, Vec<u8>> {
    let mut reader = file;
    let mut magic = [0u8; 4];
    std::io::Read::read_exact(&mut reader, &mut magic).expect("magic");
    assert_eq!(&magic, b"Obj\x01");
    let mut metadata = std::collections::HashMap::new();
    loop {
        let count = read_long(&mut reader);
        if count == 0 {
            return metadata;
        }
        for _ in 0..count {
            let key = read_bytes(&mut reader);
            let value = read_bytes(&mut reader);
            metadata.insert(String::from_utf8(key).expect("UTF-8 key"), value);
        }
    }
}

#[cfg(test)]
fn read_long(reader: &mut &[u8]) -> i64 {
    let (mut value, mut shift) = (0u64, 0);
    loop {
        let byte = reader[0];
        *reader = &reader[1..];
        value |= u64::from(byte & 0x7f) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            return ((value >> 1) as i64) ^ -((value & 1) as i64);
        }
    }
}

#[cfg(test)]
fn read_bytes(reader: &mut &[u8]) -> Vec<u8> {
    let len = read_long(reader) as usize;
    let (bytes, rest) = reader.split_at(len);
    *reader = rest;
    bytes.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn long_bytes(value: i64) -> Vec<u8> {
        let mut out = Vec::new();
        put_long(&mut out, value);
        out
    }

    #[test]
    fn longs_are_zigzag_varints() {
        assert_eq!(long_bytes(0), [0x00]);
        assert_eq!(long_bytes(-1), [0x01]);
        assert_eq!(long_bytes(1), [0x02]);
        assert_eq!(long_bytes(-64), [0x7f]);
        assert_eq!(long_bytes(64), [0x80, 0x01]);
        assert_eq!(long_bytes(i64::MAX).len(), 10);
        for value in [0, 1, -1, 300, -300, 1 << 40, i64::MIN, i64::MAX] {
            assert_eq!(read_long(&mut long_bytes(value).as_slice()), value);
        }
    }

    #[test]
    fn embedded_schemas_have_ztf_shape() {
        let alert = alert_record_schema(AlertSchema::V3_3).expect("alert is a record");
        assert_eq!(alert.fields.len(), 9);
        let candidate = nested_record(alert, "candidate").expect("candidate record");
        let prv = nested_record(alert, "prv_candidates").expect("prv_candidate record");
        let cutout = nested_record(alert, "cutoutScience").expect("cutout record");
        assert_eq!(candidate.fields.len(), 103);
        assert_eq!(prv.fields.len(), 57);
        assert_eq!(cutout.fields.len(), 2);
        assert!(nested_record(alert, "fp_hists").is_err());

        let alert = alert_record_schema(AlertSchema::V4_02).expect("alert is a record");
        assert_eq!(alert.fields.len(), 10);
        for (field, fields) in [("candidate", 103), ("prv_candidates", 57), ("fp_hists", 29), ("cutoutScience", 2)] {
            assert_eq!(nested_record(alert, field).expect("a record").fields.len(), fields, "{field}");
        }
        for version in [AlertSchema::V3_3, AlertSchema::V4_02] {
            let header = header_schema_json(version);
            assert!(header.starts_with('{') && !header.contains('\n'));
            assert!(header.contains(&format!("\"version\":\"{}\"", version.as_str())), "{version:?}");
        }
    }

    #[test]
    fn builder_wraps_unions_in_schema_order_and_catches_mistakes() {
        let alert = alert_record_schema(AlertSchema::V3_3).expect("alert is a record");
        let candidate = nested_record(alert, "candidate").expect("candidate record");
        let mut builder = RecordBuilder::new(candidate);
        builder.set("diffmaglim", 20.5f32).set("ssnamenr", None::<String>);
        let diffmaglim = &builder.slots[candidate.lookup["diffmaglim"]];
        assert_eq!(diffmaglim, &Some(Value::Union(0, Box::new(Value::Float(20.5)))));
        let ssnamenr = &builder.slots[candidate.lookup["ssnamenr"]];
        assert_eq!(ssnamenr, &Some(Value::Union(1, Box::new(Value::Null))));
        assert!(matches!(builder.finish(), Err(SchemaMismatch::MissingField { .. })));

        let mut wrong = RecordBuilder::new(candidate);
        wrong.set("fid", 1i64);
        assert!(matches!(wrong.finish(), Err(SchemaMismatch::WrongType { .. })));
        let mut unknown = RecordBuilder::new(candidate);
        unknown.set("magpsff", 1.0f32);
        assert!(matches!(unknown.finish(), Err(SchemaMismatch::UnknownField { .. })));
    }

    #[test]
    fn container_header_holds_schema_and_null_codec() {
        let sync = [7u8; 16];
        let file = alert_container(AlertSchema::V3_3, sync, b"datum");
        let metadata = header_metadata(&file);
        assert_eq!(metadata["avro.codec"], b"null");
        assert_eq!(metadata["avro.schema"], header_schema_json(AlertSchema::V3_3).as_bytes());
        let tail = &file[file.len() - 16 - 5 - 2 - 16..];
        assert_eq!(&tail[..16], &sync, "header ends with the sync marker");
        assert_eq!(&tail[16..18], &[0x02, 0x0a], "count 1, size 5");
        assert_eq!(&tail[18..23], b"datum");
        assert_eq!(&tail[23..], &sync, "block ends with the sync marker");
    }
}
