//! weir-cp, the control-plane daemon: it keeps the desired policy, pushes it to every
//! configured weir-dp, collects their stats, runs the policy loop, answers weirctl and
//! serves Prometheus metrics.
//!
//! ```text
//!  weirctl ──► operator (socket 0600, uid checked) ──┐
//!  policy loop (per link, after each stats poll) ────┼─► DaemonState::commit ──► state file
//!  expiry (every 250 ms) ────────────────────────────┘        │             (atomic)
//!                                                             ▼  notify
//!                                            link thread per dataplane ──► weir-dp
//!                                            (Apply when the version moved, Stats every poll)
//!  metrics (TCP, loopback) ◄── latest DpStats, link status, decision counters
//! ```
//!
//! All changes go through one function, `DaemonState::commit`: build and validate the next
//! state in full ([`state::Desired::propose`]), persist it, and only then put it in force and
//! wake the links. A refused change leaves everything as it was; an acknowledged one is on
//! disk. The version grows by one per change and continues from the state file across
//! restarts (a start itself is a change: it bumps the version, because the config file may
//! have been edited while the daemon was down).
//!
//! Threads, not async: a handful of links and operator connections, each blocking on one
//! socket with a timeout, is simpler to read and to stop than an executor, and the transport
//! is blocking. Every loop wakes at least every 250 ms to notice shutdown.
//!
//! Live-reloadable: `[service]`, `[ssa]`, `[dataplane] workers`, `[rings]`, `[limits]`,
//! `[[block]]` and `[policy]`. `[control]` (sockets, dataplanes, metrics address) and
//! `[cluster]` are read at start only; a reload that changes `[control]` says so in the
//! log and the reply. With `[cluster]`, a thread runs the cluster session (`cluster`):
//! etcd membership, the coordinator, this host's handover runs and BIRD routes.
//!
//! In-process use (tests, embedding): [`Daemon::start`] returns a [`Daemon`] handle,
//! [`Daemon::stop`] ends it cleanly; [`run`] does both around a shutdown flag.

pub mod cluster;
mod link;
mod metrics;
mod operator;
pub mod persist;
mod policy;
pub mod state;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use weir_control::proto::{BlockSpec, CpStatus, DpLink, DpStats};
use weir_control::transport::{current_uid, Listener};
use weir_model::config::{Config, ConfigError, ControlConfig};

use persist::StateFile;
use state::{Change, Desired, Overlay};

/// How often every loop looks at the shutdown flag, at least.
const TICK: Duration = Duration::from_millis(250);

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config file is invalid (`FILE:LINE:COL: reason`).
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The state file cannot be read or written.
    #[error(transparent)]
    State(#[from] persist::PersistError),
    /// The operator socket cannot be bound.
    #[error("operator socket {path}: {source}")]
    Socket {
        /// The socket.
        path: PathBuf,
        /// What the transport reported.
        source: weir_control::transport::TransportError,
    },
    /// The metrics address cannot be bound.
    #[error("prometheus listener {addr}: {source}")]
    Metrics {
        /// The address.
        addr: SocketAddr,
        /// The error the operating system gave.
        source: std::io::Error,
    },
    /// A thread could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
}

/// A running daemon; [`Daemon::stop`] ends it (dropping it does too).
#[derive(Debug)]
pub struct Daemon {
    shared: Arc<DaemonState>,
    threads: Vec<JoinHandle<()>>,
    metrics_addr: Option<SocketAddr>,
}

/// Start, wait for `shutdown` to be set, stop.
pub fn run(config_path: &Path, shutdown: Arc<AtomicBool>) -> Result<(), StartError> {
    let daemon = Daemon::start_with(config_path, shutdown.clone())?;
    while !shutdown.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    daemon.stop();
    Ok(())
}

impl Daemon {
    /// Load the config and state file, bind the sockets and start every thread.
    pub fn start(config_path: &Path) -> Result<Daemon, StartError> {
        Daemon::start_with(config_path, Arc::new(AtomicBool::new(false)))
    }

