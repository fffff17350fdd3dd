//! `weir-dp replay` as a user runs it: exit codes, one-line errors, JSON keys, output pcaps.

use std::path::Path;
use std::process::{Command, Output};

fn weir_dp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir-dp"))
        .args(args)
        .output()
        .expect("weir-dp runs")
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../pcap-fixtures")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn tmp(name: &str) -> weir_testkit::Scratch {
    weir_testkit::Scratch::new(&format!("cli-{name}"))
}

fn one_line_error(o: &Output) -> String {
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err:?}");
    err
}

#[test]
fn json_report_has_the_interface_keys() {
    let o = weir_dp(&["replay", &fixture("mix.pcap"), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for k in ["packets", "outbound", "host", "classes", "reasons"] {
        assert!(v.get(k).is_some(), "missing key {k}");
    }
    for k in ["known_good", "assumed_good", "suspect", "reject"] {
        assert!(v["classes"][k].is_u64(), "missing class {k}");
    }
    for r in weir_model::Reason::ALL {
        assert!(
            v["reasons"][r.name()].is_u64(),
            "missing reason {}",
            r.name()
        );
    }
    assert!(v["packets"].as_u64().unwrap() > 0);
}

/// `weir-dp replay … | head -1`: the reader leaves before the report is written. The
/// replay still ends well (exit 0, nothing on stderr) instead of panicking in `println!`.
#[test]
fn a_reader_that_left_ends_the_output_quietly() {
    use std::process::Stdio;
    for extra in [&["--json"][..], &[][..]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir-dp"))
            .args(["replay", &fixture("mix.pcap")])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("weir-dp runs");
        drop(child.stdout.take()); // the read end closes before the report is written
        let o = child.wait_with_output().expect("weir-dp ends");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{extra:?}: {:?} {err}", o.status);
        assert!(!err.contains("panicked"), "{extra:?}: {err}");
    }
}

#[test]
fn table_report_for_people() {
    let o = weir_dp(&["replay", &fixture("mix.pcap")]);
    assert!(o.status.success());
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(
        s.contains("known_good") && s.contains("ssa-violation") && s.contains("Mpps"),
        "{s}"
    );
}

#[test]
fn missing_and_corrupt_files_fail_in_one_line() {
    let e = one_line_error(&weir_dp(&["replay", "/nonexistent/x.pcap"]));
    assert!(e.contains("/nonexistent/x.pcap"), "{e}");

    let d = tmp("corrupt");
    let junk = d.join("junk.pcap");
    std::fs::write(&junk, b"this is not a capture at all").unwrap();
    let e = one_line_error(&weir_dp(&["replay", junk.to_str().unwrap()]));
    assert!(e.contains("not a pcap"), "{e}");

    // A real capture cut in the middle of a record.
    let bytes = std::fs::read(fixture("mix.pcap")).unwrap();
    let cut = d.join("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() - 7]).unwrap();
    let e = one_line_error(&weir_dp(&["replay", cut.to_str().unwrap()]));
    assert!(e.contains("corrupt"), "{e}");
}

#[test]
fn bad_config_fails_with_line_and_column() {
    let d = tmp("config");
    let cfg = d.join("bad.toml");
    std::fs::write(
        &cfg,
        "[service]\napl = \"2:2001:db8:5::/64\"\n\n[rings]\nsuspect = { size = 100, weight = 1 }\n",
    )
    .unwrap();
    let e = one_line_error(&weir_dp(&[
        "replay",
        &fixture("mix.pcap"),
        "--config",
        cfg.to_str().unwrap(),
    ]));
    assert!(e.contains("bad.toml:5:"), "{e}");
    assert!(e.contains("power of two"), "{e}");
}

#[test]
fn out_dir_writes_a_pcap_per_class_and_reason() {
    let d = tmp("out");
    let o = weir_dp(&[
        "replay",
        &fixture("mix.pcap"),
        "--json",
        "--out-dir",
        d.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let frames_in = |name: &str| {
        let bytes = std::fs::read(d.join(format!("{name}.pcap"))).unwrap();
        let mut r = pcap_file::pcap::PcapReader::new(&bytes[..]).unwrap();
        let mut n = 0u64;
        while let Some(p) = r.next_packet() {
            p.unwrap();
            n += 1;
        }
        n
    };
    for class in ["known_good", "assumed_good", "suspect", "reject"] {
        assert_eq!(
            frames_in(class),
            v["classes"][class].as_u64().unwrap(),
            "{class}"
        );
    }
    for r in weir_model::Reason::ALL
        .iter()
        .filter(|r| r.class() == weir_model::Class::Reject)
    {
        let name = format!("reject-{}", r.name());
        assert_eq!(
            frames_in(&name),
            v["reasons"][r.name()].as_u64().unwrap(),
            "{name}"
        );
    }
    assert_eq!(frames_in("outbound"), v["outbound"].as_u64().unwrap());
    assert_eq!(frames_in("host"), v["host"].as_u64().unwrap());
    // Wireshark's own reader opens them.
    if let Ok(o) = Command::new("capinfos")
        .arg(d.join("known_good.pcap"))
        .output()
    {
        assert!(
            o.status.success(),
            "capinfos: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "capinfos (tshark) must be installed in CI"
        );
    }
}

#[test]
fn a_missing_capture_is_named_once() {
    let o = weir_dp(&["replay", "/nonexistent/weir.pcap"]);
    let err = one_line_error(&o);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        err.matches("No such file or directory").count(),
        1,
        "the OS error once: {err:?}"
    );
}

/// tshark's way with a capture cut short mid-record: report what could be read, warn,
/// and exit non-zero (2: the report stands, but is incomplete).
#[test]
fn a_capture_cut_short_is_reported_with_a_warning() {
    let d = tmp("cut");
    let whole = std::fs::read(fixture("mix.pcap")).unwrap();
    let cut = d.join("cut.pcap");
    std::fs::write(&cut, &whole[..3000]).unwrap();
    let o = weir_dp(&["replay", cut.to_str().unwrap(), "--json"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["packets"].as_u64().unwrap() > 0);
    assert_eq!(v["files"][0]["cut_short"], true);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cut short") && err.contains("frames read"),
        "{err}"
    );
    // The same frames as a whole capture's first ones.
    let whole_o = weir_dp(&["replay", &fixture("mix.pcap"), "--json"]);
    let w: serde_json::Value = serde_json::from_slice(&whole_o.stdout).unwrap();
    assert!(v["packets"].as_u64() < w["packets"].as_u64());
}
