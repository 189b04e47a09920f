//! Templates keep every value data and stop a runaway template quickly.

use std::time::{Duration, Instant};

use super::*;

/// The value that, substituted raw as the last `[env]` value, added a
/// writable bind mount of the host's root.
const INJECTION: &str = "x\"\n[[volume]]\nsource = \"/\"\ntarget = \"/host\"\n#";

fn render(source: &str, pairs: &[(&str, &str)]) -> Result<String, RenderError> {
    let variables = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Renderer::new().render(source, &variables)
}

fn table(text: &str) -> toml::Table {
    toml::from_str(text).unwrap_or_else(|error| panic!("{text}\n{error}"))
}

#[test]
fn the_volume_injection_stays_inside_its_string() {
    let source = "[service]\nname = \"web\"\n\n[env]\nTOKEN = \"${ token }\"\n";
    let rendered = render(source, &[("token", INJECTION)]).unwrap();
    let parsed = table(&rendered);
    assert!(parsed.get("volume").is_none(), "{rendered}");
    assert_eq!(parsed["env"]["TOKEN"].as_str(), Some(INJECTION));
    assert_eq!(rendered.lines().count(), source.lines().count());
}

#[test]
fn values_that_would_break_out_are_refused_by_name() {
    let cases = [
        ("a = '${ token }'\n", "cannot go in a '...' string"),
        (
            "a = '''${ token }\n'''\n",
            "cannot go in a '''...''' string",
        ),
        ("a = ${ token }\n", "written without quotes"),
        ("${ token } = 1\n", "used as a key"),
        ("[${ token }]\n", "used as a key"),
        ("a = { ${ token } = 1 }\n", "used as a key"),
        ("a = 1 ${ token }\n", "written without quotes"),
        ("a = \"\\${ token }\"\n", "follows a `\\`"),
    ];
    for (source, expected) in cases {
        let value = if source.contains("'''") {
            "a'''b"
        } else {
            INJECTION
        };
        let error = render(source, &[("token", value)]).unwrap_err();
        assert!(error.message.contains(expected), "{source}: {error:?}");
        assert!(
            error.message.contains("`${ token }`"),
            "{source}: {error:?}"
        );
        let text = format!("{error:?}");
        assert!(
            !text.contains("/host") && !text.contains("a'''b"),
            "the value leaked: {text}"
        );
        let span = error.span.expect("a span");
        assert_eq!(&source[span], "${ token }", "{source}");
    }
    // After a value, where TOML expects nothing: the file does not
    // parse, and the value is not written in it.
    let rendered = render("a = \"b\" ${ token }\n", &[("token", INJECTION)]).unwrap();
    assert!(!rendered.contains("/host"), "{rendered}");
    assert!(toml::from_str::<toml::Table>(&rendered).is_err());
    // In a '''...''' string, line ends are data too.
    let rendered = render("a = '''${ token }'''\n", &[("token", INJECTION)]).unwrap();
    assert_eq!(table(&rendered)["a"].as_str(), Some(INJECTION));
}

#[test]
fn legitimate_values_read_back_identical() {
    let password = "p@ss\"w'o\\rd #1 = [x] {y}";
    let source = "a = \"${ pw }\"\nb = \"\"\"${ pw }\"\"\"\nc = \"${ user }-${ host }:${ port }\"\nport = ${ port }\nratio = ${ ratio }\nflag = ${ flag }\nwhen = ${ date }\nlist = [${ port }, ${ ratio }]\n\"${ pw }\" = 1\nd = '${ user }'\ne = '''${ multi }'''\n${ user } = 2\n[t.${ user }]\nx = 1 # ${ multi }\n";
    let multi = "line one\nline 'two'";
    let rendered = render(
        source,
        &[
            ("pw", password),
            ("user", "app"),
            ("host", "db"),
            ("port", "5432"),
            ("ratio", "0.5"),
            ("flag", "true"),
            ("date", "1979-05-27T07:32:00Z"),
            ("multi", multi),
        ],
    )
    .unwrap();
    let parsed = table(&rendered);
    assert_eq!(parsed["a"].as_str(), Some(password));
    assert_eq!(parsed["b"].as_str(), Some(password));
    assert_eq!(parsed["c"].as_str(), Some("app-db:5432"));
    assert_eq!(parsed["port"].as_integer(), Some(5432));
    assert_eq!(parsed["ratio"].as_float(), Some(0.5));
    assert_eq!(parsed["flag"].as_bool(), Some(true));
    assert!(parsed["when"].is_datetime());
    assert_eq!(parsed["list"].as_array().map(Vec::len), Some(2));
    assert_eq!(parsed[password].as_integer(), Some(1));
    assert_eq!(parsed["d"].as_str(), Some("app"));
    assert_eq!(parsed["e"].as_str(), Some(multi));
    assert_eq!(parsed["app"].as_integer(), Some(2));
    assert_eq!(parsed["t"]["app"]["x"].as_integer(), Some(1));
    // The value in the comment stays in the comment.
    assert_eq!(parsed.len(), 13, "{rendered}");
}

