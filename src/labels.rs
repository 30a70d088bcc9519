//! Class labels from a classifier CSV (ALeRCE's: `oid` plus `predicted_class` or `classALeRCE`),
//! joined on objectId: reading the CSV as a stream, the class → code table, and the mapping of
//! many classes onto a few (`--classes QSO,YSO,AGN --other Otro`).
//!
//! The code table depends only on the CSV and the mapping options — never on which objects a
//! store holds — so labels given at build time and a later relabel of the same store agree.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::table::{Layout, Scalar};

/// Column names tried, in order, when `--class-column` is not given.
pub const CLASS_COLUMNS: [&str; 2] = ["predicted_class", "classALeRCE"];
/// `label_code` of an alert whose object is not in the CSV.
pub const UNLABELED_CODE: i16 = -1;
/// Name of the bucket for the classes not kept by `--classes`, when `--other` does not name one.
pub const DEFAULT_OTHER: &str = "other";

/// How to read and map a labels CSV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelOptions {
    /// The CSV file.
    pub csv: PathBuf,
    /// Column holding the ZTF objectId.
    pub id_column: String,
    /// Column holding the class (None: auto-detect one of [`CLASS_COLUMNS`]).
    pub class_column: Option<String>,
    /// Classes kept by name, in code order (None: keep every class name).
    pub classes: Option<Vec<String>>,
    /// Name of the bucket every other class goes to (with `classes`).
    pub other: String,
}

/// Why a labels CSV cannot be used.
#[derive(Debug, Error)]
pub enum LabelError {
    /// The file cannot be read.
    #[error("cannot read labels `{path}`: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A malformed CSV row.
    #[error("labels `{path}` line {line}: {reason}")]
    Row { path: PathBuf, line: u64, reason: String },
    /// A needed column is missing.
    #[error("labels `{path}` has no column {wanted} (columns: {found}); name its column with {option}")]
    Column { path: PathBuf, wanted: String, found: String, option: &'static str },
    /// A header line with tabs and no commas: a TSV file given as labels.
    #[error(
        "labels `{path}` looks tab-separated (its header line has tabs and no commas): labels must be CSV, with commas between columns"
    )]
    TabSeparated { path: PathBuf },
    /// Not even a header line.
    #[error("labels `{path}` is empty: expected a header line with the id column (--id-column, default oid) and the class column (--class-column), then one row per object")]
    Empty { path: PathBuf },
    /// A header line and nothing else.
    #[error("labels `{path}` has a header line but no rows: there is no object to label")]
    NoRows { path: PathBuf },
    /// One object with two different classes.
    #[error("labels `{path}` line {line}: object {object} is `{class}` here but `{earlier}` on an earlier line")]
    Conflict { path: PathBuf, line: u64, object: String, class: String, earlier: String },
    /// `--classes` lists a class that no row of the CSV has (a typo would otherwise put every
    /// object in the other bucket).
    #[error("labels `{path}`: --classes lists {missing}, which no row of its `{column}` column has; its classes are {present}{hint}")]
    UnknownClasses { path: PathBuf, column: String, missing: String, present: String, hint: String },
    /// Too many classes for a 16-bit code.
    #[error("labels `{path}` has more than 32767 classes")]
    TooManyClasses { path: PathBuf },
}

/// Labels ready to apply: objectId → code, and code → name.
#[derive(Debug, Clone)]
pub struct Labels {
    /// objectId → index into the CSV's distinct class names (a small integer, not a string per
    /// object: the unlabeled set has ~870,000 objects).
    by_object: HashMap<Box<str>, u32>,
    /// Code of each of the CSV's distinct class names.
    code_of_class: Vec<i16>,
    names: Vec<String>,
    /// Catalog columns (object id, label, label_code), looked up once rather than per row.
    columns: Option<(usize, usize, usize)>,
    /// What the store records about where the labels came from.
    pub provenance: Value,
    /// The catalog column the labels join on.
    object_column: String,
}

