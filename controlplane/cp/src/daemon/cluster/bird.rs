//! This host's routes as a BIRD include file, and `birdc configure`.
//!
//! The file holds one static protocol, `weir`, whose routes are the service's covering
//! prefixes (every live host announces them: anycast, the router spreads clients over
//! live hosts by ECMP), the slices this host owns aggregated into the fewest CIDR blocks
//! (longest match sends each slice to its owner), and this host's handover address as a
//! /128 (so other hosts reach it through the router). The operator's `bird.conf` includes
//! the file and exports `proto = "weir"` to its BGP sessions (README "Running a cluster").
//! The routes are `unreachable`: BIRD on a host has no kernel protocol, so they only
//! exist to be announced.
//!
//! [`fewest_blocks`] is pure and property-tested: the blocks cover exactly the owned
//! slices, are disjoint, and are as few as aligned CIDR blocks allow (each maximal run,
//! split at service-prefix boundaries, is cut greedily into the largest aligned blocks,
//! which is optimal for an interval).
//!
//! Rejected: driving BIRD's per-protocol `enable`/`disable` (a fixed set of prefixes,
//! known when bird.conf was written), and talking BGP ourselves (BIRD already has BFD,
//! timers and the operator's policy).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use weir_ssa::{Prefix, SliceMap};

/// The BIRD protocol name the include file defines.
pub const PROTOCOL: &str = "weir";

