//! Captures as operators have them: every conversion of the bundled mix that Wireshark's
//! tools, gzip, zstd and tcpdump make — snap lengths, raw IP, Linux cooked (SLL2 from
//! `tcpdump -i any`), BSD loopback, pcapng with interfaces of two link types, compressed,
//! from standard input — gives the classes and reasons of the Ethernet original; and
//! `--verdicts` / `--expect`, the per-frame files a policy change is tested with.
//!
//! The tools are real peers: editcap, mergecap, capinfos and tshark (Wireshark), gzip,
//! zstd, tcpdump and tcpreplay on a veth pair in a network namespace (root). Without them
//! a test is skipped with a note; under `WEIR_REQUIRE_ROOT_TESTS` (CI) it fails instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, TsResolution};
use serde_json::Value;
use weir_testkit::Scratch;

/// Whether the tools are here: false (skip, with a note) unless CI requires them.
fn tools(names: &[&str], root: bool) -> bool {
    weir_testkit::ready("captures", root, names, &[])
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../pcap-fixtures")
        .join(name)
}

fn run(cmd: &mut Command) -> Output {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn sh(script: &str) -> Output {
    run(Command::new("sh").args(["-c", script]))
}

fn weir_dp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir-dp"))
        .args(args)
        .output()
        .expect("weir-dp runs")
}

