//! Userspace TCP for whole slices: smoltcp, sharded so that the cost of a packet does not
//! grow with the number of connections.
//!
//! ```text
//!  IP packet ──► flow key (addresses, ports) ──► keyed hash ──► shard k
//!                                                               │ Interface k (Medium::Ip, AnyIP)
//!                                                               │ SocketSet k: ~connections/shards sockets
//!                                                               └► ingress, HTTP, egress ──► IP packets out
//! ```
//! **Why shards.** smoltcp 0.14 finds a packet's socket by asking every socket of the
//! interface whether it accepts it, and its egress visits every socket on every poll: with
//! 16,384 sockets in one interface the cost per received packet rose ~450× (measured by
//! the product side). Options were (a) our own 4-tuple → socket index in front of one
//! interface (smoltcp's ingress would still scan; it needs a change to smoltcp), (b) a
//! patched smoltcp with indexed dispatch (a fork to carry), (c) many small interfaces
//! chosen by a well-mixed hash of the flow. (c) needs no change to smoltcp: with `shards`
//! interfaces a packet touches about `connections / shards` sockets. The hash is keyed per
//! process (SipHash with a random key), so a client cannot aim its flows at one shard.
//! NDP and ARP never reach the shards: the dataplane answers them and the interfaces are
//! `Medium::Ip`. Timers: each shard's next deadline (`poll_at`) sits in a min-heap, so a
//! poll visits only shards that have something due.
//!
//! **Listeners.** A listening smoltcp socket becomes the connection, so each shard keeps
//! at most one listener per served port, created when a SYN for that shard arrives, within
//! a per-poll SYN budget and the connection limit; a SYN that finds no listener and no
//! budget is dropped and counted (the client retransmits it), never answered with a RST.
//! **Half-open budget**: past half of it new suspect SYNs are dropped; past all of it an
//! assumed-good SYN takes the slot of the oldest half-open connection (which is dropped
//! without a RST). Dropping new SYNs instead would let a flood of conforming spoofed SYNs
//! (each from a fresh /64, so under every per-prefix limit) hold the whole budget for the
//! handshake timeout and lock real clients out — the end-to-end test saw exactly that;
//! evicting the oldest gives every half-open slot a lifetime of budget ÷ flood rate
//! (~100 ms for 2048 slots at 20k SYN/s), far longer than a real client's round trip.
//! **Recycling.** A closed connection's socket and HTTP state go back to free lists and
//! are reused in place (buffers kept), so memory is fixed at `max_connections` ×
//! (`rx_buffer` + `tx_buffer` + state). TIME-WAIT is not kept: a socket reaching it is
//! recycled right after the egress that sends the ACK of the peer's FIN (the peer then
//! has our FIN and our ACK of its FIN; should that ACK be lost, its retransmitted FIN
//! meets no connection and gets a RST, which closes it too). Idle connections close
//! after `idle_timeout_s`. Per connection: `rx_buffer + tx_buffer` of socket buffers
//! (12 KiB by default) plus the HTTP buffer, which holds at most a request's head and
//! body (bounded by `[terminator.http]`) and shrinks back to 4 KiB after a large one.
//!
//! **Slow clients** (the seed's "slow-motion DoS"). A request not complete within
//! `header_timeout_ms` — from the handshake for a connection's first request, else from
//! the moment the connection owed the client nothing and a new head had started — is
//! answered `408` and closed (slowloris, `slow_header`). The clock runs until the body
//! is in too, so a body sent a byte at a time is cut off the same way. A connection with bytes to send
//! whose client acknowledged none of them for `send_stall_ms` is reset (slow read,
//! `slow_read`). Both are counted per worker and per source prefix (`slow_prefix_len`, a
//! fixed table of [`SLOW_TABLE`] prefixes, the least recently seen evicted and counted);
//! the [`SLOW_REPORTED`] prefixes with the most events go to weir-cp, whose policy loop
//! blocks prefixes that keep doing it. A closing connection that has sent everything and
//! waits only for the client's FIN is aborted after [`CLOSE_LINGER_MS`], so a client that
//! never closes cannot keep the slot either. The deadlines are checked every
//! [`DEADLINE_SCAN_MS`] by one walk over the connections (off the per-packet path).
//!
//! **Asynchronous adapters.** Answers that come later (`nats`) are collected from the
//! adapter at every [`Terminator::poll`] and written to their connection (matched by slot
//! and serial; a connection gone since is counted in `late_answers`), and that
//! connection's shard is served again. A connection that stopped reading because the
//! worker's in-flight limit was reached is queued and served again once the adapter can
//! start requests. A connection closes only when it owes the client nothing.
//!
//! SYN cookies: not used. smoltcp keeps per-connection state from the SYN on and has no
//! hook to accept a connection from a cookie-bearing ACK; the dataplane's classifier
//! already keeps spoofed floods off the terminators (non-conforming → rejected, conforming
//! → suspect with a per-prefix rate limit), and the half-open budget bounds what is left.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant as StdInstant};

use serde::Serialize;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp::{self, State};
use smoltcp::time::{Duration as SmolDuration, Instant};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, Ipv4Address, Ipv6Address};
use weir_model::config::TerminatorConfig;
use weir_model::{Class, FlowKey};

use crate::adapter::{Adapter, AdapterStats, Completion, Peer, Ticket};
use crate::http::{ConnAction, HttpConn, HttpStats};

/// IP MTU of the terminators' packets.
pub const MTU: usize = 1500;
/// Packets a shard may queue for transmission in one step.
const TX_SLOTS: usize = 64;
/// Source prefixes a worker counts slow clients for.
pub const SLOW_TABLE: usize = 256;
/// Source prefixes with the most slow-client events in a worker's report.
pub const SLOW_REPORTED: usize = 16;
/// How often the deadlines (slow clients, answers given up on) are checked, ms.
pub const DEADLINE_SCAN_MS: u64 = 100;
/// A closing connection that sent everything waits this long for the client's FIN, ms.
pub const CLOSE_LINGER_MS: u64 = 10_000;

