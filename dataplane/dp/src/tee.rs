//! The live tee: sampled copies of what a running weir decides, by class and reason, to
//! rotating pcapng files — the operator's "show me one of those packets" during an attack.
//!
//! ```text
//!  rx core (per frame, only while a tee is on)          writer thread (weir-tee)
//!   LiveTee::frame                                         pops full buffers of every core
//!     filter: one mask test (TeeFilter)                    pcapng: one IDB per port (ns),
//!     sample: 1 in N (a countdown)                         an EPB per copy with opt_comment
//!     rate cap per second per core                         "class=… reason=… rx=… worker=…
//!     free ring ──pop──► copy ≤ snaplen + a 24-byte          slice=…"
//!                        record header into a Pool buffer  rotation: tee-00001.pcapng, … by
//!     full ring ◄─push──                                   size; at most `files` kept
//!     no free buffer: `tee-dropped`, never waits           buffer back onto the free ring
//! ```
//!
//! **Off costs nothing per frame.** The rx core already had one `Option<Box<dyn Tee>>`
//! test per frame (replay's captures use it); a live tee is installed into that same slot
//! between bursts (`RxCore::sync`: one more atomic load per burst, the [`TeeHub`]'s
//! version), so with the tee off the per-frame path is unchanged.
//!
//! **Bounded, never blocking.** Each rx core has its own pair of SPSC rings (`ring.rs`)
//! and its own share of one fixed [`Pool`], all allocated by the control thread when a tee
//! starts — the rx core only pops, copies and pushes. A copy without a free buffer is
//! counted (`tee-dropped`); filtered-but-skipped frames are counted as `sampled-out` and
//! `rate-capped`. The writer thread is the only one that touches files.
//!
//! **Control.** [`TeeHub`] (in `DataplaneState`) starts and stops tees for the control
//! thread: weir-cp's [`TeeOrder`] in each policy snapshot (re-pushed snapshots with the same
//! start `serial` change nothing), or `[tee] enabled` at start. A start with an end time
//! stops by itself: the writer retracts the rx cores' tees when the time has passed.
//!
//! **Files.** The directory (`[tee] dir`; a control message cannot choose another) is
//! created 0700 when missing; files are created 0600 and never overwritten: numbering
//! continues after the highest `tee-NNNNN.pcapng` already there, and only files of the
//! running tee are deleted by rotation.
//!
//! Rejected: `crossbeam::ArrayQueue` of owned `Vec`s (allocates per copy), a lock around a
//! shared writer (the rx core would wait on I/O), pcap instead of pcapng (no per-packet
//! comment, no per-device interfaces).

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::DataLink;
use weir_control::proto::{TeeOrder, TeeSpec, TeeStatus};
use weir_model::config::{Config, PortConfig};
use weir_model::tee::{
    check_settings, class_and_reason, disposition_of_code, TeeConfig, TeeFilter,
};
use weir_model::{Class, Disposition};

use crate::pool::{PktBuf, Pool, BUF_SIZE};
use crate::ring::{ring, Consumer, Producer};
use crate::rx::{Tee, TeeFrame};

/// Bytes of the record header in front of each copy in its buffer.
pub const RECORD_HEADER: usize = 24;

/// `slice` value of a record whose slice is unknown.
const NO_SLICE: u32 = u32::MAX;
/// `worker` value of a record without a worker.
const NO_WORKER: u16 = u16::MAX;

/// What one copy says about its frame, stored in front of the bytes (little endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// The frame's time, unix ns.
    pub time_ns: u64,
    /// Its length on the wire.
    pub wire_len: u32,
    /// Its [`Disposition::code`].
    pub code: u8,
    /// The port's device it came in on (its pcapng interface).
    pub port: u8,
    /// The rx core.
    pub rx: u16,
    /// The worker (queued: where it went; reject: the slice's owner), or none.
    pub worker: Option<u16>,
    /// The destination's slice, when it has one.
    pub slice: Option<u32>,
}

