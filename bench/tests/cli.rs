//! weir-bench as its users run it: `gen` writes the workloads the speed figures are
//! measured on, `run` puts one through the pipeline and accounts for every frame, and a
//! bad argument is a clear error, not a panic. (Building this test also makes
//! `cargo test --workspace` build the weir-bench binary, which the cluster tests run as
//! their load client.)

use std::process::{Command, Output};

use weir_testkit::Scratch;

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir-bench"))
        .args(args)
        .output()
        .expect("weir-bench runs")
}

/// `f` in `s`, as an argument.
fn at(s: &Scratch, f: &str) -> String {
    s.path(f).display().to_string()
}

/// The `run` report's `key value` pairs.
fn field(report: &str, key: &str) -> u64 {
    let mut words = report.split_whitespace();
    while let Some(w) = words.next() {
        if w == key {
            return words
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(u64::MAX);
        }
    }
    panic!("no {key} in {report}");
}

#[test]
fn established_data_without_its_handshakes_is_suspect_and_every_frame_drained() {
    let s = Scratch::new("bench-est");
    let (warm, data) = (at(&s, "warm.pcap"), at(&s, "data.pcap"));
    let out = bench(&[
        "gen",
        "--workload",
        "established",
        "--flows",
        "64",
        "--warm",
        &warm,
        "--packets",
        "1000",
        "--out",
        &data,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Data without its handshakes: every frame is a suspect (no flow), and every one of
    // them reaches a worker.
    let out = bench(&["run", &data]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = String::from_utf8_lossy(&out.stdout);
    assert_eq!(field(&r, "packets"), 1000, "{r}");
    assert_eq!(field(&r, "suspect"), 1000, "{r}");
    assert_eq!(field(&r, "drained"), 1000, "{r}");
}

#[test]
fn mix_and_flood_are_classified_and_accounted_for() {
    let s = Scratch::new("bench-mix");
    for w in ["mix", "flood"] {
        let f = at(&s, &format!("{w}.pcap"));
        let out = bench(&["gen", "--workload", w, "--packets", "2000", "--out", &f]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = bench(&["run", &f]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r = String::from_utf8_lossy(&out.stdout);
        let queued = field(&r, "known_good") + field(&r, "assumed_good") + field(&r, "suspect");
        assert_eq!(field(&r, "packets"), 2000, "{r}");
        assert_eq!(
            field(&r, "drained"),
            queued,
            "{w}: every queued frame drained: {r}"
        );
        if w == "flood" {
            assert!(field(&r, "reject") > 1900, "flood is rejected: {r}");
        } else {
            assert!(
                field(&r, "known_good") > 0,
                "mix has known-good traffic: {r}"
            );
        }
    }
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    let out = bench(&[
        "gen",
        "--workload",
        "nope",
        "--packets",
        "1",
        "--out",
        "/dev/null",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("possible values"), "{err}");
    let out = bench(&["run", "/nonexistent/weir-bench.pcap"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("weir-bench.pcap"), "names the file: {err}");
}

#[test]
fn a_reader_that_has_gone_ends_the_report_quietly() {
    // `weir-bench run … | head -0`: the report's write fails with a closed pipe. That ends
    // the output, exit 0, no panic (as `println!` made it).
    use std::process::Stdio;
    let s = Scratch::new("bench-pipe");
    let cap = at(&s, "mix.pcap");
    let gen = bench(&[
        "gen",
        "--workload",
        "mix",
        "--packets",
        "200",
        "--out",
        &cap,
    ]);
    assert!(
        gen.status.success(),
        "{}",
        String::from_utf8_lossy(&gen.stderr)
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir-bench"))
        .args(["run", &cap])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir-bench runs");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("weir-bench ends");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {err}", out.status);
    assert!(!err.contains("panicked"), "{err}");
}
