//! Writing one Avro datum by walking the writer schema: every field of every record is written,
//! from the value the generator chose for it ([`Rec`]) or, for the fields it leaves open, from a
//! plausible value drawn by name and type ([`fill`]). Named types used again by name
//! (`Schema::Ref`) are looked up in the schema's own definitions.

use std::collections::HashMap;

use apache_avro::schema::{RecordSchema, Schema};

use super::super::avro::put_long;
use crate::rng::Rng;

/// A value the generator chose for one field; numbers are converted to the field's numeric type.
#[derive(Debug, Clone)]
pub(crate) enum Val {
    Null,
    Bool(bool),
    Long(i64),
    Double(f64),
    Str(String),
    Bytes(Vec<u8>),
    Rec(Box<Rec>),
    Arr(Vec<Rec>),
}

/// What kind of record a [`Rec`] is, so that the fields left open get fitting values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Alert,
    Source,
    Forced,
    /// A diaObject; bit b of the mask says band b (u g r i z y) has measurements.
    Object(u8),
    Solar,
}

/// One record's chosen values (by field name) and the key that seeds the values of the rest.
#[derive(Debug, Clone)]
pub(crate) struct Rec {
    pub(crate) kind: Kind,
    pub(crate) key: u64,
    pub(crate) fields: Vec<(&'static str, Val)>,
}

impl Rec {
    pub(crate) fn new(kind: Kind, key: u64) -> Self {
        Self { kind, key, fields: Vec::with_capacity(32) }
    }

    pub(crate) fn set(&mut self, name: &'static str, value: Val) -> &mut Self {
        self.fields.push((name, value));
        self
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Val> {
        self.fields.iter().find(|(key, _)| *key == name).map(|(_, value)| value)
    }
}

/// The record schemas of a parsed schema by full name, to resolve `Schema::Ref`.
pub(crate) struct Names<'s>(HashMap<String, &'s RecordSchema>);

impl<'s> Names<'s> {
    pub(crate) fn of(schema: &'s Schema) -> Self {
        let mut names = HashMap::new();
        collect(schema, &mut names);
        Self(names)
    }

    fn record<'a>(&'a self, schema: &'a Schema) -> Option<&'a RecordSchema>
    where
        's: 'a,
    {
        match schema {
            Schema::Record(record) => Some(record),
            Schema::Ref { name } => self.0.get(&name.fullname(None)).copied(),
            _ => None,
        }
    }
}

fn collect<'s>(schema: &'s Schema, names: &mut HashMap<String, &'s RecordSchema>) {
    match schema {
        Schema::Record(record) => {
            names.insert(record.name.fullname(None), record);
            for field in &record.fields {
                collect(&field.schema, names);
            }
        }
        Schema::Union(union) => union.variants().iter().for_each(|variant| collect(variant, names)),
        Schema::Array(array) => collect(&array.items, names),
        _ => {}
    }
}

/// Appends `rec` encoded as the record `schema` to `out`.
///
/// # Panics
/// If a chosen value fits no branch of its field's schema: a bug in the generator.
pub(crate) fn write_record(names: &Names<'_>, schema: &RecordSchema, rec: &Rec, out: &mut Vec<u8>) {
    let mut rng = Rng::from_keys(&[rec.key, 0x4c53_5354]);
    for field in &schema.fields {
        match rec.get(&field.name) {
            Some(value) => write_value(names, &field.schema, value, &field.name, out),
            None => fill(names, &field.schema, &field.name, rec.kind, &mut rng, out),
        }
    }
}

