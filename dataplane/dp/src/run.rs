//! `weir-dp run`: the dataplane as a long-running process on its `[port]`, directed at run
//! time through [`DataplaneState`] (see `state`; the control thread is `control`).
//!
//! Every port runs the one rx loop ([`RxCore::run`]): a capture replayed as a live
//! source ([`CaptureLoop`], on the dataplane's own clock, looped and paced), a TAP device
//! ([`TapPort`]: weir answers NDP/ARP and the terminators' frames go back to the kernel),
//! and DPDK ports (`dpdk_port`, one rx core per rx queue). Software ports have one rx
//! core (this thread); workers are threads: terminators when `[terminator] enabled`,
//! otherwise counting workers.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use weir_model::config::{Config, PortConfig};

use crate::classify::Vantage;
use crate::host::HostResponder;
use crate::pipeline::{self, Backing, Overflow, ReplyEnds, WorkerQueues, WorkerStats};
use crate::pool::Pool;
use crate::port::pcap::CaptureLoop;
use crate::port::tap::{Tap, TapPort};
use crate::port::Port;
use crate::rx::{Clock, RunLimits, RxCore, RxReport, RxSetup};
use crate::state::DataplaneState;
use crate::terminators::{TerminatorWorker, Wake};

/// weir's link address when `[port] mac` is not given (locally administered).
pub const DEFAULT_MAC: [u8; 6] = [0x02, 0x77, 0x65, 0x69, 0x72, 0x01];

/// Options of a run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Stop after this long (tests, demos); `None` = until stopped.
    pub duration: Option<Duration>,
}

/// Run the dataplane until `state.stop` is set (or the port ends, or `opts.duration`).
pub fn run(cfg: &Config, state: &Arc<DataplaneState>, opts: &RunOptions) -> Result<RxReport> {
    if let Err(e) = state.tee.start_from_config() {
        tracing::error!("[tee] enabled, but the tee cannot start: {e}");
    }
    let result = run_port(cfg, state, opts);
    // Write out what the tee queued and close its file.
    state.tee.finish_run();
    result
}

