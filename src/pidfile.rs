//! The pidfile: proof that a daemon runs, and how `-s reload|stop` finds it.
//! The running daemon holds an exclusive `flock` on the file for its whole
//! life, so a leftover file of a dead process (stale) is told apart from a
//! live daemon without trusting the pid alone.
//!
//! The file is the daemon user's alone: created 0600, never through a
//! symbolic link, and refused when it is not a regular file of this user
//! with one link (no other user can open it, so none can hold its lock).
//! `-s` signals the pid the file names only when that process holds the
//! file's lock and runs the same executable as the `dispenser` sending the
//! signal; otherwise it signals nothing.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::libc;
use nix::sys::signal::{kill, Signal};
use nix::unistd::{geteuid, Pid};

/// The pidfile's mode: the daemon's user only.
const MODE: u32 = 0o600;
/// More than a pid and a newline: a longer file is not a pidfile.
const MAX_LEN: u64 = 64;

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
    #[error("pidfile {path} {reason}: refused; remove it, or choose another path with -p")]
    Unsafe { path: String, reason: String },
    #[error("pidfile {path} names pid {pid}, which is not the dispenser daemon ({reason}): nothing was signalled")]
    NotTheDaemon {
        path: String,
        pid: String,
        reason: String,
    },
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
            .mode(MODE)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .map_err(|err| open_error(path, err))?;
        let meta = check_regular(path, &file)?;
        let euid = geteuid().as_raw();
        if meta.uid() != euid {
            return Err(unsafe_file(
                path,
                format!(
                    "is owned by uid {}, not by this user (uid {euid})",
                    meta.uid()
                ),
            ));
        }
        if meta.mode() & 0o777 != MODE {
            // A file left by an older version (0644): ours, so tighten it.
            file.set_permissions(fs::Permissions::from_mode(MODE))
                .map_err(io_error)?;
        }
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

/// Sends `signal` to the daemon holding the pidfile at `path`, once the pid
/// it names is verifiably that daemon (see [`verify_daemon`]).
pub fn signal_daemon(path: &Path, signal: Signal) -> Result<Pid, PidfileError> {
    let no_daemon = || PidfileError::NoDaemon {
        path: path.display().to_string(),
    };
    let file = match open_read(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Err(no_daemon()),
        Err(err) => return Err(open_error(path, err)),
    };
    check_regular(path, &file)?;
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
    let pid = match pid_text.parse::<i32>() {
        Ok(pid) if pid > 0 => Pid::from_raw(pid),
        _ => {
            return Err(PidfileError::NotTheDaemon {
                path: path.display().to_string(),
                pid: format!("{pid_text:?}"),
                reason: "not a process id".to_string(),
            })
        }
    };
    verify_daemon(&file, pid).map_err(|reason| PidfileError::NotTheDaemon {
        path: path.display().to_string(),
        pid: pid.to_string(),
        reason,
    })?;
    kill(pid, signal).map_err(|_| no_daemon())?;
    Ok(pid)
}

/// The process `pid` is the daemon of the pidfile open as `file`: it holds
/// the file's exclusive lock (one of its open files is this file, with a
/// `FLOCK WRITE` lock in its fdinfo) and runs the executable this process
/// runs (the same file, or the same path when a package upgrade replaced
/// it). Otherwise, why not.
fn verify_daemon(file: &File, pid: Pid) -> Result<(), String> {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    if !proc_dir.exists() {
        return Err("no process has that pid".to_string());
    }
    if !holds_lock(file, &proc_dir)? {
        return Err("it does not hold the pidfile's lock".to_string());
    }
    same_executable(&proc_dir)
}