fn write_value(names: &Names<'_>, schema: &Schema, value: &Val, field: &str, out: &mut Vec<u8>) {
    if let Schema::Union(union) = schema {
        let variants = union.variants();
        let branch = variants.iter().position(|variant| fits(names, variant, value));
        let Some(branch) = branch else { panic!("field {field}: {value:?} fits no branch") };
        put_long(out, branch as i64);
        return write_value(names, &variants[branch], value, field, out);
    }
    match (schema, value) {
        (Schema::Null, Val::Null) => {}
        (Schema::Boolean, Val::Bool(b)) => out.push(u8::from(*b)),
        (Schema::Int | Schema::Long, Val::Long(v)) => put_long(out, *v),
        (Schema::Int | Schema::Long, Val::Double(v)) => put_long(out, *v as i64),
        (Schema::Float, Val::Double(v)) => out.extend_from_slice(&(*v as f32).to_le_bytes()),
        (Schema::Float, Val::Long(v)) => out.extend_from_slice(&(*v as f32).to_le_bytes()),
        (Schema::Double, Val::Double(v)) => out.extend_from_slice(&v.to_le_bytes()),
        (Schema::Double, Val::Long(v)) => out.extend_from_slice(&(*v as f64).to_le_bytes()),
        (Schema::String, Val::Str(s)) => put_bytes(out, s.as_bytes()),
        (Schema::Bytes, Val::Bytes(b)) => put_bytes(out, b),
        (Schema::Array(array), Val::Arr(items)) => {
            let Some(record) = names.record(&array.items) else { panic!("field {field}: array of non-records") };
            if !items.is_empty() {
                put_long(out, items.len() as i64);
                for item in items {
                    write_record(names, record, item, out);
                }
            }
            put_long(out, 0);
        }
        (_, Val::Rec(rec)) => {
            let Some(record) = names.record(schema) else { panic!("field {field}: record value for {schema:?}") };
            write_record(names, record, rec, out);
        }
        _ => panic!("field {field}: {value:?} does not fit {schema:?}"),
    }
}

fn fits(names: &Names<'_>, schema: &Schema, value: &Val) -> bool {
    match value {
        Val::Null => matches!(schema, Schema::Null),
        Val::Bool(_) => matches!(schema, Schema::Boolean),
        Val::Long(_) | Val::Double(_) => matches!(schema, Schema::Int | Schema::Long | Schema::Float | Schema::Double),
        Val::Str(_) => matches!(schema, Schema::String),
        Val::Bytes(_) => matches!(schema, Schema::Bytes),
        Val::Arr(_) => matches!(schema, Schema::Array(_)),
        Val::Rec(_) => names.record(schema).is_some(),
    }
}

/// Avro `bytes`/`string`: length, then the bytes.
pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_long(out, bytes.len() as i64);
    out.extend_from_slice(bytes);
}

const BANDS: [&str; 6] = ["u", "g", "r", "i", "z", "y"];

/// Whether `name` is a per-band field (`g_psfFluxMean`) of a band the object has no data in.
fn band_without_data(kind: Kind, name: &str) -> bool {
    let Kind::Object(mask) = kind else { return false };
    let bytes = name.as_bytes();
    if bytes.len() < 3 || bytes[1] != b'_' {
        return false;
    }
    BANDS.iter().position(|band| band.as_bytes()[0] == bytes[0]).is_some_and(|band| mask & (1 << band) == 0)
}

/// Fields Rubin leaves NaN unless a fit was made (trails, dipoles, moments, the likelihood).
fn mostly_nan(name: &str) -> bool {
    name.starts_with("trail")
        || name.starts_with("dipole")
        || matches!(name, "psfLnL" | "timeWithdrawnMjdTai" | "ixx" | "iyy" | "ixy" | "extendedness" | "templateFlux" | "templateFluxErr")
}

