//! `weir-bench`: writes benchmark captures and runs the single-core software pipeline over
//! a capture, for wall-clock figures and for callgrind's instruction counts
//! (`scripts/bench-instructions.sh` runs it on N and 2N packets and takes the
//! difference, which cancels start-up and table initialisation); and the terminator's
//! per-packet cost curve, connection rate and memory per connection (`weir-bench
//! terminator`, see `weir_bench::terminator`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use weir_bench::{Pipeline, Warmup};
use weir_dp::capture::Capture;
use weir_model::Class;

/// A line to standard output: a closed pipe ends the output quietly and any other write
/// error is returned (`println!` panics on both).
macro_rules! out {
    ($($arg:tt)*) => {
        weir_dp::output::emit(&format!("{}\n", format_args!($($arg)*)))?
    };
}

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
    /// Data on `--flows` established flows, drawn at random; the handshakes go to
    /// `--warm` (the flow-table occupancy benchmark).
    Established,
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
        /// `established`: how many flows.
        #[arg(long, default_value_t = 1024)]
        flows: usize,
        /// `established`: write the flows' handshakes here (for `dpdk --warm`).
        #[arg(long)]
        warm: Option<PathBuf>,
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
        /// Classify this capture before the run (the handshakes `gen --workload
        /// established --warm` wrote), so the timed packets find their flows.
        #[arg(long)]
        warm: Option<PathBuf>,
        /// Flow-table slots (default: the config's).
        #[arg(long)]
        flow_table: Option<u32>,
        /// Leave classification out: queue every mbuf known-good to the workers in turn
        /// (weir's packet path alone: rx, enqueue, drain, free).
        #[arg(long)]
        no_classify: bool,
    },
    /// The terminator on one thread: ns per request packet for 16…10,000 keep-alive
    /// connections with shards 1024 and 1, connections/s, memory per connection. The last
    /// line reads `terminator per-packet cost 10000/16 connections: <r> (shards 1024), <r>
    /// (shards 1)`.
    Terminator {
        /// Request packets per point (at most).
        #[arg(long, default_value_t = 200_000)]
        packets: usize,
        /// Time cap per point, seconds (shards 1 with many connections stops here).
        #[arg(long, default_value_t = 2.0)]
        max_seconds: f64,
        /// Connections opened and closed one after the other for connections/s.
        #[arg(long, default_value_t = 20_000)]
        sequential: u32,
        /// Connection counts of the curve.
        #[arg(long, value_delimiter = ',', default_value = "16,100,1000,10000")]
        connections: Vec<u32>,
        /// Shard counts of the curve.
        #[arg(long, value_delimiter = ',', default_value = "1024,1")]
        shards: Vec<u32>,
        /// Print the report as JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// HTTP load over many client source addresses, each to the destination the SSA rule
    /// gives it (weir's cluster tests; see `weir_bench::load`).
    Load(LoadArgs),
    /// Run a capture through parse + classify + enqueue + dequeue on one core.
    Run {
        /// The capture.
        file: PathBuf,
        /// Flow table slots.
        #[arg(long, default_value_t = 1 << 20)]
        flow_table: usize,
    },
}

