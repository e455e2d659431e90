//! Resource sampling: the host (memory, swap, load, disks, memory pressure) and each Claude
//! Code session (RSS, CPU, process and thread counts, its biggest process).
//!
//! The daemon writes these samples as JSON Lines so that, after a process died, the figures
//! leading up to the death are on disk. Every reader takes the proc root as a parameter so the
//! parsers can be tested against a fake tree; nothing here keeps global state.

use std::{
    collections::{HashMap, VecDeque},
    ffi::CString,
    io,
    mem::MaybeUninit,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

use chrono::Utc;
use procfs::{
    FromRead as _, LoadAverage, Meminfo,
    process::{Process, Stat},
};
use serde::Serialize;

use crate::host::clock::format_ts;

/// Longest command line kept for [`TopProcess::cmdline`], in characters.
const CMDLINE_MAX_CHARS: usize = 200;

/// One sample of the whole host.
///
/// The memory and load figures are `None` (JSON `null`) only when /proc/meminfo or
/// /proc/loadavg could not be read; the reason is then in `errors`. A half-empty sample is
/// more useful in the log than no sample at all.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SystemSample {
    /// RFC 3339, UTC.
    pub ts: String,
    pub mem_total_kb: Option<u64>,
    pub mem_available_kb: Option<u64>,
    /// `100 * (total - available) / total`, one decimal.
    pub mem_used_percent: Option<f64>,
    pub swap_total_kb: Option<u64>,
    pub swap_used_kb: Option<u64>,
    pub load1: Option<f64>,
    pub load5: Option<f64>,
    pub load15: Option<f64>,
    pub disks: Vec<DiskSample>,
    /// /proc/pressure/memory; `None` on kernels without CONFIG_PSI or booted with psi=0.
    pub memory_psi: Option<Psi>,
    /// Processes that belong to Claude Code sessions (given by the caller).
    pub session_processes: u32,
    /// Live Claude Code sessions (given by the caller).
    pub sessions: u32,
    /// What could not be read, one message per source.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// Usage of one mounted file system, as `df -k` reports it.
///
/// Either the figures or `error` are set: a mount that cannot be stat'ed (gone, permission,
/// hung network file system returning an error) must not cost the rest of the sample.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DiskSample {
    pub mount: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_kb: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_kb: Option<u64>,
    /// Available to unprivileged users (`f_bavail`), i.e. without the root reserve.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_kb: Option<u64>,
    /// `used / (used + available)`, like `df`: the root reserve does not count as free, so a
    /// file system is 100% full when ordinary users can no longer write. One decimal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_percent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Memory pressure stall averages (percent of wall time), from /proc/pressure/memory.
///
/// `some`: at least one task was stalled on memory; `full`: all non-idle tasks were. Rising
/// `full` values are the best early sign of thrashing before the OOM killer acts.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Psi {
    pub some_avg10: f64,
    pub some_avg60: f64,
    pub some_avg300: f64,
    pub full_avg10: f64,
    pub full_avg60: f64,
    pub full_avg300: f64,
}

/// Samples the host. Never fails as a whole: what cannot be read is left `None` and noted in
/// `errors` (or, for a disk, in its `error`).
///
/// `proc_root` is normally `/proc`; `mounts` are the mount points to report, in that order.
pub fn sample_system(
    proc_root: &Path,
    mounts: &[PathBuf],
    session_processes: u32,
    sessions: u32,
) -> SystemSample {
    let mut s = SystemSample {
        ts: format_ts(Utc::now()),
        mem_total_kb: None,
        mem_available_kb: None,
        mem_used_percent: None,
        swap_total_kb: None,
        swap_used_kb: None,
        load1: None,
        load5: None,
        load15: None,
        disks: mounts.iter().map(|m| sample_disk(m)).collect(),
        memory_psi: read_psi(proc_root),
        session_processes,
        sessions,
        errors: Vec::new(),
    };
    let meminfo = proc_root.join("meminfo");
    match Meminfo::from_file(&meminfo) {
        Ok(m) => {
            let mem = memory_figures(&m);
            s.mem_total_kb = Some(mem.total_kb);
            s.mem_available_kb = Some(mem.available_kb);
            s.mem_used_percent = Some(mem.used_percent);
            s.swap_total_kb = Some(mem.swap_total_kb);
            s.swap_used_kb = Some(mem.swap_used_kb);
        }
        Err(e) => s.errors.push(format!("{}: {e}", meminfo.display())),
    }
    let loadavg = proc_root.join("loadavg");
    match LoadAverage::from_file(&loadavg) {
        Ok(l) => {
            s.load1 = Some(round2(f64::from(l.one)));
            s.load5 = Some(round2(f64::from(l.five)));
            s.load15 = Some(round2(f64::from(l.fifteen)));
        }
        Err(e) => s.errors.push(format!("{}: {e}", loadavg.display())),
    }
    s
}

