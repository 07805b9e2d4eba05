/* The x86-64 half of the built-in guest: entered in 64-bit long mode with the
 * first 1 GiB identity mapped in 2 MiB pages (the runner sets that up); maps
 * whatever else it touches itself, with 2 MiB pages only (1 GiB pages crash
 * this project's CI machine's paravirtual KVM); reaches the config space
 * through 0xCF8/0xCFC and reports on I/O ports. */
#include "../arch.h"
#include "nvgrace/guest/x86_64/layout.h"

__asm__(".section .text.entry\n"
        ".global _start\n"
        "_start:\n"
        "  call guest_main\n"
        "1: hlt\n"
        "  jmp 1b\n"
        ".text\n");

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outw(u16 port, u16 v) { __asm__ volatile("outw %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u16 inw(u16 port) { u16 v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u32 inl(u16 port) { u32 v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }

void arch_putc(char c) { outb(NVG_PORT_DEBUG, (u8)c); }
void arch_done(u32 failures) { outl(NVG_PORT_DONE, failures); } /* _start then halts */

u64 arch_read64(u64 a) { return *(volatile u64*)a; }
void arch_write64(u64 a, u64 v) { *(volatile u64*)a = v; }
u32 arch_read32(u64 a) { return *(volatile u32*)a; }

u64 arch_cycles(void) { u32 lo, hi; __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi)); return (u64)hi << 32 | lo; }

/* --- configuration mechanism #1 (PCI Local Bus 3.0, 3.2.2.3.2) -------------- */
const char arch_cfg_mechanism[] = "0xCF8/0xCFC";
const int arch_has_separate_ecam = 1;
static u32 cf8(u32 devfn, u32 reg) { return 0x80000000u | devfn << 8 | (reg & 0xFC); }
static inline u32 in_sized(u16 port, unsigned len) { return len == 4 ? inl(port) : len == 2 ? inw(port) : inb(port); }
u32 arch_cfg_read(u32 devfn, u32 reg, unsigned len) {
  outl(NVG_PORT_CONFIG_ADDRESS, cf8(devfn, reg));
  return in_sized((u16)(NVG_PORT_CONFIG_DATA + (reg & 3)), len);
}
void arch_cfg_write(u32 devfn, u32 reg, unsigned len, u32 v) {
  outl(NVG_PORT_CONFIG_ADDRESS, cf8(devfn, reg));
  const u16 port = (u16)(NVG_PORT_CONFIG_DATA + (reg & 3));
  if (len == 4) outl(port, v);
  else if (len == 2) outw(port, (u16)v);
  else outb(port, (u8)v);
}
u32 arch_null_read(u32 devfn, u32 reg, unsigned len) {
  outl(NVG_PORT_CONFIG_ADDRESS, cf8(devfn, reg));
  return in_sized((u16)(NVG_PORT_NULL + (reg & 3)), len);
}

/* --- paging: identity-map 2 MiB pages on demand ----------------------------- */
static u64 pool_next = NVG_PT_POOL_BASE;
static u64* table_at(u64* entry) {
  if (!(*entry & 1)) {
    if (pool_next >= NVG_PT_POOL_END) { put("FAIL page-table pool exhausted\n"); outl(NVG_PORT_DONE, 1); for (;;) __asm__ volatile("hlt"); }
    memset((void*)pool_next, 0, 4096);
    *entry = pool_next | 3; /* present, writable */
    pool_next += 4096;
  }
  return (u64*)(*entry & 0x000FFFFFFFFFF000ull);
}
static void map_2m(u64 a) {
  a &= ~0x1FFFFFull;
  u64* pdpt = table_at(&((u64*)NVG_PML4_ADDR)[(a >> 39) & 511]);
  u64* pd = table_at(&pdpt[(a >> 30) & 511]);
  u64* pde = &pd[(a >> 21) & 511];
  if (!(*pde & 1)) {
    *pde = a | 0x83; /* present, writable, 2 MiB */
    __asm__ volatile("invlpg (%0)" ::"r"(a) : "memory");
  }
}
void arch_map(u64 a, u64 len, enum nvg_attr attr) {
  (void)attr; /* everything write-back: MTRRs default WB, PAT at reset */
  for (u64 p = a & ~0x1FFFFFull; p < a + len; p += 0x200000) map_2m(p);
}

void arch_init(struct nvg_boot_info* bi) { (void)bi; /* the runner set up everything this guest needs */ }

/* The vCPU checks are arm64's (SVE, SME, ID registers: R34-R36); the x86
 * guest runs on the CPUID KVM supports, unmodified. */
void arch_cpu_checks(struct nvg_boot_info* bi) { (void)bi; }
