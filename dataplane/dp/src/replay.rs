//! `weir-dp replay`: captures through the classifier, the rings and the workers.
//!
//! Capture timestamps are the clock (rate buckets, time-window rules, flow expiry), and
//! the rx side waits for ring space instead of dropping ([`Overflow::Wait`]), so the
//! verdicts and every count are the same on every run and every machine; only the
//! throughput figures vary. Several files are replayed in order through one classifier,
//! as if captured back to back.
//!
//! With an output directory, every frame is also written to the pcap of its class (and of
//! its reason, for rejects), in capture order and with its capture timestamp: the tee is
//! on the rx side, where the order is the capture's.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, IsTerminal};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, TsResolution};
use serde::Serialize;
use weir_model::config::Config;
use weir_model::{Class, Disposition, Reason};

use crate::capture::Link;
use crate::classify::{Classifier, Counters, Vantage};
use crate::pipeline::{self, Backing, Overflow, RxQueues, WorkerQueues, WorkerStats};
use crate::pool::Lengths;
use crate::port::pcap::{CaptureReplay, FileReport};
use crate::port::Port;
use crate::rx::{Clock, RunLimits, RxCore, RxSetup, Tee, TeeFrame};
use crate::state::DataplaneState;
use crate::verdicts::{load_expected, ExpectCheck, ExpectOutcome, Format, VerdictWriter};

/// Seed of the replay's table hashes: fixed, so that even table-full events repeat.
pub const REPLAY_SEED: u64 = 0x7765_6972_2d72_706c;

/// Replay options.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// Write per-class and per-reason pcaps here.
    pub out_dir: Option<PathBuf>,
    /// Show a progress bar on stderr (only drawn when stderr is a terminal).
    pub progress: bool,
    /// Write one line per frame to this file, in this format.
    pub verdicts: Option<(PathBuf, Format)>,
    /// Check every frame against this expected-verdict file.
    pub expect: Option<PathBuf>,
}

/// The replay report. JSON keys `packets`, `outbound`, `host`, `truncated`, `classes`,
/// `reasons` are part of the interface.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Frames read.
    pub packets: u64,
    /// Frames from service addresses (the terminators' side).
    pub outbound: u64,
    /// NDP and ARP.
    pub host: u64,
    /// Frames that the capture's snap length cut inside their headers: not classified.
    pub truncated: u64,
    /// Per class.
    pub classes: BTreeMap<&'static str, u64>,
    /// Per reason (every reason, zeros included).
    pub reasons: BTreeMap<&'static str, u64>,
    /// Events that are not verdicts.
    pub events: BTreeMap<&'static str, u64>,
    /// Flow table activity.
    pub flows: BTreeMap<&'static str, u64>,
    /// Per worker: what it drained, and its share of the new flows.
    pub workers: Vec<WorkerLine>,
    /// Warnings about the policy (a rule that does not spread clients over slices).
    pub warnings: Vec<String>,
    /// Per input file.
    pub files: Vec<FileReport>,
    /// Wall time of the replay (reading, classifying, queueing, draining).
    pub elapsed_s: f64,
    /// Million packets per second.
    pub mpps: f64,
    /// Nanoseconds per packet.
    pub ns_per_packet: f64,
    /// The policy replayed with.
    pub policy: PolicyReport,
    /// With `--expect`: how the verdicts compared with the expected ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect: Option<ExpectOutcome>,
}

/// One worker in a report.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerLine {
    /// What the worker drained, and its new flows.
    #[serde(flatten)]
    pub stats: WorkerStats,
    /// Its fraction of all new flows (0 when there were none).
    pub new_flow_share: f64,
}

/// The policy summary in a report.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyReport {
    /// APL text.
    pub apl: String,
    /// Rule name.
    pub rule: String,
    /// Workers.
    pub workers: u16,
    /// Slices in all.
    pub slices: usize,
}

/// `--out-dir`: every frame into the pcap of its class (and of its reason, for rejects),
/// in capture order with its capture timestamp and both its lengths. Ethernet frames go to
/// `NAME.pcap`; a frame of another link type (a cooked or raw-IP capture) goes, in its own
/// link type, to `NAME.LINK.pcap` (`known_good.linux-sll2.pcap`), opened when the first
/// such frame comes.
struct ClassCaptures {
    dir: PathBuf,
    /// (name, link type, writer): a few dozen, searched in order.
    writers: Vec<(String, Link, PcapWriter<BufWriter<File>>)>,
    /// `reject-REASON` by reason index.
    reject_names: Vec<String>,
    error: Option<anyhow::Error>,
}

