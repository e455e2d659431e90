//! Alerts on resource samples and OOM kills, with a cooldown so that a condition that lasts
//! (a disk that stays full) produces one line per cooldown period rather than one per sample.
//!
//! The thresholds of the tools this replaces are the defaults: memory above 85%, disk above
//! 90%, any OOM kill. Comparisons are strict ("above"), as theirs were.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use chrono::Utc;
use serde::Serialize;

use crate::{
    daemon::resources::{SessionSample, SystemSample},
    host::clock::format_ts,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// Host memory use (`mem_used_percent`).
    Memory,
    /// A mounted file system's use (`used_percent`).
    Disk,
    /// One session's summed RSS.
    SessionRss,
    /// The kernel OOM killer killed a process.
    OomKill,
}

names!(AlertKind {
    Memory => "memory",
    Disk => "disk",
    SessionRss => "session_rss",
    OomKill => "oom_kill",
});

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Unit {
    #[serde(rename = "percent")]
    Percent,
    #[serde(rename = "MiB")]
    MiB,
}

/// One alert, written as a JSON line to the alert log.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Alert {
    pub kind: AlertKind,
    /// "system" for memory, the mount path for disk, the session id for session_rss, the
    /// victim's proc_id for oom_kill.
    pub subject: String,
    /// The measured value (`null` for oom_kill).
    pub value: Option<f64>,
    /// The threshold it crossed (`null` for oom_kill).
    pub threshold: Option<f64>,
    pub unit: Option<Unit>,
    /// One plain sentence, e.g. "memory use 91.2% is above 85%".
    pub message: String,
    /// RFC 3339, UTC: when the alert was raised.
    pub ts: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AlertThresholds {
    /// Alert when host memory use is above this percentage.
    pub memory_percent: f64,
    /// Alert when a file system's use is above this percentage.
    pub disk_percent: f64,
    /// Alert when a session's RSS is above this many MiB; 0 turns the check off.
    pub session_rss_mb: u64,
    /// Minimum time between two alerts of the same kind about the same subject.
    pub cooldown: Duration,
}

impl Default for AlertThresholds {
    /// 85% memory and 90% disk (the thresholds of claude-exit-monitor), no session RSS check,
    /// 30 minutes cooldown (that of tce's resource alerts).
    fn default() -> AlertThresholds {
        AlertThresholds {
            memory_percent: 85.0,
            disk_percent: 90.0,
            session_rss_mb: 0,
            cooldown: Duration::from_secs(30 * 60),
        }
    }
}

/// Turns samples into alerts.
///
/// Cooldown: an alert for a (kind, subject) pair is raised at most once per cooldown period,
/// counted from the last alert raised for that pair. Whether the value dipped below the
/// threshold in between does not matter: a value that oscillates around the threshold inside
/// the cooldown does not re-alert, and a condition that persists is reported again once the
/// cooldown has passed, as a reminder.
pub struct Alerter {
    thresholds: AlertThresholds,
    last: HashMap<(AlertKind, String), Instant>,
}

impl Alerter {
    pub fn new(thresholds: AlertThresholds) -> Alerter {
        Alerter {
            thresholds,
            last: HashMap::new(),
        }
    }

    /// Memory and disk alerts for a host sample. `now` is injectable for tests.
    pub fn check_system(&mut self, sample: &SystemSample, now: Instant) -> Vec<Alert> {
        self.prune(now);
        let mut out = Vec::new();
        let limit = self.thresholds.memory_percent;
        if let Some(used) = sample.mem_used_percent
            && used > limit
            && self.may_raise(AlertKind::Memory, "system", now)
        {
            out.push(alert(
                AlertKind::Memory,
                "system".to_string(),
                Some((used, limit, Unit::Percent)),
                format!("memory use {used}% is above {limit}%"),
            ));
        }
        let limit = self.thresholds.disk_percent;
        for disk in &sample.disks {
            if let Some(used) = disk.used_percent
                && used > limit
                && self.may_raise(AlertKind::Disk, &disk.mount, now)
            {
                out.push(alert(
                    AlertKind::Disk,
                    disk.mount.clone(),
                    Some((used, limit, Unit::Percent)),
                    format!("disk use of {} {used}% is above {limit}%", disk.mount),
                ));
            }
        }
        out
    }

