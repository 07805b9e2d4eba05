#include "nvgrace/pciemu/identity.hpp"

#include <array>

#include "nvgrace/common/checked.hpp"

namespace nvgrace::pciemu {
namespace {

// R1: GH200 shows BAR0 16 MiB, BAR2 128 GiB, BAR4 32 MiB; BAR2 and BAR4 are
// replaced by the fake BARs when they exist.
constexpr std::array<RealBar, 3> kHopperBars{{{0, 16 * MiB}, {2, 128 * GiB}, {4, 32 * MiB}}};
// R1/R10: Blackwell shows BAR0 64 MiB and a 256 GiB BAR2 that stays visible.
constexpr std::array<RealBar, 2> kBlackwellBars{{{0, 64 * MiB}, {2, 256 * GiB}}};

constexpr std::array<DeviceIdentity, 5> kIdentities{{
    {0x2342, "GH200 120GB", Generation::hopper, kHopperBars},
    {0x2345, "GH200 480GB", Generation::hopper, kHopperBars},
    {0x2348, "GH200 144G HBM3e", Generation::hopper, kHopperBars},
    {0x2941, "GB200", Generation::blackwell, kBlackwellBars},
    {0x31C2, "GB300", Generation::blackwell, kBlackwellBars},
}};

}  // namespace

std::optional<DeviceIdentity> find_identity(std::uint16_t device_id) {
  for (const auto& id : kIdentities)
    if (id.device_id == device_id) return id;
  return std::nullopt;
}

std::span<const DeviceIdentity> all_identities() { return kIdentities; }

}  // namespace nvgrace::pciemu
