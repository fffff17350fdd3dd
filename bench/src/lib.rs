//! The software pipeline as one rx core runs it — the rx core's own per-frame path
//! ([`RxCore::receive`]: parse, classify, enqueue to the worker's ring) and the worker's
//! dequeue — driven on one thread, so that a benchmark (or callgrind) sees the whole
//! per-packet cost in one place. [`terminator`] does the same for
//! a worker's terminator (smoltcp + HTTP/1.1).

#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod load;
pub mod terminator;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use weir_dp::classify::Vantage;
use weir_dp::pipeline::{self, Overflow, RxQueues, WorkerQueues};
use weir_dp::port::SoftFrame;
use weir_dp::rx::{RxCore, RxSetup};
use weir_dp::state::DataplaneState;
use weir_model::config::Config;
use weir_model::{Class, Disposition};

pub use weir_dp::port::BURST;

/// One rx core and its workers on one thread.
#[derive(Debug)]
pub struct Pipeline {
    /// The rx core (its classifier is `core.clf`).
    pub core: RxCore,
    workers: Vec<WorkerQueues>,
    in_burst: usize,
    /// Packets the workers drained.
    pub drained: u64,
}

impl Pipeline {
    /// The built-in default config with a flow table of `flow_table_capacity` slots.
    pub fn new(flow_table_capacity: usize) -> Pipeline {
        let cfg = Config::from_toml(
            "bench",
            &format!("[limits]\nflow_table_capacity = {flow_table_capacity}\n"),
        )
        .expect("bench config is valid");
        let state = DataplaneState::new(&cfg, 1, Arc::new(AtomicBool::new(false)))
            .expect("built-in policy is valid");
        let (mut rx, workers) =
            pipeline::build(&cfg.rings, 1, cfg.dataplane.workers, Overflow::Drop);
        let mut setup = RxSetup::live(0);
        setup.vantage = Vantage::Replay;
        setup.seed = 0x5eed;
        let core = RxCore::new(&cfg, &state, rx.pop().expect("one rx core"), setup);
        Pipeline {
            core,
            workers,
            in_burst: 0,
            drained: 0,
        }
    }

    /// The rx core's per-frame path for one frame; every [`BURST`] frames the workers
    /// drain.
    #[inline]
    pub fn push(&mut self, frame: &[u8], now_ns: u64) -> Disposition {
        let d = self.core.receive(
            SoftFrame {
                data: frame,
                wire_len: u32::try_from(frame.len()).unwrap_or(u32::MAX),
                capture_ns: None,
                link: weir_dp::capture::Link::Ethernet,
            },
            now_ns,
        );
        self.in_burst += 1;
        if self.in_burst == BURST {
            self.drain();
        }
        d
    }

    /// Let every worker run one drain round.
    #[inline]
    pub fn drain(&mut self) {
        self.in_burst = 0;
        for w in &mut self.workers {
            self.drained += w.round() as u64;
        }
    }

    /// Drain rounds until the workers' rings are empty (a round takes at most a quota per
    /// ring, so one round after the last burst can leave frames queued).
    pub fn drain_all(&mut self) {
        loop {
            self.in_burst = 0;
            let mut n = 0u64;
            for w in &mut self.workers {
                n += w.round() as u64;
            }
            self.drained += n;
            if n == 0 {
                return;
            }
        }
    }

    /// `ring-full` drops so far, per queued class.
    pub fn ring_full(&self) -> [u64; 3] {
        self.core.rx.ring_full
    }
}

/// The reference the pipeline is compared with in the same run: the same frames through
/// the same rings and workers with no parsing and no classification (every frame queued
/// as assumed-good to worker 0). The ratio between the two is the cost of deciding.
#[derive(Debug)]
pub struct QueueOnly {
    rx: RxQueues,
    workers: Vec<WorkerQueues>,
    in_burst: usize,
    /// Packets drained.
    pub drained: u64,
}

impl QueueOnly {
    /// Rings and workers as the built-in default config has them.
    pub fn new() -> QueueOnly {
        let cfg = Config::default();
        let (mut rx, workers) =
            pipeline::build(&cfg.rings, 1, cfg.dataplane.workers, Overflow::Drop);
        QueueOnly {
            rx: rx.pop().expect("one rx core"),
            workers,
            in_burst: 0,
            drained: 0,
        }
    }

    /// Queue one frame.
    #[inline]
    pub fn push(&mut self, frame: &[u8]) {
        self.rx.enqueue(0, Class::AssumedGood, frame);
        self.in_burst += 1;
        if self.in_burst == BURST {
            self.in_burst = 0;
            for w in &mut self.workers {
                self.drained += w.round() as u64;
            }
        }
    }
}

impl Default for QueueOnly {
    fn default() -> Self {
        Self::new()
    }
}

/// What `weir-bench dpdk`'s rx core holds before the timed run.
#[derive(Debug, Clone, Default)]
pub struct Warmup {
    /// Flow-table slots (the config's default when `None`).
    pub flow_table: Option<u32>,
    /// A capture classified (in software, at the run's fixed time) before the run: the
    /// handshakes of the flows the timed packets belong to.
    pub capture: Option<std::path::PathBuf>,
}
