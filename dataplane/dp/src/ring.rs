//! Single-producer single-consumer rings of packet handles.
//!
//! ```text
//!            consumer                       producer
//!               │ head (Acquire by producer)    │ tail (Acquire by consumer)
//!   slots: [ .. │ h0  h1  h2  h3 ..             │  free free .. ]
//!               └────── queued = tail - head ───┘
//! ```
//! Indices run freely (wrapping `u64`, never reset) and are masked into a power-of-two slot
//! array. The producer publishes slots with a Release store of `tail`, the consumer frees
//! them with a Release store of `head`; each side caches the other's index and reloads it
//! only when the cache says the ring is full (producer) or empty (consumer), so a burst
//! costs one shared-cache-line read, not one per packet. Both indices sit on their own
//! cache line (`CachePadded`) so the two cores do not false-share.
//!
//! Handles are `u64` in `AtomicU64` slots (relaxed loads and stores compile to plain moves
//! on x86-64 and aarch64), so the ring touches no raw memory: the Acquire/Release pair on the
//! indices orders the slot accesses. A [`RingItem`] is any owned handle that converts to
//! and from `u64`: a software buffer index now, a DPDK mbuf pointer later. Ownership moves
//! with the handle, so a handle is in exactly one place at a time.
//!
//! Rejected: `crossbeam::ArrayQueue` (MPMC: a compare-and-swap per operation and no cached
//! far index, paying for sharing that a per-(rx core, worker, class) ring never has),
//! `std::sync::mpsc` (allocates per message).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;

/// An owned packet handle that can travel through a ring as a `u64`.
pub trait RingItem: Sized {
    /// Give up the handle as a raw value.
    fn into_raw(self) -> u64;
    /// Take back a handle given up by [`RingItem::into_raw`].
    ///
    /// # Safety
    /// `raw` must come from `into_raw` and be turned back into a handle at most once, so
    /// that an owned handle is never duplicated.
    unsafe fn from_raw(raw: u64) -> Self;
}

impl RingItem for u64 {
    fn into_raw(self) -> u64 {
        self
    }
    unsafe fn from_raw(raw: u64) -> Self {
        raw
    }
}

#[derive(Debug)]
struct Shared {
    slots: Box<[AtomicU64]>,
    mask: u64,
    head: CachePadded<AtomicU64>,
    tail: CachePadded<AtomicU64>,
}

/// The producing end.
#[derive(Debug)]
pub struct Producer<T> {
    shared: Arc<Shared>,
    tail: u64,
    cached_head: u64,
    _item: std::marker::PhantomData<fn(T)>,
}

/// The consuming end.
#[derive(Debug)]
pub struct Consumer<T: RingItem> {
    shared: Arc<Shared>,
    head: u64,
    cached_tail: u64,
    _item: std::marker::PhantomData<fn() -> T>,
}

/// A ring of `capacity` slots (rounded up to a power of two, at least 2).
pub fn ring<T: RingItem>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    let n = capacity.max(2).next_power_of_two();
    let shared = Arc::new(Shared {
        slots: (0..n).map(|_| AtomicU64::new(0)).collect(),
        mask: n as u64 - 1,
        head: CachePadded::new(AtomicU64::new(0)),
        tail: CachePadded::new(AtomicU64::new(0)),
    });
    (
        Producer {
            shared: shared.clone(),
            tail: 0,
            cached_head: 0,
            _item: std::marker::PhantomData,
        },
        Consumer {
            shared,
            head: 0,
            cached_tail: 0,
            _item: std::marker::PhantomData,
        },
    )
}

impl<T: RingItem> Producer<T> {
    /// Slots in the ring.
    pub fn capacity(&self) -> usize {
        self.shared.slots.len()
    }

    /// Queue `item`, or give it back when the ring is full.
    #[inline(always)]
    pub fn push(&mut self, item: T) -> Result<(), T> {
        let cap = self.shared.mask + 1;
        if self.tail.wrapping_sub(self.cached_head) >= cap {
            self.cached_head = self.shared.head.load(Ordering::Acquire);
            if self.tail.wrapping_sub(self.cached_head) >= cap {
                return Err(item);
            }
        }
        let slot = &self.shared.slots[(self.tail & self.shared.mask) as usize];
        slot.store(item.into_raw(), Ordering::Relaxed);
        self.tail = self.tail.wrapping_add(1);
        self.shared.tail.store(self.tail, Ordering::Release);
        Ok(())
    }

