//! A Rubin alert's history as rows of the light-curve tables: each `prvDiaSources` record
//! becomes a row of `lightcurves/epochs`, then the alert's own diaSource one more (copied from
//! its catalog row), and each `prvDiaForcedSources` record a row of `lightcurves/forced`. Fields
//! go to the columns of the same name; every row ends with the alert that carried it. Rows are
//! packed here exactly as the tables store them; which of them are new to the store is decided
//! later, in row order.

use crate::formats::avro::{AvroError, Cursor, Field, Node, Schema};
use crate::survey::decode::scalar;
pub use crate::survey::History;
use crate::table::{Layout, Packed, Scalar};

/// The column holding an epoch's time, part of every epoch's key.
pub const TIME: &str = "midpointMjdTai";
/// The carrier columns that end both tables: the alert that carried the row, and its time.
pub const CARRIER_ID: &str = "alert_diaSourceId";
/// See [`CARRIER_ID`].
pub const CARRIER_TIME: &str = "alert_midpointMjdTai";

/// History rows reserved at most per array block read.
const RESERVE_ROWS: usize = 64;

/// Fewest bytes of an alert's datum per history record. Each record becomes a packed row (an
/// epochs row is about 1 KB) before any other limit applies, so records of a byte, or of none in
/// a container's own writer schema, would let a small alert take gigabytes. A real diaSource
/// takes over 300 bytes and a diaForcedSource over 60; 16 holds an alert's rows to about 70
/// times its bytes.
pub const MIN_RECORD_BYTES: usize = 16;

/// The history records one alert may carry: one per [`MIN_RECORD_BYTES`] of its datum. Records
/// become rows only while the bytes from the datum's start to the end of its data could hold
/// them; past that they are stepped over and counted, and [`RecordBound::exceeded`] judges them
/// against the whole datum.
#[derive(Debug)]
pub struct RecordBound {
    most: usize,
    records: usize,
}

impl RecordBound {
    /// The bound for a datum that starts `bytes` bytes before the end of its data.
    #[must_use]
    pub fn new(bytes: usize) -> Self {
        RecordBound { most: bytes / MIN_RECORD_BYTES, records: 0 }
    }

    fn admit(&mut self) -> bool {
        self.records = self.records.saturating_add(1);
        self.records <= self.most
    }

    /// Why the history is too large for a datum of `bytes` bytes, if it is.
    #[must_use]
    pub fn exceeded(&self, bytes: usize) -> Option<String> {
        let records = self.records;
        (records > bytes / MIN_RECORD_BYTES)
            .then(|| format!("history of {records} records in {bytes} bytes: more than one per {MIN_RECORD_BYTES} bytes of alert"))
    }
}

/// How the fields of one history record (a diaSource or a diaForcedSource) map to a table.
#[derive(Debug, Clone)]
pub struct RecordPlan {
    /// The alert field the records come from (`prvDiaSources`), for reasons.
    array: &'static str,
    layout: &'static Layout,
    /// The column of each field of the record, by name (None: not stored).
    columns: Vec<Option<usize>>,
    /// The time column.
    time: Option<usize>,
}

impl RecordPlan {
    /// The plan for the records of alert field `array`, with `fields`, stored in `layout`.
    #[must_use]
    pub fn new(array: &'static str, fields: &[Field], layout: &'static Layout) -> Self {
        let carriers = [layout.index_of(CARRIER_ID), layout.index_of(CARRIER_TIME)];
        let columns = fields.iter().map(|f| layout.index_of(&f.name).filter(|c| !carriers.contains(&Some(*c)))).collect();
        RecordPlan { array, layout, columns, time: layout.index_of(TIME) }
    }

    /// Why the row just packed for record `index` cannot be an epoch, if it cannot: its time
    /// orders and keys the epoch, so a NaN (also what a null reads as) or an infinity is refused.
    fn bad_time(&self, row: &[u8], index: usize) -> Option<String> {
        let time = self.layout.read_f64(row, self.time?)?;
        (!time.is_finite()).then(|| format!("{}[{index}].{TIME} is {time}: an epoch needs a finite time", self.array))
    }
}

