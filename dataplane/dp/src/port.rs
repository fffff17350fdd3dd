//! Ports: where frames come from and where replies go, behind one trait, so that the rx
//! core's loop ([`crate::rx::RxCore::run`]) is written once for every kind of port.
//!
//! | backend | module | receives | clock | sends |
//! |---|---|---|---|---|
//! | capture replay (`weir-dp replay`) | [`pcap::CaptureReplay`] | records of pcap/pcapng files, in order | the capture's timestamps | nothing (no peer) |
//! | capture as a live source (`[port] kind = "pcap"`) | [`pcap::CaptureLoop`] | a capture held in memory, looped and paced | the dataplane's clock | nothing |
//! | Linux TAP (`kind = "tap"`) | [`tap::TapPort`] | frames from the kernel | the dataplane's clock | frames to the kernel |
//! | DPDK (`kind = "dpdk"`, `replay --dpdk`) | `dpdk::DpdkQueue`, `dpdk::DpdkReplay` | mbufs of one rx queue of every device | the dataplane's clock, or `net_pcap`'s rx timestamps | mbufs on the core's tx queue |
//!
//! **Shape.** A port hands each frame of a burst to the rx core's closure as a
//! [`Received`]: its bytes (borrowed: classification never copies), its length on the
//! wire, its capture time when the port has one, and how to queue it
//! ([`Received::queue`]): a live software frame (TAP, capture loop) is copied into a
//! buffer of the rx core's [`crate::pool::Pool`] only when it is queued (rejects cost no
//! copy); a DPDK mbuf is queued itself (zero copy) and freed when dropped; a replayed
//! frame is queued as its lengths ([`crate::pool::Lengths`]: replay's workers count, and
//! nothing reads the bytes after the rx core's tee). The burst is the caller's closure, not
//! an array of borrowed frames, so a port can lend frames out of its own receive buffer
//! without self-referential types; replies the rx core makes while the burst is lent out
//! (NDP/ARP answers) wait in a fixed buffer and are sent after it.
//!
//! **Rejected.** A `dyn Port` (an indirect call per packet on the hottest path); receiving
//! every frame into a pool buffer (a copy per rejected flood packet); one loop per port
//! kind (what weir had: five loops, already drifting apart in buffer sizes and drain
//! budgets).

#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod pcap;
pub mod tap;

use crate::pipeline::{Backing, RxQueues};
use crate::pool::{Lengths, Pool, Tally};
use weir_model::Class;

/// Frames per burst: DESIGN.md's run-to-completion burst, for every port.
pub const BURST: usize = 32;

/// A frame a port received, lent to the rx core for one decision.
pub trait Received<B: Backing> {
    /// The frame's bytes (Ethernet).
    fn bytes(&self) -> &[u8];
    /// Its length on the wire (may exceed `bytes().len()` in a capture cut short).
    fn wire_len(&self) -> u32;
    /// When it was captured (unix ns), for ports whose clock is the capture's.
    fn capture_ns(&self) -> Option<u64>;
    /// For a frame without an Ethernet header (a raw-IP, Linux cooked or loopback
    /// capture): the EtherType its link header names and where the packet starts.
    #[inline]
    fn network(&self) -> Option<(u16, usize)> {
        None
    }
    /// Its link type (Ethernet but for a capture's frames).
    #[inline]
    fn link(&self) -> crate::capture::Link {
        crate::capture::Link::Ethernet
    }
    /// Queue it for `worker` in `class`'s ring; false when it was dropped (counted by the
    /// queues as `ring-full`).
    fn queue(self, queues: &mut RxQueues<B>, worker: u16, class: Class) -> bool;
    /// Queue the decapsulated packet `inner` of this tunnel frame instead of the frame, as
    /// an Ethernet frame with the outer frame's addresses (what a terminator would have
    /// received had the packet arrived directly).
    fn queue_inner(
        self,
        queues: &mut RxQueues<B>,
        worker: u16,
        class: Class,
        inner: crate::handover::Inner,
    ) -> bool;
    /// The bytes of the frame that follows in the same burst, when the port has them at
    /// hand (DPDK): the rx core prefetches that frame's flow-table slot while it decides
    /// this one, so the table's cache miss overlaps useful work.
    #[inline]
    fn lookahead(&self) -> Option<&[u8]> {
        None
    }
    /// Which of the port's devices it came in on: its place in `[port] devices` (DPDK),
    /// 0 on a port of one device. The tee writes it as the frame's pcapng interface.
    #[inline]
    fn device(&self) -> u8 {
        0
    }
}

