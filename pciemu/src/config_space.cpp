#include "nvgrace/pciemu/config_space.hpp"

#include <algorithm>
#include <cerrno>

namespace nvgrace::pciemu {

Result<void> ConfigSpace::check(std::size_t offset, std::size_t width) {
  if (width != 1 && width != 2 && width != 4)
    return fail_errno(EINVAL, "config access width {} at {:#x}: only 1, 2 or 4 bytes", width, offset);
  if (offset >= kSize || kSize - offset < width)
    return fail_errno(EINVAL, "config access of {} bytes at {:#x} runs past {:#x}", width, offset, kSize);
  return {};
}

Result<void> ConfigSpace::define(const RegDef& reg) {
  if (auto ok = check(reg.offset, reg.width); !ok) return fail(ok.error().context(reg.name));
  if ((reg.w1c & reg.writable) != 0)
    return fail("{} at {:#x}: a bit cannot be both writable and write-1-to-clear", reg.name, reg.offset);
  for (std::size_t i = 0; i < reg.width; ++i) {
    const auto shift = 8 * i;
    value_[reg.offset + i] = initial_[reg.offset + i] = static_cast<std::uint8_t>(reg.value >> shift);
    writable_[reg.offset + i] = static_cast<std::uint8_t>(reg.writable >> shift);
    w1c_[reg.offset + i] = static_cast<std::uint8_t>(reg.w1c >> shift);
  }
  return {};
}

Result<void> ConfigSpace::define_all(std::span<const RegDef> regs) {
  for (const auto& r : regs)
    if (auto ok = define(r); !ok) return ok;
  return {};
}

Result<std::uint32_t> ConfigSpace::read(std::size_t offset, std::size_t width) const {
  if (auto ok = check(offset, width); !ok) return fail(ok.error());
  return peek(offset, width);
}

Result<void> ConfigSpace::write(std::size_t offset, std::size_t width, std::uint32_t value) {
  if (auto ok = check(offset, width); !ok) return ok;
  for (std::size_t i = 0; i < width; ++i) {
    const auto in = static_cast<std::uint8_t>(value >> (8 * i));
    const std::size_t at = offset + i;
    auto next = static_cast<std::uint8_t>((value_[at] & ~writable_[at]) | (in & writable_[at]));
    next = static_cast<std::uint8_t>(next & ~(in & w1c_[at]));
    value_[at] = next;
  }
  return {};
}

Result<void> ConfigSpace::device_set(std::size_t offset, std::size_t width, std::uint32_t bits) {
  if (auto ok = check(offset, width); !ok) return ok;
  for (std::size_t i = 0; i < width; ++i) value_[offset + i] |= static_cast<std::uint8_t>(bits >> (8 * i));
  return {};
}

Result<void> ConfigSpace::load(std::span<const std::uint8_t> values) {
  if (values.size() != kSize)
    return fail_errno(EINVAL, "config space: {} bytes saved, {} expected", values.size(), kSize);
  std::copy(values.begin(), values.end(), value_.begin());
  return {};
}

}  // namespace nvgrace::pciemu
