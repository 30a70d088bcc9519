//! Light curves: which of an alert's history rows are new to the store, in row order. Owns
//! the dedup rules (detections by candid, upper limits by objectId, jd, fid, forced photometry
//! by objectId, jd, fid, pid; a key's row holds one value set some packet carried, a different
//! value set is another row, an identical one adds nothing, and no row is ever rewritten), the
//! object index (`lightcurves/objects`: objectId → row ranges) and the per-alert history
//! (`lightcurves/alerts`: exactly the versions its own packet carried). Rows themselves are
//! packed by `survey/ztf/history.rs`; the committed keys are found through `store/lckeys.rs`.
//!
//! Memory: the build's new keys, one batch of alerts' epochs and one committed key block at a
//! time; never the store's epochs, nor a month of them.

use crate::fasthash::{digest, FastMap, FastSet};
use crate::store::lckeys::{CommittedKeys, Key, KeyKind};
use crate::store::{ReadError, Storage};
use crate::survey::History;
use crate::table::{Dtype, Layout, Scalar, TableGroup, TableRole, Tables};

/// The two tables of epochs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// `lightcurves/epochs`
    Epochs = 0,
    /// `lightcurves/forced`
    Forced = 1,
}

impl Table {
    /// Its name in the object index's `table` column.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Table::Epochs => "epochs",
            Table::Forced => "forced",
        }
    }
}

/// A range of rows of one table belonging to one object.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Range {
    object: [u8; 12],
    table: Table,
    start: u64,
    count: u64,
}

/// Rows each table had when the build started, and new rows since, per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Detection rows.
    pub detections: u64,
    /// Upper-limit rows.
    pub upper_limits: u64,
    /// Forced-photometry rows.
    pub forced: u64,
}

/// What a batch of alerts adds to the light-curve tables, in row order: new rows of each table
/// and the rows each alert carried.
#[derive(Debug, Default)]
pub struct Added {
    /// New rows of `lightcurves/epochs`, packed.
    pub epochs: Vec<u8>,
    /// New rows of `lightcurves/forced`, packed.
    pub forced: Vec<u8>,
    /// The rows of `lightcurves/epochs` the alerts carried (little-endian int64 each).
    pub carried_epochs: Vec<u8>,
    /// The rows of `lightcurves/forced` they carried.
    pub carried_forced: Vec<u8>,
}

impl Added {
    /// Empty every buffer, keeping its room.
    pub fn clear(&mut self) {
        self.epochs.clear();
        self.forced.clear();
        self.carried_epochs.clear();
        self.carried_forced.clear();
    }

    fn table(&mut self, table: Table) -> (&mut Vec<u8>, &mut Vec<u8>) {
        match table {
            Table::Epochs => (&mut self.epochs, &mut self.carried_epochs),
            Table::Forced => (&mut self.forced, &mut self.carried_forced),
        }
    }
}

/// The state of a build's light curves at a point it may have to return to (an archive that
/// fails its checksum takes back what was read from it since its last verified member).
#[derive(Debug, Clone)]
pub struct Mark {
    /// Entries of the batch taken before the point; None when the batch was empty then, or once
    /// it is added (the point is then before every entry taken since).
    pending: Option<usize>,
    pending_rows: [usize; 2],
    next_carried: [u64; 2],
    /// What the batches resolved before the point had added.
    undo: usize,
    new_keys: usize,
    ranges: usize,
    last_range: Option<Range>,
    next_row: [u64; 2],
    counts: Counts,
}

impl Mark {
    /// Entries of the batch taken before the point, while that batch waits: adding it,
    /// [`LightCurves::add_batch`] stops after these so that the point can move to that moment
    /// of the adding ([`LightCurves::mark_added`]). None once moved.
    #[must_use]
    pub fn pending(&self) -> Option<usize> {
        self.pending
    }
}

/// One epoch an alert carried, waiting for its batch to be looked up in the committed keys.
#[derive(Debug, Clone, Copy)]
struct Carried {
    table: Table,
    key: Key,
    /// Where its packed row is in the batch's rows of its table: kept for the first entry of
    /// the batch with a key the build has not stored, the one that adds the row if the store
    /// does not hold the key either.
    row: Option<usize>,
}

