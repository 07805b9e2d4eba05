// Helpers shared by the config-space tests.
#pragma once

#include <catch2/catch.hpp>

#include "nvgrace/pciemu/device_config.hpp"
#include "nvgrace/pciemu/identity.hpp"
#include "nvgrace/pciemu/layout.hpp"
#include "nvgrace/pciemu/profiles.hpp"

namespace test {

inline nvgrace::pciemu::DeviceConfig make_gpu(const char* profile_name, std::uint32_t rom_size = 0) {
  using namespace nvgrace::pciemu;
  const auto profile = *find_profile(profile_name);
  const auto identity = *find_identity(profile.device_id);
  const bool bug = mig_bug_expected(identity.generation);
  auto layout = compute_layout({emulated_mem_base(0), profile.mem_size, bug});
  REQUIRE(layout.has_value());
  auto cfg = DeviceConfig::build({profile.device_id, profile.subsystem_vendor, profile.subsystem_id, bug,
                                  visible_bars(identity, *layout), rom_size});
  REQUIRE(cfg.has_value());
  return std::move(*cfg);
}

inline std::uint32_t rd(const nvgrace::pciemu::DeviceConfig& c, std::size_t off, std::size_t width) {
  auto v = c.read(off, width);
  REQUIRE(v.has_value());
  return *v;
}

inline void wr(nvgrace::pciemu::DeviceConfig& c, std::size_t off, std::size_t width, std::uint32_t value) {
  REQUIRE(c.write(off, width, value).has_value());
}

}  // namespace test
