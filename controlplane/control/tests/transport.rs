//! The control socket against real peers: a listener and clients in threads of this
//! process, talking through unix seqpacket sockets in a private temporary directory, and
//! raw sockets for the peers that misbehave.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::Duration;

use nix::sys::socket::{
    self, setsockopt, sockopt, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use weir_control::frame::{decode, encode, FrameError};
use weir_control::proto::{
    BlockSpec, ClusterPolicy, CpStatus, CtlReply, CtlRequest, DpLink, DpReply, DpRequest, DpStats,
    Envelope, HandoverRun, Hello, HelloReply, PolicySnapshot, RingStats, Role, SliceRun,
    SlowSource, SourceRate, TeeOrder, TeeSpec, TeeStatus, UpstreamStats, MAX_FRAME,
    PROTOCOL_VERSION,
};
use weir_control::transport::{current_uid, Conn, Listener, TransportError};
use weir_model::config::RingsConfig;
use weir_model::{Class, WorkerStats};
use weir_ssa::Rule;

const T: Duration = Duration::from_secs(5);

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "weir-transport-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir(&p).unwrap();
        TempDir(p)
    }
    /// A socket path in a runtime directory `run` that does not exist yet.
    fn sock(&self) -> PathBuf {
        self.0.join("run").join("ctl.sock")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn cp_hello() -> Hello {
    Hello::new(Role::ControlPlane, "cp-test")
}

fn dp_hello() -> Hello {
    Hello::new(Role::Dataplane, "dp-test")
}

/// Accept one connection and echo `n` envelopes of type `M` back unchanged.
fn echo<M: Serialize + DeserializeOwned>(listener: &Listener, n: usize) {
    let (conn, hello) = listener.accept(&dp_hello(), Some(T)).unwrap();
    assert_eq!(hello, cp_hello());
    for _ in 0..n {
        let env: Envelope<M> = conn.recv(Some(T)).unwrap();
        conn.send(&env).unwrap();
    }
}

/// Send every message in `msgs` through a real socket pair and expect it back unchanged.
fn round_trip<M>(msgs: Vec<M>)
where
    M: Serialize + DeserializeOwned + Clone + PartialEq + Debug + Send,
{
    let dir = TempDir::new();
    let listener = Listener::bind(&dir.sock(), current_uid()).unwrap();
    thread::scope(|s| {
        let (listener, n) = (&listener, msgs.len());
        s.spawn(move || echo::<M>(listener, n));
        let (conn, reply) = Conn::connect(&dir.sock(), &cp_hello(), T).unwrap();
        assert_eq!(
            reply,
            HelloReply::Accepted {
                version: PROTOCOL_VERSION,
                role: Role::Dataplane,
                name: "dp-test".into()
            }
        );
        assert_eq!(conn.peer_uid(), current_uid());
        for (id, m) in msgs.iter().enumerate() {
            let back: M = conn.request(id as u64 + 100, m.clone(), T).unwrap();
            assert_eq!(&back, m);
        }
    });
}

fn snapshot() -> PolicySnapshot {
    PolicySnapshot {
        version: 42,
        apl: "1:2001:db8::/48".into(),
        slice_bits: 8,
        rule: Rule::TimeHop {
            key: [7; 16],
            src_prefix_len: 48,
            period_s: 30,
            skew: 1,
        },
        slices: vec![
            SliceRun {
                first: 0,
                last: 127,
                worker: 0,
            },
            SliceRun {
                first: 128,
                last: 255,
                worker: 1,
            },
        ],
        blocks: vec![BlockSpec {
            prefix: "2001:db8:bad::/48".into(),
            until_unix_ns: Some(1_700_000_000_000_000_000),
            reason: "operator".into(),
        }],
        rings: RingsConfig::default(),
        new_flows_per_sec: 1000,
        source_prefix_len: 48,
        cluster: Some(ClusterPolicy {
            handover_addr: "2001:db8:77::1".into(),
            members: vec!["2001:db8:77::1".into(), "2001:db8:77::2".into()],
            handovers: vec![HandoverRun {
                first: 0,
                last: 99,
                predecessor: "2001:db8:77::2".into(),
            }],
        }),
        tee: TeeOrder::Start(TeeSpec {
            filters: vec!["reject:ssa-violation".into(), "suspect:*".into()],
            sample: 100,
            rate_per_core: Some(5000),
            snaplen: None,
            until_unix_ns: Some(1_700_000_000_000_000_000),
            serial: 3,
        }),
    }
}

fn stats() -> DpStats {
    DpStats {
        policy_version: 42,
        uptime_ns: 123_456_789,
        packets: 1000,
        outbound: 10,
        host: 3,
        classes: BTreeMap::from([("known_good".into(), 900), ("suspect".into(), 100)]),
        reasons: BTreeMap::from([("ssa-violation".into(), 7)]),
        events: BTreeMap::from([("flow-table-full".into(), 1)]),
        slices: vec![(3, 99), (200, 1)],
        workers: vec![WorkerStats {
            worker: 1,
            known_good: 5,
            assumed_good: 6,
            suspect: 7,
            bytes: 8,
            new_flows: 2,
            rounds: 0,
        }],
        rings: vec![RingStats {
            rx: 0,
            worker: 1,
            class: Class::Suspect,
            size: 512,
            occupancy: 3,
            drops: 9,
        }],
        half_open: 4,
        established: 5,
        top_sources: vec![SourceRate {
            prefix: "2001:db8:1::/48".into(),
            admitted: 10,
            limited: 2,
        }],
        latency: BTreeMap::from([("known_good".into(), vec![1, 2, 3, 255])]),
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
            outcomes: BTreeMap::from([("2xx".into(), 990), ("504".into(), 10)]),
            headers_dropped: 0,
            late_replies: 1,
            latency: vec![9, 8, 7],
        }],
        tee: TeeStatus {
            active: true,
            filter: "reject:ssa-violation".into(),
            sample: 1,
            rate_per_core: 10_000,
            snaplen: 256,
            until_unix_ns: None,
            dir: "/var/lib/weir/tee".into(),
            file: Some("tee-00001.pcapng".into()),
            teed: 10,
            dropped: 1,
            sampled_out: 0,
            rate_capped: 2,
            written: 9,
            files: 1,
            bytes: 4096,
            error: None,
        },
    }
}

