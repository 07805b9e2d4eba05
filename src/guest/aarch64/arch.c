/* The arm64 half of the built-in guest. Entered at EL1 with the MMU off and
 * the translation tables the runner built (RAM write-back, the report page
 * device memory); the entry code turns the MMU on, runs the shared checks and
 * powers off with PSCI SYSTEM_OFF. It maps what else it touches itself, 2 MiB
 * blocks with the memory type a guest driver uses (R33), reaches the config
 * space through ECAM, and checks the vCPU: SVE vector length and a Z register
 * (R34), no SME (R35), and leaves its ID registers for the host (R36).
 *
 * Every access that may trap is one LDR/STR of one general-purpose register
 * without writeback: only those give KVM a valid syndrome (ESR ISV=1) to
 * turn into an MMIO exit. */
#include "../arch.h"
#include "nvgrace/guest/aarch64/layout.h"

/* TCR_EL1: 48-bit VA in TTBR0 (T0SZ 16), 4 KiB granule, write-back
 * inner-shareable walks, TTBR1 walks off (EPD1), TG1 4 KiB; IPS is filled in
 * from ID_AA64MMFR0_EL1.PARange, at most 48 bits (4 KiB granule, no LPA2). */
#define TCR_BASE 0x80903510ull

__asm__(".section .text.entry\n"
        ".global _start\n"
        "_start:\n"
        "  ldr x1, =" "0x400FF000" "\n" /* NVG_STACK_TOP */
        "  mov sp, x1\n"
        /* FP/SIMD and SVE not trapped at EL1: CPACR_EL1.FPEN = ZEN = 0b11. */
        "  mov x1, #(3 << 20)\n"
        "  orr x1, x1, #(3 << 16)\n"
        "  msr cpacr_el1, x1\n"
        "  isb\n"
        "  adr x1, vectors\n"
        "  msr vbar_el1, x1\n"
        "  ldr x1, =0x0444FF\n" /* NVG_MAIR_VALUE */
        "  msr mair_el1, x1\n"
        "  mrs x2, id_aa64mmfr0_el1\n"
        "  and x2, x2, #0xf\n"
        "  cmp x2, #5\n"
        "  mov x3, #5\n"
        "  csel x2, x2, x3, ls\n"
        "  ldr x1, =0x80903510\n" /* TCR_BASE */
        "  orr x1, x1, x2, lsl #32\n"
        "  msr tcr_el1, x1\n"
        "  ldr x1, =0x40001000\n" /* NVG_PT_L0_ADDR */
        "  msr ttbr0_el1, x1\n"
        "  isb\n"
        "  tlbi vmalle1\n"
        "  dsb nsh\n"
        "  isb\n"
        "  mrs x1, sctlr_el1\n"
        "  orr x1, x1, #(1 << 0)\n"  /* M */
        "  orr x1, x1, #(1 << 2)\n"  /* C */
        "  orr x1, x1, #(1 << 12)\n" /* I */
        "  msr sctlr_el1, x1\n"
        "  isb\n"
        "  bl guest_main\n"
        "  ldr x0, =0x84000008\n" /* PSCI_0_2_FN_SYSTEM_OFF */
        "  hvc #0\n"
        "1: wfi\n"
        "  b 1b\n"
        /* Any exception is a bug in this guest: each of the 16 vectors
         * reports it with ESR/FAR/ELR and powers off. */
        "  .balign 2048\n"
        "vectors:\n"
        "  .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n"
        "  .balign 128\n"
        "  mov x0, #\\n\n"
        "  b exception\n"
        "  .endr\n"
        "exception:\n"
        "  ldr x1, =0x400FF000\n"
        "  mov sp, x1\n"
        "  mrs x1, esr_el1\n"
        "  mrs x2, far_el1\n"
        "  mrs x3, elr_el1\n"
        "  bl guest_exception\n"
        "  ldr x0, =0x84000008\n"
        "  hvc #0\n"
        "2: wfi\n"
        "  b 2b\n"
        ".text\n");

_Static_assert(NVG_STACK_TOP == 0x400FF000ull, "_start's stack");
_Static_assert(NVG_MAIR_VALUE == 0x0444FFull, "_start's MAIR");
_Static_assert(TCR_BASE == 0x80903510ull, "_start's TCR");
_Static_assert(NVG_PT_L0_ADDR == 0x40001000ull, "_start's TTBR0");

void guest_exception(u64 vector, u64 esr, u64 far, u64 elr);
void guest_exception(u64 vector, u64 esr, u64 far, u64 elr) {
  put("FAIL cpu exception in the guest: vector ");
  dec(vector);
  put(" ESR_EL1 "); hex(esr);
  put(" FAR_EL1 "); hex(far);
  put(" ELR_EL1 "); hex(elr);
  put("\n");
  arch_done(1);
}

