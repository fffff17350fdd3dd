//! DPDK as weir's port: `weir-dp run` with `[port] kind = "dpdk"`, and
//! `weir-dp replay --dpdk`, which replays captures through DPDK's `net_pcap`.
//!
//! ```text
//!  NIC / vdev ─ RSS by address ─► rx queue q ──► rx lcore q: classify mbuf in place ─┐
//!                                                                                     │ push the mbuf
//!  worker lcore w ◄── ring[q][w][class] ◄─────────────────────────────────────────────┘ (zero copy)
//!       └─ drain by priority and weight, then drop the mbuf (freed to the mempool)
//! ```
//! The received mbuf itself travels through the classifier (as a borrowed slice) and the
//! rings (as an owned [`Mbuf`] handle, by pointer): [`Mbufs`] is the rings'
//! [`Backing`], with no return rings, because dropping an `Mbuf` frees it. Rejected,
//! outbound and host frames are freed on the rx lcore right after their verdict.
//!
//! Lcores: EAL's main lcore runs the supervisor (and the control thread, started before),
//! the first `rx_queues` worker lcores poll one rx queue each on every device, the next
//! `[dataplane] workers` worker lcores drain the rings. Shutdown is ordered so nothing is
//! lost or leaked: rx lcores stop polling and hand their state back; then the workers are
//! told to finish and drain every ring to empty; then the ports are stopped and closed
//! (their descriptors' mbufs go back); then the mempool must be full again
//! ([`RxReport::mempool`] says whether it was).
//!
//! The replay keeps the software replay's rules (capture time as the clock, rx waits for
//! ring space), so its report is the software replay's, count for count; `net_pcap` gives
//! each frame its capture timestamp through the rx-timestamp mbuf field.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::capture::Capture;
use crate::dpdk::{self, Burst, Mbuf, Mempool, Port, PortSetup, TxBurst, BURST};
use crate::l2::HostResponder;
use crate::live::{Clock, PortDrops, RunOptions, RxCore, RxReport, Shared, TxCounts};
use crate::pipeline::{self, Backing, Overflow, TxReceiver};
use crate::replay::{ReplayOptions, Report, Session};
use weir_model::config::{Config, DpdkPortConfig};
use weir_model::verdict::{Class, Disposition};

/// Bytes of packet data per mbuf: a full frame with VLAN tags (the mbuf adds DPDK's
/// 128-byte headroom).
pub const MBUF_DATA: u16 = 2048;
const HEADROOM: u16 = 128;

/// Rings of received mbufs: the handle is the mbuf; dropping it frees it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mbufs;

impl Backing for Mbufs {
    type Buf = Mbuf;
    const RECYCLES: bool = false;
    #[inline]
    fn wire_len(&self, buf: &Mbuf) -> u32 {
        buf.pkt_len()
    }
    #[inline]
    fn bytes<'a>(&'a self, buf: &'a Mbuf) -> &'a [u8] {
        buf.data()
    }
    #[inline]
    fn stamp(&self, buf: &Mbuf) -> u64 {
        buf.stamp()
    }
    #[inline]
    fn set_stamp(&self, buf: &mut Mbuf, ns: u64) {
        buf.set_stamp(ns);
    }
}

/// Mempool names must be unique in a process.
static POOLS: AtomicU32 = AtomicU32::new(0);

fn pool_name(what: &str) -> String {
    format!("weir_{what}{}", POOLS.fetch_add(1, Ordering::Relaxed))
}

/// Start-up check: hugepages, unless the EAL arguments say `--no-huge`.
pub fn check_hugepages(eal: &[String]) -> Result<()> {
    if eal.iter().any(|a| a == "--no-huge") {
        return Ok(());
    }
    let (total, free) = hugepages().unwrap_or((0, 0));
    if total == 0 || free == 0 {
        bail!(
            "no free hugepages (HugePages_Total {total}, HugePages_Free {free} in /proc/meminfo): reserve some with `sudo scripts/setup-dpdk.sh --hugepages 1024`, or add \"--no-huge\" and \"-m\" to [port] eal (tests only)"
        );
    }
    Ok(())
}