/// Writes a plausible value for a field the generator left open.
fn fill(names: &Names<'_>, schema: &Schema, name: &str, kind: Kind, rng: &mut Rng, out: &mut Vec<u8>) {
    if let Schema::Union(union) = schema {
        let variants = union.variants();
        let null = variants.iter().position(|variant| matches!(variant, Schema::Null));
        let value = variants.iter().position(|variant| !matches!(variant, Schema::Null));
        let p_null = match variants.get(value.unwrap_or(0)) {
            // Records and arrays the generator does not set are absent.
            Some(Schema::Record(_) | Schema::Ref { .. } | Schema::Array(_) | Schema::Bytes) => 1.0,
            Some(Schema::Int | Schema::Long) if band_without_data(kind, name) => 1.0,
            Some(Schema::Float | Schema::Double) => 0.03,
            _ => 0.08,
        };
        let branch = match (null, value) {
            (Some(null), Some(value)) => {
                if rng.chance(p_null) {
                    null
                } else {
                    value
                }
            }
            (Some(null), None) => null,
            (None, _) => 0,
        };
        put_long(out, branch as i64);
        return fill(names, &variants[branch], name, kind, rng, out);
    }
    match schema {
        Schema::Null => {}
        Schema::Boolean => out.push(u8::from(rng.chance(0.04))),
        Schema::Int | Schema::Long => put_long(out, fill_integer(name, kind, rng)),
        Schema::Float => out.extend_from_slice(&(fill_float(name, kind, rng) as f32).to_le_bytes()),
        Schema::Double => out.extend_from_slice(&fill_float(name, kind, rng).to_le_bytes()),
        Schema::String => put_bytes(out, fill_string(name, rng).as_bytes()),
        Schema::Bytes => put_bytes(out, &[]),
        Schema::Array(_) | Schema::Map(_) => put_long(out, 0),
        Schema::Enum(_) => put_long(out, 0),
        // Around 2026-01-01 (the alerts' night), in the unit of each logical type.
        Schema::TimestampMicros | Schema::LocalTimestampMicros => put_long(out, 1_767_225_600_000_000 - rng.int_in(0, 3_000_000_000_000)),
        Schema::TimestampMillis | Schema::LocalTimestampMillis => put_long(out, 1_767_225_600_000 - rng.int_in(0, 3_000_000_000)),
        Schema::TimestampNanos | Schema::LocalTimestampNanos => {
            put_long(out, 1_767_225_600_000_000_000 - rng.int_in(0, 3_000_000_000_000_000))
        }
        Schema::Date => put_long(out, 20_454),
        Schema::TimeMillis | Schema::TimeMicros => put_long(out, rng.int_in(0, 86_399_000)),
        Schema::Fixed(fixed) => out.resize(out.len() + fixed.size, 0),
        other => match names.record(other) {
            Some(record) => write_record(names, record, &Rec::new(kind, rng.next_u64()), out),
            None => panic!("field {name}: cannot fill {other:?}"),
        },
    }
}

fn fill_integer(name: &str, kind: Kind, rng: &mut Rng) -> i64 {
    if band_without_data(kind, name) {
        return 0;
    }
    if name.ends_with("Id") || name.ends_with("ID") {
        // Rubin writes 0 for "not associated".
        return 0;
    }
    if name.ends_with("Ndata") || name.starts_with('n') {
        return rng.int_in(1, 60);
    }
    if name == "bboxSize" {
        return rng.int_in(8, 40);
    }
    rng.int_in(0, 100)
}

fn fill_float(name: &str, kind: Kind, rng: &mut Rng) -> f64 {
    if band_without_data(kind, name) || (kind == Kind::Source && mostly_nan(name) && rng.chance(0.85)) || rng.chance(0.02) {
        return f64::NAN;
    }
    let lower = name.to_ascii_lowercase();
    if lower.contains("mjd") {
        return 61_041.2 - rng.uniform(0.0, 40.0);
    }
    if lower.contains("flux") {
        if lower.ends_with("err") || lower.contains("sigma") || lower.contains("errmean") {
            return rng.uniform(200.0, 500.0);
        }
        return 1500.0 + 600.0 * rng.normal();
    }
    if lower.ends_with("err") {
        return rng.uniform(1e-5, 5e-5);
    }
    if lower.ends_with("cov") {
        return 1e-10 * rng.normal();
    }
    if lower.contains("chi2") {
        return rng.uniform(500.0, 3000.0);
    }
    if lower.contains("ra") && !lower.contains("rate") && !lower.contains("range") {
        return rng.uniform(0.0, 360.0);
    }
    if lower.contains("dec") {
        return rng.uniform(-70.0, 10.0);
    }
    rng.uniform(0.0, 1.0)
}

fn fill_string(name: &str, rng: &mut Rng) -> String {
    match name {
        "designation" | "unpacked_primary_provisional_designation" | "fullDesignation" => {
            format!("20{:02} SB{}", rng.int_in(0, 25), rng.int_in(1, 99))
        }
        "packed_primary_provisional_designation" | "mpcDesignation" | "packedDesignation" => {
            format!("K{:02}S{:02}B", rng.int_in(0, 25), rng.int_in(1, 99))
        }
        "band" => BANDS[rng.int_in(0, 5) as usize].to_string(),
        "reliabilityVersion" => "v1".to_string(),
        "trailAlgorithm" => "trailedSource".to_string(),
        "mpc_orb_jsonb" => "{}".to_string(),
        _ => "synthetic".to_string(),
    }
}
