//! Owned mbufs and stack-held bursts of them.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use weir_ffi::rte_mbuf;

use super::eal::{RX_TS_FLAG, RX_TS_OFFSET, STAMP_OFFSET};
use super::Mempool;

/// The most mbufs a [`Burst`] or [`TxBurst`] holds.
pub use crate::port::BURST;

/// Per port id: nanoseconds per unit of the driver's rx timestamp (1 = already ns).
static TS_NS_PER_UNIT: [AtomicU32; weir_ffi::RTE_MAX_ETHPORTS as usize] =
    [const { AtomicU32::new(1) }; weir_ffi::RTE_MAX_ETHPORTS as usize];

/// Record the unit of a port's rx timestamps, from its driver.
///
/// DPDK leaves the unit to the driver. net_pcap writes microseconds (`tv_sec * 1000000 +
/// tv_usec`, drivers/net/pcap/pcap_ethdev.c, 22.11); the others weir meets are taken as
/// nanoseconds.
pub(super) fn set_timestamp_unit(port: u16, driver: &str) {
    let ns = if driver == "net_pcap" { 1000 } else { 1 };
    if let Some(slot) = TS_NS_PER_UNIT.get(usize::from(port)) {
        slot.store(ns, Ordering::Relaxed);
    }
}

/// One packet, owned: dropping it gives it back to its pool.
#[derive(Debug)]
pub struct Mbuf(NonNull<rte_mbuf>);

