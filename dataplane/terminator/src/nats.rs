//! The `nats` adapter: each HTTP request goes to application servers as a NATS request
//! (message format: [`weir_model::appmsg`]); the reply comes back to the client's
//! connection in request order.
//!
//! ```text
//!  worker 0 ─ NatsAdapter ─ jobs (bounded) ──────►┐                        ┌► nats-server ─► weir-app …
//!  worker 1 ─ NatsAdapter ─ jobs (bounded) ──────►│ weir-nats thread       │
//!            ▲  answers (bounded) ◄───────────────┤ tokio, one async-nats ─┘
//!            └ doorbell (a datagram socket): one byte per worker round that queued jobs
//! ```
//!
//! **Threads.** The terminator workers never block: [`NatsAdapter::start`] encodes the
//! request and `try_send`s it on a bounded crossbeam channel; [`NatsAdapter::poll`] rings
//! the bridge's doorbell (a byte on a datagram socket, once per round that queued something) and
//! `try_recv`s answers; a worker parked with empty rings is woken by the bridge (once per
//! turn of its loop that sent it answers) through [`Adapter::set_waker`]. One thread, `weir-nats`, runs a current-thread tokio runtime with
//! one async-nats client for all workers. Each worker's two channels hold at most its
//! `max_in_flight_per_worker` messages: a worker never has more requests out than that,
//! and each request gets exactly one answer, so neither channel can be full when written
//! (a full one is still handled: `503`, counted).
//!
//! **Request/reply.** The bridge subscribes once to `<inbox>.*` and publishes each request
//! with the reply subject `<inbox>.<token>`, where the token names a slot in a table of
//! pending requests sized to the sum of the workers' limits. Timeouts are kept in arrival
//! order (they all last `timeout_ms`, so the order of deadlines is the order of arrival up
//! to the workers' clock skew, microseconds). async-nats's own `request` was rejected: its
//! reply multiplexer keeps an entry for every request that timed out and never got an
//! answer (until the process ends), which a dead application server turns into unbounded
//! memory. Outcomes:
//! - a reply that decodes and passes [`AppReply::check`] → its status, headers, body
//!   (hop-by-hop headers dropped and counted);
//! - NATS's "no responders" status (no server in the queue group) → `503` at once;
//! - no reply by `timeout_ms` after the worker took the request → `504`;
//! - an undecodable or invalid reply → `502`; a request over the server's `max_payload`
//!   → `413`;
//! - the link down (not connected, or reconnecting): the worker answers `503` without
//!   queueing anything (fail fast, [`Upstream::connected`]); async-nats reconnects (every
//!   100 ms at first, backing off to 1 s) and requests flow again when it is back.
//!   Requests in flight when the link drops time out (`504`).
//!
//! **Metrics** ([`Upstream`]): per subject, requests and outcomes (2xx, 3xx, 4xx, 5xx from
//! the application; `503`, `504`, `502`, `413` decided here), the latency of replies
//! (from the worker taking the request to the reply arriving; hdrhistogram, ns), the
//! connection state and connects. The bridge publishes a copy every 100 ms; workers only
//! read the state (one atomic load per request) and add their fail-fast `503`s (one
//! relaxed atomic add).
//!
//! Memory: per worker the channels (`2 × max_in_flight_per_worker` messages), per
//! pending request its encoded request (until published) and one table slot; replies are
//! bounded by the NATS server's `max_payload` (1 MiB by default).

use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError, TrySendError};
use hdrhistogram::Histogram;
use weir_model::appmsg::{self, AppReply};
use weir_model::config::NatsAdapterConfig;

use crate::adapter::{
    Adapter, AdapterError, AdapterStats, Answer, Completion, Request, Response, Ticket,
};

/// How often the bridge publishes its metrics and looks at the link state.
const TICK: Duration = Duration::from_millis(100);

/// The NATS link's state, as [`Upstream::state`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Not connected yet (the first connection is being tried).
    Pending,
    /// Connected.
    Connected,
    /// Lost; async-nats is reconnecting.
    Disconnected,
}

