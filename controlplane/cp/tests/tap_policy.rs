//! A policy change reaches every part of a running weir-dp (root; CI sets
//! `WEIR_REQUIRE_ROOT_TESTS=1`, which turns a skip into a failure).
//!
//! A real weir-dp (the live engine, in this process) serves on a TAP device with its
//! terminators; a real weir-cp (in this process) directs it; the real `weirctl` binary and
//! `curl` are the operator and the client, the host kernel the network.
//!
//! - **Prefix change** (`config reload` with a new `apl`): the new prefix is answered by
//!   NDP (the kernel reaches it on-link, so it must resolve each service address) and
//!   served by the terminators; the old prefix is `not-service` at the classifier.
//! - **Rule change** (`rules set`) while curl keeps running: the new rule's address is
//!   served, the old rule's address is an `ssa-violation`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_model::config::Config;
use weir_testkit::{ready, sh};

mod support;
use support::InProcess;

const CLIENT: &str = "2001:db8:ff::1";
/// EUI-64 link-local of weir's default MAC 02:77:65:69:72:01.
const WEIR_LL: &str = "fe80::77:65ff:fe69:7201";
const KEY: &str = "000102030405060708090a0b0c0d0e0f";

fn weirctl(sock: &Path, args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_weirctl"))
        .arg("--socket")
        .arg(sock)
        .args(args)
        .output()
        .expect("weirctl runs");
    assert!(
        o.status.success(),
        "weirctl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// The address `weirctl ssa pick` gives CLIENT under `rule` (flags) in `apl`.
fn pick(apl: &str, rule: &[&str]) -> String {
    let mut args = vec!["ssa", "pick", "--apl", apl, "--src", CLIENT];
    args.extend_from_slice(rule);
    weirctl(Path::new("/nonexistent"), &args)
}

fn curl(addr: &str, max_time: u32) -> bool {
    Command::new("curl")
        .args([
            "-6",
            "-sS",
            "-o",
            "/dev/null",
            "--max-time",
            &max_time.to_string(),
            &format!("http://[{addr}]/"),
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn eventually(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn service(apl: &str, rule: &str) -> String {
    format!("[service]\napl = \"{apl}\"\n\n[ssa]\n{rule}\n\n")
}

#[test]
fn prefix_and_rule_changes_reach_host_path_and_terminators() {
    if !ready(
        "prefix_and_rule_changes_reach_host_path_and_terminators",
        true,
        &["curl", "ip"],
        &[],
    ) {
        return;
    }
    let pid = std::process::id();
    let dir = PathBuf::from(format!("/tmp/weir-tp-{pid}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let iface = format!("wtp{}", pid % 100_000);
    let (dp_sock, cp_sock) = (dir.join("dp.sock"), dir.join("cp.sock"));
    let (old_apl, new_apl) = ("2:2001:db8:5::/64", "2:2001:db8:6::/64");

    let dp_cfg = Config::from_toml(
        "dp",
        &format!(
            "{}[dataplane]\nworkers = 2\ncontrol_socket = {:?}\n\n[port]\nkind = \"tap\"\nname = \"{iface}\"\n\n[terminator]\nenabled = true\npin = false\nshards = 64\n",
            service(old_apl, "rule = \"src-mix\""),
            dp_sock.display().to_string()
        ),
    )
    .unwrap();
    let mut setup = InProcess::start(&dir, &dp_cfg, &dp_sock);
    let cp_text = |apl: &str| {
        format!(
            "{}[dataplane]\nworkers = 2\n\n[control]\nsocket = {:?}\nprometheus = \"\"\npoll_ms = 200\ndataplanes = [{{ name = \"dp0\", socket = {:?} }}]\n",
            service(apl, "rule = \"src-mix\""),
            cp_sock.display().to_string(),
            dp_sock.display().to_string()
        )
    };
    let cp_toml = dir.join("cp.toml");
    std::fs::write(&cp_toml, cp_text(old_apl)).unwrap();
    setup.start_cp(&cp_toml);
    let synced = || {
        let s: serde_json::Value =
            serde_json::from_str(&weirctl(&cp_sock, &["--json", "status"])).unwrap();
        let link = &s["dataplanes"][0];
        link["connected"] == true && link["applied_version"] == s["version"]
    };
    eventually("dp0 in sync", 20, synced);

    eventually("the TAP device", 20, || {
        Path::new(&format!("/sys/class/net/{iface}")).exists()
    });
    sh(&format!("ip link set {iface} up"));
    sh(&format!("ip -6 addr add {CLIENT}/64 dev {iface} nodad"));
    // The old prefix via weir's link-local address (its SYNs reach the classifier whatever
    // the policy); the new one on-link (the kernel must resolve every service address
    // with NDP, which only the new policy's host path answers).
    sh(&format!(
        "ip -6 route replace 2001:db8:5::/64 via {WEIR_LL} dev {iface}"
    ));
    sh(&format!("ip -6 route replace 2001:db8:6::/64 dev {iface}"));

    let old_addr = pick(old_apl, &["--rule", "src-mix"]);
    let new_addr = pick(new_apl, &["--rule", "src-mix"]);
    eventually("curl to the old prefix before the change", 20, || {
        curl(&old_addr, 2)
    });
    assert!(
        !curl(&new_addr, 2),
        "{new_addr} is not a service address yet"
    );

    // Prefix change: edit the config file, reload.
    std::fs::write(&cp_toml, cp_text(new_apl)).unwrap();
    weirctl(&cp_sock, &["config", "reload"]);
    eventually("reloaded policy applied", 20, synced);
    sh(&format!("ip -6 neigh flush dev {iface}"));
    eventually("curl to the new prefix (NDP + terminators)", 20, || {
        curl(&new_addr, 2)
    });
    let neigh = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["-6", "neigh", "show", "dev", &iface])
            .output()
            .unwrap()
            .stdout,
    )
    .to_string();
    assert!(
        neigh.contains(&new_addr) && neigh.contains("02:77:65:69:72:01"),
        "weir answered NDP for {new_addr}: {neigh}"
    );
    let before = setup.reason("not-service");
    assert!(!curl(&old_addr, 2), "the old prefix is no longer served");
    assert!(
        setup.reason("not-service") > before,
        "the old prefix is not-service"
    );

    // Rule change while a client keeps connecting.
    let keyed = pick(new_apl, &["--rule", "keyed-hash", "--key", KEY]);
    let running = Arc::new(AtomicBool::new(true));
    let load = {
        let (running, addr) = (Arc::clone(&running), new_addr.clone());
        std::thread::spawn(move || {
            let mut n = 0u32;
            while running.load(Ordering::Relaxed) {
                let _ = curl(&addr, 1);
                n += 1;
            }
            n
        })
    };
    weirctl(
        &cp_sock,
        &["rules", "set", "--rule", "keyed-hash", "--key", KEY],
    );
    eventually("new rule applied", 20, synced);
    eventually("curl to the keyed-hash address", 20, || curl(&keyed, 2));
    running.store(false, Ordering::Relaxed);
    let tries = load.join().unwrap();
    let before = setup.reason("ssa-violation");
    assert!(
        !curl(&new_addr, 2),
        "the src-mix address no longer conforms"
    );
    assert!(setup.reason("ssa-violation") > before);
    eprintln!(
        "prefix change: {new_addr} served, {old_addr} not-service; rule change: {keyed} served ({tries} curls during the change)"
    );
    drop(setup);
    assert!(!Path::new(&format!("/sys/class/net/{iface}")).exists());
}
