//! Golden tests: every packet of every bundled fixture gets the verdict written beside it.
//!
//! A fixture is `pcap-fixtures/NAME.pcap` with `NAME.verdicts` (one line per frame:
//! `INDEX LABEL [# note]`, labels as `Disposition::label`) and optionally `NAME.toml`, the
//! config it is replayed under (the built-in default otherwise).

use std::path::{Path, PathBuf};

use weir_dp::capture::Capture;
use weir_dp::replay::{replay, ReplayOptions, REPLAY_SEED};
use weir_dp::{Classifier, Config, Disposition, Limits, Policy, Vantage};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../pcap-fixtures")
}

fn fixtures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixture_dir())
        .expect("pcap-fixtures/ is readable")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
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

fn expected(pcap: &Path) -> Vec<String> {
    let path = pcap.with_extension("verdicts");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut it = line.split_whitespace();
        let idx: usize = it
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{}:{}: bad index", path.display(), n + 1));
        assert_eq!(
            idx,
            out.len(),
            "{}:{}: indexes must count up from 0",
            path.display(),
            n + 1
        );
        let label = it
            .next()
            .unwrap_or_else(|| panic!("{}:{}: no label", path.display(), n + 1));
        out.push(label.to_string());
    }
    out
}

fn classify_all(pcap: &Path, cfg: &Config) -> Vec<Disposition> {
    let policy = Policy::from_config(cfg).expect("fixture config is valid");
    let mut clf = Classifier::new(
        policy,
        Limits::from_config(cfg),
        Vantage::Replay,
        REPLAY_SEED,
    );
    let mut cap = Capture::open(pcap).expect("fixture opens");
    let mut got = Vec::new();
    cap.for_each(|r| got.push(clf.classify(r.data, r.ts_ns)))
        .expect("fixture reads to the end");
    got
}

#[test]
fn there_are_fixtures() {
    assert!(
        fixtures().len() >= 5,
        "expected the bundled fixtures in {}",
        fixture_dir().display()
    );
}

#[test]
fn every_fixture_packet_gets_its_expected_verdict() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for pcap in fixtures() {
        let cfg = config_for(&pcap);
        let want = expected(&pcap);
        let got = classify_all(&pcap, &cfg);
        let name = pcap.file_name().unwrap().to_string_lossy().to_string();
        if want.len() != got.len() {
            failures.push(format!(
                "{name}: {} frames, {} expected verdicts",
                got.len(),
                want.len()
            ));
            continue;
        }
        for (i, (w, g)) in want.iter().zip(&got).enumerate() {
            checked += 1;
            if w != g.label() {
                failures.push(format!("{name} frame {i}: expected {w}, got {}", g.label()));
            }
        }
    }
    assert!(checked > 0);
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn replay_report_agrees_with_per_packet_verdicts() {
    for pcap in fixtures() {
        let cfg = config_for(&pcap);
        let want = expected(&pcap);
        let report = replay(&cfg, std::slice::from_ref(&pcap), &ReplayOptions::default())
            .expect("replay works");
        let count = |label: &str| want.iter().filter(|l| *l == label).count() as u64;
        assert_eq!(report.packets, want.len() as u64, "{}", pcap.display());
        assert_eq!(report.outbound, count("outbound"));
        assert_eq!(report.host, count("host"));
        assert_eq!(report.classes["known_good"], count("known-good"));
        assert_eq!(report.classes["assumed_good"], count("assumed-good"));
        for (reason, n) in &report.reasons {
            assert_eq!(*n, count(reason), "{} reason {reason}", pcap.display());
        }
        // Nothing queued is lost: the workers drained every queued packet.
        let drained: u64 = report
            .workers
            .iter()
            .map(|w| w.known_good + w.assumed_good + w.suspect)
            .sum();
        let queued = report.classes["known_good"]
            + report.classes["assumed_good"]
            + report.classes["suspect"];
        assert_eq!(drained, queued, "{}", pcap.display());
    }
}