#[test]
fn an_empty_value_is_an_empty_string_or_refused_where_a_value_is_expected() {
    let rendered = render("a = \"${ v }\"\nb = 1\n", &[("v", "")]).unwrap();
    assert_eq!(rendered, "a = \"\"\nb = 1\n");
    let error = render("a = ${ v }\n", &[("v", "")]).unwrap_err();
    assert!(error.message.contains("is empty"), "{error:?}");
    // An empty value cannot join the quotes around it into a `"""`.
    let error = render("a = \"\"\"q\"${ v }\"\"\" \n", &[("v", "")]);
    if let Ok(rendered) = error {
        assert_eq!(table(&rendered)["a"].as_str(), Some("q\""));
    }
}

#[test]
fn blocks_around_keys_keep_working() {
    let source = "[service]\nname = \"web\"\n{% if env == \"prod\" %}\nmemory = \"1g\"\n{% else %}\nmemory = \"256m\"\n{% endif %}\n{% for i in range(3) %}\n[[port]]\nhost = ${ 8080 + i }\ncontainer = 80\n{% endfor %}\n";
    let rendered = render(source, &[("env", "prod")]).unwrap();
    let parsed = table(&rendered);
    assert_eq!(parsed["service"]["memory"].as_str(), Some("1g"));
    assert_eq!(parsed["port"].as_array().map(Vec::len), Some(3));
}

#[test]
fn a_file_that_is_not_toml_gets_its_own_error_and_no_value() {
    // The skeleton does not parse: the value is left out altogether.
    let rendered = render("a = \"${ token }\"\n[broken\n", &[("token", "s3cret")]).unwrap();
    assert!(!rendered.contains("s3cret"), "{rendered}");
    assert!(toml::from_str::<toml::Table>(&rendered).is_err());
}

#[test]
fn a_runaway_loop_is_stopped_quickly_at_its_line() {
    let source = "a = 1\n{% for i in range(100000) %}{% for j in range(100000) %}\nb = 2\n{% endfor %}{% endfor %}\n";
    let started = Instant::now();
    let error = render(source, &[]).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        error.message.starts_with("template too costly"),
        "{error:?}"
    );
    let span = error.span.expect("a span");
    let line = byte_span_to_line(source, span).0;
    assert!((1..=2).contains(&line), "inside the loop: line {line}");
}

#[test]
fn a_loop_that_writes_too_much_is_refused() {
    let source = "{% for i in range(100000) %}# ${ i } padding padding padding padding padding padding\n{% endfor %}";
    let error = render(source, &[]).unwrap_err();
    assert!(
        error.message.starts_with("template too costly")
            || error.message.contains("renders to more than"),
        "{error:?}"
    );
}

#[test]
fn an_ordinary_file_renders_well_within_the_budget() {
    let mut source = String::new();
    for i in 0..200 {
        source.push_str(&format!(
            "[[port]]\nhost = ${{ base|int + {i} }}\ncontainer = 80\n# ${{ note }}\n"
        ));
    }
    let rendered = render(&source, &[("base", "8000"), ("note", "n")]);
    assert!(rendered.is_ok(), "{rendered:?}");
}
