// An emulated Grace GPU assembled from a built-in profile: its layout, the
// BARs the guest sees and its config space. One place builds it so every
// command (config, region, run, serve), test, fuzz target and benchmark sees
// the same device.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "nvgrace/common/result.hpp"
#include "nvgrace/pciemu/device_config.hpp"
#include "nvgrace/pciemu/identity.hpp"
#include "nvgrace/pciemu/layout.hpp"
#include "nvgrace/pciemu/profiles.hpp"

namespace nvgrace::pciemu {

struct EmulatedGpu {
  Profile profile;
  DeviceIdentity identity;
  Layout layout;
  std::vector<GuestBar> bars;
  DeviceConfig config;
};

// The gpu_index-th emulated GPU of `profile_name` (its memory base depends on
// the index, docs/profiles.md). The MIG bug follows the device id (R2).
// `mem_size` replaces the profile's memory size (to emulate odd sizes).
[[nodiscard]] Result<EmulatedGpu> make_emulated_gpu(const std::string& profile_name, unsigned gpu_index,
                                                    std::optional<std::uint64_t> mem_size = std::nullopt);

}  // namespace nvgrace::pciemu
