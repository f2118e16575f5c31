//! Between paths and URLs: request URLs built from [`RemotePath`] components, and the
//! hrefs of a multistatus reply turned back into components relative to the base URL.

use std::fmt;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::Url;

/// Everything except the RFC 3986 unreserved characters (`A-Za-z0-9-._~`).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Why an href cannot be mapped to a path below the base URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HrefError {
    /// A `%` not followed by two hex digits.
    BadPercent,
    /// The decoded bytes are not UTF-8.
    BadUtf8,
    /// The href points outside the base URL's path.
    OutsideBase,
    /// The href is a URL on another server (scheme, host or port differ from the base
    /// URL's), or of another scheme.
    OtherServer,
    /// The href has a query (`?`) or a fragment (`#`): it names no plain resource.
    QueryOrFragment,
}

impl fmt::Display for HrefError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HrefError::BadPercent => "invalid percent-encoding",
            HrefError::BadUtf8 => "not UTF-8 after percent-decoding",
            HrefError::OutsideBase => "not under the base URL",
            HrefError::OtherServer => "on another server than the base URL",
            HrefError::QueryOrFragment => "has a query or fragment",
        })
    }
}

/// The base URL as hrefs are read against it: its origin and its decoded path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Base {
    scheme: String,
    host: String,
    port: Option<u16>,
    parts: Vec<String>,
}

impl Base {
    /// The base for `url`, whose path decodes to `parts`.
    pub(crate) fn new(url: &Url, parts: &[String]) -> Base {
        Base {
            scheme: url.scheme().to_string(),
            host: url.host_str().unwrap_or_default().to_string(),
            port: url.port_or_known_default(),
            parts: parts.to_vec(),
        }
    }

    /// Parses `url` (tests).
    #[cfg(test)]
    pub(crate) fn parse(url: &str) -> Base {
        let url = Url::parse(url).expect("a test URL");
        let parts = path_parts(url.path()).expect("a test URL path");
        Base::new(&url, &parts)
    }

    /// Whether `scheme://authority/` has the base URL's scheme, host and port (default
    /// ports and the case of the host do not matter; user info is ignored).
    fn same_origin(&self, scheme: &str, authority: &str) -> bool {
        let Ok(url) = Url::parse(&format!("{scheme}://{authority}/")) else {
            return false;
        };
        // Anything in the authority that a URL parser reads as more (a `\`, say).
        let plain = url.path() == "/" && url.query().is_none() && url.fragment().is_none();
        plain
            && url.scheme() == self.scheme
            && url.host_str() == Some(self.host.as_str())
            && url.port_or_known_default() == self.port
    }
}

/// Percent-encodes one path component.
pub(crate) fn encode_component(name: &str) -> String {
    utf8_percent_encode(name, COMPONENT).to_string()
}

/// The URL of `parts` below `base` (which must end with `/`), with a trailing slash if
/// `trailing_slash`. The root is `base` itself.
pub(crate) fn join_url(base: &str, parts: &[String], trailing_slash: bool) -> String {
    let mut url = base.to_string();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            url.push('/');
        }
        url.push_str(&encode_component(part));
    }
    if trailing_slash && !parts.is_empty() {
        url.push('/');
    }
    url
}

/// The decoded components of a URL path such as the base URL's.
pub(crate) fn path_parts(path: &str) -> Result<Vec<String>, HrefError> {
    split(path).into_iter().map(decode_component).collect()
}

