//! Where a bucket is and how to sign for it: the `s3://BUCKET[/PREFIX]` URL, the endpoint,
//! the region, the addressing style and the credentials, found the way the AWS tools find
//! them (environment, then the profile in `~/.aws/credentials` and `~/.aws/config`).
//! Secrets never come from the command line and are never printed (`Debug` redacts them).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;
use url::Url;

/// Why a bucket cannot be mounted as configured.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The URL is not `s3://BUCKET[/PREFIX]`.
    #[error("not an S3 URL (s3://BUCKET[/PREFIX]): {0}")]
    Url(String),
    /// The endpoint is not an http(s) URL.
    #[error("bad S3 endpoint {0:?}: {1}")]
    Endpoint(String, String),
    /// Only one of the access key and the secret was found.
    #[error("incomplete S3 credentials in {0}: an access key id needs its secret access key")]
    Incomplete(String),
    /// A profile was asked for that no file has.
    #[error("AWS profile {0:?} not found in {1}")]
    NoProfile(String, String),
    /// The CA bundle for an https endpoint cannot be read.
    #[error("cannot read the CA bundle {0}: {1}")]
    CaBundle(String, String),
}

/// How the bucket appears in request URLs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Addressing {
    /// Path-style for a custom endpoint, virtual-hosted for AWS.
    #[default]
    Auto,
    /// `https://endpoint/BUCKET/KEY`.
    Path,
    /// `https://BUCKET.endpoint/KEY`.
    VirtualHosted,
}

/// What the command line says about a bucket besides its URL.
#[derive(Clone, Debug, Default)]
pub struct S3Options {
    /// `--endpoint`: the store's URL (default: the profile's `endpoint_url`, else AWS).
    pub endpoint: Option<String>,
    /// `--region` (default: `AWS_REGION`, the profile's `region`, else `us-east-1`).
    pub region: Option<String>,
    /// `--path-style` / `--virtual-hosted`.
    pub addressing: Addressing,
    /// Where resumable multipart uploads are journaled (the mount's cache dir); none: an
    /// interrupted multipart upload starts over.
    pub state_dir: Option<PathBuf>,
}

/// An access key with its secret, and a session token for temporary credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_key: String,
    /// `AWS_SESSION_TOKEN`.
    pub session_token: Option<String>,
    /// Where they were found, for status output (`environment`, `profile NAME`).
    pub source: String,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("source", &self.source)
            .finish()
    }
}

/// Everything needed to reach one bucket (and prefix) of an S3-compatible store.
#[derive(Clone, Debug)]
pub struct S3Config {
    /// The bucket's name.
    pub bucket: String,
    /// The key prefix the mount's root stands for: empty, or ending with `/`.
    pub prefix: String,
    /// The store's endpoint (`https://s3.REGION.amazonaws.com` for AWS).
    pub endpoint: Url,
    /// The signing region.
    pub region: String,
    /// Path-style addressing (else virtual-hosted).
    pub path_style: bool,
    /// `None`: anonymous requests (a public bucket).
    pub keys: Option<Keys>,
    /// PEM certificates to trust for an https endpoint (`AWS_CA_BUNDLE`).
    pub ca_bundle: Option<Vec<u8>>,
    /// See [`S3Options::state_dir`].
    pub state_dir: Option<PathBuf>,
    /// Limit for establishing a connection.
    pub connect_timeout: Duration,
    /// Limit for a metadata request, and for a pause in a body.
    pub request_timeout: Duration,
}

/// Splits `s3://BUCKET[/PREFIX]` into the bucket and the prefix (empty or ending in `/`).
pub fn parse_url(url: &str) -> Result<(String, String), ConfigError> {
    let bad = || ConfigError::Url(url.to_string());
    let rest = url.trim().strip_prefix("s3://").ok_or_else(bad)?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid_bucket = !bucket.is_empty()
        && bucket
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if !valid_bucket {
        return Err(bad());
    }
    let parts: Vec<&str> = prefix.split('/').filter(|p| !p.is_empty()).collect();
    if parts
        .iter()
        .any(|p| edrive_remote::validate_name(p).is_err())
    {
        return Err(bad());
    }
    let prefix = parts.iter().map(|p| format!("{p}/")).collect::<String>();
    Ok((bucket.to_string(), prefix))
}

/// Whether `url` is meant for the S3 backend.
pub fn is_s3_url(url: &str) -> bool {
    url.trim_start().starts_with("s3://")
}