    /// [`Daemon::start`] with a shutdown flag the caller can also set.
    pub fn start_with(config_path: &Path, shutdown: Arc<AtomicBool>) -> Result<Daemon, StartError> {
        let config = Config::load(config_path)?;
        let control = control_section(config_path, &config)?;
        let metrics_bind = metrics_addr(config_path, &control)?;

        let (overlay, version) = match &control.state_file {
            Some(path) => match persist::load(path)? {
                Some(s) => {
                    tracing::info!(state_file = %path.display(), version = s.version, "runtime state loaded");
                    (s.overlay, s.version)
                }
                None => (Overlay::default(), 0),
            },
            None => {
                tracing::warn!(
                    "no [control] state_file: runtime changes will not survive a restart"
                );
                (Overlay::default(), 0)
            }
        };
        let cluster_config = config.cluster().cloned();
        let (desired, notes) = Desired::build(config, overlay, version + 1)
            .map_err(|m| plain_error(config_path, m))?;
        for n in &notes {
            tracing::warn!("{n}");
        }
        let allowed_uid = control.allowed_uid.unwrap_or_else(current_uid);
        let listener =
            Listener::bind(&control.socket, allowed_uid).map_err(|source| StartError::Socket {
                path: control.socket.clone(),
                source,
            })?;
        let metrics = match metrics_bind {
            Some(addr) => {
                let l = std::net::TcpListener::bind(addr)
                    .map_err(|source| StartError::Metrics { addr, source })?;
                l.set_nonblocking(true)
                    .map_err(|source| StartError::Metrics { addr, source })?;
                Some(l)
            }
            None => None,
        };
        let metrics_addr = metrics.as_ref().and_then(|l| l.local_addr().ok());
        // Persisted only once both sockets are ours: a second weir-cp started by mistake
        // fails at the bind above without touching the running one's state file.
        if let Some(path) = &control.state_file {
            persist::save(path, &state_file_of(&desired))?;
        }

        let shared = Arc::new(DaemonState {
            config_path: config_path.to_path_buf(),
            control: control.clone(),
            desired: Mutex::new(desired),
            changed: Condvar::new(),
            links: control
                .dataplanes
                .iter()
                .map(|d| LinkState {
                    name: d.name.clone(),
                    socket: d.socket.clone(),
                    status: Mutex::new(LinkStatus::default()),
                })
                .collect(),
            decisions: Mutex::new(BTreeMap::new()),
            started: Instant::now(),
            shutdown,
            cluster: cluster_config.map(|c| Arc::new(cluster::Cluster::new(c))),
        });
        tracing::info!(
            config = %config_path.display(),
            version = lock(&shared.desired).version(),
            socket = %control.socket.display(),
            dataplanes = control.dataplanes.len(),
            "weir-cp started"
        );

        let mut daemon = Daemon {
            shared: shared.clone(),
            threads: Vec::new(),
            metrics_addr,
        };
        let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name)
                .spawn(f)
                .map_err(StartError::Thread)
        };
        let s = shared.clone();
        daemon.threads.push(spawn(
            "cp-operator".into(),
            Box::new(move || operator::serve(&s, listener)),
        )?);
        for i in 0..shared.links.len() {
            let s = shared.clone();
            daemon.threads.push(spawn(
                format!("cp-link-{i}"),
                Box::new(move || link::run(&s, i)),
            )?);
        }
        if let Some(c) = shared.cluster.clone() {
            tracing::info!(service = %c.config.service, host = %c.config.host, "joining the cluster");
            let s = shared.clone();
            daemon.threads.push(spawn(
                "cp-cluster".into(),
                Box::new(move || cluster::run(&s, &c)),
            )?);
        }
        let s = shared.clone();
        daemon.threads.push(spawn(
            "cp-expiry".into(),
            Box::new(move || policy::expire_loop(&s)),
        )?);
        if let Some(l) = metrics {
            if let Some(addr) = metrics_addr {
                tracing::info!(%addr, "serving Prometheus metrics at /metrics");
            }
            let s = shared.clone();
            daemon.threads.push(spawn(
                "cp-metrics".into(),
                Box::new(move || metrics::serve(&s, l)),
            )?);
        }
        Ok(daemon)
    }

    /// The address the Prometheus listener is bound to (useful with port 0).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The policy version in force.
    pub fn version(&self) -> u64 {
        lock(&self.shared.desired).version()
    }

    /// The operator socket.
    pub fn socket(&self) -> &Path {
        &self.shared.control.socket
    }

    /// Stop every thread and remove the operator socket.
    pub fn stop(mut self) {
        self.shutdown_and_join();
    }

    fn shutdown_and_join(&mut self) {
        self.shared.shutdown.store(true, Ordering::Relaxed);
        {
            let _g = lock(&self.shared.desired);
            self.shared.changed.notify_all();
        }
        if self.threads.is_empty() {
            return;
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        tracing::info!("weir-cp stopped");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.shutdown_and_join();
    }
}

