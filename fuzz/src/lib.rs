//! Helpers shared by the fuzz targets: turning fuzzer bytes into request
//! heads the way Pingora does, and small input splitters.

use pingora::http::RequestHeader;

/// Pingora's own cap on header lines (`MAX_HEADERS` in pingora-core).
pub const MAX_HEADERS: usize = 256;

/// Whether `FUZZ_STRICT=1` is set: also assert invariants that are known
/// not to hold today (see README.md, "Strict mode").
pub fn strict() -> bool {
    static STRICT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *STRICT.get_or_init(|| std::env::var_os("FUZZ_STRICT").is_some_and(|v| v == "1"))
}

/// Whether `FUZZ_VERBOSE=1` is set: targets say what they did with an input
/// (for checking seeds and reproducing crashes; far too slow for fuzzing).
pub fn verbose() -> bool {
    static VERBOSE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *VERBOSE.get_or_init(|| std::env::var_os("FUZZ_VERBOSE").is_some_and(|v| v == "1"))
}

/// Parses an HTTP/1 request head as Pingora's HTTP/1 server session does
/// (httparse, then `RequestHeader::build` and `append_header` per field,
/// Content-Length dropped beside Transfer-Encoding). Returns the header and
/// the length of the head in `data` (what `get_headers_raw_bytes` returns).
/// `None` where Pingora would answer 400 or wait for more bytes.
pub fn pingora_h1_head(data: &[u8]) -> Option<(RequestHeader, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(data) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return None,
    };
    let mut out = RequestHeader::build(req.method.unwrap_or(""), req.path.unwrap_or("").as_bytes(), Some(req.headers.len())).ok()?;
    out.set_version(match req.version {
        Some(1) => http::Version::HTTP_11,
        Some(0) => http::Version::HTTP_10,
        _ => http::Version::HTTP_09,
    });
    for h in req.headers.iter() {
        let value = http::HeaderValue::from_bytes(h.value).ok()?;
        out.append_header(bytes::Bytes::copy_from_slice(h.name.as_bytes()), value).ok()?;
    }
    if out.headers.contains_key(http::header::TRANSFER_ENCODING) && out.headers.contains_key(http::header::CONTENT_LENGTH) {
        out.remove_header(&http::header::CONTENT_LENGTH);
    }
    Some((out, len))
}

/// A lenient head builder for targets that care about header values rather
/// than HTTP/1 syntax: `METHOD TARGET` on the first line, then `name: value`
/// lines (`\n` or `\r\n`). Lines that `RequestHeader` refuses are skipped;
/// `None` only when the method or target is refused.
pub fn lenient_head(data: &[u8]) -> Option<RequestHeader> {
    let mut lines = data.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let first = lines.next()?;
    let mut parts = first.splitn(3, |&b| b == b' ');
    let method = parts.next()?;
    let target = parts.next().unwrap_or(b"/");
    let method = http::Method::from_bytes(method).ok()?;
    let mut req = RequestHeader::build(method, target, None).ok()?;
    for line in lines.take(MAX_HEADERS) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = &line[..colon];
        let value = line[colon + 1..].trim_ascii();
        let Ok(value) = http::HeaderValue::from_bytes(value) else {
            continue;
        };
        let _ = req.append_header(bytes::Bytes::copy_from_slice(name), value);
    }
    Some(req)
}

/// Splits `data` at the first `sep` byte: `(before, after)`; all of it and
/// an empty rest when there is none.
pub fn split_at_byte(data: &[u8], sep: u8) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == sep) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// Takes one control byte off the front (0 when empty).
pub fn take_byte(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((b, rest)) => (*b, rest),
        None => (0, data),
    }
}
