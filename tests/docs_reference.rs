//! docs/configuration.md against the config structs (src/config/file.rs):
//! every key the reference's key tables name is a field of the struct of
//! its table, and every field of a struct is named in its table's section
//! (in a key table, in backticks in its text, or as an example's key). So the reference cannot
//! drift from what the loader accepts.
//!
//! Both sides are read as text: a struct's table is the first backticked
//! `[table]` or `[[table]]` of its doc comment, and the structs from the one
//! documented as `service.toml` on belong to service.toml (file.rs keeps the
//! two files' structs in that order); the reference's tables are its
//! `` ### `[table]` `` headings under `## dispenser.toml` and
//! `## service.toml`.
//!
//! And docs/testing.md's list of what proves each claim of the README: one
//! item per item of README's "What it does", and every test it names
//! (`path::name`) is a test of that file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Which file a table belongs to, and its name (`[proxy]`, `[[network]]`, or
/// `` for the file's top level).
type TableKey = (&'static str, String);

/// Struct fields that are no key of their table: sub-tables and arrays of
/// tables documented under headings of their own, free-form tables, and
/// ignored upstream tables.
fn is_sub_table(field_type: &str) -> bool {
    [
        "Table",
        "Entry",
        "Ref",
        "BTreeMap<String, toml::Value>",
        "BTreeMap<String, String>",
    ]
    .iter()
    .any(|marker| field_type.contains(marker))
        && !field_type.starts_with("Option<BTreeMap")
}

/// The fields (serde names) of each struct of file.rs, by table.
fn struct_fields(source: &str) -> BTreeMap<TableKey, BTreeSet<String>> {
    let mut tables = BTreeMap::new();
    let mut file = "dispenser.toml";
    let mut doc = String::new();
    let mut current: Option<TableKey> = None;
    let mut rename: Option<String> = None;
    for line in source.lines() {
        let trimmed = line.trim();
        if let Some(text) = trimmed.strip_prefix("/// ") {
            if doc.is_empty() {
                doc = text.to_string();
            }
            continue;
        }
        if trimmed.starts_with("pub struct ") {
            if doc.starts_with("`service.toml`") {
                file = "service.toml";
            }
            let table = doc
                .split('`')
                .nth(1)
                .filter(|name| name.starts_with('['))
                .unwrap_or_default()
                .to_string();
            current = Some((file, table));
            doc.clear();
            continue;
        }
        if !trimmed.starts_with("#[") {
            doc.clear();
        }
        if let Some(attribute) = trimmed.strip_prefix("#[serde(") {
            rename = attribute
                .split("rename = \"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .map(str::to_string);
            continue;
        }
        if trimmed == "}" {
            current = None;
            continue;
        }
        let (Some(table), Some(field)) = (&current, trimmed.strip_prefix("pub ")) else {
            continue;
        };
        let Some((name, field_type)) = field.split_once(": ") else {
            continue;
        };
        let name = rename.take().unwrap_or_else(|| name.to_string());
        if is_sub_table(field_type) || name == "telemetry" {
            continue;
        }
        tables
            .entry(table.clone())
            .or_insert_with(BTreeSet::new)
            .insert(name);
    }
    tables
}

/// One table's section of the reference: the keys its key tables name, and
/// its whole text.
#[derive(Default)]
struct Section {
    keys: BTreeSet<String>,
    text: String,
}

/// The reference's sections, by table.
fn reference(doc: &str) -> BTreeMap<TableKey, Section> {
    let mut sections: BTreeMap<TableKey, Section> = BTreeMap::new();
    let mut file: Option<&'static str> = None;
    let mut table = String::new();
    let mut in_key_table = false;
    for line in doc.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            file = match heading.trim() {
                "dispenser.toml" => Some("dispenser.toml"),
                "service.toml" => Some("service.toml"),
                _ => None,
            };
            table.clear();
            continue;
        }
        let Some(file) = file else { continue };
        if let Some(heading) = line.strip_prefix("### ") {
            table = heading
                .split('`')
                .nth(1)
                .filter(|name| name.starts_with('['))
                .unwrap_or_default()
                .to_string();
            continue;
        }
        // `#### ...` headings (Commands, Memory, ...) stay in their table.
        let section = sections.entry((file, table.clone())).or_default();
        section.text.push_str(line);
        section.text.push('\n');
        if line.starts_with("| key |") {
            in_key_table = true;
            continue;
        }
        if !line.starts_with('|') {
            in_key_table = false;
            continue;
        }
        if in_key_table && !line.starts_with("| ---") {
            let first = line.split('|').nth(1).unwrap_or_default();
            for key in first.split(',') {
                let key = key.trim().trim_matches('`');
                if !key.is_empty() {
                    section.keys.insert(key.to_string());
                }
            }
        }
    }
    sections
}

