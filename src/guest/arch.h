/* What each architecture's guest (x86_64/arch.c, aarch64/arch.c) gives the
 * shared checks (checks.c). Freestanding C: no libc. */
#ifndef NVGRACE_GUEST_ARCH_H
#define NVGRACE_GUEST_ARCH_H

#include "nvgrace/guest/protocol.h"

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;

void* memset(void* d, int c, unsigned long n);
void* memcpy(void* d, const void* s, unsigned long n);

/* Called first, with the host's boot information. */
void arch_init(struct nvg_boot_info* bi);

/* Report text, one character at a time, and the end of the run. */
void arch_putc(char c);
void arch_done(u32 failures);

/* PCI configuration space of bus 0: x86 through 0xCF8/0xCFC, arm64 through
 * ECAM. `arch_cfg_mechanism` names it in the report. */
extern const char arch_cfg_mechanism[];
extern const int arch_has_separate_ecam; /* ECAM is a second way in (x86) */
u32 arch_cfg_read(u32 devfn, u32 reg, unsigned len);
void arch_cfg_write(u32 devfn, u32 reg, unsigned len, u32 v);

/* Identity-maps [addr, addr + len) with the memory type a guest driver uses
 * (R33): write-back for RAM and usemem, non-cacheable for resmem, device for
 * registers. x86 maps everything write-back (the MTRRs and PAT are left at
 * their defaults); arm64 sets the stage-1 attribute. */
enum nvg_attr { NVG_ATTR_WB, NVG_ATTR_NC, NVG_ATTR_DEVICE };
void arch_map(u64 addr, u64 len, enum nvg_attr attr);

/* Device-memory accessors that trap cleanly: one load or store of one
 * general-purpose register, no writeback (arm64 needs this for the exit to
 * carry a valid syndrome). */
u64 arch_read64(u64 addr);
void arch_write64(u64 addr, u64 v);
u32 arch_read32(u64 addr);

/* Benchmarks: a cycle counter, and a read that takes the exits and the guest
 * instructions arch_cfg_read takes for the same arguments, with nothing
 * emulated behind it (where the host emulates each guest instruction, as
 * this machine's paravirtual KVM does, anything less would count the
 * difference as config-space cost). */
u64 arch_cycles(void);
u32 arch_null_read(u32 devfn, u32 reg, unsigned len);

/* Checks only one architecture has (arm64: SVE, SME, ID registers). */
void arch_cpu_checks(struct nvg_boot_info* bi);

/* For the checks' report lines (checks.c). */
void put(const char* s);
void hex(u64 v);
void dec(u64 v);
/* "ok   gpuN what" / "FAIL gpuN what": the current GPU's line. */
void begin(int ok, const char* what);
void check(int ok, const char* what, u64 expected, u64 got);
/* "ok   cpu what" / "FAIL cpu what". */
void begin_cpu(int ok, const char* what);
extern unsigned cur_gpu;

#endif
