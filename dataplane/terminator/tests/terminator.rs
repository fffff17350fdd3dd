//! The terminator against a scripted TCP client built from smoltcp's wire types (no
//! smoltcp socket on the client side): handshakes, HTTP over them, closes and recycling,
//! SYN budgets, thousands of concurrent connections, ICMPv6 echo.

use std::time::{Duration, Instant};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    Icmpv6Packet, Icmpv6Repr, IpProtocol, Ipv6Address, Ipv6Packet, Ipv6Repr, TcpControl,
};
use weir_model::config::{AdapterConfig, TerminatorConfig};
use weir_model::Class;
use weir_terminator::adapter;
use weir_terminator::client::{parse, Client, SERVICE};
use weir_terminator::tcp::{Terminator, TerminatorStats};

fn terminator(cfg: TerminatorConfig) -> Terminator {
    let a = adapter::build(&AdapterConfig::Static {
        dir: None,
        body: Some("hello from weir\n".into()),
        content_type: None,
    })
    .unwrap();
    Terminator::new(&cfg, &[(SERVICE, 64)], a)
}

fn cfg() -> TerminatorConfig {
    TerminatorConfig {
        enabled: true,
        shards: 64,
        ..TerminatorConfig::default()
    }
}

fn poll(t: &mut Terminator, clients: &mut [Client]) {
    let mut out = Vec::new();
    t.poll(Instant::now(), &mut |o| out.extend(parse(o)));
    for c in clients {
        c.absorb(&out);
    }
}

#[test]
fn a_request_over_a_handshake_is_answered_and_the_socket_recycled() {
    let mut t = terminator(cfg());
    for round in 0..50 {
        let mut c = Client::new(round);
        assert!(
            c.connect(&mut t, Class::AssumedGood),
            "round {round}: SYN-ACK"
        );
        c.send(
            &mut t,
            TcpControl::Psh,
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Class::KnownGood,
        );
        poll(&mut t, std::slice::from_mut(&mut c));
        let text = String::from_utf8_lossy(&c.received).to_string();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.ends_with("hello from weir\n"), "{text}");
        assert!(c.fin_seen, "Connection: close closes");
        let fin_ack = c.send(&mut t, TcpControl::Fin, &[], Class::KnownGood);
        assert!(
            fin_ack.iter().any(|s| s.ack == Some(c.next_seq)),
            "round {round}: our FIN is acknowledged before the socket is recycled: {fin_ack:?}"
        );
        poll(&mut t, std::slice::from_mut(&mut c));
    }
    let s: TerminatorStats = t.stats();
    assert_eq!(s.established, 50);
    assert_eq!(s.closed, 50);
    assert_eq!(s.active, 0);
    assert_eq!(s.http.requests, 50);
    // Sequential connections reuse the same few sockets.
    assert!(
        s.sockets_allocated <= 4,
        "recycled: {} sockets for 50 connections",
        s.sockets_allocated
    );
}

#[test]
fn keep_alive_and_pipelining_on_one_connection() {
    let mut t = terminator(cfg());
    let mut c = Client::new(1);
    assert!(c.connect(&mut t, Class::AssumedGood));
    let two = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n";
    c.send(&mut t, TcpControl::Psh, two, Class::KnownGood);
    poll(&mut t, std::slice::from_mut(&mut c));
    let text = String::from_utf8_lossy(&c.received).to_string();
    assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");
    assert!(!c.fin_seen, "keep-alive keeps the connection");
    assert_eq!(t.stats().active, 1);
}

#[test]
fn thousands_of_concurrent_connections_all_complete() {
    let n = 3000;
    let mut t = terminator(TerminatorConfig {
        syn_per_poll: 10_000,
        half_open_budget: 10_000,
        ..cfg()
    });
    let mut clients: Vec<Client> = (0..n).map(Client::new).collect();
    for c in &mut clients {
        assert!(c.connect(&mut t, Class::AssumedGood));
    }
    assert_eq!(t.stats().established, u64::from(n));
    assert_eq!(t.stats().active, u64::from(n));
    assert_eq!(t.stats().half_open, 0);
    for c in &mut clients {
        c.send(
            &mut t,
            TcpControl::Psh,
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            Class::KnownGood,
        );
    }
    poll(&mut t, &mut clients);
    for c in &clients {
        assert!(
            c.received.starts_with(b"HTTP/1.1 200"),
            "every client answered"
        );
    }
    assert_eq!(t.stats().http.requests, u64::from(n));
}

