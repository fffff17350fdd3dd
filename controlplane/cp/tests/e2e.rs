//! End to end with no fakes: a real weir-dp (the live engine, replaying the bundled mix
//! in a loop, in this process), a real weir-cp (in this process) directing it over its
//! control socket, and the real `weirctl` binary issuing every command. Each command's
//! effect is checked where it lands: in the dataplane's own stats.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_control::transport::{current_uid, Listener};
use weir_cp::daemon::Daemon;
use weir_dp::run::{self, RunOptions};
use weir_dp::rx::RxReport;
use weir_dp::state::DataplaneState;
use weir_model::config::Config;

fn weirctl(sock: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weirctl"))
        .arg("--socket")
        .arg(sock)
        .args(args)
        .output()
        .expect("weirctl runs")
}

fn ok(sock: &Path, args: &[&str]) -> String {
    let o = weirctl(sock, args);
    assert!(
        o.status.success(),
        "weirctl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(sock: &Path, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    serde_json::from_str(&ok(sock, &a)).expect("weirctl --json prints JSON")
}

/// Wait until `f` holds (the daemons work asynchronously), or fail with `what`.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn dp_stats(sock: &Path) -> serde_json::Value {
    json(sock, &["stats"])["dataplanes"][0]["stats"].clone()
}

