//! weir on DPDK 22.11 (`cargo test -p weir-dp --features dpdk --test dpdk`).
//!
//! EAL starts once per process, with `dpdk::test_eal_args()` (`--no-huge --no-pci`, a
//! per-process file prefix); every test attaches vdevs of its own names. Tests that launch
//! lcores take `LCORES` so two runs never ask for the same lcore.
//!
//! - Every bundled fixture replayed through `net_pcap` gives the software replay's
//!   report, count for count (classes, reasons, events, flows, per worker), and every
//!   mbuf is back in its pool afterwards.
//! - `weir-dp run` on DPDK lcores over `net_pcap` with two rx queues (two rx lcores)
//!   classifies what the software replay does, and its mempool is full again after
//!   shutdown.
//! - The tee on a port of two `net_pcap` devices writes one pcapng interface per device,
//!   and tshark finds each file's frames under its own device's interface.
//! - `weir-dp replay --dpdk` leaves no hugepage file and no runtime file behind.
//! - A Linux process (`tcpreplay`) sends a capture into the TAP device that DPDK's
//!   `net_tap` creates, and weir classifies it (root; CI sets `WEIR_REQUIRE_ROOT_TESTS=1`
//!   so a missing privilege or tool fails instead of skipping).
#![cfg(feature = "dpdk")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir_dp::dpdk;
use weir_dp::port::dpdk as dpdk_port;
use weir_dp::replay::{replay, ReplayOptions, Report};
use weir_dp::run::{self, RunOptions};
use weir_dp::rx::RxReport;
use weir_dp::state::DataplaneState;
use weir_model::config::{Config, DpdkPortConfig, PortConfig};
use weir_model::{Class, Reason};

static LCORES: Mutex<()> = Mutex::new(());

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pcap-fixtures")
}

fn fixtures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixture_dir())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    v.sort();
    v
}

fn config_for(pcap: &Path) -> Config {
    let toml = pcap.with_extension("toml");
    if toml.exists() {
        Config::load(&toml).unwrap_or_else(|e| panic!("{e}"))
    } else {
        Config::default()
    }
}

/// The parts of a report that must not depend on the port (all but the timings).
fn counts(r: &Report) -> serde_json::Value {
    let mut v = serde_json::to_value(r).unwrap();
    let o = v.as_object_mut().unwrap();
    for k in ["elapsed_s", "mpps", "ns_per_packet"] {
        o.remove(k);
    }
    // Drain rounds depend on thread timing; every packet count must not.
    for w in o["workers"].as_array_mut().unwrap() {
        w.as_object_mut().unwrap().remove("rounds");
    }
    v
}

#[test]
fn every_fixture_replays_identically_through_net_pcap() {
    let eal = dpdk::test_eal_args();
    let opts = ReplayOptions::default();
    let mut checked = 0;
    for pcap in fixtures() {
        let cfg = config_for(&pcap);
        let files = vec![pcap.clone()];
        let soft = replay(&cfg, &files, &opts).unwrap();
        let hard = dpdk_port::replay(&cfg, &files, &opts, &eal)
            .unwrap_or_else(|e| panic!("{}: {e:#}", pcap.display()));
        assert!(soft.packets > 0);
        assert_eq!(
            counts(&soft),
            counts(&hard),
            "{}: software and DPDK replays differ",
            pcap.display()
        );
        checked += 1;
    }
    assert!(checked >= 15, "all fixtures checked ({checked})");
}

#[test]
fn several_files_replay_as_one_capture_through_net_pcap() {
    let eal = dpdk::test_eal_args();
    let files: Vec<PathBuf> = ["mix.pcap", "ssa-violation.pcap", "syn-flood.pcap"]
        .iter()
        .map(|f| fixture_dir().join(f))
        .collect();
    let cfg = Config::default();
    let out = tempdir("out");
    let opts = ReplayOptions {
        out_dir: Some(out.to_path_buf()),
        ..ReplayOptions::default()
    };
    let soft = replay(&cfg, &files, &ReplayOptions::default()).unwrap();
    let hard = dpdk_port::replay(&cfg, &files, &opts, &eal).unwrap();
    assert_eq!(counts(&soft), counts(&hard));
    assert_eq!(hard.files.len(), 3);
    // The tee works on the DPDK path too: one frame per suspect verdict.
    let suspect = weir_dp::capture::Capture::open(&out.join("suspect.pcap"))
        .unwrap()
        .for_each(|_| {})
        .unwrap();
    assert_eq!(suspect, hard.classes["suspect"]);
}

