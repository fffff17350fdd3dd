//! The messages between weir's `nats` adapter and application servers: **the contract** an
//! application server implements, in any language NATS has a client for.
//!
//! **Exchange.** For each HTTP request, the terminator sends one NATS request (a publish
//! with a reply inbox) on the configured subject, payload = an [`AppRequest`]. Application
//! servers subscribe to the subject in a queue group (NATS gives each request to one member)
//! and publish one [`AppReply`] to the message's reply subject. No NATS headers are used
//! either way; the payload is all there is.
//!
//! **Encoding: postcard 1.x of the structs below** (serde's data model, fields in order, no
//! field names, no padding). Any language can read and write it with these rules alone:
//!
//! | type            | bytes                                                              |
//! |-----------------|--------------------------------------------------------------------|
//! | `u8`            | one byte                                                           |
//! | `u16`           | unsigned LEB128 varint (7 bits per byte, low first, high bit = more; writers use the shortest form, 1 to 3 bytes; readers also take longer ones, as postcard does) |
//! | `str`, `bytes`  | varint length, then that many bytes (`str`: UTF-8)                 |
//! | `[u8; 16]`      | 16 bytes, no length                                                |
//! | `seq<T>`        | varint count, then each `T`                                        |
//! | `(A, B)`        | `A` then `B`                                                       |
//!
//! Version 1, request (terminator → application server):
//!
//! | # | field         | type                 | meaning                                         |
//! |---|---------------|----------------------|-------------------------------------------------|
//! | 1 | `version`     | `u8`                 | `1`                                             |
//! | 2 | `method`      | `str`                | as sent (`GET`, `POST`, …)                      |
//! | 3 | `target`      | `str`                | request target as sent (`/a/b?c=d`)             |
//! | 4 | `http_minor`  | `u8`                 | `0` = HTTP/1.0, `1` = HTTP/1.1                   |
//! | 5 | `client`      | `[u8; 16]`           | client address: IPv6, or IPv4-mapped (`::ffff:a.b.c.d`) |
//! | 6 | `client_port` | `u16`                | client TCP port                                 |
//! | 7 | `headers`     | `seq<(str, bytes)>`  | header lines in order, names as sent, values without surrounding spaces |
//! | 8 | `body`        | `bytes`              | the body (`Content-Length` framing is the terminator's business) |
//!
//! Version 1, reply (application server → terminator):
//!
//! | # | field     | type               | meaning                                             |
//! |---|-----------|--------------------|-----------------------------------------------------|
//! | 1 | `version` | `u8`               | `1`                                                 |
//! | 2 | `status`  | `u16`              | 200..=999                                           |
//! | 3 | `headers` | `seq<(str, str)>`  | response header lines                               |
//! | 4 | `body`    | `bytes`            | the body                                            |
//!
//! The terminator writes `Content-Length`, `Connection` and `Server` itself and answers
//! `HEAD` without the body; a reply's hop-by-hop headers (`Connection`, `Keep-Alive`,
//! `Transfer-Encoding`, `Content-Length`, `TE`, `Trailer`, `Upgrade`,
//! `Proxy-Connection`, and `Server`) are dropped and counted. A reply that does not decode,
//! has another version, bytes after the body, a status outside 200..=999, more than
//! [`MAX_HEADERS`] headers or a header name or value that cannot be sent ([`AppReply::check`])
//! is answered `502` to the client and counted. A later version changes the first byte; a
//! server must not guess at a version it does not know (weir-app logs such a request and
//! leaves it unanswered, so the client gets `504` when `timeout_ms` is up).
//!
//! **Rejected.** NATS headers for the HTTP headers: NATS clients keep headers in hash maps
//! (the order of the lines is lost, and names are case-sensitive keys), values must be
//! text while HTTP allows other bytes, and a client's header could collide with weir's own
//! metadata. JSON: bodies are bytes (base64 would grow them by a third) and a decoder for
//! untrusted JSON is a larger surface than six varints. The HTTP/1.1 text itself as the
//! payload: every server would need an HTTP parser, and parsing replies in HTTP syntax
//! would put a second HTTP parser for untrusted input into the terminator. Postcard is
//! what weir's control protocol uses already, and small enough to write by hand (the
//! README has a Python version).
//!
//! The terminator encodes requests with [`encode_request`] (no allocation beyond the
//! output buffer; a test checks it against postcard's own encoding), and decodes replies
//! with [`AppReply::decode`] (zero-copy: names, values and body borrow the payload).

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The message version this build speaks.
pub const VERSION: u8 = 1;

/// Most header lines a message may carry.
pub const MAX_HEADERS: usize = 128;

/// A byte string, encoded as postcard `bytes` (varint length + bytes) and decoded without a
/// copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Blob<'a>(pub &'a [u8]);