/// The light curves of one build.
///
/// Alerts are taken in batches: an alert's epochs wait until [`LightCurves::add_batch`] has
/// looked up the whole batch's keys in the committed key blocks, reading each block of the
/// batch's jd range once (`store/lckeys.rs`); then rows are numbered in the order the alerts
/// carried them, exactly as if each alert had been looked up on its own. Memory: the batch (its
/// caller bounds it by [`LightCurves::batch_bytes`]), one key block, and the build's new keys.
pub struct LightCurves {
    keys: EpochKeys,
    committed: CommittedKeys,
    /// The build's new keys and their rows.
    seen: FastMap<Key, u64>,
    /// Keys of the alert being taken (reused: one allocation per build, not per alert).
    in_packet: FastSet<Key>,
    /// The versions the alert being taken carried, each once: table, key, and where its row
    /// is in the alert's rows of that table.
    carried: Vec<(Table, Key, usize)>,
    /// The batch: every epoch its alerts carried, in order.
    pending: Vec<Carried>,
    /// The batch's packed rows of each table (those with [`Carried::row`]).
    pending_rows: [Vec<u8>; 2],
    /// Keys of the batch whose row is in `pending_rows`.
    pending_new: FastSet<Key>,
    /// The batch's keys the build has not stored, with the committed row of those the store holds.
    found: FastMap<Key, Option<u64>>,
    /// Entries of the batch added so far.
    added: usize,
    /// Keys added to `seen`, in order, to roll back.
    undo: Vec<Key>,
    new_keys: Vec<(Key, u64)>,
    ranges: Vec<Range>,
    /// Next row of each table.
    next_row: [u64; 2],
    /// Next entry of each table's history array (`lightcurves/history_epochs`, `…_forced`).
    next_carried: [u64; 2],
    counts: Counts,
}

impl LightCurves {
    /// The light curves of a build onto `tables`' tables of `committed_rows` (epochs, forced)
    /// and history arrays of `committed_carried` entries, whose keys `committed` finds.
    #[must_use]
    pub fn new(tables: &'static Tables, committed: CommittedKeys, committed_rows: [u64; 2], committed_carried: [u64; 2]) -> Self {
        LightCurves {
            keys: EpochKeys::of(tables),
            committed,
            seen: FastMap::default(),
            in_packet: FastSet::default(),
            carried: Vec::new(),
            pending: Vec::new(),
            pending_rows: [Vec::new(), Vec::new()],
            pending_new: FastSet::default(),
            found: FastMap::default(),
            added: 0,
            undo: Vec::new(),
            new_keys: Vec::new(),
            ranges: Vec::new(),
            next_row: committed_rows,
            next_carried: committed_carried,
            counts: Counts::default(),
        }
    }

    /// Take the history of an alert the store writes; gives its row of `lightcurves/alerts`
    /// (how many epochs it carried is known at once).
    ///
    /// When no batch waits and the store can hold none of its versions (each is the build's
    /// own already, or of a jd no committed key block covers: every epoch of a new store, and
    /// an append's epochs of the night itself), they are added at once, into `now`; else they
    /// join the batch, added by [`LightCurves::add_batch`].
    pub fn take(&mut self, history: &History, now: &mut Added) -> Vec<u8> {
        self.carried.clear();
        let epochs = self.versions_of(Table::Epochs, &history.epochs);
        let forced = self.versions_of(Table::Forced, &history.forced);
        // The range test first: it is a binary search over a few ranges (none for a new store),
        // where `seen` is a hash look-up for every epoch.
        let at_once = self.pending.is_empty()
            && self.carried.iter().all(|(_, key, _)| !self.committed.may_hold(key.jd()) || self.seen.contains_key(key));
        for index in 0..self.carried.len() {
            let (table, key, at) = self.carried[index];
            let rows = match table {
                Table::Epochs => &history.epochs,
                Table::Forced => &history.forced,
            };
            let row = &rows[at..at + self.keys.layout(table).itemsize()];
            if at_once {
                self.add_now(table, key, row, now);
            } else {
                self.queue(table, key, row);
            }
        }
        let row = alert_row(self.keys.tables(), [self.next_carried[0], epochs], [self.next_carried[1], forced]);
        self.next_carried[0] += epochs;
        self.next_carried[1] += forced;
        row
    }

    /// Note the versions one table's rows of an alert carry, each once; gives how many.
    fn versions_of(&mut self, table: Table, rows: &[u8]) -> u64 {
        let itemsize = self.keys.layout(table).itemsize();
        self.in_packet.clear();
        let before = self.carried.len();
        for (index, row) in rows.chunks_exact(itemsize).enumerate() {
            let key = self.keys.key(table, row);
            if self.in_packet.insert(key) {
                self.carried.push((table, key, index * itemsize));
            } // else the same version twice in one packet
        }
        (self.carried.len() - before) as u64
    }