fn tempdir(tag: &str) -> weir_testkit::Scratch {
    weir_testkit::Scratch::new(&format!("dpdk-{tag}"))
}

/// A DPDK port of `devices` on the test EAL, small rings and pool.
fn test_port(devices: Vec<String>, rx_queues: u16) -> PortConfig {
    PortConfig::Dpdk(DpdkPortConfig {
        eal: dpdk::test_eal_args(),
        devices,
        rx_queues,
        rx_desc: 256,
        tx_desc: 256,
        mbufs: 8191,
        mbuf_cache: 32,
    })
}

/// `weir-dp run` with a DPDK port built from `devices`, for `secs`, on the test EAL.
fn run_dpdk(
    devices: Vec<String>,
    rx_queues: u16,
    workers: u16,
    secs: f64,
) -> anyhow::Result<RxReport> {
    run_dpdk_with(devices, rx_queues, workers, secs, |_| {})
}

fn run_dpdk_with(
    devices: Vec<String>,
    rx_queues: u16,
    workers: u16,
    secs: f64,
    edit: impl FnOnce(&mut Config),
) -> anyhow::Result<RxReport> {
    let _lcores = LCORES.lock().unwrap_or_else(|e| e.into_inner());
    let mut cfg = Config::default();
    cfg.dataplane.workers = workers;
    cfg.port = Some(test_port(devices, rx_queues));
    edit(&mut cfg);
    let stop = Arc::new(AtomicBool::new(false));
    let shared = DataplaneState::for_run(&cfg, stop).unwrap();
    let opts = RunOptions {
        duration: Some(Duration::from_secs_f64(secs)),
    };
    run::run(&cfg, &shared, &opts)
}

#[test]
fn run_on_two_rx_lcores_classifies_and_leaks_nothing() {
    // net_pcap with two rx queues: one file per queue, read once each.
    let a = fixture_dir().join("mix.pcap");
    let b = fixture_dir().join("ssa-violation.pcap");
    let name = format!("net_pcap_run{}", std::process::id());
    let dev = format!("{name},rx_pcap={},rx_pcap={}", a.display(), b.display());
    let report = run_dpdk(vec![dev], 2, 1, 3.0).unwrap();
    let soft_b = replay(&Config::default(), &[b], &ReplayOptions::default()).unwrap();
    let c = &report.counters;
    // Both queues were polled: the ssa-violation file's violations are all there (the
    // live clock differs from capture time, so only time-independent counts compare).
    assert_eq!(
        c.reason(Reason::SsaViolation),
        soft_b.reasons["ssa-violation"]
            + replay(&Config::default(), &[a], &ReplayOptions::default())
                .unwrap()
                .reasons["ssa-violation"]
    );
    assert!(c.class(Class::AssumedGood) > 0);
    // Rings of both rx cores were reported.
    assert!(report.rings.iter().any(|r| r.rx == 0) && report.rings.iter().any(|r| r.rx == 1));
    let (capacity, available) = report.mempool.expect("DPDK runs report their mempool");
    assert_eq!(available, capacity, "every mbuf is back in the pool");
}

#[test]
fn too_many_lcores_wanted_is_a_clear_error() {
    let name = format!("net_null_lc{}", std::process::id());
    let e = run_dpdk(vec![name], 1, 8, 0.5).unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("worker lcore") && msg.contains("need 9"),
        "{msg}"
    );
}

/// Files a DPDK process with file prefix `prefix` left behind: hugepage files and the
/// runtime directory's contents (under /var/run/dpdk as root, else XDG_RUNTIME_DIR or
/// /tmp).
fn dpdk_leftovers(prefix: &str) -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("/var/run/dpdk"), PathBuf::from("/tmp/dpdk")];
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR") {
        dirs.push(PathBuf::from(x).join("dpdk"));
    }
    let mut left: Vec<PathBuf> = dirs
        .iter()
        .filter_map(|d| std::fs::read_dir(d.join(prefix)).ok())
        .flat_map(|r| r.filter_map(|e| e.ok().map(|e| e.path())))
        .collect();
    if let Ok(r) = std::fs::read_dir("/dev/hugepages") {
        left.extend(r.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        }));
    }
    left
}

