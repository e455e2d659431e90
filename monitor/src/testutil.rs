//! Test helpers shared by the unit tests (the crate has no tempfile dependency).

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

/// A fresh, empty directory under the system temp dir, removed on drop. The field is the
/// path.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "claude-monitor-test-{}-{tag}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `text` to `rel` under the directory (creating parents) and returns its path.
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.0.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent dir");
        }
        std::fs::write(&path, text).expect("write file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The unit tests' global allocator: the system's, counting per thread the bytes live and
/// their peak, so that a test can measure what the code it calls allocates while other
/// tests run on other threads ([`measure_peak`]).
pub struct CountingAlloc;

thread_local! {
    /// (bytes live, peak since the last reset) on this thread. Const-initialised `Cell`s
    /// need no allocation and no destructor, so the allocator may use them.
    static LIVE: std::cell::Cell<(isize, isize)> = const { std::cell::Cell::new((0, 0)) };
}

fn count(delta: isize) {
    // `try_with`: a thread being torn down has no slot any more; its frees go uncounted.
    let _ = LIVE.try_with(|c| {
        let (live, peak) = c.get();
        let live = live + delta;
        c.set((live, peak.max(live)));
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// counting touches only a thread-local `Cell`, never the allocation.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        let p = unsafe { std::alloc::System.alloc(layout) };
        if !p.is_null() {
            count(layout.size().cast_signed());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: the caller's contract for `dealloc` is passed on unchanged.
        unsafe { std::alloc::System.dealloc(ptr, layout) };
        count(-layout.size().cast_signed());
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc_zeroed` is passed on unchanged.
        let p = unsafe { std::alloc::System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size().cast_signed());
        }
        p
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        // SAFETY: the caller's contract for `realloc` is passed on unchanged.
        let p = unsafe { std::alloc::System.realloc(ptr, layout, new) };
        if !p.is_null() {
            count(new.cast_signed() - layout.size().cast_signed());
        }
        p
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Runs `f` and returns its result with the peak of bytes it held allocated at once on this
/// thread beyond what was live before (memory it allocated and kept counts; memory freed
/// on another thread is not seen).
pub fn measure_peak<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let (out, m) = measure(f);
    (out, m.peak)
}

/// What [`measure`] saw: the peak beyond what was live before, and what stayed allocated
/// after (negative when `f` freed more than it allocated).
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    pub peak: usize,
    pub retained: isize,
}

pub fn measure<T>(f: impl FnOnce() -> T) -> (T, Measured) {
    let base = LIVE.with(|c| {
        let (live, _) = c.get();
        c.set((live, live));
        live
    });
    let out = f();
    let (live, peak) = LIVE.with(std::cell::Cell::get);
    let m = Measured {
        peak: (peak - base).max(0).cast_unsigned(),
        retained: live - base,
    };
    (out, m)
}

#[test]
fn the_counting_allocator_sees_a_big_allocation() {
    let ((), peak) = measure_peak(|| {
        let v = vec![1u8; 3 << 20];
        std::hint::black_box(&v);
    });
    assert!(peak >= 3 << 20, "peak {peak}");
    let ((), small) = measure_peak(|| ());
    assert!(small < 4096, "nothing allocated, peak {small}");
}