/// (HugePages_Total, HugePages_Free) of the default page size.
fn hugepages() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    Some((field("HugePages_Total:")?, field("HugePages_Free:")?))
}

/// Start-up check: every CPU named by `-l` / `--lcores` exists on this machine (EAL's own
/// message for this is easy to miss among its log lines).
pub fn check_lcores(eal: &[String], cpus: usize) -> Result<()> {
    let mut it = eal.iter();
    while let Some(a) = it.next() {
        let list = if a == "-l" || a == "--lcores" {
            it.next().map(String::as_str)
        } else {
            a.strip_prefix("-l")
                .filter(|s| !s.is_empty())
                .or_else(|| a.strip_prefix("--lcores="))
        };
        let Some(list) = list else { continue };
        for cpu in cpus_named(list) {
            if cpu >= cpus {
                bail!(
                    "[port] eal lcore list `{list}` names CPU {cpu}, but this machine has CPUs 0..{}",
                    cpus.saturating_sub(1)
                );
            }
        }
    }
    Ok(())
}

/// The CPUs a lcore list names: `0-3,5`, and with `--lcores` also `1@2` and `(2,3)@(4,5)`
/// (the CPU side after `@`).
fn cpus_named(list: &str) -> Vec<usize> {
    let mut cpus = Vec::new();
    let mut range = |part: &str| {
        let part = part.trim_matches(|c| c == '(' || c == ')');
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    cpus.extend(a..=b.min(a + 4096));
                }
            }
            None => cpus.extend(part.parse::<usize>().ok()),
        }
    };
    // Split at commas outside parentheses.
    let mut depth = 0;
    let mut start = 0;
    let mut items = Vec::new();
    for (i, c) in list.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&list[start..]);
    for item in items {
        let cpu_side = item.rsplit_once('@').map_or(item, |(_, c)| c);
        for part in cpu_side.trim_matches(|c| c == '(' || c == ')').split(',') {
            range(part);
        }
    }
    cpus
}

fn online_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// A device by its DPDK arguments: one the EAL already knows (PCI address on `-a`,
/// `--vdev`), else hot-plugged.
fn open_device(devargs: &str) -> Result<Port> {
    let name = devargs.split(',').next().unwrap_or(devargs);
    match Port::by_name(name) {
        Ok(p) => Ok(p),
        Err(_) => Port::attach(devargs).with_context(|| format!("[port] device `{devargs}`")),
    }
}

