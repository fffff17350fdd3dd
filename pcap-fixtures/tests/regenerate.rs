//! The checked-in fixtures are exactly what the generator writes: regenerate into a
//! temporary directory and compare every byte, and the file lists both ways.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn fixture_files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n != "Cargo.toml"
                && [".pcap", ".pcapng", ".verdicts", ".toml"]
                    .iter()
                    .any(|ext| n.ends_with(ext))
        })
        .collect()
}

#[test]
fn checked_in_fixtures_match_a_fresh_generation() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let tmp = std::env::temp_dir().join(format!("weir-fixtures-regen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    weir_fixtures::write_all(&tmp).expect("fixtures generate");

    let fresh = fixture_files(&tmp);
    let checked_in = fixture_files(&crate_dir);
    let mut problems = Vec::new();
    for missing in fresh.difference(&checked_in) {
        problems.push(format!("{missing}: generated but not checked in"));
    }
    for extra in checked_in.difference(&fresh) {
        problems.push(format!("{extra}: checked in but no longer generated"));
    }
    for name in fresh.intersection(&checked_in) {
        let a = std::fs::read(tmp.join(name)).unwrap();
        let b = std::fs::read(crate_dir.join(name)).unwrap();
        if a != b {
            let at = a
                .iter()
                .zip(&b)
                .position(|(x, y)| x != y)
                .unwrap_or(a.len().min(b.len()));
            problems.push(format!(
                "{name}: differs from a fresh generation at byte {at} ({} vs {} bytes)",
                b.len(),
                a.len()
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(
        problems.is_empty(),
        "fixtures are stale; run `cargo run -p weir-fixtures` and review the diff:\n{}",
        problems.join("\n")
    );
}

#[test]
fn generation_is_deterministic() {
    let a: Vec<Vec<u8>> = weir_fixtures::all().iter().map(|f| f.pcap()).collect();
    let b: Vec<Vec<u8>> = weir_fixtures::all().iter().map(|f| f.pcap()).collect();
    assert_eq!(a, b);
    let m1 = weir_fixtures::bench_mix(5000);
    assert_eq!(m1.len(), 5000);
    assert_eq!(m1, weir_fixtures::bench_mix(5000));
    assert!(m1.windows(2).all(|w| w[0].0 <= w[1].0));
    let f = weir_fixtures::bench_flood(3000);
    assert_eq!(f.len(), 3000);
    assert_eq!(f, weir_fixtures::bench_flood(3000));
}
