//! The column model of the store's tables, survey-free: a table's columns (parsed from a column
//! table: name, numpy dtype, missing value, source, description), packing values into one row's
//! bytes in numpy's packed little-endian layout, and what a survey's store holds (`tables.rs`).
//! A survey declares its own tables (ZTF: `schemas/*.tsv`, through `survey/ztf/tables.rs`).

use std::collections::HashMap;
use std::sync::OnceLock;

use thiserror::Error;

pub mod tables;

pub use tables::{KeyColumns, Rows, StampsDeclared, TableGroup, TableRole, Tables, TimeScale};

/// A numpy dtype that a catalog column can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// `<f4`
    F4,
    /// `<f8`
    F8,
    /// `<i2`
    I2,
    /// `<i4`
    I4,
    /// `<i8`
    I8,
    /// `|u1`
    U1,
    /// `<U{n}`: n UTF-32LE code points, zero-padded.
    Unicode(usize),
}

impl Dtype {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "<f4" => Self::F4,
            "<f8" => Self::F8,
            "<i2" => Self::I2,
            "<i4" => Self::I4,
            "<i8" => Self::I8,
            "|u1" => Self::U1,
            _ => Self::Unicode(text.strip_prefix("<U")?.parse().ok().filter(|n| *n > 0)?),
        })
    }

    /// Bytes one value takes in a packed row.
    #[must_use]
    pub fn size(self) -> usize {
        match self {
            Self::I2 => 2,
            Self::F4 | Self::I4 => 4,
            Self::F8 | Self::I8 => 8,
            Self::U1 => 1,
            Self::Unicode(chars) => 4 * chars,
        }
    }

    /// The numpy spelling, as written into `.zarray`.
    #[must_use]
    pub fn numpy(self) -> String {
        match self {
            Self::F4 => "<f4".into(),
            Self::F8 => "<f8".into(),
            Self::I2 => "<i2".into(),
            Self::I4 => "<i4".into(),
            Self::I8 => "<i8".into(),
            Self::U1 => "|u1".into(),
            Self::Unicode(chars) => format!("<U{chars}"),
        }
    }
}

/// One column of the catalog.
#[derive(Debug, Clone)]
pub struct Column {
    /// Field name in the structured dtype.
    pub name: String,
    /// numpy dtype.
    pub dtype: Dtype,
    /// Byte offset of the field inside a row.
    pub offset: usize,
    /// The missing value as written in the table (`NaN`, an integer, or empty for strings).
    pub missing: String,
    /// Where the value comes from (`alert.candid`, `candidate.jd`, `derived`).
    pub source: String,
    /// Description, used for `catalog/.zattrs` unless the writer schema has a `doc`.
    pub description: String,
}

/// A value decoded from an alert, before conversion to its column's dtype.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar<'a> {
    /// Avro null: the column keeps its missing value.
    Null,
    /// Avro boolean.
    Bool(bool),
    /// Avro int or long.
    Int(i64),
    /// Avro float.
    F32(f32),
    /// Avro double.
    F64(f64),
    /// Avro string (raw UTF-8 bytes).
    Str(&'a [u8]),
}

/// Why a value could not be put into its column.
#[derive(Debug, Error, PartialEq)]
pub enum PackError {
    /// The value's kind cannot be converted to the column's dtype.
    #[error("column `{column}` ({dtype}) cannot hold {value}")]
    Incompatible { column: String, dtype: String, value: String },
}

/// What packing a value noticed without failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packed {
    /// Stored exactly.
    Exact,
    /// A string longer than the column's width; its first characters were kept.
    Truncated,
}

/// A table's row layout: columns in order, with offsets, and a row of missing values.
#[derive(Debug)]
pub struct Layout {
    columns: Vec<Column>,
    by_name: HashMap<String, usize>,
    itemsize: usize,
    missing_row: Vec<u8>,
}

/// Why a column table (`schemas/*.tsv`) could not be read.
#[derive(Debug, Error)]
#[error("column table line {line}: {reason}")]
pub struct TableError {
    line: usize,
    reason: String,
}

