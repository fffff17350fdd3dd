//! Reading captures: pcap and pcapng, from files, compressed files or standard input, as a
//! stream of records lent out of one large buffer.
//!
//! **Formats.** The format is told by the magic number, never by the file name: classic
//! pcap in either byte order with microsecond or nanosecond timestamps, and pcapng with
//! any number of sections (each with its own byte order) and interfaces (each with its own
//! link type, snap length, `if_tsresol` and `if_tsoffset`). gzip (`.gz`) and zstd (`.zst`)
//! are recognised by their magic and decompressed on the fly; `-` is standard input
//! (`tcpdump -w - … | weir-dp replay -`).
//!
//! **Link types.** Ethernet (1), raw IP (101, and 228/229 for IPv4/IPv6 only), Linux
//! cooked SLL (113) and SLL2 (276), BSD NULL (0) and LOOP (108). Each record says which
//! it is ([`Record::link`]); [`Link::network`] finds the IP packet inside so that the
//! classifier sees the same packet whatever the encapsulation.
//!
//! **Snap lengths.** A record carries both lengths: `data` as captured and `orig_len` as it
//! was on the wire; a capture cut with `-s 96` keeps `orig_len` > `data.len()`.
//!
//! **Speed.** Records are parsed here, in integers, out of a 1 MiB buffer refilled with
//! large reads, and lent as slices: no per-record read call, no copy, no allocation.
//! (`pcap-file` 2's reader cost ~110 instructions per record on the replay path and
//! knows neither compression nor most link types; it is still used to *write* captures.)
//!
//! **Bad input.** A record or block larger than [`MAX_RECORD`], a block length that is not
//! a multiple of 4, an unknown link type: `CaptureError`, naming the file and how many
//! records came before. The end of the input inside a record is not an error: the
//! capture was cut short ([`Capture::cut_short`]), as tshark reports it.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Largest record (or pcapng block) accepted: 16 MiB. A capture that claims more is
/// corrupt, and the buffer never grows beyond this.
pub const MAX_RECORD: usize = 16 << 20;
/// Bytes read from the source at a time.
const READ_CHUNK: usize = 1 << 20;

/// A link type weir reads (the LINKTYPE_ numbers of pcap and pcapng).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Link {
    /// 1: Ethernet.
    Ethernet,
    /// 101: raw IPv4 or IPv6 (by the version nibble).
    Raw,
    /// 228: raw IPv4.
    Ipv4,
    /// 229: raw IPv6.
    Ipv6,
    /// 113: Linux cooked capture v1 (`tcpdump -i any`, older).
    LinuxSll,
    /// 276: Linux cooked capture v2 (`tcpdump -i any`).
    LinuxSll2,
    /// 0: BSD loopback, host-order address family.
    Null,
    /// 108: OpenBSD loopback, network-order address family.
    Loop,
}

impl Link {
    /// The link type for a LINKTYPE_ number.
    pub fn from_number(n: u32) -> Option<Link> {
        Some(match n {
            1 => Link::Ethernet,
            101 => Link::Raw,
            228 => Link::Ipv4,
            229 => Link::Ipv6,
            113 => Link::LinuxSll,
            276 => Link::LinuxSll2,
            0 => Link::Null,
            108 => Link::Loop,
            _ => return None,
        })
    }

    /// The LINKTYPE_ number.
    pub fn number(self) -> u32 {
        match self {
            Link::Ethernet => 1,
            Link::Raw => 101,
            Link::Ipv4 => 228,
            Link::Ipv6 => 229,
            Link::LinuxSll => 113,
            Link::LinuxSll2 => 276,
            Link::Null => 0,
            Link::Loop => 108,
        }
    }