impl Serialize for Blob<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Blob<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Blob<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                Ok(Blob(v))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// One HTTP request, as the terminator sends it (version 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRequest<'a> {
    /// [`VERSION`].
    pub version: u8,
    /// Method token as sent.
    #[serde(borrow)]
    pub method: &'a str,
    /// Request target as sent.
    #[serde(borrow)]
    pub target: &'a str,
    /// 0 = HTTP/1.0, 1 = HTTP/1.1.
    pub http_minor: u8,
    /// Client address (IPv6, or IPv4-mapped).
    pub client: [u8; 16],
    /// Client TCP port.
    pub client_port: u16,
    /// Header lines in order: (name, value).
    #[serde(borrow)]
    pub headers: Vec<(&'a str, Blob<'a>)>,
    /// Body.
    #[serde(borrow)]
    pub body: Blob<'a>,
}

/// One HTTP response, as an application server sends it (version 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppReply<'a> {
    /// [`VERSION`].
    pub version: u8,
    /// Status code, 200..=999.
    pub status: u16,
    /// Response header lines: (name, value).
    #[serde(borrow)]
    pub headers: Vec<(&'a str, &'a str)>,
    /// Body.
    #[serde(borrow)]
    pub body: Blob<'a>,
}

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MsgError {
    /// The bytes are not a message of this shape (truncated, bad varint, bad UTF-8, …).
    #[error("message does not decode: {0}")]
    Decode(String),
    /// The first byte names a version this build does not speak.
    #[error("message version {0}, this build speaks version 1")]
    Version(u8),
    /// Bytes left after the last field.
    #[error("{0} bytes after the end of the message")]
    Trailing(usize),
    /// More than [`MAX_HEADERS`] header lines.
    #[error("{0} header lines, at most 128")]
    TooManyHeaders(usize),
    /// A reply status outside 200..=999.
    #[error("reply status {0} is not a final status (200..=999)")]
    Status(u16),
    /// A header name that is not an RFC 9110 token.
    #[error("header {index}: name {name:?} is not a token")]
    HeaderName {
        /// Which line (0-based).
        index: usize,
        /// The name, cut to 64 characters.
        name: String,
    },
    /// A header value with CR, LF, NUL or another control character.
    #[error("header {index} ({name}): the value holds a control character")]
    HeaderValue {
        /// Which line (0-based).
        index: usize,
        /// Its name.
        name: String,
    },
}

fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, MsgError> {
    match bytes.first() {
        None => return Err(MsgError::Decode("empty message".into())),
        Some(&v) if v != VERSION => return Err(MsgError::Version(v)),
        Some(_) => {}
    }
    let (msg, rest) = postcard::take_from_bytes::<T>(bytes).map_err(|e| {
        // postcard's messages are short and fixed ("Hit the end of buffer, expected more data").
        MsgError::Decode(e.to_string())
    })?;
    if !rest.is_empty() {
        return Err(MsgError::Trailing(rest.len()));
    }
    Ok(msg)
}

impl<'a> AppRequest<'a> {
    /// Decode a request (application servers' side); names, values and body borrow `bytes`.
    pub fn decode(bytes: &'a [u8]) -> Result<AppRequest<'a>, MsgError> {
        let r: AppRequest<'a> = decode(bytes)?;
        if r.headers.len() > MAX_HEADERS {
            return Err(MsgError::TooManyHeaders(r.headers.len()));
        }
        Ok(r)
    }

    /// The first header called `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.0)
    }

    /// The client's address.
    pub fn client_ip(&self) -> std::net::IpAddr {
        let v6 = std::net::Ipv6Addr::from(self.client);
        match v6.to_ipv4_mapped() {
            Some(v4) => v4.into(),
            None => v6.into(),
        }
    }
}

impl<'a> AppReply<'a> {
    /// Decode a reply and [`check`](AppReply::check) it; names, values and body borrow `bytes`.
    pub fn decode(bytes: &'a [u8]) -> Result<AppReply<'a>, MsgError> {
        let r: AppReply<'a> = decode(bytes)?;
        r.check()?;
        Ok(r)
    }

    /// Whether the terminator can send this reply: a final status, at most
    /// [`MAX_HEADERS`] lines, token names, values without control characters (HTAB
    /// allowed).
    pub fn check(&self) -> Result<(), MsgError> {
        if !(200..=999).contains(&self.status) {
            return Err(MsgError::Status(self.status));
        }
        if self.headers.len() > MAX_HEADERS {
            return Err(MsgError::TooManyHeaders(self.headers.len()));
        }
        for (index, (name, value)) in self.headers.iter().enumerate() {
            if !is_token(name) {
                return Err(MsgError::HeaderName {
                    index,
                    name: name.chars().take(64).collect(),
                });
            }
            if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                return Err(MsgError::HeaderValue {
                    index,
                    name: (*name).to_string(),
                });
            }
        }
        Ok(())
    }