u64 arch_read64(u64 a) { u64 v; __asm__ volatile("ldr %0, [%1]" : "=r"(v) : "r"(a) : "memory"); return v; }
void arch_write64(u64 a, u64 v) { __asm__ volatile("str %0, [%1]" ::"r"(v), "r"(a) : "memory"); }
u32 arch_read32(u64 a) { u32 v; __asm__ volatile("ldr %w0, [%1]" : "=r"(v) : "r"(a) : "memory"); return v; }
static void write32(u64 a, u32 v) { __asm__ volatile("str %w0, [%1]" ::"r"(v), "r"(a) : "memory"); }
static u32 read16(u64 a) { u32 v; __asm__ volatile("ldrh %w0, [%1]" : "=r"(v) : "r"(a) : "memory"); return v; }
static u32 read8(u64 a) { u32 v; __asm__ volatile("ldrb %w0, [%1]" : "=r"(v) : "r"(a) : "memory"); return v; }
static void write16(u64 a, u32 v) { __asm__ volatile("strh %w0, [%1]" ::"r"(v), "r"(a) : "memory"); }
static void write8(u64 a, u32 v) { __asm__ volatile("strb %w0, [%1]" ::"r"(v), "r"(a) : "memory"); }

void arch_putc(char c) { write32(NVG_REPORT_BASE + NVG_REPORT_CHAR, (u8)c); }
void arch_done(u32 failures) { write32(NVG_REPORT_BASE + NVG_REPORT_DONE, failures); } /* _start powers off */
u64 arch_cycles(void) { u64 v; __asm__ volatile("isb\n mrs %0, cntvct_el0" : "=r"(v)::"memory"); return v; }

/* --- ECAM (PCIe Base 6.0, 7.2.2) -------------------------------------------- */
const char arch_cfg_mechanism[] = "ECAM";
const int arch_has_separate_ecam = 0;
static u64 ecam;
void arch_init(struct nvg_boot_info* bi) { ecam = bi->ecam_base; }
static inline u32 read_sized(u64 a, unsigned len) { return len == 4 ? arch_read32(a) : len == 2 ? read16(a) : read8(a); }
u32 arch_cfg_read(u32 devfn, u32 reg, unsigned len) {
  return read_sized(ecam + ((u64)devfn << 12) + reg, len);
}
/* The report page answers every read in it with 0. */
u32 arch_null_read(u32 devfn, u32 reg, unsigned len) {
  (void)devfn;
  return read_sized(NVG_REPORT_BASE + NVG_REPORT_NULL + (reg & 3), len);
}
void arch_cfg_write(u32 devfn, u32 reg, unsigned len, u32 v) {
  const u64 a = ecam + ((u64)devfn << 12) + reg;
  if (len == 4) write32(a, v);
  else if (len == 2) write16(a, v);
  else write8(a, v);
}

/* --- stage 1: identity-map 2 MiB blocks on demand --------------------------- */
/* Block descriptor bits: valid block, AttrIndx, AF, inner shareable for
 * normal memory, never executable for device memory. */
static u64 block_bits(enum nvg_attr attr) {
  switch (attr) {
    case NVG_ATTR_WB: return 1 | (NVG_MAIR_WB << 2) | (3u << 8) | (1u << 10);
    case NVG_ATTR_NC: return 1 | (NVG_MAIR_NC << 2) | (3u << 8) | (1u << 10);
    case NVG_ATTR_DEVICE: break;
  }
  return 1 | (NVG_MAIR_DEVICE << 2) | (1u << 10) | (3ull << 53);
}
static u64 pool_next = NVG_PT_POOL_BASE;
static u64* table_at(u64* entry) {
  if (!(*entry & 1)) {
    if (pool_next >= NVG_PT_POOL_END) { put("FAIL page-table pool exhausted\n"); arch_done(1); for (;;) __asm__ volatile("wfi"); }
    memset((void*)pool_next, 0, 4096);
    __asm__ volatile("dsb ishst" ::: "memory");
    *entry = pool_next | 3; /* table */
    pool_next += 4096;
  }
  return (u64*)(*entry & 0x0000FFFFFFFFF000ull);
}
static void map_2m(u64 a, enum nvg_attr attr) {
  a &= ~0x1FFFFFull;
  u64* l1 = table_at(&((u64*)NVG_PT_L0_ADDR)[(a >> 39) & 511]);
  u64* l2 = table_at(&l1[(a >> 30) & 511]);
  u64* e = &l2[(a >> 21) & 511];
  const u64 want = a | block_bits(attr);
  if (*e == want) return;
  if (*e & 1) { /* another memory type: break before make */
    *e = 0;
    __asm__ volatile("dsb ishst\n tlbi vaae1, %0\n dsb ish\n isb" ::"r"(a >> 12) : "memory");
  }
  *e = want;
  __asm__ volatile("dsb ishst\n isb" ::: "memory");
}
void arch_map(u64 a, u64 len, enum nvg_attr attr) {
  for (u64 p = a & ~0x1FFFFFull; p < a + len; p += 0x200000) map_2m(p, attr);
}

/* --- the vCPU (R34-R36) ------------------------------------------------------ */
#define MRS(reg) ({ u64 v_; __asm__ volatile("mrs %0, " reg : "=r"(v_)); v_; })

