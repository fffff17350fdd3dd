//! TCP segments (RFC 9293 §3.1) and their options.
//!
//! The parser needs the ports, sequence numbers, flags and a structurally valid options
//! area (DESIGN.md "Headers"); [`check_options`] is the one bounded loop that decides the
//! `TcpOption` rule, and [`OptionsIter`] gives the same walk with decoded options for tools.
//! [`Repr`] emits the options a SYN carries in practice (MSS, SACK-permitted, timestamps,
//! window scale) 4-byte aligned with NOPs, as Linux does, so fixtures look like real
//! traffic to tshark.

use crate::bytes;
use crate::checksum::{self, Pseudo};
use crate::tcp_flags;
use crate::Malformed;

/// Field offsets.
pub mod field {
    use core::ops::Range;
    /// Source port.
    pub const SRC_PORT: Range<usize> = 0..2;
    /// Destination port.
    pub const DST_PORT: Range<usize> = 2..4;
    /// Sequence number.
    pub const SEQ_NUM: Range<usize> = 4..8;
    /// Acknowledgement number.
    pub const ACK_NUM: Range<usize> = 8..12;
    /// Data offset (high 4 bits of byte 12), flags.
    pub const FLAGS: Range<usize> = 12..14;
    /// Window.
    pub const WIN_SIZE: Range<usize> = 14..16;
    /// Checksum.
    pub const CHECKSUM: Range<usize> = 16..18;
    /// Urgent pointer.
    pub const URGENT: Range<usize> = 18..20;
    /// Start of options.
    pub const OPTIONS: usize = 20;
}

/// Length of the header without options.
pub const HEADER_LEN: usize = field::OPTIONS;

/// Option kinds.
pub mod kind {
    /// End of option list.
    pub const EOL: u8 = 0;
    /// No-operation.
    pub const NOP: u8 = 1;
    /// Maximum segment size.
    pub const MSS: u8 = 2;
    /// Window scale.
    pub const WINDOW_SCALE: u8 = 3;
    /// SACK permitted.
    pub const SACK_PERMITTED: u8 = 4;
    /// SACK blocks.
    pub const SACK: u8 = 5;
    /// Timestamps.
    pub const TIMESTAMPS: u8 = 8;
}

