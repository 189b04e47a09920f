//! `dispenser`: runs one VM's containers from files in version control.
//! (Temporary entry point until the config front-end lands.)

mod daemon;
mod pidfile;

fn main() -> std::process::ExitCode {
    let options = daemon::DaemonOptions {
        config: "dispenser.toml".into(),
        pid_file: "dispenser.pid".into(),
    };
    daemon::run(options, || {
        Err("the config front-end is not merged yet\n".to_string())
    })
}
