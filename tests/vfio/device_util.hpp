// Builds emulated variant devices for the vfio tests.
#pragma once

#include <catch2/catch.hpp>

#include "nvgrace/pciemu/emulated.hpp"
#include "nvgrace/vfio/device.hpp"

namespace test {

inline std::unique_ptr<nvgrace::vfio::VariantDevice> make_device(const char* profile_name,
                                                                 nvgrace::vfio::ReadinessOptions r = {}) {
  using namespace nvgrace;
  auto gpu = pciemu::make_emulated_gpu(profile_name, 0);
  REQUIRE(gpu.has_value());
  auto backend = vfio::make_memfd_backend(gpu->layout, profile_name);
  REQUIRE(backend.has_value());
  auto dev = vfio::VariantDevice::create(std::move(gpu->config), gpu->layout, std::move(*backend), r);
  INFO((dev ? std::string() : dev.error().message));
  REQUIRE(dev.has_value());
  return std::move(*dev);
}

}  // namespace test