/// Memory figures in KiB (procfs reports bytes).
struct MemoryFigures {
    total_kb: u64,
    available_kb: u64,
    used_percent: f64,
    swap_total_kb: u64,
    swap_used_kb: u64,
}

fn memory_figures(m: &Meminfo) -> MemoryFigures {
    // MemAvailable exists since Linux 3.14; before that, free + buffers + page cache is the
    // usual (optimistic) estimate.
    let available = m
        .mem_available
        .unwrap_or(m.mem_free + m.buffers + m.cached)
        .min(m.mem_total);
    let used_percent = if m.mem_total == 0 {
        0.0
    } else {
        round1(100.0 * (m.mem_total - available) as f64 / m.mem_total as f64)
    };
    MemoryFigures {
        total_kb: m.mem_total / 1024,
        available_kb: available / 1024,
        used_percent,
        swap_total_kb: m.swap_total / 1024,
        swap_used_kb: m.swap_total.saturating_sub(m.swap_free) / 1024,
    }
}

/// `None` when the file is absent or unreadable: reading it fails with EOPNOTSUPP when the
/// kernel was booted with psi=0, which is a configuration, not an error worth logging.
fn read_psi(proc_root: &Path) -> Option<Psi> {
    let p = procfs::MemoryPressure::from_file(proc_root.join("pressure/memory")).ok()?;
    Some(Psi {
        some_avg10: round2(f64::from(p.some.avg10)),
        some_avg60: round2(f64::from(p.some.avg60)),
        some_avg300: round2(f64::from(p.some.avg300)),
        full_avg10: round2(f64::from(p.full.avg10)),
        full_avg60: round2(f64::from(p.full.avg60)),
        full_avg300: round2(f64::from(p.full.avg300)),
    })
}

fn sample_disk(mount: &Path) -> DiskSample {
    let name = mount.display().to_string();
    match statvfs(mount) {
        Ok(st) => {
            // f_frsize is the unit of the block counts; f_bsize is only the preferred I/O size
            // (they differ on some file systems). Old kernels left f_frsize at 0.
            let unit = if st.f_frsize > 0 {
                st.f_frsize
            } else {
                st.f_bsize
            };
            disk_figures(name, st.f_blocks, st.f_bfree, st.f_bavail, unit)
        }
        Err(e) => DiskSample {
            mount: name,
            total_kb: None,
            used_kb: None,
            available_kb: None,
            used_percent: None,
            error: Some(e.to_string()),
        },
    }
}

/// The `df` arithmetic on statvfs figures (block counts in units of `unit` bytes).
fn disk_figures(mount: String, blocks: u64, bfree: u64, bavail: u64, unit: u64) -> DiskSample {
    let kb = |n: u64| (u128::from(n) * u128::from(unit) / 1024) as u64;
    let used = kb(blocks.saturating_sub(bfree));
    let available = kb(bavail);
    let used_percent = if used + available == 0 {
        0.0
    } else {
        round1(100.0 * used as f64 / (used + available) as f64)
    };
    DiskSample {
        mount,
        total_kb: Some(kb(blocks)),
        used_kb: Some(used),
        available_kb: Some(available),
        used_percent: Some(used_percent),
        error: None,
    }
}

fn statvfs(path: &Path) -> io::Result<libc::statvfs> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut st = MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a valid NUL-terminated string and `st` points to writable memory of the
    // right type; statvfs only writes to it.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled the struct (which was zeroed to begin with).
    Ok(unsafe { st.assume_init() })
}

/// Which session a [`SessionSample`] is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SessionRef {
    pub id: String,
    pub agent: String,
    pub root_pid: u32,
    pub cwd: Option<String>,
    pub claude_session_id: Option<String>,
}

