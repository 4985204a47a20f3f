//! One upstream download into the cache: written to a temporary file
//! while hashed, renamed under its digest only when the hash matches.
//! Readers tail the temporary file as it grows but never get its last
//! byte before the verdict, so no client ever holds a complete corrupt
//! blob. Dropping the writer without `finish` fails the fill.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use sha2::Digest as _;
use tokio::sync::watch;

use super::{Digest, Store};

/// What the upstream answered before the body.
#[derive(Debug, Clone)]
pub struct FillHead {
    pub status: u16,
    /// The body length; `None`: not announced (the fill is then refused).
    pub total: Option<u64>,
    /// For non-200 answers: the upstream's (small) error body.
    pub error_body: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FillState {
    Running,
    Committed,
    /// Readers stop short of the end and close their connection.
    Failed(&'static str),
}

#[derive(Debug, Clone)]
pub struct Progress {
    pub head: Option<FillHead>,
    pub written: u64,
    pub state: FillState,
}

impl Progress {
    /// Bytes a reader may send now: all once committed, else all but the last.
    pub fn readable(&self) -> u64 {
        let total = self.head.as_ref().and_then(|h| h.total).unwrap_or(0);
        match self.state {
            FillState::Committed => total,
            _ => self.written.min(total.saturating_sub(1)),
        }
    }
}

/// A download in progress, shared by its readers.
#[derive(Debug)]
pub struct Fill {
    pub digest: Digest,
    /// Opened before the first byte: a rename or unlink does not disturb it.
    pub file: Arc<File>,
    progress: watch::Sender<Progress>,
}

impl Fill {
    pub fn subscribe(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }
}

/// Bytes gathered before one blocking write-and-hash.
const BATCH: usize = 1 << 20;

/// The one writer of a fill.
pub struct FillWriter {
    store: Arc<Store>,
    fill: Arc<Fill>,
    tmp: PathBuf,
    out: Option<(File, sha2::Sha256)>,
    pending: BytesMut,
    written: u64,
    done: bool,
}

impl FillWriter {
    pub(super) fn new(
        store: Arc<Store>,
        digest: Digest,
        tmp: PathBuf,
        out: File,
        file: File,
    ) -> (FillWriter, Arc<Fill>) {
        let (progress, _) = watch::channel(Progress {
            head: None,
            written: 0,
            state: FillState::Running,
        });
        let fill = Arc::new(Fill {
            digest,
            file: Arc::new(file),
            progress,
        });
        let writer = FillWriter {
            store,
            fill: fill.clone(),
            tmp,
            out: Some((out, sha2::Sha256::new())),
            pending: BytesMut::new(),
            written: 0,
            done: false,
        };
        (writer, fill)
    }

    pub fn digest(&self) -> Digest {
        self.fill.digest
    }

    pub fn set_head(&self, head: FillHead) {
        self.fill.progress.send_modify(|p| p.head = Some(head));
    }

    pub async fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.pending.extend_from_slice(chunk);
        if self.pending.len() >= BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    pub(super) async fn flush(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let buf = self.pending.split().freeze();
        let (mut file, mut hasher) = self.out.take().expect("writer is open");
        let n = buf.len() as u64;
        let (file, hasher, result) = tokio::task::spawn_blocking(move || {
            hasher.update(&buf);
            let r = file.write_all(&buf);
            (file, hasher, r)
        })
        .await
        .map_err(std::io::Error::other)?;
        self.out = Some((file, hasher));
        result?;
        self.written += n;
        let written = self.written;
        self.fill.progress.send_modify(|p| p.written = written);
        Ok(())
    }

    /// Verifies and commits; `Err` names why the blob was not committed.
    pub async fn finish(mut self, fsync: bool) -> Result<u64, FinishError> {
        self.flush().await.map_err(FinishError::Io)?;
        let (file, hasher) = self.out.take().expect("writer is open");
        let computed = Digest(hasher.finalize().into());
        if computed != self.fill.digest {
            self.fail("digest mismatch");
            return Err(FinishError::Mismatch(computed));
        }
        let size = self.written;
        let (tmp, store, digest) = (self.tmp.clone(), self.store.clone(), self.fill.digest);
        let placed = tokio::task::spawn_blocking(move || {
            if fsync {
                file.sync_all()?;
            }
            store.place(&tmp, &digest)
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
        if let Err(e) = placed {
            self.fail("could not store the blob");
            return Err(FinishError::Io(e));
        }
        self.store.committed(&self.fill, size);
        self.fill.progress.send_modify(|p| {
            p.written = size;
            p.state = FillState::Committed;
        });
        // Only now: a panic above still fails the fill (in `drop`), so
        // no reader waits for a verdict that never comes.
        self.done = true;
        Ok(size)
    }

    /// Ends the fill without a blob: readers stop short, the file goes.
    pub fn fail(&mut self, why: &'static str) {
        if self.done {
            return;
        }
        self.done = true;
        let _ = std::fs::remove_file(&self.tmp);
        self.store.abandoned(&self.fill);
        self.fill.progress.send_modify(|p| p.state = FillState::Failed(why));
    }
}

impl Drop for FillWriter {
    fn drop(&mut self) {
        self.fail("download abandoned");
    }
}

#[derive(Debug)]
pub enum FinishError {
    Mismatch(Digest),
    Io(std::io::Error),
}
