//! The queueing half of the dataplane: rings per (rx core, worker, class), the workers
//! that drain them by class priority and weight, and the return path of packet buffers.
//!
//! ```text
//!  rx core r ──push──► ring[r][w][known_good]   ─┐
//!                      ring[r][w][assumed_good] ─┼─► worker w: each round drains
//!                      ring[r][w][suspect]      ─┘   known-good ≤ weight_kg, then
//!  rx core r ◄──────── free[w][r] (buffers back)      assumed-good ≤ weight_ag, then
//!                                                     suspect ≤ weight_s
//! ```
//! A full ring drops the new packet and counts `ring-full` for its class (live ports), or
//! makes the rx core wait for room ([`Overflow::Wait`], replay: verdicts and counts must
//! not depend on thread timing). A lower class never takes room from a higher one because
//! each class has its own ring. A worker hands what it drains to its [`Drain`] (a
//! terminator, see `terminators`; or nothing but its counters) and returns the buffer.
//!
//! **Live changes.** Sizes and weights change at run time without losing a queued packet:
//! [`RxQueues::resize`] makes a new ring, switches its own producer to it at once (so the
//! old ring receives nothing more) and mails the new consumer to the worker, which keeps
//! draining the old ring until it is empty and only then moves to the new one — every
//! packet queued before the resize is drained, in order. Weights travel by the same
//! mailbox. The mailbox is read once per drain round, never per packet.
//!
//! **Buffers.** The queues are generic over a [`Backing`]: where a queued packet's bytes
//! live. Software ports copy each frame into a buffer of a fixed [`Pool`] and the workers
//! hand the buffers back to their rx core through return rings ([`Backing::RECYCLES`]).
//! DPDK ports queue the received mbuf itself (zero copy); a worker that is done with it
//! drops it, which frees it to its mempool, so there are no return rings. A capture
//! replay's workers only count, so its rings carry each frame's lengths
//! ([`crate::pool::Lengths`]): no copy, no pool, no return rings.
//!
//! **Latency.** When stamping is on, the rx core stamps each buffer with a monotonic time
//! as it queues it, and the worker records (drain time − stamp) per class in an
//! hdrhistogram: the time a packet waited in its ring.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_utils::Backoff;
use hdrhistogram::Histogram;

use crate::pool::{Lengths, PktBuf, Pool, Tally};
use crate::ring::{ring, Consumer, Producer, RingItem};
use weir_model::config::RingsConfig;
use weir_model::verdict::Class;

/// Where queued packets live: the handle type the rings carry and how a worker reads a
/// handle's length and queueing stamp.
pub trait Backing: Send + Sync + 'static {
    /// The owned handle the rings carry.
    type Buf: RingItem + Send + std::fmt::Debug + 'static;
    /// True when spent buffers go back to the rx core (return rings); false when
    /// dropping a handle releases its buffer.
    const RECYCLES: bool;
    /// Length of the frame as received.
    fn wire_len(&self, buf: &Self::Buf) -> u32;
    /// The frame's bytes.
    fn bytes<'a>(&'a self, buf: &'a Self::Buf) -> &'a [u8];
    /// When the rx core queued it (monotonic ns, 0 = not stamped).
    fn stamp(&self, buf: &Self::Buf) -> u64;
    /// Stamp it as queued now.
    fn set_stamp(&self, buf: &mut Self::Buf, ns: u64);
    /// What a worker keeps spent handles in until it releases them together (a backing
    /// that recycles through return rings keeps nothing).
    type Spent: Default + Send + std::fmt::Debug;
    /// Release a handle the worker is done with (a non-recycling backing).
    #[inline]
    fn release(spent: &mut Self::Spent, buf: Self::Buf) {
        let _ = spent;
        drop(buf);
    }
    /// Release everything kept (once per drained ring).
    #[inline]
    fn release_all(spent: &mut Self::Spent) {
        let _ = spent;
    }
}

impl Backing for Pool {
    type Buf = PktBuf;
    type Spent = ();
    const RECYCLES: bool = true;
    #[inline]
    fn wire_len(&self, buf: &PktBuf) -> u32 {
        Pool::wire_len(self, buf)
    }
    #[inline]
    fn bytes<'a>(&'a self, buf: &'a PktBuf) -> &'a [u8] {
        Pool::bytes(self, buf)
    }
    #[inline]
    fn stamp(&self, buf: &PktBuf) -> u64 {
        Pool::stamp(self, buf)
    }
    #[inline]
    fn set_stamp(&self, buf: &mut PktBuf, ns: u64) {
        Pool::set_stamp(self, buf, ns);
    }
}

impl Backing for Lengths {
    type Buf = Tally;
    type Spent = ();
    const RECYCLES: bool = false;
    #[inline]
    fn wire_len(&self, t: &Tally) -> u32 {
        t.wire_len
    }
    #[inline]
    fn bytes<'a>(&'a self, t: &'a Tally) -> &'a [u8] {
        Lengths::bytes(self, t)
    }
    #[inline]
    fn stamp(&self, _: &Tally) -> u64 {
        0
    }
    #[inline]
    fn set_stamp(&self, _: &mut Tally, _: u64) {}
}