#[test]
fn half_open_budget_drops_suspect_syns_first() {
    let mut t = terminator(TerminatorConfig {
        half_open_budget: 8,
        ..cfg()
    });
    // Half-open connections that never send their ACK.
    let mut answered = 0;
    for i in 0..4 {
        let mut c = Client::new(i);
        if !c
            .send(&mut t, TcpControl::Syn, &[], Class::Suspect)
            .is_empty()
        {
            answered += 1;
        }
    }
    assert_eq!(answered, 4, "suspect SYNs admitted up to half the budget");
    let mut c = Client::new(10);
    assert!(
        c.send(&mut t, TcpControl::Syn, &[], Class::Suspect)
            .is_empty(),
        "5th suspect SYN dropped, no RST"
    );
    assert_eq!(t.stats().syn_dropped_suspect, 1);
    for i in 20..24 {
        let mut c = Client::new(i);
        assert!(c.connect(&mut t, Class::AssumedGood) || t.stats().half_open < 8);
    }
    let mut more = Client::new(40);
    let before = t.stats();
    // Four suspect + the established ones: half-open is back to 4, so assumed-good still gets in.
    assert!(more.connect(&mut t, Class::AssumedGood), "{before:?}");
    // Fill the budget with assumed-good SYNs that never complete.
    for i in 50..54 {
        let mut c = Client::new(i);
        c.send(&mut t, TcpControl::Syn, &[], Class::AssumedGood);
    }
    assert_eq!(t.stats().half_open, 8);
    // Full: a suspect SYN is dropped, an assumed-good one takes the oldest half-open slot
    // and completes its handshake.
    let mut spoof = Client::new(98);
    assert!(spoof
        .send(&mut t, TcpControl::Syn, &[], Class::Suspect)
        .is_empty());
    let mut late = Client::new(99);
    assert!(
        late.connect(&mut t, Class::AssumedGood),
        "evicts the oldest and gets in"
    );
    let s = t.stats();
    assert_eq!(s.half_open_evicted, 1);
    assert_eq!(s.half_open, 7, "one evicted, the new one established");
    assert_eq!(s.syn_dropped_budget, 0);
    assert_eq!(s.syn_dropped_suspect, 2);
}

#[test]
fn the_per_poll_syn_budget_defers_syns_without_a_reset() {
    let mut t = terminator(TerminatorConfig {
        syn_per_poll: 2,
        shards: 1,
        ..cfg()
    });
    // One shard: the first SYN creates its listener (budget 1), which becomes the
    // connection; the second creates the next (budget 2); the third finds none and no budget.
    let mut cs: Vec<Client> = (0..3).map(Client::new).collect();
    assert!(!cs[0]
        .send(&mut t, TcpControl::Syn, &[], Class::AssumedGood)
        .is_empty());
    assert!(!cs[1]
        .send(&mut t, TcpControl::Syn, &[], Class::AssumedGood)
        .is_empty());
    assert!(
        cs[2]
            .send(&mut t, TcpControl::Syn, &[], Class::AssumedGood)
            .is_empty(),
        "no SYN-ACK and no RST"
    );
    assert_eq!(t.stats().syn_dropped_poll_budget, 1);
    // Next poll: the retransmitted SYN gets in.
    poll(&mut t, &mut cs);
    cs[2].next_seq = cs[2].next_seq.wrapping_sub(1);
    assert!(!cs[2]
        .send(&mut t, TcpControl::Syn, &[], Class::AssumedGood)
        .is_empty());
}

#[test]
fn max_connections_is_a_hard_bound() {
    let mut t = terminator(TerminatorConfig {
        max_connections: 10,
        ..cfg()
    });
    let mut ok = 0;
    for i in 0..20 {
        let mut c = Client::new(i);
        if c.connect(&mut t, Class::AssumedGood) {
            ok += 1;
        }
        poll(&mut t, &mut []);
    }
    assert_eq!(ok, 10);
    assert_eq!(t.stats().syn_dropped_full, 10);
    assert!(t.stats().sockets_allocated <= 10 + 64, "listeners included");
}

#[test]
fn icmpv6_echo_to_a_service_address_is_answered() {
    let mut t = terminator(cfg());
    let src = Ipv6Address::from_bits(0x2001_0db8_00ff_0000_0000_0000_0000_0001);
    let dst = Ipv6Address::from_bits(SERVICE | 0x1234);
    let echo = Icmpv6Repr::EchoRequest {
        ident: 7,
        seq_no: 1,
        data: b"ping",
    };
    let ip = Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Icmpv6,
        payload_len: echo.buffer_len(),
        hop_limit: 64,
    };
    let mut buf = vec![0u8; 40 + echo.buffer_len()];
    let mut p = Ipv6Packet::new_unchecked(&mut buf[..]);
    ip.emit(&mut p);
    echo.emit(
        &src,
        &dst,
        &mut Icmpv6Packet::new_unchecked(p.payload_mut()),
        &ChecksumCapabilities::default(),
    );
    let mut out = Vec::new();
    t.receive(&buf, Class::Suspect, Instant::now(), &mut |o| {
        out.push(o.to_vec())
    });
    assert_eq!(out.len(), 1, "one echo reply");
    let reply = Ipv6Packet::new_checked(&out[0][..]).unwrap();
    assert_eq!(reply.src_addr(), dst);
    assert_eq!(reply.dst_addr(), src);
    let icmp = Icmpv6Packet::new_checked(reply.payload()).unwrap();
    assert_eq!(icmp.msg_type(), smoltcp::wire::Icmpv6Message::EchoReply);
}

