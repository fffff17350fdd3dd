//! The control socket: unix `SOCK_SEQPACKET` connections carrying one [`frame`] per
//! datagram, opened by a [`Hello`] exchange and checked against the peer's credentials.
//!
//! A daemon binds a [`Listener`] in its runtime directory and [`Listener::accept`]s one
//! connection at a time; a client [`Conn::connect`]s. The connecting side speaks first with
//! its [`Hello`]; the listener answers [`HelloReply::Accepted`] or
//! [`HelloReply::Refused`] with a reason and closes. After that either side
//! [`Conn::send`]s and [`Conn::recv`]s [`Envelope`]s; [`Conn::request`] sends one and waits
//! for the reply with the same id, skipping stale ones.
//!
//! Why `SOCK_SEQPACKET`: the kernel keeps message boundaries (one `send` is one `recv`, so
//! there is no length prefix to parse or to get wrong), and it is connection-oriented, so
//! the listener learns the peer's credentials at `connect` (`SO_PEERCRED`) and each side
//! sees the other go away (a zero-length read, `EPIPE`). Rejected: `SOCK_DGRAM` (no
//! connection: no disconnect signal, credentials only per message, and replies need a
//! bound client address) and `SOCK_STREAM` (needs length framing and partial-read
//! handling, with its own ways for a peer to desynchronise us).
//!
//! Bad input never ends a daemon: a malformed, truncated, oversized or empty frame is
//! refused with a [`FrameError`], logged, and the connection stays usable; a wrong magic,
//! version or uid is refused at the hello, logged on both sides, and only that connection
//! is closed — the listener keeps accepting.
//!
//! Security: the socket lives in a runtime directory that must be ours and mode 0700
//! (created so if missing; an existing one open to group or others is refused), the
//! socket itself is chmod 0600, and every accepted peer's `SO_PEERCRED` uid must equal the
//! configured one. The directory is what actually protects the socket between `bind` and
//! `chmod`, and against platforms that ignore socket permissions.
//!
//! The file descriptors are created with nix's safe API. `accept` goes through
//! `std::os::unix::net::UnixListener`, which accepts on any unix listening socket and
//! hands back an owned descriptor — nix's `accept` returns a raw one, and turning that into
//! an `OwnedFd` would need `unsafe`, which this crate denies.
//!
//! [`frame`]: crate::frame

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    self, getsockopt, setsockopt, sockopt, AddressFamily, Backlog, MsgFlags, SockFlag, SockType,
    UnixAddr,
};
use nix::sys::time::{TimeVal, TimeValLike};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::frame::{self, FrameError};
use crate::proto::{Envelope, Hello, HelloReply, MAGIC, MAX_FRAME, PROTOCOL_VERSION};

/// How long the listener waits for a connecting peer's hello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(2);

/// Send timeout set on accepted connections (change it with [`Conn::set_timeouts`]).
const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a control-socket operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the path.
        what: String,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// A frame was refused.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The peer speaks another protocol version.
    #[error(
        "protocol version mismatch: we speak version {ours}, the peer speaks version {theirs}"
    )]
    Version {
        /// [`PROTOCOL_VERSION`].
        ours: u32,
        /// The peer's.
        theirs: u32,
    },
    /// The peer's hello does not start with [`MAGIC`]: it is not speaking weir's protocol.
    #[error("the peer's hello does not start with the magic bytes \"weir\": not a weir peer")]
    Magic,
    /// The peer runs as a uid we do not accept.
    #[error("peer runs as uid {got}, only uid {expected} may connect")]
    PeerUid {
        /// The configured uid.
        expected: u32,
        /// The peer's `SO_PEERCRED` uid.
        got: u32,
    },
    /// The listener refused our hello.
    #[error("refused by the listener: {0}")]
    Refused(String),
    /// The peer closed the connection.
    #[error("the peer closed the connection")]
    Closed,
    /// Nothing arrived in time.
    #[error("timed out")]
    Timeout,
    /// The runtime directory or socket path is not safe to use.
    #[error("insecure control socket location: {0}")]
    Insecure(String),
}