impl Labels {
    /// Read and map a labels CSV, streaming it row by row, for catalog rows of `catalog` whose
    /// object id is in `object_column`.
    ///
    /// # Errors
    /// Unreadable file, malformed row (named by line), missing column, or an object with two classes.
    pub fn load(options: &LabelOptions, catalog: &Layout, object_column: &str) -> Result<Labels, LabelError> {
        let path = &options.csv;
        let file = File::open(path).map_err(|source| LabelError::Io { path: path.clone(), source })?;
        let mut hashing = HashingReader { inner: BufReader::with_capacity(1 << 20, file), hasher: Sha256::new() };
        let csv = read_classes(path, options, &mut hashing)?;
        let sha256 = format!("{:x}", hashing.hasher.finalize());
        if let Some(kept) = &options.classes {
            refuse_unknown_classes(path, kept, &csv)?;
        }
        let names = code_names(options, csv.class_names.iter());
        if names.len() > usize::try_from(i16::MAX).unwrap_or(usize::MAX) {
            return Err(LabelError::TooManyClasses { path: path.clone() });
        }
        let code_of: HashMap<&str, i16> =
            names.iter().enumerate().map(|(i, n)| (n.as_str(), i16::try_from(i).unwrap_or(i16::MAX))).collect();
        let other_code = code_of.get(options.other.as_str()).copied();
        let code_of_class =
            csv.class_names.iter().map(|class| code_of.get(class.as_str()).copied().or(other_code).unwrap_or(UNLABELED_CODE)).collect();
        let provenance = json!({
            "csv": path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            "sha256": sha256,
            "id_column": options.id_column,
            "class_column": csv.class_column,
            "classes": names.iter().enumerate().map(|(i, n)| (i.to_string(), Value::String(n.clone()))).collect::<serde_json::Map<_, _>>(),
            "mapping": match &options.classes {
                Some(kept) => json!({"kept": kept, "other": options.other}),
                None => json!("original class names"),
            },
            "objects_in_csv": csv.by_object.len(),
            "unlabeled": {"label": "", "label_code": UNLABELED_CODE},
        });
        let columns = match (catalog.index_of(object_column), catalog.index_of("label"), catalog.index_of("label_code")) {
            (Some(object), Some(label), Some(code)) => Some((object, label, code)),
            _ => None,
        };
        Ok(Labels { by_object: csv.by_object, code_of_class, names, columns, provenance, object_column: object_column.to_string() })
    }

    /// The (label, code) of an object; `("", -1)` when the CSV does not have it.
    #[must_use]
    pub fn lookup(&self, object_id: &str) -> (&str, i16) {
        let code = self.by_object.get(object_id).map_or(UNLABELED_CODE, |class| self.code_of_class[*class as usize]);
        match usize::try_from(code) {
            Ok(index) => (self.names.get(index).map_or("", String::as_str), code),
            Err(_) => ("", UNLABELED_CODE),
        }
    }

    /// Set the `label` and `label_code` columns of a packed catalog row from its `objectId`.
    /// Returns whether the object was found.
    pub fn apply(&self, layout: &Layout, row: &mut [u8]) -> bool {
        let Some((object, label, code)) = self.columns else { return false };
        let object_id = layout.read_id(row, object).unwrap_or_default();
        let (name, value) = self.lookup(&object_id);
        // Class names longer than the column are cut; the code stays exact.
        let _ = layout.pack(row, label, Scalar::Str(name.as_bytes()));
        let _ = layout.pack(row, code, Scalar::Int(i64::from(value)));
        value != UNLABELED_CODE
    }

    /// The catalog column the labels join on (`objectId`, `diaObjectId`).
    #[must_use]
    pub fn object_column(&self) -> &str {
        &self.object_column
    }

