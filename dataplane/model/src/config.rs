//! The dataplane's configuration file (TOML) and its built-in default.
//!
//! Every section and key is checked: unknown keys are refused (`deny_unknown_fields`),
//! values are validated while they are read (so the TOML parser can point at them) and
//! rules that relate several keys are checked against their section, whose position is
//! kept with `toml::Spanned`. Errors are one line: `FILE:LINE:COL: what is wrong`.
//!
//! With no file, [`Config::default`] is exactly DESIGN.md's "Config sketch".

use std::fmt;
use std::ops::Range;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};
use toml::Spanned;
use weir_ssa::{Apl, Prefix, Rule};

use crate::verdict::Class;

/// Most blocklist entries a configuration (or a policy snapshot) may hold.
pub const MAX_BLOCKS: usize = 1 << 16;

/// A configuration error with its position in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the text came from (a path, or `<built-in>`).
    pub origin: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{}:{l}:{c}: {}", self.origin, self.message),
            _ => write!(f, "{}: {}", self.origin, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    fn at(origin: &str, text: &str, span: Option<Range<usize>>, message: String) -> Self {
        let (line, column) = match span {
            Some(r) => {
                let (l, c) = line_col(text, r.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        ConfigError {
            origin: origin.to_string(),
            line,
            column,
            message: message.trim().replace('\n', " "),
        }
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, col)
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[service]`
    #[serde(default)]
    service: Option<Spanned<ServiceConfig>>,
    /// `[ssa]`
    #[serde(default)]
    ssa: Option<Spanned<Rule>>,
    /// `[dataplane]`
    #[serde(default)]
    pub dataplane: DataplaneConfig,
    /// `[rings]`
    #[serde(default)]
    pub rings: RingsConfig,
    /// `[limits]`
    #[serde(default)]
    limits: Option<Spanned<LimitsConfig>>,
    /// `[[block]]` static blocklist entries.
    #[serde(default, rename = "block")]
    pub blocks: Vec<BlockConfig>,
    /// `[port]`: where `weir-dp run` takes packets from.
    #[serde(default)]
    pub port: Option<PortConfig>,
    /// `[terminator]`: what the workers do with the packets they drain (`weir-dp run`).
    #[serde(default)]
    pub terminator: TerminatorConfig,
    /// `[control]`: weir-cp's sockets, dataplanes, state file and metrics listener.
    #[serde(default)]
    pub control: Option<ControlConfig>,
    /// `[policy]`: weir-cp's security loop.
    #[serde(default)]
    pub policy: PolicyLoopConfig,
    /// `[cluster]`: weir-cp as one host of a cluster (etcd, BIRD). Absent: one host alone.
    #[serde(default)]
    cluster: Option<Spanned<ClusterConfig>>,
    /// `[tee]`: the live tee of `weir-dp run` (off by default).
    #[serde(default)]
    pub tee: crate::tee::TeeConfig,
}

/// `[port]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum PortConfig {
    /// Replay a capture as a live port: the capture's frames in order, on the dataplane's
    /// own clock, optionally looped and paced.
    Pcap {
        /// The capture file.
        path: std::path::PathBuf,
        /// Start again at the end.
        #[serde(default)]
        r#loop: bool,
        /// Frames per second (0 = as fast as possible).
        #[serde(default)]
        pps: u64,
    },
    /// DPDK ports (weir-dp built with `--features dpdk`): NICs bound to vfio-pci, or
    /// vdevs (`net_tap`, `net_pcap`, `net_null`).
    Dpdk(DpdkPortConfig),
    /// A Linux TAP device (root): the kernel on the other side is the network.
    Tap {
        /// Interface name (created if missing).
        #[serde(default = "default_tap_name")]
        name: String,
        /// weir's link address on it (default 02:77:65:69:72:01).
        #[serde(default)]
        mac: Option<String>,
    },
}

fn default_tap_name() -> String {
    "weir0".into()
}

/// Parse a MAC address `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    let bad = || format!("`{s}` is not a MAC address (aa:bb:cc:dd:ee:ff)");
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (m, p) in mac.iter_mut().zip(parts) {
        if p.len() != 2 {
            return Err(bad());
        }
        *m = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if mac[0] & 1 == 1 {
        return Err(format!("`{s}` is a multicast address"));
    }
    Ok(mac)
}

/// `[port] kind = "dpdk"`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpdkPortConfig {
    /// EAL arguments, passed to `rte_eal_init` as given (`-l 0-3`, `-a 0000:3b:00.0`,
    /// `--file-prefix weir`, `--no-huge -m 512` for tests, …). The first EAL lcore (the
    /// main lcore) runs the control thread; the next `rx_queues` are rx cores, the next
    /// `[dataplane] workers` are workers.
    #[serde(default)]
    pub eal: Vec<String>,
    /// Ports to receive on, as DPDK device arguments: a PCI address (`0000:3b:00.0`, also
    /// allowed with `-a` in `eal`) or a vdev (`net_tap0,iface=weir0`). A device the EAL
    /// does not know yet is hot-plugged.
    pub devices: Vec<String>,
    /// Rx queues per device, one rx core each; RSS spreads flows over them by address.
    #[serde(default = "DpdkPortConfig::default_rx_queues")]
    pub rx_queues: u16,
    /// Rx descriptors per queue.
    #[serde(default = "DpdkPortConfig::default_desc")]
    pub rx_desc: u16,
    /// Tx descriptors per queue.
    #[serde(default = "DpdkPortConfig::default_desc")]
    pub tx_desc: u16,
    /// Mbufs in the pool (all rx cores share it).
    #[serde(default = "DpdkPortConfig::default_mbufs")]
    pub mbufs: u32,
    /// Per-lcore mbuf cache.
    #[serde(default = "DpdkPortConfig::default_mbuf_cache")]
    pub mbuf_cache: u32,
}

impl DpdkPortConfig {
    fn default_rx_queues() -> u16 {
        1
    }
    fn default_desc() -> u16 {
        1024
    }
    fn default_mbufs() -> u32 {
        65_535
    }
    fn default_mbuf_cache() -> u32 {
        256
    }
}

impl PortConfig {
    fn validate(&self) -> Result<(), String> {
        if let PortConfig::Tap { name, mac } = self {
            if name.is_empty() || name.len() > 15 || name.contains(['/', ' ']) {
                return Err(format!(
                    "name `{name}` is not an interface name (1-15 characters)"
                ));
            }
            if let Some(m) = mac {
                parse_mac(m)?;
            }
            return Ok(());
        }
        let PortConfig::Dpdk(d) = self else {
            return Ok(());
        };
        if d.devices.is_empty() {
            return Err("devices must name at least one DPDK device".into());
        }
        if d.devices.len() > 255 {
            // (A frame's device is a byte in the rx path and in the tee's records.)
            return Err(format!(
                "devices must name at most 255 DPDK devices, got {}",
                d.devices.len()
            ));
        }
        if !(1..=64).contains(&d.rx_queues) {
            return Err(format!(
                "rx_queues must be from 1 to 64, got {}",
                d.rx_queues
            ));
        }
        for (name, n) in [("rx_desc", d.rx_desc), ("tx_desc", d.tx_desc)] {
            if !(64..=16384).contains(&n) {
                return Err(format!("{name} must be from 64 to 16384, got {n}"));
            }
        }
        if !(1024..=1 << 24).contains(&d.mbufs) {
            return Err(format!(
                "mbufs must be from 1024 to 16777216, got {}",
                d.mbufs
            ));
        }
        if d.mbuf_cache > 512 {
            return Err(format!(
                "mbuf_cache must be at most 512, got {}",
                d.mbuf_cache
            ));
        }
        Ok(())
    }

    /// Rx cores this port is read by.
    pub fn rx_cores(&self) -> usize {
        match self {
            PortConfig::Pcap { .. } | PortConfig::Tap { .. } => 1,
            PortConfig::Dpdk(d) => usize::from(d.rx_queues.max(1)),
        }
    }
}

/// `[control]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// weir-cp's socket for weirctl.
    #[serde(default = "default_cp_socket")]
    pub socket: std::path::PathBuf,
    /// The dataplanes weir-cp directs.
    #[serde(default)]
    pub dataplanes: Vec<DataplaneLink>,
    /// Where runtime changes are persisted (written atomically).
    #[serde(default)]
    pub state_file: Option<std::path::PathBuf>,
    /// Peers must run as this uid (default: the daemon's own uid).
    #[serde(default)]
    pub allowed_uid: Option<u32>,
    /// Prometheus text exposition address (default `127.0.0.1:9477`; empty = off).
    #[serde(default = "default_prometheus")]
    pub prometheus: String,
    /// How often weir-cp collects stats from each dataplane, in milliseconds.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
}

fn default_cp_socket() -> std::path::PathBuf {
    "/run/weir/cp.sock".into()
}
fn default_prometheus() -> String {
    "127.0.0.1:9477".into()
}
fn default_poll_ms() -> u64 {
    1000
}

/// One dataplane weir-cp directs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataplaneLink {
    /// A name for status, logs and metric labels.
    pub name: String,
    /// The dataplane's control socket.
    pub socket: std::path::PathBuf,
}

/// `[terminator]`: userspace TCP and HTTP/1.1 in the workers. Off, the workers drain
/// and count (the filter alone).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminatorConfig {
    /// Terminate TCP in the workers.
    #[serde(default)]
    pub enabled: bool,
    /// TCP ports served (on every address of the worker's slices).
    #[serde(default = "TerminatorConfig::default_ports")]
    pub ports: Vec<u16>,
    /// smoltcp interfaces per worker; connections are spread over them by a hash of
    /// their addresses and ports, so a packet visits only its shard's sockets.
    #[serde(default = "TerminatorConfig::default_shards")]
    pub shards: u32,
    /// Connections per worker (sockets are allocated up to this and then recycled).
    #[serde(default = "TerminatorConfig::default_max_connections")]
    pub max_connections: u32,
    /// Receive buffer per connection, bytes.
    #[serde(default = "TerminatorConfig::default_rx_buffer")]
    pub rx_buffer: u32,
    /// Send buffer per connection, bytes.
    #[serde(default = "TerminatorConfig::default_tx_buffer")]
    pub tx_buffer: u32,
    /// Half-open connections per worker; past half of it new suspect SYNs are dropped,
    /// past all of it assumed-good ones too.
    #[serde(default = "TerminatorConfig::default_half_open_budget")]
    pub half_open_budget: u32,
    /// New connections taken per poll per worker; further SYNs wait for the next poll.
    #[serde(default = "TerminatorConfig::default_syn_per_poll")]
    pub syn_per_poll: u32,
    /// A connection idle this long is closed.
    #[serde(default = "TerminatorConfig::default_idle_timeout_s")]
    pub idle_timeout_s: u64,
    /// A request (request line, headers and any body) not complete this long after it
    /// started (or, for a connection's first request, after the handshake) is answered
    /// `408` and the connection closed: slowloris, and a body trickled byte by byte.
    /// Counted as `slow-header` per worker and per source prefix.
    #[serde(default = "TerminatorConfig::default_header_timeout_ms")]
    pub header_timeout_ms: u64,
    /// A connection with a reply to send whose client acknowledged nothing for this long
    /// is reset: slow read. Counted as `slow-read` per worker and per source prefix.
    #[serde(default = "TerminatorConfig::default_send_stall_ms")]
    pub send_stall_ms: u64,
    /// Length of the source prefixes slow clients are counted by (IPv6; IPv4 clients are
    /// counted by their /24).
    #[serde(default = "TerminatorConfig::default_slow_prefix_len")]
    pub slow_prefix_len: u8,
    /// Pin each worker thread to a CPU (worker i on the i-th CPU this process may use,
    /// after the rx core's).
    #[serde(default = "default_true")]
    pub pin: bool,
    /// HTTP/1.1 limits.
    #[serde(default)]
    pub http: HttpConfig,
    /// What requests are handed to.
    #[serde(default)]
    pub adapter: AdapterConfig,
}