impl RecordHeader {
    /// The header's bytes.
    pub fn to_bytes(&self) -> [u8; RECORD_HEADER] {
        let mut b = [0u8; RECORD_HEADER];
        b[0..8].copy_from_slice(&self.time_ns.to_le_bytes());
        b[8..12].copy_from_slice(&self.wire_len.to_le_bytes());
        b[12] = self.code;
        b[13] = self.port;
        b[14..16].copy_from_slice(&self.rx.to_le_bytes());
        b[16..18].copy_from_slice(&self.worker.unwrap_or(NO_WORKER).to_le_bytes());
        b[18..22].copy_from_slice(&self.slice.unwrap_or(NO_SLICE).to_le_bytes());
        b
    }

    /// Read a header back; `None` for fewer than [`RECORD_HEADER`] bytes.
    pub fn from_bytes(b: &[u8]) -> Option<RecordHeader> {
        let b: &[u8; RECORD_HEADER] = b.get(..RECORD_HEADER)?.try_into().ok()?;
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut t = [0u8; 8];
        t.copy_from_slice(&b[0..8]);
        let worker = u16_at(16);
        let slice = u32_at(18);
        Some(RecordHeader {
            time_ns: u64::from_le_bytes(t),
            wire_len: u32_at(8),
            code: b[12],
            port: b[13],
            rx: u16_at(14),
            worker: (worker != NO_WORKER).then_some(worker),
            slice: (slice != NO_SLICE).then_some(slice),
        })
    }

    /// The packet comment: `class=reject reason=ssa-violation rx=0 worker=1 slice=77`.
    pub fn comment(&self) -> String {
        let (class, reason) =
            disposition_of_code(usize::from(self.code)).map_or(("unknown", "-"), class_and_reason);
        let worker = self
            .worker
            .map_or_else(|| "-".to_string(), |w| w.to_string());
        let slice = self
            .slice
            .map_or_else(|| "-".to_string(), |s| s.to_string());
        format!(
            "class={class} reason={reason} rx={} worker={worker} slice={slice}",
            self.rx
        )
    }
}

/// One rx core's tee counters (cumulative over every tee of the process; written by that
/// core only).
#[derive(Debug, Default)]
pub struct CoreCounters {
    /// Copies queued to the writer.
    pub teed: AtomicU64,
    /// Copies dropped: no free buffer (the writer is behind).
    pub dropped: AtomicU64,
    /// Selected, skipped by sampling.
    pub sampled_out: AtomicU64,
    /// Selected, refused by the rate cap.
    pub rate_capped: AtomicU64,
}

fn bump(c: &AtomicU64) {
    // One writer per counter: a load and a store, no locked read-modify-write.
    c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

/// The writer's counters (cumulative).
#[derive(Debug, Default)]
pub struct WriterCounters {
    /// Copies written.
    pub written: AtomicU64,
    /// Files begun.
    pub files: AtomicU64,
    /// Bytes written.
    pub bytes: AtomicU64,
}

/// One start's validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeeSettings {
    /// What to copy.
    pub filter: TeeFilter,
    /// 1 in N.
    pub sample: u32,
    /// Copies per second per rx core (0 = no cap).
    pub rate_per_core: u32,
    /// Bytes per frame.
    pub snaplen: u32,
    /// Stop at this unix time (ns).
    pub until_unix_ns: Option<u64>,
    /// weir-cp's start serial; `None` for `[tee] enabled`.
    pub serial: Option<u64>,
}

impl TeeSettings {
    /// `[tee]`'s own settings.
    pub fn from_config(c: &TeeConfig) -> Result<TeeSettings, String> {
        let filter = check_settings(&c.filters, c.sample, c.snaplen)?;
        Ok(TeeSettings {
            filter,
            sample: c.sample,
            rate_per_core: c.rate_per_core,
            snaplen: c.snaplen,
            until_unix_ns: None,
            serial: None,
        })
    }

