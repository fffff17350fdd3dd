//! `weir-dp run` directed over its control socket, in-process: policy snapshots apply
//! atomically (and bad ones are refused with the old policy kept), stats reflect traffic,
//! rings resize under load without losing packets, and a control-plane disconnect changes
//! nothing on the dataplane.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_control::proto::{slice_runs, DpReply, DpRequest, DpStats, Hello, PolicySnapshot, Role};
use weir_control::transport::{current_uid, Conn, Listener};
use weir_dp::run::{self, RunOptions};
use weir_dp::rx::RxReport;
use weir_dp::state::DataplaneState;
use weir_model::config::Config;
use weir_model::config::{RingConfig, RingsConfig};
use weir_ssa::{Rule, ServicePrefixes, SliceMap};

fn dir(name: &str) -> weir_testkit::Scratch {
    weir_testkit::Scratch::new(&format!("live-{name}"))
}

fn config(sock: &std::path::Path) -> Config {
    let mix = concat!(env!("CARGO_MANIFEST_DIR"), "/../../pcap-fixtures/mix.pcap");
    Config::from_toml(
        "test",
        &format!(
            "[dataplane]\nworkers = 2\ncontrol_socket = {:?}\n[port]\nkind = \"pcap\"\npath = {mix:?}\nloop = true\npps = 200000\n",
            sock.display().to_string()
        ),
    )
    .unwrap()
}

fn snapshot(version: u64, rule: Rule, rings: RingsConfig) -> PolicySnapshot {
    let apl = "2:2001:db8:5::/64";
    let prefixes = ServicePrefixes::parse(apl).unwrap();
    let map = SliceMap::new(prefixes.prefixes(), 14, 2).unwrap();
    PolicySnapshot {
        version,
        apl: apl.into(),
        slice_bits: 14,
        rule,
        slices: slice_runs(map.table()),
        blocks: vec![],
        rings,
        new_flows_per_sec: 1000,
        source_prefix_len: 64,
        cluster: None,
        tee: Default::default(),
    }
}

struct Running {
    stop: Arc<AtomicBool>,
    run: Option<std::thread::JoinHandle<anyhow::Result<RxReport>>>,
    control: Option<std::thread::JoinHandle<()>>,
    shared: Arc<DataplaneState>,
}

impl Running {
    fn start(cfg: &Config) -> Running {
        let stop = Arc::new(AtomicBool::new(false));
        let shared = DataplaneState::for_run(cfg, Arc::clone(&stop)).unwrap();
        let sock = cfg.dataplane.control_socket.clone().unwrap();
        let listener = Listener::bind(&sock, current_uid()).unwrap();
        let control = weir_dp::control::spawn(listener, Arc::clone(&shared)).unwrap();
        let (c, s) = (cfg.clone(), Arc::clone(&shared));
        let run = std::thread::spawn(move || run::run(&c, &s, &RunOptions::default()));
        Running {
            stop,
            run: Some(run),
            control: Some(control),
            shared,
        }
    }

    fn stop(mut self) -> RxReport {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.control.take().unwrap().join();
        self.run.take().unwrap().join().unwrap().unwrap()
    }
}