/// Slow-client events of one source prefix (cumulative since it entered the table).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlowSource {
    /// The prefix (IPv6, or IPv4-mapped), host bits zero.
    pub prefix: u128,
    /// Its length in the 128-bit space (0 = an empty report slot).
    pub len: u8,
    /// Connections closed for an incomplete head (`slow-header`).
    pub header: u64,
    /// Connections reset for an undrained reply (`slow-read`).
    pub read: u64,
    /// When it was last counted (terminator clock, ms).
    pub last_ms: u64,
}

/// A handle on the upstream behind the adapter, carried in the stats; equal when both
/// point to the same upstream.
#[derive(Debug, Clone, Default)]
pub struct UpstreamRef(pub Option<std::sync::Arc<crate::nats::Upstream>>);

impl PartialEq for UpstreamRef {
    fn eq(&self, o: &UpstreamRef) -> bool {
        match (&self.0, &o.0) {
            (Some(a), Some(b)) => std::sync::Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}
impl Eq for UpstreamRef {}

/// What a terminator counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TerminatorStats {
    /// IP packets received.
    pub packets_in: u64,
    /// IP packets sent.
    pub packets_out: u64,
    /// Packets too short or of a kind the terminator cannot key (dropped).
    pub unparsable: u64,
    /// Connections that completed the handshake.
    pub established: u64,
    /// Connections closed and recycled.
    pub closed: u64,
    /// Connections open now (half-open included).
    pub active: u64,
    /// Half-open now.
    pub half_open: u64,
    /// SYNs dropped: half-open budget (suspect past half of it).
    pub syn_dropped_suspect: u64,
    /// SYNs dropped: half-open budget spent and nothing to evict.
    pub syn_dropped_budget: u64,
    /// Half-open connections dropped to make room for a new assumed-good SYN.
    pub half_open_evicted: u64,
    /// SYNs dropped: the per-poll SYN budget was spent.
    pub syn_dropped_poll_budget: u64,
    /// SYNs dropped: every connection slot in use.
    pub syn_dropped_full: u64,
    /// Connections closed for idleness.
    pub idle_closed: u64,
    /// Packets smoltcp wanted to send while the tx queue was full (sent on a later poll).
    pub tx_full: u64,
    /// Sockets allocated so far (≤ max_connections + served ports per shard).
    pub sockets_allocated: u64,
    /// Connections closed with `408`: the request head did not come within
    /// `header_timeout_ms` (slowloris).
    pub slow_header: u64,
    /// Connections reset: a reply not drained by the client for `send_stall_ms` (slow read).
    pub slow_read: u64,
    /// Closing connections aborted after waiting [`CLOSE_LINGER_MS`] for the client's FIN.
    pub closed_lingering: u64,
    /// Source prefixes evicted from the slow-client table (their counts restart).
    pub slow_sources_evicted: u64,
    /// Times a connection stopped reading because the adapter's per-worker in-flight
    /// limit was reached (it is served again when a place frees up).
    pub in_flight_stalls: u64,
    /// HTTP counters.
    pub http: HttpStats,
    /// The adapter's counters (asynchronous adapters).
    pub adapter: AdapterStats,
    /// The prefixes with the most slow-client events, most first (empty slots: `len` 0).
    #[serde(skip)]
    pub slow_sources: [SlowSource; SLOW_REPORTED],
    /// The upstream behind the adapter, if any (its own stats live there).
    #[serde(skip)]
    pub upstream: UpstreamRef,
}

/// Slow-client events per source prefix, in a fixed table.
#[derive(Debug)]
struct SlowMeter {
    entries: Box<[SlowSource]>,
    len_v6: u8,
    evicted: u64,
}

impl SlowMeter {
    fn new(len_v6: u8) -> SlowMeter {
        SlowMeter {
            entries: vec![SlowSource::default(); SLOW_TABLE].into_boxed_slice(),
            len_v6,
            evicted: 0,
        }
    }

    /// Count one event of `addr` (IPv6 or IPv4-mapped).
    fn note(&mut self, addr: u128, read: bool, ms: u64) {
        let v4 = addr >> 32 == 0xffff;
        let len = if v4 { 96 + 24 } else { self.len_v6 };
        let prefix = addr & mask(len);
        let mut slot = None;
        let mut oldest = 0;
        for (i, e) in self.entries.iter().enumerate() {
            if e.len == len && e.prefix == prefix {
                slot = Some(i);
                break;
            }
            if e.len == 0 {
                if slot.is_none() {
                    slot = Some(i);
                }
            } else if self.entries[oldest].len != 0 && e.last_ms < self.entries[oldest].last_ms {
                oldest = i;
            }
        }
        let i = slot.unwrap_or_else(|| {
            self.evicted += 1;
            oldest
        });
        let Some(e) = self.entries.get_mut(i) else {
            return;
        };
        if e.len != len || e.prefix != prefix {
            *e = SlowSource {
                prefix,
                len,
                ..SlowSource::default()
            };
        }
        if read {
            e.read += 1;
        } else {
            e.header += 1;
        }
        e.last_ms = ms;
    }