impl LinkState {
    /// Name used in stats and logs.
    pub fn name(self) -> &'static str {
        match self {
            LinkState::Pending => "pending",
            LinkState::Connected => "connected",
            LinkState::Disconnected => "disconnected",
        }
    }

    fn from_u8(v: u8) -> LinkState {
        match v {
            1 => LinkState::Connected,
            2 => LinkState::Disconnected,
            _ => LinkState::Pending,
        }
    }
}

/// Outcomes of requests, counted per subject.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcomes {
    /// Replies with a 2xx status.
    pub s2xx: u64,
    /// 3xx replies.
    pub s3xx: u64,
    /// 4xx replies.
    pub s4xx: u64,
    /// 5xx replies (from the application server).
    pub s5xx: u64,
    /// `503`: no responders, or the link down (fail fast).
    pub unavailable: u64,
    /// `504`: no reply in `timeout_ms`.
    pub timeout: u64,
    /// `502`: a reply that does not decode or cannot be sent.
    pub bad_reply: u64,
    /// `413`: the request is over the NATS server's `max_payload`.
    pub too_large: u64,
}

impl Outcomes {
    /// `(name, count)` for every outcome, in a fixed order (names used in stats).
    pub fn named(&self) -> [(&'static str, u64); 8] {
        [
            ("2xx", self.s2xx),
            ("3xx", self.s3xx),
            ("4xx", self.s4xx),
            ("5xx", self.s5xx),
            ("503", self.unavailable),
            ("504", self.timeout),
            ("502", self.bad_reply),
            ("413", self.too_large),
        ]
    }

    fn count_status(&mut self, status: u16) {
        match status / 100 {
            2 => self.s2xx += 1,
            3 => self.s3xx += 1,
            4 => self.s4xx += 1,
            _ => self.s5xx += 1,
        }
    }
}

/// What the bridge publishes about its upstream.
#[derive(Debug, Clone)]
pub struct UpstreamReport {
    /// Requests published.
    pub requests: u64,
    /// Outcomes decided by the bridge (the workers' fail-fast `503`s are in
    /// [`Upstream::report`]'s copy too).
    pub outcomes: Outcomes,
    /// Reply latency, ns (from the worker taking the request to the reply).
    pub latency: Histogram<u64>,
    /// Reply headers dropped (hop-by-hop).
    pub headers_dropped: u64,
    /// Replies that came for no pending request (after their timeout).
    pub late_replies: u64,
    /// Requests pending now.
    pub in_flight: u64,
}

impl UpstreamReport {
    fn new() -> UpstreamReport {
        UpstreamReport {
            requests: 0,
            outcomes: Outcomes::default(),
            latency: Histogram::new_with_bounds(1_000, 600_000_000_000, 2)
                .expect("static histogram bounds are valid"),
            headers_dropped: 0,
            late_replies: 0,
            in_flight: 0,
        }
    }
}

/// The upstream of a `nats` adapter, shared by the bridge thread, the workers and the
/// stats reader.
#[derive(Debug)]
pub struct Upstream {
    /// The configured server URL(s).
    pub url: String,
    /// The subject requests go to.
    pub subject: String,
    state: AtomicU8,
    connects: AtomicU64,
    fast_unavailable: AtomicU64,
    report: Mutex<UpstreamReport>,
}

impl Upstream {
    fn new(cfg: &NatsAdapterConfig) -> Upstream {
        Upstream {
            url: cfg.url.clone(),
            subject: cfg.subject.clone(),
            state: AtomicU8::new(0),
            connects: AtomicU64::new(0),
            fast_unavailable: AtomicU64::new(0),
            report: Mutex::new(UpstreamReport::new()),
        }
    }

