//! Whether the server can be reached: online, offline (unreachable; probed with backoff
//! until it answers again) or waiting for credentials (a 401/403 stops all network work at
//! once, so a wrong password never turns into a retry storm that could lock the account).
//!
//! Every request goes through [`Watched`], which refuses at once while the drive is
//! offline, so reads of content that is not cached fail fast instead of each waiting for a
//! timeout, and learns the state from each reply. [`Connectivity::run_prober`] brings the
//! drive back online by itself.

use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::remote::{
    ByteStream, ChildSink, Download, ETag, Listing, ListingHead, Precondition, Quota, Remote,
    RemoteEntry, RemoteError, RemotePath,
};

/// First wait before probing an unreachable server again; doubled up to [`PROBE_MAX`].
const PROBE_MIN: Duration = Duration::from_secs(1);
/// Longest wait between probes of an unreachable server.
const PROBE_MAX: Duration = Duration::from_secs(60);
/// First wait before checking refused credentials again (a handful of requests an hour at
/// most, far below any lockout threshold); doubled up to [`AUTH_PROBE_MAX`].
const AUTH_PROBE_MIN: Duration = Duration::from_secs(60);
/// Longest wait between checks of refused credentials.
const AUTH_PROBE_MAX: Duration = Duration::from_secs(900);

/// The drive's link to its server, as status output shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetState {
    /// Requests go out.
    Online,
    /// The server could not be reached.
    Offline {
        /// Since when.
        since: SystemTime,
        /// When the next probe goes out.
        next_probe: SystemTime,
        /// What failed.
        reason: String,
    },
    /// The server refused the credentials.
    AuthRequired {
        /// Since when.
        since: SystemTime,
        /// The HTTP status (401 or 403).
        status: u16,
    },
}

struct Inner {
    state: NetState,
    /// Suspended with `--offline`: no request goes out, nothing is probed.
    forced_offline: bool,
    /// A request timed out while online: probe now to tell a slow request from a dead
    /// server.
    suspect: bool,
    next_probe: Instant,
    backoff: Duration,
}

/// The shared state of the link to the server.
pub struct Connectivity {
    inner: Mutex<Inner>,
    changed: Notify,
}

impl Default for Connectivity {
    fn default() -> Self {
        Connectivity {
            inner: Mutex::new(Inner {
                state: NetState::Online,
                forced_offline: false,
                suspect: false,
                next_probe: Instant::now(),
                backoff: PROBE_MIN,
            }),
            changed: Notify::new(),
        }
    }
}

fn to_system(t: Instant) -> SystemTime {
    SystemTime::now() + t.saturating_duration_since(Instant::now())
}

impl Connectivity {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state now.
    pub fn state(&self) -> NetState {
        self.lock().state.clone()
    }

    /// Whether requests may go out now.
    pub fn usable(&self) -> bool {
        let g = self.lock();
        !g.forced_offline && g.state == NetState::Online
    }

    /// Keeps every request from going out (`suspend --offline`), or lets them go again.
    pub fn set_forced_offline(&self, on: bool) {
        self.lock().forced_offline = on;
        self.changed.notify_waiters();
    }

    /// Whether requests are held back by `suspend --offline`.
    pub fn forced_offline(&self) -> bool {
        self.lock().forced_offline
    }

