//! A cluster of weir hosts, end to end, in Linux network namespaces (root): the real
//! weir-dp (TAP port, terminators), weir-cp with `[cluster]`, BIRD on the hosts and on the
//! router (ECMP, BFD), etcd, and `weir-bench load` with 256 client /64s — set up by
//! `scripts/cluster-lab.sh` (the demo uses the same script) and torn down by it when the
//! test ends, also on failure (every process by its PID, every namespace deleted).
//!
//! Without root (or bird, etcd, ip) the tests skip with a note; with
//! `WEIR_REQUIRE_ROOT_TESTS=1` (CI) a missing privilege or tool fails them. The binaries of
//! the other workspace packages (weir-dp, weir-bench) are taken from this build's target
//! folder: `cargo test --workspace` builds them.
//!
//! Figures are printed (`--nocapture` shows them; CI's log has them on failure).

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// One lab at a time: three hosts with BIRD and a load client fill the machine.
static SERIAL: Mutex<()> = Mutex::new(());

fn bin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_weirctl"))
        .parent()
        .expect("the target folder")
        .to_path_buf()
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether this test can run; skips with a note, or fails under CI.
fn can_run(test: &str) -> bool {
    let missing: Vec<String> = ["weir-dp", "weir-bench", "weir-cp", "weirctl"]
        .iter()
        .map(|b| bin_dir().join(b))
        .filter(|p| !p.exists())
        .map(|p| format!("{} (cargo test --workspace builds it)", p.display()))
        .collect();
    let bins: Vec<(bool, &str)> = missing.iter().map(|m| (false, m.as_str())).collect();
    weir_testkit::ready(test, true, &["ip", "bird", "birdc", "etcd"], &bins)
}

/// Print a figure and append it to `target/cluster-figures.txt`, which CI prints after
/// the tests (cargo keeps a passing test's output to itself).
fn figure(line: &str) {
    eprintln!("{line}");
    let path = bin_dir().join("../cluster-figures.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        use std::io::Write;
        let _ = writeln!(f, "{line}");
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0))
}

/// A running lab; dropping it runs `cluster-lab.sh down` (kills by PID, deletes the
/// namespaces, removes the folder).
struct Lab {
    dir: PathBuf,
    tag: String,
}

impl Lab {
    fn up(name: &str, env: &[(&str, &str)]) -> Lab {
        let dir = PathBuf::from(format!("/tmp/wl-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let tag = format!("w{}{}", &name[..1], std::process::id() % 100_000);
        std::fs::write(dir.join("tag"), &tag).unwrap();
        let lab = Lab { dir, tag };
        let t0 = Instant::now();
        let out = lab.script("up", env);
        assert!(
            out.status.success(),
            "cluster-lab.sh up failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            lab.logs()
        );
        eprintln!("lab {name} up in {:.1} s", t0.elapsed().as_secs_f64());
        lab
    }

    fn script(&self, cmd: &str, env: &[(&str, &str)]) -> Output {
        let mut c = Command::new("bash");
        c.arg(repo().join("scripts/cluster-lab.sh"))
            .arg(cmd)
            .arg(&self.dir)
            .env("WEIR_BIN", bin_dir());
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("bash runs")
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        for n in ["h1-cp", "h2-cp", "h3-cp", "h1-dp", "router-bird", "etcd"] {
            if let Ok(t) = std::fs::read_to_string(self.dir.join(format!("{n}.log"))) {
                let tail: Vec<&str> = t.lines().rev().take(15).collect();
                s.push_str(&format!("--- {n}.log (last lines)\n"));
                for l in tail.into_iter().rev() {
                    s.push_str(l);
                    s.push('\n');
                }
            }
        }
        s
    }

    fn ns(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.tag)
    }

    fn cp_sock(&self, host: u32) -> PathBuf {
        self.dir.join(format!("h{host}/cp.sock"))
    }

    fn weirctl(&self, host: u32, args: &[&str]) -> Output {
        Command::new(bin_dir().join("weirctl"))
            .arg("--socket")
            .arg(self.cp_sock(host))
            .args(args)
            .output()
            .expect("weirctl runs")
    }

    fn status(&self, host: u32) -> Option<Value> {
        let o = self.weirctl(host, &["--json", "cluster", "status"]);
        o.status
            .success()
            .then(|| serde_json::from_slice(&o.stdout).ok())
            .flatten()
    }

    fn stats(&self, host: u32) -> Option<Value> {
        let o = self.weirctl(host, &["--json", "stats"]);
        o.status
            .success()
            .then(|| serde_json::from_slice(&o.stdout).ok())
            .flatten()
    }

    fn pid(&self, name: &str) -> Option<i32> {
        std::fs::read_to_string(self.dir.join("pids"))
            .ok()?
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(_, n)| *n == name)
            .filter_map(|(p, _)| p.parse().ok())
            .next_back()
    }