    /// Add one carried version whose row the store cannot hold.
    fn add_now(&mut self, table: Table, key: Key, row: &[u8], now: &mut Added) {
        let number = match self.seen.get(&key) {
            Some(number) => *number,
            None => {
                now.table(table).0.extend_from_slice(row);
                self.append(table, key)
            }
        };
        now.table(table).1.extend_from_slice(&number.to_le_bytes());
    }

    /// Put one carried version into the batch (its row too, if the batch has not got it).
    fn queue(&mut self, table: Table, key: Key, row: &[u8]) {
        let kept = !self.seen.contains_key(&key) && self.pending_new.insert(key);
        let at = kept.then(|| {
            let rows = &mut self.pending_rows[table as usize];
            rows.extend_from_slice(row);
            rows.len() - row.len()
        });
        self.pending.push(Carried { table, key, row: at });
    }

    /// Bytes the batch holds.
    #[must_use]
    pub fn batch_bytes(&self) -> usize {
        self.pending_rows.iter().map(Vec::len).sum::<usize>() + self.pending.len() * std::mem::size_of::<Carried>()
    }

    /// Epochs in the batch.
    #[cfg(test)]
    #[must_use]
    pub fn batch_len(&self) -> usize {
        self.pending.len()
    }

    /// Look the batch's keys up in the committed key blocks (once per batch, before adding it).
    ///
    /// # Errors
    /// A committed key block cannot be read.
    pub fn look_up(&mut self, storage: &dyn Storage) -> Result<(), ReadError> {
        self.found.clear();
        self.found.extend(self.pending_new.iter().map(|key| (*key, None)));
        self.committed.find(storage, &mut self.found)
    }

    /// Add the batch's entries up to `end` (after [`LightCurves::look_up`]): new versions go to
    /// `out`'s rows, and the row of every version carried (new or already stored) to its
    /// carried rows. Adding the last entry ends the batch.
    pub fn add_batch(&mut self, end: usize, out: &mut Added) {
        let end = end.min(self.pending.len());
        for at in self.added..end {
            let entry = self.pending[at];
            let known = self.seen.get(&entry.key).or_else(|| self.found.get(&entry.key).and_then(Option::as_ref));
            let number = match known {
                Some(number) => *number,
                None => {
                    let Some(start) = entry.row else { unreachable!("a key the build and the store lack is first carried with its row") };
                    let table = entry.table as usize;
                    let row_bytes = self.keys.layout(entry.table).itemsize();
                    let (rows, _) = out.table(entry.table);
                    rows.extend_from_slice(&self.pending_rows[table][start..start + row_bytes]);
                    self.append(entry.table, entry.key)
                }
            };
            out.table(entry.table).1.extend_from_slice(&number.to_le_bytes());
        }
        self.added = end;
        if end == self.pending.len() {
            self.pending.clear();
            self.pending_rows.iter_mut().for_each(Vec::clear);
            self.pending_new.clear();
            self.found.clear();
            self.added = 0;
        }
    }

    /// The next row of `table` holds `key`: number it, and index it.
    fn append(&mut self, table: Table, key: Key) -> u64 {
        let number = self.next_row[table as usize];
        self.next_row[table as usize] += 1;
        self.undo.push(key);
        self.seen.insert(key, number);
        self.new_keys.push((key, number));
        match key.kind {
            KeyKind::Detection => self.counts.detections += 1,
            KeyKind::UpperLimit => self.counts.upper_limits += 1,
            KeyKind::Forced => self.counts.forced += 1,
        }
        match self.ranges.last_mut() {
            Some(last) if last.object == key.object && last.table == table && last.start + last.count == number => last.count += 1,
            _ => self.ranges.push(Range { object: key.object, table, start: number, count: 1 }),
        }
        number
    }

    /// Where to come back to.
    #[must_use]
    pub fn mark(&self) -> Mark {
        Mark {
            // An empty batch: whatever is added after the point, at once or in a later batch,
            // is undone by rolling back to the state saved here.
            pending: (!self.pending.is_empty()).then_some(self.pending.len()),
            pending_rows: [self.pending_rows[0].len(), self.pending_rows[1].len()],
            next_carried: self.next_carried,
            undo: self.undo.len(),
            new_keys: self.new_keys.len(),
            ranges: self.ranges.len(),
            last_range: self.ranges.last().cloned(),
            next_row: self.next_row,
            counts: self.counts,
        }
    }