fn io_err(what: impl Into<String>, source: impl Into<io::Error>) -> TransportError {
    TransportError::Io {
        what: what.into(),
        source: source.into(),
    }
}

/// The effective uid of this process: the one a [`Listener`] usually allows.
pub fn current_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// A bound, listening control socket.
///
/// Dropping it removes the socket file, if the file at its path is still the one this
/// listener bound (a newer daemon's socket at the same path is left alone).
#[derive(Debug)]
pub struct Listener {
    fd: OwnedFd,
    path: PathBuf,
    allowed_uid: u32,
    /// Device and inode of the socket file we bound, to recognise it on drop.
    file_id: (u64, u64),
}

impl Listener {
    /// Bind `path` and listen; only peers running as `allowed_uid` will be accepted.
    ///
    /// The parent directory is created with mode 0700 if missing; an existing one must be
    /// owned by us and not accessible to group or others. A stale socket file (one nobody
    /// listens on) is removed; a live one, or a file that is not a socket, is an error.
    pub fn bind(path: &Path, allowed_uid: u32) -> Result<Listener, TransportError> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        secure_dir(dir)?;
        remove_stale(path)?;

        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .map_err(|e| io_err("creating a unix seqpacket socket", e))?;
        let addr = UnixAddr::new(path)
            .map_err(|e| io_err(format!("control socket path {}", path.display()), e))?;
        socket::bind(fd.as_raw_fd(), &addr)
            .map_err(|e| io_err(format!("binding control socket {}", path.display()), e))?;
        // The 0700 directory keeps others out until this chmod narrows the socket itself.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io_err(format!("chmod 0600 {}", path.display()), e))?;
        let meta = std::fs::symlink_metadata(path)
            .map_err(|e| io_err(format!("stat {}", path.display()), e))?;
        let listener = Listener {
            fd,
            path: path.to_path_buf(),
            allowed_uid,
            file_id: (meta.dev(), meta.ino()),
        };
        socket::listen(&listener.fd, Backlog::new(16).unwrap_or(Backlog::MAXCONN))
            .map_err(|e| io_err(format!("listening on {}", path.display()), e))?;
        Ok(listener)
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The uid peers must run as.
    pub fn allowed_uid(&self) -> u32 {
        self.allowed_uid
    }

    /// Accept one connection and run the hello exchange; `me` is our side's hello (its
    /// role and name go into the reply). `timeout` bounds the wait for a connection
    /// (`None` = wait forever); the peer's hello must then arrive within
    /// [`HELLO_TIMEOUT`].
    ///
    /// A peer with another uid, magic or protocol version, or whose hello is not a hello,
    /// is sent [`HelloReply::Refused`] with the reason, disconnected, logged, and reported
    /// as the error; the listener itself is unaffected.
    pub fn accept(
        &self,
        me: &Hello,
        timeout: Option<Duration>,
    ) -> Result<(Conn, Hello), TransportError> {
        let fd = self.accept_fd(timeout)?;
        let got = getsockopt(&fd, sockopt::PeerCredentials)
            .map_err(|e| io_err(format!("SO_PEERCRED on {}", self.path.display()), e))?
            .uid();
        let conn = Conn::new(fd, got);
        conn.set_timeouts(None, Some(DEFAULT_SEND_TIMEOUT))?;

        // Read the hello before any refusal: closing with unread data makes the peer's
        // next read fail with ECONNRESET instead of delivering our reason.
        let hello = conn.recv_hello();
        if got != self.allowed_uid {
            return Err(self.refuse(
                &conn,
                TransportError::PeerUid {
                    expected: self.allowed_uid,
                    got,
                },
            ));
        }
        let hello = match hello {
            Ok(h) => h,
            Err(e @ (TransportError::Closed | TransportError::Io { .. })) => {
                tracing::warn!(socket = %self.path.display(), error = %e, "control peer failed before its hello");
                return Err(e);
            }
            Err(e) => return Err(self.refuse(&conn, e)),
        };
        let reply = HelloReply::Accepted {
            version: PROTOCOL_VERSION,
            role: me.role,
            name: me.name.clone(),
        };
        conn.send_frame(&frame::encode(&reply)?)?;
        tracing::debug!(socket = %self.path.display(), peer = %hello.name, role = ?hello.role, "control peer connected");
        Ok((conn, hello))
    }

