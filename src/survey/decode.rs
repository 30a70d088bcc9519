//! What both surveys' decoders do alike, on Avro and the catalog's rows: read a scalar value
//! through its unions, pack a value noting what it cut or could not hold, bound a block's or a
//! file's declared record count by its bytes (so a reject always stands for what it says), and
//! keep the distinctive end of a long input name.

use crate::formats::avro::{AvroError, Cursor, Damaged, Frame, Header, Node, Schema};
use crate::survey::{Reject, RejectKind};
use crate::table::{Layout, Packed, Scalar};

/// Decode a value of a scalar type (through unions); a non-scalar is stepped over and read as null.
///
/// # Errors
/// The Avro data is broken or breaks a limit.
pub fn scalar<'a>(cursor: &mut Cursor<'a>, schema: &Schema, node: usize) -> Result<Scalar<'a>, AvroError> {
    Ok(match schema.node(node) {
        Node::Null => Scalar::Null,
        Node::Boolean => Scalar::Bool(cursor.take(1, "a boolean")?[0] != 0),
        Node::Int | Node::Long => Scalar::Int(cursor.long()?),
        Node::Float => Scalar::F32(f32::from_le_bytes(cursor.take(4, "a float")?.try_into().unwrap_or_default())),
        Node::Double => Scalar::F64(f64::from_le_bytes(cursor.take(8, "a double")?.try_into().unwrap_or_default())),
        Node::Bytes | Node::String => Scalar::Str(cursor.bytes()?),
        Node::Enum { .. } => Scalar::Int(cursor.long()?),
        Node::Union(branches) => {
            let branch = cursor.branch(branches.len())?;
            scalar(cursor, schema, branches[branch])?
        }
        Node::Record { .. } | Node::Array(_) | Node::Map(_) | Node::Fixed(_) | Node::Pending => {
            cursor.skip(schema, node)?;
            Scalar::Null
        }
    })
}

/// Pack `value` into `column` of a catalog row: a string cut to the column's width is noted in
/// `truncated`, and the first value the column cannot hold becomes the alert's `problem`.
pub fn pack_noting(
    layout: &Layout,
    row: &mut [u8],
    column: usize,
    value: Scalar<'_>,
    truncated: &mut Vec<String>,
    problem: &mut Option<Reject>,
) {
    match layout.pack(row, column, value) {
        Ok(Packed::Exact) => {}
        Ok(Packed::Truncated) => truncated.push(layout.columns()[column].name.clone()),
        Err(error) => {
            problem.get_or_insert(Reject::new(RejectKind::BadValue, error.to_string()));
        }
    }
}

/// At most `declared` records, and no more than `bytes` of record data can hold when each takes
/// at least `min_record` bytes (a record that takes none counts as one byte): at least 1, so a
/// reject always stands for something.
#[must_use]
pub fn bounded(declared: usize, bytes: usize, min_record: usize) -> usize {
    declared.min(bytes / min_record.max(1)).max(1)
}

/// Records the rest of a container's blocks declare, each block's count bounded by its bytes.
pub fn count_records<'a>(blocks: impl Iterator<Item = Result<Frame<'a>, Damaged>>, header: &Header<'a>, min_record: usize) -> usize {
    blocks
        .map(|block| match block {
            Ok(frame) if frame.count == 0 => 0,
            Ok(frame) => bounded(frame.count, header.capacity(frame.data.len()), min_record),
            Err(damaged) => bounded(damaged.count.unwrap_or(1), header.capacity(damaged.bytes), min_record),
        })
        .fold(0, usize::saturating_add)
}

/// One reject for a whole container whose records cannot be read as alerts, standing for every
/// record its blocks declare.
#[must_use]
pub fn whole_file(header: &Header<'_>, min_record: usize, kind: RejectKind, why: &str) -> Reject {
    let records = count_records(header.blocks(), header, min_record).max(1);
    let (noun, verb) = if records == 1 { ("record", "is") } else { ("records", "are") };
    Reject::new(kind, format!("{why}; the file's {records} {noun} {verb} rejected as a whole")).for_records(records)
}

/// The last `chars` characters of `text` (the distinctive end of a long path).
#[must_use]
pub fn tail_chars(text: &str, chars: usize) -> &str {
    let count = text.chars().count();
    if count <= chars {
        return text;
    }
    let skip = text.char_indices().nth(count - chars).map_or(0, |(i, _)| i);
    &text[skip..]
}
