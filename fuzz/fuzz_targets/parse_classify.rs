//! Fuzz target: arbitrary bytes through the parser, the outbound tracker and the
//! classifier, under the built-in default policy. Any panic, overflow or out-of-bounds
//! access is a bug: bad input must always end in a counted verdict.
#![no_main]

use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use weir_dp::{Classifier, Limits, Policy, Vantage};
use weir_model::config::Config;

fn classifiers() -> &'static Mutex<(Classifier, Classifier)> {
    static C: OnceLock<Mutex<(Classifier, Classifier)>> = OnceLock::new();
    C.get_or_init(|| {
        let cfg = Config::default();
        let limits = Limits {
            flow_table_capacity: 1 << 12,
            rate_table_capacity: 1 << 8,
            ..Limits::from_config(&cfg)
        };
        let policy = Policy::from_config(&cfg).expect("default policy");
        Mutex::new((
            Classifier::new(policy.clone(), limits, Vantage::Replay, 1),
            Classifier::new(policy, limits, Vantage::Port, 2),
        ))
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = weir_wire::parse_frame(data);
    let _ = weir_wire::peek_addresses(data);
    let now = data
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes);
    if let Ok(mut g) = classifiers().lock() {
        let (replay, port) = &mut *g;
        let before = replay.counters().packets();
        let _ = replay.classify(data, now);
        // Every frame is counted exactly once.
        assert_eq!(replay.counters().packets(), before + 1);
        port.observe_tx(data, None, now);
        let _ = port.classify(data, now);
    }
});
