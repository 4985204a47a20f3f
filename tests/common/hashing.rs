//! A client that streams a response body through SHA-256 without holding
//! it, and says whether the body arrived whole by its framing.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::http::{READ_TIMEOUT, Request, read_head_from};
use super::oci::hex;

/// A response whose body was hashed while it streamed by.
#[derive(Clone, Debug)]
pub struct Hashed {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Body bytes received.
    pub len: u64,
    /// `sha256:<hex>` of the bytes received.
    pub sha256: String,
    /// The body arrived whole by its framing (all of Content-Length, or
    /// the last chunk); false when the connection ended or failed first.
    pub complete: bool,
    /// Why the body was cut, when it was.
    pub error: Option<String>,
    /// The first 64 KiB of the body (error documents).
    pub prefix: Vec<u8>,
}

impl Hashed {
    pub fn header(&self, name: &str) -> Option<&str> {
        (self.headers.iter())
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A 200 whose body arrived whole.
    pub fn served_whole(&self) -> bool {
        self.status == 200 && self.complete
    }

    pub fn describe(&self) -> String {
        let mut s = format!("status {}\n", self.status);
        for (k, v) in &self.headers {
            s.push_str(&format!("{k}: {v}\n"));
        }
        s.push_str(&format!(
            "body: {} bytes, {}, complete: {}, error: {:?}\n",
            self.len, self.sha256, self.complete, self.error
        ));
        if self.status != 200 {
            s.push_str(&String::from_utf8_lossy(&self.prefix[..self.prefix.len().min(600)]));
        }
        s
    }
}

struct Sink {
    hasher: Sha256,
    len: u64,
    prefix: Vec<u8>,
}

impl Sink {
    fn take(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        let room = (64 * 1024usize).saturating_sub(self.prefix.len());
        self.prefix.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// Reads `n` bytes into the sink; Err when the stream ends first.
    fn read_exact(&mut self, r: &mut impl Read, n: u64) -> io::Result<()> {
        let mut buf = vec![0u8; 256 * 1024];
        let mut left = n;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let k = r.read(&mut buf[..want])?;
            if k == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("connection closed after {} of {n} bytes", n - left),
                ));
            }
            self.take(&buf[..k]);
            left -= k as u64;
        }
        Ok(())
    }
}

fn read_chunked_into(r: &mut impl BufRead, sink: &mut Sink) -> io::Result<()> {
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before the last chunk",
            ));
        }
        let size_text = line.trim().split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(size_text, 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("bad chunk size {line:?}")))?;
        if size == 0 {
            loop {
                line.clear();
                if r.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                    return Ok(());
                }
            }
        }
        sink.read_exact(r, size)?;
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf)?;
    }
}

impl Request {
    /// Sends the request on a new connection and streams the body through
    /// SHA-256 without keeping it (except its first 64 KiB). A body cut
    /// short is reported (`complete: false`), not a panic.
    pub fn send_hashing(&self, addr: SocketAddr) -> Hashed {
        let what = format!("{} to {addr}", self.method());
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{what}: connect: {e}"));
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .write_all(&self.to_bytes(addr))
            .unwrap_or_else(|e| panic!("{what}: write: {e}"));
        let mut r = BufReader::with_capacity(256 * 1024, stream);
        let head = loop {
            let head = read_head_from(&mut r).unwrap_or_else(|e| panic!("{what}: no response head: {e}"));
            if !(100..200).contains(&head.status) || head.status == 101 {
                break head;
            }
        };
        let find = |name: &str| {
            (head.headers.iter())
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_string())
        };
        let mut sink = Sink {
            hasher: Sha256::new(),
            len: 0,
            prefix: Vec::new(),
        };
        let no_body = self.method() == "HEAD" || head.status == 204 || head.status == 304;
        let chunked = find("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let result = if no_body {
            Ok(())
        } else if chunked {
            read_chunked_into(&mut r, &mut sink)
        } else if let Some(n) = find("content-length") {
            match n.parse::<u64>() {
                Ok(n) => sink.read_exact(&mut r, n),
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad Content-Length {n:?}"),
                )),
            }
        } else {
            // Framed by the end of the connection: whole unless it failed.
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                match r.read(&mut buf) {
                    Ok(0) => break Ok(()),
                    Ok(k) => sink.take(&buf[..k]),
                    Err(e) => break Err(e),
                }
            }
        };
        Hashed {
            status: head.status,
            headers: head.headers,
            len: sink.len,
            sha256: format!("sha256:{}", hex(&sink.hasher.finalize())),
            complete: result.is_ok(),
            error: result.err().map(|e| e.to_string()),
            prefix: sink.prefix,
        }
    }
}
