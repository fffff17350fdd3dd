//! Tests against real DPDK vdevs (net_null, net_pcap) in one EAL per test process. Each
//! test uses its own device and pool names, so they run in parallel threads.

use std::path::{Path, PathBuf};

use super::*;
use crate::capture::Capture;

fn eal() {
    eal_init(&test_eal_args()).expect("EAL init with test_eal_args()");
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../pcap-fixtures")
        .join(name)
}

fn setup(rx_queues: u16) -> PortSetup {
    PortSetup {
        rx_queues,
        tx_queues: 1,
        rx_desc: 256,
        tx_desc: 256,
        rss: true,
        rx_timestamp: true,
    }
}

/// Frames of a capture as (bytes, ts_ns).
fn frames(path: &Path) -> Vec<(Vec<u8>, u64)> {
    let mut out = Vec::new();
    Capture::open(path)
        .expect("open capture")
        .for_each(|r| out.push((r.data.to_vec(), r.ts_ns)))
        .expect("read capture");
    out
}

#[test]
fn second_init_with_other_args_is_refused() {
    eal();
    assert_eq!(eal_init(&test_eal_args()), Ok(()));
    let err = eal_init(&["--no-huge".to_owned()]).unwrap_err();
    assert!(matches!(err, DpdkError::AlreadyInitialised { .. }), "{err}");
}

#[test]
fn mempool_gives_every_mbuf_back() {
    eal();
    let pool = Mempool::new("t_pool_all", 511, 0, DEFAULT_DATA_ROOM).unwrap();
    assert_eq!(pool.capacity(), 511);
    assert_eq!(pool.available(), 511);
    let mut all = Vec::new();
    while let Some(m) = Mbuf::alloc(&pool) {
        all.push(m);
    }
    assert_eq!(all.len(), 511);
    assert_eq!(pool.available(), 0);
    assert_eq!(pool.in_use(), 511);
    let m = &mut all[0];
    assert!(m.append(b"hello"));
    assert_eq!(m.data(), b"hello");
    assert_eq!(m.pkt_len(), 5);
    assert_eq!(m.segments(), 1);
    m.set_stamp(0xdead_beef);
    assert_eq!(m.stamp(), 0xdead_beef);
    assert!(!m.append(&[0u8; 4000]), "more than the tailroom");
    // Through a ring handle and back.
    let m = all.pop().unwrap();
    let raw = crate::ring::RingItem::into_raw(m);
    // SAFETY: raw came from into_raw just above and is taken back once.
    all.push(unsafe { <Mbuf as crate::ring::RingItem>::from_raw(raw) });
    drop(all);
    assert_eq!(pool.available(), pool.capacity());
}

#[test]
fn a_free_batch_gives_back_plain_mixed_and_chained_mbufs() {
    eal();
    let a = Mempool::new("t_free_a", 127, 0, DEFAULT_DATA_ROOM).unwrap();
    let b = Mempool::new("t_free_b", 127, 0, DEFAULT_DATA_ROOM).unwrap();
    // Plain mbufs of one pool: the fast path, more than one batch's worth.
    let mut batch = FreeBatch::default();
    for _ in 0..BURST + 5 {
        batch.push(Mbuf::alloc(&a).unwrap());
    }
    batch.flush();
    assert_eq!(a.available(), a.capacity());
    // Two pools in one batch: the general path.
    batch.push(Mbuf::alloc(&a).unwrap());
    batch.push(Mbuf::alloc(&b).unwrap());
    batch.push(Mbuf::alloc(&a).unwrap());
    batch.flush();
    assert_eq!(a.available(), a.capacity());
    assert_eq!(b.available(), b.capacity());
    // A two-segment mbuf (chained by hand, as rte_pktmbuf_chain would) after a plain one:
    // the general path frees both segments.
    let head = Mbuf::alloc(&a).unwrap().into_raw();
    let tail = Mbuf::alloc(&a).unwrap().into_raw();
    // SAFETY: both are live mbufs owned here; linking tail after head and counting two
    // segments is what rte_pktmbuf_chain does for empty segments. The chain is owned by
    // `head` from here on.
    let chained = unsafe {
        (*head).next = tail;
        (*head).nb_segs = 2;
        Mbuf::from_raw(head)
    };
    assert_eq!(chained.segments(), 2);
    batch.push(Mbuf::alloc(&a).unwrap());
    batch.push(chained);
    drop(batch);
    assert_eq!(a.available(), a.capacity());
}

