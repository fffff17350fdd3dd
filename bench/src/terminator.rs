//! The terminator on one thread, in process: what a received packet costs as the number of
//! open connections grows, how many connections a second it opens and closes, and what a
//! connection costs in memory. `weir-bench terminator` prints the table;
//! `scripts/bench-terminator.sh` runs it after comparing weir with nginx.
//!
//! **Per-packet curve.** N keep-alive connections are opened first (untimed) with the
//! scripted [`Client`]; then M request packets, each one small `GET` on an established
//! connection, are sent round-robin over the N connections, with `poll` after every
//! [`BURST`] packets as a worker does between bursts. Each request carries the ACK of the
//! previous response on its connection, so no separate ACK is sent. The request packets
//! are all built before the clock starts (sequence and acknowledgement numbers follow
//! from the request's length and the response's, which a probe measures first: the static
//! adapter's answer has no `Date` and the same length every time), so the timed region is
//! `Terminator::receive` + `poll` and a sink that only counts. The run is checked after
//! the clock stops: every request answered, or the figure is refused.
//! Run for the default `shards = 1024` and for `shards = 1` (everything in one smoltcp
//! interface, smoltcp's own behaviour, whose cost grows with N: those runs stop at a time
//! cap and report however many packets they got through).
//!
//! **Connections/s.** K connections one after the other: SYN, ACK, `GET` with
//! `Connection: close` (answered with the response and FIN), the client's FIN. Their
//! packets depend on the server's initial sequence number, so they cannot be built
//! ahead; instead only the terminator's calls are timed (`receive` and `poll`, each
//! bracketed by `Instant::now()`, ~20 ns against microseconds), and the client builds and
//! parses outside the brackets.
//!
//! **Memory.** The configured bound (`Terminator::memory_per_connection`) beside a
//! measurement: resident memory (`VmRSS` of /proc/self/status, in kB, so no page size has
//! to be assumed as /proc/self/statm would need) before and after opening 10,000
//! connections, and again after one request on each, divided by 10,000. It runs first in
//! the process, so that the heap has no freed memory to hand back (which is already
//! resident and would hide the growth). The measured figure is lower than the bound: the
//! socket buffers come zeroed from the allocator and only the pages written become
//! resident.
//!
//! Rejected: criterion. Its sampling repeats a closure on a warm state, but a terminator's
//! state moves on with every packet (sequence numbers, connections that close); one timed
//! pass over prebuilt packets measures exactly the sequence it claims to.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;
use smoltcp::wire::TcpControl;
use weir_model::config::{AdapterConfig, TerminatorConfig};
use weir_model::Class;
use weir_terminator::adapter;
use weir_terminator::client::{parse, Client, SERVICE};
use weir_terminator::tcp::Terminator;

use crate::BURST;

/// The keep-alive request every benchmark connection sends.
pub const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
/// The request of the connections/s run.
pub const GET_CLOSE: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

/// One point of the per-packet curve.
#[derive(Debug, Clone, Serialize)]
pub struct CurvePoint {
    /// smoltcp interfaces.
    pub shards: u32,
    /// Keep-alive connections open.
    pub connections: u32,
    /// Seconds spent opening them (untimed in the figure, shown for scale).
    pub setup_secs: f64,
    /// Request packets in the timed region (`packets_in` delta).
    pub packets: u64,
    /// Timed seconds.
    pub secs: f64,
    /// Nanoseconds per received packet.
    pub ns_per_packet: f64,
    /// Requests answered per second (one request per packet).
    pub requests_per_sec: f64,
    /// Packets the terminator sent per request.
    pub out_per_request: f64,
    /// The run stopped at the time cap before all prebuilt packets were sent.
    pub capped: bool,
}

/// The connections/s run.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionRate {
    /// smoltcp interfaces.
    pub shards: u32,
    /// Connections opened, answered and closed.
    pub connections: u32,
    /// Seconds inside the terminator's calls.
    pub secs: f64,
    /// Connections per second of terminator time.
    pub per_sec: f64,
    /// Packets received per connection.
    pub packets_in_per_connection: f64,
    /// Packets sent per connection.
    pub packets_out_per_connection: f64,
}

