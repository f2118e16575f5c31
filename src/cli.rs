//! The command line: exactly the names README.md documents.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use edrive_fs_core::remote::capabilities::WriteChecks;
use edrive_fs_core::sync::ConflictPolicy;

use crate::units::{parse_duration, parse_size};

fn parse_policy(s: &str) -> Result<ConflictPolicy, String> {
    s.parse()
}

fn parse_write_checks(s: &str) -> Result<WriteChecks, String> {
    s.parse()
}

/// A path, empty allowed (clap's own refuses an empty one; here it means "not given").
fn parse_path(s: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(s))
}

fn parse_umask(s: &str) -> Result<u16, String> {
    u16::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("'{s}' is not an octal umask (e.g. 022, 077)"))
}

/// Mount a remote drive as a local folder; file content is fetched when it is opened.
#[derive(Debug, Parser)]
#[command(name = "edrive", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a local folder over WebDAV (the demo and test server).
    Serve(ServeArgs),
    /// Mount a WebDAV share at MOUNTPOINT.
    Mount(MountArgs),
    /// Unmount MOUNTPOINT and stop its daemon.
    Unmount(UnmountArgs),
    /// Show the state of a mount, or of a file or folder inside one.
    Status(StatusArgs),
    /// Give a running mount new credentials (checked against the server first) and store
    /// them for later mounts.
    Login(LoginArgs),
    /// Upload every pending local change now and wait until the server has it.
    Sync(SyncArgs),
    /// Stop background network work (after the transfer in flight); kept across remounts.
    Suspend(SuspendArgs),
    /// Continue where `suspend` stopped.
    Resume(ResumeArgs),
    /// Keep files or folders local for offline use: downloads everything under them, now
    /// and later, and keeps it out of eviction.
    Pin(PinArgs),
    /// Remove pins (the content stays cached, now evictable).
    Unpin(PathsArgs),
    /// Delete the clean cached content under paths now (changes not uploaded are kept).
    Free(PathsArgs),
    /// Start the embedded server on a generated sample tree and mount it.
    Demo(DemoArgs),
    /// Show every mount's state in the desktop panel (one icon per session; Linux).
    Tray(TrayArgs),
    /// List files changed on both sides that wait for a decision, and recent sync events
    /// (conflict copies made, deletions that kept local changes).
    Conflicts(ConflictsArgs),
    /// Settle a conflict: keep the local version, the server's, or both.
    Resolve(ResolveArgs),
    /// Add edrive's menus to the file managers of the current user (Nautilus, Thunar,
    /// Dolphin), or remove them.
    Desktop(DesktopArgs),
    /// Set up a named drive: checks the credentials, keeps them in the keyring (else a
    /// 0600 file) and the drive in config.toml.
    Add(AddArgs),
    /// Forget a named drive and its stored credentials.
    Remove(NameArgs),
    /// List the named drives and the running mounts, with their states.
    List(ListArgs),
    /// Start a named drive at login: a systemd user unit.
    Enable(NameArgs),
    /// Stop starting a named drive at login.
    Disable(NameArgs),
    /// Print a shell's completion script (bash, zsh, fish).
    Completions(CompletionsArgs),
    /// Write the man page and completion scripts into a folder (for packaging).
    #[command(hide = true)]
    GenerateAssets(AssetsArgs),
    /// List mass deletions held back; send them (--confirm) or bring them back (--restore).
    Deletions(DeletionsArgs),
    /// Leave server folders alone on this device: an empty read-only placeholder, never
    /// listed, fetched or polled; its cached content is freed. Kept across remounts.
    Exclude(PathsArgs),
    /// Undo `exclude`: the folder's content is listed again.
    Include(PathsArgs),
}