    /// Wait for and accept one connection.
    fn accept_fd(&self, timeout: Option<Duration>) -> Result<OwnedFd, TransportError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        // `UnixListener` owns a duplicate so that dropping it leaves ours open; its
        // `accept` works on any unix listening socket and returns an owned descriptor.
        let dup = self
            .fd
            .try_clone()
            .map_err(|e| io_err(format!("dup of {}", self.path.display()), e))?;
        let std_listener = UnixListener::from(dup);
        loop {
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if !wait_readable(self.fd.as_fd(), remaining)
                .map_err(|e| io_err(format!("poll on {}", self.path.display()), e))?
            {
                return Err(TransportError::Timeout);
            }
            match std_listener.accept() {
                Ok((stream, _addr)) => {
                    // The accepted socket must block: timeouts come from poll and
                    // SO_RCVTIMEO / SO_SNDTIMEO.
                    stream.set_nonblocking(false).map_err(|e| {
                        io_err(format!("accepted socket on {}", self.path.display()), e)
                    })?;
                    return Ok(OwnedFd::from(stream));
                }
                // The connection went away between poll and accept, or a signal.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) || e.raw_os_error() == Some(Errno::ECONNABORTED as i32) =>
                {
                    continue
                }
                Err(e) => return Err(io_err(format!("accept on {}", self.path.display()), e)),
            }
        }
    }

    /// Send the refusal for `err`, log it, and return `err`; dropping `conn` closes it.
    fn refuse(&self, conn: &Conn, err: TransportError) -> TransportError {
        // Worded for the peer, who reads it as "refused by the listener: …".
        let reason = match &err {
            TransportError::Version { ours, theirs } => format!(
                "protocol version mismatch: the listener speaks version {ours}, you sent version {theirs}"
            ),
            TransportError::PeerUid { expected, got } => format!(
                "your uid {got} may not use this socket (only uid {expected} may)"
            ),
            TransportError::Magic => {
                "the hello does not start with the magic bytes \"weir\": not a weir peer"
                    .to_string()
            }
            e => format!("bad hello: {e}"),
        };
        tracing::warn!(socket = %self.path.display(), peer_uid = conn.peer_uid, error = %err, "refused a control connection");
        let reply = HelloReply::Refused { reason };
        if let Ok(bytes) = frame::encode(&reply) {
            // Best effort: the peer may already be gone.
            let _ = conn.send_frame(&bytes);
        }
        err
    }

    /// Remove the socket file now (also done on drop). Does nothing if the file at the
    /// path is no longer the socket this listener bound.
    pub fn remove_socket(&self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if meta.file_type().is_socket() && (meta.dev(), meta.ino()) == self.file_id {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    tracing::warn!(socket = %self.path.display(), error = %e, "cannot remove control socket");
                }
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.remove_socket();
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Create `dir` with mode 0700 if missing; otherwise require that it is a directory owned
/// by us and closed to group and others.
fn secure_dir(dir: &Path) -> Result<(), TransportError> {
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| io_err(format!("creating runtime directory {}", dir.display()), e))?;
            // The umask can only narrow 0700, but be explicit.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| io_err(format!("chmod 0700 {}", dir.display()), e))?;
            Ok(())
        }
        Err(e) => Err(io_err(
            format!("stat runtime directory {}", dir.display()),
            e,
        )),
        Ok(meta) => {
            let me = current_uid();
            let mode = meta.mode() & 0o7777;
            if !meta.is_dir() {
                Err(TransportError::Insecure(format!(
                    "{} is not a directory",
                    dir.display()
                )))
            } else if meta.uid() != me {
                Err(TransportError::Insecure(format!(
                    "runtime directory {} is owned by uid {}, not by us (uid {me})",
                    dir.display(),
                    meta.uid()
                )))
            } else if mode & 0o077 != 0 {
                Err(TransportError::Insecure(format!(
                    "runtime directory {} has mode {mode:04o}; it must not be accessible to group or others (use 0700)",
                    dir.display()
                )))
            } else {
                Ok(())
            }
        }
    }
}

