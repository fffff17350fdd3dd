//! Frames: one control message as postcard bytes, at most [`MAX_FRAME`] long.
//!
//! Everything a daemon reads from its control socket comes through [`decode`], so it is the
//! one place where untrusted bytes meet the protocol types. It refuses, with an error that
//! says which rule was broken:
//!
//! - more than [`MAX_FRAME`] bytes ([`FrameError::Oversize`]): a peer cannot make us decode
//!   (and allocate for) an arbitrarily large message;
//! - no bytes at all ([`FrameError::Empty`]): on a `SOCK_SEQPACKET` socket an empty datagram
//!   reads like end-of-connection, so no message may encode to nothing;
//! - bytes postcard cannot decode as the expected type, including a valid encoding cut
//!   short ([`FrameError::Malformed`]);
//! - bytes left over after a complete message ([`FrameError::Trailing`]): a frame is exactly
//!   one message, so leftovers mean the peer and we disagree about the message type.
//!
//! Why postcard: compact, `serde`-derived (the protocol types stay plain data), and its
//! decoder is built for untrusted input — lengths are checked against the remaining buffer
//! before anything is allocated for them. It is not self-describing, so the frame carries no
//! field names and the protocol version in the hello is what keeps both sides in step.
//! Rejected: JSON (several times larger, and the stats carry histograms as bytes), bincode
//! (fixed-width integers by default, and no-std-oriented limits to configure by hand).

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::proto::MAX_FRAME;

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame is longer than the protocol allows.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    Oversize {
        /// Its length.
        len: usize,
        /// [`MAX_FRAME`].
        max: usize,
    },
    /// The bytes are not a valid encoding of the expected message (or could not be encoded).
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A complete message was followed by this many more bytes.
    #[error("{0} unexpected bytes after the end of the message")]
    Trailing(usize),
    /// The frame has no bytes.
    #[error("empty frame")]
    Empty,
}

/// Encode `msg` as one frame.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let bytes = postcard::to_stdvec(msg)
        .map_err(|e| FrameError::Malformed(format!("cannot encode message: {e}")))?;
    if bytes.is_empty() {
        return Err(FrameError::Empty);
    }
    if bytes.len() > MAX_FRAME {
        return Err(FrameError::Oversize {
            len: bytes.len(),
            max: MAX_FRAME,
        });
    }
    Ok(bytes)
}

/// Decode one frame holding exactly one `T`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, FrameError> {
    if bytes.len() > MAX_FRAME {
        return Err(FrameError::Oversize {
            len: bytes.len(),
            max: MAX_FRAME,
        });
    }
    if bytes.is_empty() {
        return Err(FrameError::Empty);
    }
    let (msg, rest) = postcard::take_from_bytes::<T>(bytes).map_err(malformed)?;
    if !rest.is_empty() {
        return Err(FrameError::Trailing(rest.len()));
    }
    Ok(msg)
}

/// Decode only the first part of a frame, ignoring what follows: for reading the magic and
/// version of a hello whose remainder may be laid out differently (another version).
pub(crate) fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, FrameError> {
    if bytes.len() > MAX_FRAME {
        return Err(FrameError::Oversize {
            len: bytes.len(),
            max: MAX_FRAME,
        });
    }
    postcard::take_from_bytes::<T>(bytes)
        .map(|(msg, _rest)| msg)
        .map_err(malformed)
}