/// A view of a TCP segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap a buffer without checking its length.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wrap a buffer and check its lengths.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Malformed> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `TcpTruncated` below 20 bytes; `TcpDataOffset` when the data offset is below 5 or
    /// beyond the buffer. Options are checked by [`check_options`].
    #[inline]
    pub fn check_len(&self) -> Result<(), Malformed> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            Err(Malformed::TcpTruncated)
        } else if self.header_len() < HEADER_LEN || self.header_len() > len {
            Err(Malformed::TcpDataOffset)
        } else {
            Ok(())
        }
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::SRC_PORT.start)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::DST_PORT.start)
    }

    /// Sequence number.
    #[inline]
    pub fn seq_number(&self) -> u32 {
        bytes::u32_at(self.buffer.as_ref(), field::SEQ_NUM.start)
    }

    /// Acknowledgement number.
    #[inline]
    pub fn ack_number(&self) -> u32 {
        bytes::u32_at(self.buffer.as_ref(), field::ACK_NUM.start)
    }

    /// Data offset in 32-bit words.
    #[inline]
    pub fn data_offset(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::FLAGS.start) >> 4
    }

    /// Header length in bytes (data offset × 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.data_offset()) * 4
    }

    /// Control bits (low 8 bits: CWR ECE URG ACK PSH RST SYN FIN), see [`tcp_flags`].
    #[inline]
    pub fn flags(&self) -> u8 {
        bytes::u8_at(self.buffer.as_ref(), field::FLAGS.start + 1)
    }

    /// Window.
    #[inline]
    pub fn window_len(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::WIN_SIZE.start)
    }

    /// Checksum.
    #[inline]
    pub fn checksum(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// Urgent pointer.
    #[inline]
    pub fn urgent_at(&self) -> u16 {
        bytes::u16_at(self.buffer.as_ref(), field::URGENT.start)
    }

    /// Does the stored checksum match the segment under `pseudo`?
    pub fn verify_checksum(&self, pseudo: Pseudo) -> bool {
        checksum::tcp_checksum(pseudo, self.buffer.as_ref()) == self.checksum()
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The options area (bytes 20 to data offset × 4).
    #[inline]
    pub fn options(&self) -> &'a [u8] {
        self.buffer
            .as_ref()
            .get(HEADER_LEN..self.header_len())
            .unwrap_or(&[])
    }

    /// The decoded options.
    #[inline]
    pub fn options_iter(&self) -> OptionsIter<'a> {
        OptionsIter::new(self.options())
    }

    /// The payload after the header.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        self.buffer.as_ref().get(self.header_len()..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set the source port.
    #[inline]
    pub fn set_src_port(&mut self, value: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::SRC_PORT.start, value);
    }

    /// Set the destination port.
    #[inline]
    pub fn set_dst_port(&mut self, value: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::DST_PORT.start, value);
    }

    /// Set the sequence number.
    #[inline]
    pub fn set_seq_number(&mut self, value: u32) {
        bytes::put_u32(self.buffer.as_mut(), field::SEQ_NUM.start, value);
    }

    /// Set the acknowledgement number.
    #[inline]
    pub fn set_ack_number(&mut self, value: u32) {
        bytes::put_u32(self.buffer.as_mut(), field::ACK_NUM.start, value);
    }

    /// Set the header length in bytes (a multiple of 4, ≤ 60); clears the reserved bits.
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        bytes::put_u8(
            self.buffer.as_mut(),
            field::FLAGS.start,
            (((len / 4) & 0xf) as u8) << 4,
        );
    }

    /// Set the control bits.
    #[inline]
    pub fn set_flags(&mut self, value: u8) {
        bytes::put_u8(self.buffer.as_mut(), field::FLAGS.start + 1, value);
    }

    /// Set the window.
    #[inline]
    pub fn set_window_len(&mut self, value: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::WIN_SIZE.start, value);
    }

    /// Set the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::CHECKSUM.start, value);
    }

    /// Set the urgent pointer.
    #[inline]
    pub fn set_urgent_at(&mut self, value: u16) {
        bytes::put_u16(self.buffer.as_mut(), field::URGENT.start, value);
    }

    /// Compute and store the checksum over the whole buffer under `pseudo`.
    pub fn fill_checksum(&mut self, pseudo: Pseudo) {
        let c = checksum::tcp_checksum(pseudo, self.buffer.as_ref());
        self.set_checksum(c);
    }
}

/// The `TcpOption` rule: walk kind / length; EOL ends the list, NOP is one byte; any other
/// option whose length byte is missing, below 2, or runs past the area is malformed.
/// Bounded by the area (≤ 40 bytes): each step advances at least one byte.
///
/// The two layouts that make up nearly all real options areas are recognised first and
/// skipped whole (`skip_common_layout`); whatever follows them goes through the general
/// walk, which alone defines the rule.
#[inline]
pub fn check_options(options: &[u8]) -> Result<(), Malformed> {
    match skip_common_layout(options) {
        // Nothing after the layout (or no options at all): the walk's first step, taken
        // here so that the common case costs no call.
        [] => Ok(()),
        rest => walk_options(rest),
    }
}

