//! Where each key and value of a parsed TOML file sits, by key path
//! (`service.image`, `port[1].host`), so validation errors can point at them.

use std::collections::HashMap;
use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// Spans of every key and value of one document.
#[derive(Debug, Clone, Default)]
pub struct SpanIndex {
    entries: HashMap<String, Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    key: Range<usize>,
    value: Range<usize>,
}

impl SpanIndex {
    /// Indexes a document; `None` when it is not valid TOML.
    pub fn parse(text: &str) -> Option<Self> {
        let root = DeTable::parse(text).ok()?;
        let mut index = SpanIndex::default();
        index.walk_table("", root.get_ref());
        Some(index)
    }

    /// The span of the value at `path`, or of its nearest ancestor.
    pub fn value(&self, path: &str) -> Range<usize> {
        self.nearest(path).map_or(0..0, |entry| entry.value.clone())
    }

    /// The span of the key at `path`, or of its nearest ancestor.
    pub fn key(&self, path: &str) -> Range<usize> {
        self.nearest(path).map_or(0..0, |entry| entry.key.clone())
    }

    /// The path of the key whose span is exactly `span` (the deepest one
    /// when an array of tables shares its header span with its item).
    pub fn path_of_key(&self, span: &Range<usize>) -> Option<&str> {
        self.entries
            .iter()
            .filter(|(_, entry)| entry.key == *span)
            .map(|(path, _)| path.as_str())
            .max_by_key(|path| (path.len(), *path))
    }

    /// The deepest table or array item whose value span contains `offset`.
    pub fn table_at(&self, offset: usize) -> Option<&str> {
        self.entries
            .iter()
            .filter(|(_, entry)| entry.value.contains(&offset) || entry.key.contains(&offset))
            .filter(|(path, _)| !path.is_empty())
            .map(|(path, _)| path.as_str())
            .max_by_key(|path| (path.len(), *path))
    }

    fn nearest(&self, path: &str) -> Option<&Entry> {
        let mut current = path;
        loop {
            if let Some(entry) = self.entries.get(current) {
                return Some(entry);
            }
            let cut = current.rfind(['.', '['])?;
            current = &current[..cut];
        }
    }

    fn walk_table(&mut self, prefix: &str, table: &DeTable<'_>) {
        for (key, value) in table.iter() {
            let path = if prefix.is_empty() {
                key.get_ref().to_string()
            } else {
                format!("{prefix}.{}", key.get_ref())
            };
            self.walk_value(path, key.span(), value);
        }
    }

    fn walk_value(&mut self, path: String, key: Range<usize>, value: &Spanned<DeValue<'_>>) {
        match value.get_ref() {
            DeValue::Table(table) => self.walk_table(&path, table),
            DeValue::Array(array) => {
                for (index, item) in array.iter().enumerate() {
                    self.walk_value(format!("{path}[{index}]"), item.span(), item);
                }
            }
            _ => {}
        }
        self.entries.insert(
            path,
            Entry {
                key,
                value: value.span(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_values_and_array_items() {
        let text = "[service]\nname = \"web\"\n\n[[port]]\nhost = 80\n\n[[port]]\nhost = 81\n";
        let index = SpanIndex::parse(text).unwrap();
        assert_eq!(&text[index.value("service.name")], "\"web\"");
        assert_eq!(&text[index.key("service.name")], "name");
        assert_eq!(&text[index.value("port[1].host")], "81");
        assert_eq!(
            &text[index.key("port[1].nothing")],
            &text[index.key("port[1]")]
        );
        let name_key = index.key("service.name");
        assert_eq!(index.path_of_key(&name_key), Some("service.name"));
    }
}
