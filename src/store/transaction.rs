//! One change to one store: [`Transaction::begin`] locks the store, finishes what a killed
//! writer left and reads the committed state; the change writes its chunks past the committed
//! rows; [`Transaction::commit`] writes the metadata and `.zmetadata` last (the commit point),
//! in the order the module comment of `store/mod.rs` gives; a change dropped before its commit
//! removes what it wrote.

#[allow(clippy::wildcard_imports)] // the store's own types, shared by its submodules
use super::*;

/// The largest chunk (filtered and padded) that is put whole in memory to be compressed in
/// one call; a stamps chunk of 1,000 alerts at 21×21 is 5.3 MB, a light-curve column's 1 MB.
const CONTIGUOUS_CHUNK_BYTES: usize = 16 << 20;

/// One change to one store, committed by [`Transaction::commit`] (see the module comment).
#[derive(Debug)]
pub struct Transaction {
    storage: Arc<dyn Storage>,
    /// What the survey's store holds.
    tables: &'static Tables,
    settings: Settings,
    arrays: Vec<ArraySpec>,
    purpose: Purpose,
    committed: Option<Committed>,
    reader: Option<StoreReader>,
    /// This change's number: its place in the provenance (`ztf2zarr.runs`), from 1.
    number: usize,
    pending: Value,
    /// Keys of extra arrays' chunks written (to delete what a replaced group no longer has).
    extra_written: Mutex<Vec<String>>,
    /// Whether a committed chunk was rewritten in place (by a label or a split).
    rewrote: std::sync::atomic::AtomicBool,
    /// For a new local store: whether its folder was there before (else an abandoned build removes it).
    folder_existed: bool,
    /// What the conditional writes of this change expect (None: a local store, or an object
    /// store written with `--single-writer`).
    fence: Option<Fence>,
    lock: Held,
}

/// The versions a change on object storage saw when it began. Its marker and its commit point
/// are written only if they are still these: another writer that took the store over (after its
/// lock was removed) has replaced the marker when it finished this one's leftovers, and has
/// replaced `.zmetadata` when it committed.
#[derive(Debug)]
struct Fence {
    /// `.zmetadata` as this change read it (None: a new store).
    commit_point: Option<storage::Version>,
    /// The marker as this change wrote it.
    marker: storage::Version,
}

/// The writer lock held for a transaction.
#[derive(Debug)]
enum Held {
    Local { _lock: StoreLock },
    Object { lock: ObjectLock },
}