/// A fresh 0700 directory for one test's sockets and files (short path: unix socket paths
/// are limited to 107 bytes).
fn test_dir(tag: &str) -> PathBuf {
    let dir = PathBuf::from(format!("/tmp/weir-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    dir
}

/// A bundled fixture's path.
fn fixture(name: &str) -> String {
    format!("{}/../../pcap-fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// weir-dp's config: `extra` sections, then two workers, the control socket and a looped
/// pcap port.
fn dp_config(extra: &str, sock: &Path, pcap: &str, pps: u64) -> Config {
    Config::from_toml(
        "dp",
        &format!(
            "{extra}[dataplane]\nworkers = 2\ncontrol_socket = {:?}\n[port]\nkind = \"pcap\"\npath = {pcap:?}\nloop = true\npps = {pps}\n",
            sock.display().to_string()
        ),
    )
    .unwrap()
}

/// weir-cp's config text: `extra` sections first, then one dataplane link; `[control]`
/// keys in `control` (state_file, prometheus).
fn cp_config(extra: &str, control: &str, cp_sock: &Path, dp_sock: &Path) -> String {
    format!(
        "{extra}[dataplane]\nworkers = 2\n[control]\nsocket = {:?}\n{control}poll_ms = 200\ndataplanes = [{{ name = \"dp0\", socket = {:?} }}]\n",
        cp_sock.display().to_string(),
        dp_sock.display().to_string()
    )
}

#[test]
fn every_weirctl_command_against_real_daemons() {
    let dir = test_dir("e2e");
    let dp_sock = dir.join("dp.sock");
    let cp_sock = dir.join("cp.sock");
    let dp = start_dp(
        &dp_config("", &dp_sock, &fixture("mix.pcap"), 100_000),
        &dp_sock,
    );
    let cp_toml = dir.join("cp.toml");
    let cp_text = cp_config(
        "",
        &format!(
            "state_file = {:?}\nprometheus = \"127.0.0.1:0\"\n",
            dir.join("state.json").display().to_string()
        ),
        &cp_sock,
        &dp_sock,
    );
    std::fs::write(&cp_toml, &cp_text).unwrap();
    let cp = Daemon::start(&cp_toml).unwrap();

    // status: the link comes up and the dataplane runs weir-cp's version.
    eventually("dp0 connected and in sync", || {
        let s = json(&cp_sock, &["status"]);
        let link = &s["dataplanes"][0];
        link["connected"] == true && link["applied_version"] == s["version"]
    });
    let table = ok(&cp_sock, &["status"]);
    assert!(table.contains("dp0"), "{table}");

    // stats: traffic is counted, with the interface's classes and reasons.
    eventually("packets counted", || {
        dp_stats(&cp_sock)["packets"].as_u64() > Some(0)
    });
    let s = dp_stats(&cp_sock);
    assert!(s["reasons"]["ssa-violation"].as_u64().unwrap() > 0);
    assert!(ok(&cp_sock, &["stats"]).contains("known_good"));
    let watch = ok(&cp_sock, &["stats", "--watch", "0.3", "--count", "2"]);
    assert!(watch.matches("dp0").count() >= 2, "{watch}");

    // rings set: the dataplane's rings change size.
    ok(
        &cp_sock,
        &["rings", "set", "suspect", "--size", "64", "--weight", "4"],
    );
    eventually("suspect rings resized to 64", || {
        dp_stats(&cp_sock)["rings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["class"] == "suspect")
            .all(|r| r["size"] == 64)
    });
    assert!(ok(&cp_sock, &["rings", "show"]).contains("64"));

    // rules set any: ssa-violations stop growing in the dataplane.
    ok(&cp_sock, &["rules", "set", "--rule", "any"]);
    assert!(ok(&cp_sock, &["rules", "show"]).contains("any"));
    let synced = |sock: &Path| {
        let s = json(sock, &["status"]);
        s["dataplanes"][0]["applied_version"] == s["version"]
    };
    eventually("rule applied", || synced(&cp_sock));
    std::thread::sleep(Duration::from_millis(500));
    let before = dp_stats(&cp_sock)["reasons"]["ssa-violation"].clone();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(dp_stats(&cp_sock)["reasons"]["ssa-violation"], before);

    // slices move: the whole table to worker 1; the dataplane's new flows go there.
    let slices = json(&cp_sock, &["slices", "show"]);
    let runs = slices["runs"].as_array().unwrap();
    let last = runs.last().unwrap()["last"].as_u64().unwrap();
    ok(&cp_sock, &["slices", "move", &format!("0..{last}"), "1"]);
    eventually("slices moved", || {
        json(&cp_sock, &["slices", "show"])["runs"]
            .as_array()
            .unwrap()
            .len()
            == 1
    });
    eventually("moved policy applied", || synced(&cp_sock));
    std::thread::sleep(Duration::from_millis(500));
    let w0 = |s: &serde_json::Value| s["workers"][0]["assumed_good"].as_u64().unwrap();
    let w1 = |s: &serde_json::Value| s["workers"][1]["assumed_good"].as_u64().unwrap();
    let a = dp_stats(&cp_sock);
    std::thread::sleep(Duration::from_millis(800));
    let b = dp_stats(&cp_sock);
    assert_eq!(w0(&b), w0(&a), "worker 0 gets no new flows after the move");
    assert!(w1(&b) > w1(&a), "worker 1 gets the new flows");

    // block add / list / del.
    ok(
        &cp_sock,
        &["block", "add", "2001:db8:bad::/48", "--ttl", "5m"],
    );
    assert!(ok(&cp_sock, &["block", "list"]).contains("2001:db8:bad::/48"));
    ok(&cp_sock, &["block", "del", "2001:db8:bad::/48"]);
    assert!(!ok(&cp_sock, &["block", "list"]).contains("2001:db8:bad::/48"));
    let o = weirctl(&cp_sock, &["block", "del", "2001:db8:bad::/48"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "deleting an absent block is an error"
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stderr)
            .trim_end()
            .lines()
            .count(),
        1
    );

    // config reload: an invalid file is refused with its position and nothing changes;
    // a valid one applies.
    let version = json(&cp_sock, &["status"])["version"].clone();
    std::fs::write(
        &cp_toml,
        format!("{cp_text}\n[rings]\nsuspect = {{ size = 100, weight = 1 }}\n"),
    )
    .unwrap();
    let o = weirctl(&cp_sock, &["config", "reload"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cp.toml:") && err.contains("power of two"),
        "{err}"
    );
    assert_eq!(json(&cp_sock, &["status"])["version"], version);
    std::fs::write(&cp_toml, &cp_text).unwrap();
    ok(&cp_sock, &["config", "reload"]);
    eventually("reloaded config applied", || synced(&cp_sock));

    // ssa pick needs no daemon.
    let addr = ok(
        &dir.join("nonexistent.sock"),
        &[
            "ssa",
            "pick",
            "--apl",
            "2:2001:db8:5::/64",
            "--rule",
            "src-bits",
            "--src",
            "2001:db8:c000:1::100",
        ],
    );
    assert!(
        addr.trim().starts_with("2001:db8:5:0:2001:db8:c000:1"),
        "{addr}"
    );
    // The default rule, src-mix: DESIGN.md's example.
    let addr = ok(
        &dir.join("nonexistent.sock"),
        &[
            "ssa",
            "pick",
            "--apl",
            "2:2001:db8:5::/64",
            "--rule",
            "src-mix",
            "--src",
            "2001:db8:ff::1",
        ],
    );
    assert_eq!(addr.trim(), "2001:db8:5:0:f41c:bf9b:a428:420");

    // Prometheus: the dataplane's counters, labelled.
    let addr = cp.metrics_addr().expect("metrics listener");
    let body = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut b = String::new();
        s.read_to_string(&mut b).unwrap();
        b
    };
    assert!(
        body.contains("weir_class_packets_total{dataplane=\"dp0\",class=\"known_good\"}"),
        "{body}"
    );
    // Per-worker new flows: the bundled mix under the default rule reaches both workers.
    for w in ["0", "1"] {
        let line = body
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "weir_worker_new_flows_total{{dataplane=\"dp0\",worker=\"{w}\"}}"
                ))
            })
            .unwrap_or_else(|| panic!("no new-flow counter for worker {w}:\n{body}"));
        let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(n > 0, "{line}");
    }
    let slices = json(&cp_sock, &["slices", "show"]);
    let shares = slices["new_flow_share"].as_array().unwrap();
    assert_eq!(shares.len(), 2, "{slices}");
    assert!(shares.iter().all(|s| s.as_f64().unwrap() > 0.0), "{slices}");
    assert!(ok(&cp_sock, &["slices", "show"]).contains("SHARE"));

    cp.stop();
    dp.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

struct Dp {
    stop: Arc<AtomicBool>,
    shared: Arc<DataplaneState>,
    control: std::thread::JoinHandle<()>,
    run: std::thread::JoinHandle<anyhow::Result<RxReport>>,
}

fn start_dp(cfg: &Config, sock: &Path) -> Dp {
    let stop = Arc::new(AtomicBool::new(false));
    let shared = DataplaneState::for_run(cfg, Arc::clone(&stop)).unwrap();
    let control = weir_dp::control::spawn(
        Listener::bind(sock, current_uid()).unwrap(),
        Arc::clone(&shared),
    )
    .unwrap();
    let run = {
        let (c, s) = (cfg.clone(), Arc::clone(&shared));
        std::thread::spawn(move || run::run(&c, &s, &RunOptions::default()))
    };
    Dp {
        stop,
        shared,
        control,
        run,
    }
}

impl Dp {
    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.control.join();
        self.run.join().unwrap().unwrap();
    }
    fn version(&self) -> u64 {
        self.shared.policy.lock().unwrap().version
    }
    fn packets(&self) -> u64 {
        self.shared.rx_report().counters.packets()
    }
}

#[test]
fn weir_cp_sigkilled_and_weir_dp_restarted() {
    let dir = test_dir("e2f");
    let dp_sock = dir.join("dp.sock");
    let cp_sock = dir.join("cp.sock");
    let dp_cfg = dp_config("", &dp_sock, &fixture("mix.pcap"), 100_000);
    let cp_toml = dir.join("cp.toml");
    let state = format!(
        "state_file = {:?}\nprometheus = \"\"\n",
        dir.join("state.json").display().to_string()
    );
    std::fs::write(&cp_toml, cp_config("", &state, &cp_sock, &dp_sock)).unwrap();
    let spawn_cp = || {
        Command::new(env!("CARGO_BIN_EXE_weir-cp"))
            .arg("--config")
            .arg(&cp_toml)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let dp = start_dp(&dp_cfg, &dp_sock);
    let mut cp = spawn_cp();
    eventually("weir-cp pushed its policy", || dp.version() >= 1);
    ok(&cp_sock, &["block", "add", "2001:db8:bad::/48"]);
    eventually("block applied", || {
        dp.shared.policy.lock().unwrap().blocklist.len() == 1
    });
    let v = dp.version();

    // SIGKILL: the dataplane keeps the last policy and keeps counting.
    cp.kill().unwrap();
    cp.wait().unwrap();
    let p0 = dp.packets();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(dp.version(), v, "last policy kept");
    assert!(dp.packets() > p0, "still counting without weir-cp");

    // weir-cp returns (its socket file was left behind by SIGKILL: a stale socket is
    // replaced) and re-syncs the dataplane with its persisted state.
    let mut cp = spawn_cp();
    eventually("re-synced after weir-cp restart", || dp.version() > v);
    assert_eq!(
        dp.shared.policy.lock().unwrap().blocklist.len(),
        1,
        "persisted block survives"
    );

    // weir-dp restarted: weir-cp pushes the state again.
    dp.stop();
    let dp = start_dp(&dp_cfg, &dp_sock);
    assert_eq!(dp.version(), 0, "a fresh dataplane runs its own config");
    eventually("pushed again after weir-dp restart", || dp.version() > v);
    assert_eq!(dp.shared.policy.lock().unwrap().blocklist.len(), 1);

    // SIGTERM: clean exit.
    nix_kill_term(cp.id());
    assert!(cp.wait().unwrap().success());
    dp.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

fn nix_kill_term(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
}

#[test]
fn the_policy_loop_blocks_a_flooding_prefix_in_the_dataplane() {
    let dir = test_dir("e2p");
    let dp_sock = dir.join("dp.sock");
    let cp_sock = dir.join("cp.sock");
    let limits = "[limits]\nsource_prefix_len = 64\nnew_flows_per_sec = 20\n";
    let dp_cfg = dp_config(limits, &dp_sock, &fixture("rate.pcap"), 5000);
    let cp_toml = dir.join("cp.toml");
    let policy =
        "[policy]\nenabled = true\nblock_after_s = 1\nblock_ttl_s = 60\nmin_limited_per_poll = 5\n";
    std::fs::write(
        &cp_toml,
        cp_config(
            &format!("{policy}{limits}"),
            "prometheus = \"\"\n",
            &cp_sock,
            &dp_sock,
        ),
    )
    .unwrap();
    let dp = start_dp(&dp_cfg, &dp_sock);
    let cp = Daemon::start(&cp_toml).unwrap();
    // The dataplane reports the greedy /64 as rate-limited; weir-cp blocks it after 1 s,
    // and the dataplane then rejects its packets as `blocked`.
    // (At this pace both of the capture's /64s exceed 20 new flows/s; the greedy one must
    // be among the blocks.)
    let greedy: u128 = "2001:db8:c0a1:1::1"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .into();
    eventually("a policy block on the greedy /64 in the dataplane", || {
        dp.shared
            .policy
            .lock()
            .unwrap()
            .blocklist
            .is_blocked(greedy, 0)
    });
    let blocks = json(&cp_sock, &["block", "list"]);
    let text = blocks.to_string();
    assert!(text.contains("policy: over new-flow limit"), "{text}");
    eventually("blocked verdicts counted", || {
        dp.shared
            .rx_report()
            .counters
            .reason(weir_model::Reason::Blocked)
            > 0
    });
    let status = json(&cp_sock, &["status"]);
    assert!(
        status["decisions"]["block-added"].as_u64() >= Some(1),
        "{status}"
    );
    cp.stop();
    dp.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
