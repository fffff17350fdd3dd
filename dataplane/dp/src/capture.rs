//! Reading captures: pcap and pcapng, as a stream of (timestamp, frame) records.
//!
//! The format is told by the magic number, not the file name. Timestamps are unix
//! nanoseconds: pcap's microsecond or nanosecond resolution comes from its magic, and
//! pcapng's from each interface's `if_tsresol` option (default 10^-6), which `pcap-file`
//! 2.0 does not apply itself: it hands the raw 64-bit count back as if it were
//! nanoseconds, so it is rescaled here. Only Ethernet link types are accepted.
//!
//! The reader streams through `pcap-file`'s own fixed read buffer: memory stays bounded
//! whatever the file size (a record longer than that buffer is reported as corrupt).
//! Classic pcap records are read raw (`next_raw_packet`): the timestamp is computed here
//! in integers instead of through a `Duration`, which measurably shortens the per-record
//! path, and no check that matters is skipped (the record length is bounded by the read
//! buffer; `orig_len` is informational).

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::{DataLink, TsResolution};

/// A capture error, with the file it is about.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The file cannot be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error the operating system gave.
        source: std::io::Error,
    },
    /// The file is neither pcap nor pcapng.
    #[error("{path}: not a pcap or pcapng file (magic {magic:02x?})")]
    NotCapture {
        /// The file.
        path: String,
        /// Its first bytes.
        magic: Vec<u8>,
    },
    /// The link type is not Ethernet.
    #[error("{path}: link type {link:?} is not supported (Ethernet only)")]
    LinkType {
        /// The file.
        path: String,
        /// The link type found.
        link: DataLink,
    },
    /// The file is corrupt (a file cut short is not an error: see `Capture::cut_short`).
    #[error("{path}: corrupt capture after {records} records: {source}")]
    Corrupt {
        /// The file.
        path: String,
        /// Records read before the error.
        records: u64,
        /// What the pcap reader reported.
        source: pcap_file::PcapError,
    },
}

/// Counts bytes read, for a progress bar.
#[derive(Debug)]
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

type Input = Counting<File>;

enum Inner {
    Pcap {
        reader: PcapReader<Input>,
        /// Nanoseconds per unit of the fractional timestamp (1000 for microsecond pcap).
        frac_ns: u64,
    },
    PcapNg {
        reader: PcapNgReader<Input>,
        /// Per interface: (numerator, denominator) turning raw units into nanoseconds.
        scales: Vec<(u128, u128)>,
    },
}

/// A capture file opened for reading.
pub struct Capture {
    path: String,
    inner: Inner,
    records: u64,
    /// The file ended in the middle of a record (a capture cut short).
    cut_short: bool,
    /// Bytes of the file read so far.
    pub progress: Arc<AtomicU64>,
    /// File size in bytes.
    pub size: u64,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("path", &self.path)
            .field("records", &self.records)
            .finish()
    }
}

/// One frame of a capture.
#[derive(Debug)]
pub struct Record<'a> {
    /// Unix time in nanoseconds.
    pub ts_ns: u64,
    /// The captured bytes.
    pub data: &'a [u8],
    /// The frame's length on the wire.
    pub orig_len: u32,
}

fn tsresol_scale(resol: u8) -> (u128, u128) {
    let exp = u32::from(resol & 0x7f);
    let denom = if resol & 0x80 == 0 {
        10u128.checked_pow(exp)
    } else {
        2u128.checked_pow(exp)
    };
    (1_000_000_000, denom.unwrap_or(u128::MAX).max(1))
}

impl Capture {
    /// Open a pcap or pcapng file.
    pub fn open(path: &Path) -> Result<Capture, CaptureError> {
        let name = path.display().to_string();
        let io = |source| CaptureError::Io {
            path: name.clone(),
            source,
        };
        let mut file = File::open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        let mut magic = [0u8; 4];
        let got = file.read(&mut magic).map_err(io)?;
        drop(file);
        let file = File::open(path).map_err(io)?;
        let progress = Arc::new(AtomicU64::new(0));
        let input = Counting {
            inner: file,
            read: Arc::clone(&progress),
        };
        let corrupt = |source| CaptureError::Corrupt {
            path: name.clone(),
            records: 0,
            source,
        };
        let inner = match magic {
            [0xd4, 0xc3, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0xc3, 0xd4]
            | [0x4d, 0x3c, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0x3c, 0x4d]
                if got == 4 =>
            {
                let reader = PcapReader::new(input).map_err(corrupt)?;
                let header = reader.header();
                if header.datalink != DataLink::ETHERNET {
                    return Err(CaptureError::LinkType {
                        path: name,
                        link: header.datalink,
                    });
                }
                let frac_ns = match header.ts_resolution {
                    TsResolution::MicroSecond => 1000,
                    TsResolution::NanoSecond => 1,
                };
                Inner::Pcap { reader, frac_ns }
            }
            [0x0a, 0x0d, 0x0d, 0x0a] if got == 4 => Inner::PcapNg {
                reader: PcapNgReader::new(input).map_err(corrupt)?,
                scales: Vec::new(),
            },
            _ => {
                return Err(CaptureError::NotCapture {
                    path: name,
                    magic: magic[..got].to_vec(),
                })
            }
        };
        Ok(Capture {
            path: name,
            inner,
            records: 0,
            cut_short: false,
            progress,
            size,
        })
    }