/// `weir-dp run` on DPDK ports.
pub fn run(
    cfg: &Config,
    d: &DpdkPortConfig,
    shared: &Arc<Shared>,
    opts: &RunOptions,
) -> Result<RxReport> {
    check_hugepages(&d.eal)?;
    check_lcores(&d.eal, online_cpus())?;
    dpdk::eal_init(&d.eal).context("EAL initialisation")?;
    let rx_queues = d.rx_queues.max(1);
    let workers = shared.worker_count;
    let lcores = dpdk::worker_lcores();
    let need = usize::from(rx_queues) + usize::from(workers);
    if lcores.len() < need {
        bail!(
            "[port] eal gives {} worker lcore(s) ({lcores:?}) but rx_queues {rx_queues} + workers {workers} need {need} (plus the main lcore): widen `-l`",
            lcores.len()
        );
    }
    let pool = Mempool::new(
        &pool_name("rx"),
        d.mbufs,
        d.mbuf_cache,
        MBUF_DATA + HEADROOM,
    )
    .context("[port] mbuf pool (raise -m or hugepages, or lower mbufs)")?;
    let mut ports = Vec::with_capacity(d.devices.len());
    for dev in &d.devices {
        let mut port = open_device(dev)?;
        let info = port.info();
        let ready = port
            .configure(
                &PortSetup {
                    rx_queues,
                    tx_queues: rx_queues,
                    rx_desc: d.rx_desc,
                    tx_desc: d.tx_desc,
                    rss: rx_queues > 1,
                    rx_timestamp: false,
                },
                &pool,
            )
            .with_context(|| format!("[port] device `{dev}`"))?;
        if let Some(note) = &ready.rss_note {
            tracing::warn!(device = %dev, "{note}");
        }
        port.start()
            .with_context(|| format!("[port] device `{dev}`"))?;
        tracing::info!(
            device = %dev, port = port.id(), driver = %info.driver, rx_queues,
            rss_hf = format_args!("{:#x}", ready.rss_hf), "port started"
        );
        ports.push(port);
    }
    let ports = Arc::new(ports);
    let (rxs, mut wks) = pipeline::build_with(
        &cfg.rings,
        usize::from(rx_queues),
        workers,
        Overflow::Drop,
        |_| (Arc::new(Mbufs), Vec::new()),
    );
    let clock = Clock::new();
    pipeline::enable_latency(&mut [], &mut wks, clock.base);
    let (rx_lcores, worker_lcores) = lcores.split_at(usize::from(rx_queues));

    // Terminators (when enabled): one per worker, a way back per (worker, rx core); the
    // rx cores answer NDP/ARP for weir's addresses and send what the terminators queue.
    let our_mac = ports
        .first()
        .and_then(Port::mac)
        .unwrap_or(crate::live::DEFAULT_MAC);
    let (mut serves, mut ways_back) = if cfg.terminator.enabled {
        let (s, b) = crate::live::build_serves(
            cfg,
            shared,
            usize::from(rx_queues),
            our_mac,
            Duration::ZERO,
            None,
        )?;
        (s.into_iter().map(Some).collect::<Vec<_>>(), b)
    } else {
        (Vec::new(), Vec::new())
    };
    // Rx lcores first: they only poll once started, and hand their state back on stop.
    let (back_tx, back_rx) = mpsc::channel();
    let mut launched_rx = Vec::new();
    let mut failure = None;
    for (q, (rxq, &lcore)) in rxs.into_iter().zip(rx_lcores).enumerate() {
        // A network port: service-sourced frames arriving here are spoofed (martian); the
        // tracker learns the service's side from the terminators' tx path.
        let core = RxCore::new(
            q,
            cfg,
            shared,
            rxq,
            clock.base,
            crate::classify::Vantage::Port,
        )?;
        let (ports, shared, back) = (Arc::clone(&ports), Arc::clone(shared), back_tx.clone());
        let duration = opts.duration;
        let queue = u16::try_from(q).unwrap_or(u16::MAX);
        let out = TxSide {
            responder: HostResponder::new(our_mac),
            ways_back: ways_back.get_mut(q).map(std::mem::take).unwrap_or_default(),
            pool: pool.clone(),
            burst: TxBurst::new(),
            counts: TxCounts::default(),
        };
        match dpdk::launch(lcore, move || {
            let core = rx_loop(core, &ports, queue, &shared, clock, duration, out);
            let _ = back.send(core);
            0
        }) {
            Ok(()) => launched_rx.push(lcore),
            Err(e) => {
                failure =
                    Some(anyhow::Error::new(e).context(format!("launching rx lcore {lcore}")));
                break;
            }
        }
    }
    drop(back_tx);
    let mut launched_workers = Vec::new();
    if failure.is_none() {
        for (mut w, &lcore) in wks.into_iter().zip(worker_lcores) {
            if let Some(slot) = shared.workers.get(usize::from(w.index())) {
                w.publish_to(Arc::clone(slot));
            }
            let serve = serves
                .get_mut(usize::from(w.index()))
                .and_then(Option::take);
            match dpdk::launch(lcore, move || {
                match serve {
                    Some(serve) => serve.run(w),
                    None => w.run(),
                };
                0
            }) {
                Ok(()) => launched_workers.push(lcore),
                Err(e) => {
                    failure = Some(
                        anyhow::Error::new(e).context(format!("launching worker lcore {lcore}")),
                    );
                    break;
                }
            }
        }
    }
    if failure.is_some() {
        shared.stop.store(true, Ordering::Relaxed);
    }
    // The rx lcores run until `shared.stop` (signal, control, duration).
    for &l in &launched_rx {
        dpdk::wait(l);
    }
    let cores: Vec<RxCore<Mbufs>> = back_rx.try_iter().collect();
    for core in &cores {
        core.rx.finish();
    }
    for &l in &launched_workers {
        dpdk::wait(l);
    }
    let now = clock.now_ns();
    let mut merged: Option<RxReport> = None;
    for core in cores {
        let r = core.finish(shared, now);
        match &mut merged {
            Some(m) => m.merge(&r),
            None => merged = Some(r),
        }
    }
    let mut report = merged.unwrap_or_default();
    let port_stats: Vec<_> = ports.iter().map(Port::stats).collect();
    drop(ports);
    let (capacity, available) = (pool.capacity(), pool.available());
    report.mempool = Some((capacity, available));
    for (dev, s) in d.devices.iter().zip(port_stats) {
        tracing::info!(device = %dev, ipackets = s.ipackets, imissed = s.imissed, ierrors = s.ierrors, rx_nombuf = s.rx_nombuf, "port stopped");
    }
    if available == capacity {
        tracing::info!(mbufs = capacity, "every mbuf is back in the pool");
    } else {
        tracing::warn!(
            capacity,
            available,
            "mbufs missing from the pool after shutdown"
        );
    }
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(report)
}

