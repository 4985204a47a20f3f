//! The small records of a cache directory: manifests (with their media
//! type), tags (digest, media type, when last validated) and links (which
//! repository of which upstream may read which digest). Files are written
//! to a temporary name and renamed, so a crash leaves the old record or
//! the new one.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use bytes::Bytes;
use sha2::Digest as _;

use super::Digest;

/// A tag as last seen upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRecord {
    pub digest: Digest,
    pub media_type: String,
    pub validated: SystemTime,
}

#[derive(Debug)]
pub struct Records {
    dir: PathBuf,
    tags: Mutex<HashMap<[u8; 16], TagRecord>>,
    links: Mutex<Links>,
}

/// Links in memory, and the append-only file that keeps them across
/// restarts (16 bytes each; a torn last record is ignored).
#[derive(Debug)]
struct Links {
    set: HashSet<[u8; 16]>,
    journal: Option<std::fs::File>,
}

/// At most this many links are remembered; past it the set starts over
/// (a forgotten link costs one upstream HEAD, or a manifest read).
const MAX_LINKS: usize = 1 << 20;

fn key(parts: &[&str]) -> [u8; 16] {
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let full: [u8; 32] = h.finalize().into();
    full[..16].try_into().expect("16 of 32 bytes")
}

fn hex(k: &[u8]) -> String {
    k.iter().map(|b| format!("{b:02x}")).collect()
}

/// Temp names differ per write: two requests may record one tag at once.
static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("{}.{n}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

impl Records {
    pub fn new(dir: &Path) -> Records {
        let path = dir.join("links");
        let mut set = HashSet::new();
        if let Ok(raw) = std::fs::read(&path) {
            for k in raw.chunks_exact(16) {
                set.insert(k.try_into().expect("16-byte chunks"));
            }
        }
        // Started over when it outgrew the bound (see `link`).
        if set.len() > MAX_LINKS {
            set.clear();
            let _ = std::fs::remove_file(&path);
        }
        let journal = std::fs::File::options().create(true).append(true).open(&path);
        if let Err(e) = &journal {
            log::warn!("cache {}: links are not kept across restarts: {e}", dir.display());
        }
        Records {
            dir: dir.to_owned(),
            tags: Mutex::new(HashMap::new()),
            links: Mutex::new(Links {
                set,
                journal: journal.ok(),
            }),
        }
    }

    fn manifest_path(&self, d: &Digest) -> PathBuf {
        self.dir.join("manifests").join(d.hex())
    }

    /// Stores a manifest whose digest the caller verified.
    pub fn put_manifest(&self, d: &Digest, media_type: &str, body: &[u8]) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(media_type.len() + 1 + body.len());
        out.extend_from_slice(media_type.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(body);
        write_atomic(&self.manifest_path(d), &out)
    }

    /// The manifest and its media type, re-verified against its digest.
    pub fn manifest(&self, d: &Digest) -> Option<(String, Bytes)> {
        let raw = std::fs::read(self.manifest_path(d)).ok()?;
        let nl = raw.iter().position(|&b| b == b'\n')?;
        let media_type = std::str::from_utf8(&raw[..nl]).ok()?.to_owned();
        let body = Bytes::copy_from_slice(&raw[nl + 1..]);
        if Digest::of(&body) != *d {
            log::warn!("cache: manifest {d} on disk does not match its digest; ignored");
            let _ = std::fs::remove_file(self.manifest_path(d));
            return None;
        }
        Some((media_type, body))
    }

    fn tag_path(&self, k: &[u8; 16]) -> PathBuf {
        self.dir.join("tags").join(hex(k))
    }

    /// `upstream` is the upstream's identity (its pool key).
    pub fn tag(&self, upstream: &str, repository: &str, tag: &str) -> Option<TagRecord> {
        let k = key(&[upstream, repository, tag]);
        if let Some(r) = self.tags.lock().expect("tags lock").get(&k) {
            return Some(r.clone());
        }
        let path = self.tag_path(&k);
        let text = std::fs::read_to_string(&path).ok()?;
        let mut lines = text.lines();
        let digest = Digest::parse(lines.next()?)?;
        let media_type = lines.next()?.to_owned();
        let validated = std::fs::metadata(&path).ok()?.modified().ok()?;
        let record = TagRecord {
            digest,
            media_type,
            validated,
        };
        self.tags.lock().expect("tags lock").insert(k, record.clone());
        Some(record)
    }

    pub fn put_tag(&self, upstream: &str, repository: &str, tag: &str, record: TagRecord) {
        let k = key(&[upstream, repository, tag]);
        let text = format!(
            "{}\n{}\n{upstream} {repository}:{tag}\n",
            record.digest, record.media_type
        );
        if let Err(e) = write_atomic(&self.tag_path(&k), text.as_bytes()) {
            log::warn!("cache: could not record tag {repository}:{tag}: {e}");
        }
        self.tags.lock().expect("tags lock").insert(k, record);
    }

    /// The upstream confirmed the tag still names the same digest.
    pub fn touch_tag(&self, upstream: &str, repository: &str, tag: &str) {
        let k = key(&[upstream, repository, tag]);
        let now = SystemTime::now();
        if let Some(r) = self.tags.lock().expect("tags lock").get_mut(&k) {
            r.validated = now;
        }
        if let Ok(f) = std::fs::File::options().write(true).open(self.tag_path(&k)) {
            let _ = f.set_modified(now);
        }
    }

    pub fn remove_tag(&self, upstream: &str, repository: &str, tag: &str) {
        let k = key(&[upstream, repository, tag]);
        self.tags.lock().expect("tags lock").remove(&k);
        let _ = std::fs::remove_file(self.tag_path(&k));
    }

    pub fn link(&self, upstream: &str, repository: &str, d: &Digest) {
        let k = key(&[upstream, repository, &d.hex()]);
        let mut links = self.links.lock().expect("links lock");
        if links.set.len() >= MAX_LINKS {
            links.set.clear();
            if let Some(j) = &links.journal {
                let _ = j.set_len(0);
            }
        }
        if links.set.insert(k)
            && let Some(j) = &mut links.journal
        {
            use std::io::Write;
            let _ = j.write_all(&k);
        }
    }

    pub fn linked(&self, upstream: &str, repository: &str, d: &Digest) -> bool {
        let k = key(&[upstream, repository, &d.hex()]);
        self.links.lock().expect("links lock").set.contains(&k)
    }
}
