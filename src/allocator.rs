//! The process allocator: mimalloc, called the way Rust's own `System`
//! allocator calls malloc.
//!
//! The `mimalloc` crate sends every allocation through `mi_malloc_aligned`.
//! In mimalloc 3 that path only has a fast case for blocks up to 1 KiB;
//! larger blocks whose size is not a power of two (Pingora's per-request
//! state, header buffers) take a slow over-allocating path even when they
//! only need word alignment. Every mimalloc block is word-aligned, so those
//! go to `mi_malloc` here, and only stricter alignments to the aligned entry
//! points.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

// In the C library libmimalloc-sys builds; its Rust declarations need the
// `extended` feature, which brings in much more than this.
unsafe extern "C" {
    fn mi_collect(force: bool);
}

/// How often freed memory whose purge delay has passed is handed back.
const PURGE_TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// Hands memory freed in bulk (a burst of connections closing) back to the
/// system even when the gateway then goes quiet.
///
/// mimalloc purges freed pages after a delay (1 s), but only from inside a
/// later allocation or free: an idle gateway kept its peak RSS (2,000
/// connections closing left 37 MiB against a 9 MiB start). Purging at once
/// (`purge_delay` 0) fixed that but cost about one page fault per small
/// request under steady load (7% more CPU), so instead this thread asks
/// for the due purges once a second; mimalloc's purge pass covers every
/// thread's freed pages, not only this thread's.
pub fn start_purger() {
    let spawned = std::thread::Builder::new().name("mem-purge".into()).spawn(|| {
        loop {
            std::thread::sleep(PURGE_TICK);
            // SAFETY: a plain call into the allocator, allowed from any thread.
            unsafe { mi_collect(false) }
        }
    });
    if let Err(e) = spawned {
        log::warn!("could not start the memory purge thread: {e}; freed memory returns to the system later");
    }
}

pub struct Mimalloc;

/// Alignment every mimalloc block has (one machine word).
const WORD: usize = std::mem::size_of::<usize>();

fn plain(layout: &Layout) -> bool {
    layout.align() <= WORD
}

// SAFETY: mimalloc returns blocks valid for the requested size and (with the
// word-alignment rule above) alignment, or null; blocks are freed by mi_free.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe {
            if plain(&layout) {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe {
            if plain(&layout) {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        unsafe {
            if plain(&layout) {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_have_the_alignment_asked_for() {
        let a = Mimalloc;
        for size in [1, 7, 8, 24, 100, 1000, 1500, 4000, 7000, 70_000, 3 << 20] {
            for align in [1, 2, 4, 8, 16, 64, 4096] {
                let layout = Layout::from_size_align(size, align).unwrap();
                unsafe {
                    let p = a.alloc(layout);
                    assert!(!p.is_null() && p as usize % align == 0, "size {size} align {align}");
                    p.write_bytes(0xab, size);
                    let q = a.realloc(p, layout, size * 2);
                    assert!(
                        !q.is_null() && q as usize % align == 0,
                        "realloc size {size} align {align}"
                    );
                    assert_eq!(*q.add(size - 1), 0xab);
                    a.dealloc(q, Layout::from_size_align(size * 2, align).unwrap());
                    let z = a.alloc_zeroed(layout);
                    assert!(!z.is_null() && z as usize % align == 0 && *z.add(size - 1) == 0);
                    a.dealloc(z, layout);
                }
            }
        }
    }
}
