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
use weir_model::config::{Config, DpdkPortConfig};
use weir_model::Class;

use crate::capture::Capture;
use crate::dpdk::{self, Burst, FreeBatch, Mbuf, Mempool, Port as Device, PortSetup, TxBurst};
use crate::host::HostResponder;
use crate::pipeline::{self, Backing, Overflow, RxQueues};
use crate::port::pcap::FileReport;
use crate::port::{Port, PortDrops, PortError, Received, RxStatus, Sent};
use crate::replay::{ReplayOptions, Report};
use crate::run::RunOptions;
use crate::rx::{Clock, RunLimits, RxCore, RxReport, RxSetup};
use crate::state::DataplaneState;

/// Bytes of packet data per mbuf: a full frame with VLAN tags (the mbuf adds DPDK's
/// 128-byte headroom).
pub const MBUF_DATA: u16 = 2048;
const HEADROOM: u16 = 128;

/// Rings of received mbufs: the handle is the mbuf; dropping it frees it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mbufs;

impl Received<Mbufs> for Mbuf {
    #[inline]
    fn bytes(&self) -> &[u8] {
        self.data()
    }
    #[inline]
    fn wire_len(&self) -> u32 {
        self.pkt_len()
    }
    #[inline]
    fn capture_ns(&self) -> Option<u64> {
        self.rx_timestamp()
    }
    #[inline]
    fn queue(self, queues: &mut RxQueues<Mbufs>, worker: u16, class: Class) -> bool {
        queues.push(worker, class, self)
    }
    fn queue_inner(
        mut self,
        queues: &mut RxQueues<Mbufs>,
        worker: u16,
        class: Class,
        inner: crate::handover::Inner,
    ) -> bool {
        self.decapsulate_in_place(inner) && queues.push(worker, class, self)
    }
}

/// A received mbuf with the data of the one after it in its burst (see
/// [`Received::lookahead`]). One that is not queued goes, when dropped, to its queue's
/// batch of spent mbufs, freed together after the burst (one C call per burst, not one
/// per dropped frame: 60 instructions a frame under callgrind for single frees).
#[derive(Debug)]
pub struct InBurst<'a> {
    /// The mbuf; `None` only once `queue` has taken it.
    m: Option<Mbuf>,
    next: Option<&'a [u8]>,
    spent: &'a mut FreeBatch,
    /// Its device's place in the queue's devices.
    device: u8,
}

impl Drop for InBurst<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Some(m) = self.m.take() {
            self.spent.push(m);
        }
    }
}

impl Received<Mbufs> for InBurst<'_> {
    #[inline]
    fn bytes(&self) -> &[u8] {
        self.m.as_ref().map_or(&[], Mbuf::data)
    }
    #[inline]
    fn wire_len(&self) -> u32 {
        self.m.as_ref().map_or(0, Mbuf::pkt_len)
    }
    #[inline]
    fn capture_ns(&self) -> Option<u64> {
        None
    }
    #[inline]
    fn queue(mut self, queues: &mut RxQueues<Mbufs>, worker: u16, class: Class) -> bool {
        self.m.take().is_some_and(|m| queues.push(worker, class, m))
    }
    fn queue_inner(
        mut self,
        queues: &mut RxQueues<Mbufs>,
        worker: u16,
        class: Class,
        inner: crate::handover::Inner,
    ) -> bool {
        self.m
            .take()
            .is_some_and(|m| m.queue_inner(queues, worker, class, inner))
    }
    #[inline]
    fn lookahead(&self) -> Option<&[u8]> {
        self.next
    }
    #[inline]
    fn device(&self) -> u8 {
        self.device
    }
}

/// One rx queue of every device, as one rx core's port: bursts from each device's queue
/// `queue` in turn (the mbufs themselves are lent and queued: zero copy); answers and
/// the terminators' frames are copied into mbufs and sent on the first device's tx queue
/// of the same number. Chained mbufs (a frame larger than one buffer: ports run without
/// scatter) are not classified on a cut copy; they are counted as `oversize` and freed.
#[derive(Debug)]
pub struct DpdkQueue {
    devices: Arc<Vec<Device>>,
    queue: u16,
    burst: Burst,
    pool: Mempool,
    tx: TxBurst,
    /// Frames of the current burst that were not queued, freed together after it.
    spent: FreeBatch,
    sent: Sent,
    oversize: u64,
}

