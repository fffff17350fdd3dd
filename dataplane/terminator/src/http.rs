//! HTTP/1.1 server side of one TCP connection (RFC 9112), as a byte-stream state machine:
//! bytes in ([`HttpConn::on_data`]), responses appended to the caller's buffer, and a
//! [`ConnAction`] saying whether the connection stays open.
//!
//! **Parsing.** `httparse` reads the request line and headers; this module does the
//! framing around it. A request is read in two phases. *Head:* bytes are searched for the
//! blank line that ends the header block (`\n\n` or `\n\r\n`, resuming where the last search
//! stopped, so a head fed a byte at a time costs O(n), not O(n²)); `httparse` runs once the
//! blank line is there, and before that only when the pending bytes have doubled since its
//! last run — so garbage (a TLS hello, a port scan) is answered `400` at once instead of
//! waiting for `max_header_bytes`, still in O(n) total. *Body:* `Content-Length` bytes;
//! the head is parsed again when they are complete (once more per split request: cheaper
//! than keeping owned copies of the headers).
//!
//! **Buffers.** Complete requests are parsed straight from the caller's slice; only an
//! unfinished tail is copied into the connection's buffer, which is kept across requests
//! and [`HttpConn::reset`]. Appends are cut to what the current phase may still need, so the
//! buffer never holds more than `max(max_header_bytes + 1, head + max_body_bytes)` bytes;
//! after a large request its capacity shrinks back to [`RETAIN_BYTES`]. The header table
//! `httparse` fills is a `Vec` kept too (allocated on first use, `max_headers` entries).
//! [`HttpConn::on_data_bounded`] stops taking input once the output passes a limit, so a
//! client pipelining requests for large bodies cannot make the output grow without bound.
//!
//! **Rules** (RFC 9112 unless noted), each answered with a status and a close:
//! - head over `max_header_bytes` or more than `max_headers` lines → `431`;
//! - malformed request line or header, `Content-Length` that is not digits or disagrees with
//!   another, `Content-Length` together with `Transfer-Encoding`, a `Transfer-Encoding`
//!   whose last coding is not `chunked` (§6.3), no `Host` in HTTP/1.1 or more than one `Host`
//!   (§3.2) → `400`; a connection closed mid-request → `400`;
//! - `Transfer-Encoding: chunked` request bodies → `501`: no client weir serves sends them
//!   for the small requests a terminator answers, and a chunk decoder is more untrusted-input
//!   surface for no use (a fragment of a decoder was the rejected alternative);
//! - `Content-Length` over `max_body_bytes` → `413`, as soon as the head is read;
//! - a version `httparse` does not know (`HTTP/2.0`, `HTTP/1.2`) → `505`.
//!
//! HTTP/1.0 closes unless `Connection: keep-alive` (answered with the same header);
//! HTTP/1.1 stays open unless `Connection: close` (answered with the same header, then
//! [`ConnAction::Close`]). `HEAD` gets the head of the `GET` answer, `Content-Length`
//! included. `Expect: 100-continue` on an HTTP/1.1 request whose body has not arrived gets
//! `100 Continue` (curl waits a second for it otherwise). Responses carry `Server: weir`
//! and no `Date` (RFC 9110 §6.6.1 lets a server without a clock it trusts omit it; the
//! terminator has no cached clock to read and a clock read per response is not free).
//!
//! **Answers that come later.** An asynchronous adapter ([`crate::adapter::Answer::Later`])
//! leaves a place in the connection's queue of owed answers; [`HttpConn::complete`] fills it
//! and everything owed is written in request order, so pipelining keeps working whatever
//! order the replies arrive in. While something is owed, answers the connection makes
//! itself (a 400 for the next request, an adapter's immediate 503) are rendered into a held
//! buffer behind it, and `100 Continue` is not sent (it would read as the interim answer
//! of an earlier request). Reading stops, with the bytes left to the caller, while the
//! connection has [`crate::adapter::Adapter::conn_limit`] requests waiting or the adapter
//! cannot start more ([`crate::adapter::Adapter::can_start`], the worker's limit). Memory:
//! at most `conn_limit` waiting places, and the held buffer holds at most the answers that
//! arrived out of order behind them. A request kept waiting past
//! [`crate::adapter::Adapter::give_up_after_ms`] is answered `504` by
//! [`HttpConn::expire`]; its reply, should it come, is dropped ([`HttpConn::complete`]
//! returns false). Rejected: a callback into the connection from the adapter (the
//! adapter would need the connection table) and futures (a runtime on the worker).
//!
//! **Determinism.** The output for a byte stream followed by EOF does not depend on how it
//! was split over calls (a property test checks this), except that a split can make
//! `100 Continue` appear. *When* garbage is answered does: with the doubling rule above, up
//! to twice the bytes may arrive first; [`HttpConn::on_eof`] parses what is pending, so an
//! unfinished head gets the same 400/431/505 it would have had whole.

use httparse::{Header, Status, EMPTY_HEADER};
use weir_model::config::HttpConfig;

use std::collections::VecDeque;

use crate::adapter::{Adapter, Answer, Completion, Peer, Request, Response, Ticket};

/// A buffer whose capacity grew past this is shrunk back to it once drained.
pub const RETAIN_BYTES: usize = 4096;

/// Whether the connection stays open after the output has been sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnAction {
    /// Keep reading requests.
    KeepOpen,
    /// Send the output, then close; further input is ignored.
    Close,
}

/// Counters of one connection (or, added up with [`HttpStats::add`], of many).
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HttpStats {
    /// Requests handed to the adapter.
    pub requests: u64,
    /// Responses by status class (including the connection's own error answers).
    pub responses_2xx: u64,
    /// 3xx responses.
    pub responses_3xx: u64,
    /// 4xx responses.
    pub responses_4xx: u64,
    /// 5xx responses.
    pub responses_5xx: u64,
    /// `400` for malformed requests (and connections closed mid-request).
    pub bad_request: u64,
    /// `431`: head over `max_header_bytes` or `max_headers`.
    pub header_too_large: u64,
    /// `413`: body over `max_body_bytes`.
    pub body_too_large: u64,
    /// `501`: `Transfer-Encoding: chunked` request bodies.
    pub not_implemented: u64,
    /// `505`: an HTTP version other than 1.0 and 1.1.
    pub version_not_supported: u64,
    /// `100 Continue` interim responses.
    pub continues: u64,
    /// `408`: the request head was not complete in time (see [`HttpConn::time_out_head`]).
    pub request_timeout: u64,
    /// Requests answered `504` because the adapter's answer did not come in time.
    pub gave_up: u64,
    /// Adapter answers that came for a request no longer waiting (given up on, or its
    /// connection gone); dropped.
    pub late_answers: u64,
}

impl HttpStats {
    /// Add `other` into `self`.
    pub fn add(&mut self, other: &HttpStats) {
        let HttpStats {
            requests,
            responses_2xx,
            responses_3xx,
            responses_4xx,
            responses_5xx,
            bad_request,
            header_too_large,
            body_too_large,
            not_implemented,
            version_not_supported,
            continues,
            request_timeout,
            gave_up,
            late_answers,
        } = other;
        self.requests += requests;
        self.responses_2xx += responses_2xx;
        self.responses_3xx += responses_3xx;
        self.responses_4xx += responses_4xx;
        self.responses_5xx += responses_5xx;
        self.bad_request += bad_request;
        self.header_too_large += header_too_large;
        self.body_too_large += body_too_large;
        self.not_implemented += not_implemented;
        self.version_not_supported += version_not_supported;
        self.continues += continues;
        self.request_timeout += request_timeout;
        self.gave_up += gave_up;
        self.late_answers += late_answers;
    }
}

