//! The writer lock: an exclusive `flock` on `<db>.lock`, so a second oms-sync process never
//! writes the same file. The lock is named after the file's real path (symlinks and `..`
//! resolved), so two paths that name one file take one lock; it holds the PID of its owner, for
//! the error the next process gives.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::FILE_MODE;
use crate::warehouse::{Location, WarehouseError};

/// Symlinks followed at most while resolving a path (Linux's own limit, ELOOP).
const MAX_SYMLINKS: usize = 40;

/// `<real path of the database>.lock`.
pub(super) fn lock_path(path: &Path) -> PathBuf {
    let mut p = real_path(path).into_os_string();
    p.push(".lock");
    PathBuf::from(p)
}

/// The file `path` names, with every symlink and `..` resolved, also when the file does not
/// exist yet (its directory is resolved, and a dangling symlink is followed to where the file
/// will be created). Falls back to `path` itself when even the directory cannot be resolved:
/// opening the file fails then anyway.
pub(super) fn real_path(path: &Path) -> PathBuf {
    let mut p = path.to_path_buf();
    for _ in 0..MAX_SYMLINKS {
        if let Ok(real) = std::fs::canonicalize(&p) {
            return real;
        }
        let dir = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        match std::fs::read_link(&p) {
            // A dangling symlink: creating the file creates its target.
            Ok(target) => p = dir.join(target),
            Err(_) => {
                return match (std::fs::canonicalize(&dir), p.file_name()) {
                    (Ok(d), Some(name)) => d.join(name),
                    _ => path.to_path_buf(),
                };
            }
        }
    }
    path.to_path_buf()
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
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(&lock)
        .map_err(|e| lock_file_error(path, &lock, &e))?;
    match file.try_lock() {
        Ok(()) => {
            let mut held = WriterLock(file);
            // Best effort: the lock works without it, only the next process's error is vaguer.
            let _ = write_pid(&mut held.0);
            Ok(held)
        }
        Err(std::fs::TryLockError::WouldBlock) => Err(WarehouseError::Locked {
            at: Location::file(path),
            pid: read_pid(&file),
            lock: format!("lock {}", lock.display()),
            fix: "stop the other instance, or point warehouse.path elsewhere",
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(WarehouseError::Unusable {
            at: Location::file(path),
            what: "cannot be opened",
            reason: format!("cannot lock {}: {e}", lock.display()),
            fix: "put the warehouse on a local file system that supports locks",
        }),
    }
}

/// The lock file cannot be created: a directory this user may not write is permission denied,
/// anything else (no directory, a read-only file system) makes the warehouse unusable.
fn lock_file_error(path: &Path, lock: &Path, e: &std::io::Error) -> WarehouseError {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        return WarehouseError::PermissionDenied {
            at: Location::file(path),
            context: format!("creating lock file {}", lock.display()),
            reason: e.to_string(),
            fix: unwritable_fix(e).to_string(),
        };
    }
    WarehouseError::Unusable {
        at: Location::file(path),
        what: "cannot be opened",
        reason: format!("cannot create lock file {}: {e}", lock.display()),
        fix: unwritable_fix(e),
    }
}

/// The fix for a directory the lock file cannot be created in. A read-only file system under
/// systemd is most likely the units' `ProtectSystem=strict`, which leaves only
/// /var/lib/oms-sync writable.
fn unwritable_fix(e: &std::io::Error) -> &'static str {
    if e.kind() != std::io::ErrorKind::ReadOnlyFilesystem {
        "create the directory and make it writable by the oms-sync user"
    } else if std::env::var_os("INVOCATION_ID").is_some() {
        "the unit's ProtectSystem=strict makes everything but /var/lib/oms-sync read-only: add ReadWritePaths= with the warehouse's directory in a drop-in (systemctl edit oms-sync, and oms-sync-backfill), or move warehouse.path under /var/lib/oms-sync"
    } else {
        "the file system is mounted read-only: put warehouse.path on a writable one"
    }
}

fn write_pid(file: &mut File) -> std::io::Result<()> {
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())
}

/// The PID the lock's owner wrote; None if it is not there (yet) or not a number.
fn read_pid(mut file: &File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
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
        let pid = format!("PID {}", std::process::id());
        assert!(err.to_string().contains(&pid), "{err}");
    }

    #[test]
    fn a_symlink_and_a_dotted_path_take_the_lock_of_the_file_they_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.db");
        let _first = SqliteWarehouse::open(&p).unwrap();
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink("w.db", &link).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        for other in [link.clone(), dir.path().join("sub/../w.db")] {
            let err = SqliteWarehouse::open(&other).unwrap_err();
            assert!(matches!(err, WarehouseError::Locked { .. }), "{err}");
        }
        assert!(!dir.path().join("link.db.lock").exists());
    }

    #[test]
    fn a_dangling_symlink_resolves_to_the_file_it_will_create() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink("new.db", &link).unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap().join("new.db");
        assert_eq!(super::real_path(&link), real);
        assert_eq!(
            super::real_path(&dir.path().join("absent.db")),
            real.with_file_name("absent.db")
        );
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
