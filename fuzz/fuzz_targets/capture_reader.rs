//! Fuzz target: capture files from anywhere (an operator's tcpdump, a mirror, a broken
//! download), of every link type weir reads and with any snap length. `Capture::open` and
//! reading every record must end in frames, `Err` or a capture marked cut short — never a
//! panic, and never more bytes than the file holds; and every record is classified the
//! way the replay's rx core does it (link type, cut frames padded to their wire length),
//! never panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_dp::capture::Capture;
use weir_dp::replay::REPLAY_SEED;
use weir_dp::{Classifier, Limits, Policy, Vantage};
use weir_model::config::Config;

fuzz_target!(|data: &[u8]| {
    // The reader takes a path (it streams files of any size); a per-process file in
    // memory-backed /dev/shm keeps the target fast.
    let path = std::path::PathBuf::from(format!("/dev/shm/weir-fuzz-capture-{}", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let cfg = Config::default();
    let Ok(policy) = Policy::from_config(&cfg) else {
        return;
    };
    let mut clf = Classifier::new(policy, Limits::from_config(&cfg), Vantage::Replay, REPLAY_SEED);
    if let Ok(mut cap) = Capture::open(&path) {
        let mut bytes = 0usize;
        let read = cap.for_each(|r| {
            bytes += r.data.len();
            clf.classify_received(r.data, r.orig_len, r.link, r.ts_ns);
        });
        if read.is_ok() {
            assert!(bytes <= data.len(), "records hold more bytes than the file");
        }
    }
});