    /// A batch is being added across `mark`, which [`LightCurves::add_batch`] has just reached:
    /// move the mark to this point of the adding, so that rolling back keeps what the entries
    /// before it added and undoes the rest.
    pub fn mark_added(&self, mark: &mut Mark) {
        debug_assert_eq!(Some(self.added), mark.pending, "the batch is added up to the mark");
        *mark = Mark { pending: None, pending_rows: [0, 0], next_carried: mark.next_carried, ..self.mark() };
    }

    /// Undo everything taken since `mark`.
    pub fn roll_back(&mut self, mark: &Mark) {
        for entry in self.pending.drain(mark.pending.unwrap_or(0).min(self.pending.len())..) {
            if entry.row.is_some() {
                self.pending_new.remove(&entry.key);
            }
        }
        for (rows, len) in self.pending_rows.iter_mut().zip(mark.pending_rows) {
            rows.truncate(len);
        }
        self.added = self.added.min(self.pending.len());
        for key in self.undo.drain(mark.undo..) {
            self.seen.remove(&key);
        }
        self.new_keys.truncate(mark.new_keys);
        self.ranges.truncate(mark.ranges);
        if let (Some(last), Some(was)) = (self.ranges.last_mut(), &mark.last_range) {
            *last = was.clone();
        }
        self.next_row = mark.next_row;
        self.next_carried = mark.next_carried;
        self.counts = mark.counts;
    }

    /// Rows of each table after this build.
    #[cfg(test)]
    #[must_use]
    pub fn rows_after(&self) -> [u64; 2] {
        self.next_row
    }

    /// New rows per kind.
    #[must_use]
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// The build's new keys with their rows (for the key index).
    #[must_use]
    pub fn new_keys(&self) -> &[(Key, u64)] {
        &self.new_keys
    }

    /// The build's segment of the object index: its ranges sorted by (objectId, table, start),
    /// adjacent ones merged, as packed rows of `lightcurves/objects`.
    #[must_use]
    pub fn index_rows(&self) -> Vec<Vec<u8>> {
        let mut ranges = self.ranges.clone();
        ranges.sort_by_key(|r| (r.object, r.table, r.start));
        let mut merged: Vec<Range> = Vec::with_capacity(ranges.len());
        for range in ranges {
            match merged.last_mut() {
                Some(last) if last.object == range.object && last.table == range.table && last.start + last.count == range.start => {
                    last.count += range.count;
                }
                _ => merged.push(range),
            }
        }
        let layout = layout_of(self.keys.tables(), TableRole::Objects);
        let object = ObjectCell::of(layout, &layout.columns()[0].name);
        merged.iter().map(|range| index_row(layout, object, range)).collect()
    }
}

fn alert_row(tables: &Tables, epochs: [u64; 2], forced: [u64; 2]) -> Vec<u8> {
    layout_of(tables, TableRole::Alerts).row_of(&[
        ("history_start", count(epochs[0])),
        ("history_count", count(epochs[1])),
        ("forced_start", count(forced[0])),
        ("forced_count", count(forced[1])),
    ])
}

/// A row of the object index, whose first column is the object.
fn index_row(layout: &Layout, cell: ObjectCell, range: &Range) -> Vec<u8> {
    let text = cell.text(&range.object);
    let object = if cell.int { Scalar::Int(cell.int_value(&range.object)) } else { Scalar::Str(text.as_bytes()) };
    layout.row_of(&[
        (layout.columns()[0].name.as_str(), object),
        ("table", Scalar::Str(range.table.name().as_bytes())),
        ("start", count(range.start)),
        ("count", count(range.count)),
    ])
}

/// A row number or count as an integer value.
fn count(n: u64) -> Scalar<'static> {
    Scalar::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

/// How the keys of a survey's two tables of epochs are read from their rows, and how its
/// objects are written back into the object index.
#[derive(Debug)]
pub struct EpochKeys {
    tables: &'static Tables,
    cells: [KeyCells; 2],
}

impl EpochKeys {
    /// The keys of `tables`' epochs and forced photometry.
    ///
    /// # Panics
    /// If the survey's declaration of its key columns does not match its layouts (checked by
    /// each survey's tests).
    #[must_use]
    pub fn of(tables: &'static Tables) -> Self {
        EpochKeys { tables, cells: [KeyCells::of(tables, Table::Epochs), KeyCells::of(tables, Table::Forced)] }
    }

    /// The key of a packed row of `table`.
    #[must_use]
    pub fn key(&self, table: Table, row: &[u8]) -> Key {
        self.cells[table as usize].key(row)
    }

