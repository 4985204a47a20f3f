//! Builds OCI image layouts on disk (`oci-layout`, `index.json`,
//! `blobs/sha256/...`) with uncompressed tar layers of incompressible,
//! deterministic data. Large layers are streamed to disk while hashing.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::json;
use sha2::{Digest, Sha256};

pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// splitmix64: fast, deterministic per seed, and its output does not
/// compress.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let v = self.next_u64().to_le_bytes();
            let n = rest.len();
            rest.copy_from_slice(&v[..n]);
        }
    }
}

/// `len` incompressible bytes, deterministic per seed.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    SplitMix64::new(seed).fill(&mut v);
    v
}

/// `sha256:<hex>` of a byte slice.
pub fn sha256_bytes(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

/// `sha256:<hex>` and size of a file, read in 1 MiB pieces.
pub fn sha256_file(path: &Path) -> (String, u64) {
    let mut f = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    (format!("sha256:{}", hex(&hasher.finalize())), size)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A content-addressed blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
}

/// An image in an OCI layout directory.
#[derive(Clone, Debug)]
pub struct OciImage {
    pub dir: PathBuf,
    pub tag: String,
    pub manifest: Blob,
    pub config: Blob,
    pub layers: Vec<Blob>,
}

impl OciImage {
    /// Where a blob lives in the layout.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        blob_path(&self.dir, digest)
    }

    /// Reads an image from a layout directory by tag (as skopeo wrote it).
    pub fn read(dir: &Path, tag: &str) -> OciImage {
        let index: serde_json::Value = read_json(&dir.join("index.json"));
        let entry = index["manifests"]
            .as_array()
            .expect("index.json manifests")
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .unwrap_or_else(|| panic!("no manifest tagged {tag} in index.json: {index}"));
        let manifest = blob_from_descriptor(entry);
        let doc: serde_json::Value = read_json(&blob_path(dir, &manifest.digest));
        let config = blob_from_descriptor(&doc["config"]);
        let layers = doc["layers"]
            .as_array()
            .expect("manifest layers")
            .iter()
            .map(blob_from_descriptor)
            .collect();
        OciImage {
            dir: dir.to_path_buf(),
            tag: tag.to_string(),
            manifest,
            config,
            layers,
        }
    }

    /// Every blob of the image (manifest, config, layers).
    pub fn all_blobs(&self) -> Vec<Blob> {
        let mut v = vec![self.manifest.clone(), self.config.clone()];
        v.extend(self.layers.iter().cloned());
        v
    }

    /// Re-hashes every blob file in the layout and asserts it matches its
    /// descriptor (digest and size).
    pub fn verify_files(&self) {
        for blob in self.all_blobs() {
            let path = self.blob_path(&blob.digest);
            let (digest, size) = sha256_file(&path);
            assert_eq!(
                digest,
                blob.digest,
                "content of {} does not match its name",
                path.display()
            );
            assert_eq!(
                size,
                blob.size,
                "size of {} does not match its descriptor",
                path.display()
            );
        }
    }
}

fn read_json(path: &Path) -> serde_json::Value {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

fn blob_from_descriptor(d: &serde_json::Value) -> Blob {
    Blob {
        digest: d["digest"].as_str().expect("descriptor digest").to_string(),
        size: d["size"].as_u64().expect("descriptor size"),
        media_type: d["mediaType"].as_str().unwrap_or("").to_string(),
    }
}

pub fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    layout.join("blobs/sha256").join(hex)
}

/// Builds an image of uncompressed tar layers of random data.
pub struct OciImageBuilder {
    seed: u64,
    layer_sizes: Vec<u64>,
}

impl OciImageBuilder {
    pub fn new(seed: u64) -> OciImageBuilder {
        OciImageBuilder {
            seed,
            layer_sizes: Vec::new(),
        }
    }

    /// Adds a layer holding one file of `size` random bytes.
    pub fn layer(mut self, size: u64) -> OciImageBuilder {
        self.layer_sizes.push(size);
        self
    }

    /// Writes the layout into `dir` (created if needed) with `tag`.
    pub fn write(&self, dir: &Path, tag: &str) -> OciImage {
        let blobs_dir = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs_dir).unwrap();
        fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();

