//! Terminator workers: a worker that drains its rings into a [`Terminator`] instead of
//! only counting, and sends the terminator's packets back through its rx core.
//!
//! ```text
//!  rings (by class priority and weight) ──► strip Ethernet/VLAN ──► Terminator (smoltcp shards, HTTP)
//!                                                                       │ IP packets
//!  rx core: flow tracker sees them, port sends ◄── ReplySender ◄── Ethernet header (our MAC → peer MAC)
//! ```
//! The terminators speak IP (`Medium::Ip`); link addresses are the dataplane's business:
//! replies go to the link address the client's packets came from (the router, or the host
//! behind a TAP), learned per worker from the last frame received, and leave untagged.
//! Everything the terminator sends goes through the rx core, because the flow tracker
//! must see the SYN-ACKs for a client's next packets to be known-good.

use std::time::{Duration, Instant};

use weir_terminator::tcp::Terminator;

use crate::pipeline::{Backing, Drain, ReplySender, WorkerQueues, WorkerReport, WorkerStats};
use weir_model::verdict::Class;

use weir_wire::ethernet::{self, ethertype};

/// The IP packet inside `frame` and the frame's source MAC: Ethernet with up to two VLAN
/// tags, IPv4 or IPv6. `None` for anything else.
pub fn strip_l2(frame: &[u8]) -> Option<(&[u8], [u8; 6])> {
    let l2 = weir_wire::link_layer(frame).ok()?;
    matches!(l2.ethertype, ethertype::IPV6 | ethertype::IPV4).then_some((l2.payload, l2.src))
}

/// Write an untagged Ethernet frame around `ip` into `buf`; its length (0 when it does
/// not fit).
pub fn frame_into(buf: &mut [u8], src: [u8; 6], dst: [u8; 6], ip: &[u8]) -> usize {
    let len = ethernet::HEADER_LEN + ip.len();
    let Some(out) = buf.get_mut(..len) else {
        return 0;
    };
    let mut eth = ethernet::Packet::new_unchecked(out);
    eth.set_dst_addr(dst);
    eth.set_src_addr(src);
    eth.set_ethertype(if ip.first().is_some_and(|b| b >> 4 == 4) {
        ethertype::IPV4
    } else {
        ethertype::IPV6
    });
    eth.payload_mut().copy_from_slice(ip);
    len
}

/// Wakes a sleeping rx core when a worker has queued frames to send (software ports,
/// whose rx core sleeps in poll(2) while its port is quiet). An eventfd: one write per
/// drain round that queued something, one read per rx-core wake-up.
#[derive(Debug)]
pub struct Wake(nix::sys::eventfd::EventFd);

impl Wake {
    /// A non-blocking eventfd.
    pub fn new() -> std::io::Result<Wake> {
        use nix::sys::eventfd::{EfdFlags, EventFd};
        EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)
            .map(Wake)
            .map_err(std::io::Error::from)
    }

    /// Signal the rx core.
    pub fn wake(&self) {
        let _ = self.0.write(1);
    }

    /// Clear pending signals (after waking).
    pub fn clear(&self) {
        let _ = self.0.read();
    }

    /// The fd to poll on.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.0.as_fd()
    }
}

/// A worker that terminates TCP: its terminator and its way out (frames to send, through
/// the rx core that tracks their flows).
#[derive(Debug)]
pub struct TerminatorWorker {
    term: Terminator,
    /// One way back per rx core: a flow's packets must pass the rx core that tracks it.
    tx: Vec<ReplySender>,
    /// Which rx core a client address was last seen on (hashed, fixed size): replies go
    /// back through it. A collision between clients of different rx cores sends a reply
    /// through the other core, whose tracker then misses that SYN-ACK (the client's next
    /// packets are `no-flow` suspects, still served) — never a loss.
    route: Box<[u8]>,
    our_mac: [u8; 6],
    peer: [u8; 6],
    scratch: Vec<u8>,
    /// Frames that were not Ethernet + IP (dropped, counted).
    pub bad_frames: u64,
    idle_sleep: Duration,
    last_report: Instant,
    wake: Option<std::sync::Arc<Wake>>,
    sent_seen: u64,
    /// Where new policies come from, and the version this terminator serves.
    policy: Option<(std::sync::Arc<crate::state::DataplaneState>, u64)>,
}

impl TerminatorWorker {
    /// `term` replying from `our_mac` through `tx`; `idle_sleep`: how long to sleep when a
    /// round found nothing (software ports; zero keeps polling).
    pub fn new(
        term: Terminator,
        tx: Vec<ReplySender>,
        our_mac: [u8; 6],
        idle_sleep: Duration,
        wake: Option<std::sync::Arc<Wake>>,
    ) -> TerminatorWorker {
        TerminatorWorker {
            term,
            tx,
            route: vec![0; ROUTES].into_boxed_slice(),
            our_mac,
            peer: [0xff; 6],
            scratch: vec![0; ethernet::HEADER_LEN + weir_terminator::tcp::MTU],
            bad_frames: 0,
            idle_sleep,
            last_report: Instant::now(),
            wake,
            sent_seen: 0,
            policy: None,
        }
    }

