//! An alert's history as rows of the light-curve tables: each `prv_candidates` entry becomes a
//! row of `lightcurves/epochs` (a detection if it has a candid, else an upper limit), the alert's
//! own `candidate` one more detection row, and each `fp_hists` entry a row of
//! `lightcurves/forced`. Rows are packed here exactly as the tables store them; which of them
//! are new to the store is decided later, in row order (`lightcurves.rs`).

use crate::formats::avro::{AvroError, Cursor, Field, Node, Schema};
use crate::survey::decode::scalar;
pub use crate::survey::History;
use crate::table::{Dtype, Layout, Packed, Scalar};

/// `kind` of a row with a candid.
pub const DETECTION: &str = "detection";
/// `kind` of a row without one.
pub const UPPER_LIMIT: &str = "upper_limit";

/// History rows reserved at most per array block read.
const RESERVE_ROWS: usize = 64;

/// Fewest bytes of an alert's datum per history record (its prv_candidates and fp_hists
/// together). Each record becomes a packed row (an epochs row is 1560 bytes) before any other
/// limit applies, so records of one byte, or of none, would let a 1 MB alert take 1.5 GB. The
/// records of the real alerts take at least 87 bytes (a prv_candidate) and 141 (an fp_hist);
/// 16 leaves room for a leaner writer and holds an alert's rows to about 100 times its bytes.
pub const MIN_RECORD_BYTES: usize = 16;

/// The history records one alert may carry: one per [`MIN_RECORD_BYTES`] of its datum. Its
/// length is known only once it is read, so records become rows only while the rest of the
/// block from the datum's start could hold them; past that they are stepped over and counted,
/// and [`RecordBound::exceeded`] judges them against the whole datum.
#[derive(Debug)]
pub struct RecordBound {
    /// Records the bytes from the datum's start to the end of its block can hold.
    most: usize,
    /// Records seen so far, read or stepped over.
    records: usize,
}

impl RecordBound {
    /// The bound for a datum that starts `bytes` bytes before the end of its block.
    #[must_use]
    pub fn new(bytes: usize) -> Self {
        RecordBound { most: bytes / MIN_RECORD_BYTES, records: 0 }
    }

    /// Count one more record; whether it may still become a row.
    fn admit(&mut self) -> bool {
        self.records = self.records.saturating_add(1);
        self.records <= self.most
    }

    /// Why the history is too large for a datum of `bytes` bytes, if it is. Holds whenever a
    /// record was refused a row, since `bytes` is at most what `most` was worked out from.
    #[must_use]
    pub fn exceeded(&self, bytes: usize) -> Option<String> {
        let records = self.records;
        (records > bytes / MIN_RECORD_BYTES).then(|| {
            format!(
                "history of {records} records in {bytes} bytes: more than one per {MIN_RECORD_BYTES} bytes of alert \
                 (a real alert's history records take 87 bytes or more)"
            )
        })
    }
}

/// How the fields of one history record (a prv_candidate or an fp_hist) map to a table.
#[derive(Debug, Clone)]
pub struct RecordPlan {
    /// The alert field the records come from (`prv_candidates`, `fp_hists`), for reasons.
    array: &'static str,
    layout: &'static Layout,
    /// How each field of the record is read.
    reads: Vec<FieldRead>,
    /// The `kind` column, which says if a row has a candid (epochs; forced has no kind).
    kind: Option<usize>,
    /// The position of the `candid` field among the record's fields.
    candid_field: Option<usize>,
    /// The `jd` column, part of every epoch's key.
    jd: Option<usize>,
}

impl RecordPlan {
    /// The plan for the records of alert field `array`, with `fields` (of `schema`), stored in
    /// `layout` (by field name).
    #[must_use]
    pub fn new(array: &'static str, schema: &Schema, fields: &[Field], layout: &'static Layout) -> Self {
        RecordPlan {
            array,
            layout,
            reads: fields.iter().map(|f| FieldRead::new(schema, f, layout)).collect(),
            kind: layout.index_of("kind"),
            candid_field: fields.iter().position(|f| f.name == "candid"),
            jd: layout.index_of("jd"),
        }
    }

    /// Why the row just packed for record `index` cannot be an epoch, if it cannot: its jd is
    /// part of the epoch's key in the store, where a NaN (also what a null or absent jd reads
    /// as) or an infinity would break the key index for every later build.
    fn bad_jd(&self, row: &[u8], index: usize) -> Option<String> {
        let jd = self.layout.read_f64(row, self.jd?)?;
        (!jd.is_finite()).then(|| format!("{}[{index}].jd is {jd}: an epoch needs a finite jd", self.array))
    }
}

