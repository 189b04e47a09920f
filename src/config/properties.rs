//! Property tests of the config front-end on hostile input: the value
//! parsers, the renderer and the whole loader never panic; every diagnostic
//! points INTO its file (a real line, a column on it, the caret under real
//! text); no diagnostic ever shows a secret's value. Bounded: a few thousand
//! cases in total, seconds in CI. The same inputs are fuzzed in `fuzz/`.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};

use super::diagnostic::{Diagnostic, SourceFile};
use super::render::Renderer;
use super::secrets::LocalSecrets;
use super::values::{parse_cpus, parse_duration, parse_memory, split_command};
use super::{load, Diagnostics};

/// The value of the secret the generated trees read; never in a diagnostic.
const SECRET: &str = "Zq7-secret-VALUE-4x";

/// Fragments that matter to the parsers: template and TOML punctuation,
/// keys, multi-byte characters, line ends.
const TOKENS: &[&str] = &[
    "${",
    "}",
    "${ token }",
    "${ mode }",
    "${ nope }",
    "{%",
    "%}",
    "{% if mode == \"a\" %}",
    "{% endif %}",
    "{% else %}",
    "{#",
    "#}",
    "\n",
    "\r\n",
    "\r",
    "\t",
    " ",
    "\"",
    "'",
    "\"\"\"",
    "=",
    "[",
    "]",
    "[[",
    "]]",
    "{",
    ",",
    ".",
    ":",
    "@",
    "/",
    "#",
    "\\",
    "name",
    "image",
    "service",
    "port",
    "memory",
    "cpus",
    "cron",
    "é",
    "日本",
    "😀",
    "\u{0}",
    "\u{feff}",
    "512m",
    "0",
    "-1",
    "1e400",
    "99999999999999999999",
    "true",
    "[service]",
    "[[port]]",
    "host = 8080",
    "\n${ token } = 1\n",
    "\n[${ token }]\n",
    "\"${ token }\"",
    "${ token }.x = 1",
    "\n[[${ token }]]\n",
];

/// `PROPTEST_CASES` overrides the number of cases (a longer local run).
fn config(cases: u32) -> Config {
    Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(cases),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..Config::default()
    }
}

/// Text built from the tokens above and arbitrary characters.
fn hostile_text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            3 => prop::sample::select(TOKENS).prop_map(str::to_string),
            1 => any::<char>().prop_map(String::from),
            1 => "[a-z_]{1,8}",
        ],
        0..max,
    )
    .prop_map(|parts| parts.concat())
}

/// `base` with a few edits: tokens inserted and ranges cut, at char boundaries.
fn mutated(base: &'static str) -> impl Strategy<Value = String> {
    prop::collection::vec(
        (any::<prop::sample::Index>(), hostile_text(4), 0usize..12),
        0..5,
    )
    .prop_map(move |edits| {
        let mut text = base.to_string();
        for (at, insert, cut) in edits {
            let boundaries: Vec<usize> = text
                .char_indices()
                .map(|(i, _)| i)
                .chain([text.len()])
                .collect();
            let start = boundaries[at.index(boundaries.len())];
            let end = text[start..]
                .char_indices()
                .nth(cut)
                .map_or(text.len(), |(i, _)| start + i);
            text.replace_range(start..end, &insert);
        }
        text
    })
}

const DISPENSER_TOML: &str = "delay = 60\n\n[[service]]\npath = \"web\"\n\n[[network]]\nname = \"backend\"\ndriver = \"bridge\"\n\n[proxy]\nenabled = true\nstrategy = \"both\"\nconnect_timeout = \"2s\"\n\n[daemon]\ninstance = \"i-${ mode }\"\ntimezone = \"UTC\"\n";

const SERVICE_TOML: &str = "[service]\nname = \"web\"\nimage = \"nginx:${ mode }\"\nrestart = \"unless-stopped\"\nmemory = \"256m\"\ncpus = \"0.5\"\ncommand = \"sh -c 'echo hi'\"\n\n[[port]]\nhost = 8080\ncontainer = 80\n\n[[network]]\nname = \"backend\"\n\n[env]\nTOKEN = \"${ token }\"\n\n[dispenser]\nwatch = true\ncron = \"*/5 * * * *\"\n\n[proxy]\nhost = \"app.example.com\"\nservice_port = 80\n";

