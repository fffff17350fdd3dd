//! `weir-bench load`: an HTTP/1.1 load client that spreads its connections over many
//! client source addresses, each talking to the destination the service's SSA rule gives
//! that source.
//!
//! Why: a cluster of weir hosts splits clients by source twice — the router's ECMP hash
//! and the SSA rule that picks the destination (and so the slice, and so the host). wrk
//! and friends have one source address, so they exercise one slice. This client binds
//! each socket to its source address (the addresses must exist on the machine, e.g. in a
//! test namespace) and picks the conforming destination with `weir_ssa`, exactly as a
//! real client would.
//!
//! Each of the N connection *slots* uses source `i mod M` and runs until the deadline:
//! connect, then requests back to back on that connection (`keepalive`) or one request
//! per connection (`close`). A failure is counted by kind, and the slot connects again
//! (after 20 ms, so a dead path is not spun on). The report has request counts, failures
//! by kind, latency percentiles (hdrhistogram, µs resolution) and, per slot, which server
//! answered (the first line of the response body: weir's `static` adapter can carry the
//! host's name), failures and the times they happened — tests group slots by the host
//! that owned their destination's slice.
//!
//! Rejected: a thread per connection (2,000 threads on a 2-core machine measure the
//! scheduler), and an HTTP client crate (a fixed GET and a Content-Length body are all
//! that is read; a crate would hide which failure happened).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use weir_ssa::{PickContext, Prefix, Rule, ServicePrefixes};

/// Most failure times kept per slot.
const MAX_FAILURE_TIMES: usize = 64;
/// Largest response read (headers + body).
const MAX_RESPONSE: usize = 64 * 1024;

/// How connections are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Requests back to back on one connection.
    Keepalive,
    /// One request per connection (`Connection: close`).
    Close,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Service APL text (the destinations are picked in its first positive prefix).
    pub apl: String,
    /// The SSA rule.
    pub rule: Rule,
    /// Client source addresses.
    pub sources: Vec<Ipv6Addr>,
    /// Connection slots.
    pub connections: usize,
    /// TCP port.
    pub port: u16,
    /// Request path.
    pub path: String,
    /// How long.
    pub duration: Duration,
    /// Keep-alive or one request per connection.
    pub mode: Mode,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Response timeout.
    pub response_timeout: Duration,
    /// Pause between two requests on a slot (0: back to back).
    pub think: Duration,
    /// Use only the sources whose destination lies in these slices (of `slice_bits`).
    pub slices: Option<(u32, u32)>,
    /// Slice bits of the service prefix (for `slices`).
    pub slice_bits: u8,
}

/// The sources `count` addresses `::1` in successive /64s of `net` (prefix length ≤ 64).
pub fn sources_in(net: &str, count: usize) -> Result<Vec<Ipv6Addr>> {
    let p: Prefix = net
        .parse()
        .map_err(|e| anyhow::anyhow!("--src-net {net}: {e}"))?;
    if p.is_ipv4() || p.len > 64 {
        bail!("--src-net {net}: an IPv6 prefix of length at most 64 is needed");
    }
    let room = 1u128 << (64 - p.len);
    if count == 0 || count as u128 > room {
        bail!("--src-count {count}: {net} has {room} /64s");
    }
    Ok((0..count as u128)
        .map(|i| Ipv6Addr::from(p.addr | (i << 64) | 1))
        .collect())
}

/// The conforming destination for `src`.
pub fn destination(service: &ServicePrefixes, rule: &Rule, src: Ipv6Addr) -> Result<Ipv6Addr> {
    let prefix = service
        .prefixes()
        .first()
        .context("the APL has no positive prefix")?;
    let src = u128::from(src);
    for entropy in 0..64u64 {
        let ctx = PickContext {
            now_unix_s: 0,
            object_key: None,
            entropy: entropy.wrapping_add(src as u64),
        };
        let dst = rule
            .pick(prefix, src, &ctx)
            .map_err(|e| anyhow::anyhow!("pick for {}: {e}", Ipv6Addr::from(src)))?;
        if service.lookup(dst) == Some(0) {
            return Ok(Ipv6Addr::from(dst));
        }
    }
    bail!("no conforming destination outside the APL's holes")
}

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

