// Helpers shared by the config-space tests.
#pragma once

#include <catch2/catch.hpp>

#include "nvgrace/pciemu/device_config.hpp"
#include "nvgrace/pciemu/emulated.hpp"

namespace test {

// The emulated GPU of `profile_name`, optionally with an expansion ROM.
inline nvgrace::pciemu::DeviceConfig make_gpu(const char* profile_name, std::uint32_t rom_size = 0) {
  auto gpu = nvgrace::pciemu::make_emulated_gpu(profile_name, 0);
  REQUIRE(gpu.has_value());
  if (rom_size == 0) return std::move(gpu->config);
  auto params = gpu->config.params();
  params.rom_size = rom_size;
  auto cfg = nvgrace::pciemu::DeviceConfig::build(params);
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
