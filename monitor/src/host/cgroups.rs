//! Memory cgroup ids to paths.
//!
//! The kernel programs report a memory cgroup by its kernfs id, which is the inode number of
//! the cgroup's directory in the hierarchy that holds the memory controller: the v1 `memory`
//! hierarchy (`/sys/fs/cgroup/memory`) or the unified v2 hierarchy. This module finds that
//! hierarchy from /proc/self/mountinfo and maps ids to paths relative to its root (the form
//! /proc/PID/cgroup uses), rescanning the tree when an id is unknown.

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

pub use crate::event::{CgroupVersion as Version, MemoryHierarchy};

impl MemoryHierarchy {
    /// From /proc/self/mountinfo: a v1 cgroup mount with the `memory` option, else a cgroup2
    /// mount whose root lists `memory` in cgroup.controllers.
    pub fn detect() -> Option<MemoryHierarchy> {
        let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        Self::from_mountinfo(&info, |mount| {
            std::fs::read_to_string(mount.join("cgroup.controllers"))
                .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"))
        })
    }

    pub(crate) fn from_mountinfo(
        info: &str,
        v2_has_memory: impl Fn(&Path) -> bool,
    ) -> Option<MemoryHierarchy> {
        let mut v2 = None;
        for line in info.lines() {
            // id parent maj:min root mountpoint options [optional...] - fstype source superopts
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let mountpoint = left.split_whitespace().nth(4);
            let mut right = right.split_whitespace();
            let (fstype, superopts) = (right.next(), right.nth(1));
            let Some(mountpoint) = mountpoint.map(unescape) else {
                continue;
            };
            match fstype {
                Some("cgroup")
                    if superopts.is_some_and(|o| o.split(',').any(|o| o == "memory")) =>
                {
                    return Some(MemoryHierarchy {
                        version: Version::V1,
                        mount: PathBuf::from(mountpoint),
                    });
                }
                Some("cgroup2") if v2.is_none() && v2_has_memory(Path::new(&mountpoint)) => {
                    v2 = Some(MemoryHierarchy {
                        version: Version::V2,
                        mount: PathBuf::from(mountpoint),
                    });
                }
                _ => {}
            }
        }
        v2
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` (octal).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && let Some(v) = b
                .get(i + 1..i + 4)
                .and_then(|o| std::str::from_utf8(o).ok())
                .and_then(|o| u8::from_str_radix(o, 8).ok())
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Directories a scan of the hierarchy visits at most, and how deep: a user with a
/// delegated subtree can create cgroups, and a scan runs on the event loop.
const SCAN_MAX_DIRS: usize = 65_536;
const SCAN_MAX_DEPTH: usize = 32;

/// Maps memory cgroup ids to paths, with a cache.
///
/// An id not in the cache is looked for by one scan of the hierarchy, and only when it can
/// be found: the record naming it must be younger than the last scan. A cgroup that
/// existed when the record was made and was not found by a scan started after that was
/// removed meanwhile, and scanning again will not find it; so a storm of records with
/// unknown ids costs one scan per batch of cgroups created, not one per record.
pub struct Resolver {
    hierarchy: Option<MemoryHierarchy>,
    paths: HashMap<u64, String>,
    /// `CLOCK_BOOTTIME` when the last scan started.
    scanned_at: Option<u64>,
    scans: u64,
}

impl Resolver {
    pub fn new(hierarchy: Option<MemoryHierarchy>) -> Resolver {
        Resolver {
            hierarchy,
            paths: HashMap::new(),
            scanned_at: None,
            scans: 0,
        }
    }

    /// The path relative to the hierarchy root (`/` for the root) of the cgroup with this
    /// id in a record made at `at_ns` (`CLOCK_BOOTTIME`), or `None` when the id is not (or
    /// no longer) a directory of the hierarchy.
    pub fn path(&mut self, id: u64, at_ns: u64) -> Option<String> {
        if let Some(p) = self.paths.get(&id) {
            return Some(p.clone());
        }
        let mount = self.hierarchy.as_ref()?.mount.clone();
        if self.scanned_at.is_some_and(|t| at_ns < t) {
            return None;
        }
        self.scanned_at = Some(crate::host::clock::boottime_ns());
        self.scans += 1;
        self.paths.clear();
        let mut budget = SCAN_MAX_DIRS;
        scan(&mount, &mount, 0, &mut budget, &mut self.paths);
        if budget == 0 {
            tracing::debug!(
                "memory cgroup hierarchy has over {SCAN_MAX_DIRS} directories: scanned the first"
            );
        }
        self.paths.get(&id).cloned()
    }

    /// Full scans of the hierarchy so far.
    pub fn scans(&self) -> u64 {
        self.scans
    }
}

fn scan(root: &Path, dir: &Path, depth: usize, budget: &mut usize, out: &mut HashMap<u64, String>) {
    if *budget == 0 || depth > SCAN_MAX_DEPTH {
        return;
    }
    *budget -= 1;
    // cgroupfs has no symlinks; `symlink_metadata` all the same.
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let rel = dir.strip_prefix(root).unwrap_or(Path::new(""));
    out.insert(meta.ino(), format!("/{}", rel.display()));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            scan(root, &entry.path(), depth + 1, budget, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = "\
30 24 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
33 30 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
36 30 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
";
    const V2: &str = "\
30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn finds_the_memory_hierarchy() {
        assert_eq!(
            MemoryHierarchy::from_mountinfo(V1, |_| true),
            Some(MemoryHierarchy {
                version: Version::V1,
                mount: PathBuf::from("/sys/fs/cgroup/memory")
            })
        );
        assert_eq!(
            MemoryHierarchy::from_mountinfo(V2, |_| true),
            Some(MemoryHierarchy {
                version: Version::V2,
                mount: PathBuf::from("/sys/fs/cgroup")
            })
        );
        assert_eq!(MemoryHierarchy::from_mountinfo(V2, |_| false), None);
        assert_eq!(MemoryHierarchy::from_mountinfo("garbage\n", |_| true), None);
    }

    #[test]
    fn unescapes_mount_points() {
        assert_eq!(unescape(r"/mnt/a\040b"), "/mnt/a b");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape(r"/x\"), r"/x\");
    }

    #[test]
    fn resolves_ids_in_a_directory_tree() {
        let root = std::env::temp_dir().join(format!("cm-cgroups-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("a/b")).expect("mkdir");
        let id = std::fs::metadata(root.join("a/b")).expect("stat").ino();
        let root_id = std::fs::metadata(&root).expect("stat").ino();
        let mut r = Resolver::new(Some(MemoryHierarchy {
            version: Version::V1,
            mount: root.clone(),
        }));
        let now = crate::host::clock::boottime_ns;
        assert_eq!(r.path(id, now()).as_deref(), Some("/a/b"));
        assert_eq!(r.path(root_id, now()).as_deref(), Some("/"));
        assert_eq!(r.scans(), 1, "the second id was in the first scan");
        // A cgroup created after the scan, named by a record made after it: found.
        std::fs::create_dir_all(root.join("a/c")).expect("mkdir");
        let c = std::fs::metadata(root.join("a/c")).expect("stat").ino();
        assert_eq!(r.path(c, now()).as_deref(), Some("/a/c"));
        assert_eq!(r.scans(), 2);
        // Records older than the last scan with ids it did not find (a storm of them):
        // the cgroups were gone by then; no more scans.
        let before = now() - 1_000_000;
        for gone in 1..=1000 {
            assert_eq!(r.path(u64::MAX - gone, before), None);
        }
        assert_eq!(r.scans(), 2);
        std::fs::remove_dir_all(&root).expect("cleanup");
        assert_eq!(Resolver::new(None).path(id, now()), None);
    }

    #[test]
    fn a_scan_is_bounded() {
        let root = std::env::temp_dir().join(format!("cm-cgroups-deep-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let deep = (0..SCAN_MAX_DEPTH + 5).fold(root.clone(), |p, i| p.join(i.to_string()));
        std::fs::create_dir_all(&deep).expect("mkdir");
        let id = std::fs::metadata(&deep).expect("stat").ino();
        let mut r = Resolver::new(Some(MemoryHierarchy {
            version: Version::V1,
            mount: root.clone(),
        }));
        assert_eq!(
            r.path(id, crate::host::clock::boottime_ns()),
            None,
            "too deep"
        );
        assert!(r.paths.len() <= SCAN_MAX_DEPTH + 1, "{}", r.paths.len());
        std::fs::remove_dir_all(&root).expect("cleanup");
    }
}
