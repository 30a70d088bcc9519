//! `ztf2zarr unlock`: remove the lock object that a killed writer left on a store in object
//! storage (local stores lock with `flock`, which dies with its process: nothing to remove).

use super::ExitStatus;
use crate::cli::UnlockArgs;
use crate::store::{break_object_lock, is_url, open_storage, OBJECT_LOCK};

/// Run `unlock`.
///
/// # Errors
/// A lock object that cannot be read or removed.
pub fn run(args: &UnlockArgs) -> anyhow::Result<ExitStatus> {
    if !is_url(&args.store) {
        crate::outln!(
            "`{}` is a local store: its lock is held by a running process and released when that process ends, however it \
             ends, so there is nothing to unlock (unlock is for stores on object storage)",
            args.store.display()
        );
        return Ok(ExitStatus::Success);
    }
    let storage = open_storage(&args.store)?;
    match break_object_lock(storage.as_ref())? {
        Some(holder) => crate::outln!("removed the lock of `{}` ({holder})", args.store.display()),
        None => crate::outln!("`{}` is not locked (no {OBJECT_LOCK})", args.store.display()),
    }
    Ok(ExitStatus::Success)
}