#[derive(Debug, clap::Args)]
struct LoadArgs {
    /// The service's APL text.
    #[arg(long, default_value = "2:2001:db8:5::/64")]
    apl: String,
    /// The SSA rule the destinations follow.
    #[arg(long, value_enum, default_value = "src-mix")]
    rule: LoadRule,
    /// src-mix: source prefix length.
    #[arg(long, default_value_t = 64)]
    src_prefix_len: u8,
    /// Client sources: `::1` of successive /64s of this prefix (length ≤ 64).
    #[arg(long, default_value = "2001:db8:c000::/48")]
    src_net: String,
    /// How many source addresses (M).
    #[arg(long, default_value_t = 256)]
    src_count: usize,
    /// Connection slots (N); slot i uses source i mod M.
    #[arg(long, default_value_t = 256)]
    connections: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// keepalive: requests back to back per connection; close: one per connection.
    #[arg(long, value_enum, default_value = "keepalive")]
    mode: weir_bench::load::Mode,
    /// TCP port.
    #[arg(long, default_value_t = 80)]
    port: u16,
    /// Request path.
    #[arg(long, default_value = "/")]
    path: String,
    /// Connect timeout, milliseconds.
    #[arg(long, default_value_t = 1000)]
    connect_timeout_ms: u64,
    /// Response timeout, milliseconds.
    #[arg(long, default_value_t = 2000)]
    response_timeout_ms: u64,
    /// Pause between two requests of a slot, milliseconds.
    #[arg(long, default_value_t = 0)]
    think_ms: u64,
    /// Only the sources whose destination lies in these slices, `FIRST..LAST`.
    #[arg(long, value_name = "FIRST..LAST", value_parser = parse_slices)]
    slices: Option<(u32, u32)>,
    /// Slice bits of the service prefix (for --slices).
    #[arg(long, default_value_t = 14)]
    slice_bits: u8,
    /// Print the report (with every slot) as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_slices(s: &str) -> Result<(u32, u32), String> {
    let (a, b) = s.split_once("..").unwrap_or((s, s));
    let n = |t: &str| {
        t.trim()
            .parse::<u32>()
            .map_err(|_| format!("{t:?} is not a slice number"))
    };
    let (a, b) = (n(a)?, n(b)?);
    if a > b {
        return Err(format!("{a}..{b}: first after last"));
    }
    Ok((a, b))
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LoadRule {
    /// DESIGN.md's default rule.
    SrcMix,
    /// Any address of the prefix.
    Any,
}

fn load(a: LoadArgs) -> Result<()> {
    use weir_bench::load;
    if !(a.duration.is_finite() && a.duration > 0.0 && a.duration <= 3600.0) {
        anyhow::bail!("--duration must be from 0 to 3600 seconds");
    }
    let rule = match a.rule {
        LoadRule::SrcMix => weir_ssa::Rule::SrcMix {
            src_prefix_len: a.src_prefix_len,
        },
        LoadRule::Any => weir_ssa::Rule::Any,
    };
    rule.validate()
        .map_err(|e| anyhow::anyhow!("--rule: {e}"))?;
    let plan = load::Plan {
        apl: a.apl,
        rule,
        sources: load::sources_in(&a.src_net, a.src_count)?,
        connections: a.connections,
        port: a.port,
        path: a.path,
        duration: std::time::Duration::from_secs_f64(a.duration),
        mode: a.mode,
        connect_timeout: std::time::Duration::from_millis(a.connect_timeout_ms.max(1)),
        response_timeout: std::time::Duration::from_millis(a.response_timeout_ms.max(1)),
        think: std::time::Duration::from_millis(a.think_ms),
        slices: a.slices,
        slice_bits: a.slice_bits,
    };
    let report = load::run(&plan)?;
    if a.json {
        out!("{}", serde_json::to_string(&report)?);
    } else {
        weir_dp::output::emit(&report.table())?;
    }
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Load(a) => load(a)?,
        Cmd::Gen {
            workload,
            packets,
            out,
            flows,
            warm,
        } => {
            let frames = match workload {
                Workload::Mix => weir_fixtures::bench_mix(packets),
                Workload::Flood => weir_fixtures::bench_flood(packets),
                Workload::Established => {
                    let (handshakes, data) = weir_fixtures::bench_established(flows, packets);
                    let warm = warm.context("--workload established needs --warm FILE")?;
                    weir_fixtures::write_pcap(&warm, &handshakes)
                        .with_context(|| format!("writing {}", warm.display()))?;
                    data
                }
            };
            weir_fixtures::write_pcap(&out, &frames)
                .with_context(|| format!("writing {}", out.display()))?;
        }
        Cmd::Dpdk {
            vdev,
            seconds,
            eal,
            mbufs,
            warm,
            flow_table,
            no_classify,
        } => dpdk(
            &vdev,
            seconds,
            &eal,
            mbufs,
            &Warmup {
                flow_table,
                capture: warm,
            },
            no_classify,
        )?,
        Cmd::Terminator {
            packets,
            max_seconds,
            sequential,
            connections,
            shards,
            json,
        } => {
            let plan = weir_bench::terminator::Plan {
                connections,
                shards,
                packets,
                max_secs: max_seconds,
                sequential,
                ..Default::default()
            };
            terminator(&plan, json)?;
        }
        Cmd::Run { file, flow_table } => {
            let mut p = Pipeline::new(flow_table);
            let mut cap = Capture::open(&file)?;
            let start = Instant::now();
            let n = cap.for_each(|r| {
                p.push(r.data, r.ts_ns);
            })?;
            p.drain_all();
            let secs = start.elapsed().as_secs_f64();
            let c = p.core.clf.counters();
            out!(
                "packets {n} outbound {} known_good {} assumed_good {} suspect {} reject {} drained {} ring_full {:?}",
                c.outbound(),
                c.class(Class::KnownGood),
                c.class(Class::AssumedGood),
                c.class(Class::Suspect),
                c.class(Class::Reject),
                p.drained,
                p.ring_full()
            );
            out!(
                "elapsed {secs:.4} s, {:.2} Mpps, {:.1} ns/packet",
                n as f64 / secs / 1e6,
                secs * 1e9 / n.max(1) as f64
            );
        }
    }
    Ok(())
}