const VARS: &str = "mode = \"a\"\ntoken = { source = \"file\", path = \"secret.txt\" }\n";

/// Checks that a diagnostic points into `files` (display -> source text).
fn assert_points_into(diagnostic: &Diagnostic, files: &BTreeMap<String, String>) {
    let Some(snippet) = &diagnostic.snippet else {
        return;
    };
    let path = diagnostic.path.as_deref().unwrap_or_default();
    let source = files
        .get(path)
        .unwrap_or_else(|| panic!("diagnostic names an unknown file `{path}`: {diagnostic}"));
    let lines: Vec<&str> = source.split('\n').collect();
    assert!(
        snippet.line >= 1 && snippet.line <= lines.len(),
        "line {} outside 1..={}: {diagnostic}",
        snippet.line,
        lines.len()
    );
    let line = lines[snippet.line - 1].trim_end_matches('\r');
    assert_eq!(snippet.text, line, "the shown line is not the file's line");
    let length = line.chars().count();
    assert!(snippet.column >= 1 && snippet.width >= 1, "{diagnostic}");
    if length == 0 {
        assert_eq!((snippet.column, snippet.width), (1, 1), "{diagnostic}");
    } else {
        assert!(
            snippet.column - 1 + snippet.width <= length,
            "caret {}+{} past the end of a {length}-character line: {diagnostic}",
            snippet.column,
            snippet.width
        );
    }
}

fn assert_sound(diagnostics: &Diagnostics, files: &BTreeMap<String, String>) {
    for diagnostic in &diagnostics.items {
        assert_points_into(diagnostic, files);
    }
    let text = diagnostics.to_string();
    assert!(!text.contains(SECRET), "a secret leaked:\n{text}");
}

/// Writes a tree, loads it, checks every diagnostic.
fn load_tree(dispenser: &str, service: &str, vars: &str) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let root = dir.path();
    let write = |relative: &str, text: &str| {
        let path = root.join(relative);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    };
    write("dispenser.toml", dispenser);
    write("web/service.toml", service);
    write("dispenser.vars", vars);
    write("secret.txt", SECRET);
    let display = |relative: &str| super::paths::display(&root.join(relative));
    let files: BTreeMap<String, String> = [
        (display("dispenser.toml"), dispenser.to_string()),
        (display("web/service.toml"), service.to_string()),
        (display("dispenser.vars"), vars.to_string()),
    ]
    .into();
    let result = load(&root.join("dispenser.toml"), &LocalSecrets::new(root));
    let diagnostics = match result {
        Ok(loaded) => loaded.warnings,
        Err(diagnostics) => diagnostics,
    };
    assert_sound(&diagnostics, &files);
}

/// Renders `source`; on error, the diagnostic built from its span must point into it.
fn check_render(source: &str, variables: &BTreeMap<String, String>) {
    let renderer = Renderer::new();
    match renderer.render(source, variables) {
        Ok(rendered) => {
            let file = SourceFile::rendered("t.toml", source.to_string(), rendered.clone());
            // Any span of the rendered text maps into the source.
            for start in [0, rendered.len() / 2, rendered.len()] {
                let diagnostic = file.error_at(start..rendered.len(), "m", "l");
                assert_points_into(&diagnostic, &[("t.toml".into(), source.into())].into());
            }
        }
        Err(error) => {
            if let Some(span) = &error.span {
                assert!(
                    span.start <= span.end && span.end <= source.len(),
                    "{error:?}"
                );
                let file = SourceFile::plain("t.toml", source);
                let diagnostic = file.error_at_source(span.clone(), error.message, error.label);
                assert_points_into(&diagnostic, &[("t.toml".into(), source.into())].into());
            }
        }
    }
}

