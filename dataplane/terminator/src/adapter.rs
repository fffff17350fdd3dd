//! What a parsed HTTP request is handed to: the [`Adapter`] trait, the built-ins
//! `static`, `echo` and `health` ([`SyncAdapter`]s), and `nats` (asynchronous, in
//! [`crate::nats`]); [`build_all`] makes one per worker from `[terminator.adapter]`.
//!
//! **Two kinds.** A [`SyncAdapter`] answers at once ([`SyncAdapter::handle`]); every
//! `SyncAdapter` is an [`Adapter`] whose [`Adapter::start`] answers [`Answer::Now`]. An
//! asynchronous adapter answers [`Answer::Later`] with a [`Ticket`] and hands the
//! [`Completion`] back from [`Adapter::poll`], which the worker calls between bursts; the
//! connection keeps answers in request order (see [`crate::http`]). It bounds its own
//! work: [`Adapter::conn_limit`] requests waiting per connection and
//! [`Adapter::can_start`] per worker; at either limit the connection stops reading.
//!
//! **Shape.** [`crate::http::HttpConn`] parses a request in place and lends it to
//! [`Adapter::handle`] as a [`Request`] of borrowed slices (method, target, headers as
//! `httparse` left them, body); the adapter answers with a [`Response`] that may borrow
//! from the request (echo) or from itself (a fixed body, a reused file buffer), and the
//! connection writes it straight into the caller's output buffer. So a request costs no
//! allocation on the way in and none on the way out for `echo`, `health` and a fixed body.
//! The connection, not the adapter, writes the framing (`Content-Length`, `Connection`,
//! `Server`) and drops the body for `HEAD`: an adapter cannot get the framing wrong.
//!
//! **Files.** `static` with `dir` reads the whole file at request time into a buffer the
//! adapter keeps (files over [`MAX_FILE_BYTES`] get `500`: a server-side limit, not a fault
//! of the request, so neither 413 nor 404). The target is percent-decoded, split on `/`,
//! `.`/empty segments dropped and `..` refused with `400`; the joined path is then
//! canonicalized (resolving every symlink) and must still lie under the canonical `dir`,
//! else `404` — a symlink pointing out of `dir` looks like a missing file. Directories are
//! answered with their `index.html` (no redirect to the `/`-terminated URL).
//!
//! **Rejected.** A writer callback (`fn handle(&mut self, req, w: &mut ResponseWriter)`):
//! more flexible, but lets an adapter emit headers after the body or forget the length.
//! `sendfile`/mmap and a file cache: the terminator answers health checks and small pages,
//! not bulk downloads; reading a file blocks the worker, which is the operator's trade when
//! they point `dir` at a local disk. Percent-decoding into an OS path without UTF-8: weir
//! serves UTF-8 names only (`400` otherwise), which keeps the path logic portable.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use weir_model::config::AdapterConfig;

/// Largest file `static` serves from `dir` (16 MiB); larger ones get `500`.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// A file buffer larger than this is dropped before the next read rather than kept.
const RETAIN_FILE_BUFFER: usize = 1 << 20;

/// Content type of `static`'s fixed body when the config names none.
pub const DEFAULT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// The client of a connection: address (IPv6, or IPv4-mapped) and port; zero when unknown
/// (tests, fuzzing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Peer {
    /// Address bytes, network order.
    pub addr: [u8; 16],
    /// TCP port.
    pub port: u16,
}

/// Which answer an asynchronous adapter owes: the connection (its slot and serial, so a
/// late answer for a recycled slot is recognised) and the request's place on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Ticket {
    /// The connection's slot in its terminator.
    pub conn: u32,
    /// The connection's serial number (slots are reused; serials are not).
    pub serial: u64,
    /// The request's number on its connection.
    pub seq: u32,
}

/// What [`Adapter::start`] did with a request.
#[derive(Debug, Clone, Copy)]
pub enum Answer<'r> {
    /// The answer, now.
    Now(Response<'r>),
    /// Taken: the answer comes later from [`Adapter::poll`] with the request's [`Ticket`].
    Later,
}