/// One slot's outcome.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Slot {
    /// Source address.
    pub src: String,
    /// Destination address.
    pub dst: String,
    /// Requests answered with 2xx.
    pub requests: u64,
    /// Connections made.
    pub connections: u64,
    /// Failures by kind.
    pub failures: BTreeMap<String, u64>,
    /// Answers per server (first body line).
    pub servers: BTreeMap<String, u64>,
    /// Milliseconds since the start of each failure (the first 64), with the attempt's
    /// start time: `[started_ms, failed_ms]`.
    pub failure_times_ms: Vec<[u64; 2]>,
    /// For each change of server on one kept-alive connection: should never happen.
    pub server_changed_on_connection: u64,
}

/// The whole report (`--json`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Unix time (ms) at the start.
    pub started_unix_ms: u64,
    /// Seconds run.
    pub elapsed_s: f64,
    /// Mode.
    pub mode: String,
    /// Slots.
    pub connections: usize,
    /// Distinct source addresses.
    pub sources: usize,
    /// Requests answered with 2xx.
    pub requests: u64,
    /// Requests per second.
    pub requests_per_s: f64,
    /// Connections made.
    pub connects: u64,
    /// Failures by kind.
    pub failures: BTreeMap<String, u64>,
    /// All failures.
    pub failed: u64,
    /// Answers per server.
    pub servers: BTreeMap<String, u64>,
    /// Latency of answered requests.
    pub latency: Latency,
    /// Per slot.
    pub slots: Vec<Slot>,
}

impl Report {
    /// A summary for people.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{} slots over {} sources ({}), {:.1} s: {} requests ({:.0}/s), {} connections, {} failed\n",
            self.connections,
            self.sources,
            self.mode,
            self.elapsed_s,
            self.requests,
            self.requests_per_s,
            self.connects,
            self.failed
        );
        for (k, n) in &self.failures {
            s.push_str(&format!("  failure {k}: {n}\n"));
        }
        s.push_str(&format!(
            "latency p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms\n",
            self.latency.p50_ms,
            self.latency.p90_ms,
            self.latency.p99_ms,
            self.latency.p999_ms,
            self.latency.max_ms
        ));
        let total: u64 = self.servers.values().sum();
        for (k, n) in &self.servers {
            s.push_str(&format!(
                "  server {k}: {n} ({:.1}%)\n",
                100.0 * *n as f64 / total.max(1) as f64
            ));
        }
        s
    }
}

/// Run the plan (on a current-thread runtime: one core drives every connection).
pub fn run(plan: &Plan) -> Result<Report> {
    if plan.sources.is_empty() || plan.connections == 0 {
        bail!("nothing to run: no sources or no connections");
    }
    let service = ServicePrefixes::parse(&plan.apl).map_err(|e| anyhow::anyhow!("--apl: {e}"))?;
    let map = weir_ssa::SliceMap::new(service.prefixes(), plan.slice_bits, 1)
        .map_err(|e| anyhow::anyhow!("--slice-bits: {e}"))?;
    let mut targets = Vec::with_capacity(plan.sources.len());
    for &src in &plan.sources {
        let dst = destination(&service, &plan.rule, src)?;
        if let Some((first, last)) = plan.slices {
            let slice = map.slice_of(0, u128::from(dst));
            if !(first..=last).contains(&slice) {
                continue;
            }
        }
        targets.push((src, dst));
    }
    if targets.is_empty() {
        bail!("no source's destination lies in the slices asked for");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let started_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
    let start = Instant::now();
    let deadline = start + plan.duration;
    let results = rt.block_on(async {
        let mut tasks = Vec::with_capacity(plan.connections);
        for i in 0..plan.connections {
            let (src, dst) = targets[i % targets.len()];
            let plan = plan.clone();
            tasks.push(tokio::spawn(slot(plan, src, dst, start, deadline)));
        }
        let mut out = Vec::with_capacity(tasks.len());
        for t in tasks {
            out.push(t.await);
        }
        out
    });
    let elapsed_s = start.elapsed().as_secs_f64();
    let mut report = Report {
        started_unix_ms,
        elapsed_s,
        mode: format!("{:?}", plan.mode).to_lowercase(),
        connections: plan.connections,
        sources: targets.len().min(plan.connections),
        ..Report::default()
    };
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).context("histogram")?;
    for r in results {
        let (slot, h) = r.context("a connection task panicked")?;
        let _ = hist.add(&h);
        report.requests += slot.requests;
        report.connects += slot.connections;
        for (k, n) in &slot.failures {
            *report.failures.entry(k.clone()).or_default() += n;
            report.failed += n;
        }
        for (k, n) in &slot.servers {
            *report.servers.entry(k.clone()).or_default() += n;
        }
        report.slots.push(slot);
    }
    report.requests_per_s = report.requests as f64 / elapsed_s.max(1e-9);
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    if !hist.is_empty() {
        report.latency = Latency {
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: hist.max() as f64 / 1000.0,
        };
    }
    Ok(report)
}

