//! weir-cp as one host of a cluster (`[cluster]`): membership, the coordinator, the slice
//! assignment, handovers, and this host's routes — with etcd holding the state and BIRD
//! announcing the routes (DESIGN.md "Across hosts").
//!
//! ```text
//!  etcd /weir/<service>/                      one thread "cp-cluster" (tokio, current thread)
//!    hosts/<name>     (lease) ◄── register ── every 200 ms and on every watch event:
//!    coordinator      (lease) ◄── campaign      read the whole prefix, then
//!    assignment (epoch, runs) ◄── coordinator   1. health: dataplane links up, BIRD answers
//!    handovers/<id>           ◄── coordinator   2. register / withdraw, campaign
//!                                               3. coordinator: assign, fail over, move
//!                                               4. this host: snapshot → weir-dp, then
//!                                                  BIRD include + `birdc configure`
//! ```
//!
//! **Level-triggered.** Each round reads the whole prefix (a few keys) and derives
//! everything from it; a watch on the prefix only wakes the round early. A missed event,
//! a reconnect or a restart heals the same way: the next read.
//!
//! **Fencing.** The coordinator key is created under this host's lease only if absent
//! (etcd's election recipe, by hand). Every assignment write is one transaction comparing
//! (a) the coordinator key's create revision with the one this host won, and (b) the
//! assignment's mod revision with the one read together with its epoch. A weir-cp that
//! lost the election, or whose lease expired while it was paused, fails (a); two writers
//! that read the same epoch cannot both pass (b). `weirctl cluster move|drain` are
//! executed by the coordinator the same way; another host refuses them and names the
//! coordinator.
//!
//! **Health.** A host is a member only while its dataplanes are connected and BIRD
//! answers on its control socket: otherwise weir-cp revokes its lease (the coordinator
//! gives its slices to the survivors at once, without waiting for the TTL) and withdraws
//! every route, and registers again when both are back.
//!
//! **Handover** of run R from A to B (a move, a drain, a rebalance on join): the
//! coordinator writes the new assignment and `handovers/<id>` {R, A → B, until} in one
//! transaction. B puts R with predecessor A into its snapshot, waits until its dataplanes
//! run that snapshot, then announces R and marks the handover `announced`. A keeps
//! announcing R until then (so R never falls back to the covering prefix, where a third
//! host would not know A's flows), then withdraws it. The coordinator deletes the
//! handover after `drain_s`, or earlier when A has no flows left at all (A's dataplanes
//! report no established or half-open flow: a sound, if conservative, stand-in for "none
//! in R", which the stats do not break down). A host that dies just loses its slices to
//! the survivors, with no handover (no one holds its flows).
//!
//! `birdc configure` runs as a child process and BIRD's socket is probed with a blocking
//! connect (at most 300 ms): both block this thread's runtime briefly, which only delays
//! the next round; the lease is renewed every third of its TTL (≥ 0.66 s), so a slow round
//! does not cost the lease.
//!
//! Rejected: etcd's election API (`Campaign` blocks inside a gRPC call, and the fencing
//! revision it returns is the same create revision used here); a coordinator-free design
//! where each host claims slices with its own transactions (no even spread without a
//! global view, and a failure leaves a race for the dead host's slices).

pub mod assign;
pub mod bird;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc as std_mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp, WatchOptions,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use weir_control::proto::{
    ClusterHostView, ClusterPolicy, ClusterRunView, ClusterView, HandoverRun, HandoverView,
};
use weir_model::config::ClusterConfig;
use weir_ssa::{Prefix, ServicePrefixes, SliceMap};

use assign::{Assignment, Moved};
use bird::Routes;

use super::state::Change;
use super::{lock, DaemonState};

/// How often a round runs without a watch event.
const ROUND: Duration = Duration::from_millis(200);
/// How long a new coordinator waits for hosts to register before the first assignment.
const SETTLE: Duration = Duration::from_millis(1500);
/// How long an operator request waits for the coordinator's answer (below weirctl's
/// default 5 s timeout, so a request weirctl gave up on is never carried out later).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);
/// How often BIRD's control socket is checked.
const BIRD_CHECK: Duration = Duration::from_millis(500);

/// A host's registration (`hosts/<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// Host name.
    pub name: String,
    /// Its handover address.
    pub handover_addr: String,
    /// Whether its dataplanes report no flow at all (see the module doc).
    #[serde(default)]
    pub idle: bool,
}

/// A handover in progress (`handovers/<id>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handover {
    /// First slice.
    pub first: u32,
    /// Last slice, inclusive.
    pub last: u32,
    /// The predecessor (holds the old flows).
    pub from: String,
    /// The new owner.
    pub to: String,
    /// Unix time (ms) when it ends.
    pub until_unix_ms: u64,
    /// The new owner announces the run (the predecessor may withdraw it).
    #[serde(default)]
    pub announced: bool,
}

/// The etcd keys of one service.
#[derive(Debug, Clone)]
pub struct Keys {
    /// `/weir/<service>/`
    pub prefix: String,
}

