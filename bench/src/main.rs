//! `weir-bench`: writes benchmark captures and runs the single-core software pipeline over
//! a capture, for wall-clock figures and for callgrind's instruction counts
//! (`scripts/bench-instructions.sh` runs it on N and 2N packets and takes the
//! difference, which cancels start-up and table initialisation).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use weir_bench::Pipeline;
use weir_dp::capture::Capture;
use weir_dp::Class;

#[derive(Debug, Parser)]
#[command(name = "weir-bench", about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Workload {
    /// Mostly data on established flows, new SYNs, some violations.
    Mix,
    /// Spoofed non-conforming SYNs from random sources.
    Flood,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Write a benchmark capture.
    Gen {
        /// Which traffic.
        #[arg(long, value_enum)]
        workload: Workload,
        /// Frames to write.
        #[arg(long)]
        packets: usize,
        /// Output pcap.
        #[arg(long)]
        out: PathBuf,
    },
    /// Run a capture through parse + classify + enqueue + dequeue on one core.
    Run {
        /// The capture.
        file: PathBuf,
        /// Flow table slots.
        #[arg(long, default_value_t = 1 << 20)]
        flow_table: usize,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Gen {
            workload,
            packets,
            out,
        } => {
            let frames = match workload {
                Workload::Mix => weir_fixtures::bench_mix(packets),
                Workload::Flood => weir_fixtures::bench_flood(packets),
            };
            weir_fixtures::write_pcap(&out, &frames)
                .with_context(|| format!("writing {}", out.display()))?;
        }
        Cmd::Run { file, flow_table } => {
            let mut p = Pipeline::new(flow_table);
            let mut cap = Capture::open(&file)?;
            let start = Instant::now();
            let n = cap.for_each(|r| {
                p.push(r.data, r.ts_ns);
            })?;
            p.drain();
            let secs = start.elapsed().as_secs_f64();
            let c = p.classifier.counters();
            println!(
                "packets {n} outbound {} known_good {} assumed_good {} suspect {} reject {} drained {} ring_full {:?}",
                c.outbound(),
                c.class(Class::KnownGood),
                c.class(Class::AssumedGood),
                c.class(Class::Suspect),
                c.class(Class::Reject),
                p.drained,
                p.ring_full()
            );
            println!(
                "elapsed {secs:.4} s, {:.2} Mpps, {:.1} ns/packet",
                n as f64 / secs / 1e6,
                secs * 1e9 / n.max(1) as f64
            );
        }
    }
    Ok(())
}
