//! One writer per store. On a local disk: an exclusive `flock` on a lock file beside the store
//! (`.<store name>.lock` in the same folder). The kernel drops the lock when its process ends,
//! however it ends, so a lock left by a killed run never blocks the next one. The file is never
//! removed: unlinking a lock file lets two processes lock two different files.
//!
//! The lock is always taken on the store's real path (see [`resolve`]), so two writers that name
//! one store by two paths (a symlink and its target) take the same lock. A writer that finds the
//! lock held either stops at once or, with [`Wait`], polls until it is free (printing once on
//! stderr whom it waits for).
//!
//! On object storage, which has no `flock`: a lock object `.ztf2zarr/lock` inside the store,
//! made with a conditional create (it fails when the object exists), held by a lease that a
//! background thread renews with conditional updates, and deleted when the writer ends if it is
//! still the version this writer wrote. A writer killed without its `Drop` leaves the object:
//! the next writer takes it over once the lease has run out (at once when its holder was a
//! process on this machine that is gone), and `ztf2zarr unlock` removes it sooner (with
//! `--force` while the lease runs). A writer whose lock was taken stops at its next write.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::storage::{Conditional, Version};
use super::{Storage, StoreError, StoreTarget, StoreUrl};

/// The lock object of a store on object storage.
pub const OBJECT_LOCK: &str = ".ztf2zarr/lock";

/// How long a writer waits for a store that another process is writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Wait {
    /// Stop at once with a message naming the holder.
    #[default]
    No,
    /// Wait as long as it takes.
    Forever,
    /// Wait at most this long, then stop as `No` does.
    AtMost(Duration),
}

impl Wait {
    /// The policy of a `--wait[=SECONDS]` option: absent, given bare, or given a number of seconds.
    #[must_use]
    pub fn from_option(option: Option<Option<u64>>) -> Wait {
        match option {
            None => Wait::No,
            Some(None) => Wait::Forever,
            Some(Some(seconds)) => Wait::AtMost(Duration::from_secs(seconds)),
        }
    }
}

/// How often a waiting writer tries the lock again.
const POLL: Duration = Duration::from_millis(100);

/// Symlinks followed at most while resolving a store path (as the kernel's own limit).
const MAX_LINKS: usize = 40;

/// A held store lock; released when dropped.
#[derive(Debug)]
pub struct StoreLock {
    file: File,
    store: PathBuf,
}

/// Where the lock of `store` lives (beside the real store when `store` is a symlink).
#[must_use]
pub fn lock_path(store: &Path) -> PathBuf {
    sibling(&resolve(store).unwrap_or_else(|_| store.to_path_buf()), "lock")
}

/// `<parent>/.<name>.<suffix>`: hidden files beside the store, on the same file system.
pub(super) fn sibling(store: &Path, suffix: &str) -> PathBuf {
    let name = store.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "store".into());
    store.with_file_name(format!(".{name}.{suffix}"))
}

/// The real path of a store: symlinks followed (also a link to a store not yet created), then
/// made absolute and canonical — the existing path itself, or for a new store its canonical
/// parent folder joined with its name. Writing through the resolved path publishes the real store
/// instead of replacing a link by a folder.
///
/// # Errors
/// A symlink loop, or a parent folder that does not exist or cannot be resolved.
pub fn resolve(store: &Path) -> std::io::Result<PathBuf> {
    let mut path = absolute(store)?;
    for _ in 0..MAX_LINKS {
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let link = std::fs::read_link(&path)?;
                path = path.parent().map_or_else(|| link.clone(), |parent| parent.join(&link));
            }
            Ok(_) => return std::fs::canonicalize(&path),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return canonical_new(&path),
            Err(error) => return Err(error),
        }
    }
    Err(std::io::Error::other(format!("more than {MAX_LINKS} symbolic links (a loop?)")))
}

fn absolute(path: &Path) -> std::io::Result<PathBuf> {
    if path.is_absolute() {
        Ok(path.to_path_buf())
    } else {
        Ok(std::env::current_dir()?.join(path))
    }
}

/// A path that does not exist yet: its parent canonicalized, its name kept.
fn canonical_new(path: &Path) -> std::io::Result<PathBuf> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(path.to_path_buf());
    };
    Ok(std::fs::canonicalize(parent)?.join(name))
}

impl StoreLock {
    /// Take the lock of `store` (its real path), or say who holds it.
    ///
    /// # Errors
    /// Another process holds the lock, or the lock file cannot be created.
    pub fn acquire(store: &Path) -> Result<StoreLock, StoreError> {
        StoreLock::acquire_waiting(store, Wait::No)
    }