static void read_idregs(struct nvg_cpu_info* c) {
  c->idreg[NVG_IDREG_MIDR] = MRS("midr_el1");
  c->idreg[NVG_IDREG_PFR0] = MRS("S3_0_C0_C4_0");
  c->idreg[NVG_IDREG_PFR1] = MRS("S3_0_C0_C4_1");
  c->idreg[NVG_IDREG_PFR2] = MRS("S3_0_C0_C4_2");
  c->idreg[NVG_IDREG_ZFR0] = MRS("S3_0_C0_C4_4");
  c->idreg[NVG_IDREG_SMFR0] = MRS("S3_0_C0_C4_5");
  c->idreg[NVG_IDREG_DFR0] = MRS("S3_0_C0_C5_0");
  c->idreg[NVG_IDREG_ISAR0] = MRS("S3_0_C0_C6_0");
  c->idreg[NVG_IDREG_ISAR1] = MRS("S3_0_C0_C6_1");
  c->idreg[NVG_IDREG_ISAR2] = MRS("S3_0_C0_C6_2");
  c->idreg[NVG_IDREG_ISAR3] = MRS("S3_0_C0_C6_3");
  c->idreg[NVG_IDREG_MMFR0] = MRS("S3_0_C0_C7_0");
  c->idreg[NVG_IDREG_MMFR1] = MRS("S3_0_C0_C7_1");
  c->idreg[NVG_IDREG_MMFR2] = MRS("S3_0_C0_C7_2");
  c->idreg[NVG_IDREG_MMFR3] = MRS("S3_0_C0_C7_3");
  c->idreg[NVG_IDREG_MMFR4] = MRS("S3_0_C0_C7_4");
  c->idregs_read = 1;
}

static void cpu_line_end(int ok, u64 expected, u64 got) {
  if (!ok) { put(": expected "); hex(expected); put(", got "); hex(got); }
  put("\n");
}

void arch_cpu_checks(struct nvg_boot_info* bi) {
  struct nvg_cpu_info* c = &bi->cpu;
  read_idregs(c);
  /* R35: no SME, whatever the model. */
  const u64 sme = (c->idreg[NVG_IDREG_PFR1] >> 24) & 0xF;
  begin_cpu(sme == 0 && c->idreg[NVG_IDREG_SMFR0] == 0, "no SME: ID_AA64PFR1_EL1.SME 0, ID_AA64SMFR0_EL1 0 (R35)");
  cpu_line_end(sme == 0 && c->idreg[NVG_IDREG_SMFR0] == 0, 0, sme ? sme : c->idreg[NVG_IDREG_SMFR0]);

  const u64 sve = (c->idreg[NVG_IDREG_PFR0] >> 32) & 0xF;
  if (!c->sve_vl_bytes) {
    begin_cpu(sve == 0, "no SVE, as set up: ID_AA64PFR0_EL1.SVE 0");
    cpu_line_end(sve == 0, 0, sve);
    return;
  }
  begin_cpu(sve != 0, "SVE present: ID_AA64PFR0_EL1.SVE");
  put(" "); dec(sve);
  cpu_line_end(sve != 0, 1, sve);
  if (!sve) return;
  /* Ask for the longest vector (ZCR_EL1.LEN 15: 2048 bits); the vCPU gives
   * the longest it has (R34), which RDVL reads back in bytes. */
  u64 vl;
  __asm__ volatile(".arch_extension sve\n"
                   "  mov x1, #15\n"
                   "  msr S3_0_C1_C2_0, x1\n" /* ZCR_EL1 */
                   "  isb\n"
                   "  rdvl %0, #1\n"
                   : "=r"(vl)::"x1");
  begin_cpu(vl == c->sve_vl_bytes, "SVE vector length from RDVL, as the model sets it:");
  put(" "); dec(vl * 8); put(" bits (R34)");
  cpu_line_end(vl == c->sve_vl_bytes, c->sve_vl_bytes, vl);
  if (vl > 256) return;
  /* Fill Z7 with the protocol's pattern; the host reads it back through
   * KVM_GET_ONE_REG after the guest powers off. Nothing after this touches
   * a vector register (the C code is built general-registers-only). */
  static u8 in[256], out[256];
  for (unsigned i = 0; i < 256; ++i) { in[i] = nvg_zreg_byte(i); out[i] = 0; }
  __asm__ volatile(".arch_extension sve\n"
                   "  ptrue p0.b\n"
                   "  ld1b {z7.b}, p0/z, [%0]\n"
                   "  st1b {z7.b}, p0, [%1]\n"
                   ::"r"(in), "r"(out)
                   : "p0", "memory");
  unsigned bad = 0;
  for (unsigned i = 0; i < vl; ++i) bad += out[i] != in[i];
  begin_cpu(bad == 0, "Z7 holds the pattern the guest loaded (");
  dec(vl); put(" bytes)");
  cpu_line_end(bad == 0, 0, bad);
  c->zreg = 7;
}