/// Fast path for [`check_options`], which runs on every TCP segment: the options a SYN and
/// an established segment carry in practice, laid out as Linux (and most stacks) emit them,
/// are matched with three or four fixed-offset compares instead of one walk step per option
/// (a step is a dozen or so instructions, and a Linux SYN has five options). Returns what
/// is left for the walk: the bytes after the layout, or all of `options` when it is not one
/// of them.
///
/// Sound because each layout is a sequence of options that the walk accepts and steps over
/// exactly as skipped here (none starts with EOL, every length is ≥ 2 and lies inside the
/// matched bytes), so walking the rest gives the same answer as walking everything. The
/// general walk defines the semantics; this only spares it work. Checked against the walk
/// by `tests::fast_path_agrees_with_walk*`.
#[inline(always)]
fn skip_common_layout(options: &[u8]) -> &[u8] {
    use kind::*;
    // Established segment with timestamps (RFC 7323 Appendix A): NOP, NOP, Timestamps(10).
    // A SACK option may follow; the walk handles it.
    if let Some((head, rest)) = options.split_first_chunk::<12>() {
        if head[..4] == [NOP, NOP, TIMESTAMPS, 10] {
            return rest;
        }
    }
    // Linux SYN / SYN-ACK: MSS(4), SACK-permitted(2), Timestamps(10), NOP, Window
    // scale(3) — the 20 bytes `Repr::emit` writes for `Repr::syn`.
    if let Some((head, rest)) = options.split_first_chunk::<20>() {
        if head[..2] == [MSS, 4]
            && head[4..8] == [SACK_PERMITTED, 2, TIMESTAMPS, 10]
            && head[16..19] == [NOP, WINDOW_SCALE, 3]
        {
            return rest;
        }
    }
    options
}

/// The general walk behind [`check_options`]; see there for the rule.
#[inline]
fn walk_options(mut options: &[u8]) -> Result<(), Malformed> {
    loop {
        match options {
            [] | [kind::EOL, ..] => return Ok(()),
            [kind::NOP, rest @ ..] => options = rest,
            [_, len, ..] if *len >= 2 => match options.get(usize::from(*len)..) {
                Some(rest) => options = rest,
                None => return Err(Malformed::TcpOption),
            },
            _ => return Err(Malformed::TcpOption),
        }
    }
}

/// A decoded TCP option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpOption<'a> {
    /// End of option list.
    EndOfList,
    /// No-operation.
    NoOperation,
    /// Maximum segment size.
    MaxSegmentSize(u16),
    /// Window scale shift.
    WindowScale(u8),
    /// SACK permitted.
    SackPermitted,
    /// SACK blocks, raw (8 bytes per block).
    Sack(&'a [u8]),
    /// Timestamps.
    Timestamps {
        /// TSval.
        tsval: u32,
        /// TSecr.
        tsecr: u32,
    },
    /// Any other option, or a known kind with an unexpected length.
    Unknown {
        /// Kind.
        kind: u8,
        /// Bytes after kind and length.
        data: &'a [u8],
    },
}

impl TcpOption<'_> {
    /// Encoded length.
    pub fn buffer_len(&self) -> usize {
        match self {
            TcpOption::EndOfList | TcpOption::NoOperation => 1,
            TcpOption::MaxSegmentSize(_) => 4,
            TcpOption::WindowScale(_) => 3,
            TcpOption::SackPermitted => 2,
            TcpOption::Sack(d) => 2 + d.len(),
            TcpOption::Timestamps { .. } => 10,
            TcpOption::Unknown { data, .. } => 2 + data.len(),
        }
    }

    /// Write the option at the start of `buf`, returning its length; panics if short.
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        let len = self.buffer_len();
        let buf = bytes::emit_buf(buf, len, "tcp::TcpOption");
        let len_byte = len as u8;
        match *self {
            TcpOption::EndOfList => buf[0] = kind::EOL,
            TcpOption::NoOperation => buf[0] = kind::NOP,
            TcpOption::MaxSegmentSize(mss) => {
                buf[..2].copy_from_slice(&[kind::MSS, 4]);
                buf[2..4].copy_from_slice(&mss.to_be_bytes());
            }
            TcpOption::WindowScale(s) => buf.copy_from_slice(&[kind::WINDOW_SCALE, 3, s]),
            TcpOption::SackPermitted => buf.copy_from_slice(&[kind::SACK_PERMITTED, 2]),
            TcpOption::Sack(d) => {
                buf[..2].copy_from_slice(&[kind::SACK, len_byte]);
                buf[2..].copy_from_slice(d);
            }
            TcpOption::Timestamps { tsval, tsecr } => {
                buf[..2].copy_from_slice(&[kind::TIMESTAMPS, 10]);
                buf[2..6].copy_from_slice(&tsval.to_be_bytes());
                buf[6..10].copy_from_slice(&tsecr.to_be_bytes());
            }
            TcpOption::Unknown { kind, data } => {
                buf[..2].copy_from_slice(&[kind, len_byte]);
                buf[2..].copy_from_slice(data);
            }
        }
        len
    }
}

