//! YAML output: the manifests are built as `serde_json` values (the `json!`
//! macro, keys in order of name) and written with yaml-rust2's emitter, the
//! YAML crate the import already uses: no second YAML crate, and no
//! unmaintained one (`serde_yaml`). Long texts (files in a ConfigMap) are
//! written as literal blocks. Every document is read back by the tests.

use serde_json::Value;
use yaml_rust2::yaml::Hash;
use yaml_rust2::{Yaml, YamlEmitter};

/// Several documents, each starting with `---`.
pub fn documents(values: &[Value]) -> String {
    let mut out = String::new();
    for value in values {
        let mut text = String::new();
        let mut emitter = YamlEmitter::new(&mut text);
        emitter.multiline_strings(true);
        // Writing into a String cannot fail.
        let _ = emitter.dump(&to_yaml(value));
        out.push_str(&text);
        out.push('\n');
    }
    out
}

fn to_yaml(value: &Value) -> Yaml {
    match value {
        Value::Null => Yaml::Null,
        Value::Bool(flag) => Yaml::Boolean(*flag),
        Value::Number(number) => match number.as_i64() {
            Some(integer) => Yaml::Integer(integer),
            None => Yaml::Real(number.to_string()),
        },
        Value::String(text) => Yaml::String(text.clone()),
        Value::Array(items) => Yaml::Array(items.iter().map(to_yaml).collect()),
        Value::Object(map) => {
            let mut hash = Hash::new();
            for (key, item) in map {
                hash.insert(Yaml::String(key.clone()), to_yaml(item));
            }
            Yaml::Hash(hash)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use yaml_rust2::YamlLoader;

    #[test]
    fn strings_that_look_like_other_types_stay_strings() {
        let value = json!({
            "a": "true", "b": "0123", "c": "1.5", "d": "", "e": "null", "f": "~",
            "g": "a: b", "h": "- x", "i": "#x", "j": "line 1\nline 2\n", "k": 7,
            "l": "*", "m": "yes", "n": "@every 60s", "o": "{x}", "p": "0 3 * * *",
        });
        let text = documents(std::slice::from_ref(&value));
        let docs = YamlLoader::load_from_str(&text).unwrap();
        assert_eq!(docs.len(), 1);
        for (key, expected) in value.as_object().unwrap() {
            let read = &docs[0][key.as_str()];
            match expected {
                Value::String(s) => assert_eq!(read.as_str(), Some(s.as_str()), "{key}: {text}"),
                Value::Number(n) => assert_eq!(read.as_i64(), n.as_i64()),
                _ => unreachable!(),
            }
        }
    }
}