/// A thread that sleeps when it has nothing to do, and the flag by which the other side
/// knows to wake it. Workers park when their rings are empty and the rx core wakes them
/// after a burst that queued something; an rx core waiting for ring space (replay) parks
/// and the workers wake it after a round that freed some. The protocol is the classic
/// one: the sleeper sets `sleeping`, then looks once more for work (SeqCst on both sides
/// orders that look against the waker's publish-then-check), then parks; a timeout bounds
/// any wake-up lost to a race the protocol does not cover.
#[derive(Debug, Default)]
pub struct Parker {
    sleeping: AtomicBool,
    thread: std::sync::OnceLock<std::thread::Thread>,
}

impl Parker {
    /// The calling thread is the one that parks here.
    pub fn bind(&self) {
        let _ = self.thread.set(std::thread::current());
    }

    /// Park unless `has_work` (checked after announcing the sleep), at most `timeout`.
    pub fn park_unless(&self, has_work: impl FnOnce() -> bool, timeout: Duration) {
        self.sleeping.store(true, Ordering::SeqCst);
        if !has_work() {
            std::thread::park_timeout(timeout);
        }
        self.sleeping.store(false, Ordering::SeqCst);
    }

    /// Wake the thread if it sleeps (one atomic load when it does not).
    #[inline]
    pub fn wake(&self) {
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) {
            if let Some(t) = self.thread.get() {
                t.unpark();
            }
        }
    }
}

/// What the rx side does when a ring is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Drop the packet and count `ring-full` (live ports).
    Drop,
    /// Wait for room (replay).
    Wait,
}

/// The rx core's end: producers into every worker's rings, a stock of free buffers.
#[derive(Debug)]
pub struct RxQueues<B: Backing = Pool> {
    pool: Arc<B>,
    /// `rings[worker][class]`
    rings: Vec<[Producer<B::Buf>; 3]>,
    /// Buffers coming back from each worker (empty unless `B::RECYCLES`).
    returns: Vec<Consumer<B::Buf>>,
    free: Vec<B::Buf>,
    overflow: Overflow,
    /// `ring-full` drops per class.
    pub ring_full: [u64; 3],
    /// Frames longer than a buffer (queued cut at the buffer size).
    pub oversize: u64,
    stop: Arc<AtomicBool>,
    /// Enqueues since buffers were last reclaimed.
    since_reclaim: u32,
    /// Each worker's mailbox.
    mailboxes: Vec<Sender<WorkerMsg<B::Buf>>>,
    /// Current ring sizes per queued class.
    sizes: [usize; 3],
    /// Stamp queued buffers relative to this instant (latency measurement).
    stamp_base: Option<Instant>,
    /// The stamp of this burst (see [`RxQueues::set_burst_stamp`]).
    stamp_now: u64,
    /// Index of this rx core.
    rx_index: usize,
    /// Each worker's parker, woken after a burst that queued for it.
    worker_parkers: Vec<Arc<Parker>>,
    /// Workers queued for since the last wake.
    queued_for: u64,
    /// This rx core's parker (it waits for ring space in replay).
    parker: Arc<Parker>,
}

/// What an rx core mails to a worker.
#[derive(Debug)]
pub enum WorkerMsg<T: RingItem> {
    /// A new ring for (rx core, class): drain the old one to empty, then use this.
    Ring {
        /// Rx core.
        rx: usize,
        /// Class index (0 known-good, 1 assumed-good, 2 suspect).
        class: usize,
        /// The new ring's consumer.
        consumer: Consumer<T>,
    },
    /// New drain weights per class.
    Weights([usize; 3]),
}

/// Buffers are taken back from the workers at least this often (in enqueues). Reclaiming
/// often keeps the set of buffers in use small and so in cache: the free list is LIFO, and
/// a pool cycled through end to end (27 MB at the default ring sizes) misses the cache on
/// every copy.
const RECLAIM_EVERY: u32 = 32;

pub use weir_model::WorkerStats;

/// A worker's published state: counters and latency histograms, refreshed a few times
/// per second from the worker's own thread (the reader never blocks the worker: the
/// worker skips a refresh when the lock is busy).
#[derive(Debug, Clone)]
pub struct WorkerReport {
    /// Counters.
    pub stats: WorkerStats,
    /// Queueing latency per queued class, in nanoseconds.
    pub latency: [Histogram<u64>; 3],
    /// The worker's terminator, when it runs one.
    pub terminator: Option<weir_terminator::tcp::TerminatorStats>,
    /// Frames the terminator sent that its tx path dropped (ring full).
    pub tx_dropped: u64,
}

impl WorkerReport {
    /// An empty report for `worker`.
    pub fn new(worker: u16) -> WorkerReport {
        let h = || {
            Histogram::new_with_bounds(1, 60_000_000_000, 3)
                .expect("static histogram bounds are valid")
        };
        WorkerReport {
            stats: WorkerStats {
                worker,
                ..WorkerStats::default()
            },
            latency: [h(), h(), h()],
            terminator: None,
            tx_dropped: 0,
        }
    }
}

