//! Memory cgroup evidence for exit reports of OOM kills.
//!
//! A process killed by a cgroup OOM was killed because *some* limit on its path to the root
//! was reached, and that is often not its own cgroup's: a container runtime puts a limit on
//! a parent and leaves the children unlimited. [`chain`] reads limit, usage and counters of
//! the cgroup and every ancestor from cgroupfs at the time of the report, and
//! [`binding_limit`] names the level whose limit was the effective one.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::host::cgroups::{MemoryHierarchy, Version};

/// cgroup v1 reports "no limit" as the largest page-aligned `LONG_MAX`
/// (9223372036854771712 with 4 KiB pages, less with bigger pages). No real limit comes
/// anywhere near 2^62 bytes (4 EiB), so everything from there up means unlimited.
const V1_UNLIMITED_FROM: u64 = 1 << 62;

/// One cgroup of the chain, as read from cgroupfs. `None` means the file was missing or
/// unreadable (the root cgroup has few files), except for `limit_bytes` where it also means
/// "no limit".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemcgLevel {
    /// Relative to the hierarchy's mount, `/` for the root.
    pub path: String,
    /// v1 `memory.limit_in_bytes`, v2 `memory.max`; `None` = unlimited.
    pub limit_bytes: Option<u64>,
    /// v1 `memory.usage_in_bytes`, v2 `memory.current`.
    pub usage_bytes: Option<u64>,
    /// v1 `memory.max_usage_in_bytes`, v2 `memory.peak` (Linux 5.19+): the high-water mark,
    /// which shows how close to the limit the cgroup got even after the kill freed memory.
    pub peak_bytes: Option<u64>,
    /// v1 `oom_kill` of `memory.oom_control` (this cgroup only); v2 `oom_kill` of
    /// `memory.events` (this cgroup and its descendants, unless cgroup2 is mounted with
    /// memory_localevents).
    pub oom_kills: Option<u64>,
    /// v1 `memory.failcnt` (times usage hit the limit); v2 the `max` line of `memory.events`
    /// (times usage was about to exceed `memory.max`), its nearest equivalent.
    pub failcnt: Option<u64>,
}

/// The cgroup at `path` (relative to the hierarchy, as in events and /proc/PID/cgroup) and
/// every ancestor up to the root, innermost first.
///
/// Returns an empty chain for a path with `..` components: paths come from the kernel and
/// never have them, and reading outside the hierarchy would be wrong evidence.
pub fn chain(hierarchy: &MemoryHierarchy, path: &str) -> Vec<MemcgLevel> {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if parts.contains(&"..") {
        return Vec::new();
    }
    (0..=parts.len())
        .rev()
        .map(|depth| {
            let rel = parts[..depth].join("/");
            let dir = hierarchy.mount.join(&rel);
            read_level(hierarchy.version, &dir, format!("/{rel}"))
        })
        .collect()
}

/// The level whose limit was the effective one: the smallest limit along the chain (the
/// innermost of equal ones). `None` when no level has a limit.
///
/// Ancestors' limits apply to all descendants (v2 always, v1 with `use_hierarchy`, which is
/// forced on since Linux 5.11 and the default of every init system before that).
pub fn binding_limit(chain: &[MemcgLevel]) -> Option<&MemcgLevel> {
    chain
        .iter()
        .filter_map(|l| l.limit_bytes.map(|limit| (limit, l)))
        .min_by_key(|(limit, _)| *limit)
        .map(|(_, l)| l)
}

fn read_level(version: Version, dir: &Path, path: String) -> MemcgLevel {
    match version {
        Version::V1 => MemcgLevel {
            path,
            limit_bytes: read_u64(dir, "memory.limit_in_bytes").filter(|&l| l < V1_UNLIMITED_FROM),
            usage_bytes: read_u64(dir, "memory.usage_in_bytes"),
            peak_bytes: read_u64(dir, "memory.max_usage_in_bytes"),
            oom_kills: read_keyed(dir, "memory.oom_control", "oom_kill"),
            failcnt: read_u64(dir, "memory.failcnt"),
        },
        Version::V2 => MemcgLevel {
            path,
            // "max" (no limit) does not parse and becomes None, as intended.
            limit_bytes: read_u64(dir, "memory.max"),
            usage_bytes: read_u64(dir, "memory.current"),
            peak_bytes: read_u64(dir, "memory.peak"),
            oom_kills: read_keyed(dir, "memory.events", "oom_kill"),
            failcnt: read_keyed(dir, "memory.events", "max"),
        },
    }
}

