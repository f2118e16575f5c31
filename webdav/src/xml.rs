//! Reading WebDAV XML replies: elements identified by namespace URI and local name, never
//! by prefix, with entity references and CDATA folded into plain text.
//!
//! Memory stays bounded whatever a server sends. The parser holds one event (a tag with
//! its attributes, a piece of text, a comment, a CDATA section, a DOCTYPE) in a buffer
//! while it reads it; the reader under it hands over at most [`MAX_EVENT`] bytes per
//! event and fails beyond, so an endless text or tag is refused as it streams in, not
//! after it was buffered. Nesting is limited to [`MAX_DEPTH`], which bounds what the
//! parser keeps per open element (its name and namespace declarations). Entities other
//! than the predefined ones and character references are refused, never expanded.

use std::borrow::Cow;
use std::cell::Cell;
use std::io::{self, BufRead, Read};
use std::rc::Rc;

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::reader::NsReader;

use crate::remote::RemoteError;

/// The most bytes one event may take: a start tag with its attributes, a run of text
/// between markup, a comment, a CDATA section or a DOCTYPE.
pub(crate) const MAX_EVENT: usize = 64 << 10;

/// The deepest nesting of elements accepted (a multistatus needs 6 levels, property
/// values a few more).
pub(crate) const MAX_DEPTH: usize = 64;

/// The DAV: elements edrive cares about; everything else (other namespaces, other
/// DAV: elements) is [`Tag::Other`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tag {
    Multistatus,
    Response,
    Href,
    Status,
    Propstat,
    Prop,
    ResourceType,
    Collection,
    ContentLength,
    LastModified,
    GetEtag,
    Owner,
    QuotaAvailable,
    QuotaUsed,
    /// `current-user-privilege-set` (RFC 3744).
    PrivilegeSet,
    /// One `privilege` in it.
    Privilege,
    /// The privileges that allow changes: `all`, `write`, `write-content`, `bind`.
    PrivWrite,
    /// `unbind`: removing entries.
    PrivUnbind,
    /// Nextcloud's and ownCloud's `oc:permissions` (namespace `http://owncloud.org/ns`).
    OcPermissions,
    Other,
}

impl Tag {
    fn from_name(ns: &ResolveResult<'_>, local: &str) -> Tag {
        if matches!(
            ns,
            ResolveResult::Bound(Namespace("http://owncloud.org/ns"))
        ) && local == "permissions"
        {
            return Tag::OcPermissions;
        }
        if !matches!(ns, ResolveResult::Bound(Namespace("DAV:"))) {
            return Tag::Other;
        }
        match local {
            "multistatus" => Tag::Multistatus,
            "response" => Tag::Response,
            "href" => Tag::Href,
            "status" => Tag::Status,
            "propstat" => Tag::Propstat,
            "prop" => Tag::Prop,
            "resourcetype" => Tag::ResourceType,
            "collection" => Tag::Collection,
            "getcontentlength" => Tag::ContentLength,
            "getlastmodified" => Tag::LastModified,
            "getetag" => Tag::GetEtag,
            "owner" => Tag::Owner,
            "quota-available-bytes" => Tag::QuotaAvailable,
            "quota-used-bytes" => Tag::QuotaUsed,
            "current-user-privilege-set" => Tag::PrivilegeSet,
            "privilege" => Tag::Privilege,
            "all" | "write" | "write-content" | "bind" => Tag::PrivWrite,
            "unbind" => Tag::PrivUnbind,
            _ => Tag::Other,
        }
    }
}

/// One step through the document, reported together with the stack of open elements.
#[derive(Debug)]
pub(crate) enum Node<'a> {
    /// An element opened; it is already the last entry of the stack.
    Open(Tag),
    /// An element closes; it is still the last entry of the stack.
    Close(Tag),
    /// Character data inside the innermost open element (entities already resolved).
    Text(Cow<'a, str>),
}

