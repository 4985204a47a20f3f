//! Request bodies arriving over HTTP/2 come in DATA frames of 16 KiB (what
//! curl and Go send whatever the server allows). Pingora writes each frame
//! to the upstream on its own: one syscall, one timer and one registry
//! wake-up per 16 KiB. Gathering frames into larger writes moves a blob
//! push at HTTP/1.1 speed for the price of one copy.

use bytes::{Bytes, BytesMut};

/// How much is gathered before it goes upstream.
pub const COALESCE_BYTES: usize = 512 << 10;

#[derive(Debug, Default)]
pub struct BodyCoalescer {
    pending: BytesMut,
}

impl BodyCoalescer {
    /// Takes the chunk in `body` and puts back what should be written now:
    /// the gathered bytes once there are enough or the body ends, else an
    /// empty chunk (which Pingora skips without ending the body).
    pub fn push(&mut self, body: &mut Option<Bytes>, end_of_stream: bool) {
        if let Some(chunk) = body.take() {
            // Large chunks and whole small bodies pass without a copy.
            if self.pending.is_empty() && (end_of_stream || chunk.len() >= COALESCE_BYTES) {
                *body = Some(chunk);
                return;
            }
            if self.pending.capacity() == 0 {
                self.pending.reserve(COALESCE_BYTES);
            }
            self.pending.extend_from_slice(&chunk);
        }
        if end_of_stream || self.pending.len() >= COALESCE_BYTES {
            if !self.pending.is_empty() {
                *body = Some(self.pending.split().freeze());
            }
        } else {
            *body = Some(Bytes::new());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds chunks through the coalescer; returns what would be written.
    fn run(chunks: &[usize], end_with_empty: bool) -> Vec<usize> {
        let mut c = BodyCoalescer::default();
        let mut out = Vec::new();
        let mut next = 0u8;
        let mut all_in = Vec::new();
        let mut all_out = Vec::new();
        let n = chunks.len();
        for (i, &len) in chunks.iter().enumerate() {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    next = next.wrapping_add(1);
                    next
                })
                .collect();
            all_in.extend_from_slice(&data);
            let mut body = Some(Bytes::from(data));
            c.push(&mut body, !end_with_empty && i + 1 == n);
            if let Some(b) = body.filter(|b| !b.is_empty()) {
                out.push(b.len());
                all_out.extend_from_slice(&b);
            }
        }
        if end_with_empty {
            let mut body = None;
            c.push(&mut body, true);
            if let Some(b) = body.filter(|b| !b.is_empty()) {
                out.push(b.len());
                all_out.extend_from_slice(&b);
            }
        }
        assert_eq!(all_in, all_out, "bytes must come out unchanged and in order");
        out
    }

    #[test]
    fn small_frames_are_gathered_and_the_rest_flushed_at_the_end() {
        let k16 = 16 << 10;
        let frames = vec![k16; 70]; // 1120 KiB
        assert_eq!(run(&frames, false), [COALESCE_BYTES, COALESCE_BYTES, 6 * k16]);
        assert_eq!(run(&frames, true), [COALESCE_BYTES, COALESCE_BYTES, 6 * k16]);
    }

    #[test]
    fn whole_small_bodies_and_big_chunks_pass_as_they_are() {
        assert_eq!(run(&[300], false), [300]);
        assert_eq!(run(&[COALESCE_BYTES * 2, 10], false), [COALESCE_BYTES * 2, 10]);
        assert_eq!(run(&[], true), Vec::<usize>::new());
    }
}
