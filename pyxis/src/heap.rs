//! How the process's heap hands memory back to the system.
//!
//! glibc's malloc serves a block of 128 KiB or more with its own mapping and unmaps it on
//! free, but after the first such free it raises that threshold to the freed size (up to
//! 32 MiB). From then on, large values (a 1 MiB put, a log entry, a history event) come
//! from the arenas, and when they are freed the arenas keep the pages: a node that had
//! held 300 MiB of overwritten values stayed about 60 MiB above what it still held, more
//! when the timing of its threads spread the blocks over more arenas. Fixing the threshold
//! at glibc's own starting value turns the adjustment off, so freed large blocks go back
//! to the system at once and the node's memory follows what it holds
//! (`store_watch::the_watch_history_is_bounded_by_bytes`).

/// Blocks at least this large get their own mapping: glibc's default before it adapts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 128 * 1024;

/// Fixes the large-block threshold (see the module doc). Call before threads start; does
/// nothing off glibc.
pub fn return_large_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter of the allocator; it is called before any
    // other thread exists.
    unsafe {
        // mallopt returns 0 on failure, which only leaves glibc's adaptive default.
        if libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 0 {
            tracing::warn!(
                "could not fix malloc's mmap threshold; freed large values may stay resident"
            );
        }
    }
}
