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
    time::{Duration, Instant},
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

    fn from_mountinfo(
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

/// Minimum time between two full rescans for the same unknown id (a removed cgroup's id
/// stays unknown; a new cgroup's id is found by the first rescan after its creation).
const RESCAN_INTERVAL: Duration = Duration::from_millis(200);
/// Bound on the remembered misses.
const MISSES_MAX: usize = 1024;

/// Maps memory cgroup ids to paths, with a cache.
pub struct Resolver {
    hierarchy: Option<MemoryHierarchy>,
    paths: HashMap<u64, String>,
    /// Ids not found, with when they were last looked for.
    misses: HashMap<u64, Instant>,
}

impl Resolver {
    pub fn new(hierarchy: Option<MemoryHierarchy>) -> Resolver {
        Resolver {
            hierarchy,
            paths: HashMap::new(),
            misses: HashMap::new(),
        }
    }

    /// The cgroup's path relative to the hierarchy root (`/` for the root), or `None` when
    /// the id is not (or no longer) a directory of the hierarchy.
    pub fn path(&mut self, id: u64) -> Option<String> {
        if let Some(p) = self.paths.get(&id) {
            return Some(p.clone());
        }
        let mount = self.hierarchy.as_ref()?.mount.clone();
        if self
            .misses
            .get(&id)
            .is_some_and(|t| t.elapsed() < RESCAN_INTERVAL)
        {
            return None;
        }
        self.paths.clear();
        scan(&mount, &mount, &mut self.paths);
        let found = self.paths.get(&id).cloned();
        if found.is_none() {
            if self.misses.len() >= MISSES_MAX {
                self.misses.clear();
            }
            self.misses.insert(id, Instant::now());
        }
        found
    }
}

fn scan(root: &Path, dir: &Path, out: &mut HashMap<u64, String>) {
    let Ok(meta) = std::fs::metadata(dir) else {
        return;
    };
    let rel = dir.strip_prefix(root).unwrap_or(Path::new(""));
    out.insert(meta.ino(), format!("/{}", rel.display()));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            scan(root, &entry.path(), out);
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
        assert_eq!(r.path(id).as_deref(), Some("/a/b"));
        assert_eq!(r.path(root_id).as_deref(), Some("/"));
        std::fs::remove_dir_all(&root).expect("cleanup");
        assert_eq!(Resolver::new(None).path(id), None);
    }
}