impl ClassCaptures {
    fn new(dir: &Path) -> Result<ClassCaptures> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create output directory {}", dir.display()))?;
        let mut tee = ClassCaptures {
            dir: dir.to_path_buf(),
            writers: Vec::new(),
            reject_names: Reason::ALL
                .iter()
                .map(|r| format!("reject-{}", r.name()))
                .collect(),
            error: None,
        };
        // Every Ethernet file exists after a replay, empty or not, so scripts can rely on
        // them.
        let mut names: Vec<String> = vec!["outbound".into(), "host".into(), "truncated".into()];
        names.extend(Class::ALL.iter().map(|c| c.name().to_string()));
        names.extend(
            Reason::ALL
                .iter()
                .filter(|r| r.class() == Class::Reject)
                .map(|r| format!("reject-{}", r.name())),
        );
        for n in names {
            tee.open(&n, Link::Ethernet)?;
        }
        Ok(tee)
    }

    fn file_name(name: &str, link: Link) -> String {
        match link {
            Link::Ethernet => format!("{name}.pcap"),
            other => format!("{name}.{}.pcap", other.name()),
        }
    }

    fn open(&mut self, name: &str, link: Link) -> Result<()> {
        let path = self.dir.join(Self::file_name(name, link));
        let file =
            File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let header = PcapHeader {
            datalink: DataLink::from(link.number()),
            ts_resolution: TsResolution::NanoSecond,
            snaplen: 262_144,
            ..PcapHeader::default()
        };
        let w = PcapWriter::with_header(BufWriter::new(file), header)
            .with_context(|| format!("cannot write {}", path.display()))?;
        self.writers.push((name.to_string(), link, w));
        Ok(())
    }

    fn write(&mut self, name: &str, f: &TeeFrame<'_>) {
        if self.error.is_some() {
            return;
        }
        let find =
            |w: &[(String, Link, _)]| w.iter().position(|(n, l, _)| n == name && *l == f.link);
        let at = match find(&self.writers) {
            Some(at) => at,
            None => match self.open(name, f.link) {
                Ok(()) => self.writers.len() - 1,
                Err(e) => {
                    self.error = Some(e);
                    return;
                }
            },
        };
        let Some((_, _, w)) = self.writers.get_mut(at) else {
            return;
        };
        let pkt = PcapPacket::new(
            Duration::from_nanos(f.time_ns),
            f.wire_len.max(f.bytes.len() as u32),
            f.bytes,
        );
        if let Err(e) = w.write_packet(&pkt) {
            let file = Self::file_name(name, f.link);
            self.error = Some(anyhow::Error::new(e).context(format!("writing {file}")));
        }
    }

    fn record(&mut self, f: &TeeFrame<'_>) {
        match f.disposition {
            Disposition::Outbound => self.write("outbound", f),
            Disposition::Host => self.write("host", f),
            Disposition::Truncated => self.write("truncated", f),
            // A replay has no cluster, so nothing is forwarded.
            Disposition::Forward { .. } => {}
            Disposition::Classified { verdict, .. } => {
                let class = verdict.class();
                self.write(class.name(), f);
                if let (Class::Reject, Some(r)) = (class, verdict.reason()) {
                    // Lent out of the table for the call (no allocation per frame).
                    let Some(name) = self.reject_names.get_mut(r.index()).map(std::mem::take)
                    else {
                        return;
                    };
                    self.write(&name, f);
                    if let Some(slot) = self.reject_names.get_mut(r.index()) {
                        *slot = name;
                    }
                }
            }
        }
    }

    fn finish(&mut self) -> Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        for (name, link, w) in std::mem::take(&mut self.writers) {
            use std::io::Write;
            w.into_writer()
                .flush()
                .with_context(|| format!("writing {}", Self::file_name(&name, link)))?;
        }
        Ok(())
    }
}

impl Tee for ClassCaptures {
    fn frame(&mut self, f: &TeeFrame<'_>) {
        self.record(f);
    }

    fn finish(&mut self) -> std::io::Result<()> {
        ClassCaptures::finish(self).map_err(std::io::Error::other)
    }
}

impl std::fmt::Debug for ClassCaptures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClassCaptures")
            .field("dir", &self.dir)
            .finish()
    }
}