/// The errors the connection answers itself, each followed by a close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reject {
    BadRequest,
    HeaderTooLarge,
    BodyTooLarge,
    NotImplemented,
    VersionNotSupported,
}

impl Reject {
    fn status(self) -> u16 {
        match self {
            Reject::BadRequest => 400,
            Reject::HeaderTooLarge => 431,
            Reject::BodyTooLarge => 413,
            Reject::NotImplemented => 501,
            Reject::VersionNotSupported => 505,
        }
    }
    fn body(self) -> &'static str {
        match self {
            Reject::BadRequest => "bad request\n",
            Reject::HeaderTooLarge => "request header fields too large\n",
            Reject::BodyTooLarge => "content too large\n",
            Reject::NotImplemented => "chunked request bodies are not supported\n",
            Reject::VersionNotSupported => "HTTP version not supported\n",
        }
    }
}

/// What one step over the pending bytes did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The request is not complete: more bytes are needed.
    Need,
    /// A request (or a rejected prefix) of `consumed` bytes was answered.
    Done { consumed: usize, close: bool },
}

/// `Connection` header of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnHeader {
    None,
    KeepAlive,
    Close,
}

/// One answer a connection owes, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owed {
    seq: u32,
    head_only: bool,
    conn: ConnHeader,
    state: OwedState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum OwedState {
    /// Waiting for the adapter since this time (the caller's clock, ms).
    Waiting { since_ms: u64 },
    /// Arrived (or given up on): to be written when its turn comes.
    Done(Completion),
    /// Rendered already, in `held[start..end]`.
    Held { start: usize, end: usize },
}

/// HTTP/1.1 on one TCP connection. Reusable: [`HttpConn::reset`] for the next connection.
#[derive(Debug)]
pub struct HttpConn {
    limits: HttpConfig,
    /// `buf[start..]` is the unfinished request; `buf[..start]` is answered, dropped at the
    /// next append.
    buf: Vec<u8>,
    start: usize,
    /// Head phase: this many pending bytes were searched for the blank line.
    scanned: usize,
    /// Head phase: pending length at the last `httparse` run on an incomplete head (0 = none).
    checked: usize,
    /// Body phase: total length of the request (head + body) once its head is read.
    need: Option<usize>,
    closed: bool,
    /// `httparse`'s header table, kept between requests (see [`recycle`]).
    headers: Vec<Header<'static>>,
    stats: HttpStats,
    /// Answers owed in request order, once one of them is left to an asynchronous adapter.
    owed: VecDeque<Owed>,
    /// Answers rendered behind a waiting one.
    held: Vec<u8>,
    /// Places in `owed` that wait.
    waiting: u32,
    /// The next request's number on this connection.
    next_seq: u32,
    /// Which connection this is, for tickets: (slot, serial).
    tag: (u32, u64),
    peer: Peer,
    /// The caller's clock (ms), for the age of waiting answers.
    now_ms: u64,
    /// The last call stopped reading because the adapter could start no more requests.
    starved: bool,
}

impl HttpConn {
    /// A connection with these limits; allocates nothing until bytes arrive.
    pub fn new(limits: HttpConfig) -> HttpConn {
        HttpConn {
            limits,
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            checked: 0,
            need: None,
            closed: false,
            headers: Vec::new(),
            stats: HttpStats::default(),
            owed: VecDeque::new(),
            held: Vec::new(),
            waiting: 0,
            next_seq: 0,
            tag: (0, 0),
            peer: Peer::default(),
            now_ms: 0,
            starved: false,
        }
    }

    /// Who this connection is (slot and serial, for the adapter's tickets) and its client.
    pub fn set_tag(&mut self, conn: u32, serial: u64, peer: Peer) {
        self.tag = (conn, serial);
        self.peer = peer;
    }

    /// The caller's clock now (ms): requests left to the adapter are stamped with it.
    pub fn set_clock(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
    }

    /// Whether every answer owed has been written to the output (nothing waits or is held).
    pub fn owes_nothing(&self) -> bool {
        self.owed.is_empty()
    }

    /// Requests waiting for the adapter.
    pub fn waiting(&self) -> u32 {
        self.waiting
    }

    /// Whether the last call stopped reading because the adapter could start no more
    /// requests (the caller resumes the connection once it can).
    pub fn starved(&self) -> bool {
        self.starved
    }

    /// The adapter's answer to request `seq`: written to `out` with everything after it
    /// that is ready, in request order. False when nothing waits under `seq` (the
    /// connection was given up on, or reset): the answer is dropped.
    pub fn complete(&mut self, seq: u32, answer: Completion, out: &mut Vec<u8>) -> bool {
        let Some(o) = self
            .owed
            .iter_mut()
            .find(|o| o.seq == seq && matches!(o.state, OwedState::Waiting { .. }))
        else {
            self.stats.late_answers += 1;
            return false;
        };
        o.state = OwedState::Done(answer);
        self.waiting = self.waiting.saturating_sub(1);
        self.flush_owed(out);
        true
    }

    /// Answer `504` for every request waiting `after_ms` or longer (by the clock of
    /// [`HttpConn::set_clock`]); returns how many.
    pub fn expire(&mut self, after_ms: u64, out: &mut Vec<u8>) -> u32 {
        let now = self.now_ms;
        let mut n = 0;
        for o in &mut self.owed {
            if let OwedState::Waiting { since_ms } = o.state {
                if now.saturating_sub(since_ms) >= after_ms {
                    o.state = OwedState::Done(Completion::Failed(504));
                    n += 1;
                }
            }
        }
        if n > 0 {
            self.waiting = self.waiting.saturating_sub(n);
            self.stats.gave_up += u64::from(n);
            self.flush_owed(out);
        }
        n
    }

    /// The request head did not come in time (slowloris): answer `408` with
    /// `Connection: close` (behind anything owed) and close.
    pub fn time_out_head(&mut self, out: &mut Vec<u8>) -> ConnAction {
        if !self.closed {
            self.stats.request_timeout += 1;
            let status = self.emit(
                out,
                &Response::text(408, failed_body(408)),
                false,
                ConnHeader::Close,
            );
            self.count(status);
        }
        self.close()
    }

    /// Write the answers at the head of `owed` that are ready.
    fn flush_owed(&mut self, out: &mut Vec<u8>) {
        while let Some(front) = self.owed.front() {
            if matches!(front.state, OwedState::Waiting { .. }) {
                break;
            }
            let Some(o) = self.owed.pop_front() else {
                break;
            };
            match o.state {
                OwedState::Held { start, end } => {
                    out.extend_from_slice(self.held.get(start..end).unwrap_or_default());
                }
                OwedState::Done(c) => {
                    let status = write_completion(out, &c, o.head_only, o.conn);
                    self.count(status);
                }
                OwedState::Waiting { .. } => {}
            }
        }
        if self.owed.is_empty() {
            self.held.clear();
            if self.held.capacity() > RETAIN_BYTES {
                self.held = Vec::new();
            }
        }
    }

    /// Write `r` to `out`, or behind what is owed; returns the status sent.
    fn emit(
        &mut self,
        out: &mut Vec<u8>,
        r: &Response<'_>,
        head_only: bool,
        conn: ConnHeader,
    ) -> u16 {
        if self.owed.is_empty() {
            return write_response(out, r, head_only, conn);
        }
        let start = self.held.len();
        let status = write_response(&mut self.held, r, head_only, conn);
        self.owed.push_back(Owed {
            seq: self.next_seq,
            head_only,
            conn,
            state: OwedState::Held {
                start,
                end: self.held.len(),
            },
        });
        self.next_seq = self.next_seq.wrapping_add(1);
        status
    }

