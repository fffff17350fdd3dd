//! Fuzz target: a client's bytes through `weir_terminator::http::HttpConn` with the echo
//! adapter, split in two at a point the fuzzer picks (the first two bytes). Bad input must
//! end in a status and a close, never a panic; the buffer must stay within its bound; and,
//! once EOF is fed, the output must not depend on where the stream was split (the
//! `100 Continue` interim answer excepted, which only a split can trigger).
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_model::config::HttpConfig;
use weir_terminator::adapter::{build, Adapter};
use weir_terminator::http::{ConnAction, HttpConn, RETAIN_BYTES};

/// Small limits, so that the fuzzer reaches 431 and 413 with short inputs.
const LIMITS: HttpConfig = HttpConfig {
    max_header_bytes: 256,
    max_headers: 8,
    max_body_bytes: 64,
};

fn run(pieces: &[&[u8]], adapter: &mut dyn Adapter) -> Vec<u8> {
    let bound = RETAIN_BYTES.max((LIMITS.max_header_bytes + LIMITS.max_body_bytes + 1) as usize);
    let mut conn = HttpConn::new(LIMITS);
    let mut out = Vec::new();
    let mut closed = false;
    for piece in pieces {
        let before = out.len();
        let action = conn.on_data(piece, adapter, &mut out);
        if closed {
            assert_eq!(
                (action, out.len()),
                (ConnAction::Close, before),
                "input after close is ignored"
            );
        }
        closed = action == ConnAction::Close;
        assert!(
            conn.buffered() <= bound,
            "buffer {} over {bound}",
            conn.buffered()
        );
    }
    assert_eq!(conn.on_eof(&mut out), ConnAction::Close);
    assert!(out.is_empty() || out.starts_with(b"HTTP/1.1 "));
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((split, data)) = data.split_first_chunk::<2>() else {
        return;
    };
    let at = usize::from(u16::from_le_bytes(*split)) % (data.len() + 1);
    let mut adapter = build(&weir_model::config::AdapterConfig::Echo).expect("echo builds");
    let whole = run(&[data], adapter.as_mut());
    let split = run(&[&data[..at], &data[at..]], adapter.as_mut());
    let continues = |o: &[u8]| o.windows(14).any(|w| w == b" 100 Continue\r");
    if !continues(&whole) && !continues(&split) {
        assert_eq!(whole, split, "output depends on the split at {at}");
    }
});
