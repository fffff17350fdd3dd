/* One exported function per DPDK static inline (or thread-local macro) that weir calls.
 *
 * Rust cannot call a `static inline` function: it has no symbol. Each wrapper here is the
 * inline's body compiled once, so the Rust side pays one call. The packet path uses only
 * `weir_rx_burst`/`weir_tx_burst` (once per burst), `weir_pktmbuf_free_many` (once per batch
 * of mbufs freed together) and `weir_pktmbuf_free` (once per packet freed alone). The
 * mbuf fields themselves (data pointer, lengths, flags, dynfields) are read in Rust through
 * the bindgen layout, without a call. */
#define ALLOW_EXPERIMENTAL_API 1
#include <rte_config.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_ethdev.h>

#include "shim.h"

/* rte_eth_rx_burst: receive up to nb_pkts packets from a started queue. */
uint16_t weir_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **rx_pkts,
                       uint16_t nb_pkts)
{
	return rte_eth_rx_burst(port_id, queue_id, rx_pkts, nb_pkts);
}

/* rte_eth_tx_burst: queue up to nb_pkts packets; ownership of the first n returned passes
 * to the driver. */
uint16_t weir_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **tx_pkts,
                       uint16_t nb_pkts)
{
	return rte_eth_tx_burst(port_id, queue_id, tx_pkts, nb_pkts);
}

/* rte_pktmbuf_alloc: one reset mbuf from the pool, or NULL when it is empty. */
struct rte_mbuf *weir_pktmbuf_alloc(struct rte_mempool *mp)
{
	return rte_pktmbuf_alloc(mp);
}

/* rte_pktmbuf_free: give a packet (every segment) back to its pool; NULL is ignored. */
void weir_pktmbuf_free(struct rte_mbuf *m)
{
	rte_pktmbuf_free(m);
}

/* Free n owned mbufs. The common case, where every mbuf is direct (no attached or external
 * buffer), unshared (refcnt 1), one segment and from one pool, goes back to that pool's
 * per-lcore cache in one rte_mempool_put_bulk: what rte_pktmbuf_free_bulk ends in after
 * rte_pktmbuf_prefree_seg finds nothing to undo for each mbuf, without its per-mbuf pending
 * array and pool comparisons (52 instructions an mbuf under callgrind). Any other mbuf
 * sends the whole batch through rte_pktmbuf_free_bulk. */
void weir_pktmbuf_free_many(struct rte_mbuf **mbufs, unsigned int n)
{
	if (n == 0)
		return;
	struct rte_mempool *mp = mbufs[0]->pool;
	unsigned int i;
	for (i = 0; i < n; i++) {
		const struct rte_mbuf *m = mbufs[i];
		if (unlikely(m->pool != mp || !RTE_MBUF_DIRECT(m) || m->nb_segs != 1 ||
			     rte_mbuf_refcnt_read(m) != 1 || m->next != NULL)) {
			rte_pktmbuf_free_bulk(mbufs, n);
			return;
		}
	}
	rte_mempool_put_bulk(mp, (void **)mbufs, n);
}

/* rte_pktmbuf_append: grow the last segment by len bytes; NULL when the tailroom is short. */
char *weir_pktmbuf_append(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_append(m, len);
}

/* rte_lcore_id: the calling thread's lcore, LCORE_ID_ANY (UINT32_MAX) outside EAL threads.
 * It reads a thread-local variable, which Rust must not bind directly. */
unsigned int weir_lcore_id(void)
{
	return rte_lcore_id();
}

/* rte_errno: the calling thread's last DPDK error (a thread-local macro). */
int weir_errno(void)
{
	return rte_errno;
}