    /// The link state now.
    pub fn state(&self) -> LinkState {
        LinkState::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// Whether the link is up (requests are sent, not failed fast).
    pub fn connected(&self) -> bool {
        self.state() == LinkState::Connected
    }

    /// Connections made so far (1 + reconnects, once up).
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    /// The latest published report, with the workers' fail-fast `503`s added.
    pub fn report(&self) -> UpstreamReport {
        let mut r = self
            .report
            .lock()
            .map(|g| g.clone())
            .unwrap_or_else(|_| UpstreamReport::new());
        r.outcomes.unavailable += self.fast_unavailable.load(Ordering::Relaxed);
        r
    }

    fn set_state(&self, s: LinkState) {
        let v = match s {
            LinkState::Pending => 0,
            LinkState::Connected => 1,
            LinkState::Disconnected => 2,
        };
        if self.state.swap(v, Ordering::Relaxed) != v {
            tracing::info!(url = %self.url, state = s.name(), "NATS link");
            if s == LinkState::Connected {
                self.connects.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A request on its way to the bridge.
#[derive(Debug)]
struct Job {
    ticket: Ticket,
    payload: Vec<u8>,
    taken: Instant,
}

/// Its answer on the way back.
#[derive(Debug)]
struct Done {
    ticket: Ticket,
    answer: Completion,
}

/// Wakes the bridge: the workers' end of a non-blocking unix datagram pair (a byte per
/// ring; a full socket buffer means the bridge has been rung already).
#[derive(Debug)]
struct Doorbell(std::os::unix::net::UnixDatagram);

impl Doorbell {
    /// The bell and the bridge's end.
    fn pair() -> std::io::Result<(Doorbell, std::os::unix::net::UnixDatagram)> {
        let (ring, hear) = std::os::unix::net::UnixDatagram::pair()?;
        ring.set_nonblocking(true)?;
        hear.set_nonblocking(true)?;
        Ok((Doorbell(ring), hear))
    }
    fn ring(&self) {
        let _ = self.0.send(&[1]);
    }
}

/// A worker's `nats` adapter.
#[derive(Debug)]
pub struct NatsAdapter {
    jobs: Sender<Job>,
    answers: Receiver<Done>,
    doorbell: Arc<Doorbell>,
    upstream: Arc<Upstream>,
    /// Jobs queued since the doorbell last rang.
    queued: bool,
    in_flight: u32,
    max_per_worker: u32,
    max_per_conn: u32,
    give_up_ms: u64,
    stats: AdapterStats,
    /// The worker's waker, shared with the bridge (set once the worker runs).
    waker: Arc<std::sync::OnceLock<crate::adapter::Waker>>,
}

/// `503` while the link is down or the bridge refuses.
const UNAVAILABLE: Response<'static> =
    Response::text(503, "service unavailable: no application server\n");

impl Adapter for NatsAdapter {
    fn start<'r>(&'r mut self, req: &'r Request<'r>, ticket: Ticket) -> Answer<'r> {
        if !self.upstream.connected() {
            self.unavailable();
            return Answer::Now(UNAVAILABLE);
        }
        let headers = req.headers.iter().map(|h| (h.name, h.value));
        let len = appmsg::request_len(
            req.method,
            req.path,
            req.headers.iter().map(|h| (h.name.len(), h.value.len())),
            req.body.len(),
        );
        // The message crosses to another thread and into async-nats, which takes an owned
        // buffer: one allocation per request, sized once.
        let mut payload = Vec::with_capacity(len);
        appmsg::encode_request(
            &mut payload,
            req.method,
            req.path,
            req.version,
            req.peer.addr,
            req.peer.port,
            headers,
            req.body,
        );
        let job = Job {
            ticket,
            payload,
            taken: Instant::now(),
        };
        match self.jobs.try_send(job) {
            Ok(()) => {
                self.in_flight += 1;
                self.queued = true;
                self.stats.started += 1;
                Answer::Later
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.unavailable();
                Answer::Now(UNAVAILABLE)
            }
        }
    }

    fn name(&self) -> &'static str {
        "nats"
    }

    fn can_start(&self) -> bool {
        self.in_flight < self.max_per_worker
    }

    fn conn_limit(&self) -> u32 {
        self.max_per_conn
    }

    fn poll(&mut self, done: &mut dyn FnMut(Ticket, Completion)) {
        if self.queued {
            self.queued = false;
            self.doorbell.ring();
        }
        while let Ok(d) = self.answers.try_recv() {
            self.in_flight = self.in_flight.saturating_sub(1);
            self.stats.completed += 1;
            done(d.ticket, d.answer);
        }
    }

    fn give_up_after_ms(&self) -> Option<u64> {
        Some(self.give_up_ms)
    }

    fn stats(&self) -> AdapterStats {
        AdapterStats {
            in_flight: u64::from(self.in_flight),
            ..self.stats
        }
    }

    fn upstream(&self) -> Option<Arc<Upstream>> {
        Some(Arc::clone(&self.upstream))
    }

    fn set_waker(&mut self, wake: crate::adapter::Waker) {
        let _ = self.waker.set(wake);
    }
}

impl NatsAdapter {
    fn unavailable(&mut self) {
        self.stats.unavailable += 1;
        self.upstream
            .fast_unavailable
            .fetch_add(1, Ordering::Relaxed);
    }
}

/// The bridge's ends of one worker's channels.
struct WorkerEnd {
    jobs: Receiver<Job>,
    answers: Sender<Done>,
    open: bool,
    /// Answers sent since the worker was last woken.
    unwoken: bool,
    waker: Arc<std::sync::OnceLock<crate::adapter::Waker>>,
}

/// Start the `weir-nats` thread and make one adapter per worker. Fails only if the
/// configuration cannot be used (URL) or the thread or runtime cannot start; the NATS
/// server itself may be down (the link connects when it comes up).
pub fn start(cfg: &NatsAdapterConfig, workers: usize) -> Result<Vec<NatsAdapter>, AdapterError> {
    cfg.validate().map_err(AdapterError::Nats)?;
    let mut addrs = Vec::new();
    for u in cfg.url.split(',') {
        let a = async_nats::ServerAddr::from_str(u.trim())
            .map_err(|e| AdapterError::Nats(format!("url {:?}: {e}", u.trim())))?;
        addrs.push(a);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AdapterError::Nats(format!("cannot start the tokio runtime: {e}")))?;
    let (doorbell, hear) = Doorbell::pair()
        .map_err(|e| AdapterError::Nats(format!("cannot make the doorbell socket: {e}")))?;
    let doorbell = Arc::new(doorbell);
    let upstream = Arc::new(Upstream::new(cfg));
    let cap = cfg.max_in_flight_per_worker as usize;
    let mut adapters = Vec::with_capacity(workers);
    let mut ends = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (jtx, jrx) = bounded(cap);
        let (atx, arx) = bounded(cap);
        let waker = Arc::new(std::sync::OnceLock::new());
        adapters.push(NatsAdapter {
            jobs: jtx,
            answers: arx,
            doorbell: Arc::clone(&doorbell),
            upstream: Arc::clone(&upstream),
            queued: false,
            in_flight: 0,
            max_per_worker: cfg.max_in_flight_per_worker,
            max_per_conn: cfg.max_in_flight_per_conn,
            give_up_ms: cfg.timeout_ms.saturating_add(1000),
            stats: AdapterStats::default(),
            waker: Arc::clone(&waker),
        });
        ends.push(WorkerEnd {
            jobs: jrx,
            answers: atx,
            open: true,
            unwoken: false,
            waker,
        });
    }
    let bridge = Bridge {
        subject: async_nats::Subject::from(cfg.subject.clone()),
        timeout: Duration::from_millis(cfg.timeout_ms),
        upstream,
        ends,
        pending: Pending::new(cap.saturating_mul(workers.max(1))),
        report: UpstreamReport::new(),
    };
    std::thread::Builder::new()
        .name("weir-nats".into())
        .spawn(move || runtime.block_on(bridge.run(addrs, hear)))
        .map_err(|e| AdapterError::Nats(format!("cannot start the weir-nats thread: {e}")))?;
    Ok(adapters)
}

/// One pending request: whose, since when.
#[derive(Debug, Clone, Copy)]
struct Slot {
    generation: u32,
    worker: u32,
    ticket: Ticket,
    taken: Instant,
    live: bool,
}

/// Pending requests: a fixed table of slots (a token = slot and generation) and their
/// deadlines in arrival order.
#[derive(Debug)]
struct Pending {
    slots: Vec<Slot>,
    free: Vec<u32>,
    deadlines: VecDeque<(Instant, u32, u32)>,
    live: u64,
}

impl Pending {
    fn new(n: usize) -> Pending {
        let slot = Slot {
            generation: 0,
            worker: 0,
            ticket: Ticket::default(),
            taken: Instant::now(),
            live: false,
        };
        Pending {
            slots: vec![slot; n.max(1)],
            free: (0..n.max(1) as u32).rev().collect(),
            deadlines: VecDeque::with_capacity(n.max(1)),
            live: 0,
        }
    }

