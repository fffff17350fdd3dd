//! A fixed pool of packet buffers for live software ports (TAP, a capture as a live
//! source), the stand-in for DPDK's mempool; and [`Lengths`], what replay's counting
//! workers are handed instead.
//!
//! A buffer is owned through a [`PktBuf`] handle: not `Clone`, created only by the pool,
//! carried through the rings by value ([`RingItem`]). Whoever holds the handle is the only
//! one who touches that buffer's bytes; the rings' Release/Acquire index updates order the
//! writes of the producer before the reads of the consumer. That ownership protocol is
//! what makes the pool's interior mutability sound, and it is the only `unsafe` of the
//! software path.
//!
//! Each handle also names its pool, so a handle can never reach into another pool's
//! buffer (which would alias a buffer someone else owns): a mismatched handle reads as
//! empty and cannot be written.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use crate::ring::RingItem;

/// Bytes per buffer: a full Ethernet frame with two VLAN tags and room to spare.
pub const BUF_SIZE: usize = 2048;

static NEXT_POOL_ID: AtomicU32 = AtomicU32::new(1);

/// An owned packet buffer of a [`Pool`].
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a dropped handle leaks its buffer: return it to the pool's free list"]
pub struct PktBuf {
    pool: u32,
    idx: u32,
}

impl RingItem for PktBuf {
    #[inline]
    fn into_raw(self) -> u64 {
        (u64::from(self.pool) << 32) | u64::from(self.idx)
    }
    #[inline]
    unsafe fn from_raw(raw: u64) -> Self {
        PktBuf {
            pool: (raw >> 32) as u32,
            idx: raw as u32,
        }
    }
}

struct Slot {
    /// Bytes held (≤ BUF_SIZE).
    len: AtomicU32,
    /// Length of the frame as received (may exceed BUF_SIZE: then the copy is cut).
    wire_len: AtomicU32,
    /// When the rx core queued it (monotonic ns; 0 = not stamped), for queueing latency.
    stamp: AtomicU64,
    data: UnsafeCell<[u8; BUF_SIZE]>,
}

/// A fixed set of packet buffers.
pub struct Pool {
    id: u32,
    slots: Box<[Slot]>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("id", &self.id)
            .field("buffers", &self.slots.len())
            .finish()
    }
}

// SAFETY: the bytes of slot i are only accessed through `fill` (needs `&mut PktBuf` for
// i) and `bytes` (needs `&PktBuf` for i). `PktBuf` is neither `Clone` nor constructible
// outside this module and the rings (which move it, never duplicate it), so at any time one
// thread at most holds the handle for slot i, and moving a handle between threads goes
// through a ring's Release store / Acquire load, which orders the accesses.
unsafe impl Sync for Pool {}

impl Pool {
    /// A pool of `n` buffers and the handles to all of them.
    pub fn new(n: u32) -> (Arc<Pool>, Vec<PktBuf>) {
        let id = NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed);
        let slots = (0..n)
            .map(|_| Slot {
                len: AtomicU32::new(0),
                wire_len: AtomicU32::new(0),
                stamp: AtomicU64::new(0),
                data: UnsafeCell::new([0; BUF_SIZE]),
            })
            .collect();
        let bufs = (0..n).map(|idx| PktBuf { pool: id, idx }).collect();
        (Arc::new(Pool { id, slots }), bufs)
    }

    /// Number of buffers.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True for an empty pool.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    #[inline]
    fn slot(&self, buf: &PktBuf) -> Option<&Slot> {
        if buf.pool != self.id {
            return None;
        }
        self.slots.get(buf.idx as usize)
    }

    /// Copy `frame` into the buffer (cut at [`BUF_SIZE`]); returns the bytes kept, or
    /// `None` for a handle of another pool.
    #[inline]
    pub fn fill(&self, buf: &mut PktBuf, frame: &[u8]) -> Option<usize> {
        let slot = self.slot(buf)?;
        let n = frame.len().min(BUF_SIZE);
        // SAFETY: `buf` is the unique handle of this slot and we hold it mutably, so no
        // other reference to the slot's bytes exists (see `unsafe impl Sync`).
        let data = unsafe { &mut *slot.data.get() };
        data[..n].copy_from_slice(&frame[..n]);
        slot.len.store(n as u32, Ordering::Relaxed);
        slot.wire_len.store(
            u32::try_from(frame.len()).unwrap_or(u32::MAX),
            Ordering::Relaxed,
        );
        Some(n)
    }

    /// Copy the concatenation of `parts` into the buffer (cut at the buffer size); the
    /// bytes held, or `None` for a handle of another pool.
    pub fn fill_parts(&self, buf: &mut PktBuf, parts: &[&[u8]]) -> Option<usize> {
        let slot = self.slot(buf)?;
        // SAFETY: as in `fill`: the unique handle of this slot, held mutably.
        let data = unsafe { &mut *slot.data.get() };
        let mut n = 0;
        let mut total = 0usize;
        for part in parts {
            total += part.len();
            let take = part.len().min(BUF_SIZE - n);
            data[n..n + take].copy_from_slice(&part[..take]);
            n += take;
        }
        slot.len.store(n as u32, Ordering::Relaxed);
        slot.wire_len
            .store(u32::try_from(total).unwrap_or(u32::MAX), Ordering::Relaxed);
        Some(n)
    }

    /// The bytes held by the buffer (empty for a handle of another pool).
    #[inline]
    pub fn bytes<'a>(&'a self, buf: &'a PktBuf) -> &'a [u8] {
        let Some(slot) = self.slot(buf) else {
            return &[];
        };
        let n = (slot.len.load(Ordering::Relaxed) as usize).min(BUF_SIZE);
        // SAFETY: we hold the unique handle of this slot (shared borrow for 'a), so no one
        // writes the slot while the returned slice lives.
        let data = unsafe { &*slot.data.get() };
        &data[..n]
    }

    /// Stamp the buffer with the time it was queued (monotonic nanoseconds).
    #[inline]
    pub fn set_stamp(&self, buf: &PktBuf, ns: u64) {
        if let Some(s) = self.slot(buf) {
            s.stamp.store(ns, Ordering::Relaxed);
        }
    }

    /// The time the buffer was queued (0 = never stamped).
    #[inline]
    pub fn stamp(&self, buf: &PktBuf) -> u64 {
        self.slot(buf)
            .map_or(0, |s| s.stamp.load(Ordering::Relaxed))
    }

    /// Length of the frame as received (may exceed the bytes held).
    #[inline]
    pub fn wire_len(&self, buf: &PktBuf) -> u32 {
        self.slot(buf)
            .map_or(0, |s| s.wire_len.load(Ordering::Relaxed))
    }
}

