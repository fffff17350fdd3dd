//! The dataplane's control server: weir-cp (or a test) connects to `[dataplane]
//! control_socket`, says hello, then sends [`DpRequest`]s.
//!
//! - `Apply`: the snapshot is validated completely ([`Policy::from_snapshot`]) before
//!   anything changes; a bad one is answered with `Error` and the running policy stays.
//!   A good one is installed whole (rx cores pick it up at their next burst) and ring
//!   sizes/weights are handed to the rx core, which resizes without losing packets.
//! - `Stats`: built from the reports the rx core and workers publish (see `live`).
//! - A malformed, truncated or oversized frame is answered with `Error` (id 0), logged, and
//!   the connection carries on; a peer that fails the hello (uid, magic, version) is
//!   refused by the transport. Either way the dataplane keeps forwarding.
//! - When weir-cp goes away the dataplane keeps its last policy and keeps counting; when
//!   it returns it connects again and re-applies its snapshot.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hdrhistogram::serialization::{Serializer, V2Serializer};
use tracing::{info, warn};
use weir_control::proto::{
    DpReply, DpRequest, DpStats, Envelope, Hello, RingStats, Role, SlowSource, SourceRate,
    TeeOrder, UpstreamStats, MAX_SLOW_SOURCES,
};
use weir_control::transport::{Conn, Listener, TransportError};
use weir_model::WorkerStats;
use weir_ssa::Prefix;

use crate::classify::Policy;
use crate::state::DataplaneState;
use weir_model::verdict::{Class, Reason};

/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 8;

/// Serve `listener` on a thread until `shared.stop` is set.
pub fn spawn(listener: Listener, shared: Arc<DataplaneState>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("weir-control".into())
        .spawn(move || serve(&listener, &shared))
}

