//! Golden tests: every packet of every bundled fixture gets the verdict written beside it.
//!
//! A fixture is `pcap-fixtures/NAME.pcap` with `NAME.verdicts` (one line per frame:
//! `INDEX LABEL [# note]`, labels as `Disposition::label`) and optionally `NAME.toml`, the
//! config it is replayed under (the built-in default otherwise).

use std::path::{Path, PathBuf};

use weir_dp::capture::Capture;
use weir_dp::replay::{replay, ReplayOptions, REPLAY_SEED};
use weir_dp::{Classifier, Limits, Policy, Vantage};
use weir_model::config::Config;
use weir_model::Disposition;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pcap-fixtures")
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

/// The fixture's labels, every frame's (indexes count up from 0 without gaps), read by the
/// parser `replay --expect` uses.
fn expected(pcap: &Path) -> Vec<String> {
    let path = pcap.with_extension("verdicts");
    let lines = weir_dp::verdicts::load_expected(&path).unwrap_or_else(|e| panic!("{e}"));
    for (i, e) in lines.iter().enumerate() {
        assert_eq!(
            e.index,
            i as u64,
            "{}:{}: a fixture names every frame, from 0",
            path.display(),
            e.line
        );
    }
    lines.into_iter().map(|e| e.label).collect()
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
            .map(|w| w.stats.known_good + w.stats.assumed_good + w.stats.suspect)
            .sum();
        let queued = report.classes["known_good"]
            + report.classes["assumed_good"]
            + report.classes["suspect"];
        assert_eq!(drained, queued, "{}", pcap.display());
    }
}

/// DESIGN.md, "Slices must spread clients": 2,000 clients from seven real-world networks
/// (2001:200::/23, 2003::/19, 2400::/12, 2600::/12, 2800::/12, 2a00::/12, 2c00::/12), one
/// new flow each, with 4 workers. Under the default rule no worker may get more than 30% of
/// the new flows; under the seed's src-bits rule the same clients cluster and the bound
/// fails — the reason src-mix is the default.
#[test]
fn the_default_rule_spreads_real_world_clients_over_workers() {
    let shares = |name: &str| -> Vec<f64> {
        let pcap = fixture_dir().join(format!("{name}.pcap"));
        let cfg = config_for(&pcap);
        assert_eq!(cfg.dataplane.workers, 4, "{name}");
        let report = replay(&cfg, &[pcap], &ReplayOptions::default()).expect("replay works");
        let total: u64 = report.workers.iter().map(|w| w.stats.new_flows).sum();
        assert_eq!(total, 2000, "{name}: every client's SYN is a new flow");
        report.workers.iter().map(|w| w.new_flow_share).collect()
    };
    let mix = shares("spread");
    let max = mix.iter().copied().fold(0.0, f64::max);
    assert!(
        max <= 0.30,
        "src-mix: a worker got {:.1}% of the new flows: {mix:?}",
        100.0 * max
    );
    let bits = shares("spread-src-bits");
    let max_bits = bits.iter().copied().fold(0.0, f64::max);
    assert!(
        max_bits > 0.30,
        "src-bits was expected to fail the bound: {bits:?}"
    );
    eprintln!("new-flow shares per worker: src-mix {mix:.3?}, src-bits {bits:.3?}");
}

#[test]
fn a_rule_that_clusters_clients_is_warned_about() {
    let src_bits = config_for(&fixture_dir().join("spread-src-bits.pcap"));
    let report = replay(
        &src_bits,
        &[fixture_dir().join("spread-src-bits.pcap")],
        &ReplayOptions::default(),
    )
    .unwrap();
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(
        report.warnings[0].contains("src-mix"),
        "{:?}",
        report.warnings
    );
    assert!(report.table().contains("warning: rule src-bits"));
    let default = replay(
        &Config::default(),
        &[fixture_dir().join("mix.pcap")],
        &ReplayOptions::default(),
    )
    .unwrap();
    assert!(default.warnings.is_empty(), "{:?}", default.warnings);
    // The bundled mix keeps both default workers busy.
    assert!(
        default.workers.iter().all(|w| w.stats.new_flows > 0),
        "{:?}",
        default.workers
    );
}