/// Memory per connection.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    /// Connections opened.
    pub connections: u32,
    /// `memory_per_connection()`: the configured bound.
    pub bound_bytes: usize,
    /// Resident growth per connection after the handshakes.
    pub established_bytes: f64,
    /// Resident growth per connection after one request and response on each.
    pub after_request_bytes: f64,
}

/// Everything `weir-bench terminator` measures.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Request packet length (IPv6 + TCP + `GET`).
    pub request_packet_bytes: usize,
    /// Response payload length.
    pub response_bytes: usize,
    /// The per-packet curve, shards 1024 first.
    pub curve: Vec<CurvePoint>,
    /// Connections/s.
    pub connection_rate: ConnectionRate,
    /// Memory per connection.
    pub memory: Memory,
}

impl Report {
    /// ns/packet at `hi` connections over ns/packet at `lo`, for `shards`.
    pub fn growth(&self, shards: u32, lo: u32, hi: u32) -> Option<f64> {
        let at = |n| {
            self.curve
                .iter()
                .find(|p| p.shards == shards && p.connections == n)
                .map(|p| p.ns_per_packet)
        };
        Some(at(hi)? / at(lo)?)
    }
}

/// What `weir-bench terminator` runs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Connection counts of the curve.
    pub connections: Vec<u32>,
    /// Shard counts of the curve.
    pub shards: Vec<u32>,
    /// Request packets per point (at most).
    pub packets: usize,
    /// Time cap per point, seconds (timed region; the untimed warm-up gets a fifth of it).
    pub max_secs: f64,
    /// Connections in the connections/s run.
    pub sequential: u32,
    /// Connections opened for the memory figure.
    pub memory_connections: u32,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            connections: vec![16, 100, 1000, 10_000],
            shards: vec![1024, 1],
            packets: 200_000,
            max_secs: 2.0,
            sequential: 20_000,
            memory_connections: 10_000,
        }
    }
}

/// Run `plan`; `progress` gets one line per finished step.
pub fn run(plan: &Plan, progress: &mut dyn FnMut(&str)) -> Result<Report> {
    // First: the heap has nothing freed yet that would hide the growth.
    let memory = memory(plan.memory_connections)?;
    progress(&format!("memory: {memory:?}"));
    let response_bytes = response_len()?;
    let mut curve = Vec::new();
    for &shards in &plan.shards {
        for &n in &plan.connections {
            let p = per_packet(shards, n, plan.packets, plan.max_secs, response_bytes)?;
            progress(&format!("per-packet: {p:?}"));
            curve.push(p);
        }
    }
    let connection_rate = connection_rate(1024, plan.sequential)?;
    progress(&format!("connections/s: {connection_rate:?}"));
    Ok(Report {
        request_packet_bytes: 60 + GET.len(),
        response_bytes,
        curve,
        connection_rate,
        memory,
    })
}

/// A terminator for 2001:db8:5::/64 with the static adapter, `shards` interfaces and
/// otherwise the default configuration.
pub fn terminator(shards: u32) -> Result<Terminator> {
    let a = adapter::build(&AdapterConfig::Static {
        dir: None,
        body: Some("hello from weir\n".into()),
        content_type: None,
    })
    .context("building the static adapter")?;
    let cfg = TerminatorConfig {
        enabled: true,
        shards,
        ..TerminatorConfig::default()
    };
    Ok(Terminator::new(&cfg, &[(SERVICE, 64)], a))
}

/// Open a keep-alive connection for each of `clients`, polling between handshakes as a
/// worker would (the per-poll SYN budget).
fn open(t: &mut Terminator, clients: &mut [Client]) -> Result<()> {
    let n = clients.len();
    for (i, c) in clients.iter_mut().enumerate() {
        ensure!(
            c.connect(t, Class::AssumedGood),
            "connection {i} of {n}: no SYN-ACK ({:?})",
            t.stats()
        );
        if i % 64 == 63 {
            t.poll(Instant::now(), &mut |_| {});
        }
    }
    Ok(())
}

