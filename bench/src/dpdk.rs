//! `weir-bench dpdk`: weir's rx core on a DPDK vdev, for the side-by-side with
//! `dpdk-testpmd` (`scripts/bench-vs-testpmd.sh`).
//!
//! One lcore does what testpmd's forwarding lcore does (rx bursts from queue 0) plus
//! weir's work on every mbuf: parse + classify in place, push the mbuf to its worker's
//! ring (zero copy), and after every burst one drain round of every worker on the same
//! lcore, which drops (frees) the mbufs. So weir's figure is "rx + classify + enqueue +
//! drain + free" against testpmd's "rx + free" (`rxonly`) or "rx + tx" (`io`), on the
//! same vdev, the same packets and the same kind of lcore.

use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use weir_dp::classify::Limits;
use weir_dp::dpdk::{self, Burst, Mempool, Port, PortSetup};
use weir_dp::dpdk_port::Mbufs;
use weir_dp::pipeline::{self, Overflow};
use weir_dp::{Classifier, Policy, Vantage};
use weir_model::config::Config;
use weir_model::{Class, Disposition};

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
}

/// Run weir's rx core on `devargs` for `secs` seconds on a worker lcore. `eal`: EAL
/// arguments (must give at least one worker lcore).
pub fn run(eal: &[String], devargs: &str, secs: f64, mbufs: u32) -> Result<DpdkRun> {
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
    let port = Arc::new(port);
    let cfg = Config::default();
    let policy = Policy::from_config(&cfg)?;
    let mut clf = Classifier::new(policy, Limits::from_config(&cfg), Vantage::Replay, 0x5eed);
    let (mut rxs, mut workers) =
        pipeline::build_with(&cfg.rings, 1, cfg.dataplane.workers, Overflow::Drop, |_| {
            (Arc::new(Mbufs), Vec::new())
        });
    let mut rx = rxs.pop().context("one rx core")?;
    let (done_tx, done_rx) = mpsc::channel();
    let p = Arc::clone(&port);
    dpdk::launch(lcore, move || {
        let mut burst = Burst::new();
        let mut packets = 0u64;
        let mut drained = 0u64;
        // Time checks every 1024 bursts keep the clock off the per-packet path.
        let start = Instant::now();
        let limit = Duration::from_secs_f64(secs);
        let mut bursts = 0u32;
        let now_ns = 1_767_225_600_000_000_000u64; // classification time: fixed
        loop {
            let n = p.rx_burst(0, &mut burst);
            packets += n as u64;
            for m in burst.by_ref() {
                if let Disposition::Classified { verdict, worker } = clf.classify(m.data(), now_ns)
                {
                    let class = verdict.class();
                    if class != Class::Reject {
                        rx.push(worker, class, m);
                    }
                }
            }
            for w in &mut workers {
                drained += w.round() as u64;
            }
            bursts = bursts.wrapping_add(1);
            if bursts.is_multiple_of(1024) && start.elapsed() >= limit {
                break;
            }
        }
        let secs = start.elapsed().as_secs_f64();
        rx.finish();
        for w in &mut workers {
            while w.round() > 0 {}
        }
        let c = clf.counters();
        let _ = done_tx.send(DpdkRun {
            packets,
            secs,
            drained,
            rejected: c.class(Class::Reject),
            ring_full: rx.ring_full.iter().sum(),
        });
        0
    })?;
    let rc = dpdk::wait(lcore);
    let run = done_rx
        .try_recv()
        .with_context(|| format!("the benchmark lcore returned {rc} without a result"))?;
    drop(port);
    if pool.available() != pool.capacity() {
        bail!(
            "mbufs leaked: {} of {} back in the pool",
            pool.available(),
            pool.capacity()
        );
    }
    Ok(run)
}
