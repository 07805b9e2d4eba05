// Distinct types for the numbers that are easy to mix up (style.md, point 3):
// guest-physical (on arm64: IPA), host-virtual, host-physical and IOVA
// addresses, PCI addresses (BDF), VFIO region and PCI BAR indexes, and
// config-space offsets. Each is a thin value with no implicit conversion to or
// from a plain integer or another of them, so `map(gpa, size, hva)` cannot be
// called with its arguments in the wrong order. Address arithmetic is what
// addresses allow: address + bytes, address - address = bytes.
//
// Header-only, no system calls; cloud-hypervisor's GuestAddress and PciBdf,
// and SerenityOS's distinct PCI ID types, are the models.
#pragma once

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "nvgrace/common/result.hpp"

namespace nvgrace {

// An address in one address space. Tag names the space.
template <class Tag>
class Address {
 public:
  constexpr Address() = default;
  constexpr explicit Address(std::uint64_t v) : v_(v) {}
  [[nodiscard]] constexpr std::uint64_t value() const { return v_; }
  friend constexpr auto operator<=>(Address, Address) = default;
  // Address + bytes, address - bytes, and the distance between two addresses.
  friend constexpr Address operator+(Address a, std::uint64_t bytes) { return Address(a.v_ + bytes); }
  friend constexpr Address operator-(Address a, std::uint64_t bytes) { return Address(a.v_ - bytes); }
  friend constexpr std::uint64_t operator-(Address a, Address b) { return a.v_ - b.v_; }
  Address& operator+=(std::uint64_t bytes) {
    v_ += bytes;
    return *this;
  }

 private:
  std::uint64_t v_ = 0;
};

struct GuestPhysTag;
struct IovaTag;
// Guest physical addresses (arm64: intermediate physical addresses, IPA).
using GuestPhysAddr = Address<GuestPhysTag>;
// Device (I/O virtual) addresses in an IOMMU's address space (R28).
using Iova = Address<IovaTag>;

// An address in this process: what KVM and the IOMMU are given as "user
// address". Built from a pointer, never from an integer that could be
// anything else.
class HostVirtAddr {
 public:
  constexpr HostVirtAddr() = default;
  explicit HostVirtAddr(const void* p) : v_(reinterpret_cast<std::uintptr_t>(p)) {}
  [[nodiscard]] constexpr std::uint64_t value() const { return v_; }
  template <class T = std::uint8_t>
  [[nodiscard]] T* ptr() const {
    return reinterpret_cast<T*>(v_);
  }
  friend constexpr auto operator<=>(HostVirtAddr, HostVirtAddr) = default;
  friend HostVirtAddr operator+(HostVirtAddr a, std::uint64_t bytes) {
    return HostVirtAddr(reinterpret_cast<const void*>(a.v_ + bytes));
  }

 private:
  std::uintptr_t v_ = 0;
};

// A small index that means one thing. Tag names what it indexes.
template <class Tag>
class Index {
 public:
  constexpr Index() = default;
  constexpr explicit Index(unsigned v) : v_(v) {}
  [[nodiscard]] constexpr unsigned value() const { return v_; }
  friend constexpr auto operator<=>(Index, Index) = default;

 private:
  unsigned v_ = 0;
};

struct RegionIndexTag;
struct BarIndexTag;
// A VFIO region of a PCI device (VFIO_PCI_*_REGION_INDEX: BAR0..BAR5, ROM,
// config, VGA); the constants live with the VFIO code (vfio/function).
using RegionIndex = Index<RegionIndexTag>;
// A PCI BAR, 0..5 (PCI_STD_NUM_BARS).
using BarIndex = Index<BarIndexTag>;
inline constexpr unsigned kBarCount = 6;

// An offset in a function's configuration space (0..4095 for PCI Express).
class ConfigOffset {
 public:
  constexpr ConfigOffset() = default;
  constexpr explicit ConfigOffset(unsigned v) : v_(v) {}
  [[nodiscard]] constexpr unsigned value() const { return v_; }
  friend constexpr auto operator<=>(ConfigOffset, ConfigOffset) = default;
  friend constexpr ConfigOffset operator+(ConfigOffset o, unsigned bytes) { return ConfigOffset(o.v_ + bytes); }

 private:
  unsigned v_ = 0;
};

// A PCI function's address: segment (domain), bus, device, function. One
// parser and one formatter: "DDDD:BB:DD.F" as sysfs names it.
class Bdf {
 public:
  constexpr Bdf() = default;
  constexpr Bdf(std::uint16_t segment, std::uint8_t bus, std::uint8_t device, std::uint8_t function)
      : segment_(segment), bus_(bus), device_(device), function_(function) {}

