//! glibc malloc settings, so that memory freed after a burst (thousands of connections
//! holding bodies or heads) goes back to the system instead of staying in the process.
//!
//! Left alone, glibc keeps freed memory: its mmap threshold rises to the largest block
//! freed (so 256 KiB body buffers move into the heap after the first one), each thread may
//! get its own arena (8 per core), and only the top of each heap is ever trimmed. Measured
//! on the release binary (docs/benchmarks.md, "Memory after a flood"), 2,000 connections
//! left 274 MB behind after they closed, more with every round.
//!
//! - [`tune`]: a fixed mmap threshold of [`MMAP_THRESHOLD`] (blocks that large are
//!   mapped on their own and unmapped when freed) and at most one arena per core.
//! - [`spawn_trimmer`]: once a second, when the resident size is more than
//!   [`TRIM_ABOVE_FLOOR`] above the lowest seen after a trim, `malloc_trim(0)` returns
//!   the free pages inside the heaps too. At ordinary sizes it does nothing.
//!
//! Elsewhere (musl, other systems) both do nothing.

use std::time::Duration;

/// Blocks of at least this many bytes get their own mapping, returned when freed.
pub const MMAP_THRESHOLD: usize = 64 * 1024;

/// Resident bytes above the post-trim floor beyond which the trimmer runs.
pub const TRIM_ABOVE_FLOOR: u64 = 16 << 20;

/// How often the trimmer looks at the resident size.
pub const TRIM_EVERY: Duration = Duration::from_secs(1);

/// Sets the mmap threshold and the arena count. Call before other threads start.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
        let arenas = libc::c_int::try_from(cores).unwrap_or(libc::c_int::MAX);
        let threshold = libc::c_int::try_from(MMAP_THRESHOLD).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only changes allocator parameters; both values are in range.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, threshold);
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}

/// The process's resident set size in bytes (`/proc/self/statm`), if readable.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages.saturating_mul(page_size()))
}

fn page_size() -> u64 {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: sysconf reads a constant of the system.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if let Ok(size) = u64::try_from(size)
            && size > 0
        {
            return size;
        }
    }
    4096
}

/// Starts the trimmer thread (see the module documentation).
pub fn spawn_trimmer() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let spawned = std::thread::Builder::new()
            .name("malloc-trim".into())
            .spawn(|| {
                let Some(mut floor) = resident_bytes() else {
                    return;
                };
                loop {
                    std::thread::sleep(TRIM_EVERY);
                    let Some(rss) = resident_bytes() else {
                        return;
                    };
                    if rss <= floor.saturating_add(TRIM_ABOVE_FLOOR) {
                        continue;
                    }
                    // SAFETY: malloc_trim takes the allocator's own locks; no pointer is
                    // passed.
                    unsafe {
                        libc::malloc_trim(0);
                    }
                    floor = floor.min(resident_bytes().unwrap_or(rss));
                }
            });
        if let Err(err) = spawned {
            tracing::warn!(error = %err, "could not start the malloc trimmer");
        }
    }
}