/// Iterator over the options area; yields `Err(TcpOption)` once on a malformed option and
/// stops after EOL.
#[derive(Debug, Clone)]
pub struct OptionsIter<'a> {
    rest: &'a [u8],
}

impl<'a> OptionsIter<'a> {
    /// Iterate over an options area.
    pub fn new(options: &'a [u8]) -> OptionsIter<'a> {
        OptionsIter { rest: options }
    }
}

impl<'a> Iterator for OptionsIter<'a> {
    type Item = Result<TcpOption<'a>, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        let (opt, rest): (TcpOption<'a>, &'a [u8]) = match self.rest {
            [] => return None,
            [kind::EOL, ..] => (TcpOption::EndOfList, &[]),
            [kind::NOP, rest @ ..] => (TcpOption::NoOperation, rest),
            [k, len, ..] if *len >= 2 => {
                let len = usize::from(*len);
                let (Some(body), Some(rest)) = (self.rest.get(2..len), self.rest.get(len..)) else {
                    self.rest = &[];
                    return Some(Err(Malformed::TcpOption));
                };
                let opt = match (*k, body) {
                    (kind::MSS, &[a, b]) => TcpOption::MaxSegmentSize(u16::from_be_bytes([a, b])),
                    (kind::WINDOW_SCALE, &[s]) => TcpOption::WindowScale(s),
                    (kind::SACK_PERMITTED, &[]) => TcpOption::SackPermitted,
                    (kind::SACK, d) => TcpOption::Sack(d),
                    (kind::TIMESTAMPS, d) if d.len() == 8 => TcpOption::Timestamps {
                        tsval: bytes::u32_at(d, 0),
                        tsecr: bytes::u32_at(d, 4),
                    },
                    (kind, data) => TcpOption::Unknown { kind, data },
                };
                (opt, rest)
            }
            _ => {
                self.rest = &[];
                return Some(Err(Malformed::TcpOption));
            }
        };
        self.rest = rest;
        Some(Ok(opt))
    }
}

/// An owned TCP segment with the common options and its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Control bits, see [`tcp_flags`].
    pub flags: u8,
    /// Window.
    pub window: u16,
    /// Urgent pointer.
    pub urgent: u16,
    /// MSS option.
    pub mss: Option<u16>,
    /// Window scale option.
    pub window_scale: Option<u8>,
    /// SACK-permitted option.
    pub sack_permitted: bool,
    /// Timestamps option (TSval, TSecr).
    pub timestamps: Option<(u32, u32)>,
    /// Payload.
    pub payload: &'a [u8],
}