#[test]
fn every_dp_request_round_trips() {
    round_trip(vec![
        DpRequest::Apply(Box::new(snapshot())),
        DpRequest::Stats,
        DpRequest::Ping,
    ]);
}

#[test]
fn every_dp_reply_round_trips() {
    round_trip(vec![
        DpReply::Applied { version: 42 },
        DpReply::Stats(Box::new(stats())),
        DpReply::Pong { version: 0 },
        DpReply::Error {
            message: "bad apl".into(),
        },
        // Close to the limit: must fit the socket's send buffer whole.
        DpReply::Error {
            message: "x".repeat(MAX_FRAME - 16),
        },
    ]);
}

#[test]
fn every_ctl_request_round_trips() {
    round_trip(vec![
        CtlRequest::Status,
        CtlRequest::Stats,
        CtlRequest::RingsShow,
        CtlRequest::RingsSet {
            class: Class::Suspect,
            size: Some(1024),
            weight: None,
        },
        CtlRequest::RulesShow,
        CtlRequest::RulesSet(Rule::SrcBits {
            src_start: 64,
            dst_start: 80,
            len: 8,
        }),
        CtlRequest::RulesSet(Rule::KeyedHash {
            key: [1; 16],
            src_prefix_len: 56,
        }),
        CtlRequest::RulesSet(Rule::Any),
        CtlRequest::RulesSet(Rule::Content),
        CtlRequest::SlicesShow,
        CtlRequest::SlicesMove {
            first: 3,
            last: 9,
            worker: 2,
        },
        CtlRequest::BlockAdd {
            prefix: "2001:db8:bad::/48".into(),
            ttl_s: Some(600),
        },
        CtlRequest::BlockDel {
            prefix: "2001:db8:bad::/48".into(),
        },
        CtlRequest::BlockList,
        CtlRequest::ConfigReload,
        CtlRequest::ClusterStatus,
        CtlRequest::ClusterMove {
            first: 0,
            last: 4095,
            host: "h2".into(),
        },
        CtlRequest::ClusterDrain { host: "h3".into() },
        CtlRequest::TeeStart {
            filters: vec!["reject:ssa-violation".into()],
            sample: 100,
            rate_per_core: None,
            snaplen: Some(128),
            duration_ms: Some(30_000),
        },
        CtlRequest::TeeStop,
        CtlRequest::TeeStatus,
    ]);
}