/// One rx lcore: poll queue `queue` of every port, classify each mbuf where it lies, push
/// it to its ring or free it.
fn rx_loop(
    mut core: RxCore<Mbufs>,
    ports: &[Port],
    queue: u16,
    shared: &Shared,
    clock: Clock,
    duration: Option<Duration>,
    mut out: TxSide,
) -> RxCore<Mbufs> {
    let mut burst = Burst::new();
    let mut last_port_read = Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
        if queue == 0 && last_port_read.elapsed() >= Duration::from_secs(1) {
            core.set_port_drops(port_drops(ports));
            last_port_read = Instant::now();
        }
        if duration.is_some_and(|d| clock.elapsed() >= d) {
            shared.stop.store(true, Ordering::Relaxed);
            break;
        }
        core.sync(shared);
        let now = clock.now_ns();
        for port in ports {
            if port.rx_burst(queue, &mut burst) == 0 {
                continue;
            }
            for m in burst.by_ref() {
                classify_and_queue(&mut core, m, now, &mut out, ports, queue);
            }
        }
        // What the terminators queued: seen by the flow tracker, then sent.
        let TxSide {
            ways_back,
            pool,
            burst: txb,
            counts,
            ..
        } = &mut out;
        for (w, path) in ways_back.iter_mut() {
            let clf = &mut core.clf;
            path.drain(BURST, |f| {
                clf.observe_tx(f, Some(*w), now);
                send_frame(f, pool, txb, counts, ports, queue);
            });
        }
        flush(txb, counts, ports, queue);
        core.set_tx_counts(out.counts);
        core.housekeeping(shared, now);
    }
    if queue == 0 {
        core.set_port_drops(port_drops(ports));
    }
    core
}

/// The ports' own drop counters, summed (a control-path call, once a second).
fn port_drops(ports: &[Port]) -> PortDrops {
    let mut d = PortDrops::default();
    for s in ports.iter().map(Port::stats) {
        d.imissed += s.imissed;
        d.ierrors += s.ierrors;
        d.rx_nombuf += s.rx_nombuf;
    }
    d
}

/// An rx core's sending side: NDP/ARP answers and the terminators' ways back, sent on
/// its own tx queue of the first device.
struct TxSide {
    responder: HostResponder,
    ways_back: Vec<(u16, TxReceiver)>,
    pool: Mempool,
    burst: TxBurst,
    counts: TxCounts,
}

/// Copy `frame` into an mbuf and add it to the tx burst (sent when full).
fn send_frame(
    frame: &[u8],
    pool: &Mempool,
    txb: &mut TxBurst,
    counts: &mut TxCounts,
    ports: &[Port],
    queue: u16,
) {
    let Some(mut m) = Mbuf::alloc(pool) else {
        counts.send_failed += 1;
        return;
    };
    if !m.append(frame) {
        counts.send_failed += 1;
        return;
    }
    if let Err(m) = txb.push(m) {
        flush(txb, counts, ports, queue);
        if txb.push(m).is_err() {
            counts.send_failed += 1;
        }
    }
}