fn default_true() -> bool {
    true
}

impl TerminatorConfig {
    fn default_ports() -> Vec<u16> {
        vec![80]
    }
    fn default_shards() -> u32 {
        1024
    }
    fn default_max_connections() -> u32 {
        16_384
    }
    fn default_rx_buffer() -> u32 {
        4096
    }
    fn default_tx_buffer() -> u32 {
        8192
    }
    fn default_half_open_budget() -> u32 {
        2048
    }
    fn default_syn_per_poll() -> u32 {
        256
    }
    fn default_idle_timeout_s() -> u64 {
        60
    }
    fn default_header_timeout_ms() -> u64 {
        10_000
    }
    fn default_send_stall_ms() -> u64 {
        10_000
    }
    fn default_slow_prefix_len() -> u8 {
        64
    }

    fn validate(&self) -> Result<(), String> {
        if self.ports.is_empty() || self.ports.contains(&0) {
            return Err("ports must list TCP ports from 1 to 65535".into());
        }
        if !(1..=65_536).contains(&self.shards) {
            return Err(format!(
                "shards must be from 1 to 65536, got {}",
                self.shards
            ));
        }
        if !(1..=1 << 20).contains(&self.max_connections) {
            return Err(format!(
                "max_connections must be from 1 to 1048576, got {}",
                self.max_connections
            ));
        }
        for (name, n) in [("rx_buffer", self.rx_buffer), ("tx_buffer", self.tx_buffer)] {
            if !(536..=1 << 20).contains(&n) {
                return Err(format!("{name} must be from 536 to 1048576 bytes, got {n}"));
            }
        }
        if self.half_open_budget == 0 || self.syn_per_poll == 0 {
            return Err("half_open_budget and syn_per_poll must be at least 1".into());
        }
        for (name, ms) in [
            ("header_timeout_ms", self.header_timeout_ms),
            ("send_stall_ms", self.send_stall_ms),
        ] {
            if !(100..=3_600_000).contains(&ms) {
                return Err(format!("{name} must be from 100 to 3600000, got {ms}"));
            }
        }
        if !(1..=128).contains(&self.slow_prefix_len) {
            return Err(format!(
                "slow_prefix_len must be from 1 to 128, got {}",
                self.slow_prefix_len
            ));
        }
        self.http.validate()?;
        self.adapter.validate()
    }
}