#[test]
fn every_ctl_reply_round_trips() {
    round_trip(vec![
        CtlReply::Status(CpStatus {
            version: 3,
            config: "/etc/weir/weir.toml".into(),
            uptime_s: 60,
            dataplanes: vec![DpLink {
                name: "dp0".into(),
                socket: "/run/weir/dp0.sock".into(),
                connected: true,
                applied_version: 3,
                reconnects: 1,
                last_error: Some("timed out".into()),
            }],
            decisions: BTreeMap::from([("block-added".into(), 2)]),
        }),
        CtlReply::Stats(vec![("dp0".into(), stats())]),
        CtlReply::Rings(RingsConfig::default()),
        CtlReply::Rules {
            rule: Rule::Any,
            new_flows_per_sec: 100,
            source_prefix_len: 48,
            warning: Some("clients cluster".into()),
        },
        CtlReply::Slices {
            apl: "1:2001:db8::/48".into(),
            slice_bits: 4,
            workers: 2,
            runs: snapshot().slices,
            new_flows: vec![3, 4],
        },
        CtlReply::Blocks(snapshot().blocks),
        CtlReply::Done {
            message: "blocked".into(),
            version: 4,
        },
        CtlReply::Error {
            message: "no such class".into(),
        },
        CtlReply::Tee {
            order: snapshot().tee,
            dataplanes: vec![("dp0".into(), stats().tee)],
        },
        CtlReply::Cluster(Box::new(weir_control::proto::ClusterView {
            service: "svc".into(),
            host: "h1".into(),
            connected: true,
            coordinator: Some("h2".into()),
            epoch: 3,
            slices: 16384,
            hosts: vec![weir_control::proto::ClusterHostView {
                name: "h1".into(),
                live: true,
                drained: false,
                handover_addr: "2001:db8:77::1".into(),
                slices: 16384,
            }],
            runs: vec![weir_control::proto::ClusterRunView {
                first: 0,
                last: 16383,
                host: "h1".into(),
            }],
            handovers: vec![],
            announced: vec!["2001:db8:5::/64".into()],
            last_error: None,
        })),
        CtlReply::ClusterDone {
            message: "moved".into(),
            epoch: 4,
        },
    ]);
}

/// A request/reply exchange between different types, as weir-cp and weir-dp use it.
#[test]
fn request_gets_its_reply() {
    let dir = TempDir::new();
    let listener = Listener::bind(&dir.sock(), current_uid()).unwrap();
    thread::scope(|s| {
        s.spawn(|| {
            let (conn, _) = listener.accept(&dp_hello(), Some(T)).unwrap();
            let req: Envelope<DpRequest> = conn.recv(Some(T)).unwrap();
            let body = match req.body {
                DpRequest::Apply(snap) => DpReply::Applied {
                    version: snap.version,
                },
                other => panic!("unexpected {other:?}"),
            };
            conn.send(&Envelope { id: req.id, body }).unwrap();
        });
        let (conn, _) = Conn::connect(&dir.sock(), &cp_hello(), T).unwrap();
        let reply: DpReply = conn
            .request(9, DpRequest::Apply(Box::new(snapshot())), T)
            .unwrap();
        assert_eq!(reply, DpReply::Applied { version: 42 });
    });
}