    /// Take the lock of `store` (its real path), waiting for another writer as `wait` says.
    ///
    /// # Errors
    /// The lock is still held when the wait ends, or the lock file cannot be created.
    pub fn acquire_waiting(store: &Path, wait: Wait) -> Result<StoreLock, StoreError> {
        let store = resolve(store).map_err(|source| StoreError::Resolve { store: store.to_path_buf(), source })?;
        let path = sibling(&store, "lock");
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(|source| StoreError::Lock {
                store: store.clone(),
                path: path.clone(),
                source,
            })?;
        take_waiting(&StoreTarget::Local(store.clone()), wait, POLL, || {
            Ok(if try_lock(&file) { Attempt::Taken } else { Attempt::Held(holder(&mut file)) })
        })?;
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = writeln!(file, "pid {} since {}", std::process::id(), crate::calendar::utc_now());
        Ok(StoreLock { file, store })
    }

    /// The real path of the locked store.
    #[must_use]
    pub fn store(&self) -> &Path {
        &self.store
    }
}

/// How long a lock object's lease lasts unless renewed: `ZTF2ZARR_LEASE_SECONDS`, else 60 s.
/// The writer renews it every third of that; a lock whose lease ran out is taken over.
fn lease() -> Duration {
    let seconds = std::env::var("ZTF2ZARR_LEASE_SECONDS").ok().and_then(|s| s.trim().parse::<u64>().ok()).filter(|s| *s > 0);
    Duration::from_secs(seconds.unwrap_or(60))
}

/// What a lock object says: its holder (`pid N on HOST since T`, the first line, which messages
/// quote), and, from this release on, a random token and when its lease runs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRecord {
    /// `pid N on HOST since T`.
    pub holder: String,
    /// The holder's pid and host, when the first line says them.
    pid: Option<u32>,
    host: Option<String>,
    /// Seconds since 1970 (UTC) when the lease runs out; None for a lock of an earlier release
    /// (or one put by hand), which never runs out.
    pub expires: Option<u64>,
}

impl LockRecord {
    /// Read a lock object's text.
    #[must_use]
    pub fn parse(text: &str) -> LockRecord {
        let mut lines = text.lines();
        let holder = lines.next().unwrap_or("").trim().to_string();
        let mut words = holder.split_whitespace();
        let (pid, host) = match (words.next(), words.next(), words.next(), words.next()) {
            (Some("pid"), Some(pid), Some("on"), Some(host)) => (pid.parse().ok(), Some(host.to_string())),
            _ => (None, None),
        };
        let expires = lines.find_map(|line| line.trim().strip_prefix("expires-unix ")).and_then(|s| s.trim().parse().ok());
        LockRecord { holder: if holder.is_empty() { "an unknown writer".into() } else { holder }, pid, host, expires }
    }

    /// Why the holder is known to be gone without watching its lock (None: it may be writing):
    /// it was a process on this machine that no longer exists. Another machine's holder is judged
    /// only by watching whether it renews its lock object (see `Watch`).
    #[must_use]
    pub fn gone(&self) -> Option<String> {
        match (self.pid, &self.host) {
            (Some(pid), Some(host)) if *host == host_name() && !process_exists(pid) => {
                Some(format!("its process {pid} on this machine ({host}) no longer exists"))
            }
            _ => None,
        }
    }

    /// Whether the expiry the holder recorded has passed by this machine's clock. Only a hint of
    /// whether to watch the lock at once: the clocks of two machines need not agree.
    #[must_use]
    pub fn lapsed(&self) -> bool {
        self.expires.is_some_and(|e| e <= crate::calendar::unix_now())
    }

    /// When the lease runs out, for messages.
    #[must_use]
    pub fn expiry_text(&self) -> String {
        match self.expires {
            Some(expires) => format!("its lease runs until {}", crate::calendar::utc_of(expires)),
            None => "it has no lease (an earlier ztf2zarr, or put by hand)".into(),
        }
    }
}

/// Whether process `pid` exists on this machine (one of another user counts).
fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    // SAFETY: signal 0 checks that the process exists and sends nothing.
    unsafe { libc::kill(pid, 0) == 0 || *libc::__errno_location() != libc::ESRCH }
}