impl<'a> Repr<'a> {
    /// A segment with no options, window 65535 and no payload.
    pub const fn new(src_port: u16, dst_port: u16, seq: u32, ack: u32, flags: u8) -> Repr<'a> {
        Repr {
            src_port,
            dst_port,
            seq,
            ack,
            flags,
            window: 65535,
            urgent: 0,
            mss: None,
            window_scale: None,
            sack_permitted: false,
            timestamps: None,
            payload: &[],
        }
    }

    /// A clean SYN with the options Linux sends (MSS, SACK-permitted, timestamps, window
    /// scale 7).
    pub const fn syn(src_port: u16, dst_port: u16, seq: u32, mss: u16) -> Repr<'a> {
        Repr {
            mss: Some(mss),
            window_scale: Some(7),
            sack_permitted: true,
            timestamps: Some((1, 0)),
            ..Repr::new(src_port, dst_port, seq, 0, tcp_flags::SYN)
        }
    }

    /// Read a checked view: header, options (known ones; others ignored) and payload.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&'a T>) -> Result<Repr<'a>, Malformed> {
        packet.check_len()?;
        check_options(packet.options())?;
        let mut repr = Repr {
            window: packet.window_len(),
            urgent: packet.urgent_at(),
            payload: packet.payload(),
            ..Repr::new(
                packet.src_port(),
                packet.dst_port(),
                packet.seq_number(),
                packet.ack_number(),
                packet.flags(),
            )
        };
        for opt in packet.options_iter() {
            match opt? {
                TcpOption::MaxSegmentSize(m) => repr.mss = Some(m),
                TcpOption::WindowScale(s) => repr.window_scale = Some(s),
                TcpOption::SackPermitted => repr.sack_permitted = true,
                TcpOption::Timestamps { tsval, tsecr } => repr.timestamps = Some((tsval, tsecr)),
                _ => {}
            }
        }
        Ok(repr)
    }

    /// Length of the options as emitted (a multiple of 4).
    pub const fn options_len(&self) -> usize {
        let mut len = 0;
        if self.mss.is_some() {
            len += 4;
        }
        if self.sack_permitted || self.timestamps.is_some() {
            // SACK-permitted + timestamps (12), or NOP NOP + either.
            len += if self.timestamps.is_some() { 12 } else { 4 };
        }
        if self.window_scale.is_some() {
            len += 4;
        }
        len
    }

    /// Header length (20 + options).
    pub const fn header_len(&self) -> usize {
        HEADER_LEN + self.options_len()
    }

    /// Header + payload.
    pub const fn buffer_len(&self) -> usize {
        self.header_len() + self.payload.len()
    }

    /// Write the segment with its checksum under `pseudo`; panics if `buf` is shorter
    /// than `buffer_len()`.
    pub fn emit(&self, buf: &mut [u8], pseudo: Pseudo) {
        let len = self.buffer_len();
        let buf = bytes::emit_buf(buf, len, "tcp::Repr");
        let header_len = self.header_len();
        {
            let mut p = Packet::new_unchecked(&mut *buf);
            p.set_src_port(self.src_port);
            p.set_dst_port(self.dst_port);
            p.set_seq_number(self.seq);
            p.set_ack_number(self.ack);
            p.set_header_len(header_len);
            p.set_flags(self.flags);
            p.set_window_len(self.window);
            p.set_checksum(0);
            p.set_urgent_at(self.urgent);
        }
        let mut at = HEADER_LEN;
        let mut put = |opt: TcpOption<'_>, buf: &mut [u8]| at += opt.emit(&mut buf[at..]);
        if let Some(mss) = self.mss {
            put(TcpOption::MaxSegmentSize(mss), buf);
        }
        match (self.sack_permitted, self.timestamps) {
            (true, Some((tsval, tsecr))) => {
                put(TcpOption::SackPermitted, buf);
                put(TcpOption::Timestamps { tsval, tsecr }, buf);
            }
            (false, Some((tsval, tsecr))) => {
                put(TcpOption::NoOperation, buf);
                put(TcpOption::NoOperation, buf);
                put(TcpOption::Timestamps { tsval, tsecr }, buf);
            }
            (true, None) => {
                put(TcpOption::NoOperation, buf);
                put(TcpOption::NoOperation, buf);
                put(TcpOption::SackPermitted, buf);
            }
            (false, None) => {}
        }
        if let Some(shift) = self.window_scale {
            put(TcpOption::NoOperation, buf);
            put(TcpOption::WindowScale(shift), buf);
        }
        buf[header_len..].copy_from_slice(self.payload);
        let c = checksum::tcp_checksum(pseudo, buf);
        Packet::new_unchecked(buf).set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SRC: u128 = 0x2001_0db8_0000_0000_0000_0000_0000_0001;
    const DST: u128 = 0x2001_0db8_0000_0000_0000_0000_0000_0002;

    #[rustfmt::skip]
    static PACKET_BYTES: [u8; 44] = [
        0xc3, 0x50, 0x00, 0x50, // 50000 → 80
        0x01, 0x23, 0x45, 0x67, // seq
        0x00, 0x00, 0x00, 0x00, // ack
        0xa0, 0x02, 0xff, 0xff, // data offset 10, SYN, window 65535
        0x00, 0x00, 0x00, 0x00, // checksum (filled below), urgent
        0x02, 0x04, 0x05, 0xa0, // MSS 1440
        0x04, 0x02, 0x08, 0x0a, // SACK-permitted, timestamps
        0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x01, 0x03, 0x03, 0x07, // NOP, window scale 7
        0x68, 0x69, 0x21, 0x0a, // "hi!\n"
    ];

    fn golden() -> [u8; 44] {
        let mut b = PACKET_BYTES;
        let c = checksum::tcp_checksum_v6(SRC, DST, &b);
        b[16..18].copy_from_slice(&c.to_be_bytes());
        b
    }

    fn pseudo() -> Pseudo {
        Pseudo::V6 { src: SRC, dst: DST }
    }

    #[test]
    fn deconstruct() {
        let b = golden();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (50000, 80));
        assert_eq!(p.seq_number(), 0x0123_4567);
        assert_eq!(p.ack_number(), 0);
        assert_eq!(p.header_len(), 40);
        assert_eq!(p.flags(), tcp_flags::SYN);
        assert_eq!(p.window_len(), 65535);
        assert_eq!(p.urgent_at(), 0);
        assert!(p.verify_checksum(pseudo()));
        assert_eq!(p.payload(), b"hi!\n");
        let opts: Vec<_> = p.options_iter().map(Result::unwrap).collect();
        assert_eq!(
            opts,
            [
                TcpOption::MaxSegmentSize(1440),
                TcpOption::SackPermitted,
                TcpOption::Timestamps { tsval: 1, tsecr: 0 },
                TcpOption::NoOperation,
                TcpOption::WindowScale(7),
            ]
        );
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 44];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_src_port(50000);
        p.set_dst_port(80);
        p.set_seq_number(0x0123_4567);
        p.set_ack_number(0);
        p.set_header_len(40);
        p.set_flags(tcp_flags::SYN);
        p.set_window_len(65535);
        p.set_urgent_at(0);
        buf[20..].copy_from_slice(&PACKET_BYTES[20..]);
        Packet::new_unchecked(&mut buf[..]).fill_checksum(pseudo());
        assert_eq!(buf, golden());
    }

    #[test]
    fn repr_round_trip() {
        let b = golden();
        let repr = Repr::parse(&Packet::new_checked(&b[..]).unwrap()).unwrap();
        assert_eq!(
            repr,
            Repr {
                window_scale: Some(7),
                payload: b"hi!\n",
                ..Repr::syn(50000, 80, 0x0123_4567, 1440)
            }
        );
        assert_eq!(repr.buffer_len(), 44);
        let mut out = [0u8; 44];
        repr.emit(&mut out, pseudo());
        assert_eq!(out, b);
    }

    #[test]
    fn option_layouts_are_aligned_and_parse_back() {
        for sack in [false, true] {
            for ts in [None, Some((7, 9))] {
                for ws in [None, Some(3)] {
                    for mss in [None, Some(1220)] {
                        let r = Repr {
                            mss,
                            window_scale: ws,
                            sack_permitted: sack,
                            timestamps: ts,
                            ..Repr::new(1, 2, 3, 4, tcp_flags::ACK)
                        };
                        assert_eq!(r.options_len() % 4, 0);
                        let mut buf = vec![0u8; r.buffer_len()];
                        r.emit(&mut buf, Pseudo::V4 { src: 1, dst: 2 });
                        let p = Packet::new_checked(&buf[..]).unwrap();
                        assert!(p.verify_checksum(Pseudo::V4 { src: 1, dst: 2 }));
                        assert_eq!(Repr::parse(&p).unwrap(), r);
                    }
                }
            }
        }
    }

    #[test]
    fn options_rule() {
        assert_eq!(check_options(&[]), Ok(()));
        assert_eq!(check_options(&[1, 1, 0, 0xff]), Ok(()));
        assert_eq!(check_options(&[2, 4, 5, 0xa0]), Ok(()));
        assert_eq!(check_options(&[1, 1, 1, 2]), Err(Malformed::TcpOption));
        assert_eq!(check_options(&[2, 1, 0, 0]), Err(Malformed::TcpOption));
        assert_eq!(check_options(&[2, 5, 0, 0]), Err(Malformed::TcpOption));
        assert_eq!(
            OptionsIter::new(&[2, 5, 0, 0]).next(),
            Some(Err(Malformed::TcpOption))
        );
        assert_eq!(
            OptionsIter::new(&[1, 0, 9]).collect::<Vec<_>>(),
            [Ok(TcpOption::NoOperation), Ok(TcpOption::EndOfList)]
        );
    }

    /// The Linux SYN layout: MSS 1460, SACK-permitted, timestamps, NOP, window scale 7.
    const LINUX_SYN: [u8; 20] = [
        2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
    ];
    /// NOP, NOP, timestamps, as on an established segment.
    const NOP_NOP_TS: [u8; 12] = [1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 7];

    /// `check_options` (fast paths included) against the general walk alone.
    fn agrees(options: &[u8]) {
        assert_eq!(
            check_options(options),
            walk_options(options),
            "options {options:02x?}"
        );
    }

    fn cat(a: &[u8], b: &[u8]) -> Vec<u8> {
        [a, b].concat()
    }

    #[test]
    fn fast_path_takes_the_common_layouts() {
        assert_eq!(skip_common_layout(&LINUX_SYN), &[] as &[u8]);
        assert_eq!(skip_common_layout(&NOP_NOP_TS), &[] as &[u8]);
        assert_eq!(
            skip_common_layout(&cat(&NOP_NOP_TS, &[1, 1, 5, 10])),
            &[1, 1, 5, 10]
        );
        assert_eq!(skip_common_layout(&cat(&LINUX_SYN, &[0])), &[0]);
        // What `Repr::syn` emits is the SYN layout.
        let mut buf = [0u8; 40];
        Repr::syn(1, 2, 3, 1460).emit(&mut buf, Pseudo::V4 { src: 1, dst: 2 });
        assert_eq!(skip_common_layout(&buf[20..]), &[] as &[u8]);
    }

    #[test]
    fn fast_path_agrees_with_walk_on_crafted_options() {
        let sack = [1, 1, 5, 10, 0, 0, 0, 1, 0, 0, 0, 2];
        let mut cases: Vec<Vec<u8>> = vec![
            vec![],
            LINUX_SYN.to_vec(),
            NOP_NOP_TS.to_vec(),
            cat(&NOP_NOP_TS, &sack),
            cat(&NOP_NOP_TS, &[0, 0xff, 0xff, 0xff]),
            cat(&NOP_NOP_TS, &[2, 5, 0, 0]),
            cat(&NOP_NOP_TS, &[9]),
            cat(&LINUX_SYN, &[0]),
            cat(&LINUX_SYN, &[1, 1, 1, 1]),
            cat(&LINUX_SYN, &[3, 1, 0, 0]),
            cat(&LINUX_SYN, &[30, 20, 0, 0]),
            // Truncated layouts: the fast paths need every byte, the walk decides.
            NOP_NOP_TS[..11].to_vec(),
            LINUX_SYN[..19].to_vec(),
            LINUX_SYN[..17].to_vec(),
        ];
        // Every single-byte change of each layout, at every position: near misses that the
        // fast path must either reject or accept exactly as the walk does.
        for layout in [
            &LINUX_SYN[..],
            &NOP_NOP_TS[..],
            &cat(&NOP_NOP_TS, &sack)[..],
        ] {
            for at in 0..layout.len() {
                for v in [0, 1, 2, 3, 4, 8, 9, 10, 11, 0x13, 0xff] {
                    let mut o = layout.to_vec();
                    o[at] = v;
                    cases.push(o);
                }
            }
        }
        for case in &cases {
            agrees(case);
        }
        assert_eq!(check_options(&LINUX_SYN), Ok(()));
        assert_eq!(check_options(&NOP_NOP_TS[..11]), Err(Malformed::TcpOption));
        assert_eq!(
            check_options(&cat(&NOP_NOP_TS, &[2, 5, 0, 0])),
            Err(Malformed::TcpOption)
        );
    }

    /// Options areas near the common layouts: one of the layouts (with arbitrary values
    /// where the layout has data) or arbitrary bytes, then arbitrary trailing bytes, cut
    /// to the 40 bytes an options area can hold, with a few bytes changed.
    fn near_layouts() -> impl Strategy<Value = Vec<u8>> {
        let head = prop_oneof![
            (any::<[u8; 2]>(), any::<[u8; 8]>(), any::<u8>()).prop_map(|(mss, ts, ws)| {
                let mut o = LINUX_SYN;
                o[2..4].copy_from_slice(&mss);
                o[8..16].copy_from_slice(&ts);
                o[19] = ws;
                o.to_vec()
            }),
            any::<[u8; 8]>().prop_map(|ts| cat(&NOP_NOP_TS[..4], &ts)),
            proptest::collection::vec(any::<u8>(), 0..24),
        ];
        // Edits land mostly in the layouts, and mostly write small kinds and lengths.
        let edits = proptest::collection::vec(
            (
                prop_oneof![3 => 0..20usize, 1 => 0..40usize],
                prop_oneof![3 => 0..=12u8, 1 => any::<u8>()],
            ),
            0..3,
        );
        // A well-formed tail, so that a wrong skip shows as a different answer rather
        // than drowning in a malformed tail; or nothing; or arbitrary bytes.
        let option = prop_oneof![
            Just(vec![kind::NOP]),
            Just(vec![kind::EOL]),
            (2..=10u8).prop_map(|len| cat(&[kind::SACK, len], &vec![0; usize::from(len) - 2])),
        ];
        let tail = prop_oneof![
            Just(vec![]),
            proptest::collection::vec(option, 0..4).prop_map(|o| o.concat()),
            proptest::collection::vec(any::<u8>(), 0..28),
        ];
        (head, edits, tail).prop_map(|(head, edits, tail)| {
            let mut o = cat(&head, &tail);
            o.truncate(40);
            for (at, v) in edits {
                if let Some(b) = o.get_mut(at) {
                    *b = v;
                }
            }
            o
        })
    }

    proptest::proptest! {
        #[test]
        fn fast_path_agrees_with_walk(options in near_layouts()) {
            agrees(&options);
        }

        #[test]
        fn fast_path_agrees_with_walk_on_any_bytes(
            options in proptest::collection::vec(any::<u8>(), 0..=40)
        ) {
            agrees(&options);
        }
    }

    #[test]
    fn length_rules() {
        let b = golden();
        assert_eq!(
            Packet::new_checked(&b[..19]).err(),
            Some(Malformed::TcpTruncated)
        );
        assert_eq!(
            Packet::new_checked(&b[..39]).err(),
            Some(Malformed::TcpDataOffset)
        );
        let mut c = b;
        c[12] = 0x40;
        assert_eq!(
            Packet::new_checked(&c[..]).err(),
            Some(Malformed::TcpDataOffset)
        );
    }
}