#[test]
fn net_null_rx_returns_every_mbuf() {
    eal();
    let pool = Mempool::new("t_pool_null", 1023, 0, DEFAULT_DATA_ROOM).unwrap();
    let mut port = Port::attach("net_null_wnull").unwrap();
    assert_eq!(port.info().driver, "net_null");
    let ready = port.configure(&setup(1), &pool).unwrap();
    assert_eq!(ready.rss_hf, 0);
    port.start().unwrap();
    let mut got = 0;
    for _ in 0..4 {
        let mut burst = Burst::new();
        got += port.rx_burst(0, &mut burst);
        let first = burst.next().unwrap();
        assert_eq!(first.port(), port.id());
        drop(first);
        // The rest is freed by the burst's Drop.
    }
    assert_eq!(got, 4 * BURST);
    assert!(port.stats().ipackets >= got as u64);
    drop(port);
    assert_eq!(pool.available(), pool.capacity());
}

#[test]
fn net_null_rss_over_two_queues() {
    eal();
    let pool = Mempool::new("t_pool_rss", 511, 0, DEFAULT_DATA_ROOM).unwrap();
    let mut port = Port::attach("net_null_wrss").unwrap();
    let ready = port.configure(&setup(2), &pool).unwrap();
    assert_eq!(ready.rss_hf, RSS_ADDRESS);
    assert_eq!(ready.rss_note, None);
}

#[test]
fn too_many_queues_is_a_clear_error() {
    eal();
    let pool = Mempool::new("t_pool_many", 255, 0, DEFAULT_DATA_ROOM).unwrap();
    let mut port = Port::attach("net_null_wmany").unwrap();
    let max = port.info().max_rx_queues;
    let err = port.configure(&setup(max + 1), &pool).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, DpdkError::TooManyQueues { .. }), "{text}");
    assert!(
        text.contains(&(max + 1).to_string()) && text.contains(&max.to_string()),
        "{text}"
    );
    assert!(text.contains("net_null_wmany"), "{text}");
}

#[test]
fn a_vdev_without_rss_runs_its_queues_as_separate_sources_and_says_so() {
    // net_pcap hashes nothing; each rx queue is a file of its own. (A PCI NIC that hashes
    // none of the address types is refused with `NoRss`; no NIC here to show it.)
    eal();
    let pool = Mempool::new("t_pool_norss", 255, 0, DEFAULT_DATA_ROOM).unwrap();
    let mix = fixture("mix.pcap");
    let devargs = format!("net_pcap_wnorss,rx_pcap={m},rx_pcap={m}", m = mix.display());
    let mut port = Port::attach(&devargs).unwrap();
    let ready = port.configure(&setup(2), &pool).unwrap();
    assert_eq!(ready.rss_hf, 0);
    let note = ready.rss_note.expect("the fallback is reported");
    assert!(
        note.contains("hashes nothing") && note.contains("without RSS"),
        "{note}"
    );
}