impl Keys {
    /// The keys of `service`.
    pub fn new(service: &str) -> Keys {
        Keys {
            prefix: format!("/weir/{service}/"),
        }
    }
    /// `hosts/<name>`
    pub fn host(&self, name: &str) -> String {
        format!("{}hosts/{name}", self.prefix)
    }
    /// `coordinator`
    pub fn coordinator(&self) -> String {
        format!("{}coordinator", self.prefix)
    }
    /// `assignment`
    pub fn assignment(&self) -> String {
        format!("{}assignment", self.prefix)
    }
    /// `handovers/<id>`
    pub fn handover(&self, id: &str) -> String {
        format!("{}handovers/{id}", self.prefix)
    }
}

/// Everything under the prefix, as read in one request.
#[derive(Debug, Default, Clone)]
pub struct ClusterState {
    /// Registered hosts (their leases are alive).
    pub hosts: BTreeMap<String, HostRecord>,
    /// The coordinator: name, lease, create revision.
    pub coordinator: Option<(String, i64, i64)>,
    /// The assignment and its mod revision.
    pub assignment: Option<(Assignment, i64)>,
    /// Handovers by id, with their mod revisions.
    pub handovers: BTreeMap<String, (Handover, i64)>,
    /// Values that could not be read (logged, ignored).
    pub unreadable: Vec<String>,
}

/// Most keys read under a service's prefix: hosts (at most
/// `weir_control::proto::MAX_CLUSTER_MEMBERS`), handovers (at most one per assignment run
/// change) and two more, with room to spare. More is refused, so memory stays bounded.
pub const MAX_KEYS: i64 = 8192;

/// Read the whole prefix (at most [`MAX_KEYS`] keys).
pub async fn read_state(client: &mut Client, keys: &Keys) -> Result<ClusterState, String> {
    let resp = client
        .get(
            keys.prefix.as_str(),
            Some(GetOptions::new().with_prefix().with_limit(MAX_KEYS)),
        )
        .await
        .map_err(|e| format!("etcd get {}: {e}", keys.prefix))?;
    if resp.more() {
        return Err(format!(
            "more than {MAX_KEYS} keys under {}: not a weir cluster's state",
            keys.prefix
        ));
    }
    let mut st = ClusterState::default();
    for kv in resp.kvs() {
        let Ok(key) = kv.key_str() else { continue };
        let Some(rest) = key.strip_prefix(&keys.prefix) else {
            continue;
        };
        let value = kv.value();
        let mut bad = |what: &str, e: serde_json::Error| {
            st.unreadable.push(format!("{key}: {what}: {e}"));
        };
        if let Some(name) = rest.strip_prefix("hosts/") {
            match serde_json::from_slice::<HostRecord>(value) {
                Ok(h) if h.name == name => {
                    st.hosts.insert(name.to_string(), h);
                }
                Ok(_) => st
                    .unreadable
                    .push(format!("{key}: name differs from the key")),
                Err(e) => bad("host", e),
            }
        } else if rest == "coordinator" {
            let name = String::from_utf8_lossy(value).into_owned();
            st.coordinator = Some((name, kv.lease(), kv.create_revision()));
        } else if rest == "assignment" {
            match serde_json::from_slice::<Assignment>(value) {
                Ok(a) => match a.validate() {
                    Ok(()) => st.assignment = Some((a, kv.mod_revision())),
                    Err(e) => st.unreadable.push(format!("{key}: {e}")),
                },
                Err(e) => bad("assignment", e),
            }
        } else if let Some(id) = rest.strip_prefix("handovers/") {
            match serde_json::from_slice::<Handover>(value) {
                Ok(h) => {
                    st.handovers.insert(id.to_string(), (h, kv.mod_revision()));
                }
                Err(e) => bad("handover", e),
            }
        }
    }
    Ok(st)
}

/// Become the coordinator if there is none: create the key under `lease`. Returns the
/// key's create revision if this host holds it now (won now or before).
pub async fn campaign(
    client: &mut Client,
    keys: &Keys,
    me: &str,
    lease: i64,
) -> Result<Option<i64>, String> {
    let key = keys.coordinator();
    let txn = Txn::new()
        .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key.as_str(),
            me,
            Some(PutOptions::new().with_lease(lease)),
        )])
        .or_else([TxnOp::get(key.as_str(), None)]);
    let resp = client
        .txn(txn)
        .await
        .map_err(|e| format!("etcd campaign: {e}"))?;
    if resp.succeeded() {
        return Ok(resp.header().map(|h| h.revision()));
    }
    for r in resp.op_responses() {
        if let etcd_client::TxnOpResponse::Get(g) = r {
            if let Some(kv) = g.kvs().first() {
                if kv.value() == me.as_bytes() && kv.lease() == lease {
                    return Ok(Some(kv.create_revision()));
                }
            }
        }
    }
    Ok(None)
}