/// What a worker does with what it drains.
pub trait Drain {
    /// One packet of `class` from rx core `rx`, in priority order.
    fn packet(&mut self, rx: usize, class: Class, frame: &[u8]);
    /// After every drain round (`busy`: the round found packets); `report` is this
    /// worker's report, to add counters to before it is published.
    fn after_round(&mut self, busy: bool, report: &mut WorkerReport) {
        let _ = (busy, report);
    }
}

/// A worker's end: consumers of its rings from every rx core, in class order.
#[derive(Debug)]
pub struct WorkerQueues<B: Backing = Pool> {
    index: u16,
    /// The backing of each rx core.
    pools: Vec<Arc<B>>,
    /// `rings[rx][class]`
    rings: Vec<[Consumer<B::Buf>; 3]>,
    /// Rings mailed by resizes, oldest first, each taken up once the one before it is
    /// empty: `pending[rx][class]`.
    pending: Vec<[VecDeque<Consumer<B::Buf>>; 3]>,
    /// Buffers back to each rx core (empty unless `B::RECYCLES`).
    returns: Vec<Producer<B::Buf>>,
    weights: [usize; 3],
    stop: Arc<AtomicBool>,
    mailbox: Receiver<WorkerMsg<B::Buf>>,
    report: WorkerReport,
    stamp_base: Option<Instant>,
    published: Option<Arc<Mutex<WorkerReport>>>,
    last_publish: Option<Instant>,
    since_publish_check: u32,
    /// Spent handles not yet released (see [`Backing::Spent`]).
    spent: B::Spent,
    /// This worker's parker.
    parker: Arc<Parker>,
    /// The rx cores' parkers, woken after a round that freed ring space.
    rx_parkers: Vec<Arc<Parker>>,
}

/// Build the rings for `rx_cores` rx cores and `workers` workers, with a software
/// [`Pool`] per rx core sized to fill every ring.
pub fn build(
    rings: &RingsConfig,
    rx_cores: usize,
    workers: u16,
    overflow: Overflow,
) -> (Vec<RxQueues>, Vec<WorkerQueues>) {
    let pool_size = pool_size_for(ring_sizes(rings), workers);
    build_with(rings, rx_cores, workers, overflow, |_| {
        Pool::new(u32::try_from(pool_size).unwrap_or(u32::MAX))
    })
}

fn ring_sizes(rings: &RingsConfig) -> [usize; 3] {
    Class::QUEUED.map(|c| rings.of(c).map_or(2, |r| r.size as usize))
}

/// Build the rings over any [`Backing`]: `backing(rx)` gives rx core `rx`'s backing and
/// its free buffers (none for a backing that does not recycle).
pub fn build_with<B: Backing>(
    rings: &RingsConfig,
    rx_cores: usize,
    workers: u16,
    overflow: Overflow,
    mut backing: impl FnMut(usize) -> (Arc<B>, Vec<B::Buf>),
) -> (Vec<RxQueues<B>>, Vec<WorkerQueues<B>>) {
    let weight = |c: Class| rings.of(c).map_or(1, |r| r.weight as usize);
    let sizes = ring_sizes(rings);
    let stop = Arc::new(AtomicBool::new(false));
    let mut rx: Vec<RxQueues<B>> = Vec::with_capacity(rx_cores);
    let mut mailboxes = Vec::with_capacity(usize::from(workers));
    let mut wk: Vec<WorkerQueues<B>> = (0..workers)
        .map(|w| {
            let (tx, mailbox) = channel();
            mailboxes.push(tx);
            WorkerQueues {
                index: w,
                pools: Vec::new(),
                rings: Vec::new(),
                pending: Vec::new(),
                returns: Vec::new(),
                weights: Class::QUEUED.map(weight),
                stop: Arc::clone(&stop),
                mailbox,
                report: WorkerReport::new(w),
                stamp_base: None,
                published: None,
                last_publish: None,
                since_publish_check: 0,
                spent: B::Spent::default(),
                parker: Arc::new(Parker::default()),
                rx_parkers: Vec::new(),
            }
        })
        .collect();
    let worker_parkers: Vec<Arc<Parker>> = wk.iter().map(|w| Arc::clone(&w.parker)).collect();
    for rx_index in 0..rx_cores {
        let (pool, free) = backing(rx_index);
        let rx_parker = Arc::new(Parker::default());
        for w in wk.iter_mut() {
            w.rx_parkers.push(Arc::clone(&rx_parker));
        }
        let pool_size = free.len();
        let mut producers = Vec::with_capacity(usize::from(workers));
        let mut returns = Vec::with_capacity(usize::from(workers));
        for w in wk.iter_mut() {
            let [(p0, c0), (p1, c1), (p2, c2)] = sizes.map(ring::<B::Buf>);
            producers.push([p0, p1, p2]);
            w.rings.push([c0, c1, c2]);
            w.pending
                .push([VecDeque::new(), VecDeque::new(), VecDeque::new()]);
            w.pools.push(Arc::clone(&pool));
            if B::RECYCLES {
                // A return ring can hold every buffer of the pool: pushing never fails.
                let (rp, rc) = ring::<B::Buf>(pool_size);
                w.returns.push(rp);
                returns.push(rc);
            }
        }
        rx.push(RxQueues {
            pool,
            rings: producers,
            returns,
            free,
            overflow,
            ring_full: [0; 3],
            oversize: 0,
            stop: Arc::clone(&stop),
            since_reclaim: 0,
            mailboxes: mailboxes.clone(),
            sizes,
            stamp_base: None,
            stamp_now: 1,
            rx_index,
            worker_parkers: worker_parkers.clone(),
            queued_for: 0,
            parker: rx_parker,
        });
    }
    (rx, wk)
}

