//! What the request path reads and removes in a head, for both header maps:
//! actix-http's, which holds a request (the forwarder edits it in place and
//! the upstream client writes it to the container) and an answer (the
//! container's head is parsed straight into the map the server writes to
//! the client), and `http`'s, which the guard's callers and tests may hold.
//! Both maps hold the same `http` 0.2 names and values.

use actix_http::header::HeaderMap as ActixHeaderMap;
use http02::header::{HeaderMap, HeaderName, HeaderValue};

/// A header map, as far as the request path needs one.
pub trait Headers {
    /// Every value of `name`, in the order they came.
    fn values(&self, name: HeaderName) -> impl DoubleEndedIterator<Item = &HeaderValue>;
    /// The names present, each once.
    fn names(&self) -> impl Iterator<Item = &HeaderName>;
    /// Removes every value of `name`.
    fn remove_all(&mut self, name: &HeaderName);
}

impl Headers for HeaderMap {
    fn values(&self, name: HeaderName) -> impl DoubleEndedIterator<Item = &HeaderValue> {
        self.get_all(name).into_iter()
    }

    fn names(&self) -> impl Iterator<Item = &HeaderName> {
        self.keys()
    }

    fn remove_all(&mut self, name: &HeaderName) {
        // `remove` takes the first value and drops the rest.
        self.remove(name);
    }
}

impl Headers for ActixHeaderMap {
    fn values(&self, name: HeaderName) -> impl DoubleEndedIterator<Item = &HeaderValue> {
        self.get_all(name)
    }

    fn names(&self) -> impl Iterator<Item = &HeaderName> {
        self.keys()
    }

    fn remove_all(&mut self, name: &HeaderName) {
        drop(self.remove(name));
    }
}

/// The comma-separated items of every `name` header, trimmed (empty items
/// included).
pub fn list_items(
    headers: &impl Headers,
    name: HeaderName,
) -> impl DoubleEndedIterator<Item = &[u8]> {
    headers
        .values(name)
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http02::header::CONNECTION;

    fn both(pairs: &[(&'static str, &'static str)]) -> (HeaderMap, ActixHeaderMap) {
        let mut http = HeaderMap::new();
        let mut actix = ActixHeaderMap::new();
        for (name, value) in pairs {
            let name = HeaderName::from_static(name);
            http.append(name.clone(), HeaderValue::from_static(value));
            actix.append(name, HeaderValue::from_static(value));
        }
        (http, actix)
    }

    #[test]
    fn list_items_split_every_value_of_a_name_in_both_maps() {
        let (http, actix) = both(&[
            ("connection", "keep-alive, x-a"),
            ("x-other", "1"),
            ("connection", " ,Upgrade"),
        ]);
        let expected: Vec<&[u8]> = vec![b"keep-alive", b"x-a", b"", b"Upgrade"];
        assert_eq!(list_items(&http, CONNECTION).collect::<Vec<_>>(), expected);
        assert_eq!(list_items(&actix, CONNECTION).collect::<Vec<_>>(), expected);
        assert_eq!(
            list_items(&actix, CONNECTION).next_back(),
            Some(&b"Upgrade"[..])
        );
    }

    #[test]
    fn remove_all_takes_every_value_in_both_maps() {
        let (mut http, mut actix) = both(&[("x-a", "1"), ("x-a", "2"), ("x-b", "3")]);
        let name = HeaderName::from_static("x-a");
        http.remove_all(&name);
        actix.remove_all(&name);
        assert_eq!(
            Headers::values(&http, name.clone()).count()
                + Headers::values(&actix, name.clone()).count(),
            0
        );
        assert_eq!(http.names().count(), 1);
        assert_eq!(actix.names().count(), 1);
    }
}