#[test]
fn stale_replies_are_skipped() {
    let dir = TempDir::new();
    let listener = Listener::bind(&dir.sock(), current_uid()).unwrap();
    thread::scope(|s| {
        s.spawn(|| {
            let (conn, _) = listener.accept(&dp_hello(), Some(T)).unwrap();
            let req: Envelope<DpRequest> = conn.recv(Some(T)).unwrap();
            assert_eq!(req.id, 7);
            // A late answer to an earlier request, then the real one.
            conn.send(&Envelope {
                id: 6,
                body: DpReply::Pong { version: 6 },
            })
            .unwrap();
            conn.send(&Envelope {
                id: 7,
                body: DpReply::Pong { version: 7 },
            })
            .unwrap();
            // Only stale replies: the next request times out.
            let req: Envelope<DpRequest> = conn.recv(Some(T)).unwrap();
            assert_eq!(req.id, 8);
            conn.send(&Envelope {
                id: 5,
                body: DpReply::Pong { version: 5 },
            })
            .unwrap();
            // Stay connected until the client has given up and hung up.
            let err = conn.recv::<DpRequest>(Some(T)).unwrap_err();
            assert!(matches!(err, TransportError::Closed), "{err}");
        });
        let (conn, _) = Conn::connect(&dir.sock(), &cp_hello(), T).unwrap();
        let reply: DpReply = conn.request(7, DpRequest::Ping, T).unwrap();
        assert_eq!(reply, DpReply::Pong { version: 7 });
        let err = conn
            .request::<_, DpReply>(8, DpRequest::Ping, Duration::from_millis(300))
            .unwrap_err();
        assert!(matches!(err, TransportError::Timeout), "{err}");
    });
}

/// After a refused connection the same listener accepts a good one.
fn next_connection_works(listener: &Listener, sock: &Path) {
    thread::scope(|s| {
        s.spawn(|| echo::<DpRequest>(listener, 1));
        let (conn, _) = Conn::connect(sock, &cp_hello(), T).unwrap();
        let r: DpRequest = conn.request(1, DpRequest::Ping, T).unwrap();
        assert_eq!(r, DpRequest::Ping);
    });
}

#[test]
fn wrong_version_is_refused_and_listener_goes_on() {
    let dir = TempDir::new();
    let listener = Listener::bind(&dir.sock(), current_uid()).unwrap();
    let theirs = PROTOCOL_VERSION + 1;
    thread::scope(|s| {
        let server = s.spawn(|| listener.accept(&dp_hello(), Some(T)));
        let mut hello = cp_hello();
        hello.version = theirs;
        let err = Conn::connect(&dir.sock(), &hello, T).unwrap_err();
        let TransportError::Refused(reason) = &err else {
            panic!("expected a refusal, got {err}");
        };
        assert!(
            reason.contains(&format!("version {PROTOCOL_VERSION}"))
                && reason.contains(&format!("version {theirs}")),
            "{reason}"
        );
        let err = server.join().unwrap().unwrap_err();
        assert!(
            matches!(err, TransportError::Version { ours, theirs: t } if ours == PROTOCOL_VERSION && t == theirs),
            "{err}"
        );
        let msg = err.to_string();
        assert!(msg.contains(&PROTOCOL_VERSION.to_string()) && msg.contains(&theirs.to_string()));
    });
    next_connection_works(&listener, &dir.sock());
}

/// A hello from a future version with a different layout after the version field is
/// still refused as a version mismatch, not as garbage.
#[test]
fn future_hello_layout_is_a_version_mismatch() {
    let dir = TempDir::new();
    let listener = Listener::bind(&dir.sock(), current_uid()).unwrap();
    thread::scope(|s| {
        let server = s.spawn(|| listener.accept(&dp_hello(), Some(T)));
        let mut bytes = b"weir".to_vec();
        bytes.push(9); // version 9
        bytes.extend_from_slice(&[0xff; 20]); // whatever version 9 sends next
        let fd = raw_connect(&dir.sock());
        raw_send(&fd, &bytes);
        let reply: HelloReply = decode(&raw_recv(&fd)).unwrap();
        assert!(
            matches!(&reply, HelloReply::Refused { reason } if reason.contains("version 9")),
            "{reply:?}"
        );
        let err = server.join().unwrap().unwrap_err();
        assert!(
            matches!(err, TransportError::Version { theirs: 9, .. }),
            "{err}"
        );
    });
}

#[test]
fn wrong_magic_is_refused() {
    let dir = TempDir::new();
    let listener = Listener::bind(&dir.sock(), current_uid()).unwrap();
    thread::scope(|s| {
        let server = s.spawn(|| listener.accept(&dp_hello(), Some(T)));
        let mut hello = cp_hello();
        hello.magic = *b"riew";
        let err = Conn::connect(&dir.sock(), &hello, T).unwrap_err();
        assert!(
            matches!(&err, TransportError::Refused(r) if r.contains("magic")),
            "{err}"
        );
        let err = server.join().unwrap().unwrap_err();
        assert!(matches!(err, TransportError::Magic), "{err}");
    });
    next_connection_works(&listener, &dir.sock());
}