/// `edrive deletions`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("action").multiple(false)))]
pub struct DeletionsArgs {
    /// The mounted folder (all held deletions), or a path inside it as it was before the
    /// deletion (those at or below it).
    pub path: PathBuf,
    /// Send the held deletions to the server.
    #[arg(long, group = "action")]
    pub confirm: bool,
    /// Bring the entries back as the server has them (content is fetched on demand).
    #[arg(long, group = "action")]
    pub restore: bool,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// `edrive desktop`.
#[derive(Debug, Args)]
pub struct DesktopArgs {
    /// Install or uninstall.
    #[command(subcommand)]
    pub action: DesktopAction,
}

/// What `edrive desktop` does.
#[derive(Debug, Subcommand)]
pub enum DesktopAction {
    /// Install "Always keep on this device", "Free up space", "Online only" and "Sync
    /// status" for Nautilus, Thunar and Dolphin, under $XDG_DATA_HOME and
    /// $XDG_CONFIG_HOME (no root needed).
    Install,
    /// Remove what `desktop install` added (the user's own Thunar actions stay).
    Uninstall,
}

/// `edrive conflicts`.
#[derive(Debug, Args)]
pub struct ConflictsArgs {
    /// The mounted folder.
    pub mountpoint: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// `edrive resolve`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("choice").required(true).multiple(false)))]
pub struct ResolveArgs {
    /// The file in conflict, inside a mount.
    pub path: PathBuf,
    /// Upload the local version over the server's.
    #[arg(long, group = "choice")]
    pub use_local: bool,
    /// Take the server's version; the local one is kept for 30 days in the cache
    /// folder's `recovered/` (the command says where).
    #[arg(long, group = "choice")]
    pub use_remote: bool,
    /// Keep both: the local version becomes `NAME (conflict HOST DATE TIME).EXT`.
    #[arg(long, group = "choice")]
    pub keep_both: bool,
    /// A change the server refused: give it up (the server's version comes back; the
    /// local bytes are kept in `recovered/` too).
    #[arg(long, group = "choice")]
    pub discard: bool,
    /// A change the server refused: copy the local version to LOCAL_PATH (a new file
    /// outside the mount), then give the change up.
    #[arg(long, group = "choice", value_name = "LOCAL_PATH")]
    pub save_as: Option<PathBuf>,
}

/// `edrive serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The folder to serve.
    pub dir: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Require HTTP Basic auth with this user name.
    #[arg(long)]
    pub user: Option<String>,
    /// The password for --user (visible to `ps`; prefer --password-file).
    #[arg(long, conflicts_with = "password_file")]
    pub password: Option<String>,
    /// A file whose first line is the password for --user.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// Testing: require `Authorization: Bearer TOKEN`, TOKEN being the file's first line.
    #[arg(long, hide = true, conflicts_with = "user")]
    pub bearer_token_file: Option<PathBuf>,
    /// Refuse uploads (507 Insufficient Storage) that would make the served tree larger
    /// than this, e.g. 100M.
    #[arg(long, value_parser = parse_size)]
    pub quota: Option<u64>,
    /// Testing: answer every Nth write request (PUT, MKCOL, MOVE, DELETE) with a 500.
    #[arg(long, hide = true)]
    pub fail_every: Option<u64>,
    /// Testing: send each GET's body at most this fast (bytes a second, per request), as
    /// a server or link that caps every connection does.
    #[arg(long, hide = true, value_parser = parse_size)]
    pub rate_limit: Option<u64>,
    /// Testing: ignore Range headers (answer every GET with the whole file), as some
    /// servers and proxies do.
    #[arg(long, hide = true)]
    pub ignore_range: bool,
    /// Testing: ignore If-Match and If-None-Match (write whatever the version), as nginx
    /// and `rclone serve webdav` do.
    #[arg(long, hide = true)]
    pub ignore_preconditions: bool,
}

/// `edrive mount`.
#[derive(Debug, Args, Clone)]
pub struct MountArgs {
    /// The WebDAV URL of the share's root folder, `s3://BUCKET[/PREFIX]` for an
    /// S3-compatible store (see README "S3"), or the NAME of a drive set up with
    /// `edrive add` (then without MOUNTPOINT).
    #[arg(default_value = "", hide_default_value = true)]
    pub url: String,
    /// An existing empty folder to mount onto.
    #[arg(default_value = "", hide_default_value = true, value_parser = parse_path)]
    pub mountpoint: PathBuf,
    /// Mount every drive set up with `edrive add` that is not mounted yet.
    #[arg(long, conflicts_with_all = ["url", "mountpoint"])]
    pub all: bool,
    /// S3 options (`--endpoint`, `--region`, `--path-style`, `--virtual-hosted`).
    #[command(flatten)]
    pub s3: S3Args,
    /// User name for HTTP Basic auth.
    #[arg(long)]
    pub user: Option<String>,
    /// A file whose first line is the password (else $EDRIVE_PASSWORD, else the
    /// credentials stored by `edrive login`).
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// Authenticate with a bearer token: the file's first line.
    #[arg(long, conflicts_with_all = ["user", "password_file"])]
    pub bearer_token_file: Option<PathBuf>,
    /// Where `edrive login` stores credentials for later mounts (mode 0600; default:
    /// `credentials` in the cache directory).
    #[arg(long)]
    pub credentials_file: Option<PathBuf>,
    /// Where cached content and metadata live (default: a folder per mount under
    /// $XDG_CACHE_HOME/edrive/).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Cache budget, e.g. 500M, 10G or plain bytes.
    #[arg(long, default_value = "10G", value_parser = parse_size)]
    pub cache_size: u64,
    /// How long a folder listing is trusted before it is revalidated (e.g. 30s, 500ms, 5m).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub dir_cache_ttl: Duration,
    /// How long a file must stay closed and untouched before it is uploaded (so a save
    /// that writes several times uploads once).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub upload_delay: Duration,
    /// A name pattern (`*`, `?`) kept local and never uploaded; repeat for more. Adds to
    /// the defaults (editor lock, swap and temp files) unless --no-default-ignore.
    #[arg(long = "ignore", value_name = "PATTERN")]
    pub ignore: Vec<String>,
    /// Do not use the default ignore list.
    #[arg(long)]
    pub no_default_ignore: bool,
    /// How often the folders in use and everything pinned are checked for changes made on
    /// the server by others (e.g. 30s, 5m; 0 turns polling off).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// What happens to a file changed both here and on the server: `keep-both` (the
    /// server's version keeps the name; the local one becomes `NAME (conflict HOST DATE
    /// TIME).EXT` and is uploaded) or `ask` (the local one stays, is not uploaded, and
    /// waits for `edrive resolve`).
    #[arg(long, default_value = "keep-both", value_parser = parse_policy)]
    pub on_conflict: ConflictPolicy,
    /// Whether uploads rely on the server to refuse a write over another version: `auto`
    /// (learn it by probing the server; check each write ourselves where it does not),
    /// `trust` (no probe: the server is known to enforce If-Match and If-None-Match, e.g.
    /// where the top of the share is read-only) or `check` (always check ourselves).
    #[arg(long, default_value = "auto", value_parser = parse_write_checks)]
    pub conditional_writes: WriteChecks,
    /// Let other users (root included) use the mount; file modes still decide what each
    /// may do. Unless run as root, needs `user_allow_other` in /etc/fuse.conf.
    #[arg(long)]
    pub allow_other: bool,
    /// Most requests one file's download may run at once. Extra ranged requests are
    /// only made while a single one is slow (under 96 MiB/s) and readers want more;
    /// 1 turns them off.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub download_streams: u16,
    /// Serve every read through the daemon: no FUSE passthrough (by default the kernel
    /// reads cached files itself where it can; a file it serves so cannot be opened for
    /// writing until those readers close).
    #[arg(long)]
    pub no_passthrough: bool,
    /// Also treat PROGRAM as a background reader (a thumbnailer, an indexer): it gets
    /// only content that is already local, never a download. A pattern (`*`, `?`) matched
    /// against the base names of the caller's executable and first two arguments and
    /// those of its parents; repeatable. See README "Desktop" for the default list.
    #[arg(long, value_name = "PROGRAM")]
    pub background_reader: Vec<String>,
    /// Let PROGRAM download although the default list of background readers names it
    /// (a pattern as for `--background-reader`; `*` lets every program download).
    #[arg(long, value_name = "PROGRAM")]
    pub allow_reader: Vec<String>,
    /// Mount read-only: nothing can be changed through the mount.
    #[arg(long)]
    pub read_only: bool,
    /// The owner every file and folder shows (default: the user who mounts).
    #[arg(long)]
    pub uid: Option<u32>,
    /// The group every file and folder shows (default: the user's group).
    #[arg(long)]
    pub gid: Option<u32>,
    /// Permission bits files and folders do not get, in octal (022 shows 644 and 755).
    #[arg(long, value_parser = parse_umask)]
    pub umask: Option<u16>,
    /// Local deletions in one burst of more than this many entries (files and folders)
    /// are held, not sent, until `edrive deletions --confirm` (or `--restore`).
    #[arg(long, default_value_t = 100)]
    pub hold_deletions_over: u64,
    /// Local deletions in one burst of more than this many bytes are held too.
    #[arg(long, default_value = "1G", value_parser = parse_size)]
    pub hold_deletions_bytes: u64,
    /// Stay in the foreground; on SIGINT/SIGTERM upload pending changes, then unmount.
    #[arg(long)]
    pub foreground: bool,
    /// Internal: this process is the background daemon; report readiness on stdout and
    /// read the password from stdin.
    #[arg(long, hide = true)]
    pub daemon_child: bool,
}

/// `edrive unmount`.
#[derive(Debug, Args)]
pub struct UnmountArgs {
    /// The mounted folder, or the NAME of a drive set up with `edrive add`.
    pub mountpoint: PathBuf,
    /// Do not wait for pending uploads; they stay in the cache for the next mount.
    #[arg(long)]
    pub force: bool,
    /// How long to wait for pending uploads before unmounting anyway (what is left stays
    /// in the cache for the next mount).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// `edrive sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The mounted folder.
    pub mountpoint: PathBuf,
    /// How long to wait for the uploads before giving up (they go on in the background).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// `edrive suspend`.
#[derive(Debug, Args)]
pub struct SuspendArgs {
    /// The mounted folder.
    pub mountpoint: PathBuf,
    /// Also hold back on-demand downloads: opening a file that is not cached fails at once.
    #[arg(long)]
    pub offline: bool,
}

/// `edrive pin`.
#[derive(Debug, Args)]
pub struct PinArgs {
    /// Files or folders inside a mount.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Return at once instead of waiting until everything is local.
    #[arg(long)]
    pub no_wait: bool,
}

/// `edrive unpin` and `edrive free`.
#[derive(Debug, Args)]
pub struct PathsArgs {
    /// Files or folders inside a mount.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// `edrive resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The mounted folder.
    pub mountpoint: PathBuf,
}

/// `edrive status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The mounted folder (the mount's state), or a file or folder inside it (that
    /// entry's state).
    pub path: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// `edrive login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The mounted folder.
    pub mountpoint: PathBuf,
    /// Log in as this user (default: the mount's user).
    #[arg(long)]
    pub user: Option<String>,
    /// A file whose first line is the password (else $EDRIVE_PASSWORD, else a prompt).
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// A file whose first line is the new bearer token.
    #[arg(long, conflicts_with_all = ["user", "password_file"])]
    pub bearer_token_file: Option<PathBuf>,
}

/// `edrive demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to mount the demo (default: ./edrive-demo).
    pub mountpoint: Option<PathBuf>,
}