fn serve(listener: &Listener, shared: &Arc<DataplaneState>) {
    let me = Hello::new(Role::Dataplane, "weir-dp");
    let active = Arc::new(AtomicUsize::new(0));
    while !shared.stop.load(Ordering::Relaxed) {
        if active.load(Ordering::Acquire) >= MAX_CONNECTIONS {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        match listener.accept(&me, Some(Duration::from_millis(200))) {
            Ok((conn, peer)) => {
                info!(peer = %peer.name, role = ?peer.role, "control connection");
                active.fetch_add(1, Ordering::AcqRel);
                let shared = Arc::clone(shared);
                let active = Arc::clone(&active);
                let spawned = std::thread::Builder::new()
                    .name("weir-control-conn".into())
                    .spawn(move || {
                        handle(&conn, &shared);
                        active.fetch_sub(1, Ordering::AcqRel);
                    });
                if let Err(e) = spawned {
                    warn!("cannot start a control connection thread: {e}");
                }
            }
            Err(TransportError::Timeout) => {}
            Err(e) => warn!("control connection refused: {e}"),
        }
    }
}

fn handle(conn: &Conn, shared: &DataplaneState) {
    while !shared.stop.load(Ordering::Relaxed) {
        match conn.recv::<DpRequest>(Some(Duration::from_millis(500))) {
            Ok(env) => {
                let body = dispatch(env.body, shared);
                if let Err(e) = conn.send(&Envelope { id: env.id, body }) {
                    warn!("control reply failed: {e}");
                    return;
                }
            }
            Err(TransportError::Timeout) => {}
            Err(TransportError::Closed) => return,
            Err(TransportError::Frame(e)) => {
                warn!("bad control frame refused: {e}");
                let body = DpReply::Error {
                    message: format!("bad frame: {e}"),
                };
                if conn.send(&Envelope { id: 0, body }).is_err() {
                    return;
                }
            }
            Err(e) => {
                warn!("control connection ended: {e}");
                return;
            }
        }
    }
}

/// Answer one request.
pub fn dispatch(req: DpRequest, shared: &DataplaneState) -> DpReply {
    match req {
        DpRequest::Ping => DpReply::Pong {
            version: current_version(shared),
        },
        DpRequest::Apply(snap) => match Policy::from_snapshot(&snap, shared.worker_count)
            .map_err(|e| e.to_string())
            .and_then(|p| check_tee(&snap.tee, shared).map(|()| p))
        {
            Ok(policy) => {
                let version = policy.version;
                shared.set_policy(policy);
                shared.set_rings(snap.rings);
                // Checked above; what can still fail is the files (kept in the tee's
                // status for `weirctl tee status`).
                if let Err(e) = shared.tee.follow(&snap.tee) {
                    warn!(version, "tee: {e}");
                }
                info!(version, "policy applied");
                DpReply::Applied { version }
            }
            Err(e) => {
                warn!(version = snap.version, "policy refused: {e}");
                DpReply::Error {
                    message: format!("policy {} refused: {e}", snap.version),
                }
            }
        },
        DpRequest::Stats => DpReply::Stats(Box::new(stats(shared))),
    }
}

/// A snapshot's tee order, checked before anything of the snapshot is applied.
fn check_tee(order: &TeeOrder, shared: &DataplaneState) -> Result<(), String> {
    match order {
        TeeOrder::Start(spec) => crate::tee::TeeSettings::from_spec(spec, shared.tee.config())
            .map(|_| ())
            .map_err(|e| format!("tee: {e}")),
        TeeOrder::Config | TeeOrder::Stop => Ok(()),
    }
}

fn current_version(shared: &DataplaneState) -> u64 {
    shared.policy.lock().map_or(0, |p| p.version)
}

/// Gather the published reports into [`DpStats`].
pub fn stats(shared: &DataplaneState) -> DpStats {
    let rx = shared.rx_report();
    let c = &rx.counters;
    let mut events = BTreeMap::new();
    events.insert("flow-table-full".to_string(), rx.flow.table_full);
    events.insert("rate-table-evicted".to_string(), rx.rate.evicted);
    events.insert("oversize".to_string(), rx.oversize);
    // A DPDK frame in several segments whose headers are not all in the first one.
    events.insert("truncated".to_string(), c.truncated());
    events.insert("port-imissed".to_string(), rx.port.imissed);
    events.insert("port-ierrors".to_string(), rx.port.ierrors);
    events.insert("port-rx-nombuf".to_string(), rx.port.rx_nombuf);
    events.insert("host-answered".to_string(), rx.tx.host_answered);
    events.insert("host-ignored".to_string(), rx.tx.host_ignored);
    events.insert("tx-sent".to_string(), rx.tx.sent);
    events.insert("tx-send-failed".to_string(), rx.tx.send_failed);
    let tee = shared.tee.status();
    events.insert("tee-teed".to_string(), tee.teed);
    events.insert("tee-dropped".to_string(), tee.dropped);
    events.insert("tee-sampled-out".to_string(), tee.sampled_out);
    events.insert("tee-rate-capped".to_string(), tee.rate_capped);
    events.insert("tee-written".to_string(), tee.written);
    events.insert("tee-files".to_string(), tee.files);
    events.insert("tee-bytes".to_string(), tee.bytes);
    {
        use crate::handover::{
            Refusal, COUNTER_DECAPSULATED, COUNTER_FORWARDED, COUNTER_REFUSED, COUNTER_TOO_BIG,
        };
        let h = &rx.handover;
        events.insert(COUNTER_FORWARDED.to_string(), h.forwarded);
        events.insert(COUNTER_DECAPSULATED.to_string(), h.decapsulated);
        events.insert(COUNTER_TOO_BIG.to_string(), h.too_big);
        events.insert("handover-dropped".to_string(), h.dropped);
        events.insert(COUNTER_REFUSED.to_string(), h.refused.iter().sum());
        for (r, n) in Refusal::ALL.iter().zip(h.refused) {
            events.insert(r.name().to_string(), n);
        }
    }
    for class in Class::QUEUED {
        events.insert(
            format!("ring-full-{}", class.name()),
            rx.ring_full[class.index()],
        );
    }
    let mut workers = Vec::new();
    let mut latency = BTreeMap::new();
    let mut merged: Vec<Option<hdrhistogram::Histogram<u64>>> = vec![None, None, None];
    let mut term_totals: BTreeMap<String, u64> = BTreeMap::new();
    let mut slow: BTreeMap<(u128, u8), (u64, u64)> = BTreeMap::new();
    let mut upstreams: Vec<std::sync::Arc<weir_terminator::nats::Upstream>> = Vec::new();
    for slot in &shared.workers {
        let Ok(w) = slot.lock() else { continue };
        if let Some(t) = &w.terminator {
            for s in t.slow_sources.iter().filter(|s| s.len != 0) {
                let e = slow.entry((s.prefix, s.len)).or_default();
                e.0 += s.header;
                e.1 += s.read;
            }
            if let Some(u) = &t.upstream.0 {
                if !upstreams.iter().any(|x| std::sync::Arc::ptr_eq(x, u)) {
                    upstreams.push(std::sync::Arc::clone(u));
                }
            }
            for (name, n) in t.counters() {
                *term_totals.entry(name.to_string()).or_default() += n;
            }
            *term_totals
                .entry("term-tx-ring-dropped".into())
                .or_default() += w.tx_dropped;
        }
        workers.push(WorkerStats {
            new_flows: rx
                .new_flows
                .get(usize::from(w.stats.worker))
                .copied()
                .unwrap_or(0),
            ..w.stats
        });
        for (i, h) in w.latency.iter().enumerate() {
            match &mut merged[i] {
                Some(m) => {
                    let _ = m.add(h);
                }
                none => *none = Some(h.clone()),
            }
        }
    }
    for (i, h) in merged.into_iter().enumerate() {
        let (Some(h), Some(class)) = (h, Class::QUEUED.get(i)) else {
            continue;
        };
        let mut bytes = Vec::new();
        if V2Serializer::new().serialize(&h, &mut bytes).is_ok() {
            latency.insert(class.name().to_string(), bytes);
        }
    }
    events.extend(term_totals);
    DpStats {
        policy_version: rx.policy_version,
        uptime_ns: u64::try_from(shared.started.elapsed().as_nanos()).unwrap_or(u64::MAX),
        packets: c.packets(),
        outbound: c.outbound(),
        host: c.host(),
        classes: Class::ALL
            .iter()
            .map(|&k| (k.name().to_string(), c.class(k)))
            .collect(),
        reasons: Reason::ALL
            .iter()
            .map(|&r| (r.name().to_string(), c.reason(r)))
            .collect(),
        events,
        slices: rx
            .slice_packets
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(i, &n)| (u32::try_from(i).unwrap_or(u32::MAX), n))
            .collect(),
        workers,
        rings: rx
            .rings
            .iter()
            .map(|r| RingStats {
                rx: r.rx,
                worker: r.worker,
                class: r.class,
                size: u32::try_from(r.size).unwrap_or(u32::MAX),
                occupancy: u32::try_from(r.occupancy).unwrap_or(u32::MAX),
                drops: rx.ring_full.get(r.class.index()).copied().unwrap_or(0),
            })
            .collect(),
        half_open: rx.half_open,
        established: rx.established,
        top_sources: rx
            .top_sources
            .iter()
            .map(|t| SourceRate {
                prefix: Prefix::new(t.prefix, t.len)
                    .map_or_else(|_| format!("{:x}/{}", t.prefix, t.len), |p| p.to_string()),
                admitted: u64::from(t.admitted),
                limited: u64::from(t.limited),
            })
            .collect(),
        latency,
        slow_sources: slow_sources(slow),
        upstreams: upstreams.iter().map(|u| upstream_stats(u)).collect(),
        tee,
    }
}

