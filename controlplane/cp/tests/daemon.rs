//! weir-cp end to end, against a fake dataplane speaking the real protocol over the real
//! transport: config errors, persistence across restarts (clean and SIGKILL), pushes and
//! re-pushes, validation, config reload, the policy loop, and the Prometheus scrape checked
//! by two independent parsers (`promtool check metrics` and the `prometheus-parse` crate).
//!
//! The fake dataplane records every snapshot it is given and answers `Stats` from a
//! template; it can report one source prefix as rate-limited until it sees it blocked.
//! Everything lives in `/tmp/weir-test-PID-N/` (mode 0700, short paths: unix socket paths
//! are limited to 107 bytes), removed at the end.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::serialization::Serializer as _;
use weir_control::proto::{
    CtlReply, CtlRequest, DpReply, DpRequest, DpStats, Envelope, Hello, PolicySnapshot, RingStats,
    Role, SourceRate,
};
use weir_control::transport::{current_uid, Conn, Listener, TransportError};
use weir_cp::daemon::Daemon;
use weir_model::{Class, WorkerStats};
use weir_ssa::Rule;

// ---------------------------------------------------------------------------------------
// Fixtures

struct TestDir(PathBuf);

impl TestDir {
    fn new() -> TestDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = PathBuf::from(format!("/tmp/weir-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
        TestDir(p)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    /// A config with one dataplane `dp1`, small slices, fast polls, metrics on port 0.
    fn config(&self, extra: &str) -> PathBuf {
        let d = self.0.display();
        let text = format!(
            r#"[service]
apl = "2:2001:db8:5::/64"
slice_bits = 4

[dataplane]
workers = 2

[control]
socket = "{d}/cp.sock"
state_file = "{d}/state.json"
prometheus = "127.0.0.1:0"
poll_ms = 50
dataplanes = [{{ name = "dp1", socket = "{d}/dp1.sock" }}]
{extra}"#
        );
        let p = self.path("weir.toml");
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn init_log() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
}

fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

const WAIT: Duration = Duration::from_secs(10);

/// A dataplane that records snapshots and answers stats from a template.
struct FakeDp {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    applied: Arc<Mutex<Vec<PolicySnapshot>>>,
    stats: Arc<Mutex<DpStats>>,
    /// Report this prefix as rate-limited until a snapshot blocks it (then stop).
    limit: Arc<Mutex<Option<String>>>,
    stats_served: Arc<AtomicUsize>,
    /// Report this version in force instead of the last one applied.
    in_force: Arc<Mutex<Option<u64>>>,
}

impl FakeDp {
    fn start(path: &Path) -> FakeDp {
        let listener = Listener::bind(path, current_uid()).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let applied = Arc::new(Mutex::new(Vec::new()));
        let stats = Arc::new(Mutex::new(DpStats::default()));
        let limit = Arc::new(Mutex::new(None::<String>));
        let stats_served = Arc::new(AtomicUsize::new(0));
        let in_force = Arc::new(Mutex::new(None::<u64>));
        let f = in_force.clone();
        let (s, a, st, l, n) = (
            stop.clone(),
            applied.clone(),
            stats.clone(),
            limit.clone(),
            stats_served.clone(),
        );
        let thread = std::thread::spawn(move || {
            let me = Hello::new(Role::Dataplane, "fake-dp");
            while !s.load(Ordering::Relaxed) {
                let conn = match listener.accept(&me, Some(Duration::from_millis(50))) {
                    Ok((c, _)) => c,
                    Err(_) => continue,
                };
                while !s.load(Ordering::Relaxed) {
                    let env = match conn.recv::<DpRequest>(Some(Duration::from_millis(50))) {
                        Ok(e) => e,
                        Err(TransportError::Timeout) => continue,
                        Err(_) => break,
                    };
                    let reply = match env.body {
                        DpRequest::Apply(snap) => {
                            let version = snap.version;
                            let mut lim = l.lock().unwrap();
                            if lim
                                .as_ref()
                                .is_some_and(|p| snap.blocks.iter().any(|b| &b.prefix == p))
                            {
                                *lim = None;
                            }
                            a.lock().unwrap().push(*snap);
                            DpReply::Applied { version }
                        }
                        DpRequest::Stats => {
                            n.fetch_add(1, Ordering::Relaxed);
                            let mut out = st.lock().unwrap().clone();
                            out.policy_version = f.lock().unwrap().unwrap_or_else(|| {
                                a.lock().unwrap().last().map_or(0, |s| s.version)
                            });
                            if let Some(p) = l.lock().unwrap().as_ref() {
                                out.top_sources.push(SourceRate {
                                    prefix: p.clone(),
                                    admitted: 5,
                                    limited: 10,
                                });
                            }
                            DpReply::Stats(Box::new(out))
                        }
                        DpRequest::Ping => DpReply::Pong { version: 0 },
                    };
                    if conn
                        .send(&Envelope {
                            id: env.id,
                            body: reply,
                        })
                        .is_err()
                    {
                        break;
                    }
                }
            }
            drop(listener);
        });
        FakeDp {
            stop,
            thread: Some(thread),
            applied,
            stats,
            limit,
            stats_served,
            in_force,
        }
    }

    fn snapshots(&self) -> Vec<PolicySnapshot> {
        self.applied.lock().unwrap().clone()
    }

    fn last(&self) -> Option<PolicySnapshot> {
        self.applied.lock().unwrap().last().cloned()
    }

    /// Wait for a snapshot satisfying `pred` (the latest one).
    fn wait_for(&self, what: &str, pred: impl Fn(&PolicySnapshot) -> bool) -> PolicySnapshot {
        wait_until(what, WAIT, || self.last().filter(|s| pred(s)))
    }
}

impl Drop for FakeDp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn ctl(socket: &Path, req: CtlRequest) -> CtlReply {
    let (conn, _) = Conn::connect(socket, &Hello::new(Role::Cli, "test"), WAIT).unwrap();
    conn.request::<CtlRequest, CtlReply>(1, req, WAIT).unwrap()
}

fn done_version(reply: CtlReply) -> u64 {
    match reply {
        CtlReply::Done { version, .. } => version,
        other => panic!("expected Done, got {other:?}"),
    }
}

fn error_message(reply: CtlReply) -> String {
    match reply {
        CtlReply::Error { message } => message,
        other => panic!("expected Error, got {other:?}"),
    }
}

fn status_version(socket: &Path) -> u64 {
    match ctl(socket, CtlRequest::Status) {
        CtlReply::Status(s) => s.version,
        other => panic!("{other:?}"),
    }
}

fn block_add(prefix: &str, ttl_s: Option<u64>) -> CtlRequest {
    CtlRequest::BlockAdd {
        prefix: prefix.into(),
        ttl_s,
    }
}

// ---------------------------------------------------------------------------------------
// Config

#[test]
fn config_errors_name_file_line_and_column() {
    init_log();
    let dir = TestDir::new();
    let cfg = dir.config("bogus = 1\n");
    let e = Daemon::start(&cfg).unwrap_err().to_string();
    let want = format!("{}:14:1: ", cfg.display());
    assert!(e.starts_with(&want), "{e}");
    assert!(e.contains("bogus"), "{e}");

    let cfg = dir.config("[rings]\nsuspect = { size = 1000, weight = 1 }\n");
    let e = Daemon::start(&cfg).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}:15:", cfg.display())), "{e}");
    assert!(e.contains("power of two"), "{e}");

    // Checked by the daemon itself, located by it in the file.
    let text = std::fs::read_to_string(dir.config(""))
        .unwrap()
        .replace("127.0.0.1:0", "localhost-ish");
    std::fs::write(&cfg, text).unwrap();
    let e = Daemon::start(&cfg).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}:11:14: ", cfg.display())), "{e}");
    assert!(!e.contains('\n'), "{e}");

    // The binary: exit 2, one line naming the place.
    let out = Command::new(env!("CARGO_BIN_EXE_weir-cp"))
        .arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("weir-cp: {}:11:14: ", cfg.display())),
        "{stderr}"
    );
    assert!(!dir.path("cp.sock").exists());
}

