//! The benchmarks' stand-in for systemd's notification socket: binds a unix
//! datagram socket at the path given as the only argument and prints each
//! message the daemon sends (`READY=1`, `RELOADING=1`, ...) on one line,
//! prefixed with the wall-clock time it arrived (seconds since the epoch,
//! nanosecond digits), so a script can time start-up and reloads.
//!
//! Standard library only: `bench/scale.sh` builds it with plain `rustc`.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: notify_listen SOCKET_PATH");
        std::process::exit(2);
    };
    let _ = std::fs::remove_file(&path);
    let socket = UnixDatagram::bind(&path).unwrap_or_else(|err| {
        eprintln!("error: cannot bind {path}: {err}");
        std::process::exit(1);
    });
    let mut buffer = [0u8; 4096];
    let stdout = std::io::stdout();
    loop {
        let length = match socket.recv(&mut buffer) {
            Ok(length) => length,
            Err(err) => {
                eprintln!("error: receiving on {path}: {err}");
                std::process::exit(1);
            }
        };
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let message = String::from_utf8_lossy(&buffer[..length]).replace('\n', " ");
        let mut out = stdout.lock();
        let _ = writeln!(
            out,
            "{}.{:09} {}",
            at.as_secs(),
            at.subsec_nanos(),
            message.trim()
        );
        let _ = out.flush();
    }
}
