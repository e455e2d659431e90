//! Holding back the events of a Bash tool's processes until the CLI has written the tool
//! call to its transcript.
//!
//! Claude Code writes a `tool_use` to its transcript asynchronously: under load a short
//! tool can start, run and end before its call is on disk, and its events would go out
//! without `tool_call`. The engine gives such events (those of a tree whose wrapper is not
//! matched yet, see [`Attributor::pending_wrapper`]) to a [`Hold`], which tries the match
//! again at its own pace and releases them, in their own order, as soon as the call is
//! found, or without it at the wrapper's deadline. Bounded: at most [`HELD_MAX`] events and
//! [`WRAPPERS_MAX`] wrappers; anything beyond goes out at once, unchanged.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use crate::{event::Event, pipeline::attribution::Attributor, pipeline::proctable::ProcId};

/// How long the events of one wrapper are held at most (from the first one held).
pub const HOLD_FOR: Duration = Duration::from_secs(2);
/// How often a held wrapper's call is looked for.
pub const RETRY_EVERY: Duration = Duration::from_millis(20);
/// Events held at most (the oldest goes out unchanged when a new one would exceed it).
pub const HELD_MAX: usize = 4096;
/// Wrappers held at most (events of further ones are not held).
pub const WRAPPERS_MAX: usize = 256;

struct Wrapper {
    deadline: Instant,
    last_try: Instant,
    /// Set when the call was found, or when the wrapper was given up (`Some(None)`).
    outcome: Option<Option<crate::event::ToolCallRef>>,
}

/// Events waiting for their tool call, oldest first.
#[derive(Default)]
pub struct Hold {
    queue: VecDeque<(ProcId, Event)>,
    wrappers: HashMap<ProcId, Wrapper>,
}

impl Hold {
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Holds `event` of wrapper `wrapper`'s tree. Returns what must go out now: the event
    /// itself when the hold is full of wrappers, the oldest held event when it is full of
    /// events.
    pub fn hold(&mut self, wrapper: ProcId, event: Event, now: Instant) -> Option<Event> {
        if !self.wrappers.contains_key(&wrapper) {
            if self.wrappers.len() >= WRAPPERS_MAX {
                return Some(event);
            }
            tracing::debug!(wrapper = %wrapper, "holding events until the tool call is written");
            self.wrappers.insert(
                wrapper,
                Wrapper {
                    deadline: now + HOLD_FOR,
                    last_try: now,
                    outcome: None,
                },
            );
        }
        self.queue.push_back((wrapper, event));
        if self.queue.len() > HELD_MAX {
            return self.queue.pop_front().map(|(_, e)| e);
        }
        None
    }

    /// Looks again for the calls of the held wrappers (each one's transcript at most every
    /// [`RETRY_EVERY`], all of them with `force`), and returns, oldest first, the events now ready: those of
    /// wrappers whose call was found (with `tool_call` set) and of wrappers past their
    /// deadline (unchanged; the wrapper is given up).
    pub fn release(
        &mut self,
        attributor: &mut Attributor,
        now: Instant,
        force: bool,
    ) -> Vec<Event> {
        let mut any = false;
        for (&id, w) in &mut self.wrappers {
            if w.outcome.is_some() {
                any = true;
                continue;
            }
            // Matched meanwhile on another event of its tree: free to check every time.
            if let Some(call) = attributor.known_call(id) {
                w.outcome = Some(Some(call));
            } else if force || now >= w.deadline || now.duration_since(w.last_try) >= RETRY_EVERY {
                // At the deadline, one last look whenever the previous one was: an agent
                // that was starved of CPU comes back late, and what the CLI wrote meanwhile
                // is there to be read.
                w.last_try = now;
                if let Some(call) = attributor.resolve_wrapper(id) {
                    w.outcome = Some(Some(call));
                }
            }
            if w.outcome.is_none() && (force || now >= w.deadline) {
                tracing::debug!(wrapper = %id, force, "tool call not found: held events released without it");
                attributor.give_up_tool(id);
                w.outcome = Some(None);
            }
            any |= w.outcome.is_some();
        }
        if !any {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut keep = VecDeque::with_capacity(self.queue.len());
        for (id, mut event) in self.queue.drain(..) {
            match self.wrappers.get(&id).and_then(|w| w.outcome.as_ref()) {
                Some(call) => {
                    if let (Some(call), Some(attr)) = (call, event.attr.as_mut()) {
                        attr.tool_call = Some(call.clone());
                    }
                    out.push(event);
                }
                None => keep.push_back((id, event)),
            }
        }
        self.queue = keep;
        self.wrappers.retain(|_, w| w.outcome.is_none());
        out
    }

    /// When the next retry or deadline is due (for the event loop's timer).
    pub fn next_due(&self) -> Option<Instant> {
        self.wrappers
            .values()
            .map(|w| (w.last_try + RETRY_EVERY).min(w.deadline))
            .min()
    }
}
