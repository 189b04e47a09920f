//! What an export cannot carry over: each finding is a diagnostic at the file,
//! line and key it is about. A lossy mapping is an error unless
//! `--allow-lossy`, an absolute host path unless `--allow-host-paths`; either
//! way each one is listed. The summary says what the target will not do that
//! Dispenser did, and what to install.

use std::collections::BTreeSet;

use dispenser::config::{Diagnostic, Origins, Place, Severity};

/// The flags that turn refusals into listed warnings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allow {
    pub lossy: bool,
    pub host_paths: bool,
}

/// Every finding of one export, and the summary's lines.
pub struct Findings<'a> {
    origins: &'a Origins,
    allow: Allow,
    pub items: Vec<Diagnostic>,
    /// What the target will not do that Dispenser did.
    pub not_done: BTreeSet<String>,
    /// What to install or create before applying the files.
    pub install: BTreeSet<String>,
}

/// Where a finding points: a key of a file, or the key's value.
#[derive(Debug, Clone, Copy)]
pub struct At<'a> {
    pub place: Place<'a>,
    pub path: &'a str,
    pub value: bool,
}

impl<'a> At<'a> {
    /// The key `path` of `service`'s service.toml.
    pub fn key(service: &'a str, path: &'a str) -> Self {
        At {
            place: Place::Service(service),
            path,
            value: false,
        }
    }

    /// The value at `path` of `service`'s service.toml.
    pub fn value(service: &'a str, path: &'a str) -> Self {
        At {
            place: Place::Service(service),
            path,
            value: true,
        }
    }
}

impl<'a> Findings<'a> {
    pub fn new(origins: &'a Origins, allow: Allow) -> Self {
        Findings {
            origins,
            allow,
            items: Vec::new(),
            not_done: BTreeSet::new(),
            install: BTreeSet::new(),
        }
    }

    /// A mapping that loses or changes behavior: an error unless `--allow-lossy`.
    pub fn lossy(&mut self, at: At<'_>, message: String, label: &str, instead: &str) {
        let severity = match self.allow.lossy {
            true => Severity::Warning,
            false => Severity::Error,
        };
        let help = match self.allow.lossy {
            true => instead.to_string(),
            false => format!("{instead}; pass --allow-lossy to export it so"),
        };
        self.push(severity, at, message, label, help);
    }

    /// An absolute host path: an error unless `--allow-host-paths`.
    pub fn host_path(&mut self, at: At<'_>, message: String, instead: &str) {
        let severity = match self.allow.host_paths {
            true => Severity::Warning,
            false => Severity::Error,
        };
        let help = match self.allow.host_paths {
            true => instead.to_string(),
            false => format!("{instead}; pass --allow-host-paths to export it so"),
        };
        self.push(severity, at, message, "host path", help);
    }

    /// What no flag allows: always an error.
    pub fn refuse(&mut self, at: At<'_>, message: String, label: &str, help: &str) {
        self.push(Severity::Error, at, message, label, help.to_string());
    }

    /// A line of the summary: something the target will not do.
    pub fn not_done(&mut self, line: impl Into<String>) {
        self.not_done.insert(line.into());
    }

    /// A line of the summary: something to install or create.
    pub fn install(&mut self, line: impl Into<String>) {
        self.install.insert(line.into());
    }

    /// True when some finding is an error.
    pub fn refused(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
    }

    fn push(&mut self, severity: Severity, at: At<'_>, message: String, label: &str, help: String) {
        // A message quotes values (a schedule, a user, a path): one that
        // came from a secret is shown masked, as every diagnostic does.
        let (message, _) = self.origins.mask_secrets(&message);
        let (help, _) = self.origins.mask_secrets(&help);
        let diagnostic = self
            .origins
            .diagnostic(severity, at.place, at.path, at.value, message, label)
            .with_help(help);
        self.items.push(diagnostic);
    }
}
