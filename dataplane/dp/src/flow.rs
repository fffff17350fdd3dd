//! The flow table: TCP state learnt from both directions, in bounded memory.
//!
//! A client's SYN creates no state (a spoofed SYN flood costs no memory); the terminator's
//! SYN-ACK, seen on the tx path, creates a *half-open* entry that remembers the sequence
//! number the client must acknowledge; the client's ACK of it makes the flow
//! *established* (DESIGN.md "Flow state"). RST in either direction removes the entry at
//! once; FIN in both directions shortens its life to 2 s; idle entries expire (established
//! 300 s, half-open 5 s).
//!
//! Layout: open addressing with linear probing over a power-of-two array of 64-byte
//! entries, a probe window of [`PROBE`] slots, deletion by tombstone with trailing
//! tombstones folded back to empty. Expiry is lazy: an entry past its deadline is treated
//! as free by lookups and reused by inserts, so there is no sweeper thread and no work
//! proportional to the table. When an insert finds no free slot in its window the new
//! half-open flow is not tracked and counted; an established flow is never evicted.
//!
//! Rejected: `std::collections::HashMap` (allocates on growth and is unbounded), chaining
//! (allocation per entry), cuckoo hashing (two random cache misses on every lookup miss,
//! which is the common case under a flood).

use weir_wire::tcp_flags::{ACK, FIN, RST, SYN};

/// Slots probed from an entry's home slot.
pub const PROBE: usize = 16;

/// Idle lifetime of an established flow.
pub const ESTABLISHED_IDLE_NS: u64 = 300_000_000_000;
/// Idle lifetime of a half-open flow.
pub const HALF_OPEN_IDLE_NS: u64 = 5_000_000_000;
/// Lifetime after FIN was seen in both directions.
pub const FIN_LINGER_NS: u64 = 2_000_000_000;

pub use weir_model::FlowKey;

/// Slot states.
const EMPTY: u8 = 0;
const TOMBSTONE: u8 = 1;
const HALF_OPEN: u8 = 2;
const ESTABLISHED: u8 = 3;

/// FIN seen from the client / from the service.
const FIN_CLIENT: u8 = 1;
const FIN_SERVICE: u8 = 2;

#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct Entry {
    client: u128,
    service: u128,
    deadline_ns: u64,
    /// Half-open: the ack number that completes the handshake (SYN-ACK seq + 1).
    expect_ack: u32,
    client_port: u16,
    service_port: u16,
    worker: u16,
    state: u8,
    fins: u8,
}

const _: () = assert!(std::mem::size_of::<Entry>() == 64);

impl Entry {
    const VACANT: Entry = Entry {
        client: 0,
        service: 0,
        deadline_ns: 0,
        expect_ack: 0,
        client_port: 0,
        service_port: 0,
        worker: 0,
        state: EMPTY,
        fins: 0,
    };

    #[inline]
    fn is_live(&self, now_ns: u64) -> bool {
        self.state >= HALF_OPEN && self.deadline_ns > now_ns
    }

    #[inline]
    fn matches(&self, key: &FlowKey) -> bool {
        self.client == key.client
            && self.service == key.service
            && self.client_port == key.client_port
            && self.service_port == key.service_port
    }
}

/// What an inbound TCP segment is, seen against the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboundMatch {
    /// The flow is established (or this segment just completed it): known-good.
    Established {
        /// The worker that owns the flow.
        worker: u16,
    },
    /// No established flow.
    None,
}

/// Event counters of the table (not verdicts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowCounters {
    /// Half-open flows not tracked because the probe window was full.
    pub table_full: u64,
    /// Half-open entries created.
    pub half_open_created: u64,
    /// Flows that became established.
    pub established: u64,
    /// Flows removed by RST.
    pub reset: u64,
}

/// Occupancy counted a slice at a time: an rx core walks [`OccupancyWalk::STEP`] slots per
/// housekeeping tick instead of the whole table at once (a 1M-slot table is 64 MB: walking
/// it in one go stalled the rx core for milliseconds every 2 s, and under callgrind it was
/// a per-packet cost that was really a per-second one). The last complete sweep's counts
/// are what is reported.
#[derive(Debug, Clone, Copy, Default)]
pub struct OccupancyWalk {
    next: usize,
    half: usize,
    est: usize,
    /// (half-open, established) of the last complete sweep.
    pub last: (usize, usize),
}

