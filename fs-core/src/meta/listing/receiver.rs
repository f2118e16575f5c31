//! [`Receiver`]: takes a listing's children as the reply is parsed and stages them in
//! batches.

use super::*;

/// Receives a listing into the store a batch at a time: shared between the drive and the
/// thread that parses the reply. The stage is forgotten when the last holder drops it
/// unless [`Receiver::finish`] took it.
#[derive(Clone)]
pub struct Receiver(Arc<Mutex<Receiving>>);

pub(super) struct Receiving {
    meta: Arc<Meta>,
    /// Made at the first batch, when the listing's size is known to be small (all of it
    /// in one batch) or not.
    stage: Option<Stage>,
    finished: bool,
    batch: Vec<RemoteEntry>,
}

impl Drop for Receiving {
    fn drop(&mut self) {
        if let Some(stage) = self.stage.take() {
            self.meta.drop_stage(stage);
        }
    }
}

impl Receiver {
    /// Starts receiving a listing into `meta`.
    pub fn new(meta: Arc<Meta>) -> Receiver {
        Receiver(Arc::new(Mutex::new(Receiving {
            meta,
            stage: None,
            finished: false,
            batch: Vec::new(),
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Receiving> {
        lock(&self.0)
    }

    /// Takes one child; every [`BATCH`] of them go to the store.
    pub fn push(&self, child: RemoteEntry) -> Result<(), MetaError> {
        let mut r = self.lock();
        r.batch.push(child);
        if r.batch.len() >= BATCH {
            r.flush(true)?;
        }
        Ok(())
    }

    /// Stores what is left and hands over the stage, for [`Meta::merge_staged`].
    pub fn finish(&self) -> Result<Stage, MetaError> {
        let mut r = self.lock();
        r.flush(false)?;
        r.finished = true;
        r.stage
            .take()
            .ok_or_else(|| MetaError::Corrupt("a staged listing was finished twice".into()))
    }
}

impl Receiving {
    /// Stores the batch; `more` says whether more may follow (a large listing).
    fn flush(&mut self, more: bool) -> Result<(), MetaError> {
        if self.finished {
            return Err(MetaError::Corrupt(
                "a staged listing is already finished".into(),
            ));
        }
        if self.stage.is_none() {
            self.stage = Some(self.meta.stage(more)?);
        }
        if let Some(stage) = &self.stage {
            self.meta.stage_children(stage, &self.batch)?;
        }
        self.batch.clear();
        Ok(())
    }
}
