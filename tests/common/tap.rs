//! A TCP proxy between the gateway and a real registry:2 that can slow the
//! registry's responses down and corrupt blob bodies on their way, for the
//! cache tests (single-flight fills, digest verification, crashes mid-fill).
//!
//! It speaks just enough HTTP/1.1 to find response bodies: request heads
//! (with `Content-Length` bodies) going up, response heads going down, one
//! response per request in order. Anything it cannot frame (a chunked
//! request, a response without a length) is passed through as raw bytes for
//! the rest of that connection.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::free_addr;

/// Bytes per write toward the client (and per pacing step).
const PIECE: usize = 64 * 1024;

struct Shared {
    target: SocketAddr,
    /// Bytes per second of response bytes, over all connections; 0: as fast as it goes.
    rate: AtomicU64,
    /// `sha256:<hex>`: GET responses for `/blobs/<digest>` get one byte flipped.
    flip: Mutex<Option<String>>,
    flipped: AtomicUsize,
    connections: AtomicUsize,
    /// When the next response byte may leave (pacing).
    next_slot: Mutex<Instant>,
    stop: AtomicBool,
    open: Mutex<Vec<TcpStream>>,
}

/// A throttling, corrupting TCP proxy in front of `target`. Stopped (every
/// connection cut) on drop.
pub struct Tap {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Tap {
    /// Listens on a free loopback port and forwards every connection to `target`.
    pub fn start(target: SocketAddr) -> Tap {
        let listener = (0..5)
            .find_map(|_| TcpListener::bind(free_addr()).ok())
            .expect("tap: 5 free ports in a row were taken");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            target,
            rate: AtomicU64::new(0),
            flip: Mutex::new(None),
            flipped: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            next_slot: Mutex::new(Instant::now()),
            stop: AtomicBool::new(false),
            open: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    s.connections.fetch_add(1, Ordering::SeqCst);
                    let s = s.clone();
                    std::thread::spawn(move || serve(conn, s));
                }
            }
        });
        Tap {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`: the gateway's upstream URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Limits response bytes (all connections together) to `bytes_per_second`;
    /// `None`: unlimited.
    pub fn set_rate(&self, bytes_per_second: Option<u64>) {
        self.shared.rate.store(bytes_per_second.unwrap_or(0), Ordering::SeqCst);
    }

    /// From now on, GET responses (200/206) to a target containing
    /// `/blobs/<digest>` get the byte in the middle of their body flipped;
    /// `None` stops it.
    pub fn flip_blob(&self, digest: Option<&str>) {
        *self.shared.flip.lock().unwrap() = digest.map(str::to_owned);
    }

    /// How many response bodies were corrupted so far.
    pub fn flipped(&self) -> usize {
        self.shared.flipped.load(Ordering::SeqCst)
    }

    /// How many connections it accepted.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        for s in self.shared.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// What the response to a forwarded request belongs to.
enum Pending {
    Request {
        method: String,
        target: String,
    },
    /// The request stream could not be framed: pass the rest through.
    Opaque,
}

type Queue = Arc<Mutex<VecDeque<Pending>>>;

fn serve(client: TcpStream, shared: Arc<Shared>) {
    let Ok(server) = TcpStream::connect_timeout(&shared.target, Duration::from_secs(5)) else {
        return; // dropping the client closes it, as a dead upstream would
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    {
        let mut open = shared.open.lock().unwrap();
        for s in [&client, &server] {
            if let Ok(c) = s.try_clone() {
                open.push(c);
            }
        }
    }
    let queue: Queue = Arc::default();
    let (c_read, s_write, q) = (client.try_clone().unwrap(), server.try_clone().unwrap(), queue.clone());
    let up = std::thread::spawn(move || {
        let _ = requests(c_read, &s_write, &q);
        let _ = s_write.shutdown(Shutdown::Write);
    });
    let result = responses(server.try_clone().unwrap(), &client, &queue, &shared);
    match result {
        Ok(()) => {
            let _ = client.shutdown(Shutdown::Write);
        }
        Err(_) => {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
    }
    let _ = up.join();
}

/// A head (request or status line and headers) exactly as received, with
/// its lines; `None` at a clean end of stream.
fn read_raw_head(r: &mut impl BufRead) -> io::Result<Option<(Vec<u8>, Vec<String>)>> {
    let mut raw = Vec::new();
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line)? == 0 {
            return if raw.is_empty() {
                Ok(None)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "stream ended inside a head",
                ))
            };
        }
        raw.extend_from_slice(&line);
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        if text.is_empty() {
            if lines.is_empty() {
                continue; // stray empty line before a head
            }
            return Ok(Some((raw, lines)));
        }
        lines.push(text);
    }
}

fn header<'a>(lines: &'a [String], name: &str) -> Option<&'a str> {
    lines[1..].iter().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn is_chunked(lines: &[String]) -> bool {
    header(lines, "transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
}

fn content_length(lines: &[String]) -> Option<u64> {
    header(lines, "content-length").and_then(|v| v.parse().ok())
}

/// Client to server: records each request before forwarding it.
fn requests(client: TcpStream, mut server: &TcpStream, queue: &Queue) -> io::Result<()> {
    let mut r = BufReader::with_capacity(PIECE, client);
    while let Some((raw, lines)) = read_raw_head(&mut r)? {
        let mut parts = lines[0].split(' ');
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        if is_chunked(&lines) {
            queue.lock().unwrap().push_back(Pending::Opaque);
            server.write_all(&raw)?;
            io::copy(&mut r, &mut server)?;
            return Ok(());
        }
        queue.lock().unwrap().push_back(Pending::Request { method, target });
        server.write_all(&raw)?;
        let n = content_length(&lines).unwrap_or(0);
        let copied = io::copy(&mut (&mut r).take(n), &mut server)?;
        if copied < n {
            return Ok(());
        }
    }
    Ok(())
}

/// Server to client: paced, with the flip applied to matching bodies.
fn responses(server: TcpStream, mut client: &TcpStream, queue: &Queue, shared: &Shared) -> io::Result<()> {
    let mut r = BufReader::with_capacity(PIECE, server);
    while let Some((raw, lines)) = read_raw_head(&mut r)? {
        let status: u16 = lines[0].split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        client.write_all(&raw)?;
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        let pending = queue.lock().unwrap().pop_front();
        let (method, target) = match pending {
            Some(Pending::Request { method, target }) if status != 101 => (method, target),
            _ => return copy_paced(&mut r, client, None, None, shared),
        };
        let no_body = method == "HEAD" || status == 204 || status == 304;
        let length = if no_body {
            Some(0)
        } else if is_chunked(&lines) {
            None
        } else {
            content_length(&lines)
        };
        let Some(n) = length else {
            return copy_paced(&mut r, client, None, None, shared);
        };
        let flip_at = {
            let flip = shared.flip.lock().unwrap();
            let hit = flip.as_ref().is_some_and(|d| target.contains(&format!("/blobs/{d}")));
            (hit && method == "GET" && matches!(status, 200 | 206) && n > 0).then_some(n / 2)
        };
        if flip_at.is_some() {
            shared.flipped.fetch_add(1, Ordering::SeqCst);
        }
        copy_paced(&mut r, client, Some(n), flip_at, shared)?;
    }
    Ok(())
}

/// Copies `len` bytes (`None`: to the end of the stream), flipping the byte
/// at offset `flip_at`. A stream that ends short is an error.
fn copy_paced(
    r: &mut impl Read,
    mut w: &TcpStream,
    len: Option<u64>,
    flip_at: Option<u64>,
    shared: &Shared,
) -> io::Result<()> {
    let mut buf = vec![0u8; PIECE];
    let mut done = 0u64;
    loop {
        let want = match len {
            Some(n) if done >= n => return Ok(()),
            Some(n) => ((n - done) as usize).min(PIECE),
            None => PIECE,
        };
        let k = r.read(&mut buf[..want])?;
        if k == 0 {
            return match len {
                None => Ok(()),
                Some(n) => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("upstream body ended after {done} of {n} bytes"),
                )),
            };
        }
        if let Some(at) = flip_at {
            if (done..done + k as u64).contains(&at) {
                buf[(at - done) as usize] ^= 0xff;
            }
        }
        pace(shared, k);
        w.write_all(&buf[..k])?;
        done += k as u64;
    }
}

/// Waits until `n` more bytes fit the configured rate.
fn pace(shared: &Shared, n: usize) {
    let rate = shared.rate.load(Ordering::SeqCst);
    if rate == 0 {
        return;
    }
    let wait = {
        let mut next = shared.next_slot.lock().unwrap();
        let now = Instant::now();
        if *next < now {
            *next = now;
        }
        *next += Duration::from_secs_f64(n as f64 / rate as f64);
        *next - now
    };
    std::thread::sleep(wait);
}