/// A file holding one number.
fn read_u64(dir: &Path, file: &str) -> Option<u64> {
    std::fs::read_to_string(dir.join(file))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The number after `key` in a flat-keyed file (`key value` lines).
fn read_keyed(dir: &Path, file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join(file)).ok()?;
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some(key))
            .then(|| words.next()?.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    const MIB: u64 = 1024 * 1024;
    const V1_NO_LIMIT: &str = "9223372036854771712\n";

    use crate::testutil::TempDir;

    #[test]
    fn v1_chain_and_binding_ancestor() {
        let t = TempDir::new("v1");
        // Root: unlimited, with the few files a v1 root has.
        t.write("memory.limit_in_bytes", V1_NO_LIMIT);
        t.write("memory.usage_in_bytes", "4000000000\n");
        // /parent: 512 MiB, hit 3 times, one OOM kill.
        t.write("parent/memory.limit_in_bytes", &format!("{}\n", 512 * MIB));
        t.write("parent/memory.usage_in_bytes", &format!("{}\n", 500 * MIB));
        t.write(
            "parent/memory.max_usage_in_bytes",
            &format!("{}\n", 512 * MIB),
        );
        t.write("parent/memory.failcnt", "3\n");
        t.write(
            "parent/memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        );
        // /parent/child: a larger own limit, so the parent's is the binding one.
        t.write(
            "parent/child/memory.limit_in_bytes",
            &format!("{}\n", 1024 * MIB),
        );
        t.write(
            "parent/child/memory.usage_in_bytes",
            &format!("{}\n", 300 * MIB),
        );
        t.write(
            "parent/child/memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
        );
        let h = MemoryHierarchy {
            version: Version::V1,
            mount: t.0.clone(),
        };
        let c = chain(&h, "/parent/child");
        let paths: Vec<&str> = c.iter().map(|l| l.path.as_str()).collect();
        assert_eq!(paths, ["/parent/child", "/parent", "/"]);
        assert_eq!(c[0].limit_bytes, Some(1024 * MIB));
        assert_eq!(c[0].usage_bytes, Some(300 * MIB));
        assert_eq!(c[0].oom_kills, Some(0));
        assert_eq!(c[0].peak_bytes, None);
        assert_eq!(
            c[1],
            MemcgLevel {
                path: "/parent".to_string(),
                limit_bytes: Some(512 * MIB),
                usage_bytes: Some(500 * MIB),
                peak_bytes: Some(512 * MIB),
                oom_kills: Some(1),
                failcnt: Some(3),
            }
        );
        assert_eq!(c[2].limit_bytes, None, "LONG_MAX means unlimited");
        assert_eq!(c[2].usage_bytes, Some(4_000_000_000));
        assert_eq!(c[2].oom_kills, None);
        assert_eq!(binding_limit(&c).map(|l| l.path.as_str()), Some("/parent"));

        // Same chain whatever the spelling of the path.
        assert_eq!(chain(&h, "parent/child/"), c);
        assert_eq!(chain(&h, "/parent/../etc"), Vec::new());
        let root = chain(&h, "/");
        assert_eq!(root.len(), 1);
        assert_eq!(root[0].path, "/");
        assert_eq!(binding_limit(&root), None);
    }

    #[test]
    fn v2_chain() {
        let t = TempDir::new("v2");
        // The v2 root has none of these files.
        t.write("user.slice/memory.max", "max\n");
        t.write("user.slice/memory.current", "123456\n");
        t.write(
            "user.slice/memory.events",
            "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
        );
        t.write("user.slice/job/memory.max", &format!("{}\n", 64 * MIB));
        t.write("user.slice/job/memory.current", &format!("{}\n", 63 * MIB));
        t.write("user.slice/job/memory.peak", &format!("{}\n", 64 * MIB));
        t.write(
            "user.slice/job/memory.events",
            "low 0\nhigh 0\nmax 17\noom 2\noom_kill 2\noom_group_kill 0\n",
        );
        let h = MemoryHierarchy {
            version: Version::V2,
            mount: t.0.clone(),
        };
        let c = chain(&h, "/user.slice/job");
        assert_eq!(c.len(), 3);
        assert_eq!(
            c[0],
            MemcgLevel {
                path: "/user.slice/job".to_string(),
                limit_bytes: Some(64 * MIB),
                usage_bytes: Some(63 * MIB),
                peak_bytes: Some(64 * MIB),
                oom_kills: Some(2),
                failcnt: Some(17),
            }
        );
        assert_eq!(c[1].limit_bytes, None, "\"max\" means unlimited");
        assert_eq!(c[1].usage_bytes, Some(123_456));
        assert_eq!(c[1].peak_bytes, None, "memory.peak is absent before 5.19");
        assert_eq!(c[1].oom_kills, Some(0));
        assert_eq!(
            c[2],
            MemcgLevel {
                path: "/".to_string(),
                limit_bytes: None,
                usage_bytes: None,
                peak_bytes: None,
                oom_kills: None,
                failcnt: None,
            }
        );
        assert_eq!(
            binding_limit(&c).map(|l| l.path.as_str()),
            Some("/user.slice/job")
        );
        let json = serde_json::to_value(&c[1]).unwrap();
        assert!(json["limit_bytes"].is_null());
        assert_eq!(json["usage_bytes"], 123_456);
    }

    #[test]
    fn binding_limit_prefers_the_innermost_of_equal_limits() {
        let level = |path: &str, limit| MemcgLevel {
            path: path.to_string(),
            limit_bytes: limit,
            usage_bytes: None,
            peak_bytes: None,
            oom_kills: None,
            failcnt: None,
        };
        let c = [
            level("/a/b/c", None),
            level("/a/b", Some(100)),
            level("/a", Some(100)),
            level("/", None),
        ];
        assert_eq!(binding_limit(&c).map(|l| l.path.as_str()), Some("/a/b"));
        assert_eq!(binding_limit(&[]), None);
    }

    #[test]
    fn keyed_lines_need_an_exact_key() {
        let t = TempDir::new("keyed");
        t.write("f", "oom_kill_disable 1\noom_kill 4\n");
        assert_eq!(read_keyed(&t.0, "f", "oom_kill"), Some(4));
        assert_eq!(read_keyed(&t.0, "f", "oom"), None);
        assert_eq!(read_keyed(&t.0, "missing", "oom_kill"), None);
    }

    /// Removes the test cgroups (innermost first) even when an assertion fails.
    struct CgroupGuard(Vec<PathBuf>);

    impl Drop for CgroupGuard {
        fn drop(&mut self) {
            for dir in self.0.iter().rev() {
                if let Err(e) = std::fs::remove_dir(dir) {
                    eprintln!("could not remove {}: {e}", dir.display());
                }
            }
        }
    }

    #[test]
    fn smoke_real_v1_hierarchy() {
        let mount = Path::new("/sys/fs/cgroup/memory");
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        if !root || !mount.join("memory.limit_in_bytes").exists() {
            eprintln!(
                "skipped: needs root and a cgroup v1 memory hierarchy at {}",
                mount.display()
            );
            return;
        }
        let name = format!("cm-memcg-smoke-{}", std::process::id());
        let parent = mount.join(&name);
        let child = parent.join("inner");
        let mut guard = CgroupGuard(Vec::new());
        if let Err(e) = std::fs::create_dir(&parent) {
            eprintln!("skipped: cannot create {}: {e}", parent.display());
            return;
        }
        guard.0.push(parent.clone());
        std::fs::write(parent.join("memory.limit_in_bytes"), (64 * MIB).to_string()).unwrap();
        std::fs::create_dir(&child).unwrap();
        guard.0.push(child.clone());

        let h = MemoryHierarchy {
            version: Version::V1,
            mount: mount.to_path_buf(),
        };
        let c = chain(&h, &format!("/{name}/inner"));
        let paths: Vec<&str> = c.iter().map(|l| l.path.as_str()).collect();
        let parent_rel = format!("/{name}");
        assert_eq!(paths, [format!("/{name}/inner").as_str(), &parent_rel, "/"]);
        assert_eq!(c[0].limit_bytes, None, "the child has no limit of its own");
        assert_eq!(c[1].limit_bytes, Some(64 * MIB));
        // Empty, but the kernel charges the cgroup's own objects to it: small, not zero.
        assert!(c[1].usage_bytes.is_some_and(|u| u < 64 * MIB));
        assert_eq!(c[1].oom_kills, Some(0));
        assert_eq!(c[1].failcnt, Some(0));
        assert_eq!(c[2].limit_bytes, None);
        assert!(c[2].usage_bytes.is_some());
        assert_eq!(
            binding_limit(&c).map(|l| l.path.as_str()),
            Some(parent_rel.as_str())
        );
        drop(guard);
        assert!(!parent.exists());
    }
}
