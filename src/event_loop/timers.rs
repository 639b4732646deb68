//! The timer heap: `TimerHandle`s ordered by deadline, first-scheduled first on ties.
//!
//! Cancelled timers are removed lazily, as asyncio does: a cancelled handle at the top
//! of the heap is popped, and when more than half of a large heap is cancelled the heap
//! is rebuilt without them.

use std::sync::atomic::Ordering;

use pyo3::prelude::*;

use super::{LoopCore, Queues};
use crate::handle::{retrack_unscheduled, Handle, SlottedRef};

/// asyncio's `_MIN_SCHEDULED_TIMER_HANDLES`: below this size the heap is never rebuilt.
pub const MIN_SCHEDULED_TIMER_HANDLES: usize = 100;
/// asyncio's `_MIN_CANCELLED_TIMER_HANDLES_FRACTION`.
pub const MIN_CANCELLED_TIMER_HANDLES_FRACTION: f64 = 0.5;

/// One scheduled timer; `T` is the handle (a Python `TimerHandle` in the loop).
pub struct Timer<T> {
    pub when: f64,
    pub handle: T,
}

/// Maps an `f64` to a `u64` whose unsigned order is the float's total order: positive
/// floats get their sign bit set, negative ones all bits flipped. A NaN deadline (of either
/// sign) gets key 0, before every number: asyncio runs a NaN timer at its heap's top at
/// once (3.11, 3.12) or fails the poll with it (3.13), and no number's key is 0
/// (`-inf` maps to `0x000f_ffff_ffff_ffff`).
#[inline]
pub fn order_key(when: f64) -> u64 {
    if when.is_nan() {
        return 0;
    }
    let bits = when.to_bits();
    if bits >> 63 == 0 {
        bits | (1 << 63)
    } else {
        !bits
    }
}

/// What the heap itself orders: a small `Copy` record, so sifting moves 24 bytes and never
/// touches the handle. The timer lives in `TimerHeap::slots[slot]`.
#[derive(Clone, Copy)]
struct Entry {
    /// `when` mapped by [`order_key`]: comparisons are integer compares.
    key: u64,
    /// Scheduling order, for FIFO among equal deadlines.
    seq: u64,
    slot: usize,
}

impl Entry {
    #[inline]
    fn before(&self, other: &Entry) -> bool {
        (self.key, self.seq) < (other.key, other.seq)
    }
}

/// Children per node. A 4-ary heap is half as deep as a binary one: a pop from a heap of
/// 100,000 timers touches about 8 cache lines instead of 17, for a few more comparisons.
const ARITY: usize = 4;

/// A min-heap of timers by deadline.
pub struct TimerHeap<T> {
    heap: Vec<Entry>,
    slots: Vec<Option<Timer<T>>>,
    free: Vec<usize>,
    next_seq: u64,
}

impl<T> Default for TimerHeap<T> {
    fn default() -> Self {
        TimerHeap {
            heap: Vec::new(),
            slots: Vec::new(),
            free: Vec::new(),
            next_seq: 0,
        }
    }
}

