//! A Linux TAP interface as a port: whole Ethernet frames in and out of the kernel's
//! network stack through one non-blocking file descriptor.
//!
//! What: [`Tap::open`] creates (or attaches to) a TAP interface through `/dev/net/tun`
//! with `IFF_TAP | IFF_NO_PI`, so every `read` is exactly one frame from the kernel and
//! every `write` is exactly one frame into it, with no 4-byte packet-information prefix.
//! The descriptor is non-blocking: [`Tap::recv`] and [`Tap::send`] never park the worker
//! that polls them; "nothing waiting" and "queue full" are values (`Ok(None)`,
//! `Ok(false)`), not errors, because the caller counts them. [`Tap::wait_readable`] is
//! poll(2) for the idle case.
//!
//! Why: a TAP device lets weir run against real peers (the kernel's own ARP / NDP, curl,
//! ping) on any Linux machine, without DPDK, NIC or hugepages — the port that tests, CI and
//! demos use. The interface is not persistent, so it vanishes when the [`Tap`] (and with
//! it the descriptor) is dropped: a crashed test leaves nothing behind.
//!
//! Rejected: a tun crate (`tun`, `tun-tap`): each wraps the same two ioctls with its own
//! async or builder layers weir does not need, and hides the errno that tells an operator
//! "needs root". Multi-queue (`IFF_MULTI_QUEUE`) is left for when a tap port needs more
//! than one worker; `recv` on one thread and `send` on another already works on one queue.
//!
//! `unsafe` here is the ioctl calls (no safe wrapper exists for `TUNSETIFF` / `SIOC*IFFLAGS`)
//! and the zeroed `ifreq` they take; each block says why it is sound.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

/// The clone device every TUN / TAP interface is created through.
const CLONE_DEVICE: &str = "/dev/net/tun";

/// Longest interface name the kernel takes (IFNAMSIZ less the terminating NUL).
pub const MAX_NAME_LEN: usize = libc::IFNAMSIZ - 1;

/// What went wrong setting up a TAP interface.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// the requested interface name cannot be an interface name
    #[error("TAP interface name {name:?} is invalid: {why}")]
    Name {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// `/dev/net/tun` could not be opened
    #[error("cannot open {CLONE_DEVICE}: {source}{hint}", hint = hint(source))]
    Open {
        /// The error from open(2).
        source: io::Error,
    },
    /// the kernel refused to create or attach to the interface
    #[error("cannot create TAP interface {name:?} (ioctl TUNSETIFF): {source}{hint}", hint = hint(source))]
    Attach {
        /// The name as given.
        name: String,
        /// The error from ioctl(2).
        source: io::Error,
    },
    /// the interface flags could not be read or set
    #[error("cannot bring TAP interface {name} up ({step}): {source}{hint}", hint = hint(source))]
    SetUp {
        /// The interface.
        name: String,
        /// Which call failed.
        step: &'static str,
        /// The error.
        source: io::Error,
    },
}

/// The operator's next step for a permission error.
fn hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => " (needs root (CAP_NET_ADMIN))",
        Some(libc::ENOENT) | Some(libc::ENODEV) => {
            " (is the tun module loaded? try `modprobe tun`; in a container, pass /dev/net/tun)"
        }
        Some(libc::EBUSY) => " (the interface exists and is in use, or is not a TAP)",
        _ => "",
    }
}

/// An open TAP interface; the interface disappears when this is dropped (unless it was
/// made persistent outside weir, e.g. with `ip tuntap add`).
#[derive(Debug)]
pub struct Tap {
    /// The `/dev/net/tun` descriptor, attached to the interface; `File` gives `read` /
    /// `write` on `&self` without `unsafe`, and closes the descriptor on drop.
    file: File,
    /// The name the kernel gave the interface.
    name: String,
}

// Workers receive on one thread and send on another: the descriptor is shared by reference.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Tap>();
};

/// An `ifreq` for `name`, its union all zero.
fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: `ifreq` is plain C data (a char array and a union of integers, sockaddrs,
    // arrays and a raw pointer), for which the all-zero bit pattern is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    // `name` is at most MAX_NAME_LEN bytes (checked by the callers), so the last byte of
    // `ifr_name` stays NUL.
    for (dst, &src) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = src as libc::c_char;
    }
    req
}