proptest! {
    #![proptest_config(config(3_000))]

    #[test]
    fn value_parsers_never_panic(text in hostile_text(12), number in any::<f64>()) {
        let _ = parse_memory(&text);
        let _ = parse_duration(&text);
        let _ = split_command(&text);
        let _ = parse_cpus(number);
    }

    #[test]
    fn memory_round_trips(number in 1u64..1 << 20, unit in 0usize..5, upper in any::<bool>()) {
        let (suffix, multiplier) = [("b", 1u64), ("k", 1 << 10), ("m", 1 << 20), ("g", 1 << 30), ("t", 1 << 40)][unit];
        let suffix = if upper { suffix.to_uppercase() } else { suffix.to_string() };
        prop_assert_eq!(parse_memory(&format!("{number}{suffix}")), Ok(number * multiplier));
    }

    #[test]
    fn durations_add_up(parts in prop::collection::vec((0u64..10_000, 0usize..5), 1..4)) {
        let mut text = String::new();
        let mut millis = 0u64;
        for (number, unit) in parts {
            let (suffix, factor) = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)][unit];
            text.push_str(&format!("{number}{suffix}"));
            millis += number * factor;
        }
        let expected = if u128::from(millis) <= super::values::MAX_DURATION.as_millis() {
            Ok(u128::from(millis))
        } else {
            Err("a duration cannot be longer than 365 days".to_string())
        };
        prop_assert_eq!(parse_duration(&text).map(|d| d.as_millis()), expected);
    }

    #[test]
    fn huge_durations_are_errors_not_panics(parts in prop::collection::vec((any::<u64>(), 0usize..5), 1..4)) {
        let text: String = parts
            .iter()
            .map(|(number, unit)| format!("{number}{}", ["ms", "s", "m", "h", "d"][*unit]))
            .collect();
        if let Ok(duration) = parse_duration(&text) {
            prop_assert!(duration <= super::values::MAX_DURATION);
        }
    }

    #[test]
    fn quoted_words_split_back(words in prop::collection::vec("[^'\"]{0,8}", 0..6)) {
        let line: Vec<String> = words.iter().map(|word| format!("'{word}'")).collect();
        prop_assert_eq!(split_command(&line.join(" ")), Ok(words));
    }

    #[test]
    fn templates_never_panic_and_errors_point_into_the_source(
        source in hostile_text(30),
        values in prop::collection::vec(hostile_text(3), 2),
    ) {
        let variables: BTreeMap<String, String> =
            [("mode".to_string(), values[0].clone()), ("token".to_string(), values[1].clone())].into();
        check_render(&source, &variables);
    }

}

// The loader writes a tree per case: fewer cases, still about 3 seconds.
proptest! {
    #![proptest_config(config(1_000))]

    #[test]
    fn loader_on_mutated_files(
        dispenser in mutated(DISPENSER_TOML),
        service in mutated(SERVICE_TOML),
        vars in mutated(VARS),
    ) {
        prop_assume!(![&dispenser, &service, &vars].iter().any(|t| t.contains(SECRET)));
        load_tree(&dispenser, &service, &vars);
    }

    #[test]
    fn loader_on_random_files(dispenser in hostile_text(40), service in hostile_text(40)) {
        load_tree(&dispenser, &service, VARS);
    }
}

#[test]
fn the_unmutated_tree_loads() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let root = dir.path();
    std::fs::create_dir_all(root.join("web")).expect("mkdir");
    std::fs::write(root.join("dispenser.toml"), DISPENSER_TOML).expect("write");
    std::fs::write(root.join("web/service.toml"), SERVICE_TOML).expect("write");
    std::fs::write(root.join("dispenser.vars"), VARS).expect("write");
    std::fs::write(root.join("secret.txt"), SECRET).expect("write");
    let loaded = load(&root.join("dispenser.toml"), &LocalSecrets::new(root));
    assert!(loaded.is_ok(), "{}", loaded.err().unwrap_or_default());
    assert!(Path::new(root).join("web").is_dir());
}

// ---------------------------------------------------------------------------
// A value is always data: whatever a variable holds, it never
// adds, removes or renames a key. Substituted in every TOML context, a value
// either gives a file with exactly the keys a harmless value gives and reads
// back identical, or it is refused by an error that names the expression and
// never holds the value.