    /// The [`SLOW_REPORTED`] prefixes with the most events.
    fn top(&self) -> [SlowSource; SLOW_REPORTED] {
        let mut top = [SlowSource::default(); SLOW_REPORTED];
        let total = |e: &SlowSource| e.header + e.read;
        for e in self.entries.iter().filter(|e| e.len != 0) {
            // Insertion into a short sorted array: no allocation, SLOW_TABLE × SLOW_REPORTED.
            let Some(at) = top.iter().position(|t| t.len == 0 || total(e) > total(t)) else {
                continue;
            };
            top.copy_within(at..SLOW_REPORTED - 1, at + 1);
            top[at] = *e;
        }
        top
    }
}

fn mask(len: u8) -> u128 {
    match len {
        0 => 0,
        l if l >= 128 => u128::MAX,
        l => u128::MAX << (128 - u32::from(l)),
    }
}

impl TerminatorStats {
    /// Every counter with its name: the one table weir-dp's stats (and so weirctl and
    /// Prometheus) take the `term-…` names from. A test holds it to every field.
    pub fn counters(&self) -> [(&'static str, u64); 38] {
        let h = &self.http;
        let a = &self.adapter;
        [
            ("term-packets-in", self.packets_in),
            ("term-packets-out", self.packets_out),
            ("term-unparsable", self.unparsable),
            ("term-established", self.established),
            ("term-closed", self.closed),
            ("term-active", self.active),
            ("term-half-open", self.half_open),
            ("term-syn-dropped-suspect", self.syn_dropped_suspect),
            ("term-syn-dropped-budget", self.syn_dropped_budget),
            ("term-half-open-evicted", self.half_open_evicted),
            ("term-syn-dropped-poll-budget", self.syn_dropped_poll_budget),
            ("term-syn-dropped-full", self.syn_dropped_full),
            ("term-idle-closed", self.idle_closed),
            ("term-tx-full", self.tx_full),
            ("term-sockets-allocated", self.sockets_allocated),
            ("term-http-requests", h.requests),
            ("term-http-responses-2xx", h.responses_2xx),
            ("term-http-responses-3xx", h.responses_3xx),
            ("term-http-responses-4xx", h.responses_4xx),
            ("term-http-responses-5xx", h.responses_5xx),
            ("term-http-bad-request", h.bad_request),
            ("term-http-header-too-large", h.header_too_large),
            ("term-http-body-too-large", h.body_too_large),
            ("term-http-not-implemented", h.not_implemented),
            ("term-http-version-not-supported", h.version_not_supported),
            ("term-http-continues", h.continues),
            ("term-http-request-timeout", h.request_timeout),
            ("term-http-gave-up", h.gave_up),
            ("term-http-late-answers", h.late_answers),
            ("term-slow-header", self.slow_header),
            ("term-slow-read", self.slow_read),
            ("term-closed-lingering", self.closed_lingering),
            ("term-slow-sources-evicted", self.slow_sources_evicted),
            ("term-in-flight-stalls", self.in_flight_stalls),
            ("term-adapter-started", a.started),
            ("term-adapter-in-flight", a.in_flight),
            ("term-adapter-completed", a.completed),
            ("term-adapter-unavailable", a.unavailable),
        ]
    }
}

/// The tx queue shared by the shards: fixed slots, drained to the caller's sink after
/// every step.
#[derive(Debug)]
struct TxQueue {
    bufs: Vec<u8>,
    lens: Vec<usize>,
    full: u64,
}

impl TxQueue {
    fn new() -> TxQueue {
        TxQueue {
            bufs: vec![0; TX_SLOTS * MTU],
            lens: Vec::with_capacity(TX_SLOTS),
            full: 0,
        }
    }

    fn drain(&mut self, sink: &mut dyn FnMut(&[u8])) -> u64 {
        let n = self.lens.len();
        for (i, &len) in self.lens.iter().enumerate() {
            if let Some(p) = self.bufs.get(i * MTU..i * MTU + len) {
                sink(p);
            }
        }
        self.lens.clear();
        n as u64
    }
}

/// smoltcp's device for one step of one shard: at most one received packet, and the tx
/// queue.
struct StepDevice<'a> {
    rx: Option<&'a [u8]>,
    tx: &'a mut TxQueue,
}

struct RxTok<'a>(&'a [u8]);
struct TxTok<'a>(&'a mut TxQueue);

impl smoltcp::phy::RxToken for RxTok<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl smoltcp::phy::TxToken for TxTok<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let q = self.0;
        let i = q.lens.len();
        let len = len.min(MTU);
        // `transmit` hands out a token only when a slot is free.
        let r = f(&mut q.bufs[i * MTU..i * MTU + len]);
        q.lens.push(len);
        r
    }
}

impl Device for StepDevice<'_> {
    type RxToken<'b>
        = RxTok<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = TxTok<'b>
    where
        Self: 'b;

    fn receive(&mut self, _: Instant) -> Option<(RxTok<'_>, TxTok<'_>)> {
        if self.tx.lens.len() >= TX_SLOTS {
            self.tx.full += 1;
            return None;
        }
        let p = self.rx.take()?;
        Some((RxTok(p), TxTok(self.tx)))
    }

    fn transmit(&mut self, _: Instant) -> Option<TxTok<'_>> {
        if self.tx.lens.len() >= TX_SLOTS {
            self.tx.full += 1;
            return None;
        }
        Some(TxTok(self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ip;
        c.max_transmission_unit = MTU;
        c.max_burst_size = Some(TX_SLOTS);
        c
    }
}

struct Shard {
    iface: Interface,
    sockets: SocketSet<'static>,
    /// One listener per served port at most: (port, socket).
    listeners: Vec<(u16, SocketHandle)>,
    /// Connections of this shard (indexes into `Terminator::conns`).
    conns: Vec<u32>,
    /// The deadline queued in the timer heap for this shard, if any.
    next_at: Option<u64>,
}

