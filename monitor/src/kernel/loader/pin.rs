//! Pinning under bpffs, so the kernel keeps recording while no agent runs.
//!
//! Layout of the pin directory (default `/sys/fs/bpf/claude-monitor`): one file per map
//! (`EVENTS`, `WATCHED`, `SIGNAL_AGG`, `COUNTERS`, `CANDIDATES`, and the agent's own
//! `REPORTED` and `AGG_REPORTED`: what it last reported, see `reported`), per program
//! (`prog_<program>`) and per link (`link_<tracepoint>`), and `fingerprint-<hex>` (the ring
//! buffer pinned a second time under a name that records what the objects were built from:
//! the agent binary's kernel programs, the kernel offsets, the settings). An agent whose
//! fingerprint matches reopens the objects and reads the backlog; another one replaces them,
//! pinning its own first in the subdirectory `staging` (see [`staging_dir`]).

use std::{
    fs,
    os::{fd::AsRawFd as _, unix::ffi::OsStrExt as _},
    path::{Path, PathBuf},
};

use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, Map, MapData, RingBuf},
    programs::{BtfTracePoint, ProgramInfo, links::FdLink},
};

use super::{
    Counters, FINGERPRINT_PREFIX, KernelMaps, LoadError, Loaded, Reported, explain_program_error,
};
use crate::{
    event::{PinInfo, PinState, Unavailable},
    kernel::offsets::KernelLayout,
};

/// Maps pinned by name.
const MAPS: &[&str] = &[
    "EVENTS",
    "WATCHED",
    "SIGNAL_AGG",
    "COUNTERS",
    "CANDIDATES",
    "REPORTED",
    "AGG_REPORTED",
];

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

fn internal(what: impl std::fmt::Display) -> LoadError {
    LoadError::Internal(what.to_string())
}

fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: zeroed statfs is a valid out-parameter; `c` is a valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    (unsafe { libc::statfs(c.as_ptr(), &mut st) }) == 0 && st.f_type as i64 == BPF_FS_MAGIC
}

/// Where bpffs is mounted by convention, and the only place the agent mounts it itself.
pub const BPFFS: &str = "/sys/fs/bpf";

/// Makes sure the directory's parent is a mounted bpffs and creates the directory. A fresh
/// machine often lacks the mount: the agent mounts bpffs at [`BPFFS`], and nowhere else (a
/// pin directory elsewhere must already be on a bpffs: mounting over its parent would hide
/// what is there).
pub fn ensure_bpffs(dir: &Path) -> Result<(), LoadError> {
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or_else(|| internal(format!("pin directory {} has no parent", dir.display())))?;
    if !is_bpffs(parent) {
        if parent != Path::new(BPFFS) {
            return Err(LoadError::NotBpffs(dir.to_owned()));
        }
        fs::create_dir_all(parent)
            .map_err(|e| internal(format!("cannot create {}: {e}", parent.display())))?;
        let target = std::ffi::CString::new(parent.as_os_str().as_bytes())
            .map_err(|e| internal(format!("bad path {}: {e}", parent.display())))?;
        // SAFETY: valid C strings; a null data pointer is allowed for bpffs.
        let rc = unsafe {
            libc::mount(
                c"bpf".as_ptr(),
                target.as_ptr(),
                c"bpf".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(internal(format!(
                "{} is not a BPF filesystem and mounting one there failed ({}); mount it with \
                 `mount -t bpf bpf {}` (needs CAP_SYS_ADMIN) or set kernel.pin = false",
                parent.display(),
                std::io::Error::last_os_error(),
                parent.display()
            )));
        }
        crate::diag::bpffs_mounted(parent);
    }
    fs::create_dir_all(dir).map_err(|e| internal(format!("cannot create {}: {e}", dir.display())))
}

/// Takes the pin directory for this agent: an exclusive `flock` on the directory itself,
/// held as long as the returned file is open (the kernel drops it when the agent dies, so
/// a crashed daemon never leaves it taken).
pub fn lock(dir: &Path) -> Result<fs::File, LoadError> {
    let file =
        fs::File::open(dir).map_err(|e| internal(format!("cannot open {}: {e}", dir.display())))?;
    // SAFETY: flock on a valid open descriptor has no other precondition.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            LoadError::PinBusy(dir.to_owned())
        } else {
            internal(format!("cannot lock {}: {e}", dir.display()))
        });
    }
    Ok(file)
}