/// A frame in a software port's memory (a capture record, a TAP read).
#[derive(Debug, Clone, Copy)]
pub struct SoftFrame<'a> {
    /// The bytes.
    pub data: &'a [u8],
    /// Length on the wire.
    pub wire_len: u32,
    /// Capture time, when the port replays a capture.
    pub capture_ns: Option<u64>,
    /// Its link type.
    pub link: crate::capture::Link,
}

/// How a software frame is queued over a backing: copied into a [`Pool`] buffer (live
/// software ports, whose terminators read it) or as its lengths ([`Lengths`]: replay,
/// whose workers only count).
pub trait SoftQueue: Backing + Sized {
    /// Queue `frame` for `worker` in `class`'s ring (see [`Received::queue`]).
    fn queue_soft(
        queues: &mut RxQueues<Self>,
        worker: u16,
        class: Class,
        frame: SoftFrame<'_>,
    ) -> bool;
    /// Queue the decapsulated packet `inner` of `frame` (see [`Received::queue_inner`]).
    fn queue_soft_inner(
        queues: &mut RxQueues<Self>,
        worker: u16,
        class: Class,
        frame: SoftFrame<'_>,
        inner: crate::handover::Inner,
    ) -> bool;
}

impl SoftQueue for Pool {
    #[inline(always)]
    fn queue_soft(
        queues: &mut RxQueues<Pool>,
        worker: u16,
        class: Class,
        frame: SoftFrame<'_>,
    ) -> bool {
        queues.enqueue(worker, class, frame.data)
    }
    fn queue_soft_inner(
        queues: &mut RxQueues<Pool>,
        worker: u16,
        class: Class,
        frame: SoftFrame<'_>,
        inner: crate::handover::Inner,
    ) -> bool {
        let Some(packet) = frame.data.get(inner.offset..inner.offset + inner.len) else {
            return false;
        };
        let mut eth = [0u8; 14];
        eth[..12].copy_from_slice(frame.data.get(..12).unwrap_or(&[0; 12]));
        eth[12..].copy_from_slice(&weir_wire::ethernet::ethertype::IPV6.to_be_bytes());
        queues.enqueue_parts(worker, class, &[&eth, packet])
    }
}

impl SoftQueue for Lengths {
    #[inline(always)]
    fn queue_soft(
        queues: &mut RxQueues<Lengths>,
        worker: u16,
        class: Class,
        frame: SoftFrame<'_>,
    ) -> bool {
        queues.push(worker, class, Tally::of(frame.data.len(), frame.wire_len))
    }
    fn queue_soft_inner(
        queues: &mut RxQueues<Lengths>,
        worker: u16,
        class: Class,
        frame: SoftFrame<'_>,
        inner: crate::handover::Inner,
    ) -> bool {
        // As a pool would hold it: the inner packet behind a 14-byte Ethernet header.
        if frame
            .data
            .get(inner.offset..inner.offset + inner.len)
            .is_none()
        {
            return false;
        }
        let len = inner.len + 14;
        queues.push(
            worker,
            class,
            Tally::of(len, u32::try_from(len).unwrap_or(u32::MAX)),
        )
    }
}

impl<B: SoftQueue> Received<B> for SoftFrame<'_> {
    #[inline]
    fn bytes(&self) -> &[u8] {
        self.data
    }
    #[inline]
    fn wire_len(&self) -> u32 {
        self.wire_len
    }
    #[inline]
    fn capture_ns(&self) -> Option<u64> {
        self.capture_ns
    }
    #[inline]
    fn network(&self) -> Option<(u16, usize)> {
        self.link.packet_of(self.data)
    }
    #[inline]
    fn link(&self) -> crate::capture::Link {
        self.link
    }
    #[inline(always)]
    fn queue(self, queues: &mut RxQueues<B>, worker: u16, class: Class) -> bool {
        B::queue_soft(queues, worker, class, self)
    }
    fn queue_inner(
        self,
        queues: &mut RxQueues<B>,
        worker: u16,
        class: Class,
        inner: crate::handover::Inner,
    ) -> bool {
        B::queue_soft_inner(queues, worker, class, self, inner)
    }
}

/// What a burst gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxStatus {
    /// This many frames (0: nothing waiting).
    Frames(usize),
    /// The port has no more frames (a capture that does not loop).
    Ended,
}

/// Frames a port dropped before an rx core saw them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortDrops {
    /// The NIC's rx ring was full (the rx core fell behind).
    pub imissed: u64,
    /// Bad frames the NIC dropped.
    pub ierrors: u64,
    /// No mbuf to receive into.
    pub rx_nombuf: u64,
    /// Frames larger than one buffer (a DPDK port without scatter), not classified.
    pub oversize: u64,
}

