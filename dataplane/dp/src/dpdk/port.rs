//! Ethernet ports: hot-plugged vdevs or EAL-probed devices, their configuration (queues,
//! RSS, rx timestamps) and the burst calls.

use std::ffi::{c_char, CStr, CString};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crossbeam_utils::CachePadded;
use weir_ffi::rte_device;

use super::mbuf::{set_timestamp_unit, Burst, TxBurst};
use super::{eal, strerror, DpdkError, Mempool};

/// The hash types asked for when a port has more than one rx queue: IPv4 and IPv6 source
/// and destination addresses, for every packet of those families (`RTE_ETH_RSS_IP`).
///
/// The TCP/UDP types are left out on purpose: with them a NIC hashes unfragmented TCP and
/// UDP on addresses and ports but fragments on addresses only, so one client's packets
/// would split over two queues and reassembly state with them. The key is the symmetric
/// 0x6d5a pattern, so both directions of an address pair land on the same queue. Caveat:
/// drivers that hash per packet type (i40e, ice) leave TCP/UDP packets unhashed with L3
/// types only; those need an rte_flow RSS rule, which this does not install.
pub const RSS_ADDRESS: u64 = weir_ffi::RTE_ETH_RSS_IP;

/// Names of the RSS flags, for notes about what a device does not hash.
const RSS_NAMES: &[(u64, &str)] = &[
    (weir_ffi::RTE_ETH_RSS_IPV4, "IPV4"),
    (weir_ffi::RTE_ETH_RSS_FRAG_IPV4, "FRAG_IPV4"),
    (
        weir_ffi::RTE_ETH_RSS_NONFRAG_IPV4_OTHER,
        "NONFRAG_IPV4_OTHER",
    ),
    (weir_ffi::RTE_ETH_RSS_IPV6, "IPV6"),
    (weir_ffi::RTE_ETH_RSS_FRAG_IPV6, "FRAG_IPV6"),
    (
        weir_ffi::RTE_ETH_RSS_NONFRAG_IPV6_OTHER,
        "NONFRAG_IPV6_OTHER",
    ),
    (weir_ffi::RTE_ETH_RSS_IPV6_EX, "IPV6_EX"),
];

/// Serialises hot-plug, configuration and removal: DPDK's control paths are not meant to
/// run concurrently.
static CONTROL: Mutex<()> = Mutex::new(());

/// Which port ids a `Port` value owns, so two values never close the same port.
static OWNED: [AtomicBool; weir_ffi::RTE_MAX_ETHPORTS as usize] =
    [const { AtomicBool::new(false) }; weir_ffi::RTE_MAX_ETHPORTS as usize];

fn control() -> std::sync::MutexGuard<'static, ()> {
    CONTROL.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the device says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    /// Driver name, e.g. `net_pcap`.
    pub driver: String,
    /// Most rx queues.
    pub max_rx_queues: u16,
    /// Most tx queues.
    pub max_tx_queues: u16,
    /// RSS hash types it can apply (`flow_type_rss_offloads`).
    pub rss_offloads: u64,
    /// NUMA socket, −1 when unknown (vdevs).
    pub socket: i32,
}

/// How to set a port up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSetup {
    /// Rx queues.
    pub rx_queues: u16,
    /// Tx queues.
    pub tx_queues: u16,
    /// Rx descriptors per queue.
    pub rx_desc: u16,
    /// Tx descriptors per queue.
    pub tx_desc: u16,
    /// Spread packets over the rx queues by address ([`RSS_ADDRESS`]) when there are > 1.
    pub rss: bool,
    /// Ask for rx timestamps (`RTE_ETH_RX_OFFLOAD_TIMESTAMP`) where the device offers them.
    pub rx_timestamp: bool,
}

/// What a successful configuration applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortReady {
    /// The RSS hash types applied (0 without RSS).
    pub rss_hf: u64,
    /// A sentence naming the requested hash types the device does not apply.
    pub rss_note: Option<String>,
    /// Whether received packets carry timestamps: the offload was enabled, or the driver
    /// stamps every packet anyway (net_pcap, which does not advertise the offload).
    pub rx_timestamp: bool,
}

