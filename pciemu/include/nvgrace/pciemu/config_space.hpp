// A 4 KiB PCI Express configuration space as data (nvgrace-model.md R15).
//
// Every byte has a value, a writable mask and a write-1-to-clear mask. There is
// one read path and one write path, for 1-, 2- and 4-byte accesses at any
// offset, aligned or not, including accesses that cross register boundaries:
// each byte follows its own masks, so an access spanning two registers updates
// both exactly as two separate accesses would (R13 "improve").
//
//   new = (old & ~writable) | (in & writable);  new &= ~(in & w1c)
//
// Thread-safety: none; the owner serialises accesses. Ownership: plain value.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string_view>

#include <linux/pci_regs.h>

#include "nvgrace/common/result.hpp"

namespace nvgrace::pciemu {

// A register as a row of a data table.
struct RegDef {
  std::uint16_t offset = 0;
  std::uint8_t width = 4;       // 1, 2 or 4
  std::uint32_t value = 0;      // power-on value
  std::uint32_t writable = 0;   // bits software may set and clear
  std::uint32_t w1c = 0;        // bits a written 1 clears (write-1-to-clear)
  std::string_view name;
};

class ConfigSpace {
 public:
  static constexpr std::size_t kSize = PCI_CFG_SPACE_EXP_SIZE;

  // All bytes zero and read-only.
  ConfigSpace() = default;

  // Defines (or redefines) a register's power-on value and masks. Errors for a
  // bad width or a register outside 4 KiB.
  Result<void> define(const RegDef& reg);
  Result<void> define_all(std::span<const RegDef> regs);

  // Guest-visible access. An access must have width 1, 2 or 4 and lie inside
  // 4 KiB; it need not be aligned. Little-endian, as PCI.
  [[nodiscard]] Result<std::uint32_t> read(std::size_t offset, std::size_t width) const;
  Result<void> write(std::size_t offset, std::size_t width, std::uint32_t value);

  // Device-side update that bypasses the masks: the device raising a status
  // bit (an error, a PME). Sets the given bits.
  Result<void> device_set(std::size_t offset, std::size_t width, std::uint32_t bits);

  // Back to the power-on values (device reset, R14).
  void reset() { value_ = initial_; }

  // Every byte's value as saved from a config space with the same
  // definitions (a server handing itself over, R41); the masks stay. EINVAL
  // unless exactly kSize bytes.
  Result<void> load(std::span<const std::uint8_t> values);

  [[nodiscard]] std::span<const std::uint8_t, kSize> bytes() const { return value_; }
  [[nodiscard]] std::span<const std::uint8_t, kSize> writable_mask() const { return writable_; }
  [[nodiscard]] std::span<const std::uint8_t, kSize> w1c_mask() const { return w1c_; }

  // Unchecked little-endian read of the current values, for trusted callers
  // that already validated the range (the device model).
  [[nodiscard]] std::uint32_t peek(std::size_t offset, std::size_t width) const { return le(value_, offset, width); }
  // The writable mask of the same bytes, assembled the same way.
  [[nodiscard]] std::uint32_t peek_writable(std::size_t offset, std::size_t width) const {
    return le(writable_, offset, width);
  }

 private:
  static Result<void> check(std::size_t offset, std::size_t width);
  static std::uint32_t le(const std::array<std::uint8_t, kSize>& bytes, std::size_t offset, std::size_t width) {
    std::uint32_t v = 0;
    for (std::size_t i = 0; i < width; ++i) v |= static_cast<std::uint32_t>(bytes[offset + i]) << (8 * i);
    return v;
  }

  std::array<std::uint8_t, kSize> value_{};
  std::array<std::uint8_t, kSize> initial_{};
  std::array<std::uint8_t, kSize> writable_{};
  std::array<std::uint8_t, kSize> w1c_{};
};

}  // namespace nvgrace::pciemu
