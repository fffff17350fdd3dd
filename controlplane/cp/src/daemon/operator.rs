//! The operator socket: weirctl's requests, answered from and applied to the desired state.
//!
//! One accept loop; each accepted connection (uid already checked by the transport) gets a
//! thread, at most [`MAX_CONNECTIONS`] at once — one more is closed right away, so a stuck
//! or hostile local client cannot make the daemon spawn without bound. A connection carries
//! any number of requests (so `weirctl stats --watch` keeps one) and is closed after
//! [`IDLE_LIMIT`] without one.
//!
//! Reads are answered from the state in force; changes go through `DaemonState::commit`, so each
//! is validated in full, persisted, and only then acknowledged with `Done` and the new
//! version — or refused with `Error` and the reason, leaving everything unchanged.
//! `ConfigReload` re-reads the file; an invalid file is refused with its `FILE:LINE:COL`
//! message and the running config stays.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use weir_control::proto::{CtlReply, CtlRequest, Envelope, Hello, Role, TeeOrder, TeeSpec};
use weir_control::transport::{Conn, Listener, TransportError};
use weir_model::config::Config;

use super::state::{Change, NS};
use super::{control_section, lock, metrics_addr, now_unix_ns, DaemonState, TICK};

/// Most operator connections served at once.
pub const MAX_CONNECTIONS: usize = 16;

/// An operator connection with no request for this long is closed.
pub const IDLE_LIMIT: Duration = Duration::from_secs(300);

/// Accept and serve operator connections until shutdown; dropping the listener at the end
/// removes the socket.
pub(crate) fn serve(shared: &Arc<DaemonState>, listener: Listener) {
    let me = Hello::new(Role::ControlPlane, "weir-cp");
    let mut handlers: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stopping() {
        let (finished, running): (Vec<_>, Vec<_>) =
            handlers.into_iter().partition(|h| h.is_finished());
        handlers = running;
        for h in finished {
            let _ = h.join();
        }
        match listener.accept(&me, Some(TICK)) {
            Ok((conn, hello)) => {
                if handlers.len() >= MAX_CONNECTIONS {
                    tracing::warn!(peer = %hello.name, "too many operator connections; closing this one");
                    continue;
                }
                let s = shared.clone();
                let who = format!("{} (uid {})", hello.name, conn.peer_uid());
                match std::thread::Builder::new()
                    .name("cp-operator-conn".into())
                    .spawn(move || handle(&s, &conn, &who))
                {
                    Ok(h) => handlers.push(h),
                    Err(e) => tracing::error!(error = %e, "cannot start an operator thread"),
                }
            }
            Err(TransportError::Timeout) => {}
            // Refused peers are logged by the transport; a failing socket must not spin.
            Err(TransportError::Io { .. }) => shared.sleep(TICK),
            Err(_) => {}
        }
    }
    for h in handlers {
        let _ = h.join();
    }
    drop(listener);
}

fn handle(shared: &DaemonState, conn: &Conn, who: &str) {
    let mut idle = Duration::ZERO;
    while !shared.stopping() {
        match conn.recv::<CtlRequest>(Some(TICK)) {
            Ok(Envelope { id, body }) => {
                idle = Duration::ZERO;
                let reply = answer(shared, body, who);
                if let Err(e) = conn.send(&Envelope { id, body: reply }) {
                    tracing::debug!(peer = who, error = %e, "operator connection lost");
                    return;
                }
            }
            Err(TransportError::Timeout) => {
                idle += TICK;
                if idle >= IDLE_LIMIT {
                    return;
                }
            }
            // Consumed and logged by the transport; the connection stays usable.
            Err(TransportError::Frame(_)) => {}
            Err(_) => return,
        }
    }
}