/// Port counters (`rte_eth_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Packets received.
    pub ipackets: u64,
    /// Packets sent.
    pub opackets: u64,
    /// Bytes received.
    pub ibytes: u64,
    /// Packets the device dropped because the rx queue was full.
    pub imissed: u64,
    /// Erroneous packets received.
    pub ierrors: u64,
    /// Failed transmissions.
    pub oerrors: u64,
    /// Receives that failed for want of an mbuf: a burst that returns 0 while this grows
    /// is a pool shortage, not an idle link or the end of a pcap file.
    pub rx_nombuf: u64,
}

/// The outcome of [`Port::tx_flush`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxResult {
    /// Packets the driver accepted.
    pub sent: u16,
    /// Packets freed after the retries ran out.
    pub dropped: u16,
}

/// One queue's poller flag: one thread in a burst call at a time.
type QueueFlag = CachePadded<AtomicBool>;

/// An Ethernet port owned by this process.
pub struct Port {
    id: u16,
    name: String,
    driver: String,
    /// The hot-plugged device, removed on Drop; `None` for devices probed by the EAL.
    attached: Option<NonNull<rte_device>>,
    started: bool,
    configured: bool,
    rx_flags: Box<[QueueFlag]>,
    tx_flags: Box<[QueueFlag]>,
    /// Keeps the rx queues' pool alive until the port is closed.
    pool: Option<Mempool>,
}

// SAFETY: the rte_device pointer is only used under CONTROL in Drop. Burst calls take the
// queue's flag, so one thread at a time polls a queue; everything else needs &mut self.
unsafe impl Send for Port {}
// SAFETY: as above: &self methods are the burst calls (serialised per queue by the flags)
// and read-only queries that DPDK allows from any thread.
unsafe impl Sync for Port {}

impl std::fmt::Debug for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Port")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("driver", &self.driver)
            .field("attached", &self.attached.is_some())
            .field("started", &self.started)
            .finish()
    }
}

fn c_name(what: &'static str, value: &str) -> Result<CString, DpdkError> {
    CString::new(value).map_err(|_| DpdkError::InvalidName {
        what,
        value: value.to_owned(),
        why: "contains a NUL byte",
    })
}

fn port_by_name(name: &str) -> Result<u16, DpdkError> {
    let cname = c_name("port name", name)?;
    let mut id = 0u16;
    // SAFETY: cname is NUL-terminated and id a live out-parameter; the EAL runs.
    let ret = unsafe { weir_ffi::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) };
    if ret < 0 {
        return Err(DpdkError::NoSuchPort {
            name: name.to_owned(),
            known: Port::available().into_iter().map(|(_, n)| n).collect(),
        });
    }
    Ok(id)
}

fn dev_info(id: u16) -> Result<weir_ffi::rte_eth_dev_info, i32> {
    let mut info = weir_ffi::rte_eth_dev_info::default();
    // SAFETY: info is a live, zeroed out-parameter of the right type.
    let ret = unsafe { weir_ffi::rte_eth_dev_info_get(id, &mut info) };
    if ret < 0 {
        Err(ret)
    } else {
        Ok(info)
    }
}

fn driver_name(info: &weir_ffi::rte_eth_dev_info) -> String {
    if info.driver_name.is_null() {
        return String::new();
    }
    // SAFETY: driver_name points to the driver's static NUL-terminated name.
    unsafe { CStr::from_ptr(info.driver_name) }
        .to_string_lossy()
        .into_owned()
}

/// Takes the flag for one burst call and gives it back on drop.
struct QueueTurn<'a>(&'a AtomicBool);

