//! Reading what the tracers and helpers print, and what /proc says: pure functions over
//! text, so that each can be tested without a kernel.

use std::collections::HashMap;

use serde_json::Value;

/// One tracer record, reduced to what the bench counts. The agent's JSON lines and
/// bpftrace's text lines both map to it.
#[derive(Debug, Clone, PartialEq)]
pub enum Ev {
    /// The agent's `agent_start` (or bpftrace's ready line).
    Start,
    /// A process exited. `ts_ns`: the event's own timestamp (ns since the Unix epoch), for
    /// the latency figure; `cause`: the agent's `cause`. bpftrace has neither.
    Exit {
        pid: u32,
        ts_ns: Option<i128>,
        cause: Option<String>,
    },
    /// A signal was generated; `count`: how many identical signals the agent's record
    /// stands for, when it says (it aggregates floods in the kernel); `None` means one.
    Signal {
        sender: u32,
        target: u32,
        sig: i32,
        count: Option<u64>,
    },
    /// The OOM killer chose `victim`.
    Oom { victim: u32 },
    /// Records the tracer says it lost.
    Lost { count: u64 },
    /// The agent's `agent_stop`: its total of lost records, and its programs' run-time
    /// statistics when it reports them.
    Stop {
        lost: u64,
        programs: Option<Vec<ProgStat>>,
    },
    /// Anything else (fork, exec, bpftrace's banner).
    Other,
}

/// Run-time statistics of one BPF program (`kernel.bpf_stats_enabled`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgStat {
    pub name: String,
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

/// The agent's `lost` reasons that are records lost. `watch_map_full` is processes not
/// followed, which `agent_stop.lost` does not count either.
const LOST_RECORD_REASONS: &[&str] = &["ring_buffer_full", "decode_error"];

/// Parses one line of `claude-monitor trace --format json`.
pub fn agent_line(line: &str) -> Result<Ev, String> {
    let v: Value =
        serde_json::from_str(line).map_err(|e| format!("not JSON ({e}): {}", clip(line)))?;
    let u32_at = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
    };
    let missing = |what: &str| format!("{what} missing: {}", clip(line));
    Ok(match v["kind"].as_str() {
        Some("agent_start") => Ev::Start,
        Some("exit") => Ev::Exit {
            pid: u32_at("/pid").ok_or_else(|| missing("pid"))?,
            ts_ns: v["ts"].as_str().and_then(rfc3339_ns),
            cause: v["cause"].as_str().map(str::to_owned),
        },
        Some("signal") => Ev::Signal {
            sender: u32_at("/sender/pid").ok_or_else(|| missing("sender.pid"))?,
            target: u32_at("/target/pid").ok_or_else(|| missing("target.pid"))?,
            sig: v["signal"]
                .as_i64()
                .and_then(|s| i32::try_from(s).ok())
                .ok_or_else(|| missing("signal"))?,
            count: v["count"].as_u64(),
        },
        Some("oom") => Ev::Oom {
            victim: u32_at("/victim/pid").ok_or_else(|| missing("victim.pid"))?,
        },
        Some("lost") => {
            let reason = v["reason"].as_str().unwrap_or_default();
            if LOST_RECORD_REASONS.contains(&reason) {
                Ev::Lost {
                    count: v["count"].as_u64().unwrap_or(0),
                }
            } else {
                Ev::Other
            }
        }
        Some("agent_stop") => Ev::Stop {
            lost: v["lost"].as_u64().unwrap_or(0),
            programs: v["programs"].as_array().map(|progs| {
                progs
                    .iter()
                    .filter_map(|p| {
                        Some(ProgStat {
                            name: p["name"].as_str()?.to_owned(),
                            run_time_ns: p["run_time_ns"].as_u64()?,
                            run_cnt: p["run_count"].as_u64().or_else(|| p["run_cnt"].as_u64())?,
                        })
                    })
                    .collect()
            }),
        },
        Some(_) => Ev::Other,
        None => return Err(missing("kind")),
    })
}

/// The bpftrace script: one line per event, the same three tracepoints the agent's exit,
/// signal and OOM records come from. `pid` is the tgid of the current task: the exiting
/// process, or the signal's sender. `READY` comes from BEGIN, after every probe is attached.
pub const BPFTRACE_SCRIPT: &str = r#"BEGIN { printf("READY\n"); }
tracepoint:sched:sched_process_exit { printf("E %d\n", pid); }
tracepoint:signal:signal_generate { printf("S %d %d %d\n", pid, args->pid, args->sig); }
tracepoint:oom:mark_victim { printf("O %d\n", args->pid); }
"#;

