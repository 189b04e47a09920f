//! A real DNS server for the DNS-01 tests (of the runtime crate and, by
//! `#[path]`, of the binary's runtime tests): Debian's `named` (bind9) on a
//! free port of 127.0.0.1, primary for `example.test`, taking updates
//! signed with a TSIG key made here, for `_acme-challenge` TXT records only
//! (the `update-policy` docs/certificates.md shows). It stops in `Drop`.

use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;

/// Longest wait for named to answer.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The zone the server is primary for.
pub const ZONE: &str = "example.test.";
/// The name of the TSIG key it accepts.
pub const KEY_NAME: &str = "dispenser-test-key.";

/// A running named and its files.
pub struct Bind {
    pub dir: tempfile::TempDir,
    /// `127.0.0.1:port`, TCP and UDP.
    pub server: String,
    /// The TSIG secret, base64.
    pub secret: String,
    child: Option<Child>,
}

impl Bind {
    /// Starts named with `example.test` and the key.
    pub fn start() -> Bind {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port_both();
        let mut key = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut random| random.read_exact(&mut key))
            .expect("read /dev/urandom");
        let secret = base64::engine::general_purpose::STANDARD.encode(key);
        write_files(dir.path(), port, &secret);
        let log = std::fs::File::create(dir.path().join("named.log")).expect("named log");
        let child = Command::new("named")
            .arg("-g")
            .arg("-c")
            .arg(dir.path().join("named.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("named runs (apt-get install bind9)");
        let bind = Bind {
            dir,
            server: format!("127.0.0.1:{port}"),
            secret,
            child: Some(child),
        };
        bind.wait_answering();
        bind
    }

    /// named's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default()
    }

    /// The TXT values at `name` (`_acme-challenge.example.test`), unquoted.
    pub fn txt(&self, name: &str) -> Vec<String> {
        dig_short(&self.server, name, "TXT")
            .iter()
            .map(|line| line.trim_matches('"').to_string())
            .collect()
    }

    fn wait_answering(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        while dig_short(&self.server, ZONE, "SOA").is_empty() {
            assert!(
                Instant::now() < deadline,
                "named does not answer on {}:\n{}",
                self.server,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The answer lines of `dig +short` for `name` `rtype`, asked of `server`
/// (`127.0.0.1:port`) over TCP, once, with a one-second wait.
pub fn dig_short(server: &str, name: &str, rtype: &str) -> Vec<String> {
    let (host, port) = server.split_once(':').expect("host:port");
    let output = Command::new("dig")
        .args([&format!("@{host}"), "-p", port, "+tcp", "+short"])
        .args(["+tries=1", "+time=1", name, rtype])
        .output()
        .expect("dig runs (apt-get install bind9-dnsutils)");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with(';'))
        .map(str::to_string)
        .collect()
}

impl Drop for Bind {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn write_files(dir: &Path, port: u16, secret: &str) {
    let dir_text = dir.display();
    let zone = "$TTL 60\n\
        @ IN SOA ns.example.test. admin.example.test. 1 60 60 600 60\n\
        @ IN NS ns.example.test.\n\
        ns IN A 127.0.0.1\n";
    std::fs::write(dir.join("example.test.zone"), zone).expect("write the zone");
    let key = KEY_NAME.trim_end_matches('.');
    let conf = format!(
        "options {{ directory \"{dir_text}\"; pid-file \"{dir_text}/named.pid\";\n\
         listen-on port {port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }};\n\
         recursion no; dnssec-validation no; notify no; }};\n\
         controls {{ }};\n\
         key \"{key}\" {{ algorithm hmac-sha256; secret \"{secret}\"; }};\n\
         zone \"example.test\" {{ type primary; file \"{dir_text}/example.test.zone\";\n\
         update-policy {{ grant {key} name _acme-challenge.example.test. TXT; }}; }};\n"
    );
    std::fs::write(dir.join("named.conf"), conf).expect("write named.conf");
}

/// A port free for both TCP and UDP on 127.0.0.1.
fn free_port_both() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let port = tcp.local_addr().expect("local address").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