impl<'a> QueueTurn<'a> {
    #[inline]
    fn take(flag: &'a AtomicBool) -> QueueTurn<'a> {
        while flag.swap(true, Ordering::Acquire) {
            std::hint::spin_loop();
        }
        QueueTurn(flag)
    }
}

impl Drop for QueueTurn<'_> {
    #[inline]
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Port {
    /// Hot-plug a virtual device (`rte_dev_probe`), e.g. `"net_null_w1"`,
    /// `"net_pcap_w3,rx_pcap=/path/x.pcap"`, `"net_tap_w,iface=weirtap0"`; the port is the one
    /// named by the text before the first ','. Drop stops, closes and removes it.
    pub fn attach(devargs: &str) -> Result<Port, DpdkError> {
        eal::ensure()?;
        let name = devargs.split(',').next().unwrap_or(devargs).to_owned();
        let cargs = c_name("device arguments", devargs)?;
        let _control = control();
        if let Ok(id) = port_by_name(&name) {
            return Err(DpdkError::PortInUse { name, id });
        }
        // SAFETY: cargs is NUL-terminated; the EAL runs; CONTROL serialises hot-plug.
        let ret = unsafe { weir_ffi::rte_dev_probe(cargs.as_ptr()) };
        if ret < 0 {
            return Err(DpdkError::Probe {
                devargs: devargs.to_owned(),
                code: ret,
                text: strerror(ret),
            });
        }
        let id = port_by_name(&name)?;
        let info = dev_info(id).map_err(|code| DpdkError::Port {
            port: name.clone(),
            op: "rte_eth_dev_info_get",
            code,
            text: strerror(code),
        })?;
        let mut port = Port::owned(id, name, &info)?;
        port.attached = NonNull::new(info.device);
        Ok(port)
    }

    /// A port probed by the EAL (`-a PCI` or `--vdev` on its command line); Drop stops and
    /// closes it.
    pub fn by_name(name: &str) -> Result<Port, DpdkError> {
        eal::ensure()?;
        let _control = control();
        let id = port_by_name(name)?;
        let info = dev_info(id).map_err(|code| DpdkError::Port {
            port: name.to_owned(),
            op: "rte_eth_dev_info_get",
            code,
            text: strerror(code),
        })?;
        Port::owned(id, name.to_owned(), &info)
    }

    fn owned(id: u16, name: String, info: &weir_ffi::rte_eth_dev_info) -> Result<Port, DpdkError> {
        let slot = OWNED
            .get(usize::from(id))
            .ok_or_else(|| DpdkError::PortInUse {
                name: name.clone(),
                id,
            })?;
        if slot.swap(true, Ordering::AcqRel) {
            return Err(DpdkError::PortInUse { name, id });
        }
        let driver = driver_name(info);
        set_timestamp_unit(id, &driver);
        Ok(Port {
            id,
            name,
            driver,
            attached: None,
            started: false,
            configured: false,
            rx_flags: Box::new([]),
            tx_flags: Box::new([]),
            pool: None,
        })
    }

    /// The ports that exist, as (id, name).
    pub fn available() -> Vec<(u16, String)> {
        if !eal::running() {
            return Vec::new();
        }
        let mut ports = Vec::new();
        // SAFETY: any port id may be passed; the EAL runs.
        let mut id = unsafe { weir_ffi::rte_eth_find_next(0) };
        while u32::from(id) < weir_ffi::RTE_MAX_ETHPORTS {
            let mut buf = [0 as c_char; weir_ffi::RTE_ETH_NAME_MAX_LEN as usize];
            // SAFETY: buf is RTE_ETH_NAME_MAX_LEN bytes, as the call requires.
            let ret = unsafe { weir_ffi::rte_eth_dev_get_name_by_port(id, buf.as_mut_ptr()) };
            if ret == 0 {
                // SAFETY: on success buf holds a NUL-terminated name.
                let name = unsafe { CStr::from_ptr(buf.as_ptr()) };
                ports.push((id, name.to_string_lossy().into_owned()));
            }
            // SAFETY: as above.
            id = unsafe { weir_ffi::rte_eth_find_next(id + 1) };
        }
        ports
    }

    /// The port id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The port name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the device says about itself.
    pub fn info(&self) -> PortInfo {
        let info = dev_info(self.id).unwrap_or_default();
        // SAFETY: any port id may be passed.
        let socket = unsafe { weir_ffi::rte_eth_dev_socket_id(self.id) };
        PortInfo {
            driver: self.driver.clone(),
            max_rx_queues: info.max_rx_queues,
            max_tx_queues: info.max_tx_queues,
            rss_offloads: info.flow_type_rss_offloads,
            socket,
        }
    }

    fn fail(&self, op: &'static str, code: i32) -> DpdkError {
        DpdkError::Port {
            port: self.name.clone(),
            op,
            code,
            text: strerror(code),
        }
    }

    /// Configure queues, RSS and rx timestamps, and set every queue up with `pool`; the port
    /// is stopped first if it runs. Call [`Port::start`] next.
    pub fn configure(&mut self, setup: &PortSetup, pool: &Mempool) -> Result<PortReady, DpdkError> {
        let _control = control();
        if self.started {
            self.stop_locked()?;
        }
        let info = dev_info(self.id).map_err(|code| self.fail("rte_eth_dev_info_get", code))?;
        let too_many = |kind, requested, max| DpdkError::TooManyQueues {
            port: self.name.clone(),
            driver: self.driver.clone(),
            kind,
            requested,
            max,
        };
        if setup.rx_queues > info.max_rx_queues {
            return Err(too_many("rx", setup.rx_queues, info.max_rx_queues));
        }
        if setup.tx_queues > info.max_tx_queues {
            return Err(too_many("tx", setup.tx_queues, info.max_tx_queues));
        }

        let mut conf = weir_ffi::rte_eth_conf::default();
        let mut ready = PortReady {
            rss_hf: 0,
            rss_note: None,
            rx_timestamp: false,
        };
        // Symmetric Toeplitz key: 0x6d5a repeated makes hash(a, b) == hash(b, a).
        let mut key = [0u8; 256];
        if setup.rss && setup.rx_queues > 1 {
            let offered = info.flow_type_rss_offloads;
            let hf = RSS_ADDRESS & offered;
            // A vdev without any hashing (net_pcap, net_null, net_ring) has queues that
            // are separate sources (one file, one ring each): nothing to spread, so it runs
            // without RSS. A NIC (PCI address: `dddd:bb:dd.f`) would put everything on
            // queue 0, which is refused.
            let is_pci = self.name.matches(':').count() == 2;
            if hf == 0 && !is_pci {
                ready.rss_note = Some(format!(
                    "port {} (driver {}) hashes nothing (offers {offered:#x}): its {} rx queues run without RSS, each as the source it is",
                    self.name, self.driver, setup.rx_queues
                ));
            } else if hf == 0 {
                return Err(DpdkError::NoRss {
                    port: self.name.clone(),
                    driver: self.driver.clone(),
                    queues: setup.rx_queues,
                    requested: RSS_ADDRESS,
                    offered,
                });
            }
            if hf != 0 && hf != RSS_ADDRESS {
                let dropped: Vec<&str> = RSS_NAMES
                    .iter()
                    .filter(|(bit, _)| RSS_ADDRESS & !offered & bit != 0)
                    .map(|(_, n)| *n)
                    .collect();
                ready.rss_note = Some(format!(
                    "port {} (driver {}) does not hash {}; those packets all go to rx queue 0",
                    self.name,
                    self.driver,
                    dropped.join(", ")
                ));
            }
            if hf != 0 {
                conf.rxmode.mq_mode = weir_ffi::rte_eth_rx_mq_mode::RTE_ETH_MQ_RX_RSS;
                conf.rx_adv_conf.rss_conf.rss_hf = hf;
            }
            let key_len = usize::from(info.hash_key_size).min(key.len());
            if key_len > 0 {
                for (i, b) in key[..key_len].iter_mut().enumerate() {
                    *b = if i % 2 == 0 { 0x6d } else { 0x5a };
                }
                conf.rx_adv_conf.rss_conf.rss_key = key.as_mut_ptr();
                conf.rx_adv_conf.rss_conf.rss_key_len = info.hash_key_size;
            }
            ready.rss_hf = hf;
        }
        if setup.rx_timestamp {
            if info.rx_offload_capa & weir_ffi::RTE_ETH_RX_OFFLOAD_TIMESTAMP != 0 {
                conf.rxmode.offloads |= weir_ffi::RTE_ETH_RX_OFFLOAD_TIMESTAMP;
                ready.rx_timestamp = true;
            } else {
                ready.rx_timestamp = self.driver == "net_pcap";
            }
        }

        // SAFETY: conf is a valid configuration whose key pointer (if set) outlives the call
        // (the driver copies it); CONTROL serialises configuration.
        let ret = unsafe {
            weir_ffi::rte_eth_dev_configure(self.id, setup.rx_queues, setup.tx_queues, &conf)
        };
        if ret < 0 {
            return Err(self.fail("rte_eth_dev_configure", ret));
        }
        // SAFETY: any port id may be passed.
        let socket = unsafe { weir_ffi::rte_eth_dev_socket_id(self.id) };
        // SOCKET_ID_ANY (−1) becomes u32::MAX, which is how DPDK spells "any" here.
        let socket = socket as u32;
        for q in 0..setup.rx_queues {
            // SAFETY: the port is configured with rx_queues queues; a null rxconf means the
            // driver's defaults; the pool is live and kept alive by self.pool below.
            let ret = unsafe {
                weir_ffi::rte_eth_rx_queue_setup(
                    self.id,
                    q,
                    setup.rx_desc,
                    socket,
                    std::ptr::null(),
                    pool.as_ptr(),
                )
            };
            if ret < 0 {
                return Err(self.fail("rte_eth_rx_queue_setup", ret));
            }
        }
        for q in 0..setup.tx_queues {
            // SAFETY: the port is configured with tx_queues queues; null txconf = defaults.
            let ret = unsafe {
                weir_ffi::rte_eth_tx_queue_setup(
                    self.id,
                    q,
                    setup.tx_desc,
                    socket,
                    std::ptr::null(),
                )
            };
            if ret < 0 {
                return Err(self.fail("rte_eth_tx_queue_setup", ret));
            }
        }
        let flags = |n| (0..n).map(|_| QueueFlag::default()).collect();
        self.rx_flags = flags(setup.rx_queues);
        self.tx_flags = flags(setup.tx_queues);
        self.pool = Some(pool.clone());
        self.configured = true;
        Ok(ready)
    }

    /// Start receiving and sending.
    pub fn start(&mut self) -> Result<(), DpdkError> {
        if !self.configured {
            return Err(DpdkError::NotConfigured {
                port: self.name.clone(),
            });
        }
        // SAFETY: the port is configured and its queues set up.
        let ret = unsafe { weir_ffi::rte_eth_dev_start(self.id) };
        if ret < 0 {
            return Err(self.fail("rte_eth_dev_start", ret));
        }
        self.started = true;
        Ok(())
    }

    /// Stop receiving and sending.
    pub fn stop(&mut self) -> Result<(), DpdkError> {
        let _control = control();
        self.stop_locked()
    }

    fn stop_locked(&mut self) -> Result<(), DpdkError> {
        if !self.started {
            return Ok(());
        }
        // SAFETY: &mut self: no burst call is running on this port.
        let ret = unsafe { weir_ffi::rte_eth_dev_stop(self.id) };
        self.started = false;
        if ret < 0 {
            return Err(self.fail("rte_eth_dev_stop", ret));
        }
        Ok(())
    }

    /// Receive into the free room of `out` (all of it when `out` is empty); returns how many
    /// mbufs arrived. 0 when nothing is waiting, the queue does not exist or the port is
    /// stopped. At the end of a pcap file net_pcap returns 0 on every call; a 0 while
    /// [`PortStats::rx_nombuf`] grows means the pool ran dry instead.
    #[inline]
    pub fn rx_burst(&self, queue: u16, out: &mut Burst) -> usize {
        let Some(flag) = self.rx_flags.get(usize::from(queue)) else {
            return 0;
        };
        if !self.started {
            return 0;
        }
        let _turn = QueueTurn::take(flag);
        let (tail, room) = out.free_tail();
        if room == 0 {
            return 0;
        }
        // SAFETY: the port is started and the queue exists; this thread holds the queue's
        // flag; tail has room for `room` pointers.
        let n = usize::from(unsafe { weir_ffi::weir_rx_burst(self.id, queue, tail, room) });
        // SAFETY: the driver wrote n owned mbufs into the tail.
        unsafe { out.filled(n) };
        n
    }

    /// Send `b`, retrying the unsent rest up to `retries` times, then free (and count as
    /// dropped) what is left; `b` is empty afterwards. A missing queue or stopped port drops
    /// everything.
    #[inline]
    pub fn tx_flush(&self, queue: u16, b: &mut TxBurst, retries: u32) -> TxResult {
        let total = b.len();
        let flag = match self.tx_flags.get(usize::from(queue)) {
            Some(flag) if self.started => flag,
            _ => {
                // SAFETY: nothing was sent, so every slot is still owned by b.
                let dropped = unsafe { b.finish(0) };
                return TxResult {
                    sent: 0,
                    dropped: dropped as u16,
                };
            }
        };
        let _turn = QueueTurn::take(flag);
        let mut sent = 0usize;
        let mut tries = 0u32;
        while sent < total {
            let (p, n) = b.pending(sent);
            // SAFETY: the port is started, the queue exists and this thread holds its flag;
            // p..p+n are owned mbufs; the driver takes ownership of the first k it returns.
            let k = unsafe { weir_ffi::weir_tx_burst(self.id, queue, p, n) };
            sent += usize::from(k);
            if tries == retries {
                break;
            }
            tries += 1;
        }
        // SAFETY: the driver accepted exactly the first `sent` mbufs.
        let dropped = unsafe { b.finish(sent) };
        TxResult {
            sent: sent as u16,
            dropped: dropped as u16,
        }
    }

    /// The port's link address.
    pub fn mac(&self) -> Option<[u8; 6]> {
        let mut a = weir_ffi::rte_ether_addr::default();
        // SAFETY: `a` is a live out-parameter of the right type; the port id is valid for
        // as long as this Port exists.
        let ret = unsafe { weir_ffi::rte_eth_macaddr_get(self.id, &mut a) };
        (ret == 0).then_some(a.addr_bytes)
    }

    /// The port's counters (zero if DPDK cannot read them).
    pub fn stats(&self) -> PortStats {
        let mut s = weir_ffi::rte_eth_stats::default();
        // SAFETY: s is a live out-parameter of the right type.
        let ret = unsafe { weir_ffi::rte_eth_stats_get(self.id, &mut s) };
        if ret < 0 {
            return PortStats::default();
        }
        PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        }
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        let _control = control();
        if let Err(e) = self.stop_locked() {
            tracing::warn!("{e}");
        }
        // SAFETY: the port is stopped and self is its only owner; it is not used again.
        let ret = unsafe { weir_ffi::rte_eth_dev_close(self.id) };
        if ret < 0 {
            tracing::warn!("{}", self.fail("rte_eth_dev_close", ret));
        }
        if let Some(device) = self.attached {
            // SAFETY: device came from this port's dev_info at attach; a vdev stays on its
            // bus (closing releases only the ethdev) until this removal, done once.
            let ret = unsafe { weir_ffi::rte_dev_remove(device.as_ptr()) };
            if ret < 0 {
                tracing::warn!("{}", self.fail("rte_dev_remove", ret));
            }
        }
        if let Some(slot) = OWNED.get(usize::from(self.id)) {
            slot.store(false, Ordering::Release);
        }
        // self.pool drops after this body: the queues that used it are gone.
    }
}