    /// A short name for file names and reports: `ethernet`, `raw`, `ipv4`, `ipv6`,
    /// `linux-sll`, `linux-sll2`, `null`, `loop`.
    pub const fn name(self) -> &'static str {
        match self {
            Link::Ethernet => "ethernet",
            Link::Raw => "raw",
            Link::Ipv4 => "ipv4",
            Link::Ipv6 => "ipv6",
            Link::LinuxSll => "linux-sll",
            Link::LinuxSll2 => "linux-sll2",
            Link::Null => "null",
            Link::Loop => "loop",
        }
    }

    /// What the classifier is handed for a frame of this link type: `None` for Ethernet
    /// (it parses the Ethernet header itself); otherwise [`Link::network`], with a link
    /// header too short to name its packet giving an empty IPv6 packet, so that the frame
    /// is malformed.
    #[inline(always)]
    pub fn packet_of(self, frame: &[u8]) -> Option<(u16, usize)> {
        if self == Link::Ethernet {
            return None;
        }
        self.packet_of_cold(frame)
    }

    #[cold]
    #[inline(never)]
    fn packet_of_cold(self, frame: &[u8]) -> Option<(u16, usize)> {
        Some(self.network(frame).unwrap_or((0x86dd, frame.len())))
    }

    /// For a frame of this link type: the EtherType of what it carries and where that
    /// starts. `None` for an Ethernet frame (the classifier parses the Ethernet header
    /// itself, VLAN tags included) and for a header too short to say.
    pub fn network(self, frame: &[u8]) -> Option<(u16, usize)> {
        const IPV4: u16 = 0x0800;
        const IPV6: u16 = 0x86dd;
        let be16 = |at: usize| -> Option<u16> {
            Some(u16::from_be_bytes(frame.get(at..at + 2)?.try_into().ok()?))
        };
        let by_version = || match frame.first().map(|b| b >> 4) {
            Some(4) => Some((IPV4, 0)),
            Some(6) => Some((IPV6, 0)),
            // Not IP: an EtherType that no rule names, so the verdict is
            // unsupported-protocol, and an empty packet is malformed.
            Some(_) => Some((0, 0)),
            None => Some((IPV6, 0)),
        };
        match self {
            Link::Ethernet => None,
            Link::Raw => by_version(),
            Link::Ipv4 => Some((IPV4, 0)),
            Link::Ipv6 => Some((IPV6, 0)),
            // SLL: packet type 2, ARPHRD 2, address length 2, address 8, protocol 2.
            Link::LinuxSll => Some((be16(14)?, 16)),
            // SLL2: protocol 2, reserved 2, ifindex 4, ARPHRD 2, packet type 1, address
            // length 1, address 8.
            Link::LinuxSll2 => Some((be16(0)?, 20)),
            // NULL / LOOP: a 4-byte address family (2 = IPv4; 24, 28, 30 = IPv6 on the
            // BSDs), host order for NULL, network order for LOOP.
            Link::Null | Link::Loop => {
                let raw: [u8; 4] = frame.get(..4)?.try_into().ok()?;
                let family = if self == Link::Loop {
                    u32::from_be_bytes(raw)
                } else if u32::from_le_bytes(raw) < 256 {
                    u32::from_le_bytes(raw)
                } else {
                    u32::from_be_bytes(raw)
                };
                let ty = match family {
                    2 => IPV4,
                    24 | 28 | 30 => IPV6,
                    _ => 0,
                };
                Some((ty, 4))
            }
        }
    }
}

/// A capture error, with the file it is about.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The file cannot be opened or read.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: String,
        /// The error the operating system gave.
        cause: io::Error,
    },
    /// The input is neither pcap nor pcapng (after decompression).
    #[error("{path}: not a pcap or pcapng capture (it starts with {magic:02x?})")]
    NotCapture {
        /// The file.
        path: String,
        /// Its first bytes.
        magic: Vec<u8>,
    },
    /// A link type weir does not read.
    #[error("{path}: link type {link} is not supported (Ethernet, raw IP, Linux SLL/SLL2, NULL/LOOP are)")]
    LinkType {
        /// The file.
        path: String,
        /// The LINKTYPE_ number found.
        link: u32,
    },
    /// The capture is corrupt.
    #[error("{path}: corrupt capture after {records} records: {what}")]
    Corrupt {
        /// The file.
        path: String,
        /// Records read before the problem.
        records: u64,
        /// What is wrong.
        what: String,
    },
}

