//! Fuzz target: configuration text. `Config::from_toml` refuses what is wrong with one
//! `FILE:LINE:COL` line and never panics; a config it accepts builds a policy or says why
//! not, without panicking either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_model::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml("fuzz.toml", text) {
        Ok(cfg) => {
            let _ = weir_dp::Policy::from_config(&cfg);
        }
        Err(e) => assert!(!e.to_string().contains('\n'), "one-line error: {e}"),
    }
});