#[test]
fn replay_on_dpdk_leaves_no_hugepages_or_runtime_files_behind() {
    // `weir-dp replay --dpdk` with its default EAL: hugepages when some are free (then
    // `--in-memory`), else `--no-huge` (then `--no-shconf`). Before, each run left its
    // hugepages allocated, or ~13 MB of files in /var/run/dpdk.
    let fixture = fixture_dir().join("mix.pcap");
    let child = Command::new(env!("CARGO_BIN_EXE_weir-dp"))
        .args(["replay", "--dpdk", "--json"])
        .arg(&fixture)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("weir-dp starts");
    let prefix = format!("weir-replay-{}", child.id());
    let out = child.wait_with_output().expect("weir-dp ends");
    assert!(
        out.status.success(),
        "replay --dpdk failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert!(report["packets"].as_u64().unwrap_or(0) > 0, "{report}");
    let left = dpdk_leftovers(&prefix);
    // DPDK leaves the (empty) runtime directory itself: removed here.
    for d in ["/var/run/dpdk", "/tmp/dpdk"] {
        let _ = std::fs::remove_dir(Path::new(d).join(&prefix));
    }
    assert!(left.is_empty(), "{prefix} left {left:?}");
}

fn can_run_as_root(tools: &[&str]) -> bool {
    weir_testkit::ready("dpdk net_tap", true, tools, &[])
}

#[test]
fn a_linux_process_sends_into_net_tap_and_weir_classifies() {
    if !can_run_as_root(&["tcpreplay", "ip"]) {
        return;
    }
    let iface = format!("weirt{}", std::process::id() % 10000);
    let dev = format!("net_tap_t{},iface={iface}", std::process::id());
    let pcap = fixture_dir().join("ssa-violation.pcap");
    let expected = replay(
        &Config::default(),
        std::slice::from_ref(&pcap),
        &ReplayOptions::default(),
    )
    .unwrap();
    let sender = {
        let iface = iface.clone();
        std::thread::spawn(move || {
            // Wait for DPDK to create the interface, keep the kernel's own IPv6 chatter
            // (router solicitations, MLD) off it, bring it up, send the capture.
            let t0 = Instant::now();
            while !Path::new(&format!("/sys/class/net/{iface}")).exists() {
                assert!(
                    t0.elapsed() < Duration::from_secs(10),
                    "{iface} never appeared"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{iface}/disable_ipv6"), "1");
            let up = Command::new("ip")
                .args(["link", "set", &iface, "up"])
                .status()
                .unwrap();
            assert!(up.success());
            std::thread::sleep(Duration::from_millis(300));
            let out = Command::new("tcpreplay")
                .args(["-q", "--topspeed", "-i", &iface])
                .arg(&pcap)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "tcpreplay: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        })
    };
    let report = run_dpdk(vec![dev], 1, 1, 6.0).unwrap();
    sender.join().unwrap();
    let c = &report.counters;
    assert_eq!(
        c.reason(Reason::SsaViolation),
        expected.reasons["ssa-violation"],
        "every non-conforming frame sent through the TAP was rejected as such"
    );
    assert!(c.packets() >= expected.packets);
    let (capacity, available) = report.mempool.unwrap();
    assert_eq!(available, capacity);
}

#[test]
fn curl_is_answered_by_the_terminators_through_net_tap() {
    if !can_run_as_root(&["curl", "ip"]) {
        return;
    }
    let iface = format!("wdt{}", std::process::id() % 100_000);
    let dev = format!("net_tap_c{},iface={iface}", std::process::id());
    let client = {
        let iface = iface.clone();
        std::thread::spawn(move || {
            let t0 = Instant::now();
            while !Path::new(&format!("/sys/class/net/{iface}")).exists() {
                assert!(
                    t0.elapsed() < Duration::from_secs(10),
                    "{iface} never appeared"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            let sh = |c: &str| {
                let st = Command::new("sh").args(["-c", c]).status().unwrap();
                assert!(st.success(), "{c}");
            };
            sh(&format!("ip link set {iface} up"));
            sh(&format!(
                "ip -6 addr add 2001:db8:fe::1/64 dev {iface} nodad"
            ));
            // The service prefix on-link here (the DPDK port's MAC, hence weir's link-local
            // address, is the driver's choice): the kernel asks NDP for the service
            // address itself, which weir answers. The route needs the link up, which
            // net_tap brings only once the port starts.
            let route = format!("ip -6 route replace 2001:db8:5::/64 dev {iface}");
            let t0 = Instant::now();
            while !Command::new("sh")
                .args(["-c", &format!("{route} 2>/dev/null")])
                .status()
                .unwrap()
                .success()
            {
                assert!(t0.elapsed() < Duration::from_secs(10), "{route}");
                std::thread::sleep(Duration::from_millis(50));
            }
            std::thread::sleep(Duration::from_millis(300));
            // The default rule (src-mix) picks the client's destination.
            let dst = weir_ssa::Rule::default()
                .pick(
                    &"2001:db8:5::/64".parse().unwrap(),
                    u128::from("2001:db8:fe::1".parse::<std::net::Ipv6Addr>().unwrap()),
                    &weir_ssa::PickContext::default(),
                )
                .unwrap();
            let url = format!("http://[{}]/", std::net::Ipv6Addr::from(dst));
            Command::new("curl")
                .args(["-6", "-sS", "--max-time", "5", &url])
                .output()
                .unwrap()
        })
    };
    let report = run_dpdk_with(vec![dev], 1, 1, 8.0, |cfg| {
        cfg.terminator.enabled = true;
    })
    .unwrap();
    let out = client.join().unwrap();
    assert!(
        out.status.success(),
        "curl through DPDK net_tap: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from weir\n");
    assert!(report.tx.host_answered >= 1, "weir answered the host's NS");
    assert!(report.tx.sent >= 2, "SYN-ACK and the response went out");
    assert!(report.counters.class(Class::KnownGood) >= 1);
    let (capacity, available) = report.mempool.unwrap();
    assert_eq!(available, capacity, "no mbuf leaked on the tx side either");
}

/// The live tee on DPDK rx lcores (net_tap): `[tee]` copies every ssa-violation a Linux
/// process sends; the pcapng read by tshark holds exactly that many frames minus
/// `tee-dropped`, each with its reason in the comment, none malformed.
#[test]
fn the_tee_copies_every_ssa_violation_from_net_tap() {
    if !can_run_as_root(&["tcpreplay", "ip", "tshark"]) {
        return;
    }
    let iface = format!("weire{}", std::process::id() % 10000);
    let dev = format!("net_tap_e{},iface={iface}", std::process::id());
    let pcap = fixture_dir().join("ssa-violation.pcap");
    let expected = replay(
        &Config::default(),
        std::slice::from_ref(&pcap),
        &ReplayOptions::default(),
    )
    .unwrap();
    let violations = expected.reasons["ssa-violation"];
    assert!(violations > 0);
    let dir = tempdir("tee");
    let tee_dir = dir.join("tee");
    let sender = {
        let iface = iface.clone();
        let pcap = pcap.clone();
        std::thread::spawn(move || {
            let t0 = Instant::now();
            while !Path::new(&format!("/sys/class/net/{iface}")).exists() {
                assert!(
                    t0.elapsed() < Duration::from_secs(10),
                    "{iface} never appeared"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{iface}/disable_ipv6"), "1");
            let up = Command::new("ip")
                .args(["link", "set", &iface, "up"])
                .status()
                .unwrap();
            assert!(up.success());
            std::thread::sleep(Duration::from_millis(300));
            let out = Command::new("tcpreplay")
                .args(["-q", "--pps=2000", "-i", &iface])
                .arg(&pcap)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "tcpreplay: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        })
    };
    let _lcores = LCORES.lock().unwrap_or_else(|e| e.into_inner());
    let text = format!(
        "[dataplane]\nworkers = 1\n[tee]\nenabled = true\ndir = {:?}\nfilters = [\"reject:ssa-violation\"]\nsample = 1\nrate_per_core = 0\n",
        tee_dir.display().to_string()
    );
    let mut cfg = Config::from_toml("dpdk-tee", &text).unwrap();
    cfg.port = Some(test_port(vec![dev], 1));
    let shared = DataplaneState::for_run(&cfg, Arc::new(AtomicBool::new(false))).unwrap();
    let opts = RunOptions {
        duration: Some(Duration::from_secs(6)),
    };
    let report = run::run(&cfg, &shared, &opts).unwrap();
    sender.join().unwrap();
    assert_eq!(report.counters.reason(Reason::SsaViolation), violations);
    let st = shared.tee.status();
    assert!(!st.active);
    assert_eq!(st.teed + st.dropped, violations, "{st:?}");
    assert_eq!(st.written, st.teed, "{st:?}");
    let file = tee_dir.join("tee-00001.pcapng");
    let tshark = |args: &[&str]| {
        let o = Command::new("tshark")
            .args(["-n", "-r"])
            .arg(&file)
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let comments = tshark(&["-T", "fields", "-e", "frame.comment"]);
    assert_eq!(comments.lines().count() as u64, violations - st.dropped);
    for c in comments.lines() {
        assert!(c.contains("class=reject reason=ssa-violation"), "{c}");
    }
    let malformed = tshark(&["-Y", "_ws.malformed", "-T", "fields", "-e", "frame.number"]);
    assert_eq!(malformed.lines().count(), 0, "{malformed}");
    let (capacity, available) = report.mempool.unwrap();
    assert_eq!(available, capacity);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A port of two devices (two `net_pcap` files): the tee's pcapng has one interface per
/// device, named after it, and tshark finds every frame of each file under its device's
/// interface.
#[test]
fn the_tee_writes_each_device_as_its_own_interface() {
    if !weir_testkit::ready("tee pcapng read back", false, &["tshark"], &[]) {
        return;
    }
    let files = [
        fixture_dir().join("mix.pcap"),
        fixture_dir().join("ssa-violation.pcap"),
    ];
    let frames: Vec<u64> = files
        .iter()
        .map(|f| {
            let mut n = 0u64;
            weir_dp::capture::Capture::open(f)
                .unwrap()
                .for_each(|_| n += 1)
                .unwrap();
            n
        })
        .collect();
    let devices: Vec<String> = files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            format!(
                "net_pcap_dv{i}_{},rx_pcap={}",
                std::process::id(),
                f.display()
            )
        })
        .collect();
    let dir = tempdir("tee-devices");
    let tee_dir = dir.join("tee");
    let text = format!(
        "[dataplane]\nworkers = 1\n[tee]\nenabled = true\ndir = {:?}\nfilters = [\"*\"]\nsample = 1\nrate_per_core = 0\nring = 4096\n",
        tee_dir.display().to_string()
    );
    let mut cfg = Config::from_toml("dpdk-tee-devices", &text).unwrap();
    cfg.port = Some(test_port(devices.clone(), 1));
    let report = {
        let _lcores = LCORES.lock().unwrap_or_else(|e| e.into_inner());
        let shared = DataplaneState::for_run(&cfg, Arc::new(AtomicBool::new(false))).unwrap();
        let opts = RunOptions {
            duration: Some(Duration::from_secs(3)),
        };
        let report = run::run(&cfg, &shared, &opts).unwrap();
        let st = shared.tee.status();
        assert_eq!(st.dropped, 0, "{st:?}");
        assert_eq!(st.written, frames.iter().sum::<u64>(), "{st:?}");
        report
    };
    let o = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(tee_dir.join("tee-00001.pcapng"))
        .args([
            "-T",
            "fields",
            "-e",
            "frame.interface_id",
            "-e",
            "frame.interface_name",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut per = [0u64; 2];
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let (id, name) = line.split_once('\t').unwrap_or((line, ""));
        let id: usize = id.parse().unwrap();
        assert_eq!(name, format!("dpdk:{}", devices[id]), "{line}");
        per[id] += 1;
    }
    assert_eq!(per.to_vec(), frames, "frames per interface");
    let (capacity, available) = report.mempool.unwrap();
    assert_eq!(available, capacity);
    let _ = std::fs::remove_dir_all(&dir);
}