/// The subdirectory of the pin directory where a new version's (or configuration's) objects
/// are pinned before they replace the old ones.
pub const STAGING: &str = "staging";

/// Whether `name` is one this agent pins (maps, programs, links, the fingerprint): only
/// those are ever removed from a pin directory. The [`STAGING`] directory is not among
/// them: [`clear`] leaves it alone, [`remove`] empties and removes it.
fn ours(name: &str) -> bool {
    MAPS.contains(&name)
        || name.starts_with("prog_")
        || name.starts_with("link_")
        || name.starts_with(FINGERPRINT_PREFIX)
}

/// The fingerprint of the pinned objects, if any are pinned (only `dir` itself is looked at:
/// what is in [`STAGING`] was never committed).
pub fn pinned_fingerprint(dir: &Path) -> Option<String> {
    fs::read_dir(dir).ok()?.flatten().find_map(|e| {
        e.file_name()
            .to_str()
            .and_then(|n| n.strip_prefix(FINGERPRINT_PREFIX))
            .map(str::to_owned)
    })
}

/// Where a new version pins its objects before moving them into `dir`: `<dir>/staging`.
/// Inside the pin directory, so the move is a rename(2) within one mount: the systemd unit
/// makes only the pin directory writable, as a bind mount of its own, and a rename between
/// two mounts fails with EXDEV.
pub fn staging_dir(dir: &Path) -> PathBuf {
    dir.join(STAGING)
}

/// Where versions before the staging directory moved inside the pin directory staged: the
/// sibling `<dir>-staging`. Only `daemon --unpin` (and `uninstall`) still removes one, left
/// by an upgrade that crashed.
pub fn legacy_staging_dir(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push("-staging");
    dir.with_file_name(name)
}

/// Unpins this agent's objects in `dir` (which detaches pinned links nobody else holds),
/// leaving anything else there, the [`STAGING`] directory included. A missing directory is
/// fine.
pub fn clear(dir: &Path) -> Result<(), LoadError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(internal(format!("cannot read {}: {e}", dir.display()))),
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_str().is_some_and(ours) {
            continue;
        }
        let path = entry.path();
        fs::remove_file(&path)
            .map_err(|e| internal(format!("cannot unpin {}: {e}", path.display())))?;
    }
    Ok(())
}

/// Empties (of this agent's objects) and removes the [`STAGING`] directory of `dir`: what an
/// upgrade that crashed left there. Called before each staging, so a new version never
/// pins beside a dead one's objects.
pub fn remove_staging(dir: &Path) -> Result<(), LoadError> {
    clear_and_remove(&staging_dir(dir))
}

/// [`remove_staging`], [`clear`], then the directory itself when nothing else is left in
/// it.
pub fn remove(dir: &Path) -> Result<(), LoadError> {
    remove_staging(dir)?;
    clear_and_remove(dir)
}

fn clear_and_remove(dir: &Path) -> Result<(), LoadError> {
    clear(dir)?;
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        // Something that is not ours is in there: it stays, and so does the directory.
        Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => Ok(()),
        Err(e) => Err(internal(format!("cannot remove {}: {e}", dir.display()))),
    }
}

