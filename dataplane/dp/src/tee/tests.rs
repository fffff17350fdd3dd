use super::*;
use std::os::unix::fs::PermissionsExt;
use weir_model::{Reason, Verdict};

use crate::classify::Policy;

fn policy() -> Policy {
    let cfg = Config::from_toml("t", "[dataplane]\nworkers = 2\n").unwrap();
    Policy::from_config(&cfg).unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weir-tee-unit-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn reject(r: Reason) -> Disposition {
    Disposition::Classified {
        verdict: Verdict::Flagged(r),
        worker: 0,
    }
}

/// A tee for one core with `ring` buffers, and the writer's ends.
fn live(
    filter: &str,
    sample: u32,
    cap: u32,
    ring_size: usize,
) -> (
    LiveTee,
    Consumer<PktBuf>,
    Producer<PktBuf>,
    Arc<Pool>,
    Arc<CoreCounters>,
) {
    let (pool, bufs) = Pool::new(ring_size as u32);
    let (mut free_tx, free_rx) = ring::<PktBuf>(ring_size);
    let (full_tx, full_rx) = ring::<PktBuf>(ring_size);
    for b in bufs {
        free_tx.push(b).unwrap();
    }
    let counters = Arc::new(CoreCounters::default());
    let t = LiveTee {
        filter: filter.parse().unwrap(),
        sample,
        countdown: 1,
        rate_per_core: cap,
        window_start_ns: 0,
        in_window: 0,
        snaplen: 64,
        rx: 3,
        pool: Arc::clone(&pool),
        free: free_rx,
        full: full_tx,
        counters: Arc::clone(&counters),
    };
    (t, full_rx, free_tx, pool, counters)
}

fn frame<'a>(d: Disposition, bytes: &'a [u8], policy: &'a Policy, t: u64) -> TeeFrame<'a> {
    TeeFrame {
        disposition: d,
        bytes,
        link: crate::capture::Link::Ethernet,
        network: None,
        time_ns: t,
        wire_len: bytes.len() as u32,
        device: 0,
        policy,
    }
}

#[test]
fn filter_sampling_and_rate_cap_count_what_they_skip() {
    let p = policy();
    let bytes = [0u8; 100];
    let (mut t, mut full, mut free, _pool, c) = live("reject:ssa-violation", 10, 0, 256);
    for i in 0..1000 {
        t.frame(&frame(reject(Reason::SsaViolation), &bytes, &p, i));
        t.frame(&frame(reject(Reason::Martian), &bytes, &p, i));
        // The writer keeps up.
        while let Some(b) = full.pop() {
            free.push(b).unwrap();
        }
    }
    assert_eq!(c.teed.load(Ordering::Relaxed), 100, "1 in 10 of 1000");
    assert_eq!(c.sampled_out.load(Ordering::Relaxed), 900);
    assert_eq!(c.dropped.load(Ordering::Relaxed), 0);

    // A cap of 5 per second: 20 frames within one second → 5 copies, 15 capped; the next
    // second opens a new window.
    let (mut t, mut full, mut free, _pool, c) = live("reject:*", 1, 5, 256);
    for i in 0..20 {
        t.frame(&frame(reject(Reason::Martian), &bytes, &p, 1_000 + i));
    }
    t.frame(&frame(reject(Reason::Martian), &bytes, &p, 2_000_000_000));
    while let Some(b) = full.pop() {
        free.push(b).unwrap();
    }
    assert_eq!(c.teed.load(Ordering::Relaxed), 6);
    assert_eq!(c.rate_capped.load(Ordering::Relaxed), 15);
}

#[test]
fn a_full_ring_counts_drops_and_never_waits() {
    let p = policy();
    let bytes = [7u8; 300];
    let (mut t, mut full, _free, pool, c) = live("*", 1, 0, 4);
    for i in 0..10 {
        t.frame(&frame(reject(Reason::Blocked), &bytes, &p, i));
    }
    assert_eq!(c.teed.load(Ordering::Relaxed), 4);
    assert_eq!(c.dropped.load(Ordering::Relaxed), 6);
    // Each copy: the header, then at most snaplen bytes.
    let b = full.pop().unwrap();
    let rec = pool.bytes(&b);
    assert_eq!(rec.len(), RECORD_HEADER + 64);
    let h = RecordHeader::from_bytes(rec).unwrap();
    assert_eq!(h.wire_len, 300);
    assert_eq!(h.rx, 3);
    assert_eq!(usize::from(h.code), reject(Reason::Blocked).code());
    drop(b);
}

#[test]
fn record_headers_round_trip_and_comment() {
    let h = RecordHeader {
        time_ns: 1_700_000_000_123_456_789,
        wire_len: 1514,
        code: u8::try_from(reject(Reason::SsaViolation).code()).unwrap(),
        port: 0,
        rx: 2,
        worker: Some(1),
        slice: Some(4242),
    };
    assert_eq!(RecordHeader::from_bytes(&h.to_bytes()), Some(h));
    assert_eq!(
        h.comment(),
        "class=reject reason=ssa-violation rx=2 worker=1 slice=4242"
    );
    let none = RecordHeader {
        worker: None,
        slice: None,
        code: 2,
        ..h
    };
    assert_eq!(RecordHeader::from_bytes(&none.to_bytes()), Some(none));
    assert_eq!(
        none.comment(),
        "class=known_good reason=- rx=2 worker=- slice=-"
    );
    assert_eq!(RecordHeader::from_bytes(&[0u8; 10]), None);
}

#[test]
fn file_names_number_in_order() {
    assert_eq!(file_name(1), "tee-00001.pcapng");
    assert_eq!(file_name(123_456), "tee-123456.pcapng");
    assert_eq!(file_number("tee-00042.pcapng"), Some(42));
    assert_eq!(file_number("tee-123456.pcapng"), Some(123_456));
    assert_eq!(file_number("tee-42.pcapng"), None);
    assert_eq!(file_number("tee-0004x.pcapng"), None);
    assert_eq!(file_number("other.pcapng"), None);
}

fn record(code: usize, len: usize, t: u64) -> Vec<u8> {
    record_on(0, code, len, t)
}

fn record_on(port: u8, code: usize, len: usize, t: u64) -> Vec<u8> {
    let h = RecordHeader {
        time_ns: t,
        wire_len: len as u32,
        code: code as u8,
        port,
        rx: 0,
        worker: None,
        slice: Some(9),
    };
    let mut v = h.to_bytes().to_vec();
    v.extend((0..len).map(|i| i as u8));
    v
}

/// Files rotate by size, keep at most `files`, continue numbering after what is there,
/// are 0600 in a 0700 directory, and hold one comment per packet.
#[test]
fn rotation_modes_and_comments() {
    let dir = temp_dir("rotation").join("nested");
    let counters = Arc::new(WriterCounters::default());
    let current = Arc::new(Mutex::new(None));
    let mut r = Rotation::new(
        &dir,
        4096,
        3,
        vec!["tap:weir0".into()],
        256,
        Arc::clone(&counters),
        current,
    )
    .unwrap();
    let code = reject(Reason::SsaViolation).code();
    for i in 0..100 {
        r.write(&record(code, 200, 1_000_000_000 + i)).unwrap();
    }
    r.finish().unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let begun = counters.files.load(Ordering::Relaxed);
    assert!(begun > 3, "100 × 268 bytes in 4 KiB files: {begun} files");
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(names[2], file_name(u32::try_from(begun).unwrap()));
    for n in &names {
        assert_eq!(mode(&dir.join(n)), 0o600, "{n}");
    }
    assert_eq!(counters.written.load(Ordering::Relaxed), 100);
    // Read the last file back with pcap-file: an IDB in ns, comments on every packet.
    let data = std::fs::read(dir.join(&names[2])).unwrap();
    let mut reader = pcap_file::pcapng::PcapNgReader::new(&data[..]).unwrap();
    let mut packets = 0;
    while let Some(block) = reader.next_block() {
        if let pcap_file::pcapng::Block::EnhancedPacket(p) = block.unwrap() {
            packets += 1;
            assert_eq!(p.data.len(), 200);
            assert!(p.options.iter().any(|o| matches!(o,
                EnhancedPacketOption::Comment(c) if c.contains("reason=ssa-violation") && c.contains("slice=9"))));
        }
    }
    assert!(packets > 0);
    // A new rotation in the same directory numbers after the highest file there.
    let r2 = Rotation::new(
        &dir,
        4096,
        3,
        vec!["p".into()],
        256,
        Arc::new(WriterCounters::default()),
        Arc::new(Mutex::new(None)),
    )
    .unwrap();
    assert_eq!(r2.next, u32::try_from(begun).unwrap() + 1);
    let _ = std::fs::remove_dir_all(dir.parent().unwrap());
}

/// A port of several devices has one pcapng interface per device, named after it, and
/// every packet is under the interface of the device it came in on (a device index past
/// the last interface goes to the last one rather than to a block readers reject).
#[test]
fn each_device_of_a_port_is_its_own_interface() {
    let dir = temp_dir("devices");
    let mut cfg = Config::default();
    cfg.port = Some(PortConfig::Dpdk(weir_model::config::DpdkPortConfig {
        eal: Vec::new(),
        devices: vec!["0000:3b:00.0".into(), "0000:3b:00.1".into()],
        rx_queues: 1,
        rx_desc: 256,
        tx_desc: 256,
        mbufs: 8191,
        mbuf_cache: 32,
    }));
    let names = port_names(cfg.port.as_ref());
    assert_eq!(names, ["dpdk:0000:3b:00.0", "dpdk:0000:3b:00.1"]);
    let mut r = Rotation::new(
        &dir,
        1 << 20,
        1,
        names,
        256,
        Arc::new(WriterCounters::default()),
        Arc::new(Mutex::new(None)),
    )
    .unwrap();
    let code = reject(Reason::SsaViolation).code();
    for (i, port) in [0u8, 1, 1, 0, 1, 7].into_iter().enumerate() {
        r.write(&record_on(port, code, 60 + i, 1_000 + i as u64))
            .unwrap();
    }
    r.finish().unwrap();
    let data = std::fs::read(dir.join(file_name(1))).unwrap();
    let mut reader = pcap_file::pcapng::PcapNgReader::new(&data[..]).unwrap();
    let (mut interfaces, mut on) = (Vec::new(), Vec::new());
    while let Some(block) = reader.next_block() {
        match block.unwrap() {
            pcap_file::pcapng::Block::InterfaceDescription(d) => {
                interfaces.extend(d.options.iter().filter_map(|o| match o {
                    InterfaceDescriptionOption::IfName(n) => Some(n.to_string()),
                    _ => None,
                }));
            }
            pcap_file::pcapng::Block::EnhancedPacket(p) => on.push((p.interface_id, p.data.len())),
            _ => {}
        }
    }
    assert_eq!(interfaces, ["dpdk:0000:3b:00.0", "dpdk:0000:3b:00.1"]);
    assert_eq!(on, [(0, 60), (1, 61), (1, 62), (0, 63), (1, 64), (1, 65)]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The hub end to end without a port: start, an rx core picks its tee up, frames are
/// written, stop writes the rest; a re-sent order with the same serial changes nothing.
#[test]
fn hub_start_pickup_write_stop() {
    let dir = temp_dir("hub");
    let text = format!(
        "[dataplane]\nworkers = 1\n[tee]\ndir = {:?}\nring = 8\nfilters = [\"reject:*\"]\n",
        dir.display().to_string()
    );
    let cfg = Config::from_toml("t", &text).unwrap();
    let hub = TeeHub::new(&cfg, 1, Arc::new(AtomicBool::new(false)));
    let spec = TeeSpec {
        filters: vec!["reject:ssa-violation".into()],
        sample: 1,
        rate_per_core: Some(0),
        snaplen: None,
        until_unix_ns: None,
        serial: 7,
    };
    hub.follow(&TeeOrder::Start(spec.clone())).unwrap();
    let v = hub.version();
    let mut tee: Option<Box<dyn Tee>> = None;
    assert_eq!(hub.pick_up(0, &mut tee), Some(v));
    let p = policy();
    let bytes = [1u8; 80];
    for i in 0..5 {
        tee.as_deref_mut()
            .unwrap()
            .frame(&frame(reject(Reason::SsaViolation), &bytes, &p, i));
    }
    // Same serial again: nothing restarts.
    hub.follow(&TeeOrder::Start(spec)).unwrap();
    assert_eq!(hub.version(), v);
    let st = hub.status();
    assert!(st.active);
    assert_eq!(st.filter, "reject:ssa-violation");
    // Stop from another thread while "the rx core" acknowledges.
    std::thread::scope(|s| {
        let h = s.spawn(|| hub.follow(&TeeOrder::Stop));
        while hub.version() == v {
            std::thread::yield_now();
        }
        assert!(hub.pick_up(0, &mut tee).is_some());
        assert!(tee.is_none());
        h.join().unwrap().unwrap();
    });
    let st = hub.status();
    assert!(!st.active);
    assert_eq!((st.teed, st.written, st.files), (5, 5, 1));
    assert!(st.file.unwrap().ends_with("tee-00001.pcapng"));
    // A bad order is a clear error.
    let bad = TeeSpec {
        filters: vec!["reject:nope".into()],
        sample: 1,
        rate_per_core: None,
        snaplen: None,
        until_unix_ns: None,
        serial: 8,
    };
    assert!(hub
        .follow(&TeeOrder::Start(bad))
        .unwrap_err()
        .contains("reject:nope"));
    let _ = std::fs::remove_dir_all(&dir);
}
