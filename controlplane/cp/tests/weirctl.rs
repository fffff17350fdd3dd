//! End-to-end tests of the `weirctl` binary against a fake weir-cp.
//!
//! The fake is a real [`Listener`] on a socket in a private temp directory, run on a thread
//! of the test process: it records every request and answers with a scripted reply. Each
//! test runs the real binary (`CARGO_BIN_EXE_weirctl`) and checks the request that arrived
//! (argument parsing), stdout (tables and `--json`), stderr and the exit code.
//! `ssa pick` needs no daemon: its addresses are checked with `weir_ssa::Rule::check`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use weir_control::proto::{
    BlockSpec, CpStatus, CtlReply, CtlRequest, DpLink, DpStats, Envelope, Hello, RingStats, Role,
    SliceRun, SlowSource, SourceRate, UpstreamStats,
};
use weir_control::transport::{current_uid, Listener, TransportError};
use weir_model::config::{RingConfig, RingsConfig};
use weir_model::{Class, WorkerStats};
use weir_ssa::{ipv4_mapped, Prefix, Rule};

type Script = dyn Fn(&CtlRequest) -> CtlReply + Send + Sync;

/// A fake weir-cp: answers every request with `script(request)` and records the requests.
struct FakeCp {
    dir: PathBuf,
    socket: PathBuf,
    requests: Arc<Mutex<Vec<CtlRequest>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeCp {
    fn start(script: impl Fn(&CtlRequest) -> CtlReply + Send + Sync + 'static) -> FakeCp {
        static N: AtomicU64 = AtomicU64::new(0);
        // Short: unix socket paths are limited to 108 bytes.
        let dir = PathBuf::from(format!(
            "/tmp/wctl-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let socket = dir.join("cp.sock");
        let listener = Listener::bind(&socket, current_uid()).expect("bind the fake weir-cp");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let script: Arc<Script> = Arc::new(script);
        let thread = {
            let (requests, stop) = (requests.clone(), stop.clone());
            std::thread::spawn(move || serve(&listener, &*script, &requests, &stop))
        };
        FakeCp {
            dir,
            socket,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    /// A fake that answers everything with `reply`.
    fn replying(reply: CtlReply) -> FakeCp {
        FakeCp::start(move |_| reply.clone())
    }

    fn requests(&self) -> Vec<CtlRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// Run weirctl against this fake.
    fn run(&self, args: &[&str]) -> Output {
        weirctl(Some(&self.socket), args)
    }
}

impl Drop for FakeCp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn serve(
    listener: &Listener,
    script: &Script,
    requests: &Mutex<Vec<CtlRequest>>,
    stop: &AtomicBool,
) {
    let me = Hello::new(Role::ControlPlane, "fake-weir-cp");
    let tick = Some(Duration::from_millis(50));
    while !stop.load(Ordering::Relaxed) {
        let conn = match listener.accept(&me, tick) {
            Ok((conn, _)) => conn,
            Err(_) => continue,
        };
        while !stop.load(Ordering::Relaxed) {
            match conn.recv::<CtlRequest>(tick) {
                Ok(Envelope { id, body }) => {
                    let reply = script(&body);
                    requests.lock().unwrap().push(body);
                    let _ = conn.send(&Envelope { id, body: reply });
                }
                Err(TransportError::Timeout) => continue,
                Err(_) => break,
            }
        }
    }
}

fn weirctl(socket: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weirctl"));
    cmd.env_remove("WEIR_CP_SOCKET").args(["--timeout", "3"]);
    if let Some(s) = socket {
        cmd.arg("--socket").arg(s);
    }
    cmd.args(args).output().expect("run weirctl")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit 0; returns stdout.
fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

/// Exit 1 with exactly one `weirctl: …` line on stderr; returns that line.
fn fails(o: &Output) -> String {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "stdout: {}\nstderr: {err}",
        stdout(o)
    );
    assert_eq!(err.lines().count(), 1, "one line expected: {err:?}");
    assert!(err.starts_with("weirctl: "), "{err:?}");
    err.trim_end().to_string()
}

fn json(o: &Output) -> serde_json::Value {
    let out = ok(o);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn done(message: &str, version: u64) -> CtlReply {
    CtlReply::Done {
        message: message.into(),
        version,
    }
}

// ---------------------------------------------------------------------------------------

fn cp_status() -> CpStatus {
    CpStatus {
        version: 42,
        config: "/etc/weir/weir.toml".into(),
        uptime_s: 3723,
        dataplanes: vec![
            DpLink {
                name: "dp-east".into(),
                socket: "/run/weir/dp0.sock".into(),
                connected: true,
                applied_version: 42,
                reconnects: 0,
                last_error: None,
            },
            DpLink {
                name: "dp-west".into(),
                socket: "/run/weir/dp1.sock".into(),
                connected: false,
                applied_version: 40,
                reconnects: 7,
                last_error: Some("connection refused".into()),
            },
        ],
        decisions: [
            ("blocks-added".to_string(), 3),
            ("blocks-expired".to_string(), 1),
        ]
        .into(),
    }
}

#[test]
fn status_table_and_json() {
    let cp = FakeCp::replying(CtlReply::Status(cp_status()));
    let out = ok(&cp.run(&["status"]));
    for want in [
        "policy version 42",
        "1h02m03s",
        "/etc/weir/weir.toml",
        "dp-east",
        "dp-west",
        "40 (behind)",
        "connection refused",
        "blocks-added",
    ] {
        assert!(out.contains(want), "{want:?} missing:\n{out}");
    }
    let dp_west = out.lines().find(|l| l.contains("dp-west")).unwrap();
    assert!(
        dp_west.contains(" no ") && dp_west.contains(" 7 "),
        "{dp_west}"
    );

    let v = json(&cp.run(&["status", "--json"]));
    assert_eq!(v["version"], 42);
    assert_eq!(v["uptime_s"], 3723);
    assert_eq!(v["dataplanes"][1]["reconnects"], 7);
    assert_eq!(v["dataplanes"][1]["last_error"], "connection refused");
    assert_eq!(v["decisions"]["blocks-added"], 3);
    assert_eq!(cp.requests(), vec![CtlRequest::Status, CtlRequest::Status]);
}

fn histogram(values: &[u64]) -> Vec<u8> {
    use hdrhistogram::serialization::Serializer as _;
    let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    for &v in values {
        h.record(v).unwrap();
    }
    let mut buf = Vec::new();
    hdrhistogram::serialization::V2Serializer::new()
        .serialize(&h, &mut buf)
        .unwrap();
    buf
}

fn dp_stats(packets: u64, uptime_s: u64) -> DpStats {
    DpStats {
        policy_version: 42,
        uptime_ns: uptime_s * 1_000_000_000,
        packets,
        outbound: 5151,
        host: 17,
        classes: [
            ("known_good".to_string(), 7001),
            ("assumed_good".to_string(), 302),
            ("suspect".to_string(), 45),
            ("reject".to_string(), 66),
        ]
        .into(),
        reasons: [
            ("ssa-violation".to_string(), 61),
            ("martian".to_string(), 0),
            ("blocked".to_string(), 5),
        ]
        .into(),
        events: [("flow-table-full".to_string(), 9)].into(),
        slices: vec![(3, 10)],
        workers: vec![
            WorkerStats {
                worker: 0,
                known_good: 3500,
                assumed_good: 150,
                suspect: 20,
                bytes: 1_234_567,
                new_flows: 60,
                rounds: 0,
            },
            WorkerStats {
                worker: 1,
                known_good: 3501,
                assumed_good: 152,
                suspect: 25,
                bytes: 7_654_321,
                new_flows: 40,
                rounds: 0,
            },
        ],
        rings: vec![RingStats {
            rx: 0,
            worker: 1,
            class: Class::Suspect,
            size: 512,
            occupancy: 256,
            drops: 777,
        }],
        half_open: 12,
        established: 340,
        top_sources: vec![SourceRate {
            prefix: "2001:db8:bad::/64".into(),
            admitted: 1000,
            limited: 4321,
        }],
        latency: [(
            "known_good".to_string(),
            histogram(&[(0..1000).map(|_| 2_000).collect::<Vec<_>>(), vec![900_000]].concat()),
        )]
        .into(),
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
            latency: histogram(&[250_000, 250_000, 4_000_000]),
        }],
        tee: Default::default(),
    }
}

#[test]
fn stats_table_and_json() {
    let cp = FakeCp::replying(CtlReply::Stats(vec![
        ("dp-east".into(), dp_stats(123_456, 60)),
        ("dp-west".into(), DpStats::default()),
    ]));
    let out = ok(&cp.run(&["stats"]));
    for want in [
        "dataplane dp-east",
        "dataplane dp-west",
        "packets 123456",
        "outbound 5151",
        "host 17",
        "known_good",
        "7001",
        "ssa-violation",
        "flow-table-full",
        "7654321",
        "777",
        "50%",
        "established 340",
        "half-open 12",
        "2001:db8:bad::/64",
        "4321",
        "2.0µs",
    ] {
        assert!(out.contains(want), "{want:?} missing:\n{out}");
    }
    assert!(
        !out.contains("martian"),
        "zero reasons are left out:\n{out}"
    );
    let lat = out
        .lines()
        .find(|l| l.contains("known_good") && l.contains("µs"))
        .unwrap();
    assert!(
        lat.contains("1001") && lat.contains("900"),
        "p999/max show the outlier: {lat}"
    );

    let v = json(&cp.run(&["--json", "stats"]));
    let d = &v["dataplanes"][0];
    assert_eq!(d["name"], "dp-east");
    assert_eq!(d["stats"]["packets"], 123_456);
    assert_eq!(d["stats"]["reasons"]["ssa-violation"], 61);
    assert_eq!(d["stats"]["rings"][0]["drops"], 777);
    assert_eq!(d["latency_ns"]["known_good"]["count"], 1001);
    assert!(d["latency_ns"]["known_good"]["p50"].as_u64().unwrap() >= 2000);
    assert_eq!(v["dataplanes"][1]["name"], "dp-west");
}

#[test]
fn stats_watch_prints_samples_with_rates() {
    let n = Arc::new(AtomicU64::new(0));
    let cp = {
        let n = n.clone();
        FakeCp::start(move |_| {
            let i = n.fetch_add(1, Ordering::Relaxed);
            // 1000 packets more per sample, 1 s of dataplane uptime apart.
            CtlReply::Stats(vec![("dp0".into(), dp_stats(1000 + 1000 * i, 10 + i))])
        })
    };
    let out = ok(&cp.run(&["stats", "--watch", "0.1", "--count", "2"]));
    assert_eq!(out.matches("dataplane dp0").count(), 2, "{out}");
    assert!(
        out.contains("sample 1") && out.contains("sample 2"),
        "{out}"
    );
    assert!(
        !out.contains("\x1b[2J"),
        "no screen clearing when not a terminal"
    );
    assert!(out.contains("packets 1000  outbound"), "{out}");
    assert!(
        out.contains("packets 2000 (+1000/s)"),
        "rate after the first sample:\n{out}"
    );
    assert_eq!(cp.requests(), vec![CtlRequest::Stats; 2]);

    // --json: one object per line.
    let out = ok(&cp.run(&["stats", "--json", "--watch", "0.05", "--count", "3"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["dataplanes"][0]["name"], "dp0");
    }
}

#[test]
fn rings_show_and_set() {
    let rings = RingsConfig {
        known_good: RingConfig {
            size: 4096,
            weight: 64,
        },
        assumed_good: RingConfig {
            size: 2048,
            weight: 32,
        },
        suspect: RingConfig {
            size: 512,
            weight: 8,
        },
    };
    let cp = FakeCp::start(move |r| match r {
        CtlRequest::RingsShow => CtlReply::Rings(rings),
        _ => done("ring changed", 43),
    });
    let out = ok(&cp.run(&["rings", "show"]));
    let line = out.lines().find(|l| l.contains("assumed_good")).unwrap();
    assert!(line.contains("2048") && line.contains("32"), "{out}");
    let v = json(&cp.run(&["rings", "show", "--json"]));
    assert_eq!(v["suspect"]["size"], 512);
    assert_eq!(v["known_good"]["weight"], 64);

    let out = ok(&cp.run(&[
        "rings",
        "set",
        "known-good",
        "--size",
        "8192",
        "--weight",
        "100",
    ]));
    assert!(out.contains("ring changed") && out.contains("43"), "{out}");
    ok(&cp.run(&["rings", "set", "suspect", "--weight", "4"]));
    let v = json(&cp.run(&["rings", "set", "assumed_good", "--size", "1024", "--json"]));
    assert_eq!(v["version"], 43);
    assert_eq!(v["message"], "ring changed");
    assert_eq!(
        cp.requests()[2..],
        [
            CtlRequest::RingsSet {
                class: Class::KnownGood,
                size: Some(8192),
                weight: Some(100)
            },
            CtlRequest::RingsSet {
                class: Class::Suspect,
                size: None,
                weight: Some(4)
            },
            CtlRequest::RingsSet {
                class: Class::AssumedGood,
                size: Some(1024),
                weight: None
            },
        ]
    );
    // Refused before anything is sent.
    let before = cp.requests().len();
    assert!(fails(&cp.run(&["rings", "set", "reject", "--size", "8"])).contains("reject"));
    assert!(
        fails(&cp.run(&["rings", "set", "suspect", "--size", "1000"])).contains("power of two")
    );
    assert!(fails(&cp.run(&["rings", "set", "suspect"])).contains("--size"));
    assert_eq!(cp.requests().len(), before);
}

const KEY: &str = "000102030405060708090a0b0c0d0e0f";
const KEY_BYTES: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

#[test]
fn rules_set_sends_the_rule_from_flags() {
    let cp = FakeCp::replying(done("rule replaced", 50));
    let cases: Vec<(Vec<&str>, Rule)> = vec![
        (vec!["--rule", "any"], Rule::Any),
        (vec!["--rule", "content"], Rule::Content),
        (
            vec!["--rule", "src-bits"],
            Rule::SrcBits {
                src_start: 0,
                dst_start: 64,
                len: 64,
            },
        ),
        (
            vec![
                "--rule",
                "src-bits",
                "--src-start",
                "16",
                "--dst-start",
                "80",
                "--len",
                "32",
            ],
            Rule::SrcBits {
                src_start: 16,
                dst_start: 80,
                len: 32,
            },
        ),
        (
            vec![
                "--rule",
                "keyed-hash",
                "--key",
                KEY,
                "--src-prefix-len",
                "48",
            ],
            Rule::KeyedHash {
                key: KEY_BYTES,
                src_prefix_len: 48,
            },
        ),
        (
            vec![
                "--rule", "time-hop", "--key", KEY, "--period", "5m", "--skew", "2",
            ],
            Rule::TimeHop {
                key: KEY_BYTES,
                src_prefix_len: 64,
                period_s: 300,
                skew: 2,
            },
        ),
    ];
    for (flags, want) in &cases {
        let args: Vec<&str> = ["rules", "set"]
            .iter()
            .copied()
            .chain(flags.iter().copied())
            .collect();
        let out = ok(&cp.run(&args));
        assert!(out.contains("rule replaced") && out.contains("50"), "{out}");
        assert_eq!(
            cp.requests().last(),
            Some(&CtlRequest::RulesSet(*want)),
            "{flags:?}"
        );
    }
    let sent = cp.requests().len();
    for (flags, why) in [
        (&["--rule", "keyed-hash"][..], "--key"),
        (&["--rule", "keyed-hash", "--key", "abc"], "32 hex digits"),
        (&["--rule", "time-hop", "--key", KEY], "--period"),
        (&["--rule", "src-bits", "--key", KEY], "does not apply"),
        (&["--rule", "src-bits", "--dst-start", "100"], "src-bits"),
        (
            &["--rule", "time-hop", "--key", KEY, "--period", "0"],
            "at least 1 second",
        ),
        (&["--rule", "magic"], "possible values"),
    ] {
        let args: Vec<&str> = ["rules", "set"]
            .iter()
            .copied()
            .chain(flags.iter().copied())
            .collect();
        let line = fails(&cp.run(&args));
        assert!(line.contains(why), "{flags:?}: {line}");
    }
    assert_eq!(cp.requests().len(), sent, "bad flags send nothing");
}

#[test]
fn rules_show_hides_the_key() {
    let cp = FakeCp::replying(CtlReply::Rules {
        rule: Rule::TimeHop {
            key: KEY_BYTES,
            src_prefix_len: 56,
            period_s: 30,
            skew: 1,
        },
        new_flows_per_sec: 1000,
        source_prefix_len: 64,
        warning: None,
    });
    let out = ok(&cp.run(&["rules", "show"]));
    assert!(out.contains("time-hop") && out.contains("1000"), "{out}");
    assert!(!out.contains(KEY), "{out}");
    assert!(ok(&cp.run(&["rules", "show", "--show-key"])).contains(KEY));
    let v = json(&cp.run(&["rules", "show", "--json"]));
    assert_eq!(v["rule"], "time-hop");
    assert_eq!(v["period_s"], 30);
    assert_eq!(v["src_prefix_len"], 56);
    assert_eq!(v["new_flows_per_sec"], 1000);
    assert_eq!(v["key"], "<redacted>");
    assert_eq!(cp.requests(), vec![CtlRequest::RulesShow; 3]);
}

#[test]
fn slices_show_and_move() {
    let cp = FakeCp::start(|r| match r {
        CtlRequest::SlicesShow => CtlReply::Slices {
            apl: "2:2001:db8:5::/64".into(),
            slice_bits: 14,
            workers: 2,
            runs: vec![
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
            ],
            new_flows: vec![510, 490],
        },
        _ => done("slices moved", 44),
    });
    let out = ok(&cp.run(&["slices", "show"]));
    assert!(
        out.contains("16383") && out.contains("2001:db8:5:0:8000::/78"),
        "{out}"
    );
    assert!(out.contains("51.0%") && out.contains("49.0%"), "{out}");
    let v = json(&cp.run(&["slices", "show", "--json"]));
    assert_eq!(v["slice_bits"], 14);
    assert_eq!(v["new_flows"][0], 510);
    assert_eq!(v["new_flow_share"][1], 0.49);
    assert_eq!(v["runs"][1]["first"], 8192);
    assert_eq!(v["runs"][1]["worker"], 1);

    ok(&cp.run(&["slices", "move", "100..199", "1"]));
    ok(&cp.run(&["slices", "move", "7", "0"]));
    ok(&cp.run(&["slices", "move", "0..=3", "1"]));
    assert_eq!(
        cp.requests()[2..],
        [
            CtlRequest::SlicesMove {
                first: 100,
                last: 199,
                worker: 1
            },
            CtlRequest::SlicesMove {
                first: 7,
                last: 7,
                worker: 0
            },
            CtlRequest::SlicesMove {
                first: 0,
                last: 3,
                worker: 1
            },
        ]
    );
    assert!(fails(&cp.run(&["slices", "move", "9..3", "0"])).contains("9..3"));
    assert!(fails(&cp.run(&["slices", "move", "x..3", "0"])).contains("slice"));
    assert_eq!(cp.requests().len(), 5);
}

#[test]
fn block_add_del_list() {
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let cp = FakeCp::start(move |r| match r {
        CtlRequest::BlockList => CtlReply::Blocks(vec![
            BlockSpec {
                prefix: "2001:db8:bad::/48".into(),
                until_unix_ns: Some(now_ns + 600 * 1_000_000_000),
                reason: "operator".into(),
            },
            BlockSpec {
                prefix: "198.51.100.0/24".into(),
                until_unix_ns: None,
                reason: "policy: rate".into(),
            },
        ]),
        _ => done("ok", 45),
    });
    for (ttl, want) in [
        (Some("300s"), Some(300)),
        (Some("5m"), Some(300)),
        (Some("1h"), Some(3600)),
        (Some("90"), Some(90)),
        (Some("1h30m"), Some(5400)),
        (None, None),
    ] {
        let mut args = vec!["block", "add", "2001:db8:bad::/48"];
        if let Some(t) = ttl {
            args.extend(["--ttl", t]);
        }
        ok(&cp.run(&args));
        assert_eq!(
            cp.requests().last(),
            Some(&CtlRequest::BlockAdd {
                prefix: "2001:db8:bad::/48".into(),
                ttl_s: want
            }),
            "{ttl:?}"
        );
    }
    // Host bits are cleared; IPv4 is accepted.
    ok(&cp.run(&["block", "add", "2001:db8:bad::99/48"]));
    ok(&cp.run(&["block", "del", "198.51.100.7/24"]));
    assert_eq!(
        cp.requests()[6..],
        [
            CtlRequest::BlockAdd {
                prefix: "2001:db8:bad::/48".into(),
                ttl_s: None
            },
            CtlRequest::BlockDel {
                prefix: "198.51.100.0/24".into()
            },
        ]
    );

    let out = ok(&cp.run(&["block", "list"]));
    let bad = out
        .lines()
        .find(|l| l.contains("2001:db8:bad::/48"))
        .unwrap();
    assert!(bad.contains("in 10m00s") || bad.contains("in 9m5"), "{bad}");
    let v4 = out.lines().find(|l| l.contains("198.51.100.0/24")).unwrap();
    assert!(v4.contains("never") && v4.contains("policy: rate"), "{v4}");
    let v = json(&cp.run(&["block", "list", "--json"]));
    assert_eq!(v[1]["prefix"], "198.51.100.0/24");
    assert_eq!(v[1]["until_unix_ns"], serde_json::Value::Null);
    assert_eq!(v[0]["reason"], "operator");

    let sent = cp.requests().len();
    assert!(fails(&cp.run(&["block", "add", "2001:db8::/129"])).contains("2001:db8::/129"));
    assert!(
        fails(&cp.run(&["block", "add", "2001:db8::/48", "--ttl", "5 parsecs"]))
            .contains("5 parsecs")
    );
    assert!(fails(&cp.run(&["block", "add", "2001:db8::/48", "--ttl", "0"])).contains("at least"));
    assert!(fails(&cp.run(&["block", "del", "bad-prefix"])).contains("bad-prefix"));
    assert_eq!(cp.requests().len(), sent);
}

#[test]
fn tee_start_stop_status() {
    let cp = FakeCp::start(|r| match r {
        CtlRequest::TeeStatus => CtlReply::Tee {
            order: weir_control::proto::TeeOrder::Start(weir_control::proto::TeeSpec {
                filters: vec!["reject:ssa-violation".into()],
                sample: 100,
                rate_per_core: None,
                snaplen: None,
                until_unix_ns: None,
                serial: 4,
            }),
            dataplanes: vec![(
                "dp0".into(),
                weir_control::proto::TeeStatus {
                    active: true,
                    filter: "reject:ssa-violation".into(),
                    sample: 100,
                    teed: 12,
                    dropped: 3,
                    written: 12,
                    files: 1,
                    file: Some("/var/lib/weir/tee/tee-00001.pcapng".into()),
                    ..Default::default()
                },
            )],
        },
        _ => done("tee started", 9),
    });
    ok(&cp.run(&[
        "tee",
        "start",
        "--filter",
        "reject:ssa-violation",
        "--filter",
        "suspect:*",
        "--sample",
        "100",
        "--duration",
        "30s",
    ]));
    assert_eq!(
        cp.requests().last(),
        Some(&CtlRequest::TeeStart {
            filters: vec!["reject:ssa-violation".into(), "suspect:*".into()],
            sample: 100,
            rate_per_core: None,
            snaplen: None,
            duration_ms: Some(30_000),
        })
    );
    ok(&cp.run(&["tee", "stop"]));
    assert_eq!(cp.requests().last(), Some(&CtlRequest::TeeStop));
    let out = ok(&cp.run(&["tee", "status"]));
    assert!(out.contains("reject:ssa-violation at 1 in 100"), "{out}");
    let line = out.lines().find(|l| l.contains("dp0")).unwrap();
    assert!(
        line.contains("on") && line.contains("tee-00001.pcapng"),
        "{line}"
    );
    let v = json(&cp.run(&["--json", "tee", "status"]));
    assert_eq!(v["dataplanes"][0][1]["dropped"], 3);

    // Bad values: one line, exit 1, nothing sent.
    let sent = cp.requests().len();
    assert!(fails(&cp.run(&["tee", "start", "--filter", "reject:bogus"])).contains("reject:bogus"));
    assert!(fails(&cp.run(&["tee", "start", "--filter", "reject:rate"])).contains("suspect reason"));
    assert!(fails(&cp.run(&["tee", "start", "--filter", "*", "--sample", "0"])).contains("sample"));
    assert!(
        fails(&cp.run(&["tee", "start", "--filter", "*", "--snaplen", "10"])).contains("snaplen")
    );
    assert!(
        fails(&cp.run(&["tee", "start", "--filter", "*", "--duration", "soon"])).contains("soon")
    );
    assert_eq!(cp.requests().len(), sent);
}

#[test]
fn config_reload_done_and_refused() {
    let cp = FakeCp::replying(done("config reloaded from /etc/weir/weir.toml", 46));
    let out = ok(&cp.run(&["config", "reload"]));
    assert_eq!(
        out,
        "config reloaded from /etc/weir/weir.toml (policy version 46)\n"
    );
    assert_eq!(cp.requests(), vec![CtlRequest::ConfigReload]);

    let why = "/etc/weir/weir.toml:3:1: unknown field `bogus`";
    let cp = FakeCp::replying(CtlReply::Error {
        message: why.into(),
    });
    let o = cp.run(&["config", "reload"]);
    let line = fails(&o);
    assert!(line.contains(why), "{line}");
    assert!(stdout(&o).is_empty());
}

#[test]
fn error_replies_exit_1_with_one_line() {
    let cp = FakeCp::replying(CtlReply::Error {
        message: "no such block: 2001:db8::/48".into(),
    });
    for args in [
        &["block", "del", "2001:db8::/48"][..],
        &["status"],
        &["stats", "--json"],
        &["rings", "show"],
        &["slices", "move", "1..2", "0"],
    ] {
        let o = cp.run(args);
        let line = fails(&o);
        assert!(
            line.contains("refused by weir-cp: no such block"),
            "{args:?}: {line}"
        );
        assert!(stdout(&o).is_empty(), "{args:?}");
    }
    // A reply of the wrong kind is an error too.
    let cp = FakeCp::replying(done("?", 1));
    assert!(fails(&cp.run(&["status"])).contains("answered Done to Status"));
}

#[test]
fn unreachable_socket_names_the_path() {
    let path = format!("/tmp/wctl-{}-missing/cp.sock", std::process::id());
    let line = fails(&weirctl(Some(Path::new(&path)), &["status"]));
    assert!(
        line.contains(&format!("cannot reach weir-cp at {path}")),
        "{line}"
    );

    // The environment variable is used when --socket is not given.
    let o = Command::new(env!("CARGO_BIN_EXE_weirctl"))
        .env("WEIR_CP_SOCKET", &path)
        .args(["--timeout", "1", "block", "list"])
        .output()
        .unwrap();
    assert!(fails(&o).contains(&path));

    // And the env var reaches a real listener.
    let cp = FakeCp::replying(CtlReply::Blocks(vec![]));
    let o = Command::new(env!("CARGO_BIN_EXE_weirctl"))
        .env("WEIR_CP_SOCKET", &cp.socket)
        .args(["block", "list"])
        .output()
        .unwrap();
    assert!(ok(&o).contains("no blocked prefixes"));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["frobnicate"][..],
        &["status", "--frobnicate"],
        &["rings"],
        &["stats", "--count", "2"],
        &["ssa", "pick", "--rule", "any"],
    ] {
        let o = weirctl(None, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
    let o = weirctl(None, &["--help"]);
    let help = ok(&o);
    assert!(
        help.contains("Exit codes") && help.contains("WEIR_CP_SOCKET"),
        "{help}"
    );
}

// ---------------------------------------------------------------------------------------
// ssa pick

const APL: &str = "2:2001:db8:5::/64 2:2001:db8:6::/48";

fn parse_addr(text: &str) -> u128 {
    match text
        .trim()
        .parse::<IpAddr>()
        .unwrap_or_else(|e| panic!("{text:?}: {e}"))
    {
        IpAddr::V6(a) => u128::from(a),
        IpAddr::V4(a) => ipv4_mapped(u32::from(a)),
    }
}

#[test]
fn ssa_pick_every_rule_passes_check() {
    let now = 1_700_000_000u64;
    let now_s = now.to_string();
    let rules: Vec<(Vec<&str>, Rule)> = vec![
        (vec!["--rule", "any"], Rule::Any),
        (
            vec!["--rule", "src-bits"],
            Rule::src_bits(0, 64, 64).unwrap(),
        ),
        (vec!["--rule", "src-mix"], Rule::default()),
        (
            vec!["--rule", "src-mix", "--src-prefix-len", "40"],
            Rule::src_mix(40).unwrap(),
        ),
        (
            vec![
                "--rule",
                "src-bits",
                "--src-start",
                "32",
                "--dst-start",
                "70",
                "--len",
                "40",
            ],
            Rule::src_bits(32, 70, 40).unwrap(),
        ),
        (
            vec![
                "--rule",
                "keyed-hash",
                "--key",
                KEY,
                "--src-prefix-len",
                "48",
            ],
            Rule::keyed_hash(KEY_BYTES, 48).unwrap(),
        ),
        (
            vec![
                "--rule", "time-hop", "--key", KEY, "--period", "30", "--skew", "1", "--now",
                &now_s,
            ],
            Rule::time_hop(KEY_BYTES, 64, 30, 1).unwrap(),
        ),
        (
            vec!["--rule", "content", "--object", "photos/cat.jpg"],
            Rule::Content,
        ),
    ];
    for src in ["2001:db8:aaaa:bbbb::1", "2a00:1450:4001:82b::200e"] {
        for (flags, rule) in &rules {
            for (index, prefix) in [(0, "2001:db8:5::/64"), (1, "2001:db8:6::/48")] {
                let idx = index.to_string();
                let mut args = vec![
                    "ssa",
                    "pick",
                    "--apl",
                    APL,
                    "--src",
                    src,
                    "--prefix-index",
                    &idx,
                ];
                args.extend(flags.iter().copied());
                let out = ok(&weirctl(None, &args));
                assert_eq!(out.lines().count(), 1, "{out}");
                let dst = parse_addr(&out);
                let p: Prefix = prefix.parse().unwrap();
                assert!(p.contains(dst), "{flags:?} {out} not in {prefix}");
                assert!(
                    rule.check(parse_addr(src), dst, now),
                    "{flags:?} src {src}: {out} fails check"
                );
            }
        }
    }

    // JSON, and a fixed entropy is reproducible.
    let args = [
        "ssa",
        "pick",
        "--json",
        "--apl",
        APL,
        "--rule",
        "any",
        "--src",
        "2001:db8::1",
        "--entropy",
        "7",
    ];
    let a = json(&weirctl(None, &args));
    let b = json(&weirctl(None, &args));
    assert_eq!(a, b);
    assert_eq!(a["prefix"], "2001:db8:5::/64");
    assert_eq!(a["rule"], "any");
    assert_eq!(a["entropy"], 7);
    let p: Prefix = "2001:db8:5::/64".parse().unwrap();
    assert!(p.contains(parse_addr(a["destination"].as_str().unwrap())));

    // The key is never printed.
    let v = json(&weirctl(
        None,
        &[
            "ssa",
            "pick",
            "--json",
            "--apl",
            APL,
            "--rule",
            "keyed-hash",
            "--key",
            KEY,
            "--src",
            "2001:db8::1",
        ],
    ));
    assert!(!v.to_string().contains(KEY), "{v}");

    // IPv4 source and IPv4 prefix.
    let out = ok(&weirctl(
        None,
        &[
            "ssa",
            "pick",
            "--apl",
            "1:192.0.2.0/24",
            "--rule",
            "src-bits",
            "--src-start",
            "120",
            "--dst-start",
            "120",
            "--len",
            "8",
            "--src",
            "198.51.100.77",
        ],
    ));
    assert_eq!(out.trim(), "192.0.2.77");
}

#[test]
fn ssa_pick_errors_cleanly() {
    let pick = |extra: &[&str]| {
        let mut args = vec!["ssa", "pick", "--src", "2001:db8::1"];
        args.extend_from_slice(extra);
        weirctl(None, &args)
    };
    for (extra, why) in [
        (&["--apl", "2:2001:db8::/200", "--rule", "any"][..], "--apl"),
        (&["--apl", "nonsense", "--rule", "any"], "--apl"),
        (
            &["--apl", "!2:2001:db8::/64", "--rule", "any"],
            "no positive",
        ),
        (
            &["--apl", APL, "--rule", "keyed-hash", "--key", "xyz"],
            "32 hex digits",
        ),
        (&["--apl", APL, "--rule", "keyed-hash"], "--key"),
        (
            &[
                "--apl",
                "2:2001:db8::/80",
                "--rule",
                "keyed-hash",
                "--key",
                KEY,
            ],
            "/64 or shorter",
        ),
        (&["--apl", APL, "--rule", "content"], "object key"),
        (
            &["--apl", APL, "--rule", "any", "--object", "x"],
            "--object",
        ),
        (
            &["--apl", APL, "--rule", "any", "--prefix-index", "2"],
            "2 positive prefixes",
        ),
        (
            &[
                "--apl",
                "2:2001:db8::/64",
                "--rule",
                "src-bits",
                "--src-start",
                "16",
                "--dst-start",
                "0",
                "--len",
                "16",
            ],
            "src-bits",
        ),
    ] {
        let line = fails(&pick(extra));
        assert!(line.contains(why), "{extra:?}: {line}");
    }
    let line = fails(&weirctl(
        None,
        &[
            "ssa",
            "pick",
            "--apl",
            APL,
            "--rule",
            "any",
            "--src",
            "not-an-address",
        ],
    ));
    assert!(line.contains("not-an-address"), "{line}");
}
