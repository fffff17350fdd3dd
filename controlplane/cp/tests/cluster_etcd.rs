//! The cluster against a real etcd (started by the test on loopback, stopped by PID when
//! it ends) and real BIRD control sockets: fencing of the coordinator, and three in-process
//! weir-cps assigning, failing over, moving and draining slices, with the BIRD include
//! each one writes. No namespaces and no dataplanes (`[control] dataplanes = []`: a host
//! without dataplanes is healthy while BIRD answers).
//!
//! Needs `etcd` and `bird` (Debian `etcd-server`, `bird2`); without them the tests skip
//! with a note, and fail when `WEIR_REQUIRE_ROOT_TESTS` is set (CI installs both).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::Client;
use weir_cp::daemon::cluster::assign::Assignment;
use weir_cp::daemon::cluster::{campaign, commit, read_state, Keys};
use weir_cp::daemon::Daemon;

/// One etcd at a time (the tests share the machine's two cores).
static SERIAL: Mutex<()> = Mutex::new(());

/// Whether the tools are here; skips (returns false) or fails under CI.
fn tools(list: &[&str]) -> bool {
    weir_testkit::ready("cluster_etcd", false, list, &[])
}

/// Print a figure and append it to `target/cluster-figures.txt` (CI prints it).
fn figure(line: &str) {
    eprintln!("{line}");
    let dir = std::path::Path::new(env!("CARGO_BIN_EXE_weirctl"))
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("cluster-figures.txt"))
    {
        use std::io::Write;
        let _ = writeln!(f, "{line}");
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A process killed (by PID) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A test folder, removed when dropped.
struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn test_dir(tag: &str) -> Dir {
    let dir = PathBuf::from(format!("/tmp/weir-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    Dir(dir)
}

/// etcd on loopback; returns the process and its client URL.
fn etcd(dir: &Path) -> (Proc, String) {
    let (client, peer) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{client}");
    let child = Command::new("etcd")
        .args(["--name", "t", "--data-dir"])
        .arg(dir.join("etcd"))
        .args([
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
        ])
        .args([
            "--listen-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
            "--initial-cluster",
            &format!("t=http://127.0.0.1:{peer}"),
            "--logger",
            "zap",
            "--log-outputs",
            "stderr",
            "--log-level",
            "error",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcd starts");
    let proc = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", client)).is_err() {
        assert!(Instant::now() < deadline, "etcd did not listen in 15 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    (proc, url)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn two_coordinators_racing_never_both_win() {
    if !tools(&["etcd"]) {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = test_dir("race");
    let (_etcd, url) = etcd(&dir.0);
    rt().block_on(async {
        let mut a = Client::connect([url.as_str()], None).await.unwrap();
        let mut b = Client::connect([url.as_str()], None).await.unwrap();
        let mut wins = [0u32; 2];
        for round in 0..20 {
            let keys = Keys::new(&format!("race{round}"));
            let la = a.lease_grant(30, None).await.unwrap().id();
            let lb = b.lease_grant(30, None).await.unwrap().id();
            // Both campaign at once: exactly one holds the key.
            let (ra, rb) = tokio::join!(
                campaign(&mut a, &keys, "a", la),
                campaign(&mut b, &keys, "b", lb)
            );
            let (ra, rb) = (ra.unwrap(), rb.unwrap());
            assert!(ra.is_some() != rb.is_some(), "round {round}: {ra:?} {rb:?}");
            let (winner, loser, rev, lost_lease) = match (ra, rb) {
                (Some(r), None) => {
                    wins[0] += 1;
                    (&mut a, &mut b, r, la)
                }
                (None, Some(r)) => {
                    wins[1] += 1;
                    (&mut b, &mut a, r, lb)
                }
                _ => unreachable!(),
            };
            let _ = lost_lease;
            // The winner writes epoch 1; the loser, claiming the winner's revision is
            // not enough: it must also read the same epoch. Both write epoch 2 on epoch 1
            // at once: exactly one passes.
            let hosts = ["a", "b"].iter().map(|s| s.to_string()).collect();
            let e1 = Assignment::even("l", 64, &hosts, 1);
            assert!(commit(winner, &keys, rev, None, Some(&e1), &[], &[])
                .await
                .unwrap());
            let st = read_state(winner, &keys).await.unwrap();
            let (got, seen) = st.assignment.clone().unwrap();
            assert_eq!(got, e1);
            let (e2a, _) = e1.assign(0, 9, "a").unwrap();
            let (e2b, _) = e1.assign(0, 9, "b").unwrap();
            let (x, y) = tokio::join!(
                commit(winner, &keys, rev, Some(seen), Some(&e2a), &[], &[]),
                commit(loser, &keys, rev, Some(seen), Some(&e2b), &[], &[])
            );
            assert!(
                x.unwrap() != y.unwrap(),
                "round {round}: both wrote on epoch 1"
            );
            // A loser with its own (wrong) revision never writes.
            let st = read_state(loser, &keys).await.unwrap();
            let (cur, seen) = st.assignment.unwrap();
            let (e3, _) = cur.assign(10, 19, "b").unwrap();
            assert!(!commit(
                loser,
                &keys,
                rev + 1_000_000,
                Some(seen),
                Some(&e3),
                &[],
                &[]
            )
            .await
            .unwrap());
        }
        // Both sides won some rounds (the race is real), or at least the test ran 20.
        assert_eq!(wins[0] + wins[1], 20);
        figure(&format!(
            "campaign race: a won {} rounds, b won {}, never both",
            wins[0], wins[1]
        ));

        // A coordinator whose lease is gone (expired while it was paused, or revoked) is
        // fenced out: the next coordinator's key has another create revision.
        let keys = Keys::new("fence");
        let la = a.lease_grant(30, None).await.unwrap().id();
        let ra = campaign(&mut a, &keys, "a", la).await.unwrap().unwrap();
        let hosts = ["a", "b"].iter().map(|s| s.to_string()).collect();
        let e1 = Assignment::even("l", 64, &hosts, 1);
        assert!(commit(&mut a, &keys, ra, None, Some(&e1), &[], &[])
            .await
            .unwrap());
        a.lease_revoke(la).await.unwrap();
        let lb = b.lease_grant(30, None).await.unwrap().id();
        let rb = campaign(&mut b, &keys, "b", lb).await.unwrap().unwrap();
        assert_ne!(ra, rb);
        let seen = read_state(&mut a, &keys)
            .await
            .unwrap()
            .assignment
            .unwrap()
            .1;
        let (e2, _) = e1.assign(0, 63, "a").unwrap();
        assert!(
            !commit(&mut a, &keys, ra, Some(seen), Some(&e2), &[], &[])
                .await
                .unwrap(),
            "the old coordinator wrote after losing its key"
        );
        let (e2, _) = e1.assign(0, 63, "b").unwrap();
        assert!(commit(&mut b, &keys, rb, Some(seen), Some(&e2), &[], &[])
            .await
            .unwrap());
        let st = read_state(&mut b, &keys).await.unwrap();
        assert_eq!(st.assignment.unwrap().0.counts()["b"], 64);
    });
}

/// The metrics body at `addr`.
fn scrape(addr: std::net::SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

fn weirctl(sock: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weirctl"))
        .arg("--socket")
        .arg(sock)
        .args(args)
        .output()
        .expect("weirctl runs")
}

fn status(sock: &Path) -> Option<serde_json::Value> {
    let o = weirctl(sock, &["--json", "cluster", "status"]);
    o.status
        .success()
        .then(|| serde_json::from_slice(&o.stdout).ok())
        .flatten()
}

fn eventually(what: &str, secs: u64, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out after {secs} s waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    t0.elapsed()
}

fn slices_of(v: &serde_json::Value, host: &str) -> u64 {
    v["hosts"]
        .as_array()
        .and_then(|hs| hs.iter().find(|h| h["name"] == host))
        .and_then(|h| h["slices"].as_u64())
        .unwrap_or(0)
}

/// A BIRD with nothing but the include file (no BGP): its control socket is what weir-cp
/// checks and reconfigures.
fn bird(dir: &Path) -> Proc {
    let conf = dir.join("bird.conf");
    std::fs::write(
        dir.join("routes.conf"),
        "protocol static weir {\n  ipv6;\n}\n",
    )
    .unwrap();
    std::fs::write(
        &conf,
        format!(
            "router id 0.0.0.1;\nprotocol device {{}}\ninclude \"{}\";\n",
            dir.join("routes.conf").display()
        ),
    )
    .unwrap();
    let child = Command::new("bird")
        .arg("-f")
        .arg("-c")
        .arg(&conf)
        .arg("-s")
        .arg(dir.join("bird.ctl"))
        .arg("-P")
        .arg(dir.join("bird.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("bird starts");
    let p = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !dir.join("bird.ctl").exists() {
        assert!(Instant::now() < deadline, "bird did not open its socket");
        std::thread::sleep(Duration::from_millis(50));
    }
    p
}

fn cp_config(dir: &Path, host: &str, n: u32, etcd: &str) -> PathBuf {
    let path = dir.join("cp.toml");
    std::fs::write(
        &path,
        format!(
            "[service]\napl = \"2:2001:db8:5::/64\"\n[control]\nsocket = {:?}\nprometheus = \"127.0.0.1:0\"\npoll_ms = 200\n\
             [cluster]\nservice = \"t\"\nhost = \"{host}\"\netcd = [\"{etcd}\"]\nbird_socket = {:?}\n\
             bird_include = {:?}\nhandover_addr = \"2001:db8:77::{n}\"\ndrain_s = 2\nlease_ttl_s = 2\n",
            dir.join("cp.sock").display().to_string(),
            dir.join("bird.ctl").display().to_string(),
            dir.join("routes.conf").display().to_string(),
        ),
    )
    .unwrap();
    path
}

#[test]
fn three_weir_cps_assign_fail_over_move_and_drain() {
    if !tools(&["etcd", "bird", "birdc"]) {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = test_dir("cl3");
    let (_etcd, url) = etcd(&dir.0);
    let mut birds = Vec::new();
    let mut daemons = Vec::new();
    let mut socks = Vec::new();
    for n in 1..=3u32 {
        let h = dir.0.join(format!("h{n}"));
        std::fs::create_dir_all(&h).unwrap();
        std::fs::set_permissions(&h, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        birds.push(Some(bird(&h)));
        let cfg = cp_config(&h, &format!("h{n}"), n, &url);
        daemons.push(Some(Daemon::start(&cfg).unwrap()));
        socks.push(h.join("cp.sock"));
    }
    // Even assignment over the three, one coordinator everyone agrees on.
    let took = eventually("every host owns a third", 20, || {
        socks.iter().all(|s| {
            status(s).is_some_and(|v| {
                v["epoch"].as_u64() > Some(0)
                    && (1..=3).all(|n| (5461..=5462).contains(&slices_of(&v, &format!("h{n}"))))
            })
        })
    });
    let v = status(&socks[0]).unwrap();
    let coord = v["coordinator"].as_str().unwrap().to_string();
    eprintln!("assigned in {took:?}; coordinator {coord}");
    for s in &socks {
        assert_eq!(status(s).unwrap()["coordinator"], coord.as_str());
    }
    // Prometheus: the cluster gauges, valid for promtool when it is installed.
    let addr = daemons[0].as_ref().unwrap().metrics_addr().unwrap();
    let body = scrape(addr);
    for want in [
        "weir_cluster_connected{host=\"h1\"} 1",
        "weir_cluster_host_slices{host=\"h2\"}",
        "weir_cluster_host_live{host=\"h3\"} 1",
        "weir_cluster_epoch 1",
    ] {
        assert!(body.contains(want), "{want} missing:\n{body}");
    }
    if weir_testkit::have("promtool") {
        let mut child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // h1's include: the covering /64, its blocks, its handover address.
    let include = std::fs::read_to_string(dir.0.join("h1/routes.conf")).unwrap();
    assert!(
        include.contains("route 2001:db8:5::/64 unreachable;"),
        "{include}"
    );
    assert!(
        include.contains("route 2001:db8:77::1/128 unreachable;"),
        "{include}"
    );
    let first_run = v["runs"][0].clone();
    let owner = first_run["host"].as_str().unwrap().to_string();
    let idx = |h: &str| h[1..].parse::<usize>().unwrap() - 1;
    let birdc_show = |h: &str| {
        String::from_utf8_lossy(
            &Command::new("birdc")
                .arg("-s")
                .arg(dir.0.join(h).join("bird.ctl"))
                .args(["show", "route", "protocol", "weir"])
                .output()
                .unwrap()
                .stdout,
        )
        .into_owned()
    };
    assert!(
        birdc_show(&owner).contains("2001:db8:5::/66"),
        "{}",
        birdc_show(&owner)
    );

    // A non-coordinator refuses moves and names the coordinator.
    let other = (1..=3)
        .map(|n| format!("h{n}"))
        .find(|h| *h != coord)
        .unwrap();
    let o = weirctl(&socks[idx(&other)], &["cluster", "move", "0..9", &other]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!("it is {coord}")),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // A planned move through the coordinator: a handover, announced by the new owner.
    let target = if owner == "h2" { "h3" } else { "h2" };
    let o = weirctl(&socks[idx(&coord)], &["cluster", "move", "0..1023", target]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    eventually("the new owner announces 0..1023", 10, || {
        birdc_show(target).contains("2001:db8:5::/68")
    });
    eventually(
        "the old owner withdraws it after the announcement",
        10,
        || {
            let s = birdc_show(&owner);
            !s.contains("2001:db8:5::/66") && !s.contains("2001:db8:5::/68")
        },
    );
    // The predecessor has no dataplane, so no flow: the handover ends as soon as the new
    // owner announces, before drain_s.
    let ended = eventually("the handover ends", 10, || {
        status(&socks[0]).is_some_and(|v| v["handovers"].as_array().is_some_and(Vec::is_empty))
    });
    eprintln!("handover ended {ended:?} after the announcement (no flows at the predecessor)");

    // Failure: the coordinator's host stops (lease revoked on the way out) — or, for a
    // non-coordinator, its BIRD dies: either way its slices go to the survivors.
    let victim = (1..=3)
        .map(|n| format!("h{n}"))
        .find(|h| *h != coord)
        .unwrap();
    birds[idx(&victim)] = None; // BIRD killed: weir-cp withdraws from the cluster
    let t = eventually("the victim's slices are reassigned", 10, || {
        status(&socks[idx(&coord)]).is_some_and(|v| {
            slices_of(&v, &victim) == 0
                && (1..=3)
                    .map(|n| format!("h{n}"))
                    .filter(|h| *h != victim)
                    .all(|h| slices_of(&v, &h) == 8192)
        })
    });
    figure(&format!(
        "three weir-cps: BIRD of {victim} killed, its slices reassigned in {t:?}"
    ));

    // Drain a survivor: the other one owns everything, the drained one no covering route.
    let drainee = (1..=3)
        .map(|n| format!("h{n}"))
        .find(|h| *h != victim && *h != coord)
        .unwrap();
    let o = weirctl(&socks[idx(&coord)], &["cluster", "drain", &drainee]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    eventually("the coordinator owns every slice", 10, || {
        status(&socks[idx(&coord)]).is_some_and(|v| slices_of(&v, &coord) == 16384)
    });
    eventually(
        "the drained host stops announcing the covering prefix",
        10,
        || !birdc_show(&drainee).contains("2001:db8:5::/64"),
    );

    // The coordinator leaves: another is elected.
    daemons[idx(&coord)] = None;
    eventually("a new coordinator", 10, || {
        status(&socks[idx(&drainee)]).is_some_and(|v| {
            v["coordinator"].as_str().is_some_and(|c| c != coord)
                && slices_of(&v, &drainee) == 16384
        })
    });
    drop(daemons);
    drop(birds);
}

/// A real weir-dp (in this process: the live engine on a looped capture, its control
/// server on `sock`), so the test can read the policy it runs.
struct Dataplane {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    shared: std::sync::Arc<weir_dp::state::DataplaneState>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Dataplane {
    fn start(sock: &Path) -> Dataplane {
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        let pcap = format!(
            "{}/../../pcap-fixtures/mix.pcap",
            env!("CARGO_MANIFEST_DIR")
        );
        let cfg = weir_model::config::Config::from_toml(
            "dp",
            &format!(
                "[dataplane]\nworkers = 1\ncontrol_socket = {:?}\n[port]\nkind = \"pcap\"\npath = {pcap:?}\nloop = true\npps = 2000\n",
                sock.display().to_string()
            ),
        )
        .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let shared = weir_dp::state::DataplaneState::for_run(&cfg, Arc::clone(&stop)).unwrap();
        let listener =
            weir_control::transport::Listener::bind(sock, weir_control::transport::current_uid())
                .unwrap();
        let control = weir_dp::control::spawn(listener, Arc::clone(&shared)).unwrap();
        let run = {
            let s = Arc::clone(&shared);
            std::thread::spawn(move || {
                let _ = weir_dp::run::run(&cfg, &s, &weir_dp::run::RunOptions::default());
            })
        };
        Dataplane {
            stop,
            shared,
            threads: vec![control, run],
        }
    }

    /// The predecessor of `slice` in the policy in force, and the member count.
    fn handover(&self, slice: u32) -> (Option<u128>, usize) {
        let p = self.shared.policy.lock().unwrap();
        p.cluster
            .as_ref()
            .map_or((None, 0), |c| (c.predecessor(slice), c.members.len()))
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The cp → dp interface: while a handover of run R from A to B lasts, B's dataplane runs
/// a policy that lists R with A's handover address as predecessor, and every member's
/// address; after it, R has no predecessor.
#[test]
fn the_new_owners_dataplane_gets_the_run_with_its_predecessor() {
    if !tools(&["etcd", "bird", "birdc"]) {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = test_dir("cldp");
    let (_etcd, url) = etcd(&dir.0);
    let mut keep = Vec::new();
    let mut dps = Vec::new();
    let mut socks = Vec::new();
    // Declared after the dataplanes: the daemons stop first.
    let mut cps = Vec::new();
    for n in 1..=2u32 {
        let h = dir.0.join(format!("h{n}"));
        std::fs::create_dir_all(&h).unwrap();
        std::fs::set_permissions(&h, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        keep.push(bird(&h));
        dps.push(Dataplane::start(&h.join("dp.sock")));
        let cfg = cp_config(&h, &format!("h{n}"), n, &url);
        let text = std::fs::read_to_string(&cfg).unwrap().replace(
            "poll_ms = 200\n",
            &format!(
                "poll_ms = 200\ndataplanes = [{{ name = \"dp\", socket = {:?} }}]\n",
                h.join("dp.sock").display().to_string()
            ),
        );
        let text = text
            .replace("drain_s = 2", "drain_s = 3")
            .replace("[control]\n", "[dataplane]\nworkers = 1\n[control]\n");
        std::fs::write(&cfg, text).unwrap();
        socks.push(h.join("cp.sock"));
        cps.push(Daemon::start(&cfg).unwrap());
    }
    eventually("both hosts own half", 20, || {
        status(&socks[0])
            .is_some_and(|v| slices_of(&v, "h1") == 8192 && slices_of(&v, "h2") == 8192)
    });
    eventually("both dataplanes know both members", 10, || {
        dps.iter().all(|d| d.handover(0).1 == 2)
    });
    let v = status(&socks[0]).unwrap();
    let coord: usize = v["coordinator"].as_str().unwrap()[1..].parse().unwrap();
    let (a, b) = (
        v["runs"][0]["host"].as_str().unwrap().to_string(),
        v["runs"][1]["host"].as_str().unwrap().to_string(),
    );
    let (ai, bi) = (
        a[1..].parse::<usize>().unwrap() - 1,
        b[1..].parse::<usize>().unwrap() - 1,
    );
    let a_addr =
        u128::from("2001:db8:77::".parse::<std::net::Ipv6Addr>().unwrap()) + (ai as u128 + 1);
    // The handover can be over within a coordinator round or two (it ends early when A
    // has no flow left, as here), so it is watched from before the move, every 2 ms, by a
    // thread of its own: polling after weirctl returned once missed all of it.
    let watch = {
        let (bdp, adp) = (Arc::clone(&dps[bi].shared), Arc::clone(&dps[ai].shared));
        std::thread::spawn(move || {
            let pred = |d: &weir_dp::state::DataplaneState, slice: u32| {
                let p = d.policy.lock().unwrap();
                p.cluster.as_ref().and_then(|c| c.predecessor(slice))
            };
            let t0 = Instant::now();
            let mut seen: Option<(Duration, Option<u128>, Option<u128>)> = None;
            while t0.elapsed() < Duration::from_secs(30) {
                let has = pred(&bdp, 0) == Some(a_addr) && pred(&bdp, 1023) == Some(a_addr);
                match seen {
                    None if has => seen = Some((t0.elapsed(), pred(&bdp, 1024), pred(&adp, 0))),
                    Some((t, _, _)) if pred(&bdp, 0).is_none() => {
                        return (seen, Some(t0.elapsed() - t));
                    }
                    _ => {}
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            (seen, None)
        })
    };
    let o = weirctl(&socks[coord - 1], &["cluster", "move", "0..1023", &b]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (seen, ended) = watch.join().expect("watcher");
    let Some((t, other_run, at_a)) = seen else {
        panic!(
            "B's dataplane never ran slices 0..1023 with A as predecessor; cluster status: {}",
            status(&socks[coord - 1]).map_or("none".to_string(), |v| v.to_string())
        );
    };
    assert_eq!(other_run, None, "only the moved run");
    assert_eq!(at_a, None, "A forwards nothing");
    let ended = ended.expect("the handover ends (drain_s, or A has no flow left)");
    figure(&format!(
        "cp → dp: B's dataplane had the run with its predecessor {t:?} after the move; it ended {ended:?} later"
    ));
    drop(cps);
}
