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
//! each class has its own ring. Until the terminators exist, a worker counts what it
//! drains and returns the buffer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_utils::Backoff;

use crate::config::RingsConfig;
use crate::pool::{PktBuf, Pool};
use crate::ring::{ring, Consumer, Producer};
use crate::verdict::Class;

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
pub struct RxQueues {
    pool: Arc<Pool>,
    /// `rings[worker][class]`
    rings: Vec<[Producer<PktBuf>; 3]>,
    /// Buffers coming back from each worker.
    returns: Vec<Consumer<PktBuf>>,
    free: Vec<PktBuf>,
    overflow: Overflow,
    /// `ring-full` drops per class.
    pub ring_full: [u64; 3],
    /// Frames longer than a buffer (queued cut at the buffer size).
    pub oversize: u64,
    stop: Arc<AtomicBool>,
    /// Enqueues since buffers were last reclaimed.
    since_reclaim: u32,
}

/// Buffers are taken back from the workers at least this often (in enqueues). Reclaiming
/// often keeps the set of buffers in use small and so in cache: the free list is LIFO, and
/// a pool cycled through end to end (27 MB at the default ring sizes) misses the cache on
/// every copy.
const RECLAIM_EVERY: u32 = 32;

/// What a worker counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WorkerStats {
    /// Worker index.
    pub worker: u16,
    /// Packets per queued class.
    pub known_good: u64,
    /// Packets per queued class.
    pub assumed_good: u64,
    /// Packets per queued class.
    pub suspect: u64,
    /// Bytes drained (as received on the wire).
    pub bytes: u64,
    /// Drain rounds that found work.
    pub rounds: u64,
}

/// A worker's end: consumers of its rings from every rx core, in class order.
#[derive(Debug)]
pub struct WorkerQueues {
    index: u16,
    /// The pool of each rx core.
    pools: Vec<Arc<Pool>>,
    /// `rings[rx][class]`
    rings: Vec<[Consumer<PktBuf>; 3]>,
    /// Buffers back to each rx core.
    returns: Vec<Producer<PktBuf>>,
    weights: [usize; 3],
    stop: Arc<AtomicBool>,
    stats: WorkerStats,
}

/// Build the rings for `rx_cores` rx cores and `workers` workers.
pub fn build(
    rings: &RingsConfig,
    rx_cores: usize,
    workers: u16,
    overflow: Overflow,
) -> (Vec<RxQueues>, Vec<WorkerQueues>) {
    let size = |c: Class| rings.of(c).map_or(2, |r| r.size as usize);
    let weight = |c: Class| rings.of(c).map_or(1, |r| r.weight as usize);
    let per_worker: usize = Class::QUEUED.iter().map(|&c| size(c)).sum();
    // Every queued slot can hold a buffer, plus a burst in flight on each side.
    let pool_size = per_worker * usize::from(workers) + 64;
    let stop = Arc::new(AtomicBool::new(false));
    let mut rx: Vec<RxQueues> = Vec::with_capacity(rx_cores);
    let mut wk: Vec<WorkerQueues> = (0..workers)
        .map(|w| WorkerQueues {
            index: w,
            pools: Vec::new(),
            rings: Vec::new(),
            returns: Vec::new(),
            weights: Class::QUEUED.map(weight),
            stop: Arc::clone(&stop),
            stats: WorkerStats {
                worker: w,
                ..WorkerStats::default()
            },
        })
        .collect();
    for _ in 0..rx_cores {
        let (pool, free) = Pool::new(u32::try_from(pool_size).unwrap_or(u32::MAX));
        let mut producers = Vec::with_capacity(usize::from(workers));
        let mut returns = Vec::with_capacity(usize::from(workers));
        for w in wk.iter_mut() {
            let [(p0, c0), (p1, c1), (p2, c2)] = Class::QUEUED.map(|c| ring::<PktBuf>(size(c)));
            producers.push([p0, p1, p2]);
            w.rings.push([c0, c1, c2]);
            // A return ring can hold every buffer of the pool: pushing never fails.
            let (rp, rc) = ring::<PktBuf>(pool_size);
            w.returns.push(rp);
            w.pools.push(Arc::clone(&pool));
            returns.push(rc);
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
        });
    }
    (rx, wk)
}

impl RxQueues {
    /// Take buffers that workers gave back.
    #[inline]
    fn reclaim(&mut self) {
        for r in &mut self.returns {
            r.drain(usize::MAX, |b| self.free.push(b));
        }
    }

    /// Queue a copy of `frame` for `worker` in `class`'s ring. Returns false when it was
    /// dropped (ring full under [`Overflow::Drop`], or no such ring).
    #[inline]
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
        let backoff = Backoff::new();
        let mut buf = loop {
            if let Some(b) = self.free.pop() {
                break b;
            }
            self.reclaim();
            if self.free.is_empty() {
                if self.overflow == Overflow::Drop {
                    self.ring_full[ci] += 1;
                    return false;
                }
                backoff.snooze();
            }
        };
        if self
            .pool
            .fill(&mut buf, frame)
            .is_some_and(|n| n < frame.len())
        {
            self.oversize += 1;
        }
        let ring = &mut self.rings[usize::from(worker)][ci];
        loop {
            match ring.push(buf) {
                Ok(()) => return true,
                Err(back) => {
                    buf = back;
                    if self.overflow == Overflow::Drop {
                        self.ring_full[ci] += 1;
                        self.free.push(buf);
                        return false;
                    }
                    backoff.snooze();
                }
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
    }
}

impl WorkerQueues {
    /// This worker's index.
    pub fn index(&self) -> u16 {
        self.index
    }

    /// One drain round over all rx cores' rings, class by class up to each class's weight;
    /// returns the packets handled.
    #[inline]
    pub fn round(&mut self) -> usize {
        let mut total = 0;
        for ci in 0..3 {
            let weight = self.weights[ci];
            for (rx, rings) in self.rings.iter_mut().enumerate() {
                let stats = &mut self.stats;
                let (Some(ret), Some(pool)) = (self.returns.get_mut(rx), self.pools.get(rx)) else {
                    continue;
                };
                total += rings[ci].drain(weight, |buf| {
                    stats.bytes += u64::from(pool.wire_len(&buf));
                    match ci {
                        0 => stats.known_good += 1,
                        1 => stats.assumed_good += 1,
                        _ => stats.suspect += 1,
                    }
                    // The return ring holds the whole pool, so this cannot fail; were it
                    // to, the buffer would be lost to the pool, never to the count above.
                    let _ = ret.push(buf);
                });
            }
        }
        if total > 0 {
            self.stats.rounds += 1;
        }
        total
    }

    /// Drain until the rx side has finished and every ring is empty.
    pub fn run(mut self) -> WorkerStats {
        let backoff = Backoff::new();
        loop {
            if self.round() > 0 {
                backoff.reset();
                continue;
            }
            if self.stop.load(Ordering::Acquire) && self.round() == 0 {
                return self.stats;
            }
            backoff.snooze();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RingConfig;

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
        assert_eq!(wk[0].stats.known_good, 4);
        assert_eq!(wk[0].stats.suspect, 1);
        assert_eq!(wk[0].stats.bytes, 300);
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