/// The NUL-terminated name in an `ifreq`.
fn ifreq_name(req: &libc::ifreq) -> String {
    let bytes: Vec<u8> = req
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

impl Tap {
    /// Create (or attach to) TAP interface `name` via /dev/net/tun with IFF_TAP | IFF_NO_PI,
    /// non-blocking. A `%d` in `name` lets the kernel pick a free number ([`Tap::name`]).
    pub fn open(name: &str) -> Result<Tap, TapError> {
        let bad = |why| TapError::Name {
            name: name.to_string(),
            why,
        };
        if name.is_empty() {
            return Err(bad("empty"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(bad("longer than 15 bytes"));
        }
        if name
            .bytes()
            .any(|b| b == 0 || b == b'/' || b.is_ascii_whitespace())
        {
            return Err(bad("contains NUL, '/' or whitespace"));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(CLONE_DEVICE)
            .map_err(|source| TapError::Open { source })?;
        let mut req = ifreq(name);
        // Both flags fit in 16 bits (0x0002 | 0x1000).
        req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: `file` is an open /dev/net/tun descriptor and `req` a valid, initialised
        // `ifreq` that outlives the call; TUNSETIFF reads it and writes the chosen name back
        // into `ifr_name` (NUL-terminated within IFNAMSIZ).
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF as _, &mut req) };
        if rc < 0 {
            return Err(TapError::Attach {
                name: name.to_string(),
                source: io::Error::last_os_error(),
            });
        }
        Ok(Tap {
            file,
            name: ifreq_name(&req),
        })
    }

    /// The kernel's name for the interface (differs from the requested one if it had `%d`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// One frame into `buf`; `Ok(None)` when nothing is waiting (EAGAIN). A frame longer
    /// than `buf` is cut to its length by the kernel, so give it MTU + 14 + VLAN tags.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            match (&self.file).read(buf) {
                Ok(n) => return Ok(Some(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// One frame out; `Ok(false)` when the kernel queue is full (EAGAIN) — the caller
    /// counts it. A frame is written whole or not at all.
    pub fn send(&self, frame: &[u8]) -> io::Result<bool> {
        loop {
            match (&self.file).write(frame) {
                Ok(_) => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Wait up to `timeout` for a frame (poll(2)); true when readable. A signal ends the
    /// wait early with `false`. Sub-millisecond timeouts round up to 1 ms.
    pub fn wait_readable(&self, timeout: Duration) -> io::Result<bool> {
        let ms = i32::try_from(timeout.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX);
        let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(self.file.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(0) => Ok(false),
            Ok(_) => Ok(fds[0]
                .revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLIN))),
            Err(nix::errno::Errno::EINTR) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Bring the interface up (SIOCSIFFLAGS IFF_UP) — convenience for tests/demos.
    pub fn set_up(&self) -> Result<(), TapError> {
        let fail = |step, source| TapError::SetUp {
            name: self.name.clone(),
            step,
            source,
        };
        // Interface flags are set through any socket; the tun descriptor does not take them.
        let sock: OwnedFd = socket(
            AddressFamily::Inet,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| fail("socket(AF_INET)", e.into()))?;
        let mut req = ifreq(&self.name);
        // SAFETY: `sock` is an open socket and `req` a valid `ifreq` naming the interface,
        // alive for the call; SIOCGIFFLAGS writes `ifru_flags`.
        let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) };
        if rc < 0 {
            return Err(fail("SIOCGIFFLAGS", io::Error::last_os_error()));
        }
        // SAFETY: SIOCGIFFLAGS succeeded, so `ifru_flags` is the initialised member (and
        // every bit pattern is a valid c_short anyway).
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
        // SAFETY: as above; SIOCSIFFLAGS only reads `req`.
        let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req) };
        if rc < 0 {
            return Err(fail("SIOCSIFFLAGS", io::Error::last_os_error()));
        }
        Ok(())
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// A TAP device as an rx core's port: frames from the kernel are read into one receive
/// buffer and lent to the rx core one at a time (a queued frame is copied into the pool,
/// a rejected one costs nothing more); answers and the terminators' frames are written
/// back. When a round moved nothing, the port sleeps in poll(2) until the kernel has a
/// frame or a worker has queued one (the eventfd [`Wake`](crate::terminators::Wake)).
#[derive(Debug)]
pub struct TapPort {
    tap: Tap,
    buf: Box<[u8]>,
    sent: crate::port::Sent,
}

/// Largest frame read from a TAP device.
const TAP_FRAME: usize = 65_536;

impl TapPort {
    /// The port over an open `tap`.
    pub fn new(tap: Tap) -> TapPort {
        TapPort {
            tap,
            buf: vec![0; TAP_FRAME].into_boxed_slice(),
            sent: crate::port::Sent::default(),
        }
    }

    /// The device.
    pub fn tap(&self) -> &Tap {
        &self.tap
    }
}

impl crate::port::Port for TapPort {
    type Backing = crate::pool::Pool;
    type Frame<'a> = crate::port::SoftFrame<'a>;

    fn rx_burst<F>(&mut self, mut f: F) -> Result<crate::port::RxStatus, crate::port::PortError>
    where
        F: for<'a> FnMut(crate::port::SoftFrame<'a>),
    {
        let mut n = 0;
        while n < crate::port::BURST {
            let len = match self.tap.recv(&mut self.buf) {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(tap = self.tap.name(), "tap read: {e}");
                    break;
                }
            };
            n += 1;
            let data = self.buf.get(..len).unwrap_or_default();
            f(crate::port::SoftFrame {
                data,
                wire_len: u32::try_from(len).unwrap_or(u32::MAX),
                capture_ns: None,
                link: crate::capture::Link::Ethernet,
            });
        }
        Ok(crate::port::RxStatus::Frames(n))
    }

    fn send(&mut self, frame: &[u8]) {
        match self.tap.send(frame) {
            Ok(true) => self.sent.sent += 1,
            _ => self.sent.failed += 1,
        }
    }

    fn sent(&self) -> crate::port::Sent {
        self.sent
    }

    fn idle(&mut self, wake: Option<&crate::terminators::Wake>) {
        // Sleep until the kernel has a frame or a worker has queued one (the eventfd is a
        // counter, so a wake-up written before this poll is not lost), at most 10 ms.
        let Some(w) = wake else {
            let _ = self.tap.wait_readable(Duration::from_millis(10));
            return;
        };
        let mut fds = [
            PollFd::new(self.tap.as_fd(), PollFlags::POLLIN),
            PollFd::new(w.fd(), PollFlags::POLLIN),
        ];
        if let Ok(n) = poll(&mut fds, PollTimeout::from(10u16)) {
            if n > 0
                && fds[1]
                    .revents()
                    .is_some_and(|r| r.contains(PollFlags::POLLIN))
            {
                w.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::HostResponder;
    use std::process::Command;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Instant;
    use weir_wire::{ethernet, ipv6, udp, Pseudo};

    /// True when the test may touch network interfaces; otherwise says why it is skipped,
    /// or fails when `WEIR_REQUIRE_ROOT_TESTS` is set (CI).
    fn have_root(test: &str) -> bool {
        if nix::unistd::Uid::effective().is_root() {
            return true;
        }
        assert!(
            std::env::var_os("WEIR_REQUIRE_ROOT_TESTS").is_none(),
            "{test} needs root (CAP_NET_ADMIN) and WEIR_REQUIRE_ROOT_TESTS is set"
        );
        eprintln!("note: {test} skipped: needs root (CAP_NET_ADMIN) for a TAP interface");
        false
    }

    /// A name no other test (in this or a concurrent process) uses: `wt<pid><n>`.
    fn unique_name() -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "wt{}x{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        assert!(name.len() <= MAX_NAME_LEN, "{name}");
        name
    }

    fn sysctl(path: &str, value: &str) {
        std::fs::write(path, value).unwrap_or_else(|e| panic!("write {value} to {path}: {e}"));
    }

    fn ip_cmd(args: &[&str]) {
        let out = Command::new("ip").args(args).output().expect("ip(8) runs");
        assert!(
            out.status.success(),
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn rx_packets(name: &str) -> u64 {
        let path = format!("/sys/class/net/{name}/statistics/rx_packets");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        text.trim().parse().expect("a counter")
    }

    /// The first frame `want` accepts within 5 s; panics with what was seen otherwise.
    fn recv_until(tap: &Tap, what: &str, mut want: impl FnMut(&[u8]) -> bool) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 2048];
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            if !tap.wait_readable(Duration::from_millis(100)).unwrap() {
                continue;
            }
            while let Some(n) = tap.recv(&mut buf).unwrap() {
                if want(&buf[..n]) {
                    return buf[..n].to_vec();
                }
                seen.push(weir_wire::parse_frame(&buf[..n]));
            }
        }
        panic!("no {what} on {} within 5 s; saw {seen:?}", tap.name());
    }

    #[test]
    fn bad_names_are_refused_before_any_syscall() {
        for name in ["", "a-name-that-is-too-long", "a/b", "a b", "a\0b"] {
            let e = Tap::open(name).unwrap_err();
            assert!(matches!(e, TapError::Name { .. }), "{name:?}: {e}");
        }
    }

    #[test]
    fn permission_error_says_what_to_do() {
        let e = TapError::Attach {
            name: "weir0".into(),
            source: io::Error::from_raw_os_error(libc::EPERM),
        };
        let text = e.to_string();
        assert!(
            text.contains("weir0") && text.contains("needs root (CAP_NET_ADMIN)"),
            "{text}"
        );
    }

    #[test]
    fn frames_flow_both_ways() {
        if !have_root("tap::frames_flow_both_ways") {
            return;
        }
        let tap = Tap::open(&unique_name()).expect("open a TAP");
        let name = tap.name().to_string();
        // Before up: no link-local address, no DAD, no router solicitations, no MLD.
        sysctl(&format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
        // Down, the kernel sends nothing: an empty queue is `None`, not an error.
        let mut buf = [0u8; 2048];
        assert_eq!(tap.recv(&mut buf).unwrap(), None, "nothing queued yet");
        assert!(!tap.wait_readable(Duration::from_millis(1)).unwrap());
        tap.set_up().expect("set up");

        // weir → kernel: an IPv6 / UDP frame counts as received on the interface.
        let (src, dst) = (0x2001_0db8_u128 << 96 | 1, 0x2001_0db8_u128 << 96 | 2);
        let payload = b"weir tap test";
        let udp = udp::Repr {
            src_port: 4000,
            dst_port: 9,
            payload,
        };
        let ip = ipv6::Repr::new(src, dst, weir_wire::protocol::UDP, udp.buffer_len() as u16);
        let eth = ethernet::Repr {
            src: [0x02, 0, 0, 0, 0, 1],
            dst: [0x02, 0, 0, 0, 0, 2],
            ethertype: ethernet::ethertype::IPV6,
        };
        let mut frame = vec![0u8; 14 + 40 + udp.buffer_len()];
        eth.emit(&mut frame);
        ip.emit(&mut frame[14..]);
        udp.emit(&mut frame[54..], Pseudo::V6 { src, dst });
        assert!(weir_wire::parse_frame(&frame).is_ok());
        let before = rx_packets(&name);
        assert!(tap.send(&frame).unwrap(), "queue not full");
        let deadline = Instant::now() + Duration::from_secs(2);
        while rx_packets(&name) == before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(rx_packets(&name), before + 1, "kernel saw the frame");

        // kernel → weir: traffic to an unresolved neighbour makes the kernel ARP for it.
        let net = 18 + u8::try_from(std::process::id() % 2).unwrap_or(0);
        let third = std::process::id() % 250;
        let ours = format!("198.{net}.{third}.1");
        let peer: std::net::Ipv4Addr = format!("198.{net}.{third}.9").parse().unwrap();
        ip_cmd(&["addr", "add", &format!("{ours}/24"), "dev", &name]);
        let sock = std::net::UdpSocket::bind((ours.as_str(), 0)).expect("bind");
        nix::sys::socket::setsockopt(
            &sock,
            nix::sys::socket::sockopt::BindToDevice,
            &std::ffi::OsString::from(&name),
        )
        .expect("SO_BINDTODEVICE");
        sock.send_to(b"hello", (peer, 9)).expect("send_to");
        let arp = recv_until(&tap, "ARP request", |f| {
            matches!(
                weir_wire::parse_frame(f).map(|f| f.net),
                Ok(weir_wire::Net::Arp { op: 1, target: Some(t) }) if t == weir_wire::ipv4_mapped(u32::from(peer))
            )
        });
        assert_eq!(&arp[..6], &[0xff; 6], "broadcast");

        // Answer it as weir would: the kernel then sends the datagram to weir's MAC.
        let prefixes =
            weir_ssa::ServicePrefixes::parse(&format!("1:198.{net}.{third}.8/29")).unwrap();
        let host = HostResponder::new([0x02, 0x77, 0x65, 0x69, 0x72, 0x01]);
        let mut reply = [0u8; 128];
        let n = host
            .answer(&arp, &prefixes, &mut reply)
            .expect("an ARP reply");
        assert!(tap.send(&reply[..n]).unwrap());
        // A retransmitted request (a busy machine) is answered again, as the rx core would.
        let data = recv_until(&tap, "the UDP datagram to weir's MAC", |f| {
            if matches!(
                weir_wire::parse_frame(f).map(|f| f.net),
                Ok(weir_wire::Net::Arp { op: 1, target: Some(t) }) if t == weir_wire::ipv4_mapped(u32::from(peer))
            ) {
                let mut again = [0u8; 128];
                if let Ok(n) = host.answer(f, &prefixes, &mut again) {
                    let _ = tap.send(&again[..n]);
                }
                return false;
            }
            f[..6] == host.mac()
                && matches!(weir_wire::parse_frame(f).map(|f| f.net),
                    Ok(weir_wire::Net::Ip(ip)) if ip.dst == weir_wire::ipv4_mapped(u32::from(peer)))
        });
        assert!(data.ends_with(b"hello"));
    }

    #[test]
    fn the_kernel_accepts_weirs_neighbor_advertisement() {
        if !have_root("tap::the_kernel_accepts_weirs_neighbor_advertisement") {
            return;
        }
        let tap = Tap::open(&unique_name()).expect("open a TAP");
        let name = tap.name().to_string();
        let conf = format!("/proc/sys/net/ipv6/conf/{name}");
        // IPv6 on, but no link-local address and no DAD: the only NS is the one we cause.
        sysctl(&format!("{conf}/disable_ipv6"), "0");
        sysctl(&format!("{conf}/addr_gen_mode"), "1");
        sysctl(&format!("{conf}/accept_dad"), "0");
        let tag = std::process::id() & 0xffff;
        let ours = format!("2001:db8:{tag:x}:7::1");
        let peer: std::net::Ipv6Addr = format!("2001:db8:{tag:x}:7::9").parse().unwrap();
        ip_cmd(&[
            "-6",
            "addr",
            "add",
            &format!("{ours}/64"),
            "dev",
            &name,
            "nodad",
        ]);
        tap.set_up().expect("set up");
        let sock = std::net::UdpSocket::bind((ours.as_str(), 0)).expect("bind");
        nix::sys::socket::setsockopt(
            &sock,
            nix::sys::socket::sockopt::BindToDevice,
            &std::ffi::OsString::from(&name),
        )
        .expect("SO_BINDTODEVICE");
        sock.send_to(b"hello", (peer, 9)).expect("send_to");
        let peer = u128::from(peer);
        let prefixes =
            weir_ssa::ServicePrefixes::parse(&format!("2:2001:db8:{tag:x}:7::8/125")).unwrap();
        let host = HostResponder::new([0x02, 0x77, 0x65, 0x69, 0x72, 0x02]);
        // Answer every solicitation for the peer, as the rx core does (the kernel
        // retransmits its NS after a second when a busy machine delays the answer), until
        // the datagram it was holding arrives at weir's MAC.
        let is_ns = |f: &[u8]| {
            let ns = matches!(
                weir_wire::parse_frame(f).map(|f| f.net),
                Ok(weir_wire::Net::Ip(weir_wire::Ip {
                    transport: weir_wire::Transport::Icmpv6(weir_wire::Icmpv6::Ndp { ty: 135 }),
                    ext_headers: 0,
                    ..
                }))
            );
            // Untagged Ethernet + IPv6: the ICMPv6 message starts at 54.
            ns && f
                .get(54..)
                .and_then(|m| weir_wire::icmpv6::Packet::new_checked(m).ok())
                .is_some_and(|m| m.target_addr() == peer)
        };
        let mut answered = 0;
        let data = recv_until(&tap, "the UDP datagram to weir's MAC", |f| {
            if is_ns(f) {
                let mut reply = [0u8; 128];
                let n = host
                    .answer(f, &prefixes, &mut reply)
                    .expect("a neighbor advertisement");
                assert!(tap.send(&reply[..n]).unwrap());
                answered += 1;
                return false;
            }
            f[..6] == host.mac()
                && matches!(weir_wire::parse_frame(f).map(|f| f.net),
                    Ok(weir_wire::Net::Ip(ip)) if ip.dst == peer)
        });
        assert!(answered >= 1, "the kernel asked for the peer");
        assert!(data.ends_with(b"hello"));
    }
}
