//! Files the gateway re-reads without a restart (`gateway.yaml`, htpasswd
//! files, certificates): polled for changes, and re-read on SIGHUP.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Identity of a file's current content, to notice changes cheaply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl FileStamp {
    pub fn of(path: &Path) -> std::io::Result<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)?;
        Ok(FileStamp {
            modified: m.modified().ok(),
            len: m.len(),
            inode: m.ino(),
        })
    }

    /// Stamps of several files; `None` where a file cannot be stat'ed.
    pub fn of_all<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Vec<Option<FileStamp>> {
        paths.into_iter().map(|p| FileStamp::of(p).ok()).collect()
    }
}

/// Something re-read from disk while the gateway runs.
pub trait Reloadable: Send + Sync {
    /// Re-reads when the files changed, or always with `force`; logs what
    /// happened. Failures keep the current state.
    fn reload(&self, force: bool);
}

pub fn reload_all(items: &[Arc<dyn Reloadable>], force: bool) {
    for item in items {
        item.reload(force);
    }
}

/// Calls `tick` every `every` in the background. Polling a few stat()
/// calls a second is cheaper and more robust than inotify across editors'
/// rename tricks and files replaced by configuration management or
/// Kubernetes secret mounts.
pub fn watch(every: Duration, tick: impl Fn() + Send + 'static) {
    std::thread::Builder::new()
        .name("file-watch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                tick();
            }
        })
        .expect("spawning the file watcher");
}
