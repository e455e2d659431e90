//! Tool calls: which Bash tool call of the session's transcript a wrapper process runs
//! for, matched by its command (or by time when its command line was cut).

use crate::{
    claude::{
        detect::ProcFacts,
        transcript::{self, TranscriptTail},
    },
    event::ToolCallRef,
    pipeline::proctable::{ProcId, WrapperScript},
};

use super::{Attributor, Session};

/// Matches of a tool wrapper's script tried on the event path (each event of its tree);
/// after that only the engine's hold tries, at its own pace, until its deadline.
pub(super) const TOOL_ATTEMPTS: u8 = 32;

/// How many matched call ids a session remembers.
pub(super) const CLAIMED_MAX: usize = 256;

impl Attributor {
    /// A Bash tool's wrapper (`bash -c "source …snapshot… && eval '<cmd>' …"`) starting in a
    /// session: find the tool call that runs `<cmd>` in the session's transcript. Recorded
    /// on the wrapper and inherited by everything it starts, because the call may complete
    /// (or be backgrounded) long before its processes end. The CLI writes the call to its
    /// transcript asynchronously, so a wrapper not matched now keeps its script and is
    /// matched again on later events of its tree ([`Attributor::tool_call_of`]).
    ///
    /// A wrapper whose command line the agent could not read whole (the kernel keeps the
    /// first [`monitor_common::ARGS_LEN`] bytes, and a tool of a few milliseconds is gone
    /// before /proc is read) is still one when it is a shell with `-c` started by the
    /// session's root itself, as the CLI starts every Bash tool: it is matched by time.
    pub(super) fn maybe_tool_call(&mut self, pid: u32, facts: &ProcFacts, argv_whole: bool) {
        let Some(proc) = self.table.get(pid) else {
            return;
        };
        if proc.session.is_none() || proc.session_root {
            return;
        }
        let script = match shell_script(&facts.argv) {
            Some(script) => WrapperScript::Whole(script.to_owned()),
            None if !argv_whole
                && runs_shell_c(&facts.argv)
                && proc
                    .parent
                    .and_then(|p| self.table.by_id(p))
                    .is_some_and(|p| p.session_root) =>
            {
                WrapperScript::Cut
            }
            None => return,
        };
        let id = proc.id;
        tracing::debug!(wrapper = %id, script = ?script, "tool wrapper started");
        self.table.update(id, |p| {
            p.tool_script = Some(script.clone());
            p.tool_attempts = 0;
        });
        self.resolve_tool_call(id);
    }

    /// Tries to match the pending wrapper `id` to its tool call; sets and returns it when found.
    pub(super) fn resolve_tool_call(&mut self, id: ProcId) -> Option<ToolCallRef> {
        let p = self.table.by_id(id)?;
        let (idx, script) = (p.session?, p.tool_script.clone()?);
        let started = self
            .clock
            .wall(crate::pipeline::proctable::ticks_to_ns(id.start));
        self.refresh_registry(idx);
        let call = self
            .sessions
            .get_mut(&idx)?
            .match_tool(&script, started, &self.redactor);
        tracing::debug!(wrapper = %id, matched = ?call.as_ref().map(|c| &c.id), "tool call lookup");
        self.table.update(id, |p| match &call {
            Some(call) => {
                p.tool_call = Some(call.clone());
                p.tool_script = None;
            }
            None => {
                // After TOOL_ATTEMPTS tries on the event path the script stays: the
                // engine's hold (`crate::pipeline::hold`) keeps trying for the events it holds and
                // gives the wrapper up at its deadline (`give_up_tool`).
                p.tool_attempts = p.tool_attempts.saturating_add(1);
            }
        });
        call
    }

    /// The nearest tool wrapper above `pid` (or `pid` itself) whose call is not known yet,
    /// if any: events of its tree are worth holding until the CLI writes the call.
    pub fn pending_wrapper(&self, pid: u32) -> Option<ProcId> {
        let p = self.table.get(pid)?;
        p.session?;
        let mut cur = Some(p.id);
        for _ in 0..crate::event::ANCESTRY_MAX {
            let q = cur.and_then(|id| self.table.by_id(id))?;
            if q.tool_call.is_some() || q.session_root {
                return None;
            }
            if q.tool_script.is_some() {
                return Some(q.id);
            }
            cur = q.parent;
        }
        None
    }

    /// The call of wrapper `id` if it is known (matched on an event of its tree).
    pub fn known_call(&self, id: ProcId) -> Option<ToolCallRef> {
        self.table.by_id(id)?.tool_call.clone()
    }

