//! The text of one access log line: logfmt or JSON, written without
//! `fmt` on the common path.

use std::cell::Cell;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::access::Verdict;
use crate::config::AccessLogFormat;

/// What one request was, for its log line. Never holds a password.
#[derive(Debug)]
pub struct Entry<'a> {
    pub time: SystemTime,
    pub client: Option<SocketAddr>,
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub registry: &'a str,
    pub operation: &'a str,
    pub repository: &'a str,
    pub reference: &'a str,
    pub user: &'a str,
    /// What the access rules did (`-` without rules).
    pub access: Verdict,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration: Duration,
    pub upstream: &'a str,
    /// The replica's URL; empty: none.
    pub replica: &'a str,
    /// 0: no upstream response.
    pub upstream_status: u16,
    /// `hit`, `miss` or `stale` for reads a cache answered; empty: none.
    pub cache: &'a str,
    pub error: &'a str,
}

/// One field's value; everything but `Text` is written without quoting or
/// escaping, and nothing goes through `fmt` on the common path: a JSON line
/// cost about 10k instructions per request through serde_json and `format!`,
/// and about 5k now.
enum Value<'a> {
    Text(&'a str),
    Number(u64),
    Millis(Duration),
    Time(SystemTime),
    Client(Option<SocketAddr>),
    Verdict(Verdict),
}

impl Entry<'_> {
    /// `(JSON key, text key, value)` in line order.
    fn fields(&self) -> [(&'static str, &'static str, Value<'_>); 20] {
        use Value::*;
        [
            ("time", "time", Time(self.time)),
            ("client", "client", Client(self.client)),
            ("method", "method", Text(self.method)),
            ("host", "host", Text(self.host)),
            ("path", "path", Text(self.path)),
            ("status", "status", Number(self.status.into())),
            ("registry", "registry", Text(self.registry)),
            ("operation", "op", Text(self.operation)),
            ("repository", "repo", Text(self.repository)),
            ("reference", "ref", Text(self.reference)),
            ("user", "user", Text(self.user)),
            ("access", "access", Verdict(self.access)),
            ("bytes_in", "in", Number(self.bytes_in)),
            ("bytes_out", "out", Number(self.bytes_out)),
            ("duration_ms", "duration_ms", Millis(self.duration)),
            ("upstream", "upstream", Text(self.upstream)),
            ("replica", "replica", Text(self.replica)),
            (
                "upstream_status",
                "upstream_status",
                Number(self.upstream_status.into()),
            ),
            ("cache", "cache", Text(self.cache)),
            ("error", "error", Text(self.error)),
        ]
    }
}

/// Appends `entry` as one line, newline included.
pub(super) fn line(format: AccessLogFormat, entry: &Entry, s: &mut String) {
    match format {
        AccessLogFormat::Text => logfmt(entry, s),
        AccessLogFormat::Json => json(entry, s),
    }
    s.push('\n');
}

/// `key=value` pairs; empty values are `-`, and an empty error is left out.
pub(super) fn logfmt(e: &Entry, s: &mut String) {
    for (i, (_, key, value)) in e.fields().into_iter().enumerate() {
        if key == "error" && e.error.is_empty() {
            continue;
        }
        if i > 0 {
            s.push(' ');
        }
        s.push_str(key);
        s.push('=');
        match value {
            Value::Text(v) => push_logfmt_text(s, v),
            Value::Client(None) => s.push('-'),
            v => push_bare(s, &v),
        }
    }
}

pub(super) fn json(e: &Entry, s: &mut String) {
    s.push('{');
    for (i, (key, _, value)) in e.fields().into_iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push('"');
        s.push_str(key);
        s.push_str("\":");
        match value {
            Value::Text(v) => push_json_text(s, v),
            v @ (Value::Time(_) | Value::Client(_) | Value::Verdict(_)) => {
                s.push('"');
                push_bare(s, &v);
                s.push('"');
            }
            v => push_bare(s, &v),
        }
    }
    s.push('}');
}

/// Values that never need quoting or escaping.
fn push_bare(s: &mut String, v: &Value) {
    match *v {
        // Callers quote and escape text themselves; here it is only copied.
        Value::Text(t) => s.push_str(t),
        Value::Number(n) => push_number(s, n),
        Value::Millis(d) => {
            let micros = (d.as_nanos() + 500) / 1000;
            push_number(s, (micros / 1000) as u64);
            s.push('.');
            push_three_digits(s, (micros % 1000) as u32);
        }
        Value::Time(t) => push_timestamp(s, t),
        Value::Client(Some(SocketAddr::V4(a))) => {
            let (buf, n) = crate::rewrite::ipv4_text(*a.ip());
            s.push_str(std::str::from_utf8(&buf[..n]).expect("ASCII digits and dots"));
            s.push(':');
            push_number(s, a.port().into());
        }
        Value::Client(Some(a)) => {
            let _ = write!(s, "{a}");
        }
        Value::Client(None) => {}
        Value::Verdict(v) => push_verdict(s, v),
    }
}

/// `-`, `allow@N`, `deny@N`, `deny@none`, `refuse`, `strip_mount@N`, ...
fn push_verdict(s: &mut String, v: Verdict) {
    s.push_str(v.word());
    match v.rule() {
        Some(Some(n)) => {
            s.push('@');
            push_number(s, n.into());
        }
        Some(None) => s.push_str("@none"),
        None => {}
    }
}

fn push_number(s: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    s.push_str(std::str::from_utf8(&buf[i..]).expect("ASCII digits"));
}