    fn nexthops(&self) -> usize {
        let o = Command::new("ip")
            .args([
                "-n",
                &self.ns("r"),
                "-6",
                "route",
                "show",
                "2001:db8:5::/64",
            ])
            .output()
            .expect("ip runs");
        String::from_utf8_lossy(&o.stdout)
            .matches("nexthop via")
            .count()
    }

    /// `weir-bench load` in the client namespace, in the background.
    fn load(&self, name: &str, args: &[&str]) -> Load {
        let out = self.dir.join(format!("{name}.json"));
        let file = std::fs::File::create(&out).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns("c")])
            .arg(bin_dir().join("weir-bench"))
            .args(["load", "--json", "--src-net", "2001:db8:c000::/48"])
            .args(args)
            .stdout(file)
            .stderr(Stdio::piped())
            .spawn()
            .expect("weir-bench runs");
        Load {
            child: Some(child),
            out,
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        let out = self.script("down", &[]);
        if !out.status.success() {
            eprintln!(
                "cluster-lab.sh down: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A background load; killed by PID if dropped unfinished.
struct Load {
    child: Option<Child>,
    out: PathBuf,
}

impl Load {
    fn wait(mut self) -> Value {
        let child = self.child.take().expect("not waited yet");
        let o = child.wait_with_output().expect("weir-bench ends");
        assert!(
            o.status.success(),
            "weir-bench load: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let text = std::fs::read_to_string(&self.out).unwrap();
        serde_json::from_str(&text).expect("weir-bench prints JSON")
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn eventually(what: &str, secs: f64, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs_f64(secs),
            "timed out after {secs} s waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    t0.elapsed()
}

fn slices_of(v: &Value, host: &str) -> u64 {
    v["hosts"]
        .as_array()
        .and_then(|hs| hs.iter().find(|h| h["name"] == host))
        .and_then(|h| h["slices"].as_u64())
        .unwrap_or(0)
}

/// The slice of a destination (2001:db8:5::/64, 14 slice bits).
fn slice_of(dst: &str) -> u32 {
    let a: std::net::Ipv6Addr = dst.parse().expect("an address");
    ((u128::from(a) >> 50) & 0x3fff) as u32
}

/// The owner of `slice` in a status's runs.
fn owner(v: &Value, slice: u32) -> String {
    v["runs"]
        .as_array()
        .and_then(|rs| {
            rs.iter().find(|r| {
                r["first"].as_u64() <= Some(u64::from(slice))
                    && Some(u64::from(slice)) <= r["last"].as_u64()
            })
        })
        .and_then(|r| r["host"].as_str())
        .unwrap_or("?")
        .to_string()
}

fn failures(slot: &Value) -> u64 {
    slot["failures"]
        .as_object()
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
}

#[test]
fn spread_2000_connections_from_256_client_64s_over_three_hosts() {
    if !can_run("spread") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up("spread", &[]);
    let v = lab.status(1).expect("cluster status");
    let load = lab.load(
        "spread",
        &[
            "--connections",
            "2000",
            "--src-count",
            "256",
            "--mode",
            "keepalive",
            "--duration",
            "4",
            "--think-ms",
            "200",
            "--connect-timeout-ms",
            "3000",
        ],
    );
    let r = load.wait();
    let mut per_host = std::collections::BTreeMap::<String, u64>::new();
    for slot in r["slots"].as_array().unwrap() {
        // A slot's connection is counted once, for the host that answered it first.
        if let Some((server, _)) = slot["servers"].as_object().and_then(|m| m.iter().next()) {
            *per_host.entry(server.clone()).or_default() += 1;
        }
    }
    let total: u64 = per_host.values().sum();
    figure(&format!(
        "spread: {total} connections answered, requests {}, failed {}, p99 {} ms; per host {per_host:?}; slices {:?}",
        r["requests"],
        r["failed"],
        r["latency"]["p99_ms"],
        (1..=3).map(|n| slices_of(&v, &format!("h{n}"))).collect::<Vec<_>>()
    ));
    assert_eq!(total, 2000, "every connection answered: {per_host:?}");
    assert_eq!(r["failed"], 0, "{}", r["failures"]);
    for n in 1..=3 {
        let share = per_host.get(&format!("h{n}")).copied().unwrap_or(0) as f64 / total as f64;
        figure(&format!("spread: h{n} share {:.1}%", 100.0 * share));
        assert!(
            (1.0 / 3.0 / 1.5..=1.0 / 3.0 * 1.5).contains(&share),
            "h{n}'s share {share:.3} is not within 1.5x of a third"
        );
    }
}

#[test]
fn host_failure_bfd_withdraws_slices_move_and_other_hosts_see_no_failure() {
    if !can_run("failure") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ttl_s = 3u64;
    let lab = Lab::up("failure", &[("LAB_LEASE_TTL_S", "3")]);
    let before = lab.status(1).expect("cluster status");
    // Keep-alive connections from every source, and a stream of new connections.
    let keepalive = lab.load(
        "fail-ka",
        &[
            "--connections",
            "256",
            "--src-count",
            "256",
            "--mode",
            "keepalive",
            "--duration",
            "12",
            "--think-ms",
            "20",
            "--connect-timeout-ms",
            "300",
            "--response-timeout-ms",
            "1000",
        ],
    );
    let fresh = lab.load(
        "fail-new",
        &[
            "--connections",
            "48",
            "--src-count",
            "256",
            "--mode",
            "close",
            "--duration",
            "12",
            "--think-ms",
            "10",
            "--connect-timeout-ms",
            "300",
            "--response-timeout-ms",
            "1000",
        ],
    );
    std::thread::sleep(Duration::from_secs(4));
    let dp = lab.pid("h3-dp").expect("h3's weir-dp");
    let bird = lab.pid("h3-bird").expect("h3's BIRD");
    let t_kill = now_ms();
    let killed = Instant::now();
    for pid in [dp, bird] {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    let bfd = eventually("the router drops h3's nexthop", 5.0, || lab.nexthops() == 2);
    let reassigned = eventually("h3's slices reassigned", (ttl_s + 5) as f64, || {
        lab.status(1).is_some_and(|v| {
            slices_of(&v, "h3") == 0 && slices_of(&v, "h1") + slices_of(&v, "h2") == 16384
        })
    });
    let ka = keepalive.wait();
    let new = fresh.wait();
    let t_start = ka["started_unix_ms"].as_u64().unwrap();
    let new_start = new["started_unix_ms"].as_u64().unwrap();

    // Established connections, grouped by the host that owned their slice before.
    let mut failed_on = std::collections::BTreeMap::<String, u64>::new();
    let mut requests_on = std::collections::BTreeMap::<String, u64>::new();
    for slot in ka["slots"].as_array().unwrap() {
        let host = owner(&before, slice_of(slot["dst"].as_str().unwrap()));
        *failed_on.entry(host.clone()).or_default() += failures(slot);
        *requests_on.entry(host).or_default() += slot["requests"].as_u64().unwrap_or(0);
    }
    // New connections: the last attempt that failed, from the kill on.
    let kill_rel = t_kill.saturating_sub(new_start);
    let mut last_failed_start = None;
    let mut failed_new = 0u64;
    for slot in new["slots"].as_array().unwrap() {
        for f in slot["failure_times_ms"].as_array().into_iter().flatten() {
            let started = f[0].as_u64().unwrap_or(0);
            if started + 300 >= kill_rel {
                failed_new += 1;
                last_failed_start = last_failed_start.max(Some(started.saturating_sub(kill_rel)));
            }
        }
    }
    figure(&format!(
        "failure: router FIB without h3 after {:.3} s (the kill closed its BGP session; BFD is the backstop), slices reassigned after {:.3} s (lease TTL {ttl_s} s); \
         keep-alive requests per old owner {requests_on:?}, failed per old owner {failed_on:?}; \
         new connections: {} made, {failed_new} failed after the kill, the last failed one started {} ms after it; \
         load started {} ms before the kill",
        bfd.as_secs_f64(),
        reassigned.as_secs_f64(),
        new["connects"],
        last_failed_start.map_or("(none)".into(), |t| t.to_string()),
        t_kill.saturating_sub(t_start)
    ));
    let _ = killed;
    for h in ["h1", "h2"] {
        assert_eq!(
            failed_on.get(h).copied().unwrap_or(0),
            0,
            "connections on the surviving host {h} failed: {failed_on:?}"
        );
        assert!(requests_on.get(h).copied().unwrap_or(0) > 0);
    }
    assert!(
        bfd < Duration::from_secs(1),
        "BFD took {bfd:?} to withdraw h3"
    );
    assert!(
        reassigned <= Duration::from_secs(ttl_s + 1),
        "reassignment took {reassigned:?} (TTL {ttl_s} s)"
    );
    assert!(
        last_failed_start.unwrap_or(0) <= 1000,
        "new connections failed until {last_failed_start:?} ms after the kill"
    );
}

/// A host whose BIRD freezes (SIGSTOP: its BGP session stays open, no NOTIFICATION, no
/// FIN) is withdrawn by BFD alone; its weir-cp sees BIRD stop answering and leaves the
/// cluster, so its slices move too.
#[test]
fn a_frozen_host_is_withdrawn_by_bfd_within_a_second() {
    if !can_run("frozen") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up("frozen", &[("LAB_LEASE_TTL_S", "3")]);
    let fresh = lab.load(
        "frozen-new",
        &[
            "--connections",
            "48",
            "--src-count",
            "256",
            "--mode",
            "close",
            "--duration",
            "7",
            "--think-ms",
            "10",
            "--connect-timeout-ms",
            "300",
            "--response-timeout-ms",
            "1000",
        ],
    );
    std::thread::sleep(Duration::from_secs(2));
    let bird = lab.pid("h3-bird").expect("h3's BIRD").to_string();
    let t_stop = now_ms();
    let _ = Command::new("kill").args(["-STOP", &bird]).status();
    let bfd = eventually("BFD withdraws h3 at the router", 5.0, || {
        lab.nexthops() == 2
    });
    let moved = eventually("h3's slices reassigned", 6.0, || {
        lab.status(1).is_some_and(|v| slices_of(&v, "h3") == 0)
    });
    let new = fresh.wait();
    let _ = Command::new("kill").args(["-CONT", &bird]).status();
    let kill_rel = t_stop.saturating_sub(new["started_unix_ms"].as_u64().unwrap_or(0));
    let last_failed = new["slots"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["failure_times_ms"].as_array().into_iter().flatten())
        .filter_map(|f| f[0].as_u64())
        .filter(|&t| t + 300 >= kill_rel)
        .map(|t| t.saturating_sub(kill_rel))
        .max();
    figure(&format!(
        "frozen: BFD withdrew h3 after {:.3} s, its slices moved after {:.3} s; new connections: {} made, {} failed, the last failed one started {} ms after the freeze",
        bfd.as_secs_f64(),
        moved.as_secs_f64(),
        new["connects"],
        new["failed"],
        last_failed.map_or("(none)".into(), |t| t.to_string())
    ));
    assert!(bfd < Duration::from_secs(1), "BFD took {bfd:?}");
    assert!(
        last_failed.unwrap_or(0) <= 1000,
        "new connections failed until {last_failed:?} ms"
    );
}

#[test]
fn planned_handover_under_load_fails_no_request() {
    if !can_run("handover") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up("handover", &[("LAB_DRAIN_S", "20")]);
    let before = lab.status(1).expect("cluster status");
    let coordinator = before["coordinator"].as_str().unwrap()[1..]
        .parse::<u32>()
        .unwrap();
    let (a, b) = (owner(&before, 0), owner(&before, 8191));
    assert_ne!(a, b);
    let keepalive = lab.load(
        "ho-ka",
        &[
            "--connections",
            "256",
            "--src-count",
            "256",
            "--mode",
            "keepalive",
            "--duration",
            "10",
            "--think-ms",
            "20",
        ],
    );
    let fresh = lab.load(
        "ho-new",
        &[
            "--connections",
            "32",
            "--src-count",
            "256",
            "--mode",
            "close",
            "--duration",
            "10",
        ],
    );
    std::thread::sleep(Duration::from_secs(3));
    let o = lab.weirctl(coordinator, &["cluster", "move", "0..1023", &b]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let moved = eventually("the move is announced", 5.0, || {
        lab.status(1).is_some_and(|v| {
            owner(&v, 0) == b
                && v["handovers"]
                    .as_array()
                    .is_some_and(|h| h.iter().all(|h| h["announced"] == true))
        })
    });
    // New connections to the moved slices land on the new owner.
    let after = lab
        .load(
            "ho-after",
            &[
                "--connections",
                "16",
                "--slices",
                "0..1023",
                "--mode",
                "close",
                "--duration",
                "2",
            ],
        )
        .wait();
    let ka = keepalive.wait();
    let new = fresh.wait();
    let a_n: u32 = a[1..].parse().unwrap();
    let decap = lab
        .stats(a_n)
        .and_then(|s| {
            s["dataplanes"][0]["stats"]["events"][weir_dp::handover::COUNTER_DECAPSULATED].as_u64()
        })
        .unwrap_or(0);
    figure(&format!(
        "handover: move announced after {:.3} s; keep-alive {} requests, {} failed; new {} requests, {} failed; \
         after the move new connections in 0..1023 answered by {}; {a} decapsulated {decap}",
        moved.as_secs_f64(),
        ka["requests"], ka["failed"], new["requests"], new["failed"], after["servers"]
    ));
    assert_eq!(ka["failed"], 0, "{}", ka["failures"]);
    assert_eq!(new["failed"], 0, "{}", new["failures"]);
    for slot in ka["slots"].as_array().unwrap() {
        assert_eq!(slot["server_changed_on_connection"], 0);
        if slice_of(slot["dst"].as_str().unwrap()) <= 1023 {
            assert!(
                slot["servers"].get(&a).is_some(),
                "old connections finish on {a}: {slot}"
            );
        }
    }
    assert!(decap > 0, "{a} decapsulated nothing");
    let servers: Vec<&String> = after["servers"].as_object().unwrap().keys().collect();
    assert_eq!(servers, [&b], "new connections land on {b}");
}

#[test]
fn a_forged_tunnel_frame_from_a_non_member_is_refused_and_counted() {
    if !can_run("forged") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up("forged", &[]);
    // The client (not a member) sends IPv6-in-IPv6 to h1's handover address: SYNs to a
    // service address inside, written by scapy and sent through the client's routes (the
    // lab kernel has no ip6tnl device).
    let c = lab.ns("c");
    let refused = |lab: &Lab| {
        lab.stats(1)
            .and_then(|s| s["dataplanes"][0]["stats"]["events"]["tunnel-not-member"].as_u64())
            .unwrap_or(0)
    };
    let before = refused(&lab);
    let script = "from scapy.all import IPv6, TCP, send\n\
        p = IPv6(src='2001:db8:c::2', dst='2001:db8:77::1') / \
            IPv6(src='2001:db8:c::2', dst='2001:db8:5::1234') / TCP(sport=40000, dport=80, flags='S')\n\
        send(p, count=5, inter=0.05, verbose=False)\n";
    let out = Command::new("ip")
        .args(["netns", "exec", &c, "/usr/bin/python3", "-c", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scapy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let counted = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        refused(&lab) > before
    });
    assert!(
        counted,
        "h1 counts the refused tunnel frames; its events: {}",
        lab.stats(1)
            .map(|s| s["dataplanes"][0]["stats"]["events"].to_string())
            .unwrap_or_default()
    );
    figure(&format!(
        "forged: h1 refused {} tunnel frames from a non-member",
        refused(&lab) - before
    ));
}

/// The lab script's `down` leaves nothing behind even when `up` failed half way.
#[test]
fn a_failed_lab_leaves_no_namespace_or_process() {
    if !can_run("teardown") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = PathBuf::from(format!("/tmp/wl-teardown-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let tag = format!("wt{}", std::process::id() % 100_000);
    std::fs::write(dir.join("tag"), &tag).unwrap();
    // A "weir-dp" that exits at once: `up` fails after the namespaces, the router's BIRD
    // and etcd are up, when the first host's TAP never appears.
    let fake = dir.join("bin");
    std::fs::create_dir_all(&fake).unwrap();
    for b in ["weir-dp", "weir-cp", "weirctl"] {
        let p = fake.join(b);
        std::fs::write(&p, "#!/bin/sh\nexit 1\n").unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let out = Command::new("bash")
        .arg(repo().join("scripts/cluster-lab.sh"))
        .args(["up"])
        .arg(&dir)
        .env("WEIR_BIN", &fake)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tearing down"), "{err}");
    let ns = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(!ns.contains(&tag), "namespaces left: {ns}");
    // No process of this lab is left (their command lines name the lab's folder).
    let needle = dir.display().to_string();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            assert!(
                !cmd.contains(&needle) || cmd.contains("cluster-lab.sh"),
                "left running: {cmd}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