impl OccupancyWalk {
    /// Slots per step.
    pub const STEP: usize = 8192;

    /// Walk the next slice of `table`; true when a sweep completed (and `last` changed).
    pub fn step(&mut self, table: &FlowTable, now_ns: u64) -> bool {
        let end = (self.next + Self::STEP).min(table.entries.len());
        let (h, e) = table.count_live(self.next..end, now_ns);
        self.half += h;
        self.est += e;
        self.next = end;
        if end < table.entries.len() {
            return false;
        }
        self.last = (self.half, self.est);
        *self = OccupancyWalk {
            last: self.last,
            ..OccupancyWalk::default()
        };
        true
    }
}

/// The bounded flow table.
#[derive(Debug)]
pub struct FlowTable {
    entries: Box<[Entry]>,
    mask: usize,
    seed: u64,
    counters: FlowCounters,
}

impl FlowTable {
    /// A table of at least `capacity` slots (rounded up to a power of two, at least
    /// [`PROBE`]). `seed` keys the slot hash.
    pub fn new(capacity: usize, seed: u64) -> FlowTable {
        let slots = capacity.max(PROBE).next_power_of_two();
        FlowTable {
            entries: crate::table::huge_table(slots, Entry::VACANT),
            mask: slots - 1,
            seed,
            counters: FlowCounters::default(),
        }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// Event counters.
    pub fn counters(&self) -> FlowCounters {
        self.counters
    }

    /// Live entries by state (half-open, established); walks the whole table, so this is
    /// for reports at the end, not the packet path (see [`OccupancyWalk`]).
    pub fn occupancy(&self, now_ns: u64) -> (usize, usize) {
        self.count_live(0..self.entries.len(), now_ns)
    }

    fn count_live(&self, range: std::ops::Range<usize>, now_ns: u64) -> (usize, usize) {
        let mut half = 0;
        let mut est = 0;
        let slots = self.entries.get(range).unwrap_or_default();
        for e in slots.iter().filter(|e| e.is_live(now_ns)) {
            if e.state == ESTABLISHED {
                est += 1;
            } else {
                half += 1;
            }
        }
        (half, est)
    }

    #[inline(always)]
    fn home(&self, key: &FlowKey) -> usize {
        // Xor-fold the key to 64 bits, then a full avalanche (the splitmix64 / murmur3
        // finalizer: every input bit reaches every output bit), a handful of instructions.
        // The fold is weak against chosen keys, which is fine here: an entry exists only
        // after a real handshake, so an attacker cannot choose the keys that fill a probe
        // window without completing that many connections, and the seed is secret.
        // (The first version ended in one multiply and a shift: a client's consecutive
        // ephemeral ports, which differ in their low byte, landed in the same probe
        // window, so one busy client filled it after 16 connections — measured as
        // `flow-table-full` with wrk at 15k connections/s through the TAP port.)
        let ports = (u64::from(key.client_port) << 16) | u64::from(key.service_port);
        let mut h = (key.client as u64)
            ^ ((key.client >> 64) as u64).rotate_left(32)
            ^ (key.service as u64).rotate_left(13)
            ^ ((key.service >> 64) as u64).rotate_left(45)
            ^ ports
            ^ self.seed;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^= h >> 33;
        h as usize & self.mask
    }

    /// Bring `key`'s home slot toward the cache (a hint; see `Classifier::prefetch`).
    #[inline]
    pub fn prefetch(&self, key: &FlowKey) {
        let e: *const Entry = &self.entries[self.home(key)];
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch is a hint that never faults; `e` points into the table.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(e.cast::<i8>())
        };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = e;
    }

    /// Index of the live entry for `key`, if any.
    #[inline(always)]
    fn find(&self, key: &FlowKey, now_ns: u64) -> Option<usize> {
        let home = self.home(key);
        for i in 0..PROBE {
            let idx = (home + i) & self.mask;
            let e = &self.entries[idx];
            if e.state == EMPTY {
                return None;
            }
            if e.state >= HALF_OPEN && e.matches(key) {
                return e.is_live(now_ns).then_some(idx);
            }
        }
        None
    }

