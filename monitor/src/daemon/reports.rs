//! Exit reports, written off the event loop and bounded.
//!
//! Any local user can cause reports (a process named `claude` that exits non-zero is a
//! session root), and each one is two fsynced files. So the event loop only builds a report
//! and hands it to a writer thread through a bounded queue (never waiting: a full queue
//! drops the report, counted); each uid gets at most `per_uid_per_minute` reports (a
//! token bucket with that burst); and the directory keeps at most `max_count` reports and
//! `max_bytes`, the oldest removed first.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc::{SyncSender, TrySendError, sync_channel},
    },
    thread::JoinHandle,
    time::Instant,
};

use crate::{
    config, diag,
    report::{Report, ReportStore},
};

/// Reports waiting for the writer at most; beyond, they are dropped (counted).
const QUEUE: usize = 256;
/// Uids whose budget is remembered at most (the least recently seen goes first).
const UIDS_MAX: usize = 4096;

/// Counts, shared with the writer thread.
#[derive(Debug, Default)]
pub struct ReportStats {
    pub written: AtomicU64,
    pub errors: AtomicU64,
    /// Not written: over their uid's budget, or the writer's queue was full.
    pub suppressed: AtomicU64,
    /// Of `suppressed`, those dropped because a queue was full (said once).
    pub queue_full: AtomicU64,
    /// Old reports removed to stay within the bounds.
    pub pruned: AtomicU64,
}

impl ReportStats {
    /// A report dropped because the writer (or the reports waiting for the next loss check)
    /// could not take more: counted, and said the first time.
    pub fn dropped_queue_full(&self) {
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        if self.queue_full.fetch_add(1, Ordering::Relaxed) == 0 {
            diag::reports_queue_full();
        }
    }
}

/// The bounds of the report directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub max_count: usize,
    pub max_bytes: u64,
}

impl From<&config::Reports> for Bounds {
    fn from(c: &config::Reports) -> Bounds {
        Bounds {
            max_count: c.max_count as usize,
            max_bytes: c.max_bytes,
        }
    }
}

/// The writer thread's end: takes reports, writes them, keeps the directory bounded.
pub struct ReportWriter {
    tx: Option<SyncSender<Report>>,
    thread: Option<JoinHandle<()>>,
    pub stats: Arc<ReportStats>,
}

impl ReportWriter {
    pub fn start(store: ReportStore, bounds: Bounds) -> ReportWriter {
        let (tx, rx) = sync_channel::<Report>(QUEUE);
        let stats = Arc::new(ReportStats::default());
        let shared = Arc::clone(&stats);
        let thread = std::thread::Builder::new()
            .name("reports".into())
            .spawn(move || {
                let mut kept = Kept::scan(&store);
                kept.prune(&store, bounds, &shared);
                for report in rx {
                    match store.write(&report) {
                        Ok(path) => {
                            shared.written.fetch_add(1, Ordering::Relaxed);
                            diag::report_written(&path, &report.summary);
                            if let Some(id) = path.file_stem().and_then(|s| s.to_str()) {
                                kept.push(id.to_owned(), store.size_of(id));
                            }
                            kept.prune(&store, bounds, &shared);
                        }
                        Err(e) => {
                            shared.errors.fetch_add(1, Ordering::Relaxed);
                            diag::report_write_failed(&report.id, e);
                        }
                    }
                }
            })
            .ok();
        if thread.is_none() {
            diag::report_write_failed("(writer thread)", "cannot start a thread");
        }
        ReportWriter {
            tx: thread.as_ref().map(|_| tx),
            thread,
            stats,
        }
    }