/// One assignment change as the coordinator writes it: the new assignment, handovers to
/// put and to delete, all or nothing. `leader_rev` fences out a coordinator that lost its
/// key; `seen` is the assignment's mod revision read with its epoch (`None`: there was
/// none). `Ok(false)`: a compare failed, nothing was written.
pub async fn commit(
    client: &mut Client,
    keys: &Keys,
    leader_rev: i64,
    seen: Option<i64>,
    next: Option<&Assignment>,
    put_handovers: &[(String, Handover)],
    delete_handovers: &[String],
) -> Result<bool, String> {
    let akey = keys.assignment();
    let mut when = vec![Compare::create_revision(
        keys.coordinator(),
        CompareOp::Equal,
        leader_rev,
    )];
    if next.is_some() {
        when.push(match seen {
            Some(r) => Compare::mod_revision(akey.as_str(), CompareOp::Equal, r),
            None => Compare::create_revision(akey.as_str(), CompareOp::Equal, 0),
        });
    }
    let mut ops = Vec::new();
    if let Some(a) = next {
        let v = serde_json::to_vec(a).map_err(|e| e.to_string())?;
        ops.push(TxnOp::put(akey.as_str(), v, None));
    }
    for (id, h) in put_handovers {
        let v = serde_json::to_vec(h).map_err(|e| e.to_string())?;
        ops.push(TxnOp::put(keys.handover(id), v, None));
    }
    for id in delete_handovers {
        ops.push(TxnOp::delete(keys.handover(id), None));
    }
    let resp = client
        .txn(Txn::new().when(when).and_then(ops))
        .await
        .map_err(|e| format!("etcd assignment transaction: {e}"))?;
    Ok(resp.succeeded())
}

/// An operator request for the coordinator.
#[derive(Debug)]
pub enum Request {
    /// `weirctl cluster move`
    Move {
        /// First slice.
        first: u32,
        /// Last slice.
        last: u32,
        /// New owner.
        host: String,
    },
    /// `weirctl cluster drain`
    Drain {
        /// The host.
        host: String,
    },
}

/// The answer to a [`Request`]: the message and the new epoch.
type Reply = std_mpsc::Sender<Result<(String, u64), String>>;

/// A request waiting for the coordinator's round, with when it was asked.
type Pending = (Request, Reply, Instant);

/// What the operator thread and the cluster thread share.
#[derive(Debug)]
pub struct Cluster {
    /// `[cluster]`
    pub config: ClusterConfig,
    view: Mutex<ClusterView>,
    requests: mpsc::UnboundedSender<(Request, Reply)>,
    receiver: Mutex<Option<mpsc::UnboundedReceiver<(Request, Reply)>>>,
}

impl Cluster {
    /// A handle for `config`; [`run`] takes it over on its thread.
    pub fn new(config: ClusterConfig) -> Cluster {
        let (tx, rx) = mpsc::unbounded_channel();
        Cluster {
            view: Mutex::new(ClusterView {
                service: config.service.clone(),
                host: config.host.clone(),
                ..ClusterView::default()
            }),
            config,
            requests: tx,
            receiver: Mutex::new(Some(rx)),
        }
    }

    /// `weirctl cluster status`.
    pub fn view(&self) -> ClusterView {
        lock(&self.view).clone()
    }

    /// Ask the coordinator (this weir-cp, if it is one) to carry out `r`; the reply is the
    /// message and the new epoch.
    pub fn request(&self, r: Request) -> Result<(String, u64), String> {
        let (tx, rx) = std_mpsc::channel();
        self.requests
            .send((r, tx))
            .map_err(|_| "the cluster session is not running".to_string())?;
        rx.recv_timeout(REQUEST_TIMEOUT)
            .map_err(|_| "no answer from the cluster session in time".to_string())?
    }
}

/// This host's membership while it has one.
struct Membership {
    lease: i64,
    keeper: etcd_client::LeaseKeeper,
    stream: etcd_client::LeaseKeepAliveStream,
    renewed: Instant,
}

/// The cluster thread's own state across rounds and sessions.
struct Local {
    layout: String,
    map: SliceMap,
    covering: Vec<Prefix>,
    handover_prefix: Option<Prefix>,
    include: Option<String>,
    /// The routes BIRD runs now (after the last successful `configure`).
    current: Option<Routes>,
    announced: Vec<String>,
    coordinator_since: Option<Instant>,
    bird_ok: bool,
    bird_checked: Option<Instant>,
    last_ok: Instant,
    /// The lease of a membership whose session was lost (see [`resume`]).
    lease: Option<i64>,
}