  // "[[DDDD:]BB:]DD.F" in hex, with exactly those digits (segment and bus
  // default to 0); device 0..1f, function 0..7. The error quotes the text.
  [[nodiscard]] static Result<Bdf> parse(std::string_view text);

  [[nodiscard]] constexpr std::uint16_t segment() const { return segment_; }
  [[nodiscard]] constexpr std::uint8_t bus() const { return bus_; }
  [[nodiscard]] constexpr std::uint8_t device() const { return device_; }
  [[nodiscard]] constexpr std::uint8_t function() const { return function_; }
  // device << 3 | function, as config mechanism #1 and ECAM address it.
  [[nodiscard]] constexpr unsigned devfn() const { return unsigned{device_} << 3 | function_; }
  // "0000:00:03.0".
  [[nodiscard]] std::string to_string() const {
    return fmt::format("{:04x}:{:02x}:{:02x}.{:x}", segment_, bus_, device_, function_);
  }
  friend constexpr auto operator<=>(const Bdf&, const Bdf&) = default;

 private:
  std::uint16_t segment_ = 0;
  std::uint8_t bus_ = 0, device_ = 0, function_ = 0;
};

inline Result<Bdf> Bdf::parse(std::string_view text) {
  auto bad = [&] {
    return fail("'{}' is not a PCI address: give [[DDDD:]BB:]DD.F in hex, e.g. 01:00.0 or 0009:01:00.0", text);
  };
  // Exactly `digits` hex digits, at most `max`.
  auto hex = [](std::string_view s, std::size_t digits, unsigned max, unsigned& out) {
    if (s.size() != digits) return false;
    unsigned v = 0;
    for (char c : s) {
      const int d = c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : -1;
      if (d < 0) return false;
      v = v * 16 + static_cast<unsigned>(d);
    }
    out = v;
    return v <= max;
  };
  const auto dot = text.rfind('.');
  if (dot == std::string_view::npos) return bad();
  unsigned fn = 0, dev = 0, bus = 0, seg = 0;
  if (!hex(text.substr(dot + 1), 1, 7, fn)) return bad();
  std::string_view head = text.substr(0, dot);
  const auto c2 = head.rfind(':');
  if (!hex(head.substr(c2 == std::string_view::npos ? 0 : c2 + 1), 2, 0x1f, dev)) return bad();
  if (c2 != std::string_view::npos) {
    head = head.substr(0, c2);
    const auto c1 = head.rfind(':');
    if (!hex(head.substr(c1 == std::string_view::npos ? 0 : c1 + 1), 2, 0xff, bus)) return bad();
    if (c1 != std::string_view::npos && !hex(head.substr(0, c1), 4, 0xffff, seg)) return bad();
  }
  return Bdf(static_cast<std::uint16_t>(seg), static_cast<std::uint8_t>(bus), static_cast<std::uint8_t>(dev),
             static_cast<std::uint8_t>(fn));
}

}  // namespace nvgrace

template <class Tag>
struct fmt::formatter<nvgrace::Address<Tag>> : fmt::formatter<std::uint64_t> {
  auto format(nvgrace::Address<Tag> a, fmt::format_context& ctx) const {
    return fmt::formatter<std::uint64_t>::format(a.value(), ctx);
  }
};
template <>
struct fmt::formatter<nvgrace::HostVirtAddr> : fmt::formatter<std::uint64_t> {
  auto format(nvgrace::HostVirtAddr a, fmt::format_context& ctx) const {
    return fmt::formatter<std::uint64_t>::format(a.value(), ctx);
  }
};
template <class Tag>
struct fmt::formatter<nvgrace::Index<Tag>> : fmt::formatter<unsigned> {
  auto format(nvgrace::Index<Tag> i, fmt::format_context& ctx) const {
    return fmt::formatter<unsigned>::format(i.value(), ctx);
  }
};
template <>
struct fmt::formatter<nvgrace::ConfigOffset> : fmt::formatter<unsigned> {
  auto format(nvgrace::ConfigOffset o, fmt::format_context& ctx) const {
    return fmt::formatter<unsigned>::format(o.value(), ctx);
  }
};
template <>
struct fmt::formatter<nvgrace::Bdf> : fmt::formatter<std::string_view> {
  auto format(const nvgrace::Bdf& b, fmt::format_context& ctx) const {
    return fmt::formatter<std::string_view>::format(b.to_string(), ctx);
  }
};
