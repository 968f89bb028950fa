/*
 * Out-of-line copies of the DPDK `static inline` functions and macros that
 * accel uses, so Rust can call them. Each accel_NAME behaves exactly as
 * DPDK's NAME (the Rust crate re-exports it as NAME); bindgen reads this
 * header after the DPDK headers it wraps.
 */
#ifndef ACCEL_DPDK_SHIM_H
#define ACCEL_DPDK_SHIM_H

#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_log.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_bus_vdev.h>
#include <rte_dev.h>
#include <rte_thash.h>

uint16_t accel_rte_eth_rx_burst(uint16_t port_id, uint16_t queue_id,
                                struct rte_mbuf **rx_pkts, uint16_t nb_pkts);
uint16_t accel_rte_eth_tx_burst(uint16_t port_id, uint16_t queue_id,
                                struct rte_mbuf **tx_pkts, uint16_t nb_pkts);
uint16_t accel_rte_eth_tx_prepare(uint16_t port_id, uint16_t queue_id,
                                  struct rte_mbuf **tx_pkts, uint16_t nb_pkts);
struct rte_mbuf *accel_rte_pktmbuf_alloc(struct rte_mempool *mp);
int accel_rte_pktmbuf_alloc_bulk(struct rte_mempool *pool,
                                 struct rte_mbuf **mbufs, unsigned count);
void accel_rte_pktmbuf_free(struct rte_mbuf *m);
void accel_rte_pktmbuf_free_bulk(struct rte_mbuf **mbufs, unsigned count);
void accel_rte_pktmbuf_reset(struct rte_mbuf *m);
/* rte_pktmbuf_mtod(m, void *): the first data byte of the first segment. */
void *accel_rte_pktmbuf_mtod(struct rte_mbuf *m);
char *accel_rte_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
char *accel_rte_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len);
char *accel_rte_pktmbuf_adj(struct rte_mbuf *m, uint16_t len);
int accel_rte_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);
uint16_t accel_rte_pktmbuf_data_len(const struct rte_mbuf *m);
uint32_t accel_rte_pktmbuf_pkt_len(const struct rte_mbuf *m);
uint16_t accel_rte_pktmbuf_headroom(const struct rte_mbuf *m);
uint16_t accel_rte_pktmbuf_tailroom(const struct rte_mbuf *m);
unsigned accel_rte_lcore_id(void);
/* The calling thread's rte_errno. */
int accel_rte_errno(void);
/*
 * Not a DPDK function: requests transmit offloads for `m` (ORs `ol_flags`
 * into m->ol_flags and sets m->l2_len and m->l3_len), which Rust cannot
 * reach portably (they are bit-fields inside an anonymous union).
 */
void accel_mbuf_set_tx_offload(struct rte_mbuf *m, uint64_t ol_flags,
                               uint8_t l2_len, uint16_t l3_len);
/*
 * Not a DPDK function: a write-only stdio stream that hands every write to
 * `write(cookie, buf, size)` (glibc's fopencookie), for rte_openlog_stream.
 * NULL on failure (errno set).
 */
FILE *accel_log_stream_open(ssize_t (*write)(void *cookie, const char *buf, size_t size),
                            void *cookie);
/* Sets the calling thread's rte_errno (tests use it to check rte_strerror). */
void accel_rte_errno_set(int value);
/*
 * rte_softrss: the Toeplitz hash of `input_len` 32-bit words of
 * `input_tuple` (host order; rte_ipv4_tuple's layout) under the
 * `rss_key` (40 bytes for IPv4), as a NIC computes it.
 */
uint32_t accel_rte_softrss(uint32_t *input_tuple, uint32_t input_len, const uint8_t *rss_key);
/*
 * rte_mempool_get_ops(mp->ops_index)->name: the name of the handler that
 * holds the pool's free objects ("ring_mp_mc", "ring_mt_rts", ...).
 */
const char *accel_rte_mempool_ops_name(const struct rte_mempool *mp);

#endif
