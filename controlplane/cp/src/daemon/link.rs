//! One thread per configured dataplane: connect, push the policy, poll stats, reconnect.
//!
//! A session is: connect with a [`Role::ControlPlane`] hello, `Apply` the current snapshot,
//! then wait on the desired state's condition variable until either its version moves (→
//! `Apply` again) or the next poll is due (→ `Stats`, then the policy loop). Any transport
//! or protocol error ends the session: the link is marked down, the error is logged once
//! per streak (repeats of the same error go to debug), and the next attempt comes after an
//! exponential backoff of 100 ms doubling to 5 s, reset by a successful push.
//!
//! Because a session always starts with a full `Apply`, every kind of loss heals the same
//! way: a restarted weir-dp is re-pushed on reconnect, a restarted weir-cp pushes its
//! persisted state on first connect, and while weir-cp is away weir-dp keeps the last
//! snapshot it was given. A dataplane whose stats report, two polls in a row, a policy
//! version other than the one it acknowledged (it reloaded its own config, say) is pushed
//! again.
//!
//! A dataplane that refuses a snapshot (`DpReply::Error`) keeps its previous one; the refusal
//! is recorded as the link's last error and the same version is not sent again (it would be
//! refused again) — the next change is.
//!
//! Rejected: a connection per request (reconnect cost and log noise every poll) and pushing
//! deltas (a missed delta would need its own recovery path; complete snapshots have none).

use std::time::{Duration, Instant};

use weir_control::proto::{DpReply, DpRequest, Hello, Role};
use weir_control::transport::{Conn, TransportError};

use super::policy::Trackers as Tracker;
use super::{lock, DaemonState, LinkState};

/// First retry delay.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest retry delay.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Connect and hello.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// One request's round trip.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
enum LinkError {
    /// The socket failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The dataplane answered something that does not fit the request.
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// The link thread for `shared.links[index]`; returns at shutdown.
pub(crate) fn run(shared: &DaemonState, index: usize) {
    let Some(link) = shared.links.get(index) else {
        return;
    };
    let hello = Hello::new(Role::ControlPlane, format!("weir-cp:{}", link.name));
    let mut backoff = BACKOFF_MIN;
    let mut tracker = Tracker::default();
    while !shared.stopping() {
        let Err(e) = session(shared, link, &hello, &mut tracker, &mut backoff) else {
            break;
        };
        tracker.reset();
        let msg = e.to_string();
        let mut st = lock(&link.status);
        let was_connected = std::mem::replace(&mut st.connected, false);
        let repeated = st.last_error.as_deref() == Some(msg.as_str());
        st.last_error = Some(msg.clone());
        drop(st);
        if was_connected {
            tracing::warn!(dataplane = %link.name, error = %msg, "dataplane link lost; reconnecting");
        } else if !repeated {
            tracing::warn!(dataplane = %link.name, socket = %link.socket.display(), error = %msg, "cannot reach dataplane; retrying with backoff");
        } else {
            tracing::debug!(dataplane = %link.name, error = %msg, "dataplane still unreachable");
        }
        shared.sleep(backoff);
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
    lock(&link.status).connected = false;
}

/// One connection's life; `Ok` only at shutdown.
fn session(
    shared: &DaemonState,
    link: &LinkState,
    hello: &Hello,
    tracker: &mut Tracker,
    backoff: &mut Duration,
) -> Result<(), LinkError> {
    let (conn, _) = Conn::connect(&link.socket, hello, CONNECT_TIMEOUT)?;
    let mut id = 0u64;
    let (mut pushed, mut accepted) = apply(shared, link, &conn, &mut id)?;
    {
        let mut st = lock(&link.status);
        st.connected = true;
        st.connects += 1;
        st.reconnects = st.connects - 1;
        if accepted {
            st.last_error = None;
        }
    }
    *backoff = BACKOFF_MIN;
    tracing::info!(dataplane = %link.name, version = pushed, accepted, "dataplane connected and policy pushed");

    let poll = Duration::from_millis(shared.control.poll_ms);
    let mut next_poll = Instant::now();
    let mut mismatches = 0u32;
    loop {
        let desired = {
            let g = lock(&shared.desired);
            let wait = next_poll.saturating_duration_since(Instant::now());
            let (g, _) = shared
                .changed
                .wait_timeout_while(g, wait, |d| d.version() == pushed && !shared.stopping())
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            g.version()
        };
        if shared.stopping() {
            return Ok(());
        }
        if desired != pushed {
            (pushed, accepted) = apply(shared, link, &conn, &mut id)?;
            continue;
        }
        if Instant::now() < next_poll {
            continue;
        }
        next_poll = Instant::now() + poll;
        id += 1;
        let stats =
            match conn.request::<DpRequest, DpReply>(id, DpRequest::Stats, REQUEST_TIMEOUT)? {
                DpReply::Stats(s) => *s,
                DpReply::Error { message } => {
                    tracing::debug!(dataplane = %link.name, %message, "stats refused");
                    continue;
                }
                other => return Err(unexpected("Stats", &other)),
            };
        let in_force = stats.policy_version;
        super::policy::observe(shared, &link.name, tracker, &stats);
        lock(&link.status).stats = Some(stats);
        // Two polls in a row: a dataplane may report the old version until its rx cores
        // have picked the new snapshot up.
        mismatches = if accepted && in_force != pushed {
            mismatches + 1
        } else {
            0
        };
        if mismatches >= 2 {
            mismatches = 0;
            tracing::warn!(dataplane = %link.name, in_force, pushed, "dataplane runs another policy version; pushing again");
            (pushed, accepted) = apply(shared, link, &conn, &mut id)?;
        }
    }
}

/// Push the current snapshot; returns its version and whether the dataplane took it.
fn apply(
    shared: &DaemonState,
    link: &LinkState,
    conn: &Conn,
    id: &mut u64,
) -> Result<(u64, bool), LinkError> {
    let snapshot = lock(&shared.desired).snapshot.clone();
    let version = snapshot.version;
    *id += 1;
    let reply = conn.request::<DpRequest, DpReply>(
        *id,
        DpRequest::Apply(Box::new(snapshot)),
        REQUEST_TIMEOUT,
    )?;
    match reply {
        DpReply::Applied { version: v } if v == version => {
            let mut st = lock(&link.status);
            st.applied_version = version;
            st.last_error = None;
            drop(st);
            tracing::info!(dataplane = %link.name, version, "policy applied");
            Ok((version, true))
        }
        DpReply::Applied { version: v } => Err(LinkError::Protocol(format!(
            "sent policy version {version}, the dataplane acknowledged version {v}"
        ))),
        DpReply::Error { message } => {
            let msg = format!("dataplane refused policy version {version}: {message}");
            tracing::error!(dataplane = %link.name, version, %message, "dataplane refused the policy; it keeps its previous one");
            lock(&link.status).last_error = Some(msg);
            Ok((version, false))
        }
        other => Err(unexpected("Apply", &other)),
    }
}

fn unexpected(request: &str, reply: &DpReply) -> LinkError {
    let kind = match reply {
        DpReply::Applied { .. } => "Applied",
        DpReply::Stats(_) => "Stats",
        DpReply::Pong { .. } => "Pong",
        DpReply::Error { .. } => "Error",
    };
    LinkError::Protocol(format!("{kind} is no answer to {request}"))
}
