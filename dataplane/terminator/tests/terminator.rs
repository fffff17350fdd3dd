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

fn slow_cfg() -> TerminatorConfig {
    TerminatorConfig {
        header_timeout_ms: 200,
        send_stall_ms: 300,
        ..cfg()
    }
}

#[test]
fn slowloris_gets_408_and_counts_against_its_prefix() {
    let mut t = terminator(slow_cfg());
    // One client sends half a head; another sends nothing at all after the handshake.
    let mut half = Client::new(10);
    let mut silent = Client::new(11);
    assert!(half.connect(&mut t, Class::AssumedGood));
    assert!(silent.connect(&mut t, Class::AssumedGood));
    half.send(
        &mut t,
        TcpControl::Psh,
        b"GET / HTTP/1.1\r\nHo",
        Class::KnownGood,
    );
    poll(&mut t, std::slice::from_mut(&mut half));
    assert!(half.received.is_empty(), "nothing before the deadline");
    std::thread::sleep(Duration::from_millis(350));
    let mut both = [half, silent];
    poll(&mut t, &mut both);
    for c in &both {
        let text = String::from_utf8_lossy(&c.received).to_string();
        assert!(text.starts_with("HTTP/1.1 408 Request Timeout"), "{text}");
        assert!(text.contains("Connection: close"), "{text}");
        assert!(c.fin_seen, "closed after the 408");
    }
    let s = t.stats();
    assert_eq!(s.slow_header, 2);
    assert_eq!(s.http.request_timeout, 2);
    // Both clients are in 2001:db8:ff::/64 (Client::new): one prefix, two events.
    let top = s.slow_sources[0];
    assert_eq!(
        (top.prefix, top.len, top.header, top.read),
        (0x2001_0db8_00ff_0000_0000_0000_0000_0000, 64, 2, 0)
    );
    assert_eq!(s.slow_sources[1].len, 0, "one prefix only");
}

#[test]
fn a_body_that_trickles_past_the_deadline_gets_408_like_a_slow_head() {
    // R.U.D.Y.: the head is whole and quick, the body (well under max_body_bytes) comes a
    // byte now and then, so the connection is never idle. The request's clock runs from its
    // first byte until it is whole, body included.
    let mut t = terminator(slow_cfg());
    let mut c = Client::new(14);
    assert!(c.connect(&mut t, Class::AssumedGood));
    c.send(
        &mut t,
        TcpControl::Psh,
        b"POST /f HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n",
        Class::KnownGood,
    );
    for byte in [b"a", b"b", b"c"] {
        std::thread::sleep(Duration::from_millis(90));
        c.send(&mut t, TcpControl::Psh, byte, Class::KnownGood);
        poll(&mut t, std::slice::from_mut(&mut c));
    }
    std::thread::sleep(Duration::from_millis(150));
    poll(&mut t, std::slice::from_mut(&mut c));
    let text = String::from_utf8_lossy(&c.received).to_string();
    assert!(text.starts_with("HTTP/1.1 408 Request Timeout"), "{text}");
    assert!(c.fin_seen, "closed after the 408");
    let s = t.stats();
    assert_eq!((s.slow_header, s.http.request_timeout), (1, 1));
    assert_eq!(
        s.http.requests, 0,
        "the unfinished request was never handed on"
    );
}

#[test]
fn a_client_that_completes_its_request_is_not_slow() {
    let mut t = terminator(slow_cfg());
    let mut c = Client::new(12);
    assert!(c.connect(&mut t, Class::AssumedGood));
    for piece in [&b"GET / HTTP/1.1\r\n"[..], b"Host: x\r\n", b"\r\n"] {
        std::thread::sleep(Duration::from_millis(50));
        c.send(&mut t, TcpControl::Psh, piece, Class::KnownGood);
    }
    // ACK the answer, then stay idle (keep-alive) past the header deadline.
    c.send(&mut t, TcpControl::None, &[], Class::KnownGood);
    std::thread::sleep(Duration::from_millis(350));
    poll(&mut t, std::slice::from_mut(&mut c));
    let text = String::from_utf8_lossy(&c.received).to_string();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        !text.contains("408"),
        "an idle keep-alive connection is not slowloris"
    );
    assert_eq!(t.stats().slow_header, 0);
    assert_eq!(t.stats().slow_read, 0);
}

#[test]
fn a_reply_never_acknowledged_resets_the_connection() {
    let mut t = terminator(slow_cfg());
    let mut c = Client::new(13);
    assert!(c.connect(&mut t, Class::AssumedGood));
    // The answer is sent but the client never acknowledges it (a slow reader whose
    // window stays shut looks the same to the terminator).
    let out = c.send(
        &mut t,
        TcpControl::Psh,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        Class::KnownGood,
    );
    assert!(out.iter().any(|s| !s.payload.is_empty()), "answered");
    std::thread::sleep(Duration::from_millis(450));
    let mut segs = Vec::new();
    t.poll(Instant::now(), &mut |o| segs.extend(parse(o)));
    assert!(
        segs.iter().any(|s| s.control == TcpControl::Rst),
        "reset after send_stall_ms: {segs:?}"
    );
    let s = t.stats();
    assert_eq!(s.slow_read, 1);
    assert_eq!((s.slow_sources[0].read, s.slow_sources[0].header), (1, 0));
    assert_eq!(s.active, 0, "recycled");
}