/// 16 random hex digits, so that each lock object's bytes (and so its ETag, a hash of them on
/// S3) differ from every other's.
fn random_token() -> String {
    let mut bytes = [0u8; 8];
    if File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).is_err() {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        bytes = (u64::from(nanos) ^ (u64::from(std::process::id()) << 32)).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a writer (or `unlock`) has seen of another's lock object, on its own monotonic clock:
/// the lease counts as run out only when the same object (version and bytes) has been seen for
/// longer than a lease. A live holder rewrites it every third of a lease, so no clock of another
/// machine is trusted.
#[derive(Debug, Default)]
struct Watch {
    /// The object last seen, and when it was first seen so.
    seen: Option<(Version, Vec<u8>, Instant)>,
    /// Whether it has changed while watched: its holder renews it.
    renewed: bool,
}

impl Watch {
    /// Note the object found now; how long it has been the same.
    fn see(&mut self, version: &Version, bytes: &[u8]) -> Duration {
        match &self.seen {
            Some((v, b, since)) if v == version && b == bytes => since.elapsed(),
            previous => {
                self.renewed |= previous.is_some();
                self.seen = Some((version.clone(), bytes.to_vec(), Instant::now()));
                Duration::ZERO
            }
        }
    }
}

/// How often a lock object is looked at while it is watched: often enough to see a lease of
/// `length` out within a quarter of it.
fn watch_poll(length: Duration) -> Duration {
    (length / 4).clamp(Duration::from_millis(20), POLL * 10)
}

/// The lease of a held lock object, shared with the thread that renews it.
#[derive(Debug)]
struct Lease {
    storage: Arc<dyn Storage>,
    store: String,
    holder: String,
    token: String,
    length: Duration,
    /// Renewals so far, written into the object so that every renewal changes its bytes (and so
    /// its version) even within one second: watchers see a live holder by that change.
    renewals: std::sync::atomic::AtomicU64,
    /// Whether the store makes conditional updates (else the lease is renewed by plain puts,
    /// under `--single-writer`).
    conditional: bool,
    state: Mutex<LeaseState>,
}

#[derive(Debug)]
struct LeaseState {
    /// The lock object's version as this writer last wrote it.
    version: Version,
    /// When the last renewal that succeeded was sent.
    renewed: Instant,
    /// Why the lock is no longer this writer's, once it is known.
    lost: Option<String>,
}

impl Lease {
    /// The lock object's text with a lease from now.
    fn text(&self) -> String {
        let expires = crate::calendar::unix_now() + self.length.as_secs();
        let renewal = self.renewals.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!(
            "{}\ntoken {}\nrenewal {renewal}\nexpires {}\nexpires-unix {expires}\n",
            self.holder,
            self.token,
            crate::calendar::utc_of(expires)
        )
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LeaseState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Rewrite the lock object with a new expiry, only if it is still the version this writer
    /// wrote: one that was removed or replaced (by `unlock --force`, or by a writer that took
    /// over a lease that ran out) is lost for good.
    fn renew(&self) -> Result<(), String> {
        let mut state = self.state();
        if let Some(lost) = &state.lost {
            return Err(lost.clone());
        }
        let sent = Instant::now();
        let text = self.text();
        let written = if self.conditional {
            self.storage.put_if(OBJECT_LOCK, text.as_bytes(), Some(&state.version))
        } else {
            self.storage.put_versioned(OBJECT_LOCK, text.as_bytes()).map(Conditional::Written)
        };
        match written {
            Ok(Conditional::Written(version)) => {
                state.version = version;
                state.renewed = sent;
                Ok(())
            }
            Ok(Conditional::Conflict | Conditional::Unsupported) => {
                let lost = "its lock object was removed or taken over while it ran (by `ztf2zarr unlock --force`, or by a writer \
                            that found its lease run out)"
                    .to_string();
                state.lost = Some(lost.clone());
                Err(lost)
            }
            // A failed request (network) leaves the lease as it was: the next try may succeed.
            Err(error) => Err(format!("its lease could not be renewed ({error})")),
        }
    }

    /// Whether this writer may still write: its lock is not lost, and its lease was renewed
    /// within half its length (else it is renewed now, which fails if the lock was taken). A
    /// writer paused for longer than that (a stopped job, a frozen machine) renews before its
    /// next write, and so stops there if another writer took the store over meanwhile.
    fn check(&self) -> Result<(), String> {
        let fresh = {
            let state = self.state();
            if let Some(lost) = &state.lost {
                return Err(lost.clone());
            }
            state.renewed.elapsed() < self.length / 2
        };
        if fresh {
            return Ok(());
        }
        match self.renew() {
            // A failed request: no other writer may take the lock before the lease runs out.
            Err(_) if self.state().lost.is_none() && self.state().renewed.elapsed() < self.length => Ok(()),
            result => result,
        }
    }
}

/// A held lock object with its lease, renewed on a background thread until it is released
/// (dropped).
#[derive(Debug)]
pub struct ObjectLock {
    lease: Arc<Lease>,
    /// Set (and notified) to stop the renewing thread.
    stop: Arc<(Mutex<bool>, Condvar)>,
    renewer: Option<std::thread::JoinHandle<()>>,
}

impl ObjectLock {
    /// Create the lock object of the store in `storage` (named `store` in messages), waiting
    /// for another writer as `wait` says. A lock whose holder is gone is taken over, with a
    /// conditional update of the object as found, so that two writers cannot both take it: one
    /// whose process on this machine no longer exists at once, any other once this writer has
    /// seen it unchanged for a lease (see `Watch`). Without `wait` a lock whose recorded
    /// expiry has passed is watched for up to a lease before the writer gives up; one whose
    /// expiry has not is refused at once.
    ///
    /// # Errors
    /// The lock object is still held when the wait ends, or it cannot be created.
    pub fn acquire(storage: Arc<dyn Storage>, store: &StoreUrl, wait: Wait, single_writer: bool) -> Result<ObjectLock, StoreError> {
        ObjectLock::acquire_leasing(storage, store, wait, single_writer, lease())
    }

    fn acquire_leasing(
        storage: Arc<dyn Storage>,
        store: &StoreUrl,
        wait: Wait,
        single_writer: bool,
        length: Duration,
    ) -> Result<ObjectLock, StoreError> {
        let holder = format!("pid {} on {} since {}", std::process::id(), host_name(), crate::calendar::utc_now());
        let token = random_token();
        let lease = Lease {
            storage: Arc::clone(&storage),
            store: store.to_string(),
            holder,
            token,
            length,
            renewals: std::sync::atomic::AtomicU64::new(0),
            conditional: true,
            state: Mutex::new(LeaseState { version: Version::default(), renewed: Instant::now(), lost: None }),
        };
        let mut version = Version::default();
        let mut renewed = Instant::now();
        let mut watch = Watch::default();
        take_waiting(&StoreTarget::Remote(store.clone()), wait, watch_poll(length), || {
            let sent = Instant::now();
            let text = lease.text();
            match storage.put_if(OBJECT_LOCK, text.as_bytes(), None)? {
                Conditional::Written(written) => {
                    (version, renewed) = (written, sent);
                    return Ok(Attempt::Taken);
                }
                // No conditional create either: no lock can exclude another writer.
                Conditional::Unsupported if single_writer => {
                    (version, renewed) = (storage.put_versioned(OBJECT_LOCK, text.as_bytes())?, sent);
                    return Ok(Attempt::Taken);
                }
                Conditional::Unsupported => return Err(StoreError::NoFencing { store: store.to_string() }),
                Conditional::Conflict => {}
            }
            let Some((bytes, found)) = storage.get_versioned(OBJECT_LOCK)? else {
                return Ok(Attempt::Held("a writer that has just finished".into()));
            };
            let text_found = String::from_utf8_lossy(&bytes);
            // Our create succeeded but its answer was lost, and the retry found our own lock.
            if text_found.contains(&format!("token {}", lease.token)) {
                (version, renewed) = (found, sent);
                return Ok(Attempt::Taken);
            }
            let record = LockRecord::parse(&text_found);
            let unchanged = watch.see(&found, &bytes);
            let why = record.gone().or_else(|| (record.expires.is_some() && unchanged >= length).then(|| not_renewed(unchanged)));
            if let Some(why) = why {
                if let Conditional::Written(written) = storage.put_if(OBJECT_LOCK, text.as_bytes(), Some(&found))? {
                    crate::errln!("took over the lock of `{store}` from {}: {why}", record.holder);
                    (version, renewed) = (written, sent);
                    return Ok(Attempt::Taken);
                }
            }
            Ok(held_or_watched(&record, &watch))
        })?;
        {
            let mut state = lease.state();
            state.version = version;
            state.renewed = renewed;
        }
        Ok(ObjectLock { lease: Arc::new(lease), stop: Arc::new((Mutex::new(false), Condvar::new())), renewer: None })
    }

    /// Whether the store can fence a writer whose lock was taken from it: renews the lease
    /// with a conditional update (`If-Match`), which the commit point is written with too.
    /// Then starts renewing the lease every third of its length; without conditional updates
    /// (only under `--single-writer`) by plain puts.
    ///
    /// # Errors
    /// The lock object was removed or replaced since it was created, or it cannot be written.
    pub fn can_fence(&mut self, store: &StoreUrl) -> Result<bool, StoreError> {
        let version = self.lease.state().version.clone();
        let fencing = match self.lease.storage.put_if(OBJECT_LOCK, self.lease.text().as_bytes(), Some(&version))? {
            Conditional::Written(version) => {
                self.lease.state().version = version;
                true
            }
            Conditional::Unsupported => false,
            Conditional::Conflict => {
                return Err(StoreError::Fenced {
                    store: store.to_string(),
                    what: "this writer's lock was removed or replaced as soon as it was taken".into(),
                    kept: "nothing was written".into(),
                })
            }
        };
        if !fencing {
            // Only this writer's own field: no other thread holds the lease yet.
            if let Some(lease) = Arc::get_mut(&mut self.lease) {
                lease.conditional = false;
            }
        }
        self.start_renewing();
        Ok(fencing)
    }

    fn start_renewing(&mut self) {
        let (lease, stop) = (Arc::clone(&self.lease), Arc::clone(&self.stop));
        let every = lease.length / 3;
        let thread = std::thread::Builder::new().name("ztf2zarr-lease".into()).spawn(move || {
            let (stopped, wake) = &*stop;
            let mut stopped = stopped.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            loop {
                let (guard, _) = wake.wait_timeout(stopped, every).unwrap_or_else(std::sync::PoisonError::into_inner);
                stopped = guard;
                if *stopped {
                    return;
                }
                if let Err(why) = lease.renew() {
                    if lease.state().lost.is_some() {
                        crate::errln!("`{}`: {why}; this writer stops at its next write", lease.store);
                        return;
                    }
                }
            }
        });
        self.renewer = thread.ok();
    }

    /// Whether this writer may still write (see [`Lease::check`]); the reason if not.
    ///
    /// # Errors
    /// The lock is no longer this writer's.
    pub fn check(&self) -> Result<(), String> {
        self.lease.check()
    }

    /// Whether the lock is known to be lost (then nothing may be deleted on this writer's view).
    #[must_use]
    pub fn lost(&self) -> bool {
        self.lease.state().lost.is_some()
    }
}

impl Drop for ObjectLock {
    /// Stop renewing, then delete the lock object only if it is still the version this writer
    /// last wrote. Object stores have no conditional delete, so this is a read and a delete: a
    /// writer that takes the lock over in between (its lease would have had to run out in that
    /// moment) loses it; its next renewal then stops it.
    fn drop(&mut self) {
        {
            let (stopped, wake) = &*self.stop;
            *stopped.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = true;
            wake.notify_all();
        }
        if let Some(thread) = self.renewer.take() {
            let _ = thread.join();
        }
        let state = self.lease.state();
        if state.lost.is_some() {
            return;
        }
        let ours = match self.lease.storage.version(OBJECT_LOCK) {
            Ok(Some(found)) => found == state.version || !self.lease.conditional,
            _ => false,
        };
        if ours {
            let _ = self.lease.storage.delete(OBJECT_LOCK);
        }
    }
}

/// What `unlock` did with a store's lock object.
#[derive(Debug)]
pub enum Unlocked {
    /// There was none.
    NotLocked,
    /// It was removed; what it said, and why it could be.
    Removed { record: LockRecord, why: String },
    /// Its holder renewed it while it was watched (it is writing), and `--force` was not given.
    Held(LockRecord),
}

/// Remove the lock object of a writer that is gone: one whose process on this machine no
/// longer exists, one with no lease (an earlier release's, or put by hand), or one that stays
/// unchanged while it is watched for a lease (a live holder renews it every third of one);
/// with `force`, any at once. The object is deleted only if it is still the one read.
///
/// # Errors
/// The object cannot be read or deleted.
pub fn break_object_lock(storage: &dyn Storage, store: &StoreTarget, force: bool) -> Result<Unlocked, StoreError> {
    break_watching(storage, store, force, lease())
}

fn break_watching(storage: &dyn Storage, store: &StoreTarget, force: bool, length: Duration) -> Result<Unlocked, StoreError> {
    let Some((bytes, version)) = storage.get_versioned(OBJECT_LOCK)? else { return Ok(Unlocked::NotLocked) };
    let record = LockRecord::parse(&String::from_utf8_lossy(&bytes));
    let why = match (record.gone(), record.expires) {
        (Some(why), _) => why,
        (None, None) => "it has no lease (an earlier ztf2zarr, or put by hand)".into(),
        (None, Some(_)) if force => "--force".into(),
        (None, Some(_)) => {
            crate::errln!(
                "watching the lock of `{store}` ({}) for up to {:.1} s to see whether its holder renews it",
                record.holder,
                length.as_secs_f64()
            );
            let mut watch = Watch::default();
            watch.see(&version, &bytes);
            loop {
                std::thread::sleep(watch_poll(length));
                let Some((now, found)) = storage.get_versioned(OBJECT_LOCK)? else { return Ok(Unlocked::NotLocked) };
                let unchanged = watch.see(&found, &now);
                if watch.renewed {
                    return Ok(Unlocked::Held(LockRecord::parse(&String::from_utf8_lossy(&now))));
                }
                if unchanged >= length {
                    break not_renewed(unchanged).replace("this writer", "unlock");
                }
            }
        }
    };
    // No conditional delete on object stores: check that it is still the object read.
    if storage.version(OBJECT_LOCK)?.is_some_and(|now| now == version) {
        storage.delete(OBJECT_LOCK)?;
    }
    Ok(Unlocked::Removed { record, why })
}

/// Why a lock object seen unchanged for `unchanged` (at least a lease) is taken to be its dead
/// holder's.
fn not_renewed(unchanged: Duration) -> String {
    format!("its lease ran out: its lock object was not renewed in the {:.1} s this writer watched it", unchanged.as_secs_f64())
}

/// What a writer that could not take a lock reports: its holder, and whether to go on watching
/// (its recorded expiry has passed and it has not been seen renewed) even without `--wait`.
fn held_or_watched(record: &LockRecord, watch: &Watch) -> Attempt {
    if watch.renewed {
        Attempt::Held(format!("{}; it renews its lease (seen while this writer watched)", record.holder))
    } else if record.lapsed() {
        Attempt::Watching(format!("{}; {}", record.holder, record.expiry_text()))
    } else {
        Attempt::Held(format!("{}; {}", record.holder, record.expiry_text()))
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "an unknown host".into())
}

/// One try at a lock.
enum Attempt {
    /// The lock is this writer's.
    Taken,
    /// Another writer holds it (who, for messages).
    Held(String),
    /// Its holder may be gone: it is watched (up to a lease) whatever `wait` says.
    Watching(String),
}

/// Call `attempt` until it takes the lock, every `poll`, as long as `wait` allows (and while it
/// watches a lock whose holder may be gone); says once on stderr whom it waits for.
fn take_waiting(
    store: &StoreTarget,
    wait: Wait,
    poll: Duration,
    mut attempt: impl FnMut() -> Result<Attempt, StoreError>,
) -> Result<(), StoreError> {
    let started = Instant::now();
    let (mut announced, mut announced_watch) = (false, false);
    loop {
        let (holder, watching) = match attempt()? {
            Attempt::Taken => return Ok(()),
            Attempt::Held(holder) => (holder, false),
            Attempt::Watching(holder) => (holder, true),
        };
        if let Some(signal) = super::stop::requested() {
            return Err(StoreError::Stopped { store: store.to_string(), signal, kept: "nothing was written".into() });
        }
        let expired = match wait {
            Wait::No => true,
            Wait::Forever => false,
            Wait::AtMost(limit) => started.elapsed() >= limit,
        };
        if expired && !watching {
            let waited = (wait != Wait::No).then(|| started.elapsed().as_secs());
            return Err(StoreError::Locked { store: store.clone(), holder, waited });
        }
        if watching && !announced_watch {
            crate::errln!(
                "waiting to see whether the lock's holder is alive: `{store}` is locked by {holder}; a holder that is alive renews \
                 its lock object within a lease"
            );
            announced_watch = true;
        } else if !watching && !announced {
            crate::errln!("waiting for `{store}`: it is being written by another ztf2zarr ({holder})");
            announced = true;
        }
        std::thread::sleep(poll);
    }
}

fn try_lock(file: &File) -> bool {
    // SAFETY: flock on a file descriptor we own; no memory is shared with the kernel.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// What the lock file says about its holder ("pid N since T"), read from the start.
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.rewind();
    let _ = file.read_to_string(&mut text);
    let text = text.trim();
    if text.is_empty() {
        "a process that has not yet written its pid".into()
    } else {
        text.to_string()
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        // SAFETY: as in `try_lock`; closing the file would release the lock too.
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("s.zarr");
        let first = StoreLock::acquire(&store).unwrap();
        let err = StoreLock::acquire(&store).unwrap_err().to_string();
        assert!(err.contains("s.zarr") && err.contains(&format!("pid {}", std::process::id())), "{err}");
        drop(first);
        StoreLock::acquire(&store).unwrap();
    }

    #[test]
    fn a_link_and_its_target_share_one_lock() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.zarr");
        std::fs::create_dir(&real).unwrap();
        let link = dir.path().join("link.zarr");
        std::os::unix::fs::symlink("real.zarr", &link).unwrap();
        let held = StoreLock::acquire(&link).unwrap();
        assert_eq!(held.store(), std::fs::canonicalize(&real).unwrap());
        assert!(StoreLock::acquire(&real).is_err());
        assert!(!dir.path().join(".link.zarr.lock").exists());
    }

    #[test]
    fn a_link_to_a_store_not_yet_made_resolves_to_its_target() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("disk")).unwrap();
        let link = dir.path().join("s.zarr");
        std::os::unix::fs::symlink("disk/new.zarr", &link).unwrap();
        assert_eq!(resolve(&link).unwrap(), std::fs::canonicalize(dir.path()).unwrap().join("disk/new.zarr"));
    }

    #[test]
    fn a_symlink_loop_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.zarr"), dir.path().join("b.zarr"));
        std::os::unix::fs::symlink(&b, &a).unwrap();
        std::os::unix::fs::symlink(&a, &b).unwrap();
        assert!(resolve(&a).unwrap_err().to_string().contains("symbolic links"));
    }

    #[test]
    fn a_lock_record_says_when_its_holder_is_gone() {
        let now = crate::calendar::unix_now();
        let fresh = LockRecord::parse(&format!("pid 4242 on elsewhere since T\ntoken ab\nexpires-unix {}\n", now + 60));
        assert_eq!((fresh.holder.as_str(), fresh.gone(), fresh.lapsed()), ("pid 4242 on elsewhere since T", None, false));
        assert!(fresh.expiry_text().starts_with("its lease runs until"));
        // Another machine's recorded expiry is only a hint: it never proves its holder gone.
        let ran_out = LockRecord::parse(&format!("pid 4242 on elsewhere since T\nexpires-unix {}\n", now - 1));
        assert_eq!((ran_out.gone(), ran_out.lapsed()), (None, true));
        let legacy = LockRecord::parse("pid 4242 on elsewhere since T");
        assert_eq!((legacy.expires, legacy.gone()), (None, None), "a lock of an earlier release never runs out by itself");
        let alive = LockRecord::parse(&format!("pid {} on {} since T\nexpires-unix {}", std::process::id(), host_name(), now + 60));
        assert_eq!(alive.gone(), None);
        // A pid above the kernel's pid_max exists on no machine.
        let dead = LockRecord::parse(&format!("pid 2000000000 on {} since T\nexpires-unix {}", host_name(), now + 60));
        assert!(dead.gone().is_some_and(|why| why.contains("no longer exists")));
        assert_eq!(LockRecord::parse("").holder, "an unknown writer");
    }

    const URL: &str = "memory:///s.zarr";

    fn memory() -> Arc<dyn Storage> {
        Arc::new(crate::store::object::ObjectStorage::from_url(URL).unwrap())
    }

    fn url() -> StoreUrl {
        let StoreTarget::Remote(url) = StoreTarget::parse(Path::new(URL)).unwrap() else { panic!("not a URL") };
        url
    }

    /// Another machine's lock object with the given recorded expiry.
    fn foreign_lock(expires: u64, renewal: u64) -> Vec<u8> {
        format!("pid 4242 on build-host-7 since T\ntoken 0123456789abcdef\nrenewal {renewal}\nexpires-unix {expires}\n").into_bytes()
    }

    /// A holder on another machine that rewrites its lock object every `every` until dropped.
    struct Renewing(Arc<std::sync::atomic::AtomicBool>, Option<std::thread::JoinHandle<()>>);

    impl Renewing {
        fn start(storage: &Arc<dyn Storage>, expires: u64, every: Duration) -> Renewing {
            let (storage, stop) = (Arc::clone(storage), Arc::new(std::sync::atomic::AtomicBool::new(false)));
            // The lock exists before this returns: a writer started next must find it.
            storage.put(OBJECT_LOCK, &foreign_lock(expires, 0)).unwrap();
            let stopping = Arc::clone(&stop);
            let thread = std::thread::spawn(move || {
                for renewal in 1.. {
                    std::thread::sleep(every);
                    if stopping.load(std::sync::atomic::Ordering::SeqCst) {
                        return;
                    }
                    storage.put(OBJECT_LOCK, &foreign_lock(expires, renewal)).unwrap();
                }
            });
            Renewing(stop, Some(thread))
        }
    }

    impl Drop for Renewing {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            self.1.take().map(std::thread::JoinHandle::join);
        }
    }

    /// Short, for the tests, yet long against a renewal every 50 ms on a loaded machine.
    const LEASE: Duration = Duration::from_millis(1500);

    #[test]
    fn a_renewed_lock_whose_recorded_expiry_is_long_past_is_not_taken_over() {
        let storage = memory();
        let _holder = Renewing::start(&storage, 1_000_000, Duration::from_millis(50));
        let started = Instant::now();
        let waited = ObjectLock::acquire_leasing(Arc::clone(&storage), &url(), Wait::AtMost(LEASE * 2), false, LEASE);
        let err = waited.unwrap_err().to_string();
        assert!(err.contains("pid 4242 on build-host-7") && err.contains("renews its lease"), "{err}");
        assert!(started.elapsed() >= LEASE * 2, "--wait waited its whole time");
        // Without --wait the lapsed expiry makes it watch, and the renewal makes it refuse.
        let err = ObjectLock::acquire_leasing(Arc::clone(&storage), &url(), Wait::No, false, LEASE).unwrap_err();
        assert!(err.to_string().contains("renews its lease"), "{err}");
        assert!(matches!(break_watching(storage.as_ref(), &StoreTarget::Remote(url()), false, LEASE).unwrap(), Unlocked::Held(_)));
        assert!(storage.get(OBJECT_LOCK).unwrap().is_some_and(|b| b.starts_with(b"pid 4242")));
    }

    #[test]
    fn an_unrenewed_lock_whose_recorded_expiry_is_far_ahead_is_taken_over_after_a_lease_of_watching() {
        let storage = memory();
        let far = crate::calendar::unix_now() + 86_400 * 365;
        storage.put(OBJECT_LOCK, &foreign_lock(far, 0)).unwrap();
        let err = ObjectLock::acquire_leasing(Arc::clone(&storage), &url(), Wait::No, false, LEASE).unwrap_err();
        assert!(err.to_string().contains("lease runs until"), "without --wait a lease that has not lapsed is refused at once: {err}");
        let started = Instant::now();
        let lock = ObjectLock::acquire_leasing(Arc::clone(&storage), &url(), Wait::Forever, false, LEASE).unwrap();
        assert!(started.elapsed() >= LEASE, "taken over only after a lease of watching");
        assert!(storage.get(OBJECT_LOCK).unwrap().is_some_and(|b| b.starts_with(format!("pid {}", std::process::id()).as_bytes())));
        drop(lock);
        storage.put(OBJECT_LOCK, &foreign_lock(far, 0)).unwrap();
        let started = Instant::now();
        let removed = break_watching(storage.as_ref(), &StoreTarget::Remote(url()), false, LEASE).unwrap();
        assert!(matches!(&removed, Unlocked::Removed { why, .. } if why.contains("not renewed")), "{removed:?}");
        assert!(started.elapsed() >= LEASE && storage.get(OBJECT_LOCK).unwrap().is_none());
    }

    #[test]
    fn an_unrenewed_lock_whose_recorded_expiry_lapsed_is_watched_then_taken_without_wait() {
        let storage = memory();
        storage.put(OBJECT_LOCK, &foreign_lock(1_000_000, 0)).unwrap();
        let started = Instant::now();
        ObjectLock::acquire_leasing(Arc::clone(&storage), &url(), Wait::No, false, LEASE).unwrap();
        assert!(started.elapsed() >= LEASE);
    }

    #[test]
    fn each_renewal_changes_the_lock_objects_bytes() {
        let storage = memory();
        let mut lock = ObjectLock::acquire(Arc::clone(&storage), &url(), Wait::No, false).unwrap();
        let first = storage.get(OBJECT_LOCK).unwrap();
        assert!(lock.can_fence(&url()).unwrap());
        lock.lease.renew().unwrap();
        assert_ne!(storage.get(OBJECT_LOCK).unwrap(), first, "two renewals in one second differ");
    }

    #[test]
    fn a_stale_writer_neither_renews_nor_deletes_the_lock_that_replaced_its_own() {
        let storage = memory();
        let url = self::url();
        let mut lock = ObjectLock::acquire(Arc::clone(&storage), &url, Wait::No, false).unwrap();
        assert!(lock.can_fence(&url).unwrap());
        assert!(lock.check().is_ok());
        storage.put(OBJECT_LOCK, b"pid 1 on next-writer since T\nexpires-unix 99999999999\n").unwrap();
        assert!(lock.lease.renew().is_err() && lock.lost() && lock.check().is_err());
        drop(lock);
        assert!(storage.get(OBJECT_LOCK).unwrap().is_some_and(|b| b.starts_with(b"pid 1 on next-writer")));
        assert!(matches!(
            break_watching(storage.as_ref(), &StoreTarget::Remote(url.clone()), true, LEASE).unwrap(),
            Unlocked::Removed { .. }
        ));
        assert!(matches!(break_watching(storage.as_ref(), &StoreTarget::Remote(url.clone()), false, LEASE).unwrap(), Unlocked::NotLocked));
    }

    #[test]
    fn a_bounded_wait_gives_up_and_says_how_long_it_waited() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("s.zarr");
        let _held = StoreLock::acquire(&store).unwrap();
        let err = StoreLock::acquire_waiting(&store, Wait::AtMost(Duration::ZERO)).unwrap_err().to_string();
        assert!(err.contains("waited 0 s"), "{err}");
    }
}