    /// An operator's start, with `[tee]`'s values where it gives none; every field checked.
    pub fn from_spec(spec: &TeeSpec, c: &TeeConfig) -> Result<TeeSettings, String> {
        let snaplen = spec.snaplen.unwrap_or(c.snaplen);
        let filter = check_settings(&spec.filters, spec.sample, snaplen)?;
        Ok(TeeSettings {
            filter,
            sample: spec.sample,
            rate_per_core: spec.rate_per_core.unwrap_or(c.rate_per_core),
            snaplen,
            until_unix_ns: spec.until_unix_ns,
            serial: Some(spec.serial),
        })
    }
}

/// The rx core's end of a tee (a [`Tee`] installed between bursts).
pub struct LiveTee {
    filter: TeeFilter,
    sample: u32,
    countdown: u32,
    rate_per_core: u32,
    window_start_ns: u64,
    in_window: u32,
    snaplen: usize,
    rx: u16,
    pool: Arc<Pool>,
    free: Consumer<PktBuf>,
    full: Producer<PktBuf>,
    counters: Arc<CoreCounters>,
}

impl std::fmt::Debug for LiveTee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveTee")
            .field("filter", &self.filter)
            .field("sample", &self.sample)
            .field("rx", &self.rx)
            .finish_non_exhaustive()
    }
}

impl LiveTee {
    /// Is this frame to be copied? Counts what sampling and the cap turn away.
    #[inline]
    fn admit(&mut self, d: Disposition, now_ns: u64) -> bool {
        if !self.filter.wants(d) {
            return false;
        }
        if self.countdown > 1 {
            self.countdown -= 1;
            bump(&self.counters.sampled_out);
            return false;
        }
        self.countdown = self.sample;
        if self.rate_per_core != 0 {
            if now_ns.wrapping_sub(self.window_start_ns) >= 1_000_000_000 {
                self.window_start_ns = now_ns;
                self.in_window = 0;
            }
            if self.in_window >= self.rate_per_core {
                bump(&self.counters.rate_capped);
                return false;
            }
            self.in_window += 1;
        }
        true
    }
}

impl Tee for LiveTee {
    #[inline]
    fn frame(&mut self, f: &TeeFrame<'_>) {
        if !self.admit(f.disposition, f.time_ns) {
            return;
        }
        let Some(mut buf) = self.free.pop() else {
            bump(&self.counters.dropped);
            return;
        };
        let (slice, owner) = slice_and_owner(f);
        let worker = match f.disposition {
            Disposition::Classified { verdict, worker } if verdict.class() != Class::Reject => {
                Some(worker)
            }
            _ => owner,
        };
        let header = RecordHeader {
            time_ns: f.time_ns,
            wire_len: f.wire_len,
            code: u8::try_from(f.disposition.code()).unwrap_or(u8::MAX),
            port: f.device,
            rx: self.rx,
            worker,
            slice,
        };
        let take = f.bytes.len().min(self.snaplen);
        let _ = self
            .pool
            .fill_parts(&mut buf, &[&header.to_bytes(), &f.bytes[..take]]);
        match self.full.push(buf) {
            Ok(()) => bump(&self.counters.teed),
            // Cannot happen (as many slots as buffers); the buffer goes back to the pool's
            // free list through the writer's end being dropped at stop.
            Err(buf) => {
                bump(&self.counters.dropped);
                drop(buf);
            }
        }
    }
}

/// The destination's slice and that slice's owner, under the frame's policy.
fn slice_and_owner(f: &TeeFrame<'_>) -> (Option<u32>, Option<u16>) {
    if f.disposition == Disposition::Truncated {
        return (None, None);
    }
    let addrs = match f.network {
        None => weir_wire::peek_addresses(f.bytes),
        Some((ty, at)) => f
            .bytes
            .get(at..)
            .and_then(|b| weir_wire::peek_network(ty, b)),
    };
    let Some((_, _, dst)) = addrs else {
        return (None, None);
    };
    let p = f.policy;
    let Some(idx) = p.prefixes.lookup(dst) else {
        return (None, None);
    };
    let slice = p.slices.slice_of(idx, dst);
    (Some(slice), Some(p.slices.worker_of(slice)))
}

