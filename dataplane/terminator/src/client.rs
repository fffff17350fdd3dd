//! A scripted TCP client for tests and benchmarks: IPv6/TCP packets built and parsed
//! with smoltcp's wire types, stepped by hand against a [`Terminator`] (no socket, no
//! smoltcp stack on the client side, so the client's cost does not grow with the number of
//! connections it holds).

use std::time::Instant;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    IpAddress, IpProtocol, Ipv6Address, Ipv6Packet, Ipv6Repr, TcpControl, TcpPacket, TcpRepr,
    TcpSeqNumber,
};

use crate::tcp::Terminator;
use weir_model::Class;

/// The service prefix the clients talk to: 2001:db8:5::/64.
pub const SERVICE: u128 = 0x2001_0db8_0005_0000_0000_0000_0000_0000;

/// A segment the terminator sent, parsed.
#[derive(Debug, Clone)]
pub struct Seg {
    /// Destination address (the client).
    pub dst: u128,
    /// Destination port.
    pub dport: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number, if ACK is set.
    pub ack: Option<u32>,
    /// SYN / FIN / RST / PSH / none.
    pub control: TcpControl,
    /// Payload.
    pub payload: Vec<u8>,
}

/// Parse an IPv6/TCP packet (checksum verified); `None` for anything else.
pub fn parse(p: &[u8]) -> Option<Seg> {
    let ip = Ipv6Packet::new_checked(p).ok()?;
    let r = Ipv6Repr::parse(&ip).ok()?;
    if r.next_header != IpProtocol::Tcp {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    let (s, d) = (IpAddress::Ipv6(r.src_addr), IpAddress::Ipv6(r.dst_addr));
    let t = TcpRepr::parse(&tcp, &s, &d, &ChecksumCapabilities::default()).ok()?;
    Some(Seg {
        dst: r.dst_addr.to_bits(),
        dport: t.dst_port,
        seq: t.seq_number.0 as u32,
        ack: t.ack_number.map(|a| a.0 as u32),
        control: t.control,
        payload: t.payload.to_vec(),
    })
}

/// An IPv6/TCP packet of `c` with `control` and `payload` at its current sequence number.
fn tcp_packet(c: &Client, ack: Option<u32>, control: TcpControl, payload: &[u8]) -> Vec<u8> {
    let (src, dst, seq) = (c.src, c.dst, c.next_seq);
    let t = TcpRepr {
        src_port: c.sport,
        dst_port: 80,
        control,
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
        window_len: 65_535,
        window_scale: None,
        max_seg_size: (control == TcpControl::Syn).then_some(1440),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload,
    };
    let ip = Ipv6Repr {
        src_addr: Ipv6Address::from_bits(src),
        dst_addr: Ipv6Address::from_bits(dst),
        next_header: IpProtocol::Tcp,
        payload_len: t.buffer_len(),
        hop_limit: 64,
    };
    let mut buf = vec![0u8; 40 + t.buffer_len()];
    let mut p = Ipv6Packet::new_unchecked(&mut buf[..]);
    ip.emit(&mut p);
    let mut tp = TcpPacket::new_unchecked(p.payload_mut());
    t.emit(
        &mut tp,
        &IpAddress::Ipv6(ip.src_addr),
        &IpAddress::Ipv6(ip.dst_addr),
        &ChecksumCapabilities::default(),
    );
    buf
}

/// One client connection to port 80, stepped by hand.
#[derive(Debug, Clone)]
pub struct Client {
    /// Source address.
    pub src: u128,
    /// Destination (a service address).
    pub dst: u128,
    /// Source port.
    pub sport: u16,
    /// Next sequence number to send.
    pub next_seq: u32,
    /// Next sequence number expected from the server.
    pub rcv_next: u32,
    /// Payload received so far.
    pub received: Vec<u8>,
    /// The server's FIN arrived.
    pub fin_seen: bool,
}

impl Client {
    /// Client number `i`: its own source address, destination and port.
    pub fn new(i: u32) -> Client {
        Client {
            src: 0x2001_0db8_00ff_0000_0000_0000_0000_0000 | u128::from(i + 1),
            dst: SERVICE | u128::from(i % 5000 + 7),
            sport: 10_000 + (i % 50_000) as u16,
            next_seq: 1000 * i + 1,
            rcv_next: 0,
            received: Vec::new(),
            fin_seen: false,
        }
    }

    /// The next packet with `control` and `data` (advancing the sequence number).
    pub fn packet(&mut self, control: TcpControl, data: &[u8]) -> Vec<u8> {
        let ack = (control != TcpControl::Syn).then_some(self.rcv_next);
        let p = tcp_packet(self, ack, control, data);
        self.next_seq = self.next_seq.wrapping_add(data.len() as u32);
        if matches!(control, TcpControl::Syn | TcpControl::Fin) {
            self.next_seq = self.next_seq.wrapping_add(1);
        }
        p
    }

    /// Send the next packet into `t`; what `t` sent back (also absorbed).
    pub fn send(
        &mut self,
        t: &mut Terminator,
        control: TcpControl,
        data: &[u8],
        trust: Class,
    ) -> Vec<Seg> {
        let p = self.packet(control, data);
        let mut out = Vec::new();
        t.receive(&p, trust, Instant::now(), &mut |o| out.extend(parse(o)));
        self.absorb(&out);
        out
    }

    /// Take in the segments addressed to this client.
    pub fn absorb(&mut self, segs: &[Seg]) {
        for s in segs
            .iter()
            .filter(|s| s.dst == self.src && s.dport == self.sport)
        {
            match s.control {
                TcpControl::Syn => self.rcv_next = s.seq.wrapping_add(1),
                TcpControl::Fin => {
                    self.received.extend_from_slice(&s.payload);
                    self.rcv_next = s.seq.wrapping_add(s.payload.len() as u32 + 1);
                    self.fin_seen = true;
                }
                _ if !s.payload.is_empty() => {
                    self.received.extend_from_slice(&s.payload);
                    self.rcv_next = s.seq.wrapping_add(s.payload.len() as u32);
                }
                _ => {}
            }
        }
    }

    /// SYN, SYN-ACK, ACK; true when the handshake completed.
    pub fn connect(&mut self, t: &mut Terminator, trust: Class) -> bool {
        let out = self.send(t, TcpControl::Syn, &[], trust);
        let synack = out
            .iter()
            .any(|s| s.control == TcpControl::Syn && s.ack == Some(self.next_seq));
        if synack {
            self.send(t, TcpControl::None, &[], Class::KnownGood);
        }
        synack
    }
}
