#include "nvgrace/pciemu/emulated.hpp"

namespace nvgrace::pciemu {

Result<EmulatedGpu> make_emulated_gpu(const std::string& profile_name, unsigned gpu_index,
                                     std::optional<std::uint64_t> mem_size) {
  auto profile = find_profile(profile_name);
  if (!profile) return fail("unknown profile '{}'", profile_name);
  if (mem_size) profile->mem_size = *mem_size;
  auto identity = find_identity(profile->device_id);
  if (!identity) return fail("profile '{}' names unknown device id {:#06x}", profile_name, profile->device_id);
  const bool bug = mig_bug_expected(identity->generation);
  auto layout = compute_layout({emulated_mem_base(gpu_index), profile->mem_size, bug});
  if (!layout) return fail(layout.error().context(profile_name));
  auto bars = visible_bars(*identity, *layout);
  const DeviceConfigParams host{profile->device_id, identity->subsystem_vendor, identity->subsystem_id, bug,
                                host_bars(*identity), 0, std::nullopt};
  DeviceConfigParams guest = host;
  guest.bars = bars;
  auto config = DeviceConfig::build(guest);
  if (!config) return fail(config.error().context(profile_name));
  if (auto h = DeviceConfig::build(host); !h) return fail(h.error().context(profile_name + " (host view)"));
  return EmulatedGpu{*profile, *identity, *layout, std::move(bars), host, std::move(*config)};
}

}  // namespace nvgrace::pciemu