/// One profile's settings, from both files.
#[derive(Default, Debug)]
struct Profile {
    values: HashMap<String, String>,
    found: bool,
}

impl Profile {
    fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// Reads the sections of an AWS INI file: `[name]` (credentials) or `[profile name]` /
/// `[default]` (config); `key = value` lines; `#` and `;` comments. Nested `services`
/// blocks are not read.
fn read_ini(text: &str, config: bool, want: &str, into: &mut Profile) {
    let mut in_section = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim();
            let name = if config {
                name.strip_prefix("profile ").map(str::trim).unwrap_or(name)
            } else {
                name
            };
            in_section = name == want;
            into.found |= in_section;
            continue;
        }
        if !in_section || line.starts_with(char::is_whitespace) {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            into.values
                .entry(k.trim().to_ascii_lowercase())
                .or_insert_with(|| v.trim().to_string());
        }
    }
}

impl S3Config {
    /// Resolves the configuration of `url` the AWS way, reading variables through `env`
    /// (the process environment in the binary) and the profile files under `home`.
    pub fn resolve(
        url: &str,
        options: &S3Options,
        env: &dyn Fn(&str) -> Option<String>,
        home: Option<&Path>,
    ) -> Result<S3Config, ConfigError> {
        let (bucket, prefix) = parse_url(url)?;
        let var = |k: &str| env(k).filter(|v| !v.is_empty());
        let explicit_profile = var("AWS_PROFILE");
        let profile_name = explicit_profile.clone().unwrap_or_else(|| "default".into());
        let aws_dir = home.map(|h| h.join(".aws"));
        let credentials_file = var("AWS_SHARED_CREDENTIALS_FILE")
            .map(PathBuf::from)
            .or_else(|| aws_dir.as_ref().map(|d| d.join("credentials")));
        let config_file = var("AWS_CONFIG_FILE")
            .map(PathBuf::from)
            .or_else(|| aws_dir.as_ref().map(|d| d.join("config")));
        let mut profile = Profile::default();
        // The credentials file wins over the config file for the same key.
        for (file, config) in [(&credentials_file, false), (&config_file, true)] {
            if let Some(text) = file.as_ref().and_then(|f| std::fs::read_to_string(f).ok()) {
                read_ini(&text, config, &profile_name, &mut profile);
            }
        }
        if explicit_profile.is_some() && !profile.found {
            let files = [&credentials_file, &config_file]
                .iter()
                .filter_map(|f| f.as_ref().map(|f| f.display().to_string()))
                .collect::<Vec<_>>()
                .join(" or ");
            return Err(ConfigError::NoProfile(profile_name, files));
        }

        let keys = match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(access_key), Some(secret_key)) => Some(Keys {
                access_key,
                secret_key,
                session_token: var("AWS_SESSION_TOKEN"),
                source: "environment".into(),
            }),
            (Some(_), None) | (None, Some(_)) => {
                return Err(ConfigError::Incomplete("the environment".into()))
            }
            (None, None) => match (
                profile.get("aws_access_key_id"),
                profile.get("aws_secret_access_key"),
            ) {
                (Some(a), Some(s)) => Some(Keys {
                    access_key: a.into(),
                    secret_key: s.into(),
                    session_token: profile.get("aws_session_token").map(Into::into),
                    source: format!("profile {profile_name}"),
                }),
                (Some(_), None) | (None, Some(_)) => {
                    return Err(ConfigError::Incomplete(format!("profile {profile_name}")))
                }
                (None, None) => None,
            },
        };
        let region = options
            .region
            .clone()
            .or_else(|| var("AWS_REGION"))
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .or_else(|| profile.get("region").map(Into::into))
            .unwrap_or_else(|| "us-east-1".into());
        let custom = options
            .endpoint
            .clone()
            .or_else(|| var("AWS_ENDPOINT_URL_S3"))
            .or_else(|| var("AWS_ENDPOINT_URL"))
            .or_else(|| profile.get("endpoint_url").map(Into::into));
        let endpoint_text = custom
            .clone()
            .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        let endpoint = Url::parse(endpoint_text.trim())
            .map_err(|e| ConfigError::Endpoint(endpoint_text.clone(), e.to_string()))?;
        if !matches!(endpoint.scheme(), "http" | "https") || endpoint.host_str().is_none() {
            return Err(ConfigError::Endpoint(
                endpoint_text,
                "must be http:// or https:// with a host".into(),
            ));
        }
        let path_style = match options.addressing {
            Addressing::Path => true,
            Addressing::VirtualHosted => false,
            // A bucket name with dots breaks the wildcard certificate of AWS.
            Addressing::Auto => custom.is_some() || bucket.contains('.'),
        };
        // Only an https endpoint uses a CA bundle: the variable set for other tools must
        // not break a plain http one.
        let ca_bundle = match var("AWS_CA_BUNDLE") {
            Some(file) if endpoint.scheme() == "https" => {
                Some(std::fs::read(&file).map_err(|e| ConfigError::CaBundle(file, e.to_string()))?)
            }
            _ => None,
        };
        Ok(S3Config {
            bucket,
            prefix,
            endpoint,
            region,
            path_style,
            keys,
            ca_bundle,
            state_dir: options.state_dir.clone(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
        })
    }

    /// `s3://BUCKET/PREFIX` as given (without credentials, which never are in it).
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn urls() {
        assert_eq!(parse_url("s3://bkt").unwrap(), ("bkt".into(), "".into()));
        assert_eq!(
            parse_url("s3://bkt/a/b/").unwrap(),
            ("bkt".into(), "a/b/".into())
        );
        assert_eq!(
            parse_url("s3://bkt//a//b").unwrap(),
            ("bkt".into(), "a/b/".into())
        );
        for bad in ["http://x/", "s3://", "s3://a b", "s3://bkt/../x", "s3:///x"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn environment_wins_and_http_ignores_ca_bundle() {
        let env = env_of(&[
            ("AWS_ACCESS_KEY_ID", "AK"),
            ("AWS_SECRET_ACCESS_KEY", "SK"),
            ("AWS_CA_BUNDLE", "/nonexistent/ca.pem"),
        ]);
        let opts = S3Options {
            endpoint: Some("http://127.0.0.1:9000".into()),
            ..S3Options::default()
        };
        let c = S3Config::resolve("s3://bkt/p", &opts, &env, None).unwrap();
        assert_eq!(c.keys.as_ref().unwrap().access_key, "AK");
        assert!(c.path_style);
        assert_eq!(c.region, "us-east-1");
        assert!(c.ca_bundle.is_none());
        assert!(!format!("{c:?}").contains("SK"));
        // https with an unreadable bundle is a clear error.
        let opts = S3Options {
            endpoint: Some("https://store.example".into()),
            ..S3Options::default()
        };
        assert!(matches!(
            S3Config::resolve("s3://bkt", &opts, &env, None),
            Err(ConfigError::CaBundle(..))
        ));
    }

    #[test]
    fn profiles_from_files() {
        let home = tempfile::tempdir().unwrap();
        let aws = home.path().join(".aws");
        std::fs::create_dir(&aws).unwrap();
        std::fs::write(
            aws.join("credentials"),
            "[default]\naws_access_key_id = D\naws_secret_access_key = DS\n\n[work]\n# c\naws_access_key_id=W\naws_secret_access_key=WS\n",
        )
        .unwrap();
        std::fs::write(
            aws.join("config"),
            "[default]\nregion = eu-west-1\n[profile work]\nregion = eu-central-1\nendpoint_url = http://127.0.0.1:8333\n",
        )
        .unwrap();
        let none = env_of(&[]);
        let c =
            S3Config::resolve("s3://bkt", &S3Options::default(), &none, Some(home.path())).unwrap();
        assert_eq!(c.keys.unwrap().access_key, "D");
        assert_eq!(c.region, "eu-west-1");
        assert_eq!(c.endpoint.as_str(), "https://s3.eu-west-1.amazonaws.com/");
        assert!(!c.path_style);
        let work = env_of(&[("AWS_PROFILE", "work")]);
        let c =
            S3Config::resolve("s3://bkt", &S3Options::default(), &work, Some(home.path())).unwrap();
        assert_eq!(c.keys.unwrap().source, "profile work");
        assert_eq!(c.region, "eu-central-1");
        assert_eq!(c.endpoint.as_str(), "http://127.0.0.1:8333/");
        assert!(c.path_style);
        let missing = env_of(&[("AWS_PROFILE", "nope")]);
        assert!(matches!(
            S3Config::resolve(
                "s3://bkt",
                &S3Options::default(),
                &missing,
                Some(home.path())
            ),
            Err(ConfigError::NoProfile(..))
        ));
    }
}
