//! A YAML document as a tree whose every node knows its line, built from
//! yaml-rust2's parser events: anchors and aliases are expanded and merge keys
//! (`<<: *defaults`, `<<: [*a, *b]`) are applied, keys written in the mapping
//! winning over merged ones, as Compose does.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// The deepest nesting accepted (a Compose file needs a handful of levels).
const MAX_DEPTH: usize = 128;
/// The most nodes aliases may copy, so `&a [*b, *b, ...]` chains cannot
/// exhaust memory.
const MAX_ALIAS_NODES: usize = 100_000;

/// One node of the document and the line (1-based) where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub line: usize,
    pub value: Value,
}

/// What a node holds. A scalar keeps its text and whether it was quoted, so
/// `null`, `~` and an empty plain value read as null and `"80"` as text.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar { text: String, quoted: bool },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// A document that does not parse, with the line the parser stopped at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl Node {
    /// The scalar's text, unless the node is a sequence or mapping.
    pub fn text(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// True for `null`, `~` and an empty plain scalar.
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, quoted: false }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// The entries of a mapping, keyed by text.
    pub fn entries(&self) -> Option<Vec<(&str, &Node, &Node)>> {
        match &self.value {
            Value::Map(entries) => Some(
                entries
                    .iter()
                    .map(|(key, value)| (key.text().unwrap_or(""), key, value))
                    .collect(),
            ),
            _ => None,
        }
    }

    /// The value of `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(name, _)| name.text() == Some(key))
                .map(|(_, value)| value),
            _ => None,
        }
    }

    /// The number of nodes in this one (itself included; a mapping's keys too).
    fn size(&self) -> usize {
        1 + match &self.value {
            Value::Scalar { .. } => 0,
            Value::Seq(items) => items.iter().map(Node::size).sum(),
            Value::Map(entries) => entries
                .iter()
                .map(|(key, value)| key.size() + value.size())
                .sum(),
        }
    }

    /// The items of a sequence.
    pub fn items(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(items) => Some(items),
            _ => None,
        }
    }
}

/// Parses the first document of `source`; an empty source is an empty map.
pub fn parse(source: &str) -> Result<Node, ParseError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(source);
    parser
        .load(&mut builder, false)
        .map_err(|error| ParseError {
            line: error.marker().line(),
            message: error.info().to_string(),
        })?;
    if let Some(error) = builder.error {
        return Err(error);
    }
    Ok(builder.root.unwrap_or(Node {
        line: 1,
        value: Value::Map(Vec::new()),
    }))
}

/// Collects events into nodes: a stack of open sequences and mappings.
#[derive(Default)]
struct Builder {
    stack: Vec<(Node, usize)>,
    /// Each anchor's node and its number of nodes.
    anchors: HashMap<usize, (Node, usize)>,
    /// Nodes copied by aliases so far.
    alias_nodes: usize,
    root: Option<Node>,
    error: Option<ParseError>,
}