    /// Waits until the state changes (or `timeout` passes).
    pub async fn changed(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.changed.notified()).await;
    }

    /// Why a request may not go out now, if it may not.
    fn gate(&self) -> Result<(), RemoteError> {
        let g = self.lock();
        if g.forced_offline {
            return Err(RemoteError::Unreachable(
                "suspended offline (edrive resume to reconnect)".into(),
            ));
        }
        match &g.state {
            NetState::Online => Ok(()),
            NetState::Offline { reason, .. } => Err(RemoteError::Unreachable(format!(
                "offline ({reason}); next retry in {} s",
                g.next_probe
                    .saturating_duration_since(Instant::now())
                    .as_secs()
            ))),
            NetState::AuthRequired { status, .. } => Err(RemoteError::Auth(*status)),
        }
    }

    /// Learns from the outcome of a request. Only a failed connection means offline: a
    /// timeout may be one slow request (a huge folder, a slow server-side MOVE), so it asks
    /// for a probe instead. Only a 401 means the credentials are refused: a 403 on one path
    /// is about that path (a read-only share, a blocked name), so the write-back flags that
    /// entry; a 403 on the probe of the root does count.
    fn observe<T>(&self, r: &Result<T, RemoteError>) {
        match r {
            Err(RemoteError::Unreachable(why)) if why.starts_with("connection failed") => {
                self.went_offline(why)
            }
            Err(RemoteError::Unreachable(_)) => {
                self.lock().suspect = true;
                self.changed.notify_waiters();
            }
            Err(RemoteError::Auth(401)) => self.auth_refused(401),
            _ => {}
        }
    }

    fn went_offline(&self, why: &str) {
        let mut g = self.lock();
        if g.state == NetState::Online {
            warn!(reason = %why, "server unreachable: offline; cached content stays readable and changes are queued");
            g.backoff = PROBE_MIN;
            g.next_probe = Instant::now() + g.backoff;
            g.state = NetState::Offline {
                since: SystemTime::now(),
                next_probe: to_system(g.next_probe),
                reason: why.to_string(),
            };
            drop(g);
            self.changed.notify_waiters();
        }
    }

    fn auth_refused(&self, status: u16) {
        let mut g = self.lock();
        if !matches!(g.state, NetState::AuthRequired { .. }) {
            warn!(status, "the server refused the credentials: network work stops until they work again; local data is kept");
            g.backoff = AUTH_PROBE_MIN;
            g.next_probe = Instant::now() + g.backoff;
            g.state = NetState::AuthRequired {
                since: SystemTime::now(),
                status,
            };
            drop(g);
            self.changed.notify_waiters();
        }
    }

    /// New credentials were just checked against the server (`edrive login`): online
    /// again now, without waiting for the next probe.
    pub fn credentials_accepted(&self) {
        {
            let mut g = self.lock();
            g.backoff = PROBE_MIN;
            g.suspect = false;
        }
        self.back_online();
    }

    fn back_online(&self) {
        let mut g = self.lock();
        if g.state != NetState::Online {
            info!("server reachable again: online");
            g.state = NetState::Online;
            drop(g);
            self.changed.notify_waiters();
        }
    }

    /// Probes the server (through `remote`, not [`Watched`]) whenever the drive is offline
    /// or its credentials were refused, with backoff, until it answers; then the drive is
    /// online again. Runs until the runtime stops.
    pub async fn run_prober(self: Arc<Self>, remote: Arc<dyn Remote>) {
        loop {
            let wait = {
                let mut g = self.lock();
                match g.state {
                    _ if g.forced_offline => None,
                    NetState::Online if g.suspect => {
                        g.suspect = false;
                        Some(Duration::ZERO)
                    }
                    NetState::Online => None,
                    _ => Some(g.next_probe.saturating_duration_since(Instant::now())),
                }
            };
            match wait {
                None => self.changed(Duration::from_secs(5)).await,
                Some(w) if !w.is_zero() => self.changed(w).await,
                Some(_) => {
                    let r = remote.stat(&RemotePath::root()).await;
                    match r {
                        Err(RemoteError::Unreachable(why)) if self.state() == NetState::Online => {
                            self.went_offline(&why);
                        }
                        Err(RemoteError::Unreachable(why)) => {
                            let mut g = self.lock();
                            g.backoff = (g.backoff * 2).clamp(PROBE_MIN, PROBE_MAX);
                            g.next_probe = Instant::now() + g.backoff;
                            g.state = NetState::Offline {
                                since: match &g.state {
                                    NetState::Offline { since, .. } => *since,
                                    _ => SystemTime::now(),
                                },
                                next_probe: to_system(g.next_probe),
                                reason: why,
                            };
                        }
                        Err(RemoteError::Auth(status)) => {
                            let mut g = self.lock();
                            g.backoff = (g.backoff * 2).clamp(AUTH_PROBE_MIN, AUTH_PROBE_MAX);
                            g.next_probe = Instant::now() + g.backoff;
                            if !matches!(g.state, NetState::AuthRequired { .. }) {
                                g.state = NetState::AuthRequired {
                                    since: SystemTime::now(),
                                    status,
                                };
                            }
                        }
                        // Any answer (even an error status) means it can be reached.
                        _ => self.back_online(),
                    }
                }
            }
        }
    }
}

/// A [`Remote`] whose requests are held back while the drive is offline and whose
/// replies tell [`Connectivity`] how the link is.
pub struct Watched {
    remote: Arc<dyn Remote>,
    conn: Arc<Connectivity>,
}