/// The pcapng file name of number `n`.
pub fn file_name(n: u32) -> String {
    format!("tee-{n:05}.pcapng")
}

/// The number in a tee file's name (`tee-00042.pcapng` → 42).
pub fn file_number(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("tee-")?.strip_suffix(".pcapng")?;
    if digits.len() < 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Make `dir` (0700, parents as needed) unless it exists; it must be a directory.
pub fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(std::io::Error::other(format!(
            "{} exists and is not a directory",
            dir.display()
        ))),
        Err(_) => DirBuilder::new().recursive(true).mode(0o700).create(dir),
    }
}

/// Rotating pcapng files: one interface per device of the port, a comment per packet.
pub struct Rotation {
    dir: PathBuf,
    file_bytes: u64,
    files: u32,
    ports: Vec<String>,
    snaplen: u32,
    next: u32,
    kept: VecDeque<PathBuf>,
    out: Option<(PcapNgWriter<BufWriter<File>>, u64)>,
    counters: Arc<WriterCounters>,
    current: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for Rotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rotation")
            .field("dir", &self.dir)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl Rotation {
    /// Files in `dir` (made 0700 if missing), numbered after the highest already there.
    pub fn new(
        dir: &Path,
        file_bytes: u64,
        files: u32,
        ports: Vec<String>,
        snaplen: u32,
        counters: Arc<WriterCounters>,
        current: Arc<Mutex<Option<String>>>,
    ) -> std::io::Result<Rotation> {
        ensure_dir(dir)?;
        let mut highest = 0;
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            if let Some(n) = e.file_name().to_str().and_then(file_number) {
                highest = highest.max(n);
            }
        }
        Ok(Rotation {
            dir: dir.to_path_buf(),
            file_bytes,
            files: files.max(1),
            ports,
            snaplen,
            next: highest.saturating_add(1),
            kept: VecDeque::new(),
            out: None,
            counters,
            current,
        })
    }

    fn open(&mut self) -> std::io::Result<()> {
        let path = self.dir.join(file_name(self.next));
        self.next = self.next.saturating_add(1);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        let mut w = PcapNgWriter::new(BufWriter::with_capacity(256 * 1024, file))
            .map_err(std::io::Error::other)?;
        let mut bytes = 28; // the section header block pcap-file writes
        for name in &self.ports {
            let idb = InterfaceDescriptionBlock {
                linktype: DataLink::ETHERNET,
                snaplen: self.snaplen,
                options: vec![
                    InterfaceDescriptionOption::IfName(Cow::Owned(name.clone())),
                    InterfaceDescriptionOption::IfTsResol(9),
                ],
            };
            bytes += w.write_pcapng_block(idb).map_err(std::io::Error::other)? as u64;
        }
        self.kept.push_back(path.clone());
        while self.kept.len() > self.files as usize {
            if let Some(old) = self.kept.pop_front() {
                if let Err(e) = std::fs::remove_file(&old) {
                    tracing::warn!(file = %old.display(), "tee rotation cannot delete: {e}");
                }
            }
        }
        bump_by(&self.counters.files, 1);
        bump_by(&self.counters.bytes, bytes);
        if let Ok(mut c) = self.current.lock() {
            *c = Some(path.display().to_string());
        }
        self.out = Some((w, bytes));
        Ok(())
    }