/// Remove a socket file left by a daemon that is gone. A file that is not a socket, or a
/// socket someone still listens on, is left alone and reported.
fn remove_stale(path: &Path) -> Result<(), TransportError> {
    let meta = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(format!("stat {}", path.display()), e)),
        Ok(m) => m,
    };
    if !meta.file_type().is_socket() {
        return Err(TransportError::Insecure(format!(
            "{} exists and is not a socket; refusing to replace it",
            path.display()
        )));
    }
    // Is anybody listening? A non-blocking connect answers at once.
    let probe = socket::socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(|e| io_err("creating a unix seqpacket socket", e))?;
    let addr = UnixAddr::new(path)
        .map_err(|e| io_err(format!("control socket path {}", path.display()), e))?;
    match socket::connect(probe.as_raw_fd(), &addr) {
        Ok(()) | Err(Errno::EAGAIN) => Err(io_err(
            format!(
                "control socket {} is in use by a running process",
                path.display()
            ),
            Errno::EADDRINUSE,
        )),
        Err(_) => std::fs::remove_file(path)
            .map_err(|e| io_err(format!("removing stale socket {}", path.display()), e)),
    }
}

/// Poll `fd` for input; `Ok(false)` when `timeout` passed first. EINTR is retried.
fn wait_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> Result<bool, Errno> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let pt = match deadline {
            None => PollTimeout::NONE,
            Some(d) => poll_timeout(d.saturating_duration_since(Instant::now())),
        };
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(&mut fds, pt) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Milliseconds for poll, rounded up so that a short timeout still waits.
fn poll_timeout(d: Duration) -> PollTimeout {
    let ms = d.as_nanos().div_ceil(1_000_000);
    PollTimeout::try_from(ms.min(i32::MAX as u128)).unwrap_or(PollTimeout::MAX)
}

fn timeval(d: Option<Duration>) -> TimeVal {
    match d {
        // Zero means "no timeout" to the kernel; the smallest real one is 1 µs.
        Some(d) => {
            TimeVal::microseconds(i64::try_from(d.as_micros()).unwrap_or(i64::MAX / 2).max(1))
        }
        None => TimeVal::microseconds(0),
    }
}

/// One control connection, after a successful hello.
#[derive(Debug)]
pub struct Conn {
    fd: OwnedFd,
    peer_uid: u32,
}

impl Conn {
    fn new(fd: OwnedFd, peer_uid: u32) -> Conn {
        // A datagram must fit the send buffer whole, and the default one (wmem_default,
        // often 208 KiB) is smaller than MAX_FRAME. The kernel caps this at wmem_max and
        // doubles it; if it still does not fit, large sends fail with EMSGSIZE.
        if let Err(e) = setsockopt(&fd, sockopt::SndBuf, &(2 * MAX_FRAME)) {
            tracing::warn!(error = %e, "cannot raise SO_SNDBUF for control frames");
        }
        Conn { fd, peer_uid }
    }

