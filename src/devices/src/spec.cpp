#include "nvgrace/devices/spec.hpp"

#include "nvgrace/pciemu/identity.hpp"
#include "nvgrace/pciemu/profiles.hpp"

namespace nvgrace::devices {

Result<DeviceSpec> spec_from_numbers(std::string name, std::uint16_t device_id, std::uint64_t mem_base,
                                     std::uint64_t mem_size, std::optional<bool> forced_mig_bug,
                                     unsigned phys_addr_bits) {
  const auto identity = pciemu::find_identity(device_id);
  if (!identity) return fail("{:#06x} is not a Grace GPU nvgrace knows (R1)", device_id);
  DeviceSpec s;
  s.name = std::move(name);
  s.device_id = device_id;
  s.mem_base = mem_base;
  s.mem_size = mem_size;
  s.mig_hw_bug = forced_mig_bug.value_or(pciemu::mig_bug_expected(identity->generation));
  s.mig_hw_bug_source = forced_mig_bug ? "flag" : "device-id";
  s.phys_addr_bits = phys_addr_bits;
  return s;
}

Result<DeviceSpec> spec_from_profile(std::string name, std::string_view profile, unsigned index,
                                     std::optional<bool> forced_mig_bug, unsigned phys_addr_bits) {
  const auto p = pciemu::find_profile(profile);
  if (!p) return fail("unknown profile '{}'", profile);
  auto s = spec_from_numbers(std::move(name), p->device_id, pciemu::emulated_mem_base(index), p->mem_size,
                             forced_mig_bug, phys_addr_bits);
  if (s) s->profile = std::string(p->name);
  return s;
}

}  // namespace nvgrace::devices