/// The reply to one operator request.
pub(crate) fn answer(shared: &DaemonState, request: CtlRequest, who: &str) -> CtlReply {
    let change = match request {
        CtlRequest::Status => return CtlReply::Status(shared.status()),
        CtlRequest::Stats => {
            return CtlReply::Stats(
                shared
                    .links
                    .iter()
                    .filter_map(|l| lock(&l.status).stats.clone().map(|s| (l.name.clone(), s)))
                    .collect(),
            )
        }
        CtlRequest::RingsShow => return CtlReply::Rings(lock(&shared.desired).snapshot.rings),
        CtlRequest::RulesShow => {
            let d = lock(&shared.desired);
            let warning = weir_ssa::ServicePrefixes::parse(&d.snapshot.apl)
                .ok()
                .and_then(|p| {
                    d.snapshot
                        .rule
                        .spread_warning(p.prefixes(), d.snapshot.slice_bits)
                });
            return CtlReply::Rules {
                rule: d.snapshot.rule,
                new_flows_per_sec: d.snapshot.new_flows_per_sec,
                source_prefix_len: d.snapshot.source_prefix_len,
                warning,
            };
        }
        CtlRequest::SlicesShow => {
            let mut new_flows: Vec<u64> = Vec::new();
            for l in &shared.links {
                let status = lock(&l.status);
                for w in status.stats.iter().flat_map(|s| &s.workers) {
                    let i = usize::from(w.worker);
                    if new_flows.len() <= i {
                        new_flows.resize(i + 1, 0);
                    }
                    new_flows[i] += w.new_flows;
                }
            }
            let d = lock(&shared.desired);
            return CtlReply::Slices {
                apl: d.snapshot.apl.clone(),
                slice_bits: d.snapshot.slice_bits,
                workers: d.config.dataplane.workers,
                runs: d.snapshot.slices.clone(),
                new_flows,
            };
        }
        CtlRequest::BlockList => {
            return CtlReply::Blocks(lock(&shared.desired).snapshot.blocks.clone())
        }
        CtlRequest::ConfigReload => return reload(shared, who),
        CtlRequest::ClusterStatus => {
            return match &shared.cluster {
                Some(c) => CtlReply::Cluster(Box::new(c.view())),
                None => error(NO_CLUSTER.into()),
            }
        }
        CtlRequest::ClusterMove { first, last, host } => {
            return cluster_request(
                shared,
                super::cluster::Request::Move { first, last, host },
                who,
            )
        }
        CtlRequest::ClusterDrain { host } => {
            return cluster_request(shared, super::cluster::Request::Drain { host }, who)
        }
        CtlRequest::RingsSet {
            class,
            size,
            weight,
        } => Change::Ring {
            class,
            size,
            weight,
        },
        CtlRequest::RulesSet(rule) => Change::Rule(rule),
        CtlRequest::SlicesMove {
            first,
            last,
            worker,
        } => Change::SlicesMove {
            first,
            last,
            worker,
        },
        CtlRequest::BlockAdd { prefix, ttl_s } => {
            let until_unix_ns = match ttl_s {
                None => None,
                Some(0) => return error("a block's ttl must be at least 1 second".into()),
                Some(t) => match t
                    .checked_mul(NS)
                    .and_then(|ns| ns.checked_add(now_unix_ns()))
                {
                    Some(u) => Some(u),
                    None => return error(format!("ttl {t}s is too long")),
                },
            };
            Change::BlockAdd {
                prefix,
                until_unix_ns,
                reason: format!("operator {who}"),
            }
        }
        CtlRequest::BlockDel { prefix } => Change::BlockDel { prefix },
        CtlRequest::TeeStatus => {
            return CtlReply::Tee {
                order: lock(&shared.desired).overlay.tee.clone(),
                dataplanes: shared
                    .links
                    .iter()
                    .filter_map(|l| {
                        lock(&l.status)
                            .stats
                            .as_ref()
                            .map(|s| (l.name.clone(), s.tee.clone()))
                    })
                    .collect(),
            }
        }
        CtlRequest::TeeStop => Change::Tee(TeeOrder::Stop),
        CtlRequest::TeeStart {
            filters,
            sample,
            rate_per_core,
            snaplen,
            duration_ms,
        } => {
            let until_unix_ns = match duration_ms {
                None => None,
                Some(0) => return error("a tee's duration must be at least 1 ms".into()),
                Some(ms) => match ms
                    .checked_mul(1_000_000)
                    .and_then(|ns| ns.checked_add(now_unix_ns()))
                {
                    Some(u) => Some(u),
                    None => return error(format!("duration {ms} ms is too long")),
                },
            };
            Change::Tee(TeeOrder::Start(TeeSpec {
                filters,
                sample,
                rate_per_core,
                snaplen,
                until_unix_ns,
                serial: lock(&shared.desired).version() + 1,
            }))
        }
    };
    match shared.commit(change, who) {
        Ok(Some(done)) => CtlReply::Done {
            message: done.message,
            version: done.version,
        },
        Ok(None) => error("nothing to change".into()),
        Err(message) => {
            tracing::info!(by = who, %message, "operator change refused");
            error(message)
        }
    }
}

const NO_CLUSTER: &str = "this weir-cp is not part of a cluster (no [cluster] in its config)";

fn cluster_request(shared: &DaemonState, r: super::cluster::Request, who: &str) -> CtlReply {
    let Some(c) = &shared.cluster else {
        return error(NO_CLUSTER.into());
    };
    tracing::info!(by = who, request = ?r, "cluster request");
    match c.request(r) {
        Ok((message, epoch)) => CtlReply::ClusterDone { message, epoch },
        Err(message) => {
            tracing::info!(by = who, %message, "cluster request refused");
            error(message)
        }
    }
}

fn error(message: String) -> CtlReply {
    CtlReply::Error { message }
}

fn reload(shared: &DaemonState, who: &str) -> CtlReply {
    let path = &shared.config_path;
    let checked = Config::load(path).and_then(|config| {
        let control = control_section(path, &config)?;
        metrics_addr(path, &control)?;
        Ok((config, control))
    });
    let (config, control) = match checked {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(by = who, error = %e, "config reload refused; the running config stays");
            return error(e.to_string());
        }
    };
    let restart_note = (control != shared.control)
        .then_some("; [control] changes take effect at the next start of weir-cp");
    match shared.commit(Change::Reload(Box::new(config)), who) {
        Ok(Some(done)) => {
            if let Some(note) = restart_note {
                tracing::warn!(
                    "[control] changed in the config file; it takes effect at the next start"
                );
                return CtlReply::Done {
                    message: format!("{}{note}", done.message),
                    version: done.version,
                };
            }
            CtlReply::Done {
                message: done.message,
                version: done.version,
            }
        }
        Ok(None) => error("nothing to change".into()),
        Err(m) => {
            let message = format!("{}: {m}", path.display());
            tracing::warn!(by = who, error = %message, "config reload refused; the running config stays");
            error(message)
        }
    }
}
