// Built-in emulated devices: a device id of the identity table
// (identity.hpp) with a memory size. Sizes are representative of shipping
// parts, not read from one specific board (docs/profiles.md).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace nvgrace::pciemu {

struct Profile {
  std::string_view name;
  std::uint16_t device_id = 0;
  std::uint64_t mem_size = 0;      // coherent device memory, as _DSD would report it
  std::uint16_t subsystem_vendor = 0;  // the identity's (identity.hpp)
  std::uint16_t subsystem_id = 0;
};

[[nodiscard]] std::optional<Profile> find_profile(std::string_view name);
[[nodiscard]] std::span<const Profile> all_profiles();

// Host physical base given to the i-th emulated GPU: 0x400000000000 (where
// Grace firmware places the first GPU's memory) plus 4 TiB per GPU.
[[nodiscard]] std::uint64_t emulated_mem_base(unsigned gpu_index);

}  // namespace nvgrace::pciemu
