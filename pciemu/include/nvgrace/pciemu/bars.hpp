// The BARs of a Grace GPU's PCI function: the real ones the host sees
// (R1, R37), and the ones a guest sees once the variant replaces BAR2/BAR4
// with the fake BARs over device memory (R10, R11).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "nvgrace/common/types.hpp"
#include "nvgrace/pciemu/identity.hpp"
#include "nvgrace/pciemu/layout.hpp"

namespace nvgrace::pciemu {

enum class BarRole { device, usemem, resmem };

[[nodiscard]] constexpr std::string_view to_string(BarRole r) {
  switch (r) {
    case BarRole::usemem: return "usemem";
    case BarRole::resmem: return "resmem";
    case BarRole::device: break;
  }
  return "device";
}

// One BAR as the guest sees it: a real BAR of the device, or a fake one.
struct GuestBar {
  BarIndex index;
  BarRole role = BarRole::device;
  std::uint64_t size = 0;
  std::optional<MemRegion> mem;  // set for usemem/resmem
};

// The device's real BARs that stay visible, plus the fake BARs of `layout`
// replacing BAR2/BAR4 (R1, R10, R11), sorted by index: what the guest sees.
[[nodiscard]] std::vector<GuestBar> visible_bars(const DeviceIdentity& id, const Layout& layout);

// The device's real BARs only, all of them (R1, R37): what a Grace host sees
// of the physical function before any variant driver.
[[nodiscard]] std::vector<GuestBar> host_bars(const DeviceIdentity& id);

}  // namespace nvgrace::pciemu
