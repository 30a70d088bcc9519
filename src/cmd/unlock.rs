//! `ztf2zarr unlock`: remove the lock object that a writer which is gone left on a store in
//! object storage (local stores lock with `flock`, which dies with its process: nothing to
//! remove). A lock whose holder renews it while `unlock` watches it (up to a lease) is kept unless
//! `--force` is given.

use super::ExitStatus;
use crate::cli::UnlockArgs;
use crate::store::{break_object_lock, open_storage, StoreTarget, Unlocked, OBJECT_LOCK};

/// Run `unlock`.
///
/// # Errors
/// A lock object that cannot be read or removed, or one whose holder may still be writing.
pub fn run(args: &UnlockArgs, target: &StoreTarget) -> anyhow::Result<ExitStatus> {
    if let StoreTarget::Local(path) = target {
        crate::outln!(
            "`{}` is a local store: its lock is held by a running process and released when that process ends, however it \
             ends, so there is nothing to unlock (unlock is for stores on object storage)",
            path.display()
        );
        return Ok(ExitStatus::Success);
    }
    let storage = open_storage(target)?;
    match break_object_lock(storage.as_ref(), target, args.force)? {
        Unlocked::Removed { record, why } => crate::outln!("removed the lock of `{target}` ({}; {why})", record.holder),
        Unlocked::NotLocked => crate::outln!("`{target}` is not locked (no {OBJECT_LOCK})"),
        Unlocked::Held(record) => anyhow::bail!(
            "`{}` is locked by {}, which renewed its lease while unlock watched it: it is still writing. Wait for it to end \
             (a writer that is killed stops renewing, and the next writer then takes the lock over by itself), or, if you know \
             that writer is gone, give --force (it is then stopped at its next write, and cannot commit)",
            target,
            record.holder
        ),
    }
    Ok(ExitStatus::Success)
}