    /// Queues `report`; never waits (a full queue drops it, counted).
    pub fn submit(&self, report: Report) {
        let queued = self
            .tx
            .as_ref()
            .is_some_and(|tx| match tx.try_send(report) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            });
        if !queued {
            self.stats.dropped_queue_full();
        }
    }

    /// Writes what is queued and stops the thread (at the daemon's stop).
    pub fn finish(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ReportWriter {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The reports on disk, oldest first, with their sizes.
struct Kept {
    reports: VecDeque<(String, u64)>,
    bytes: u64,
}

impl Kept {
    fn scan(store: &ReportStore) -> Kept {
        let reports: VecDeque<(String, u64)> = store.sizes().unwrap_or_default().into();
        let bytes = reports.iter().map(|(_, n)| n).sum();
        Kept { reports, bytes }
    }

    fn push(&mut self, id: String, size: u64) {
        self.bytes += size;
        self.reports.push_back((id, size));
    }

    /// Removes the oldest reports until both bounds hold (the newest is always kept).
    fn prune(&mut self, store: &ReportStore, bounds: Bounds, stats: &ReportStats) {
        while self.reports.len() > 1
            && (self.reports.len() > bounds.max_count || self.bytes > bounds.max_bytes)
        {
            let Some((id, size)) = self.reports.pop_front() else {
                break;
            };
            self.bytes = self.bytes.saturating_sub(size);
            match store.remove(&id) {
                Ok(()) => {
                    stats.pruned.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => diag::report_write_failed(&id, e),
            }
        }
    }
}

/// At most `per_minute` reports per minute per uid, with a burst of as many.
pub struct UidBudget {
    per_minute: f64,
    /// Tokens, when last taken from, and whether going over was said for this uid.
    buckets: HashMap<u32, (f64, Instant, bool)>,
}

impl UidBudget {
    pub fn new(per_minute: u32) -> UidBudget {
        UidBudget {
            per_minute: f64::from(per_minute.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// Whether a report for `uid` fits its budget at `now` (and takes from it).
    pub fn allow(&mut self, uid: u32, now: Instant) -> bool {
        if !self.buckets.contains_key(&uid) && self.buckets.len() >= UIDS_MAX {
            // Bounded: forget the uid seen least recently (it starts full again).
            if let Some(oldest) = self
                .buckets
                .iter()
                .min_by_key(|(_, (_, t, _))| *t)
                .map(|(u, _)| *u)
            {
                self.buckets.remove(&oldest);
            }
        }
        let per_minute = self.per_minute;
        let (tokens, last, _) = self.buckets.entry(uid).or_insert((per_minute, now, false));
        let refill = now.saturating_duration_since(*last).as_secs_f64() / 60.0 * per_minute;
        *tokens = (*tokens + refill).min(per_minute);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether this is the first time `uid` went over its budget (the warning is said once
    /// per uid, not at every report dropped).
    pub fn first_refusal(&mut self, uid: u32) -> bool {
        self.buckets
            .get_mut(&uid)
            .is_some_and(|(_, _, said)| !std::mem::replace(said, true))
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    const MINUTE: std::time::Duration = std::time::Duration::from_secs(60);

    #[test]
    fn the_budget_refills_over_a_minute_per_uid() {
        let mut b = UidBudget::new(3);
        let t0 = Instant::now();
        assert!((0..3).all(|_| b.allow(1000, t0)));
        assert!(!b.allow(1000, t0), "the burst is spent");
        assert!(b.allow(1001, t0), "another uid has its own budget");
        assert!(
            !b.allow(1000, t0 + MINUTE / 6),
            "a sixth of a minute: half a report"
        );
        assert!(b.allow(1000, t0 + MINUTE / 3));
        assert!(
            (0..3).all(|_| b.allow(1000, t0 + MINUTE * 10)),
            "full again, not more"
        );
        assert!(!b.allow(1000, t0 + MINUTE * 10));
    }

    /// Going over is said once per uid, whichever uid went over first.
    #[test]
    fn going_over_is_said_once_per_uid() {
        let mut b = UidBudget::new(1);
        let t0 = Instant::now();
        assert!(b.allow(1000, t0) && !b.allow(1000, t0));
        assert!(b.first_refusal(1000));
        assert!(!b.allow(1000, t0) && !b.first_refusal(1000));
        assert!(b.allow(1001, t0) && !b.allow(1001, t0));
        assert!(b.first_refusal(1001), "another uid is said too");
        assert!(!b.first_refusal(1001));
    }

    #[test]
    fn the_budget_remembers_a_bounded_number_of_uids() {
        let mut b = UidBudget::new(1);
        let t0 = Instant::now();
        for uid in 0..(UIDS_MAX as u32 + 100) {
            b.allow(uid, t0 + std::time::Duration::from_millis(u64::from(uid)));
        }
        assert_eq!(b.len(), UIDS_MAX);
    }

    fn report(id: &str) -> Report {
        // SAFETY: monitor_common's records hold integers and integer arrays only.
        let mut exit: monitor_common::Exit = unsafe { std::mem::zeroed() };
        exit.header.kind = monitor_common::Kind::Exit as u16;
        exit.header.pid = 42;
        exit.exit_status = 1 << 8;
        let event = crate::pipeline::convert::Converter::new(crate::host::clock::Clock::fixed(0))
            .convert(&monitor_common::Record::Exit(exit));
        let mut r = crate::report::build(
            &event,
            crate::report::Reason::NonzeroExit,
            crate::report::Context::default(),
        )
        .expect("an exit");
        r.id = id.to_owned();
        r
    }

    /// Oldest first, by count and by bytes; the writer counts what it wrote and removed.
    #[test]
    fn the_directory_stays_within_its_bounds() {
        let t = TempDir::new("report-bounds");
        let store = ReportStore::new(t.path().join("reports"));
        let mut w = ReportWriter::start(
            store.clone(),
            Bounds {
                max_count: 10,
                max_bytes: u64::MAX,
            },
        );
        for i in 0..25 {
            w.submit(report(&format!("20261203T0700{i:02}Z-{i}-exit1")));
        }
        w.finish();
        let ids: Vec<String> = store
            .sizes()
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids.len(), 10);
        assert_eq!(ids[0], "20261203T070015Z-15-exit1", "the oldest went first");
        assert_eq!(w.stats.written.load(Ordering::Relaxed), 25);
        assert_eq!(w.stats.pruned.load(Ordering::Relaxed), 15);

        // By bytes: a bound of about three reports keeps three.
        let one = store.size_of(&ids[0]);
        let mut w = ReportWriter::start(
            store.clone(),
            Bounds {
                max_count: 1000,
                max_bytes: one * 3 + one / 2,
            },
        );
        w.submit(report("20261203T080000Z-1-exit1"));
        w.finish();
        assert_eq!(store.sizes().unwrap().len(), 3);
    }
}
