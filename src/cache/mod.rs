//! The on-disk cache of mirrors: blobs named by their digest, written
//! through [`fill`] (hashed, committed only when they match), read with a
//! pin that keeps eviction away, and bounded by `max_size` with
//! least-recently-used eviction. Manifests, tags and links are in
//! [`records`].
//!
//! ```text
//! <dir>/blobs/sha256/ab/ab12…   committed content
//! <dir>/tmp/<hex>.<pid>.<n>.part fills in progress (removed at open when their process is gone)
//! <dir>/manifests/<hex>          media type line, then the manifest
//! <dir>/tags/<key>               digest and media type; mtime: last validated
//! ```
//!
//! A store is opened once per directory per process and shared by every
//! registry (and every configuration generation) that names it.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::metrics::mirror as metrics;

mod digest;
pub mod fill;
mod records;

pub use digest::Digest;
pub use fill::{Fill, FillHead, FillState, FillWriter, FinishError, Progress};
pub use records::TagRecord;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_size: u64,
    pub fsync: bool,
}

#[derive(Debug)]
struct Entry {
    size: u64,
    /// Last use, in nanoseconds since the epoch (mtime after a restart).
    tick: u64,
    pins: u32,
}

#[derive(Debug, Default)]
struct Index {
    entries: HashMap<Digest, Entry>,
    total: u64,
}

#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    label: String,
    max_size: AtomicU64,
    fsync: std::sync::atomic::AtomicBool,
    index: Mutex<Index>,
    fills: Mutex<HashMap<Digest, Arc<Fill>>>,
    records: records::Records,
    seq: AtomicU64,
    /// Digests whose upstream content did not match, until when they are refused.
    mismatched: Mutex<HashMap<Digest, Instant>>,
}

static STORES: LazyLock<Mutex<HashMap<PathBuf, Weak<Store>>>> = LazyLock::new(Default::default);

/// A committed blob, pinned while this is held.
#[derive(Debug)]
pub struct Cached {
    pub file: File,
    pub size: u64,
    _pin: Pin,
}

#[derive(Debug)]
struct Pin {
    store: Arc<Store>,
    digest: Digest,
}

impl Drop for Pin {
    fn drop(&mut self) {
        let over = {
            let mut index = self.store.index.lock().expect("index lock");
            if let Some(e) = index.entries.get_mut(&self.digest) {
                e.pins = e.pins.saturating_sub(1);
            }
            index.total > self.store.max_size.load(Ordering::Relaxed)
        };
        if over {
            self.store.evict();
        }
    }
}

/// What a request for a blob finds.
pub enum Lookup {
    Cached(Cached),
    /// A download is running: follow it.
    Follow(Arc<Fill>),
    /// Nobody has it: download it with this writer.
    Lead(FillWriter, Arc<Fill>),
}

fn now_tick() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn process_alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists.
    pid != std::process::id() && unsafe { libc::kill(pid as libc::pid_t, 0) } == 0
}

impl Store {
    /// The store of `dir`, opened (and indexed) on first use.
    pub fn open(dir: &Path, limits: Limits) -> std::io::Result<Arc<Store>> {
        // One store per directory, however it is spelled (symlinks, `..`).
        std::fs::create_dir_all(dir)?;
        let dir = &dir.canonicalize()?;
        let mut stores = STORES.lock().expect("stores lock");
        if let Some(store) = stores.get(dir).and_then(Weak::upgrade) {
            store.set_limits(limits);
            return Ok(store);
        }
        let store = Arc::new(Store::create(dir, limits)?);
        stores.insert(dir.to_owned(), Arc::downgrade(&store));
        Ok(store)
    }

