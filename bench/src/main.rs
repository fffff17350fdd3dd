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
    /// weir's rx core on a DPDK vdev for a while (built with `--features dpdk`); prints
    /// `weir-dpdk: <Mpps> Mpps ...` (scripts/bench-vs-testpmd.sh reads it).
    Dpdk {
        /// The vdev, as DPDK device arguments (`net_null0`, `net_pcap0,rx_pcap=F,infinite_rx=1`).
        #[arg(long)]
        vdev: String,
        /// Seconds to poll.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// EAL arguments as one string (must give a worker lcore).
        #[arg(
            long,
            allow_hyphen_values = true,
            default_value = "--no-huge -m 1024 --no-pci --no-telemetry -l 0,1 --log-level lib.eal:error"
        )]
        eal: String,
        /// Mbufs in the pool.
        #[arg(long, default_value_t = 32768)]
        mbufs: u32,
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
        Cmd::Dpdk {
            vdev,
            seconds,
            eal,
            mbufs,
        } => dpdk(&vdev, seconds, &eal, mbufs)?,
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

#[cfg(feature = "dpdk")]
fn dpdk(vdev: &str, seconds: f64, eal: &str, mbufs: u32) -> Result<()> {
    let mut eal: Vec<String> = eal.split_whitespace().map(str::to_string).collect();
    if !eal.iter().any(|a| a.starts_with("--file-prefix")) {
        eal.push(format!("--file-prefix=weir-bench-{}", std::process::id()));
    }
    let r = weir_bench::dpdk::run(&eal, vdev, seconds, mbufs)?;
    println!(
        "weir-dpdk: {:.3} Mpps ({} packets in {:.3} s; drained {}, rejected {}, ring-full {})",
        r.packets as f64 / r.secs / 1e6,
        r.packets,
        r.secs,
        r.drained,
        r.rejected,
        r.ring_full
    );
    Ok(())
}

#[cfg(not(feature = "dpdk"))]
fn dpdk(_: &str, _: f64, _: &str, _: u32) -> Result<()> {
    anyhow::bail!(
        "weir-bench was built without DPDK: cargo build --release -p weir-bench --features dpdk"
    )
}
