//! PROPFIND replies: the multistatus parser and the assembly of listings and single
//! entries from it. Pure functions from bytes to entries; no I/O.

use std::collections::HashSet;
use std::io::BufRead;
use std::time::SystemTime;

use tracing::warn;

use super::href::{href_to_parts, Base, HrefError};
use super::xml::{walk_reader, Node, Tag as T};
use crate::remote::{
    validate_name, Access, ETag, Listing, ListingHead, Quota, RemoteEntry, RemoteError, RemotePath,
};

/// The PROPFIND request body: exactly the properties edrive uses. What this user may do
/// is asked both ways servers say it: RFC 3744's `current-user-privilege-set` and
/// Nextcloud's (ownCloud's) `oc:permissions`; servers that keep neither answer 404 for
/// them in a propstat of their own, which is ignored.
pub(crate) const REQUEST_BODY: &str = concat!(
    r#"<?xml version="1.0" encoding="utf-8"?>"#,
    r#"<D:propfind xmlns:D="DAV:" xmlns:oc="http://owncloud.org/ns"><D:prop>"#,
    r#"<D:resourcetype/><D:getcontentlength/><D:getlastmodified/><D:getetag/>"#,
    r#"<D:current-user-privilege-set/><oc:permissions/>"#,
    r#"</D:prop></D:propfind>"#,
);

/// The body of the PROPFIND (Depth 0, of the root) that asks for the share's quota
/// (RFC 4331); asked apart from listings, which it would make slower on servers that
/// compute it per entry.
pub(crate) const QUOTA_BODY: &str = concat!(
    r#"<?xml version="1.0" encoding="utf-8"?>"#,
    r#"<D:propfind xmlns:D="DAV:"><D:prop>"#,
    r#"<D:quota-available-bytes/><D:quota-used-bytes/>"#,
    r#"</D:prop></D:propfind>"#,
);

/// Largest Depth 0 PROPFIND reply accepted (parsed as it arrives; only the response
/// that describes the path is kept).
pub(crate) const MAX_REPLY: u64 = 64 << 20;

/// Largest listing reply accepted (parsed as it arrives). Only the entries taken from it
/// are kept; with [`MAX_ENTRIES`] and [`MAX_TEXT`] this bounds what a hostile server can
/// make a listing cost.
pub(crate) const MAX_LISTING_REPLY: u64 = 512 << 20;

/// Most entries in one folder's listing.
pub(crate) const MAX_ENTRIES: usize = 1_000_000;

/// Longest text of one element (an href, a status line, a property).
const MAX_TEXT: usize = 64 << 10;

/// The properties of one resource, from its successful `<propstat>` blocks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Props {
    is_dir: bool,
    size: Option<u64>,
    mtime: Option<SystemTime>,
    etag: Option<ETag>,
    /// `quota-available-bytes`, if a usable one (not negative: Nextcloud's "unknown" and
    /// "unlimited").
    quota_available: Option<u64>,
    /// `quota-used-bytes`, if a usable one.
    quota_used: Option<u64>,
    /// From `current-user-privilege-set`: (a privilege that allows changes, one that
    /// allows removing), if the set was given.
    privileges: Option<(bool, bool)>,
    /// `oc:permissions` (letters such as `RGDNVW`), if given.
    oc_permissions: Option<String>,
}

impl Props {
    fn merge(&mut self, other: Props) {
        self.is_dir |= other.is_dir;
        self.size = self.size.or(other.size);
        self.mtime = self.mtime.or(other.mtime);
        self.etag = self.etag.clone().or(other.etag);
        self.quota_available = self.quota_available.or(other.quota_available);
        self.quota_used = self.quota_used.or(other.quota_used);
        self.privileges = self.privileges.or(other.privileges);
        self.oc_permissions = self.oc_permissions.take().or(other.oc_permissions);
    }

    /// What this user may do, from what the server said (Nextcloud's letters first:
    /// `W` write a file, `C`/`K` create in a folder, `D` delete; else RFC 3744's
    /// privileges: `all`, `write`, `write-content`, `bind` allow changes, and those or
    /// `unbind` removing).
    fn access(&self) -> Option<Access> {
        if let Some(p) = &self.oc_permissions {
            return Some(Access {
                change: p.contains(['W', 'C', 'K']),
                remove: p.contains('D'),
            });
        }
        self.privileges.map(|(change, remove)| Access {
            change,
            remove: change || remove,
        })
    }