/// Buffers per rx core: every slot of every ring of every worker, plus a burst in flight.
/// Rings grown later at run time may hold more packets than there are buffers; the rx
/// core then counts the shortfall as `ring-full` rather than allocate.
fn pool_size_for(sizes: [usize; 3], workers: u16) -> usize {
    sizes.iter().sum::<usize>() * usize::from(workers) + 64
}

/// The way back: frames a worker's terminator sends, to the rx core that owns the port
/// and the flow tracker (which must see the terminators' SYN-ACKs). A fixed pool of
/// buffers per worker, a ring to the rx core and a ring of spent buffers back, so sending
/// never allocates; a full ring or an empty pool drops the frame and counts it (TCP
/// retransmits).
#[derive(Debug)]
pub struct ReplySender {
    pool: Arc<Pool>,
    free: Vec<PktBuf>,
    ring: Producer<PktBuf>,
    back: Consumer<PktBuf>,
    /// Frames dropped because the ring was full or no buffer was free.
    pub dropped: u64,
    /// Frames queued.
    pub sent: u64,
}

/// The rx core's end of a [`ReplySender`].
#[derive(Debug)]
pub struct ReplyReceiver {
    pool: Arc<Pool>,
    ring: Consumer<PktBuf>,
    back: Producer<PktBuf>,
}

/// One rx core's ends of the workers' reply paths, each with the worker it comes from.
pub type ReplyEnds = Vec<(u16, ReplyReceiver)>;

/// A worker → rx core path of `slots` frames.
pub fn reply_path(slots: usize) -> (ReplySender, ReplyReceiver) {
    let slots = slots.max(2).next_power_of_two();
    let (pool, free) = Pool::new(u32::try_from(slots).unwrap_or(u32::MAX));
    let (p, c) = ring::<PktBuf>(slots);
    let (bp, bc) = ring::<PktBuf>(slots);
    (
        ReplySender {
            pool: Arc::clone(&pool),
            free,
            ring: p,
            back: bc,
            dropped: 0,
            sent: 0,
        },
        ReplyReceiver {
            pool,
            ring: c,
            back: bp,
        },
    )
}

impl ReplySender {
    /// Queue `frame` for transmission; false when it was dropped (counted).
    #[inline]
    pub fn send(&mut self, frame: &[u8]) -> bool {
        if self.free.is_empty() {
            self.back.drain(usize::MAX, |b| self.free.push(b));
        }
        let Some(mut buf) = self.free.pop() else {
            self.dropped += 1;
            return false;
        };
        self.pool.fill(&mut buf, frame);
        match self.ring.push(buf) {
            Ok(()) => {
                self.sent += 1;
                true
            }
            Err(buf) => {
                self.free.push(buf);
                self.dropped += 1;
                false
            }
        }
    }
}

impl ReplyReceiver {
    /// Hand up to `max` queued frames to `f`; returns how many.
    #[inline]
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(&[u8])) -> usize {
        let (pool, back) = (&self.pool, &mut self.back);
        self.ring.drain(max, |buf| {
            f(pool.bytes(&buf));
            // The back ring holds the whole pool: this cannot fail.
            let _ = back.push(buf);
        })
    }
}

/// Start each worker on a thread of its own (publishing its report into `slots[i]` when
/// given).
pub fn spawn_workers<B: Backing>(
    wks: Vec<WorkerQueues<B>>,
    slots: Option<&[Arc<Mutex<WorkerReport>>]>,
) -> anyhow::Result<Vec<std::thread::JoinHandle<WorkerStats>>> {
    use anyhow::Context;
    wks.into_iter()
        .enumerate()
        .map(|(i, mut w)| {
            if let Some(slot) = slots.and_then(|s| s.get(i)) {
                w.publish_to(Arc::clone(slot));
            }
            std::thread::Builder::new()
                .name(format!("weir-worker-{}", w.index()))
                .spawn(move || w.run())
        })
        .collect::<std::io::Result<_>>()
        .context("cannot start worker threads")
}