impl Watched {
    /// Watches `remote` for `conn`.
    pub fn new(remote: Arc<dyn Remote>, conn: Arc<Connectivity>) -> Watched {
        Watched { remote, conn }
    }
}

#[async_trait]
impl Remote for Watched {
    async fn list(&self, path: &RemotePath) -> Result<Listing, RemoteError> {
        self.conn.gate()?;
        let r = self.remote.list(path).await;
        self.conn.observe(&r);
        r
    }

    async fn list_each(
        &self,
        path: &RemotePath,
        sink: ChildSink,
    ) -> Result<ListingHead, RemoteError> {
        self.conn.gate()?;
        let r = self.remote.list_each(path, sink).await;
        self.conn.observe(&r);
        r
    }

    async fn stat(&self, path: &RemotePath) -> Result<RemoteEntry, RemoteError> {
        self.conn.gate()?;
        let r = self.remote.stat(path).await;
        self.conn.observe(&r);
        r
    }

    async fn read(
        &self,
        path: &RemotePath,
        range: Option<Range<u64>>,
    ) -> Result<Download, RemoteError> {
        self.conn.gate()?;
        let r = self.remote.read(path, range).await;
        self.conn.observe(&r);
        r
    }

    async fn put(
        &self,
        path: &RemotePath,
        body: ByteStream,
        len: u64,
        precondition: Precondition,
        mtime: Option<SystemTime>,
    ) -> Result<Option<ETag>, RemoteError> {
        self.conn.gate()?;
        let r = self.remote.put(path, body, len, precondition, mtime).await;
        self.conn.observe(&r);
        r
    }

    async fn mkdir(&self, path: &RemotePath) -> Result<(), RemoteError> {
        self.conn.gate()?;
        let r = self.remote.mkdir(path).await;
        self.conn.observe(&r);
        r
    }

    async fn rename(
        &self,
        from: &RemotePath,
        to: &RemotePath,
        overwrite: bool,
    ) -> Result<(), RemoteError> {
        self.conn.gate()?;
        let r = self.remote.rename(from, to, overwrite).await;
        self.conn.observe(&r);
        r
    }

    async fn delete(
        &self,
        path: &RemotePath,
        precondition: Precondition,
    ) -> Result<(), RemoteError> {
        self.conn.gate()?;
        let r = self.remote.delete(path, precondition).await;
        self.conn.observe(&r);
        r
    }

    fn describe(&self) -> String {
        self.remote.describe()
    }

    async fn quota(&self) -> Result<Option<Quota>, RemoteError> {
        self.conn.gate()?;
        let r = self.remote.quota().await;
        self.conn.observe(&r);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_goes_offline_and_refuses_at_once_auth_is_sticky() {
        let c = Connectivity::default();
        assert!(c.usable());
        c.observe::<()>(&Err(RemoteError::Status(500)));
        assert!(c.usable(), "a server error is an answer");
        c.observe::<()>(&Err(RemoteError::Unreachable("timed out".into())));
        assert!(c.usable(), "a timeout only asks for a probe");
        c.observe::<()>(&Err(RemoteError::Auth(403)));
        assert!(c.usable(), "a 403 is about one path");
        c.observe::<()>(&Err(RemoteError::Unreachable(
            "connection failed: refused".into(),
        )));
        assert!(matches!(c.state(), NetState::Offline { .. }));
        assert!(matches!(c.gate(), Err(RemoteError::Unreachable(_))));
        c.back_online();
        assert!(c.usable());
        c.observe::<()>(&Err(RemoteError::Auth(401)));
        assert!(matches!(c.gate(), Err(RemoteError::Auth(401))));
        // A later network error does not hide that credentials are needed.
        c.observe::<()>(&Err(RemoteError::Unreachable("connection failed".into())));
        assert!(matches!(c.state(), NetState::AuthRequired { .. }));
        c.back_online();
        c.set_forced_offline(true);
        assert!(!c.usable());
        assert!(c.gate().is_err());
        c.set_forced_offline(false);
        assert!(c.usable());
        c.observe::<()>(&Err(RemoteError::Auth(401)));
        assert!(!c.usable());
        c.credentials_accepted();
        assert_eq!(c.state(), NetState::Online);
        assert!(c.usable());
    }
}
