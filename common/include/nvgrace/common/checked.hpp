// Overflow-checked 64-bit arithmetic for address and size computations
// (nvgrace-model.md: "all arithmetic checked for overflow").
#pragma once

#include <bit>
#include <cstdint>
#include <optional>

namespace nvgrace {

[[nodiscard]] constexpr std::optional<std::uint64_t> checked_add(std::uint64_t a, std::uint64_t b) {
  std::uint64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
  return r;
}

[[nodiscard]] constexpr std::optional<std::uint64_t> checked_sub(std::uint64_t a, std::uint64_t b) {
  std::uint64_t r = 0;
  if (__builtin_sub_overflow(a, b, &r)) return std::nullopt;
  return r;
}

[[nodiscard]] constexpr std::optional<std::uint64_t> checked_mul(std::uint64_t a, std::uint64_t b) {
  std::uint64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}

// Smallest power of two >= x; nullopt for x == 0 and where it does not fit in 64 bits.
[[nodiscard]] constexpr std::optional<std::uint64_t> next_pow2(std::uint64_t x) {
  if (x == 0 || x > (std::uint64_t{1} << 63)) return std::nullopt;
  return std::bit_ceil(x);
}

// Round x up to a multiple of align (a power of two); nullopt on overflow.
[[nodiscard]] constexpr std::optional<std::uint64_t> align_up(std::uint64_t x, std::uint64_t align) {
  auto sum = checked_add(x, align - 1);
  if (!sum) return std::nullopt;
  return *sum & ~(align - 1);
}

[[nodiscard]] constexpr std::uint64_t align_down(std::uint64_t x, std::uint64_t align) {
  return x & ~(align - 1);
}

[[nodiscard]] constexpr bool is_pow2(std::uint64_t x) { return std::has_single_bit(x); }

inline constexpr std::uint64_t KiB = std::uint64_t{1} << 10;
inline constexpr std::uint64_t MiB = std::uint64_t{1} << 20;
inline constexpr std::uint64_t GiB = std::uint64_t{1} << 30;
inline constexpr std::uint64_t TiB = std::uint64_t{1} << 40;

}  // namespace nvgrace