/// How one field of a history record is read. Most fields are numbers whose Avro type is their
/// column's own, alone or in a union with null: their bytes go straight into the row, without
/// the general path's value and dtype matching (history rows are an alert's bulk: 15 per alert
/// in real packets, 57 fields each).
#[derive(Debug, Clone, Copy)]
enum FieldRead {
    /// Not stored.
    Skip,
    /// Any value, through `scalar` and `Layout::pack` (strings, conversions).
    Packed(usize),
    /// A number of the column's own type, at `offset` in the row; `value_branch`: its branch of a
    /// two-branch union with null, if it is in one (a null leaves the missing value in place).
    Direct { column: usize, offset: usize, number: Number, value_branch: Option<usize> },
}

/// An Avro number and the column dtype that holds it byte for byte.
#[derive(Debug, Clone, Copy)]
enum Number {
    /// float → `<f4`
    Float,
    /// double → `<f8`
    Double,
    /// int or long → `<i8`
    Long,
    /// int → `<i4`
    Int,
}

impl FieldRead {
    fn new(schema: &Schema, field: &Field, layout: &Layout) -> FieldRead {
        let Some(column) = layout.index_of(&field.name) else { return FieldRead::Skip };
        let (node, value_branch) = match schema.node(field.node) {
            Node::Union(branches) if branches.len() == 2 => {
                let value = usize::from(schema.node(branches[0]) == &Node::Null);
                if schema.node(branches[1 - value]) != &Node::Null {
                    return FieldRead::Packed(column);
                }
                (schema.node(branches[value]), Some(value))
            }
            other => (other, None),
        };
        let number = match (node, layout.columns()[column].dtype) {
            (Node::Float, Dtype::F4) => Number::Float,
            (Node::Double, Dtype::F8) => Number::Double,
            (Node::Int | Node::Long, Dtype::I8) => Number::Long,
            (Node::Int, Dtype::I4) => Number::Int,
            _ => return FieldRead::Packed(column),
        };
        FieldRead::Direct { column, offset: layout.columns()[column].offset, number, value_branch }
    }
}

/// Byte copies that turn a catalog row into the epochs row of the candidate itself: every
/// epochs column the catalog also has, under the same name and dtype (a string column may be
/// wider in epochs: its zero padding is already there).
#[derive(Debug)]
pub struct CandidateCopy {
    spans: Vec<(usize, usize, usize)>,
}

impl CandidateCopy {
    /// The copies from `catalog` rows to `epochs` rows.
    #[must_use]
    pub fn new(catalog: &Layout, epochs: &Layout) -> Self {
        let spans = epochs
            .columns()
            .iter()
            .filter_map(|column| {
                let from = catalog.index_of(&column.name).map(|i| &catalog.columns()[i])?;
                let fits = match (from.dtype, column.dtype) {
                    (Dtype::Unicode(have), Dtype::Unicode(room)) => have <= room,
                    (have, room) => have == room,
                };
                fits.then_some((from.offset, column.offset, from.dtype.size()))
            })
            .collect();
        CandidateCopy { spans }
    }

    /// Append the candidate's epochs row, built from its catalog `row`, to `out`.
    pub fn append(&self, row: &[u8], epochs: &Layout, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(epochs.missing_row());
        let target = &mut out[start..];
        for &(from, to, size) in &self.spans {
            target[to..to + size].copy_from_slice(&row[from..from + size]);
        }
        let kind = epochs.index_of("kind").unwrap_or_else(|| unreachable!("epochs.tsv has kind (checked by tests)"));
        let _ = epochs.pack(target, kind, Scalar::Str(DETECTION.as_bytes()));
    }
}

/// What reading history records noticed in their values.
#[derive(Debug, Default)]
pub struct Noticed {
    /// A value that does not fit its column, or a jd that cannot key an epoch (the alert is then
    /// rejected with this reason).
    pub problem: Option<String>,
    /// Columns whose string values were cut to the column width.
    pub truncated: Vec<String>,
}