struct Conn {
    /// Which connection this slot holds (slots are reused).
    serial: u64,
    shard: u32,
    handle: SocketHandle,
    http: HttpConn,
    /// Response bytes not yet accepted by the socket.
    out: Vec<u8>,
    sent: usize,
    last_active_ms: u64,
    half_open: bool,
    established: bool,
    eof: bool,
    closing: bool,
    /// The client (address, IPv6 or IPv4-mapped).
    peer: u128,
    /// Since when a request head is awaited with nothing owed to the client (ms).
    head_since_ms: Option<u64>,
    /// Last time the client drained something, or had nothing to drain (ms).
    last_progress_ms: u64,
    /// The socket's send queue at the last look.
    last_send_queue: usize,
    /// Since when the connection has been closing (ms).
    closing_since_ms: Option<u64>,
    /// Queued to be served again when the adapter can start requests.
    starved: bool,
    /// Aborted: recycle only after egress has sent the RST.
    reset_pending: bool,
}

/// One worker's terminator.
pub struct Terminator {
    base: StdInstant,
    shards: Vec<Shard>,
    tx: TxQueue,
    conns: Vec<Option<Conn>>,
    free_conn_ids: Vec<u32>,
    free_sockets: Vec<tcp::Socket<'static>>,
    free_http: Vec<(HttpConn, Vec<u8>)>,
    timers: BinaryHeap<Reverse<(u64, u32)>>,
    /// Scratch list of shards due in a poll (kept to avoid allocating).
    due: Vec<u32>,
    /// Half-open connections, oldest first (entries that completed are skipped lazily).
    half_open_fifo: std::collections::VecDeque<(u32, u64)>,
    /// Connections opened so far (a connection's serial number).
    opened: u64,
    adapter: Box<dyn Adapter>,
    cfg: TerminatorConfig,
    hasher: std::collections::hash_map::RandomState,
    syn_this_poll: u32,
    last_idle_scan_ms: u64,
    stats: TerminatorStats,
    /// HTTP counters of recycled connections.
    http_done: HttpStats,
    /// Answers collected from the adapter in a poll (kept to avoid allocating).
    completions: Vec<(Ticket, Completion)>,
    /// Connections that stopped reading at the worker's in-flight limit: (slot, serial).
    starved: std::collections::VecDeque<(u32, u64)>,
    slow: SlowMeter,
    last_deadline_scan_ms: u64,
}

impl std::fmt::Debug for Terminator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminator")
            .field("shards", &self.shards.len())
            .field("stats", &self.stats)
            .finish()
    }
}

/// What the terminator reads of a packet before smoltcp does: its flow (the shard) and
/// whether it opens a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Keyed {
    flow: FlowKey,
    /// A TCP SYN without ACK.
    syn: bool,
}

/// An address as weir keys it: IPv6 as is, IPv4 mapped (`::ffff:a.b.c.d`).
fn addr_u128(a: IpAddress) -> u128 {
    match a {
        IpAddress::Ipv6(a) => u128::from_be_bytes(a.octets()),
        IpAddress::Ipv4(a) => (0xffff_u128 << 32) | u128::from(u32::from_be_bytes(a.octets())),
    }
}

/// Key an IP packet: addresses always, ports and SYN for TCP right after the fixed header
/// (IPv6 without extension headers, IPv4 by IHL), read through `weir-wire`'s views.
/// Anything else keys by addresses only.
fn flow_key(p: &[u8]) -> Option<Keyed> {
    use weir_wire::{ipv4, ipv6, protocol, tcp, tcp_flags};
    let (src, dst, proto, l4) = match p.first()? >> 4 {
        6 => {
            let ip = ipv6::Packet::new_checked(p).ok()?;
            (ip.src_addr(), ip.dst_addr(), ip.next_header(), ip.payload())
        }
        4 => {
            let ip = ipv4::Packet::new_checked(p).ok()?;
            (
                weir_wire::ipv4_mapped(ip.src_addr()),
                weir_wire::ipv4_mapped(ip.dst_addr()),
                ip.protocol(),
                ip.payload(),
            )
        }
        _ => return None,
    };
    let mut key = Keyed {
        flow: FlowKey {
            client: src,
            service: dst,
            client_port: 0,
            service_port: 0,
        },
        syn: false,
    };
    if proto == protocol::TCP {
        if let Ok(t) = tcp::Packet::new_checked(l4) {
            key.flow.client_port = t.src_port();
            key.flow.service_port = t.dst_port();
            key.syn = t.flags() & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN;
        }
    }
    Some(key)
}

/// Give `iface` one address in each service prefix (with AnyIP, it then accepts TCP for
/// every address of the prefixes). Replaces what it had.
fn set_service_addrs(iface: &mut Interface, prefixes: &[(u128, u8)]) {
    iface.update_ip_addrs(|addrs| {
        addrs.clear();
        for &(p, len) in prefixes {
            let cidr = if p >> 32 == 0xffff {
                IpCidr::new(
                    IpAddress::Ipv4(Ipv4Address::from_bits((p as u32) | 1)),
                    len.saturating_sub(96),
                )
            } else {
                IpCidr::new(IpAddress::Ipv6(Ipv6Address::from_bits(p | 1)), len)
            };
            if addrs.push(cidr).is_err() {
                break;
            }
        }
    });
}

impl Terminator {
    /// Serve the service `prefixes` from now on (a new policy changed them). With AnyIP
    /// (smoltcp 0.14) the interfaces accept any destination the classifier passes, so what
    /// decides which addresses are served is the classifier and the host path (NDP/ARP);
    /// this keeps each interface's own addresses — the ones smoltcp originates from when
    /// no connection names a source — inside the prefixes in force.
    pub fn set_prefixes(&mut self, prefixes: &[(u128, u8)]) {
        for shard in &mut self.shards {
            set_service_addrs(&mut shard.iface, prefixes);
        }
    }

