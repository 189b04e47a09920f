//! A route's rules beyond host, path and port: the other names it serves,
//! the names it redirects from, prefix stripping, and its guards (basic auth,
//! an IP allow-list) and error pages. Validated by the config front-end; the
//! proxy's table compiles them once per table (`proxy::guard`).

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use super::sensitive::Sensitive;

/// Everything optional about a route. `RouteRules::default()` is a plain
/// route: one host, the path forwarded as it came, no guard.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RouteRules {
    /// More names served like `host` (lowercase, no port).
    pub aliases: Vec<String>,
    /// Names answered with a 308 to `host`, path and query kept.
    pub redirect_from: Vec<String>,
    /// Remove the route's path from the request's before forwarding.
    pub strip_prefix: bool,
    /// Users allowed in, from htpasswd lines; `None`: no authentication.
    pub basic_auth: Option<BasicAuth>,
    /// Client networks allowed in; `None`: everyone.
    pub allow: Option<AllowList>,
    /// The proxy's own 502, 503 and 504 answers for this route.
    pub error_pages: ErrorPages,
}

/// The users of a route's `basic_auth`, in the order written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BasicAuth {
    pub users: Vec<HtpasswdUser>,
}

/// One htpasswd line: a user name and its bcrypt hash. The hash may come
/// from a secret, so it is never printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HtpasswdUser {
    pub user: String,
    pub hash: Sensitive,
}

/// Why an htpasswd line is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HtpasswdError {
    #[error("an htpasswd line is `user:hash`")]
    NoColon,
    #[error("the user name is empty")]
    EmptyUser,
    #[error("the hash is not bcrypt")]
    NotBcrypt,
}

/// The networks of a route's `allow`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AllowList(pub Vec<IpNet>);

/// Pages that replace the proxy's own short answers for 502, 503 and 504
/// (HTML, read by the config front-end from the route's `error_pages`
/// folder). The container's own answers are never replaced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ErrorPages {
    pub bad_gateway: Option<String>,
    pub service_unavailable: Option<String>,
    pub gateway_timeout: Option<String>,
}

/// The file names an `error_pages` folder may hold, with the status of each.
pub const ERROR_PAGE_FILES: [(&str, u16); 3] =
    [("502.html", 502), ("503.html", 503), ("504.html", 504)];

impl RouteRules {
    /// True for a plain route: no other name, redirect, guard, rewrite or
    /// page, so the request path does nothing but look it up.
    pub fn is_plain(&self) -> bool {
        self == &RouteRules::default()
    }
}

impl HtpasswdUser {
    /// Parses `user:hash`, where the hash is bcrypt (`$2a$`, `$2b$`, `$2x$`,
    /// `$2y$`, as `htpasswd -B` writes). The user may not hold `:`; the
    /// hash is split at the first one.
    pub fn parse(line: &str) -> Result<HtpasswdUser, HtpasswdError> {
        let line = line.trim();
        let (user, hash) = line.split_once(':').ok_or(HtpasswdError::NoColon)?;
        if user.is_empty() {
            return Err(HtpasswdError::EmptyUser);
        }
        let bcrypt_prefix = ["$2a$", "$2b$", "$2x$", "$2y$"]
            .iter()
            .any(|prefix| hash.starts_with(prefix));
        // `$2y$10$` then 53 characters of salt and hash.
        let cost_ok = hash
            .get(4..6)
            .is_some_and(|cost| cost.bytes().all(|b| b.is_ascii_digit()))
            && hash.get(6..7) == Some("$");
        if !bcrypt_prefix || !cost_ok || hash.len() != 60 {
            return Err(HtpasswdError::NotBcrypt);
        }
        Ok(HtpasswdUser {
            user: user.to_owned(),
            hash: Sensitive::new(hash),
        })
    }
}

impl AllowList {
    /// True when `ip` (an IPv4-mapped IPv6 address counts as IPv4) is in
    /// one of the networks.
    pub fn admits(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// Parses a network (`10.0.0.0/8`, `2001:db8::/32`) or a single address.
    pub fn parse_entry(text: &str) -> Option<IpNet> {
        let text = text.trim();
        text.parse::<IpNet>()
            .ok()
            .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
    }
}

impl ErrorPages {
    /// The page for `status`, if one was given.
    pub fn for_status(&self, status: u16) -> Option<&str> {
        match status {
            502 => self.bad_gateway.as_deref(),
            503 => self.service_unavailable.as_deref(),
            504 => self.gateway_timeout.as_deref(),
            _ => None,
        }
    }

    /// Sets the page of `status` (one of [`ERROR_PAGE_FILES`]).
    pub fn set(&mut self, status: u16, page: String) {
        match status {
            502 => self.bad_gateway = Some(page),
            503 => self.service_unavailable = Some(page),
            504 => self.gateway_timeout = Some(page),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2y$05$abcdefghijklmnopqrstuuFh0m3m1ZbJY8.0uWq8T7bJpiMuk2wMa";

    #[test]
    fn htpasswd_lines_are_bcrypt_only() {
        assert_eq!(HASH.len(), 60);
        let user = HtpasswdUser::parse(&format!("alice:{HASH}")).unwrap();
        assert_eq!(user.user, "alice");
        assert_eq!(user.hash.expose(), HASH);
        assert!(!format!("{user:?}").contains(HASH), "hash masked");
        assert_eq!(HtpasswdUser::parse("alice"), Err(HtpasswdError::NoColon));
        assert_eq!(
            HtpasswdUser::parse(&format!(":{HASH}")),
            Err(HtpasswdError::EmptyUser)
        );
        for not_bcrypt in [
            "alice:$apr1$x$y",
            "alice:{SHA}abc=",
            "alice:plain",
            "alice:$2y$1x$abc",
        ] {
            assert_eq!(
                HtpasswdUser::parse(not_bcrypt),
                Err(HtpasswdError::NotBcrypt),
                "{not_bcrypt}"
            );
        }
    }

    #[test]
    fn allow_lists_match_networks_and_mapped_addresses() {
        let list = AllowList(
            ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]
                .iter()
                .map(|entry| AllowList::parse_entry(entry).unwrap())
                .collect(),
        );
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        assert!(list.admits(ip("10.9.8.7")));
        assert!(list.admits(ip("::ffff:10.1.1.1")));
        assert!(list.admits(ip("2001:db8:1::1")));
        assert!(list.admits(ip("192.0.2.7")));
        assert!(!list.admits(ip("192.0.2.8")));
        assert!(!list.admits(ip("11.0.0.1")));
        assert!(!list.admits(ip("2001:db9::1")));
        assert_eq!(AllowList::parse_entry("10.0.0.0/33"), None);
        assert_eq!(AllowList::parse_entry("example.com"), None);
    }
}