/// Wait for the workers; their counts in worker order.
pub fn join_workers(
    handles: Vec<std::thread::JoinHandle<WorkerStats>>,
) -> anyhow::Result<Vec<WorkerStats>> {
    handles
        .into_iter()
        .map(|h| {
            h.join()
                .map_err(|_| anyhow::anyhow!("a worker thread panicked"))
        })
        .collect()
}

/// Turn on queueing-latency stamps for every rx core and worker, relative to `base`.
pub fn enable_latency<B: Backing>(
    rx: &mut [RxQueues<B>],
    workers: &mut [WorkerQueues<B>],
    base: Instant,
) {
    for r in rx {
        r.stamp_base = Some(base);
    }
    for w in workers {
        w.stamp_base = Some(base);
    }
}

impl RxQueues<Pool> {
    /// Queue a copy of `frame` for `worker` in `class`'s ring. Returns false when it was
    /// dropped (ring full under [`Overflow::Drop`], or no such ring). Always inlined into
    /// the rx core's per-frame path (as a call it cost ~13 instructions a queued frame).
    #[inline(always)]
    pub fn enqueue(&mut self, worker: u16, class: Class, frame: &[u8]) -> bool {
        let ci = class.index();
        if ci >= 3 || usize::from(worker) >= self.rings.len() {
            return false;
        }
        self.since_reclaim += 1;
        if self.since_reclaim >= RECLAIM_EVERY {
            self.since_reclaim = 0;
            self.reclaim();
        }
        let mut buf = match self.free.pop() {
            Some(b) => b,
            None => match self.wait_for_buffer(ci) {
                Some(b) => b,
                None => return false,
            },
        };
        if self
            .pool
            .fill(&mut buf, frame)
            .is_some_and(|n| n < frame.len())
        {
            self.oversize += 1;
        }
        self.push(worker, class, buf)
    }
}

impl RxQueues<Pool> {
    /// [`RxQueues::enqueue`] of the concatenation of `parts` (a decapsulated packet behind
    /// a rewritten Ethernet header).
    #[cold]
    pub fn enqueue_parts(&mut self, worker: u16, class: Class, parts: &[&[u8]]) -> bool {
        let ci = class.index();
        if ci >= 3 || usize::from(worker) >= self.rings.len() {
            return false;
        }
        let mut buf = match self.free.pop() {
            Some(b) => b,
            None => match self.wait_for_buffer(ci) {
                Some(b) => b,
                None => return false,
            },
        };
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if self
            .pool
            .fill_parts(&mut buf, parts)
            .is_some_and(|n| n < total)
        {
            self.oversize += 1;
        }
        self.push(worker, class, buf)
    }

    /// No free buffer: take back what the workers returned, and under
    /// [`Overflow::Wait`] wait for them to return one.
    #[cold]
    #[inline(never)]
    fn wait_for_buffer(&mut self, ci: usize) -> Option<PktBuf> {
        let backoff = Backoff::new();
        loop {
            self.reclaim();
            if let Some(b) = self.free.pop() {
                return Some(b);
            }
            if self.overflow == Overflow::Drop {
                self.ring_full[ci] += 1;
                return None;
            }
            self.wait(&backoff);
        }
    }
}

impl<B: Backing> RxQueues<B> {
    /// The time queued packets are stamped with until the next call (the rx core sets it
    /// once per burst: one clock read per burst, not per packet).
    #[inline]
    pub fn set_burst_stamp(&mut self) {
        if let Some(base) = self.stamp_base {
            self.stamp_now = u64::try_from(base.elapsed().as_nanos())
                .unwrap_or(u64::MAX)
                .max(1);
        }
    }

    /// Wait for the workers (replay only): spin a little, then wake them and sleep until
    /// one frees ring space (they wake this core after every round that drained something).
    #[cold]
    fn wait(&mut self, backoff: &Backoff) {
        if !backoff.is_completed() {
            backoff.snooze();
            return;
        }
        self.queued_for = u64::MAX;
        self.wake_workers();
        self.parker.bind();
        self.parker.park_unless(|| false, Duration::from_millis(1));
    }

    /// After a burst: wake the workers it queued for, if they sleep.
    #[inline]
    pub fn wake_workers(&mut self) {
        if self.queued_for == 0 {
            return;
        }
        for (w, p) in self.worker_parkers.iter().enumerate() {
            if self.queued_for & (1 << (w & 63)) != 0 {
                p.wake();
            }
        }
        self.queued_for = 0;
    }

    /// Take buffers that workers gave back.
    #[inline]
    fn reclaim(&mut self) {
        for r in &mut self.returns {
            r.drain(usize::MAX, |b| self.free.push(b));
        }
    }

    /// A buffer the rings did not take: back to the free list, or released.
    #[inline]
    fn give_back(&mut self, buf: B::Buf) {
        if B::RECYCLES {
            self.free.push(buf);
        }
        // Otherwise dropping the handle releases the buffer (a DPDK mbuf is freed).
    }