    /// The row layout of `table`.
    #[must_use]
    pub fn layout(&self, table: Table) -> &'static Layout {
        self.cells[table as usize].layout
    }

    /// The survey's store.
    #[must_use]
    pub fn tables(&self) -> &'static Tables {
        self.tables
    }
}

/// The light-curve table with `role`.
///
/// # Panics
/// If the survey declares no such table (every survey declares all four).
#[must_use]
pub fn group_of(tables: &Tables, role: TableRole) -> &TableGroup {
    tables.lightcurves.iter().find(|t| t.role == role).expect("every survey declares the four light-curve tables")
}

/// The layout of the light-curve table with `role`.
#[must_use]
pub fn layout_of(tables: &Tables, role: TableRole) -> &'static Layout {
    group_of(tables, role).layout
}

/// An object id column, in the 12 bytes a key holds: an ASCII string (ZTF's `objectId`, one
/// byte per character, zero-padded) or an int64 (Rubin's `diaObjectId`, big-endian with the
/// sign bit flipped, so that keys and the object index sort by the number).
#[derive(Debug, Clone, Copy)]
pub struct ObjectCell {
    offset: usize,
    /// An int64 (else a string of `chars` characters).
    int: bool,
    chars: usize,
}

impl ObjectCell {
    /// The column `name` of `layout`.
    ///
    /// # Panics
    /// If it is neither a string of at most 12 characters nor an int64.
    #[must_use]
    pub fn of(layout: &Layout, name: &str) -> Self {
        let column = layout.column(name);
        let (int, chars) = match column.dtype {
            Dtype::I8 => (true, 0),
            Dtype::Unicode(chars) if chars <= 12 => (false, chars),
            other => panic!("object column `{name}` is {}: an object id is a string of at most 12 characters or an int64", other.numpy()),
        };
        ObjectCell { offset: column.offset, int, chars }
    }

    /// The object of a packed row, as a key holds it.
    #[must_use]
    pub fn bytes(&self, row: &[u8]) -> [u8; 12] {
        let mut object = [0u8; 12];
        if self.int {
            let value = u64::from_le_bytes(row[self.offset..self.offset + 8].try_into().unwrap_or_default());
            object[..8].copy_from_slice(&(value ^ 1 << 63).to_be_bytes());
        } else {
            // ASCII ids: one byte per UTF-32 code point.
            for (slot, code) in object.iter_mut().zip(row[self.offset..self.offset + 4 * self.chars].chunks_exact(4)) {
                *slot = code[0];
            }
        }
        object
    }

    /// The object a key holds, as text (for messages) or as the value of its column.
    #[must_use]
    pub fn text(&self, object: &[u8; 12]) -> String {
        if self.int {
            self.int_value(object).to_string()
        } else {
            object.iter().take_while(|b| **b != 0).map(|b| char::from(*b)).collect()
        }
    }

    #[allow(clippy::cast_possible_wrap)] // the bits of the int64 it came from
    fn int_value(&self, object: &[u8; 12]) -> i64 {
        (u64::from_be_bytes(object[..8].try_into().unwrap_or_default()) ^ 1 << 63) as i64
    }
}

/// Where a key's fields are in a table's rows, found once per build: keys are read for every
/// epoch of every alert, on the one thread that puts alerts in order.
#[derive(Debug)]
struct KeyCells {
    table: Table,
    layout: &'static Layout,
    object: ObjectCell,
    time: usize,
    /// The band: an int32, or a string's first code point (read as one).
    band: usize,
    id: usize,
    /// The row's values end here: after them come only the carrying alert's id and time,
    /// which a version does not depend on.
    values_end: usize,
}

impl KeyCells {
    fn of(tables: &'static Tables, table: Table) -> KeyCells {
        let role = match table {
            Table::Epochs => TableRole::Epochs,
            Table::Forced => TableRole::Forced,
        };
        let group = group_of(tables, role);
        let columns = group.key.unwrap_or_else(|| panic!("{}: a table of epochs declares its key columns", group.name));
        let layout = group.layout;
        let at = |name: &str, dtype: Dtype| {
            let column = layout.column(name);
            assert_eq!(column.dtype, dtype, "{}: `{name}` is a key column of dtype {}", group.name, dtype.numpy());
            column.offset
        };
        let band = layout.column(columns.band);
        let band = match band.dtype {
            Dtype::I4 | Dtype::Unicode(_) => band.offset,
            other => panic!("{}: band column `{}` is {}, not an int32 or a string", group.name, columns.band, other.numpy()),
        };
        let values_end = at(columns.carrier, Dtype::I8);
        assert_eq!(values_end + 16, layout.itemsize(), "{}: the carrying alert's id and time end the row", group.name);
        assert_eq!(layout.columns().last().map(|c| c.dtype), Some(Dtype::F8), "{}: the carrying alert's time is a float64", group.name);
        KeyCells {
            table,
            layout,
            object: ObjectCell::of(layout, columns.object),
            time: at(columns.time, Dtype::F8),
            band,
            id: at(columns.id, Dtype::I8),
            values_end,
        }
    }