/// One sample of one session's processes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SessionSample {
    /// RFC 3339, UTC.
    pub ts: String,
    pub session: SessionRef,
    /// Sum of the members' resident set sizes. Shared pages (libraries, shared memory) count
    /// once per process, as in `ps`, so this over-states the session's real footprint.
    pub rss_kb: u64,
    /// Sum of the members' virtual memory sizes (`ps`'s VSZ).
    pub vsz_kb: u64,
    /// CPU used by the members since the previous sample of this session, in percent of one
    /// core (200 = two cores busy); `null` on the first sample. See [`SessionSampler`] for what
    /// it misses.
    pub cpu_percent: Option<f64>,
    pub processes: u32,
    pub threads: u32,
    /// The member with the largest RSS.
    pub top: Option<TopProcess>,
}

pub use crate::report::TopProcess;

impl From<&SessionSample> for crate::report::Sample {
    fn from(s: &SessionSample) -> crate::report::Sample {
        crate::report::Sample {
            ts: s.ts.clone(),
            rss_kb: s.rss_kb,
            cpu_percent: s.cpu_percent,
            processes: s.processes,
            threads: s.threads,
            top: s.top.clone(),
        }
    }
}

/// Computes per-session samples, remembering each session's CPU counters between calls.
///
/// CPU accounting: members are keyed by pid and start time, so a pid that was reused between
/// two samples starts from zero instead of producing a bogus (possibly negative) delta. A
/// member first seen in this sample counts in full when it started after the previous sample,
/// and from zero otherwise (it was running before but not yet known as a member). CPU used by
/// members that exited between two samples is lost: their counters vanish with them, so short
/// lived children (compilers, test runners) are under-counted unless they live across a
/// sample. Wall time comes from /proc/uptime, the clock of the start times.
pub struct SessionSampler {
    proc_root: PathBuf,
    ticks_per_second: u64,
    page_size: u64,
    sessions: HashMap<String, CpuState>,
    /// Applied to the top process's command line.
    redactor: crate::pipeline::redact::Redactor,
}

/// What the previous sample of a session saw.
struct CpuState {
    /// /proc/uptime at the previous sample, seconds.
    uptime: Option<f64>,
    /// (pid, starttime) -> utime + stime, in clock ticks.
    ticks: HashMap<(u32, u64), u64>,
}

/// What one member's /proc/PID/stat says.
struct Member {
    pid: u32,
    comm: String,
    starttime: u64,
    ticks: u64,
    rss_kb: u64,
    vsz_kb: u64,
    threads: u32,
}

impl SessionSampler {
    /// A sampler reading `proc_root` (normally `/proc`) with this host's clock tick rate and
    /// page size.
    pub fn new(proc_root: impl Into<PathBuf>) -> SessionSampler {
        Self::with_units(proc_root, procfs::ticks_per_second(), procfs::page_size())
    }

    /// A sampler with explicit units, for fake /proc trees.
    pub fn with_units(
        proc_root: impl Into<PathBuf>,
        ticks_per_second: u64,
        page_size: u64,
    ) -> SessionSampler {
        SessionSampler {
            proc_root: proc_root.into(),
            ticks_per_second: ticks_per_second.max(1),
            page_size,
            sessions: HashMap::new(),
            redactor: Default::default(),
        }
    }

    /// Redacts command lines with `redactor` from now on.
    pub fn set_redactor(&mut self, redactor: crate::pipeline::redact::Redactor) {
        self.redactor = redactor;
    }

    /// Samples the session made of `pids` (its live members, from the caller's process table).
    /// Pids that vanished while sampling are skipped silently.
    pub fn sample(&mut self, session: SessionRef, pids: &[u32]) -> SessionSample {
        let uptime = read_uptime(&self.proc_root);
        let members: Vec<Member> = pids.iter().filter_map(|&pid| self.member(pid)).collect();
        let ticks: HashMap<(u32, u64), u64> = members
            .iter()
            .map(|m| ((m.pid, m.starttime), m.ticks))
            .collect();

        let cpu_percent = self.sessions.get(&session.id).and_then(|prev| {
            let (now, then) = (uptime?, prev.uptime?);
            let wall = now - then;
            if wall <= 0.0 {
                return None;
            }
            let tps = self.ticks_per_second as f64;
            let used: u64 = members
                .iter()
                .map(|m| match prev.ticks.get(&(m.pid, m.starttime)) {
                    Some(&before) => m.ticks.saturating_sub(before),
                    None if m.starttime as f64 / tps >= then => m.ticks,
                    None => 0,
                })
                .sum();
            Some(round1(100.0 * used as f64 / tps / wall))
        });
        self.sessions
            .insert(session.id.clone(), CpuState { uptime, ticks });

        let top = members
            .iter()
            .max_by_key(|m| (m.rss_kb, std::cmp::Reverse(m.pid)))
            .map(|m| TopProcess {
                pid: m.pid,
                comm: m.comm.clone(),
                rss_kb: m.rss_kb,
                cmdline: self.cmdline(m.pid),
            });
        SessionSample {
            ts: format_ts(Utc::now()),
            session,
            rss_kb: members.iter().map(|m| m.rss_kb).sum(),
            vsz_kb: members.iter().map(|m| m.vsz_kb).sum(),
            cpu_percent,
            processes: u32::try_from(members.len()).unwrap_or(u32::MAX),
            threads: members.iter().map(|m| m.threads).sum(),
            top,
        }
    }