impl Layout {
    /// A column table compiled into this binary (`name` says which), parsed once into `cell`.
    ///
    /// # Panics
    /// If the table is not valid: never in a released binary, as every built-in table is checked
    /// by the unit tests.
    pub fn parsed_once(cell: &'static OnceLock<Layout>, table: &str, name: &str) -> &'static Layout {
        cell.get_or_init(|| Layout::parse(table).unwrap_or_else(|error| panic!("{name} is valid (checked by tests): {error}")))
    }

    /// A fresh row holding `values` in the columns they name (a name the layout lacks, or a value
    /// its column cannot hold, leaves the missing value: for rows this tool derives itself).
    #[must_use]
    pub fn row_of(&self, values: &[(&str, Scalar<'_>)]) -> Vec<u8> {
        let mut row = self.new_row();
        for (name, value) in values {
            if let Some(column) = self.index_of(name) {
                let _ = self.pack(&mut row, column, *value);
            }
        }
        row
    }

    /// The numpy structured dtype of a row, as `.zarray` writes it.
    #[must_use]
    pub fn zarr_dtype(&self) -> serde_json::Value {
        serde_json::Value::Array(self.columns.iter().map(|c| serde_json::json!([c.name, c.dtype.numpy()])).collect())
    }

    /// The column named `name`.
    ///
    /// # Panics
    /// If there is none: only called for columns the built-in tables have (checked by tests).
    #[must_use]
    pub fn column(&self, name: &str) -> &Column {
        self.index_of(name).map(|i| &self.columns[i]).unwrap_or_else(|| panic!("no `{name}` column"))
    }

    /// Parse a column table (tab-separated: name, dtype, missing, source, description).
    ///
    /// # Errors
    /// A malformed line, an unknown dtype, a bad missing value or a repeated name.
    pub fn parse(table: &str) -> Result<Layout, TableError> {
        let mut columns = Vec::new();
        let mut by_name = HashMap::new();
        let mut offset = 0;
        for (index, line) in table.lines().enumerate() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let fail = |reason: String| TableError { line: index + 1, reason };
            let cells: Vec<&str> = line.split('\t').collect();
            let [name, dtype, missing, source, description] = cells[..] else {
                return Err(fail(format!("expected 5 tab-separated cells, got {}", cells.len())));
            };
            let dtype = Dtype::parse(dtype).ok_or_else(|| fail(format!("unknown dtype `{dtype}`")))?;
            if by_name.insert(name.to_string(), columns.len()).is_some() {
                return Err(fail(format!("column `{name}` appears twice")));
            }
            let column = Column {
                name: name.into(),
                dtype,
                offset,
                missing: missing.into(),
                source: source.into(),
                description: description.into(),
            };
            offset += dtype.size();
            columns.push(column);
        }
        let mut missing_row = vec![0; offset];
        for column in &columns {
            let bytes = missing_bytes(column).map_err(|reason| TableError { line: 0, reason })?;
            missing_row[column.offset..column.offset + bytes.len()].copy_from_slice(&bytes);
        }
        Ok(Layout { columns, by_name, itemsize: offset, missing_row })
    }

    /// Columns in row order.
    #[must_use]
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Index of the column named `name`.
    #[must_use]
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Bytes in one row.
    #[must_use]
    pub fn itemsize(&self) -> usize {
        self.itemsize
    }

    /// A fresh row holding every column's missing value.
    #[must_use]
    pub fn new_row(&self) -> Vec<u8> {
        self.missing_row.clone()
    }

    /// The row of missing values, to append without allocating one per row.
    #[must_use]
    pub fn missing_row(&self) -> &[u8] {
        &self.missing_row
    }

    /// Put `value` into column `index` of `row`.
    ///
    /// # Errors
    /// The value cannot be represented in the column's dtype (e.g. a string in a float column, or
    /// an integer out of `<i4` range).
    pub fn pack(&self, row: &mut [u8], index: usize, value: Scalar<'_>) -> Result<Packed, PackError> {
        let column = &self.columns[index];
        let cell = &mut row[column.offset..column.offset + column.dtype.size()];
        let incompatible = || PackError::Incompatible { column: column.name.clone(), dtype: column.dtype.numpy(), value: describe(value) };
        match (column.dtype, value) {
            (_, Scalar::Null) => cell.copy_from_slice(&self.missing_row[column.offset..column.offset + cell.len()]),
            (Dtype::F4, Scalar::F32(v)) => cell.copy_from_slice(&v.to_le_bytes()),
            #[allow(clippy::cast_possible_truncation)] // a double in a float column: the table chose f4
            (Dtype::F4, Scalar::F64(v)) => cell.copy_from_slice(&(v as f32).to_le_bytes()),
            #[allow(clippy::cast_precision_loss)]
            (Dtype::F4, Scalar::Int(v)) => cell.copy_from_slice(&(v as f32).to_le_bytes()),
            (Dtype::F8, Scalar::F32(v)) => cell.copy_from_slice(&f64::from(v).to_le_bytes()),
            (Dtype::F8, Scalar::F64(v)) => cell.copy_from_slice(&v.to_le_bytes()),
            #[allow(clippy::cast_precision_loss)]
            (Dtype::F8, Scalar::Int(v)) => cell.copy_from_slice(&(v as f64).to_le_bytes()),
            (Dtype::I2, Scalar::Int(v)) => cell.copy_from_slice(&i16::try_from(v).map_err(|_| incompatible())?.to_le_bytes()),
            (Dtype::I4, Scalar::Int(v)) => cell.copy_from_slice(&i32::try_from(v).map_err(|_| incompatible())?.to_le_bytes()),
            (Dtype::I8, Scalar::Int(v)) => cell.copy_from_slice(&v.to_le_bytes()),
            (Dtype::U1, Scalar::Int(v)) => cell[0] = u8::try_from(v).map_err(|_| incompatible())?,
            (Dtype::I2 | Dtype::I4 | Dtype::I8 | Dtype::U1, Scalar::Bool(v)) => {
                cell.fill(0);
                cell[0] = u8::from(v);
            }
            (Dtype::Unicode(chars), Scalar::Str(bytes)) => {
                let text = std::str::from_utf8(bytes).map_err(|_| incompatible())?;
                return Ok(write_utf32(cell, chars, text));
            }
            _ => return Err(incompatible()),
        }
        Ok(Packed::Exact)
    }

    /// Read column `index` of `row` as an f64 (for float columns such as `jd`).
    #[must_use]
    pub fn read_f64(&self, row: &[u8], index: usize) -> Option<f64> {
        let column = &self.columns[index];
        let cell = &row[column.offset..column.offset + column.dtype.size()];
        match column.dtype {
            Dtype::F8 => Some(f64::from_le_bytes(cell.try_into().ok()?)),
            Dtype::F4 => Some(f64::from(f32::from_le_bytes(cell.try_into().ok()?))),
            _ => None,
        }
    }

    /// Read column `index` of `row` as an i64 (for integer columns such as `candid`).
    #[must_use]
    pub fn read_i64(&self, row: &[u8], index: usize) -> Option<i64> {
        let column = &self.columns[index];
        let cell = &row[column.offset..column.offset + column.dtype.size()];
        match column.dtype {
            Dtype::I8 => Some(i64::from_le_bytes(cell.try_into().ok()?)),
            Dtype::I4 => Some(i64::from(i32::from_le_bytes(cell.try_into().ok()?))),
            Dtype::I2 => Some(i64::from(i16::from_le_bytes(cell.try_into().ok()?))),
            Dtype::U1 => Some(i64::from(cell[0])),
            _ => None,
        }
    }
}

impl Layout {
    /// Read column `index` of `row` as text (for `<U` columns such as `objectId`).
    #[must_use]
    pub fn read_str(&self, row: &[u8], index: usize) -> Option<String> {
        let column = &self.columns[index];
        let Dtype::Unicode(_) = column.dtype else { return None };
        let cell = &row[column.offset..column.offset + column.dtype.size()];
        cell.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).take_while(|c| *c != 0).map(char::from_u32).collect()
    }

    /// An id as text: a string column's value, or an integer column's in decimal (None when
    /// it holds its missing value). Object ids are strings in one survey (ZTF's `objectId`) and
    /// int64 in another (Rubin's `diaObjectId`); labels and splits treat both as text.
    #[must_use]
    pub fn read_id(&self, row: &[u8], index: usize) -> Option<String> {
        let column = &self.columns[index];
        match column.dtype {
            Dtype::Unicode(_) => self.read_str(row, index),
            Dtype::I2 | Dtype::I4 | Dtype::I8 | Dtype::U1 => {
                let value = self.read_i64(row, index)?;
                let missing: Option<i64> = column.missing.parse().ok();
                (Some(value) != missing).then(|| value.to_string())
            }
            Dtype::F4 | Dtype::F8 => None,
        }
    }
}

/// Write `text` as zero-padded UTF-32LE into a `<U{chars}` cell.
fn write_utf32(cell: &mut [u8], chars: usize, text: &str) -> Packed {
    cell.fill(0);
    for (written, ch) in text.chars().enumerate() {
        if written == chars {
            return Packed::Truncated;
        }
        cell[4 * written..4 * written + 4].copy_from_slice(&u32::from(ch).to_le_bytes());
    }
    Packed::Exact
}

fn missing_bytes(column: &Column) -> Result<Vec<u8>, String> {
    let bad = || format!("column `{}`: missing value `{}` does not fit {}", column.name, column.missing, column.dtype.numpy());
    Ok(match column.dtype {
        Dtype::F4 => column.missing.parse::<f32>().map_err(|_| bad())?.to_le_bytes().to_vec(),
        Dtype::F8 => column.missing.parse::<f64>().map_err(|_| bad())?.to_le_bytes().to_vec(),
        Dtype::I2 => column.missing.parse::<i16>().map_err(|_| bad())?.to_le_bytes().to_vec(),
        Dtype::I4 => column.missing.parse::<i32>().map_err(|_| bad())?.to_le_bytes().to_vec(),
        Dtype::I8 => column.missing.parse::<i64>().map_err(|_| bad())?.to_le_bytes().to_vec(),
        Dtype::U1 => vec![column.missing.parse::<u8>().map_err(|_| bad())?],
        Dtype::Unicode(chars) => {
            let mut cell = vec![0; 4 * chars];
            if write_utf32(&mut cell, chars, &column.missing) == Packed::Truncated {
                return Err(bad());
            }
            cell
        }
    })
}

fn describe(value: Scalar<'_>) -> String {
    match value {
        Scalar::Null => "null".into(),
        Scalar::Bool(v) => format!("boolean {v}"),
        Scalar::Int(v) => format!("integer {v}"),
        Scalar::F32(v) => format!("float {v}"),
        Scalar::F64(v) => format!("double {v}"),
        Scalar::Str(v) => format!("string {:?}", String::from_utf8_lossy(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_values_and_reports_truncation() {
        let layout = Layout::parse("a\t<i4\t-1\tx\td\nb\t<U3\t\tx\td\nc\t<f8\tNaN\tx\td\n").unwrap();
        let mut row = layout.new_row();
        assert_eq!(layout.pack(&mut row, 0, Scalar::Int(7)), Ok(Packed::Exact));
        assert_eq!(layout.pack(&mut row, 1, Scalar::Str(b"abcd")), Ok(Packed::Truncated));
        assert_eq!(layout.pack(&mut row, 2, Scalar::F32(1.5)), Ok(Packed::Exact));
        assert_eq!(&row[0..4], &7i32.to_le_bytes());
        assert_eq!(&row[4..16], &[b'a', 0, 0, 0, b'b', 0, 0, 0, b'c', 0, 0, 0]);
        assert_eq!(&row[16..24], &1.5f64.to_le_bytes());
        assert!(layout.pack(&mut row, 0, Scalar::Int(1 << 40)).is_err());
        assert!(layout.pack(&mut row, 2, Scalar::Str(b"x")).is_err());
        layout.pack(&mut row, 0, Scalar::Null).unwrap();
        assert_eq!(&row[0..4], &(-1i32).to_le_bytes());
    }
}