/// Pins the maps, programs and links of a freshly loaded object into `dir` (created).
pub(super) fn pin_objects(
    ebpf: &mut Ebpf,
    programs: &[(String, u32)],
    links: Vec<(&'static str, FdLink)>,
    dir: &Path,
) -> Result<(), LoadError> {
    fs::create_dir_all(dir)
        .map_err(|e| internal(format!("cannot create {}: {e}", dir.display())))?;
    for name in MAPS {
        let map = ebpf
            .map(name)
            .ok_or_else(|| internal(format!("map {name} missing")))?;
        map.pin(dir.join(name))
            .map_err(|e| internal(format!("cannot pin map {name}: {e}")))?;
    }
    for (name, _) in programs {
        let program: &mut BtfTracePoint = ebpf
            .program_mut(name)
            .ok_or_else(|| internal(format!("program {name} missing")))?
            .try_into()
            .map_err(|e| internal(format!("program {name}: {e}")))?;
        program
            .pin(dir.join(format!("prog_{name}")))
            .map_err(|e| internal(format!("cannot pin program {name}: {e}")))?;
    }
    for (tp, link) in links {
        link.pin(dir.join(format!("link_{tp}")))
            .map_err(|e| internal(format!("cannot pin the link of {tp}: {e}")))?;
    }
    Ok(())
}

/// Moves the objects pinned in [`staging_dir`] to `dir` and marks them with `fingerprint`
/// (last: a crash before it leaves no fingerprint, so the next start replaces them all).
pub(super) fn commit(dir: &Path, fingerprint: &str) -> Result<(), LoadError> {
    move_staged(dir)?;
    let ring = MapData::from_pin(dir.join("EVENTS"))
        .map_err(|e| internal(format!("cannot reopen the pinned ring buffer: {e}")))?;
    ring.pin(dir.join(format!("{FINGERPRINT_PREFIX}{fingerprint}")))
        .map_err(|e| internal(format!("cannot pin the fingerprint: {e}")))
}

/// Renames every entry of [`staging_dir`] into `dir` (one mount: see there), then removes
/// the empty staging directory.
fn move_staged(dir: &Path) -> Result<(), LoadError> {
    let staging = staging_dir(dir);
    let entries = fs::read_dir(&staging)
        .map_err(|e| internal(format!("cannot read {}: {e}", staging.display())))?;
    for entry in entries.flatten() {
        let to = dir.join(entry.file_name());
        fs::rename(entry.path(), &to)
            .map_err(|e| internal(format!("cannot move the pin to {}: {e}", to.display())))?;
    }
    let _ = fs::remove_dir(&staging);
    Ok(())
}

fn open_map(dir: &Path, name: &str) -> Result<MapData, String> {
    MapData::from_pin(dir.join(name)).map_err(|e| format!("map {name}: {e}"))
}

pub fn open_ring(dir: &Path) -> Result<RingBuf<MapData>, String> {
    RingBuf::try_from(Map::RingBuf(open_map(dir, "EVENTS")?)).map_err(|e| e.to_string())
}

/// Reopens pinned objects whose fingerprint matched.
pub(super) fn reopen(dir: &Path, layout: &KernelLayout) -> Result<Loaded, String> {
    let ring = open_ring(dir)?;
    let watched =
        BpfHashMap::try_from(Map::HashMap(open_map(dir, "WATCHED")?)).map_err(|e| e.to_string())?;
    let agg = BpfHashMap::try_from(Map::HashMap(open_map(dir, "SIGNAL_AGG")?))
        .map_err(|e| e.to_string())?;
    let counters = Counters::from_map(Map::PerCpuArray(open_map(dir, "COUNTERS")?))
        .map_err(|e| e.to_string())?;
    let reported = Reported::from_maps(
        Map::Array(open_map(dir, "REPORTED")?),
        Map::HashMap(open_map(dir, "AGG_REPORTED")?),
    )
    .map_err(|e| e.to_string())?;
    let mut attached = Vec::new();
    let mut unavailable = Vec::new();
    let mut programs = Vec::new();
    for hook in &layout.hooks {
        let tp = hook.tracepoint;
        if dir.join(format!("link_{tp}")).exists() {
            let info = ProgramInfo::from_pin(dir.join(format!("prog_{}", hook.program)))
                .map_err(|e| format!("program {}: {}", hook.program, explain_program_error(&e)))?;
            attached.push(tp);
            programs.push((hook.program.to_owned(), info.id()));
        } else {
            unavailable.push(Unavailable {
                hook: tp,
                reason: if hook.args.is_none() {
                    format!("this kernel has no tracepoint {tp} (no btf_trace_{tp} in BTF)")
                } else {
                    "not attached when the pinned programs were loaded".to_owned()
                },
            });
        }
    }
    if attached.is_empty() {
        return Err("no pinned link".into());
    }
    Ok(Loaded {
        _ebpf: None,
        layout: layout.clone(),
        attached,
        unavailable,
        maps: KernelMaps {
            ring: Some(ring),
            watched: Some(watched),
            agg: Some(agg),
            counters: Some(counters),
            reported: Some(reported),
        },
        previous_ring: None,
        pin_lock: None,
        pin: Some(PinInfo {
            dir: dir.to_owned(),
            state: PinState::Reused,
        }),
        programs,
        _links: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    /// Only this agent's names are ever removed; the directory stays while anything else is
    /// in it.
    #[test]
    fn only_our_objects_are_removed() {
        let t = TempDir::new("pin-remove");
        let dir = t.path().join("pins");
        fs::create_dir(&dir).unwrap();
        for name in [
            "EVENTS",
            "WATCHED",
            "prog_x",
            "link_sched_process_exit",
            "fingerprint-1",
        ] {
            fs::write(dir.join(name), "").unwrap();
        }
        fs::write(dir.join("precious.txt"), "keep").unwrap();
        remove(&dir).unwrap();
        let left: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, ["precious.txt"]);
        fs::remove_file(dir.join("precious.txt")).unwrap();
        remove(&dir).unwrap();
        assert!(!dir.exists());
        remove(&dir).unwrap();
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    /// The staging directory lives inside the pin directory: `clear` (between staging and
    /// committing) leaves it and what is pinned in it; `remove` (`--unpin`) takes it and its
    /// objects too, but nothing that is not ours; the fingerprint is never read from it.
    #[test]
    fn staging_is_inside_the_pin_directory() {
        let t = TempDir::new("pin-staging");
        let dir = t.path().join("pins");
        let staging = staging_dir(&dir);
        assert_eq!(staging, dir.join("staging"));
        fs::create_dir_all(&staging).unwrap();
        for name in ["EVENTS", "prog_x", "fingerprint-old"] {
            fs::write(dir.join(name), "").unwrap();
        }
        for name in [
            "EVENTS",
            "prog_x",
            "link_sched_process_exit",
            "fingerprint-new",
        ] {
            fs::write(staging.join(name), "").unwrap();
        }
        assert_eq!(pinned_fingerprint(&dir).as_deref(), Some("old"));
        clear(&dir).unwrap();
        assert_eq!(names(&dir), ["staging"]);
        assert_eq!(names(&staging).len(), 4);
        // Nothing committed: the staged fingerprint does not count.
        assert_eq!(pinned_fingerprint(&dir), None);
        fs::write(staging.join("precious.txt"), "keep").unwrap();
        remove(&dir).unwrap();
        assert_eq!(names(&staging), ["precious.txt"]);
        assert_eq!(names(&dir), ["staging"]);
        fs::remove_file(staging.join("precious.txt")).unwrap();
        remove(&dir).unwrap();
        assert!(!dir.exists());
        remove(&dir).unwrap();
    }

    /// What a crashed upgrade left in staging is removed before the next staging; the
    /// staged objects are then renamed into the pin directory and staging is gone.
    #[test]
    fn staged_objects_are_moved_in_place() {
        let t = TempDir::new("pin-commit");
        let dir = t.path().join("pins");
        let staging = staging_dir(&dir);
        fs::create_dir_all(&staging).unwrap();
        fs::write(staging.join("prog_left_by_a_crash"), "").unwrap();
        fs::write(dir.join("EVENTS"), "old").unwrap();
        remove_staging(&dir).unwrap();
        assert!(!staging.exists());
        assert_eq!(names(&dir), ["EVENTS"]);
        remove_staging(&dir).unwrap();

        fs::create_dir(&staging).unwrap();
        fs::write(staging.join("EVENTS"), "new").unwrap();
        fs::write(staging.join("prog_x"), "").unwrap();
        clear(&dir).unwrap();
        move_staged(&dir).unwrap();
        assert_eq!(names(&dir), ["EVENTS", "prog_x"]);
        assert_eq!(fs::read_to_string(dir.join("EVENTS")).unwrap(), "new");
    }

    #[test]
    fn legacy_staging_is_the_sibling() {
        assert_eq!(
            legacy_staging_dir(Path::new("/sys/fs/bpf/claude-monitor")),
            Path::new("/sys/fs/bpf/claude-monitor-staging")
        );
    }

    #[test]
    fn one_agent_per_pin_directory() {
        let t = TempDir::new("pin-lock");
        let first = lock(t.path()).unwrap();
        assert!(matches!(lock(t.path()), Err(LoadError::PinBusy(_))));
        drop(first);
        lock(t.path()).unwrap();
    }

    /// bpffs is mounted only at /sys/fs/bpf: a pin directory elsewhere that is not on a
    /// bpffs is refused, never mounted over.
    #[test]
    fn bpffs_is_never_mounted_elsewhere() {
        let t = TempDir::new("pin-where");
        let err = ensure_bpffs(&t.path().join("pins")).unwrap_err();
        assert!(matches!(err, LoadError::NotBpffs(_)), "{err}");
        assert!(err.to_string().contains("/sys/fs/bpf"), "{err}");
        assert!(!t.path().join("pins").exists());
    }
}