    /// The call of the pending wrapper `id`, matched now in its session's transcript (the
    /// wrapper may have exited meanwhile).
    pub fn resolve_wrapper(&mut self, id: ProcId) -> Option<ToolCallRef> {
        self.known_call(id).or_else(|| self.resolve_tool_call(id))
    }

    /// Stops matching the wrapper `id`: its events go out without a tool call.
    pub fn give_up_tool(&mut self, id: ProcId) {
        self.table.update(id, |p| p.tool_script = None);
    }

    /// The tool call of process `pid`: its own, else the one of the nearest wrapper above it
    /// (matched now if it was not yet), which it then keeps.
    pub(super) fn tool_call_of(&mut self, pid: u32) -> Option<ToolCallRef> {
        let p = self.table.get(pid)?;
        if p.tool_call.is_some() || p.session.is_none() {
            return p.tool_call.clone();
        }
        let me = p.id;
        let mut cur = Some(me);
        let mut found = None;
        for _ in 0..crate::event::ANCESTRY_MAX {
            let Some(q) = cur.and_then(|id| self.table.by_id(id)) else {
                break;
            };
            if q.tool_call.is_some() {
                found = q.tool_call.clone();
                break;
            }
            if q.tool_script.is_some() {
                if q.tool_attempts < TOOL_ATTEMPTS {
                    found = self.resolve_tool_call(q.id);
                }
                break;
            }
            if q.session_root {
                break;
            }
            cur = q.parent;
        }
        if let Some(call) = &found {
            self.table.update(me, |p| p.tool_call = Some(call.clone()));
        }
        found
    }
}

impl Session {
    /// The Bash call of this session's transcript that a wrapper with `script` runs (see
    /// [`TranscriptTail::match_command`]), reading what the transcript gained meanwhile.
    pub(super) fn match_tool(
        &mut self,
        script: &WrapperScript,
        started: chrono::DateTime<chrono::Utc>,
        redactor: &crate::pipeline::redact::Redactor,
    ) -> Option<ToolCallRef> {
        let (Some(config), Some(cwd), Some(sid)) =
            (&self.config_dir, &self.cwd, &self.claude_session_id)
        else {
            tracing::debug!(session = %self.root, "no registry entry yet: no transcript to match tools in");
            return None;
        };
        let Some(path) = transcript::locate(config, std::path::Path::new(cwd), sid) else {
            tracing::debug!(session = %self.root, "no transcript found yet");
            return None;
        };
        if self.transcript.as_ref().is_none_or(|t| t.path() != path) {
            self.transcript = Some(TranscriptTail::new(path).owned_by(self.uid));
        }
        let tail = self.transcript.as_mut()?;
        if let Err(e) = tail.poll() {
            tracing::debug!("transcript {}: {e}", tail.path().display());
            return None;
        }
        let claimed = &self.claimed;
        let call = match script {
            WrapperScript::Whole(script) => tail.match_command(script, Some(started)),
            WrapperScript::Cut => {
                tail.match_unclaimed(Some(started), &|id| claimed.iter().any(|c| c == id))
            }
        }
        .map(|c| ToolCallRef {
            id: c.id.clone(),
            name: c.name.clone(),
            // Matched on the raw command; kept without its secrets.
            command: c.command.as_deref().map(|c| redactor.text(c).into_owned()),
        })?;
        if self.claimed.len() >= CLAIMED_MAX {
            self.claimed.pop_front();
        }
        self.claimed.push_back(call.id.clone());
        Some(call)
    }
}

/// The script of a shell run as `SHELL [OPTIONS] -c SCRIPT …` (options may come before or
/// after `-c`, or be clustered with it: `-lc`), when it looks like a tool wrapper: it
/// mentions `eval` or a quoted word (see [`TranscriptTail::match_command`]).
pub(super) fn shell_script(argv: &[String]) -> Option<&str> {
    let mut c = false;
    for arg in argv.iter().skip(1) {
        if arg == "--" {
            continue;
        }
        if let Some(opts) = arg.strip_prefix('-').filter(|o| !o.starts_with('-')) {
            c |= opts.contains('c');
            continue;
        }
        if arg.starts_with("--") {
            continue;
        }
        return (c && (arg.contains("eval") || arg.contains('\''))).then_some(arg.as_str());
    }
    None
}

/// Whether `argv` runs a shell script: `SHELL [OPTIONS] -c …` (the script itself may be cut).
pub(super) fn runs_shell_c(argv: &[String]) -> bool {
    argv.iter()
        .skip(1)
        .take_while(|a| a.starts_with('-'))
        .any(|a| !a.starts_with("--") && a[1..].contains('c'))
}