/// An answer that comes later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// A reply to send.
    Reply {
        /// Status, 200..=999.
        status: u16,
        /// Header lines, each `Name: value\r\n`, checked (token names, no control
        /// characters) and without the fields the connection writes itself.
        head: bytes::Bytes,
        /// The body.
        body: bytes::Bytes,
    },
    /// No reply: this status with a short text body (`502`, `503`, `504`).
    Failed(u16),
}

/// One parsed request, borrowed from the connection's buffer.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Method token as sent (case-sensitive: `GET`, not `get`).
    pub method: &'a str,
    /// Request target as sent: origin form (`/a?b`), absolute form or `*`.
    pub path: &'a str,
    /// Minor version: 0 = HTTP/1.0, 1 = HTTP/1.1.
    pub version: u8,
    /// Header lines in order, names and values as sent (values without surrounding spaces).
    pub headers: &'a [httparse::Header<'a>],
    /// The body (`Content-Length` bytes; empty without one).
    pub body: &'a [u8],
    /// Who sent it.
    pub peer: Peer,
}

impl<'a> Request<'a> {
    /// First header called `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// The path part of the target: the query dropped, and for the absolute form
    /// (`http://host/p`, which RFC 9112 §3.2.2 says servers MUST accept) the scheme and
    /// authority dropped too (`/` if nothing is left).
    pub fn target_path(&self) -> &'a str {
        let mut p = self.path;
        if let Some(end) = p.find(['?', '#']) {
            p = &p[..end];
        }
        for scheme in ["http://", "https://"] {
            if p.len() >= scheme.len() && p[..scheme.len()].eq_ignore_ascii_case(scheme) {
                let rest = &p[scheme.len()..];
                return rest.find('/').map_or("/", |i| &rest[i..]);
            }
        }
        p
    }
}

/// What an adapter answers; the connection adds `Content-Length`, `Server` and
/// `Connection`, and leaves out the body for `HEAD`.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    /// Status code (200..=999; anything else is sent as 500).
    pub status: u16,
    /// `Content-Type` value; empty = no such header.
    pub content_type: &'a str,
    /// Further header lines (must not contain CR or LF; lines that do are dropped).
    pub headers: &'a [(&'a str, &'a str)],
    /// The body.
    pub body: &'a [u8],
}

impl<'a> Response<'a> {
    /// `status` with a `text/plain` body.
    pub const fn text(status: u16, body: &'a str) -> Response<'a> {
        Response {
            status,
            content_type: DEFAULT_CONTENT_TYPE,
            headers: &[],
            body: body.as_bytes(),
        }
    }
}

/// Something that answers requests. One per worker; called for each complete request.
pub trait Adapter: Send {
    /// Answer `req` now, or take it and answer later under `ticket`.
    fn start<'r>(&'r mut self, req: &'r Request<'r>, ticket: Ticket) -> Answer<'r>;
    /// The name used in config and stats (`static`, `echo`, `health`, `nats`).
    fn name(&self) -> &'static str;
    /// Whether this worker may start another request that will be answered later (the
    /// per-worker in-flight limit). Synchronous adapters: always.
    fn can_start(&self) -> bool {
        true
    }
    /// Requests one connection may have waiting for a later answer.
    fn conn_limit(&self) -> u32 {
        u32::MAX
    }
    /// Hand over the answers that arrived since the last call; also sends what
    /// [`Adapter::start`] queued. Called by the worker between bursts; never blocks.
    fn poll(&mut self, done: &mut dyn FnMut(Ticket, Completion)) {
        let _ = done;
    }
    /// A request waiting longer than this (ms) is answered `504` by the connection itself:
    /// the guard against an answer that never comes. `None`: nothing ever waits.
    fn give_up_after_ms(&self) -> Option<u64> {
        None
    }
    /// This worker's counters of the adapter.
    fn stats(&self) -> AdapterStats {
        AdapterStats::default()
    }
    /// The shared state of the upstream (the NATS link) behind this adapter, for stats.
    fn upstream(&self) -> Option<std::sync::Arc<crate::nats::Upstream>> {
        None
    }
    /// How to wake the worker when answers arrive while it sleeps (a worker with empty
    /// rings parks; answers from another thread must not wait for its timeout).
    fn set_waker(&mut self, wake: Waker) {
        let _ = wake;
    }
}

