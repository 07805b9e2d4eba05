// Builds emulated variant devices for the vfio tests, as nvgrace serve does
// (devices/emulated.hpp): the variant over the emulated host function.
#pragma once

#include <catch2/catch.hpp>

#include <chrono>

#include "nvgrace/devices/emulated.hpp"

namespace test {

// When the emulated GPU turns ready and how the variant waits for it, in one
// aggregate: {ready_after, poll_interval, timeout, active_after}.
struct Readiness {
  std::chrono::milliseconds ready_after{0};
  std::chrono::milliseconds poll_interval{1000};
  std::chrono::milliseconds timeout{30000};
  std::chrono::milliseconds active_after{0};
};

inline std::unique_ptr<nvgrace::vfio::Variant> make_device(const char* profile_name, Readiness r = {}) {
  using namespace nvgrace;
  devices::EmulatedOptions o;
  o.profile = profile_name;
  o.timing = {r.ready_after, r.active_after};
  o.ready = {r.poll_interval, r.timeout};
  auto dev = devices::make_emulated_device(o);
  INFO((dev ? std::string() : dev.error().error.message));
  REQUIRE(dev.has_value());
  return std::move(dev->device);
}

// Memory decode on (COMMAND bit 1), as a driver sets it before it touches a
// BAR: the first access after a reset needs it (R20, the 7.x kernel driver).
inline void decode_on(nvgrace::vfio::Function& d) {
  const std::uint8_t cmd[2] = {0x02, 0x00};
  REQUIRE(d.write(nvgrace::vfio::kConfigRegion, 0x04, cmd).value() == 2);
}

}  // namespace test
