//! A raw HTTP/1.1 client over `std::net::TcpStream`.
//!
//! It sends exactly the bytes it is given (no path normalisation, no header
//! rewriting), so tests can probe edge cases such as `/v2/../admin` or
//! `%2e%2e` that a real client library would clean up first.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

/// Default read timeout of client sockets.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub version: String,
    pub status: u16,
    pub reason: String,
    /// Header names as received, in order, with repeats.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// First value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, in order (case-insensitive name).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The header's value; panics with the whole response when absent.
    pub fn expect_header(&self, name: &str) -> &str {
        self.header(name)
            .unwrap_or_else(|| panic!("response has no {name} header:\n{}", self.describe()))
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics with the whole response otherwise.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}):\n{}", self.describe()))
    }

    /// Status line, headers and the beginning of the body, for assertion
    /// messages.
    pub fn describe(&self) -> String {
        let mut s = format!("{} {} {}\n", self.version, self.status, self.reason);
        for (k, v) in &self.headers {
            s.push_str(&format!("{k}: {v}\n"));
        }
        s.push('\n');
        let shown = &self.body[..self.body.len().min(600)];
        s.push_str(&String::from_utf8_lossy(shown));
        if self.body.len() > shown.len() {
            s.push_str(&format!("... ({} bytes in all)", self.body.len()));
        }
        s
    }
}

/// The status line and headers of a response, without its body.
#[derive(Debug, Clone)]
pub struct Head {
    pub version: String,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn into_response(self, body: Vec<u8>) -> Response {
        Response {
            version: self.version,
            status: self.status,
            reason: self.reason,
            headers: self.headers,
            body,
        }
    }
}

/// One client connection.
pub struct Conn {
    reader: BufReader<TcpStream>,
    addr: SocketAddr,
}

impl Conn {
    /// Connects or panics.
    pub fn open(addr: SocketAddr) -> Conn {
        Conn::try_open(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
    }

    pub fn try_open(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        stream.set_write_timeout(Some(READ_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            reader: BufReader::with_capacity(64 * 1024, stream),
            addr,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    pub fn set_read_timeout(&self, timeout: Duration) {
        self.stream().set_read_timeout(Some(timeout)).unwrap();
    }

    /// Writes exactly these bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes)
            .unwrap_or_else(|e| panic!("write to {}: {e}", self.addr));
    }

    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let s = self.reader.get_mut();
        s.write_all(bytes)?;
        s.flush()
    }

    /// Reads one status line and header block (which may be a 1xx interim
    /// response).
    pub fn read_head(&mut self) -> io::Result<Head> {
        read_head_from(&mut self.reader)
    }

    /// Reads a full response to a request made with `method`, skipping any
    /// 1xx interim responses.
    pub fn try_read_response(&mut self, method: &str) -> io::Result<Response> {
        loop {
            let head = self.read_head()?;
            if (100..200).contains(&head.status) && head.status != 101 {
                continue;
            }
            return self.read_body(method, head);
        }
    }

    pub fn read_response(&mut self, method: &str) -> Response {
        let addr = self.addr;
        self.try_read_response(method)
            .unwrap_or_else(|e| panic!("reading the response to {method} from {addr}: {e}"))
    }

    /// Reads the body belonging to `head`.
    pub fn read_body(&mut self, method: &str, head: Head) -> io::Result<Response> {
        read_body_from(&mut self.reader, method, head)
    }

    /// Reads up to `n` bytes of whatever comes next (for partial downloads).
    pub fn read_some(&mut self, n: usize) -> io::Result<Vec<u8>> {
        read_up_to(&mut self.reader, n)
    }

    /// Reads until the peer closes (or the read timeout passes).
    pub fn read_to_end(&mut self) -> io::Result<Vec<u8>> {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest)?;
        Ok(rest)
    }

    /// Closes both directions at once.
    pub fn abort(self) {
        let _ = self.reader.get_ref().shutdown(Shutdown::Both);
    }
}

enum Body {
    None,
    Bytes(Vec<u8>),
    Chunked(Vec<Vec<u8>>),
}

/// An HTTP/1.1 request, serialised exactly as built.
pub struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Body,
    close: bool,
}

impl Request {
    pub fn new(method: &str, target: &str) -> Request {
        Request {
            method: method.to_string(),
            target: target.to_string(),
            headers: Vec::new(),
            body: Body::None,
            close: true,
        }
    }
    pub fn get(target: &str) -> Request {
        Request::new("GET", target)
    }
    pub fn head(target: &str) -> Request {
        Request::new("HEAD", target)
    }
    pub fn post(target: &str) -> Request {
        Request::new("POST", target)
    }
    pub fn put(target: &str) -> Request {
        Request::new("PUT", target)
    }
    pub fn patch(target: &str) -> Request {
        Request::new("PATCH", target)
    }
    pub fn delete(target: &str) -> Request {
        Request::new("DELETE", target)
    }