/// The tracepoints of [`BPFTRACE_SCRIPT`], which name its programs.
pub const BPFTRACE_PROBES: &[&str] = &["sched_process_exit", "signal_generate", "mark_victim"];

/// A program name as the kernel keeps it (at most 15 characters) made whole again: the
/// one name of `known` it is a prefix of, if exactly one; else unchanged.
pub fn full_name(name: &str, known: &[&str]) -> String {
    let mut matches = known.iter().filter(|k| k.starts_with(name));
    match (matches.next(), matches.next()) {
        (Some(one), None) => (*one).to_owned(),
        _ => name.to_owned(),
    }
}

/// Parses one line of [`BPFTRACE_SCRIPT`]'s output (or bpftrace's own `Lost N events`).
pub fn bpftrace_line(line: &str) -> Ev {
    let words: Vec<&str> = line.split_whitespace().collect();
    let num = |i: usize| words.get(i).and_then(|w| w.parse::<u32>().ok());
    match words.as_slice() {
        ["READY"] => Ev::Start,
        ["E", _] => num(1).map_or(Ev::Other, |pid| Ev::Exit {
            pid,
            ts_ns: None,
            cause: None,
        }),
        ["S", _, _, sig] => match (num(1), num(2), sig.parse::<i32>().ok()) {
            (Some(sender), Some(target), Some(sig)) => Ev::Signal {
                sender,
                target,
                sig,
                count: None,
            },
            _ => Ev::Other,
        },
        ["O", _] => num(1).map_or(Ev::Other, |victim| Ev::Oom { victim }),
        ["Lost", n, "events"] => n
            .parse::<u64>()
            .map_or(Ev::Other, |count| Ev::Lost { count }),
        _ => Ev::Other,
    }
}

/// Whether `line` is the tracer's exit record of `pid`, cheaply, without parsing the JSON:
/// the reader thread asks this of every line while it waits for a marker process's exit.
pub fn is_exit_of(line: &str, pid: u32, agent: bool) -> bool {
    if agent {
        // The record's own `pid` comes right after `ts`; `"ppid":N,` does not match
        // `"pid":N,` because of the quote.
        line.contains("\"kind\":\"exit\"") && line.contains(&format!("\"pid\":{pid},"))
    } else {
        line.strip_prefix("E ")
            .is_some_and(|rest| rest.trim() == pid.to_string())
    }
}

/// Lost records of a whole session: `agent_stop.lost` when there is one (it is the run's
/// total), otherwise the sum of the `lost` records (bpftrace's `Lost N events` lines).
pub fn lost_total(events: &[Ev]) -> u64 {
    let stop = events.iter().rev().find_map(|e| match e {
        Ev::Stop { lost, .. } => Some(*lost),
        _ => None,
    });
    stop.unwrap_or_else(|| {
        events
            .iter()
            .map(|e| match e {
                Ev::Lost { count } => *count,
                _ => 0,
            })
            .sum()
    })
}