    /// The session RSS alert (when enabled) for a session sample.
    pub fn check_session(&mut self, sample: &SessionSample, now: Instant) -> Vec<Alert> {
        self.prune(now);
        let limit_mb = self.thresholds.session_rss_mb;
        if limit_mb == 0 {
            return Vec::new();
        }
        let rss_mb = (sample.rss_kb as f64 / 1024.0 * 10.0).round() / 10.0;
        // Compare in KiB so that rounding for display cannot hide or invent a crossing.
        if sample.rss_kb <= limit_mb.saturating_mul(1024) {
            return Vec::new();
        }
        let id = &sample.session.id;
        if !self.may_raise(AlertKind::SessionRss, id, now) {
            return Vec::new();
        }
        vec![alert(
            AlertKind::SessionRss,
            id.clone(),
            Some((rss_mb, limit_mb as f64, Unit::MiB)),
            format!("session {id} RSS {rss_mb} MiB is above {limit_mb} MiB"),
        )]
    }

    /// An OOM kill alert, unless one about the same subject was raised within the cooldown
    /// (the same kill seen twice, e.g. from two event sources).
    pub fn oom_kill(
        &mut self,
        subject: impl Into<String>,
        message: impl Into<String>,
        now: Instant,
    ) -> Option<Alert> {
        self.prune(now);
        let subject = subject.into();
        if !self.may_raise(AlertKind::OomKill, &subject, now) {
            return None;
        }
        Some(alert(AlertKind::OomKill, subject, None, message.into()))
    }

    /// Records and allows an alert unless the pair is inside its cooldown.
    fn may_raise(&mut self, kind: AlertKind, subject: &str, now: Instant) -> bool {
        let key = (kind, subject.to_string());
        if let Some(&at) = self.last.get(&key)
            && now.saturating_duration_since(at) < self.thresholds.cooldown
        {
            return false;
        }
        self.last.insert(key, now);
        true
    }

    /// Forgets pairs whose cooldown is over, so that subjects that come and go (sessions,
    /// OOM victims) do not accumulate for the life of the daemon.
    fn prune(&mut self, now: Instant) {
        let cooldown = self.thresholds.cooldown;
        self.last
            .retain(|_, at| now.saturating_duration_since(*at) < cooldown);
    }
}

