//! Between paths and URLs: request URLs built from [`RemotePath`] components, and the
//! hrefs of a multistatus reply turned back into components relative to the base URL.

use std::fmt;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

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
}

impl fmt::Display for HrefError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HrefError::BadPercent => "invalid percent-encoding",
            HrefError::BadUtf8 => "not UTF-8 after percent-decoding",
            HrefError::OutsideBase => "not under the base URL",
        })
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

/// Maps an href from a reply to path components relative to the base path `base`.
///
/// Accepts absolute URLs (`http://host:port/path`, the host is not checked), absolute paths
/// and, rarely seen, relative references, which are taken relative to `relative_to` (the
/// components of the folder the request URL designates). Each segment is percent-decoded
/// separately, so an encoded `%2F` stays inside its component (and is rejected later as a
/// name). The result is not validated as names.
pub(crate) fn href_to_parts(
    href: &str,
    base: &[String],
    relative_to: &[String],
) -> Result<Vec<String>, HrefError> {
    let href = href.trim();
    let path = match strip_scheme(href) {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => href,
    };
    let parts = path_parts(path)?;
    if !path.starts_with('/') {
        let mut out = relative_to.to_vec();
        out.extend(parts);
        return Ok(out);
    }
    if parts.len() < base.len() || parts[..base.len()] != *base {
        return Err(HrefError::OutsideBase);
    }
    Ok(parts[base.len()..].to_vec())
}

/// The rest after `http://` or `https://` (any case), if the href is an absolute URL.
fn strip_scheme(href: &str) -> Option<&str> {
    for scheme in ["http://", "https://"] {
        if href.len() >= scheme.len()
            && href.is_char_boundary(scheme.len())
            && href[..scheme.len()].eq_ignore_ascii_case(scheme)
        {
            return Some(&href[scheme.len()..]);
        }
    }
    None
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
        let base = v(&["dav", "my files"]);
        let want = Ok(v(&["a b", "c#d%é"]));
        assert_eq!(
            href_to_parts("/dav/my%20files/a%20b/c%23d%25%C3%A9", &base, &[]),
            want
        );
        assert_eq!(
            href_to_parts("/dav/my%20files/a%20b/c%23d%25%c3%a9/", &base, &[]),
            want
        );
        assert_eq!(
            href_to_parts(
                "HTTP://host:8080/dav/my%20files/a%20b/c%23d%25%C3%A9",
                &base,
                &[]
            ),
            want
        );
        assert_eq!(
            href_to_parts("  /dav/my files/a b/c#d%25é/\n", &base, &[]),
            want
        );
        assert_eq!(href_to_parts("/dav/my%20files/", &base, &[]), Ok(vec![]));
        assert_eq!(href_to_parts("/dav/my%20files", &base, &[]), Ok(vec![]));
        assert_eq!(href_to_parts("https://host", &[], &[]), Ok(vec![]));
        assert_eq!(
            href_to_parts("x%20y", &base, &v(&["d"])),
            Ok(v(&["d", "x y"]))
        );
    }

    #[test]
    fn hostile_hrefs() {
        let base = v(&["dav"]);
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
}