/// The payload length of the answer to [`GET`], from a probe connection.
pub fn response_len() -> Result<usize> {
    let mut t = terminator(1)?;
    let mut c = Client::new(0);
    ensure!(c.connect(&mut t, Class::AssumedGood), "probe: no SYN-ACK");
    for round in 0..2 {
        let before = c.received.len();
        c.send(&mut t, TcpControl::Psh, GET, Class::KnownGood);
        let mut out = Vec::new();
        t.poll(Instant::now(), &mut |p| out.extend(parse(p)));
        c.absorb(&out);
        let got = &c.received[before..];
        ensure!(
            got.starts_with(b"HTTP/1.1 200") && got.ends_with(b"hello from weir\n"),
            "probe request {round}: unexpected answer {:?}",
            String::from_utf8_lossy(got)
        );
        if round == 1 {
            ensure!(
                got.len() == before,
                "probe: answers of different lengths ({before} then {}); the prebuilt \
                 acknowledgements would be wrong",
                got.len()
            );
        }
    }
    Ok(c.received.len() / 2)
}

/// The per-packet cost with `n` connections over `shards` interfaces: up to `packets`
/// request packets, for at most `max_secs`.
pub fn per_packet(
    shards: u32,
    n: u32,
    packets: usize,
    max_secs: f64,
    response_bytes: usize,
) -> Result<CurvePoint> {
    let mut t = terminator(shards)?;
    let setup = Instant::now();
    let mut clients: Vec<Client> = (0..n).map(Client::new).collect();
    open(&mut t, &mut clients)?;
    let setup_secs = setup.elapsed().as_secs_f64();

    // Warm-up (untimed) then the timed packets, all built now, round-robin.
    let warm = (n as usize).min(packets / 10).max(1);
    let total = warm + packets;
    let len = 60 + GET.len();
    let mut bufs = Vec::with_capacity(total * len);
    let response = u32::try_from(response_bytes).context("response length")?;
    for k in 0..total {
        let c = &mut clients[k % n as usize];
        let p = c.packet(TcpControl::Psh, GET);
        ensure!(
            p.len() == len,
            "request packet of {} bytes, not {len}",
            p.len()
        );
        bufs.extend_from_slice(&p);
        // The next request on this connection acknowledges this one's answer.
        c.rcv_next = c.rcv_next.wrapping_add(response);
    }
    let mut pkts = bufs.chunks_exact(len);

    let before = t.stats();
    let cap = Duration::from_secs_f64(max_secs);
    let (mut out, mut sent) = (0u64, 0usize);
    let mut count = |_: &[u8]| out += 1;
    let start = Instant::now();
    for p in pkts.by_ref().take(warm) {
        t.receive(p, Class::KnownGood, Instant::now(), &mut count);
        sent += 1;
        if sent % BURST == 0 {
            t.poll(Instant::now(), &mut count);
            if start.elapsed() > cap / 5 {
                break;
            }
        }
    }
    let warm_stats = t.stats();
    let mut capped = false;
    let mut now = Instant::now();
    let start = now;
    let mut in_burst = 0;
    for p in pkts {
        t.receive(p, Class::KnownGood, now, &mut count);
        in_burst += 1;
        if in_burst == BURST {
            in_burst = 0;
            now = Instant::now();
            t.poll(now, &mut count);
            if now - start > cap {
                capped = true;
                break;
            }
        }
    }
    t.poll(Instant::now(), &mut count);
    let secs = start.elapsed().as_secs_f64();
    let after = t.stats();

    let timed = after.packets_in - warm_stats.packets_in;
    let requests = after.http.requests - before.http.requests;
    let sent_all = after.packets_in - before.packets_in;
    if requests != sent_all {
        bail!(
            "shards {shards}, {n} connections: {sent_all} requests sent, {requests} answered \
             (the prebuilt sequence numbers went wrong?) {after:?}"
        );
    }
    Ok(CurvePoint {
        shards,
        connections: n,
        setup_secs,
        packets: timed,
        secs,
        ns_per_packet: secs * 1e9 / timed.max(1) as f64,
        requests_per_sec: (after.http.requests - warm_stats.http.requests) as f64 / secs,
        out_per_request: out as f64 / requests.max(1) as f64,
        capped,
    })
}