    /// Bytes received from the client. Every complete request in them (pipelining: several
    /// per call, or one split over many calls) is parsed, handed to `adapter`, and its
    /// response appended to `out`. Returns whether the connection stays open after `out`
    /// is sent. After [`ConnAction::Close`], further bytes are ignored.
    pub fn on_data(
        &mut self,
        data: &[u8],
        adapter: &mut dyn Adapter,
        out: &mut Vec<u8>,
    ) -> ConnAction {
        self.on_data_bounded(data, adapter, out, usize::MAX).1
    }

    /// [`HttpConn::on_data`] that stops taking input once `out.len() >= out_limit`:
    /// returns how many bytes of `data` were taken (the rest stays with the caller, e.g. in
    /// the socket's receive buffer, which pushes back on the client). Requests already
    /// buffered are answered by the next call, which may pass an empty `data`.
    /// On [`ConnAction::Close`] all of `data` counts as taken.
    pub fn on_data_bounded(
        &mut self,
        data: &[u8],
        adapter: &mut dyn Adapter,
        out: &mut Vec<u8>,
        out_limit: usize,
    ) -> (usize, ConnAction) {
        if self.closed {
            return (data.len(), ConnAction::Close);
        }
        let mut rest = data;
        self.starved = false;
        loop {
            if out.len() >= out_limit {
                break;
            }
            let pending = self.start < self.buf.len() || !rest.is_empty();
            if !pending || self.waiting >= adapter.conn_limit() {
                break;
            }
            if !adapter.can_start() {
                self.starved = true;
                break;
            }
            if self.start < self.buf.len() {
                self.skip_empty_lines_in_buf();
                let buf = std::mem::take(&mut self.buf);
                let step = self.step(&buf[self.start..], adapter, out);
                self.buf = buf;
                if let Step::Done { consumed, close } = step {
                    self.start += consumed;
                    if close {
                        return (data.len(), self.close());
                    }
                    continue;
                }
            }
            if rest.is_empty() {
                break;
            }
            if self.start == self.buf.len() {
                // Nothing pending: parse straight from the caller's bytes.
                self.buf.clear();
                self.start = 0;
                rest = &rest[empty_lines_len(rest)..];
                if rest.is_empty() {
                    break;
                }
                match self.step(rest, adapter, out) {
                    Step::Done { consumed, close } => {
                        rest = &rest[consumed..];
                        if close {
                            return (data.len(), self.close());
                        }
                    }
                    Step::Need => {
                        // `step` only says Need for a tail within the limits.
                        self.append(rest);
                        rest = &[];
                    }
                }
            } else {
                if self.start > 0 {
                    self.buf.drain(..self.start);
                    self.start = 0;
                }
                let take = self.room().min(rest.len());
                self.append(&rest[..take]);
                rest = &rest[take..];
            }
        }
        self.shrink();
        (data.len() - rest.len(), ConnAction::KeepOpen)
    }

    /// The client half-closed (FIN): a partial request pending is answered 400 if it has
    /// started, else nothing; then Close.
    pub fn on_eof(&mut self, out: &mut Vec<u8>) -> ConnAction {
        if !self.closed {
            self.skip_empty_lines_in_buf();
            if self.start < self.buf.len() {
                let r = self.eof_reject();
                self.reject(r, false, out);
            }
        }
        self.close()
    }

    /// Which error an unfinished request gets at EOF: what `httparse` finds in its head if
    /// anything (the answer it would have had with its bytes in any other split), else 400.
    fn eof_reject(&mut self) -> Reject {
        if self.need.is_some() {
            return Reject::BadRequest;
        }
        let pending = &self.buf[self.start..];
        let prefix = &pending[..pending.len().min(self.max_head())];
        let mut headers = recycle(std::mem::take(&mut self.headers));
        headers.resize(self.limits.max_headers as usize, EMPTY_HEADER);
        let r = match httparse::Request::new(&mut headers).parse(prefix) {
            Err(e) => reject_for(e, prefix),
            Ok(_) => Reject::BadRequest,
        };
        self.headers = recycle(headers);
        r
    }

