//! Waits for a request head on a plain TCP connection before Pingora's
//! HTTP session exists, and puts the bytes back for it to parse.
//!
//! Pingora allocates its request future (about 14 KiB) and a 4 KiB head
//! buffer when it starts reading a request, so an idle keep-alive
//! connection, or one whose head is trickling in, held about 20 KiB more
//! than the bytes it had sent. Here it holds the stream and what it has
//! sent. The same read syscalls happen; the bytes are copied once more.

use std::time::Duration;

use pingora::apps::HttpPersistentSettings;
use pingora::prelude::fast_timeout::fast_timeout;
use pingora::protocols::Stream;
use pingora::protocols::l4::stream::Stream as TcpStream;
use tokio::io::AsyncReadExt;

/// Past this the head is handed to Pingora unfinished; it reads the rest
/// under its own limits.
const MAX_PREFETCH: usize = 8 * 1024;
const FIRST_READ: usize = 1024;

pub enum Prefetch {
    /// Ready for Pingora: the head (or its first `MAX_PREFETCH` bytes, or
    /// whatever came before the client closed) is put back into the stream;
    /// `complete` when it ends with its blank line.
    Ready { stream: Stream, complete: bool },
    /// The client closed, or reading failed, before sending a byte.
    Closed,
    /// Nothing arrived within the idle limit.
    Idle,
    /// The head started but did not end within the head limit.
    Unfinished,
}

/// Whether this stream can be prefetched from: plain TCP only (a TLS
/// stream cannot take bytes back).
pub fn applies(stream: &Stream) -> bool {
    stream.as_any().is::<TcpStream>()
}

/// How long a head may take.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    /// A new connection: the first byte and the rest of the head together.
    Whole(Duration),
    /// A kept-alive one: `idle` for the first byte, then `head` for the rest.
    AfterIdle { idle: Duration, head: Duration },
}

/// Waits for a head within `budget`. Call only when [`applies`] is true.
pub async fn read_head(stream: Stream, budget: Budget) -> Prefetch {
    let started = std::time::Instant::now();
    let (idle, head) = match budget {
        Budget::Whole(limit) => (limit, None),
        Budget::AfterIdle { idle, head } => (idle, Some(head)),
    };
    let Ok(mut tcp) = stream.into_any().downcast::<TcpStream>() else {
        unreachable!("read_head called on a stream `applies` refused");
    };
    let mut buf = Vec::with_capacity(FIRST_READ);
    match fast_timeout(idle, tcp.read_buf(&mut buf)).await {
        Err(_) => return Prefetch::Idle,
        Ok(Ok(0) | Err(_)) => return Prefetch::Closed,
        Ok(Ok(_)) => {}
    }
    let mut complete = head_ended(&buf, 0);
    // Not HTTP (a TLS ClientHello from a client trying https first):
    // Pingora refuses it now rather than after the head timeout.
    if !complete && could_start_a_request(&buf) {
        let rest = async {
            while buf.len() < MAX_PREFETCH {
                if buf.len() == buf.capacity() {
                    buf.reserve(buf.len());
                }
                let scanned = buf.len().saturating_sub(3);
                match tcp.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return false,
                    Ok(_) if head_ended(&buf, scanned) => return true,
                    Ok(_) => {}
                }
            }
            false
        };
        let head = head.unwrap_or_else(|| idle.saturating_sub(started.elapsed()));
        match fast_timeout(head, rest).await {
            Ok(ended) => complete = ended,
            Err(_) => return Prefetch::Unfinished,
        }
    }
    tcp.rewind(&buf);
    Prefetch::Ready { stream: tcp, complete }
}

/// Whether `buf` can be the start of an HTTP/1 request: optional blank
/// lines, then a method token up to the first space.
fn could_start_a_request(buf: &[u8]) -> bool {
    let start = buf
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(buf.len());
    let method = buf[start..].split(|&b| b == b' ').next().unwrap_or_default();
    method
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A blank line (`\r\n\r\n` or `\n\n`) at or after `from`.
fn head_ended(buf: &[u8], from: usize) -> bool {
    let tail = &buf[from.min(buf.len())..];
    tail.iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && matches!(&tail[i + 1..], [b'\n', ..] | [b'\r', b'\n', ..]))
}

