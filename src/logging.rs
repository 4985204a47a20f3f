//! The process logger: env_logger (`RUST_LOG`, default `info`), wrapped to
//! count the TLS handshake failures Pingora reports only as log lines.

use std::sync::atomic::Ordering;

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::metrics::TLS_HANDSHAKE_FAILURES;

struct Logger {
    inner: env_logger::Logger,
}

/// Pingora's listener logs these, and nothing else sees the failure.
fn is_handshake_failure(record: &Record) -> bool {
    if record.level() != Level::Error || !record.target().starts_with("pingora_core::services") {
        return false;
    }
    match record.args().as_str() {
        Some(s) => s.starts_with("Downstream handshake"),
        None => record.args().to_string().starts_with("Downstream handshake"),
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.inner.enabled(metadata) || metadata.level() == Level::Error
    }

    fn log(&self, record: &Record) {
        if is_handshake_failure(record) {
            TLS_HANDSHAKE_FAILURES.fetch_add(1, Ordering::Relaxed);
        }
        if self.inner.matches(record) {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

pub fn init() {
    let inner = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).build();
    // Error records must reach us even under RUST_LOG=off, to be counted.
    let max = inner.filter().max(LevelFilter::Error);
    if log::set_boxed_logger(Box::new(Logger { inner })).is_ok() {
        log::set_max_level(max);
    }
}
