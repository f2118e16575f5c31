//! Named drives: `$XDG_CONFIG_HOME/edrive/config.toml`, one `[drives.NAME]` table per
//! drive with its URL, mountpoint, user and mount options (the long options of `edrive
//! mount`, with `_` for `-`). Never a secret: those live in the keyring or a 0600 file
//! (see `secrets`).
//!
//! A malformed file or an unknown key is an error naming the file, the line and the key;
//! a bad option value names the drive and the option.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::cli::MountArgs;

/// Reading or writing the config file failed, or a drive in it is unusable.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has a key edrive does not know (the parser's message
    /// names the line, the column and the key).
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Line, column, key and what is wrong.
        message: String,
    },
    /// A drive's options are not what `edrive mount` accepts.
    #[error("{path}: drive '{name}': {message}")]
    BadDrive {
        /// The file.
        path: PathBuf,
        /// The drive.
        name: String,
        /// What is wrong (names the option).
        message: String,
    },
    /// No drive by that name.
    #[error("no drive named '{name}' in {path} (see `edrive list`)")]
    NoSuchDrive {
        /// The file.
        path: PathBuf,
        /// The name asked for.
        name: String,
    },
    /// A drive by that name exists already.
    #[error("a drive named '{name}' exists already in {path} (`edrive remove {name}` first)")]
    Exists {
        /// The file.
        path: PathBuf,
        /// The name.
        name: String,
    },
    /// The name cannot name a drive.
    #[error("'{0}' cannot name a drive: use letters, digits, '-', '_' and '.' (not first)")]
    BadName(String),
}

/// The whole file.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The drives by name.
    #[serde(default)]
    pub drives: BTreeMap<String, DriveConfig>,
}

/// An option value: a number or a string (`cache_size = "20G"` or `= 21474836480`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    /// A plain number.
    Int(i64),
    /// Text, as on the command line.
    Text(String),
}

impl std::fmt::Display for Scalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scalar::Int(n) => write!(f, "{n}"),
            Scalar::Text(s) => f.write_str(s),
        }
    }
}

/// One named drive: where it is and how it is mounted. Every field but `url` and
/// `mountpoint` is a long option of `edrive mount` (`endpoint`, `region`, `path_style`
/// and `virtual_hosted` those of an `s3://` drive, whose keys edrive never stores).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriveConfig {
    /// The share's URL.
    pub url: String,
    /// Where it is mounted.
    pub mountpoint: PathBuf,
    /// S3: `--endpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// S3: `--region`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// S3: `--path-style`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub path_style: bool,
    /// S3: `--virtual-hosted`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub virtual_hosted: bool,
    /// HTTP Basic auth user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The drive authenticates with a bearer token (kept with the secrets).
    #[serde(default, skip_serializing_if = "is_false")]
    pub bearer_token: bool,
    /// Where the secret is kept when there is no keyring (mode 0600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<PathBuf>,
    /// `--cache-dir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<PathBuf>,
    /// `--cache-size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_size: Option<Scalar>,
    /// `--dir-cache-ttl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir_cache_ttl: Option<Scalar>,
    /// `--upload-delay`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_delay: Option<Scalar>,
    /// `--ignore`, each pattern.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<String>,
    /// `--background-reader`, each pattern.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub background_reader: Vec<String>,
    /// `--allow-reader`, each pattern.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_reader: Vec<String>,
    /// `--no-default-ignore`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_default_ignore: bool,
    /// `--poll-interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_interval: Option<Scalar>,
    /// `--on-conflict`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_conflict: Option<Scalar>,
    /// `--conditional-writes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditional_writes: Option<Scalar>,
    /// `--allow-other`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_other: bool,
    /// `--download-streams`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_streams: Option<Scalar>,
    /// `--no-passthrough`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_passthrough: bool,
    /// `--read-only`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
    /// `--uid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<Scalar>,
    /// `--gid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<Scalar>,
    /// `--umask` (octal, as a string: `"022"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub umask: Option<Scalar>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Options of `edrive mount` that are not kept in a drive: secrets, and how this one run
