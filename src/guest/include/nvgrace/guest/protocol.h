/* The contract between nvgrace's runner (host) and its built-in guests, one
 * per architecture (x86_64/, aarch64/), which share the checks (checks.c).
 * C and C++ include this; plain integers only. Each architecture's memory
 * map and report channel are in <arch>/layout.h. */
#ifndef NVGRACE_GUEST_PROTOCOL_H
#define NVGRACE_GUEST_PROTOCOL_H

#include <stdint.h>

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

/* arm64: the ID registers the guest reads with MRS and leaves for the host
 * to check against the CPU model (R35, R36), in this order. */
enum nvg_idreg {
  NVG_IDREG_MIDR, NVG_IDREG_PFR0, NVG_IDREG_PFR1, NVG_IDREG_PFR2, NVG_IDREG_ZFR0, NVG_IDREG_SMFR0,
  NVG_IDREG_DFR0, NVG_IDREG_ISAR0, NVG_IDREG_ISAR1, NVG_IDREG_ISAR2, NVG_IDREG_ISAR3, NVG_IDREG_MMFR0,
  NVG_IDREG_MMFR1, NVG_IDREG_MMFR2, NVG_IDREG_MMFR3, NVG_IDREG_MMFR4, NVG_IDREG_COUNT
};

/* arm64: the vCPU as the host set it up (R34). */
struct nvg_cpu_info {
  uint32_t sve_vl_bytes;  /* expected vector length; 0: no SVE */
  uint32_t zreg;          /* the Z register the guest fills with nvg_zreg_byte() */
  uint64_t idreg[NVG_IDREG_COUNT]; /* written by the guest: what MRS read */
  uint32_t idregs_read;   /* written by the guest: 1 once idreg[] is filled */
  uint32_t pad;
};

struct nvg_boot_info {
  uint32_t magic;
  uint32_t ngpus;
  uint64_t ecam_base;   /* bus 0 of the ECAM window */
  uint64_t mmio64_base; /* where the guest assigns 64-bit BARs */
  uint64_t mmio64_limit; /* end of that window (exclusive) */
  uint64_t ram_base;
  uint64_t ram_size;
  uint32_t mode;        /* NVG_MODE_* */
  uint32_t bench_mib;   /* bench: MiB written to BAR4 and to RAM */
  uint32_t bench_iters; /* bench: config reads and null exits, each */
  uint32_t pad;
  struct nvg_cpu_info cpu;
  struct nvg_gpu_plan gpu[NVG_MAX_GPUS];
};

/* The benchmark writes RAM from here (an offset into RAM). */
#define NVG_BENCH_RAM_OFFSET 0x1000000ull
#define NVG_BENCH_RAM_ADDR(bi) ((bi)->ram_base + NVG_BENCH_RAM_OFFSET)

/* The values the guest leaves in device memory for the host to find. */
#define NVG_HOST_CHECK_USEMEM_OFFSET 0x2000ull
#define NVG_HOST_CHECK_RESMEM_OFFSET 0x3000ull
#define NVG_HOST_CHECK_VALUE(gpu, bar) (0xC0FFEE0000000000ull | ((uint64_t)(gpu) << 8) | (uint64_t)(bar))

/* The pattern the guest writes at offset `off` of BAR `bar` of GPU `gpu`. */
static inline uint64_t nvg_pattern(unsigned gpu, unsigned bar, uint64_t off) {
  return 0x9E3779B97F4A7C15ull * (off + 1) ^ ((uint64_t)gpu << 56) ^ ((uint64_t)bar << 48);
}

/* arm64: byte i of the Z register the guest fills (R34). */
static inline uint8_t nvg_zreg_byte(unsigned i) { return (uint8_t)(0xA5u ^ (i * 37u)); }

#endif