impl Transaction {
    /// Lock the store named by `target` (refusing first, before any lock is made, a path that is
    /// not a store this tool writes), finish what a killed writer left, read the committed
    /// state, check the requested options against it, and mark the write as in progress — all
    /// before any input is read.
    ///
    /// # Errors
    /// Locked, not a store, an unwritable folder, incompatible options, or I/O failure.
    pub fn begin(target: &StoreTarget, requested: Requested, purpose: Purpose, tables: &'static Tables) -> Result<Transaction, StoreError> {
        stop::catch();
        let mut folder_existed = true;
        let mut fencing = false;
        let (storage, lock) = match target {
            StoreTarget::Remote(url) => {
                let storage = open_storage(target)?;
                refuse_what_is_not_a_store(storage.as_ref(), target, purpose)?;
                let mut lock = ObjectLock::acquire(Arc::clone(&storage), url, requested.wait, requested.single_writer)?;
                if !lock.can_fence(url)? && !requested.single_writer {
                    return Err(StoreError::NoFencing { store: url.to_string() });
                }
                fencing = !requested.single_writer;
                (storage, Held::Object { lock })
            }
            StoreTarget::Local(path) => {
                let resolved = resolve_target(path, purpose)?;
                refuse_local_non_store(&resolved, purpose)?;
                let lock = StoreLock::acquire_waiting(&resolved, requested.wait)?;
                let root = lock.store().to_path_buf();
                legacy::recover(&root)?;
                folder_existed = root.exists();
                let storage: Arc<dyn Storage> = Arc::new(LocalStorage::new(&root));
                refuse_what_is_not_a_store(storage.as_ref(), target, purpose)?;
                (storage, Held::Local { _lock: lock })
            }
        };
        recover(storage.as_ref(), purpose)?;
        // Before the read: a commit made between the two then fails this change's commit, safely.
        let commit_point = if fencing { storage.version(".zmetadata")? } else { None };
        let reader = open_existing(&storage, tables)?;
        if reader.as_ref().is_some_and(StoreReader::has_legacy_lightcurves) {
            return Err(StoreError::Incompatible { store: target.clone(), reason: LEGACY_LIGHTCURVES.into() });
        }
        let settings = match &reader {
            Some(reader) => check_compatible(target, reader.settings(), requested)?,
            None => Settings {
                stamp_size: requested.stamp_size.unwrap_or(tables.stamps.default_size),
                keep_nan: requested.keep_nan,
                keep_masked: requested.keep_masked,
                chunk_rows: requested.chunk_rows.unwrap_or(DEFAULT_CHUNK_ROWS),
                zstd_level: requested.zstd_level.unwrap_or(DEFAULT_ZSTD_LEVEL),
                stamp_filter: StampFilter::NEW_STORE,
                lightcurves: !requested.no_lightcurves,
                variance: tables.stamps.variance && !requested.no_variance,
                psf: tables.stamps.psf && requested.psf,
            },
        };
        if purpose != Purpose::Append && reader.is_none() {
            return Err(StoreError::NotAStore(target.clone()));
        }
        let arrays = match &reader {
            Some(reader) => reader.arrays(),
            None => declared(&settings, tables, &[]),
        };
        let number = reader.as_ref().map_or(0, |r| r.runs().len()) + 1;
        let first_new: Vec<Value> = arrays
            .iter()
            .map(|a| {
                let from = reader.as_ref().map_or(0, |r| r.array_rows(a) / a.chunk_rows);
                json!({"array": a.name, "from": from, "suffix": ".0".repeat(a.row_shape.len())})
            })
            .collect();
        let pending = json!({
            "command": purpose.command(),
            "pid": std::process::id(),
            "started": utc_now(),
            "number": number,
            "chunks_from": first_new,
            "objects": [],
            "metadata": [],
        });
        let marker = storage.put_versioned(PENDING, pretty(&pending).as_bytes())?;
        storage.flush()?;
        let fence = fencing.then_some(Fence { commit_point, marker });
        let committed = match &reader {
            Some(reader) => Some(read_committed(reader, storage.as_ref(), purpose, number)?),
            None => None,
        };
        Ok(Transaction {
            tables,
            storage,
            settings,
            arrays,
            purpose,
            committed,
            reader,
            number,
            pending,
            extra_written: Mutex::new(Vec::new()),
            rewrote: std::sync::atomic::AtomicBool::new(false),
            folder_existed,
            fence,
            lock,
        })
    }

    /// The committed store, for reading what a rewrite starts from.
    #[must_use]
    pub fn reader(&self) -> Option<&StoreReader> {
        self.reader.as_ref()
    }

    /// Where the store lives.
    #[must_use]
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// The store's arrays, in the order chunk writes name them.
    #[must_use]
    pub fn arrays(&self) -> &[ArraySpec] {
        &self.arrays
    }

    /// Position of the array `name` in [`Transaction::arrays`].
    #[must_use]
    pub fn array_index(&self, name: &str) -> Option<usize> {
        self.arrays.iter().position(|a| a.name == name)
    }

    /// Look-ups of the committed light-curve keys (reading key blocks only as needed).
    #[must_use]
    pub fn committed_lightcurve_keys(&self) -> lckeys::CommittedKeys {
        lckeys::CommittedKeys::new(self.committed.as_ref().map(|c| c.lightcurve_blocks.clone()).unwrap_or_default())
    }

    /// Look-ups of the committed candids (reading the candid runs only as needed).
    #[must_use]
    pub fn committed_candids(&self) -> CommittedCandids {
        CommittedCandids::new(self.committed.as_ref().map(|c| c.candid_runs.clone()).unwrap_or_default())
    }