    /// Queue `buf` (already holding its frame) for `worker` in `class`'s ring. Returns
    /// false when it was dropped (ring full under [`Overflow::Drop`], or no such ring);
    /// a dropped buffer goes back to the free list or is released. Always inlined: the
    /// per-frame path must not pay a call for it because the handover path calls it too.
    #[inline(always)]
    pub fn push(&mut self, worker: u16, class: Class, mut buf: B::Buf) -> bool {
        let ci = class.index();
        if ci >= 3 || usize::from(worker) >= self.rings.len() {
            self.give_back(buf);
            return false;
        }
        if self.stamp_base.is_some() {
            self.pool.set_stamp(&mut buf, self.stamp_now);
        }
        self.queued_for |= 1 << (worker & 63);
        match self.rings[usize::from(worker)][ci].push(buf) {
            Ok(()) => true,
            Err(back) => self.ring_is_full(worker, ci, back),
        }
    }

    /// The ring was full: drop and count (live), or wait for room (replay).
    #[cold]
    #[inline(never)]
    fn ring_is_full(&mut self, worker: u16, ci: usize, mut buf: B::Buf) -> bool {
        let backoff = Backoff::new();
        loop {
            if self.overflow == Overflow::Drop {
                self.ring_full[ci] += 1;
                self.give_back(buf);
                return false;
            }
            self.wait(&backoff);
            match self.rings[usize::from(worker)][ci].push(buf) {
                Ok(()) => return true,
                Err(back) => buf = back,
            }
        }
    }

    /// Occupancy of `ring[worker][class]`.
    pub fn occupancy(&self, worker: u16, class: Class) -> Option<usize> {
        self.rings
            .get(usize::from(worker))?
            .get(class.index())
            .map(Producer::len)
    }

    /// Tell the workers that no more packets will come; they exit once their rings are
    /// empty.
    pub fn finish(&self) {
        self.stop.store(true, Ordering::Release);
        for p in &self.worker_parkers {
            p.wake();
        }
    }

    /// Current size of `class`'s rings.
    pub fn ring_size(&self, class: Class) -> Option<usize> {
        self.sizes.get(class.index()).copied()
    }

    /// Workers served.
    pub fn workers(&self) -> usize {
        self.rings.len()
    }

    /// Give `class`'s rings (towards every worker) `size` slots (rounded up to a power of
    /// two). Packets already queued are not lost: see the module doc.
    pub fn resize(&mut self, class: Class, size: usize) {
        let ci = class.index();
        if ci >= 3 || self.sizes[ci] == size.max(2).next_power_of_two() {
            return;
        }
        for (w, rings) in self.rings.iter_mut().enumerate() {
            let (p, c) = ring::<B::Buf>(size);
            rings[ci] = p;
            if let Some(mb) = self.mailboxes.get(w) {
                // A worker that has exited no longer drains anything; nothing to lose.
                let _ = mb.send(WorkerMsg::Ring {
                    rx: self.rx_index,
                    class: ci,
                    consumer: c,
                });
            }
        }
        self.sizes[ci] = size.max(2).next_power_of_two();
    }

    /// Set every worker's drain weights (packets per round, per queued class).
    pub fn set_weights(&self, weights: [usize; 3]) {
        for mb in &self.mailboxes {
            let _ = mb.send(WorkerMsg::Weights(weights.map(|w| w.max(1))));
        }
    }
}

impl<B: Backing> WorkerQueues<B> {
    /// This worker's index.
    pub fn index(&self) -> u16 {
        self.index
    }

    /// Publish this worker's counters and histograms to `slot` a few times per second.
    pub fn publish_to(&mut self, slot: Arc<Mutex<WorkerReport>>) {
        self.published = Some(slot);
    }

    /// What this worker has counted so far.
    pub fn report(&self) -> &WorkerReport {
        &self.report
    }

    fn read_mailbox(&mut self) {
        while let Ok(msg) = self.mailbox.try_recv() {
            match msg {
                WorkerMsg::Ring {
                    rx,
                    class,
                    consumer,
                } => {
                    if let Some(queue) = self.pending.get_mut(rx).and_then(|p| p.get_mut(class)) {
                        queue.push_back(consumer);
                    }
                }
                WorkerMsg::Weights(w) => self.weights = w,
            }
        }
    }

    /// One drain round over all rx cores' rings, class by class up to each class's weight;
    /// returns the packets handled. The packets are counted and released.
    #[inline]
    pub fn round(&mut self) -> usize {
        self.round_with(&mut |_, _, _| {})
    }

    /// What this worker has counted, for a terminator to add its own counters before the
    /// next publication.
    pub fn report_mut(&mut self) -> &mut WorkerReport {
        &mut self.report
    }

