//! One line per request, as logfmt text or JSON, written by a background
//! thread so request tasks never wait on (or lock) the output.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::config::{AccessLogFormat, AccessLogOutput, AccessLogSettings};

/// Lines waiting for the writer; past this the output is too slow and
/// lines are dropped (and counted) rather than stalling requests.
const QUEUE: usize = 16 * 1024;

/// What one request was, for its log line. Never holds a password.
#[derive(Debug, Serialize)]
pub struct Entry<'a> {
    pub time: &'a str,
    pub client: &'a str,
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub registry: &'a str,
    pub operation: &'a str,
    pub repository: &'a str,
    pub reference: &'a str,
    pub user: &'a str,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration_ms: f64,
    pub upstream: &'a str,
    /// 0: no upstream response.
    pub upstream_status: u16,
    pub error: &'a str,
}

enum Message {
    Line(Vec<u8>),
    Flush(SyncSender<()>),
}

struct AccessLog {
    format: AccessLogFormat,
    queue: SyncSender<Message>,
}

static LOG: OnceLock<AccessLog> = OnceLock::new();

/// Opens the output and starts the writer; `None` settings: no access log.
pub fn init(settings: Option<&AccessLogSettings>) -> io::Result<()> {
    let Some(settings) = settings else {
        return Ok(());
    };
    let out: Box<dyn Write + Send> = match &settings.output {
        AccessLogOutput::Stdout => Box::new(io::stdout()),
        AccessLogOutput::Stderr => Box::new(io::stderr()),
        AccessLogOutput::File(path) => Box::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| io::Error::new(e.kind(), format!("access log `{}`: {e}", path.display())))?,
        ),
    };
    let (queue, rx) = sync_channel(QUEUE);
    std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || write_lines(rx, out))?;
    let _ = LOG.set(AccessLog {
        format: settings.format,
        queue,
    });
    Ok(())
}

pub fn enabled() -> bool {
    LOG.get().is_some()
}

pub fn record(entry: &Entry) {
    let Some(log) = LOG.get() else { return };
    let mut line = Vec::with_capacity(320);
    match log.format {
        AccessLogFormat::Text => line.extend_from_slice(logfmt(entry).as_bytes()),
        AccessLogFormat::Json => {
            serde_json::to_writer(&mut line, entry).expect("serialising strings and numbers cannot fail")
        }
    }
    line.push(b'\n');
    if let Err(TrySendError::Full(_)) = log.queue.try_send(Message::Line(line)) {
        crate::metrics::access_log_dropped();
    }
}

/// Waits (briefly) until queued lines are written; before exiting.
pub fn flush() {
    let Some(log) = LOG.get() else { return };
    let (done, wait) = sync_channel(1);
    if log.queue.send(Message::Flush(done)).is_ok() {
        let _ = wait.recv_timeout(Duration::from_secs(1));
    }
}

fn write_lines(rx: Receiver<Message>, out: Box<dyn Write + Send>) {
    let mut out = BufWriter::with_capacity(64 * 1024, out);
    loop {
        // Flush as soon as the queue is empty: lines show up at once when
        // traffic is light and are batched when it is heavy.
        let msg = match rx.try_recv() {
            Ok(m) => m,
            Err(_) => {
                let _ = out.flush();
                match rx.recv_timeout(Duration::from_secs(3600)) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        };
        match msg {
            Message::Line(line) => {
                let _ = out.write_all(&line);
            }
            Message::Flush(done) => {
                let _ = out.flush();
                let _ = done.send(());
            }
        }
    }
}

fn logfmt(e: &Entry) -> String {
    let mut s = String::with_capacity(320);
    let mut field = |key: &str, value: &str| {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(key);
        s.push('=');
        push_value(&mut s, value);
    };
    field("time", e.time);
    field("client", e.client);
    field("method", e.method);
    field("host", e.host);
    field("path", e.path);
    field("status", &e.status.to_string());
    field("registry", e.registry);
    field("op", e.operation);
    field("repo", e.repository);
    field("ref", e.reference);
    field("user", e.user);
    let _ = write!(
        s,
        " in={} out={} duration_ms={:.3} upstream=",
        e.bytes_in, e.bytes_out, e.duration_ms
    );
    push_value(&mut s, e.upstream);
    let _ = write!(s, " upstream_status={}", e.upstream_status);
    if !e.error.is_empty() {
        s.push_str(" error=");
        push_value(&mut s, e.error);
    }
    s
}

/// Bare when safe, else quoted with `"` and `\` escaped; `-` for empty.
fn push_value(s: &mut String, v: &str) {
    if v.is_empty() {
        s.push('-');
    } else if v
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'=' && b != b'\\')
    {
        s.push_str(v);
    } else {
        s.push('"');
        for c in v.chars() {
            match c {
                '"' | '\\' => {
                    s.push('\\');
                    s.push(c);
                }
                c if c.is_control() => {
                    let _ = write!(s, "\\u{{{:x}}}", c as u32);
                }
                c => s.push(c),
            }
        }
        s.push('"');
    }
}

/// RFC 3339 UTC with milliseconds, without a date crate.
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(error: &'a str, user: &'a str) -> Entry<'a> {
        Entry {
            time: "2026-11-23T12:00:00.000Z",
            client: "127.0.0.1:40000",
            method: "PUT",
            host: "registry.example:5000",
            path: "/v2/team/app/blobs/uploads/u1",
            status: 201,
            registry: "main",
            operation: "upload_complete",
            repository: "team/app",
            reference: "u1",
            user,
            bytes_in: 1024,
            bytes_out: 0,
            duration_ms: 12.5,
            upstream: "registry",
            upstream_status: 201,
            error,
        }
    }

    #[test]
    fn text_lines_are_logfmt() {
        let line = logfmt(&entry("", "alice"));
        assert_eq!(
            line,
            "time=2026-11-23T12:00:00.000Z client=127.0.0.1:40000 method=PUT host=registry.example:5000 \
             path=/v2/team/app/blobs/uploads/u1 status=201 registry=main op=upload_complete repo=team/app \
             ref=u1 user=alice in=1024 out=0 duration_ms=12.500 upstream=registry upstream_status=201"
        );
        let line = logfmt(&entry("read \"timed\" out", ""));
        assert!(line.contains(" user=- "), "{line}");
        assert!(line.ends_with(r#" error="read \"timed\" out""#), "{line}");
    }

    #[test]
    fn json_lines_parse_back() {
        let mut out = Vec::new();
        serde_json::to_writer(&mut out, &entry("", "bob")).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["user"], "bob");
        assert_eq!(v["operation"], "upload_complete");
        assert_eq!(v["bytes_in"], 1024);
    }

    #[test]
    fn timestamps_are_utc_rfc3339() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_435_200_123);
        assert_eq!(timestamp(t), "2026-11-23T12:00:00.123Z");
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(timestamp(leap), "2000-02-29T00:00:00.000Z");
    }
}