/// Wakes a parked worker; called from another thread, cheap when the worker is awake.
#[derive(Clone)]
pub struct Waker(std::sync::Arc<dyn Fn() + Send + Sync>);

impl Waker {
    /// A waker that calls `wake`.
    pub fn new(wake: std::sync::Arc<dyn Fn() + Send + Sync>) -> Waker {
        Waker(wake)
    }

    /// Wake the worker.
    pub fn wake(&self) {
        (self.0)();
    }
}

impl std::fmt::Debug for Waker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Waker")
    }
}

/// An adapter that answers every request at once. Every `SyncAdapter` is an [`Adapter`].
pub trait SyncAdapter: Send {
    /// Answer `req`. The response may borrow from `self` and from `req`.
    fn handle<'r>(&'r mut self, req: &'r Request<'r>) -> Response<'r>;
    /// The name used in config and stats (`static`, `echo`, `health`).
    fn name(&self) -> &'static str;
}

impl<T: SyncAdapter> Adapter for T {
    #[inline]
    fn start<'r>(&'r mut self, req: &'r Request<'r>, _ticket: Ticket) -> Answer<'r> {
        Answer::Now(self.handle(req))
    }
    fn name(&self) -> &'static str {
        SyncAdapter::name(self)
    }
}

/// A worker's counters of an asynchronous adapter (all zero for synchronous ones).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct AdapterStats {
    /// Requests handed on (answered later).
    pub started: u64,
    /// Waiting for an answer now.
    pub in_flight: u64,
    /// Answers that came back.
    pub completed: u64,
    /// Answered `503` at once: the upstream is down (fail fast) or its queue refused.
    pub unavailable: u64,
}

impl AdapterStats {
    /// Add `o` into `self`.
    pub fn add(&mut self, o: &AdapterStats) {
        self.started += o.started;
        self.in_flight += o.in_flight;
        self.completed += o.completed;
        self.unavailable += o.unavailable;
    }
}

/// Why an adapter could not be built from its config.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// `static` with neither `dir` nor `body`.
    #[error(
        "static adapter: set `dir` (serve files) or `body` (one fixed answer); neither is set"
    )]
    StaticWithoutSource,
    /// `static` with both `dir` and `body`.
    #[error("static adapter: set only one of `dir` and `body`, not both")]
    StaticWithBothSources,
    /// `static` with `dir` and `content_type`.
    #[error("static adapter: `content_type` applies to `body` only; files get theirs from the extension")]
    ContentTypeWithDir,
    /// A `content_type` that cannot be sent as a header value.
    #[error("static adapter: content_type {0:?} is not a valid header value (visible ASCII and spaces only)")]
    BadContentType(String),
    /// `dir` cannot be resolved (missing, no permission, ...).
    #[error("static adapter: dir {}: {source}", path.display())]
    Dir {
        /// As configured.
        path: PathBuf,
        /// From canonicalizing it.
        source: std::io::Error,
    },
    /// `dir` exists but is a file or something else.
    #[error("static adapter: dir {} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// The NATS client thread could not start.
    #[error("nats adapter: {0}")]
    Nats(String),
}

/// One adapter per worker for `workers` workers: synchronous ones are built each on their
/// own; `nats` starts one NATS client thread that all of them share.
pub fn build_all(
    cfg: &AdapterConfig,
    workers: usize,
) -> Result<Vec<Box<dyn Adapter>>, AdapterError> {
    if let AdapterConfig::Nats(n) = cfg {
        return Ok(crate::nats::start(n, workers)?
            .into_iter()
            .map(|a| Box::new(a) as Box<dyn Adapter>)
            .collect());
    }
    (0..workers).map(|_| build(cfg)).collect()
}

