/* x86-64 guest: memory map and report channel (port I/O). */
#ifndef NVGRACE_GUEST_X86_64_LAYOUT_H
#define NVGRACE_GUEST_X86_64_LAYOUT_H

/* Guest physical memory (RAM from 0, identity mapped by the guest). */
#define NVG_RAM_BASE 0x0ull
#define NVG_GDT_ADDR 0x500ull
#define NVG_PML4_ADDR 0x1000ull
#define NVG_PDPT_ADDR 0x2000ull
#define NVG_PD_ADDR 0x3000ull /* maps the first 1 GiB with 2 MiB pages */
#define NVG_BOOT_INFO_ADDR 0x5000ull
#define NVG_PT_POOL_BASE 0x10000ull /* page-table pages the guest allocates */
#define NVG_PT_POOL_END 0x80000ull
#define NVG_STACK_TOP 0xFF000ull
#define NVG_LOAD_ADDR 0x100000ull /* the guest image */
#define NVG_ECAM_BASE 0xB0000000ull /* bus 0 only: 1 MiB */
#define NVG_MMIO64_BASE 0x10000000000ull /* 1 TiB: where the guest assigns 64-bit BARs */

/* I/O ports. */
#define NVG_PORT_CONFIG_ADDRESS 0xCF8
#define NVG_PORT_CONFIG_DATA 0xCFC
#define NVG_PORT_DEBUG 0x402 /* one byte of report text per OUT */
#define NVG_PORT_DONE 0x404  /* 32-bit OUT: number of failed checks; the guest then halts */
#define NVG_PORT_NULL 0x406  /* ..0x409: does nothing, the cost of a bare port-I/O exit */

#endif