async fn slot(
    plan: Plan,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    start: Instant,
    deadline: Instant,
) -> (Slot, Histogram<u64>) {
    let mut s = Slot {
        src: src.to_string(),
        dst: dst.to_string(),
        ..Slot::default()
    };
    // Bounds 1 µs .. 60 s with 3 significant figures are valid: this cannot fail.
    #[allow(clippy::unwrap_used)]
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: [{dst}]\r\nUser-Agent: weir-bench\r\n{}\r\n",
        plan.path,
        if plan.mode == Mode::Close {
            "Connection: close\r\n"
        } else {
            ""
        }
    );
    let mut conn: Option<(TcpStream, Option<String>)> = None;
    let mut buf = vec![0u8; MAX_RESPONSE];
    let since = |t: Instant| u64::try_from(t.duration_since(start).as_millis()).unwrap_or(0);
    while Instant::now() < deadline {
        let attempt = Instant::now();
        let fail = |s: &mut Slot, kind: &str| {
            *s.failures.entry(kind.to_string()).or_default() += 1;
            if s.failure_times_ms.len() < MAX_FAILURE_TIMES {
                s.failure_times_ms
                    .push([since(attempt), since(Instant::now())]);
            }
        };
        if conn.is_none() {
            match connect(src, dst, plan.port, plan.connect_timeout).await {
                Ok(c) => {
                    s.connections += 1;
                    conn = Some((c, None));
                }
                Err(kind) => {
                    fail(&mut s, kind);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            }
        }
        let Some((stream, server)) = conn.as_mut() else {
            continue;
        };
        let t0 = Instant::now();
        match exchange(stream, request.as_bytes(), &mut buf, plan.response_timeout).await {
            Ok((status, label)) if (200..300).contains(&status) => {
                let us = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
                let _ = hist.record(us.max(1));
                s.requests += 1;
                *s.servers.entry(label.clone()).or_default() += 1;
                match server {
                    Some(prev) if *prev != label => s.server_changed_on_connection += 1,
                    _ => *server = Some(label),
                }
                if plan.mode == Mode::Close {
                    conn = None;
                }
            }
            Ok((status, _)) => {
                fail(&mut s, &format!("status-{status}"));
                conn = None;
            }
            Err(kind) => {
                fail(&mut s, kind);
                conn = None;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        if !plan.think.is_zero() {
            tokio::time::sleep(plan.think).await;
        }
    }
    (s, hist)
}

async fn connect(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    port: u16,
    timeout: Duration,
) -> Result<TcpStream, &'static str> {
    let sock = TcpSocket::new_v6().map_err(|_| "socket")?;
    sock.bind(SocketAddr::new(IpAddr::V6(src), 0))
        .map_err(|_| "bind")?;
    let fut = sock.connect(SocketAddr::new(IpAddr::V6(dst), port));
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) => Err(match e.kind() {
            std::io::ErrorKind::ConnectionRefused => "connect-refused",
            std::io::ErrorKind::ConnectionReset => "connect-reset",
            _ => "connect-error",
        }),
        Err(_) => Err("connect-timeout"),
    }
}