/// One frame of a capture, lent out of the reader's buffer.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// Unix time in nanoseconds.
    pub ts_ns: u64,
    /// The captured bytes (possibly cut at the snap length).
    pub data: &'a [u8],
    /// The frame's length on the wire.
    pub orig_len: u32,
    /// Its link type.
    pub link: Link,
}

/// Counts bytes read from the underlying file, for a progress bar.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// One pcapng interface.
#[derive(Debug, Clone, Copy)]
struct Interface {
    link: Link,
    /// Nanoseconds = raw × num / den.
    num: u128,
    den: u128,
    /// Seconds added to every timestamp (`if_tsoffset`).
    offset_s: i64,
}

#[derive(Debug)]
enum Format {
    Pcap {
        big_endian: bool,
        /// Nanoseconds per unit of the fractional timestamp (1000 for microseconds).
        frac_ns: u64,
        link: Link,
    },
    PcapNg {
        big_endian: bool,
        interfaces: Vec<Interface>,
    },
}

/// A capture opened for reading.
pub struct Capture {
    path: String,
    source: Box<dyn Read + Send>,
    buf: Vec<u8>,
    /// Unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    eof: bool,
    format: Format,
    records: u64,
    cut_short: bool,
    /// Bytes of the file read so far (compressed bytes for a compressed file).
    pub progress: Arc<AtomicU64>,
    /// File size in bytes (0 for standard input).
    pub size: u64,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("path", &self.path)
            .field("records", &self.records)
            .field("format", &self.format)
            .finish()
    }
}

#[inline]
fn u16_at(b: &[u8], at: usize, be: bool) -> u16 {
    let raw = [b[at], b[at + 1]];
    if be {
        u16::from_be_bytes(raw)
    } else {
        u16::from_le_bytes(raw)
    }
}