/// Walks a whole document, calling `on` for every element and piece of text.
///
/// Fails with [`RemoteError::Malformed`] if the document is not UTF-8, not well-formed,
/// has no root element, or if `on` fails.
pub(crate) fn walk<F>(body: &[u8], on: F) -> Result<(), RemoteError>
where
    F: FnMut(&[Tag], Node<'_>) -> Result<(), RemoteError>,
{
    walk_reader(body, on)
}

/// [`walk`] over a document read as it arrives: only the event being read is held in
/// memory (at most [`MAX_EVENT`] bytes), however long the document. A leading UTF-8 byte
/// order mark is skipped.
pub(crate) fn walk_reader<R, F>(source: R, mut on: F) -> Result<(), RemoteError>
where
    R: BufRead,
    F: FnMut(&[Tag], Node<'_>) -> Result<(), RemoteError>,
{
    let exceeded = Rc::new(Cell::new(false));
    let mut reader = NsReader::from_reader(Capped {
        inner: source,
        left: MAX_EVENT,
        exceeded: exceeded.clone(),
    });
    let mut buf = Vec::new();
    let mut stack: Vec<Tag> = Vec::new();
    let mut seen_root = false;
    loop {
        buf.clear();
        reader.get_mut().left = MAX_EVENT;
        let (ns, event) = match reader.read_resolved_event_into(&mut buf) {
            Ok(x) => x,
            Err(_) if exceeded.get() => {
                return Err(RemoteError::Malformed(format!(
                    "an element's text or tag is longer than {} KiB",
                    MAX_EVENT >> 10
                )));
            }
            Err(e) => {
                let at = reader.error_position();
                return Err(RemoteError::Malformed(format!("bad XML at byte {at}: {e}")));
            }
        };

        match event {
            Event::Start(e) => {
                open(&mut stack, &mut seen_root, &ns, &e)?;
                on(&stack, Node::Open(top(&stack)))?;
            }
            Event::Empty(e) => {
                open(&mut stack, &mut seen_root, &ns, &e)?;
                on(&stack, Node::Open(top(&stack)))?;
                on(&stack, Node::Close(top(&stack)))?;
                stack.pop();
            }
            Event::End(_) => {
                if stack.is_empty() {
                    return Err(RemoteError::Malformed("unbalanced closing tag".into()));
                }
                on(&stack, Node::Close(top(&stack)))?;
                stack.pop();
            }
            Event::Text(t) => {
                if !stack.is_empty() {
                    on(&stack, Node::Text(t.xml10_content()))?;
                }
            }
            Event::CData(t) => {
                if !stack.is_empty() {
                    on(&stack, Node::Text(t.xml10_content()))?;
                }
            }
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => Cow::Owned(c.to_string()),
                    Ok(None) => match resolve_predefined_entity(&r) {
                        Some(s) => Cow::Borrowed(s),
                        None => {
                            return Err(RemoteError::Malformed(format!(
                                "undefined entity &{};",
                                r.xml10_content()
                            )))
                        }
                    },
                    Err(e) => {
                        return Err(RemoteError::Malformed(format!(
                            "bad character reference: {e}"
                        )))
                    }
                };
                if !stack.is_empty() {
                    on(&stack, Node::Text(resolved))?;
                }
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err(RemoteError::Malformed(
            "document ends inside an element".into(),
        ));
    }
    if !seen_root {
        return Err(RemoteError::Malformed(
            "document has no root element".into(),
        ));
    }
    Ok(())
}

fn open(
    stack: &mut Vec<Tag>,
    seen_root: &mut bool,
    ns: &ResolveResult<'_>,
    e: &BytesStart<'_>,
) -> Result<(), RemoteError> {
    if stack.is_empty() {
        if *seen_root {
            return Err(RemoteError::Malformed("more than one root element".into()));
        }
        *seen_root = true;
    }
    if stack.len() >= MAX_DEPTH {
        return Err(RemoteError::Malformed(format!(
            "elements nested deeper than {MAX_DEPTH}"
        )));
    }
    stack.push(Tag::from_name(ns, e.local_name().as_ref()));
    Ok(())
}

fn top(stack: &[Tag]) -> Tag {
    stack.last().copied().unwrap_or(Tag::Other)
}

/// The reader under the parser: passes at most `left` bytes on (set before each event),
/// then fails, so the parser never buffers more than that for one event.
struct Capped<R> {
    inner: R,
    left: usize,
    /// Set when an event wanted more than `left` bytes.
    exceeded: Rc<Cell<bool>>,
}

impl<R: BufRead> BufRead for Capped<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let left = self.left;
        let available = self.inner.fill_buf()?;
        if left == 0 && !available.is_empty() {
            self.exceeded.set(true);
            return Err(io::Error::other(format!(
                "an XML event is longer than {} KiB",
                MAX_EVENT >> 10
            )));
        }
        Ok(&available[..available.len().min(left)])
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.left);
        self.left -= n;
        self.inner.consume(n);
    }
}

