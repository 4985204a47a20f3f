//! Per-thread line buffers and the thread that writes them out in batches.
//!
//! Each worker thread appends to its own buffer under its own lock, which
//! only the writer also takes, once per sweep. The writer sleeps while no
//! line is pending; the first line after a quiet spell wakes it, and while
//! lines keep coming it sweeps every [`INTERVAL`] without being woken. So a
//! busy gateway makes about 200 writes a second whatever its request rate.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::Thread;
use std::time::Duration;

/// How long lines wait on their thread while traffic is steady.
const INTERVAL: Duration = Duration::from_millis(5);
/// Bytes a thread holds (about 3,000 lines) before further lines are
/// dropped: the output has not kept up for a while.
const MAX_PENDING: usize = 1 << 20;
/// Buffers that grew past this during a burst are given back afterwards.
const KEEP: usize = 64 * 1024;

/// One thread's lines not yet written.
struct Shard(Mutex<String>);

impl Shard {
    fn lock(&self) -> MutexGuard<'_, String> {
        // A panic while formatting leaves at worst a partial line.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Every thread's shard; locked when a thread logs its first line and by
/// each sweep, never per request.
static SHARDS: Mutex<Vec<Arc<Shard>>> = Mutex::new(Vec::new());

thread_local! {
    static LOCAL: Arc<Shard> = {
        let shard = Arc::new(Shard(Mutex::new(String::new())));
        SHARDS.lock().unwrap_or_else(PoisonError::into_inner).push(shard.clone());
        shard
    };
}

/// Lets `write` append to this thread's buffer; false (nothing written)
/// when the buffer is full.
pub(super) fn append(write: impl FnOnce(&mut String)) -> bool {
    LOCAL
        .try_with(|shard| {
            let mut pending = shard.lock();
            if pending.len() >= MAX_PENDING {
                return false;
            }
            write(&mut pending);
            true
        })
        .unwrap_or(false)
}

enum Control {
    Flush(SyncSender<()>),
    Reopen,
}

/// The handle request threads and signal handlers use.
pub(super) struct Writer {
    thread: Thread,
    /// Set by the writer before it sleeps with nothing pending.
    idle: Arc<AtomicBool>,
    control: Sender<Control>,
}

impl Writer {
    pub(super) fn start(out: Box<dyn Write + Send>, file: Option<PathBuf>) -> io::Result<Writer> {
        let idle = Arc::new(AtomicBool::new(false));
        let (control, requests) = channel();
        let sweeper = Sweeper {
            out,
            file,
            idle: idle.clone(),
            requests,
            batch: String::new(),
            failing: false,
        };
        let handle = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || sweeper.run())?;
        Ok(Writer {
            thread: handle.thread().clone(),
            idle,
            control,
        })
    }

    /// After a line was appended: wakes the writer if it is asleep. A plain
    /// load per line; the swap and wake-up happen once per quiet spell.
    pub(super) fn wake(&self) {
        if self.idle.load(Ordering::SeqCst) && self.idle.swap(false, Ordering::SeqCst) {
            self.thread.unpark();
        }
    }

    pub(super) fn flush(&self) {
        let (done, wait) = sync_channel(1);
        if self.control.send(Control::Flush(done)).is_ok() {
            self.thread.unpark();
            let _ = wait.recv_timeout(Duration::from_secs(1));
        }
    }

    pub(super) fn reopen(&self) {
        if self.control.send(Control::Reopen).is_ok() {
            self.thread.unpark();
        }
    }
}

struct Sweeper {
    out: Box<dyn Write + Send>,
    /// The file to reopen on SIGUSR1; `None` for stdout and stderr.
    file: Option<PathBuf>,
    idle: Arc<AtomicBool>,
    requests: Receiver<Control>,
    /// Every shard's lines of one sweep, written with one call.
    batch: String,
    /// The last write failed (logged once until a write succeeds).
    failing: bool,
}

impl Sweeper {
    fn run(mut self) {
        loop {
            while let Ok(request) = self.requests.try_recv() {
                self.handle(request);
            }
            if self.sweep() {
                std::thread::park_timeout(INTERVAL);
                continue;
            }
            // Lines appended after this store see it and wake us; lines
            // appended before it are found by the second sweep.
            self.idle.store(true, Ordering::SeqCst);
            if self.sweep() {
                self.idle.store(false, Ordering::SeqCst);
                continue;
            }
            std::thread::park();
            self.idle.store(false, Ordering::SeqCst);
        }
    }

    fn handle(&mut self, request: Control) {
        self.sweep();
        let _ = self.out.flush();
        match request {
            Control::Flush(done) => {
                let _ = done.send(());
            }
            Control::Reopen => {
                let Some(path) = &self.file else { return };
                match super::open_file(path) {
                    Ok(f) => {
                        self.out = Box::new(f);
                        log::info!("access log reopened: {}", path.display());
                    }
                    Err(e) => log::error!("{e}; still writing to the file opened before"),
                }
            }
        }
    }

    /// Writes every pending line; false when there was none.
    fn sweep(&mut self) -> bool {
        for shard in SHARDS.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            let mut pending = shard.lock();
            if !pending.is_empty() {
                self.batch.push_str(&pending);
                pending.clear();
                if pending.capacity() > KEEP {
                    pending.shrink_to(KEEP);
                }
            }
        }
        if self.batch.is_empty() {
            return false;
        }
        match self.out.write_all(self.batch.as_bytes()) {
            Ok(()) if self.failing => {
                self.failing = false;
                log::info!("access log writes succeed again");
            }
            Ok(()) => {}
            Err(e) if !self.failing => {
                self.failing = true;
                log::error!("access log write failed: {e}; its lines are lost until writes succeed");
            }
            Err(_) => {}
        }
        self.batch.clear();
        if self.batch.capacity() > 4 * KEEP {
            self.batch.shrink_to(KEEP);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output the test can read while the writer owns it.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn flush_returns_after_every_thread_s_pending_lines_are_written() {
        let out = Shared::default();
        let writer = Writer::start(Box::new(out.clone()), None).unwrap();
        for round in 0..20 {
            std::thread::scope(|s| {
                for t in 0..3 {
                    let writer = &writer;
                    s.spawn(move || {
                        assert!(append(|b| b.push_str(&format!("round {round} thread {t}\n"))));
                        writer.wake();
                    });
                }
            });
            // Lines appended within the batch interval are still pending
            // here; flush must write them before it returns.
            writer.flush();
            let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
            for t in 0..3 {
                assert!(text.contains(&format!("round {round} thread {t}\n")), "{text}");
            }
        }
    }
}