    /// Connect to the listener at `path`, send `me`, and wait for its answer. `timeout`
    /// bounds the connect and the wait for the answer, and stays the send timeout.
    /// A refusal is `Err(Refused(reason))`.
    pub fn connect(
        path: &Path,
        me: &Hello,
        timeout: Duration,
    ) -> Result<(Conn, HelloReply), TransportError> {
        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| io_err("creating a unix seqpacket socket", e))?;
        let addr = UnixAddr::new(path)
            .map_err(|e| io_err(format!("control socket path {}", path.display()), e))?;
        let conn = Conn::new(fd, 0);
        // SO_SNDTIMEO also bounds a connect that waits for room in the listen backlog.
        conn.set_timeouts(None, Some(timeout))?;
        match socket::connect(conn.fd.as_raw_fd(), &addr) {
            Ok(()) => {}
            Err(Errno::EAGAIN) => return Err(TransportError::Timeout),
            Err(e @ (Errno::ENOENT | Errno::ECONNREFUSED)) => {
                return Err(io_err(
                    format!(
                        "connecting to control socket {} (is the daemon running?)",
                        path.display()
                    ),
                    e,
                ))
            }
            Err(e) => {
                return Err(io_err(
                    format!("connecting to control socket {}", path.display()),
                    e,
                ))
            }
        }
        let peer_uid = getsockopt(&conn.fd, sockopt::PeerCredentials)
            .map_err(|e| io_err(format!("SO_PEERCRED on {}", path.display()), e))?
            .uid();
        let conn = Conn { peer_uid, ..conn };
        conn.send_frame(&frame::encode(me)?)?;
        let bytes = conn.recv_frame(Some(timeout))?;
        match frame::decode::<HelloReply>(&bytes) {
            Ok(HelloReply::Refused { reason }) => {
                tracing::warn!(socket = %path.display(), %reason, "control connection refused");
                Err(TransportError::Refused(reason))
            }
            Ok(HelloReply::Accepted { version, .. }) if version != PROTOCOL_VERSION => {
                let e = TransportError::Version {
                    ours: PROTOCOL_VERSION,
                    theirs: version,
                };
                tracing::warn!(socket = %path.display(), error = %e, "listener accepted another protocol version");
                Err(e)
            }
            Ok(reply @ HelloReply::Accepted { .. }) => Ok((conn, reply)),
            Err(e) => {
                tracing::warn!(socket = %path.display(), error = %e, "bad hello reply");
                Err(e.into())
            }
        }
    }

    /// The peer's uid (`SO_PEERCRED`, taken at connect).
    pub fn peer_uid(&self) -> u32 {
        self.peer_uid
    }

    /// Set the kernel's receive and send timeouts (`SO_RCVTIMEO`, `SO_SNDTIMEO`); `None`
    /// = block. A [`Conn::recv`] with its own timeout polls first, so the receive timeout
    /// matters only for `recv(None)`.
    pub fn set_timeouts(
        &self,
        recv: Option<Duration>,
        send: Option<Duration>,
    ) -> Result<(), TransportError> {
        setsockopt(&self.fd, sockopt::ReceiveTimeout, &timeval(recv))
            .map_err(|e| io_err("setting SO_RCVTIMEO", e))?;
        setsockopt(&self.fd, sockopt::SendTimeout, &timeval(send))
            .map_err(|e| io_err("setting SO_SNDTIMEO", e))?;
        Ok(())
    }

    /// Send one envelope as one frame.
    pub fn send<T: Serialize>(&self, msg: &Envelope<T>) -> Result<(), TransportError> {
        self.send_frame(&frame::encode(msg)?)
    }

    /// Receive one envelope; `timeout` `None` waits (up to `SO_RCVTIMEO`, if set).
    ///
    /// A frame that is refused ([`TransportError::Frame`]) has been consumed and logged;
    /// the connection stays usable.
    pub fn recv<T: DeserializeOwned>(
        &self,
        timeout: Option<Duration>,
    ) -> Result<Envelope<T>, TransportError> {
        let bytes = self.recv_frame(timeout)?;
        frame::decode(&bytes).map_err(|e| {
            tracing::warn!(peer_uid = self.peer_uid, error = %e, "refused a control frame");
            e.into()
        })
    }

    /// Send `body` with `id` and wait up to `timeout` for the reply carrying the same id.
    /// Replies with other ids (late answers to earlier requests) are logged and skipped.
    pub fn request<Q: Serialize, R: DeserializeOwned>(
        &self,
        id: u64,
        body: Q,
        timeout: Duration,
    ) -> Result<R, TransportError> {
        let deadline = Instant::now() + timeout;
        self.send(&Envelope { id, body })?;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(TransportError::Timeout);
            }
            let reply = self.recv::<R>(Some(remaining))?;
            if reply.id == id {
                return Ok(reply.body);
            }
            tracing::warn!(
                got = reply.id,
                want = id,
                "discarding a stale control reply"
            );
        }
    }

    /// Read and check the peer's hello (listener side).
    fn recv_hello(&self) -> Result<Hello, TransportError> {
        let bytes = self.recv_frame(Some(HELLO_TIMEOUT))?;
        // Magic and version come first in every version's hello, so they can be read
        // even if the rest of a newer hello is laid out differently.
        let (magic, version): ([u8; 4], u32) = match frame::decode_prefix(&bytes) {
            Ok(v) => v,
            Err(FrameError::Malformed(m)) => {
                return Err(FrameError::Malformed(format!("not a hello: {m}")).into())
            }
            Err(e) => return Err(e.into()),
        };
        if magic != MAGIC {
            return Err(TransportError::Magic);
        }
        if version != PROTOCOL_VERSION {
            return Err(TransportError::Version {
                ours: PROTOCOL_VERSION,
                theirs: version,
            });
        }
        Ok(frame::decode::<Hello>(&bytes)?)
    }

    /// Send one datagram.
    fn send_frame(&self, bytes: &[u8]) -> Result<(), TransportError> {
        loop {
            // MSG_NOSIGNAL: a vanished peer is EPIPE, not a SIGPIPE that kills the daemon.
            match socket::send(self.fd.as_raw_fd(), bytes, MsgFlags::MSG_NOSIGNAL) {
                Ok(_) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(Errno::EPIPE | Errno::ECONNRESET | Errno::ENOTCONN) => {
                    return Err(TransportError::Closed)
                }
                Err(Errno::EAGAIN) => return Err(TransportError::Timeout),
                Err(e) => return Err(io_err(format!("sending a {}-byte frame", bytes.len()), e)),
            }
        }
    }

    /// Receive one datagram, refusing (after consuming it) one longer than [`MAX_FRAME`].
    fn recv_frame(&self, timeout: Option<Duration>) -> Result<Vec<u8>, TransportError> {
        if timeout.is_some()
            && !wait_readable(self.fd.as_fd(), timeout).map_err(|e| io_err("poll", e))?
        {
            return Err(TransportError::Timeout);
        }
        // One byte more than allowed, and MSG_TRUNC so the kernel reports the datagram's
        // real length: an oversized frame is seen as such, not as a truncated one.
        let mut buf = vec![0u8; MAX_FRAME + 1];
        let n = loop {
            match socket::recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::MSG_TRUNC) {
                Ok(n) => break n,
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Err(TransportError::Timeout),
                Err(Errno::ECONNRESET) => return Err(TransportError::Closed),
                Err(e) => return Err(io_err("receiving a frame", e)),
            }
        };
        if n > MAX_FRAME {
            let e = FrameError::Oversize {
                len: n,
                max: MAX_FRAME,
            };
            tracing::warn!(peer_uid = self.peer_uid, error = %e, "refused a control frame");
            return Err(e.into());
        }
        if n == 0 {
            // An empty datagram and end-of-connection both read as 0 bytes; only a closed
            // peer also shows as hang-up (the kernel marks a seqpacket socket fully shut
            // down when its peer closes).
            return if self.peer_hung_up() {
                Err(TransportError::Closed)
            } else {
                tracing::warn!(peer_uid = self.peer_uid, "refused an empty control frame");
                Err(FrameError::Empty.into())
            };
        }
        buf.truncate(n);
        Ok(buf)
    }

    fn peer_hung_up(&self) -> bool {
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(_) => fds[0]
                .revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR)),
            // Cannot tell; treat as closed so a caller does not spin on a dead socket.
            Err(_) => true,
        }
    }
}

impl AsFd for Conn {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Conn {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