    /// Take a slot; `None` when every slot is in use (more in flight than the limits
    /// allow: cannot happen, answered 503).
    fn insert(
        &mut self,
        worker: u32,
        ticket: Ticket,
        taken: Instant,
        deadline: Instant,
    ) -> Option<u64> {
        let i = self.free.pop()?;
        let s = self.slots.get_mut(i as usize)?;
        s.generation = s.generation.wrapping_add(1);
        s.worker = worker;
        s.ticket = ticket;
        s.taken = taken;
        s.live = true;
        self.live += 1;
        self.deadlines.push_back((deadline, i, s.generation));
        Some(u64::from(s.generation) << 32 | u64::from(i))
    }

    /// The pending request of `token`, removed.
    fn take(&mut self, token: u64) -> Option<Slot> {
        let (i, generation) = ((token & 0xffff_ffff) as u32, (token >> 32) as u32);
        let s = self.slots.get_mut(i as usize)?;
        if !s.live || s.generation != generation {
            return None;
        }
        s.live = false;
        self.live -= 1;
        self.free.push(i);
        Some(*s)
    }

    /// The next deadline still pending.
    fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(&(at, i, generation)) = self.deadlines.front() {
            match self.slots.get(i as usize) {
                Some(s) if s.live && s.generation == generation => return Some(at),
                _ => {
                    self.deadlines.pop_front();
                }
            }
        }
        None
    }