    /// Remove the entry at `idx`, folding trailing tombstones back to empty so that
    /// lookups of absent keys stay short.
    fn remove_at(&mut self, idx: usize) {
        let next = (idx + 1) & self.mask;
        if self.entries[next].state == EMPTY {
            let mut i = idx;
            loop {
                self.entries[i] = Entry::VACANT;
                i = i.wrapping_sub(1) & self.mask;
                if self.entries[i].state != TOMBSTONE {
                    break;
                }
            }
        } else {
            self.entries[idx].state = TOMBSTONE;
        }
    }

    /// True when `key` is an established flow (no state change). Used for ICMPv6 error
    /// quotes and for the time-window rule exception.
    #[inline]
    pub fn established_worker(&self, key: &FlowKey, now_ns: u64) -> Option<u16> {
        let idx = self.find(key, now_ns)?;
        let e = &self.entries[idx];
        (e.state == ESTABLISHED).then_some(e.worker)
    }

    /// Apply an inbound (client → service) TCP segment. Always inlined: called once per
    /// TCP packet, its call and register saves cost ~16 instructions a packet (callgrind).
    #[inline(always)]
    pub fn inbound(&mut self, key: &FlowKey, flags: u8, ack: u32, now_ns: u64) -> InboundMatch {
        let Some(idx) = self.find(key, now_ns) else {
            return InboundMatch::None;
        };
        let e = &mut self.entries[idx];
        if e.state == HALF_OPEN {
            // "A client ACK (ACK set, SYN and RST clear) with ack = that SYN-ACK's
            // sequence + 1 makes the flow established; that ACK is itself known-good."
            if flags & (ACK | SYN | RST) == ACK && ack == e.expect_ack {
                e.state = ESTABLISHED;
                e.deadline_ns = now_ns.saturating_add(ESTABLISHED_IDLE_NS);
                self.counters.established += 1;
                let worker = e.worker;
                if flags & FIN != 0 {
                    self.note_fin(idx, FIN_CLIENT, now_ns);
                }
                return InboundMatch::Established { worker };
            }
            return InboundMatch::None;
        }
        let worker = e.worker;
        if flags & RST != 0 {
            // Known-good, and the flow is gone.
            self.counters.reset += 1;
            self.remove_at(idx);
        } else if flags & FIN != 0 {
            self.note_fin(idx, FIN_CLIENT, now_ns);
        } else {
            self.refresh(idx, now_ns);
        }
        InboundMatch::Established { worker }
    }

    #[inline]
    fn refresh(&mut self, idx: usize, now_ns: u64) {
        let e = &mut self.entries[idx];
        if e.fins != FIN_CLIENT | FIN_SERVICE {
            e.deadline_ns = now_ns.saturating_add(ESTABLISHED_IDLE_NS);
        }
    }

    fn note_fin(&mut self, idx: usize, side: u8, now_ns: u64) {
        let e = &mut self.entries[idx];
        let had_both = e.fins == FIN_CLIENT | FIN_SERVICE;
        e.fins |= side;
        if e.fins == FIN_CLIENT | FIN_SERVICE {
            if !had_both {
                e.deadline_ns = now_ns.saturating_add(FIN_LINGER_NS);
            }
        } else {
            e.deadline_ns = now_ns.saturating_add(ESTABLISHED_IDLE_NS);
        }
    }

    /// Apply an outbound (service → client) TCP segment seen on the tx path. `key` is
    /// written from the client's side. `worker` is the terminator that sent it.
    #[inline]
    pub fn outbound(&mut self, key: &FlowKey, flags: u8, seq: u32, worker: u16, now_ns: u64) {
        self.outbound_with(key, flags, seq, || worker, now_ns);
    }

    /// [`FlowTable::outbound`] with the worker found only when a SYN-ACK needs it (the
    /// only segment that can start an entry; the others keep their entry's worker).
    #[inline]
    pub fn outbound_with(
        &mut self,
        key: &FlowKey,
        flags: u8,
        seq: u32,
        worker: impl FnOnce() -> u16,
        now_ns: u64,
    ) {
        if flags & RST != 0 {
            if let Some(idx) = self.find(key, now_ns) {
                self.counters.reset += 1;
                self.remove_at(idx);
            }
            return;
        }
        if flags & (SYN | ACK) == SYN | ACK {
            self.syn_ack(key, seq, worker(), now_ns);
            return;
        }
        if let Some(idx) = self.find(key, now_ns) {
            if self.entries[idx].state == ESTABLISHED {
                if flags & FIN != 0 {
                    self.note_fin(idx, FIN_SERVICE, now_ns);
                } else {
                    self.refresh(idx, now_ns);
                }
            }
        }
    }