fn run_port(cfg: &Config, state: &Arc<DataplaneState>, opts: &RunOptions) -> Result<RxReport> {
    match cfg.port.clone() {
        Some(PortConfig::Pcap { path, r#loop, pps }) => {
            let port = CaptureLoop::open(&path, r#loop, pps)?;
            // A capture holds the service's own packets too: they feed the tracker
            // (`outbound`), and nothing answers its NDP.
            run_software(cfg, state, opts, port, DEFAULT_MAC, None)
        }
        Some(PortConfig::Tap { name, mac }) => {
            let mac = match mac {
                Some(m) => weir_model::config::parse_mac(&m)
                    .map_err(|e| anyhow::anyhow!("[port] mac: {e}"))?,
                None => DEFAULT_MAC,
            };
            let tap = Tap::open(&name).with_context(|| format!("[port] tap {name}"))?;
            tap.set_up().with_context(|| format!("[port] tap {name}"))?;
            let responder = HostResponder::new(mac);
            tracing::info!(tap = tap.name(), mac = ?mac, link_local = %std::net::Ipv6Addr::from(responder.link_local()), "tap port ready");
            run_software(cfg, state, opts, TapPort::new(tap), mac, Some(responder))
        }
        #[cfg(feature = "dpdk")]
        Some(PortConfig::Dpdk(d)) => crate::port::dpdk::run(cfg, &d, state, opts),
        #[cfg(not(feature = "dpdk"))]
        Some(PortConfig::Dpdk(_)) => bail!(
            "[port] kind = \"dpdk\" needs a weir-dp built with DPDK: cargo build --release --features dpdk (DPDK 22.11: scripts/setup-dpdk.sh)"
        ),
        None => bail!("`weir-dp run` needs a [port] section"),
    }
}

/// A software port (capture or TAP) with one rx core on this thread. A `responder` makes
/// it a network port: service-sourced frames are spoofed (martian), NDP/ARP is answered.
fn run_software<P: Port<Backing = Pool>>(
    cfg: &Config,
    state: &Arc<DataplaneState>,
    opts: &RunOptions,
    mut port: P,
    mac: [u8; 6],
    responder: Option<HostResponder>,
) -> Result<RxReport> {
    let clock = Clock::new();
    let (mut rxs, mut wks) = pipeline::build(&cfg.rings, 1, state.worker_count, Overflow::Drop);
    let rx = rxs.pop().context("no rx queues")?;
    pipeline::enable_latency(&mut [], &mut wks, clock.base);
    let wake = Arc::new(Wake::new().context("eventfd")?);
    let (handles, mut replies) = start_workers(
        cfg,
        state,
        wks,
        mac,
        Duration::from_micros(50),
        Some(Arc::clone(&wake)),
    )?;
    let mut setup = RxSetup::live(0);
    setup.vantage = if responder.is_some() {
        Vantage::Port
    } else {
        Vantage::Replay
    };
    setup.responder = responder;
    setup.replies = replies.pop().unwrap_or_default();
    setup.stamp_base = Some(clock.base);
    let mut core = RxCore::new(cfg, state, rx, setup);
    let limits = RunLimits {
        clock,
        duration: opts.duration,
    };
    let result = core.run(&mut port, state, &limits, Some(&wake));
    core.rx.finish();
    pipeline::join_workers(handles)?;
    // Replies the terminators queued while stopping.
    core.send_remaining(&mut port);
    result?;
    Ok(core.finish(state, &port))
}

/// One terminator worker per worker, with a way back to each of `rx_cores` rx cores.
/// Returns the workers and, per rx core, the rx ends of the ways back (with their worker).
pub fn terminator_workers(
    cfg: &Config,
    state: &Arc<DataplaneState>,
    rx_cores: usize,
    our_mac: [u8; 6],
    idle_sleep: Duration,
    wake: Option<Arc<Wake>>,
) -> Result<(Vec<TerminatorWorker>, Vec<ReplyEnds>)> {
    let (_, policy) = state.policy_now().context("policy lock poisoned")?;
    let prefixes: Vec<(u128, u8)> = policy
        .prefixes
        .prefixes()
        .iter()
        .map(|p| (p.addr, p.len))
        .collect();
    let mut workers = Vec::new();
    let mut receivers: Vec<ReplyEnds> = (0..rx_cores).map(|_| Vec::new()).collect();
    // One adapter per worker; `nats` shares one NATS client thread among them.
    let mut adapters = weir_terminator::adapter::build_all(
        &cfg.terminator.adapter,
        usize::from(state.worker_count),
    )
    .context("[terminator.adapter]")?
    .into_iter();
    for w in 0..state.worker_count {
        let adapter = adapters
            .next()
            .context("[terminator.adapter]: one adapter per worker")?;
        let term = weir_terminator::tcp::Terminator::new(&cfg.terminator, &prefixes, adapter);
        let mut senders = Vec::with_capacity(rx_cores);
        for r in &mut receivers {
            let (tx, rx) = pipeline::reply_path(4096);
            senders.push(tx);
            r.push((w, rx));
        }
        workers.push(
            TerminatorWorker::new(term, senders, our_mac, idle_sleep, wake.clone())
                .following(Arc::clone(state)),
        );
    }
    Ok((workers, receivers))
}

/// Start the workers for `wks` on threads: terminators when `[terminator] enabled`, else
/// counting workers. Returns their threads and the rx core's ends of their ways back.
fn start_workers<B: Backing>(
    cfg: &Config,
    state: &Arc<DataplaneState>,
    wks: Vec<WorkerQueues<B>>,
    our_mac: [u8; 6],
    idle_sleep: Duration,
    wake: Option<Arc<Wake>>,
) -> Result<(Vec<std::thread::JoinHandle<WorkerStats>>, Vec<ReplyEnds>)> {
    if !cfg.terminator.enabled {
        return Ok((
            pipeline::spawn_workers(wks, Some(&state.workers))?,
            Vec::new(),
        ));
    }
    let (terms, receivers) = terminator_workers(cfg, state, 1, our_mac, idle_sleep, wake)?;
    let cpus = allowed_cpus();
    let mut handles = Vec::new();
    for (i, (mut w, term)) in wks.into_iter().zip(terms).enumerate() {
        if let Some(slot) = state.workers.get(i) {
            w.publish_to(Arc::clone(slot));
        }
        // Worker i on the CPU after the rx core's (the rx core keeps the first one).
        let cpu = (cfg.terminator.pin && cpus.len() > 1).then(|| cpus[(i + 1) % cpus.len()]);
        let h = std::thread::Builder::new()
            .name(format!("weir-term-{i}"))
            .spawn(move || {
                if let Some(cpu) = cpu {
                    pin_to(cpu);
                }
                term.run(w)
            })
            .context("cannot start terminator threads")?;
        handles.push(h);
    }
    Ok((handles, receivers))
}

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .map(|set| {
            (0..nix::sched::CpuSet::count())
                .filter(|&c| set.is_set(c).unwrap_or(false))
                .collect()
        })
        .unwrap_or_default()
}

/// Pin the calling thread to `cpu` (best effort: a failure is logged).
fn pin_to(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    if set.set(cpu).is_ok() {
        if let Err(e) = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set) {
            tracing::warn!(cpu, "cannot pin a terminator thread: {e}");
        }
    }
}