        let mut layers = Vec::new();
        for (i, &size) in self.layer_sizes.iter().enumerate() {
            let seed = self.seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
            let blob = write_tar_layer(&blobs_dir, &format!("layer{i}/data.bin"), size, seed)
                .unwrap_or_else(|e| panic!("write layer {i}: {e}"));
            layers.push(blob);
        }

        let diff_ids: Vec<&str> = layers.iter().map(|l| l.digest.as_str()).collect();
        let config = json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        });
        let config = write_blob(&blobs_dir, &serde_json::to_vec(&config).unwrap(), MEDIA_CONFIG);

        let layer_descs: Vec<_> = layers
            .iter()
            .map(|l| json!({ "mediaType": l.media_type, "digest": l.digest, "size": l.size }))
            .collect();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": { "mediaType": MEDIA_CONFIG, "digest": config.digest, "size": config.size },
            "layers": layer_descs,
        });
        let manifest = write_blob(&blobs_dir, &serde_json::to_vec(&manifest).unwrap(), MEDIA_MANIFEST);

        let index = json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": MEDIA_MANIFEST,
                "digest": manifest.digest,
                "size": manifest.size,
                "annotations": { "org.opencontainers.image.ref.name": tag },
            }],
        });
        fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();

        OciImage {
            dir: dir.to_path_buf(),
            tag: tag.to_string(),
            manifest,
            config,
            layers,
        }
    }
}

fn write_blob(blobs_dir: &Path, data: &[u8], media_type: &str) -> Blob {
    let digest = sha256_bytes(data);
    fs::write(blobs_dir.join(digest.strip_prefix("sha256:").unwrap()), data).unwrap();
    Blob {
        digest,
        size: data.len() as u64,
        media_type: media_type.to_string(),
    }
}

/// A writer that hashes and counts what passes through it.
struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes a tar archive with one regular file of `size` random bytes,
/// streaming it to disk while hashing, then renames it to its digest.
fn write_tar_layer(blobs_dir: &Path, name: &str, size: u64, seed: u64) -> io::Result<Blob> {
    let tmp = blobs_dir.join(format!(".partial-{seed:x}"));
    let file = File::create(&tmp)?;
    let mut w = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        hasher: Sha256::new(),
        written: 0,
    };
    w.write_all(&ustar_header(name, size))?;
    let mut rng = SplitMix64::new(seed);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..n]);
        w.write_all(&buf[..n])?;
        left -= n as u64;
    }
    let pad = (512 - (size % 512) as usize) % 512;
    w.write_all(&vec![0u8; pad])?;
    w.write_all(&[0u8; 1024])?; // end-of-archive: two zero blocks
    w.flush()?;
    let HashingWriter { inner, hasher, written } = w;
    inner.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    let digest = format!("sha256:{}", hex(&hasher.finalize()));
    fs::rename(&tmp, blobs_dir.join(digest.strip_prefix("sha256:").unwrap()))?;
    Ok(Blob {
        digest,
        size: written,
        media_type: MEDIA_LAYER_TAR.to_string(),
    })
}

/// A minimal POSIX ustar header for a regular file.
fn ustar_header(name: &str, size: u64) -> [u8; 512] {
    assert!(name.len() < 100, "tar member name too long");
    assert!(size < 8 << 30, "ustar size field holds < 8 GiB");
    let mut h = [0u8; 512];
    fn put(h: &mut [u8], off: usize, bytes: &[u8]) {
        h[off..off + bytes.len()].copy_from_slice(bytes);
    }
    put(&mut h, 0, name.as_bytes());
    put(&mut h, 100, b"0000644\0"); // mode
    put(&mut h, 108, b"0000000\0"); // uid
    put(&mut h, 116, b"0000000\0"); // gid
    put(&mut h, 124, format!("{size:011o}\0").as_bytes()); // size
    put(&mut h, 136, b"00000000000\0"); // mtime
    put(&mut h, 148, b"        "); // checksum placeholder
    h[156] = b'0'; // regular file
    put(&mut h, 257, b"ustar\0"); // magic
    put(&mut h, 263, b"00"); // version
    put(&mut h, 265, b"root");
    put(&mut h, 297, b"root");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    put(&mut h, 148, format!("{sum:06o}\0 ").as_bytes());
    h
}
