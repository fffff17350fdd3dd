//! Captures as ports.
//!
//! - [`CaptureReplay`] (`weir-dp replay`): pcap/pcapng files read in order, one burst of
//!   records at a time; each frame carries its capture time, which is the replay's clock
//!   (rate buckets, time windows and flow expiry follow the capture, so verdicts repeat
//!   exactly). It sends nothing: a capture has no peer.
//! - [`CaptureLoop`] (`[port] kind = "pcap"` of `weir-dp run`): a capture held in memory
//!   and replayed as a live source on the dataplane's own clock, optionally looped and
//!   paced to `pps`.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::capture::{Capture, CaptureError, Link};
use crate::pool::{Lengths, Pool};
use crate::port::{Port, PortError, RxStatus, Sent, SoftFrame, BURST};

/// Largest capture a [`CaptureLoop`] loads (it is held in memory to loop over it).
pub const MAX_PORT_CAPTURE: u64 = 256 << 20;

/// One input file of a replay, as reported.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileReport {
    /// Path.
    pub path: String,
    /// Frames.
    pub packets: u64,
    /// The file ended in the middle of a record; the frames before it were replayed.
    pub cut_short: bool,
}

/// Capture files replayed in order, as if captured back to back.
#[derive(Debug)]
pub struct CaptureReplay {
    files: Vec<Capture>,
    current: usize,
    done: Vec<FileReport>,
    sent: Sent,
    progress: Option<indicatif::ProgressBar>,
    done_bytes: u64,
    since_tick: u32,
}

impl CaptureReplay {
    /// Open every file first: a missing or unreadable one fails before any work.
    pub fn open(paths: &[impl AsRef<Path>]) -> Result<CaptureReplay, CaptureError> {
        let files = paths
            .iter()
            .map(|p| Capture::open(p.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CaptureReplay {
            files,
            current: 0,
            done: Vec::new(),
            sent: Sent::default(),
            progress: None,
            done_bytes: 0,
            since_tick: 0,
        })
    }

    /// Total size of the files, bytes.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|c| c.size).sum()
    }

    /// Move `bar` along as the files are read (bytes).
    pub fn with_progress(mut self, bar: indicatif::ProgressBar) -> CaptureReplay {
        self.progress = Some(bar);
        self
    }

    /// The files read to their end so far, with their frame counts.
    pub fn files(&self) -> &[FileReport] {
        &self.done
    }

    fn tick(&mut self) {
        if let (Some(bar), Some(cap)) = (&self.progress, self.files.get(self.current)) {
            bar.set_position(
                self.done_bytes + cap.progress.load(std::sync::atomic::Ordering::Relaxed),
            );
        }
    }
}

impl Port for CaptureReplay {
    type Backing = Lengths;
    type Frame<'a> = SoftFrame<'a>;
    const CAPTURE_CLOCK: bool = true;

    #[inline]
    fn rx_burst<F>(&mut self, mut f: F) -> Result<RxStatus, PortError>
    where
        F: for<'a> FnMut(SoftFrame<'a>),
    {
        loop {
            let Some(cap) = self.files.get_mut(self.current) else {
                if let Some(bar) = self.progress.take() {
                    bar.finish_and_clear();
                }
                return Ok(RxStatus::Ended);
            };
            let n = cap.next_records(
                BURST,
                #[inline(always)]
                |r| {
                    f(SoftFrame {
                        data: r.data,
                        wire_len: r.orig_len,
                        capture_ns: Some(r.ts_ns),
                        link: r.link,
                    });
                },
            )?;
            if n > 0 {
                self.since_tick += 1;
                if self.since_tick == 128 {
                    self.since_tick = 0;
                    self.tick();
                }
                return Ok(RxStatus::Frames(n));
            }
            if cap.cut_short() {
                tracing::warn!(
                    file = cap.path(),
                    records = cap.records(),
                    "the capture was cut short in the middle of a record; the frames before it were replayed"
                );
            }
            self.done.push(FileReport {
                path: cap.path().to_string(),
                packets: cap.records(),
                cut_short: cap.cut_short(),
            });
            self.done_bytes += cap.size;
            self.current += 1;
        }
    }

    fn send(&mut self, _frame: &[u8]) {
        self.sent.failed += 1;
    }

    fn sent(&self) -> Sent {
        self.sent
    }
}

