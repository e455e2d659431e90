//! `run --restart`: when to start the command again, and when to give up. The seed's
//! supervisor, kept: a first delay of 2 s doubled after each restart up to 120 s, reset
//! after a run longer than 10 s; five rapid failures in a row (runs under 10 s) park the
//! command, and so does exit status 78 (`EX_CONFIG`: a configuration error that restarting
//! does not fix). A pure state machine: the event loop asks it after each death.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A run shorter than this that fails is a rapid failure.
pub const RAPID_RUN: Duration = Duration::from_secs(10);
/// Rapid failures in a row that park the command.
pub const RAPID_FAILURES_MAX: u32 = 5;
/// The exit status that parks at once (`EX_CONFIG` of sysexits.h).
pub const EX_CONFIG: u8 = 78;
/// The seed's first delay and its cap.
pub const DEFAULT_DELAY: Duration = Duration::from_secs(2);
pub const DEFAULT_DELAY_MAX: Duration = Duration::from_secs(120);

/// When the command is started again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// After a non-zero exit or a death by a signal.
    OnFailure,
    /// After every end, a clean exit included.
    Always,
}

/// How the command ended, as the supervisor needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct End {
    pub exit_code: Option<u8>,
    pub signal: Option<i32>,
    pub ran_for: Duration,
}

/// What to do after a death.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Start it again after this delay.
    Restart(Duration),
    /// Stop supervising, and say why (a clean end, or the user stopped it).
    Done(String),
    /// Give up on a command that keeps failing, and say why: `run` exits non-zero.
    Park(String),
}

/// The supervisor's state across runs.
#[derive(Clone, Debug)]
pub struct Supervisor {
    policy: Policy,
    delay: Duration,
    initial: Duration,
    max: Duration,
    max_restarts: Option<u32>,
    pub restarts: u32,
    rapid: u32,
}

impl Supervisor {
    pub fn new(
        policy: Policy,
        initial: Duration,
        max: Duration,
        max_restarts: Option<u32>,
    ) -> Supervisor {
        Supervisor {
            policy,
            delay: initial,
            initial,
            max: max.max(initial),
            max_restarts,
            restarts: 0,
            rapid: 0,
        }
    }