/// What reading history records noticed in their values.
#[derive(Debug, Default)]
pub struct Noticed {
    /// A value that does not fit its column, or a time that cannot key an epoch (the alert is
    /// then rejected with this reason).
    pub problem: Option<String>,
    /// Columns whose string values were cut to the column width.
    pub truncated: Vec<String>,
}

/// Read an array of history records (through a union; null is an empty history) of type
/// `node`, appending one packed row per record to `out`. Returns how many rows it appended.
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
            let mut total = 0usize;
            loop {
                let count = cursor.array_block(schema.min_size(*items))?;
                if count == 0 {
                    return Ok(total);
                }
                // A count read from the input must not size an allocation on its own.
                out.reserve((count.min(RESERVE_ROWS) + 1) * plan.layout.itemsize());
                for _ in 0..count {
                    if !bound.admit() {
                        cursor.skip(schema, *items)?;
                        continue;
                    }
                    cursor.spend()?;
                    let start = out.len();
                    if read_record(cursor, schema, *items, plan, out, noticed)? {
                        if let Some(reason) = plan.bad_time(&out[start..], total) {
                            noticed.problem.get_or_insert(reason);
                        }
                        total += 1;
                    }
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
    let fields = match schema.node(node) {
        Node::Union(branches) => {
            let branch = cursor.branch(branches.len())?;
            return read_record(cursor, schema, branches[branch], plan, out, noticed);
        }
        Node::Record { fields, .. } if fields.len() == plan.columns.len() => fields,
        _ => {
            cursor.skip(schema, node)?;
            return Ok(false);
        }
    };
    let start = out.len();
    out.extend_from_slice(plan.layout.missing_row());
    for (field, column) in fields.iter().zip(&plan.columns) {
        match column {
            Some(column) => {
                let value = scalar(cursor, schema, field.node)?;
                pack(plan.layout, &mut out[start..], *column, value, noticed);
            }
            None => cursor.skip(schema, field.node)?,
        }
    }
    Ok(true)
}

/// Put `value` into `column` of `row`, noting a cut or a misfit.
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

/// Byte copies that turn a catalog row into the epochs row of the alert's own diaSource: every
/// epochs column the catalog also has, under the same name and dtype.
#[derive(Debug)]
pub struct SourceCopy {
    spans: Vec<(usize, usize, usize)>,
}

impl SourceCopy {
    /// The copies from `catalog` rows to `epochs` rows.
    #[must_use]
    pub fn new(catalog: &Layout, epochs: &Layout) -> Self {
        let spans = epochs
            .columns()
            .iter()
            .filter(|column| column.name != CARRIER_ID && column.name != CARRIER_TIME)
            .filter_map(|column| {
                let from = &catalog.columns()[catalog.index_of(&column.name)?];
                (from.dtype == column.dtype).then_some((from.offset, column.offset, from.dtype.size()))
            })
            .collect();
        SourceCopy { spans }
    }

    /// Append the alert's own epochs row, built from its catalog `row`, to `out`.
    pub fn append(&self, row: &[u8], epochs: &Layout, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(epochs.missing_row());
        let target = &mut out[start..];
        for &(from, to, size) in &self.spans {
            target[to..to + size].copy_from_slice(&row[from..from + size]);
        }
    }
}

/// Fill the carrier columns of every row of `rows` (in `layout`): the alert that carried them.
pub fn carried_by(rows: &mut [u8], layout: &Layout, id: i64, time: f64) {
    let (Some(c), Some(t)) = (layout.index_of(CARRIER_ID), layout.index_of(CARRIER_TIME)) else { return };
    for each in rows.chunks_exact_mut(layout.itemsize()) {
        let _ = layout.pack(each, c, Scalar::Int(id));
        let _ = layout.pack(each, t, Scalar::F64(time));
    }
}