    /// Forget everything, counters included (the socket is being recycled for a new
    /// connection: add up [`Self::stats`] first). Keeps the buffers' capacity.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.start = 0;
        self.scanned = 0;
        self.checked = 0;
        self.need = None;
        self.closed = false;
        self.stats = HttpStats::default();
        self.owed.clear();
        self.held.clear();
        if self.held.capacity() > RETAIN_BYTES {
            self.held = Vec::new();
        }
        self.waiting = 0;
        self.next_seq = 0;
        self.tag = (0, 0);
        self.peer = Peer::default();
        self.starved = false;
    }

    /// Counters since [`HttpConn::new`], [`HttpConn::reset`] or [`HttpConn::take_stats`].
    pub fn stats(&self) -> &HttpStats {
        &self.stats
    }

    /// The counters, zeroed here: for callers that add them up (`total.add(&c.take_stats())`).
    pub fn take_stats(&mut self) -> HttpStats {
        std::mem::take(&mut self.stats)
    }

    /// Bytes of memory the request buffer holds now (its capacity): at most
    /// `max(RETAIN_BYTES, max_header_bytes + max_body_bytes + 1)`.
    pub fn buffered(&self) -> usize {
        self.buf.capacity()
    }

    /// Whether a request has started and not been answered (bytes other than empty lines).
    pub fn has_partial_request(&self) -> bool {
        let pending = &self.buf[self.start..];
        pending.len() > empty_lines_len(pending)
    }

    fn max_head(&self) -> usize {
        self.limits.max_header_bytes as usize
    }

    fn max_buffer(&self) -> usize {
        self.max_head() + self.limits.max_body_bytes as usize + 1
    }

    /// How many more bytes the pending request may need: up to one past the head limit
    /// (enough to tell "too large") or up to the end of the body.
    fn room(&self) -> usize {
        let pending = self.buf.len() - self.start;
        match self.need {
            Some(need) => need.saturating_sub(pending),
            None => (self.max_head() + 1).saturating_sub(pending),
        }
        .max(1)
    }

    /// Append with doubling growth capped at the buffer bound, so capacity never overshoots it.
    fn append(&mut self, bytes: &[u8]) {
        let len = self.buf.len() + bytes.len();
        if len > self.buf.capacity() {
            let cap = (2 * self.buf.capacity())
                .max(len)
                .min(self.max_buffer().max(RETAIN_BYTES))
                .max(len);
            self.buf.reserve_exact(cap - self.buf.len());
        }
        self.buf.extend_from_slice(bytes);
    }

    fn shrink(&mut self) {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        if self.buf.capacity() > RETAIN_BYTES && self.buf.len() - self.start <= RETAIN_BYTES {
            self.buf.drain(..self.start);
            self.start = 0;
            self.buf.shrink_to(RETAIN_BYTES);
        }
    }

    fn close(&mut self) -> ConnAction {
        self.closed = true;
        self.buf.clear();
        self.start = 0;
        self.shrink();
        ConnAction::Close
    }

    /// RFC 9112 §2.2: "a server ... SHOULD ignore at least one empty line (CRLF) received
    /// prior to the request-line". Dropped before a request starts, so they count against
    /// no limit and never make a request look started.
    fn skip_empty_lines_in_buf(&mut self) {
        let n = empty_lines_len(&self.buf[self.start..]);
        if n > 0 {
            self.start += n;
            self.scanned = 0;
            self.checked = 0;
        }
    }

    /// Try to answer the request at the start of `input` (which starts with no empty line).
    fn step(&mut self, input: &[u8], adapter: &mut dyn Adapter, out: &mut Vec<u8>) -> Step {
        let mut headers = recycle(std::mem::take(&mut self.headers));
        headers.resize(self.limits.max_headers as usize, EMPTY_HEADER);
        let step = self.step_with(input, &mut headers, adapter, out);
        self.headers = recycle(headers);
        step
    }

    fn step_with<'b>(
        &mut self,
        input: &'b [u8],
        headers: &mut [Header<'b>],
        adapter: &mut dyn Adapter,
        out: &mut Vec<u8>,
    ) -> Step {
        let max_head = self.max_head();
        if let Some(need) = self.need {
            if input.len() < need {
                return Step::Need;
            }
        } else {
            match find_head_end(input, self.scanned) {
                Some(end) if end <= max_head => {}
                found => {
                    // Over the limit, or not complete yet. A syntax error in the first
                    // `max_head` bytes wins over 431, so that the answer does not depend
                    // on how the bytes were split.
                    let over = found.is_some() || input.len() > max_head;
                    self.scanned = input.len();
                    if !over && self.checked != 0 && input.len() < 2 * self.checked {
                        return Step::Need;
                    }
                    self.checked = input.len();
                    let prefix = &input[..input.len().min(max_head)];
                    if let Err(e) = httparse::Request::new(headers).parse(prefix) {
                        return self.reject(reject_for(e, prefix), false, out);
                    }
                    if over {
                        return self.reject(Reject::HeaderTooLarge, false, out);
                    }
                    return Step::Need;
                }
            }
        }
        let mut req = httparse::Request::new(headers);
        let head_len = match req.parse(input) {
            Ok(Status::Complete(n)) => n,
            // A blank line was found, so httparse disagreeing about the end is bad input.
            Ok(Status::Partial) => return self.reject(Reject::BadRequest, false, out),
            Err(e) => return self.reject(reject_for(e, input), false, out),
        };
        let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
            return self.reject(Reject::BadRequest, false, out);
        };
        let head_only = method == "HEAD";
        let framing = match Framing::of(req.headers, version) {
            Ok(f) => f,
            Err(r) => return self.reject(r, head_only, out),
        };
        if framing.content_length > u64::from(self.limits.max_body_bytes) {
            return self.reject(Reject::BodyTooLarge, head_only, out);
        }
        // Fits: content_length <= max_body_bytes, a u32.
        let total = head_len + framing.content_length as usize;
        if input.len() < total {
            if self.need.is_none()
                && framing.expect_continue
                && version == 1
                && self.owed.is_empty()
            {
                out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                self.stats.continues += 1;
            }
            self.need = Some(total);
            return Step::Need;
        }
        let request = Request {
            method,
            path,
            version,
            headers: req.headers,
            body: &input[head_len..total],
            peer: self.peer,
        };
        self.stats.requests += 1;
        let conn = match (framing.keep_alive, version) {
            (false, _) => ConnHeader::Close,
            (true, 0) => ConnHeader::KeepAlive,
            (true, _) => ConnHeader::None,
        };
        let ticket = Ticket {
            conn: self.tag.0,
            serial: self.tag.1,
            seq: self.next_seq,
        };
        match adapter.start(&request, ticket) {
            Answer::Now(response) => {
                let status = self.emit(out, &response, head_only, conn);
                self.count(status);
            }
            Answer::Later => {
                self.owed.push_back(Owed {
                    seq: self.next_seq,
                    head_only,
                    conn,
                    state: OwedState::Waiting {
                        since_ms: self.now_ms,
                    },
                });
                self.next_seq = self.next_seq.wrapping_add(1);
                self.waiting += 1;
            }
        }
        self.need = None;
        self.scanned = 0;
        self.checked = 0;
        Step::Done {
            consumed: total,
            close: !framing.keep_alive,
        }
    }

    /// Answer `r` with `Connection: close`; the whole pending input counts as consumed.
    fn reject(&mut self, r: Reject, head_only: bool, out: &mut Vec<u8>) -> Step {
        let stat = match r {
            Reject::BadRequest => &mut self.stats.bad_request,
            Reject::HeaderTooLarge => &mut self.stats.header_too_large,
            Reject::BodyTooLarge => &mut self.stats.body_too_large,
            Reject::NotImplemented => &mut self.stats.not_implemented,
            Reject::VersionNotSupported => &mut self.stats.version_not_supported,
        };
        *stat += 1;
        let response = Response::text(r.status(), r.body());
        let status = self.emit(out, &response, head_only, ConnHeader::Close);
        self.count(status);
        self.need = None;
        self.scanned = 0;
        self.checked = 0;
        Step::Done {
            consumed: 0,
            close: true,
        }
    }

    fn count(&mut self, status: u16) {
        match status / 100 {
            2 => self.stats.responses_2xx += 1,
            3 => self.stats.responses_3xx += 1,
            4 => self.stats.responses_4xx += 1,
            _ => self.stats.responses_5xx += 1,
        }
    }
}

/// Turn a header table of one lifetime into an empty one of another, keeping its
/// allocation: `Vec`'s in-place `collect` reuses the buffer when the element layout is the
/// same (it is: only the lifetime differs). Safe code; at worst it would allocate.
fn recycle<'b>(mut v: Vec<Header<'_>>) -> Vec<Header<'b>> {
    v.clear();
    v.into_iter().map(|_| EMPTY_HEADER).collect()
}

/// How the request is framed and whether the connection stays open, from its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Framing {
    content_length: u64,
    keep_alive: bool,
    expect_continue: bool,
}

