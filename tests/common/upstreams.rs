//! Tiny fake upstreams built on `std::net::TcpListener`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A request as an upstream received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The request line and header block exactly as received.
    pub raw_head: String,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Headers whose name starts with `prefix` (case-insensitive).
    pub fn headers_starting_with(&self, prefix: &str) -> Vec<(&str, &str)> {
        self.headers
            .iter()
            .filter(|(k, _)| k.to_ascii_lowercase().starts_with(&prefix.to_ascii_lowercase()))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

struct Shared {
    requests: Mutex<Vec<RecordedRequest>>,
    stop: AtomicBool,
}

/// An upstream that records every request and answers `200` with a small
/// JSON body. A few paths answer with a `Location` header so that response
/// rewriting can be observed:
///
/// * `/v2/loc/upstream` → `Location: http://<its own addr>/v2/next?x=1`
/// * `/v2/loc/elsewhere` → `Location: http://elsewhere.example/v2/next?x=1`
/// * `/v2/loc/relative` → `Location: /v2/next?x=1`
/// * `/v2/stream/chunked?size=N` → `Transfer-Encoding: chunked` body of
///   [`chunked_payload`]`(N)`, in chunks of uneven sizes
pub struct RecordingUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl RecordingUpstream {
    pub fn start() -> RecordingUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind recording upstream");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    let s = s.clone();
                    std::thread::spawn(move || serve_recording(conn, addr, s));
                }
            }
        });
        RecordingUpstream {
            addr,
            shared,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What reached it, leaving out the gateway's health checks.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        let all = self.shared.requests.lock().unwrap().clone();
        all.into_iter()
            .filter(|r| {
                !r.header("user-agent")
                    .is_some_and(|a| a.starts_with(super::registry::HEALTH_CHECK_AGENT))
            })
            .collect()
    }

    /// The recorded request whose target contains `needle`; panics when none
    /// did.
    pub fn request_with(&self, needle: &str) -> RecordedRequest {
        let reqs = self.requests();
        reqs.iter()
            .find(|r| r.target.contains(needle))
            .cloned()
            .unwrap_or_else(|| {
                panic!(
                    "upstream never received a request for {needle:?}; it saw: {:?}",
                    reqs.iter().map(|r| &r.target).collect::<Vec<_>>()
                )
            })
    }
}

impl Drop for RecordingUpstream {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_recording(conn: TcpStream, own: SocketAddr, shared: Arc<Shared>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut writer = match conn.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(conn);
    loop {
        let mut raw_head = String::new();
        let mut line = String::new();
        // Request line.
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if !line.trim_end().is_empty() {
                break;
            }
        }
        raw_head.push_str(&line);
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            raw_head.push_str(&line);
            let l = line.trim_end_matches(['\r', '\n']);
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let find = |name: &str| {
            headers
                .iter()
                .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if find("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16).unwrap_or(0);
                if size == 0 {
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim_end().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                let start = body.len();
                body.resize(start + size, 0);
                if reader.read_exact(&mut body[start..]).is_err() {
                    return;
                }
                let mut crlf = [0u8; 2];
                let _ = reader.read_exact(&mut crlf);
            }
        } else if let Some(len) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
            body.resize(len, 0);
            if reader.read_exact(&mut body).is_err() {
                return;
            }
        }
        let location = if target.starts_with("/v2/loc/upstream") {
            Some(format!("http://{own}/v2/next?x=1"))
        } else if target.starts_with("/v2/loc/elsewhere") {
            Some("http://elsewhere.example/v2/next?x=1".to_string())
        } else if target.starts_with("/v2/loc/relative") {
            Some("/v2/next?x=1".to_string())
        } else {
            None
        };
        shared.requests.lock().unwrap().push(RecordedRequest {
            method: method.clone(),
            target: target.clone(),
            headers,
            body,
            raw_head,
        });
        if let Some(size) = target
            .strip_prefix("/v2/stream/chunked?size=")
            .and_then(|n| n.parse::<usize>().ok())
        {
            let data = chunked_payload(size);
            let mut out = Vec::from(
                &b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            );
            if method != "HEAD" {
                let mut rest = &data[..];
                let mut step = 1usize;
                while !rest.is_empty() {
                    let n = rest.len().min(step);
                    out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                    out.extend_from_slice(&rest[..n]);
                    out.extend_from_slice(b"\r\n");
                    rest = &rest[n..];
                    step = (step * 7 + 3) % 200_000 + 1;
                }
                out.extend_from_slice(b"0\r\n\r\n");
            }
            if writer.write_all(&out).is_err() {
                return;
            }
            continue;
        }
        let payload = br#"{"recorded":true}"#;
        let mut rsp = String::from("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n");
        if let Some(l) = location {
            rsp.push_str(&format!("Location: {l}\r\n"));
        }
        rsp.push_str(&format!("Content-Length: {}\r\n\r\n", payload.len()));
        let mut out = rsp.into_bytes();
        if method != "HEAD" {
            out.extend_from_slice(payload);
        }
        if writer.write_all(&out).is_err() {
            return;
        }
    }
}

/// An upstream that accepts connections, reads whatever arrives and never
/// answers (for timeout tests).
pub struct StallingUpstream {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl StallingUpstream {
    pub fn start() -> StallingUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind stalling upstream");
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (st, cs) = (stop.clone(), conns.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    cs.lock().unwrap().push(conn);
                }
            }
        });
        StallingUpstream {
            addr,
            stop,
            thread: Some(thread),
            conns,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many connections it accepted.
    pub fn accepted(&self) -> usize {
        self.conns.lock().unwrap().len()
    }
}

impl Drop for StallingUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for c in self.conns.lock().unwrap().iter() {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

/// The body `/v2/stream/chunked?size=N` answers with.
pub fn chunked_payload(size: usize) -> Vec<u8> {
    super::oci::random_bytes(0xC4C4, size)
}
