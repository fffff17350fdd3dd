//! Prometheus text exposition (format 0.0.4) over a minimal HTTP/1.1 server.
//!
//! `GET /metrics` (query string ignored, `HEAD` too) answers the exposition; anything else
//! is `404`. One request per connection (`Connection: close`), served in turn on one thread
//! with 2 s read and 5 s write timeouts, a request head of at most 8 KiB. That is all a
//! Prometheus scraper needs, and it keeps the only network listener of weir-cp small
//! enough to read in one sitting. It binds 127.0.0.1 by default.
//!
//! Every series comes from the latest `DpStats` of each dataplane (labelled `dataplane`),
//! the link status and weir-cp's own decision counters. Latency quantiles are computed from
//! the dataplanes' hdrhistogram V2 bytes at scrape time and exposed as a `summary` in
//! seconds; a histogram that does not decode is skipped (and logged at debug).
//!
//! Rejected: the `prometheus` crate (a registry and global state for what is a few loops
//! over plain data), an HTTP framework (an async runtime for one endpoint), and Prometheus
//! `histogram` buckets (the dataplane ships the full HDR histogram, and the issue asks for
//! quantiles).

use std::collections::BTreeMap;
use std::fmt::{Display, Write as _};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;
use weir_control::proto::{DpStats, RingStats, UpstreamStats};

use super::{lock, DaemonState, TICK};

/// Quantiles exposed per latency summary.
pub const QUANTILES: [f64; 4] = [0.5, 0.9, 0.99, 0.999];

/// Decisions always exposed, even at zero, so rate() works from the first scrape.
const DECISIONS: [&str; 3] = ["block-added", "block-expired", "block-refused"];