/// Read an array of history records (through a union; null is an empty history) of type
/// `node`, appending one packed row per record to `out`. Returns how many rows it appended.
/// A row whose jd cannot key an epoch is noticed as a problem; records beyond `bound` are
/// stepped over, not read.
///
/// # Errors
/// The Avro data is broken or breaks a limit.
pub fn read_records(
    cursor: &mut Cursor<'_>,
    schema: &Schema,
    node: usize,
    plan: &RecordPlan,
    out: &mut Vec<u8>,
    noticed: &mut Noticed,
    bound: &mut RecordBound,
) -> Result<usize, AvroError> {
    match schema.node(node) {
        Node::Union(branches) => {
            let branch = cursor.branch(branches.len())?;
            read_records(cursor, schema, branches[branch], plan, out, noticed, bound)
        }
        Node::Array(items) => {
            let min_item = schema.min_size(*items);
            let mut total = 0usize;
            let mut index = 0usize;
            loop {
                let count = cursor.array_block(min_item)?;
                if count == 0 {
                    return Ok(total);
                }
                // Room for the block's rows up front, and the alert's own detection row that
                // follows them (at most a few dozen: a count read from the input must not size
                // an allocation).
                out.reserve((count.min(RESERVE_ROWS) + 1) * plan.layout.itemsize());
                for _ in 0..count {
                    if !bound.admit() {
                        cursor.skip(schema, *items)?; // spends the record's values itself
                        continue;
                    }
                    cursor.spend()?;
                    let start = out.len();
                    if read_record(cursor, schema, *items, plan, out, noticed)? {
                        total += 1;
                        if let Some(reason) = plan.bad_jd(&out[start..], index) {
                            noticed.problem.get_or_insert(reason);
                        }
                    }
                    index += 1;
                }
            }
        }
        _ => {
            cursor.skip(schema, node)?;
            Ok(0)
        }
    }
}

/// One record (through a union; a null item gives no row). Returns whether it gave a row.
fn read_record(
    cursor: &mut Cursor<'_>,
    schema: &Schema,
    node: usize,
    plan: &RecordPlan,
    out: &mut Vec<u8>,
    noticed: &mut Noticed,
) -> Result<bool, AvroError> {
    let layout = plan.layout;
    let fields = match schema.node(node) {
        Node::Union(branches) => {
            let branch = cursor.branch(branches.len())?;
            return read_record(cursor, schema, branches[branch], plan, out, noticed);
        }
        Node::Record { fields, .. } if fields.len() == plan.reads.len() => fields,
        _ => {
            cursor.skip(schema, node)?;
            return Ok(false);
        }
    };
    let start = out.len();
    out.extend_from_slice(layout.missing_row());
    let mut has_candid = false;
    for (position, (field, read)) in fields.iter().zip(&plan.reads).enumerate() {
        let column = match *read {
            FieldRead::Skip => {
                cursor.skip(schema, field.node)?;
                continue;
            }
            FieldRead::Direct { column, offset, number, value_branch } => {
                if let Some(value) = value_branch {
                    if cursor.branch(2)? != value {
                        continue; // null: the row already holds the missing value
                    }
                }
                has_candid |= plan.candid_field == Some(position);
                let cell = &mut out[start + offset..];
                match number {
                    Number::Float => cell[..4].copy_from_slice(cursor.take(4, "a float")?),
                    Number::Double => cell[..8].copy_from_slice(cursor.take(8, "a double")?),
                    Number::Long => cell[..8].copy_from_slice(&cursor.long()?.to_le_bytes()),
                    Number::Int => {
                        let value = cursor.long()?;
                        match i32::try_from(value) {
                            Ok(value) => cell[..4].copy_from_slice(&value.to_le_bytes()),
                            Err(_) => pack(layout, &mut out[start..], column, Scalar::Int(value), noticed),
                        }
                    }
                }
                continue;
            }
            FieldRead::Packed(column) => column,
        };
        let value = scalar(cursor, schema, field.node)?;
        if plan.candid_field == Some(position) {
            has_candid = matches!(value, Scalar::Int(_));
        }
        pack(layout, &mut out[start..], column, value, noticed);
    }
    if let Some(kind) = plan.kind {
        let text = if has_candid { DETECTION } else { UPPER_LIMIT };
        let _ = layout.pack(&mut out[start..], kind, Scalar::Str(text.as_bytes()));
    }
    Ok(true)
}

/// Put `value` into `column` of `row` through the general path, noting a cut or a misfit.
fn pack(layout: &Layout, row: &mut [u8], column: usize, value: Scalar<'_>, noticed: &mut Noticed) {
    match layout.pack(row, column, value) {
        Ok(Packed::Exact) => {}
        Ok(Packed::Truncated) => {
            let name = &layout.columns()[column].name;
            if !noticed.truncated.contains(name) {
                noticed.truncated.push(name.clone());
            }
        }
        Err(error) => {
            noticed.problem.get_or_insert_with(|| format!("history: {error}"));
        }
    }
}