    /// The requests whose deadline passed by `now`, removed.
    fn expired(&mut self, now: Instant, out: &mut Vec<Slot>) {
        while let Some(&(at, i, generation)) = self.deadlines.front() {
            if at > now {
                break;
            }
            self.deadlines.pop_front();
            if let Some(s) = self.take(u64::from(generation) << 32 | u64::from(i)) {
                out.push(s);
            }
        }
    }
}

/// The `weir-nats` thread's state.
struct Bridge {
    /// The request subject (cloning it is a reference count, not a copy).
    subject: async_nats::Subject,
    timeout: Duration,
    upstream: Arc<Upstream>,
    ends: Vec<WorkerEnd>,
    pending: Pending,
    report: UpstreamReport,
}

impl Bridge {
    async fn run(
        mut self,
        addrs: Vec<async_nats::ServerAddr>,
        hear: std::os::unix::net::UnixDatagram,
    ) {
        use futures_util::StreamExt;
        let up = Arc::clone(&self.upstream);
        let options = async_nats::ConnectOptions::new()
            .name("weir-dp")
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(2))
            .ping_interval(Duration::from_secs(5))
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((100 * attempts as u64).clamp(100, 1000))
            })
            .event_callback(move |event| {
                let up = Arc::clone(&up);
                async move {
                    match event {
                        async_nats::Event::Connected => up.set_state(LinkState::Connected),
                        async_nats::Event::Disconnected | async_nats::Event::Closed => {
                            up.set_state(LinkState::Disconnected);
                        }
                        other => tracing::warn!(event = %other, "NATS"),
                    }
                }
            });
        let client = match options.connect(addrs).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "NATS client cannot start; every request is answered 503");
                return;
            }
        };
        let inbox = client.new_inbox();
        let mut replies = match client.subscribe(format!("{inbox}.*")).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot subscribe to the reply inbox; every request is answered 503");
                return;
            }
        };
        let bell = match tokio::net::UnixDatagram::from_std(hear) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch the doorbell; every request is answered 503");
                return;
            }
        };
        let mut rung = [0u8; 64];
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut expired = Vec::new();
        loop {
            self.wake_workers();
            if !self.drain_jobs(&client, &inbox).await {
                tracing::info!("every worker has stopped; the NATS link closes");
                return;
            }
            let deadline = self.pending.next_deadline();
            tokio::select! {
                msg = replies.next() => match msg {
                    Some(m) => self.on_reply(&inbox, m),
                    None => {
                        tracing::error!("the reply subscription ended; every request is answered 503");
                        self.upstream.set_state(LinkState::Disconnected);
                        return;
                    }
                },
                ready = bell.readable() => {
                    if ready.is_ok() {
                        while bell.try_recv(&mut rung).is_ok() {}
                    }
                }
                _ = sleep_until(deadline) => {
                    self.pending.expired(Instant::now(), &mut expired);
                    for s in expired.drain(..) {
                        self.report.outcomes.timeout += 1;
                        self.answer(s, Completion::Failed(504));
                    }
                }
                _ = tick.tick() => {
                    let state = match client.connection_state() {
                        async_nats::connection::State::Connected => LinkState::Connected,
                        async_nats::connection::State::Disconnected => LinkState::Disconnected,
                        async_nats::connection::State::Pending => LinkState::Pending,
                    };
                    self.upstream.set_state(state);
                    self.publish();
                }
            }
        }
    }

    /// Take every queued job and publish it; false once every worker has gone.
    async fn drain_jobs(&mut self, client: &async_nats::Client, inbox: &str) -> bool {
        for w in 0..self.ends.len() {
            while let Some(end) = self.ends.get_mut(w) {
                if !end.open {
                    break;
                }
                let job = match end.jobs.try_recv() {
                    Ok(j) => j,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        end.open = false;
                        break;
                    }
                };
                self.publish_job(client, inbox, w as u32, job).await;
            }
        }
        self.ends.iter().any(|e| e.open)
    }

    async fn publish_job(&mut self, client: &async_nats::Client, inbox: &str, w: u32, job: Job) {
        let deadline = job.taken + self.timeout;
        let now = Instant::now();
        if !self.upstream.connected() {
            self.report.outcomes.unavailable += 1;
            self.send(w, job.ticket, Completion::Failed(503));
            return;
        }
        if deadline <= now {
            self.report.outcomes.timeout += 1;
            self.send(w, job.ticket, Completion::Failed(504));
            return;
        }
        let Some(token) = self.pending.insert(w, job.ticket, job.taken, deadline) else {
            self.report.outcomes.unavailable += 1;
            self.send(w, job.ticket, Completion::Failed(503));
            return;
        };
        self.report.requests += 1;
        let reply = format!("{inbox}.{token:x}");
        let sent = client
            .publish_with_reply(self.subject.clone(), reply, Bytes::from(job.payload))
            .await;
        if let Err(e) = sent {
            let Some(slot) = self.pending.take(token) else {
                return;
            };
            let status = if e.kind() == async_nats::client::PublishErrorKind::MaxPayloadExceeded {
                self.report.outcomes.too_large += 1;
                413
            } else {
                tracing::debug!(error = %e, "NATS publish failed");
                self.report.outcomes.unavailable += 1;
                503
            };
            self.answer(slot, Completion::Failed(status));
        }
    }

    fn on_reply(&mut self, inbox: &str, m: async_nats::Message) {
        let token = m
            .subject
            .as_str()
            .strip_prefix(inbox)
            .and_then(|t| t.strip_prefix('.'))
            .and_then(|t| u64::from_str_radix(t, 16).ok());
        let Some(slot) = token.and_then(|t| self.pending.take(t)) else {
            self.report.late_replies += 1;
            return;
        };
        if let Some(status) = m.status {
            let answer = if status == async_nats::StatusCode::NO_RESPONDERS {
                self.report.outcomes.unavailable += 1;
                Completion::Failed(503)
            } else {
                tracing::debug!(%status, "NATS status message instead of a reply");
                self.report.outcomes.bad_reply += 1;
                Completion::Failed(502)
            };
            self.answer(slot, answer);
            return;
        }
        let answer = match render(&m.payload) {
            Ok((answer, dropped)) => {
                self.report.headers_dropped += dropped;
                if let Completion::Reply { status, .. } = &answer {
                    self.report.outcomes.count_status(*status);
                }
                let ns = u64::try_from(slot.taken.elapsed().as_nanos()).unwrap_or(u64::MAX);
                let _ = self.report.latency.record(ns.max(1_000));
                answer
            }
            Err(e) => {
                tracing::debug!(error = %e, "application server reply refused (502)");
                self.report.outcomes.bad_reply += 1;
                Completion::Failed(502)
            }
        };
        self.answer(slot, answer);
    }

    fn answer(&mut self, slot: Slot, answer: Completion) {
        self.send(slot.worker, slot.ticket, answer);
    }

    fn send(&mut self, w: u32, ticket: Ticket, answer: Completion) {
        if let Some(end) = self.ends.get_mut(w as usize) {
            // Cannot be full: the worker has at most its limit out, one answer each.
            if end.answers.try_send(Done { ticket, answer }).is_err() && end.open {
                tracing::error!(worker = w, "answer channel full or closed: answer dropped");
            }
            end.unwoken = true;
        }
    }

    /// Wake the workers that got answers since the last call (once per loop turn, so a
    /// burst of replies costs one wake-up per worker).
    fn wake_workers(&mut self) {
        for end in &mut self.ends {
            if std::mem::take(&mut end.unwoken) {
                if let Some(w) = end.waker.get() {
                    w.wake();
                }
            }
        }
    }

    fn publish(&mut self) {
        self.report.in_flight = self.pending.live;
        if let Ok(mut g) = self.upstream.report.try_lock() {
            g.clone_from(&self.report);
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// A reply payload as a [`Completion`]: decoded, checked, headers rendered (hop-by-hop
/// ones dropped: their count is returned), the body a slice of the payload (no copy).
pub fn render(payload: &Bytes) -> Result<(Completion, u64), appmsg::MsgError> {
    let reply = AppReply::decode(payload)?;
    let mut head = Vec::with_capacity(
        reply
            .headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum(),
    );
    let mut dropped = 0;
    for (name, value) in &reply.headers {
        if appmsg::is_hop_by_hop(name) {
            dropped += 1;
            continue;
        }
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.trim_matches([' ', '\t']).as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    // The body borrows the payload: its offset in it gives a zero-copy slice.
    let off = (reply.body.0.as_ptr() as usize).saturating_sub(payload.as_ptr() as usize);
    let body = payload.slice(off.min(payload.len())..(off + reply.body.0.len()).min(payload.len()));
    Ok((
        Completion::Reply {
            status: reply.status,
            head: Bytes::from(head),
            body,
        },
        dropped,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_model::appmsg::Blob;

    #[test]
    fn render_drops_hop_by_hop_and_slices_the_body() {
        let r = AppReply {
            version: 1,
            status: 201,
            headers: vec![
                ("Content-Type", "text/plain"),
                ("Connection", "close"),
                ("X-A", " spaced "),
                ("content-length", "99"),
            ],
            body: Blob(b"made\n"),
        };
        let mut v = Vec::new();
        r.encode(&mut v);
        let payload = Bytes::from(v);
        let (c, dropped) = render(&payload).unwrap();
        assert_eq!(dropped, 2);
        assert_eq!(
            c,
            Completion::Reply {
                status: 201,
                head: Bytes::from_static(b"Content-Type: text/plain\r\nX-A: spaced\r\n"),
                body: Bytes::from_static(b"made\n"),
            }
        );
        assert!(render(&Bytes::from_static(&[1, 200])).is_err());
    }

    #[test]
    fn pending_tokens_and_deadlines() {
        let mut p = Pending::new(2);
        let t0 = Instant::now();
        let a = p
            .insert(0, Ticket::default(), t0, t0 + Duration::from_millis(10))
            .unwrap();
        let b = p
            .insert(1, Ticket::default(), t0, t0 + Duration::from_millis(20))
            .unwrap();
        assert!(
            p.insert(0, Ticket::default(), t0, t0).is_none(),
            "table full"
        );
        assert_eq!(p.next_deadline(), Some(t0 + Duration::from_millis(10)));
        assert_eq!(p.take(a).map(|s| s.worker), Some(0));
        assert!(p.take(a).is_none(), "taken once");
        assert_eq!(p.next_deadline(), Some(t0 + Duration::from_millis(20)));
        let mut out = Vec::new();
        p.expired(t0 + Duration::from_millis(15), &mut out);
        assert!(out.is_empty());
        p.expired(t0 + Duration::from_millis(20), &mut out);
        assert_eq!(out.len(), 1);
        assert!(p.take(b).is_none(), "expired is gone");
        // A reused slot gets a new generation: the old token no longer matches.
        let c = p.insert(0, Ticket::default(), t0, t0).unwrap();
        assert_ne!(c, a);
        assert_ne!(c, b);
        assert_eq!(p.live, 1);
    }
}
