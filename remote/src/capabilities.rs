//! What a server guarantees, learnt by trying it ([`probe`]) rather than assumed.
//!
//! The write-back decides by these, never by the kind of server: a server that enforces
//! `If-Match` and `If-None-Match: *` and sends real ETags is trusted to refuse a write over
//! a version it was not based on; any other gets a second check before each write (see
//! `sync` in `edrive-fs-core`).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::StreamExt;

use super::{again, ByteStream, ETag, Precondition, Remote, RemoteError, RemotePath};

/// What was learnt about a server. `None`: not known (the probe could not try it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Whether the probe ran to the end.
    pub probed: bool,
    /// The server sends an ETag for a file (not a version made up from time and size).
    pub etags: Option<bool>,
    /// A PUT with `If-Match` on another version is refused (412).
    pub if_match: Option<bool>,
    /// A PUT with `If-None-Match: *` over an existing file is refused (412).
    pub if_none_match: Option<bool>,
    /// A DELETE with `If-Match` on another version is refused (412).
    pub delete_if_match: Option<bool>,
    /// A MOVE that may not overwrite (`Overwrite: F`) onto an existing file is refused.
    pub move_no_overwrite: Option<bool>,
    /// A file keeps its ETag when it is moved (renamed).
    pub etag_survives_move: Option<bool>,
    /// A modification time sent with a PUT is kept.
    pub mtime: Option<bool>,
    /// A ranged GET gets just the range.
    pub ranges: Option<bool>,
    /// Why the probe did not run or stopped, if it did not finish.
    pub note: Option<String>,
}

/// Whether the client checks a write's base version itself (`--conditional-writes`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WriteChecks {
    /// Probe the server and check where it gives no guarantee.
    #[default]
    Auto,
    /// Trust the server to enforce `If-Match` / `If-None-Match` without probing (for a
    /// server known to, where the probe cannot write at the top of the share).
    Trust,
    /// Always check, whatever the server says it does.
    Check,
}

impl WriteChecks {
    /// The option's value on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            WriteChecks::Auto => "auto",
            WriteChecks::Trust => "trust",
            WriteChecks::Check => "check",
        }
    }
}

impl std::str::FromStr for WriteChecks {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(WriteChecks::Auto),
            "trust" => Ok(WriteChecks::Trust),
            "check" => Ok(WriteChecks::Check),
            other => Err(format!("unknown value {other:?} (auto, trust or check)")),
        }
    }
}

/// A name the probe uses under the root; hidden from listings like every `.edrive-` name.
pub const PROBE_PREFIX: &str = ".edrive-probe-";

/// The time the probe sends with its file: any fixed time in the past will do.
const PROBE_MTIME: Duration = Duration::from_secs(1_000_000_000);

impl Capabilities {
    /// Whether the server can be trusted to refuse a write over a version it was not based
    /// on: real ETags, and both preconditions enforced on PUT. Unknown counts as no.
    pub fn conditional_writes(&self) -> bool {
        self.etags == Some(true) && self.if_match == Some(true) && self.if_none_match == Some(true)
    }

    /// Every learnt guarantee as (stored key, label for people, value): the one list that
    /// [`Capabilities::encode`], [`Capabilities::decode`] and `Display` go by.
    fn fields(&mut self) -> [(&'static str, &'static str, &mut Option<bool>); 8] {
        [
            ("etags", "ETags", &mut self.etags),
            ("if_match", "If-Match", &mut self.if_match),
            ("if_none_match", "If-None-Match", &mut self.if_none_match),
            (
                "delete_if_match",
                "DELETE If-Match",
                &mut self.delete_if_match,
            ),
            (
                "move_no_overwrite",
                "MOVE Overwrite: F",
                &mut self.move_no_overwrite,
            ),
            (
                "etag_survives_move",
                "ETag kept by MOVE",
                &mut self.etag_survives_move,
            ),
            ("mtime", "mtime", &mut self.mtime),
            ("ranges", "ranges", &mut self.ranges),
        ]
    }

    /// As stored in the metadata store: `key=value` pairs separated by `;`.
    pub fn encode(&self) -> String {
        let mut c = self.clone();
        let mut out = format!("probed={}", word(Some(c.probed)));
        for (key, _, value) in c.fields() {
            out.push_str(&format!(";{key}={}", word(*value)));
        }
        out
    }

    /// Reads what [`Capabilities::encode`] wrote; unknown keys and values are ignored.
    pub fn decode(s: &str) -> Capabilities {
        let mut c = Capabilities::default();
        for pair in s.split(';') {
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            let v = match v {
                "yes" => Some(true),
                "no" => Some(false),
                _ => None,
            };
            if k == "probed" {
                c.probed = v == Some(true);
            }
            for (key, _, value) in c.fields() {
                if key == k {
                    *value = v;
                }
            }
        }
        c
    }
}

/// `yes`, `no` or `unknown`.
fn word(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "yes",
        Some(false) => "no",
        None => "unknown",
    }
}

impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut c = self.clone();
        let parts: Vec<String> = c
            .fields()
            .into_iter()
            .map(|(_, label, value)| format!("{label} {}", word(*value)))
            .collect();
        f.write_str(&parts.join(", "))
    }
}

fn body(data: &'static [u8]) -> ByteStream {
    Box::pin(futures_util::stream::iter([Ok(Bytes::from_static(data))]))
}