/// Marks the values whose absence from error messages is checked.
const LEAK_MARK: &str = "Zq9-leak-MARK";

/// Fragments that matter to TOML and to the escaping.
const VALUE_TOKENS: &[&str] = &[
    "\"",
    "'",
    "'''",
    "\"\"\"",
    "\\",
    "\\\"",
    "\n",
    "\r\n",
    "\r",
    "\t",
    " ",
    "[",
    "]",
    "[[volume]]",
    "=",
    "#",
    ",",
    "{",
    "}",
    ".",
    ":",
    "+",
    "-",
    "_",
    "a",
    "Z",
    "0",
    "9",
    "true",
    "1979-05-27",
    "07:32:00",
    "inf",
    "nan",
    "0x1F",
    "1e3",
    "\u{0}",
    "\u{7f}",
    "\u{1b}",
    "\u{85}",
    "é",
    "😀",
    "\u{feff}",
    "\u{fdd0}",
    "${",
    "}}",
    "{%",
    "x\"\n[[volume]]\nsource = \"/\"\ntarget = \"/host\"\n#",
];

/// Arbitrary strings, TOML-ish fragments, and both with the leak mark.
fn hostile_value() -> impl Strategy<Value = String> {
    let fragments = prop::collection::vec(
        prop_oneof![
            3 => prop::sample::select(VALUE_TOKENS).prop_map(str::to_string),
            1 => any::<char>().prop_map(String::from),
            1 => "[a-z0-9]{1,6}",
        ],
        0..8,
    )
    .prop_map(|parts| parts.concat());
    (
        prop_oneof![2 => fragments, 1 => any::<String>()],
        any::<bool>(),
    )
        .prop_map(|(value, marked)| {
            if marked {
                format!("{value}{LEAK_MARK}")
            } else {
                value
            }
        })
}

/// How a context's value reads back.
#[derive(Clone, Copy)]
enum ReadBack {
    /// The string at this path is the value with this text around it.
    Text(&'static [&'static str], &'static str, &'static str),
    /// The string at this path is the value, twice.
    Twice(&'static [&'static str]),
    /// The value at this path is the value parsed as a TOML value.
    Bare(&'static [&'static str]),
    /// The value is the key named `kslot` in the harmless file.
    Key,
    /// Nothing reads it (a comment): only the keys are compared.
    Nothing,
}