impl Framing {
    fn of(headers: &[Header<'_>], version: u8) -> Result<Framing, Reject> {
        let mut content_length = None;
        let mut transfer_coding: Option<&[u8]> = None;
        let mut hosts = 0;
        let (mut close, mut keep_alive, mut expect_continue) = (false, false, false);
        for h in headers {
            let name = h.name;
            if name.eq_ignore_ascii_case("content-length") {
                // RFC 9110 §8.6: a list of identical values may be taken as one value.
                for v in list(h.value) {
                    let n = parse_content_length(v).ok_or(Reject::BadRequest)?;
                    if content_length.is_some_and(|c| c != n) {
                        return Err(Reject::BadRequest);
                    }
                    content_length = Some(n);
                }
                if content_length.is_none() {
                    return Err(Reject::BadRequest);
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                // The last coding of all the lines is what frames the body (§6.3).
                transfer_coding = Some(list(h.value).last().unwrap_or(b""));
            } else if name.eq_ignore_ascii_case("host") {
                hosts += 1;
            } else if name.eq_ignore_ascii_case("connection") {
                for token in list(h.value) {
                    close |= token.eq_ignore_ascii_case(b"close");
                    keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            } else if name.eq_ignore_ascii_case("expect") {
                expect_continue |= trim(h.value).eq_ignore_ascii_case(b"100-continue");
            }
        }
        // §3.2: 400 for an HTTP/1.1 request without Host, and for any with several.
        if hosts > 1 || (version == 1 && hosts == 0) {
            return Err(Reject::BadRequest);
        }
        if let Some(coding) = transfer_coding {
            // §6.1: TE and CL together "ought to be handled as an error"; §6.3: a final
            // coding other than chunked leaves the length unknown → 400.
            if content_length.is_some() || !coding.eq_ignore_ascii_case(b"chunked") {
                return Err(Reject::BadRequest);
            }
            return Err(Reject::NotImplemented);
        }
        let keep_alive = if version == 0 {
            keep_alive && !close
        } else {
            !close
        };
        Ok(Framing {
            content_length: content_length.unwrap_or(0),
            keep_alive,
            expect_continue,
        })
    }
}

/// Elements of a comma-separated header value, trimmed, empty ones skipped (RFC 9110 §5.6.1).
fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|v| !v.is_empty())
}

fn trim(v: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = v.iter().position(|b| !is_ows(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !is_ows(b)).map_or(start, |i| i + 1);
    &v[start..end]
}

/// `1*DIGIT`; a number too large for u64 saturates (and is then too large to accept: 413).
fn parse_content_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// `400`, or `505` when the version field is well-formed but not 1.0/1.1, or `431` for a
/// header table overflow. Looks at the bytes after the second space of the request line:
/// httparse reports `Version` only once it has seen a wrong byte there, so this gives the
/// same answer however the line was split.
fn reject_for(e: httparse::Error, input: &[u8]) -> Reject {
    match e {
        httparse::Error::TooManyHeaders => Reject::HeaderTooLarge,
        httparse::Error::Version => {
            let line = input.split(|&b| b == b'\n').next().unwrap_or(b"");
            let version = line.splitn(3, |&b| b == b' ').nth(2).unwrap_or(b"");
            if version.len() >= 6 && version.starts_with(b"HTTP/") && version[5].is_ascii_digit() {
                Reject::VersionNotSupported
            } else {
                Reject::BadRequest
            }
        }
        _ => Reject::BadRequest,
    }
}

/// Length of the empty lines (`\n` or `\r\n`) at the start of `b`.
fn empty_lines_len(b: &[u8]) -> usize {
    let mut i = 0;
    loop {
        match b.get(i..) {
            Some([b'\n', ..]) => i += 1,
            Some([b'\r', b'\n', ..]) => i += 2,
            _ => return i,
        }
    }
}

/// End (exclusive) of the header block: the first line that is empty (`\n\n` or
/// `\n\r\n`). `from` is how much was searched before; the search backs up two bytes for a
/// terminator split over calls.
fn find_head_end(b: &[u8], from: usize) -> Option<usize> {
    let mut i = from.saturating_sub(2);
    while let Some(off) = b.get(i..)?.iter().position(|&c| c == b'\n') {
        let nl = i + off;
        match b.get(nl + 1..) {
            Some([b'\n', ..]) => return Some(nl + 2),
            Some([b'\r', b'\n', ..]) => return Some(nl + 3),
            _ => {}
        }
        i = nl + 1;
    }
    None
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        408 => "Request Timeout",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Append `r` as an HTTP/1.1 response; returns the status sent. 204 and 304 carry no body
/// (RFC 9110 §6.4.1), 204 no `Content-Length` either (§8.6).
fn write_response(out: &mut Vec<u8>, r: &Response<'_>, head_only: bool, conn: ConnHeader) -> u16 {
    let status = if (200..=999).contains(&r.status) {
        r.status
    } else {
        500
    };
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\nServer: weir\r\n");
    let bodiless = status == 204 || status == 304;
    if status != 204 {
        out.extend_from_slice(b"Content-Length: ");
        push_decimal(out, r.body.len() as u64);
        out.extend_from_slice(b"\r\n");
    }
    let line_ok = |s: &str| !s.bytes().any(|b| b == b'\r' || b == b'\n');
    if !r.content_type.is_empty() && line_ok(r.content_type) {
        out.extend_from_slice(b"Content-Type: ");
        out.extend_from_slice(r.content_type.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in r.headers {
        if !name.is_empty() && line_ok(name) && !name.contains(':') && line_ok(value) {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    match conn {
        ConnHeader::None => {}
        ConnHeader::KeepAlive => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        ConnHeader::Close => out.extend_from_slice(b"Connection: close\r\n"),
    }
    out.extend_from_slice(b"\r\n");
    if !head_only && !bodiless {
        out.extend_from_slice(r.body);
    }
    status
}

/// Text bodies of the statuses a connection answers for an adapter that gave none.
fn failed_body(status: u16) -> &'static str {
    match status {
        408 => "request timeout\n",
        502 => "bad gateway: the application server's reply was not valid\n",
        503 => "service unavailable: no application server\n",
        504 => "gateway timeout: no reply from the application server in time\n",
        _ => "internal error\n",
    }
}

/// Append a [`Completion`] as an HTTP/1.1 response; returns the status sent.
fn write_completion(out: &mut Vec<u8>, c: &Completion, head_only: bool, conn: ConnHeader) -> u16 {
    let (status, head, body) = match c {
        Completion::Failed(status) => {
            return write_response(
                out,
                &Response::text(*status, failed_body(*status)),
                head_only,
                conn,
            );
        }
        Completion::Reply { status, head, body } => (*status, head, body),
    };
    let status = if (200..=999).contains(&status) {
        status
    } else {
        500
    };
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\nServer: weir\r\n");
    let bodiless = status == 204 || status == 304;
    if status != 204 {
        out.extend_from_slice(b"Content-Length: ");
        push_decimal(out, body.len() as u64);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(head);
    match conn {
        ConnHeader::None => {}
        ConnHeader::KeepAlive => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        ConnHeader::Close => out.extend_from_slice(b"Connection: close\r\n"),
    }
    out.extend_from_slice(b"\r\n");
    if !head_only && !bodiless {
        out.extend_from_slice(body);
    }
    status
}

fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::{Echo, Health};
    use proptest::prelude::*;

    const GET: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";

    fn small() -> HttpConfig {
        HttpConfig {
            max_header_bytes: 256,
            max_headers: 4,
            max_body_bytes: 32,
        }
    }

    /// One response as the client sees it.
    #[derive(Debug)]
    struct Answer {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Answer {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    /// Split `out` into responses (bodies by Content-Length; none if `head_only`).
    fn answers(mut out: &[u8], head_only: bool) -> Vec<Answer> {
        let mut all = Vec::new();
        while !out.is_empty() {
            let mut h = [EMPTY_HEADER; 16];
            let mut r = httparse::Response::new(&mut h);
            let Ok(Status::Complete(n)) = r.parse(out) else {
                panic!("bad response: {:?}", String::from_utf8_lossy(out))
            };
            let headers: Vec<(String, String)> = r
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8(h.value.to_vec()).unwrap(),
                    )
                })
                .collect();
            let status = r.code.unwrap();
            let len: usize = headers
                .iter()
                .find(|(n, _)| n == "Content-Length")
                .map_or(0, |(_, v)| v.parse().unwrap());
            let len = if head_only || status == 100 { 0 } else { len };
            all.push(Answer {
                status,
                headers,
                body: out[n..n + len].to_vec(),
            });
            out = &out[n + len..];
        }
        all
    }

    fn feed(conn: &mut HttpConn, data: &[u8]) -> (ConnAction, Vec<Answer>) {
        let mut out = Vec::new();
        let action = conn.on_data(data, &mut Echo::default(), &mut out);
        (action, answers(&out, false))
    }

    fn one(data: &[u8]) -> (ConnAction, Answer) {
        let (action, mut a) = feed(&mut HttpConn::new(HttpConfig::default()), data);
        assert_eq!(a.len(), 1, "{a:?}");
        (action, a.remove(0))
    }

    #[test]
    fn keep_alive_sequential() {
        let mut c = HttpConn::new(HttpConfig::default());
        for _ in 0..3 {
            let (action, a) = feed(&mut c, GET);
            assert_eq!(action, ConnAction::KeepOpen);
            assert_eq!(a.len(), 1);
            assert_eq!(a[0].status, 200);
            assert_eq!(a[0].body, b"GET /a HTTP/1.1\r\nHost: x\r\n");
            assert_eq!(a[0].header("Server"), Some("weir"));
            assert_eq!(a[0].header("Connection"), None);
        }
        assert_eq!(c.stats().requests, 3);
        assert_eq!(c.stats().responses_2xx, 3);
    }

    #[test]
    fn pipelined_in_one_call() {
        let data = b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nPOST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\r\nGET /3 HTTP/1.1\r\nHost: x\r\n\r\n";
        let (action, a) = feed(&mut HttpConn::new(HttpConfig::default()), data);
        assert_eq!(action, ConnAction::KeepOpen);
        assert_eq!(a.len(), 3);
        assert!(a[0].body.starts_with(b"GET /1 "));
        assert_eq!(a[1].body, b"abc");
        assert!(a[2].body.starts_with(b"GET /3 "));
    }

    #[test]
    fn byte_at_a_time_equals_whole() {
        let data = b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /q HTTP/1.1\r\nHost: y\r\n\r\n";
        let mut whole = Vec::new();
        HttpConn::new(HttpConfig::default()).on_data(data, &mut Echo::default(), &mut whole);
        let mut c = HttpConn::new(HttpConfig::default());
        let mut split = Vec::new();
        for b in data {
            assert_eq!(
                c.on_data(std::slice::from_ref(b), &mut Echo::default(), &mut split),
                ConnAction::KeepOpen
            );
        }
        assert_eq!(split, whole);
        assert_eq!(answers(&split, false).len(), 2);
        assert!(!c.has_partial_request());
    }

    #[test]
    fn body_split_across_calls() {
        let mut c = HttpConn::new(HttpConfig::default());
        let (action, a) = feed(
            &mut c,
            b"PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123",
        );
        assert_eq!((action, a.len()), (ConnAction::KeepOpen, 0));
        assert!(c.has_partial_request());
        assert_eq!(feed(&mut c, b"45").1.len(), 0);
        let (_, a) = feed(&mut c, b"6789GET");
        assert_eq!(a[0].body, b"0123456789");
        let (_, a) = feed(&mut c, b" / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(a[0].status, 200);
    }

    #[test]
    fn post_echo_round_trip() {
        let body: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let mut req = format!(
            "POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(&body);
        let (action, a) = one(&req);
        assert_eq!((action, a.status), (ConnAction::KeepOpen, 200));
        assert_eq!(a.body, body);
        assert_eq!(a.header("Content-Type"), Some("text/plain"));
    }

    #[test]
    fn connection_close_honoured() {
        let mut c = HttpConn::new(HttpConfig::default());
        let (action, a) = feed(&mut c, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Keep-Alive, Close\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(action, ConnAction::Close);
        assert_eq!(a.len(), 1, "the second request is not answered");
        assert_eq!(a[0].header("Connection"), Some("close"));
        let mut out = Vec::new();
        assert_eq!(c.on_data(GET, &mut Health, &mut out), ConnAction::Close);
        assert_eq!(c.on_eof(&mut out), ConnAction::Close);
        assert!(out.is_empty(), "bytes after close are ignored");
        c.reset();
        assert_eq!(
            c.stats(),
            &HttpStats::default(),
            "reset forgets the counters"
        );
        assert_eq!(feed(&mut c, GET).0, ConnAction::KeepOpen);
    }

    #[test]
    fn http10_close_by_default_keep_alive_on_request() {
        let (action, a) = one(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(
            (action, a.header("Connection")),
            (ConnAction::Close, Some("close"))
        );
        let mut c = HttpConn::new(HttpConfig::default());
        let (action, a) = feed(&mut c, b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(
            (action, a[0].header("Connection")),
            (ConnAction::KeepOpen, Some("keep-alive"))
        );
        assert!(a[0].body.starts_with(b"GET / HTTP/1.0\r\n"));
        assert_eq!(feed(&mut c, b"GET / HTTP/1.0\r\n\r\n").0, ConnAction::Close);
    }

    #[test]
    fn header_too_large_431() {
        let mut long = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
        long.extend(std::iter::repeat_n(b'a', 9000));
        // Without the end of the head: answered as soon as the limit is passed.
        let (action, a) = one(&long);
        assert_eq!((action, a.status), (ConnAction::Close, 431));
        assert_eq!(a.header("Connection"), Some("close"));
        long.extend_from_slice(b"\r\n\r\n");
        assert_eq!(one(&long).1.status, 431);
        // The same fed in pieces.
        let mut c = HttpConn::new(HttpConfig::default());
        let mut out = Vec::new();
        let mut action = ConnAction::KeepOpen;
        for piece in long.chunks(100) {
            action = c.on_data(piece, &mut Echo::default(), &mut out);
            assert!(c.buffered() <= 8192 + (1 << 20) + 1);
        }
        assert_eq!(
            (action, answers(&out, false)[0].status),
            (ConnAction::Close, 431)
        );
        assert_eq!(c.stats().header_too_large, 1);
    }

    #[test]
    fn too_many_headers_431() {
        let mut req = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
        for i in 0..64 {
            req.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        assert_eq!(one(&req).1.status, 431);
    }

    #[test]
    fn bad_requests_400() {
        for req in [
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\nabcd",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -3\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x10\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
            b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/x.y\r\n\r\n",
            b"\rGET / HTTP/1.1\r\n\r\n",
        ] {
            let (action, a) = one(req);
            assert_eq!((action, a.status), (ConnAction::Close, 400), "{:?}", String::from_utf8_lossy(req));
        }
        // Garbage is answered at once, not after max_header_bytes.
        let (action, a) = one(b"\x00\x01\x02");
        assert_eq!((action, a.status), (ConnAction::Close, 400));
    }

    #[test]
    fn accepted_edge_cases() {
        let (_, a) = one(b"\r\n\r\nPOST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\nabc");
        assert_eq!((a.status, a.body.as_slice()), (200, &b"abc"[..]));
        let (_, a) = one(b"GET http://x/p HTTP/1.1\nHost: x\n\n");
        assert_eq!(a.status, 200);
    }

    #[test]
    fn chunked_501_and_version_505() {
        let (action, a) = one(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
        assert_eq!((action, a.status), (ConnAction::Close, 501));
        let (action, a) = one(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n");
        assert_eq!((action, a.status), (ConnAction::Close, 505));
        assert_eq!(one(b"GET / HTTP/3").1.status, 505);
    }

    #[test]
    fn body_too_large_413_without_waiting_for_it() {
        let mut c = HttpConn::new(HttpConfig::default());
        let (action, a) = feed(
            &mut c,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n",
        );
        assert_eq!((action, a[0].status), (ConnAction::Close, 413));
        assert_eq!(c.stats().body_too_large, 1);
        let (_, a) =
            one(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n");
        assert_eq!(a.status, 413);
    }

    #[test]
    fn head_has_length_but_no_body() {
        let mut get = Vec::new();
        let mut c = HttpConn::new(HttpConfig::default());
        c.on_data(
            GET,
            &mut crate::adapter::FixedBody::new("hello\n", None).unwrap(),
            &mut get,
        );
        let mut head = Vec::new();
        let req = b"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n";
        c.on_data(
            req,
            &mut crate::adapter::FixedBody::new("hello\n", None).unwrap(),
            &mut head,
        );
        let h = answers(&head, true);
        assert_eq!(h.len(), 1, "nothing after the head");
        assert_eq!(h[0].header("Content-Length"), Some("6"));
        assert_eq!(answers(&get, false)[0].body, b"hello\n");
        assert!(head.ends_with(b"\r\n\r\n"));
    }

    #[test]
    fn eof_mid_request_is_400_and_idle_eof_is_silent() {
        let mut c = HttpConn::new(HttpConfig::default());
        let mut out = Vec::new();
        c.on_data(b"GET / HT", &mut Echo::default(), &mut out);
        assert_eq!(c.on_eof(&mut out), ConnAction::Close);
        assert_eq!(answers(&out, false)[0].status, 400);
        for idle in [&b""[..], b"\r\n", GET] {
            let mut c = HttpConn::new(HttpConfig::default());
            let mut out = Vec::new();
            c.on_data(idle, &mut Echo::default(), &mut out);
            let before = out.len();
            assert_eq!(c.on_eof(&mut out), ConnAction::Close);
            assert_eq!(out.len(), before);
        }
    }

    #[test]
    fn expect_continue() {
        let mut c = HttpConn::new(HttpConfig::default());
        let mut out = Vec::new();
        let head =
            b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
        c.on_data(head, &mut Echo::default(), &mut out);
        assert_eq!(out, b"HTTP/1.1 100 Continue\r\n\r\n");
        c.on_data(b"h", &mut Echo::default(), &mut out);
        c.on_data(b"i", &mut Echo::default(), &mut out);
        let a = answers(&out, false);
        assert_eq!(
            (a.len(), a[1].status, a[1].body.as_slice()),
            (2, 200, &b"hi"[..])
        );
    }

    #[test]
    fn bounded_output_leaves_input_with_the_caller() {
        let data = [GET, GET, GET].concat();
        let mut c = HttpConn::new(HttpConfig::default());
        let mut out = Vec::new();
        let (taken, action) = c.on_data_bounded(&data, &mut Health, &mut out, 1);
        assert_eq!((taken, action), (GET.len(), ConnAction::KeepOpen));
        let (taken2, _) = c.on_data_bounded(&data[taken..], &mut Health, &mut out, usize::MAX);
        assert_eq!(taken + taken2, data.len());
        assert_eq!(answers(&out, false).len(), 3);
    }

    #[test]
    fn buffer_shrinks_after_a_large_body() {
        let mut c = HttpConn::new(HttpConfig::default());
        let body = vec![b'z'; 100_000];
        let head = format!(
            "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let mut out = Vec::new();
        c.on_data(head.as_bytes(), &mut Health, &mut out);
        for piece in body.chunks(1000) {
            c.on_data(piece, &mut Health, &mut out);
        }
        assert_eq!(answers(&out, false)[0].status, 200);
        assert!(c.buffered() <= RETAIN_BYTES, "{}", c.buffered());
        c.reset();
        assert_eq!(feed(&mut c, GET).1[0].status, 200);
    }

    /// An adapter that answers everything later, with limits like `nats`.
    struct Deferred {
        tickets: Vec<Ticket>,
        per_conn: u32,
        per_worker: usize,
        /// Answer this method at once with 503 (an immediate answer behind waiting ones).
        now_for: &'static str,
    }

    impl Deferred {
        fn new(per_conn: u32, per_worker: usize) -> Deferred {
            Deferred {
                tickets: Vec::new(),
                per_conn,
                per_worker,
                now_for: "",
            }
        }
    }

    impl Adapter for Deferred {
        fn start<'r>(
            &'r mut self,
            req: &'r Request<'r>,
            ticket: Ticket,
        ) -> crate::adapter::Answer<'r> {
            if req.method == self.now_for {
                return crate::adapter::Answer::Now(Response::text(503, "now\n"));
            }
            self.tickets.push(ticket);
            crate::adapter::Answer::Later
        }
        fn name(&self) -> &'static str {
            "deferred"
        }
        fn can_start(&self) -> bool {
            self.tickets.len() < self.per_worker
        }
        fn conn_limit(&self) -> u32 {
            self.per_conn
        }
    }

    fn reply(status: u16, body: &'static [u8]) -> Completion {
        Completion::Reply {
            status,
            head: bytes::Bytes::from_static(b"X-From: app\r\n"),
            body: bytes::Bytes::from_static(body),
        }
    }

    #[test]
    fn later_answers_are_written_in_request_order() {
        let mut c = HttpConn::new(HttpConfig::default());
        c.set_tag(7, 99, Peer::default());
        let mut a = Deferred::new(8, 100);
        let mut out = Vec::new();
        let data = [GET, GET, GET].concat();
        let (taken, action) = c.on_data_bounded(&data, &mut a, &mut out, usize::MAX);
        assert_eq!((taken, action), (data.len(), ConnAction::KeepOpen));
        assert!(out.is_empty());
        assert_eq!(c.waiting(), 3);
        let seqs: Vec<u32> = a.tickets.iter().map(|t| t.seq).collect();
        assert_eq!(seqs, [0, 1, 2]);
        assert!(a.tickets.iter().all(|t| (t.conn, t.serial) == (7, 99)));
        // Replies arrive 2, 0, 1: nothing is written until the first one is there.
        assert!(c.complete(2, reply(201, b"two"), &mut out));
        assert!(out.is_empty(), "the third answer waits for the first two");
        assert!(c.complete(0, reply(200, b"zero"), &mut out));
        assert_eq!(answers(&out, false).len(), 1);
        assert!(c.complete(1, Completion::Failed(504), &mut out));
        let got = answers(&out, false);
        let statuses: Vec<u16> = got.iter().map(|a| a.status).collect();
        assert_eq!(statuses, [200, 504, 201]);
        assert_eq!(got[0].body, b"zero");
        assert_eq!(got[0].header("X-From"), Some("app"));
        assert_eq!(got[0].header("Server"), Some("weir"));
        assert_eq!(got[2].body, b"two");
        assert!(c.owes_nothing());
        assert!(
            !c.complete(1, reply(200, b"again"), &mut out),
            "answered once"
        );
        assert_eq!(c.stats().late_answers, 1);
        assert_eq!((c.stats().responses_2xx, c.stats().responses_5xx), (2, 1));
    }

    #[test]
    fn the_connection_limit_leaves_bytes_with_the_caller() {
        let mut c = HttpConn::new(HttpConfig::default());
        let mut a = Deferred::new(2, 100);
        let mut out = Vec::new();
        let data = [GET, GET, GET].concat();
        let (taken, _) = c.on_data_bounded(&data, &mut a, &mut out, usize::MAX);
        assert_eq!(
            taken,
            2 * GET.len(),
            "the third request stays in the socket"
        );
        assert_eq!(c.waiting(), 2);
        assert!(!c.starved(), "a connection limit, not the worker's");
        assert!(c.complete(0, reply(200, b"a"), &mut out));
        let (taken2, _) = c.on_data_bounded(&data[taken..], &mut a, &mut out, usize::MAX);
        assert_eq!(taken2, GET.len());
        assert_eq!(a.tickets.len(), 3);
        // The worker's limit: nothing is read, and the connection says why.
        let mut c = HttpConn::new(HttpConfig::default());
        let mut full = Deferred::new(8, 0);
        let (taken, _) = c.on_data_bounded(GET, &mut full, &mut out, usize::MAX);
        assert_eq!(taken, 0);
        assert!(c.starved());
    }

    #[test]
    fn own_answers_wait_behind_later_ones() {
        // A bad request after a waiting one: its 400 comes after the reply.
        let mut c = HttpConn::new(HttpConfig::default());
        let mut a = Deferred::new(8, 100);
        let mut out = Vec::new();
        let data = [GET, b"BAD\x01 / HTTP/1.1\r\n\r\n"].concat();
        let (_, action) = c.on_data_bounded(&data, &mut a, &mut out, usize::MAX);
        assert_eq!(action, ConnAction::Close);
        assert!(out.is_empty());
        assert!(!c.owes_nothing());
        assert!(c.complete(0, reply(200, b"first"), &mut out));
        let got = answers(&out, false);
        assert_eq!(got.iter().map(|a| a.status).collect::<Vec<_>>(), [200, 400]);
        assert_eq!(got[1].header("Connection"), Some("close"));
        assert!(c.owes_nothing());
        // An adapter's immediate answer behind a waiting one.
        let mut c = HttpConn::new(HttpConfig::default());
        let mut a = Deferred::new(8, 100);
        a.now_for = "DELETE";
        let mut out = Vec::new();
        let data = [GET, b"DELETE / HTTP/1.1\r\nHost: x\r\n\r\n", GET].concat();
        c.on_data_bounded(&data, &mut a, &mut out, usize::MAX);
        assert!(out.is_empty());
        assert!(c.complete(2, reply(202, b"third"), &mut out));
        assert!(out.is_empty());
        assert!(c.complete(0, reply(200, b"first"), &mut out));
        let got = answers(&out, false);
        assert_eq!(
            got.iter().map(|a| a.status).collect::<Vec<_>>(),
            [200, 503, 202]
        );
    }

    #[test]
    fn close_waits_for_the_later_answer_and_head_gets_no_body() {
        let mut c = HttpConn::new(HttpConfig::default());
        let mut a = Deferred::new(8, 100);
        let mut out = Vec::new();
        let data = b"HEAD /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let (_, action) = c.on_data_bounded(data, &mut a, &mut out, usize::MAX);
        assert_eq!(action, ConnAction::Close);
        assert!(
            !c.owes_nothing(),
            "closed for input, still owing the answer"
        );
        assert!(c.complete(0, reply(200, b"body"), &mut out));
        let got = answers(&out, true);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].header("Content-Length"), Some("4"));
        assert_eq!(got[0].header("Connection"), Some("close"));
        assert!(out.ends_with(b"\r\n\r\n"), "no body for HEAD");
    }

    #[test]
    fn expire_gives_up_with_504_and_time_out_head_is_408() {
        let mut c = HttpConn::new(HttpConfig::default());
        let mut a = Deferred::new(8, 100);
        let mut out = Vec::new();
        c.set_clock(1000);
        c.on_data_bounded(GET, &mut a, &mut out, usize::MAX);
        c.set_clock(1500);
        c.on_data_bounded(GET, &mut a, &mut out, usize::MAX);
        c.set_clock(2000);
        assert_eq!(c.expire(1000, &mut out), 1, "only the older one");
        assert_eq!(answers(&out, false)[0].status, 504);
        assert!(!c.complete(0, reply(200, b"late"), &mut out));
        c.set_clock(2600);
        assert_eq!(c.expire(1000, &mut out), 1);
        assert_eq!(c.stats().gave_up, 2);
        assert!(c.owes_nothing());
        // Slowloris: half a head, then the deadline.
        let mut c = HttpConn::new(HttpConfig::default());
        let mut out = Vec::new();
        c.on_data(b"GET / HTTP/1.1\r\nHo", &mut Health, &mut out);
        assert_eq!(c.time_out_head(&mut out), ConnAction::Close);
        let got = answers(&out, false);
        assert_eq!(got[0].status, 408);
        assert_eq!(got[0].header("Connection"), Some("close"));
        assert_eq!(c.stats().request_timeout, 1);
        // reset() forgets what was owed.
        let mut c = HttpConn::new(HttpConfig::default());
        c.on_data_bounded(GET, &mut a, &mut out, usize::MAX);
        c.reset();
        assert!(c.owes_nothing());
        assert_eq!(c.waiting(), 0);
    }

    #[test]
    fn stats_add() {
        let mut a = HttpStats {
            requests: 1,
            bad_request: 2,
            ..HttpStats::default()
        };
        a.add(&HttpStats {
            requests: 3,
            continues: 1,
            ..HttpStats::default()
        });
        assert_eq!(
            a,
            HttpStats {
                requests: 4,
                bad_request: 2,
                continues: 1,
                ..HttpStats::default()
            }
        );
    }

    /// Pieces that make near-valid HTTP more often than random bytes do.
    fn fragment() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"GET / HTTP/1.1\r\n".to_vec()),
            Just(b"HEAD /x HTTP/1.1\r\n".to_vec()),
            Just(b"POST /p HTTP/1.0\r\n".to_vec()),
            Just(b"GET / HTTP/2.0\r\n".to_vec()),
            Just(b"Host: h\r\n".to_vec()),
            Just(b"Content-Length: 5\r\n".to_vec()),
            Just(b"Content-Length: 500\r\n".to_vec()),
            Just(b"Transfer-Encoding: chunked\r\n".to_vec()),
            Just(b"Connection: close\r\n".to_vec()),
            Just(b"Connection: keep-alive\r\n".to_vec()),
            Just(b"X-A: b\r\n".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"hello".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..12),
        ]
    }

    fn run(conn: &mut HttpConn, chunks: &[&[u8]]) -> (Vec<u8>, ConnAction) {
        let bound = RETAIN_BYTES.max(256 + 32 + 1);
        let mut out = Vec::new();
        let mut action = ConnAction::KeepOpen;
        for chunk in chunks {
            let before = out.len();
            let a = conn.on_data(chunk, &mut Echo::default(), &mut out);
            if action == ConnAction::Close {
                assert_eq!(
                    (a, out.len()),
                    (ConnAction::Close, before),
                    "input after close is ignored"
                );
            }
            action = a;
            if action == ConnAction::KeepOpen {
                assert!(conn.buffered() <= bound, "{} > {bound}", conn.buffered());
            }
        }
        (out, action)
    }

    /// Cut `data` at the given points (taken modulo its length, sorted).
    fn cut<'a>(data: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
        let mut at: Vec<usize> = points.iter().map(|p| p % (data.len() + 1)).collect();
        at.sort_unstable();
        let mut pieces = Vec::new();
        let mut prev = 0;
        for p in at.into_iter().chain([data.len()]) {
            pieces.push(&data[prev..p]);
            prev = p;
        }
        pieces
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_split_does_not_matter(
            frags in proptest::collection::vec(fragment(), 0..40),
            points in proptest::collection::vec(any::<usize>(), 0..20),
        ) {
            let data = frags.concat();
            // Garbage may be noticed after fewer bytes when they come at once (see the
            // module doc), so the outputs are compared once the stream has ended.
            let mut whole_conn = HttpConn::new(small());
            let (mut whole, _) = run(&mut whole_conn, &[&data]);
            prop_assert_eq!(whole_conn.on_eof(&mut whole), ConnAction::Close);
            let mut conn = HttpConn::new(small());
            let (mut split, _) = run(&mut conn, &cut(&data, &points));
            prop_assert_eq!(conn.on_eof(&mut split), ConnAction::Close);
            prop_assert_eq!(&whole, &split);
        }

        #[test]
        fn valid_pipeline_split_anywhere(
            reqs in proptest::collection::vec(
                (prop_oneof![Just("GET"), Just("HEAD"), Just("POST"), Just("DELETE")],
                 "/[a-z0-9._~-]{0,12}",
                 proptest::collection::vec(any::<u8>(), 0..40)),
                1..8),
            points in proptest::collection::vec(any::<usize>(), 0..30),
        ) {
            let mut data = Vec::new();
            for (method, path, body) in &reqs {
                data.extend_from_slice(format!("{method} {path} HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
                data.extend_from_slice(body);
            }
            let limits = HttpConfig::default();
            let mut whole = Vec::new();
            let action = HttpConn::new(limits).on_data(&data, &mut Echo::default(), &mut whole);
            prop_assert_eq!(action, ConnAction::KeepOpen);
            let mut conn = HttpConn::new(limits);
            let mut split = Vec::new();
            for piece in cut(&data, &points) {
                prop_assert_eq!(conn.on_data(piece, &mut Echo::default(), &mut split), ConnAction::KeepOpen);
            }
            prop_assert_eq!(&whole, &split);
            prop_assert_eq!(conn.stats().requests, reqs.len() as u64);
            prop_assert_eq!(conn.stats().responses_2xx, reqs.len() as u64);
            prop_assert!(!conn.has_partial_request());
        }
    }
}