    /// After the command ended (`stopping`: `run` was asked to stop).
    pub fn decide(&mut self, end: End, stopping: bool) -> Decision {
        if stopping {
            return Decision::Done("stopped on request: not restarted".to_owned());
        }
        if end.signal == Some(libc::SIGINT) {
            return Decision::Done("interrupted (SIGINT): not restarted".to_owned());
        }
        let clean = end.exit_code == Some(0);
        if clean && self.policy == Policy::OnFailure {
            return Decision::Done("exited 0: not restarted (--restart=always would)".to_owned());
        }
        if end.exit_code == Some(EX_CONFIG) {
            return Decision::Park(format!(
                "exit status {EX_CONFIG} (EX_CONFIG) says its configuration is wrong: restarting would not help"
            ));
        }
        if end.ran_for >= RAPID_RUN {
            self.rapid = 0;
            self.delay = self.initial;
        } else if !clean {
            self.rapid += 1;
            if self.rapid >= RAPID_FAILURES_MAX {
                return Decision::Park(format!(
                    "{} rapid failures in a row (each ran under {} s)",
                    self.rapid,
                    RAPID_RUN.as_secs()
                ));
            }
        }
        if self.max_restarts.is_some_and(|m| self.restarts >= m) {
            return Decision::Park(format!("--max-restarts {} reached", self.restarts));
        }
        let delay = self.delay;
        self.delay = (self.delay * 2).min(self.max);
        self.restarts += 1;
        Decision::Restart(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(ms: u64) -> End {
        End {
            exit_code: Some(1),
            signal: None,
            ran_for: Duration::from_millis(ms),
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// The seed's sequence: 2, 4, 8, 16 s, then parked at the fifth rapid failure.
    #[test]
    fn rapid_failures_back_off_then_park() {
        let mut s = Supervisor::new(Policy::OnFailure, DEFAULT_DELAY, DEFAULT_DELAY_MAX, None);
        let mut delays = Vec::new();
        loop {
            match s.decide(fail(100), false) {
                Decision::Restart(d) => delays.push(d),
                Decision::Park(why) => {
                    assert!(why.starts_with("5 rapid failures in a row"), "{why}");
                    break;
                }
                Decision::Done(why) => panic!("done: {why}"),
            }
        }
        assert_eq!(delays, [secs(2), secs(4), secs(8), secs(16)]);
        assert_eq!(s.restarts, 4);
    }

    /// Delays are capped at 120 s; a run longer than 10 s resets both the delay and the
    /// rapid-failure count.
    #[test]
    fn the_delay_is_capped_and_a_long_run_resets_it() {
        let mut s = Supervisor::new(Policy::OnFailure, DEFAULT_DELAY, DEFAULT_DELAY_MAX, None);
        let long = fail(11_000);
        let mut delays = Vec::new();
        for _ in 0..9 {
            // Long runs never park, and the delay is reset by each.
            delays.push(s.decide(long, false));
        }
        assert!(delays.iter().all(|d| *d == Decision::Restart(secs(2))));
        // Rapid ones go on doubling from the 2 s the last long run got; four of them,
        // then a long one resets.
        for want in [4, 8, 16, 32] {
            assert_eq!(s.decide(fail(1), false), Decision::Restart(secs(want)));
        }
        assert_eq!(s.decide(long, false), Decision::Restart(secs(2)));
        let mut s = Supervisor::new(Policy::OnFailure, secs(50), DEFAULT_DELAY_MAX, None);
        let seq: Vec<Decision> = (0..3).map(|_| s.decide(long, false)).collect();
        assert!(seq.iter().all(|d| *d == Decision::Restart(secs(50))));
        let mut s = Supervisor::new(Policy::Always, secs(50), DEFAULT_DELAY_MAX, None);
        let clean = End {
            exit_code: Some(0),
            signal: None,
            ran_for: Duration::from_millis(1),
        };
        let seq: Vec<Decision> = (0..4).map(|_| s.decide(clean, false)).collect();
        assert_eq!(seq, [50, 100, 120, 120].map(|s| Decision::Restart(secs(s))));
    }

    #[test]
    fn exit_78_parks_at_once() {
        let mut s = Supervisor::new(Policy::OnFailure, DEFAULT_DELAY, DEFAULT_DELAY_MAX, None);
        let end = End {
            exit_code: Some(78),
            signal: None,
            ran_for: secs(60),
        };
        assert!(matches!(s.decide(end, false), Decision::Park(w) if w.contains("EX_CONFIG")));
    }

    #[test]
    fn clean_exits_interrupts_and_stops_end_supervision() {
        let mut s = Supervisor::new(Policy::OnFailure, DEFAULT_DELAY, DEFAULT_DELAY_MAX, None);
        let clean = End {
            exit_code: Some(0),
            signal: None,
            ran_for: secs(1),
        };
        assert!(matches!(s.decide(clean, false), Decision::Done(_)));
        let int = End {
            exit_code: None,
            signal: Some(libc::SIGINT),
            ran_for: secs(1),
        };
        assert!(matches!(s.decide(int, false), Decision::Done(w) if w.contains("SIGINT")));
        assert!(matches!(s.decide(fail(1), true), Decision::Done(w) if w.contains("stopped")));
        // A kill by another signal is a failure.
        let killed = End {
            exit_code: None,
            signal: Some(libc::SIGKILL),
            ran_for: secs(1),
        };
        assert_eq!(s.decide(killed, false), Decision::Restart(DEFAULT_DELAY));
    }

    #[test]
    fn max_restarts_parks() {
        let mut s = Supervisor::new(Policy::OnFailure, DEFAULT_DELAY, DEFAULT_DELAY_MAX, Some(2));
        assert!(matches!(
            s.decide(fail(20_000), false),
            Decision::Restart(_)
        ));
        assert!(matches!(
            s.decide(fail(20_000), false),
            Decision::Restart(_)
        ));
        assert!(
            matches!(s.decide(fail(20_000), false), Decision::Park(w) if w == "--max-restarts 2 reached")
        );
    }
}
