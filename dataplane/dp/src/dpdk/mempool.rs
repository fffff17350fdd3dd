//! Mbuf pools: a cloneable handle to an `rte_pktmbuf_pool`, freed when the last handle goes
//! and every mbuf is back.

use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::Arc;

use weir_ffi::rte_mempool;

use super::{eal, errno, strerror, DpdkError};

/// The data room of DPDK's default mbuf: 128 bytes of headroom and 2048 for the frame.
pub const DEFAULT_DATA_ROOM: u16 = 2176;

const _: () = assert!(DEFAULT_DATA_ROOM as u32 == weir_ffi::RTE_MBUF_DEFAULT_BUF_SIZE);

/// The longest pool name: the pool's ring is named "MP_<name>" and ring names hold 28 bytes
/// (`RTE_RING_NAMESIZE` − 1, a macro bindgen cannot evaluate).
const MAX_NAME: usize = 25;

/// A pool of packet mbufs; clones share it.
#[derive(Clone, Debug)]
pub struct Mempool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    ptr: NonNull<rte_mempool>,
    name: String,
    capacity: u32,
}

// SAFETY: an rte_mempool is built for use from many threads: gets and puts go through
// per-lcore caches (EAL threads) or the lock-free ring (others), and the counters read by
// available/in_use are plain loads. The pointer is freed only in Drop, with exclusive access.
unsafe impl Send for Inner {}
// SAFETY: as above; no method takes the pool's memory by `&mut`.
unsafe impl Sync for Inner {}

impl Mempool {
    /// Create a pool of `mbufs` mbufs with a per-lcore cache of `cache` and `data_room`
    /// bytes per mbuf (headroom included: [`DEFAULT_DATA_ROOM`] for 2048-byte frames).
    ///
    /// Without hugepages (`--no-huge`) each mbuf takes about 4 KB of the EAL's `-m` memory.
    pub fn new(name: &str, mbufs: u32, cache: u32, data_room: u16) -> Result<Mempool, DpdkError> {
        eal::ensure()?;
        let err = |why| DpdkError::InvalidName {
            what: "mempool name",
            value: name.to_owned(),
            why,
        };
        if name.len() > MAX_NAME {
            return Err(err(
                "longer than 25 bytes (its ring is named \"MP_<name>\" in 29)",
            ));
        }
        let cname = CString::new(name).map_err(|_| err("contains a NUL byte"))?;
        // SAFETY: cname is NUL-terminated and the EAL runs; the call copies the name.
        let ptr = unsafe {
            weir_ffi::rte_pktmbuf_pool_create(
                cname.as_ptr(),
                mbufs,
                cache,
                0,
                data_room,
                weir_ffi::SOCKET_ID_ANY,
            )
        };
        let Some(ptr) = NonNull::new(ptr) else {
            let code = errno();
            return Err(DpdkError::Mempool {
                name: name.to_owned(),
                mbufs,
                cache,
                data_room,
                code,
                text: strerror(code),
            });
        };
        Ok(Mempool {
            inner: Arc::new(Inner {
                ptr,
                name: name.to_owned(),
                capacity: mbufs,
            }),
        })
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// How many mbufs the pool holds in all.
    pub fn capacity(&self) -> u32 {
        self.inner.capacity
    }

    /// Mbufs free to allocate, including those parked in per-lcore caches.
    pub fn available(&self) -> u32 {
        self.inner.available()
    }

    /// Mbufs allocated and not yet given back.
    pub fn in_use(&self) -> u32 {
        // SAFETY: the pool is live while self holds the Arc.
        unsafe { weir_ffi::rte_mempool_in_use_count(self.inner.ptr.as_ptr()) }
    }

    /// The raw pool, for queue setup and allocation.
    pub fn as_ptr(&self) -> *mut rte_mempool {
        self.inner.ptr.as_ptr()
    }
}

impl Inner {
    fn available(&self) -> u32 {
        // SAFETY: the pool is live until Drop of self.
        unsafe { weir_ffi::rte_mempool_avail_count(self.ptr.as_ptr()) }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let available = self.available();
        if available == self.capacity {
            // SAFETY: this is the last handle (Arc), and every mbuf is back in the pool, so
            // no Mbuf, queue or handle refers to its memory any more.
            unsafe { weir_ffi::rte_mempool_free(self.ptr.as_ptr()) };
        } else {
            tracing::warn!(
                pool = %self.name,
                available,
                capacity = self.capacity,
                "mbuf pool dropped while {} mbufs are still out; leaving it allocated",
                self.capacity - available
            );
        }
    }
}