    /// The entry; a file's size is unknown if no successful propstat gave a usable one.
    fn into_entry(self, name: String) -> RemoteEntry {
        let size = if self.is_dir { Some(0) } else { self.size };
        RemoteEntry {
            access: self.access(),
            name,
            is_dir: self.is_dir,
            size: size.unwrap_or(0),
            size_known: size.is_some(),
            mtime: self.mtime,
            etag: self.etag,
        }
    }
}

/// One `<D:response>`, its href not yet interpreted.
#[derive(Debug, Default)]
struct DavResponse {
    href: Option<String>,
    /// The response-level `<D:status>` line, if any (used when there is no propstat).
    status: Option<String>,
    props: Props,
}

impl DavResponse {
    /// The HTTP code of a response-level status that is not 2xx.
    fn failed_status(&self) -> Option<u16> {
        let line = self.status.as_deref()?;
        match status_code(line) {
            Some(code) if (200..300).contains(&code) => None,
            Some(code) => Some(code),
            None => Some(0),
        }
    }
}

/// Parses a multistatus document read from `source`, handing each response to `on` as
/// soon as it is complete (nothing else is kept).
fn each_response<R, F>(source: R, mut on: F) -> Result<(), RemoteError>
where
    R: BufRead,
    F: FnMut(DavResponse) -> Result<(), RemoteError>,
{
    let mut current = DavResponse::default();
    let mut propstat = Props::default();
    let mut propstat_status: Option<String> = None;
    let mut text = String::new();
    walk_reader(source, |stack, node| {
        match (node, stack) {
            (Node::Open(tag), [_]) if tag != T::Multistatus => {
                return Err(RemoteError::Malformed(
                    "root element is not DAV:multistatus".into(),
                ));
            }
            (Node::Open(_), [T::Multistatus, T::Response]) => current = DavResponse::default(),
            (Node::Open(_), [T::Multistatus, T::Response, T::Propstat]) => {
                propstat = Props::default();
                propstat_status = None;
            }
            (
                Node::Open(_),
                [T::Multistatus, T::Response, T::Propstat, T::Prop, T::ResourceType, T::Collection],
            ) => {
                propstat.is_dir = true;
            }
            (
                Node::Open(_),
                [T::Multistatus, T::Response, T::Propstat, T::Prop, T::PrivilegeSet],
            ) => {
                propstat.privileges = Some((false, false));
            }
            (
                Node::Open(tag),
                [T::Multistatus, T::Response, T::Propstat, T::Prop, T::PrivilegeSet, T::Privilege, _],
            ) => {
                if let Some((change, remove)) = &mut propstat.privileges {
                    match tag {
                        T::PrivWrite => *change = true,
                        T::PrivUnbind => *remove = true,
                        _ => {}
                    }
                }
            }
            (Node::Open(_), _) => text.clear(),
            (Node::Text(t), _) => {
                if text.len() + t.len() > MAX_TEXT {
                    return Err(RemoteError::Malformed(format!(
                        "an element's text is longer than {} KiB",
                        MAX_TEXT >> 10
                    )));
                }
                text.push_str(&t)
            }
            (Node::Close(_), [T::Multistatus, T::Response]) => on(std::mem::take(&mut current))?,
            (Node::Close(_), [T::Multistatus, T::Response, T::Href]) => {
                if current.href.is_none() {
                    current.href = Some(text.trim().to_string());
                }
            }
            (Node::Close(_), [T::Multistatus, T::Response, T::Status]) => {
                current.status = Some(text.trim().to_string());
            }
            (Node::Close(_), [T::Multistatus, T::Response, T::Propstat, T::Status]) => {
                propstat_status = Some(text.trim().to_string());
            }
            (Node::Close(_), [T::Multistatus, T::Response, T::Propstat]) => {
                let props = std::mem::take(&mut propstat);
                // A propstat without a status is taken as successful; one with a non-2xx
                // status (typically 404 for properties the resource lacks) is ignored.
                let ok = match &propstat_status {
                    None => true,
                    Some(line) => status_code(line).is_some_and(|c| (200..300).contains(&c)),
                };
                if ok {
                    current.props.merge(props);
                }
            }
            (
                Node::Close(_),
                [T::Multistatus, T::Response, T::Propstat, T::Prop, T::ContentLength],
            ) => {
                propstat.size = parse_size(&text);
            }
            (
                Node::Close(_),
                [T::Multistatus, T::Response, T::Propstat, T::Prop, T::LastModified],
            ) => {
                propstat.mtime = httpdate::parse_http_date(text.trim()).ok();
            }
            (Node::Close(_), [T::Multistatus, T::Response, T::Propstat, T::Prop, T::GetEtag]) => {
                propstat.etag = ETag::parse(&text);
            }
            (
                Node::Close(_),
                [T::Multistatus, T::Response, T::Propstat, T::Prop, T::QuotaAvailable],
            ) => {
                propstat.quota_available = parse_size(&text);
            }
            (Node::Close(_), [T::Multistatus, T::Response, T::Propstat, T::Prop, T::QuotaUsed]) => {
                propstat.quota_used = parse_size(&text);
            }
            (
                Node::Close(_),
                [T::Multistatus, T::Response, T::Propstat, T::Prop, T::OcPermissions],
            ) => {
                propstat.oc_permissions = Some(text.trim().to_string());
            }
            (Node::Close(_), _) => {}
        }
        Ok(())
    })
}