/// The backing of rings whose workers only count what they drain (replay's): a queued
/// frame is a [`Tally`] of its lengths, not a copy of its bytes.
///
/// A replay's workers read each packet's class and wire length and nothing else (the
/// per-class captures and verdict files are written by the rx core's tee, before
/// queueing). Copying every queued frame into a pool buffer, then handing the buffer back
/// through a return ring, was ~70 instructions a queued packet for bytes no one read
/// (callgrind, `scripts/bench-instructions.sh`). The rings, their order, weights and
/// waiting for room are the same as with a [`Pool`]; only the payload differs.
#[derive(Debug, Default)]
pub struct Lengths;

/// A queued frame's lengths (see [`Lengths`]): its bytes are not kept, so
/// [`Lengths::bytes`] of it is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Bytes the frame had as received.
    pub len: u32,
    /// Its length on the wire.
    pub wire_len: u32,
}

impl Tally {
    /// The tally of a frame of `len` bytes received, `wire_len` on the wire.
    #[inline]
    pub fn of(len: usize, wire_len: u32) -> Tally {
        Tally {
            len: u32::try_from(len).unwrap_or(u32::MAX),
            wire_len,
        }
    }
}

impl RingItem for Tally {
    #[inline]
    fn into_raw(self) -> u64 {
        (u64::from(self.wire_len) << 32) | u64::from(self.len)
    }
    #[inline]
    unsafe fn from_raw(raw: u64) -> Self {
        Tally {
            len: raw as u32,
            wire_len: (raw >> 32) as u32,
        }
    }
}

impl Lengths {
    /// A tally has no bytes.
    #[inline]
    pub fn bytes(&self, _: &Tally) -> &'static [u8] {
        &[]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_and_read_back_and_cut() {
        let (pool, mut bufs) = Pool::new(2);
        let mut b = bufs.pop().unwrap();
        assert_eq!(pool.fill(&mut b, &[1, 2, 3]), Some(3));
        assert_eq!(pool.bytes(&b), &[1, 2, 3]);
        let big = vec![7u8; BUF_SIZE + 10];
        assert_eq!(pool.fill(&mut b, &big), Some(BUF_SIZE));
        assert_eq!(pool.bytes(&b).len(), BUF_SIZE);
        assert_eq!(pool.wire_len(&b), (BUF_SIZE + 10) as u32);
    }

    #[test]
    fn foreign_handles_are_refused() {
        let (a, _) = Pool::new(1);
        let (_b, mut bb) = Pool::new(1);
        let mut h = bb.pop().unwrap();
        assert_eq!(a.fill(&mut h, &[1]), None);
        assert!(a.bytes(&h).is_empty());
        // A handle survives the trip through a ring.
        let raw = h.into_raw();
        // SAFETY: `raw` came from `into_raw` and is turned back once.
        assert_eq!(unsafe { PktBuf::from_raw(raw) }.into_raw(), raw);
    }

    #[test]
    fn a_tally_survives_the_trip_through_a_ring() {
        for t in [
            Tally::of(0, 0),
            Tally::of(60, 1514),
            Tally::of(usize::MAX, u32::MAX),
        ] {
            // SAFETY: `raw` came from `into_raw` and is turned back once.
            assert_eq!(unsafe { Tally::from_raw(t.into_raw()) }, t);
        }
        assert_eq!(Tally::of(usize::MAX, 7).len, u32::MAX);
    }
}