/// Run the cluster session until shutdown (the `cp-cluster` thread).
pub(crate) fn run(shared: &DaemonState, cluster: &Cluster) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the cluster session's runtime");
            return;
        }
    };
    let Some(mut requests) = lock(&cluster.receiver).take() else {
        return;
    };
    let cfg = &cluster.config;
    let Some(mut local) = Local::new(shared, cfg) else {
        return;
    };
    rt.block_on(async {
        let mut backoff = Duration::from_millis(200);
        while !shared.stopping() {
            let result = session(shared, cluster, &mut local, &mut requests).await;
            let Err(e) = result else { break };
            tracing::warn!(error = %e, "cluster session lost; reconnecting");
            {
                let mut v = lock(&cluster.view);
                v.connected = false;
                v.coordinator = None;
                v.last_error = Some(e);
            }
            local.coordinator_since = None;
            // Cut off from etcd longer than a lease: another coordinator may have given
            // our slices away, so stop claiming them (the covering prefix stays: this
            // host still serves whatever reaches it).
            if local.last_ok.elapsed() > Duration::from_secs(cfg.lease_ttl_s) {
                let routes = local.routes(true, &[], true);
                local.announce(shared, cluster, 0, &routes);
            }
            let deadline = Instant::now() + backoff;
            while Instant::now() < deadline && !shared.stopping() {
                drain_requests(&mut requests, "not connected to etcd");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    });
    // Leaving: no routes (the session revoked the lease on its way out).
    let routes = Routes {
        covering: Vec::new(),
        slices: Vec::new(),
        handover: None,
    };
    local.announce(shared, cluster, 0, &routes);
}

fn drain_requests(requests: &mut mpsc::UnboundedReceiver<(Request, Reply)>, why: &str) {
    while let Ok((_, reply)) = requests.try_recv() {
        let _ = reply.send(Err(why.to_string()));
    }
}

impl Local {
    fn new(shared: &DaemonState, cfg: &ClusterConfig) -> Option<Local> {
        let config = lock(&shared.desired).config.clone();
        let service = config.service();
        let prefixes = match ServicePrefixes::new(&service.apl) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cluster: the service prefixes are invalid");
                return None;
            }
        };
        // Ownership is per host, not per worker: one worker's map gives the slice layout.
        let map = match SliceMap::new(prefixes.prefixes(), service.slice_bits, 1) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "cluster: the slice layout is invalid");
                return None;
            }
        };
        Some(Local {
            layout: format!("{} bits={}", service.apl, service.slice_bits),
            map,
            covering: prefixes.prefixes().to_vec(),
            handover_prefix: Prefix::new(u128::from(cfg.handover_addr), 128).ok(),
            include: None,
            current: None,
            announced: Vec::new(),
            coordinator_since: None,
            bird_ok: false,
            bird_checked: None,
            last_ok: Instant::now(),
            lease: None,
        })
    }

    fn slices(&self) -> u32 {
        u32::try_from(self.map.len()).unwrap_or(u32::MAX)
    }

    /// The routes: the covering prefixes if `covering`, the `owned` runs, the handover
    /// address if `handover`.
    fn routes(&self, covering: bool, owned: &[(u32, u32)], handover: bool) -> Routes {
        Routes {
            covering: if covering {
                self.covering.clone()
            } else {
                Vec::new()
            },
            slices: bird::fewest_blocks(&self.map, owned, true),
            handover: if handover { self.handover_prefix } else { None },
        }
    }

    /// Move BIRD to `target`, make before break: while this host keeps announcing its
    /// covering prefixes, a change of its slice blocks first announces the old and the
    /// new blocks together, and drops the old ones in the next round. Re-cut blocks (a /66
    /// becoming a /68 and a /67 when a quarter of it leaves) thus never leave a gap in
    /// which the router would send this host's flows to the covering prefix — to another
    /// host. True when BIRD runs exactly `target`.
    fn announce(
        &mut self,
        shared: &DaemonState,
        cluster: &Cluster,
        epoch: u64,
        target: &Routes,
    ) -> bool {
        let step = match &self.current {
            Some(cur)
                if !cur.covering.is_empty()
                    && !target.covering.is_empty()
                    && cur.slices != target.slices
                    && !target.slices.iter().all(|p| cur.slices.contains(p)) =>
            {
                let mut both = cur.slices.clone();
                for p in &target.slices {
                    if !both.contains(p) {
                        both.push(*p);
                    }
                }
                both.sort();
                Routes {
                    slices: both,
                    ..target.clone()
                }
            }
            _ => target.clone(),
        };
        let done = self.configure(shared, cluster, epoch, &step);
        done && step == *target
    }

    /// Write the include file and reconfigure BIRD if the routes changed; true when BIRD
    /// runs these routes.
    fn configure(
        &mut self,
        shared: &DaemonState,
        cluster: &Cluster,
        epoch: u64,
        r: &Routes,
    ) -> bool {
        let cfg = &cluster.config;
        let text = bird::include_text(&cfg.host, &cfg.service, epoch, r);
        // The epoch is in the header comment only: an epoch alone does not reconfigure.
        let body: String = text.lines().skip(3).collect::<Vec<_>>().join("\n");
        if self.include.as_deref() == Some(body.as_str()) {
            return true;
        }
        if let Err(e) = bird::write_include(&cfg.bird_include, &text) {
            let msg = format!("cannot write {}: {e}", cfg.bird_include.display());
            tracing::error!("{msg}");
            lock(&cluster.view).last_error = Some(msg);
            return false;
        }
        match bird::configure(&cfg.birdc, &cfg.bird_socket) {
            Ok(()) => {
                tracing::info!(routes = ?r.all(), epoch, "BIRD reconfigured with this host's routes");
                self.include = Some(body);
                self.current = Some(r.clone());
                self.announced = r.all();
                lock(&cluster.view).announced = self.announced.clone();
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "BIRD did not take the routes; retrying");
                lock(&cluster.view).last_error = Some(e);
                let _ = shared;
                false
            }
        }
    }

    fn bird_alive(&mut self, cfg: &ClusterConfig) -> bool {
        let due = !matches!(self.bird_checked, Some(t) if t.elapsed() < BIRD_CHECK);
        if due {
            self.bird_ok = bird::alive(&cfg.bird_socket, Duration::from_millis(300));
            self.bird_checked = Some(Instant::now());
        }
        self.bird_ok
    }
}

fn now_unix_ms() -> u64 {
    super::now_unix_ns() / 1_000_000
}

/// Whether every dataplane link is up and took the last policy pushed (a host with none
/// configured counts as up): a dataplane that refuses weir-cp's policy cannot forward
/// handed-over runs, so the host does not serve the cluster.
fn dataplanes_up(shared: &DaemonState) -> bool {
    shared.links.iter().all(|l| {
        let s = lock(&l.status);
        s.connected
            && !s
                .last_error
                .as_deref()
                .is_some_and(|e| e.starts_with("dataplane refused"))
    })
}