/// The merged slow-client table as the protocol carries it: most events first, bounded.
fn slow_sources(merged: BTreeMap<(u128, u8), (u64, u64)>) -> Vec<SlowSource> {
    let mut v: Vec<SlowSource> = merged
        .into_iter()
        .map(|((p, len), (slow_header, slow_read))| SlowSource {
            prefix: Prefix::new(p, len).map_or_else(|_| format!("{p:x}/{len}"), |p| p.to_string()),
            slow_header,
            slow_read,
        })
        .collect();
    v.sort_by_key(|s| std::cmp::Reverse(s.slow_header + s.slow_read));
    v.truncate(MAX_SLOW_SOURCES);
    v
}

/// One `nats` upstream's published state.
fn upstream_stats(u: &weir_terminator::nats::Upstream) -> UpstreamStats {
    let r = u.report();
    let mut latency = Vec::new();
    if V2Serializer::new()
        .serialize(&r.latency, &mut latency)
        .is_err()
    {
        latency.clear();
    }
    UpstreamStats {
        kind: "nats".into(),
        url: u.url.clone(),
        subject: u.subject.clone(),
        state: u.state().name().into(),
        connects: u.connects(),
        requests: r.requests,
        in_flight: r.in_flight,
        outcomes: r
            .outcomes
            .named()
            .iter()
            .map(|&(k, v)| (k.to_string(), v))
            .collect(),
        headers_dropped: r.headers_dropped,
        late_replies: r.late_replies,
        latency,
    }
}