    /// Append the encoded reply to `out` (application servers' side).
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u8(out, self.version);
        put_varint(out, u64::from(self.status));
        put_varint(out, self.headers.len() as u64);
        for (n, v) in &self.headers {
            put_bytes(out, n.as_bytes());
            put_bytes(out, v.as_bytes());
        }
        put_bytes(out, self.body.0);
    }
}

/// RFC 9110 §5.6.2 `token`: one or more of `!#$%&'*+-.^_`|~`, digits and letters.
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// Reply headers the terminator does not pass on: it frames the response itself
/// (RFC 9110 §7.6.1 hop-by-hop fields, plus `Content-Length` and `Server`).
pub fn is_hop_by_hop(name: &str) -> bool {
    const DROPPED: [&str; 9] = [
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
        "server",
    ];
    DROPPED.iter().any(|d| d.eq_ignore_ascii_case(name))
}

fn put_u8(out: &mut Vec<u8>, b: u8) {
    out.push(b);
}

/// Unsigned LEB128, as postcard writes `u16`/`u32`/`u64`/lengths.
fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let low = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Bytes [`encode_request`] writes for these parts (to reserve once).
pub fn request_len(
    method: &str,
    target: &str,
    headers: impl Iterator<Item = (usize, usize)>,
    body: usize,
) -> usize {
    // A varint of a length below 2^28 takes at most 4 bytes; 5 covers any u32.
    let mut n = 1 + 5 + method.len() + 5 + target.len() + 1 + 16 + 3 + 5 + 5 + body;
    for (name, value) in headers {
        n += 10 + name + value;
    }
    n
}

