#include "nvgrace/pciemu/bars.hpp"

#include <algorithm>

namespace nvgrace::pciemu {

std::vector<GuestBar> visible_bars(const DeviceIdentity& id, const Layout& layout) {
  std::vector<GuestBar> bars;
  for (const auto& m : {layout.usemem, layout.resmem})
    if (m) bars.push_back({m->bar_index, m->role == MemRole::usemem ? BarRole::usemem : BarRole::resmem, m->bar_size, m});
  for (const auto& rb : id.real_bars) {
    const bool replaced = std::any_of(bars.begin(), bars.end(), [&](const GuestBar& b) { return b.index == rb.index; });
    // R1: on Hopper the real BAR4 (32 MiB) is hidden behind the fake usemem BAR
    // and the real BAR2 behind resmem; without fake BARs everything is real.
    if (!replaced) bars.push_back({rb.index, BarRole::device, rb.size, std::nullopt});
  }
  std::sort(bars.begin(), bars.end(), [](const GuestBar& a, const GuestBar& b) { return a.index < b.index; });
  return bars;
}

std::vector<GuestBar> host_bars(const DeviceIdentity& id) {
  std::vector<GuestBar> bars;
  for (const auto& rb : id.real_bars) bars.push_back({rb.index, BarRole::device, rb.size, std::nullopt});
  return bars;
}

}  // namespace nvgrace::pciemu