fn malformed(e: postcard::Error) -> FrameError {
    match e {
        postcard::Error::DeserializeUnexpectedEnd => {
            FrameError::Malformed("truncated: the message ends early".to_string())
        }
        e => FrameError::Malformed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::proto::{CtlRequest, DpReply, DpRequest, Envelope, Hello, HelloReply, Role};
    use weir_ssa::Rule;

    /// The wire format of a hello, pinned: a change here is a protocol change and needs a
    /// new `PROTOCOL_VERSION`.
    #[test]
    fn hello_golden_bytes() {
        let hello = Hello::new(Role::Cli, "x");
        let bytes = encode(&hello).unwrap();
        assert_eq!(bytes, [b'w', b'e', b'i', b'r', 4, 0, 1, b'x']);
        assert_eq!(decode::<Hello>(&bytes).unwrap(), hello);
    }

    #[test]
    fn envelope_golden_bytes() {
        let env = Envelope {
            id: 300,
            body: CtlRequest::SlicesMove {
                first: 1,
                last: 2,
                worker: 3,
            },
        };
        let bytes = encode(&env).unwrap();
        // id 300 = varint ac 02; SlicesMove is variant 7.
        assert_eq!(bytes, [0xac, 0x02, 7, 1, 2, 3]);
        assert_eq!(decode::<Envelope<CtlRequest>>(&bytes).unwrap(), env);
    }

    #[test]
    fn refuses_empty() {
        assert_eq!(decode::<Hello>(&[]), Err(FrameError::Empty));
        assert_eq!(encode(&()), Err(FrameError::Empty));
    }

    #[test]
    fn refuses_oversize() {
        let bytes = vec![0u8; MAX_FRAME + 1];
        assert_eq!(
            decode::<Envelope<DpRequest>>(&bytes),
            Err(FrameError::Oversize {
                len: MAX_FRAME + 1,
                max: MAX_FRAME
            })
        );
        let big = Envelope {
            id: 1,
            body: DpReply::Error {
                message: "x".repeat(MAX_FRAME),
            },
        };
        assert!(matches!(encode(&big), Err(FrameError::Oversize { .. })));
    }

    #[test]
    fn refuses_trailing() {
        let mut bytes = encode(&Envelope {
            id: 1,
            body: DpRequest::Ping,
        })
        .unwrap();
        bytes.extend_from_slice(&[0, 0]);
        assert_eq!(
            decode::<Envelope<DpRequest>>(&bytes),
            Err(FrameError::Trailing(2))
        );
    }

    #[test]
    fn refuses_unknown_variant() {
        // DpRequest has three variants; 9 is none of them.
        let err = decode::<Envelope<DpRequest>>(&[1, 9]).unwrap_err();
        assert!(matches!(err, FrameError::Malformed(_)), "{err}");
    }

    #[test]
    fn truncation_says_so() {
        let bytes = encode(&Hello::new(Role::Dataplane, "dp0")).unwrap();
        let err = decode::<Hello>(&bytes[..bytes.len() - 1]).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    fn rule() -> impl Strategy<Value = Rule> {
        prop_oneof![
            Just(Rule::Any),
            Just(Rule::Content),
            any::<u8>().prop_map(|p| Rule::SrcMix { src_prefix_len: p }),
            (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(s, d, l)| Rule::SrcBits {
                src_start: s,
                dst_start: d,
                len: l
            }),
            (any::<[u8; 16]>(), any::<u8>()).prop_map(|(key, p)| Rule::KeyedHash {
                key,
                src_prefix_len: p
            }),
            (any::<[u8; 16]>(), any::<u8>(), any::<u64>(), any::<u32>()).prop_map(
                |(key, p, period_s, skew)| Rule::TimeHop {
                    key,
                    src_prefix_len: p,
                    period_s,
                    skew
                }
            ),
        ]
    }

    fn ctl_request() -> impl Strategy<Value = CtlRequest> {
        prop_oneof![
            (".{0,64}", any::<Option<u64>>())
                .prop_map(|(prefix, ttl_s)| CtlRequest::BlockAdd { prefix, ttl_s }),
            ".{0,64}".prop_map(|prefix| CtlRequest::BlockDel { prefix }),
            (any::<u32>(), any::<u32>(), any::<u16>()).prop_map(|(first, last, worker)| {
                CtlRequest::SlicesMove {
                    first,
                    last,
                    worker,
                }
            }),
            (0usize..4, any::<Option<u32>>(), any::<Option<u32>>()).prop_map(
                |(class, size, weight)| CtlRequest::RingsSet {
                    class: weir_model::Class::ALL[class],
                    size,
                    weight
                }
            ),
            rule().prop_map(CtlRequest::RulesSet),
            Just(CtlRequest::Status),
            Just(CtlRequest::ConfigReload),
        ]
    }

    proptest! {
        #[test]
        fn ctl_request_round_trips(id in any::<u64>(), body in ctl_request()) {
            let env = Envelope { id, body };
            let bytes = encode(&env).unwrap();
            prop_assert_eq!(decode::<Envelope<CtlRequest>>(&bytes).unwrap(), env);
        }

        /// Every proper prefix of a valid frame is refused: a truncated frame never decodes
        /// as some other, shorter message.
        #[test]
        fn truncated_frames_are_refused(id in any::<u64>(), body in ctl_request()) {
            let bytes = encode(&Envelope { id, body }).unwrap();
            for cut in 0..bytes.len() {
                prop_assert!(decode::<Envelope<CtlRequest>>(&bytes[..cut]).is_err());
            }
        }

        #[test]
        fn trailing_bytes_are_refused(
            id in any::<u64>(),
            body in ctl_request(),
            extra in proptest::collection::vec(any::<u8>(), 1..16),
        ) {
            let mut bytes = encode(&Envelope { id, body }).unwrap();
            bytes.extend_from_slice(&extra);
            prop_assert_eq!(
                decode::<Envelope<CtlRequest>>(&bytes),
                Err(FrameError::Trailing(extra.len()))
            );
        }

        /// Arbitrary bytes give `Ok` or `Err`, never a panic; what decodes re-encodes to a
        /// frame that decodes to the same value.
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(v) = decode::<Envelope<CtlRequest>>(&bytes) {
                prop_assert_eq!(decode::<Envelope<CtlRequest>>(&encode(&v).unwrap()).unwrap(), v);
            }
            if let Ok(v) = decode::<Envelope<DpRequest>>(&bytes) {
                prop_assert_eq!(decode::<Envelope<DpRequest>>(&encode(&v).unwrap()).unwrap(), v);
            }
            if let Ok(v) = decode::<Envelope<DpReply>>(&bytes) {
                prop_assert_eq!(decode::<Envelope<DpReply>>(&encode(&v).unwrap()).unwrap(), v);
            }
            if let Ok(v) = decode::<Hello>(&bytes) {
                prop_assert_eq!(decode::<Hello>(&encode(&v).unwrap()).unwrap(), v);
            }
            let _ = decode::<HelloReply>(&bytes);
        }
    }
}
