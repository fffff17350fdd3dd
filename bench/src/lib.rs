//! The software pipeline as one rx core runs it — parse, classify, enqueue to the worker's
//! ring, and the worker's dequeue — driven on one thread, so that a benchmark (or
//! callgrind) sees the whole per-packet cost in one place. [`terminator`] does the same for
//! a worker's terminator (smoltcp + HTTP/1.1).

#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod load;
pub mod terminator;

use weir_dp::classify::Limits;
use weir_dp::pipeline::{self, Overflow, RxQueues, WorkerQueues};
use weir_dp::{Classifier, Policy, Vantage};
use weir_model::config::Config;
use weir_model::{Class, Disposition};

/// Packets handled between two worker drain rounds: DESIGN.md's burst size.
pub const BURST: usize = 32;

/// One rx core and its workers on one thread.
#[derive(Debug)]
pub struct Pipeline {
    /// The classifier.
    pub classifier: Classifier,
    rx: RxQueues,
    workers: Vec<WorkerQueues>,
    in_burst: usize,
    /// Packets the workers drained.
    pub drained: u64,
}

impl Pipeline {
    /// The built-in default config with a flow table of `flow_table_capacity` slots.
    pub fn new(flow_table_capacity: usize) -> Pipeline {
        let cfg = Config::default();
        let policy = Policy::from_config(&cfg).expect("built-in policy is valid");
        let limits = Limits {
            flow_table_capacity,
            ..Limits::from_config(&cfg)
        };
        let (mut rx, workers) =
            pipeline::build(&cfg.rings, 1, cfg.dataplane.workers, Overflow::Drop);
        Pipeline {
            classifier: Classifier::new(policy, limits, Vantage::Replay, 0x5eed),
            rx: rx.pop().expect("one rx core"),
            workers,
            in_burst: 0,
            drained: 0,
        }
    }

    /// Parse, classify and queue one frame; every [`BURST`] frames the workers drain.
    #[inline]
    pub fn push(&mut self, frame: &[u8], now_ns: u64) -> Disposition {
        let d = self.classifier.classify(frame, now_ns);
        if let Disposition::Classified { verdict, worker } = d {
            let class = verdict.class();
            if class != Class::Reject {
                self.rx.enqueue(worker, class, frame);
            }
        }
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

    /// `ring-full` drops so far, per queued class.
    pub fn ring_full(&self) -> [u64; 3] {
        self.rx.ring_full
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