#[test]
fn net_pcap_rx_matches_the_capture() {
    eal();
    let mix = fixture("mix.pcap");
    let expected = frames(&mix);
    let pool = Mempool::new("t_pool_pcap", 1023, 0, DEFAULT_DATA_ROOM).unwrap();
    let mut port = Port::attach(&format!("net_pcap_wrx,rx_pcap={}", mix.display())).unwrap();
    let ready = port.configure(&setup(1), &pool).unwrap();
    assert!(ready.rx_timestamp);
    port.start().unwrap();
    let mut got = Vec::new();
    let mut idle = 0;
    while idle < 16 {
        let mut burst = Burst::new();
        if port.rx_burst(0, &mut burst) == 0 {
            idle += 1;
            continue;
        }
        idle = 0;
        for m in burst {
            assert_eq!(m.segments(), 1);
            got.push((m.data().to_vec(), m.rx_timestamp()));
        }
    }
    // End of file: rx keeps returning 0 and no mbuf was missing.
    assert_eq!(port.stats().rx_nombuf, 0);
    assert_eq!(got.len(), expected.len());
    for (i, ((data, ts), (want, want_ns))) in got.iter().zip(&expected).enumerate() {
        assert_eq!(data, want, "frame {i}");
        // net_pcap reads through libpcap at microsecond precision.
        assert_eq!(*ts, Some(want_ns / 1000 * 1000), "frame {i} timestamp");
    }
    assert_eq!(port.stats().ipackets, expected.len() as u64);
    drop(port);
    assert_eq!(pool.available(), pool.capacity());
}

#[test]
fn net_pcap_tx_writes_the_frames() {
    eal();
    let out = std::env::temp_dir().join(format!("weir-tx-{}.pcap", std::process::id()));
    let pool = Mempool::new("t_pool_tx", 255, 0, DEFAULT_DATA_ROOM).unwrap();
    let mut port = Port::attach(&format!("net_pcap_wtx,tx_pcap={}", out.display())).unwrap();
    port.configure(&setup(1), &pool).unwrap();
    port.start().unwrap();
    let sent_frames: Vec<Vec<u8>> = (0u8..10)
        .map(|i| {
            let mut f = vec![0xffu8; 12];
            f.extend_from_slice(&[0x08, 0x00]);
            f.resize(f.len() + 46 + usize::from(i), i);
            f
        })
        .collect();
    let mut b = TxBurst::new();
    for f in &sent_frames {
        let mut m = Mbuf::alloc(&pool).unwrap();
        assert!(m.append(f));
        b.push(m).unwrap();
    }
    assert_eq!(b.len(), 10);
    let r = port.tx_flush(0, &mut b, 3);
    assert_eq!(
        r,
        TxResult {
            sent: 10,
            dropped: 0
        }
    );
    assert!(b.is_empty());
    drop(port);
    let written: Vec<Vec<u8>> = frames(&out).into_iter().map(|(d, _)| d).collect();
    assert_eq!(written, sent_frames);
    assert_eq!(pool.available(), pool.capacity());
    let _ = std::fs::remove_file(&out);
}

#[test]
fn tx_burst_full_gives_the_mbuf_back() {
    eal();
    let pool = Mempool::new("t_pool_full", 63, 0, DEFAULT_DATA_ROOM).unwrap();
    let mut b = TxBurst::new();
    for _ in 0..BURST {
        b.push(Mbuf::alloc(&pool).unwrap()).unwrap();
    }
    assert!(b.push(Mbuf::alloc(&pool).unwrap()).is_err());
    drop(b);
    assert_eq!(pool.available(), pool.capacity());
}

#[test]
fn launch_runs_on_a_worker() {
    eal();
    let workers = worker_lcores();
    assert!(workers.len() >= 2, "workers {workers:?}");
    launch(workers[0], || lcore_id() as i32 + 1000).unwrap();
    assert_eq!(wait(workers[0]), workers[0] as i32 + 1000);
    let err = launch(u32::MAX - 1, || 0).unwrap_err();
    assert!(matches!(err, DpdkError::Launch { .. }), "{err}");
    assert_eq!(wait(u32::MAX - 1), LCORE_INVALID);
    assert_eq!(lcore_id(), lcore_id());
}

#[test]
fn attach_detach_the_same_name_twice() {
    eal();
    for _ in 0..2 {
        let port = Port::attach("net_null_wtwice").unwrap();
        assert!(Port::available()
            .iter()
            .any(|(_, n)| n == "net_null_wtwice"));
        assert!(matches!(
            Port::attach("net_null_wtwice"),
            Err(DpdkError::PortInUse { .. })
        ));
        drop(port);
        assert!(!Port::available()
            .iter()
            .any(|(_, n)| n == "net_null_wtwice"));
    }
}