    pub fn method(&self) -> &str {
        &self.method
    }

    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// A body sent with `Content-Length`.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = Body::Bytes(body.into());
        self
    }

    /// A body sent with `Transfer-Encoding: chunked`, one HTTP chunk per
    /// element, and no `Content-Length`.
    pub fn chunked(mut self, chunks: Vec<Vec<u8>>) -> Request {
        self.body = Body::Chunked(chunks);
        self
    }

    /// Keep the connection open after the response (no `Connection: close`).
    pub fn keep_alive(mut self) -> Request {
        self.close = false;
        self
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name))
    }

    /// The request line and headers (with `Host: <addr>` unless a Host header
    /// was given, and framing headers for the body).
    pub fn head_bytes(&self, addr: SocketAddr) -> Vec<u8> {
        let mut s = format!("{} {} HTTP/1.1\r\n", self.method, self.target);
        if !self.has_header("host") {
            s.push_str(&format!("Host: {addr}\r\n"));
        }
        for (k, v) in &self.headers {
            s.push_str(&format!("{k}: {v}\r\n"));
        }
        match &self.body {
            Body::Bytes(b) => {
                if !self.has_header("content-length") {
                    s.push_str(&format!("Content-Length: {}\r\n", b.len()));
                }
            }
            Body::Chunked(_) => {
                if !self.has_header("transfer-encoding") {
                    s.push_str("Transfer-Encoding: chunked\r\n");
                }
            }
            Body::None => {
                let m = self.method.as_str();
                if (m == "POST" || m == "PUT" || m == "PATCH")
                    && !self.has_header("content-length")
                    && !self.has_header("transfer-encoding")
                {
                    s.push_str("Content-Length: 0\r\n");
                }
            }
        }
        if self.close && !self.has_header("connection") {
            s.push_str("Connection: close\r\n");
        }
        s.push_str("\r\n");
        s.into_bytes()
    }

    /// The framed body bytes.
    pub fn body_bytes(&self) -> Vec<u8> {
        match &self.body {
            Body::None => Vec::new(),
            Body::Bytes(b) => b.clone(),
            Body::Chunked(chunks) => {
                let mut out = Vec::new();
                for c in chunks.iter().filter(|c| !c.is_empty()) {
                    out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                    out.extend_from_slice(c);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
                out
            }
        }
    }

    /// The whole request as it goes on the wire.
    pub fn to_bytes(&self, addr: SocketAddr) -> Vec<u8> {
        let mut out = self.head_bytes(addr);
        out.extend(self.body_bytes());
        out
    }

    /// Sends the request on a new connection and reads the response.
    pub fn send(&self, addr: SocketAddr) -> Response {
        self.try_send(addr)
            .unwrap_or_else(|e| panic!("{} {} to {addr} failed: {e}", self.method, self.target))
    }

    pub fn try_send(&self, addr: SocketAddr) -> io::Result<Response> {
        let mut conn = Conn::try_open(addr)?;
        conn.try_send(&self.to_bytes(addr))?;
        conn.try_read_response(&self.method)
    }

    /// Sends the request on a new connection and reads only the status line
    /// and headers (the body is left unread). For responses whose body may be
    /// malformed, e.g. registry:2's 416 declares the blob's length as its
    /// Content-Length but sends a short text.
    pub fn send_head_only(&self, addr: SocketAddr) -> Response {
        let mut conn = Conn::open(addr);
        conn.send(&self.to_bytes(addr));
        loop {
            let head = conn
                .read_head()
                .unwrap_or_else(|e| panic!("{} {} to {addr} failed: {e}", self.method, self.target));
            if !(100..200).contains(&head.status) {
                return head.into_response(Vec::new());
            }
        }
    }

    /// Sends the request on an existing connection and reads the response.
    pub fn send_on(&self, conn: &mut Conn) -> Response {
        let addr = conn.addr();
        conn.send(&self.to_bytes(addr));
        conn.read_response(&self.method)
    }
}

/// Connects, writes `bytes` (typically a request head plus part of its body),
/// lingers for `hold`, then closes the connection without finishing.
pub fn send_then_abort(addr: SocketAddr, bytes: &[u8], hold: Duration) {
    let mut conn = Conn::open(addr);
    conn.send(bytes);
    std::thread::sleep(hold);
    conn.abort();
}

/// Like [`send_then_abort`], on a background thread.
pub fn spawn_send_then_abort(addr: SocketAddr, bytes: Vec<u8>, hold: Duration) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || send_then_abort(addr, &bytes, hold))
}