/// Send the tx burst on the first device (retrying partial sends; the rest is counted).
fn flush(txb: &mut TxBurst, counts: &mut TxCounts, ports: &[Port], queue: u16) {
    if txb.is_empty() {
        return;
    }
    let Some(port) = ports.first() else {
        return;
    };
    let r = port.tx_flush(queue, txb, 4);
    counts.sent += u64::from(r.sent);
    counts.send_failed += u64::from(r.dropped);
}

/// Classify `m` and queue it, answer it (NDP/ARP), or let it go (freed) with its verdict
/// counted.
#[inline]
fn classify_and_queue(
    core: &mut RxCore<Mbufs>,
    m: Mbuf,
    now_ns: u64,
    out: &mut TxSide,
    ports: &[Port],
    queue: u16,
) {
    if m.segments() > 1 {
        // Ports run without scatter, so a chained mbuf is a frame larger than a buffer:
        // not classified on a cut copy; counted.
        core.rx.oversize += 1;
        return;
    }
    match core.clf.classify(m.data(), now_ns) {
        Disposition::Classified { verdict, worker } if verdict.class() != Class::Reject => {
            core.rx.push(worker, verdict.class(), m);
        }
        Disposition::Host => {
            let mut reply = [0u8; 128];
            match out
                .responder
                .answer(m.data(), &core.clf.policy().prefixes, &mut reply)
            {
                Ok(len) => {
                    out.counts.host_answered += 1;
                    let TxSide {
                        pool,
                        burst,
                        counts,
                        ..
                    } = out;
                    send_frame(&reply[..len], pool, burst, counts, ports, queue);
                }
                Err(_) => out.counts.host_ignored += 1,
            }
        }
        _ => {}
    }
}

/// EAL arguments for `replay --dpdk` when none are given: hugepages when some are free,
/// else `--no-huge` with memory for `mbufs`; no PCI scan; one lcore (workers are threads).
pub fn default_replay_eal(mbufs: u32) -> Vec<String> {
    let mut eal: Vec<String> = Vec::new();
    if hugepages().is_none_or(|(_, free)| free == 0) {
        let mb = (u64::from(mbufs) * 4 / 1024 + 128).to_string();
        eal.extend(["--no-huge".into(), "-m".into(), mb]);
    }
    eal.extend([
        "--no-pci".to_string(),
        "--no-telemetry".into(),
        "-l".into(),
        "0".into(),
        "--file-prefix".into(),
        format!("weir-replay-{}", std::process::id()),
        "--log-level".into(),
        "lib.eal:error".into(),
    ]);
    eal
}