impl<T> TimerHeap<T> {
    pub fn push(&mut self, when: f64, handle: T) {
        let timer = Some(Timer { when, handle });
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = timer;
                slot
            }
            None => {
                self.slots.push(timer);
                self.slots.len() - 1
            }
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Entry {
            key: order_key(when),
            seq,
            slot,
        });
        self.sift_up(self.heap.len() - 1);
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The earliest timer.
    pub fn peek(&self) -> Option<&Timer<T>> {
        let e = self.heap.first()?;
        self.slots[e.slot].as_ref()
    }

    pub fn pop(&mut self) -> Option<Timer<T>> {
        let last = self.heap.pop()?;
        let top = if self.heap.is_empty() {
            last
        } else {
            let top = self.heap[0];
            self.sift_down_from_root(last);
            top
        };
        self.take_slot(top.slot)
    }

    /// Pops the earliest timer unless it is due at or after `end_time` (asyncio's
    /// `handle._when >= end_time` test, under which a NaN deadline is due).
    // The negated comparison is the point: it is true for NaN.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    pub fn pop_due(&mut self, end_time: f64) -> Option<Timer<T>> {
        match self.peek() {
            Some(t) if !(t.when >= end_time) => self.pop(),
            _ => None,
        }
    }

    /// Removes every timer for which `is_cancelled` holds, returning them so the caller can
    /// drop them outside any lock.
    pub fn remove_where(&mut self, mut is_cancelled: impl FnMut(&T) -> bool) -> Vec<Timer<T>> {
        let mut gone = Vec::new();
        let mut kept = Vec::with_capacity(self.heap.len());
        for e in std::mem::take(&mut self.heap) {
            let cancelled = self.slots[e.slot]
                .as_ref()
                .is_some_and(|t| is_cancelled(&t.handle));
            if cancelled {
                gone.extend(self.take_slot(e.slot));
            } else {
                kept.push(e);
            }
        }
        self.heap = kept;
        if self.heap.len() > 1 {
            for i in (0..=(self.heap.len() - 2) / ARITY).rev() {
                let e = self.heap[i];
                self.sift_down(i, e);
            }
        }
        gone
    }

    /// Every timer, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Timer<T>> {
        self.slots.iter().flatten()
    }

    /// Takes every timer out (loop close).
    pub fn drain(&mut self) -> Vec<Timer<T>> {
        self.heap.clear();
        self.free.clear();
        std::mem::take(&mut self.slots)
            .into_iter()
            .flatten()
            .collect()
    }

    fn take_slot(&mut self, slot: usize) -> Option<Timer<T>> {
        let t = self.slots[slot].take();
        self.free.push(slot);
        t
    }

    /// Moves `self.heap[i]` up to its place ("hole" insertion: parents move down, the
    /// entry is written once).
    fn sift_up(&mut self, mut i: usize) {
        let e = self.heap[i];
        while i > 0 {
            let parent = (i - 1) / ARITY;
            if !e.before(&self.heap[parent]) {
                break;
            }
            self.heap[i] = self.heap[parent];
            i = parent;
        }
        self.heap[i] = e;
    }

    fn sift_down_from_root(&mut self, e: Entry) {
        self.sift_down(0, e);
    }

    /// Places `e` at or below position `i` (children move up into the hole).
    fn sift_down(&mut self, mut i: usize, e: Entry) {
        let n = self.heap.len();
        loop {
            let first = i * ARITY + 1;
            if first >= n {
                break;
            }
            let last = (first + ARITY).min(n);
            let mut best = first;
            for c in first + 1..last {
                if self.heap[c].before(&self.heap[best]) {
                    best = c;
                }
            }
            if !self.heap[best].before(&e) {
                break;
            }
            self.heap[i] = self.heap[best];
            i = best;
        }
        self.heap[i] = e;
    }
}

pub(super) fn is_timer_cancelled(h: &Py<Handle>) -> bool {
    h.state().is_cancelled()
}

/// Marks timers taken out of the heap as unscheduled and drops them (outside any lock:
/// dropping a handle can run arbitrary Python code).
#[inline]
pub(super) fn release_timers(py: Python<'_>, timers: Option<Vec<Timer<Py<Handle>>>>) {
    // Called on every iteration, nearly always with nothing to release.
    if let Some(timers) = timers {
        release_timer_list(py, timers);
    }
}

#[inline(never)]
fn release_timer_list(py: Python<'_>, timers: Vec<Timer<Py<Handle>>>) {
    for t in &timers {
        t.handle.state().unschedule();
        retrack_unscheduled(py, &t.handle);
    }
}

