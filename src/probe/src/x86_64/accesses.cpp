// x86-64's accesses for the memory-type probe (R40). x86 has no memory type
// that refuses an unaligned access: uncached (UC) memory takes them, so on
// x86 the probe shows that the mapping works, not which type it has (the
// PAT decides that, and /dev/mem of RAM the kernel does not own is
// write-back there: vfio/host's x86_64 memory_type.cpp).
#include <fmt/format.h>

#include "accesses.hpp"

namespace nvgrace::probe::detail {
namespace {

AccessResult rep_stosb(volatile std::uint8_t* b) {
  fill(b, 64, 0x30);
  void* dst = const_cast<std::uint8_t*>(b);
  std::size_t n = 64;
  asm volatile("rep stosb" : "+D"(dst), "+c"(n) : "a"(0) : "memory");
  for (std::size_t i = 0; i < 64; ++i)
    if (b[i] != 0) return AccessResult::wrong(fmt::format("byte {} is {:#x} after REP STOSB", i, b[i]));
  return {};
}

AccessResult locked_cmpxchg(volatile std::uint8_t* b) {
  auto* p = reinterpret_cast<volatile std::uint64_t*>(b + 64);
  *p = 41;
  std::uint64_t expected = 41;
  const std::uint64_t desired = 42;
  asm volatile("lock cmpxchgq %2, %1" : "+a"(expected), "+m"(*p) : "r"(desired) : "memory");
  if (expected != 41) return AccessResult::wrong(fmt::format("LOCK CMPXCHG found {:#x}", expected));
  return expect_bytes(b + 64, 42);
}

constexpr MemoryAccess kAccesses[] = {
    {"aligned 8-byte store and load", AccessKind::aligned, aligned_store_load},
    {"unaligned load", AccessKind::unaligned, unaligned_load},
    {"unaligned store", AccessKind::unaligned, unaligned_store},
    {"REP STOSB", AccessKind::other, rep_stosb},
    {"LOCK CMPXCHG", AccessKind::other, locked_cmpxchg},
};

}  // namespace

std::uint64_t load8_instruction(const volatile std::uint8_t* p) {
  std::uint64_t v = 0;
  asm volatile("movq (%1), %0" : "=r"(v) : "r"(p) : "memory");
  return v;
}

void store8_instruction(volatile std::uint8_t* p, std::uint64_t v) {
  asm volatile("movq %0, (%1)" : : "r"(v), "r"(p) : "memory");
}

std::span<const MemoryAccess> memory_accesses() { return kAccesses; }

}  // namespace nvgrace::probe::detail