impl Default for TerminatorConfig {
    fn default() -> Self {
        TerminatorConfig {
            enabled: false,
            ports: Self::default_ports(),
            shards: Self::default_shards(),
            max_connections: Self::default_max_connections(),
            rx_buffer: Self::default_rx_buffer(),
            tx_buffer: Self::default_tx_buffer(),
            half_open_budget: Self::default_half_open_budget(),
            syn_per_poll: Self::default_syn_per_poll(),
            idle_timeout_s: Self::default_idle_timeout_s(),
            header_timeout_ms: Self::default_header_timeout_ms(),
            send_stall_ms: Self::default_send_stall_ms(),
            slow_prefix_len: Self::default_slow_prefix_len(),
            pin: true,
            http: HttpConfig::default(),
            adapter: AdapterConfig::default(),
        }
    }
}

/// `[terminator.http]`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Request line + headers, bytes (larger → 431).
    #[serde(default = "HttpConfig::default_max_header_bytes")]
    pub max_header_bytes: u32,
    /// Header lines (more → 431).
    #[serde(default = "HttpConfig::default_max_headers")]
    pub max_headers: u32,
    /// Request body, bytes (larger → 413).
    #[serde(default = "HttpConfig::default_max_body_bytes")]
    pub max_body_bytes: u32,
}

impl HttpConfig {
    fn default_max_header_bytes() -> u32 {
        8192
    }
    fn default_max_headers() -> u32 {
        64
    }
    fn default_max_body_bytes() -> u32 {
        1 << 20
    }
    fn validate(&self) -> Result<(), String> {
        if !(256..=1 << 20).contains(&self.max_header_bytes) {
            return Err(format!(
                "http.max_header_bytes must be from 256 to 1048576, got {}",
                self.max_header_bytes
            ));
        }
        if !(1..=1024).contains(&self.max_headers) {
            return Err(format!(
                "http.max_headers must be from 1 to 1024, got {}",
                self.max_headers
            ));
        }
        if self.max_body_bytes > 1 << 26 {
            return Err(format!(
                "http.max_body_bytes must be at most 67108864, got {}",
                self.max_body_bytes
            ));
        }
        Ok(())
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_header_bytes: Self::default_max_header_bytes(),
            max_headers: Self::default_max_headers(),
            max_body_bytes: Self::default_max_body_bytes(),
        }
    }
}

/// `[terminator.adapter]`: what each request is handed to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum AdapterConfig {
    /// Files under `dir` (GET/HEAD), or one fixed `body` for every path.
    Static {
        /// Serve files from here (no `..`, no symlinks out of it).
        #[serde(default)]
        dir: Option<std::path::PathBuf>,
        /// Or answer every request with this body.
        #[serde(default)]
        body: Option<String>,
        /// Content type of `body` (files: from the extension).
        #[serde(default)]
        content_type: Option<String>,
    },
    /// The request back as the body.
    Echo,
    /// `200 ok` on every path (load balancers' checks).
    Health,
    /// Each request to application servers over NATS (request/reply on `subject`; the
    /// message format is [`crate::appmsg`]).
    Nats(NatsAdapterConfig),
}

/// `[terminator.adapter] kind = "nats"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsAdapterConfig {
    /// NATS server(s): `nats://host:port`, several separated by commas.
    #[serde(default = "NatsAdapterConfig::default_url")]
    pub url: String,
    /// Subject the requests are sent on; application servers subscribe to it in a queue
    /// group.
    #[serde(default = "NatsAdapterConfig::default_subject")]
    pub subject: String,
    /// No reply within this long → `504`.
    #[serde(default = "NatsAdapterConfig::default_timeout_ms")]
    pub timeout_ms: u64,
    /// Requests of one connection waiting for replies; at the limit the worker stops
    /// reading that connection (its bytes wait in the socket, whose window slows the
    /// client down).
    #[serde(default = "NatsAdapterConfig::default_max_in_flight_per_conn")]
    pub max_in_flight_per_conn: u32,
    /// Requests of one worker waiting for replies; at the limit no connection of that
    /// worker starts another request until a reply (or timeout) frees a place.
    #[serde(default = "NatsAdapterConfig::default_max_in_flight_per_worker")]
    pub max_in_flight_per_worker: u32,
}

impl NatsAdapterConfig {
    fn default_url() -> String {
        "nats://127.0.0.1:4222".into()
    }
    fn default_subject() -> String {
        "weir.http".into()
    }
    fn default_timeout_ms() -> u64 {
        5000
    }
    fn default_max_in_flight_per_conn() -> u32 {
        16
    }
    fn default_max_in_flight_per_worker() -> u32 {
        1024
    }