/// behaves.
const NOT_KEPT: &[&str] = &[
    "url",
    "mountpoint",
    "password_file",
    "bearer_token_file",
    "foreground",
    "daemon_child",
    "all",
];

/// `$XDG_CONFIG_HOME/edrive` (else `~/.config/edrive`).
pub fn config_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("edrive");
    }
    if cfg!(windows) {
        if let Some(d) = std::env::var_os("APPDATA") {
            return PathBuf::from(d).join("edrive");
        }
    }
    if let Some(h) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(h).join(".config").join("edrive");
    }
    PathBuf::from(".edrive")
}

/// The config file.
pub fn config_path() -> PathBuf {
    config_dir().join("config.toml")
}

/// Whether `name` can name a drive (it becomes part of a unit name and a file name).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Reads and checks the config file at `path` (none yet: no drives). Every drive's
/// options are checked as `edrive mount` would.
pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ConfigFile::default()),
        Err(source) => {
            return Err(ConfigError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let file: ConfigFile = toml::from_str(&text).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })?;
    for (name, drive) in &file.drives {
        if !valid_name(name) {
            return Err(ConfigError::BadDrive {
                path: path.to_path_buf(),
                name: name.clone(),
                message: ConfigError::BadName(name.clone()).to_string(),
            });
        }
        drive.mount_args(path, name)?;
    }
    Ok(file)
}

impl ConfigFile {
    /// The drive called `name`.
    pub fn drive(&self, path: &Path, name: &str) -> Result<&DriveConfig, ConfigError> {
        self.drives
            .get(name)
            .ok_or_else(|| ConfigError::NoSuchDrive {
                path: path.to_path_buf(),
                name: name.to_string(),
            })
    }
}

impl DriveConfig {
    /// The drive from the options of an `edrive add` command line: the ones given there
    /// (`matches` of the add subcommand), as typed. Fails on an option a drive cannot keep.
    pub fn from_matches(
        url: &str,
        mountpoint: &Path,
        matches: &clap::ArgMatches,
    ) -> Result<DriveConfig, String> {
        let mut table = toml::Table::new();
        table.insert("url".into(), toml::Value::String(url.to_string()));
        table.insert(
            "mountpoint".into(),
            toml::Value::String(mountpoint.display().to_string()),
        );
        use clap::CommandFactory;
        let cli = crate::cli::Cli::command();
        let args: Vec<String> = cli
            .find_subcommand("add")
            .map(|c| c.get_arguments().map(|a| a.get_id().to_string()).collect())
            .unwrap_or_default();
        for id in matches.ids() {
            let id = id.as_str();
            if NOT_KEPT.contains(&id) || id == "name" || !args.iter().any(|a| a == id) {
                continue;
            }
            if matches.value_source(id) != Some(clap::parser::ValueSource::CommandLine) {
                continue;
            }
            let Some(raw) = matches.get_raw(id) else {
                continue;
            };
            let raw: Vec<String> = raw.map(|v| v.to_string_lossy().into_owned()).collect();
            let value = if matches!(id, "ignore" | "background_reader" | "allow_reader") {
                toml::Value::Array(raw.into_iter().map(toml::Value::String).collect())
            } else if raw.is_empty() || matches.get_flag_opt(id) {
                toml::Value::Boolean(true)
            } else {
                toml::Value::String(raw.join(" "))
            };
            table.insert(id.to_string(), value);
        }
        let drive: DriveConfig = table.try_into().map_err(|e: toml::de::Error| {
            format!(
                "an option cannot be kept in a drive: {}",
                e.message().trim_end()
            )
        })?;
        Ok(drive)
    }

