//! The timer heap: `TimerHandle`s ordered by deadline, first-scheduled first on ties.
//!
//! Cancelled timers are removed lazily, as asyncio does: a cancelled handle at the top
//! of the heap is popped, and when more than half of a large heap is cancelled the heap
//! is rebuilt without them.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// asyncio's `_MIN_SCHEDULED_TIMER_HANDLES`: below this size the heap is never rebuilt.
pub const MIN_SCHEDULED_TIMER_HANDLES: usize = 100;
/// asyncio's `_MIN_CANCELLED_TIMER_HANDLES_FRACTION`.
pub const MIN_CANCELLED_TIMER_HANDLES_FRACTION: f64 = 0.5;

/// One scheduled timer; `T` is the handle (a Python `TimerHandle` in the loop).
pub struct Timer<T> {
    pub when: f64,
    seq: u64,
    pub handle: T,
}

impl<T> PartialEq for Timer<T> {
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq
    }
}
impl<T> Eq for Timer<T> {}
impl<T> PartialOrd for Timer<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Timer<T> {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest deadline first.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .when
            .total_cmp(&self.when)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// A min-heap of timers by deadline.
pub struct TimerHeap<T> {
    heap: BinaryHeap<Timer<T>>,
    next_seq: u64,
}

impl<T> Default for TimerHeap<T> {
    fn default() -> Self {
        TimerHeap {
            heap: BinaryHeap::new(),
            next_seq: 0,
        }
    }
}

impl<T> TimerHeap<T> {
    pub fn push(&mut self, when: f64, handle: T) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Timer { when, seq, handle });
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The earliest timer.
    pub fn peek(&self) -> Option<&Timer<T>> {
        self.heap.peek()
    }

    pub fn pop(&mut self) -> Option<Timer<T>> {
        self.heap.pop()
    }

    /// Pops the earliest timer if it is due before `end_time`.
    pub fn pop_due(&mut self, end_time: f64) -> Option<Timer<T>> {
        match self.heap.peek() {
            Some(t) if t.when < end_time => self.heap.pop(),
            _ => None,
        }
    }

    /// Removes every timer for which `is_cancelled` holds, returning them so the caller can
    /// drop them outside any lock.
    pub fn remove_where(&mut self, mut is_cancelled: impl FnMut(&T) -> bool) -> Vec<Timer<T>> {
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.heap)
            .into_vec()
            .into_iter()
            .partition(|t| is_cancelled(&t.handle));
        self.heap = BinaryHeap::from(kept);
        gone
    }

    /// Every timer, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Timer<T>> {
        self.heap.iter()
    }

    /// Takes every timer out (loop close).
    pub fn drain(&mut self) -> Vec<Timer<T>> {
        std::mem::take(&mut self.heap).into_vec()
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