    /// Check the keys against each other and NATS's rules.
    pub fn validate(&self) -> Result<(), String> {
        if self.url.trim().is_empty() {
            return Err("adapter.url must name a NATS server (nats://host:port)".into());
        }
        for u in self.url.split(',') {
            let u = u.trim();
            let rest = u.strip_prefix("nats://").unwrap_or(u);
            if rest.is_empty() || rest.contains(char::is_whitespace) || rest.contains('/') {
                return Err(format!(
                    "adapter.url {u:?} is not a NATS server address (nats://host:port)"
                ));
            }
        }
        // A subject is dot-separated tokens of visible characters; wildcards are for
        // subscribers, not for a request's subject.
        let s = &self.subject;
        if s.is_empty()
            || s.split('.').any(|t| {
                t.is_empty() || t == "*" || t == ">" || t.bytes().any(|b| !b.is_ascii_graphic())
            })
        {
            return Err(format!(
                "adapter.subject {s:?} is not a NATS subject to publish on (dot-separated tokens, no spaces, no wildcards)"
            ));
        }
        if !(1..=600_000).contains(&self.timeout_ms) {
            return Err(format!(
                "adapter.timeout_ms must be from 1 to 600000, got {}",
                self.timeout_ms
            ));
        }
        if !(1..=65_536).contains(&self.max_in_flight_per_worker) {
            return Err(format!(
                "adapter.max_in_flight_per_worker must be from 1 to 65536, got {}",
                self.max_in_flight_per_worker
            ));
        }
        if self.max_in_flight_per_conn == 0
            || self.max_in_flight_per_conn > self.max_in_flight_per_worker
        {
            return Err(format!(
                "adapter.max_in_flight_per_conn must be from 1 to max_in_flight_per_worker ({}), got {}",
                self.max_in_flight_per_worker, self.max_in_flight_per_conn
            ));
        }
        Ok(())
    }
}

impl Default for NatsAdapterConfig {
    fn default() -> Self {
        NatsAdapterConfig {
            url: Self::default_url(),
            subject: Self::default_subject(),
            timeout_ms: Self::default_timeout_ms(),
            max_in_flight_per_conn: Self::default_max_in_flight_per_conn(),
            max_in_flight_per_worker: Self::default_max_in_flight_per_worker(),
        }
    }
}

impl AdapterConfig {
    fn validate(&self) -> Result<(), String> {
        match self {
            AdapterConfig::Nats(n) => n.validate(),
            _ => Ok(()),
        }
    }
}

impl Default for AdapterConfig {
    fn default() -> Self {
        AdapterConfig::Static {
            dir: None,
            body: Some("hello from weir\n".into()),
            content_type: None,
        }
    }
}

/// `[policy]`: when a source prefix over its new-flow limit gets a temporary block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyLoopConfig {
    /// Off by default: blocking on rate is a policy decision an operator opts into.
    #[serde(default)]
    pub enabled: bool,
    /// A prefix rate-limited in every stats poll for this many seconds is blocked.
    #[serde(default = "default_block_after")]
    pub block_after_s: u64,
    /// For this many seconds.
    #[serde(default = "default_block_ttl")]
    pub block_ttl_s: u64,
    /// Ignore prefixes with fewer `rate` verdicts than this per poll.
    #[serde(default = "default_min_limited")]
    pub min_limited_per_poll: u64,
    /// Slow clients: a source prefix whose connections were closed by the terminators'
    /// deadlines (`slow-header` + `slow-read`) at least this many times within the last
    /// `slow_window_s` is "slow-attacking"; one that stays so for `block_after_s` is
    /// blocked for `block_ttl_s`.
    #[serde(default = "default_slow_threshold")]
    pub slow_threshold: u64,
    /// The sliding window the slow-client events are summed over, seconds.
    #[serde(default = "default_slow_window")]
    pub slow_window_s: u64,
}

fn default_slow_threshold() -> u64 {
    20
}
fn default_slow_window() -> u64 {
    10
}

impl PolicyLoopConfig {
    fn validate(&self) -> Result<(), String> {
        if self.slow_threshold == 0 {
            return Err("slow_threshold must be at least 1".into());
        }
        if !(1..=3600).contains(&self.slow_window_s) {
            return Err(format!(
                "slow_window_s must be from 1 to 3600, got {}",
                self.slow_window_s
            ));
        }
        Ok(())
    }
}

fn default_block_after() -> u64 {
    10
}
fn default_block_ttl() -> u64 {
    300
}
fn default_min_limited() -> u64 {
    1
}

impl Default for PolicyLoopConfig {
    fn default() -> Self {
        PolicyLoopConfig {
            enabled: false,
            block_after_s: default_block_after(),
            block_ttl_s: default_block_ttl(),
            min_limited_per_poll: default_min_limited(),
            slow_threshold: default_slow_threshold(),
            slow_window_s: default_slow_window(),
        }
    }
}

/// `[cluster]`: this weir-cp is one host of a cluster whose state lives in etcd and whose
/// routes BIRD announces (README "Running a cluster"). Read at start only.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The service's name: its etcd keys live under `/weir/<service>/`.
    #[serde(deserialize_with = "de_cluster_name")]
    pub service: String,
    /// This host's name, unique in the cluster (`hosts/<host>` in etcd).
    #[serde(deserialize_with = "de_cluster_name")]
    pub host: String,
    /// etcd client URLs, `http://HOST:PORT` (e.g. `http://[2001:db8:ffff::1]:2379`).
    #[serde(deserialize_with = "de_etcd_endpoints")]
    pub etcd: Vec<String>,
    /// BIRD's control socket (`bird -s`), for `birdc -s SOCKET configure`.
    pub bird_socket: std::path::PathBuf,
    /// The file weir-cp writes this host's routes into; BIRD's config includes it.
    pub bird_include: std::path::PathBuf,
    /// The `birdc` program (default: `birdc` on `PATH`).
    #[serde(default = "ClusterConfig::default_birdc")]
    pub birdc: std::path::PathBuf,
    /// This host's handover address (IPv6 unicast, outside the service prefixes): where
    /// other hosts send the packets of flows this host still holds after a handover.
    #[serde(deserialize_with = "de_handover_addr")]
    pub handover_addr: std::net::Ipv6Addr,
    /// How long a handed-over slice run keeps forwarding unknown packets to its
    /// predecessor, in seconds (1..=3600).
    #[serde(
        default = "ClusterConfig::default_drain_s",
        deserialize_with = "de_drain_s"
    )]
    pub drain_s: u64,
    /// TTL of this host's etcd lease, in seconds (2..=300): how long a dead host keeps
    /// its slices before the coordinator gives them to the survivors.
    #[serde(
        default = "ClusterConfig::default_lease_ttl_s",
        deserialize_with = "de_lease_ttl_s"
    )]
    pub lease_ttl_s: u64,
}

/// Most etcd endpoints a `[cluster]` lists.
pub const MAX_ETCD_ENDPOINTS: usize = 16;

impl ClusterConfig {
    fn default_birdc() -> std::path::PathBuf {
        "birdc".into()
    }
    fn default_drain_s() -> u64 {
        10
    }
    fn default_lease_ttl_s() -> u64 {
        5
    }
}