/// Send one request, read one response: the status and the body's first line.
async fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    buf: &mut [u8],
    timeout: Duration,
) -> Result<(u16, String), &'static str> {
    let io_kind = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::ConnectionReset => "reset",
        std::io::ErrorKind::BrokenPipe => "reset",
        _ => "io-error",
    };
    let work = async {
        stream.write_all(request).await.map_err(io_kind)?;
        let mut have = 0usize;
        loop {
            let Some(space) = buf.get_mut(have..) else {
                return Err("bad-response");
            };
            if space.is_empty() {
                return Err("bad-response");
            }
            let n = stream.read(space).await.map_err(io_kind)?;
            if n == 0 {
                return Err("closed");
            }
            have += n;
            let data = &buf[..have];
            let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = std::str::from_utf8(&data[..end]).map_err(|_| "bad-response")?;
            let mut lines = head.split("\r\n");
            let status: u16 = lines
                .next()
                .and_then(|l| l.split(' ').nth(1))
                .and_then(|c| c.parse().ok())
                .ok_or("bad-response")?;
            let length: usize = lines
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse().ok())
                .ok_or("bad-response")?;
            let body_at = end + 4;
            if body_at + length > buf.len() {
                return Err("bad-response");
            }
            while have < body_at + length {
                let n = stream.read(&mut buf[have..]).await.map_err(io_kind)?;
                if n == 0 {
                    return Err("closed");
                }
                have += n;
            }
            let body = &buf[body_at..body_at + length];
            let label = String::from_utf8_lossy(body)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string();
            return Ok((status, label));
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err("timeout"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_in_distinct_64s() {
        let s = sources_in("2001:db8:c000::/48", 256).unwrap();
        assert_eq!(s.len(), 256);
        assert_eq!(s[0], "2001:db8:c000::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(s[255], "2001:db8:c000:ff::1".parse::<Ipv6Addr>().unwrap());
        assert!(sources_in("2001:db8:c000::/60", 17).is_err());
        assert!(sources_in("2001:db8::/80", 1).is_err());
        assert!(sources_in("10.0.0.0/8", 1).is_err());
    }

    #[test]
    fn destinations_conform() {
        let service = ServicePrefixes::parse("2:2001:db8:5::/64").unwrap();
        let rule = Rule::SrcMix { src_prefix_len: 64 };
        let src: Ipv6Addr = "2001:db8:ff::1".parse().unwrap();
        // DESIGN.md's example.
        assert_eq!(
            destination(&service, &rule, src).unwrap(),
            "2001:db8:5:0:f41c:bf9b:a428:420"
                .parse::<Ipv6Addr>()
                .unwrap()
        );
    }

    #[test]
    fn a_local_server_is_loaded_and_counted() {
        // A tiny HTTP server on ::1 answering "srv" with keep-alive.
        let listener = std::net::TcpListener::bind("[::1]:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for c in listener.incoming().take(8) {
                let Ok(mut c) = c else { continue };
                std::thread::spawn(move || {
                    use std::io::{Read, Write};
                    let mut b = [0u8; 4096];
                    while let Ok(n) = c.read(&mut b) {
                        if n == 0 {
                            break;
                        }
                        let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nsrv\n");
                    }
                });
            }
        });
        let plan = Plan {
            apl: "2:::1/128".into(),
            rule: Rule::Any,
            sources: vec![Ipv6Addr::LOCALHOST],
            connections: 4,
            port,
            path: "/".into(),
            duration: Duration::from_millis(300),
            mode: Mode::Keepalive,
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            think: Duration::ZERO,
            slices: None,
            slice_bits: 0,
        };
        let r = run(&plan).unwrap();
        assert!(r.requests > 10, "{}", r.table());
        assert_eq!(r.failed, 0, "{}", r.table());
        assert_eq!(r.servers.keys().collect::<Vec<_>>(), ["srv"]);
        assert_eq!(r.slots.len(), 4);
        assert!(r.latency.max_ms > 0.0);
    }
}