    /// Class names in code order.
    #[must_use]
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// Refuse a labels CSV that cannot be opened, with the error [`Labels::load`] would give.
///
/// # Errors
/// The file cannot be opened.
pub fn check_readable(path: &Path) -> Result<(), LabelError> {
    File::open(path).map(drop).map_err(|source| LabelError::Io { path: path.to_path_buf(), source })
}

/// Classes of the CSV a refusal names at most (ALeRCE's classifiers have 15 to 20).
const SHOWN_CLASSES: usize = 40;

/// Refuse a kept class that no row of the CSV has, naming the CSV's classes with their object
/// counts and, for a name that differs from one of them only in case, that one.
fn refuse_unknown_classes(path: &Path, kept: &[String], csv: &CsvClasses) -> Result<(), LabelError> {
    let missing: Vec<&String> = kept.iter().filter(|k| !csv.class_names.contains(k)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut objects = vec![0_usize; csv.class_names.len()];
    for class in csv.by_object.values() {
        objects[*class as usize] += 1;
    }
    let mut present: Vec<(&String, usize)> = csv.class_names.iter().zip(objects).collect();
    present.sort();
    let mut listed: Vec<String> = present
        .iter()
        .take(SHOWN_CLASSES)
        .map(|(name, n)| format!("{name} ({n} {})", if *n == 1 { "object" } else { "objects" }))
        .collect();
    if present.len() > SHOWN_CLASSES {
        listed.push(format!("and {} more", present.len() - SHOWN_CLASSES));
    }
    let close: Vec<String> = missing
        .iter()
        .filter_map(|m| csv.class_names.iter().find(|c| c.to_lowercase() == m.to_lowercase()).map(|c| format!("`{c}` for `{m}`")))
        .collect();
    let hint = if close.is_empty() {
        String::new()
    } else {
        format!("; class names are matched exactly, case included: did you mean {}?", close.join(", "))
    };
    Err(LabelError::UnknownClasses {
        path: path.to_path_buf(),
        column: csv.class_column.clone(),
        missing: missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "),
        present: listed.join(", "),
        hint,
    })
}

/// Class names in code order: the kept classes then the other bucket, or every class name sorted.
fn code_names<'a>(options: &LabelOptions, classes: impl Iterator<Item = &'a String>) -> Vec<String> {
    match &options.classes {
        Some(kept) => {
            let mut names = kept.clone();
            if !names.contains(&options.other) {
                names.push(options.other.clone());
            }
            names
        }
        None => classes.collect::<BTreeSet<_>>().into_iter().cloned().collect(),
    }
}

/// What a labels CSV says: each object's class (as an index into the distinct class names).
struct CsvClasses {
    by_object: HashMap<Box<str>, u32>,
    class_names: Vec<String>,
    class_column: String,
}

fn read_classes(path: &Path, options: &LabelOptions, input: &mut impl Read) -> Result<CsvClasses, LabelError> {
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(input);
    let row_error = |e: csv::Error| csv_error(path, e);
    let headers = reader.headers().map_err(row_error)?.clone();
    if headers.iter().all(|h| h.trim().is_empty()) {
        return Err(LabelError::Empty { path: path.to_path_buf() });
    }
    if headers.len() == 1 && headers[0].contains('\t') {
        return Err(LabelError::TabSeparated { path: path.to_path_buf() });
    }
    let found = || headers.iter().collect::<Vec<_>>().join(", ");
    let position = |name: &str| headers.iter().position(|h| h == name);
    let id = position(&options.id_column).ok_or_else(|| LabelError::Column {
        path: path.to_path_buf(),
        wanted: format!("`{}`", options.id_column),
        found: found(),
        option: "--id-column",
    })?;
    let (class, class_name) = match &options.class_column {
        Some(name) => (position(name), name.clone()),
        None => CLASS_COLUMNS.iter().find_map(|n| position(n).map(|p| (Some(p), (*n).to_string()))).unwrap_or((None, String::new())),
    };
    let wanted = options.class_column.clone().map_or_else(|| CLASS_COLUMNS.map(|c| format!("`{c}`")).join(" or "), |c| format!("`{c}`"));
    let class = class.ok_or_else(|| LabelError::Column { path: path.to_path_buf(), wanted, found: found(), option: "--class-column" })?;
    let mut by_object: HashMap<Box<str>, u32> = HashMap::new();
    let mut class_names: Vec<String> = Vec::new();
    let mut class_index: HashMap<String, u32> = HashMap::new();
    let mut record = csv::StringRecord::new();
    while reader.read_record(&mut record).map_err(row_error)? {
        let line = record.position().map_or(0, csv::Position::line);
        let (Some(object), Some(label)) = (record.get(id), record.get(class)) else { continue };
        let (object, label) = (object.trim(), label.trim());
        if object.is_empty() {
            return Err(LabelError::Row { path: path.to_path_buf(), line, reason: format!("empty `{}`", options.id_column) });
        }
        if label.is_empty() {
            continue; // no class given: the object stays unlabeled (code -1), never a class ""
        }
        if let Some(reason) = bad_class_name(label) {
            return Err(LabelError::Row { path: path.to_path_buf(), line, reason });
        }
        let class_id = match class_index.get(label) {
            Some(id) => *id,
            None => {
                let id = u32::try_from(class_names.len()).map_err(|_| LabelError::TooManyClasses { path: path.to_path_buf() })?;
                class_names.push(label.to_string());
                class_index.insert(label.to_string(), id);
                id
            }
        };
        match by_object.get(object) {
            Some(earlier) if *earlier != class_id => {
                return Err(LabelError::Conflict {
                    path: path.to_path_buf(),
                    line,
                    object: object.into(),
                    class: label.into(),
                    earlier: class_names[*earlier as usize].clone(),
                })
            }
            Some(_) => {}
            None => {
                by_object.insert(object.into(), class_id);
            }
        }
    }
    if by_object.is_empty() {
        return Err(LabelError::NoRows { path: path.to_path_buf() });
    }
    Ok(CsvClasses { by_object, class_names, class_column: class_name })
}

/// Characters a class name may have at most: ALeRCE's are under 20, and every name is stored in
/// the store's attrs (and in `.zmetadata`), so a runaway cell must not become one.
pub const MAX_CLASS_NAME: usize = 256;

/// Why `name` cannot be a class name, if it cannot: a NUL (names are compared as stored, and a
/// reader cuts at the NUL, so `QSO\0x` would read as `QSO`), or more than [`MAX_CLASS_NAME`]
/// characters.
fn bad_class_name(name: &str) -> Option<String> {
    if name.contains('\0') {
        return Some(format!("class `{}` holds a NUL character", name.replace('\0', "\\0")));
    }
    let chars = name.chars().count();
    (chars > MAX_CLASS_NAME).then(|| {
        let start: String = name.chars().take(40).collect();
        format!("class `{start}…` is {chars} characters long, more than the {MAX_CLASS_NAME} a class name may have")
    })
}

/// A CSV reader error in our words: a read failure names the file (no line: nothing was parsed),
/// a malformed row its line and what is wrong, without the csv crate's own position text.
fn csv_error(path: &Path, error: csv::Error) -> LabelError {
    let path = path.to_path_buf();
    let line = error.position().map_or(0, csv::Position::line);
    let text = error.to_string();
    match error.into_kind() {
        csv::ErrorKind::Io(source) => LabelError::Io { path, source },
        csv::ErrorKind::UnequalLengths { expected_len, len, pos } => LabelError::Row {
            path,
            line: pos.map_or(line, |p| p.line()),
            reason: format!("{len} fields where the lines before have {expected_len}"),
        },
        csv::ErrorKind::Utf8 { pos, err } => {
            LabelError::Row { path, line: pos.map_or(line, |p| p.line()), reason: format!("field {} is not UTF-8 text", err.field() + 1) }
        }
        _ => LabelError::Row { path, line, reason: text },
    }
}

/// Hashes what passes through it, so the checksum costs no second read of a large CSV.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The catalog columns labels are written into.
    fn catalog() -> Layout {
        Layout::parse("objectId\t<U12\t\tx\td\nlabel\t<U32\t\tx\td\nlabel_code\t<i2\t-1\tx\td\n").unwrap()
    }

