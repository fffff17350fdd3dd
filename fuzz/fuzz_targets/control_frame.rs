//! Fuzz target: control frames from an untrusted peer. `weir_control::frame::decode` of
//! every message type a daemon reads must return `Ok` or `Err`, never panic, and whatever
//! decodes must re-encode to a frame that decodes to the same value. A decoded tee order
//! is checked the way weir-dp checks it (`weir_model::tee::check_settings`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_control::frame::{decode, encode};
use weir_control::proto::{CtlReply, CtlRequest, DpReply, DpRequest, Envelope, Hello, HelloReply};

/// Decode `$data` as `$t`; if that works, re-encode and decode again and compare.
/// (A macro rather than a generic fn so this crate needs no direct serde dependency.)
macro_rules! check {
    ($t:ty, $data:expr) => {
        if let Ok(v) = decode::<$t>($data) {
            let bytes = encode(&v).expect("a decoded message re-encodes");
            let again = decode::<$t>(&bytes).expect("a re-encoded message decodes");
            assert_eq!(again, v);
        }
    };
}

fuzz_target!(|data: &[u8]| {
    // A tee order from an untrusted peer: checked with an answer, never a panic.
    if let Ok(Envelope {
        body: DpRequest::Apply(snap),
        ..
    }) = decode::<Envelope<DpRequest>>(data)
    {
        if let weir_control::proto::TeeOrder::Start(spec) = &snap.tee {
            let _ = weir_model::tee::check_settings(
                &spec.filters,
                spec.sample,
                spec.snaplen.unwrap_or(weir_model::tee::limits::MIN_SNAPLEN),
            );
        }
    }
    check!(Envelope<DpRequest>, data);
    check!(Envelope<CtlRequest>, data);
    check!(Envelope<DpReply>, data);
    check!(Envelope<CtlReply>, data);
    check!(Hello, data);
    check!(HelloReply, data);
});