    /// Like [`Producer::push`], but the item is not visible to the consumer until
    /// [`Producer::publish`]: one release store for a batch instead of one per item.
    #[inline]
    pub fn push_unpublished(&mut self, item: T) -> Result<(), T> {
        let cap = self.shared.mask + 1;
        if self.tail.wrapping_sub(self.cached_head) >= cap {
            self.cached_head = self.shared.head.load(Ordering::Acquire);
            if self.tail.wrapping_sub(self.cached_head) >= cap {
                return Err(item);
            }
        }
        let slot = &self.shared.slots[(self.tail & self.shared.mask) as usize];
        slot.store(item.into_raw(), Ordering::Relaxed);
        self.tail = self.tail.wrapping_add(1);
        Ok(())
    }

    /// Make every item pushed so far visible to the consumer.
    #[inline]
    pub fn publish(&mut self) {
        self.shared.tail.store(self.tail, Ordering::Release);
    }

    /// Packets queued and not yet taken (a snapshot).
    pub fn len(&self) -> usize {
        self.tail
            .wrapping_sub(self.shared.head.load(Ordering::Acquire)) as usize
    }

    /// True when nothing is queued (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T: RingItem> Consumer<T> {
    /// Slots in the ring.
    pub fn capacity(&self) -> usize {
        self.shared.slots.len()
    }

    /// Take the oldest item, if any.
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        if self.head == self.cached_tail {
            self.cached_tail = self.shared.tail.load(Ordering::Acquire);
            if self.head == self.cached_tail {
                return None;
            }
        }
        let slot = &self.shared.slots[(self.head & self.shared.mask) as usize];
        let raw = slot.load(Ordering::Relaxed);
        self.head = self.head.wrapping_add(1);
        self.shared.head.store(self.head, Ordering::Release);
        // SAFETY: the slot held a value pushed once by the producer (`into_raw`), and this
        // consumer reads each slot once before releasing it by advancing `head`.
        Some(unsafe { T::from_raw(raw) })
    }

    /// Take up to `max` items into `f`, publishing the freed slots once; returns how many.
    #[inline]
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(T)) -> usize {
        self.cached_tail = self.shared.tail.load(Ordering::Acquire);
        let n = (self.cached_tail.wrapping_sub(self.head) as usize).min(max);
        for i in 0..n as u64 {
            let idx = self.head.wrapping_add(i) & self.shared.mask;
            let raw = self.shared.slots[idx as usize].load(Ordering::Relaxed);
            // SAFETY: as in `pop`: each published slot is read once before `head` moves.
            f(unsafe { T::from_raw(raw) });
        }
        if n > 0 {
            self.head = self.head.wrapping_add(n as u64);
            self.shared.head.store(self.head, Ordering::Release);
        }
        n
    }

    /// Items queued (a snapshot).
    pub fn len(&self) -> usize {
        self.shared
            .tail
            .load(Ordering::Acquire)
            .wrapping_sub(self.head) as usize
    }

    /// True when nothing is queued (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T: RingItem> Drop for Consumer<T> {
    /// Items still queued are taken back and dropped, so a handle that owns something (a
    /// DPDK mbuf) is freed rather than forgotten in the slots.
    fn drop(&mut self) {
        while let Some(item) = self.pop() {
            drop(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    proptest! {
        /// The ring behaves like a bounded VecDeque under any sequence of operations.
        #[test]
        fn matches_a_bounded_queue(ops in proptest::collection::vec(0u8..4, 0..400), cap in 1usize..20) {
            let (mut p, mut c) = ring::<u64>(cap);
            let cap = p.capacity();
            let mut model = VecDeque::new();
            let mut next = 0u64;
            for op in ops {
                match op {
                    0 | 1 => {
                        let r = p.push(next);
                        if model.len() < cap {
                            prop_assert_eq!(r, Ok(()));
                            model.push_back(next);
                        } else {
                            prop_assert_eq!(r, Err(next));
                        }
                        next += 1;
                    }
                    2 => prop_assert_eq!(c.pop(), model.pop_front()),
                    _ => {
                        let mut got = Vec::new();
                        let n = c.drain(3, |x| got.push(x));
                        let want: Vec<u64> = (0..n).filter_map(|_| model.pop_front()).collect();
                        prop_assert_eq!(got, want);
                    }
                }
                prop_assert_eq!(p.len(), model.len());
                prop_assert_eq!(c.len(), model.len());
            }
        }
    }

    #[test]
    fn two_threads_lose_nothing_and_keep_order() {
        const N: u64 = 200_000;
        let (mut p, mut c) = ring::<u64>(64);
        let t = std::thread::spawn(move || {
            let mut expect = 0;
            while expect < N {
                c.drain(32, |x| {
                    assert_eq!(x, expect);
                    expect += 1;
                });
                std::hint::spin_loop();
            }
        });
        for i in 0..N {
            let mut item = i;
            while let Err(back) = p.push(item) {
                item = back;
                std::thread::yield_now();
            }
        }
        t.join().unwrap();
    }
}
