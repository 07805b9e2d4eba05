// An emulated Grace GPU assembled from a built-in profile: its layout, the
// BARs the host and the guest see, and its config space in both views. One
// place builds it so every command, test, fuzz target and benchmark sees the
// same device.
//   host view  (R37): the physical function before any variant driver - the
//              real BARs (GH200: BAR0 16 MiB, BAR2 128 GiB, BAR4 32 MiB), no
//              GPU memory behind any of them. vfio/emulated serves it.
//   guest view (R10, R11): what the variant makes of it - BAR2/BAR4 replaced
//              by the fake BARs over the memory the layout describes.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "nvgrace/common/result.hpp"
#include "nvgrace/pciemu/bars.hpp"
#include "nvgrace/pciemu/device_config.hpp"
#include "nvgrace/pciemu/identity.hpp"
#include "nvgrace/pciemu/layout.hpp"
#include "nvgrace/pciemu/profiles.hpp"

namespace nvgrace::pciemu {

struct EmulatedGpu {
  Profile profile;
  DeviceIdentity identity;
  Layout layout;                 // the fake BARs (R7-R11)
  std::vector<GuestBar> bars;    // guest view: visible_bars
  DeviceConfigParams host;       // host view: the real BARs only (R37)
  DeviceConfig config;           // guest view, as the variant over the host view reads
};

// The gpu_index-th emulated GPU of `profile_name` (its memory base depends on
// the index, docs/profiles.md). The MIG bug follows the device id (R2).
// `mem_size` replaces the profile's memory size (to emulate odd sizes).
[[nodiscard]] Result<EmulatedGpu> make_emulated_gpu(const std::string& profile_name, unsigned gpu_index,
                                                    std::optional<std::uint64_t> mem_size = std::nullopt);

}  // namespace nvgrace::pciemu
