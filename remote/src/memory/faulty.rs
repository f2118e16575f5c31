//! [`FaultyRemote`]: wraps any [`Remote`] and fails, delays or cuts short the calls a
//! [`CallFilter`] picks.

use super::*;

/// Which calls a fault of a [`FaultyRemote`] applies to: every condition given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallFilter {
    /// Only the call with this [`RemoteCall::seq`] (the FaultyRemote's own count).
    pub nth: Option<u64>,
    /// Only calls of this kind.
    pub kind: Option<CallKind>,
    /// Only calls about this path (a move's source or destination).
    pub path: Option<RemotePath>,
}

impl CallFilter {
    /// Every call.
    pub fn any() -> CallFilter {
        CallFilter::default()
    }

    /// The call with this sequence number (0 is the first).
    pub fn nth(n: u64) -> CallFilter {
        CallFilter {
            nth: Some(n),
            ..CallFilter::default()
        }
    }

    /// Calls of this kind.
    pub fn kind(kind: CallKind) -> CallFilter {
        CallFilter {
            kind: Some(kind),
            ..CallFilter::default()
        }
    }

    /// These calls, about `path` only.
    pub fn at(mut self, path: RemotePath) -> CallFilter {
        self.path = Some(path);
        self
    }

    fn matches(&self, call: &RemoteCall) -> bool {
        self.nth.is_none_or(|n| n == call.seq)
            && self.kind.is_none_or(|k| k == call.kind)
            && self
                .path
                .as_ref()
                .is_none_or(|p| *p == call.path || Some(p) == call.to.as_ref())
    }
}

/// What a [`FaultyRemote`] does to a matching call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Fails with this error without reaching the server.
    Fail(RemoteError),
    /// Reaches the server, then fails with this error whatever the outcome (a reply lost
    /// on the way back).
    FailAfter(RemoteError),
    /// Waits this long before the call goes on (delays add up; other faults still apply).
    Delay(Duration),
    /// Cuts the body after this many bytes. A read's body then ends with
    /// [`RemoteError::ShortBody`]; a write reaches the server with only those bytes, which
    /// it stores (as a server that keeps what arrived), and fails with
    /// [`RemoteError::Transfer`]. Other calls are not affected.
    CutBody(u64),
}

struct Rule {
    filter: CallFilter,
    fault: Fault,
    left: usize,
}

/// Wraps a [`Remote`] and applies [`Fault`]s to chosen calls.
pub struct FaultyRemote {
    inner: Arc<dyn Remote>,
    rules: Mutex<Vec<Rule>>,
    calls: AtomicU64,
}

/// What to do with one call.
#[derive(Default)]
struct Plan {
    delay: Duration,
    fail: Option<RemoteError>,
    fail_after: Option<RemoteError>,
    cut: Option<u64>,
}

impl FaultyRemote {
    /// `inner` with no faults yet.
    pub fn new(inner: Arc<dyn Remote>) -> FaultyRemote {
        FaultyRemote {
            inner,
            rules: Mutex::new(Vec::new()),
            calls: AtomicU64::new(0),
        }
    }

    /// Applies `fault` to the next `times` calls that match `filter` (`usize::MAX`: all).
    pub fn inject(&self, filter: CallFilter, fault: Fault, times: usize) {
        lock(&self.rules).push(Rule {
            filter,
            fault,
            left: times,
        });
    }

    /// Fails call number `n` (0 is the first) with `error`.
    pub fn fail_nth(&self, n: u64, error: RemoteError) {
        self.inject(CallFilter::nth(n), Fault::Fail(error), 1);
    }

    /// Removes every fault not applied yet.
    pub fn clear(&self) {
        lock(&self.rules).clear();
    }

    /// How many calls were made so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Counts a call and gathers the faults that apply to it.
    async fn called(
        &self,
        kind: CallKind,
        path: &RemotePath,
        to: Option<&RemotePath>,
        precondition: &Precondition,
    ) -> Result<Plan, RemoteError> {
        let call = RemoteCall {
            seq: self.calls.fetch_add(1, Ordering::SeqCst),
            kind,
            path: path.clone(),
            to: to.cloned(),
            precondition: precondition.clone(),
        };
        let mut plan = Plan::default();
        {
            let mut rules = lock(&self.rules);
            for rule in rules.iter_mut() {
                if rule.left == 0 || !rule.filter.matches(&call) {
                    continue;
                }
                rule.left -= 1;
                match &rule.fault {
                    Fault::Delay(d) => plan.delay += *d,
                    Fault::Fail(e) => {
                        plan.fail.get_or_insert_with(|| e.clone());
                    }
                    Fault::FailAfter(e) => {
                        plan.fail_after.get_or_insert_with(|| e.clone());
                    }
                    Fault::CutBody(n) => {
                        plan.cut.get_or_insert(*n);
                    }
                }
            }
            rules.retain(|r| r.left > 0);
        }
        if !plan.delay.is_zero() {
            tokio::time::sleep(plan.delay).await;
        }
        match plan.fail.take() {
            Some(e) => Err(e),
            None => Ok(plan),
        }
    }
}