    /// Write one copy (header + bytes, as a tee buffer holds it).
    pub fn write(&mut self, record: &[u8]) -> std::io::Result<()> {
        let Some(h) = RecordHeader::from_bytes(record) else {
            return Ok(());
        };
        let data = record.get(RECORD_HEADER..).unwrap_or(&[]);
        if self.out.as_ref().is_none_or(|(_, n)| *n >= self.file_bytes) {
            self.finish()?;
            self.open()?;
        }
        let Some((w, n)) = self.out.as_mut() else {
            return Ok(());
        };
        let interface_id = u32::from(h.port).min(self.ports.len().saturating_sub(1) as u32);
        let epb = EnhancedPacketBlock {
            interface_id,
            timestamp: Duration::from_nanos(h.time_ns),
            original_len: h.wire_len.max(data.len() as u32),
            data: Cow::Borrowed(data),
            options: vec![EnhancedPacketOption::Comment(Cow::Owned(h.comment()))],
        };
        let written = w.write_pcapng_block(epb).map_err(std::io::Error::other)? as u64;
        *n += written;
        bump_by(&self.counters.bytes, written);
        bump_by(&self.counters.written, 1);
        Ok(())
    }

    /// Flush what is buffered (the file stays open).
    pub fn flush(&mut self) -> std::io::Result<()> {
        match self.out.as_mut() {
            Some((w, _)) => w.get_mut().flush(),
            None => Ok(()),
        }
    }

    /// Flush and close the current file.
    pub fn finish(&mut self) -> std::io::Result<()> {
        if let Some((w, _)) = self.out.take() {
            let mut inner = w.into_inner();
            inner.flush()?;
            inner.get_ref().sync_data()?;
        }
        Ok(())
    }
}