/// `k` connections one after the other over `shards` interfaces: handshake, one `GET`
/// with `Connection: close`, FIN.
pub fn connection_rate(shards: u32, k: u32) -> Result<ConnectionRate> {
    let mut t = terminator(shards)?;
    let mut timed = Duration::ZERO;
    // The terminator's output, copied flat; parsed outside the timed calls.
    let mut out: Vec<u8> = Vec::with_capacity(64 * 1500);
    let mut lens: Vec<usize> = Vec::with_capacity(64);
    let before = t.stats();
    let mut step = |t: &mut Terminator,
                    c: &mut Client,
                    p: Option<&[u8]>,
                    trust: Class,
                    timed: &mut Duration| {
        out.clear();
        lens.clear();
        let mut sink = |o: &[u8]| {
            out.extend_from_slice(o);
            lens.push(o.len());
        };
        let t0 = Instant::now();
        match p {
            Some(p) => t.receive(p, trust, t0, &mut sink),
            None => t.poll(t0, &mut sink),
        }
        *timed += t0.elapsed();
        let mut at = 0;
        let mut segs = Vec::with_capacity(lens.len());
        for &l in &lens {
            segs.extend(parse(&out[at..at + l]));
            at += l;
        }
        c.absorb(&segs);
    };
    for i in 0..k {
        let mut c = Client::new(i);
        let syn = c.packet(TcpControl::Syn, &[]);
        step(&mut t, &mut c, Some(&syn), Class::AssumedGood, &mut timed);
        ensure!(
            c.rcv_next != 0,
            "connection {i}: no SYN-ACK {:?}",
            t.stats()
        );
        let ack = c.packet(TcpControl::None, &[]);
        step(&mut t, &mut c, Some(&ack), Class::KnownGood, &mut timed);
        let get = c.packet(TcpControl::Psh, GET_CLOSE);
        step(&mut t, &mut c, Some(&get), Class::KnownGood, &mut timed);
        if !c.fin_seen {
            step(&mut t, &mut c, None, Class::KnownGood, &mut timed);
        }
        ensure!(
            c.fin_seen && c.received.starts_with(b"HTTP/1.1 200"),
            "connection {i}: no answer and FIN ({:?})",
            String::from_utf8_lossy(&c.received)
        );
        let fin = c.packet(TcpControl::Fin, &[]);
        step(&mut t, &mut c, Some(&fin), Class::KnownGood, &mut timed);
        if i % 64 == 63 {
            step(&mut t, &mut c, None, Class::KnownGood, &mut timed);
        }
    }
    let s = t.stats();
    ensure!(
        s.closed - before.closed == u64::from(k) && s.active == 0,
        "{k} connections: {} closed, {} still active",
        s.closed - before.closed,
        s.active
    );
    let secs = timed.as_secs_f64();
    Ok(ConnectionRate {
        shards,
        connections: k,
        secs,
        per_sec: f64::from(k) / secs,
        packets_in_per_connection: (s.packets_in - before.packets_in) as f64 / f64::from(k),
        packets_out_per_connection: (s.packets_out - before.packets_out) as f64 / f64::from(k),
    })
}

/// Resident memory of this process, bytes.
fn rss() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").context("/proc/self/status")?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .context("no VmRSS in /proc/self/status")?;
    Ok(kb * 1024)
}

/// Memory per connection with `n` connections (default configuration, shards 1024).
pub fn memory(n: u32) -> Result<Memory> {
    let mut t = terminator(1024)?;
    // One connection before the first reading: first-use allocations are no connection's.
    let mut probe = Client::new(n + 1);
    ensure!(probe.connect(&mut t, Class::AssumedGood), "memory probe");
    // The clients are the benchmark's, not the terminator's: allocated before the first
    // reading.
    let mut clients: Vec<Client> = (0..n).map(Client::new).collect();
    let r0 = rss()?;
    open(&mut t, &mut clients)?;
    let r1 = rss()?;
    for c in &mut clients {
        let p = c.packet(TcpControl::Psh, GET);
        t.receive(&p, Class::KnownGood, Instant::now(), &mut |_| {});
    }
    t.poll(Instant::now(), &mut |_| {});
    let r2 = rss()?;
    ensure!(
        t.stats().http.requests == u64::from(n),
        "memory: {} of {n} requests answered",
        t.stats().http.requests
    );
    let per = |a: u64, b: u64| b.saturating_sub(a) as f64 / f64::from(n);
    Ok(Memory {
        connections: n,
        bound_bytes: t.memory_per_connection(),
        established_bytes: per(r0, r1),
        after_request_bytes: per(r0, r2),
    })
}