impl LoopCore {
    /// Called by `TimerHandle.cancel()` for a timer still in the heap.
    pub(super) fn timer_handle_cancelled(&self) {
        self.timer_cancelled_count.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops cancelled timers: all of them when they are more than half of a large heap,
    /// otherwise those at the top. Returns them, to be released outside the lock.
    pub(super) fn sweep_timers(&self, q: &mut Queues) -> Vec<Timer<Py<Handle>>> {
        let n = q.timers.len();
        let cancelled = self.timer_cancelled_count.load(Ordering::Relaxed);
        if n > MIN_SCHEDULED_TIMER_HANDLES
            && cancelled as f64 / n as f64 > MIN_CANCELLED_TIMER_HANDLES_FRACTION
        {
            self.timer_cancelled_count.store(0, Ordering::Relaxed);
            return q.timers.remove_where(is_timer_cancelled);
        }
        let mut dead = Vec::new();
        while q
            .timers
            .peek()
            .is_some_and(|t| is_timer_cancelled(&t.handle))
        {
            dead.extend(q.timers.pop());
            let _ = self.timer_cancelled_count.fetch_update(
                Ordering::Relaxed,
                Ordering::Relaxed,
                |c| c.checked_sub(1),
            );
        }
        dead
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_deadline_order_fifo_on_ties() {
        let mut h = TimerHeap::default();
        h.push(3.0, "c");
        h.push(1.0, "a1");
        h.push(2.0, "b");
        h.push(1.0, "a2");
        let order: Vec<_> = std::iter::from_fn(|| h.pop().map(|t| t.handle)).collect();
        assert_eq!(order, ["a1", "a2", "b", "c"]);
    }

    #[test]
    fn order_key_keeps_float_order() {
        let xs = [
            -1e300,
            -2.5,
            -0.0,
            0.0,
            1e-9,
            0.5,
            1.0,
            86400.0,
            1e300,
            f64::INFINITY,
        ];
        for w in xs.windows(2) {
            assert!(order_key(w[0]) <= order_key(w[1]), "{} vs {}", w[0], w[1]);
        }
        assert!(order_key(-0.0) < order_key(0.0));
    }

    #[test]
    fn nan_sorts_first_and_is_due() {
        let mut h = TimerHeap::default();
        h.push(f64::NEG_INFINITY, "-inf");
        h.push(1.0, "one");
        h.push(f64::NAN, "nan");
        h.push(-f64::NAN, "-nan");
        h.push(f64::INFINITY, "inf");
        assert_eq!(h.peek().map(|t| t.handle), Some("nan"));
        let order: Vec<_> = std::iter::from_fn(|| h.pop_due(0.0).map(|t| t.handle)).collect();
        assert_eq!(order, ["nan", "-nan", "-inf"]);
        assert!(order_key(f64::NEG_INFINITY) > 0);
    }

    #[test]
    fn pop_due_respects_end_time() {
        let mut h = TimerHeap::default();
        h.push(1.0, 1);
        h.push(2.0, 2);
        assert_eq!(
            h.pop_due(1.0).map(|t| t.handle),
            None,
            "a timer never fires early"
        );
        assert_eq!(h.pop_due(1.5).map(|t| t.handle), Some(1));
        assert_eq!(h.pop_due(1.5).map(|t| t.handle), None);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn matches_a_sort_on_random_input() {
        // Deterministic pseudo-random deadlines with many ties, pushed and popped in
        // interleaved order, against a stable sort of the same input.
        let mut h = TimerHeap::default();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut expected = Vec::new();
        for i in 0..5000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let when = (x % 200) as f64 * 0.5;
            h.push(when, i);
            expected.push((when, i));
        }
        expected.sort_by(|a, b| a.0.total_cmp(&b.0));
        let got: Vec<_> = std::iter::from_fn(|| h.pop().map(|t| (t.when, t.handle))).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn remove_where_keeps_heap_order() {
        let mut h = TimerHeap::default();
        for i in 0..1000 {
            h.push(((i * 7919) % 1000) as f64, i);
        }
        let gone = h.remove_where(|i| i % 2 == 0);
        assert_eq!(gone.len(), 500);
        let mut last = f64::MIN;
        while let Some(t) = h.pop() {
            assert!(t.handle % 2 == 1);
            assert!(t.when >= last);
            last = t.when;
        }
    }
}