/// Make the adapter `cfg` describes; checks `dir` exists now, not at the first request.
/// `nats` starts its own NATS client thread (see [`build_all`] to share one).
pub fn build(cfg: &AdapterConfig) -> Result<Box<dyn Adapter>, AdapterError> {
    match cfg {
        AdapterConfig::Static {
            dir: Some(_),
            body: Some(_),
            ..
        } => Err(AdapterError::StaticWithBothSources),
        AdapterConfig::Static {
            dir: None,
            body: None,
            ..
        } => Err(AdapterError::StaticWithoutSource),
        AdapterConfig::Static {
            dir: Some(_),
            content_type: Some(_),
            ..
        } => Err(AdapterError::ContentTypeWithDir),
        AdapterConfig::Static { dir: Some(dir), .. } => Ok(Box::new(StaticDir::new(dir)?)),
        AdapterConfig::Static {
            body: Some(body),
            content_type,
            ..
        } => Ok(Box::new(FixedBody::new(body, content_type.as_deref())?)),
        AdapterConfig::Echo => Ok(Box::new(Echo::default())),
        AdapterConfig::Health => Ok(Box::new(Health)),
        AdapterConfig::Nats(n) => Ok(crate::nats::start(n, 1)?
            .pop()
            .map(|a| Box::new(a) as Box<dyn Adapter>)
            .ok_or(AdapterError::Nats("no adapter".into()))?),
    }
}

/// `Allow` for the adapters that serve GET and HEAD only.
const ALLOW_GET_HEAD: &[(&str, &str)] = &[("Allow", "GET, HEAD")];

fn method_not_allowed() -> Response<'static> {
    Response {
        headers: ALLOW_GET_HEAD,
        ..Response::text(405, "method not allowed\n")
    }
}

/// `static` with `body`: the same answer to every GET/HEAD.
#[derive(Debug, Clone)]
pub struct FixedBody {
    body: Box<[u8]>,
    content_type: Box<str>,
}

impl FixedBody {
    /// `content_type` defaults to [`DEFAULT_CONTENT_TYPE`].
    pub fn new(body: &str, content_type: Option<&str>) -> Result<FixedBody, AdapterError> {
        let content_type = content_type.unwrap_or(DEFAULT_CONTENT_TYPE);
        // A CR/LF here would let the config inject header lines; RFC 9110 §5.5 field-value.
        if content_type.is_empty()
            || !content_type
                .bytes()
                .all(|b| b == b' ' || b.is_ascii_graphic())
        {
            return Err(AdapterError::BadContentType(content_type.into()));
        }
        Ok(FixedBody {
            body: body.as_bytes().into(),
            content_type: content_type.into(),
        })
    }
}

impl SyncAdapter for FixedBody {
    fn handle<'r>(&'r mut self, req: &'r Request<'r>) -> Response<'r> {
        match req.method {
            "GET" | "HEAD" => Response {
                status: 200,
                content_type: &self.content_type,
                headers: &[],
                body: &self.body,
            },
            _ => method_not_allowed(),
        }
    }
    fn name(&self) -> &'static str {
        "static"
    }
}

/// `static` with `dir`: files under one directory.
#[derive(Debug)]
pub struct StaticDir {
    /// Canonical (absolute, symlinks resolved): the prefix every served file must have.
    root: PathBuf,
    /// The last file read; reused so serving costs no allocation once it is large enough.
    file: Vec<u8>,
}

impl StaticDir {
    /// Serve files under `dir`, which must exist and be a directory.
    pub fn new(dir: &Path) -> Result<StaticDir, AdapterError> {
        let root = dir.canonicalize().map_err(|source| AdapterError::Dir {
            path: dir.into(),
            source,
        })?;
        if !root.is_dir() {
            return Err(AdapterError::NotADirectory(dir.into()));
        }
        Ok(StaticDir {
            root,
            file: Vec::new(),
        })
    }

    /// Resolve a decoded target to a canonical file path under `root`, or the status to answer.
    fn resolve(&self, decoded: &str) -> Result<(PathBuf, &'static str), u16> {
        let mut path = self.root.clone();
        for segment in decoded.split('/') {
            match segment {
                "" | "." => {}
                ".." => return Err(400),
                s => path.push(s),
            }
        }
        let mut canon = path
            .canonicalize()
            .map_err(|e| not_found_or_forbidden(&e))?;
        let mut name = path;
        if canon.is_dir() {
            name = canon.join("index.html");
            canon = name
                .canonicalize()
                .map_err(|e| not_found_or_forbidden(&e))?;
        }
        if !canon.starts_with(&self.root) {
            return Err(404);
        }
        Ok((canon, content_type_of(&name)))
    }
}

