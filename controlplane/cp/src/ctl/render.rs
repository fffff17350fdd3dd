//! Replies as people read them (aligned tables) and as scripts read them (JSON).
//!
//! Every function here is pure: reply in, `String` or `serde_json::Value` out, so the whole
//! presentation is unit-tested without a daemon. JSON is the serde form of the protocol types
//! (`weir_control::proto`), wrapped only where a command adds something a script cannot derive
//! itself (decoded latency quantiles) or where a key must not be printed (rules).
//!
//! Tables are plain text with columns padded to their widest cell, numbers right-aligned;
//! no colours or box drawing, so the output survives `grep`, `less` and log files. Rejected:
//! a table crate (one more dependency for forty lines of padding).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use weir_control::proto::{
    BlockSpec, ClusterView, CpStatus, DpStats, SliceRun, TeeOrder, TeeStatus,
};
use weir_model::config::RingsConfig;
use weir_ssa::{key_hex, Rule};
use weir_ssa::{Apl, ServicePrefixes, SliceMap};

/// A text table: a header and rows, padded per column. A header starting with `>` is a
/// right-aligned (numeric) column; the `>` is not printed.
#[derive(Debug)]
pub struct Table {
    header: Vec<(String, bool)>,
    rows: Vec<Vec<String>>,
    indent: usize,
}