/// Whether the dataplanes report no flow at all.
fn dataplanes_idle(shared: &DaemonState) -> bool {
    shared.links.iter().all(|l| {
        lock(&l.status)
            .stats
            .as_ref()
            .is_some_and(|s| s.established == 0 && s.half_open == 0)
    })
}

/// Whether every connected dataplane runs `version` (or newer).
fn dataplanes_run(shared: &DaemonState, version: u64) -> bool {
    shared.links.iter().all(|l| {
        let s = lock(&l.status);
        !s.connected || s.applied_version >= version
    })
}

async fn session(
    shared: &DaemonState,
    cluster: &Cluster,
    local: &mut Local,
    requests: &mut mpsc::UnboundedReceiver<(Request, Reply)>,
) -> Result<(), String> {
    let cfg = &cluster.config;
    let keys = Keys::new(&cfg.service);
    let opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(3))
        .with_keep_alive(Duration::from_secs(1), Duration::from_secs(2));
    let mut client = Client::connect(&cfg.etcd, Some(opts))
        .await
        .map_err(|e| format!("etcd {:?}: {e}", cfg.etcd))?;
    let mut watch = client
        .watch(
            keys.prefix.as_str(),
            Some(WatchOptions::new().with_prefix()),
        )
        .await
        .map_err(|e| format!("etcd watch: {e}"))?;
    tracing::info!(etcd = ?cfg.etcd, prefix = %keys.prefix, "cluster session started");
    let mut member: Option<Membership> = None;
    let mut pending: Vec<Pending> = Vec::new();
    let mut tick = tokio::time::interval(ROUND);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let result = loop {
        if shared.stopping() {
            break Ok(());
        }
        tokio::select! {
            _ = tick.tick() => {}
            m = watch.message() => match m {
                Ok(Some(_)) => {}
                Ok(None) => break Err("etcd watch closed".to_string()),
                Err(e) => break Err(format!("etcd watch: {e}")),
            },
            Some((r, reply)) = requests.recv() => pending.push((r, reply, Instant::now())),
        }
        // A request the operator stopped waiting for is dropped, not carried out later.
        pending.retain(|(_, reply, at)| {
            let keep = at.elapsed() < REQUEST_TIMEOUT;
            if !keep {
                let _ = reply.send(Err("timed out".into()));
            }
            keep
        });
        if let Err(e) = round(
            shared,
            cluster,
            local,
            &mut client,
            &keys,
            &mut member,
            &mut pending,
        )
        .await
        {
            break Err(e);
        }
        local.last_ok = Instant::now();
    };
    for (_, reply, _) in pending.drain(..) {
        let _ = reply.send(Err("the cluster session ended".into()));
    }
    match (member, &result) {
        (Some(m), Ok(())) => {
            // Leaving on purpose: the coordinator reassigns at once, not after the TTL.
            let _ =
                tokio::time::timeout(Duration::from_secs(1), client.lease_revoke(m.lease)).await;
            local.lease = None;
            tracing::info!("left the cluster (lease revoked)");
        }
        // Lost the session: the next one resumes this lease if it is still alive, so a
        // short etcd outage does not look like this host's death.
        (Some(m), Err(_)) => local.lease = Some(m.lease),
        (None, _) => {}
    }
    result
}

/// Keep using `lease` if etcd still has it and this host's key is bound to it.
async fn resume(client: &mut Client, keys: &Keys, me: &str, lease: i64) -> Option<Membership> {
    let (mut keeper, mut stream) = client.lease_keep_alive(lease).await.ok()?;
    keeper.keep_alive().await.ok()?;
    let r = tokio::time::timeout(Duration::from_secs(1), stream.message())
        .await
        .ok()?
        .ok()??;
    if r.ttl() <= 0 {
        return None;
    }
    let got = client.get(keys.host(me), None).await.ok()?;
    if got.kvs().first()?.lease() != lease {
        return None;
    }
    tracing::info!(lease, "cluster membership resumed");
    Some(Membership {
        lease,
        keeper,
        stream,
        renewed: Instant::now(),
    })
}