    fn create(dir: &Path, limits: Limits) -> std::io::Result<Store> {
        let started = Instant::now();
        for sub in ["blobs/sha256", "tmp", "manifests", "tags"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        // Fills of a process that died (or of an earlier process with our pid).
        for entry in std::fs::read_dir(dir.join("tmp"))?.flatten() {
            let name = entry.file_name();
            let pid = name
                .to_str()
                .and_then(|n| n.split('.').nth(1))
                .and_then(|p| p.parse().ok());
            if !pid.is_some_and(process_alive) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        // Records half-written when a process died (see `records`).
        for sub in ["manifests", "tags"] {
            for entry in std::fs::read_dir(dir.join(sub))?.flatten() {
                if entry.file_name().to_str().is_some_and(|n| n.ends_with(".tmp")) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        let mut index = Index::default();
        for shard in std::fs::read_dir(dir.join("blobs/sha256"))?.flatten() {
            for f in std::fs::read_dir(shard.path())?.flatten() {
                let Some(d) = f
                    .file_name()
                    .to_str()
                    .and_then(|n| Digest::parse(&format!("sha256:{n}")))
                else {
                    continue;
                };
                let Ok(meta) = f.metadata() else { continue };
                // A blob cut to nothing (a crash with `fsync: false`): not a blob.
                if meta.len() == 0 && d != Digest::of(b"") {
                    let _ = std::fs::remove_file(f.path());
                    continue;
                }
                let tick = meta.modified().ok().and_then(|m| m.duration_since(UNIX_EPOCH).ok());
                index.total += meta.len();
                index.entries.insert(
                    d,
                    Entry {
                        size: meta.len(),
                        tick: tick.map_or(0, |t| t.as_nanos() as u64),
                        pins: 0,
                    },
                );
            }
        }
        let label = dir.display().to_string();
        log::info!(
            "cache {label}: indexed {} blobs ({} bytes) in {} ms",
            index.entries.len(),
            index.total,
            started.elapsed().as_millis()
        );
        metrics::init_dir(&label);
        metrics::cache_size(&label, index.total);
        let store = Store {
            dir: dir.to_owned(),
            label,
            max_size: AtomicU64::new(limits.max_size),
            fsync: limits.fsync.into(),
            index: Mutex::new(index),
            fills: Mutex::new(HashMap::new()),
            records: records::Records::new(dir),
            seq: AtomicU64::new(0),
            mismatched: Mutex::new(HashMap::new()),
        };
        Ok(store)
    }

    pub fn set_limits(&self, limits: Limits) {
        self.max_size.store(limits.max_size, Ordering::Relaxed);
        self.fsync.store(limits.fsync, Ordering::Relaxed);
    }

    pub fn fsync(&self) -> bool {
        self.fsync.load(Ordering::Relaxed)
    }

    pub fn records(&self) -> &records::Records {
        &self.records
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        let hex = d.hex();
        self.dir.join("blobs/sha256").join(&hex[..2]).join(hex)
    }

    /// The committed blob, pinned; `None` when it is not cached.
    pub fn open_blob(self: &Arc<Self>, d: &Digest) -> Option<Cached> {
        let size = {
            let mut index = self.index.lock().expect("index lock");
            let e = index.entries.get_mut(d)?;
            e.pins += 1;
            e.tick = now_tick();
            e.size
        };
        let pin = Pin {
            store: self.clone(),
            digest: *d,
        };
        match File::open(self.blob_path(d)) {
            Ok(file) if file.metadata().is_ok_and(|m| m.len() == size) => Some(Cached { file, size, _pin: pin }),
            _ => {
                // Removed or truncated behind our back: forget it.
                drop(pin);
                self.forget(d);
                None
            }
        }
    }

    /// The size of a committed blob, without pinning it.
    pub fn blob_size(&self, d: &Digest) -> Option<u64> {
        self.index.lock().expect("index lock").entries.get(d).map(|e| e.size)
    }

    /// Whether a download of `d` is running.
    pub fn filling(&self, d: &Digest) -> bool {
        self.fills.lock().expect("fills lock").contains_key(d)
    }

    fn forget(&self, d: &Digest) {
        let mut index = self.index.lock().expect("index lock");
        if let Some(e) = index.entries.remove(d) {
            index.total -= e.size;
        }
    }

    /// The cached blob, the download in progress, or a new download.
    pub fn lookup(self: &Arc<Self>, d: &Digest) -> std::io::Result<Lookup> {
        if let Some(c) = self.open_blob(d) {
            return Ok(Lookup::Cached(c));
        }
        let mut fills = self.fills.lock().expect("fills lock");
        if let Some(f) = fills.get(d) {
            return Ok(Lookup::Follow(f.clone()));
        }
        // Committed between the two looks: commits happen under `fills`.
        if let Some(c) = self.open_blob(d) {
            return Ok(Lookup::Cached(c));
        }
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .dir
            .join("tmp")
            .join(format!("{}.{}.{n}.part", d.hex(), std::process::id()));
        let out = File::options().write(true).create_new(true).open(&tmp)?;
        let read = File::open(&tmp)?;
        let (writer, fill) = FillWriter::new(self.clone(), *d, tmp, out, read);
        fills.insert(*d, fill.clone());
        Ok(Lookup::Lead(writer, fill))
    }

    /// Renames a verified temporary file into place.
    fn place(&self, tmp: &Path, d: &Digest) -> std::io::Result<()> {
        let path = self.blob_path(d);
        std::fs::create_dir_all(path.parent().expect("blob paths have a parent"))?;
        std::fs::rename(tmp, &path)
    }

    fn committed(&self, fill: &Arc<Fill>, size: u64) {
        let over = {
            let mut fills = self.fills.lock().expect("fills lock");
            fills.remove(&fill.digest);
            let mut index = self.index.lock().expect("index lock");
            let tick = now_tick();
            if index
                .entries
                .insert(fill.digest, Entry { size, tick, pins: 0 })
                .is_none()
            {
                index.total += size;
            }
            metrics::cache_size(&self.label, index.total);
            index.total > self.max_size.load(Ordering::Relaxed)
        };
        if over {
            self.evict();
        }
    }

    fn abandoned(&self, fill: &Arc<Fill>) {
        let mut fills = self.fills.lock().expect("fills lock");
        if fills.get(&fill.digest).is_some_and(|f| Arc::ptr_eq(f, fill)) {
            fills.remove(&fill.digest);
        }
    }

    /// Removes least recently used blobs nobody reads until the cache is
    /// at 95 % of `max_size`. Pinned blobs stay; they go in a later round.
    pub fn evict(&self) {
        let max = self.max_size.load(Ordering::Relaxed);
        let low = max / 20 * 19;
        let victims: Vec<(Digest, u64)> = {
            let mut index = self.index.lock().expect("index lock");
            if index.total <= max {
                return;
            }
            let mut candidates: Vec<(u64, Digest, u64)> = (index.entries.iter())
                .filter(|(_, e)| e.pins == 0)
                .map(|(d, e)| (e.tick, *d, e.size))
                .collect();
            candidates.sort_unstable();
            let mut out = Vec::new();
            for (_, d, size) in candidates {
                if index.total <= low {
                    break;
                }
                index.entries.remove(&d);
                index.total -= size;
                out.push((d, size));
            }
            metrics::cache_size(&self.label, index.total);
            out
        };
        for (d, size) in victims {
            if let Err(e) = std::fs::remove_file(self.blob_path(&d)) {
                log::warn!("cache {}: could not remove {d}: {e}", self.label);
            }
            metrics::evicted(&self.label, size);
        }
    }

    pub fn max_size(&self) -> u64 {
        self.max_size.load(Ordering::Relaxed)
    }

    pub fn size(&self) -> u64 {
        self.index.lock().expect("index lock").total
    }

    /// A digest whose upstream content did not match is refused for a while.
    pub fn mismatch(&self, d: Digest, backoff: std::time::Duration) {
        self.mismatched
            .lock()
            .expect("mismatch lock")
            .insert(d, Instant::now() + backoff);
    }

    pub fn refused(&self, d: &Digest) -> bool {
        let mut m = self.mismatched.lock().expect("mismatch lock");
        match m.get(d) {
            Some(until) if Instant::now() < *until => true,
            Some(_) => {
                m.remove(d);
                false
            }
            None => false,
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }
}

#[cfg(test)]
mod tests;