    /// Follow the policy in `shared`: when a new snapshot changes the service prefixes,
    /// the terminator serves the new ones (checked once per drain round: one atomic load).
    pub fn following(
        mut self,
        shared: std::sync::Arc<crate::state::DataplaneState>,
    ) -> TerminatorWorker {
        let seen = shared
            .policy_version
            .load(std::sync::atomic::Ordering::Acquire);
        self.policy = Some((shared, seen));
        self
    }

    /// Take up a new policy's service prefixes.
    fn sync_policy(&mut self) {
        let Some((shared, seen)) = &mut self.policy else {
            return;
        };
        if shared
            .policy_version
            .load(std::sync::atomic::Ordering::Acquire)
            == *seen
        {
            return;
        }
        if let Some((version, policy)) = shared.policy_now() {
            *seen = version;
            let prefixes: Vec<(u128, u8)> = policy
                .prefixes
                .prefixes()
                .iter()
                .map(|p| (p.addr, p.len))
                .collect();
            self.term.set_prefixes(&prefixes);
        }
    }

    /// Run worker `wq` until its rx core finishes.
    pub fn run<B: Backing>(mut self, wq: WorkerQueues<B>) -> WorkerStats {
        self.term
            .set_waker(weir_terminator::adapter::Waker::new(wq.waker()));
        wq.run_with(&mut self)
    }
}

/// Slots of the client → rx core table.
const ROUTES: usize = 1 << 16;

/// The route slot of an IP packet's address (IPv6 at `v6_at`, 16 bytes; IPv4 at `v4_at`, 4).
fn route_slot(ip: &[u8], v6_at: usize, v4_at: usize) -> usize {
    let addr = match ip.first().map(|b| b >> 4) {
        Some(6) => ip.get(v6_at..v6_at + 16),
        _ => ip.get(v4_at..v4_at + 4),
    };
    let h = addr.map_or(0, |a| {
        a.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
    });
    (h as usize) & (ROUTES - 1)
}

impl TerminatorWorker {
    /// Frame `p` and queue it through the rx core its client was seen on.
    fn emit(
        tx: &mut [ReplySender],
        route: &[u8],
        scratch: &mut [u8],
        our: [u8; 6],
        peer: [u8; 6],
        p: &[u8],
    ) {
        // The client is the destination: IPv6 dst at 24, IPv4 dst at 16.
        let rx = route
            .get(route_slot(p, 24, 16))
            .map_or(0, |&r| usize::from(r));
        let n = frame_into(scratch, our, peer, p);
        if n == 0 {
            return;
        }
        let t = if rx < tx.len() {
            tx.get_mut(rx)
        } else {
            tx.first_mut()
        };
        if let Some(t) = t {
            t.send(&scratch[..n]);
        }
    }

    fn sent(&self) -> u64 {
        self.tx.iter().map(|t| t.sent).sum()
    }
}

impl Drain for TerminatorWorker {
    fn packet(&mut self, rx: usize, class: Class, frame: &[u8]) {
        let Some((ip, src)) = strip_l2(frame) else {
            self.bad_frames += 1;
            return;
        };
        self.peer = src;
        // The client is the source: IPv6 src at 8, IPv4 src at 12.
        if let Some(slot) = self.route.get_mut(route_slot(ip, 8, 12)) {
            *slot = u8::try_from(rx).unwrap_or(0);
        }
        let (tx, route, scratch) = (&mut self.tx, &self.route, &mut self.scratch);
        let (our, peer) = (self.our_mac, self.peer);
        self.term.receive(ip, class, Instant::now(), &mut |p| {
            TerminatorWorker::emit(tx, route, scratch, our, peer, p);
        });
    }

    fn after_round(&mut self, busy: bool, report: &mut WorkerReport) {
        self.sync_policy();
        let (tx, route, scratch) = (&mut self.tx, &self.route, &mut self.scratch);
        let (our, peer) = (self.our_mac, self.peer);
        self.term.poll(Instant::now(), &mut |p| {
            TerminatorWorker::emit(tx, route, scratch, our, peer, p);
        });
        let sent = self.sent();
        if sent != self.sent_seen {
            self.sent_seen = sent;
            if let Some(w) = &self.wake {
                w.wake();
            }
        }
        if self.last_report.elapsed() >= Duration::from_millis(50) {
            let mut s = self.term.stats();
            s.unparsable += self.bad_frames;
            report.terminator = Some(s);
            report.tx_dropped = self.tx.iter().map(|t| t.dropped).sum();
            self.last_report = Instant::now();
        }
        if !busy && !self.idle_sleep.is_zero() {
            std::thread::sleep(self.idle_sleep);
        }
    }
}