/// Every place a value can be written, with a harmless value for each.
const CONTEXTS: &[(&str, &str, ReadBack)] = &[
    (
        "[service]\nname = \"web\"\n\n[env]\nA = \"1\"\nTOKEN = \"${ v }\"\n",
        "ok",
        ReadBack::Text(&["env", "TOKEN"], "", ""),
    ),
    (
        "t = \"pre-${ v }-post\"\nafter_9Q = 1\n",
        "ok",
        ReadBack::Text(&["t"], "pre-", "-post"),
    ),
    (
        "t = \"${ v }${ v }\"\nafter_9Q = 1\n",
        "ok",
        ReadBack::Twice(&["t"]),
    ),
    (
        "t = \"\"\"${ v }\"\"\"\nafter_9Q = 1\n",
        "ok",
        ReadBack::Text(&["t"], "", ""),
    ),
    (
        "t = \"\"\"q\"${ v }\"\"\"\nafter_9Q = 1\n",
        "ok",
        ReadBack::Text(&["t"], "q\"", ""),
    ),
    (
        "t = \"\"\"\\\n   ${ v }\"\"\"\nafter_9Q = 1\n",
        "ok",
        ReadBack::Text(&["t"], "", ""),
    ),
    (
        "t = '${ v }'\nafter_9Q = 1\n",
        "ok",
        ReadBack::Text(&["t"], "", ""),
    ),
    (
        "t = '''${ v }'''\nafter_9Q = 1\n",
        "ok",
        ReadBack::Text(&["t"], "", ""),
    ),
    (
        "t = '''a\n${ v }b'''\nafter_9Q = 1\n",
        "ok",
        ReadBack::Text(&["t"], "a\n", "b"),
    ),
    (
        "t = '''a'${ v }'''\nafter_9Q = 1\n",
        "ok",
        ReadBack::Text(&["t"], "a'", ""),
    ),
    ("t = ${ v }\nafter_9Q = 1\n", "1", ReadBack::Bare(&["t"])),
    ("t = [${ v }, 2]\nafter_9Q = 1\n", "1", ReadBack::Nothing),
    (
        "t = { a = ${ v } }\nafter_9Q = 1\n",
        "1",
        ReadBack::Bare(&["t", "a"]),
    ),
    ("${ v } = 1\nafter_9Q = 1\n", "kslot", ReadBack::Key),
    (
        "[t]\n${ v } = 1\n\n[u]\nafter_9Q = 1\n",
        "kslot",
        ReadBack::Key,
    ),
    ("[t.${ v }]\nx = 1\n", "kslot", ReadBack::Key),
    ("t = { ${ v } = 1 }\nafter_9Q = 1\n", "kslot", ReadBack::Key),
    ("\"${ v }\" = 1\nafter_9Q = 1\n", "kslot", ReadBack::Key),
    ("'${ v }' = 1\nafter_9Q = 1\n", "kslot", ReadBack::Key),
    ("# note: ${ v }\nafter_9Q = 1\n", "ok", ReadBack::Nothing),
    (
        "after_9Q = 1 # ${ v }\nlast_9Q = 2\n",
        "ok",
        ReadBack::Nothing,
    ),
    (
        "t = [\"${ v }\", # ${ v }\n  'z']\nafter_9Q = 1\n",
        "ok",
        ReadBack::Nothing,
    ),
];

