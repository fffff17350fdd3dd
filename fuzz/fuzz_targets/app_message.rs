//! Fuzz target: the messages application servers and the terminator exchange over NATS
//! (`weir_model::appmsg`). Arbitrary bytes as a reply go through the terminator's own
//! path (`weir_terminator::nats::render`: decode, check, render the header lines, slice
//! the body) and as a request through `AppRequest::decode` (what an application server
//! in Rust does). Bad input must be an error, never a panic; what decodes must encode to
//! bytes that decode to the same message (the encoders write the shortest varints, the
//! decoders also take longer ones, as postcard does), and a rendered reply must hold no CR
//! or LF inside a header line and carry the decoded body unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_model::appmsg::{encode_request, AppReply, AppRequest};
use weir_terminator::adapter::Completion;

fuzz_target!(|data: &[u8]| {
    let payload = bytes::Bytes::copy_from_slice(data);
    match (weir_terminator::nats::render(&payload), AppReply::decode(data)) {
        (Ok((Completion::Reply { status, head, body }, _)), Ok(reply)) => {
            assert_eq!(status, reply.status);
            assert_eq!(&body[..], reply.body.0);
            for line in head.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                assert!(line.ends_with(b"\r"), "header lines end in CRLF");
                assert!(
                    !line[..line.len() - 1].contains(&b'\r'),
                    "no CR inside a header line"
                );
            }
            let mut again = Vec::new();
            reply.encode(&mut again);
            assert!(again.len() <= data.len(), "the encoding is the shortest");
            assert_eq!(AppReply::decode(&again), Ok(reply), "reply round trip");
        }
        (Err(_), Err(_)) => {}
        (a, b) => panic!("render and decode disagree: {a:?} vs {b:?}"),
    }
    if let Ok(req) = AppRequest::decode(data) {
        let mut again = Vec::new();
        encode_request(
            &mut again,
            req.method,
            req.target,
            req.http_minor,
            req.client,
            req.client_port,
            req.headers.iter().map(|(n, v)| (*n, v.0)),
            req.body.0,
        );
        assert!(again.len() <= data.len(), "the encoding is the shortest");
        assert_eq!(AppRequest::decode(&again), Ok(req), "request round trip");
    }
});
