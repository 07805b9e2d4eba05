// arm64's accesses for the memory-type probe (R40). On Device memory an
// unaligned LDR or STR is an alignment fault, DC ZVA is an alignment fault,
// and an exclusive pair may fail or abort; on Normal memory (write-back or
// non-cacheable) all of them work. QEMU's TCG models the first rule and not
// the other two, so there only the unaligned accesses tell the types apart.
#include <fmt/format.h>

#include "accesses.hpp"

namespace nvgrace::probe::detail {
namespace {

AccessResult dc_zva(volatile std::uint8_t* b) {
  std::uint64_t dczid = 0;
  asm volatile("mrs %0, dczid_el0" : "=r"(dczid));
  if (dczid & 0x10) return AccessResult::not_applicable("DC ZVA is prohibited here (DCZID_EL0.DZP)");
  const std::size_t block = std::size_t{4} << (dczid & 0xf);
  if (block > kBlock)
    return AccessResult::not_applicable(fmt::format("the DC ZVA block is {} bytes, more than the probe's {}", block, kBlock));
  fill(b, block, 0x30);
  asm volatile("dc zva, %0" : : "r"(b) : "memory");
  for (std::size_t i = 0; i < block; ++i)
    if (b[i] != 0)
      return AccessResult::wrong(fmt::format("byte {} of the {}-byte block is {:#x} after DC ZVA", i, block, b[i]));
  return {};
}

AccessResult exclusive_pair(volatile std::uint8_t* b) {
  auto* p = reinterpret_cast<volatile std::uint64_t*>(b + 64);
  *p = 41;
  std::uint32_t failed = 1;
  // A few tries: a store-exclusive may fail for reasons of its own.
  for (int attempt = 0; attempt < 64 && failed; ++attempt) {
    std::uint64_t v = 0;
    asm volatile("ldxr %0, [%2]\n\tadd %0, %0, #1\n\tstxr %w1, %0, [%2]"
                 : "=&r"(v), "=&r"(failed)
                 : "r"(p)
                 : "memory");
  }
  if (failed) return AccessResult::wrong("STXR failed 64 times in a row");
  return expect_bytes(b + 64, 42);
}

constexpr MemoryAccess kAccesses[] = {
    {"aligned 8-byte store and load", AccessKind::aligned, aligned_store_load},
    {"unaligned LDR", AccessKind::unaligned, unaligned_load},
    {"unaligned STR", AccessKind::unaligned, unaligned_store},
    {"DC ZVA", AccessKind::other, dc_zva},
    {"LDXR/STXR", AccessKind::other, exclusive_pair},
};

}  // namespace

std::uint64_t load8_instruction(const volatile std::uint8_t* p) {
  std::uint64_t v = 0;
  asm volatile("ldr %0, [%1]" : "=r"(v) : "r"(p) : "memory");
  return v;
}

void store8_instruction(volatile std::uint8_t* p, std::uint64_t v) {
  asm volatile("str %0, [%1]" : : "r"(v), "r"(p) : "memory");
}

std::span<const MemoryAccess> memory_accesses() { return kAccesses; }

}  // namespace nvgrace::probe::detail
