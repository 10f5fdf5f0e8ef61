//! A global allocator that counts the live heap, for the end-to-end harness: peak RSS says
//! what the process took from the system (including what the allocator keeps after a free),
//! the live heap's peak says what the program held at its busiest moment.
//!
//! Counting is off until [`enable`] is called: while off, an allocation costs one relaxed
//! load more than the system allocator's.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicIsize};

static ON: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

/// The system allocator, counting the bytes it has handed out and not taken back once
/// [`enable`]d. Install with `#[global_allocator]`.
pub struct CountingAlloc;

fn grew(by: usize) {
    let live = LIVE.fetch_add(by as isize, Relaxed) + by as isize;
    if live > PEAK.load(Relaxed) {
        PEAK.fetch_max(live, Relaxed);
    }
}

fn shrank(by: usize) {
    LIVE.fetch_sub(by as isize, Relaxed);
}

// SAFETY: every call goes to `System` with the caller's arguments unchanged; the counting
// touches only atomics.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ON.load(Relaxed) {
            grew(layout.size());
        }
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if ON.load(Relaxed) {
            grew(layout.size());
        }
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ON.load(Relaxed) {
            shrank(layout.size());
        }
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ON.load(Relaxed) {
            if new_size > layout.size() {
                grew(new_size - layout.size());
            } else {
                shrank(layout.size() - new_size);
            }
        }
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Starts counting. What was allocated before is not counted, and its frees later lower the
/// count below the truth by at most that much: call it first thing in `main`.
pub fn enable() {
    ON.store(true, Relaxed);
}

/// The largest live heap seen since [`enable`], in bytes.
pub fn peak_bytes() -> usize {
    PEAK.load(Relaxed).max(0) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[global_allocator]
    static ALLOC: CountingAlloc = CountingAlloc;

    #[test]
    fn the_peak_covers_what_was_held_at_once() {
        use std::hint::black_box;
        const MIB: isize = 1 << 20;
        enable();
        let before = LIVE.load(Relaxed);
        // The other tests of this binary run meanwhile and may free a little memory they
        // took before `enable` (lowering the count); the checks leave 8 MiB for that.
        // `black_box`: an optimised build (`cargo bench` runs these tests too) may otherwise
        // leave out allocations it can prove unused.
        let held: Vec<Vec<u8>> = (0..8).map(|_| black_box(vec![1u8; 8 << 20])).collect();
        let held = black_box(held);
        assert!(LIVE.load(Relaxed) - before >= 56 * MIB);
        assert!(peak_bytes() as isize - before >= 56 * MIB);
        // One of them grown in place of all eight: the peak follows a `realloc` too.
        let mut grown = held.into_iter().next().unwrap();
        grown.reserve_exact(120 << 20);
        let grown = black_box(grown);
        assert!(peak_bytes() as isize - before >= 120 * MIB);
        drop(grown);
        assert!(LIVE.load(Relaxed) - before < 8 * MIB);
    }
}