/// An asynchronous adapter whose answers the test hands in: `Later` for every request,
/// limits like `nats`.
struct Deferred {
    taken: std::sync::Arc<std::sync::Mutex<Vec<adapter::Ticket>>>,
    ready: std::sync::Arc<std::sync::Mutex<Vec<(adapter::Ticket, adapter::Completion)>>>,
    in_flight: usize,
    per_worker: usize,
}

impl adapter::Adapter for Deferred {
    fn start<'r>(
        &'r mut self,
        _req: &'r adapter::Request<'r>,
        ticket: adapter::Ticket,
    ) -> adapter::Answer<'r> {
        self.in_flight += 1;
        self.taken.lock().unwrap().push(ticket);
        adapter::Answer::Later
    }
    fn name(&self) -> &'static str {
        "deferred"
    }
    fn can_start(&self) -> bool {
        self.in_flight < self.per_worker
    }
    fn conn_limit(&self) -> u32 {
        4
    }
    fn poll(&mut self, done: &mut dyn FnMut(adapter::Ticket, adapter::Completion)) {
        for (t, c) in self.ready.lock().unwrap().drain(..) {
            self.in_flight = self.in_flight.saturating_sub(1);
            done(t, c);
        }
    }
}

#[test]
fn later_answers_reach_their_connections_in_order_and_limits_resume() {
    type Taken = std::sync::Arc<std::sync::Mutex<Vec<adapter::Ticket>>>;
    let taken: Taken = Default::default();
    let ready = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let a = Deferred {
        taken: taken.clone(),
        ready: ready.clone(),
        in_flight: 0,
        per_worker: 3,
    };
    let mut t = Terminator::new(&cfg(), &[(SERVICE, 64)], Box::new(a));
    let mut one = Client::new(20);
    let mut two = Client::new(21);
    assert!(one.connect(&mut t, Class::AssumedGood));
    assert!(two.connect(&mut t, Class::AssumedGood));
    let get = |p: &str| format!("GET /{p} HTTP/1.1\r\nHost: x\r\n\r\n");
    let pipelined = [get("a"), get("b"), get("c")].concat();
    one.send(
        &mut t,
        TcpControl::Psh,
        pipelined.as_bytes(),
        Class::KnownGood,
    );
    two.send(
        &mut t,
        TcpControl::Psh,
        get("d").as_bytes(),
        Class::KnownGood,
    );
    // The worker's limit (3) is taken by `one`; `two` waits without being read.
    assert_eq!(taken.lock().unwrap().len(), 3);
    assert_eq!(t.stats().in_flight_stalls, 1);
    let reply = |body: &'static str| adapter::Completion::Reply {
        status: 200,
        head: bytes::Bytes::new(),
        body: bytes::Bytes::from_static(body.as_bytes()),
    };
    // Answer b and c first: nothing can be sent before a.
    let tk = taken.lock().unwrap().clone();
    ready.lock().unwrap().push((tk[1], reply("b")));
    ready.lock().unwrap().push((tk[2], reply("c")));
    poll(&mut t, &mut [one.clone()]);
    let mut segs = Vec::new();
    t.poll(Instant::now(), &mut |o| segs.extend(parse(o)));
    one.absorb(&segs);
    two.absorb(&segs);
    assert!(one.received.is_empty(), "b and c wait for a");
    // Places freed: `two`'s request is read now.
    assert_eq!(
        taken.lock().unwrap().len(),
        4,
        "the starved connection resumed"
    );
    ready.lock().unwrap().push((tk[0], reply("a")));
    let d = taken.lock().unwrap()[3];
    assert_eq!(d.serial, tk[0].serial + 1, "the second connection");
    ready.lock().unwrap().push((d, reply("d")));
    let mut segs = Vec::new();
    t.poll(Instant::now(), &mut |o| segs.extend(parse(o)));
    one.absorb(&segs);
    two.absorb(&segs);
    let text = String::from_utf8_lossy(&one.received).to_string();
    let bodies: Vec<&str> = text.split("\r\n\r\n").skip(1).map(|b| &b[..1]).collect();
    assert_eq!(bodies, ["a", "b", "c"], "{text}");
    assert!(String::from_utf8_lossy(&two.received).ends_with("\r\n\r\nd"));
    // An answer for a connection that has gone is dropped and counted.
    ready.lock().unwrap().push((
        adapter::Ticket {
            conn: 999,
            serial: 999,
            seq: 0,
        },
        reply("x"),
    ));
    t.poll(Instant::now(), &mut |_| {});
    assert_eq!(t.stats().http.late_answers, 1);
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
    names("term", &serde_json::to_value(&stats).unwrap(), &mut fields);
    let mut table: Vec<String> = stats
        .counters()
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    fields.sort();
    table.sort();
    assert_eq!(table, fields);
}