/// A peer that sends something other than a hello is refused with a reason and
/// disconnected; the listener goes on.
#[test]
fn garbage_hello_is_refused() {
    assert_eq!(
        PROTOCOL_VERSION, 4,
        "the third case below spells the version out"
    );
    let dir = TempDir::new();
    let listener = Listener::bind(&dir.sock(), current_uid()).unwrap();
    type Expect = fn(&TransportError) -> bool;
    let cases: [(&[u8], Expect); 3] = [
        // Long enough to read a "magic": not a weir peer.
        (b"GET / HTTP/1.1\r\n\r\n", |e| {
            matches!(e, TransportError::Magic)
        }),
        // Too short to be anything.
        (&[0xff, 0x01], |e| {
            matches!(e, TransportError::Frame(FrameError::Malformed(_)))
        }),
        // Right magic and version (PROTOCOL_VERSION, 4), then an unknown role.
        (b"weir\x04\x09\x01x", |e| {
            matches!(e, TransportError::Frame(FrameError::Malformed(_)))
        }),
    ];
    for (bytes, expected) in cases {
        thread::scope(|s| {
            let server = s.spawn(|| listener.accept(&dp_hello(), Some(T)));
            let fd = raw_connect(&dir.sock());
            raw_send(&fd, bytes);
            let reply: HelloReply = decode(&raw_recv(&fd)).unwrap();
            assert!(
                matches!(reply, HelloReply::Refused { .. }),
                "{bytes:?}: {reply:?}"
            );
            // Then the listener hangs up.
            assert!(raw_recv(&fd).is_empty());
            let err = server.join().unwrap().unwrap_err();
            assert!(expected(&err), "{bytes:?}: {err}");
        });
    }
    next_connection_works(&listener, &dir.sock());
}

#[test]
fn silent_peer_times_out_at_the_hello() {
    let dir = TempDir::new();
    let listener = Listener::bind(&dir.sock(), current_uid()).unwrap();
    let _fd = raw_connect(&dir.sock());
    let err = listener.accept(&dp_hello(), Some(T)).unwrap_err();
    assert!(matches!(err, TransportError::Timeout), "{err}");
}

#[test]
fn accept_times_out_without_a_peer() {
    let dir = TempDir::new();
    let listener = Listener::bind(&dir.sock(), current_uid()).unwrap();
    let err = listener
        .accept(&dp_hello(), Some(Duration::from_millis(100)))
        .unwrap_err();
    assert!(matches!(err, TransportError::Timeout), "{err}");
}

