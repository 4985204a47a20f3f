//! Committed cache files mapped into memory, so a hit is written to the
//! client straight from the page cache: one copy (into the socket) instead
//! of a read into a buffer and a write out of it.
//!
//! Only committed blobs are mapped. The cache never truncates or rewrites
//! them (eviction unlinks, which leaves a mapping valid), so the pages a
//! mapping covers always exist: reading past the end of a truncated file
//! would be SIGBUS. Nothing else may modify files under `cache.dir`.

use std::fs::File;
use std::os::fd::AsRawFd;

use bytes::Bytes;

struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: a read-only shared mapping; no interior mutability.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes until `drop`.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `map` mapped, once.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

/// The first `len` bytes of `file` (which has at least that many).
pub fn map(file: &File, len: u64) -> std::io::Result<Bytes> {
    if len == 0 {
        return Ok(Bytes::new());
    }
    let len = usize::try_from(len).map_err(std::io::Error::other)?;
    // SAFETY: a fresh read-only mapping of a file we hold open.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: advice on the mapping just made.
    unsafe { libc::madvise(ptr, len, libc::MADV_SEQUENTIAL) };
    Ok(Bytes::from_owner(Mapping { ptr, len }))
}

/// Asks the kernel to read `range` of a mapping ahead, so the writer does
/// not wait on the disk for it.
pub fn will_need(all: &Bytes, start: usize, end: usize) {
    // SAFETY: sysconf has no preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
        .unwrap_or(4096)
        .max(1);
    let from = start / page * page;
    if from >= end {
        return;
    }
    // SAFETY: advice only, on pages inside the mapping.
    unsafe {
        libc::madvise(
            all.as_ptr().add(from) as *mut libc::c_void,
            end - from,
            libc::MADV_WILLNEED,
        )
    };
}