    /// A terminator for the service `prefixes` (as `(address, length)`, IPv4 as
    /// IPv4-mapped), handing requests to `adapter`.
    pub fn new(
        cfg: &TerminatorConfig,
        prefixes: &[(u128, u8)],
        adapter: Box<dyn Adapter>,
    ) -> Terminator {
        let base = StdInstant::now();
        let hasher = std::collections::hash_map::RandomState::new();
        let seed = hasher.hash_one(0x7465_726d_u64);
        let shards = (0..cfg.shards.max(1))
            .map(|i| {
                let mut dev = StepDevice {
                    rx: None,
                    tx: &mut TxQueue {
                        bufs: Vec::new(),
                        lens: Vec::new(),
                        full: 0,
                    },
                };
                let mut config = Config::new(HardwareAddress::Ip);
                config.random_seed = seed ^ u64::from(i);
                let mut iface = Interface::new(config, &mut dev, Instant::from_millis(0));
                iface.set_any_ip(true);
                set_service_addrs(&mut iface, prefixes);
                Shard {
                    iface,
                    sockets: SocketSet::new(Vec::new()),
                    listeners: Vec::new(),
                    conns: Vec::new(),
                    next_at: None,
                }
            })
            .collect();
        Terminator {
            base,
            shards,
            tx: TxQueue::new(),
            conns: Vec::new(),
            free_conn_ids: Vec::new(),
            free_sockets: Vec::new(),
            free_http: Vec::new(),
            timers: BinaryHeap::new(),
            due: Vec::new(),
            half_open_fifo: std::collections::VecDeque::new(),
            opened: 0,
            adapter,
            cfg: cfg.clone(),
            hasher,
            syn_this_poll: 0,
            last_idle_scan_ms: 0,
            stats: TerminatorStats::default(),
            http_done: HttpStats::default(),
            completions: Vec::new(),
            starved: std::collections::VecDeque::new(),
            slow: SlowMeter::new(cfg.slow_prefix_len),
            last_deadline_scan_ms: 0,
        }
    }

    /// How to wake this terminator's worker when its adapter's answers arrive while it
    /// sleeps (see [`Adapter::set_waker`]).
    pub fn set_waker(&mut self, wake: crate::adapter::Waker) {
        self.adapter.set_waker(wake);
    }

    /// Counters so far.
    pub fn stats(&self) -> TerminatorStats {
        let mut s = self.stats.clone();
        s.tx_full = self.tx.full;
        s.slow_sources_evicted = self.slow.evicted;
        s.slow_sources = self.slow.top();
        s.adapter = self.adapter.stats();
        s.upstream = UpstreamRef(self.adapter.upstream());
        let mut http = self.http_done;
        for c in self.conns.iter().flatten() {
            http.add(c.http.stats());
        }
        s.http = http;
        s
    }

    /// Bytes a connection can hold at most: socket buffers, the socket, the HTTP state's
    /// limits, and the bookkeeping.
    pub fn memory_per_connection(&self) -> usize {
        self.cfg.rx_buffer as usize
            + self.cfg.tx_buffer as usize
            + std::mem::size_of::<tcp::Socket<'static>>()
            + std::mem::size_of::<Conn>()
            + self.cfg.http.max_header_bytes as usize
            + self.cfg.http.max_body_bytes as usize
    }

