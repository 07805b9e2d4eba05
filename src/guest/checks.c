/* nvgrace's built-in guest, the part every architecture shares: it does what
 * firmware and a guest OS do with a Grace GPU - scan bus 0, size and assign
 * the BARs, use device memory through BAR4 and BAR2, read the unbacked tail,
 * turn decode off and on, move BAR4 - and reports each check
 * (nvgrace-model.md R11-R13, R17, R21-R22). The architecture's part
 * (x86_64/arch.c, aarch64/arch.c) enters it, maps memory and reaches the
 * config space. */
#include "arch.h"

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

/* --- report text --------------------------------------------------------- */
void put(const char* s) { while (*s) arch_putc(*s++); }
void hex(u64 v) {
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
void dec(u64 v) {
  char b[21];
  int i = 20;
  b[i] = 0;
  do { b[--i] = (char)('0' + v % 10); v /= 10; } while (v);
  put(b + i);
}
static u32 failures;
unsigned cur_gpu;
void begin(int ok, const char* what) {
  if (!ok) ++failures;
  put(ok ? "ok   gpu" : "FAIL gpu");
  dec(cur_gpu);
  put(" ");
  put(what);
}
void begin_cpu(int ok, const char* what) {
  if (!ok) ++failures;
  put(ok ? "ok   cpu " : "FAIL cpu ");
  put(what);
}
/* A check with two numbers: "<what> (expected X, got Y)". */
void check(int ok, const char* what, u64 expected, u64 got) {
  begin(ok, what);
  if (!ok) { put(": expected "); hex(expected); put(", got "); hex(got); }
  put("\n");
}

/* --- PCI configuration ----------------------------------------------------- */
static u64 ecam;
static u32 cfg_read32(u32 devfn, u32 reg) { return arch_cfg_read(devfn, reg, 4); }
static u16 cfg_read16(u32 devfn, u32 reg) { return (u16)arch_cfg_read(devfn, reg, 2); }
static void cfg_write32(u32 devfn, u32 reg, u32 v) { arch_cfg_write(devfn, reg, 4, v); }
static void cfg_write16(u32 devfn, u32 reg, u16 v) { arch_cfg_write(devfn, reg, 2, v); }
static u32 ecam_read32(u32 devfn, u32 reg) { return arch_read32(ecam + ((u64)devfn << 12) + reg); }

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

/* The stage-1 memory type a guest driver gives each BAR (R33). */
static enum nvg_attr bar_attr(u32 bar) { return bar == 4 ? NVG_ATTR_WB : bar == 2 ? NVG_ATTR_NC : NVG_ATTR_DEVICE; }

#define pattern nvg_pattern

/* Writes a pattern at a few offsets of [0, len) of a BAR and reads it back. */
static void memory_checks(unsigned gpu, unsigned bar, u64 base, u64 len, const char* what) {
  const u64 offs[4] = {0, 0x1000, len / 2 & ~7ull, len - 8};
  int ok = 1;
  u64 bad_off = 0, got = 0, exp = 0;
  for (int i = 0; i < 4; ++i) { arch_map(base + offs[i], 8, bar_attr(bar)); arch_write64(base + offs[i], pattern(gpu, bar, offs[i])); }
  for (int i = 0; i < 4; ++i) {
    u64 v = arch_read64(base + offs[i]);
    if (v != pattern(gpu, bar, offs[i]) && ok) { ok = 0; bad_off = offs[i]; got = v; exp = pattern(gpu, bar, offs[i]); }
  }
  begin(ok, what);
  if (!ok) { put(": at +"); hex(bad_off); put(" expected "); hex(exp); put(", got "); hex(got); }
  put("\n");
}

/* --- BAR assignment in the 64-bit window ----------------------------------- */
struct bar_slot { unsigned gpu; u32 bar; u64 size; u64 addr; };
static struct bar_slot slots[NVG_MAX_GPUS * 3];
static unsigned nslots;

/* The lowest address in [base, limit) aligned to `size` that no assigned BAR
 * overlaps; 0 if there is none. */
static u64 free_slot(u64 base, u64 limit, u64 size) {
  for (u64 a = (base + size - 1) & ~(size - 1); a >= base && a + size <= limit && a + size > a; a += size) {
    int clash = 0;
    for (unsigned i = 0; i < nslots; ++i)
      if (a < slots[i].addr + slots[i].size && slots[i].addr < a + size) clash = 1;
    if (!clash) return a;
  }
  return 0;
}

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

  nslots = 0;
  for (unsigned g = 0; g < bi->ngpus; ++g) {
    cur_gpu = g;
    struct nvg_gpu_plan* p = &bi->gpu[g];
    u32 id = cfg_read32(p->devfn, 0);
    const u32 want = 0x10deu | (u32)p->device_id << 16;
    begin(id == want, "vendor/device id via ");
    put(arch_cfg_mechanism);
    if (id != want) { put(": expected "); hex(want); put(", got "); hex(id); }
    put("\n");
    if (arch_has_separate_ecam)
      check(ecam_read32(p->devfn, 0) == id, "vendor/device id via ECAM", id, ecam_read32(p->devfn, 0));
    check((ecam_read32(p->devfn, 0x100) & 0xFFFF) == 1, "extended config space via ECAM: AER at 0x100", 1,
          ecam_read32(p->devfn, 0x100) & 0xFFFF);
    for (u32 bar = 0; bar <= 4; bar += 2) {
      u32 flags;
      u64 size = size_bar(p->devfn, bar, &flags);
      begin(size == p->bar_size[bar] && flags == 0xC, bar == 0 ? "BAR0 sizes as 64-bit prefetchable" : bar == 2 ? "BAR2 sizes as 64-bit prefetchable" : "BAR4 sizes as 64-bit prefetchable");
      put(" ("); hex(size); put(")\n");
      if (size != p->bar_size[bar]) { put("     expected "); hex(p->bar_size[bar]); put("\n"); }
      slots[nslots].gpu = g; slots[nslots].bar = bar; slots[nslots].size = size; slots[nslots].addr = 0; ++nslots;
    }
  }

  /* Firmware-style assignment: largest first, naturally aligned, packed from
   * the bottom of the 64-bit window. */
  for (unsigned i = 0; i < nslots; ++i)
    for (unsigned j = i + 1; j < nslots; ++j)
      if (slots[j].size > slots[i].size) { struct bar_slot t = slots[i]; slots[i] = slots[j]; slots[j] = t; }
  u64 next = bi->mmio64_base;
  for (unsigned i = 0; i < nslots; ++i) {
    next = (next + slots[i].size - 1) & ~(slots[i].size - 1);
    slots[i].addr = next;
    set_bar(bi->gpu[slots[i].gpu].devfn, slots[i].bar, next);
    next += slots[i].size;
  }
  cur_gpu = 0;
  check(next <= bi->mmio64_limit, "every BAR fits the 64-bit window (end of the last BAR)", bi->mmio64_limit, next);
  for (unsigned g = 0; g < bi->ngpus; ++g) set_decode(bi->gpu[g].devfn, 1);

  for (unsigned g = 0; g < bi->ngpus; ++g) {
    cur_gpu = g;
    struct nvg_gpu_plan* p = &bi->gpu[g];
    u64 bar0 = get_bar(p->devfn, 0), bar2 = get_bar(p->devfn, 2), bar4 = get_bar(p->devfn, 4);
    begin(bar4 >= bi->mmio64_base && bar4 >= 0x100000000ull && (bar4 & (p->bar_size[4] - 1)) == 0,
          "BARs assigned above 4 GiB, naturally aligned: BAR4 at");
    put(" "); hex(bar4); put(", BAR2 at "); hex(bar2); put(", BAR0 at "); hex(bar0); put("\n");

    arch_map(bar0 + 0x1498, 4, NVG_ATTR_DEVICE);
    arch_map(bar0 + 0x200BC, 4, NVG_ATTR_DEVICE);
    check(arch_read32(bar0 + 0x1498) == 0xFF && arch_read32(bar0 + 0x200BC) == 0xFF, "BAR0 readiness registers read 0xFF (trapped)", 0xFF, arch_read32(bar0 + 0x1498));

    memory_checks(g, 4, bar4, p->usemem_len, "BAR4 usemem: pattern written and read back");
    if (p->resmem_len) memory_checks(g, 2, bar2, p->resmem_len, "BAR2 resmem: pattern written and read back");

    if (p->usemem_len < p->bar_size[4]) {
      u64 tail = bar4 + p->usemem_len, last = bar4 + p->bar_size[4] - 8;
      arch_map(tail, 8, NVG_ATTR_WB);
      arch_map(last, 8, NVG_ATTR_WB);
      arch_write64(tail, 0x1234);
      check(arch_read64(tail) == ~0ull && arch_read64(last) == ~0ull, "BAR4 tail past usemem reads all-ones, writes dropped", ~0ull, arch_read64(tail));
    }
    if (p->resmem_len && p->resmem_len < p->bar_size[2]) {
      u64 tail = bar2 + p->resmem_len;
      arch_map(tail, 8, NVG_ATTR_NC);
      check(arch_read64(tail) == ~0ull, "BAR2 tail past resmem reads all-ones", ~0ull, arch_read64(tail));
    }

    set_decode(p->devfn, 0);
    check(arch_read64(bar4 + 0x1000) == ~0ull, "decode off: BAR4 access traps and reads all-ones", ~0ull, arch_read64(bar4 + 0x1000));
    set_decode(p->devfn, 1);
    check(arch_read64(bar4 + 0x1000) == pattern(g, 4, 0x1000), "decode on again: BAR4 data is back", pattern(g, 4, 0x1000), arch_read64(bar4 + 0x1000));

    /* Move BAR4 to free room in the window; the data must follow. */
    struct bar_slot* s4 = 0;
    for (unsigned i = 0; i < nslots; ++i)
      if (slots[i].gpu == g && slots[i].bar == 4) s4 = &slots[i];
    u64 moved = free_slot(bi->mmio64_base, bi->mmio64_limit, p->bar_size[4]);
    if (!moved) {
      begin(0, "BAR4 moved: no free room for it in the 64-bit window\n");
      continue;
    }
    set_decode(p->devfn, 0);
    set_bar(p->devfn, 4, moved);
    s4->addr = moved;
    set_decode(p->devfn, 1);
    arch_map(moved + 0x1000, 8, NVG_ATTR_WB);
    begin(arch_read64(moved + 0x1000) == pattern(g, 4, 0x1000) && arch_read64(bar4 + 0x1000) == ~0ull, "BAR4 moved: data found at the new address, old one unclaimed:");
    put(" "); hex(moved); put("\n");

    /* Values for the host to find in the backing memory. */
    arch_map(moved + NVG_HOST_CHECK_USEMEM_OFFSET, 8, NVG_ATTR_WB);
    arch_write64(moved + NVG_HOST_CHECK_USEMEM_OFFSET, NVG_HOST_CHECK_VALUE(g, 4));
    if (p->resmem_len) { arch_map(bar2 + NVG_HOST_CHECK_RESMEM_OFFSET, 8, NVG_ATTR_NC); arch_write64(bar2 + NVG_HOST_CHECK_RESMEM_OFFSET, NVG_HOST_CHECK_VALUE(g, 2)); }
  }
  arch_cpu_checks(bi);
}