/// The lines of the section of `doc` under `heading`, up to the next `## `.
fn section<'a>(doc: &'a str, heading: &str) -> Vec<&'a str> {
    doc.lines()
        .skip_while(|line| *line != heading)
        .skip(1)
        .take_while(|line| !line.starts_with("## "))
        .collect()
}

/// The `path::name` spans in backticks of `lines`.
fn cited_tests(lines: &[&str]) -> Vec<(String, String)> {
    let text = lines.join("\n");
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|span| span.split_once(".rs::"))
        .map(|(path, name)| (format!("{path}.rs"), name.to_string()))
        .collect()
}

/// True when `source` has `fn name(` under a `#[test]` attribute (other
/// attributes, such as `#[ignore]`, may sit between them).
fn is_test(source: &str, name: &str) -> bool {
    let lines: Vec<&str> = source.lines().collect();
    let signature = format!("fn {name}(");
    lines.iter().enumerate().any(|(at, line)| {
        line.trim_start().starts_with(&signature)
            && lines[..at]
                .iter()
                .rev()
                .take_while(|above| above.trim_start().starts_with("#["))
                .any(|above| above.trim() == "#[test]")
    })
}

#[test]
fn the_reference_names_exactly_the_keys_the_loader_accepts() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(root.join("src/config/file.rs")).expect("file.rs");
    let doc = std::fs::read_to_string(root.join("docs/configuration.md")).expect("reference");
    let fields = struct_fields(&source);
    let sections = reference(&doc);
    assert!(fields.len() >= 15, "file.rs read wrongly: {fields:?}");
    let mut problems = Vec::new();
    for ((file, table), names) in &fields {
        let Some(section) = sections.get(&(*file, table.clone())) else {
            problems.push(format!(
                "{file} {table}: no section in docs/configuration.md"
            ));
            continue;
        };
        for name in names {
            let named = section.keys.contains(name)
                || section.text.contains(&format!("`{name}"))
                || section.text.contains(&format!("\n{name} = "));
            if !named {
                problems.push(format!("{file} {table}: `{name}` is not documented"));
            }
        }
    }
    for ((file, table), section) in &sections {
        let known = fields.get(&(*file, table.clone()));
        for key in &section.keys {
            if !known.is_some_and(|names| names.contains(key)) {
                problems.push(format!(
                    "{file} {table}: docs name `{key}`, which the loader does not accept"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn testing_md_names_existing_tests_for_every_claim_of_the_readme() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let testing = std::fs::read_to_string(root.join("docs/testing.md")).expect("testing.md");
    let claims = section(&readme, "## What it does");
    let proofs = section(&testing, "## What proves each claim of the README");
    let items = |lines: &[&str]| lines.iter().filter(|line| line.starts_with("- ")).count();
    assert!(
        items(&claims) >= 5,
        "README's claims read wrongly: {claims:?}"
    );
    assert_eq!(
        items(&proofs),
        items(&claims),
        "docs/testing.md needs one item per claim of README's \"What it does\""
    );
    // Each item names at least one test.
    let mut item: Vec<&str> = Vec::new();
    let mut items_without_test = Vec::new();
    for line in proofs.iter().chain(std::iter::once(&"- end")) {
        if line.starts_with("- ") {
            if !item.is_empty() && cited_tests(&item).is_empty() {
                items_without_test.push(item.join(" "));
            }
            item.clear();
        }
        if !item.is_empty() || line.starts_with("- ") {
            item.push(line);
        }
    }
    assert!(items_without_test.is_empty(), "{items_without_test:#?}");
    let cited = cited_tests(&proofs);
    let missing: Vec<String> = cited
        .iter()
        .filter(|(path, name)| {
            let source = std::fs::read_to_string(root.join(path)).unwrap_or_default();
            !is_test(&source, name)
        })
        .map(|(path, name)| format!("{path}::{name}"))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/testing.md names tests that do not exist: {missing:#?}"
    );
}