/// A capture replayed as a live port: its frames in order, looped and paced on request.
#[derive(Debug)]
pub struct CaptureLoop {
    frames: Vec<Vec<u8>>,
    next: usize,
    looped: bool,
    pps: u64,
    received: u64,
    start: Instant,
    sent: Sent,
}

impl CaptureLoop {
    /// Load `path` (at most [`MAX_PORT_CAPTURE`] bytes).
    pub fn open(path: &Path, looped: bool, pps: u64) -> Result<CaptureLoop, PortLoadError> {
        let size = std::fs::metadata(path)
            .map_err(|source| PortLoadError::Io {
                path: path.display().to_string(),
                source,
            })?
            .len();
        if size > MAX_PORT_CAPTURE {
            return Err(PortLoadError::TooLarge {
                path: path.display().to_string(),
                size,
            });
        }
        let mut frames = Vec::new();
        let mut other_link = None;
        Capture::open(path)?.for_each(|r| {
            if r.link == Link::Ethernet {
                frames.push(r.data.to_vec());
            } else {
                other_link = Some(r.link);
            }
        })?;
        if let Some(link) = other_link {
            return Err(PortLoadError::NotEthernet {
                path: path.display().to_string(),
                link,
            });
        }
        if frames.is_empty() {
            return Err(PortLoadError::Empty {
                path: path.display().to_string(),
            });
        }
        Ok(CaptureLoop {
            frames,
            next: 0,
            looped,
            pps,
            received: 0,
            start: Instant::now(),
            sent: Sent::default(),
        })
    }
}

/// Why a capture could not become a live port.
#[derive(Debug, thiserror::Error)]
pub enum PortLoadError {
    /// The file cannot be read.
    #[error("[port] {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error the operating system gave.
        source: std::io::Error,
    },
    /// The file is too large to hold in memory.
    #[error("[port] {path} is {size} bytes; a pcap port holds at most {MAX_PORT_CAPTURE} (use `weir-dp replay` for large captures)")]
    TooLarge {
        /// The file.
        path: String,
        /// Its size.
        size: u64,
    },
    /// A live source sends what it reads onto a link: it must be Ethernet.
    #[error("[port] {path} holds {link:?} frames; a pcap port replays Ethernet captures (use `weir-dp replay` for others)")]
    NotEthernet {
        /// The file.
        path: String,
        /// The link type found.
        link: Link,
    },
    /// The file holds no frames.
    #[error("[port] {path} holds no frames")]
    Empty {
        /// The file.
        path: String,
    },
    /// The capture is unreadable.
    #[error(transparent)]
    Capture(#[from] CaptureError),
}

impl Port for CaptureLoop {
    type Backing = Pool;
    type Frame<'a> = SoftFrame<'a>;

    fn rx_burst<F>(&mut self, mut f: F) -> Result<RxStatus, PortError>
    where
        F: for<'a> FnMut(SoftFrame<'a>),
    {
        let mut n = 0;
        while n < BURST {
            if self.next >= self.frames.len() {
                if !self.looped {
                    return Ok(if n == 0 {
                        RxStatus::Ended
                    } else {
                        RxStatus::Frames(n)
                    });
                }
                self.next = 0;
            }
            let Some(frame) = self.frames.get(self.next) else {
                break;
            };
            self.next += 1;
            n += 1;
            f(SoftFrame {
                data: frame,
                wire_len: u32::try_from(frame.len()).unwrap_or(u32::MAX),
                capture_ns: None,
                link: Link::Ethernet,
            });
        }
        self.received += n as u64;
        // Pace (pps > 0): the frames received so far are due at received / pps seconds.
        if let Some(due_ns) = self
            .received
            .saturating_mul(1_000_000_000)
            .checked_div(self.pps)
        {
            if let Some(wait) = Duration::from_nanos(due_ns).checked_sub(self.start.elapsed()) {
                std::thread::sleep(wait.min(Duration::from_millis(50)));
            }
        }
        Ok(RxStatus::Frames(n))
    }

    fn send(&mut self, _frame: &[u8]) {
        self.sent.failed += 1;
    }

    fn sent(&self) -> Sent {
        self.sent
    }
}