/// Maps an href from a reply to path components relative to the base URL's path.
///
/// Accepts absolute URLs on the base URL's server (`http://host:port/path`; another
/// scheme, host or port is [`HrefError::OtherServer`]), absolute paths and, rarely seen,
/// relative references, which are taken relative to `relative_to` (the components of the
/// folder the request URL designates). An href with a query or a fragment is
/// [`HrefError::QueryOrFragment`]: a `?` or `#` in a name is percent-encoded. Each segment
/// is percent-decoded separately, so an encoded `%2F` stays inside its component (and is
/// rejected later as a name). The result is not validated as names.
pub(crate) fn href_to_parts(
    href: &str,
    base: &Base,
    relative_to: &[String],
) -> Result<Vec<String>, HrefError> {
    let href = href.trim();
    if href.contains(['?', '#']) {
        return Err(HrefError::QueryOrFragment);
    }
    let path = match split_scheme(href) {
        Some((scheme, rest)) => {
            let Some(rest) = rest.strip_prefix("//") else {
                // `mailto:x`, `urn:x`: no path on any server.
                return Err(HrefError::OtherServer);
            };
            off_authority(&scheme, rest, base)?
        }
        // A network-path reference (`//host/path`) has the base URL's scheme.
        None => match href.strip_prefix("//") {
            Some(rest) => off_authority(&base.scheme, rest, base)?,
            None => href,
        },
    };
    let parts = path_parts(path)?;
    if !path.starts_with('/') {
        let mut out = relative_to.to_vec();
        out.extend(parts);
        return Ok(out);
    }
    if parts.len() < base.parts.len() || parts[..base.parts.len()] != *base.parts {
        return Err(HrefError::OutsideBase);
    }
    Ok(parts[base.parts.len()..].to_vec())
}

/// The path after the authority of `rest` (what follows `scheme://`), if that authority
/// is the base URL's server.
fn off_authority<'a>(scheme: &str, rest: &'a str, base: &Base) -> Result<&'a str, HrefError> {
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if !base.same_origin(scheme, authority) {
        return Err(HrefError::OtherServer);
    }
    Ok(path)
}

/// The scheme (lowercased) and the rest after its `:`, if the href starts with one
/// (RFC 3986: a letter, then letters, digits, `+`, `-` or `.`, before any `/`).
fn split_scheme(href: &str) -> Option<(String, &str)> {
    let colon = href.find(':')?;
    let scheme = &href[..colon];
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then(|| (scheme.to_ascii_lowercase(), &href[colon + 1..]))
}

/// Splits a path into raw segments, ignoring one leading and one trailing slash. Other
/// empty segments (`a//b`) are kept, to be rejected as empty names.
fn split(path: &str) -> Vec<&str> {
    let p = path.strip_prefix('/').unwrap_or(path);
    let p = p.strip_suffix('/').unwrap_or(p);
    if p.is_empty() {
        Vec::new()
    } else {
        p.split('/').collect()
    }
}

