/* nvgrace's built-in guest: does what firmware and a guest OS do with a Grace
 * GPU, and reports each check on the debug port (nvgrace-model.md R11-R13,
 * R17, R21-R22). Freestanding: no libc, entered in 64-bit long mode with the
 * first 1 GiB identity mapped in 2 MiB pages; it maps whatever else it
 * touches itself, with 2 MiB pages only (1 GiB pages crash this machine's
 * paravirtual KVM). */
#include "protocol.h"

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;

__asm__(".section .text.entry\n"
        ".global _start\n"
        "_start:\n"
        "  call guest_main\n"
        "1: hlt\n"
        "  jmp 1b\n"
        ".text\n");

/* The compiler may emit calls to these even in freestanding code. */
void* memset(void* d, int c, unsigned long n) {
  u8* p = d;
  while (n--) *p++ = (u8)c;
  return d;
}
void* memcpy(void* d, const void* s, unsigned long n) {
  u8* p = d;
  const u8* q = s;
  while (n--) *p++ = *q++;
  return d;
}

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outw(u16 port, u16 v) { __asm__ volatile("outw %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u16 inw(u16 port) { u16 v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u32 inl(u16 port) { u32 v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u64 rdtsc(void) { u32 lo, hi; __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi)); return (u64)hi << 32 | lo; }
static inline u64 rd64(u64 a) { return *(volatile u64*)a; }
static inline void wr64(u64 a, u64 v) { *(volatile u64*)a = v; }
static inline u32 rd32(u64 a) { return *(volatile u32*)a; }

/* --- report text --------------------------------------------------------- */
static void put(const char* s) { while (*s) outb(NVG_PORT_DEBUG, (u8)*s++); }
static void hex(u64 v) {
  char b[19];
  int i = 18;
  b[i] = 0;
  do { b[--i] = "0123456789abcdef"[v & 15]; v >>= 4; } while (v && i > 2);
  b[--i] = 'x';
  b[--i] = '0';
  put(b + i);
}
static void hex2(u32 v) {
  char b[3] = {"0123456789abcdef"[(v >> 4) & 15], "0123456789abcdef"[v & 15], 0};
  put(b);
}
static void dec(u64 v) {
  char b[21];
  int i = 20;
  b[i] = 0;
  do { b[--i] = (char)('0' + v % 10); v /= 10; } while (v);
  put(b + i);
}
static u32 failures;
static unsigned cur_gpu;
static void begin(int ok, const char* what) {
  if (!ok) ++failures;
  put(ok ? "ok   gpu" : "FAIL gpu");
  dec(cur_gpu);
  put(" ");
  put(what);
}
/* A check with two numbers: "<what> (expected X, got Y)". */
static void check(int ok, const char* what, u64 expected, u64 got) {
  begin(ok, what);
  if (!ok) { put(": expected "); hex(expected); put(", got "); hex(got); }
  put("\n");
}

/* --- paging: identity-map 2 MiB pages on demand --------------------------- */
static u64 pool_next = NVG_PT_POOL_BASE;
static u64* table_at(u64* entry) {
  if (!(*entry & 1)) {
    if (pool_next >= NVG_PT_POOL_END) { put("FAIL page-table pool exhausted\n"); outl(NVG_PORT_DONE, ++failures); for (;;) __asm__ volatile("hlt"); }
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
static void map(u64 a, u64 len) {
  for (u64 p = a & ~0x1FFFFFull; p < a + len; p += 0x200000) map_2m(p);
}

/* --- PCI configuration: mechanism #1 and ECAM ------------------------------ */
static u32 cf8(u32 devfn, u32 reg) { return 0x80000000u | devfn << 8 | (reg & 0xFC); }
static u32 cfg_read32(u32 devfn, u32 reg) { outl(NVG_PORT_CONFIG_ADDRESS, cf8(devfn, reg)); return inl(NVG_PORT_CONFIG_DATA); }
static u16 cfg_read16(u32 devfn, u32 reg) { outl(NVG_PORT_CONFIG_ADDRESS, cf8(devfn, reg)); return inw((u16)(NVG_PORT_CONFIG_DATA + (reg & 2))); }
static void cfg_write32(u32 devfn, u32 reg, u32 v) { outl(NVG_PORT_CONFIG_ADDRESS, cf8(devfn, reg)); outl(NVG_PORT_CONFIG_DATA, v); }
static void cfg_write16(u32 devfn, u32 reg, u16 v) { outl(NVG_PORT_CONFIG_ADDRESS, cf8(devfn, reg)); outw((u16)(NVG_PORT_CONFIG_DATA + (reg & 2)), v); }
static u64 ecam;
static u32 ecam_read32(u32 devfn, u32 reg) { return rd32(ecam + ((u64)devfn << 12) + reg); }

#define CMD_MEMORY 0x2
#define CMD_MASTER 0x4

static void set_decode(u32 devfn, int on) {
  u16 cmd = cfg_read16(devfn, 4);
  cfg_write16(devfn, 4, on ? (u16)(cmd | CMD_MEMORY | CMD_MASTER) : (u16)(cmd & ~CMD_MEMORY));
}

/* The standard sizing sequence on a 64-bit BAR, decode off while probing. */
static u64 size_bar(u32 devfn, u32 bar, u32* flags) {
  u32 reg = 0x10 + 4 * bar;
  u16 cmd = cfg_read16(devfn, 4);
  cfg_write16(devfn, 4, (u16)(cmd & ~CMD_MEMORY));
  u32 lo = cfg_read32(devfn, reg);
  cfg_write32(devfn, reg, 0xFFFFFFFF);
  u32 mlo = cfg_read32(devfn, reg);
  cfg_write32(devfn, reg, lo);
  u32 hi = cfg_read32(devfn, reg + 4);
  cfg_write32(devfn, reg + 4, 0xFFFFFFFF);
  u32 mhi = cfg_read32(devfn, reg + 4);
  cfg_write32(devfn, reg + 4, hi);
  cfg_write16(devfn, 4, cmd);
  *flags = mlo & 0xF;
  u64 mask = (u64)mhi << 32 | (mlo & ~0xFu);
  return ~mask + 1;
}
static void set_bar(u32 devfn, u32 bar, u64 addr) {
  cfg_write32(devfn, 0x10 + 4 * bar, (u32)addr);
  cfg_write32(devfn, 0x14 + 4 * bar, (u32)(addr >> 32));
}
static u64 get_bar(u32 devfn, u32 bar) {
  return ((u64)cfg_read32(devfn, 0x14 + 4 * bar) << 32 | cfg_read32(devfn, 0x10 + 4 * bar)) & ~0xFull;
}

#define pattern nvg_pattern

/* Writes a pattern at a few offsets of [0, len) of a BAR and reads it back. */
static void memory_checks(unsigned gpu, unsigned bar, u64 base, u64 len, const char* what) {
  const u64 offs[4] = {0, 0x1000, len / 2 & ~7ull, len - 8};
  int ok = 1;
  u64 bad_off = 0, got = 0, exp = 0;
  for (int i = 0; i < 4; ++i) { map(base + offs[i], 8); wr64(base + offs[i], pattern(gpu, bar, offs[i])); }
  for (int i = 0; i < 4; ++i) {
    u64 v = rd64(base + offs[i]);
    if (v != pattern(gpu, bar, offs[i]) && ok) { ok = 0; bad_off = offs[i]; got = v; exp = pattern(gpu, bar, offs[i]); }
  }
  begin(ok, what);
  if (!ok) { put(": at +"); hex(bad_off); put(" expected "); hex(exp); put(", got "); hex(got); }
  put("\n");
}

struct bar_slot { unsigned gpu; u32 bar; u64 size; };

static void run_checks(struct nvg_boot_info* bi) {
  /* Bus 0 scan: a host bridge at 00.0 and every planned GPU. */
  unsigned found = 0;
  for (u32 dev = 0; dev < 32; ++dev) {
    u32 id = cfg_read32(dev << 3, 0);
    if ((id & 0xFFFF) == 0xFFFF) continue;
    put("scan 00:"); hex2(dev); put(".0 id "); hex(id); put("\n");
    if ((id & 0xFFFF) == 0x10de) ++found;
  }
  cur_gpu = 0;
  check(found == bi->ngpus, "bus 0 scan finds every GPU", bi->ngpus, found);

  struct bar_slot slots[NVG_MAX_GPUS * 3];
  unsigned nslots = 0;
  for (unsigned g = 0; g < bi->ngpus; ++g) {
    cur_gpu = g;
    struct nvg_gpu_plan* p = &bi->gpu[g];
    u32 id = cfg_read32(p->devfn, 0);
    check(id == (0x10deu | (u32)p->device_id << 16), "vendor/device id via 0xCF8/0xCFC", 0x10deu | (u32)p->device_id << 16, id);
    check(ecam_read32(p->devfn, 0) == id, "vendor/device id via ECAM", id, ecam_read32(p->devfn, 0));
    check((ecam_read32(p->devfn, 0x100) & 0xFFFF) == 1, "extended config space via ECAM: AER at 0x100", 1,
          ecam_read32(p->devfn, 0x100) & 0xFFFF);
    for (u32 bar = 0; bar <= 4; bar += 2) {
      u32 flags;
      u64 size = size_bar(p->devfn, bar, &flags);
      begin(size == p->bar_size[bar] && flags == 0xC, bar == 0 ? "BAR0 sizes as 64-bit prefetchable" : bar == 2 ? "BAR2 sizes as 64-bit prefetchable" : "BAR4 sizes as 64-bit prefetchable");
      put(" ("); hex(size); put(")\n");
      if (size != p->bar_size[bar]) { put("     expected "); hex(p->bar_size[bar]); put("\n"); }
      slots[nslots].gpu = g; slots[nslots].bar = bar; slots[nslots].size = size; ++nslots;
    }
  }

  /* Firmware-style assignment: largest first, naturally aligned, above 4 GiB. */
  for (unsigned i = 0; i < nslots; ++i)
    for (unsigned j = i + 1; j < nslots; ++j)
      if (slots[j].size > slots[i].size) { struct bar_slot t = slots[i]; slots[i] = slots[j]; slots[j] = t; }
  u64 next = bi->mmio64_base;
  for (unsigned i = 0; i < nslots; ++i) {
    next = (next + slots[i].size - 1) & ~(slots[i].size - 1);
    set_bar(bi->gpu[slots[i].gpu].devfn, slots[i].bar, next);
    next += slots[i].size;
  }
  for (unsigned g = 0; g < bi->ngpus; ++g) set_decode(bi->gpu[g].devfn, 1);

  for (unsigned g = 0; g < bi->ngpus; ++g) {
    cur_gpu = g;
    struct nvg_gpu_plan* p = &bi->gpu[g];
    u64 bar0 = get_bar(p->devfn, 0), bar2 = get_bar(p->devfn, 2), bar4 = get_bar(p->devfn, 4);
    begin(bar4 >= bi->mmio64_base && (bar4 & (p->bar_size[4] - 1)) == 0, "BARs assigned above 4 GiB, naturally aligned: BAR4 at");
    put(" "); hex(bar4); put(", BAR2 at "); hex(bar2); put(", BAR0 at "); hex(bar0); put("\n");

    map(bar0 + 0x1498, 4);
    map(bar0 + 0x200BC, 4);
    check(rd32(bar0 + 0x1498) == 0xFF && rd32(bar0 + 0x200BC) == 0xFF, "BAR0 readiness registers read 0xFF (trapped)", 0xFF, rd32(bar0 + 0x1498));

    memory_checks(g, 4, bar4, p->usemem_len, "BAR4 usemem: pattern written and read back");
    if (p->resmem_len) memory_checks(g, 2, bar2, p->resmem_len, "BAR2 resmem: pattern written and read back");

    if (p->usemem_len < p->bar_size[4]) {
      u64 tail = bar4 + p->usemem_len, last = bar4 + p->bar_size[4] - 8;
      map(tail, 8);
      map(last, 8);
      wr64(tail, 0x1234);
      check(rd64(tail) == ~0ull && rd64(last) == ~0ull, "BAR4 tail past usemem reads all-ones, writes dropped", ~0ull, rd64(tail));
    }
    if (p->resmem_len && p->resmem_len < p->bar_size[2]) {
      u64 tail = bar2 + p->resmem_len;
      map(tail, 8);
      check(rd64(tail) == ~0ull, "BAR2 tail past resmem reads all-ones", ~0ull, rd64(tail));
    }

    set_decode(p->devfn, 0);
    check(rd64(bar4 + 0x1000) == ~0ull, "decode off: BAR4 access traps and reads all-ones", ~0ull, rd64(bar4 + 0x1000));
    set_decode(p->devfn, 1);
    check(rd64(bar4 + 0x1000) == pattern(g, 4, 0x1000), "decode on again: BAR4 data is back", pattern(g, 4, 0x1000), rd64(bar4 + 0x1000));

    /* Move BAR4 past everything assigned; the data must follow. */
    next = (next + p->bar_size[4] - 1) & ~(p->bar_size[4] - 1);
    u64 moved = next;
    next += p->bar_size[4];
    set_decode(p->devfn, 0);
    set_bar(p->devfn, 4, moved);
    set_decode(p->devfn, 1);
    map(moved + 0x1000, 8);
    begin(rd64(moved + 0x1000) == pattern(g, 4, 0x1000) && rd64(bar4 + 0x1000) == ~0ull, "BAR4 moved: data found at the new address, old one unclaimed:");
    put(" "); hex(moved); put("\n");

    /* Values for the host to find in the backing memory. */
    wr64(moved + NVG_HOST_CHECK_USEMEM_OFFSET, NVG_HOST_CHECK_VALUE(g, 4));
    if (p->resmem_len) { map(bar2 + NVG_HOST_CHECK_RESMEM_OFFSET, 8); wr64(bar2 + NVG_HOST_CHECK_RESMEM_OFFSET, NVG_HOST_CHECK_VALUE(g, 2)); }
  }
}

/* Benchmark mode: cycles to write bench_mib MiB into BAR4 and into RAM, and
 * for bench_iters config reads against bare port-I/O exits. */
static void run_bench(struct nvg_boot_info* bi) {
  struct nvg_gpu_plan* p = &bi->gpu[0];
  u32 flags;
  for (u32 bar = 0; bar <= 4; bar += 2) (void)size_bar(p->devfn, bar, &flags);
  u64 bar4 = bi->mmio64_base;
  bar4 = (bar4 + p->bar_size[4] - 1) & ~(p->bar_size[4] - 1);
  set_bar(p->devfn, 4, bar4);
  set_decode(p->devfn, 1);
  u64 bytes = (u64)bi->bench_mib << 20;
  map(bar4, bytes);
  u64 t[6];
  for (int round = 0; round < 2; ++round) { /* round 0 faults the pages in */
    t[0] = rdtsc();
    for (u64 o = 0; o < bytes; o += 8) wr64(bar4 + o, o);
    t[1] = rdtsc();
    for (u64 o = 0; o < bytes; o += 8) wr64(NVG_BENCH_RAM + o, o);
    t[2] = rdtsc();
  }
  for (u32 i = 0; i < bi->bench_iters; ++i) (void)cfg_read32(p->devfn, 0);
  t[3] = rdtsc();
  for (u32 i = 0; i < bi->bench_iters; ++i) { outl(NVG_PORT_CONFIG_ADDRESS, cf8(p->devfn, 0)); (void)inl(NVG_PORT_NULL); }
  t[4] = rdtsc();
  put("bench bar4_write_cycles "); dec(t[1] - t[0]); put("\n");
  put("bench ram_write_cycles "); dec(t[2] - t[1]); put("\n");
  put("bench config_read_cycles "); dec(t[3] - t[2]); put("\n");
  put("bench null_io_cycles "); dec(t[4] - t[3]); put("\n");
}

void guest_main(struct nvg_boot_info* bi) {
  if (bi->magic != NVG_BOOT_MAGIC) { put("FAIL boot info magic\n"); outl(NVG_PORT_DONE, 1); return; }
  ecam = bi->ecam_base;
  map(ecam, 1u << 20);
  if (bi->mode == NVG_MODE_BENCH) run_bench(bi);
  else run_checks(bi);
  outl(NVG_PORT_DONE, failures);
}
