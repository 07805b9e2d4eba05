// The Grace GPU identity table (nvgrace-model.md R1, R37): the one place a
// device id is described - its name, generation, subsystem and real BARs.
// The built-in profiles (profiles.hpp) name an entry of it by device id and
// add only a memory size; a profile naming an unknown id does not compile.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "nvgrace/common/checked.hpp"
#include "nvgrace/common/types.hpp"

namespace nvgrace::pciemu {

inline constexpr std::uint16_t kNvidiaVendorId = 0x10de;

enum class Generation { hopper, blackwell };

// A BAR the physical device itself exposes (R1). All of them are 64-bit
// prefetchable memory BARs on Grace hosts.
struct RealBar {
  BarIndex index;
  std::uint64_t size = 0;
};

struct DeviceIdentity {
  std::uint16_t device_id = 0;
  std::string_view model;       // marketing name, e.g. "GH200 120GB"
  Generation generation = Generation::hopper;
  std::span<const RealBar> real_bars;  // as seen on hosts (R1)
  std::uint16_t subsystem_vendor = 0;  // what the function reports (docs/profiles.md says which are captured)
  std::uint16_t subsystem_id = 0;
};

namespace detail {
// R1: GH200 shows BAR0 16 MiB, BAR2 128 GiB, BAR4 32 MiB; BAR2 and BAR4 are
// replaced by the fake BARs when they exist.
inline constexpr std::array<RealBar, 3> kHopperBars{{{BarIndex{0}, 16 * MiB}, {BarIndex{2}, 128 * GiB},
                                                     {BarIndex{4}, 32 * MiB}}};
// R1/R10: Blackwell shows BAR0 64 MiB and a 256 GiB BAR2 that stays visible.
inline constexpr std::array<RealBar, 2> kBlackwellBars{{{BarIndex{0}, 64 * MiB}, {BarIndex{2}, 256 * GiB}}};
}  // namespace detail

// Subsystem 10de:16eb is what GH200 boards report (public lspci captures);
// the Blackwell subsystem ids are the device ids, invented (docs/profiles.md).
inline constexpr std::array<DeviceIdentity, 5> kIdentities{{
    {0x2342, "GH200 120GB", Generation::hopper, detail::kHopperBars, kNvidiaVendorId, 0x16eb},
    {0x2345, "GH200 480GB", Generation::hopper, detail::kHopperBars, kNvidiaVendorId, 0x16eb},
    {0x2348, "GH200 144G HBM3e", Generation::hopper, detail::kHopperBars, kNvidiaVendorId, 0x16eb},
    {0x2941, "GB200", Generation::blackwell, detail::kBlackwellBars, kNvidiaVendorId, 0x2941},
    {0x31C2, "GB300", Generation::blackwell, detail::kBlackwellBars, kNvidiaVendorId, 0x31c2},
}};

[[nodiscard]] constexpr bool known_device_id(std::uint16_t device_id) {
  for (const auto& id : kIdentities)
    if (id.device_id == device_id) return true;
  return false;
}

// nullopt for an id that is not a Grace GPU the variant driver binds to.
[[nodiscard]] std::optional<DeviceIdentity> find_identity(std::uint16_t device_id);

// Every known identity, in table order.
[[nodiscard]] std::span<const DeviceIdentity> all_identities();

// Grace Hopper parts have the MIG hardware bug unless their DVSEC says
// otherwise (R2); Blackwell parts never do (R10).
[[nodiscard]] constexpr bool mig_bug_expected(Generation g) { return g == Generation::hopper; }

[[nodiscard]] constexpr std::string_view to_string(Generation g) {
  return g == Generation::hopper ? "Hopper" : "Blackwell";
}

}  // namespace nvgrace::pciemu
