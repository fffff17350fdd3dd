//! Fuzz target: arbitrary frames through the handover checks a predecessor makes
//! (`weir_dp::handover::decapsulate`), and an accepted inner packet through the
//! classifier, as the rx core would. Arbitrary inner packets through `encapsulate` must
//! come back bit for bit. Any panic or out-of-bounds access is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_dp::handover::{decapsulate, encapsulate, inner_frame, Encap, Members, Tunnel};

const OURS: u128 = 0x2001_0db8_0077_0000_0000_0000_0000_0001;
const PEER: u128 = 0x2001_0db8_0077_0000_0000_0000_0000_0002;

fuzz_target!(|data: &[u8]| {
    let Ok(members) = Members::new(&[OURS, PEER]) else {
        return;
    };
    let mut frame = data.to_vec();
    match decapsulate(&frame, OURS, &members) {
        Tunnel::Inner(inner) => {
            assert!(inner.offset + inner.len <= frame.len());
            let f = inner_frame(&mut frame, inner).expect("an accepted inner packet has room");
            let _ = weir_wire::parse_frame(f);
        }
        Tunnel::NotTunnel | Tunnel::Refused(_) => {}
    }
    // The data as an inner packet: encapsulated by the peer, accepted by us, unchanged.
    let e = Encap {
        src_mac: [2, 0, 0, 0, 0, 2],
        dst_mac: [2, 0, 0, 0, 0, 1],
        outer_src: PEER,
        outer_dst: OURS,
        hop_limit: 64,
        mtu: 9000,
    };
    let mut out = vec![0u8; 9100];
    if let Ok(n) = encapsulate(&e, data, &mut out) {
        if let Tunnel::Inner(i) = decapsulate(&out[..n], OURS, &members) {
            let len = i.len;
            assert_eq!(&out[i.offset..i.offset + len], &data[..len]);
        }
    }
});