// SAFETY: an Mbuf is the only handle to its packet, and DPDK lets any thread free an mbuf
// (EAL threads through their own cache, others through the pool's thread-safe ring).
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// A fresh, empty mbuf from `pool`; `None` when the pool is empty.
    #[inline]
    pub fn alloc(pool: &Mempool) -> Option<Mbuf> {
        // SAFETY: the pool is live (the Mempool handle); alloc returns an owned, reset mbuf or
        // NULL.
        NonNull::new(unsafe { weir_ffi::weir_pktmbuf_alloc(pool.as_ptr()) }).map(Mbuf)
    }

    #[inline]
    fn raw(&self) -> &rte_mbuf {
        // SAFETY: self owns a live mbuf; shared access matches &self.
        unsafe { self.0.as_ref() }
    }

    /// Make the mbuf hold only the decapsulated packet `inner`, behind an Ethernet header
    /// with the outer frame's addresses, in place (`handover::inner_frame` writes the header
    /// over the end of the outer IPv6 header; the data start moves forward). False, with
    /// the mbuf unchanged, when `inner` does not lie in a single-segment mbuf.
    pub fn decapsulate_in_place(&mut self, inner: crate::handover::Inner) -> bool {
        let m = self.raw();
        if m.nb_segs != 1 {
            return false;
        }
        let (off, len) = (usize::from(m.data_off), usize::from(m.data_len));
        // SAFETY: buf_addr + data_off .. + data_len is this mbuf's initialised data (DPDK's
        // invariant), and &mut self gives exclusive access to it.
        let data = unsafe { std::slice::from_raw_parts_mut(m.buf_addr.cast::<u8>().add(off), len) };
        let Some(frame) = crate::handover::inner_frame(data, inner) else {
            return false;
        };
        let new_len = frame.len();
        let start = inner.offset - crate::handover::ETHERNET_LEN;
        let (Ok(start16), Ok(len16)) = (u16::try_from(start), u16::try_from(new_len)) else {
            return false;
        };
        // SAFETY: exclusive access (&mut self); the new window lies inside the old one
        // (inner_frame checked start + new_len <= data_len), so DPDK's invariants hold.
        unsafe {
            let raw = self.0.as_mut();
            raw.data_off += start16;
            raw.data_len = len16;
            raw.pkt_len = u32::from(len16);
        }
        true
    }

    /// Append `bytes` at the end of the packet; false (nothing written) when the tailroom is
    /// too short.
    pub fn append(&mut self, bytes: &[u8]) -> bool {
        let Ok(len) = u16::try_from(bytes.len()) else {
            return false;
        };
        // SAFETY: self owns the mbuf exclusively (&mut self).
        let dst = unsafe { weir_ffi::weir_pktmbuf_append(self.0.as_ptr(), len) };
        if dst.is_null() {
            return false;
        }
        // SAFETY: append returned room for exactly `len` bytes inside the mbuf's buffer,
        // which cannot overlap `bytes` (a borrow we were given while holding &mut self).
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst.cast::<u8>(), bytes.len()) };
        true
    }

    /// The first segment's bytes (`rte_pktmbuf_mtod`, `data_len`); equal to the whole packet
    /// when [`Mbuf::segments`] is 1.
    #[inline]
    pub fn data(&self) -> &[u8] {
        let m = self.raw();
        // SAFETY: buf_addr + data_off is the start of data_len initialised bytes inside the
        // mbuf's buffer (DPDK's invariant data_off + data_len <= buf_len), alive while self is.
        unsafe {
            std::slice::from_raw_parts(
                m.buf_addr.cast::<u8>().add(usize::from(m.data_off)),
                usize::from(m.data_len),
            )
        }
    }

    /// Bytes in the whole packet, all segments.
    #[inline]
    pub fn pkt_len(&self) -> u32 {
        self.raw().pkt_len
    }

    /// Number of segments.
    #[inline]
    pub fn segments(&self) -> u16 {
        self.raw().nb_segs
    }

    /// The port the packet was received on (`mbuf->port`).
    #[inline]
    pub fn port(&self) -> u16 {
        self.raw().port
    }

    /// The `weir_stamp` queue stamp; 0 when the EAL has not registered it. A freshly
    /// allocated or received mbuf carries whatever its last user stamped.
    #[inline]
    pub fn stamp(&self) -> u64 {
        let offset = STAMP_OFFSET.load(Ordering::Relaxed);
        let Ok(offset) = usize::try_from(offset) else {
            return 0;
        };
        // SAFETY: the offset was returned by rte_mbuf_dynfield_register for an 8-byte,
        // 8-aligned field inside every rte_mbuf; self owns a live mbuf.
        unsafe {
            self.0
                .as_ptr()
                .cast::<u8>()
                .add(offset)
                .cast::<u64>()
                .read()
        }
    }

    /// Set the `weir_stamp` queue stamp (ignored when it is not registered).
    #[inline]
    pub fn set_stamp(&mut self, stamp: u64) {
        let offset = STAMP_OFFSET.load(Ordering::Relaxed);
        let Ok(offset) = usize::try_from(offset) else {
            return;
        };
        // SAFETY: as in stamp(); &mut self gives exclusive access to the mbuf.
        unsafe {
            self.0
                .as_ptr()
                .cast::<u8>()
                .add(offset)
                .cast::<u64>()
                .write(stamp)
        };
    }

    /// The receive timestamp in nanoseconds, when the driver set one (the rx-timestamp flag
    /// in `ol_flags`).
    ///
    /// The driver's unit is converted with the port's known unit. net_pcap (22.11) writes
    /// microseconds: it opens files with `pcap_open_offline`, so libpcap truncates a
    /// nanosecond capture to µs, and this returns that value × 1000 — microsecond
    /// precision, the sub-µs digits are lost. net_pcap's `infinite_rx` mode sets no
    /// timestamp. Other drivers are taken to write nanoseconds.
    #[inline]
    pub fn rx_timestamp(&self) -> Option<u64> {
        let flag = RX_TS_FLAG.load(Ordering::Relaxed);
        let m = self.raw();
        if flag == 0 || m.ol_flags & flag == 0 {
            return None;
        }
        let offset = usize::try_from(RX_TS_OFFSET.load(Ordering::Relaxed)).ok()?;
        // SAFETY: the offset was returned by rte_mbuf_dyn_rx_timestamp_register for the
        // 8-byte, 8-aligned rte_mbuf_timestamp_t field; self owns a live mbuf.
        let raw = unsafe {
            self.0
                .as_ptr()
                .cast::<u8>()
                .add(offset)
                .cast::<u64>()
                .read()
        };
        let unit = TS_NS_PER_UNIT
            .get(usize::from(m.port))
            .map_or(1, |u| u.load(Ordering::Relaxed));
        Some(raw.wrapping_mul(u64::from(unit)))
    }

    /// Give up ownership: the caller must free the mbuf or pass it to DPDK.
    #[inline]
    pub fn into_raw(self) -> *mut rte_mbuf {
        let p = self.0.as_ptr();
        std::mem::forget(self);
        p
    }

    /// Take ownership of a raw mbuf.
    ///
    /// # Safety
    /// `m` must be a non-null, live mbuf that nothing else owns or will free: one given up
    /// by [`Mbuf::into_raw`] (and taken back at most once) or handed over by DPDK.
    #[inline]
    pub unsafe fn from_raw(m: *mut rte_mbuf) -> Mbuf {
        // SAFETY: the caller promises m is non-null.
        Mbuf(unsafe { NonNull::new_unchecked(m) })
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: self is the only owner of a live mbuf; it is not used again.
        unsafe { weir_ffi::weir_pktmbuf_free(self.0.as_ptr()) };
    }
}