#[inline]
fn u32_at(b: &[u8], at: usize, be: bool) -> u32 {
    let raw = [b[at], b[at + 1], b[at + 2], b[at + 3]];
    if be {
        u32::from_be_bytes(raw)
    } else {
        u32::from_le_bytes(raw)
    }
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

/// What `fill` found.
enum Fill {
    Ready,
    /// The input ended with fewer bytes than asked for (`have` of them).
    Ended {
        have: usize,
    },
}

impl Capture {
    /// Open a capture file (`-` = standard input), decompressing gzip and zstd.
    pub fn open(path: &Path) -> Result<Capture, CaptureError> {
        let name = path.display().to_string();
        let progress = Arc::new(AtomicU64::new(0));
        let io_err = |cause| CaptureError::Io {
            path: name.clone(),
            cause,
        };
        let (raw, size): (Box<dyn Read + Send>, u64) = if name == "-" {
            (Box::new(io::stdin()), 0)
        } else {
            let file = File::open(path).map_err(io_err)?;
            let size = file.metadata().map_err(io_err)?.len();
            (
                Box::new(Counting {
                    inner: file,
                    read: Arc::clone(&progress),
                }),
                size,
            )
        };
        let mut cap = Capture {
            path: name,
            source: raw,
            buf: vec![0; READ_CHUNK],
            start: 0,
            end: 0,
            eof: false,
            format: Format::Pcap {
                big_endian: false,
                frac_ns: 1000,
                link: Link::Ethernet,
            },
            records: 0,
            cut_short: false,
            progress,
            size,
        };
        // Compression, by magic.
        cap.fill(4)?;
        let head = cap.unread().to_vec();
        let source = std::mem::replace(&mut cap.source, Box::new(io::empty()));
        let buffered = io::Cursor::new(head.clone()).chain(source);
        if head.starts_with(&[0x1f, 0x8b]) {
            cap.source = Box::new(flate2::read::MultiGzDecoder::new(buffered));
            cap.reset();
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            let d =
                zstd::stream::read::Decoder::new(buffered).map_err(|cause| CaptureError::Io {
                    path: cap.path.clone(),
                    cause,
                })?;
            cap.source = Box::new(d);
            cap.reset();
        } else {
            cap.source = Box::new(buffered);
            cap.reset();
        }
        cap.read_header()?;
        Ok(cap)
    }

    fn reset(&mut self) {
        self.start = 0;
        self.end = 0;
        self.eof = false;
    }

    fn unread(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn corrupt(&self, what: impl Into<String>) -> CaptureError {
        CaptureError::Corrupt {
            path: self.path.clone(),
            records: self.records,
            what: what.into(),
        }
    }

    /// Make at least `need` unread bytes available (need ≤ MAX_RECORD + 32): a check
    /// inline, the refill out of line (once per megabyte).
    #[inline(always)]
    fn fill(&mut self, need: usize) -> Result<Fill, CaptureError> {
        if self.end - self.start >= need {
            return Ok(Fill::Ready);
        }
        self.refill(need)
    }

    #[cold]
    #[inline(never)]
    fn refill(&mut self, need: usize) -> Result<Fill, CaptureError> {
        if self.start + need > self.buf.len() {
            // Move what is left to the front; grow only for a record longer than the buffer.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if need > self.buf.len() {
                self.buf.resize(need.next_power_of_two(), 0);
            }
        }
        while self.end - self.start < need {
            if self.eof {
                return Ok(Fill::Ended {
                    have: self.end - self.start,
                });
            }
            let want = (self.buf.len() - self.end).min(READ_CHUNK.max(need));
            let n = loop {
                match self.source.read(&mut self.buf[self.end..self.end + want]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(cause) => {
                        return Err(CaptureError::Io {
                            path: self.path.clone(),
                            cause,
                        })
                    }
                }
            };
            if n == 0 {
                self.eof = true;
            }
            self.end += n;
        }
        Ok(Fill::Ready)
    }

    fn read_header(&mut self) -> Result<(), CaptureError> {
        let have = match self.fill(24)? {
            Fill::Ready => 24,
            Fill::Ended { have } => have,
        };
        let head: Vec<u8> = self.unread()[..have.min(24)].to_vec();
        let magic: [u8; 4] = match head.get(..4).and_then(|m| m.try_into().ok()) {
            Some(m) => m,
            None => {
                return Err(CaptureError::NotCapture {
                    path: self.path.clone(),
                    magic: head,
                })
            }
        };
        let pcap = match magic {
            [0xd4, 0xc3, 0xb2, 0xa1] => Some((false, 1000)),
            [0xa1, 0xb2, 0xc3, 0xd4] => Some((true, 1000)),
            [0x4d, 0x3c, 0xb2, 0xa1] => Some((false, 1)),
            [0xa1, 0xb2, 0x3c, 0x4d] => Some((true, 1)),
            _ => None,
        };
        if let Some((big_endian, frac_ns)) = pcap {
            if have < 24 {
                return Err(self.corrupt("the pcap file header is cut short"));
            }
            let number = u32_at(&head, 20, big_endian) & 0x0fff_ffff;
            let link = Link::from_number(number).ok_or(CaptureError::LinkType {
                path: self.path.clone(),
                link: number,
            })?;
            self.start += 24;
            self.format = Format::Pcap {
                big_endian,
                frac_ns,
                link,
            };
            return Ok(());
        }
        if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
            self.format = Format::PcapNg {
                big_endian: false,
                interfaces: Vec::new(),
            };
            return Ok(());
        }
        Err(CaptureError::NotCapture {
            path: self.path.clone(),
            magic: head[..head.len().min(8)].to_vec(),
        })
    }

    /// The file's name as given (`-` for standard input).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Frames read so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Whether the input ended in the middle of a record: what came before was read, as
    /// tshark does, and the caller says so (weir-dp replay warns and exits with 2).
    pub fn cut_short(&self) -> bool {
        self.cut_short
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

    /// Call `f` for up to `max` more frames, in order; how many there were (0 at the end).
    #[inline]
    pub fn next_records(
        &mut self,
        max: usize,
        mut f: impl FnMut(Record<'_>),
    ) -> Result<usize, CaptureError> {
        let mut n = 0;
        while n < max && !self.cut_short {
            if let Format::Pcap {
                big_endian,
                frac_ns,
                link,
            } = self.format
            {
                n += if big_endian {
                    self.pcap_run::<true>(max - n, frac_ns, link, &mut f)
                } else {
                    self.pcap_run::<false>(max - n, frac_ns, link, &mut f)
                };
                if n >= max {
                    break;
                }
            }
            let got = match self.format {
                Format::Pcap {
                    big_endian,
                    frac_ns,
                    link,
                } => self.pcap_record(big_endian, frac_ns, link, &mut f)?,
                Format::PcapNg { .. } => self.pcapng_block(&mut f)?,
            };
            match got {
                Step::Record => n += 1,
                Step::Other => {}
                Step::End => break,
            }
        }
        Ok(n)
    }

    /// Classic pcap records that lie wholly in the buffer, up to `max`, straight through:
    /// two bounds checks each and no refill, error or end handling (a record that is not
    /// wholly there, or is too long, is left to [`Capture::pcap_record`]). How many. The
    /// byte order is a parameter so that each order gets a loop without a branch on it.
    #[inline(always)]
    fn pcap_run<const BE: bool>(
        &mut self,
        max: usize,
        frac_ns: u64,
        link: Link,
        f: &mut impl FnMut(Record<'_>),
    ) -> usize {
        let buf = &self.buf[..self.end];
        let mut at = self.start;
        let mut n = 0;
        while n < max {
            let Some(h) = buf.get(at..at + 16) else {
                break;
            };
            let word = |i: usize| {
                let v = u32::from_le_bytes([h[4 * i], h[4 * i + 1], h[4 * i + 2], h[4 * i + 3]]);
                if BE {
                    v.swap_bytes()
                } else {
                    v
                }
            };
            let incl = word(2) as usize;
            if incl > MAX_RECORD {
                break;
            }
            let Some(data) = buf.get(at + 16..at + 16 + incl) else {
                break;
            };
            f(Record {
                ts_ns: u64::from(word(0)) * 1_000_000_000 + u64::from(word(1)) * frac_ns,
                data,
                orig_len: word(3).max(incl as u32),
                link,
            });
            at += 16 + incl;
            n += 1;
        }
        self.start = at;
        self.records += n as u64;
        n
    }

    /// One classic pcap record.
    #[inline(always)]
    fn pcap_record(
        &mut self,
        be: bool,
        frac_ns: u64,
        link: Link,
        f: &mut impl FnMut(Record<'_>),
    ) -> Result<Step, CaptureError> {
        match self.fill(16)? {
            Fill::Ready => {}
            Fill::Ended { have: 0 } => return Ok(Step::End),
            Fill::Ended { .. } => return Ok(self.cut()),
        }
        // One 16-byte read, one byte-order decision.
        let h: [u8; 16] = self.buf[self.start..self.start + 16]
            .try_into()
            .unwrap_or([0; 16]);
        let mut w = [0u32; 4];
        for (i, v) in w.iter_mut().enumerate() {
            *v = u32::from_le_bytes([h[4 * i], h[4 * i + 1], h[4 * i + 2], h[4 * i + 3]]);
        }
        if be {
            w = w.map(u32::swap_bytes);
        }
        let [sec, frac, incl, orig] = w;
        let incl = incl as usize;
        if incl > MAX_RECORD {
            return Err(self.corrupt(format!("record of {incl} bytes (at most {MAX_RECORD})")));
        }
        match self.fill(16 + incl)? {
            Fill::Ready => {}
            Fill::Ended { .. } => return Ok(self.cut()),
        }
        let at = self.start + 16;
        self.start = at + incl;
        self.records += 1;
        f(Record {
            ts_ns: u64::from(sec) * 1_000_000_000 + u64::from(frac) * frac_ns,
            data: &self.buf[at..at + incl],
            orig_len: orig.max(incl as u32),
            link,
        });
        Ok(Step::Record)
    }

    fn cut(&mut self) -> Step {
        self.cut_short = true;
        Step::End
    }

    /// One pcapng block: a packet (handed to `f`), a section or interface header (taken
    /// in), or anything else (skipped).
    fn pcapng_block(&mut self, f: &mut impl FnMut(Record<'_>)) -> Result<Step, CaptureError> {
        match self.fill(12)? {
            Fill::Ready => {}
            Fill::Ended { have: 0 } => return Ok(Step::End),
            Fill::Ended { .. } => return Ok(self.cut()),
        }
        let Format::PcapNg { big_endian, .. } = self.format else {
            return Ok(Step::End);
        };
        let h = &self.buf[self.start..self.start + 12];
        let ty = u32_at(h, 0, big_endian);
        let mut be = big_endian;
        if ty == 0x0a0d_0d0a {
            // Section header: its byte-order magic decides the byte order of the section.
            be = match u32_at(h, 8, false) {
                0x1a2b_3c4d => false,
                0x4d3c_2b1a => true,
                m => return Err(self.corrupt(format!("section byte-order magic {m:#x}"))),
            };
        }
        let len = u32_at(h, 4, be) as usize;
        if len < 12 || !len.is_multiple_of(4) || len > MAX_RECORD {
            return Err(self.corrupt(format!("block of {len} bytes")));
        }
        match self.fill(len)? {
            Fill::Ready => {}
            Fill::Ended { .. } => return Ok(self.cut()),
        }
        let at = self.start;
        self.start += len;
        let block = at..at + len;
        match ty {
            0x0a0d_0d0a => {
                self.format = Format::PcapNg {
                    big_endian: be,
                    interfaces: Vec::new(),
                };
                Ok(Step::Other)
            }
            1 => {
                let iface = self.interface(block, be)?;
                if let Format::PcapNg { interfaces, .. } = &mut self.format {
                    if interfaces.len() >= 1 << 16 {
                        return Err(self.corrupt("more than 65536 interfaces"));
                    }
                    interfaces.push(iface);
                }
                Ok(Step::Other)
            }
            6 => self.enhanced_packet(block, be, f),
            3 => self.simple_packet(block, be, f),
            _ => Ok(Step::Other),
        }
    }

    fn interface(
        &self,
        block: std::ops::Range<usize>,
        be: bool,
    ) -> Result<Interface, CaptureError> {
        let b = &self.buf[block];
        if b.len() < 20 {
            return Err(self.corrupt("interface description block too short"));
        }
        let number = u32::from(u16_at(b, 8, be));
        let link = Link::from_number(number).ok_or(CaptureError::LinkType {
            path: self.path.clone(),
            link: number,
        })?;
        let mut iface = Interface {
            link,
            num: 1000,
            den: 1,
            offset_s: 0,
        };
        // Options: code, length, value padded to 4; up to the trailing length.
        let mut at = 16;
        let end = b.len() - 4;
        while at + 4 <= end {
            let (code, olen) = (u16_at(b, at, be), usize::from(u16_at(b, at + 2, be)));
            let value = at + 4;
            if code == 0 || value + olen > end {
                break;
            }
            match (code, olen) {
                (9, 1) => {
                    (iface.num, iface.den) = tsresol_scale(b[value]);
                }
                (14, 8) => {
                    let raw: [u8; 8] = b[value..value + 8].try_into().unwrap_or([0; 8]);
                    iface.offset_s = if be {
                        i64::from_be_bytes(raw)
                    } else {
                        i64::from_le_bytes(raw)
                    };
                }
                _ => {}
            }
            at = value + olen.div_ceil(4) * 4;
        }
        Ok(iface)
    }

    fn enhanced_packet(
        &mut self,
        block: std::ops::Range<usize>,
        be: bool,
        f: &mut impl FnMut(Record<'_>),
    ) -> Result<Step, CaptureError> {
        let b = &self.buf[block.clone()];
        if b.len() < 32 {
            return Err(self.corrupt("enhanced packet block too short"));
        }
        let id = u32_at(b, 8, be) as usize;
        let raw = (u64::from(u32_at(b, 12, be)) << 32) | u64::from(u32_at(b, 16, be));
        let (cap_len, orig) = (u32_at(b, 20, be) as usize, u32_at(b, 24, be));
        if 28 + cap_len > b.len() - 4 {
            return Err(self.corrupt("packet data runs beyond its block"));
        }
        let Format::PcapNg { interfaces, .. } = &self.format else {
            return Ok(Step::Other);
        };
        let Some(iface) = interfaces.get(id).copied() else {
            return Err(self.corrupt(format!("packet for interface {id}, which is not described")));
        };
        let ns = (u128::from(raw) * iface.num / iface.den) as i128
            + i128::from(iface.offset_s) * 1_000_000_000;
        let data = block.start + 28..block.start + 28 + cap_len;
        self.records += 1;
        f(Record {
            ts_ns: u64::try_from(ns.max(0)).unwrap_or(u64::MAX),
            data: &self.buf[data],
            orig_len: orig.max(cap_len as u32),
            link: iface.link,
        });
        Ok(Step::Record)
    }

    fn simple_packet(
        &mut self,
        block: std::ops::Range<usize>,
        be: bool,
        f: &mut impl FnMut(Record<'_>),
    ) -> Result<Step, CaptureError> {
        let b = &self.buf[block.clone()];
        if b.len() < 16 {
            return Err(self.corrupt("simple packet block too short"));
        }
        let orig = u32_at(b, 8, be);
        let cap_len = (b.len() - 16).min(orig as usize);
        let Format::PcapNg { interfaces, .. } = &self.format else {
            return Ok(Step::Other);
        };
        let Some(link) = interfaces.first().map(|i| i.link) else {
            return Err(self.corrupt("simple packet before any interface"));
        };
        let data = block.start + 12..block.start + 12 + cap_len;
        self.records += 1;
        f(Record {
            ts_ns: 0,
            data: &self.buf[data],
            orig_len: orig,
            link,
        });
        Ok(Step::Record)
    }
}

/// What one step of reading found.
enum Step {
    Record,
    Other,
    End,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Classic pcap in both byte orders and both resolutions, over more than three read
    /// buffers (records straddle the refills, so the straight-through loop and the
    /// record-at-a-time path take turns), ending inside a record: every whole record back
    /// as written, in order, and the cut reported.
    #[test]
    fn classic_pcap_reads_back_in_both_byte_orders_across_refills() {
        let dir = weir_testkit::Scratch::new("capture-classic");
        for (be, nanos) in [(false, false), (true, false), (false, true), (true, true)] {
            let mut file = Vec::new();
            let w32 = |v: u32, out: &mut Vec<u8>| {
                out.extend_from_slice(&if be { v.to_be_bytes() } else { v.to_le_bytes() });
            };
            let w16 = |v: u16, out: &mut Vec<u8>| {
                out.extend_from_slice(&if be { v.to_be_bytes() } else { v.to_le_bytes() });
            };
            w32(if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 }, &mut file);
            w16(2, &mut file);
            w16(4, &mut file);
            for v in [0, 0, 65_535, 1] {
                w32(v, &mut file);
            }
            let mut want = Vec::new();
            let mut i = 0u32;
            while file.len() < 3 * READ_CHUNK + 1000 {
                let len = 60 + (i * 7919) % 1400;
                let data: Vec<u8> = (0..len).map(|k| (k ^ i.wrapping_mul(31)) as u8).collect();
                let orig = if i.is_multiple_of(5) { len + 100 } else { len };
                let sec = 1_700_000_000 + i;
                let frac = (i * 13) % if nanos { 1_000_000_000 } else { 1_000_000 };
                for v in [sec, frac, len, orig] {
                    w32(v, &mut file);
                }
                file.extend_from_slice(&data);
                let ts =
                    u64::from(sec) * 1_000_000_000 + u64::from(frac) * if nanos { 1 } else { 1000 };
                want.push((ts, data, orig));
                i += 1;
            }
            // The last record says 100 bytes and holds 10.
            for v in [1, 0, 100, 100] {
                w32(v, &mut file);
            }
            file.extend_from_slice(&[0; 10]);
            let path = dir.path(&format!("be{be}-ns{nanos}.pcap"));
            std::fs::write(&path, &file).unwrap();
            let mut cap = Capture::open(&path).unwrap();
            let mut got = Vec::new();
            let n = cap
                .for_each(|r| {
                    assert_eq!(r.link, Link::Ethernet);
                    got.push((r.ts_ns, r.data.to_vec(), r.orig_len));
                })
                .unwrap();
            assert_eq!(n, want.len() as u64, "be {be}, ns {nanos}");
            assert!(got == want, "be {be}, ns {nanos}: records differ");
            assert!(cap.cut_short(), "be {be}, ns {nanos}: the cut is seen");
            assert_eq!(cap.records(), n);
        }
    }

    #[test]
    fn tsresol_scales() {
        assert_eq!(tsresol_scale(6), (1_000_000_000, 1_000_000));
        assert_eq!(tsresol_scale(9), (1_000_000_000, 1_000_000_000));
        assert_eq!(tsresol_scale(0x80 | 10), (1_000_000_000, 1024));
        assert_eq!(tsresol_scale(0x7f).1, u128::MAX);
    }

    #[test]
    fn link_types_find_the_network_packet() {
        let ip6 = [0x60u8, 0, 0, 0];
        assert_eq!(Link::Ethernet.network(&ip6), None);
        assert_eq!(Link::Raw.network(&ip6), Some((0x86dd, 0)));
        assert_eq!(Link::Raw.network(&[0x45]), Some((0x0800, 0)));
        let mut sll = [0u8; 20];
        sll[14..16].copy_from_slice(&0x86ddu16.to_be_bytes());
        assert_eq!(Link::LinuxSll.network(&sll), Some((0x86dd, 16)));
        let mut sll2 = [0u8; 24];
        sll2[..2].copy_from_slice(&0x0800u16.to_be_bytes());
        assert_eq!(Link::LinuxSll2.network(&sll2), Some((0x0800, 20)));
        assert_eq!(Link::Null.network(&[2, 0, 0, 0]), Some((0x0800, 4)));
        assert_eq!(Link::Null.network(&[30, 0, 0, 0]), Some((0x86dd, 4)));
        assert_eq!(Link::Loop.network(&[0, 0, 0, 24]), Some((0x86dd, 4)));
        assert_eq!(Link::LinuxSll.network(&[0; 8]), None, "too short to say");
        for n in [0, 1, 101, 108, 113, 228, 229, 276] {
            assert_eq!(Link::from_number(n).map(Link::number), Some(n));
        }
        assert_eq!(Link::from_number(147), None);
    }
}
