/* Exported wrappers for DPDK's static inline functions and thread-local macros.
 * Each is a plain call of the inline it is named after; see shim.c. */
#ifndef WEIR_SHIM_H
#define WEIR_SHIM_H

#include <stdint.h>

struct rte_mbuf;
struct rte_mempool;

uint16_t weir_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **rx_pkts,
                       uint16_t nb_pkts);
uint16_t weir_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **tx_pkts,
                       uint16_t nb_pkts);
struct rte_mbuf *weir_pktmbuf_alloc(struct rte_mempool *mp);
void weir_pktmbuf_free(struct rte_mbuf *m);
void weir_pktmbuf_free_many(struct rte_mbuf **mbufs, unsigned int n);
char *weir_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
unsigned int weir_lcore_id(void);
int weir_errno(void);

#endif
