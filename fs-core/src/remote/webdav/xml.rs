//! Reading WebDAV XML replies: elements identified by namespace URI and local name, never
//! by prefix, with entity references and CDATA folded into plain text.

use std::borrow::Cow;
use std::io::BufRead;

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::reader::NsReader;

use crate::remote::RemoteError;

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
    Other,
}

impl Tag {
    fn from_name(ns: &ResolveResult<'_>, local: &str) -> Tag {
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

/// [`walk`] over a document read as it arrives: only the element being read is held in
/// memory, however long the document. A leading UTF-8 byte order mark is skipped.
pub(crate) fn walk_reader<R, F>(source: R, mut on: F) -> Result<(), RemoteError>
where
    R: BufRead,
    F: FnMut(&[Tag], Node<'_>) -> Result<(), RemoteError>,
{
    let mut reader = NsReader::from_reader(source);
    let mut buf = Vec::new();
    let mut stack: Vec<Tag> = Vec::new();
    let mut seen_root = false;
    loop {
        buf.clear();
        let (ns, event) = match reader.read_resolved_event_into(&mut buf) {
            Ok(x) => x,
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
    stack.push(Tag::from_name(ns, e.local_name().as_ref()));
    Ok(())
}

fn top(stack: &[Tag]) -> Tag {
    stack.last().copied().unwrap_or(Tag::Other)
}