/// Replay `files` under `cfg` (software: the files are read by weir itself).
pub fn replay(cfg: &Config, files: &[PathBuf], opts: &ReplayOptions) -> Result<Report> {
    let mut port = CaptureReplay::open(files)?;
    if opts.progress && std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(port.total_bytes());
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} replay [{bar:40}] {bytes}/{total_bytes} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        port = port.with_progress(b);
    }
    // The workers count and never read the bytes: the rings carry lengths (see `Lengths`).
    let (mut rxs, wks) =
        pipeline::build_with(&cfg.rings, 1, cfg.dataplane.workers, Overflow::Wait, |_| {
            (Arc::new(Lengths), Vec::new())
        });
    let rx = rxs.pop().context("no rx queues")?;
    replay_on(cfg, &mut port, rx, wks, opts, |p| p.files().to_vec())
}

/// A replay through any port whose frames carry their capture time: the rx loop with
/// replay's parameters (capture clock, wait for ring space, replay vantage, fixed seed,
/// the per-class captures as its tee) and counting workers. `files`: the port's files,
/// for the report.
pub fn replay_on<P: Port>(
    cfg: &Config,
    port: &mut P,
    rx: RxQueues<P::Backing>,
    wks: Vec<WorkerQueues<P::Backing>>,
    opts: &ReplayOptions,
    files: impl FnOnce(&P) -> Vec<FileReport>,
) -> Result<Report>
where
    P::Backing: Backing,
{
    let state =
        DataplaneState::new(cfg, 1, Arc::new(AtomicBool::new(false))).context("invalid policy")?;
    let mut tees: Vec<Box<dyn Tee>> = Vec::new();
    if let Some(dir) = opts.out_dir.as_deref() {
        tees.push(Box::new(ClassCaptures::new(dir)?));
    }
    if let Some((path, format)) = &opts.verdicts {
        let w = VerdictWriter::create(path, *format)
            .with_context(|| format!("cannot create {}", path.display()))?;
        tees.push(Box::new(w));
    }
    let expect = match &opts.expect {
        Some(path) => {
            let (check, outcome) = ExpectCheck::new(load_expected(path)?);
            tees.push(Box::new(check));
            Some(outcome)
        }
        None => None,
    };
    let tee = match tees.len() {
        0 => None,
        1 => tees.pop(),
        _ => Some(Box::new(tees) as Box<dyn Tee>),
    };
    let setup = RxSetup {
        index: 0,
        vantage: Vantage::Replay,
        seed: REPLAY_SEED,
        responder: None,
        replies: Vec::new(),
        tee,
        stamp_base: None,
    };
    let mut core = RxCore::new(cfg, &state, rx, setup);
    let policy = PolicyReport {
        apl: cfg.service().apl.to_string(),
        rule: core.clf.policy().checker.rule().name().to_string(),
        workers: cfg.dataplane.workers,
        slices: core.clf.policy().slices.len(),
    };
    let start = Instant::now();
    let handles = pipeline::spawn_workers(wks, None)?;
    let limits = RunLimits {
        clock: Clock::new(),
        duration: None,
    };
    let result = core.run(port, &state, &limits, None);
    core.rx.finish();
    let worker_stats = pipeline::join_workers(handles)?;
    let elapsed = start.elapsed();
    result?;
    if let Some(mut tee) = core.take_tee() {
        tee.finish()?;
    }
    let rx = core.finish(&state, port);
    let expect = expect.and_then(|slot| slot.lock().ok().and_then(|mut o| o.take()));
    let mut report = build_report(
        &core.clf,
        &rx.ring_full,
        rx.oversize + rx.port.oversize,
        worker_stats,
        files(port),
        elapsed,
        policy,
    );
    report.expect = expect;
    Ok(report)
}