impl Table {
    /// A table with these column headers.
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header
                .iter()
                .map(|h| match h.strip_prefix('>') {
                    Some(h) => (h.to_string(), true),
                    None => (h.to_string(), false),
                })
                .collect(),
            rows: Vec::new(),
            indent: 2,
        }
    }

    /// Add a row (missing cells are empty).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Whether no row was added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as lines, each ending in a newline.
    pub fn render(&self) -> String {
        let cols = self.header.len();
        let mut width: Vec<usize> = self.header.iter().map(|(h, _)| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(cols) {
                width[i] = width[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.header.iter().map(|(h, _)| h.clone()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = " ".repeat(self.indent);
            for (i, (_, right)) in self.header.iter().enumerate() {
                let cell = row.get(i).map_or("", String::as_str);
                let pad = width[i].saturating_sub(cell.chars().count());
                if i > 0 {
                    line.push_str("  ");
                }
                if *right {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    if i + 1 < cols {
                        line.push_str(&" ".repeat(pad));
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Seconds as `3d04h`, `1h02m03s`, `4m05s`, `12s`.
pub fn fmt_duration_s(s: u64) -> String {
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d{h:02}h")
    } else if h > 0 {
        format!("{h}h{m:02}m{sec:02}s")
    } else if m > 0 {
        format!("{m}m{sec:02}s")
    } else {
        format!("{sec}s")
    }
}

/// Nanoseconds as `850ns`, `12.3µs`, `1.20ms`, `2.00s`.
pub fn fmt_ns(ns: u64) -> String {
    // Display only: f64 rounding of counters above 2^53 ns (104 days) does not matter.
    #[allow(clippy::cast_precision_loss)]
    let f = ns as f64;
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{:.1}µs", f / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2}ms", f / 1e6)
    } else {
        format!("{:.2}s", f / 1e9)
    }
}

/// A per-second rate, `+12/s` or `+0.5/s`.
fn fmt_rate(delta: u64, secs: f64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let r = delta as f64 / secs;
    if r < 10.0 {
        format!("+{r:.1}/s")
    } else {
        format!("+{r:.0}/s")
    }
}

/// A counter, with its rate since the previous sample when there is one: `1234 (+56/s)`.
/// A counter that went down (the dataplane restarted) shows no rate.
fn counter(total: u64, prev: Option<u64>, secs: Option<f64>) -> String {
    match (prev, secs) {
        (Some(p), Some(s)) if total >= p && s > 0.0 => {
            format!("{total} ({})", fmt_rate(total - p, s))
        }
        _ => total.to_string(),
    }
}

/// The one-line answer to a change: `message (policy version N)`.
pub fn done_line(message: &str, version: u64) -> String {
    format!("{message} (policy version {version})\n")
}

/// JSON of a change's answer.
#[derive(Debug, Serialize)]
pub struct DoneView<'a> {
    /// What weir-cp did.
    pub message: &'a str,
    /// The policy version now desired.
    pub version: u64,
}

/// `weirctl status`.
pub fn status_table(s: &CpStatus) -> String {
    let mut out = format!(
        "weir-cp  policy version {}  up {}\nconfig   {}\n\ndataplanes\n",
        s.version,
        fmt_duration_s(s.uptime_s),
        if s.config.is_empty() { "-" } else { &s.config }
    );
    let mut t = Table::new(&[
        "NAME",
        "SOCKET",
        "CONNECTED",
        ">APPLIED",
        ">RECONNECTS",
        "LAST ERROR",
    ]);
    for d in &s.dataplanes {
        let applied = if d.applied_version < s.version {
            format!("{} (behind)", d.applied_version)
        } else {
            d.applied_version.to_string()
        };
        t.row(vec![
            d.name.clone(),
            d.socket.clone(),
            if d.connected { "yes" } else { "no" }.into(),
            applied,
            d.reconnects.to_string(),
            d.last_error.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    if t.is_empty() {
        out.push_str("  (none configured)\n");
    } else {
        out.push_str(&t.render());
    }
    out.push_str("\ndecisions\n");
    out.push_str(&name_counts(&s.decisions, None, None, true));
    out
}

/// A name → count table; `skip_zero` leaves out zero counts.
fn name_counts(
    counts: &BTreeMap<String, u64>,
    prev: Option<&BTreeMap<String, u64>>,
    secs: Option<f64>,
    skip_zero: bool,
) -> String {
    let mut t = Table::new(&["NAME", ">COUNT"]);
    for (name, &n) in counts {
        if skip_zero && n == 0 {
            continue;
        }
        let p = prev.map(|p| p.get(name).copied().unwrap_or(0));
        t.row(vec![name.clone(), counter(n, p, secs)]);
    }
    if t.is_empty() {
        "  (none)\n".into()
    } else {
        t.render()
    }
}

/// Queueing latency of one class, decoded from its histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LatencySummary {
    /// Samples recorded.
    pub count: u64,
    /// Median, ns.
    pub p50: u64,
    /// 99th percentile, ns.
    pub p99: u64,
    /// 99.9th percentile, ns.
    pub p999: u64,
    /// Largest, ns.
    pub max: u64,
}

/// Decode an hdrhistogram V2 (or V2 + deflate) serialization and summarize it.
pub fn latency_summary(bytes: &[u8]) -> Result<LatencySummary, String> {
    let h: hdrhistogram::Histogram<u64> = hdrhistogram::serialization::Deserializer::new()
        .deserialize(&mut &bytes[..])
        .map_err(|e| format!("undecodable latency histogram: {e:?}"))?;
    Ok(LatencySummary {
        count: h.len(),
        p50: h.value_at_quantile(0.5),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
    })
}

/// One dataplane in `stats --json`: its stats as sent, and the latency quantiles decoded
/// (`null` for a histogram that does not decode).
#[derive(Debug, Serialize)]
pub struct DpStatsView<'a> {
    /// The dataplane's configured name.
    pub name: &'a str,
    /// Its stats, as weir-cp sent them.
    pub stats: &'a DpStats,
    /// Per class.
    pub latency_ns: BTreeMap<&'a str, Option<LatencySummary>>,
    /// Reply latency per upstream subject.
    pub upstream_latency_ns: BTreeMap<&'a str, Option<LatencySummary>>,
}

/// `stats --json`: `{"dataplanes": [...]}`.
#[derive(Debug, Serialize)]
pub struct StatsView<'a> {
    /// Per dataplane, in weir-cp's order.
    pub dataplanes: Vec<DpStatsView<'a>>,
}

impl<'a> StatsView<'a> {
    /// The view of a stats reply.
    pub fn new(stats: &'a [(String, DpStats)]) -> StatsView<'a> {
        StatsView {
            dataplanes: stats
                .iter()
                .map(|(name, s)| DpStatsView {
                    name,
                    stats: s,
                    latency_ns: s
                        .latency
                        .iter()
                        .map(|(class, h)| (class.as_str(), latency_summary(h).ok()))
                        .collect(),
                    upstream_latency_ns: s
                        .upstreams
                        .iter()
                        .map(|u| (u.subject.as_str(), latency_summary(&u.latency).ok()))
                        .collect(),
                })
                .collect(),
        }
    }
}

/// `weirctl stats`: a section per dataplane. With `prev` (the previous sample) each counter
/// also shows its rate; the interval is the dataplane's own uptime difference when it moved
/// forward, else `wall_s`.
pub fn stats_table(
    stats: &[(String, DpStats)],
    prev: Option<&[(String, DpStats)]>,
    wall_s: f64,
) -> String {
    if stats.is_empty() {
        return "no dataplane has reported stats yet\n".into();
    }
    let mut out = String::new();
    for (i, (name, s)) in stats.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let p = prev.and_then(|p| p.iter().find(|(n, _)| n == name).map(|(_, s)| s));
        let secs = p.map(|p| {
            if s.uptime_ns > p.uptime_ns {
                // Display only.
                #[allow(clippy::cast_precision_loss)]
                let d = (s.uptime_ns - p.uptime_ns) as f64 / 1e9;
                d
            } else {
                wall_s
            }
        });
        dp_section(&mut out, name, s, p, secs);
    }
    out
}

fn dp_section(out: &mut String, name: &str, s: &DpStats, p: Option<&DpStats>, secs: Option<f64>) {
    let c = |total: u64, f: fn(&DpStats) -> u64| counter(total, p.map(f), secs);
    let _ = writeln!(
        out,
        "dataplane {name}  policy version {}  up {}",
        s.policy_version,
        fmt_duration_s(s.uptime_ns / 1_000_000_000)
    );
    let _ = writeln!(
        out,
        "  packets {}  outbound {}  host {}",
        c(s.packets, |s| s.packets),
        c(s.outbound, |s| s.outbound),
        c(s.host, |s| s.host)
    );
    let _ = writeln!(
        out,
        "  flows: established {}  half-open {}",
        s.established, s.half_open
    );

    out.push_str("\nclasses\n");
    out.push_str(&name_counts(&s.classes, p.map(|p| &p.classes), secs, false));
    out.push_str("\nreasons\n");
    out.push_str(&name_counts(&s.reasons, p.map(|p| &p.reasons), secs, true));
    out.push_str("\nevents\n");
    out.push_str(&name_counts(&s.events, p.map(|p| &p.events), secs, true));

    out.push_str("\nworkers\n");
    let mut t = Table::new(&[
        ">WORKER",
        ">KNOWN_GOOD",
        ">ASSUMED_GOOD",
        ">SUSPECT",
        ">BYTES",
    ]);
    for w in &s.workers {
        let pw = p.and_then(|p| p.workers.iter().find(|x| x.worker == w.worker));
        t.row(vec![
            w.worker.to_string(),
            counter(w.known_good, pw.map(|x| x.known_good), secs),
            counter(w.assumed_good, pw.map(|x| x.assumed_good), secs),
            counter(w.suspect, pw.map(|x| x.suspect), secs),
            counter(w.bytes, pw.map(|x| x.bytes), secs),
        ]);
    }
    out.push_str(&or_none(&t));

    out.push_str("\nrings\n");
    let mut t = Table::new(&[
        ">RX", ">WORKER", "CLASS", ">SIZE", ">QUEUED", ">FULL", ">DROPS",
    ]);
    for r in &s.rings {
        let pr = p.and_then(|p| {
            p.rings
                .iter()
                .find(|x| x.rx == r.rx && x.worker == r.worker && x.class == r.class)
        });
        let full = if r.size == 0 {
            "-".to_string()
        } else {
            format!("{}%", u64::from(r.occupancy) * 100 / u64::from(r.size))
        };
        t.row(vec![
            r.rx.to_string(),
            r.worker.to_string(),
            r.class.to_string(),
            r.size.to_string(),
            r.occupancy.to_string(),
            full,
            counter(r.drops, pr.map(|x| x.drops), secs),
        ]);
    }
    out.push_str(&or_none(&t));

    out.push_str("\ntop sources (new flows, last interval)\n");
    let mut t = Table::new(&["PREFIX", ">ADMITTED", ">LIMITED"]);
    for src in &s.top_sources {
        t.row(vec![
            src.prefix.clone(),
            src.admitted.to_string(),
            src.limited.to_string(),
        ]);
    }
    out.push_str(&or_none(&t));

    out.push_str("\nlatency (rx to worker)\n");
    let mut t = Table::new(&["CLASS", ">COUNT", ">P50", ">P99", ">P99.9", ">MAX"]);
    for (class, bytes) in &s.latency {
        match latency_summary(bytes) {
            Ok(l) => t.row(vec![
                class.clone(),
                l.count.to_string(),
                fmt_ns(l.p50),
                fmt_ns(l.p99),
                fmt_ns(l.p999),
                fmt_ns(l.max),
            ]),
            Err(_) => t.row(vec![class.clone(), "undecodable".into()]),
        }
    }
    out.push_str(&or_none(&t));

    if !s.upstreams.is_empty() {
        out.push_str(
            "
upstreams (application servers)
",
        );
        let mut t = Table::new(&[
            "SUBJECT",
            "STATE",
            ">CONNECTS",
            ">REQUESTS",
            ">IN_FLIGHT",
            ">2XX",
            ">4XX",
            ">5XX",
            ">503",
            ">504",
            ">502",
            ">P50",
            ">P99",
            ">P99.9",
        ]);
        for u in &s.upstreams {
            let pu = p.and_then(|p| p.upstreams.iter().find(|x| x.subject == u.subject));
            let o = |k: &str| {
                counter(
                    u.outcomes.get(k).copied().unwrap_or(0),
                    pu.map(|x| x.outcomes.get(k).copied().unwrap_or(0)),
                    secs,
                )
            };
            let l = latency_summary(&u.latency).ok();
            let q = |f: fn(&LatencySummary) -> u64| l.as_ref().map_or("-".into(), |l| fmt_ns(f(l)));
            t.row(vec![
                u.subject.clone(),
                u.state.clone(),
                u.connects.to_string(),
                counter(u.requests, pu.map(|x| x.requests), secs),
                u.in_flight.to_string(),
                o("2xx"),
                o("4xx"),
                o("5xx"),
                o("503"),
                o("504"),
                o("502"),
                q(|l| l.p50),
                q(|l| l.p99),
                q(|l| l.p999),
            ]);
        }
        out.push_str(&t.render());
    }

    out.push_str(
        "
slow sources (connections closed by deadlines)
",
    );
    let mut t = Table::new(&["PREFIX", ">SLOW_HEADER", ">SLOW_READ"]);
    for src in &s.slow_sources {
        t.row(vec![
            src.prefix.clone(),
            src.slow_header.to_string(),
            src.slow_read.to_string(),
        ]);
    }
    out.push_str(&or_none(&t));
}

fn or_none(t: &Table) -> String {
    if t.is_empty() {
        "  (none)\n".into()
    } else {
        t.render()
    }
}

/// `weirctl rings show`.
pub fn rings_table(r: &RingsConfig) -> String {
    let mut t = Table::new(&["CLASS", ">SIZE", ">WEIGHT"]);
    for (name, ring) in [
        ("known_good", r.known_good),
        ("assumed_good", r.assumed_good),
        ("suspect", r.suspect),
    ] {
        t.row(vec![
            name.into(),
            ring.size.to_string(),
            ring.weight.to_string(),
        ]);
    }
    t.render()
}

/// `rules show --json`: the rule in the config file's form (`{"rule": "src-mix", ...}`)
/// with the limits beside it; the key is `"<redacted>"` unless `show_key`.
pub fn rules_json(
    rule: &Rule,
    new_flows_per_sec: u32,
    source_prefix_len: u8,
    show_key: bool,
    warning: Option<&str>,
) -> serde_json::Value {
    let mut v = serde_json::to_value(rule).unwrap_or_default();
    if let serde_json::Value::Object(m) = &mut v {
        if !show_key && m.contains_key("key") {
            m.insert("key".into(), "<redacted>".into());
        }
        m.insert("new_flows_per_sec".into(), new_flows_per_sec.into());
        m.insert("source_prefix_len".into(), source_prefix_len.into());
        m.insert("warning".into(), warning.into());
    }
    v
}

/// `weirctl rules show`.
pub fn rules_table(
    rule: &Rule,
    new_flows_per_sec: u32,
    source_prefix_len: u8,
    show_key: bool,
    warning: Option<&str>,
) -> String {
    let mut out = format!("rule    {rule}\n");
    let key = match rule {
        Rule::KeyedHash { key, .. } | Rule::TimeHop { key, .. } => Some(*key),
        _ => None,
    };
    if let (Some(k), true) = (key, show_key) {
        let _ = writeln!(out, "key     {}", key_hex(&k));
    }
    let _ = writeln!(
        out,
        "limits  {new_flows_per_sec} new flows/s per /{source_prefix_len} source prefix"
    );
    if let Some(w) = warning {
        let _ = writeln!(out, "warning {w}");
    }
    out
}

/// `slices show --json`.
#[derive(Debug, Serialize)]
pub struct SlicesView<'a> {
    /// APL text of the service prefixes.
    pub apl: &'a str,
    /// Slice bits per prefix.
    pub slice_bits: u8,
    /// Worker count.
    pub workers: u16,
    /// Slice → worker runs.
    pub runs: &'a [SliceRun],
    /// New flows per worker so far (all dataplanes).
    pub new_flows: &'a [u64],
    /// Each worker's fraction of the new flows (0 when there are none yet).
    pub new_flow_share: Vec<f64>,
}

/// Each count's fraction of the total (all 0 when the total is 0).
pub fn shares(counts: &[u64]) -> Vec<f64> {
    let total: u64 = counts.iter().sum();
    counts
        .iter()
        .map(|&n| {
            if total == 0 {
                0.0
            } else {
                n as f64 / total as f64
            }
        })
        .collect()
}

/// `weirctl slices show`: one row per run, with the route of its first slice when the APL
/// can be cut, and per worker the slices it owns and its share of the new flows.
pub fn slices_table(
    apl: &str,
    slice_bits: u8,
    workers: u16,
    runs: &[SliceRun],
    new_flows: &[u64],
) -> String {
    let map = Apl::parse(apl)
        .ok()
        .and_then(|a| ServicePrefixes::new(&a).ok())
        .and_then(|s| SliceMap::new(s.prefixes(), slice_bits, workers.max(1)).ok());
    let mut out = format!("apl {apl}  slice_bits {slice_bits}  workers {workers}\n\n");
    let mut t = Table::new(&[
        ">FIRST",
        ">LAST",
        ">SLICES",
        ">WORKER",
        "FIRST SLICE PREFIX",
    ]);
    let mut per_worker: BTreeMap<u16, u64> = BTreeMap::new();
    for r in runs {
        let n = u64::from(r.last.saturating_sub(r.first)) + 1;
        *per_worker.entry(r.worker).or_default() += n;
        let route = map
            .as_ref()
            .and_then(|m| m.slice_prefix(r.first))
            .map_or_else(|| "-".into(), |p| p.to_string());
        t.row(vec![
            r.first.to_string(),
            r.last.to_string(),
            n.to_string(),
            r.worker.to_string(),
            route,
        ]);
    }
    out.push_str(&or_none(&t));
    out.push_str("\nper worker\n");
    let mut t = Table::new(&[">WORKER", ">SLICES", ">NEW FLOWS", ">SHARE"]);
    let share = shares(new_flows);
    for w in 0..workers {
        let i = usize::from(w);
        let flows = new_flows.get(i).copied().unwrap_or(0);
        t.row(vec![
            w.to_string(),
            per_worker.get(&w).copied().unwrap_or(0).to_string(),
            flows.to_string(),
            format!("{:.1}%", 100.0 * share.get(i).copied().unwrap_or(0.0)),
        ]);
    }
    out.push_str(&or_none(&t));
    out
}

/// `weirctl cluster status`: members, the assignment's runs, handovers, this host's routes.
pub fn cluster_table(v: &ClusterView) -> String {
    let mut out = format!(
        "service {}  host {}  etcd {}  coordinator {}  epoch {}  slices {}\n",
        v.service,
        v.host,
        if v.connected {
            "connected"
        } else {
            "DISCONNECTED"
        },
        v.coordinator.as_deref().unwrap_or("-"),
        v.epoch,
        v.slices
    );
    if let Some(e) = &v.last_error {
        let _ = writeln!(out, "last error: {e}");
    }
    out.push_str("\nhosts\n");
    let mut t = Table::new(&["HOST", "STATE", "HANDOVER ADDRESS", ">SLICES", ">SHARE"]);
    for h in &v.hosts {
        let state = match (h.live, h.drained) {
            (true, false) => "live",
            (true, true) => "live, drained",
            (false, true) => "down, drained",
            (false, false) => "down",
        };
        let share = if v.slices == 0 {
            0.0
        } else {
            100.0 * f64::from(h.slices) / f64::from(v.slices)
        };
        t.row(vec![
            h.name.clone(),
            state.into(),
            if h.handover_addr.is_empty() {
                "-".into()
            } else {
                h.handover_addr.clone()
            },
            h.slices.to_string(),
            format!("{share:.1}%"),
        ]);
    }
    out.push_str(&or_none(&t));
    out.push_str("\nassignment\n");
    let mut t = Table::new(&[">FIRST", ">LAST", ">SLICES", "HOST"]);
    for r in &v.runs {
        t.row(vec![
            r.first.to_string(),
            r.last.to_string(),
            (u64::from(r.last.saturating_sub(r.first)) + 1).to_string(),
            r.host.clone(),
        ]);
    }
    out.push_str(&or_none(&t));
    out.push_str("\nhandovers\n");
    let mut t = Table::new(&[
        "ID",
        ">FIRST",
        ">LAST",
        "FROM",
        "TO",
        "ANNOUNCED",
        ">REMAINING",
    ]);
    for h in &v.handovers {
        t.row(vec![
            h.id.clone(),
            h.first.to_string(),
            h.last.to_string(),
            h.from.clone(),
            h.to.clone(),
            if h.announced { "yes" } else { "no" }.into(),
            format!("{:.1}s", h.remaining_ms as f64 / 1000.0),
        ]);
    }
    out.push_str(&or_none(&t));
    let _ = writeln!(out, "\nannounced by this host ({})", v.announced.len());
    for p in &v.announced {
        let _ = writeln!(out, "  {p}");
    }
    out
}

/// The line printed after a cluster change.
pub fn cluster_done_line(message: &str, epoch: u64) -> String {
    format!("{message}\nassignment epoch {epoch}\n")
}

/// `weirctl block list`; expiry is shown relative to `now_unix_ns`.
pub fn blocks_table(blocks: &[BlockSpec], now_unix_ns: u64) -> String {
    if blocks.is_empty() {
        return "no blocked prefixes\n".into();
    }
    let mut t = Table::new(&["PREFIX", "EXPIRES", "REASON"]);
    for b in blocks {
        let expires = match b.until_unix_ns {
            None => "never".to_string(),
            Some(u) if u <= now_unix_ns => "expired".to_string(),
            Some(u) => format!(
                "in {}",
                fmt_duration_s((u - now_unix_ns).div_ceil(1_000_000_000))
            ),
        };
        t.row(vec![b.prefix.clone(), expires, b.reason.clone()]);
    }
    t.render()
}

/// JSON of `weirctl tee status`.
#[derive(Debug, Serialize)]
pub struct TeeView<'a> {
    /// weir-cp's order.
    pub order: &'a TeeOrder,
    /// Each dataplane's tee.
    pub dataplanes: &'a [(String, TeeStatus)],
}

/// `weirctl tee status`.
pub fn tee_table(order: &TeeOrder, dataplanes: &[(String, TeeStatus)], now_unix_ns: u64) -> String {
    let mut out = match order {
        TeeOrder::Config => "order: none (each dataplane follows its [tee])\n".to_string(),
        TeeOrder::Stop => "order: stopped\n".to_string(),
        TeeOrder::Start(s) => {
            let until = match s.until_unix_ns {
                None => "until stopped".to_string(),
                Some(u) if u <= now_unix_ns => "expired".to_string(),
                Some(u) => format!(
                    "for {} more",
                    fmt_duration_s((u - now_unix_ns).div_ceil(1_000_000_000))
                ),
            };
            format!(
                "order: tee {} at 1 in {}, {until}\n",
                s.filters.join(","),
                s.sample
            )
        }
    };
    if dataplanes.is_empty() {
        out.push_str("no dataplane reported yet\n");
        return out;
    }
    let mut t = Table::new(&[
        "DATAPLANE",
        "STATE",
        "FILTER",
        ">1-IN",
        ">TEED",
        ">TEE-DROPPED",
        ">SAMPLED-OUT",
        ">RATE-CAPPED",
        ">WRITTEN",
        ">FILES",
        ">BYTES",
        "FILE",
    ]);
    for (name, s) in dataplanes {
        let state = match (&s.error, s.active) {
            (Some(e), _) => format!("error: {e}"),
            (None, true) => "on".to_string(),
            (None, false) => "off".to_string(),
        };
        t.row(vec![
            name.clone(),
            state,
            if s.filter.is_empty() {
                "-".into()
            } else {
                s.filter.clone()
            },
            s.sample.to_string(),
            s.teed.to_string(),
            s.dropped.to_string(),
            s.sampled_out.to_string(),
            s.rate_capped.to_string(),
            s.written.to_string(),
            s.files.to_string(),
            s.bytes.to_string(),
            s.file.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    out.push_str(&t.render());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_control::proto::{DpLink, RingStats, SlowSource, SourceRate, UpstreamStats};
    use weir_model::{Class, WorkerStats};

    #[test]
    fn tables_align() {
        let mut t = Table::new(&["NAME", ">N"]);
        t.row(vec!["a".into(), "1".into()]);
        t.row(vec!["longer".into(), "1000".into()]);
        assert_eq!(
            t.render(),
            "  NAME       N\n  a          1\n  longer  1000\n"
        );
    }

    #[test]
    fn formats() {
        assert_eq!(fmt_duration_s(0), "0s");
        assert_eq!(fmt_duration_s(245), "4m05s");
        assert_eq!(fmt_duration_s(3723), "1h02m03s");
        assert_eq!(fmt_duration_s(273_600), "3d04h");
        assert_eq!(fmt_ns(850), "850ns");
        assert_eq!(fmt_ns(12_340), "12.3µs");
        assert_eq!(fmt_ns(1_200_000), "1.20ms");
        assert_eq!(counter(10, None, None), "10");
        assert_eq!(counter(30, Some(10), Some(2.0)), "30 (+10/s)");
        assert_eq!(counter(11, Some(10), Some(2.0)), "11 (+0.5/s)");
        assert_eq!(counter(5, Some(10), Some(2.0)), "5", "counter reset");
    }

    fn histogram(values: &[u64]) -> Vec<u8> {
        let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
        for &v in values {
            h.record(v).unwrap();
        }
        let mut buf = Vec::new();
        use hdrhistogram::serialization::Serializer as _;
        hdrhistogram::serialization::V2Serializer::new()
            .serialize(&h, &mut buf)
            .unwrap();
        buf
    }

    fn sample(packets: u64, uptime_s: u64) -> DpStats {
        DpStats {
            policy_version: 3,
            uptime_ns: uptime_s * 1_000_000_000,
            packets,
            outbound: 7,
            host: 2,
            classes: [("known_good".to_string(), packets / 2)].into(),
            reasons: [("ssa-violation".to_string(), 5), ("martian".to_string(), 0)].into(),
            events: [("flow-table-full".to_string(), 1)].into(),
            slices: vec![],
            workers: vec![WorkerStats {
                worker: 1,
                known_good: 40,
                assumed_good: 3,
                suspect: 1,
                bytes: 9000,
                new_flows: 7,
                rounds: 0,
            }],
            rings: vec![RingStats {
                rx: 0,
                worker: 1,
                class: Class::Suspect,
                size: 512,
                occupancy: 128,
                drops: 17,
            }],
            half_open: 4,
            established: 9,
            top_sources: vec![SourceRate {
                prefix: "2001:db8:bad::/64".into(),
                admitted: 10,
                limited: 90,
            }],
            latency: [("known_good".to_string(), histogram(&[1000, 2000, 3000]))].into(),
            slow_sources: vec![SlowSource {
                prefix: "2001:db8:bad::/64".into(),
                slow_header: 200,
                slow_read: 3,
            }],
            upstreams: vec![UpstreamStats {
                kind: "nats".into(),
                url: "nats://127.0.0.1:4222".into(),
                subject: "weir.http".into(),
                state: "connected".into(),
                connects: 2,
                requests: 1000,
                in_flight: 4,
                outcomes: [("2xx".to_string(), 990), ("504".to_string(), 10)].into(),
                headers_dropped: 0,
                late_replies: 1,
                latency: histogram(&[200_000, 300_000, 9_000_000]),
            }],
            tee: TeeStatus::default(),
        }
    }

    #[test]
    fn stats_render() {
        let one = vec![("dp0".to_string(), sample(100, 10))];
        let text = stats_table(&one, None, 1.0);
        for want in [
            "dataplane dp0",
            "packets 100",
            "ssa-violation",
            "flow-table-full",
            "2001:db8:bad::/64",
            "25%",
            "9000",
            "3.0µs",
            "upstreams (application servers)",
            "weir.http",
            "connected",
            "slow sources",
            "200",
        ] {
            assert!(text.contains(want), "{want:?} missing in\n{text}");
        }
        assert!(
            !text.contains("martian"),
            "zero reasons are left out\n{text}"
        );
        assert!(!text.contains("/s"), "no rates in the first sample\n{text}");
        let two = vec![("dp0".to_string(), sample(300, 12))];
        let text = stats_table(&two, Some(&one), 99.0);
        assert!(text.contains("packets 300 (+100/s)"), "{text}");

        let v = serde_json::to_value(StatsView::new(&one)).unwrap();
        assert_eq!(v["dataplanes"][0]["name"], "dp0");
        assert_eq!(v["dataplanes"][0]["stats"]["packets"], 100);
        assert_eq!(v["dataplanes"][0]["latency_ns"]["known_good"]["count"], 3);
        assert_eq!(latency_summary(b"junk").ok(), None);
    }

    #[test]
    fn status_render() {
        let s = CpStatus {
            version: 5,
            config: "/etc/weir.toml".into(),
            uptime_s: 3723,
            dataplanes: vec![DpLink {
                name: "dp0".into(),
                socket: "/run/weir/dp0.sock".into(),
                connected: false,
                applied_version: 4,
                reconnects: 2,
                last_error: Some("connection refused".into()),
            }],
            decisions: [("blocked".to_string(), 3)].into(),
        };
        let text = status_table(&s);
        for want in [
            "policy version 5",
            "1h02m03s",
            "/etc/weir.toml",
            "4 (behind)",
            "connection refused",
            "blocked",
        ] {
            assert!(text.contains(want), "{want:?} missing in\n{text}");
        }
    }

    #[test]
    fn rules_hide_keys() {
        let r = Rule::KeyedHash {
            key: [0xab; 16],
            src_prefix_len: 48,
        };
        let text = rules_table(&r, 1000, 64, false, None);
        assert!(
            !text.contains("abab") && !text.contains("warning"),
            "{text}"
        );
        assert!(rules_table(&r, 1000, 64, true, None).contains(&"ab".repeat(16)));
        let v = rules_json(&r, 1000, 64, false, None);
        assert_eq!(v["rule"], "keyed-hash");
        assert_eq!(v["key"], "<redacted>");
        assert_eq!(v["src_prefix_len"], 48);
        assert_eq!(v["new_flows_per_sec"], 1000);
        assert_eq!(rules_json(&r, 1, 64, true, None)["key"], "ab".repeat(16));
        assert!(v["warning"].is_null());
        let seed = Rule::src_bits(0, 64, 64).unwrap();
        let w = seed.spread_warning(&["2001:db8:5::/64".parse().unwrap()], 14);
        let text = rules_table(&seed, 1000, 64, false, w.as_deref());
        assert!(
            text.contains("warning rule src-bits") && text.contains("src-mix"),
            "{text}"
        );
    }

    #[test]
    fn slices_and_blocks_render() {
        let runs = [
            SliceRun {
                first: 0,
                last: 8191,
                worker: 0,
            },
            SliceRun {
                first: 8192,
                last: 16383,
                worker: 1,
            },
        ];
        let text = slices_table("2:2001:db8:5::/64", 14, 2, &runs, &[30, 10]);
        assert!(text.contains("8192"), "{text}");
        assert!(text.contains("75.0%") && text.contains("25.0%"), "{text}");
        assert!(text.contains("2001:db8:5:0:8000::/78"), "{text}");
        let blocks = [
            BlockSpec {
                prefix: "2001:db8:bad::/48".into(),
                until_unix_ns: Some(400_000_000_000),
                reason: "operator".into(),
            },
            BlockSpec {
                prefix: "2001:db8:eee::/48".into(),
                until_unix_ns: None,
                reason: "policy".into(),
            },
        ];
        let text = blocks_table(&blocks, 100_000_000_000);
        assert!(
            text.contains("in 5m00s") && text.contains("never"),
            "{text}"
        );
    }
}