/// `edrive tray`.
#[derive(Debug, Args)]
pub struct TrayArgs {
    /// Write the login autostart entry for `edrive tray` and exit.
    #[arg(long)]
    pub install_autostart: bool,
}

/// `edrive add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// The drive's name: letters, digits, '-', '_', '.'.
    pub name: String,
    /// The share, the mountpoint and the mount options kept for the drive.
    #[command(flatten)]
    pub mount: MountArgs,
}

/// `edrive remove`, `enable`, `disable`.
#[derive(Debug, Args)]
pub struct NameArgs {
    /// The drive's name (see `edrive list`).
    pub name: String,
}

/// `edrive list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// The shells completions are made for.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CompletionShell {
    /// bash.
    Bash,
    /// zsh.
    Zsh,
    /// fish.
    Fish,
}

/// `edrive completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: CompletionShell,
}

/// `edrive generate-assets`.
#[derive(Debug, Args)]
pub struct AssetsArgs {
    /// The folder to write into (made if missing).
    pub dir: PathBuf,
    /// The binary's installed path, for the systemd unit.
    #[arg(long, default_value = "/usr/bin/edrive")]
    pub exe: PathBuf,
}

/// The S3 options of `edrive mount` (credentials come the AWS way: environment,
/// `AWS_PROFILE`, `~/.aws/credentials` and `~/.aws/config`, never the command line).
#[derive(Debug, Args, Clone, Default)]
pub struct S3Args {
    /// S3: the store's endpoint URL (default: `AWS_ENDPOINT_URL`, the profile's
    /// `endpoint_url`, else AWS).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// S3: the signing region (default: `AWS_REGION`, the profile's `region`, else
    /// us-east-1).
    #[arg(long)]
    pub region: Option<String>,
    /// S3: address the bucket in the path (`ENDPOINT/BUCKET/KEY`; the default for a
    /// custom endpoint).
    #[arg(long, conflicts_with = "virtual_hosted")]
    pub path_style: bool,
    /// S3: address the bucket in the host name (`BUCKET.ENDPOINT/KEY`; the default for
    /// AWS).
    #[arg(long)]
    pub virtual_hosted: bool,
}