    fn key(&self, row: &[u8]) -> Key {
        let bytes = |at: usize| -> [u8; 8] { row[at..at + 8].try_into().unwrap_or_default() };
        let jd = u64::from_le_bytes(bytes(self.time));
        let fid = i32::from_le_bytes(row[self.band..self.band + 4].try_into().unwrap_or_default());
        let id = i64::from_le_bytes(bytes(self.id));
        let object = self.object.bytes(row);
        let version = digest(&row[..self.values_end]);
        match self.table {
            // A detection has an id; an upper limit's is missing (the int64 missing value).
            Table::Epochs if id != i64::MIN => Key { jd, kind: KeyKind::Detection, fid, object, id, version },
            Table::Epochs => Key { jd, kind: KeyKind::UpperLimit, fid, object, id: 0, version },
            Table::Forced => Key { jd, kind: KeyKind::Forced, fid, object, id, version },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::survey::ztf::tables::{self, alerts_layout, objects_layout, TABLES};

    fn epoch_row(object: &str, jd: f64, candid: Option<i64>) -> Vec<u8> {
        let layout = tables::epochs();
        let mut row = layout.new_row();
        let put = |row: &mut Vec<u8>, name: &str, value: Scalar<'_>| layout.pack(row, layout.index_of(name).unwrap(), value).unwrap();
        put(&mut row, "objectId", Scalar::Str(object.as_bytes()));
        put(&mut row, "jd", Scalar::F64(jd));
        put(&mut row, "fid", Scalar::Int(1));
        if let Some(candid) = candid {
            put(&mut row, "candid", Scalar::Int(candid));
        }
        put(&mut row, "kind", Scalar::Str(if candid.is_some() { b"detection" } else { b"upper_limit" }));
        row
    }

    fn forced_row(object: &str, jd: f64, flux: f32, alert: (f64, i64)) -> Vec<u8> {
        let layout = tables::forced();
        let mut row = layout.new_row();
        let put = |row: &mut Vec<u8>, name: &str, value: Scalar<'_>| layout.pack(row, layout.index_of(name).unwrap(), value).unwrap();
        put(&mut row, "objectId", Scalar::Str(object.as_bytes()));
        put(&mut row, "jd", Scalar::F64(jd));
        put(&mut row, "fid", Scalar::Int(1));
        put(&mut row, "pid", Scalar::Int(7));
        put(&mut row, "forcediffimflux", Scalar::F32(flux));
        put(&mut row, "alert_jd", Scalar::F64(alert.0));
        put(&mut row, "alert_candid", Scalar::Int(alert.1));
        row
    }

    fn history(jd: f64, epochs: &[Vec<u8>], forced: &[Vec<u8>]) -> History {
        History { jd, epochs: epochs.concat(), forced: forced.concat() }
    }

    /// One alert, added at once or as a batch of its own.
    fn take_alone(curves: &mut LightCurves, storage: &dyn Storage, history: &History) -> Added {
        let mut added = Added::default();
        curves.take(history, &mut added);
        curves.look_up(storage).unwrap();
        curves.add_batch(usize::MAX, &mut added);
        added
    }

    /// Committed keys whose one block covers jd 0 to 10 but holds only a key no test alert
    /// carries: every look-up of those jds waits for a batch, and finds nothing.
    fn covering_block(dir: &std::path::Path) -> (crate::store::storage::LocalStorage, CommittedKeys) {
        let storage = crate::store::storage::LocalStorage::new(dir);
        let far = |jd: f64| Key { jd: f64::to_bits(jd), kind: KeyKind::UpperLimit, fid: 9, object: *b"ZTF00nothing", id: 0, version: 0 };
        let (block, bytes) = crate::store::lckeys::blocks_of(1, &[(far(0.0), 0), (far(10.0), 1)], 1).remove(0);
        storage.put(&block.key, &bytes).unwrap();
        (storage, CommittedKeys::new(vec![block]))
    }

    /// Take `histories` as one batch (each alert queued behind a committed block's range).
    fn take_batched(curves: &mut LightCurves, histories: &[History]) {
        let mut now = Added::default();
        for history in histories {
            curves.take(history, &mut now);
        }
        assert_eq!(now.carried_epochs.len() + now.carried_forced.len(), 0, "all queued");
    }

    fn rows(carried: &[u8]) -> Vec<u64> {
        carried.chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().unwrap())).collect()
    }

