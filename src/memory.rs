//! Keeping the daemon's footprint flat: one allocator arena for all threads, and freed
//! memory given back to the system after the rare operation that needs a lot of it at
//! once (listing a folder of 100,000 entries).
//!
//! glibc gives each thread that allocates under contention an arena of its own, and an
//! arena keeps what was freed in it. The work of a large listing is spread over several
//! threads (the parser, the store, the kernel request threads), so each `ls -l` of a
//! 100,000-entry folder left another 15 MiB resident in whichever arenas it used: 64 MiB
//! after the first, 209 MiB after the twelfth. With one arena and the memory given back
//! it stays at 5 MiB; the untar and cold-read benchmarks showed no cost.
//!
//! Here, in the binary, because it is the process's business (and libc's), not the
//! filesystem core's.

/// Makes every thread share one allocator arena. Call before any thread starts.
/// Elsewhere than glibc this does nothing.
pub fn one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; M_ARENA_MAX takes any positive value.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Returns the allocator's free memory to the system, so the peak of a large listing does
/// not stay resident (the drive calls it after one: `DriveOptions::give_back_memory`).
/// Elsewhere than glibc this does nothing.
pub fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
