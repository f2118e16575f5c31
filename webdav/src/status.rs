//! HTTP status codes of failed requests mapped to [`RemoteError`].

use super::xml::{walk, Node, Tag};
use crate::remote::RemoteError;

/// Largest error body read (only 423 bodies are read, for the lock owner).
pub(crate) const MAX_ERROR_BODY: usize = 64 << 10;

/// The error for a non-success status; `body` is the reply body if it was read.
pub(crate) fn error_for_status(code: u16, body: Option<&[u8]>) -> RemoteError {
    match code {
        401 | 403 => RemoteError::Auth(code),
        404 | 410 => RemoteError::NotFound,
        412 => RemoteError::PreconditionFailed,
        423 => RemoteError::Locked(body.and_then(lock_owner)),
        507 => RemoteError::InsufficientStorage,
        _ => RemoteError::Status(code),
    }
}

/// The text of the first `<D:owner>` element anywhere in an XML body (whitespace
/// collapsed), or `None` if there is none, it is empty, or the body is not XML.
pub(crate) fn lock_owner(body: &[u8]) -> Option<String> {
    let mut owner = String::new();
    let mut done = false;
    let walked = walk(body, |stack, node| {
        if done {
            return Ok(());
        }
        match node {
            Node::Text(t) if stack.contains(&Tag::Owner) => owner.push_str(&t),
            Node::Close(Tag::Owner) if stack.iter().filter(|t| **t == Tag::Owner).count() == 1 => {
                done = true;
            }
            _ => {}
        }
        Ok(())
    });
    let owner = owner.split_whitespace().collect::<Vec<_>>().join(" ");
    (walked.is_ok() && done && !owner.is_empty()).then_some(owner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_mapping() {
        assert_eq!(error_for_status(401, None), RemoteError::Auth(401));
        assert_eq!(error_for_status(403, None), RemoteError::Auth(403));
        assert_eq!(error_for_status(404, None), RemoteError::NotFound);
        assert_eq!(error_for_status(410, None), RemoteError::NotFound);
        assert_eq!(error_for_status(412, None), RemoteError::PreconditionFailed);
        assert_eq!(error_for_status(423, None), RemoteError::Locked(None));
        assert_eq!(
            error_for_status(507, None),
            RemoteError::InsufficientStorage
        );
        assert_eq!(error_for_status(500, None), RemoteError::Status(500));
        assert_eq!(error_for_status(409, None), RemoteError::Status(409));
    }

    #[test]
    fn lock_owners() {
        let body = br#"<?xml version="1.0"?><d:error xmlns:d="DAV:"><d:lock-token-submitted>
<d:href>/dav/f</d:href></d:lock-token-submitted><d:activelock><d:owner>
  <d:href>mailto:bob@example.com</d:href> (Bob)</d:owner></d:activelock></d:error>"#;
        assert_eq!(
            error_for_status(423, Some(body)),
            RemoteError::Locked(Some("mailto:bob@example.com (Bob)".into()))
        );
        let plain =
            br#"<prop xmlns="DAV:"><lockdiscovery><activelock><owner>alice</owner></activelock>
<activelock><owner>second</owner></activelock></lockdiscovery></prop>"#;
        assert_eq!(lock_owner(plain), Some("alice".into()));
        assert_eq!(
            lock_owner(b"<x:owner xmlns:x=\"urn:x\">eve</x:owner>"),
            None
        );
        assert_eq!(lock_owner(b"<d:owner xmlns:d=\"DAV:\">  </d:owner>"), None);
        assert_eq!(lock_owner(b"Locked"), None);
        assert_eq!(lock_owner(b"<html><p>locked</p>"), None);
    }
}