    /// [`WorkerQueues::round`], handing every packet's class and bytes to `on_packet`
    /// before the buffer is released.
    #[inline]
    pub fn round_with<F: FnMut(usize, Class, &[u8])>(&mut self, on_packet: &mut F) -> usize {
        self.read_mailbox();
        let now = self
            .stamp_base
            .map(|b| u64::try_from(b.elapsed().as_nanos()).unwrap_or(u64::MAX));
        let mut total = 0;
        for ci in 0..3 {
            let weight = self.weights[ci];
            for (rx, rings) in self.rings.iter_mut().enumerate() {
                let stats = &mut self.report.stats;
                let hist = &mut self.report.latency[ci];
                let spent = &mut self.spent;
                let Some(pool) = self.pools.get(rx) else {
                    continue;
                };
                let mut ret = self.returns.get_mut(rx);
                let class = Class::QUEUED[ci];
                let mut bytes = 0;
                let n = rings[ci].drain(weight, |buf| {
                    on_packet(rx, class, pool.bytes(&buf));
                    bytes += u64::from(pool.wire_len(&buf));
                    if let Some(now) = now {
                        let stamp = pool.stamp(&buf);
                        if stamp != 0 {
                            hist.saturating_record(now.saturating_sub(stamp).max(1));
                        }
                    }
                    // The return ring holds the whole pool, so this cannot fail; were it
                    // to, the buffer would be lost to the pool, never to the count above.
                    // Without return rings, the backing releases the handle (DPDK: freed
                    // in bulk below).
                    match ret.as_deref_mut() {
                        Some(ret) => {
                            let _ = ret.push_unpublished(buf);
                        }
                        None => B::release(spent, buf),
                    }
                });
                B::release_all(spent);
                // Counted once per ring drained, not per packet.
                stats.bytes += bytes;
                match ci {
                    0 => stats.known_good += n as u64,
                    1 => stats.assumed_good += n as u64,
                    _ => stats.suspect += n as u64,
                }
                total += n;
                // The buffers go back in one publication per ring drained, not per packet.
                if let Some(ret) = ret {
                    ret.publish();
                }
                // The resized ring takes over once the old one is empty (no more pushes
                // reach the old one, so empty stays empty).
                if let Some(p) = self.pending.get_mut(rx) {
                    if !p[ci].is_empty() && rings[ci].is_empty() {
                        if let Some(next) = p[ci].pop_front() {
                            rings[ci] = next;
                        }
                    }
                }
            }
        }
        if total > 0 {
            self.report.stats.rounds += 1;
        }
        self.maybe_publish();
        total
    }

