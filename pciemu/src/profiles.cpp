#include "nvgrace/pciemu/profiles.hpp"

#include <array>

#include "nvgrace/common/checked.hpp"

namespace nvgrace::pciemu {
namespace {

// Subsystem 10de:16eb is what GH200 boards report; the Blackwell subsystem ids
// are invented (documented in docs/profiles.md).
constexpr std::array<Profile, 4> kProfiles{{
    {"gh200", 0x2342, 96 * GiB, 0x10de, 0x16eb},
    {"gh200-144g", 0x2348, 144 * GiB, 0x10de, 0x16eb},
    {"gb200", 0x2941, 186 * GiB, 0x10de, 0x2941},
    {"gb300", 0x31C2, 288 * GiB, 0x10de, 0x31c2},
}};

}  // namespace

std::optional<Profile> find_profile(std::string_view name) {
  for (const auto& p : kProfiles)
    if (p.name == name) return p;
  return std::nullopt;
}

std::span<const Profile> all_profiles() { return kProfiles; }

std::uint64_t emulated_mem_base(unsigned gpu_index) { return 0x400000000000ull + gpu_index * 4 * TiB; }

}  // namespace nvgrace::pciemu
