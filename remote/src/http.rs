//! What the HTTP backends share about reqwest (feature `http`): a reply body read whole
//! within a bound, and reqwest's failures as [`RemoteError`]s without the request URL (a
//! presigned S3 URL carries a signature, a WebDAV URL may carry a user name).

use std::error::Error as _;

use reqwest::Response;

use crate::RemoteError;

/// Reads a whole body, failing with [`RemoteError::Malformed`] beyond `cap` bytes.
pub async fn read_capped(mut resp: Response, cap: usize) -> Result<Vec<u8>, RemoteError> {
    let too_big = || RemoteError::Malformed(format!("reply larger than {} MiB", cap >> 20));
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(too_big());
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport_error)? {
        if out.len() + chunk.len() > cap {
            return Err(too_big());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Maps a reqwest failure. An error raised by an upload stream is returned as it was.
pub fn transport_error(e: reqwest::Error) -> RemoteError {
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(remote) = s.downcast_ref::<RemoteError>() {
            return remote.clone();
        }
        source = s.source();
    }
    let msg = chain(&e);
    if e.is_connect() || e.is_timeout() {
        RemoteError::Unreachable(msg)
    } else if e.is_builder() {
        RemoteError::Local(msg)
    } else {
        RemoteError::Transfer(msg)
    }
}

/// The error and its sources as one line, without the request URL.
pub fn chain(e: &reqwest::Error) -> String {
    let mut msg = if e.is_connect() {
        "connection failed".to_string()
    } else if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_body() || e.is_decode() {
        "reading the reply failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.ends_with(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg
}