/// How a failure to resolve a path shows to the client: missing, not a directory, a
/// symlink loop, too long... all look like "not found", except permissions.
fn not_found_or_forbidden(e: &std::io::Error) -> u16 {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        403
    } else {
        404
    }
}

fn status_response(status: u16) -> Response<'static> {
    match status {
        400 => Response::text(400, "bad request\n"),
        403 => Response::text(403, "forbidden\n"),
        404 => Response::text(404, "not found\n"),
        _ => Response::text(500, "internal error\n"),
    }
}

impl SyncAdapter for StaticDir {
    fn handle<'r>(&'r mut self, req: &'r Request<'r>) -> Response<'r> {
        if !matches!(req.method, "GET" | "HEAD") {
            return method_not_allowed();
        }
        let Some(decoded) = percent_decode(req.target_path()) else {
            return status_response(400);
        };
        let (path, content_type) = match self.resolve(&decoded) {
            Ok(found) => found,
            Err(status) => return status_response(status),
        };
        if self.file.capacity() > RETAIN_FILE_BUFFER {
            self.file = Vec::new();
        }
        self.file.clear();
        let read = File::open(&path).and_then(|f| {
            let meta = f.metadata()?;
            if !meta.is_file() {
                return Ok(None);
            }
            // `take` also guards a file that grows between `metadata` and the read.
            f.take(MAX_FILE_BYTES + 1)
                .read_to_end(&mut self.file)
                .map(Some)
        });
        match read {
            Ok(None) => status_response(404),
            Ok(Some(n)) if n as u64 > MAX_FILE_BYTES => {
                tracing::warn!(path = %path.display(), "static: file over {MAX_FILE_BYTES} bytes, answered 500");
                Response::text(500, "file too large\n")
            }
            Ok(Some(_)) => Response {
                status: 200,
                content_type,
                headers: &[],
                body: &self.file,
            },
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => status_response(403),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "static: read failed, answered 500");
                status_response(500)
            }
        }
    }
    fn name(&self) -> &'static str {
        "static"
    }
}

/// Decode `%XX` escapes (RFC 3986 §2.1); `None` for a bad escape, a NUL or non-UTF-8 result.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = hex_value(*bytes.get(i + 1)?)?;
            let lo = hex_value(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    if out.contains(&0) {
        return None;
    }
    String::from_utf8(out).ok()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Content type from the file name's extension; a small table, not a MIME database.
fn content_type_of(path: &Path) -> &'static str {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    const TABLE: &[(&str, &str)] = &[
        ("html", "text/html; charset=utf-8"),
        ("htm", "text/html; charset=utf-8"),
        ("css", "text/css; charset=utf-8"),
        ("js", "text/javascript; charset=utf-8"),
        ("mjs", "text/javascript; charset=utf-8"),
        ("json", "application/json"),
        ("txt", "text/plain; charset=utf-8"),
        ("png", "image/png"),
        ("jpg", "image/jpeg"),
        ("jpeg", "image/jpeg"),
        ("svg", "image/svg+xml"),
    ];
    TABLE
        .iter()
        .find(|(e, _)| e.eq_ignore_ascii_case(ext))
        .map_or("application/octet-stream", |(_, t)| t)
}

/// `echo`: POST/PUT/PATCH get their body back; other methods get their request line and
/// headers as text.
#[derive(Debug, Default)]
pub struct Echo {
    /// The request text of the last GET; reused.
    text: Vec<u8>,
}