/// `[control]`, or its defaults, checked.
fn control_section(path: &Path, config: &Config) -> Result<ControlConfig, ConfigError> {
    let control = match &config.control {
        Some(c) => c.clone(),
        None => toml::from_str::<ControlConfig>("")
            .map_err(|e| plain_error(path, format!("[control] defaults: {e}")))?,
    };
    let mut names: Vec<&str> = Vec::new();
    for d in &control.dataplanes {
        if d.name.is_empty() || names.contains(&d.name.as_str()) {
            return Err(located(
                path,
                &["control", "dataplanes"],
                format!(
                    "[control] dataplane names must be unique and non-empty, got {:?}",
                    d.name
                ),
            ));
        }
        names.push(&d.name);
    }
    if !(10..=3_600_000).contains(&control.poll_ms) {
        return Err(located(
            path,
            &["control", "poll_ms"],
            format!(
                "[control] poll_ms must be from 10 to 3600000, got {}",
                control.poll_ms
            ),
        ));
    }
    Ok(control)
}

/// The metrics address: `None` when empty (off). A non-loopback address is allowed, since
/// it can only come from the operator writing it, but logged as a warning.
fn metrics_addr(path: &Path, control: &ControlConfig) -> Result<Option<SocketAddr>, ConfigError> {
    let text = control.prometheus.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let addr: SocketAddr = text.parse().map_err(|e| {
        located(
            path,
            &["control", "prometheus"],
            format!("[control] prometheus must be IP:PORT (or empty for off), got {text:?}: {e}"),
        )
    })?;
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "Prometheus metrics are served on a non-loopback address, as configured");
    }
    Ok(Some(addr))
}

fn plain_error(path: &Path, message: String) -> ConfigError {
    ConfigError {
        origin: path.display().to_string(),
        line: None,
        column: None,
        message,
    }
}

/// A config error about `[section] key`, with the key's line and column when the file can
/// be read again to find it.
fn located(path: &Path, key: &[&str; 2], message: String) -> ConfigError {
    #[derive(Deserialize)]
    struct Doc {
        #[serde(default)]
        control: Option<BTreeMap<String, toml::Spanned<toml::Value>>>,
    }
    let mut err = plain_error(path, message);
    let Ok(text) = std::fs::read_to_string(path) else {
        return err;
    };
    let Ok(doc) = toml::from_str::<Doc>(&text) else {
        return err;
    };
    let span = match key[0] {
        "control" => doc.control.and_then(|c| c.get(key[1]).map(|v| v.span())),
        _ => None,
    };
    if let Some(span) = span {
        let before = &text[..span.start.min(text.len())];
        err.line = Some(before.matches('\n').count() + 1);
        err.column = Some(
            before
                .rfind('\n')
                .map_or(before.len(), |i| before.len() - i - 1)
                + 1,
        );
    }
    err
}

fn state_file_of(d: &Desired) -> StateFile {
    StateFile {
        format: persist::FORMAT,
        version: d.version(),
        overlay: d.overlay.clone(),
    }
}