// ---------------------------------------------------------------------------------------
// State and persistence

#[test]
fn state_is_persisted_atomically_and_versions_keep_increasing() {
    init_log();
    let dir = TestDir::new();
    let cfg = dir.config("");
    let cp = Daemon::start(&cfg).unwrap();
    let sock = dir.path("cp.sock");
    let v0 = status_version(&sock);
    assert_eq!(v0, 1);
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let v1 = done_version(ctl(&sock, block_add("2001:db8:bad::/48", None)));
    let v2 = done_version(ctl(
        &sock,
        CtlRequest::RingsSet {
            class: Class::Suspect,
            size: Some(1024),
            weight: Some(3),
        },
    ));
    let v3 = done_version(ctl(
        &sock,
        CtlRequest::SlicesMove {
            first: 0,
            last: 3,
            worker: 1,
        },
    ));
    assert!(v0 < v1 && v1 < v2 && v2 < v3, "{v0} {v1} {v2} {v3}");

    // On disk before the acknowledgement, whole, 0600, and no temp file left over.
    let text = std::fs::read_to_string(dir.path("state.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["version"], v3);
    assert!(text.contains("2001:db8:bad::/48"));
    let mode = std::fs::metadata(dir.path("state.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let stray: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");

    cp.stop();
    assert!(!sock.exists(), "socket removed at stop");

    let cp = Daemon::start(&cfg).unwrap();
    let v4 = status_version(&sock);
    assert!(v4 > v3, "version continues after a restart: {v4} <= {v3}");
    match ctl(&sock, CtlRequest::BlockList) {
        CtlReply::Blocks(b) => assert!(b.iter().any(|b| b.prefix == "2001:db8:bad::/48"), "{b:?}"),
        other => panic!("{other:?}"),
    }
    match ctl(&sock, CtlRequest::RingsShow) {
        CtlReply::Rings(r) => assert_eq!((r.suspect.size, r.suspect.weight), (1024, 3)),
        other => panic!("{other:?}"),
    }
    match ctl(&sock, CtlRequest::SlicesShow) {
        CtlReply::Slices { runs, .. } => assert_eq!(runs[0].last, 3, "{runs:?}"),
        other => panic!("{other:?}"),
    }
    cp.stop();

    // A corrupt state file is refused with its name, on one line.
    std::fs::write(dir.path("state.json"), "{ half a file").unwrap();
    let e = Daemon::start(&cfg).unwrap_err().to_string();
    assert!(e.contains("state.json") && !e.contains('\n'), "{e}");
}

#[test]
fn invalid_changes_leave_the_state_unchanged() {
    init_log();
    let dir = TestDir::new();
    let cfg = dir.config("[[block]]\nprefix = \"2001:db8:bad::/48\"\n");
    let _cp = Daemon::start(&cfg).unwrap();
    let sock = dir.path("cp.sock");
    let before_version = status_version(&sock);
    let before_file = std::fs::read(dir.path("state.json")).unwrap();
    let rings = |class: &str, size, weight| CtlRequest::RingsSet {
        class: class.parse().unwrap(),
        size,
        weight,
    };
    let bad = [
        (rings("reject", Some(8), None), "reject has no ring"),
        (rings("suspect", Some(1000), None), "power of two"),
        (rings("suspect", Some(1 << 21), None), "power of two"),
        (rings("suspect", None, Some(0)), "weight"),
        (rings("suspect", None, Some(70000)), "weight"),
        (rings("suspect", None, None), "nothing to change"),
        (
            CtlRequest::RulesSet(Rule::SrcBits {
                src_start: 0,
                dst_start: 100,
                len: 64,
            }),
            "",
        ),
        (
            CtlRequest::RulesSet(Rule::TimeHop {
                key: [1; 16],
                src_prefix_len: 64,
                period_s: 30,
                skew: 1000,
            }),
            "skew",
        ),
        (
            CtlRequest::RulesSet(Rule::TimeHop {
                key: [1; 16],
                src_prefix_len: 64,
                period_s: 0,
                skew: 0,
            }),
            "period",
        ),
        (
            CtlRequest::SlicesMove {
                first: 0,
                last: 16,
                worker: 1,
            },
            "",
        ),
        (
            CtlRequest::SlicesMove {
                first: 5,
                last: 2,
                worker: 1,
            },
            "",
        ),
        (
            CtlRequest::SlicesMove {
                first: 0,
                last: 1,
                worker: 2,
            },
            "worker",
        ),
        (block_add("not-a-prefix", None), "bad prefix"),
        (block_add("2001:db8::/200", None), ""),
        (block_add("2001:db8::/48", Some(0)), "ttl"),
        (
            CtlRequest::BlockDel {
                prefix: "2001:db8:1::/48".into(),
            },
            "not blocked",
        ),
    ];
    for (req, want) in bad {
        let shown = format!("{req:?}");
        let msg = error_message(ctl(&sock, req));
        assert!(msg.contains(want), "{shown}: {msg}");
        assert!(!msg.is_empty());
    }
    assert_eq!(status_version(&sock), before_version);
    assert_eq!(std::fs::read(dir.path("state.json")).unwrap(), before_file);
    match ctl(&sock, CtlRequest::BlockList) {
        CtlReply::Blocks(b) => assert_eq!(b.len(), 1, "{b:?}"),
        other => panic!("{other:?}"),
    }
    // And a config block can be removed at run time.
    done_version(ctl(
        &sock,
        CtlRequest::BlockDel {
            prefix: "2001:db8:bad::/48".into(),
        },
    ));
    match ctl(&sock, CtlRequest::BlockList) {
        CtlReply::Blocks(b) => assert!(b.is_empty(), "{b:?}"),
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Links

#[test]
fn changes_are_pushed_to_the_dataplane() {
    init_log();
    let dir = TestDir::new();
    let dp = FakeDp::start(&dir.path("dp1.sock"));
    let cfg = dir.config("");
    let _cp = Daemon::start(&cfg).unwrap();
    let sock = dir.path("cp.sock");
    let first = dp.wait_for("the first push", |_| true);
    assert_eq!(first.version, 1);
    assert_eq!(first.apl, "2:2001:db8:5::/64");
    assert_eq!(first.slices.first().unwrap().first, 0);
    assert_eq!(first.slices.last().unwrap().last, 15);

    let v = done_version(ctl(
        &sock,
        CtlRequest::RingsSet {
            class: Class::KnownGood,
            size: Some(8192),
            weight: None,
        },
    ));
    let s = dp.wait_for("the ring change", |s| s.version == v);
    assert_eq!(s.rings.known_good.size, 8192);

    let v = done_version(ctl(
        &sock,
        CtlRequest::RulesSet(Rule::SrcBits {
            src_start: 0,
            dst_start: 64,
            len: 48,
        }),
    ));
    let s = dp.wait_for("the rule change", |s| s.version == v);
    assert!(matches!(s.rule, Rule::SrcBits { len: 48, .. }));

    let v = done_version(ctl(
        &sock,
        CtlRequest::SlicesMove {
            first: 0,
            last: 0,
            worker: 1,
        },
    ));
    let s = dp.wait_for("the slice move", |s| s.version == v);
    assert_eq!(
        (s.slices[0].first, s.slices[0].last, s.slices[0].worker),
        (0, 0, 1)
    );

    let v = done_version(ctl(&sock, block_add("2001:db8:bad::/48", Some(600))));
    let s = dp.wait_for("the block", |s| s.version == v);
    assert_eq!(s.blocks.len(), 1);
    assert!(s.blocks[0].until_unix_ns.is_some());

    // Versions only increase on the wire, and the link reports what was applied.
    let versions: Vec<u64> = dp.snapshots().iter().map(|s| s.version).collect();
    assert!(versions.windows(2).all(|w| w[0] <= w[1]), "{versions:?}");
    wait_until("status to show the applied version", WAIT, || {
        let CtlReply::Status(st) = ctl(&sock, CtlRequest::Status) else {
            return None;
        };
        (st.dataplanes[0].connected && st.dataplanes[0].applied_version == v).then_some(())
    });
    match ctl(&sock, CtlRequest::Stats) {
        CtlReply::Stats(s) => assert_eq!(s[0].0, "dp1"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_restarted_dataplane_is_pushed_again() {
    init_log();
    let dir = TestDir::new();
    let dp = FakeDp::start(&dir.path("dp1.sock"));
    let _cp = Daemon::start(&dir.config("")).unwrap();
    let sock = dir.path("cp.sock");
    let v = done_version(ctl(&sock, block_add("2001:db8:bad::/48", None)));
    dp.wait_for("the block", |s| s.version == v);
    drop(dp);
    wait_until("the link to go down", WAIT, || {
        let CtlReply::Status(st) = ctl(&sock, CtlRequest::Status) else {
            return None;
        };
        (!st.dataplanes[0].connected && st.dataplanes[0].last_error.is_some()).then_some(())
    });
    // A change while the dataplane is away is not lost.
    let v2 = done_version(ctl(
        &sock,
        CtlRequest::RingsSet {
            class: Class::Suspect,
            size: None,
            weight: Some(2),
        },
    ));
    let dp = FakeDp::start(&dir.path("dp1.sock"));
    let s = dp.wait_for("the re-push", |s| s.version == v2);
    assert!(s.blocks.iter().any(|b| b.prefix == "2001:db8:bad::/48"));
    assert_eq!(s.rings.suspect.weight, 2);
    let CtlReply::Status(st) = ctl(&sock, CtlRequest::Status) else {
        panic!()
    };
    assert!(st.dataplanes[0].reconnects >= 1, "{st:?}");
}

#[test]
fn a_dataplane_running_another_version_is_pushed_again() {
    init_log();
    let dir = TestDir::new();
    let dp = FakeDp::start(&dir.path("dp1.sock"));
    let _cp = Daemon::start(&dir.config("")).unwrap();
    dp.wait_for("the first push", |_| true);
    // Stats say the dataplane went back to its own config (version 0).
    *dp.in_force.lock().unwrap() = Some(0);
    wait_until("a second push of the same version", WAIT, || {
        (dp.snapshots().len() >= 2).then_some(())
    });
    *dp.in_force.lock().unwrap() = None;
    let versions: Vec<u64> = dp.snapshots().iter().map(|s| s.version).collect();
    assert!(versions.iter().all(|&v| v == 1), "{versions:?}");
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_cp(cfg: &Path) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_weir-cp"))
            .arg("--config")
            .arg(cfg)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

#[test]
fn weir_cp_killed_and_restarted_resyncs_the_dataplane() {
    init_log();
    let dir = TestDir::new();
    let dp = FakeDp::start(&dir.path("dp1.sock"));
    let cfg = dir.config("");
    let sock = dir.path("cp.sock");
    let mut cp = spawn_cp(&cfg);
    wait_until("the operator socket", WAIT, || sock.exists().then_some(()));
    let v = done_version(ctl(&sock, block_add("2001:db8:bad::/48", None)));
    dp.wait_for("the block", |s| s.version == v);

    // SIGKILL: no clean-up at all. The dataplane keeps what it had.
    cp.0.kill().unwrap();
    cp.0.wait().unwrap();
    let pushes = dp.snapshots().len();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(dp.snapshots().len(), pushes);
    assert_eq!(dp.last().unwrap().version, v);

    // Back: the stale socket is replaced and the persisted state pushed with a newer version.
    let mut cp = spawn_cp(&cfg);
    let s = dp.wait_for("the re-sync", |s| s.version > v);
    assert!(
        s.blocks.iter().any(|b| b.prefix == "2001:db8:bad::/48"),
        "{s:?}"
    );
    assert!(status_version(&sock) > v);

    // SIGTERM: clean exit, socket removed.
    let pid = cp.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = wait_until("weir-cp to exit", WAIT, || cp.0.try_wait().unwrap());
    assert!(status.success(), "{status:?}");
    assert!(!sock.exists());
}

// ---------------------------------------------------------------------------------------
// Config reload

#[test]
fn config_reload_refuses_an_invalid_file_and_applies_a_valid_one() {
    init_log();
    let dir = TestDir::new();
    let dp = FakeDp::start(&dir.path("dp1.sock"));
    let cfg = dir.config("");
    let _cp = Daemon::start(&cfg).unwrap();
    let sock = dir.path("cp.sock");
    dp.wait_for("the first push", |_| true);
    let v0 = status_version(&sock);

    dir.config("[rings]\nsuspect = { size = 256, weight = 8, colour = 1 }\n");
    let msg = error_message(ctl(&sock, CtlRequest::ConfigReload));
    assert!(msg.starts_with(&format!("{}:15:", cfg.display())), "{msg}");
    assert_eq!(status_version(&sock), v0);
    match ctl(&sock, CtlRequest::RingsShow) {
        CtlReply::Rings(r) => assert_eq!(r.suspect.size, 512),
        other => panic!("{other:?}"),
    }

    std::fs::write(&cfg, "[service]\napl = \"2:2001:db8:5::/64\"\n[service]\n").unwrap();
    let msg = error_message(ctl(&sock, CtlRequest::ConfigReload));
    assert!(msg.contains(":3:"), "{msg}");
    assert_eq!(status_version(&sock), v0);

    dir.config("[rings]\nsuspect = { size = 256, weight = 8 }\n\n[[block]]\nprefix = \"2001:db8:bad::/48\"\n");
    let v = done_version(ctl(&sock, CtlRequest::ConfigReload));
    assert!(v > v0);
    let s = dp.wait_for("the reloaded config", |s| s.version == v);
    assert_eq!(s.rings.suspect.size, 256);
    assert_eq!(s.blocks.len(), 1);
}

// ---------------------------------------------------------------------------------------
// Policy loop

#[test]
fn policy_loop_blocks_a_limited_prefix_and_the_block_expires() {
    init_log();
    let dir = TestDir::new();
    let dp = FakeDp::start(&dir.path("dp1.sock"));
    *dp.limit.lock().unwrap() = Some("2001:db8:66::/64".into());
    let cfg = dir.config(
        "\n[policy]\nenabled = true\nblock_after_s = 1\nblock_ttl_s = 2\nmin_limited_per_poll = 3\n",
    );
    let _cp = Daemon::start(&cfg).unwrap();
    let sock = dir.path("cp.sock");
    wait_until("the first stats poll", WAIT, || {
        (dp.stats_served.load(Ordering::Relaxed) > 0).then_some(())
    });
    let first_poll = Instant::now();
    let blocked = dp.wait_for("the policy block", |s| {
        s.blocks.iter().any(|b| b.prefix == "2001:db8:66::/64")
    });
    let after = first_poll.elapsed();
    assert!(
        after >= Duration::from_millis(800),
        "blocked too early: {after:?}"
    );
    let b = blocked
        .blocks
        .iter()
        .find(|b| b.prefix == "2001:db8:66::/64")
        .unwrap();
    assert_eq!(b.reason, "policy: over new-flow limit for 1s");
    assert!(b.until_unix_ns.is_some());

    let expired = dp.wait_for("the block to expire", |s| {
        s.version > blocked.version && s.blocks.is_empty()
    });
    assert!(expired.version > blocked.version);
    let CtlReply::Status(st) = ctl(&sock, CtlRequest::Status) else {
        panic!()
    };
    assert_eq!(st.decisions.get("block-added"), Some(&1), "{st:?}");
    assert_eq!(st.decisions.get("block-expired"), Some(&1), "{st:?}");
}

#[test]
fn policy_loop_ignores_prefixes_below_the_threshold_and_when_disabled() {
    init_log();
    let dir = TestDir::new();
    let dp = FakeDp::start(&dir.path("dp1.sock"));
    *dp.limit.lock().unwrap() = Some("2001:db8:66::/64".into());
    // The fake reports 10 limited per poll: below 11, and the loop is off in the second run.
    let cfg =
        dir.config("\n[policy]\nenabled = true\nblock_after_s = 0\nmin_limited_per_poll = 11\n");
    let cp = Daemon::start(&cfg).unwrap();
    wait_until("several polls", WAIT, || {
        (dp.stats_served.load(Ordering::Relaxed) > 5).then_some(())
    });
    assert!(dp.snapshots().iter().all(|s| s.blocks.is_empty()));
    cp.stop();
    dir.config("\n[policy]\nenabled = false\nblock_after_s = 0\n");
    let n = dp.stats_served.load(Ordering::Relaxed);
    let _cp = Daemon::start(&cfg).unwrap();
    wait_until("several polls", WAIT, || {
        (dp.stats_served.load(Ordering::Relaxed) > n + 5).then_some(())
    });
    assert!(dp.snapshots().iter().all(|s| s.blocks.is_empty()));
}

// ---------------------------------------------------------------------------------------
// Metrics

fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

fn latency_histogram(values: &[u64]) -> Vec<u8> {
    let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    for &v in values {
        h.record(v).unwrap();
    }
    let mut out = Vec::new();
    hdrhistogram::serialization::V2Serializer::new()
        .serialize(&h, &mut out)
        .unwrap();
    out
}

#[test]
fn prometheus_scrape_parses_and_has_the_labelled_series() {
    init_log();
    let dir = TestDir::new();
    let dp = FakeDp::start(&dir.path("dp1.sock"));
    *dp.stats.lock().unwrap() = DpStats {
        packets: 1000,
        classes: BTreeMap::from([("known_good".into(), 700), ("suspect".into(), 300)]),
        reasons: BTreeMap::from([("rate".into(), 250), ("no-flow".into(), 50)]),
        events: BTreeMap::from([("flow-table-full".into(), 3), ("tee-dropped".into(), 5)]),
        tee: weir_control::proto::TeeStatus {
            active: true,
            dropped: 5,
            ..Default::default()
        },
        slices: vec![(0, 10), (7, 20)],
        workers: vec![WorkerStats {
            worker: 1,
            known_good: 5,
            assumed_good: 6,
            suspect: 7,
            bytes: 800,
            new_flows: 3,
            rounds: 0,
        }],
        rings: vec![RingStats {
            rx: 0,
            worker: 1,
            class: Class::Suspect,
            size: 512,
            occupancy: 17,
            drops: 4,
        }],
        half_open: 9,
        established: 42,
        latency: BTreeMap::from([(
            "known_good".into(),
            latency_histogram(&[1_000, 2_000, 3_000, 1_000_000]),
        )]),
        ..DpStats::default()
    };
    let cfg = dir.config("");
    let cp = Daemon::start(&cfg).unwrap();
    let sock = dir.path("cp.sock");
    wait_until("stats to arrive", WAIT, || {
        match ctl(&sock, CtlRequest::Stats) {
            CtlReply::Stats(s) if !s.is_empty() => Some(()),
            _ => None,
        }
    });
    let addr = cp.metrics_addr().unwrap();
    assert!(addr.ip().is_loopback());

    let (head, body) = http_get(addr, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    let (head404, _) = http_get(addr, "/other");
    assert!(head404.starts_with("HTTP/1.1 404"), "{head404}");

    // 1. promtool, the reference parser and linter.
    match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(mut child) => {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(body.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "promtool check metrics failed:\n{}{}\n--- scrape ---\n{body}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "promtool is required in CI (Debian package `prometheus`): {e}"
            );
            eprintln!("promtool not installed ({e}); skipping that parser");
        }
    }

    // 2. prometheus-parse, and the series themselves.
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    let sample_lines = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    let quantile_lines = body.lines().filter(|l| l.contains("quantile=")).count();
    assert_eq!(quantile_lines, 4, "{body}");
    // Every line parsed: the four quantile lines fold into one summary sample.
    assert_eq!(
        scrape.samples.len(),
        sample_lines - quantile_lines + 1,
        "{body}"
    );
    let value = |metric: &str, labels: &[(&str, &str)]| -> f64 {
        let s = scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("no {metric} {labels:?} in\n{body}"));
        match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            other => panic!("{metric}: {other:?}"),
        }
    };
    let dp1 = ("dataplane", "dp1");
    assert_eq!(value("weir_packets_total", &[dp1]), 1000.0);
    assert_eq!(
        value("weir_class_packets_total", &[dp1, ("class", "suspect")]),
        300.0
    );
    assert_eq!(
        value("weir_reason_packets_total", &[dp1, ("reason", "rate")]),
        250.0
    );
    assert_eq!(
        value("weir_events_total", &[dp1, ("event", "flow-table-full")]),
        3.0
    );
    assert_eq!(
        value("weir_events_total", &[dp1, ("event", "tee-dropped")]),
        5.0
    );
    assert_eq!(value("weir_tee_active", &[dp1]), 1.0);
    assert_eq!(
        value("weir_slice_packets_total", &[dp1, ("slice", "7")]),
        20.0
    );
    assert_eq!(
        value(
            "weir_worker_packets_total",
            &[dp1, ("worker", "1"), ("class", "assumed_good")]
        ),
        6.0
    );
    let ring = [dp1, ("rx", "0"), ("worker", "1"), ("class", "suspect")];
    assert_eq!(value("weir_ring_occupancy", &ring), 17.0);
    assert_eq!(value("weir_ring_size", &ring), 512.0);
    assert_eq!(value("weir_ring_drops_total", &ring), 4.0);
    assert_eq!(value("weir_flows", &[dp1, ("state", "established")]), 42.0);
    assert_eq!(value("weir_dataplane_up", &[dp1]), 1.0);
    assert_eq!(value("weir_policy_version", &[dp1]), 1.0);
    assert_eq!(value("weir_policy_version_desired", &[]), 1.0);
    assert_eq!(
        value("weir_decisions_total", &[("decision", "block-added")]),
        0.0
    );
    assert_eq!(
        value(
            "weir_latency_seconds_count",
            &[dp1, ("class", "known_good")]
        ),
        4.0
    );
    let summary = scrape
        .samples
        .iter()
        .find(|s| s.metric == "weir_latency_seconds")
        .unwrap();
    let prometheus_parse::Value::Summary(qs) = &summary.value else {
        panic!("{summary:?}")
    };
    let q = |want: f64| qs.iter().find(|q| q.quantile == want).unwrap().count;
    assert!((q(0.5) - 2e-6).abs() < 1e-8, "{qs:?}");
    assert!((q(0.999) - 1e-3).abs() < 1e-5, "{qs:?}");
    assert!(scrape.docs.contains_key("weir_latency_seconds"));
}
