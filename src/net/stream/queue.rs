//! The write queue of a stream transport: the bytes `write()` could not send at once, in
//! order, flushed with one vectored send per writable event.

use std::collections::VecDeque;
use std::io::IoSlice;

/// Small writes are appended to the last chunk up to this size, so that a burst of them
/// is flushed with few iovecs.
const COALESCE_LIMIT: usize = 16 * 1024;
/// At most this many chunks per vectored send (Linux's `IOV_MAX` is 1024).
const MAX_IOVECS: usize = 64;

/// Queued bytes: chunks, the first of them partly sent up to `head`.
#[derive(Default)]
pub(crate) struct WriteQueue {
    chunks: VecDeque<Vec<u8>>,
    head: usize,
    len: usize,
}

impl WriteQueue {
    /// How many bytes are queued (`get_write_buffer_size()`).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues a copy of `data` after what is queued.
    pub(crate) fn push(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.len += data.len();
        if let Some(last) = self.chunks.back_mut() {
            if last.len() + data.len() <= COALESCE_LIMIT {
                last.extend_from_slice(data);
                return;
            }
        }
        self.chunks.push_back(data.to_vec());
    }

    /// Drops everything queued (`abort()`, a fatal error).
    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
        self.head = 0;
        self.len = 0;
    }

    /// The queued bytes as iovecs, oldest first (up to [`MAX_IOVECS`] of them).
    pub(crate) fn slices(&self) -> Vec<IoSlice<'_>> {
        self.chunks
            .iter()
            .take(MAX_IOVECS)
            .enumerate()
            .map(|(i, c)| IoSlice::new(if i == 0 { &c[self.head..] } else { c }))
            .collect()
    }

    /// Forgets the first `n` bytes, which were sent.
    pub(crate) fn consume(&mut self, mut n: usize) {
        self.len -= n.min(self.len);
        while n > 0 {
            let Some(first) = self.chunks.front() else {
                break;
            };
            let left = first.len() - self.head;
            if n >= left {
                n -= left;
                self.chunks.pop_front();
                self.head = 0;
            } else {
                self.head += n;
                n = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(q: &WriteQueue) -> Vec<u8> {
        q.slices().iter().flat_map(|s| s.to_vec()).collect()
    }

    #[test]
    fn keeps_order_across_partial_sends() {
        let mut q = WriteQueue::default();
        q.push(b"hello ");
        q.push(&vec![b'x'; COALESCE_LIMIT]);
        q.push(b"world");
        assert_eq!(q.len(), 6 + COALESCE_LIMIT + 5);
        q.consume(3);
        let rest = flat(&q);
        assert!(rest.starts_with(b"lo xxx"));
        assert!(rest.ends_with(b"xxworld"));
        q.consume(3 + COALESCE_LIMIT);
        assert_eq!(flat(&q), b"world");
        q.consume(5);
        assert!(q.is_empty());
        assert!(q.slices().is_empty());
    }
}