/// `weir-dp replay --json` of `files`.
fn replay(files: &[&Path]) -> Value {
    let mut args = vec!["replay".to_string(), "--json".to_string()];
    args.extend(files.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = weir_dp(&args);
    assert!(
        o.status.success(),
        "replay {files:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// What must not change with the encapsulation: counts of frames, classes and reasons.
fn verdict_counts(v: &Value) -> Value {
    serde_json::json!({
        "packets": v["packets"],
        "outbound": v["outbound"],
        "host": v["host"],
        "truncated": v["truncated"],
        "classes": v["classes"],
        "reasons": v["reasons"],
    })
}

/// capinfos' "File encapsulation" of `path`.
fn encapsulation(path: &Path) -> String {
    let o = run(Command::new("capinfos").arg("-E").arg(path));
    let text = String::from_utf8_lossy(&o.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("File encapsulation:"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Frames tshark decodes as IPv6 in `path`.
fn tshark_ipv6_frames(path: &Path) -> usize {
    let o = run(Command::new("tshark")
        .args(["-n", "-r"])
        .arg(path)
        .args(["-T", "fields", "-e", "ipv6.src"]));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

/// The mix's frames rewritten for a BSD loopback link (`NULL`: host-order address
/// family, `LOOP`: network order; 24 is AF_INET6 on NetBSD/OpenBSD). No tool makes these
/// from Ethernet, so they are written here and tshark, a real peer, checks them.
fn loopback_copy(out: &Path, link: DataLink) {
    let mut w = PcapWriter::with_header(
        std::fs::File::create(out).unwrap(),
        PcapHeader {
            datalink: link,
            ts_resolution: TsResolution::NanoSecond,
            ..PcapHeader::default()
        },
    )
    .unwrap();
    weir_dp::capture::Capture::open(&fixture("mix.pcap"))
        .unwrap()
        .for_each(|r| {
            let family: [u8; 4] = if link == DataLink::NULL {
                24u32.to_le_bytes()
            } else {
                24u32.to_be_bytes()
            };
            let mut data = family.to_vec();
            data.extend_from_slice(&r.data[14..]);
            let len = data.len() as u32;
            w.write_packet(&PcapPacket::new(Duration::from_nanos(r.ts_ns), len, &data))
                .unwrap();
        })
        .unwrap();
}

#[test]
fn every_conversion_of_the_mix_gives_its_classes() {
    if !tools(
        &["editcap", "mergecap", "capinfos", "tshark", "gzip", "zstd"],
        false,
    ) {
        return;
    }
    let d = Scratch::new("captures-conversions");
    let mix = fixture("mix.pcap");
    let want = verdict_counts(&replay(&[&mix]));
    assert_eq!(want["truncated"], 0);
    let m = mix.display();
    let p = |n: &str| d.path(n).display().to_string();
    // Snap lengths: 96 bytes is what operators capture headers with, and holds the
    // longest headers of the mix (Ethernet + IPv6 + TCP with 40 bytes of options).
    sh(&format!("editcap -s 96 {m} {}", p("snap96.pcap")));
    sh(&format!(
        "editcap -s 94 -F pcapng {m} {}",
        p("snap94.pcapng")
    ));
    // Raw IP: the Ethernet header chopped off, the link type set.
    sh(&format!("editcap -C 14 -T rawip {m} {}", p("rawip.pcap")));
    sh(&format!("editcap -C 14 -T rawip6 {m} {}", p("rawip6.pcap")));
    // pcapng with two interfaces of different link types: the first half as Ethernet,
    // the second as raw IP, merged in time order.
    sh(&format!("editcap -r {m} {} 1-180", p("first.pcap")));
    sh(&format!(
        "editcap -r {m} {} 181-373 && editcap -C 14 -T rawip {} {}",
        p("second-eth.pcap"),
        p("second-eth.pcap"),
        p("second.pcap")
    ));
    sh(&format!(
        "mergecap -F pcapng -w {} {} {}",
        p("two-links.pcapng"),
        p("first.pcap"),
        p("second.pcap")
    ));
    // Compressed, by content: the names say nothing.
    sh(&format!("gzip -c {m} > {}", p("mix-gzip.bin")));
    sh(&format!("zstd -q -c {m} > {}", p("mix-zstd.bin")));
    sh(&format!(
        "editcap -s 96 -F pcapng {m} - | gzip -c > {}",
        p("snap96.pcapng.gz")
    ));
    loopback_copy(&d.path("null.pcap"), DataLink::NULL);
    loopback_copy(&d.path("loop.pcap"), DataLink::LOOP);

    assert_eq!(encapsulation(&d.path("rawip.pcap")), "Raw IP");
    assert_eq!(encapsulation(&d.path("two-links.pcapng")), "Per packet");
    for lb in ["null.pcap", "loop.pcap"] {
        assert_eq!(tshark_ipv6_frames(&d.path(lb)), 373, "tshark reads {lb}");
    }
    let cases = [
        "snap96.pcap",
        "snap94.pcapng",
        "rawip.pcap",
        "rawip6.pcap",
        "two-links.pcapng",
        "mix-gzip.bin",
        "mix-zstd.bin",
        "snap96.pcapng.gz",
        "null.pcap",
        "loop.pcap",
    ];
    for c in cases {
        let got = verdict_counts(&replay(&[&d.path(c)]));
        assert_eq!(got, want, "{c} classifies as the Ethernet original");
    }

    // From standard input.
    let o = run(Command::new("sh").args([
        "-c",
        &format!(
            "zstd -q -c {m} | {} replay --json -",
            env!("CARGO_BIN_EXE_weir-dp")
        ),
    ]));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(verdict_counts(&v), want, "stdin");

    // Cut inside the headers: those frames are `truncated`, never `malformed`, and every
    // frame is still counted once.
    sh(&format!("editcap -s 70 {m} {}", p("snap70.pcap")));
    let v = replay(&[&d.path("snap70.pcap")]);
    let truncated = v["truncated"].as_u64().unwrap();
    assert!(truncated > 0, "a 70-byte snap cuts TCP options");
    assert_eq!(v["reasons"]["malformed"], want["reasons"]["malformed"]);
    let classes: u64 = v["classes"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(
        v["outbound"].as_u64().unwrap() + v["host"].as_u64().unwrap() + truncated + classes,
        v["packets"].as_u64().unwrap()
    );
}

#[test]
fn out_dir_keeps_link_types_and_both_lengths() {
    if !tools(&["editcap", "mergecap", "capinfos", "tshark"], false) {
        return;
    }
    let d = Scratch::new("captures-out-dir");
    let m = fixture("mix.pcap");
    let m = m.display();
    let p = |n: &str| d.path(n).display().to_string();
    sh(&format!("editcap -r {m} {} 1-180", p("first.pcap")));
    sh(&format!(
        "editcap -r {m} {} 181-373 && editcap -C 14 -T rawip {} {} && editcap -s 80 {} {}",
        p("second-eth.pcap"),
        p("second-eth.pcap"),
        p("second-raw.pcap"),
        p("second-raw.pcap"),
        p("second.pcap")
    ));
    sh(&format!(
        "mergecap -F pcapng -w {} {} {}",
        p("two.pcapng"),
        p("first.pcap"),
        p("second.pcap")
    ));
    let out = d.path("out");
    let o = weir_dp(&[
        "replay",
        "--json",
        &p("two.pcapng"),
        "--out-dir",
        &out.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let eth = out.join("known_good.pcap");
    let raw = out.join("known_good.raw.pcap");
    assert_eq!(encapsulation(&eth), "Ethernet");
    assert_eq!(encapsulation(&raw), "Raw IP");
    let frames = |f: &Path| {
        let o = run(Command::new("capinfos").args(["-c", "-M"]).arg(f));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("Number of packets:"))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap()
    };
    assert!(frames(&eth) > 0 && frames(&raw) > 0);
    assert_eq!(
        frames(&eth) + frames(&raw),
        v["classes"]["known_good"].as_u64().unwrap()
    );
    // The raw half was cut at 80 bytes (IPv6 + TCP with every option of the mix): its
    // output keeps the original lengths.
    let o = run(Command::new("tshark").args(["-n", "-r"]).arg(&raw).args([
        "-T",
        "fields",
        "-e",
        "frame.len",
        "-e",
        "frame.cap_len",
    ]));
    let cut = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| {
            let n: Vec<u64> = l.split('\t').filter_map(|x| x.parse().ok()).collect();
            n.len() == 2 && n[0] > n[1]
        })
        .count();
    assert!(cut > 0, "frames longer on the wire than captured");
}

#[test]
fn expect_passes_on_a_fixture_and_lists_a_changed_label() {
    let d = Scratch::new("captures-expect");
    let mix = fixture("mix.pcap").display().to_string();
    let verdicts = fixture("mix.verdicts");
    let o = weir_dp(&["replay", &mix, "--expect", &verdicts.display().to_string()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // One label changed: exit 1, the frame named with its capture time and both labels.
    let text = std::fs::read_to_string(&verdicts).unwrap();
    let changed: String = text
        .lines()
        .map(|l| {
            if l.starts_with("3 known-good") {
                l.replacen("3 known-good", "3 ssa-violation", 1)
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(changed, text.trim_end());
    std::fs::write(d.path("changed.verdicts"), changed).unwrap();
    let o = weir_dp(&[
        "replay",
        &mix,
        "--expect",
        &d.path("changed.verdicts").display().to_string(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("1 of the expected verdicts differ")
            && err.contains("frame 3 (capture time 1767225600.")
            && err.contains("expected ssa-violation, got known-good"),
        "{err}"
    );

    // --format labels writes what --expect reads; CSV and JSON Lines have a line a frame.
    let labels = d.path("today.verdicts");
    let o = weir_dp(&[
        "replay",
        &mix,
        "--verdicts",
        &labels.display().to_string(),
        "--format",
        "labels",
    ]);
    assert!(o.status.success());
    let o = weir_dp(&["replay", &mix, "--expect", &labels.display().to_string()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = d.path("v.csv");
    let jsonl = d.path("v.jsonl");
    for (path, fmt) in [(&csv, "csv"), (&jsonl, "jsonl")] {
        let o = weir_dp(&[
            "replay",
            &mix,
            "--verdicts",
            &path.display().to_string(),
            "--format",
            fmt,
        ]);
        assert!(o.status.success());
    }
    let csv = std::fs::read_to_string(&csv).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("index,time_ns,label,class,reason,worker,slice")
    );
    assert_eq!(lines.count(), 373);
    let first: Value = serde_json::from_str(
        std::fs::read_to_string(&jsonl)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["index"], 0);
    assert_eq!(first["label"], "assumed-good");
    assert!(first["slice"].is_u64() && first["worker"].is_u64());

    // A bad expected file is one clear error naming the line.
    std::fs::write(d.path("bad.verdicts"), "0 assumed-good\n1 outbund\n").unwrap();
    let o = weir_dp(&[
        "replay",
        &mix,
        "--expect",
        &d.path("bad.verdicts").display().to_string(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad.verdicts:2: `outbund` is not a verdict label"),
        "{err}"
    );
}

/// Stops what it started: tcpdumps by PID, the namespace and the veth pair.
struct Lab {
    ns: String,
    veth: String,
    dumps: Vec<std::process::Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.dumps {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// Wait until `path` holds `n` frames (tcpdump writes as it goes with `-U`).
fn wait_for_frames(path: &Path, n: u64, within: Duration) -> u64 {
    let start = Instant::now();
    let mut last = 0;
    while start.elapsed() < within {
        let o = Command::new("capinfos")
            .args(["-c", "-M"])
            .arg(path)
            .output();
        if let Ok(o) = o {
            last = String::from_utf8_lossy(&o.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("Number of packets:"))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0);
            if last >= n {
                return last;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    last
}

#[test]
fn tcpdump_captures_of_the_replayed_mix_give_its_classes() {
    if !tools(&["ip", "tcpdump", "tcpreplay", "capinfos"], true) {
        return;
    }
    let d = Scratch::new("captures-tcpdump");
    let id = std::process::id() % 100_000;
    let mut lab = Lab {
        ns: format!("weircap{id}"),
        veth: format!("wcap{id}a"),
        dumps: Vec::new(),
    };
    let (a, b) = (lab.veth.clone(), format!("wcap{id}b"));
    sh(&format!(
        "ip netns add {ns} && ip link add {a} type veth peer name {b} && ip link set {b} netns {ns} \
         && sysctl -qw net.ipv6.conf.{a}.disable_ipv6=1 \
         && ip netns exec {ns} sysctl -qw net.ipv6.conf.{b}.disable_ipv6=1 \
         && ip link set {a} up && ip netns exec {ns} ip link set {b} up",
        ns = lab.ns
    ));
    // Inbound only, so nothing the namespace's kernel sends is captured; -U writes each
    // frame as it comes, so the test can wait for all of them.
    let any = d.path("any.pcap");
    let snapped = d.path("s96.pcap");
    for (iface, path, extra) in [("any", &any, ""), (b.as_str(), &snapped, "-s 96")] {
        let child = Command::new("sh")
            .args([
                "-c",
                &format!(
                    "exec ip netns exec {} tcpdump -i {iface} -Q in -U -n {extra} -w {}",
                    lab.ns,
                    path.display()
                ),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        lab.dumps.push(child);
    }
    // tcpdump is listening once it has written the file header.
    let start = Instant::now();
    while !(any.exists() && snapped.exists()) && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    // At the capture's own pace, so the timestamps keep its spacing (rate and timeouts).
    sh(&format!(
        "tcpreplay -q -i {a} {} >/dev/null",
        fixture("mix.pcap").display()
    ));
    assert_eq!(wait_for_frames(&any, 373, Duration::from_secs(10)), 373);
    assert_eq!(wait_for_frames(&snapped, 373, Duration::from_secs(10)), 373);
    drop(lab);

    assert_eq!(encapsulation(&any), "Linux cooked-mode capture v2");
    let want = verdict_counts(&replay(&[&fixture("mix.pcap")]));
    assert_eq!(
        verdict_counts(&replay(&[&any])),
        want,
        "tcpdump -i any (SLL2)"
    );
    assert_eq!(
        verdict_counts(&replay(&[&snapped])),
        want,
        "tcpdump -s 96 on the veth"
    );
}
