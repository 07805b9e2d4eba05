#include "nvgrace/pciemu/profiles.hpp"

#include <array>

#include "nvgrace/common/checked.hpp"
#include "nvgrace/pciemu/identity.hpp"

namespace nvgrace::pciemu {
namespace {

// A profile is a device id of the identity table and a memory size; the
// subsystem comes from the identity (one table per fact).
struct ProfileRow {
  std::string_view name;
  std::uint16_t device_id;
  std::uint64_t mem_size;
};
constexpr std::array<ProfileRow, 4> kProfiles{{
    {"gh200", 0x2342, 96 * GiB},
    {"gh200-144g", 0x2348, 144 * GiB},
    {"gb200", 0x2941, 186 * GiB},
    {"gb300", 0x31C2, 288 * GiB},
}};
constexpr bool all_known() {
  for (const auto& p : kProfiles)
    if (!known_device_id(p.device_id)) return false;
  return true;
}
static_assert(all_known(), "every built-in profile names a device id of the identity table");

Profile to_profile(const ProfileRow& r) {
  const auto id = *find_identity(r.device_id);
  return {r.name, r.device_id, r.mem_size, id.subsystem_vendor, id.subsystem_id};
}

const std::array<Profile, kProfiles.size()>& profiles() {
  static const auto all = [] {
    std::array<Profile, kProfiles.size()> out{};
    for (std::size_t i = 0; i < kProfiles.size(); ++i) out[i] = to_profile(kProfiles[i]);
    return out;
  }();
  return all;
}

}  // namespace

std::optional<Profile> find_profile(std::string_view name) {
  for (const auto& p : profiles())
    if (p.name == name) return p;
  return std::nullopt;
}

std::span<const Profile> all_profiles() { return profiles(); }

std::uint64_t emulated_mem_base(unsigned gpu_index) { return 0x400000000000ull + gpu_index * 4 * TiB; }

}  // namespace nvgrace::pciemu
