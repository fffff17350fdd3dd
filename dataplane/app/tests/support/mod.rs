//! What the real-process tests share: a `nats-server` on a free loopback port, `weir-app`
//! instances, and the checks for root and tools. Everything started here is stopped by
//! its PID when its guard drops, also when a test fails.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

// Each test file uses part of this module (hence also `dead_code` above).
#[allow(unused_imports)]
pub use weir_testkit::{have, sh};

/// Skip (print why, return true) or, under `WEIR_REQUIRE_ROOT_TESTS`, fail when a
/// prerequisite is missing.
pub fn skip_unless(ok: bool, what: &str) -> bool {
    !weir_testkit::ready("nats", false, &[], &[(ok, what)])
}

/// A TCP port free on loopback now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Send SIGTERM to `pid`.
pub fn terminate(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

/// Lines of a child's stdout, read on a thread.
fn lines_of(child: &mut Child) -> Receiver<String> {
    let (tx, rx) = channel();
    if let Some(out) = child.stdout.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    rx
}

/// `nats-server` on a free loopback port.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
}

impl NatsServer {
    pub fn start() -> NatsServer {
        let mut s = NatsServer::not_started();
        s.restart();
        s
    }

    /// A free port for a server started later with [`NatsServer::restart`].
    pub fn not_started() -> NatsServer {
        NatsServer {
            child: None,
            port: free_port(),
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Start (again) on the same port; waits until it accepts connections.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "nats-server runs already");
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "nats-server did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stop it (SIGTERM, by PID) and wait for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(c.id());
            let t0 = Instant::now();
            while c.try_wait().ok().flatten().is_none() {
                if t0.elapsed() > Duration::from_secs(5) {
                    let _ = c.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The `weir-app` binary of this package.
pub fn app_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_weir-app"))
}

/// A binary of another workspace package, next to this test's own (`target/<profile>/`):
/// `cargo test --workspace` builds every package's binaries before it runs any test.
pub fn workspace_bin(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?.parent()?;
    let p = dir.join(name);
    p.exists().then_some(p)
}

/// One `weir-app` process.
#[derive(Debug)]
pub struct App {
    child: Option<Child>,
    lines: Receiver<String>,
    pub name: String,
}

impl App {
    /// `weir-app --nats URL --name NAME ARGS…`; returns once it printed `ready`.
    pub fn start(url: &str, name: &str, args: &[&str]) -> App {
        App::try_start(url, name, args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// As [`App::start`], or why it did not get ready (with what it wrote to stderr).
    pub fn try_start(url: &str, name: &str, args: &[&str]) -> Result<App, String> {
        // stderr to a file, not a pipe nobody reads (a full pipe would block the app).
        let err_path =
            std::env::temp_dir().join(format!("weir-app-{}-{name}.err", std::process::id()));
        let err = std::fs::File::create(&err_path).expect("stderr file");
        let mut child = Command::new(app_bin())
            .args(["--nats", url, "--name", name])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .expect("weir-app starts");
        let lines = lines_of(&mut child);
        let mut app = App {
            child: Some(child),
            lines,
            name: name.to_string(),
        };
        let got = app.lines.recv_timeout(Duration::from_secs(15));
        if !matches!(&got, Ok(l) if l == "ready") {
            app.kill();
            let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
            let _ = std::fs::remove_file(&err_path);
            return Err(format!(
                "weir-app {name} did not get ready: {got:?}; stderr: {stderr}"
            ));
        }
        let _ = std::fs::remove_file(&err_path);
        Ok(app)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGTERM; the number of requests it answered (its last line, `served N`).
    pub fn stop(&mut self) -> u64 {
        let Some(mut c) = self.child.take() else {
            return 0;
        };
        terminate(c.id());
        let _ = c.wait();
        let mut served = 0;
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(2)) {
            if let Some(n) = l.strip_prefix("served ") {
                served = n.parse().unwrap_or(0);
            }
        }
        served
    }

    /// SIGKILL (a crash): nothing is flushed.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.kill();
    }
}

/// EUI-64 link-local of weir's default MAC 02:77:65:69:72:01.
pub const WEIR_LL: &str = "fe80::77:65ff:fe69:7201";
/// The service prefix of the tests (weir's built-in default).
pub const APL: &str = "2:2001:db8:5::/64";

/// A `weir-dp run` process on a TAP device, with the host side set up: `client` on the
/// TAP as the source of routed traffic to the service prefix (via weir's link-local
/// address), and `extra` addresses for other clients.
#[derive(Debug)]
pub struct Weir {
    child: Option<Child>,
    pub dir: PathBuf,
    pub iface: String,
}

impl Weir {
    /// `config` gets `[dataplane] control_socket` and `[port]` appended.
    pub fn start(tag: &str, config: &str, client: &str, extra: &[&str]) -> Weir {
        let pid = std::process::id();
        let dir = PathBuf::from(format!("/tmp/weir-{tag}-{pid}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        sh(&format!("chmod 700 {}", dir.display()));
        let iface = format!("w{tag}{}", pid % 10_000);
        let text = format!("{config}\n[port]\nkind = \"tap\"\nname = \"{iface}\"\n",).replace(
            "[dataplane]\n",
            &format!(
                "[dataplane]\ncontrol_socket = \"{}\"\n",
                dir.join("dp.sock").display()
            ),
        );
        std::fs::write(dir.join("dp.toml"), text).unwrap();
        let log = std::fs::File::create(dir.join("dp.log")).unwrap();
        let dp = workspace_bin("weir-dp").expect("weir-dp is built");
        let child = Command::new(dp)
            .args(["run", "--config"])
            .arg(dir.join("dp.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let w = Weir {
            child: Some(child),
            dir,
            iface,
        };
        let t0 = Instant::now();
        while !std::path::Path::new(&format!("/sys/class/net/{}", w.iface)).exists()
            || !w.dir.join("dp.sock").exists()
        {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "weir-dp did not come up: {}",
                w.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        sh(&format!("ip link set {} up", w.iface));
        for a in std::iter::once(&client).chain(extra) {
            sh(&format!("ip -6 addr add {a}/64 dev {} nodad", w.iface));
        }
        sh(&format!(
            "ip -6 route replace 2001:db8:5::/64 via {WEIR_LL} dev {} src {client}",
            w.iface
        ));
        w
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// weir-dp's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dp.log")).unwrap_or_default()
    }

    /// Still running (no panic, no exit).
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Resident memory, kB.
    pub fn rss_kb(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// The dataplane's stats over its control socket.
    pub fn stats(&self) -> weir_control::proto::DpStats {
        use weir_control::proto::{DpReply, DpRequest, Hello, Role};
        let (c, _) = weir_control::transport::Conn::connect(
            &self.dir.join("dp.sock"),
            &Hello::new(Role::ControlPlane, "nats-tap-test"),
            Duration::from_secs(2),
        )
        .unwrap();
        match c
            .request::<_, DpReply>(1, DpRequest::Stats, Duration::from_secs(5))
            .unwrap()
        {
            DpReply::Stats(s) => *s,
            other => panic!("stats: {other:?}"),
        }
    }
}

impl Drop for Weir {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(c.id());
            let t0 = Instant::now();
            while c.try_wait().ok().flatten().is_none() {
                if t0.elapsed() > Duration::from_secs(5) {
                    let _ = c.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // The TAP device goes with weir-dp's file descriptor.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A dataplane event counter.
pub fn event(s: &weir_control::proto::DpStats, k: &str) -> u64 {
    s.events.get(k).copied().unwrap_or(0)
}

/// The conforming destination for `src` under the default rule (`weirctl ssa pick`).
pub fn conforming(src: &str) -> String {
    let ctl = workspace_bin("weirctl").expect("weirctl is built");
    let o = Command::new(ctl)
        .args([
            "ssa", "pick", "--apl", APL, "--rule", "src-mix", "--src", src,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// curl's result: status, body, seconds in all, and seconds the server took to answer.
#[derive(Debug)]
pub struct Curl {
    pub status: u16,
    pub body: String,
    pub headers: String,
    pub secs: f64,
    /// From the request sent to the first byte of the answer (curl's `time_starttransfer`
    /// − `time_pretransfer`): the server's wait alone, without name lookup, neighbour
    /// discovery or the TCP handshake, which on a loaded machine can take longer than the
    /// answer itself.
    pub answer_secs: f64,
}

pub fn curl(url: &str, max_time: f64) -> Curl {
    let out = Command::new("curl")
        .args([
            "-6",
            "-sS",
            "-D",
            "-",
            "--max-time",
            &max_time.to_string(),
            "-w",
            "\n%{http_code} %{time_total} %{time_pretransfer} %{time_starttransfer}",
            url,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (rest, tail) = text.rsplit_once('\n').unwrap_or(("", &text));
    let mut t = tail.split_whitespace();
    let status = t.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut next_secs = || {
        t.next()
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    let secs = next_secs();
    let (pretransfer, starttransfer) = (next_secs(), next_secs());
    let (headers, body) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
    Curl {
        status,
        body: body.to_string(),
        headers: headers.to_string(),
        secs,
        answer_secs: starttransfer - pretransfer,
    }
}

/// What wrk reported.
#[derive(Debug, Default, Clone)]
pub struct Wrk {
    pub requests: u64,
    pub non_2xx: u64,
    pub socket_errors: u64,
    pub timeouts: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub rps: f64,
}

pub fn wrk_cmd(url: &str, secs: u32, conns: u32, threads: u32) -> Command {
    let mut c = Command::new("wrk");
    c.args([
        &format!("-t{threads}"),
        &format!("-c{conns}"),
        &format!("-d{secs}s"),
        "--timeout",
        "3s",
        "--latency",
        url,
    ]);
    c
}

pub fn parse_wrk(text: &str) -> Wrk {
    let mut w = Wrk::default();
    for line in text.lines() {
        let l = line.trim();
        if let Some(r) = l.strip_prefix("Non-2xx or 3xx responses:") {
            w.non_2xx = r.trim().parse().unwrap_or(u64::MAX);
        } else if let Some(r) = l.strip_prefix("Socket errors:") {
            for part in r.split(',') {
                let mut it = part.split_whitespace();
                let (Some(kind), Some(n)) = (it.next(), it.next()) else {
                    continue;
                };
                let n: u64 = n.parse().unwrap_or(0);
                w.socket_errors += n;
                if kind == "timeout" {
                    w.timeouts += n;
                }
            }
        } else if let Some(r) = l.strip_prefix("Requests/sec:") {
            w.rps = r.trim().parse().unwrap_or(0.0);
        } else if l.contains("requests in") {
            w.requests = l
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        } else if let Some(r) = l.strip_prefix("50%") {
            w.p50_ms = parse_ms(r.trim());
        } else if let Some(r) = l.strip_prefix("99%") {
            w.p99_ms = parse_ms(r.trim());
        }
    }
    w
}

pub fn wrk(url: &str, secs: u32, conns: u32) -> Wrk {
    let out = wrk_cmd(url, secs, conns, 1).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "wrk: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let w = parse_wrk(&text);
    println!("wrk -c{conns} -d{secs}s {url}: {w:?}");
    w
}

pub fn parse_ms(s: &str) -> f64 {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let n: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => f64::NAN,
    }
}

/// A TCP connection from `src` (an address on the TAP) to `[dst]:80`.
pub fn connect_from(src: &str, dst: &str) -> std::io::Result<std::net::TcpStream> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let s = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
    let src: std::net::Ipv6Addr = src.parse().map_err(std::io::Error::other)?;
    let dst: std::net::Ipv6Addr = dst.parse().map_err(std::io::Error::other)?;
    s.bind(&SockAddr::from(std::net::SocketAddrV6::new(src, 0, 0, 0)))?;
    s.connect_timeout(
        &SockAddr::from(std::net::SocketAddrV6::new(dst, 80, 0, 0)),
        Duration::from_secs(3),
    )?;
    Ok(s.into())
}
