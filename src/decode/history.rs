//! An alert's history as rows of the light-curve tables: each `prv_candidates` entry becomes a
//! row of `lightcurves/epochs` (a detection if it has a candid, else an upper limit), the alert's
//! own `candidate` one more detection row, and each `fp_hists` entry a row of
//! `lightcurves/forced`. Rows are packed here exactly as the tables store them; which of them
//! are new to the store is decided later, in row order (`lightcurves.rs`).

use super::avro::{AvroError, Cursor, Field, Node, Schema};
use super::scalar;
use crate::catalog::{Dtype, Layout, Packed, Scalar};

/// `kind` of a row with a candid.
pub const DETECTION: &str = "detection";
/// `kind` of a row without one.
pub const UPPER_LIMIT: &str = "upper_limit";

/// The packed history rows of one alert.
#[derive(Debug, Default, Clone)]
pub struct History {
    /// The alert's own jd (its candidate's), which orders alerts for forced photometry.
    pub jd: f64,
    /// Rows of `lightcurves/epochs`: the prv_candidates, then the candidate itself.
    pub epochs: Vec<u8>,
    /// Rows of `lightcurves/forced`: the fp_hists.
    pub forced: Vec<u8>,
}

/// How the fields of one history record (a prv_candidate or an fp_hist) map to a table.
#[derive(Debug, Clone)]
pub struct RecordPlan {
    layout: &'static Layout,
    /// Column of the table per field of the record (None: not stored).
    columns: Vec<Option<usize>>,
    /// Whether each row's `kind` says if it has a candid (epochs) or not (forced has no kind).
    kinds: bool,
}

impl RecordPlan {
    /// The plan for records with `fields` stored in `layout` (by field name).
    #[must_use]
    pub fn new(fields: &[Field], layout: &'static Layout) -> Self {
        let kinds = layout.index_of("kind").is_some();
        RecordPlan { layout, columns: fields.iter().map(|f| layout.index_of(&f.name)).collect(), kinds }
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
        out.extend_from_slice(&epochs.new_row());
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
    /// A value that does not fit its column (the alert is then rejected with this reason).
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
) -> Result<usize, AvroError> {
    match schema.node(node) {
        Node::Union(branches) => {
            let branch = cursor.branch(branches.len())?;
            read_records(cursor, schema, branches[branch], plan, out, noticed)
        }
        Node::Array(items) => {
            let min_item = schema.min_size(*items);
            let mut total = 0usize;
            loop {
                let count = cursor.array_block(min_item)?;
                if count == 0 {
                    return Ok(total);
                }
                for _ in 0..count {
                    cursor.spend()?;
                    if read_record(cursor, schema, *items, plan, out, noticed)? {
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
    let layout = plan.layout;
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
    out.extend_from_slice(&layout.new_row());
    let mut has_candid = false;
    for (field, column) in fields.iter().zip(&plan.columns) {
        let Some(column) = *column else {
            cursor.skip(schema, field.node)?;
            continue;
        };
        let value = scalar(cursor, schema, field.node)?;
        if field.name == "candid" {
            has_candid = matches!(value, Scalar::Int(_));
        }
        match layout.pack(&mut out[start..], column, value) {
            Ok(Packed::Exact) => {}
            Ok(Packed::Truncated) => {
                let name = &layout.columns()[column].name;
                if !noticed.truncated.contains(name) {
                    noticed.truncated.push(name.clone());
                }
            }
            Err(error) => {
                noticed.problem.get_or_insert_with(|| error.to_string());
            }
        }
    }
    if plan.kinds {
        if let Some(kind) = layout.index_of("kind") {
            let text = if has_candid { DETECTION } else { UPPER_LIMIT };
            let _ = layout.pack(&mut out[start..], kind, Scalar::Str(text.as_bytes()));
        }
    }
    Ok(true)
}