/// Learns what the server at `remote` guarantees by trying it in a folder of its own,
/// `dir` (a name starting with [`PROBE_PREFIX`]), created and removed here: nothing of the
/// user's is touched. Fails if the folder cannot be created (no write permission there);
/// the caller then assumes nothing is guaranteed.
pub async fn probe(remote: &dyn Remote, dir: &RemotePath) -> Result<Capabilities, RemoteError> {
    match again(|| remote.mkdir(dir)).await {
        Ok(()) => {}
        // Left by a probe a crash cut short: reused, and removed below.
        Err(RemoteError::Status(405)) => {}
        Err(e) => return Err(e),
    }
    let result = probe_in(remote, dir).await;
    if let Err(e) = again(|| remote.delete(dir, Precondition::None)).await {
        tracing::warn!(%dir, error = %e, "could not remove the probe folder");
    }
    result
}

async fn probe_in(remote: &dyn Remote, dir: &RemotePath) -> Result<Capabilities, RemoteError> {
    const ONE: &[u8] = b"edrive probe, version 1\n";
    const TWO: &[u8] = b"edrive probe, version 2\n";
    let file = dir
        .join("probe.txt")
        .map_err(|e| RemoteError::Local(e.to_string()))?;
    let mut c = Capabilities::default();
    let t0 = UNIX_EPOCH + PROBE_MTIME;
    let _ = again(|| {
        remote.put(
            &file,
            body(ONE),
            ONE.len() as u64,
            Precondition::None,
            Some(t0),
        )
    })
    .await?;
    let st = again(|| remote.stat(&file)).await?;
    c.etags = Some(st.etag.as_ref().is_some_and(|t| !t.is_synthetic()));
    c.mtime = Some(st.mtime.is_some_and(|m| same_second(m, t0)));
    let bogus = Precondition::IfMatch(ETag {
        value: "edrive-probe-no-such-version".into(),
        weak: false,
    });
    c.if_match = Some(
        match again(|| remote.put(&file, body(TWO), TWO.len() as u64, bogus.clone(), None)).await {
            Err(RemoteError::PreconditionFailed) => true,
            Ok(_) => false,
            Err(e) => return Err(e),
        },
    );
    c.if_none_match = Some(
        match again(|| {
            remote.put(
                &file,
                body(ONE),
                ONE.len() as u64,
                Precondition::IfNoneExists,
                None,
            )
        })
        .await
        {
            Err(RemoteError::PreconditionFailed) => true,
            Ok(_) => false,
            Err(e) => return Err(e),
        },
    );
    c.ranges = Some(match again(|| remote.read(&file, Some(1..4))).await {
        Ok(dl) => {
            let mut got = Vec::new();
            let mut body = dl.body;
            while let Some(chunk) = body.next().await {
                got.extend_from_slice(&chunk?);
            }
            dl.skipped == 0 && got.len() == 3
        }
        Err(e) => return Err(e),
    });
    let other = dir
        .join("probe-2.txt")
        .map_err(|e| RemoteError::Local(e.to_string()))?;
    let _ = again(|| {
        remote.put(
            &other,
            body(TWO),
            TWO.len() as u64,
            Precondition::None,
            None,
        )
    })
    .await?;
    c.move_no_overwrite = Some(match again(|| remote.rename(&other, &file, false)).await {
        Err(RemoteError::PreconditionFailed) => true,
        Ok(()) => {
            // It replaced the probe file: put one back for the DELETE below.
            let _ =
                again(|| remote.put(&file, body(ONE), ONE.len() as u64, Precondition::None, None))
                    .await?;
            false
        }
        Err(e) => return Err(e),
    });
    // Whether a version keeps its tag across a MOVE: the client's own check compares a
    // file's tag after moving it aside.
    let moved = dir
        .join("probe-3.txt")
        .map_err(|e| RemoteError::Local(e.to_string()))?;
    let src = if c.move_no_overwrite == Some(true) {
        &other
    } else {
        &file
    };
    let before = again(|| remote.stat(src)).await?.etag;
    again(|| remote.rename(src, &moved, false)).await?;
    let after = again(|| remote.stat(&moved)).await?.etag;
    c.etag_survives_move =
        Some(matches!((&before, &after), (Some(a), Some(b)) if a.value == b.value));
    if src == &file {
        again(|| remote.rename(&moved, &file, false)).await?;
    }
    c.delete_if_match = Some(match again(|| remote.delete(&file, bogus.clone())).await {
        Err(RemoteError::PreconditionFailed) => true,
        Ok(()) => false,
        Err(e) => return Err(e),
    });
    c.probed = true;
    Ok(c)
}

fn same_second(a: SystemTime, b: SystemTime) -> bool {
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).ok();
    secs(a) == secs(b)
}

#[cfg(test)]
mod tests {
    use super::Capabilities;

    #[test]
    fn encode_decode_round_trip() {
        let c = Capabilities {
            probed: true,
            etags: Some(false),
            if_match: Some(true),
            if_none_match: None,
            delete_if_match: Some(false),
            move_no_overwrite: Some(true),
            etag_survives_move: Some(true),
            mtime: Some(true),
            ranges: Some(true),
            note: None,
        };
        assert_eq!(Capabilities::decode(&c.encode()), c);
        assert!(!c.conditional_writes());
        assert_eq!(
            Capabilities::decode("garbage;=;x=y"),
            Capabilities::default()
        );
    }
}
