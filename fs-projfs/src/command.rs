//! Callbacks answered later: the bookkeeping between a ProjFS callback that started async
//! work, the task doing it, and `PrjCancelCommand`.
//!
//! A callback that needs the network starts a task and returns `ERROR_IO_PENDING`; the task
//! reports through `PrjCompleteCommand`. Three things race:
//!
//! * the task may finish *before* the callback has returned — then the callback returns the
//!   result itself and nothing is completed later (ProjFS only accepts a completion for a
//!   command whose callback returned pending);
//! * ProjFS may cancel the command — then the task is aborted and never completes it;
//! * the task finishes after the callback returned — then it completes the command.
//!
//! [`Commands`] decides which, under one short lock that nothing holds across I/O. It is
//! generic over the task handle so it is tested without an async runtime.

use std::collections::HashMap;

use crate::hresult::Hresult;

/// A ProjFS command id (`PRJ_CALLBACK_DATA.CommandId`).
pub type CommandId = i32;

#[derive(Debug)]
enum State<H> {
    Running { task: Option<H>, returned: bool },
    Finished(Hresult),
}

/// What a finishing task must do with its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// Call `PrjCompleteCommand` with the result.
    Complete,
    /// Nothing: the callback has not returned yet and will return the result itself.
    Handed,
    /// Nothing: the command was cancelled (or never registered).
    Dropped,
}

/// The commands in flight of one virtualization instance; `H` is the handle that aborts a
/// task.
#[derive(Debug)]
pub struct Commands<H> {
    running: HashMap<CommandId, State<H>>,
}

impl<H> Default for Commands<H> {
    fn default() -> Self {
        Commands {
            running: HashMap::new(),
        }
    }
}

impl<H> Commands<H> {
    /// No commands.
    pub fn new() -> Commands<H> {
        Commands::default()
    }

    /// Registers command `id` before its task is started.
    pub fn begin(&mut self, id: CommandId) {
        self.running.insert(
            id,
            State::Running {
                task: None,
                returned: false,
            },
        );
    }

    /// Records the handle of `id`'s task (ignored if the task already finished).
    pub fn attach(&mut self, id: CommandId, task: H) {
        if let Some(State::Running { task: slot, .. }) = self.running.get_mut(&id) {
            *slot = Some(task);
        }
    }

    /// The callback of `id` is returning: `Some(result)` if the task already finished (the
    /// callback returns it), `None` if the callback must return `ERROR_IO_PENDING`.
    pub fn returning(&mut self, id: CommandId) -> Option<Hresult> {
        match self.running.get_mut(&id) {
            Some(State::Finished(hr)) => {
                let hr = *hr;
                self.running.remove(&id);
                Some(hr)
            }
            Some(State::Running { returned, .. }) => {
                *returned = true;
                None
            }
            // Cancelled while the callback was still running.
            None => Some(Hresult::CANCELLED),
        }
    }

    /// The task of `id` finished with `result`.
    pub fn finish(&mut self, id: CommandId, result: Hresult) -> Finish {
        match self.running.get(&id) {
            Some(State::Running { returned: true, .. }) => {
                self.running.remove(&id);
                Finish::Complete
            }
            Some(State::Running {
                returned: false, ..
            }) => {
                self.running.insert(id, State::Finished(result));
                Finish::Handed
            }
            Some(State::Finished(_)) | None => Finish::Dropped,
        }
    }

    /// ProjFS cancelled `id`: forgets it and returns its task handle to abort.
    pub fn cancel(&mut self, id: CommandId) -> Option<H> {
        match self.running.remove(&id) {
            Some(State::Running { task, .. }) => task,
            _ => None,
        }
    }

    /// Forgets every command and returns their task handles (the instance is stopping).
    pub fn drain(&mut self) -> Vec<H> {
        self.running
            .drain()
            .filter_map(|(_, s)| match s {
                State::Running { task, .. } => task,
                State::Finished(_) => None,
            })
            .collect()
    }

    /// Commands in flight.
    pub fn len(&self) -> usize {
        self.running.len()
    }

    /// Whether none is in flight.
    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_task_completes_the_command() {
        let mut c: Commands<&str> = Commands::new();
        c.begin(1);
        c.attach(1, "task");
        assert_eq!(c.returning(1), None, "callback returns ERROR_IO_PENDING");
        assert_eq!(c.finish(1, Hresult::OK), Finish::Complete);
        assert!(c.is_empty());
    }

    #[test]
    fn fast_task_hands_its_result_to_the_callback() {
        let mut c: Commands<&str> = Commands::new();
        c.begin(2);
        assert_eq!(c.finish(2, Hresult::FILE_NOT_FOUND), Finish::Handed);
        c.attach(2, "task"); // the spawn call returns after the task already ran
        assert_eq!(c.returning(2), Some(Hresult::FILE_NOT_FOUND));
        assert!(c.is_empty());
    }

    #[test]
    fn cancelled_command_is_never_completed() {
        let mut c: Commands<&str> = Commands::new();
        c.begin(3);
        c.attach(3, "task3");
        assert_eq!(c.returning(3), None);
        assert_eq!(c.cancel(3), Some("task3"));
        assert_eq!(c.finish(3, Hresult::OK), Finish::Dropped);
        assert_eq!(c.cancel(3), None, "cancel twice is harmless");
    }

    #[test]
    fn cancel_before_the_callback_returns() {
        let mut c: Commands<&str> = Commands::new();
        c.begin(4);
        c.attach(4, "task4");
        assert_eq!(c.cancel(4), Some("task4"));
        assert_eq!(c.returning(4), Some(Hresult::CANCELLED));
    }

    #[test]
    fn commands_are_independent_and_drain() {
        let mut c: Commands<u8> = Commands::new();
        c.begin(5);
        c.begin(6);
        c.attach(5, 50);
        c.attach(6, 60);
        assert_eq!(c.returning(5), None);
        assert_eq!(c.finish(6, Hresult::OK), Finish::Handed);
        assert_eq!(c.len(), 2);
        assert_eq!(c.drain(), [50]);
        assert!(c.is_empty());
        assert_eq!(c.finish(5, Hresult::OK), Finish::Dropped);
    }
}