/// Serve scrapes until shutdown.
pub(crate) fn serve(shared: &DaemonState, listener: TcpListener) {
    while !shared.stopping() {
        match listener.accept() {
            Ok((stream, peer)) => {
                if let Err(e) = respond(shared, stream) {
                    tracing::debug!(%peer, error = %e, "metrics request failed");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics accept failed");
                shared.sleep(TICK);
            }
        }
    }
}

fn respond(shared: &DaemonState, mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > 8192 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut parts = text.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, ctype, body) = if matches!(method, "GET" | "HEAD") && path == "/metrics" {
        (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            render(shared),
        )
    } else {
        (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found; metrics are at /metrics\n".to_string(),
        )
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if method != "HEAD" {
        out.push_str(&body);
    }
    stream.write_all(out.as_bytes())?;
    stream.flush()
}

/// Builds the exposition text one metric family at a time.
struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// The cluster session's view, with `[cluster]`.
fn cluster(e: &mut Exposition, v: &weir_control::proto::ClusterView) {
    let me = v.host.as_str();
    e.family(
        "weir_cluster_connected",
        "gauge",
        "1 while weir-cp has a live etcd session.",
    );
    e.sample(
        "weir_cluster_connected",
        &[("host", me)],
        u8::from(v.connected),
    );
    e.family(
        "weir_cluster_coordinator",
        "gauge",
        "1 while this host is the cluster's coordinator.",
    );
    e.sample(
        "weir_cluster_coordinator",
        &[("host", me)],
        u8::from(v.coordinator.as_deref() == Some(me)),
    );
    e.family(
        "weir_cluster_epoch",
        "gauge",
        "Epoch of the slice assignment this host sees.",
    );
    e.sample("weir_cluster_epoch", &[], v.epoch);
    e.family(
        "weir_cluster_host_live",
        "gauge",
        "1 while the host is registered in etcd (its lease is alive).",
    );
    for h in &v.hosts {
        e.sample(
            "weir_cluster_host_live",
            &[("host", &h.name)],
            u8::from(h.live),
        );
    }
    e.family(
        "weir_cluster_host_slices",
        "gauge",
        "Slices each host owns in the assignment.",
    );
    for h in &v.hosts {
        e.sample("weir_cluster_host_slices", &[("host", &h.name)], h.slices);
    }
    e.family("weir_cluster_handovers", "gauge", "Handovers in progress.");
    e.sample("weir_cluster_handovers", &[], v.handovers.len());
    e.family(
        "weir_cluster_announced_routes",
        "gauge",
        "Routes this host announces through BIRD.",
    );
    e.sample("weir_cluster_announced_routes", &[], v.announced.len());
}

/// Label values escape `\`, `"` and newline (exposition format 0.0.4).
fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// A counter or gauge read from a stats record.
type Field<T> = fn(&T) -> u64;
/// A labelled counter map read from the stats.
type MapField = fn(&DpStats) -> &BTreeMap<String, u64>;

/// One dataplane's view at scrape time.
struct Dp {
    name: String,
    up: bool,
    applied: u64,
    reconnects: u64,
    stats: Option<DpStats>,
}

/// The exposition text.
pub(crate) fn render(shared: &DaemonState) -> String {
    let desired = lock(&shared.desired).version();
    let decisions = lock(&shared.decisions).clone();
    let dps: Vec<Dp> = shared
        .links
        .iter()
        .map(|l| {
            let s = lock(&l.status);
            Dp {
                name: l.name.clone(),
                up: s.connected,
                applied: s.applied_version,
                reconnects: s.reconnects,
                stats: s.stats.clone(),
            }
        })
        .collect();
    let with_stats: Vec<(&str, &DpStats)> = dps
        .iter()
        .filter_map(|d| d.stats.as_ref().map(|s| (d.name.as_str(), s)))
        .collect();
    let mut e = Exposition { out: String::new() };

    e.family(
        "weir_cp_uptime_seconds",
        "gauge",
        "Seconds since weir-cp started.",
    );
    e.sample(
        "weir_cp_uptime_seconds",
        &[],
        shared.started.elapsed().as_secs(),
    );
    e.family(
        "weir_policy_version_desired",
        "gauge",
        "Policy version weir-cp wants in force.",
    );
    e.sample("weir_policy_version_desired", &[], desired);
    e.family(
        "weir_decisions_total",
        "counter",
        "Policy-loop decisions by kind.",
    );
    let mut all: Vec<(&str, u64)> = DECISIONS
        .iter()
        .map(|d| (*d, decisions.get(*d).copied().unwrap_or(0)))
        .collect();
    for (k, v) in &decisions {
        if !DECISIONS.contains(&k.as_str()) {
            all.push((k, *v));
        }
    }
    for (d, v) in all {
        e.sample("weir_decisions_total", &[("decision", d)], v);
    }

    if let Some(c) = &shared.cluster {
        cluster(&mut e, &c.view());
    }

    e.family(
        "weir_dataplane_up",
        "gauge",
        "1 while weir-cp is connected to the dataplane.",
    );
    for d in &dps {
        e.sample(
            "weir_dataplane_up",
            &[("dataplane", &d.name)],
            u8::from(d.up),
        );
    }
    e.family(
        "weir_dataplane_reconnects_total",
        "counter",
        "Connections to the dataplane after the first.",
    );
    for d in &dps {
        e.sample(
            "weir_dataplane_reconnects_total",
            &[("dataplane", &d.name)],
            d.reconnects,
        );
    }
    e.family(
        "weir_policy_version",
        "gauge",
        "Policy version the dataplane acknowledged last.",
    );
    for d in &dps {
        e.sample("weir_policy_version", &[("dataplane", &d.name)], d.applied);
    }

    let simple: [(&str, &str, Field<DpStats>); 5] = [
        ("weir_packets_total", "Frames received.", |s| s.packets),
        (
            "weir_outbound_packets_total",
            "Frames from service addresses.",
            |s| s.outbound,
        ),
        ("weir_host_packets_total", "NDP and ARP frames.", |s| s.host),
        (
            "weir_dataplane_uptime_seconds",
            "Seconds since the dataplane started.",
            |s| s.uptime_ns / 1_000_000_000,
        ),
        (
            "weir_dataplane_policy_version_in_force",
            "Policy version the dataplane reports in force.",
            |s| s.policy_version,
        ),
    ];
    for (name, help, get) in simple {
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        e.family(name, kind, help);
        for (dp, s) in &with_stats {
            e.sample(name, &[("dataplane", dp)], get(s));
        }
    }

    let maps: [(&str, &str, &str, MapField); 3] = [
        (
            "weir_class_packets_total",
            "class",
            "Packets per verdict class.",
            |s| &s.classes,
        ),
        (
            "weir_reason_packets_total",
            "reason",
            "Suspect and rejected packets per reason.",
            |s| &s.reasons,
        ),
        (
            "weir_events_total",
            "event",
            "Dataplane events that are not verdicts.",
            |s| &s.events,
        ),
    ];
    for (name, label, help, get) in maps {
        e.family(name, "counter", help);
        for (dp, s) in &with_stats {
            for (k, v) in get(s) {
                e.sample(name, &[("dataplane", dp), (label, k)], v);
            }
        }
    }

    e.family(
        "weir_tee_active",
        "gauge",
        "1 while the dataplane's live tee is copying (counters: weir_events_total{event=\"tee-…\"}).",
    );
    for (dp, s) in &with_stats {
        e.sample(
            "weir_tee_active",
            &[("dataplane", dp)],
            u8::from(s.tee.active),
        );
    }

    e.family(
        "weir_slice_packets_total",
        "counter",
        "Packets per slice that reached the slice table (non-zero slices).",
    );
    for (dp, s) in &with_stats {
        for (slice, v) in &s.slices {
            e.sample(
                "weir_slice_packets_total",
                &[("dataplane", dp), ("slice", &slice.to_string())],
                v,
            );
        }
    }

    e.family(
        "weir_worker_packets_total",
        "counter",
        "Packets drained per worker and class.",
    );
    for (dp, s) in &with_stats {
        for w in &s.workers {
            let worker = w.worker.to_string();
            for (class, v) in [
                ("known_good", w.known_good),
                ("assumed_good", w.assumed_good),
                ("suspect", w.suspect),
            ] {
                e.sample(
                    "weir_worker_packets_total",
                    &[("dataplane", dp), ("worker", &worker), ("class", class)],
                    v,
                );
            }
        }
    }
    e.family(
        "weir_worker_bytes_total",
        "counter",
        "Bytes drained per worker.",
    );
    for (dp, s) in &with_stats {
        for w in &s.workers {
            e.sample(
                "weir_worker_bytes_total",
                &[("dataplane", dp), ("worker", &w.worker.to_string())],
                w.bytes,
            );
        }
    }
    e.family(
        "weir_worker_new_flows_total",
        "counter",
        "New flows (clean SYNs, UDP, echo requests) per worker that owns their slice: the spread of clients over workers.",
    );
    for (dp, s) in &with_stats {
        for w in &s.workers {
            e.sample(
                "weir_worker_new_flows_total",
                &[("dataplane", dp), ("worker", &w.worker.to_string())],
                w.new_flows,
            );
        }
    }

    let rings: [(&str, &str, &str, Field<RingStats>); 3] = [
        (
            "weir_ring_occupancy",
            "gauge",
            "Packets queued in the ring now.",
            |r| u64::from(r.occupancy),
        ),
        ("weir_ring_size", "gauge", "Ring slots.", |r| {
            u64::from(r.size)
        }),
        (
            "weir_ring_drops_total",
            "counter",
            "Packets dropped because the ring was full.",
            |r| r.drops,
        ),
    ];
    for (name, kind, help, get) in rings {
        e.family(name, kind, help);
        for (dp, s) in &with_stats {
            for r in &s.rings {
                e.sample(
                    name,
                    &[
                        ("dataplane", dp),
                        ("rx", &r.rx.to_string()),
                        ("worker", &r.worker.to_string()),
                        ("class", r.class.name()),
                    ],
                    get(r),
                );
            }
        }
    }

    e.family("weir_flows", "gauge", "Live flows by state.");
    for (dp, s) in &with_stats {
        e.sample(
            "weir_flows",
            &[("dataplane", dp), ("state", "half_open")],
            s.half_open,
        );
        e.sample(
            "weir_flows",
            &[("dataplane", dp), ("state", "established")],
            s.established,
        );
    }

    e.family(
        "weir_latency_seconds",
        "summary",
        "Queueing latency (rx to worker) per class.",
    );
    for (dp, s) in &with_stats {
        for (class, bytes) in &s.latency {
            let mut reader = bytes.as_slice();
            let h: Histogram<u64> = match Deserializer::new().deserialize(&mut reader) {
                Ok(h) => h,
                Err(err) => {
                    tracing::debug!(dataplane = dp, class, error = ?err, "latency histogram does not decode");
                    continue;
                }
            };
            for q in QUANTILES {
                let v = h.value_at_quantile(q) as f64 / 1e9;
                e.sample(
                    "weir_latency_seconds",
                    &[
                        ("dataplane", dp),
                        ("class", class),
                        ("quantile", &q.to_string()),
                    ],
                    v,
                );
            }
            let labels = [("dataplane", *dp), ("class", class.as_str())];
            e.sample(
                "weir_latency_seconds_sum",
                &labels,
                h.mean() * h.len() as f64 / 1e9,
            );
            e.sample("weir_latency_seconds_count", &labels, h.len());
        }
    }

    upstream_families(&mut e, &with_stats);
    e.out
}

/// The application servers behind the `nats` adapter, and the slow clients.
fn upstream_families(e: &mut Exposition, with_stats: &[(&str, &DpStats)]) {
    e.family(
        "weir_upstream_up",
        "gauge",
        "1 while the adapter's link to its message bus (NATS) is connected, 0 while it is down or not up yet.",
    );
    for (dp, s) in with_stats {
        for u in &s.upstreams {
            e.sample(
                "weir_upstream_up",
                &[
                    ("dataplane", dp),
                    ("kind", &u.kind),
                    ("subject", &u.subject),
                    ("state", &u.state),
                ],
                u8::from(u.state == "connected"),
            );
        }
    }
    let simple: [(&str, &str, &str, Field<UpstreamStats>); 4] = [
        (
            "weir_upstream_connects_total",
            "counter",
            "Connections the adapter made to its message bus (1 + reconnects).",
            |u| u.connects,
        ),
        (
            "weir_upstream_in_flight",
            "gauge",
            "Requests waiting for an application server's reply.",
            |u| u.in_flight,
        ),
        (
            "weir_upstream_headers_dropped_total",
            "counter",
            "Hop-by-hop headers dropped from application servers' replies.",
            |u| u.headers_dropped,
        ),
        (
            "weir_upstream_late_replies_total",
            "counter",
            "Replies that arrived after their request had timed out.",
            |u| u.late_replies,
        ),
    ];
    for (name, kind, help, get) in simple {
        e.family(name, kind, help);
        for (dp, s) in with_stats {
            for u in &s.upstreams {
                e.sample(name, &[("dataplane", dp), ("subject", &u.subject)], get(u));
            }
        }
    }
    e.family(
        "weir_upstream_requests_total",
        "counter",
        "Requests to application servers per subject and outcome: 2xx/3xx/4xx/5xx (the application's status), 503 (no responders, link down), 504 (timeout), 502 (bad reply), 413 (over the bus's payload limit).",
    );
    for (dp, s) in with_stats {
        for u in &s.upstreams {
            for (outcome, v) in &u.outcomes {
                e.sample(
                    "weir_upstream_requests_total",
                    &[
                        ("dataplane", dp),
                        ("subject", &u.subject),
                        ("outcome", outcome),
                    ],
                    v,
                );
            }
        }
    }
    e.family(
        "weir_upstream_latency_seconds",
        "summary",
        "Application servers' reply latency per subject (request taken by a worker to reply back).",
    );
    for (dp, s) in with_stats {
        for u in &s.upstreams {
            let mut reader = u.latency.as_slice();
            let h: Histogram<u64> = match Deserializer::new().deserialize(&mut reader) {
                Ok(h) => h,
                Err(err) => {
                    tracing::debug!(dataplane = dp, subject = %u.subject, error = ?err, "upstream latency histogram does not decode");
                    continue;
                }
            };
            for q in QUANTILES {
                e.sample(
                    "weir_upstream_latency_seconds",
                    &[
                        ("dataplane", dp),
                        ("subject", &u.subject),
                        ("quantile", &q.to_string()),
                    ],
                    h.value_at_quantile(q) as f64 / 1e9,
                );
            }
            let labels = [("dataplane", *dp), ("subject", u.subject.as_str())];
            e.sample(
                "weir_upstream_latency_seconds_sum",
                &labels,
                h.mean() * h.len() as f64 / 1e9,
            );
            e.sample("weir_upstream_latency_seconds_count", &labels, h.len());
        }
    }
    e.family(
        "weir_slow_source_closes_total",
        "counter",
        "Connections the terminators closed for slowness per source prefix: kind=header (408, request head not complete in time: slowloris), kind=read (reset, reply not drained: slow read). Cumulative while the prefix stays in the workers' tables.",
    );
    for (dp, s) in with_stats {
        for src in &s.slow_sources {
            for (kind, v) in [("header", src.slow_header), ("read", src.slow_read)] {
                e.sample(
                    "weir_slow_source_closes_total",
                    &[("dataplane", dp), ("prefix", &src.prefix), ("kind", kind)],
                    v,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
