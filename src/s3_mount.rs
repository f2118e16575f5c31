//! `edrive mount s3://BUCKET[/PREFIX]`: the S3 options of `mount` and the connection to
//! the bucket, the S3 counterpart of the WebDAV setup in `daemon`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use edrive_fs_core::remote::{Remote, RemoteEntry, RemoteError, RemotePath};
use edrive_s3::{Addressing, S3Config, S3Options, S3};

use crate::cli::S3Args;
use crate::login::Keeper;

impl S3Args {
    /// The options as the daemon child is given them again.
    pub fn to_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(e) = &self.endpoint {
            out.push(format!("--endpoint={e}"));
        }
        if let Some(r) = &self.region {
            out.push(format!("--region={r}"));
        }
        if self.path_style {
            out.push("--path-style".into());
        }
        if self.virtual_hosted {
            out.push("--virtual-hosted".into());
        }
        out
    }
}

/// How long a journaled multipart upload may wait to be continued before it is aborted.
const ABANDONED_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

/// The remote, its root and the keeper of its credentials.
pub type Connected = (Arc<dyn Remote>, RemoteEntry, Arc<Keeper>);

/// Resolves the configuration, checks that the bucket answers, and returns the remote,
/// its root and the keeper of the credentials; the error is one line for the user.
pub fn connect(
    url: &str,
    args: &S3Args,
    cache_dir: &Path,
    rt: &tokio::runtime::Runtime,
    timeout: Duration,
) -> Result<Connected, String> {
    let (s3, root, source) = open(url, args, Some(cache_dir), rt, timeout)?;
    // Uploads of ours a week old were never continued: their file went before it could be.
    let _ = rt.block_on(async {
        tokio::time::timeout(timeout, s3.sweep_abandoned(ABANDONED_AFTER)).await
    });
    let keeper = Arc::new(Keeper::for_s3(url.to_string(), source));
    Ok((s3, root, keeper))
}

/// Checks that the bucket of `url` answers to the credentials found the AWS way (for
/// `edrive add`: nothing is journaled, nothing swept); returns where the credentials came
/// from, or the reason in one line.
pub fn check(url: &str, args: &S3Args, timeout: Duration) -> Result<String, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))?;
    open(url, args, None, &rt, timeout).map(|(_, _, source)| source)
}

/// The client for `url` (journaling multipart uploads in `state_dir`), its root once the
/// bucket answered, and where the credentials came from.
fn open(
    url: &str,
    args: &S3Args,
    state_dir: Option<&Path>,
    rt: &tokio::runtime::Runtime,
    timeout: Duration,
) -> Result<(Arc<S3>, RemoteEntry, String), String> {
    let options = S3Options {
        endpoint: args.endpoint.clone(),
        region: args.region.clone(),
        addressing: if args.path_style {
            Addressing::Path
        } else if args.virtual_hosted {
            Addressing::VirtualHosted
        } else {
            Addressing::Auto
        },
        state_dir: state_dir.map(Path::to_path_buf),
    };
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let config = S3Config::resolve(url, &options, &|k| std::env::var(k).ok(), home.as_deref())
        .map_err(|e| e.to_string())?;
    let source = config
        .keys
        .as_ref()
        .map(|k| k.source.clone())
        .unwrap_or_else(|| "none (anonymous)".into());
    let endpoint = config.endpoint.to_string();
    tracing::info!(%url, %endpoint, region = %config.region, path_style = config.path_style, credentials = %source, "S3 store");
    let s3 = Arc::new(S3::new(config).map_err(|e| format!("cannot use {url}: {e}"))?);
    let root = match rt
        .block_on(async { tokio::time::timeout(timeout, s3.stat(&RemotePath::root())).await })
    {
        Ok(Ok(root)) => root,
        Ok(Err(RemoteError::Auth(code))) => {
            return Err(format!(
                "the store at {endpoint} refused access to {url} (HTTP {code}) with the \
                 credentials from {source}: check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY \
                 or AWS_PROFILE"
            ))
        }
        Ok(Err(RemoteError::NotFound)) => {
            return Err(format!("bucket of {url} not found at {endpoint}"))
        }
        Ok(Err(e)) => return Err(format!("store {endpoint} cannot be used for {url}: {e}")),
        Err(_) => {
            return Err(format!(
                "store {endpoint} did not answer within {} s",
                timeout.as_secs()
            ))
        }
    };
    Ok((s3, root, source))
}