/// Append a version-1 request to `out` without building an [`AppRequest`]: the same bytes
/// as postcard's encoding of one (a test checks), straight from the parser's slices.
#[allow(clippy::too_many_arguments)]
pub fn encode_request<'h>(
    out: &mut Vec<u8>,
    method: &str,
    target: &str,
    http_minor: u8,
    client: [u8; 16],
    client_port: u16,
    headers: impl ExactSizeIterator<Item = (&'h str, &'h [u8])>,
    body: &[u8],
) {
    put_u8(out, VERSION);
    put_bytes(out, method.as_bytes());
    put_bytes(out, target.as_bytes());
    put_u8(out, http_minor);
    out.extend_from_slice(&client);
    put_varint(out, u64::from(client_port));
    put_varint(out, headers.len() as u64);
    for (n, v) in headers {
        put_bytes(out, n.as_bytes());
        put_bytes(out, v);
    }
    put_bytes(out, body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> AppRequest<'static> {
        AppRequest {
            version: 1,
            method: "POST",
            target: "/a?b=c",
            http_minor: 1,
            client: std::net::Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 1).octets(),
            client_port: 40000,
            headers: vec![("Host", Blob(b"x")), ("X-Bin", Blob(b"\xff\x00"))],
            body: Blob(b"hi"),
        }
    }

    /// The layout written down in the module doc, byte by byte.
    #[test]
    fn golden_request_bytes() {
        let mut out = Vec::new();
        let r = sample();
        encode_request(
            &mut out,
            r.method,
            r.target,
            r.http_minor,
            r.client,
            r.client_port,
            r.headers.iter().map(|(n, v)| (*n, v.0)),
            r.body.0,
        );
        let mut want = vec![1, 4];
        want.extend_from_slice(b"POST");
        want.push(6);
        want.extend_from_slice(b"/a?b=c");
        want.push(1);
        want.extend_from_slice(&r.client);
        want.extend_from_slice(&[0xc0, 0xb8, 0x02]); // 40000 = 0b10_0111000_1000000
        want.push(2);
        want.extend_from_slice(b"\x04Host\x01x\x05X-Bin\x02\xff\x00");
        want.extend_from_slice(b"\x02hi");
        assert_eq!(out, want);
        assert_eq!(postcard::to_allocvec(&r).unwrap(), want, "postcard agrees");
        assert_eq!(AppRequest::decode(&want).unwrap(), r);
        assert_eq!(
            r.client_ip().to_string(),
            "2001:db8:ff::1",
            "client address"
        );
    }

    #[test]
    fn golden_reply_bytes() {
        let r = AppReply {
            version: 1,
            status: 404,
            headers: vec![("Content-Type", "text/plain")],
            body: Blob(b"no\n"),
        };
        let mut out = Vec::new();
        r.encode(&mut out);
        let mut want = vec![1, 0x94, 0x03, 1, 12];
        want.extend_from_slice(b"Content-Type\x0atext/plain\x03no\n");
        assert_eq!(out, want);
        assert_eq!(postcard::to_allocvec(&r).unwrap(), want);
        assert_eq!(AppReply::decode(&want).unwrap(), r);
    }

    #[test]
    fn bad_replies_are_named() {
        let enc = |r: &AppReply| {
            let mut v = Vec::new();
            r.encode(&mut v);
            v
        };
        let ok = AppReply {
            version: 1,
            status: 200,
            headers: vec![],
            body: Blob(b""),
        };
        assert_eq!(AppReply::decode(&enc(&ok)), Ok(ok.clone()));
        assert!(matches!(AppReply::decode(&[]), Err(MsgError::Decode(_))));
        assert_eq!(AppReply::decode(&[2, 0]), Err(MsgError::Version(2)));
        let mut trailing = enc(&ok);
        trailing.push(0);
        assert_eq!(AppReply::decode(&trailing), Err(MsgError::Trailing(1)));
        let truncated = enc(&AppReply {
            body: Blob(b"abc"),
            ..ok.clone()
        });
        assert!(matches!(
            AppReply::decode(&truncated[..truncated.len() - 1]),
            Err(MsgError::Decode(_))
        ));
        for status in [0, 100, 199, 1000] {
            let r = AppReply {
                status,
                ..ok.clone()
            };
            assert_eq!(AppReply::decode(&enc(&r)), Err(MsgError::Status(status)));
        }
        let r = AppReply {
            headers: vec![("Bad Name", "v")],
            ..ok.clone()
        };
        assert!(matches!(
            AppReply::decode(&enc(&r)),
            Err(MsgError::HeaderName { index: 0, .. })
        ));
        let r = AppReply {
            headers: vec![("X-A", "ok"), ("X-B", "a\r\nInjected: 1")],
            ..ok.clone()
        };
        assert!(matches!(
            AppReply::decode(&enc(&r)),
            Err(MsgError::HeaderValue { index: 1, .. })
        ));
        let many: Vec<(&str, &str)> = (0..=MAX_HEADERS).map(|_| ("X", "y")).collect();
        let r = AppReply {
            headers: many,
            ..ok.clone()
        };
        assert_eq!(
            AppReply::decode(&enc(&r)),
            Err(MsgError::TooManyHeaders(MAX_HEADERS + 1))
        );
        // Not UTF-8 where a str is expected.
        let mut bad = vec![1, 200, 1, 1, 1, 0xff, 0, 0];
        assert!(matches!(AppReply::decode(&bad), Err(MsgError::Decode(_))));
        bad[5] = b'X';
        assert!(
            AppReply::decode(&bad).is_ok(),
            "{:?}",
            AppReply::decode(&bad)
        );
    }

    #[test]
    fn hop_by_hop_and_tokens() {
        assert!(is_hop_by_hop("Content-Length"));
        assert!(is_hop_by_hop("CONNECTION"));
        assert!(!is_hop_by_hop("Content-Type"));
        assert!(is_token("X-Weir-App"));
        assert!(!is_token(""));
        assert!(!is_token("a:b"));
        assert!(!is_token("é"));
    }

    proptest! {
        /// The hand encoder writes exactly postcard's bytes, and they decode back.
        #[test]
        fn hand_encoder_is_postcard(
            method in "[A-Z]{1,8}",
            target in "/[ -~]{0,40}",
            minor in 0u8..2,
            client in any::<[u8; 16]>(),
            port in any::<u16>(),
            headers in proptest::collection::vec(("[A-Za-z-]{1,20}", proptest::collection::vec(any::<u8>(), 0..300)), 0..12),
            body in proptest::collection::vec(any::<u8>(), 0..3000),
        ) {
            let r = AppRequest {
                version: 1,
                method: &method,
                target: &target,
                http_minor: minor,
                client,
                client_port: port,
                headers: headers.iter().map(|(n, v)| (n.as_str(), Blob(v))).collect(),
                body: Blob(&body),
            };
            let mut out = Vec::new();
            encode_request(&mut out, r.method, r.target, minor, client, port,
                r.headers.iter().map(|(n, v)| (*n, v.0)), &body);
            prop_assert!(out.len() <= request_len(r.method, r.target, r.headers.iter().map(|(n, v)| (n.len(), v.0.len())), body.len()));
            prop_assert_eq!(&out, &postcard::to_allocvec(&r).unwrap());
            prop_assert_eq!(AppRequest::decode(&out).unwrap(), r);
        }

        /// Arbitrary bytes never panic the decoders.
        #[test]
        fn arbitrary_bytes_decode_or_err(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = AppReply::decode(&bytes);
            let _ = AppRequest::decode(&bytes);
        }
    }
}