fn connect(sock: &std::path::Path) -> Conn {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Conn::connect(
            sock,
            &Hello::new(Role::ControlPlane, "test"),
            Duration::from_secs(2),
        ) {
            Ok((c, _)) => return c,
            Err(e) if Instant::now() > deadline => panic!("cannot connect: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn stats(c: &Conn, id: u64) -> DpStats {
    match c
        .request::<_, DpReply>(id, DpRequest::Stats, Duration::from_secs(5))
        .unwrap()
    {
        DpReply::Stats(s) => *s,
        other => panic!("{other:?}"),
    }
}

/// Stats after the publishers have caught up with the current state.
fn settled(c: &Conn, id: u64) -> DpStats {
    std::thread::sleep(Duration::from_millis(350));
    stats(c, id)
}

/// The first stats with traffic, violations and latency histograms in them: a fixed wait
/// was once too short with a build running on the other core (10 s at most here).
fn flowing(c: &Conn, id: u64) -> DpStats {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = settled(c, id);
        let ready = s.packets > 0
            && s.reasons.get("ssa-violation").is_some_and(|&n| n > 0)
            && !s.latency.is_empty();
        if ready || Instant::now() > deadline {
            return s;
        }
    }
}

#[test]
fn snapshots_apply_atomically_and_bad_ones_are_refused() {
    let d = dir("apply");
    let sock = d.join("dp.sock");
    let cfg = config(&sock);
    let dp = Running::start(&cfg);
    let c = connect(&sock);

    let s1 = flowing(&c, 1);
    assert!(s1.packets > 0, "traffic flows: {s1:?}");
    assert!(s1.reasons["ssa-violation"] > 0, "the mix has violations");
    assert_eq!(s1.workers.len(), 2);
    assert!(!s1.latency.is_empty(), "latency histograms are published");
    {
        use hdrhistogram::serialization::Deserializer;
        let bytes = &s1.latency["known_good"];
        let h: hdrhistogram::Histogram<u64> =
            Deserializer::new().deserialize(&mut &bytes[..]).unwrap();
        assert!(
            !h.is_empty(),
            "known-good latency recorded ({} bytes)",
            bytes.len()
        );
    }

    // Rule `any`: no more ssa-violations from now on.
    let r = c
        .request::<_, DpReply>(
            2,
            DpRequest::Apply(Box::new(snapshot(7, Rule::Any, RingsConfig::default()))),
            Duration::from_secs(5),
        )
        .unwrap();
    assert_eq!(r, DpReply::Applied { version: 7 });
    let a = settled(&c, 3);
    assert_eq!(a.policy_version, 7);
    let b = settled(&c, 4);
    assert!(b.packets > a.packets);
    assert_eq!(
        b.reasons["ssa-violation"], a.reasons["ssa-violation"],
        "rule any admits every address"
    );

    // A snapshot whose slice runs do not cover the table is refused; version 7 stays.
    let mut bad = snapshot(8, Rule::Any, RingsConfig::default());
    bad.slices.pop();
    match c
        .request::<_, DpReply>(5, DpRequest::Apply(Box::new(bad)), Duration::from_secs(5))
        .unwrap()
    {
        DpReply::Error { message } => assert!(message.contains("slices"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        c.request::<_, DpReply>(6, DpRequest::Ping, Duration::from_secs(5))
            .unwrap(),
        DpReply::Pong { version: 7 }
    );

    // The control plane goes away; the dataplane keeps its policy and keeps counting, and
    // a new connection finds it so.
    drop(c);
    std::thread::sleep(Duration::from_millis(300));
    let c2 = connect(&sock);
    let after = settled(&c2, 1);
    assert_eq!(after.policy_version, 7);
    assert!(after.packets > b.packets);
    drop(c2);
    dp.stop();
}

#[test]
fn rings_resize_under_load_and_nothing_queued_is_lost() {
    let d = dir("rings");
    let sock = d.join("dp.sock");
    let cfg = config(&sock);
    let dp = Running::start(&cfg);
    let c = connect(&sock);
    let sizes = [(64, 2), (8, 1), (4096, 64), (2, 1), (512, 16)];
    for (i, &(size, weight)) in sizes.iter().enumerate() {
        let ring = RingConfig { size, weight };
        let rings = RingsConfig {
            known_good: ring,
            assumed_good: ring,
            suspect: ring,
        };
        let v = 10 + i as u64;
        let r = c
            .request::<_, DpReply>(
                v,
                DpRequest::Apply(Box::new(snapshot(v, Rule::default(), rings))),
                Duration::from_secs(5),
            )
            .unwrap();
        assert_eq!(r, DpReply::Applied { version: v });
        let s = settled(&c, 100 + v);
        assert!(
            s.rings.iter().all(|r| r.size == size),
            "rings now {size}: {:?}",
            s.rings
        );
    }
    drop(c);
    let shared = Arc::clone(&dp.shared);
    let rx = dp.stop();
    // Every packet queued was drained by a worker or counted as ring-full: none vanished.
    let queued: u64 = ["known_good", "assumed_good", "suspect"]
        .iter()
        .map(|&k| {
            rx.counters.class(
                weir_model::Class::QUEUED
                    .into_iter()
                    .find(|c| c.name() == k)
                    .unwrap(),
            )
        })
        .sum();
    let full: u64 = rx.ring_full.iter().sum();
    let drained: u64 = shared
        .workers
        .iter()
        .map(|w| {
            let w = w.lock().unwrap();
            w.stats.known_good + w.stats.assumed_good + w.stats.suspect
        })
        .sum();
    assert!(queued > 0);
    assert_eq!(
        drained + full,
        queued,
        "drained {drained} + ring-full {full} = queued {queued}"
    );
}

#[test]
fn a_bad_frame_is_refused_and_the_dataplane_keeps_running() {
    use weir_control::proto::{CtlRequest, Envelope};
    let d = dir("badframe");
    let sock = d.join("dp.sock");
    let dp = Running::start(&config(&sock));
    let c = connect(&sock);
    // A frame of the operator protocol is not a DpRequest: `Status` (variant 0) reads as
    // `Apply` with its snapshot missing — a truncated frame.
    c.send(&Envelope {
        id: 41,
        body: CtlRequest::Status,
    })
    .unwrap();
    match c.recv::<DpReply>(Some(Duration::from_secs(5))).unwrap() {
        Envelope {
            id: 0,
            body: DpReply::Error { message },
        } => assert!(message.contains("bad frame"), "{message}"),
        other => panic!("{other:?}"),
    }
    // The same connection and the dataplane carry on.
    let before = settled(&c, 42).packets;
    assert!(matches!(
        c.request::<_, DpReply>(43, DpRequest::Ping, Duration::from_secs(5))
            .unwrap(),
        DpReply::Pong { .. }
    ));
    assert!(settled(&c, 44).packets > before, "still forwarding");
    drop(c);
    dp.stop();
}