/* Benchmark mode: cycles to write bench_mib MiB into BAR4 and into RAM, and
 * for bench_iters config reads against as many bare exits. */
static void run_bench(struct nvg_boot_info* bi) {
  struct nvg_gpu_plan* p = &bi->gpu[0];
  u32 flags;
  for (u32 bar = 0; bar <= 4; bar += 2) (void)size_bar(p->devfn, bar, &flags);
  u64 bar4 = bi->mmio64_base;
  bar4 = (bar4 + p->bar_size[4] - 1) & ~(p->bar_size[4] - 1);
  set_bar(p->devfn, 4, bar4);
  set_decode(p->devfn, 1);
  u64 bytes = (u64)bi->bench_mib << 20;
  arch_map(bar4, bytes, NVG_ATTR_WB);
  /* Both loops the same shape (a local base): where the host emulates each
   * guest instruction, one more load in a loop shows as bandwidth. */
  const u64 ram = NVG_BENCH_RAM_ADDR(bi);
  arch_map(ram, bytes, NVG_ATTR_WB);
  u64 t[5];
  for (int round = 0; round < 2; ++round) { /* round 0 faults the pages in */
    t[0] = arch_cycles();
    for (u64 o = 0; o < bytes; o += 8) *(volatile u64*)(bar4 + o) = o;
    t[1] = arch_cycles();
    for (u64 o = 0; o < bytes; o += 8) *(volatile u64*)(ram + o) = o;
    t[2] = arch_cycles();
  }
  for (u32 i = 0; i < bi->bench_iters; ++i) (void)cfg_read32(p->devfn, 0);
  t[3] = arch_cycles();
  for (u32 i = 0; i < bi->bench_iters; ++i) (void)arch_null_read(p->devfn, 0, 4);
  t[4] = arch_cycles();
  put("bench bar4_write_cycles "); dec(t[1] - t[0]); put("\n");
  put("bench ram_write_cycles "); dec(t[2] - t[1]); put("\n");
  put("bench config_read_cycles "); dec(t[3] - t[2]); put("\n");
  put("bench null_exit_cycles "); dec(t[4] - t[3]); put("\n");
}

void guest_main(struct nvg_boot_info* bi);
void guest_main(struct nvg_boot_info* bi) {
  if (bi->magic != NVG_BOOT_MAGIC) { put("FAIL boot info magic\n"); arch_done(1); return; }
  arch_init(bi);
  ecam = bi->ecam_base;
  arch_map(ecam, 1u << 20, NVG_ATTR_DEVICE);
  if (bi->mode == NVG_MODE_BENCH) run_bench(bi);
  else run_checks(bi);
  arch_done(failures);
}