fn alert(
    kind: AlertKind,
    subject: String,
    figures: Option<(f64, f64, Unit)>,
    message: String,
) -> Alert {
    Alert {
        kind,
        subject,
        value: figures.map(|f| f.0),
        threshold: figures.map(|f| f.1),
        unit: figures.map(|f| f.2),
        message,
        ts: format_ts(Utc::now()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::resources::{DiskSample, SessionRef};

    fn system(mem: Option<f64>, disks: &[(&str, Option<f64>)]) -> SystemSample {
        SystemSample {
            ts: String::new(),
            mem_total_kb: None,
            mem_available_kb: None,
            mem_used_percent: mem,
            swap_total_kb: None,
            swap_used_kb: None,
            load1: None,
            load5: None,
            load15: None,
            disks: disks
                .iter()
                .map(|(m, p)| DiskSample {
                    mount: m.to_string(),
                    total_kb: None,
                    used_kb: None,
                    available_kb: None,
                    used_percent: *p,
                    error: p.is_none().then(|| "gone".to_string()),
                })
                .collect(),
            memory_psi: None,
            session_processes: 0,
            sessions: 0,
            errors: Vec::new(),
        }
    }

    fn session(id: &str, rss_kb: u64) -> SessionSample {
        SessionSample {
            ts: String::new(),
            session: SessionRef {
                id: id.to_string(),
                agent: "claude".to_string(),
                root_pid: 1,
                cwd: None,
                claude_session_id: None,
            },
            rss_kb,
            vsz_kb: rss_kb * 2,
            cpu_percent: None,
            processes: 1,
            threads: 1,
            top: None,
        }
    }

    fn alerter(rss_mb: u64) -> Alerter {
        Alerter::new(AlertThresholds {
            session_rss_mb: rss_mb,
            cooldown: Duration::from_secs(600),
            ..AlertThresholds::default()
        })
    }

    #[test]
    fn memory_threshold_is_strict() {
        let t0 = Instant::now();
        let mut a = alerter(0);
        assert!(a.check_system(&system(Some(85.0), &[]), t0).is_empty());
        assert!(a.check_system(&system(None, &[]), t0).is_empty());
        let got = a.check_system(&system(Some(91.2), &[]), t0);
        assert_eq!(got.len(), 1);
        let al = &got[0];
        assert_eq!(al.kind, AlertKind::Memory);
        assert_eq!(al.subject, "system");
        assert_eq!(al.value, Some(91.2));
        assert_eq!(al.threshold, Some(85.0));
        assert_eq!(al.unit, Some(Unit::Percent));
        assert_eq!(al.message, "memory use 91.2% is above 85%");
        let json = serde_json::to_value(al).unwrap();
        assert_eq!(json["kind"], "memory");
        assert_eq!(json["unit"], "percent");
        assert!(chrono::DateTime::parse_from_rfc3339(&al.ts).is_ok());
    }

    #[test]
    fn disk_alerts_per_mount() {
        let t0 = Instant::now();
        let mut a = alerter(0);
        let s = system(
            Some(10.0),
            &[("/", Some(90.0)), ("/data", Some(90.1)), ("/gone", None)],
        );
        let got = a.check_system(&s, t0);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].kind, AlertKind::Disk);
        assert_eq!(got[0].subject, "/data");
        assert_eq!(got[0].message, "disk use of /data 90.1% is above 90%");
        // /data is in cooldown, but / crossing now is a different subject.
        let s = system(Some(10.0), &[("/", Some(95.0)), ("/data", Some(99.0))]);
        let got = a.check_system(&s, t0 + Duration::from_secs(1));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].subject, "/");
    }

    #[test]
    fn cooldown_does_not_re_alert_after_a_dip() {
        let t0 = Instant::now();
        let mut a = alerter(0);
        let high = system(Some(90.0), &[]);
        let low = system(Some(50.0), &[]);
        assert_eq!(a.check_system(&high, t0).len(), 1);
        assert!(
            a.check_system(&high, t0 + Duration::from_secs(30))
                .is_empty()
        );
        assert!(
            a.check_system(&low, t0 + Duration::from_secs(60))
                .is_empty()
        );
        // Back above the threshold inside the cooldown: still quiet.
        assert!(
            a.check_system(&high, t0 + Duration::from_secs(599))
                .is_empty()
        );
        // The cooldown is over: reminded once, and the new cooldown counts from here.
        assert_eq!(
            a.check_system(&high, t0 + Duration::from_secs(600)).len(),
            1
        );
        assert!(
            a.check_system(&high, t0 + Duration::from_secs(1199))
                .is_empty()
        );
        assert_eq!(
            a.check_system(&high, t0 + Duration::from_secs(1200)).len(),
            1
        );
    }

    #[test]
    fn zero_cooldown_alerts_every_time() {
        let t0 = Instant::now();
        let mut a = Alerter::new(AlertThresholds {
            cooldown: Duration::ZERO,
            ..AlertThresholds::default()
        });
        let high = system(Some(90.0), &[]);
        assert_eq!(a.check_system(&high, t0).len(), 1);
        assert_eq!(a.check_system(&high, t0).len(), 1);
    }

    #[test]
    fn session_rss_threshold() {
        let t0 = Instant::now();
        let mut off = alerter(0);
        assert!(
            off.check_session(&session("s", u64::MAX / 2), t0)
                .is_empty()
        );

        let mut a = alerter(2048);
        assert!(a.check_session(&session("s", 2048 * 1024), t0).is_empty());
        let got = a.check_session(&session("s", 2048 * 1024 + 512), t0);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].kind, AlertKind::SessionRss);
        assert_eq!(got[0].subject, "s");
        assert_eq!(got[0].value, Some(2048.5));
        assert_eq!(got[0].threshold, Some(2048.0));
        assert_eq!(got[0].unit, Some(Unit::MiB));
        assert_eq!(got[0].message, "session s RSS 2048.5 MiB is above 2048 MiB");
        assert_eq!(serde_json::to_value(&got[0]).unwrap()["unit"], "MiB");
        // Same session inside the cooldown: nothing; another session: its own alert.
        assert!(a.check_session(&session("s", 4096 * 1024), t0).is_empty());
        assert_eq!(a.check_session(&session("t", 4096 * 1024), t0).len(), 1);
    }

    #[test]
    fn oom_kill_alerts_once_per_subject() {
        let t0 = Instant::now();
        let mut a = alerter(0);
        let al = a
            .oom_kill(
                "1234@5678",
                "node (pid 1234) was killed by the OOM killer",
                t0,
            )
            .unwrap();
        assert_eq!(al.kind, AlertKind::OomKill);
        assert_eq!((al.value, al.threshold, al.unit), (None, None, None));
        let json = serde_json::to_value(&al).unwrap();
        assert_eq!(json["kind"], "oom_kill");
        assert!(json["threshold"].is_null());
        assert!(a.oom_kill("1234@5678", "again", t0).is_none());
        assert!(a.oom_kill("99@1", "other victim", t0).is_some());
        // Kinds do not share cooldowns even with equal subjects.
        assert_eq!(a.check_system(&system(Some(99.0), &[]), t0).len(), 1);
        assert!(a.oom_kill("system", "x", t0).is_some());
    }

    #[test]
    fn expired_entries_are_pruned() {
        let t0 = Instant::now();
        let mut a = alerter(1);
        for i in 0..10 {
            a.check_session(&session(&format!("s{i}"), 10 * 1024), t0);
        }
        assert_eq!(a.last.len(), 10);
        a.check_system(&system(None, &[]), t0 + Duration::from_secs(601));
        assert!(a.last.is_empty());
    }
}