    #[test]
    fn layouts_of_the_index_tables_parse() {
        assert_eq!(objects_layout().itemsize(), 48 + 24 + 16);
        assert_eq!(alerts_layout().columns().len(), 4);
    }

    #[test]
    fn repeated_epochs_are_stored_once_and_other_values_are_another_version() {
        let storage = crate::store::storage::LocalStorage::new(std::path::Path::new("/nonexistent"));
        let mut curves = LightCurves::new(&TABLES, CommittedKeys::default(), [10, 0], [0, 0]);
        let first =
            history(2.0, &[epoch_row("ZTF18a", 1.0, None), epoch_row("ZTF18a", 2.0, Some(5))], &[forced_row("ZTF18a", 1.5, 1.0, (2.0, 5))]);
        let added = take_alone(&mut curves, &storage, &first);
        assert_eq!(added.epochs.len(), 2 * tables::epochs().itemsize());
        assert_eq!(added.forced.len(), tables::forced().itemsize());
        // The same epochs again, one forced epoch revised, from a later alert.
        let second = history(
            3.0,
            &[epoch_row("ZTF18a", 1.0, None), epoch_row("ZTF18a", 2.0, Some(5)), epoch_row("ZTF18a", 3.0, Some(6))],
            &[forced_row("ZTF18a", 1.5, 9.0, (3.0, 6))],
        );
        let mark = curves.mark();
        let added = take_alone(&mut curves, &storage, &second);
        assert_eq!(added.epochs.len(), tables::epochs().itemsize(), "only the new detection");
        assert_eq!(rows(&added.carried_epochs), [10, 11, 12], "the alert carried the two stored epochs and its own");
        assert_eq!(added.forced.len(), tables::forced().itemsize(), "the revised values are a new row");
        assert_eq!(rows(&added.carried_forced), [1], "the alert's history points at its own values");
        // An earlier alert carrying the first values adds nothing: the carrying alert is not a value.
        let earlier = history(1.0, &[], &[forced_row("ZTF18a", 1.5, 1.0, (1.0, 4))]);
        let added = take_alone(&mut curves, &storage, &earlier);
        assert!(added.forced.is_empty());
        assert_eq!(rows(&added.carried_forced), [0]);
        assert_eq!(curves.rows_after(), [13, 2]);
        assert_eq!(curves.counts(), Counts { detections: 2, upper_limits: 1, forced: 2 });
        curves.roll_back(&mark);
        assert_eq!(curves.rows_after(), [12, 1]);
        assert_eq!(curves.new_keys().len(), 3);
        assert_eq!(curves.index_rows().len(), 2, "one epochs range, one forced range");
    }

    #[test]
    fn ranges_of_one_object_merge_in_the_index() {
        let storage = crate::store::storage::LocalStorage::new(std::path::Path::new("/nonexistent"));
        let mut curves = LightCurves::new(&TABLES, CommittedKeys::default(), [0, 0], [0, 0]);
        take_alone(&mut curves, &storage, &history(1.0, &[epoch_row("ZTF18b", 1.0, Some(1))], &[]));
        take_alone(&mut curves, &storage, &history(1.0, &[epoch_row("ZTF18a", 1.0, Some(2))], &[]));
        take_alone(&mut curves, &storage, &history(2.0, &[epoch_row("ZTF18b", 2.0, Some(3))], &[]));
        let rows = curves.index_rows();
        let layout = objects_layout();
        let objects: Vec<String> = rows.iter().map(|r| layout.read_str(r, 0).unwrap()).collect();
        assert_eq!(objects, ["ZTF18a", "ZTF18b", "ZTF18b"], "sorted; b's rows 0 and 2 are not adjacent");
    }