    /// The store's settings (the existing store's, or the new store's).
    #[must_use]
    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// What the store held before this build (None for a new store).
    #[must_use]
    pub fn committed(&self) -> Option<&Committed> {
        self.committed.as_ref()
    }

    /// Rows committed in array `array` (0 for a new store).
    #[must_use]
    pub fn committed_rows(&self, array: usize) -> usize {
        self.committed.as_ref().and_then(|c| c.array_rows.get(array).copied()).unwrap_or(0)
    }

    /// Take the incomplete last chunks out, for the pipeline to continue filling.
    pub fn take_partials(&mut self) -> Vec<PartialChunk> {
        self.committed.as_mut().map(|c| std::mem::take(&mut c.partials)).unwrap_or_default()
    }

    /// Compress and write chunk `index` of array `array` (whole rows, padded to the chunk
    /// length), replacing any object there.
    ///
    /// # Errors
    /// Compression or storage failure.
    pub fn write_chunk(&self, array: usize, index: usize, raw: &[u8]) -> Result<(), StoreError> {
        let spec = &self.arrays[array];
        let key = spec.chunk_key(index);
        self.check_writing()?;
        if self.purpose != Purpose::Append {
            self.rewrote.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        self.put_compressed(&key, &spec.filter.encode(raw))?;
        fault_point("after-chunk");
        Ok(())
    }

    /// Compress and write chunk `index` of array `array` from its first `rows` rows, as a build
    /// holds them (fixed-size rows, or `vlen` items): the rows of `partial` (the store's own, if
    /// the chunk continues its incomplete last chunk), then `bytes`. Padded to the chunk length
    /// as Zarr v2 requires: the padding is compressed as it streams by, never put in memory (a
    /// light-curve column's last chunk is mostly padding: a megabyte for a few rows).
    ///
    /// # Errors
    /// Compression or storage failure, or a `partial` that does not decode.
    pub fn write_chunk_rows(
        &self,
        partial: Option<&PartialChunk>,
        array: usize,
        index: usize,
        bytes: &[u8],
        rows: usize,
    ) -> Result<(), StoreError> {
        let joined;
        let bytes = match partial {
            Some(partial) => {
                let spec = &self.arrays[array];
                let mut own = reader::chunk_rows_of(self.storage.as_ref(), spec, index, &partial.stored, partial.rows)?;
                own.extend_from_slice(bytes);
                joined = own;
                joined.as_slice()
            }
            None => bytes,
        };
        let spec = &self.arrays[array];
        let key = spec.chunk_key(index);
        self.check_writing()?;
        if self.purpose != Purpose::Append {
            self.rewrote.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let failed = |source| StoreError::Compress { path: self.storage.object_location(&key).into(), source };
        COMPRESSOR.with_borrow_mut(|compressor| {
            let mut scratch = std::mem::take(&mut compressor.scratch);
            let size = codec::padded_size(spec.filter, bytes.len(), spec.row_bytes, rows, spec.chunk_rows);
            // A chunk of data that fits in a few megabytes is made whole and compressed in one
            // call: zstd's streaming path copies its input into its window and, on chunks larger
            // than the window, matches across the wrap, which costs more. A chunk that is mostly
            // padding (an array's last chunk: a light-curve column's is megabytes for a few rows)
            // streams, so that its padding is never written out in memory.
            let compressed = if size <= CONTIGUOUS_CHUNK_BYTES && size <= 2 * bytes.len() {
                codec::padded_chunk(spec.filter, bytes, spec.row_bytes, rows, spec.chunk_rows, &mut scratch);
                compressor.compress(&scratch, self.settings.zstd_level)
            } else {
                let parts = codec::padded_parts(spec.filter, bytes, spec.row_bytes, rows, spec.chunk_rows, &mut scratch);
                compressor.compress_parts(&parts, self.settings.zstd_level)
            };
            let result = compressed.map_err(failed).and_then(|c| Ok(self.storage.put(&key, c)?));
            compressor.scratch = scratch;
            result
        })?;
        fault_point("after-chunk");
        Ok(())
    }

    /// Write a chunk of an extra array (e.g. `splits/train/0`), compressed as the store's
    /// chunks are.
    ///
    /// # Errors
    /// Compression or storage failure.
    pub fn write_extra_chunk(&self, key: &str, raw: &[u8]) -> Result<(), StoreError> {
        self.check_writing()?;
        self.rewrote.store(true, std::sync::atomic::Ordering::Relaxed);
        self.put_compressed(key, raw)?;
        self.extra_written.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(key.to_string());
        Ok(())
    }

    fn put_compressed(&self, key: &str, raw: &[u8]) -> Result<(), StoreError> {
        let failed = |source| StoreError::Compress { path: self.storage.object_location(key).into(), source };
        COMPRESSOR.with_borrow_mut(|compressor| {
            let compressed = compressor.compress(raw, self.settings.zstd_level).map_err(failed)?;
            Ok(self.storage.put(key, compressed)?)
        })
    }

    /// Delete the chunks of array `array` written by this build from chunk `first` on (rows
    /// rolled back after an archive failed its checksum). Chunks are written in order, so this
    /// stops at the first index with no object; committed chunks are never deleted (the
    /// incomplete last one is rewritten again before the commit).
    ///
    /// # Errors
    /// A chunk that exists but cannot be deleted.
    pub fn discard_chunks_from(&self, array: usize, first: usize) -> Result<(), StoreError> {
        self.check_lock()?;
        let spec = &self.arrays[array];
        let committed = spec.chunks_for(self.committed_rows(array));
        for index in first.max(committed).. {
            let key = spec.chunk_key(index);
            if self.storage.size(&key)?.is_none() {
                break;
            }
            self.storage.delete(&key)?;
        }
        Ok(())
    }

    /// Write this change's candid run and rejects log, then every metadata document, then
    /// `.zmetadata`, as the module comment orders them.
    ///
    /// # Errors
    /// Storage failure; the committed state is then unchanged, and the next writer tidies.
    pub fn commit(mut self, commit: Commit) -> Result<(), StoreError> {
        fault_point("before-metadata");
        // A signal from here on lets the commit finish: it takes a few requests.
        if let Some(signal) = stop::requested() {
            let (store, kept) = (self.storage.location(), self.kept_when_stopped());
            self.abandon();
            return Err(StoreError::Stopped { store, signal, kept });
        }
        let own_rows = self.own_rows_after(&commit.own_rows);
        let committed = self.committed.take();
        let (mut runs, column_docs, mut candid_runs, rows_before) = match &committed {
            Some(c) => (c.runs.clone(), c.column_docs.clone(), c.candid_runs.clone(), c.rows),
            None => (Vec::new(), commit.column_docs, Vec::new(), 0),
        };
        let mut blocks = committed.as_ref().map(|c| c.lightcurve_blocks.clone()).unwrap_or_default();
        let mut lightcurve_counts = committed.as_ref().map_or([0; 3], |c| c.lightcurve_counts);
        let labels = commit.labels.or_else(|| committed.as_ref().and_then(|c| c.labels.clone()));
        let extra =
            commit.extra_metadata.clone().unwrap_or_else(|| committed.as_ref().map(|c| c.extra_metadata.clone()).unwrap_or_default());
        let mut run = commit.run;
        let mut objects = Vec::new();
        if !commit.new_candids.is_empty() {
            let (entry, bytes) = Run::of(run_key(self.number), rows_before, &commit.new_candids);
            objects.push((entry.key.clone(), bytes));
            candid_runs.push(entry);
        }
        if let Some((keys, counts)) = &commit.lightcurves {
            for (block, bytes) in lckeys::blocks_of(self.number, keys, self.settings.zstd_level) {
                objects.push((block.key.clone(), bytes));
                blocks.push(block);
            }
            for (total, new) in lightcurve_counts.iter_mut().zip(counts) {
                *total += new;
            }
        }
        if !commit.new_rejects.is_empty() {
            let key = self.rejects_log_key();
            run["rejects_log"] = json!(key);
            objects.push((key, commit.new_rejects.into_bytes()));
        }
        runs.push(run);
        let metadata = StoreMetadata {
            tables: self.tables,
            rows: commit.rows,
            own_rows,
            settings: self.settings,
            column_docs,
            runs,
            labels,
            candid_index: candids::runs_json(&candid_runs),
            extra,
            lightcurve_keys: if self.settings.lightcurves { lckeys::blocks_json(&blocks) } else { Value::Null },
            lightcurve_counts,
        };
        let files = metadata.files();
        self.pending["objects"] = json!(objects.iter().map(|(k, _)| k).collect::<Vec<_>>());
        self.pending["metadata"] = json!(files.iter().map(|(k, _)| k).collect::<Vec<_>>());
        self.check_lock()?;
        self.put_marker()?;
        fault_point("after-marker");
        self.put_numbered(&objects)?;
        self.storage.flush()?;
        fault_point("before-publish");
        let documents: Vec<(String, Vec<u8>)> = files.iter().map(|(k, v)| (k.clone(), pretty(v).into_bytes())).collect();
        self.check_lock()?;
        self.storage.put_all(&documents)?;
        self.storage.flush()?;
        fault_point("before-consolidated");
        self.check_lock()?;
        self.put_commit_point(pretty(&metadata::consolidated(&files)).as_bytes(), &files)?;
        self.storage.flush()?;
        fault_point("after-publish");
        fault_point("after-commit");
        self.tidy(committed.as_ref(), &files);
        Ok(())
    }

    /// Rewrite the marker with what the commit will write, the first write of the commit. On
    /// object storage only if it is still the marker this change wrote: a writer that took the
    /// store over has deleted it (finishing this change as a killed one) or replaced it.
    fn put_marker(&mut self) -> Result<(), StoreError> {
        let bytes = pretty(&self.pending);
        let Some(fence) = &mut self.fence else { return Ok(self.storage.put(PENDING, bytes.as_bytes())?) };
        match self.storage.put_if(PENDING, bytes.as_bytes(), Some(&fence.marker))? {
            storage::Conditional::Written(version) => {
                fence.marker = version;
                Ok(())
            }
            storage::Conditional::Conflict | storage::Conditional::Unsupported => Err(self.fenced(
                "its lock was removed while this one ran, and the other writer has replaced this one's write-in-progress marker",
                "nothing of this run was committed or written since",
            )),
        }
    }

    /// Write the objects named by this change's number (candid run, key blocks, rejects log). On
    /// object storage each only if there is no such object: a writer paused after its marker
    /// check, whose store another writer took over and committed with the same number meanwhile,
    /// must not replace that writer's objects. Its first such create fails instead; it deletes
    /// what it created and stops as a fenced change. A writer whose marker is still its own
    /// holds the store, so an object it finds is a stale writer's, written after this writer's
    /// recovery: it is replaced. (A local store needs none of this: its `flock` stays with a
    /// paused writer, so no other can take the store over.)
    fn put_numbered(&mut self, objects: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        if self.fence.is_none() {
            return objects.iter().try_for_each(|(key, bytes)| Ok(self.storage.put(key, bytes)?));
        }
        for (done, (key, bytes)) in objects.iter().enumerate() {
            if let storage::Conditional::Written(_) = self.storage.put_if(key, bytes, None)? {
                continue;
            }
            if self.marker_is_ours()? {
                self.storage.put(key, bytes)?;
                continue;
            }
            for (created, _) in &objects[..done] {
                let _ = self.storage.delete(created);
            }
            return Err(self.fenced(
                &format!("its lock was removed while this one ran, and the other writer committed its own `{key}` first"),
                "nothing of this run was committed, and what it wrote of the commit is removed",
            ));
        }
        Ok(())
    }

    /// Whether the marker is still the one this change last wrote: no other writer has taken
    /// the store over (its recovery deletes or replaces the marker).
    fn marker_is_ours(&self) -> Result<bool, StoreError> {
        let Some(fence) = &self.fence else { return Ok(true) };
        Ok(self.storage.version(PENDING)?.is_some_and(|now| now == fence.marker))
    }

    /// Write `.zmetadata`, the commit point. On object storage only if it is still the one this
    /// change read when it began: else another writer committed in between, and its commit
    /// stands. The metadata documents this change wrote are then put back as that commit has
    /// them.
    fn put_commit_point(&self, bytes: &[u8], files: &[(String, Value)]) -> Result<(), StoreError> {
        let Some(fence) = &self.fence else { return Ok(self.storage.put(".zmetadata", bytes)?) };
        match self.storage.put_if(".zmetadata", bytes, fence.commit_point.as_ref())? {
            storage::Conditional::Written(_) => Ok(()),
            storage::Conditional::Conflict | storage::Conditional::Unsupported => {
                let restored = restore_metadata(self.storage.as_ref(), files.iter().map(|(key, _)| key.as_str()));
                let kept = match restored {
                    Ok(()) => "nothing of this run was committed (its metadata documents were put back as the other writer's commit has them)".to_string(),
                    Err(error) => format!("nothing of this run was committed, but its metadata documents could not be put back ({error}): run `ztf2zarr verify`"),
                };
                Err(self.fenced("its lock was removed while this one ran, and the other writer committed first", &kept))
            }
        }
    }

    /// Before each chunk write: that no signal asked this writer to stop (it then stops as a
    /// failed change does), and [`Self::check_lock`].
    fn check_writing(&self) -> Result<(), StoreError> {
        match stop::requested() {
            Some(signal) => Err(StoreError::Stopped { store: self.storage.location(), signal, kept: self.kept_when_stopped() }),
            None => self.check_lock(),
        }
    }

    /// What is left of this change once it is abandoned.
    fn kept_when_stopped(&self) -> String {
        if self.purpose != Purpose::Append && self.rewrote.load(std::sync::atomic::Ordering::Relaxed) {
            format!("some of what it rewrites is new and some old: run `ztf2zarr {}` again to finish it", self.purpose.command())
        } else {
            "what it wrote is removed and the store is as it was: run the same command again".into()
        }
    }

    /// On object storage, that the lock is still this writer's and its lease fresh (renewing
    /// it if it is not), before each write: a writer paused past its lease, whose store was
    /// taken over meanwhile, stops at its next write instead of writing over the other's.
    fn check_lock(&self) -> Result<(), StoreError> {
        match &self.lock {
            Held::Object { lock } => lock.check().map_err(|why| {
                if lock.lost() {
                    self.fenced(&why, "nothing of this run was committed")
                } else {
                    StoreError::LeaseExpired { store: self.storage.location(), reason: why }
                }
            }),
            Held::Local { .. } => Ok(()),
        }
    }

    fn fenced(&self, what: &str, kept: &str) -> StoreError {
        StoreError::Fenced { store: self.storage.location(), what: what.into(), kept: kept.into() }
    }

    /// Rows of every array with rows of its own after this change: what the change says, else
    /// what was committed.
    fn own_rows_after(&self, changed: &[(String, usize)]) -> Vec<(String, usize)> {
        self.arrays
            .iter()
            .enumerate()
            .filter(|(_, spec)| spec.rows == arrays::Rows::Own)
            .map(|(array, spec)| {
                let rows = changed.iter().find(|(name, _)| *name == spec.name).map_or(self.committed_rows(array), |(_, rows)| *rows);
                (spec.name.clone(), rows)
            })
            .collect()
    }

    /// After the commit point: remove what the new state no longer names (a replaced group's
    /// old chunks, an upgraded legacy index) and the pending marker. The store is committed, so
    /// a failure here is a warning, and the next writer finishes it.
    fn tidy(&self, committed: Option<&Committed>, files: &[(String, Value)]) {
        let mut result = Ok(());
        if self.purpose == Purpose::ReplaceSplits {
            result = self.delete_unnamed_split_chunks(files);
        }
        if committed.is_some_and(|c| c.upgraded_legacy_index) {
            result = result.and(self.storage.delete(LEGACY_CANDIDS).map_err(StoreError::from));
        }
        result = result.and(delete_backups(self.storage.as_ref(), &self.pending));
        let result = result.and_then(|()| match injected_failure("tidy") {
            Some(source) => Err(StoreError::Remove { path: self.storage.object_location(PENDING).into(), source }),
            None => Ok(self.storage.delete(PENDING).and_then(|()| self.storage.flush())?),
        });
        if let Err(error) = result {
            crate::errln!("warning: {error}; the store is committed and sound, and the next build finishes tidying it");
        }
    }

    fn delete_unnamed_split_chunks(&self, files: &[(String, Value)]) -> Result<(), StoreError> {
        let written = self.extra_written.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        for key in self.storage.list(&format!("{SPLITS}/"))? {
            if !written.contains(&key) && !files.iter().any(|(k, _)| *k == key) {
                self.storage.delete(&key)?;
            }
        }
        Ok(())
    }

    /// Key of this change's rejects log.
    #[must_use]
    pub fn rejects_log_key(&self) -> String {
        format!("{REJECTS}/{:06}.jsonl", self.number)
    }

    /// Drop this change: delete what it wrote past the committed rows and the marker. What
    /// cannot be deleted now is deleted by the next writer (the marker says what).
    pub fn abandon(self) {
        if matches!(&self.lock, Held::Object { lock } if lock.lost()) {
            // Another writer has the store: what this one wrote was finished by that writer's
            // recovery, and deleting by this one's stale view could delete that writer's chunks.
            return;
        }
        if self.committed.is_none() && self.purpose == Purpose::Append {
            self.abandon_new_store();
            return;
        }
        if self.purpose == Purpose::Append {
            if restore_backups(self.storage.as_ref(), &self.pending).is_err() {
                return; // the marker stays: the next writer puts the chunks back
            }
            for array in 0..self.arrays.len() {
                let first = self.arrays[array].chunks_for(self.committed_rows(array));
                if self.discard_chunks_from(array, first).is_err() {
                    return;
                }
            }
        }
        // A label or split that rewrote committed chunks keeps its marker: it must be run again.
        if self.purpose == Purpose::Append || !self.rewrote.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = self.storage.delete(PENDING);
        }
        let _ = self.storage.flush();
    }
}

impl Transaction {
    /// A first build that fails leaves nothing: every object it wrote is deleted, and a local
    /// folder it made is removed.
    fn abandon_new_store(&self) {
        let Ok(keys) = self.storage.list("") else { return };
        for key in keys.iter().filter(|k| k.as_str() != lock::OBJECT_LOCK && k.as_str() != PENDING) {
            if self.storage.delete(key).is_err() {
                return; // the marker stays: the next build deletes the rest
            }
        }
        let _ = self.storage.delete(PENDING);
        if let Some(root) = self.storage.local_root().filter(|_| !self.folder_existed) {
            let _ = std::fs::remove_dir_all(root);
        } else if let Some(root) = self.storage.local_root() {
            remove_empty_folders(root);
        }
        let _ = self.storage.flush();
    }
}

/// The committed store, if there is one.
fn open_existing(storage: &Arc<dyn Storage>, tables: &'static Tables) -> Result<Option<StoreReader>, StoreError> {
    if storage.size(".zgroup")?.is_none() && storage.size(".zmetadata")?.is_none() {
        return Ok(None);
    }
    Ok(Some(StoreReader::open(Arc::clone(storage), tables)?))
}

fn check_compatible(target: &StoreTarget, have: Settings, requested: Requested) -> Result<Settings, StoreError> {
    let refuse = |reason: String| Err(StoreError::Incompatible { store: target.clone(), reason });
    if let Some(size) = requested.stamp_size.filter(|s| *s != have.stamp_size) {
        return refuse(format!(
            "the store's stamps are {0}x{0}; --stamp-size {size} would change its layout (build a new store instead)",
            have.stamp_size
        ));
    }
    if let Some(rows) = requested.chunk_rows.filter(|r| *r != have.chunk_rows) {
        return refuse(format!("the store's chunks hold {} rows; --chunk-rows {rows} would change its layout", have.chunk_rows));
    }
    if requested.keep_nan && !have.keep_nan {
        return refuse("the store replaces NaN pixels by 0; --keep-nan would mix two NaN policies in one store".into());
    }
    if requested.keep_masked && !have.keep_masked {
        return refuse(
            "the store holds ZTF's masked pixels (-3.4e38) as missing pixels, like NaN; --keep-masked would mix two masked-pixel policies in one store"
                .into(),
        );
    }
    if let Some(level) = requested.zstd_level.filter(|l| *l != have.zstd_level) {
        return refuse(format!("the store's chunks use zstd level {}; --zstd-level {level} differs", have.zstd_level));
    }
    if requested.no_lightcurves && have.lightcurves {
        return refuse("the store has light curves; --no-lightcurves would leave the new alerts' epochs out of them".into());
    }
    if requested.no_variance && have.variance {
        return refuse("the store keeps the cutouts' variance planes; --no-variance would leave the new alerts' out of them".into());
    }
    if requested.psf && !have.psf {
        return refuse("the store has no PSF images (it was built without --psf); --psf would give only the new alerts theirs (build a new store with --psf)".into());
    }
    Ok(have)
}

/// Read what this change continues from: the incomplete last chunks (for an append), the
/// candid runs (a store written before them gets its index upgraded here, once), provenance,
/// column docs and extra metadata.
fn read_committed(reader: &StoreReader, storage: &dyn Storage, purpose: Purpose, number: usize) -> Result<Committed, StoreError> {
    let rows = reader.rows();
    let arrays = reader.arrays();
    let array_rows: Vec<usize> = arrays.iter().map(|spec| reader.array_rows(spec)).collect();
    let mut partials = Vec::new();
    if purpose == Purpose::Append {
        for (array, spec) in arrays.iter().enumerate() {
            let rows = array_rows[array];
            if rows % spec.chunk_rows != 0 {
                let index = rows / spec.chunk_rows;
                let kept = rows - index * spec.chunk_rows;
                let stored = reader.stored_chunk(spec, index)?;
                reader::check_stored_chunk(storage, spec, index, &stored)?;
                partials.push(PartialChunk { array, index, rows: kept, stored });
            }
        }
    }
    let (candid_runs, upgraded_legacy_index) = match reader.candid_runs()? {
        Some(runs) => (restore_missing_runs(reader, storage, runs)?, false),
        None => (upgrade_candid_index(reader, storage, number)?, true),
    };
    let labels = Some(reader.root_attrs()["ztf2zarr"]["labels"].clone()).filter(|v| !v.is_null());
    let extra_metadata = if purpose == Purpose::ReplaceSplits {
        reader.extra_metadata().into_iter().filter(|(k, _)| !k.starts_with(&format!("{SPLITS}/"))).collect()
    } else {
        reader.extra_metadata()
    };
    let location = storage.object_location(".zattrs");
    let lightcurve_blocks = lckeys::parse_blocks(&reader.root_attrs()["ztf2zarr"]["lightcurve_keys"], &location)?;
    let rows_by_kind = &reader.documents().get(&format!("{LIGHTCURVES}/.zattrs")).cloned().unwrap_or(Value::Null)["ztf2zarr"]["rows"];
    let count = |kind: &str| rows_by_kind[kind].as_u64().unwrap_or(0);
    let lightcurve_counts = [count("detections"), count("upper_limits"), count("forced")];
    Ok(Committed {
        rows,
        array_rows,
        partials,
        labels,
        runs: reader.runs(),
        column_docs: reader.column_docs(),
        candid_runs,
        lightcurve_blocks,
        lightcurve_counts,
        extra_metadata,
        upgraded_legacy_index,
    })
}
