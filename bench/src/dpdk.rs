//! `weir-bench dpdk`: weir's rx core on a DPDK vdev, for the side-by-side with
//! `dpdk-testpmd` (`scripts/bench-vs-testpmd.sh`).
//!
//! One lcore does what testpmd's forwarding lcore does (rx bursts from queue 0) plus
//! weir's work on every mbuf: parse + classify in place, push the mbuf to its worker's
//! ring (zero copy), and after every burst one drain round of every worker on the same
//! lcore, which drops (frees) the mbufs. So weir's figure is "rx + classify + enqueue +
//! drain + free" against testpmd's "rx + free" (`rxonly`) or "rx + tx" (`io`), on the
//! same vdev, the same packets and the same kind of lcore.
//!
//! [`Work::QueueOnly`] leaves classification out: every mbuf goes straight to a worker's
//! known-good ring (round robin), so the run measures weir's packet path without its
//! decisions (rx, enqueue, drain, free): what classification costs is the difference.

use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use weir_dp::classify::Vantage;
use weir_dp::dpdk::{self, Mempool, Port, PortSetup};
use weir_dp::pipeline::{self, Overflow};
use weir_dp::port::dpdk::{DpdkQueue, InBurst, Mbufs};
use weir_dp::port::{Port as _, Received as _, RxStatus};
use weir_dp::rx::{RxCore, RxSetup};
use weir_dp::state::DataplaneState;
use weir_model::config::Config;
use weir_model::Class;

use crate::Warmup;

/// What a run measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct DpdkRun {
    /// Packets received.
    pub packets: u64,
    /// Seconds of polling.
    pub secs: f64,
    /// Packets the workers drained.
    pub drained: u64,
    /// Rejected by the classifier.
    pub rejected: u64,
    /// `ring-full` drops.
    pub ring_full: u64,
    /// Classified known-good during the timed run.
    pub known_good: u64,
    /// Established flows in the table when the timed run started.
    pub established: u64,
}

/// What the rx core does with each mbuf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// weir's rx core: classify, then queue, answer or drop.
    Classify,
    /// No classification: queue every mbuf known-good to the workers in turn.
    QueueOnly,
}

/// Run weir's rx core on `devargs` for `secs` seconds on a worker lcore, after `warm`.
/// `eal`: EAL arguments (must give at least one worker lcore).
pub fn run(
    eal: &[String],
    devargs: &str,
    secs: f64,
    mbufs: u32,
    warm: &Warmup,
    work: Work,
) -> Result<DpdkRun> {
    dpdk::eal_init(eal).context("EAL initialisation")?;
    let lcore = *dpdk::worker_lcores()
        .first()
        .context("the EAL arguments give no worker lcore (use -l 0,1)")?;
    let pool = Mempool::new("weir_bench", mbufs, 256, 2048 + 128).context("mbuf pool")?;
    let mut port = Port::attach(devargs).with_context(|| format!("vdev {devargs}"))?;
    port.configure(
        &PortSetup {
            rx_queues: 1,
            tx_queues: 1,
            rx_desc: 1024,
            tx_desc: 1024,
            rss: false,
            rx_timestamp: false,
        },
        &pool,
    )?;
    port.start()?;
    let devices = Arc::new(vec![port]);
    let cfg = match warm.flow_table {
        Some(slots) => Config::from_toml(
            "--flow-table",
            &format!("[limits]\nflow_table_capacity = {slots}\n"),
        )?,
        None => Config::default(),
    };
    let state = DataplaneState::new(&cfg, 1, Arc::new(std::sync::atomic::AtomicBool::new(false)))?;
    let (mut rxs, mut workers) =
        pipeline::build_with(&cfg.rings, 1, cfg.dataplane.workers, Overflow::Drop, |_| {
            (Arc::new(Mbufs), Vec::new())
        });
    let mut setup = RxSetup::live(0);
    setup.vantage = Vantage::Replay;
    setup.seed = 0x5eed;
    let mut core = RxCore::new(&cfg, &state, rxs.pop().context("one rx core")?, setup);
    let now_ns = 1_767_225_600_000_000_000u64; // classification time: fixed
    if let Some(path) = &warm.capture {
        weir_dp::capture::Capture::open(path)
            .with_context(|| format!("warm-up capture {}", path.display()))?
            .for_each(|r| {
                core.clf.classify(r.data, now_ns);
            })
            .with_context(|| format!("reading {}", path.display()))?;
    }
    let established = core.clf.flows().occupancy(now_ns).1 as u64;
    let known_good_before = core.clf.counters().class(Class::KnownGood);
    let mut queue = DpdkQueue::new(Arc::clone(&devices), 0, pool.clone());
    let (done_tx, done_rx) = mpsc::channel();
    dpdk::launch(lcore, move || {
        let limit = Duration::from_secs_f64(secs);
        let (packets, drained, secs) = match work {
            Work::Classify => poll(&mut queue, &mut workers, limit, |m| {
                core.receive(m, now_ns);
            }),
            Work::QueueOnly => {
                let n = u16::try_from(core.rx.workers()).unwrap_or(u16::MAX).max(1);
                let mut next = 0u16;
                poll(&mut queue, &mut workers, limit, |m| {
                    m.queue(&mut core.rx, next, Class::KnownGood);
                    next = if next + 1 == n { 0 } else { next + 1 };
                })
            }
        };
        core.rx.finish();
        for w in &mut workers {
            while w.round() > 0 {}
        }
        let c = core.clf.counters();
        let _ = done_tx.send(DpdkRun {
            packets,
            secs,
            drained,
            rejected: c.class(Class::Reject),
            ring_full: core.rx.ring_full.iter().sum(),
            known_good: c.class(Class::KnownGood) - known_good_before,
            established,
        });
        drop(core);
        drop(queue);
        0
    })?;
    let rc = dpdk::wait(lcore);
    let run = done_rx
        .try_recv()
        .with_context(|| format!("the benchmark lcore returned {rc} without a result"))?;
    drop(devices);
    if pool.available() != pool.capacity() {
        bail!(
            "mbufs leaked: {} of {} back in the pool",
            pool.available(),
            pool.capacity()
        );
    }
    Ok(run)
}

/// Poll `queue` for `limit`, handing every frame to `per_frame`, with one drain round of
/// every worker after each burst (on the same lcore, as testpmd frees what it receives
/// on its one lcore): (packets received, packets drained, seconds).
fn poll(
    queue: &mut DpdkQueue,
    workers: &mut [pipeline::WorkerQueues<Mbufs>],
    limit: Duration,
    mut per_frame: impl for<'a> FnMut(InBurst<'a>),
) -> (u64, u64, f64) {
    let (mut packets, mut drained) = (0u64, 0u64);
    // Time checks every 1024 bursts keep the clock off the per-packet path.
    let start = Instant::now();
    let mut bursts = 0u32;
    loop {
        if let Ok(RxStatus::Frames(n)) = queue.rx_burst(&mut per_frame) {
            packets += n as u64;
        }
        for w in workers.iter_mut() {
            drained += w.round() as u64;
        }
        bursts = bursts.wrapping_add(1);
        if bursts.is_multiple_of(1024) && start.elapsed() >= limit {
            break;
        }
    }
    (packets, drained, start.elapsed().as_secs_f64())
}