    fn alerts() -> Vec<History> {
        vec![
            history(2.0, &[epoch_row("ZTF18a", 1.0, None), epoch_row("ZTF18a", 2.0, Some(5))], &[forced_row("ZTF18a", 1.5, 1.0, (2.0, 5))]),
            history(2.5, &[epoch_row("ZTF18b", 2.5, Some(8))], &[]),
            history(
                3.0,
                &[epoch_row("ZTF18a", 1.0, None), epoch_row("ZTF18a", 2.0, Some(5)), epoch_row("ZTF18a", 3.0, Some(6))],
                &[forced_row("ZTF18a", 1.5, 9.0, (3.0, 6))],
            ),
        ]
    }

    #[test]
    fn a_batch_numbers_rows_as_alerts_taken_one_at_a_time() {
        let storage = crate::store::storage::LocalStorage::new(std::path::Path::new("/nonexistent"));
        let mut alone = LightCurves::new(&TABLES, CommittedKeys::default(), [4, 2], [0, 0]);
        let mut expected = Added::default();
        for history in alerts() {
            let added = take_alone(&mut alone, &storage, &history);
            expected.epochs.extend(added.epochs);
            expected.carried_epochs.extend(added.carried_epochs);
            expected.forced.extend(added.forced);
            expected.carried_forced.extend(added.carried_forced);
        }
        let dir = tempfile::tempdir().unwrap();
        let (storage, committed) = covering_block(dir.path());
        let mut batched = LightCurves::new(&TABLES, committed, [4, 2], [0, 0]);
        take_batched(&mut batched, &alerts());
        assert_eq!(batched.batch_len(), 8, "3 + 1 + 4 epochs");
        batched.look_up(&storage).unwrap();
        let mut added = Added::default();
        batched.add_batch(usize::MAX, &mut added);
        assert_eq!(batched.batch_len(), 0, "adding the last entry ends the batch");
        assert_eq!((&added.epochs, &added.carried_epochs), (&expected.epochs, &expected.carried_epochs));
        assert_eq!((&added.forced, &added.carried_forced), (&expected.forced, &expected.carried_forced));
        assert_eq!(rows(&added.carried_epochs), [4, 5, 6, 4, 5, 7]);
        assert_eq!(batched.new_keys(), alone.new_keys());
    }

    #[test]
    fn rolling_back_to_a_mark_inside_an_added_batch_keeps_what_came_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let (storage, committed) = covering_block(dir.path());
        let mut curves = LightCurves::new(&TABLES, committed, [0, 0], [0, 0]);
        let [first, second, third] = <[History; 3]>::try_from(alerts()).unwrap();
        take_batched(&mut curves, std::slice::from_ref(&first));
        let mut mark = curves.mark();
        take_batched(&mut curves, &[second.clone(), third.clone()]);
        curves.look_up(&storage).unwrap();
        let mut before = Added::default();
        curves.add_batch(mark.pending().unwrap(), &mut before);
        curves.mark_added(&mut mark);
        let mut after = Added::default();
        curves.add_batch(usize::MAX, &mut after);
        assert_eq!(rows(&before.carried_epochs), [0, 1]);
        assert_eq!(rows(&after.carried_epochs), [2, 0, 1, 3]);
        assert_eq!(mark.pending(), None, "a later batch is wholly after the point");
        take_alone(&mut curves, &storage, &history(4.0, &[epoch_row("ZTF18c", 4.0, Some(9))], &[]));
        curves.roll_back(&mark);
        assert_eq!(curves.rows_after(), [2, 1], "the first alert's rows stay");
        assert_eq!(curves.new_keys().len(), 3);
        // The second alert again, from verified bytes: the same rows as before.
        let again = take_alone(&mut curves, &storage, &second);
        assert_eq!(rows(&again.carried_epochs), [2]);
        assert_eq!(curves.take(&third, &mut Added::default())[..8], 3i64.to_le_bytes(), "history_start follows the kept entries");
    }

    #[test]
    fn a_mark_with_no_batch_waiting_undoes_what_is_added_at_once_after_it() {
        let storage = crate::store::storage::LocalStorage::new(std::path::Path::new("/nonexistent"));
        let mut curves = LightCurves::new(&TABLES, CommittedKeys::default(), [0, 0], [0, 0]);
        let [first, second, _] = <[History; 3]>::try_from(alerts()).unwrap();
        take_alone(&mut curves, &storage, &first);
        let mark = curves.mark();
        assert_eq!(mark.pending(), None);
        let added = take_alone(&mut curves, &storage, &second);
        assert_eq!(rows(&added.carried_epochs), [2], "added at once: no block covers its jd");
        curves.roll_back(&mark);
        assert_eq!(curves.rows_after(), [2, 1]);
    }
}