impl<R: BufRead> Read for Capped<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks `doc`, collecting the text of every element.
    fn texts(doc: &[u8]) -> Result<Vec<String>, RemoteError> {
        let mut out = Vec::new();
        walk(doc, |_, node| {
            if let Node::Text(t) = node {
                out.push(t.into_owned());
            }
            Ok(())
        })?;
        Ok(out)
    }

    fn refused(doc: &[u8], why: &str) {
        match texts(doc) {
            Err(RemoteError::Malformed(m)) => assert!(m.contains(why), "{m}"),
            other => panic!("expected a refusal ({why}), got {other:?}"),
        }
    }

    /// A source that yields `prefix`, then `filler` bytes of `byte` (never held whole),
    /// then `suffix`, counting how much was read.
    struct Endless {
        prefix: Vec<u8>,
        byte: u8,
        filler: u64,
        suffix: Vec<u8>,
        at: u64,
    }

    impl Endless {
        fn new(prefix: &str, byte: u8, filler: u64, suffix: &str) -> Endless {
            Endless {
                prefix: prefix.as_bytes().to_vec(),
                byte,
                filler,
                suffix: suffix.as_bytes().to_vec(),
                at: 0,
            }
        }
    }

    impl Read for Endless {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let (p, f) = (self.prefix.len() as u64, self.filler);
            let at = self.at;
            let n = if at < p {
                let src = &self.prefix[at as usize..];
                let n = src.len().min(out.len());
                out[..n].copy_from_slice(&src[..n]);
                n
            } else if at < p + f {
                let n = ((p + f - at) as usize).min(out.len());
                out[..n].fill(self.byte);
                n
            } else {
                let src = &self.suffix[((at - p - f) as usize).min(self.suffix.len())..];
                let n = src.len().min(out.len());
                out[..n].copy_from_slice(&src[..n]);
                n
            };
            self.at += n as u64;
            Ok(n)
        }
    }

    #[test]
    fn text_and_tags_up_to_the_limit_pass() {
        let text = "x".repeat(MAX_EVENT - 100);
        let doc = format!("<a>{text}</a>");
        assert_eq!(texts(doc.as_bytes()).unwrap(), [text]);
        let attr = "y".repeat(MAX_EVENT - 100);
        let doc = format!("<a b=\"{attr}\">t</a>");
        assert_eq!(texts(doc.as_bytes()).unwrap(), ["t"]);
        // Many events, each small, add up to more than the limit.
        let doc = format!("<a>{}</a>", "<b>0123456789</b>".repeat(MAX_EVENT));
        assert_eq!(texts(doc.as_bytes()).unwrap().len(), MAX_EVENT);
    }

    #[test]
    fn an_endless_event_is_refused_while_it_streams_in() {
        // Text, text full of `>`, an attribute, a comment, CDATA and a DOCTYPE full of `<`,
        // a closing tag.
        let cases: [(&str, u8, &str); 7] = [
            ("<a>", b'x', "</a>"),
            ("<a>", b'>', "</a>"),
            ("<a b=\"", b'y', "\"/>"),
            ("<a><!--", b'-', "--></a>"),
            ("<a><![CDATA[", b'<', "]]></a>"),
            ("<!DOCTYPE a [", b'<', "]><a/>"),
            ("<a></a", b' ', ">"),
        ];
        for (prefix, byte, suffix) in cases {
            let mut source = io::BufReader::new(Endless::new(prefix, byte, 8 << 20, suffix));
            match walk_reader(&mut source, |_, _| Ok(())) {
                Err(RemoteError::Malformed(m)) => assert!(m.contains("longer than"), "{m}"),
                other => panic!("{prefix}: expected a refusal, got {other:?}"),
            }
            let read = source.get_ref().at;
            assert!(
                read < 2 * MAX_EVENT as u64 + 8192,
                "{prefix}: read {read} bytes before refusing"
            );
        }
    }

    #[test]
    fn deep_nesting_is_refused() {
        let ok = format!("{}{}", "<a>".repeat(MAX_DEPTH), "</a>".repeat(MAX_DEPTH));
        assert!(texts(ok.as_bytes()).is_ok());
        let deep = format!(
            "{}{}",
            "<a>".repeat(MAX_DEPTH + 1),
            "</a>".repeat(MAX_DEPTH + 1)
        );
        refused(deep.as_bytes(), "nested deeper");
        // An endless nesting stops at the limit, not at the end of the document.
        let endless = "<a>".repeat(1 << 16);
        let mut opened = 0usize;
        let r = walk(endless.as_bytes(), |stack, _| {
            opened = opened.max(stack.len());
            Ok(())
        });
        assert!(matches!(r, Err(RemoteError::Malformed(_))));
        assert_eq!(opened, MAX_DEPTH);
    }

    #[test]
    fn entities_are_never_expanded() {
        let bomb = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<lolz>&lol3;</lolz>"#;
        refused(bomb.as_bytes(), "undefined entity");
        assert_eq!(texts(b"<a>&lt;&#x41;&amp;</a>").unwrap().concat(), "<A&");
    }
}
