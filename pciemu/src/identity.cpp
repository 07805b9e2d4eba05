#include "nvgrace/pciemu/identity.hpp"

namespace nvgrace::pciemu {

std::optional<DeviceIdentity> find_identity(std::uint16_t device_id) {
  for (const auto& id : kIdentities)
    if (id.device_id == device_id) return id;
  return std::nullopt;
}

std::span<const DeviceIdentity> all_identities() { return kIdentities; }

}  // namespace nvgrace::pciemu