#[allow(clippy::too_many_arguments)]
async fn round(
    shared: &DaemonState,
    cluster: &Cluster,
    local: &mut Local,
    client: &mut Client,
    keys: &Keys,
    member: &mut Option<Membership>,
    pending: &mut Vec<Pending>,
) -> Result<(), String> {
    let cfg = &cluster.config;
    let me = cfg.host.as_str();
    // Keep the lease alive (every third of the TTL).
    if let Some(m) = member.as_mut() {
        if m.renewed.elapsed() >= Duration::from_millis(cfg.lease_ttl_s * 1000 / 3) {
            m.keeper
                .keep_alive()
                .await
                .map_err(|e| format!("etcd lease keep-alive: {e}"))?;
            match tokio::time::timeout(Duration::from_secs(1), m.stream.message()).await {
                Ok(Ok(Some(r))) if r.ttl() > 0 => m.renewed = Instant::now(),
                Ok(Ok(Some(_))) => {
                    tracing::warn!("etcd lease expired; registering again");
                    *member = None;
                }
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
                    return Err("etcd lease keep-alive got no answer".into())
                }
            }
        }
    }
    let state = read_state(client, keys).await?;
    for u in &state.unreadable {
        tracing::warn!("cluster key ignored: {u}");
    }

    // 1. Health: a host serves only with its dataplanes and BIRD.
    let dp_up = dataplanes_up(shared);
    let bird_up = local.bird_alive(cfg);
    let healthy = dp_up && bird_up;
    let idle = dataplanes_idle(shared);

    // A handover address must be one host's: another live host with ours would receive
    // the tunnels meant for us (the routes would be ECMP'd between the two).
    let mine = cfg.handover_addr.to_string();
    let clash = state
        .hosts
        .values()
        .find(|h| h.name != me && h.handover_addr == mine)
        .map(|h| h.name.clone());
    if let Some(other) = &clash {
        tracing::error!(other = %other, addr = %mine, "another live host has this host's handover address; not joining");
    }
    let healthy = healthy && clash.is_none();

    // 2. Membership.
    match (healthy, member.is_some()) {
        (true, false) => {
            if let Some(lease) = local.lease.take() {
                *member = resume(client, keys, me, lease).await;
            }
            if member.is_none() {
                *member = register(client, keys, cfg, idle).await?;
            }
        }
        (false, true) => {
            let why = if !dp_up {
                "a dataplane link is down or refused the policy"
            } else if !bird_up {
                "BIRD does not answer"
            } else {
                "another host has this host's handover address"
            };
            tracing::warn!(reason = why, "withdrawing from the cluster");
            if let Some(m) = member.take() {
                let _ = client.lease_revoke(m.lease).await;
            }
        }
        (true, true) => {
            // Keep `idle` current (the coordinator reads it to end handovers early).
            if let (Some(h), Some(m)) = (state.hosts.get(me), member.as_ref()) {
                if h.idle != idle {
                    let rec = HostRecord { idle, ..h.clone() };
                    let v = serde_json::to_vec(&rec).map_err(|e| e.to_string())?;
                    client
                        .put(
                            keys.host(me),
                            v,
                            Some(PutOptions::new().with_lease(m.lease)),
                        )
                        .await
                        .map_err(|e| format!("etcd put host: {e}"))?;
                }
            }
        }
        (false, false) => {}
    }

    // 3. The coordinator.
    let leader_rev = match member.as_ref() {
        Some(m) => campaign(client, keys, me, m.lease).await?,
        None => None,
    };
    match (leader_rev, local.coordinator_since) {
        (Some(_), None) => {
            tracing::info!("this host is the coordinator now");
            local.coordinator_since = Some(Instant::now());
        }
        (None, Some(_)) => {
            tracing::info!("this host is no longer the coordinator");
            local.coordinator_since = None;
        }
        _ => {}
    }
    let state = match leader_rev {
        Some(rev) => {
            let changed = coordinate(client, keys, cfg, local, &state, rev, pending).await?;
            if changed {
                read_state(client, keys).await?
            } else {
                state
            }
        }
        None => {
            for (_, reply, _) in pending.drain(..) {
                let who = state
                    .coordinator
                    .as_ref()
                    .map_or("none is elected".to_string(), |c| format!("it is {}", c.0));
                let _ = reply.send(Err(format!(
                    "this weir-cp ({me}) is not the coordinator ({who}): run the command against the coordinator's weir-cp"
                )));
            }
            state
        }
    };

    // 4. This host: snapshot first, then routes.
    apply(
        shared,
        cluster,
        local,
        client,
        keys,
        &state,
        member.is_some(),
    )
    .await?;
    update_view(cluster, local, &state, member.is_some());
    Ok(())
}

async fn register(
    client: &mut Client,
    keys: &Keys,
    cfg: &ClusterConfig,
    idle: bool,
) -> Result<Option<Membership>, String> {
    let ttl = i64::try_from(cfg.lease_ttl_s).unwrap_or(5);
    let lease = client
        .lease_grant(ttl, None)
        .await
        .map_err(|e| format!("etcd lease grant: {e}"))?
        .id();
    let rec = HostRecord {
        name: cfg.host.clone(),
        handover_addr: cfg.handover_addr.to_string(),
        idle,
    };
    let v = serde_json::to_vec(&rec).map_err(|e| e.to_string())?;
    let key = keys.host(&cfg.host);
    let txn = Txn::new()
        .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key.as_str(),
            v,
            Some(PutOptions::new().with_lease(lease)),
        )]);
    let ok = client
        .txn(txn)
        .await
        .map_err(|e| format!("etcd register: {e}"))?
        .succeeded();
    if !ok {
        let _ = client.lease_revoke(lease).await;
        tracing::warn!(host = %cfg.host, "the host name is registered by another session (a previous run's lease, or a second weir-cp with this name); retrying");
        return Ok(None);
    }
    let (keeper, stream) = client
        .lease_keep_alive(lease)
        .await
        .map_err(|e| format!("etcd lease keep-alive: {e}"))?;
    tracing::info!(host = %cfg.host, lease, ttl, "registered in the cluster");
    Ok(Some(Membership {
        lease,
        keeper,
        stream,
        renewed: Instant::now(),
    }))
}

/// The handovers for the runs in `moved` that leave a live host.
fn handovers_for(
    moved: &[Moved],
    live: &BTreeSet<String>,
    epoch: u64,
    drain_s: u64,
) -> Vec<(String, Handover)> {
    let until = now_unix_ms() + drain_s * 1000;
    moved
        .iter()
        .filter(|m| live.contains(&m.from))
        .map(|m| {
            (
                format!("{epoch:012}-{:06}", m.first),
                Handover {
                    first: m.first,
                    last: m.last,
                    from: m.from.clone(),
                    to: m.to.clone(),
                    until_unix_ms: until,
                    announced: false,
                },
            )
        })
        .collect()
}