/// `r`, or the error a lost reply gives.
fn after<T>(plan: &mut Plan, r: Result<T, RemoteError>) -> Result<T, RemoteError> {
    match plan.fail_after.take() {
        Some(e) => Err(e),
        None => r,
    }
}

/// The first `limit` bytes of `body`, then (if it had more) the end.
fn take_bytes(body: ByteStream, limit: u64) -> ByteStream {
    Box::pin(futures_util::stream::unfold(
        (body, 0u64),
        move |(mut body, sent)| async move {
            if sent >= limit {
                return None;
            }
            let item = body.next().await?;
            Some(match item {
                Ok(chunk) => {
                    let keep = (limit - sent).min(chunk.len() as u64);
                    (Ok(chunk.slice(..keep as usize)), (body, sent + keep))
                }
                Err(e) => (Err(e), (body, limit)),
            })
        },
    ))
}

/// `body` cut after `limit` bytes and ended with an error, as a broken connection does.
fn cut_download(body: ByteStream, limit: u64, expected: u64) -> ByteStream {
    let end: ByteStream = Box::pin(futures_util::stream::once(async move {
        Err(RemoteError::ShortBody {
            expected,
            got: limit,
        })
    }));
    Box::pin(take_bytes(body, limit).chain(end))
}

#[async_trait]
impl Remote for FaultyRemote {
    async fn list(&self, path: &RemotePath) -> Result<Listing, RemoteError> {
        let mut plan = self
            .called(CallKind::List, path, None, &Precondition::None)
            .await?;
        let r = self.inner.list(path).await;
        after(&mut plan, r)
    }

    async fn list_each(
        &self,
        path: &RemotePath,
        sink: ChildSink,
    ) -> Result<ListingHead, RemoteError> {
        let mut plan = self
            .called(CallKind::List, path, None, &Precondition::None)
            .await?;
        let r = self.inner.list_each(path, sink).await;
        after(&mut plan, r)
    }

    async fn stat(&self, path: &RemotePath) -> Result<RemoteEntry, RemoteError> {
        let mut plan = self
            .called(CallKind::Stat, path, None, &Precondition::None)
            .await?;
        let r = self.inner.stat(path).await;
        after(&mut plan, r)
    }

    async fn read(
        &self,
        path: &RemotePath,
        range: Option<Range<u64>>,
    ) -> Result<Download, RemoteError> {
        let mut plan = self
            .called(CallKind::Read, path, None, &Precondition::None)
            .await?;
        let r = self.inner.read(path, range).await;
        let mut dl = after(&mut plan, r)?;
        if let (Some(limit), Some(len)) = (plan.cut, dl.len) {
            if limit < len {
                dl.body = cut_download(dl.body, limit, len);
            }
        }
        Ok(dl)
    }

    async fn put(
        &self,
        path: &RemotePath,
        body: ByteStream,
        len: u64,
        precondition: Precondition,
        mtime: Option<SystemTime>,
    ) -> Result<Option<ETag>, RemoteError> {
        let mut plan = self
            .called(CallKind::Put, path, None, &precondition)
            .await?;
        match plan.cut.filter(|n| *n < len) {
            Some(limit) => {
                let r = self
                    .inner
                    .put(path, take_bytes(body, limit), limit, precondition, mtime)
                    .await;
                after(&mut plan, r)?;
                Err(RemoteError::Transfer(format!(
                    "connection cut after {limit} of {len} bytes"
                )))
            }
            None => {
                let r = self.inner.put(path, body, len, precondition, mtime).await;
                after(&mut plan, r)
            }
        }
    }

    async fn mkdir(&self, path: &RemotePath) -> Result<(), RemoteError> {
        let mut plan = self
            .called(CallKind::Mkdir, path, None, &Precondition::None)
            .await?;
        let r = self.inner.mkdir(path).await;
        after(&mut plan, r)
    }

    async fn rename(
        &self,
        from: &RemotePath,
        to: &RemotePath,
        overwrite: bool,
    ) -> Result<(), RemoteError> {
        let mut plan = self
            .called(CallKind::Rename, from, Some(to), &Precondition::None)
            .await?;
        let r = self.inner.rename(from, to, overwrite).await;
        after(&mut plan, r)
    }

    async fn delete(
        &self,
        path: &RemotePath,
        precondition: Precondition,
    ) -> Result<(), RemoteError> {
        let mut plan = self
            .called(CallKind::Delete, path, None, &precondition)
            .await?;
        let r = self.inner.delete(path, precondition).await;
        after(&mut plan, r)
    }

    fn describe(&self) -> String {
        format!("faulty {}", self.inner.describe())
    }
}