/// Lock, surviving a panicked holder: the data is only ever replaced whole.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Unix time in nanoseconds.
pub(crate) fn now_unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// What every thread shares.
#[derive(Debug)]
pub(crate) struct DaemonState {
    /// The config file.
    pub config_path: PathBuf,
    /// `[control]` as read at start.
    pub control: ControlConfig,
    /// The desired state; `changed` is notified when its version moves (and at shutdown).
    pub desired: Mutex<Desired>,
    /// See `desired`.
    pub changed: Condvar,
    /// One per configured dataplane, in config order.
    pub links: Vec<LinkState>,
    /// Policy-loop decisions by name.
    pub decisions: Mutex<BTreeMap<String, u64>>,
    /// Start time.
    pub started: Instant,
    /// Set to stop.
    pub shutdown: Arc<AtomicBool>,
    /// The cluster session, with `[cluster]`.
    pub cluster: Option<Arc<cluster::Cluster>>,
}

/// One dataplane link as the other threads see it.
#[derive(Debug)]
pub(crate) struct LinkState {
    /// Configured name.
    pub name: String,
    /// Its socket.
    pub socket: PathBuf,
    /// Updated by the link thread.
    pub status: Mutex<LinkStatus>,
}

/// A link's current state.
#[derive(Debug, Default)]
pub(crate) struct LinkStatus {
    /// Connected now.
    pub connected: bool,
    /// Version the dataplane acknowledged last (0: none yet).
    pub applied_version: u64,
    /// Successful connections after the first.
    pub reconnects: u64,
    /// Connections made.
    pub connects: u64,
    /// Last error.
    pub last_error: Option<String>,
    /// Latest stats.
    pub stats: Option<DpStats>,
}

/// What a committed change did.
#[derive(Debug)]
pub(crate) struct Committed {
    /// The new version.
    pub version: u64,
    /// What changed.
    pub message: String,
    /// Blocks an expiry removed.
    pub expired: Vec<BlockSpec>,
}

impl DaemonState {
    pub fn stopping(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
    }

    /// Validate, persist, put in force and announce one change; `who` goes into the log.
    /// `Ok(None)`: nothing to do (an expiry with nothing expired).
    pub fn commit(&self, change: Change, who: &str) -> Result<Option<Committed>, String> {
        let mut desired = lock(&self.desired);
        let Some(candidate) = desired.propose(change)? else {
            return Ok(None);
        };
        if let Some(path) = &self.control.state_file {
            persist::save(path, &state_file_of(&candidate.desired)).map_err(|e| {
                tracing::error!(error = %e, "change refused: cannot persist it");
                e.to_string()
            })?;
        }
        *desired = candidate.desired;
        let version = desired.version();
        self.changed.notify_all();
        drop(desired);
        tracing::info!(version, by = who, "{}", candidate.message);
        Ok(Some(Committed {
            version,
            message: candidate.message,
            expired: candidate.expired,
        }))
    }

    /// Count and log one policy decision.
    pub fn decide(&self, decision: &str, prefix: &str, reason: &str) {
        *lock(&self.decisions)
            .entry(decision.to_string())
            .or_insert(0) += 1;
        tracing::info!(decision, prefix, reason, "policy decision");
    }

    /// `weirctl status`.
    pub fn status(&self) -> CpStatus {
        let version = lock(&self.desired).version();
        CpStatus {
            version,
            config: self.config_path.display().to_string(),
            uptime_s: self.started.elapsed().as_secs(),
            dataplanes: self
                .links
                .iter()
                .map(|l| {
                    let s = lock(&l.status);
                    DpLink {
                        name: l.name.clone(),
                        socket: l.socket.display().to_string(),
                        connected: s.connected,
                        applied_version: s.applied_version,
                        reconnects: s.reconnects,
                        last_error: s.last_error.clone(),
                    }
                })
                .collect(),
            decisions: lock(&self.decisions).clone(),
        }
    }

    /// Sleep up to `d`, waking early at shutdown.
    pub fn sleep(&self, d: Duration) {
        let g = lock(&self.desired);
        let _ = self
            .changed
            .wait_timeout_while(g, d, |_| !self.stopping())
            .map_err(|_| ());
    }
}