fn build_report(
    clf: &Classifier,
    ring_full: &[u64; 3],
    oversize: u64,
    workers: Vec<WorkerStats>,
    files: Vec<FileReport>,
    elapsed: Duration,
    policy: PolicyReport,
) -> Report {
    let c: &Counters = clf.counters();
    let classes = Class::ALL.iter().map(|&k| (k.name(), c.class(k))).collect();
    let reasons = Reason::ALL
        .iter()
        .map(|&r| (r.name(), c.reason(r)))
        .collect();
    let new_flows = clf.new_flows();
    let total_new: u64 = new_flows.iter().sum();
    let workers = workers
        .into_iter()
        .map(|drained| {
            let n = new_flows
                .get(usize::from(drained.worker))
                .copied()
                .unwrap_or(0);
            WorkerLine {
                stats: WorkerStats {
                    new_flows: n,
                    ..drained
                },
                new_flow_share: if total_new == 0 {
                    0.0
                } else {
                    n as f64 / total_new as f64
                },
            }
        })
        .collect();
    let fc = clf.flow_counters();
    let mut events = BTreeMap::new();
    events.insert("flow-table-full", fc.table_full);
    events.insert("rate-table-evicted", clf.rate_counters().evicted);
    events.insert("ring-full-known_good", ring_full[0]);
    events.insert("ring-full-assumed_good", ring_full[1]);
    events.insert("ring-full-suspect", ring_full[2]);
    events.insert("oversize", oversize);
    let mut flows = BTreeMap::new();
    flows.insert("half-open-created", fc.half_open_created);
    flows.insert("established", fc.established);
    flows.insert("reset", fc.reset);
    let secs = elapsed.as_secs_f64();
    let n = c.packets() as f64;
    Report {
        packets: c.packets(),
        outbound: c.outbound(),
        host: c.host(),
        truncated: c.truncated(),
        classes,
        reasons,
        events,
        flows,
        workers,
        warnings: clf
            .policy()
            .spread_warning()
            .into_iter()
            .chain(files.iter().filter(|f| f.cut_short).map(|f| {
                format!(
                    "{} was cut short in the middle of a record: {} frames read, the rest is not in the report",
                    f.path, f.packets
                )
            }))
            .collect(),
        files,
        elapsed_s: secs,
        mpps: if secs > 0.0 { n / secs / 1e6 } else { 0.0 },
        ns_per_packet: if n > 0.0 { secs * 1e9 / n } else { 0.0 },
        policy,
        expect: None,
    }
}

impl Report {
    /// Whether a capture was cut short (the report covers what could be read).
    pub fn cut_short(&self) -> bool {
        self.files.iter().any(|f| f.cut_short)
    }

    /// The report as a table for people.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let pct = |n: u64| {
            if self.packets == 0 {
                0.0
            } else {
                100.0 * n as f64 / self.packets as f64
            }
        };
        let _ = writeln!(
            s,
            "weir replay: {} file(s), policy {} rule {} ({} workers, {} slices)",
            self.files.len(),
            self.policy.apl,
            self.policy.rule,
            self.policy.workers,
            self.policy.slices
        );
        let _ = writeln!(s, "{:<24} {:>12} {:>7}", "", "packets", "%");
        let _ = writeln!(s, "{:<24} {:>12} {:>7.2}", "total", self.packets, 100.0);
        let _ = writeln!(
            s,
            "{:<24} {:>12} {:>7.2}",
            "outbound",
            self.outbound,
            pct(self.outbound)
        );
        let _ = writeln!(
            s,
            "{:<24} {:>12} {:>7.2}",
            "host",
            self.host,
            pct(self.host)
        );
        let _ = writeln!(
            s,
            "{:<24} {:>12} {:>7.2}",
            "truncated",
            self.truncated,
            pct(self.truncated)
        );
        for class in Class::ALL {
            let n = self.classes.get(class.name()).copied().unwrap_or(0);
            let _ = writeln!(s, "{:<24} {:>12} {:>7.2}", class.name(), n, pct(n));
            for r in Reason::ALL.iter().filter(|r| r.class() == class) {
                let n = self.reasons.get(r.name()).copied().unwrap_or(0);
                let _ = writeln!(s, "  {:<22} {:>12} {:>7.2}", r.name(), n, pct(n));
            }
        }
        let _ = writeln!(s, "events:");
        for (k, v) in &self.events {
            let _ = writeln!(s, "  {k:<22} {v:>12}");
        }
        let _ = writeln!(s, "flows:");
        for (k, v) in &self.flows {
            let _ = writeln!(s, "  {k:<22} {v:>12}");
        }
        let _ = writeln!(
            s,
            "{:<8} {:>12} {:>12} {:>12} {:>14} {:>10} {:>7}",
            "worker", "known_good", "assumed_good", "suspect", "bytes", "new_flows", "share"
        );
        for w in &self.workers {
            let d = &w.stats;
            let _ = writeln!(
                s,
                "{:<8} {:>12} {:>12} {:>12} {:>14} {:>10} {:>6.1}%",
                d.worker,
                d.known_good,
                d.assumed_good,
                d.suspect,
                d.bytes,
                d.new_flows,
                100.0 * w.new_flow_share
            );
        }
        for w in &self.warnings {
            let _ = writeln!(s, "warning: {w}");
        }
        let _ = writeln!(
            s,
            "throughput: {:.3} Mpps, {:.1} ns/packet ({:.3} s)",
            self.mpps, self.ns_per_packet, self.elapsed_s
        );
        s
    }
}
