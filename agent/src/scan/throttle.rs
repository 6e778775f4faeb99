//! Politeness: a byte-rate limit and low CPU/IO priority for background hashing, and giving
//! freed memory back.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket over bytes: at most `rate` bytes per second on average, bursts up to one
/// second's worth. Rate 0 means unlimited.
#[derive(Debug)]
pub struct Throttle {
    rate: u64,
    state: Mutex<(f64, Instant)>,
}

impl Throttle {
    pub fn new(rate: u64) -> Throttle {
        Throttle {
            rate,
            state: Mutex::new((rate as f64, Instant::now())),
        }
    }

    /// Takes `bytes` tokens, sleeping the calling thread as long as the rate requires.
    pub fn consume(&self, bytes: u64) {
        if self.rate == 0 {
            return;
        }
        let wait = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let rate = self.rate as f64;
            let refilled = state.0 + now.duration_since(state.1).as_secs_f64() * rate;
            state.0 = refilled.min(rate) - bytes as f64;
            state.1 = now;
            if state.0 < 0.0 {
                Duration::from_secs_f64(-state.0 / rate)
            } else {
                Duration::ZERO
            }
        };
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

/// Lowers the calling thread's CPU priority (nice 10) and IO priority (idle class), so
/// background hashing yields to the host's real work. Best effort: failures are ignored.
#[allow(unsafe_code)]
pub fn lower_thread_priority() {
    const IOPRIO_CLASS_IDLE: libc::c_long = 3;
    const IOPRIO_CLASS_SHIFT: libc::c_long = 13;
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    // SAFETY: plain syscalls on the calling thread (who = 0 means "this thread" on Linux); they
    // take integers only and touch no memory of ours.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0,
            IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT,
        );
    }
}

/// Makes every thread allocate from one malloc arena. glibc gives threads arenas of their
/// own (up to 8 per core), and memory freed in one arena is not reused by the others; the
/// agent's threads are few and seldom allocate at the same time, so contention is not worth
/// that. Call before starting threads.
#[allow(unsafe_code)]
pub fn single_malloc_arena() {
    // SAFETY: mallopt only sets an allocator parameter; it takes no pointers.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Hands freed heap memory back to the kernel. After start-up and after a rescan, the
/// allocator holds pages freed by transient buffers (the decompressed baseline, the walk);
/// glibc only returns them on its own when they sit at the top of the heap.
#[allow(unsafe_code)]
pub fn release_free_memory() {
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_enforced_after_the_burst() {
        let t = Throttle::new(1 << 20);
        let start = Instant::now();
        t.consume(1 << 20); // the burst
        t.consume(1 << 19); // half a second more
        assert!(
            start.elapsed() >= Duration::from_millis(450),
            "{:?}",
            start.elapsed()
        );
        let unlimited = Throttle::new(0);
        let start = Instant::now();
        unlimited.consume(u64::MAX);
        assert!(start.elapsed() < Duration::from_millis(100));
    }
}
