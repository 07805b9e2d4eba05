/* The contract between nvgrace's runner (host) and its built-in guest.
 * C and C++ include this; plain integers only. */
#ifndef NVGRACE_GUEST_PROTOCOL_H
#define NVGRACE_GUEST_PROTOCOL_H

#include <stdint.h>

/* Guest physical memory layout (identity mapped by the guest). */
#define NVG_GDT_ADDR 0x500ull
#define NVG_PML4_ADDR 0x1000ull
#define NVG_PDPT_ADDR 0x2000ull
#define NVG_PD_ADDR 0x3000ull /* maps the first 1 GiB with 2 MiB pages */
#define NVG_BOOT_INFO_ADDR 0x5000ull
#define NVG_PT_POOL_BASE 0x10000ull /* page-table pages the guest allocates */
#define NVG_PT_POOL_END 0x80000ull
#define NVG_STACK_TOP 0xFF000ull
#define NVG_LOAD_ADDR 0x100000ull /* the guest image */
#define NVG_BENCH_RAM 0x1000000ull /* 16 MiB..: RAM the benchmark writes */

/* I/O ports. */
#define NVG_PORT_CONFIG_ADDRESS 0xCF8
#define NVG_PORT_CONFIG_DATA 0xCFC
#define NVG_PORT_DEBUG 0x402 /* one byte of report text per OUT */
#define NVG_PORT_DONE 0x404  /* 32-bit OUT: number of failed checks; the guest then halts */
#define NVG_PORT_NULL 0x406  /* does nothing: the cost of a bare port-I/O exit */

#define NVG_BOOT_MAGIC 0x5247564Eu /* "NVGR" */
#define NVG_MAX_GPUS 8

#define NVG_MODE_CHECKS 0
#define NVG_MODE_BENCH 1

struct nvg_gpu_plan {
  uint32_t devfn;      /* bus 0 device/function of this GPU */
  uint16_t device_id;  /* expected PCI device id */
  uint16_t pad;
  uint64_t usemem_len; /* bytes of memory behind BAR4 */
  uint64_t resmem_len; /* bytes behind BAR2; 0: BAR2 is the device's own */
  uint64_t bar_size[6]; /* expected sizes of BAR0, BAR2, BAR4 (index 0, 2, 4) */
};

struct nvg_boot_info {
  uint32_t magic;
  uint32_t ngpus;
  uint64_t ecam_base;   /* bus 0 of the ECAM window */
  uint64_t mmio64_base; /* where the guest assigns 64-bit BARs */
  uint64_t mmio64_limit;
  uint64_t ram_size;
  uint32_t mode;        /* NVG_MODE_* */
  uint32_t bench_mib;   /* bench: MiB written to BAR4 and to RAM */
  uint32_t bench_iters; /* bench: port-I/O round trips */
  uint32_t pad;
  struct nvg_gpu_plan gpu[NVG_MAX_GPUS];
};

/* The values the guest leaves in device memory for the host to find. */
#define NVG_HOST_CHECK_USEMEM_OFFSET 0x2000ull
#define NVG_HOST_CHECK_RESMEM_OFFSET 0x3000ull
#define NVG_HOST_CHECK_VALUE(gpu, bar) (0xC0FFEE0000000000ull | ((uint64_t)(gpu) << 8) | (uint64_t)(bar))

/* The pattern the guest writes at offset `off` of BAR `bar` of GPU `gpu`. */
static inline uint64_t nvg_pattern(unsigned gpu, unsigned bar, uint64_t off) {
  return 0x9E3779B97F4A7C15ull * (off + 1) ^ ((uint64_t)gpu << 56) ^ ((uint64_t)bar << 48);
}

#endif