    fn ms(&self, now: StdInstant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.base).as_millis()).unwrap_or(u64::MAX)
    }

    fn shard_of(&self, k: &FlowKey) -> usize {
        let mut h = self.hasher.build_hasher();
        h.write_u128(k.client);
        h.write_u128(k.service);
        h.write_u16(k.client_port);
        h.write_u16(k.service_port);
        (h.finish() % self.shards.len() as u64) as usize
    }

    /// A packet from the rings (the IP packet, without its link header), `trust` by the
    /// ring it came from. Replies go to `sink` as IP packets.
    pub fn receive(
        &mut self,
        packet: &[u8],
        trust: Class,
        now: StdInstant,
        sink: &mut dyn FnMut(&[u8]),
    ) {
        self.stats.packets_in += 1;
        let Some(key) = flow_key(packet) else {
            self.stats.unparsable += 1;
            return;
        };
        let s = self.shard_of(&key.flow);
        let ms = self.ms(now);
        if key.syn
            && self.cfg.ports.contains(&key.flow.service_port)
            && !self.admit_syn(s, key.flow.service_port, trust, ms)
        {
            return;
        }
        let t = Instant::from_millis(i64::try_from(ms).unwrap_or(i64::MAX));
        let Some(shard) = self.shards.get_mut(s) else {
            return;
        };
        let mut dev = StepDevice {
            rx: Some(packet),
            tx: &mut self.tx,
        };
        let _ = shard
            .iface
            .poll_ingress_single(t, &mut dev, &mut shard.sockets);
        self.step(s, ms, sink);
    }

    /// Decide whether a SYN for shard `s` may open a connection, and make sure a listener
    /// is waiting for it there.
    fn admit_syn(&mut self, s: usize, port: u16, trust: Class, ms: u64) -> bool {
        let budget = u64::from(self.cfg.half_open_budget);
        let half_open = self.stats.half_open;
        if trust == Class::Suspect && half_open * 2 >= budget {
            self.stats.syn_dropped_suspect += 1;
            return false;
        }
        if half_open >= budget && !self.evict_oldest_half_open(ms) {
            self.stats.syn_dropped_budget += 1;
            return false;
        }
        let Some(shard) = self.shards.get(s) else {
            return false;
        };
        if shard.listeners.iter().any(|&(p, _)| p == port) {
            return true;
        }
        if self.syn_this_poll >= self.cfg.syn_per_poll {
            self.stats.syn_dropped_poll_budget += 1;
            return false;
        }
        if self.stats.active >= u64::from(self.cfg.max_connections) {
            self.stats.syn_dropped_full += 1;
            return false;
        }
        let mut sock = match self.free_sockets.pop() {
            Some(sock) => sock,
            None => {
                self.stats.sockets_allocated += 1;
                tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0; self.cfg.rx_buffer as usize]),
                    tcp::SocketBuffer::new(vec![0; self.cfg.tx_buffer as usize]),
                )
            }
        };
        // A recycled socket is Closed; `listen` resets it without sending anything.
        if sock.listen(port).is_err() {
            return false;
        }
        sock.set_ack_delay(None);
        sock.set_nagle_enabled(false);
        sock.set_timeout(Some(SmolDuration::from_secs(10)));
        self.syn_this_poll += 1;
        if let Some(shard) = self.shards.get_mut(s) {
            let h = shard.sockets.add(sock);
            shard.listeners.push((port, h));
        }
        true
    }

    /// Drop the oldest half-open connection (no RST: its socket is recycled before it is
    /// polled again). False when there is none.
    fn evict_oldest_half_open(&mut self, ms: u64) -> bool {
        while let Some((id, serial)) = self.half_open_fifo.pop_front() {
            let Some(Some(conn)) = self.conns.get_mut(id as usize) else {
                continue;
            };
            if !conn.half_open || conn.serial != serial {
                continue;
            }
            let (s, h) = (conn.shard as usize, conn.handle);
            if let Some(shard) = self.shards.get_mut(s) {
                shard.sockets.get_mut::<tcp::Socket>(h).abort();
            }
            self.stats.half_open_evicted += 1;
            self.serve(s, ms, false);
            return true;
        }
        false
    }

    /// After ingress or a timer: take up new connections, run HTTP, send, recycle, and
    /// push out what smoltcp has to send.
    fn step(&mut self, s: usize, ms: u64, sink: &mut dyn FnMut(&[u8])) {
        let t = Instant::from_millis(i64::try_from(ms).unwrap_or(i64::MAX));
        self.take_listeners(s, ms);
        self.serve(s, ms, false);
        if let Some(shard) = self.shards.get_mut(s) {
            let mut dev = StepDevice {
                rx: None,
                tx: &mut self.tx,
            };
            let _ = shard.iface.poll_egress(t, &mut dev, &mut shard.sockets);
        }
        self.stats.packets_out += self.tx.drain(sink);
        // Sending may have finished a close: serve once more for recycling (TIME-WAIT
        // sockets only now, after egress has sent the ACK of the peer's FIN).
        self.serve(s, ms, true);
        self.schedule(s, t);
    }

    /// Listeners that got a SYN are connections now.
    fn take_listeners(&mut self, s: usize, ms: u64) {
        let Some(shard) = self.shards.get_mut(s) else {
            return;
        };
        let mut i = 0;
        while i < shard.listeners.len() {
            let (_, h) = shard.listeners[i];
            let state = shard.sockets.get::<tcp::Socket>(h).state();
            if state == State::Listen {
                i += 1;
                continue;
            }
            shard.listeners.swap_remove(i);
            let (mut http, out) = self
                .free_http
                .pop()
                .unwrap_or_else(|| (HttpConn::new(self.cfg.http), Vec::new()));
            self.opened += 1;
            let (peer, peer_port) = shard
                .sockets
                .get::<tcp::Socket>(h)
                .remote_endpoint()
                .map_or((0, 0), |ep| (addr_u128(ep.addr), ep.port));
            let id_next = self
                .free_conn_ids
                .last()
                .copied()
                .unwrap_or(self.conns.len() as u32);
            http.set_tag(
                id_next,
                self.opened,
                Peer {
                    addr: peer.to_be_bytes(),
                    port: peer_port,
                },
            );
            let conn = Conn {
                serial: self.opened,
                shard: s as u32,
                handle: h,
                http,
                out,
                sent: 0,
                last_active_ms: ms,
                half_open: state == State::SynReceived,
                established: false,
                eof: false,
                closing: false,
                peer,
                head_since_ms: None,
                last_progress_ms: ms,
                last_send_queue: 0,
                closing_since_ms: None,
                starved: false,
                reset_pending: false,
            };
            let half_open = conn.half_open;
            if half_open {
                self.stats.half_open += 1;
            }
            self.stats.active += 1;
            let id = match self.free_conn_ids.pop() {
                Some(id) => {
                    if let Some(slot) = self.conns.get_mut(id as usize) {
                        *slot = Some(conn);
                    }
                    id
                }
                None => {
                    self.conns.push(Some(conn));
                    (self.conns.len() - 1) as u32
                }
            };
            if half_open {
                self.half_open_fifo.push_back((id, self.opened));
                // Entries of connections that completed are skipped when popped; keep the
                // queue from growing past the live ones.
                if self.half_open_fifo.len() > 2 * (self.cfg.half_open_budget as usize) + 64 {
                    let conns = &self.conns;
                    self.half_open_fifo.retain(|&(i, serial)| {
                        conns
                            .get(i as usize)
                            .and_then(Option::as_ref)
                            .is_some_and(|c| c.half_open && c.serial == serial)
                    });
                }
            }
            shard.conns.push(id);
        }
    }

    /// Move data between the sockets of shard `s` and HTTP; recycle finished connections.
    fn serve(&mut self, s: usize, ms: u64, after_egress: bool) {
        let Some(shard) = self.shards.get_mut(s) else {
            return;
        };
        let adapter = &mut *self.adapter;
        let stats = &mut self.stats;
        let starved = &mut self.starved;
        let out_limit = self.cfg.tx_buffer as usize;
        let mut i = 0;
        while i < shard.conns.len() {
            let id = shard.conns[i];
            let Some(Some(conn)) = self.conns.get_mut(id as usize) else {
                shard.conns.swap_remove(i);
                continue;
            };
            let sock = shard.sockets.get_mut::<tcp::Socket>(conn.handle);
            let state = sock.state();
            if conn.half_open && state != State::SynReceived {
                conn.half_open = false;
                stats.half_open = stats.half_open.saturating_sub(1);
            }
            if !conn.established && matches!(state, State::Established | State::CloseWait) {
                conn.established = true;
                stats.established += 1;
            }
            // Slow-read clock: the client drained something, or had nothing to drain.
            let queued_before = sock.send_queue();
            if queued_before < conn.last_send_queue
                || (queued_before == 0 && conn.sent == conn.out.len())
            {
                conn.last_progress_ms = ms;
            }
            conn.http.set_clock(ms);
            // Responses wait in `out` up to about one send buffer; past that the request
            // bytes stay in the socket, whose window then slows the client down.
            let out_limit = out_limit.max(conn.sent + 1);
            if sock.can_recv() && !conn.closing && conn.out.len() < out_limit {
                let out = &mut conn.out;
                let http = &mut conn.http;
                let r = sock.recv(|buf| {
                    let (taken, action) = http.on_data_bounded(buf, adapter, out, out_limit);
                    (taken, action)
                });
                if let Ok(ConnAction::Close) = r {
                    conn.closing = true;
                }
                conn.last_active_ms = ms;
            } else if conn.out.is_empty() && conn.http.has_partial_request() && !conn.closing {
                // Requests taken earlier but not answered while `out` was full (or while
                // the in-flight limits held them back).
                if let ConnAction::Close = conn
                    .http
                    .on_data_bounded(&[], adapter, &mut conn.out, out_limit)
                    .1
                {
                    conn.closing = true;
                }
            } else if !sock.may_recv() && conn.established && !conn.eof {
                conn.eof = true;
                if let ConnAction::Close = conn.http.on_eof(&mut conn.out) {
                    conn.closing = true;
                }
            }
            if conn.http.starved() && !conn.starved {
                conn.starved = true;
                stats.in_flight_stalls += 1;
                starved.push_back((id, conn.serial));
            }
            if conn.sent < conn.out.len() && sock.can_send() {
                if let Ok(n) = sock.send_slice(&conn.out[conn.sent..]) {
                    conn.sent += n;
                }
            }
            if conn.sent == conn.out.len() {
                conn.out.clear();
                conn.sent = 0;
                // Close once nothing is owed: answers left to the adapter come first.
                if conn.closing
                    && conn.http.owes_nothing()
                    && sock.is_open()
                    && sock.state() != State::Closed
                {
                    sock.close();
                }
            }
            conn.last_send_queue = sock.send_queue();
            if conn.closing {
                conn.closing_since_ms.get_or_insert(ms);
            }
            // Slowloris clock: a head is awaited while the client is owed nothing.
            let quiet = conn.established
                && !conn.closing
                && conn.http.owes_nothing()
                && conn.out.is_empty()
                && sock.send_queue() == 0;
            let head_due = conn.http.has_partial_request() || conn.http.stats().requests == 0;
            if quiet && head_due {
                conn.head_since_ms.get_or_insert(ms);
            } else {
                conn.head_since_ms = None;
            }
            let state = sock.state();
            let closed = state == State::Closed && (!conn.reset_pending || after_egress);
            if closed || (after_egress && state == State::TimeWait) {
                // Done: recycle the socket and the HTTP state in place.
                sock.abort();
                if conn.half_open {
                    stats.half_open = stats.half_open.saturating_sub(1);
                }
                stats.active = stats.active.saturating_sub(1);
                stats.closed += 1;
                let handle = conn.handle;
                if let Some(conn) = self.conns.get_mut(id as usize).and_then(Option::take) {
                    self.http_done.add(conn.http.stats());
                    let (mut http, mut out) = (conn.http, conn.out);
                    http.reset();
                    out.clear();
                    self.free_http.push((http, out));
                }
                // Only TCP sockets are ever added (the one socket type built in).
                #[allow(irrefutable_let_patterns)]
                if let smoltcp::socket::Socket::Tcp(sock) = shard.sockets.remove(handle) {
                    self.free_sockets.push(sock);
                }
                self.free_conn_ids.push(id);
                shard.conns.swap_remove(i);
                continue;
            }
            i += 1;
        }
    }

    fn schedule(&mut self, s: usize, t: Instant) {
        let Some(shard) = self.shards.get_mut(s) else {
            return;
        };
        let Some(at) = shard.iface.poll_at(t, &shard.sockets) else {
            return;
        };
        let at = u64::try_from(at.total_millis()).unwrap_or(0);
        if shard.next_at.is_none_or(|n| at < n) {
            shard.next_at = Some(at);
            self.timers.push(Reverse((at, s as u32)));
        }
    }

    /// Between bursts: run what is due (retransmissions, closes), close idle connections,
    /// open the next poll's SYN budget.
    pub fn poll(&mut self, now: StdInstant, sink: &mut dyn FnMut(&[u8])) {
        self.syn_this_poll = 0;
        let ms = self.ms(now);
        self.collect_answers(ms, sink);
        if ms.saturating_sub(self.last_deadline_scan_ms) >= DEADLINE_SCAN_MS {
            self.last_deadline_scan_ms = ms;
            self.check_deadlines(ms, sink);
        }
        // Take what is due first: shards rescheduled while they run ("now" again, e.g. a
        // full tx queue) wait for the next poll instead of spinning here.
        let mut due = std::mem::take(&mut self.due);
        while let Some(&Reverse((at, s))) = self.timers.peek() {
            if at > ms {
                break;
            }
            self.timers.pop();
            let Some(shard) = self.shards.get_mut(s as usize) else {
                continue;
            };
            if shard.next_at != Some(at) {
                continue; // superseded by an earlier entry
            }
            shard.next_at = None;
            due.push(s);
        }
        for &s in &due {
            self.step(s as usize, ms, sink);
        }
        due.clear();
        self.due = due;
        if ms.saturating_sub(self.last_idle_scan_ms) >= 1000 {
            self.last_idle_scan_ms = ms;
            self.close_idle(ms, sink);
        }
    }

    /// Answers from the adapter to their connections; connections that waited for the
    /// worker's in-flight limit are served again once requests can start.
    fn collect_answers(&mut self, ms: u64, sink: &mut dyn FnMut(&[u8])) {
        let mut done = std::mem::take(&mut self.completions);
        self.adapter
            .poll(&mut |ticket, answer| done.push((ticket, answer)));
        let mut touched = std::mem::take(&mut self.due);
        for (ticket, answer) in done.drain(..) {
            match self.conns.get_mut(ticket.conn as usize) {
                Some(Some(conn)) if conn.serial == ticket.serial => {
                    if conn.sent == conn.out.len() {
                        // Nothing was waiting for the client: the slow-read clock starts now.
                        conn.last_progress_ms = ms;
                    }
                    conn.http.set_clock(ms);
                    if conn.http.complete(ticket.seq, answer, &mut conn.out) {
                        touched.push(conn.shard);
                    }
                }
                _ => self.http_done.late_answers += 1,
            }
        }
        self.completions = done;
        while self.adapter.can_start() {
            let Some((id, serial)) = self.starved.pop_front() else {
                break;
            };
            if let Some(Some(conn)) = self.conns.get_mut(id as usize) {
                if conn.serial == serial {
                    conn.starved = false;
                    touched.push(conn.shard);
                }
            }
        }
        // Entries of connections recycled while they waited are skipped when popped; keep
        // the queue from growing past the live ones while no place frees up.
        if self.starved.len() > 2 * self.cfg.max_connections as usize + 64 {
            let conns = &self.conns;
            self.starved.retain(|&(i, serial)| {
                conns
                    .get(i as usize)
                    .and_then(Option::as_ref)
                    .is_some_and(|c| c.starved && c.serial == serial)
            });
        }
        touched.sort_unstable();
        touched.dedup();
        for &s in &touched {
            self.step(s as usize, ms, sink);
        }
        touched.clear();
        self.due = touched;
    }

    /// Slow clients, lingering closes, answers given up on.
    fn check_deadlines(&mut self, ms: u64, sink: &mut dyn FnMut(&[u8])) {
        let header_ms = self.cfg.header_timeout_ms;
        let stall_ms = self.cfg.send_stall_ms;
        let give_up = self.adapter.give_up_after_ms();
        let mut touched = std::mem::take(&mut self.due);
        for conn in self.conns.iter_mut().flatten() {
            let Some(shard) = self.shards.get_mut(conn.shard as usize) else {
                continue;
            };
            let sock = shard.sockets.get_mut::<tcp::Socket>(conn.handle);
            if conn.reset_pending {
                continue;
            }
            if let Some(since) = conn.head_since_ms {
                if ms.saturating_sub(since) >= header_ms && !conn.closing {
                    conn.head_since_ms = None;
                    conn.closing = true;
                    conn.last_progress_ms = ms;
                    let _ = conn.http.time_out_head(&mut conn.out);
                    self.stats.slow_header += 1;
                    self.slow.note(conn.peer, false, ms);
                    touched.push(conn.shard);
                    continue;
                }
            }
            let queued = conn.out.len() - conn.sent + sock.send_queue();
            if queued > 0 && ms.saturating_sub(conn.last_progress_ms) >= stall_ms {
                sock.abort();
                conn.reset_pending = true;
                conn.closing = true;
                self.stats.slow_read += 1;
                self.slow.note(conn.peer, true, ms);
                touched.push(conn.shard);
                continue;
            }
            if let Some(since) = conn.closing_since_ms {
                if queued == 0
                    && conn.http.owes_nothing()
                    && ms.saturating_sub(since) >= CLOSE_LINGER_MS
                {
                    sock.abort();
                    conn.reset_pending = true;
                    self.stats.closed_lingering += 1;
                    touched.push(conn.shard);
                    continue;
                }
            }
            if let Some(after) = give_up {
                if conn.http.waiting() > 0 {
                    conn.http.set_clock(ms);
                    if conn.sent == conn.out.len() {
                        conn.last_progress_ms = ms;
                    }
                    if conn.http.expire(after, &mut conn.out) > 0 {
                        touched.push(conn.shard);
                    }
                }
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for &s in &touched {
            self.step(s as usize, ms, sink);
        }
        touched.clear();
        self.due = touched;
    }

    fn close_idle(&mut self, ms: u64, sink: &mut dyn FnMut(&[u8])) {
        let idle = self.cfg.idle_timeout_s.saturating_mul(1000);
        let mut touched = Vec::new();
        for conn in self.conns.iter_mut().flatten() {
            if ms.saturating_sub(conn.last_active_ms) >= idle && !conn.closing {
                conn.closing = true;
                self.stats.idle_closed += 1;
                if let Some(shard) = self.shards.get_mut(conn.shard as usize) {
                    shard.sockets.get_mut::<tcp::Socket>(conn.handle).close();
                    touched.push(conn.shard as usize);
                }
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for s in touched {
            self.step(s, ms, sink);
        }
    }

    /// The earliest time something is due (for a worker that may sleep), if any.
    pub fn next_deadline(&self) -> Option<StdInstant> {
        self.timers
            .peek()
            .map(|Reverse((at, _))| self.base + Duration::from_millis(*at))
    }
}