    /// The file's name as given.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Call `f` for every frame, in order; the number of frames.
    pub fn for_each(&mut self, mut f: impl FnMut(Record<'_>)) -> Result<u64, CaptureError> {
        let mut n = 0;
        loop {
            match self.next_records(usize::MAX, &mut f)? {
                0 => return Ok(n),
                k => n += k as u64,
            }
        }
    }

    /// Frames read so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Whether the file ended in the middle of a record: what came before was read, as
    /// tshark does, and the caller says so (weir-dp replay warns and exits with 2).
    pub fn cut_short(&self) -> bool {
        self.cut_short
    }

    /// Call `f` for up to `max` more frames, in order; how many there were (0 at the end).
    pub fn next_records(
        &mut self,
        max: usize,
        mut f: impl FnMut(Record<'_>),
    ) -> Result<usize, CaptureError> {
        if self.cut_short {
            return Ok(0);
        }
        let path = &self.path;
        let records = &mut self.records;
        let cut_short = &mut self.cut_short;
        // The end of the file inside a record is a capture cut short, not a corrupt one.
        let mut corrupt = |records, source: pcap_file::PcapError| {
            let eof = match &source {
                pcap_file::PcapError::IncompleteBuffer => true,
                pcap_file::PcapError::IoError(e) => e.kind() == std::io::ErrorKind::UnexpectedEof,
                _ => false,
            };
            if eof {
                *cut_short = true;
                None
            } else {
                Some(CaptureError::Corrupt {
                    path: path.clone(),
                    records,
                    source,
                })
            }
        };
        let mut n = 0;
        match &mut self.inner {
            Inner::Pcap { reader, frac_ns } => {
                let frac_ns = *frac_ns;
                while n < max {
                    let Some(p) = reader.next_raw_packet() else {
                        break;
                    };
                    let p = match p {
                        Ok(p) => p,
                        Err(e) => match corrupt(*records, e) {
                            Some(e) => return Err(e),
                            None => break,
                        },
                    };
                    *records += 1;
                    n += 1;
                    f(Record {
                        ts_ns: u64::from(p.ts_sec) * 1_000_000_000 + u64::from(p.ts_frac) * frac_ns,
                        data: &p.data,
                        orig_len: p.orig_len,
                    });
                }
            }
            Inner::PcapNg { reader, scales } => {
                while n < max {
                    let Some(b) = reader.next_block() else {
                        break;
                    };
                    let b = match b {
                        Ok(b) => b,
                        Err(e) => match corrupt(*records, e) {
                            Some(e) => return Err(e),
                            None => break,
                        },
                    };
                    match b {
                        Block::InterfaceDescription(idb) => {
                            if idb.linktype != DataLink::ETHERNET {
                                return Err(CaptureError::LinkType {
                                    path: path.clone(),
                                    link: idb.linktype,
                                });
                            }
                            let resol = idb
                                .options
                                .iter()
                                .find_map(|o| match o {
                                    InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
                                    _ => None,
                                })
                                .unwrap_or(6);
                            scales.push(tsresol_scale(resol));
                        }
                        Block::EnhancedPacket(epb) => {
                            *records += 1;
                            n += 1;
                            let (num, den) = scales
                                .get(epb.interface_id as usize)
                                .copied()
                                .unwrap_or((1000, 1));
                            let raw = epb.timestamp.as_nanos();
                            let ns = raw.saturating_mul(num) / den;
                            f(Record {
                                ts_ns: u64::try_from(ns).unwrap_or(u64::MAX),
                                data: &epb.data,
                                orig_len: epb.original_len,
                            });
                        }
                        Block::SimplePacket(spb) => {
                            *records += 1;
                            n += 1;
                            f(Record {
                                ts_ns: 0,
                                data: &spb.data,
                                orig_len: spb.original_len,
                            });
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsresol_scales() {
        assert_eq!(tsresol_scale(6), (1_000_000_000, 1_000_000));
        assert_eq!(tsresol_scale(9), (1_000_000_000, 1_000_000_000));
        assert_eq!(tsresol_scale(0x80 | 10), (1_000_000_000, 1024));
        assert_eq!(tsresol_scale(0x7f).1, u128::MAX);
    }
}
