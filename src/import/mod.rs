//! `dispenser import compose`: turns a Compose file into Dispenser's files
//! (`dispenser.toml`, one folder per service with its `service.toml`, and
//! `dispenser.vars`). `yaml.rs` parses with line numbers, `template.rs` maps
//! `${VAR}` interpolation to variables, `compose.rs` maps the keys; this file
//! does the I/O and the messages. A key that cannot be mapped stops the import
//! (file:line) unless `--allow-lossy`; then every dropped key is listed.
//! Nothing is written over an existing file.

mod compose;
mod template;
mod yaml;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use dispenser_actors::files::read_bounded;

/// The largest Compose or env file read.
const MAX_INPUT_BYTES: u64 = 1024 * 1024;

/// `dispenser import compose FILE -o DIR [--allow-lossy]`.
pub fn compose(file: &Path, out_dir: &Path, allow_lossy: bool) -> ExitCode {
    match run(file, out_dir, allow_lossy) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(file: &Path, out_dir: &Path, allow_lossy: bool) -> Result<(), String> {
    let shown = file.display().to_string();
    let source = read(file)?.ok_or_else(|| format!("cannot read `{shown}`: no such file"))?;
    let root = yaml::parse(&source)
        .map_err(|error| format!("{shown}:{}: not valid YAML: {}", error.line, error.message))?;
    let compose_dir = absolute(file.parent().unwrap_or(Path::new(".")))?;
    let out_abs = absolute(out_dir)?;
    let read_env_file = |path: &Path| read(&compose_dir.join(path));
    let inputs = compose::Inputs {
        compose_name: &shown,
        compose_dir: &compose_dir,
        out_dir: &out_abs,
        read_env_file: &read_env_file,
    };
    let imported = compose::import(&root, &inputs).map_err(|fatal| {
        if fatal.line == 0 {
            // Not about a line of the Compose file (`.env` cannot be read).
            return fatal.message;
        }
        let key = if fatal.key.is_empty() {
            String::new()
        } else {
            format!("`{}` ", fatal.key)
        };
        format!("{key}({shown}:{}): {}", fatal.line, fatal.message)
    })?;
    let level = if allow_lossy { "warning" } else { "error" };
    for dropped in &imported.dropped {
        let verb = if allow_lossy {
            "dropped"
        } else {
            "cannot import"
        };
        eprintln!(
            "{level}: {verb} `{}` ({shown}:{}): {}",
            dropped.key, dropped.line, dropped.reason
        );
    }
    if !imported.dropped.is_empty() && !allow_lossy {
        return Err(format!(
            "{} key(s) cannot be imported; nothing was written (with --allow-lossy they are left out)",
            imported.dropped.len()
        ));
    }
    let config = out_dir.join("dispenser.toml");
    let mut targets = vec![config.clone(), out_dir.join("dispenser.vars")];
    targets.extend(
        imported
            .services
            .iter()
            .map(|(name, _)| out_dir.join(name).join("service.toml")),
    );
    if let Some(existing) = targets.iter().find(|path| path.exists()) {
        return Err(format!(
            "`{}` exists; import into an empty folder",
            existing.display()
        ));
    }
    write(&config, &imported.dispenser_toml)?;
    write(&out_dir.join("dispenser.vars"), &imported.vars)?;
    for (name, text) in &imported.services {
        write(&out_dir.join(name).join("service.toml"), text)?;
    }
    for note in &imported.notes {
        eprintln!("note: {note}");
    }
    println!(
        "imported {} service(s) into {}; check it with `dispenser -c {} --test`",
        imported.services.len(),
        out_dir.display(),
        config.display()
    );
    Ok(())
}

/// A file's text, `None` when it does not exist.
fn read(path: &Path) -> Result<Option<String>, String> {
    if !path.exists() {
        return Ok(None);
    }
    let bytes = read_bounded(path, MAX_INPUT_BYTES)
        .map_err(|err| format!("cannot read `{}`: {err}", path.display()))?
        .ok_or_else(|| format!("`{}` is larger than 1 MiB", path.display()))?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| format!("`{}` is not UTF-8", path.display()))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|err| format!("cannot create `{}`: {err}", parent.display()))?;
    }
    std::fs::write(path, text).map_err(|err| format!("cannot write `{}`: {err}", path.display()))
}

fn absolute(path: &Path) -> Result<PathBuf, String> {
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    std::path::absolute(path).map_err(|err| format!("cannot resolve `{}`: {err}", path.display()))
}