/// Mbufs a replay needs: every ring slot, plus bursts in flight.
pub fn replay_mbufs(cfg: &Config) -> u32 {
    let rings: u64 = Class::QUEUED
        .iter()
        .filter_map(|&c| cfg.rings.of(c))
        .map(|r| u64::from(r.size).next_power_of_two())
        .sum();
    let n = rings * u64::from(cfg.dataplane.workers) + 4096;
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// `weir-dp replay --dpdk`: each file through a `net_pcap` vdev, with the software
/// replay's rules, so the report is the same count for count. `eal`: EAL arguments (the
/// process's EAL is initialised once; see [`dpdk::eal_init`]).
pub fn replay(
    cfg: &Config,
    files: &[PathBuf],
    opts: &ReplayOptions,
    eal: &[String],
) -> Result<Report> {
    // Every file is read first: a missing or corrupt one fails before any work, and the
    // frame count tells the end of the file apart from a momentary lack of mbufs.
    let mut plan = Vec::with_capacity(files.len());
    for path in files {
        let text = path.display().to_string();
        if text.contains(',') {
            bail!("{text}: net_pcap takes file names without commas");
        }
        let mut frames = 0u64;
        let mut largest = 0usize;
        Capture::open(path)?.for_each(|r| {
            frames += 1;
            largest = largest.max(r.data.len());
        })?;
        plan.push((text, frames, largest));
    }
    let largest = plan.iter().map(|p| p.2).max().unwrap_or(0);
    let data_room = u16::try_from(largest.max(usize::from(MBUF_DATA)) + usize::from(HEADROOM))
        .context("a frame is too large for one mbuf (65407 bytes at most)")?;
    check_hugepages(eal)?;
    dpdk::eal_init(eal).context("EAL initialisation")?;
    let mbufs = replay_mbufs(cfg);
    let pool = Mempool::new(&pool_name("rp"), mbufs, 0, data_room)
        .context("replay mbuf pool (raise -m)")?;

    let mut session = Session::new(cfg, opts)?;
    let (mut rxs, wks) =
        pipeline::build_with(&cfg.rings, 1, cfg.dataplane.workers, Overflow::Wait, |_| {
            (Arc::new(Mbufs), Vec::new())
        });
    let mut rx = rxs.pop().context("no rx queues")?;
    let start = Instant::now();
    let handles = pipeline::spawn_workers(wks, None)?;
    let mut result = Ok(());
    for (k, (path, frames, _)) in plan.iter().enumerate() {
        let r = replay_file(&mut session, &mut rx, &pool, k, path, *frames);
        match r {
            Ok(()) => session.file_done(path, *frames),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    rx.finish();
    let worker_stats = pipeline::join_workers(handles)?;
    let elapsed = start.elapsed();
    result?;
    let (ring_full, oversize) = (rx.ring_full, rx.oversize);
    drop(rx);
    if pool.available() != pool.capacity() {
        bail!(
            "replay leaked mbufs: {} of {} back in the pool",
            pool.available(),
            pool.capacity()
        );
    }
    session.finish(&ring_full, oversize, worker_stats, elapsed)
}

fn replay_file(
    session: &mut Session,
    rx: &mut pipeline::RxQueues<Mbufs>,
    pool: &Mempool,
    k: usize,
    path: &str,
    frames: u64,
) -> Result<()> {
    let name = format!("net_pcap_weir{}_{k}", std::process::id());
    let mut port = Port::attach(&format!("{name},rx_pcap={path}"))
        .with_context(|| format!("{path}: net_pcap"))?;
    port.configure(
        &PortSetup {
            rx_queues: 1,
            tx_queues: 1,
            rx_desc: 1024,
            tx_desc: 1024,
            rss: false,
            rx_timestamp: true,
        },
        pool,
    )
    .with_context(|| format!("{path}: net_pcap"))?;
    port.start().with_context(|| format!("{path}: net_pcap"))?;
    let mut burst = Burst::new();
    let mut got = 0u64;
    let mut idle = Instant::now();
    while got < frames {
        if port.rx_burst(0, &mut burst) == 0 {
            // End of file comes only after `frames`; until then a 0 is a moment without
            // free mbufs (the workers are freeing them).
            if idle.elapsed() > Duration::from_secs(10) {
                bail!(
                    "{path}: net_pcap delivered {got} of {frames} frames (rx_nombuf {})",
                    port.stats().rx_nombuf
                );
            }
            std::thread::yield_now();
            continue;
        }
        idle = Instant::now();
        for m in burst.by_ref() {
            got += 1;
            let Some(ts) = m.rx_timestamp() else {
                bail!("{path}: net_pcap gave frame {got} no timestamp");
            };
            if m.segments() > 1 {
                bail!("{path}: frame {got} arrived in {} mbufs", m.segments());
            }
            if let Some((worker, class)) = session.frame(m.data(), ts, m.pkt_len()) {
                rx.push(worker, class, m);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lcore_lists_name_their_cpus() {
        assert_eq!(cpus_named("0-3,5"), vec![0, 1, 2, 3, 5]);
        assert_eq!(cpus_named("0@0,1@1,2@1"), vec![0, 1, 1]);
        assert_eq!(cpus_named("(0,1)@(2,3),4"), vec![2, 3, 4]);
        let eal = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(check_lcores(&eal(&["-l", "0-1"]), 2).is_ok());
        let e = check_lcores(&eal(&["-l", "0-7"]), 2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("names CPU 2") && e.contains("CPUs 0..1"), "{e}");
        assert!(check_lcores(&eal(&["--lcores=0@0,1@3"]), 2).is_err());
        assert!(check_lcores(&eal(&["-l3"]), 2).is_err());
    }

    #[test]
    fn no_huge_skips_the_hugepage_check() {
        assert!(check_hugepages(&["--no-huge".to_string()]).is_ok());
    }
}