fn de_cluster_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        return Err(serde::de::Error::custom(format!(
            "{s:?} is not a name: 1 to 63 characters of A-Z a-z 0-9 . _ -"
        )));
    }
    Ok(s)
}

fn de_etcd_endpoints<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    if v.is_empty() || v.len() > MAX_ETCD_ENDPOINTS {
        return Err(serde::de::Error::custom(format!(
            "etcd must list 1 to {MAX_ETCD_ENDPOINTS} endpoints, got {}",
            v.len()
        )));
    }
    for e in &v {
        let rest = e.strip_prefix("http://").ok_or_else(|| {
            serde::de::Error::custom(format!(
                "etcd endpoint {e:?} must be http://HOST:PORT (TLS is not supported)"
            ))
        })?;
        let port = rest.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>()));
        match port {
            Some((h, Ok(p))) if !h.is_empty() && p != 0 && !rest.contains('/') => {}
            _ => {
                return Err(serde::de::Error::custom(format!(
                    "etcd endpoint {e:?} must be http://HOST:PORT"
                )))
            }
        }
    }
    Ok(v)
}

fn de_handover_addr<'de, D: Deserializer<'de>>(d: D) -> Result<std::net::Ipv6Addr, D::Error> {
    let s = String::deserialize(d)?;
    let a: std::net::Ipv6Addr = s.parse().map_err(|_| {
        serde::de::Error::custom(format!("handover_addr {s:?} is not an IPv6 address"))
    })?;
    if !is_unicast_v6(u128::from(a)) {
        return Err(serde::de::Error::custom(format!(
            "handover_addr {a} must be a unicast address (not unspecified, loopback, multicast, link-local or IPv4-mapped)"
        )));
    }
    Ok(a)
}

/// Whether an IPv6 address can be a host's handover address on the wire.
pub fn is_unicast_v6(a: u128) -> bool {
    !(a == 0 || a == 1 || a >> 120 == 0xff || a >> 118 == 0xfe80 >> 6 || a >> 32 == 0xffff)
}

fn de_drain_s<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let n = u64::deserialize(d)?;
    if !(1..=3600).contains(&n) {
        return Err(serde::de::Error::custom(format!(
            "drain_s must be from 1 to 3600, got {n}"
        )));
    }
    Ok(n)
}

fn de_lease_ttl_s<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let n = u64::deserialize(d)?;
    if !(2..=300).contains(&n) {
        return Err(serde::de::Error::custom(format!(
            "lease_ttl_s must be from 2 to 300, got {n}"
        )));
    }
    Ok(n)
}

/// `[service]`: what the service publishes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// The APL record text (RFC 3123 presentation format).
    #[serde(deserialize_with = "de_apl")]
    pub apl: Apl,
    /// Slices per prefix = 2^slice_bits.
    #[serde(default = "default_slice_bits", deserialize_with = "de_slice_bits")]
    pub slice_bits: u8,
}

/// Checked as it is read, so an error points at the value, not at the section.
fn de_slice_bits<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    let n = u8::deserialize(d)?;
    if n > weir_ssa::MAX_SLICE_BITS {
        return Err(serde::de::Error::custom(format!(
            "slice_bits must be at most {}, got {n}",
            weir_ssa::MAX_SLICE_BITS
        )));
    }
    Ok(n)
}

fn default_slice_bits() -> u8 {
    14
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            apl: Apl::parse("2:2001:db8:5::/64").expect("built-in APL parses"),
            slice_bits: default_slice_bits(),
        }
    }
}

fn de_apl<'de, D: Deserializer<'de>>(d: D) -> Result<Apl, D::Error> {
    let text = String::deserialize(d)?;
    Apl::parse(&text).map_err(serde::de::Error::custom)
}

/// `[dataplane]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataplaneConfig {
    /// Worker (terminator) count.
    #[serde(default = "default_workers", deserialize_with = "de_workers")]
    pub workers: u16,
    /// `weir-dp run`'s control socket (weir-cp connects here); none = no control.
    #[serde(default)]
    pub control_socket: Option<std::path::PathBuf>,
    /// Peers must run as this uid (default: weir-dp's own uid).
    #[serde(default)]
    pub allowed_uid: Option<u32>,
}

fn default_workers() -> u16 {
    2
}

fn de_workers<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let n = u16::deserialize(d)?;
    if n == 0 || n > 256 {
        return Err(serde::de::Error::custom(format!(
            "workers must be between 1 and 256, got {n}"
        )));
    }
    Ok(n)
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        DataplaneConfig {
            workers: default_workers(),
            control_socket: None,
            allowed_uid: None,
        }
    }
}

/// One ring class's size and drain weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingConfig {
    /// Slots (a power of two, 2..=1048576).
    #[serde(deserialize_with = "de_ring_size")]
    pub size: u32,
    /// Packets drained per round.
    #[serde(deserialize_with = "de_weight")]
    pub weight: u32,
}

/// Largest ring (slots).
pub const MAX_RING_SIZE: u32 = 1 << 20;
/// Largest drain weight (packets per round).
pub const MAX_RING_WEIGHT: u32 = 1 << 16;

/// A ring size or weight out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// Not a power of two in range.
    #[error("ring size must be a power of two from 2 to {MAX_RING_SIZE}, got {0}")]
    Size(u32),
    /// Out of range.
    #[error("ring weight must be from 1 to {MAX_RING_WEIGHT}, got {0}")]
    Weight(u32),
}

/// The one check of a ring size, for the config file, weir-cp, weirctl and snapshots.
pub fn check_ring_size(n: u32) -> Result<u32, RingError> {
    if n.is_power_of_two() && (2..=MAX_RING_SIZE).contains(&n) {
        Ok(n)
    } else {
        Err(RingError::Size(n))
    }
}

/// The one check of a drain weight.
pub fn check_ring_weight(n: u32) -> Result<u32, RingError> {
    if (1..=MAX_RING_WEIGHT).contains(&n) {
        Ok(n)
    } else {
        Err(RingError::Weight(n))
    }
}

impl RingConfig {
    /// Both checks.
    pub fn check(&self) -> Result<(), RingError> {
        check_ring_size(self.size)?;
        check_ring_weight(self.weight)?;
        Ok(())
    }
}

fn de_ring_size<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    check_ring_size(u32::deserialize(d)?).map_err(serde::de::Error::custom)
}

fn de_weight<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    check_ring_weight(u32::deserialize(d)?).map_err(serde::de::Error::custom)
}