fn bump_by(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// The rings between the rx cores and the writer, and the rx cores' pickup protocol.
#[derive(Debug)]
struct Link {
    /// Per rx core: the tee to install at the next burst (the rx core swaps its own in).
    slots: Vec<Mutex<Option<Box<dyn Tee>>>>,
    /// Bumped after `slots` change.
    version: AtomicU64,
    /// Per rx core: the last version it swapped in.
    acked: Vec<AtomicU64>,
}

impl Link {
    /// Replace every rx core's pending tee (`None`: stop) and bump the version; returns it.
    fn install(&self, mut tees: Vec<Option<Box<dyn Tee>>>) -> u64 {
        for (i, slot) in self.slots.iter().enumerate() {
            let t = tees.get_mut(i).and_then(Option::take);
            if let Ok(mut g) = slot.lock() {
                *g = t;
            }
        }
        self.version.fetch_add(1, Ordering::AcqRel) + 1
    }

    fn all_acked(&self, v: u64) -> bool {
        self.acked.iter().all(|a| a.load(Ordering::Acquire) >= v)
    }
}

/// A running tee: its settings and its writer thread.
#[derive(Debug)]
struct Running {
    settings: TeeSettings,
    stop: Arc<AtomicBool>,
    writer: Option<JoinHandle<()>>,
    /// Set by the writer when it has ended (expired, error, or stopped).
    ended: Arc<AtomicBool>,
}

/// What the writer thread owns.
struct Writer {
    rotation: Rotation,
    cores: Vec<(Consumer<PktBuf>, Producer<PktBuf>)>,
    pool: Arc<Pool>,
    link: Arc<Link>,
    stop: Arc<AtomicBool>,
    process_stop: Arc<AtomicBool>,
    rx_gone: Arc<AtomicBool>,
    until_unix_ns: Option<u64>,
    ended: Arc<AtomicBool>,
    error: Arc<Mutex<Option<String>>>,
}

/// How long the writer waits for the rx cores to let go of their tee at stop.
const ACK_WAIT: Duration = Duration::from_secs(1);

impl Writer {
    /// Write out everything queued now; returns how many copies.
    fn drain(&mut self) -> std::io::Result<usize> {
        let mut n = 0;
        for (full, free) in &mut self.cores {
            while let Some(buf) = full.pop() {
                let r = self.rotation.write(self.pool.bytes(&buf));
                // As many free slots as buffers: the push cannot fail.
                let _ = free.push(buf);
                r?;
                n += 1;
            }
        }
        Ok(n)
    }

    fn run(mut self) {
        let result = self.run_inner();
        if let Err(e) = result.and_then(|()| self.rotation.finish()) {
            tracing::error!("tee stopped: {e}");
            if let Ok(mut g) = self.error.lock() {
                *g = Some(e.to_string());
            }
            // The rx cores let go of their tees; copies still queued are counted lost
            // only in the sense that they are never written.
            self.link.install(Vec::new());
        }
        self.ended.store(true, Ordering::Release);
    }

    fn run_inner(&mut self) -> std::io::Result<()> {
        let mut idle_rounds = 0u32;
        loop {
            let n = self.drain()?;
            if self.stop.load(Ordering::Acquire) || self.process_stop.load(Ordering::Relaxed) {
                break;
            }
            if self.until_unix_ns.is_some_and(|u| unix_now_ns() >= u) {
                tracing::info!("tee duration over: stopping");
                self.link.install(Vec::new());
                break;
            }
            if n == 0 {
                idle_rounds = idle_rounds.saturating_add(1);
                if idle_rounds == 50 {
                    self.rotation.flush()?;
                }
                std::thread::sleep(Duration::from_millis(2));
            } else {
                idle_rounds = 0;
            }
        }
        // The rx cores hold their tees until their next burst: wait for them (not at
        // process stop: they have left their loops), then write what they queued.
        let v = self.link.version.load(Ordering::Acquire);
        let t0 = std::time::Instant::now();
        while !self.process_stop.load(Ordering::Relaxed)
            && !self.rx_gone.load(Ordering::Acquire)
            && !self.link.all_acked(v)
            && t0.elapsed() < ACK_WAIT
        {
            self.drain()?;
            std::thread::sleep(Duration::from_millis(1));
        }
        self.drain()?;
        Ok(())
    }
}

fn unix_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The dataplane's tee control: starts and stops tees, hands the rx cores their ends,
/// and reports. Lives in `DataplaneState`.
#[derive(Debug)]
pub struct TeeHub {
    config: TeeConfig,
    ports: Vec<String>,
    link: Arc<Link>,
    cores: Vec<Arc<CoreCounters>>,
    writer_counters: Arc<WriterCounters>,
    current_file: Arc<Mutex<Option<String>>>,
    error: Arc<Mutex<Option<String>>>,
    running: Mutex<Option<Running>>,
    process_stop: Arc<AtomicBool>,
    /// The rx loops have ended (nobody will acknowledge a stop).
    rx_gone: Arc<AtomicBool>,
}

impl TeeHub {
    /// A hub for `rx_cores` rx cores under `cfg` (`[tee]`, and the port for the interface
    /// names); nothing runs until a start.
    pub fn new(cfg: &Config, rx_cores: usize, process_stop: Arc<AtomicBool>) -> TeeHub {
        let n = rx_cores.max(1);
        TeeHub {
            config: cfg.tee.clone(),
            ports: port_names(cfg.port.as_ref()),
            link: Arc::new(Link {
                slots: (0..n).map(|_| Mutex::new(None)).collect(),
                version: AtomicU64::new(0),
                acked: (0..n).map(|_| AtomicU64::new(0)).collect(),
            }),
            cores: (0..n).map(|_| Arc::new(CoreCounters::default())).collect(),
            writer_counters: Arc::new(WriterCounters::default()),
            current_file: Arc::new(Mutex::new(None)),
            error: Arc::new(Mutex::new(None)),
            running: Mutex::new(None),
            process_stop,
            rx_gone: Arc::new(AtomicBool::new(false)),
        }
    }

    /// `[tee]` as configured.
    pub fn config(&self) -> &TeeConfig {
        &self.config
    }

    /// The version rx cores compare once per burst.
    #[inline]
    pub fn version(&self) -> u64 {
        self.link.version.load(Ordering::Acquire)
    }

    /// For rx core `index` whose version is behind: swap its tee with the pending one
    /// (never waits: a busy lock is retried at the next burst). Returns the version now
    /// held, or `None` to retry.
    pub fn pick_up(&self, index: usize, tee: &mut Option<Box<dyn Tee>>) -> Option<u64> {
        let v = self.link.version.load(Ordering::Acquire);
        let slot = self.link.slots.get(index)?;
        let mut g = slot.try_lock().ok()?;
        std::mem::swap(&mut *g, tee);
        drop(g);
        if let Some(a) = self.link.acked.get(index) {
            a.store(v, Ordering::Release);
        }
        Some(v)
    }

    /// Start with `[tee]`'s own settings when `enabled` (weir-dp run, at start).
    pub fn start_from_config(&self) -> Result<(), String> {
        if !self.config.enabled {
            return Ok(());
        }
        let s = TeeSettings::from_config(&self.config)?;
        self.start(s).map_err(|e| e.to_string())
    }

    /// Follow weir-cp's order (from a policy snapshot); an order that is the running one
    /// changes nothing. A bad order is refused before anything changes.
    pub fn follow(&self, order: &TeeOrder) -> Result<(), String> {
        let wanted = match order {
            TeeOrder::Config => {
                if self.config.enabled {
                    Some(TeeSettings::from_config(&self.config)?)
                } else {
                    None
                }
            }
            TeeOrder::Stop => None,
            TeeOrder::Start(spec) => {
                let s = TeeSettings::from_spec(spec, &self.config)?;
                // A start whose end has passed (pushed again after it expired) is a stop.
                s.until_unix_ns
                    .is_none_or(|u| unix_now_ns() < u)
                    .then_some(s)
            }
        };
        let current = self.running_settings();
        match (wanted, current) {
            (None, None) => Ok(()),
            (None, Some(_)) => {
                self.stop();
                Ok(())
            }
            (Some(w), Some((c, ended))) if w.serial == c.serial && (ended || w == c) => Ok(()),
            (Some(w), _) => self.start(w).map_err(|e| e.to_string()),
        }
    }

    fn running_settings(&self) -> Option<(TeeSettings, bool)> {
        let g = self.running.lock().ok()?;
        g.as_ref()
            .map(|r| (r.settings.clone(), r.ended.load(Ordering::Acquire)))
    }

    /// Start a tee (stopping the one running first; the lock is held throughout, so two
    /// control connections cannot leave two writers).
    pub fn start(&self, settings: TeeSettings) -> std::io::Result<()> {
        let Ok(mut running) = self.running.lock() else {
            return Err(std::io::Error::other("tee state poisoned"));
        };
        self.stop_locked(&mut running);
        if let Ok(mut e) = self.error.lock() {
            *e = None;
        }
        let rotation = Rotation::new(
            &self.config.dir,
            self.config.file_bytes,
            self.config.files,
            self.ports.clone(),
            settings.snaplen,
            Arc::clone(&self.writer_counters),
            Arc::clone(&self.current_file),
        )
        .map_err(|e| {
            let e = std::io::Error::other(format!("tee dir {}: {e}", self.config.dir.display()));
            if let Ok(mut g) = self.error.lock() {
                *g = Some(e.to_string());
            }
            e
        })?;
        let per_core = self.config.ring.max(1).next_power_of_two();
        let n = self.cores.len();
        let (pool, mut bufs) = Pool::new(per_core.saturating_mul(n as u32));
        let mut tees: Vec<Option<Box<dyn Tee>>> = Vec::with_capacity(n);
        let mut ends = Vec::with_capacity(n);
        for (i, counters) in self.cores.iter().enumerate() {
            let (mut free_tx, free_rx) = ring::<PktBuf>(per_core as usize);
            let (full_tx, full_rx) = ring::<PktBuf>(per_core as usize);
            for _ in 0..per_core {
                if let Some(b) = bufs.pop() {
                    let _ = free_tx.push(b);
                }
            }
            tees.push(Some(Box::new(LiveTee {
                filter: settings.filter,
                sample: settings.sample.max(1),
                countdown: 1,
                rate_per_core: settings.rate_per_core,
                window_start_ns: 0,
                in_window: 0,
                snaplen: (settings.snaplen as usize).min(BUF_SIZE - RECORD_HEADER),
                rx: u16::try_from(i).unwrap_or(u16::MAX),
                pool: Arc::clone(&pool),
                free: free_rx,
                full: full_tx,
                counters: Arc::clone(counters),
            })));
            ends.push((full_rx, free_tx));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let ended = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            rotation,
            cores: ends,
            pool,
            link: Arc::clone(&self.link),
            stop: Arc::clone(&stop),
            process_stop: Arc::clone(&self.process_stop),
            rx_gone: Arc::clone(&self.rx_gone),
            until_unix_ns: settings.until_unix_ns,
            ended: Arc::clone(&ended),
            error: Arc::clone(&self.error),
        };
        let handle = std::thread::Builder::new()
            .name("weir-tee".into())
            .spawn(move || writer.run())?;
        tracing::info!(filter = %settings.filter, sample = settings.sample, rate_per_core = settings.rate_per_core, snaplen = settings.snaplen, dir = %self.config.dir.display(), "tee started");
        self.link.install(tees);
        *running = Some(Running {
            settings,
            stop,
            writer: Some(handle),
            ended,
        });
        Ok(())
    }

    /// Stop the running tee, if any: the rx cores let go at their next burst, the writer
    /// writes what they queued and closes its file.
    pub fn stop(&self) {
        if let Ok(mut running) = self.running.lock() {
            self.stop_locked(&mut running);
        }
    }

    fn stop_locked(&self, running: &mut Option<Running>) {
        let Some(mut r) = running.take() else {
            return;
        };
        self.link.install(Vec::new());
        r.stop.store(true, Ordering::Release);
        if let Some(h) = r.writer.take() {
            let _ = h.join();
        }
        tracing::info!("tee stopped");
    }

    /// The rx loops have ended: stop without waiting for them, writing what they queued.
    pub fn finish_run(&self) {
        self.rx_gone.store(true, Ordering::Release);
        self.stop();
    }

    /// The tee as `weirctl tee status` shows it.
    pub fn status(&self) -> TeeStatus {
        let mut s = TeeStatus {
            dir: self.config.dir.display().to_string(),
            ..TeeStatus::default()
        };
        if let Some((settings, ended)) = self.running_settings() {
            s.active = !ended;
            s.filter = settings.filter.to_string();
            s.sample = settings.sample;
            s.rate_per_core = settings.rate_per_core;
            s.snaplen = settings.snaplen;
            s.until_unix_ns = settings.until_unix_ns;
        }
        for c in &self.cores {
            s.teed += c.teed.load(Ordering::Relaxed);
            s.dropped += c.dropped.load(Ordering::Relaxed);
            s.sampled_out += c.sampled_out.load(Ordering::Relaxed);
            s.rate_capped += c.rate_capped.load(Ordering::Relaxed);
        }
        let w = &self.writer_counters;
        s.written = w.written.load(Ordering::Relaxed);
        s.files = w.files.load(Ordering::Relaxed);
        s.bytes = w.bytes.load(Ordering::Relaxed);
        s.file = self.current_file.lock().ok().and_then(|g| g.clone());
        s.error = self.error.lock().ok().and_then(|g| g.clone());
        s
    }
}

impl Drop for TeeHub {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The pcapng interface names of the port: one per device, in `[port] devices` order for
/// DPDK (a frame's [`RecordHeader::port`] is its place there).
fn port_names(port: Option<&PortConfig>) -> Vec<String> {
    match port {
        Some(PortConfig::Tap { name, .. }) => vec![format!("tap:{name}")],
        Some(PortConfig::Dpdk(d)) if !d.devices.is_empty() => {
            d.devices.iter().map(|dev| format!("dpdk:{dev}")).collect()
        }
        Some(PortConfig::Dpdk(_)) => vec!["dpdk".into()],
        Some(PortConfig::Pcap { path, .. }) => vec![format!("pcap:{}", path.display())],
        None => vec!["port0".into()],
    }
}

#[cfg(test)]
mod tests;