/// Every key path of a document (tables, arrays of tables by index).
fn key_paths(
    value: &toml::Value,
    prefix: &mut Vec<String>,
    out: &mut std::collections::BTreeSet<Vec<String>>,
) {
    match value {
        toml::Value::Table(table) => {
            for (key, item) in table {
                prefix.push(key.clone());
                out.insert(prefix.clone());
                key_paths(item, prefix, out);
                prefix.pop();
            }
        }
        toml::Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                prefix.push(format!("[{index}]"));
                key_paths(item, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn parse_keys(text: &str) -> Option<(toml::Value, std::collections::BTreeSet<Vec<String>>)> {
    let table: toml::Table = toml::from_str(text).ok()?;
    let value = toml::Value::Table(table);
    let mut paths = std::collections::BTreeSet::new();
    key_paths(&value, &mut Vec::new(), &mut paths);
    Some((value, paths))
}

fn at<'a>(value: &'a toml::Value, path: &[&str]) -> Option<&'a toml::Value> {
    path.iter().try_fold(value, |value, key| value.get(*key))
}

/// The property, for one context and one value.
fn check_value_is_data(
    template: &str,
    harmless: &str,
    read: ReadBack,
    value: &str,
) -> Result<(), TestCaseError> {
    let renderer = Renderer::new();
    let render =
        |value: &str| renderer.render(template, &[("v".to_string(), value.to_string())].into());
    let harmless_text =
        render(harmless).map_err(|e| TestCaseError::fail(format!("harmless: {e:?}")))?;
    let (_, harmless_keys) = parse_keys(&harmless_text).ok_or_else(|| {
        TestCaseError::fail(format!("the harmless file must parse: {harmless_text}"))
    })?;
    match render(value) {
        Err(error) => {
            let expression = template.find("${ v }").map(|start| start..start + 6);
            prop_assert_eq!(
                &error.span,
                &expression,
                "the error points at `${{ v }}`: {:?}",
                error
            );
            prop_assert!(
                error.message.contains("`${ v }`"),
                "the error names `${{ v }}`: {:?}",
                error
            );
            let text = format!("{error:?}");
            prop_assert!(!text.contains(LEAK_MARK), "the value leaked: {}", text);
        }
        Ok(text) => {
            let expected_keys: std::collections::BTreeSet<Vec<String>> = match read {
                ReadBack::Key => harmless_keys
                    .iter()
                    .map(|path| {
                        path.iter()
                            .map(|key| {
                                if key == "kslot" {
                                    value.to_string()
                                } else {
                                    key.clone()
                                }
                            })
                            .collect()
                    })
                    .collect(),
                _ => harmless_keys.clone(),
            };
            let Some((document, keys)) = parse_keys(&text) else {
                return Err(TestCaseError::fail(format!(
                    "accepted but does not parse:\n{text}"
                )));
            };
            prop_assert_eq!(&keys, &expected_keys, "the keys changed:\n{}", text);
            match read {
                ReadBack::Text(path, before, after) => {
                    let got = at(&document, path).and_then(toml::Value::as_str);
                    let expected = format!("{before}{value}{after}");
                    prop_assert_eq!(got, Some(expected.as_str()), "{}", text);
                }
                ReadBack::Twice(path) => {
                    let got = at(&document, path).and_then(toml::Value::as_str);
                    let expected = format!("{value}{value}");
                    prop_assert_eq!(got, Some(expected.as_str()), "{}", text);
                }
                ReadBack::Bare(path) => {
                    let alone: toml::Table =
                        toml::from_str(&format!("x = {value}")).map_err(|_| {
                            TestCaseError::fail(format!(
                                "accepted a bare value that is not one:\n{text}"
                            ))
                        })?;
                    // As text: NaN is not equal to itself.
                    let got = at(&document, path).map(toml::Value::to_string);
                    prop_assert_eq!(got, alone.get("x").map(toml::Value::to_string), "{}", text);
                }
                ReadBack::Key | ReadBack::Nothing => {}
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(4_000))]

    #[test]
    fn a_value_never_adds_or_removes_a_key(context in 0..CONTEXTS.len(), value in hostile_value()) {
        let (template, harmless, read) = CONTEXTS[context];
        check_value_is_data(template, harmless, read, &value)?;
    }
}

#[test]
fn every_context_accepts_its_harmless_value_and_refuses_the_injection() {
    for (template, harmless, read) in CONTEXTS {
        check_value_is_data(template, harmless, *read, harmless).unwrap();
        let injection = "x\"\n[[volume]]\nsource = \"/\"\ntarget = \"/host\"\n#";
        check_value_is_data(template, harmless, *read, injection).unwrap();
    }
}

// Through the whole loader: the value of a file secret, as the last `[env]`
// value of a service, either is that value in the plan (and the service has
// no volume), or the load fails with an error naming `${ token }`.
proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn a_secret_in_env_is_data_through_the_loader(value in hostile_value()) {
        // A file secret loses one trailing line end; UTF-8 text only.
        prop_assume!(!value.ends_with('\n') && !value.is_empty());
        let dir = tempfile::tempdir().expect("a temporary folder");
        let root = dir.path();
        std::fs::create_dir_all(root.join("web")).expect("mkdir");
        std::fs::write(root.join("dispenser.toml"), "[[service]]\npath = \"web\"\n").expect("write");
        std::fs::write(
            root.join("web/service.toml"),
            "[service]\nname = \"web\"\nimage = \"nginx:1.27\"\n\n[env]\nMODE = \"a\"\nTOKEN = \"${ token }\"\n",
        )
        .expect("write");
        std::fs::write(root.join("dispenser.vars"), "token = { source = \"file\", path = \"secret.txt\" }\n").expect("write");
        std::fs::write(root.join("secret.txt"), &value).expect("write");
        match load(&root.join("dispenser.toml"), &LocalSecrets::new(root)) {
            Ok(loaded) => {
                let web = &loaded.plan.services["web"];
                prop_assert!(web.container.volumes.is_empty());
                prop_assert_eq!(web.container.env.len(), 2);
                prop_assert_eq!(web.container.env["TOKEN"].expose(), value.as_str());
            }
            Err(diagnostics) => {
                let text = diagnostics.to_string();
                prop_assert!(!text.contains(LEAK_MARK), "the value leaked:\n{}", text);
                prop_assert!(text.contains("${ token }"), "{}", text);
            }
        }
    }
}