impl crate::ring::RingItem for Mbuf {
    #[inline]
    fn into_raw(self) -> u64 {
        Mbuf::into_raw(self) as usize as u64
    }

    #[inline]
    unsafe fn from_raw(raw: u64) -> Self {
        // SAFETY: the caller promises raw came from into_raw (a live, owned mbuf pointer
        // that fits in usize since it came from one) and is taken back once.
        unsafe { Mbuf::from_raw(raw as usize as *mut rte_mbuf) }
    }
}

/// Free `n` owned mbufs starting at `p` with one call (`weir_pktmbuf_free_many`: straight
/// into the pool's per-lcore cache when every mbuf is a plain one-segment mbuf of one
/// pool, else `rte_pktmbuf_free_bulk`).
///
/// # Safety
/// `p..p+n` must be owned, live mbufs that are not used again.
#[inline]
unsafe fn free_bulk(p: *mut *mut rte_mbuf, n: usize) {
    if n > 0 {
        // SAFETY: the caller's promise; n <= BURST fits in u32.
        unsafe { weir_ffi::weir_pktmbuf_free_many(p, n as u32) };
    }
}

/// Mbufs a worker (or an rx burst) is done with, freed together: one C call per
/// [`BURST`] mbufs (or per drained ring, or per burst) instead of one per packet.
pub struct FreeBatch {
    bufs: [*mut rte_mbuf; BURST],
    len: usize,
}

// SAFETY: a FreeBatch owns its mbufs as Mbuf values would (Mbuf is Send).
unsafe impl Send for FreeBatch {}

impl std::fmt::Debug for FreeBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FreeBatch").field("len", &self.len).finish()
    }
}

impl Default for FreeBatch {
    fn default() -> Self {
        FreeBatch {
            bufs: [std::ptr::null_mut(); BURST],
            len: 0,
        }
    }
}

impl FreeBatch {
    /// Keep `m` to be freed with the others (freeing the batch first when it is full).
    #[inline]
    pub fn push(&mut self, m: Mbuf) {
        if self.len == BURST {
            self.flush();
        }
        self.bufs[self.len] = m.into_raw();
        self.len += 1;
    }

    /// Free every mbuf kept.
    #[inline]
    pub fn flush(&mut self) {
        // SAFETY: slots 0..len hold owned mbufs given up by `push` (into_raw), each once.
        unsafe { free_bulk(self.bufs.as_mut_ptr(), self.len) };
        self.len = 0;
    }
}

impl Drop for FreeBatch {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Up to [`BURST`] received mbufs, on the stack; iterating takes them out, dropping frees
/// the rest.
pub struct Burst {
    bufs: [*mut rte_mbuf; BURST],
    head: usize,
    len: usize,
}

// SAFETY: a Burst owns its mbufs as Mbuf values would (Mbuf is Send).
unsafe impl Send for Burst {}

impl std::fmt::Debug for Burst {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Burst").field("len", &self.len()).finish()
    }
}

impl Default for Burst {
    fn default() -> Self {
        Self::new()
    }
}

impl Burst {
    /// An empty burst.
    pub fn new() -> Burst {
        Burst {
            bufs: [std::ptr::null_mut(); BURST],
            head: 0,
            len: 0,
        }
    }

    /// Mbufs not yet taken.
    #[inline]
    pub fn len(&self) -> usize {
        self.len - self.head
    }

    /// Whether every mbuf has been taken.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == self.head
    }

    /// The packet data of the next mbuf not yet taken (its first segment), for a lookahead.
    #[inline]
    pub fn peek_data(&self) -> Option<&[u8]> {
        if self.head == self.len {
            return None;
        }
        let m = self.bufs[self.head];
        // SAFETY: slots head..len hold owned, live mbufs that this burst still owns; the
        // slice borrows the burst, so the mbuf cannot be taken (and freed) while it lives.
        // buf_addr + data_off .. + data_len is initialised packet data (DPDK's invariant).
        unsafe {
            Some(std::slice::from_raw_parts(
                (*m).buf_addr.cast::<u8>().add(usize::from((*m).data_off)),
                usize::from((*m).data_len),
            ))
        }
    }

    /// Move untaken mbufs to the front and return the free tail for a receive call.
    #[inline]
    pub(super) fn free_tail(&mut self) -> (*mut *mut rte_mbuf, u16) {
        if self.head > 0 {
            self.bufs.copy_within(self.head..self.len, 0);
            self.len -= self.head;
            self.head = 0;
        }
        // SAFETY: len <= BURST, so the pointer stays within (or one past) the array.
        let tail = unsafe { self.bufs.as_mut_ptr().add(self.len) };
        (tail, (BURST - self.len) as u16)
    }

    /// Record that the driver filled `n` slots of the tail given by `free_tail`.
    ///
    /// # Safety
    /// Those `n` slots must now hold owned, live mbufs.
    #[inline]
    pub(super) unsafe fn filled(&mut self, n: usize) {
        self.len = (self.len + n).min(BURST);
    }
}