/// Bad frames after the hello are refused one by one, and the same connection then
/// carries a valid request and its reply.
#[test]
fn bad_frames_are_refused_and_connection_survives() {
    let dir = TempDir::new();
    let listener = Listener::bind(&dir.sock(), current_uid()).unwrap();
    let valid = encode(&Envelope {
        id: 1,
        body: DpRequest::Apply(Box::new(snapshot())),
    })
    .unwrap();
    let mut trailing = encode(&Envelope {
        id: 1,
        body: DpRequest::Ping,
    })
    .unwrap();
    trailing.push(0);
    let bad: Vec<(&str, Vec<u8>, FrameError)> = vec![
        (
            "malformed",
            vec![0x01, 0x77, 0x77],
            FrameError::Malformed(String::new()),
        ),
        (
            "truncated",
            valid[..valid.len() / 2].to_vec(),
            FrameError::Malformed(String::new()),
        ),
        (
            "oversized",
            vec![0u8; MAX_FRAME + 100],
            FrameError::Oversize {
                len: MAX_FRAME + 100,
                max: MAX_FRAME,
            },
        ),
        ("trailing", trailing, FrameError::Trailing(1)),
        ("empty", Vec::new(), FrameError::Empty),
    ];
    thread::scope(|s| {
        let server = s.spawn(|| {
            let (conn, _) = listener.accept(&dp_hello(), Some(T)).unwrap();
            for (i, (what, _, expected)) in bad.iter().enumerate() {
                let err = conn.recv::<DpRequest>(Some(T)).unwrap_err();
                match (&err, expected) {
                    (TransportError::Frame(FrameError::Malformed(_)), FrameError::Malformed(_)) => {
                    }
                    (TransportError::Frame(got), want) => assert_eq!(got, want, "{what}"),
                    _ => panic!("{what}: expected a frame error, got {err}"),
                }
                let ok: Envelope<DpRequest> = conn.recv(Some(T)).unwrap();
                assert_eq!(ok.id, i as u64, "{what}");
                conn.send(&Envelope {
                    id: ok.id,
                    body: DpReply::Pong { version: ok.id },
                })
                .unwrap();
            }
            // The peer hanging up is seen as such.
            let err = conn.recv::<DpRequest>(Some(T)).unwrap_err();
            assert!(matches!(err, TransportError::Closed), "{err}");
        });

        let fd = raw_connect(&dir.sock());
        raw_send(&fd, &encode(&cp_hello()).unwrap());
        let reply: HelloReply = decode(&raw_recv(&fd)).unwrap();
        assert!(matches!(reply, HelloReply::Accepted { .. }), "{reply:?}");
        for (i, (_, bytes, _)) in bad.iter().enumerate() {
            raw_send(&fd, bytes);
            let ok = encode(&Envelope {
                id: i as u64,
                body: DpRequest::Apply(Box::new(snapshot())),
            })
            .unwrap();
            raw_send(&fd, &ok);
            let reply: Envelope<DpReply> = decode(&raw_recv(&fd)).unwrap();
            assert_eq!(
                reply,
                Envelope {
                    id: i as u64,
                    body: DpReply::Pong { version: i as u64 }
                }
            );
        }
        drop(fd);
        server.join().unwrap();
    });
}

/// The client side refuses bad frames from the listener the same way.
#[test]
fn client_refuses_bad_frames_too() {
    let dir = TempDir::new();
    let listener = Listener::bind(&dir.sock(), current_uid()).unwrap();
    thread::scope(|s| {
        s.spawn(|| {
            // A listener that answers the hello correctly and then misbehaves, built
            // from the transport's own accept plus a raw send on the same descriptor.
            let (conn, _) = listener.accept(&dp_hello(), Some(T)).unwrap();
            let fd = conn.as_raw_fd();
            for bytes in [vec![0u8; MAX_FRAME + 1], vec![0x05, 0x63]] {
                raw_send_fd(fd, &bytes);
            }
            conn.send(&Envelope {
                id: 3,
                body: DpReply::Pong { version: 3 },
            })
            .unwrap();
        });
        let (conn, _) = Conn::connect(&dir.sock(), &cp_hello(), T).unwrap();
        let err = conn.recv::<DpReply>(Some(T)).unwrap_err();
        assert!(
            matches!(
                err,
                TransportError::Frame(FrameError::Oversize {
                    len,
                    max: MAX_FRAME
                }) if len == MAX_FRAME + 1
            ),
            "{err}"
        );
        let err = conn.recv::<DpReply>(Some(T)).unwrap_err();
        assert!(
            matches!(err, TransportError::Frame(FrameError::Malformed(_))),
            "{err}"
        );
        let ok: Envelope<DpReply> = conn.recv(Some(T)).unwrap();
        assert_eq!(ok.body, DpReply::Pong { version: 3 });
        // The listener's thread ended and closed its side.
        let err = conn.recv::<DpReply>(Some(T)).unwrap_err();
        assert!(matches!(err, TransportError::Closed), "{err}");
    });
}

#[test]
fn peer_with_another_uid_is_refused() {
    let dir = TempDir::new();
    let me = current_uid();
    let allowed = me.wrapping_add(1);
    let listener = Listener::bind(&dir.sock(), allowed).unwrap();
    thread::scope(|s| {
        let server = s.spawn(|| listener.accept(&dp_hello(), Some(T)));
        let err = Conn::connect(&dir.sock(), &cp_hello(), T).unwrap_err();
        assert!(
            matches!(&err, TransportError::Refused(r) if r.contains(&format!("uid {me}"))),
            "{err}"
        );
        let err = server.join().unwrap().unwrap_err();
        assert!(
            matches!(err, TransportError::PeerUid { expected, got } if expected == allowed && got == me),
            "{err}"
        );
    });
}