/// A `getcontentlength` (or a quota): decimal digits of a length a file can have (at most
/// `i64::MAX`); anything else (`-5`, `1e30`, `1.5e3`, `abc`, empty) is no size.
fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse::<i64>().ok().and_then(|n| u64::try_from(n).ok())
}

/// The code of a status line such as `HTTP/1.1 200 OK`.
fn status_code(line: &str) -> Option<u16> {
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Maps a response's href to components below the base, warning and returning `None` when
/// it cannot be used.
fn locate(r: &DavResponse, base: &Base, relative_to: &[String]) -> Option<Vec<String>> {
    let Some(href) = r.href.as_deref() else {
        warn!("PROPFIND reply: skipping a response without href");
        return None;
    };
    match href_to_parts(href, base, relative_to) {
        Ok(parts) => Some(parts),
        Err(e) => {
            warn!(href = ?href, "PROPFIND reply: skipping entry: href {e}");
            None
        }
    }
}

/// Builds the listing of `dir` from a Depth 1 PROPFIND reply against the base URL
/// `base`.
///
/// Entries that are not direct children of `dir`, have invalid or duplicate names, or
/// unusable hrefs are skipped with a warning. If the folder itself is missing from the
/// reply it is synthesized (a directory without etag).
#[cfg(test)]
pub(crate) fn parse_listing(
    body: &[u8],
    base: &Base,
    dir: &RemotePath,
) -> Result<Listing, RemoteError> {
    parse_listing_from(body, base, dir)
}

/// [`parse_listing`] of a reply read from `source` as it arrives: the reply itself is
/// never held whole, only the entries taken from it.
pub(crate) fn parse_listing_from<R: BufRead>(
    source: R,
    base: &Base,
    dir: &RemotePath,
) -> Result<Listing, RemoteError> {
    let mut children = Vec::new();
    let mut names = HashSet::new();
    let head = each_child(source, base, dir, |child| {
        if names.insert(child.name.clone()) {
            children.push(child);
        } else {
            warn!(name = ?child.name, "PROPFIND reply: skipping duplicate name");
        }
        Ok(())
    })?;
    Ok(Listing {
        dir: head.dir,
        children,
        complete: head.complete,
    })
}

/// Reads a Depth 1 reply for `dir` from `source`, handing each direct child to `on` as
/// soon as its response is parsed; nothing is collected. Names are valid but not
/// deduplicated. Entries that are not direct children of `dir`, have invalid names or
/// unusable hrefs are skipped with a warning. If the folder itself is missing from the
/// reply it is synthesized (a directory without etag).
pub(crate) fn each_child<R, F>(
    source: R,
    base: &Base,
    dir: &RemotePath,
    mut on: F,
) -> Result<ListingHead, RemoteError>
where
    R: BufRead,
    F: FnMut(RemoteEntry) -> Result<(), RemoteError>,
{
    let dir_parts = dir.parts();
    let mut dir_entry: Option<RemoteEntry> = None;
    let mut children = 0usize;
    let mut complete = true;
    each_response(source, |r| {
        let Some(mut parts) = locate(&r, base, dir_parts) else {
            complete = false;
            return Ok(());
        };
        let href = r.href.as_deref().unwrap_or_default();
        if let Some(code) = r.failed_status() {
            warn!(href = ?href, code, "PROPFIND reply: skipping entry with failed status");
            complete = false;
            return Ok(());
        }
        if parts == dir_parts {
            if dir_entry.is_some() {
                warn!(href = ?href, "PROPFIND reply: skipping duplicate entry for the folder itself");
            } else {
                dir_entry = Some(r.props.into_entry(String::new()));
            }
            return Ok(());
        }
        if parts.len() != dir_parts.len() + 1 || !parts.starts_with(dir_parts) {
            warn!(href = ?href, dir = %dir, "PROPFIND reply: skipping entry that is not a direct child");
            complete = false;
            return Ok(());
        }
        let name = parts.pop().unwrap_or_default();
        if let Err(e) = validate_name(&name) {
            warn!(href = ?href, "PROPFIND reply: skipping entry with invalid name: {e}");
            return Ok(());
        }
        if children >= MAX_ENTRIES {
            return Err(RemoteError::Malformed(format!(
                "the folder has more than {MAX_ENTRIES} entries"
            )));
        }
        children += 1;
        on(r.props.into_entry(name))
    })?;
    let dir_entry = dir_entry.unwrap_or_else(|| {
        warn!(dir = %dir, "PROPFIND reply does not describe the listed folder; assuming a folder");
        complete = false;
        RemoteEntry {
            access: None,
            name: String::new(),
            is_dir: true,
            size: 0,
            size_known: true,
            mtime: None,
            etag: None,
        }
    });
    Ok(ListingHead {
        dir: dir_entry,
        complete,
        children,
    })
}

/// Builds the entry for `path` from a Depth 0 PROPFIND reply read from `source` as it
/// arrives (only the response that describes `path` is kept).
///
/// The response whose href is `path` is used; failing that, a reply with a single
/// response is taken to describe `path` (with a warning), unless its href is on another
/// server or has a query. A failed response-level status is mapped like an HTTP status
/// (404 gives [`RemoteError::NotFound`]).
pub(crate) fn parse_stat<R: BufRead>(
    source: R,
    base: &Base,
    path: &RemotePath,
) -> Result<RemoteEntry, RemoteError> {
    let r = response_for(source, base, path)?;
    Ok(r.props
        .into_entry(path.name().unwrap_or_default().to_string()))
}

/// The share's quota from a Depth 0 reply for `path` (the root) read from `source`, found
/// as [`parse_stat`] finds its entry: `None` unless it gives a usable
/// `quota-available-bytes` (servers without quotas leave it out or send a negative one).
pub(crate) fn parse_quota<R: BufRead>(
    source: R,
    base: &Base,
    path: &RemotePath,
) -> Result<Option<Quota>, RemoteError> {
    let props = response_for(source, base, path)?.props;
    Ok(props.quota_available.map(|available| Quota {
        available,
        used: props.quota_used,
    }))
}

/// The response of a Depth 0 reply that describes `path` (see [`parse_stat`]); fails as
/// its status does if that is not a success.
fn response_for<R: BufRead>(
    source: R,
    base: &Base,
    path: &RemotePath,
) -> Result<DavResponse, RemoteError> {
    let relative_to = path.parent().unwrap_or_default();
    let mut found: Option<DavResponse> = None;
    // The first response, if its href may stand for the path.
    let mut first: Option<DavResponse> = None;
    let mut responses = 0usize;
    each_response(source, |r| {
        responses += 1;
        if found.is_some() {
            return Ok(());
        }
        let parts = r
            .href
            .as_deref()
            .map(|h| href_to_parts(h, base, relative_to.parts()));
        match parts {
            Some(Ok(parts)) if parts == path.parts() => found = Some(r),
            Some(Err(e @ (HrefError::OtherServer | HrefError::QueryOrFragment))) => {
                warn!(href = ?r.href, "PROPFIND reply: skipping entry: href {e}");
            }
            _ if responses == 1 => first = Some(r),
            _ => {}
        }
        Ok(())
    })?;
    let r = match (found, first) {
        (Some(r), _) => r,
        (None, Some(r)) if responses == 1 => {
            warn!(href = ?r.href, path = %path, "PROPFIND reply names another href; using it");
            r
        }
        _ => {
            return Err(RemoteError::Malformed(format!(
                "PROPFIND reply does not describe {path}"
            )))
        }
    };
    if let Some(code) = r.failed_status() {
        return Err(super::status::error_for_status(code, None));
    }
    Ok(r)
}

#[cfg(test)]
mod tests;
