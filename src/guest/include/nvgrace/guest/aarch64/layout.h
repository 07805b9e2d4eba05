/* arm64 guest: memory map and report channel (an MMIO page). The map follows
 * QEMU's virt machine where it can: RAM at 1 GiB, the high ECAM at 256 GiB +
 * 256 MiB, the 64-bit PCIe window naturally aligned after it and sized by the
 * guest plan (R25, R32). */
#ifndef NVGRACE_GUEST_AARCH64_LAYOUT_H
#define NVGRACE_GUEST_AARCH64_LAYOUT_H

#define NVG_RAM_BASE 0x40000000ull
/* Offsets into RAM. The host builds the first translation tables (4 KiB
 * granule, 48-bit VA, RAM and the report page mapped) before the vCPU runs. */
#define NVG_PT_L0_ADDR (NVG_RAM_BASE + 0x1000ull)
#define NVG_PT_L1_LOW_ADDR (NVG_RAM_BASE + 0x2000ull) /* L1 for 0..512 GiB */
#define NVG_PT_L2_DEV_ADDR (NVG_RAM_BASE + 0x3000ull) /* L2 for 0..1 GiB: the report page */
#define NVG_PT_L2_RAM_ADDR (NVG_RAM_BASE + 0x4000ull) /* L2 for 1..2 GiB: RAM */
#define NVG_BOOT_INFO_ADDR (NVG_RAM_BASE + 0x5000ull)
#define NVG_PT_POOL_BASE (NVG_RAM_BASE + 0x10000ull) /* tables the guest allocates */
#define NVG_PT_POOL_END (NVG_RAM_BASE + 0x80000ull)
#define NVG_STACK_TOP (NVG_RAM_BASE + 0xFF000ull)
#define NVG_LOAD_ADDR (NVG_RAM_BASE + 0x100000ull) /* the guest image */
#define NVG_MAX_RAM (1ull << 30)                      /* RAM ends below 2 GiB: one L2 table maps it */

#define NVG_ECAM_BASE 0x4010000000ull /* 256 GiB + 256 MiB, 256 MiB: buses 0..255 (bus 0 decodes) */
#define NVG_ECAM_SIZE 0x10000000ull

/* The report page: 32-bit stores. */
#define NVG_REPORT_BASE 0x09000000ull
#define NVG_REPORT_CHAR 0x0 /* one byte of report text */
#define NVG_REPORT_DONE 0x4 /* number of failed checks; the guest then powers off (PSCI SYSTEM_OFF) */
#define NVG_REPORT_NULL 0x8 /* reads 0, does nothing: the cost of a bare MMIO exit */

/* MAIR_EL1 attribute indices the guest's stage-1 tables use (R33). */
#define NVG_MAIR_WB 0     /* Normal write-back: RAM, BAR4 usemem */
#define NVG_MAIR_NC 1     /* Normal non-cacheable: BAR2 resmem */
#define NVG_MAIR_DEVICE 2 /* Device-nGnRE: BAR0, ECAM, the report page */
#define NVG_MAIR_VALUE 0x0444FFull

#endif
