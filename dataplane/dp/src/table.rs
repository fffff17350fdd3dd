//! Memory for the rx core's big tables (the flow table, the rate meter): allocated once,
//! asking the kernel for transparent huge pages.
//!
//! A lookup lands on a random slot of a table that is 64 MB by default. On 4 KiB pages
//! that is a TLB miss on nearly every packet — under a hypervisor a two-dimensional page
//! walk — which perf showed as ~40% of the rx lcore's cycles on the instruction after the
//! flow table's prefetch (`scripts/bench-vs-testpmd.sh`, `--no-huge`). On 2 MiB pages the
//! whole default table needs 32 TLB entries. With `transparent_hugepage` set to `madvise`
//! (Debian's default) the kernel gives them only to ranges that ask, before their pages are
//! first touched; with `never` the request is refused and the table works on small pages
//! as before (nothing else changes). DPDK's hugepages are for mbufs; these tables are the
//! process's own memory, so they take this route in every mode, replay included.

/// Huge page size asked for.
const HUGE: usize = 2 << 20;

/// A table of `n` copies of `fill`, its memory marked for huge pages before it is first
/// written (so the pages the fill touches are huge ones where the kernel allows).
pub fn huge_table<T: Clone>(n: usize, fill: T) -> Box<[T]> {
    let mut v: Vec<T> = Vec::with_capacity(n);
    advise_huge(
        v.as_mut_ptr().cast::<u8>(),
        n.saturating_mul(std::mem::size_of::<T>()),
    );
    v.resize(n, fill);
    v.into_boxed_slice()
}

/// Ask for huge pages on the 2 MiB-aligned part of `[ptr, ptr + len)` (a hint; refused
/// quietly where transparent huge pages are off or unsupported).
fn advise_huge(ptr: *mut u8, len: usize) {
    let start = (ptr as usize).next_multiple_of(HUGE);
    let end = (ptr as usize).saturating_add(len) / HUGE * HUGE;
    if end <= start {
        return;
    }
    #[cfg(target_os = "linux")]
    // SAFETY: `[start, end)` is page-aligned and inside an allocation this function's caller
    // owns and has not yet initialised; MADV_HUGEPAGE only changes how the kernel backs
    // those pages (never their contents or validity), and its failure is harmless.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_table_holds_its_fill_at_every_size() {
        for n in [0usize, 1, 1000, (HUGE / 64) * 3 + 7] {
            let t = huge_table(n, [7u8; 64]);
            assert_eq!(t.len(), n);
            assert!(t.iter().all(|e| *e == [7u8; 64]));
        }
    }
}