    /// The `edrive mount` arguments of this drive (after `edrive mount`), secrets aside.
    pub fn argv(&self) -> Vec<OsString> {
        let mut argv: Vec<OsString> = vec![self.url.clone().into(), self.mountpoint.clone().into()];
        let table = toml::Table::try_from(self).unwrap_or_default();
        for (key, value) in table {
            if key == "url" || key == "mountpoint" || key == "bearer_token" {
                continue;
            }
            let flag = format!("--{}", key.replace('_', "-"));
            match value {
                toml::Value::Boolean(true) => argv.push(flag.into()),
                toml::Value::Boolean(false) => {}
                toml::Value::Array(items) => {
                    for item in items {
                        if let toml::Value::String(s) = item {
                            argv.push(format!("{flag}={s}").into());
                        }
                    }
                }
                toml::Value::String(s) => argv.push(format!("{flag}={s}").into()),
                other => argv.push(format!("{flag}={other}").into()),
            }
        }
        argv
    }

    /// The mount arguments of this drive, checked as `edrive mount` checks them.
    pub fn mount_args(&self, path: &Path, name: &str) -> Result<MountArgs, ConfigError> {
        let mut argv: Vec<OsString> = vec!["edrive".into(), "mount".into()];
        argv.extend(self.argv());
        let bad = |message: String| ConfigError::BadDrive {
            path: path.to_path_buf(),
            name: name.to_string(),
            message,
        };
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from(argv).map_err(|e| {
            let text = e.render().to_string();
            // The first line says which option and why; the rest is usage.
            let first = text.lines().next().unwrap_or("invalid options").to_string();
            bad(first.trim_start_matches("error: ").to_string())
        })?;
        match cli.command {
            crate::cli::Command::Mount(args) => Ok(args),
            _ => Err(bad("not a mount".into())),
        }
    }
}

/// Whether the argument `id` of `matches` is a flag that was set (a bool option).
trait FlagOpt {
    fn get_flag_opt(&self, id: &str) -> bool;
}

impl FlagOpt for clap::ArgMatches {
    fn get_flag_opt(&self, id: &str) -> bool {
        matches!(self.try_get_one::<bool>(id), Ok(Some(true)))
    }
}

/// Adds the drive `name` to the config file at `path` (keeping the rest of the file, its
/// comments included); fails if one by that name exists.
pub fn add(path: &Path, name: &str, drive: &DriveConfig) -> Result<(), ConfigError> {
    if !valid_name(name) {
        return Err(ConfigError::BadName(name.to_string()));
    }
    let current = load(path)?;
    if current.drives.contains_key(name) {
        return Err(ConfigError::Exists {
            path: path.to_path_buf(),
            name: name.to_string(),
        });
    }
    let mut doc = read_doc(path)?;
    let table_text = toml::to_string(drive).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let table: toml_edit::DocumentMut =
        table_text
            .parse()
            .map_err(|e: toml_edit::TomlError| ConfigError::Syntax {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
    let drives = doc
        .entry("drives")
        .or_insert_with(|| {
            let mut t = toml_edit::Table::new();
            t.set_implicit(true);
            toml_edit::Item::Table(t)
        })
        .as_table_mut()
        .ok_or_else(|| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: "`drives` is not a table".into(),
        })?;
    drives.insert(name, toml_edit::Item::Table(table.as_table().clone()));
    write_doc(path, &doc)
}

/// Removes the drive `name` from the config file at `path`; returns what it was.
pub fn remove(path: &Path, name: &str) -> Result<DriveConfig, ConfigError> {
    let current = load(path)?;
    let drive = current.drive(path, name)?.clone();
    let mut doc = read_doc(path)?;
    if let Some(drives) = doc.get_mut("drives").and_then(|d| d.as_table_mut()) {
        drives.remove(name);
    }
    write_doc(path, &doc)?;
    Ok(drive)
}

fn read_doc(path: &Path) -> Result<toml_edit::DocumentMut, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(ConfigError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    text.parse()
        .map_err(|e: toml_edit::TomlError| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

/// Writes the file through a temporary file renamed over it (a crash leaves the old or
/// the new file, never half of one).
fn write_doc(path: &Path, doc: &toml_edit::DocumentMut) -> Result<(), ConfigError> {
    use std::io::Write;
    let io = |source: std::io::Error| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension(format!("toml.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(doc.to_string().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

#[cfg(test)]
mod tests;