/// The path-and-query of a `Location` value: `http://h:p/v2/x?y` → `/v2/x?y`;
/// a relative location is returned unchanged.
pub fn path_of(location: &str) -> String {
    match location.split_once("://") {
        Some((_, rest)) => match rest.find('/') {
            Some(i) => rest[i..].to_string(),
            None => "/".to_string(),
        },
        None => location.to_string(),
    }
}

/// Appends a query parameter to a path that may already have a query.
pub fn with_query(path: &str, param: &str) -> String {
    if path.contains('?') {
        format!("{path}&{param}")
    } else {
        format!("{path}?{param}")
    }
}

/// Asserts that a response is the gateway's JSON error with `status` and
/// `code`.
#[track_caller]
pub fn assert_json_error(rsp: &Response, status: u16, code: &str) {
    assert_eq!(rsp.status, status, "unexpected status:\n{}", rsp.describe());
    let ct = rsp.header("content-type").unwrap_or("");
    assert!(
        ct.starts_with("application/json"),
        "error body must be application/json, got {ct:?}:\n{}",
        rsp.describe()
    );
    let v = rsp.json();
    let errors = v["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors array in the body:\n{}", rsp.describe()));
    assert!(!errors.is_empty(), "empty errors array:\n{}", rsp.describe());
    assert_eq!(
        errors[0]["code"].as_str(),
        Some(code),
        "wrong error code:\n{}",
        rsp.describe()
    );
    assert!(
        errors[0]["message"].is_string(),
        "error has no message string:\n{}",
        rsp.describe()
    );
}

/// Asserts `Docker-Distribution-Api-Version: registry/2.0` appears exactly
/// once.
#[track_caller]
pub fn assert_api_version_once(rsp: &Response) {
    let values = rsp.header_all("docker-distribution-api-version");
    assert_eq!(
        values,
        vec!["registry/2.0"],
        "Docker-Distribution-Api-Version must appear exactly once:\n{}",
        rsp.describe()
    );
}

/// Replaces `line` with the next line; end of stream is an error saying `what`.
fn read_line_or_eof(r: &mut impl BufRead, line: &mut String, what: &str) -> io::Result<()> {
    line.clear();
    if r.read_line(line)? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, what.to_owned()));
    }
    Ok(())
}

/// Reads one status line and header block from any buffered stream (plain
/// TCP or TLS); it may be a 1xx interim response.
pub fn read_head_from(r: &mut impl BufRead) -> io::Result<Head> {
    let mut line = String::new();
    // Tolerate stray empty lines before a status line.
    loop {
        read_line_or_eof(r, &mut line, "connection closed before a response")?;
        if !line.trim_end().is_empty() {
            break;
        }
    }
    let status_line = line.trim_end().to_string();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("").to_string();
    if !version.starts_with("HTTP/") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not an HTTP status line: {status_line:?}"),
        ));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("bad status line: {status_line:?}")))?;
    let reason = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        read_line_or_eof(r, &mut line, "connection closed inside a header block")?;
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        let (k, v) = l
            .split_once(':')
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("bad header line: {l:?}")))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok(Head {
        version,
        status,
        reason,
        headers,
    })
}

/// Reads the body belonging to `head` from any buffered stream.
pub fn read_body_from(r: &mut impl BufRead, method: &str, head: Head) -> io::Result<Response> {
    let no_body = method.eq_ignore_ascii_case("HEAD")
        || head.status == 204
        || head.status == 304
        || (100..200).contains(&head.status);
    if no_body {
        return Ok(head.into_response(Vec::new()));
    }
    let chunked = head
        .header("transfer-encoding")
        .map(|v| v.to_ascii_lowercase().contains("chunked"))
        .unwrap_or(false);
    let body = if chunked {
        read_chunked(r)?
    } else if let Some(len) = head.header("content-length") {
        let len: usize = len
            .trim()
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("bad Content-Length {len:?}")))?;
        let mut body = vec![0; len];
        r.read_exact(&mut body)?;
        body
    } else {
        let mut body = Vec::new();
        // A TLS peer closing without close_notify ends the body too.
        match r.read_to_end(&mut body) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {}
            Err(e) => return Err(e),
        }
        body
    };
    Ok(head.into_response(body))
}

fn read_chunked(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let size_text = line.trim().split(';').next().unwrap_or("").trim().to_string();
        let size = usize::from_str_radix(&size_text, 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("bad chunk size {line:?}")))?;
        if size == 0 {
            // Trailers until an empty line.
            loop {
                line.clear();
                let n = r.read_line(&mut line)?;
                if n == 0 || line.trim_end().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf)?;
    }
}

/// Reads `n` bytes, or fewer when the stream ends first.
pub fn read_up_to(r: &mut impl Read, n: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; n];
    let mut got = 0;
    while got < n {
        let k = r.read(&mut buf[got..])?;
        if k == 0 {
            break;
        }
        got += k;
    }
    buf.truncate(got);
    Ok(buf)
}