    fn maybe_publish(&mut self) {
        let Some(slot) = &self.published else {
            return;
        };
        // The clock is read every 64 rounds at most (a round can be a handful of packets).
        self.since_publish_check = self.since_publish_check.wrapping_add(1);
        if self.last_publish.is_some() && !self.since_publish_check.is_multiple_of(64) {
            return;
        }
        let due = self
            .last_publish
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(100));
        if !due {
            return;
        }
        if let Ok(mut g) = slot.try_lock() {
            g.clone_from(&self.report);
            self.last_publish = Some(Instant::now());
        }
    }

    fn pending_empty(&self) -> bool {
        self.pending
            .iter()
            .flatten()
            .all(|q| q.iter().all(Consumer::is_empty))
    }

    /// Drain until the rx side has finished and every ring is empty.
    pub fn run(self) -> WorkerStats {
        struct Count;
        impl Drain for Count {
            fn packet(&mut self, _: usize, _: Class, _: &[u8]) {}
        }
        self.run_with(&mut Count)
    }

    /// Wakes this worker from another thread (answers for its terminator's adapter).
    pub fn waker(&self) -> Arc<dyn Fn() + Send + Sync> {
        let parker = Arc::clone(&self.parker);
        Arc::new(move || parker.wake())
    }

    /// [`WorkerQueues::run`], handing every packet to `drain` and calling its `after_round`
    /// after every round — a terminator's timers and transmissions.
    pub fn run_with<D: Drain>(mut self, drain: &mut D) -> WorkerStats {
        let backoff = Backoff::new();
        self.parker.bind();
        loop {
            let n = self.round_with(&mut |r, c, f| drain.packet(r, c, f));
            drain.after_round(n > 0, &mut self.report);
            if n > 0 {
                // Room was freed: an rx core waiting for it may go on.
                for p in &self.rx_parkers {
                    p.wake();
                }
                backoff.reset();
                continue;
            }
            if self.stop.load(Ordering::Acquire)
                && self.round_with(&mut |r, c, f| drain.packet(r, c, f)) == 0
                && self.pending_empty()
            {
                drain.after_round(false, &mut self.report);
                self.last_publish = None;
                self.maybe_publish();
                return self.report.stats;
            }
            if backoff.is_completed() {
                // Idle: sleep until an rx core queues something (or 1 ms passes, which
                // also bounds how late a stop is seen).
                let (rings, stop) = (&self.rings, &self.stop);
                self.parker.park_unless(
                    || {
                        stop.load(Ordering::Acquire)
                            || rings.iter().flatten().any(|r| !r.is_empty())
                    },
                    Duration::from_millis(1),
                );
            } else {
                backoff.snooze();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_model::config::RingConfig;

    fn small_rings() -> RingsConfig {
        RingsConfig {
            known_good: RingConfig { size: 8, weight: 4 },
            assumed_good: RingConfig { size: 4, weight: 2 },
            suspect: RingConfig { size: 2, weight: 1 },
        }
    }

    #[test]
    fn drop_mode_counts_ring_full_per_class_and_drains_by_priority() {
        let (mut rx, mut wk) = build(&small_rings(), 1, 1, Overflow::Drop);
        let rx = &mut rx[0];
        for _ in 0..10 {
            rx.enqueue(0, Class::Suspect, &[0; 60]);
        }
        for _ in 0..10 {
            rx.enqueue(0, Class::KnownGood, &[0; 60]);
        }
        assert_eq!(rx.ring_full, [2, 0, 8]);
        assert_eq!(rx.occupancy(0, Class::Suspect), Some(2));
        // One round: 4 known-good, 0 assumed-good, 1 suspect.
        assert_eq!(wk[0].round(), 5);
        assert_eq!(wk[0].report.stats.known_good, 4);
        assert_eq!(wk[0].report.stats.suspect, 1);
        assert_eq!(wk[0].report.stats.bytes, 300);
    }

    #[test]
    fn resizing_under_load_loses_nothing() {
        let (mut rx, wk) = build(&small_rings(), 1, 2, Overflow::Wait);
        let handles: Vec<_> = wk
            .into_iter()
            .map(|w| std::thread::spawn(move || w.run()))
            .collect();
        let rx = &mut rx[0];
        let sizes = [2usize, 64, 4, 1024, 8, 2];
        for i in 0..30_000u32 {
            if i % 3000 == 1500 {
                let size = sizes[(i / 3000) as usize % sizes.len()];
                rx.resize(Class::QUEUED[(i / 3000) as usize % 3], size);
                rx.set_weights([1 + (i % 5) as usize, 2, 1]);
            }
            let class = Class::QUEUED[(i % 3) as usize];
            assert!(rx.enqueue((i % 2) as u16, class, &i.to_be_bytes()));
        }
        rx.finish();
        let stats: Vec<WorkerStats> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let drained: u64 = stats
            .iter()
            .map(|s| s.known_good + s.assumed_good + s.suspect)
            .sum();
        assert_eq!(drained, 30_000, "every queued packet was drained");
        assert_eq!(rx.ring_full, [0, 0, 0]);
    }

    #[test]
    fn workers_take_up_resized_rings_and_weights() {
        let (mut rx, mut wk) = build(&small_rings(), 1, 1, Overflow::Drop);
        let rx = &mut rx[0];
        for _ in 0..8 {
            assert!(rx.enqueue(0, Class::KnownGood, &[1; 60]));
        }
        rx.resize(Class::KnownGood, 32);
        rx.set_weights([2, 2, 2]);
        // The old ring still holds 8; the new one takes the next 20 (more than the old 8).
        for _ in 0..20 {
            assert!(rx.enqueue(0, Class::KnownGood, &[2; 60]));
        }
        assert_eq!(rx.ring_full, [0, 0, 0]);
        let mut total = 0;
        while total < 28 {
            let n = wk[0].round();
            assert!(n <= 2, "weight 2 per class per round, got {n}");
            total += n;
            if n == 0 {
                break;
            }
        }
        assert_eq!(wk[0].report.stats.known_good, 28);
        assert_eq!(rx.ring_size(Class::KnownGood), Some(32));
    }

    #[test]
    fn queueing_latency_is_recorded_per_class() {
        let (mut rx, mut wk) = build(&small_rings(), 1, 1, Overflow::Drop);
        enable_latency(&mut rx, &mut wk, Instant::now());
        for _ in 0..3 {
            assert!(rx[0].enqueue(0, Class::KnownGood, &[0; 60]));
        }
        assert!(rx[0].enqueue(0, Class::Suspect, &[0; 60]));
        std::thread::sleep(Duration::from_millis(2));
        wk[0].round();
        let r = wk[0].report();
        assert_eq!(r.latency[0].len(), 3);
        assert_eq!(r.latency[1].len(), 0);
        assert_eq!(r.latency[2].len(), 1);
        assert!(r.latency[0].min() >= 1_000_000, "waited about 2 ms");
    }

    #[test]
    fn wait_mode_loses_nothing_across_threads() {
        let (mut rx, wk) = build(&small_rings(), 1, 2, Overflow::Wait);
        let handles: Vec<_> = wk
            .into_iter()
            .map(|w| std::thread::spawn(move || w.run()))
            .collect();
        let rx = &mut rx[0];
        for i in 0..30_000u32 {
            let class = Class::QUEUED[(i % 3) as usize];
            assert!(rx.enqueue((i % 2) as u16, class, &i.to_be_bytes()));
        }
        rx.finish();
        let stats: Vec<WorkerStats> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let total: u64 = stats
            .iter()
            .map(|s| s.known_good + s.assumed_good + s.suspect)
            .sum();
        assert_eq!(total, 30_000);
        assert_eq!(rx.ring_full, [0, 0, 0]);
        assert_eq!(stats[0].known_good + stats[1].known_good, 10_000);
    }
}