/// Whether the previous request left the start of the next one (a
/// pipelined request) in `settings`; its bytes are not in the socket, so
/// waiting there could wait forever. Pingora has no getter for them, only
/// `Debug`: the probe stops formatting at that field. When the field is
/// not found (another Pingora), it answers yes, which only skips the wait.
pub fn carries_pipelined_bytes(settings: &HttpPersistentSettings) -> bool {
    use std::fmt::Write;
    #[derive(Default)]
    struct Probe {
        at_field: bool,
        answer: Option<bool>,
    }
    impl Write for Probe {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            if s == "pipelined_prefix" {
                self.at_field = true;
            } else if self.at_field && s != ": " {
                self.answer = Some(s != "None");
                return Err(std::fmt::Error);
            }
            Ok(())
        }
    }
    let mut probe = Probe::default();
    let _ = write!(probe, "{settings:?}");
    probe.answer.unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::protocols::http::ServerSession;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream as Client};

    /// A connected pair: the client end and the server end as Pingora's stream.
    async fn pair() -> (Client, Stream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = Client::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, Box::new(TcpStream::from(server)))
    }

    const SECOND: Duration = Duration::from_secs(1);
    const SHORT: Duration = Duration::from_millis(100);

    #[tokio::test]
    async fn a_head_sent_in_pieces_is_handed_over_whole() {
        let (mut client, server) = pair().await;
        assert!(applies(&server));
        let reading = tokio::spawn(read_head(server, Budget::Whole(SECOND)));
        client.write_all(b"GET /v2/ HTTP/1.1\r\nHo").await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        client.write_all(b"st: a\r\n\r\nnext").await.unwrap();
        let Prefetch::Ready {
            mut stream,
            complete: true,
        } = reading.await.unwrap()
        else {
            panic!("no head");
        };
        drop(client);
        let mut all = Vec::new();
        stream.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"GET /v2/ HTTP/1.1\r\nHost: a\r\n\r\nnext");
    }

    #[tokio::test]
    async fn silence_closing_and_a_stalled_head_are_told_apart() {
        let (_client, server) = pair().await;
        let kept_alive = |idle, head| Budget::AfterIdle { idle, head };
        assert!(matches!(
            read_head(server, kept_alive(SHORT, SECOND)).await,
            Prefetch::Idle
        ));
        let (client, server) = pair().await;
        drop(client);
        assert!(matches!(
            read_head(server, Budget::Whole(SECOND)).await,
            Prefetch::Closed
        ));
        let (mut client, server) = pair().await;
        client.write_all(b"GET /v2/ HTTP/1.1\r\n").await.unwrap();
        assert!(matches!(
            read_head(server, kept_alive(SECOND, SHORT)).await,
            Prefetch::Unfinished
        ));
        // A new connection's head has one budget for all of it.
        let (mut client, server) = pair().await;
        let reading = tokio::spawn(read_head(server, Budget::Whole(Duration::from_millis(300))));
        tokio::time::sleep(Duration::from_millis(200)).await;
        client.write_all(b"GET /v2/ HTTP/1.1\r\n").await.unwrap();
        assert!(matches!(reading.await.unwrap(), Prefetch::Unfinished));
    }

    #[tokio::test]
    async fn pipelined_bytes_in_the_settings_are_seen() {
        let (_client, server) = pair().await;
        let session = ServerSession::new_http1(server);
        let mut settings = HttpPersistentSettings::for_session(&session);
        assert!(!carries_pipelined_bytes(&settings));
        settings.set_pipelined_prefix(bytes::BytesMut::from(&b"GET"[..]));
        assert!(carries_pipelined_bytes(&settings));
    }

    #[tokio::test]
    async fn bytes_that_cannot_start_a_request_are_handed_over_at_once() {
        let (mut client, server) = pair().await;
        let reading = tokio::spawn(read_head(server, Budget::Whole(Duration::from_secs(30))));
        // The first bytes of a TLS ClientHello.
        client.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await.unwrap();
        let done = tokio::time::timeout(SECOND, reading).await;
        assert!(
            matches!(done, Ok(Ok(Prefetch::Ready { complete: false, .. }))),
            "a TLS hello waited for the head timeout"
        );
        assert!(could_start_a_request(b"\r\nGET /v2/ HT"));
        assert!(could_start_a_request(b"PATC"));
        assert!(!could_start_a_request(b"GET\x00 /"));
    }

    #[test]
    fn the_end_of_a_head_is_a_blank_line() {
        assert!(head_ended(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0));
        assert!(head_ended(b"GET / HTTP/1.1\nHost: a\n\n", 0));
        assert!(head_ended(b"GET / HTTP/1.1\r\n\r\nbody", 10));
        assert!(!head_ended(b"GET / HTTP/1.1\r\nHost: a\r\n", 0));
        assert!(!head_ended(b"GET / HTTP/1.1\r\nHost: a\r\n\r", 0));
        assert!(!head_ended(b"", 0));
        assert!(!head_ended(b"\r\n\r\n", 9));
    }
}