    #[cfg(test)]
    /// Drops what is remembered about a session (call when it ends).
    pub fn forget(&mut self, session_id: &str) {
        self.sessions.remove(session_id);
    }

    /// Keeps what is remembered only of the sessions `keep` says yes to (those the agent
    /// still tracks), so that sessions that come and go do not accumulate.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.sessions.retain(|id, _| keep(id));
    }

    /// Sessions remembered.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// One /proc/PID/stat read gives everything but the command line: its `rss` field is the
    /// same counter as statm's `resident` and status's `VmRSS` (in pages), and utime/stime of
    /// the thread group leader's stat cover all threads.
    fn member(&self, pid: u32) -> Option<Member> {
        let stat: Stat = Process::new_with_root(self.proc_root.join(pid.to_string()))
            .ok()?
            .stat()
            .ok()?;
        // A zombie has exited: it holds no memory and is no longer one of the live members.
        if stat.state == 'Z' {
            return None;
        }
        Some(Member {
            pid,
            comm: stat.comm,
            starttime: stat.starttime,
            ticks: stat.utime + stat.stime,
            rss_kb: stat.rss * self.page_size / 1024,
            vsz_kb: stat.vsize / 1024,
            threads: u32::try_from(stat.num_threads).unwrap_or(0),
        })
    }

    fn cmdline(&self, pid: u32) -> String {
        let Ok(raw) = std::fs::read(self.proc_root.join(pid.to_string()).join("cmdline")) else {
            return String::new();
        };
        let mut args: Vec<String> = raw
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        self.redactor.argv(&mut args);
        truncate_chars(&args.join(" "), CMDLINE_MAX_CHARS)
    }
}

