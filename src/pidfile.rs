//! The pidfile: proof that a daemon runs, and how `-s reload|stop` finds it.
//! The running daemon holds an exclusive `flock` on the file for its whole
//! life, so a leftover file of a dead process (stale) is told apart from a
//! live daemon without trusting the pid alone.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A pidfile held by this process; removed when dropped.
#[derive(Debug)]
pub struct Pidfile {
    path: PathBuf,
    _lock: Flock<File>,
}

/// Why the pidfile could not be taken or used.
#[derive(Debug, thiserror::Error)]
pub enum PidfileError {
    #[error("another dispenser (pid {pid}) is running with pidfile {path}; stop it first with `dispenser -p {path} -s stop`")]
    AlreadyRunning { pid: String, path: String },
    #[error("no daemon is running (no live process holds {path}); start it with `systemctl start dispenser` or `dispenser -c CONFIG`")]
    NoDaemon { path: String },
    #[error("the daemon (pid {pid}) did not stop within {waited:?}")]
    StillRunning { pid: String, waited: Duration },
    #[error("pidfile {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

impl Pidfile {
    /// Takes the pidfile for this process, taking over a stale one.
    pub fn acquire(path: &Path) -> Result<Pidfile, PidfileError> {
        let io_error = |source| PidfileError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_error)?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                return Err(PidfileError::AlreadyRunning {
                    pid: read_pid(&mut file),
                    path: path.display().to_string(),
                })
            }
            Err((_, errno)) => return Err(io_error(io::Error::from(errno))),
        };
        let stale = read_pid(&mut lock);
        if !stale.is_empty() {
            tracing::warn!(pidfile = %path.display(), pid = %stale, "taking over a stale pidfile");
        }
        lock.set_len(0).map_err(io_error)?;
        lock.rewind().map_err(io_error)?;
        writeln!(lock, "{}", std::process::id()).map_err(io_error)?;
        lock.sync_all().map_err(io_error)?;
        Ok(Pidfile {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }
}

impl Drop for Pidfile {
    fn drop(&mut self) {
        // Removed while still locked, so no one takes over a file we delete.
        let _ = fs::remove_file(&self.path);
    }
}

/// Sends `signal` to the daemon holding the pidfile at `path`.
pub fn signal_daemon(path: &Path, signal: Signal) -> Result<Pid, PidfileError> {
    let no_daemon = || PidfileError::NoDaemon {
        path: path.display().to_string(),
    };
    let file = File::open(path).map_err(|_| no_daemon())?;
    let mut file = match Flock::lock(file, FlockArg::LockSharedNonblock) {
        // We could lock it: nobody holds it, the file is stale.
        Ok(_) => return Err(no_daemon()),
        Err((file, Errno::EWOULDBLOCK)) => file,
        Err((_, errno)) => {
            return Err(PidfileError::Io {
                path: path.display().to_string(),
                source: io::Error::from(errno),
            })
        }
    };
    let pid_text = read_pid(&mut file);
    let pid: i32 = pid_text.parse().map_err(|_| no_daemon())?;
    let pid = Pid::from_raw(pid);
    kill(pid, signal).map_err(|_| no_daemon())?;
    Ok(pid)
}

/// Waits until no process holds the pidfile at `path` (the daemon exited).
pub fn wait_released(path: &Path, pid: Pid, timeout: Duration) -> Result<(), PidfileError> {
    let deadline = Instant::now() + timeout;
    loop {
        let held = match File::open(path) {
            Err(_) => false,
            Ok(file) => matches!(
                Flock::lock(file, FlockArg::LockSharedNonblock),
                Err((_, Errno::EWOULDBLOCK))
            ),
        };
        if !held {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(PidfileError::StillRunning {
                pid: pid.to_string(),
                waited: timeout,
            });
        }
        sleep(Duration::from_millis(100));
    }
}

fn read_pid(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.rewind();
    let _ = file.read_to_string(&mut text);
    text.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_is_refused_and_release_removes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.pid");
        let held = Pidfile::acquire(&path).unwrap();
        let content = fs::read_to_string(&path).unwrap();
        assert_eq!(content.trim(), std::process::id().to_string());
        let err = Pidfile::acquire(&path).unwrap_err();
        assert!(matches!(err, PidfileError::AlreadyRunning { .. }), "{err}");
        drop(held);
        assert!(!path.exists());
    }

    #[test]
    fn stale_pidfile_is_taken_over_and_not_signalled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.pid");
        fs::write(&path, "999999\n").unwrap();
        let err = signal_daemon(&path, Signal::SIGHUP).unwrap_err();
        assert!(matches!(err, PidfileError::NoDaemon { .. }), "{err}");
        let _held = Pidfile::acquire(&path).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap().trim(),
            std::process::id().to_string()
        );
    }

    #[test]
    fn missing_pidfile_means_no_daemon() {
        let dir = tempfile::tempdir().unwrap();
        let err = signal_daemon(&dir.path().join("none.pid"), Signal::SIGTERM).unwrap_err();
        assert!(err.to_string().starts_with("no daemon is running"), "{err}");
    }
}