/// `2026-11-21T22:01:58.749139221Z` (the agent's `ts`: UTC, 1-9 fraction digits) as ns
/// since the Unix epoch.
pub fn rfc3339_ns(ts: &str) -> Option<i128> {
    let ts = ts.strip_suffix('Z')?;
    let (date, time) = ts.split_once('T')?;
    let mut d = date.splitn(3, '-');
    let (y, mo, day) = (
        d.next()?.parse::<i64>().ok()?,
        d.next()?.parse::<u32>().ok()?,
        d.next()?.parse::<u32>().ok()?,
    );
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':');
    let (h, mi, s) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&day) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos: i128 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    let secs = days_from_civil(y, mo, day) * 86_400 + h * 3600 + mi * 60 + s;
    Some(i128::from(secs) * 1_000_000_000 + nanos)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `(year, month, day)` of a day count since 1970-01-01 (inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Unix seconds as `20261121T220158Z` (a file name that sorts by time).
pub fn compact_utc(unix_secs: i64) -> String {
    let (y, m, d) = civil_from_days(unix_secs.div_euclid(86_400));
    let s = unix_secs.rem_euclid(86_400);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// Unix seconds as RFC 3339 (`2026-11-21T22:01:58Z`).
pub fn rfc3339(unix_secs: i64) -> String {
    let (y, m, d) = civil_from_days(unix_secs.div_euclid(86_400));
    let s = unix_secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// A helper's `key=value key=value` line.
pub fn key_values(line: &str) -> HashMap<String, String> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// utime + stime (clock ticks) from `/proc/PID/stat`. The command name may contain spaces
/// and parentheses, so fields are counted after the last `)`.
pub fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A `Name:   123 kB` field of `/proc/PID/status`, in KiB.
pub fn status_kb(status: &str, name: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// `(prog_id, run_time_ns, run_cnt)` from `/proc/PID/fdinfo/FD` of a BPF program fd.
pub fn prog_fdinfo(fdinfo: &str) -> Option<(u32, u64, u64)> {
    let field = |name: &str| {
        fdinfo.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim().to_owned())
        })
    };
    Some((
        field("prog_id")?.parse().ok()?,
        field("run_time_ns")?.parse().ok()?,
        field("run_cnt")?.parse().ok()?,
    ))
}

/// Program names by id from `bpftool -j prog show`.
pub fn bpftool_names(json: &str) -> HashMap<u32, String> {
    let Ok(Value::Array(progs)) = serde_json::from_str::<Value>(json) else {
        return HashMap::new();
    };
    progs
        .iter()
        .filter_map(|p| {
            let id = u32::try_from(p["id"].as_u64()?).ok()?;
            Some((id, p["name"].as_str()?.to_owned()))
        })
        .collect()
}

fn clip(line: &str) -> &str {
    match line.char_indices().nth(200) {
        Some((i, _)) => &line[..i],
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_exit_signal_oom_lost_stop() {
        let exit = r#"{"v":1,"kind":"exit","ts":"2026-11-21T22:45:02.291573349Z","pid":668,"comm":"sh","cause":"exited"}"#;
        assert_eq!(
            agent_line(exit),
            Ok(Ev::Exit {
                pid: 668,
                ts_ns: Some(1_795_301_102_291_573_349),
                cause: Some("exited".into())
            })
        );
        let sig = r#"{"v":1,"kind":"signal","pid":669,"signal":15,"sender":{"pid":665},"target":{"pid":669}}"#;
        assert_eq!(
            agent_line(sig),
            Ok(Ev::Signal {
                sender: 665,
                target: 669,
                sig: 15,
                count: None
            })
        );
        let merged =
            r#"{"kind":"signal","signal":10,"count":4096,"sender":{"pid":1},"target":{"pid":2}}"#;
        assert!(matches!(
            agent_line(merged),
            Ok(Ev::Signal {
                count: Some(4096),
                ..
            })
        ));
        let oom = r#"{"kind":"oom","pid":801,"victim":{"pid":801,"comm":"memhog","uid":0}}"#;
        assert_eq!(agent_line(oom), Ok(Ev::Oom { victim: 801 }));
        let lost = r#"{"kind":"lost","count":17,"reason":"ring_buffer_full"}"#;
        assert_eq!(agent_line(lost), Ok(Ev::Lost { count: 17 }));
        let not_lost = r#"{"kind":"lost","count":17,"reason":"watch_map_full"}"#;
        assert_eq!(agent_line(not_lost), Ok(Ev::Other));
        let stop = r#"{"kind":"agent_stop","events":5,"lost":3,"reason":"sigint"}"#;
        assert_eq!(
            agent_line(stop),
            Ok(Ev::Stop {
                lost: 3,
                programs: None
            })
        );
        let stop = r#"{"kind":"agent_stop","lost":0,"programs":[{"name":"sched_process_exit","run_count":10,"run_time_ns":5000}]}"#;
        assert_eq!(
            agent_line(stop),
            Ok(Ev::Stop {
                lost: 0,
                programs: Some(vec![ProgStat {
                    name: "sched_process_exit".into(),
                    run_time_ns: 5000,
                    run_cnt: 10
                }])
            })
        );
        assert_eq!(agent_line(r#"{"kind":"fork","pid":3}"#), Ok(Ev::Other));
        assert!(agent_line("not json").is_err());
        assert!(agent_line(r#"{"kind":"exit"}"#).is_err());
    }

    #[test]
    fn bpftrace_lines() {
        assert_eq!(bpftrace_line("READY"), Ev::Start);
        assert_eq!(bpftrace_line("Attaching 4 probes..."), Ev::Other);
        assert_eq!(
            bpftrace_line("E 123"),
            Ev::Exit {
                pid: 123,
                ts_ns: None,
                cause: None
            }
        );
        assert_eq!(
            bpftrace_line("S 1 2 10"),
            Ev::Signal {
                sender: 1,
                target: 2,
                sig: 10,
                count: None
            }
        );
        assert_eq!(bpftrace_line("O 99"), Ev::Oom { victim: 99 });
        assert_eq!(bpftrace_line("Lost 4242 events"), Ev::Lost { count: 4242 });
        assert_eq!(bpftrace_line("E x"), Ev::Other);
    }

    #[test]
    fn truncated_program_names() {
        assert_eq!(
            full_name("sched_process_e", BPFTRACE_PROBES),
            "sched_process_exit"
        );
        assert_eq!(full_name("mark_victim", BPFTRACE_PROBES), "mark_victim");
        assert_eq!(
            full_name(
                "sched_process_e",
                &["sched_process_exit", "sched_process_exec"]
            ),
            "sched_process_e",
            "ambiguous: left alone"
        );
        assert_eq!(full_name("other", BPFTRACE_PROBES), "other");
    }

    #[test]
    fn exit_markers() {
        let exit = r#"{"v":1,"kind":"exit","ts":"x","pid":668,"comm":"sh","tid":668,"ppid":665}"#;
        assert!(is_exit_of(exit, 668, true));
        assert!(!is_exit_of(exit, 665, true), "ppid is not pid");
        assert!(!is_exit_of(exit, 66, true));
        let signal = r#"{"v":1,"kind":"signal","ts":"x","pid":668}"#;
        assert!(!is_exit_of(signal, 668, true));
        assert!(is_exit_of("E 668", 668, false));
        assert!(!is_exit_of("E 6680", 668, false));
        assert!(!is_exit_of("S 668 1 10", 668, false));
    }

    #[test]
    fn lost_prefers_agent_stop() {
        let records = vec![Ev::Lost { count: 2 }, Ev::Lost { count: 3 }];
        assert_eq!(lost_total(&records), 5);
        let mut with_stop = records.clone();
        with_stop.push(Ev::Stop {
            lost: 7,
            programs: None,
        });
        assert_eq!(lost_total(&with_stop), 7);
        assert_eq!(lost_total(&[]), 0);
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339_ns("1970-01-01T00:00:00.000000001Z"), Some(1));
        assert_eq!(rfc3339_ns("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        assert_eq!(
            rfc3339_ns("2000-03-01T00:00:00Z"),
            Some(951_868_800_000_000_000)
        );
        assert_eq!(rfc3339_ns("2026-13-01T00:00:00Z"), None);
        assert_eq!(rfc3339_ns("2026-11-21 22:45:02Z"), None);
        assert_eq!(rfc3339_ns("2026-11-21T22:45:02.x1Z"), None);
        // Round trip through the formatters.
        for secs in [0i64, 951_868_800, 1_795_301_102, 4_102_444_800] {
            let text = rfc3339(secs);
            assert_eq!(rfc3339_ns(&text), Some(i128::from(secs) * 1_000_000_000));
        }
        assert_eq!(compact_utc(1_795_301_102), "20261121T224502Z");
        assert_eq!(rfc3339(1_795_301_102), "2026-11-21T22:45:02Z");
    }

    #[test]
    fn proc_files() {
        let stat = "1234 (a (b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 17 5 0 0 20 0 3 0";
        assert_eq!(stat_cpu_ticks(stat), Some(22));
        assert_eq!(stat_cpu_ticks("garbage"), None);
        let status = "Name:\tclaude-monitor\nVmPeak:\t  99999 kB\nVmHWM:\t   12345 kB\n";
        assert_eq!(status_kb(status, "VmHWM"), Some(12345));
        assert_eq!(status_kb(status, "VmRSS"), None);
        let fdinfo = "pos:\t0\nflags:\t02000002\nprog_type:\t26\nprog_id:\t3199\nrun_time_ns:\t5661\nrun_cnt:\t10\n";
        assert_eq!(prog_fdinfo(fdinfo), Some((3199, 5661, 10)));
        assert_eq!(prog_fdinfo("pos:\t0\nmap_id:\t3\n"), None);
        let kv = key_values("a=1 b=22 junk secs=0.5");
        assert_eq!(kv.get("b").map(String::as_str), Some("22"));
        assert_eq!(kv.get("secs").map(String::as_str), Some("0.5"));
        assert_eq!(kv.len(), 3);
        let names =
            bpftool_names(r#"[{"id":3215,"type":"tracepoint","name":"signal_generate"},{"id":7}]"#);
        assert_eq!(
            names.get(&3215).map(String::as_str),
            Some("signal_generate")
        );
        assert_eq!(names.len(), 1);
    }
}