/// `[rings]`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingsConfig {
    /// Known-good rings.
    #[serde(default = "RingsConfig::default_known_good")]
    pub known_good: RingConfig,
    /// Assumed-good rings.
    #[serde(default = "RingsConfig::default_assumed_good")]
    pub assumed_good: RingConfig,
    /// Suspect rings.
    #[serde(default = "RingsConfig::default_suspect")]
    pub suspect: RingConfig,
}

impl RingsConfig {
    fn default_known_good() -> RingConfig {
        RingConfig {
            size: 4096,
            weight: 64,
        }
    }
    fn default_assumed_good() -> RingConfig {
        RingConfig {
            size: 2048,
            weight: 32,
        }
    }
    fn default_suspect() -> RingConfig {
        RingConfig {
            size: 512,
            weight: 8,
        }
    }

    /// The ring of a queued class (reject has none).
    pub fn of(&self, class: Class) -> Option<RingConfig> {
        match class {
            Class::KnownGood => Some(self.known_good),
            Class::AssumedGood => Some(self.assumed_good),
            Class::Suspect => Some(self.suspect),
            Class::Reject => None,
        }
    }

    /// The ring config of a queued class, to change it.
    pub fn of_mut(&mut self, class: Class) -> Option<&mut RingConfig> {
        match class {
            Class::KnownGood => Some(&mut self.known_good),
            Class::AssumedGood => Some(&mut self.assumed_good),
            Class::Suspect => Some(&mut self.suspect),
            Class::Reject => None,
        }
    }
}

impl Default for RingsConfig {
    fn default() -> Self {
        RingsConfig {
            known_good: Self::default_known_good(),
            assumed_good: Self::default_assumed_good(),
            suspect: Self::default_suspect(),
        }
    }
}

/// `[limits]`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Source prefix length of a rate bucket.
    #[serde(default = "default_source_prefix_len")]
    pub source_prefix_len: u8,
    /// New flows per second per source prefix.
    #[serde(default = "default_new_flows")]
    pub new_flows_per_sec: u32,
    /// Flow table slots.
    #[serde(default = "default_flow_capacity")]
    pub flow_table_capacity: u32,
    /// Rate-meter buckets (distinct source prefixes metered exactly).
    #[serde(default = "default_rate_capacity")]
    pub rate_table_capacity: u32,
}

fn default_source_prefix_len() -> u8 {
    64
}
fn default_new_flows() -> u32 {
    1000
}
fn default_flow_capacity() -> u32 {
    1 << 20
}
fn default_rate_capacity() -> u32 {
    1 << 16
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            source_prefix_len: default_source_prefix_len(),
            new_flows_per_sec: default_new_flows(),
            flow_table_capacity: default_flow_capacity(),
            rate_table_capacity: default_rate_capacity(),
        }
    }
}

impl LimitsConfig {
    fn validate(&self) -> Result<(), String> {
        if self.source_prefix_len > 128 {
            return Err(format!(
                "source_prefix_len must be at most 128, got {}",
                self.source_prefix_len
            ));
        }
        if !(16..=1 << 26).contains(&self.flow_table_capacity) {
            return Err(format!(
                "flow_table_capacity must be from 16 to 67108864, got {}",
                self.flow_table_capacity
            ));
        }
        if !(4..=1 << 24).contains(&self.rate_table_capacity) {
            return Err(format!(
                "rate_table_capacity must be from 4 to 16777216, got {}",
                self.rate_table_capacity
            ));
        }
        if self.new_flows_per_sec > 1_000_000_000 {
            return Err(format!(
                "new_flows_per_sec must be at most 1000000000, got {}",
                self.new_flows_per_sec
            ));
        }
        Ok(())
    }
}

/// `[[block]]`: a statically blocked source prefix.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockConfig {
    /// The prefix, e.g. `2001:db8:bad::/48`.
    #[serde(deserialize_with = "de_prefix")]
    pub prefix: Prefix,
    /// Unix time (seconds) after which the block lapses.
    #[serde(default)]
    pub until: Option<u64>,
}

fn de_prefix<'de, D: Deserializer<'de>>(d: D) -> Result<Prefix, D::Error> {
    let text = String::deserialize(d)?;
    text.parse::<Prefix>().map_err(serde::de::Error::custom)
}

