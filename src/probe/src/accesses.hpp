// The accesses that tell Normal memory from Device memory through a
// mapping (R40): each architecture's list is in <arch>/accesses.cpp, beside
// this shared part. Internal to the probe.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "nvgrace/probe/memory_type.hpp"

namespace nvgrace::probe::detail {

// What one access did, when it did not fault (the caller catches faults):
// ok, left the wrong bytes (`detail` says which), or does not apply here.
struct AccessResult {
  enum class Outcome { ok, wrong, not_applicable } outcome = Outcome::ok;
  std::string detail;
  static AccessResult wrong(std::string d) { return {Outcome::wrong, std::move(d)}; }
  static AccessResult not_applicable(std::string d) { return {Outcome::not_applicable, std::move(d)}; }
};

// Runs on a mapping's first `kBlock` bytes (page aligned). Bytes are
// checked with single-byte loads, which no memory type refuses.
inline constexpr std::size_t kBlock = 256;
struct MemoryAccess {
  std::string_view name;
  AccessKind kind;
  AccessResult (*run)(volatile std::uint8_t* block);
};

// This architecture's list, the aligned access first.
[[nodiscard]] std::span<const MemoryAccess> memory_accesses();

// This architecture's 8-byte load and store as single instructions, at
// any address (inline assembly: the compiler may split an unaligned C++
// access into aligned ones, and then Device memory would take it).
std::uint64_t load8_instruction(const volatile std::uint8_t* p);
void store8_instruction(volatile std::uint8_t* p, std::uint64_t v);

// Shared by both lists.
AccessResult aligned_store_load(volatile std::uint8_t* block);
// An 8-byte load at block + 1 and store at block + 3 (the instructions
// above), checked against the bytes.
AccessResult unaligned_load(volatile std::uint8_t* block);
AccessResult unaligned_store(volatile std::uint8_t* block);
void fill(volatile std::uint8_t* p, std::size_t n, std::uint8_t seed);
// ok when p[0..8) holds `want`'s bytes (little-endian), else what it holds.
AccessResult expect_bytes(const volatile std::uint8_t* p, std::uint64_t want);
// The little-endian value of p[0..8), loaded a byte at a time.
std::uint64_t bytes_value(const volatile std::uint8_t* p);

}  // namespace nvgrace::probe::detail
