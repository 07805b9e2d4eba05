// Builds emulated variant devices for the vfio tests.
#pragma once

#include <catch2/catch.hpp>

#include "nvgrace/pciemu/profiles.hpp"
#include "nvgrace/vfio/device.hpp"

namespace test {

inline std::unique_ptr<nvgrace::vfio::VariantDevice> make_device(const char* profile_name,
                                                                 nvgrace::vfio::ReadinessOptions r = {}) {
  using namespace nvgrace;
  const auto profile = *pciemu::find_profile(profile_name);
  const auto identity = *pciemu::find_identity(profile.device_id);
  const bool bug = pciemu::mig_bug_expected(identity.generation);
  auto layout = pciemu::compute_layout({pciemu::emulated_mem_base(0), profile.mem_size, bug});
  REQUIRE(layout.has_value());
  auto bars = pciemu::visible_bars(identity, *layout);
  auto cfg = pciemu::DeviceConfig::build({profile.device_id, profile.subsystem_vendor, profile.subsystem_id, bug, bars, 0});
  REQUIRE(cfg.has_value());
  auto backend = vfio::make_memfd_backend(*layout, profile_name);
  REQUIRE(backend.has_value());
  auto dev = vfio::VariantDevice::create(std::move(*cfg), *layout, std::move(*backend), r);
  INFO((dev ? std::string() : dev.error().message));
  REQUIRE(dev.has_value());
  return std::move(*dev);
}

}  // namespace test
