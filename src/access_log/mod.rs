//! One line per request, as logfmt text or JSON.
//!
//! A request task formats its line straight into its worker thread's own
//! buffer ([`batch`]); one background thread takes every buffer's lines a
//! few milliseconds at a time and writes them with one `write`. So a line
//! costs no allocation, no wake-up and no syscall on the request's thread,
//! and a slow output drops (and counts) lines rather than stalling requests.

mod batch;
mod format;

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::OnceLock;

pub use format::Entry;

use crate::config::{AccessLogFormat, AccessLogOutput, AccessLogSettings};

struct AccessLog {
    format: AccessLogFormat,
    writer: batch::Writer,
}

static LOG: OnceLock<AccessLog> = OnceLock::new();

/// Opens the output and starts the writer; `None` settings: no access log.
pub fn init(settings: Option<&AccessLogSettings>) -> io::Result<()> {
    let Some(settings) = settings else {
        return Ok(());
    };
    let (out, file): (Box<dyn Write + Send>, _) = match &settings.output {
        AccessLogOutput::Stdout => (Box::new(io::stdout()), None),
        AccessLogOutput::Stderr => (Box::new(io::stderr()), None),
        AccessLogOutput::File(path) => (Box::new(open_file(path)?), Some(path.clone())),
    };
    let writer = batch::Writer::start(out, file)?;
    let _ = LOG.set(AccessLog {
        format: settings.format,
        writer,
    });
    Ok(())
}

pub fn enabled() -> bool {
    LOG.get().is_some()
}

pub fn record(entry: &Entry) {
    let Some(log) = LOG.get() else { return };
    let appended = batch::append(|buf| format::line(log.format, entry, buf));
    if appended {
        log.writer.wake();
    } else {
        crate::metrics::access_log_dropped();
    }
}

fn open_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("access log `{}`: {e}", path.display())))
}

/// Writes what is pending, then reopens the log file by its path (after
/// logrotate moved it away); SIGUSR1.
pub fn reopen() {
    if let Some(log) = LOG.get() {
        log.writer.reopen();
    }
}

/// Waits (at most a second) until every line recorded so far is written;
/// before exiting and on a reload.
pub fn flush() {
    if let Some(log) = LOG.get() {
        log.writer.flush();
    }
}