impl PortDrops {
    /// Add another port's drops.
    pub fn add(&mut self, o: &PortDrops) {
        self.imissed += o.imissed;
        self.ierrors += o.ierrors;
        self.rx_nombuf += o.rx_nombuf;
        self.oversize += o.oversize;
    }
}

/// What a port sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// Frames out.
    pub sent: u64,
    /// Frames the port refused (queue full, no buffer, error).
    pub failed: u64,
}

/// A port failed in a way the rx core cannot count and go on from.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// A capture could not be read (the replay stops; what was read is reported).
    #[error(transparent)]
    Capture(#[from] crate::capture::CaptureError),
    /// A DPDK port stopped delivering what it promised.
    #[error("{0}")]
    Dpdk(String),
}

/// One source (and sink) of frames for one rx core.
pub trait Port {
    /// Where queued frames live (software pool buffers, or DPDK mbufs).
    type Backing: Backing;
    /// The frame type lent to the rx core.
    type Frame<'a>: Received<Self::Backing>;
    /// True when frames carry their capture time and that time is the clock (replay).
    const CAPTURE_CLOCK: bool = false;

    /// Receive up to [`BURST`] frames, handing each to `f` in arrival order.
    fn rx_burst<F>(&mut self, f: F) -> Result<RxStatus, PortError>
    where
        F: for<'a> FnMut(Self::Frame<'a>);

    /// Send (or queue for sending) one frame: an NDP/ARP answer or a terminator's packet.
    /// Ports without a peer drop it (counted as failed).
    fn send(&mut self, frame: &[u8]);

    /// Send what [`Port::send`] queued; called once per loop round.
    fn flush(&mut self) {}

    /// Frames sent and refused so far.
    fn sent(&self) -> Sent;

    /// Nothing came in or went out this round: wait a little if the port can be woken
    /// (a TAP sleeps in poll(2) until the kernel or `wake` has something); polling ports
    /// return at once.
    fn idle(&mut self, wake: Option<&crate::terminators::Wake>) {
        let _ = wake;
    }

    /// The ports' own drop counters, when this rx core reports them (a control-path call
    /// the loop makes about once a second).
    fn drops(&self) -> Option<PortDrops> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handover::Inner;
    use crate::pipeline::{self, Overflow, WorkerQueues};
    use weir_model::WorkerStats;

    /// Through rings over `B`: a whole frame (known-good), the same bytes cut short of a
    /// 1514-byte wire length (suspect), its decapsulated packet (assumed-good), and a
    /// tunnel whose inner packet lies outside the frame (refused). What the worker counted.
    fn queued_over<B: SoftQueue>(rx: &mut RxQueues<B>, wk: &mut WorkerQueues<B>) -> WorkerStats {
        let bytes = [7u8; 200];
        let frame = |wire_len| SoftFrame {
            data: &bytes,
            wire_len,
            capture_ns: None,
            link: crate::capture::Link::Ethernet,
        };
        let inner = |offset| Inner { offset, len: 100 };
        assert!(Received::<B>::queue(frame(200), rx, 0, Class::KnownGood));
        assert!(Received::<B>::queue(frame(1514), rx, 0, Class::Suspect));
        assert!(Received::<B>::queue_inner(
            frame(200),
            rx,
            0,
            Class::AssumedGood,
            inner(54)
        ));
        assert!(!Received::<B>::queue_inner(
            frame(200),
            rx,
            0,
            Class::AssumedGood,
            inner(150)
        ));
        assert_eq!(wk.round(), 3);
        wk.report().stats
    }

    /// Replay's tallies are queued where pool copies would be, and count lengths on the
    /// wire.
    #[test]
    fn a_tally_is_queued_where_a_pool_copy_would_be() {
        let rings = weir_model::config::Config::default().rings;
        let (mut trx, mut twk) = pipeline::build_with(&rings, 1, 1, Overflow::Wait, |_| {
            (std::sync::Arc::new(Lengths), Vec::new())
        });
        let (mut prx, mut pwk) = pipeline::build(&rings, 1, 1, Overflow::Wait);
        let t = queued_over(&mut trx[0], &mut twk[0]);
        let p = queued_over(&mut prx[0], &mut pwk[0]);
        assert_eq!((t.known_good, t.assumed_good, t.suspect), (1, 1, 1));
        assert_eq!((p.known_good, p.assumed_good, p.suspect), (1, 1, 1));
        // A tally counts the cut frame's length on the wire, as a DPDK mbuf's `pkt_len`
        // does; a pool buffer records the bytes it was given (the live ports that copy
        // into a pool never cut a frame, so there the two are the same).
        assert_eq!(t.bytes, 200 + 1514 + 114);
        assert_eq!(p.bytes, 200 + 200 + 114);
    }
}