impl Iterator for Burst {
    type Item = Mbuf;

    /// The next mbuf; the packet data of the one after it is prefetched meanwhile (its
    /// mbuf header is in cache: the driver just wrote it).
    #[inline]
    fn next(&mut self) -> Option<Mbuf> {
        if self.head == self.len {
            return None;
        }
        let p = self.bufs[self.head];
        self.head += 1;
        if self.head < self.len {
            let q = self.bufs[self.head];
            // SAFETY: q is an owned, live mbuf of this burst; its header is readable and
            // buf_addr + data_off points into its buffer. A prefetch never faults.
            unsafe {
                let data = (*q).buf_addr.cast::<i8>().add(usize::from((*q).data_off));
                #[cfg(target_arch = "x86_64")]
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(data);
                #[cfg(not(target_arch = "x86_64"))]
                let _ = data;
            }
        }
        // SAFETY: slots head..len hold owned mbufs from the driver; head moved past this one,
        // so it is handed out once.
        Some(unsafe { Mbuf::from_raw(p) })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len(), Some(self.len()))
    }
}

impl ExactSizeIterator for Burst {}

impl Drop for Burst {
    fn drop(&mut self) {
        // SAFETY: slots head..len hold owned mbufs not handed out; the burst is going away.
        unsafe { free_bulk(self.bufs.as_mut_ptr().add(self.head), self.len - self.head) };
    }
}

/// Up to [`BURST`] mbufs to send, on the stack; dropping frees what was not sent.
pub struct TxBurst {
    bufs: [*mut rte_mbuf; BURST],
    len: usize,
}

// SAFETY: a TxBurst owns its mbufs as Mbuf values would (Mbuf is Send).
unsafe impl Send for TxBurst {}

impl std::fmt::Debug for TxBurst {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxBurst").field("len", &self.len).finish()
    }
}

impl Default for TxBurst {
    fn default() -> Self {
        Self::new()
    }
}

impl TxBurst {
    /// An empty burst.
    pub fn new() -> TxBurst {
        TxBurst {
            bufs: [std::ptr::null_mut(); BURST],
            len: 0,
        }
    }

    /// Add a packet; gives it back when the burst is full.
    #[inline]
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.len == BURST {
            return Err(m);
        }
        self.bufs[self.len] = m.into_raw();
        self.len += 1;
        Ok(())
    }

    /// Packets waiting to be sent.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no packet waits.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether no more packets fit.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.len == BURST
    }

    /// The pending packets as (pointer, count) for a send call.
    #[inline]
    pub(super) fn pending(&mut self, from: usize) -> (*mut *mut rte_mbuf, u16) {
        let from = from.min(self.len);
        // SAFETY: from <= len <= BURST: within (or one past) the array.
        let p = unsafe { self.bufs.as_mut_ptr().add(from) };
        (p, (self.len - from) as u16)
    }

    /// Forget the first `sent` packets (now the driver's), free the rest, and empty the
    /// burst; returns how many were freed.
    ///
    /// # Safety
    /// The first `sent` slots must have been accepted by the driver (no longer owned here).
    #[inline]
    pub(super) unsafe fn finish(&mut self, sent: usize) -> usize {
        let sent = sent.min(self.len);
        let rest = self.len - sent;
        // SAFETY: slots sent..len are still owned here; the caller vouches for 0..sent.
        unsafe { free_bulk(self.bufs.as_mut_ptr().add(sent), rest) };
        self.len = 0;
        rest
    }
}

impl Drop for TxBurst {
    fn drop(&mut self) {
        // SAFETY: slots 0..len hold owned mbufs that were never sent.
        unsafe { free_bulk(self.bufs.as_mut_ptr(), self.len) };
    }
}