impl SyncAdapter for Echo {
    fn handle<'r>(&'r mut self, req: &'r Request<'r>) -> Response<'r> {
        if matches!(req.method, "POST" | "PUT" | "PATCH") {
            return Response {
                status: 200,
                content_type: "text/plain",
                headers: &[],
                body: req.body,
            };
        }
        let t = &mut self.text;
        t.clear();
        t.extend_from_slice(req.method.as_bytes());
        t.push(b' ');
        t.extend_from_slice(req.path.as_bytes());
        t.extend_from_slice(if req.version == 0 {
            b" HTTP/1.0\r\n"
        } else {
            b" HTTP/1.1\r\n"
        });
        for h in req.headers {
            t.extend_from_slice(h.name.as_bytes());
            t.extend_from_slice(b": ");
            t.extend_from_slice(h.value);
            t.extend_from_slice(b"\r\n");
        }
        Response {
            status: 200,
            content_type: "text/plain",
            headers: &[],
            body: &self.text,
        }
    }
    fn name(&self) -> &'static str {
        "echo"
    }
}

/// `health`: `200 ok` on every path and method.
#[derive(Debug, Default, Clone, Copy)]
pub struct Health;

impl SyncAdapter for Health {
    fn handle<'r>(&'r mut self, _req: &'r Request<'r>) -> Response<'r> {
        Response::text(200, "ok\n")
    }
    fn name(&self) -> &'static str {
        "health"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Request<'_> {
        Request {
            method: "GET",
            path,
            version: 1,
            headers: &[],
            body: b"",
            peer: Peer::default(),
        }
    }

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let p = std::env::temp_dir().join(format!("weir-adapter-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).expect("create temp dir");
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// `root/site` with files, and `root/secret.txt` beside it (outside the served dir).
    fn site(tag: &str) -> (TempDir, StaticDir) {
        let t = TempDir::new(tag);
        let site = t.0.join("site");
        std::fs::create_dir_all(site.join("sub")).unwrap();
        std::fs::write(site.join("hello.txt"), "hi\n").unwrap();
        std::fs::write(site.join("page.html"), "<p>x</p>").unwrap();
        std::fs::write(site.join("sub/index.html"), "<h1>sub</h1>").unwrap();
        std::fs::write(t.0.join("secret.txt"), "secret").unwrap();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(t.0.join("secret.txt"), site.join("out.txt")).unwrap();
            std::os::unix::fs::symlink(site.join("hello.txt"), site.join("in.txt")).unwrap();
        }
        let dir = StaticDir::new(&site).unwrap();
        (t, dir)
    }

    fn status_of(a: &mut dyn SyncAdapter, path: &str) -> (u16, Vec<u8>) {
        let req = get(path);
        let r = a.handle(&req);
        (r.status, r.body.to_vec())
    }

    #[test]
    fn static_dir_serves_files_and_index() {
        let (_t, mut d) = site("serve");
        let req = get("/hello.txt?x=1");
        let r = d.handle(&req);
        assert_eq!(
            (r.status, r.body, r.content_type),
            (200, &b"hi\n"[..], "text/plain; charset=utf-8")
        );
        let req = get("/page.html");
        assert_eq!(d.handle(&req).content_type, "text/html; charset=utf-8");
        assert_eq!(status_of(&mut d, "/sub"), (200, b"<h1>sub</h1>".to_vec()));
        assert_eq!(status_of(&mut d, "/sub/"), (200, b"<h1>sub</h1>".to_vec()));
        assert_eq!(status_of(&mut d, "/%68ello.txt"), (200, b"hi\n".to_vec()));
        assert_eq!(status_of(&mut d, "http://example.com/hello.txt").0, 200);
        #[cfg(unix)]
        assert_eq!(status_of(&mut d, "/in.txt").0, 200);
    }

    #[test]
    fn static_dir_404_and_405() {
        let (_t, mut d) = site("missing");
        assert_eq!(status_of(&mut d, "/nope.txt").0, 404);
        assert_eq!(status_of(&mut d, "/").0, 404, "no index.html at the root");
        assert_eq!(status_of(&mut d, "/hello.txt/x").0, 404);
        let req = Request {
            method: "POST",
            ..get("/hello.txt")
        };
        let r = d.handle(&req);
        assert_eq!((r.status, r.headers), (405, ALLOW_GET_HEAD));
    }

    #[test]
    fn static_dir_refuses_escapes() {
        let (_t, mut d) = site("escape");
        for path in [
            "/../secret.txt",
            "/../etc/passwd",
            "/%2e%2e/secret.txt",
            "/%2E%2E%2Fsecret.txt",
            "/sub/../../secret.txt",
            "/..%2f..%2fetc%2fpasswd",
        ] {
            let (status, body) = status_of(&mut d, path);
            assert_eq!(status, 400, "{path}");
            assert_ne!(body, b"secret");
        }
        for path in ["/%", "/%zz", "/a%00b", "/%ff"] {
            assert_eq!(status_of(&mut d, path).0, 400, "{path}");
        }
        // Absolute-looking targets stay under the root.
        assert_eq!(status_of(&mut d, "//etc/passwd").0, 404);
        #[cfg(unix)]
        assert_eq!(status_of(&mut d, "/out.txt").0, 404, "symlink out of dir");
    }

    #[test]
    fn build_checks_config() {
        let s = |dir: Option<&str>, body: Option<&str>, ct: Option<&str>| AdapterConfig::Static {
            dir: dir.map(PathBuf::from),
            body: body.map(String::from),
            content_type: ct.map(String::from),
        };
        assert!(matches!(
            build(&s(None, None, None)),
            Err(AdapterError::StaticWithoutSource)
        ));
        assert!(matches!(
            build(&s(Some("/"), Some("x"), None)),
            Err(AdapterError::StaticWithBothSources)
        ));
        assert!(matches!(
            build(&s(Some("/"), None, Some("a/b"))),
            Err(AdapterError::ContentTypeWithDir)
        ));
        assert!(matches!(
            build(&s(None, Some("x"), Some("a\r\nX: y"))),
            Err(AdapterError::BadContentType(_))
        ));
        let err = build(&s(Some("/no/such/weir/dir"), None, None))
            .err()
            .unwrap();
        assert!(err.to_string().contains("/no/such/weir/dir"), "{err}");
        let t = TempDir::new("notdir");
        let f = t.0.join("file");
        std::fs::write(&f, "x").unwrap();
        let err = build(&AdapterConfig::Static {
            dir: Some(f),
            body: None,
            content_type: None,
        })
        .err()
        .unwrap();
        assert!(matches!(err, AdapterError::NotADirectory(_)), "{err}");
        assert_eq!(build(&AdapterConfig::default()).unwrap().name(), "static");
        assert_eq!(build(&AdapterConfig::Echo).unwrap().name(), "echo");
        assert_eq!(build(&AdapterConfig::Health).unwrap().name(), "health");
    }

    #[test]
    fn fixed_body() {
        let mut a = FixedBody::new("hello\n", None).unwrap();
        let req = get("/anything");
        let r = a.handle(&req);
        assert_eq!(
            (r.status, r.body, r.content_type),
            (200, &b"hello\n"[..], DEFAULT_CONTENT_TYPE)
        );
        let req = Request {
            method: "DELETE",
            ..get("/")
        };
        assert_eq!(a.handle(&req).status, 405);
    }

    #[test]
    fn echo_and_health() {
        let mut e = Echo::default();
        let headers = [httparse::Header {
            name: "Host",
            value: b"h",
        }];
        let req = Request {
            headers: &headers,
            ..get("/p")
        };
        assert_eq!(e.handle(&req).body, b"GET /p HTTP/1.1\r\nHost: h\r\n");
        let req = Request {
            method: "POST",
            body: b"data",
            ..get("/p")
        };
        assert_eq!(e.handle(&req).body, b"data");
        let req = Request {
            method: "BREW",
            ..get("/pot")
        };
        assert_eq!(Health.handle(&req).body, b"ok\n");
    }

    #[test]
    fn target_path_forms() {
        assert_eq!(get("/a/b?c=d").target_path(), "/a/b");
        assert_eq!(get("HTTP://h:80").target_path(), "/");
        assert_eq!(get("https://h/x?y").target_path(), "/x");
        assert_eq!(get("*").target_path(), "*");
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type_of(Path::new("a/b.PNG")), "image/png");
        assert_eq!(
            content_type_of(Path::new("a/b")),
            "application/octet-stream"
        );
        assert_eq!(content_type_of(Path::new("x.svg")), "image/svg+xml");
    }
}
