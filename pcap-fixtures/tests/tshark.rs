//! Wireshark's opinion of every fixture: frames that are not labelled `malformed` and not
//! marked `odd` must dissect without a malformed flag and without expert info of severity
//! warning or error (chat and note are fine), with checksum validation on; `capinfos`
//! must read every file.
//!
//! tshark is an external tool: when it is missing the test fails if `CI` is set and is
//! skipped with a note otherwise. `a_broken_checksum_is_caught` proves the check can fail.

use std::path::{Path, PathBuf};
use std::process::Command;

use weir_fixtures::{packet, Fixture, Frame, Label, BASE_NS};

/// Expert severities as tshark prints them (`_ws.expert.severity`).
const PI_WARN: u64 = 0x0060_0000;
const PI_ERROR: u64 = 0x0080_0000;

fn tool_available(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} (Wireshark) must be installed in CI"
        );
        eprintln!("note: {tool} not found; skipping the Wireshark check");
    }
    ok
}

/// (label, odd) per frame from a `.verdicts` file.
fn verdicts(path: &Path) -> Vec<(String, bool)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut it = l.split_whitespace().skip(1);
            let label = it.next().expect("a label").to_string();
            (label, it.next() == Some("odd"))
        })
        .collect()
}

/// Complaints tshark has about frames expected to be clean.
fn wireshark_complaints(pcap: &Path, expect: &[(String, bool)]) -> Vec<String> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args([
            "-o",
            "tcp.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "tcp.analyze_sequence_numbers:FALSE",
            "-T",
            "fields",
            "-E",
            "separator=/t",
            "-e",
            "frame.number",
            "-e",
            "_ws.expert.severity",
            "-e",
            "_ws.malformed",
            "-e",
            "_ws.expert.message",
        ])
        .output()
        .expect("tshark runs");
    let name = pcap.display();
    assert!(
        out.status.success(),
        "tshark -r {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = text.lines().collect();
    let mut complaints = Vec::new();
    if rows.len() != expect.len() {
        complaints.push(format!(
            "{name}: tshark saw {} frames, the verdicts list {}",
            rows.len(),
            expect.len()
        ));
    }
    for (row, (label, odd)) in rows.iter().zip(expect) {
        let cols: Vec<&str> = row.split('\t').collect();
        let frame = cols.first().copied().unwrap_or("?");
        if label == "malformed" || *odd {
            continue;
        }
        let severe = cols
            .get(1)
            .into_iter()
            .flat_map(|s| s.split(','))
            .filter_map(|s| s.trim().parse::<u64>().ok())
            .any(|s| s == PI_WARN || s == PI_ERROR);
        let malformed = cols.get(2).is_some_and(|s| !s.trim().is_empty());
        if severe || malformed {
            complaints.push(format!(
                "{name} frame {frame} ({label}): {}",
                cols.get(3).copied().unwrap_or("")
            ));
        }
    }
    complaints
}

fn fixture_pcaps() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    v.sort();
    v
}

#[test]
fn wireshark_agrees_that_clean_frames_are_clean() {
    if !tool_available("tshark") {
        return;
    }
    let pcaps = fixture_pcaps();
    assert!(!pcaps.is_empty(), "no fixtures found");
    let mut complaints = Vec::new();
    for pcap in &pcaps {
        complaints.extend(wireshark_complaints(
            pcap,
            &verdicts(&pcap.with_extension("verdicts")),
        ));
    }
    assert!(complaints.is_empty(), "{}", complaints.join("\n"));
}

#[test]
fn capinfos_reads_every_fixture() {
    if !tool_available("capinfos") {
        return;
    }
    for pcap in fixture_pcaps() {
        let o = Command::new("capinfos")
            .arg(&pcap)
            .output()
            .expect("capinfos runs");
        assert!(
            o.status.success(),
            "capinfos {}: {}",
            pcap.display(),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn a_broken_checksum_is_caught() {
    if !tool_available("tshark") {
        return;
    }
    let src = 0x2001_0db8_c000_0001_0000_0000_0000_0001u128;
    let dst = 0x2001_0db8_0005_0000_2001_0db8_c000_0001u128;
    let syn = weir_wire::tcp::Repr::syn(50000, 80, 1, 1440);
    let good = packet::tcp_frame(
        &packet::Link::INBOUND,
        packet::Addr::V6(src),
        packet::Addr::V6(dst),
        &syn,
    );
    let mut bad = good.clone();
    let at = 14 + 40 + 16; // TCP checksum
    bad[at] ^= 0xff;
    let frame = |data: Vec<u8>| Frame {
        ts_ns: BASE_NS,
        data,
        label: Label::AssumedGood,
        odd: false,
        note: String::new(),
    };
    let fixture = Fixture {
        name: "broken-checksum",
        summary: "self-test",
        config: None,
        frames: vec![frame(good), frame(bad)],
    };
    let dir = std::env::temp_dir().join(format!("weir-fixtures-tshark-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    fixture.write(&dir).unwrap();
    let pcap = dir.join("broken-checksum.pcap");
    let complaints = wireshark_complaints(&pcap, &verdicts(&pcap.with_extension("verdicts")));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(complaints.len(), 1, "{complaints:?}");
    assert!(complaints[0].contains("frame 2"), "{complaints:?}");
}
