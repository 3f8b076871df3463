//! The writer lock: an exclusive `flock` on `<db>.lock`, so a second oms-sync process never
//! writes the same file.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::FILE_MODE;
use crate::warehouse::WarehouseError;

pub(super) fn lock_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// The exclusive writer lock (`flock` on `<db>.lock`).
///
/// An `flock` belongs to the open file description, not to this descriptor: a child process
/// forked by anything else in this process holds a copy of the descriptor until it execs, and
/// merely closing ours would leave the lock held until then, so a reopen right after a close
/// could fail with `Locked`. Unlocking explicitly releases it whatever copies exist.
pub(super) struct WriterLock(File);

impl Drop for WriterLock {
    fn drop(&mut self) {
        // Failure here leaves the lock to the close that follows; nothing better can be done.
        let _ = self.0.unlock();
    }
}

pub(super) fn take_lock(path: &Path) -> Result<WriterLock, WarehouseError> {
    let lock = lock_path(path);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(&lock)
        .map_err(|e| WarehouseError::Open {
            path: path.to_path_buf(),
            reason: format!("cannot create lock file {}: {e}", lock.display()),
            fix: "create the directory and make it writable by the oms-sync user",
        })?;
    match file.try_lock() {
        Ok(()) => Ok(WriterLock(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(WarehouseError::Locked {
            path: path.to_path_buf(),
            lock,
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(WarehouseError::Open {
            path: path.to_path_buf(),
            reason: format!("cannot lock {}: {e}", lock.display()),
            fix: "put the warehouse on a local file system that supports locks",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::SqliteWarehouse;
    use crate::warehouse::WarehouseError;

    #[test]
    fn second_writer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.db");
        let _first = SqliteWarehouse::open(&p).unwrap();
        let err = SqliteWarehouse::open(&p).unwrap_err();
        assert!(matches!(err, WarehouseError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("another oms-sync process"));
    }

    /// A child forked elsewhere in the process (any `Command` spawn) holds a copy of the lock
    /// descriptor until it execs; closing the warehouse must still free it for the next open.
    #[test]
    fn close_releases_the_lock_while_a_forked_child_holds_the_descriptor() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.db");
        let first = SqliteWarehouse::open(&p).unwrap();
        // SAFETY: the child calls only async-signal-safe functions (sleep, _exit).
        let child = unsafe { libc::fork() };
        assert!(child >= 0, "fork failed");
        if child == 0 {
            unsafe {
                libc::sleep(30);
                libc::_exit(0);
            }
        }
        drop(first);
        let reopened = SqliteWarehouse::open(&p);
        unsafe {
            libc::kill(child, libc::SIGKILL);
            libc::waitpid(child, std::ptr::null_mut(), 0);
        }
        reopened.unwrap();
    }
}
