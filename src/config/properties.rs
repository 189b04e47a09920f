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