impl Config {
    /// Parse and validate configuration text; `origin` names it in errors.
    pub fn from_toml(origin: &str, text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text)
            .map_err(|e| ConfigError::at(origin, text, e.span(), e.message().to_string()))?;
        let fail = |span: Range<usize>, section: &str, msg: String| {
            ConfigError::at(origin, text, Some(span), format!("[{section}] {msg}"))
        };
        if let Some(s) = &cfg.service {
            if !s.get_ref().apl.items.iter().any(|i| !i.negated) {
                return Err(fail(
                    s.span(),
                    "service",
                    "apl must contain at least one positive prefix".into(),
                ));
            }
        }
        if let Some(l) = &cfg.limits {
            l.get_ref()
                .validate()
                .map_err(|m| fail(l.span(), "limits", m))?;
        }
        if let Some(c) = &cfg.cluster {
            let service = cfg.service();
            let addr = u128::from(c.get_ref().handover_addr);
            for item in &service.apl.items {
                if item.prefix.is_ipv4() {
                    return Err(fail(
                        c.span(),
                        "cluster",
                        format!(
                            "a cluster announces IPv6 routes only; [service] apl has {}",
                            item.prefix
                        ),
                    ));
                }
                if !item.negated && item.prefix.contains(addr) {
                    return Err(fail(
                        c.span(),
                        "cluster",
                        format!(
                            "handover_addr {} lies inside the service prefix {}",
                            c.get_ref().handover_addr,
                            item.prefix
                        ),
                    ));
                }
            }
        }
        if let Some(Err(m)) = cfg.port.as_ref().map(PortConfig::validate) {
            return Err(ConfigError::at(origin, text, None, format!("[port] {m}")));
        }
        if let Err(m) = cfg.terminator.validate() {
            return Err(ConfigError::at(
                origin,
                text,
                None,
                format!("[terminator] {m}"),
            ));
        }
        if let Err(m) = cfg.policy.validate() {
            return Err(ConfigError::at(origin, text, None, format!("[policy] {m}")));
        }
        if let Err(m) = cfg.tee.validate() {
            return Err(ConfigError::at(origin, text, None, format!("[tee] {m}")));
        }
        if cfg.blocks.len() > MAX_BLOCKS {
            return Err(ConfigError::at(
                origin,
                text,
                None,
                format!(
                    "at most {} [[block]] entries, got {}",
                    MAX_BLOCKS,
                    cfg.blocks.len()
                ),
            ));
        }
        Ok(cfg)
    }

    /// Read and validate a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            origin: origin.clone(),
            line: None,
            column: None,
            message: format!("cannot read: {e}"),
        })?;
        Config::from_toml(&origin, &text)
    }

    /// `[service]`, or its default.
    pub fn service(&self) -> ServiceConfig {
        self.service
            .as_ref()
            .map(|s| s.get_ref().clone())
            .unwrap_or_default()
    }

    /// `[ssa]`: the SSA rule (read and validated by `weir_ssa::Rule`'s text form), or the
    /// default (`src-mix` over the source /64).
    pub fn ssa(&self) -> Rule {
        self.ssa.as_ref().map(|s| *s.get_ref()).unwrap_or_default()
    }

    /// `[cluster]`, if this weir-cp is one host of a cluster.
    pub fn cluster(&self) -> Option<&ClusterConfig> {
        self.cluster.as_ref().map(|c| c.get_ref())
    }

    /// `[limits]`, or its default.
    pub fn limits(&self) -> LimitsConfig {
        self.limits
            .as_ref()
            .map(|s| *s.get_ref())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_the_design_sketch() {
        let sketch = r#"
[service]
apl = "2:2001:db8:5::/64"     # RFC 3123 APL text; several items separated by spaces
slice_bits = 14

[ssa]
rule = "src-mix"               # src-mix | any | src-bits | keyed-hash | time-hop | content
src_prefix_len = 64

[dataplane]
workers = 2

[rings]
known_good   = { size = 4096, weight = 64 }
assumed_good = { size = 2048, weight = 32 }
suspect      = { size = 512,  weight = 8 }

[limits]
source_prefix_len = 64
new_flows_per_sec = 1000       # per source prefix, before suspect `rate`
flow_table_capacity = 1048576
"#;
        let c = Config::from_toml("sketch", sketch).unwrap();
        let d = Config::default();
        assert_eq!(c.service().apl.to_string(), d.service().apl.to_string());
        assert_eq!(c.service().slice_bits, d.service().slice_bits);
        assert_eq!(c.ssa(), d.ssa());
        assert_eq!(d.ssa(), Rule::SrcMix { src_prefix_len: 64 });
        assert_eq!(c.dataplane.workers, d.dataplane.workers);
        assert_eq!(c.rings, d.rings);
        assert_eq!(c.limits(), d.limits());
    }

    #[test]
    fn dpdk_ports_parse_and_bad_ones_are_named() {
        let c = Config::from_toml(
            "f.toml",
            "[port]\nkind = \"dpdk\"\neal = [\"-l\", \"0-3\"]\ndevices = [\"0000:3b:00.0\"]\nrx_queues = 2\n",
        )
        .unwrap();
        let Some(PortConfig::Dpdk(d)) = &c.port else {
            panic!("dpdk port expected: {:?}", c.port);
        };
        assert_eq!((d.rx_queues, d.rx_desc, d.mbufs), (2, 1024, 65_535));
        assert_eq!(c.port.as_ref().map(PortConfig::rx_cores), Some(2));
        for (body, needle) in [
            ("devices = []", "devices must name"),
            (
                &format!("devices = [{}]", vec!["\"x\""; 256].join(", ")),
                "at most 255 DPDK devices, got 256",
            ),
            (
                "devices = [\"x\"]\nrx_queues = 0",
                "rx_queues must be from 1 to 64, got 0",
            ),
            ("devices = [\"x\"]\nrx_desc = 8", "rx_desc must be from 64"),
            ("devices = [\"x\"]\nmbufs = 10", "mbufs must be from 1024"),
            ("devices = [\"x\"]\nlcores = 3", "unknown field `lcores`"),
        ] {
            let text = format!("[port]\nkind = \"dpdk\"\n{body}\n");
            let e = Config::from_toml("f.toml", &text).unwrap_err().to_string();
            assert!(e.contains(needle), "{body}: {e}");
        }
    }

    const CLUSTER: &str = "[cluster]\nservice = \"svc\"\nhost = \"h1\"\netcd = [\"http://[2001:db8:ffff::1]:2379\"]\nbird_socket = \"/run/bird.ctl\"\nbird_include = \"/run/weir-routes.conf\"\nhandover_addr = \"2001:db8:77::1\"\n";

    #[test]
    fn cluster_section_parses_with_defaults() {
        assert!(Config::default().cluster().is_none());
        let c = Config::from_toml("f.toml", CLUSTER).unwrap();
        let cl = c.cluster().unwrap();
        assert_eq!((cl.drain_s, cl.lease_ttl_s), (10, 5));
        assert_eq!(cl.birdc, std::path::PathBuf::from("birdc"));
        assert_eq!(
            cl.handover_addr,
            "2001:db8:77::1".parse::<std::net::Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn cluster_errors_name_the_key_and_position() {
        for (from, to, line, needle) in [
            ("host = \"h1\"", "host = \"h 1\"", 3, "is not a name"),
            ("service = \"svc\"", "service = \"\"", 2, "is not a name"),
            (
                "[\"http://[2001:db8:ffff::1]:2379\"]",
                "[]",
                4,
                "1 to 16 endpoints",
            ),
            (
                "http://[2001:db8:ffff::1]:2379",
                "https://x:1",
                4,
                "TLS is not supported",
            ),
            (
                "http://[2001:db8:ffff::1]:2379",
                "http://x",
                4,
                "http://HOST:PORT",
            ),
            ("\"2001:db8:77::1\"", "\"fe80::1\"", 7, "unicast"),
            (
                "\"2001:db8:77::1\"",
                "\"10.0.0.1\"",
                7,
                "not an IPv6 address",
            ),
            (
                "\"2001:db8:77::1\"",
                "\"2001:db8:5::9\"",
                1,
                "inside the service prefix",
            ),
        ] {
            let text = CLUSTER.replace(from, to);
            let e = Config::from_toml("f.toml", &text).unwrap_err();
            assert_eq!(e.line, Some(line), "{to}: {e}");
            assert!(e.message.contains(needle), "{to}: {e}");
        }
        for (extra, needle) in [
            ("drain_s = 0\n", "drain_s must be from 1 to 3600"),
            ("lease_ttl_s = 1\n", "lease_ttl_s must be from 2 to 300"),
            ("bogus = 1\n", "unknown field `bogus`"),
        ] {
            let e = Config::from_toml("f.toml", &format!("{CLUSTER}{extra}")).unwrap_err();
            assert_eq!(e.line, Some(8), "{extra}: {e}");
            assert!(e.message.contains(needle), "{extra}: {e}");
        }
        let e = Config::from_toml(
            "f.toml",
            &format!("[service]\napl = \"1:192.0.2.0/24\"\n{CLUSTER}"),
        )
        .unwrap_err();
        assert!(e.message.contains("IPv6 routes only"), "{e}");
        let e = Config::from_toml("f.toml", "[cluster]\nservice = \"s\"\n").unwrap_err();
        assert!(e.message.contains("missing field"), "{e}");
    }

    #[test]
    fn nats_adapter_and_slow_client_keys() {
        let c = Config::from_toml(
            "f.toml",
            "[terminator]\nheader_timeout_ms = 2000\nsend_stall_ms = 3000\n\n[terminator.adapter]\nkind = \"nats\"\nurl = \"nats://127.0.0.1:4333\"\nsubject = \"app.http\"\ntimeout_ms = 750\nmax_in_flight_per_conn = 4\nmax_in_flight_per_worker = 64\n\n[policy]\nslow_threshold = 5\nslow_window_s = 4\n",
        )
        .unwrap();
        assert_eq!(
            c.terminator.adapter,
            AdapterConfig::Nats(NatsAdapterConfig {
                url: "nats://127.0.0.1:4333".into(),
                subject: "app.http".into(),
                timeout_ms: 750,
                max_in_flight_per_conn: 4,
                max_in_flight_per_worker: 64,
            })
        );
        assert_eq!(
            (c.terminator.header_timeout_ms, c.terminator.send_stall_ms),
            (2000, 3000)
        );
        assert_eq!((c.policy.slow_threshold, c.policy.slow_window_s), (5, 4));
        let d = Config::from_toml("f.toml", "[terminator.adapter]\nkind = \"nats\"\n").unwrap();
        assert_eq!(
            d.terminator.adapter,
            AdapterConfig::Nats(NatsAdapterConfig::default())
        );
        for (body, needle) in [
            ("subject = \"a.*\"", "not a NATS subject"),
            ("subject = \"a b\"", "not a NATS subject"),
            ("subject = \"a..b\"", "not a NATS subject"),
            ("url = \"\"", "must name a NATS server"),
            ("url = \"nats://h:1/x\"", "not a NATS server address"),
            ("timeout_ms = 0", "timeout_ms must be from 1"),
            (
                "max_in_flight_per_conn = 9\nmax_in_flight_per_worker = 8",
                "max_in_flight_per_conn must be from 1 to max_in_flight_per_worker (8), got 9",
            ),
            (
                "max_in_flight_per_worker = 0",
                "max_in_flight_per_worker must be",
            ),
            ("bogus = 1", "unknown field `bogus`"),
        ] {
            let text = format!("[terminator.adapter]\nkind = \"nats\"\n{body}\n");
            let e = Config::from_toml("f.toml", &text).unwrap_err().to_string();
            assert!(e.contains(needle), "{body}: {e}");
        }
        for (text, needle) in [
            (
                "[terminator]\nheader_timeout_ms = 5\n",
                "header_timeout_ms must be",
            ),
            ("[terminator]\nsend_stall_ms = 0\n", "send_stall_ms must be"),
            (
                "[terminator]\nslow_prefix_len = 0\n",
                "slow_prefix_len must be",
            ),
            ("[policy]\nslow_threshold = 0\n", "slow_threshold must be"),
            ("[policy]\nslow_window_s = 0\n", "slow_window_s must be"),
        ] {
            let e = Config::from_toml("f.toml", text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn errors_have_line_and_column() {
        let e = Config::from_toml(
            "f.toml",
            "[service]\napl = \"2:2001:db8::/64\"\nbogus = 1\n",
        )
        .unwrap_err();
        assert_eq!((e.line, e.column), (Some(3), Some(1)), "{e}");
        assert!(e.to_string().starts_with("f.toml:3:1: "), "{e}");
        assert!(!e.to_string().contains('\n'));

        let e = Config::from_toml("f.toml", "[service]\napl = \"7:1.2.3.4/8\"\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");

        let e = Config::from_toml(
            "f.toml",
            "[rings]\nknown_good = { size = 1000, weight = 1 }\n",
        )
        .unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.message.contains("power of two"), "{e}");

        let e = Config::from_toml("f.toml", "\n[ssa]\nrule = \"src-bits\"\ndst_start = 100\n")
            .unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");

        let e = Config::from_toml("f.toml", "[ssa]\nrule = \"keyed-hash\"\nkey = \"12\"\n")
            .unwrap_err();
        assert!(e.message.contains("32 hex digits"), "{e}");

        // One validator for files and weir-cp: a skew beyond the bound is refused, not capped.
        let e = Config::from_toml(
            "f.toml",
            "\n\n[ssa]\nrule = \"time-hop\"\nkey = \"000102030405060708090a0b0c0d0e0f\"\nperiod_s = 30\nskew = 1000\n",
        )
        .unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(
            e.message.contains("skew 1000 is too large (at most 16)"),
            "{e}"
        );
        let e = Config::from_toml("f.toml", "[ssa]\nrule = \"src-mix\"\nsrc_prefix_len = 65\n")
            .unwrap_err();
        assert!(e.message.contains("1..=64"), "{e}");
        let e = Config::from_toml("f.toml", "[ssa]\nrule = \"src-mix\"\nlen = 64\n").unwrap_err();
        assert!(
            e.message.contains("`len` is not a key of rule `src-mix`"),
            "{e}"
        );
        let c = Config::from_toml("f.toml", "[ssa]\nrule = \"src-mix\"\nsrc_prefix_len = 48\n")
            .unwrap();
        assert_eq!(c.ssa(), Rule::SrcMix { src_prefix_len: 48 });

        let e = Config::from_toml(
            "f.toml",
            "[service]\napl = \"2:2001:db8::/64\"\nslice_bits = 20\n",
        )
        .unwrap_err();
        assert_eq!((e.line, e.column), (Some(3), Some(14)), "{e}");
        assert!(
            e.message.contains("slice_bits must be at most 16, got 20"),
            "{e}"
        );

        let e = Config::from_toml("f.toml", "[limits]\nflow_table_capacity = 3\n").unwrap_err();
        assert_eq!(e.line, Some(1), "{e}");

        assert!(Config::from_toml("f.toml", "[[block]]\nprefix = \"nonsense\"\n").is_err());
        assert!(Config::from_toml("f.toml", "= broken").is_err());
    }
}