/// Bare when safe, else quoted with `"` and `\` escaped; `-` for empty.
fn push_logfmt_text(s: &mut String, v: &str) {
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

/// A JSON string (RFC 8259): `"`, `\` and control characters escaped.
fn push_json_text(s: &mut String, v: &str) {
    s.push('"');
    if v.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        s.push_str(v);
    } else {
        for c in v.chars() {
            match c {
                '"' => s.push_str("\\\""),
                '\\' => s.push_str("\\\\"),
                '\n' => s.push_str("\\n"),
                '\r' => s.push_str("\\r"),
                '\t' => s.push_str("\\t"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(s, "\\u{:04x}", c as u32);
                }
                c => s.push(c),
            }
        }
    }
    s.push('"');
}

thread_local! {
    /// `YYYY-MM-DDTHH:MM:SS` of the last second formatted on this thread:
    /// the calendar arithmetic runs once a second, not once a line.
    static SECOND: Cell<(u64, [u8; 19])> = const { Cell::new((u64::MAX, [0; 19])) };
}

/// RFC 3339 UTC with milliseconds, without a date crate.
fn push_timestamp(s: &mut String, t: SystemTime) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (cached, mut prefix) = SECOND.get();
    if cached != secs {
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (y, m, day) = civil_from_days(days as i64);
        let text = format!(
            "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        );
        match text.as_bytes().try_into() {
            Ok(bytes) => {
                prefix = bytes;
                SECOND.set((secs, prefix));
            }
            // Years past 9999: not worth a cache slot.
            Err(_) => {
                s.push_str(&text);
                push_fraction(s, d.subsec_millis());
                return;
            }
        }
    }
    s.push_str(std::str::from_utf8(&prefix).expect("ASCII timestamp"));
    push_fraction(s, d.subsec_millis());
}

fn push_fraction(s: &mut String, millis: u32) {
    s.push('.');
    push_three_digits(s, millis);
    s.push('Z');
}

/// `n` (below 1000) with leading zeros.
fn push_three_digits(s: &mut String, n: u32) {
    for div in [100, 10, 1] {
        s.push(char::from(b'0' + (n / div % 10) as u8));
    }
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
            time: UNIX_EPOCH + Duration::from_secs(1_795_435_200),
            client: Some("127.0.0.1:40000".parse().unwrap()),
            method: "PUT",
            host: "registry.example:5000",
            path: "/v2/team/app/blobs/uploads/u1",
            status: 201,
            registry: "main",
            operation: "upload_complete",
            repository: "team/app",
            reference: "u1",
            user,
            access: Verdict::NotApplied,
            bytes_in: 1024,
            bytes_out: 0,
            duration: Duration::from_micros(12_500),
            upstream: "registry",
            replica: "http://127.0.0.1:15000",
            upstream_status: 201,
            cache: "",
            error,
        }
    }

    #[test]
    fn text_lines_are_logfmt() {
        let line = text_line(&entry("", "alice"));
        assert_eq!(
            line,
            "time=2026-11-23T12:00:00.000Z client=127.0.0.1:40000 method=PUT host=registry.example:5000 \
             path=/v2/team/app/blobs/uploads/u1 status=201 registry=main op=upload_complete repo=team/app \
             ref=u1 user=alice access=- in=1024 out=0 duration_ms=12.500 upstream=registry replica=http://127.0.0.1:15000 upstream_status=201 cache=-"
        );
        let line = text_line(&entry("read \"timed\" out", ""));
        assert!(line.contains(" user=- "), "{line}");
        assert!(line.ends_with(r#" error="read \"timed\" out""#), "{line}");
    }

    fn timestamp(t: SystemTime) -> String {
        let mut s = String::new();
        push_timestamp(&mut s, t);
        s
    }

    fn text_line(e: &Entry) -> String {
        let mut s = String::new();
        logfmt(e, &mut s);
        s
    }

    #[test]
    fn json_lines_parse_back() {
        let mut line = String::new();
        json(&entry("", "bob"), &mut line);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["time"], "2026-11-23T12:00:00.000Z");
        assert_eq!(v["client"], "127.0.0.1:40000");
        assert_eq!(v["user"], "bob");
        assert_eq!(v["operation"], "upload_complete");
        assert_eq!(v["bytes_in"], 1024);
        assert_eq!(v["duration_ms"], 12.5);
        assert_eq!(v["error"], "");
        assert_eq!(v["upstream_status"], 201);
    }

    #[test]
    fn odd_text_stays_one_valid_line() {
        let path = "/v2/a\"b\\c\n\u{1}é/manifests/x";
        let mut e = entry("", "");
        e.path = path;
        e.client = Some("[::1]:5000".parse().unwrap());
        e.duration = Duration::from_nanos(1_234_567_890);
        let mut line = String::new();
        json(&e, &mut line);
        assert!(!line.contains('\n'), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["path"], path);
        assert_eq!(v["client"], "[::1]:5000");
        assert_eq!(v["duration_ms"], 1234.568);
        let text = text_line(&e);
        assert!(!text.contains('\n'), "{text}");
        assert!(text.contains(r#"path="/v2/a\"b\\c\u{a}\u{1}é/manifests/x""#), "{text}");
        assert!(text.contains(" client=[::1]:5000 method=PUT "), "{text}");
    }

    #[test]
    fn timestamps_are_utc_rfc3339() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_435_200_123);
        assert_eq!(timestamp(t), "2026-11-23T12:00:00.123Z");
        // The cached second is not reused for another second.
        assert_eq!(timestamp(t + Duration::from_millis(1_000)), "2026-11-23T12:00:01.123Z");
        assert_eq!(timestamp(t + Duration::from_millis(5)), "2026-11-23T12:00:00.128Z");
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(timestamp(leap), "2000-02-29T00:00:00.000Z");
    }
}