impl Builder {
    fn push_done(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            let size = node.size();
            self.anchors.insert(anchor, (node.clone(), size));
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some((parent, _)) => match &mut parent.value {
                Value::Seq(items) => items.push(node),
                // A mapping collects keys and values alternately: a pending key
                // is an entry whose value is a placeholder sequence.
                Value::Map(entries) => match entries.last_mut() {
                    Some((_, value)) if value.line == 0 => *value = node,
                    _ => entries.push((
                        node,
                        Node {
                            line: 0,
                            value: Value::Seq(Vec::new()),
                        },
                    )),
                },
                Value::Scalar { .. } => {}
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.error.is_some() {
            // The tree is no longer consistent; the first error is the answer.
            return;
        }
        let line = mark.line().max(1);
        match event {
            Event::Scalar(text, style, anchor, _) => {
                let quoted = !matches!(style, TScalarStyle::Plain);
                let node = Node {
                    line,
                    value: Value::Scalar { text, quoted },
                };
                self.push_done(node, anchor);
            }
            Event::SequenceStart(..) | Event::MappingStart(..) if self.stack.len() >= MAX_DEPTH => {
                self.error.get_or_insert(ParseError {
                    line,
                    message: format!("nested deeper than {MAX_DEPTH} levels"),
                });
            }
            Event::SequenceStart(anchor, _) => self.stack.push((
                Node {
                    line,
                    value: Value::Seq(Vec::new()),
                },
                anchor,
            )),
            Event::MappingStart(anchor, _) => self.stack.push((
                Node {
                    line,
                    value: Value::Map(Vec::new()),
                },
                anchor,
            )),
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((mut node, anchor)) = self.stack.pop() {
                    if let Value::Map(entries) = &mut node.value {
                        if let Err(error) = merge_keys(entries) {
                            self.error.get_or_insert(error);
                        }
                    }
                    self.push_done(node, anchor);
                }
            }
            Event::Alias(anchor) => match self.anchors.get(&anchor) {
                Some((_, size)) if self.alias_nodes + size > MAX_ALIAS_NODES => {
                    self.error.get_or_insert(ParseError {
                        line,
                        message: format!("aliases expand to more than {MAX_ALIAS_NODES} values"),
                    });
                }
                Some((node, size)) => {
                    self.alias_nodes += size;
                    let mut node = node.clone();
                    // The alias stands where it is written.
                    node.line = line;
                    self.push_done(node, 0);
                }
                None => {
                    self.error.get_or_insert(ParseError {
                        line,
                        message: "unknown anchor".to_string(),
                    });
                }
            },
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

/// Applies `<<` entries: their mappings' keys are added unless the mapping
/// (or an earlier merged mapping) already has them.
fn merge_keys(entries: &mut Vec<(Node, Node)>) -> Result<(), ParseError> {
    let is_merge =
        |key: &Node| matches!(&key.value, Value::Scalar { text, quoted: false } if text == "<<");
    if !entries.iter().any(|(key, _)| is_merge(key)) {
        return Ok(());
    }
    let mut own = Vec::new();
    let mut sources = Vec::new();
    for (key, value) in entries.drain(..) {
        if is_merge(&key) {
            match value.value {
                Value::Map(merged) => sources.push(merged),
                Value::Seq(items) => {
                    for item in items {
                        match item.value {
                            Value::Map(merged) => sources.push(merged),
                            _ => {
                                return Err(ParseError {
                                    line: item.line,
                                    message: "a merge key (`<<`) takes mappings".to_string(),
                                })
                            }
                        }
                    }
                }
                Value::Scalar { .. } => {
                    return Err(ParseError {
                        line: value.line,
                        message: "a merge key (`<<`) takes a mapping".to_string(),
                    })
                }
            }
        } else {
            own.push((key, value));
        }
    }
    for merged in sources {
        for (key, value) in merged {
            if !own
                .iter()
                .any(|(existing, _)| existing.text() == key.text())
            {
                own.push((key, value));
            }
        }
    }
    *entries = own;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_anchors_and_merge_keys() {
        let source = "x-defaults: &defaults\n  restart: always\n  user: \"1000\"\nservices:\n  web:\n    <<: *defaults\n    user: root\n    image: nginx\n";
        let root = parse(source).unwrap();
        let web = root.get("services").unwrap().get("web").unwrap();
        assert_eq!(web.get("restart").unwrap().text(), Some("always"));
        assert_eq!(web.get("restart").unwrap().line, 2);
        assert_eq!(web.get("user").unwrap().text(), Some("root"));
        assert_eq!(web.get("image").unwrap().line, 8);
        assert!(web.get("<<").is_none());
    }

    #[test]
    fn merge_lists_prefer_the_first() {
        let source = "a: &a {x: 1}\nb: &b {x: 2, y: 3}\nc:\n  <<: [*a, *b]\n";
        let root = parse(source).unwrap();
        let c = root.get("c").unwrap();
        assert_eq!(c.get("x").unwrap().text(), Some("1"));
        assert_eq!(c.get("y").unwrap().text(), Some("3"));
    }

    #[test]
    fn quoting_and_nulls() {
        let root = parse("a: \"80\"\nb:\nc: ~\nd: ''\n").unwrap();
        assert!(!root.get("a").unwrap().is_null());
        assert!(root.get("b").unwrap().is_null());
        assert!(root.get("c").unwrap().is_null());
        assert!(!root.get("d").unwrap().is_null());
    }

    #[test]
    fn alias_bombs_and_deep_nesting_are_refused() {
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..8 {
            let previous = format!("*a{}", level - 1);
            let items = [previous.as_str(); 10].join(", ");
            bomb.push_str(&format!("a{level}: &a{level} [{items}]\n"));
        }
        let error = parse(&bomb).unwrap_err();
        assert!(error.message.contains("aliases expand"), "{error:?}");
        let deep: String = (0..200)
            .map(|level| format!("{}a:\n", "  ".repeat(level)))
            .collect();
        let error = parse(&deep).unwrap_err();
        assert!(error.message.contains("nested deeper"), "{error:?}");
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let error = parse("a: 1\nb: [1, 2\n").unwrap_err();
        assert!(error.line >= 2, "{error:?}");
    }
}