impl DpdkQueue {
    /// Queue `queue` of `devices`, sending from `pool`.
    pub fn new(devices: Arc<Vec<Device>>, queue: u16, pool: Mempool) -> DpdkQueue {
        DpdkQueue {
            devices,
            queue,
            burst: Burst::new(),
            pool,
            tx: TxBurst::new(),
            spent: FreeBatch::default(),
            sent: Sent::default(),
            oversize: 0,
        }
    }
}

impl Port for DpdkQueue {
    type Backing = Mbufs;
    type Frame<'a> = InBurst<'a>;

    #[inline]
    fn rx_burst<F>(&mut self, mut f: F) -> Result<RxStatus, PortError>
    where
        F: for<'a> FnMut(InBurst<'a>),
    {
        let mut total = 0;
        for (i, dev) in self.devices.iter().enumerate() {
            // (`[port] devices` holds at most 255: checked with the config.)
            let device = u8::try_from(i).unwrap_or(u8::MAX);
            let n = dev.rx_burst(self.queue, &mut self.burst);
            total += n;
            while let Some(m) = self.burst.next() {
                if m.segments() > 1 {
                    self.oversize += 1;
                    self.spent.push(m);
                    continue;
                }
                let next = self.burst.peek_data();
                f(InBurst {
                    m: Some(m),
                    next,
                    spent: &mut self.spent,
                    device,
                });
            }
        }
        self.spent.flush();
        Ok(RxStatus::Frames(total))
    }

    fn send(&mut self, frame: &[u8]) {
        let Some(mut m) = Mbuf::alloc(&self.pool) else {
            self.sent.failed += 1;
            return;
        };
        if !m.append(frame) {
            self.sent.failed += 1;
            return;
        }
        if let Err(m) = self.tx.push(m) {
            self.flush();
            if self.tx.push(m).is_err() {
                self.sent.failed += 1;
            }
        }
    }

    fn flush(&mut self) {
        if self.tx.is_empty() {
            return;
        }
        let Some(dev) = self.devices.first() else {
            return;
        };
        let r = dev.tx_flush(self.queue, &mut self.tx, 4);
        self.sent.sent += u64::from(r.sent);
        self.sent.failed += u64::from(r.dropped);
    }

    fn sent(&self) -> Sent {
        self.sent
    }

    /// The devices' counters are global: rx core 0 reports them (with every core's own
    /// oversize count folded in by the merge).
    fn drops(&self) -> Option<PortDrops> {
        let mut d = PortDrops {
            oversize: self.oversize,
            ..PortDrops::default()
        };
        if self.queue == 0 {
            for s in self.devices.iter().map(Device::stats) {
                d.imissed += s.imissed;
                d.ierrors += s.ierrors;
                d.rx_nombuf += s.rx_nombuf;
            }
        }
        Some(d)
    }
}