fn terminator(plan: &weir_bench::terminator::Plan, json: bool) -> Result<()> {
    let r = weir_bench::terminator::run(plan, &mut |line| eprintln!("weir-bench: {line}"))?;
    if json {
        out!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    out!(
        "terminator, one thread, static adapter: request packet {} bytes (IPv6+TCP+GET), \
         response {} bytes; requests round-robin over keep-alive connections, poll every {} packets",
        r.request_packet_bytes,
        r.response_bytes,
        weir_bench::BURST
    );
    out!(
        "{:>6} {:>11} {:>8} {:>9} {:>7} {:>10} {:>11} {:>7}",
        "shards",
        "connections",
        "setup s",
        "packets",
        "secs",
        "ns/packet",
        "requests/s",
        "out/req"
    );
    for p in &r.curve {
        out!(
            "{:>6} {:>11} {:>8.2} {:>9} {:>7.3} {:>10.0} {:>11.0} {:>7.2}{}",
            p.shards,
            p.connections,
            p.setup_secs,
            p.packets,
            p.secs,
            p.ns_per_packet,
            p.requests_per_sec,
            p.out_per_request,
            if p.capped { "  (time cap)" } else { "" }
        );
    }
    let c = &r.connection_rate;
    out!(
        "connections/s (shards {}, {} sequential: SYN, ACK, GET Connection: close, FIN; terminator time only): \
         {:.0} ({:.2} µs each; {:.1} packets in, {:.1} out per connection)",
        c.shards,
        c.connections,
        c.per_sec,
        c.secs * 1e6 / f64::from(c.connections),
        c.packets_in_per_connection,
        c.packets_out_per_connection
    );
    let m = &r.memory;
    out!(
        "memory per connection ({} connections, shards 1024): bound {} bytes; resident {:.0} bytes \
         established, {:.0} bytes after one request each",
        m.connections, m.bound_bytes, m.established_bytes, m.after_request_bytes
    );
    let ratio = |shards| {
        r.growth(shards, 16, 10_000)
            .map_or("n/a".to_string(), |g| format!("{g:.2}"))
    };
    out!(
        "terminator per-packet cost 10000/16 connections: {} (shards 1024), {} (shards 1)",
        ratio(1024),
        ratio(1)
    );
    Ok(())
}

#[cfg(feature = "dpdk")]
fn dpdk(
    vdev: &str,
    seconds: f64,
    eal: &str,
    mbufs: u32,
    warm: &Warmup,
    no_classify: bool,
) -> Result<()> {
    use weir_bench::dpdk::Work;
    let mut eal: Vec<String> = eal.split_whitespace().map(str::to_string).collect();
    if !eal.iter().any(|a| a.starts_with("--file-prefix")) {
        // A per-process prefix, and nothing left behind: before, every run on hugepages
        // left its pages allocated (512 of them, 1 GiB), and every `--no-huge` run ~13 MB
        // of files in /var/run/dpdk.
        eal.push(format!("--file-prefix=weir-bench-{}", std::process::id()));
        eal.push(weir_dp::dpdk::private_eal_arg(&eal).into());
    }
    let work = if no_classify {
        Work::QueueOnly
    } else {
        Work::Classify
    };
    let r = weir_bench::dpdk::run(&eal, vdev, seconds, mbufs, warm, work)?;
    out!(
        "weir-dpdk: {:.3} Mpps ({} packets in {:.3} s; drained {}, rejected {}, ring-full {}, known-good {}; {} flows established before)",
        r.packets as f64 / r.secs / 1e6,
        r.packets,
        r.secs,
        r.drained,
        r.rejected,
        r.ring_full,
        r.known_good,
        r.established
    );
    Ok(())
}

#[cfg(not(feature = "dpdk"))]
fn dpdk(_: &str, _: f64, _: &str, _: u32, _: &Warmup, _: bool) -> Result<()> {
    anyhow::bail!(
        "weir-bench was built without DPDK: cargo build --release -p weir-bench --features dpdk"
    )
}