/// The owned slice runs of `map` as the fewest CIDR blocks. Runs may be given in any
/// order and may touch or overlap; slices outside the map are ignored. A block equal to a
/// whole service prefix is left out when `skip_whole` is set (the covering route is
/// announced anyway).
pub fn fewest_blocks(map: &SliceMap, owned: &[(u32, u32)], skip_whole: bool) -> Vec<Prefix> {
    let mut runs: Vec<(u32, u32)> = owned
        .iter()
        .filter(|(a, b)| a <= b)
        .map(|&(a, b)| (a, b))
        .collect();
    runs.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::new();
    for (a, b) in runs {
        match merged.last_mut() {
            Some(m) if a <= m.1.saturating_add(1) => m.1 = m.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    let mut blocks = Vec::new();
    let mut idx = 0usize;
    while let Some(range) = map.slices_of_prefix(idx) {
        let bits = map.slice_bits_of(idx).unwrap_or(0);
        let whole_len = map
            .slice_prefix(range.start)
            .map_or(0, |p| p.len.saturating_sub(bits));
        for &(a, b) in &merged {
            let lo = a.max(range.start);
            let hi = b.min(range.end.saturating_sub(1));
            if lo > hi {
                continue;
            }
            // Local slice numbers within this prefix.
            let (mut s, e) = (u64::from(lo - range.start), u64::from(hi - range.start));
            while s <= e {
                // The largest aligned block starting at s that ends by e.
                let mut j = if s == 0 {
                    u32::from(bits)
                } else {
                    s.trailing_zeros()
                };
                while j > 0 && s + (1u64 << j) - 1 > e {
                    j -= 1;
                }
                let j = j.min(u32::from(bits));
                let Some(first) = map.slice_prefix(range.start + s as u32) else {
                    break;
                };
                let len = first.len.saturating_sub(j as u8);
                if !(skip_whole && len == whole_len) {
                    if let Ok(p) = Prefix::new(first.addr, len) {
                        blocks.push(p);
                    }
                }
                s += 1u64 << j;
            }
        }
        idx += 1;
    }
    blocks
}

/// What one host announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes {
    /// The covering prefixes (empty when drained or unhealthy).
    pub covering: Vec<Prefix>,
    /// The owned slices' blocks.
    pub slices: Vec<Prefix>,
    /// The handover address, as a /128.
    pub handover: Option<Prefix>,
}

impl Routes {
    /// Every prefix, for status output.
    pub fn all(&self) -> Vec<String> {
        self.covering
            .iter()
            .chain(&self.slices)
            .chain(&self.handover)
            .map(Prefix::to_string)
            .collect()
    }
}

/// The include file's text.
pub fn include_text(host: &str, service: &str, epoch: u64, routes: &Routes) -> String {
    let mut s = format!(
        "# weir-cp: the routes of host {host} (service {service}, assignment epoch {epoch}).\n\
         # Written by weir-cp on every change; do not edit. Export them with\n\
         # `export where proto = \"{PROTOCOL}\";`\n\
         protocol static {PROTOCOL} {{\n  ipv6;\n"
    );
    for p in &routes.covering {
        s.push_str(&format!("  route {p} unreachable;    # covering prefix\n"));
    }
    for p in &routes.slices {
        s.push_str(&format!("  route {p} unreachable;\n"));
    }
    if let Some(p) = &routes.handover {
        s.push_str(&format!("  route {p} unreachable;    # handover address\n"));
    }
    s.push_str("}\n");
    s
}

/// Write `text` to `path` atomically (a temporary file beside it, then rename).
pub fn write_include(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("weir-tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// `birdc -s SOCKET configure`; `Err` with BIRD's words when it did not reconfigure.
pub fn configure(birdc: &Path, socket: &Path) -> Result<(), String> {
    let out = Command::new(birdc)
        .arg("-s")
        .arg(socket)
        .arg("configure")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", birdc.display()))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // "Reconfigured", "Reconfiguration in progress", "…already in progress, queueing…".
    if out.status.success() && text.contains("Reconfigur") && !text.contains("error") {
        Ok(())
    } else {
        Err(format!(
            "birdc configure: {}",
            text.trim().replace('\n', " / ")
        ))
    }
}

/// Whether BIRD answers on its control socket (its greeting line), within `timeout`.
pub fn alive(socket: &Path, timeout: Duration) -> bool {
    use std::io::Read;
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(timeout));
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(n) if n >= 4 && buf.starts_with(b"0001"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn map(apl: &str, bits: u8) -> SliceMap {
        let p = weir_ssa::ServicePrefixes::parse(apl).unwrap();
        SliceMap::new(p.prefixes(), bits, 1).unwrap()
    }

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn thirds_of_a_64() {
        let m = map("2:2001:db8:5::/64", 14);
        // 0..=5460: /66 (0..4095) + /68 (4096..5119) + /70 (5120..5375) + ...
        let b = fewest_blocks(&m, &[(0, 5460)], true);
        assert_eq!(b[0], p("2001:db8:5::/66"));
        assert_eq!(b[1], p("2001:db8:5:0:4000::/68"));
        let covered: u64 = b.iter().map(|x| 1u64 << (78 - x.len)).sum();
        assert_eq!(covered, 5461);
        assert_eq!(b.len(), 5461u32.count_ones() as usize);
        // Everything = the covering prefix: skipped, or itself.
        assert!(fewest_blocks(&m, &[(0, 16383)], true).is_empty());
        assert_eq!(
            fewest_blocks(&m, &[(0, 16383)], false),
            [p("2001:db8:5::/64")]
        );
        // Touching runs merge; out-of-range slices are ignored.
        assert_eq!(
            fewest_blocks(&m, &[(2, 3), (0, 1), (16383, 20000)], true),
            [p("2001:db8:5::/76"), p("2001:db8:5:0:fffc::/78")]
        );
    }

    #[test]
    fn runs_across_two_prefixes_split_at_the_boundary() {
        let m = map("2:2001:db8:5::/64 2:2001:db8:6::/64", 2);
        assert_eq!(
            fewest_blocks(&m, &[(3, 4)], true),
            [p("2001:db8:5:0:c000::/66"), p("2001:db8:6::/66")]
        );
        assert_eq!(
            fewest_blocks(&m, &[(0, 7)], false),
            [p("2001:db8:5::/64"), p("2001:db8:6::/64")]
        );
    }

    #[test]
    fn the_include_file() {
        let r = Routes {
            covering: vec![p("2001:db8:5::/64")],
            slices: vec![p("2001:db8:5::/66")],
            handover: Some(p("2001:db8:77::1/128")),
        };
        let t = include_text("h1", "svc", 7, &r);
        assert!(t.contains("protocol static weir {\n  ipv6;\n"), "{t}");
        assert!(t.contains("  route 2001:db8:5::/64 unreachable;"), "{t}");
        assert!(t.contains("  route 2001:db8:5::/66 unreachable;\n"), "{t}");
        assert!(t.contains("  route 2001:db8:77::1/128 unreachable;"), "{t}");
        assert!(t.ends_with("}\n"));
        assert_eq!(r.all().len(), 3);
        let empty = include_text(
            "h1",
            "svc",
            0,
            &Routes {
                covering: vec![],
                slices: vec![],
                handover: None,
            },
        );
        assert!(
            empty.contains("protocol static weir {\n  ipv6;\n}\n"),
            "{empty}"
        );
    }

    /// The minimal number of aligned blocks covering exactly `set` (a trie walk: a node
    /// wholly in the set is one block, a node partly in it is its two halves).
    fn oracle(set: &[bool]) -> usize {
        if set.iter().all(|&b| b) {
            1
        } else if set.iter().all(|&b| !b) {
            0
        } else {
            let (l, r) = set.split_at(set.len() / 2);
            oracle(l) + oracle(r)
        }
    }

    proptest! {
        /// The blocks cover exactly the owned slices, never overlap, and are as few as the
        /// trie oracle says.
        #[test]
        fn blocks_are_exact_and_fewest(bits in 0u8..=8, runs in proptest::collection::vec((0u32..256, 0u32..16), 0..8)) {
            let m = map("2:2001:db8:5::/64", bits);
            let n = m.len() as u32;
            let owned: Vec<(u32, u32)> = runs.iter().map(|&(a, l)| (a % n, (a % n + l).min(n - 1))).collect();
            let mut want = vec![false; n as usize];
            for &(a, b) in &owned {
                for i in a..=b { want[i as usize] = true; }
            }
            let blocks = fewest_blocks(&m, &owned, false);
            let mut got = vec![0u8; n as usize];
            for b in &blocks {
                for i in 0..n {
                    let s = m.slice_prefix(i).unwrap();
                    if b.covers(&s) { got[i as usize] += 1; }
                }
            }
            for i in 0..n as usize {
                prop_assert_eq!(got[i], u8::from(want[i]), "slice {}", i);
            }
            prop_assert_eq!(blocks.len(), oracle(&want));
        }
    }
}