/// Seconds since boot from `<proc_root>/uptime` (first field).
fn read_uptime(proc_root: &Path) -> Option<f64> {
    std::fs::read_to_string(proc_root.join("uptime"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

/// The last samples of each session, so that an exit report can show the minutes before the
/// end without re-reading the log.
pub struct History {
    capacity: usize,
    rings: HashMap<String, VecDeque<SessionSample>>,
}

impl History {
    /// Keeps at most `capacity` (at least 1) samples per session.
    pub fn new(capacity: usize) -> History {
        History {
            capacity: capacity.max(1),
            rings: HashMap::new(),
        }
    }

    /// Appends a sample to its session's ring, dropping the oldest when full.
    pub fn push(&mut self, sample: SessionSample) {
        let ring = self.rings.entry(sample.session.id.clone()).or_default();
        if ring.len() == self.capacity {
            ring.pop_front();
        }
        ring.push_back(sample);
    }

    /// The last `n` samples of a session, oldest first (empty for an unknown session).
    pub fn last(&self, session_id: &str, n: usize) -> Vec<&SessionSample> {
        let Some(ring) = self.rings.get(session_id) else {
            return Vec::new();
        };
        ring.iter().skip(ring.len().saturating_sub(n)).collect()
    }

    #[cfg(test)]
    /// Forgets a session's samples.
    pub fn remove(&mut self, session_id: &str) {
        self.rings.remove(session_id);
    }

    /// Keeps the samples only of the sessions `keep` says yes to (see
    /// [`SessionSampler::retain`]).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.rings.retain(|id, _| keep(id));
    }

    /// Sessions with samples.
    pub fn len(&self) -> usize {
        self.rings.len()
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testutil::TempDir;

    const MEMINFO: &str = "\
MemTotal:        8000000 kB
MemFree:          500000 kB
MemAvailable:    2000000 kB
Buffers:          100000 kB
Cached:          1000000 kB
SwapCached:            0 kB
Active:          3000000 kB
Inactive:        2000000 kB
SwapTotal:       4000000 kB
SwapFree:        3000000 kB
Dirty:               100 kB
Writeback:             0 kB
Mapped:           200000 kB
Slab:             300000 kB
Committed_AS:    9000000 kB
VmallocTotal:   34359738367 kB
VmallocUsed:       50000 kB
VmallocChunk:          0 kB
";

    fn stat_line(
        pid: u32,
        comm: &str,
        utime: u64,
        stime: u64,
        threads: u32,
        start: u64,
        rss_pages: u64,
    ) -> String {
        format!(
            "{pid} ({comm}) S 1 {pid} {pid} 0 -1 4194304 99 0 0 0 {utime} {stime} 0 0 20 0 {threads} 0 {start} 3133440 {rss_pages} 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
        )
    }

    fn fake_proc(tag: &str) -> TempDir {
        let t = TempDir::new(tag);
        t.write("meminfo", MEMINFO);
        t.write("loadavg", "0.52 1.10 2.00 3/456 7890\n");
        t.write(
            "pressure/memory",
            "some avg10=4.50 avg60=0.91 avg300=0.12 total=681245\n\
             full avg10=2.10 avg60=0.12 avg300=0.00 total=391926\n",
        );
        t
    }

    fn session(id: &str) -> SessionRef {
        SessionRef {
            id: id.to_string(),
            agent: "claude".to_string(),
            root_pid: 100,
            cwd: Some("/home/u/p".to_string()),
            claude_session_id: None,
        }
    }

    #[test]
    fn system_sample_from_a_fake_tree() {
        let t = fake_proc("sys");
        let s = sample_system(&t.0, &[], 7, 2);
        assert_eq!(s.errors, Vec::<String>::new());
        assert_eq!(s.mem_total_kb, Some(8_000_000));
        assert_eq!(s.mem_available_kb, Some(2_000_000));
        assert_eq!(s.mem_used_percent, Some(75.0));
        assert_eq!(s.swap_total_kb, Some(4_000_000));
        assert_eq!(s.swap_used_kb, Some(1_000_000));
        assert_eq!(
            (s.load1, s.load5, s.load15),
            (Some(0.52), Some(1.1), Some(2.0))
        );
        assert_eq!(
            s.memory_psi,
            Some(Psi {
                some_avg10: 4.5,
                some_avg60: 0.91,
                some_avg300: 0.12,
                full_avg10: 2.1,
                full_avg60: 0.12,
                full_avg300: 0.0,
            })
        );
        assert_eq!((s.session_processes, s.sessions), (7, 2));
        let json = serde_json::to_value(&s).unwrap();
        assert!(json.get("errors").is_none());
        assert!(chrono::DateTime::parse_from_rfc3339(&s.ts).is_ok());
    }

    #[test]
    fn memavailable_fallback_and_missing_sources() {
        let t = TempDir::new("old");
        // A pre-3.14 kernel: no MemAvailable; no PSI; no loadavg.
        let old: String = MEMINFO
            .lines()
            .filter(|l| !l.starts_with("MemAvailable"))
            .map(|l| format!("{l}\n"))
            .collect();
        t.write("meminfo", &old);
        let s = sample_system(&t.0, &[], 0, 0);
        // free + buffers + cached = 1.6 GB of 8 GB available.
        assert_eq!(s.mem_available_kb, Some(1_600_000));
        assert_eq!(s.mem_used_percent, Some(80.0));
        assert_eq!(s.memory_psi, None);
        assert_eq!(s.load1, None);
        assert_eq!(s.errors.len(), 1, "{:?}", s.errors);
        assert!(s.errors[0].contains("loadavg"));

        let empty = TempDir::new("empty");
        let s = sample_system(&empty.0, &[], 0, 0);
        assert_eq!(s.mem_total_kb, None);
        assert_eq!(s.errors.len(), 2);
    }

    #[test]
    fn disk_figures_follow_df() {
        // 4 KiB blocks: 1000 total, 300 free of which 250 available to users.
        let d = disk_figures("/x".to_string(), 1000, 300, 250, 4096);
        assert_eq!(d.total_kb, Some(4000));
        assert_eq!(d.used_kb, Some(2800));
        assert_eq!(d.available_kb, Some(1000));
        // 2800 / (2800 + 1000), not 2800 / 4000.
        assert_eq!(d.used_percent, Some(73.7));
        assert_eq!(d.error, None);
        let empty = disk_figures("/e".to_string(), 0, 0, 0, 4096);
        assert_eq!(empty.used_percent, Some(0.0));
    }

    #[test]
    fn unstatable_mount_gets_an_error() {
        let s = sample_system(
            Path::new("/proc"),
            &[PathBuf::from("/"), PathBuf::from("/nonexistent-cm-mount")],
            0,
            0,
        );
        assert_eq!(s.disks.len(), 2);
        assert!(s.disks[0].error.is_none());
        assert!(s.disks[0].total_kb.is_some_and(|t| t > 0));
        let bad = &s.disks[1];
        assert_eq!(bad.mount, "/nonexistent-cm-mount");
        assert!(bad.error.is_some());
        let json = serde_json::to_value(bad).unwrap();
        assert!(json.get("total_kb").is_none());
        assert!(json["error"].as_str().is_some());
    }

    #[test]
    fn smoke_real_proc() {
        let s = sample_system(Path::new("/proc"), &[PathBuf::from("/")], 0, 0);
        assert_eq!(s.errors, Vec::<String>::new());
        let total = s.mem_total_kb.unwrap();
        assert!(total > 0);
        assert!(s.mem_available_kb.unwrap() <= total);
        let p = s.mem_used_percent.unwrap();
        assert!((0.0..=100.0).contains(&p));
        // df on / must agree with our statvfs arithmetic on the size.
        if let Ok(out) = std::process::Command::new("df")
            .args(["-k", "-P", "/"])
            .output()
        {
            let text = String::from_utf8_lossy(&out.stdout);
            if let Some(total_df) = text
                .lines()
                .nth(1)
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
            {
                assert_eq!(s.disks[0].total_kb, Some(total_df));
            }
        }

        // Our own process as a one-member session.
        let me = std::process::id();
        let mut sampler = SessionSampler::new("/proc");
        let first = sampler.sample(session("self"), &[me, u32::MAX]);
        assert_eq!(first.processes, 1, "the bogus pid is skipped");
        assert!(first.rss_kb > 0);
        assert!(first.threads >= 1);
        assert_eq!(first.cpu_percent, None);
        let top = first.top.unwrap();
        assert_eq!(top.pid, me);
        assert!(!top.cmdline.is_empty());
        // Burn some CPU so the second sample has a delta to report.
        let t0 = std::time::Instant::now();
        let mut x = 0u64;
        while t0.elapsed() < std::time::Duration::from_millis(300) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let second = sampler.sample(session("self"), &[me]);
        let cpu = second.cpu_percent.unwrap();
        assert!(cpu > 0.0, "cpu {cpu}");
    }

    #[test]
    fn zombies_are_not_members() {
        let t = TempDir::new("sess-zombie");
        t.write("uptime", "1000.00 1900.00\n");
        t.write("10/stat", &stat_line(10, "bash", 100, 50, 1, 50_000, 100));
        t.write(
            "11/stat",
            &stat_line(11, "sh", 1, 1, 1, 60_000, 0).replacen(") S ", ") Z ", 1),
        );
        let mut s = SessionSampler::with_units(&t.0, 100, 4096);
        let sample = s.sample(session("z"), &[10, 11]);
        assert_eq!((sample.processes, sample.rss_kb), (1, 400));
    }

    #[test]
    fn session_cpu_rss_and_pid_reuse() {
        let t = TempDir::new("sess");
        t.write("uptime", "1000.00 1900.00\n");
        // Two members: 10 (bash, started at tick 50000 = 500 s) and 11 (node, bigger).
        t.write("10/stat", &stat_line(10, "bash", 100, 50, 1, 50_000, 100));
        t.write("10/cmdline", "bash\0-l\0");
        t.write(
            "11/stat",
            &stat_line(11, "node (main)", 1000, 200, 11, 60_000, 5000),
        );
        t.write("11/cmdline", &format!("node\0{}\0", "x".repeat(300)));
        let mut s = SessionSampler::with_units(&t.0, 100, 4096);

        let first = s.sample(session("a"), &[10, 11, 12]);
        assert_eq!(first.processes, 2);
        assert_eq!(first.threads, 12);
        assert_eq!(first.rss_kb, 100 * 4 + 5000 * 4);
        assert_eq!(
            first.vsz_kb,
            2 * 3_133_440 / 1024,
            "VSZ: field 23, in bytes"
        );
        assert_eq!(first.cpu_percent, None);
        let top = first.top.clone().unwrap();
        assert_eq!(
            (top.pid, top.comm.as_str(), top.rss_kb),
            (11, "node (main)", 20_000)
        );
        assert_eq!(top.cmdline.chars().count(), 200);
        assert!(top.cmdline.starts_with("node xxx"));

        // 10 s later: bash used 1 s, node 4 s; pid 11 is now a different process (started
        // later, small counters): it must count from its start, not produce a negative delta.
        // Pid 13 is a new member born before the previous sample: it counts from zero.
        // Pid 14 was born after the previous sample: all of its time counts.
        t.write("uptime", "1010.00 1900.00\n");
        t.write("10/stat", &stat_line(10, "bash", 150, 100, 1, 50_000, 100));
        t.write("11/stat", &stat_line(11, "node", 30, 10, 1, 100_500, 10));
        t.write("13/stat", &stat_line(13, "old", 9000, 0, 1, 1_000, 10));
        t.write("14/stat", &stat_line(14, "cc", 60, 0, 1, 100_200, 10));
        let second = s.sample(session("a"), &[10, 11, 13, 14]);
        // bash 100 ticks + reused 11: 40 ticks + 13: 0 + 14: 60 ticks = 200 ticks = 2 s / 10 s.
        assert_eq!(second.cpu_percent, Some(20.0));
        assert_eq!(second.processes, 4);

        // Another session is independent; forget() restarts a session's accounting.
        assert_eq!(s.sample(session("b"), &[10]).cpu_percent, None);
        s.forget("a");
        assert_eq!(s.sample(session("a"), &[10]).cpu_percent, None);

        let json = serde_json::to_value(&second).unwrap();
        assert_eq!(json["session"]["id"], "a");
        assert_eq!(json["cpu_percent"], 20.0);
    }

    #[test]
    fn session_without_live_members() {
        let t = TempDir::new("none");
        let mut s = SessionSampler::with_units(&t.0, 100, 4096);
        let x = s.sample(session("gone"), &[1, 2]);
        assert_eq!((x.processes, x.threads, x.rss_kb), (0, 0, 0));
        assert_eq!(x.top, None);
        // No /proc/uptime: no wall clock, so no CPU figure even on later samples.
        assert_eq!(s.sample(session("gone"), &[]).cpu_percent, None);
    }

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate_chars("héllo", 2), "hé");
        assert_eq!(truncate_chars("ab", 5), "ab");
    }

    #[test]
    fn history_is_a_bounded_ring_per_session() {
        let mk = |id: &str, rss: u64| SessionSample {
            ts: String::new(),
            session: session(id),
            rss_kb: rss,
            vsz_kb: rss * 2,
            cpu_percent: None,
            processes: 1,
            threads: 1,
            top: None,
        };
        let mut h = History::new(3);
        for i in 1..=5 {
            h.push(mk("a", i));
        }
        h.push(mk("b", 100));
        let rss = |v: Vec<&SessionSample>| v.iter().map(|s| s.rss_kb).collect::<Vec<_>>();
        assert_eq!(rss(h.last("a", 10)), vec![3, 4, 5]);
        assert_eq!(rss(h.last("a", 2)), vec![4, 5]);
        assert_eq!(rss(h.last("a", 0)), Vec::<u64>::new());
        assert_eq!(rss(h.last("b", 2)), vec![100]);
        assert!(h.last("c", 2).is_empty());
        h.remove("a");
        assert!(h.last("a", 2).is_empty());
        assert_eq!(h.last("b", 1).len(), 1);
        // What the daemon does after each round of samples: only tracked sessions stay.
        h.push(mk("c", 7));
        h.retain(|id| id == "c");
        assert_eq!((h.len(), rss(h.last("c", 1))), (1, vec![7]));
        assert!(h.last("b", 1).is_empty());
    }

    #[test]
    fn the_sampler_forgets_untracked_sessions() {
        let me = std::process::id();
        let mut sampler = SessionSampler::new("/proc");
        sampler.sample(session("a"), &[me]);
        sampler.sample(session("b"), &[me]);
        assert_eq!(sampler.len(), 2);
        sampler.retain(|id| id == "b");
        assert_eq!(sampler.len(), 1);
        // A forgotten session starts over: no CPU figure from its first sample.
        assert_eq!(sampler.sample(session("a"), &[me]).cpu_percent, None);
    }
}