    fn syn_ack(&mut self, key: &FlowKey, seq: u32, worker: u16, now_ns: u64) {
        let home = self.home(key);
        let mut free = None;
        for i in 0..PROBE {
            let idx = (home + i) & self.mask;
            let e = &self.entries[idx];
            if e.state >= HALF_OPEN && e.matches(key) && e.is_live(now_ns) {
                // A SYN-ACK for a flow that was closing (a FIN seen) is a new connection on
                // the same addresses and ports — clients reuse ports quickly (measured: at
                // 20k connections/s from one client, the old entry lingering after its
                // FINs swallowed the new handshake and every later packet was `no-flow`).
                // The terminator accepted it, so the entry starts again half-open.
                if e.state == HALF_OPEN || e.fins != 0 {
                    // A retransmitted (or new) SYN-ACK: remember its sequence.
                    let e = &mut self.entries[idx];
                    e.state = HALF_OPEN;
                    e.fins = 0;
                    e.expect_ack = seq.wrapping_add(1);
                    e.deadline_ns = now_ns.saturating_add(HALF_OPEN_IDLE_NS);
                    e.worker = worker;
                }
                return;
            }
            if free.is_none() && !e.is_live(now_ns) {
                free = Some(idx);
            }
            if e.state == EMPTY {
                break;
            }
        }
        let Some(idx) = free else {
            self.counters.table_full += 1;
            return;
        };
        self.entries[idx] = Entry {
            client: key.client,
            service: key.service,
            deadline_ns: now_ns.saturating_add(HALF_OPEN_IDLE_NS),
            expect_ack: seq.wrapping_add(1),
            client_port: key.client_port,
            service_port: key.service_port,
            worker,
            state: HALF_OPEN,
            fins: 0,
        };
        self.counters.half_open_created += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u128) -> FlowKey {
        FlowKey {
            client: 0x2001_0db8_0000_0001_0000_0000_0000_0000 | n,
            service: 0x2001_0db8_0005_0000_0000_0000_0000_0001,
            client_port: 40000,
            service_port: 80,
        }
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn handshake_establishes_only_with_the_right_ack() {
        let mut t = FlowTable::new(1024, 7);
        let k = key(1);
        assert_eq!(t.inbound(&k, ACK, 1001, S), InboundMatch::None);
        t.outbound(&k, SYN | ACK, 1000, 3, S);
        assert_eq!(t.inbound(&k, ACK, 999, S), InboundMatch::None);
        assert_eq!(t.established_worker(&k, S), None);
        assert_eq!(
            t.inbound(&k, ACK, 1001, S),
            InboundMatch::Established { worker: 3 }
        );
        assert_eq!(t.established_worker(&k, S), Some(3));
        assert_eq!(t.occupancy(S), (0, 1));
        let mut walk = OccupancyWalk::default();
        let steps = (0..).take_while(|_| !walk.step(&t, S)).count();
        assert_eq!(steps, 1024usize.div_ceil(OccupancyWalk::STEP) - 1);
        assert_eq!(walk.last, (0, 1));
    }

    #[test]
    fn half_open_and_established_expire() {
        let mut t = FlowTable::new(64, 1);
        let k = key(2);
        t.outbound(&k, SYN | ACK, 5, 0, 0);
        assert_eq!(t.inbound(&k, ACK, 6, HALF_OPEN_IDLE_NS), InboundMatch::None);
        t.outbound(&k, SYN | ACK, 5, 0, 10 * S);
        assert!(matches!(
            t.inbound(&k, ACK, 6, 11 * S),
            InboundMatch::Established { .. }
        ));
        assert!(t
            .established_worker(&k, 11 * S + ESTABLISHED_IDLE_NS - 1)
            .is_some());
        assert!(t
            .established_worker(&k, 11 * S + ESTABLISHED_IDLE_NS)
            .is_none());
    }

    #[test]
    fn rst_removes_and_is_still_known_good() {
        let mut t = FlowTable::new(64, 1);
        let k = key(3);
        t.outbound(&k, SYN | ACK, 5, 1, S);
        t.inbound(&k, ACK, 6, S);
        assert_eq!(
            t.inbound(&k, RST | ACK, 6, S),
            InboundMatch::Established { worker: 1 }
        );
        assert_eq!(t.inbound(&k, ACK, 6, S), InboundMatch::None);
        // Outbound RST too.
        t.outbound(&k, SYN | ACK, 5, 1, S);
        t.inbound(&k, ACK, 6, S);
        t.outbound(&k, RST, 0, 1, S);
        assert_eq!(t.established_worker(&k, S), None);
    }

    #[test]
    fn fin_both_ways_lingers_two_seconds() {
        let mut t = FlowTable::new(64, 1);
        let k = key(4);
        t.outbound(&k, SYN | ACK, 5, 0, S);
        t.inbound(&k, ACK, 6, S);
        t.inbound(&k, FIN | ACK, 6, S);
        assert!(t.established_worker(&k, 100 * S).is_some());
        t.outbound(&k, FIN | ACK, 0, 0, 2 * S);
        assert!(t.established_worker(&k, 3 * S).is_some());
        // The client's last ACK does not extend the linger.
        t.inbound(&k, ACK, 7, 3 * S);
        assert!(t.established_worker(&k, 4 * S).is_none());
    }

    #[test]
    fn a_new_handshake_on_a_closing_flow_starts_over() {
        // The client reuses its port while the old connection lingers after its FINs.
        let mut t = FlowTable::new(64, 1);
        let k = key(5);
        t.outbound(&k, SYN | ACK, 5, 0, S);
        t.inbound(&k, ACK, 6, S);
        t.inbound(&k, FIN | ACK, 6, S);
        t.outbound(&k, FIN | ACK, 6, 0, S);
        // New connection, new server sequence: the entry is half-open again and the
        // client's ACK of the new SYN-ACK establishes it for the full idle time.
        t.outbound(&k, SYN | ACK, 9000, 1, S + 1);
        assert!(
            t.established_worker(&k, S + 1).is_none(),
            "half-open, not established"
        );
        assert_eq!(
            t.inbound(&k, ACK, 9001, S + 2),
            InboundMatch::Established { worker: 1 }
        );
        assert!(
            t.established_worker(&k, 100 * S).is_some(),
            "no 2 s linger any more"
        );
        // A SYN-ACK for an established flow that is not closing changes nothing.
        t.outbound(&k, SYN | ACK, 1, 0, 100 * S);
        assert_eq!(t.established_worker(&k, 100 * S), Some(1));
    }

    #[test]
    fn one_client_with_many_ports_spreads_over_the_table() {
        // wrk, a browser or a proxy: one address, consecutive ephemeral ports.
        let mut t = FlowTable::new(1 << 16, 3);
        for port in 32_768..32_768 + 8192u16 {
            let k = FlowKey {
                client_port: port,
                ..key(1)
            };
            t.outbound(&k, SYN | ACK, 1, 0, S);
            t.inbound(&k, ACK, 2, S);
        }
        assert_eq!(t.counters().table_full, 0);
        assert_eq!(t.counters().established, 8192);
    }

    #[test]
    fn full_window_counts_and_never_evicts_established() {
        // 16 slots = one probe window: every key collides into it.
        let mut t = FlowTable::new(PROBE, 9);
        for n in 0..PROBE as u128 {
            t.outbound(&key(n), SYN | ACK, 1, 0, S);
            t.inbound(&key(n), ACK, 2, S);
        }
        t.outbound(&key(999), SYN | ACK, 1, 0, S);
        assert_eq!(t.counters().table_full, 1);
        for n in 0..PROBE as u128 {
            assert!(t.established_worker(&key(n), S).is_some());
        }
        // Once one expires its slot is reused.
        assert_eq!(t.occupancy(S), (0, PROBE));
        let later = S + ESTABLISHED_IDLE_NS;
        t.outbound(&key(999), SYN | ACK, 1, 0, later);
        assert_eq!(t.counters().table_full, 1);
    }

    #[test]
    fn tombstones_fold_back() {
        let mut t = FlowTable::new(1 << 10, 3);
        for n in 0..200 {
            t.outbound(&key(n), SYN | ACK, 1, 0, S);
        }
        for n in 0..200 {
            t.outbound(&key(n), RST, 0, 0, S);
        }
        assert!(t.entries.iter().all(|e| e.state == EMPTY));
    }
}