/// Strictly percent-decodes one segment into UTF-8.
fn decode_component(raw: &str) -> Result<String, HrefError> {
    let b = raw.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let valid =
                i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit();
            if !valid {
                return Err(HrefError::BadPercent);
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    let bytes: Vec<u8> = percent_decode_str(raw).collect();
    String::from_utf8(bytes).map_err(|_| HrefError::BadUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn encodes_everything_but_unreserved() {
        assert_eq!(
            encode_component("a b#c%d?e&f+g"),
            "a%20b%23c%25d%3Fe%26f%2Bg"
        );
        assert_eq!(encode_component("Az09-._~"), "Az09-._~");
        assert_eq!(encode_component("é/"), "%C3%A9%2F");
        assert_eq!(encode_component("日"), "%E6%97%A5");
    }

    #[test]
    fn joins_urls() {
        let base = "http://h/dav/";
        assert_eq!(join_url(base, &[], true), "http://h/dav/");
        assert_eq!(join_url(base, &[], false), "http://h/dav/");
        assert_eq!(
            join_url(base, &v(&["a b", "c"]), false),
            "http://h/dav/a%20b/c"
        );
        assert_eq!(
            join_url(base, &v(&["a b", "c"]), true),
            "http://h/dav/a%20b/c/"
        );
    }

    #[test]
    fn hrefs_in_every_form() {
        let base = Base::parse("http://host:8080/dav/my%20files/");
        let want = Ok(v(&["a b", "c%é"]));
        assert_eq!(
            href_to_parts("/dav/my%20files/a%20b/c%25%C3%A9", &base, &[]),
            want
        );
        assert_eq!(
            href_to_parts("/dav/my%20files/a%20b/c%25%c3%a9/", &base, &[]),
            want
        );
        assert_eq!(
            href_to_parts(
                "HTTP://HOST:8080/dav/my%20files/a%20b/c%25%C3%A9",
                &base,
                &[]
            ),
            want
        );
        assert_eq!(
            href_to_parts("//host:8080/dav/my%20files/a%20b/c%25%C3%A9", &base, &[]),
            want
        );
        assert_eq!(
            href_to_parts("  /dav/my files/a b/c%25é/\n", &base, &[]),
            want
        );
        assert_eq!(
            href_to_parts("/dav/my%20files/a%23b%3Fc", &base, &[]),
            Ok(v(&["a#b?c"]))
        );
        assert_eq!(href_to_parts("/dav/my%20files/", &base, &[]), Ok(vec![]));
        assert_eq!(href_to_parts("/dav/my%20files", &base, &[]), Ok(vec![]));
        let root = Base::parse("https://host/");
        assert_eq!(href_to_parts("https://host", &root, &[]), Ok(vec![]));
        assert_eq!(
            href_to_parts("https://host:443/a", &root, &[]),
            Ok(v(&["a"]))
        );
        assert_eq!(
            href_to_parts("https://someone@host/a", &root, &[]),
            Ok(v(&["a"]))
        );
        assert_eq!(
            href_to_parts("x%20y", &base, &v(&["d"])),
            Ok(v(&["d", "x y"]))
        );
    }

    #[test]
    fn hostile_hrefs() {
        let base = Base::parse("http://h/dav/");
        assert_eq!(href_to_parts("/dav/a%2Fb", &base, &[]), Ok(v(&["a/b"])));
        assert_eq!(href_to_parts("/dav/a%00", &base, &[]), Ok(v(&["a\0"])));
        assert_eq!(href_to_parts("/dav//", &base, &[]), Ok(v(&[""])));
        assert_eq!(
            href_to_parts("/other/a", &base, &[]),
            Err(HrefError::OutsideBase)
        );
        assert_eq!(href_to_parts("/", &base, &[]), Err(HrefError::OutsideBase));
        assert_eq!(
            href_to_parts("/dav/100%", &base, &[]),
            Err(HrefError::BadPercent)
        );
        assert_eq!(
            href_to_parts("/dav/%zz", &base, &[]),
            Err(HrefError::BadPercent)
        );
        assert_eq!(
            href_to_parts("/dav/%C3%28", &base, &[]),
            Err(HrefError::BadUtf8)
        );
        assert_eq!(
            href_to_parts("/dav/%FF", &base, &[]),
            Err(HrefError::BadUtf8)
        );
    }

    #[test]
    fn hrefs_to_another_server_or_with_a_query_are_refused() {
        let base = Base::parse("http://h:8080/dav/");
        for href in [
            "http://evil.invalid/dav/evil.txt",
            "http://h/dav/x",
            "https://h:8080/dav/x",
            "http://h:8081/dav/x",
            "http://h:8080@evil.invalid/dav/x",
            "http://evil.invalid\\@h:8080/dav/x",
            "http:///dav/x",
            "//evil.invalid/dav/x",
            "ftp://h:8080/dav/x",
            "mailto:x@h",
            "urn:x",
        ] {
            assert_eq!(
                href_to_parts(href, &base, &[]),
                Err(HrefError::OtherServer),
                "{href}"
            );
        }
        for href in [
            "/dav/?q=1",
            "/dav/x?q=1",
            "/dav/x#frag",
            "/dav/x#",
            "http://h:8080/dav/x?",
            "?q=1",
            "#top",
        ] {
            assert_eq!(
                href_to_parts(href, &base, &[]),
                Err(HrefError::QueryOrFragment),
                "{href}"
            );
        }
        assert_eq!(
            href_to_parts("http://H:8080/dav/x", &base, &[]),
            Ok(v(&["x"]))
        );
    }
}