impl Backing for Mbufs {
    type Buf = Mbuf;
    type Spent = crate::dpdk::FreeBatch;
    const RECYCLES: bool = false;
    #[inline]
    fn release(spent: &mut crate::dpdk::FreeBatch, buf: Mbuf) {
        spent.push(buf);
    }
    #[inline]
    fn release_all(spent: &mut crate::dpdk::FreeBatch) {
        spent.flush();
    }
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
fn open_device(devargs: &str) -> Result<Device> {
    let name = devargs.split(',').next().unwrap_or(devargs);
    match Device::by_name(name) {
        Ok(p) => Ok(p),
        Err(_) => Device::attach(devargs).with_context(|| format!("[port] device `{devargs}`")),
    }
}

/// `weir-dp run` on DPDK ports.
pub fn run(
    cfg: &Config,
    d: &DpdkPortConfig,
    shared: &Arc<DataplaneState>,
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
        .and_then(Device::mac)
        .unwrap_or(crate::run::DEFAULT_MAC);
    let (mut serves, mut ways_back) = if cfg.terminator.enabled {
        let (s, b) = crate::run::terminator_workers(
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
    let limits = RunLimits {
        clock,
        duration: opts.duration,
    };
    for (q, (rxq, &lcore)) in rxs.into_iter().zip(rx_lcores).enumerate() {
        // A network port: service-sourced frames arriving here are spoofed (martian); the
        // tracker learns the service's side from the terminators' tx path.
        let mut setup = RxSetup::live(q);
        setup.responder = Some(HostResponder::new(our_mac));
        setup.replies = ways_back.get_mut(q).map(std::mem::take).unwrap_or_default();
        setup.stamp_base = Some(clock.base);
        let mut core = RxCore::new(cfg, shared, rxq, setup);
        let queue = u16::try_from(q).unwrap_or(u16::MAX);
        let mut port = DpdkQueue::new(Arc::clone(&ports), queue, pool.clone());
        let (shared, back) = (Arc::clone(shared), back_tx.clone());
        match dpdk::launch(lcore, move || {
            if let Err(e) = core.run(&mut port, &shared, &limits, None) {
                tracing::error!(queue, "rx core stopped: {e}");
            }
            let _ = back.send((core, port));
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
    // The rx lcores run until `shared.stop` (signal, control) or the duration.
    for &l in &launched_rx {
        dpdk::wait(l);
    }
    shared.stop.store(true, Ordering::Relaxed);
    let mut cores: Vec<(RxCore<Mbufs>, DpdkQueue)> = back_rx.try_iter().collect();
    for (core, _) in &cores {
        core.rx.finish();
    }
    for &l in &launched_workers {
        dpdk::wait(l);
    }
    let mut merged: Option<RxReport> = None;
    for (core, port) in &mut cores {
        core.send_remaining(port);
        let r = core.finish(shared, port);
        match &mut merged {
            Some(m) => m.merge(&r),
            None => merged = Some(r),
        }
    }
    let mut report = merged.unwrap_or_default();
    let port_stats: Vec<_> = ports.iter().map(Device::stats).collect();
    drop(cores);
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

/// EAL arguments for `replay --dpdk` when none are given: hugepages when some are free,
/// else `--no-huge` with memory for `mbufs`; no PCI scan; one lcore (workers are threads);
/// nothing left behind when it exits ([`dpdk::private_eal_arg`]: before, each run on
/// hugepages had left 2 of them allocated, until the machine ran out).
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
    let private = dpdk::private_eal_arg(&eal);
    eal.push(private.into());
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
/// replay's rx loop and rules, so the report is the same count for count. `eal`: EAL
/// arguments (the process's EAL is initialised once; see [`dpdk::eal_init`]).
pub fn replay(
    cfg: &Config,
    files: &[PathBuf],
    opts: &ReplayOptions,
    eal: &[String],
) -> Result<Report> {
    // Every file is read first: a missing or corrupt one fails before any work, and the
    // frame count tells the end of the file apart from a momentary lack of mbufs.
    let mut plan = Vec::with_capacity(files.len());
    let mut largest = 0usize;
    for path in files {
        let text = path.display().to_string();
        if text.contains(',') {
            bail!("{text}: net_pcap takes file names without commas");
        }
        let mut frames = 0u64;
        Capture::open(path)?.for_each(|r| {
            frames += 1;
            largest = largest.max(r.data.len());
        })?;
        plan.push(FilePlan { path: text, frames });
    }
    let data_room = u16::try_from(largest.max(usize::from(MBUF_DATA)) + usize::from(HEADROOM))
        .context("a frame is too large for one mbuf (65407 bytes at most)")?;
    check_hugepages(eal)?;
    dpdk::eal_init(eal).context("EAL initialisation")?;
    let mbufs = replay_mbufs(cfg);
    let pool = Mempool::new(&pool_name("rp"), mbufs, 0, data_room)
        .context("replay mbuf pool (raise -m)")?;
    let (mut rxs, wks) =
        pipeline::build_with(&cfg.rings, 1, cfg.dataplane.workers, Overflow::Wait, |_| {
            (Arc::new(Mbufs), Vec::new())
        });
    let rx = rxs.pop().context("no rx queues")?;
    let mut port = DpdkReplay {
        plan,
        next: 0,
        current: None,
        pool: pool.clone(),
        burst: Burst::new(),
        done: Vec::new(),
    };
    let report = crate::replay::replay_on(cfg, &mut port, rx, wks, opts, |p| p.done.clone())?;
    drop(port);
    if pool.available() != pool.capacity() {
        bail!(
            "replay leaked mbufs: {} of {} back in the pool",
            pool.available(),
            pool.capacity()
        );
    }
    Ok(report)
}

/// A capture file to replay through `net_pcap`, with its frame count.
#[derive(Debug, Clone)]
struct FilePlan {
    path: String,
    frames: u64,
}

/// The file being replayed: its vdev and how many frames came so far.
#[derive(Debug)]
struct Current {
    device: Device,
    got: u64,
    idle_since: Instant,
}

/// `replay --dpdk`'s port: the files one after another, each through its own `net_pcap`
/// vdev with rx timestamps (the capture's), read until its known frame count arrived.
#[derive(Debug)]
struct DpdkReplay {
    plan: Vec<FilePlan>,
    next: usize,
    current: Option<Current>,
    pool: Mempool,
    burst: Burst,
    done: Vec<FileReport>,
}

impl DpdkReplay {
    fn open(&mut self, k: usize) -> Result<Device, PortError> {
        let path = &self.plan[k].path;
        let fail = |e: &dyn std::fmt::Display| PortError::Dpdk(format!("{path}: net_pcap: {e}"));
        let name = format!("net_pcap_weir{}_{k}", std::process::id());
        let mut device = Device::attach(&format!("{name},rx_pcap={path}")).map_err(|e| fail(&e))?;
        device
            .configure(
                &PortSetup {
                    rx_queues: 1,
                    tx_queues: 1,
                    rx_desc: 1024,
                    tx_desc: 1024,
                    rss: false,
                    rx_timestamp: true,
                },
                &self.pool,
            )
            .map_err(|e| fail(&e))?;
        device.start().map_err(|e| fail(&e))?;
        Ok(device)
    }
}

impl Port for DpdkReplay {
    type Backing = Mbufs;
    type Frame<'a> = Mbuf;
    const CAPTURE_CLOCK: bool = true;

    fn rx_burst<F>(&mut self, mut f: F) -> Result<RxStatus, PortError>
    where
        F: for<'a> FnMut(Mbuf),
    {
        loop {
            let Some(plan) = self.plan.get(self.next) else {
                return Ok(RxStatus::Ended);
            };
            let (path, frames) = (plan.path.clone(), plan.frames);
            if self.current.is_none() {
                let device = self.open(self.next)?;
                self.current = Some(Current {
                    device,
                    got: 0,
                    idle_since: Instant::now(),
                });
            }
            let Some(cur) = self.current.as_mut() else {
                continue;
            };
            if cur.got >= frames {
                self.done.push(FileReport {
                    path,
                    packets: frames,
                    cut_short: false,
                });
                self.current = None;
                self.next += 1;
                continue;
            }
            if cur.device.rx_burst(0, &mut self.burst) == 0 {
                // The end of the file comes only after `frames`; until then a 0 is a
                // moment without free mbufs (the workers are freeing them).
                if cur.idle_since.elapsed() > Duration::from_secs(10) {
                    return Err(PortError::Dpdk(format!(
                        "{path}: net_pcap delivered {} of {frames} frames (rx_nombuf {})",
                        cur.got,
                        cur.device.stats().rx_nombuf
                    )));
                }
                std::thread::yield_now();
                return Ok(RxStatus::Frames(0));
            }
            cur.idle_since = Instant::now();
            let mut n = 0;
            for m in self.burst.by_ref() {
                cur.got += 1;
                n += 1;
                if m.rx_timestamp().is_none() {
                    return Err(PortError::Dpdk(format!(
                        "{path}: net_pcap gave frame {} no timestamp",
                        cur.got
                    )));
                }
                if m.segments() > 1 {
                    return Err(PortError::Dpdk(format!(
                        "{path}: frame {} arrived in {} mbufs",
                        cur.got,
                        m.segments()
                    )));
                }
                f(m);
            }
            return Ok(RxStatus::Frames(n));
        }
    }

    fn send(&mut self, _frame: &[u8]) {}

    fn sent(&self) -> Sent {
        Sent::default()
    }
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