/// The coordinator's work for one round; true when it wrote something.
async fn coordinate(
    client: &mut Client,
    keys: &Keys,
    cfg: &ClusterConfig,
    local: &Local,
    state: &ClusterState,
    leader_rev: i64,
    pending: &mut Vec<Pending>,
) -> Result<bool, String> {
    let live: BTreeSet<String> = state.hosts.keys().cloned().collect();
    let now = now_unix_ms();
    // Handovers that are over: their time is up, a side is gone, or the predecessor has
    // no flow left.
    let over: Vec<String> = state
        .handovers
        .iter()
        .filter(|(_, (h, _))| {
            h.until_unix_ms <= now
                || !live.contains(&h.from)
                || !live.contains(&h.to)
                || (h.announced && state.hosts.get(&h.from).is_some_and(|r| r.idle))
        })
        .map(|(id, _)| id.clone())
        .collect();

    let Some((current, seen)) = state
        .assignment
        .as_ref()
        .filter(|(a, _)| a.layout == local.layout)
    else {
        // No assignment (or one for another layout): wait for hosts to register, then
        // spread every slice evenly.
        for (_, reply, _) in pending.drain(..) {
            let _ = reply.send(Err("there is no assignment yet".into()));
        }
        let settled = local
            .coordinator_since
            .is_some_and(|t| t.elapsed() >= SETTLE);
        if !settled || live.is_empty() {
            return Ok(false);
        }
        let epoch = state.assignment.as_ref().map_or(0, |(a, _)| a.epoch) + 1;
        let next = Assignment::even(&local.layout, local.slices(), &live, epoch);
        let seen = state.assignment.as_ref().map(|(_, r)| *r);
        let ok = commit(client, keys, leader_rev, seen, Some(&next), &[], &over).await?;
        if ok {
            tracing::info!(epoch, hosts = ?live, "slices assigned evenly");
        }
        return Ok(ok);
    };

    // Operator requests first, then the automatic rebalance.
    let mut plan: Option<(Assignment, Vec<Moved>, String)> = None;
    if let Some((req, reply, at)) = pending.pop() {
        let planned = match &req {
            Request::Move { first, last, host } => {
                if !live.contains(host) {
                    Err(format!("host {host} is not a live member"))
                } else {
                    current.assign(*first, *last, host).map(|(a, m)| {
                        (
                            a,
                            m,
                            format!("slices {first}..={last} handed over to {host}"),
                        )
                    })
                }
            }
            Request::Drain { host } => {
                if !current.counts().contains_key(host) && !live.contains(host) {
                    Err(format!("host {host} is unknown"))
                } else {
                    current
                        .drain(host, &live)
                        .map(|(a, m)| (a, m, format!("{host} drained")))
                }
            }
        };
        match planned {
            Ok(p) => {
                plan = Some(p);
                pending.push((req, reply, at));
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    } else if current.needs_rebalance(&live) {
        if let Some((a, m)) = current.rebalance(&live) {
            plan = Some((a, m, "rebalanced".into()));
        }
    }
    let Some((next, moved, message)) = plan else {
        if over.is_empty() {
            return Ok(false);
        }
        return commit(client, keys, leader_rev, None, None, &[], &over).await;
    };
    let new_handovers = handovers_for(&moved, &live, next.epoch, cfg.drain_s);
    // Older handovers to the same host over the same slices are replaced.
    let mut delete = over;
    for (id, (h, _)) in &state.handovers {
        if new_handovers
            .iter()
            .any(|(_, n)| n.to == h.to && n.first <= h.last && h.first <= n.last)
            && !delete.contains(id)
        {
            delete.push(id.clone());
        }
    }
    let ok = commit(
        client,
        keys,
        leader_rev,
        Some(*seen),
        Some(&next),
        &new_handovers,
        &delete,
    )
    .await?;
    let reply = pending.pop();
    if ok {
        tracing::info!(
            epoch = next.epoch,
            moved = moved.len(),
            handovers = new_handovers.len(),
            "{message}"
        );
        if let Some((_, r, _)) = reply {
            let _ = r.send(Ok((
                format!(
                    "{message} (epoch {}, {} handover runs)",
                    next.epoch,
                    new_handovers.len()
                ),
                next.epoch,
            )));
        }
    } else if let Some(p) = reply {
        // The assignment moved under us (or the election): re-read and try again.
        pending.push(p);
    }
    Ok(ok)
}

/// Put this host's part of the state into force: the snapshot (members, handover runs),
/// then, once the dataplanes run it, the routes.
async fn apply(
    shared: &DaemonState,
    cluster: &Cluster,
    local: &mut Local,
    client: &mut Client,
    keys: &Keys,
    state: &ClusterState,
    is_member: bool,
) -> Result<(), String> {
    let cfg = &cluster.config;
    let me = cfg.host.as_str();
    let now = now_unix_ms();
    let live = |h: &str| state.hosts.contains_key(h);
    let addr_of = |h: &str| state.hosts.get(h).map(|r| r.handover_addr.clone());

    // Handover runs to this host (newest wins where runs overlap).
    let mut runs: Vec<HandoverRun> = Vec::new();
    for (h, _) in state.handovers.values().rev() {
        if h.to != me || h.until_unix_ms <= now || !live(&h.from) {
            continue;
        }
        let Some(pred) = addr_of(&h.from) else {
            continue;
        };
        if runs.iter().any(|r| r.first <= h.last && h.first <= r.last) {
            continue;
        }
        runs.push(HandoverRun {
            first: h.first,
            last: h.last,
            predecessor: pred,
        });
    }
    runs.sort_by_key(|r| r.first);
    runs.truncate(weir_control::proto::MAX_HANDOVER_RUNS);
    let mut members: Vec<String> = state
        .hosts
        .values()
        .map(|h| h.handover_addr.clone())
        .collect();
    let mine = cfg.handover_addr.to_string();
    if !members.contains(&mine) {
        members.push(mine.clone());
    }
    members.sort();
    members.dedup();
    members.truncate(weir_control::proto::MAX_CLUSTER_MEMBERS);
    let policy = ClusterPolicy {
        handover_addr: mine,
        members,
        handovers: runs.clone(),
    };
    let version = match shared.commit(Change::Cluster(Some(policy)), "cluster") {
        Ok(Some(c)) => c.version,
        Ok(None) => lock(&shared.desired).version(),
        Err(e) => {
            tracing::error!(error = %e, "the cluster policy was refused");
            lock(&shared.desired).version()
        }
    };
    if !dataplanes_run(shared, version) {
        // The routes follow once the dataplanes forward for the new runs.
        return Ok(());
    }

    // Routes: owned runs, plus runs handed away whose new owner does not announce yet.
    let assignment = state.assignment.as_ref().map(|(a, _)| a);
    let epoch = assignment.map_or(0, |a| a.epoch);
    let mut owned = assignment.map(|a| a.owned(me)).unwrap_or_default();
    for (h, _) in state.handovers.values() {
        if h.from == me && !h.announced && h.until_unix_ms > now && live(&h.to) {
            owned.push((h.first, h.last));
        }
    }
    let drained = assignment.is_some_and(|a| a.drained.iter().any(|d| d == me));
    // A drained host stops announcing the covering prefix, and keeps its handover
    // address while it is a member (its predecessors' tunnels end there).
    let routes = if is_member {
        local.routes(!drained, &owned, true)
    } else {
        local.routes(false, &[], false)
    };
    if !local.announce(shared, cluster, epoch, &routes) || !is_member {
        return Ok(());
    }
    // Tell the predecessors: the runs handed to this host are announced now.
    let mine_owned = assignment.map(|a| a.owned(me)).unwrap_or_default();
    for (id, (h, rev)) in &state.handovers {
        let covered = mine_owned.iter().any(|&(a, b)| a <= h.first && h.last <= b);
        if h.to == me && !h.announced && covered {
            let done = Handover {
                announced: true,
                ..h.clone()
            };
            let v = serde_json::to_vec(&done).map_err(|e| e.to_string())?;
            let key = keys.handover(id);
            client
                .txn(
                    Txn::new()
                        .when([Compare::mod_revision(key.as_str(), CompareOp::Equal, *rev)])
                        .and_then([TxnOp::put(key.as_str(), v, None)]),
                )
                .await
                .map_err(|e| format!("etcd handover announced: {e}"))?;
            tracing::info!(id, first = h.first, last = h.last, from = %h.from, "handover run announced");
        }
    }
    Ok(())
}

fn update_view(cluster: &Cluster, local: &Local, state: &ClusterState, is_member: bool) {
    let now = now_unix_ms();
    let assignment = state.assignment.as_ref().map(|(a, _)| a);
    let counts = assignment.map(Assignment::counts).unwrap_or_default();
    let drained: Vec<String> = assignment.map(|a| a.drained.clone()).unwrap_or_default();
    let mut names: BTreeSet<String> = state.hosts.keys().cloned().collect();
    names.extend(counts.keys().cloned());
    names.extend(drained.iter().cloned());
    let mut v = lock(&cluster.view);
    v.connected = true;
    v.last_error = None;
    v.coordinator = state.coordinator.as_ref().map(|c| c.0.clone());
    v.epoch = assignment.map_or(0, |a| a.epoch);
    v.slices = local.slices();
    v.hosts = names
        .into_iter()
        .map(|n| ClusterHostView {
            live: state.hosts.contains_key(&n),
            drained: drained.contains(&n),
            handover_addr: state
                .hosts
                .get(&n)
                .map(|h| h.handover_addr.clone())
                .unwrap_or_default(),
            slices: counts.get(&n).copied().unwrap_or(0),
            name: n,
        })
        .collect();
    v.runs = assignment
        .map(|a| {
            a.runs
                .iter()
                .map(|r| ClusterRunView {
                    first: r.first,
                    last: r.last,
                    host: r.host.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    v.handovers = state
        .handovers
        .iter()
        .map(|(id, (h, _))| HandoverView {
            id: id.clone(),
            first: h.first,
            last: h.last,
            from: h.from.clone(),
            to: h.to.clone(),
            remaining_ms: h.until_unix_ms.saturating_sub(now),
            announced: h.announced,
        })
        .collect();
    v.announced = local.announced.clone();
    if !is_member && v.last_error.is_none() {
        v.last_error = Some("not a member: waiting for the dataplanes and BIRD".into());
    }
}
