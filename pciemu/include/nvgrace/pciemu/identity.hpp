// The Grace GPU identity table (nvgrace-model.md R1).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace nvgrace::pciemu {

inline constexpr std::uint16_t kNvidiaVendorId = 0x10de;

enum class Generation { hopper, blackwell };

// A BAR the physical device itself exposes (R1). All of them are 64-bit
// prefetchable memory BARs on Grace hosts.
struct RealBar {
  unsigned index = 0;
  std::uint64_t size = 0;
};

struct DeviceIdentity {
  std::uint16_t device_id = 0;
  std::string_view model;       // marketing name, e.g. "GH200 120GB"
  Generation generation = Generation::hopper;
  std::span<const RealBar> real_bars;  // as seen on hosts (R1)
};

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