#[test]
fn idle_connections_are_closed() {
    let mut t = terminator(TerminatorConfig {
        idle_timeout_s: 1,
        ..cfg()
    });
    let mut c = Client::new(3);
    assert!(c.connect(&mut t, Class::AssumedGood));
    std::thread::sleep(Duration::from_millis(2100));
    poll(&mut t, std::slice::from_mut(&mut c));
    assert!(c.fin_seen, "the idle connection got a FIN");
    assert_eq!(t.stats().idle_closed, 1);
}

#[test]
fn ipv4_service_prefixes_are_served_too() {
    use smoltcp::wire::{
        IpAddress, Ipv4Address, Ipv4Packet, Ipv4Repr, TcpPacket, TcpRepr, TcpSeqNumber,
    };
    // 192.0.2.0/24 as IPv4-mapped, as the dataplane's prefixes hold it.
    let v4_prefix: u128 = (0xffff_u128 << 32) | u128::from(0xc000_0200_u32);
    let a = adapter::build(&AdapterConfig::Health).unwrap();
    let mut t = Terminator::new(&cfg(), &[(SERVICE, 64), (v4_prefix, 120)], a);
    let client = Ipv4Address::new(198, 51, 100, 7);
    let server = Ipv4Address::new(192, 0, 2, 80);
    let caps = ChecksumCapabilities::default();
    let packet = |seq: u32, ack: Option<u32>, control: TcpControl, payload: &[u8]| {
        let tcp = TcpRepr {
            src_port: 40_000,
            dst_port: 80,
            control,
            seq_number: TcpSeqNumber(seq as i32),
            ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
            window_len: 65_535,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload,
        };
        let ip = Ipv4Repr {
            src_addr: client,
            dst_addr: server,
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        };
        let mut buf = vec![0u8; 20 + tcp.buffer_len()];
        let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
        ip.emit(&mut p, &caps);
        tcp.emit(
            &mut TcpPacket::new_unchecked(p.payload_mut()),
            &IpAddress::Ipv4(client),
            &IpAddress::Ipv4(server),
            &caps,
        );
        buf
    };
    // Parse what comes back: (seq, ack, control, payload).
    let parse4 = |p: &[u8]| {
        let ip = Ipv4Packet::new_checked(p).ok()?;
        let r = Ipv4Repr::parse(&ip, &caps).ok()?;
        assert_eq!((r.src_addr, r.dst_addr), (server, client));
        let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
        let t = TcpRepr::parse(
            &tcp,
            &IpAddress::Ipv4(server),
            &IpAddress::Ipv4(client),
            &caps,
        )
        .ok()?;
        Some((
            t.seq_number.0 as u32,
            t.ack_number.map(|a| a.0 as u32),
            t.control,
            t.payload.to_vec(),
        ))
    };
    let mut out = Vec::new();
    t.receive(
        &packet(100, None, TcpControl::Syn, &[]),
        Class::AssumedGood,
        Instant::now(),
        &mut |o| out.extend(parse4(o)),
    );
    let (srv_seq, ack, control, _) = out.pop().expect("a SYN-ACK over IPv4");
    assert_eq!((control, ack), (TcpControl::Syn, Some(101)));
    let mut out = Vec::new();
    t.receive(
        &packet(101, Some(srv_seq + 1), TcpControl::None, &[]),
        Class::KnownGood,
        Instant::now(),
        &mut |o| out.extend(parse4(o)),
    );
    t.receive(
        &packet(
            101,
            Some(srv_seq + 1),
            TcpControl::Psh,
            b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        ),
        Class::KnownGood,
        Instant::now(),
        &mut |o| out.extend(parse4(o)),
    );
    t.poll(Instant::now(), &mut |o| out.extend(parse4(o)));
    let body: Vec<u8> = out.iter().flat_map(|s| s.3.clone()).collect();
    let text = String::from_utf8_lossy(&body);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(t.stats().established, 1);
}

/// The counter-name table names every field of the stats, nested HTTP counters included:
/// a field added without a name would never reach weirctl or Prometheus.
#[test]
fn the_counter_table_names_every_field() {
    fn names(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
        for (k, v) in v.as_object().expect("an object") {
            let name = format!("{prefix}-{}", k.replace('_', "-"));
            if v.is_u64() {
                out.push(name);
            } else {
                names(&name, v, out);
            }
        }
    }
    let stats = weir_terminator::tcp::TerminatorStats::default();
    let mut fields = Vec::new();
    names("term", &serde_json::to_value(stats).unwrap(), &mut fields);
    let mut table: Vec<String> = stats
        .counters()
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    fields.sort();
    table.sort();
    assert_eq!(table, fields);
}