#[test]
fn socket_is_0600_in_a_0700_directory_and_removed_on_drop() {
    let dir = TempDir::new();
    let sock = dir.sock();
    let listener = Listener::bind(&sock, current_uid()).unwrap();
    assert_eq!(listener.path(), sock);
    let run = std::fs::metadata(sock.parent().unwrap()).unwrap();
    assert!(run.is_dir());
    assert_eq!(run.permissions().mode() & 0o7777, 0o700);
    let meta = std::fs::symlink_metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    drop(listener);
    assert!(!sock.exists(), "socket file left behind");
}

#[test]
fn open_runtime_directory_is_refused() {
    for mode in [0o777, 0o750, 0o701] {
        let dir = TempDir::new();
        let sock = dir.sock();
        let run = sock.parent().unwrap();
        std::fs::create_dir(run).unwrap();
        std::fs::set_permissions(run, std::fs::Permissions::from_mode(mode)).unwrap();
        let err = Listener::bind(&sock, current_uid()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, TransportError::Insecure(_)), "{msg}");
        assert!(
            msg.contains(&run.display().to_string()) && msg.contains(&format!("{mode:04o}")),
            "{msg}"
        );
        assert!(!sock.exists());
    }
}

#[test]
fn existing_private_directory_is_used() {
    let dir = TempDir::new();
    let sock = dir.sock();
    let run = sock.parent().unwrap();
    std::fs::create_dir(run).unwrap();
    std::fs::set_permissions(run, std::fs::Permissions::from_mode(0o700)).unwrap();
    Listener::bind(&sock, current_uid()).unwrap();
}

#[test]
fn stale_socket_is_replaced_but_live_one_and_other_files_are_not() {
    let dir = TempDir::new();
    let sock = dir.sock();
    // A socket file nobody listens on any more.
    let first = Listener::bind(&sock, current_uid()).unwrap();
    let stale = std::os::unix::net::UnixListener::bind(dir.0.join("x.sock")).unwrap();
    drop(stale);
    drop(first);
    std::fs::rename(dir.0.join("x.sock"), &sock).unwrap();
    let live = Listener::bind(&sock, current_uid()).unwrap();

    // Someone is listening: refused, and the file stays.
    let err = Listener::bind(&sock, current_uid()).unwrap_err();
    assert!(err.to_string().contains("in use"), "{err}");
    assert!(sock.exists());
    drop(live);

    // Not a socket: refused, and the file stays.
    std::fs::write(&sock, b"precious").unwrap();
    let err = Listener::bind(&sock, current_uid()).unwrap_err();
    assert!(
        matches!(&err, TransportError::Insecure(m) if m.contains("not a socket")),
        "{err}"
    );
    assert_eq!(std::fs::read(&sock).unwrap(), b"precious");
}

#[test]
fn connecting_to_a_missing_socket_says_so() {
    let dir = TempDir::new();
    let sock = dir.0.join("nobody-here.sock");
    let err = Conn::connect(&sock, &cp_hello(), T).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, TransportError::Io { .. }), "{msg}");
    assert!(msg.contains(&sock.display().to_string()), "{msg}");
    assert!(msg.contains("No such file"), "{msg}");
}

// ---------------------------------------------------------------------------------------
// Raw peers

fn raw_connect(path: &Path) -> OwnedFd {
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    // Room for a datagram larger than MAX_FRAME.
    setsockopt(&fd, sockopt::SndBuf, &(4 * MAX_FRAME)).unwrap();
    setsockopt(
        &fd,
        sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(5, 0),
    )
    .unwrap();
    socket::connect(fd.as_raw_fd(), &UnixAddr::new(path).unwrap()).unwrap();
    fd
}

fn raw_send(fd: &OwnedFd, bytes: &[u8]) {
    raw_send_fd(fd.as_raw_fd(), bytes);
}

fn raw_send_fd(fd: std::os::fd::RawFd, bytes: &[u8]) {
    let n = socket::send(fd, bytes, MsgFlags::MSG_NOSIGNAL).unwrap();
    assert_eq!(n, bytes.len());
}

fn raw_recv(fd: &OwnedFd) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_FRAME + 1];
    let n = socket::recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()).unwrap();
    buf.truncate(n);
    buf
}
