//! The write queue of a stream transport: the bytes `write()` could not send at once, in
//! order, flushed with one vectored send per writable event.
//!
//! A chunk is a copy of the bytes, or (for a large `bytes` object, which is immutable) a
//! reference to the object itself: no copy and no allocation for the bulk of a large
//! write, as uvloop keeps its write's object.

use std::collections::VecDeque;
use std::io::IoSlice;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// Small writes are appended to the last chunk up to this size, so that a burst of them
/// is flushed with few iovecs.
const COALESCE_LIMIT: usize = 16 * 1024;
/// At most this many chunks per vectored send (Linux's `IOV_MAX` is 1024).
const MAX_IOVECS: usize = 64;

/// A `bytes` object shorter than this is copied into the queue rather than referenced.
pub(crate) const SHARE_THRESHOLD: usize = COALESCE_LIMIT;

/// One queued chunk.
enum Chunk {
    Owned(Vec<u8>),
    /// `obj[start..start + len]` of an immutable `bytes` object.
    Shared {
        obj: Py<PyBytes>,
        start: usize,
        len: usize,
    },
}

impl Chunk {
    fn len(&self) -> usize {
        match self {
            Chunk::Owned(v) => v.len(),
            Chunk::Shared { len, .. } => *len,
        }
    }

    fn bytes<'a>(&'a self, py: Python<'_>) -> &'a [u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Shared { obj, start, len } => &obj.as_bytes(py)[*start..*start + *len],
        }
    }
}

/// Queued bytes: chunks, the first of them partly sent up to `head`.
#[derive(Default)]
pub(crate) struct WriteQueue {
    chunks: VecDeque<Chunk>,
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
        if let Some(Chunk::Owned(last)) = self.chunks.back_mut() {
            if last.len() + data.len() <= COALESCE_LIMIT {
                last.extend_from_slice(data);
                return;
            }
        }
        self.chunks.push_back(Chunk::Owned(data.to_vec()));
    }

    /// Queues `obj[start..]` after what is queued: by reference if it is at least
    /// [`SHARE_THRESHOLD`] bytes long (a `bytes` object never changes), else a copy.
    pub(crate) fn push_bytes(&mut self, obj: &Bound<'_, PyBytes>, start: usize) {
        let data = &obj.as_bytes()[start..];
        if data.len() < SHARE_THRESHOLD {
            self.push(data);
            return;
        }
        self.len += data.len();
        self.chunks.push_back(Chunk::Shared {
            obj: obj.clone().unbind(),
            start,
            len: data.len(),
        });
    }

    /// Drops everything queued (`abort()`, a fatal error).
    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
        self.head = 0;
        self.len = 0;
    }

    /// The queued bytes as iovecs, oldest first (up to [`MAX_IOVECS`] of them).
    pub(crate) fn slices(&self, py: Python<'_>) -> Vec<IoSlice<'_>> {
        self.chunks
            .iter()
            .take(MAX_IOVECS)
            .enumerate()
            .map(|(i, c)| {
                let b = c.bytes(py);
                IoSlice::new(if i == 0 { &b[self.head..] } else { b })
            })
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
        Python::initialize();
        Python::attach(|py| q.slices(py).iter().flat_map(|s| s.to_vec()).collect())
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
        assert!(flat(&q).is_empty());
    }

    #[test]
    fn shares_large_bytes_and_copies_small_ones() {
        Python::initialize();
        Python::attach(|py| {
            let mut q = WriteQueue::default();
            let big = PyBytes::new(py, &vec![b'b'; SHARE_THRESHOLD + 10]);
            q.push(b"head ");
            q.push_bytes(&big, 10);
            q.push_bytes(&PyBytes::new(py, b"tail"), 1);
            assert_eq!(q.chunks.len(), 3);
            assert!(matches!(q.chunks[1], Chunk::Shared { .. }));
            assert_eq!(q.len(), 5 + SHARE_THRESHOLD + 3);
            q.consume(7);
            let rest = flat(&q);
            assert_eq!(rest.len(), SHARE_THRESHOLD - 2 + 3);
            assert!(rest.ends_with(b"bbail"));
            q.consume(SHARE_THRESHOLD - 2);
            assert_eq!(flat(&q), b"ail");
        });
    }
}