    fn options(csv: &Path, classes: Option<&[&str]>) -> LabelOptions {
        LabelOptions {
            csv: csv.to_path_buf(),
            id_column: "oid".into(),
            class_column: None,
            classes: classes.map(|c| c.iter().map(|s| (*s).to_string()).collect()),
            other: "Otro".into(),
        }
    }

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("labels.csv");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn both_column_conventions_and_class_mapping() {
        let (_d, path) = write("oid,predicted_class,prob\nZTF1,QSO,0.9\nZTF2,SNIa,0.8\nZTF3,YSO,0.7\n");
        let labels = Labels::load(&options(&path, None), &catalog(), "objectId").unwrap();
        assert_eq!(labels.names(), ["QSO", "SNIa", "YSO"]);
        assert_eq!(labels.lookup("ZTF2"), ("SNIa", 1));
        assert_eq!(labels.lookup("ZTF9"), ("", -1));
        let labels = Labels::load(&options(&path, Some(&["YSO", "QSO"])), &catalog(), "objectId").unwrap();
        assert_eq!(labels.names(), ["YSO", "QSO", "Otro"]);
        assert_eq!(labels.lookup("ZTF2"), ("Otro", 2));
        assert_eq!(labels.lookup("ZTF1"), ("QSO", 1));
        let (_d, path) = write("classALeRCE,oid\nAGN,ZTF7\n");
        assert_eq!(Labels::load(&options(&path, None), &catalog(), "objectId").unwrap().lookup("ZTF7"), ("AGN", 0));
    }