/// True when the process of `proc_dir` has `file` open with an exclusive
/// `flock` on it.
fn holds_lock(file: &File, proc_dir: &Path) -> Result<bool, String> {
    let ours = file
        .metadata()
        .map_err(|err| format!("cannot read the pidfile: {err}"))?;
    let fds = fs::read_dir(proc_dir.join("fd"))
        .map_err(|err| format!("cannot read its open files: {err}"))?;
    for fd in fds.flatten() {
        let Ok(target) = fs::metadata(fd.path()) else {
            continue;
        };
        if target.dev() != ours.dev() || target.ino() != ours.ino() {
            continue;
        }
        let info =
            fs::read_to_string(proc_dir.join("fdinfo").join(fd.file_name())).unwrap_or_default();
        let locked = info.lines().any(|line| {
            line.starts_with("lock:") && line.contains(" FLOCK ") && line.contains(" WRITE ")
        });
        if locked {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The process of `proc_dir` runs the same executable as this process.
fn same_executable(proc_dir: &Path) -> Result<(), String> {
    let theirs_link = proc_dir.join("exe");
    let ours_link = Path::new("/proc/self/exe");
    if let (Ok(theirs), Ok(ours)) = (fs::metadata(&theirs_link), fs::metadata(ours_link)) {
        if theirs.dev() == ours.dev() && theirs.ino() == ours.ino() {
            return Ok(());
        }
    }
    let theirs =
        fs::read_link(&theirs_link).map_err(|err| format!("cannot read its executable: {err}"))?;
    let ours =
        fs::read_link(ours_link).map_err(|err| format!("cannot read /proc/self/exe: {err}"))?;
    // An upgrade replaced the binary under the running daemon: the kernel
    // names its old file `PATH (deleted)`.
    let without_deleted = |path: &Path| {
        let text = path.to_string_lossy().into_owned();
        text.strip_suffix(" (deleted)")
            .map(str::to_owned)
            .unwrap_or(text)
    };
    if without_deleted(&theirs) == without_deleted(&ours) {
        return Ok(());
    }
    Err(format!(
        "it runs {}, not {}",
        theirs.display(),
        ours.display()
    ))
}

/// Waits until no process holds the pidfile at `path` (the daemon exited).
pub fn wait_released(path: &Path, pid: Pid, timeout: Duration) -> Result<(), PidfileError> {
    let deadline = Instant::now() + timeout;
    loop {
        let held = match open_read(path) {
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
    let _ = file.take(MAX_LEN).read_to_string(&mut text);
    text.trim().to_string()
}

/// Opens the pidfile to read, never through a symbolic link, and without
/// blocking on a FIFO.
fn open_read(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

/// The pidfile is a regular file with one link: not a device, a FIFO, a
/// folder, or a hard link to some other file.
fn check_regular(path: &Path, file: &File) -> Result<fs::Metadata, PidfileError> {
    let meta = file.metadata().map_err(|source| PidfileError::Io {
        path: path.display().to_string(),
        source,
    })?;
    if !meta.file_type().is_file() {
        return Err(unsafe_file(path, "is not a regular file".to_string()));
    }
    if meta.nlink() > 1 {
        return Err(unsafe_file(
            path,
            format!("has {} hard links", meta.nlink()),
        ));
    }
    Ok(meta)
}

fn unsafe_file(path: &Path, reason: String) -> PidfileError {
    PidfileError::Unsafe {
        path: path.display().to_string(),
        reason,
    }
}

/// An open error, with a symbolic link (`O_NOFOLLOW`: ELOOP) and a folder
/// said as such.
fn open_error(path: &Path, err: io::Error) -> PidfileError {
    match err.raw_os_error() {
        Some(libc::ELOOP) => unsafe_file(path, "is a symbolic link".to_string()),
        Some(libc::EISDIR) => unsafe_file(path, "is not a regular file".to_string()),
        _ => PidfileError::Io {
            path: path.display().to_string(),
            source: err,
        },
    }
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
    fn the_pidfile_is_created_0600_and_an_older_0644_one_is_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.pid");
        let held = Pidfile::acquire(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        drop(held);
        fs::write(&path, "1\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let _held = Pidfile::acquire(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_symlink_a_fifo_or_a_hard_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        fs::write(&target, "precious\n").unwrap();
        let link = dir.path().join("link.pid");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = Pidfile::acquire(&link).unwrap_err();
        assert!(err.to_string().contains("is a symbolic link"), "{err}");
        let err = signal_daemon(&link, Signal::SIGHUP).unwrap_err();
        assert!(err.to_string().contains("is a symbolic link"), "{err}");

        let hard = dir.path().join("hard.pid");
        fs::hard_link(&target, &hard).unwrap();
        let err = Pidfile::acquire(&hard).unwrap_err();
        assert!(err.to_string().contains("has 2 hard links"), "{err}");
        assert_eq!(fs::read_to_string(&target).unwrap(), "precious\n");

        let fifo = dir.path().join("fifo.pid");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = Pidfile::acquire(&fifo).unwrap_err();
        assert!(err.to_string().contains("is not a regular file"), "{err}");
        let err = signal_daemon(&fifo, Signal::SIGHUP).unwrap_err();
        assert!(err.to_string().contains("is not a regular file"), "{err}");
    }

    /// The lock is held (by this test), but the pid the file names is a
    /// `sleep` that holds nothing: it is not signalled.
    #[test]
    fn a_pid_that_does_not_hold_the_lock_is_not_signalled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.pid");
        let mut sleeper = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        fs::write(&path, format!("{}\n", sleeper.id())).unwrap();
        let _lock = Flock::lock(File::open(&path).unwrap(), FlockArg::LockExclusive).unwrap();
        let err = signal_daemon(&path, Signal::SIGHUP).unwrap_err();
        assert!(
            err.to_string()
                .contains("it does not hold the pidfile's lock"),
            "{err}"
        );
        // A SIGHUP would have ended sleep by now.
        sleep(Duration::from_millis(300));
        assert!(sleeper.try_wait().unwrap().is_none(), "sleep was signalled");
        let _ = sleeper.kill();
        let _ = sleeper.wait();
    }

    #[test]
    fn missing_pidfile_means_no_daemon() {
        let dir = tempfile::tempdir().unwrap();
        let err = signal_daemon(&dir.path().join("none.pid"), Signal::SIGTERM).unwrap_err();
        assert!(err.to_string().starts_with("no daemon is running"), "{err}");
    }
}