    #[test]
    fn a_kept_class_the_csv_lacks_is_refused_with_its_classes_and_a_case_match() {
        let (_d, path) = write("oid,predicted_class\nZTF1,QSO\nZTF2,YSO\nZTF3,YSO\nZTF3,YSO\n");
        let err = Labels::load(&options(&path, Some(&["qso", "YSO", "AGN"])), &catalog(), "objectId").unwrap_err().to_string();
        assert!(err.contains("--classes lists `qso`, `AGN`, which no row of its `predicted_class` column has"), "{err}");
        assert!(err.contains("its classes are QSO (1 object), YSO (2 objects)"), "one object on two rows counts once: {err}");
        assert!(err.contains("did you mean `QSO` for `qso`?"), "{err}");
        let err = Labels::load(&options(&path, Some(&["AGN"])), &catalog(), "objectId").unwrap_err().to_string();
        assert!(!err.contains("did you mean"), "{err}");
        assert!(Labels::load(&options(&path, Some(&["YSO"])), &catalog(), "objectId").is_ok());
    }

    #[test]
    fn an_empty_class_is_unlabeled_and_nul_or_runaway_names_are_refused_by_line() {
        let (_d, path) = write("oid,predicted_class\nZTF1,QSO\nZTF2,\nZTF3,  \n");
        let labels = Labels::load(&options(&path, None), &catalog(), "objectId").unwrap();
        assert_eq!(labels.names(), ["QSO"], "no class \"\"");
        assert_eq!((labels.lookup("ZTF2"), labels.lookup("ZTF3")), (("", -1), ("", -1)));
        let (_d, path) = write("oid,predicted_class\nZTF1,QSO\nZTF2,QSO\0x\n");
        let err = Labels::load(&options(&path, None), &catalog(), "objectId").unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("NUL"), "{err}");
        let (_d, path) = write(&format!("oid,predicted_class\nZTF1,{}\n", "A".repeat(MAX_CLASS_NAME + 1)));
        let err = Labels::load(&options(&path, None), &catalog(), "objectId").unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("257 characters long"), "{err}");
        let (_d, path) = write(&format!("oid,predicted_class\nZTF1,{}\n", "A".repeat(MAX_CLASS_NAME)));
        assert!(Labels::load(&options(&path, None), &catalog(), "objectId").is_ok());
    }

    #[test]
    fn bad_csvs_name_the_line_or_column() {
        let (_d, path) = write("oid,predicted_class\nZTF1,QSO\nZTF2,QSO,extra\n");
        let err = Labels::load(&options(&path, None), &catalog(), "objectId").unwrap_err().to_string();
        assert!(err.contains("line 3: 3 fields where the lines before have 2"), "{err}");
        let err = Labels::load(&options(_d.path(), None), &catalog(), "objectId").unwrap_err().to_string();
        assert!(err.starts_with("cannot read labels") && !err.contains("line"), "a folder is unreadable, not a bad line: {err}");
        let (_d, path) = write("id,class\nZTF1,QSO\n");
        let err = Labels::load(&options(&path, None), &catalog(), "objectId").unwrap_err().to_string();
        assert!(err.contains("`oid`") && err.contains("columns: id, class"), "{err}");
        let (_d, path) = write("oid,label\nZTF1,QSO\n");
        let err = Labels::load(&options(&path, None), &catalog(), "objectId").unwrap_err().to_string();
        assert!(err.contains("`predicted_class` or `classALeRCE`"), "{err}");
        let (_d, path) = write("id,predicted_class\nZTF1,QSO\n");
        let err = Labels::load(&options(&path, None), &catalog(), "objectId").unwrap_err().to_string();
        assert!(err.contains("--id-column") && !err.contains("--class-column"), "{err}");
        let (_d, path) = write("oid,label\nZTF1,QSO\n");
        let err = Labels::load(&options(&path, None), &catalog(), "objectId").unwrap_err().to_string();
        assert!(err.contains("--class-column") && err.contains("columns: oid, label"), "{err}");
        let (_d, path) = write("");
        assert!(matches!(Labels::load(&options(&path, None), &catalog(), "objectId"), Err(LabelError::Empty { .. })));
        let (_d, path) = write("oid,predicted_class\n");
        assert!(matches!(Labels::load(&options(&path, None), &catalog(), "objectId"), Err(LabelError::NoRows { .. })));
        let (_d, path) = write("oid,predicted_class\nZTF1,QSO\nZTF1,AGN\n");
        let err = Labels::load(&options(&path, None), &catalog(), "objectId").unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("ZTF1"), "{err}");
    }
}
